/* The ops of DoRA (backend.h, issue 16): dora_norm (the row norm of W + s·B·A, W f32, f16 or
 * bf16, linear and conv shapes), dora_scale (m/norm per channel, plus a bias of any dtype, in
 * place) and dora_mag_backward (the magnitude's gradient, checked by finite differences of
 * dora_scale) on the CPU backend and on the emulated CUDA backend, against double loops; and
 * their argument checks. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_impl.h"

static Backend *open_kind(int emu) {
    Backend *be = NULL;
    Err err = {0};
    int rc = emu ? backend_emu_open(NULL, &be, &err)
                 : backend_open("cpu", &(BackendConfig){.threads = 3}, &be, NULL, 0, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    return be;
}

static float val(int i) { return (float)((i * 37 + 11) % 101) / 50.0f - 1.0f; }

/* A device tensor of dtype dt with the values val(i + seed) (rounded to dt); *h gets them as
 * f32 after the rounding (malloc'd) when h is not NULL. */
static Tensor dev_dt(Backend *be, DType dt, int nd, const int64_t *shape, int seed, float **h) {
    Tensor d = backend_tensor_new(be, dt, nd, shape);
    size_t n = (size_t)tensor_numel(&d);
    float *f = malloc(n * sizeof(float));
    uint16_t *hh = malloc(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++)
        f[i] = val((int)i + seed);
    Tensor hv;
    if (dt == DTYPE_F32) {
        hv = tensor_view(f, nd, shape);
    } else {
        dtype_from_f32(hh, dt, f, n);
        dtype_to_f32(f, hh, dt, n);
        hv = tensor_view_dtype(hh, dt, nd, shape);
    }
    backend_upload(be, &d, &hv);
    Err err = {0};
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    free(hh);
    if (h)
        *h = f;
    else
        free(f);
    return d;
}

static Tensor dev(Backend *be, int nd, const int64_t *shape, int seed, float **h) {
    return dev_dt(be, DTYPE_F32, nd, shape, seed, h);
}

static float *host(Backend *be, const Tensor *d) {
    size_t n = (size_t)tensor_numel(d);
    float *h = malloc(n * sizeof(float));
    Tensor hv = tensor_view(h, d->n_dims, d->shape);
    backend_download(be, &hv, d);
    Err err = {0};
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    return h;
}

static void near(const char *what, const float *got, const double *want, size_t n, double rtol) {
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= 1e-6 + rtol * fabs(want[i]),
                  "%s[%zu]: %.8g, reference %.8g", what, i, got[i], want[i]);
}

/* dora_norm of a linear (OC,K) and a conv (OC,C,3,3) weight in every dtype, with B·A (B
 * (OC,r) or (OC,r,1,1)) and without. */
static void norm_case(int emu) {
    Backend *be = open_kind(emu);
    enum { OC = 6, R = 4 };
    const DType dts[3] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    for (int conv = 0; conv < 2; conv++) {
        int64_t K = conv ? 5 * 9 : 37;
        int64_t ws[4] = {OC, conv ? 5 : K, 3, 3}, as[4] = {R, conv ? 5 : K, 3, 3};
        int64_t bs[4] = {OC, R, 1, 1}, ns[1] = {OC};
        int nd = conv ? 4 : 2;
        float *A, *B;
        Tensor dA = dev(be, nd, as, 3, &A), dB = dev(be, nd, bs, 9, &B);
        Tensor nrm = backend_tensor_new(be, DTYPE_F32, 1, ns);
        for (int d = 0; d < 3; d++) {
            float *W;
            Tensor dW = dev_dt(be, dts[d], nd, ws, 1, &W);
            for (int ba = 0; ba < 2; ba++) {
                backend_dora_norm(be, &nrm, &dW, ba ? &dB : NULL, ba ? &dA : NULL, 0.75f);
                double want[OC];
                for (int o = 0; o < OC; o++) {
                    double acc = 0;
                    for (int64_t k = 0; k < K; k++) {
                        double v = W[o * K + k];
                        for (int q = 0; ba && q < R; q++)
                            v += 0.75 * (double)B[o * R + q] * A[q * K + k];
                        acc += v * v;
                    }
                    want[o] = sqrt(acc);
                }
                float *got = host(be, &nrm);
                near(conv ? "conv dora_norm" : "linear dora_norm", got, want, OC, 1e-5);
                free(got);
            }
            backend_tensor_free(be, &dW);
            free(W);
        }
        backend_tensor_free(be, &dA), backend_tensor_free(be, &dB), backend_tensor_free(be, &nrm);
        free(A), free(B);
    }
    backend_close(be);
}

/* dora_scale with no bias, an f32 and a bf16 bias, into another tensor and in place. */
static void scale_case(int emu) {
    Backend *be = open_kind(emu);
    enum { P = 3, C = 5, Q = 7, N = P * C * Q };
    int64_t s3[3] = {P, C, Q}, sc[1] = {C};
    float *x, *m, *nr, *b32, *b16;
    Tensor dx = dev(be, 3, s3, 0, &x), dm = dev(be, 1, sc, 4, &m), dn = dev(be, 1, sc, 8, &nr);
    Tensor db = dev(be, 1, sc, 2, &b32), dh = dev_dt(be, DTYPE_BF16, 1, sc, 5, &b16);
    for (int c = 0; c < C; c++)
        nr[c] = 1.0f + fabsf(nr[c]);
    Tensor hv = tensor_view(nr, 1, sc);
    backend_upload(be, &dn, &hv);
    Tensor out = backend_tensor_new(be, DTYPE_F32, 3, s3);
    for (int mode = 0; mode < 4; mode++) {
        const Tensor *bias = mode == 1 ? &db : mode >= 2 ? &dh : NULL;
        const float *bh = mode == 1 ? b32 : b16;
        const Tensor *o = mode == 3 ? &dx : &out;
        backend_dora_scale(be, o, &dx, &dm, &dn, bias);
        double want[N];
        for (int i = 0; i < N; i++) {
            int c = i / Q % C;
            want[i] = (double)x[i] * m[c] / nr[c] + (bias ? bh[c] : 0.0);
        }
        float *got = host(be, o);
        near("dora_scale", got, want, N, 1e-6);
        free(got);
    }
    Tensor *ts[] = {&dx, &dm, &dn, &db, &dh, &out};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        backend_tensor_free(be, ts[i]);
    free(x), free(m), free(nr), free(b32), free(b16);
    backend_close(be);
}

/* dm += Σ dout·y / norm: against central differences of L(m) = Σ R·dora_scale(y; m) (exact
 * up to rounding: L is linear in m), and it adds. */
static void mag_case(int emu) {
    Backend *be = open_kind(emu);
    enum { P = 2, C = 4, Q = 9, N = P * C * Q };
    int64_t s3[3] = {P, C, Q}, sc[1] = {C};
    float *y, *r, *m, *nr, *g0;
    Tensor dy = dev(be, 3, s3, 0, &y), dr = dev(be, 3, s3, 13, &r), dm = dev(be, 1, sc, 4, &m);
    Tensor dn = dev(be, 1, sc, 8, &nr), dg = dev(be, 1, sc, 21, &g0);
    for (int c = 0; c < C; c++)
        nr[c] = 0.5f + fabsf(nr[c]);
    Tensor hv = tensor_view(nr, 1, sc);
    backend_upload(be, &dn, &hv);
    backend_dora_mag_backward(be, &dg, &dr, &dy, &dn);
    float *got = host(be, &dg);
    Tensor out = backend_tensor_new(be, DTYPE_F32, 3, s3);
    for (int c = 0; c < C; c++) {
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            float mm[C];
            memcpy(mm, m, sizeof mm);
            mm[c] += sgn ? -1e-2f : 1e-2f;
            Tensor mv = tensor_view(mm, 1, sc);
            backend_upload(be, &dm, &mv);
            backend_dora_scale(be, &out, &dy, &dm, &dn, NULL);
            float *o = host(be, &out);
            L[sgn] = 0;
            for (int i = 0; i < N; i++)
                L[sgn] += (double)o[i] * r[i];
            free(o);
        }
        double fd = (L[0] - L[1]) / 2e-2, want = g0[c] + fd;
        cr_assert(fabs(got[c] - want) <= 1e-3 * (1 + fabs(want)),
                  "dm[%d]: %.7g, g0 + finite difference %.7g", c, got[c], want);
    }
    free(got);
    Tensor *ts[] = {&dy, &dr, &dm, &dn, &dg, &out};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        backend_tensor_free(be, ts[i]);
    free(y), free(r), free(m), free(nr), free(g0);
    backend_close(be);
}

Test(dora_ops, norm_cpu) { norm_case(0); }
Test(dora_ops, norm_emu) { norm_case(1); }
Test(dora_ops, scale_cpu) { scale_case(0); }
Test(dora_ops, scale_emu) { scale_case(1); }
Test(dora_ops, mag_backward_cpu) { mag_case(0); }
Test(dora_ops, mag_backward_emu) { mag_case(1); }

/* Wrong shapes and dtypes fail the backend, naming the op and the argument. */
Test(dora_ops, arguments_checked) {
    Backend *be = open_kind(0);
    Err err = {0};
    int64_t ws[2] = {4, 6}, as[2] = {2, 5}, bs[2] = {4, 2}, ns[1] = {4}, s3[3] = {2, 4, 3};
    Tensor w = dev(be, 2, ws, 0, NULL), a = dev(be, 2, as, 0, NULL), b = dev(be, 2, bs, 0, NULL);
    Tensor n = dev(be, 1, ns, 0, NULL), x = dev(be, 3, s3, 0, NULL);
    Tensor n3 = dev(be, 1, (int64_t[1]){3}, 0, NULL);
    backend_dora_norm(be, &n, &w, &b, &a, 1.0f);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "dora_norm: A has 5 elements per row, the weight 6"), "%s",
              err.msg);
    backend_dora_norm(be, &n, &w, &b, NULL, 1.0f);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "dora_norm: A and B go together"), "%s", err.msg);
    backend_dora_scale(be, &x, &x, &n3, &n, NULL);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "dora_scale: m dimension 0 is 3, expected 4"), "%s", err.msg);
    Tensor h = backend_tensor_new(be, DTYPE_BF16, 3, s3);
    backend_dora_mag_backward(be, &n, &h, &x, &n);
    cr_assert_neq(backend_sync(be, &err), 0);
    cr_assert(strstr(err.msg, "dora_mag_backward: dout is bf16"), "%s", err.msg);
    backend_dora_mag_backward(be, &n, &x, &x, &n);
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    Tensor *ts[] = {&w, &a, &b, &n, &x, &n3, &h};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        backend_tensor_free(be, ts[i]);
    backend_close(be);
}

/* benchtune16: a linear layer's output is (P, C, 1), which the CPU backend runs row by row
 * (dora_scale) and 64 channels at a time (dora_mag_backward): the result must be the
 * formula's, operation for operation, bit for bit — g = m / norm then x·g + b in f32; dm +=
 * (float)(Σ_p in order of double(dout)·y / norm) — with more than 64 channels and a bias. */
Test(dora_ops, linear_shape_is_exact_on_cpu) {
    Backend *be = open_kind(0);
    enum { P = 37, C = 150, N = P * C };
    int64_t s3[3] = {P, C, 1}, sc[1] = {C};
    float *x, *r, *m, *nr, *b, *g0;
    Tensor dx = dev(be, 3, s3, 0, &x), dr = dev(be, 3, s3, 13, &r), dm = dev(be, 1, sc, 4, &m);
    Tensor dn = dev(be, 1, sc, 8, &nr), db = dev(be, 1, sc, 2, &b), dg = dev(be, 1, sc, 21, &g0);
    for (int c = 0; c < C; c++)
        nr[c] = 0.5f + fabsf(nr[c]);
    Tensor hv = tensor_view(nr, 1, sc);
    backend_upload(be, &dn, &hv);
    Tensor out = backend_tensor_new(be, DTYPE_F32, 3, s3);
    backend_dora_scale(be, &out, &dx, &dm, &dn, &db);
    float *got = host(be, &out);
    for (int i = 0; i < N; i++) {
        int c = i % C;
        float g = m[c] / nr[c], want = x[i] * g + b[c];
        cr_assert(memcmp(&got[i], &want, sizeof want) == 0, "dora_scale[%d]: %a, want %a", i,
                  (double)got[i], (double)want);
    }
    free(got);
    backend_dora_mag_backward(be, &dg, &dr, &dx, &dn);
    got = host(be, &dg);
    for (int c = 0; c < C; c++) {
        double acc = 0;
        for (int p = 0; p < P; p++)
            acc += (double)r[p * C + c] * x[p * C + c];
        float want = g0[c] + (float)(acc / nr[c]);
        cr_assert(memcmp(&got[c], &want, sizeof want) == 0, "dm[%d]: %a, want %a", c,
                  (double)got[c], (double)want);
    }
    free(got);
    Tensor *ts[] = {&dx, &dr, &dm, &dn, &db, &dg, &out};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        backend_tensor_free(be, ts[i]);
    free(x), free(r), free(m), free(nr), free(b), free(g0);
    backend_close(be);
}
