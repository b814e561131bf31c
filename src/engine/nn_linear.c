/* nn_linear — GEMM-based ops. See nn_linear.h.
 *
 * Each GEMM is cut into fixed column slabs of the output, shared out over the pool, and each
 * slab is one single-threaded call: the engine's AVX-512 block (nn_sgemm.h) where the CPU has
 * it and the product has 32 rows and 16 columns or more, the slabs taken in turn by the threads;
 * else cblas_sgemm, the slabs split evenly. No thread ever sums into another's outputs, so
 * the result depends neither on timing nor on the thread count. Bias sums run over rows in
 * order for each column.
 */
#include "nn_linear.h"

#include <cblas.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_sgemm.h"

#define GEMM_SLAB 128 /* output columns per sgemm call */
#define NN_GEMM_OWN_ROWS 32 /* rows and columns for nn_sgemm */
#define NN_GEMM_OWN_COLS 16

typedef struct GemmJob {
    enum CBLAS_TRANSPOSE ta, tb;
    int M, N, K;
    const float *a;
    int lda;
    const float *b;
    int ldb;
    float beta;
    float *c;
    int ldc;
    int own;           /* nn_sgemm_block instead of OpenBLAS */
    const float *bias; /* own only: each slab's rows start as the bias (then beta is 1) */
} GemmJob;

/* Slabs [s0, s1) of GEMM_SLAB output columns; column j of op(b) starts at b + j (no
 * transpose) or at row j (transposed). */
static void gemm_slabs(void *ctx, int64_t s0, int64_t s1) {
    const GemmJob *g = ctx;
    for (int64_t s = s0; s < s1; s++) {
        int j0 = (int)s * GEMM_SLAB, nj = g->N - j0 < GEMM_SLAB ? g->N - j0 : GEMM_SLAB;
        const float *b = g->tb == CblasNoTrans ? g->b + j0 : g->b + (size_t)j0 * g->ldb;
        if (g->own) {
            if (g->bias) /* in the thread's cache just before the product adds to it */
                for (int i = 0; i < g->M; i++)
                    memcpy(g->c + (size_t)i * g->ldc + j0, g->bias + j0,
                           (size_t)nj * sizeof(float));
            NnGemmB bd = {b, NULL, g->ldb, g->tb == CblasTrans};
            nn_sgemm_block(g->M, nj, g->K, g->a, g->lda, g->ta == CblasTrans, &bd, 1.0f, g->beta,
                           g->c + j0, g->ldc);
            continue;
        }
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, g->M, nj, g->K, 1.0f, g->a, g->lda, b, g->ldb,
                    g->beta, g->c + j0, g->ldc);
    }
}

/* c (M,N) = beta·c + op(a)·op(b). The output is cut into fixed slabs of GEMM_SLAB columns
 * whatever the thread count, and the pool shares out whole slabs: every call to OpenBLAS has
 * the same shape with 1 or 16 threads, so the bits do not depend on the thread count (BLAS
 * picks kernels by shape). */
/* Whether gemm() runs nn_sgemm for this shape: where the CPU has it and the shape repays
 * packing B. Below 32 rows a slab's packed panel serves too few rows to hide fetching the
 * next one from memory (the reward model at 8 pairs, 16 rows: 5 % slower a step with cold
 * weights, though twice as fast in cache); below 16 columns most of its 32 are padding.
 * Depends on the shape and the CPU only. */
static int own_gemm(int M, int N, float beta) {
    return M >= NN_GEMM_OWN_ROWS && N >= NN_GEMM_OWN_COLS && (beta == 0.0f || beta == 1.0f) &&
           nn_sgemm_available();
}

/* The own path of gemm(), with BIAS (may be NULL) as the rows' start: slabs taken in turn by
 * the threads (the same bits whoever takes them), one slab per piece for products worth a
 * wake-up. */
static void gemm_own(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc, const float *bias) {
    GemmJob g = {ta, tb, M, N, K, a, lda, b, ldb, bias ? 1.0f : beta, c, ldc, 1, bias};
    int64_t n_slabs = (N + GEMM_SLAB - 1) / GEMM_SLAB;
    backend_cpu_parallel_dynamic(n_slabs, (int64_t)M * N * K < 64 * 1024 ? n_slabs : 1,
                                 gemm_slabs, &g);
}

static void gemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c,
                 int ldc) {
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                c[(size_t)i * ldc + j] *= beta;
        return;
    }
    if (own_gemm(M, N, beta)) {
        gemm_own(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc, NULL);
        return;
    }
    GemmJob g = {ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc, 0, NULL};
    int64_t n_slabs = (N + GEMM_SLAB - 1) / GEMM_SLAB;
    /* tiny products are not worth a wake-up */
    int64_t grain = (int64_t)M * N * K < 64 * 1024 ? n_slabs : 1;
    /* A Backend binds its pool without touching OpenBLAS's process-wide thread count: when
     * OpenBLAS is threaded itself, the slabs run in turn on the caller and OpenBLAS's threads
     * split each one, so two pools of spinning threads never fight over the cores. The slabs
     * are the same calls either way. */
    if (backend_cpu_threads() > 1 && openblas_get_num_threads() > 1)
        grain = n_slabs;
    backend_cpu_parallel_for(n_slabs, grain, gemm_slabs, &g);
}

typedef struct BiasJob {
    float *out;
    const float *inp;
    const float *bias;
    int N, C;
} BiasJob;

static void bias_rows(void *ctx, int64_t n0, int64_t n1) {
    const BiasJob *j = ctx;
    for (int64_t n = n0; n < n1; n++) {
        float *o = j->out + n * j->C;
        const float *x = j->inp + n * j->C;
        for (int c = 0; c < j->C; c++)
            o[c] = x[c] + j->bias[c];
    }
}

void nn_bias_add_forward(float *out, const float *inp, const float *bias, int N, int C) {
    BiasJob j = {out, inp, bias, N, C};
    backend_cpu_parallel_for(N, 1 + 16384 / (C ? C : 1), bias_rows, &j);
}

typedef struct DBiasJob {
    float *dbias;
    const float *dout;
    int N, C;
} DBiasJob;

static void dbias_cols(void *ctx, int64_t c0, int64_t c1) {
    const DBiasJob *j = ctx;
    for (int n = 0; n < j->N; n++) {
        const float *d = j->dout + (size_t)n * j->C;
        for (int64_t c = c0; c < c1; c++)
            j->dbias[c] += d[c];
    }
}

static void dbias_add(float *dbias, const float *dout, int N, int C) {
    DBiasJob j = {dbias, dout, N, C};
    backend_cpu_parallel_for(C, 1 + 16384 / (N ? N : 1), dbias_cols, &j);
}

typedef struct AddJob {
    float *dst;
    const float *src;
} AddJob;

static void add_range(void *ctx, int64_t i0, int64_t i1) {
    const AddJob *j = ctx;
    for (int64_t i = i0; i < i1; i++)
        j->dst[i] += j->src[i];
}

void nn_bias_add_backward(float *dinp, float *dbias, const float *dout, int N, int C) {
    if (dinp) {
        AddJob j = {dinp, dout};
        backend_cpu_parallel_for((int64_t)N * C, 16384, add_range, &j);
    }
    if (dbias)
        dbias_add(dbias, dout, N, C);
}

void nn_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, int OC) {
    ASSERT(out != inp && out != weight);
    if (C > 0 && own_gemm(N, OC, 0.0f)) { /* the bias written slab by slab, in cache */
        gemm_own(CblasNoTrans, CblasTrans, N, OC, C, inp, C, weight, C, 0.0f, out, OC, bias);
        return;
    }
    if (bias) {
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
    }
    gemm(CblasNoTrans, CblasTrans, N, OC, C, inp, C, weight, C, bias ? 1.0f : 0.0f, out, OC);
}

void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int C, int OC) {
    if (dinp) /* (N,C) += (N,OC)·(OC,C) */
        gemm(CblasNoTrans, CblasNoTrans, N, C, OC, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight) /* (OC,C) += (N,OC)ᵀ·(N,C) */
        gemm(CblasTrans, CblasNoTrans, OC, C, N, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias)
        dbias_add(dbias, dout, N, OC);
}

void nn_linear_backward_set(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int N, int C, int OC) {
    if (dinp)
        gemm(CblasNoTrans, CblasNoTrans, N, C, OC, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight)
        gemm(CblasTrans, CblasNoTrans, OC, C, N, dout, OC, inp, C, 0.0f, dweight, C);
    if (dbias) {
        memset(dbias, 0, (size_t)OC * sizeof(float));
        dbias_add(dbias, dout, N, OC);
    }
}

void nn_gemm(int trans_a, int trans_b, int M, int N, int K, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc) {
    gemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, a,
         lda, b, ldb, beta, c, ldc);
}

void nn_matmul_forward(float *out, const float *a, const float *b, int M, int K, int N) {
    ASSERT(out != a && out != b);
    gemm(CblasNoTrans, CblasNoTrans, M, N, K, a, K, b, N, 0.0f, out, N);
}

void nn_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                        int M, int K, int N) {
    if (da) /* (M,K) += (M,N)·(K,N)ᵀ */
        gemm(CblasNoTrans, CblasTrans, M, K, N, dout, N, b, N, 1.0f, da, K);
    if (db) /* (K,N) += (M,K)ᵀ·(M,N) */
        gemm(CblasTrans, CblasNoTrans, K, N, M, a, K, dout, N, 1.0f, db, N);
}
