/* test_nn_diffusion_grad — every backward of nn_diffusion.h against central finite
 * differences (tests/nn_check.h), the gradient rule (backward adds, NULL skipped), and
 * deliberately wrong backwards that the check must catch. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_diffusion.h"
#include "nn_check.h"

#define EPS 1e-2f
#define ATOL 2e-3f
#define RTOL 2e-2f

static void fini(void) { gc_free_all(); }
TestSuite(nn_diffusion_grad, .fini = fini);

#define CASE(nm, nin, nout, f, b, ctx_) \
    GradCase c = {.name = nm, .n_in = nin, .n_out = nout, .fwd = f, .bwd = b, .ctx = ctx_}

/* ---- conv2d ---------------------------------------------------------------------------------- */

typedef struct ConvCtx {
    ConvShape s;
    float *scratch;
    int wrong; /* 1: the backward gets one weight gradient element 10 % wrong */
} ConvCtx;

static void conv_f(GradCase *c, float *out) {
    ConvCtx *x = c->ctx;
    nn_conv2d_forward(out, x->scratch, c->in[0], c->in[1], c->in[2], &x->s);
}
static void conv_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    ConvCtx *x = c->ctx;
    nn_conv2d_backward(din[0], din[1], din[2], x->scratch, d, c->in[0], c->in[1], &x->s);
    if (x->wrong)
        din[1][4] += 0.05f + 0.1f * fabsf(din[1][4]); /* well past the tolerance */
}

/* Returns check_grad's count of mismatches for conv s with random input, weight, bias. */
static int conv_check(ConvShape s, uint64_t seed, int wrong) {
    Rng r;
    rng_init(&r, seed);
    ConvCtx x = {s, NULL, wrong};
    x.scratch = gc_randn(&r, nn_conv2d_scratch_floats(&s), 0);
    size_t nx = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.K * s.K;
    size_t ny = (size_t)s.B * s.OC * nn_conv2d_out_h(&s) * nn_conv2d_out_w(&s);
    CASE("conv2d", 3, ny, conv_f, conv_b, &x);
    c.in[0] = gc_randn(&r, nx, 1), c.n[0] = nx;
    c.in[1] = gc_randn(&r, nw, 1), c.n[1] = nw;
    c.in[2] = gc_randn(&r, s.OC, 1), c.n[2] = s.OC;
    return check_grad(&c, EPS, ATOL, RTOL);
}

Test(nn_diffusion_grad, conv2d) {
    ConvShape s3 = {.B = 2, .C = 2, .H = 4, .W = 5, .OC = 3, .K = 3, .stride = 1, .pad = 1};
    cr_expect_eq(conv_check(s3, 1, 0), 0, "3x3 stride 1 pad 1");
    ConvShape s2 = {.B = 1, .C = 2, .H = 5, .W = 6, .OC = 2, .K = 3, .stride = 2, .pad = 1};
    cr_expect_eq(conv_check(s2, 2, 0), 0, "3x3 stride 2 pad 1");
    ConvShape s0 = {.B = 1, .C = 3, .H = 4, .W = 4, .OC = 2, .K = 3, .stride = 1, .pad = 0};
    cr_expect_eq(conv_check(s0, 3, 0), 0, "3x3 unpadded");
    ConvShape s1 = {.B = 2, .C = 3, .H = 2, .W = 3, .OC = 2, .K = 1, .stride = 1, .pad = 0};
    cr_expect_eq(conv_check(s1, 4, 0), 0, "1x1");
    ConvShape s12 = {.B = 1, .C = 2, .H = 5, .W = 5, .OC = 3, .K = 1, .stride = 2, .pad = 0};
    cr_expect_eq(conv_check(s12, 5, 0), 0, "1x1 stride 2");
    /* the same with more than 4 output channels: im2col + GEMM instead of the direct path */
    ConvShape *all[4] = {&s3, &s2, &s0, &s12};
    for (int i = 0; i < 4; i++) {
        all[i]->OC = 5 + i;
        cr_expect_eq(conv_check(*all[i], 6 + (uint64_t)i, 0), 0, "im2col case %d", i);
    }
}

/* ---- GroupNorm ------------------------------------------------------------------------------- */

typedef struct GnCtx {
    int B, C, HW, G;
    float *mean, *rstd;
    int affine;
    int drop_mean_term; /* 1: a backward that forgets the −mean(dx̂) term */
} GnCtx;

static void gn_f(GradCase *c, float *out) {
    GnCtx *g = c->ctx;
    nn_groupnorm_forward(out, g->mean, g->rstd, c->in[0], g->affine ? c->in[1] : NULL,
                         g->affine ? c->in[2] : NULL, g->B, g->C, g->HW, g->G, 1e-5f);
}
static void gn_b(GradCase *c, float *out, const float *d, float **din) {
    GnCtx *g = c->ctx;
    gn_f(c, out); /* mean and rstd of the unperturbed input */
    if (!g->drop_mean_term) {
        nn_groupnorm_backward(din[0], g->affine ? din[1] : NULL, g->affine ? din[2] : NULL, d,
                              c->in[0], g->affine ? c->in[1] : NULL, g->mean, g->rstd, g->B,
                              g->C, g->HW, g->G);
        return;
    }
    /* the wrong one: dx = (dx̂ − x̂·mean(dx̂·x̂))·rstd */
    int cg = g->C / g->G;
    for (int i = 0; i < g->B * g->G; i++) {
        const float *x = c->in[0] + (size_t)i * cg * g->HW, *dd = d + (size_t)i * cg * g->HW;
        double s = 0.0;
        for (int k = 0; k < cg * g->HW; k++)
            s += dd[k] * (x[k] - g->mean[i]) * g->rstd[i];
        for (int k = 0; k < cg * g->HW; k++) {
            float xh = (x[k] - g->mean[i]) * g->rstd[i];
            din[0][(size_t)i * cg * g->HW + k] += (dd[k] - xh * (float)(s / (cg * g->HW))) *
                                                  g->rstd[i];
        }
    }
}

static int gn_check(int B, int C, int HW, int G, int affine, int wrong, uint64_t seed) {
    Rng r;
    rng_init(&r, seed);
    GnCtx g = {B, C, HW, G, NULL, NULL, affine, wrong};
    g.mean = gc_randn(&r, (size_t)B * G, 0);
    g.rstd = gc_randn(&r, (size_t)B * G, 0);
    size_t n = (size_t)B * C * HW;
    CASE("groupnorm", affine ? 3 : 1, n, gn_f, gn_b, &g);
    c.in[0] = gc_randn(&r, n, 1), c.n[0] = n;
    if (affine) {
        c.in[1] = gc_randn(&r, C, 1), c.n[1] = C;
        c.in[2] = gc_randn(&r, C, 1), c.n[2] = C;
    }
    return check_grad(&c, EPS, ATOL, RTOL);
}

Test(nn_diffusion_grad, groupnorm) {
    cr_expect_eq(gn_check(2, 4, 6, 2, 1, 0, 11), 0, "affine");
    cr_expect_eq(gn_check(1, 6, 5, 3, 0, 0, 12), 0, "no affine");
    cr_expect_eq(gn_check(2, 3, 9, 1, 1, 0, 13), 0, "one group (LayerNorm over C,H,W)");
    cr_expect_eq(gn_check(1, 4, 7, 4, 1, 0, 14), 0, "a group per channel (InstanceNorm)");
}

/* ---- activations ----------------------------------------------------------------------------- */

static NnGelu act_mode;

static void silu_f(GradCase *c, float *out) { nn_silu_forward(out, c->in[0], c->n_out); }
static void silu_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    nn_silu_backward(din[0], d, c->in[0], c->n_out);
}
static void gelu_f(GradCase *c, float *out) {
    nn_gelu_mode_forward(out, c->in[0], c->n_out, act_mode);
}
static void gelu_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    nn_gelu_mode_backward(din[0], d, c->in[0], c->n_out, act_mode);
}
static void geglu_f(GradCase *c, float *out) {
    nn_geglu_forward(out, c->in[0], 3, (int)c->n_out / 3, act_mode);
}
static void geglu_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    nn_geglu_backward(din[0], d, c->in[0], 3, (int)c->n_out / 3, act_mode);
}

Test(nn_diffusion_grad, activations) {
    Rng r;
    rng_init(&r, 21);
    float *x = gc_randn(&r, 30, 2);
    x[0] = 7.0f, x[1] = -7.0f; /* saturated tails */
    {
        CASE("silu", 1, 30, silu_f, silu_b, NULL);
        c.in[0] = x, c.n[0] = 30;
        cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0, "silu");
    }
    for (int m = 0; m < 2; m++) {
        act_mode = m ? NN_GELU_TANH : NN_GELU_ERF;
        {
            CASE("gelu", 1, 30, gelu_f, gelu_b, NULL);
            c.in[0] = x, c.n[0] = 30;
            cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0, "gelu mode %d", m);
        }
        CASE("geglu", 1, 15, geglu_f, geglu_b, NULL); /* x as (3, 2·5) */
        c.in[0] = x, c.n[0] = 30;
        cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0, "geglu mode %d", m);
    }
}

/* ---- upsampling, concat/split, MSE ----------------------------------------------------------- */

static void up_f(GradCase *c, float *out) { nn_upsample2x_forward(out, c->in[0], 2, 2, 3, 2); }
static void up_b(GradCase *c, float *out, const float *d, float **din) {
    (void)c, (void)out;
    nn_upsample2x_backward(din[0], d, 2, 2, 3, 2);
}
static void cat_f(GradCase *c, float *out) {
    nn_channel_concat_forward(out, c->in[0], c->in[1], 2, 2, 3, 4);
}
static void cat_b(GradCase *c, float *out, const float *d, float **din) {
    (void)c, (void)out;
    nn_channel_concat_backward(din[0], din[1], d, 2, 2, 3, 4);
}
/* split's two outputs laid end to end: out = [a (2,2,4), b (2,3,4)] */
static void split_f(GradCase *c, float *out) {
    nn_channel_split_forward(out, out + 16, c->in[0], 2, 2, 3, 4);
}
static void split_b(GradCase *c, float *out, const float *d, float **din) {
    (void)c, (void)out;
    nn_channel_split_backward(din[0], d, d + 16, 2, 2, 3, 4);
}
static void mse_f(GradCase *c, float *out) { out[0] = nn_mse_loss_forward(c->in[0], c->in[1], 24); }
static void mse_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    nn_mse_loss_backward(din[0], din[1], d[0], c->in[0], c->in[1], 24);
}

Test(nn_diffusion_grad, upsample_concat_split_mse) {
    Rng r;
    rng_init(&r, 31);
    {
        CASE("upsample2x", 1, 96, up_f, up_b, NULL);
        c.in[0] = gc_randn(&r, 24, 1), c.n[0] = 24;
        cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0);
    }
    {
        CASE("channel_concat", 2, 40, cat_f, cat_b, NULL);
        c.in[0] = gc_randn(&r, 16, 1), c.n[0] = 16;
        c.in[1] = gc_randn(&r, 24, 1), c.n[1] = 24;
        cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0);
    }
    {
        CASE("channel_split", 1, 40, split_f, split_b, NULL);
        c.in[0] = gc_randn(&r, 40, 1), c.n[0] = 40;
        cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0);
    }
    {
        CASE("mse_loss", 2, 1, mse_f, mse_b, NULL);
        c.in[0] = gc_randn(&r, 24, 1), c.n[0] = 24;
        c.in[1] = gc_randn(&r, 24, 1), c.n[1] = 24;
        cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0);
    }
}

/* ---- the gradient rule ----------------------------------------------------------------------- */

/* Backward adds: two backwards into the same buffers give twice one; NULL buffers are skipped
 * (the others come out the same as with all of them given). */
Test(nn_diffusion_grad, backward_adds_and_skips_null) {
    Rng r;
    rng_init(&r, 41);
    ConvShape s = {.B = 1, .C = 3, .H = 6, .W = 5, .OC = 4, .K = 3, .stride = 1, .pad = 1};
    size_t nx = 90, nw = 108, ny = 120;
    float *x = gc_randn(&r, nx, 1), *w = gc_randn(&r, nw, 1), *d = gc_randn(&r, ny, 1);
    float *scratch = gc_randn(&r, nn_conv2d_scratch_floats(&s), 0);
    float *dx1 = gc_randn(&r, nx, 0), *dw1 = gc_randn(&r, nw, 0), *db1 = gc_randn(&r, 4, 0);
    float *dx2 = gc_randn(&r, nx, 0), *dw2 = gc_randn(&r, nw, 0), *db2 = gc_randn(&r, 4, 0);
    nn_conv2d_backward(dx1, dw1, db1, scratch, d, x, w, &s);
    nn_conv2d_backward(dx2, dw2, db2, scratch, d, x, w, &s);
    nn_conv2d_backward(dx2, NULL, NULL, scratch, d, x, w, &s);
    nn_conv2d_backward(NULL, dw2, NULL, scratch, d, x, w, &s);
    nn_conv2d_backward(NULL, NULL, db2, scratch, d, x, w, &s);
    /* (the second sum rounds in another order: equal to a few ulps) */
    for (size_t i = 0; i < nx; i++)
        cr_expect_leq(fabsf(dx2[i] - 2 * dx1[i]), 1e-5f * (1 + fabsf(dx1[i])), "dx[%zu]", i);
    for (size_t i = 0; i < nw; i++)
        cr_expect_leq(fabsf(dw2[i] - 2 * dw1[i]), 1e-5f * (1 + fabsf(dw1[i])), "dw[%zu]", i);
    for (size_t i = 0; i < 4; i++)
        cr_expect_leq(fabsf(db2[i] - 2 * db1[i]), 1e-5f * (1 + fabsf(db1[i])), "db[%zu]", i);

    float *mean = gc_randn(&r, 3, 0), *rstd = gc_randn(&r, 3, 0), *y = gc_randn(&r, nx, 0);
    float *g1 = gc_randn(&r, nx, 0), *g2 = gc_randn(&r, nx, 0), *gw = gc_randn(&r, 3, 0);
    float *gdw = gc_randn(&r, 3, 0);
    nn_groupnorm_forward(y, mean, rstd, x, w, w + 3, 1, 3, 30, 3, 1e-5f);
    nn_groupnorm_backward(g1, NULL, NULL, d, x, w, mean, rstd, 1, 3, 30, 3);
    nn_groupnorm_backward(g2, gdw, NULL, d, x, w, mean, rstd, 1, 3, 30, 3);
    nn_groupnorm_backward(g2, gw, NULL, d, x, w, mean, rstd, 1, 3, 30, 3);
    for (size_t i = 0; i < nx; i++)
        cr_expect_eq(g2[i], g1[i] + g1[i], "groupnorm dx[%zu]", i);
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(gw[i], gdw[i], "groupnorm dweight[%zu]", i);
}

/* ---- the check must be able to fail ---------------------------------------------------------- */

Test(nn_diffusion_grad, check_catches_wrong_backwards) {
    gc_quiet = 1;
    /* one weight-gradient element off by 10 % (+0.05): exactly that element is reported, on both
     * conv paths */
    ConvShape s = {.B = 2, .C = 2, .H = 4, .W = 5, .OC = 3, .K = 3, .stride = 1, .pad = 1};
    cr_expect_eq(conv_check(s, 1, 1), 1);
    s.OC = 6;
    cr_expect_eq(conv_check(s, 1, 1), 1);
    /* a GroupNorm backward that forgets to subtract the mean of dx̂: caught */
    cr_expect_gt(gn_check(2, 4, 6, 2, 0, 1, 11), 0);
    gc_quiet = 0;
}
