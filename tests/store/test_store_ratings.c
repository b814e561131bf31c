/* Tests for src/store/store_ratings.c: set keeps history, add never overwrites, reads. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store_catalog.h"
#include "store_ratings.h"

static Store *st;
static int64_t img1, img2, ann, asp[5];

static void setup(void) {
    Err err = {0};
    st = store_open(":memory:", &err);
    cr_assert_not_null(st, "%s", err.msg);
    int64_t pid;
    cr_assert_eq(store_prompt_add(st, "p", "t", &pid, NULL, NULL), 0);
    StoreImage a = {.prompt_id = pid, .path = "p/0.png"}, b = {.prompt_id = pid, .path = "p/1.png"};
    cr_assert_eq(store_image_add(st, &a, &img1, NULL), 0);
    cr_assert_eq(store_image_add(st, &b, &img2, NULL), 0);
    cr_assert_eq(store_annotator_ensure(st, "ann", &ann, NULL), 0);
    StoreAspect *as;
    size_t n;
    cr_assert_eq(store_aspects_list(st, &as, &n, NULL), 0);
    for (size_t i = 0; i < 5; i++)
        asp[i] = as[i].id;
    store_aspects_free(as, n);
}

static void teardown(void) { store_close(st); }

TestSuite(ratings, .init = setup, .fini = teardown);

Test(ratings, set_replaces_and_keeps_history) {
    int ch;
    cr_assert_eq(store_rating_set(st, img1, ann, asp[2], 7, 3.5, "tui", &ch, NULL), 0);
    cr_assert_eq(ch, 1);
    cr_assert_eq(store_rating_set(st, img1, ann, asp[2], 7, 1, "tui", &ch, NULL), 0);
    cr_assert_eq(ch, 0);
    cr_assert_eq(store_rating_set(st, img1, ann, asp[2], 8.5, NAN, "tui", &ch, NULL), 0);
    cr_assert_eq(ch, 1);
    double v;
    cr_assert_eq(store_rating_get(st, img1, ann, asp[2], &v, NULL), 0);
    cr_assert_float_eq(v, 8.5, 1e-12);
    StoreRatingEvent *ev;
    size_t n;
    cr_assert_eq(store_rating_history(st, img1, ann, asp[2], &ev, &n, NULL), 0);
    cr_assert_eq(n, 2);
    cr_assert_float_eq(ev[0].value, 7, 1e-12);
    cr_assert_float_eq(ev[0].seconds, 3.5, 1e-12);
    cr_assert_float_eq(ev[1].value, 8.5, 1e-12);
    cr_assert(isnan(ev[1].seconds));
    store_rating_events_free(ev, n);
}

Test(ratings, add_never_overwrites) {
    int added;
    Err err = {0};
    cr_assert_eq(store_rating_add(st, img1, ann, asp[0], 6, NAN, "import:x", &added, &err), 0);
    cr_assert_eq(added, 1);
    cr_assert_eq(store_rating_add(st, img1, ann, asp[0], 6, NAN, "import:x", &added, &err), 0);
    cr_assert_eq(added, 0);
    cr_assert_eq(store_rating_add(st, img1, ann, asp[0], 4, NAN, "import:y", &added, &err),
                 ERR_CONFLICT);
    cr_assert(strstr(err.msg, "TUI") != NULL, "%s", err.msg);
    double v;
    cr_assert_eq(store_rating_get(st, img1, ann, asp[0], &v, NULL), 0);
    cr_assert_float_eq(v, 6, 1e-12);
}

Test(ratings, rejects_out_of_range_and_unknown_ids) {
    cr_assert_eq(store_rating_set(st, img1, ann, asp[0], 10.5, NAN, "", NULL, NULL), ERR_FORMAT);
    cr_assert_eq(store_rating_set(st, img1, ann, asp[0], -0.1, NAN, "", NULL, NULL), ERR_FORMAT);
    cr_assert_eq(store_rating_set(st, img1, ann, asp[0], NAN, NAN, "", NULL, NULL), ERR_FORMAT);
    cr_assert_eq(store_rating_set(st, 999, ann, asp[0], 5, NAN, "", NULL, NULL), ERR_CONFLICT);
}

Test(ratings, read_all_in_order_with_positions) {
    cr_assert_eq(store_rating_set(st, img2, ann, asp[4], 1, NAN, "", NULL, NULL), 0);
    cr_assert_eq(store_rating_set(st, img1, ann, asp[3], 2, NAN, "", NULL, NULL), 0);
    cr_assert_eq(store_rating_set(st, img1, ann, asp[0], 3, NAN, "", NULL, NULL), 0);
    StoreRating *r;
    size_t n;
    cr_assert_eq(store_ratings_all(st, &r, &n, NULL), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(r[0].image_id, img1);
    cr_assert_eq(r[0].aspect_pos, 0);
    cr_assert_float_eq(r[0].value, 3, 1e-12);
    cr_assert_eq(r[1].aspect_pos, 3);
    cr_assert_eq(r[2].image_id, img2);
    cr_assert_eq(r[2].aspect_pos, 4);
    cr_assert_neq(r[2].prompt_id, 0);
    free(r);
    cr_assert_eq(store_ratings_of_image(st, img1, &r, &n, NULL), 0);
    cr_assert_eq(n, 2);
    free(r);
}
