/* session — see session.h. */
#include "session.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "identity.h"
#include "log.h"
#include "store_jobs.h"
#include "trust.h"

struct Session {
    Store *st;
    char *db_path;
    uid_t owner;
    JobsPool *pool;
    int threads;
    int gpu_share;
    char **accept; /* NULL-ended copy, or NULL */
};

static char **copy_users(const char *const *users) {
    if (!users)
        return NULL;
    size_t n = 0;
    while (users[n])
        n++;
    char **c = xcalloc(n + 1, sizeof *c);
    for (size_t i = 0; i < n; i++)
        c[i] = xstrdup(users[i]);
    return c;
}

static void free_users(char **users) {
    for (size_t i = 0; users && users[i]; i++)
        free(users[i]);
    free(users);
}

static void session_free(Session *s) {
    store_close(s->st);
    free_users(s->accept);
    free(s->db_path);
    free(s);
}

int session_open(const SessionConfig *cfg, Session **out, Err *err) {
    *out = NULL;
    Session *s = xcalloc(1, sizeof *s);
    s->threads = cfg->threads == SESSION_THREADS_DEFAULT ? jobs_default_threads()
                 : cfg->threads > 0                      ? cfg->threads
                                                         : 0;
    s->gpu_share = cfg->gpu_share > 0 ? cfg->gpu_share : 1;
    s->accept = copy_users(cfg->accept_users);
    s->db_path = xstrdup(cfg->db_path);
    s->owner = getuid();
    int rc = 0;
    s->st = store_open_existing(cfg->db_path, err);
    if (!s->st)
        rc = err && err->code ? err->code : ERR_IO;
    if (!rc)
        rc = trust_store_owner(s->st, &s->owner, err);
    if (!rc && cfg->needs_review)
        rc = trust_require_review(s->st, identity_login(), cfg->needs_review, err);
    if (!rc && cfg->act_as)
        rc = trust_check_act_as(s->st, cfg->act_as, err);
    if (rc) {
        session_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void session_close(Session *s) {
    if (!s)
        return;
    jobs_pool_stop(s->pool);
    session_free(s);
}

Store *session_store(Session *s) { return s ? s->st : NULL; }
uid_t session_owner(const Session *s) { return s->owner; }

int session_start_pool(Session *s,
                       void (*on_change)(void *user_data, int64_t job_id, JobState state),
                       void *user_data, Err *err) {
    if (s->pool || s->threads <= 0)
        return 0;
    JobsPoolConfig pc;
    jobs_pool_config_init(&pc, s->db_path);
    pc.threads = s->threads;
    pc.gpu_share = s->gpu_share;
    pc.accept_users = (const char *const *)s->accept;
    pc.on_change = on_change;
    pc.user_data = user_data;
    s->pool = jobs_pool_start(&pc, err);
    if (!s->pool)
        return err && err->code ? err->code : ERR_IO;
    return 0;
}

int session_threads(const Session *s) { return s ? s->threads : 0; }
int session_has_pool(const Session *s) { return s && s->pool; }
int session_busy(Session *s) { return s && s->pool ? jobs_pool_busy(s->pool) : 0; }
int session_gpus(const Session *s) { return s && s->pool ? jobs_pool_gpus(s->pool) : 0; }

const char *const *session_accept_users(const Session *s) {
    return s ? (const char *const *)s->accept : NULL;
}

void session_kick(Session *s) {
    if (s && s->pool)
        jobs_pool_kick(s->pool);
}

void session_request_stop(Session *s) {
    if (s && s->pool)
        jobs_pool_request_stop(s->pool);
}

void session_stop_pool(Session *s) {
    if (!s)
        return;
    jobs_pool_stop(s->pool);
    s->pool = NULL;
}

int session_running_jobs(Session *s, int64_t *ids, int max, Err *err) {
    JobFilter f = {.states = 1u << JOB_STATE_RUNNING};
    JobRow *rows;
    int n;
    int rc = store_jobs_list(s->st, &f, &rows, &n, err);
    if (rc)
        return rc;
    int k = 0;
    for (int i = 0; i < n && k < max; i++)
        if (rows[i].pid == (int64_t)getpid() && rows[i].host &&
            strcmp(rows[i].host, jobs_host()) == 0)
            ids[k++] = rows[i].id;
    store_job_rows_free(rows, n);
    return k;
}

static int accepted(const Session *s, const JobRow *r) {
    return trust_job_accepted(r->queued_by, r->queued_uid, getuid(), session_accept_users(s),
                              s->owner);
}

int session_queued(Session *s, int *mine, int *others, Err *err) {
    JobFilter f = {.states = 1u << JOB_STATE_QUEUED};
    JobRow *rows;
    int n;
    *mine = *others = 0;
    int rc = store_jobs_list(s->st, &f, &rows, &n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) {
        if (accepted(s, &rows[i]))
            (*mine)++;
        else
            (*others)++;
    }
    store_job_rows_free(rows, n);
    return 0;
}

int session_resume_interrupted(Session *s) {
    jobs_reap(s->st, 0, NULL, NULL);
    JobFilter f = {.states = 1u << JOB_STATE_INTERRUPTED};
    JobRow *rows;
    int n, done = 0;
    Err err = {0};
    if (store_jobs_list(s->st, &f, &rows, &n, &err) != 0) {
        log_warn("resume: %s", err.msg);
        return 0;
    }
    for (int i = n - 1; i >= 0; i--) {
        Err e = {0};
        if (!accepted(s, &rows[i]))
            continue; /* another user's job: their worker resumes it */
        if (store_job_resume(s->st, rows[i].id, &e)) {
            log_warn("resume: %s", e.msg);
        } else {
            log_info("resumed interrupted job #%lld (%s)", (long long)rows[i].id, rows[i].kind);
            done++;
        }
    }
    store_job_rows_free(rows, n);
    return done;
}

/* ---- stop signals ------------------------------------------------------------------------ */

static volatile sig_atomic_t caught;
static volatile sig_atomic_t wake_fd = -1;
static struct sigaction saved_int, saved_term, saved_hup;
static int catching, catching_hup;

static void on_stop_signal(int sig) {
    (void)sig;
    caught++;
    int fd = wake_fd;
    if (fd >= 0) {
        int saved = errno;
        ssize_t r = write(fd, "s", 1);
        (void)r;
        errno = saved;
    }
}

void session_signals_catch(int fd, int hangup) {
    if (catching)
        session_signals_release();
    caught = 0;
    wake_fd = fd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, &saved_int);
    sigaction(SIGTERM, &sa, &saved_term);
    if (hangup)
        sigaction(SIGHUP, &sa, &saved_hup);
    catching = 1;
    catching_hup = hangup;
}

void session_signals_release(void) {
    if (!catching)
        return;
    sigaction(SIGINT, &saved_int, NULL);
    sigaction(SIGTERM, &saved_term, NULL);
    if (catching_hup)
        sigaction(SIGHUP, &saved_hup, NULL);
    catching = catching_hup = 0;
    wake_fd = -1;
}

int session_signals_caught(void) { return caught; }

/* ---- `easel worker` ------------------------------------------------------------------------ */

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int session_serve(Session *s, const SessionServeOptions *o, Err *err) {
    session_signals_catch(-1, 0);
    int rc = session_start_pool(s, NULL, NULL, err);
    if (rc) {
        session_signals_release();
        return rc;
    }
    double look_s = o->look_s > 0 ? o->look_s : 5.0, last_look = 0;
    int idle_rounds = 0, told_others = 0;
    while (!session_signals_caught()) {
        nap_ms(100);
        if (!o->until_idle && base_now() - last_look < look_s)
            continue;
        last_look = base_now();
        int mine = 0, others = 0;
        Err e = {0};
        if (session_queued(s, &mine, &others, &e) != 0)
            continue; /* locked or busy: look again */
        if (others && !told_others) {
            log_info("%d queued job(s) of other users wait here; this worker runs them only "
                     "with --accept-user NAME ('easel jobs list' shows who queued them)",
                     others);
            told_others = 1;
        }
        if (o->until_idle) {
            idle_rounds = mine == 0 && session_busy(s) == 0 ? idle_rounds + 1 : 0;
            if (idle_rounds >= SESSION_IDLE_ROUNDS)
                break;
        }
    }
    rc = SESSION_SERVED;
    if (session_signals_caught()) {
        log_info("stopping: %d running job(s) asked to checkpoint and stop (signal again to "
                 "exit at once)", session_busy(s));
        session_request_stop(s);
        while (session_busy(s) > 0 && session_signals_caught() < 2)
            nap_ms(50);
        if (session_signals_caught() >= 2) {
            log_warn("exiting now; running jobs will show as interrupted");
            rc = SESSION_ABANDONED;
        }
    }
    if (rc == SESSION_SERVED)
        session_stop_pool(s);
    session_signals_release();
    return rc;
}
