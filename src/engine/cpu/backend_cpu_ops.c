/* backend_cpu_ops — the CPU backend: the ops table over the nn_* reference ops, its own thread
 * pool and its scratch arena. See backend.h.
 *
 * Each op binds the backend's pool to the calling thread for its duration only
 * (backend_cpu_bind: a thread-local, no process-wide state) and restores the caller's choice.
 * Half-precision weights are widened to f32 in tiles of LINEAR_TILE rows from the arena, so a
 * bf16 model never holds an f32 copy of a whole weight matrix (conv2d widens its weight once
 * per op: conv weights are small beside their activations). Half activations (backend.h,
 * DTYPES) are widened in tiles of whole rows of about HALF_TILE_FLOATS floats per tensor (at
 * least one row; a row is an image for conv2d, groupnorm and concat/split): each op
 * runs its nn_* function on one tile at a time in f32 and rounds the tile's outputs back
 * (wid / room / back below). With f32 activations an op is one tile, the nn_* call of old.
 */
#include "backend_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_activation.h"
#include "nn_clip.h"
#include "nn_dropout.h"
#include "nn_elementwise.h"
#include "nn_flash.h"
#include "nn_linear.h"
#include "nn_norm.h"
#include "nn_softmax.h"

#define LINEAR_TILE 64 /* weight rows widened at a time */
#define HALF_TILE_FLOATS ((size_t)1 << 20) /* half activations: floats per widened tile */
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

/* ---- half activations: tiles widened to f32 in the arena ------------------------------------ */

/* Rows per tile when a row of the op's activations is row_floats floats: all rows when they
 * are f32 (no copy), else as many as fit HALF_TILE_FLOATS (at least one). */
static int64_t tile_rows(CT *act, int64_t rows, size_t row_floats) {
    if (act->dtype == DTYPE_F32)
        return rows > 0 ? rows : 1;
    int64_t r = (int64_t)(HALF_TILE_FLOATS / (row_floats ? row_floats : 1));
    return r < 1 ? 1 : r;
}

/* A conversion between f32 and a half dtype, cut over the pool bound to this thread (the
 * op's; none: serial). Elementwise, so the bits do not depend on the cut. */
typedef struct CvtJob {
    float *f;
    uint16_t *h;
    DType dt;
    int to_f32;
} CvtJob;

static void cvt_range(void *ctx, int64_t b, int64_t e) {
    CvtJob *j = ctx;
    if (j->to_f32)
        dtype_to_f32(j->f + b, j->h + b, j->dt, (size_t)(e - b));
    else
        dtype_from_f32(j->h + b, j->dt, j->f + b, (size_t)(e - b));
}

static void cvt(float *f, uint16_t *h, DType dt, size_t n, int to_f32) {
    CvtJob j = {f, h, dt, to_f32};
    backend_cpu_parallel_for((int64_t)n, 32768, cvt_range, &j);
}

/* Elements [off, off+n) of t as f32: t's own memory when it is F32, else widened into the
 * arena. NULL when t is NULL or the arena is full (the backend has failed). */
static float *wid(Backend *be, CT *t, size_t off, size_t n) {
    if (!t)
        return NULL;
    if (t->dtype == DTYPE_F32)
        return (float *)t->ptr + off;
    float *p = scratch(be, n);
    if (p)
        cvt(p, (uint16_t *)t->ptr + off, t->dtype, n, 1);
    return p;
}

/* f32 room for the output elements [off, off+n) of t (t's own memory when F32). */
static float *room(Backend *be, CT *t, size_t off, size_t n) {
    if (!t)
        return NULL;
    return t->dtype == DTYPE_F32 ? (float *)t->ptr + off : scratch(be, n);
}

/* Round the f32 tile f back into t's elements [off, off+n), nearest even; nothing when t is
 * F32 (f is t's memory) or NULL. */
static void back(CT *t, size_t off, const float *f, size_t n) {
    if (t && f && t->dtype != DTYPE_F32)
        cvt((float *)f, (uint16_t *)t->ptr + off, t->dtype, n, 0);
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

/* out (N,OC) = inp·wᵀ + bias on f32 rows; w of any dtype (widened per LINEAR_TILE rows). */
static void linear_fwd_rows(Backend *be, float *out, const float *inp, CT *w, const float *b,
                            int N, int C, int OC) {
    if (nn_clip_linear_avx512() && w->dtype != DTYPE_F16) {
        /* the AVX-512 kernel (nn_clip.h): f32, or bf16 widened while packing; each output one
         * FMA chain in k order whatever the thread count */
        nn_clip_linear_forward(out, inp, w->dtype == DTYPE_F32 ? F(w) : NULL,
                               w->dtype == DTYPE_BF16 ? w->ptr : NULL, b, NULL, N, C, OC);
        return;
    }
    if (w->dtype == DTYPE_F32) {
        nn_linear_forward(out, inp, F(w), b, N, C, OC);
        return;
    }
    size_t mark = backend_mark(be);
    float *wt = scratch(be, (size_t)LINEAR_TILE * (size_t)C);
    for (int o0 = 0; wt && o0 < OC; o0 += LINEAR_TILE) {
        int nt = OC - o0 < LINEAR_TILE ? OC - o0 : LINEAR_TILE;
        dtype_to_f32(wt, (const uint16_t *)w->ptr + (size_t)o0 * C, w->dtype, (size_t)nt * C);
        nn_gemm(0, 1, N, nt, C, inp, C, wt, C, 0.0f, out + o0, OC);
    }
    if (wt && b)
        nn_bias_add_forward(out, out, b, N, OC);
    backend_reset(be, mark);
}

/* The backward of linear_fwd_rows on f32 rows (dweight, dbias F32, added over the calls). */
static void linear_bwd_rows(Backend *be, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, CT *w, int N, int C, int OC) {
    if (w->dtype == DTYPE_F32) {
        nn_linear_backward(dinp, dw, db, dout, inp, F(w), N, C, OC);
        return;
    }
    nn_linear_backward(NULL, dw, db, dout, inp, NULL, N, C, OC);
    if (!dinp)
        return;
    size_t mark = backend_mark(be);
    float *wt = scratch(be, (size_t)LINEAR_TILE * (size_t)C);
    for (int o0 = 0; wt && o0 < OC; o0 += LINEAR_TILE) {
        int nt = OC - o0 < LINEAR_TILE ? OC - o0 : LINEAR_TILE;
        dtype_to_f32(wt, (const uint16_t *)w->ptr + (size_t)o0 * C, w->dtype, (size_t)nt * C);
        nn_gemm(0, 0, N, C, nt, dout + o0, OC, wt, C, 1.0f, dinp, C);
    }
    backend_reset(be, mark);
}

static void cpu_linear_forward(Backend *be, CT *out, CT *inp, CT *w, CT *b) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1], OC = (int)w->shape[0];
    size_t mark = backend_mark(be);
    const float *bf = wid(be, b, 0, (size_t)OC);
    int64_t tr = tile_rows(inp, N, (size_t)C + (size_t)OC);
    BIND;
    for (int64_t n0 = 0; n0 < N && !be->fail_code; n0 += tr) {
        int nr = (int)(N - n0 < tr ? N - n0 : tr);
        size_t m2 = backend_mark(be);
        const float *x = wid(be, inp, (size_t)n0 * C, (size_t)nr * C);
        float *o = room(be, out, (size_t)n0 * OC, (size_t)nr * OC);
        if (!be->fail_code) {
            linear_fwd_rows(be, o, x, w, bf, nr, C, OC);
            back(out, (size_t)n0 * OC, o, (size_t)nr * OC);
        }
        backend_reset(be, m2);
    }
    UNBIND;
    backend_reset(be, mark);
}

static void cpu_linear_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                CT *w) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1], OC = (int)w->shape[0];
    int64_t tr = tile_rows(inp, N, 2 * (size_t)C + (size_t)OC);
    BIND;
    for (int64_t n0 = 0; n0 < N && !be->fail_code; n0 += tr) {
        int nr = (int)(N - n0 < tr ? N - n0 : tr);
        size_t mark = backend_mark(be);
        const float *x = dw ? wid(be, inp, (size_t)n0 * C, (size_t)nr * C) : NULL;
        const float *d = wid(be, dout, (size_t)n0 * OC, (size_t)nr * OC);
        float *dx = wid(be, dinp, (size_t)n0 * C, (size_t)nr * C);
        if (!be->fail_code) {
            linear_bwd_rows(be, dx, F(dw), F(db), d, x, w, nr, C, OC);
            back(dinp, (size_t)n0 * C, dx, (size_t)nr * C);
        }
        backend_reset(be, mark);
    }
    UNBIND;
}

static void cpu_matmul_forward(Backend *be, CT *out, CT *a, CT *b) {
    int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    size_t mark = backend_mark(be);
    const float *bf = wid(be, b, 0, (size_t)K * N);
    int64_t tr = tile_rows(a, M, (size_t)K + (size_t)N);
    BIND;
    for (int64_t m0 = 0; m0 < M && !be->fail_code; m0 += tr) {
        int mr = (int)(M - m0 < tr ? M - m0 : tr);
        size_t m2 = backend_mark(be);
        const float *x = wid(be, a, (size_t)m0 * K, (size_t)mr * K);
        float *o = room(be, out, (size_t)m0 * N, (size_t)mr * N);
        if (!be->fail_code) {
            nn_matmul_forward(o, x, bf, mr, K, N);
            back(out, (size_t)m0 * N, o, (size_t)mr * N);
        }
        backend_reset(be, m2);
    }
    UNBIND;
    backend_reset(be, mark);
}

static void cpu_matmul_backward(Backend *be, CT *da, CT *db, CT *dout, CT *a, CT *b) {
    int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    size_t mark = backend_mark(be);
    const float *bf = da ? wid(be, b, 0, (size_t)K * N) : NULL;
    float *dbf = wid(be, db, 0, (size_t)K * N); /* added into over the tiles, rounded once */
    int64_t tr = tile_rows(a, M, 2 * (size_t)K + (size_t)N);
    BIND;
    for (int64_t m0 = 0; m0 < M && !be->fail_code; m0 += tr) {
        int mr = (int)(M - m0 < tr ? M - m0 : tr);
        size_t m2 = backend_mark(be);
        const float *x = db ? wid(be, a, (size_t)m0 * K, (size_t)mr * K) : NULL;
        const float *d = wid(be, dout, (size_t)m0 * N, (size_t)mr * N);
        float *dx = wid(be, da, (size_t)m0 * K, (size_t)mr * K);
        if (!be->fail_code) {
            nn_matmul_backward(dx, dbf, d, x, bf, mr, K, N);
            back(da, (size_t)m0 * K, dx, (size_t)mr * K);
        }
        backend_reset(be, m2);
    }
    UNBIND;
    if (!be->fail_code)
        back(db, 0, dbf, (size_t)K * N);
    backend_reset(be, mark);
}

/* ---- normalisation -------------------------------------------------------------------------- */

static void cpu_layernorm_forward(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w,
                                  CT *b, float eps) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1];
    size_t mark = backend_mark(be);
    const float *wf = wid(be, w, 0, (size_t)C), *bf = wid(be, b, 0, (size_t)C);
    int64_t tr = tile_rows(inp, N, 2 * (size_t)C);
    BIND;
    for (int64_t n0 = 0; n0 < N && !be->fail_code; n0 += tr) {
        int nr = (int)(N - n0 < tr ? N - n0 : tr);
        size_t m2 = backend_mark(be), off = (size_t)n0 * C, n = (size_t)nr * C;
        const float *x = wid(be, inp, off, n);
        float *o = room(be, out, off, n);
        if (!be->fail_code) {
            nn_layernorm_forward(o, F(mean) + n0, F(rstd) + n0, x, wf, bf, nr, C, eps);
            back(out, off, o, n);
        }
        backend_reset(be, m2);
    }
    UNBIND;
    backend_reset(be, mark);
}

static void cpu_layernorm_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                   CT *w, CT *mean, CT *rstd) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1];
    size_t mark = backend_mark(be);
    const float *wf = wid(be, w, 0, (size_t)C);
    int64_t tr = tile_rows(inp, N, 3 * (size_t)C);
    BIND;
    for (int64_t n0 = 0; n0 < N && !be->fail_code; n0 += tr) {
        int nr = (int)(N - n0 < tr ? N - n0 : tr);
        size_t m2 = backend_mark(be), off = (size_t)n0 * C, n = (size_t)nr * C;
        const float *x = wid(be, inp, off, n), *d = wid(be, dout, off, n);
        float *dx = wid(be, dinp, off, n);
        if (!be->fail_code) {
            nn_layernorm_backward(dx, F(dw), F(db), d, x, wf, F(mean) + n0, F(rstd) + n0, nr,
                                  C);
            back(dinp, off, dx, n);
        }
        backend_reset(be, m2);
    }
    UNBIND;
    backend_reset(be, mark);
}

static void cpu_groupnorm_forward(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w,
                                  CT *b, int G, float eps) {
    int B = (int)inp->shape[0], C = (int)inp->shape[1], HW = (int)(inp->shape[2] * inp->shape[3]);
    size_t img = (size_t)C * HW, mark = backend_mark(be);
    const float *wf = wid(be, w, 0, (size_t)C), *bf = wid(be, b, 0, (size_t)C);
    int64_t tr = tile_rows(inp, B, 2 * img);
    BIND;
    for (int64_t b0 = 0; b0 < B && !be->fail_code; b0 += tr) {
        int br = (int)(B - b0 < tr ? B - b0 : tr);
        size_t m2 = backend_mark(be), off = (size_t)b0 * img, n = (size_t)br * img;
        const float *x = wid(be, inp, off, n);
        float *o = room(be, out, off, n);
        if (!be->fail_code) {
            nn_groupnorm_forward(o, F(mean) + b0 * G, F(rstd) + b0 * G, x, wf, bf, br, C, HW, G,
                                 eps);
            back(out, off, o, n);
        }
        backend_reset(be, m2);
    }
    UNBIND;
    backend_reset(be, mark);
}

static void cpu_groupnorm_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                   CT *w, CT *mean, CT *rstd, int G) {
    int B = (int)inp->shape[0], C = (int)inp->shape[1], HW = (int)(inp->shape[2] * inp->shape[3]);
    size_t img = (size_t)C * HW, mark = backend_mark(be);
    const float *wf = wid(be, w, 0, (size_t)C);
    int64_t tr = tile_rows(inp, B, 3 * img);
    BIND;
    for (int64_t b0 = 0; b0 < B && !be->fail_code; b0 += tr) {
        int br = (int)(B - b0 < tr ? B - b0 : tr);
        size_t m2 = backend_mark(be), off = (size_t)b0 * img, n = (size_t)br * img;
        const float *x = wid(be, inp, off, n), *d = wid(be, dout, off, n);
        float *dx = wid(be, dinp, off, n);
        if (!be->fail_code) {
            nn_groupnorm_backward(dx, F(dw), F(db), d, x, wf, F(mean) + b0 * G,
                                  F(rstd) + b0 * G, br, C, HW, G);
            back(dinp, off, dx, n);
        }
        backend_reset(be, m2);
    }
    UNBIND;
    backend_reset(be, mark);
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

/* GELU (erf) and QuickGELU forward: nn_clip.h's vectorised forms (within 3e-7·|x| and 1e-6
 * relative of the libm ones; erff alone was a third of a CLIP block), split over the pool. */
typedef struct FastAct {
    float *out;
    const float *inp;
    int quick;
} FastAct;

static void fast_act_range(void *ctx, int64_t b, int64_t e) {
    const FastAct *a = ctx;
    if (a->quick)
        nn_clip_quickgelu_forward(a->out + b, a->inp + b, (size_t)(e - b));
    else
        nn_clip_gelu_forward(a->out + b, a->inp + b, (size_t)(e - b));
}

static void fast_act(float *out, const float *inp, size_t n, int quick) {
    FastAct a = {out, inp, quick};
    backend_cpu_parallel_for((int64_t)n, 16384, fast_act_range, &a);
}

static void act_rows(float *out, const float *inp, size_t n, BackendAct act) {
    if (act == BACKEND_ACT_SILU)
        nn_silu_forward(out, inp, n);
    else if (act == BACKEND_ACT_QUICKGELU || act == BACKEND_ACT_GELU)
        fast_act(out, inp, n, act == BACKEND_ACT_QUICKGELU);
    else
        nn_gelu_mode_forward(out, inp, n, NN_GELU_TANH);
}

static void act_rows_backward(float *dinp, const float *dout, const float *inp, size_t n,
                              BackendAct act) {
    if (act == BACKEND_ACT_SILU)
        nn_silu_backward(dinp, dout, inp, n);
    else if (act == BACKEND_ACT_QUICKGELU)
        nn_quickgelu_backward(dinp, dout, inp, n);
    else
        nn_gelu_mode_backward(dinp, dout, inp, n,
                              act == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF);
}

static void cpu_act_forward(Backend *be, BackendAct act, CT *out, CT *inp) {
    int64_t n = tensor_numel(inp), tr = tile_rows(inp, n, 2);
    BIND;
    for (int64_t i0 = 0; i0 < n && !be->fail_code; i0 += tr) {
        size_t nr = (size_t)(n - i0 < tr ? n - i0 : tr), mark = backend_mark(be);
        const float *x = wid(be, inp, (size_t)i0, nr);
        float *o = room(be, out, (size_t)i0, nr);
        if (!be->fail_code) {
            act_rows(o, x, nr, act);
            back(out, (size_t)i0, o, nr);
        }
        backend_reset(be, mark);
    }
    UNBIND;
}

static void cpu_act_backward(Backend *be, BackendAct act, CT *dinp, CT *dout, CT *inp) {
    if (!dinp)
        return;
    int64_t n = tensor_numel(inp), tr = tile_rows(inp, n, 3);
    BIND;
    for (int64_t i0 = 0; i0 < n && !be->fail_code; i0 += tr) {
        size_t nr = (size_t)(n - i0 < tr ? n - i0 : tr), mark = backend_mark(be);
        const float *x = wid(be, inp, (size_t)i0, nr), *d = wid(be, dout, (size_t)i0, nr);
        float *dx = wid(be, dinp, (size_t)i0, nr);
        if (!be->fail_code) {
            act_rows_backward(dx, d, x, nr, act);
            back(dinp, (size_t)i0, dx, nr);
        }
        backend_reset(be, mark);
    }
    UNBIND;
}

static void cpu_geglu_forward(Backend *be, BackendAct gelu, CT *out, CT *inp) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1] / 2;
    int64_t tr = tile_rows(inp, N, 3 * (size_t)C);
    BIND;
    for (int64_t n0 = 0; n0 < N && !be->fail_code; n0 += tr) {
        int nr = (int)(N - n0 < tr ? N - n0 : tr);
        size_t mark = backend_mark(be);
        const float *x = wid(be, inp, (size_t)n0 * 2 * C, (size_t)nr * 2 * C);
        float *o = room(be, out, (size_t)n0 * C, (size_t)nr * C);
        if (!be->fail_code) {
            nn_geglu_forward(o, x, nr, C,
                             gelu == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF);
            back(out, (size_t)n0 * C, o, (size_t)nr * C);
        }
        backend_reset(be, mark);
    }
    UNBIND;
}

static void cpu_geglu_backward(Backend *be, BackendAct gelu, CT *dinp, CT *dout, CT *inp) {
    if (!dinp)
        return;
    int N = (int)inp->shape[0], C = (int)inp->shape[1] / 2;
    int64_t tr = tile_rows(inp, N, 5 * (size_t)C);
    BIND;
    for (int64_t n0 = 0; n0 < N && !be->fail_code; n0 += tr) {
        int nr = (int)(N - n0 < tr ? N - n0 : tr);
        size_t mark = backend_mark(be), off = (size_t)n0 * 2 * C, n = (size_t)nr * 2 * C;
        const float *x = wid(be, inp, off, n);
        const float *d = wid(be, dout, (size_t)n0 * C, (size_t)nr * C);
        float *dx = wid(be, dinp, off, n);
        if (!be->fail_code) {
            nn_geglu_backward(dx, d, x, nr, C,
                              gelu == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF);
            back(dinp, off, dx, n);
        }
        backend_reset(be, mark);
    }
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
    const float *wf = f32_weight(be, w), *bf = wid(be, b, 0, (size_t)s->OC);
    size_t img = (size_t)s->C * s->H * s->W;
    size_t oimg = (size_t)s->OC * nn_conv2d_out_h(s) * nn_conv2d_out_w(s);
    int64_t tr = tile_rows(inp, s->B, img + oimg);
    BIND;
    for (int64_t b0 = 0; b0 < s->B && wf && !be->fail_code; b0 += tr) {
        ConvShape t = *s;
        t.B = (int)(s->B - b0 < tr ? s->B - b0 : tr);
        size_t m2 = backend_mark(be), ns = nn_conv2d_scratch_floats(&t);
        const float *x = wid(be, inp, (size_t)b0 * img, (size_t)t.B * img);
        float *o = room(be, out, (size_t)b0 * oimg, (size_t)t.B * oimg);
        float *sc = ns ? scratch(be, ns) : NULL;
        if (!be->fail_code) {
            nn_conv2d_forward(o, sc, x, wf, bf, &t);
            back(out, (size_t)b0 * oimg, o, (size_t)t.B * oimg);
        }
        backend_reset(be, m2);
    }
    UNBIND;
    backend_reset(be, mark);
}

static void cpu_conv2d_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w,
                                const ConvShape *s) {
    size_t mark = backend_mark(be);
    const float *wf = f32_weight(be, w);
    size_t img = (size_t)s->C * s->H * s->W;
    size_t oimg = (size_t)s->OC * nn_conv2d_out_h(s) * nn_conv2d_out_w(s);
    int64_t tr = tile_rows(inp, s->B, 2 * img + oimg);
    BIND;
    for (int64_t b0 = 0; b0 < s->B && wf && !be->fail_code; b0 += tr) {
        ConvShape t = *s;
        t.B = (int)(s->B - b0 < tr ? s->B - b0 : tr);
        size_t m2 = backend_mark(be), ns = nn_conv2d_scratch_floats(&t);
        const float *x = wid(be, inp, (size_t)b0 * img, (size_t)t.B * img);
        const float *d = wid(be, dout, (size_t)b0 * oimg, (size_t)t.B * oimg);
        float *dx = wid(be, dinp, (size_t)b0 * img, (size_t)t.B * img);
        float *sc = ns ? scratch(be, ns) : NULL;
        if (!be->fail_code) {
            nn_conv2d_backward(dx, F(dw), F(db), sc, d, x, wf, &t);
            back(dinp, (size_t)b0 * img, dx, (size_t)t.B * img);
        }
        backend_reset(be, m2);
    }
    UNBIND;
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
    int BC = (int)(inp->shape[0] * inp->shape[1]), H = (int)inp->shape[2], W = (int)inp->shape[3];
    size_t plane = (size_t)H * W;
    int64_t tr = tile_rows(inp, BC, 5 * plane);
    BIND;
    for (int64_t p0 = 0; p0 < BC && !be->fail_code; p0 += tr) {
        int pr = (int)(BC - p0 < tr ? BC - p0 : tr);
        size_t mark = backend_mark(be);
        const float *x = wid(be, inp, (size_t)p0 * plane, (size_t)pr * plane);
        float *o = room(be, out, (size_t)p0 * 4 * plane, (size_t)pr * 4 * plane);
        if (!be->fail_code) {
            nn_upsample2x_forward(o, x, 1, pr, H, W);
            back(out, (size_t)p0 * 4 * plane, o, (size_t)pr * 4 * plane);
        }
        backend_reset(be, mark);
    }
    UNBIND;
}

static void cpu_upsample2x_backward(Backend *be, CT *dinp, CT *dout) {
    int BC = (int)(dinp->shape[0] * dinp->shape[1]), H = (int)dinp->shape[2];
    int W = (int)dinp->shape[3];
    size_t plane = (size_t)H * W;
    int64_t tr = tile_rows(dinp, BC, 5 * plane);
    BIND;
    for (int64_t p0 = 0; p0 < BC && !be->fail_code; p0 += tr) {
        int pr = (int)(BC - p0 < tr ? BC - p0 : tr);
        size_t mark = backend_mark(be);
        const float *d = wid(be, dout, (size_t)p0 * 4 * plane, (size_t)pr * 4 * plane);
        float *dx = wid(be, dinp, (size_t)p0 * plane, (size_t)pr * plane);
        if (!be->fail_code) {
            nn_upsample2x_backward(dx, d, 1, pr, H, W);
            back(dinp, (size_t)p0 * plane, dx, (size_t)pr * plane);
        }
        backend_reset(be, mark);
    }
    UNBIND;
}

/* Ca and Cb of a split whole (B,C,H,W) given either part. */
static void parts(CT *whole, CT *a, CT *b, int *Ca, int *Cb, int *HW) {
    int C = (int)whole->shape[1];
    *Ca = a ? (int)a->shape[1] : C - (int)b->shape[1];
    *Cb = C - *Ca;
    *HW = (int)(whole->shape[2] * whole->shape[3]);
}

/* One tile of images [b0, b0+nb) of a concat/split: whole (B,Ca+Cb,HW) and its parts, f32. */
typedef struct CatTile {
    float *whole, *a, *b;
} CatTile;

/* Concat and split move values between the whole and its parts (dir: 0 whole <- parts, 1
 * parts <- whole); `add` is a backward (+=). Widening then rounding a copied half value is
 * exact, so only a sum (a backward) rounds. */
static void cat_tiles(Backend *be, CT *whole, CT *a, CT *b, int dir, int add) {
    int Ca, Cb, HW;
    parts(whole, a, b, &Ca, &Cb, &HW);
    int B = (int)whole->shape[0];
    size_t wi = (size_t)(Ca + Cb) * HW, ai = (size_t)Ca * HW, bi = (size_t)Cb * HW;
    int64_t tr = tile_rows(whole, B, 2 * wi);
    BIND;
    for (int64_t b0 = 0; b0 < B && !be->fail_code; b0 += tr) {
        int nb = (int)(B - b0 < tr ? B - b0 : tr);
        size_t mark = backend_mark(be);
        /* what is read is widened; what is written starts widened only when added into */
        int read_whole = dir == 1, whole_in = read_whole || add, parts_in = !read_whole || add;
        CatTile t;
        t.whole = whole_in ? wid(be, whole, (size_t)b0 * wi, (size_t)nb * wi)
                           : room(be, whole, (size_t)b0 * wi, (size_t)nb * wi);
        t.a = parts_in ? wid(be, a, (size_t)b0 * ai, (size_t)nb * ai)
                       : room(be, a, (size_t)b0 * ai, (size_t)nb * ai);
        t.b = parts_in ? wid(be, b, (size_t)b0 * bi, (size_t)nb * bi)
                       : room(be, b, (size_t)b0 * bi, (size_t)nb * bi);
        if (!be->fail_code) {
            if (dir == 0 && !add)
                nn_channel_concat_forward(t.whole, t.a, t.b, nb, Ca, Cb, HW);
            else if (dir == 0)
                nn_channel_split_backward(t.whole, t.a, t.b, nb, Ca, Cb, HW);
            else if (!add)
                nn_channel_split_forward(t.a, t.b, t.whole, nb, Ca, Cb, HW);
            else
                nn_channel_concat_backward(t.a, t.b, t.whole, nb, Ca, Cb, HW);
            if (dir == 0) {
                back(whole, (size_t)b0 * wi, t.whole, (size_t)nb * wi);
            } else {
                back(a, (size_t)b0 * ai, t.a, (size_t)nb * ai);
                back(b, (size_t)b0 * bi, t.b, (size_t)nb * bi);
            }
        }
        backend_reset(be, mark);
    }
    UNBIND;
}

static void cpu_concat_forward(Backend *be, CT *out, CT *a, CT *b) {
    cat_tiles(be, out, a, b, 0, 0);
}

static void cpu_concat_backward(Backend *be, CT *da, CT *db, CT *dout) {
    cat_tiles(be, dout, da, db, 1, 1);
}

static void cpu_split_forward(Backend *be, CT *a, CT *b, CT *inp) {
    cat_tiles(be, inp, a, b, 1, 0);
}

static void cpu_split_backward(Backend *be, CT *dinp, CT *da, CT *db) {
    cat_tiles(be, dinp, da, db, 0, 1);
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

/* ---- ops of the reward model ---------------------------------------------------------------- */

static void cpu_gemm(Backend *be, CT *c, CT *a, CT *b, const BackendGemm *g) {
    if (g->M == 0 || g->N == 0)
        return;
    BIND;
    nn_gemm(g->trans_a, g->trans_b, g->M, g->N, g->K, F(a) + g->a_off, g->lda, F(b) + g->b_off,
            g->ldb, g->beta, F(c) + g->c_off, g->ldc);
    UNBIND;
}

static void cpu_relu_forward(Backend *be, CT *out, CT *inp) {
    BIND;
    nn_relu_forward(F(out), F(inp), N_(inp));
    UNBIND;
}

static void cpu_relu_backward(Backend *be, CT *dinp, CT *dout, CT *out) {
    BIND;
    nn_relu_backward(F(dinp), F(dout), F(out), N_(out));
    UNBIND;
}

static void cpu_dropout_forward(Backend *be, CT *out, CT *inp, float p, uint64_t seed) {
    BIND;
    nn_dropout_forward(F(out), F(inp), p, seed, N_(inp));
    UNBIND;
}

static void cpu_dropout_backward(Backend *be, CT *dinp, CT *dout, float p, uint64_t seed) {
    BIND;
    nn_dropout_backward(F(dinp), F(dout), p, seed, N_(dout));
    UNBIND;
}

static void cpu_scale(Backend *be, CT *out, CT *a, float s) {
    BIND;
    nn_scale_forward(F(out), F(a), s, N_(a));
    UNBIND;
}

static void cpu_add(Backend *be, CT *out, CT *a, CT *b) {
    BIND;
    nn_add_forward(F(out), F(a), F(b), N_(a));
    UNBIND;
}

/* ---- ops of CLIP ---------------------------------------------------------------------------- */

static void cpu_add_rows(Backend *be, CT *out, CT *inp, CT *rows) {
    (void)be;
    size_t blk = N_(rows), n = N_(inp);
    for (size_t i = 0; i < n; i += blk)
        nn_add_forward(F(out) + i, F(inp) + i, F(rows), blk);
}

static void cpu_gather_rows(Backend *be, CT *out, CT *table, const int *idx) {
    (void)be;
    size_t C = (size_t)table->shape[1], es = dtype_size(table->dtype);
    for (int64_t m = 0; m < out->shape[0]; m++) {
        float *o = F(out) + (size_t)m * C;
        const void *src = (const char *)table->ptr + (size_t)(idx[m] < 0 ? 0 : idx[m]) * C * es;
        if (idx[m] < 0)
            memset(o, 0, C * sizeof(float));
        else if (table->dtype == DTYPE_F32)
            memcpy(o, src, C * sizeof(float));
        else
            dtype_to_f32(o, src, table->dtype, C);
    }
}

static void cpu_l2norm_forward(Backend *be, CT *out, CT *norm, CT *inp, float eps) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1];
    size_t mark = backend_mark(be);
    float *nr = norm ? F(norm) : scratch(be, (size_t)(N ? N : 1));
    if (nr)
        nn_l2norm_forward(F(out), nr, F(inp), N, C, eps);
    backend_reset(be, mark);
}

/* ---- ops of the UNet ------------------------------------------------------------------------ */

typedef struct UnetAddJob {
    float *out;
    const float *a, *b, *chan;
    int64_t S;
} UnetAddJob;

/* Rows [r0, r1) of the (B·C, S) view: a row is one channel of one image. */
static void unet_add_rows(void *ctx, int64_t r0, int64_t r1) {
    const UnetAddJob *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        float c = j->chan ? j->chan[r] : 0.0f;
        const float *a = j->a + r * j->S, *b = j->b ? j->b + r * j->S : NULL;
        float *o = j->out + r * j->S;
        if (b)
            for (int64_t s = 0; s < j->S; s++)
                o[s] = a[s] + b[s] + c;
        else
            for (int64_t s = 0; s < j->S; s++)
                o[s] = a[s] + c;
    }
}

static void cpu_unet_add(Backend *be, CT *out, CT *a, CT *b, CT *chan) {
    UnetAddJob j = {out->ptr, a->ptr, b ? (const float *)b->ptr : NULL,
                    chan ? (const float *)chan->ptr : NULL, a->shape[2]};
    BIND;
    backend_cpu_parallel_for(a->shape[0] * a->shape[1], 1 + 16384 / (j.S + 1), unet_add_rows, &j);
    UNBIND;
}

typedef struct UnetTrJob {
    float *out;
    const float *inp;
    int64_t R, C, tiles_c; /* tiles of 32×32 over (R, C), per image */
} UnetTrJob;

/* Tiles [t0, t1) over (B, R/32, C/32) so that reads and writes stay in cache. */
static void unet_tr_tiles(void *ctx, int64_t t0, int64_t t1) {
    const UnetTrJob *j = ctx;
    int64_t tiles_r = (j->R + 31) / 32, per = tiles_r * j->tiles_c;
    for (int64_t t = t0; t < t1; t++) {
        int64_t bi = t / per, rt = (t % per) / j->tiles_c, ct = t % j->tiles_c;
        const float *in = j->inp + bi * j->R * j->C;
        float *o = j->out + bi * j->R * j->C;
        int64_t r1 = rt * 32 + 32 < j->R ? rt * 32 + 32 : j->R;
        int64_t c1 = ct * 32 + 32 < j->C ? ct * 32 + 32 : j->C;
        for (int64_t c = ct * 32; c < c1; c++)
            for (int64_t r = rt * 32; r < r1; r++)
                o[c * j->R + r] = in[r * j->C + c];
    }
}

static void cpu_unet_transpose(Backend *be, CT *out, CT *inp) {
    UnetTrJob j = {out->ptr, inp->ptr, inp->shape[1], inp->shape[2], (inp->shape[2] + 31) / 32};
    int64_t n = inp->shape[0] * ((j.R + 31) / 32) * j.tiles_c;
    BIND;
    backend_cpu_parallel_for(n, 4, unet_tr_tiles, &j);
    UNBIND;
}

/* upsample_nearest: PyTorch's nearest source index (backend.h), in float as torch computes it. */
static int64_t nearest_src(int64_t o, int64_t in, int64_t out) {
    if (out == in)
        return o;
    if (out == 2 * in)
        return o >> 1;
    int64_t s = (int64_t)floorf((float)o * ((float)in / (float)out));
    return s < in - 1 ? s : in - 1;
}

typedef struct NearestJob {
    float *dst;
    const float *src;
    int64_t H, W, Ho, Wo; /* the input's and the output's planes */
    int64_t *ys, *xs;     /* source row per output row, column per output column */
} NearestJob;

static void nearest_fwd_planes(void *ctx, int64_t p0, int64_t p1) {
    const NearestJob *j = ctx;
    for (int64_t p = p0; p < p1; p++) {
        const float *in = j->src + p * j->H * j->W;
        float *o = j->dst + p * j->Ho * j->Wo;
        for (int64_t y = 0; y < j->Ho; y++)
            for (int64_t x = 0; x < j->Wo; x++)
                o[y * j->Wo + x] = in[j->ys[y] * j->W + j->xs[x]];
    }
}

/* dst is dinp (H,W planes), src dout (Ho,Wo planes): each plane's sums in output order. */
static void nearest_bwd_planes(void *ctx, int64_t p0, int64_t p1) {
    const NearestJob *j = ctx;
    for (int64_t p = p0; p < p1; p++) {
        float *d = j->dst + p * j->H * j->W;
        const float *g = j->src + p * j->Ho * j->Wo;
        for (int64_t y = 0; y < j->Ho; y++)
            for (int64_t x = 0; x < j->Wo; x++)
                d[j->ys[y] * j->W + j->xs[x]] += g[y * j->Wo + x];
    }
}

static void cpu_upsample_nearest(Backend *be, CT *big, CT *small, int bwd) {
    /* big: out / dout (Ho,Wo); small: inp / dinp (H,W) */
    NearestJob j = {bwd ? small->ptr : big->ptr, bwd ? big->ptr : small->ptr, small->shape[2],
                    small->shape[3], big->shape[2], big->shape[3], NULL, NULL};
    size_t m = backend_mark(be);
    j.ys = (int64_t *)scratch(be, 2 * (size_t)(j.Ho + j.Wo)); /* Ho + Wo int64s */
    if (!j.ys)
        return;
    j.xs = j.ys + j.Ho;
    for (int64_t y = 0; y < j.Ho; y++)
        j.ys[y] = nearest_src(y, j.H, j.Ho);
    for (int64_t x = 0; x < j.Wo; x++)
        j.xs[x] = nearest_src(x, j.W, j.Wo);
    BIND;
    backend_cpu_parallel_for(small->shape[0] * small->shape[1], 1 + 16384 / (j.Ho * j.Wo + 1),
                             bwd ? nearest_bwd_planes : nearest_fwd_planes, &j);
    UNBIND;
    backend_reset(be, m);
}

static void cpu_upsample_nearest_forward(Backend *be, CT *out, CT *inp) {
    cpu_upsample_nearest(be, out, inp, 0);
}

static void cpu_upsample_nearest_backward(Backend *be, CT *dinp, CT *dout) {
    cpu_upsample_nearest(be, dout, dinp, 1);
}

/* ---- ops of the VAE (add, unet_transpose: above) --------------------------------------------- */

typedef struct PadCtx {
    float *out;
    const float *inp;
    int64_t H, W, Ho, Wo;
    int top, left;
} PadCtx;

/* Over the B·C·Ho output rows. */
static void pad_range(void *ctx, int64_t lo, int64_t hi) {
    PadCtx *c = ctx;
    for (int64_t r = lo; r < hi; r++) {
        int64_t p = r / c->Ho, y = r % c->Ho - c->top;
        float *o = c->out + r * c->Wo;
        if (y < 0 || y >= c->H) {
            memset(o, 0, sizeof(float) * (size_t)c->Wo);
            continue;
        }
        const float *x = c->inp + (p * c->H + y) * c->W;
        for (int64_t xo = 0; xo < c->Wo; xo++) {
            int64_t xi = xo - c->left;
            o[xo] = xi >= 0 && xi < c->W ? x[xi] : 0.0f;
        }
    }
}

static void cpu_pad2d_forward(Backend *be, CT *out, CT *inp, int top, int left) {
    PadCtx c = {F(out), F(inp), inp->shape[2], inp->shape[3], out->shape[2], out->shape[3],
                top, left};
    BIND;
    backend_cpu_parallel_for(out->shape[0] * out->shape[1] * out->shape[2], 256, pad_range, &c);
    UNBIND;
}

/* ---- ops of DoRA (issue 16) ------------------------------------------------------------------ */

static float dora_ld(const void *p, size_t i, DType dt) {
    if (dt == DTYPE_F16)
        return f16_to_f32(((const uint16_t *)p)[i]);
    if (dt == DTYPE_BF16)
        return bf16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

typedef struct DoraNormCtx {
    float *norm;
    const void *w;
    DType wdt;
    const float *B, *A; /* NULL: the weight alone */
    int64_t K, r;
    float s;
} DoraNormCtx;

static void dora_norm_rows(void *ctx, int64_t o0, int64_t o1) {
    const DoraNormCtx *c = ctx;
    for (int64_t o = o0; o < o1; o++) {
        double acc = 0;
        const float *b = c->B ? c->B + o * c->r : NULL;
        for (int64_t k = 0; k < c->K; k++) {
            double v = dora_ld(c->w, (size_t)(o * c->K + k), c->wdt);
            if (b) {
                float ba = 0.0f;
                for (int64_t q = 0; q < c->r; q++)
                    ba += b[q] * c->A[q * c->K + k];
                v += (double)(c->s * ba);
            }
            acc += v * v;
        }
        c->norm[o] = (float)sqrt(acc);
    }
}

static void cpu_dora_norm(Backend *be, CT *norm, CT *weight, CT *B, CT *A, float s) {
    int64_t OC = norm->shape[0];
    DoraNormCtx c = {F(norm), weight->ptr, weight->dtype, B ? F(B) : NULL, A ? F(A) : NULL,
                     OC ? tensor_numel(weight) / OC : 0, A ? A->shape[0] : 0, s};
    BIND;
    backend_cpu_parallel_for(OC, 1 + 65536 / (c.K * (c.r + 1) + 1), dora_norm_rows, &c);
    UNBIND;
}

typedef struct DoraScaleCtx {
    float *out;
    const float *inp, *m, *norm;
    const void *bias;
    DType bdt;
    int64_t C, Q;
} DoraScaleCtx;

static void dora_scale_rows(void *ctx, int64_t r0, int64_t r1) {
    const DoraScaleCtx *c = ctx;
    for (int64_t pc = r0; pc < r1; pc++) {
        int64_t ch = pc % c->C;
        float g = c->m[ch] / c->norm[ch];
        float b = c->bias ? dora_ld(c->bias, (size_t)ch, c->bdt) : 0.0f;
        for (int64_t q = 0; q < c->Q; q++)
            c->out[pc * c->Q + q] = c->inp[pc * c->Q + q] * g + b;
    }
}

/* benchtune16: Q = 1 (a linear layer's (N, C) output): rows p of C channels, no per-element
 * modulo; the same operations per element as dora_scale_rows, so the same bits. */
static void dora_scale_q1(void *ctx, int64_t p0, int64_t p1) {
    const DoraScaleCtx *c = ctx;
    for (int64_t p = p0; p < p1; p++) {
        const float *x = c->inp + p * c->C;
        float *o = c->out + p * c->C;
        for (int64_t ch = 0; ch < c->C; ch++) {
            float g = c->m[ch] / c->norm[ch];
            float b = c->bias ? dora_ld(c->bias, (size_t)ch, c->bdt) : 0.0f;
            o[ch] = x[ch] * g + b;
        }
    }
}

static void cpu_dora_scale(Backend *be, CT *out, CT *inp, CT *m, CT *norm, CT *bias) {
    DoraScaleCtx c = {F(out), F(inp), F(m), F(norm), bias ? bias->ptr : NULL,
                      bias ? bias->dtype : DTYPE_F32, inp->shape[1], inp->shape[2]};
    BIND;
    if (c.Q == 1)
        backend_cpu_parallel_for(inp->shape[0], 1 + 16384 / (c.C + 1), dora_scale_q1, &c);
    else
        backend_cpu_parallel_for(inp->shape[0] * inp->shape[1], 1 + 16384 / (c.Q + 1),
                                 dora_scale_rows, &c);
    UNBIND;
}

typedef struct DoraMagCtx {
    float *dm;
    const float *dout, *y, *norm;
    int64_t P, C, Q;
} DoraMagCtx;

static void dora_mag_chans(void *ctx, int64_t c0, int64_t c1) {
    const DoraMagCtx *c = ctx;
    for (int64_t ch = c0; ch < c1; ch++) {
        double acc = 0;
        for (int64_t p = 0; p < c->P; p++) {
            const float *d = c->dout + (p * c->C + ch) * c->Q, *y = c->y + (p * c->C + ch) * c->Q;
            for (int64_t q = 0; q < c->Q; q++)
                acc += (double)d[q] * y[q];
        }
        c->dm[ch] += (float)(acc / c->norm[ch]);
    }
}

/* benchtune16: Q = 1: 64 channels at a time walked row by row (contiguous reads instead of a
 * stride of C); each channel's sum in the same order (p ascending), so the same bits. */
static void dora_mag_q1(void *ctx, int64_t c0, int64_t c1) {
    const DoraMagCtx *c = ctx;
    for (int64_t b0 = c0; b0 < c1; b0 += 64) {
        int64_t n = c1 - b0 < 64 ? c1 - b0 : 64;
        double acc[64] = {0};
        for (int64_t p = 0; p < c->P; p++) {
            const float *d = c->dout + p * c->C + b0, *y = c->y + p * c->C + b0;
            for (int64_t k = 0; k < n; k++)
                acc[k] += (double)d[k] * y[k];
        }
        for (int64_t k = 0; k < n; k++)
            c->dm[b0 + k] += (float)(acc[k] / c->norm[b0 + k]);
    }
}

static void cpu_dora_mag_backward(Backend *be, CT *dm, CT *dout, CT *y, CT *norm) {
    DoraMagCtx c = {F(dm), F(dout), F(y), F(norm), dout->shape[0], dout->shape[1],
                    dout->shape[2]};
    BIND;
    backend_cpu_parallel_for(c.C, 1 + 16384 / (c.P * c.Q + 1),
                             c.Q == 1 ? dora_mag_q1 : dora_mag_chans, &c);
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
    /* ops of the reward model */
    .gemm = cpu_gemm,
    .relu_forward = cpu_relu_forward,
    .relu_backward = cpu_relu_backward,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .scale = cpu_scale,
    .add = cpu_add,
    /* ops of CLIP (add: above) */
    .add_rows = cpu_add_rows,
    .gather_rows = cpu_gather_rows,
    .l2norm_forward = cpu_l2norm_forward,
    /* ops of the UNet */
    .unet_add = cpu_unet_add,
    .unet_transpose = cpu_unet_transpose,
    .upsample_nearest_forward = cpu_upsample_nearest_forward,
    .upsample_nearest_backward = cpu_upsample_nearest_backward,
    /* ops of the VAE */
    .pad2d_forward = cpu_pad2d_forward,
    /* ops of DoRA */
    .dora_norm = cpu_dora_norm,
    .dora_scale = cpu_dora_scale,
    .dora_mag_backward = cpu_dora_mag_backward,
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
