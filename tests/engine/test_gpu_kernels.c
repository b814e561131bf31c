/* Every CUDA kernel of gpu/ run under the host emulation harness (gpu/kern_emulate.h) with the
 * CUDA launchers' own geometry, compared with the CPU engine's op of the same name (src/engine/nn_*.c,
 * src/engine/optim.c; GroupNorm, which has no CPU op yet, with a double-precision reference and
 * finite differences). Runs in `make test` on any machine; nothing here needs a GPU.
 *
 * harness.coverage runs every comparison in one process and fails unless the kernels the
 * harness ran, the list in gpu/kern_list.h and the KERN_ENTRY functions in gpu/kern_*.h are the
 * same set and no .cu file in gpu/ defines a __global__ kernel of its own; it prints
 * "harness: covered ..." (tests/run_all.sh shows that line).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern_emulate.h"
#include "tensor.h"
#include "nn_activation.h"
#include "nn_elementwise.h"
#include "nn_flash.h"
#include "nn_diffusion.h"
#include "nn_dropout.h"
#include "nn_elementwise.h"
#include "nn_linear.h"
#include "nn_norm.h"
#include "nn_softmax.h"
#include "optim.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static unsigned rng_state = 12345;
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return ((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static float *rnd(long n) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++)
        p[i] = frand();
    return p;
}
static float *dup(const float *src, long n) {
    float *p = malloc(sizeof(float) * (size_t)n);
    memcpy(p, src, sizeof(float) * (size_t)n);
    return p;
}

/* A comparison's verdict: 0 and why = "" when it passed, else -1 and the first mismatch. */
typedef struct Why {
    char msg[512];
} Why;

static int mismatch(Why *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int mismatch(Why *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* |got − want| <= atol + rtol·|want| for every element (NaN fails). */
static int close_to(Why *w, const char *what, const float *got, const float *want, long n,
                    double atol, double rtol) {
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= atol + rtol * fabs(want[i])))
            return mismatch(w, "%s[%ld]: kernel %.8g, reference %.8g", what, i, got[i], want[i]);
    }
    return 0;
}
static int ran(Why *w, int rc, const Err *err) {
    return rc ? mismatch(w, "launch failed: %s", err->msg) : 0;
}

/* ---- LayerNorm ------------------------------------------------------------------------------ */

static int check_layernorm_fwd_shape(Why *w, int N, int C, int affine, float eps) {
    float *x = rnd((long)N * C), *wt = affine ? rnd(C) : NULL, *b = affine ? rnd(C) : NULL;
    float *out = calloc((size_t)N * C, 4), *mean = calloc(N, 4), *rstd = calloc(N, 4);
    float *rout = calloc((size_t)N * C, 4), *rmean = calloc(N, 4), *rrstd = calloc(N, 4);
    for (long i = 0; i < (long)N * C; i++)
        x[i] = x[i] * 3.0f + 0.5f;
    Err err = {0};
    LayerNormFwdArgs a = {out, mean, rstd, x, wt, b, N, C, eps};
    int rc = ran(w, layernorm_fwd_run(&a, &err), &err);
    nn_layernorm_forward(rout, rmean, rrstd, x, wt, b, N, C, eps);
    if (!rc)
        rc = close_to(w, "layernorm out", out, rout, (long)N * C, 1e-5, 1e-4);
    if (!rc)
        rc = close_to(w, "layernorm mean", mean, rmean, N, 1e-6, 1e-5);
    if (!rc)
        rc = close_to(w, "layernorm rstd", rstd, rrstd, N, 0, 1e-5);
    free(x), free(wt), free(b), free(out), free(mean), free(rstd), free(rout), free(rmean);
    free(rrstd);
    return rc;
}

static int check_layernorm_fwd(Why *w) {
    /* 5 rows: a second block of 4 warps with 3 idle; 200 = 4·50, the float4 path with a
     * ragged tail; 40 without affine, 45 the scalar path; eps far from 1e-5 */
    int rc = check_layernorm_fwd_shape(w, 5, 200, 1, 1e-2f);
    if (!rc)
        rc = check_layernorm_fwd_shape(w, 7, 45, 1, 1e-5f);
    return rc ? rc : check_layernorm_fwd_shape(w, 3, 40, 0, 1e-5f);
}

/* Gradients start nonzero: backward must ADD. dx/dw/db may be switched off (NULL). */
/* nsplit > 1: the parameter gradients by chunks of rows into a scratch, then summed. */
static int check_layernorm_bwd_shape(Why *w, int N, int C, int want_dx, int want_params,
                                     int nsplit) {
    float *x = rnd((long)N * C), *wt = rnd(C), *b = rnd(C), *g = rnd((long)N * C);
    float *out = calloc((size_t)N * C, 4), *mean = calloc(N, 4), *rstd = calloc(N, 4);
    nn_layernorm_forward(out, mean, rstd, x, wt, b, N, C, 1e-5f);
    float *dx = rnd((long)N * C), *dw = rnd(C), *db = rnd(C);
    float *rdx = dup(dx, (long)N * C), *rdw = dup(dw, C), *rdb = dup(db, C);
    Err err = {0};
    float *part = calloc((size_t)2 * nsplit * C, 4);
    LayerNormBwdArgs a = {want_dx ? dx : NULL, want_params ? dw : NULL, want_params ? db : NULL,
                          g, x, wt, mean, rstd, N, C, part, nsplit};
    int rc = ran(w, layernorm_bwd_dx_run(&a, &err), &err);
    if (!rc)
        rc = ran(w, layernorm_bwd_params_run(&a, &err), &err);
    if (!rc)
        rc = ran(w, layernorm_bwd_params_sum_run(&a, &err), &err);
    nn_layernorm_backward(want_dx ? rdx : NULL, want_params ? rdw : NULL,
                          want_params ? rdb : NULL, g, x, wt, mean, rstd, N, C);
    if (!rc)
        rc = close_to(w, "layernorm dinp", dx, rdx, (long)N * C, 1e-5, 1e-4);
    if (!rc)
        rc = close_to(w, "layernorm dweight", dw, rdw, C, 1e-5, 1e-4);
    if (!rc)
        rc = close_to(w, "layernorm dbias", db, rdb, C, 1e-5, 1e-4);
    free(x), free(wt), free(b), free(g), free(out), free(mean), free(rstd), free(dx), free(dw);
    free(db), free(rdx), free(rdw), free(rdb), free(part);
    return rc;
}

static int check_layernorm_bwd(Why *w) {
    /* 37 rows (not a multiple of the 8 row-threads nor of the 4 rows of a block), 70 columns
     * (3 column blocks, a tail; not a multiple of 4: the scalar path) */
    int rc = check_layernorm_bwd_shape(w, 37, 70, 1, 1, 1);
    if (!rc) /* 300 = 4·75: the float4 path, over 2 strides of a warp and a tail */
        rc = check_layernorm_bwd_shape(w, 6, 300, 1, 0, 1);
    if (!rc) /* the parameter gradients in 3 chunks of 13, 13, 11 rows */
        rc = check_layernorm_bwd_shape(w, 37, 68, 1, 1, 3);
    return rc ? rc : check_layernorm_bwd_shape(w, 9, 33, 0, 1, 1);
}

/* ---- GroupNorm: no CPU op on this branch yet, so a plain double reference ------------------ */

static void groupnorm_ref(double *out, const double *x, const double *wt, const double *b, int N,
                          int C, int HW, int G, double eps) {
    int Cg = C / G;
    long len = (long)Cg * HW;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const double *xg = x + ((long)n * C + (long)g * Cg) * HW;
            double m = 0, v = 0;
            for (long i = 0; i < len; i++)
                m += xg[i];
            m /= len;
            for (long i = 0; i < len; i++)
                v += (xg[i] - m) * (xg[i] - m);
            v /= len;
            double *o = out + (xg - x);
            for (long i = 0; i < len; i++) {
                int c = g * Cg + (int)(i / HW);
                o[i] = (xg[i] - m) / sqrt(v + eps) * wt[c] + b[c];
            }
        }
}

static double *to_d(const float *p, long n) {
    double *d = malloc(sizeof(double) * (size_t)n);
    for (long i = 0; i < n; i++)
        d[i] = p[i];
    return d;
}

static int check_groupnorm_fwd_shape(Why *w, int N, int C, int HW, int G, float eps) {
    long n = (long)N * C * HW;
    float *x = rnd(n), *wt = rnd(C), *b = rnd(C);
    float *out = calloc((size_t)n, 4), *mean = calloc((size_t)N * G, 4);
    float *rstd = calloc((size_t)N * G, 4), *want = malloc(sizeof(float) * (size_t)n);
    double *xd = to_d(x, n), *wd = to_d(wt, C), *bd = to_d(b, C);
    double *od = malloc(sizeof(double) * (size_t)n);
    Err err = {0};
    GroupNormFwdArgs a = {out, mean, rstd, x, wt, b, N, C, HW, G, eps};
    int rc = ran(w, groupnorm_fwd_run(&a, &err), &err);
    groupnorm_ref(od, xd, wd, bd, N, C, HW, G, eps);
    for (long i = 0; i < n; i++)
        want[i] = (float)od[i];
    if (!rc)
        rc = close_to(w, "groupnorm out", out, want, n, 1e-5, 1e-4);
    free(x), free(wt), free(b), free(out), free(mean), free(rstd), free(want), free(xd), free(wd);
    free(bd), free(od);
    return rc;
}

static int check_groupnorm_fwd(Why *w) {
    int rc = check_groupnorm_fwd_shape(w, 2, 6, 20, 3, 1e-5f); /* 40 per group: one warp */
    return rc ? rc : check_groupnorm_fwd_shape(w, 3, 8, 50, 2, 1e-3f); /* 200: 4 warps */
}

/* loss = Σ out·g; the kernels' gradients (added onto nonzero starting values) against central
 * differences of the double reference. */
static int check_groupnorm_bwd(Why *w) {
    enum { N = 2, C = 6, HW = 5, G = 3 };
    const long n = (long)N * C * HW;
    float *x = rnd(n), *wt = rnd(C), *b = rnd(C), *g = rnd(n);
    float out[N * C * HW], mean[N * G], rstd[N * G];
    float *dx = rnd(n), *dw = rnd(C), *db = rnd(C);
    float *dx0 = dup(dx, n), *dw0 = dup(dw, C), *db0 = dup(db, C);
    Err err = {0};
    GroupNormFwdArgs fa = {out, mean, rstd, x, wt, b, N, C, HW, G, 1e-5f};
    GroupNormBwdArgs a = {dx, dw, db, g, x, wt, mean, rstd, N, C, HW, G};
    int rc = ran(w, groupnorm_fwd_run(&fa, &err), &err);
    if (!rc)
        rc = ran(w, groupnorm_bwd_dx_run(&a, &err), &err);
    if (!rc)
        rc = ran(w, groupnorm_bwd_params_run(&a, &err), &err);
    double *xd = to_d(x, n), *wd = to_d(wt, C), *bd = to_d(b, C), od[N * C * HW];
    double *params[3] = {xd, wd, bd};
    float *grads[3] = {dx, dw, db}, *starts[3] = {dx0, dw0, db0};
    long sizes[3] = {n, C, C};
    const char *names[3] = {"groupnorm dinp", "groupnorm dweight", "groupnorm dbias"};
    for (int p = 0; p < 3 && !rc; p++)
        for (long i = 0; i < sizes[p] && !rc; i++) {
            const double h = 1e-5, keep = params[p][i];
            double lp = 0, lm = 0;
            params[p][i] = keep + h;
            groupnorm_ref(od, xd, wd, bd, N, C, HW, G, 1e-5);
            for (long k = 0; k < n; k++)
                lp += od[k] * g[k];
            params[p][i] = keep - h;
            groupnorm_ref(od, xd, wd, bd, N, C, HW, G, 1e-5);
            for (long k = 0; k < n; k++)
                lm += od[k] * g[k];
            params[p][i] = keep;
            float want = (float)(starts[p][i] + (lp - lm) / (2 * h));
            rc = close_to(w, names[p], &grads[p][i], &want, 1, 1e-4, 1e-3);
        }
    free(x), free(wt), free(b), free(g), free(dx), free(dw), free(db), free(dx0), free(dw0);
    free(db0), free(xd), free(wd), free(bd);
    return rc;
}

/* ---- softmax -------------------------------------------------------------------------------- */

typedef int (*SoftmaxRun)(const SoftmaxArgs *a, Err *err);

static int check_softmax_fwd_with(Why *w, SoftmaxRun run) {
    enum { N = 4, C = 300 };
    float *x = rnd(N * C), out[N * C], want[N * C];
    for (int i = 0; i < N * C; i++)
        x[i] *= 40.0f; /* exp would overflow without the max subtracted */
    Err err = {0};
    SoftmaxArgs a = {out, x, N, C};
    int rc = ran(w, run(&a, &err), &err);
    nn_softmax_forward(want, x, N, C);
    if (!rc)
        rc = close_to(w, "softmax out", out, want, N * C, 1e-7, 1e-5);
    free(x);
    return rc;
}
static int check_softmax_fwd(Why *w) { return check_softmax_fwd_with(w, softmax_fwd_run); }

static int check_softmax_bwd(Why *w) {
    enum { N = 3, C = 100 };
    float *x = rnd(N * C), *g = rnd(N * C), y[N * C];
    nn_softmax_forward(y, x, N, C);
    float *dx = rnd(N * C), *rdx = dup(dx, N * C);
    Err err = {0};
    SoftmaxBwdArgs a = {dx, g, y, N, C};
    int rc = ran(w, softmax_bwd_run(&a, &err), &err);
    nn_softmax_backward(rdx, g, y, N, C);
    if (!rc)
        rc = close_to(w, "softmax dinp", dx, rdx, N * C, 1e-6, 1e-5);
    free(x), free(g), free(dx), free(rdx);
    return rc;
}

/* ---- elementwise and AdamW ----------------------------------------------------------------- */

static int check_bias_relu_fwd(Why *w) {
    enum { N = 7, C = 45 };
    float *x = rnd(N * C), *b = rnd(C), out[N * C], want[N * C];
    Err err = {0};
    BiasReluArgs a = {out, x, b, N, C};
    int rc = ran(w, bias_relu_fwd_run(&a, &err), &err);
    nn_bias_add_forward(want, x, b, N, C);
    nn_relu_forward(want, want, N * C);
    if (!rc)
        rc = close_to(w, "bias_relu out", out, want, N * C, 0, 0);
    free(x), free(b);
    return rc;
}

static int check_relu_bwd(Why *w) {
    enum { n = 300 };
    float *y = rnd(n), *g = rnd(n), *dx = rnd(n), *rdx = dup(dx, n);
    Err err = {0};
    ReluBwdArgs a = {dx, g, y, n};
    int rc = ran(w, relu_bwd_run(&a, &err), &err);
    nn_relu_backward(rdx, g, y, n);
    if (!rc)
        rc = close_to(w, "relu dinp", dx, rdx, n, 0, 0);
    free(y), free(g), free(dx), free(rdx);
    return rc;
}

/* Steps 1..4, then a jump to step 20000 (the bias corrections come from the host in double). */
static int check_adamw(Why *w) {
    enum { n = 600 };
    AdamWConfig cfg = optim_adamw_defaults();
    cfg.weight_decay = 0.05f;
    float *p = rnd(n), *rp = dup(p, n), m[n] = {0}, v[n] = {0}, rm[n] = {0}, rv[n] = {0};
    int steps[5] = {1, 2, 3, 4, 20000}, rc = 0;
    for (int s = 0; s < 5 && !rc; s++) {
        float *g = rnd(n);
        Err err = {0};
        AdamWArgs a = adamw_args(p, m, v, g, n, 3e-3f, cfg.beta1, cfg.beta2, cfg.eps,
                                 cfg.weight_decay, steps[s]);
        rc = ran(w, adamw_run(&a, &err), &err);
        optim_adamw_step(rp, g, rm, rv, n, steps[s], 3e-3f, &cfg, 0);
        if (!rc)
            rc = close_to(w, "adamw param", p, rp, n, 1e-7, 1e-6);
        if (!rc)
            rc = close_to(w, "adamw m", m, rm, n, 0, 1e-6);
        if (!rc)
            rc = close_to(w, "adamw v", v, rv, n, 0, 1e-6);
        free(g);
    }
    free(p), free(rp);
    return rc;
}

/* ---- dtype conversion ---------------------------------------------------------------------- */

/* Every f16 and bf16 value widened, and f32 values (specials, ties, randoms) narrowed, against
 * src/engine/tensor_half.c bit for bit. */
static int check_convert(Why *w) {
    enum { NH = 65536, NF = 4096 };
    uint16_t *h = malloc(NH * sizeof *h), *hd = malloc(NF * sizeof *hd), *hr = malloc(NF * 2);
    float *f = malloc(NH * sizeof *f), *fr = malloc(NH * sizeof *fr), *src = rnd(NF);
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65520.0f,
                             65519.0f, 0x1p-25f, 0x1p-24f, 3e38f, 1e-40f, 1.0f + 0x1p-11f};
    for (int i = 0; i < (int)(sizeof special / sizeof *special); i++)
        src[i] = special[i];
    for (int i = 64; i < NF; i++)
        src[i] *= (float)(1 << (i % 20)) * 1e-3f;
    int rc = 0;
    for (int dt = 1; dt <= 2 && !rc; dt++) {
        for (int i = 0; i < NH; i++)
            h[i] = (uint16_t)i;
        Err err = {0};
        ConvertArgs up = {f, h, NH, 0, dt};
        rc = ran(w, convert_dtype_run(&up, &err), &err);
        dtype_to_f32(fr, h, (DType)dt, NH);
        for (int i = 0; i < NH && !rc; i++)
            if (memcmp(&f[i], &fr[i], 4) && !(isnan(f[i]) && isnan(fr[i])))
                rc = mismatch(w, "convert %s %#x: %g, want %g", dtype_name((DType)dt), i, f[i],
                              fr[i]);
        ConvertArgs down = {hd, src, NF, dt, 0};
        if (!rc)
            rc = ran(w, convert_dtype_run(&down, &err), &err);
        dtype_from_f32(hr, (DType)dt, src, NF);
        for (int i = 0; i < NF && !rc; i++)
            if (hd[i] != hr[i])
                rc = mismatch(w, "convert f32 %g to %s: %#x, want %#x", src[i],
                              dtype_name((DType)dt), hd[i], hr[i]);
    }
    free(h), free(hd), free(hr), free(f), free(fr), free(src);
    return rc;
}

/* ---- pointwise diffusion kernels (kern_pointwise.h) ---------------------------------------- */

/* act_fwd / act_bwd in all three modes against nn_silu_* / nn_gelu_mode_*, starting gradients
 * nonzero (the kernel must add). */
static int check_act(Why *w) {
    enum { N = 700 };
    int rc = 0;
    for (int mode = KERN_ACT_GELU; mode <= KERN_ACT_QUICKGELU && !rc; mode++) {
        float *x = rnd(N), *g = rnd(N), *out = calloc(N, 4), *want = calloc(N, 4);
        float *dx = rnd(N), *rdx = dup(dx, N);
        for (int i = 0; i < N; i++)
            x[i] *= 6.0f;
        Err err = {0};
        ActArgs f = {out, x, NULL, N, mode}, b = {dx, x, g, N, mode};
        rc = ran(w, act_fwd_run(&f, &err), &err);
        if (!rc)
            rc = ran(w, act_bwd_run(&b, &err), &err);
        if (mode == KERN_ACT_SILU) {
            nn_silu_forward(want, x, N);
            nn_silu_backward(rdx, g, x, N);
        } else if (mode == KERN_ACT_QUICKGELU) {
            nn_quickgelu_forward(want, x, N);
            nn_quickgelu_backward(rdx, g, x, N);
        } else {
            NnGelu m = mode == KERN_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF;
            nn_gelu_mode_forward(want, x, N, m);
            nn_gelu_mode_backward(rdx, g, x, N, m);
        }
        if (!rc)
            rc = close_to(w, mode == KERN_ACT_SILU ? "silu out" : "gelu out", out, want, N, 1e-6,
                          1e-5);
        if (!rc)
            rc = close_to(w, mode == KERN_ACT_SILU ? "silu dinp" : "gelu dinp", dx, rdx, N, 1e-6,
                          1e-5);
        free(x), free(g), free(out), free(want), free(dx), free(rdx);
    }
    return rc;
}

static int check_geglu(Why *w) {
    enum { N = 5, C = 37 };
    int rc = 0;
    for (int mode = KERN_ACT_GELU; mode <= KERN_ACT_GELU_TANH && !rc; mode++) {
        NnGelu m = mode == KERN_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF;
        float *x = rnd(N * 2 * C), *g = rnd(N * C), out[N * C], want[N * C];
        float *dx = rnd(N * 2 * C), *rdx = dup(dx, N * 2 * C);
        Err err = {0};
        GegluArgs f = {out, x, NULL, N, C, mode}, b = {dx, x, g, N, C, mode};
        rc = ran(w, geglu_fwd_run(&f, &err), &err);
        if (!rc)
            rc = ran(w, geglu_bwd_run(&b, &err), &err);
        nn_geglu_forward(want, x, N, C, m);
        nn_geglu_backward(rdx, g, x, N, C, m);
        if (!rc)
            rc = close_to(w, "geglu out", out, want, N * C, 1e-6, 1e-5);
        if (!rc)
            rc = close_to(w, "geglu dinp", dx, rdx, N * 2 * C, 1e-6, 1e-5);
        free(x), free(g), free(dx), free(rdx);
    }
    return rc;
}

static int check_upsample(Why *w) {
    enum { B = 2, C = 3, H = 5, W = 7, n = B * C * H * W };
    float *x = rnd(n), out[4 * n], want[4 * n], *g = rnd(4 * n), *dx = rnd(n), *rdx = dup(dx, n);
    Err err = {0};
    UpsampleArgs f = {out, x, B * C, H, W}, b = {dx, g, B * C, H, W};
    int rc = ran(w, upsample2x_fwd_run(&f, &err), &err);
    if (!rc)
        rc = ran(w, upsample2x_bwd_run(&b, &err), &err);
    nn_upsample2x_forward(want, x, B, C, H, W);
    nn_upsample2x_backward(rdx, g, B, C, H, W);
    if (!rc)
        rc = close_to(w, "upsample out", out, want, 4 * n, 0, 0);
    if (!rc)
        rc = close_to(w, "upsample dinp", dx, rdx, n, 1e-6, 1e-6);
    free(x), free(g), free(dx), free(rdx);
    return rc;
}

/* chan_copy as a concat (two copies into the whole) and its backward (two adds out of it). */
static int check_chan_copy(Why *w) {
    enum { B = 2, Ca = 3, Cb = 4, C = Ca + Cb, HW = 10 };
    float *a = rnd(B * Ca * HW), *b = rnd(B * Cb * HW), out[B * C * HW], want[B * C * HW];
    float *g = rnd(B * C * HW), *da = rnd(B * Ca * HW), *db = rnd(B * Cb * HW);
    float *rda = dup(da, B * Ca * HW), *rdb = dup(db, B * Cb * HW);
    Err err = {0};
    ChanCopyArgs ca = {out, a, B, C, Ca, 0, 0, Ca, HW, 0};
    ChanCopyArgs cb = {out, b, B, C, Cb, Ca, 0, Cb, HW, 0};
    ChanCopyArgs ga = {da, g, B, Ca, C, 0, 0, Ca, HW, 1}, gb = {db, g, B, Cb, C, 0, Ca, Cb, HW, 1};
    int rc = ran(w, chan_copy_run(&ca, &err), &err);
    if (!rc)
        rc = ran(w, chan_copy_run(&cb, &err), &err);
    if (!rc)
        rc = ran(w, chan_copy_run(&ga, &err), &err);
    if (!rc)
        rc = ran(w, chan_copy_run(&gb, &err), &err);
    nn_channel_concat_forward(want, a, b, B, Ca, Cb, HW);
    nn_channel_concat_backward(rda, rdb, g, B, Ca, Cb, HW);
    if (!rc)
        rc = close_to(w, "concat out", out, want, B * C * HW, 0, 0);
    if (!rc)
        rc = close_to(w, "concat da", da, rda, B * Ca * HW, 0, 0);
    if (!rc)
        rc = close_to(w, "concat db", db, rdb, B * Cb * HW, 0, 0);
    free(a), free(b), free(g), free(da), free(db), free(rda), free(rdb);
    return rc;
}

static int check_mse(Why *w) {
    enum { N = 1000 };
    float *p = rnd(N), *t = rnd(N), loss = 0, *dp = rnd(N), *dt = rnd(N);
    float *rdp = dup(dp, N), *rdt = dup(dt, N);
    Err err = {0};
    MseArgs f = {&loss, NULL, NULL, p, t, N, 0.0f}, b = {NULL, dp, dt, p, t, N, 0.7f};
    int rc = ran(w, mse_fwd_run(&f, &err), &err);
    if (!rc)
        rc = ran(w, mse_bwd_run(&b, &err), &err);
    float want = nn_mse_loss_forward(p, t, N);
    nn_mse_loss_backward(rdp, rdt, 0.7f, p, t, N);
    if (!rc)
        rc = close_to(w, "mse loss", &loss, &want, 1, 1e-7, 1e-5);
    if (!rc)
        rc = close_to(w, "mse dpred", dp, rdp, N, 1e-7, 1e-6);
    if (!rc)
        rc = close_to(w, "mse dtarget", dt, rdt, N, 1e-7, 1e-6);
    free(p), free(t), free(dp), free(dt), free(rdp), free(rdt);
    return rc;
}

/* ---- conv2d as im2col + GEMM + bias (kern_conv.h; the GEMM on the host here) --------------- */

/* band: output rows per im2col/col2im call (0: the whole image at once). */
static int check_conv_shape(Why *w, int K, int stride, int pad, int band) {
    ConvShape s = {2, 3, 7, 6, 4, K, stride, pad};
    int Ho = nn_conv2d_out_h(&s), Wo = nn_conv2d_out_w(&s), CKK = s.C * K * K, P = Ho * Wo;
    long ni = (long)s.B * s.C * s.H * s.W, no = (long)s.B * s.OC * P, nw = (long)s.OC * CKK;
    long img = (long)s.C * s.H * s.W;
    float *x = rnd(ni), *wt = rnd(nw), *b = rnd(s.OC), *g = rnd(no);
    float *out = calloc(no, 4), *want = calloc(no, 4), *col = calloc((size_t)CKK * P, 4);
    float *dx = rnd(ni), *dw = rnd(nw), *db = rnd(s.OC);
    float *rdx = dup(dx, ni), *rdw = dup(dw, nw), *rdb = dup(db, s.OC);
    float *sc = calloc(nn_conv2d_scratch_floats(&s) + 1, 4);
    Err err = {0};
    int rc = 0;
    int step = band ? band : Ho;
    for (int n = 0; n < s.B && !rc; n++)
        for (int oy0 = 0; oy0 < Ho && !rc; oy0 += step) {
            int rows = Ho - oy0 < step ? Ho - oy0 : step, np = rows * Wo;
            long o0 = (long)n * s.OC * P + (long)oy0 * Wo;
            ConvColArgs a = {col, x + n * img, s.C, s.H, s.W, K, stride, pad, Ho, Wo,
                             KERN_DT_F32, band ? oy0 : 0, band ? rows : 0};
            rc = ran(w, conv_im2col_run(&a, &err), &err);
            nn_gemm(0, 0, s.OC, np, CKK, wt, CKK, col, np, 0.0f, out + o0, P);
            nn_gemm(0, 1, s.OC, CKK, np, g + o0, P, col, np, 1.0f, dw, CKK);
            nn_gemm(1, 0, CKK, np, s.OC, wt, CKK, g + o0, P, 0.0f, col, np);
            a.img = dx + n * img;
            if (!rc)
                rc = ran(w, conv_col2im_run(&a, &err), &err);
        }
    ChanBiasArgs bf = {out, b, s.B, s.OC, P}, bb = {db, g, s.B, s.OC, P};
    if (!rc)
        rc = ran(w, chan_bias_fwd_run(&bf, &err), &err);
    if (!rc)
        rc = ran(w, chan_bias_bwd_run(&bb, &err), &err);
    nn_conv2d_forward(want, sc, x, wt, b, &s);
    nn_conv2d_backward(rdx, rdw, rdb, sc, g, x, wt, &s);
    if (!rc)
        rc = close_to(w, "conv out", out, want, no, 1e-5, 1e-4);
    if (!rc)
        rc = close_to(w, "conv dinp (col2im)", dx, rdx, ni, 1e-5, 1e-4);
    if (!rc)
        rc = close_to(w, "conv dweight", dw, rdw, nw, 1e-5, 1e-4);
    if (!rc)
        rc = close_to(w, "conv dbias", db, rdb, s.OC, 1e-5, 1e-4);
    free(x), free(wt), free(b), free(g), free(out), free(want), free(col), free(dx), free(dw);
    free(db), free(rdx), free(rdw), free(rdb), free(sc);
    return rc;
}

static int check_conv(Why *w) {
    int rc = check_conv_shape(w, 3, 1, 1, 0);
    if (!rc)
        rc = check_conv_shape(w, 3, 2, 1, 0);
    if (!rc)
        rc = check_conv_shape(w, 1, 1, 0, 0);
    if (!rc)
        rc = check_conv_shape(w, 3, 2, 0, 0);
    if (!rc) /* bands of output rows: 2 (and a last band of 1), 1 */
        rc = check_conv_shape(w, 3, 1, 1, 2);
    if (!rc)
        rc = check_conv_shape(w, 3, 2, 1, 1);
    return rc;
}

/* ---- attention (kern_attn.h) vs nn_flash -------------------------------------------------- */

/* x rounded to dtype in place (f32: unchanged); the rounded values in half form at h. */
static void to_dtype(float *x, void *h, long n, int dt) {
    if (dt == DTYPE_F32) {
        memcpy(h, x, sizeof(float) * (size_t)n);
        return;
    }
    dtype_from_f32(h, (DType)dt, x, (size_t)n);
    dtype_to_f32(x, h, (DType)dt, (size_t)n);
}

/* One attention shape, in dtype dt: the kernels on rounded inputs against nn_flash_* in f32 on
 * the same rounded inputs, starting gradients nonzero. f32 within 1e-5 + 1e-4 relative; a half
 * type within a few of its units in the last place of the largest output (its outputs and the
 * gradients' sums are rounded once, the f32 accumulation is the same). */
static int check_attn_case(Why *w, int B, int NH, int Tq, int Tk, int hd, int causal,
                           const int *key_len, int dt) {
    int C = NH * hd;
    long nq = (long)B * Tq * C, nk = (long)B * Tk * C, nl = (long)B * NH * Tq;
    size_t es = dt == DTYPE_F32 ? 4 : 2;
    float *q = rnd(nq), *kk = rnd(nk), *v = rnd(nk), *g = rnd(nq);
    float *dq = rnd(nq), *dk = rnd(nk), *dv = rnd(nk);
    void *hq = malloc(nq * es), *hk = malloc(nk * es), *hv = malloc(nk * es), *hg = malloc(nq * es);
    void *hdq = malloc(nq * es), *hdk = malloc(nk * es), *hdv = malloc(nk * es);
    void *ho = malloc(nq * es);
    to_dtype(q, hq, nq, dt), to_dtype(kk, hk, nk, dt), to_dtype(v, hv, nk, dt);
    to_dtype(g, hg, nq, dt), to_dtype(dq, hdq, nq, dt), to_dtype(dk, hdk, nk, dt);
    to_dtype(dv, hdv, nk, dt);
    float *o = calloc(nq, 4), *lse = calloc(nl, 4), *ro = calloc(nq, 4), *rl = calloc(nl, 4);
    float *dsum = calloc(nl, 4);
    float *rdq = dup(dq, nq), *rdk = dup(dk, nk), *rdv = dup(dv, nk);
    float scale = 1.0f / sqrtf((float)hd);
    FlashAttn f = {B, NH, Tq, Tk, hd, 0, 0, 0, 0, scale, causal, key_len, 0};
    nn_flash_forward(ro, rl, q, kk, v, &f);
    AttnArgs a = {ho, lse, dsum, hdq, hdk, hdv, hq, hk, hv, hg, key_len,
                  B, NH, Tq, Tk, hd, causal, dt, scale};
    Err err = {0};
    double ulp = dt == DTYPE_F16 ? 1.0 / 1024 : dt == DTYPE_BF16 ? 1.0 / 128 : 0.0;
    double atol = dt == DTYPE_F32 ? 1e-5 : 2 * ulp, rtol = dt == DTYPE_F32 ? 1e-4 : ulp;
    int rc = ran(w, attn_fwd_run(&a, &err), &err);
    if (!rc) {
        dtype_to_f32(o, ho, (DType)dt, (size_t)nq);
        rc = close_to(w, "attention o", o, ro, nq, atol, rtol);
    }
    for (long i = 0; i < nl && !rc; i++)
        if (!(lse[i] == rl[i] || fabsf(lse[i] - rl[i]) <= 1e-4f * (1 + fabsf(rl[i]))))
            rc = mismatch(w, "attention lse[%ld]: kernel %g, reference %g", i, lse[i], rl[i]);
    /* the backward gets the kernel's own o (as a model would), the reference that o too */
    nn_flash_backward(rdq, rdk, rdv, g, q, kk, v, o, rl, &f);
    if (!rc)
        rc = ran(w, attn_bwd_pre_run(&a, &err), &err);
    if (!rc)
        rc = ran(w, attn_bwd_dkv_run(&a, &err), &err);
    if (!rc)
        rc = ran(w, attn_bwd_dq_run(&a, &err), &err);
    float *gdq = malloc(nq * 4), *gdk = malloc(nk * 4), *gdv = malloc(nk * 4);
    dtype_to_f32(gdq, hdq, (DType)dt, (size_t)nq);
    dtype_to_f32(gdk, hdk, (DType)dt, (size_t)nk);
    dtype_to_f32(gdv, hdv, (DType)dt, (size_t)nk);
    if (!rc)
        rc = close_to(w, "attention dq", gdq, rdq, nq, atol, rtol);
    if (!rc)
        rc = close_to(w, "attention dk", gdk, rdk, nk, atol, rtol);
    if (!rc)
        rc = close_to(w, "attention dv", gdv, rdv, nk, atol, rtol);
    if (rc) {
        char shape[128];
        snprintf(shape, sizeof shape, " (B %d, NH %d, Tq %d, Tk %d, hd %d, causal %d, key_len "
                 "%s, %s)", B, NH, Tq, Tk, hd, causal, key_len ? "yes" : "no", dtype_name((DType)dt));
        snprintf(w->msg + strlen(w->msg), sizeof w->msg - strlen(w->msg), "%s", shape);
    }
    free(q), free(kk), free(v), free(g), free(o), free(lse), free(ro), free(rl), free(dsum);
    free(dq), free(dk), free(dv), free(rdq), free(rdk), free(rdv), free(gdq), free(gdk), free(gdv);
    free(hq), free(hk), free(hv), free(hg), free(hdq), free(hdk), free(hdv), free(ho);
    return rc;
}

/* Small shapes (the harness starts a thread per GPU thread, and the kernels' shuffles make
 * them slow there), chosen so that every kernel runs more than one tile of rows and of
 * columns somewhere (rows per block: 32 for hd <= 32, 24/12/12 at hd = 128 for fwd/dq/dkv). */
static int check_attn(Why *w) {
    static const int key_len[2] = {9, 0}; /* batch 1 sees no key: o = 0, lse = −inf */
    static const int key_len2[2] = {40, 33};
    int rc = check_attn_case(w, 2, 2, 7, 7, 16, 0, NULL, DTYPE_F32);
    if (!rc) /* more queries than keys, causal: the first Tq − Tk queries see no key; hd not a
              * multiple of 4 (the scalar row loads) */
        rc = check_attn_case(w, 1, 2, 12, 5, 6, 1, NULL, DTYPE_F32);
    if (!rc)
        rc = check_attn_case(w, 2, 1, 5, 11, 24, 0, key_len, DTYPE_F32);
    if (!rc) /* hd = 128, several query tiles (dq, fwd) and key tiles (dkv) */
        rc = check_attn_case(w, 1, 2, 26, 14, 128, 1, NULL, DTYPE_F32);
    if (!rc) /* two query tiles and two key tiles, causal and key_len */
        rc = check_attn_case(w, 2, 1, 34, 36, 16, 1, key_len2, DTYPE_F32);
    if (!rc) /* four key tiles per query: the running max moves, acc and l are rescaled */
        rc = check_attn_case(w, 1, 1, 3, 100, 8, 0, NULL, DTYPE_F32);
    if (!rc)
        rc = check_attn_case(w, 1, 1, 9, 35, 24, 1, NULL, DTYPE_F16);
    if (!rc)
        rc = check_attn_case(w, 2, 1, 9, 35, 24, 0, key_len2, DTYPE_BF16);
    return rc;
}

/* ---- ops of the reward model (kern_reward.h) ------------------------------------------------ */

static int check_dropout(Why *w) {
    enum { n = 700 };
    float *x = rnd(n), *out = rnd(n), *want = rnd(n), *dx = rnd(n), *rdx = dup(dx, n);
    Err err = {0};
    DropoutArgs a = {out, x, n, 0.3f, 77, 0};
    int rc = ran(w, dropout_run(&a, &err), &err);
    nn_dropout_forward(want, x, 0.3f, 77, n);
    if (!rc)
        rc = close_to(w, "dropout out", out, want, n, 0, 0);
    DropoutArgs b = {dx, x, n, 0.3f, 77, 1};
    if (!rc)
        rc = ran(w, dropout_run(&b, &err), &err);
    nn_dropout_backward(rdx, x, 0.3f, 77, n);
    if (!rc)
        rc = close_to(w, "dropout dinp", dx, rdx, n, 0, 0);
    free(x), free(out), free(want), free(dx), free(rdx);
    return rc;
}

static int check_scale_add(Why *w) {
    enum { n = 300 };
    float *x = rnd(n), *y = rnd(n), out[n], want[n];
    Err err = {0};
    EwArgs a = {out, x, n, 0.37f};
    int rc = ran(w, scale_fwd_run(&a, &err), &err);
    nn_scale_forward(want, x, 0.37f, n);
    if (!rc)
        rc = close_to(w, "scale out", out, want, n, 0, 0);
    AddArgs b = {out, x, y, n, 0};
    if (!rc)
        rc = ran(w, add_fwd_run(&b, &err), &err);
    nn_add_forward(want, x, y, n);
    if (!rc)
        rc = close_to(w, "add out", out, want, n, 0, 0);
    free(x), free(y);
    return rc;
}

/* ---- ops of CLIP (gpu/kern_clip.h) ------------------------------------------------------- */

static int check_clip(Why *w) {
    enum { N = 12, T = 4, C = 40, V = 6, M = 5 };
    float *a = rnd(N * C), *b = rnd(N * C), *pos = rnd(T * C), out[N * C], want[N * C];
    Err err = {0};
    AddArgs same = {out, a, b, N * C, 0}, rows = {out, a, pos, N * C, T * C};
    int rc = ran(w, add_fwd_run(&same, &err), &err);
    nn_add_forward(want, a, b, N * C);
    if (!rc)
        rc = close_to(w, "add", out, want, N * C, 0, 0);
    if (!rc)
        rc = ran(w, add_fwd_run(&rows, &err), &err);
    for (int n = 0; n < N; n++)
        nn_add_forward(want + n * C, a + n * C, pos + (n % T) * C, C);
    if (!rc)
        rc = close_to(w, "add rows", out, want, N * C, 0, 0);
    static const int idx[M] = {5, -1, 0, 2, 5};
    float *tab = rnd(V * C), g[M * C], gw[M * C];
    uint16_t half[V * C];
    for (int dt = DTYPE_F32; dt <= DTYPE_BF16 && !rc; dt++) {
        float tr[V * C];
        const void *src = tab;
        memcpy(tr, tab, sizeof tr);
        if (dt != DTYPE_F32) {
            dtype_from_f32(half, (DType)dt, tab, V * C);
            dtype_to_f32(tr, half, (DType)dt, V * C);
            src = half;
        }
        for (int m = 0; m < M; m++)
            for (int i = 0; i < C; i++)
                gw[m * C + i] = idx[m] < 0 ? 0.0f : tr[idx[m] * C + i];
        GatherArgs ga = {g, src, idx, M, C, dt};
        rc = ran(w, gather_rows_run(&ga, &err), &err);
        if (!rc)
            rc = close_to(w, "gather rows", g, gw, M * C, 0, 0);
    }
    float nr[N], nw[N];
    for (int i = 0; i < C; i++) /* one row below eps */
        a[3 * C + i] = 1e-9f;
    int Cs[2] = {C, 300}; /* one warp, and a block of 128 threads */
    for (int k = 0; k < 2 && !rc; k++) {
        float *x = rnd((long)N * Cs[k]), *o = malloc(sizeof(float) * N * Cs[k]);
        float *ow = malloc(sizeof(float) * N * Cs[k]);
        if (k == 0)
            memcpy(x, a, sizeof(float) * N * C);
        L2NormArgs la = {o, nr, x, N, Cs[k], 1e-6f};
        rc = ran(w, l2norm_fwd_run(&la, &err), &err);
        nn_l2norm_forward(ow, nw, x, N, Cs[k], 1e-6f);
        if (!rc)
            rc = close_to(w, "l2norm out", o, ow, (long)N * Cs[k], 1e-6, 1e-5);
        if (!rc)
            rc = close_to(w, "l2norm norm", nr, nw, N, 1e-6, 1e-5);
        free(x), free(o), free(ow);
    }
    free(a), free(b), free(pos), free(tab);
    return rc;
}

/* ---- ops of the UNet ------------------------------------------------------------------------- */

/* unet_add with and without b and chan, and unet_transpose, against plain loops (exact). */
static int check_unet(Why *w) {
    enum { B = 2, C = 3, S = 37, R = 45, K = 33 };
    float *a = rnd(B * C * S), *b = rnd(B * C * S), *chan = rnd(B * C), out[B * C * S];
    float want[B * C * S];
    Err err = {0};
    int rc = 0;
    for (int mode = 0; mode < 3 && !rc; mode++) {
        const float *bb = mode == 1 ? NULL : b, *cc = mode == 2 ? NULL : chan;
        UnetAddArgs x = {out, a, bb, cc, B * C, S};
        rc = ran(w, unet_add_run(&x, &err), &err);
        for (int i = 0; i < B * C * S; i++)
            want[i] = a[i] + (bb ? bb[i] : 0.0f) + (cc ? cc[i / S] : 0.0f);
        if (!rc)
            rc = close_to(w, "unet_add out", out, want, B * C * S, 0, 0);
    }
    float *t = rnd(B * R * K), *to = malloc(sizeof(float) * B * R * K);
    float *tw = malloc(sizeof(float) * B * R * K);
    UnetTransposeArgs tr = {to, t, B, R, K};
    if (!rc)
        rc = ran(w, unet_transpose_run(&tr, &err), &err);
    for (int bi = 0; bi < B; bi++)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < K; c++)
                tw[((long)bi * K + c) * R + r] = t[((long)bi * R + r) * K + c];
    if (!rc)
        rc = close_to(w, "unet_transpose out", to, tw, B * R * K, 0, 0);
    free(a), free(b), free(chan), free(t), free(to), free(tw);
    return rc;
}

/* upsample_nearest_fwd / _bwd at 9×5 → 17×9 (the UNet's odd sizes), 7×4 → 4×8 and 3×3 → 3×3
 * against loops over the CPU's index rule (torch's; test_unet_ops checks it against torch's
 * numbers); the backward adds. */
static int nearest_ref_src(long o, long in, long out) {
    if (out == in)
        return (int)o;
    if (out == 2 * in)
        return (int)(o >> 1);
    long s = (long)floorf((float)o * ((float)in / (float)out));
    return (int)(s < in - 1 ? s : in - 1);
}

static int check_nearest(Why *w) {
    static const int sz[3][4] = {{9, 5, 17, 9}, {7, 4, 4, 8}, {3, 3, 3, 3}};
    enum { P = 5 };
    Err err = {0};
    int rc = 0;
    for (int c = 0; c < 3 && !rc; c++) {
        int H = sz[c][0], W = sz[c][1], Ho = sz[c][2], Wo = sz[c][3];
        long ni = (long)P * H * W, no = (long)P * Ho * Wo;
        float *x = rnd(ni), *o = malloc(sizeof(float) * no), *ow = malloc(sizeof(float) * no);
        float *g = rnd(no), *d = rnd(ni), *dw = dup(d, ni);
        for (int p = 0; p < P; p++)
            for (int y = 0; y < Ho; y++)
                for (int xx = 0; xx < Wo; xx++) {
                    long si = ((long)p * H + nearest_ref_src(y, H, Ho)) * W +
                              nearest_ref_src(xx, W, Wo);
                    long oi = ((long)p * Ho + y) * Wo + xx;
                    ow[oi] = x[si];
                    dw[si] += g[oi];
                }
        NearestArgs fa = {o, x, P, H, W, Ho, Wo}, ba = {d, g, P, H, W, Ho, Wo};
        rc = ran(w, upsample_nearest_fwd_run(&fa, &err), &err);
        if (!rc)
            rc = close_to(w, "upsample_nearest out", o, ow, no, 0, 0);
        if (!rc)
            rc = ran(w, upsample_nearest_bwd_run(&ba, &err), &err);
        if (!rc)
            rc = close_to(w, "upsample_nearest dinp", d, dw, ni, 1e-6, 1e-5);
        free(x), free(o), free(ow), free(g), free(d), free(dw);
    }
    return rc;
}

/* ---- ops of the VAE (kern_vae.h) ------------------------------------------------------------ */

static int check_vae_ops(Why *w) {
    enum { B = 2, C = 3, H = 5, W = 7, Ho = 4, Wo = 9 };
    float *b = rnd(B * C * H * W), *p = calloc(B * C * Ho * Wo, 4);
    Err err = {0};
    Pad2dArgs pa = {p, b, B * C, H, W, Ho, Wo, -2, 1}; /* crop two rows, pad one column */
    int rc = ran(w, pad2d_fwd_run(&pa, &err), &err);
    for (long i = 0; !rc && i < B * C * Ho * Wo; i++) {
        long pl = i / (Ho * Wo), y = i % (Ho * Wo) / Wo + 2, x = i % Wo - 1;
        float want = y < H && x >= 0 && x < W ? b[(pl * H + y) * W + x] : 0.0f;
        if (p[i] != want)
            rc = mismatch(w, "pad2d[%ld]: kernel %g, reference %g", i, p[i], want);
    }
    free(b), free(p);
    return rc;
}

/* ---- ops of DoRA (kern_dora.h; issue 16) ------------------------------------------------------ */

/* dora_norm on an f32 / f16 / bf16 weight with and without B·A, dora_scale with and without a
 * bias (bf16 too), dora_mag_bwd (adds), against double loops. */
static int check_dora(Why *w) {
    enum { OC = 5, R = 3, K = 300, P = 3, Q = 7 };
    float *wt = rnd(OC * K), *B = rnd(OC * R), *A = rnd(R * K), nrm[OC], want[OC];
    unsigned short wh[OC * K];
    Err err = {0};
    int rc = 0;
    for (int dt = 0; dt < 3 && !rc; dt++) {
        const void *wp = wt;
        if (dt) {
            dtype_from_f32(wh, dt == 1 ? DTYPE_F16 : DTYPE_BF16, wt, OC * K);
            wp = wh;
        }
        float wf[OC * K];
        if (dt)
            dtype_to_f32(wf, wh, dt == 1 ? DTYPE_F16 : DTYPE_BF16, OC * K);
        else
            memcpy(wf, wt, sizeof wf);
        for (int withba = 0; withba < 2 && !rc; withba++) {
            DoraNormArgs x = {nrm, wp, withba ? B : NULL, withba ? A : NULL, OC, R, K, 0.7f, dt};
            rc = ran(w, dora_norm_run(&x, &err), &err);
            for (int o = 0; o < OC; o++) {
                double acc = 0;
                for (int k = 0; k < K; k++) {
                    double v = wf[o * K + k], ba = 0;
                    for (int q = 0; withba && q < R; q++)
                        ba += (double)B[o * R + q] * A[q * K + k];
                    v += 0.7 * ba;
                    acc += v * v;
                }
                want[o] = (float)sqrt(acc);
            }
            if (!rc)
                rc = close_to(w, "dora_norm", nrm, want, OC, 0, 1e-5);
        }
    }
    float *inp = rnd(P * OC * Q), *m = rnd(OC), *bias = rnd(OC), out[P * OC * Q];
    float ow[P * OC * Q];
    for (int o = 0; o < OC; o++)
        nrm[o] = 1.0f + 0.1f * (float)o;
    unsigned short bh[OC];
    dtype_from_f32(bh, DTYPE_BF16, bias, OC);
    for (int mode = 0; mode < 3 && !rc; mode++) {
        DoraScaleArgs x = {out, inp, m, nrm, mode == 0 ? NULL : mode == 1 ? (void *)bias : bh,
                           P * OC * Q, OC, Q, mode == 2 ? (int)DTYPE_BF16 : 0};
        rc = ran(w, dora_scale_run(&x, &err), &err);
        for (int i = 0; i < P * OC * Q; i++) {
            int c = i / Q % OC;
            float b = mode == 0 ? 0.0f : mode == 1 ? bias[c] : bf16_to_f32(bh[c]);
            ow[i] = (float)((double)inp[i] * m[c] / nrm[c] + b);
        }
        if (!rc)
            rc = close_to(w, "dora_scale", out, ow, P * OC * Q, 1e-6, 1e-6);
    }
    float *dout = rnd(P * OC * Q), *dm = rnd(OC), *dmw = dup(dm, OC);
    for (int c = 0; c < OC; c++) {
        double acc = 0;
        for (int p = 0; p < P; p++)
            for (int q = 0; q < Q; q++)
                acc += (double)dout[(p * OC + c) * Q + q] * inp[(p * OC + c) * Q + q];
        dmw[c] += (float)(acc / nrm[c]);
    }
    DoraMagArgs ma = {dm, dout, inp, nrm, P, OC, Q};
    if (!rc)
        rc = ran(w, dora_mag_bwd_run(&ma, &err), &err);
    if (!rc)
        rc = close_to(w, "dora_mag_bwd dm", dm, dmw, OC, 1e-5, 1e-5);
    free(wt), free(B), free(A), free(inp), free(m), free(bias), free(dout), free(dm), free(dmw);
    return rc;
}

/* ---- every comparison, by name -------------------------------------------------------------- */

typedef struct Check {
    const char *name;
    int (*fn)(Why *w);
} Check;

static const Check checks[] = {
    {"layernorm forward vs nn_layernorm_forward", check_layernorm_fwd},
    {"layernorm backward vs nn_layernorm_backward", check_layernorm_bwd},
    {"groupnorm forward vs double reference", check_groupnorm_fwd},
    {"groupnorm backward vs finite differences", check_groupnorm_bwd},
    {"softmax forward vs nn_softmax_forward", check_softmax_fwd},
    {"softmax backward vs nn_softmax_backward", check_softmax_bwd},
    {"bias+relu vs nn_bias_add_forward + nn_relu_forward", check_bias_relu_fwd},
    {"relu backward vs nn_relu_backward", check_relu_bwd},
    {"adamw vs optim_adamw_step", check_adamw},
    {"dtype conversion vs src/engine/tensor_half.c", check_convert},
    {"gelu/gelu_tanh/silu/quickgelu vs nn_gelu_mode_*/nn_silu_*/nn_quickgelu_*", check_act},
    {"geglu vs nn_geglu_*", check_geglu},
    {"upsample2x vs nn_upsample2x_*", check_upsample},
    {"chan_copy as concat vs nn_channel_concat_*", check_chan_copy},
    {"mse vs nn_mse_loss_*", check_mse},
    {"conv2d (im2col, col2im, channel bias) vs nn_conv2d_*", check_conv},
    {"attention (forward, dq, dk/dv) vs nn_flash_*", check_attn},
    /* ops of the reward model */
    {"dropout (forward, backward) vs nn_dropout_*", check_dropout},
    {"scale, add vs nn_scale_forward, nn_add_forward", check_scale_add},
    {"ops of CLIP (add, gather_rows, l2norm) vs nn_add/nn_l2norm and tensor_half", check_clip},
    /* ops of the UNet */
    {"unet_add and unet_transpose vs plain loops", check_unet},
    /* ops of the VAE */
    {"pad2d vs loops", check_vae_ops},
    /* ops of the UNet: any-size upsampling */
    {"upsample_nearest (forward, backward) vs loops", check_nearest},
    /* ops of DoRA */
    {"dora_norm, dora_scale, dora_mag_bwd vs double loops", check_dora},
};

static void run_check(int i) {
    Why w = {""};
    int rc = checks[i].fn(&w);
    cr_assert_eq(rc, 0, "%s: %s", checks[i].name, w.msg);
}

Test(gpu_kernels, layernorm_forward) { run_check(0); }
Test(gpu_kernels, layernorm_backward_adds) { run_check(1); }
Test(gpu_kernels, groupnorm_forward) { run_check(2); }
Test(gpu_kernels, groupnorm_backward) { run_check(3); }
Test(gpu_kernels, softmax_forward) { run_check(4); }
Test(gpu_kernels, softmax_backward) { run_check(5); }
Test(gpu_kernels, bias_relu_forward) { run_check(6); }
Test(gpu_kernels, relu_backward_adds) { run_check(7); }
Test(gpu_kernels, adamw_matches_optim) { run_check(8); }
Test(gpu_kernels, convert_matches_tensor_half) { run_check(9); }
Test(gpu_kernels, activations) { run_check(10); }
Test(gpu_kernels, geglu) { run_check(11); }
Test(gpu_kernels, upsample2x) { run_check(12); }
Test(gpu_kernels, chan_copy) { run_check(13); }
Test(gpu_kernels, mse) { run_check(14); }
Test(gpu_kernels, conv2d_im2col) { run_check(15); }
Test(gpu_kernels, attention) { run_check(16); }
Test(gpu_kernels, dropout_same_mask_as_the_cpu) { run_check(17); }
Test(gpu_kernels, scale_add) { run_check(18); }
Test(gpu_kernels, clip_ops) { run_check(19); }
Test(gpu_kernels, unet_add_transpose) { run_check(20); }
Test(gpu_kernels, vae_ops) { run_check(21); } /* ops of the VAE */
Test(gpu_kernels, upsample_nearest) { run_check(22); } /* ops of the UNet: any size */
Test(gpu_kernels, dora_ops) { run_check(23); } /* ops of DoRA */

/* ---- coverage: the list, the sources and what the harness ran agree ------------------------ */

#define KERN_NAME_(name, Args) #name,
static const char *const listed[] = {KERN_LIST(KERN_NAME_)};
#define N_LISTED ((int)(sizeof listed / sizeof listed[0]))

/* gpu/ from the repository root (make test's working directory) or next to this file. */
static DIR *open_gpu_dir(char *path, size_t len) {
    snprintf(path, len, "gpu");
    DIR *d = opendir(path);
    if (!d) {
        const char *slash = strrchr(__FILE__, '/');
        snprintf(path, len, "%.*s/../gpu", slash ? (int)(slash - __FILE__) : 1,
                 slash ? __FILE__ : ".");
        d = opendir(path);
    }
    return d;
}

/* What gpu/ defines: the KERN_ENTRY functions of gpu/kern_*.h, and in its .cu files any __global__
 * kernel written outside the one wrapper macro of cuda_nn.cu (a kernel the list cannot see). */
typedef struct Sources {
    char entries[128][64];
    int n_entries;
    char stray[512]; /* "file:line" of stray __global__ definitions, "" if none */
    char files[1024];
} Sources;

static void scan_sources(Sources *src) {
    char dir[512];
    DIR *d = open_gpu_dir(dir, sizeof dir);
    cr_assert_not_null(d, "cannot open gpu/ (run from the repository root)");
    memset(src, 0, sizeof *src);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        int is_kern = strncmp(e->d_name, "kern_", 5) == 0 && l > 2 && !strcmp(e->d_name + l - 2, ".h");
        int is_cu = l > 3 && !strcmp(e->d_name + l - 3, ".cu");
        if (!is_kern && !is_cu)
            continue;
        snprintf(src->files + strlen(src->files), sizeof src->files - strlen(src->files), " %s",
                 e->d_name);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f, "cannot read %s", path);
        char line[512], name[64];
        for (int ln = 1; fgets(line, sizeof line, f); ln++) {
            if (is_kern && sscanf(line, "KERN_ENTRY void %63[A-Za-z0-9_](", name) == 1 &&
                src->n_entries < 128)
                snprintf(src->entries[src->n_entries++], 64, "%s", name);
            const char *gl = is_cu ? strstr(line, "__global__") : NULL;
            const char *cm = strstr(line, "//");
            if (gl && (!cm || cm > gl) && !strstr(line, "name##_kernel"))
                snprintf(src->stray + strlen(src->stray), sizeof src->stray - strlen(src->stray),
                         " %s:%d", e->d_name, ln);
        }
        fclose(f);
    }
    closedir(d);
}

/* The coverage rule, on data: 0, or -1 with the first gap in w. */
static int coverage_gaps(const Sources *src, const char *const *list, int n_list,
                         long (*launches)(const char *name), Why *w) {
    if (src->n_entries == 0)
        return mismatch(w, "no KERN_ENTRY function found in gpu/kern_*.h (%s)", src->files);
    if (src->stray[0])
        return mismatch(w, "__global__ kernel(s) outside gpu/kern_list.h at%s: write the kernel "
                           "as a KERN_ENTRY in gpu/kern_*.h and list it", src->stray);
    for (int i = 0; i < src->n_entries; i++) {
        int listed_here = 0;
        for (int j = 0; j < n_list; j++)
            listed_here |= strcmp(src->entries[i], list[j]) == 0;
        if (!listed_here)
            return mismatch(w, "kernel %s is in gpu/kern_*.h but not in gpu/kern_list.h: list "
                               "it and add a harness comparison to tests/engine/test_gpu_kernels.c",
                            src->entries[i]);
    }
    for (int j = 0; j < n_list; j++) {
        int in_src = 0;
        for (int i = 0; i < src->n_entries; i++)
            in_src |= strcmp(src->entries[i], list[j]) == 0;
        if (!in_src)
            return mismatch(w, "gpu/kern_list.h names %s, which no gpu/kern_*.h defines with "
                               "KERN_ENTRY", list[j]);
        if (launches(list[j]) <= 0)
            return mismatch(w, "kernel %s is not covered: no comparison ran it under the "
                               "harness", list[j]);
    }
    return 0;
}

Test(harness, coverage) {
    for (int i = 0; i < (int)(sizeof checks / sizeof checks[0]); i++)
        run_check(i);
    Sources src;
    scan_sources(&src);
    Why w = {""};
    cr_assert_eq(coverage_gaps(&src, listed, N_LISTED, kern_emulate_launches, &w), 0, "%s", w.msg);
    char covered[2048] = "";
    for (int i = 0; i < N_LISTED; i++)
        snprintf(covered + strlen(covered), sizeof covered - strlen(covered), "%s%s",
                 i ? ", " : "", listed[i]);
    fprintf(stderr, "harness: covered %s (%d of %d kernels in gpu/)\n", covered, N_LISTED,
            src.n_entries);
}

/* The rule itself, on made-up sources: each kind of gap is reported. */
static long launched_all_but_c(const char *name) { return strcmp(name, "c") != 0; }

Test(harness, coverage_rule_reports_every_kind_of_gap) {
    const char *const list[] = {"a", "b"};
    Sources src;
    memset(&src, 0, sizeof src);
    snprintf(src.entries[0], 64, "a"), snprintf(src.entries[1], 64, "b");
    src.n_entries = 2;
    Why w = {""};
    cr_assert_eq(coverage_gaps(&src, list, 2, launched_all_but_c, &w), 0, "%s", w.msg);
    snprintf(src.entries[2], 64, "c"); /* defined, not listed */
    src.n_entries = 3;
    cr_assert_eq(coverage_gaps(&src, list, 2, launched_all_but_c, &w), -1);
    cr_assert(strstr(w.msg, "kernel c is in gpu/kern_*.h but not in gpu/kern_list.h"), "%s", w.msg);
    const char *const list3[] = {"a", "b", "c"}; /* listed, never run */
    cr_assert_eq(coverage_gaps(&src, list3, 3, launched_all_but_c, &w), -1);
    cr_assert(strstr(w.msg, "kernel c is not covered"), "%s", w.msg);
    src.n_entries = 2; /* listed, not defined */
    cr_assert_eq(coverage_gaps(&src, list3, 3, launched_all_but_c, &w), -1);
    cr_assert(strstr(w.msg, "names c, which no gpu/kern_*.h defines"), "%s", w.msg);
    snprintf(src.stray, sizeof src.stray, " extra.cu:12"); /* a hand-written __global__ */
    cr_assert_eq(coverage_gaps(&src, list, 2, launched_all_but_c, &w), -1);
    cr_assert(strstr(w.msg, "extra.cu:12"), "%s", w.msg);
}

/* ---- the harness catches a wrong kernel ----------------------------------------------------- */

/* softmax_fwd with a classic reduction bug: a shfl_DOWN tree leaves the full sum in lane 0 only,
 * but every lane uses its own partial. Deterministic, and invisible to a harness that runs one
 * thread at a time (it could not run shuffles at all). */
KERN_HD float wrong_warp_sum(KernCtx *k, float v) {
    for (int o = KERN_WARP / 2; o > 0; o >>= 1)
        v += kern_shfl_down(k, v, o);
    return v;
}
KERN_HD float wrong_block_sum(KernCtx *k, float v, float *scratch) {
    v = wrong_warp_sum(k, v);
    if (kern_lane(k) == 0)
        scratch[kern_warp(k)] = v;
    kern_sync(k);
    v = kern_lane(k) < k->nthreads / KERN_WARP ? scratch[kern_lane(k)] : 0.0f;
    v = wrong_warp_sum(k, v);
    kern_sync(k);
    return v;
}
KERN_ENTRY void softmax_fwd_wrong(KernCtx *k, const SoftmaxArgs *a) {
    float *scratch = (float *)kern_shared(k);
    long n = k->block_idx.x;
    const float *x = a->inp + n * a->C;
    float *o = a->out + n * a->C;
    float mx = -INFINITY;
    for (int c = k->tid; c < a->C; c += k->nthreads)
        mx = kern_fmaxf(mx, x[c]);
    mx = kern_block_max(k, mx, scratch);
    float s = 0.0f;
    for (int c = k->tid; c < a->C; c += k->nthreads) {
        o[c] = kern_expf(x[c] - mx);
        s += o[c];
    }
    float inv = 1.0f / wrong_block_sum(k, s, scratch);
    for (int c = k->tid; c < a->C; c += k->nthreads)
        o[c] *= inv;
}
KERN_HD KernLaunch softmax_fwd_wrong_launch(const SoftmaxArgs *a) { return softmax_fwd_launch(a); }
KERN_EMULATE_DEFINE_(softmax_fwd_wrong, SoftmaxArgs)

Test(harness, catches_a_wrong_kernel) {
    Why w = {""};
    cr_assert_eq(check_softmax_fwd_with(&w, softmax_fwd_run), 0, "%s", w.msg);
    cr_assert_eq(check_softmax_fwd_with(&w, softmax_fwd_wrong_run), -1,
                 "the comparison passed a softmax whose row sums are wrong");
    cr_assert(strstr(w.msg, "softmax out") != NULL, "%s", w.msg);
}
