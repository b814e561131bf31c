// cuda_nn — launchers for the kernels of kern_nn.h, device memory helpers, the probe and a
// cuBLAS matmul. Each kernel is a thin __global__ wrapper around the per-thread body that the
// host emulation harness also runs (see kern_common.h).
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <stdio.h>

extern "C" {
#include "cuda.h"
}
#include "kern_nn.h"

#define BLOCK 256

static int cuda_fail(Err *err, cudaError_t e, const char *what) {
    return err_set(err, ERR_GPU, "CUDA %s: %s", what, cudaGetErrorString(e));
}

#define CUDA_TRY(call, what)                                                   \
    do {                                                                       \
        cudaError_t e_ = (call);                                               \
        if (e_ != cudaSuccess)                                                 \
            return cuda_fail(err, e_, what);                                   \
    } while (0)

static __device__ inline KernIdx this_thread(void) {
    KernIdx ix;
    ix.block = (int)blockIdx.x;
    ix.block_dim = (int)blockDim.x;
    ix.thread = (int)threadIdx.x;
    return ix;
}
#define THIS_THREAD() this_thread()

__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                                         const float *w, const float *b, int N, int C) {
    layernorm_forward_thread(THIS_THREAD(), out, mean, rstd, inp, w, b, N, C);
}
__global__ void layernorm_backward_kernel(float *dinp, float *dw, float *db, const float *dout,
                                          const float *inp, const float *w, const float *mean,
                                          const float *rstd, int N, int C) {
    layernorm_backward_thread(THIS_THREAD(), dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
__global__ void bias_relu_forward_kernel(float *out, const float *inp, const float *bias, int N,
                                         int C) {
    bias_relu_forward_thread(THIS_THREAD(), out, inp, bias, N, C);
}
__global__ void relu_backward_kernel(float *dinp, const float *dout, const float *out, int n) {
    relu_backward_thread(THIS_THREAD(), dinp, dout, out, n);
}
__global__ void adamw_kernel(float *p, float *m, float *v, const float *g, long n, float lr,
                             float b1, float b2, float eps, float wd, int t) {
    adamw_thread(THIS_THREAD(), p, m, v, g, n, lr, b1, b2, eps, wd, t);
}

extern "C" int cuda_probe(CudaDevice *devs, int max, int *n, char *why, size_t why_len) {
    *n = 0;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice) {
        snprintf(why, why_len, "no NVIDIA GPU and driver on this machine (CUDA: %s)",
                 cudaGetErrorString(e));
        return 0;
    }
    if (e != cudaSuccess) {
        snprintf(why, why_len, "no usable CUDA device: %s", cudaGetErrorString(e));
        return 0;
    }
    if (count == 0) {
        snprintf(why, why_len, "CUDA runtime found no device");
        return 0;
    }
    for (int i = 0; i < count && i < max; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess)
            continue;
        CudaDevice *d = &devs[*n];
        d->index = i;
        snprintf(d->name, sizeof d->name, "%s", p.name);
        d->cc_major = p.major;
        d->cc_minor = p.minor;
        d->sm_count = p.multiProcessorCount;
        d->mem_total = p.totalGlobalMem;
        d->mem_free = 0;
        size_t fr = 0, tot = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&fr, &tot) == cudaSuccess)
            d->mem_free = fr;
        (*n)++;
    }
    if (*n == 0)
        snprintf(why, why_len, "CUDA devices present but none could be queried");
    else
        snprintf(why, why_len, "%d CUDA device(s)", *n);
    return 0;
}

extern "C" float *cuda_alloc(size_t n_floats, Err *err) {
    float *p = NULL;
    cudaError_t e = cudaMalloc((void **)&p, n_floats * sizeof(float));
    if (e != cudaSuccess) {
        cuda_fail(err, e, "malloc");
        return NULL;
    }
    return p;
}

extern "C" void cuda_free(float *p) {
    if (p)
        cudaFree(p);
}

extern "C" int cuda_upload(float *dst, const float *src, size_t n, Err *err) {
    CUDA_TRY(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyHostToDevice), "upload");
    return 0;
}

extern "C" int cuda_download(float *dst, const float *src, size_t n, Err *err) {
    CUDA_TRY(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost), "download");
    return 0;
}

extern "C" int cuda_zero(float *p, size_t n, Err *err) {
    CUDA_TRY(cudaMemset(p, 0, n * sizeof(float)), "memset");
    return 0;
}

extern "C" int cuda_sync(Err *err) {
    CUDA_TRY(cudaDeviceSynchronize(), "synchronize");
    return 0;
}

static int launched(Err *err, const char *what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : cuda_fail(err, e, what);
}

extern "C" int cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                      const float *w, const float *b, int N, int C, Err *err) {
    layernorm_forward_kernel<<<kern_blocks(N, BLOCK), BLOCK>>>(out, mean, rstd, inp, w, b, N, C);
    return launched(err, "layernorm_forward");
}

extern "C" int cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                                       const float *inp, const float *w, const float *mean,
                                       const float *rstd, int N, int C, Err *err) {
    layernorm_backward_kernel<<<kern_blocks(N, BLOCK), BLOCK>>>(dinp, dw, db, dout, inp, w, mean,
                                                                rstd, N, C);
    return launched(err, "layernorm_backward");
}

extern "C" int cuda_bias_relu_forward(float *out, const float *inp, const float *bias, int N,
                                      int C, Err *err) {
    bias_relu_forward_kernel<<<kern_blocks(N * C, BLOCK), BLOCK>>>(out, inp, bias, N, C);
    return launched(err, "bias_relu_forward");
}

extern "C" int cuda_relu_backward(float *dinp, const float *dout, const float *out, int n,
                                  Err *err) {
    relu_backward_kernel<<<kern_blocks(n, BLOCK), BLOCK>>>(dinp, dout, out, n);
    return launched(err, "relu_backward");
}

extern "C" int cuda_adamw(float *p, float *m, float *v, const float *g, long n, float lr,
                          float b1, float b2, float eps, float wd, int t, Err *err) {
    adamw_kernel<<<kern_blocks((int)n, BLOCK), BLOCK>>>(p, m, v, g, n, lr, b1, b2, eps, wd, t);
    return launched(err, "adamw");
}

static cublasHandle_t blas_handle(void) {
    static cublasHandle_t h; // one per process; callers serialise per device (see cuda.h)
    if (!h && cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
        h = NULL;
    return h;
}

extern "C" int cuda_matmul_forward(float *out, const float *inp, const float *weight, int N,
                                   int C, int OC, Err *err) {
    cublasHandle_t h = blas_handle();
    if (!h)
        return err_set(err, ERR_GPU, "cuBLAS: cannot create a handle");
    const float one = 1.0f, zero = 0.0f;
    // Row-major out(N,OC) = inp(N,C) W(OC,C)^T is column-major out^T(OC,N) = W(OC,C) inp^T.
    cublasStatus_t s = cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one, weight, C, inp,
                                   C, &zero, out, OC);
    if (s != CUBLAS_STATUS_SUCCESS)
        return err_set(err, ERR_GPU, "cuBLAS sgemm failed (status %d)", (int)s);
    return launched(err, "matmul_forward");
}
