/* Tests for src/store/store_annotate.c: the queue, commit in one transaction with history, flags,
 * progress, several annotators. */
#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "store_annotate.h"
#include "store_catalog.h"
#include "support.h"

static char dir[64];
static char db[128];
static Store *st;

static void setup(void) {
    support_tmpdir_make(dir, sizeof dir, "annot");
    st = support_store_open(dir, "s.db", db, sizeof db);
    /* 6 images: prompt p1 has 1..3, p2 has 4..6 */
    support_sql_exec(db, "INSERT INTO prompts(id, ext_id, text, created_at) VALUES (1,'p1','a fox',0),"
        "(2,'p2','a teapot',0);"
        "INSERT INTO images(id, prompt_id, path, created_at) VALUES (1,1,'a.png',0),"
        "(2,1,'b.png',0),(3,1,'c.png',0),(4,2,'d.png',0),(5,2,'e.png',0),(6,2,'f.png',0);"
        "INSERT INTO annotators(id, name, created_at) VALUES (10,'x',0),(11,'y',0);"
        /* image 2 rated by x and y, image 5 by x */
        "INSERT INTO ratings(image_id, annotator_id, aspect_id, value, created_at, updated_at)"
        " VALUES (2,10,1,5,0,0),(2,11,1,6,0,0),(5,10,1,3,0,0);");
}

static void teardown(void) {
    store_close(st);
    support_tmpdir_remove(dir);
}

TestSuite(store_annotate, .init = setup, .fini = teardown);

static int64_t me(const char *name) {
    int64_t id;
    Err err = {0};
    cr_assert_eq(store_annotator_ensure(st, name, &id, &err), 0, "%s", err.msg);
    return id;
}

Test(store_annotate, annotator_created_once) {
    int64_t a = me("alice"), b = me("alice");
    cr_assert_eq(a, b);
    cr_assert_eq(me("x"), 10);
}

Test(store_annotate, queue_fewest_first_skips_mine_and_full_images) {
    AnnotateQuery q = {.annotator_id = me("alice"), .overlap = 2};
    int64_t ids[10];
    int n;
    Err err = {0};
    cr_assert_eq(store_annotate_queue(st, &q, NULL, 0, ids, 10, &n, &err), 0, "%s", err.msg);
    /* image 2 has 2 raters = overlap: out; image 5 has 1: last; the unrated four first in an
     * order of this annotator's own */
    cr_assert_eq(n, 5);
    cr_assert_eq(ids[4], 5);
    int64_t seen_ids[4] = {0};
    for (int i = 0; i < 4; i++) {
        cr_assert(ids[i] == 1 || ids[i] == 3 || ids[i] == 4 || ids[i] == 6, "%lld", (long long)ids[i]);
        for (int j = 0; j < i; j++)
            cr_assert_neq(ids[i], seen_ids[j]);
        seen_ids[i] = ids[i];
    }
    /* another annotator gets the same images in another order */
    AnnotateQuery q2 = {.annotator_id = me("bob"), .overlap = 2};
    int64_t ids2[10];
    int n2;
    cr_assert_eq(store_annotate_queue(st, &q2, NULL, 0, ids2, 10, &n2, &err), 0);
    cr_assert_eq(n2, 5);
    cr_assert_eq(ids2[4], 5);
    int same = 1;
    for (int i = 0; i < 4; i++)
        same &= ids[i] == ids2[i];
    cr_assert_not(same, "two annotators start on different images");

    q.annotator_id = 10; /* x rated 2 and 5 */
    q.overlap = 3;
    cr_assert_eq(store_annotate_queue(st, &q, NULL, 0, ids, 10, &n, &err), 0);
    cr_assert_eq(n, 4);
    for (int i = 0; i < n; i++)
        cr_assert(ids[i] != 2 && ids[i] != 5);
}

Test(store_annotate, queue_filters_and_skip_list) {
    AnnotateQuery q = {.annotator_id = me("alice"), .prompt = "p2"};
    int64_t ids[10], skip[] = {4};
    int n;
    cr_assert_eq(store_annotate_queue(st, &q, skip, 1, ids, 10, &n, NULL), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], 6);
    cr_assert_eq(ids[1], 5);
    q.prompt = NULL;
    q.unrated_only = 1;
    cr_assert_eq(store_annotate_queue(st, &q, NULL, 0, ids, 10, &n, NULL), 0);
    cr_assert_eq(n, 4, "1, 3, 4, 6 have no rating at all");
    q.unrated_only = 0;
    q.order = ANNOTATE_ORDER_RANDOM;
    int64_t again[10];
    int n2;
    cr_assert_eq(store_annotate_queue(st, &q, NULL, 0, ids, 10, &n, NULL), 0);
    cr_assert_eq(store_annotate_queue(st, &q, NULL, 0, again, 10, &n2, NULL), 0);
    cr_assert_eq(n, 6);
    cr_assert_eq(n2, 6);
    cr_assert_arr_eq(ids, again, sizeof ids[0] * 6, "random order is stable");
    q.order = ANNOTATE_ORDER_ID;
    cr_assert_eq(store_annotate_queue(st, &q, NULL, 0, ids, 3, &n, NULL), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[2], 3);
}

Test(store_annotate, order_parse) {
    AnnotateOrder o;
    Err err = {0};
    cr_assert_eq(store_annotate_order_parse("prompt", &o, &err), 0);
    cr_assert_eq(o, ANNOTATE_ORDER_PROMPT);
    cr_assert_eq(store_annotate_order_parse("best", &o, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "fewest"));
}

Test(store_annotate, commit_all_aspects_then_edit_keeps_history) {
    int64_t a = me("alice");
    double v[5] = {7, 7, 7, 7, 7};
    int written = 0;
    Err err = {0};
    cr_assert_eq(store_annotate_commit(st, 3, a, v, 12.5, &written, &err), 0, "%s", err.msg);
    cr_assert_eq(written, 5);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM ratings WHERE image_id=3 AND value=7 AND "
                     "source='tui' AND seconds=12.5"), 5);
    AnnotateImage im;
    cr_assert_eq(store_annotate_image(st, 3, a, &im, &err), 0, "%s", err.msg);
    for (int k = 0; k < 5; k++)
        cr_assert_eq(im.mine[k], 7.0);
    cr_assert_str_eq(im.prompt, "a fox");
    cr_assert_str_eq(im.prompt_ext, "p1");
    cr_assert_eq(im.n_raters, 1);
    cr_assert(strstr(im.path, "/c.png"), "%s", im.path);
    store_annotate_image_deinit(&im);

    double e[5] = {7, 4.5, NAN, 7, 7};
    cr_assert_eq(store_annotate_commit(st, 3, a, e, 20, &written, &err), 0, "%s", err.msg);
    cr_assert_eq(written, 1, "only the changed value is written");
    cr_assert_eq(support_sql_num(db, "SELECT value FROM ratings WHERE image_id=3 AND aspect_id=2"), 4.5);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM rating_history"), 1);
    cr_assert_eq(support_sql_num(db, "SELECT value FROM rating_history"), 7.0);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM ratings WHERE image_id=3"), 5);
}

Test(store_annotate, commit_rejects_bad_values_and_writes_nothing) {
    int64_t a = me("alice");
    double v[5] = {7, 7, 11, 7, 7};
    Err err = {0};
    cr_assert_eq(store_annotate_commit(st, 1, a, v, 1, NULL, &err), ERR_FORMAT);
    double none[5] = {NAN, NAN, NAN, NAN, NAN};
    cr_assert_eq(store_annotate_commit(st, 1, a, none, 1, NULL, &err), ERR_USAGE);
    /* an unknown image violates the foreign key: the whole image rolls back */
    double ok[5] = {1, 2, 3, 4, 5};
    cr_assert_neq(store_annotate_commit(st, 99, a, ok, 1, NULL, &err), 0);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM ratings WHERE annotator_id != 10 AND "
                     "annotator_id != 11"), 0);
}

Test(store_annotate, flag_and_progress) {
    int64_t a = me("alice");
    Err err = {0};
    cr_assert_eq(store_annotate_flag(st, 4, a, "blurry face", &err), 0, "%s", err.msg);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM flags WHERE image_id=4 AND comment='blurry face'"), 1);
    AnnotateQuery q = {.annotator_id = a};
    AnnotateProgress p;
    cr_assert_eq(store_annotate_progress(st, &q, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(p.done, 0);
    cr_assert_eq(p.remaining, 6);
    double v[5] = {1, 2, 3, 4, 5};
    cr_assert_eq(store_annotate_commit(st, 1, a, v, 8, NULL, &err), 0);
    cr_assert_eq(store_annotate_commit(st, 4, a, v, 4, NULL, &err), 0);
    cr_assert_eq(store_annotate_progress(st, &q, &p, &err), 0);
    cr_assert_eq(p.done, 2);
    cr_assert_eq(p.remaining, 4);
    cr_assert_eq(p.last_hour, 2);
    cr_assert_float_eq(p.mean_seconds, 6.0, 1e-9);
    AnnotateImage im;
    cr_assert_eq(store_annotate_image(st, 4, a, &im, &err), 0);
    cr_assert_eq(im.n_my_flags, 1);
    store_annotate_image_deinit(&im);
    cr_assert_eq(store_annotate_image(st, 77, a, &im, &err), ERR_NOTFOUND);
}

Test(store_annotate, two_annotators_on_one_store) {
    Err err = {0};
    Store *st2 = store_open(db, &err);
    cr_assert_not_null(st2, "%s", err.msg);
    int64_t a = me("alice"), b;
    cr_assert_eq(store_annotator_ensure(st2, "bob", &b, &err), 0);
    AnnotateQuery qa = {.annotator_id = a, .overlap = 2}, qb = {.annotator_id = b, .overlap = 2};
    double v[5] = {5, 5, 5, 5, 5};
    cr_assert_eq(store_annotate_commit(st, 1, a, v, 1, NULL, &err), 0);
    int64_t ids[10];
    int n;
    cr_assert_eq(store_annotate_queue(st2, &qb, NULL, 0, ids, 10, &n, &err), 0);
    cr_assert_eq(n, 5);
    for (int i = 0; i < n; i++)
        if (ids[i] == 1)
            cr_assert_geq(i, 3, "bob's queue puts the image alice just rated behind unrated ones");
    cr_assert_eq(store_annotate_commit(st2, 1, b, v, 1, NULL, &err), 0);
    cr_assert_eq(store_annotate_queue(st, &qa, NULL, 0, ids, 10, &n, &err), 0);
    for (int i = 0; i < n; i++)
        cr_assert(ids[i] != 1);
    cr_assert_eq(support_sql_num(db, "SELECT count(DISTINCT annotator_id) FROM ratings WHERE image_id=1"), 2);
    store_close(st2);
}
