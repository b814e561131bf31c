/* export — write a store's contents in the original system's formats:
 *   ratings    multihead_ratings.csv: prompt_id,image_path,<aspect>_rating... — the mean over
 *              annotators of each aspect, or one row per (image, annotator) with an extra
 *              `annotator` column (per_annotator); only images with a rating
 *   template   the same columns for EVERY image, ratings blank: a sheet to fill in
 *   prompts    prompts.csv: prompt_id,prompt
 *   pairs      pairs.jsonl derived from the ratings (pairs.h): per aspect and combined,
 *              img_pos always the preferred image, label 1.0
 * doc/formats.md describes each format.
 *
 * Output is deterministic: rows sorted by prompt_id, then image path (digit runs compared as
 * numbers, so prompt_2 < prompt_10), then annotator; numbers in the shortest form that reads
 * back to the same double. So ratings import → export → import → export is byte-identical.
 * Image paths are written relative to opts->relative_to (the output file's folder, where the
 * importer looks first) when the image lies inside it, or when both lie inside the workspace
 * (the store's folder) — then with "../" steps; else absolute.
 *
 * Blind rating (`easel config blind on`, src/data/trust.h): an export of ratings or pairs for a
 * login that may not review (store_actor: this process's user, or the queuer of the job)
 * holds only that login's own ratings, and a per-annotator one is refused (ERR_DENIED).
 *
 * Thread safety: one Store per thread, as store.h. Reads happen in one snapshot per table.
 */
#ifndef EASEL_EXPORT_H
#define EASEL_EXPORT_H

#include <stddef.h>
#include <stdio.h>

#include "err.h"
#include "store.h"

typedef enum ExportKind {
    EXPORT_RATINGS,
    EXPORT_PAIRS,
    EXPORT_PROMPTS,
    EXPORT_TEMPLATE,
} ExportKind;

typedef struct ExportOptions {
    int per_annotator;        /* ratings, pairs: one row / pair set per annotator */
    double min_rating_diff;   /* pairs: smallest difference that makes a pair (>= 0) */
    const char *relative_to;  /* folder image paths are written relative to (when inside
                               * it; relative to the cwd or absolute); NULL: absolute paths */
} ExportOptions;

/* Defaults: mean over annotators, min_rating_diff 0.5, absolute paths. */
void export_options_init(ExportOptions *o);

/* Parse "ratings", "pairs", "prompts", "template". Returns 0 or ERR_USAGE. */
int export_kind_parse(const char *name, ExportKind *kind, Err *err);

/* Write KIND to OUT. *n_rows (may be NULL) gets the number of data rows / JSON lines.
 * Returns 0, ERR_IO (write failed), ERR_DB. */
int export_write(Store *st, ExportKind kind, FILE *out, const ExportOptions *opts,
                 size_t *n_rows, Err *err);

/* Write KIND to the file PATH atomically (PATH.tmp, fsync, rename): a crash or an error
 * leaves either the old file or the complete new one. Returns as export_write. */
int export_to_file(Store *st, ExportKind kind, const char *path, const ExportOptions *opts,
                   size_t *n_rows, Err *err);

/* Shortest decimal text of V that reads back (strtod) as exactly V, e.g. "7.5", "8",
 * "0.1". BUF holds at least 32 bytes. Returns BUF. */
char *export_format_number(double v, char buf[32]);

#endif
