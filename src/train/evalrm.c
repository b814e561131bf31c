/* evalrm — reward-model metrics on preference pairs. See evalrm.h.
 *
 * One pass with Welford's update for the margin mean and variance, so long evaluations do
 * not lose precision to a sum of squares.
 */
#include "evalrm.h"

#include <math.h>
#include <string.h>

double evalrm_logistic_loss(double x) {
    /* log(1 + e^-x) without overflow for large |x| */
    return x > 0 ? log1p(exp(-x)) : -x + log1p(exp(x));
}

typedef struct Acc {
    size_t n, correct, tp, fp, fn, tn;
    double mean, m2, loss;
} Acc;

static void acc_add(Acc *a, double sa, double sb, double label) {
    int a_pref;
    if (label == 1.0)
        a_pref = 1;
    else if (label == 0.0)
        a_pref = 0;
    else
        return; /* neutral or missing */
    double margin = a_pref ? sa - sb : sb - sa;
    a->n++;
    a->correct += margin > 0;
    double d = margin - a->mean;
    a->mean += d / (double)a->n;
    a->m2 += d * (margin - a->mean);
    a->loss += evalrm_logistic_loss(margin);
    int pred = sa > sb;
    if (pred && a_pref)
        a->tp++;
    else if (pred && !a_pref)
        a->fp++;
    else if (!pred && a_pref)
        a->fn++;
    else
        a->tn++;
}

static void acc_finish(const Acc *a, EvalStats *out) {
    memset(out, 0, sizeof *out);
    out->n = a->n;
    out->tp = a->tp;
    out->fp = a->fp;
    out->fn = a->fn;
    out->tn = a->tn;
    if (a->n == 0)
        return;
    out->accuracy = (double)a->correct / (double)a->n;
    out->margin_mean = a->mean;
    out->margin_std = sqrt(a->m2 / (double)a->n);
    out->loss = a->loss / (double)a->n;
    size_t denom = 2 * a->tp + a->fp + a->fn;
    out->f1 = denom ? 2.0 * (double)a->tp / (double)denom : 0.0;
}

void evalrm_pairs(const double *score_a, const double *score_b, const double *label, size_t n,
                  EvalStats *out) {
    Acc a = {0};
    for (size_t i = 0; i < n; i++)
        acc_add(&a, score_a[i], score_b[i], label[i]);
    acc_finish(&a, out);
}

void evalrm_pairs_strided(const float *score_a, const float *score_b, size_t stride,
                          const float *label, size_t label_stride, size_t n, EvalStats *out) {
    Acc a = {0};
    for (size_t i = 0; i < n; i++)
        acc_add(&a, score_a[i * stride], score_b[i * stride], label[i * label_stride]);
    acc_finish(&a, out);
}
