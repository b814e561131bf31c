// cuda_blas — the one file that calls cuBLAS (everything else in gpu/ is kernels the host
// emulation harness covers). One process-wide handle on the default stream; callers serialise
// per device (see cuda.h).
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
