/* genrun — the generation run behind `easel generate` and the `generate` job kind: a work
 * list of (prompt, seed) items, its K-th of N shard, one image per item written as
 * {out}/{prompt_id}/{seed}.png, the original's metadata CSV beside them, rows in the store's
 * images table with the generation settings, and a CSV of the items that failed.
 *
 * DESIGN
 *   - The image itself comes from a GenImageFn (the text-to-image pipeline in the command and
 *     the job; anything that fills RGB pixels in tests), so this module owns only what is
 *     around it: order, sharding, resume, files, rows, failures, progress, cancel.
 *   - Shard K of N (1-based) is the items whose index in the full list is K-1 modulo N: the N
 *     shards are disjoint and together the full list, whatever N is, so N processes writing
 *     into one folder produce exactly the full set.
 *   - Resumable: an item whose PNG is already there and decodes at the expected size is kept
 *     (not generated again); one that does not decode is generated again. PNGs are written
 *     atomically, so a stopped run never leaves half a file.
 *   - The metadata CSV ("metadata.csv", or "metadata-K-of-N.csv" for a shard, so shards never
 *     write one file) lists every item of this run that has its image, with `path` relative
 *     to the folder, in the single-GPU layout
 *     prompt_id,seed,path,prompt,width,height,num_inference_steps,guidance_scale
 *     plus gpu_id when the caller gives one. `easel import generated` reads it. It is
 *     rewritten atomically after every image, so it is right after a stop at any point.
 *   - A failing item (the generator's error) is logged, written to "failed.csv" (or
 *     "failed-K-of-N.csv": prompt_id,seed,prompt,error) and skipped; the run goes on. A
 *     cancel (Progress.cancelled, seen between items and inside the generator's steps) stops
 *     with ERR_CANCELLED, keeping every finished image, its row and the CSV.
 *   - Workers (several GPUs): the items are pulled one at a time from one shared queue by W
 *     worker threads (GenRunOpts.n_workers), each with its own image source, opened and closed
 *     on its own thread (GenRunOpts.open: a device's backend and pipeline belong to the thread
 *     that opened them). The queue is dynamic, so a slow or failing device never holds the
 *     others back. The calling thread coordinates: it alone writes the store rows, the CSVs
 *     and the progress (images, the images in flight counting by their steps, so a rate and
 *     ETA come out aggregated across the workers) and logs; so Progress.progress and .log are
 *     called on the calling thread only, while .cancelled is also called from the workers
 *     (it must be a thread-safe read: a job's flag, a signal flag) so that a cancel reaches
 *     every worker within one step.
 *   - An image depends only on the item and the settings, never on the worker that made it:
 *     the generator draws everything from (prompt, seed, settings).
 *   - A worker whose source fails to open, or whose generator returns ERR_GPU (its device
 *     failed: a sticky CUDA error, a lost GPU), stops (logged when there are several); the
 *     item it held goes back to the queue for the others (an item that two workers died on
 *     is recorded as failed instead, so one poisonous item cannot take every device down).
 *     When every worker has stopped with items left, the run fails with the first worker's
 *     error (as it is when none could start); nothing hangs; the images made are kept and
 *     the next run resumes.
 *   - The metadata CSV gets the multi-GPU layout's gpu_id column when the workers are given
 *     device labels (worker_ids) or the run one (gpu_id): the label of the worker that made
 *     each image; a kept image keeps the gpu_id the folder's CSV already gave it.
 */
#ifndef EASEL_GENRUN_H
#define EASEL_GENRUN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "progress.h"

struct Store;

typedef struct GenItem {
    const char *prompt_id;  /* the prompt's ext_id: a folder name ([A-Za-z0-9_.-], not . or ..) */
    const char *prompt;     /* its text */
    uint64_t seed;
} GenItem;

/* Make the image of IT at W x H: *rgb (W*H*3 bytes, malloc'd, the caller frees). STEPS
 * reports per step (unit "steps") and is how a cancel reaches inside the image
 * (ERR_CANCELLED). ERR_GPU: this worker's device failed (see Workers above). Any other error
 * fails this item only. Called on a worker thread. */
typedef int (*GenImageFn)(void *user, const GenItem *it, const Progress *steps, uint8_t **rgb,
                          int w, int h, Err *err);

/* Open worker WORKER's (0 .. n_workers-1) image source on the worker's own thread: 0 with
 * *gen_user set (what its GenImageFn calls get), or an error (the worker stops, logged).
 * LOG's log hook takes lines for the run's log (a device note). CLOSE (may be NULL) gets
 * that *gen_user back, on the same thread, when the worker ends. */
typedef int (*GenOpenFn)(void *user, int worker, const Progress *log, void **gen_user,
                         Err *err);
typedef void (*GenCloseFn)(void *user, int worker, void *gen_user);

typedef struct GenRunOpts {
    const char *out_dir;     /* created if missing */
    const GenItem *items;    /* the full work list, in order */
    size_t n_items;
    int shard_k, shard_n;    /* 1..N of N; 0, 0 = everything */
    int width, height;       /* every image's size */
    int steps;               /* for the CSV and the settings */
    double guidance;
    const char *gpu_id;      /* NULL: the single-GPU layout; else this value in a gpu_id column */
    const char *settings;    /* JSON object of the generation settings (the images' generator
                              * column); NULL: none */
    struct Store *store;     /* NULL: no rows (a shard on a machine without the store) */
    int64_t job_id;          /* the job running this (0 = none): each image's row is recorded
                              * as the job's (store_job_image_note: the Jobs screen's preview) */
    int confine;             /* qa15: a job's run (another user's worker may run it): an image
                              * path that leads out of out_dir (a symlink) fails, unread */
    GenImageFn gen;
    void *gen_user;
    /* Per image (unit "images", done counting kept ones) and, through the generator, per
     * step ("steps"); cancel; log lines (kept, corrupt, failed). */
    const Progress *progress;
    /* ---- workers (several devices) ---- */
    int n_workers;           /* threads pulling items; 0 or 1: one */
    GenOpenFn open;          /* NULL: every worker calls gen with gen_user (then gen must be
                              * safe to call from several threads at once) */
    GenCloseFn close;
    void *open_user;
    const char *const *worker_ids; /* n_workers labels ("0", "1": the GPU indexes), written
                              * as each image's gpu_id; NULL: gpu_id as above */
} GenRunOpts;

typedef struct GenRunReport {
    size_t total;      /* items in this shard */
    size_t generated;  /* written by this run */
    size_t kept;       /* already there and decoding */
    size_t redone;     /* there but not decoding: generated again (counted in generated) */
    size_t failed;     /* skipped with an error (failed.csv) */
    size_t rows_added; /* store rows added (images newly in the store) */
    int workers;       /* workers started */
    int workers_lost;  /* of those, the ones that failed to open or whose device failed */
    char *metadata;    /* the metadata CSV's path (malloc'd; gen_run_report_deinit) */
    char *failures;    /* the failures CSV's path when any failed, else NULL */
} GenRunReport;

/* Run OPTS. Returns 0 when every item has its image or was recorded as failed (check
 * report->failed), ERR_CANCELLED, ERR_USAGE (a bad shard, prompt id or size), ERR_IO (the
 * folder or the CSV cannot be written), ERR_DB, or the first worker's error when every
 * worker stopped with items left. REPORT is filled in every case. */
int gen_run(const GenRunOpts *opts, GenRunReport *report, Err *err);
void gen_run_report_deinit(GenRunReport *r); /* NULL allowed */

/* Parse "K/N" (1 <= K <= N <= 100000). Returns 0 or ERR_USAGE naming the value. */
int gen_parse_shard(const char *s, int *k, int *n, Err *err);

/* Whether S is a prompt id usable as a folder name (see GenItem). */
int gen_prompt_id_ok(const char *s);

#endif
