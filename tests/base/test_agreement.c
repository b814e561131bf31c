/* Tests for src/base/agreement.c: hand-checkable cases here; tables checked against the reference
 * implementations (krippendorff, pingouin) through tests/fixtures/agreement/expected.txt, made
 * by tests/agreement/make_expected.py. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreement.h"

#define NA NAN

static AgreeTable *table(int n, int k, const double *v) {
    AgreeTable *t = agreement_table_new(n, k);
    memcpy(t->values, v, sizeof(double) * (size_t)n * (size_t)k);
    return t;
}

static void near(double got, double want, double tol, const char *what) {
    cr_assert(fabs(got - want) <= tol, "%s: got %.12g, want %.12g", what, got, want);
}

Test(agreement, perfect_agreement_gives_one) {
    const double v[] = {1, 1, 1, 4, 4, 4, 7, 7, 7, 9, 9, 9};
    AgreeTable *t = table(4, 3, v);
    AgreeStats *s = agreement_compute(t, NULL);
    near(s->alpha, 1.0, 1e-12, "alpha");
    near(s->icc_2_1, 1.0, 1e-12, "icc21");
    near(s->icc_2_k, 1.0, 1e-12, "icc2k");
    cr_assert_str_eq(s->alpha_note, "");
    cr_assert_eq(s->icc_n_items, 4);
    cr_assert_eq(s->icc_k, 3);
    cr_assert_eq(s->n_high_disagree, 0);
    for (int j = 0; j < 3; j++) {
        cr_assert_eq(s->raters[j].n_rated, 4);
        near(s->raters[j].mean_offset, 0, 1e-12, "offset");
    }
    agreement_stats_free(s);
    agreement_table_free(t);
}

Test(agreement, constant_ratings_are_undefined_not_made_up) {
    const double v[] = {5, 5, 5, 5, 5, 5};
    AgreeTable *t = table(3, 2, v);
    AgreeStats *s = agreement_compute(t, NULL);
    cr_assert(isnan(s->alpha));
    cr_assert(strstr(s->alpha_note, "same value"), "%s", s->alpha_note);
    cr_assert(isnan(s->icc_2_1) && isnan(s->icc_2_k));
    cr_assert(strlen(s->icc_note) > 0);
    cr_assert_eq(s->icc_n_items, 3); /* the block exists, its ICC does not */
    cr_assert_eq(s->n_ranked, 3);
    cr_assert_eq(s->ranked[0].range, 0);
    agreement_stats_free(s);
    agreement_table_free(t);
}

Test(agreement, constant_per_rater_but_raters_differ) {
    /* every image gets 2 from A and 6 from B: no agreement at all, alpha below zero */
    const double v[] = {2, 6, 2, 6, 2, 6};
    AgreeTable *t = table(3, 2, v);
    AgreeStats *s = agreement_compute(t, NULL);
    /* n = 6, within = 3 · 2·2·8/1... by formula: 1 − (n−1)·Σ m SS/(m−1) / (n·SS_all)
     * SS per image 8, m = 2 → 16 each, 48 total; SS_all = 6·4 = 24 → 1 − 5·48/(6·24) */
    near(s->alpha, 1.0 - 5.0 * 48.0 / (6.0 * 24.0), 1e-12, "alpha");
    /* rows identical → MSR = 0; ICC(2,1) = −MSE/(...) with MSE = 0 → 0/(k·MSC/n) = 0 */
    near(s->icc_2_1, 0.0, 1e-12, "icc21");
    near(s->raters[0].mean_offset, -4, 1e-12, "offset A");
    near(s->raters[1].mean_offset, 4, 1e-12, "offset B");
    near(s->raters[1].mean_abs_offset, 4, 1e-12, "abs offset B");
    cr_assert_eq(s->n_high_disagree, 3); /* range 4 ≥ 3 */
    agreement_stats_free(s);
    agreement_table_free(t);
}

Test(agreement, hand_computed_two_by_two_with_missing) {
    /* images (1,2), (3,3), (5,-): alpha = 8/11; the single rating drops out of alpha.
     * ICC over the 2×2 block: MSR = 2.25, MSC = 0.25, MSE = 0.25 →
     * ICC(2,1) = 2/2.5 = 0.8, ICC(2,k) = 2/2.25 */
    const double v[] = {1, 2, 3, 3, 5, NA};
    AgreeTable *t = table(3, 2, v);
    AgreeStats *s = agreement_compute(t, NULL);
    near(s->alpha, 8.0 / 11.0, 1e-12, "alpha");
    near(s->icc_2_1, 0.8, 1e-12, "icc21");
    near(s->icc_2_k, 2.0 / 2.25, 1e-12, "icc2k");
    cr_assert_eq(s->n_items_rated, 3);
    cr_assert_eq(s->n_items_pairable, 2);
    cr_assert_eq(s->n_ratings, 5);
    near(s->raters_mean, 5.0 / 3.0, 1e-12, "raters mean");
    cr_assert_eq(s->raters_min, 1);
    cr_assert_eq(s->raters_max, 2);
    cr_assert_eq(s->icc_n_items, 2);
    cr_assert_eq(s->icc_items[0], 0);
    cr_assert_eq(s->icc_items[1], 1);
    cr_assert_eq(s->raters[0].n_rated, 3);
    cr_assert_eq(s->raters[0].n_shared, 2);
    near(s->raters[0].mean_offset, -0.5, 1e-12, "offset A"); /* (1−2 + 3−3)/2 */
    cr_assert_eq(s->raters[1].n_rated, 2);
    near(s->raters[1].mean_offset, 0.5, 1e-12, "offset B");
    agreement_stats_free(s);
    agreement_table_free(t);
}

Test(agreement, block_drops_a_sparse_rater) {
    /* C rated one image only: the best block is A,B over all four images (8 cells), not
     * A,B,C over one image */
    const double v[] = {1, 2, 1, 4, 4, NA, 6, 7, NA, 9, 8, NA};
    AgreeTable *t = table(4, 3, v);
    AgreeStats *s = agreement_compute(t, NULL);
    cr_assert_eq(s->icc_k, 2);
    cr_assert_eq(s->icc_n_items, 4);
    cr_assert_eq(s->icc_raters[0], 0);
    cr_assert_eq(s->icc_raters[1], 1);
    cr_assert(!isnan(s->icc_2_1));
    agreement_stats_free(s);
    agreement_table_free(t);
}

Test(agreement, block_prefers_more_cells_then_more_images) {
    /* A,B,C all rate images 0–2 (9 cells); A,B also rate 3 (A,B: 8 cells) → A,B,C */
    const double v[] = {1, 2, 1, 4, 5, 4, 7, 7, 8, 3, 2, NA};
    AgreeTable *t = table(4, 3, v);
    AgreeStats *s = agreement_compute(t, NULL);
    cr_assert_eq(s->icc_k, 3);
    cr_assert_eq(s->icc_n_items, 3);
    agreement_stats_free(s);
    agreement_table_free(t);
}

Test(agreement, nothing_pairable) {
    const double v[] = {1, NA, NA, 4, NA, NA};
    AgreeTable *t = table(3, 2, v);
    AgreeStats *s = agreement_compute(t, NULL);
    cr_assert(isnan(s->alpha));
    cr_assert(isnan(s->icc_2_1));
    cr_assert_eq(s->icc_n_items, 0);
    cr_assert_eq(s->n_ranked, 0);
    cr_assert_eq(s->n_items_rated, 2);
    cr_assert_eq(s->raters_min, 1);
    cr_assert(isnan(s->raters[0].mean_offset));
    agreement_stats_free(s);
    agreement_table_free(t);
}

Test(agreement, empty_table) {
    AgreeTable *t = agreement_table_new(0, 0);
    AgreeStats *s = agreement_compute(t, NULL);
    cr_assert(isnan(s->alpha));
    cr_assert(isnan(s->icc_2_1));
    cr_assert(isnan(s->raters_mean));
    cr_assert_eq(s->n_ratings, 0);
    agreement_stats_free(s);
    agreement_table_free(t);
}

Test(agreement, ranking_and_threshold) {
    const double v[] = {5, 5, 5,   /* range 0 */
                        1, 9, 5,   /* range 8 */
                        4, 7, NA,  /* range 3: high at the default threshold */
                        3, 5, 4,   /* range 2 */
                        2, 8, NA}; /* range 6 */
    AgreeTable *t = table(5, 3, v);
    for (int i = 0; i < 5; i++)
        t->item_ids[i] = 100 + i;
    AgreeStats *s = agreement_compute(t, NULL);
    cr_assert_eq(s->n_ranked, 5);
    const int want[] = {1, 4, 2, 3, 0};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(s->ranked[i].item, want[i], "rank %d", i);
        cr_assert_eq(s->ranked[i].id, 100 + want[i]);
    }
    cr_assert_eq(s->n_high_disagree, 3);
    cr_assert(s->ranked[2].high);
    cr_assert(!s->ranked[3].high);
    near(s->ranked[0].sd, 4.0, 1e-12, "sd of 1,9,5");
    near(s->ranked[0].mean, 5.0, 1e-12, "mean");
    AgreeOptions opt = {.disagree_range = 5};
    AgreeStats *s5 = agreement_compute(t, &opt);
    cr_assert_eq(s5->n_high_disagree, 2);
    near(s5->disagree_range, 5, 0, "threshold");
    agreement_stats_free(s5);
    agreement_stats_free(s);
    agreement_table_free(t);
}

Test(agreement, greedy_block_with_many_raters) {
    /* 30 raters (beyond exhaustive search): raters 0–19 rate all 6 images, the rest one each */
    int n = 6, k = 30;
    AgreeTable *t = agreement_table_new(n, k);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 20; j++)
            *agreement_cell(t, i, j) = (i * 3 + j % 3) % 11;
    for (int j = 20; j < k; j++)
        *agreement_cell(t, j % n, j) = 5;
    AgreeStats *s = agreement_compute(t, NULL);
    cr_assert_eq(s->icc_k, 20);
    cr_assert_eq(s->icc_n_items, 6);
    for (int q = 0; q < 20; q++)
        cr_assert_eq(s->icc_raters[q], q);
    agreement_stats_free(s);
    agreement_table_free(t);
}

/* ---- against the reference implementations ------------------------------------------------ */

#define FIXTURE "tests/fixtures/agreement/expected.txt"

static double parse_value(const char *tok) { return strcmp(tok, "NA") == 0 ? NAN : atof(tok); }

static void check_table(const char *name, AgreeTable *t, FILE *f, int *line) {
    AgreeStats *s = agreement_compute(t, NULL);
    char buf[4096];
    while (fgets(buf, sizeof buf, f)) {
        (*line)++;
        buf[strcspn(buf, "\n")] = 0;
        char *save, *kind = strtok_r(buf, " ", &save);
        if (strcmp(kind, "end") == 0)
            break;
        if (strcmp(kind, "int") == 0) {
            char *key = strtok_r(NULL, " ", &save);
            int want = atoi(strtok_r(NULL, " ", &save));
            int got = strcmp(key, "n_ratings") == 0    ? s->n_ratings
                      : strcmp(key, "raters_min") == 0 ? s->raters_min
                      : strcmp(key, "raters_max") == 0 ? s->raters_max
                      : strcmp(key, "block_n") == 0    ? s->icc_n_items
                      : strcmp(key, "block_k") == 0    ? s->icc_k
                      : strcmp(key, "high") == 0       ? s->n_high_disagree
                                                       : -999;
            cr_assert_eq(got, want, "%s: %s: got %d, want %d (" FIXTURE ":%d)", name, key, got,
                         want, *line);
        } else if (strcmp(kind, "real") == 0) {
            char *key = strtok_r(NULL, " ", &save);
            double want = parse_value(strtok_r(NULL, " ", &save));
            double got = strcmp(key, "raters_mean") == 0 ? s->raters_mean
                         : strcmp(key, "alpha") == 0     ? s->alpha
                         : strcmp(key, "icc21") == 0     ? s->icc_2_1
                         : strcmp(key, "icc2k") == 0     ? s->icc_2_k
                                                         : -999;
            if (isnan(want))
                cr_assert(isnan(got), "%s: %s: got %g, want NA", name, key, got);
            else
                cr_assert(fabs(got - want) <= 1e-9, "%s: %s: got %.15g, want %.15g (" FIXTURE
                          ":%d)", name, key, got, want, *line);
        } else if (strcmp(kind, "offsets") == 0) {
            for (int j = 0; j < t->n_raters; j++) {
                double want = parse_value(strtok_r(NULL, " ", &save));
                double got = s->raters[j].mean_offset;
                if (isnan(want))
                    cr_assert(isnan(got), "%s: offset of rater %d", name, j);
                else
                    cr_assert(fabs(got - want) <= 1e-9, "%s: offset of rater %d: %.15g vs %.15g",
                              name, j, got, want);
            }
        } else if (strcmp(kind, "rank") == 0) {
            int k = 0;
            for (char *tok; (tok = strtok_r(NULL, " ", &save)); k++) {
                cr_assert_lt(k, s->n_ranked, "%s: fewer ranked images than the reference", name);
                cr_assert_eq(s->ranked[k].item, atoi(tok), "%s: rank %d: image %d, want %s",
                             name, k, s->ranked[k].item, tok);
            }
            cr_assert_eq(k, s->n_ranked, "%s: ranked %d images, reference %d", name, s->n_ranked,
                         k);
        } else {
            cr_assert_fail(FIXTURE ":%d: unknown line '%s'", *line, kind);
        }
    }
    agreement_stats_free(s);
}

Test(agreement, matches_reference_implementations) {
    FILE *f = fopen(FIXTURE, "r");
    cr_assert_not_null(f, "cannot open " FIXTURE " (run make test from the repository root)");
    char buf[4096];
    int line = 0, n_tables = 0;
    while (fgets(buf, sizeof buf, f)) {
        line++;
        if (buf[0] == '#')
            continue;
        char name[64];
        int n, k;
        cr_assert_eq(sscanf(buf, "table %63s %d %d", name, &n, &k), 3, FIXTURE ":%d", line);
        AgreeTable *t = agreement_table_new(n, k);
        for (int i = 0; i < n; i++) {
            cr_assert_not_null(fgets(buf, sizeof buf, f));
            line++;
            buf[strcspn(buf, "\n")] = 0;
            char *save, *tok = strtok_r(buf, " ", &save);
            cr_assert_str_eq(tok, "row", FIXTURE ":%d", line);
            for (int j = 0; j < k; j++) {
                tok = strtok_r(NULL, " ", &save);
                cr_assert_not_null(tok, FIXTURE ":%d: short row", line);
                *agreement_cell(t, i, j) = parse_value(tok);
            }
        }
        check_table(name, t, f, &line);
        agreement_table_free(t);
        n_tables++;
    }
    fclose(f);
    cr_assert_geq(n_tables, 5);
}

/* Crowd data: many raters with a rating or two each (here 40000 raters on 30 images, 3 of
 * them on every image). The greedy search for the ICC block costs raters^2 x patterns; on
 * this table it ran for minutes (800k raters: hours, blocking `easel agreement` and F3).
 * It is bounded now: past a few hundred raters the patterns alone are the candidates. */
Test(agreement, many_raters_finish, .timeout = 20) {
    const int n = 30, k = 40000;
    AgreeTable *t = agreement_table_new(n, k);
    for (int j = 0; j < k; j++)
        for (int i = 0; i < n; i++)
            t->values[(size_t)i * k + j] = j < 3 || j % n == i ? (double)((i + j) % 11) : NA;
    AgreeStats *s = agreement_compute(t, NULL);
    cr_assert_gt(s->icc_n_items, 0);
    cr_assert_geq(s->icc_k, 2);
    cr_assert(isfinite(s->alpha));
    agreement_stats_free(s);
    agreement_table_free(t);
}
