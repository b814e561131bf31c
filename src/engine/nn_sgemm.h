/* nn_sgemm — the engine's own single-threaded f32 GEMM block for CPUs with AVX-512, used by
 * nn_linear (nn_gemm, nn_linear_*, nn_matmul_*), nn_clip_linear_forward and nn_flash in
 * place of OpenBLAS's sgemm where the CPU has AVX-512F (checked at run time). The caller
 * splits the work over its threads (by column slabs, nn_linear.c); this file never does.
 *
 * Why not OpenBLAS: the Debian build picks its kernels by CPU type and on machines it does
 * not know (AMD Zen 5, or OPENBLAS_CORETYPE=Haswell as on the development machine) runs AVX2
 * kernels at half the FMA width; and its sgemm packs B with scalar copies, which costs a
 * sixth of the time at CLIP's shapes.
 *
 * How: op(B) is packed 32 columns × up to 256 k at a time into a panel on the stack
 * (a transposed B, as a linear layer's W (O, K), by 16×16 register transposes; bf16 widened
 * on the way), then 8 rows × 32 columns of accumulators (16 zmm registers: two FMA pipes of
 * latency 4 need 8 chains in flight) run over the panel's k, reading op(A) straight from A
 * by broadcasts (either layout). Rows and columns past the end are masked; a k block's
 * partial sums go back to C and come back for the next block, unchanged.
 *
 * Bits: every element of C is one f32 FMA chain in k order, started from beta·C (beta is 0
 * or 1: from 0 or from C's value) and multiplied by alpha at the end, whatever M, N or the
 * caller's split: results do not depend on the thread count or on which thread runs which
 * columns.
 * Engine layer.
 */
#ifndef EASEL_NN_SGEMM_H
#define EASEL_NN_SGEMM_H

#include <stdint.h>

/* op(B): with trans, op(B)[k][n] = B[n·ld + k] (B stored N×K, as a linear layer's weight);
 * else op(B)[k][n] = B[k·ld + n]. Exactly one of f (f32) and h (bf16) is set. */
typedef struct NnGemmB {
    const float *f;
    const uint16_t *h;
    int ld;
    int trans;
} NnGemmB;

/* 1 where nn_sgemm_block runs (x86-64 with AVX-512F), else 0: use another GEMM then. */
int nn_sgemm_available(void);

/* c (M×N, row-major, ldc) = alpha·op(a)·op(b) + beta·c with beta 0 or 1, and alpha 1 when
 * beta is 1 (alpha multiplies the finished sum: (Σ)·alpha); op(a)[m][k] = a[m·lda + k], or
 * a[k·lda + m] with trans_a. Runs the AVX-512 kernel where nn_sgemm_available(), else
 * plain loops with the same chains. */
void nn_sgemm_block(int M, int N, int K, const float *a, int lda, int trans_a, const NnGemmB *b,
                    float alpha, float beta, float *c, int ldc);

#endif
