/* torch_rng — the random numbers PyTorch draws, so a seed gives diffusers' latents and noise.
 *
 * TorchCpuGen is `torch.Generator("cpu").manual_seed(seed)`: MT19937 seeded with the low 32
 * bits of the seed (torch's init), 32-bit draws for float uniforms (24 bits kept), two draws
 * (first = high word) for a 64-bit value. torch_cpu_randn fills like
 * `torch.randn(n, generator=g)` (f32, contiguous):
 * - n >= 16: all n uniforms first, then Box–Muller per block of 16 (u1 = 1 - d[j],
 *   u2 = d[j+8], j < 8); when n is not a multiple of 16 the last 16 values are redrawn (16
 *   new uniforms) and transformed again. The transform is torch's AVX2 one (x86-64 hosts
 *   with AVX2 or AVX-512: torch dispatches normal to AVX2 there): Cephes-style float
 *   polynomials for log and sincos, evaluated here in scalar C with the same operations in
 *   the same order and the same fused multiply-adds (TORCH_RNG_AVX2), or the generic
 *   kernel's libm logf/cosf/sinf
 *   (TORCH_RNG_SCALAR: torch on other CPUs, e.g. arm64). doc/generate.md says which is
 *   bit-exact.
 * - n < 16: the double-precision serial path: per pair two 53-bit uniforms, r = sqrt(-2
 *   log1p(-u2)), theta = 2 pi u1, r cos theta returned and r sin theta cached in the generator
 *   for the next value (also across calls, until the next seed).
 *
 * TorchCudaGen is `torch.Generator("cuda").manual_seed(seed)`: Philox4x32-10 as cuRAND's
 * device API draws it (curand_init(seed, subsequence, offset), curand_normal4), laid out as
 * torch's CUDA normal kernel lays out its threads; see torch_cuda_randn.
 *
 * Not thread-safe per generator (one owner, as torch locks its generator per call).
 */
#ifndef EASEL_TORCH_RNG_H
#define EASEL_TORCH_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef enum TorchRngPath {
    TORCH_RNG_AVX2 = 0,   /* torch on x86-64 with AVX2 (the usual host) */
    TORCH_RNG_SCALAR = 1, /* torch's generic kernel (libm), e.g. on arm64 */
} TorchRngPath;

typedef struct TorchCpuGen {
    uint32_t mt[624];
    int next;             /* index of the next state word */
    int left;             /* draws left before the state is regenerated, plus one */
    double next_double;   /* the cached second value of the serial normal path */
    int has_next_double;
    TorchRngPath path;
} TorchCpuGen;

/* manual_seed(seed): torch keeps the low 32 bits for MT19937 and forgets the cached normal. */
void torch_cpu_gen_seed(TorchCpuGen *g, uint64_t seed, TorchRngPath path);
uint32_t torch_cpu_gen_u32(TorchCpuGen *g);
/* Two draws, the first one the high word (torch's random64). */
uint64_t torch_cpu_gen_u64(TorchCpuGen *g);

/* torch.randn(n) on a CPU generator, f32: the next n values, as described above. */
void torch_cpu_randn(TorchCpuGen *g, float *x, size_t n);

/* diffusers' randn_tensor with a list of generators: item b of a batch of BATCH items of
 * PER_ITEM values each is torch_cpu_randn(&gens[b], x + b * PER_ITEM, PER_ITEM). */
void torch_cpu_randn_batch(TorchCpuGen *gens, int batch, float *x, size_t per_item);

/* The AVX2 kernel's log and sincos for one float (exposed for the tests). */
float torch_rng_logf(float x);
void torch_rng_sincosf(float x, float *s, float *c);

/* ---- CUDA (Philox4x32-10) ---------------------------------------------------------------- */

/* Philox4x32-10 on a 128-bit counter and a 64-bit key: out = the 4 words of block ctr. */
void torch_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* cuRAND's Box–Muller for a Philox state (curand_normal4): 4 words → 4 normals, computed
 * with libm on the host, as cuRAND's host API does (a GPU uses its own logf and the
 * approximate __sincosf: expect differences in the last bits). */
void torch_curand_normal4(const uint32_t w[4], float out[4]);

typedef struct TorchCudaGen {
    uint64_t seed;
    uint64_t offset;      /* philox_offset_per_thread, a multiple of 4 */
    int sm_count;         /* the device's multiprocessors (0: no cap on the grid) */
    int threads_per_sm;   /* its maxThreadsPerMultiProcessor */
} TorchCudaGen;

/* manual_seed(seed) for a device with sm_count multiprocessors of threads_per_sm threads
 * (the grid torch launches is capped by them; 0, 0 = uncapped, right for tensors up to
 * sm_count * threads_per_sm values on the device). */
void torch_cuda_gen_seed(TorchCudaGen *g, uint64_t seed, int sm_count, int threads_per_sm);

/* torch.randn(n, generator=g) on CUDA, f32: thread t of the grid (256-thread blocks, one
 * per 256 values, at most sm_count * threads_per_sm / 256 blocks) runs
 * curand_init(seed, t, offset) and per round one curand_normal4 whose component i goes to
 * value t + T*(4*round + i) (T = the grid's threads); the offset then advances by 4 per
 * round. */
void torch_cuda_randn(TorchCudaGen *g, float *x, size_t n);

#endif
