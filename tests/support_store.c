/* support_store — temporary stores and direct SQL for the tests. See support.h.
 *
 * Direct SQL lets a test set up rows no public API writes (corrupt blobs, exact ids) and
 * check the file row by row; each call opens and closes its own connection.
 */
#include "support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

Store *support_store_open(const char *dir, const char *name, char *dbpath, size_t n) {
    char *path = xasprintf("%s/%s", dir, name);
    Err err = {0};
    Store *st = store_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    if (dbpath) {
        cr_assert(strlen(path) < n, "%s: path too long", path);
        strcpy(dbpath, path);
    }
    free(path);
    return st;
}

void support_sql_exec(const char *dbpath, const char *sql) {
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK, "%s", dbpath);
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg);
    sqlite3_close(db);
}

double support_sql_num(const char *dbpath, const char *sql) {
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK, "%s", dbpath);
    sqlite3_stmt *s;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW, "%s", sql);
    double v = sqlite3_column_type(s, 0) == SQLITE_NULL ? NAN : sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}
