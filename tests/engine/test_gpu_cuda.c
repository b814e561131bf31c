/* The CUDA kernels on a real device against the CPU engine ops (GroupNorm, which has no CPU op
 * yet, against the same kernel under the host emulation harness), and cuBLAS matmul against a
 * plain loop. Skipped, with the reason, where there is no CUDA
 * build or no device (`make test`); `make test-gpu` runs it on a GPU machine. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"
#include "kern_emulate.h"
#include "nn_activation.h"
#include "nn_norm.h"
#include "nn_softmax.h"
#include "optim.h"

Test(gpu_cuda, probe_reports_a_reason_or_devices) {
    CudaDevice d[8];
    int n = -1;
    char why[256] = "";
    cr_assert_eq(cuda_probe(d, 8, &n, why, sizeof why), 0);
    cr_assert(n >= 0);
    cr_assert(why[0] != '\0');
    for (int i = 0; i < n; i++)
        cr_assert(d[i].mem_total > 0 && d[i].name[0]);
}

#ifdef EASEL_CUDA
static int have_device(void) {
    CudaDevice d[8];
    int n = 0;
    char why[256];
    cuda_probe(d, 8, &n, why, sizeof why);
    if (n == 0)
        cr_skip_test("no GPU: %s", why);
    return n;
}

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static float *rnd(unsigned *s, long n) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++)
        p[i] = frand(s);
    return p;
}
static float *dup_of(const float *h, long n) {
    float *p = malloc(sizeof(float) * (size_t)n);
    memcpy(p, h, sizeof(float) * (size_t)n);
    return p;
}
/* A device copy of n host floats (or n zeros when h is NULL). */
static float *dev(const float *h, long n) {
    Err err = {0};
    float *d = cuda_alloc((size_t)n, &err);
    cr_assert_not_null(d, "%s", err.msg);
    cr_assert_eq(h ? cuda_upload(d, h, (size_t)n, &err) : cuda_zero(d, (size_t)n, &err), 0, "%s",
                 err.msg);
    return d;
}
static void expect_close(const char *what, const float *d, const float *want, long n, float tol) {
    Err err = {0};
    float *h = malloc(sizeof(float) * (size_t)n);
    cr_assert_eq(cuda_sync(&err), 0, "%s", err.msg);
    cr_assert_eq(cuda_download(h, d, (size_t)n, &err), 0, "%s", err.msg);
    for (long i = 0; i < n; i++)
        cr_assert(fabsf(h[i] - want[i]) <= tol * (1 + fabsf(want[i])), "%s[%ld]: device %g, want %g",
                  what, i, h[i], want[i]);
    free(h);
}

/* Every kernel on the device against the CPU engine op (GroupNorm: against the harness). */
Test(gpu_cuda, kernels_on_device_match_cpu_ops) {
    have_device();
    enum { N = 300, C = 512, HW = 64, G = 32 };
    unsigned s = 7;
    Err err = {0};
    float *x = rnd(&s, N * C), *w = rnd(&s, C), *b = rnd(&s, C), *g = rnd(&s, N * C);
    float *out = calloc(N * C, 4), *mean = calloc(N * G, 4), *rstd = calloc(N * G, 4);
    float *dx = rnd(&s, N * C), *dw = rnd(&s, C), *db = rnd(&s, C);
    float *d_x = dev(x, N * C), *d_w = dev(w, C), *d_b = dev(b, C), *d_g = dev(g, N * C);
    float *d_out = dev(NULL, N * C), *d_mean = dev(NULL, N * G), *d_rstd = dev(NULL, N * G);
    float *d_dx = dev(dx, N * C), *d_dw = dev(dw, C), *d_db = dev(db, C);

    nn_layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-3f);
    nn_layernorm_backward(dx, dw, db, g, x, w, mean, rstd, N, C);
    cr_assert_eq(cuda_layernorm_forward(d_out, d_mean, d_rstd, d_x, d_w, d_b, N, C, 1e-3f, &err), 0, "%s", err.msg);
    cr_assert_eq(cuda_layernorm_backward(d_dx, d_dw, d_db, d_g, d_x, d_w, d_mean, d_rstd, N, C, &err), 0, "%s", err.msg);
    expect_close("layernorm out", d_out, out, N * C, 1e-4f);
    expect_close("layernorm dinp", d_dx, dx, N * C, 1e-4f);
    expect_close("layernorm dweight", d_dw, dw, C, 1e-4f);
    expect_close("layernorm dbias", d_db, db, C, 1e-4f);

    nn_softmax_forward(out, x, N, C);
    nn_softmax_backward(dx, g, out, N, C);
    cr_assert_eq(cuda_softmax_forward(d_out, d_x, N, C, &err), 0, "%s", err.msg);
    cr_assert_eq(cuda_softmax_backward(d_dx, d_g, d_out, N, C, &err), 0, "%s", err.msg);
    expect_close("softmax out", d_out, out, N * C, 1e-4f);
    expect_close("softmax dinp", d_dx, dx, N * C, 1e-4f);

    nn_relu_forward(out, x, N * C);
    nn_relu_backward(dx, g, out, N * C);
    cr_assert_eq(cuda_bias_relu_forward(d_out, d_x, NULL, N, C, &err), 0, "%s", err.msg);
    cr_assert_eq(cuda_relu_backward(d_dx, d_g, d_out, N * C, &err), 0, "%s", err.msg);
    expect_close("relu dinp", d_dx, dx, N * C, 1e-5f);

    AdamWConfig cfg = optim_adamw_defaults();
    float *m = calloc(N * C, 4), *v = calloc(N * C, 4), *d_m = dev(NULL, N * C), *d_v = dev(NULL, N * C);
    float *p = dup_of(x, N * C), *d_p = dev(x, N * C);
    for (int t = 1; t <= 3; t++) {
        optim_adamw_step(p, g, m, v, N * C, t, 1e-3f, &cfg, 0);
        cr_assert_eq(cuda_adamw(d_p, d_m, d_v, d_g, N * C, 1e-3f, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, t, &err), 0, "%s", err.msg);
    }
    expect_close("adamw param", d_p, p, N * C, 1e-5f);

    /* GroupNorm over (N/G... ) = (8, 256, 64) with 32 groups, against the harness (no CPU op yet) */
    enum { GN = 8, GC = 256 };
    GroupNormFwdArgs fa = {out, mean, rstd, x, w, b, GN, GC, HW, G, 1e-5f};
    cr_assert_eq(groupnorm_fwd_run(&fa, &err), 0, "%s", err.msg);
    cr_assert_eq(cuda_groupnorm_forward(d_out, d_mean, d_rstd, d_x, d_w, d_b, GN, GC, HW, G, 1e-5f, &err), 0, "%s", err.msg);
    expect_close("groupnorm out", d_out, out, GN * GC * HW, 1e-4f);
    float *gdx = calloc(N * C, 4), *gdw = calloc(C, 4), *gdb = calloc(C, 4);
    float *d_gdx = dev(NULL, N * C), *d_gdw = dev(NULL, C), *d_gdb = dev(NULL, C);
    GroupNormBwdArgs ba = {gdx, gdw, gdb, g, x, w, mean, rstd, GN, GC, HW, G};
    cr_assert_eq(groupnorm_bwd_dx_run(&ba, &err), 0, "%s", err.msg);
    cr_assert_eq(groupnorm_bwd_params_run(&ba, &err), 0, "%s", err.msg);
    cr_assert_eq(cuda_groupnorm_backward(d_gdx, d_gdw, d_gdb, d_g, d_x, d_w, d_mean, d_rstd, GN, GC, HW, G, &err), 0, "%s", err.msg);
    expect_close("groupnorm dinp", d_gdx, gdx, GN * GC * HW, 1e-4f);
    expect_close("groupnorm dweight", d_gdw, gdw, GC, 1e-3f);
    expect_close("groupnorm dbias", d_gdb, gdb, GC, 1e-3f);

    /* matmul (cuBLAS): out(N, 64) = x(N, C) w2(64, C)^T against a plain double loop */
    enum { OC = 64 };
    float *w2 = rnd(&s, OC * C), *ref = calloc(N * OC, 4);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double acc = 0;
            for (int c = 0; c < C; c++)
                acc += (double)x[n * C + c] * w2[o * C + c];
            ref[n * OC + o] = (float)acc;
        }
    float *d_w2 = dev(w2, OC * C), *d_mm = dev(NULL, N * OC);
    cr_assert_eq(cuda_matmul_forward(d_mm, d_x, d_w2, N, C, OC, &err), 0, "%s", err.msg);
    expect_close("matmul", d_mm, ref, N * OC, 1e-3f); /* TF32 is off by default in cuBLAS sgemm */

    float *dfree[] = {d_x, d_w, d_b, d_g, d_out, d_mean, d_rstd, d_dx, d_dw, d_db, d_m, d_v, d_p,
                      d_gdx, d_gdw, d_gdb, d_w2, d_mm};
    for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++)
        cuda_free(dfree[i]);
    float *hfree[] = {x, w, b, g, out, mean, rstd, dx, dw, db, m, v, p, gdx, gdw, gdb, w2, ref};
    for (size_t i = 0; i < sizeof hfree / sizeof hfree[0]; i++)
        free(hfree[i]);
}
#else
Test(gpu_cuda, kernels_on_device_match_cpu_ops) {
    cr_skip_test("built without CUDA (no nvcc at build time)");
}
#endif
