// cuda_nn — the CUDA runtime side of the engine: the probe, device memory helpers, and a
// __global__ wrapper plus launcher for every kernel of gpu/kern_list.h. The kernels' source is
// in gpu/kern_*.h, shared with the host emulation harness (kern_emulate.h); the launch geometry
// comes from the same NAME_launch function the harness uses. cuBLAS is in cuda_blas.cu only.
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" {
#include "cuda.h"
}
#include "kern_list.h"

static int cuda_fail(Err *err, cudaError_t e, const char *what) {
    return err_set(err, ERR_GPU, "CUDA %s: %s", what, cudaGetErrorString(e));
}

#define CUDA_TRY(call, what)                                                   \
    do {                                                                       \
        cudaError_t e_ = (call);                                               \
        if (e_ != cudaSuccess)                                                 \
            return cuda_fail(err, e_, what);                                   \
    } while (0)

static int launched(Err *err, const char *what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : cuda_fail(err, e, what);
}

static dim3 to_dim3(KernDim d) { return dim3((unsigned)d.x, (unsigned)d.y, (unsigned)d.z); }

// For each kernel: NAME_kernel (the __global__ wrapper) and NAME_go (launch with the geometry
// of NAME_launch; an empty grid launches nothing).
#define KERN_CUDA_DEFINE_(name, Args)                                                        \
    __global__ void name##_kernel(Args a) {                                                  \
        KernCtx k = kern_ctx_device();                                                       \
        name(&k, &a);                                                                        \
    }                                                                                        \
    __attribute__((unused)) static int name##_go(const Args &a, Err *err) {                                    \
        KernLaunch l = name##_launch(&a);                                                    \
        if (l.grid.x == 0)                                                                   \
            return 0;                                                                        \
        name##_kernel<<<to_dim3(l.grid), to_dim3(l.block), l.smem>>>(a);                     \
        return launched(err, #name);                                                         \
    }
KERN_LIST(KERN_CUDA_DEFINE_)

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

extern "C" int cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                      const float *w, const float *b, int N, int C, float eps,
                                      Err *err) {
    LayerNormFwdArgs a = {out, mean, rstd, inp, w, b, N, C, eps};
    return layernorm_fwd_go(a, err);
}

extern "C" int cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                                       const float *inp, const float *w, const float *mean,
                                       const float *rstd, int N, int C, Err *err) {
    LayerNormBwdArgs a = {dinp, dw, db, dout, inp, w, mean, rstd, N, C};
    int rc = layernorm_bwd_dx_go(a, err);
    return rc ? rc : layernorm_bwd_params_go(a, err);
}

extern "C" int cuda_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                      const float *w, const float *b, int N, int C, int HW,
                                      int G, float eps, Err *err) {
    GroupNormFwdArgs a = {out, mean, rstd, inp, w, b, N, C, HW, G, eps};
    return groupnorm_fwd_go(a, err);
}

extern "C" int cuda_groupnorm_backward(float *dinp, float *dw, float *db, const float *dout,
                                       const float *inp, const float *w, const float *mean,
                                       const float *rstd, int N, int C, int HW, int G, Err *err) {
    GroupNormBwdArgs a = {dinp, dw, db, dout, inp, w, mean, rstd, N, C, HW, G};
    int rc = groupnorm_bwd_dx_go(a, err);
    return rc ? rc : groupnorm_bwd_params_go(a, err);
}

extern "C" int cuda_softmax_forward(float *out, const float *inp, int N, int C, Err *err) {
    SoftmaxArgs a = {out, inp, N, C};
    return softmax_fwd_go(a, err);
}

extern "C" int cuda_softmax_backward(float *dinp, const float *dout, const float *out, int N,
                                     int C, Err *err) {
    SoftmaxBwdArgs a = {dinp, dout, out, N, C};
    return softmax_bwd_go(a, err);
}

extern "C" int cuda_bias_relu_forward(float *out, const float *inp, const float *bias, int N,
                                      int C, Err *err) {
    BiasReluArgs a = {out, inp, bias, N, C};
    return bias_relu_fwd_go(a, err);
}

extern "C" int cuda_relu_backward(float *dinp, const float *dout, const float *out, long n,
                                  Err *err) {
    ReluBwdArgs a = {dinp, dout, out, n};
    return relu_bwd_go(a, err);
}

extern "C" int cuda_adamw(float *p, float *m, float *v, const float *g, long n, float lr,
                          float b1, float b2, float eps, float wd, int t, Err *err) {
    if (t < 1)
        return err_set(err, ERR_USAGE, "cuda_adamw: step t must be >= 1 (got %d)", t);
    return adamw_go(adamw_args(p, m, v, g, n, lr, b1, b2, eps, wd, t), err);
}

extern "C" int cuda_convert(void *dst, int dst_dtype, const void *src, int src_dtype, long n,
                            Err *err) {
    ConvertArgs a = {dst, src, n, dst_dtype, src_dtype};
    return convert_dtype_go(a, err);
}
