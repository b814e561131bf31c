/* Tests for the import job kind (src/app/jobkinds_io.c) with the importers' issue-13 rules: the
 * allow-missing parameter, a FIFO given as the input refused at once (never waited on), and a
 * cancel seen while the rows are still being checked. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobkind.h"
#include "store_catalog.h"
#include "store_jobs.h"
#include "support.h"

static char tmpdir[64];
static char path[256];

static void setup(void) { support_tmpdir_make(tmpdir, sizeof tmpdir, "impjob"); }
static void teardown(void) { support_tmpdir_remove(tmpdir); }

TestSuite(import_job, .init = setup, .fini = teardown, .timeout = 30);

static const char *write_file(const char *name, const char *text) {
    return support_write_file(tmpdir, name, text, path, sizeof path);
}

static int64_t n_images(Store *st) {
    StoreCounts sc;
    cr_assert_eq(store_counts(st, &sc, NULL), 0);
    int64_t n = sc.images;
    store_counts_deinit(&sc);
    return n;
}

Test(import_job, allow_missing_parameter) {
    /* a store in the test's folder: a job reads image paths only inside its workspace */
    char db[128];
    snprintf(db, sizeof db, "%s/s.db", tmpdir);
    Store *st = store_open(db, NULL);
    cr_assert_eq(store_prompt_add(st, "1", "a cat", NULL, NULL, NULL), 0);
    const char *f = write_file("r.csv", "prompt_id,image_path,spatial_rating,annotator\n"
                                        "1,nowhere/0.png,5,ann\n");
    const char *names[] = {"what", "path", "allow-missing"};
    const char *values[] = {"ratings", f, "false"};
    Err err = {0};
    int64_t id;
    cr_assert_eq(support_run_job(st, "import", 3, names, values, 0, &id, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "r.csv:2:") && strstr(err.msg, "--allow-missing"), "%s", err.msg);
    cr_assert_eq(n_images(st), 0);
    values[2] = "true";
    cr_assert_eq(support_run_job(st, "import", 3, names, values, 0, &id, &err), 0, "%s", err.msg);
    cr_assert_eq(n_images(st), 1);
    store_close(st);
}

Test(import_job, fifo_input_is_refused_at_once) {
    Store *st = store_open(":memory:", NULL);
    snprintf(path, sizeof path, "%s/in.csv", tmpdir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    const char *names[] = {"what", "path"}, *values[] = {"prompts", path};
    Err err = {0};
    int64_t id;
    int rc = support_run_job(st, "import", 2, names, values, 0, &id, &err);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(err.msg, "FIFO"), "%s", err.msg);
    store_close(st);
}

Test(import_job, cancel_while_checking_writes_nothing) {
    Store *st = store_open(":memory:", NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    fputs("prompt_id,prompt\n", m);
    for (int i = 0; i < 300; i++)
        fprintf(m, "%d,prompt number %d\n", i, i);
    fclose(m);
    const char *f = write_file("p.csv", text);
    free(text);
    const char *names[] = {"what", "path"}, *values[] = {"prompts", f};
    Err err = {0};
    int64_t id;
    cr_assert_eq(support_run_job(st, "import", 2, names, values, 1, &id, &err), ERR_CANCELLED);
    StoreCounts sc;
    cr_assert_eq(store_counts(st, &sc, NULL), 0);
    cr_assert_eq(sc.prompts, 0);
    store_counts_deinit(&sc);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert_lt(r.done, r.total / 2 + 1, "cancelled after checking (%g of %g)", r.done, r.total);
    store_job_row_deinit(&r);
    store_close(st);
}
