/* Tests for src/app/jobform.c: the new-job form generated from a kind's schema. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobform.h"
#include "store_jobs.h"

static int run_nothing(JobCtx *ctx, const JobParams *p, Err *err) {
    (void)ctx;
    (void)p;
    (void)err;
    return 0;
}

static const JobParamSpec params[] = {
    {"path", JOB_PARAM_PATH, NULL, "input", NULL},
    {"mode", JOB_PARAM_CHOICE, "pairs", "objective", "pairs|multihead|regression"},
    {"epochs", JOB_PARAM_INT, "3", "passes", NULL},
    {"shuffle", JOB_PARAM_BOOL, "true", "shuffle", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const JobKind kind = {
    .name = "test-form", .summary = "s", .help = "h", .params = params, .gpus = 2,
    .run = run_nothing,
};

Test(jobform, fields_from_schema_with_defaults) {
    JobForm *f = jobform_new(&kind);
    cr_assert_eq(f->n_fields, 7);
    cr_assert_str_eq(jobform_label(f, 0), "path");
    cr_assert_str_eq(f->fields[0].text, "");
    cr_assert_str_eq(f->fields[1].text, "pairs");
    cr_assert_str_eq(f->fields[2].text, "3");
    cr_assert_str_eq(jobform_label(f, 4), "priority");
    cr_assert_str_eq(jobform_label(f, 5), "after");
    cr_assert_str_eq(jobform_label(f, 6), "gpus", "a kind that holds GPUs");
    cr_assert_str_eq(f->fields[6].text, "", "empty: what the kind asks for");
    char buf[128];
    cr_assert(strstr(jobform_hint(f, 0, buf, sizeof buf), "required"));
    cr_assert(strstr(jobform_hint(f, 1, buf, sizeof buf), "pairs|multihead|regression"));
    jobform_free(f);
}

Test(jobform, cycling_choices_and_bools) {
    JobForm *f = jobform_new(&kind);
    cr_assert_eq(jobform_cycle(f, 1, 1), 1);
    cr_assert_str_eq(f->fields[1].text, "multihead");
    jobform_cycle(f, 1, 1);
    jobform_cycle(f, 1, 1);
    cr_assert_str_eq(f->fields[1].text, "pairs", "wraps around");
    jobform_cycle(f, 1, -1);
    cr_assert_str_eq(f->fields[1].text, "regression");
    cr_assert_eq(jobform_cycle(f, 3, 1), 1);
    cr_assert_str_eq(f->fields[3].text, "false");
    cr_assert_eq(jobform_cycle(f, 2, 1), 0, "an integer is typed, not cycled");
    cr_assert_eq(jobform_cycle(f, 4, 1), 0);
    jobform_move(f, -5);
    cr_assert_eq(f->cur, 0);
    jobform_move(f, 50);
    cr_assert_eq(f->cur, 6);
    jobform_free(f);
}

Test(jobform, submit_validates_then_adds) {
    Store *st = store_open(":memory:", NULL);
    cr_assert_not_null(st);
    JobForm *f = jobform_new(&kind);
    Err err = {0};
    int64_t id = 0;
    f->cur = 3;
    cr_assert_eq(jobform_submit(f, st, &id, &err), ERR_USAGE, "path is required");
    cr_assert(strstr(err.msg, "--path is required"), "%s", err.msg);
    cr_assert_eq(f->cur, 0, "the form points at the missing field");
    jobform_set(f, 0, "data/x.csv");
    jobform_set(f, 2, "many");
    cr_assert_eq(jobform_submit(f, st, &id, &err), ERR_USAGE);
    cr_assert_eq(f->cur, 2);
    jobform_set(f, 2, "5");
    jobform_set(f, 5, "77");
    cr_assert_eq(jobform_submit(f, st, &id, &err), ERR_NOTFOUND, "no job 77");
    cr_assert_eq(f->cur, 5);
    int counts[JOB_STATE_COUNT];
    cr_assert_eq(store_jobs_count(st, counts, NULL), 0);
    cr_assert_eq(counts[JOB_STATE_QUEUED], 0, "nothing added by failed submits");
    jobform_set(f, 5, "");
    jobform_set(f, 4, "99999999999");
    cr_assert_eq(jobform_submit(f, st, &id, &err), ERR_USAGE, "a priority that does not fit");
    jobform_set(f, 4, "7");
    /* the trust rules: a path outside the workspace (the cwd for :memory:) is refused */
    jobform_set(f, 0, "/data/x.csv");
    cr_assert_eq(jobform_submit(f, st, &id, &err), ERR_DENIED, "%s", err.msg);
    cr_assert(strstr(err.msg, "permission denied"), "%s", err.msg);
    cr_assert_eq(f->cur, 0, "the form points at the path");
    cr_assert_eq(store_jobs_count(st, counts, NULL), 0);
    cr_assert_eq(counts[JOB_STATE_QUEUED], 0, "nothing added by a refused submit");
    jobform_set(f, 0, "data/x.csv");
    cr_assert_eq(jobform_submit(f, st, &id, &err), 0, "%s", err.msg);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert_str_eq(r.kind, "test-form");
    cr_assert_eq(r.priority, 7);
    cr_assert_eq(r.gpus_wanted, 2);
    cr_assert(strstr(r.params, "/data/x.csv\""), "made absolute: %s", r.params);
    cr_assert(strstr(r.params, "\"epochs\":5"), "%s", r.params);
    cr_assert(strstr(r.params, "\"shuffle\":true"), "%s", r.params);
    store_job_row_deinit(&r);
    /* a dependency */
    char dep[32];
    snprintf(dep, sizeof dep, "%lld", (long long)id);
    jobform_set(f, 5, dep);
    int64_t id2;
    cr_assert_eq(jobform_submit(f, st, &id2, &err), 0, "%s", err.msg);
    cr_assert_eq(store_job_get(st, id2, &r, NULL), 0);
    cr_assert_eq(r.n_deps, 1);
    cr_assert_eq(r.deps[0], id);
    store_job_row_deinit(&r);
    jobform_free(f);
    store_close(st);
}

static const JobKind cpu_kind = {
    .name = "test-form-cpu", .summary = "s", .help = "h", .params = params, .run = run_nothing,
};

/* The gpus field (a GPU kind only): empty is the kind's count, "all" every free GPU, a count
 * as typed; anything else is refused pointing at the field, and nothing is added. */
Test(jobform, gpus_field) {
    JobForm *c = jobform_new(&cpu_kind);
    cr_assert_eq(c->n_fields, 6, "a CPU kind has no gpus field");
    jobform_free(c);
    Store *st = store_open(":memory:", NULL);
    cr_assert_not_null(st);
    JobForm *f = jobform_new(&kind);
    Err err = {0};
    int64_t id = 0;
    jobform_set(f, 0, "data/x.csv");
    static const char *const bad[] = {"many", "-1", "2000", "1.5"};
    for (int i = 0; i < 4; i++) {
        jobform_set(f, 6, bad[i]);
        f->cur = 0;
        cr_assert_eq(jobform_submit(f, st, &id, &err), ERR_USAGE, "%s", bad[i]);
        cr_assert(strstr(err.msg, "gpus: '"), "%s", err.msg);
        cr_assert_eq(f->cur, 6, "the form points at gpus");
    }
    int counts[JOB_STATE_COUNT];
    cr_assert_eq(store_jobs_count(st, counts, NULL), 0);
    cr_assert_eq(counts[JOB_STATE_QUEUED], 0, "nothing added");
    static const char *const good[] = {"", "all", "0", "3"};
    static const int want[] = {2, JOBKIND_GPUS_ALL, 0, 3};
    for (int i = 0; i < 4; i++) {
        jobform_set(f, 6, good[i]);
        cr_assert_eq(jobform_submit(f, st, &id, &err), 0, "%s: %s", good[i], err.msg);
        JobRow r;
        cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
        cr_assert_eq(r.gpus_wanted, want[i], "'%s': %d", good[i], r.gpus_wanted);
        store_job_row_deinit(&r);
    }
    jobform_free(f);
    store_close(st);
}
