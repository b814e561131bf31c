// backend_cuda — the CUDA backend behind src/backend.h: one device, one stream, one cuBLAS
// handle and workspace, a caching allocator and a device scratch arena, all owned by the
// Backend (nothing process-wide). Kernels are those of gpu/kern_list.h (shared with the host
// emulation harness), launched on the backend's stream; GEMMs go to cuBLAS through
// gpu/cuda_blas.cu (the one file that calls it), on the same stream.
//
// Errors: every launch and cuBLAS call is checked; the first failure sticks to the backend
// (backend_fail) with the CUDA or cuBLAS text, and later ops are no-ops in the front end.
// Every op of the table has a CUDA entry; a NULL entry would fail the backend with "not
// implemented on the cuda backend".
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend_impl.h"
#include "cache_alloc.h"
#include "cuda.h"
}
#include "kern_list.h"

#define DEFAULT_ARENA ((size_t)256 << 20)
#define WORKSPACE_BYTES ((size_t)32 << 20) // cuBLAS workspace, set on the handle

typedef struct CudaState {
    int dev;
    cudaStream_t stream;
    void *blas;           // cuBLAS handle (gpu/cuda_blas.cu)
    void *workspace;
    float *ones;          // a vector of ones for bias sums as GEMV/GEMM
    size_t ones_n;
    void *arena_block;    // the scratch arena's device block
    CacheAlloc cache;     // the caching allocator over cudaMalloc/cudaFree (cache_alloc.h)
} CudaState;

static CudaState *st(Backend *be) { return (CudaState *)be->impl; }

static int cuda_ok(Backend *be, cudaError_t e, const char *what) {
    if (e == cudaSuccess)
        return 1;
    backend_fail(be, ERR_GPU, "%s: CUDA %s", what, cudaGetErrorString(e));
    return 0;
}

// ---- caching allocator (gpu/cache_alloc.h over cudaMalloc / cudaFree) ---------------------------

static void *raw_cuda_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError(); // an out-of-memory is not sticky: clear it, the cache retries
        return NULL;
    }
    return p;
}

static void raw_cuda_free(void *ctx, void *p) {
    (void)ctx;
    cudaFree(p);
}

static void *cuda_be_malloc(Backend *be, size_t bytes) {
    void *p = cache_alloc_get(&st(be)->cache, bytes);
    if (!p)
        backend_fail(be, ERR_NOMEM, "malloc: the GPU has no %zu bytes free (after releasing "
                     "the cached blocks); use a smaller batch or arena", bytes);
    return p;
}

static void cuda_be_free(Backend *be, void *p) { cache_alloc_put(&st(be)->cache, p); }

static void cuda_be_close(Backend *be) {
    CudaState *s = st(be);
    if (s) {
        cudaSetDevice(s->dev);
        if (s->stream)
            cudaStreamSynchronize(s->stream);
        cuda_blas_close(s->blas);
        cache_alloc_deinit(&s->cache);
        if (s->stream)
            cudaStreamDestroy(s->stream);
        free(s);
    }
    free(be);
}

static int cuda_be_sync(Backend *be) {
    return cuda_ok(be, cudaStreamSynchronize(st(be)->stream), "synchronize") ? 0 : ERR_GPU;
}

static void cuda_be_upload(Backend *be, CT *dst, CT *src) {
    cuda_ok(be, cudaMemcpyAsync(dst->ptr, src->ptr, tensor_nbytes(src), cudaMemcpyHostToDevice,
                                st(be)->stream), "upload");
}

static void cuda_be_download(Backend *be, CT *dst, CT *src) {
    if (cuda_ok(be, cudaMemcpyAsync(dst->ptr, src->ptr, tensor_nbytes(src),
                                    cudaMemcpyDeviceToHost, st(be)->stream), "download"))
        cuda_ok(be, cudaStreamSynchronize(st(be)->stream), "download");
}

static void cuda_be_zero(Backend *be, CT *t) {
    cuda_ok(be, cudaMemsetAsync(t->ptr, 0, tensor_nbytes(t), st(be)->stream), "zero");
}

// ---- kernels of kern_list.h on the backend's stream -------------------------------------------

// The same wrapper as cuda_nn.cu's, in an anonymous namespace (internal to this file) and
// launched on the backend's stream.
#define KERN_BE_DEFINE_(name, Args)                                                          \
    __global__ void name##_kernel(Args a) {                                                  \
        KernCtx k = kern_ctx_device();                                                       \
        name(&k, &a);                                                                        \
    }                                                                                        \
    __attribute__((unused)) static void name##_be(Backend *be, const Args &a) {              \
        KernLaunch l = name##_launch(&a);                                                    \
        if (be->fail_code || l.grid.x == 0)                                                  \
            return;                                                                          \
        name##_kernel<<<dim3((unsigned)l.grid.x, (unsigned)l.grid.y, (unsigned)l.grid.z), \
                           dim3((unsigned)l.block.x, (unsigned)l.block.y,                    \
                                (unsigned)l.block.z),                                        \
                           l.smem, st(be)->stream>>>(a);                                     \
        cuda_ok(be, cudaGetLastError(), #name);                                              \
    }
namespace {
KERN_LIST(KERN_BE_DEFINE_)
}

static_assert(KERN_DT_F32 == DTYPE_F32 && KERN_DT_F16 == DTYPE_F16 && KERN_DT_BF16 == DTYPE_BF16,
              "gpu/kern_convert.h's dtype codes are src/tensor.h's");

static void convert_raw(Backend *be, void *dst, DType ddt, const void *src, DType sdt, long n) {
    ConvertArgs a = {dst, src, n, (int)ddt, (int)sdt};
    convert_dtype_be(be, a);
}

static void cuda_be_convert(Backend *be, CT *dst, CT *src) {
    convert_raw(be, dst->ptr, dst->dtype, src->ptr, src->dtype, (long)tensor_numel(src));
}

#define F(t) ((t) ? (float *)(t)->ptr : (float *)NULL)
#define CF(t) ((t) ? (const float *)(t)->ptr : (const float *)NULL)

static void cuda_layernorm_forward_be(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w,
                                      CT *b, float eps) {
    LayerNormFwdArgs a = {F(out), F(mean), F(rstd), CF(inp), CF(w), CF(b), (int)inp->shape[0],
                          (int)inp->shape[1], eps};
    layernorm_fwd_be(be, a);
}

static void cuda_layernorm_backward_be(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                       CT *w, CT *mean, CT *rstd) {
    LayerNormBwdArgs a = {F(dinp), F(dw), F(db), CF(dout), CF(inp), CF(w), CF(mean), CF(rstd),
                          (int)inp->shape[0], (int)inp->shape[1]};
    layernorm_bwd_dx_be(be, a);
    layernorm_bwd_params_be(be, a);
}

static void cuda_groupnorm_forward_be(Backend *be, CT *out, CT *mean, CT *rstd, CT *inp, CT *w,
                                      CT *b, int G, float eps) {
    GroupNormFwdArgs a = {F(out), F(mean), F(rstd), CF(inp), CF(w), CF(b), (int)inp->shape[0],
                          (int)inp->shape[1], (int)(inp->shape[2] * inp->shape[3]), G, eps};
    groupnorm_fwd_be(be, a);
}

static void cuda_groupnorm_backward_be(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                       CT *w, CT *mean, CT *rstd, int G) {
    GroupNormBwdArgs a = {F(dinp), F(dw), F(db), CF(dout), CF(inp), CF(w), CF(mean), CF(rstd),
                          (int)inp->shape[0], (int)inp->shape[1],
                          (int)(inp->shape[2] * inp->shape[3]), G};
    groupnorm_bwd_dx_be(be, a);
    groupnorm_bwd_params_be(be, a);
}

static void cuda_softmax_forward_be(Backend *be, CT *out, CT *inp) {
    SoftmaxArgs a = {F(out), CF(inp), (int)inp->shape[0], (int)inp->shape[1]};
    softmax_fwd_be(be, a);
}

static void cuda_softmax_backward_be(Backend *be, CT *dinp, CT *dout, CT *out) {
    if (!dinp)
        return;
    SoftmaxBwdArgs a = {F(dinp), CF(dout), CF(out), (int)out->shape[0], (int)out->shape[1]};
    softmax_bwd_be(be, a);
}

static void cuda_adamw_be(Backend *be, CT *param, CT *grad, CT *m, CT *v, int t, float lr,
                          const AdamWConfig *cfg) {
    adamw_be(be, adamw_args(F(param), F(m), F(v), CF(grad), (long)tensor_numel(param), lr,
                            cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay, t));
}

// ---- pointwise (gpu/kern_pointwise.h) ----------------------------------------------------------

static_assert(KERN_ACT_GELU == BACKEND_ACT_GELU && KERN_ACT_GELU_TANH == BACKEND_ACT_GELU_TANH &&
                  KERN_ACT_SILU == BACKEND_ACT_SILU,
              "gpu/kern_pointwise.h's activation codes are src/backend.h's");

static void cuda_act_forward_be(Backend *be, BackendAct act, CT *out, CT *inp) {
    ActArgs a = {F(out), CF(inp), NULL, (long)tensor_numel(inp), (int)act};
    act_fwd_be(be, a);
}

static void cuda_act_backward_be(Backend *be, BackendAct act, CT *dinp, CT *dout, CT *inp) {
    ActArgs a = {F(dinp), CF(inp), CF(dout), (long)tensor_numel(inp), (int)act};
    act_bwd_be(be, a);
}

static void cuda_geglu_forward_be(Backend *be, BackendAct g, CT *out, CT *inp) {
    GegluArgs a = {F(out), CF(inp), NULL, (int)inp->shape[0], (int)inp->shape[1] / 2, (int)g};
    geglu_fwd_be(be, a);
}

static void cuda_geglu_backward_be(Backend *be, BackendAct g, CT *dinp, CT *dout, CT *inp) {
    GegluArgs a = {F(dinp), CF(inp), CF(dout), (int)inp->shape[0], (int)inp->shape[1] / 2,
                   (int)g};
    geglu_bwd_be(be, a);
}

static void cuda_upsample2x_forward_be(Backend *be, CT *out, CT *inp) {
    UpsampleArgs a = {F(out), CF(inp), (int)(inp->shape[0] * inp->shape[1]), (int)inp->shape[2],
                      (int)inp->shape[3]};
    upsample2x_fwd_be(be, a);
}

static void cuda_upsample2x_backward_be(Backend *be, CT *dinp, CT *dout) {
    UpsampleArgs a = {F(dinp), CF(dout), (int)(dinp->shape[0] * dinp->shape[1]),
                      (int)dinp->shape[2], (int)dinp->shape[3]};
    upsample2x_bwd_be(be, a);
}

// One part of a channel concat/split: whole (B,C,H,W) and a part at channel offset off.
static void chan_part(Backend *be, CT *whole, CT *part, int off, int to_whole, int add) {
    if (!part)
        return;
    int B = (int)whole->shape[0], C = (int)whole->shape[1], Cp = (int)part->shape[1];
    int HW = (int)(whole->shape[2] * whole->shape[3]);
    ChanCopyArgs a = to_whole ? ChanCopyArgs{F(whole), CF(part), B, C, Cp, off, 0, Cp, HW, add}
                              : ChanCopyArgs{F(part), CF(whole), B, Cp, C, 0, off, Cp, HW, add};
    chan_copy_be(be, a);
}

static int part_a_channels(CT *whole, CT *a, CT *b) {
    return a ? (int)a->shape[1] : (int)(whole->shape[1] - b->shape[1]);
}

static void cuda_concat_forward_be(Backend *be, CT *out, CT *a, CT *b) {
    int Ca = part_a_channels(out, a, b);
    chan_part(be, out, a, 0, 1, 0);
    chan_part(be, out, b, Ca, 1, 0);
}

static void cuda_concat_backward_be(Backend *be, CT *da, CT *db, CT *dout) {
    int Ca = part_a_channels(dout, da, db);
    chan_part(be, dout, da, 0, 0, 1);
    chan_part(be, dout, db, Ca, 0, 1);
}

static void cuda_split_forward_be(Backend *be, CT *a, CT *b, CT *inp) {
    int Ca = part_a_channels(inp, a, b);
    chan_part(be, inp, a, 0, 0, 0);
    chan_part(be, inp, b, Ca, 0, 0);
}

static void cuda_split_backward_be(Backend *be, CT *dinp, CT *da, CT *db) {
    int Ca = part_a_channels(dinp, da, db);
    chan_part(be, dinp, da, 0, 1, 1);
    chan_part(be, dinp, db, Ca, 1, 1);
}

static void cuda_mse_forward_be(Backend *be, CT *loss, CT *pred, CT *target) {
    MseArgs a = {F(loss), NULL, NULL, CF(pred), CF(target), (long)tensor_numel(pred), 0.0f};
    mse_fwd_be(be, a);
}

static void cuda_mse_backward_be(Backend *be, CT *dpred, CT *dtarget, float dloss, CT *pred,
                                 CT *target) {
    MseArgs a = {NULL, F(dpred), F(dtarget), CF(pred), CF(target), (long)tensor_numel(pred),
                 dloss};
    mse_bwd_be(be, a);
}

// ---- GEMMs (cuBLAS, column-major: a row-major X (r,c) is a column-major Xᵀ (c,r)) -------------

// c (M,N) = beta·c + op(a)·op(b), row-major, as nn_gemm.
static void gemm(Backend *be, int ta, int tb, int M, int N, int K, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc, const char *what) {
    if (be->fail_code || M == 0 || N == 0)
        return;
    Err e = {0};
    if (cuda_blas_sgemm(st(be)->blas, ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc, &e))
        backend_fail(be, ERR_GPU, "%s: %s", what, e.msg);
}

static const float *ones(Backend *be, size_t n) {
    CudaState *s = st(be);
    if (s->ones_n >= n)
        return s->ones;
    if (s->ones)
        cuda_be_free(be, s->ones);
    s->ones = (float *)cuda_be_malloc(be, n * sizeof(float));
    s->ones_n = s->ones ? n : 0;
    if (s->ones) {
        float *h = (float *)malloc(n * sizeof(float));
        if (!h) {
            backend_fail(be, ERR_NOMEM, "ones: out of host memory");
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            h[i] = 1.0f;
        cuda_ok(be, cudaMemcpy(s->ones, h, n * sizeof(float), cudaMemcpyHostToDevice), "ones");
        free(h);
    }
    return s->ones;
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

static void cuda_linear_forward_be(Backend *be, CT *out, CT *inp, CT *w, CT *b) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1], OC = (int)w->shape[0];
    size_t mark = backend_mark(be);
    const float *wf = f32_weight(be, w);
    if (b) { // out = 1·biasᵀ, then += inp·Wᵀ
        const float *o = ones(be, (size_t)N);
        gemm(be, 0, 0, N, OC, 1, o, 1, CF(b), OC, 0.0f, F(out), OC, "linear_forward bias");
        gemm(be, 0, 1, N, OC, C, CF(inp), C, wf, C, 1.0f, F(out), OC, "linear_forward");
    } else {
        gemm(be, 0, 1, N, OC, C, CF(inp), C, wf, C, 0.0f, F(out), OC, "linear_forward");
    }
    backend_reset(be, mark);
}

static void cuda_linear_backward_be(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                    CT *w) {
    int N = (int)inp->shape[0], C = (int)inp->shape[1], OC = (int)w->shape[0];
    size_t mark = backend_mark(be);
    if (dinp)
        gemm(be, 0, 0, N, C, OC, CF(dout), OC, f32_weight(be, w), C, 1.0f, F(dinp), C,
             "linear_backward dinp");
    if (dw)
        gemm(be, 1, 0, OC, C, N, CF(dout), OC, CF(inp), C, 1.0f, F(dw), C,
             "linear_backward dweight");
    if (db) // dbias (1,OC) += ones (1,N) · dout (N,OC)
        gemm(be, 0, 0, 1, OC, N, ones(be, (size_t)N), N, CF(dout), OC, 1.0f, F(db), OC,
             "linear_backward dbias");
    backend_reset(be, mark);
}

static void cuda_matmul_forward_be(Backend *be, CT *out, CT *a, CT *b) {
    int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    gemm(be, 0, 0, M, N, K, CF(a), K, CF(b), N, 0.0f, F(out), N, "matmul_forward");
}

static void cuda_matmul_backward_be(Backend *be, CT *da, CT *db, CT *dout, CT *a, CT *b) {
    int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    if (da)
        gemm(be, 0, 1, M, K, N, CF(dout), N, CF(b), N, 1.0f, F(da), K, "matmul_backward da");
    if (db)
        gemm(be, 1, 0, K, N, M, CF(a), K, CF(dout), N, 1.0f, F(db), N, "matmul_backward db");
}

// ---- conv2d: im2col per image + cuBLAS (gpu/kern_conv.h) ---------------------------------------

static void cuda_conv2d_forward_be(Backend *be, CT *out, CT *inp, CT *w, CT *b,
                                   const ConvShape *s) {
    int Ho = nn_conv2d_out_h(s), Wo = nn_conv2d_out_w(s), CKK = s->C * s->K * s->K;
    long P = (long)Ho * Wo, img = (long)s->C * s->H * s->W;
    size_t mark = backend_mark(be);
    const float *wf = f32_weight(be, w);
    const int64_t col_shape[2] = {CKK, P};
    float *col = (float *)backend_alloc(be, DTYPE_F32, 2, col_shape).ptr;
    for (int n = 0; n < s->B && !be->fail_code; n++) {
        ConvColArgs a = {col, F(inp) + n * img, s->C, s->H, s->W, s->K, s->stride, s->pad,
                         Ho, Wo};
        conv_im2col_be(be, a);
        gemm(be, 0, 0, s->OC, (int)P, CKK, wf, CKK, col, (int)P, 0.0f,
             F(out) + (long)n * s->OC * P, (int)P, "conv2d_forward");
    }
    if (b) {
        ChanBiasArgs a = {F(out), CF(b), s->B, s->OC, (int)P};
        chan_bias_fwd_be(be, a);
    }
    backend_reset(be, mark);
}

static void cuda_conv2d_backward_be(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                    CT *w, const ConvShape *s) {
    int Ho = nn_conv2d_out_h(s), Wo = nn_conv2d_out_w(s), CKK = s->C * s->K * s->K;
    long P = (long)Ho * Wo, img = (long)s->C * s->H * s->W;
    if (db) {
        ChanBiasArgs a = {F(db), CF(dout), s->B, s->OC, (int)P};
        chan_bias_bwd_be(be, a);
    }
    if (!dinp && !dw)
        return;
    size_t mark = backend_mark(be);
    const float *wf = dinp ? f32_weight(be, w) : NULL;
    const int64_t col_shape[2] = {CKK, P};
    float *col = (float *)backend_alloc(be, DTYPE_F32, 2, col_shape).ptr;
    for (int n = 0; n < s->B && !be->fail_code; n++) {
        const float *d = CF(dout) + (long)n * s->OC * P;
        ConvColArgs a = {col, F(inp) + n * img, s->C, s->H, s->W, s->K, s->stride, s->pad,
                         Ho, Wo};
        if (dw) { // dW (OC, CKK) += dout_n (OC, P) · col_nᵀ
            conv_im2col_be(be, a);
            gemm(be, 0, 1, s->OC, CKK, (int)P, d, (int)P, col, (int)P, 1.0f, F(dw), CKK,
                 "conv2d_backward dweight");
        }
        if (dinp) { // dcol (CKK, P) = Wᵀ · dout_n, then added into dinp_n
            gemm(be, 1, 0, CKK, (int)P, s->OC, wf, CKK, d, (int)P, 0.0f, col, (int)P,
                 "conv2d_backward dinp");
            a.img = F(dinp) + n * img;
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
    x->scale = a->scale != 0.0f ? a->scale : 1.0f / sqrtf((float)x->hd);
    if (x->hd > KERN_ATTN_MAX_HD) {
        backend_fail(be, ERR_USAGE, "attention: head size %d is over the CUDA kernel's %d",
                     x->hd, KERN_ATTN_MAX_HD);
        return 0;
    }
    if (a->key_len) {
        const int64_t n[1] = {x->B}; // B ints in B four-byte slots
        int *d = (int *)backend_alloc(be, DTYPE_F32, 1, n).ptr;
        if (!d || !cuda_ok(be, cudaMemcpyAsync(d, a->key_len, (size_t)x->B * sizeof(int),
                                               cudaMemcpyHostToDevice, st(be)->stream),
                           "attention key_len"))
            return 0;
        x->key_len = d;
    }
    return 1;
}

static void cuda_attention_forward_be(Backend *be, CT *o, CT *lse, CT *q, CT *k, CT *v,
                                      const BackendAttn *a) {
    size_t mark = backend_mark(be);
    AttnArgs x;
    if (attn_args(be, &x, q, k, a)) {
        x.o = F(o), x.lse = F(lse), x.q = CF(q), x.k = CF(k), x.v = CF(v);
        attn_fwd_be(be, x);
    }
    backend_reset(be, mark);
}

static void cuda_attention_backward_be(Backend *be, CT *dq, CT *dk, CT *dv, CT *dout, CT *q,
                                       CT *k, CT *v, CT *o, CT *lse, const BackendAttn *a) {
    size_t mark = backend_mark(be);
    AttnArgs x;
    if (attn_args(be, &x, q, k, a)) {
        x.o = F(o), x.lse = F(lse), x.q = CF(q), x.k = CF(k), x.v = CF(v), x.dout = CF(dout);
        x.dq = F(dq), x.dk = F(dk), x.dv = F(dv);
        attn_bwd_dq_be(be, x);
        attn_bwd_dkv_be(be, x);
    }
    backend_reset(be, mark);
}

static const BackendOps cuda_ops = {
    "cuda",
    cuda_be_close,
    cuda_be_sync,
    cuda_be_malloc,
    cuda_be_free,
    cuda_be_upload,
    cuda_be_download,
    cuda_be_zero,
    cuda_be_convert,
    cuda_linear_forward_be,
    cuda_linear_backward_be,
    cuda_matmul_forward_be,
    cuda_matmul_backward_be,
    cuda_layernorm_forward_be,
    cuda_layernorm_backward_be,
    cuda_groupnorm_forward_be,
    cuda_groupnorm_backward_be,
    cuda_softmax_forward_be,
    cuda_softmax_backward_be,
    cuda_act_forward_be,
    cuda_act_backward_be,
    cuda_geglu_forward_be,
    cuda_geglu_backward_be,
    cuda_conv2d_forward_be,
    cuda_conv2d_backward_be,
    cuda_attention_forward_be,
    cuda_attention_backward_be,
    cuda_upsample2x_forward_be,
    cuda_upsample2x_backward_be,
    cuda_concat_forward_be,
    cuda_concat_backward_be,
    cuda_split_forward_be,
    cuda_split_backward_be,
    cuda_mse_forward_be,
    cuda_mse_backward_be,
    cuda_adamw_be,
};

static int blas_open(Backend *be, CudaState *s) {
    Err e = {0};
    if (cuda_blas_open(&s->blas, s->stream, s->workspace, WORKSPACE_BYTES, &e) == 0)
        return 1;
    backend_fail(be, ERR_GPU, "%s", e.msg);
    return 0;
}

extern "C" int backend_cuda_open(int index, const BackendConfig *cfg, Backend **out, Err *err) {
    *out = NULL;
    char why[256];
    CudaDevice devs[16];
    int n = 0;
    cuda_probe(devs, 16, &n, why, sizeof why);
    if (n == 0)
        return err_set(err, ERR_GPU, "%s", why);
    if (index >= n)
        return err_set(err, ERR_NOTFOUND, "cuda:%d: this machine has %d CUDA device%s (cuda:0"
                       "%s)", index, n, n == 1 ? "" : "s", n > 1 ? " .. cuda:N-1" : "");
    Backend *be = (Backend *)calloc(1, sizeof *be);
    CudaState *s = (CudaState *)calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return err_set(err, ERR_NOMEM, "cuda backend: out of host memory");
    }
    be->ops = &cuda_ops;
    be->kind = BACKEND_CUDA;
    be->device = TENSOR_DEVICE_CUDA;
    be->impl = s;
    cache_alloc_init(&s->cache, raw_cuda_alloc, raw_cuda_free, NULL);
    s->dev = devs[index].index;
    snprintf(be->name, sizeof be->name, "cuda:%d (%s, sm_%d%d)", index, devs[index].name,
             devs[index].cc_major, devs[index].cc_minor);
    size_t arena = cfg && cfg->arena_bytes ? cfg->arena_bytes : DEFAULT_ARENA;
    if (cuda_ok(be, cudaSetDevice(s->dev), "set device") &&
        cuda_ok(be, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "stream") &&
        (s->workspace = cuda_be_malloc(be, WORKSPACE_BYTES)) != NULL &&
        blas_open(be, s) &&
        (s->arena_block = cuda_be_malloc(be, arena)) != NULL) {
        arena_init_over(&be->arena, s->arena_block, arena);
        *out = be;
        return 0;
    }
    int rc = err_set(err, be->fail_code, "%s: %s", be->name, be->fail_msg);
    cuda_be_close(be);
    return rc;
}
