/* Tests for the demo targets of the Makefile (`make demo`, `make run`, `make demo-reset`): the
 * demo store is built once and kept across rebuilds of bin/easel; only `make demo-reset`
 * discards it, after saying what it discards, and it keeps the old store as data/demo.db.bak.
 *
 * They run the real Makefile in a temporary copy holding the Makefile, the demo's inputs and
 * the built binary (as build/bin/easel, which `make -o` treats as up to date, so that nothing is
 * compiled): a "rebuild" is a new build/bin/easel, which the Makefile copies to bin/easel. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"
#include "support_fixtures.h"

static char easel[4096], root[4096], dir[64], db[256], out[65536];

/* Run a shell command in DIR; stdout+stderr into out; returns the exit status. */
#define run(...) support_run_buf(dir, out, sizeof out, __VA_ARGS__)

/* make in the copy, as a user runs it, outside any make that runs the tests. */
#define MAKE "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u SAN make --no-print-directory -o build/bin/easel "

static void setup(void) {
    support_easel_path(easel, sizeof easel);
    cr_assert_not_null(realpath(".", root));
    support_tmpdir_make(dir, sizeof dir, "makerun");
    snprintf(db, sizeof db, "%s/data/demo.db", dir);
    cr_assert_eq(run("mkdir -p build/bin data && cp '%s/Makefile' . && cp -r '%s/assets' . && "
                     "cp -r '%s/data/images' '%s/data/prompts.csv' '%s/data/multihead_ratings.csv' "
                     "data/ && cp '%s' build/bin/easel && touch build/.deps-ok",
                     root, root, root, root, root, easel),
                 0, "%s", out);
    cr_assert_eq(run(MAKE "demo"), 0, "%s", out);
    cr_assert(strstr(out, "demo workspace data/demo.db ready"), "%s", out);
}

static void teardown(void) {
    support_tmpdir_remove(dir);
}

TestSuite(make_run, .init = setup, .fini = teardown, .timeout = 120);

static double ratings_by(const char *who) {
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM ratings r JOIN annotators a ON a.id = "
                              "r.annotator_id WHERE a.name = '%s'", who);
    return support_sql_num(db, sql);
}

/* A rating made in the demo, by an annotator of its own. */
static void rate_in_demo(void) {
    cr_assert_eq(run("printf 'prompt_id,image_path,spatial_rating,icono_rating,style_rating,"
                     "fidelity_rating,material_rating\\n0,images/0/0.png,3,,,,\\n' "
                     "> data/mine.csv && "
                     "bin/easel --db data/demo.db import ratings data/mine.csv --annotator carol"),
                 0, "%s", out);
    cr_assert_eq(ratings_by("carol"), 1.0);
}

Test(make_run, a_rebuild_keeps_the_ratings_made_in_the_demo) {
    rate_in_demo();
    /* A rebuilt binary (different bytes, newer), then make demo and make run again. */
    cr_assert_eq(run("sleep 1; echo >> build/bin/easel"), 0, "%s", out);
    cr_assert_eq(run(MAKE "demo"), 0, "%s", out);
    cr_assert_eq(run("cmp build/bin/easel bin/easel"), 0, "bin/easel was not refreshed: %s", out);
    cr_assert_eq(ratings_by("carol"), 1.0, "make demo lost the rating made in the demo: %s", out);
    /* make run rebuilds what changed and opens the same store (dry run: it would start the TUI). */
    cr_assert_eq(run(MAKE "-n run"), 0, "%s", out);
    cr_assert(strstr(out, "bin/easel --db data/demo.db"), "%s", out);
    cr_assert_null(strstr(out, "rm -f"), "make run would remove something: %s", out);
    cr_assert_null(strstr(out, "init"), "make run would rebuild the store: %s", out);
    /* Nor do newer demo inputs rebuild it. */
    cr_assert_eq(run("touch data/prompts.csv data/multihead_ratings.csv && " MAKE "demo"), 0, "%s",
                 out);
    cr_assert_eq(ratings_by("carol"), 1.0, "%s", out);
}

Test(make_run, demo_reset_says_what_it_discards_and_keeps_a_copy) {
    rate_in_demo();
    double all = support_sql_num(db, "SELECT count(*) FROM ratings");
    cr_assert_eq(run(MAKE "demo-reset </dev/null"), 0, "%s", out);
    char want[128];
    snprintf(want, sizeof want, "discards data/demo.db (made in the demo: %.0f ratings, 0 runs, "
                                "0 jobs)", all);
    cr_assert(strstr(out, want), "want '%s' in: %s", want, out);
    cr_assert(strstr(out, "kept as data/demo.db.bak"), "%s", out);
    cr_assert(strstr(out, "demo workspace data/demo.db ready"), "%s", out);
    cr_assert_eq(ratings_by("carol"), 0.0, "demo-reset did not rebuild the store");
    char bak[300];
    snprintf(bak, sizeof bak, "%s.bak", db);
    cr_assert_eq(support_sql_num(bak, "SELECT count(*) FROM ratings"), all,
                 "the old store is not in data/demo.db.bak");
}

Test(make_run, install_puts_the_assets_where_the_installed_binary_finds_them) {
    cr_assert_eq(run(MAKE "install PREFIX=/opt/e DESTDIR=%s/inst", dir), 0, "%s", out);
    cr_assert_eq(run("test -x inst/opt/e/bin/easel && "
                     "test -f inst/opt/e/share/easel/themes/light.theme && "
                     "test -f inst/opt/e/share/easel/rubrics/spatial.txt && "
                     "test -f inst/opt/e/share/easel/help/annotate.txt"),
                 0, "%s", out);
    if (support_sh("command -v tmux >/dev/null") != 0)
        cr_skip_test("tmux is not installed: the installed TUI was not started");
    /* the installed binary, moved away from the build tree, finds ../share/easel */
    char sock[64];
    snprintf(sock, sizeof sock, "easel-makerun-%d", (int)getpid());
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 110 -y 50 'env -u "
                            "EASEL_ASSETS inst/opt/e/bin/easel --db data/demo.db --theme light; "
                            "echo exited $?; sleep 30'", dir, sock);
    support_tmux_wait_for(sock, "Annotate");
    support_sh("tmux -L %s send-keys -t e '?'", sock);
    support_tmux_wait_for(sock, "light, ");
    support_sh("tmux -L %s kill-server 2>/dev/null", sock);
}

/* `make fuzz` compiles the library with clang, which ignores `#pragma GCC target`: a file that
 * uses wider vector instructions under the pragma alone failed to build there (nn_clip.c's
 * AVX-512 kernel). Each such file must compile with clang as make fuzz compiles it. */
Test(make_fuzz, files_with_target_pragmas_compile_with_clang, .timeout = 120) {
    if (support_sh("command -v clang >/dev/null 2>&1") != 0)
        cr_skip_test("clang is not installed (make fuzz needs it)");
    char buf[8192];
    FILE *f = popen("inc=$(find src ui gpu -type d -printf '-I%p ' 2>/dev/null); n=0; "
                    "for f in $(grep -rl --include='*.c' 'pragma GCC target' src ui gpu); do "
                    "n=$((n+1)); clang -std=c11 -D_GNU_SOURCE -O1 $inc -I/usr/include/stb "
                    "$(pkg-config --cflags openblas 2>/dev/null) -c -o /dev/null $f 2>&1 | "
                    "grep -m1 error: && echo \"FAILED $f\"; done; echo checked $n", "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    pclose(f);
    cr_assert(strstr(buf, "checked") && !strstr(buf, "FAILED") && !strstr(buf, "checked 0"),
              "%s", buf);
}
