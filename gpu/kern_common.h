/* kern_common — what every kernel source needs, for nvcc and for the host compiler.
 *
 * A kernel is written once, as a KERN_ENTRY function of a context and an argument struct:
 *
 *     KERN_ENTRY void softmax_fwd(KernCtx *k, const SoftmaxArgs *a) { ... }
 *
 * Under nvcc it is __host__ __device__ and gpu/cuda_nn.cu wraps it in a __global__ kernel
 * (gpu/kern_list.h names every kernel once); under cc it is a static inline C function that
 * the host emulation harness (gpu/kern_emulate.c) runs for every thread of the same grid, so
 * `make test` checks the exact code the GPU runs without a GPU.
 *
 * Inside a kernel, use only what this header offers for the CUDA built-ins:
 *   indices      k->block_idx, k->thread_idx, k->grid_dim, k->block_dim (x, y, z), k->tid
 *                (linear thread index in the block), k->nthreads, kern_lane, kern_warp
 *   barrier      kern_sync (__syncthreads)
 *   shared mem   kern_shared (the launch's dynamic shared memory; no static __shared__)
 *   warps        kern_shfl_xor/down/idx (__shfl_*_sync over all 32 lanes), kern_any, kern_all,
 *                kern_ballot (__any/__all/__ballot_sync); every lane of the warp must call
 *   atomics      kern_atomic_add_f32 / kern_atomic_add_i32 (atomicAdd)
 *   math         kern_sqrtf, kern_expf, kern_fmaxf
 * Block sizes are multiples of 32 wherever a kernel uses warp operations (the harness refuses a
 * shuffle that reads a lane the block does not have). Reductions use kern_block_sum/max below:
 * a fixed tree, so they are deterministic on the device and in the harness alike.
 */
#ifndef EASEL_KERN_COMMON_H
#define EASEL_KERN_COMMON_H

#include <math.h>
#include <stddef.h>

#ifdef __CUDACC__
#define KERN_HD static __host__ __device__ inline
#else
#define KERN_HD static inline
#endif
/* Marks a kernel entry point; tests/engine/test_gpu_kernels.c finds them by this word. */
#define KERN_ENTRY KERN_HD

#define KERN_WARP 32

typedef struct KernDim {
    int x, y, z;
} KernDim;

typedef struct KernHost KernHost; /* the harness's per-thread state (kern_emulate.c) */

typedef struct KernCtx {
    KernDim block_idx, thread_idx, grid_dim, block_dim;
    int tid;        /* thread_idx.x + block_dim.x * (thread_idx.y + block_dim.y * thread_idx.z) */
    int nthreads;   /* block_dim.x * block_dim.y * block_dim.z */
    KernHost *host; /* NULL on the device */
    void *smem;     /* host: this block's shared memory; device: unused */
} KernCtx;

/* Grid, block and dynamic shared memory of one launch: the .cu launcher and the harness take
 * it from the same function of the arguments, so the harness runs the launcher's geometry. */
typedef struct KernLaunch {
    KernDim grid, block;
    size_t smem; /* bytes */
} KernLaunch;

#ifdef __cplusplus
extern "C" {
#endif
/* The harness's side of each primitive (gpu/kern_emulate.c); never called on the device. */
void kern_host_sync(KernCtx *k);
float kern_host_shfl(KernCtx *k, float v, int src_lane, int op);
unsigned kern_host_vote(KernCtx *k, int pred);
float kern_host_atomic_add_f32(float *p, float v);
int kern_host_atomic_add_i32(int *p, int v);
#ifdef __cplusplus
}
#endif

enum { KERN_SHFL_IDX = 0, KERN_SHFL_XOR = 1, KERN_SHFL_DOWN = 2 };

KERN_HD KernDim kern_dim(int x, int y, int z) {
    KernDim d;
    d.x = x, d.y = y, d.z = z;
    return d;
}

KERN_HD KernLaunch kern_launch_1d(int grid, int block, size_t smem) {
    KernLaunch l;
    l.grid = kern_dim(grid, 1, 1), l.block = kern_dim(block, 1, 1), l.smem = smem;
    return l;
}

/* Blocks of `block_dim` threads needed for n work items. */
KERN_HD int kern_blocks(long n, int block_dim) { return (int)((n + block_dim - 1) / block_dim); }

/* Global index of a thread in a 1-D grid of 1-D blocks. */
KERN_HD long kern_global(const KernCtx *k) {
    return (long)k->block_idx.x * k->block_dim.x + k->thread_idx.x;
}
KERN_HD int kern_lane(const KernCtx *k) { return k->tid % KERN_WARP; }
KERN_HD int kern_warp(const KernCtx *k) { return k->tid / KERN_WARP; }

#ifdef __CUDACC__
extern __shared__ __align__(16) unsigned char kern_smem_[];

static __device__ inline KernCtx kern_ctx_device(void) {
    KernCtx k;
    k.block_idx = kern_dim((int)blockIdx.x, (int)blockIdx.y, (int)blockIdx.z);
    k.thread_idx = kern_dim((int)threadIdx.x, (int)threadIdx.y, (int)threadIdx.z);
    k.grid_dim = kern_dim((int)gridDim.x, (int)gridDim.y, (int)gridDim.z);
    k.block_dim = kern_dim((int)blockDim.x, (int)blockDim.y, (int)blockDim.z);
    k.tid = k.thread_idx.x + k.block_dim.x * (k.thread_idx.y + k.block_dim.y * k.thread_idx.z);
    k.nthreads = k.block_dim.x * k.block_dim.y * k.block_dim.z;
    k.host = NULL;
    k.smem = NULL;
    return k;
}
#endif

KERN_HD void kern_sync(KernCtx *k) {
#ifdef __CUDA_ARCH__
    (void)k;
    __syncthreads();
#else
    kern_host_sync(k);
#endif
}

KERN_HD void *kern_shared(KernCtx *k) {
#ifdef __CUDA_ARCH__
    (void)k;
    return kern_smem_;
#else
    return k->smem;
#endif
}

KERN_HD float kern_shfl_xor(KernCtx *k, float v, int mask) {
#ifdef __CUDA_ARCH__
    (void)k;
    return __shfl_xor_sync(0xffffffffu, v, mask);
#else
    return kern_host_shfl(k, v, mask, KERN_SHFL_XOR);
#endif
}

/* Lane i gets lane i+delta's value; lanes past 31 keep their own (as CUDA). */
KERN_HD float kern_shfl_down(KernCtx *k, float v, int delta) {
#ifdef __CUDA_ARCH__
    (void)k;
    return __shfl_down_sync(0xffffffffu, v, (unsigned)delta);
#else
    return kern_host_shfl(k, v, delta, KERN_SHFL_DOWN);
#endif
}

KERN_HD float kern_shfl_idx(KernCtx *k, float v, int src_lane) {
#ifdef __CUDA_ARCH__
    (void)k;
    return __shfl_sync(0xffffffffu, v, src_lane);
#else
    return kern_host_shfl(k, v, src_lane, KERN_SHFL_IDX);
#endif
}

/* Bit i set when lane i's predicate is nonzero. */
KERN_HD unsigned kern_ballot(KernCtx *k, int pred) {
#ifdef __CUDA_ARCH__
    (void)k;
    return __ballot_sync(0xffffffffu, pred);
#else
    return kern_host_vote(k, pred);
#endif
}
KERN_HD int kern_any(KernCtx *k, int pred) { return kern_ballot(k, pred) != 0u; }
KERN_HD int kern_all(KernCtx *k, int pred) { return kern_ballot(k, !pred) == 0u; }

KERN_HD float kern_atomic_add_f32(float *p, float v) {
#ifdef __CUDA_ARCH__
    return atomicAdd(p, v);
#else
    return kern_host_atomic_add_f32(p, v);
#endif
}
KERN_HD int kern_atomic_add_i32(int *p, int v) {
#ifdef __CUDA_ARCH__
    return atomicAdd(p, v);
#else
    return kern_host_atomic_add_i32(p, v);
#endif
}

KERN_HD float kern_sqrtf(float x) { return sqrtf(x); }
KERN_HD float kern_expf(float x) { return expf(x); }
KERN_HD float kern_fmaxf(float a, float b) { return a > b ? a : b; }

/* Sum / max over the warp: every lane gets the result (butterfly, fixed order). */
KERN_HD float kern_warp_sum(KernCtx *k, float v) {
    for (int o = KERN_WARP / 2; o > 0; o >>= 1)
        v += kern_shfl_xor(k, v, o);
    return v;
}
KERN_HD float kern_warp_max(KernCtx *k, float v) {
    for (int o = KERN_WARP / 2; o > 0; o >>= 1)
        v = kern_fmaxf(v, kern_shfl_xor(k, v, o));
    return v;
}

/* Sum over the block; every thread gets it. scratch: KERN_WARP floats of shared memory that
 * no one else uses during the call. Block size a multiple of 32. Fixed order: deterministic. */
KERN_HD float kern_block_sum(KernCtx *k, float v, float *scratch) {
    int nwarps = k->nthreads / KERN_WARP;
    v = kern_warp_sum(k, v);
    if (kern_lane(k) == 0)
        scratch[kern_warp(k)] = v;
    kern_sync(k);
    v = kern_lane(k) < nwarps ? scratch[kern_lane(k)] : 0.0f;
    v = kern_warp_sum(k, v);
    kern_sync(k); /* scratch may be reused at once */
    return v;
}
KERN_HD float kern_block_max(KernCtx *k, float v, float *scratch) {
    int nwarps = k->nthreads / KERN_WARP;
    v = kern_warp_max(k, v);
    if (kern_lane(k) == 0)
        scratch[kern_warp(k)] = v;
    kern_sync(k);
    v = kern_lane(k) < nwarps ? scratch[kern_lane(k)] : -INFINITY;
    v = kern_warp_max(k, v);
    kern_sync(k);
    return v;
}

#endif
