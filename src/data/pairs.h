/* pairs — preference pairs derived from ratings. Pure: plain arrays in, plain arrays out; no
 * store, no I/O, no globals. Used by `easel export pairs`, training and the TUI.
 *
 * Step 1, pairs_means_init: the ratings (StoreRating rows, any order) become one row per
 * image with the mean over annotators of each aspect (NAN where nobody rated it), optionally
 * restricted to one annotator.
 * Step 2, pairs_derive: for every two images A, B of the same prompt (images without a prompt
 * are never paired) and every aspect both have a value for, with d = mean(A) - mean(B):
 * if |d| >= min_diff and d != 0, one Pair with img_pos = the higher-rated image, img_neg =
 * the other, label 1.0, rating_diff = |d| > 0. The combined pair compares the mean over the
 * aspects rated on BOTH images, with the same rule. Blanks and smaller differences give no
 * pair (the original's "neutral 0.5").
 *
 * Invariant: img_pos is ALWAYS the preferred image and label is 1.0 — the original put the
 * better image in img_pos and labelled it 0 (origin-facts.md); we never do.
 * Order of the output: prompt id, then the first image's id, the second image's id (first <
 * second), then aspects in position order, combined last. Deterministic for a given input.
 */
#ifndef EASEL_PAIRS_H
#define EASEL_PAIRS_H

#include <stddef.h>
#include <stdint.h>

#include "store_ratings.h"

#define PAIRS_COMBINED (-1)        /* Pair.aspect of the combined pair */
#define PAIRS_MIN_DIFF_DEFAULT 0.5 /* the original's --min-rating-diff */

/* What pairs_derive emits. */
enum {
    PAIRS_PER_ASPECT = 1,
    PAIRS_WITH_COMBINED = 2,
    PAIRS_ALL = 3,
};

typedef struct PairsMeans {
    size_t n_images;
    int n_aspects;
    int64_t *image_id;     /* (n_images), ascending within a prompt */
    int64_t *prompt_id;    /* (n_images), rows grouped by prompt, ascending; 0 = no prompt */
    double *mean;          /* (n_images, n_aspects) row-major; NAN = not rated */
    int *n_raters;         /* (n_images, n_aspects) annotators behind each mean */
} PairsMeans;

typedef struct Pair {
    int64_t prompt_id;     /* store id */
    int64_t img_pos;       /* store image id of the preferred image */
    int64_t img_neg;       /* the other image */
    int aspect;            /* aspect position, or PAIRS_COMBINED */
    double label;          /* 1.0: img_pos is preferred */
    double rating_pos;     /* mean rating of img_pos (for the combined pair: see above) */
    double rating_neg;
    double rating_diff;    /* rating_pos - rating_neg, > 0 and >= min_diff */
} Pair;

/* Build the per-image means from N ratings with aspect_pos in 0..N_ASPECTS-1 (others are
 * ignored). ANNOTATOR_ID > 0 keeps only that annotator's ratings; 0 averages them all.
 * Every image that has at least one kept rating gets a row. Release with pairs_means_deinit. */
void pairs_means_init(PairsMeans *m, const StoreRating *ratings, size_t n, int n_aspects,
                      int64_t annotator_id);
void pairs_means_deinit(PairsMeans *m);   /* NULL allowed */

/* The pairs of M with MIN_DIFF (>= 0) and WHAT (PAIRS_PER_ASPECT, PAIRS_WITH_COMBINED or
 * both). *out is the caller's (free(*out)); *n may be 0. */
void pairs_derive(const PairsMeans *m, double min_diff, int what, Pair **out, size_t *n);

#endif
