/* store_annotate — the store queries of the Annotate screen: the annotator's queue, one
 * image with the annotator's own values, committing an image, flags, progress.
 *
 * The queue: images this annotator has not rated (no rating of any aspect), rated by fewer
 * distinct annotators than the overlap target (default 3), optionally only one prompt or only
 * images nobody rated; ordered fewest raters first (then id), by id, by prompt, or in a
 * random order that is stable per annotator. Several annotators share one store, each with
 * their own queue; images with as many raters are shuffled per annotator, so annotators
 * working at the same time rarely meet on one image (if they do, overlap grows by one).
 * Two orders are computed elsewhere and read from the queue_order table (kind, image, score,
 * reason, source, computed_at): `uncertain` (the reward model's pairwise preferences within
 * a prompt closest to 50 %) and `disagree` (annotators' spread); src/app/queue_order.c writes
 * them off the UI thread, and images without a row follow in fewest order. The table is
 * not per annotator: a queued image is one this annotator rated on no aspect, so every
 * aspect of it is still unrated by them.
 * The full queue scans every image (about 0.3 s for 50 000 images and 400 000 ratings), so
 * the TUI reads it on a background thread and checks each image with store_annotate_eligible
 * (indexed, microseconds) just before showing it.
 *
 * Commit writes every aspect of one image in ONE transaction (store_rating_set of
 * store_ratings.h for each, source 'tui'), so a committed image is either wholly in the store
 * or not at all. A changed value is replaced and the schema's trigger keeps the old one in
 * rating_history: an edit never loses a rating. An unchanged value is not written again.
 * Annotators and aspects come from store_catalog.h (store_annotator_ensure,
 * store_aspects_list).
 *
 * Thread safety: as Store (one connection per thread). Blind by default: nothing here returns
 * another annotator's values, only counts.
 */
#ifndef EASEL_STORE_ANNOTATE_H
#define EASEL_STORE_ANNOTATE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define ANNOTATE_ASPECTS 5   /* spatial, icono, style, fidelity, material (schema v1) */
#define ANNOTATE_OVERLAP_DEFAULT 3

typedef enum AnnotateOrder {
    ANNOTATE_ORDER_FEWEST = 0,  /* fewest raters first; ties in the annotator's own shuffled
                                 * order, so annotators working at once get different images */
    ANNOTATE_ORDER_ID,          /* import order */
    ANNOTATE_ORDER_PROMPT,      /* by prompt, then id: all images of a prompt together */
    ANNOTATE_ORDER_RANDOM,      /* shuffled, stable for one annotator */
    ANNOTATE_ORDER_SEQUENTIAL,  /* the same as prompt: prompts in import order, each prompt's
                                 * images together in import order */
    ANNOTATE_ORDER_UNCERTAIN,   /* highest queue_order 'uncertain' score first (the reward
                                 * model least sure within the prompt), then as fewest */
    ANNOTATE_ORDER_DISAGREE,    /* highest queue_order 'disagree' score first (annotators'
                                 * spread), then as fewest; images with a disagreement stay in
                                 * the queue past the overlap target, for adjudication */
} AnnotateOrder;

#define ANNOTATE_N_ORDERS 7

/* Parse "fewest" | "id" | "prompt" | "random" | "sequential" | "uncertain" | "disagree".
 * Returns 0 or ERR_USAGE with err set. */
int store_annotate_order_parse(const char *s, AnnotateOrder *order, Err *err);
/* The name of ORDER ("fewest", ...). */
const char *store_annotate_order_name(AnnotateOrder order);
/* The queue_order kind an order reads ("uncertain", "disagree"), or NULL for the orders
 * computed in the query itself. */
const char *store_annotate_order_kind(AnnotateOrder order);

typedef struct AnnotateQuery {
    int64_t annotator_id;
    int overlap;            /* only images with fewer raters; <= 0: ANNOTATE_OVERLAP_DEFAULT */
    AnnotateOrder order;
    const char *prompt;     /* NULL: all; else prompt ext id (the CSV's prompt_id); borrowed */
    int unrated_only;       /* only images nobody has rated */
} AnnotateQuery;

/* Up to MAX image ids of the queue, in order, skipping the N_SKIP ids in SKIP (images this
 * session skipped or is showing). *N gets the count. */
int store_annotate_queue(Store *st, const AnnotateQuery *q, const int64_t *skip, int n_skip,
                         int64_t *ids, int max, int *n, Err *err);

/* Is IMAGE_ID still in Q's queue right now (not rated by the annotator, fewer raters than the
 * overlap, filters)? A few indexed lookups: what the UI checks before showing an image from a
 * queue read earlier, since other annotators keep committing. *ok gets 1 or 0 (0 also for an
 * unknown image). */
int store_annotate_eligible(Store *st, const AnnotateQuery *q, int64_t image_id, int *ok,
                            Err *err);

/* One image as the annotator sees it. Strings are owned; free with
 * store_annotate_image_deinit. */
typedef struct AnnotateImage {
    int64_t id;
    char *path;                     /* resolved to open from the current directory */
    char *prompt_ext;               /* prompt id, or NULL */
    char *prompt;                   /* prompt text, or NULL */
    int missing;                    /* the importer saw the file missing */
    int width;                      /* 0 if unknown */
    int height;
    int n_raters;                   /* distinct annotators who rated it, me included */
    int n_my_flags;                 /* flags I set on it */
    double mine[ANNOTATE_ASPECTS];  /* my current values; NAN = not rated */
    double my_seconds;              /* time I spent on it so far (0 if none) */
} AnnotateImage;

/* Fill IMG for IMAGE_ID. Returns 0, ERR_NOTFOUND (no such image) or an ERR_*. */
int store_annotate_image(Store *st, int64_t image_id, int64_t annotator_id, AnnotateImage *img,
                         Err *err);
void store_annotate_image_deinit(AnnotateImage *img);

/* Commit the annotator's values for one image (NAN = leave that aspect as it is; index =
 * aspect position), all in one transaction, with SECONDS spent on it, source 'tui'. Returns 0,
 * ERR_USAGE (nothing to write), ERR_FORMAT (a value outside 0..10), ERR_CONFLICT (unknown
 * image) or a store error; on error nothing was written. *N_WRITTEN (may be
 * NULL) gets how many aspect values were inserted or changed. */
int store_annotate_commit(Store *st, int64_t image_id, int64_t annotator_id,
                          const double values[ANNOTATE_ASPECTS], double seconds, int *n_written,
                          Err *err);

/* Record a flag on an image with a comment (copied; may be empty). */
int store_annotate_flag(Store *st, int64_t image_id, int64_t annotator_id, const char *comment,
                        Err *err);

typedef struct AnnotateProgress {
    int done;           /* images I rated (any aspect), whole store */
    int remaining;      /* images in my queue now */
    int last_hour;      /* images I committed or changed in the TUI in the last hour */
    double mean_seconds;/* mean time per image I rated in the TUI, 0 if none */
} AnnotateProgress;

int store_annotate_progress(Store *st, const AnnotateQuery *q, AnnotateProgress *p, Err *err);


/* ---- computed orders (the queue_order table; computed by src/app/queue_order.c) ---- */

/* One row of a computed order: higher SCORE is served first; REASON is shown to the
 * annotator (borrowed by store_annotate_order_replace, which copies it). */
typedef struct AnnotateOrderRow {
    int64_t image_id;
    double score;
    const char *reason;
} AnnotateOrderRow;

/* Replace every row of KIND by the N rows given, all with SOURCE (e.g. "run-3/best") and
 * computed_at = now, in one transaction: readers see the old order or the new one. */
int store_annotate_order_replace(Store *st, const char *kind, const AnnotateOrderRow *rows,
                                 size_t n, const char *source, Err *err);

/* What the table holds for KIND: how many rows, their source and when they were computed
 * (the oldest computed_at; 0 when there are no rows), and how many images have no row. */
typedef struct AnnotateOrderInfo {
    int n_rows;
    int n_missing;          /* images without a row of KIND (imported since) */
    char source[256];       /* "" when no rows */
    double computed_at;
} AnnotateOrderInfo;
int store_annotate_order_info(Store *st, const char *kind, AnnotateOrderInfo *info, Err *err);

/* Why IMAGE_ID is where it is in KIND's order: *reason and *source get new strings (free()),
 * or NULL when the image has no row. */
int store_annotate_order_reason(Store *st, const char *kind, int64_t image_id, char **reason,
                                char **source, Err *err);

/* The checkpoint a computed order should use: of the run whose latest checkpoint is the
 * newest, its `best` checkpoint if recorded, else its latest one. *found is 0 when the store
 * records no checkpoint. Strings are new (free()): LABEL "RUN/NAME", PATH the folder. */
typedef struct AnnotateCheckpoint {
    int found;
    char *label;
    char *path;
    double created_at;
} AnnotateCheckpoint;
/* Candidates, newest first, so that a caller can pass over a folder deleted from disk:
 * checkpoint INDEX (0 = the preferred one); *found 0 past the last. */
int store_annotate_order_checkpoint(Store *st, int index, AnnotateCheckpoint *c, Err *err);
void store_annotate_checkpoint_deinit(AnnotateCheckpoint *c); /* NULL allowed */

/* Every image with what scoring needs: PATH resolved, SHA256 (or NULL), PROMPT_ID (0 = none)
 * and the prompt's text (or NULL). Caller: store_annotate_order_images_free. */
typedef struct AnnotateOrderImage {
    int64_t id;
    int64_t prompt_id;
    char *path;
    char *sha256;
    char *prompt;
    int missing;
    int n_raters;           /* distinct annotators who rated it (any aspect) */
} AnnotateOrderImage;
int store_annotate_order_images(Store *st, AnnotateOrderImage **out, size_t *n, Err *err);
void store_annotate_order_images_free(AnnotateOrderImage *im, size_t n); /* NULL allowed */

/* Per (image, aspect position) with at least two annotators' ratings: how many, lowest,
 * highest, mean and population standard deviation, ordered by image then aspect. Only
 * counts and spreads leave here, never who gave which value. Caller frees *out. */
typedef struct AnnotateSpread {
    int64_t image_id;
    int aspect;             /* position 0.. */
    int n;
    double lo;
    double hi;
    double mean;
    double sd;
} AnnotateSpread;
int store_annotate_order_spread(Store *st, AnnotateSpread **out, size_t *n, Err *err);

/* When a rating was last entered or changed (0 with none): a disagree order computed after
 * that is current. */
int store_annotate_ratings_changed_at(Store *st, double *t, Err *err);

#endif
