/* nn_sgemm — see nn_sgemm.h. */
#include "nn_sgemm.h"

#include <stddef.h>
#include <string.h>

/* the micro-tile's loops must unroll fully for its accumulators to stay in registers */
#pragma GCC optimize("O3")

#define KC 256 /* k per packed panel: 32·256 floats = 32 kB, within L1 (256 and 320 measured
                    * best on Zen 5; 384 spills to L2: 8 % slower) */
#define MR 8   /* rows per micro-tile */
#define NR 32  /* columns per panel (two zmm) */

/* The portable form: the same chains (from beta·c, FMA in k order) as the AVX-512 one. */
static void sgemm_scalar(int M, int N, int K, const float *a, int lda, int ta, const NnGemmB *b,
                         float alpha, float beta, float *c, int ldc) {
    size_t sam = ta ? 1 : (size_t)lda, sak = ta ? (size_t)lda : 1;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = beta != 0.0f ? c[(size_t)m * ldc + n] : 0.0f;
            for (int k = 0; k < K; k++) {
                size_t bi = b->trans ? (size_t)n * b->ld + k : (size_t)k * b->ld + n;
                float bv;
                if (b->f) {
                    bv = b->f[bi];
                } else {
                    uint32_t u = (uint32_t)b->h[bi] << 16;
                    memcpy(&bv, &u, 4);
                }
                s = __builtin_fmaf(a[m * sam + k * sak], bv, s);
            }
            c[(size_t)m * ldc + n] = alpha != 1.0f ? s * alpha : s;
        }
}

#if defined(__x86_64__)
#include <immintrin.h>

/* the attribute on each function: clang (make fuzz) ignores #pragma GCC target */
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

int nn_sgemm_available(void) {
    static int have = -1;
    if (have < 0)
        have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
    return have;
}

/* r[i] = column i of the 16×16 block whose rows were r[0..15]. */
AVX512 static inline void tr16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
        __m512d a2 = _mm512_castps_pd(t[4 * i + 2]), a3 = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) {
            t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
            t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
    }
}

/* Up to 16 values (mask M) of a row, f32 or bf16 widened; zeros elsewhere. */
AVX512 static inline __m512 load_row(const NnGemmB *b, size_t off, __mmask16 m) {
    if (b->f)
        return _mm512_maskz_loadu_ps(m, b->f + off);
    __m256i h = _mm256_maskz_loadu_epi16(m, b->h + off);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* panel[k·32 + c] = op(B)[k0 + k][p0 + c] for k < kc, c < nw; 0 for nw <= c < 32. */
AVX512 static void pack_panel(float *restrict panel, const NnGemmB *b, int k0, int kc, int p0,
                              int nw) {
    if (!b->trans) { /* rows of op(B) are rows of B: two masked loads per k */
        __mmask16 m0 = (__mmask16)(nw >= 16 ? 0xffff : (1u << nw) - 1);
        __mmask16 m1 = (__mmask16)(nw >= 32 ? 0xffff : nw > 16 ? (1u << (nw - 16)) - 1 : 0);
        for (int k = 0; k < kc; k++) {
            size_t off = (size_t)(k0 + k) * (size_t)b->ld + (size_t)p0;
            _mm512_store_ps(panel + (size_t)k * NR, load_row(b, off, m0));
            _mm512_store_ps(panel + (size_t)k * NR + 16, load_row(b, off + 16, m1));
        }
        return;
    }
    /* transposed: 16 columns of op(B) are 16 rows of B; 16×16 blocks through registers */
    for (int h = 0; h < 2; h++) {
        int rows = nw - 16 * h; /* valid rows of B in this half */
        for (int kk = 0; kk < kc; kk += 16) {
            int kn = kc - kk < 16 ? kc - kk : 16;
            __mmask16 km = (__mmask16)(kn == 16 ? 0xffff : (1u << kn) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < rows ? load_row(b, (size_t)(p0 + 16 * h + i) * (size_t)b->ld +
                                                  (size_t)(k0 + kk), km)
                                : _mm512_setzero_ps();
            tr16(r);
            for (int i = 0; i < kn; i++)
                _mm512_store_ps(panel + (size_t)(kk + i) * NR + 16 * h, r[i]);
        }
    }
}

/* C rows [0, h) (h <= MR), columns under masks m0 | m1, (+)= A rows · panel over kc. A row i
 * at a + i·sam, its k-th element SAK further per k; rows past h re-read row h − 1 (never
 * stored). LOAD_C: start from C's values, else from 0. */
#define MICRO_BODY(SAK, NV)                                                                 \
    const float *ar[MR];                                                                    \
    for (int i = 0; i < MR; i++)                                                            \
        ar[i] = a + (size_t)(i < h ? i : h - 1) * sam;                                      \
    __m512 acc[MR][NV];                                                                     \
    __mmask16 mk[2] = {m0, m1};                                                             \
    for (int i = 0; i < MR; i++)                                                            \
        for (int v = 0; v < (NV); v++)                                                      \
            acc[i][v] = load_c && i < h                                                     \
                            ? _mm512_maskz_loadu_ps(mk[v], c + (size_t)i * ldc + 16 * v)    \
                            : _mm512_setzero_ps();                                          \
    const float *bp = panel;                                                                \
    for (int k = 0; k < kc; k++, bp += NR) {                                                \
        __m512 x[NV];                                                                       \
        for (int v = 0; v < (NV); v++)                                                      \
            x[v] = _mm512_load_ps(bp + 16 * v);                                             \
        size_t ko = (size_t)k * (SAK);                                                      \
        for (int i = 0; i < MR; i++) {                                                      \
            __m512 av = _mm512_set1_ps(ar[i][ko]);                                          \
            for (int v = 0; v < (NV); v++)                                                  \
                acc[i][v] = _mm512_fmadd_ps(av, x[v], acc[i][v]);                           \
        }                                                                                   \
    }                                                                                       \
    if (alpha != 1.0f) { /* the last k block of a beta-0 product */                       \
        __m512 al = _mm512_set1_ps(alpha);                                                  \
        for (int i = 0; i < MR; i++)                                                        \
            for (int v = 0; v < (NV); v++)                                                  \
                acc[i][v] = _mm512_mul_ps(acc[i][v], al);                                   \
    }                                                                                       \
    for (int i = 0; i < h; i++)                                                             \
        for (int v = 0; v < (NV); v++)                                                      \
            _mm512_mask_storeu_ps(c + (size_t)i * ldc + 16 * v, mk[v], acc[i][v]);

/* Two zmm of columns (17..32 in the panel), or one (up to 16: a narrow tail, as a head size
 * of 40 leaves, computes half the padding); A by rows (SAK 1) or by columns. */
AVX512 static void
micro_rows(int h, int kc, const float *a, size_t sam, const float *restrict panel, float *c,
           size_t ldc, __mmask16 m0, __mmask16 m1, int load_c, float alpha) {
    MICRO_BODY(1, 2)
}

AVX512 static void
micro_cols(int h, int kc, const float *a, size_t sam, size_t sak, const float *restrict panel,
           float *c, size_t ldc, __mmask16 m0, __mmask16 m1, int load_c, float alpha) {
    MICRO_BODY(sak, 2)
}

AVX512 static void
micro_rows16(int h, int kc, const float *a, size_t sam, const float *restrict panel, float *c,
             size_t ldc, __mmask16 m0, __mmask16 m1, int load_c, float alpha) {
    MICRO_BODY(1, 1)
}

AVX512 static void
micro_cols16(int h, int kc, const float *a, size_t sam, size_t sak, const float *restrict panel,
             float *c, size_t ldc, __mmask16 m0, __mmask16 m1, int load_c, float alpha) {
    MICRO_BODY(sak, 1)
}

/* Prefetch part PART of NPARTS of the panel at (np0, nk0): its source lines come in from
 * memory while the current panel's rows run (a panel's 32 rows of a transposed B are 32
 * streams, more than the hardware prefetcher follows). */
AVX512 static void prefetch_panel(const NnGemmB *b, int N, int K, int np0, int nk0, int part,
                                  int nparts) {
    int kc = K - nk0 < KC ? K - nk0 : KC, nw = N - np0 < NR ? N - np0 : NR;
    size_t es = b->f ? 4 : 2;
    const char *base = b->f ? (const char *)b->f : (const char *)b->h;
    int rows = b->trans ? nw : kc;                  /* rows of B the panel reads */
    size_t len = (size_t)(b->trans ? kc : nw) * es; /* bytes of each */
    size_t lines = (len + 63) / 64, total = (size_t)rows * lines;
    size_t l0 = total * (size_t)part / (size_t)nparts;
    size_t l1 = total * (size_t)(part + 1) / (size_t)nparts;
    for (size_t l = l0; l < l1; l++) {
        size_t r = l / lines, off = (l % lines) * 64;
        size_t start = b->trans ? ((size_t)(np0 + (int)r) * (size_t)b->ld + (size_t)nk0) * es
                                : ((size_t)(nk0 + (int)r) * (size_t)b->ld + (size_t)np0) * es;
        _mm_prefetch(base + start + off, _MM_HINT_T1);
    }
}

/* Column slabs of NC outermost, so that a slab's C (M×NC) stays in L2 over the k blocks. */
#define NC 128

AVX512 static void sgemm_avx512(int M, int N, int K, const float *a, int lda, int ta,
                                const NnGemmB *b, float alpha, float beta, float *c, int ldc) {
    _Alignas(64) float panel[KC * NR];
    size_t sam = ta ? 1 : (size_t)lda, sak = ta ? (size_t)lda : 1;
    int strips = (M + MR - 1) / MR;
    for (int n0 = 0; n0 < N; n0 += NC) {
        int n1 = N - n0 < NC ? N : n0 + NC;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            int load_c = k0 > 0 || beta != 0.0f;
            float al = k0 + KC >= K ? alpha : 1.0f; /* alpha on the last block's store */
            for (int p0 = n0; p0 < n1; p0 += NR) {
                int nw = n1 - p0 < NR ? n1 - p0 : NR;
                /* the panel after this one: next columns, next k block, or next slab */
                int np0 = p0 + NR, nk0 = k0;
                if (np0 >= n1)
                    np0 = n0, nk0 = k0 + KC;
                if (nk0 >= K)
                    np0 = n1, nk0 = 0;
                int pre = np0 < N;
                pack_panel(panel, b, k0, kc, p0, nw);
                __mmask16 m0 = (__mmask16)(nw >= 16 ? 0xffff : (1u << nw) - 1);
                __mmask16 m1 =
                    (__mmask16)(nw >= 32 ? 0xffff : nw > 16 ? (1u << (nw - 16)) - 1 : 0);
                for (int r = 0; r < M; r += MR) {
                    int h = M - r < MR ? M - r : MR;
                    if (pre)
                        prefetch_panel(b, N, K, np0, nk0, r / MR, strips);
                    if (r + MR < M) /* the next strip's C, to read or to write: a miss per
                                     * row else (with a short k, C's traffic is the cost) */
                        for (int i = 0; i < MR && r + MR + i < M; i++) {
                            const float *cn = c + (size_t)(r + MR + i) * (size_t)ldc + p0;
                            __builtin_prefetch(cn, 1, 3);
                            __builtin_prefetch(cn + nw - 1, 1, 3);
                        }
                    const float *ab = a + (size_t)r * sam + (size_t)k0 * sak;
                    float *cb = c + (size_t)r * (size_t)ldc + p0;
                    if (ta && nw > 16)
                        micro_cols(h, kc, ab, sam, sak, panel, cb, (size_t)ldc, m0, m1, load_c,
                                   al);
                    else if (ta)
                        micro_cols16(h, kc, ab, sam, sak, panel, cb, (size_t)ldc, m0, m1,
                                     load_c, al);
                    else if (nw > 16)
                        micro_rows(h, kc, ab, sam, panel, cb, (size_t)ldc, m0, m1, load_c, al);
                    else
                        micro_rows16(h, kc, ab, sam, panel, cb, (size_t)ldc, m0, m1, load_c,
                                     al);
                }
            }
        }
    }
}
#else
int nn_sgemm_available(void) { return 0; }
#endif

void nn_sgemm_block(int M, int N, int K, const float *a, int lda, int trans_a, const NnGemmB *b,
                    float alpha, float beta, float *c, int ldc) {
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                c[(size_t)m * ldc + n] = beta != 0.0f ? c[(size_t)m * ldc + n] : 0.0f;
        return;
    }
#if defined(__x86_64__)
    if (nn_sgemm_available()) {
        sgemm_avx512(M, N, K, a, lda, trans_a, b, alpha, beta, c, ldc);
        return;
    }
#endif
    sgemm_scalar(M, N, K, a, lda, trans_a, b, alpha, beta, c, ldc);
}
