/* store_jobs — the persistent job queue: jobs, their dependencies and logs in the store.
 *
 * Every easel process on a store (TUIs over SSH, `easel worker`s) sees the same jobs. The
 * store is the only coordination between processes:
 *   - claiming is one BEGIN IMMEDIATE transaction that picks the best runnable job and moves
 *     it queued -> running with `UPDATE ... WHERE id = ? AND state = 'queued'`, so two
 *     workers (threads or processes) never run one job;
 *   - a running job's process heartbeats; any process may turn a job whose heartbeat is
 *     stale (or whose process on this host is gone) into 'interrupted';
 *   - GPUs are handed out in the claim transaction from what running jobs on the same host
 *     hold, so two processes on one machine never give one GPU to two exclusive jobs.
 *
 * States:
 *
 *            add                claim                  run() == 0
 *   (new) ---------> queued ------------> running -----------------> succeeded
 *                    |  ^                  |  |  \    run() < 0
 *          cancel    |  | resume           |  |   ---------------->  failed
 *                    v  |                  |  | cancel_requested + ERR_CANCELLED
 *                 cancelled <--------------   +--------------------> cancelled
 *                    ^                     |  stale heartbeat, dead pid, worker stopping
 *                    |  resume             +-----------------------> interrupted
 *                 (failed, cancelled, interrupted) --resume--> queued (checkpoint kept)
 *
 * retry makes a NEW job with the same kind, parameters, priority, GPUs and dependencies
 * (retry_of = the old id); resume re-queues the SAME job and keeps its checkpoint.
 * A queued job whose dependency ended failed or cancelled is failed with a message naming
 * the dependency (never left waiting forever); resuming it re-checks.
 *
 * Thread safety: as store.h — one Store per thread.
 */
#ifndef EASEL_STORE_JOBS_H
#define EASEL_STORE_JOBS_H

#include <stdint.h>

#include "err.h"
#include "store.h"

typedef enum JobState {
    JOB_STATE_QUEUED,
    JOB_STATE_RUNNING,
    JOB_STATE_SUCCEEDED,
    JOB_STATE_FAILED,
    JOB_STATE_CANCELLED,
    JOB_STATE_INTERRUPTED,
    JOB_STATE_COUNT
} JobState;

/* "queued", ... (static). */
const char *store_job_state_name(JobState s);
/* The state named S, or -1. */
int store_job_state_parse(const char *s);

/* One row of the jobs table. Strings are owned by the row (store_job_row_deinit). */
typedef struct JobRow {
    int64_t id;
    char *kind;
    char *params;          /* JSON object */
    JobState state;
    int priority;          /* higher runs first */
    double done;
    double total;          /* 0 = unknown */
    double rate;           /* units per second, 0 = unknown */
    char *unit;            /* "" if none */
    double eta;            /* seconds left from rate, -1 = unknown */
    int gpus_wanted;       /* 0, N, or -1 = all */
    char *gpus;            /* GPUs held or last held, "0,1"; NULL = none */
    char *worker;          /* "host:pid:thread" */
    int64_t pid;
    char *host;
    double heartbeat_at;   /* wall seconds, 0 = never */
    int cancel_requested;
    char *checkpoint;      /* JSON or NULL */
    int64_t retry_of;      /* 0 = none */
    char *message;         /* exit message, NULL = none */
    double created_at;     /* wall seconds */
    double started_at;     /* 0 = never */
    double finished_at;    /* 0 = not finished */
    int64_t *deps;         /* jobs this one waits for */
    int n_deps;
    char *waiting;         /* queued only: the dependencies not yet succeeded, "#3 (running),
                            * #4 (queued)"; NULL = none */
    char *queued_by;       /* Unix login that queued it; "" = unknown (before schema 2) */
    int64_t queued_uid;    /* its uid; -1 = unknown */
    double resume_done;    /* done when this run's rate baseline was taken */
} JobRow;

void store_job_row_deinit(JobRow *r); /* NULL allowed; zeroes the row */
void store_job_rows_free(JobRow *rows, int n);

/* ---- adding and reading ------------------------------------------------------------- */

typedef struct JobNew {
    const char *kind;
    const char *params;     /* JSON object; NULL = "{}" */
    int priority;
    int gpus_wanted;
    const int64_t *deps;    /* may be NULL when n_deps == 0 */
    int n_deps;
    int64_t retry_of;       /* 0 = none */
    const char *queued_by;  /* who queues it; NULL = this process (identity_login, getuid) */
    int64_t queued_uid;     /* with queued_by: its uid (-1 = unknown) */
} JobNew;

/* Insert a queued job, recording who queued it. Each dependency must exist (ERR_NOTFOUND
 * names it). *id = new id. The trust rules (paths, trust.h) are the caller's: queue through
 * jobs_add (jobs.h), which checks them. */
int store_job_add(Store *st, const JobNew *j, int64_t *id, Err *err);

/* Read one job with its dependencies. ERR_NOTFOUND if there is no such job. */
int store_job_get(Store *st, int64_t id, JobRow *out, Err *err);

typedef struct JobFilter {
    unsigned states;        /* bit (1u << JobState); 0 = all */
    int limit;              /* 0 = no limit */
} JobFilter;

/* Jobs newest first (by id, descending). *rows is the caller's (store_job_rows_free). */
int store_jobs_list(Store *st, const JobFilter *f, JobRow **rows, int *n, Err *err);

/* Counts per state, indexed by JobState. */
int store_jobs_count(Store *st, int counts[JOB_STATE_COUNT], Err *err);

/* ---- the log -------------------------------------------------------------------------- */

typedef struct JobLogLine {
    int64_t seq;            /* increasing; pass the last one seen to follow the log */
    double t;               /* wall seconds */
    char *line;
} JobLogLine;

int store_job_log_append(Store *st, int64_t id, const char *line, Err *err);

/* Lines of job ID with seq > AFTER, oldest first; with TAIL > 0 only the last TAIL of them.
 * *lines is the caller's (store_job_log_free). */
int store_job_log_read(Store *st, int64_t id, int64_t after, int tail, JobLogLine **lines,
                       int *n, Err *err);
void store_job_log_free(JobLogLine *lines, int n);

/* ---- user actions --------------------------------------------------------------------- */

/* A queued (or interrupted) job becomes cancelled at once; a running one gets
 * cancel_requested (its worker sees it within a second). ERR_CONFLICT if it already ended
 * succeeded, failed or cancelled. *now_state = the state
 * after the call (may be NULL). */
int store_job_cancel(Store *st, int64_t id, JobState *now_state, Err *err);

/* New queued job with the same kind, params, priority, gpus and deps, queued by this
 * process's user; *new_id. Refused (ERR_CONFLICT) for queued or running jobs. */
int store_job_retry(Store *st, int64_t id, int64_t *new_id, Err *err);

/* Re-queue a failed, cancelled or interrupted job, keeping its checkpoint. ERR_CONFLICT for
 * other states, or if a dependency ended failed/cancelled (names it). */
int store_job_resume(Store *st, int64_t id, Err *err);

/* Set the priority (any state; matters while queued). */
int store_job_set_priority(Store *st, int64_t id, int priority, Err *err);

/* ---- workers ---------------------------------------------------------------------------- */

typedef struct JobClaim {
    const char *worker;     /* "host:pid:thread" */
    const char *host;
    int64_t pid;
    int n_gpus;             /* GPUs on this host (0 = none) */
    int gpu_share;          /* jobs that may hold one GPU at once (>= 1) */
    /* Whether this process can run KIND; sets *gpu_required. NULL = any kind, not required. */
    int (*accept)(void *user_data, const char *kind, int *gpu_required);
    /* Whether this worker runs jobs queued by QUEUED_BY / QUEUED_UID (-1 = unknown); see
     * trust_job_accepted. NULL = every user's. */
    int (*accept_user)(void *user_data, const char *queued_by, int64_t queued_uid);
    void *user_data;
} JobClaim;

/* Claim the best runnable job: queued, every dependency succeeded, a kind accept() knows,
 * and its GPUs free on this host; highest priority first, then oldest. Moves it to running
 * with worker, pid, host, gpus, started_at, heartbeat_at set. Returns 1 and fills *out,
 * 0 if nothing is runnable, or a negative ERR_* (*out is zeroed then). Also fails queued
 * jobs whose dependency ended failed or cancelled. Takes the write lock only when some
 * queued job has all its dependencies ended (idle polling is read-only). */
int store_job_claim(Store *st, const JobClaim *c, JobRow *out, Err *err);

/* Without the write lock: is there a queued job whose dependencies all ended (so a claim
 * would run it, or fail it for a failed dependency), of a user C accepts (C NULL or its
 * accept_user NULL: any user)? Every idle process polls this, so it must not take the write
 * lock that annotators' saves need. 1 yes, 0 no, or ERR_*. */
int store_jobs_claimable(Store *st, const JobClaim *c, Err *err);

/* Heartbeat every running job of (HOST, PID). */
int store_jobs_heartbeat(Store *st, const char *host, int64_t pid, Err *err);

/* Ids of running jobs of (HOST, PID) with cancel_requested. *ids is the caller's (free). */
int store_jobs_cancel_requested(Store *st, const char *host, int64_t pid, int64_t **ids,
                                int *n, Err *err);

/* Progress of a running job. The rate (and from it every process's ETA) counts only work
 * done since this run's baseline: the first progress after the claim, or the last change of
 * UNIT, or of DONE going backwards (a resumed job restarting from its checkpoint); so a job
 * resumed at step 3100 does not count those 3100 steps as done in its first second. UNIT
 * NULL keeps the previous one. */
int store_job_progress(Store *st, int64_t id, double done, double total, const char *unit,
                       Err *err);

/* Replace the checkpoint JSON. */
int store_job_checkpoint_save(Store *st, int64_t id, const char *json, Err *err);

/* End a running job held by WORKER: STATE is succeeded, failed, cancelled or interrupted.
 * A job no longer held by WORKER (reaped meanwhile) is left alone: returns ERR_CONFLICT. */
int store_job_finish(Store *st, int64_t id, const char *worker, JobState state,
                     const char *message, Err *err);

/* Dead workers: every running job whose heartbeat is older than STALE_S seconds, or that
 * runs on HOST under a pid for which pid_alive() says 0, becomes interrupted with a message
 * saying why. pid_alive may be NULL. *n (may be NULL) = jobs changed. */
int store_jobs_reap(Store *st, double stale_s, const char *host, int (*pid_alive)(int64_t pid),
                    int *n, Err *err);

/* ---- the images a job wrote (the Jobs screen's preview) ----------------------------------- */

/* Record that job JOB_ID wrote (or checked and kept) image IMAGE_ID, now. Recording it again
 * moves it to the front. Both must exist (ERR_CONFLICT otherwise). */
int store_job_image_note(Store *st, int64_t job_id, int64_t image_id, Err *err);

/* The image job JOB_ID recorded last: *image_id and *path (its stored path resolved to an
 * openable one, malloc'd, the caller frees; either may be NULL). ERR_NOTFOUND when the job
 * recorded none (yet). */
int store_job_latest_image(Store *st, int64_t job_id, int64_t *image_id, char **path,
                           Err *err);

#endif
