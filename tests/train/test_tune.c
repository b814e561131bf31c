/* `easel tune`'s run (tune.h) on the tiny SD pipeline of tests/gen (64² images, 8² latents):
 * metrics and checkpoints, determinism, resume after kill -9 equal to an uninterrupted run bit
 * for bit, the store's run and metrics, sample images, and bad pairs refused before anything
 * is written. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "backend.h"
#include "image.h"
#include "pipeline.h"
#include "store.h"
#include "store_run_images.h"
#include "store_runs.h"
#include "tune.h"
#include "tune_pairs_src.h"

#define MODEL "tests/gen/fixtures/pipeline_sd"

static char tmp[256];

/* A temp folder with four 64² PNGs (two brighter, two darker, with texture) and a pairs
 * file of two prompts preferring the brighter. */
static void setup(void) {
    snprintf(tmp, sizeof tmp, "/tmp/easel-tune-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    uint8_t px[64 * 64 * 3];
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 64 * 64 * 3; i++)
            px[i] = (uint8_t)((k < 2 ? 150 : 60) + ((i * (7 + k)) % 50));
        char p[300];
        snprintf(p, sizeof p, "%s/img%d.png", tmp, k);
        Err err = {0};
        cr_assert_eq(image_write_png(p, px, 64, 64, 3, &err), 0, "%s", err.msg);
    }
    char p[300];
    snprintf(p, sizeof p, "%s/pairs.jsonl", tmp);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"prompt\": \"a red fox\", \"img_pos\": \"img0.png\", \"img_neg\": "
               "\"img2.png\", \"label\": 1.0}\n");
    fprintf(f, "{\"prompt\": \"a blue bird\", \"img_pos\": \"img3.png\", \"img_neg\": "
               "\"img1.png\", \"label\": 0}\n");
    fprintf(f, "{\"prompt\": \"a cat\", \"img_pos\": \"img3.png\", \"img_neg\": "
               "\"img1.png\", \"label\": 0.5}\n");
    fclose(f);
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(tune, .init = setup, .fini = teardown, .timeout = 300);

static void config(TuneConfig *c, const char *out, const char *objective) {
    tune_config_defaults(c);
    snprintf(c->model, sizeof c->model, "%s", MODEL);
    snprintf(c->pairs, sizeof c->pairs, "%s/pairs.jsonl", tmp);
    snprintf(c->out, sizeof c->out, "%s/%s", tmp, out);
    snprintf(c->objective, sizeof c->objective, "%s", objective);
    snprintf(c->device, sizeof c->device, "cpu");
    snprintf(c->sample_seeds, sizeof c->sample_seeds, "none");
    c->steps = 4;
    c->save_every = 2;
    c->batch = 1;
    c->accum = 2;
    c->lr = 1e-3;
    c->warmup = 2;
    c->seed = 7;
    c->threads = 2;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = xmalloc((size_t)len + 1);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = 0;
    fclose(f);
    if (n)
        *n = (size_t)len;
    return b;
}

static void same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    cr_assert(na == nb && !memcmp(x, y, na), "%s and %s differ", a, b);
    free(x), free(y);
}

/* The metrics lines without pairs_per_s (a timing). */
static char *metrics_sans_time(const char *out) {
    char p[1100];
    snprintf(p, sizeof p, "%s/metrics.jsonl", out);
    char *m = slurp(p, NULL);
    for (char *q = strstr(m, ", \"pairs_per_s\""); q; q = strstr(q, ", \"pairs_per_s\"")) {
        char *e = strchr(q, '}');
        memmove(q, e, strlen(e) + 1);
    }
    return m;
}

static void run_ok(const TuneConfig *c, const TuneHooks *h) {
    Err err = {0};
    cr_assert_eq(tune_run(NULL, c, h, &err), 0, "%s", err.msg);
}

Test(tune, dpo_run_writes_metrics_checkpoints_and_is_deterministic) {
    TuneConfig a, b;
    config(&a, "a", "dpo");
    config(&b, "b", "dpo");
    run_ok(&a, NULL);
    run_ok(&b, NULL);
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/final/pytorch_lora_weights.safetensors", a.out);
    snprintf(pb, sizeof pb, "%s/final/pytorch_lora_weights.safetensors", b.out);
    same_file(pa, pb);
    snprintf(pa, sizeof pa, "%s/checkpoint-2/optimizer.safetensors", a.out);
    cr_assert(base_is_file(pa), "no checkpoint-2");
    snprintf(pa, sizeof pa, "%s/checkpoint-4/state.json", a.out);
    cr_assert(base_is_file(pa), "no checkpoint of the last step");
    char *ma = metrics_sans_time(a.out), *mb = metrics_sans_time(b.out);
    cr_assert_str_eq(ma, mb);
    /* four steps; the first DPO loss is ln 2 (the adapter starts as the reference), the
     * learning rate warms up linearly */
    int lines = 0, step;
    double loss, acc, margin, kl, lr, gn;
    for (char *l = strtok(ma, "\n"); l; l = strtok(NULL, "\n"), lines++) {
        cr_assert_eq(sscanf(l, "{\"step\": %d, \"loss\": %lf, \"acc\": %lf, \"margin\": %lf, "
                               "\"kl\": %lf, \"lr\": %lf, \"grad_norm\": %lf",
                            &step, &loss, &acc, &margin, &kl, &lr, &gn), 7, "%s", l);
        cr_assert_eq(step, lines + 1);
        if (step == 1) {
            cr_assert_float_eq(loss, log(2.0), 1e-6);
            cr_assert_float_eq(margin, 0, 1e-9);
            cr_assert_float_eq(kl, 0, 1e-9);
            cr_assert_float_eq(lr, 5e-4, 1e-9);
        } else {
            cr_assert_float_eq(lr, 1e-3, 1e-9);
        }
        cr_assert(gn > 0 && isfinite(loss) && acc >= 0 && acc <= 1);
    }
    cr_assert_eq(lines, 4);
    free(ma), free(mb);
}

static void kill_at_3(void *user, int step, int total, int ck, const TuneStepMetrics *m) {
    (void)user, (void)total, (void)ck, (void)m;
    if (step == 3)
        raise(SIGKILL);
}

static void killed_then_resumed_opt(const char *objective, const char *adapter,
                                    const char *optimizer) {
    TuneConfig a, b;
    config(&a, "a", objective);
    config(&b, "b", objective);
    snprintf(a.optimizer, sizeof a.optimizer, "%s", optimizer);
    snprintf(b.optimizer, sizeof b.optimizer, "%s", optimizer);
    snprintf(a.adapter, sizeof a.adapter, "%s", adapter);
    snprintf(b.adapter, sizeof b.adapter, "%s", adapter);
    run_ok(&a, NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        TuneHooks h = {0};
        h.after_step = kill_at_3;
        Err err = {0};
        tune_run(NULL, &b, &h, &err);
        _exit(3);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child was not killed");
    cr_assert_eq(tune_last_checkpoint(b.out), 2);
    char p[1200];
    snprintf(p, sizeof p, "%s/final", b.out);
    cr_assert(!base_is_dir(p), "final/ exists after the kill");
    run_ok(&b, NULL);
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/final/pytorch_lora_weights.safetensors", a.out);
    snprintf(pb, sizeof pb, "%s/final/pytorch_lora_weights.safetensors", b.out);
    same_file(pa, pb);
    snprintf(pa, sizeof pa, "%s/final/optimizer.safetensors", a.out);
    snprintf(pb, sizeof pb, "%s/final/optimizer.safetensors", b.out);
    same_file(pa, pb);
    char *ma = metrics_sans_time(a.out), *mb = metrics_sans_time(b.out);
    cr_assert_str_eq(ma, mb, "the resumed run's metrics differ (or step 3 is there twice)");
    free(ma), free(mb);
}

static void killed_then_resumed(const char *objective, const char *adapter) {
    killed_then_resumed_opt(objective, adapter, "adamw");
}

Test(tune, dpo_resume_after_kill9_equals_uninterrupted) { killed_then_resumed("dpo", "lora"); }
Test(tune, dspo_resume_after_kill9_equals_uninterrupted) { killed_then_resumed("dspo", "lora"); }
Test(tune, adpo_resume_after_kill9_equals_uninterrupted) { killed_then_resumed("adpo", "lora"); }
Test(tune, dora_resume_after_kill9_equals_uninterrupted) { killed_then_resumed("dpo", "dora"); }
Test(tune, adafactor_resume_after_kill9_equals_uninterrupted) {
    killed_then_resumed_opt("dpo", "lora", "adafactor");
}

Test(tune, a_resume_with_other_settings_is_refused) {
    TuneConfig a;
    config(&a, "a", "dpo");
    a.steps = 2;
    run_ok(&a, NULL);
    a.steps = 3;
    a.rank = 4;
    Err err = {0};
    cr_assert_eq(tune_run(NULL, &a, NULL, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "other settings"), "%s", err.msg);
}

Test(tune, metrics_go_to_the_store_as_a_tune_run) {
    char sp[300];
    snprintf(sp, sizeof sp, "%s/easel.db", tmp);
    Err err = {0};
    Store *st = store_open(sp, &err);
    cr_assert_not_null(st, "%s", err.msg);
    TuneConfig a;
    config(&a, "a", "dpo");
    a.steps = 2;
    a.save_every = 1;
    a.sample_steps = 2;
    snprintf(a.sample_seeds, sizeof a.sample_seeds, "4");
    snprintf(a.run_name, sizeof a.run_name, "tune-test");
    cr_assert_eq(tune_run(st, &a, NULL, &err), 0, "%s", err.msg);
    StoreRun r;
    cr_assert_eq(store_run_by_name(st, "tune-test", &r, &err), 0, "%s", err.msg);
    cr_assert_str_eq(r.kind, "tune");
    cr_assert_str_eq(r.state, "succeeded");
    static const char *const names[] = {"loss", "acc", "margin", "kl", "lr", "grad_norm",
                                        "pairs_per_s"};
    for (int i = 0; i < 7; i++) {
        double v;
        int64_t step;
        cr_assert_eq(store_metric_last(st, r.id, "train", names[i], &v, &step, &err), 0,
                     "%s: %s", names[i], err.msg);
        cr_assert_eq(step, 2, "%s", names[i]);
    }
    double v;
    int64_t step;
    cr_assert_eq(store_metric_last(st, r.id, "train", "lr", &v, &step, &err), 0);
    cr_assert_float_eq(v, 1e-3, 1e-9);
    /* the sample images of steps 1 and 2, one per training prompt, for the Monitor */
    StoreRunImage *im;
    size_t ni;
    cr_assert_eq(store_run_images_list(st, r.id, &im, &ni, &err), 0, "%s", err.msg);
    cr_assert_eq(ni, 4);
    for (size_t i = 0; i < ni; i++) {
        cr_assert_eq(im[i].seed, 4);
        cr_assert(base_is_file(im[i].path), "%s", im[i].path);
    }
    store_run_images_free(im, ni);
    store_run_deinit(&r);
    store_close(st);
}

Test(tune, sample_images_at_checkpoints) {
    TuneConfig a;
    config(&a, "a", "dpo");
    a.steps = 2;
    a.save_every = 1;
    a.sample_steps = 2;
    snprintf(a.sample_seeds, sizeof a.sample_seeds, "0,5");
    run_ok(&a, NULL);
    const char *files[] = {"samples/step-1/p0-seed0.png", "samples/step-1/p1-seed5.png",
                           "samples/step-2/p0-seed5.png"};
    for (int i = 0; i < 3; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", a.out, files[i]);
        Image im = {0};
        Err err = {0};
        cr_assert_eq(image_load(p, 3, &im, &err), 0, "%s", err.msg);
        cr_assert_eq(im.w, 64);
        cr_assert_eq(im.h, 64);
        image_deinit(&im);
    }
}

Test(tune, a_pair_with_a_missing_image_is_refused_with_its_line_and_nothing_written) {
    char p[300];
    snprintf(p, sizeof p, "%s/pairs.jsonl", tmp);
    FILE *f = fopen(p, "a");
    fprintf(f, "{\"prompt\": \"x\", \"img_pos\": \"img0.png\", \"img_neg\": \"gone.png\"}\n");
    fclose(f);
    TuneConfig a;
    config(&a, "a", "dpo");
    Err err = {0};
    cr_assert_neq(tune_run(NULL, &a, NULL, &err), 0);
    cr_assert(strstr(err.msg, "pairs.jsonl:4"), "%s", err.msg);
    cr_assert(strstr(err.msg, "gone.png"), "%s", err.msg);
    cr_assert(!base_is_dir(a.out), "the run folder was created");
}

Test(tune, a_bad_pairs_line_is_refused_with_its_line) {
    char p[300];
    snprintf(p, sizeof p, "%s/pairs.jsonl", tmp);
    FILE *f = fopen(p, "a");
    fprintf(f, "{\"prompt\": \"x\", \"img_pos\": \"img0.png\"}\n");
    fclose(f);
    TunePairs ps;
    Err err = {0};
    cr_assert_eq(tune_pairs_load_file(p, NULL, &ps, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "pairs.jsonl:4") && strstr(err.msg, "img_neg"), "%s", err.msg);
}

Test(tune, pairs_file_orientation) {
    char p[300];
    snprintf(p, sizeof p, "%s/pairs.jsonl", tmp);
    TunePairs ps;
    Err err = {0};
    cr_assert_eq(tune_pairs_load_file(p, NULL, &ps, &err), 0, "%s", err.msg);
    cr_assert_eq(ps.n, 2, "the 0.5 pair is skipped");
    cr_assert(strstr(ps.v[0].path_w, "/img0.png") && strstr(ps.v[0].path_l, "/img2.png"));
    cr_assert(strstr(ps.v[1].path_w, "/img1.png") && strstr(ps.v[1].path_l, "/img3.png"),
              "label 0 swaps");
    cr_assert_eq(ps.v[1].line, 2);
    tune_pairs_free(&ps);
}

/* Mean |a − b| over n bytes. */
static double mad(const uint8_t *a, const uint8_t *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a[i] - (int)b[i]);
    return s / (double)n;
}

/* The final adapter file, given to the pipeline as a LoRA (what `easel generate --lora`
 * does: merged into the weights at its alpha/r), renders what the trainer's live adapter
 * rendered into the samples; without it the image differs far more. */
static void adapter_file_renders_as_trained(const char *adapter) {
    TuneConfig a;
    config(&a, "a", "dpo");
    snprintf(a.adapter, sizeof a.adapter, "%s", adapter);
    a.steps = 3;
    a.lr = 3e-2;
    a.warmup = 0;
    a.save_every = 0;
    a.sample_steps = 4;
    snprintf(a.sample_seeds, sizeof a.sample_seeds, "3");
    run_ok(&a, NULL);
    char p[1200];
    snprintf(p, sizeof p, "%s/samples/step-3/p0-seed3.png", a.out);
    Image live = {0};
    Err err = {0};
    cr_assert_eq(image_load(p, 3, &live, &err), 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/final/pytorch_lora_weights.safetensors", a.out);
    Backend *be = NULL;
    BackendConfig bc = {.threads = 2};
    cr_assert_eq(backend_open("cpu", &bc, &be, NULL, 0, &err), 0, "%s", err.msg);
    double d[2];
    for (int k = 0; k < 2; k++) {
        SdLora l = {p, 1.0f};
        SdPipelineConfig pc = {0};
        pc.loras = k ? &l : NULL;
        pc.n_loras = k;
        SdPipeline *pipe = NULL;
        cr_assert_eq(sd_pipeline_open(MODEL, be, &pc, &pipe, &err), 0, "%s", err.msg);
        SdGenParams g = {0};
        g.prompt = "a red fox";
        g.steps = 4;
        g.guidance = 7.5f;
        g.seed = 3;
        uint8_t *rgb = NULL;
        int w, h;
        cr_assert_eq(sd_pipeline_generate(pipe, &g, NULL, &rgb, &w, &h, &err), 0, "%s", err.msg);
        cr_assert(w == live.w && h == live.h);
        d[k] = mad(rgb, live.px, (size_t)w * h * 3);
        free(rgb);
        sd_pipeline_close(pipe);
    }
    cr_assert(d[0] > 2.0, "the adapter changed the image too little to tell (%g)", d[0]);
    cr_assert(d[1] < 0.05 * d[0], "%s file renders %g from the live adapter (base: %g)",
              adapter, d[1], d[0]);
    backend_close(be);
    image_deinit(&live);
}

Test(tune, lora_file_renders_as_trained) { adapter_file_renders_as_trained("lora"); }
Test(tune, dora_file_renders_as_trained) { adapter_file_renders_as_trained("dora"); }

/* SDXL: the pooled text and the time ids go with every sample; the first DPO loss is ln 2
 * there too, and DSPO's SDXL form runs. ADPO takes the pairs' prompt_neg. */
Test(tune, sdxl_runs_dpo_and_dspo) {
    const char *obj[] = {"dpo", "dspo"};
    for (int k = 0; k < 2; k++) {
        TuneConfig a;
        config(&a, obj[k], obj[k]);
        snprintf(a.model, sizeof a.model, "tests/gen/fixtures/pipeline_sdxl");
        a.steps = 2;
        a.accum = 1;
        run_ok(&a, NULL);
        char *m = metrics_sans_time(a.out);
        double loss;
        cr_assert_eq(sscanf(m, "{\"step\": 1, \"loss\": %lf", &loss), 1, "%s", m);
        if (k == 0)
            cr_assert_float_eq(loss, log(2.0), 1e-6);
        cr_assert(isfinite(loss) && strstr(m, "\"step\": 2"), "%s", m);
        free(m);
    }
}

Test(tune, adpo_takes_prompt_neg) {
    char p[300];
    snprintf(p, sizeof p, "%s/pairs.jsonl", tmp);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"prompt\": \"a red fox\", \"prompt_neg\": \"a blue car\", \"img_pos\": "
               "\"img0.png\", \"img_neg\": \"img2.png\"}\n");
    fclose(f);
    TuneConfig a;
    config(&a, "a", "adpo");
    a.steps = 2;
    run_ok(&a, NULL);
    /* one prompt alone and no prompt_neg: refused before anything is written */
    f = fopen(p, "w");
    fprintf(f, "{\"prompt\": \"a red fox\", \"img_pos\": \"img0.png\", \"img_neg\": "
               "\"img2.png\"}\n");
    fclose(f);
    config(&a, "b", "adpo");
    Err err = {0};
    cr_assert_eq(tune_run(NULL, &a, NULL, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "prompt_neg"), "%s", err.msg);
    cr_assert(!base_is_dir(a.out));
}

/* A cancel (Ctrl-C, a job's cancel) stops within a step, inside a long accumulation too, and
 * keeps a checkpoint of the last complete step even without --save-every; running again
 * finishes as an uninterrupted run. */
static int steps_done;
static void count_steps(void *user, int step, int total, int ck, const TuneStepMetrics *m) {
    (void)user, (void)total, (void)ck, (void)m;
    steps_done = step;
}
static int calls_after_2;
/* false when step 3 starts, true at its second micro-batch: a cancel inside a step */
static int cancel_after_2(void *user) {
    (void)user;
    return steps_done >= 2 && ++calls_after_2 >= 2;
}

Test(tune, cancel_keeps_a_checkpoint_and_resumes) {
    TuneConfig a, b;
    config(&a, "a", "dpo");
    config(&b, "b", "dpo");
    a.save_every = b.save_every = 0;
    a.accum = b.accum = 3;
    run_ok(&a, NULL);
    TuneHooks h = {0};
    h.after_step = count_steps;
    h.progress.cancelled = cancel_after_2;
    steps_done = calls_after_2 = 0;
    Err err = {0};
    cr_assert_eq(tune_run(NULL, &b, &h, &err), ERR_CANCELLED);
    cr_assert_eq(calls_after_2, 2, "the cancel was not seen inside step 3");
    cr_assert(strstr(err.msg, "cancelled after step 2"), "%s", err.msg);
    cr_assert_eq(tune_last_checkpoint(b.out), 2);
    run_ok(&b, NULL);
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/final/pytorch_lora_weights.safetensors", a.out);
    snprintf(pb, sizeof pb, "%s/final/pytorch_lora_weights.safetensors", b.out);
    same_file(pa, pb);
}

/* Base weights held in bf16 (what a GPU run takes by default): the adapter still starts as the
 * reference (first DPO loss ln 2) and trains. */
Test(tune, bf16_base_weights) {
    TuneConfig a;
    config(&a, "a", "dpo");
    snprintf(a.dtype, sizeof a.dtype, "bf16");
    a.steps = 2;
    run_ok(&a, NULL);
    char *m = metrics_sans_time(a.out);
    double loss;
    cr_assert_eq(sscanf(m, "{\"step\": 1, \"loss\": %lf", &loss), 1, "%s", m);
    cr_assert_float_eq(loss, log(2.0), 1e-6);
    cr_assert(strstr(m, "\"step\": 2"), "%s", m);
    free(m);
    char p[1200];
    snprintf(p, sizeof p, "%s/config.json", a.out);
    char *cfg = slurp(p, NULL);
    cr_assert(strstr(cfg, "\"dtype\":\"bf16\""), "%s", cfg);
    free(cfg);
}

/* The arena is sized from the UNet's config (tune.c arena_for: 64 MiB + a per-pixel term);
 * the per-pixel term alone must cover what a step needs, or larger models and sizes run out
 * of arena ("scratch arena full": the SD-1.5-shaped UNet at 256² with two pairs did, with the
 * old factor). Measured through the run's sys metrics arena_mb and arena_peak_mb, on the
 * tiny UNet at 512² (64² latents), two pairs, DoRA on linear and conv layers: the peak was
 * 104 MiB against a term of 60 MiB before the fix. */
Test(tune, the_arena_estimate_covers_a_dora_step_at_512) {
    uint8_t *px = xmalloc(512 * 512 * 3);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 512 * 512 * 3; i++)
            px[i] = (uint8_t)((k ? 150 : 60) + ((i * (7 + k)) % 50));
        char p[300];
        snprintf(p, sizeof p, "%s/big%d.png", tmp, k);
        Err err = {0};
        cr_assert_eq(image_write_png(p, px, 512, 512, 3, &err), 0, "%s", err.msg);
    }
    free(px);
    char pp[300], sp[300];
    snprintf(pp, sizeof pp, "%s/big.jsonl", tmp);
    FILE *f = fopen(pp, "w");
    fprintf(f, "{\"prompt\": \"a red fox\", \"img_pos\": \"big1.png\", \"img_neg\": "
               "\"big0.png\"}\n{\"prompt\": \"a cat\", \"img_pos\": \"big0.png\", "
               "\"img_neg\": \"big1.png\"}\n");
    fclose(f);
    snprintf(sp, sizeof sp, "%s/easel.db", tmp);
    Err err = {0};
    Store *st = store_open(sp, &err);
    cr_assert_not_null(st, "%s", err.msg);
    TuneConfig a;
    config(&a, "big", "dpo");
    snprintf(a.pairs, sizeof a.pairs, "%s", pp);
    snprintf(a.adapter, sizeof a.adapter, "dora");
    snprintf(a.targets, sizeof a.targets, "to_q,to_k,to_v,to_out.0,ff.net.0.proj,ff.net.2,"
             "conv1,conv2");
    snprintf(a.run_name, sizeof a.run_name, "big");
    snprintf(a.checkpointing, sizeof a.checkpointing, "on"); /* the checkpointing arena */
    a.width = a.height = 512;
    a.batch = 2;
    a.accum = 1;
    a.steps = 1;
    cr_assert_eq(tune_run(st, &a, NULL, &err), 0, "%s", err.msg);
    StoreRun r;
    cr_assert_eq(store_run_by_name(st, "big", &r, &err), 0, "%s", err.msg);
    double size, peak;
    int64_t step;
    cr_assert_eq(store_metric_last(st, r.id, "sys", "arena_mb", &size, &step, &err), 0);
    cr_assert_eq(store_metric_last(st, r.id, "sys", "arena_peak_mb", &peak, &step, &err), 0);
    cr_assert_gt(peak, 64.0, "a step at 512² takes more than the fixed 64 MiB: %g", peak);
    cr_assert_leq(peak, size - 64.0, "the per-pixel term (%g MiB) does not cover the peak "
                  "(%g MiB)", size - 64.0, peak);
    store_run_deinit(&r);
    store_close(st);
}

/* --checkpointing: on the CPU auto keeps every activation (the arena is address space paid as
 * used), on checkpoints per block; both train the same adapter bit for bit and the store
 * says which ran (sys activations_kept); a bad value is refused. */
Test(tune, checkpointing_modes_train_the_same_adapter) {
    char sp[300];
    snprintf(sp, sizeof sp, "%s/easel.db", tmp);
    Err err = {0};
    Store *st = store_open(sp, &err);
    cr_assert_not_null(st, "%s", err.msg);
    static const char *const modes[] = {"auto", "on", "off"};
    static const double kept[] = {1, 0, 1};
    TuneConfig c[3];
    for (int i = 0; i < 3; i++) {
        config(&c[i], modes[i], "dpo");
        snprintf(c[i].adapter, sizeof c[i].adapter, "dora");
        snprintf(c[i].checkpointing, sizeof c[i].checkpointing, "%s", modes[i]);
        snprintf(c[i].run_name, sizeof c[i].run_name, "ck-%s", modes[i]);
        c[i].steps = 2;
        cr_assert_eq(tune_run(st, &c[i], NULL, &err), 0, "%s: %s", modes[i], err.msg);
        StoreRun r;
        cr_assert_eq(store_run_by_name(st, c[i].run_name, &r, &err), 0, "%s", err.msg);
        double v;
        int64_t step;
        cr_assert_eq(store_metric_last(st, r.id, "sys", "activations_kept", &v, &step, &err), 0,
                     "%s", err.msg);
        cr_assert_eq(v, kept[i], "--checkpointing %s: activations_kept %g", modes[i], v);
        store_run_deinit(&r);
    }
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/final/pytorch_lora_weights.safetensors", c[0].out);
    for (int i = 1; i < 3; i++) {
        snprintf(pb, sizeof pb, "%s/final/pytorch_lora_weights.safetensors", c[i].out);
        same_file(pa, pb);
    }
    store_close(st);
    TuneConfig bad;
    config(&bad, "bad", "dpo");
    snprintf(bad.checkpointing, sizeof bad.checkpointing, "some");
    cr_assert_eq(tune_config_check(&bad, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "--checkpointing 'some'"), "%s", err.msg);
}
