/* The zoom view (z) in a real sixel terminal: bin/easel in `xterm -ti vt340` under Xvfb, keys
 * sent with xdotool, screenshots with xwd (terminal-graphics.md, "Headless test recipe"):
 *   1. z: the image fitted to the screen, where easel logged it, matches the source scaled by
 *      ImageMagick (PSNR > 25 dB);
 *   2. 1: the image at 1:1 matches the source pixels themselves (PSNR > 30 dB);
 *   3. Esc: the Annotate screen again, with its text panel identical to before the zoom (no
 *      remnant of the full-screen image).
 * Skipped with a message when Xvfb, xterm, xwd, xdotool or ImageMagick is missing. Waits poll
 * with deadlines; nothing here measures time.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "annotate_vm.h"

#include "support.h"
#include "support_fixtures.h"

#define COLS 100
#define ROWS 30
#define PIC_W 240
#define PIC_H 180

static SupportX xt;

static void setup(void) {
    static const char *const tools[] = {"Xvfb", "xterm", "xwd", "xdotool", "convert", "compare",
                                        NULL};
    support_x_setup(&xt, "zoomx", tools,
                    "the real-terminal test needs Xvfb, xterm, xwd, xdotool and ImageMagick "
                    "(the Makefile's DEB_TEST installs them)");

    /* a sunset-like card: a vertical gradient, a sun, a dark ridge with a sharp edge */
    unsigned char *px = malloc((size_t)PIC_W * PIC_H * 3);
    for (int y = 0; y < PIC_H; y++)
        for (int x = 0; x < PIC_W; x++) {
            unsigned char *p = px + ((size_t)y * PIC_W + x) * 3;
            int sun = (x - 160) * (x - 160) + (y - 70) * (y - 70) < 25 * 25;
            int ridge = y > 130 - x / 6;
            p[0] = (unsigned char)(sun ? 255 : ridge ? 60 : 70 + y);
            p[1] = (unsigned char)(sun ? 220 : ridge ? 70 : 60 + y / 2);
            p[2] = (unsigned char)(sun ? 120 : ridge ? 90 : 140 - y / 3);
        }
    support_one_image_store(xt.easel, xt.dir, "an evening sky", "pic.png", PIC_W, PIC_H, px);
    free(px);
}

static void teardown(void) {
    support_x_teardown(&xt);
}

TestSuite(ui_gfx_xterm, .init = setup, .fini = teardown, .timeout = 90);

/* Wait until the log holds N lines matching WANT. */
static void wait_log(const char *want, int n) {
    for (int i = 0; i < 500; i++) {
        if (support_sh("c=$(grep -c '%s' %s/easel.log 2>/dev/null); [ \"${c:-0}\" -ge %d ]",
                       want, xt.dir, n) == 0)
            return;
        usleep(20000);
    }
    cr_assert_fail("easel never logged '%s' %d times", want, n);
}

/* Screenshot into NAME.png once two consecutive ones agree. */
static void shot(const char *name) {
    support_xwd_settled(xt.display, xt.dir, name, 150000);
}

static void key(const char *k) {
    cr_assert_eq(support_sh("DISPLAY=:%d xdotool search --class xterm | head -1 | "
                    "xargs -I{} env DISPLAY=:%d xdotool key --window {} %s 2>/dev/null",
                    xt.display, xt.display, k), 0, "xdotool key %s", k);
}

static double psnr(const char *a, const char *b) {
    return support_psnr(xt.dir, a, b);
}

/* The last zoom line of the log: view size in pixels and top-left cell. */
static void last_zoom(int *w, int *h, int *col, int *row) {
    char path[160];
    snprintf(path, sizeof path, "%s/easel.log", xt.dir);
    cr_assert(support_log_scan(path, "zoom: image", "view ", "view %dx%d px at cell %d,%d", 4, w,
                               h, col, row),
              "no zoom line in the log");
}

static void cell_size(int *cw, int *ch) {
    char path[160];
    snprintf(path, sizeof path, "%s/easel.log", xt.dir);
    cr_assert(support_log_scan(path, NULL, "cell ", "cell %dx%d", 2, cw, ch),
              "no cell size in the log");
}

Test(ui_gfx_xterm, zoom_fit_one_to_one_and_back_in_sixel) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && printf '\\033[?25l' && EASEL_LOG=%s/easel.log exec %s --db t.db annotate "
             "--annotator tester", xt.dir, xt.dir, xt.easel);
    xt.xterm = support_xterm_start(xt.display, COLS, ROWS, cmd);
    wait_log("canvas", 1);
    shot("before");
    int cw, ch;
    cell_size(&cw, &ch);

    /* 1. fitted */
    key("z");
    wait_log("zoom: image 1 fit", 1);
    shot("fit");
    int w, h, col, row;
    last_zoom(&w, &h, &col, &row);
    cr_assert_gt(h, (ROWS - 4) * ch, "fitted to the screen's height: %dx%d", w, h);
    cr_assert_eq(support_sh("cd %s && convert fit.png -crop %dx%d+%d+%d +repage a.png && "
                    "convert pic.png -resize %dx%d! b.png", xt.dir, w, h, col * cw, row * ch, w, h),
                 0);
    double db = psnr("a.png", "b.png");
    cr_log_info("zoom fit: %dx%d px at cell %d,%d: %.1f dB", w, h, col, row, db);
    cr_assert_gt(db, 25.0, "fitted view PSNR %.1f dB (EASEL_KEEP=1 keeps %s)", db, xt.dir);

    /* 2. one image pixel per screen pixel */
    key("1");
    wait_log("zoom: image 1 1:1", 1);
    shot("one");
    last_zoom(&w, &h, &col, &row);
    cr_assert_eq(w, PIC_W);
    cr_assert_eq(h, PIC_H);
    cr_assert_eq(support_sh("cd %s && convert one.png -crop %dx%d+%d+%d +repage a.png", xt.dir,
                            w, h, col * cw, row * ch),
                 0);
    db = psnr("a.png", "pic.png");
    cr_log_info("zoom 1:1: %.1f dB", db);
    cr_assert_gt(db, 30.0, "1:1 view PSNR %.1f dB (EASEL_KEEP=1 keeps %s)", db, xt.dir);

    /* 3. back: the text panel is as it was, nothing of the zoom left on it */
    key("Escape");
    wait_log("canvas", 1);
    usleep(300000);
    shot("after");
    AnnotateLayout l = annotate_layout(1, 0, ROWS - 2, COLS, cw, ch);
    int x0 = (l.sep_x + 1) * cw;
    cr_assert_eq(support_sh("cd %s && convert before.png -crop %dx%d+%d+%d +repage t1.png && "
                    "convert after.png -crop %dx%d+%d+%d +repage t2.png", xt.dir,
                    COLS * cw - x0, (ROWS - 2) * ch, x0, ch, COLS * cw - x0, (ROWS - 2) * ch, x0,
                    ch), 0);
    db = psnr("t1.png", "t2.png");
    cr_assert_gt(db, 40.0, "the text panel after the zoom differs (%.1f dB)", db);
}
