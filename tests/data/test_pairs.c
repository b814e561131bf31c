/* Tests for src/data/pairs.c against labels computed by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "pairs.h"

static StoreRating R(int64_t prompt, int64_t img, int64_t ann, int pos, double v) {
    StoreRating r = {.image_id = img, .prompt_id = prompt, .annotator_id = ann,
                     .aspect_id = pos + 1, .aspect_pos = pos, .value = v, .seconds = NAN};
    return r;
}

/* Prompt 1: images 10 and 11; prompt 2: images 20, 21 and 22.
 *   img 10: spatial 8, style 5          img 11: spatial 6, style 5.2
 *   img 20: spatial 3 (ann 1) and 5 (ann 2) -> mean 4     img 21: spatial 4.4   img 22: blank
 * min_diff 0.5:
 *   (10,11) spatial: 8-6=2 -> pos 10, neg 11.  style: |5-5.2|=0.2 < 0.5 -> none.
 *           combined over {spatial, style}: 6.5 vs 5.6 -> pos 10, diff 0.9.
 *   (20,21) spatial 4 vs 4.4: 0.4 < 0.5 -> none; combined the same -> none.
 *   22 has no ratings: never paired. */
Test(pairs, hand_computed_labels) {
    StoreRating in[] = {R(1, 11, 1, 0, 6), R(1, 10, 1, 0, 8),  R(1, 10, 1, 2, 5),
                        R(1, 11, 1, 2, 5.2), R(2, 20, 1, 0, 3), R(2, 20, 2, 0, 5),
                        R(2, 21, 1, 0, 4.4)};
    PairsMeans m;
    pairs_means_init(&m, in, sizeof in / sizeof in[0], 5, 0);
    cr_assert_eq(m.n_images, 4);
    cr_assert_float_eq(m.mean[2 * 5 + 0], 4.0, 1e-12);
    cr_assert_eq(m.n_raters[2 * 5 + 0], 2);
    Pair *p;
    size_t n;
    pairs_derive(&m, 0.5, PAIRS_ALL, &p, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(p[0].aspect, 0);
    cr_assert_eq(p[0].img_pos, 10);
    cr_assert_eq(p[0].img_neg, 11);
    cr_assert_float_eq(p[0].label, 1.0, 0);
    cr_assert_float_eq(p[0].rating_pos, 8, 1e-12);
    cr_assert_float_eq(p[0].rating_neg, 6, 1e-12);
    cr_assert_float_eq(p[0].rating_diff, 2, 1e-12);
    cr_assert_eq(p[1].aspect, PAIRS_COMBINED);
    cr_assert_eq(p[1].img_pos, 10);
    cr_assert_float_eq(p[1].rating_diff, 0.9, 1e-9);
    free(p);
    /* min_diff 0.2 adds style (11 preferred: 5.2 > 5) and spatial of prompt 2 (21 > 20) */
    pairs_derive(&m, 0.2, PAIRS_PER_ASPECT, &p, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(p[1].aspect, 2);
    cr_assert_eq(p[1].img_pos, 11);
    cr_assert_eq(p[1].img_neg, 10);
    cr_assert_eq(p[2].img_pos, 21);
    cr_assert_eq(p[2].prompt_id, 2);
    free(p);
    pairs_means_deinit(&m);
}

/* The original labelled the better image 0 while putting it in img_pos. Every pair we emit
 * must have the higher rating on img_pos and label 1. */
Test(pairs, img_pos_is_always_preferred) {
    StoreRating in[] = {R(1, 1, 1, 0, 2), R(1, 2, 1, 0, 9), R(1, 3, 1, 0, 5)};
    PairsMeans m;
    pairs_means_init(&m, in, 3, 5, 0);
    Pair *p;
    size_t n;
    pairs_derive(&m, 0.5, PAIRS_PER_ASPECT, &p, &n);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        cr_assert_float_eq(p[i].label, 1.0, 0);
        cr_assert_gt(p[i].rating_pos, p[i].rating_neg);
        double vpos = p[i].img_pos == 1 ? 2 : p[i].img_pos == 2 ? 9 : 5;
        cr_assert_float_eq(vpos, p[i].rating_pos, 1e-12);
    }
    free(p);
    pairs_means_deinit(&m);
}

Test(pairs, exact_threshold_and_per_annotator) {
    StoreRating in[] = {R(1, 1, 1, 1, 7.0), R(1, 2, 1, 1, 7.5), R(1, 1, 2, 1, 9), R(1, 2, 2, 1, 1)};
    PairsMeans m;
    pairs_means_init(&m, in, 4, 5, 1);
    Pair *p;
    size_t n;
    pairs_derive(&m, 0.5, PAIRS_PER_ASPECT, &p, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(p[0].img_pos, 2);
    free(p);
    pairs_derive(&m, 0.0, PAIRS_PER_ASPECT, &p, &n);
    cr_assert_eq(n, 1);
    free(p);
    pairs_means_deinit(&m);
    pairs_means_init(&m, in, 4, 5, 0); /* means 8 vs 4.25 */
    pairs_derive(&m, 0.5, PAIRS_PER_ASPECT, &p, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(p[0].img_pos, 1);
    cr_assert_float_eq(p[0].rating_diff, 3.75, 1e-12);
    free(p);
    pairs_means_deinit(&m);
}
