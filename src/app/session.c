/* session — see session.h. */
#include "session.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "trust.h"

struct Session {
    JobsPool *pool;
    int threads;
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

int session_open(const SessionConfig *cfg, Session **out, Err *err) {
    *out = NULL;
    Session *s = xcalloc(1, sizeof *s);
    s->threads = cfg->threads == SESSION_THREADS_DEFAULT ? jobs_default_threads()
                 : cfg->threads > 0                      ? cfg->threads
                                                         : 0;
    s->accept = copy_users(cfg->accept_users);
    if (s->threads > 0) {
        JobsPoolConfig pc;
        jobs_pool_config_init(&pc, cfg->db_path);
        pc.threads = s->threads;
        pc.gpu_share = cfg->gpu_share > 0 ? cfg->gpu_share : 1;
        pc.accept_users = (const char *const *)s->accept;
        pc.on_change = cfg->on_change;
        pc.user_data = cfg->user_data;
        s->pool = jobs_pool_start(&pc, err);
        if (!s->pool) {
            free_users(s->accept);
            free(s);
            return err && err->code ? err->code : ERR_IO;
        }
    }
    *out = s;
    return 0;
}

void session_close(Session *s) {
    if (!s)
        return;
    jobs_pool_stop(s->pool);
    free_users(s->accept);
    free(s);
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

int session_running_jobs(Session *s, Store *st, int64_t *ids, int max, Err *err) {
    (void)s;
    JobFilter f = {.states = 1u << JOB_STATE_RUNNING};
    JobRow *rows;
    int n;
    int rc = store_jobs_list(st, &f, &rows, &n, err);
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

int session_queued(const Session *s, Store *st, uid_t owner, int *mine, int *others, Err *err) {
    JobFilter f = {.states = 1u << JOB_STATE_QUEUED};
    JobRow *rows;
    int n;
    *mine = *others = 0;
    int rc = store_jobs_list(st, &f, &rows, &n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) {
        if (trust_job_accepted(rows[i].queued_by, rows[i].queued_uid, getuid(),
                               session_accept_users(s), owner))
            (*mine)++;
        else
            (*others)++;
    }
    store_job_rows_free(rows, n);
    return 0;
}
