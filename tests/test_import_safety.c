/* Tests for the importers' hardening (issue 13): one transaction or nothing when the disk
 * fills up, image paths that do not exist or do not decode, corrupt and symlinked image
 * files, inputs that are not regular files, NUL bytes and numbers that do not fit, pairs of
 * an image with itself and contradicting pairs, the same bytes under two paths, and ratings
 * whose prompts the store does not know yet. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "import.h"
#include "store_catalog.h"
#include "store_pairs.h"
#include "support.h"

#define FIX "tests/fixtures/import/"

static char tmpdir[64];
static char dbpath[160];
static Store *st;

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "impsafe");
    st = support_store_open(tmpdir, "ws.db", dbpath, sizeof dbpath);
}

static void teardown(void) {
    store_close(st);
    st = NULL;
    support_tmpdir_remove(tmpdir);
}

TestSuite(import_safety, .init = setup, .fini = teardown);

/* Every row of the tables an import may touch, as text: equal dumps = unchanged store. */
static char *dump_of(const char *db_path) {
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

static char *dump(void) { return dump_of(dbpath); }

__attribute__((unused)) static int64_t count(const char *sql) { return (int64_t)support_sql_num(dbpath, sql); }

__attribute__((unused)) static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static char *tpath(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int imp_opts(ImportKind kind, const char *path, int allow_missing, ImportReport *rep,
                    Err *err) {
    ImportOptions o = {.annotator = "tester", .allow_missing = allow_missing};
    return import_path(st, kind, path, &o, rep, err);
}

static void imp_ok(ImportKind kind, const char *path) {
    ImportReport rep;
    Err err = {0};
    int rc = imp_opts(kind, path, 0, &rep, &err);
    cr_assert_eq(rc, 0, "%s: %s", path, err.msg);
    import_report_deinit(&rep);
}

/* Import that must fail: returns the message (static), checks nothing changed. */
__attribute__((unused)) static const char *imp_fails(ImportKind kind, const char *path) {
    static Err err;
    memset(&err, 0, sizeof err);
    char *before = dump();
    ImportReport rep;
    int rc = imp_opts(kind, path, 0, &rep, &err);
    char *after = dump();
    cr_assert_neq(rc, 0, "%s was accepted", path);
    cr_assert_gt(rep.n_errors, 0);
    cr_assert_str_eq(before, after, "%s: a failed import changed the store", path);
    free(before);
    free(after);
    import_report_deinit(&rep);
    return err.msg;
}

/* A copy of the fixture images in TMPDIR/images and the prompts they belong to. */
__attribute__((unused)) static void prompts_and_images(void) {
    imp_ok(IMPORT_PROMPTS, FIX "prompts_good.csv");
    cr_assert_eq(support_sh("cp -r " FIX "images '%s/images'", tmpdir), 0);
}

/* ---- disk full: one transaction or nothing ------------------------------------------------- */

Test(import_safety, disk_full_leaves_the_store_unchanged_and_says_so) {
    char mnt[160];
    snprintf(mnt, sizeof mnt, "%s/small", tmpdir);
    cr_assert_eq(mkdir(mnt, 0755), 0);
    if (support_sh("mount -t tmpfs -o size=640k tmpfs '%s' 2>/dev/null", mnt) != 0)
        cr_skip_test("cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN)");
    char db[200];
    snprintf(db, sizeof db, "%s/full.db", mnt);
    Err err = {0};
    Store *s = store_open(db, &err);
    if (!s) {
        support_sh("umount '%s'", mnt);
        cr_assert_fail("%s", err.msg);
    }
    /* something in the store first, so "unchanged" means more than "empty" */
    ImportReport rep;
    int rc = import_path(s, IMPORT_PROMPTS, FIX "prompts_good.csv", NULL, &rep, &err);
    import_report_deinit(&rep);
    cr_assert_eq(rc, 0, "%s", err.msg);
    /* ~3 MB of prompts into a 640 KB file system */
    FILE *f = fopen(tpath("big.csv"), "w");
    fputs("prompt_id,prompt\n", f);
    for (int i = 0; i < 6000; i++) {
        fprintf(f, "big%d,", i);
        for (int k = 0; k < 500; k++)
            fputc('a' + (i + k) % 26, f);
        fputc('\n', f);
    }
    fclose(f);
    char *before = dump_of(db);
    rc = import_path(s, IMPORT_PROMPTS, tpath("big.csv"), NULL, &rep, &err);
    store_close(s);
    char *after = dump_of(db);
    support_sh("umount '%s'", mnt);
    cr_assert_neq(rc, 0, "an import larger than the disk succeeded");
    cr_assert(strstr(err.msg, "disk is full") != NULL, "the message hides the cause: %s",
              err.msg);
    cr_assert(strstr(err.msg, "nothing was imported") != NULL, "%s", err.msg);
    cr_assert_lt(rep.n_errors, 3, "bogus follow-up problems: %zu, first %s", rep.n_errors,
                 rep.n_errors ? rep.errors[0] : "");
    cr_assert_str_eq(before, after, "the failed import left rows in the store");
    import_report_deinit(&rep);
    free(before);
    free(after);
}
