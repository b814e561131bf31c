/* support_store — temporary stores and direct SQL for the tests. See support.h.
 *
 * Direct SQL lets a test set up rows no public API writes (corrupt blobs, exact ids) and
 * check the file row by row; each call opens and closes its own connection.
 */
#include "support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "jobkind.h"
#include "store_jobs.h"

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

char *support_import_dump(const char *db_path) {
    static const char *const tables[] = {"prompts", "images", "annotators", "ratings",
                                         "rating_history", "pairs"};
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY rowid", tables[t]);
        sqlite3_stmt *s;
        cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
        fprintf(f, "[%s]\n", tables[t]);
        while (sqlite3_step(s) == SQLITE_ROW) {
            for (int i = 0; i < sqlite3_column_count(s); i++) {
                const unsigned char *v = sqlite3_column_text(s, i);
                fprintf(f, "%s|", v ? (const char *)v : "NULL");
            }
            fputc('\n', f);
        }
        sqlite3_finalize(s);
    }
    fclose(f);
    sqlite3_close(db);
    return out;
}

int support_run_job(Store *st, const char *kind, int n, const char *const *names,
                    const char *const *values, int cancel, int64_t *id, Err *err) {
    const JobKind *k = jobkind_find(kind);
    cr_assert_not_null(k, "kind %s is not registered in the build", kind);
    JobParams *p;
    cr_assert_eq(job_params_parse(k, n, names, values, &p, err), 0, "%s", err->msg);
    char *json = job_params_to_json(p);
    JobNew jn = {.kind = kind, .params = json};
    cr_assert_eq(store_job_add(st, &jn, id, err), 0, "%s", err->msg);
    free(json);
    JobClaim c = {.worker = "h:1:t0", .host = "h", .pid = 1, .gpu_share = 1};
    JobRow r;
    cr_assert_eq(store_job_claim(st, &c, &r, err), 1);
    store_job_row_deinit(&r);
    atomic_int flag = cancel;
    JobCtx *ctx = job_ctx_new(st, *id, NULL, NULL, &flag);
    int rc = k->run(ctx, p, err);
    job_ctx_free(ctx);
    job_params_free(p);
    return rc;
}

const char *support_write_file(const char *dir, const char *name, const char *text, char *path,
                               size_t n) {
    int k = snprintf(path, n, "%s/%s", dir, name);
    cr_assert(k > 0 && (size_t)k < n, "path too long for its buffer");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot create %s", path);
    fputs(text, f);
    fclose(f);
    return path;
}
