// backend_cuda — the CUDA backend behind src/engine/backend.h: one device, one stream, one cuBLAS
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
#include "gpu_cache_alloc.h"
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
    CacheAlloc cache;     // the caching allocator over cudaMalloc/cudaFree (gpu_cache_alloc.h)
} CudaState;

static CudaState *st(Backend *be) { return (CudaState *)be->impl; }

static int cuda_ok(Backend *be, cudaError_t e, const char *what) {
    if (e == cudaSuccess)
        return 1;
    backend_fail(be, ERR_GPU, "%s: CUDA %s", what, cudaGetErrorString(e));
    return 0;
}

// ---- caching allocator (gpu/gpu_cache_alloc.h over cudaMalloc / cudaFree) ---------------------------

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

static int to_device(Backend *be, void *dst, const void *src, size_t bytes, const char *what) {
    // From pageable memory the call returns once src has been read: the caller may reuse it.
    return cuda_ok(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st(be)->stream),
                   what);
}

// cattn: c (f32) = beta·c + op(a)·op(b) with a, b both half (dt): cublasGemmEx, f32 compute.
// 0 when cuBLAS refuses (not sticky): backend_kern_ops.h then widens both and calls gemm.
static int gemm_half(Backend *be, int ta, int tb, int M, int N, int K, const void *a, int lda,
                     const void *b, int ldb, DType dt, float beta, float *c, int ldc) {
    Err e = {0};
    return !be->fail_code && cuda_blas_gemm_ex(st(be)->blas, ta, tb, M, N, K, a, lda, b, ldb,
                                               (int)dt, beta, c, ldc, &e) == 0;
}

#include "backend_kern_ops.h"

static const BackendOps cuda_ops = {
    "cuda",
    cuda_be_close,
    cuda_be_sync,
    cuda_be_malloc,
    cuda_be_free,
    cuda_be_upload,
    cuda_be_download,
    cuda_be_zero,
    kop_convert,
    KERN_OPS_POSITIONAL,
    KERN_OPS_REWARD_POSITIONAL, // ops of the reward model
    KERN_OPS_CLIP, // ops of CLIP
    KERN_OPS_UNET, // ops of the UNet
    KERN_OPS_VAE,
    KERN_OPS_DORA, // ops of DoRA
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
