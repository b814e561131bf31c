/* tests/engine/test_nn_backend_ops — the engine interface (src/engine/backend.h) checked op by op.
 *
 * - Every op × weight dtype × backend against the CPU f32 reference (the nn_* ops called
 *   directly on host arrays): forward outputs, and backward gradients that were PRE-FILLED
 *   with random values, so a backward that overwrites instead of adding is caught (the
 *   gradient rule). CUDA runs where a GPU exists; otherwise those tests skip with the reason.
 * - Every backward by finite differences through the table (CPU backend).
 * - A deliberately wrong op inserted into a copy of the CPU table must be caught.
 * - Sticky errors: a bad op fails the backend, later ops are no-ops, backend_sync reports the
 *   first failure, then the backend works again.
 * Engine-only: links build/libeasel_engine.a alone.
 */
#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "backend_impl.h"
#include "cuda.h"
#include "nn_activation.h"
#include "nn_dropout.h"
#include "nn_elementwise.h"
#include "nn_check.h"
#include "nn_flash.h"
#include "nn_linear.h"
#include "nn_norm.h"
#include "nn_softmax.h"

/* ---- harness ------------------------------------------------------------------------------- */

#define MAXT 96

typedef struct Ctx {
    Backend *be;
    Rng r;
    Tensor dev[MAXT];
    int n_dev;
    float *host[MAXT];
    int n_host;
    int bad;          /* mismatching elements so far */
    float atol, rtol;
    int quiet;        /* expected mismatches: do not log */
} Ctx;

static void ctx_init(Ctx *c, Backend *be) {
    memset(c, 0, sizeof *c);
    c->be = be;
    rng_init(&c->r, 42);
    int cuda = backend_kind(be) == BACKEND_CUDA;
    c->atol = cuda ? 1e-4f : 2e-5f;
    c->rtol = cuda ? 1e-3f : 2e-4f;
}

static void ctx_free(Ctx *c) {
    for (int i = 0; i < c->n_dev; i++)
        backend_tensor_free(c->be, &c->dev[i]);
    for (int i = 0; i < c->n_host; i++)
        free(c->host[i]);
    c->n_dev = c->n_host = 0;
}

static float *keep(Ctx *c, float *p) {
    cr_assert(c->n_host < MAXT);
    c->host[c->n_host++] = p;
    return p;
}

/* n random host floats (std 1), zeros, or a copy. */
static float *H(Ctx *c, size_t n) {
    float *p = keep(c, calloc(n ? n : 1, sizeof(float)));
    rng_fill_normal(&c->r, p, n, 0.0f, 1.0f);
    return p;
}
static float *Hcopy(Ctx *c, const float *s, size_t n) {
    float *p = keep(c, calloc(n ? n : 1, sizeof(float)));
    memcpy(p, s, n * sizeof(float));
    return p;
}
/* A host copy of h rounded through dtype (what a half weight holds, widened back). */
static float *Hround(Ctx *c, const float *h, size_t n, DType dt) {
    float *p = Hcopy(c, h, n);
    if (dt != DTYPE_F32) {
        uint16_t *t = malloc(n * 2 + 2);
        dtype_from_f32(t, dt, h, n);
        dtype_to_f32(p, t, dt, n);
        free(t);
    }
    return p;
}

static size_t numel4(int nd, const int64_t *s) {
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)s[i];
    return n;
}

/* A tensor on the backend holding h (converted to dt). */
static Tensor *D(Ctx *c, const float *h, DType dt, int nd, const int64_t *shape) {
    cr_assert(c->n_dev < MAXT);
    Tensor *t = &c->dev[c->n_dev++];
    *t = backend_tensor_new(c->be, dt, nd, shape);
    size_t n = numel4(nd, shape);
    void *tmp = malloc(n * 4 + 4);
    dtype_from_f32(tmp, dt, h, n);
    Tensor src = tensor_view_dtype(tmp, dt, nd, shape);
    backend_upload(c->be, t, &src);
    free(tmp);
    return t;
}
#define S(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof(S(__VA_ARGS__)) / sizeof(int64_t)))
#define DT(h, dt, ...) D(c, h, dt, NDIM(__VA_ARGS__), S(__VA_ARGS__))
#define DF(h, ...) DT(h, DTYPE_F32, __VA_ARGS__)

/* Download t and compare with want (n floats). */
static void expect(Ctx *c, const char *what, const Tensor *t, const float *want) {
    size_t n = (size_t)tensor_numel(t);
    float *got = calloc(n ? n : 1, sizeof(float));
    Tensor h = tensor_view_dtype(got, DTYPE_F32, t->n_dims, t->shape);
    backend_download(c->be, &h, t);
    Err err = {0};
    if (backend_sync(c->be, &err)) {
        cr_log_error("%s: %s", what, err.msg);
        c->bad += 1000;
        free(got);
        return;
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(got[i] - want[i]);
        if (!(d <= c->atol + c->rtol * fmaxf(fabsf(got[i]), fabsf(want[i])))) {
            if (bad < 3 && !c->quiet)
                cr_log_error("%s on %s: element %zu is %.7g, reference %.7g", what,
                             backend_name(c->be), i, got[i], want[i]);
            bad++;
        }
    }
    c->bad += bad;
    free(got);
}

/* ---- op cases: forward and backward against the nn_* reference ----------------------------- */

static void case_linear(Ctx *c, DType wdt) {
    int N = 5, C = 70, OC = 67; /* OC crosses the CPU backend's 64-row weight tile */
    float *x = H(c, N * C), *w = H(c, OC * C), *b = H(c, OC), *dout = H(c, N * OC);
    float *wr = Hround(c, w, OC * C, wdt);
    float *dx0 = H(c, N * C), *dw0 = H(c, OC * C), *db0 = H(c, OC);
    Tensor *tx = DF(x, N, C), *tw = DT(w, wdt, OC, C), *tb = DF(b, OC), *to = DF(x, N, OC);
    Tensor *tdo = DF(dout, N, OC), *tdx = DF(dx0, N, C), *tdw = DF(dw0, OC, C), *tdb = DF(db0, OC);
    float *ref = H(c, N * OC);
    nn_linear_forward(ref, x, wr, b, N, C, OC);
    backend_linear_forward(c->be, to, tx, tw, tb);
    expect(c, "linear_forward", to, ref);
    nn_linear_forward(ref, x, wr, NULL, N, C, OC);
    backend_linear_forward(c->be, to, tx, tw, NULL);
    expect(c, "linear_forward without bias", to, ref);
    float *rdx = Hcopy(c, dx0, N * C), *rdw = Hcopy(c, dw0, OC * C), *rdb = Hcopy(c, db0, OC);
    nn_linear_backward(rdx, rdw, rdb, dout, x, wr, N, C, OC);
    backend_linear_backward(c->be, tdx, tdw, tdb, tdo, tx, tw);
    expect(c, "linear_backward dinp", tdx, rdx);
    expect(c, "linear_backward dweight", tdw, rdw);
    expect(c, "linear_backward dbias", tdb, rdb);
    nn_linear_backward(rdx, NULL, NULL, dout, x, wr, N, C, OC); /* NULL gradients skipped */
    backend_linear_backward(c->be, tdx, NULL, NULL, tdo, tx, tw);
    expect(c, "linear_backward dinp only", tdx, rdx);
    expect(c, "linear_backward skipped dweight", tdw, rdw);
}

static void case_matmul(Ctx *c) {
    int M = 6, K = 9, N = 11;
    float *a = H(c, M * K), *b = H(c, K * N), *dout = H(c, M * N), *da0 = H(c, M * K),
          *db0 = H(c, K * N), *ref = H(c, M * N);
    Tensor *ta = DF(a, M, K), *tb = DF(b, K, N), *to = DF(ref, M, N), *tdo = DF(dout, M, N),
           *tda = DF(da0, M, K), *tdb = DF(db0, K, N);
    nn_matmul_forward(ref, a, b, M, K, N);
    backend_matmul_forward(c->be, to, ta, tb);
    expect(c, "matmul_forward", to, ref);
    float *rda = Hcopy(c, da0, M * K), *rdb = Hcopy(c, db0, K * N);
    nn_matmul_backward(rda, rdb, dout, a, b, M, K, N);
    backend_matmul_backward(c->be, tda, tdb, tdo, ta, tb);
    expect(c, "matmul_backward da", tda, rda);
    expect(c, "matmul_backward db", tdb, rdb);
}

/* N >= 64 has the CUDA op code sum the parameter gradients in chunks of rows (gpu/kern_norm.h) */
static void case_layernorm(Ctx *c, int affine, int N) {
    int C = 45;
    float *x = H(c, N * C), *w = H(c, C), *b = H(c, C), *dout = H(c, N * C);
    float *ro = H(c, N * C), *rm = H(c, N), *rr = H(c, N);
    float *dx0 = H(c, N * C), *dw0 = H(c, C), *db0 = H(c, C);
    Tensor *tx = DF(x, N, C), *tw = affine ? DF(w, C) : NULL, *tb = affine ? DF(b, C) : NULL;
    Tensor *to = DF(ro, N, C), *tm = DF(rm, N), *tr = DF(rr, N), *tdo = DF(dout, N, C);
    Tensor *tdx = DF(dx0, N, C), *tdw = DF(dw0, C), *tdb = DF(db0, C);
    nn_layernorm_forward(ro, rm, rr, x, affine ? w : NULL, affine ? b : NULL, N, C, 1e-3f);
    backend_layernorm_forward(c->be, to, tm, tr, tx, tw, tb, 1e-3f);
    expect(c, "layernorm_forward", to, ro);
    expect(c, "layernorm_forward mean", tm, rm);
    expect(c, "layernorm_forward rstd", tr, rr);
    float *rdx = Hcopy(c, dx0, N * C), *rdw = Hcopy(c, dw0, C), *rdb = Hcopy(c, db0, C);
    nn_layernorm_backward(rdx, affine ? rdw : NULL, affine ? rdb : NULL, dout, x,
                          affine ? w : NULL, rm, rr, N, C);
    backend_layernorm_backward(c->be, tdx, affine ? tdw : NULL, affine ? tdb : NULL, tdo, tx, tw,
                               tm, tr);
    expect(c, "layernorm_backward dinp", tdx, rdx);
    expect(c, "layernorm_backward dweight", tdw, rdw);
    expect(c, "layernorm_backward dbias", tdb, rdb);
}

static void case_groupnorm(Ctx *c) {
    int B = 2, C = 12, Hh = 3, W = 5, G = 4, HW = Hh * W;
    size_t n = (size_t)B * C * HW;
    float *x = H(c, n), *w = H(c, C), *b = H(c, C), *dout = H(c, n);
    float *ro = H(c, n), *rm = H(c, B * G), *rr = H(c, B * G);
    float *dx0 = H(c, n), *dw0 = H(c, C), *db0 = H(c, C);
    Tensor *tx = DF(x, B, C, Hh, W), *tw = DF(w, C), *tb = DF(b, C), *to = DF(ro, B, C, Hh, W);
    Tensor *tm = DF(rm, B, G), *tr = DF(rr, B, G), *tdo = DF(dout, B, C, Hh, W);
    Tensor *tdx = DF(dx0, B, C, Hh, W), *tdw = DF(dw0, C), *tdb = DF(db0, C);
    nn_groupnorm_forward(ro, rm, rr, x, w, b, B, C, HW, G, 1e-5f);
    backend_groupnorm_forward(c->be, to, tm, tr, tx, tw, tb, G, 1e-5f);
    expect(c, "groupnorm_forward", to, ro);
    expect(c, "groupnorm_forward rstd", tr, rr);
    float *rdx = Hcopy(c, dx0, n), *rdw = Hcopy(c, dw0, C), *rdb = Hcopy(c, db0, C);
    nn_groupnorm_backward(rdx, rdw, rdb, dout, x, w, rm, rr, B, C, HW, G);
    backend_groupnorm_backward(c->be, tdx, tdw, tdb, tdo, tx, tw, tm, tr, G);
    expect(c, "groupnorm_backward dinp", tdx, rdx);
    expect(c, "groupnorm_backward dweight", tdw, rdw);
    expect(c, "groupnorm_backward dbias", tdb, rdb);
}

static void case_softmax(Ctx *c) {
    int N = 5, C = 33;
    float *x = H(c, N * C), *dout = H(c, N * C), *ro = H(c, N * C), *dx0 = H(c, N * C);
    Tensor *tx = DF(x, N, C), *to = DF(ro, N, C), *tdo = DF(dout, N, C), *tdx = DF(dx0, N, C);
    nn_softmax_forward(ro, x, N, C);
    backend_softmax_forward(c->be, to, tx);
    expect(c, "softmax_forward", to, ro);
    float *rdx = Hcopy(c, dx0, N * C);
    nn_softmax_backward(rdx, dout, ro, N, C);
    backend_softmax_backward(c->be, tdx, tdo, to);
    expect(c, "softmax_backward", tdx, rdx);
}

static void case_act(Ctx *c, BackendAct act) {
    int n = 301;
    float *x = H(c, n), *dout = H(c, n), *ro = H(c, n), *dx0 = H(c, n);
    Tensor *tx = DF(x, 7, 43), *to = DF(ro, 7, 43), *tdo = DF(dout, 7, 43), *tdx = DF(dx0, 7, 43);
    float *rdx = Hcopy(c, dx0, n);
    if (act == BACKEND_ACT_SILU) {
        nn_silu_forward(ro, x, n);
        nn_silu_backward(rdx, dout, x, n);
    } else if (act == BACKEND_ACT_QUICKGELU) {
        nn_quickgelu_forward(ro, x, n);
        nn_quickgelu_backward(rdx, dout, x, n);
    } else {
        NnGelu m = act == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF;
        nn_gelu_mode_forward(ro, x, n, m);
        nn_gelu_mode_backward(rdx, dout, x, n, m);
    }
    backend_act_forward(c->be, act, to, tx);
    expect(c, "act_forward", to, ro);
    backend_act_backward(c->be, act, tdx, tdo, tx);
    expect(c, "act_backward", tdx, rdx);
}

static void case_geglu(Ctx *c, BackendAct g) {
    int N = 6, C = 10;
    NnGelu m = g == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF;
    float *x = H(c, N * 2 * C), *dout = H(c, N * C), *ro = H(c, N * C), *dx0 = H(c, N * 2 * C);
    Tensor *tx = DF(x, N, 2 * C), *to = DF(ro, N, C), *tdo = DF(dout, N, C),
           *tdx = DF(dx0, N, 2 * C);
    nn_geglu_forward(ro, x, N, C, m);
    backend_geglu_forward(c->be, g, to, tx);
    expect(c, "geglu_forward", to, ro);
    float *rdx = Hcopy(c, dx0, N * 2 * C);
    nn_geglu_backward(rdx, dout, x, N, C, m);
    backend_geglu_backward(c->be, g, tdx, tdo, tx);
    expect(c, "geglu_backward", tdx, rdx);
}

static void case_conv2d(Ctx *c, DType wdt, int K, int stride, int pad) {
    ConvShape s = {2, 5, 9, 8, 6, K, stride, pad};
    int Ho = nn_conv2d_out_h(&s), Wo = nn_conv2d_out_w(&s);
    size_t ni = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * K * K,
           no = (size_t)s.B * s.OC * Ho * Wo;
    float *x = H(c, ni), *w = H(c, nw), *b = H(c, s.OC), *dout = H(c, no), *ro = H(c, no);
    float *wr = Hround(c, w, nw, wdt);
    float *dx0 = H(c, ni), *dw0 = H(c, nw), *db0 = H(c, s.OC);
    size_t ns = nn_conv2d_scratch_floats(&s);
    float *sc = H(c, ns ? ns : 1);
    Tensor *tx = DF(x, s.B, s.C, s.H, s.W), *tw = DT(w, wdt, s.OC, s.C, K, K), *tb = DF(b, s.OC);
    Tensor *to = DF(ro, s.B, s.OC, Ho, Wo), *tdo = DF(dout, s.B, s.OC, Ho, Wo);
    Tensor *tdx = DF(dx0, s.B, s.C, s.H, s.W), *tdw = DF(dw0, s.OC, s.C, K, K),
           *tdb = DF(db0, s.OC);
    nn_conv2d_forward(ro, sc, x, wr, b, &s);
    backend_conv2d_forward(c->be, to, tx, tw, tb, stride, pad);
    expect(c, "conv2d_forward", to, ro);
    float *rdx = Hcopy(c, dx0, ni), *rdw = Hcopy(c, dw0, nw), *rdb = Hcopy(c, db0, s.OC);
    nn_conv2d_backward(rdx, rdw, rdb, sc, dout, x, wr, &s);
    backend_conv2d_backward(c->be, tdx, tdw, tdb, tdo, tx, tw, stride, pad);
    expect(c, "conv2d_backward dinp", tdx, rdx);
    expect(c, "conv2d_backward dweight", tdw, rdw);
    expect(c, "conv2d_backward dbias", tdb, rdb);
}

/* t (any dtype, on the backend) widened to f32 on the backend, then compared. */
static void expect_dt(Ctx *c, const char *what, const Tensor *t, const float *want) {
    if (t->dtype == DTYPE_F32) {
        expect(c, what, t, want);
        return;
    }
    Tensor *f = D(c, want, DTYPE_F32, t->n_dims, t->shape);
    backend_convert(c->be, f, t);
    expect(c, what, f, want);
}

/* t's values as f32 on the host (kept by c). */
static float *Hget(Ctx *c, const Tensor *t) {
    size_t n = (size_t)tensor_numel(t);
    float *h = H(c, n);
    Tensor *f = D(c, h, DTYPE_F32, t->n_dims, t->shape);
    backend_convert(c->be, f, t);
    Tensor v = tensor_view_dtype(h, DTYPE_F32, t->n_dims, t->shape);
    backend_download(c->be, &v, f);
    return h;
}

/* Attention with activations of dtype dt against nn_flash in f32 on the same (rounded)
 * inputs; a half result within a few units in the last place of dt. */
static void case_attention(Ctx *c, int causal, int masked, DType dt) {
    int B = 2, NH = 3, hd = 8, Tq = 5, Tk = masked ? 7 : 5, C = NH * hd;
    static const int key_len[2] = {7, 4};
    BackendAttn a = {NH, 0.0f, causal, masked ? key_len : NULL};
    FlashAttn f = {B, NH, Tq, Tk, hd, 0, 0, 0, 0, 0.0f, causal, a.key_len, 0};
    float atol = c->atol, rtol = c->rtol;
    if (dt != DTYPE_F32) { /* 2 ulp of dt at 1, relative 1 ulp */
        c->atol = dt == DTYPE_F16 ? 2.0f / 1024 : 2.0f / 128;
        c->rtol = dt == DTYPE_F16 ? 1.0f / 1024 : 1.0f / 128;
    }
    float *q = H(c, B * Tq * C), *k = H(c, B * Tk * C), *v = H(c, B * Tk * C);
    float *ro = H(c, B * Tq * C), *rl = H(c, B * NH * Tq), *dout = H(c, B * Tq * C);
    float *dq0 = H(c, B * Tq * C), *dk0 = H(c, B * Tk * C), *dv0 = H(c, B * Tk * C);
    float *qr = Hround(c, q, B * Tq * C, dt), *kr = Hround(c, k, B * Tk * C, dt),
          *vr = Hround(c, v, B * Tk * C, dt), *gr = Hround(c, dout, B * Tq * C, dt);
    Tensor *tq = DT(q, dt, B, Tq, C), *tk = DT(k, dt, B, Tk, C), *tv = DT(v, dt, B, Tk, C);
    Tensor *to = DT(ro, dt, B, Tq, C), *tl = DF(rl, B, NH, Tq), *tdo = DT(dout, dt, B, Tq, C);
    Tensor *tdq = DT(dq0, dt, B, Tq, C), *tdk = DT(dk0, dt, B, Tk, C), *tdv = DT(dv0, dt, B, Tk, C);
    nn_flash_forward(ro, rl, qr, kr, vr, &f);
    backend_attention_forward(c->be, to, tl, tq, tk, tv, &a);
    expect_dt(c, "attention_forward", to, ro);
    expect(c, "attention_forward lse", tl, rl);
    /* the backward reads the backend's own o, as a model would; so does the reference */
    float *og = Hget(c, to);
    float *rdq = Hround(c, dq0, B * Tq * C, dt), *rdk = Hround(c, dk0, B * Tk * C, dt),
          *rdv = Hround(c, dv0, B * Tk * C, dt);
    nn_flash_backward(rdq, rdk, rdv, gr, qr, kr, vr, og, rl, &f);
    backend_attention_backward(c->be, tdq, tdk, tdv, tdo, tq, tk, tv, to, tl, &a);
    expect_dt(c, "attention_backward dq", tdq, rdq);
    expect_dt(c, "attention_backward dk", tdk, rdk);
    expect_dt(c, "attention_backward dv", tdv, rdv);
    c->atol = atol, c->rtol = rtol;
}

static void case_resample_concat_mse(Ctx *c) {
    int B = 2, Ca = 3, Cb = 2, Hh = 3, W = 4, HW = Hh * W;
    size_t na = (size_t)B * Ca * HW, nb = (size_t)B * Cb * HW, nc = na + nb;
    float *x = H(c, na), *up = H(c, na * 4), *dup = H(c, na * 4), *dx0 = H(c, na);
    Tensor *tx = DF(x, B, Ca, Hh, W), *tu = DF(up, B, Ca, 2 * Hh, 2 * W),
           *tdu = DF(dup, B, Ca, 2 * Hh, 2 * W), *tdx = DF(dx0, B, Ca, Hh, W);
    nn_upsample2x_forward(up, x, B, Ca, Hh, W);
    backend_upsample2x_forward(c->be, tu, tx);
    expect(c, "upsample2x_forward", tu, up);
    float *rdx = Hcopy(c, dx0, na);
    nn_upsample2x_backward(rdx, dup, B, Ca, Hh, W);
    backend_upsample2x_backward(c->be, tdx, tdu);
    expect(c, "upsample2x_backward", tdx, rdx);

    float *a = H(c, na), *b = H(c, nb), *cat = H(c, nc), *dcat = H(c, nc);
    float *da0 = H(c, na), *db0 = H(c, nb), *dc0 = H(c, nc);
    Tensor *ta = DF(a, B, Ca, Hh, W), *tb = DF(b, B, Cb, Hh, W), *tc = DF(cat, B, Ca + Cb, Hh, W);
    Tensor *tdc = DF(dcat, B, Ca + Cb, Hh, W), *tda = DF(da0, B, Ca, Hh, W),
           *tdb = DF(db0, B, Cb, Hh, W), *tdc0 = DF(dc0, B, Ca + Cb, Hh, W);
    nn_channel_concat_forward(cat, a, b, B, Ca, Cb, HW);
    backend_concat_forward(c->be, tc, ta, tb);
    expect(c, "concat_forward", tc, cat);
    float *rda = Hcopy(c, da0, na), *rdb = Hcopy(c, db0, nb);
    nn_channel_concat_backward(rda, rdb, dcat, B, Ca, Cb, HW);
    backend_concat_backward(c->be, tda, tdb, tdc);
    expect(c, "concat_backward da", tda, rda);
    expect(c, "concat_backward db", tdb, rdb);
    float *sa = Hcopy(c, a, na), *sb = Hcopy(c, b, nb);
    nn_channel_split_forward(sa, sb, dcat, B, Ca, Cb, HW);
    backend_split_forward(c->be, ta, tb, tdc);
    expect(c, "split_forward a", ta, sa);
    expect(c, "split_forward b", tb, sb);
    float *rdc = Hcopy(c, dc0, nc);
    nn_channel_split_backward(rdc, NULL, sb, B, Ca, Cb, HW);
    backend_split_backward(c->be, tdc0, NULL, tb); /* da NULL: no gradient reached part a */
    expect(c, "split_backward (db only)", tdc0, rdc);

    float *t = H(c, na), *loss = H(c, 1), *dp0 = H(c, na), *dt0 = H(c, na);
    Tensor *tt = DF(t, B, Ca, Hh, W), *tloss = DF(loss, 1), *tdp = DF(dp0, B, Ca, Hh, W),
           *tdt = DF(dt0, B, Ca, Hh, W);
    loss[0] = nn_mse_loss_forward(x, t, na);
    backend_mse_forward(c->be, tloss, tx, tt);
    expect(c, "mse_forward", tloss, loss);
    float *rdp = Hcopy(c, dp0, na), *rdt = Hcopy(c, dt0, na);
    nn_mse_loss_backward(rdp, rdt, 0.7f, x, t, na);
    backend_mse_backward(c->be, tdp, tdt, 0.7f, tx, tt);
    expect(c, "mse_backward dpred", tdp, rdp);
    expect(c, "mse_backward dtarget", tdt, rdt);
}

static void case_adamw(Ctx *c) {
    int n = 1000;
    float *p = H(c, n), *g = H(c, n), *m = H(c, n), *v = H(c, n);
    for (int i = 0; i < n; i++)
        v[i] = fabsf(v[i]);
    Tensor *tp = DF(p, n), *tg = DF(g, n), *tm = DF(m, n), *tv = DF(v, n);
    AdamWConfig cfg = optim_adamw_defaults();
    for (int t = 1; t <= 3; t++) {
        optim_adamw_step(p, g, m, v, n, t, 1e-2f, &cfg, 0);
        backend_adamw(c->be, tp, tg, tm, tv, t, 1e-2f, &cfg);
    }
    expect(c, "adamw param", tp, p);
    expect(c, "adamw m", tm, m);
    expect(c, "adamw v", tv, v);
}

/* ops of the reward model: strided GEMM, ReLU, dropout, scale, add */
static void case_reward_ops(Ctx *c) {
    /* c (5 of 7 columns, from element 3) = a (6x9 block, lda 11)ᵀ... in both trans settings */
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++) {
            int M = 5, N = 4, K = 6, lda = 11, ldb = 9, ldc = 7;
            size_t ao = 2, bo = 1, co = 3;
            size_t na = ao + (size_t)(ta ? K : M) * lda, nb = bo + (size_t)(tb ? N : K) * ldb,
                   nc = co + (size_t)M * ldc;
            float *a = H(c, na), *b = H(c, nb), *c0 = H(c, nc), *ref = Hcopy(c, c0, nc);
            Tensor *tA = DF(a, (int64_t)na), *tB = DF(b, (int64_t)nb), *tC = DF(c0, (int64_t)nc);
            float beta = tb ? 1.0f : 0.0f;
            nn_gemm(ta, tb, M, N, K, a + ao, lda, b + bo, ldb, beta, ref + co, ldc);
            BackendGemm g = {ta, tb, M, N, K, ao, bo, co, lda, ldb, ldc, beta};
            backend_gemm(c->be, tC, tA, tB, &g);
            expect(c, "gemm (strided, offsets)", tC, ref);
        }
    int n = 700; /* over two blocks of the kernels */
    float *x = H(c, n), *y = H(c, n), *g = H(c, n), *d0 = H(c, n), *ref = H(c, n);
    Tensor *tx = DF(x, 7, 100), *ty = DF(y, 7, 100), *to = DF(ref, 7, 100), *tg = DF(g, 7, 100),
           *td = DF(d0, 7, 100);
    nn_relu_forward(ref, x, (size_t)n);
    backend_relu_forward(c->be, to, tx);
    expect(c, "relu_forward", to, ref);
    float *rd = Hcopy(c, d0, n);
    nn_relu_backward(rd, g, ref, (size_t)n);
    backend_relu_backward(c->be, td, tg, to);
    expect(c, "relu_backward", td, rd);
    backend_relu_forward(c->be, tx, tx); /* in place */
    expect(c, "relu_forward in place", tx, ref);
    float *xs = Hcopy(c, ref, n);
    for (int k = 0; k < 2; k++) {
        float p = k ? 0.3f : 0.0f;
        uint64_t seed = 99 + (uint64_t)k;
        nn_dropout_forward(xs, ref, p, seed, (size_t)n);
        backend_dropout_forward(c->be, ty, tx, p, seed);
        expect(c, "dropout_forward", ty, xs);
        nn_dropout_backward(rd, g, p, seed, (size_t)n);
        backend_dropout_backward(c->be, td, tg, p, seed);
        expect(c, "dropout_backward", td, rd);
    }
    nn_scale_forward(xs, g, -1.75f, (size_t)n);
    backend_scale(c->be, ty, tg, -1.75f);
    expect(c, "scale", ty, xs);
    nn_add_forward(xs, xs, g, (size_t)n);
    backend_add(c->be, ty, ty, tg); /* in place */
    expect(c, "add", ty, xs);
}

/* ---- ops of CLIP: add, add_rows, gather_rows, l2norm (forward only) ----------------------- */

static void case_clip_ops(Ctx *c) {
    int B = 3, T = 4, C = 10, N = B * T, V = 7;
    float *a = H(c, N * C), *b = H(c, N * C), *pos = H(c, T * C), *ref = H(c, N * C);
    Tensor *ta = DF(a, N, C), *tb = DF(b, N, C), *tp = DF(pos, T, C), *to = DF(ref, N, C);
    nn_add_forward(ref, a, b, (size_t)N * C);
    backend_add(c->be, to, ta, tb);
    expect(c, "add", to, ref);
    backend_add(c->be, ta, ta, tb); /* in place, as the residual stream */
    expect(c, "add in place", ta, ref);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++)
            ref[n * C + i] = b[n * C + i] + pos[(n % T) * C + i];
    backend_add_rows(c->be, to, tb, tp);
    expect(c, "add_rows", to, ref);
    static const int idx[5] = {6, -1, 0, 3, 6};
    for (int dt = DTYPE_F32; dt <= DTYPE_BF16; dt++) {
        float *tab = H(c, V * C), *g = H(c, 5 * C);
        float *tr = Hround(c, tab, V * C, (DType)dt);
        Tensor *tt = DT(tab, (DType)dt, V, C), *tg = DF(g, 5, C);
        for (int m = 0; m < 5; m++)
            for (int i = 0; i < C; i++)
                g[m * C + i] = idx[m] < 0 ? 0.0f : tr[idx[m] * C + i];
        backend_gather_rows(c->be, tg, tt, idx);
        expect(c, "gather_rows", tg, g);
    }
    float *x = H(c, N * C), *nr = H(c, N), *l2 = H(c, N * C);
    x[5 * C + 3] = 40.0f; /* rows of different norms; one tiny row meets eps */
    for (int i = 0; i < C; i++)
        x[7 * C + i] = 1e-9f;
    Tensor *tx = DF(x, N, C), *tn = DF(nr, N), *tl = DF(l2, N, C);
    nn_l2norm_forward(l2, nr, x, N, C, 1e-6f);
    backend_l2norm_forward(c->be, tl, tn, tx, 1e-6f);
    expect(c, "l2norm_forward", tl, l2);
    expect(c, "l2norm_forward norm", tn, nr);
    backend_l2norm_forward(c->be, tx, NULL, tx, 1e-6f); /* in place, no norm */
    expect(c, "l2norm_forward in place", tx, l2);
}

/* Every case on be; returns the mismatching elements. */
static int run_all_cases(Backend *be, int quiet) {
    Ctx c;
    ctx_init(&c, be);
    c.quiet = quiet;
    /* the emulated backend starts a host thread per GPU thread: there, the half-weight
     * variants of conv2d (the same kernels after one conversion) run on one shape only */
    int emu = strncmp(backend_name(be), "emu", 3) == 0;
    for (int dt = DTYPE_F32; dt <= DTYPE_BF16; dt++) {
        case_linear(&c, (DType)dt);
        case_conv2d(&c, (DType)dt, 3, 1, 1);
        if (!emu || dt == DTYPE_F32) {
            case_conv2d(&c, (DType)dt, 3, 2, 1);
            case_conv2d(&c, (DType)dt, 1, 1, 0);
        }
        ctx_free(&c);
    }
    case_matmul(&c);
    case_layernorm(&c, 1, 7);
    case_layernorm(&c, 0, 7);
    ctx_free(&c);
    case_layernorm(&c, 1, 70);
    case_groupnorm(&c);
    case_softmax(&c);
    ctx_free(&c);
    case_act(&c, BACKEND_ACT_GELU);
    case_act(&c, BACKEND_ACT_GELU_TANH);
    case_act(&c, BACKEND_ACT_SILU);
    case_act(&c, BACKEND_ACT_QUICKGELU);
    case_geglu(&c, BACKEND_ACT_GELU);
    case_geglu(&c, BACKEND_ACT_GELU_TANH);
    ctx_free(&c);
    case_attention(&c, 0, 0, DTYPE_F32);
    case_attention(&c, 1, 0, DTYPE_F32);
    case_attention(&c, 0, 1, DTYPE_F32);
    ctx_free(&c);
    case_attention(&c, 1, 1, DTYPE_F16);
    case_attention(&c, 0, 1, DTYPE_BF16);
    ctx_free(&c);
    case_resample_concat_mse(&c);
    ctx_free(&c);
    case_adamw(&c);
    ctx_free(&c);
    case_reward_ops(&c);
    case_clip_ops(&c); /* ops of CLIP */
    ctx_free(&c);
    return c.bad;
}

static Backend *open_cpu(int threads) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig cfg = {threads, 0};
    cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0, "%s", err.msg);
    return be;
}

Test(nn_backend_ops, cpu_every_op_and_dtype_matches_the_reference) {
    for (int threads = 1; threads <= 3; threads += 2) {
        Backend *be = open_cpu(threads);
        cr_expect_eq(run_all_cases(be, 0), 0, "mismatches on %s", backend_name(be));
        backend_close(be);
    }
}

Test(nn_backend_ops, cuda_every_op_and_dtype_matches_the_cpu) {
    CudaDevice devs[4];
    int n = 0;
    char why[256];
    cuda_probe(devs, 4, &n, why, sizeof why);
    if (n == 0)
        cr_skip_test("no CUDA backend here: %s", why);
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_open("cuda:0", NULL, &be, NULL, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(backend_kind(be), BACKEND_CUDA);
    cr_expect_eq(run_all_cases(be, 0), 0, "mismatches on %s", backend_name(be));
    backend_close(be);
}

Test(nn_backend_ops, cuda_op_code_on_the_host_harness_matches_the_cpu) {
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_emu_open(NULL, &be, &err), 0, "%s", err.msg);
    cr_expect_eq(run_all_cases(be, 0), 0, "mismatches on %s", backend_name(be));
    backend_close(be);
}

/* ---- a wrong op must be caught --------------------------------------------------------------- */

/* GELU a hair off (1e-3 relative): the kind of slip a kernel rewrite makes. */
static void wrong_act_forward(Backend *be, BackendAct act, CT *out, CT *inp) {
    backend_cpu_ops.act_forward(be, act, out, inp);
    float *o = out->ptr;
    for (int64_t i = 0; i < tensor_numel(out); i++)
        o[i] *= 1.001f;
}

/* A backward that OVERWRITES dinp instead of adding into it (the rule the relu kernel broke). */
static void wrong_softmax_backward(Backend *be, CT *dinp, CT *dout, CT *out) {
    memset(dinp->ptr, 0, tensor_nbytes(dinp));
    backend_cpu_ops.softmax_backward(be, dinp, dout, out);
}

Test(nn_backend_ops, a_wrong_op_in_the_table_is_caught) {
    BackendOps bad1 = backend_cpu_ops, bad2 = backend_cpu_ops;
    bad1.act_forward = wrong_act_forward;
    bad2.softmax_backward = wrong_softmax_backward;
    Backend *be = open_cpu(1);
    cr_expect_eq(run_all_cases(be, 0), 0, "the real table passes");
    be->ops = &bad1;
    cr_expect_gt(run_all_cases(be, 1), 0, "a 0.1%% error in GELU's forward must be caught");
    be->ops = &bad2;
    cr_expect_gt(run_all_cases(be, 1), 0, "an overwriting backward must be caught");
    be->ops = &backend_cpu_ops;
    backend_close(be);
}

/* ---- finite differences through the table ---------------------------------------------------- */

typedef struct FdCtx {
    Backend *be;
    int op;
    int64_t s[6];
} FdCtx;

static Backend *fd_be;

#define T2(p, a, b) tensor_2d(p, a, b)
#define T4(p, a, b, c2, d) tensor_4d(p, a, b, c2, d)

enum { FD_LINEAR, FD_MATMUL, FD_LN, FD_GN, FD_SOFTMAX, FD_GELU, FD_GELU_TANH, FD_SILU,
       FD_QUICKGELU, FD_GEGLU,
       FD_CONV, FD_CONV_S2, FD_ATTN, FD_UPSAMPLE, FD_CONCAT, FD_SPLIT, FD_MSE,
       FD_RELU, FD_DROPOUT, FD_SCALE, FD_ADD, FD_N }; /* the last four: ops of the reward model */

/* shapes: small, fixed per op */
enum { N_ = 3, C_ = 4, OC_ = 5, B_ = 2, CH_ = 4, HH_ = 4, WW_ = 3, G_ = 2, T_ = 4, NH_ = 2,
       HD_ = 3 };

static float fd_tmp[8][4096];

static void fd_fwd(GradCase *gc, float *out) {
    Backend *be = fd_be;
    int op = *(int *)gc->ctx;
    float **in = gc->in;
    switch (op) {
    case FD_LINEAR: {
        Tensor x = T2(in[0], N_, C_), w = T2(in[1], OC_, C_), b = tensor_1d(in[2], OC_),
               o = T2(out, N_, OC_);
        backend_linear_forward(be, &o, &x, &w, &b);
        break;
    }
    case FD_MATMUL: {
        Tensor a = T2(in[0], N_, C_), b = T2(in[1], C_, OC_), o = T2(out, N_, OC_);
        backend_matmul_forward(be, &o, &a, &b);
        break;
    }
    case FD_LN: {
        Tensor x = T2(in[0], N_, C_), w = tensor_1d(in[1], C_), b = tensor_1d(in[2], C_),
               o = T2(out, N_, C_), m = tensor_1d(fd_tmp[0], N_), r = tensor_1d(fd_tmp[1], N_);
        backend_layernorm_forward(be, &o, &m, &r, &x, &w, &b, 1e-5f);
        break;
    }
    case FD_GN: {
        Tensor x = T4(in[0], B_, CH_, HH_, WW_), w = tensor_1d(in[1], CH_),
               b = tensor_1d(in[2], CH_), o = T4(out, B_, CH_, HH_, WW_),
               m = T2(fd_tmp[0], B_, G_), r = T2(fd_tmp[1], B_, G_);
        backend_groupnorm_forward(be, &o, &m, &r, &x, &w, &b, G_, 1e-5f);
        break;
    }
    case FD_SOFTMAX: {
        Tensor x = T2(in[0], N_, C_), o = T2(out, N_, C_);
        backend_softmax_forward(be, &o, &x);
        break;
    }
    case FD_GELU: case FD_GELU_TANH: case FD_SILU: case FD_QUICKGELU: {
        Tensor x = T2(in[0], N_, C_), o = T2(out, N_, C_);
        backend_act_forward(be, (BackendAct)(op - FD_GELU), &o, &x);
        break;
    }
    case FD_GEGLU: {
        Tensor x = T2(in[0], N_, 2 * C_), o = T2(out, N_, C_);
        backend_geglu_forward(be, BACKEND_ACT_GELU, &o, &x);
        break;
    }
    case FD_CONV: case FD_CONV_S2: {
        int st = op == FD_CONV ? 1 : 2;
        Tensor x = T4(in[0], B_, CH_, HH_, WW_), w = T4(in[1], OC_, CH_, 3, 3),
               b = tensor_1d(in[2], OC_);
        ConvShape s = {B_, CH_, HH_, WW_, OC_, 3, st, 1};
        Tensor o = T4(out, B_, OC_, nn_conv2d_out_h(&s), nn_conv2d_out_w(&s));
        backend_conv2d_forward(be, &o, &x, &w, &b, st, 1);
        break;
    }
    case FD_ATTN: {
        BackendAttn a = {NH_, 0.0f, 1, NULL};
        Tensor q = tensor_3d(in[0], B_, T_, NH_ * HD_), k = tensor_3d(in[1], B_, T_, NH_ * HD_),
               v = tensor_3d(in[2], B_, T_, NH_ * HD_), o = tensor_3d(out, B_, T_, NH_ * HD_),
               l = tensor_3d(fd_tmp[0], B_, NH_, T_);
        backend_attention_forward(be, &o, &l, &q, &k, &v, &a);
        break;
    }
    case FD_UPSAMPLE: {
        Tensor x = T4(in[0], B_, CH_, HH_, WW_), o = T4(out, B_, CH_, 2 * HH_, 2 * WW_);
        backend_upsample2x_forward(be, &o, &x);
        break;
    }
    case FD_CONCAT: {
        Tensor a = T4(in[0], B_, 1, HH_, WW_), b = T4(in[1], B_, CH_ - 1, HH_, WW_),
               o = T4(out, B_, CH_, HH_, WW_);
        backend_concat_forward(be, &o, &a, &b);
        break;
    }
    case FD_SPLIT: { /* out = [a, b] laid end to end */
        size_t na = (size_t)B_ * 1 * HH_ * WW_;
        Tensor x = T4(in[0], B_, CH_, HH_, WW_), a = T4(out, B_, 1, HH_, WW_),
               b = T4(out + na, B_, CH_ - 1, HH_, WW_);
        backend_split_forward(be, &a, &b, &x);
        break;
    }
    case FD_MSE: {
        Tensor p = T2(in[0], N_, C_), t = T2(in[1], N_, C_), l = tensor_1d(out, 1);
        backend_mse_forward(be, &l, &p, &t);
        break;
    }
    case FD_RELU: case FD_DROPOUT: case FD_SCALE: {
        Tensor x = T2(in[0], N_, C_), o = T2(out, N_, C_);
        if (op == FD_RELU)
            backend_relu_forward(be, &o, &x);
        else if (op == FD_DROPOUT)
            backend_dropout_forward(be, &o, &x, 0.4f, 5);
        else
            backend_scale(be, &o, &x, -1.5f);
        break;
    }
    case FD_ADD: {
        Tensor a = T2(in[0], N_, C_), b = T2(in[1], N_, C_), o = T2(out, N_, C_);
        backend_add(be, &o, &a, &b);
        break;
    }
    }
}

static void fd_bwd(GradCase *gc, float *out, const float *dout_c, float **din) {
    Backend *be = fd_be;
    int op = *(int *)gc->ctx;
    float **in = gc->in;
    float *dout = (float *)dout_c;
    switch (op) {
    case FD_LINEAR: {
        Tensor x = T2(in[0], N_, C_), w = T2(in[1], OC_, C_), d = T2(dout, N_, OC_),
               dx = T2(din[0], N_, C_), dw = T2(din[1], OC_, C_), db = tensor_1d(din[2], OC_);
        backend_linear_backward(be, &dx, &dw, &db, &d, &x, &w);
        break;
    }
    case FD_MATMUL: {
        Tensor a = T2(in[0], N_, C_), b = T2(in[1], C_, OC_), d = T2(dout, N_, OC_),
               da = T2(din[0], N_, C_), db = T2(din[1], C_, OC_);
        backend_matmul_backward(be, &da, &db, &d, &a, &b);
        break;
    }
    case FD_LN: {
        Tensor x = T2(in[0], N_, C_), w = tensor_1d(in[1], C_), d = T2(dout, N_, C_),
               m = tensor_1d(fd_tmp[0], N_), r = tensor_1d(fd_tmp[1], N_),
               dx = T2(din[0], N_, C_), dw = tensor_1d(din[1], C_), db = tensor_1d(din[2], C_);
        backend_layernorm_backward(be, &dx, &dw, &db, &d, &x, &w, &m, &r);
        break;
    }
    case FD_GN: {
        Tensor x = T4(in[0], B_, CH_, HH_, WW_), w = tensor_1d(in[1], CH_),
               d = T4(dout, B_, CH_, HH_, WW_), m = T2(fd_tmp[0], B_, G_),
               r = T2(fd_tmp[1], B_, G_), dx = T4(din[0], B_, CH_, HH_, WW_),
               dw = tensor_1d(din[1], CH_), db = tensor_1d(din[2], CH_);
        backend_groupnorm_backward(be, &dx, &dw, &db, &d, &x, &w, &m, &r, G_);
        break;
    }
    case FD_SOFTMAX: {
        Tensor o = T2(out, N_, C_), d = T2(dout, N_, C_), dx = T2(din[0], N_, C_);
        backend_softmax_backward(be, &dx, &d, &o);
        break;
    }
    case FD_GELU: case FD_GELU_TANH: case FD_SILU: case FD_QUICKGELU: {
        Tensor x = T2(in[0], N_, C_), d = T2(dout, N_, C_), dx = T2(din[0], N_, C_);
        backend_act_backward(be, (BackendAct)(op - FD_GELU), &dx, &d, &x);
        break;
    }
    case FD_GEGLU: {
        Tensor x = T2(in[0], N_, 2 * C_), d = T2(dout, N_, C_), dx = T2(din[0], N_, 2 * C_);
        backend_geglu_backward(be, BACKEND_ACT_GELU, &dx, &d, &x);
        break;
    }
    case FD_CONV: case FD_CONV_S2: {
        int st = op == FD_CONV ? 1 : 2;
        ConvShape s = {B_, CH_, HH_, WW_, OC_, 3, st, 1};
        Tensor x = T4(in[0], B_, CH_, HH_, WW_), w = T4(in[1], OC_, CH_, 3, 3),
               d = T4(dout, B_, OC_, nn_conv2d_out_h(&s), nn_conv2d_out_w(&s)),
               dx = T4(din[0], B_, CH_, HH_, WW_), dw = T4(din[1], OC_, CH_, 3, 3),
               db = tensor_1d(din[2], OC_);
        backend_conv2d_backward(be, &dx, &dw, &db, &d, &x, &w, st, 1);
        break;
    }
    case FD_ATTN: {
        BackendAttn a = {NH_, 0.0f, 1, NULL};
        int64_t n3[3] = {B_, T_, NH_ * HD_};
        Tensor q = tensor_view(in[0], 3, n3), k = tensor_view(in[1], 3, n3),
               v = tensor_view(in[2], 3, n3), o = tensor_view(out, 3, n3),
               d = tensor_view(dout, 3, n3), l = tensor_3d(fd_tmp[0], B_, NH_, T_),
               dq = tensor_view(din[0], 3, n3), dk = tensor_view(din[1], 3, n3),
               dv = tensor_view(din[2], 3, n3);
        backend_attention_backward(be, &dq, &dk, &dv, &d, &q, &k, &v, &o, &l, &a);
        break;
    }
    case FD_UPSAMPLE: {
        Tensor dx = T4(din[0], B_, CH_, HH_, WW_), d = T4(dout, B_, CH_, 2 * HH_, 2 * WW_);
        backend_upsample2x_backward(be, &dx, &d);
        break;
    }
    case FD_CONCAT: {
        Tensor da = T4(din[0], B_, 1, HH_, WW_), db = T4(din[1], B_, CH_ - 1, HH_, WW_),
               d = T4(dout, B_, CH_, HH_, WW_);
        backend_concat_backward(be, &da, &db, &d);
        break;
    }
    case FD_SPLIT: {
        size_t na = (size_t)B_ * 1 * HH_ * WW_;
        Tensor dx = T4(din[0], B_, CH_, HH_, WW_), da = T4(dout, B_, 1, HH_, WW_),
               db = T4(dout + na, B_, CH_ - 1, HH_, WW_);
        backend_split_backward(be, &dx, &da, &db);
        break;
    }
    case FD_MSE: {
        Tensor p = T2(in[0], N_, C_), t = T2(in[1], N_, C_), dp = T2(din[0], N_, C_),
               dt = T2(din[1], N_, C_);
        backend_mse_backward(be, &dp, &dt, dout[0], &p, &t);
        break;
    }
    case FD_RELU: {
        Tensor o = T2(out, N_, C_), d = T2(dout, N_, C_), dx = T2(din[0], N_, C_);
        backend_relu_backward(be, &dx, &d, &o);
        break;
    }
    case FD_DROPOUT: {
        Tensor d = T2(dout, N_, C_), dx = T2(din[0], N_, C_);
        backend_dropout_backward(be, &dx, &d, 0.4f, 5);
        break;
    }
    case FD_SCALE: case FD_ADD: { /* their backwards are themselves: += dout·s, += dout */
        Tensor d = T2(dout, N_, C_), t = T2(fd_tmp[2], N_, C_);
        for (int i = 0; i < (op == FD_ADD ? 2 : 1); i++) {
            Tensor dx = T2(din[i], N_, C_);
            if (op == FD_SCALE)
                backend_scale(be, &t, &d, -1.5f);
            backend_add(be, &dx, &dx, op == FD_SCALE ? &t : &d);
        }
        break;
    }
    }
}

/* Every backward of be's table by finite differences; returns the ops that failed. */
static int fd_all(Backend *be) {
    fd_be = be;
    int failed = 0;
    Rng r;
    rng_init(&r, 7);
    size_t conv_o1 = (size_t)B_ * OC_ * HH_ * WW_, conv_o2 = (size_t)B_ * OC_ * 2 * 2;
    size_t img = (size_t)B_ * CH_ * HH_ * WW_, tok = (size_t)B_ * T_ * NH_ * HD_;
    struct {
        const char *name;
        int n_in;
        size_t n[3];
        size_t n_out;
    } ops[FD_N] = {
        [FD_LINEAR] = {"linear", 3, {N_ * C_, OC_ * C_, OC_}, N_ * OC_},
        [FD_MATMUL] = {"matmul", 2, {N_ * C_, C_ * OC_}, N_ * OC_},
        [FD_LN] = {"layernorm", 3, {N_ * C_, C_, C_}, N_ * C_},
        [FD_GN] = {"groupnorm", 3, {img, CH_, CH_}, img},
        [FD_SOFTMAX] = {"softmax", 1, {N_ * C_}, N_ * C_},
        [FD_GELU] = {"gelu", 1, {N_ * C_}, N_ * C_},
        [FD_GELU_TANH] = {"gelu_tanh", 1, {N_ * C_}, N_ * C_},
        [FD_SILU] = {"silu", 1, {N_ * C_}, N_ * C_},
        [FD_QUICKGELU] = {"quickgelu", 1, {N_ * C_}, N_ * C_},
        [FD_GEGLU] = {"geglu", 1, {N_ * 2 * C_}, N_ * C_},
        [FD_CONV] = {"conv2d", 3, {img, OC_ * CH_ * 9, OC_}, conv_o1},
        [FD_CONV_S2] = {"conv2d stride 2", 3, {img, OC_ * CH_ * 9, OC_}, conv_o2},
        [FD_ATTN] = {"attention (causal)", 3, {tok, tok, tok}, tok},
        [FD_UPSAMPLE] = {"upsample2x", 1, {img}, img * 4},
        [FD_CONCAT] = {"concat", 2, {img / CH_, img / CH_ * (CH_ - 1)}, img},
        [FD_SPLIT] = {"split", 1, {img}, img},
        [FD_MSE] = {"mse", 2, {N_ * C_, N_ * C_}, 1},
        [FD_RELU] = {"relu", 1, {N_ * C_}, N_ * C_},
        [FD_DROPOUT] = {"dropout", 1, {N_ * C_}, N_ * C_},
        [FD_SCALE] = {"scale", 1, {N_ * C_}, N_ * C_},
        [FD_ADD] = {"add", 2, {N_ * C_, N_ * C_}, N_ * C_},
    };
    for (int op = 0; op < FD_N; op++) {
        GradCase gc = {0};
        gc.name = ops[op].name;
        gc.n_in = ops[op].n_in;
        for (int i = 0; i < gc.n_in; i++) {
            gc.n[i] = ops[op].n[i];
            gc.in[i] = gc_randn(&r, gc.n[i], 1.0f);
        }
        gc.n_out = ops[op].n_out;
        gc.fwd = fd_fwd;
        gc.bwd = fd_bwd;
        gc.ctx = &op;
        int bad = check_grad(&gc, 1e-2f, 2e-3f, 2e-2f);
        Err err = {0};
        if (backend_sync(be, &err)) {
            cr_log_error("%s: %s", gc.name, err.msg);
            bad++;
        }
        if (bad && !gc_quiet)
            cr_log_error("%s backward disagrees with finite differences", gc.name);
        failed += bad > 0;
    }
    gc_free_all();
    return failed;
}

Test(nn_backend_ops, every_backward_by_finite_differences) {
    Backend *be = open_cpu(2);
    cr_expect_eq(fd_all(be), 0);
    backend_close(be);
}

/* conv2d's backward forgetting the bias gradient. */
static void wrong_conv2d_backward(Backend *be, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp,
                                  CT *w, const ConvShape *s) {
    (void)db;
    backend_cpu_ops.conv2d_backward(be, dinp, dw, NULL, dout, inp, w, s);
}

Test(nn_backend_ops, finite_differences_catch_a_wrong_backward) {
    BackendOps bad = backend_cpu_ops;
    bad.conv2d_backward = wrong_conv2d_backward;
    Backend *be = open_cpu(1);
    be->ops = &bad;
    gc_quiet = 1;
    cr_expect_eq(fd_all(be), 2, "conv2d and conv2d stride 2 must fail, nothing else");
    gc_quiet = 0;
    be->ops = &backend_cpu_ops;
    backend_close(be);
}

/* ---- sticky errors, opening, arenas, pools -------------------------------------------------- */

Test(nn_backend_ops, a_failure_sticks_and_sync_reports_the_first) {
    Backend *be = open_cpu(1);
    float x[12], w[12], o[16], o2[12];
    for (int i = 0; i < 12; i++)
        x[i] = w[i] = (float)i;
    for (int i = 0; i < 16; i++)
        o[i] = -1.0f;
    Tensor tx = tensor_2d(x, 3, 4), tw = tensor_2d(w, 3, 4), bad_out = tensor_2d(o, 4, 4);
    backend_linear_forward(be, &bad_out, &tx, &tw, NULL); /* out should be (3,3) */
    cr_expect_neq(backend_failed(be), 0);
    Tensor good = tensor_2d(o2, 3, 4);
    memset(o2, 0, sizeof o2);
    backend_act_forward(be, BACKEND_ACT_SILU, &good, &tx); /* a no-op now */
    cr_expect_eq(o2[5], 0.0f, "an op after a failure must not run");
    Tensor half = tensor_view_dtype(w, DTYPE_BF16, 2, (int64_t[]){3, 4});
    backend_softmax_forward(be, &good, &half); /* a second failure: not the one reported */
    Err err = {0};
    cr_expect_eq(backend_sync(be, &err), ERR_USAGE);
    cr_expect(strstr(err.msg, "linear_forward") && strstr(err.msg, "out"), "%s", err.msg);
    cr_expect_eq(o[0], -1.0f, "the failed op wrote nothing");
    /* cleared by the sync: the backend works again */
    backend_act_forward(be, BACKEND_ACT_SILU, &good, &tx);
    cr_expect_eq(backend_sync(be, &err), 0);
    cr_expect_float_eq(o2[5], 5.0f / (1.0f + expf(-5.0f)), 1e-6f);
    /* a dtype a op does not take, then an op the table lacks */
    backend_softmax_forward(be, &good, &half);
    cr_expect_eq(backend_sync(be, &err), ERR_USAGE);
    cr_expect(strstr(err.msg, "bf16"), "%s", err.msg);
    BackendOps lacking = backend_cpu_ops;
    lacking.groupnorm_forward = NULL;
    be->ops = &lacking;
    Tensor img = tensor_4d(x, 1, 2, 2, 3), img_o = tensor_4d(o2, 1, 2, 2, 3);
    float m[2], r[2];
    Tensor tm = tensor_2d(m, 1, 2), tr = tensor_2d(r, 1, 2);
    backend_groupnorm_forward(be, &img_o, &tm, &tr, &img, NULL, NULL, 2, 1e-5f);
    cr_expect_eq(backend_sync(be, &err), ERR_USAGE);
    cr_expect(strstr(err.msg, "not implemented"), "%s", err.msg);
    be->ops = &backend_cpu_ops;
    backend_close(be);
}

/* Attention takes f32, f16 or bf16 activations, one dtype for all of them; lse stays f32. */
Test(nn_backend_ops, attention_activations_share_one_dtype) {
    Backend *be = open_cpu(1);
    uint16_t hq[2 * 4], hk[2 * 4], hv[2 * 4], ho[2 * 4];
    float fk[2 * 4], lse[2] = {0};
    memset(hq, 0, sizeof hq), memset(hk, 0, sizeof hk), memset(hv, 0, sizeof hv);
    memset(fk, 0, sizeof fk);
    const int64_t s3[3] = {1, 2, 4}, sl[3] = {1, 1, 2};
    Tensor q = tensor_view_dtype(hq, DTYPE_F16, 3, s3), k = tensor_view_dtype(hk, DTYPE_F16, 3, s3);
    Tensor v = tensor_view_dtype(hv, DTYPE_F16, 3, s3), o = tensor_view_dtype(ho, DTYPE_F16, 3, s3);
    Tensor kf = tensor_view_dtype(fk, DTYPE_F32, 3, s3), l = tensor_view_dtype(lse, DTYPE_F32, 3, sl);
    BackendAttn a = {1, 0.0f, 0, NULL};
    Err err = {0};
    backend_attention_forward(be, &o, &l, &q, &k, &v, &a); /* all f16: fine */
    cr_expect_eq(backend_sync(be, &err), 0, "%s", err.msg);
    cr_expect_float_eq(lse[0], logf(2.0f), 1e-6f, "two equal scores: lse = log 2");
    backend_attention_forward(be, &o, &l, &q, &kf, &v, &a);
    cr_expect_eq(backend_sync(be, &err), ERR_USAGE);
    cr_expect(strstr(err.msg, "attention_forward") && strstr(err.msg, "k is f32 but q is f16"),
              "%s", err.msg);
    Tensor lh = tensor_view_dtype(hv, DTYPE_BF16, 3, sl);
    backend_attention_forward(be, &o, &lh, &q, &k, &v, &a);
    cr_expect_eq(backend_sync(be, &err), ERR_USAGE);
    cr_expect(strstr(err.msg, "lse") && strstr(err.msg, "f32 only"), "%s", err.msg);
    backend_close(be);
}

/* conv2d on the CUDA op code cuts its column buffer into bands of output rows that fit the
 * arena: here one image's whole buffer (C·K²·Ho·Wo floats, 166 kB) is over the 128 kB arena,
 * one row of it (7 kB) is not. The result matches the CPU op (forward and backward). */
Test(nn_backend_ops, conv2d_columns_in_bands_fit_a_small_arena) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig cfg = {1, (size_t)128 << 10};
    cr_assert_eq(backend_emu_open(&cfg, &be, &err), 0, "%s", err.msg);
    Ctx c;
    ctx_init(&c, be);
    ConvShape s = {1, 8, 24, 24, 4, 3, 1, 1};
    int Ho = nn_conv2d_out_h(&s), Wo = nn_conv2d_out_w(&s);
    cr_assert_gt((size_t)s.C * 9 * Ho * Wo * sizeof(float), cfg.arena_bytes);
    size_t ni = (size_t)s.C * s.H * s.W, nw = (size_t)s.OC * s.C * 9, no = (size_t)s.OC * Ho * Wo;
    float *x = H(&c, ni), *w = H(&c, nw), *b = H(&c, s.OC), *dout = H(&c, no), *ro = H(&c, no);
    float *dx0 = H(&c, ni), *dw0 = H(&c, nw);
    float *sc = H(&c, nn_conv2d_scratch_floats(&s) + 1);
    Tensor *tx = D(&c, x, DTYPE_F32, 4, S(1, 8, 24, 24)), *tw = D(&c, w, DTYPE_F32, 4, S(4, 8, 3, 3));
    Tensor *tb = D(&c, b, DTYPE_F32, 1, S(4)), *to = D(&c, ro, DTYPE_F32, 4, S(1, 4, 24, 24));
    Tensor *tdo = D(&c, dout, DTYPE_F32, 4, S(1, 4, 24, 24));
    Tensor *tdx = D(&c, dx0, DTYPE_F32, 4, S(1, 8, 24, 24)), *tdw = D(&c, dw0, DTYPE_F32, 4, S(4, 8, 3, 3));
    nn_conv2d_forward(ro, sc, x, w, b, &s);
    backend_conv2d_forward(be, to, tx, tw, tb, 1, 1);
    cr_expect_eq(backend_sync(be, &err), 0, "%s", err.msg);
    expect(&c, "banded conv2d_forward", to, ro);
    float *rdx = Hcopy(&c, dx0, ni), *rdw = Hcopy(&c, dw0, nw);
    nn_conv2d_backward(rdx, rdw, NULL, sc, dout, x, w, &s);
    backend_conv2d_backward(be, tdx, tdw, NULL, tdo, tx, tw, 1, 1);
    expect(&c, "banded conv2d_backward dinp", tdx, rdx);
    expect(&c, "banded conv2d_backward dweight", tdw, rdw);
    cr_expect_eq(c.bad, 0);
    ctx_free(&c);
    backend_close(be);
}

/* The CUDA op code's linear with half activations and a weight of the same half dtype (cuBLAS
 * GemmEx with f32 compute on a device; here, on the emu backend, its fallback: both operands
 * widened, then the f32 GEMM), called through the table entry: src/engine/backend.c's checks
 * for half activations of linear belong to the half-activation work (branch halfa). */
static int half_linear_mismatches(Backend *be) {
    Ctx c;
    ctx_init(&c, be);
    int N = 5, C = 40, OC = 9;
    for (int dt = DTYPE_F16; dt <= DTYPE_BF16; dt++) {
        c.atol = dt == DTYPE_F16 ? 4.0f / 1024 : 4.0f / 128;
        c.rtol = dt == DTYPE_F16 ? 1.0f / 1024 : 1.0f / 128;
        float *x = H(&c, N * C), *w = H(&c, OC * C), *b = H(&c, OC), *ref = H(&c, N * OC);
        float *xr = Hround(&c, x, N * C, (DType)dt), *wr = Hround(&c, w, OC * C, (DType)dt);
        Tensor *tx = D(&c, x, (DType)dt, 2, S(5, 40)), *tw = D(&c, w, (DType)dt, 2, S(9, 40));
        Tensor *tb = D(&c, b, DTYPE_F32, 1, S(9)), *to = D(&c, ref, (DType)dt, 2, S(5, 9));
        nn_linear_forward(ref, xr, wr, b, N, C, OC);
        be->ops->linear_forward(be, to, tx, tw, tb);
        expect_dt(&c, "half linear_forward", to, ref);
        nn_linear_forward(ref, xr, wr, NULL, N, C, OC);
        be->ops->linear_forward(be, to, tx, tw, NULL);
        expect_dt(&c, "half linear_forward without bias", to, ref);
        ctx_free(&c);
    }
    return c.bad;
}

Test(nn_backend_ops, linear_half_inputs_and_weights_on_the_cuda_op_code) {
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_emu_open(NULL, &be, &err), 0, "%s", err.msg);
    cr_expect_eq(half_linear_mismatches(be), 0, "on %s", backend_name(be));
    backend_close(be);
    CudaDevice devs[4];
    int n = 0;
    char why[256];
    cuda_probe(devs, 4, &n, why, sizeof why);
    if (n == 0)
        return; /* cublasGemmEx itself runs only where a GPU is */
    cr_assert_eq(backend_open("cuda:0", NULL, &be, NULL, 0, &err), 0, "%s", err.msg);
    cr_expect_eq(half_linear_mismatches(be), 0, "on %s", backend_name(be));
    backend_close(be);
}

Test(nn_backend_ops, open_by_name_and_fallback) {
    Backend *be = NULL;
    Err err = {0};
    char note[256];
    cr_expect_eq(backend_open("tpu", NULL, &be, note, sizeof note, &err), ERR_USAGE);
    cr_expect(strstr(err.msg, "auto, cpu, cuda or cuda:N"), "%s", err.msg);
    cr_expect_null(be);
    cr_expect_eq(backend_open("cuda:x", NULL, &be, note, sizeof note, &err), ERR_USAGE);
    cr_expect_eq(backend_open("cpu", NULL, &be, note, sizeof note, &err), 0);
    cr_expect_eq(backend_kind(be), BACKEND_CPU);
    cr_expect_str_eq(note, "");
    cr_expect(strstr(backend_name(be), "cpu ("), "%s", backend_name(be));
    backend_close(be);
    CudaDevice devs[4];
    int n = 0;
    char why[256];
    cuda_probe(devs, 4, &n, why, sizeof why);
    const char *specs[3] = {"auto", "cuda", "cuda:1"};
    for (int i = 0; i < 3; i++) {
        int rc = backend_open(specs[i], NULL, &be, note, sizeof note, &err);
        if (n == 0) { /* no GPU: the CPU, and one line saying why when cuda was asked for */
            cr_expect_eq(rc, 0, "%s: %s", specs[i], err.msg);
            cr_expect_eq(backend_kind(be), BACKEND_CPU);
            if (i == 0)
                cr_expect_str_eq(note, "", "auto means what the machine has: nothing to say");
            else
                cr_expect(strncmp(note, specs[i], strlen(specs[i])) == 0 &&
                          strstr(note, "running on the CPU") && !strchr(note, '\n'), "%s",
                          note);
            backend_close(be);
        } else if (i < 2 || n > 1) {
            cr_expect_eq(rc, 0, "%s: %s", specs[i], err.msg);
            cr_expect_eq(backend_kind(be), BACKEND_CUDA);
            backend_close(be);
        } else {
            cr_expect_eq(rc, ERR_NOTFOUND, "cuda:1 on a one-GPU machine");
        }
    }
}

Test(nn_backend_ops, arena_mark_reset_and_running_out) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig cfg = {1, 4096};
    cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0);
    size_t mark = backend_mark(be);
    Tensor a = backend_alloc(be, DTYPE_F32, 1, (int64_t[]){256});
    Tensor h = backend_alloc(be, DTYPE_BF16, 1, (int64_t[]){512});
    cr_expect_not_null(a.ptr);
    cr_expect_not_null(h.ptr);
    cr_expect_eq(h.dtype, DTYPE_BF16);
    cr_expect_eq((char *)h.ptr - (char *)a.ptr, 1024);
    Tensor big = backend_alloc(be, DTYPE_F32, 1, (int64_t[]){4096});
    cr_expect_null(big.ptr);
    cr_expect_eq(backend_sync(be, &err), ERR_NOMEM);
    cr_expect(strstr(err.msg, "arena"), "%s", err.msg);
    backend_reset(be, mark);
    Tensor again = backend_alloc(be, DTYPE_F32, 1, (int64_t[]){256});
    cr_expect_eq(again.ptr, a.ptr, "reset hands the same memory out again");
    backend_close(be);
}

Test(nn_backend_ops, the_pool_is_the_backends_own_and_touches_no_process_state) {
    openblas_set_num_threads(2); /* what the program chose for itself */
    CpuPool *mine = backend_cpu_pool_new(2, NULL);
    backend_cpu_bind(mine); /* this thread's own choice, outside any backend */
    Backend *be = open_cpu(3);
    float x[64 * 64], w[64 * 64], o[64 * 64];
    for (int i = 0; i < 64 * 64; i++)
        x[i] = w[i] = (float)(i % 7) - 3.0f;
    Tensor tx = tensor_2d(x, 64, 64), tw = tensor_2d(w, 64, 64), to = tensor_2d(o, 64, 64);
    backend_linear_forward(be, &to, &tx, &tw, NULL);
    Err err = {0};
    cr_expect_eq(backend_sync(be, &err), 0, "%s", err.msg);
    cr_expect_eq(openblas_get_num_threads(), 2, "a Backend must not change OpenBLAS's threads");
    cr_expect_eq(backend_cpu_current(), mine, "the caller's pool choice is restored");
    double s = 0;
    for (int k = 0; k < 64; k++)
        s += (double)x[5 * 64 + k] * w[9 * 64 + k];
    cr_expect_float_eq(o[5 * 64 + 9], (float)s, 1e-3f);
    backend_close(be);
    backend_cpu_bind(NULL);
    backend_cpu_pool_free(mine);
}

/* Two jobs, two threads, two Backends at once: each gets its own pool and the right answers. */
typedef struct Job {
    int threads, bad;
} Job;

static void *job_main(void *arg) {
    Job *j = arg;
    Backend *be = NULL;
    BackendConfig cfg = {j->threads, 0};
    if (backend_open("cpu", &cfg, &be, NULL, 0, NULL)) {
        j->bad = -1;
        return NULL;
    }
    j->bad = run_all_cases(be, 0);
    backend_close(be);
    return NULL;
}

Test(nn_backend_ops, two_backends_on_two_threads_at_once) {
    Job jobs[2] = {{2, 0}, {3, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, job_main, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        cr_expect_eq(jobs[i].bad, 0, "job %d", i);
    }
}

Test(nn_backend_ops, convert_between_dtypes) {
    Backend *be = open_cpu(1);
    float src[6] = {1.0f, -2.0f, 0.3333f, 1e5f, -0.0f, 3.14159f}, back[6];
    uint16_t h[6], b[6];
    Tensor ts = tensor_1d(src, 6), th = tensor_view_dtype(h, DTYPE_F16, 1, (int64_t[]){6}),
           tb = tensor_view_dtype(b, DTYPE_BF16, 1, (int64_t[]){6}), tback = tensor_1d(back, 6);
    backend_convert(be, &th, &ts);
    backend_convert(be, &tb, &th);
    backend_convert(be, &tback, &tb);
    Err err = {0};
    cr_assert_eq(backend_sync(be, &err), 0, "%s", err.msg);
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(h[i], f32_to_f16(src[i]));
        cr_expect_eq(b[i], f32_to_bf16(f16_to_f32(h[i])));
        cr_expect_eq(back[i], bf16_to_f32(b[i]));
    }
    backend_close(be);
}

/* ---- half (f16 / bf16) activations (backend.h, DTYPES) ------------------------------------------
 * Every op that takes half activations × {F16, BF16} × backend (cpu at 1 and 3 threads, emu;
 * cuda where a GPU exists), and the same cases with F32 activations beside BF16 parameters
 * (the mixing rule's other side): the inputs are random values that the dtype holds exactly, the
 * reference is the nn_* op in f32 on those same values, and a half result must equal the
 * reference rounded to the dtype, up to one unit of the dtype's epsilon (2^-10 f16, 2^-7 bf16)
 * relative to the value, on top of the f32 comparison's own tolerance. f32 results (mean, rstd,
 * dweight, dbias) are held to the f32 tolerance. Gradients start nonzero (the gradient rule).
 * Then the refusals: ops without half activations, mixed activation dtypes, half statistics or
 * parameter gradients each fail the backend with a message naming the op, the argument and
 * the dtype. */

static float dtype_eps(DType dt) {
    return dt == DTYPE_F16 ? 0x1p-10f : dt == DTYPE_BF16 ? 0x1p-7f : 0.0f;
}

/* n random host values that dt holds exactly. */
static float *HR(Ctx *c, size_t n, DType dt) { return Hround(c, H(c, n), n, dt); }

/* Download t (any dtype), widen, and compare with want within the f32 tolerance plus one unit
 * of t's dtype epsilon relative to the value. */
static void expect_h(Ctx *c, const char *what, const Tensor *t, const float *want) {
    size_t n = (size_t)tensor_numel(t);
    void *raw = calloc(n ? n : 1, dtype_size(t->dtype));
    float *got = calloc(n ? n : 1, sizeof(float));
    Tensor h = tensor_view_dtype(raw, t->dtype, t->n_dims, t->shape);
    backend_download(c->be, &h, t);
    Err err = {0};
    if (backend_sync(c->be, &err)) {
        cr_log_error("%s (%s): %s", what, dtype_name(t->dtype), err.msg);
        c->bad += 1000;
        free(raw);
        free(got);
        return;
    }
    dtype_to_f32(got, raw, t->dtype, n);
    float rtol = c->rtol + dtype_eps(t->dtype);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(got[i] - want[i]);
        if (!(d <= c->atol + rtol * fmaxf(fabsf(got[i]), fabsf(want[i])))) {
            if (bad < 3 && !c->quiet)
                cr_log_error("%s (%s) on %s: element %zu is %.7g, reference %.7g", what,
                             dtype_name(t->dtype), backend_name(c->be), i, got[i], want[i]);
            bad++;
        }
    }
    c->bad += bad;
    free(raw);
    free(got);
}

/* Parameters (weights, biases, norm affine): f32 beside f16 activations, bf16 beside bf16
 * ones (SDXL's bf16 UNet) and beside f32 ones, so every side of the mixing rule runs. */
static DType param_dt(DType dt) { return dt == DTYPE_F16 ? DTYPE_F32 : DTYPE_BF16; }

static void hcase_linear(Ctx *c, DType dt, int N, int C, int OC) {
    DType pdt = param_dt(dt);
    float *x = HR(c, N * C, dt), *w = HR(c, OC * C, pdt), *b = HR(c, OC, pdt);
    float *dout = HR(c, N * OC, dt), *dx0 = HR(c, N * C, dt), *dw0 = H(c, OC * C),
          *db0 = H(c, OC), *ref = H(c, N * OC);
    Tensor *tx = DT(x, dt, N, C), *tw = DT(w, pdt, OC, C), *tb = DT(b, pdt, OC);
    Tensor *to = DT(ref, dt, N, OC), *tdo = DT(dout, dt, N, OC), *tdx = DT(dx0, dt, N, C);
    Tensor *tdw = DF(dw0, OC, C), *tdb = DF(db0, OC);
    nn_linear_forward(ref, x, w, b, N, C, OC);
    backend_linear_forward(c->be, to, tx, tw, tb);
    expect_h(c, "linear_forward", to, ref);
    float *rdx = Hcopy(c, dx0, N * C), *rdw = Hcopy(c, dw0, OC * C), *rdb = Hcopy(c, db0, OC);
    nn_linear_backward(rdx, rdw, rdb, dout, x, w, N, C, OC);
    backend_linear_backward(c->be, tdx, tdw, tdb, tdo, tx, tw);
    expect_h(c, "linear_backward dinp", tdx, rdx);
    expect_h(c, "linear_backward dweight", tdw, rdw);
    expect_h(c, "linear_backward dbias", tdb, rdb);
}

static void hcase_matmul(Ctx *c, DType dt, int M, int K, int N) {
    float *a = HR(c, M * K, dt), *b = HR(c, K * N, dt), *dout = HR(c, M * N, dt);
    float *da0 = HR(c, M * K, dt), *db0 = HR(c, K * N, dt), *ref = H(c, M * N);
    Tensor *ta = DT(a, dt, M, K), *tb = DT(b, dt, K, N), *to = DT(ref, dt, M, N),
           *tdo = DT(dout, dt, M, N), *tda = DT(da0, dt, M, K), *tdb = DT(db0, dt, K, N);
    nn_matmul_forward(ref, a, b, M, K, N);
    backend_matmul_forward(c->be, to, ta, tb);
    expect_h(c, "matmul_forward", to, ref);
    float *rda = Hcopy(c, da0, M * K), *rdb = Hcopy(c, db0, K * N);
    nn_matmul_backward(rda, rdb, dout, a, b, M, K, N);
    backend_matmul_backward(c->be, tda, tdb, tdo, ta, tb);
    expect_h(c, "matmul_backward da", tda, rda);
    expect_h(c, "matmul_backward db", tdb, rdb);
}

static void hcase_layernorm(Ctx *c, DType dt, int N, int C) {
    DType pdt = param_dt(dt);
    float *x = HR(c, N * C, dt), *w = HR(c, C, pdt), *b = HR(c, C, pdt), *dout = HR(c, N * C, dt);
    float *ro = H(c, N * C), *rm = H(c, N), *rr = H(c, N);
    float *dx0 = HR(c, N * C, dt), *dw0 = H(c, C), *db0 = H(c, C);
    Tensor *tx = DT(x, dt, N, C), *tw = DT(w, pdt, C), *tb = DT(b, pdt, C);
    Tensor *to = DT(ro, dt, N, C), *tm = DF(rm, N), *tr = DF(rr, N), *tdo = DT(dout, dt, N, C);
    Tensor *tdx = DT(dx0, dt, N, C), *tdw = DF(dw0, C), *tdb = DF(db0, C);
    nn_layernorm_forward(ro, rm, rr, x, w, b, N, C, 1e-5f);
    backend_layernorm_forward(c->be, to, tm, tr, tx, tw, tb, 1e-5f);
    expect_h(c, "layernorm_forward", to, ro);
    expect_h(c, "layernorm_forward mean", tm, rm);
    expect_h(c, "layernorm_forward rstd", tr, rr);
    float *rdx = Hcopy(c, dx0, N * C), *rdw = Hcopy(c, dw0, C), *rdb = Hcopy(c, db0, C);
    nn_layernorm_backward(rdx, rdw, rdb, dout, x, w, rm, rr, N, C);
    backend_layernorm_backward(c->be, tdx, tdw, tdb, tdo, tx, tw, tm, tr);
    expect_h(c, "layernorm_backward dinp", tdx, rdx);
    expect_h(c, "layernorm_backward dweight", tdw, rdw);
    expect_h(c, "layernorm_backward dbias", tdb, rdb);
}

static void hcase_groupnorm(Ctx *c, DType dt, int B, int C, int Hh, int W, int G) {
    int HW = Hh * W;
    size_t n = (size_t)B * C * HW;
    DType pdt = param_dt(dt);
    float *x = HR(c, n, dt), *w = HR(c, C, pdt), *b = HR(c, C, pdt), *dout = HR(c, n, dt);
    float *ro = H(c, n), *rm = H(c, B * G), *rr = H(c, B * G);
    float *dx0 = HR(c, n, dt), *dw0 = H(c, C), *db0 = H(c, C);
    Tensor *tx = DT(x, dt, B, C, Hh, W), *tw = DT(w, pdt, C), *tb = DT(b, pdt, C);
    Tensor *to = DT(ro, dt, B, C, Hh, W), *tm = DF(rm, B, G), *tr = DF(rr, B, G);
    Tensor *tdo = DT(dout, dt, B, C, Hh, W), *tdx = DT(dx0, dt, B, C, Hh, W);
    Tensor *tdw = DF(dw0, C), *tdb = DF(db0, C);
    nn_groupnorm_forward(ro, rm, rr, x, w, b, B, C, HW, G, 1e-5f);
    backend_groupnorm_forward(c->be, to, tm, tr, tx, tw, tb, G, 1e-5f);
    expect_h(c, "groupnorm_forward", to, ro);
    expect_h(c, "groupnorm_forward mean", tm, rm);
    expect_h(c, "groupnorm_forward rstd", tr, rr);
    float *rdx = Hcopy(c, dx0, n), *rdw = Hcopy(c, dw0, C), *rdb = Hcopy(c, db0, C);
    nn_groupnorm_backward(rdx, rdw, rdb, dout, x, w, rm, rr, B, C, HW, G);
    backend_groupnorm_backward(c->be, tdx, tdw, tdb, tdo, tx, tw, tm, tr, G);
    expect_h(c, "groupnorm_backward dinp", tdx, rdx);
    expect_h(c, "groupnorm_backward dweight", tdw, rdw);
    expect_h(c, "groupnorm_backward dbias", tdb, rdb);
}

static void hcase_act(Ctx *c, DType dt, BackendAct act, int R, int K) {
    size_t n = (size_t)R * K;
    float *x = HR(c, n, dt), *dout = HR(c, n, dt), *ro = H(c, n), *dx0 = HR(c, n, dt);
    Tensor *tx = DT(x, dt, R, K), *to = DT(ro, dt, R, K), *tdo = DT(dout, dt, R, K),
           *tdx = DT(dx0, dt, R, K);
    float *rdx = Hcopy(c, dx0, n);
    if (act == BACKEND_ACT_SILU) {
        nn_silu_forward(ro, x, n);
        nn_silu_backward(rdx, dout, x, n);
    } else if (act == BACKEND_ACT_QUICKGELU) {
        nn_quickgelu_forward(ro, x, n);
        nn_quickgelu_backward(rdx, dout, x, n);
    } else {
        NnGelu m = act == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF;
        nn_gelu_mode_forward(ro, x, n, m);
        nn_gelu_mode_backward(rdx, dout, x, n, m);
    }
    backend_act_forward(c->be, act, to, tx);
    expect_h(c, "act_forward", to, ro);
    backend_act_backward(c->be, act, tdx, tdo, tx);
    expect_h(c, "act_backward", tdx, rdx);
}

static void hcase_geglu(Ctx *c, DType dt, BackendAct g, int N, int C) {
    NnGelu m = g == BACKEND_ACT_GELU_TANH ? NN_GELU_TANH : NN_GELU_ERF;
    float *x = HR(c, N * 2 * C, dt), *dout = HR(c, N * C, dt), *ro = H(c, N * C),
          *dx0 = HR(c, N * 2 * C, dt);
    Tensor *tx = DT(x, dt, N, 2 * C), *to = DT(ro, dt, N, C), *tdo = DT(dout, dt, N, C),
           *tdx = DT(dx0, dt, N, 2 * C);
    nn_geglu_forward(ro, x, N, C, m);
    backend_geglu_forward(c->be, g, to, tx);
    expect_h(c, "geglu_forward", to, ro);
    float *rdx = Hcopy(c, dx0, N * 2 * C);
    nn_geglu_backward(rdx, dout, x, N, C, m);
    backend_geglu_backward(c->be, g, tdx, tdo, tx);
    expect_h(c, "geglu_backward", tdx, rdx);
}

static void hcase_conv2d(Ctx *c, DType dt, ConvShape s) {
    int K = s.K, stride = s.stride, pad = s.pad;
    int Ho = nn_conv2d_out_h(&s), Wo = nn_conv2d_out_w(&s);
    size_t ni = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * K * K,
           no = (size_t)s.B * s.OC * Ho * Wo;
    DType pdt = param_dt(dt);
    float *x = HR(c, ni, dt), *w = HR(c, nw, pdt), *b = HR(c, s.OC, pdt), *dout = HR(c, no, dt);
    float *ro = H(c, no), *dx0 = HR(c, ni, dt), *dw0 = H(c, nw), *db0 = H(c, s.OC);
    size_t ns = nn_conv2d_scratch_floats(&s);
    float *sc = H(c, ns ? ns : 1);
    Tensor *tx = DT(x, dt, s.B, s.C, s.H, s.W), *tw = DT(w, pdt, s.OC, s.C, K, K),
           *tb = DT(b, pdt, s.OC);
    Tensor *to = DT(ro, dt, s.B, s.OC, Ho, Wo), *tdo = DT(dout, dt, s.B, s.OC, Ho, Wo);
    Tensor *tdx = DT(dx0, dt, s.B, s.C, s.H, s.W), *tdw = DF(dw0, s.OC, s.C, K, K),
           *tdb = DF(db0, s.OC);
    nn_conv2d_forward(ro, sc, x, w, b, &s);
    backend_conv2d_forward(c->be, to, tx, tw, tb, stride, pad);
    expect_h(c, "conv2d_forward", to, ro);
    float *rdx = Hcopy(c, dx0, ni), *rdw = Hcopy(c, dw0, nw), *rdb = Hcopy(c, db0, s.OC);
    nn_conv2d_backward(rdx, rdw, rdb, sc, dout, x, w, &s);
    backend_conv2d_backward(c->be, tdx, tdw, tdb, tdo, tx, tw, stride, pad);
    expect_h(c, "conv2d_backward dinp", tdx, rdx);
    expect_h(c, "conv2d_backward dweight", tdw, rdw);
    expect_h(c, "conv2d_backward dbias", tdb, rdb);
}

static void hcase_resample_concat(Ctx *c, DType dt, int B, int Ca, int Cb, int Hh, int W) {
    int HW = Hh * W;
    size_t na = (size_t)B * Ca * HW, nb = (size_t)B * Cb * HW, nc = na + nb;
    float *x = HR(c, na, dt), *up = H(c, na * 4), *dup = HR(c, na * 4, dt),
          *dx0 = HR(c, na, dt);
    Tensor *tx = DT(x, dt, B, Ca, Hh, W), *tu = DT(up, dt, B, Ca, 2 * Hh, 2 * W),
           *tdu = DT(dup, dt, B, Ca, 2 * Hh, 2 * W), *tdx = DT(dx0, dt, B, Ca, Hh, W);
    nn_upsample2x_forward(up, x, B, Ca, Hh, W);
    backend_upsample2x_forward(c->be, tu, tx);
    expect_h(c, "upsample2x_forward", tu, up);
    float *rdx = Hcopy(c, dx0, na);
    nn_upsample2x_backward(rdx, dup, B, Ca, Hh, W);
    backend_upsample2x_backward(c->be, tdx, tdu);
    expect_h(c, "upsample2x_backward", tdx, rdx);

    float *a = HR(c, na, dt), *b = HR(c, nb, dt), *cat = H(c, nc), *dcat = HR(c, nc, dt);
    float *da0 = HR(c, na, dt), *db0 = HR(c, nb, dt), *dc0 = HR(c, nc, dt);
    Tensor *ta = DT(a, dt, B, Ca, Hh, W), *tb = DT(b, dt, B, Cb, Hh, W),
           *tc = DT(cat, dt, B, Ca + Cb, Hh, W), *tdc = DT(dcat, dt, B, Ca + Cb, Hh, W);
    Tensor *tda = DT(da0, dt, B, Ca, Hh, W), *tdb = DT(db0, dt, B, Cb, Hh, W),
           *tdc0 = DT(dc0, dt, B, Ca + Cb, Hh, W);
    nn_channel_concat_forward(cat, a, b, B, Ca, Cb, HW);
    backend_concat_forward(c->be, tc, ta, tb);
    expect_h(c, "concat_forward", tc, cat);
    float *rda = Hcopy(c, da0, na), *rdb = Hcopy(c, db0, nb);
    nn_channel_concat_backward(rda, rdb, dcat, B, Ca, Cb, HW);
    backend_concat_backward(c->be, tda, tdb, tdc);
    expect_h(c, "concat_backward da", tda, rda);
    expect_h(c, "concat_backward db", tdb, rdb);
    float *sa = Hcopy(c, a, na), *sb = Hcopy(c, b, nb);
    nn_channel_split_forward(sa, sb, dcat, B, Ca, Cb, HW);
    backend_split_forward(c->be, ta, tb, tdc);
    expect_h(c, "split_forward a", ta, sa);
    expect_h(c, "split_forward b", tb, sb);
    float *rdc = Hcopy(c, dc0, nc);
    nn_channel_split_backward(rdc, sa, sb, B, Ca, Cb, HW);
    backend_split_backward(c->be, tdc0, ta, tb);
    expect_h(c, "split_backward", tdc0, rdc);
}

/* Every half case of dt on be; returns the mismatching elements. With f32 activations only the
 * ops with parameters run (what differs from the f32 tests above is the bf16 parameters). */
static int run_half_cases(Backend *be, DType dt, int quiet) {
    Ctx c;
    ctx_init(&c, be);
    c.quiet = quiet;
    /* the emulated backend starts a host thread per GPU thread: one conv2d shape there */
    int emu = strncmp(backend_name(be), "emu", 3) == 0, half = dt != DTYPE_F32;
    hcase_linear(&c, dt, 5, 70, 67); /* OC crosses the CPU's 64-row weight tile */
    if (half)
        hcase_matmul(&c, dt, 6, 9, 11);
    hcase_layernorm(&c, dt, 7, 45);
    hcase_groupnorm(&c, dt, 2, 12, 3, 5, 4);
    ctx_free(&c);
    for (int a = BACKEND_ACT_GELU; half && a <= BACKEND_ACT_QUICKGELU; a++)
        hcase_act(&c, dt, (BackendAct)a, 7, 43);
    if (half) {
        hcase_geglu(&c, dt, BACKEND_ACT_GELU, 6, 10);
        hcase_geglu(&c, dt, BACKEND_ACT_GELU_TANH, 6, 10);
    }
    ctx_free(&c);
    hcase_conv2d(&c, dt, (ConvShape){2, 5, 9, 8, 6, 3, 1, 1});
    if (!emu && half)
        hcase_conv2d(&c, dt, (ConvShape){2, 5, 9, 8, 6, 3, 2, 1});
    ctx_free(&c);
    if (half)
        hcase_resample_concat(&c, dt, 2, 3, 2, 3, 4);
    ctx_free(&c);
    return c.bad;
}

Test(nn_backend_ops, half_activations_match_the_f32_op_on_cpu) {
    for (int threads = 1; threads <= 3; threads += 2) {
        Backend *be = open_cpu(threads);
        for (int dt = DTYPE_F32; dt <= DTYPE_BF16; dt++)
            cr_expect_eq(run_half_cases(be, (DType)dt, 0), 0, "%s activations on %s",
                         dtype_name((DType)dt), backend_name(be));
        backend_close(be);
    }
}

Test(nn_backend_ops, half_activations_match_the_f32_op_on_the_cuda_op_code) {
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_emu_open(NULL, &be, &err), 0, "%s", err.msg);
    for (int dt = DTYPE_F32; dt <= DTYPE_BF16; dt++)
        cr_expect_eq(run_half_cases(be, (DType)dt, 0), 0, "%s activations on %s",
                     dtype_name((DType)dt), backend_name(be));
    backend_close(be);
}

Test(nn_backend_ops, half_activations_match_the_f32_op_on_cuda) {
    CudaDevice devs[4];
    int n = 0;
    char why[256];
    cuda_probe(devs, 4, &n, why, sizeof why);
    if (n == 0)
        cr_skip_test("no CUDA backend here: %s", why);
    Backend *be = NULL;
    Err err = {0};
    cr_assert_eq(backend_open("cuda:0", NULL, &be, NULL, 0, &err), 0, "%s", err.msg);
    for (int dt = DTYPE_F32; dt <= DTYPE_BF16; dt++)
        cr_expect_eq(run_half_cases(be, (DType)dt, 0), 0, "%s activations on %s",
                     dtype_name((DType)dt), backend_name(be));
    backend_close(be);
}

/* The CPU backend widens half activations in tiles of at most 1 Mi floats (2^20) per tensor:
 * shapes of several tiles, so every tile's offset (rows, images, planes; the statistics of
 * a tile's rows; parameter gradients summed over tiles) is checked. */
Test(nn_backend_ops, half_activations_in_several_tiles_on_cpu) {
    Backend *be = open_cpu(2);
    Ctx c;
    ctx_init(&c, be);
    DType dt = DTYPE_BF16;
    hcase_act(&c, dt, BACKEND_ACT_GELU, 1025, 1024); /* 2^20 + 1024 elements: 3 tiles */
    ctx_free(&c);
    hcase_geglu(&c, dt, BACKEND_ACT_GELU_TANH, 2000, 200); /* 3C = 600 floats a row: 2 tiles */
    ctx_free(&c);
    hcase_linear(&c, dt, 2100, 256, 300);            /* (C+OC)·N > 2^20: 2 tiles */
    ctx_free(&c);
    hcase_matmul(&c, dt, 2100, 256, 300);
    ctx_free(&c);
    hcase_layernorm(&c, dt, 3000, 512);              /* 1024 rows a tile: 3 tiles */
    ctx_free(&c);
    hcase_groupnorm(&c, dt, 3, 32, 128, 128, 8);     /* one image a tile */
    ctx_free(&c);
    hcase_conv2d(&c, dt, (ConvShape){3, 4, 256, 256, 4, 3, 1, 1});
    ctx_free(&c);
    hcase_resample_concat(&c, dt, 3, 20, 20, 128, 128);
    ctx_free(&c);
    cr_expect_eq(c.bad, 0, "mismatches in tiled half ops on %s", backend_name(be));
    backend_close(be);
}

/* The last op must have failed be with ERR_USAGE and a message holding each word given. */
static void expect_refused(Backend *be, const char *what, const char *w1, const char *w2,
                           const char *w3) {
    Err err = {0};
    int rc = backend_sync(be, &err);
    cr_expect_eq(rc, ERR_USAGE, "%s: refused with ERR_USAGE (got %d: %s)", what, rc, err.msg);
    const char *w[3] = {w1, w2, w3};
    for (int i = 0; i < 3; i++)
        if (w[i])
            cr_expect(strstr(err.msg, w[i]) != NULL, "%s: the message names '%s': %s", what,
                      w[i], err.msg);
}

Test(nn_backend_ops, half_activations_where_not_allowed_are_refused_by_name) {
    Backend *be = open_cpu(1);
    int64_t s2[2] = {4, 6}, s1[1] = {4}, s6[1] = {6}, sc[1] = {1};
    Tensor xb = backend_tensor_new(be, DTYPE_BF16, 2, s2);
    Tensor xh = backend_tensor_new(be, DTYPE_F16, 2, s2);
    Tensor xf = backend_tensor_new(be, DTYPE_F32, 2, s2);
    Tensor mb = backend_tensor_new(be, DTYPE_BF16, 1, s1);
    Tensor mf = backend_tensor_new(be, DTYPE_F32, 1, s1);
    Tensor loss = backend_tensor_new(be, DTYPE_F32, 1, sc);
    Tensor w = backend_tensor_new(be, DTYPE_F32, 2, (int64_t[]){6, 6});
    Tensor dwb = backend_tensor_new(be, DTYPE_BF16, 2, (int64_t[]){6, 6});
    Tensor dbb = backend_tensor_new(be, DTYPE_BF16, 1, s6);
    Tensor *all[] = {&xb, &xh, &xf, &mb, &mf, &loss, &w, &dwb, &dbb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        backend_zero(be, all[i]);
    cr_assert_eq(backend_sync(be, NULL), 0);

    /* ops with f32 activations only */
    backend_softmax_forward(be, &xf, &xb);
    expect_refused(be, "softmax", "softmax_forward", "inp is bf16", "f32 only");
    backend_mse_forward(be, &loss, &xh, &xh);
    expect_refused(be, "mse", "mse_forward", "pred is f16", "f32 only");
    AdamWConfig cfg = optim_adamw_defaults();
    backend_adamw(be, &xb, &xb, &xb, &xb, 1, 1e-3f, &cfg);
    expect_refused(be, "adamw", "adamw", "param is bf16", "f32 only");
    /* one activation dtype per call */
    backend_act_forward(be, BACKEND_ACT_SILU, &xh, &xb);
    expect_refused(be, "act out f16 of a bf16 inp", "act_forward", "out is f16", "bf16");
    backend_linear_forward(be, &xf, &xb, &w, NULL);
    expect_refused(be, "linear out f32 of a bf16 inp", "linear_forward", "out is f32", "bf16");
    backend_layernorm_backward(be, &xb, NULL, NULL, &xh, &xb, NULL, &mf, &mf);
    expect_refused(be, "layernorm dout f16 of a bf16 inp", "layernorm_backward", "dout is f16",
                   "bf16");
    /* statistics and parameter gradients stay f32 */
    backend_layernorm_forward(be, &xb, &mb, &mf, &xb, NULL, NULL, 1e-5f);
    expect_refused(be, "layernorm mean bf16", "layernorm_forward", "mean is bf16", "f32 only");
    backend_linear_backward(be, &xb, &dwb, NULL, &xb, &xb, &w);
    expect_refused(be, "linear dweight bf16", "linear_backward", "dweight is bf16", "f32 only");
    backend_linear_backward(be, &xb, NULL, &dbb, &xb, &xb, &w);
    expect_refused(be, "linear dbias bf16", "linear_backward", "dbias is bf16", "f32 only");

    /* and what is allowed runs: bf16 activations, f32 weight, f16 bias */
    Tensor bh = backend_tensor_new(be, DTYPE_F16, 1, s6);
    backend_zero(be, &bh);
    backend_linear_forward(be, &xb, &xb, &w, &bh);
    Err err = {0};
    cr_expect_eq(backend_sync(be, &err), 0, "%s", err.msg);
    backend_tensor_free(be, &bh);
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        backend_tensor_free(be, all[i]);
    backend_close(be);
}

/* ops of CLIP: the front end refuses a gather index outside the table. */
Test(nn_backend_ops, gather_rows_refuses_an_index_outside_the_table) {
    Backend *be = open_cpu(1);
    float tab[6] = {0}, out[4];
    Tensor t = tensor_view_dtype(tab, DTYPE_F32, 2, (const int64_t[]){3, 2});
    Tensor o = tensor_view_dtype(out, DTYPE_F32, 2, (const int64_t[]){2, 2});
    static const int bad[2] = {1, 3};
    backend_gather_rows(be, &o, &t, bad);
    Err err = {0};
    cr_assert_eq(backend_sync(be, &err), ERR_USAGE);
    cr_expect(strstr(err.msg, "gather_rows: idx[1] is 3, outside -1..2"), "%s", err.msg);
    backend_close(be);
}
