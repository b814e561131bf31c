/* kern_common — what every kernel body header needs, for nvcc and for the host compiler.
 *
 * A kernel's per-thread body is a function of explicit block and thread indices, marked
 * KERN_HD: under nvcc it is __host__ __device__, under cc a static inline C function. The
 * CUDA launcher calls it from a __global__ wrapper; the host emulation harness
 * (kern_emulate) calls it for every (block, thread) of the same grid, so `make test` checks
 * the exact code the GPU runs without a GPU. Bodies must not use shared memory or
 * __syncthreads (one thread's work may not depend on another's within a launch); sums across
 * threads go through KERN_ATOMIC_ADD.
 */
#ifndef EASEL_KERN_COMMON_H
#define EASEL_KERN_COMMON_H

#ifdef __CUDACC__
#define KERN_HD static __host__ __device__ inline
#ifdef __CUDA_ARCH__
#define KERN_ATOMIC_ADD(p, v) atomicAdd((p), (v))
#define KERN_SQRTF(x) sqrtf(x)
#else
#define KERN_ATOMIC_ADD(p, v) (*(p) += (v))
#define KERN_SQRTF(x) sqrtf(x)
#endif
#else
#include <math.h>
#define KERN_HD static inline
#define KERN_ATOMIC_ADD(p, v) (*(p) += (v))
#define KERN_SQRTF(x) sqrtf(x)
#endif

/* Index of a thread in a 1-D grid. */
typedef struct KernIdx {
    int block;      /* blockIdx.x */
    int block_dim;  /* blockDim.x */
    int thread;     /* threadIdx.x */
} KernIdx;

KERN_HD int kern_global(KernIdx ix) { return ix.block * ix.block_dim + ix.thread; }

/* Blocks of `block_dim` threads needed for n work items. */
KERN_HD int kern_blocks(int n, int block_dim) { return (n + block_dim - 1) / block_dim; }

#endif
