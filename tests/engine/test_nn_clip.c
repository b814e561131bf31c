/* test_nn_clip — the vectorised GELU / QuickGELU (also what nn_gelu_forward and
 * nn_quickgelu_forward run) against the plain libm forms over a dense range, extremes, and in
 * place; the linear op (the engine's AVX-512 GEMM where the CPU has it, OpenBLAS otherwise)
 * against a double-precision loop on ragged shapes, f32 and bf16 weights, with and without
 * bias, serial and on a pool; the linear fused with an activation; the bf16 conversions. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include <stdint.h>
#include <string.h>

#include "backend_cpu.h"
#include "nn_activation.h"
#include "nn_clip.h"
#include "nn_diffusion.h"

#define N 200003 /* not a multiple of the block size */

static float *grid(void) {
    float *x = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++)
        x[i] = -40.0f + 80.0f * (float)i / (N - 1);
    x[0] = -INFINITY;
    x[1] = INFINITY;
    x[2] = 0.0f;
    x[3] = -0.0f;
    x[4] = 1e-30f;
    x[5] = -1e-30f;
    return x;
}

Test(nn_clip, gelu_matches_erf_form) {
    float *x = grid(), *want = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) /* the libm form (nn_gelu_forward is the fast one now) */
        want[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.7071067811865476f));
    nn_clip_gelu_forward(got, x, N);
    for (int i = 0; i < N; i++) {
        if (isnan(want[i])) {
            cr_assert(isnan(got[i]), "x=%g", x[i]);
            continue;
        }
        if (isinf(want[i])) {
            cr_assert_eq(got[i], want[i], "x=%g", x[i]);
            continue;
        }
        cr_assert_leq(fabsf(got[i] - want[i]), 3e-7f * fabsf(x[i]) + 1e-38f,
                      "x=%.9g got %.9g want %.9g", x[i], got[i], want[i]);
    }
    nn_clip_gelu_forward(x, x, N); /* in place */
    for (int i = 6; i < N; i++)
        cr_assert_eq(x[i], got[i]);
    free(x);
    free(want);
    free(got);
}

Test(nn_clip, quickgelu_matches_sigmoid_form) {
    float *x = grid(), *want = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++)
        want[i] = x[i] * nn_sigmoidf(1.702f * x[i]);
    nn_clip_quickgelu_forward(got, x, N);
    for (int i = 2; i < N; i++)
        cr_assert_leq(fabsf(got[i] - want[i]), 1e-6f * fabsf(want[i]) + 1e-30f,
                      "x=%.9g got %.9g want %.9g", x[i], got[i], want[i]);
    cr_assert_eq(got[1], INFINITY);
    free(x);
    free(want);
    free(got);
}

/* The engine's GELU / QuickGELU forwards (what the CPU backend's act op runs) are the
 * vectorised ones: the same bits, QuickGELU also on a pool and in place. */
Test(nn_clip, activation_ops_run_the_vectorised_loops) {
    float *x = grid(), *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    nn_gelu_forward(a, x, N);
    nn_clip_gelu_forward(b, x, N);
    cr_assert(memcmp(a, b, N * sizeof(float)) == 0, "gelu");
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(2, &err);
    cr_assert(pool, "%s", err.msg);
    CpuPool *prev = backend_cpu_use(pool);
    memcpy(a, x, N * sizeof(float));
    nn_quickgelu_forward(a, a, N);
    backend_cpu_use(prev);
    backend_cpu_pool_free(pool);
    nn_clip_quickgelu_forward(b, x, N);
    cr_assert(memcmp(a, b, N * sizeof(float)) == 0, "quickgelu");
    free(x), free(a), free(b);
}

/* perf15: SiLU x·σ(x), the UNet's and the VAE's activation, in QuickGELU's vectorised form:
 * within 1e-6 relative of the nn_sigmoidf form over the grid; nn_silu_forward (the CPU
 * backend's act op) runs it, on a pool and in place, with the same bits. */
Test(nn_clip, silu_matches_sigmoid_form) {
    float *x = grid(), *want = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++)
        want[i] = x[i] * nn_sigmoidf(x[i]);
    nn_clip_silu_forward(got, x, N);
    for (int i = 2; i < N; i++)
        cr_assert_leq(fabsf(got[i] - want[i]), 1e-6f * fabsf(want[i]) + 1e-30f,
                      "x=%.9g got %.9g want %.9g", x[i], got[i], want[i]);
    cr_assert_eq(got[1], INFINITY);
    float *a = malloc(N * sizeof(float));
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(2, &err);
    cr_assert(pool, "%s", err.msg);
    CpuPool *prev = backend_cpu_use(pool);
    memcpy(a, x, N * sizeof(float));
    nn_silu_forward(a, a, N);
    backend_cpu_use(prev);
    backend_cpu_pool_free(pool);
    cr_assert(memcmp(a, got, N * sizeof(float)) == 0, "nn_silu_forward");
    free(x), free(a), free(want), free(got);
}

#undef N /* the grid's size; below N is a row count */

/* A few values of every kind the kernel's edges meet: rows not a multiple of 6, columns not
 * of 32 or 128, K odd; a pool of 3 splits the slabs unevenly. */
Test(nn_clip, linear_matches_reference) {
    const int shapes[][3] = {{1, 1, 1}, {7, 13, 37}, {6, 64, 32}, {13, 33, 129}, {50, 96, 300},
                             {8, 1100, 40}}; /* K over two of the kernel's k blocks */
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(3, &err);
    cr_assert(pool, "%s", err.msg);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int variant = 0; variant < 8; variant++) {
            int bf16 = variant & 1, with_bias = variant & 2, pooled = variant & 4;
            int N = shapes[si][0], K = shapes[si][1], O = shapes[si][2];
            float *x = malloc((size_t)N * K * sizeof(float)), *w = malloc((size_t)O * K * 4);
            float *b = malloc((size_t)O * 4), *out = malloc((size_t)N * O * 4);
            float *wbuf = malloc((size_t)O * K * 4);
            uint16_t *wh = malloc((size_t)O * K * 2);
            uint32_t h = 7u + (uint32_t)si;
            for (int i = 0; i < N * K; i++)
                x[i] = (float)((h = h * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
            for (int i = 0; i < O * K; i++)
                w[i] = (float)((h = h * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
            for (int i = 0; i < O; i++)
                b[i] = (float)i * 0.25f - 3.0f;
            nn_clip_f32_to_bf16(wh, w, (size_t)O * K);
            if (bf16)
                nn_clip_bf16_to_f32(w, wh, (size_t)O * K); /* the reference's weights */
            CpuPool *prev = backend_cpu_use(pooled ? pool : NULL);
            nn_clip_linear_forward(out, x, bf16 ? NULL : w, bf16 ? wh : NULL,
                                   with_bias ? b : NULL, wbuf, N, K, O);
            backend_cpu_use(prev);
            for (int n = 0; n < N; n++)
                for (int o = 0; o < O; o++) {
                    double want = with_bias ? b[o] : 0;
                    for (int k = 0; k < K; k++)
                        want += (double)x[n * K + k] * w[o * K + k];
                    cr_assert(fabs(out[n * O + o] - want) <= 1e-5 * (1 + sqrt((double)K)),
                              "shape %d variant %d at (%d, %d): %g vs %g", (int)si, variant, n,
                              o, out[n * O + o], want);
                }
            free(x), free(w), free(b), free(out), free(wbuf), free(wh);
        }
    backend_cpu_pool_free(pool);
}

Test(nn_clip, bf16_conversions) {
    float in[6] = {1.0f, -2.5f, 1.00390625f, 1.01171875f, INFINITY, NAN};
    uint16_t h[6];
    float back[6];
    nn_clip_f32_to_bf16(h, in, 6);
    nn_clip_bf16_to_f32(back, h, 6);
    cr_assert_eq(back[0], 1.0f);
    cr_assert_eq(back[1], -2.5f);
    cr_assert_eq(back[2], 1.0f);          /* a tie: to the even neighbour */
    cr_assert_eq(back[3], 1.015625f);     /* a tie: to the even neighbour, upwards */
    cr_assert(isinf(back[4]) && back[4] > 0);
    cr_assert(isnan(back[5]));
}


/* The fused linear + activation gives the bits of the linear then the activation, for both
 * activations, f32 and bf16 weights, serial and on a pool of 2. */
Test(nn_clip, linear_act_is_linear_then_act) {
    int N = 37, K = 70, O = 300;
    float *x = malloc((size_t)N * K * 4), *w = malloc((size_t)O * K * 4), *b = malloc(O * 4);
    float *got = malloc((size_t)N * O * 4), *want = malloc((size_t)N * O * 4);
    float *wbuf = malloc((size_t)O * K * 4);
    uint16_t *wh = malloc((size_t)O * K * 2);
    uint32_t h = 5u;
    for (int i = 0; i < N * K; i++)
        x[i] = (float)((h = h * 1664525u + 1013904223u) >> 8) / 4194304.0f - 2.0f;
    for (int i = 0; i < O * K; i++)
        w[i] = (float)((h = h * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    for (int i = 0; i < O; i++)
        b[i] = (float)i * 0.01f - 1.5f;
    nn_clip_f32_to_bf16(wh, w, (size_t)O * K);
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(2, &err);
    cr_assert(pool, "%s", err.msg);
    for (int v = 0; v < 8; v++) {
        int bf16 = v & 1, pooled = v & 2;
        NnClipAct act = v & 4 ? NN_CLIP_ACT_GELU : NN_CLIP_ACT_QUICKGELU;
        CpuPool *prev = backend_cpu_use(pooled ? pool : NULL);
        nn_clip_linear_act_forward(got, x, bf16 ? NULL : w, bf16 ? wh : NULL, b, wbuf, N, K, O,
                                   act);
        nn_clip_linear_forward(want, x, bf16 ? NULL : w, bf16 ? wh : NULL, b, wbuf, N, K, O);
        backend_cpu_use(prev);
        if (act == NN_CLIP_ACT_GELU)
            nn_clip_gelu_forward(want, want, (size_t)N * O);
        else
            nn_clip_quickgelu_forward(want, want, (size_t)N * O);
        cr_assert(memcmp(got, want, (size_t)N * O * 4) == 0, "variant %d", v);
    }
    backend_cpu_pool_free(pool);
    free(x), free(w), free(b), free(got), free(want), free(wbuf), free(wh);
}
