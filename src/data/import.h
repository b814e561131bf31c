/* import — bring the original system's files into a store:
 *   prompts    prompts.csv                     prompt_id,prompt
 *   ratings    multihead_ratings.csv           prompt_id,image_path,<aspect>_rating...[,annotator]
 *   pairs      pairs.jsonl                     {"prompt","img_pos","img_neg","label",...}
 *   generated  generation metadata CSV         prompt_id,seed,path,prompt,(gpu_id | width,...)
 *   images     a folder laid out {prompt_id}/{seed}.png
 * doc/formats.md is the full description of each format.
 *
 * Contract (every kind):
 *   - Validate everything first: every problem found is listed in ImportReport.errors as
 *     "FILE:LINE: column "value" is wrong; what to do", the first one also in err. Then write
 *     everything in ONE transaction. Any error → the store is exactly as before, including
 *     a write that fails (disk full, I/O error): the import stops at once, rolls back and
 *     names the cause; it never goes on writing outside the transaction.
 *   - Inputs are opened with infile.h: regular files of bounded size (a FIFO or /dev/zero is
 *     refused, never waited on). A NUL byte in a text file and a whole number that does not
 *     fit its field are problems naming the line.
 *   - Idempotent: importing the same file again changes nothing (everything "unchanged").
 *   - Never destructive: an imported rating never replaces a different existing value of the
 *     same (image, annotator, aspect) — that is an error naming the line; a prompt's text and
 *     an image's prompt or seed are never changed either (a prompt's EMPTY text — one a ratings
 *     import created for an unknown prompt_id — is filled in by the first file that has it).
 *   - Relative image paths resolve against the imported file's folder first, then the current
 *     directory. An image must be a regular file that decodes; one not on disk is a problem
 *     unless opts->allow_missing (then it is imported with missing=1 and a warning). Paths
 *     are kept in store_path_to_stored() form; known images are matched by that form, and a
 *     new path whose bytes (sha256) the store has is that image (under the same prompt).
 *     `import images` refuses symlinks that lead outside the folder and the workspace.
 *   - Ratings of prompt ids the store does not know create those prompts with empty text
 *     (one warning with the count and the ids).
 *
 * Thread safety: one Store per thread, as store.h. The progress hook runs on the caller's
 * thread. Ownership: ImportReport owns its strings (import_report_deinit).
 */
#ifndef EASEL_IMPORT_H
#define EASEL_IMPORT_H

#include <stddef.h>

#include "err.h"
#include "progress.h"
#include "store.h"

typedef enum ImportKind {
    IMPORT_PROMPTS,
    IMPORT_RATINGS,
    IMPORT_PAIRS,
    IMPORT_GENERATED,
    IMPORT_IMAGES,
} ImportKind;

typedef struct ImportOptions {
    const char *annotator; /* ratings rows without an annotator column/cell; NULL: identity_annotator() */
    /* Progress now and then, DONE of TOTAL "rows": the first half while the rows (or image
     * files) are read and checked, the second while they are written. Cancel stops the
     * import (ERR_CANCELLED, nothing written), in either phase. */
    Progress progress;
    /* Image paths that are not on disk: 0 (default) refuses them, naming the file and line;
     * 1 imports them with missing=1 and a warning (`--allow-missing`). */
    int allow_missing;
    /* 1 (import jobs): every image path the file names must resolve inside the workspace or
     * under an output root (trust_check_path), like the job's own --path, because a worker
     * reads it for whoever queued the job; others are refused unread, even with
     * allow_missing. 0: the CLI, which reads as the user who runs it. */
    int job_paths;
} ImportOptions;

typedef struct ImportReport {
    size_t rows;              /* data rows, JSON lines or image files read */
    size_t prompts_added;
    size_t prompts_empty;     /* of those, created with empty text (ratings of unknown ids) */
    size_t prompts_filled;    /* prompts with empty text that got their text */
    size_t images_added;
    size_t images_updated;    /* known images completed (seed, size, hash) or re-found */
    size_t images_missing;    /* referenced images not on disk (stored with missing=1;
                               * only with allow_missing) */
    size_t annotators_added;
    size_t ratings_added;
    size_t ratings_unchanged; /* already in the store with the same value */
    size_t pairs_added;
    size_t pairs_unchanged;
    char **warnings;          /* (n_warnings) "FILE:LINE: ..." — imported anyway */
    size_t n_warnings;
    char **errors;            /* (n_errors) every problem found; non-empty iff it failed */
    size_t n_errors;
} ImportReport;

/* Parse "prompts", "ratings", ... Returns 0 or ERR_USAGE. */
int import_kind_parse(const char *name, ImportKind *kind, Err *err);
const char *import_kind_name(ImportKind kind);

/* Import the file (or folder, for IMPORT_IMAGES) at PATH. OPTS may be NULL. *report is
 * filled in any case (zeroed first; deinit it). Returns 0; ERR_FORMAT (bad content),
 * ERR_CONFLICT (would change what the store has), ERR_NOTFOUND/ERR_IO (cannot read PATH),
 * ERR_CANCELLED, ERR_BUSY/ERR_DB — in every error case nothing was written. */
int import_path(Store *st, ImportKind kind, const char *path, const ImportOptions *opts,
                ImportReport *report, Err *err);

void import_report_deinit(ImportReport *r);   /* NULL allowed */

#endif
