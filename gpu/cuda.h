/* cuda — the CUDA side of the engine, as a plain C interface (no CUDA types here).
 *
 * With nvcc at build time (EASEL_CUDA defined) gpu/cuda_nn.cu implements everything below;
 * without it gpu/cuda_none.c implements cuda_probe only, which says why there is no GPU.
 * cuda_probe never fails hard: no driver, no device or a driver too old is a reason string.
 *
 * Device pointers are plain `float *` owned by the caller (cuda_alloc / cuda_free). Launchers
 * are asynchronous on the default stream; cuda_sync waits and reports the first error.
 * Thread safety: the launchers may be called from one thread per device at a time.
 */
#ifndef EASEL_CUDA_H
#define EASEL_CUDA_H

#include <stddef.h>

#include "err.h"

typedef struct CudaDevice {
    int index;
    char name[128];
    int cc_major;            /* compute capability */
    int cc_minor;
    int sm_count;
    size_t mem_total;        /* bytes */
    size_t mem_free;         /* bytes, at probe time */
} CudaDevice;

/* Fill up to max devices; *n gets the count (0 when there is no usable GPU, with the reason
 * in why). Returns 0, or ERR_GPU only for a broken runtime that answered nonsense. */
int cuda_probe(CudaDevice *devs, int max, int *n, char *why, size_t why_len);

#ifdef EASEL_CUDA
float *cuda_alloc(size_t n_floats, Err *err);
void cuda_free(float *p);
int cuda_upload(float *dst, const float *src, size_t n_floats, Err *err);
int cuda_download(float *dst, const float *src, size_t n_floats, Err *err);
int cuda_zero(float *p, size_t n_floats, Err *err);
int cuda_sync(Err *err);

/* The kernels of gpu/kern_list.h. Semantics (shapes, NULL weights and gradients, backward
 * ADDS into gradients) as the CPU ops of the same name: src/engine/nn_norm.h, nn_softmax.h,
 * nn_activation.h, optim.h; GroupNorm as documented in gpu/kern_norm.h. */
int cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C, float eps,
                           Err *err);
int cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int N, int C, Err *err);
int cuda_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C, int HW, int G,
                           float eps, Err *err);
int cuda_groupnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int N, int C, int HW, int G, Err *err);
int cuda_softmax_forward(float *out, const float *inp, int N, int C, Err *err);
int cuda_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C,
                          Err *err);
int cuda_bias_relu_forward(float *out, const float *inp, const float *bias, int N, int C,
                           Err *err);
int cuda_relu_backward(float *dinp, const float *dout, const float *out, long n_elem, Err *err);
/* One AdamW step t >= 1 as optim_adamw_step (without zeroing the gradient). */
int cuda_adamw(float *param, float *m, float *v, const float *grad, long n, float lr,
               float beta1, float beta2, float eps, float wd, int t, Err *err);

/* dst (n elements of dst_dtype) = src (n of src_dtype), dtypes as src/engine/tensor.h's DType; rounds
 * as src/engine/tensor_half.c (nearest even, NaN and inf kept). */
int cuda_convert(void *dst, int dst_dtype, const void *src, int src_dtype, long n, Err *err);

/* gpu/cuda_blas.cu, the only file that calls cuBLAS:
 * out (N, OC) = inp (N, C) @ weight (OC, C)^T, row-major, PyTorch Linear layout, via cuBLAS. */
int cuda_matmul_forward(float *out, const float *inp, const float *weight, int N, int C, int OC,
                        Err *err);
/* A cuBLAS handle on `stream` (a cudaStream_t) with `workspace` (may be NULL), for one CUDA
 * Backend; its sgemm: c (M,N) = beta·c + op(a)·op(b), row-major, as nn_gemm. */
int cuda_blas_open(void **handle, void *stream, void *workspace, size_t ws_bytes, Err *err);
void cuda_blas_close(void *handle);
int cuda_blas_sgemm(void *handle, int ta, int tb, int M, int N, int K, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc, Err *err);
/* cattn: the same GEMM with a and b both of half dtype ab_dtype (1 f16, 2 bf16, as
 * kern_convert.h) and c f32, f32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F). cuBLAS has
 * no f32 × half GEMM, so this serves half activations × half weights; an error (e.g.
 * CUBLAS_STATUS_NOT_SUPPORTED on an old device) is returned, not sticky: the caller widens. */
int cuda_blas_gemm_ex(void *handle, int ta, int tb, int M, int N, int K, const void *a, int lda,
                      const void *b, int ldb, int ab_dtype, float beta, float *c, int ldc,
                      Err *err);
#endif

#endif
