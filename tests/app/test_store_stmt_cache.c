/* The statement cache never finalizes a statement a caller may still be stepping: before,
 * the 129th distinct SQL string evicted the oldest cached statement, even mid-iteration. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>

#include "store.h"
#include "store_int.h"
#include "support.h"

static char dir[128];

TestSuite(store_stmt_cache, .init = NULL, .timeout = 30);

#define N_OTHER 300
static char other_sql[N_OTHER][48]; /* distinct addresses, as distinct SQL literals have */

Test(store_stmt_cache, a_statement_being_stepped_survives_many_others) {
    support_tmpdir_make(dir, sizeof dir, "stmtcache");
    Store *st = support_store_open(dir, "c.db", NULL, 0);
    Err err = {0};
    /* five aspects: step the first row, then prepare hundreds of other statements */
    static const char *walk = "SELECT name FROM aspects ORDER BY position";
    sqlite3_stmt *s = store_stmt(st, walk, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), "spatial");
    for (int i = 0; i < N_OTHER; i++) {
        snprintf(other_sql[i], sizeof other_sql[i], "SELECT %d + count(*) FROM aspects", i);
        sqlite3_stmt *o = store_stmt(st, other_sql[i], &err);
        cr_assert_not_null(o, "%s", err.msg);
        cr_assert_eq(sqlite3_step(o), SQLITE_ROW);
        cr_assert_eq(sqlite3_column_int(o, 0), i + 5);
        sqlite3_reset(o);
    }
    /* the first statement is still alive and where it was */
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), "icono");
    sqlite3_reset(s);
    /* and the same SQL pointer still gives the same cached statement */
    cr_assert_eq(store_stmt(st, walk, &err), s);
    store_close(st);
    support_tmpdir_remove(dir);
}
