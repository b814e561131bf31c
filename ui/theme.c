/* theme — colour themes from assets/themes/, the plot glyphs, help texts and rubrics from
 * assets/. See theme.h; the file format is in assets/README.md.
 */
#include "theme.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <dirent.h>

#include "assets.h"
#include "base.h"
#include "infile.h"
#include "log.h"
#include "tty_query.h"

/* ---- colours ------------------------------------------------------------------------------ */

static const char *const ansi_names[8] = {"black", "red", "green", "yellow",
                                          "blue", "magenta", "cyan", "white"};

/* xterm's default palette for 0..15. */
static const uint32_t ansi_rgb[16] = {
    0x000000, 0xcd0000, 0x00cd00, 0xcdcd00, 0x0000ee, 0xcd00cd, 0x00cdcd, 0xe5e5e5,
    0x7f7f7f, 0xff0000, 0x00ff00, 0xffff00, 0x5c5cff, 0xff00ff, 0x00ffff, 0xffffff,
};

uint32_t theme_index_rgb(int i) {
    if (i < 0)
        return 0;
    if (i < 16)
        return ansi_rgb[i];
    if (i < 232) {
        static const int lvl[6] = {0, 95, 135, 175, 215, 255};
        int k = i - 16;
        return (uint32_t)(lvl[k / 36] << 16 | lvl[(k / 6) % 6] << 8 | lvl[k % 6]);
    }
    if (i < 256) {
        int g = 8 + 10 * (i - 232);
        return (uint32_t)(g << 16 | g << 8 | g);
    }
    return 0;
}

static int rgb_dist(uint32_t a, uint32_t b) {
    int dr = (int)(a >> 16 & 255) - (int)(b >> 16 & 255);
    int dg = (int)(a >> 8 & 255) - (int)(b >> 8 & 255);
    int db = (int)(a & 255) - (int)(b & 255);
    /* weighted towards green, as the eye is */
    return 2 * dr * dr + 4 * dg * dg + 3 * db * db;
}

int theme_rgb_to_256(uint32_t rgb) {
    int best = 16, bd = -1;
    for (int i = 16; i < 256; i++) { /* 0..15 are the user's palette: not predictable */
        int d = rgb_dist(rgb, theme_index_rgb(i));
        if (bd < 0 || d < bd) {
            bd = d;
            best = i;
        }
    }
    return best;
}

int theme_to_ansi(ThemeColor c, int n_colors) {
    if (c.kind == THEME_COLOR_DEFAULT)
        return -1;
    int n = n_colors >= 16 ? 16 : 8;
    if (c.kind == THEME_COLOR_INDEX && (int)c.v < n)
        return (int)c.v;
    if (c.kind == THEME_COLOR_INDEX && c.v < 16)
        return (int)c.v - 8;
    uint32_t rgb = c.kind == THEME_COLOR_RGB ? c.v : theme_index_rgb((int)c.v);
    int best = 0, bd = -1;
    for (int i = 0; i < n; i++) {
        int d = rgb_dist(rgb, ansi_rgb[i]);
        if (bd < 0 || d < bd) {
            bd = d;
            best = i;
        }
    }
    return best;
}

static double lin(double c) {
    c /= 255.0;
    return c <= 0.03928 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
}

static double luminance(uint32_t rgb) {
    return 0.2126 * lin(rgb >> 16 & 255) + 0.7152 * lin(rgb >> 8 & 255) + 0.0722 * lin(rgb & 255);
}

double theme_contrast(uint32_t a, uint32_t b) {
    double la = luminance(a), lb = luminance(b);
    return la > lb ? (la + 0.05) / (lb + 0.05) : (lb + 0.05) / (la + 0.05);
}

int theme_color_parse(const char *s, ThemeColor *c) {
    if (strcasecmp(s, "default") == 0) {
        *c = (ThemeColor){THEME_COLOR_DEFAULT, 0};
        return 0;
    }
    for (int i = 0; i < 8; i++) {
        if (strcasecmp(s, ansi_names[i]) == 0) {
            *c = (ThemeColor){THEME_COLOR_INDEX, (uint32_t)i};
            return 0;
        }
        if (strncasecmp(s, "bright-", 7) == 0 && strcasecmp(s + 7, ansi_names[i]) == 0) {
            *c = (ThemeColor){THEME_COLOR_INDEX, (uint32_t)i + 8};
            return 0;
        }
    }
    if (s[0] == '#') {
        if (strlen(s) != 7)
            return -1;
        for (int i = 1; i < 7; i++)
            if (!isxdigit((unsigned char)s[i]))
                return -1;
        *c = (ThemeColor){THEME_COLOR_RGB, (uint32_t)strtoul(s + 1, NULL, 16)};
        return 0;
    }
    if (!*s || strlen(s) > 3)
        return -1;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    int v = atoi(s);
    if (v > 255)
        return -1;
    *c = (ThemeColor){THEME_COLOR_INDEX, (uint32_t)v};
    return 0;
}

/* ---- the file format ------------------------------------------------------------------------ */

static const char *const role_names[UI_C_COUNT] = {
    [UI_C_NORMAL] = "normal", [UI_C_TITLE] = "title",   [UI_C_TAB] = "tab",
    [UI_C_STATUS] = "status", [UI_C_DIM] = "dim",       [UI_C_ACCENT] = "accent",
    [UI_C_SELECT] = "select", [UI_C_GOOD] = "good",     [UI_C_WARN] = "warn",
    [UI_C_BAD] = "bad",
};

static const struct {
    const char *name;
    unsigned bit;
} attr_names[] = {
    {"bold", THEME_BOLD},   {"underline", THEME_UNDERLINE}, {"reverse", THEME_REVERSE},
    {"dim", THEME_DIM},     {"italic", THEME_ITALIC},
};

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* "FG [on BG] [ATTR...]" (words in any order; "on" introduces the background). */
static int parse_style(char *v, ThemeStyle *st, const char *file, int line, Err *err) {
    ThemeStyle s = {.set = 1};
    int have_fg = 0, have_bg = 0;
    char *save = NULL;
    for (char *w = strtok_r(v, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        int is_bg = 0;
        if (strcasecmp(w, "on") == 0) {
            w = strtok_r(NULL, " \t", &save);
            if (!w)
                return err_set(err, ERR_FORMAT, "%s:%d: 'on' needs a background colour after it",
                               file, line);
            is_bg = 1;
        }
        unsigned bit = 0;
        for (size_t i = 0; !is_bg && i < ARRAY_LEN(attr_names); i++)
            if (strcasecmp(w, attr_names[i].name) == 0)
                bit = attr_names[i].bit;
        if (bit) {
            s.attrs |= bit;
            continue;
        }
        ThemeColor c;
        if (theme_color_parse(w, &c) != 0)
            return err_set(err, ERR_FORMAT,
                           "%s:%d: '%s' is not a colour or attribute (colours: default, black, "
                           "red, ..., white, bright-NAME, 0-255, #rrggbb; attributes: bold, "
                           "underline, reverse, dim, italic)",
                           file, line, w);
        if (is_bg ? have_bg : have_fg)
            return err_set(err, ERR_FORMAT, "%s:%d: two %s colours ('%s'); write FG on BG",
                           file, line, is_bg ? "background" : "foreground", w);
        if (is_bg) {
            s.bg = c;
            have_bg = 1;
        } else {
            s.fg = c;
            have_fg = 1;
        }
    }
    if (!have_fg && !have_bg && !s.attrs)
        return err_set(err, ERR_FORMAT, "%s:%d: empty style (write e.g. 'blue bold' or "
                                        "'black on cyan')", file, line);
    *st = s;
    return 0;
}

int theme_parse(Theme *t, const char *text, const char *file, Err *err) {
    char *copy = xstrdup(text);
    int rc = 0, line = 0;
    char *p = copy;
    while (p) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        line++;
        char *s = trim(p);
        p = nl ? nl + 1 : NULL;
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = err_set(err, ERR_FORMAT, "%s:%d: expected 'key = value', got '%.60s'", file,
                         line, s);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (strcmp(key, "name") == 0) {
            snprintf(t->name, sizeof t->name, "%s", val);
            continue;
        }
        ThemeDepth d = THEME_DEPTH_RGB;
        char *dot = strchr(key, '.');
        if (dot) {
            *dot = '\0';
            if (strcmp(dot + 1, "256") == 0)
                d = THEME_DEPTH_256;
            else if (strcmp(dot + 1, "8") == 0)
                d = THEME_DEPTH_8;
            else {
                rc = err_set(err, ERR_FORMAT, "%s:%d: '%s.%s': the depth after the dot is 256 "
                                              "or 8", file, line, key, dot + 1);
                break;
            }
        }
        int role = -1;
        for (int i = 1; i < UI_C_COUNT; i++)
            if (strcmp(key, role_names[i]) == 0)
                role = i;
        if (role < 0) {
            rc = err_set(err, ERR_FORMAT,
                         "%s:%d: unknown key '%s' (known: name, title, tab, status, dim, accent, "
                         "select, good, warn, bad, each also as KEY.256 and KEY.8)",
                         file, line, key);
            break;
        }
        if ((rc = parse_style(val, &t->style[d][role], file, line, err)))
            break;
    }
    free(copy);
    return rc;
}

/* The built-in theme: the same as assets/themes/safe.theme (tests/ui/test_theme.c checks). */
static const char builtin_text[] =
    "name = safe\n"
    "title = #ffffff on #1c4f80 bold\n"
    "tab = #000000 on #f0b030 bold\n"
    "status = reverse\n"
    "dim = #6c6c6c\n"
    "accent = #0087af bold\n"
    "select = #000000 on #87d7ff bold\n"
    "good = #00875f bold\n"
    "warn = #af5f00 bold\n"
    "bad = #d7005f bold\n"
    "title.256 = 231 on 24 bold\n"
    "tab.256 = 16 on 214 bold\n"
    "dim.256 = 242\n"
    "accent.256 = 31 bold\n"
    "select.256 = 16 on 117 bold\n"
    "good.256 = 29 bold\n"
    "warn.256 = 130 bold\n"
    "bad.256 = 161 bold\n"
    "title.8 = white on blue bold\n"
    "tab.8 = black on yellow underline\n"
    "dim.8 = default\n"
    "accent.8 = magenta\n"
    "select.8 = reverse bold\n"
    "good.8 = default bold\n"
    "warn.8 = red underline\n"
    "bad.8 = red reverse\n";

void theme_builtin(Theme *t) {
    memset(t, 0, sizeof *t);
    Err e = {0};
    int rc = theme_parse(t, builtin_text, "(built-in theme)", &e);
    ASSERT(rc == 0);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the themes in the assets folder, sorted, comma separated, into BUF. */
static void theme_names(char *buf, size_t n) {
    buf[0] = '\0';
    char *dir = assets_dir();
    char *tdir = dir ? xasprintf("%s/themes", dir) : NULL;
    DIR *d = tdir ? opendir(tdir) : NULL;
    struct dirent *e;
    char *names[64];
    size_t k = 0;
    while (d && k < ARRAY_LEN(names) && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 6 && strcmp(e->d_name + l - 6, ".theme") == 0)
            names[k++] = xasprintf("%.*s", (int)(l - 6), e->d_name);
    }
    if (d)
        closedir(d);
    qsort(names, k, sizeof *names, cmp_str);
    size_t used = 0;
    for (size_t i = 0; i < k; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", names[i]);
        if (w > 0 && (size_t)w < n - used)
            used += (size_t)w;
        free(names[i]);
    }
    free(tdir);
    free(dir);
}

int theme_load(Theme *t, const char *name, Err *err) {
    memset(t, 0, sizeof *t);
    char *text = NULL, *path = NULL;
    int rc;
    size_t nl = strlen(name); /* a path: has a '/' or ends in .theme (mine.theme, in the cwd) */
    if (strchr(name, '/') || (nl > 6 && strcmp(name + nl - 6, ".theme") == 0)) {
        path = xstrdup(name);
        unsigned char *buf = NULL;
        size_t len = 0;
        if ((rc = infile_read_all(path, "theme", 1 << 20, &buf, &len, err)))
            goto out;
        text = (char *)buf;
    } else {
        for (const char *c = name; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') {
                rc = err_set(err, ERR_USAGE, "theme '%s': a theme name is letters, digits, - "
                                             "and _ (or give a path to a .theme file)", name);
                goto out;
            }
        char *rel = xasprintf("themes/%s.theme", name);
        path = assets_path(rel);
        Err e = {0};
        rc = assets_read(rel, &text, &e);
        free(rel);
        if (rc) {
            char names[256];
            theme_names(names, sizeof names);
            rc = err_set(err, ERR_NOTFOUND, "unknown theme '%s' (%s%s)", name,
                         names[0] ? "themes: " : "", names[0] ? names : e.msg);
            goto out;
        }
    }
    memset(t->name, 0, sizeof t->name);
    snprintf(t->name, sizeof t->name, "%s", name);
    rc = theme_parse(t, text, path, err);
    snprintf(t->path, sizeof t->path, "%s", path);
    /* a role the file does not give at any depth keeps the built-in one */
    Theme b;
    theme_builtin(&b);
    for (int c = 1; c < UI_C_COUNT; c++) {
        int given = 0;
        for (int d = 0; d < THEME_DEPTHS; d++)
            given |= t->style[d][c].set;
        for (int d = 0; !given && d < THEME_DEPTHS; d++)
            t->style[d][c] = b.style[d][c];
    }
out:
    free(text);
    free(path);
    return rc;
}

static ThemeColor convert(ThemeColor c, ThemeDepth to) {
    if (c.kind == THEME_COLOR_DEFAULT)
        return c;
    if (to == THEME_DEPTH_RGB)
        return c.kind == THEME_COLOR_RGB ? c
                                         : (ThemeColor){THEME_COLOR_RGB, theme_index_rgb((int)c.v)};
    if (to == THEME_DEPTH_256)
        return c.kind == THEME_COLOR_INDEX ? c
                                           : (ThemeColor){THEME_COLOR_INDEX,
                                                          (uint32_t)theme_rgb_to_256(c.v)};
    return (ThemeColor){THEME_COLOR_INDEX, (uint32_t)theme_to_ansi(c, 16)};
}

ThemeStyle theme_resolve(const Theme *t, ThemeDepth depth, UiColor c) {
    ThemeStyle s = {0};
    if (c <= UI_C_NORMAL || c >= UI_C_COUNT)
        return s;
    /* this depth's line, else the nearest richer... or poorer one that is given */
    static const ThemeDepth order[THEME_DEPTHS][THEME_DEPTHS] = {
        {THEME_DEPTH_RGB, THEME_DEPTH_256, THEME_DEPTH_8},
        {THEME_DEPTH_256, THEME_DEPTH_RGB, THEME_DEPTH_8},
        {THEME_DEPTH_8, THEME_DEPTH_256, THEME_DEPTH_RGB},
    };
    for (int i = 0; i < THEME_DEPTHS; i++) {
        const ThemeStyle *g = &t->style[order[depth][i]][c];
        if (g->set) {
            s = *g;
            s.fg = convert(s.fg, depth);
            s.bg = convert(s.bg, depth);
            return s;
        }
    }
    return s;
}

/* ---- the terminal's background ------------------------------------------------------------ */

static int hexval(const char *s, int n, double *out) {
    unsigned v = 0;
    int k = 0;
    for (; k < n && k < 4 && isxdigit((unsigned char)s[k]); k++) {
        int c = tolower((unsigned char)s[k]);
        v = v * 16 + (unsigned)(isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    if (k == 0)
        return 0;
    *out = v / (double)((1u << (4 * k)) - 1);
    return k;
}

int theme_osc11_parse(const char *buf, size_t n) {
    for (size_t i = 0; i + 4 < n; i++) {
        if (buf[i] != '\033' || buf[i + 1] != ']' || strncmp(buf + i + 2, "11;", 3) != 0)
            continue;
        const char *p = buf + i + 5, *end = buf + n;
        if (end - p < 4 || strncmp(p, "rgb:", 4) != 0)
            continue;
        p += 4;
        double c[3];
        int ok = 1;
        for (int k = 0; k < 3 && ok; k++) {
            int used = hexval(p, (int)(end - p), &c[k]);
            if (!used)
                ok = 0;
            p += used;
            if (k < 2) {
                if (p >= end || *p != '/')
                    ok = 0;
                p++;
            }
        }
        if (!ok)
            continue;
        uint32_t rgb = (uint32_t)lround(c[0] * 255) << 16 | (uint32_t)lround(c[1] * 255) << 8 |
                       (uint32_t)lround(c[2] * 255);
        return luminance(rgb) > 0.3;
    }
    return -1;
}

static int da1_seen(const char *buf, size_t n, void *ctx) {
    (void)n, (void)ctx;
    /* DA1's answer "ESC [ ? ... c" ends the replies */
    const char *da = strstr(buf, "\033[?");
    return da && strchr(da, 'c');
}

/* Ask the terminal on FD for its background (OSC 11), fenced by DA1, which every terminal
 * answers: 1 light, 0 dark, -1 unknown. */
static int probe_background(int fd, int timeout_ms) {
    static const char q[] = "\033]11;?\033\\\033[c";
    char buf[512];
    ssize_t n = tty_query(fd, q, buf, sizeof buf, timeout_ms, da1_seen, NULL);
    return n < 0 ? -1 : theme_osc11_parse(buf, (size_t)n);
}

/* $COLORFGBG ("15;0": foreground;background palette indices, set by rxvt and Konsole). */
static int env_background(void) {
    const char *v = getenv("COLORFGBG");
    const char *semi = v ? strrchr(v, ';') : NULL;
    if (!semi || !isdigit((unsigned char)semi[1]))
        return -1;
    int bg = atoi(semi + 1);
    return bg == 7 || (bg >= 9 && bg <= 15) ? 1 : 0;
}

/* ---- process state: the chosen theme ------------------------------------------------------- */

static Theme cur;
static int cur_ok, have_colors;
static ThemeDepth cur_depth = THEME_DEPTH_8;
static ThemePlot cur_plot = THEME_PLOT_BRAILLE;
static char cur_why[96];

int theme_setup(const char *name, const char *name_from, const char *plot,
                const char *plot_from, int fd, int utf8, Err *err) {
    if (!plot_from)
        plot_from = "--plot";
    if (!plot || !*plot || strcmp(plot, "auto") == 0)
        cur_plot = utf8 ? THEME_PLOT_BRAILLE : THEME_PLOT_ASCII;
    else if (strcmp(plot, "braille") == 0)
        cur_plot = THEME_PLOT_BRAILLE;
    else if (strcmp(plot, "blocks") == 0)
        cur_plot = THEME_PLOT_BLOCKS;
    else if (strcmp(plot, "ascii") == 0)
        cur_plot = THEME_PLOT_ASCII;
    else
        return err_set(err, ERR_USAGE, "%s %s: unknown (use braille, blocks, ascii or auto)",
                       plot_from, plot);
    char why_by[64];
    snprintf(why_by, sizeof why_by, "chosen by %s", name_from ? name_from : "--theme");
    const char *why = why_by;
    if (!name || !*name) {
        int light = probe_background(fd, 200);
        why = light > 0 ? "the terminal's background is light"
                        : "the terminal's background is dark";
        if (light < 0) {
            light = env_background();
            why = light > 0 ? "$COLORFGBG says the background is light"
                            : "$COLORFGBG says the background is dark";
        }
        if (light < 0)
            why = "the terminal did not say its background: colours that read on both";
        name = light > 0 ? "light" : light == 0 ? "dark" : "safe";
        Err e = {0};
        if (theme_load(&cur, name, &e) != 0) {
            log_warn("ui: %s; using the built-in theme", e.msg);
            theme_builtin(&cur);
            why = "built-in: no assets folder";
        }
    } else if (theme_load(&cur, name, err) != 0) {
        return err->code;
    }
    snprintf(cur_why, sizeof cur_why, "%s", why);
    cur_ok = 1;
    log_info("ui: theme %s (%s), plots %s", cur.name, cur_why, theme_plot_name(cur_plot));
    return 0;
}

/* The curses colour number of C at the current depth (-1: the terminal's default). */
static int color_number(ThemeColor c) {
    if (c.kind == THEME_COLOR_DEFAULT)
        return -1;
    if (cur_depth == THEME_DEPTH_8)
        return theme_to_ansi(c, COLORS);
    /* direct colour: values 0..7 are the ANSI palette there (and bold turns them bright,
     * black into grey), so near-black stands in for them */
    if (cur_depth == THEME_DEPTH_RGB && c.v < 8)
        return 0x010101;
    return (int)c.v;
}

void theme_colors_init(void) {
    if (!cur_ok)
        theme_builtin(&cur), cur_ok = 1;
    have_colors = has_colors();
    if (!have_colors)
        return;
    start_color();
    use_default_colors();
    cur_depth = COLORS >= 0x1000000 ? THEME_DEPTH_RGB
                : COLORS >= 256     ? THEME_DEPTH_256
                                    : THEME_DEPTH_8;
    for (int c = 1; c < UI_C_COUNT; c++) {
        ThemeStyle s = theme_resolve(&cur, cur_depth, (UiColor)c);
        int fg = color_number(s.fg), bg = color_number(s.bg);
        if (cur_depth == THEME_DEPTH_RGB)
            init_extended_pair(c, fg, bg);
        else
            init_pair((short)c, (short)fg, (short)bg);
    }
}

attr_t theme_attr(UiColor c) {
    if (c <= UI_C_NORMAL || c >= UI_C_COUNT)
        return A_NORMAL;
    ThemeStyle s = theme_resolve(&cur, have_colors ? cur_depth : THEME_DEPTH_8, c);
    attr_t a = A_NORMAL;
    if (s.attrs & THEME_BOLD)
        a |= A_BOLD;
    if (s.attrs & THEME_UNDERLINE)
        a |= A_UNDERLINE;
    if (s.attrs & THEME_REVERSE)
        a |= A_REVERSE;
    if (s.attrs & THEME_DIM)
        a |= A_DIM;
    if (s.attrs & THEME_ITALIC)
        a |= A_ITALIC;
    if (have_colors)
        return a | COLOR_PAIR(c);
    /* no colours: a coloured band becomes reverse video */
    if (s.bg.kind != THEME_COLOR_DEFAULT)
        a |= A_REVERSE;
    return a;
}

ThemePlot theme_plot(void) { return cur_plot; }

void theme_plot_set(ThemePlot p) { cur_plot = p; }

const char *theme_plot_name(ThemePlot p) {
    return p == THEME_PLOT_ASCII ? "ascii" : p == THEME_PLOT_BLOCKS ? "blocks" : "braille";
}

ThemePlot theme_plot_next(ThemePlot p) { return (ThemePlot)((p + 1) % 3); }

/* ---- help texts and rubrics ----------------------------------------------------------------- */

int theme_help(const char *screen, const ScreenKey **out) {
    static ScreenKey lines[64];
    static char *text;
    static char plot_line[128], theme_line[192], other_line[320];
    free(text);
    text = NULL;
    int n = 0;
    lines[n++] = (ScreenKey){"", ""};
    char rel[64];
    int k = snprintf(rel, sizeof rel, "help/%s.txt", screen);
    for (int i = 5; i < k; i++)
        rel[i] = (char)tolower((unsigned char)rel[i]);
    if (assets_read(rel, &text, NULL) == 0) {
        char *p = text;
        while (p && *p && n < 58) { /* room for the blank line and the three below */
            char *nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            if (*p != '#')
                lines[n++] = (ScreenKey){"", p};
            p = nl ? nl + 1 : NULL;
        }
        while (n && !lines[n - 1].what[0])
            n--;
        if (n)
            lines[n++] = (ScreenKey){"", ""};
    }
    snprintf(plot_line, sizeof plot_line,
             "%s (easel --plot braille|blocks|ascii; b on a plot screen: the next of them)",
             theme_plot_name(cur_plot));
    snprintf(theme_line, sizeof theme_line, "%s, %s colours: %s",
             cur.name[0] ? cur.name : "built-in",
             !have_colors                   ? "no"
             : cur_depth == THEME_DEPTH_RGB ? "true"
             : cur_depth == THEME_DEPTH_256 ? "256"
                                            : "8",
             cur_why[0] ? cur_why : "the default");
    char names[256];
    theme_names(names, sizeof names);
    snprintf(other_line, sizeof other_line, "others: easel --theme NAME or $EASEL_THEME (%s)",
             names[0] ? names : "no assets folder");
    lines[n++] = (ScreenKey){"plots", plot_line};
    lines[n++] = (ScreenKey){"theme", theme_line};
    lines[n++] = (ScreenKey){"", other_line};
    *out = lines;
    return n;
}

void theme_rubric(const char *aspect, char **rubric) {
    for (const char *c = aspect; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            return;
    char *rel = xasprintf("rubrics/%s.txt", aspect), *text = NULL;
    if (assets_read(rel, &text, NULL) == 0) {
        /* the lines that are not comments, joined by spaces */
        size_t n = 0;
        char *out = xmalloc(strlen(text) + 1), *p = text;
        while (p && *p) {
            char *nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            char *s = trim(p);
            if (*s && *s != '#')
                n += (size_t)sprintf(out + n, "%s%s", n ? " " : "", s);
            p = nl ? nl + 1 : NULL;
        }
        if (n) {
            free(*rubric);
            *rubric = out;
        } else {
            free(out);
        }
    }
    free(text);
    free(rel);
}
