/* jobs — the worker pool that runs queued jobs of the store, in any easel process: the TUI
 * (by default) and `easel worker` (headless).
 *
 * DESIGN
 *   - N worker threads, each with its own Store connection, claim jobs through the store
 *     (store_job_claim: atomic across threads and processes) and call the kind's run() with
 *     a JobCtx. Idle threads wait on a condition variable; the monitor looks at the store
 *     once per poll_s for the whole pool (one read, no write lock: store_jobs_claimable) and
 *     wakes one worker when there is claimable work; a worker that claimed a job wakes the
 *     next. So jobs added by other processes start within poll_s, jobs added here at once
 *     (jobs_pool_kick), and an idle TUI costs the store one read per poll_s.
 *   - One monitor thread (own Store) heartbeats this process's running jobs, turns cancel
 *     requests from the store into each job's atomic cancel flag (within 250 ms), and reaps
 *     dead workers of any process (stale heartbeat, or a pid on this host that is gone).
 *   - GPUs: the claim hands out GPU indexes from what running jobs on this host hold, each
 *     GPU to gpu_share jobs at once (1 = exclusive), several to a kind that wants several.
 *   - Workers and the monitor block SIGWINCH, SIGINT and SIGTERM: only the main thread sees
 *     signals (the UI's resize, `easel worker`'s stop).
 *   - Whose jobs: a pool runs only jobs queued by its own Unix user, plus those of the
 *     logins in accept_users (`easel worker --accept-user NAME`); and before each run it
 *     checks the job's paths again (trust.h), because the store may have been edited since
 *     the job was queued. A refused job fails with the reason. A job run for another user
 *     acts as that user on its connection (store_set_actor).
 *   - Stopping: jobs_pool_stop sets every running job's cancel flag and marks the stop as a
 *     shutdown, so a run() that returns ERR_CANCELLED ends "interrupted" (resumable, with
 *     its checkpoint) instead of "cancelled"; then it joins the threads.
 *
 * Lock order: the pool mutex is never held across a store call or run().
 * Thread safety: jobs_pool_* may be called from any one thread (the main thread).
 */
#ifndef EASEL_JOBS_H
#define EASEL_JOBS_H

#include <stdint.h>

#include "err.h"
#include "jobkind.h"
#include "store_jobs.h"

typedef struct JobsPool JobsPool;

typedef struct JobsPoolConfig {
    const char *db_path;    /* the store every thread opens (copied) */
    int threads;            /* worker threads; 0 = default (jobs_default_threads) */
    int n_gpus;             /* GPUs to schedule; -1 = discover with NVML (gpu.h) */
    int gpu_share;          /* jobs per GPU at once; 0 = 1 (exclusive) */
    double poll_s;          /* how often the monitor looks for claimable jobs; 0 = 0.5 s */
    double heartbeat_s;     /* 0 = 2 s */
    double stale_s;         /* a heartbeat older than this is a dead worker; 0 = 30 s */
    /* Logins whose jobs this pool runs besides its own user's, NULL-ended (copied); NULL =
     * none. */
    const char *const *accept_users;
    /* Called from a worker thread after a job started or ended (e.g. to write a byte to the
     * UI's wake pipe). Must not block and must not call ncurses. NULL = none. */
    void (*on_change)(void *user_data, int64_t job_id, JobState state);
    void *user_data;
} JobsPoolConfig;

/* Defaults as documented above. */
void jobs_pool_config_init(JobsPoolConfig *cfg, const char *db_path);

/* Number of online CPU cores, at least 1. */
int jobs_default_threads(void);

/* Start the threads. Returns NULL with err set if the store cannot be opened. */
JobsPool *jobs_pool_start(const JobsPoolConfig *cfg, Err *err);

/* Wake idle workers now (after adding a job from this process). */
void jobs_pool_kick(JobsPool *pool);

/* Jobs running in this pool right now. */
int jobs_pool_busy(JobsPool *pool);
int jobs_pool_threads(const JobsPool *pool);
int jobs_pool_gpus(const JobsPool *pool);

/* Ask running jobs to stop (they end interrupted, resumable), stop claiming, wait for the
 * threads and free the pool. NULL allowed. */
void jobs_pool_stop(JobsPool *pool);

/* Ask to stop without waiting (e.g. from the main loop after SIGTERM); jobs_pool_stop then
 * waits. */
void jobs_pool_request_stop(JobsPool *pool);

/* Queue the job P describes (kind, parameters) with JN's priority, GPUs and dependencies
 * (JN's kind and params are set here; gpus_wanted JOB_GPUS_OF_KIND becomes what the kind
 * asks for with these parameters): the one way the CLI and the TUI queue a job. Refuses
 * (ERR_DENIED, store unchanged) a job whose paths break the trust rules (trust.h). *id =
 * the new job. A kind with a `device` parameter (train-reward, eval-reward, score) holds
 * no GPU for --device cpu and at least one for any other device (JN's gpus_wanted is set
 * so). */
int jobs_add(Store *st, const JobParams *p, JobNew *jn, int64_t *id, Err *err);

/* This host's name as jobs record it (static buffer, set once). */
const char *jobs_host(void);

/* Reap dead workers of every process on ST (what the monitor does every few seconds); for
 * commands that read jobs without running a pool (`easel jobs list`). STALE_S 0 = 30 s. */
int jobs_reap(Store *st, double stale_s, int *n, Err *err);

#endif
