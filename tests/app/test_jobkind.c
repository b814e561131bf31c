/* Tests for src/app/jobkind.c: registry, parameter parsing against the schema, JSON round trip,
 * and the job context writing progress, log and checkpoints to the store. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "jobkind.h"
#include "store_jobs.h"
#include "support_fixtures.h"

static int run_nothing(JobCtx *ctx, const JobParams *p, Err *err) {
    (void)ctx;
    (void)p;
    (void)err;
    return 0;
}

static const JobParamSpec demo_params[] = {
    {"file", JOB_PARAM_PATH, NULL, "input file", NULL},
    {"epochs", JOB_PARAM_INT, "3", "passes over the data", NULL},
    {"lr", JOB_PARAM_FLOAT, "0.001", "learning rate", NULL},
    {"shuffle", JOB_PARAM_BOOL, "true", "shuffle rows", NULL},
    {"mode", JOB_PARAM_CHOICE, "pairs", "training objective", "pairs|multihead"},
    {"note", JOB_PARAM_STRING, "", "free text", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const JobKind demo = {
    .name = "test-demo",
    .summary = "a kind for tests",
    .help = "test only",
    .params = demo_params,
    .run = run_nothing,
};

static void reg(void) {
    if (!jobkind_find("test-demo"))
        cr_assert_eq(jobkind_register(&demo, NULL), 0);
}

Test(jobkind, register_and_find) {
    reg();
    cr_assert_eq(jobkind_find("test-demo"), &demo);
    cr_assert_null(jobkind_find("no-such-kind"));
    Err err = {0};
    cr_assert_eq(jobkind_register(&demo, &err), ERR_CONFLICT);
    int seen = 0;
    for (int i = 0; i < jobkind_count(); i++)
        seen += jobkind_at(i) == &demo;
    cr_assert_eq(seen, 1);
}

Test(jobkind, parse_applies_defaults_and_types) {
    reg();
    const char *names[] = {"file", "epochs", "mode"};
    const char *values[] = {"/tmp/x.csv", "7", "multihead"};
    Err err = {0};
    JobParams *p;
    cr_assert_eq(job_params_parse(&demo, 3, names, values, &p, &err), 0, "%s", err.msg);
    cr_assert_str_eq(job_param_str(p, "file"), "/tmp/x.csv");
    cr_assert_eq(job_param_int(p, "epochs"), 7);
    cr_assert_float_eq(job_param_float(p, "lr"), 0.001, 1e-12);
    cr_assert_eq(job_param_bool(p, "shuffle"), 1);
    cr_assert_str_eq(job_param_str(p, "mode"), "multihead");
    cr_assert_str_eq(job_param_str(p, "note"), "");
    char *json = job_params_to_json(p);
    JobParams *q;
    cr_assert_eq(job_params_from_json(&demo, json, &q, &err), 0, "%s", err.msg);
    char *json2 = job_params_to_json(q);
    cr_assert_str_eq(json, json2);
    cr_assert_eq(job_param_int(q, "epochs"), 7);
    free(json);
    free(json2);
    job_params_free(p);
    job_params_free(q);
}

Test(jobkind, parse_rejects_bad_input_naming_the_parameter) {
    reg();
    Err err = {0};
    const char *n1[] = {"file", "epochs"}, *v1[] = {"a", "seven"};
    cr_assert_neq(job_params_parse(&demo, 2, n1, v1, &(JobParams *){NULL}, &err), 0);
    cr_assert_eq(err.code, ERR_USAGE);
    cr_assert(strstr(err.msg, "--epochs") && strstr(err.msg, "seven"), "%s", err.msg);
    const char *n2[] = {"epochs"}, *v2[] = {"2"};
    cr_assert_neq(job_params_parse(&demo, 1, n2, v2, &(JobParams *){NULL}, &err), 0);
    cr_assert(strstr(err.msg, "--file is required"), "%s", err.msg);
    const char *n3[] = {"file", "bogus"}, *v3[] = {"a", "1"};
    cr_assert_neq(job_params_parse(&demo, 2, n3, v3, &(JobParams *){NULL}, &err), 0);
    cr_assert(strstr(err.msg, "unknown parameter --bogus"), "%s", err.msg);
    const char *n4[] = {"file", "mode"}, *v4[] = {"a", "regression"};
    cr_assert_neq(job_params_parse(&demo, 2, n4, v4, &(JobParams *){NULL}, &err), 0);
    cr_assert(strstr(err.msg, "pairs|multihead"), "%s", err.msg);
    const char *n5[] = {"file", "shuffle"}, *v5[] = {"a", "maybe"};
    cr_assert_neq(job_params_parse(&demo, 2, n5, v5, &(JobParams *){NULL}, &err), 0);
    JobParams *bad = (JobParams *)&err; /* any non-NULL: overwritten with NULL on failure */
    cr_assert_eq(job_params_from_json(&demo, "{\"file\":\"a\",\"zzz\":1}", &bad, &err),
                 ERR_FORMAT);
    cr_assert_null(bad);
    cr_assert_eq(err.code, ERR_FORMAT);
    /* no Err to fill: the code still comes back (nothing reads through a NULL err) */
    cr_assert_eq(job_params_from_json(&demo, "[1,2", &bad, NULL), ERR_FORMAT);
    cr_assert_null(bad);
}

Test(jobkind, relative_paths_become_absolute) {
    reg();
    const char *n[] = {"file"}, *v[] = {"some/rel.csv"};
    JobParams *p;
    cr_assert_eq(job_params_parse(&demo, 1, n, v, &p, NULL), 0);
    cr_assert_eq(job_param_str(p, "file")[0], '/');
    cr_assert(strstr(job_param_str(p, "file"), "/some/rel.csv"));
    job_params_free(p);
}

Test(jobkind, context_writes_progress_log_checkpoint) {
    Err err = {0};
    Store *st = store_open(":memory:", &err);
    cr_assert_not_null(st, "%s", err.msg);
    JobNew jn = {.kind = "test-demo"};
    int64_t id;
    cr_assert_eq(store_job_add(st, &jn, &id, &err), 0, "%s", err.msg);
    cr_assert_eq(support_job_claim(st, "h:1:t0", "h", 1), id);
    atomic_int cancel = 0;
    JobCtx *ctx = job_ctx_new(st, id, NULL, "1,3", &cancel);
    int n;
    const int *g = job_gpus(ctx, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(g[0], 1);
    cr_assert_eq(g[1], 3);
    cr_assert_null(job_checkpoint(ctx));
    job_progress(ctx, 5, 10, "rows");
    job_log(ctx, "hello %d", 42);
    cr_assert_eq(job_checkpoint_save(ctx, "{\"row\":5}", &err), 0);
    cr_assert_str_eq(job_checkpoint(ctx), "{\"row\":5}");
    cr_assert_eq(job_cancelled(ctx), 0);
    atomic_store(&cancel, 1);
    cr_assert_eq(job_cancelled(ctx), 1);
    job_progress(ctx, 10, 10, NULL);
    job_ctx_free(ctx);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, &err), 0);
    cr_assert_float_eq(r.done, 10, 0);
    cr_assert_float_eq(r.total, 10, 0);
    cr_assert_str_eq(r.unit, "rows");
    cr_assert_str_eq(r.checkpoint, "{\"row\":5}");
    store_job_row_deinit(&r);
    JobLogLine *lines;
    cr_assert_eq(store_job_log_read(st, id, 0, 0, &lines, &n, &err), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(lines[0].line, "hello 42");
    store_job_log_free(lines, n);
    store_close(st);
}
