/* gfx_probe — what the terminal can do, asked once at start. See gfx.h.
 *
 * One batch: XTSMGRAPHICS colour registers (CSI ? 1;1;0 S), XTSMGRAPHICS max sixel geometry
 * (CSI ? 2;1;0 S), cell size (CSI 16 t), then DA1 (CSI c). Terminals answer in order and all
 * answer DA1, so the DA1 reply means "no more replies are coming"; a terminal that answers
 * nothing costs the timeout (~250 ms) and no more. The tty is in raw mode only for the probe.
 */
#include "gfx.h"

#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <curses.h>
#include <term.h>
#include <unistd.h>

#include "base.h"
#include "tty_query.h"

/* Parse "a;b;c" parameters; returns how many (at most max). */
static int parse_params(const char *p, size_t n, int *v, int max) {
    int k = 0, cur = 0, any = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            cur = cur * 10 + (p[i] - '0');
            if (cur > 1000000)
                cur = 1000000;
            any = 1;
        } else if (p[i] == ';') {
            if (k < max)
                v[k++] = any ? cur : 0;
            cur = 0;
            any = 0;
        }
    }
    if (k < max && (any || n > 0))
        v[k++] = cur;
    return k;
}

int gfx_probe_parse(const char *buf, size_t n, GfxCaps *caps) {
    int da1 = 0;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\033' || i + 1 >= n || buf[i + 1] != '[')
            continue;
        size_t j = i + 2;
        int priv = 0;
        if (j < n && buf[j] == '?') {
            priv = 1;
            j++;
        }
        size_t start = j;
        while (j < n && ((buf[j] >= '0' && buf[j] <= '9') || buf[j] == ';'))
            j++;
        if (j >= n)
            break; /* truncated */
        char final = buf[j];
        int v[32];
        int k = parse_params(buf + start, j - start, v, 32);
        if (priv && final == 'c') {
            da1 = 1;
            caps->answered = 1;
            for (int a = 1; a < k; a++) /* v[0] is the terminal class */
                if (v[a] == 4)
                    caps->sixel = 1;
        } else if (priv && final == 'S' && k >= 3 && v[1] == 0) {
            if (v[0] == 1 && v[2] > 0)
                caps->color_registers = v[2];
            else if (v[0] == 2 && k >= 4 && v[2] > 0 && v[3] > 0) {
                caps->max_w = v[2];
                caps->max_h = v[3];
            }
        } else if (!priv && final == 't' && k >= 3 && v[0] == 6 && v[1] > 0 && v[2] > 0) {
            caps->cell_h = v[1];
            caps->cell_w = v[2];
            caps->cell_from = 1;
        }
        i = j;
    }
    return da1;
}

static int env_has(const char *name) {
    const char *v = getenv(name);
    return v && *v;
}

/* terminfo says the terminal takes 24-bit colour: the RGB capability (ncurses' direct-colour
 * entries such as xterm-direct) or tmux's Tc extension. Reads the entry without touching
 * the terminal; ncurses' current terminal is left as it was. */
static int terminfo_rgb(const char *term) {
    TERMINAL *saved = cur_term;
    int e = 0, rgb = 0;
    if (setupterm((char *)term, -1, &e) == OK) {
        rgb = tigetflag("RGB") > 0 || tigetflag("Tc") > 0;
        del_curterm(cur_term);
    }
    set_curterm(saved);
    return rgb;
}

static void probe_env(GfxCaps *caps) {
    const char *term = getenv("TERM");
    if (env_has("TMUX") || (term && strncmp(term, "tmux", 4) == 0))
        caps->in_mux = GFX_MUX_TMUX;
    else if (env_has("STY") || (term && strncmp(term, "screen", 6) == 0))
        caps->in_mux = GFX_MUX_SCREEN;
    const char *ct = getenv("COLORTERM");
    caps->truecolor = ct && (strcasecmp(ct, "truecolor") == 0 || strcasecmp(ct, "24bit") == 0);
    if (!caps->truecolor && term && *term)
        caps->truecolor = terminfo_rgb(term);
    const char *cs = nl_langinfo(CODESET);
    caps->utf8 = cs && (strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "utf8") == 0);
}

/* The replies are complete once they parse to an answer (DA1 came). */
static int replies_done(const char *buf, size_t n, void *ctx) {
    GfxCaps tmp = *(const GfxCaps *)ctx;
    return gfx_probe_parse(buf, n, &tmp);
}

static void probe_tty(int fd, GfxCaps *caps, int timeout_ms) {
    static const char q[] = "\033[?1;1;0S\033[?2;1;0S\033[16t\033[c";
    char buf[1024];
    ssize_t n = tty_query(fd, q, buf, sizeof buf, timeout_ms, replies_done, caps);
    if (n >= 0)
        gfx_probe_parse(buf, (size_t)n, caps);
}

void gfx_probe(int fd, GfxCaps *caps, int timeout_ms) {
    memset(caps, 0, sizeof *caps);
    probe_env(caps);
    if (isatty(fd))
        probe_tty(fd, caps, timeout_ms);
    if (!caps->cell_from) {
        struct winsize ws;
        if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0 &&
            ws.ws_xpixel >= ws.ws_col * 4 && ws.ws_ypixel >= ws.ws_row * 6) {
            caps->cell_w = ws.ws_xpixel / ws.ws_col;
            caps->cell_h = ws.ws_ypixel / ws.ws_row;
            caps->cell_from = 2;
        }
    }
    if (!caps->cell_from) {
        caps->cell_w = 10;
        caps->cell_h = 20;
    }
}

int gfx_mode_choose(const GfxCaps *caps, const char *override, char *note, size_t note_size,
                    Err *err) {
    if (note_size)
        note[0] = '\0';
    int fallback = caps->utf8 ? GFX_BLOCKS : GFX_ASCII;
    if (override && *override) {
        static const char *const names[] = {"none", "ascii", "blocks", "sixel"};
        int m = -1;
        for (int i = 0; i < 4; i++)
            if (strcasecmp(override, names[i]) == 0)
                m = i;
        if (m < 0) {
            err_set(err, ERR_USAGE,
                    "--graphics %s: unknown mode (use sixel, blocks, ascii or none)", override);
            return -1;
        }
        /* A multiplexer answers the probe itself: without 4 in its DA1 it drops sixel, and
         * the image box would stay empty with no word. tmux >= 3.4 built with sixel says 4. */
        if (m == GFX_SIXEL && caps->in_mux && !caps->sixel) {
            if (note_size)
                snprintf(note, note_size, "sixel requested but %s does not pass it through; "
                         "showing %s%s",
                         caps->in_mux == GFX_MUX_TMUX ? "tmux" : "GNU screen",
                         gfx_mode_name(fallback),
                         caps->in_mux == GFX_MUX_TMUX
                             ? " (set -g allow-passthrough / tmux \xe2\x89\xa5 3.4 with sixel)"
                             : "");
            return fallback;
        }
        return m;
    }
    if (caps->sixel && !caps->in_mux)
        return GFX_SIXEL;
    return fallback;
}

const char *gfx_mode_name(GfxMode mode) {
    switch (mode) {
    case GFX_SIXEL: return "sixel";
    case GFX_BLOCKS: return "blocks";
    case GFX_ASCII: return "ascii";
    default: return "none";
    }
}
