/* agreement — inter-rater agreement statistics over one aspect's ratings table.
 *
 * Input is a table of images × raters (AgreeTable) where a cell is a 0–10 rating or NAN for
 * "not rated". agreement_compute derives, for that one aspect:
 *   - raters per image (mean/min/max over images with at least one rating);
 *   - Krippendorff's alpha, interval metric, over every image with ≥ 2 ratings (missing
 *     values are native to alpha: images with one rating are not pairable and drop out);
 *   - ICC(2,1) and ICC(2,k) (two-way random effects, absolute agreement; Shrout & Fleiss
 *     1979, McGraw & Wong 1996 "ICC(A,1)"/"ICC(A,k)"). ANOVA needs a complete block, so they
 *     are computed over the LARGEST COMPLETE BLOCK: the set of k ≥ 2 raters and the n ≥ 2
 *     images all of them rated that maximises n·k cells (ties: more images, then the raters
 *     that come first in the table). The block is reported (n, k, which raters) so callers
 *     can say what the ICC covers. Exhaustive over rater subsets when that is cheap (up to
 *     24 raters and 2^raters × distinct rater sets ≤ 3·10^7); otherwise the best of every
 *     distinct rater set and of greedy elimination (drop the rater whose removal keeps the
 *     most images), which may miss the optimum but is deterministic; past 256 raters (crowd
 *     data; greedy elimination costs raters² × rater sets) the best of every distinct rater
 *     set and of "the raters with at least M ratings" for each M;
 *   - disagreement per image: range (max − min), standard deviation and mean of its ratings.
 *     An image has HIGH DISAGREEMENT when it has ≥ 2 ratings and range ≥ threshold
 *     (AGREE_DISAGREE_RANGE = 3 points on the 0–10 scale unless options say otherwise);
 *     images with ≥ 2 ratings are ranked by range, then SD, then more ratings, then table
 *     order — most disagreement first — for the Quality screen's review list;
 *   - per rater: ratings given, and the mean (and mean absolute) offset of the rater's rating
 *     from the mean of the OTHER raters of the same image, over images someone else rated too.
 *
 * Undefined statistics are NAN, never a made-up number: alpha when fewer than two pairable
 * values or no variation at all (every rating equal: D_e = 0); ICC when no complete block of
 * 2×2 exists or the ANOVA denominator is 0 (a constant block). AgreeStats.alpha_note and
 * icc_note say why in words.
 *
 * Pure C, no I/O, no store: callers (store_agreement.c, the CLI, the Quality screen) load the
 * table. Thread-safe: no globals.
 */
#ifndef EASEL_AGREEMENT_H
#define EASEL_AGREEMENT_H

#include <stdint.h>

#define AGREE_DISAGREE_RANGE 3.0  /* default high-disagreement rule: max − min ≥ 3 points */

/* One aspect's ratings. values is row-major (n_items, n_raters); NAN = not rated. */
typedef struct AgreeTable {
    char *aspect;          /* aspect name, e.g. "style" (may be NULL) */
    int n_items;           /* images (rows) */
    int n_raters;          /* raters (columns) */
    double *values;        /* (n_items, n_raters), 0..10 or NAN */
    int64_t *item_ids;     /* n_items: store image ids (may be NULL for bare tables) */
    char **item_labels;    /* n_items: image paths for display (may be NULL) */
    char **rater_names;    /* n_raters: annotator names (may be NULL) */
} AgreeTable;

/* A table of n_items × n_raters, every cell NAN, ids 0..n-1, no labels or names; the table
 * owns every pointer in it. Free with agreement_table_free (NULL allowed). */
AgreeTable *agreement_table_new(int n_items, int n_raters);
void agreement_table_free(AgreeTable *t);

static inline double *agreement_cell(AgreeTable *t, int item, int rater) {
    return &t->values[(int64_t)item * t->n_raters + rater];
}

typedef struct AgreeOptions {
    double disagree_range; /* high disagreement when range ≥ this; ≤ 0 means the default */
} AgreeOptions;

/* Per rater (annotator). */
typedef struct AgreeRater {
    int rater;             /* column in the table */
    int n_rated;           /* ratings this rater gave */
    int n_shared;          /* of those, on images at least one other rater also rated */
    double mean_offset;    /* mean of (own − mean of the others) over n_shared; NAN if 0 */
    double mean_abs_offset;/* mean of |own − mean of the others|; NAN if n_shared is 0 */
} AgreeRater;

/* Per image with ≥ 2 ratings, in AgreeStats.ranked. */
typedef struct AgreeItem {
    int item;              /* row in the table */
    int64_t id;            /* table->item_ids[item], or item if the table has no ids */
    int n_ratings;
    double mean;
    double range;          /* max − min */
    double sd;             /* sample standard deviation (n − 1) */
    int high;              /* 1 if range ≥ the disagreement threshold */
} AgreeItem;

typedef struct AgreeStats {
    int n_items_rated;     /* images with ≥ 1 rating */
    int n_items_pairable;  /* images with ≥ 2 ratings (what alpha and the ranking use) */
    int n_ratings;         /* non-missing cells */
    int n_raters_active;   /* raters with ≥ 1 rating */
    double raters_mean;    /* raters per image, over images with ≥ 1 rating; NAN if none */
    int raters_min;        /* 0 if no image is rated */
    int raters_max;

    double alpha;          /* Krippendorff's alpha, interval metric; NAN if undefined */
    const char *alpha_note;/* static text: "" when defined, else why not */

    double icc_2_1;        /* ICC(2,1) over the block; NAN if undefined */
    double icc_2_k;        /* ICC(2,k) over the block; NAN if undefined */
    int icc_n_items;       /* block images (0 if no block) */
    int icc_k;             /* block raters */
    int *icc_raters;       /* icc_k rater columns, ascending */
    int *icc_items;        /* icc_n_items rows, ascending */
    const char *icc_note;  /* static text: "" when defined, else why not */

    double disagree_range; /* the threshold used */
    int n_high_disagree;   /* images with ≥ 2 ratings and range ≥ disagree_range */

    int n_raters;          /* = table n_raters */
    AgreeRater *raters;    /* n_raters, in table order */
    int n_ranked;          /* = n_items_pairable */
    AgreeItem *ranked;     /* most disagreement first */
} AgreeStats;

/* Compute every statistic above for table T (not modified; may be freed afterwards, the
 * result refers to it only by row/column numbers and copied ids). OPT may be NULL (defaults).
 * Returns a new AgreeStats the caller frees with agreement_stats_free. Never fails. */
AgreeStats *agreement_compute(const AgreeTable *t, const AgreeOptions *opt);
void agreement_stats_free(AgreeStats *s);

/* The statistics alone, for tests and other callers (NAN where undefined, as above). */
double agreement_alpha_interval(const AgreeTable *t);
/* ICC(2,1) and ICC(2,k) of a COMPLETE block: values (n, k) row-major, no NAN. Returns 0, or
 * -1 (outputs NAN) if n < 2, k < 2 or the denominator is 0. */
int agreement_icc2(const double *values, int n, int k, double *icc_2_1, double *icc_2_k);

#endif
