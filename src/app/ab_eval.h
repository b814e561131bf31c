/* ab_eval — the blind A/B queue of a generator evaluation (issue 16): an A/B set made from a
 * tune-eval run's image pairs, and the humans' verdict on it.
 *
 * Making a set (ab_from_eval): every (prompt, seed) pair of the run's {out}/scores.csv (base
 * model vs adapter, the same seed and settings) becomes one item — image A the base model's,
 * image B the adapter's, with the reward model's scores of both per head — in the file's
 * order; the store draws each item's left/right side from the seed so that half the adapter's
 * images are on the left (store_ab.h). The images must be in the store (tune-eval adds them).
 *
 * Results (ab_results): per aspect and for the overall choice, the adapter's human win rate —
 * a win 1, a tie 1/2, a loss 0, over the judgements — with their count and a 95 % Wilson score
 * interval (the fractional successes of the ties put into the usual formula), per annotator
 * and pooled over annotators (every judgement counted; judgements of one item by several
 * annotators are not independent, so the pooled interval is optimistic); and the agreement of
 * the humans with the reward model: among non-tie judgements of items whose reward scores
 * differ, the share where the side the human chose is the side the reward model's head of that
 * aspect ("combined" for the overall choice) scores higher.
 */
#ifndef EASEL_AB_EVAL_H
#define EASEL_AB_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "store.h"

/* Make A/B set NAME from tune-eval run RUN (name or id) with order seed SEED. 0 with *SET_ID
 * and *N_ITEMS; ERR_NOTFOUND (no such run), ERR_USAGE (not a tune-eval run, or no output),
 * ERR_FORMAT (scores.csv: file and line), ERR_CONFLICT (the name is taken), ERR_IO, ERR_DB.
 * Nothing is written on an error. */
int ab_from_eval(Store *st, const char *name, const char *run, uint64_t seed, int64_t *set_id,
                 size_t *n_items, Err *err);

typedef struct AbStat {
    long n;         /* judgements */
    double wins;    /* adapter wins, ties counted half */
    double rate;    /* wins / n (NAN when n == 0) */
    double lo, hi;  /* 95 % Wilson interval */
} AbStat;

typedef struct AbRow {
    char *aspect;   /* "" = the overall choice */
    AbStat pooled;
    AbStat *per;    /* per annotator, as AbResults.annotators */
    long agree_n;   /* judgements compared with the reward model */
    long agree;     /* of those, the human chose the side the reward model prefers */
} AbRow;

typedef struct AbResults {
    char *set;
    char *run;          /* "" when the set came from no run */
    long items;
    long judgements;
    long unknown;       /* judgements on items with no known adapter side (left out) */
    char **annotators;
    size_t n_annotators;
    AbRow *rows;        /* the aspects in order, then the overall choice */
    size_t n_rows;
} AbResults;

/* The 95 % Wilson score interval of WINS out of N (N > 0). */
void ab_wilson(double wins, long n, double *lo, double *hi);

/* Results of set NAME. 0; ERR_NOTFOUND; ERR_DB. ab_results_deinit in every case. */
int ab_results(Store *st, const char *name, AbResults *r, Err *err);
void ab_results_print(FILE *f, const AbResults *r);
char *ab_results_json(const AbResults *r); /* new string, free() */
void ab_results_deinit(AbResults *r);      /* NULL allowed */

#endif
