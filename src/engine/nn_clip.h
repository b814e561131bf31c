/* nn_clip — engine ops CLIP inference needs beyond nn_*: vectorised GELU and QuickGELU, and
 * the bf16 <-> f32 conversions of weights kept as bf16 in memory.
 *
 * nn_gelu_forward calls libm's erff per element (about 20 ns each); in ViT-L/14 that is a
 * third of the time of a block. nn_clip_gelu_forward computes the same x·Φ(x) with erf from
 * Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) and an exp of its own (range reduction by
 * ln 2, degree-6 polynomial, exponent set by integer arithmetic): branch-free loops the
 * compiler vectorises, built for AVX2 as well where the CPU has it. Forward only (inference).
 * Conventions as in nn_linear.h; engine layer (libc, libm).
 */
#ifndef EASEL_NN_CLIP_H
#define EASEL_NN_CLIP_H

#include <stddef.h>
#include <stdint.h>

/* out = x·Φ(x) = ½x(1 + erf(x/√2)), n elements; out may alias inp. Max abs difference from
 * the erff form: below 3e-7·|x|. */
void nn_clip_gelu_forward(float *out, const float *inp, size_t n);

/* out = x·σ(1.702x) (OpenAI CLIP's QuickGELU), n elements; out may alias inp. Relative
 * difference from the expf form below 1e-6. */
void nn_clip_quickgelu_forward(float *out, const float *inp, size_t n);

/* out = x·σ(x) (SiLU: the UNet's and the VAE's activation, nn_silu_forward), n elements; out
 * may alias inp. The same form as QuickGELU's, relative difference from x·nn_sigmoidf(x)
 * below 1e-6. */
void nn_clip_silu_forward(float *out, const float *inp, size_t n);

/* out (N, O) = inp (N, K) · Wᵀ + bias (bias may be NULL). W (O, K) is f32 (W) or bf16 (WH,
 * with W NULL); the product and its sums are f32 either way. Split over the calling thread's
 * CPU pool by output columns (slabs of 128).
 * - With AVX-512 (x86-64, checked at run time): the engine's GEMM block, nn_sgemm.h (W
 *   packed 32 columns × 256 k at a time, a bf16 W widened while packing: the tile
 *   conversion costs no pass of its own; 8 rows × 32 columns of accumulators): each output
 *   is one f32 FMA chain in k order, whatever the split; the slabs are taken in turn by the
 *   pool's threads (backend_cpu_parallel_dynamic). (OpenBLAS 0.3.21 runs AVX2 kernels
 *   where OPENBLAS_CORETYPE says Haswell, as on the development machine.)
 * - Else OpenBLAS sgemm, one call per thread's range for f32; for bf16 one per 128-column
 *   tile widened into WBUF (O·K floats, the same rows' place) just before, by the thread
 *   that multiplies it; WBUF NULL: into a tile of 128 rows each thread allocates.
 * out must not alias inp. */
void nn_clip_linear_forward(float *out, const float *inp, const float *w, const uint16_t *wh,
                            const float *bias, float *wbuf, int N, int K, int O);

/* 1 when nn_clip_linear_forward runs its AVX-512 kernel on this CPU (0: OpenBLAS). */
int nn_clip_linear_avx512(void);
/* nn_clip_linear_forward followed by an activation over the whole output, fused: each
 * thread applies it to the 128-column slab it has just computed, while the slab is in its
 * cache (ViT-L/14's MLP output is 8 MB per two images: a separate pass reads it back from
 * memory, 4 % of a block). The same bits as the two calls one after the other. */
typedef enum NnClipAct {
    NN_CLIP_ACT_NONE = 0,
    NN_CLIP_ACT_QUICKGELU, /* nn_clip_quickgelu_forward */
    NN_CLIP_ACT_GELU,      /* nn_clip_gelu_forward */
} NnClipAct;
void nn_clip_linear_act_forward(float *out, const float *inp, const float *w,
                                const uint16_t *wh, const float *bias, float *wbuf, int N, int K,
                                int O, NnClipAct act);

/* bf16 (the top 16 bits of an f32) -> f32, exact; n elements. */
void nn_clip_bf16_to_f32(float *out, const uint16_t *inp, size_t n);

/* f32 -> bf16 rounded to nearest, ties to even; NaN stays NaN (quiet), infinities stay. */
void nn_clip_f32_to_bf16(uint16_t *out, const float *inp, size_t n);

#endif
