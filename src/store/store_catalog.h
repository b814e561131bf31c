/* store_catalog — what a workspace holds besides ratings: prompts, images, annotators, aspects,
 * and the counts `easel status` prints.
 *
 * Who calls it: importers, exporters, the TUI (short reads), agreement and training code.
 * Ids are the store's INTEGER PRIMARY KEYs (int64_t, > 0). A prompt also has an ext_id: the
 * `prompt_id` text of the CSV files ("prompt_3", "17"), unique in a store.
 *
 * Thread safety: as store.h — one Store per thread. Writers here do not open transactions
 * themselves; callers that write several rows wrap them in store_begin/store_commit.
 *
 * Ownership: every struct filled here owns its strings; release them with the matching
 * *_deinit (one struct) or *_free (an array returned by a list function, and its elements).
 * All functions copy the strings they are given.
 */
#ifndef EASEL_STORE_CATALOG_H
#define EASEL_STORE_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

/* ---- prompts ------------------------------------------------------------------------------ */

typedef struct StorePrompt {
    int64_t id;
    char *ext_id;          /* prompt_id of the CSV files */
    char *text;
} StorePrompt;

/* Add prompt EXT_ID with TEXT, or find it if it exists with the same text. *id (may be NULL)
 * gets its id, *added (may be NULL) 1 if a row was inserted. A prompt whose text is empty
 * (a ratings import creates prompts it only knows by id) gets TEXT (not counted as added).
 * Returns 0, ERR_CONFLICT if EXT_ID exists with a different non-empty text (prompts are not
 * silently rewritten), ERR_DB. */
int store_prompt_add(Store *st, const char *ext_id, const char *text, int64_t *id, int *added,
                     Err *err);

/* Look a prompt up by ext_id / by id / by exact text (the first one added, if several).
 * Return 0 and fill *out (caller deinits), ERR_NOTFOUND, or ERR_DB. */
int store_prompt_by_ext(Store *st, const char *ext_id, StorePrompt *out, Err *err);
int store_prompt_get(Store *st, int64_t id, StorePrompt *out, Err *err);
int store_prompt_by_text(Store *st, const char *text, StorePrompt *out, Err *err);

/* All prompts in id order. *out is the caller's: store_prompts_free(*out, *n). */
int store_prompts_list(Store *st, StorePrompt **out, size_t *n, Err *err);

void store_prompt_deinit(StorePrompt *p);             /* NULL allowed */
void store_prompts_free(StorePrompt *p, size_t n);    /* NULL allowed */

/* ---- images ------------------------------------------------------------------------------- */

typedef struct StoreImage {
    int64_t id;
    int64_t prompt_id;     /* store id of the prompt; 0 = none */
    char *path;            /* stored form (store_path_to_stored); store_path_resolve to open */
    int has_seed;          /* seed is known */
    int64_t seed;
    char *generator;       /* JSON text (model, steps, guidance, gpu_id...) or NULL */
    int width;             /* pixels; 0 = unknown */
    int height;
    char *sha256;          /* 64 lowercase hex digits of the file's bytes, or NULL */
    int missing;           /* 1 = the file was not on disk when last seen */
    int retired;           /* 1 = out of the annotate queue, training, evaluation, scoring */
    double retired_at;     /* Unix time; 0 when not retired */
    char *retired_by;      /* who retired it, or NULL */
    char *retired_reason;  /* why, or NULL */
} StoreImage;

typedef enum StoreImageFilter {
    STORE_IMAGES_ALL,
    STORE_IMAGES_ACTIVE,   /* not retired */
    STORE_IMAGES_RETIRED,
    STORE_IMAGES_MISSING,  /* not on disk when last seen (retired or not) */
} StoreImageFilter;

/* Add IMG (its id is ignored; path must be the stored form and not NULL). *id (may be NULL)
 * gets the new id. Returns 0, ERR_CONFLICT if the path is already in the store, ERR_DB. */
int store_image_add(Store *st, const StoreImage *img, int64_t *id, Err *err);

/* Complete the image ID with what META knows and the store does not: prompt, seed,
 * generator, size, sha256 where the store has none; `missing` is set to META's value.
 * *changed (may be NULL) says if anything was written. Returns 0, ERR_CONFLICT if META
 * contradicts a known prompt or seed (the message names both values), ERR_NOTFOUND, ERR_DB. */
int store_image_fill(Store *st, int64_t id, const StoreImage *meta, int *changed, Err *err);

/* Look an image up by id / by stored path. 0 and *out filled (caller deinits), ERR_NOTFOUND,
 * ERR_DB. */
int store_image_get(Store *st, int64_t id, StoreImage *out, Err *err);
int store_image_by_path(Store *st, const char *stored_path, StoreImage *out, Err *err);

/* The first image (lowest id) whose file had these bytes (SHA256: 64 lowercase hex digits),
 * one of prompt prefer_prompt first when there is one (0: any prompt): 0 and *out,
 * ERR_NOTFOUND, ERR_DB. The importers use it so that one file reached by two paths (a
 * symlinked folder, a copy) stays one image, also when another prompt has the same bytes. */
int store_image_by_sha256(Store *st, const char *sha256, int64_t prefer_prompt, StoreImage *out,
                          Err *err);

/* The images in use (not retired) of prompt PROMPT_ID (store id), or of every prompt when
 * PROMPT_ID is 0, in id order: what training, evaluation, scoring, embedding, agreement and
 * export see. *out is the caller's: store_images_free(*out, *n). */
int store_images_list(Store *st, int64_t prompt_id, StoreImage **out, size_t *n, Err *err);

/* Images by FILTER (all, retired, missing...), in id order; `easel images list`. */
int store_images_select(Store *st, StoreImageFilter filter, StoreImage **out, size_t *n,
                        Err *err);

/* Retire (RETIRE = 1) or bring back (0) image ID. A retired image leaves the annotate queue
 * and every list training, evaluation, scoring and export read (store_images_list,
 * store_ratings_all, store_pairs_list); its ratings and pairs are kept untouched and count
 * again once it is brought back. BY (who) and REASON (may be NULL) are kept with it.
 * *changed (may be NULL) is 0 when it already was in that state. Returns 0, ERR_NOTFOUND,
 * ERR_DB. */
int store_image_retire(Store *st, int64_t id, int retire, const char *by, const char *reason,
                       int *changed, Err *err);

/* Number of current ratings of image ID (all annotators and aspects). */
int store_image_rating_count(Store *st, int64_t id, int64_t *n, Err *err);

void store_image_deinit(StoreImage *img);             /* NULL allowed */
void store_images_free(StoreImage *img, size_t n);    /* NULL allowed */

/* ---- annotators ----------------------------------------------------------------------------- */

typedef struct StoreAnnotator {
    int64_t id;
    char *name;
} StoreAnnotator;

/* The id of annotator NAME, adding it if new. NAME must be non-empty. Returns 0, ERR_FORMAT
 * for an empty name, ERR_DB. */
int store_annotator_ensure(Store *st, const char *name, int64_t *id, Err *err);

/* The id of annotator NAME if it exists: 0, ERR_NOTFOUND, ERR_DB. */
int store_annotator_find(Store *st, const char *name, int64_t *id, Err *err);

/* All annotators in name order. *out is the caller's: store_annotators_free(*out, *n). */
int store_annotators_list(Store *st, StoreAnnotator **out, size_t *n, Err *err);
void store_annotators_free(StoreAnnotator *a, size_t n);

/* ---- aspects -------------------------------------------------------------------------------- */

typedef struct StoreAspect {
    int64_t id;
    int position;          /* 0-based order: spatial, icono, style, fidelity, material, ... */
    char *name;
    char *rubric;          /* one line for the rater */
} StoreAspect;

/* All aspects in position order (the five of the original first). Positions are dense,
 * 0..n-1, so arrays indexed by position line up with this list. *out is the caller's:
 * store_aspects_free(*out, *n). */
int store_aspects_list(Store *st, StoreAspect **out, size_t *n, Err *err);
void store_aspects_free(StoreAspect *a, size_t n);

/* ---- counts --------------------------------------------------------------------------------- */

typedef struct StoreAspectCount {
    char *name;
    int64_t n_ratings;     /* current ratings of this aspect */
    int64_t n_images;      /* images with at least one rating of it */
} StoreAspectCount;

typedef struct StoreCounts {
    int64_t prompts;
    int64_t images;
    int64_t images_missing;
    int64_t images_retired;   /* retired: out of queues and training, ratings kept */
    int64_t images_rated;     /* with at least one rating */
    int64_t annotators;
    int64_t ratings;          /* current values, all aspects */
    int64_t rating_edits;     /* rows of rating_history: values replaced by an edit */
    int64_t pairs;            /* stored (imported) preference pairs */
    int64_t runs;
    int64_t jobs;
    int64_t jobs_queued;
    int64_t jobs_running;
    StoreAspectCount *aspects;  /* in position order; owned, see store_counts_deinit */
    size_t n_aspects;
} StoreCounts;

/* Fill *out with the counts. Returns 0 or ERR_DB. */
int store_counts(Store *st, StoreCounts *out, Err *err);
void store_counts_deinit(StoreCounts *c);   /* NULL allowed */

#endif
