/* Tests for the blind A/B sets (issue 16, ab16): src/store/store_ab.c (sets, the drawn
 * left/right order, judgements never lost, re-judging replaces one's own) and src/app/
 * ab_eval.c (a set from a tune-eval run's scores.csv; the results: win rates with ties
 * counted half, Wilson intervals, per annotator and pooled, agreement with the reward model).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab_eval.h"
#include "store.h"
#include "store_ab.h"
#include "store_catalog.h"
#include "support.h"

static char dir[64];
static char db[128];
static Store *st;

#define N_PAIRS 20 /* images 1..20 base, 21..40 adapter */

static void setup(void) {
    support_tmpdir_make(dir, sizeof dir, "storeab");
    st = support_store_open(dir, "s.db", db, sizeof db);
    char sql[256];
    support_sql_exec(db, "INSERT INTO prompts(id, ext_id, text, created_at) VALUES "
                         "(1, 'p1', 'a fox', 0);"
                         "INSERT INTO annotators(id, name, created_at) VALUES (10, 'alice', 0),"
                         "(11, 'bob', 0);");
    for (int i = 1; i <= 2 * N_PAIRS; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO images(id, prompt_id, path, seed, created_at) "
                 "VALUES (%d, 1, '%s/%d.png', %d, 0)", i, i <= N_PAIRS ? "base" : "adapter",
                 (i - 1) % N_PAIRS, (i - 1) % N_PAIRS);
        support_sql_exec(db, sql);
    }
}

static void teardown(void) {
    store_close(st);
    support_tmpdir_remove(dir);
}

TestSuite(store_ab, .init = setup, .fini = teardown);

/* Set NAME of the first N pairs (base i, adapter N_PAIRS + i), adapter = B. */
static int64_t make_set(const char *name, size_t n, uint64_t seed) {
    StoreAbItemNew items[N_PAIRS];
    memset(items, 0, sizeof items);
    for (size_t i = 0; i < n; i++) {
        items[i].image_a = (int64_t)i + 1;
        items[i].image_b = N_PAIRS + (int64_t)i + 1;
        items[i].adapter = 1;
    }
    int64_t id = 0;
    Err err = {0};
    cr_assert_eq(store_ab_set_create(st, name, 0, seed, items, n, &id, &err), 0, "%s", err.msg);
    return id;
}

/* Where the adapter's image is shown per item (0 left, 1 right), from the views alone. */
static void adapter_sides(int64_t set, int *side, size_t n) {
    StoreAbView *v = NULL;
    size_t nv = 0;
    Err err = {0};
    cr_assert_eq(store_ab_views(st, set, &v, &nv, &err), 0, "%s", err.msg);
    cr_assert_eq(nv, n);
    for (size_t i = 0; i < nv; i++) {
        cr_assert_eq(v[i].position, (int64_t)i);
        int left_is_adapter = v[i].left_image > N_PAIRS;
        cr_assert_neq(left_is_adapter, v[i].right_image > N_PAIRS, "one of each per item");
        /* both images of an item are of the same (prompt, seed) */
        cr_assert_eq((v[i].left_image - 1) % N_PAIRS, (v[i].right_image - 1) % N_PAIRS);
        cr_assert_str_eq(v[i].prompt, "a fox");
        cr_assert(strstr(v[i].left_path, left_is_adapter ? "adapter/" : "base/"));
        side[i] = !left_is_adapter;
    }
    store_ab_views_free(v, nv);
}

Test(store_ab, half_the_adapter_images_on_the_left_drawn_from_the_seed) {
    int a[N_PAIRS], b[N_PAIRS], c[N_PAIRS];
    adapter_sides(make_set("s1", N_PAIRS, 7), a, N_PAIRS);
    adapter_sides(make_set("s2", N_PAIRS, 7), b, N_PAIRS);
    adapter_sides(make_set("s3", N_PAIRS, 8), c, N_PAIRS);
    int left = 0, same_ab = 1, same_ac = 1;
    for (int i = 0; i < N_PAIRS; i++) {
        left += a[i] == 0;
        same_ab &= a[i] == b[i];
        same_ac &= a[i] == c[i];
    }
    cr_assert_eq(left, N_PAIRS / 2, "adapter on the left in %d of %d items", left, N_PAIRS);
    cr_assert(same_ab, "the same seed draws the same order");
    cr_assert(!same_ac, "another seed draws another order");
    /* an odd count: n / 2 on the left */
    int d[7];
    adapter_sides(make_set("odd", 7, 3), d, 7);
    int l7 = 0;
    for (int i = 0; i < 7; i++)
        l7 += d[i] == 0;
    cr_assert_eq(l7, 3);
}

Test(store_ab, list_and_find) {
    make_set("first", 3, 1);
    int64_t id = make_set("second", 5, 1);
    StoreAbSet *v = NULL;
    size_t n = 0;
    Err err = {0};
    cr_assert_eq(store_ab_sets_list(st, &v, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0].name, "second"); /* newest first */
    cr_assert_eq(v[0].items, 5);
    cr_assert_eq(v[1].items, 3);
    cr_assert_str_eq(v[0].run_name, "");
    store_ab_sets_free(v, n);
    StoreAbSet s;
    cr_assert_eq(store_ab_set_find(st, "second", &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.id, id);
    store_ab_set_deinit(&s);
    cr_assert_eq(store_ab_set_find(st, "nope", &s, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "no A/B set 'nope'"), "%s", err.msg);
}

Test(store_ab, bad_sets_are_refused_and_nothing_is_written) {
    make_set("taken", 2, 1);
    StoreAbItemNew items[2] = {{.image_a = 1, .image_b = 21, .adapter = 1},
                               {.image_a = 2, .image_b = 999, .adapter = 1}};
    Err err = {0};
    int64_t id;
    cr_assert_eq(store_ab_set_create(st, "taken", 0, 1, items, 1, &id, &err), ERR_CONFLICT);
    cr_assert(strstr(err.msg, "exists"), "%s", err.msg);
    cr_assert_eq(store_ab_set_create(st, "ghost", 0, 1, items, 2, &id, &err), ERR_CONFLICT);
    cr_assert(strstr(err.msg, "item 2"), "%s", err.msg);
    cr_assert_eq(store_ab_set_create(st, "", 0, 1, items, 1, &id, &err), ERR_USAGE);
    cr_assert_eq(store_ab_set_create(st, "empty", 0, 1, items, 0, &id, &err), ERR_USAGE);
    StoreAbItemNew same = {.image_a = 3, .image_b = 3, .adapter = 1};
    cr_assert_eq(store_ab_set_create(st, "same", 0, 1, &same, 1, &id, &err), ERR_USAGE);
    cr_assert_eq(store_ab_set_create(st, "norun", 12345, 1, items, 1, &id, &err), ERR_CONFLICT);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_sets"), 1);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_items"), 2);
}

static StoreAbChoice mine(int64_t set, int64_t annotator, int64_t item, const char *aspect) {
    StoreAbJudgement *j = NULL;
    size_t n = 0;
    Err err = {0};
    cr_assert_eq(store_ab_judgements(st, set, annotator, &j, &n, &err), 0, "%s", err.msg);
    StoreAbChoice c = STORE_AB_NONE;
    for (size_t i = 0; i < n; i++)
        if (j[i].item_id == item && strcmp(j[i].aspect, aspect) == 0)
            c = j[i].choice;
    store_ab_judgements_free(j, n);
    return c;
}

Test(store_ab, rejudging_replaces_ones_own_and_nothing_is_ever_lost) {
    int64_t set = make_set("j", 2, 1);
    StoreAbView *v = NULL;
    size_t n = 0;
    Err err = {0};
    cr_assert_eq(store_ab_views(st, set, &v, &n, &err), 0, "%s", err.msg);
    int64_t item = v[0].item_id;
    store_ab_views_free(v, n);
    cr_assert_eq(store_ab_judge(st, item, 10, "style", STORE_AB_LEFT, 1.5, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(store_ab_judge(st, item, 11, "style", STORE_AB_RIGHT, -1, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(store_ab_judge(st, item, 10, "", STORE_AB_TIE, 2, &err), 0, "%s", err.msg);
    /* alice changes her mind on style: bob's and her overall choice stay */
    cr_assert_eq(store_ab_judge(st, item, 10, "style", STORE_AB_RIGHT, 3, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(mine(set, 10, item, "style"), STORE_AB_RIGHT);
    cr_assert_eq(mine(set, 10, item, ""), STORE_AB_TIE);
    cr_assert_eq(mine(set, 11, item, "style"), STORE_AB_RIGHT);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_judgements"), 3);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_judgement_history WHERE "
                                     "choice = 'left'"), 1);
    /* the same choice again adds no history */
    cr_assert_eq(store_ab_judge(st, item, 10, "style", STORE_AB_RIGHT, 3, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_judgement_history"), 1);
    /* deletes are refused: of a judgement, and of an item or set that has judgements */
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_exec(h, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    cr_assert_neq(sqlite3_exec(h, "DELETE FROM ab_judgements", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_neq(sqlite3_exec(h, "DELETE FROM ab_items", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_judgements"), 3);
    /* bad input */
    cr_assert_eq(store_ab_judge(st, item, 10, "nose", STORE_AB_LEFT, 1, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "no aspect 'nose'"), "%s", err.msg);
    cr_assert_eq(store_ab_judge(st, item, 10, "", STORE_AB_NONE, 1, &err), ERR_USAGE);
    cr_assert_eq(store_ab_judge(st, 9999, 10, "", STORE_AB_LEFT, 1, &err), ERR_CONFLICT);
    cr_assert_eq(store_ab_judge(st, item, 99, "", STORE_AB_LEFT, 1, &err), ERR_CONFLICT);
}

/* ---- ab_eval ---- */

Test(store_ab, wilson_interval_matches_the_formula) {
    double lo, hi;
    /* 8 of 10: the textbook values (Wilson 1927; Newcombe 1998 table I: 0.4902, 0.9433) */
    ab_wilson(8, 10, &lo, &hi);
    cr_assert(fabs(lo - 0.4902) < 5e-5 && fabs(hi - 0.9433) < 5e-5, "%f %f", lo, hi);
    /* 0 of 10 (Newcombe: 0, 0.2775) */
    ab_wilson(0, 10, &lo, &hi);
    cr_assert(lo == 0 && fabs(hi - 0.2775) < 5e-5, "%f %f", lo, hi);
    /* symmetric around a half */
    ab_wilson(5, 10, &lo, &hi);
    cr_assert(fabs(lo + hi - 1) < 1e-12);
}

/* The item whose adapter image shows at SIDE (0 left, 1 right), the K-th such. */
static int64_t item_with_adapter(int64_t set, int side, int k) {
    StoreAbView *v = NULL;
    size_t n = 0;
    Err err = {0};
    cr_assert_eq(store_ab_views(st, set, &v, &n, &err), 0, "%s", err.msg);
    int64_t id = 0;
    for (size_t i = 0; i < n && !id; i++)
        if ((v[i].right_image > N_PAIRS) == side && k-- == 0)
            id = v[i].item_id;
    store_ab_views_free(v, n);
    cr_assert_neq(id, 0);
    return id;
}

static void judge(int64_t item, int64_t who, const char *aspect, StoreAbChoice c) {
    Err err = {0};
    cr_assert_eq(store_ab_judge(st, item, who, aspect, c, 1, &err), 0, "%s", err.msg);
}

/* scores.csv of a tune-eval run in DIR/ev with the first N pairs; the adapter scores higher
 * on "style" and "combined", lower on "spatial". */
static void write_eval(int n, const char *extra) {
    char path[256], file[300], text[8192];
    size_t k = (size_t)snprintf(text, sizeof text,
                                "prompt_id,seed,side,path,spatial,style,combined\n");
    for (int i = 0; i < n; i++) {
        k += (size_t)snprintf(text + k, sizeof text - k, "p1,%d,base,base/%d.png,0.5,0.1,0.2\n",
                              i, i);
        k += (size_t)snprintf(text + k, sizeof text - k,
                              "p1,%d,adapter,adapter/%d.png,0.25,0.9,0.3\n", i, i);
    }
    snprintf(text + k, sizeof text - k, "%s", extra);
    snprintf(path, sizeof path, "%s/ev", dir);
    support_sh("mkdir -p %s", path);
    support_write_file(path, "scores.csv", text, file, sizeof file);
    char sql[512];
    snprintf(sql, sizeof sql, "INSERT INTO runs(name, kind, state, output, created_at, "
             "updated_at) VALUES ('ev', 'tune-eval', 'succeeded', '%s/ev', 0, 0)", dir);
    support_sql_exec(db, sql);
}

Test(store_ab, a_set_from_a_tune_eval_run_and_its_results) {
    write_eval(4, "");
    Err err = {0};
    int64_t set;
    size_t n = 0;
    cr_assert_eq(ab_from_eval(st, "ev-ab", "ev", 5, &set, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 4);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_item_rewards"), 12);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_items WHERE image_a <= 20 AND "
                                     "image_b > 20 AND adapter = 'b'"), 4);
    int sides[4];
    adapter_sides(set, sides, 4);
    /* alice: style — adapter wins on both left-adapter items, tie on one right-adapter item,
     * loses on the other; overall — adapter wins once. bob: style — adapter loses once. */
    int64_t l0 = item_with_adapter(set, 0, 0), l1 = item_with_adapter(set, 0, 1);
    int64_t r0 = item_with_adapter(set, 1, 0), r1 = item_with_adapter(set, 1, 1);
    judge(l0, 10, "style", STORE_AB_LEFT);
    judge(l1, 10, "style", STORE_AB_LEFT);
    judge(r0, 10, "style", STORE_AB_TIE);
    judge(r1, 10, "style", STORE_AB_LEFT);
    judge(r1, 10, "", STORE_AB_RIGHT);
    judge(l0, 11, "style", STORE_AB_RIGHT);
    judge(l0, 11, "spatial", STORE_AB_RIGHT); /* bob prefers the base on spatial, as the model */
    AbResults r;
    cr_assert_eq(ab_results(st, "ev-ab", &r, &err), 0, "%s", err.msg);
    cr_assert_str_eq(r.run, "ev");
    cr_assert_eq(r.items, 4);
    cr_assert_eq(r.judgements, 7);
    cr_assert_eq(r.n_annotators, 2);
    cr_assert_str_eq(r.annotators[0], "alice");
    const AbRow *style = NULL, *overall = NULL, *spatial = NULL;
    for (size_t i = 0; i < r.n_rows; i++) {
        if (strcmp(r.rows[i].aspect, "style") == 0)
            style = &r.rows[i];
        if (strcmp(r.rows[i].aspect, "spatial") == 0)
            spatial = &r.rows[i];
        if (!r.rows[i].aspect[0])
            overall = &r.rows[i];
    }
    cr_assert(style && overall && spatial);
    /* alice: 1 + 1 + 0.5 + 0 of 4; bob: 0 of 1; pooled 2.5 of 5 */
    cr_assert_eq(style->per[0].n, 4);
    cr_assert_float_eq(style->per[0].rate, 2.5 / 4, 1e-12);
    cr_assert_eq(style->per[1].n, 1);
    cr_assert_float_eq(style->per[1].rate, 0, 1e-12);
    cr_assert_eq(style->pooled.n, 5);
    cr_assert_float_eq(style->pooled.rate, 0.5, 1e-12);
    double lo, hi;
    ab_wilson(2.5, 5, &lo, &hi);
    cr_assert_float_eq(style->pooled.lo, lo, 1e-12);
    cr_assert_float_eq(style->pooled.hi, hi, 1e-12);
    /* the reward model prefers the adapter on style: the non-tie judgements agree when the
     * human chose the adapter (alice l0, l1) and not otherwise (alice r1, bob l0) */
    cr_assert_eq(style->agree_n, 4);
    cr_assert_eq(style->agree, 2);
    /* spatial: the model prefers the base; bob too */
    cr_assert_eq(spatial->agree_n, 1);
    cr_assert_eq(spatial->agree, 1);
    cr_assert_float_eq(spatial->pooled.rate, 0, 1e-12);
    /* overall against "combined" (the adapter higher): alice chose the adapter */
    cr_assert_eq(overall->pooled.n, 1);
    cr_assert_float_eq(overall->pooled.rate, 1, 1e-12);
    cr_assert_eq(overall->agree, 1);
    char *js = ab_results_json(&r);
    cr_assert(strstr(js, "\"ties\": \"counted as half a win\""), "%s", js);
    cr_assert(strstr(js, "\"overall\""), "%s", js);
    free(js);
    ab_results_deinit(&r);
    /* the same name again: refused, nothing added */
    cr_assert_eq(ab_from_eval(st, "ev-ab", "ev", 5, &set, &n, &err), ERR_CONFLICT);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_items"), 4);
}

Test(store_ab, a_bad_scores_csv_is_refused_with_its_line_and_nothing_is_written) {
    write_eval(2, "p1,9,adapter,adapter/9.png,0.1,0.2,0.3\n"); /* no base line before it */
    Err err = {0};
    int64_t set;
    size_t n;
    cr_assert_eq(ab_from_eval(st, "bad", "ev", 1, &set, &n, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "scores.csv:6:"), "%s", err.msg);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_sets"), 0);
    /* not a tune-eval run */
    support_sql_exec(db, "INSERT INTO runs(name, kind, created_at, updated_at) VALUES "
                         "('tr', 'train-reward', 0, 0)");
    cr_assert_eq(ab_from_eval(st, "bad", "tr", 1, &set, &n, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "not a tune-eval run"), "%s", err.msg);
    cr_assert_eq(ab_from_eval(st, "bad", "nosuch", 1, &set, &n, &err), ERR_NOTFOUND);
}

Test(store_ab, an_image_not_in_the_store_is_named) {
    write_eval(1, "p1,7,base,base/7.png,0.1,0.2,0.3\np1,7,adapter,elsewhere/7.png,0.1,0.2,0.3\n");
    Err err = {0};
    int64_t set;
    size_t n;
    cr_assert_eq(ab_from_eval(st, "bad", "ev", 1, &set, &n, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "scores.csv:5: image elsewhere/7.png is not in the store"), "%s",
              err.msg);
    cr_assert_eq(support_sql_num(db, "SELECT COUNT(*) FROM ab_sets"), 0);
}
