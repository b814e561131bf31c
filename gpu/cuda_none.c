/* cuda_none — the CUDA interface of a build without nvcc: only the probe, which says why. */
#include "cuda.h"

#ifndef EASEL_CUDA
#include <stdio.h>

int cuda_probe(CudaDevice *devs, int max, int *n, char *why, size_t why_len) {
    (void)devs;
    (void)max;
    *n = 0;
    snprintf(why, why_len, "built without CUDA (no nvcc at build time); running on CPU");
    return 0;
}
#else
/* With EASEL_CUDA the implementation is gpu/cuda_nn.cu; keep this unit non-empty for -Wpedantic. */
typedef int cuda_none_unused;
#endif
