/* store_ab — blind A/B comparison sets (issue 16): pairs of images shown side by side to
 * annotators, who choose left / right / tie per aspect or once overall, without knowing which
 * image is which (e.g. a tune-eval run's base model vs adapter images of one prompt and seed).
 *
 * A set has a name, the tune-eval run it came from (or none), the seed that drew its order and
 * when it was made. Each item holds image A and image B, which one is the adapter's (kept for
 * the results; the annotators' view, StoreAbView, never carries it), the reward model's scores
 * of both sides per head (optional) and the side A is shown on: drawn once when the set is
 * made, deterministically from the seed, so that half the items (n / 2, rounded down) show the
 * adapter's image (or, with no adapter, image A) on the left.
 *
 * A judgement is (item, annotator, aspect — "" for the one overall choice) → left / right /
 * tie as the annotator saw the item. Judging again replaces that annotator's own judgement;
 * the schema keeps every replaced choice in ab_judgement_history and refuses deletes (as
 * ratings): a judgement, once entered, is never lost. Items and sets with judgements cannot be
 * deleted either (foreign keys).
 *
 * Thread safety: as store.h. Ownership: lists filled here own their strings; free them with
 * the matching store_ab_*_free. Every input string is copied.
 */
#ifndef EASEL_STORE_AB_H
#define EASEL_STORE_AB_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define STORE_AB_HEAD_MAX 32

typedef enum StoreAbChoice {
    STORE_AB_NONE = 0, /* not judged (reads only) */
    STORE_AB_LEFT,
    STORE_AB_RIGHT,
    STORE_AB_TIE,
} StoreAbChoice;

const char *store_ab_choice_name(StoreAbChoice c); /* "left", "right", "tie", "" */

typedef struct StoreAbReward {
    char head[STORE_AB_HEAD_MAX]; /* an aspect's name or "combined" */
    double a, b;                  /* the reward model's scores of image A and image B */
} StoreAbReward;

/* One item to add: images A and B (store image ids), which one is the adapter's (-1: neither
 * known, 0: A, 1: B) and the reward model's scores (n_rewards, may be 0). */
typedef struct StoreAbItemNew {
    int64_t image_a, image_b;
    int adapter;
    const StoreAbReward *rewards;
    size_t n_rewards;
} StoreAbItemNew;

typedef struct StoreAbSet {
    int64_t id;
    char *name;
    int64_t run_id;    /* 0: none */
    char *run_name;    /* "" when none */
    uint64_t seed;
    double created;
    int64_t items;     /* how many items */
    int64_t judged;    /* items with at least one judgement */
    int64_t judgements;
} StoreAbSet;

/* Make set NAME from ITEMS (in queue order; N >= 1) in one transaction, drawing each item's
 * side from SEED (the same seed and items give the same order). RUN_ID 0: from no run.
 * Returns 0 with *SET_ID; ERR_USAGE (empty name, no items, an item with the same image on both
 * sides), ERR_CONFLICT (a set of that name exists; an image or run that does not exist; the
 * same pair twice), ERR_DB. Nothing is written on an error. */
int store_ab_set_create(Store *st, const char *name, int64_t run_id, uint64_t seed,
                        const StoreAbItemNew *items, size_t n, int64_t *set_id, Err *err);

/* The sets, newest first. store_ab_sets_free. */
int store_ab_sets_list(Store *st, StoreAbSet **out, size_t *n, Err *err);
/* Set NAME: 0, ERR_NOTFOUND (err names it), ERR_DB. store_ab_set_deinit. */
int store_ab_set_find(Store *st, const char *name, StoreAbSet *out, Err *err);
void store_ab_set_deinit(StoreAbSet *s);             /* NULL allowed */
void store_ab_sets_free(StoreAbSet *v, size_t n);    /* NULL allowed */

/* What an annotator sees of an item: no word of which side is the adapter's. */
typedef struct StoreAbView {
    int64_t item_id;
    int64_t position;
    int64_t left_image, right_image;
    char *left_path, *right_path;  /* open from the current directory */
    char *prompt;                  /* the prompt's text ("" when none) */
} StoreAbView;

/* The items of SET_ID in queue order. store_ab_views_free. */
int store_ab_views(Store *st, int64_t set_id, StoreAbView **out, size_t *n, Err *err);
void store_ab_views_free(StoreAbView *v, size_t n);  /* NULL allowed */

/* Record ANNOTATOR_ID's CHOICE (left / right / tie) on ITEM_ID for ASPECT (NULL or "" = the
 * overall choice; else an aspect's name), SECONDS spent (< 0: unknown), replacing their
 * earlier choice there (kept in the history). 0; ERR_USAGE (bad choice, unknown aspect);
 * ERR_CONFLICT (no such item or annotator); ERR_DB. */
int store_ab_judge(Store *st, int64_t item_id, int64_t annotator_id, const char *aspect,
                   StoreAbChoice choice, double seconds, Err *err);

/* One judgement, as read back. */
typedef struct StoreAbJudgement {
    int64_t item_id;
    int64_t annotator_id;
    char *annotator;      /* name */
    char *aspect;         /* "" = overall */
    StoreAbChoice choice; /* as the annotator saw it */
    int adapter_side;     /* where the adapter's image was shown: 0 left, 1 right, -1 unknown */
    double updated;
} StoreAbJudgement;

/* The judgements of SET_ID (ANNOTATOR_ID 0: everyone's; else that annotator's), by item
 * position, annotator name, aspect. store_ab_judgements_free. */
int store_ab_judgements(Store *st, int64_t set_id, int64_t annotator_id, StoreAbJudgement **out,
                        size_t *n, Err *err);
void store_ab_judgements_free(StoreAbJudgement *v, size_t n); /* NULL allowed */

/* The reward model's view of an item: per head, adapter's score minus the other's. */
typedef struct StoreAbItemReward {
    int64_t item_id;
    char head[STORE_AB_HEAD_MAX];
    double adapter_minus_other;
} StoreAbItemReward;

/* The reward scores of SET_ID's items whose adapter side is known. Free with free(). */
int store_ab_rewards(Store *st, int64_t set_id, StoreAbItemReward **out, size_t *n, Err *err);

#endif
