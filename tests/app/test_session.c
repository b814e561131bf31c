/* Tests for src/app/session.c: the worker session the TUI and `easel worker` share — its
 * options decide the pool (threads, none), it reports the jobs it runs, and stopping it
 * leaves them interrupted (resumable). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "jobkind.h"
#include "session.h"
#include "store_jobs.h"
#include "support.h"

static int run_wait(JobCtx *ctx, const JobParams *p, Err *err) {
    (void)p;
    while (!job_cancelled(ctx)) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return err_set(err, ERR_CANCELLED, "stopped");
}

static const JobParamSpec wait_params[] = {{NULL, 0, NULL, NULL, NULL}};
static const JobKind kind_wait = {
    .name = "test-session-wait", .summary = "waits until cancelled (tests only)",
    .help = "tests only", .params = wait_params, .checkpoints = 1, .run = run_wait,
};

static char dir[256], db[512];

static void setup(void) {
    support_tmpdir_make(dir, sizeof dir, "session");
    store_close(support_store_open(dir, "s.db", db, sizeof db));
    setenv("EASEL_NO_GPU", "1", 1);
    Err err = {0};
    jobkind_register(&kind_wait, &err); /* a second registration in one process is refused */
}

static void teardown(void) { support_tmpdir_remove(dir); }

/* Wait until the session runs N jobs; returns 1, or 0 after 10 s. */
static int wait_busy(Session *s, int n) {
    for (int i = 0; i < 2000; i++) {
        if (session_busy(s) == n)
            return 1;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

TestSuite(session, .init = setup, .fini = teardown, .timeout = 30);

Test(session, threads_come_from_the_config_and_running_jobs_are_reported) {
    const char *users[] = {"nobody-here", NULL};
    SessionConfig cfg = {.db_path = db, .threads = 2, .accept_users = users};
    Session *s = NULL;
    Err err = {0};
    cr_assert_eq(session_open(&cfg, &s, &err), 0, "%s", err.msg);
    users[0] = "changed"; /* the session keeps its own copy */
    cr_assert(session_has_pool(s));
    cr_assert_eq(session_threads(s), 2);
    cr_assert_str_eq(session_accept_users(s)[0], "nobody-here");
    cr_assert_null(session_accept_users(s)[1]);

    Store *st = store_open_existing(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    JobNew jn = {.kind = "test-session-wait", .params = "{}"};
    int64_t id;
    cr_assert_eq(store_job_add(st, &jn, &id, &err), 0, "%s", err.msg);
    session_kick(s);
    cr_assert(wait_busy(s, 1), "the job did not start");
    int64_t ids[4];
    cr_assert_eq(session_running_jobs(s, st, ids, 4, &err), 1, "%s", err.msg);
    cr_assert_eq(ids[0], id);

    session_stop_pool(s); /* the session stays, without a pool */
    cr_assert_not(session_has_pool(s));
    cr_assert_eq(session_threads(s), 2, "the thread count stays, for a hand-over");
    cr_assert_eq(session_busy(s), 0);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.state, JOB_STATE_INTERRUPTED, "stopping interrupts (resumable)");
    store_job_row_deinit(&r);
    cr_assert_eq(session_running_jobs(s, st, ids, 4, &err), 0);
    store_close(st);
    session_close(s);
}

Test(session, zero_threads_is_a_session_without_a_pool) {
    SessionConfig cfg = {.db_path = db, .threads = 0};
    Session *s = NULL;
    Err err = {0};
    cr_assert_eq(session_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_assert_not(session_has_pool(s));
    cr_assert_eq(session_threads(s), 0);
    cr_assert_eq(session_busy(s), 0);
    session_kick(s);         /* no pool: nothing to wake, no crash */
    session_request_stop(s);
    session_close(s);
    session_close(NULL);
}

Test(session, default_threads_is_the_core_count) {
    SessionConfig cfg = {.db_path = db, .threads = SESSION_THREADS_DEFAULT};
    Session *s = NULL;
    Err err = {0};
    cr_assert_eq(session_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(session_threads(s), jobs_default_threads());
    session_close(s);
}

Test(session, a_store_that_cannot_be_opened_is_an_error) {
    char bad[600];
    snprintf(bad, sizeof bad, "%s/missing.db", dir);
    SessionConfig cfg = {.db_path = bad, .threads = 1};
    Session *s = (Session *)1;
    Err err = {0};
    cr_assert_lt(session_open(&cfg, &s, &err), 0);
    cr_assert_null(s);
    cr_assert(err.msg[0], "the error says why");
}

Test(session, queued_counts_the_jobs_it_would_run_and_those_of_other_users) {
    Store *st = store_open_existing(db, NULL);
    cr_assert_not_null(st);
    JobNew jn = {.kind = "test-session-wait", .params = "{}"};
    int64_t mine_id, theirs_id;
    cr_assert_eq(store_job_add(st, &jn, &mine_id, NULL), 0);
    cr_assert_eq(store_job_add(st, &jn, &theirs_id, NULL), 0);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE jobs SET queued_by = 'someone-else', queued_uid = %lld "
             "WHERE id = %lld", (long long)getuid() + 4242, (long long)theirs_id);
    support_sql_exec(db, sql);

    SessionConfig cfg = {.db_path = db, .threads = 0}; /* no pool: the jobs stay queued */
    Session *s = NULL;
    cr_assert_eq(session_open(&cfg, &s, NULL), 0);
    int mine = -1, others = -1;
    cr_assert_eq(session_queued(s, st, getuid(), &mine, &others, NULL), 0);
    cr_assert_eq(mine, 1);
    cr_assert_eq(others, 1);
    session_close(s);

    const char *users[] = {"someone-else", NULL};
    cfg.accept_users = users;
    cr_assert_eq(session_open(&cfg, &s, NULL), 0);
    cr_assert_eq(session_queued(s, st, getuid(), &mine, &others, NULL), 0);
    cr_assert_eq(mine, 2, "an accepted user's job is one this session runs");
    cr_assert_eq(others, 0);
    session_close(s);
    store_close(st);
}
