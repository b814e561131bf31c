/* The CUDA kernel bodies of gpu/kern_nn.h, run under the host emulation harness, against
 * plain CPU loops and (for backward) finite differences. Runs in `make test` on any machine. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern_emulate.h"
#include "kern_nn.h"

static unsigned rng_state = 12345;
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return ((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static void fill(float *p, int n) {
    for (int i = 0; i < n; i++)
        p[i] = frand();
}

/* Plain two-pass LayerNorm, in double. */
static void layernorm_ref(double *out, const float *x, const float *w, const float *b, int N,
                          int C) {
    for (int n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (int i = 0; i < C; i++)
            m += x[n * C + i];
        m /= C;
        for (int i = 0; i < C; i++)
            v += (x[n * C + i] - m) * (x[n * C + i] - m);
        v /= C;
        for (int i = 0; i < C; i++)
            out[n * C + i] = (x[n * C + i] - m) / sqrt(v + 1e-5) * w[i] + b[i];
    }
}

Test(gpu_kernels, layernorm_forward_matches_reference) {
    enum { N = 7, C = 33 };
    float x[N * C], w[C], b[C], out[N * C], mean[N], rstd[N];
    double ref[N * C];
    fill(x, N * C), fill(w, C), fill(b, C);
    KERN_EMULATE(N, 4, layernorm_forward_thread, out, mean, rstd, x, w, b, N, C);
    layernorm_ref(ref, x, w, b, N, C);
    for (int i = 0; i < N * C; i++)
        cr_assert_float_eq(out[i], ref[i], 1e-5, "i=%d %f vs %f", i, out[i], ref[i]);
}

/* loss = sum(out * g) for a fixed random g; check dinp, dweight, dbias numerically. */
Test(gpu_kernels, layernorm_backward_matches_finite_differences) {
    enum { N = 3, C = 9 };
    float x[N * C], w[C], b[C], g[N * C], out[N * C], mean[N], rstd[N];
    float dx[N * C] = {0}, dw[C] = {0}, db[C] = {0};
    fill(x, N * C), fill(w, C), fill(b, C), fill(g, N * C);
    KERN_EMULATE(N, 2, layernorm_forward_thread, out, mean, rstd, x, w, b, N, C);
    KERN_EMULATE(N, 2, layernorm_backward_thread, dx, dw, db, g, x, w, mean, rstd, N, C);
    double ref[N * C];
    const double h = 1e-3;
    float *params[3] = {x, w, b};
    float *grads[3] = {dx, dw, db};
    int sizes[3] = {N * C, C, C};
    for (int p = 0; p < 3; p++) {
        for (int i = 0; i < sizes[p]; i++) {
            float keep = params[p][i];
            double lp = 0, lm = 0;
            params[p][i] = keep + (float)h;
            layernorm_ref(ref, x, w, b, N, C);
            for (int k = 0; k < N * C; k++)
                lp += ref[k] * g[k];
            params[p][i] = keep - (float)h;
            layernorm_ref(ref, x, w, b, N, C);
            for (int k = 0; k < N * C; k++)
                lm += ref[k] * g[k];
            params[p][i] = keep;
            double num = (lp - lm) / (2 * h);
            cr_assert(fabs(num - grads[p][i]) < 2e-3 * (1 + fabs(num)),
                      "param %d index %d: numeric %f analytic %f", p, i, num, grads[p][i]);
        }
    }
}

Test(gpu_kernels, bias_relu_and_backward) {
    enum { N = 5, C = 6 };
    float x[N * C], b[C], out[N * C], g[N * C], dx[N * C];
    fill(x, N * C), fill(b, C), fill(g, N * C);
    KERN_EMULATE(N * C, 8, bias_relu_forward_thread, out, x, b, N, C);
    KERN_EMULATE(N * C, 8, relu_backward_thread, dx, g, out, N * C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float v = x[n * C + c] + b[c];
            cr_assert_float_eq(out[n * C + c], v > 0 ? v : 0, 1e-7);
            cr_assert_float_eq(dx[n * C + c], v > 0 ? g[n * C + c] : 0, 1e-7);
        }
}

Test(gpu_kernels, adamw_matches_reference_over_steps) {
    enum { n = 50 };
    float p[n], m[n] = {0}, v[n] = {0}, g[n];
    double rp[n], rm[n] = {0}, rv[n] = {0};
    fill(p, n);
    for (int i = 0; i < n; i++)
        rp[i] = p[i];
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
    for (int t = 1; t <= 5; t++) {
        fill(g, n);
        KERN_EMULATE(n, 16, adamw_thread, p, m, v, g, (long)n, (float)lr, (float)b1, (float)b2,
                     (float)eps, (float)wd, t);
        for (int i = 0; i < n; i++) {
            rm[i] = b1 * rm[i] + (1 - b1) * g[i];
            rv[i] = b2 * rv[i] + (1 - b2) * g[i] * g[i];
            double mh = rm[i] / (1 - pow(b1, t)), vh = rv[i] / (1 - pow(b2, t));
            rp[i] -= lr * (mh / (sqrt(vh) + eps) + wd * rp[i]);
        }
    }
    for (int i = 0; i < n; i++)
        cr_assert_float_eq(p[i], rp[i], 1e-5, "i=%d %f vs %f", i, p[i], rp[i]);
}
