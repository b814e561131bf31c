/* bench_gemm — the engine's CPU GEMM block (nn_sgemm, AVX-512) against OpenBLAS's sgemm at the
 * shapes the models run, and where a ViT-L/14 block's time goes, on ONE thread in CPU time
 * (CLOCK_THREAD_CPUTIME_ID): on a machine shared with other jobs a thread's CPU time moves far
 * less than wall time, so these lines compare kernels where the wall-clock benches compare
 * programs.
 *
 *   bench gemm-NAME: R.RRx vs openblas (ours A GFLOP/s, peer B GFLOP/s)
 *     the same product (128-column slabs, as nn_gemm cuts it) through nn_sgemm_block and
 *     through cblas_sgemm (the kernel OpenBLAS picks here: its core name is printed);
 *   fma peak: what one core's FMA units do with 12 independent chains (no memory);
 *   l14 block: per op of one ViT-L/14 vision block at two images (514 tokens), ms and
 *     GFLOP/s, through the engine ops the model calls.
 * Prints a skip line where the CPU has no AVX-512 (nn_sgemm then is not used). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_clip.h"
#include "nn_elementwise.h"
#include "nn_flash.h"
#include "nn_norm.h"
#include "nn_sgemm.h"

#define REPS 5

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float *filled(size_t n, unsigned seed) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(((i + seed) * 2654435761u) % 2001) / 1000.0f - 1.0f;
    return x;
}

#if defined(__x86_64__)
#include <immintrin.h>
/* GFLOP/s of 12 independent zmm FMA chains: the core's arithmetic ceiling. */
__attribute__((target("avx512f,fma"))) static double fma_peak(void) {
    __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-3f);
    /* distinct starts, or the compiler merges equal chains */
#define S(i) _mm512_set1_ps(0.01f * (float)(i))
    __m512 a0 = S(0), a1 = S(1), a2 = S(2), a3 = S(3), a4 = S(4), a5 = S(5), a6 = S(6),
           a7 = S(7), a8 = S(8), a9 = S(9), a10 = S(10), a11 = S(11);
#undef S
    long iters = 20000000;
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = cpu_now();
        for (long k = 0; k < iters; k++) {
#define F(v) v = _mm512_fmadd_ps(v, x, y)
            F(a0), F(a1), F(a2), F(a3), F(a4), F(a5), F(a6), F(a7), F(a8), F(a9), F(a10), F(a11);
#undef F
        }
        double d = cpu_now() - t0;
        best = d < best ? d : best;
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    if (_mm512_reduce_add_ps(s) == 12345.0f) /* never: keeps the chains */
        printf(" ");
    return (double)iters * 12 * 32 / best / 1e9;
}
#endif

typedef struct Shape {
    const char *name;
    int M, N, K, trans_b; /* c (M,N) = a (M,K) · op(b); trans_b: b stored (N,K) */
} Shape;

/* Best seconds of c = a · op(b) in 128-column slabs, ours or OpenBLAS's. */
static double time_gemm(const Shape *s, const float *a, const float *b, float *c, int ours) {
    double best = 1e30;
    for (int r = 0; r < REPS + 1; r++) {
        double t0 = cpu_now();
        for (int j0 = 0; j0 < s->N; j0 += 128) {
            int nj = s->N - j0 < 128 ? s->N - j0 : 128;
            const float *bj = s->trans_b ? b + (size_t)j0 * s->K : b + j0;
            int ldb = s->trans_b ? s->K : s->N;
            if (ours) {
                NnGemmB bd = {bj, NULL, ldb, s->trans_b};
                nn_sgemm_block(s->M, nj, s->K, a, s->K, 0, &bd, 1.0f, 0.0f, c + j0, s->N);
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, s->trans_b ? CblasTrans : CblasNoTrans,
                            s->M, nj, s->K, 1.0f, a, s->K, bj, ldb, 0.0f, c + j0, s->N);
            }
        }
        double d = cpu_now() - t0;
        if (r > 0) /* the first warms the caches */
            best = d < best ? d : best;
    }
    return best;
}

/* One ViT-L/14 vision block at B images through the ops clip.c calls, per op. */
static void l14_block(int B) {
    int T = 257, C = 1024, M = 4096, NH = 16, N = B * T;
    float *x = filled((size_t)N * C, 1), *h = filled((size_t)N * C, 2);
    float *qkv = filled((size_t)N * 3 * C, 3), *att = filled((size_t)N * C, 4);
    float *m = filled((size_t)N * M, 5), *wqkv = filled((size_t)3 * C * C, 6);
    float *wo = filled((size_t)C * C, 7), *w1 = filled((size_t)M * C, 8);
    float *w2 = filled((size_t)C * M, 9), *bias = filled((size_t)M, 10), *lnw = filled(C, 11);
    float *mean = filled(N, 12), *rstd = filled(N, 13), *lse = filled((size_t)B * NH * T, 14);
    for (size_t i = 0; i < (size_t)3 * C * C; i++)
        wqkv[i] *= 0.03f;
    FlashAttn fa = {.B = B, .NH = NH, .Tq = T, .Tk = T, .hd = C / NH, .ldq = 3 * C,
                    .ldk = 3 * C, .ldv = 3 * C, .ldo = C};
    const char *names[] = {"layernorm", "qkv", "attention", "out", "residual", "fc1",
                           "quickgelu", "fc2", "fc1+quickgelu fused"};
    double flops[] = {0, 2.0 * N * C * 3 * C, 4.0 * B * T * T * C, 2.0 * N * C * C, 0,
                      2.0 * N * C * M, 0, 2.0 * N * C * M, 2.0 * N * C * M};
    double ms[9], block;
    for (int op = 0; op < 9; op++) {
        double best = 1e30;
        for (int r = 0; r < REPS + 1; r++) {
            double t0 = cpu_now();
            switch (op) {
            case 0: nn_layernorm_forward(h, mean, rstd, x, lnw, bias, N, C, 1e-5f); break;
            case 1: nn_clip_linear_forward(qkv, h, wqkv, NULL, bias, NULL, N, C, 3 * C); break;
            case 2: nn_flash_forward(att, lse, qkv, qkv + C, qkv + 2 * C, &fa); break;
            case 3: nn_clip_linear_forward(h, att, wo, NULL, bias, NULL, N, C, C); break;
            case 4: nn_add_forward(x, x, h, (size_t)N * C); break;
            case 5: nn_clip_linear_forward(m, h, w1, NULL, bias, NULL, N, C, M); break;
            case 6: nn_clip_quickgelu_forward(m, m, (size_t)N * M); break;
            case 7: nn_clip_linear_forward(h, m, w2, NULL, bias, NULL, N, M, C); break;
            default:
                nn_clip_linear_act_forward(m, h, w1, NULL, bias, NULL, N, C, M,
                                           NN_CLIP_ACT_QUICKGELU);
            }
            double d = cpu_now() - t0;
            if (r > 0)
                best = d < best ? d : best;
        }
        ms[op] = best * 1e3;
    }
    /* a block: two LayerNorms and two residual adds, the rest once */
    block = 2 * ms[0] + ms[1] + ms[2] + ms[3] + 2 * ms[4] + ms[5] + ms[6] + ms[7];
    printf("  l14 block (one thread, %d images, %d tokens):", B, N);
    for (int op = 0; op < 9; op++) {
        printf(" %s %.2f ms", names[op], ms[op]);
        if (flops[op] > 0)
            printf(" (%.0f GFLOP/s)", flops[op] / ms[op] / 1e6);
        printf(op < 8 ? "," : "\n");
    }
    printf("  l14 block total %.1f ms (two LayerNorms and adds), %.2f images/s on one thread "
           "for 24 blocks; with the fused MLP activation %.1f ms\n",
           block, B / (24 * block / 1e3), block - ms[5] - ms[6] + ms[8]);
    fflush(stdout);
    float *all[] = {x, h, qkv, att, m, wqkv, wo, w1, w2, bias, lnw, mean, rstd, lse};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        free(all[i]);
}

int main(void) {
    if (!nn_sgemm_available()) {
        printf("bench gemm: skipped (no AVX-512 on this CPU: the engine runs OpenBLAS)\n");
        return 0;
    }
    /* no pool, and OpenBLAS on one thread: everything below runs on this thread */
    openblas_set_num_threads(1);
    const Shape shapes[] = {
        {"l14-qkv-514x1024x3072", 514, 3072, 1024, 1},
        {"l14-fc2-514x4096x1024", 514, 1024, 4096, 1},
        {"reward-b256-512x1536x512", 512, 512, 1536, 1},
        {"conv-320x320x4096", 320, 4096, 2880, 0}, /* im2col forward of a 3x3 conv */
        {"attn-scores-88x88x64", 88, 88, 64, 1},
    };
    printf("  gemm: one thread, CPU time, best of %d; OpenBLAS core %s%s; fma peak %.1f GFLOP/s a "
           "core\n", REPS, openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? " (forced by OPENBLAS_CORETYPE)" : "",
#if defined(__x86_64__)
           fma_peak()
#else
           0.0
#endif
    );
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const Shape *s = &shapes[i];
        float *a = filled((size_t)s->M * s->K, 1), *b = filled((size_t)s->N * s->K, 2);
        float *c = filled((size_t)s->M * s->N, 3);
        int small = (double)s->M * s->N * s->K < 1e8;
        int loops = small ? 200 : 1; /* a tile product is microseconds: time many */
        double ours = 0, peer = 0;
        for (int l = 0; l < loops; l++) {
            ours += time_gemm(s, a, b, c, 1);
            peer += time_gemm(s, a, b, c, 0);
        }
        double g = 2.0 * s->M * s->N * s->K * loops / 1e9;
        printf("bench gemm-%s: %.2fx vs openblas (ours %.1f GFLOP/s, peer %.1f GFLOP/s)\n",
               s->name, peer / ours, g / ours, g / peer);
        fflush(stdout);
        free(a), free(b), free(c);
    }
    l14_block(2);
    return 0;
}
