// cuda_blas — the one file that calls cuBLAS (everything else in gpu/ is kernels the host
// emulation harness covers). cuda_matmul_forward: the old process-wide handle on the default
// stream (tests and bench); cuda_blas_*: a handle per CUDA Backend, on its stream.
#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "cuda.h"
}

static cublasHandle_t blas_handle(void) {
    static cublasHandle_t h;
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
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return err_set(err, ERR_GPU, "CUDA matmul_forward: %s", cudaGetErrorString(e));
    return 0;
}

extern "C" int cuda_blas_open(void **handle, void *stream, void *workspace, size_t ws_bytes,
                              Err *err) {
    cublasHandle_t h = NULL;
    cublasStatus_t s = cublasCreate(&h);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasSetStream(h, (cudaStream_t)stream);
    if (s == CUBLAS_STATUS_SUCCESS && workspace)
        s = cublasSetWorkspace(h, workspace, ws_bytes);
    if (s != CUBLAS_STATUS_SUCCESS) {
        if (h)
            cublasDestroy(h);
        return err_set(err, ERR_GPU, "cuBLAS handle: %s", cublasGetStatusString(s));
    }
    *handle = h;
    return 0;
}

extern "C" void cuda_blas_close(void *handle) {
    if (handle)
        cublasDestroy((cublasHandle_t)handle);
}

extern "C" int cuda_blas_sgemm(void *handle, int ta, int tb, int M, int N, int K, const float *a,
                               int lda, const float *b, int ldb, float beta, float *c, int ldc,
                               Err *err) {
    const float one = 1.0f;
    // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
    cublasStatus_t s = cublasSgemm((cublasHandle_t)handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, b, ldb, a, lda,
                                   &beta, c, ldc);
    if (s != CUBLAS_STATUS_SUCCESS)
        return err_set(err, ERR_GPU, "cuBLAS sgemm (%dx%dx%d): %s", M, N, K,
                       cublasGetStatusString(s));
    return 0;
}

// cattn: half × half operands straight into cuBLAS with f32 compute (no widened copy).
extern "C" int cuda_blas_gemm_ex(void *handle, int ta, int tb, int M, int N, int K,
                                 const void *a, int lda, const void *b, int ldb, int ab_dtype,
                                 float beta, float *c, int ldc, Err *err) {
    const float one = 1.0f;
    cudaDataType_t t = ab_dtype == 1 ? CUDA_R_16F : CUDA_R_16BF;
    // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, as in cuda_blas_sgemm.
    cublasStatus_t s = cublasGemmEx((cublasHandle_t)handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, b, t, ldb, a,
                                    t, lda, &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return err_set(err, ERR_GPU, "cublasGemmEx (%s, %dx%dx%d): %s",
                       ab_dtype == 1 ? "f16" : "bf16", M, N, K, cublasGetStatusString(s));
    return 0;
}
