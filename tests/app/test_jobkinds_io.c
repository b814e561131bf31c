/* Tests for src/app/jobkinds_io.c: the import and export job kinds run as jobs — success, a bad
 * file (failed, store unchanged, file:line in the log), cancel (nothing written), and an
 * export that cannot be written (failed, no partial file). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobkind.h"
#include "store_catalog.h"
#include "store_jobs.h"
#include "support.h"
#include "support_fixtures.h"

static char tmpdir[64];
static char path[256];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "jobio");
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(jobkinds_io, .init = setup, .fini = teardown);

static const char *write_file(const char *name, const char *text) {
    return support_write_file(tmpdir, name, text, path, sizeof path);
}

static int n_prompts(Store *st) {
    StoreCounts sc;
    cr_assert_eq(store_counts(st, &sc, NULL), 0);
    int n = (int)sc.prompts;
    store_counts_deinit(&sc);
    return n;
}

Test(jobkinds_io, import_prompts_succeeds_with_progress_and_report) {
    Store *st = store_open(":memory:", NULL);
    const char *f = write_file("prompts.csv", "prompt_id,prompt\n1,a red cube\n2,a blue cat\n");
    const char *names[] = {"what", "path"}, *values[] = {"prompts", f};
    Err err = {0};
    int64_t id;
    cr_assert_eq(support_run_job(st, "import", 2, names, values, 0, &id, &err), 0, "%s", err.msg);
    cr_assert_eq(n_prompts(st), 2);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert_float_eq(r.done, 2, 0);
    cr_assert_float_eq(r.total, 2, 0);
    cr_assert_str_eq(r.unit, "rows");
    store_job_row_deinit(&r);
    cr_assert(support_job_log_has(st, id, "2 prompts"));
    store_close(st);
}

Test(jobkinds_io, bad_file_fails_and_leaves_the_store_unchanged) {
    Store *st = store_open(":memory:", NULL);
    const char *f = write_file("bad.csv", "prompt_id,prompt\n1,ok\n2,\"never closed\n");
    const char *names[] = {"what", "path"}, *values[] = {"prompts", f};
    Err err = {0};
    int64_t id;
    cr_assert_eq(support_run_job(st, "import", 2, names, values, 0, &id, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "bad.csv:"), "%s", err.msg);
    cr_assert_eq(n_prompts(st), 0);
    cr_assert(support_job_log_has(st, id, "bad.csv:"));
    cr_assert(support_job_log_has(st, id, "nothing was written"));
    store_close(st);
}

Test(jobkinds_io, cancel_writes_nothing) {
    Store *st = store_open(":memory:", NULL);
    const char *f = write_file("prompts.csv", "prompt_id,prompt\n1,a red cube\n2,a blue cat\n");
    const char *names[] = {"what", "path"}, *values[] = {"prompts", f};
    Err err = {0};
    int64_t id;
    cr_assert_eq(support_run_job(st, "import", 2, names, values, 1, &id, &err), ERR_CANCELLED);
    cr_assert_eq(n_prompts(st), 0);
    store_close(st);
}

Test(jobkinds_io, export_writes_atomically_or_not_at_all) {
    Store *st = store_open(":memory:", NULL);
    const char *f = write_file("prompts.csv", "prompt_id,prompt\n1,a red cube\n");
    const char *n1[] = {"what", "path"}, *v1[] = {"prompts", f};
    Err err = {0};
    int64_t id;
    cr_assert_eq(support_run_job(st, "import", 2, n1, v1, 0, &id, &err), 0, "%s", err.msg);
    char out[256];
    snprintf(out, sizeof out, "%s/out.csv", tmpdir);
    const char *n2[] = {"what", "out"}, *v2[] = {"prompts", out};
    cr_assert_eq(support_run_job(st, "export", 2, n2, v2, 0, &id, &err), 0, "%s", err.msg);
    FILE *fp = fopen(out, "r");
    cr_assert_not_null(fp);
    char buf[256] = {0};
    size_t got = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    cr_assert(got > 0 && strstr(buf, "a red cube"), "%s", buf);
    cr_assert(support_job_log_has(st, id, "wrote 1 rows"));

    const char *v3[] = {"prompts", "/nonexistent-dir/x.csv"};
    cr_assert_neq(support_run_job(st, "export", 2, n2, v3, 0, &id, &err), 0);
    cr_assert_eq(access("/nonexistent-dir/x.csv", F_OK), -1);

    const char *n4[] = {"what", "out", "min-diff"}, *v4[] = {"pairs", out, "-1"};
    JobParams *bad = (JobParams *)&err; /* any non-NULL: NULL after a failure */
    cr_assert_eq(job_params_parse(jobkind_find("export"), 3, n4, v4, &bad, &err), ERR_USAGE);
    cr_assert_null(bad);
    cr_assert(strstr(err.msg, "min-diff"), "%s", err.msg);
    /* a refusal with no Err to fill is still a refusal, not a crash */
    const char *v5[] = {"bogus", out, "0"};
    cr_assert_neq(job_params_parse(jobkind_find("export"), 3, n4, v5, &bad, NULL), 0);
    cr_assert_null(bad);
    store_close(st);
}
