/* jobform — the new-job form generated from a job kind's parameter schema: the view-model
 * the TUI's Jobs screen draws and edits (pure C, no ncurses, tested directly).
 *
 * Fields are the kind's parameters in schema order, then the job options: priority, "after"
 * (dependencies, "3,4") and, for a kind that can hold GPUs, "gpus" (as `jobs add --gpus`:
 * empty = what the kind asks for, "all", or a count). Every field holds text; choice and bool fields cycle
 * through their values; submitting parses the text against the schema exactly as
 * `easel jobs add` does (job_params_parse: types, required parameters, the kind's validate)
 * and adds the job to the store.
 *
 * Ownership: a JobForm owns its field texts; the kind is borrowed (static). Not thread-safe:
 * one form belongs to the UI thread.
 */
#ifndef EASEL_JOBFORM_H
#define EASEL_JOBFORM_H

#include <stdint.h>

#include "err.h"
#include "jobkind.h"
#include "store.h"

typedef enum JobFormFieldKind {
    JOBFORM_PARAM,      /* a parameter of the kind (spec set) */
    JOBFORM_PRIORITY,   /* integer, default 0 */
    JOBFORM_AFTER,      /* job ids separated by commas, default empty */
    JOBFORM_GPUS,       /* GPUs to hold: "" (the kind's), "all" or 0..1024; GPU kinds only */
} JobFormFieldKind;

typedef struct JobFormField {
    JobFormFieldKind kind;
    const JobParamSpec *spec;  /* JOBFORM_PARAM only; borrowed */
    char *text;                /* current value as typed */
} JobFormField;

typedef struct JobForm {
    const JobKind *kind;
    JobFormField *fields;
    int n_fields;
    int cur;                   /* selected field */
} JobForm;

/* A form with every field at its default ("" for required ones). Free with jobform_free. */
JobForm *jobform_new(const JobKind *k);
void jobform_free(JobForm *f); /* NULL allowed */

/* Label of field I: the parameter name, "priority", "after" or "gpus". Static/borrowed. */
const char *jobform_label(const JobForm *f, int i);
/* One-line help of field I (type, default, help). Written into BUF. */
const char *jobform_hint(const JobForm *f, int i, char *buf, int size);

/* Replace field I's text (copied). */
void jobform_set(JobForm *f, int i, const char *text);

/* Choice and bool fields: step to the next (DIR > 0) or previous value. Returns 1 if the
 * field cycles, 0 if it is free text (edit it with jobform_set). */
int jobform_cycle(JobForm *f, int i, int dir);

/* Move the selection by DELTA, clamped. */
void jobform_move(JobForm *f, int delta);

/* Validate and add the job. On success *id is the new job's id. On error nothing is added,
 * err names the field, and f->cur moves to that field when it can be told. */
int jobform_submit(JobForm *f, Store *st, int64_t *id, Err *err);

#endif
