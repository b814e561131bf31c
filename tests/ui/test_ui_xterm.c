/* The image in a real terminal: bin/easel in `xterm -ti vt340` (sixel) under Xvfb, a
 * screenshot, and two checks (terminal-graphics.md, "Headless test recipe"):
 *   1. the image region matches the source image scaled to the size easel drew it
 *      (ImageMagick's scaling, not ours): PSNR > 25 dB;
 *   2. the text around it is intact: the title bar, the text panel right of the image and
 *      the status line are pixel-identical to a second run with --graphics none.
 * Skipped with a message when Xvfb, xterm, xwd or ImageMagick is missing (the Makefile's
 * DEB_TEST installs them). Waits poll with deadlines; nothing here measures time.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "annotate_vm.h"

#include "support.h"
#include "support_fixtures.h"

#define COLS 100
#define ROWS 30

static SupportX xt;

static void setup(void) {
    static const char *const tools[] = {"Xvfb", "xterm", "xwd", "convert", "compare", NULL};
    support_x_setup(&xt, "xterm", tools,
                    "the real-terminal test needs Xvfb, xterm, xwd and ImageMagick (the "
                    "Makefile's DEB_TEST installs them as root)");

    /* a store with one image: a distinctive picture of 240 x 180 */
    int w = 240, h = 180;
    unsigned char *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = px + ((size_t)y * w + x) * 3;
            int disc = (x - 150) * (x - 150) + (y - 80) * (y - 80) < 45 * 45;
            p[0] = (unsigned char)(disc ? 240 : x);
            p[1] = (unsigned char)(disc ? 200 - y / 2 : y);
            p[2] = (unsigned char)(disc ? 40 : 255 - x / 2);
        }
    support_one_image_store(xt.easel, xt.dir, "a test card", "pic.png", w, h, px);
    free(px);
}

static void teardown(void) {
    support_x_teardown(&xt);
}

TestSuite(ui_xterm, .init = setup, .fini = teardown, .timeout = 60);

/* Start easel in xterm with extra ARGS, wait until LOG_WANT appears in its log and the
 * screen settles, screenshot into SHOT. */
static void run_shot(const char *args, const char *log_want, const char *shot) {
    char cmd[1024], logp[160];
    snprintf(logp, sizeof logp, "%s/%s.log", xt.dir, shot);
    snprintf(cmd, sizeof cmd,
             "cd %s && printf '\\033[?25l' && EASEL_LOG=%s exec %s --db t.db annotate "
             "--annotator tester %s",
             xt.dir, logp, xt.easel, args);
    xt.xterm = support_xterm_start(xt.display, COLS, ROWS, cmd);
    int ok = 0;
    for (int i = 0; i < 500 && !ok; i++) {
        usleep(20000);
        ok = support_sh("grep -q '%s' %s 2>/dev/null", log_want, logp) == 0;
    }
    cr_assert(ok, "easel never logged '%s'", log_want);
    support_xwd_settled(xt.display, xt.dir, shot, 100000);
    support_stop(&xt.xterm);
}

/* The last "KEY WxH" of the log of SHOT (KEY one word and its space) into *A, *B: 1, or 0. */
static int log_int(const char *shot, const char *key, int *a, int *b) {
    char path[160];
    snprintf(path, sizeof path, "%s/%s.log", xt.dir, shot);
    return support_log_scan(path, NULL, key, "%*s %dx%d", 2, a, b);
}

Test(ui_xterm, sixel_image_matches_and_text_around_is_intact) {
    run_shot("", "canvas", "sixel");
    int cw = 0, ch = 0, iw = 0, ih = 0;
    cr_assert(log_int("sixel", "cell ", &cw, &ch), "no cell size in the log");
    cr_assert(log_int("sixel", "image ", &iw, &ih), "no image size in the log");
    cr_assert_eq(support_sh("grep -q 'graphics sixel' %s/sixel.log", xt.dir), 0,
                 "xterm -ti vt340 answers DA1 with 4: the probe must pick sixel");
    cr_assert_gt(iw, 50);
    cr_assert_gt(ih, 50);

    /* 1. the image region: row 1 of the screen, column 0 */
    cr_assert_eq(support_sh("cd %s && convert sixel.png -crop %dx%d+0+%d +repage crop.png && "
                    "convert pic.png -resize %dx%d! expected.png", xt.dir, iw, ih, ch, iw, ih), 0);
    char a[160], b[160];
    snprintf(a, sizeof a, "%s/crop.png", xt.dir);
    snprintf(b, sizeof b, "%s/expected.png", xt.dir);
    double db = support_psnr(xt.dir, a, b);
    cr_log_info("xterm image region: %.1f dB (%dx%d px, cell %dx%d)", db, iw, ih, cw, ch);
    cr_assert_gt(db, 25.0, "image region PSNR %.1f dB (kept in %s)", db, xt.dir);

    /* 2. text around it, against the same screen with no image */
    run_shot("--graphics none", "graphics none", "none");
    AnnotateLayout l = annotate_layout(1, 0, ROWS - 2, COLS, cw, ch);
    int x0 = (l.sep_x + 1) * cw, W = COLS * cw, H = ROWS * ch;
    struct {
        int x, y, w, h;
    } regions[] = {
        {0, 0, W, ch},                         /* title bar */
        {x0, ch, W - x0, (ROWS - 2) * ch},     /* text panel */
        {0, (ROWS - 1) * ch, W, ch},           /* status line */
    };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(support_sh("cd %s && convert sixel.png -crop %dx%d+%d+%d +repage t1.png && "
                        "convert none.png -crop %dx%d+%d+%d +repage t2.png", xt.dir,
                        regions[i].w, regions[i].h, regions[i].x, regions[i].y, regions[i].w,
                        regions[i].h, regions[i].x, regions[i].y), 0);
        snprintf(a, sizeof a, "%s/t1.png", xt.dir);
        snprintf(b, sizeof b, "%s/t2.png", xt.dir);
        double t = support_psnr(xt.dir, a, b);
        cr_assert_gt(t, 40.0, "text region %d differs from the run without image (%.1f dB)", i,
                     t);
    }
    (void)H;
}
