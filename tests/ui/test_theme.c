/* Tests for ui/theme.c and ui/assets.c: the theme files of assets/themes/ (format, errors with
 * FILE:LINE, legibility on white and on black at 8, 256 and true colour, nothing carried by
 * colour alone), OSC 11 answers, the assets folder lookup, the ASCII plots, and the TUI using
 * them in tmux (--theme, $EASEL_THEME, --plot, rubrics and help texts read at run time). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assets.h"
#include "base.h"
#include "monitor_plot.h"
#include "support.h"
#include "support_fixtures.h"
#include "theme.h"

#define WHITE 0xffffffu
#define BLACK 0x000000u

static const char *const themes[] = {"safe", "dark", "light", "high-contrast"};

static void use_repo_assets(void) {
    char real[4096];
    cr_assert_not_null(realpath("assets", real), "run from the repository root");
    setenv("EASEL_ASSETS", real, 1);
}

static void load(const char *name, Theme *t) {
    Err e = {0};
    cr_assert_eq(theme_load(t, name, &e), 0, "%s: %s", name, e.msg);
}

/* ---- the format --------------------------------------------------------------------------- */

Test(theme, errors_name_the_file_and_line) {
    Theme t = {0};
    Err e = {0};
    cr_assert_eq(theme_parse(&t, "name = x\n# c\ntitle = blue on\n", "my.theme", &e), ERR_FORMAT);
    cr_assert(strstr(e.msg, "my.theme:3:") && strstr(e.msg, "background"), "%s", e.msg);
    cr_assert_eq(theme_parse(&t, "\n\naccent = bleu bold\n", "my.theme", &e), ERR_FORMAT);
    cr_assert(strstr(e.msg, "my.theme:3:") && strstr(e.msg, "'bleu'"), "%s", e.msg);
    cr_assert_eq(theme_parse(&t, "titel = red\n", "my.theme", &e), ERR_FORMAT);
    cr_assert(strstr(e.msg, "my.theme:1:") && strstr(e.msg, "unknown key 'titel'"), "%s", e.msg);
    cr_assert_eq(theme_parse(&t, "dim red\n", "my.theme", &e), ERR_FORMAT);
    cr_assert(strstr(e.msg, "my.theme:1:") && strstr(e.msg, "key = value"), "%s", e.msg);
    cr_assert_eq(theme_parse(&t, "dim.88 = red\n", "f", &e), ERR_FORMAT);
    cr_assert_eq(theme_parse(&t, "dim = red blue\n", "f", &e), ERR_FORMAT);
    cr_assert_eq(theme_parse(&t, "dim = #12345\n", "f", &e), ERR_FORMAT);
    cr_assert_eq(theme_parse(&t, "dim = 256\n", "f", &e), ERR_FORMAT);
    cr_assert_eq(theme_parse(&t, "dim =\n", "f", &e), ERR_FORMAT);
}

Test(theme, styles_parse) {
    Theme t = {0};
    Err e = {0};
    cr_assert_eq(theme_parse(&t, "select = #000000 on 117 bold underline\nselect.8 = reverse\n"
                                 "warn.256 = bright-red\n", "f", &e), 0, "%s", e.msg);
    ThemeStyle s = t.style[THEME_DEPTH_RGB][UI_C_SELECT];
    cr_assert(s.set && s.fg.kind == THEME_COLOR_RGB && s.fg.v == 0);
    cr_assert(s.bg.kind == THEME_COLOR_INDEX && s.bg.v == 117);
    cr_assert_eq(s.attrs, THEME_BOLD | THEME_UNDERLINE);
    cr_assert_eq(t.style[THEME_DEPTH_8][UI_C_SELECT].attrs, THEME_REVERSE);
    cr_assert_eq(t.style[THEME_DEPTH_256][UI_C_WARN].fg.v, 9u);
    /* a depth without its own line is converted from another */
    ThemeStyle r = theme_resolve(&t, THEME_DEPTH_256, UI_C_SELECT);
    cr_assert(r.fg.kind == THEME_COLOR_INDEX && theme_index_rgb((int)r.fg.v) == 0);
    cr_assert_eq(r.bg.v, 117u);
    r = theme_resolve(&t, THEME_DEPTH_RGB, UI_C_WARN);
    cr_assert(r.fg.kind == THEME_COLOR_RGB && r.fg.v == 0xff0000u);
}

Test(theme, colour_maths) {
    cr_assert_eq(theme_rgb_to_256(0x0087af), 31);
    cr_assert_eq(theme_rgb_to_256(0xffffff), 231);
    cr_assert_eq(theme_index_rgb(244), 0x808080u);
    cr_assert_eq(theme_to_ansi((ThemeColor){THEME_COLOR_RGB, 0xcc0000}, 8), 1);
    cr_assert_eq(theme_to_ansi((ThemeColor){THEME_COLOR_INDEX, 12}, 8), 4);
    cr_assert_float_eq(theme_contrast(WHITE, BLACK), 21.0, 1e-9);
}

Test(theme, the_builtin_theme_is_assets_safe) {
    use_repo_assets();
    Theme a, b;
    load("safe", &a);
    theme_builtin(&b);
    for (int d = 0; d < THEME_DEPTHS; d++)
        for (int c = 1; c < UI_C_COUNT; c++)
            cr_assert(memcmp(&a.style[d][c], &b.style[d][c], sizeof(ThemeStyle)) == 0,
                      "role %d depth %d differs between the built-in theme and safe.theme", c, d);
}

Test(theme, unknown_theme_lists_the_themes) {
    use_repo_assets();
    Theme t;
    Err e = {0};
    cr_assert_eq(theme_load(&t, "nosuch", &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "nosuch") && strstr(e.msg, "light") && strstr(e.msg, "dark") &&
                  strstr(e.msg, "high-contrast"), "%s", e.msg);
    cr_assert_eq(theme_load(&t, "../x", &e), ERR_NOTFOUND); /* a path: no such file */
    cr_assert_eq(theme_load(&t, "a b", &e), ERR_USAGE);
    /* a file name ending in .theme, without a folder, is a path too (not "a theme name is
     * letters..."): the file in the current folder, reported with its line */
    char dir[64];
    support_tmpdir_make(dir, sizeof dir, "theme");
    char cwd[512];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(dir), 0);
    char p[160];
    support_write_file(dir, "mine.theme", "name = mine\n\nselect = bleu\n", p, sizeof p);
    int rc = theme_load(&t, "mine.theme", &e);
    cr_assert_eq(chdir(cwd), 0);
    support_tmpdir_remove(dir);
    cr_assert_eq(rc, ERR_FORMAT, "%s", e.msg);
    cr_assert(strstr(e.msg, "mine.theme:3:") && strstr(e.msg, "'bleu'"), "%s", e.msg);
}

/* ---- legibility ----------------------------------------------------------------------------- */

/* The colour role C shows at DEPTH on a terminal whose background is BG and foreground FG:
 * *FGC over *BGC, with reverse video and xterm's bold-is-bright applied. */
static void shown(const ThemeStyle *s, ThemeDepth depth, uint32_t bg, uint32_t fg,
                  uint32_t *fgc, uint32_t *bgc) {
    uint32_t f = fg, b = bg;
    if (s->fg.kind != THEME_COLOR_DEFAULT) {
        int i = (int)s->fg.v;
        if (depth != THEME_DEPTH_RGB && s->fg.kind == THEME_COLOR_INDEX &&
            (s->attrs & THEME_BOLD) && i < 8)
            i += 8; /* xterm shows bold colours 0..7 bright (true colour avoids 0..7) */
        f = s->fg.kind == THEME_COLOR_RGB ? s->fg.v : theme_index_rgb(i);
    }
    if (s->bg.kind != THEME_COLOR_DEFAULT)
        b = s->bg.kind == THEME_COLOR_RGB ? s->bg.v : theme_index_rgb((int)s->bg.v);
    if (s->attrs & THEME_REVERSE) {
        uint32_t t = f;
        f = b;
        b = t;
    }
    *fgc = f;
    *bgc = b;
}

static double worst_contrast(const Theme *t, ThemeDepth d, UiColor c, int on_white, int on_black) {
    ThemeStyle s = theme_resolve(t, d, c);
    double worst = 21;
    for (int k = 0; k < 2; k++) {
        if (!(k ? on_black : on_white))
            continue;
        uint32_t f, b;
        shown(&s, d, k ? BLACK : WHITE, k ? WHITE : BLACK, &f, &b);
        double r = theme_contrast(f, b);
        if (r < worst)
            worst = r;
    }
    return worst;
}

Test(theme, every_role_reads_on_white_and_on_black) {
    use_repo_assets();
    for (size_t i = 0; i < ARRAY_LEN(themes); i++) {
        Theme t;
        load(themes[i], &t);
        /* light is for white terminals, dark for black ones; safe (the fallback) and
         * high-contrast for both */
        int light = strcmp(themes[i], "light") == 0, dark = strcmp(themes[i], "dark") == 0;
        for (int d = 0; d < THEME_DEPTHS; d++)
            for (int c = 1; c < UI_C_COUNT; c++) {
                double r = worst_contrast(&t, (ThemeDepth)d, (UiColor)c, !dark, !light);
                cr_assert(r >= (light || dark ? 4.5 : 3.5),
                          "%s: role %d at depth %d has contrast %.2f", themes[i], c, d, r);
            }
    }
}

Test(theme, the_old_colours_fail_the_legibility_check) {
    /* what app.c set up before the themes, in 8 colours: grey text on a white xterm */
    Theme t = {0};
    Err e = {0};
    cr_assert_eq(theme_parse(&t, "dim.8 = white\naccent.8 = cyan bold\nselect.8 = black on cyan\n",
                             "old", &e), 0, "%s", e.msg);
    cr_assert_lt(worst_contrast(&t, THEME_DEPTH_8, UI_C_DIM, 1, 0), 2.0);
    cr_assert_lt(worst_contrast(&t, THEME_DEPTH_8, UI_C_ACCENT, 1, 0), 2.0);
}

Test(theme, nothing_is_carried_by_colour_alone) {
    use_repo_assets();
    /* roles that mark something (the selection, the tab, states) carry an attribute as well:
     * bold, underline or reverse, or sit on a band of their own */
    const UiColor marks[] = {UI_C_TITLE, UI_C_TAB, UI_C_SELECT, UI_C_GOOD, UI_C_WARN, UI_C_BAD};
    for (size_t i = 0; i < ARRAY_LEN(themes); i++) {
        Theme t;
        load(themes[i], &t);
        for (int d = 0; d < THEME_DEPTHS; d++)
            for (size_t k = 0; k < ARRAY_LEN(marks); k++) {
                ThemeStyle s = theme_resolve(&t, (ThemeDepth)d, marks[k]);
                int has = (s.attrs & (THEME_BOLD | THEME_UNDERLINE | THEME_REVERSE)) ||
                          s.bg.kind != THEME_COLOR_DEFAULT;
                cr_assert(has, "%s: role %d at depth %d is colour only", themes[i], marks[k], d);
            }
        /* no role but secondary text is grey without an attribute */
        for (int d = 0; d < THEME_DEPTHS; d++)
            for (int c = 1; c < UI_C_COUNT; c++) {
                ThemeStyle s = theme_resolve(&t, (ThemeDepth)d, (UiColor)c);
                if (c == UI_C_DIM || s.fg.kind == THEME_COLOR_DEFAULT || s.attrs ||
                    s.bg.kind != THEME_COLOR_DEFAULT)
                    continue;
                uint32_t rgb = s.fg.kind == THEME_COLOR_RGB ? s.fg.v : theme_index_rgb((int)s.fg.v);
                int grey = (rgb >> 16 & 255) == (rgb >> 8 & 255) && (rgb >> 8 & 255) == (rgb & 255);
                cr_assert(!grey, "%s: role %d at depth %d is grey alone", themes[i], c, d);
            }
        /* the selection differs from the warning and the error by more than colour */
        ThemeStyle sel = theme_resolve(&t, THEME_DEPTH_8, UI_C_SELECT);
        ThemeStyle bad = theme_resolve(&t, THEME_DEPTH_8, UI_C_BAD);
        cr_assert(sel.attrs != bad.attrs || sel.fg.v != bad.fg.v, "%s", themes[i]);
    }
}

/* ---- the terminal's background --------------------------------------------------------------- */

Test(theme, osc11_answers) {
    const char w[] = "\033]11;rgb:ffff/ffff/ffff\033\\\033[?64;4c";
    const char b[] = "\033]11;rgb:0000/0000/0000\007\033[?1;2c";
    const char s[] = "\033]11;rgb:fd/f6/e3\007"; /* solarized light, 2 digits */
    cr_assert_eq(theme_osc11_parse(w, strlen(w)), 1);
    cr_assert_eq(theme_osc11_parse(b, strlen(b)), 0);
    cr_assert_eq(theme_osc11_parse(s, strlen(s)), 1);
    cr_assert_eq(theme_osc11_parse("\033[?1;2c", 7), -1);
    cr_assert_eq(theme_osc11_parse("\033]11;rgb:zz", 12), -1);
}

/* ---- the assets folder ------------------------------------------------------------------- */

Test(theme, assets_are_found_by_env_and_reported_missing) {
    use_repo_assets();
    char *p = assets_path("themes/light.theme");
    cr_assert_not_null(p);
    free(p);
    char *text = NULL;
    Err e = {0};
    cr_assert_eq(assets_read("rubrics/nosuch.txt", &text, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "rubrics/nosuch.txt"), "%s", e.msg);
    setenv("EASEL_ASSETS", "/nonexistent-easel-assets", 1);
    cr_assert_null(assets_dir());
    char *r = xstrdup("from the store");
    theme_rubric("spatial", &r); /* no assets: the store's line stays */
    cr_assert_str_eq(r, "from the store");
    free(r);
    unsetenv("EASEL_ASSETS");
}

Test(theme, rubrics_come_from_the_assets) {
    use_repo_assets();
    char *r = xstrdup("from the store");
    theme_rubric("spatial", &r);
    cr_assert(strstr(r, "Composition") && !strchr(r, '#') && !strchr(r, '\n'), "%s", r);
    free(r);
}

/* ---- plots in ASCII ---------------------------------------------------------------------- */

Test(theme, ascii_plots_are_ascii) {
    PlotCanvas c;
    plot_canvas_init(&c, 10, 3, PLOT_ASCII);
    cr_assert_eq(c.dy, 3);
    double x[] = {0, 9}, y[] = {0, 1};
    PlotSeries s = {x, y, 2, 1};
    PlotRange r = {0, 9, 0, 1, 0};
    plot_canvas_series(&c, &r, &s);
    int drawn = 0;
    for (int row = 0; row < 3; row++)
        for (int col = 0; col < 10; col++) {
            char g[5];
            int n = plot_canvas_glyph(&c, row, col, g);
            cr_assert_eq(n, 1, "cell %d,%d is not one ASCII byte: %s", row, col, g);
            cr_assert((unsigned char)g[0] >= 0x20 && (unsigned char)g[0] < 0x7f);
            drawn += g[0] != ' ';
        }
    cr_assert_geq(drawn, 10, "a diagonal over 10 columns shows in every column");
    plot_canvas_deinit(&c);
    char bar[16];
    cr_assert_str_eq(plot_bar_ascii(0.55, 10, bar), "#####+    ");
    cr_assert_str_eq(plot_bar_ascii(1.0, 4, bar), "####");
}

/* ---- the TUI ------------------------------------------------------------------------------- */

static char dir[64], sock[64], easel[4096], assets[4096], out[8192];

static void tui_setup(void) {
    if (support_sh("command -v tmux >/dev/null") != 0)
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    support_easel_path(easel, sizeof easel);
    cr_assert_not_null(realpath("assets", assets));
    support_tmpdir_make(dir, sizeof dir, "theme");
    snprintf(sock, sizeof sock, "easel-theme-%d", (int)getpid());
    char data[4096];
    cr_assert_not_null(realpath("data", data));
    cr_assert_eq(support_sh("%s --db %s/t.db init >/dev/null && %s --db %s/t.db import prompts "
                            "%s/prompts.csv >/dev/null && %s --db %s/t.db import images "
                            "%s/images >/dev/null",
                            easel, dir, easel, dir, data, easel, dir, data),
                 0);
}

static void tui_teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    support_tmpdir_remove(dir);
}

/* Start the TUI in a tmux pane with ENV and ARGS (the pane stays after it exits). */
static void tui_start(const char *env, const char *args) {
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 110 -y 40 "
                            "'env %s %s --db t.db %s; echo exited $?; sleep 60'",
                            dir, sock, env, easel, args);
}

/* Run a shell command in DIR; stdout+stderr into out; returns the exit status. */
#define cli(...) support_run_buf(dir, out, sizeof out, __VA_ARGS__)

TestSuite(theme_tui, .init = tui_setup, .fini = tui_teardown, .timeout = 60);

Test(theme_tui, help_says_which_plots_and_theme) {
    tui_start("EASEL_ASSETS=", "--plot ascii --theme light");
    support_tmux_wait_for(sock, "Annotate");
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e '?'", sock), 0);
    support_tmux_wait_for(sock, "plots");
    support_tmux_wait_for(sock, "ascii (easel --plot");
    support_tmux_wait_for(sock, "theme           light, ");
    support_tmux_wait_for(sock, " colours: chosen by --theme");
    support_tmux_wait_for(sock, "high-contrast"); /* the others are listed */
    support_tmux_wait_for(sock, "Rate each of the five aspects"); /* assets/help/annotate.txt */
}

Test(theme_tui, a_terminal_that_does_not_say_its_background_gets_safe_colours) {
    tui_start("-u COLORFGBG -u EASEL_THEME", "");
    support_tmux_wait_for(sock, "Annotate");
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e '?'", sock), 0);
    support_tmux_wait_for(sock, "theme           ");
    if (strstr(support_tmux_capture(sock), "the terminal's background is"))
        cr_skip_test("this tmux answers OSC 11 itself");
    support_tmux_wait_for(sock, "theme           safe, ");
    support_tmux_wait_for(sock, "did not say its background");
}

Test(theme_tui, theme_from_the_environment_and_plots_by_locale) {
    tui_start("-u EASEL_PLOT LANG=C LC_ALL=C EASEL_THEME=high-contrast", "");
    support_tmux_wait_for(sock, "Annotate");
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e '?'", sock), 0);
    support_tmux_wait_for(sock, "theme           high-contrast, ");
    support_tmux_wait_for(sock, " colours: chosen by $EASEL_THEME");
    support_tmux_wait_for(sock, "ascii (easel --plot"); /* not UTF-8: ASCII plots */
}

Test(theme_tui, rubrics_are_read_at_run_time) {
    cr_assert_eq(support_sh("cp -r %s %s/assets && printf '# mine\\nFraming only, please\\n' > "
                            "%s/assets/rubrics/spatial.txt", assets, dir, dir), 0);
    char env[256];
    snprintf(env, sizeof env, "EASEL_ASSETS=%s/assets", dir);
    tui_start(env, "annotate");
    support_tmux_wait_for(sock, "Framing only, please");
    support_tmux_wait_for(sock, "Iconography: the objects"); /* the others from assets/ */
}

Test(theme_tui, a_bad_theme_file_is_refused_with_its_line) {
    cr_assert_eq(cli("printf 'name = x\\ntitle = white on\\n' > bad.theme"), 0, "%s", out);
    tui_start("", "--theme ./bad.theme");
    support_tmux_wait_for(sock, "./bad.theme:2: 'on' needs a background colour");
    support_tmux_wait_for(sock, "exited 1");
}

Test(theme_tui, a_fifo_as_theme_is_refused_not_waited_on) {
    cr_assert_eq(cli("mkfifo fifo.theme"), 0, "%s", out);
    tui_start("", "--theme ./fifo.theme");
    support_tmux_wait_for(sock, "a theme must be a regular file");
    support_tmux_wait_for(sock, "exited 1");
}

Test(theme_tui, tui_options_are_not_options_of_commands) {
    cr_assert_eq(cli("%s --db t.db --theme dark status", easel), 2, "%s", out);
    cr_assert(strstr(out, "--theme is an option of the TUI") && strstr(out, "not of 'status'"),
              "%s", out);
}

Test(theme_tui, an_unknown_theme_lists_the_themes) {
    tui_start("", "annotate --theme nosuch");
    support_tmux_wait_for(sock, "unknown theme 'nosuch'");
    support_tmux_wait_for(sock, "high-contrast");
    support_tmux_wait_for(sock, "exited 1");
}

Test(theme_tui, plots_from_the_environment) {
    tui_start("EASEL_PLOT=blocks", "monitor");
    support_tmux_wait_for(sock, "Monitor");
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e '?'", sock), 0);
    support_tmux_wait_for(sock, "blocks (easel --plot");
}

/* The Monitor is the TUI too: its look options after 'monitor' and before it. */
Test(theme_tui, monitor_takes_the_look_options) {
    tui_start("-u EASEL_PLOT", "monitor --plot ascii --theme light");
    support_tmux_wait_for(sock, "Monitor");
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e '?'", sock), 0);
    support_tmux_wait_for(sock, "ascii (easel --plot");
    support_tmux_wait_for(sock, "theme           light, ");
    cr_assert_eq(cli("%s --db t.db --plot fancy monitor", easel), 2, "%s", out);
    cr_assert(strstr(out, "--plot fancy: unknown"), "%s", out);
}

Test(theme_tui, a_bad_plot_is_a_usage_error) {
    cr_assert_eq(cli("%s --db t.db --plot dots", easel), 2, "%s", out);
    cr_assert(strstr(out, "--plot dots: unknown"), "%s", out);
    cr_assert_eq(cli("%s --db t.db annotate --plot", easel), 2, "%s", out);
}

/* In a real xterm (under Xvfb), which answers OSC 11: light on xterm's default white, dark
 * on -bg black, without --theme or $EASEL_THEME. */
Test(theme_tui, xterm_background_picks_light_or_dark) {
    if (support_sh("command -v Xvfb >/dev/null && command -v xterm >/dev/null") != 0)
        cr_skip_test("Xvfb and xterm are needed (the Makefile's DEB_TEST installs them)");
    int rc = cli("exec 3>dpy; timeout 30 Xvfb -displayfd 3 -screen 0 800x600x24 -nolisten tcp "
                 ">/dev/null 2>&1 & xv=$!; exec 3>&-\n"
                 "for i in $(seq 100); do [ -s dpy ] && break; sleep 0.1; done\n"
                 "shot() {\n"
                 "  rm -f $1.log\n"
                 "  env -u EASEL_THEME EASEL_LOG=$PWD/$1.log timeout 20 xterm -display :$(cat dpy) "
                 "-geometry 100x30 $2 -e %s --db t.db annotate >/dev/null 2>&1 & x=$!\n"
                 "  for i in $(seq 150); do grep -q 'ui: theme' $1.log 2>/dev/null && break; "
                 "sleep 0.1; done\n"
                 "  kill $x 2>/dev/null; wait $x 2>/dev/null\n"
                 "  grep -h 'ui: theme' $1.log\n"
                 "}\n"
                 "shot white ''; shot black '-bg black -fg white'\n"
                 "kill $xv 2>/dev/null; wait $xv 2>/dev/null; true",
                 easel);
    cr_assert_eq(rc, 0, "%s", out);
    const char *w = strstr(out, "ui: theme"), *b = w ? strstr(w + 1, "ui: theme") : NULL;
    cr_assert(w && b, "easel did not log its theme twice: %s", out);
    cr_log_info("%s", out);
    cr_assert(strncmp(w, "ui: theme light (the terminal's background is light)", 52) == 0, "%s",
              out);
    cr_assert(strncmp(b, "ui: theme dark (the terminal's background is dark)", 50) == 0, "%s", out);
}
