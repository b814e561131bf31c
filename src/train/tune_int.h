/* tune_int — what the online loop (tune_online.c) uses of tune.c's run: the one pipeline,
 * the step, the metrics and the checkpoints, on pairs it replaces every round. Internal to
 * src/train.
 * Thread safety: as tune.h (one run per thread). */
#ifndef EASEL_TUNE_INT_H
#define EASEL_TUNE_INT_H

#include <stddef.h>

#include "pipeline.h"
#include "tune.h"

typedef struct Run TuneInt;

/* Open the backend and the model, add the adapter (run_prepare without pairs). *out is set
 * even on failure (close it). */
int tune_int_open(Store *st, const TuneConfig *c, const TuneHooks *h, TuneInt **out, Err *err);
/* The run folder: config.json (tune.c's settings plus EXTRA_JSON's keys) written, or checked
 * against the one there and the newest checkpoint loaded (*start its step, 0 when fresh),
 * metrics.jsonl and the store's run made or truncated to *start. */
int tune_int_begin(TuneInt *r, const char *extra_json, int *start, Err *err);
/* The store's run state from RC (0, ERR_CANCELLED, other). */
void tune_int_end(TuneInt *r, int rc);
void tune_int_close(TuneInt *r); /* NULL allowed */

SdPipeline *tune_int_pipe(TuneInt *r);
void tune_int_size(const TuneInt *r, int *width, int *height);
int64_t tune_int_run_id(const TuneInt *r);

/* Replace the run's pairs: N pairs of image files (W[i] preferred to L[i] under PROMPT[i]),
 * encoded here (VAE encoder's mean × scaling_factor, not cached in the store), the prompts
 * encoded. The step's permutation starts again. */
int tune_int_set_pairs(TuneInt *r, size_t n, char *const *w, char *const *l,
                       char *const *prompt, Err *err);
/* Optimizer step S (1-based) on the current pairs; its metrics written (metrics.jsonl and
 * the store's split "train"). */
int tune_int_step(TuneInt *r, int s, TuneStepMetrics *m, Err *err);
/* Write checkpoint folder NAME (checkpoint-S or final) of step S. */
int tune_int_save(TuneInt *r, const char *name, int s, Err *err);

#endif
