/* test_pipeline — the whole text-to-image pipeline against diffusers' StableDiffusionPipeline
 * and StableDiffusionXLPipeline (fixtures from tests/gen/make_pipeline_fixtures.py: tiny random
 * SD-1.5- and SDXL-shaped diffusers folders and diffusers' 8-bit images for a fixed prompt,
 * negative prompt, seed, steps, guidance, size and each scheduler): PSNR >= 50 dB on the CPU
 * engine; a wrong step count is caught; given latents; Turbo's one trailing step; progress and
 * cancel; the errors of bad folders and of what is not supported. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ftw.h>

#include "backend.h"
#include "backend_cpu.h"
#include "base.h"
#include "pipeline.h"
#include "pipeline_fixture.h"
#include "sd_text.h"

#define FIX "tests/gen/fixtures/"

TestSuite(pipeline, .init = setup, .fini = teardown);

/* A fresh folder under /tmp (removed by rm_tree). */
static char *test_tmpdir(void) {
    char *d = xstrdup("/tmp/easel-pipeline-XXXXXX");
    cr_assert(mkdtemp(d), "mkdtemp");
    return d;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(char *dir) {
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static void *load_file(const char *path, size_t want) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s: cannot open (make it with tests/gen/make_pipeline_fixtures.py)", path);
    char *v = xmalloc(want + 1);
    size_t got = fread(v, 1, want + 1, f);
    fclose(f);
    cr_assert_eq(got, want, "%s: %zu bytes, expected %zu", path, got, want);
    return v;
}

/* The case NAME of pipeline_cases.json or te_lora_cases.json (make_pipeline_fixtures.py
 * --te-lora). */
static json_t *find_case(const char *name) {
    static const char *const files[] = {FIX "pipeline_cases.json", FIX "te_lora_cases.json"};
    for (int k = 0; k < 2; k++) {
        json_error_t e;
        json_t *all = json_load_file(files[k], 0, &e);
        cr_assert(all, "%s: line %d: %s", files[k], e.line, e.text);
        size_t i;
        json_t *c;
        json_array_foreach(all, i, c) {
            if (!strcmp(json_string_value(json_object_get(c, "name")), name)) {
                json_incref(c);
                json_decref(all);
                return c;
            }
        }
        json_decref(all);
    }
    cr_assert_fail("no case %s in pipeline_cases.json or te_lora_cases.json", name);
    return NULL;
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n) {
    double se = 0;
    for (size_t i = 0; i < n; i++)
        se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    if (se == 0)
        return INFINITY;
    return 10 * log10(255.0 * 255.0 / (se / (double)n));
}

static const char *str(json_t *c, const char *k) {
    return json_string_value(json_object_get(c, k));
}

static DType case_weights = DTYPE_F32;
static SdRng case_rng = SD_RNG_TORCH_CPU;

/* Generate case NAME with the model at MODEL (NULL: the case's) and STEPS (0: the case's);
 * returns the PSNR against diffusers' image. */
static double run_case(const char *name, const char *model, int steps) {
    json_t *c = find_case(name);
    char *mpath = model ? xstrdup(model) : xasprintf(FIX "%s", str(c, "model"));
    Err err = {0};
    SdPipeline *p = NULL;
    SdLora lora = {NULL, 1.0f};
    SdPipelineConfig pc = {case_weights, &lora, 0};
    char *lpath = NULL;
    if (json_object_get(c, "lora")) {
        lpath = xasprintf(FIX "%s", str(c, "lora"));
        lora.path = lpath;
        lora.scale = (float)json_number_value(json_object_get(c, "lora_scale"));
        pc.n_loras = 1;
    }
    cr_assert_eq(sd_pipeline_open(mpath, be, &pc, &p, &err), 0, "%s", err.msg);
    free(lpath);
    SdGenParams g = {0};
    g.prompt = str(c, "prompt");
    g.negative = str(c, "negative");
    g.width = (int)json_integer_value(json_object_get(c, "w"));
    g.height = (int)json_integer_value(json_object_get(c, "h"));
    g.steps = steps ? steps : (int)json_integer_value(json_object_get(c, "steps"));
    g.guidance = (float)json_number_value(json_object_get(c, "guidance"));
    g.scheduler = str(c, "scheduler");
    g.seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
    g.rng = case_rng;
    size_t npix = (size_t)g.width * g.height * 3;
    float *lat = NULL;
    if (json_object_get(c, "latents")) {
        char *lp = xasprintf(FIX "pipeline_%s.lat", name);
        lat = load_file(lp, (size_t)4 * (g.width / 8) * (g.height / 8) * sizeof(float));
        free(lp);
        g.latents = lat;
    }
    uint8_t *rgb = NULL;
    int W = 0, H = 0;
    cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &W, &H, &err), 0, "%s: %s", name,
                 err.msg);
    cr_assert(W == g.width && H == g.height, "%s: %dx%d", name, W, H);
    char *ip = xasprintf(FIX "pipeline_%s.rgb", name);
    uint8_t *want = load_file(ip, npix);
    double db = psnr(rgb, want, npix);
    fprintf(stderr, "pipeline %s (%s, %d steps): PSNR %.2f dB against diffusers\n", name,
            sd_pipeline_family(p), g.steps, db);
    free(ip), free(want), free(rgb), free(lat), free(mpath);
    sd_pipeline_close(p);
    json_decref(c);
    return db;
}

static void matches(const char *name) {
    double db = run_case(name, NULL, 0);
    cr_assert(db >= 50.0, "%s: PSNR %.2f dB < 50 against diffusers' image", name, db);
}

/* The text encoders run on the pipeline's backend, not on CPU backends of their own. */
Test(pipeline, text_encoders_on_the_pipeline_backend) {
    static const char *const models[] = {FIX "pipeline_sd", FIX "pipeline_sdxl"};
    for (int m = 0; m < 2; m++) {
        SdPipeline *p = NULL;
        Err err = {0};
        cr_assert_eq(sd_pipeline_open(models[m], be, NULL, &p, &err), 0, "%s", err.msg);
        const SdText *t = sd_pipeline_text(p);
        cr_assert(t && sd_text_encoder(t, 0));
        for (int i = 0; i < 2 && sd_text_encoder(t, i); i++)
            cr_assert(clip_model_backend(sd_text_encoder(t, i)) == be, "%s: encoder %d",
                      models[m], i);
        sd_pipeline_close(p);
    }
}

Test(pipeline, sd_euler) { matches("sd_euler"); }
Test(pipeline, sd_euler_ancestral) { matches("sd_euler_a"); }
Test(pipeline, sd_ddim) { matches("sd_ddim"); }
Test(pipeline, sd_dpmpp_2m) { matches("sd_dpmpp_2m"); }
Test(pipeline, sd_dpmpp_2m_karras) { matches("sd_dpmpp_2m_karras"); }
/* scheduler NULL: the model's scheduler_config.json (DDIMScheduler), a 64x48 image */
Test(pipeline, sd_model_scheduler_non_square) { matches("sd_default"); }
Test(pipeline, sd_given_latents) { matches("sd_latents"); }
/* 72x56 (9x7 latents): sizes that are multiples of 8 but not of the VAE scale × 2^(levels−1),
 * as diffusers allows (its UNet's upsample_size); SDXL at 56x72 */
Test(pipeline, sd_any_multiple_of_8) { matches("sd_odd"); }
Test(pipeline, sdxl_any_multiple_of_8) { matches("sdxl_odd"); }
/* A side that is not a multiple of the VAE's scale (8) is refused with the rule. */
Test(pipeline, size_not_a_multiple_of_8_is_named) {
    SdPipeline *p = NULL;
    Err err = {0};
    cr_assert_eq(sd_pipeline_open(FIX "pipeline_sd", be, NULL, &p, &err), 0, "%s", err.msg);
    SdGenParams g = {0};
    g.prompt = "a fox";
    g.steps = 1;
    g.scheduler = "euler";
    g.width = 68;
    g.height = 56;
    uint8_t *rgb = NULL;
    int W, H;
    cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &W, &H, &err), ERR_USAGE);
    cr_assert_null(rgb);
    cr_assert(strstr(err.msg, "size 68x56: width and height must be multiples of 8"), "%s",
              err.msg);
    sd_pipeline_close(p);
}
/* a PEFT LoRA at scale 0.7, as diffusers' load_lora_weights + set_adapters apply it */
Test(pipeline, sd_lora) {
    matches("sd_lora");
    size_t n = 64 * 64 * 3;
    uint8_t *with = load_file(FIX "pipeline_sd_lora.rgb", n);
    uint8_t *without = load_file(FIX "pipeline_sd_euler.rgb", n); /* same settings, no LoRA */
    double db = psnr(with, without, n);
    cr_assert(db < 40.0, "the LoRA hardly changes the image (%.2f dB): a weak test", db);
    free(with), free(without);
}

Test(pipeline, sdxl_euler) { matches("sdxl_euler"); }
Test(pipeline, sdxl_euler_ancestral) { matches("sdxl_euler_a"); }
Test(pipeline, sdxl_dpmpp_2m) { matches("sdxl_dpmpp_2m"); }
/* no negative prompt: SDXL's force_zeros_for_empty_prompt zeros */
Test(pipeline, sdxl_zeroed_negative) { matches("sdxl_noneg"); }

Test(pipeline, wrong_step_count_is_caught) {
    double ok = run_case("sd_euler", NULL, 0), off = run_case("sd_euler", NULL, 5);
    cr_assert(off < 50.0 && off < ok - 3.0, "5 steps against 4: PSNR %.2f dB (4 steps: %.2f)",
              off, ok);
}

/* bf16 weights (UNet, VAE, text encoders; f32 activations): close to diffusers' f32 image,
 * not equal */
Test(pipeline, bf16_weights_close) {
    case_weights = DTYPE_BF16;
    double db = run_case("sdxl_euler", NULL, 0);
    cr_assert(db >= 25.0 && db < 80.0, "bf16 weights: PSNR %.2f dB", db);
}

/* torch-cuda draws (Philox) give another image than torch-cpu's for the same seed */
Test(pipeline, torch_cuda_rng_draws_other_latents) {
    case_rng = SD_RNG_TORCH_CUDA;
    double db = run_case("sd_euler", NULL, 0);
    cr_assert(db < 30.0, "torch-cuda noise gave the torch-cpu image (%.2f dB)", db);
}

/* A model folder of symlinks to the SD fixture whose scheduler config says TEXT. */
static char *model_with_scheduler(const char *dir, const char *text) {
    static const char *parts[] = {"model_index.json", "unet", "vae", "text_encoder",
                                  "tokenizer"};
    char cwd[4096];
    cr_assert(getcwd(cwd, sizeof cwd));
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        char *src = xasprintf("%s/" FIX "pipeline_sd/%s", cwd, parts[i]);
        char *dst = xasprintf("%s/%s", dir, parts[i]);
        cr_assert_eq(symlink(src, dst), 0, "symlink %s", dst);
        free(src), free(dst);
    }
    char *sd = xasprintf("%s/scheduler", dir);
    cr_assert_eq(mkdir(sd, 0755), 0);
    char *cf = xasprintf("%s/scheduler_config.json", sd);
    FILE *f = fopen(cf, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    free(sd), free(cf);
    return xstrdup(dir);
}

static const char *SD_SCHED_TRAILING =
    "{\"_class_name\": \"EulerAncestralDiscreteScheduler\", \"beta_start\": 0.00085,"
    " \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\", \"num_train_timesteps\": 1000,"
    " \"steps_offset\": 1, \"timestep_spacing\": \"trailing\"}";

/* SD-Turbo's setting: guidance 0 (no CFG), one step, trailing spacing */
Test(pipeline, turbo_one_trailing_step) {
    char *dir = test_tmpdir();
    char *m = model_with_scheduler(dir, SD_SCHED_TRAILING);
    double db = run_case("sd_turbo", m, 0);
    cr_assert(db >= 50.0, "turbo: PSNR %.2f dB", db);
    free(m), rm_tree(dir);
}

/* SD 1.5's own scheduler folder (PNDMScheduler, PLMS: 4 steps are 5 UNet calls): no scheduler
 * asked for, diffusers' image */
Test(pipeline, sd_model_pndm_scheduler) {
    char *dir = test_tmpdir();
    json_t *c = find_case("sd_pndm");
    char *cp = xasprintf(FIX "%s", str(c, "scheduler_config"));
    json_error_t e;
    json_t *cfg = json_load_file(cp, 0, &e);
    cr_assert(cfg, "%s: %s", cp, e.text);
    char *text = json_dumps(cfg, 0);
    char *m = model_with_scheduler(dir, text);
    double db = run_case("sd_pndm", m, 0);
    cr_assert(db >= 50.0, "pndm: PSNR %.2f dB", db);
    free(text), free(cp), free(m), json_decref(cfg), json_decref(c), rm_tree(dir);
}

typedef struct Count {
    int reports, cancel_after;
    double last_done, last_total;
} Count;

static void on_progress(void *u, double done, double total, const char *unit) {
    Count *c = u;
    cr_assert_str_eq(unit, "steps");
    c->reports++;
    c->last_done = done;
    c->last_total = total;
}

static int on_cancelled(void *u) {
    Count *c = u;
    return c->cancel_after >= 0 && c->last_done >= c->cancel_after;
}

static int generate_with(Count *c, int steps, uint8_t **rgb, Err *err) {
    SdPipeline *p = NULL;
    cr_assert_eq(sd_pipeline_open(FIX "pipeline_sd", be, NULL, &p, err), 0, "%s", err->msg);
    SdGenParams g = {0};
    g.prompt = "a fox";
    g.steps = steps;
    g.guidance = 7.5f;
    g.scheduler = "euler";
    Progress pr = {on_progress, on_cancelled, NULL, c};
    int W, H, rc = sd_pipeline_generate(p, &g, &pr, rgb, &W, &H, err);
    sd_pipeline_close(p);
    return rc;
}

Test(pipeline, progress_per_step) {
    Count c = {0, -1, 0, 0};
    uint8_t *rgb = NULL;
    Err err = {0};
    cr_assert_eq(generate_with(&c, 3, &rgb, &err), 0, "%s", err.msg);
    cr_assert(rgb);
    cr_assert_eq(c.reports, 4, "%d reports (0, then one per step)", c.reports);
    cr_assert(c.last_done == 3 && c.last_total == 3);
    free(rgb);
}

Test(pipeline, cancel_within_a_step) {
    Count c = {0, 2, 0, 0};
    uint8_t *rgb = NULL;
    Err err = {0};
    cr_assert_eq(generate_with(&c, 6, &rgb, &err), ERR_CANCELLED, "%s", err.msg);
    cr_assert_null(rgb);
    cr_assert(c.last_done == 2, "stopped after step %g", c.last_done);
    cr_assert(strstr(err.msg, "cancelled"), "%s", err.msg);
}

Test(pipeline, not_a_model_folder_is_named) {
    char *dir = test_tmpdir();
    SdPipeline *p = NULL;
    Err err = {0};
    int rc = sd_pipeline_open(dir, be, NULL, &p, &err);
    cr_assert_eq(rc, ERR_NOTFOUND, "%d %s", rc, err.msg);
    cr_assert_null(p);
    cr_assert(strstr(err.msg, dir) && strstr(err.msg, "model_index.json"), "%s", err.msg);
    rm_tree(dir);
}

Test(pipeline, missing_scheduler_config_is_named) {
    char *dir = test_tmpdir();
    char cwd[4096];
    cr_assert(getcwd(cwd, sizeof cwd));
    static const char *parts[] = {"model_index.json", "unet", "vae", "text_encoder",
                                  "tokenizer"};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        char *src = xasprintf("%s/" FIX "pipeline_sd/%s", cwd, parts[i]);
        char *dst = xasprintf("%s/%s", dir, parts[i]);
        cr_assert_eq(symlink(src, dst), 0);
        free(src), free(dst);
    }
    SdPipeline *p = NULL;
    Err err = {0};
    cr_assert_eq(sd_pipeline_open(dir, be, NULL, &p, &err), ERR_NOTFOUND, "%s", err.msg);
    cr_assert_null(p);
    cr_assert(strstr(err.msg, dir) && strstr(err.msg, "scheduler/scheduler_config.json"), "%s",
              err.msg);
    rm_tree(dir);
}

Test(pipeline, missing_unet_is_named) {
    char *dir = test_tmpdir();
    char cwd[4096];
    cr_assert(getcwd(cwd, sizeof cwd));
    static const char *parts[] = {"model_index.json", "vae", "text_encoder", "tokenizer",
                                  "scheduler"};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        char *src = xasprintf("%s/" FIX "pipeline_sd/%s", cwd, parts[i]);
        char *dst = xasprintf("%s/%s", dir, parts[i]);
        cr_assert_eq(symlink(src, dst), 0);
        free(src), free(dst);
    }
    SdPipeline *p = NULL;
    Err err = {0};
    cr_assert_neq(sd_pipeline_open(dir, be, NULL, &p, &err), 0);
    cr_assert_null(p);
    cr_assert(strstr(err.msg, dir) && strstr(err.msg, "unet"), "%s", err.msg);
    rm_tree(dir);
}

Test(pipeline, unimplemented_model_scheduler_is_named) {
    char *dir = test_tmpdir();
    char *m = model_with_scheduler(dir, "{\"_class_name\": \"LMSDiscreteScheduler\", "
                                        "\"beta_schedule\": \"scaled_linear\"}");
    SdPipeline *p = NULL;
    Err err = {0};
    cr_assert_eq(sd_pipeline_open(m, be, NULL, &p, &err), 0, "%s", err.msg);
    SdGenParams g = {0};
    g.prompt = "x";
    g.steps = 2;
    uint8_t *rgb = NULL;
    int W, H;
    cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &W, &H, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "LMSDiscreteScheduler") && strstr(err.msg, "scheduler_config.json") &&
                  strstr(err.msg, "euler_a"),
              "%s", err.msg);
    g.scheduler = "heun";
    cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &W, &H, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "heun"), "%s", err.msg);
    g.scheduler = "euler";
    g.width = 60;
    cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &W, &H, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "60x"), "%s", err.msg);
    g.width = -64;
    cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &W, &H, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "-64x"), "%s", err.msg);
    g.width = 64;
    g.steps = 1001;
    cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &W, &H, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "1001"), "%s", err.msg);
    cr_assert_null(rgb);
    sd_pipeline_close(p);
    free(m), rm_tree(dir);
}

Test(pipeline, lora_errors_name_the_file) {
    SdLora l = {"tests/gen/fixtures/no-such-lora.safetensors", 1.0f};
    SdPipelineConfig cfg = {DTYPE_F32, &l, 1};
    SdPipeline *p = NULL;
    Err err = {0};
    cr_assert_neq(sd_pipeline_open(FIX "pipeline_sd", be, &cfg, &p, &err), 0);
    cr_assert_null(p);
    cr_assert(strstr(err.msg, "no-such-lora.safetensors"), "%s", err.msg);
    /* an SD UNet LoRA on the SDXL model: its adapters match no weight there */
    l.path = FIX "pipeline_sd_lora.safetensors";
    cr_assert_neq(sd_pipeline_open(FIX "pipeline_sdxl", be, &cfg, &p, &err), 0);
    cr_assert_null(p);
    cr_assert(strstr(err.msg, "pipeline_sd_lora.safetensors"), "%s", err.msg);
}

/* LoRA files with UNet and text-encoder adapters (SD: text_encoder; SDXL: both), PEFT and
 * kohya names, at scale 0.8: the image diffusers' load_lora_weights + set_adapters give. */
Test(pipeline, sd_text_encoder_lora_peft) { matches("sd_te_lora_peft"); }
Test(pipeline, sd_text_encoder_lora_kohya) { matches("sd_te_lora_kohya"); }
Test(pipeline, sdxl_text_encoder_loras_peft) { matches("sdxl_te_lora_peft"); }
Test(pipeline, sdxl_text_encoder_loras_kohya) { matches("sdxl_te_lora_kohya"); }

/* The text-encoder adapters are applied (not only the UNet's): the conditioning changes, in
 * each of SDXL's encoders; an SDXL LoRA on the SD model names its second-encoder adapter. */
Test(pipeline, text_encoder_adapters_change_the_conditioning) {
    static const struct {
        const char *model, *lora;
    } cs[] = {{FIX "pipeline_sd", FIX "sd_te_lora_peft.safetensors"},
              {FIX "pipeline_sdxl", FIX "sdxl_te_lora_kohya.safetensors"}};
    for (int k = 0; k < 2; k++) {
        Err err = {0};
        SdText *a = NULL, *b = NULL;
        const char *lp[1] = {cs[k].lora};
        float sc[1] = {0.8f};
        SdTextOptions o = {NULL, lp, sc, 1, NULL};
        cr_assert_eq(sd_text_open(cs[k].model, NULL, CLIP_WEIGHTS_F32, &a, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(sd_text_open(cs[k].model, &o, CLIP_WEIGHTS_F32, &b, &err), 0, "%s",
                     err.msg);
        int T = sd_text_context(a), D = sd_text_width(a), P = sd_text_pooled_width(a);
        float *ea = xmalloc(sizeof(float) * (size_t)T * D), *eb = xmalloc(sizeof(float) *
                                                                            (size_t)T * D);
        float *pa = P ? xmalloc(sizeof(float) * (size_t)P) : NULL;
        float *pb = P ? xmalloc(sizeof(float) * (size_t)P) : NULL;
        const char *txt = "a red fox";
        cr_assert_eq(sd_text_encode(a, &txt, 1, 0, ea, pa, &err), 0, "%s", err.msg);
        cr_assert_eq(sd_text_encode(b, &txt, 1, 0, eb, pb, &err), 0, "%s", err.msg);
        /* each encoder's channels of the concatenation changed */
        int w0 = clip_model_config(sd_text_encoder(a, 0))->text_width;
        double d0 = 0, d1 = 0;
        for (int t = 0; t < T; t++)
            for (int c = 0; c < D; c++) {
                double d = fabs((double)ea[t * D + c] - eb[t * D + c]);
                if (c < w0)
                    d0 += d;
                else
                    d1 += d;
            }
        cr_assert_gt(d0, 1e-3, "%s: the first text encoder's adapters changed nothing",
                     cs[k].lora);
        if (P)
            cr_assert_gt(d1, 1e-3, "%s: the second text encoder's adapters changed nothing",
                         cs[k].lora);
        free(ea), free(eb), free(pa), free(pb);
        sd_text_free(a);
        sd_text_free(b);
    }
    /* SDXL's adapters on the SD model: the first one that matches nothing is named */
    SdLora l = {FIX "sdxl_te_lora_peft.safetensors", 1.0f};
    SdPipelineConfig cfg = {DTYPE_F32, &l, 1};
    SdPipeline *p = NULL;
    Err err = {0};
    cr_assert_neq(sd_pipeline_open(FIX "pipeline_sd", be, &cfg, &p, &err), 0);
    cr_assert_null(p);
    cr_assert(strstr(err.msg, "sdxl_te_lora_peft.safetensors"), "%s", err.msg);
    fprintf(stderr, "SDXL LoRA on SD: %s\n", err.msg);
}

Test(pipeline, family_and_default_size) {
    Err err = {0};
    SdPipeline *p = NULL;
    cr_assert_eq(sd_pipeline_open(FIX "pipeline_sdxl", be, NULL, &p, &err), 0, "%s", err.msg);
    int w, h;
    sd_pipeline_default_size(p, &w, &h);
    cr_assert_str_eq(sd_pipeline_family(p), "sdxl");
    cr_assert(w == 64 && h == 64, "%dx%d (unet sample_size 8 x vae scale 8)", w, h);
    sd_pipeline_close(p);
    cr_assert_eq(sd_pipeline_open(FIX "pipeline_sd", be, NULL, &p, &err), 0, "%s", err.msg);
    cr_assert_str_eq(sd_pipeline_family(p), "sd1");
    sd_pipeline_close(p);
}
