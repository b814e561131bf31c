/* test_scheduler — the samplers against diffusers (fixtures from tests/gen/make_fixtures.py): for
 * SD 1.5-, SDXL-, Turbo- and v-prediction configs and the other options, every kind and
 * several step counts (PNDM: 1, 2, 3, 4, 50; PLMS and Runge-Kutta), the timesteps, sigmas,
 * init_noise_sigma and the latents after every step for a fixed model output, within 1e-6
 * relative; the initial latents and Euler ancestral's noise come from torch_rng as diffusers
 * draws them. Bad configs give errors that
 * name the file and the key. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "scheduler.h"
#include "torch_rng.h"

#define FIX "tests/gen/fixtures/"

static json_t *load(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    cr_assert(j, "%s: line %d: %s (make it with tests/gen/make_fixtures.py)", path, e.line,
              e.text);
    return j;
}

static double worst_seen; /* the largest error / tolerance of a run, for the log */

static double rel_tol = 1e-6; /* 1e-6, or looser for a case that says why */

/* |got - want| <= rel_tol * max(|want|, floor) for every value (PER_VALUE: schedules), or
 * <= rel_tol * max(max |want|, floor): relative to the array's largest value or FLOOR
 * (latents: the larger of a step's input and output, since one that is a small difference of
 * large terms carries the terms' rounding, e.g. of torch's float sqrt, which is not
 * always correctly rounded). */

static double close(const char *what, const float *got, json_t *want, size_t n, double floor,
                    int per_value) {
    cr_assert_eq(json_array_size(want), n, "%s: %zu values, diffusers %zu", what, n,
                 json_array_size(want));
    double worst = 0, scale = floor;
    for (size_t i = 0; i < n && !per_value; i++)
        scale = fmax(scale, fabs(json_number_value(json_array_get(want, i))));
    for (size_t i = 0; i < n; i++) {
        double w = (float)json_number_value(json_array_get(want, i));
        double tol = rel_tol * (per_value ? fmax(fabs(w), floor) : scale);
        double d = fabs((double)got[i] - w);
        cr_assert(d <= tol, "%s [%zu]: %.9g, diffusers %.9g", what, i, (double)got[i], w);
        worst = fmax(worst, d / tol);
    }
    if (worst > worst_seen && getenv("EASEL_TEST_VERBOSE"))
        cr_log_info("%s: %.3f", what, worst);
    worst_seen = fmax(worst_seen, worst);
    return worst;
}

/* The fixed model output of make_fixtures.py: in * (0.3 + t / 2000) + (k % 7) * 0.1 - 0.3. */
static void fixed_output(const float *in, double t, float *mo, size_t n) {
    float a = (float)(0.3 + t / 2000.0);
    for (size_t k = 0; k < n; k++) {
        float c = (float)((double)(k % 7) * 0.1 - 0.3);
        mo[k] = in[k] * a;
        mo[k] = mo[k] + c;
    }
}

static void run_case(json_t *c, size_t idx) {
    const char *cfg_name = json_string_value(json_object_get(c, "config"));
    const char *kind_name = json_string_value(json_object_get(c, "kind"));
    int steps = (int)json_integer_value(json_object_get(c, "steps"));
    char what[128];
    snprintf(what, sizeof what, "case %zu (%s, %s, %d steps)", idx, cfg_name, kind_name, steps);
    int kind = sched_kind_from_name(kind_name);
    cr_assert(kind >= 0, "%s", what);

    char path[256];
    snprintf(path, sizeof path, FIX "sched_%s.config.json", cfg_name);
    SchedConfig cfg;
    Err err = {0};
    cr_assert_eq(sched_config_load(&cfg, (SchedKind)kind, path, &err), 0, "%s: %s", what,
                 err.msg);
    cfg.eta = json_number_value(json_object_get(c, "eta")); /* DDIM's, from the pipeline */
    Scheduler s;
    cr_assert_eq(scheduler_init(&s, &cfg, steps, &err), 0, "%s: %s", what, err.msg);
    /* zero terminal SNR: torch's float sqrt, not always correctly rounded, enters the rescaled
     * betas (1e-6 on some sigmas) and rounds sigma_max = sqrt(2^24 - 1) to 4096.0 where
     * easel has 4095.9998; the first step cancels terms of 4096 times the noise down to a few
     * units, which carries that difference on (doc/generate.md) */
    rel_tol = cfg.rescale_zero_snr ? 5e-5 : 1e-6;

    /* the schedule */
    json_t *ts = json_object_get(c, "timesteps");
    cr_assert_eq((size_t)s.n_steps, json_array_size(ts), "%s: %d timesteps, diffusers %zu",
                 what, s.n_steps, json_array_size(ts));
    float *tf = xmalloc((size_t)s.n_steps * sizeof *tf);
    for (int i = 0; i < s.n_steps; i++)
        tf[i] = (float)s.timesteps[i];
    char sub[200];
    snprintf(sub, sizeof sub, "%s timesteps", what);
    close(sub, tf, ts, (size_t)s.n_steps, 1.0, 1);
    free(tf);
    json_t *sg = json_object_get(c, "sigmas");
    if (sg) {
        cr_assert(s.sigmas, "%s", what);
        snprintf(sub, sizeof sub, "%s sigmas", what);
        close(sub, s.sigmas, sg, (size_t)s.n_steps + 1, 1e-3, 1);
    }
    snprintf(sub, sizeof sub, "%s init_noise_sigma", what);
    json_t *ins = json_pack("[f]", json_number_value(json_object_get(c, "init_noise_sigma")));
    close(sub, &s.init_noise_sigma, ins, 1, 0, 1);
    json_decref(ins);

    /* the latents: diffusers' pipeline loop with torch.Generator("cpu").manual_seed(seed) */
    size_t n = 1;
    size_t si;
    json_t *d;
    json_array_foreach(json_object_get(c, "shape"), si, d) n *= (size_t)json_integer_value(d);
    TorchCpuGen g;
    torch_cpu_gen_seed(&g, (uint64_t)json_integer_value(json_object_get(c, "seed")),
                       TORCH_RNG_AVX2);
    float *x = xmalloc(n * sizeof *x), *in = xmalloc(n * sizeof *in);
    float *mo = xmalloc(n * sizeof *mo), *noise = xmalloc(n * sizeof *noise);
    torch_cpu_randn(&g, x, n);
    for (size_t k = 0; k < n; k++)
        x[k] = x[k] * s.init_noise_sigma;
    snprintf(sub, sizeof sub, "%s initial latents", what);
    close(sub, x, json_object_get(c, "initial"), n, 0, 0);
    json_t *lat = json_object_get(c, "latents");
    cr_assert_eq(json_array_size(lat), (size_t)s.n_steps);
    for (int i = 0; i < s.n_steps; i++) {
        scheduler_scale_model_input(&s, x, in, n);
        fixed_output(in, s.timesteps[i], mo, n);
        const float *nz = NULL;
        if (scheduler_step_needs_noise(&s)) {
            torch_cpu_randn(&g, noise, n);
            nz = noise;
        }
        double in_max = 0; /* a step that shrinks the latents (zero SNR: sigma 4096 to
                            * about 10) keeps the rounding of its input's scale */
        for (size_t k = 0; k < n; k++)
            in_max = fmax(in_max, fabs(x[k]));
        cr_assert_eq(scheduler_step(&s, mo, x, nz, x, n, &err), 0, "%s step %d: %s", what, i,
                     err.msg);
        snprintf(sub, sizeof sub, "%s latents after step %d", what, i);
        close(sub, x, json_array_get(lat, (size_t)i), n, in_max, 0);
    }
    rel_tol = 1e-6;
    /* past the end: an error, the latents untouched */
    float keep = x[0];
    cr_assert_eq(scheduler_step(&s, mo, x, noise, x, n, &err), ERR_USAGE);
    cr_assert_eq(x[0], keep);
    free(x);
    free(in);
    free(mo);
    free(noise);
    scheduler_deinit(&s);
}

Test(scheduler, matches_diffusers, .timeout = 60) {
    json_t *root = load(FIX "sched_cases.json");
    json_t *cases = json_object_get(root, "cases");
    cr_assert_gt(json_array_size(cases), 40u);
    int seen[SCHED_KIND_COUNT] = {0};
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        run_case(c, i);
        seen[sched_kind_from_name(json_string_value(json_object_get(c, "kind")))]++;
    }
    cr_log_info("worst error: %.3f of the tolerance", worst_seen);
    for (int k = 0; k < SCHED_KIND_COUNT; k++)
        cr_assert_gt(seen[k], 3, "%s: too few cases", sched_kind_name((SchedKind)k));
    json_decref(root);
}

/* The training schedule is torch's to the bit: its float32 linspace (with fused
 * multiply-adds), 1 - beta, and cumprod accumulated in double. */
Test(scheduler, alphas_cumprod_bit_exact) {
    json_t *root = load(FIX "sched_cases.json");
    const char *key;
    json_t *want;
    int n_cfg = 0;
    json_object_foreach(json_object_get(root, "alphas_cumprod"), key, want) {
        char path[256];
        snprintf(path, sizeof path, FIX "sched_%s.config.json", key);
        SchedConfig cfg;
        Err err = {0};
        cr_assert_eq(sched_config_load(&cfg, SCHED_EULER, path, &err), 0, "%s", err.msg);
        Scheduler s;
        cr_assert_eq(scheduler_init(&s, &cfg, 10, &err), 0);
        cr_assert_eq(json_array_size(want), (size_t)s.n_train);
        for (int i = 0; i < s.n_train; i++)
            cr_assert_eq(s.alphas_cumprod[i], (float)json_number_value(json_array_get(want, i)),
                         "%s: alphas_cumprod[%d] = %.9g, torch %.9g", key, i,
                         (double)s.alphas_cumprod[i],
                         json_number_value(json_array_get(want, i)));
        scheduler_deinit(&s);
        n_cfg++;
    }
    cr_assert_eq(n_cfg, 3);
    json_decref(root);
}

/* The same run twice after scheduler_reset gives the same latents (DPM-Solver's and PNDM's
 * history and the step index are reset). */
Test(scheduler, reset_repeats) {
    static const SchedKind kinds[] = {SCHED_DPMPP_2M, SCHED_PNDM};
    for (int ki = 0; ki < 2; ki++) {
        SchedConfig cfg;
        Err err = {0};
        cr_assert_eq(sched_config_load(&cfg, kinds[ki], FIX "sched_sdxl.config.json", &err), 0,
                     "%s", err.msg);
        Scheduler s;
        cr_assert_eq(scheduler_init(&s, &cfg, 8, &err), 0);
        float a[8], b[8], mo[8];
        for (int rep = 0; rep < 2; rep++) {
            float *x = rep ? b : a;
            for (int k = 0; k < 8; k++)
                x[k] = (float)k - 3.5f;
            for (int i = 0; i < s.n_steps; i++) {
                fixed_output(x, s.timesteps[i], mo, 8);
                cr_assert_eq(scheduler_step(&s, mo, x, NULL, x, 8, &err), 0);
            }
            scheduler_reset(&s);
        }
        cr_assert_eq(memcmp(a, b, sizeof a), 0, "%s", sched_kind_name(kinds[ki]));
        scheduler_deinit(&s);
    }
}

static void bad_config(SchedKind kind, const char *json, const char *needle) {
    SchedConfig c;
    sched_config_default(&c, kind);
    c.steps_offset = 77; /* must stay as it was */
    Err err = {0};
    cr_assert_eq(sched_config_parse(&c, kind, json, "unet/scheduler_config.json", &err),
                 ERR_FORMAT, "%s was accepted", json);
    cr_assert(strstr(err.msg, "unet/scheduler_config.json"), "%s", err.msg);
    cr_assert(strstr(err.msg, needle), "message \"%s\" lacks \"%s\"", err.msg, needle);
    cr_assert_eq(c.steps_offset, 77);
}

Test(scheduler, bad_configs) {
    bad_config(SCHED_EULER, "{\"beta_start\": 0.1,", "line 1");
    bad_config(SCHED_EULER, "[1, 2]", "not a JSON object");
    bad_config(SCHED_EULER, "{\"beta_start\": \"0.1\"}", "\"beta_start\" must be a number");
    bad_config(SCHED_DDIM, "{\"beta_schedule\": \"cosine\"}", "squaredcos_cap_v2");
    bad_config(SCHED_EULER, "{\"timestep_spacing\": \"uniform\"}", "linspace, leading");
    bad_config(SCHED_EULER, "{\"num_train_timesteps\": 10.5}", "num_train_timesteps");
    bad_config(SCHED_EULER, "{\"num_train_timesteps\": 0}", "num_train_timesteps");
    bad_config(SCHED_EULER, "{\"prediction_type\": \"flow\"}", "prediction_type");
    bad_config(SCHED_EULER_A, "{\"prediction_type\": \"sample\"}", "euler_a");
    bad_config(SCHED_DDIM, "{\"clip_sample\": 1}", "true or false");
    bad_config(SCHED_DDIM, "{\"thresholding\": true}", "thresholding");
    bad_config(SCHED_EULER, "{\"trained_betas\": [0.1, 0.2]}", "trained_betas");
    bad_config(SCHED_EULER, "{\"rescale_betas_zero_snr\": \"yes\"}", "rescale_betas_zero_snr");
    bad_config(SCHED_EULER, "{\"use_exponential_sigmas\": true}", "use_exponential_sigmas");
    bad_config(SCHED_EULER, "{\"interpolation_type\": \"log_linear\"}", "interpolation_type");
    bad_config(SCHED_DPMPP_2M, "{\"algorithm_type\": \"sde-dpmsolver++\"}", "algorithm_type");
    bad_config(SCHED_DPMPP_2M, "{\"solver_order\": 3}", "solver_order");
    bad_config(SCHED_DPMPP_2M_KARRAS, "{\"final_sigmas_type\": \"one\"}", "zero or sigma_min");
    bad_config(SCHED_EULER, "{\"beta_start\": 0.5, \"beta_end\": 1.5}", "beta_end");
    bad_config(SCHED_EULER, "{\"sigma_min\": -1}", "sigma_min");
}

/* Keys of other schedulers are ignored, as diffusers' from_config ignores them; keys the kind
 * does not read do not change it. */
Test(scheduler, foreign_keys_ignored) {
    SchedConfig c;
    Err err = {0};
    cr_assert_eq(sched_config_parse(&c, SCHED_EULER,
                                    "{\"_class_name\": \"PNDMScheduler\", \"skip_prk_steps\": "
                                    "true, \"clip_sample\": \"bad but not Euler's\", "
                                    "\"solver_order\": 9, \"steps_offset\": 1}",
                                    "x.json", &err),
                 0, "%s", err.msg);
    cr_assert_eq(c.steps_offset, 1);
    cr_assert_eq(c.spacing, SCHED_SPACING_LINSPACE);
    cr_assert_eq(sched_config_parse(&c, SCHED_DDIM, "{}", "x.json", &err), 0);
    cr_assert_eq(c.spacing, SCHED_SPACING_LEADING);
    cr_assert_eq(sched_config_parse(&c, SCHED_DPMPP_2M_KARRAS,
                                    "{\"use_karras_sigmas\": false}", "x.json", &err), 0);
    cr_assert_eq(c.use_karras_sigmas, 1);
}

/* Python's JSON words, as diffusers writes them: -Infinity read as a number, NaN refused,
 * the words inside strings left alone. */
Test(scheduler, python_json_words) {
    SchedConfig c;
    Err err = {0};
    cr_assert_eq(sched_config_load(&c, SCHED_DPMPP_2M, FIX "sched_dpmsaved.config.json", &err),
                 0, "%s", err.msg);
    cr_assert(isinf(c.lambda_min_clipped) && c.lambda_min_clipped < 0);
    cr_assert_eq(c.use_karras_sigmas, 1);
    cr_assert_eq(c.solver_heun, 1);
    cr_assert_eq(sched_config_parse(&c, SCHED_DPMPP_2M, "{\"lambda_min_clipped\": -5.5, "
                                    "\"_x\": \"NaN -Infinity \\\" Infinity\"}", "x.json", &err),
                 0, "%s", err.msg);
    cr_assert_eq(c.lambda_min_clipped, -5.5);
    bad_config(SCHED_DPMPP_2M, "{\"lambda_min_clipped\": NaN}", "must be a number");
    bad_config(SCHED_EULER, "{\"beta_end\": Infinity}", "beta_end");
}

Test(scheduler, step_count_and_noise_errors) {
    SchedConfig c;
    sched_config_default(&c, SCHED_EULER_A);
    Scheduler s;
    Err err = {0};
    cr_assert_eq(scheduler_init(&s, &c, 0, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "1 to 1000"), "%s", err.msg);
    cr_assert_eq(scheduler_init(&s, &c, 1001, &err), ERR_USAGE);
    cr_assert_eq(scheduler_init(&s, &c, 3, &err), 0);
    float x[4] = {1, 2, 3, 4}, mo[4] = {0};
    cr_assert_eq(scheduler_step(&s, mo, x, NULL, x, 4, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "noise"), "%s", err.msg);
    cr_assert_eq(s.step_index, 0);
    cr_assert_eq(x[0], 1.0f);
    scheduler_deinit(&s);
    cr_assert_eq(sched_config_load(&c, SCHED_EULER, FIX "no_such_config.json", &err),
                 ERR_NOTFOUND);
    /* DDIM's leading spacing with steps_offset 1 and 1000 steps would index timestep 1000 */
    sched_config_default(&c, SCHED_DDIM);
    c.steps_offset = 1;
    cr_assert_eq(scheduler_init(&s, &c, 1000, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "timestep 1000"), "%s", err.msg);
    cr_assert_eq(scheduler_init(&s, &c, 999, &err), 0, "%s", err.msg);
    cr_assert_eq(s.timesteps[0], 999.0);
    scheduler_deinit(&s);
}

/* PNDM's config as diffusers' PNDMScheduler reads it: its own defaults (leading spacing, no
 * alpha 1 at the end, Runge-Kutta steps), no zero-SNR rescaling (not a PNDMScheduler key), no
 * "sample" prediction; the Runge-Kutta warm-up needs 4 steps; PLMS runs N + 1 UNet calls. */
Test(scheduler, pndm_config_and_steps) {
    SchedConfig c;
    Err err = {0};
    cr_assert_eq(sched_config_parse(&c, SCHED_PNDM, "{\"rescale_betas_zero_snr\": true, "
                                    "\"clip_sample\": \"not PNDM's\"}", "x.json", &err), 0,
                 "%s", err.msg);
    cr_assert_eq(c.spacing, SCHED_SPACING_LEADING);
    cr_assert_eq(c.set_alpha_to_one, 0);
    cr_assert_eq(c.skip_prk_steps, 0);
    cr_assert_eq(c.rescale_zero_snr, 0);
    cr_assert_eq(sched_kind_from_name("pndm"), SCHED_PNDM);
    bad_config(SCHED_PNDM, "{\"prediction_type\": \"sample\"}", "pndm");
    bad_config(SCHED_PNDM, "{\"skip_prk_steps\": \"yes\"}", "skip_prk_steps");
    Scheduler s;
    cr_assert_eq(scheduler_init(&s, &c, 3, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "skip_prk_steps") && strstr(err.msg, "4 steps"), "%s", err.msg);
    cr_assert_eq(scheduler_init(&s, &c, 4, &err), 0, "%s", err.msg);
    cr_assert_eq(s.n_steps, 13);
    scheduler_deinit(&s);
    c.skip_prk_steps = 1;
    cr_assert_eq(scheduler_init(&s, &c, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(s.n_steps, 1);
    scheduler_deinit(&s);
    /* leading spacing with steps_offset 1 and 1000 steps would reach timestep 1000 */
    c.steps_offset = 1;
    cr_assert_eq(scheduler_init(&s, &c, 1000, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "timestep 1000"), "%s", err.msg);
}
