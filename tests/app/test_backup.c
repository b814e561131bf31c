/* Tests for backing up and restoring a store with the sqlite3 command-line tool, as
 * doc/backup.md describes: `.dump` piped into a new file, `.backup` and `VACUUM INTO` of a store
 * in use. Each copy opens with `easel status`, shows the same counts as the original, and
 * takes new ratings. The store is the demo's (data/), made with bin/easel. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "support_fixtures.h"

static char easel[4096], root[4096], dir[64], out[65536], orig_status[8192];

/* Run a shell command in DIR; stdout+stderr into out; returns the exit status. */
#define run(...) support_run_buf(dir, out, sizeof out, __VA_ARGS__)

/* `easel status` of DB without its first line (the store's path) into BUF. */
static void status_of(const char *db, char *buf, size_t n) {
    cr_assert_eq(run("%s --db %s status", easel, db), 0, "easel status of %s: %s", db, out);
    const char *body = strchr(out, '\n');
    cr_assert_not_null(body, "%s", out);
    snprintf(buf, n, "%s", body + 1);
}

static void setup(void) {
    support_easel_path(easel, sizeof easel);
    cr_assert_not_null(realpath(".", root));
    if (support_sh("command -v sqlite3 >/dev/null") != 0)
        cr_skip_test("the sqlite3 command-line tool is not installed (apt-get install sqlite3)");
    support_tmpdir_make(dir, sizeof dir, "backup");
    cr_assert_eq(run("%s --db live.db init && "
                     "%s --db live.db import prompts %s/data/prompts.csv && "
                     "%s --db live.db import images %s/data/images && "
                     "%s --db live.db import ratings %s/data/multihead_ratings.csv",
                     easel, easel, root, easel, root, easel, root),
                 0, "%s", out);
    status_of("live.db", orig_status, sizeof orig_status);
    cr_assert(strstr(orig_status, "ratings     929"), "%s", orig_status);
}

static void teardown(void) {
    support_tmpdir_remove(dir);
}

TestSuite(backup, .init = setup, .fini = teardown, .timeout = 60);

/* The copy DB shows the original's counts and takes a new rating. */
static void check_copy(const char *db) {
    char st[8192];
    status_of(db, st, sizeof st);
    cr_assert_str_eq(st, orig_status, "%s differs from the original", db);
    cr_assert_eq(run("printf 'prompt_id,image_path,spatial_rating,icono_rating,style_rating,"
                     "fidelity_rating,material_rating\\n0,%s/data/images/0/0.png,4,,,,\\n' "
                     "> new.csv && "
                     "%s --db %s import ratings new.csv --annotator dana",
                     root, easel, db),
                 0, "a restored store refused a new rating: %s", out);
    status_of(db, st, sizeof st);
    cr_assert(strstr(st, "ratings     930"), "%s", st);
}

Test(backup, a_dump_restored_with_the_sqlite3_cli_opens_with_its_counts) {
    cr_assert_eq(run("sqlite3 live.db .dump | sqlite3 restored.db"), 0, "%s", out);
    check_copy("restored.db");
}

Test(backup, dot_backup_of_a_store_in_use) {
    /* A reader holds the store open (and its WAL) while the backup is taken. */
    cr_assert_eq(run("{ echo 'BEGIN; SELECT count(*) FROM ratings;'; sleep 2; echo 'COMMIT;'; } | "
                     "sqlite3 live.db >/dev/null & sleep 0.5; sqlite3 live.db '.backup copy.db'; "
                     "rc=$?; wait; exit $rc"),
                 0, "%s", out);
    check_copy("copy.db");
}

Test(backup, vacuum_into) {
    cr_assert_eq(run("sqlite3 live.db \"VACUUM INTO 'vac.db'\""), 0, "%s", out);
    check_copy("vac.db");
}
