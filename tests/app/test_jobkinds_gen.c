/* Tests for src/app/jobkinds_gen.c: the generate job kind run as a job on the tiny random SD
 * pipeline fixture (64x64, 2 steps) — images, rows, progress in images, the log; resumed
 * (kept, not regenerated); cancelled (nothing half-written); its GPU rule; bad parameters
 * refused when the job is added. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobkind.h"
#include "jobs.h"
#include "fmt_csv.h"
#include "gpu.h"
#include "image.h"
#include "jobkinds_gen.h"
#include "store_catalog.h"
#include "store_jobs.h"
#include "store_models.h"
#include "support.h"
#include "support_fixtures.h"

#define FIX_SD "tests/gen/fixtures/pipeline_sd"

static char tmpdir[64];
static char out_dir[256];
static char model[256]; /* the fixture copied into the workspace: a job reads only there */

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "jobgen");
    snprintf(out_dir, sizeof out_dir, "%s/gen", tmpdir);
    snprintf(model, sizeof model, "%s/tiny-sd", tmpdir);
    cr_assert_eq(support_sh("cp -r %s %s", FIX_SD, model), 0);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(jobkinds_gen, .init = setup, .fini = teardown);

static int run_gen(Store *st, int cancel, int64_t *id, Err *err) {
    const char *names[] = {"model", "prompt", "seeds", "steps", "out", "device"};
    const char *values[] = {model, "a red fox in the snow", "0,1", "2", out_dir, "cpu"};
    return support_run_job(st, "generate", 6, names, values, cancel, id, err);
}

static int n_images(Store *st) {
    StoreCounts sc;
    cr_assert_eq(store_counts(st, &sc, NULL), 0);
    int n = (int)sc.images;
    store_counts_deinit(&sc);
    return n;
}

Test(jobkinds_gen, generates_resumes_and_reports, .timeout = 120) {
    Store *st = support_store_open(tmpdir, "t.db", NULL, 0);
    Err err = {0};
    int64_t id;
    cr_assert_eq(run_gen(st, 0, &id, &err), 0, "%s", err.msg);
    cr_assert_eq(n_images(st), 2);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert_float_eq(r.done, 2, 0);
    cr_assert_float_eq(r.total, 2, 0);
    cr_assert_str_eq(r.unit, "images");
    store_job_row_deinit(&r);
    cr_assert(support_job_log_has(st, id, "2 images: 2 generated"));
    cr_assert_eq(support_sh("test $(find %s -name '*.png' | wc -l) -eq 2", out_dir), 0);
    cr_assert_eq(support_sh("f=$(find %s -name 0.png) && cp $f %s/keep.png", out_dir, tmpdir),
                 0);
    /* again: kept */
    cr_assert_eq(run_gen(st, 0, &id, &err), 0, "%s", err.msg);
    cr_assert(support_job_log_has(st, id, "2 images: 0 generated (0 redone), 2 kept"));
    cr_assert_eq(n_images(st), 2);
    cr_assert_eq(support_sh("cmp -s $(find %s -name 0.png) %s/keep.png", out_dir, tmpdir), 0);
    store_close(st);
}

Test(jobkinds_gen, cancel_leaves_no_half_file, .timeout = 120) {
    Store *st = support_store_open(tmpdir, "t.db", NULL, 0);
    Err err = {0};
    int64_t id;
    cr_assert_eq(run_gen(st, 1, &id, &err), ERR_CANCELLED, "%s", err.msg);
    cr_assert_eq(support_sh("test $(find %s -name '*.png' -o -name '*.tmp-*' | wc -l) -eq 0",
                            out_dir), 0);
    cr_assert_eq(n_images(st), 0);
    store_close(st);
}

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

Test(jobkinds_gen, a_model_or_lora_outside_the_workspace_is_refused) {
    Store *st = support_store_open(tmpdir, "t.db", NULL, 0);
    Err err = {0};
    const char *names[] = {"model", "prompt", "out", "device", "lora"};
    const char *values[] = {model, "x", out_dir, "cpu", ""};
    cr_assert_eq(queue_gen(st, 4, names, values, &err), 0, "%s", err.msg);
    values[0] = FIX_SD; /* the repository's copy: outside this workspace */
    cr_assert_eq(queue_gen(st, 4, names, values, &err), ERR_DENIED, "%s", err.msg);
    cr_assert(strstr(err.msg, "generate --model"), "%s", err.msg);
    /* registered under a name: its folder is checked the same way */
    cr_assert_eq(store_model_add(st, "diffusion", "far", "/usr/share", NULL, &err), 0);
    values[0] = "far";
    cr_assert_eq(queue_gen(st, 4, names, values, &err), ERR_DENIED, "%s", err.msg);
    values[0] = model;
    values[4] = "/etc/hostname:0.5";
    cr_assert_eq(queue_gen(st, 5, names, values, &err), ERR_DENIED, "%s", err.msg);
    cr_assert(strstr(err.msg, "generate --lora"), "%s", err.msg);
    store_close(st);
}

Test(jobkinds_gen, gpu_rule_and_bad_params) {
    const JobKind *k = jobkind_find("generate");
    cr_assert_not_null(k);
    JobParams *p;
    Err err = {0};
    const char *n1[] = {"prompt", "device"}, *v1[] = {"x", "cpu"};
    cr_assert_eq(job_params_parse(k, 2, n1, v1, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(k->gpus_for(p), 0);
    job_params_free(p);
    const char *n2[] = {"prompt"}, *v2[] = {"x"}; /* auto: every free GPU, a worker each */
    cr_assert_eq(job_params_parse(k, 1, n2, v2, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(k->gpus_for(p), JOBKIND_GPUS_ALL);
    job_params_free(p);
    const char *n5[] = {"prompt", "device"}, *v5[] = {"x", "cuda"};
    cr_assert_eq(job_params_parse(k, 2, n5, v5, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(k->gpus_for(p), JOBKIND_GPUS_ALL);
    job_params_free(p);
    const char *n6[] = {"prompt", "device"}, *v6[] = {"x", "cuda:1"}; /* one GPU */
    cr_assert_eq(job_params_parse(k, 2, n6, v6, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(k->gpus_for(p), 1);
    job_params_free(p);
    const char *n3[] = {"prompt", "from-store"}, *v3[] = {"x", "true"};
    cr_assert_eq(job_params_parse(k, 2, n3, v3, &p, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "exactly one of"), "%s", err.msg);
    const char *n4[] = {"prompt", "shard"}, *v4[] = {"x", "0/3"};
    cr_assert_eq(job_params_parse(k, 2, n4, v4, &p, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "--shard 0/3"), "%s", err.msg);
}

/* The job on two GPUs (the scheduler configured with two; this machine has none, so each
 * worker's cuda:N opens as the CPU, with a note, the same code path a GPU takes): one worker
 * per GPU, each image's gpu_id in metadata.csv, and the same bytes as one CPU worker. */
Test(jobkinds_gen, two_gpus_two_workers_the_same_images, .timeout = 240) {
    GpuSystem *gs = gpu_open();
    int have_gpu = gpu_count(gs) > 0;
    gpu_close(gs);
    if (have_gpu) /* the workers would run on it: other numerics than the CPU image's */
        cr_skip_test("a GPU is present; this test needs two GPUs that open as the CPU");
    Store *st = support_store_open(tmpdir, "t.db", NULL, 0);
    Err err = {0};
    char one[300], two[300];
    snprintf(one, sizeof one, "%s/one", tmpdir);
    snprintf(two, sizeof two, "%s/two", tmpdir);
    const char *names[] = {"model", "prompt", "seeds", "steps", "out", "device"};
    const char *values[] = {model, "a red fox in the snow", "0,1,2,3", "2", one, "cpu"};
    int64_t id;
    cr_assert_eq(support_run_job(st, "generate", 6, names, values, 0, &id, &err), 0, "%s",
                 err.msg);
    /* queued as `easel generate --queue` queues it: device auto wants every GPU */
    values[4] = two;
    values[5] = "auto";
    JobParams *p;
    cr_assert_eq(job_params_parse(jobkind_find("generate"), 6, names, values, &p, &err), 0,
                 "%s", err.msg);
    JobNew jn = {.gpus_wanted = JOB_GPUS_OF_KIND};
    cr_assert_eq(jobs_add(st, p, &jn, &id, &err), 0, "%s", err.msg);
    cr_assert_eq(jn.gpus_wanted, JOBKIND_GPUS_ALL);
    JobClaim c = {.worker = "h:1:t0", .host = "h", .pid = 1, .n_gpus = 2, .gpu_share = 1};
    JobRow r;
    cr_assert_eq(store_job_claim(st, &c, &r, &err), 1, "%s", err.msg);
    cr_assert_str_eq(r.gpus, "0,1");
    atomic_int flag = 0;
    JobCtx *ctx = job_ctx_new(st, id, NULL, r.gpus, &flag);
    store_job_row_deinit(&r);
    cr_assert_eq(jobkind_find("generate")->run(ctx, p, &err), 0, "%s", err.msg);
    job_ctx_free(ctx);
    job_params_free(p);
    cr_assert(support_job_log_has(st, id, "generating on 2 GPUs, one worker each"));
    cr_assert(support_job_log_has(st, id, "cuda:1: "), "each worker's device note is logged");
    cr_assert(support_job_log_has(st, id, "4 images: 4 generated"));
    cr_assert(support_job_log_has(st, id, "2 workers, 0 of them stopped early"));
    CsvTable t = {0};
    char meta[400];
    snprintf(meta, sizeof meta, "%s/metadata.csv", two);
    cr_assert_eq(fmt_csv_read(meta, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t.n_rows, 5);
    int col = fmt_csv_column(&t.rows[0], "gpu_id");
    cr_assert_eq(col, 8, "the multi-GPU layout's gpu_id after the single-GPU columns");
    for (size_t i = 1; i < t.n_rows; i++) {
        const char *g = t.rows[i].field[col];
        cr_assert(strcmp(g, "0") == 0 || strcmp(g, "1") == 0, "gpu_id '%s'", g);
        cr_assert_eq(support_sh("cmp -s %s/%s %s/%s", one, t.rows[i].field[2], two,
                                t.rows[i].field[2]), 0, "%s differs", t.rows[i].field[2]);
    }
    fmt_csv_deinit(&t);
    store_close(st);
}

/* --size: any multiple of 8 from 8 (the pipeline's rule, as diffusers'), for the job and so
 * for `easel generate`, which parses the same schema. */
Test(jobkinds_gen, small_sizes_any_multiple_of_8, .timeout = 120) {
    const JobKind *k = jobkind_find("generate");
    JobParams *p;
    Err err = {0};
    const char *bad[] = {"0x8", "4x8", "12x8", "8x4100", "8x", "x8", "8x8x8"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *n[] = {"prompt", "size"}, *v[] = {"x", bad[i]};
        cr_assert_eq(job_params_parse(k, 2, n, v, &p, &err), ERR_USAGE, "%s", bad[i]);
        cr_assert(strstr(err.msg, "multiple of 8 from 8 to 4096"), "%s", err.msg);
    }
    Store *st = support_store_open(tmpdir, "t.db", NULL, 0);
    const char *names[] = {"model", "prompt", "seeds", "steps", "out", "device", "size"};
    const char *values[] = {model, "a red fox", "3", "2", out_dir, "cpu", "24x8"};
    int64_t id;
    cr_assert_eq(support_run_job(st, "generate", 7, names, values, 0, &id, &err), 0, "%s",
                 err.msg);
    cr_assert(support_job_log_has(st, id, "1 images: 1 generated"));
    char *found = NULL;
    support_run(out_dir, &found, NULL, "find . -name 3.png");
    cr_assert(found && found[0], "no 3.png");
    found[strcspn(found, "\n")] = '\0';
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out_dir, found);
    Image im = {0};
    cr_assert_eq(image_load(path, 3, &im, &err), 0, "%s", err.msg);
    cr_assert(im.w == 24 && im.h == 8, "%dx%d", im.w, im.h);
    image_deinit(&im);
    free(found);
    store_close(st);
}
