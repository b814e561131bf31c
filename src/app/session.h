/* session — one easel process's side of the store: the UI thread's (or the headless worker's
 * main) connection, opened and checked once; the job pool and the options it runs with; the
 * stop signals; and `easel worker`'s serving loop. The same object for the TUI (ui/app.c opens
 * it in app_run, its Jobs screen starts the pool) and `easel worker` (src/cli/cli_jobs.c).
 *
 * DESIGN
 *   - The caller (the CLI) decides the options: threads, jobs per GPU, the other users whose
 *     jobs this process runs, the annotator it rates as. Nothing here reads the environment;
 *     `easel` and `easel worker` parse their flags (and the documented fallbacks
 *     $EASEL_WORKER_THREADS, $EASEL_GPU_SHARE) in src/cli and hand them over through
 *     SessionConfig (the TUI: through AppConfig, which app_run turns into a SessionConfig).
 *   - session_open opens the store (it must exist: store_open_existing), reads its owner and
 *     runs the checks the config asks for (rating as another annotator, the reviewer role)
 *     before anything else happens, so a refused TUI never takes the terminal. It starts no
 *     thread: session_start_pool does, after the caller has set its signal mask (threads
 *     inherit it) and knows whom to wake.
 *   - threads = 0 is a session without a pool: this process runs no jobs and leaves them to
 *     `easel worker`; every query then answers 0 and kick/stop do nothing.
 *   - session_close stops the pool (running jobs checkpoint and end interrupted, resumable)
 *     and closes the store. session_stop_pool does the same earlier and keeps the session
 *     (its store and options), e.g. to hand the jobs to a headless worker with the same
 *     thread count.
 *   - Stop signals (SIGINT, SIGTERM; SIGHUP for a terminal's process) are process-wide: the
 *     handler installed by session_signals_catch counts them and writes a byte to a wake fd
 *     (the TUI's wake pipe); the TUI's loop and session_serve both read the count.
 *
 * Thread safety: from one thread (the main thread), as store.h; the pool's on_change runs on
 * workers. The signal functions are process-wide, not per session.
 */
#ifndef EASEL_SESSION_H
#define EASEL_SESSION_H

#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "jobs.h"
#include "store.h"

typedef struct SessionConfig {
    const char *db_path;    /* the store (must exist); the pool's threads open it too (copied) */
    int threads;            /* worker threads; 0 = no pool; SESSION_THREADS_DEFAULT = cores */
    int gpu_share;          /* jobs per GPU at once; 0 = 1 (exclusive) */
    /* Logins whose jobs this session runs besides its own user's, NULL-ended (copied);
     * NULL = none. */
    const char *const *accept_users;
    /* The annotator this process rates as (resolved, e.g. identity_annotator()); NULL = it
     * rates nothing. session_open refuses a name the user may not rate as
     * (trust_check_act_as). */
    const char *act_as;
    /* What of this process needs the reviewer role ("the disagree order"); NULL = nothing.
     * session_open refuses it unless the login may review (trust_require_review). */
    const char *needs_review;
} SessionConfig;

#define SESSION_THREADS_DEFAULT (-1)

typedef struct Session Session;

/* Open the store of CFG and run its checks. Returns 0 and *out, or an ERR_* with err set and
 * *out = NULL (no store there, its owner unreadable, a check refused). Starts no thread. */
int session_open(const SessionConfig *cfg, Session **out, Err *err);

/* Stop the pool (running jobs end interrupted), close the store and free. NULL allowed. */
void session_close(Session *s);

/* This process's connection to the store (the UI thread's / the worker's main); borrowed. */
Store *session_store(Session *s);
/* The Unix owner of the store file (trust_store_owner), read at open. */
uid_t session_owner(const Session *s);

/* Start the pool with the config's threads (nothing when 0, or when it runs already).
 * ON_CHANGE(USER_DATA, ...) as JobsPoolConfig.on_change: from a worker thread after a job
 * started or ended, must not block (NULL = none). Returns 0, or an ERR_* with err set. */
int session_start_pool(Session *s, void (*on_change)(void *user_data, int64_t job_id,
                                                      JobState state),
                       void *user_data, Err *err);

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
int session_running_jobs(Session *s, int64_t *ids, int max, Err *err);

/* Queued jobs of the store this session would run (*mine: its own user's and the accepted
 * users', trust_job_accepted with the store's owner) and those it leaves to other users'
 * workers (*others). Returns 0, or an ERR_* with err set. */
int session_queued(Session *s, int *mine, int *others, Err *err);

/* Queue again every interrupted job this session would run (its own user's and the accepted
 * users'), after reaping dead workers' jobs; each one is logged. Returns how many. */
int session_resume_interrupted(Session *s);

/* ---- stop signals (process-wide) ----------------------------------------------------------- */

/* Catch SIGINT and SIGTERM (and SIGHUP when HANGUP: a terminal's process; a worker under
 * nohup keeps ignoring it): each one is counted and, when WAKE_FD >= 0, writes one byte to
 * it. Resets the count. session_signals_release restores what was there before. */
void session_signals_catch(int wake_fd, int hangup);
void session_signals_release(void);
/* Stop signals caught since session_signals_catch. */
int session_signals_caught(void);

/* ---- `easel worker` ----------------------------------------------------------------------- */

typedef struct SessionServeOptions {
    int until_idle;   /* return once no job of this session's is queued or running (seen
                       * SESSION_IDLE_ROUNDS looks in a row, 0.1 s apart) */
    double look_s;    /* how often the queue is looked at when not until_idle; 0 = 5 s */
} SessionServeOptions;

#define SESSION_IDLE_ROUNDS 5

enum { SESSION_SERVED = 0, SESSION_ABANDONED = 1 };

/* Run the pool (started first when it is not) until a stop signal or, with until_idle, until
 * idle: the loop of `easel worker`. Catches the stop signals itself (session_signals_catch,
 * released before it returns). Logs (log_*) what users must know: other users' jobs waiting
 * here, the stop. On the first stop signal running jobs are asked to checkpoint and stop and
 * it waits for them (SESSION_SERVED, the pool stopped); on a second one it returns at once
 * (SESSION_ABANDONED: jobs still run; the caller exits, they show as interrupted). Returns one
 * of those, or an ERR_* with err set when the pool cannot start. */
int session_serve(Session *s, const SessionServeOptions *o, Err *err);

#endif
