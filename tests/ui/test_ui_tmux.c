/* End-to-end test of the TUI as an annotator uses it: bin/easel in a tmux pane on a temporary
 * store, keys typed with `tmux send-keys`, the screen read with `capture-pane`, then the
 * process killed with SIGKILL and the store checked row by row.
 *
 * Skipped (with the reason) when tmux or bin/easel is missing. Waits poll the pane with a
 * generous deadline; nothing here measures time.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "support_fixtures.h"

static char dir[64];
static char sock[64];
static char easel[512];

static char *capture(void) {
    return support_tmux_capture(sock);
}

/* Wait until the pane shows TEXT (up to ~10 s); fails the test with the screen otherwise. */
static void wait_for(const char *text) {
    support_tmux_wait_for(sock, text);
}

/* The id of the image the Annotate panel shows, or -1. */
static int shown_image(void) {
    const char *p = strstr(capture(), "\xe2\x94\x82 image ");
    return p ? atoi(p + strlen("\xe2\x94\x82 image ")) : -1;
}

static void keys(const char *k) {
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e %s", sock, k), 0, "send-keys %s", k);
}

static double q(const char *sql) {
    char path[128];
    snprintf(path, sizeof path, "%s/t.db", dir);
    return support_sql_num(path, sql);
}

static void write_png(const char *name, int seed) {
    int w = 96, h = 96;
    unsigned char *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = px + ((size_t)y * w + x) * 3;
            p[0] = (unsigned char)(x * 2 + seed * 40);
            p[1] = (unsigned char)(y * 2);
            p[2] = (unsigned char)(seed * 60);
        }
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    support_png_write(path, w, h, px);
    free(px);
}

static void setup(void) {
    if (!support_have("tmux"))
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    support_easel_path(easel, sizeof easel);
    support_tmpdir_make(dir, sizeof dir, "tmux");
    snprintf(sock, sizeof sock, "easel-test-%d", (int)getpid());
    cr_assert_eq(support_sh("%s --db %s/t.db init >/dev/null", easel, dir), 0);
    write_png("a.png", 1);
    write_png("b.png", 2);
    write_png("d.png", 3);
    char bad[160];
    support_write_file(dir, "c.png", "this is not a png", bad, sizeof bad);
    cr_assert_eq(support_sh("sqlite3 %s/t.db \"INSERT INTO prompts(id, ext_id, text, created_at) VALUES"
                    " (1, 'p1', 'a red fox in the snow', 0);"
                    " INSERT INTO images(id, prompt_id, path, created_at) VALUES"
                    " (1,1,'a.png',0),(2,1,'b.png',0),(3,1,'c.png',0),(4,1,'d.png',0);\"",
                    dir),
                 0, "sqlite3 CLI needed (DEB_TEST)");
}

static void teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    support_tmpdir_remove(dir);
}

TestSuite(ui_tmux, .init = setup, .fini = teardown, .timeout = 60);

Test(ui_tmux, rate_undo_flag_kill9_keeps_exactly_the_committed_rows) {
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 100 -y 30 "
                    "'exec %s --db t.db annotate --annotator tester --graphics blocks --order id'",
                    dir, sock, easel);
    wait_for("image 1");
    wait_for("a red fox in the snow");
    /* the contract: 7 7 7 7 7 Enter stores 7 for all five aspects and shows the next image */
    keys("7 7 7 7 7 Enter");
    wait_for("saved image 1");
    wait_for("image 2");
    cr_assert_eq(q("SELECT count(*) FROM ratings r JOIN annotators a ON a.id = r.annotator_id"
                   " WHERE a.name = 'tester' AND image_id = 1 AND value = 7"), 5);

    keys("1 2 3 4 5 Enter");
    wait_for("saved image 2");
    wait_for("IMAGE CANNOT BE SHOWN"); /* image 3 is corrupt: a placeholder, still usable */
    wait_for("c.png");

    keys("f");
    wait_for("Flag:");
    keys("-l 'broken file'");
    keys("Enter");
    wait_for("flagged image 3");
    keys("s");
    wait_for("skipped image 3");
    wait_for("image 4");

    /* undo reopens image 2 with its values; change spatial 1 -> 9 and save again */
    keys("u");
    wait_for("reopened image 2");
    keys("9 Enter");
    wait_for("saved image 2 (1 value written)");

    /* image 3 comes back in the session history (b/n walk it); n moves on to image 4 */
    wait_for("image 3");
    keys("n");
    wait_for("image 4");
    /* edit image 4 without committing, then kill -9: nothing of it may reach the store */
    keys("8 8 8");
    wait_for("8    ");
    cr_assert_eq(support_sh("kill -9 $(tmux -L %s display -p -t e '#{pane_pid}')", sock), 0);

    cr_assert_eq(q("SELECT count(*) FROM ratings"), 10, "exactly images 1 and 2, five each");
    cr_assert_eq(q("SELECT count(*) FROM ratings WHERE image_id = 1 AND value = 7"), 5);
    cr_assert_eq(q("SELECT group_concat(value, ',') FROM (SELECT r.value FROM ratings r"
                   " JOIN aspects s ON s.id = r.aspect_id WHERE image_id = 2 ORDER BY s.position)"),
                 q("SELECT group_concat(v, ',') FROM (SELECT 9.0 AS v UNION ALL SELECT 2.0"
                   " UNION ALL SELECT 3.0 UNION ALL SELECT 4.0 UNION ALL SELECT 5.0)"));
    cr_assert_eq(q("SELECT sum(value) FROM ratings WHERE image_id = 2"), 23.0);
    cr_assert_eq(q("SELECT value FROM ratings r JOIN aspects s ON s.id = r.aspect_id"
                   " WHERE image_id = 2 AND s.name = 'spatial'"), 9.0);
    cr_assert_eq(q("SELECT count(*) FROM rating_history"), 1, "the edit kept the old value");
    cr_assert_eq(q("SELECT value FROM rating_history"), 1.0);
    cr_assert_eq(q("SELECT count(*) FROM ratings WHERE image_id IN (3, 4)"), 0);
    cr_assert_eq(q("SELECT count(*) FROM ratings WHERE source = 'tui' AND seconds >= 0"), 10,
                 "time spent recorded on every value");
    cr_assert_eq(q("SELECT count(*) FROM flags WHERE image_id = 3 AND comment = 'broken file'"
                   " AND annotator_id = (SELECT id FROM annotators WHERE name = 'tester')"),
                 1);
    cr_assert_eq(q("SELECT count(*) FROM flags"), 1);
}

Test(ui_tmux, help_overlay_quality_screen_and_quit) {
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 80 -y 24 "
                    "'%s --db t.db; echo EXITED; sleep 5'",
                    dir, sock, easel);
    wait_for("F2 Annotate");
    wait_for("F3 Quality");
    keys("'?'");
    wait_for("Annotate \xe2\x80\x94 keys");
    wait_for("set the selected aspect to 10");
    keys("Space");
    keys("Tab");
    wait_for("No ratings yet");
    keys("F2");
    wait_for("a red fox in the snow");
    int first = shown_image();
    cr_assert(first >= 1 && first <= 4, "%d", first);
    if (first == 3) { /* start from a readable image: the rest of the test opens 3 */
        keys("s");
        wait_for("skipped image 3");
        first = shown_image();
    }
    /* a terminal's late answer to the start-up probe must not type digits into the aspects */
    keys("Escape '[?62;4c'");
    keys("5");
    wait_for("spatial    5 ");
    wait_for("\xe2\x96\xb8" "2 icono      \xe2\x80\x93");
    /* g opens any image by id; b goes back (asking once about the unsaved 5) */
    keys("g");
    wait_for("unsaved changes");
    keys("g");
    wait_for("Go to image id:");
    keys("3 Enter");
    wait_for("IMAGE CANNOT BE SHOWN");
    keys("b");
    char want[32];
    snprintf(want, sizeof want, "image %d ", first);
    wait_for(want);
    keys("q");
    wait_for("EXITED");
}

Test(ui_tmux, quality_lists_disagreement_and_opens_it_for_review) {
    /* two annotators: they agree on images 1 and 2, disagree by 6 points on image 4 */
    cr_assert_eq(support_sh("sqlite3 %s/t.db \"INSERT INTO annotators(id, name, created_at) VALUES"
                    " (50, 'ann', 0), (51, 'bea', 0);"
                    " INSERT INTO ratings(image_id, annotator_id, aspect_id, value, created_at,"
                    " updated_at) SELECT i.column1, a.column1, s.id,"
                    " CASE WHEN i.column1 = 4 AND a.column1 = 51 THEN 9 WHEN i.column1 = 4"
                    " THEN 3 ELSE 5 + i.column1 END, 0, 0"
                    " FROM (VALUES (1), (2), (4)) i, (VALUES (50), (51)) a, aspects s;\"", dir),
                 0);
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 100 -y 30 "
                    "'%s --db t.db --help >/dev/null; exec %s --db t.db'",
                    dir, sock, easel, easel);
    wait_for("F3 Quality");
    keys("F3");
    wait_for("most disagreement (spatial)");
    wait_for("annotators (spatial)");
    wait_for("ann ");
    wait_for("bea ");
    /* image 4 (range 6) heads the list, selected */
    wait_for("\xe2\x96\xb8        4        2   6.00    6.0");
    /* the list widget (ui/list.h): j and End move the selection, Home brings it back */
    keys("j");
    wait_for("\xe2\x96\xb8        1        2");
    keys("End");
    wait_for("\xe2\x96\xb8        2        2");
    keys("Home");
    wait_for("\xe2\x96\xb8        4        2   6.00    6.0");
    keys("Right");
    wait_for("most disagreement (icono)");
    keys("Enter");
    wait_for("reviewing image 4");
    wait_for("\xe2\x94\x82 image 4 ");
    cr_assert_eq(shown_image(), 4);
}

Test(ui_tmux, too_small_terminal_says_so_and_ignores_keys_then_resizes) {
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 70 -y 20 "
                    "'exec %s --db t.db annotate --annotator small --order id'",
                    dir, sock, easel);
    wait_for("easel needs 80x24");
    keys("7 7");
    cr_assert_eq(support_sh("tmux -L %s resize-window -t e -x 100 -y 30", sock), 0);
    wait_for("\xe2\x94\x82 image 1 ");
    wait_for("\xe2\x96\xb8" "1 spatial    \xe2\x80\x93");
    keys("4");
    wait_for("spatial    4 ");
}
