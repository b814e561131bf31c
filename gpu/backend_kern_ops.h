/* backend_kern_ops — the ops of a backend made of gpu/kern_list.h kernels, written once and
 * included by two backends: the CUDA backend (gpu/backend_cuda.cu: kernels launched on its
 * stream, GEMMs in cuBLAS) and the emulated one (gpu/backend_emu.c: the same kernels on the
 * host emulation harness, GEMMs in nn_gemm), so the argument marshalling the CUDA backend
 * does is tested on every machine (tests/engine/test_nn_backend_ops.c runs every case on both).
 *
 * The including file defines first: NAME_be(be, args) for every kernel of the list (run it or
 * fail the backend), gemm(be, ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc, what) (row-major,
 * as nn_gemm), ones(be, n) (n ones on the device), to_device(be, dst, src, bytes, what)
 * (0 after failing the backend), gemm_half(be, ta, tb, M, N, K, a, lda, b, ldb, dt, beta, c,
 * ldc) (a and b both of half dtype dt, c f32; 1 when done, 0 when the caller must widen).
 * Then its table lists KERN_OPS_POSITIONAL after `convert`.
 * Compiles as C11 and as CUDA C++.
 */
#ifndef EASEL_BACKEND_KERN_OPS_H
#define EASEL_BACKEND_KERN_OPS_H

#include <assert.h>
#include <math.h>
#include <string.h>

#include "backend_impl.h"
#include "kern_list.h"

static_assert(KERN_DT_F32 == DTYPE_F32 && KERN_DT_F16 == DTYPE_F16 && KERN_DT_BF16 == DTYPE_BF16,
              "gpu/kern_convert.h's dtype codes are src/engine/tensor.h's");

static void convert_raw(Backend *be, void *dst, DType ddt, const void *src, DType sdt, long n) {
    ConvertArgs a = {dst, src, n, (int)ddt, (int)sdt};
    convert_dtype_be(be, a);
}

static void kop_convert(Backend *be, CT *dst, CT *src) {
    convert_raw(be, dst->ptr, dst->dtype, src->ptr, src->dtype, (long)tensor_numel(src));
}

#define F(t) ((t) ? (float *)(t)->ptr : (float *)NULL)
#define CF(t) ((t) ? (const float *)(t)->ptr : (const float *)NULL)

// ---- half activations (backend.h, DTYPES) -------------------------------------------------------
// The pointwise, GroupNorm and im2col/col2im kernels take the dtype (kern_pointwise.h,
// kern_norm.h, kern_conv.h). GEMM operands and outputs and LayerNorm are f32 copies widened
// with convert_dtype into the arena (whole tensors; the caller's backend_reset releases
// them): wid for what is read (and a gradient added into), room for what is written, back to
// round a result into its half tensor. On f32 tensors they are the tensor's own memory and
// back does nothing. Half parameters (biases, norm weights) are widened with wid too.

static float *wid(Backend *be, CT *t) {
    if (!t || t->dtype == DTYPE_F32)
        return F(t);
    float *p = (float *)backend_alloc(be, DTYPE_F32, t->n_dims, t->shape).ptr;
    if (p)
        convert_raw(be, p, DTYPE_F32, t->ptr, t->dtype, (long)tensor_numel(t));
    return p;
}

static float *room(Backend *be, CT *t) {
    if (!t || t->dtype == DTYPE_F32)
        return F(t);
    return (float *)backend_alloc(be, DTYPE_F32, t->n_dims, t->shape).ptr;
}

static void back(Backend *be, CT *t, const float *f) {
    if (t && f && t->dtype != DTYPE_F32 && !be->fail_code)
        convert_raw(be, t->ptr, t->dtype, f, DTYPE_F32, (long)tensor_numel(t));
}

// Element i of t, any dtype (NULL for a NULL t).
static void *elem(CT *t, long i) {
    return t ? (void *)((char *)t->ptr + (size_t)i * dtype_size(t->dtype)) : NULL;
}

static void kop_layernorm_forward(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w,
                                      CT *b, float eps) {
    size_t mark = backend_mark(be);
    float *o = room(be, out);
    LayerNormFwdArgs a = {o, F(mean), F(rstd), wid(be, inp), wid(be, w), wid(be, b),
                          (int)inp->shape[0], (int)inp->shape[1], eps};
    layernorm_fwd_be(be, a);
    back(be, out, o);
    backend_reset(be, mark);
}

static void kop_layernorm_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                       CT *w, CT *mean, CT *rstd) {
    size_t mark = backend_mark(be); // half activations widened into the arena, one mark for all
    float *dx = wid(be, dinp);
    LayerNormBwdArgs a = {dx, F(dw), F(db), wid(be, dout), wid(be, inp), wid(be, w), CF(mean),
                          CF(rstd), (int)inp->shape[0], (int)inp->shape[1], NULL, 1};
    layernorm_bwd_dx_be(be, a);
    if (dw || db) {
        a.nsplit = kern_ln_nsplit(a.N, a.C); // parameter gradients in chunks of rows, then summed
        if (a.nsplit > 1) {
            const int64_t shape[3] = {2, a.nsplit, a.C};
            a.part = (float *)backend_alloc(be, DTYPE_F32, 3, shape).ptr;
        }
        layernorm_bwd_params_be(be, a);
        layernorm_bwd_params_sum_be(be, a);
    }
    back(be, dinp, dx);
    backend_reset(be, mark);
}

static void kop_groupnorm_forward(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w,
                                      CT *b, int G, float eps) {
    size_t mark = backend_mark(be); // the kernel takes the activations' dtype; half w, b widened
    GroupNormFwdArgs a = {out->ptr, F(mean), F(rstd), inp->ptr, wid(be, w), wid(be, b),
                          (int)inp->shape[0], (int)inp->shape[1],
                          (int)(inp->shape[2] * inp->shape[3]), G, eps, (int)inp->dtype};
    groupnorm_fwd_be(be, a);
    backend_reset(be, mark);
}

static void kop_groupnorm_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                       CT *w, CT *mean, CT *rstd, int G) {
    size_t mark = backend_mark(be);
    GroupNormBwdArgs a = {dinp ? dinp->ptr : NULL, F(dw), F(db), dout->ptr, inp->ptr,
                          wid(be, w), CF(mean), CF(rstd), (int)inp->shape[0],
                          (int)inp->shape[1], (int)(inp->shape[2] * inp->shape[3]), G,
                          (int)inp->dtype};
    groupnorm_bwd_dx_be(be, a);
    groupnorm_bwd_params_be(be, a);
    backend_reset(be, mark);
}

static void kop_softmax_forward(Backend *be, CT *out, CT *inp) {
    SoftmaxArgs a = {F(out), CF(inp), (int)inp->shape[0], (int)inp->shape[1]};
    softmax_fwd_be(be, a);
}

static void kop_softmax_backward(Backend *be, CT *dinp, CT *dout, CT *out) {
    if (!dinp)
        return;
    SoftmaxBwdArgs a = {F(dinp), CF(dout), CF(out), (int)out->shape[0], (int)out->shape[1]};
    softmax_bwd_be(be, a);
}

static void kop_adamw(Backend *be, CT *param, CT *grad, CT *m, CT *v, int t, float lr,
                          const AdamWConfig *cfg) {
    adamw_be(be, adamw_args(F(param), F(m), F(v), CF(grad), (long)tensor_numel(param), lr,
                            cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, t));
}

// ---- pointwise (gpu/kern_pointwise.h) ----------------------------------------------------------

static_assert(KERN_ACT_GELU == BACKEND_ACT_GELU && KERN_ACT_GELU_TANH == BACKEND_ACT_GELU_TANH &&
                  KERN_ACT_SILU == BACKEND_ACT_SILU && KERN_ACT_QUICKGELU == BACKEND_ACT_QUICKGELU,
              "gpu/kern_pointwise.h's activation codes are src/engine/backend.h's");

static void kop_act_forward(Backend *be, BackendAct act, CT *out, CT *inp) {
    ActArgs a = {out->ptr, inp->ptr, NULL, (long)tensor_numel(inp), (int)act, (int)inp->dtype};
    act_fwd_be(be, a);
}

static void kop_act_backward(Backend *be, BackendAct act, CT *dinp, CT *dout, CT *inp) {
    ActArgs a = {dinp ? dinp->ptr : NULL, inp->ptr, dout->ptr, (long)tensor_numel(inp), (int)act,
                 (int)inp->dtype};
    act_bwd_be(be, a);
}

static void kop_geglu_forward(Backend *be, BackendAct g, CT *out, CT *inp) {
    GegluArgs a = {out->ptr, inp->ptr, NULL, (int)inp->shape[0], (int)inp->shape[1] / 2, (int)g,
                   (int)inp->dtype};
    geglu_fwd_be(be, a);
}

static void kop_geglu_backward(Backend *be, BackendAct g, CT *dinp, CT *dout, CT *inp) {
    GegluArgs a = {dinp ? dinp->ptr : NULL, inp->ptr, dout->ptr, (int)inp->shape[0],
                   (int)inp->shape[1] / 2, (int)g, (int)inp->dtype};
    geglu_bwd_be(be, a);
}

static void kop_upsample2x_forward(Backend *be, CT *out, CT *inp) {
    UpsampleArgs a = {out->ptr, inp->ptr, (int)(inp->shape[0] * inp->shape[1]),
                      (int)inp->shape[2], (int)inp->shape[3], (int)inp->dtype};
    upsample2x_fwd_be(be, a);
}

static void kop_upsample2x_backward(Backend *be, CT *dinp, CT *dout) {
    UpsampleArgs a = {dinp->ptr, dout->ptr, (int)(dinp->shape[0] * dinp->shape[1]),
                      (int)dinp->shape[2], (int)dinp->shape[3], (int)dinp->dtype};
    upsample2x_bwd_be(be, a);
}

// One part of a channel concat/split: whole (B,C,H,W) and a part at channel offset off.
static void chan_part(Backend *be, CT *whole, CT *part, int off, int to_whole, int add) {
    if (!part)
        return;
    int B = (int)whole->shape[0], C = (int)whole->shape[1], Cp = (int)part->shape[1];
    int HW = (int)(whole->shape[2] * whole->shape[3]);
    ChanCopyArgs to = {whole->ptr, part->ptr, B, C, Cp, off, 0, Cp, HW, add, (int)whole->dtype};
    ChanCopyArgs from = {part->ptr, whole->ptr, B, Cp, C, 0, off, Cp, HW, add,
                         (int)whole->dtype};
    chan_copy_be(be, to_whole ? to : from);
}

static int part_a_channels(CT *whole, CT *a, CT *b) {
    return a ? (int)a->shape[1] : (int)(whole->shape[1] - b->shape[1]);
}

static void kop_concat_forward(Backend *be, CT *out, CT *a, CT *b) {
    int Ca = part_a_channels(out, a, b);
    chan_part(be, out, a, 0, 1, 0);
    chan_part(be, out, b, Ca, 1, 0);
}

static void kop_concat_backward(Backend *be, CT *da, CT *db, CT *dout) {
    int Ca = part_a_channels(dout, da, db);
    chan_part(be, dout, da, 0, 0, 1);
    chan_part(be, dout, db, Ca, 0, 1);
}

static void kop_split_forward(Backend *be, CT *a, CT *b, CT *inp) {
    int Ca = part_a_channels(inp, a, b);
    chan_part(be, inp, a, 0, 0, 0);
    chan_part(be, inp, b, Ca, 0, 0);
}

static void kop_split_backward(Backend *be, CT *dinp, CT *da, CT *db) {
    int Ca = part_a_channels(dinp, da, db);
    chan_part(be, dinp, da, 0, 1, 1);
    chan_part(be, dinp, db, Ca, 1, 1);
}

static void kop_mse_forward(Backend *be, CT *loss, CT *pred, CT *target) {
    MseArgs a = {F(loss), NULL, NULL, CF(pred), CF(target), (long)tensor_numel(pred), 0.0f};
    mse_fwd_be(be, a);
}

static void kop_mse_backward(Backend *be, CT *dpred, CT *dtarget, float dloss, CT *pred,
                                 CT *target) {
    MseArgs a = {NULL, F(dpred), F(dtarget), CF(pred), CF(target), (long)tensor_numel(pred),
                 dloss};
    mse_bwd_be(be, a);
}

// The weight as f32 on the device: itself, or widened into the arena (released by the caller's
// backend_reset).
static const float *f32_weight(Backend *be, CT *w) {
    if (w->dtype == DTYPE_F32)
        return (const float *)w->ptr;
    Tensor t = backend_alloc(be, DTYPE_F32, w->n_dims, w->shape);
    if (t.ptr)
        convert_raw(be, t.ptr, DTYPE_F32, w->ptr, w->dtype, (long)tensor_numel(w));
    return (const float *)t.ptr;
}

// c (f32) = beta·c + op(a)·op(b) with a (na elements) and b (nb) both of half dtype dt: cuBLAS
// GemmEx with f32 compute where the backend has it, else both widened into the arena and gemm.
static void gemm_hh(Backend *be, int ta, int tb, int M, int N, int K, const void *a, int lda,
                    long na, const void *b, int ldb, long nb, DType dt, float beta, float *c,
                    int ldc, const char *what) {
    if (be->fail_code || M == 0 || N == 0 ||
        gemm_half(be, ta, tb, M, N, K, a, lda, b, ldb, dt, beta, c, ldc))
        return;
    size_t mark = backend_mark(be);
    const int64_t sa[1] = {na}, sb[1] = {nb};
    float *af = (float *)backend_alloc(be, DTYPE_F32, 1, sa).ptr;
    float *bf = (float *)backend_alloc(be, DTYPE_F32, 1, sb).ptr;
    if (af && bf) {
        convert_raw(be, af, DTYPE_F32, a, dt, na);
        convert_raw(be, bf, DTYPE_F32, b, dt, nb);
        gemm(be, ta, tb, M, N, K, af, lda, bf, ldb, beta, c, ldc, what);
    }
    backend_reset(be, mark);
}

// Half activations × a weight of the same half dtype (cattn): the GEMM reads both as they are
// (gemm_hh) into an f32 accumulator, bias added in f32, out rounded once to its dtype.
static void linear_forward_hh(Backend *be, CT *out, CT *inp, CT *w, CT *b) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1], OC = (int)w->shape[0];
    size_t mark = backend_mark(be);
    const int64_t so[2] = {N, OC};
    float *acc = out->dtype == DTYPE_F32 ? F(out)
                                         : (float *)backend_alloc(be, DTYPE_F32, 2, so).ptr;
    if (acc && b)
        gemm(be, 0, 0, N, OC, 1, ones(be, (size_t)N), 1, wid(be, b), OC, 0.0f, acc, OC,
             "linear_forward bias"); // a half bias widened (the parameters' dtype is free)
    if (acc)
        gemm_hh(be, 0, 1, N, OC, C, inp->ptr, C, (long)N * C, w->ptr, C, (long)OC * C,
                w->dtype, b ? 1.0f : 0.0f, acc, OC, "linear_forward");
    if (acc && acc != F(out))
        convert_raw(be, out->ptr, out->dtype, acc, DTYPE_F32, (long)N * OC);
    backend_reset(be, mark);
}

static void kop_linear_forward(Backend *be, CT *out, CT *inp, CT *w, CT *b) {
    if (inp->dtype != DTYPE_F32 && inp->dtype == w->dtype) {
        linear_forward_hh(be, out, inp, w, b);
        return;
    }
    int N = (int)inp->shape[0], C = (int)inp->shape[1], OC = (int)w->shape[0];
    size_t mark = backend_mark(be);
    const float *wf = f32_weight(be, w), *x = wid(be, inp);
    float *y = room(be, out);
    if (b) { // out = 1·biasᵀ, then += inp·Wᵀ
        const float *o = ones(be, (size_t)N);
        gemm(be, 0, 0, N, OC, 1, o, 1, wid(be, b), OC, 0.0f, y, OC, "linear_forward bias");
        gemm(be, 0, 1, N, OC, C, x, C, wf, C, 1.0f, y, OC, "linear_forward");
    } else {
        gemm(be, 0, 1, N, OC, C, x, C, wf, C, 0.0f, y, OC, "linear_forward");
    }
    back(be, out, y);
    backend_reset(be, mark);
}

static void kop_linear_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                    CT *w) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1], OC = (int)w->shape[0];
    size_t mark = backend_mark(be);
    const float *d = wid(be, dout);
    float *dx = wid(be, dinp);
    if (dinp)
        gemm(be, 0, 0, N, C, OC, d, OC, f32_weight(be, w), C, 1.0f, dx, C,
             "linear_backward dinp");
    if (dw)
        gemm(be, 1, 0, OC, C, N, d, OC, wid(be, inp), C, 1.0f, F(dw), C,
             "linear_backward dweight");
    if (db) // dbias (1,OC) += ones (1,N) · dout (N,OC)
        gemm(be, 0, 0, 1, OC, N, ones(be, (size_t)N), N, d, OC, 1.0f, F(db), OC,
             "linear_backward dbias");
    back(be, dinp, dx);
    backend_reset(be, mark);
}

static void kop_matmul_forward(Backend *be, CT *out, CT *a, CT *b) {
    int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    size_t mark = backend_mark(be);
    float *y = room(be, out);
    gemm(be, 0, 0, M, N, K, wid(be, a), K, wid(be, b), N, 0.0f, y, N, "matmul_forward");
    back(be, out, y);
    backend_reset(be, mark);
}

static void kop_matmul_backward(Backend *be, CT *da, CT *db, CT *dout, CT *a, CT *b) {
    int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    size_t mark = backend_mark(be);
    const float *d = wid(be, dout);
    float *dx = wid(be, da), *dy = wid(be, db);
    if (da)
        gemm(be, 0, 1, M, K, N, d, N, wid(be, b), N, 1.0f, dx, K, "matmul_backward da");
    if (db)
        gemm(be, 1, 0, K, N, M, wid(be, a), K, d, N, 1.0f, dy, N, "matmul_backward db");
    back(be, da, dx);
    back(be, db, dy);
    backend_reset(be, mark);
}

// ---- conv2d: im2col per band of output rows + cuBLAS (gpu/kern_conv.h) -------------------------

// The column buffer holds C·K²·rows·Wo floats for a band of output rows: as many rows as fit
// in KOP_CONV_BAND_BYTES and in what the arena has left (at least one row), so the scratch is
// bounded whatever the image (one whole image at SDXL's 640-channel 128×128 layers would be
// 377 MB). Returns the rows per band and sets *col (NULL after failing the backend).
#define KOP_CONV_BAND_BYTES ((size_t)64 << 20)
static int conv_band(Backend *be, int CKK, int Ho, int Wo, float **col) {
    size_t row = (size_t)CKK * (size_t)Wo * sizeof(float);
    size_t left = be->arena.size > backend_mark(be) + TENSOR_ALIGN
                      ? be->arena.size - backend_mark(be) - TENSOR_ALIGN
                      : 0;
    size_t cap = left < KOP_CONV_BAND_BYTES ? left : KOP_CONV_BAND_BYTES;
    int rows = (int)(cap / row < (size_t)Ho ? cap / row : (size_t)Ho);
    rows = rows < 1 ? 1 : rows;
    const int64_t shape[2] = {CKK, (int64_t)rows * Wo};
    *col = (float *)backend_alloc(be, DTYPE_F32, 2, shape).ptr;
    return rows;
}

static void kop_conv2d_forward(Backend *be, CT *out, CT *inp, CT *w, CT *b,
                                   const ConvShape *s) {
    int Ho = nn_conv2d_out_h(s), Wo = nn_conv2d_out_w(s), CKK = s->C * s->K * s->K;
    long P = (long)Ho * Wo, img = (long)s->C * s->H * s->W;
    size_t mark = backend_mark(be);
    const float *wf = f32_weight(be, w);
    float *y = room(be, out); // im2col reads inp in its dtype
    float *col = NULL;
    int band = conv_band(be, CKK, Ho, Wo, &col);
    for (int n = 0; n < s->B && col && !be->fail_code; n++)
        for (int oy0 = 0; oy0 < Ho && !be->fail_code; oy0 += band) {
            int rows = Ho - oy0 < band ? Ho - oy0 : band;
            ConvColArgs a = {col, elem(inp, n * img), s->C, s->H, s->W, s->K, s->stride,
                             s->pad, Ho, Wo, (int)inp->dtype, oy0, rows};
            conv_im2col_be(be, a);
            gemm(be, 0, 0, s->OC, rows * Wo, CKK, wf, CKK, col, rows * Wo, 0.0f,
                 y + (long)n * s->OC * P + (long)oy0 * Wo, (int)P, "conv2d_forward");
        }
    if (b) {
        ChanBiasArgs a = {y, wid(be, b), s->B, s->OC, (int)P};
        chan_bias_fwd_be(be, a);
    }
    back(be, out, y);
    backend_reset(be, mark);
}

static void kop_conv2d_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                    CT *w, const ConvShape *s) {
    int Ho = nn_conv2d_out_h(s), Wo = nn_conv2d_out_w(s), CKK = s->C * s->K * s->K;
    long P = (long)Ho * Wo, img = (long)s->C * s->H * s->W;
    size_t mark = backend_mark(be);
    const float *dy = wid(be, dout);
    if (db) {
        ChanBiasArgs a = {F(db), dy, s->B, s->OC, (int)P};
        chan_bias_bwd_be(be, a);
    }
    if (!dinp && !dw) {
        backend_reset(be, mark);
        return;
    }
    const float *wf = dinp ? f32_weight(be, w) : NULL; // im2col, col2im: inp, dinp's dtype
    float *col = NULL;
    int band = conv_band(be, CKK, Ho, Wo, &col);
    for (int n = 0; n < s->B && col && !be->fail_code; n++)
        for (int oy0 = 0; oy0 < Ho && !be->fail_code; oy0 += band) {
            int rows = Ho - oy0 < band ? Ho - oy0 : band, np = rows * Wo;
            const float *d = dy + (long)n * s->OC * P + (long)oy0 * Wo;
            ConvColArgs a = {col, elem(inp, n * img), s->C, s->H, s->W, s->K, s->stride,
                             s->pad, Ho, Wo, (int)inp->dtype, oy0, rows};
            if (dw) { // dW (OC, CKK) += dout_band (OC, np; ld P) · col_bandᵀ
                conv_im2col_be(be, a);
                gemm(be, 0, 1, s->OC, CKK, np, d, (int)P, col, np, 1.0f, F(dw), CKK,
                     "conv2d_backward dweight");
            }
            if (dinp) { // dcol (CKK, np) = Wᵀ · dout_band, then added into dinp_n
                gemm(be, 1, 0, CKK, np, s->OC, wf, CKK, d, (int)P, 0.0f, col, np,
                     "conv2d_backward dinp");
                a.img = elem(dinp, n * img);
                conv_col2im_be(be, a);
            }
        }
    backend_reset(be, mark);
}

// ---- attention (gpu/kern_attn.h) ----------------------------------------------------------------

// The kernel's arguments; key_len copied into the arena (a copy from pageable memory returns
// once the host buffer has been read, so the caller may reuse it at once). 0 on a failure.
static int attn_args(Backend *be, AttnArgs *x, CT *q, CT *k, const BackendAttn *a) {
    memset(x, 0, sizeof *x);
    x->B = (int)q->shape[0];
    x->NH = a->NH;
    x->Tq = (int)q->shape[1];
    x->Tk = (int)k->shape[1];
    x->hd = (int)q->shape[2] / a->NH;
    x->causal = a->causal;
    x->dtype = (int)q->dtype;
    x->scale = a->scale != 0.0f ? a->scale : 1.0f / sqrtf((float)x->hd);
    if (x->hd > KERN_ATTN_MAX_HD) {
        backend_fail(be, ERR_USAGE, "attention: head size %d is over the CUDA kernel's %d",
                     x->hd, KERN_ATTN_MAX_HD);
        return 0;
    }
    if (a->key_len) {
        const int64_t n[1] = {x->B}; // B ints in B four-byte slots
        int *d = (int *)backend_alloc(be, DTYPE_F32, 1, n).ptr;
        if (!d || !to_device(be, d, a->key_len, (size_t)x->B * sizeof(int), "attention key_len"))
            return 0;
        x->key_len = d;
    }
    return 1;
}

static void kop_attention_forward(Backend *be, CT *o, CT *lse, CT *q, CT *k, CT *v,
                                      const BackendAttn *a) {
    size_t mark = backend_mark(be);
    AttnArgs x;
    if (attn_args(be, &x, q, k, a)) {
        x.o = o->ptr, x.lse = F(lse), x.q = q->ptr, x.k = k->ptr, x.v = v->ptr;
        attn_fwd_be(be, x);
    }
    backend_reset(be, mark);
}

// D = rowsum(dout ∘ o) into a (B,NH,Tq) arena scratch, then dK/dV (a block per key tile) and
// dQ (a block per query tile): no atomics (gpu/kern_attn.h).
static void kop_attention_backward(Backend *be, CT *dq, CT *dk, CT *dv, CT *dout, CT *q,
                                       CT *k, CT *v, CT *o, CT *lse, const BackendAttn *a) {
    if (!dq && !dk && !dv)
        return;
    size_t mark = backend_mark(be);
    AttnArgs x;
    if (attn_args(be, &x, q, k, a)) {
        x.o = o->ptr, x.lse = F(lse), x.q = q->ptr, x.k = k->ptr, x.v = v->ptr;
        x.dout = dout->ptr;
        x.dq = dq ? dq->ptr : NULL, x.dk = dk ? dk->ptr : NULL, x.dv = dv ? dv->ptr : NULL;
        x.dsum = (float *)backend_alloc(be, DTYPE_F32, 3, lse->shape).ptr;
        if (x.dsum) {
            attn_bwd_pre_be(be, x);
            attn_bwd_dkv_be(be, x);
            attn_bwd_dq_be(be, x);
        }
    }
    backend_reset(be, mark);
}

// ---- ops of the UNet (gpu/kern_unet.h) --------------------------------------------------------

static void kop_unet_add(Backend *be, CT *out, CT *a, CT *b, CT *chan) {
    UnetAddArgs k = {F(out), CF(a), CF(b), CF(chan), (long)(a->shape[0] * a->shape[1]),
                     (long)a->shape[2]};
    unet_add_be(be, k);
}

static void kop_unet_transpose(Backend *be, CT *out, CT *inp) {
    UnetTransposeArgs k = {F(out), CF(inp), (int)inp->shape[0], (int)inp->shape[1],
                           (int)inp->shape[2]};
    unet_transpose_be(be, k);
}

static void kop_upsample_nearest_forward(Backend *be, CT *out, CT *inp) {
    NearestArgs k = {F(out), CF(inp), (long)(inp->shape[0] * inp->shape[1]), (int)inp->shape[2],
                     (int)inp->shape[3], (int)out->shape[2], (int)out->shape[3]};
    upsample_nearest_fwd_be(be, k);
}

static void kop_upsample_nearest_backward(Backend *be, CT *dinp, CT *dout) {
    NearestArgs k = {F(dinp), CF(dout), (long)(dinp->shape[0] * dinp->shape[1]),
                     (int)dinp->shape[2], (int)dinp->shape[3], (int)dout->shape[2],
                     (int)dout->shape[3]};
    upsample_nearest_bwd_be(be, k);
}

// ---- ops of the VAE (kern_vae.h; add and unet_transpose are the blocks' above) -----------

static void kop_pad2d_forward(Backend *be, CT *out, CT *inp, int top, int left) {
    Pad2dArgs x = {F(out), CF(inp), (int)(inp->shape[0] * inp->shape[1]), (int)inp->shape[2],
                   (int)inp->shape[3], (int)out->shape[2], (int)out->shape[3], top, left};
    pad2d_fwd_be(be, x);
}

#define KERN_OPS_POSITIONAL                                                                  \
    kop_linear_forward, kop_linear_backward, kop_matmul_forward, kop_matmul_backward,       \
        kop_layernorm_forward, kop_layernorm_backward, kop_groupnorm_forward,                \
        kop_groupnorm_backward, kop_softmax_forward, kop_softmax_backward, kop_act_forward,  \
        kop_act_backward, kop_geglu_forward, kop_geglu_backward, kop_conv2d_forward,         \
        kop_conv2d_backward, kop_attention_forward, kop_attention_backward,                  \
        kop_upsample2x_forward, kop_upsample2x_backward, kop_concat_forward,                 \
        kop_concat_backward, kop_split_forward, kop_split_backward, kop_mse_forward,         \
        kop_mse_backward, kop_adamw

// ---- ops of the reward model (gpu/kern_reward.h, kern_nn.h; GEMMs in gemm()) ------------------

static void kop_gemm(Backend *be, CT *c, CT *a, CT *b, const BackendGemm *g) {
    gemm(be, g->trans_a, g->trans_b, g->M, g->N, g->K, CF(a) + g->a_off, g->lda,
         CF(b) + g->b_off, g->ldb, g->beta, F(c) + g->c_off, g->ldc, "gemm");
}

static void kop_relu_forward(Backend *be, CT *out, CT *inp) {
    long n = (long)tensor_numel(inp);
    BiasReluArgs a = {F(out), CF(inp), NULL, 1, (int)n};
    bias_relu_fwd_be(be, a);
}

static void kop_relu_backward(Backend *be, CT *dinp, CT *dout, CT *out) {
    ReluBwdArgs a = {F(dinp), CF(dout), CF(out), (long)tensor_numel(out)};
    relu_bwd_be(be, a);
}

static void kop_dropout(Backend *be, CT *out, CT *inp, float p, uint64_t seed, int add) {
    DropoutArgs a = {F(out), CF(inp), (long)tensor_numel(inp), p, seed, add};
    dropout_be(be, a);
}

static void kop_dropout_forward(Backend *be, CT *out, CT *inp, float p, uint64_t seed) {
    kop_dropout(be, out, inp, p, seed, 0);
}

static void kop_dropout_backward(Backend *be, CT *dinp, CT *dout, float p, uint64_t seed) {
    kop_dropout(be, dinp, dout, p, seed, 1);
}

static void kop_scale(Backend *be, CT *out, CT *a, float s) {
    EwArgs x = {F(out), CF(a), (long)tensor_numel(a), s};
    scale_fwd_be(be, x);
}

// After KERN_OPS_POSITIONAL in a table: the entries of BackendOps' "ops of the reward model".
#define KERN_OPS_REWARD_POSITIONAL                                                           \
    kop_gemm, kop_relu_forward, kop_relu_backward, kop_dropout_forward, kop_dropout_backward, \
        kop_scale, kop_add
// (kop_add, shared with CLIP, is defined in the CLIP block below: kern_clip.h's add_fwd.)

// ---- ops of CLIP (gpu/kern_clip.h) --------------------------------------------------------------

static void kop_add(Backend *be, CT *out, CT *a, CT *b) {
    AddArgs x = {F(out), CF(a), CF(b), (long)tensor_numel(a), 0};
    add_fwd_be(be, x);
}

static void kop_add_rows(Backend *be, CT *out, CT *inp, CT *rows) {
    AddArgs x = {F(out), CF(inp), CF(rows), (long)tensor_numel(inp), (long)tensor_numel(rows)};
    add_fwd_be(be, x);
}

// idx copied into the arena (as attention's key_len), so the caller may reuse it at once.
static void kop_gather_rows(Backend *be, CT *out, CT *table, const int *idx) {
    int M = (int)out->shape[0];
    if (M == 0)
        return;
    size_t mark = backend_mark(be);
    const int64_t n[1] = {M}; // M ints in M four-byte slots
    int *d = (int *)backend_alloc(be, DTYPE_F32, 1, n).ptr;
    if (d && to_device(be, d, idx, (size_t)M * sizeof(int), "gather_rows idx")) {
        GatherArgs x = {F(out), table->ptr, d, M, (int)table->shape[1], (int)table->dtype};
        gather_rows_be(be, x);
    }
    backend_reset(be, mark);
}

static void kop_l2norm_forward(Backend *be, CT *out, CT *norm, CT *inp, float eps) {
    L2NormArgs x = {F(out), F(norm), CF(inp), (int)inp->shape[0], (int)inp->shape[1], eps};
    l2norm_fwd_be(be, x);
}

// The CLIP block of the table, after KERN_OPS_POSITIONAL.
#define KERN_OPS_CLIP kop_add_rows, kop_gather_rows, kop_l2norm_forward

// The UNet block of the table (kop_unet_add, kop_unet_transpose above), after the CLIP block.
#define KERN_OPS_UNET                                                                        \
    kop_unet_add, kop_unet_transpose, kop_upsample_nearest_forward, kop_upsample_nearest_backward

// The VAE block of the table, after the UNet block.
#define KERN_OPS_VAE kop_pad2d_forward

// ---- ops of DoRA (kern_dora.h; issue 16) ------------------------------------------------------

static void kop_dora_norm(Backend *be, CT *norm, CT *weight, CT *B, CT *A, float s) {
    int OC = (int)norm->shape[0];
    if (OC == 0)
        return;
    DoraNormArgs x = {F(norm), weight->ptr, CF(B), CF(A), OC, A ? (int)A->shape[0] : 0,
                      (long)(tensor_numel(weight) / OC), s, (int)weight->dtype};
    dora_norm_be(be, x);
}

static void kop_dora_scale(Backend *be, CT *out, CT *inp, CT *m, CT *norm, CT *bias) {
    long n = (long)tensor_numel(inp);
    if (n == 0)
        return;
    DoraScaleArgs x = {F(out), CF(inp), CF(m), CF(norm), bias ? bias->ptr : NULL, n,
                       (int)inp->shape[1], (long)inp->shape[2],
                       bias ? (int)bias->dtype : (int)DTYPE_F32};
    dora_scale_be(be, x);
}

static void kop_dora_mag_backward(Backend *be, CT *dm, CT *dout, CT *y, CT *norm) {
    if (dout->shape[1] == 0)
        return;
    DoraMagArgs x = {F(dm), CF(dout), CF(y), CF(norm), (int)dout->shape[0], (int)dout->shape[1],
                     (long)dout->shape[2]};
    dora_mag_bwd_be(be, x);
}

// The DoRA block of the table, after the VAE block.
#define KERN_OPS_DORA kop_dora_norm, kop_dora_scale, kop_dora_mag_backward

#endif
