/* The image in a tmux pane: --graphics sixel where tmux drops sixel falls back to blocks and
 * says why on the status line; the zoom view (z) of the Annotate screen: fit, 1:1 with
 * panning, back with z / Esc. bin/easel runs in a detached tmux pane on a temporary store;
 * the screen is read with capture-pane (which shows text, not images: the header lines and
 * the status line carry what the test checks).
 *
 * Skipped (with the reason) when tmux or bin/easel is missing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"
#include "support_fixtures.h"

static char dir[64];
static char sock[64];
static char easel[512];

static void keys(const char *k) {
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e %s", sock, k), 0, "send-keys %s", k);
}

static void setup(void) {
    if (support_sh("command -v tmux >/dev/null") != 0)
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    support_easel_path(easel, sizeof easel);
    support_tmpdir_make(dir, sizeof dir, "gfxtmux");
    snprintf(sock, sizeof sock, "easel-gfx-%d", (int)getpid());
    /* 400x300: larger than the 1:1 view of a 100x30 pane in half blocks (100x~56) */
    int w = 400, h = 300;
    unsigned char *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = px + ((size_t)y * w + x) * 3;
            p[0] = (unsigned char)(250 - y / 2);
            p[1] = (unsigned char)(150 - y / 4);
            p[2] = (unsigned char)(80 + x / 4);
        }
    support_one_image_store(easel, dir, "an orange evening sky", "sky.png", w, h, px);
    free(px);
}

static void teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    if (dir[0])
        support_tmpdir_remove(dir);
}

TestSuite(ui_gfx_tmux, .init = setup, .fini = teardown, .timeout = 60);

static void start(const char *graphics) {
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 100 -y 30 "
                            "'TERM=tmux-256color exec %s --db t.db annotate --annotator tester "
                            "--graphics %s --order id'",
                            dir, sock, easel, graphics);
    support_tmux_wait_for(sock, "an orange evening sky");
}

Test(ui_gfx_tmux, sixel_without_passthrough_says_why_and_shows_blocks) {
    start("sixel");
    support_tmux_wait_for(sock, "tmux does not pass it through");
    support_tmux_wait_for(sock, "showing blocks");
    /* the preview is there: half blocks in the image box */
    support_tmux_wait_for(sock, "\xe2\x96\x80\xe2\x96\x80\xe2\x96\x80");
}

Test(ui_gfx_tmux, zoom_fit_one_to_one_pan_and_back) {
    start("blocks");
    support_tmux_wait_for(sock, "\xe2\x96\x80\xe2\x96\x80\xe2\x96\x80");
    keys("z");
    support_tmux_wait_for(sock, "fit to screen  400x300 px");
    cr_assert_null(strstr(support_tmux_capture(sock), "an orange evening sky"),
                   "the panel is gone while zoomed");
    keys("5"); /* swallowed: nothing is rated blind */
    support_tmux_wait_for(sock, "z or Esc goes back");
    keys("1");
    support_tmux_wait_for(sock, "1:1  400x300 px, showing 0,0-100,");
    keys("Right");
    support_tmux_wait_for(sock, "showing 10,0-110,");
    keys("End End End End End");
    support_tmux_wait_for(sock, "showing 300,0-400,");
    keys("+"); /* 2:1: half as many image pixels in the view, around the same centre */
    support_tmux_wait_for(sock, "2:1  400x300 px, showing 325,");
    keys("-");
    support_tmux_wait_for(sock, "1:1  400x300 px, showing 300,0-400,");
    /* a narrower window: the view is rendered again for it */
    cr_assert_eq(support_sh("tmux -L %s resize-window -t e -x 90 -y 30", sock), 0);
    support_tmux_wait_for(sock, "1:1  400x300 px, showing 300,0-390,");
    keys("f");
    support_tmux_wait_for(sock, "fit to screen");
    keys("Escape");
    support_tmux_wait_for(sock, "an orange evening sky");
    char db[160];
    snprintf(db, sizeof db, "%s/t.db", dir);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM ratings"), 0, "the 5 was not a rating");
    keys("?");
    support_tmux_wait_for(sock, "zoom: the image over the whole screen");
}
