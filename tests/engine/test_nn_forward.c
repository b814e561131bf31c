/* Engine ops' forwards against plain loops and known values, AdamW/clipping/schedules against
 * hand-computed numbers, and determinism across thread counts. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "nn_activation.h"
#include "nn_attention.h"
#include "nn_dropout.h"
#include "nn_elementwise.h"
#include "nn_embedding.h"
#include "nn_linear.h"
#include "nn_loss.h"
#include "nn_norm.h"
#include "nn_reduce.h"
#include "nn_softmax.h"
#include "optim.h"
#include "nn_check.h"

static void fini(void) {
    gc_free_all();
    backend_cpu_use(NULL);
}
TestSuite(nn_forward, .fini = fini);

static void naive_linear(float *out, const float *x, const float *w, const float *b, int N,
                         int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++)
                s += (double)x[n * C + c] * w[o * C + c];
            out[n * OC + o] = (float)s;
        }
}

Test(nn_forward, linear_matches_loops_with_and_without_threads) {
    Rng r;
    rng_init(&r, 1);
    int N = 37, C = 129, OC = 170;
    float *x = gc_randn(&r, N * C, 1), *w = gc_randn(&r, OC * C, 1), *b = gc_randn(&r, OC, 1);
    float *ref = gc_randn(&r, N * OC, 0), *out = gc_randn(&r, N * OC, 0);
    naive_linear(ref, x, w, b, N, C, OC);
    nn_linear_forward(out, x, w, b, N, C, OC);
    cr_expect_lt(max_abs_diff(out, ref, N * OC), 1e-3f);
    CpuPool *pool = backend_cpu_pool_new(3, NULL);
    cr_assert_not_null(pool);
    backend_cpu_use(pool);
    float *out2 = gc_randn(&r, N * OC, 0);
    nn_linear_forward(out2, x, w, NULL, N, C, OC);
    naive_linear(ref, x, w, NULL, N, C, OC);
    cr_expect_lt(max_abs_diff(out2, ref, N * OC), 1e-3f);
    backend_cpu_use(NULL);
    backend_cpu_pool_free(pool);
}

Test(nn_forward, matmul_and_backward_match_loops) {
    Rng r;
    rng_init(&r, 2);
    int M = 9, K = 33, N = 70;
    float *a = gc_randn(&r, M * K, 1), *b = gc_randn(&r, K * N, 1), *d = gc_randn(&r, M * N, 1);
    float *out = gc_randn(&r, M * N, 0), *da = gc_randn(&r, M * K, 0), *db = gc_randn(&r, K * N, 0);
    nn_matmul_forward(out, a, b, M, K, N);
    nn_matmul_backward(da, db, d, a, b, M, K, N);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)a[i * K + k] * b[k * N + j];
            cr_expect_float_eq(out[i * N + j], (float)s, 1e-3);
        }
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int j = 0; j < N; j++)
                s += (double)d[i * N + j] * b[k * N + j];
            cr_expect_float_eq(da[i * K + k], (float)s, 1e-3);
        }
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int i = 0; i < M; i++)
                s += (double)a[i * K + k] * d[i * N + j];
            cr_expect_float_eq(db[k * N + j], (float)s, 1e-3);
        }
}

Test(nn_forward, layernorm_matches_formula) {
    Rng r;
    rng_init(&r, 3);
    int N = 4, C = 10;
    float *x = gc_randn(&r, N * C, 3), *w = gc_randn(&r, C, 1), *b = gc_randn(&r, C, 1);
    float out[40], mean[4], rstd[4];
    for (int c = 0; c < C; c++)
        x[c] += 1000.0f; /* a row far from zero: statistics must not lose precision */
    nn_layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-5f);
    for (int n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (int c = 0; c < C; c++)
            m += x[n * C + c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (x[n * C + c] - m) * (x[n * C + c] - m);
        v /= C;
        for (int c = 0; c < C; c++) {
            double y = (x[n * C + c] - m) / sqrt(v + 1e-5) * w[c] + b[c];
            cr_expect_float_eq(out[n * C + c], (float)y, 2e-3, "row %d col %d", n, c);
        }
    }
}

Test(nn_forward, activations_known_values) {
    float x[4] = {1.0f, -1.0f, 0.0f, 3.0f}, y[4];
    nn_gelu_forward(y, x, 4);
    cr_expect_float_eq(y[0], 0.8413447f, 1e-6);
    cr_expect_float_eq(y[1], -0.1586553f, 1e-6);
    cr_expect_float_eq(y[3], 2.9959502f, 1e-6);
    nn_gelu_tanh_forward(y, x, 4);
    cr_expect_float_eq(y[0], 0.8411920f, 1e-6);
    cr_expect_float_eq(y[3], 2.9963627f, 1e-6);
    nn_quickgelu_forward(y, x, 4);
    cr_expect_float_eq(y[0], 1.0f / (1.0f + expf(-1.702f)), 1e-6);
    nn_relu_forward(y, x, 4);
    cr_expect(y[0] == 1.0f && y[1] == 0.0f && y[2] == 0.0f && y[3] == 3.0f);
    float big[2] = {-200.0f, 200.0f}, ls[2];
    nn_logsigmoid_forward(ls, big, 2);
    cr_expect_float_eq(ls[0], -200.0f, 1e-4);
    cr_expect(isfinite(ls[0]) && ls[1] <= 0.0f && ls[1] > -1e-30f);
    nn_sigmoid_forward(ls, big, 2);
    cr_expect(ls[0] >= 0.0f && ls[0] < 1e-30f && ls[1] == 1.0f);
}

Test(nn_forward, softmax_and_losses) {
    float x[6] = {1000.0f, 1001.0f, 999.0f, -5.0f, 0.0f, 5.0f}, y[6];
    nn_softmax_forward(y, x, 2, 3);
    cr_expect_float_eq(y[0] + y[1] + y[2], 1.0f, 1e-6);
    cr_expect_float_eq(y[1], 0.66524096f, 1e-6);
    cr_expect_float_eq(y[5], 0.99326205f, 1e-6);
    float lg[3] = {0.0f, 2.0f, -30.0f}, t[3] = {0.5f, 1.0f, 0.0f}, l[3];
    nn_logistic_loss_forward(l, lg, t, 3);
    cr_expect_float_eq(l[0], (float)log(2.0), 1e-6);
    cr_expect_float_eq(l[1], (float)log1p(exp(-2.0)), 1e-6);
    cr_expect(l[2] >= 0.0f && l[2] < 1e-12f);
    float p[2] = {3.0f, -1.0f}, q[2] = {1.0f, 1.0f}, m[2];
    nn_mse_forward(m, p, q, 2);
    cr_expect(m[0] == 4.0f && m[1] == 4.0f);
    float s[2];
    nn_sum_forward(s, x + 3, 1, 3);
    cr_expect(s[0] == 0.0f);
    nn_mean_forward(s, x, 2, 3);
    cr_expect_float_eq(s[0], 1000.0f, 1e-3);
}

Test(nn_forward, l2norm_concat_embedding) {
    float x[6] = {3, 4, 0, 0, 0, 0}, y[6], nrm[2];
    nn_l2norm_forward(y, nrm, x, 2, 3, 1e-12f);
    cr_expect(nrm[0] == 5.0f && y[0] == 0.6f && y[1] == 0.8f);
    cr_expect(y[3] == 0.0f && isfinite(y[3])); /* zero row stays zero, no NaN */
    float a[4] = {1, 2, 3, 4}, b[2] = {9, 8}, cat[6];
    nn_concat_forward(cat, a, b, 2, 2, 1);
    float want[6] = {1, 2, 9, 3, 4, 8};
    cr_expect_arr_eq(cat, want, sizeof want);
    float table[6] = {0, 1, 10, 11, 20, 21}, e[4];
    int32_t ids[2] = {2, 0};
    nn_embedding_forward(e, ids, table, 2, 2, 3);
    float we[4] = {20, 21, 0, 1};
    cr_expect_arr_eq(e, we, sizeof we);
}

Test(nn_forward, dropout_masks) {
    size_t n = 100000;
    float *x = calloc(n, sizeof(float)), *y = calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = 1.0f;
    nn_dropout_forward(y, x, 0.0f, 1, n);
    cr_expect_arr_eq(x, y, n * sizeof(float));
    nn_dropout_forward(y, x, 0.25f, 42, n);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(y[i] == 0.0f || fabsf(y[i] - 1.0f / 0.75f) < 1e-6f);
        kept += y[i] != 0.0f;
    }
    cr_expect(kept > 74000 && kept < 76000, "kept %zu of %zu", kept, n);
    /* the same seed gives the same mask; another seed a different one */
    size_t same = 0, diff = 0;
    for (size_t i = 0; i < 1000; i++) {
        same += nn_dropout_scale(0.25f, 42, i) == (y[i] != 0.0f ? 1.0f / 0.75f : 0.0f);
        diff += nn_dropout_scale(0.25f, 43, i) != nn_dropout_scale(0.25f, 42, i);
    }
    cr_expect_eq(same, 1000);
    cr_expect_gt(diff, 200);
    free(x);
    free(y);
}

/* Attention against the definition, one (batch, head, query) at a time. */
static void naive_attention(float *out, const float *q, const float *k, const float *v,
                            const AttnMask *m, int B, int Tq, int Tk, int C, int NH) {
    int hs = C / NH;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < Tq; i++) {
                double s[16], mx = -INFINITY, sum = 0;
                for (int t = 0; t < Tk; t++) {
                    double d = 0;
                    for (int e = 0; e < hs; e++)
                        d += (double)q[(b * Tq + i) * C + h * hs + e] * k[(b * Tk + t) * C + h * hs + e];
                    d /= sqrt((double)hs);
                    if (m && m->add)
                        d += m->add[i * Tk + t];
                    if (m && m->key_pad && m->key_pad[b * Tk + t])
                        d = -INFINITY;
                    if (m && m->causal && t > i + (Tk - Tq))
                        d = -INFINITY;
                    s[t] = d;
                    mx = d > mx ? d : mx;
                }
                for (int e = 0; e < hs; e++)
                    out[(b * Tq + i) * C + h * hs + e] = 0.0f;
                if (mx == -INFINITY)
                    continue;
                for (int t = 0; t < Tk; t++)
                    sum += (s[t] = exp(s[t] - mx));
                for (int e = 0; e < hs; e++) {
                    double o = 0;
                    for (int t = 0; t < Tk; t++)
                        o += s[t] / sum * v[(b * Tk + t) * C + h * hs + e];
                    out[(b * Tq + i) * C + h * hs + e] = (float)o;
                }
            }
}

Test(nn_forward, attention_matches_definition) {
    Rng r;
    rng_init(&r, 5);
    int B = 3, Tq = 5, Tk = 7, C = 12, NH = 3;
    float *q = gc_randn(&r, B * Tq * C, 1), *k = gc_randn(&r, B * Tk * C, 1),
          *v = gc_randn(&r, B * Tk * C, 1);
    float *out = gc_randn(&r, B * Tq * C, 0), *ref = gc_randn(&r, B * Tq * C, 0),
          *att = gc_randn(&r, B * NH * Tq * Tk, 0);
    uint8_t pad[21] = {0};
    pad[3] = pad[4] = 1;
    for (int t = 0; t < Tk; t++)
        pad[2 * Tk + t] = 1; /* batch 2: every key padded */
    AttnMask masks[3] = {{NULL, NULL, 0}, {NULL, NULL, 1}, {NULL, pad, 1}};
    for (int mi = 0; mi < 3; mi++) {
        nn_attention_forward(out, att, q, k, v, &masks[mi], B, Tq, Tk, C, NH);
        naive_attention(ref, q, k, v, &masks[mi], B, Tq, Tk, C, NH);
        cr_expect_lt(max_abs_diff(out, ref, B * Tq * C), 1e-5f, "mask %d", mi);
    }
    /* fully masked rows give zeros, not NaN */
    for (int i = 0; i < Tq * C; i++)
        cr_expect(out[2 * Tq * C + i] == 0.0f);
}

Test(nn_forward, adamw_matches_hand_computation) {
    AdamWConfig cfg = {0.1f, 0.9f, 0.999f, 1e-8f, 0.01f};
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, -0.25f}, m[2] = {0}, v[2] = {0};
    double pp[2] = {1.0, -2.0}, mm[2] = {0}, vv[2] = {0};
    for (int t = 1; t <= 3; t++) {
        optim_adamw_step(p, g, m, v, 2, t, cfg.lr, &cfg, 0);
        for (int i = 0; i < 2; i++) {
            double gi = g[i];
            pp[i] *= 1.0 - 0.1 * 0.01;
            mm[i] = 0.9 * mm[i] + 0.1 * gi;
            vv[i] = 0.999 * vv[i] + 0.001 * gi * gi;
            double mh = mm[i] / (1 - pow(0.9, t)), vh = vv[i] / (1 - pow(0.999, t));
            pp[i] -= 0.1 * mh / (sqrt(vh) + 1e-8);
            cr_expect_float_eq(p[i], (float)pp[i], 1e-5, "step %d elem %d", t, i);
        }
    }
    optim_adamw_step(p, g, m, v, 2, 4, cfg.lr, &cfg, 1);
    cr_expect(g[0] == 0.0f && g[1] == 0.0f);
}

Test(nn_forward, clip_and_schedules) {
    float g[3] = {3.0f, 4.0f, 0.0f};
    cr_expect_float_eq(optim_grad_norm(g, 3), 5.0f, 1e-6);
    float n = optim_clip_grad_norm(g, 3, 1.0f);
    cr_expect_float_eq(n, 5.0f, 1e-6);
    cr_expect_float_eq(optim_grad_norm(g, 3), 1.0f, 1e-5);
    float h[2] = {0.3f, 0.4f};
    optim_clip_grad_norm(h, 2, 1.0f);
    cr_expect(h[0] == 0.3f && h[1] == 0.4f); /* under the limit: untouched */
    LrSchedule c = {LR_SCHEDULE_CONSTANT, 1e-4f, 0, 0, 0};
    cr_expect(optim_lr_at(&c, 1) == 1e-4f && optim_lr_at(&c, 1000) == 1e-4f);
    LrSchedule s = {LR_SCHEDULE_WARMUP_COSINE, 1.0f, 0.1f, 10, 110};
    cr_expect_float_eq(optim_lr_at(&s, 1), 0.1f, 1e-6);
    cr_expect_float_eq(optim_lr_at(&s, 10), 1.0f, 1e-6);
    cr_expect_float_eq(optim_lr_at(&s, 60), 0.55f, 1e-6); /* half way down the cosine */
    cr_expect_float_eq(optim_lr_at(&s, 110), 0.1f, 1e-6);
    cr_expect_float_eq(optim_lr_at(&s, 500), 0.1f, 1e-6);
}

/* Same inputs, 1, 2 and 3 threads: bit-identical outputs. */
static void run_ops(float *res, const float *x, const float *w, int threads) {
    CpuPool *pool = threads > 1 ? backend_cpu_pool_new(threads, NULL) : NULL;
    backend_cpu_use(pool);
    int N = 64, C = 256;
    float *y = calloc(N * C, 4), *mean = calloc(N, 4), *rstd = calloc(N, 4);
    float *att = calloc(4 * 8 * 16 * 16, 4), *dx = calloc(N * C, 4), *dw = calloc(C, 4);
    nn_layernorm_forward(y, mean, rstd, x, w, NULL, N, C, 1e-5f);
    nn_layernorm_backward(dx, dw, NULL, x, x, w, mean, rstd, N, C);
    nn_attention_forward(res, att, y, x, dx, NULL, 4, 16, 16, 256, 8);
    memcpy(res + N * C, dw, C * 4);
    float *p = calloc(N * C, 4), *m = calloc(N * C, 4), *v = calloc(N * C, 4);
    memcpy(p, x, N * C * 4);
    AdamWConfig cfg = optim_adamw_defaults();
    optim_adamw_step(p, dx, m, v, N * C, 1, 1e-3f, &cfg, 0);
    memcpy(res + N * C + C, p, N * C * 4);
    res[2 * N * C + C] = optim_grad_norm(dx, N * C);
    free(y), free(mean), free(rstd), free(att), free(dx), free(dw), free(p), free(m), free(v);
    backend_cpu_use(NULL);
    backend_cpu_pool_free(pool);
}

Test(nn_forward, results_do_not_depend_on_threads) {
    Rng r;
    rng_init(&r, 6);
    size_t nres = 2 * 64 * 256 + 256 + 1;
    float *x = gc_randn(&r, 64 * 256, 1), *w = gc_randn(&r, 256, 1);
    float *r1 = gc_randn(&r, nres, 0), *r2 = gc_randn(&r, nres, 0), *r3 = gc_randn(&r, nres, 0);
    run_ops(r1, x, w, 1);
    run_ops(r2, x, w, 2);
    run_ops(r3, x, w, 3);
    cr_expect_arr_eq(r1, r2, nres * sizeof(float));
    cr_expect_arr_eq(r1, r3, nres * sizeof(float));
}

Test(nn_forward, linear_backward_set_overwrites_parameter_gradients) {
    Rng r;
    rng_init(&r, 7);
    int N = 6, C = 150, OC = 140;
    float *x = gc_randn(&r, N * C, 1), *w = gc_randn(&r, OC * C, 1), *d = gc_randn(&r, N * OC, 1);
    float *dx1 = gc_randn(&r, N * C, 1), *dx2 = gc_randn(&r, N * C, 0);
    memcpy(dx2, dx1, N * C * sizeof(float)); /* dinp still adds: same start, same result */
    float *dw1 = gc_randn(&r, OC * C, 0), *db1 = gc_randn(&r, OC, 0);
    float *dw2 = gc_randn(&r, OC * C, 5), *db2 = gc_randn(&r, OC, 5); /* garbage to overwrite */
    nn_linear_backward(dx1, dw1, db1, d, x, w, N, C, OC);
    nn_linear_backward_set(dx2, dw2, db2, d, x, w, N, C, OC);
    cr_expect_arr_eq(dw1, dw2, OC * C * sizeof(float));
    cr_expect_arr_eq(db1, db2, OC * sizeof(float));
    cr_expect_arr_eq(dx1, dx2, N * C * sizeof(float));
}
