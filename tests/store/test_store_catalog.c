/* Tests for src/store/store_catalog.c: prompts, images, annotators, aspects, counts. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "store_catalog.h"

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
