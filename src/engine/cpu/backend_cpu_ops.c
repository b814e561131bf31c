/* backend_cpu_ops — the CPU backend: the ops table over the nn_* reference ops, its own thread
 * pool and its scratch arena. See backend.h.
 *
 * Each op binds the backend's pool to the calling thread for its duration only
 * (backend_cpu_bind: a thread-local, no process-wide state) and restores the caller's choice.
 * Half-precision weights are widened to f32 in tiles of LINEAR_TILE rows from the arena, so a
 * bf16 model never holds an f32 copy of a whole weight matrix (conv2d widens its weight once
 * per op: conv weights are small beside their activations).
 */
#include "backend_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_activation.h"
#include "nn_flash.h"
#include "nn_linear.h"
#include "nn_norm.h"
#include "nn_softmax.h"

#define LINEAR_TILE 64 /* weight rows widened at a time */
#define DEFAULT_ARENA ((size_t)64 << 20)

#define F(t) ((t) ? (float *)(t)->ptr : NULL)
#define N_(t) ((size_t)tensor_numel(t))

#define BIND CpuPool *prev_ = backend_cpu_bind((CpuPool *)be->impl)
#define UNBIND backend_cpu_bind(prev_)

/* f32 scratch of n floats from the arena, or a failure (NULL). */
static float *scratch(Backend *be, size_t n) {
    Tensor t = backend_alloc(be, DTYPE_F32, 1, (int64_t[]){(int64_t)n});
    return t.ptr;
}

static void cpu_close(Backend *be) {
    backend_cpu_pool_free(be->impl);
    arena_deinit(&be->arena);
    free(be);
}

static void *cpu_malloc(Backend *be, size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, TENSOR_ALIGN, arena_round(bytes ? bytes : 1)) != 0) {
        backend_fail(be, ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    return p;
}

static void cpu_free(Backend *be, void *p) {
    (void)be;
    free(p);
}

static void cpu_copy(Backend *be, CT *dst, CT *src) {
    (void)be;
    memcpy(dst->ptr, src->ptr, tensor_nbytes(src));
}

static void cpu_zero(Backend *be, CT *t) {
    (void)be;
    memset(t->ptr, 0, tensor_nbytes(t));
}

static void cpu_convert(Backend *be, CT *dst, CT *src) {
    (void)be;
    size_t n = N_(src);
    if (src->dtype == DTYPE_F32 || dst->dtype == DTYPE_F32) {
        if (src->dtype == DTYPE_F32)
            dtype_from_f32(dst->ptr, dst->dtype, src->ptr, n);
        else
            dtype_to_f32(dst->ptr, src->ptr, src->dtype, n);
        return;
    }
    float buf[1024]; /* half to half goes through f32 (exact widening, one rounding) */
    for (size_t i = 0; i < n; i += 1024) {
        size_t m = n - i < 1024 ? n - i : 1024;
        dtype_to_f32(buf, (const uint16_t *)src->ptr + i, src->dtype, m);
        dtype_from_f32((uint16_t *)dst->ptr + i, dst->dtype, buf, m);
    }
}

/* ---- dense ---------------------------------------------------------------------------------- */

static void cpu_linear_forward(Backend *be, CT *out, CT *inp, CT *w, CT *b) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1], OC = (int)w->shape[0];
    BIND;
    if (w->dtype == DTYPE_F32) {
        nn_linear_forward(F(out), F(inp), F(w), F(b), N, C, OC);
    } else {
        size_t mark = backend_mark(be);
        float *wt = scratch(be, (size_t)LINEAR_TILE * (size_t)C);
        for (int o0 = 0; wt && o0 < OC; o0 += LINEAR_TILE) {
            int nt = OC - o0 < LINEAR_TILE ? OC - o0 : LINEAR_TILE;
            dtype_to_f32(wt, (const uint16_t *)w->ptr + (size_t)o0 * C, w->dtype,
                         (size_t)nt * C);
            nn_gemm(0, 1, N, nt, C, F(inp), C, wt, C, 0.0f, F(out) + o0, OC);
        }
        if (wt && b)
            nn_bias_add_forward(F(out), F(out), F(b), N, OC);
        backend_reset(be, mark);
    }
    UNBIND;
}

static void cpu_linear_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                CT *w) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1], OC = (int)w->shape[0];
    BIND;
    if (w->dtype == DTYPE_F32) {
        nn_linear_backward(F(dinp), F(dw), F(db), F(dout), F(inp), F(w), N, C, OC);
    } else {
        nn_linear_backward(NULL, F(dw), F(db), F(dout), F(inp), NULL, N, C, OC);
        if (dinp) {
            size_t mark = backend_mark(be);
            float *wt = scratch(be, (size_t)LINEAR_TILE * (size_t)C);
            for (int o0 = 0; wt && o0 < OC; o0 += LINEAR_TILE) {
                int nt = OC - o0 < LINEAR_TILE ? OC - o0 : LINEAR_TILE;
                dtype_to_f32(wt, (const uint16_t *)w->ptr + (size_t)o0 * C, w->dtype,
                             (size_t)nt * C);
                nn_gemm(0, 0, N, C, nt, F(dout) + o0, OC, wt, C, 1.0f, F(dinp), C);
            }
            backend_reset(be, mark);
        }
    }
    UNBIND;
}

static void cpu_matmul_forward(Backend *be, CT *out, CT *a, CT *b) {
    BIND;
    nn_matmul_forward(F(out), F(a), F(b), (int)a->shape[0], (int)a->shape[1], (int)b->shape[1]);
    UNBIND;
}

static void cpu_matmul_backward(Backend *be, CT *da, CT *db, CT *dout, CT *a, CT *b) {
    BIND;
    nn_matmul_backward(F(da), F(db), F(dout), F(a), F(b), (int)a->shape[0], (int)a->shape[1],
                       (int)b->shape[1]);
    UNBIND;
}

/* ---- normalisation -------------------------------------------------------------------------- */

static void cpu_layernorm_forward(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w,
                                  CT *b, float eps) {
    BIND;
    nn_layernorm_forward(F(out), F(mean), F(rstd), F(inp), F(w), F(b), (int)inp->shape[0],
                         (int)inp->shape[1], eps);
    UNBIND;
}

static void cpu_layernorm_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                   CT *w, CT *mean, CT *rstd) {
    BIND;
    nn_layernorm_backward(F(dinp), F(dw), F(db), F(dout), F(inp), F(w), F(mean), F(rstd),
                          (int)inp->shape[0], (int)inp->shape[1]);
    UNBIND;
}

static void cpu_groupnorm_forward(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w,
                                  CT *b, int G, float eps) {
    BIND;
    nn_groupnorm_forward(F(out), F(mean), F(rstd), F(inp), F(w), F(b), (int)inp->shape[0],
                         (int)inp->shape[1], (int)(inp->shape[2] * inp->shape[3]), G, eps);
    UNBIND;
}

static void cpu_groupnorm_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                   CT *w, CT *mean, CT *rstd, int G) {
    BIND;
    nn_groupnorm_backward(F(dinp), F(dw), F(db), F(dout), F(inp), F(w), F(mean), F(rstd),
                          (int)inp->shape[0], (int)inp->shape[1],
                          (int)(inp->shape[2] * inp->shape[3]), G);
    UNBIND;
}

static void cpu_softmax_forward(Backend *be, CT *out, CT *inp) {
    BIND;
    nn_softmax_forward(F(out), F(inp), (int)inp->shape[0], (int)inp->shape[1]);
    UNBIND;
}

static void cpu_softmax_backward(Backend *be, CT *dinp, CT *dout, CT *out) {
    if (!dinp)
        return;
    BIND;
    nn_softmax_backward(F(dinp), F(dout), F(out), (int)out->shape[0], (int)out->shape[1]);
    UNBIND;
}

/* ---- pointwise ------------------------------------------------------------------------------ */

static void cpu_act_forward(Backend *be, BackendAct act, CT *out, CT *inp) {
    BIND;
    if (act == BACKEND_ACT_SILU)
        nn_silu_forward(F(out), F(inp), N_(inp));
    else if (act == BACKEND_ACT_QUICKGELU)
        nn_quickgelu_forward(F(out), F(inp), N_(inp));
    else
        nn_gelu_mode_forward(F(out), F(inp), N_(inp),
                             act == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF);
    UNBIND;
}

static void cpu_act_backward(Backend *be, BackendAct act, CT *dinp, CT *dout, CT *inp) {
    if (!dinp)
        return;
    BIND;
    if (act == BACKEND_ACT_SILU)
        nn_silu_backward(F(dinp), F(dout), F(inp), N_(inp));
    else if (act == BACKEND_ACT_QUICKGELU)
        nn_quickgelu_backward(F(dinp), F(dout), F(inp), N_(inp));
    else
        nn_gelu_mode_backward(F(dinp), F(dout), F(inp), N_(inp),
                              act == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF);
    UNBIND;
}

static void cpu_geglu_forward(Backend *be, BackendAct gelu, CT *out, CT *inp) {
    BIND;
    nn_geglu_forward(F(out), F(inp), (int)inp->shape[0], (int)inp->shape[1] / 2,
                     gelu == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF);
    UNBIND;
}

static void cpu_geglu_backward(Backend *be, BackendAct gelu, CT *dinp, CT *dout, CT *inp) {
    if (!dinp)
        return;
    BIND;
    nn_geglu_backward(F(dinp), F(dout), F(inp), (int)inp->shape[0], (int)inp->shape[1] / 2,
                      gelu == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF);
    UNBIND;
}

/* ---- convolution ---------------------------------------------------------------------------- */

/* The weight as f32: itself, or widened into the arena. */
static const float *f32_weight(Backend *be, CT *w) {
    if (w->dtype == DTYPE_F32)
        return w->ptr;
    float *wf = scratch(be, N_(w));
    if (wf)
        dtype_to_f32(wf, w->ptr, w->dtype, N_(w));
    return wf;
}

static void cpu_conv2d_forward(Backend *be, CT *out, CT *inp, CT *w, CT *b, const ConvShape *s) {
    size_t mark = backend_mark(be);
    const float *wf = f32_weight(be, w);
    size_t ns = nn_conv2d_scratch_floats(s);
    float *sc = ns ? scratch(be, ns) : NULL;
    if (wf && (sc || !ns)) {
        BIND;
        nn_conv2d_forward(F(out), sc, F(inp), wf, F(b), s);
        UNBIND;
    }
    backend_reset(be, mark);
}

static void cpu_conv2d_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w,
                                const ConvShape *s) {
    size_t mark = backend_mark(be);
    const float *wf = f32_weight(be, w);
    size_t ns = nn_conv2d_scratch_floats(s);
    float *sc = ns ? scratch(be, ns) : NULL;
    if (wf && (sc || !ns)) {
        BIND;
        nn_conv2d_backward(F(dinp), F(dw), F(db), sc, F(dout), F(inp), wf, s);
        UNBIND;
    }
    backend_reset(be, mark);
}

/* ---- attention ------------------------------------------------------------------------------ */

static FlashAttn flash_of(CT *q, CT *k, const BackendAttn *a) {
    FlashAttn f;
    memset(&f, 0, sizeof f);
    f.B = (int)q->shape[0];
    f.NH = a->NH;
    f.Tq = (int)q->shape[1];
    f.Tk = (int)k->shape[1];
    f.hd = (int)q->shape[2] / a->NH;
    f.scale = a->scale;
    f.causal = a->causal;
    f.key_len = a->key_len;
    return f;
}

/* Half activations (attention): t as f32 — itself when f32, else widened into the arena (the
 * caller's backend_reset frees it); NULL stays NULL, and a failure is sticky (NULL). */
static float *attn_f32(Backend *be, CT *t) {
    if (!t || t->dtype == DTYPE_F32)
        return F(t);
    float *f = scratch(be, N_(t));
    if (f)
        dtype_to_f32(f, t->ptr, t->dtype, N_(t));
    return f;
}

/* f32 results back into a half tensor (rounded to nearest even); nothing when t is f32. */
static void attn_back(CT *t, const float *f) {
    if (t && t->dtype != DTYPE_F32 && f)
        dtype_from_f32(t->ptr, t->dtype, f, N_(t));
}

static void cpu_attention_forward(Backend *be, CT *o, CT *lse, CT *q, CT *k, CT *v,
                                  const BackendAttn *a) {
    FlashAttn f = flash_of(q, k, a);
    size_t mark = backend_mark(be);
    float *qf = attn_f32(be, q), *kf = attn_f32(be, k), *vf = attn_f32(be, v);
    float *of = o->dtype == DTYPE_F32 ? F(o) : scratch(be, N_(o));
    if (qf && kf && vf && of) {
        BIND;
        nn_flash_forward(of, F(lse), qf, kf, vf, &f);
        UNBIND;
        attn_back(o, of);
    }
    backend_reset(be, mark);
}

static void cpu_attention_backward(Backend *be, CT *dq, CT *dk, CT *dv, CT *dout, CT *q, CT *k,
                                   CT *v, CT *o, CT *lse, const BackendAttn *a) {
    FlashAttn f = flash_of(q, k, a);
    size_t mark = backend_mark(be);
    float *qf = attn_f32(be, q), *kf = attn_f32(be, k), *vf = attn_f32(be, v);
    float *of = attn_f32(be, o), *gf = attn_f32(be, dout);
    float *dqf = attn_f32(be, dq), *dkf = attn_f32(be, dk), *dvf = attn_f32(be, dv);
    if (!be->fail_code) {
        BIND;
        nn_flash_backward(dqf, dkf, dvf, gf, qf, kf, vf, of, F(lse), &f);
        UNBIND;
        attn_back(dq, dqf), attn_back(dk, dkf), attn_back(dv, dvf);
    }
    backend_reset(be, mark);
}

/* ---- resampling, concat, loss, optimiser ---------------------------------------------------- */

static void cpu_upsample2x_forward(Backend *be, CT *out, CT *inp) {
    BIND;
    nn_upsample2x_forward(F(out), F(inp), (int)inp->shape[0], (int)inp->shape[1],
                          (int)inp->shape[2], (int)inp->shape[3]);
    UNBIND;
}

static void cpu_upsample2x_backward(Backend *be, CT *dinp, CT *dout) {
    BIND;
    nn_upsample2x_backward(F(dinp), F(dout), (int)dinp->shape[0], (int)dinp->shape[1],
                           (int)dinp->shape[2], (int)dinp->shape[3]);
    UNBIND;
}

/* Ca and Cb of a split whole (B,C,H,W) given either part. */
static void parts(CT *whole, CT *a, CT *b, int *Ca, int *Cb, int *HW) {
    int C = (int)whole->shape[1];
    *Ca = a ? (int)a->shape[1] : C - (int)b->shape[1];
    *Cb = C - *Ca;
    *HW = (int)(whole->shape[2] * whole->shape[3]);
}

static void cpu_concat_forward(Backend *be, CT *out, CT *a, CT *b) {
    int Ca, Cb, HW;
    parts(out, a, b, &Ca, &Cb, &HW);
    BIND;
    nn_channel_concat_forward(F(out), F(a), F(b), (int)out->shape[0], Ca, Cb, HW);
    UNBIND;
}

static void cpu_concat_backward(Backend *be, CT *da, CT *db, CT *dout) {
    int Ca, Cb, HW;
    parts(dout, da, db, &Ca, &Cb, &HW);
    BIND;
    nn_channel_concat_backward(F(da), F(db), F(dout), (int)dout->shape[0], Ca, Cb, HW);
    UNBIND;
}

static void cpu_split_forward(Backend *be, CT *a, CT *b, CT *inp) {
    int Ca, Cb, HW;
    parts(inp, a, b, &Ca, &Cb, &HW);
    BIND;
    nn_channel_split_forward(F(a), F(b), F(inp), (int)inp->shape[0], Ca, Cb, HW);
    UNBIND;
}

static void cpu_split_backward(Backend *be, CT *dinp, CT *da, CT *db) {
    int Ca, Cb, HW;
    parts(dinp, da, db, &Ca, &Cb, &HW);
    BIND;
    nn_channel_split_backward(F(dinp), F(da), F(db), (int)dinp->shape[0], Ca, Cb, HW);
    UNBIND;
}

static void cpu_mse_forward(Backend *be, CT *loss, CT *pred, CT *target) {
    (void)be;
    F(loss)[0] = nn_mse_loss_forward(F(pred), F(target), N_(pred));
}

static void cpu_mse_backward(Backend *be, CT *dpred, CT *dtarget, float dloss, CT *pred,
                             CT *target) {
    (void)be;
    nn_mse_loss_backward(F(dpred), F(dtarget), dloss, F(pred), F(target), N_(pred));
}

static void cpu_adamw(Backend *be, CT *param, CT *grad, CT *m, CT *v, int t, float lr,
                      const AdamWConfig *cfg) {
    BIND;
    optim_adamw_step(F(param), F(grad), F(m), F(v), N_(param), t, lr, cfg, 0);
    UNBIND;
}

const BackendOps backend_cpu_ops = {
    .name = "cpu",
    .close = cpu_close,
    .sync = NULL, /* every CPU op has finished when it returns */
    .malloc_ = cpu_malloc,
    .free_ = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .zero = cpu_zero,
    .convert = cpu_convert,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .groupnorm_forward = cpu_groupnorm_forward,
    .groupnorm_backward = cpu_groupnorm_backward,
    .softmax_forward = cpu_softmax_forward,
    .softmax_backward = cpu_softmax_backward,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .geglu_forward = cpu_geglu_forward,
    .geglu_backward = cpu_geglu_backward,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .upsample2x_forward = cpu_upsample2x_forward,
    .upsample2x_backward = cpu_upsample2x_backward,
    .concat_forward = cpu_concat_forward,
    .concat_backward = cpu_concat_backward,
    .split_forward = cpu_split_forward,
    .split_backward = cpu_split_backward,
    .mse_forward = cpu_mse_forward,
    .mse_backward = cpu_mse_backward,
    .adamw = cpu_adamw,
};

int backend_cpu_open(const BackendConfig *cfg, Backend **out, Err *err) {
    *out = NULL;
    Backend *be = xcalloc(1, sizeof *be);
    be->ops = &backend_cpu_ops;
    be->kind = BACKEND_CPU;
    be->device = TENSOR_DEVICE_CPU;
    size_t bytes = cfg && cfg->arena_bytes ? cfg->arena_bytes : DEFAULT_ARENA;
    int rc = arena_init(&be->arena, bytes, err);
    if (rc) {
        free(be);
        return rc;
    }
    CpuPool *pool = backend_cpu_pool_new(cfg ? cfg->threads : 0, err);
    if (!pool) {
        arena_deinit(&be->arena);
        free(be);
        return err ? err->code : ERR_NOMEM;
    }
    be->impl = pool;
    int n = backend_cpu_pool_threads(pool);
    snprintf(be->name, sizeof be->name, "cpu (%d thread%s)", n, n == 1 ? "" : "s");
    *out = be;
    return 0;
}
