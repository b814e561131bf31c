/* Finite-difference gradient checks for every engine op (STYLE §9: backward against finite
 * differences). Sizes are small so the whole file runs in well under a second. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
#include "nn_check.h"

/* Default tolerances: f32 central differences with eps 1e-2 on O(1) values. */
#define EPS 1e-2f
#define ATOL 2e-3f
#define RTOL 2e-2f

typedef struct Sz {
    int N, C, OC, K, B, Tq, Tk, NH;
    float p;
    uint64_t seed;
    const float *fixed;      /* non-differentiable extra input (targets, ...) */
    const int32_t *ids;
    AttnMask mask;
    float *scratch;
    float *save;             /* per-op saved activations */
} Sz;

static void fini(void) { gc_free_all(); }
TestSuite(nn_grad, .fini = fini);

#define CASE(nm, nin, nout, f, b, ctx_) \
    GradCase c = {.name = nm, .n_in = nin, .n_out = nout, .fwd = f, .bwd = b, .ctx = ctx_}

/* An input of a case: N values drawn N(0, STD). */
typedef struct GradIn {
    size_t n;
    float std;
} GradIn;

/* Check the backward of op NAME (FWD/BWD on CTX, N_OUT outputs) against central differences
 * (eps EPS, tolerance ATOL + RTOL): N_IN inputs IN, drawn in order from R. */
static void expect_grad(Rng *r, const char *name, void (*fwd)(GradCase *, float *),
                        void (*bwd)(GradCase *, float *, const float *, float **), void *ctx,
                        size_t n_out, float atol, int n_in, const GradIn *in) {
    CASE(name, n_in, n_out, fwd, bwd, ctx);
    for (int i = 0; i < n_in; i++)
        c.in[i] = gc_randn(r, in[i].n, in[i].std), c.n[i] = in[i].n;
    cr_expect_eq(check_grad(&c, EPS, atol, RTOL), 0, "%s", name);
}

/* ---- linear / matmul / bias --------------------------------------------------------- */

static void lin_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_linear_forward(out, c->in[0], c->in[1], c->in[2], s->N, s->C, s->OC);
}
static void lin_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_linear_backward(din[0], din[1], din[2], d, c->in[0], c->in[1], s->N, s->C, s->OC);
}

Test(nn_grad, linear) {
    Rng r;
    rng_init(&r, 1);
    Sz s = {.N = 5, .C = 7, .OC = 6};
    expect_grad(&r, "linear", lin_f, lin_b, &s, 30, ATOL, 3, (GradIn[]){{35, 1}, {42, 1}, {6, 1}});
}

static void mm_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_matmul_forward(out, c->in[0], c->in[1], s->N, s->K, s->C);
}
static void mm_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_matmul_backward(din[0], din[1], d, c->in[0], c->in[1], s->N, s->K, s->C);
}

Test(nn_grad, matmul) {
    Rng r;
    rng_init(&r, 2);
    Sz s = {.N = 4, .K = 5, .C = 3};
    expect_grad(&r, "matmul", mm_f, mm_b, &s, 12, ATOL, 2, (GradIn[]){{20, 1}, {15, 1}});
}

static void bias_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_bias_add_forward(out, c->in[0], c->in[1], s->N, s->C);
}
static void bias_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_bias_add_backward(din[0], din[1], d, s->N, s->C);
}

Test(nn_grad, bias_add) {
    Rng r;
    rng_init(&r, 3);
    Sz s = {.N = 3, .C = 4};
    expect_grad(&r, "bias_add", bias_f, bias_b, &s, 12, ATOL, 2, (GradIn[]){{12, 1}, {4, 1}});
}

/* ---- elementwise ---------------------------------------------------------------------- */

static void add_f(GradCase *c, float *out) { nn_add_forward(out, c->in[0], c->in[1], c->n_out); }
static void add_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    nn_add_backward(din[0], din[1], d, c->n_out);
}
static void mul_f(GradCase *c, float *out) { nn_mul_forward(out, c->in[0], c->in[1], c->n_out); }
static void mul_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    nn_mul_backward(din[0], din[1], d, c->in[0], c->in[1], c->n_out);
}
static void scale_f(GradCase *c, float *out) { nn_scale_forward(out, c->in[0], -1.5f, c->n_out); }
static void scale_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    nn_scale_backward(din[0], d, -1.5f, c->n_out);
}

Test(nn_grad, add_mul_scale) {
    Rng r;
    rng_init(&r, 4);
    float *a = gc_randn(&r, 10, 1), *b = gc_randn(&r, 10, 1);
    {
        CASE("add", 2, 10, add_f, add_b, NULL);
        c.in[0] = a, c.n[0] = 10, c.in[1] = b, c.n[1] = 10;
        cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0);
    }
    {
        CASE("mul", 2, 10, mul_f, mul_b, NULL);
        c.in[0] = a, c.n[0] = 10, c.in[1] = b, c.n[1] = 10;
        cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0);
    }
    {
        CASE("scale", 1, 10, scale_f, scale_b, NULL);
        c.in[0] = a, c.n[0] = 10;
        cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0);
    }
}

static void cat_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_concat_forward(out, c->in[0], c->in[1], s->N, s->C, s->K);
}
static void cat_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_concat_backward(din[0], din[1], d, s->N, s->C, s->K);
}

Test(nn_grad, concat) {
    Rng r;
    rng_init(&r, 5);
    Sz s = {.N = 3, .C = 2, .K = 4};
    expect_grad(&r, "concat", cat_f, cat_b, &s, 18, ATOL, 2, (GradIn[]){{6, 1}, {12, 1}});
}

/* ---- activations ---------------------------------------------------------------------- */

#define ACT_CASE(op, uses_out)                                                             \
    static void op##_f(GradCase *c, float *out) { nn_##op##_forward(out, c->in[0], c->n_out); } \
    static void op##_b(GradCase *c, float *out, const float *d, float **din) {              \
        nn_##op##_backward(din[0], d, (uses_out) ? out : c->in[0], c->n_out);               \
    }
ACT_CASE(relu, 1)
ACT_CASE(gelu, 0)
ACT_CASE(gelu_tanh, 0)
ACT_CASE(quickgelu, 0)
ACT_CASE(sigmoid, 1)
ACT_CASE(logsigmoid, 0)

static void act_check(const char *name, void (*f)(GradCase *, float *),
                      void (*b)(GradCase *, float *, const float *, float **)) {
    Rng r;
    rng_init(&r, 6);
    /* values away from ReLU's kink at 0 so ±eps never crosses it */
    float x[16];
    for (int i = 0; i < 16; i++) {
        float u = rng_normal(&r) * 2.0f;
        x[i] = u >= 0 ? u + 0.05f : u - 0.05f;
    }
    x[0] = 8.0f, x[1] = -8.0f; /* saturated tails */
    CASE(name, 1, 16, f, b, NULL);
    c.in[0] = x, c.n[0] = 16;
    cr_expect_eq(check_grad(&c, 1e-2f, ATOL, RTOL), 0, "%s", name);
}

Test(nn_grad, activations) {
    act_check("relu", relu_f, relu_b);
    act_check("gelu", gelu_f, gelu_b);
    act_check("gelu_tanh", gelu_tanh_f, gelu_tanh_b);
    act_check("quickgelu", quickgelu_f, quickgelu_b);
    act_check("sigmoid", sigmoid_f, sigmoid_b);
    act_check("logsigmoid", logsigmoid_f, logsigmoid_b);
}

/* ---- norms ---------------------------------------------------------------------------- */

static void ln_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_layernorm_forward(out, s->save, s->save + s->N, c->in[0], c->in[1], c->in[2], s->N, s->C,
                         1e-5f);
}
static void ln_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_layernorm_backward(din[0], din[1], din[2], d, c->in[0], c->in[1], s->save,
                          s->save + s->N, s->N, s->C);
}

Test(nn_grad, layernorm) {
    Rng r;
    rng_init(&r, 7);
    float save[8];
    Sz s = {.N = 4, .C = 6, .save = save};
    expect_grad(&r, "layernorm", ln_f, ln_b, &s, 24, 5e-3f, 3, (GradIn[]){{24, 1}, {6, 1}, {6, 1}});
}

static void l2_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_l2norm_forward(out, s->save, c->in[0], s->N, s->C, 1e-12f);
}
static void l2_b(GradCase *c, float *out, const float *d, float **din) {
    Sz *s = c->ctx;
    nn_l2norm_backward(din[0], d, out, s->save, s->N, s->C, 1e-12f);
}

Test(nn_grad, l2norm) {
    Rng r;
    rng_init(&r, 8);
    float save[4];
    Sz s = {.N = 3, .C = 5, .save = save};
    expect_grad(&r, "l2norm", l2_f, l2_b, &s, 15, ATOL, 1, (GradIn[]){{15, 1}});
}

/* ---- dropout, softmax, losses, reductions, embedding -------------------------------------- */

static void drop_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_dropout_forward(out, c->in[0], s->p, s->seed, c->n_out);
}
static void drop_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_dropout_backward(din[0], d, s->p, s->seed, c->n_out);
}

Test(nn_grad, dropout) {
    Rng r;
    rng_init(&r, 9);
    Sz s = {.p = 0.3f, .seed = 77};
    expect_grad(&r, "dropout", drop_f, drop_b, &s, 40, ATOL, 1, (GradIn[]){{40, 1}});
}

static void sm_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_softmax_forward(out, c->in[0], s->N, s->C);
}
static void sm_b(GradCase *c, float *out, const float *d, float **din) {
    Sz *s = c->ctx;
    nn_softmax_backward(din[0], d, out, s->N, s->C);
}

Test(nn_grad, softmax) {
    Rng r;
    rng_init(&r, 10);
    Sz s = {.N = 3, .C = 5};
    expect_grad(&r, "softmax", sm_f, sm_b, &s, 15, ATOL, 1, (GradIn[]){{15, 2}});
}

static void bce_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_logistic_loss_forward(out, c->in[0], s->fixed, c->n_out);
}
static void bce_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_logistic_loss_backward(din[0], d, c->in[0], s->fixed, c->n_out);
}
static void mse_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_mse_forward(out, c->in[0], s->fixed, c->n_out);
}
static void mse_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_mse_backward(din[0], d, c->in[0], s->fixed, c->n_out);
}

Test(nn_grad, losses) {
    Rng r;
    rng_init(&r, 11);
    float y[8] = {1, 0, 0.5f, 1, 0, 0.25f, 1, 0};
    Sz s = {.fixed = y};
    expect_grad(&r, "logistic", bce_f, bce_b, &s, 8, ATOL, 1, (GradIn[]){{8, 3}});
    expect_grad(&r, "mse", mse_f, mse_b, &s, 8, ATOL, 1, (GradIn[]){{8, 3}});
}

static void sum_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_sum_forward(out, c->in[0], s->N, s->C);
}
static void sum_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_sum_backward(din[0], d, s->N, s->C);
}
static void mean_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_mean_forward(out, c->in[0], s->N, s->C);
}
static void mean_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_mean_backward(din[0], d, s->N, s->C);
}

Test(nn_grad, reductions) {
    Rng r;
    rng_init(&r, 12);
    Sz s = {.N = 3, .C = 4};
    expect_grad(&r, "sum", sum_f, sum_b, &s, 3, ATOL, 1, (GradIn[]){{12, 1}});
    expect_grad(&r, "mean", mean_f, mean_b, &s, 3, ATOL, 1, (GradIn[]){{12, 1}});
}

static void emb_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_embedding_forward(out, s->ids, c->in[0], s->N, s->C, s->K);
}
static void emb_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_embedding_backward(din[0], d, s->ids, s->N, s->C, s->K);
}

Test(nn_grad, embedding) {
    Rng r;
    rng_init(&r, 13);
    int32_t ids[5] = {2, 0, 2, 3, 2}; /* repeated ids accumulate */
    Sz s = {.N = 5, .C = 3, .K = 4, .ids = ids};
    expect_grad(&r, "embedding", emb_f, emb_b, &s, 15, ATOL, 1, (GradIn[]){{12, 1}});
}

/* ---- attention ---------------------------------------------------------------------- */

static void att_f(GradCase *c, float *out) {
    Sz *s = c->ctx;
    nn_attention_forward(out, s->save, c->in[0], c->in[1], c->in[2], &s->mask, s->B, s->Tq,
                         s->Tk, s->C, s->NH);
}
static void att_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    Sz *s = c->ctx;
    nn_attention_backward(din[0], din[1], din[2], s->scratch, d, s->save, c->in[0], c->in[1],
                          c->in[2], s->B, s->Tq, s->Tk, s->C, s->NH);
}

static void attention_case(int causal, int pad, int add) {
    Rng r;
    rng_init(&r, 14);
    int B = 2, Tq = 3, Tk = 4, C = 8, NH = 2;
    float save[2 * 2 * 3 * 4], scratch[2 * 2 * 3 * 4];
    uint8_t key_pad[8] = {0, 0, 1, 0, 0, 0, 0, 1};
    float addm[12] = {0};
    addm[1] = -INFINITY;
    addm[6] = 0.7f;
    Sz s = {.B = B, .Tq = Tq, .Tk = Tk, .C = C, .NH = NH, .save = save, .scratch = scratch};
    s.mask.causal = causal;
    s.mask.key_pad = pad ? key_pad : NULL;
    s.mask.add = add ? addm : NULL;
    CASE("attention", 3, (size_t)B * Tq * C, att_f, att_b, &s);
    c.in[0] = gc_randn(&r, 48, 1), c.n[0] = 48;
    c.in[1] = gc_randn(&r, 64, 1), c.n[1] = 64;
    c.in[2] = gc_randn(&r, 64, 1), c.n[2] = 64;
    cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 0, "causal %d pad %d add %d", causal, pad,
                 add);
}

Test(nn_grad, attention) {
    attention_case(0, 0, 0);
    attention_case(1, 0, 0);
    attention_case(0, 1, 1);
}

typedef struct MhaCtx {
    int B, Tq, Tk, C, NH;
    float *cache_mem, *scratch;
    MhaCache cache;
} MhaCtx;

static void mha_f(GradCase *c, float *out) {
    MhaCtx *m = c->ctx;
    nn_mha_forward(out, &m->cache, c->in[0], c->in[1], c->in[2], c->in[3], c->in[4], c->in[5],
                   c->in[6], NULL, m->B, m->Tq, m->Tk, m->C, m->NH);
}
static void mha_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    MhaCtx *m = c->ctx;
    nn_mha_backward(din[0], din[1], din[2], din[3], din[4], din[5], din[6], m->scratch, d,
                    &m->cache, c->in[0], c->in[1], c->in[2], c->in[3], c->in[5], m->B, m->Tq,
                    m->Tk, m->C, m->NH);
}

Test(nn_grad, multihead_attention) {
    Rng r;
    rng_init(&r, 15);
    MhaCtx m = {.B = 2, .Tq = 1, .Tk = 3, .C = 4, .NH = 2};
    m.cache_mem = calloc(nn_mha_cache_floats(2, 1, 3, 4, 2), sizeof(float));
    m.scratch = calloc(nn_mha_scratch_floats(2, 1, 3, 4, 2), sizeof(float));
    nn_mha_cache_point(&m.cache, m.cache_mem, 2, 1, 3, 4, 2);
    const GradIn in[] = {
        {8, 1},     /* query (2,1,4) */
        {24, 1},    /* key (2,3,4) */
        {24, 1},    /* value */
        {48, 0.5f}, /* in_proj_weight (12,4) */
        {12, 0.5f}, /* in_proj_bias */
        {16, 0.5f}, /* out_proj.weight */
        {4, 0.5f},  /* out_proj.bias */
    };
    expect_grad(&r, "mha", mha_f, mha_b, &m, 8, ATOL, 7, in);
    free(m.cache_mem);
    free(m.scratch);
}

/* The harness itself must be able to fail: a backward with a wrong factor is caught. */
static void wrong_b(GradCase *c, float *out, const float *d, float **din) {
    (void)out;
    nn_scale_backward(din[0], d, -1.4f, c->n_out); /* forward scales by −1.5 */
}

Test(nn_grad, harness_catches_wrong_gradient) {
    Rng r;
    rng_init(&r, 16);
    CASE("wrong", 1, 6, scale_f, wrong_b, NULL);
    c.in[0] = gc_randn(&r, 6, 1), c.n[0] = 6;
    gc_quiet = 1;
    cr_expect_eq(check_grad(&c, EPS, ATOL, RTOL), 6);
    gc_quiet = 0;
}
