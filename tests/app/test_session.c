/* Tests for src/app/session.c: the session the TUI and `easel worker` share — it opens and
 * checks the store (rating as another annotator and the disagree order under blind rating),
 * its options decide the pool (threads, none), it reports the jobs it runs, stopping it
 * leaves them interrupted (resumable), and session_serve is `easel worker`'s loop (until
 * idle, the stop signals). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "identity.h"
#include "jobkind.h"
#include "session.h"
#include "store_jobs.h"
#include "store_settings.h"
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
    cr_assert_not(session_has_pool(s), "opening starts no thread");
    cr_assert_not_null(session_store(s), "the session holds this process's connection");
    cr_assert_eq(session_start_pool(s, NULL, NULL, &err), 0, "%s", err.msg);
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
    cr_assert_eq(session_running_jobs(s, ids, 4, &err), 1, "%s", err.msg);
    cr_assert_eq(ids[0], id);

    session_stop_pool(s); /* the session stays, without a pool */
    cr_assert_not(session_has_pool(s));
    cr_assert_eq(session_threads(s), 2, "the thread count stays, for a hand-over");
    cr_assert_eq(session_busy(s), 0);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.state, JOB_STATE_INTERRUPTED, "stopping interrupts (resumable)");
    store_job_row_deinit(&r);
    cr_assert_eq(session_running_jobs(s, ids, 4, &err), 0);
    store_close(st);
    session_close(s);
}

Test(session, zero_threads_is_a_session_without_a_pool) {
    SessionConfig cfg = {.db_path = db, .threads = 0};
    Session *s = NULL;
    Err err = {0};
    cr_assert_eq(session_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(session_start_pool(s, NULL, NULL, &err), 0, "%s", err.msg);
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
    cr_assert_eq(session_queued(s, &mine, &others, NULL), 0);
    cr_assert_eq(mine, 1);
    cr_assert_eq(others, 1);
    session_close(s);

    const char *users[] = {"someone-else", NULL};
    cfg.accept_users = users;
    cr_assert_eq(session_open(&cfg, &s, NULL), 0);
    cr_assert_eq(session_queued(s, &mine, &others, NULL), 0);
    cr_assert_eq(mine, 2, "an accepted user's job is one this session runs");
    cr_assert_eq(others, 0);
    session_close(s);
    store_close(st);
}

/* ---- opening: the store's checks ------------------------------------------------------------ */

static int need_root(void) {
    if (getuid() != 0) {
        cr_skip_test("needs root (the store is given to another owner)");
        return 0;
    }
    return 1;
}

/* Blind rating on, and the store file owned by someone else: this process (root, not the
 * owner, no reviewer role) may rate only as itself. */
static void blind_store_of_another_owner(void) {
    Store *st = store_open_existing(db, NULL);
    cr_assert_not_null(st);
    Err err = {0};
    cr_assert_eq(store_setting_set(st, "blind", "on", "test", &err), 0, "%s", err.msg);
    store_close(st);
    cr_assert_eq(chown(db, 65534, 65534), 0);
}

Test(session, rating_as_another_annotator_under_blind_rating_is_refused_at_open) {
    if (!need_root())
        return;
    blind_store_of_another_owner();
    SessionConfig cfg = {.db_path = db, .act_as = "someone-else"};
    Session *s = (Session *)1;
    Err err = {0};
    cr_assert_eq(session_open(&cfg, &s, &err), ERR_DENIED);
    cr_assert_null(s);
    cr_assert(strstr(err.msg, "someone-else"), "the error names the annotator: %s", err.msg);

    cfg.act_as = identity_login(); /* as oneself: fine */
    cr_assert_eq(session_open(&cfg, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(session_owner(s), 65534);
    session_close(s);
}

Test(session, what_needs_the_reviewer_role_is_refused_at_open) {
    if (!need_root())
        return;
    blind_store_of_another_owner();
    SessionConfig cfg = {.db_path = db, .needs_review = "the disagree order"};
    Session *s = (Session *)1;
    Err err = {0};
    cr_assert_eq(session_open(&cfg, &s, &err), ERR_DENIED);
    cr_assert_null(s);
    cr_assert(strstr(err.msg, "the disagree order"), "%s", err.msg);
}

/* ---- session_serve: `easel worker`'s loop ------------------------------------------------------ */

static int run_quick(JobCtx *ctx, const JobParams *p, Err *err) {
    (void)ctx;
    (void)p;
    (void)err;
    return 0;
}

static const JobKind kind_quick = {
    .name = "test-session-quick", .summary = "ends at once (tests only)",
    .help = "tests only", .params = wait_params, .run = run_quick,
};

static int64_t add_job(const char *kind) {
    Store *st = store_open_existing(db, NULL);
    cr_assert_not_null(st);
    JobNew jn = {.kind = kind, .params = "{}"};
    int64_t id;
    Err err = {0};
    cr_assert_eq(store_job_add(st, &jn, &id, &err), 0, "%s", err.msg);
    store_close(st);
    return id;
}

static JobState job_state(int64_t id) {
    Store *st = store_open_existing(db, NULL);
    cr_assert_not_null(st);
    JobRow r;
    Err err = {0};
    cr_assert_eq(store_job_get(st, id, &r, &err), 0, "%s", err.msg);
    JobState state = r.state;
    store_job_row_deinit(&r);
    store_close(st);
    return state;
}

Test(session, serve_until_idle_runs_the_queue_and_returns) {
    Err err = {0};
    jobkind_register(&kind_quick, &err);
    int64_t a = add_job("test-session-quick"), b = add_job("test-session-quick");
    SessionConfig cfg = {.db_path = db, .threads = 1};
    Session *s = NULL;
    cr_assert_eq(session_open(&cfg, &s, &err), 0, "%s", err.msg);
    SessionServeOptions o = {.until_idle = 1};
    double t0 = base_now();
    cr_assert_eq(session_serve(s, &o, &err), SESSION_SERVED, "%s", err.msg);
    cr_assert_lt(base_now() - t0, 10.0);
    cr_assert_not(session_has_pool(s), "serving ends with the pool stopped");
    session_close(s);
    cr_assert_eq(job_state(a), JOB_STATE_SUCCEEDED);
    cr_assert_eq(job_state(b), JOB_STATE_SUCCEEDED);
}

static void *signal_when_busy(void *arg) {
    Session *s = arg;
    wait_busy(s, 1);
    kill(getpid(), SIGTERM);
    return NULL;
}

Test(session, serve_stops_on_a_signal_and_leaves_running_jobs_interrupted) {
    int64_t id = add_job("test-session-wait");
    SessionConfig cfg = {.db_path = db, .threads = 1};
    Session *s = NULL;
    Err err = {0};
    cr_assert_eq(session_open(&cfg, &s, &err), 0, "%s", err.msg);
    pthread_t t;
    /* the thread polls session_busy; the pool is started by session_serve */
    cr_assert_eq(pthread_create(&t, NULL, signal_when_busy, s), 0);
    SessionServeOptions o = {.until_idle = 0, .look_s = 0.1};
    cr_assert_eq(session_serve(s, &o, &err), SESSION_SERVED, "%s", err.msg);
    pthread_join(t, NULL);
    cr_assert_eq(session_signals_caught(), 1);
    cr_assert_eq(job_state(id), JOB_STATE_INTERRUPTED, "the job checkpointed and stopped");
    struct sigaction now;
    sigaction(SIGTERM, NULL, &now);
    cr_assert_eq(now.sa_handler, SIG_DFL, "the handler is released when serving ends");
    session_close(s);
}

Test(session, stop_signals_are_counted_and_wake_a_loop) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    session_signals_catch(p[1], 1);
    cr_assert_eq(session_signals_caught(), 0);
    raise(SIGHUP);
    raise(SIGINT);
    cr_assert_eq(session_signals_caught(), 2);
    char buf[8];
    cr_assert_eq(read(p[0], buf, sizeof buf), 2, "one byte per signal on the wake fd");
    session_signals_release();
    struct sigaction now;
    sigaction(SIGINT, NULL, &now);
    cr_assert_eq(now.sa_handler, SIG_DFL);
    close(p[0]);
    close(p[1]);
}
