/* qa15: the trust rules (src/data/trust.h) for the generate job: what one user queues may not
 * make another user's worker read or write outside the workspace — a --lora FILE:SCALE whose
 * two readings differ, a prompt folder or image in --out that is a symbolic link leading
 * out, a registered single file's tokenizer, and the CLIP folder a single file borrows its
 * tokenizer from. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobkind.h"
#include "jobs.h"
#include "png_write.h"
#include "store_catalog.h"
#include "store_models.h"
#include "support.h"
#include "support_fixtures.h"

#define FIX_SD "tests/gen/fixtures/pipeline_sd"
#define FIX_LORA "tests/gen/fixtures/pipeline_sd_lora.safetensors"
#define FIX_SINGLE "tests/gen/fixtures/single/sd1.safetensors"
#define FIX_SINGLE_TOK "tests/gen/fixtures/single/sd1/tokenizer"

static char ws[64];      /* the workspace: the store's folder */
static char outside[64]; /* another folder: no output root */
static char model[256];
static char out_dir[256];

static void setup(void) {
    support_tmpdir_make(ws, sizeof ws, "gentrust");
    support_tmpdir_make(outside, sizeof outside, "gentrust-out");
    snprintf(model, sizeof model, "%s/tiny-sd", ws);
    snprintf(out_dir, sizeof out_dir, "%s/gen", ws);
    cr_assert_eq(support_sh("cp -r %s %s", FIX_SD, model), 0);
}

static void teardown(void) {
    support_tmpdir_remove(ws);
    support_tmpdir_remove(outside);
}

TestSuite(generate_trust, .init = setup, .fini = teardown);

/* Queue a generate job as `easel generate --queue` does (jobs_add checks the trust rules). */
static int queue_gen(Store *st, int n, const char *const *names, const char *const *values,
                     Err *err) {
    JobParams *p;
    int rc = job_params_parse(jobkind_find("generate"), n, names, values, &p, err);
    cr_assert_eq(rc, 0, "%s", err->msg);
    JobNew jn = {.gpus_wanted = JOB_GPUS_OF_KIND};
    int64_t id;
    rc = jobs_add(st, p, &jn, &id, err);
    job_params_free(p);
    return rc;
}

static int n_images(Store *st) {
    StoreCounts sc;
    cr_assert_eq(store_counts(st, &sc, NULL), 0);
    int n = (int)sc.images;
    store_counts_deinit(&sc);
    return n;
}

/* One image of prompt p1, seed 0, at 64x64 in 1 step, as a job. */
static int run_p1(Store *st, Err *err) {
    char prompts[256];
    support_write_file(ws, "prompts.csv", "prompt_id,prompt\np1,a red fox\n", prompts,
                       sizeof prompts);
    const char *names[] = {"model", "prompts", "seeds", "steps", "size", "out", "device"};
    const char *values[] = {model, prompts, "0", "1", "64x64", out_dir, "cpu"};
    int64_t id;
    return support_run_job(st, "generate", 7, names, values, 0, &id, err);
}

Test(generate_trust, lora_file_and_scale_both_checked) {
    Store *st = support_store_open(ws, "t.db", NULL, 0);
    Err err = {0};
    /* "l.safetensors" leads out; "l.safetensors:1" is a file inside. The run reads the
     * first (":1" is a scale), so the queue must not pass on the second. */
    cr_assert_eq(support_sh("cp %s %s/l.safetensors && ln -s %s/l.safetensors %s/l.safetensors"
                            " && cp %s '%s/l.safetensors:1' && cp %s %s/in.safetensors",
                            FIX_LORA, outside, outside, ws, FIX_LORA, ws, FIX_LORA, ws), 0);
    char lora[256];
    snprintf(lora, sizeof lora, "%s/l.safetensors:1", ws);
    const char *names[] = {"model", "prompt", "out", "device", "lora"};
    const char *values[] = {model, "x", out_dir, "cpu", lora};
    cr_assert_eq(queue_gen(st, 5, names, values, &err), ERR_DENIED, "%s", err.msg);
    cr_assert(strstr(err.msg, "generate --lora"), "%s", err.msg);
    cr_assert(strstr(err.msg, outside), "%s", err.msg);
    /* a LoRA inside, with and without a scale, still passes */
    snprintf(lora, sizeof lora, "%s/in.safetensors:0.5,%s/in.safetensors", ws, ws);
    err = (Err){0};
    cr_assert_eq(queue_gen(st, 5, names, values, &err), 0, "%s", err.msg);
    store_close(st);
}

Test(generate_trust, prompt_folder_linked_out_is_not_written, .timeout = 120) {
    Store *st = support_store_open(ws, "t.db", NULL, 0);
    Err err = {0};
    cr_assert_eq(support_sh("mkdir -p %s && ln -s %s %s/p1", out_dir, outside, out_dir), 0);
    cr_assert_eq(run_p1(st, &err), ERR_FORMAT, "%s", err.msg); /* its one image failed */
    cr_assert_eq(support_sh("test -z \"$(ls -A %s)\"", outside), 0, "the worker wrote in %s",
                 outside);
    cr_assert_eq(n_images(st), 0);
    cr_assert_eq(support_sh("grep -q 'leads out of the output folder' %s/failed.csv", out_dir),
                 0);
    store_close(st);
}

Test(generate_trust, image_linked_out_is_not_read_or_kept, .timeout = 120) {
    Store *st = support_store_open(ws, "t.db", NULL, 0);
    Err err = {0};
    /* a 64x64 PNG outside, that a resume would keep (it decodes at the run's size) */
    uint8_t rgb[64 * 64 * 3];
    memset(rgb, 200, sizeof rgb);
    char png[256];
    snprintf(png, sizeof png, "%s/secret.png", outside);
    cr_assert_eq(png_write_rgb(png, rgb, 64, 64, &err), 0, "%s", err.msg);
    cr_assert_eq(support_sh("mkdir -p %s/p1 && ln -s %s %s/p1/0.png", out_dir, png, out_dir), 0);
    cr_assert_eq(run_p1(st, &err), ERR_FORMAT, "%s", err.msg); /* its one image failed */
    cr_assert_eq(n_images(st), 0, "the outside image was kept as the job's");
    cr_assert_eq(support_sh("grep -q 'leads out of the output folder' %s/failed.csv", out_dir),
                 0);
    cr_assert_eq(support_sh("test -L %s/p1/0.png", out_dir), 0);
    /* the link removed, the same job makes the image */
    cr_assert_eq(support_sh("rm %s/p1/0.png", out_dir), 0);
    cr_assert_eq(run_p1(st, &err), 0, "%s", err.msg);
    cr_assert_eq(n_images(st), 1);
    cr_assert_eq(support_sh("test -f %s/p1/0.png && ! test -e %s/failed.csv", out_dir, out_dir),
                 0);
    store_close(st);
}

Test(generate_trust, registered_tokenizer_outside_is_refused) {
    Store *st = support_store_open(ws, "t.db", NULL, 0);
    Err err = {0};
    char path[256];
    snprintf(path, sizeof path, "%s/one.safetensors", ws);
    cr_assert_eq(support_sh("cp %s %s", FIX_SINGLE, path), 0);
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"tokenizer\":\"%s\"}", outside);
    cr_assert_eq(store_model_add(st, "diffusion", "one", path, cfg, &err), 0, "%s", err.msg);
    const char *names[] = {"model", "prompt", "out", "device"};
    const char *values[] = {"one", "x", out_dir, "cpu"};
    cr_assert_eq(queue_gen(st, 4, names, values, &err), ERR_DENIED, "%s", err.msg);
    cr_assert(strstr(err.msg, "tokenizer of model 'one'"), "%s", err.msg);
    store_close(st);
}

Test(generate_trust, borrowed_clip_tokenizer_outside_is_refused, .timeout = 120) {
    Store *st = support_store_open(ws, "t.db", NULL, 0);
    Err err = {0};
    /* a single file in the workspace; the first registered CLIP model (outside) lends its
     * tokenizer when nothing else names one */
    snprintf(model, sizeof model, "%s/one.safetensors", ws);
    cr_assert_eq(support_sh("cp %s %s && cp %s/* %s/", FIX_SINGLE, model, FIX_SINGLE_TOK,
                            outside), 0);
    cr_assert_eq(store_model_add(st, "clip", "c", outside, NULL, &err), 0, "%s", err.msg);
    int rc = run_p1(st, &err);
    cr_assert_eq(rc, ERR_DENIED, "%d %s", rc, err.msg);
    cr_assert(strstr(err.msg, "generate tokenizer"), "%s", err.msg);
    cr_assert_eq(n_images(st), 0);
    store_close(st);
}

Test(generate_trust, model_folder_with_a_link_out_is_refused_when_run, .timeout = 120) {
    Store *st = support_store_open(ws, "t.db", NULL, 0);
    Err err = {0};
    /* the folder is inside; its UNet weights are a link to another user's copy */
    cr_assert_eq(support_sh("mv %s/unet %s/unet && ln -s %s/unet %s/unet", model, outside,
                            outside, model), 0);
    int rc = run_p1(st, &err);
    cr_assert_eq(rc, ERR_DENIED, "%d %s", rc, err.msg);
    cr_assert(strstr(err.msg, "generate --model"), "%s", err.msg);
    cr_assert(strstr(err.msg, outside), "%s", err.msg);
    cr_assert_eq(n_images(st), 0);
    /* the weights themselves inside: it runs */
    cr_assert_eq(support_sh("rm %s/unet && cp -r %s/unet %s/unet", model, outside, model), 0);
    cr_assert_eq(run_p1(st, &err), 0, "%s", err.msg);
    cr_assert_eq(n_images(st), 1);
    store_close(st);
}

/* Not a trust rule, but the job's end (qa15): a job in which every image failed has not
 * succeeded. */
Test(generate_trust, a_job_that_makes_no_image_fails, .timeout = 120) {
    Store *st = support_store_open(ws, "t.db", NULL, 0);
    Err err = {0};
    /* DDIM with the fixture's steps_offset 1: 1000 steps start past the last timestep, an
     * error for every image */
    const char *names[] = {"model", "prompt", "seeds", "steps", "scheduler", "out", "device"};
    const char *values[] = {model, "a red fox", "0,1", "1000", "ddim", out_dir, "cpu"};
    int64_t id;
    int rc = support_run_job(st, "generate", 7, names, values, 0, &id, &err);
    cr_assert_eq(rc, ERR_FORMAT, "%d %s", rc, err.msg);
    cr_assert(strstr(err.msg, "no image made: all 2 failed"), "%s", err.msg);
    cr_assert(support_job_log_has(st, id, "past the model's last"));
    /* settings an image can be made with: it succeeds */
    values[2] = "0";
    values[3] = "2";
    cr_assert_eq(support_run_job(st, "generate", 7, names, values, 0, &id, &err), 0, "%s",
                 err.msg);
    store_close(st);
}

/* No --model: the one registered model is used, and its folder is checked like a named one. */
Test(generate_trust, the_one_registered_model_is_checked_when_none_is_named) {
    Store *st = support_store_open(ws, "t.db", NULL, 0);
    Err err = {0};
    char far[256];
    snprintf(far, sizeof far, "%s/tiny-sd", outside);
    cr_assert_eq(support_sh("cp -r %s %s", FIX_SD, far), 0);
    cr_assert_eq(store_model_add(st, "diffusion", "far", far, NULL, &err), 0, "%s", err.msg);
    const char *names[] = {"prompt", "out", "device"};
    const char *values[] = {"x", out_dir, "cpu"};
    cr_assert_eq(queue_gen(st, 3, names, values, &err), ERR_DENIED, "%s", err.msg);
    cr_assert(strstr(err.msg, "generate --model") && strstr(err.msg, outside), "%s", err.msg);
    store_close(st);
}

/* An adapter folder (--lora DIR) stands for DIR/pytorch_lora_weights.safetensors: the folder
 * inside the workspace does not make a link in it leading out readable (failed before the
 * run checked the adapter file the folder stands for). */
Test(generate_trust, adapter_folder_with_a_link_out_is_refused_when_run, .timeout = 120) {
    Store *st = support_store_open(ws, "t.db", NULL, 0);
    Err err = {0};
    cr_assert_eq(support_sh("mkdir %s/adapter && cp %s %s/w.safetensors && ln -s "
                            "%s/w.safetensors %s/adapter/pytorch_lora_weights.safetensors",
                            ws, FIX_LORA, outside, outside, ws), 0);
    char prompts[256], lora[256];
    support_write_file(ws, "prompts.csv", "prompt_id,prompt\np1,a red fox\n", prompts,
                       sizeof prompts);
    snprintf(lora, sizeof lora, "%s/adapter", ws);
    const char *names[] = {"model", "prompts", "seeds", "steps", "size", "out", "device", "lora"};
    const char *values[] = {model, prompts, "0", "1", "64x64", out_dir, "cpu", lora};
    int64_t id;
    int rc = support_run_job(st, "generate", 8, names, values, 0, &id, &err);
    cr_assert_eq(rc, ERR_DENIED, "%d %s", rc, err.msg);
    cr_assert(strstr(err.msg, "generate --lora"), "%s", err.msg);
    cr_assert(strstr(err.msg, outside), "%s", err.msg);
    cr_assert_eq(n_images(st), 0);
    /* the adapter file itself inside: it runs */
    cr_assert_eq(support_sh("rm %s/adapter/pytorch_lora_weights.safetensors && cp %s "
                            "%s/adapter/pytorch_lora_weights.safetensors", ws, FIX_LORA, ws), 0);
    cr_assert_eq(support_run_job(st, "generate", 8, names, values, 0, &id, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(n_images(st), 1);
    store_close(st);
}
