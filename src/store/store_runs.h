/* store_runs — training/evaluation runs, their per-step metrics, checkpoints, and scores.
 *
 * A run is one train-reward / eval-reward job's record: a unique name, its kind, its config
 * (JSON text), a state ('running', 'succeeded', 'failed', 'cancelled', 'interrupted'), the
 * job that drives it (0 = run from the CLI in the foreground) and its output folder.
 * Metrics are (split, name, step) -> value rows: split 'train', 'val' or 'sys'; names such
 * as 'loss', 'spatial_acc', 'fidelity_f1', 'lr', 'pairs_per_s', 'head_w_style'. A metric
 * written again for the same (split, name, step) replaces the old value, so a resumed run
 * that repeats steps leaves one row per step. Writers commit often so every process (the
 * Monitor in another SSH session) sees them within a second.
 *
 * Thread safety: as store.h. Ownership: structs filled here own their strings; release
 * with the matching _deinit / _free. Every input string is copied.
 */
#ifndef EASEL_STORE_RUNS_H
#define EASEL_STORE_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

/* ---- runs ---- */

typedef struct StoreRun {
    int64_t id;
    char *name;
    char *kind;            /* "train-reward", "eval-reward" */
    char *config;          /* JSON text */
    char *state;           /* "running", "succeeded", "failed", "cancelled", "interrupted" */
    int64_t job_id;        /* 0 = none */
    char *output;          /* folder, or NULL */
    double created_at;     /* Unix seconds */
    double updated_at;     /* last metric or state change */
} StoreRun;

/* Create run NAME. Returns 0 and *id, ERR_CONFLICT if the name exists, ERR_DB. */
int store_run_create(Store *st, const char *name, const char *kind, const char *config,
                     int64_t job_id, const char *output, int64_t *id, Err *err);

/* A name not used yet: PREFIX-YYYYMMDD-HHMMSS, with -2, -3... appended if needed. New
 * string, caller frees. */
char *store_run_unique_name(Store *st, const char *prefix);

/* Look up by id / by name / by "name or numeric id" (what users type). 0, ERR_NOTFOUND,
 * ERR_DB; *out filled, caller deinits. */
int store_run_get(Store *st, int64_t id, StoreRun *out, Err *err);
int store_run_by_name(Store *st, const char *name, StoreRun *out, Err *err);
int store_run_find(Store *st, const char *name_or_id, StoreRun *out, Err *err);

/* All runs, newest first; KIND NULL = any. Caller: store_runs_free(*out, *n). */
int store_runs_list(Store *st, const char *kind, StoreRun **out, size_t *n, Err *err);

/* Set the state (and updated_at). */
int store_run_set_state(Store *st, int64_t id, const char *state, Err *err);
/* Replace the config JSON (e.g. once the data split is known). */
int store_run_set_config(Store *st, int64_t id, const char *config, Err *err);

void store_run_deinit(StoreRun *r);          /* NULL allowed */
void store_runs_free(StoreRun *r, size_t n); /* NULL allowed */

/* ---- metrics ---- */

typedef struct StoreMetric {
    char split[8];         /* "train", "val", "sys" */
    char name[40];         /* "loss", "spatial_f1", ... */
    int64_t step;          /* optimizer steps so far */
    double epoch;          /* fractional epoch */
    double value;
    double t;              /* Unix seconds when written */
} StoreMetric;

/* Write N metrics of RUN in one transaction (t = now when 0) and touch the run's updated_at.
 * Existing (split, name, step) rows are replaced. */
int store_metrics_add(Store *st, int64_t run_id, const StoreMetric *m, size_t n, Err *err);

/* Metrics of RUN written after T (T <= 0: all), ordered by split, name, step. Caller frees
 * *out with free(). */
int store_metrics_list(Store *st, int64_t run_id, double after_t, StoreMetric **out, size_t *n,
                       Err *err);

/* Latest value (highest step) of (SPLIT, NAME) in RUN: 0 with *value and *step, or ERR_NOTFOUND. */
int store_metric_last(Store *st, int64_t run_id, const char *split, const char *name,
                      double *value, int64_t *step, Err *err);

/* Delete the metrics of RUN with step > STEP (a resumed run drops what it will redo). */
int store_metrics_truncate(Store *st, int64_t run_id, int64_t step, Err *err);

/* ---- checkpoints ---- */

typedef struct StoreCheckpoint {
    int64_t id;
    int64_t run_id;
    char *name;            /* "best", "final", "checkpoint-4" */
    char *path;            /* folder (as written, absolute) */
    int64_t step;
    double epoch;
    char *metrics;         /* JSON text or NULL */
    double created_at;
} StoreCheckpoint;

/* Record (or replace: "best" moves) checkpoint NAME of RUN. */
int store_checkpoint_put(Store *st, int64_t run_id, const char *name, const char *path,
                         int64_t step, double epoch, const char *metrics_json, Err *err);

/* Forget checkpoint NAME of RUN (its folder was deleted: an older checkpoint-N/ beyond
 * the run's save_total_limit). Missing is fine. */
int store_checkpoint_delete(Store *st, int64_t run_id, const char *name, Err *err);

/* Checkpoints of RUN in creation order. Caller: store_checkpoints_free(*out, *n). */
int store_checkpoints_list(Store *st, int64_t run_id, StoreCheckpoint **out, size_t *n,
                           Err *err);
void store_checkpoints_free(StoreCheckpoint *c, size_t n); /* NULL allowed */

/* ---- scores ---- */

typedef struct StoreScore {
    int64_t image_id;
    char head[24];         /* aspect name or "combined" */
    double value;
} StoreScore;

/* Insert or replace N scores given by CHECKPOINT (folder path), one transaction. */
int store_scores_put(Store *st, const char *checkpoint, const StoreScore *s, size_t n,
                     Err *err);

/* Scores of CHECKPOINT (IMAGE_ID 0 = all images), ordered by image id then head. Caller
 * frees *out with free(). */
int store_scores_list(Store *st, const char *checkpoint, int64_t image_id, StoreScore **out,
                      size_t *n, Err *err);

#endif
