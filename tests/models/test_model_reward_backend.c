/* The reward model on the "emu" backend — the CUDA backend's op code from
 * gpu/backend_kern_ops.h with its kernels run on the host emulation harness — against the CPU
 * backend (model_reward_compare.h; tests/models/test_model_reward_gpu.c does the same on
 * cuda:0). Also: the model takes its blocks from the backend it is given and gives its arena
 * block back, and a backend failure reaches reward_model_forward as an error. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "model_reward.h"
#include "model_reward_compare.h"

static void on_emu(int fusion) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig bc = {0, (size_t)16 << 20};
    cr_assert_eq(backend_emu_open(&bc, &be, &err), 0, "%s", err.msg);
    cr_expect_eq(compare_with_cpu(be, fusion, fusion), 0);
    backend_close(be);
}

/* The harness starts a host thread per GPU thread, so it runs two fusions (concat's paired
 * first layer and cross-attention: between them every op the model uses); a GPU runs all. */
Test(model_reward_backend, emu_training_matches_the_cpu_concat, .timeout = 120) { on_emu(0); }
Test(model_reward_backend, emu_training_matches_the_cpu_cross_attention, .timeout = 120) {
    on_emu(2);
}

/* A backend without the ops of the reward model: the first forward says which op is missing. */
Test(model_reward_backend, a_missing_op_is_an_error_not_a_crash) {
    Backend *be = open_cpu();
    BackendOps ops = *be->ops;
    ops.relu_forward = NULL;
    be->ops = &ops;
    RewardConfig cfg;
    config(&cfg, 0);
    RewardModel *m = NULL;
    Err err = {0};
    cr_assert_eq(reward_model_open(&cfg, 3, be, &m, &err), 0, "%s", err.msg);
    float img[N_ * DIM] = {0}, txt[N_ * DIM] = {0};
    cr_expect_neq(reward_model_forward(m, img, txt, N_, 0, 0, &err), 0);
    cr_expect(strstr(err.msg, "relu_forward") && strstr(err.msg, "not implemented"), "%s",
              err.msg);
    reward_model_free(m);
    be->ops = &backend_cpu_ops;
    backend_close(be);
}

/* A backward op that fails: the step is a no-op (sticky), reward_model_sync reports the first
 * failure by name, the parameters are as before the step, and the model works again after. */
Test(model_reward_backend, a_failing_backward_is_reported_by_sync_and_changes_nothing) {
    Backend *be = open_cpu();
    BackendOps ops = *be->ops;
    ops.layernorm_backward = NULL;
    be->ops = &ops;
    RewardConfig cfg;
    config(&cfg, 0);
    RewardModel *m = NULL;
    Err err = {0};
    cr_assert_eq(reward_model_open(&cfg, 3, be, &m, &err), 0, "%s", err.msg);
    Rng r;
    rng_init(&r, 2);
    float img[N_ * DIM], txt[N_ * DIM], lab[P_ * REWARD_N_HEADS];
    rng_fill_normal(&r, img, N_ * DIM, 0, 1);
    rng_fill_normal(&r, txt, N_ * DIM, 0, 1);
    for (int i = 0; i < P_ * REWARD_N_HEADS; i++)
        lab[i] = (float)(i % 2);
    size_t n;
    float *p = reward_model_param_block(m, &n), *before = malloc(n * sizeof(float));
    memcpy(before, p, n * sizeof(float));
    RewardPairBatch b = {P_, lab, NULL, NULL, 0};
    RewardLoss loss;
    cr_assert_eq(reward_model_forward(m, img, txt, N_, 1, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(reward_model_loss_pairs(m, &b, &loss, &err), 0, "%s", err.msg);
    reward_model_backward(m);
    reward_model_step(m, 1e-2f, 0);
    cr_expect_neq(reward_model_sync(m, &err), 0);
    cr_expect(strstr(err.msg, "layernorm_backward: not implemented"), "%s", err.msg);
    cr_expect_arr_eq(p, before, n * sizeof(float), "the failed step left the parameters alone");
    cr_expect_eq(reward_model_step_count(m), 0, "and the step count");
    cr_expect_eq(reward_model_sync(m, &err), 0, "reported once: %s", err.msg);
    be->ops = &backend_cpu_ops; /* the backend works again */
    cr_assert_eq(reward_model_forward(m, img, txt, N_, 1, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(reward_model_loss_pairs(m, &b, &loss, &err), 0, "%s", err.msg);
    reward_model_backward(m);
    reward_model_step(m, 1e-2f, 0);
    cr_expect_eq(reward_model_sync(m, &err), 0, "%s", err.msg);
    cr_expect(memcmp(p, before, n * sizeof(float)) != 0, "a step that ran moved them");
    free(before);
    reward_model_free(m);
    backend_close(be);
}

/* The blocks come from the backend the model is given, and its arena must hold the model. */
Test(model_reward_backend, blocks_from_the_backend_and_arena_sized_by_the_measure) {
    RewardConfig cfg;
    config(&cfg, 2);
    Backend *be = NULL;
    Err err = {0};
    BackendConfig small = {1, 4096};
    cr_assert_eq(backend_open("cpu", &small, &be, NULL, 0, &err), 0, "%s", err.msg);
    RewardModel *m = NULL;
    cr_expect_eq(reward_model_open(&cfg, 3, be, &m, &err), ERR_NOMEM);
    cr_expect(strstr(err.msg, "activations"), "%s", err.msg);
    cr_expect_null(m);
    backend_close(be);
    BackendConfig fit = {1, reward_model_arena_bytes(&cfg)};
    cr_assert_eq(backend_open("cpu", &fit, &be, NULL, 0, &err), 0, "%s", err.msg);
    size_t mark = backend_mark(be);
    cr_assert_eq(reward_model_open(&cfg, 3, be, &m, &err), 0, "%s", err.msg);
    cr_expect_gt(backend_mark(be), mark);
    cr_expect_eq(reward_model_backend(m), be);
    reward_model_free(m);
    cr_expect_eq(backend_mark(be), mark, "the model gives its arena block back");
    backend_close(be);
}
