/* test_nn_sgemm — the engine's AVX-512 GEMM block (nn_sgemm.c) and the ops built on it:
 * - every element is one f32 FMA chain in k order from beta·c, times alpha (with beta 0) at
 *   the end: the block equals such a chain
 *   computed here element by element, bit for bit, for both layouts of A and of B, f32 and
 *   bf16 B, beta 0 and 1, and shapes whose rows, columns and k are not multiples of the
 *   micro-tile (8 rows), the panel (32 columns, 16-wide transposes) or the k block;
 * - nn_gemm and nn_linear_forward on a pool of 1, 2 and 3 threads (slabs taken in turn) give
 *   the same bits, and match a double-precision product; nn_linear_forward gives the bits of
 *   nn_clip_linear_forward (the CPU backend's linear is the op CLIP ran);
 * - backend_cpu_parallel_dynamic covers every piece exactly once.
 * Runs the portable path on CPUs without AVX-512 (the same chains). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "nn_clip.h"
#include "nn_linear.h"
#include "nn_sgemm.h"

static float frand(uint32_t *h) {
    *h = *h * 1664525u + 1013904223u;
    return (float)(*h >> 8) / 8388608.0f - 1.0f;
}

static float bf16_val(uint16_t v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

Test(nn_sgemm, block_is_the_fma_chain_bit_for_bit) {
    const int shapes[][3] = {{1, 1, 1},   {8, 32, 16},  {7, 13, 37},  {9, 33, 17},
                             {17, 65, 300}, {3, 31, 513}, {24, 100, 255}, {40, 8, 600}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int v = 0; v < 16; v++) {
            int ta = v & 1, tb = (v >> 1) & 1, half = (v >> 2) & 1, beta1 = (v >> 3) & 1;
            int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
            int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
            uint32_t h = 11u + (uint32_t)si * 16u + (uint32_t)v;
            size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
            float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc((size_t)M * ldc * 4);
            float *want = malloc((size_t)M * ldc * 4);
            uint16_t *bh = malloc(nb * 2);
            for (size_t i = 0; i < na; i++)
                a[i] = frand(&h);
            for (size_t i = 0; i < nb; i++) {
                b[i] = frand(&h);
                bh[i] = (uint16_t)(h >> 7); /* any bits: a bf16 is widened exactly */
                if ((bh[i] & 0x7f80u) == 0x7f80u) /* keep it finite */
                    bh[i] &= 0xbfffu;
            }
            for (size_t i = 0; i < (size_t)M * ldc; i++)
                c[i] = want[i] = frand(&h);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    float s = beta1 ? want[(size_t)m * ldc + n] : 0.0f;
                    for (int k = 0; k < K; k++) {
                        float av = ta ? a[(size_t)k * lda + m] : a[(size_t)m * lda + k];
                        size_t bi = tb ? (size_t)n * ldb + k : (size_t)k * ldb + n;
                        s = fmaf(av, half ? bf16_val(bh[bi]) : b[bi], s);
                    }
                    want[(size_t)m * ldc + n] = s;
                }
            NnGemmB bd = {half ? NULL : b, half ? bh : NULL, ldb, tb};
            float alpha = beta1 ? 1.0f : 0.125f * (float)(1 + v); /* alpha with beta 0 */
            if (!beta1)
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++)
                        want[(size_t)m * ldc + n] *= alpha;
            nn_sgemm_block(M, N, K, a, lda, ta, &bd, alpha, beta1 ? 1.0f : 0.0f, c, ldc);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < ldc; n++) /* the 2 columns past N are left alone */
                    cr_assert(memcmp(&c[(size_t)m * ldc + n], &want[(size_t)m * ldc + n], 4) == 0,
                              "shape %zu variant %d (ta %d tb %d bf16 %d beta %d) at (%d, %d): "
                              "%.9g vs %.9g", si, v, ta, tb, half, beta1, m, n,
                              c[(size_t)m * ldc + n], want[(size_t)m * ldc + n]);
            free(a), free(b), free(c), free(want), free(bh);
        }
}

/* nn_gemm / nn_linear_forward: same bits on 1, 2 and 3 threads; close to a double product. */
Test(nn_sgemm, ops_same_bits_on_any_pool) {
    const int shapes[][3] = {{16, 300, 70}, {33, 129, 257}, {64, 1000, 40}, {5, 7, 9}};
    Err err = {0};
    CpuPool *pools[3];
    for (int t = 0; t < 3; t++) {
        pools[t] = backend_cpu_pool_new(t + 1, &err);
        cr_assert(pools[t], "%s", err.msg);
    }
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        uint32_t h = 3u + (uint32_t)si;
        float *x = malloc((size_t)M * K * 4), *w = malloc((size_t)N * K * 4);
        float *bias = malloc((size_t)N * 4), *out[3], *g[3];
        for (int i = 0; i < M * K; i++)
            x[i] = frand(&h);
        for (int i = 0; i < N * K; i++)
            w[i] = frand(&h);
        for (int i = 0; i < N; i++)
            bias[i] = frand(&h);
        for (int t = 0; t < 3; t++) {
            out[t] = malloc((size_t)M * N * 4);
            g[t] = malloc((size_t)N * K * 4);
            CpuPool *prev = backend_cpu_use(pools[t]);
            nn_linear_forward(out[t], x, w, bias, M, K, N);
            for (int i = 0; i < N * K; i++)
                g[t][i] = 0.5f;
            /* (N, K) += (M, N)ᵀ · (M, K): both operands transposed and beta 1 */
            nn_gemm(1, 0, N, K, M, out[t], N, x, K, 1.0f, g[t], K);
            backend_cpu_use(prev);
        }
        if (nn_sgemm_available() && M >= 32 && N >= 16) { /* both: chains from the bias */
            float *clip = malloc((size_t)M * N * 4);
            nn_clip_linear_forward(clip, x, w, NULL, bias, NULL, M, K, N);
            cr_assert(memcmp(clip, out[0], (size_t)M * N * 4) == 0, "linear vs nn_clip, %zu", si);
            free(clip);
        }
        for (int t = 1; t < 3; t++) {
            cr_assert(memcmp(out[t], out[0], (size_t)M * N * 4) == 0, "linear, %d threads", t + 1);
            cr_assert(memcmp(g[t], g[0], (size_t)N * K * 4) == 0, "gemm, %d threads", t + 1);
        }
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double s = bias[n];
                for (int k = 0; k < K; k++)
                    s += (double)x[m * K + k] * w[n * K + k];
                cr_assert(fabs(out[0][m * N + n] - s) <= 1e-5 * (1 + sqrt((double)K)),
                          "shape %zu at (%d, %d): %g vs %g", si, m, n, out[0][m * N + n], s);
            }
        for (int t = 0; t < 3; t++)
            free(out[t]), free(g[t]);
        free(x), free(w), free(bias);
    }
    for (int t = 0; t < 3; t++)
        backend_cpu_pool_free(pools[t]);
}

typedef struct Seen {
    atomic_int *count;
} Seen;

static void mark(void *ctx, int64_t b, int64_t e) {
    Seen *s = ctx;
    for (int64_t i = b; i < e; i++)
        atomic_fetch_add(&s->count[i], 1);
}

Test(nn_sgemm, dynamic_pieces_cover_each_index_once) {
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(3, &err);
    cr_assert(pool, "%s", err.msg);
    CpuPool *prev = backend_cpu_use(pool);
    const int64_t ns[] = {1, 2, 7, 100, 1001};
    const int64_t chunks[] = {1, 3, 64, 2000};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 4; j++) {
            atomic_int *count = calloc((size_t)ns[i], sizeof *count);
            Seen s = {count};
            backend_cpu_parallel_dynamic(ns[i], chunks[j], mark, &s);
            for (int64_t k = 0; k < ns[i]; k++)
                cr_assert_eq(atomic_load(&count[k]), 1, "n %ld chunk %ld index %ld",
                             (long)ns[i], (long)chunks[j], (long)k);
            free(count);
        }
    backend_cpu_use(prev);
    backend_cpu_pool_free(pool);
}
