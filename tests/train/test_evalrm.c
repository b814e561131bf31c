/* Tests for src/train/evalrm.c against values computed by hand. */
#include <criterion/criterion.h>
#include <math.h>

#include "evalrm.h"

Test(evalrm, hand_computed_table) {
    /* pair  s_a  s_b  label  chosen-rejected margin   pred(a>b)  outcome
     *  0    2.0  1.0   1        1.0                1         TP, correct
     *  1    0.5  1.5   1       -1.0                0         FN, wrong
     *  2    1.0  3.0   0        2.0                0         TN, correct
     *  3    1.0  1.0   1        0.0 (tie)          0         FN, wrong (strict)
     *  4    4.0  0.0   0.5      skipped (neutral)
     *  5    3.0  0.0   0       -3.0                1         FP, wrong
     * n = 5, accuracy = 2/5, margins {1,-1,2,0,-3}: mean -0.2,
     * population var = (1.44+0.64+4.84+0.04+7.84)/5 = 14.8/5 = 2.96, std = 1.7204651
     * F1 = 2*1 / (2*1 + 1 + 2) = 0.4 */
    double a[] = {2.0, 0.5, 1.0, 1.0, 4.0, 3.0};
    double b[] = {1.0, 1.5, 3.0, 1.0, 0.0, 0.0};
    double l[] = {1, 1, 0, 1, 0.5, 0};
    EvalStats s;
    evalrm_pairs(a, b, l, 6, &s);
    cr_assert_eq(s.n, 5);
    cr_assert_float_eq(s.accuracy, 0.4, 1e-12);
    cr_assert_float_eq(s.margin_mean, -0.2, 1e-12);
    cr_assert_float_eq(s.margin_std, sqrt(2.96), 1e-12);
    cr_assert_float_eq(s.f1, 0.4, 1e-12);
    cr_assert_eq(s.tp, 1);
    cr_assert_eq(s.fn, 2);
    cr_assert_eq(s.tn, 1);
    cr_assert_eq(s.fp, 1);
    double loss = (log1p(exp(-1.0)) + log1p(exp(1.0)) + log1p(exp(-2.0)) + log(2.0) +
                   log1p(exp(3.0))) / 5;
    cr_assert_float_eq(s.loss, loss, 1e-12);
}

Test(evalrm, strided_floats_match_doubles) {
    float a[] = {2, 9, 0.5f, 9, 1, 9};
    float b[] = {1, 9, 1.5f, 9, 3, 9};
    float l[] = {1, 0, 1}; /* margins 1, 1, -2 */
    EvalStats s;
    evalrm_pairs_strided(a, b, 2, l, 1, 3, &s);
    cr_assert_eq(s.n, 3);
    cr_assert_float_eq(s.accuracy, 2.0 / 3, 1e-12);
    cr_assert_float_eq(s.margin_mean, 0.0, 1e-6);
}

Test(evalrm, empty_and_extremes) {
    EvalStats s;
    evalrm_pairs(NULL, NULL, NULL, 0, &s);
    cr_assert_eq(s.n, 0);
    cr_assert_eq(s.accuracy, 0);
    cr_assert_float_eq(evalrm_logistic_loss(1000.0), 0.0, 1e-12);
    cr_assert_float_eq(evalrm_logistic_loss(-1000.0), 1000.0, 1e-9);
    cr_assert_float_eq(evalrm_logistic_loss(0.0), log(2.0), 1e-15);
}
