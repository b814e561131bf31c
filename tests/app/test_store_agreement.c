/* Tests for src/store/store_agreement.c: the table built from a store matches the rows written. */
#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_agreement.h"
#include "support.h"

static char tmpdir[64];
static char dbpath[128];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "storeagree");
    snprintf(dbpath, sizeof dbpath, "%s/a.db", tmpdir);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(store_agreement, .init = setup, .fini = teardown);

/* Three images, annotators zoe, al, bo (inserted out of name order), style ratings:
 *   img 10: al 3, bo 7, zoe 4     img 11: al 6     img 12: bo 8, zoe 8
 * plus a fidelity rating that must not leak into style. */
static void fill(void) {
    support_sql_exec(dbpath, "INSERT INTO prompts(id, ext_id, text, created_at) VALUES (1, 'p1', 'a cat', 0);"
         "INSERT INTO images(id, prompt_id, path, created_at) VALUES"
         "  (12, 1, 'images/p1/2.png', 0), (10, 1, 'images/p1/0.png', 0),"
         "  (11, 1, 'images/p1/1.png', 0), (13, 1, 'images/p1/3.png', 0);"
         "INSERT INTO annotators(id, name, created_at) VALUES (1, 'zoe', 0), (2, 'al', 0),"
         "  (3, 'bo', 0), (4, 'unused', 0);"
         "WITH t(i, a, v) AS (VALUES"
         "  (10, 2, 3.0), (10, 3, 7.0), (10, 1, 4.0), (11, 2, 6.0), (12, 3, 8.0), (12, 1, 8.0))"
         " INSERT INTO ratings(image_id, annotator_id, aspect_id, value, created_at, updated_at)"
         "  SELECT i, a, (SELECT id FROM aspects WHERE name = 'style'), v, 0, 0 FROM t;");
    support_sql_exec(dbpath, "INSERT INTO ratings(image_id, annotator_id, aspect_id, value, created_at, updated_at)"
         "  VALUES (13, 4, (SELECT id FROM aspects WHERE name = 'fidelity'), 1, 0, 0)");
}

Test(store_agreement, table_from_store) {
    Err err = {0};
    Store *st = store_open(dbpath, &err);
    cr_assert_not_null(st, "%s", err.msg);
    fill();
    AgreeTable *t = store_agreement_table(st, "style", &err);
    cr_assert_not_null(t, "%s", err.msg);
    cr_assert_str_eq(t->aspect, "style");
    cr_assert_eq(t->n_items, 3);
    cr_assert_eq(t->n_raters, 3);
    cr_assert_str_eq(t->rater_names[0], "al");
    cr_assert_str_eq(t->rater_names[1], "bo");
    cr_assert_str_eq(t->rater_names[2], "zoe");
    cr_assert_eq(t->item_ids[0], 10);
    cr_assert_eq(t->item_ids[1], 11);
    cr_assert_eq(t->item_ids[2], 12);
    cr_assert_str_eq(t->item_labels[0], "images/p1/0.png");
    const double want[] = {3, 7, 4, 6, NAN, NAN, NAN, 8, 8};
    for (int i = 0; i < 9; i++) {
        if (isnan(want[i]))
            cr_assert(isnan(t->values[i]), "cell %d", i);
        else
            cr_assert_eq(t->values[i], want[i], "cell %d", i);
    }
    agreement_table_free(t);
    store_close(st);
}

Test(store_agreement, report_covers_every_aspect_in_order) {
    Store *st = store_open(dbpath, NULL);
    cr_assert_not_null(st);
    fill();
    Err err = {0};
    AgreeReport *r = store_agreement_report(st, NULL, NULL, &err);
    cr_assert_not_null(r, "%s", err.msg);
    cr_assert_eq(r->n, 5);
    cr_assert_str_eq(r->tables[0]->aspect, "spatial");
    cr_assert_str_eq(r->tables[2]->aspect, "style");
    cr_assert_eq(r->tables[0]->n_items, 0);
    cr_assert(isnan(r->stats[0]->alpha));
    cr_assert_eq(r->stats[2]->n_ratings, 6);
    cr_assert_eq(r->stats[2]->n_items_pairable, 2);
    cr_assert_eq(r->stats[2]->ranked[0].id, 10); /* range 4 */
    cr_assert_eq(r->stats[2]->n_high_disagree, 1);
    cr_assert_eq(r->tables[3]->n_items, 1);
    cr_assert_str_eq(r->tables[3]->rater_names[0], "unused");
    store_agreement_report_free(r);
    store_close(st);
}

Test(store_agreement, unknown_aspect_names_the_known_ones) {
    Store *st = store_open(dbpath, NULL);
    cr_assert_not_null(st);
    Err err = {0};
    cr_assert_null(store_agreement_table(st, "colour", &err));
    cr_assert_eq(err.code, ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "colour") && strstr(err.msg, "spatial, icono"), "%s", err.msg);
    AgreeReport *r = store_agreement_report(st, "colour", NULL, &err);
    cr_assert_null(r);
    store_close(st);
}
