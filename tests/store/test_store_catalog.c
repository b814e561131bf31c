/* Tests for src/store/store_catalog.c: prompts, images, annotators, aspects, counts; and the
 * one-row lookups and list frees of every store module (store_read_one, store_free_list). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store_catalog.h"
#include "store_models.h"
#include "store_pairs.h"
#include "store_ratings.h"
#include "store_runs.h"

static Store *st;

static void setup(void) {
    Err err = {0};
    st = store_open(":memory:", &err);
    cr_assert_not_null(st, "%s", err.msg);
}

static void teardown(void) { store_close(st); }

TestSuite(catalog, .init = setup, .fini = teardown);

Test(catalog, prompt_add_is_idempotent_and_refuses_new_text) {
    int64_t id1, id2;
    int added;
    Err err = {0};
    cr_assert_eq(store_prompt_add(st, "prompt_1", "a red cube", &id1, &added, &err), 0);
    cr_assert_eq(added, 1);
    cr_assert_eq(store_prompt_add(st, "prompt_1", "a red cube", &id2, &added, &err), 0);
    cr_assert_eq(added, 0);
    cr_assert_eq(id1, id2);
    cr_assert_eq(store_prompt_add(st, "prompt_1", "a blue cube", NULL, NULL, &err), ERR_CONFLICT);
    cr_assert(strstr(err.msg, "prompt_1") != NULL, "%s", err.msg);
    StorePrompt p;
    cr_assert_eq(store_prompt_by_ext(st, "prompt_1", &p, NULL), 0);
    cr_assert_str_eq(p.text, "a red cube");
    store_prompt_deinit(&p);
    cr_assert_eq(store_prompt_by_ext(st, "nope", &p, NULL), ERR_NOTFOUND);
    cr_assert_eq(store_prompt_by_text(st, "a red cube", &p, NULL), 0);
    cr_assert_eq(p.id, id1);
    store_prompt_deinit(&p);
}

Test(catalog, images_add_get_fill_list) {
    int64_t pid, iid;
    cr_assert_eq(store_prompt_add(st, "7", "x", &pid, NULL, NULL), 0);
    StoreImage img = {.path = "7/0.png", .missing = 1};
    Err err = {0};
    cr_assert_eq(store_image_add(st, &img, &iid, &err), 0, "%s", err.msg);
    cr_assert_eq(store_image_add(st, &img, NULL, &err), ERR_CONFLICT);
    StoreImage meta = {.prompt_id = pid, .has_seed = 1, .seed = 0, .width = 64, .height = 32,
                       .generator = "{\"steps\":50}"};
    int changed;
    cr_assert_eq(store_image_fill(st, iid, &meta, &changed, &err), 0, "%s", err.msg);
    cr_assert_eq(changed, 1);
    cr_assert_eq(store_image_fill(st, iid, &meta, &changed, &err), 0);
    cr_assert_eq(changed, 0);
    meta.seed = 5;
    cr_assert_eq(store_image_fill(st, iid, &meta, &changed, &err), ERR_CONFLICT);
    StoreImage got;
    cr_assert_eq(store_image_by_path(st, "7/0.png", &got, NULL), 0);
    cr_assert_eq(got.prompt_id, pid);
    cr_assert_eq(got.has_seed, 1);
    cr_assert_eq(got.seed, 0);
    cr_assert_eq(got.width, 64);
    cr_assert_eq(got.missing, 0);
    cr_assert_str_eq(got.generator, "{\"steps\":50}");
    store_image_deinit(&got);
    StoreImage *list;
    size_t n;
    cr_assert_eq(store_images_list(st, pid, &list, &n, NULL), 0);
    cr_assert_eq(n, 1);
    store_images_free(list, n);
    cr_assert_eq(store_images_list(st, 0, &list, &n, NULL), 0);
    cr_assert_eq(n, 1);
    store_images_free(list, n);
}

Test(catalog, annotators_and_aspects) {
    int64_t a, b;
    cr_assert_eq(store_annotator_ensure(st, "zoe", &a, NULL), 0);
    cr_assert_eq(store_annotator_ensure(st, "adam", &b, NULL), 0);
    int64_t a2;
    cr_assert_eq(store_annotator_ensure(st, "zoe", &a2, NULL), 0);
    cr_assert_eq(a, a2);
    cr_assert_eq(store_annotator_ensure(st, "", &a2, NULL), ERR_FORMAT);
    cr_assert_eq(store_annotator_find(st, "nobody", &a2, NULL), ERR_NOTFOUND);
    StoreAnnotator *an;
    size_t n;
    cr_assert_eq(store_annotators_list(st, &an, &n, NULL), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(an[0].name, "adam");
    store_annotators_free(an, n);
    StoreAspect *asp;
    cr_assert_eq(store_aspects_list(st, &asp, &n, NULL), 0);
    cr_assert_eq(n, 5);
    const char *want[] = {"spatial", "icono", "style", "fidelity", "material"};
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(asp[i].name, want[i]);
        cr_assert_eq(asp[i].position, (int)i);
    }
    store_aspects_free(asp, n);
    StoreCounts c;
    cr_assert_eq(store_counts(st, &c, NULL), 0);
    cr_assert_eq(c.annotators, 2);
    cr_assert_eq(c.n_aspects, 5);
    cr_assert_str_eq(c.aspects[4].name, "material");
    store_counts_deinit(&c);
}

Test(catalog, empty_prompt_text_is_filled_once) {
    int64_t id, id2;
    int added;
    Err err = {0};
    cr_assert_eq(store_prompt_add(st, "9", "", &id, &added, &err), 0, "%s", err.msg);
    cr_assert_eq(added, 1);
    cr_assert_eq(store_prompt_add(st, "9", "a green bird", &id2, &added, &err), 0, "%s", err.msg);
    cr_assert_eq(added, 0);
    cr_assert_eq(id, id2);
    StorePrompt p;
    cr_assert_eq(store_prompt_get(st, id, &p, NULL), 0);
    cr_assert_str_eq(p.text, "a green bird");
    store_prompt_deinit(&p);
    cr_assert_eq(store_prompt_add(st, "9", "a red bird", NULL, NULL, &err), ERR_CONFLICT);
    cr_assert_eq(store_prompt_add(st, "9", "", NULL, NULL, &err), ERR_CONFLICT);
}

Test(catalog, image_by_sha256_finds_the_first) {
    StoreImage a = {.path = "a.png", .sha256 = "ab"}, b = {.path = "b.png", .sha256 = "ab"};
    int64_t ia, ib;
    cr_assert_eq(store_image_add(st, &a, &ia, NULL), 0);
    cr_assert_eq(store_image_add(st, &b, &ib, NULL), 0);
    StoreImage got;
    cr_assert_eq(store_image_by_sha256(st, "ab", 0, &got, NULL), 0);
    cr_assert_eq(got.id, ia);
    store_image_deinit(&got);
    cr_assert_eq(store_image_by_sha256(st, "cd", 0, &got, NULL), ERR_NOTFOUND);
}

/* ---- one-row lookups (store_read_one) and list frees (store_free_list) -----------------------
 * Each lookup finds its row, and a missing one is ERR_NOTFOUND with the message its module words
 * (what is missing, and where to look), out zeroed where the API says so; every *_free takes
 * NULL and empty lists. */

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

Test(lookup, a_pair_added_again_is_nothing_or_a_conflict) {
    Err err = {0};
    int64_t pid, a, b;
    cr_assert_eq(store_prompt_add(st, "p1", "a red cube", &pid, NULL, &err), 0);
    StoreImage ia = {.prompt_id = pid, .path = "a.png"}, ib = {.prompt_id = pid, .path = "b.png"};
    cr_assert_eq(store_image_add(st, &ia, &a, &err), 0);
    cr_assert_eq(store_image_add(st, &ib, &b, &err), 0);
    StorePair p = {.prompt_id = pid, .img_pos = a, .img_neg = b, .label = 1.0, .aspect = "",
                   .rating_pos = NAN, .rating_neg = NAN, .rating_diff = NAN, .source = "t"};
    int added = -1;
    cr_assert_eq(store_pair_add(st, &p, &added, &err), 0, "%s", err.msg);
    cr_assert_eq(added, 1);
    cr_assert_eq(store_pair_add(st, &p, &added, &err), 0, "%s", err.msg);
    cr_assert_eq(added, 0, "the same pair again changes nothing");
    p.label = 0.75;
    cr_assert_eq(store_pair_add(st, &p, &added, &err), ERR_CONFLICT);
    cr_assert_str_eq(err.msg, "this pair is already in the store with label 1, not 0.75");
}
