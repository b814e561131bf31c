/* Tests of `easel train/eval/score/runs` as a user runs them: bad flags and missing inputs
 * give clear messages and exit codes and leave the store as it was; `runs` prints what the
 * store holds. Runs bin/easel (skipped with the reason if it is not built). */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "store_runs.h"
#include "support.h"

static char dir[64];
static char easel[512];
static char out[65536];

__attribute__((format(printf, 1, 2))) static int run(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = support_vrun_buf(dir, out, sizeof out, fmt, ap);
    va_end(ap);
    return rc;
}

static void setup(void) {
    support_easel_path(easel, sizeof easel);
    support_tmpdir_make(dir, sizeof dir, "clitrain");
    cr_assert_eq(run("%s --db t.db init", easel), 0, "%s", out);
}

static void teardown(void) {
    support_tmpdir_remove(dir);
}

TestSuite(cli_train, .init = setup, .fini = teardown, .timeout = 60);

Test(cli_train, bad_flags_are_usage_errors) {
    cr_assert_eq(run("%s --db t.db train --fusion-method sideways", easel), 2, "%s", out);
    cr_assert(strstr(out, "fusion-method"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --epochs", easel), 2, "%s", out);
    cr_assert(strstr(out, "needs a value"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --bogus 1", easel), 2, "%s", out);
    cr_assert(strstr(out, "unknown option '--bogus'"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --resume", easel), 2, "%s", out);
    cr_assert(strstr(out, "--output"), "%s", out);
    cr_assert_eq(run("%s --db t.db eval x --split sideways", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db t.db runs", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db t.db train --help", easel), 0);
    cr_assert(strstr(out, "--min-rating-diff"), "%s", out);
    cr_assert(strstr(out, "example:"), "%s", out);
}

Test(cli_train, nothing_to_train_names_the_cause_and_what_to_do) {
    cr_assert_eq(run("%s --db t.db train --epochs 1 --output o", easel), 1, "%s", out);
    cr_assert(strstr(out, "no training pairs"), "%s", out);
    cr_assert(strstr(out, "easel import ratings"), "%s", out);
    /* a failed run is recorded as failed, never left running */
    cr_assert_eq(run("%s --db t.db runs list", easel), 0, "%s", out);
    cr_assert(strstr(out, "failed"), "%s", out);
    cr_assert(!strstr(out, "running"), "%s", out);
}

Test(cli_train, eval_and_score_name_a_missing_checkpoint) {
    cr_assert_eq(run("%s --db t.db eval nowhere/best", easel), 1, "%s", out);
    cr_assert(strstr(out, "nowhere/best"), "%s", out);
    cr_assert(strstr(out, "checkpoint"), "%s", out);
    cr_assert_eq(run("%s --db t.db score nowhere/best", easel), 1, "%s", out);
    cr_assert(strstr(out, "nowhere/best"), "%s", out);
    cr_assert_eq(run("%s --db t.db score nowhere/best missing.png", easel), 1, "%s", out);
    cr_assert(strstr(out, "missing.png"), "%s", out);
}

Test(cli_train, runs_list_and_show) {
    char path[128];
    snprintf(path, sizeof path, "%s/t.db", dir);
    Err err = {0};
    Store *st = store_open(path, &err);
    int64_t id;
    cr_assert_eq(store_run_create(st, "r-one", "train-reward", "{\"epochs\":3}", 0, "/x/r-one",
                                  &id, &err), 0);
    StoreMetric m[3] = {{.split = "val", .name = "fidelity_acc", .step = 5, .value = 0.875},
                        {.split = "sys", .name = "epoch", .step = 5, .value = 2},
                        {.split = "train", .name = "loss", .step = 5, .value = 0.25}};
    cr_assert_eq(store_metrics_add(st, id, m, 3, &err), 0);
    cr_assert_eq(store_checkpoint_put(st, id, "best", "/x/r-one/best", 5, 2, NULL, &err), 0);
    store_run_set_state(st, id, "succeeded", &err);
    store_close(st);
    cr_assert_eq(run("%s --db t.db runs list", easel), 0, "%s", out);
    cr_assert(strstr(out, "r-one"), "%s", out);
    cr_assert(strstr(out, "succeeded"), "%s", out);
    cr_assert_eq(run("%s --db t.db runs show r-one", easel), 0, "%s", out);
    cr_assert(strstr(out, "0.8750"), "val fidelity acc:\n%s", out);
    cr_assert(strstr(out, "/x/r-one/best"), "%s", out);
    /* a finished run: --follow prints what there is and returns */
    cr_assert_eq(run("%s --db t.db runs show 1 --follow", easel), 0, "%s", out);
    cr_assert(strstr(out, "val step=5 epoch=0.000 fidelity_acc=0.875"), "%s", out);
    cr_assert(strstr(out, "run r-one succeeded"), "%s", out);
    cr_assert_eq(run("%s --db t.db runs show nope", easel), 1, "%s", out);
    cr_assert(strstr(out, "no run 'nope'"), "%s", out);
}
