/* theme — the TUI's colours, read at run time from assets/themes/NAME.theme, and the glyphs
 * its plots use.
 *
 * A theme gives each role of UiColor (title, tab, status, dim, accent, select, good, warn,
 * bad) a foreground, an optional background and attributes, for true colour ("role = ..."),
 * 256 colours ("role.256 = ...") and 8 colours ("role.8 = ..."); a depth without its own line
 * is converted from the next richer one. The format is in assets/README.md; errors name
 * FILE:LINE. Every role carries an attribute as well as a colour where the colour alone would
 * carry meaning (the selection is reverse or bold, headings bold), so nothing depends on grey.
 *
 * Which theme: --theme NAME (or a path to a .theme file), else $EASEL_THEME, else "light" or
 * "dark" from the terminal's answer to OSC 11 (its background colour), else "safe", whose
 * colours read on black and on white alike (it is also built in, for a missing assets/).
 *
 * Plots: braille (2x4 dots a cell), blocks (eighth / half blocks) or ascii (for fonts
 * without braille or box glyphs): --plot, else $EASEL_PLOT, else braille when the locale is
 * UTF-8, else ascii.
 *
 * UI thread only: the chosen theme and plot mode are process state, set once by theme_setup.
 */
#ifndef EASEL_THEME_H
#define EASEL_THEME_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "screen.h"

/* ---- parsing (pure; tested in tests/ui/test_theme.c) ---------------------------------------- */

typedef enum ThemeColorKind {
    THEME_COLOR_DEFAULT = 0, /* the terminal's own foreground / background */
    THEME_COLOR_INDEX,       /* a palette index 0..255 (0..7 the ANSI colours) */
    THEME_COLOR_RGB,         /* 0xRRGGBB */
} ThemeColorKind;

typedef struct ThemeColor {
    ThemeColorKind kind;
    uint32_t v;              /* index or 0xRRGGBB */
} ThemeColor;

enum { THEME_BOLD = 1, THEME_UNDERLINE = 2, THEME_REVERSE = 4, THEME_DIM = 8, THEME_ITALIC = 16 };

typedef struct ThemeStyle {
    int set;                 /* a line gave it */
    ThemeColor fg, bg;
    unsigned attrs;          /* THEME_BOLD | ... */
} ThemeStyle;

/* Colour depths a theme may give separately. */
typedef enum ThemeDepth {
    THEME_DEPTH_RGB = 0,
    THEME_DEPTH_256,
    THEME_DEPTH_8,
    THEME_DEPTHS
} ThemeDepth;

typedef struct Theme {
    char name[64];
    char path[512];          /* the file it came from ("" for the built-in one) */
    ThemeStyle style[THEME_DEPTHS][UI_C_COUNT];
} Theme;

/* Parse the text of a theme file (FILE names it in messages) over what *T already holds, so
 * a file may give only some roles. Returns 0 or ERR_FORMAT with "FILE:LINE: what is wrong". */
int theme_parse(Theme *t, const char *text, const char *file, Err *err);

/* Parse one colour: default, black, red, green, yellow, blue, magenta, cyan, white,
 * bright-NAME (8..15), a palette index 0..255 or #rrggbb. Returns 0 or -1. */
int theme_color_parse(const char *s, ThemeColor *c);

/* The built-in theme (the same colours as assets/themes/safe.theme), used when the assets
 * folder is missing. */
void theme_builtin(Theme *t);

/* Load theme NAME (a name of assets/themes/, or a path to a .theme file) into *T; a role the
 * file does not give at any depth is the built-in theme's. Returns 0, ERR_NOTFOUND (naming
 * the themes there are) or ERR_FORMAT. */
int theme_load(Theme *t, const char *name, Err *err);

/* The style of role C at DEPTH: that depth's line, else the next richer depth's converted. */
ThemeStyle theme_resolve(const Theme *t, ThemeDepth depth, UiColor c);

/* 0xRRGGBB of a palette index (xterm's palette); the nearest xterm 256-colour index of an
 * RGB colour; the nearest of the 8 ANSI colours (or, with 16 colours, 16) to a colour. */
uint32_t theme_index_rgb(int index);
int theme_rgb_to_256(uint32_t rgb);
int theme_to_ansi(ThemeColor c, int n_colors);

/* WCAG contrast ratio (1..21) of two RGB colours. */
double theme_contrast(uint32_t a, uint32_t b);

/* The background an OSC 11 answer ("ESC ] 11 ; rgb:RRRR/GGGG/BBBB" ended by BEL or ST) in
 * BUF reports: 1 light, 0 dark, -1 no answer in it. */
int theme_osc11_parse(const char *buf, size_t n);

/* ---- the TUI's theme and plots ------------------------------------------------------------ */

typedef enum ThemePlot {
    THEME_PLOT_BRAILLE = 0,  /* = PLOT_BRAILLE of plot.h and monitor_plot.h */
    THEME_PLOT_BLOCKS = 1,   /* = PLOT_BLOCKS */
    THEME_PLOT_ASCII = 2,    /* = PLOT_ASCII */
} ThemePlot;

/* Choose the theme (NAME, NULL: ask the terminal on FD) and the plot glyphs (PLOT: "braille" |
 * "blocks" | "ascii" | "auto", NULL: auto; UTF8: the locale's). NAME_FROM and PLOT_FROM say
 * where the values came from, for messages (NULL: "--theme", "--plot"; the CLI fills in
 * $EASEL_THEME and $EASEL_PLOT: nothing here reads the environment for them).
 * Before curses starts. Returns 0, or an error for an unknown or malformed theme or plot. */
int theme_setup(const char *name, const char *name_from, const char *plot,
                const char *plot_from, int fd, int utf8, Err *err);

/* Initialise the colour pairs of the chosen theme (after initscr). */
void theme_colors_init(void);

/* The attributes of role C (colour pair and attributes; attributes alone without colour). */
attr_t theme_attr(UiColor c);

ThemePlot theme_plot(void);
void theme_plot_set(ThemePlot p);
const char *theme_plot_name(ThemePlot p);
ThemePlot theme_plot_next(ThemePlot p);   /* the `b` key of plot screens: the next style */

/* Lines for the `?` overlay of screen SCREEN, after its keys: a blank line, its text from
 * assets/help/SCREEN.txt (lower case) and which theme and plot glyphs are in use. *OUT points
 * to static storage valid until the next call. Returns the count. */
int theme_help(const char *screen, const ScreenKey **out);

/* Replace *RUBRIC (malloc'd) with the first line of assets/rubrics/ASPECT.txt when that file
 * exists. */
void theme_rubric(const char *aspect, char **rubric);

#endif
