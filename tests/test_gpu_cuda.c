/* The CUDA kernels on a real device against the same bodies under the host emulation harness,
 * and cuBLAS matmul against a plain loop. Skipped, with the reason, where there is no CUDA
 * build or no device (`make test`); `make test-gpu` runs it on a GPU machine. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "cuda.h"
#include "kern_emulate.h"
#include "kern_nn.h"

static int have_device(void) {
    CudaDevice d[8];
    int n = 0;
    char why[256];
    cuda_probe(d, 8, &n, why, sizeof why);
    if (n == 0)
        cr_skip_test("no GPU: %s", why);
    return n;
}

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
static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

Test(gpu_cuda, kernels_on_device_match_emulation) {
    have_device();
    enum { N = 300, C = 512 };
    unsigned s = 7;
    float *x = malloc(sizeof(float) * N * C), *w = malloc(sizeof(float) * C);
    float *b = malloc(sizeof(float) * C), *g = malloc(sizeof(float) * N * C);
    for (int i = 0; i < N * C; i++)
        x[i] = frand(&s), g[i] = frand(&s);
    for (int i = 0; i < C; i++)
        w[i] = frand(&s), b[i] = frand(&s);
    float *out = calloc(N * C, 4), *mean = calloc(N, 4), *rstd = calloc(N, 4);
    float *dx = calloc(N * C, 4), *dw = calloc(C, 4), *db = calloc(C, 4);
    KERN_EMULATE(N, 32, layernorm_forward_thread, out, mean, rstd, x, w, b, N, C);
    KERN_EMULATE(N, 32, layernorm_backward_thread, dx, dw, db, g, x, w, mean, rstd, N, C);

    Err err = {0};
    float *d_x = cuda_alloc(N * C, &err), *d_w = cuda_alloc(C, &err), *d_b = cuda_alloc(C, &err);
    float *d_g = cuda_alloc(N * C, &err), *d_out = cuda_alloc(N * C, &err);
    float *d_mean = cuda_alloc(N, &err), *d_rstd = cuda_alloc(N, &err);
    float *d_dx = cuda_alloc(N * C, &err), *d_dw = cuda_alloc(C, &err), *d_db = cuda_alloc(C, &err);
    cr_assert(d_db != NULL, "%s", err.msg);
    cr_assert_eq(cuda_upload(d_x, x, N * C, &err), 0);
    cuda_upload(d_w, w, C, &err), cuda_upload(d_b, b, C, &err), cuda_upload(d_g, g, N * C, &err);
    cuda_zero(d_dx, N * C, &err), cuda_zero(d_dw, C, &err), cuda_zero(d_db, C, &err);
    cr_assert_eq(cuda_layernorm_forward(d_out, d_mean, d_rstd, d_x, d_w, d_b, N, C, &err), 0, "%s", err.msg);
    cr_assert_eq(cuda_layernorm_backward(d_dx, d_dw, d_db, d_g, d_x, d_w, d_mean, d_rstd, N, C, &err), 0, "%s", err.msg);
    cr_assert_eq(cuda_sync(&err), 0, "%s", err.msg);
    float *h = malloc(sizeof(float) * N * C);
    cuda_download(h, d_out, N * C, &err);
    for (int i = 0; i < N * C; i++)
        cr_assert_float_eq(h[i], out[i], 1e-4, "out %d: %f vs %f", i, h[i], out[i]);
    cuda_download(h, d_dx, N * C, &err);
    for (int i = 0; i < N * C; i++)
        cr_assert_float_eq(h[i], dx[i], 1e-4, "dinp %d", i);
    cuda_download(h, d_dw, C, &err);
    for (int i = 0; i < C; i++) /* atomic sums: order differs, so relative tolerance */
        cr_assert(fabsf(h[i] - dw[i]) < 1e-3f * (1 + fabsf(dw[i])), "dweight %d", i);

    /* matmul: out(N, 64) = x(N, C) w2(64, C)^T */
    enum { OC = 64 };
    float *w2 = malloc(sizeof(float) * OC * C), *ref = calloc(N * OC, 4);
    for (int i = 0; i < OC * C; i++)
        w2[i] = frand(&s);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double acc = 0;
            for (int c = 0; c < C; c++)
                acc += (double)x[n * C + c] * w2[o * C + c];
            ref[n * OC + o] = (float)acc;
        }
    float *d_w2 = cuda_alloc(OC * C, &err), *d_mm = cuda_alloc(N * OC, &err);
    cuda_upload(d_w2, w2, OC * C, &err);
    cr_assert_eq(cuda_matmul_forward(d_mm, d_x, d_w2, N, C, OC, &err), 0, "%s", err.msg);
    cuda_sync(&err);
    cuda_download(h, d_mm, N * OC, &err);
    for (int i = 0; i < N * OC; i++) /* TF32 is off by default in cuBLAS sgemm */
        cr_assert(fabsf(h[i] - ref[i]) < 1e-3f * (1 + fabsf(ref[i])), "matmul %d: %f vs %f", i, h[i], ref[i]);
    cuda_free(d_x), cuda_free(d_w), cuda_free(d_b), cuda_free(d_g), cuda_free(d_out);
    cuda_free(d_mean), cuda_free(d_rstd), cuda_free(d_dx), cuda_free(d_dw), cuda_free(d_db);
    cuda_free(d_w2), cuda_free(d_mm);
    free(x), free(w), free(b), free(g), free(out), free(mean), free(rstd), free(dx), free(dw);
    free(db), free(h), free(w2), free(ref);
}
#else
Test(gpu_cuda, kernels_on_device_match_emulation) {
    cr_skip_test("built without CUDA (no nvcc at build time)");
}
#endif
