/* import_int — private to src/import*.c: how the importers are built.
 *
 * Every importer (import_csv.c: prompts, ratings, generation metadata; import_pairs.c;
 * import_images.c) runs in two phases:
 *   1. plan: parse the whole input into plan rows, checking every field and everything that
 *      can be checked against the store by reading it (prompts exist, no in-file
 *      contradictions). Each problem is recorded with FILE:LINE (import_problem); nothing is
 *      written.
 *      Image files are checked here too (import_check_images: read ahead on several threads,
 *      then import_check_image each): on disk (unless allow_missing) and decodable; their
 *      sha256 and size are kept for the apply phase.
 *   2. apply: if there were no problems, import_begin (BEGIN IMMEDIATE), write the plan row by
 *      row, record any conflict a write reveals, and import_finish: COMMIT only if none did,
 *      else ROLLBACK. A write that fails for any other reason (disk full, I/O error, busy)
 *      stops the apply phase at once (import_write_failed sets `aborted`; every apply loop
 *      checks import_stopped): after SQLITE_FULL or SQLITE_IOERR SQLite may already have
 *      rolled the transaction back, and one more statement would run in autocommit.
 * So an error at any point leaves the store untouched, and the write lock is held only for
 * the apply phase. A second import of the same file finds every row already there.
 * Progress (and so cancel) is reported in both phases: checking is the first half of the
 * total, writing the second.
 */
#ifndef EASEL_IMPORT_INT_H
#define EASEL_IMPORT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "import.h"
#include "store_catalog.h"

#define MISSING_LISTED 3 /* images not on disk named one by one; the rest are counted */

/* A string → int64 map (open addressing); owns its keys. Zero-initialise, import_map_free. */
typedef struct ImportMap {
    char **key;
    int64_t *val;
    size_t cap;            /* power of two */
    size_t n;
} ImportMap;

/* The slot of K (NULL if absent and !CREATE; a new slot holds 0). */
int64_t *import_map_slot(ImportMap *m, const char *k, int create);
void import_map_free(ImportMap *m);

/* WORK(ARG) on as many threads as there are CPUs, at most 8 and at most N (N items to share
 * out), this thread one of them; returns when all are done (the image checks' pools: the
 * importer's prefetch, tune_pairs_file's; dedup16). */
void import_run_pool(void *(*work)(void *), void *arg, size_t n);

/* The folder of PATH (malloc'd): "." for a bare name, "/" for a file at the root. */
char *import_dir_of(const char *path);

/* One import in progress. */
typedef struct ImportCtx {
    Store *st;
    const char *file;      /* as the user gave it: the prefix of every message */
    char *dir;             /* folder relative paths resolve against first */
    char *source;          /* "import:NAME" for ratings */
    const ImportOptions *opts;
    ImportReport *rep;
    StoreAspect *aspects;  /* position order */
    size_t n_aspects;
    ImportMap images;      /* stored path → image id, filled while applying */
    ImportMap prompts;     /* ext_id → store id (0 = not in the store) */
    ImportMap checked;     /* stored path → index + 1 into chk (import_check_image) */
    struct ImportChecked *chk;
    size_t n_chk;
    size_t n_more_errors;
    size_t n_more_warnings;
    size_t n_reused;       /* new paths whose bytes the store had under another path */
    char *reused_example;  /* the first of them, "PATH = STORED" */
    size_t n_twins;        /* new images with the bytes of an image of another prompt */
    char *twin_example;
    ImportMap new_prompts; /* ratings: prompt ext_id not in the store → index + 1 into new_ext */
    char **new_ext;        /* created with empty text when applying
                            * (import_prompts_create_planned) */
    int64_t *new_id;       /* their store ids, once created */
    size_t n_new;
    int aborted;           /* a write failed beyond a conflict: stop, roll back, report */
    Err fatal;             /* that failure */
} ImportCtx;

/* ---- problems and warnings: "FILE:LINE: message" (LINE 0: "FILE: message") */
void import_problem(ImportCtx *c, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void import_warn(ImportCtx *c, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A problem carrying a lower layer's message, prefixed by WHAT (may be NULL). */
void import_problem_err(ImportCtx *c, long line, const char *what, const Err *e);
int import_has_problems(const ImportCtx *c);
/* Set err from the first problem (with the total count) and return CODE. */
int import_fail(ImportCtx *c, int code, Err *err);

/* ---- fields */
int import_is_blank(const char *s);                 /* only spaces and tabs */
int import_parse_num(const char *s, double *out);   /* decimal, whole field; 0 or -1 */
/* Whole number: 0; -1 if S is not one; -2 if it is one that does not fit in int64. */
int import_parse_int(const char *s, int64_t *out);
int import_is_file(const char *p);                  /* a regular file is there */
int import_is_dir(const char *p);

/* ---- images */
typedef struct ImportImg {
    char *stored;          /* store_path_to_stored form */
    char *open;            /* a path that opens from the cwd */
    int exists;            /* something is there (import_check_image: a regular image file) */
    char sha256[65];       /* filled by import_check_image; "" = not known */
    int width, height;     /* decoded size (import_check_image); 0 = not known */
    char *denied;          /* ImportOptions.job_paths refused it: why (exists is then 0) */
} ImportImg;

/* What import_check_image found about one stored path (so each file is read once). */
typedef struct ImportChecked {
    int ok;
    char sha256[65];
    int width, height;
    char *msg;             /* why not ok, until import_check_image records it as a problem */
} ImportChecked;

/* Resolve RAW (from the file) against the file's folder, then the cwd. A file on disk wins;
 * otherwise a path the store already knows; otherwise the file's folder. */
void import_resolve_image(ImportCtx *c, const char *raw, ImportImg *out);
void import_img_deinit(ImportImg *r);

/* Plan phase: REF must be a regular file that decodes as an image, or (allow_missing) not
 * be on disk at all. WHAT names the field in the message ("image_path"). A path the store
 * already knows with a hash is trusted (not read again). Fills REF's sha256 and size.
 * Returns 0, or -1 after recording a problem at LINE. */
int import_check_image(ImportCtx *c, long line, const char *what, ImportImg *ref);

/* Read and decode the new image files among REFS[0..N) on several threads (the slow part
 * of an import of many images), so that import_check_image then finds them checked. Only
 * files that import_check_image would read are read; call it for each ref afterwards. */
void import_check_images_prefetch(ImportCtx *c, ImportImg *const *refs, size_t n);

/* import_check_image for N images (REFS[i] from line LINES[i], field WHAT), reading ahead
 * a batch at a time on several threads, with check progress (and so cancel) per image.
 * Returns 0 (problems recorded as usual), or ERR_CANCELLED with err set. */
int import_check_images(ImportCtx *c, ImportImg *const *refs, const long *lines,
                        const char *what, size_t n, Err *err);

/* Read and decode the image at PATH (infile rules: a regular file of bounded size): 0 with
 * SHA and size, or an error naming the file and the reason. */
int import_decode_image(const char *path, char sha[65], int *w, int *h, Err *err);

/* Scan the N bytes at BUF for a NUL byte: 0, or -1 after a problem naming its line. */
int import_check_nul(ImportCtx *c, const unsigned char *buf, size_t n);

/* Apply phase: find or add image REF under PROMPT_ID (0 = none), completing a known image
 * with META's seed/generator/size (META may be NULL), hashing a file the store has no hash
 * of. Returns 0 and *id, or -1 after recording a problem at LINE. */
int import_ensure_image(ImportCtx *c, long line, const ImportImg *ref, int64_t prompt_id,
                        const StoreImage *meta, int64_t *id);

/* Store id of prompt EXT (cached), 0 if it is not in the store. */
int64_t import_prompt_lookup(ImportCtx *c, const char *ext);

/* Plan phase: remember EXT (not in the store) as a prompt to create with empty text; returns
 * its placeholder id (< 0) for plan rows. */
int64_t import_prompt_plan_new(ImportCtx *c, const char *ext);
/* Apply phase: create the planned prompts (0, or -1 after a problem), and turn a placeholder
 * id into the store id (other ids are returned as they are). */
int import_prompts_create_planned(ImportCtx *c);
int64_t import_prompt_real(const ImportCtx *c, int64_t id);

/* The import was cancelled before anything was written: ERR_CANCELLED. */
int import_cancelled(ImportCtx *c, Err *err);

/* ---- the apply phase */
int import_begin(ImportCtx *c, Err *err);
/* Report progress DONE/TOTAL every few rows; nonzero = the caller wants to cancel. The
 * check phase reports through import_check_progress (the first half of the bar), the apply
 * phase through import_progress (the second half). */
int import_progress(ImportCtx *c, size_t done, size_t total);
int import_check_progress(ImportCtx *c, size_t done, size_t total);
/* A write of the apply phase failed with E: a conflict (ERR_CONFLICT, ERR_FORMAT,
 * ERR_NOTFOUND) is recorded as a problem at LINE, prefixed by WHAT (may be NULL); anything
 * else (disk full, I/O, busy, database error) aborts the apply phase. */
void import_write_failed(ImportCtx *c, long line, const char *what, const Err *e);
/* True once the apply phase must stop (a write failed beyond a conflict). */
int import_stopped(const ImportCtx *c);
/* COMMIT if no problem was recorded while applying, else ROLLBACK (and ERR_CONFLICT, or
 * ERR_CANCELLED if CANCELLED, or the failed write's code and message if aborted). */
int import_finish(ImportCtx *c, int cancelled, Err *err);

/* ---- the importers */
struct CsvTable;
int import_csv_prompts(ImportCtx *c, const struct CsvTable *t, Err *err);    /* import_csv.c */
int import_csv_ratings(ImportCtx *c, const struct CsvTable *t, Err *err);
int import_csv_generated(ImportCtx *c, const struct CsvTable *t, Err *err);
int import_pairs_jsonl(ImportCtx *c, const char *path, Err *err);            /* import_pairs.c */
int import_images_folder(ImportCtx *c, const char *root, Err *err);          /* import_images.c */

#endif
