/* Tests for src/store/store.c: open, migrate, transactions, path forms, rating invariants. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "support.h"

static char tmpdir[64];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "test");
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

static int count(const char *path, const char *sql) {
    return (int)support_sql_num(path, sql);
}

TestSuite(store, .init = setup, .fini = teardown);

Test(store, creates_and_migrates_empty_file) {
    char path[128];
    snprintf(path, sizeof path, "%s/a.db", tmpdir);
    Err err = {0};
    Store *st = store_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    cr_assert_eq(store_version(st), store_schema_version());
    store_close(st);
    cr_assert_eq(count(path, "SELECT count(*) FROM aspects"), 5);
    cr_assert_eq(count(path, "PRAGMA user_version"), store_schema_version());
    /* opening again changes nothing */
    st = store_open(path, &err);
    cr_assert_not_null(st);
    store_close(st);
    cr_assert_eq(count(path, "SELECT count(*) FROM aspects"), 5);
}

Test(store, aspects_in_original_order) {
    char path[128];
    store_close(support_store_open(tmpdir, "a.db", path, sizeof path));
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db, "SELECT name FROM aspects ORDER BY position", -1, &s, NULL);
    const char *want[] = {"spatial", "icono", "style", "fidelity", "material"};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
        cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), want[i]);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
}

Test(store, refuses_non_sqlite_file_and_leaves_it) {
    char path[128];
    support_write_file(tmpdir, "junk.db",
                       "this is not a database, just some text that is long enough to matter\n",
                       path, sizeof path);
    Err err = {0};
    cr_assert_null(store_open(path, &err));
    cr_assert(strstr(err.msg, "not an easel store") != NULL, "%s", err.msg);
}

Test(store, refuses_newer_schema) {
    char path[128];
    snprintf(path, sizeof path, "%s/new.db", tmpdir);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL);
    sqlite3_close(db);
    Err err = {0};
    cr_assert_null(store_open(path, &err));
    cr_assert(strstr(err.msg, "newer") != NULL, "%s", err.msg);
}

Test(store, open_existing_does_not_create) {
    char path[128];
    snprintf(path, sizeof path, "%s/none.db", tmpdir);
    Err err = {0};
    cr_assert_null(store_open_existing(path, &err));
    cr_assert_eq(err.code, ERR_NOTFOUND);
    cr_assert_neq(access(path, F_OK), 0);
}

Test(store, ratings_keep_history_and_are_never_deleted) {
    char path[128];
    store_close(support_store_open(tmpdir, "r.db", path, sizeof path));
    sqlite3 *db;
    sqlite3_open(path, &db);
    const char *sql =
        "INSERT INTO prompts(ext_id,text,created_at) VALUES('0','a cat',0);"
        "INSERT INTO images(prompt_id,path,created_at) VALUES(1,'0/0.png',0);"
        "INSERT INTO annotators(name,created_at) VALUES('ann',0);"
        "INSERT INTO ratings(image_id,annotator_id,aspect_id,value,created_at,updated_at)"
        "  VALUES(1,1,1,7,1,1);"
        "UPDATE ratings SET value=8, updated_at=2 WHERE id=1;";
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_neq(sqlite3_exec(db, "DELETE FROM ratings", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_neq(sqlite3_exec(db, "UPDATE ratings SET value=11", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    cr_assert_eq(count(path, "SELECT count(*) FROM ratings"), 1);
    cr_assert_eq(count(path, "SELECT value FROM ratings"), 8);
    cr_assert_eq(count(path, "SELECT value FROM rating_history WHERE rating_id=1"), 7);
}

Test(store, nested_transactions_roll_back_whole) {
    Store *st = store_open(":memory:", NULL);
    cr_assert_not_null(st);
    cr_assert_eq(store_begin(st, NULL), 0);
    cr_assert_eq(store_begin(st, NULL), 0);
    store_rollback(st);
    Err err = {0};
    cr_assert_neq(store_commit(st, &err), 0);
    store_close(st);
}

Test(store, stored_paths_are_relative_inside_the_workspace) {
    char path[128], img[160];
    snprintf(path, sizeof path, "%s/ws.db", tmpdir);
    Store *st = store_open(path, NULL);
    cr_assert_not_null(st);
    snprintf(img, sizeof img, "%s/images/0/1.png", tmpdir);
    char *s = store_path_to_stored(st, img);
    cr_assert_str_eq(s, "images/0/1.png");
    char *r = store_path_resolve(st, s);
    cr_assert_str_eq(r, img);
    free(s);
    free(r);
    s = store_path_to_stored(st, "/elsewhere/../etc/x.png");
    cr_assert_str_eq(s, "/etc/x.png");
    free(s);
    store_close(st);
}
