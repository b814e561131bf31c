/* Tests for the one-row lookups of src/store (store_read_one) and the list frees
 * (store_free_list): each lookup finds its row, and a missing one is ERR_NOTFOUND with the
 * message its module words (what is missing, and where to look), out zeroed where the API says
 * so; every *_free takes NULL and empty lists. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store_catalog.h"
#include "store_models.h"
#include "store_ratings.h"
#include "store_runs.h"

static Store *st;

static void setup(void) {
    Err err = {0};
    st = store_open(":memory:", &err);
    cr_assert_not_null(st, "%s", err.msg);
}

static void teardown(void) { store_close(st); }

TestSuite(lookup, .init = setup, .fini = teardown);

Test(lookup, prompts_and_images) {
    Err err = {0};
    int64_t pid, iid;
    cr_assert_eq(store_prompt_add(st, "p1", "a red cube", &pid, NULL, &err), 0, "%s", err.msg);
    StoreImage im = {.prompt_id = pid, .path = "a/b.png"};
    cr_assert_eq(store_image_add(st, &im, &iid, &err), 0, "%s", err.msg);

    StorePrompt p;
    cr_assert_eq(store_prompt_get(st, pid, &p, &err), 0, "%s", err.msg);
    cr_assert_str_eq(p.ext_id, "p1");
    cr_assert_str_eq(p.text, "a red cube");
    store_prompt_deinit(&p);
    cr_assert_eq(store_prompt_by_ext(st, "p9", &p, &err), ERR_NOTFOUND);
    cr_assert_str_eq(err.msg, "p9: no such prompt");
    cr_assert_null(p.text, "left zeroed");

    StoreImage got;
    cr_assert_eq(store_image_get(st, iid, &got, &err), 0, "%s", err.msg);
    cr_assert_str_eq(got.path, "a/b.png");
    cr_assert_eq(got.prompt_id, pid);
    store_image_deinit(&got);
    cr_assert_eq(store_image_by_path(st, "x.png", &got, &err), ERR_NOTFOUND);
    cr_assert_str_eq(err.msg, "x.png: no such image");
    cr_assert_null(got.path, "left zeroed");
}

Test(lookup, annotators_ratings_models_runs) {
    Err err = {0};
    int64_t pid, iid, ann, found = -1;
    cr_assert_eq(store_prompt_add(st, "p1", "a red cube", &pid, NULL, &err), 0);
    StoreImage im = {.prompt_id = pid, .path = "a.png"};
    cr_assert_eq(store_image_add(st, &im, &iid, &err), 0);
    cr_assert_eq(store_annotator_ensure(st, "ann", &ann, &err), 0, "%s", err.msg);
    cr_assert_eq(store_annotator_find(st, "ann", &found, &err), 0, "%s", err.msg);
    cr_assert_eq(found, ann);
    cr_assert_eq(store_annotator_find(st, "bob", &found, &err), ERR_NOTFOUND);
    cr_assert_str_eq(err.msg, "no annotator named 'bob'");

    StoreAspect *asp;
    size_t na;
    cr_assert_eq(store_aspects_list(st, &asp, &na, &err), 0);
    cr_assert_geq(na, 2);
    cr_assert_eq(store_rating_add(st, iid, ann, asp[0].id, 7.5, NAN, "test", NULL, &err), 0,
                 "%s", err.msg);
    double v = 0;
    cr_assert_eq(store_rating_get(st, iid, ann, asp[0].id, &v, &err), 0, "%s", err.msg);
    cr_assert_float_eq(v, 7.5, 1e-12);
    cr_assert_eq(store_rating_get(st, iid, ann, asp[1].id, &v, &err), ERR_NOTFOUND);
    cr_assert_str_eq(err.msg, "not rated");
    store_aspects_free(asp, na);

    cr_assert_eq(store_model_add(st, "clip", "tiny", "/m/tiny", NULL, &err), 0, "%s", err.msg);
    StoreModel m;
    cr_assert_eq(store_model_get(st, "clip", "tiny", &m, &err), 0, "%s", err.msg);
    cr_assert_str_eq(m.path, "/m/tiny");
    store_model_deinit(&m);
    cr_assert_eq(store_model_get(st, "clip", "huge", &m, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "no clip model called 'huge' in ") &&
                  strstr(err.msg, "easel models add clip PATH --name huge"),
              "%s", err.msg);

    int64_t rid;
    cr_assert_eq(store_run_create(st, "r1", "train-reward", "{}", 0, "/out", &rid, &err), 0,
                 "%s", err.msg);
    StoreRun r = {0};
    cr_assert_eq(store_run_find(st, "r1", &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.id, rid);
    store_run_deinit(&r);
    cr_assert_eq(store_run_get(st, rid + 5, &r, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "no run #") && strstr(err.msg, "(see 'easel runs list')"), "%s",
              err.msg);
    cr_assert_eq(store_run_by_name(st, "r2", &r, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "no run 'r2' in "), "%s", err.msg);
}

Test(lookup, frees_take_null_and_empty_lists) {
    store_prompts_free(NULL, 3);
    store_images_free(NULL, 0);
    store_runs_free(NULL, 1);
    store_model_list_free(NULL, 0);
    StorePrompt *p;
    size_t n = 9;
    Err err = {0};
    cr_assert_eq(store_prompts_list(st, &p, &n, &err), 0);
    cr_assert_eq(n, 0);
    store_prompts_free(p, n);
    StoreAspect *asp;
    cr_assert_eq(store_aspects_list(st, &asp, &n, &err), 0);
    cr_assert_gt(n, 0);
    store_aspects_free(asp, n); /* frees names and rubrics: clean under SAN=1 */
}
