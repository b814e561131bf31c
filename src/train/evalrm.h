/* evalrm — metrics of a reward model on preference pairs (pure: arrays in, numbers out).
 *
 * A pair (a, b) carries a label: 1 = a is preferred, 0 = b is preferred, anything else
 * (0.5, NAN) = no preference; those pairs are skipped. For each kept pair the margin is
 * score(chosen) - score(rejected), where chosen is the preferred image.
 *
 * Seed 003's metrics: preference accuracy = share of pairs whose margin is STRICTLY positive
 * (a tie counts as wrong); average margin; margin standard deviation (population: divided by
 * n, not n-1); sample count. Added: binary F1 of the prediction "a preferred" = sigmoid(s_a -
 * s_b) > 0.5 (i.e. s_a > s_b) against the label, with "a preferred" as the positive class, as
 * the original scored its validation pairs; and the mean logistic loss -log sigmoid(margin).
 * Pairs are oriented as they are given (training orients them by image id, lower id first),
 * so F1 has both classes.
 *
 * Thread-safe, no allocation.
 */
#ifndef EASEL_EVALRM_H
#define EASEL_EVALRM_H

#include <stddef.h>

typedef struct EvalStats {
    size_t n;              /* pairs with a preference */
    double accuracy;       /* share with margin > 0 */
    double margin_mean;    /* mean margin */
    double margin_std;     /* population std of the margins */
    double f1;             /* binary F1, positive class "a preferred"; 0 if undefined */
    double loss;           /* mean -log sigmoid(margin) */
    size_t tp, fp, fn, tn; /* confusion counts behind f1 */
} EvalStats;

/* Stats of N pairs: scores of a and b, labels as above. n == 0 gives all zeros. */
void evalrm_pairs(const double *score_a, const double *score_b, const double *label, size_t n,
                  EvalStats *out);

/* Same with float scores and a stride (scores of head h of pair i at a[i*stride + h]). */
void evalrm_pairs_strided(const float *score_a, const float *score_b, size_t stride,
                          const float *label, size_t label_stride, size_t n, EvalStats *out);

/* Numerically safe -log sigmoid(x) = log(1 + exp(-x)). */
double evalrm_logistic_loss(double x);

#endif
