/* queue_order — the Annotate queue's computed orders, written to the store's queue_order table
 * (store_annotate.h reads them when it builds a queue).
 *
 *   uncertain  For each image and aspect, the newest reward checkpoint's predicted preference
 *              against each other image of the same prompt, p = sigmoid(s_i - s_j) (what the
 *              pairs objective trains); u = 1 - 2|p - 1/2| is 1 when the model cannot tell
 *              the two apart and 0 when it is sure. An image's u per aspect is that of its
 *              closest partner; its score is the mean of u over the five aspects, so the
 *              images served first are those whose rating would settle the most open
 *              comparisons. An image alone in its prompt, or one that cannot be read, scores
 *              0 (no comparison to settle) and is served after the others. The queue holds
 *              only images the annotator rated on no aspect, so every aspect counted is one
 *              they have not rated yet.
 *   disagree   For each image with two or more raters, the population standard deviation of
 *              the raters' values per aspect; the score is the largest. Only spreads reach
 *              the reason line, never who gave which value.
 *
 * Freshness: queue_order_refresh recomputes `uncertain` when the checkpoint it would use now
 * (store_annotate_order_checkpoint: the newest run's best/, else its latest) differs from the
 * one the rows came from, was rewritten after them, or when images have no row (imported
 * since); `disagree` when a rating was entered or changed after the rows. Otherwise it only
 * reads, so callers may call it often (the TUI every 30 s).
 *
 * Who calls: the TUI from a loader thread (ui/loader.h; never the UI thread), the bench and
 * tests directly. Thread safety: as Store; scoring runs the engine on a pool of its own.
 * Nothing here prints; problems go to log_* and the result's note.
 */
#ifndef EASEL_QUEUE_ORDER_H
#define EASEL_QUEUE_ORDER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "progress.h"
#include "store.h"
#include "store_annotate.h"

#define QUEUE_N_ASPECTS ANNOTATE_ASPECTS

typedef struct QueueOrderOptions {
    int force;                      /* recompute even when the rows are current */
    int threads;                    /* engine threads for scoring; <= 0: 1 */
    Progress progress;              /* cancel stops between images (ERR_CANCELLED) */
} QueueOrderOptions;

typedef struct QueueOrderResult {
    int computed;                   /* 1: the rows were rewritten by this call */
    int n_rows;                     /* rows of the order now */
    int fallback;                   /* uncertain without a usable checkpoint: served as fewest */
    int n_unreadable;               /* images that could not be scored (score 0) */
    char source[256];               /* "run-3/best", "ratings", "" */
    char note[320];                 /* one line for the annotator: what the order is based on */
} QueueOrderResult;

/* Bring ORDER's rows up to date (see above) and describe them in *res. Orders other than
 * uncertain and disagree need nothing: 0 with a note. OPT may be NULL. Returns 0,
 * ERR_CANCELLED, or a store error (the previous rows stay as they were). */
int queue_order_refresh(Store *st, AnnotateOrder order, const QueueOrderOptions *opt,
                        QueueOrderResult *res, Err *err);

/* ---- pure parts (tested directly) ---- */

/* One image's uncertainty: per aspect, u in [0, 1], the closest partner's index (-1: none)
 * and p = P(this image preferred over that partner). */
typedef struct QueueUncertainty {
    double score;                   /* mean of u over the aspects */
    double u[QUEUE_N_ASPECTS];
    double p[QUEUE_N_ASPECTS];
    int partner[QUEUE_N_ASPECTS];
} QueueUncertainty;

/* For N images with GROUP[i] (the prompt; images compare only within a group; 0 = no
 * prompt: compares with nothing) and SCORES (N, 5) per-head rewards; VALID[i] == 0 marks an
 * image that could not be scored (it has no partner and is nobody's partner). RATED[i]
 * (NULL: all) says image i has a rating: a comparison with an unrated partner counts
 * UNRATED_WEIGHT times its u, since rating this image alone does not settle it (a training
 * pair needs both images rated). Per aspect the partner with the largest weighted u is kept;
 * u[] holds the weighted values, p[] the plain probability. OUT has N. */
void queue_order_uncertainty(const int64_t *group, const float *scores, const uint8_t *valid,
                             const uint8_t *rated, double unrated_weight, size_t n,
                             QueueUncertainty *out);

/* The reason line of image U with ids of all images (IDS) and aspect names: its two most
 * uncertain aspects, e.g. "uncertain: style 52 % vs image 14, fidelity 47 % vs image 9 —
 * checkpoint run-3/best". */
void queue_order_uncertain_reason(const QueueUncertainty *u, const int64_t *ids,
                                  const char *const names[QUEUE_N_ASPECTS], const char *source,
                                  char *buf, size_t size);

#endif
