/* test_generate_gpus — `easel generate --gpus N` as a user gives it: the most GPUs a queued
 * job holds (what the scheduler gives it, one worker each) and a foreground run uses; a bad
 * value refused; cpu and cuda:N keep their own rule. This machine's GPUs do not matter: only
 * what the job asks the scheduler for is checked, and the foreground run on the tiny SD
 * fixture runs wherever --device auto lands. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static char tmpdir[64];
static char dbpath[128];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "gengpus");
    snprintf(dbpath, sizeof dbpath, "%s/s.db", tmpdir);
    cr_assert_eq(support_sh("bin/easel --db %s init >/dev/null", dbpath), 0);
    cr_assert_eq(support_sh("cp -r tests/gen/fixtures/pipeline_sd %s/m", tmpdir), 0);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(gengpus, .init = setup, .fini = teardown);

static int run(char **out, char **err, const char *args) {
    return support_run(NULL, out, err, "bin/easel --db %s %s", dbpath, args);
}

/* Queue a generate job with EXTRA flags; the GPUs it wants, as `jobs show` prints them. */
static void queued_wants(const char *extra, const char *want) {
    char args[512], *out, *err;
    snprintf(args, sizeof args, "generate --model %s/m --prompt 'a fox' --steps 2 --out %s/g "
             "%s --queue", tmpdir, tmpdir, extra);
    cr_assert_eq(run(&out, &err, args), 0, "%s", err);
    long id = strtol(out, NULL, 10);
    free(out);
    free(err);
    snprintf(args, sizeof args, "jobs show %ld", id);
    cr_assert_eq(run(&out, &err, args), 0, "%s", err);
    cr_assert(strstr(out, want), "%s: expected '%s' in\n%s", extra, want, out);
    free(out);
    free(err);
}

Test(gengpus, queued_jobs_hold_at_most_n_gpus) {
    queued_wants("", "(wanted -1)");             /* auto: every free GPU */
    queued_wants("--gpus 2", "(wanted 2)");
    queued_wants("--device cuda --gpus 3", "(wanted 3)");
    queued_wants("--device cuda:1 --gpus 3", "(wanted 1)");
    queued_wants("--device cpu --gpus 2", "(wanted 0)");
}

Test(gengpus, bad_values_are_refused) {
    const char *bad[] = {"0", "-1", "two", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char args[256], *out, *err;
        snprintf(args, sizeof args, "generate --prompt x --gpus %s", bad[i]);
        cr_assert_eq(run(&out, &err, args), 2, "%s", bad[i]);
        cr_assert(strstr(err, "easel: generate: --gpus"), "%s", err);
        free(out);
        free(err);
    }
    char *out, *err;
    cr_assert_eq(run(&out, &err, "generate --prompt x --gpus"), 2);
    cr_assert(strstr(err, "--gpus needs a value"), "%s", err);
    free(out);
    free(err);
}

Test(gengpus, foreground_run_with_a_limit, .timeout = 120) {
    char args[512], *out, *err;
    snprintf(args, sizeof args, "generate --model %s/m --prompt 'a fox' --seeds 0,1 --steps 2 "
             "--out %s/g --gpus 1", tmpdir, tmpdir);
    cr_assert_eq(run(&out, &err, args), 0, "%s", err);
    cr_assert(strstr(out, "2 images: 2 generated"), "%s", out);
    free(out);
    free(err);
    /* one GPU at most: the single-GPU layout */
    snprintf(args, sizeof args, "head -1 %s/g/metadata.csv | grep -qx 'prompt_id,seed,path,"
             "prompt,width,height,num_inference_steps,guidance_scale'", tmpdir);
    cr_assert_eq(support_sh("%s", args), 0);
}
