/* import_int — private to src/import*.c: how the importers are built.
 *
 * Every importer (import_csv.c: prompts, ratings, generation metadata; import_pairs.c;
 * import_images.c) runs in two phases:
 *   1. plan: parse the whole input into plan rows, checking every field and everything that
 *      can be checked against the store by reading it (prompts exist, no in-file
 *      contradictions). Each problem is recorded with FILE:LINE (import_problem); nothing is
 *      written.
 *   2. apply: if there were no problems, import_begin (BEGIN IMMEDIATE), write the plan row by
 *      row, record any conflict a write reveals, and import_finish: COMMIT only if none did,
 *      else ROLLBACK.
 * So an error at any point leaves the store untouched, and the write lock is held only for
 * the apply phase. A second import of the same file finds every row already there.
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
    size_t n_more_errors;
    size_t n_more_warnings;
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
int import_parse_int(const char *s, int64_t *out);  /* whole number; 0 or -1 */
int import_is_file(const char *p);                  /* a regular file is there */
int import_is_dir(const char *p);

/* ---- images */
typedef struct ImportImg {
    char *stored;          /* store_path_to_stored form */
    char *open;            /* a path that opens from the cwd */
    int exists;            /* a regular file is there */
} ImportImg;

/* Resolve RAW (from the file) against the file's folder, then the cwd. A file on disk wins;
 * otherwise a path the store already knows; otherwise the file's folder. */
void import_resolve_image(ImportCtx *c, const char *raw, ImportImg *out);
void import_img_deinit(ImportImg *r);

/* Apply phase: find or add image REF under PROMPT_ID (0 = none), completing a known image
 * with META's seed/generator/size (META may be NULL), hashing a file the store has no hash
 * of. Returns 0 and *id, or -1 after recording a problem at LINE. */
int import_ensure_image(ImportCtx *c, long line, const ImportImg *ref, int64_t prompt_id,
                        const StoreImage *meta, int64_t *id);

/* Store id of prompt EXT (cached), 0 if it is not in the store. */
int64_t import_prompt_lookup(ImportCtx *c, const char *ext);

/* ---- the apply phase */
int import_begin(ImportCtx *c, Err *err);
/* Report progress DONE/TOTAL every few rows; nonzero = the caller wants to cancel. */
int import_progress(ImportCtx *c, size_t done, size_t total);
/* COMMIT if no problem was recorded while applying, else ROLLBACK (and ERR_CONFLICT, or
 * ERR_CANCELLED if CANCELLED). */
int import_finish(ImportCtx *c, int cancelled, Err *err);

/* ---- the importers */
struct CsvTable;
int import_csv_prompts(ImportCtx *c, const struct CsvTable *t, Err *err);    /* import_csv.c */
int import_csv_ratings(ImportCtx *c, const struct CsvTable *t, Err *err);
int import_csv_generated(ImportCtx *c, const struct CsvTable *t, Err *err);
int import_pairs_jsonl(ImportCtx *c, const char *path, Err *err);            /* import_pairs.c */
int import_images_folder(ImportCtx *c, const char *root, Err *err);          /* import_images.c */

#endif
