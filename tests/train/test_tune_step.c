/* One training step of each objective of `easel tune` (tune_step.h, tune_loss.h) against
 * PyTorch + diffusers + peft (tests/train/make_tune_fixtures.py → fixtures/tune_step.safetensors):
 * on the tiny SD- and SDXL-shaped UNets of tests/models, with the same LoRA (and DoRA) weights,
 * latents,
 * noise, timesteps and conditioning, the noisy latents, the loss, the adapters' gradients and
 * the adapters after one AdamW step (clipping at 1.0) agree within 1e-4 relative; the first
 * DPO and ADPO losses are ln 2. The objectives' gradients are also checked by finite
 * differences on their own. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "tune_step_fixture.h"

static void check_case(const char *cs, const char *model, TuneObjective obj, int xl) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig bc = {.threads = 2, .arena_bytes = (size_t)64 << 20};
    cr_assert_eq(backend_open("cpu", &bc, &be, NULL, 0, &err), 0, "%s", err.msg);
    check_case_on(cs, model, obj, xl, be);
}

Test(tune_step, dpo_first_step_is_ln2_and_matches_torch) {
    check_case("dpo_init", SD, TUNE_DPO, 0);
}
Test(tune_step, dpo_matches_torch) { check_case("dpo", SD, TUNE_DPO, 0); }
Test(tune_step, dspo_sd_matches_torch) { check_case("dspo", SD, TUNE_DSPO, 0); }
Test(tune_step, adpo_first_step_is_ln2_and_matches_torch) {
    check_case("adpo_init", SD, TUNE_ADPO, 0);
}
Test(tune_step, adpo_matches_torch) { check_case("adpo", SD, TUNE_ADPO, 0); }
Test(tune_step, dpo_sdxl_first_step_is_ln2_and_matches_torch) {
    check_case("dpo_xl_init", XL, TUNE_DPO, 1);
}
Test(tune_step, dpo_sdxl_matches_torch) { check_case("dpo_xl", XL, TUNE_DPO, 1); }
Test(tune_step, dspo_sdxl_matches_torch) { check_case("dspo_xl", XL, TUNE_DSPO, 1); }
Test(tune_step, dpo_dora_first_step_is_ln2_and_matches_torch) {
    check_case("dpo_dora_init", SD, TUNE_DPO, 0);
}
Test(tune_step, dpo_dora_matches_torch) { check_case("dpo_dora", SD, TUNE_DPO, 0); }
Test(tune_step, dspo_dora_matches_torch) { check_case("dspo_dora", SD, TUNE_DSPO, 0); }
Test(tune_step, adpo_dora_matches_torch) { check_case("adpo_dora", SD, TUNE_ADPO, 0); }
Test(tune_step, dpo_adafactor_matches_torch) { check_case("dpo_adafactor", SD, TUNE_DPO, 0); }
Test(tune_step, dspo_dora_adafactor_matches_torch) {
    check_case("dspo_dora_adafactor", SD, TUNE_DSPO, 0);
}
Test(tune_step, dspo_sdxl_small_branch_matches_torch) {
    check_case("dspo_xl_small", XL, TUNE_DSPO, 1);
}

/* v-prediction models train against v = √ᾱ·ε − √(1−ᾱ)·x0: diffusers' get_velocity */
Test(tune_step, v_prediction_target_is_diffusers_velocity) {
    Err err = {0};
    SafeTensors *fx = safetensors_open(FIX, &err);
    cr_assert_not_null(fx, "%s", err.msg);
    SchedConfig sc;
    sched_config_default(&sc, SCHED_DDIM);
    sc.beta_start = 0.00085;
    sc.beta_end = 0.012;
    sc.beta_schedule = SCHED_BETAS_SCALED_LINEAR;
    Scheduler sch;
    cr_assert_eq(scheduler_init(&sch, &sc, 1, &err), 0, "%s", err.msg);
    float *x0 = get(fx, "vpred", "x0", NULL), *eps = get(fx, "vpred", "noise", NULL);
    float *t = get(fx, "vpred", "t", NULL), *wxt = get(fx, "vpred", "xt", NULL);
    float *wv = get(fx, "vpred", "v", NULL), xt[256], v[256];
    for (int b = 0; b < 3; b++) {
        tune_add_noise(sch.alphas_cumprod, (int)t[b], x0 + b * 256, eps + b * 256, 256,
                       SCHED_PRED_V, xt, v);
        cr_assert(max_diff(xt, wxt + b * 256, 256) <= 1e-6, "x_t at t %g", t[b]);
        cr_assert(max_diff(v, wv + b * 256, 256) <= 1e-6, "v at t %g", t[b]);
    }
    free(x0), free(eps), free(t), free(wxt), free(wv);
    scheduler_deinit(&sch);
    safetensors_close(fx);
}

/* ---- the objectives' gradients by finite differences (double-checked central differences on
 * random predictions; both DSPO SDXL branches) ---- */

static void fd_check(TuneObjective obj, int xl, float beta, float p2scale) {
    const int B = 2;
    const size_t N = 12;
    size_t n = (size_t)B * N;
    float *pw = xmalloc(n * 4), *pl = xmalloc(n * 4), *rw = xmalloc(n * 4), *rl = xmalloc(n * 4);
    float *tw = xmalloc(n * 4), *tl = xmalloc(n * 4), *dw = xmalloc(n * 4), *dl = xmalloc(n * 4);
    Rng r;
    rng_init(&r, 99 + obj);
    for (size_t i = 0; i < n; i++) {
        tw[i] = rng_normal(&r), tl[i] = rng_normal(&r);
        rw[i] = tw[i] + 0.3f * rng_normal(&r), rl[i] = tl[i] + 0.3f * rng_normal(&r);
        pw[i] = rw[i] + p2scale * rng_normal(&r), pl[i] = rl[i] + p2scale * rng_normal(&r);
    }
    TuneLossStats st;
    tune_loss_grad(obj, xl, beta, B, N, pw, pl, rw, rl, tw, tl, 1.0f, dw, dl, &st);
    double worst = 0, gmax = 0;
    for (int side = 0; side < 2; side++)
        for (size_t i = 0; i < n; i++) {
            float *p = side ? pl : pw, keep = p[i];
            double h = 1e-3, lp, lm;
            p[i] = keep + (float)h;
            tune_loss_grad(obj, xl, beta, B, N, pw, pl, rw, rl, tw, tl, 1.0f, NULL, NULL, &st);
            lp = st.loss;
            p[i] = keep - (float)h;
            tune_loss_grad(obj, xl, beta, B, N, pw, pl, rw, rl, tw, tl, 1.0f, NULL, NULL, &st);
            lm = st.loss;
            p[i] = keep;
            double fd = (lp - lm) / (2 * h), an = (side ? dl : dw)[i];
            worst = fmax(worst, fabs(fd - an));
            gmax = fmax(gmax, fabs(an));
        }
    cr_assert(gmax > 0, "objective %d: zero gradient", obj);
    cr_assert(worst <= 2e-3 * gmax + 1e-6, "objective %d xl %d: fd differs by %g (max %g)", obj,
              xl, worst, gmax);
    free(pw), free(pl), free(rw), free(rl), free(tw), free(tl), free(dw), free(dl);
}

Test(tune_loss, dpo_gradient_matches_finite_differences) { fd_check(TUNE_DPO, 0, 2.0f, 0.2f); }
Test(tune_loss, adpo_gradient_matches_finite_differences) { fd_check(TUNE_ADPO, 1, 3.0f, 0.2f); }
Test(tune_loss, dspo_sd_gradient_matches_finite_differences) { fd_check(TUNE_DSPO, 0, 0.5f, 0.2f); }
Test(tune_loss, dspo_sdxl_gradient_matches_finite_differences) {
    fd_check(TUNE_DSPO, 1, 2.0f, 0.6f); /* mean (pred − ref)² >= 0.1 */
    fd_check(TUNE_DSPO, 1, 2.0f, 0.1f); /* below: the (1 − σ)² branch */
}
