/* jobkind — the ONE registry of job kinds, and what a running job sees (JobCtx).
 *
 * A job kind is a const JobKind: its name, a one-line summary, a longer help text with an
 * example, a parameter schema (JobParamSpec: name, type, default, help), how many GPUs it
 * wants, whether it checkpoints, and its run function. The CLI (`easel jobs add KIND
 * --param value`) and the TUI's new-job form are both generated from the schema; the worker
 * pool (jobs.h) calls run() on a worker thread.
 *
 * Adding a kind (H6, H7, ...): write `const JobKind jobkind_embed = {...}` in your own file
 * (src/<area>.c), then add ONE line `X(jobkind_embed) \` to JOBKIND_LIST in src/app/jobkind.c.
 * That line both declares the object and puts it in the table; there are no constructor
 * attributes. Tests add test-only kinds at run time with jobkind_register() so they never
 * ship in the binary.
 *
 * Writing run():
 *   - Read parameters with job_param_str/int/float/bool (defaults already applied, types
 *     already checked when the job was added).
 *   - Report progress with job_progress(ctx, done, total, "images"); the store keeps done,
 *     total, unit and a rate, from which every easel process shows an ETA.
 *   - Check job_cancelled(ctx) at least once per second of work; when it returns 1, save a
 *     checkpoint if you have one, undo or never commit half-written output, and return
 *     err_set(err, ERR_CANCELLED, ...). The pool turns that into "cancelled", or into
 *     "interrupted" (resumable) when the worker process itself is stopping.
 *   - A kind with .checkpoints = 1 calls job_checkpoint_save(ctx, json) at safe points and,
 *     on start, job_checkpoint(ctx) returns the last saved JSON (NULL on a fresh start).
 *   - Use job_store(ctx) for the store: it is this job's own connection, on this thread.
 *   - Return 0 (succeeded) or a negative ERR_* with err set (failed; err->msg is shown to
 *     the user as the job's message, so say what is wrong and what to do).
 *
 * Thread safety: the registry is read-only after start-up (jobkind_register only before any
 * pool or CLI lookup runs). A JobCtx belongs to the one worker thread running the job;
 * job_cancelled may be read from that thread while the pool sets the flag from another.
 */
#ifndef EASEL_JOBKIND_H
#define EASEL_JOBKIND_H

#include <stdatomic.h>
#include <stdint.h>

#include "err.h"
#include "progress.h"
#include "store.h"

/* ---- parameter schema ----------------------------------------------------------------- */

typedef enum JobParamType {
    JOB_PARAM_STRING, /* any text */
    JOB_PARAM_PATH,   /* a file or folder path (the TUI offers path completion) */
    JOB_PARAM_INT,    /* 64-bit integer */
    JOB_PARAM_FLOAT,  /* double */
    JOB_PARAM_BOOL,   /* true/false, 1/0, yes/no; a bare CLI flag means true */
    JOB_PARAM_CHOICE, /* one of .choices */
} JobParamType;

/* What a parameter's value names besides itself, for the trust rules (src/data/trust.h): every
 * JOB_PARAM_PATH is checked, and these name paths indirectly. A kind declares each one, so
 * that the queue and the worker check every path any kind reads or writes. */
typedef enum JobParamRef {
    JOB_REF_NONE = 0,
    JOB_REF_ENCODER,     /* "classic" or "clip:NAME": NAME's registered model folder */
    JOB_REF_RUN_NAME,    /* a run name: the folder runs/NAME of the workspace */
    JOB_REF_CHECKPOINT,  /* a checkpoint folder (a PATH parameter): also the model folder of
                          * the clip:NAME encoder its config.json names */
    /* issue 15 (generate) */
    JOB_REF_DIFFUSION_MODEL, /* a registered diffusion model's name (its folder) or a folder */
    JOB_REF_PATH_LIST,   /* files joined by ',', each with an optional ":SCALE" (--lora) */
} JobParamRef;

typedef struct JobParamSpec {
    const char *name;    /* "ratings": the CLI flag is --ratings; [a-z0-9-] only; not one
                          * of the job options: priority, after, gpus, wait, help */
    JobParamType type;
    const char *def;     /* default as text; NULL = required */
    const char *help;    /* one line for --help and the form */
    const char *choices; /* JOB_PARAM_CHOICE only: "pairs|multihead" */
} JobParamSpec;

/* One parameter that names a path indirectly (JobKind.refs). */
typedef struct JobParamRefSpec {
    const char *param;   /* a parameter of the kind's schema; NULL ends the list */
    JobParamRef ref;
} JobParamRefSpec;

/* Parsed, typed, defaulted parameters of one job. Opaque; read with job_param_*(). */
typedef struct JobParams JobParams;

/* ---- the context a running job sees --------------------------------------------------- */

typedef struct JobCtx JobCtx;

typedef struct JobKind {
    const char *name;              /* "import-ratings": [a-z0-9-] */
    const char *summary;           /* one line for lists */
    const char *help;              /* paragraph(s) + "example:" line(s) for --help */
    const JobParamSpec *params;    /* array ended by an entry with name == NULL */
    int gpus;                      /* GPUs wanted: 0 = CPU only; N; JOBKIND_GPUS_ALL */
    int gpu_required;              /* 1: never runs without its GPUs; 0: runs on CPU if
                                    * the machine has none */
    int checkpoints;               /* 1: run() saves checkpoints and resumes from them */
    const JobParamRefSpec *refs;   /* parameters naming paths indirectly (trust rules), ended
                                    * by {NULL}; NULL = none. PATH parameters need none. */
    /* Check parameters beyond their types (files exist, ranges) when the job is added, so
     * a bad job is refused up front. Optional (NULL). */
    int (*validate)(const JobParams *p, Err *err);
    /* Do the work. See "Writing run()" above. */
    int (*run)(JobCtx *ctx, const JobParams *p, Err *err);
    /* The GPUs a job wants given its parameters (a --device cuda job: 1), for jobs added
     * with JOB_GPUS_OF_KIND (no --gpus); NULL = .gpus. */
    int (*gpus_for)(const JobParams *p);
} JobKind;

#define JOBKIND_GPUS_ALL (-1) /* every free GPU on the host (one worker per GPU) */
#define JOB_GPUS_OF_KIND (-2) /* JobNew.gpus_wanted: as the kind says (gpus_for, or .gpus) */

/* ---- registry ------------------------------------------------------------------------- */

/* The kind named NAME, or NULL. Borrowed, static. */
const JobKind *jobkind_find(const char *name);

/* Number of kinds and the i-th in table order (built-ins first, then registered ones). */
int jobkind_count(void);
const JobKind *jobkind_at(int i);

/* Add a kind at run time (tests only: test-only kinds must not ship in the binary). Call
 * before any pool starts. K is borrowed for the life of the process. Returns 0, or
 * ERR_CONFLICT if the name is taken. */
int jobkind_register(const JobKind *k, Err *err);

/* ---- parameters ----------------------------------------------------------------------- */

/* Parse NAME=VALUE pairs (names without "--") against K's schema: unknown names, bad
 * values and missing required parameters are ERR_USAGE naming the parameter and what is
 * accepted. Defaults are applied. Then runs K->validate. Returns 0 with *out a new JobParams
 * the caller frees with job_params_free, or ERR_* (*out NULL) with err set. */
int job_params_parse(const JobKind *k, int n, const char *const *names,
                     const char *const *values, JobParams **out, Err *err);

/* The same from the JSON object stored in jobs.params (keys = names, values = JSON
 * strings/numbers/booleans). validate is NOT run (files may be gone; run() reports that).
 * Returns 0 with *out a new JobParams (job_params_free), or ERR_* with *out NULL. */
int job_params_from_json(const JobKind *k, const char *json, JobParams **out, Err *err);

/* Canonical JSON object of all parameters (defaults included), new string, caller frees. */
char *job_params_to_json(const JobParams *p);

void job_params_free(JobParams *p); /* NULL allowed */

/* The kind P was parsed for. */
const JobKind *job_params_kind(const JobParams *p);

/* The trust rules for one job (src/data/trust.h): every PATH parameter, every JOB_REF_* the kind
 * declares, and the "output" folder of CHECKPOINT (a resumed job's JSON; NULL = none) must
 * resolve inside the workspace of ST or under an output root. 0, or ERR_DENIED naming the
 * parameter and what to do. Called when a job is queued (jobs_add) and again before it
 * runs, because the store may have been edited meanwhile. */
int job_params_check_trust(Store *st, const JobParams *p, const char *checkpoint, Err *err);

/* Typed reads. NAME must be in the kind's schema with that type (ASSERT: a typo is a bug).
 * Optional text parameters have def "" and read as "" when not given. */
const char *job_param_str(const JobParams *p, const char *name); /* borrowed, until free */
int64_t job_param_int(const JobParams *p, const char *name);
double job_param_float(const JobParams *p, const char *name);
int job_param_bool(const JobParams *p, const char *name);

/* ---- inside run(): the job context ---------------------------------------------------- */

/* This job's id in the store. */
int64_t job_id(const JobCtx *ctx);

/* The job's own store connection (this worker thread's). Borrowed for the run. */
Store *job_store(JobCtx *ctx);

/* Progress: DONE of TOTAL units (TOTAL 0 = unknown). UNIT is a short noun ("rows",
 * "images", "steps"); NULL keeps the previous. Cheap to call often: the store is written
 * at most 4 times a second (and always when done == total or the unit changes). The store
 * derives the rate from the work done since this run started (store_job_progress). */
void job_progress(JobCtx *ctx, double done, double total, const char *unit);

/* Append one line to the job's log in the store (all lines are kept; the UI shows the
 * tail). Also goes to the process log at info level. */
void job_log(JobCtx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 once a cancel was requested (by a user, or because this process is stopping), else 0.
 * An atomic read; call it at least once per second of work. */
int job_cancelled(const JobCtx *ctx);

/* The job as a Progress (progress.h): job_progress, job_cancelled and job_log on CTX. */
Progress job_progress_hooks(JobCtx *ctx);

/* Save JSON (any value the kind understands) as the job's checkpoint, atomically: the
 * previous checkpoint stays until this one is committed. */
int job_checkpoint_save(JobCtx *ctx, const char *json, Err *err);

/* The checkpoint to resume from: what was saved before this run started, or by this run
 * since (NULL = fresh start). Borrowed until the next save or the end of run(). */
const char *job_checkpoint(const JobCtx *ctx);

/* The GPUs this job was given (indexes as `easel gpus` prints them); *n = 0 means CPU.
 * Borrowed for the run. */
const int *job_gpus(const JobCtx *ctx, int *n);

/* ---- for the pool (jobs.c) and tests: making a context ---------------------------------- */

/* A context for running job ID on ST (borrowed, must outlive the context). CHECKPOINT (may
 * be NULL) and GPUS ("0,1", NULL or "" = CPU) are copied. CANCEL is the flag job_cancelled
 * reads, owned by the caller and set from any thread. Free with job_ctx_free. */
JobCtx *job_ctx_new(Store *st, int64_t id, const char *checkpoint, const char *gpus,
                    const atomic_int *cancel);

/* Write the last progress if a throttled update is pending, then free. NULL allowed. */
void job_ctx_free(JobCtx *ctx);

#endif
