/* Tests for retiring images (store_image_retire): a retired image leaves the annotate queue
 * and every list that feeds pairs, training, evaluation, scoring and export, keeps every
 * rating and pair, and comes back whole with unretire. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_annotate.h"
#include "store_catalog.h"
#include "store_pairs.h"
#include "store_ratings.h"

static Store *st;
static int64_t img[3], who, asp[5];

static void setup(void) {
    Err err = {0};
    st = store_open(":memory:", &err);
    cr_assert_not_null(st, "%s", err.msg);
    int64_t pid;
    cr_assert_eq(store_prompt_add(st, "1", "a cat", &pid, NULL, &err), 0);
    for (int i = 0; i < 3; i++) {
        char path[32];
        snprintf(path, sizeof path, "1/%d.png", i);
        StoreImage im = {.prompt_id = pid, .path = path};
        cr_assert_eq(store_image_add(st, &im, &img[i], &err), 0, "%s", err.msg);
    }
    cr_assert_eq(store_annotator_ensure(st, "alice", &who, &err), 0);
    StoreAspect *a;
    size_t na;
    cr_assert_eq(store_aspects_list(st, &a, &na, &err), 0);
    for (size_t k = 0; k < 5; k++)
        asp[k] = a[k].id;
    store_aspects_free(a, na);
    /* images 0 and 1 rated by alice; image 2 unrated */
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 5; k++)
            cr_assert_eq(store_rating_set(st, img[i], who, asp[k], 2.0 + 5 * i, NAN, "tui",
                                          NULL, &err),
                         0, "%s", err.msg);
    StorePair p = {.prompt_id = pid, .img_pos = img[1], .img_neg = img[0], .label = 1.0,
                   .aspect = "", .rating_pos = NAN, .rating_neg = NAN, .rating_diff = NAN};
    cr_assert_eq(store_pair_add(st, &p, NULL, &err), 0, "%s", err.msg);
}

static void teardown(void) { store_close(st); }

TestSuite(retire, .init = setup, .fini = teardown);

/* Ratings training sees; none of image NOT (0: no check). */
static size_t n_ratings_all(int64_t not) {
    StoreRating *r;
    size_t n;
    cr_assert_eq(store_ratings_all(st, &r, &n, NULL), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_neq(r[i].image_id, not, "a retired image's rating reached training");
    free(r);
    return n;
}

static size_t n_pairs(void) {
    StorePair *p;
    size_t n;
    cr_assert_eq(store_pairs_list(st, &p, &n, NULL), 0);
    store_pairs_free(p, n);
    return n;
}

static size_t n_images(void) {
    StoreImage *im;
    size_t n;
    cr_assert_eq(store_images_list(st, 0, &im, &n, NULL), 0);
    store_images_free(im, n);
    return n;
}

static int in_queue(int64_t annotator, int64_t id) {
    AnnotateQuery q = {.annotator_id = annotator, .overlap = 10};
    int64_t ids[16];
    int n = 0, found = 0, ok = 0;
    cr_assert_eq(store_annotate_queue(st, &q, NULL, 0, ids, 16, &n, NULL), 0);
    for (int i = 0; i < n; i++)
        found |= ids[i] == id;
    cr_assert_eq(store_annotate_eligible(st, &q, id, &ok, NULL), 0);
    cr_assert_eq(ok, found, "queue and eligibility disagree");
    return found;
}

Test(retire, retired_image_leaves_queue_training_and_pairs_and_comes_back) {
    int64_t bob;
    cr_assert_eq(store_annotator_ensure(st, "bob", &bob, NULL), 0);
    cr_assert(in_queue(bob, img[0]));
    cr_assert_eq(n_ratings_all(0), 10);
    cr_assert_eq(n_pairs(), 1);
    cr_assert_eq(n_images(), 3);

    Err err = {0};
    int changed = 0;
    cr_assert_eq(store_image_retire(st, img[0], 1, "carol", "corrupt file", &changed, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(changed, 1);
    cr_assert_not(in_queue(bob, img[0]));
    cr_assert(in_queue(bob, img[2]));
    cr_assert_eq(n_ratings_all(img[0]), 5);
    cr_assert_eq(n_pairs(), 0);
    cr_assert_eq(n_images(), 2);
    /* nothing was deleted */
    StoreRating *r;
    size_t n;
    cr_assert_eq(store_ratings_of_image(st, img[0], &r, &n, NULL), 0);
    cr_assert_eq(n, 5);
    free(r);
    StoreImage got;
    cr_assert_eq(store_image_get(st, img[0], &got, NULL), 0);
    cr_assert_eq(got.retired, 1);
    cr_assert_str_eq(got.retired_by, "carol");
    cr_assert_str_eq(got.retired_reason, "corrupt file");
    cr_assert_gt(got.retired_at, 0);
    store_image_deinit(&got);
    StoreCounts c;
    cr_assert_eq(store_counts(st, &c, NULL), 0);
    cr_assert_eq(c.images_retired, 1);
    cr_assert_eq(c.images, 3);
    cr_assert_eq(c.ratings, 10, "status still counts every rating kept");
    store_counts_deinit(&c);
    StoreImage *im;
    cr_assert_eq(store_images_select(st, STORE_IMAGES_RETIRED, &im, &n, NULL), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(im[0].id, img[0]);
    store_images_free(im, n);

    /* twice is a no-op */
    cr_assert_eq(store_image_retire(st, img[0], 1, "carol", NULL, &changed, &err), 0);
    cr_assert_eq(changed, 0);
    /* back: everything as before */
    cr_assert_eq(store_image_retire(st, img[0], 0, NULL, NULL, &changed, &err), 0);
    cr_assert_eq(changed, 1);
    cr_assert(in_queue(bob, img[0]));
    StoreRating *r2;
    cr_assert_eq(store_ratings_all(st, &r2, &n, NULL), 0);
    cr_assert_eq(n, 10);
    free(r2);
    cr_assert_eq(n_pairs(), 1);
    cr_assert_eq(store_image_get(st, img[0], &got, NULL), 0);
    cr_assert_eq(got.retired, 0);
    cr_assert_null(got.retired_reason);
    store_image_deinit(&got);
    cr_assert_eq(store_image_retire(st, 9999, 1, "x", NULL, NULL, &err), ERR_NOTFOUND);
}

Test(retire, pair_with_itself_or_the_opposite_is_refused_by_the_store) {
    Err err = {0};
    StorePair self = {.img_pos = img[2], .img_neg = img[2], .label = 1.0, .aspect = "",
                      .rating_pos = NAN, .rating_neg = NAN, .rating_diff = NAN};
    cr_assert_eq(store_pair_add(st, &self, NULL, &err), ERR_CONFLICT);
    StorePair opp = {.img_pos = img[0], .img_neg = img[1], .label = 1.0, .aspect = "",
                     .rating_pos = NAN, .rating_neg = NAN, .rating_diff = NAN};
    cr_assert_eq(store_pair_add(st, &opp, NULL, &err), ERR_CONFLICT);
    cr_assert(strstr(err.msg, "opposite") != NULL, "%s", err.msg);
    opp.aspect = "style"; /* another aspect may prefer the other image */
    cr_assert_eq(store_pair_add(st, &opp, NULL, &err), 0, "%s", err.msg);
}
