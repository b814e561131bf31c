/* Tests for src/app/jobs.c and src/store/store_jobs.c: the job lifecycle through a real worker pool,
 * two processes competing for the same jobs, prompt cancel, SIGKILL of a worker mid-job then
 * resume from its checkpoint, dependencies, priorities and GPU scheduling in the claim.
 *
 * The job kinds here are registered at run time with jobkind_register: they exist only in
 * this test binary, never in bin/easel. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "jobkind.h"
#include "jobs.h"
#include "store_jobs.h"
#include "support.h"
#include "support_fixtures.h"

/* ---- test-only job kinds ------------------------------------------------------------------ */

static void nap_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Counts from its checkpoint (or 0) to --steps, one step per --step-ms, saving a checkpoint
 * every --every steps and appending "JOBID STEP" per step to --out (if given). */
static int run_count(JobCtx *ctx, const JobParams *p, Err *err) {
    int64_t steps = job_param_int(p, "steps");
    int64_t every = job_param_int(p, "every");
    int ms = (int)job_param_int(p, "step-ms");
    const char *out = job_param_str(p, "out");
    int64_t i = 0;
    const char *cp = job_checkpoint(ctx);
    if (cp && sscanf(cp, "{\"i\":%ld}", &i) != 1)
        return err_set(err, ERR_FORMAT, "bad checkpoint %s", cp);
    job_log(ctx, "start at %ld", (long)i);
    for (; i < steps; i++) {
        if (job_cancelled(ctx)) {
            char buf[64];
            snprintf(buf, sizeof buf, "{\"i\":%ld}", (long)i);
            job_checkpoint_save(ctx, buf, NULL);
            return err_set(err, ERR_CANCELLED, "stopped at step %ld", (long)i);
        }
        if (out[0]) {
            FILE *f = fopen(out, "a");
            if (!f)
                return err_set(err, ERR_IO, "%s: cannot open", out);
            fprintf(f, "%lld %ld\n", (long long)job_id(ctx), (long)i);
            fclose(f);
        }
        nap_ms(ms);
        if (every > 0 && (i + 1) % every == 0) {
            char buf[64];
            snprintf(buf, sizeof buf, "{\"i\":%ld}", (long)(i + 1));
            if (job_checkpoint_save(ctx, buf, err))
                return err->code;
        }
        job_progress(ctx, (double)(i + 1), (double)steps, "steps");
    }
    return 0;
}

static const JobParamSpec count_params[] = {
    {"steps", JOB_PARAM_INT, "10", "steps to count", NULL},
    {"every", JOB_PARAM_INT, "0", "checkpoint every N steps (0 = never)", NULL},
    {"step-ms", JOB_PARAM_INT, "1", "milliseconds per step", NULL},
    {"out", JOB_PARAM_PATH, "", "file to append steps to", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const JobKind kind_count = {
    .name = "test-count",
    .summary = "count steps (tests only)",
    .help = "tests only",
    .params = count_params,
    .checkpoints = 1,
    .run = run_count,
};

static int run_fail(JobCtx *ctx, const JobParams *p, Err *err) {
    (void)p;
    job_log(ctx, "about to fail");
    return err_set(err, ERR_FORMAT, "test-fail: this kind always fails");
}

static const JobParamSpec no_params[] = {{NULL, 0, NULL, NULL, NULL}};

static const JobKind kind_fail = {
    .name = "test-fail", .summary = "always fails", .help = "tests only",
    .params = no_params, .run = run_fail,
};

static const JobKind kind_gpu = {
    .name = "test-gpu", .summary = "wants a GPU", .help = "tests only",
    .params = no_params, .gpus = 1, .gpu_required = 1, .run = run_fail,
};

static const JobKind kind_gpu_opt = {
    .name = "test-gpu-opt", .summary = "uses a GPU if there is one", .help = "tests only",
    .params = no_params, .gpus = 1, .run = run_fail,
};

static const JobKind kind_gpu_all = {
    .name = "test-gpu-all", .summary = "wants every GPU", .help = "tests only",
    .params = no_params, .gpus = JOBKIND_GPUS_ALL, .gpu_required = 1, .run = run_fail,
};

/* ---- fixture ------------------------------------------------------------------------------ */

static char tmpdir[64];
static char db[128];

static void setup(void) {
    static int registered;
    if (!registered) {
        cr_assert_eq(jobkind_register(&kind_count, NULL), 0);
        cr_assert_eq(jobkind_register(&kind_fail, NULL), 0);
        cr_assert_eq(jobkind_register(&kind_gpu, NULL), 0);
        cr_assert_eq(jobkind_register(&kind_gpu_opt, NULL), 0);
        cr_assert_eq(jobkind_register(&kind_gpu_all, NULL), 0);
        registered = 1;
    }
    support_tmpdir_store(tmpdir, sizeof tmpdir, "jobs", "s.db", db, sizeof db);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(jobs, .init = setup, .fini = teardown, .timeout = 60);

static int64_t add_count(Store *st, int steps, int every, int step_ms, const char *out) {
    const JobKind *k = jobkind_find("test-count");
    char s1[16], s2[16], s3[16];
    snprintf(s1, sizeof s1, "%d", steps);
    snprintf(s2, sizeof s2, "%d", every);
    snprintf(s3, sizeof s3, "%d", step_ms);
    const char *names[] = {"steps", "every", "step-ms", "out"};
    const char *values[] = {s1, s2, s3, out ? out : ""};
    Err err = {0};
    JobParams *p;
    cr_assert_eq(job_params_parse(k, 4, names, values, &p, &err), 0, "%s", err.msg);
    char *json = job_params_to_json(p);
    job_params_free(p);
    JobNew jn = {.kind = "test-count", .params = json};
    int64_t id;
    cr_assert_eq(store_job_add(st, &jn, &id, &err), 0, "%s", err.msg);
    free(json);
    return id;
}

static int64_t add_kind(Store *st, const char *kind, int gpus, const int64_t *deps, int n_deps) {
    JobNew jn = {.kind = kind, .gpus_wanted = gpus, .deps = deps, .n_deps = n_deps};
    int64_t id;
    Err err = {0};
    cr_assert_eq(store_job_add(st, &jn, &id, &err), 0, "%s", err.msg);
    return id;
}

static JobState state_of(Store *st, int64_t id) {
    JobRow r;
    Err err = {0};
    cr_assert_eq(store_job_get(st, id, &r, &err), 0, "%s", err.msg);
    JobState s = r.state;
    store_job_row_deinit(&r);
    return s;
}

/* Poll until job ID reaches STATE; returns 1, or 0 after SECONDS. */
static int wait_state(Store *st, int64_t id, JobState state, double seconds) {
    double t0 = base_now();
    while (base_now() - t0 < seconds) {
        if (state_of(st, id) == state)
            return 1;
        nap_ms(10);
    }
    return state_of(st, id) == state;
}

static JobsPool *start_pool(int threads) {
    JobsPoolConfig cfg;
    jobs_pool_config_init(&cfg, db);
    cfg.threads = threads;
    cfg.n_gpus = 0;
    cfg.poll_s = 0.05;
    cfg.heartbeat_s = 0.2;
    Err err = {0};
    JobsPool *pool = jobs_pool_start(&cfg, &err);
    cr_assert_not_null(pool, "%s", err.msg);
    return pool;
}

/* ---- tests -------------------------------------------------------------------------------- */

Test(jobs, lifecycle_queued_running_succeeded_retry_resume) {
    Store *st = store_open(db, NULL);
    int64_t id = add_count(st, 20, 5, 1, NULL);
    cr_assert_eq(state_of(st, id), JOB_STATE_QUEUED);
    JobsPool *pool = start_pool(1);
    cr_assert(wait_state(st, id, JOB_STATE_SUCCEEDED, 20));
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert_float_eq(r.done, 20, 0);
    cr_assert_float_eq(r.total, 20, 0);
    cr_assert_str_eq(r.unit, "steps");
    cr_assert_str_eq(r.checkpoint, "{\"i\":20}");
    cr_assert(r.started_at > 0 && r.finished_at >= r.started_at);
    cr_assert(strstr(r.message, "succeeded"), "%s", r.message);
    cr_assert(strstr(r.worker, ":t0"));
    store_job_row_deinit(&r);
    cr_assert(support_job_log_has(st, id, "start at 0"));
    cr_assert(support_job_log_has(st, id, "started on"));

    Err err = {0};
    cr_assert_eq(store_job_resume(st, id, &err), ERR_CONFLICT, "succeeded jobs do not resume");
    cr_assert_eq(store_job_cancel(st, id, NULL, &err), ERR_CONFLICT);
    int64_t id2;
    cr_assert_eq(store_job_retry(st, id, &id2, &err), 0, "%s", err.msg);
    cr_assert_neq(id2, id);
    cr_assert(wait_state(st, id2, JOB_STATE_SUCCEEDED, 20));
    cr_assert_eq(store_job_get(st, id2, &r, NULL), 0);
    cr_assert_eq(r.retry_of, id);
    cr_assert(support_job_log_has(st, id2, "start at 0"), "a retry starts fresh");
    store_job_row_deinit(&r);

    int64_t bad = add_kind(st, "test-fail", 0, NULL, 0);
    cr_assert(wait_state(st, bad, JOB_STATE_FAILED, 20));
    cr_assert_eq(store_job_get(st, bad, &r, NULL), 0);
    cr_assert(strstr(r.message, "always fails"), "%s", r.message);
    store_job_row_deinit(&r);
    jobs_pool_stop(pool);
    store_close(st);
}

Test(jobs, cancel_queued_at_once_and_running_within_a_second) {
    Store *st = store_open(db, NULL);
    int64_t q = add_count(st, 10, 0, 1, NULL);
    JobState s;
    cr_assert_eq(store_job_cancel(st, q, &s, NULL), 0);
    cr_assert_eq(s, JOB_STATE_CANCELLED);
    cr_assert_eq(state_of(st, q), JOB_STATE_CANCELLED);
    /* an interrupted job (its worker died) is cancelled at once too */
    int64_t dead = add_count(st, 10, 0, 1, NULL);
    cr_assert_eq(support_job_claim(st, "x:1:t0", "far-away-host", 1), dead);
    cr_assert_eq(store_jobs_reap(st, -1, NULL, NULL, NULL, NULL), 0);
    cr_assert_eq(store_job_cancel(st, dead, &s, NULL), 0);
    cr_assert_eq(s, JOB_STATE_CANCELLED);

    int64_t id = add_count(st, 100000, 0, 5, NULL);
    JobsPool *pool = start_pool(1);
    cr_assert(wait_state(st, id, JOB_STATE_RUNNING, 20));
    Err err = {0};
    cr_assert_eq(store_job_cancel(st, id, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s, JOB_STATE_RUNNING);
    cr_assert(wait_state(st, id, JOB_STATE_CANCELLED, 1.0), "not cancelled within 1 s");
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert(strstr(r.message, "cancelled"), "%s", r.message);
    cr_assert(r.done < 100000);
    store_job_row_deinit(&r);
    jobs_pool_stop(pool);
    store_close(st);
}

Test(jobs, two_processes_never_run_one_job_twice) {
    enum { N_JOBS = 60 };
    char out[160];
    snprintf(out, sizeof out, "%s/marks.txt", tmpdir);
    Store *st = store_open(db, NULL);
    int64_t ids[N_JOBS];
    for (int i = 0; i < N_JOBS; i++)
        ids[i] = add_count(st, 1, 0, 10, out);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        cr_assert_neq(kids[k], -1);
        if (kids[k] == 0) {
            JobsPool *pool = start_pool(3);
            Store *cst = store_open(db, NULL);
            for (int spins = 0; spins < 3000; spins++) {
                int counts[JOB_STATE_COUNT];
                store_jobs_count(cst, counts, NULL);
                if (counts[JOB_STATE_QUEUED] == 0 && counts[JOB_STATE_RUNNING] == 0)
                    break;
                nap_ms(10);
            }
            store_close(cst);
            jobs_pool_stop(pool);
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int status;
        cr_assert_eq(waitpid(kids[k], &status, 0), kids[k]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    int seen[N_JOBS] = {0};
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    long long jid;
    long step;
    while (fscanf(f, "%lld %ld", &jid, &step) == 2) {
        cr_assert(jid >= ids[0] && jid <= ids[N_JOBS - 1]);
        seen[jid - ids[0]]++;
    }
    fclose(f);
    for (int i = 0; i < N_JOBS; i++) {
        cr_assert_eq(seen[i], 1, "job #%lld ran %d times", (long long)ids[i], seen[i]);
        cr_assert_eq(state_of(st, ids[i]), JOB_STATE_SUCCEEDED);
    }
    store_close(st);
}

Test(jobs, sigkill_mid_job_then_resume_from_checkpoint) {
    Store *st = store_open(db, NULL);
    int64_t id = add_count(st, 60, 5, 20, NULL);
    pid_t kid = fork();
    cr_assert_neq(kid, -1);
    if (kid == 0) {
        start_pool(1);
        for (;;)
            nap_ms(1000);
    }
    /* wait until it has a checkpoint of at least 10 steps, then kill -9 */
    JobRow r;
    for (int i = 0; i < 2000; i++) {
        cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
        long cp = 0;
        int ok = r.checkpoint && sscanf(r.checkpoint, "{\"i\":%ld}", &cp) == 1 && cp >= 10;
        store_job_row_deinit(&r);
        if (ok)
            break;
        nap_ms(10);
    }
    cr_assert_eq(kill(kid, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(kid, &status, 0), kid);
    cr_assert_eq(state_of(st, id), JOB_STATE_RUNNING, "the store still says running");
    int n = 0;
    Err err = {0};
    cr_assert_eq(jobs_reap(st, 0, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert_eq(r.state, JOB_STATE_INTERRUPTED);
    cr_assert(strstr(r.message, "gone"), "%s", r.message);
    long at = -1;
    cr_assert_eq(sscanf(r.checkpoint, "{\"i\":%ld}", &at), 1);
    cr_assert(at >= 10 && at < 60, "checkpoint %ld", at);
    store_job_row_deinit(&r);

    cr_assert_eq(store_job_resume(st, id, &err), 0, "%s", err.msg);
    JobsPool *pool = start_pool(1);
    cr_assert(wait_state(st, id, JOB_STATE_SUCCEEDED, 30));
    char needle[32];
    snprintf(needle, sizeof needle, "start at %ld", at);
    cr_assert(support_job_log_has(st, id, needle), "did not resume from step %ld", at);
    cr_assert(support_job_log_has(st, id, "resuming from checkpoint"));
    jobs_pool_stop(pool);
    store_close(st);
}

Test(jobs, stale_heartbeat_from_another_host_is_interrupted) {
    Store *st = store_open(db, NULL);
    int64_t id = add_count(st, 5, 0, 1, NULL);
    support_job_claim(st, "far:1:t0", "far-away-host", 1);
    int n = 0;
    cr_assert_eq(jobs_reap(st, 30, &n, NULL), 0);
    cr_assert_eq(n, 0, "a fresh heartbeat is alive");
    nap_ms(1100);
    cr_assert_eq(jobs_reap(st, 1.0, &n, NULL), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(state_of(st, id), JOB_STATE_INTERRUPTED);
    Err err = {0};
    cr_assert_eq(store_job_finish(st, id, "far:1:t0", JOB_STATE_SUCCEEDED, "late", &err),
                 ERR_CONFLICT, "a reaped worker cannot finish the job any more");
    store_close(st);
}

Test(jobs, stopping_the_pool_interrupts_with_checkpoint) {
    Store *st = store_open(db, NULL);
    int64_t id = add_count(st, 100000, 0, 5, NULL);
    JobsPool *pool = start_pool(1);
    cr_assert(wait_state(st, id, JOB_STATE_RUNNING, 20));
    nap_ms(100);
    jobs_pool_stop(pool);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert_eq(r.state, JOB_STATE_INTERRUPTED);
    cr_assert_not_null(r.checkpoint);
    store_job_row_deinit(&r);
    store_close(st);
}

Test(jobs, dependencies_wait_and_failed_dependency_fails_dependents) {
    Store *st = store_open(db, NULL);
    int64_t a = add_count(st, 20, 0, 5, NULL);
    int64_t b = add_kind(st, "test-count", 0, &a, 1);
    int64_t f = add_kind(st, "test-fail", 0, NULL, 0);
    int64_t c = add_kind(st, "test-count", 0, &f, 1);
    int64_t missing = 9999;
    JobNew jn = {.kind = "test-count", .deps = &missing, .n_deps = 1};
    int64_t x;
    Err err = {0};
    cr_assert_eq(store_job_add(st, &jn, &x, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "9999"));

    JobsPool *pool = start_pool(2);
    cr_assert(wait_state(st, b, JOB_STATE_SUCCEEDED, 20));
    JobRow ra, rb;
    cr_assert_eq(store_job_get(st, a, &ra, NULL), 0);
    cr_assert_eq(store_job_get(st, b, &rb, NULL), 0);
    cr_assert_eq(ra.state, JOB_STATE_SUCCEEDED);
    cr_assert(rb.started_at >= ra.finished_at, "B started before A finished");
    cr_assert_eq(rb.n_deps, 1);
    cr_assert_eq(rb.deps[0], a);
    store_job_row_deinit(&ra);
    store_job_row_deinit(&rb);

    cr_assert(wait_state(st, c, JOB_STATE_FAILED, 20));
    JobRow rc;
    cr_assert_eq(store_job_get(st, c, &rc, NULL), 0);
    char needle[32];
    snprintf(needle, sizeof needle, "dependency #%lld failed", (long long)f);
    cr_assert(strstr(rc.message, needle), "%s", rc.message);
    cr_assert_eq(rc.started_at, 0, "C never ran");
    store_job_row_deinit(&rc);
    cr_assert_eq(store_job_resume(st, c, &err), ERR_CONFLICT, "its dependency still failed");
    jobs_pool_stop(pool);
    store_close(st);
}

Test(jobs, higher_priority_runs_first) {
    Store *st = store_open(db, NULL);
    int64_t low = add_count(st, 2, 0, 1, NULL);
    int64_t high = add_count(st, 2, 0, 1, NULL);
    cr_assert_eq(store_job_set_priority(st, high, 5, NULL), 0);
    JobsPool *pool = start_pool(1);
    cr_assert(wait_state(st, low, JOB_STATE_SUCCEEDED, 20));
    JobRow rl, rh;
    cr_assert_eq(store_job_get(st, low, &rl, NULL), 0);
    cr_assert_eq(store_job_get(st, high, &rh, NULL), 0);
    cr_assert_eq(rh.state, JOB_STATE_SUCCEEDED);
    cr_assert(rh.finished_at <= rl.started_at, "high priority did not run first");
    store_job_row_deinit(&rl);
    store_job_row_deinit(&rh);
    jobs_pool_stop(pool);
    store_close(st);
}

static int accept_all(void *ud, const char *kind, int *required) {
    (void)ud;
    const JobKind *k = jobkind_find(kind);
    *required = k ? k->gpu_required : 0;
    return k != NULL;
}

static char *claim_gpus(Store *st, int n_gpus, int share, int *got) {
    JobClaim c = {.worker = "h:1:t0", .host = "h", .pid = 1, .n_gpus = n_gpus,
                  .gpu_share = share, .accept = accept_all};
    JobRow r;
    *got = store_job_claim(st, &c, &r, NULL);
    cr_assert(*got >= 0);
    char *g = *got && r.gpus ? xstrdup(r.gpus) : xstrdup("");
    store_job_row_deinit(&r);
    return g;
}

Test(jobs, gpu_scheduler_exclusive_shared_all_and_cpu_fallback) {
    Store *st = store_open(db, NULL);
    int got;
    add_kind(st, "test-gpu", 1, NULL, 0);
    add_kind(st, "test-gpu", 1, NULL, 0);
    add_kind(st, "test-gpu", 1, NULL, 0);
    char *g = claim_gpus(st, 2, 1, &got);
    cr_assert_eq(got, 1);
    cr_assert_str_eq(g, "0");
    free(g);
    g = claim_gpus(st, 2, 1, &got);
    cr_assert_str_eq(g, "1");
    free(g);
    g = claim_gpus(st, 2, 1, &got);
    cr_assert_eq(got, 0, "both GPUs are held exclusively: the third waits");
    free(g);
    g = claim_gpus(st, 2, 2, &got);
    cr_assert_eq(got, 1, "shared GPUs take a second job");
    cr_assert_str_eq(g, "0");
    free(g);

    Store *st2 = store_open(":memory:", NULL);
    add_kind(st2, "test-gpu-all", JOBKIND_GPUS_ALL, NULL, 0);
    g = claim_gpus(st2, 4, 1, &got);
    cr_assert_str_eq(g, "0,1,2,3");
    free(g);
    add_kind(st2, "test-gpu", 1, NULL, 0);
    add_kind(st2, "test-gpu-opt", 1, NULL, 0);
    g = claim_gpus(st2, 0, 1, &got);
    cr_assert_eq(got, 1, "an optional-GPU job runs on the CPU of a machine without GPUs");
    cr_assert_str_eq(g, "");
    free(g);
    g = claim_gpus(st2, 0, 1, &got);
    cr_assert_eq(got, 0, "a GPU-only job never runs without a GPU");
    free(g);
    add_kind(st2, "kind-from-a-newer-easel", 0, NULL, 0);
    g = claim_gpus(st2, 0, 1, &got);
    cr_assert_eq(got, 0, "unknown kinds are left for a process that knows them");
    free(g);
    store_close(st2);
    store_close(st);
}

Test(jobs, list_filters_and_carries_dependencies) {
    Store *st = store_open(db, NULL);
    int64_t a = add_count(st, 1, 0, 1, NULL);
    int64_t b = add_count(st, 1, 0, 1, NULL);
    int64_t ab[] = {a, b};
    int64_t c = add_kind(st, "test-count", 0, ab, 2);
    int64_t d = add_kind(st, "test-count", 0, &c, 1);
    cr_assert_eq(store_job_cancel(st, b, NULL, NULL), 0);
    JobRow *rows;
    int n;
    cr_assert_eq(store_jobs_list(st, NULL, &rows, &n, NULL), 0);
    cr_assert_eq(n, 4);
    cr_assert_eq(rows[0].id, d, "newest first");
    cr_assert_eq(rows[0].n_deps, 1);
    cr_assert_eq(rows[0].deps[0], c);
    cr_assert_eq(rows[1].id, c);
    cr_assert_eq(rows[1].n_deps, 2);
    cr_assert_eq(rows[1].deps[0], a);
    cr_assert_eq(rows[1].deps[1], b);
    cr_assert_eq(rows[2].n_deps, 0);
    store_job_rows_free(rows, n);
    JobFilter f = {.states = 1u << JOB_STATE_CANCELLED};
    cr_assert_eq(store_jobs_list(st, &f, &rows, &n, NULL), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(rows[0].id, b);
    store_job_rows_free(rows, n);
    JobFilter lim = {.limit = 2};
    cr_assert_eq(store_jobs_list(st, &lim, &rows, &n, NULL), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(rows[1].n_deps, 2);
    store_job_rows_free(rows, n);
    store_close(st);
}

/* After a cancel and a resume, a job continues from its checkpoint: its first progress
 * reports thousands of units done at once (after a phase in another unit). The rate must
 * count only what was done since the restart, not those thousands in a fraction of a
 * second (the Jobs screen showed 15,500/s and "ETA 0:01" for a job running at 90/s). */
Test(jobs, rate_after_a_resume_counts_only_work_since_the_restart) {
    Store *st = store_open(db, NULL);
    int64_t id = add_count(st, 5000, 0, 1, NULL);
    cr_assert_eq(support_job_claim(st, "h:1:t0", "h", 1), id);
    /* the first run got to 3150 steps, then was cancelled and resumed */
    cr_assert_eq(store_job_progress(st, id, 3150, 5000, "steps", NULL), 0);
    cr_assert_eq(store_job_cancel(st, id, NULL, NULL), 0);
    cr_assert_eq(store_job_finish(st, id, "h:1:t0", JOB_STATE_CANCELLED, "cancelled", NULL), 0);
    cr_assert_eq(store_job_resume(st, id, NULL), 0);
    cr_assert_eq(support_job_claim(st, "h:1:t0", "h", 1), id);
    JobCtx *ctx = job_ctx_new(st, id, "{\"i\":3100}", NULL, NULL);
    for (int i = 1; i <= 20; i++) { /* a fast phase first: features from the cache */
        job_progress(ctx, i, 20, "images encoded");
        nap_ms(15);
    }
    job_progress(ctx, 3100, 5000, "steps"); /* the checkpoint's step */
    for (int i = 1; i <= 30; i++) {         /* then about 100 steps a second */
        nap_ms(10);
        job_progress(ctx, 3100 + i, 5000, "steps");
    }
    job_ctx_free(ctx);
    JobRow row;
    cr_assert_eq(store_job_get(st, id, &row, NULL), 0);
    cr_assert(row.rate > 20 && row.rate < 200, "rate %.1f/s for a job doing ~100 steps/s",
              row.rate);
    cr_assert(row.eta > 5, "ETA %.1f s for 1870 steps at ~100/s", row.eta);
    store_job_row_deinit(&row);
    store_close(st);
}

Test(jobs, a_killed_worker_not_yet_reaped_by_its_parent_counts_as_dead) {
    Store *st = store_open(db, NULL);
    int64_t id = add_count(st, 5, 0, 1, NULL);
    pid_t kid = fork();
    cr_assert_neq(kid, -1);
    if (kid == 0) {
        for (;;)
            nap_ms(1000);
    }
    support_job_claim(st, "zombie:t0", jobs_host(), kid);
    int n = 0;
    cr_assert_eq(jobs_reap(st, 30, &n, NULL), 0);
    cr_assert_eq(n, 0, "alive");
    cr_assert_eq(kill(kid, SIGKILL), 0);
    nap_ms(100); /* now a zombie: we have not called waitpid */
    cr_assert_eq(jobs_reap(st, 30, &n, NULL), 0);
    cr_assert_eq(n, 1, "a zombie never heartbeats again");
    cr_assert_eq(state_of(st, id), JOB_STATE_INTERRUPTED);
    int status;
    cr_assert_eq(waitpid(kid, &status, 0), kid);
    store_close(st);
}
