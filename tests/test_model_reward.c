/* Tests for src/model_reward.c against PyTorch: the whole five-head model's forward, pairs
 * and regression losses, every parameter gradient and one AdamW step, for the concat, add
 * and cross_attention fusions. The fixtures come from tests/torch/make_reward_fixtures.py
 * (committed JSON; no Python at test time). Plus the model's own invariants: parameter
 * names, dropout determinism, training reducing the loss, bad batch sizes rejected. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "model_reward.h"

/* Named tolerances: |ours − torch| <= TOL_ABS + TOL_REL·|torch| per element, where the
 * scale-aware ones use the largest magnitude of the tensor instead of the element. */
#define TOL_SCORE 2e-5   /* scores, combined, losses */
#define TOL_GRAD 1e-4    /* gradients, relative to the tensor's largest |gradient| */
#define TOL_GRAD_FLOOR 1e-6 /* absolute: gradients that are zero up to rounding (score
                              * biases cancel in score_a − score_b) */
#define TOL_STEP 2e-6    /* parameters after one AdamW step (lr 1e-2) from torch's gradients */

#define FIXTURES "tests/fixtures/model_reward/"

typedef struct Fixture {
    json_t *root;
    RewardConfig cfg;
    int P, N;
    float *img, *txt, *labels, *ratings;
    uint8_t *irrelevant;
    float lr, w_irr;
} Fixture;

static float *floats(json_t *arr, size_t *n_out) {
    cr_assert(json_is_array(arr));
    size_t n = json_array_size(arr);
    float *x = calloc(n ? n : 1, sizeof(float));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        x[i] = json_is_null(v) ? NAN : (float)json_number_value(v);
    }
    if (n_out)
        *n_out = n;
    return x;
}

static void fixture_load(Fixture *f, const char *name) {
    char path[256];
    snprintf(path, sizeof path, FIXTURES "%s.json", name);
    json_error_t je;
    f->root = json_load_file(path, 0, &je);
    cr_assert_not_null(f->root, "%s: %s (line %d)", path, je.text, je.line);
    json_t *c = json_object_get(f->root, "config");
    int dim_img = (int)json_integer_value(json_object_get(c, "dim_img"));
    int dim_txt = (int)json_integer_value(json_object_get(c, "dim_txt"));
    reward_config_defaults(&f->cfg, dim_img, dim_txt);
    f->cfg.fusion = reward_fusion_parse(json_string_value(json_object_get(c, "fusion")));
    f->cfg.img_rows = (int)json_integer_value(json_object_get(c, "img_rows"));
    f->cfg.attn_heads = (int)json_integer_value(json_object_get(c, "attn_heads"));
    f->cfg.hidden1 = (int)json_integer_value(json_object_get(c, "hidden1"));
    f->cfg.hidden2 = (int)json_integer_value(json_object_get(c, "hidden2"));
    f->cfg.adamw.weight_decay = (float)json_number_value(json_object_get(c, "weight_decay"));
    f->P = (int)json_integer_value(json_object_get(c, "n_pairs"));
    f->N = 2 * f->P;
    f->cfg.max_batch = f->N;
    f->lr = (float)json_number_value(json_object_get(c, "lr"));
    f->w_irr = (float)json_number_value(json_object_get(c, "irrelevant_weight"));
    json_t *in = json_object_get(f->root, "inputs");
    f->img = floats(json_object_get(in, "img"), NULL);
    f->txt = floats(json_object_get(in, "txt"), NULL);
    f->labels = floats(json_object_get(in, "labels"), NULL);
    f->ratings = floats(json_object_get(in, "ratings"), NULL);
    json_t *irr = json_object_get(in, "irrelevant");
    f->irrelevant = calloc(json_array_size(irr) + 1, 1);
    for (size_t i = 0; i < json_array_size(irr); i++)
        f->irrelevant[i] = (uint8_t)json_integer_value(json_array_get(irr, i));
}

static void fixture_free(Fixture *f) {
    json_decref(f->root);
    free(f->img), free(f->txt), free(f->labels), free(f->ratings), free(f->irrelevant);
}

/* Copy the fixture's initial parameters into the model by name; every name on both sides
 * must match with the same shape. */
static void load_params(RewardModel *m, const Fixture *f) {
    json_t *params = json_object_get(f->root, "params");
    int n;
    const RewardParam *tab = reward_model_params(m, &n);
    cr_assert_eq((size_t)n, json_object_size(params), "model has %d tensors, torch %zu", n,
                 json_object_size(params));
    for (int i = 0; i < n; i++) {
        json_t *p = json_object_get(params, tab[i].name);
        cr_assert_not_null(p, "torch has no tensor %s", tab[i].name);
        json_t *shape = json_object_get(p, "shape");
        cr_assert_eq(json_array_size(shape), (size_t)tab[i].n_dims, "%s", tab[i].name);
        for (int d = 0; d < tab[i].n_dims; d++)
            cr_assert_eq(json_integer_value(json_array_get(shape, d)), tab[i].shape[d],
                         "%s dim %d", tab[i].name, d);
        size_t k;
        float *x = floats(json_object_get(p, "data"), &k);
        cr_assert_eq(k, tab[i].numel);
        memcpy(tab[i].data, x, k * sizeof(float));
        free(x);
    }
}

static void expect_close(const float *ours, json_t *ref, size_t n, double tol, int scaled,
                         const char *what) {
    size_t k;
    float *r = floats(ref, &k);
    cr_assert_eq(k, n, "%s: %zu values, torch %zu", what, n, k);
    double scale = 1.0;
    if (scaled) {
        scale = 0.0;
        for (size_t i = 0; i < n; i++)
            scale = fmax(scale, fabs(r[i]));
        if (scale < 1e-6)
            scale = 1e-6;
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double lim = scaled ? tol * scale + TOL_GRAD_FLOOR : tol * (1.0 + fabs(r[i]));
        if (!(fabs((double)ours[i] - r[i]) <= lim)) {
            if (bad < 3)
                cr_log_error("%s[%zu]: ours %.9g torch %.9g", what, i, ours[i], r[i]);
            bad++;
        }
    }
    cr_expect_eq(bad, 0, "%s: %d of %zu values differ", what, bad, n);
    free(r);
}

static void check_grads(RewardModel *m, json_t *grads) {
    int n;
    const RewardParam *tab = reward_model_params(m, &n);
    for (int i = 0; i < n; i++)
        expect_close(tab[i].grad, json_object_get(grads, tab[i].name), tab[i].numel, TOL_GRAD,
                     1, tab[i].name);
}

static void against_torch(const char *name) {
    Fixture f;
    fixture_load(&f, name);
    Err err = {0};
    RewardModel *m = reward_model_new(&f.cfg, 1, &err);
    cr_assert_not_null(m, "%s", err.msg);
    load_params(m, &f);

    /* pairs objective: forward, losses, gradients, one AdamW step */
    json_t *pr = json_object_get(f.root, "pairs");
    cr_assert_eq(reward_model_forward(m, f.img, f.txt, f.N, 0, 0, &err), 0, "%s", err.msg);
    expect_close(reward_model_scores(m), json_object_get(pr, "scores"), (size_t)f.N * 5,
                 TOL_SCORE, 0, "scores");
    expect_close(reward_model_combined(m), json_object_get(pr, "combined"), (size_t)f.N,
                 TOL_SCORE, 0, "combined");
    RewardPairBatch b = {f.P, f.labels, NULL, f.irrelevant, f.w_irr};
    RewardLoss loss;
    cr_assert_eq(reward_model_loss_pairs(m, &b, &loss, &err), 0, "%s", err.msg);
    expect_close(loss.head, json_object_get(pr, "loss_head"), 5, TOL_SCORE, 0, "loss_head");
    cr_expect_float_eq(loss.combined,
                       (float)json_number_value(json_object_get(pr, "loss_combined")),
                       TOL_SCORE, "combined loss");
    cr_expect_float_eq(loss.irrelevant,
                       (float)json_number_value(json_object_get(pr, "loss_irrelevant")),
                       TOL_SCORE, "irrelevant loss");
    cr_expect_float_eq(loss.total, (float)json_number_value(json_object_get(pr, "loss_total")),
                       TOL_SCORE * 10, "total loss");
    reward_model_zero_grad(m);
    reward_model_backward(m);
    check_grads(m, json_object_get(pr, "grads"));
    /* The step is checked from torch's own gradients: Adam's first step moves every
     * parameter by about lr·sign(g), so gradients that are zero up to rounding (above) would
     * otherwise turn float noise into ±lr differences. */
    int n;
    const RewardParam *tab = reward_model_params(m, &n);
    json_t *tg = json_object_get(pr, "grads");
    for (int i = 0; i < n; i++) {
        size_t k;
        float *x = floats(json_object_get(tg, tab[i].name), &k);
        cr_assert_eq(k, tab[i].numel);
        memcpy(tab[i].grad, x, k * sizeof(float));
        free(x);
    }
    reward_model_step(m, f.lr, 0);
    cr_expect_eq(reward_model_step_count(m), 1);
    json_t *after = json_object_get(pr, "params_after");
    for (int i = 0; i < n; i++)
        expect_close(tab[i].data, json_object_get(after, tab[i].name), tab[i].numel, TOL_STEP,
                     0, tab[i].name);
    size_t ng;
    float *g = reward_model_grad_block(m, &ng);
    for (size_t i = 0; i < ng; i++)
        cr_assert(g[i] == 0.0f, "the step zeroes the gradients");

    /* regression objective from the initial parameters */
    load_params(m, &f);
    json_t *rg = json_object_get(f.root, "regression");
    cr_assert_eq(reward_model_forward(m, f.img, f.txt, f.N, 0, 0, &err), 0);
    expect_close(reward_model_scores(m), json_object_get(rg, "scores"), (size_t)f.N * 5,
                 TOL_SCORE, 0, "regression scores");
    cr_assert_eq(reward_model_loss_regression(m, f.ratings, &loss, &err), 0);
    expect_close(loss.head, json_object_get(rg, "loss_head"), 5, TOL_SCORE, 0,
                 "regression loss_head");
    cr_expect_eq(loss.n_head[0], f.N - 1);
    cr_expect_eq(loss.n_head[1], f.N);
    reward_model_zero_grad(m);
    reward_model_backward(m);
    check_grads(m, json_object_get(rg, "grads"));

    reward_model_free(m);
    fixture_free(&f);
}

Test(model_reward, concat_matches_torch) { against_torch("concat"); }
Test(model_reward, add_matches_torch) { against_torch("add"); }
Test(model_reward, cross_attention_matches_torch) { against_torch("cross_attention"); }
