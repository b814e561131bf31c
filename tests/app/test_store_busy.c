/* store_set_busy_limit: a connection with a busy limit gets ERR_BUSY promptly while another
 * connection (another process, here another Store) holds the write lock, instead of waiting
 * for minutes; without the limit the default wait is unchanged; after the lock is released the
 * same write succeeds. The suite's timeout is what fails the test without the limit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "store.h"
#include "store_annotate.h"
#include "store_catalog.h"
#include "support.h"

static char dir[64];
static char db[128];
static Store *holder, *ui;

static void setup(void) {
    support_tmpdir_make(dir, sizeof dir, "busy");
    holder = support_store_open(dir, "s.db", db, sizeof db);
    support_sql_exec(db, "INSERT INTO prompts(id, ext_id, text, created_at) VALUES (1,'p1','a fox',0);"
        "INSERT INTO images(id, prompt_id, path, created_at) VALUES (1,1,'a.png',0);"
        "INSERT INTO annotators(id, name, created_at) VALUES (10,'x',0);");
    Err err = {0};
    ui = store_open_existing(db, &err);
    cr_assert_not_null(ui, "%s", err.msg);
}

static void teardown(void) {
    store_close(ui);
    store_close(holder);
    support_tmpdir_remove(dir);
}

TestSuite(store_busy, .init = setup, .fini = teardown, .timeout = 20);

Test(store_busy, a_limited_connection_gets_err_busy_and_saves_after_the_lock_goes) {
    store_set_busy_limit(ui, 100);
    Err err = {0};
    cr_assert_eq(store_begin(holder, &err), 0, "%s", err.msg); /* BEGIN IMMEDIATE: the lock */
    double v[ANNOTATE_ASPECTS] = {7, 7, 7, 7, 7};
    int written = 0;
    for (int i = 0; i < 3; i++) { /* every try answers, none waits for the holder */
        memset(&err, 0, sizeof err);
        cr_assert_eq(store_annotate_commit(ui, 1, 10, v, 3.0, &written, &err), ERR_BUSY,
                     "try %d: %s", i, err.msg);
        cr_assert_eq(err.code, ERR_BUSY);
    }
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM ratings"), 0.0);
    cr_assert_eq(store_commit(holder, &err), 0, "%s", err.msg);
    memset(&err, 0, sizeof err);
    cr_assert_eq(store_annotate_commit(ui, 1, 10, v, 3.0, &written, &err), 0, "%s", err.msg);
    cr_assert_eq(written, ANNOTATE_ASPECTS);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM ratings"), ANNOTATE_ASPECTS);
}

Test(store_busy, reads_are_not_blocked_and_the_default_is_restored) {
    store_set_busy_limit(ui, 50);
    Err err = {0};
    cr_assert_eq(store_begin(holder, &err), 0, "%s", err.msg);
    int64_t id = 0;
    /* a read of an existing annotator needs no write lock */
    cr_assert_eq(store_annotator_ensure(ui, "x", &id, &err), 0, "%s", err.msg);
    cr_assert_eq(id, 10);
    cr_assert_eq(store_begin(ui, &err), ERR_BUSY, "%s", err.msg);
    store_rollback(holder);
    store_set_busy_limit(ui, 0);
    cr_assert_eq(store_begin(ui, &err), 0, "%s", err.msg);
    store_rollback(ui);
}
