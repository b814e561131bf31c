/* tune_step_fixture — one training step of `easel tune` checked against the PyTorch fixture
 * (make_tune_fixtures.py), on any backend: shared by test_tune_step.c (CPU) and
 * test_gpu_tune.c (a real GPU, make test-gpu). Static helpers for Criterion tests. */
#ifndef EASEL_TEST_TUNE_STEP_FIXTURE_H
#define EASEL_TEST_TUNE_STEP_FIXTURE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "base.h"
#include "fmt_safetensors.h"
#include "scheduler.h"
#include "sd_weights.h"
#include "tune_loss.h"
#include "tune_step.h"
#include "unet.h"

#define FIX "tests/train/fixtures/tune_step.safetensors"

static const char *const TARGETS[] = {"to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj",
                                      "ff.net.2"};

static inline float *get(SafeTensors *st, const char *cs, const char *field, size_t *n) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", cs, field);
    const StTensor *t = safetensors_find(st, name);
    cr_assert_not_null(t, "fixture tensor %s missing", name);
    float *p = xmalloc(sizeof(float) * (size_t)t->n_elem);
    Err err = {0};
    cr_assert_eq(safetensors_read_f32(st, t, p, (size_t)t->n_elem, &err), 0, "%s", err.msg);
    if (n)
        *n = (size_t)t->n_elem;
    return p;
}

static inline double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static inline double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Adapter tensor I's fixture key prefix: "MODULE.X" with X = A, B or m, into KEY. */
static inline void param_key(Unet *u, int i, char *key, size_t n, Tensor *p, Tensor *g) {
    const char *name = unet_adapter_param(u, i, p, g);
    cr_assert_not_null(name);
    static const char *const suf[] = {".lora_A.weight", ".lora_B.weight",
                                      ".lora_magnitude_vector"};
    for (int k = 0; k < 3; k++) {
        size_t ln = strlen(name), ls = strlen(suf[k]);
        if (ln > ls && !strcmp(name + ln - ls, suf[k])) {
            snprintf(key, n, "%.*s.%c", (int)(ln - ls), name, "ABm"[k]);
            return;
        }
    }
    cr_assert_fail("unexpected adapter tensor %s", name);
}

/* the fixture tensor CS.KEY + SUFFIX ("0", "1"; "d" puts the d before the letter) */
static inline float *get_p(SafeTensors *st, const char *cs, const char *key, const char *suffix,
                    size_t *n) {
    char f[300];
    size_t kl = strlen(key);
    if (!strcmp(suffix, "d"))
        snprintf(f, sizeof f, "%.*sd%c", (int)(kl - 1), key, key[kl - 1]);
    else
        snprintf(f, sizeof f, "%s%s", key, suffix);
    return get(st, cs, f, n);
}

static inline float *down(Backend *be, const Tensor *t) {
    float *h = xmalloc(sizeof(float) * (size_t)tensor_numel(t));
    Tensor v = tensor_view(h, t->n_dims, t->shape);
    backend_download(be, &v, t);
    return h;
}

/* Case CS of the fixture on BE (closed here). */
static inline void check_case_on(const char *cs, const char *model, TuneObjective obj, int xl,
                                 Backend *be) {
    int dora = strstr(cs, "_dora") != NULL;
    Err err = {0};
    SafeTensors *fx = safetensors_open(FIX, &err);
    cr_assert_not_null(fx, "%s", err.msg);
    SdWeights *w = NULL;
    cr_assert_eq(sd_weights_open(model, "unet", &w, &err), 0, "%s", err.msg);
    Unet *u = NULL;
    cr_assert_eq(unet_load(w, be, NULL, &u, &err), 0, "%s", err.msg);
    UnetAdapterConfig ac = {4, 8.0f, dora, TARGETS, 6, 1};
    cr_assert_eq(unet_adapter_add(u, &ac, &err), 0, "%s", err.msg);
    int na = unet_adapter_param_count(u);
    for (int i = 0; i < na; i++) {
        Tensor p;
        char key[256];
        param_key(u, i, key, sizeof key, &p, NULL);
        size_t n;
        float *a = get_p(fx, cs, key, "0", &n);
        cr_assert_eq(n, (size_t)tensor_numel(&p), "%s", key);
        if (key[strlen(key) - 1] == 'm') { /* DoRA's m starts at the row norms: as PEFT's */
            float *mine = down(be, &p);
            cr_assert(max_diff(mine, a, n) <= 1e-5 * max_abs(a, n), "%s: m0", key);
            free(mine);
        }
        Tensor ha = tensor_view(a, p.n_dims, p.shape);
        backend_upload(be, &p, &ha);
        free(a);
    }
    /* the schedule of the fixture's DDPMScheduler */
    SchedConfig sc;
    sched_config_default(&sc, SCHED_DDIM);
    sc.beta_start = 0.00085;
    sc.beta_end = 0.012;
    sc.beta_schedule = SCHED_BETAS_SCALED_LINEAR;
    sc.num_train_timesteps = 1000;
    Scheduler sch;
    cr_assert_eq(scheduler_init(&sch, &sc, 1, &err), 0, "%s", err.msg);
    const int B = 2, C = 4, S = 8, T = 7;
    size_t N = (size_t)C * S * S, nehs;
    float *x0w = get(fx, cs, "x0_w", NULL), *x0l = get(fx, cs, "x0_l", NULL);
    float *noise = get(fx, cs, "noise", NULL), *t = get(fx, cs, "t", NULL);
    float *ehs = get(fx, cs, "ehs", &nehs), *ehsn = get(fx, cs, "ehs_neg", NULL);
    float *want_xt = get(fx, cs, "xt", NULL);
    int D = (int)(nehs / (size_t)(B * T));
    float *xt = xmalloc(2 * B * N * sizeof *xt), *tgt = xmalloc(2 * B * N * sizeof *tgt);
    float *ehs2 = xmalloc(2 * nehs * sizeof *ehs2), *t2 = xmalloc(2 * B * sizeof *t2);
    for (int side = 0; side < 2; side++)
        for (int b = 0; b < B; b++) {
            int row = side * B + b;
            const float *x0 = (side && obj != TUNE_ADPO ? x0l : x0w) + b * N;
            tune_add_noise(sch.alphas_cumprod, (int)t[b], x0, noise + b * N, N,
                           SCHED_PRED_EPSILON, xt + row * N, tgt + row * N);
            t2[row] = t[b];
            const float *e = (side && obj == TUNE_ADPO ? ehsn : ehs) + (size_t)b * T * D;
            memcpy(ehs2 + (size_t)row * T * D, e, (size_t)T * D * sizeof *e);
        }
    double dxt = max_diff(xt, want_xt, 2 * B * N);
    cr_assert(dxt <= 1e-6 * max_abs(want_xt, 2 * B * N), "%s: x_t differs by %g", cs, dxt);
    float *pooled = NULL, *tids = NULL;
    int P = 0;
    if (xl) {
        size_t np;
        float *te = get(fx, cs, "text_embeds", &np), *ti = get(fx, cs, "time_ids", NULL);
        P = (int)(np / B);
        pooled = xmalloc(2 * np * sizeof *pooled);
        tids = xmalloc(2 * B * 6 * sizeof *tids);
        memcpy(pooled, te, np * sizeof *te), memcpy(pooled + np, te, np * sizeof *te);
        memcpy(tids, ti, B * 6 * sizeof *ti), memcpy(tids + B * 6, ti, B * 6 * sizeof *ti);
        free(te), free(ti);
    }
    float *beta = get(fx, cs, "beta", NULL);
    TuneBatch tb = {B, C, S, S, xt, tgt, t2, ehs2, T, D, pooled, P, tids};
    TuneLossStats ls;
    unet_lora_zero_grad(u);
    cr_assert_eq(tune_batch_grad(u, be, &tb, obj, xl, beta[0], 1.0f, &ls, &err), 0, "%s",
                 err.msg);
    float *wl = get(fx, cs, "loss", NULL), *wa = get(fx, cs, "acc", NULL);
    float *wg = get(fx, cs, "grad_norm", NULL);
    cr_assert(fabs(ls.loss - wl[0]) <= 1e-4 * fabs(wl[0]) + 1e-7, "%s: loss %.9g, torch %.9g",
              cs, ls.loss, wl[0]);
    /* at init the policy is the reference: inside is 0 up to rounding, its sign is noise */
    if (!strstr(cs, "_init"))
        cr_assert_float_eq(ls.acc / ls.n, wa[0], 1e-9, "%s: acc", cs);
    if (strstr(cs, "_init") && obj != TUNE_DSPO)
        /* LoRA's first policy is the reference bit for bit (B = 0): ln 2. DoRA's m here is
         * torch's (imported with the fixture), whose float norm differs from ours in the last
         * bits, so m/‖W‖ − 1 is a few ulps, which β/2 = 1000 magnifies to ~2e-5 of the loss;
         * with easel's own init the policy is the reference bit for bit
         * (test_unet_adapters: dora_starts_at_the_base_and_switches_off). */
        cr_assert_float_eq(ls.loss, log(2.0), dora ? 1e-4 : 1e-6,
                           "%s: the first loss is ln 2 (%.9g)", cs, ls.loss);
    /* gradients, before clipping: every adapter, relative to the largest of all */
    double gmax = 0, gdiff = 0;
    for (int i = 0; i < na; i++) {
        Tensor g;
        char key[256];
        param_key(u, i, key, sizeof key, NULL, &g);
        size_t n;
        float *want = get_p(fx, cs, key, "d", &n), *got = down(be, &g);
        cr_assert_eq(n, (size_t)tensor_numel(&g));
        gmax = fmax(gmax, max_abs(want, n));
        gdiff = fmax(gdiff, max_diff(got, want, n));
        free(want), free(got);
    }
    cr_assert(gmax > 0, "%s: the reference gradient is zero", cs);
    cr_assert(gdiff <= 1e-4 * gmax, "%s: adapter gradients differ by %g (max %g)", cs, gdiff,
              gmax);
    /* one AdamW step (lr 1e-3, weight decay 1e-2, clipping at 1.0) */
    TuneOpt o;
    TuneOptKind ok = strstr(cs, "_adafactor") ? TUNE_OPT_ADAFACTOR : TUNE_OPT_ADAMW;
    cr_assert_eq(tune_opt_init(&o, u, be, ok, &err), 0, "%s", err.msg);
    float gn = 0;
    cr_assert_eq(tune_opt_step(&o, 1e-3f, &gn, &err), 0, "%s", err.msg);
    cr_assert(fabs(gn - wg[0]) <= 1e-4 * wg[0], "%s: grad norm %g, torch %g", cs, gn, wg[0]);
    /* Adam's first step moves each weight by about lr·sign(g): a weight whose gradient is
     * within the gradient tolerance of zero may move either way in either program, so those
     * are only checked to move by at most lr·(1 + wd·|p|); the others within 1e-4 of
     * the largest move. */
    double pdiff = 0, dmax = 0, loose = 0;
    for (int i = 0; i < na; i++) {
        Tensor p;
        char key[256];
        param_key(u, i, key, sizeof key, &p, NULL);
        size_t n;
        float *want = get_p(fx, cs, key, "1", &n), *got = down(be, &p);
        float *before = get_p(fx, cs, key, "0", NULL), *g = get_p(fx, cs, key, "d", NULL);
        for (size_t j = 0; j < n; j++) {
            dmax = fmax(dmax, fabs((double)want[j] - before[j]));
            double d = fabs((double)got[j] - want[j]);
            if (fabs(g[j]) > 1e-2 * gmax)
                pdiff = fmax(pdiff, d);
            else if (ok == TUNE_OPT_ADAMW) /* the excess over lr·(1 + wd·|p|) */
                loose = fmax(loose, fabs((double)got[j] - before[j]) -
                                        1e-3 * (1 + 1e-2 * fabs(before[j])));
        }
        free(want), free(got), free(before), free(g);
    }
    cr_assert(dmax > 0);
    cr_assert(pdiff <= 1e-4 * dmax + 1e-8, "%s: updated adapters differ by %g (moves up to %g)",
              cs, pdiff, dmax);
    cr_assert(loose <= 1e-7, "%s: a weight moved by %g more than lr allows", cs, loose);
    tune_opt_deinit(&o);
    free(x0w), free(x0l), free(noise), free(t), free(ehs), free(ehsn), free(want_xt), free(xt);
    free(tgt), free(ehs2), free(t2), free(pooled), free(tids), free(beta), free(wl), free(wa);
    free(wg);
    scheduler_deinit(&sch);
    unet_free(u);
    sd_weights_close(w);
    backend_close(be);
    safetensors_close(fx);
}

#define SD "tests/models/fixtures/unet_sd"
#define XL "tests/models/fixtures/unet_sdxl"

#endif
