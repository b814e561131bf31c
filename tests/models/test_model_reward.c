/* Tests for src/models/model_reward.c against PyTorch: the whole five-head model's forward, pairs
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
#include "rng.h"

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
    /* no zero_grad: the backward overwrites whatever the pairs step left, every time */
    reward_model_backward(m);
    reward_model_backward(m);
    check_grads(m, json_object_get(rg, "grads"));

    reward_model_free(m);
    fixture_free(&f);
}

Test(model_reward, concat_matches_torch) { against_torch("concat"); }
Test(model_reward, add_matches_torch) { against_torch("add"); }
Test(model_reward, cross_attention_matches_torch) { against_torch("cross_attention"); }

/* ---- the model's own invariants ------------------------------------------------------- */

Test(model_reward, parameter_table_uses_the_original_names) {
    RewardConfig cfg;
    reward_config_defaults(&cfg, 768, 768);
    RewardModel *m = reward_model_new(&cfg, 1, NULL);
    cr_assert_not_null(m);
    int n;
    const RewardParam *t = reward_model_params(m, &n);
    cr_expect_eq(n, 51);
    cr_expect_str_eq(t[0].name, "heads.spatial.layers.0.weight");
    cr_expect(t[0].shape[0] == 512 && t[0].shape[1] == 1536);
    cr_expect_str_eq(t[9].name, "heads.spatial.layers.8.bias");
    cr_expect_str_eq(t[49].name, "heads.material.layers.8.bias");
    cr_expect_str_eq(t[50].name, "head_weights");
    const RewardParam *ln = reward_model_param(m, "heads.style.layers.5.weight");
    cr_assert_not_null(ln);
    cr_expect(ln->n_dims == 1 && ln->shape[0] == 256 && ln->data[0] == 1.0f);
    cr_expect_null(reward_model_param(m, "cross_attention.in_proj_weight"));
    size_t np, total = 0;
    reward_model_param_block(m, &np);
    for (int i = 0; i < n; i++)
        total += t[i].numel;
    cr_expect_eq(np, total);
    cr_expect_eq(total, (size_t)5 * (1536 * 512 + 512 * 3 + 512 * 256 + 256 * 3 + 257) + 5);
    float imp[5];
    reward_model_head_importance(m, imp);
    for (int h = 0; h < 5; h++)
        cr_expect_float_eq(imp[h], 0.2f, 1e-7);
    reward_model_free(m);

    cfg.fusion = REWARD_FUSION_CROSS_ATTENTION;
    cfg.img_rows = 17;
    m = reward_model_new(&cfg, 1, NULL);
    cr_assert_not_null(m);
    t = reward_model_params(m, &n);
    cr_expect_eq(n, 55);
    cr_expect_str_eq(t[51].name, "cross_attention.in_proj_weight");
    cr_expect(t[51].shape[0] == 3 * 768 && t[51].shape[1] == 768);
    cr_expect_str_eq(t[54].name, "cross_attention.out_proj.bias");
    cr_expect(t[0].shape[1] == 768);
    reward_model_free(m);
}

Test(model_reward, bad_configs_and_batches_are_rejected) {
    RewardConfig cfg;
    Err err = {0};
    reward_config_defaults(&cfg, 768, 512);
    cfg.fusion = REWARD_FUSION_ADD;
    cr_expect_null(reward_model_new(&cfg, 1, &err));
    cr_expect_eq(err.code, ERR_USAGE);
    cr_expect(strstr(err.msg, "concat") != NULL, "%s", err.msg);
    reward_config_defaults(&cfg, 100, 100);
    cfg.fusion = REWARD_FUSION_CROSS_ATTENTION;
    cfg.attn_heads = 8;
    cr_expect_eq(reward_config_check(&cfg, &err), ERR_USAGE);
    cr_expect(strstr(err.msg, "heads") != NULL, "%s", err.msg);
    cr_expect_eq(reward_fusion_parse("cross_attention"), REWARD_FUSION_CROSS_ATTENTION);
    cr_expect_eq(reward_fusion_parse("mean"), -1);
    reward_config_defaults(&cfg, 8, 8);
    cfg.hidden1 = 8, cfg.hidden2 = 4, cfg.max_batch = 4;
    RewardModel *m = reward_model_new(&cfg, 1, &err);
    cr_assert_not_null(m);
    float x[5 * 8] = {0};
    cr_expect_eq(reward_model_forward(m, x, x, 5, 0, 0, &err), ERR_USAGE);
    cr_expect(strstr(err.msg, "1..4") != NULL, "%s", err.msg);
    cr_assert_eq(reward_model_forward(m, x, x, 3, 0, 0, &err), 0);
    float lab[5] = {1, 1, 1, 1, 1};
    RewardPairBatch b = {2, lab, NULL, NULL, 0};
    RewardLoss loss;
    cr_expect_eq(reward_model_loss_pairs(m, &b, &loss, &err), ERR_USAGE);
    reward_model_free(m);
}

/* Whole-model finite differences WITH dropout on (the torch fixtures run without it): the
 * backward must use the same masks as the forward. */
static float pairs_total(RewardModel *m, const float *img, const float *txt,
                         const RewardPairBatch *b, uint64_t seed) {
    RewardLoss loss;
    reward_model_forward(m, img, txt, 2 * b->n_pairs, 1, seed, NULL);
    reward_model_loss_pairs(m, b, &loss, NULL);
    return loss.total;
}

Test(model_reward, gradients_with_dropout_match_finite_differences) {
    RewardConfig cfg;
    reward_config_defaults(&cfg, 6, 6);
    cfg.fusion = REWARD_FUSION_CROSS_ATTENTION;
    cfg.attn_heads = 2;
    cfg.img_rows = 4;
    cfg.hidden1 = 8, cfg.hidden2 = 6, cfg.dropout = 0.3f, cfg.max_batch = 8;
    RewardModel *m = reward_model_new(&cfg, 3, NULL);
    cr_assert_not_null(m);
    Rng r;
    rng_init(&r, 4);
    float img[8 * 4 * 6], txt[8 * 6];
    rng_fill_normal(&r, img, 8 * 4 * 6, 0, 1);
    rng_fill_normal(&r, txt, 8 * 6, 0, 1);
    float lab[20] = {1, 0, 0.5f, 1, 0, 0, 1, 1, 0.5f, 0, 1, 1, 1, 0, 0, 0.5f, 0, 1, 1, 0};
    uint8_t irr[4] = {0, 0, 0, 1};
    RewardPairBatch b = {4, lab, NULL, irr, 0.5f};
    pairs_total(m, img, txt, &b, 99);
    reward_model_zero_grad(m);
    reward_model_backward(m);
    size_t n;
    float *p = reward_model_param_block(m, &n), *g = reward_model_grad_block(m, &n);
    float *ga = malloc(n * sizeof(float));
    memcpy(ga, g, n * sizeof(float));
    int bad = 0, checked = 0;
    const float eps = 1e-3f;
    for (size_t i = 0; i < n; i += 7) {
        float x0 = p[i];
        p[i] = x0 + eps;
        double lp = pairs_total(m, img, txt, &b, 99);
        p[i] = x0 - eps;
        double lm = pairs_total(m, img, txt, &b, 99);
        p[i] = x0;
        double fd = (lp - lm) / (2 * eps);
        checked++;
        if (fabs(fd - ga[i]) > 2e-3 + 3e-2 * fabs(fd)) {
            if (bad < 5)
                cr_log_error("param %zu: analytic %g numeric %g", i, ga[i], fd);
            bad++;
        }
    }
    /* a kink of ReLU may fall inside ±eps for a parameter or two */
    cr_expect_leq(bad, checked / 50, "%d of %d gradients differ", bad, checked);
    cr_expect_gt(checked, 100);
    free(ga);
    reward_model_free(m);
}

/* Train a few steps with dropout; return the final parameters (caller frees). */
static float *train_steps(int threads, int steps, size_t *n_out) {
    CpuPool *pool = threads > 1 ? backend_cpu_pool_new(threads, NULL) : NULL;
    CpuPool *prev = backend_cpu_use(pool);
    RewardConfig cfg;
    reward_config_defaults(&cfg, 40, 24);
    cfg.hidden1 = 64, cfg.hidden2 = 32, cfg.max_batch = 32;
    RewardModel *m = reward_model_new(&cfg, 11, NULL);
    Rng r;
    rng_init(&r, 5);
    float img[32 * 40], txt[32 * 24], lab[16 * 5];
    for (int s = 0; s < steps; s++) {
        rng_fill_normal(&r, img, 32 * 40, 0, 1);
        rng_fill_normal(&r, txt, 32 * 24, 0, 1);
        for (int i = 0; i < 80; i++)
            lab[i] = (float)rng_below(&r, 3) * 0.5f;
        RewardPairBatch b = {16, lab, NULL, NULL, 0};
        RewardLoss loss;
        reward_model_forward(m, img, txt, 32, 1, (uint64_t)s, NULL);
        reward_model_loss_pairs(m, &b, &loss, NULL);
        reward_model_backward(m);
        reward_model_step(m, 1e-3f, 0);
    }
    size_t n;
    float *p = reward_model_param_block(m, &n);
    float *out = malloc(n * sizeof(float));
    memcpy(out, p, n * sizeof(float));
    *n_out = n;
    reward_model_free(m);
    backend_cpu_use(prev);
    backend_cpu_pool_free(pool);
    return out;
}

Test(model_reward, training_is_bit_identical_for_same_seed_and_threads) {
    size_t n1, n2, n3;
    float *a = train_steps(2, 6, &n1), *b = train_steps(2, 6, &n2), *c = train_steps(1, 6, &n3);
    cr_assert_eq(n1, n2);
    cr_expect_arr_eq(a, b, n1 * sizeof(float));
    /* this engine also gives the same bits with another thread count */
    cr_expect_arr_eq(a, c, n1 * sizeof(float));
    free(a), free(b), free(c);
}

Test(model_reward, learns_a_planted_preference) {
    /* Image feature 0 decides every aspect: the image with the larger one is preferred when
     * they differ by at least 0.5 (as ratings differ by min_rating_diff), else neutral. */
    RewardConfig cfg;
    reward_config_defaults(&cfg, 16, 8);
    cfg.hidden1 = 32, cfg.hidden2 = 16, cfg.max_batch = 64;
    RewardModel *m = reward_model_new(&cfg, 2, NULL);
    Rng r;
    rng_init(&r, 6);
    float img[64 * 16], txt[64 * 8], lab[32 * 5];
    RewardLoss loss;
    for (int s = 0; s < 150; s++) {
        rng_fill_normal(&r, img, 64 * 16, 0, 1);
        rng_fill_normal(&r, txt, 64 * 8, 0, 1);
        for (int i = 0; i < 32; i++)
            for (int h = 0; h < 5; h++)
                lab[i * 5 + h] = fabsf(img[i * 16] - img[(32 + i) * 16]) < 0.5f ? 0.5f
                                 : img[i * 16] > img[(32 + i) * 16]         ? 1.0f
                                                                            : 0.0f;
        RewardPairBatch b = {32, lab, NULL, NULL, 0};
        reward_model_forward(m, img, txt, 64, 1, (uint64_t)s, NULL);
        reward_model_loss_pairs(m, &b, &loss, NULL);
        reward_model_backward(m);
        reward_model_step(m, 3e-3f, 0);
    }
    int right = 0, total = 0;
    for (int rep = 0; rep < 4; rep++) {
        rng_fill_normal(&r, img, 64 * 16, 0, 1);
        rng_fill_normal(&r, txt, 64 * 8, 0, 1);
        reward_model_forward(m, img, txt, 64, 0, 0, NULL);
        const float *sc = reward_model_scores(m);
        for (int i = 0; i < 32; i++)
            for (int h = 0; h < 5; h++) {
                if (fabsf(img[i * 16] - img[(32 + i) * 16]) < 0.5f)
                    continue;
                int want = img[i * 16] > img[(32 + i) * 16];
                int got = sc[i * 5 + h] > sc[(32 + i) * 5 + h];
                right += want == got;
                total++;
            }
    }
    cr_expect_geq((double)right / total, 0.95, "held-out accuracy %d/%d", right, total);
    reward_model_free(m);
}

/* Both images of each pair under one prompt: the model computes the text half of Linear0 once
 * per pair (model_reward.c, "paired"); PyTorch computes everything plainly. */
Test(model_reward, concat_with_shared_prompts_matches_torch) { against_torch("concat_paired"); }
