/* model_reward_compare — for tests/models/test_model_reward_{backend,gpu}.c: a training step
 * (dropout, the pairs loss, AdamW) and an inference forward on a backend against the same on
 * the CPU backend. Scores, losses and the parameters after the step must agree within float
 * tolerance (the kernels sum in other orders than the CPU ops). Fusions: 0 concat with shared
 * prompts (the paired first layer), 1 add, 2 cross_attention, 3 concat with a prompt per image.
 * Static functions: include once per test file. */
#ifndef EASEL_TEST_MODEL_REWARD_COMPARE_H
#define EASEL_TEST_MODEL_REWARD_COMPARE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model_reward.h"
#include "rng.h"

#define STEPS 1
#define P_ 4
#define N_ (2 * P_)
/* small: AdamW moves a parameter by about LR whatever its gradient, and the score biases' gradients
 * cancel in score_a − score_b to rounding noise whose sign differs between backends */
#define LR 1e-4f
#define DIM 8

typedef struct Run {
    float scores[STEPS][N_ * REWARD_N_HEADS];
    float loss[STEPS];
    float eval[N_ * REWARD_N_HEADS]; /* scores of an inference forward after the steps */
    float *params; /* n floats */
    size_t n;
} Run;

static void config(RewardConfig *cfg, int fusion) {
    reward_config_defaults(cfg, DIM, DIM);
    cfg->hidden1 = 16, cfg->hidden2 = 8, cfg->max_batch = N_;
    cfg->fusion = (RewardFusion)(fusion == 3 ? REWARD_FUSION_CONCAT : fusion);
    cfg->img_rows = fusion == REWARD_FUSION_CROSS_ATTENTION ? 4 : 1;
    cfg->attn_heads = 2;
}

/* fusion 0..2 as RewardFusion (concat with shared prompts: the paired path), 3 = concat with a
 * prompt per image (the plain path). */
static void train_on(Backend *be, int fusion, Run *out) {
    RewardConfig cfg;
    config(&cfg, fusion);
    RewardModel *m = NULL;
    Err err = {0};
    cr_assert_eq(reward_model_open(&cfg, 3, be, &m, &err), 0, "%s", err.msg);
    Rng r;
    rng_init(&r, 17);
    size_t ni = (size_t)N_ * cfg.img_rows * DIM;
    float *img = malloc(ni * sizeof(float)), txt[N_ * DIM], lab[P_ * REWARD_N_HEADS];
    for (int s = 0; s < STEPS; s++) {
        rng_fill_normal(&r, img, ni, 0, 1);
        rng_fill_normal(&r, txt, N_ * DIM, 0, 1);
        if (fusion != 3)
            memcpy(txt + P_ * DIM, txt, P_ * DIM * sizeof(float));
        for (int i = 0; i < P_ * REWARD_N_HEADS; i++)
            lab[i] = (float)rng_below(&r, 3) * 0.5f;
        cr_assert_eq(reward_model_forward(m, img, txt, N_, 1, 40 + (uint64_t)s, &err), 0, "%s",
                     err.msg);
        RewardPairBatch b = {P_, lab, NULL, NULL, 0};
        RewardLoss loss;
        cr_assert_eq(reward_model_loss_pairs(m, &b, &loss, &err), 0, "%s", err.msg);
        memcpy(out->scores[s], reward_model_scores(m), sizeof out->scores[s]);
        out->loss[s] = loss.total;
        reward_model_backward(m);
        reward_model_step(m, LR, 0);
        cr_assert_eq(reward_model_sync(m, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(reward_model_forward(m, img, txt, N_, 0, 0, &err), 0, "%s", err.msg);
    memcpy(out->eval, reward_model_scores(m), sizeof out->eval);
    reward_model_param_block(m, &out->n);
    out->params = malloc(out->n * sizeof(float));
    cr_assert_eq(reward_model_read_state(m, out->params, NULL, NULL, &err), 0, "%s", err.msg);
    reward_model_free(m);
    free(img);
}

static Backend *open_cpu(void) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig bc = {1, 0};
    cr_assert_eq(backend_open("cpu", &bc, &be, NULL, 0, &err), 0, "%s", err.msg);
    return be;
}

/* Fusions first..last on `be` against the CPU backend; returns the mismatches. */
static int compare_with_cpu(Backend *be, int first, int last) {
    int bad = 0;
    for (int fusion = first; fusion <= last; fusion++) {
        Backend *cpu = open_cpu();
        Run a = {0}, b = {0};
        train_on(cpu, fusion, &a);
        train_on(be, fusion, &b);
        for (int s = 0; s < STEPS; s++) {
            for (int i = 0; i < N_ * REWARD_N_HEADS; i++)
                if (!(fabsf(a.scores[s][i] - b.scores[s][i]) <= 1e-4f + 1e-3f * fabsf(a.scores[s][i]))) {
                    if (bad++ < 3)
                        cr_log_error("fusion %d step %d score %d: cpu %.7g, %s %.7g", fusion, s,
                                     i, a.scores[s][i], backend_name(be), b.scores[s][i]);
                }
            if (!(fabsf(a.loss[s] - b.loss[s]) <= 1e-4f + 1e-3f * fabsf(a.loss[s])) && bad++ < 3)
                cr_log_error("fusion %d step %d loss: cpu %.7g, %s %.7g", fusion, s, a.loss[s],
                             backend_name(be), b.loss[s]);
        }
        for (int i = 0; i < N_ * REWARD_N_HEADS; i++)
            if (!(fabsf(a.eval[i] - b.eval[i]) <= 2e-4f + 1e-3f * fabsf(a.eval[i])) && bad++ < 3)
                cr_log_error("fusion %d after the steps, score %d: cpu %.7g, %s %.7g", fusion,
                             i, a.eval[i], backend_name(be), b.eval[i]);
        cr_assert_eq(a.n, b.n);
        /* a gradient near zero may take either sign: allow a few parameters one LR apart */
        int far = 0;
        for (size_t i = 0; i < a.n; i++) {
            float d = fabsf(a.params[i] - b.params[i]);
            if (d > 1e-6f + 1e-4f * fabsf(a.params[i]))
                far++;
            if (d > 1.5f * STEPS * LR + 1e-5f && bad++ < 3)
                cr_log_error("fusion %d parameter %zu: cpu %.7g, %s %.7g", fusion, i,
                             a.params[i], backend_name(be), b.params[i]);
        }
        if (far > (int)(a.n / 50)) {
            cr_log_error("fusion %d: %d of %zu parameters differ", fusion, far, a.n);
            bad++;
        }
        free(a.params), free(b.params);
        backend_close(cpu);
    }
    return bad;
}

#endif
