/* store_run_images — the sample images a generator tuning run (issue 16) renders every
 * --save-every steps at fixed seeds, which the Monitor shows beside the run's curves.
 *
 * One row per (run, step, seed, label): the step (optimizer steps when rendered), the seed,
 * a label (e.g. the prompt, or "base" / "adapter"), the PNG's path and when it was recorded.
 * The path is kept as the images table keeps its paths (relative to the store's folder when
 * the file lies inside it, so a workspace moves whole: store_path_to_stored) and read back as
 * one that opens from the current directory (store_path_resolve). Writing the same (run,
 * step, seed, label) again replaces the row (a resumed run that renders the step again). The file itself is the writer's: the store keeps
 * its path only, and a reader that finds it gone shows that.
 *
 * Thread safety: as store.h. Ownership: lists filled here own their strings; release with
 * store_run_images_free. Every input string is copied.
 */
#ifndef EASEL_STORE_RUN_IMAGES_H
#define EASEL_STORE_RUN_IMAGES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

typedef struct StoreRunImage {
    int64_t id;
    int64_t run_id;
    int64_t step;
    int64_t seed;
    char *label;           /* "" when none */
    char *path;            /* opens from the current directory */
    double created;        /* Unix seconds */
} StoreRunImage;

/* Record sample image PATH of RUN_ID at STEP for SEED (LABEL NULL = ""). 0; ERR_USAGE for
 * an empty path or a negative step; ERR_CONFLICT when RUN_ID is no run; ERR_DB. */
int store_run_image_add(Store *st, int64_t run_id, int64_t step, int64_t seed, const char *label,
                        const char *path, Err *err);

/* The sample images of RUN_ID, latest first: highest step first, then by label and seed (so
 * the images of one step are together, in a stable order). Caller: store_run_images_free. */
int store_run_images_list(Store *st, int64_t run_id, StoreRunImage **out, size_t *n, Err *err);

/* Forget the sample images of RUN_ID with step > STEP (a resumed run drops what it redoes;
 * the files are left alone). */
int store_run_images_truncate(Store *st, int64_t run_id, int64_t step, Err *err);

void store_run_images_free(StoreRunImage *v, size_t n); /* NULL allowed */

#endif
