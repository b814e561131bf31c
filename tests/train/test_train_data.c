/* Tests for src/train/train_data.c: pair labels from ratings against hand-computed pairs (with
 * annotator means and min_rating_diff), and the deterministic split by prompt. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pairs.h"
#include "train.h"

static StoreRating R(int64_t prompt, int64_t img, int64_t annot, int aspect, double v) {
    StoreRating r = {0};
    r.prompt_id = prompt;
    r.image_id = img;
    r.annotator_id = annot;
    r.aspect_pos = aspect;
    r.value = v;
    r.seconds = NAN;
    return r;
}

Test(train_data, labels_from_ratings_hand_computed) {
    /* Prompt 1: images 10, 11, 12. Prompt 2: images 20, 21. Aspects 0..4.
     * Means over annotators (annotators 1 and 2):
     *   img 10: spatial (8+6)/2 = 7, icono 5, style 9, fidelity -, material 4
     *   img 11: spatial 7.4,         icono 5.5, style 2, fidelity 6, material 4.2
     *   img 12: spatial 3,           icono 5.4, style -, fidelity 1, material 9
     *   img 20: spatial 2; img 21: spatial 2.4
     * with min_rating_diff 0.5:
     *   (10,11): spatial |7-7.4|<.5 neutral; icono 5 vs 5.5 -> 11 preferred: 0;
     *            style 9 vs 2 -> 1; fidelity blank neutral; material neutral
     *   (10,12): spatial 7 vs 3 -> 1; icono 5 vs 5.4 neutral; style blank; fidelity blank;
     *            material 4 vs 9 -> 0
     *   (11,12): spatial 7.4 vs 3 -> 1; icono neutral; style blank; fidelity 6 vs 1 -> 1;
     *            material 4.2 vs 9 -> 0
     *   (20,21): only neutral -> dropped */
    StoreRating r[] = {
        R(1, 10, 1, 0, 8), R(1, 10, 2, 0, 6), R(1, 10, 1, 1, 5), R(1, 10, 1, 2, 9),
        R(1, 10, 1, 4, 4),
        R(1, 11, 1, 0, 7.4), R(1, 11, 1, 1, 5.5), R(1, 11, 2, 2, 2), R(1, 11, 1, 3, 6),
        R(1, 11, 1, 4, 4.2),
        R(1, 12, 1, 0, 3), R(1, 12, 1, 1, 5.4), R(1, 12, 1, 3, 1), R(1, 12, 2, 4, 9),
        R(2, 21, 1, 0, 2.4), R(2, 20, 1, 0, 2),
    };
    PairsMeans m;
    pairs_means_init(&m, r, sizeof r / sizeof r[0], TRAIN_N_HEADS, 0);
    Pair *p = NULL;
    size_t np = 0;
    pairs_derive(&m, 0.5, PAIRS_PER_ASPECT, &p, &np);
    TrainPair *t = NULL;
    size_t nt = 0;
    train_pairs_group(p, np, &t, &nt);
    cr_assert_eq(nt, 3);
    const float want[3][5] = {{0.5f, 0, 1, 0.5f, 0.5f}, {1, 0.5f, 0.5f, 0.5f, 0},
                              {1, 0.5f, 0.5f, 1, 0}};
    const int64_t ia[3] = {10, 10, 11}, ib[3] = {11, 12, 12};
    for (size_t i = 0; i < nt; i++) {
        cr_assert_eq(t[i].prompt_id, 1);
        cr_assert_eq(t[i].img_a, ia[i]);
        cr_assert_eq(t[i].img_b, ib[i]);
        float sum = 0;
        for (int h = 0; h < 5; h++) {
            cr_assert_float_eq(t[i].label[h], want[i][h], 1e-6, "pair %zu head %s: %f", i,
                               train_output_name(h), t[i].label[h]);
            sum += want[i][h];
        }
        cr_assert_float_eq(t[i].label_combined, sum / 5, 1e-6);
    }
    free(t);
    /* a larger min diff keeps only the big differences */
    free(p);
    pairs_derive(&m, 4.5, PAIRS_PER_ASPECT, &p, &np);
    train_pairs_group(p, np, &t, &nt);
    cr_assert_eq(nt, 3); /* style 7, material 5, spatial 4.4 -> no; fidelity 5 */
    cr_assert_float_eq(t[0].label[2], 1, 1e-6);
    cr_assert_float_eq(t[1].label[4], 0, 1e-6);
    cr_assert_float_eq(t[1].label[0], 0.5, 1e-6); /* 7 - 3 = 4 < 4.5 */
    cr_assert_float_eq(t[2].label[3], 1, 1e-6);
    free(t);
    free(p);
    /* with the combined pairs too: the heads are unchanged, the combined pair becomes
     * label_overall (what validation scores the combined output against) */
    pairs_derive(&m, 0.5, PAIRS_ALL, &p, &np);
    train_pairs_group(p, np, &t, &nt);
    cr_assert_eq(nt, 3);
    size_t n_comb = 0;
    for (size_t i = 0; i < np; i++) {
        if (p[i].aspect != PAIRS_COMBINED)
            continue;
        n_comb++;
        int64_t a = p[i].img_pos < p[i].img_neg ? p[i].img_pos : p[i].img_neg;
        int64_t b = p[i].img_pos < p[i].img_neg ? p[i].img_neg : p[i].img_pos;
        size_t k = 0;
        while (k < nt && !(t[k].img_a == a && t[k].img_b == b))
            k++;
        cr_assert_lt(k, nt, "the combined pair %lld/%lld has its head pairs", (long long)a,
                     (long long)b);
        cr_assert_float_eq(t[k].label_overall, p[i].img_pos == a ? 1.0f : 0.0f, 1e-6);
    }
    cr_assert_gt(n_comb, 0);
    for (size_t i = 0; i < nt; i++)
        for (int h = 0; h < 5; h++)
            cr_assert_float_eq(t[i].label[h], want[i][h], 1e-6);
    free(t);
    free(p);
    pairs_means_deinit(&m);
}

Test(train_data, split_by_prompt_is_deterministic) {
    int64_t ids[200];
    for (int i = 0; i < 200; i++)
        ids[i] = 1 + i % 40; /* 40 prompts, 5 items each, interleaved */
    uint8_t a[200], b[200], c[200];
    cr_assert_eq(train_split_prompts(ids, 200, 0.2, 42, a), 8);
    cr_assert_eq(train_split_prompts(ids, 200, 0.2, 42, b), 8);
    cr_assert_eq(memcmp(a, b, 200), 0);
    /* every item of a prompt is on the same side */
    for (int i = 0; i < 200; i++)
        cr_assert_eq(a[i], a[i % 40]);
    int n_val = 0;
    for (int i = 0; i < 40; i++)
        n_val += a[i];
    cr_assert_eq(n_val, 8);
    /* input order does not matter */
    int64_t rev[200];
    for (int i = 0; i < 200; i++)
        rev[i] = ids[199 - i];
    train_split_prompts(rev, 200, 0.2, 42, c);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(c[i], a[199 - i]);
    /* another seed, another split */
    train_split_prompts(ids, 200, 0.2, 43, c);
    cr_assert_neq(memcmp(a, c, 40), 0);
    /* small cases: two prompts keep one each side; one prompt keeps it in training */
    int64_t two[] = {5, 6, 5};
    uint8_t v2[3];
    cr_assert_eq(train_split_prompts(two, 3, 0.2, 1, v2), 1);
    cr_assert_eq(v2[0], v2[2]);
    cr_assert_neq(v2[0], v2[1]);
    int64_t one[] = {5, 5};
    cr_assert_eq(train_split_prompts(one, 2, 0.5, 1, v2), 0);
}
