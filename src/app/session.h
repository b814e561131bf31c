/* session — the worker side of one easel process: the job pool and the options it runs with,
 * the same object for the TUI (its Jobs screen) and `easel worker` (headless).
 *
 * DESIGN
 *   - The caller (the CLI) decides the options: threads, jobs per GPU, the other users whose
 *     jobs this process runs. Nothing here reads the environment; `easel` and `easel worker`
 *     parse their flags (and the documented fallbacks $EASEL_WORKER_THREADS, $EASEL_GPU_SHARE)
 *     in src/cli and hand them over through SessionConfig (the TUI: through AppConfig).
 *   - threads = 0 is a session without a pool: this process runs no jobs and leaves them to
 *     `easel worker`; every query then answers 0 and kick/stop do nothing.
 *   - session_close stops the pool: running jobs checkpoint and end interrupted (resumable).
 *     session_stop_pool does the same earlier and keeps the session (its options), e.g. to
 *     hand the jobs to a headless worker with the same thread count.
 *
 * Thread safety: as jobs.h, from one thread (the main thread); on_change runs on workers.
 */
#ifndef EASEL_SESSION_H
#define EASEL_SESSION_H

#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "jobs.h"
#include "store.h"

typedef struct SessionConfig {
    const char *db_path;    /* the store the pool's threads open (copied) */
    int threads;            /* worker threads; 0 = no pool; SESSION_THREADS_DEFAULT = cores */
    int gpu_share;          /* jobs per GPU at once; 0 = 1 (exclusive) */
    /* Logins whose jobs this session runs besides its own user's, NULL-ended (copied);
     * NULL = none. */
    const char *const *accept_users;
    /* As JobsPoolConfig.on_change: from a worker thread, must not block. NULL = none. */
    void (*on_change)(void *user_data, int64_t job_id, JobState state);
    void *user_data;
} SessionConfig;

#define SESSION_THREADS_DEFAULT (-1)

typedef struct Session Session;

/* Start a session (and its pool when cfg->threads != 0). Returns 0 and *out, or an ERR_*
 * with err set and *out = NULL (the store could not be opened by the pool's threads). */
int session_open(const SessionConfig *cfg, Session **out, Err *err);

/* Stop the pool (running jobs end interrupted) and free the session. NULL allowed. */
void session_close(Session *s);

/* The thread count the session was opened with, resolved (0 = no pool). */
int session_threads(const Session *s);
/* 1 while the pool runs. */
int session_has_pool(const Session *s);
/* Jobs running in this session's pool now; GPUs it schedules. */
int session_busy(Session *s);
int session_gpus(const Session *s);
/* The accepted users (NULL-ended copy) or NULL. */
const char *const *session_accept_users(const Session *s);

/* Wake idle workers now (after this process queued a job). */
void session_kick(Session *s);
/* Ask running jobs to stop without waiting (after SIGTERM); session_stop_pool waits. */
void session_request_stop(Session *s);
/* Stop the pool now (running jobs end interrupted); the session stays, without a pool. */
void session_stop_pool(Session *s);

/* The ids of the jobs this process is running now (running, this pid on this host), newest
 * first, at most max. Returns the count, or an ERR_* with err set. */
int session_running_jobs(Session *s, Store *st, int64_t *ids, int max, Err *err);

/* Queued jobs of the store this session would run (*mine: its own user's and the accepted
 * users', trust_job_accepted with OWNER the store's owner) and those it leaves to other
 * users' workers (*others); `easel worker --until-idle` stops when *mine and session_busy
 * are 0. Returns 0, or an ERR_* with err set. */
int session_queued(const Session *s, Store *st, uid_t owner, int *mine, int *others, Err *err);

#endif
