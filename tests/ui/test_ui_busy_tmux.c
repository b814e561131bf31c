/* The TUI while another process holds the store's write lock (sqlite3's BEGIN IMMEDIATE in a
 * second tmux window): saving says "waiting for the store" at once, keys keep working, moving
 * on waits, q asks, and the rating is saved as soon as the lock goes; Esc stops trying and
 * keeps the values on screen. bin/easel in tmux, as an annotator uses it.
 *
 * Skipped (with the reason) when tmux, sqlite3 or bin/easel is missing. The give-up test needs
 * a shorter wait than the TUI's 30 s, so this binary has its own main(): run with
 * EASEL_TEST_TUI_DB=PATH it becomes the TUI on that store with AppConfig.store_wait_s = 2. */
#include <criterion/criterion.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "base.h"
#include "support.h"
#include "support_fixtures.h"

static char dir[64];
static char sock[64];
static char easel[512];
static char db[128];

static void keys(const char *win, const char *k) {
    cr_assert_eq(support_sh("tmux -L %s send-keys -t %s %s", sock, win, k), 0, "send-keys %s", k);
}

static void wait_for(const char *text) { support_tmux_wait_for(sock, text); }

/* Wait (up to TRIES x 50 ms) until the pane no longer shows TEXT. */
static void wait_gone_within(const char *text, int tries) {
    for (int i = 0; i < tries; i++) {
        if (!strstr(support_tmux_capture(sock), text))
            return;
        usleep(50000);
    }
    cr_assert_fail("still shown: %s\n%s", text, support_tmux_capture(sock));
}

static void wait_gone(const char *text) { wait_gone_within(text, 200); }

static double ratings(void) { return support_sql_num(db, "SELECT count(*) FROM ratings"); }

/* Hold the write lock from sqlite3 in window "lock" until release_lock(). */
static void hold_lock(void) {
    cr_assert_eq(support_sh("tmux -L %s new-window -d -n lock 'sqlite3 %s'", sock, db), 0);
    keys("lock", "'BEGIN IMMEDIATE\\;' Enter");
    for (int i = 0; i < 200; i++) { /* until another connection finds the store locked */
        if (support_sh("sqlite3 -cmd '.timeout 0' %s 'BEGIN IMMEDIATE; ROLLBACK;' "
                       ">/dev/null 2>&1", db) != 0)
            return;
        usleep(50000);
    }
    cr_assert_fail("sqlite3 did not take the lock");
}

static void release_lock(void) { keys("lock", "'COMMIT\\;' Enter"); }

static void setup(void) {
    if (support_sh("command -v tmux >/dev/null && command -v sqlite3 >/dev/null") != 0)
        cr_skip_test("tmux or sqlite3 is not installed (the Makefile's DEB_TEST installs them)");
    const char *bin = getenv("EASEL_BIN");
    if (!realpath(bin ? bin : "bin/easel", easel))
        cr_skip_test("bin/easel not found (run from the repository root after make)");
    support_tmpdir_make(dir, sizeof dir, "busytmux");
    snprintf(sock, sizeof sock, "easel-busy-%d", (int)getpid());
    snprintf(db, sizeof db, "%s/t.db", dir);
    cr_assert_eq(support_sh("%s --db %s init >/dev/null", easel, db), 0);
    support_sql_exec(db, "INSERT INTO prompts(id, ext_id, text, created_at) VALUES"
                         " (1, 'p1', 'a red fox in the snow', 0);"
                         "INSERT INTO images(id, prompt_id, path, created_at) VALUES"
                         " (1,1,'a.png',0),(2,1,'b.png',0),(3,1,'c.png',0),(4,1,'d.png',0);");
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 100 -y 30 "
                            "'exec %s --db t.db annotate --annotator tester --graphics none "
                            "--order id'", dir, sock, easel);
    wait_for("image 1");
}

static void teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    if (dir[0])
        support_tmpdir_remove(dir);
}

TestSuite(ui_busy_tmux, .init = setup, .fini = teardown, .timeout = 60);

Test(ui_busy_tmux, save_waits_for_the_lock_without_freezing_and_lands_after_it) {
    hold_lock();
    keys("e:0", "7 7 7 7 7 Enter");
    wait_for("waiting for the store: another process is writing");
    cr_assert_eq(ratings(), 0.0);
    /* the loop still answers: the help overlay opens and closes */
    keys("e:0", "?");
    wait_for("Annotate \xe2\x80\x94 keys");
    keys("e:0", "Space");
    wait_gone("Annotate \xe2\x80\x94 keys");
    /* moving on waits for the save; the values may still change (the last aspect to 8) */
    keys("e:0", "n");
    wait_for("still saving image 1");
    keys("e:0", "8");
    /* q asks: quitting now would lose the rating; Esc stays */
    keys("e:0", "q");
    wait_for("image 1 is not saved yet");
    keys("e:0", "Escape");
    wait_gone("image 1 is not saved yet");
    cr_assert_eq(ratings(), 0.0);
    release_lock();
    wait_for("saved image 1");
    wait_for("image 2");
    cr_assert_eq(ratings(), 5.0);
    cr_assert_eq(support_sql_num(db, "SELECT value FROM ratings r JOIN aspects a ON a.id = "
                                     "r.aspect_id WHERE a.name = 'material'"), 8.0);
    cr_assert_eq(support_sql_num(db, "SELECT sum(value) FROM ratings"), 36.0);
}

Test(ui_busy_tmux, esc_stops_trying_and_keeps_the_values_then_enter_saves) {
    hold_lock();
    keys("e:0", "3 4 5 6 7 Enter");
    wait_for("waiting for the store");
    keys("e:0", "Escape");
    wait_for("stopped trying: image 1 is not saved; your values are still here");
    /* the values are still on the screen, unsaved */
    const char *s = support_tmux_capture(sock);
    cr_assert(strstr(s, "image 1"), "%s", s);
    cr_assert(strstr(s, "(edited)") == NULL && strstr(s, "7"), "%s", s);
    cr_assert_eq(ratings(), 0.0);
    release_lock();
    usleep(300000);
    cr_assert_eq(ratings(), 0.0, "Esc stopped the retries");
    keys("e:0", "Enter");
    wait_for("saved image 1");
    cr_assert_eq(ratings(), 5.0);
    cr_assert_eq(support_sql_num(db, "SELECT sum(value) FROM ratings"), 25.0);
}

/* Values set but not saved (no Enter yet, or a save that gave up) are not dropped by q: it
 * asks, as moving to another image does; Esc stays with the values, q again quits without. */
Test(ui_busy_tmux, q_asks_before_dropping_values_not_saved) {
    keys("e:0", "3 4");
    keys("e:0", "q");
    wait_for("image 1 has values you have not saved");
    keys("e:0", "Escape");
    wait_gone("image 1 has values you have not saved");
    cr_assert_eq(support_sh("tmux -L %s has-session -t e 2>/dev/null", sock), 0,
                 "q quit with unsaved values");
    keys("e:0", "Enter Enter"); /* 2 of 5 aspects: Enter twice saves those */
    wait_for("saved image 1");
    cr_assert_eq(ratings(), 2.0);
    /* nothing unsaved: q quits at once */
    keys("e:0", "q");
    for (int i = 0; i < 100 && support_sh("tmux -L %s has-session -t e 2>/dev/null", sock) == 0;
         i++)
        usleep(50000);
    cr_assert_neq(support_sh("tmux -L %s has-session -t e 2>/dev/null", sock), 0,
                  "q with nothing unsaved did not quit");
}

/* The status line and the progress line after a few saves: a message about one image goes
 * when another image (or screen) is shown; pace and time per image come from this session's
 * saves at once, not "–/h" and "0 s/image" until the next queue read. */
Test(ui_busy_tmux, messages_go_when_moving_on_and_pace_shows_after_saves) {
    keys("e:0", "5 5 5 5 5 Enter");
    wait_for("saved image 1");
    wait_for("image 2");
    keys("e:0", "6 6 6 6 6 Enter");
    wait_for("saved image 2");
    keys("e:0", "7 7 7 7 7 Enter");
    wait_for("saved image 3");
    const char *s = support_tmux_capture(sock);
    const char *pace = strstr(s, "pace ");
    cr_assert(pace && pace[5] >= '1' && pace[5] <= '9', "pace after three saves:\n%s", s);
    cr_assert(!strstr(s, " 0 s/image"), "time per image after three saves:\n%s", s);
    cr_assert(strstr(s, " s/image"), "%s", s);
    /* back to image 3: the message about saving it is stale there */
    keys("e:0", "b");
    wait_for("image 3  prompt");
    /* well before the message's own 4 s are up */
    wait_gone_within("saved image 3", 30);
    /* a message on another screen goes when the screen changes */
    keys("e:0", "s");
    wait_for("skipped image");
    keys("e:0", "F3");
    wait_gone_within("skipped image", 30);
}

/* The title bar: screens in F-key order, and who you are (the annotator, and the Unix login
 * when it differs), also on an 80-column terminal where the store's path gives way. */
Test(ui_busy_tmux, title_bar_keys_in_order_and_who_you_are) {
    struct passwd *pw = getpwuid(getuid());
    cr_assert_not_null(pw);
    char who[128];
    if (strcmp(pw->pw_name, "tester") != 0)
        snprintf(who, sizeof who, "tester (login %s)", pw->pw_name);
    else
        snprintf(who, sizeof who, "tester");
    wait_for(who);
    char *s = support_tmux_capture(sock);
    const char *keys_in_order[] = {"F2 ", "F3 ", "F4 ", "F5 ", "F6 "};
    const char *prev = s;
    for (int i = 0; i < 5; i++) {
        const char *k = strstr(s, keys_in_order[i]);
        cr_assert(k && k >= prev, "%s out of order:\n%s", keys_in_order[i], s);
        prev = k;
    }
    cr_assert_eq(support_sh("tmux -L %s resize-window -t e -x 80 -y 24", sock), 0);
    for (int i = 0; i < 100; i++) { /* redrawn at 80 columns: the store's path gives way */
        s = support_tmux_capture(sock);
        if (!strstr(s, "t.db") && strstr(s, "F6") && strstr(s, "done "))
            break;
        usleep(50000);
    }
    cr_assert(strstr(s, "F5") && strstr(s, "F6"), "%s", s);
    cr_assert(strstr(s, who), "who you are at 80 columns:\n%s", s);
}

/* A flag typed while the store is locked waits for it too; its comment is not lost. */
Test(ui_busy_tmux, a_flag_waits_for_the_lock_and_keeps_its_comment) {
    hold_lock();
    keys("e:0", "f");
    wait_for("Flag: what is wrong");
    keys("e:0", "-l 'blurry face'");
    keys("e:0", "Enter");
    wait_for("waiting for the store to save your flag of image 1");
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM flags"), 0.0);
    release_lock();
    wait_for("flagged image 1");
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM flags WHERE comment = 'blurry face'"),
                 1.0);
}

/* After AppConfig.store_wait_s (here 2 s) a save gives up and says so; the values stay on the
 * screen and Enter saves them once the lock is gone. */
Test(ui_busy_tmux, a_save_gives_up_after_the_bound_and_keeps_the_values) {
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert(n > 0);
    self[n] = '\0';
    cr_assert_eq(support_sh("tmux -L %s new-window -d -n own 'env -u BXFI_MAP "
                            "EASEL_TEST_TUI_DB=%s %s 2>%s/own.err'", sock, db, self, dir), 0);
    /* the own TUI is window "own"; watch it there */
    char buf[65536];
    for (int i = 0; i < 200; i++) {
        char *out = NULL;
        support_run(NULL, &out, NULL, "tmux -L %s capture-pane -t own -p", sock);
        snprintf(buf, sizeof buf, "%s", out ? out : "");
        free(out);
        if (strstr(buf, "image 1"))
            break;
        usleep(50000);
    }
    cr_assert(strstr(buf, "image 1"), "own TUI:\n%s", buf);
    hold_lock();
    keys("own", "4 4 4 4 4 Enter");
    int gave_up = 0;
    for (int i = 0; i < 200 && !gave_up; i++) {
        char *out = NULL;
        support_run(NULL, &out, NULL, "tmux -L %s capture-pane -t own -p", sock);
        snprintf(buf, sizeof buf, "%s", out ? out : "");
        free(out);
        gave_up = strstr(buf, "not saved: another process held the store for 2 s") != NULL;
        usleep(50000);
    }
    cr_assert(gave_up, "no give-up message:\n%s", buf);
    cr_assert(strstr(buf, "image 1") && strstr(buf, "Enter tries again"), "%s", buf);
    cr_assert_eq(ratings(), 0.0);
    release_lock();
    usleep(700000); /* after giving up it tries no more on its own */
    cr_assert_eq(ratings(), 0.0);
    keys("own", "Enter");
    for (int i = 0; i < 200 && ratings() < 5; i++)
        usleep(50000);
    cr_assert_eq(ratings(), 5.0);
    cr_assert_eq(support_sql_num(db, "SELECT sum(value) FROM ratings"), 20.0);
}

int main(int argc, char **argv) {
    const char *tui_db = getenv("EASEL_TEST_TUI_DB");
    if (tui_db) {
        AppConfig cfg = {.db_path = tui_db, .start_screen = "Annotate", .graphics = "none",
                         .annotator = "owntester", .order = "id", .store_wait_s = 2};
        Err err = {0};
        if (app_run(&cfg, &err)) {
            fprintf(stderr, "easel: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    return support_criterion_main(argc, argv);
}
