/* app — the TUI main loop, the screen table, title bar, status line, help overlay, prompt.
 *
 * The loop (UI thread only):
 *
 *     probe terminal ─> initscr ─> screens init ─> ┌─────────────────────────────────────┐
 *                                                 │ poll(stdin, wake pipe, next tick)   │
 *                                                 │ SIGWINCH flag? resize, full redraw  │
 *                                                 │ drain wake pipe -> screen tick       │
 *                                                 │ 1 s passed?     -> screen tick       │
 *                                                 │ keys: prompt > help > app > screen   │
 *                                                 │ dirty? erase, draw, doupdate,        │
 *                                                 │        screen after_refresh (images) │
 *                                                 └──────────────── until q ─────────────┘
 *
 * Invariants: only this thread calls ncurses or writes to the terminal. Raw output (images)
 * is written only after doupdate(), so ncurses' idea of the cursor is never wrong when it
 * writes (terminal-graphics.md, pitfall 1). idlok/idcok are off, so ncurses never scrolls or
 * shifts a line under an image. Every path out of app_run ends curses (also ASSERT, through
 * base_set_fail_hook).
 */
#include "app.h"
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <wchar.h>

#include "base.h"
#include "gfx.h"
#include "list.h"
#include "log.h"
#include "screen.h"
#include "session.h"
#include "store_annotate.h"
#include "theme.h"

/* ---- the screen table: one line per screen, in Tab order (see ui/screen.h) -------------- */
extern const ScreenClass screen_annotate;
extern const ScreenClass screen_quality;
extern const ScreenClass screen_jobs;
extern const ScreenClass screen_gpu;
extern const ScreenClass screen_monitor;
extern const ScreenClass screen_ab; /* ab16: blind A/B judging (ui/screen_ab.c) */

static const ScreenClass *const screens[] = {
    &screen_annotate,
    &screen_quality,
    &screen_jobs,
    &screen_monitor,
    &screen_gpu,
    &screen_ab,
};
#define N_SCREENS ((int)ARRAY_LEN(screens))

#define TICK_SECONDS 0.5
#define STATUS_SECONDS 4.0
#define MAX_QUIT_GUARDS 8

struct App {
    AppConfig cfg;
    Session *session;            /* the store, its checks, the worker pool (src/app/session.h) */
    Store *st;                   /* session_store(session) */
    char *annotator;
    GfxCaps caps;
    GfxMode mode;
    int wake_rd;
    int wake_wr;
    void *state[N_SCREENS];     /* NULL: the screen could not start here */
    int cur;
    int dirty;
    int full;                    /* the next after_refresh must re-send raw output */
    int help;                    /* help overlay shown */
    UiList help_list;            /* its lines, a view (ui/list.h) */
    char status[256];
    int status_err;
    double status_until;
    int prompt;                  /* prompt active */
    char prompt_label[64];
    char prompt_buf[256];
    size_t prompt_len;
    AppPromptDone prompt_done;
    void *prompt_st;
    int quit;
    double next_tick;
    AppQuitGuard guards[MAX_QUIT_GUARDS];
    int n_guards;
    int asking;                  /* 1 + index of the guard whose question is shown, or 0 */
    char question[256];
    char exit_note[512];
    char *login;                 /* the Unix login (identity_login) */
};

static volatile sig_atomic_t resized;
static volatile sig_atomic_t wake_fd_signal = -1;

static void on_winch(int sig) {
    (void)sig;
    resized = 1;
    int fd = wake_fd_signal;
    if (fd >= 0) {
        int saved = errno;
        ssize_t r = write(fd, "w", 1);
        (void)r;
        errno = saved;
    }
}

static void end_curses_hook(void) {
    if (!isendwin())
        endwin();
}

/* ---- drawing helpers (screen.h) ---------------------------------------------------------- */

attr_t ui_attr(UiColor c) { return theme_attr(c); }

static void colors_init(void) { theme_colors_init(); }

int ui_put(int y, int x, int w, attr_t a, const char *s) {
    if (w <= 0 || y < 0 || y >= LINES || !s)
        return 0;
    mbstate_t ms;
    memset(&ms, 0, sizeof ms);
    int used = 0;
    size_t off = 0, n = strlen(s);
    while (off < n) {
        wchar_t wc;
        size_t k = mbrtowc(&wc, s + off, n - off, &ms);
        if (k == (size_t)-1 || k == (size_t)-2) { /* invalid: show '?' for the byte */
            memset(&ms, 0, sizeof ms);
            if (used + 1 > w)
                break;
            mvaddch(y, x + used, '?' | a);
            used++;
            off++;
            continue;
        }
        if (k == 0)
            break;
        int cw = wcwidth(wc);
        if (wc == L'\t' || wc == L'\n' || wc == L'\r') {
            wc = L' ';
            cw = 1;
        }
        if (cw < 0)
            cw = 1, wc = L'?';
        if (used + cw > w)
            break;
        cchar_t cc;
        wchar_t str[2] = {wc, 0};
        setcchar(&cc, str, a, (short)PAIR_NUMBER(a), NULL);
        mvadd_wch(y, x + used, &cc);
        used += cw;
        off += k;
    }
    return used;
}

int ui_putf(int y, int x, int w, attr_t a, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return ui_put(y, x, w, a, buf);
}

void ui_fill(UiRect r, attr_t a) {
    for (int y = r.y; y < r.y + r.h; y++) {
        if (y < 0 || y >= LINES)
            continue;
        move(y, r.x);
        attrset(a);
        for (int x = 0; x < r.w && r.x + x < COLS; x++)
            addch(' ');
        attrset(A_NORMAL);
    }
}

void ui_box(UiRect r, attr_t a, const char *title) {
    if (r.w < 2 || r.h < 2)
        return;
    attron(a);
    mvhline(r.y, r.x + 1, ACS_HLINE, r.w - 2);
    mvhline(r.y + r.h - 1, r.x + 1, ACS_HLINE, r.w - 2);
    mvvline(r.y + 1, r.x, ACS_VLINE, r.h - 2);
    mvvline(r.y + 1, r.x + r.w - 1, ACS_VLINE, r.h - 2);
    mvaddch(r.y, r.x, ACS_ULCORNER);
    mvaddch(r.y, r.x + r.w - 1, ACS_URCORNER);
    mvaddch(r.y + r.h - 1, r.x, ACS_LLCORNER);
    mvaddch(r.y + r.h - 1, r.x + r.w - 1, ACS_LRCORNER);
    attroff(a);
    if (title && *title)
        ui_putf(r.y, r.x + 2, r.w - 4, a | A_BOLD, " %s ", title);
}

/* ---- services ------------------------------------------------------------------------------ */

Store *app_store(App *app) { return app->st; }
Session *app_session(App *app) { return app->session; }
const AppConfig *app_config(App *app) { return &app->cfg; }
const char *app_annotator(App *app) { return app->annotator; }
GfxMode app_gfx_mode(App *app) { return app->mode; }
const struct GfxCaps *app_gfx_caps(App *app) { return &app->caps; }
void app_clear_terminal(App *app) { app->full = 1; }

void app_wake(App *app) {
    ssize_t r = write(app->wake_wr, "w", 1); /* non-blocking: a full pipe already wakes */
    (void)r;
}

static void status_v(App *app, int is_err, const char *fmt, va_list ap) {
    vsnprintf(app->status, sizeof app->status, fmt, ap);
    app->status_err = is_err;
    app->status_until = is_err ? 1e300 : base_now() + STATUS_SECONDS;
    app->dirty = 1;
}

void app_status(App *app, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    status_v(app, 0, fmt, ap);
    va_end(ap);
}

void app_status_error(App *app, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    status_v(app, 1, fmt, ap);
    va_end(ap);
    log_warn("ui: %s", app->status);
}

void app_status_clear(App *app) {
    if (app->status[0])
        app->dirty = 1;
    app->status[0] = '\0';
    app->status_err = 0;
    app->status_until = 0;
}

void app_exit_note(App *app, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(app->exit_note, sizeof app->exit_note, fmt, ap);
    va_end(ap);
}

void app_add_quit_guard(App *app, AppQuitGuard guard) {
    ASSERT(app->n_guards < MAX_QUIT_GUARDS);
    app->guards[app->n_guards++] = guard;
}

/* Ask the guards from index FROM on; quit when none asks. */
static void quit_ask_from(App *app, int from) {
    for (int i = from; i < app->n_guards; i++) {
        AppQuitGuard *g = &app->guards[i];
        app->question[0] = '\0';
        if (g->ask(g->st, app, app->question, sizeof app->question)) {
            app->asking = i + 1;
            app->dirty = 1;
            return;
        }
    }
    app->asking = 0;
    app->quit = 1;
}

static void quit_answer(App *app, int ch) {
    AppQuitGuard *g = &app->guards[app->asking - 1];
    int a = ch == 27 ? APP_QUIT_STAY : g->answer(g->st, app, ch);
    if (a == APP_QUIT_NOT_AN_ANSWER) {
        beep();
        return;
    }
    int next = app->asking;
    app->asking = 0;
    app->dirty = 1;
    app->full = 1; /* the screen under the question may hold an image */
    if (a == APP_QUIT_GO)
        quit_ask_from(app, next);
}

void app_prompt(App *app, const char *label, AppPromptDone done, void *st) {
    app->prompt = 1;
    base_strlcpy(app->prompt_label, label, sizeof app->prompt_label);
    app->prompt_buf[0] = '\0';
    app->prompt_len = 0;
    app->prompt_done = done;
    app->prompt_st = st;
    app->dirty = 1;
}

int app_term_write(App *app, const void *buf, size_t n) {
    (void)app;
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pf = {.fd = STDOUT_FILENO, .events = POLLOUT};
                poll(&pf, 1, 100);
                continue;
            }
            return ERR_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

const char *const *app_screen_names(void) {
    static const char *names[N_SCREENS + 1];
    for (int i = 0; i < N_SCREENS; i++)
        names[i] = screens[i]->name;
    names[N_SCREENS] = NULL;
    return names;
}

static void screen_show(App *app, int i) {
    if (i == app->cur || !app->state[i])
        return;
    const ScreenClass *old = screens[app->cur];
    app_status_clear(app); /* the old screen's message is stale on the new one */
    if (app->state[app->cur] && old->leave)
        old->leave(app->state[app->cur], app);
    app->cur = i;
    if (screens[i]->enter)
        screens[i]->enter(app->state[i], app);
    if (screens[i]->tick)
        (void)screens[i]->tick(app->state[i], app, base_now()); /* redrawn below anyway */
    app->dirty = 1;
    app->full = 1;
}

static int screen_find(const char *name) {
    for (int i = 0; i < N_SCREENS; i++)
        if (strcasecmp(screens[i]->name, name) == 0)
            return i;
    return -1;
}

int app_switch(App *app, const char *name, int64_t id, Err *err) {
    int i = screen_find(name);
    if (i < 0 || !app->state[i])
        return err_set(err, ERR_NOTFOUND, "no screen '%s' here", name);
    screen_show(app, i);
    int rc = id >= 0 && screens[i]->open ? screens[i]->open(app->state[i], app, id, err) : 0;
    app->dirty = 1; /* the screen opened something: drawn at the next turn */
    return rc;
}

/* ---- frame --------------------------------------------------------------------------------- */

/* The text of tab I at compactness LEVEL: 0 " F2 Annotate " + gap, 1 "F2 Annotate" + gap,
 * 2 the current tab so and the others just "F3". Returns its width with the gap. */
static int tab_text(App *app, int i, int level, char *t, size_t n) {
    if (level == 0)
        snprintf(t, n, " F%d %s ", screens[i]->fkey, screens[i]->name);
    else if (level == 1 || i == app->cur)
        snprintf(t, n, "F%d %s", screens[i]->fkey, screens[i]->name);
    else
        snprintf(t, n, "F%d", screens[i]->fkey);
    return (int)strlen(t) + 1;
}

static void draw_title(App *app) {
    ui_fill((UiRect){0, 0, 1, COLS}, ui_attr(UI_C_TITLE));
    /* who you are, always (the store's path only where it fits) */
    char who[160], right[600];
    if (app->login && strcmp(app->login, app->annotator) != 0)
        snprintf(who, sizeof who, "%s (login %s) ", app->annotator, app->login);
    else
        snprintf(who, sizeof who, "%s ", app->annotator);
    int ww = (int)strlen(who);
    /* the tabs, compacted until who you are fits beside them */
    int level = 0, brand = 7;
    for (; level < 3; level++) {
        int tw = level == 0 ? brand : 1;
        char t[64];
        for (int i = 0; i < N_SCREENS; i++)
            if (app->state[i])
                tw += tab_text(app, i, level, t, sizeof t);
        if (tw + ww + 1 <= COLS)
            break;
    }
    if (level == 3)
        level = 2;
    int x = level == 0 ? ui_put(0, 0, COLS, ui_attr(UI_C_TITLE) | A_BOLD, " easel ") : 1;
    for (int i = 0; i < N_SCREENS && x < COLS; i++) {
        if (!app->state[i])
            continue;
        attr_t a = i == app->cur ? ui_attr(UI_C_TAB) : ui_attr(UI_C_TITLE);
        char t[64];
        tab_text(app, i, level, t, sizeof t);
        x += ui_put(0, x, COLS - x, a, t);
        x += ui_put(0, x, COLS - x, ui_attr(UI_C_TITLE), " ");
    }
    snprintf(right, sizeof right, "%s %s ", who, store_path(app->st));
    int rw = (int)strlen(right);
    if (x + rw + 1 >= COLS) {
        snprintf(right, sizeof right, "%s", who);
        rw = ww;
    }
    if (rw > COLS - x - 1)
        rw = COLS - x - 1;
    if (rw > 0)
        ui_put(0, COLS - rw, rw, ui_attr(UI_C_TITLE), right);
}

static void draw_status(App *app) {
    int y = LINES - 1;
    ui_fill((UiRect){y, 0, 1, COLS}, ui_attr(UI_C_STATUS));
    if (app->prompt) {
        int x = ui_putf(y, 0, COLS, ui_attr(UI_C_STATUS) | A_BOLD, " %s ", app->prompt_label);
        x += ui_put(y, x, COLS - x - 1, ui_attr(UI_C_STATUS), app->prompt_buf);
        ui_put(y, x, 1, ui_attr(UI_C_STATUS) | A_REVERSE, " ");
        return;
    }
    if (app->asking) {
        ui_putf(y, 0, COLS, ui_attr(UI_C_STATUS) | A_BOLD, " %s", app->question);
        return;
    }
    if (app->status[0] && base_now() < app->status_until) {
        attr_t a = ui_attr(UI_C_STATUS) | (app->status_err ? A_BOLD : 0);
        ui_putf(y, 0, COLS, a, " %s%s", app->status_err ? "! " : "", app->status);
        return;
    }
    ui_put(y, 0, COLS, ui_attr(UI_C_STATUS),
           " ? help   Tab/F-keys switch screen   q quit");
}

static const ScreenKey global_keys[] = {
    {"?  F1", "this help (the arrows, j / k, PgUp / PgDn, Home / End scroll it; any other key "
              "closes it)"},
    {"Tab  Shift-Tab", "next / previous screen"},
    {"F2..F12", "go to the screen with that key (see the title bar)"},
    {"Ctrl-L", "redraw the whole terminal"},
    {"q", "quit (everything you committed is already saved; asks first while jobs run here "
          "or values are not saved)"},
    {NULL, NULL},
};

static int help_lines(App *app, const ScreenKey **lines, int max) {
    int n = 0;
    const ScreenKey *k = screens[app->cur]->keys;
    for (; k && k->key && n < max; k++)
        lines[n++] = k;
    if (n < max)
        lines[n++] = NULL; /* separator */
    for (k = global_keys; k->key && n < max; k++)
        lines[n++] = k;
    const ScreenKey *more; /* assets/help/SCREEN.txt, the plot glyphs, the theme */
    int n_more = theme_help(screens[app->cur]->name, &more);
    for (int i = 0; i < n_more && n < max; i++)
        lines[n++] = &more[i];
    return n;
}

/* One row of the help overlay: a line's key (NULL on the rows its text wraps onto) and a piece
 * of its text; line NULL is the "everywhere:" separator. */
typedef struct HelpRow {
    const ScreenKey *line;
    const char *key;
    const char *text;
    int len; /* bytes of text on this row */
} HelpRow;

typedef struct HelpRows {
    const HelpRow *rows;
    int kw; /* key column */
} HelpRows;

static void help_row(void *p, int i, UiRect row, int selected) {
    (void)selected; /* a view: nothing is selected */
    const HelpRows *h = p;
    const HelpRow *r = &h->rows[i];
    if (!r->line) {
        ui_put(row.y, row.x, row.w, ui_attr(UI_C_DIM), "everywhere:");
        return;
    }
    if (r->key)
        ui_put(row.y, row.x, h->kw, ui_attr(UI_C_ACCENT), r->key);
    char buf[512];
    int n = r->len < (int)sizeof buf - 1 ? r->len : (int)sizeof buf - 1;
    memcpy(buf, r->text, (size_t)n);
    buf[n] = '\0';
    ui_put(row.y, row.x + 2 + h->kw, row.w - 2 - h->kw, A_NORMAL, buf);
}

/* The N help lines as rows of at most TW bytes of text (broken at spaces, never inside a
 * UTF-8 character; bytes >= columns, so a row always fits), at most MAX rows. */
static int help_wrap(const ScreenKey **lines, int n, int tw, HelpRow *rows, int max) {
    int k = 0;
    for (int i = 0; i < n && k < max; i++) {
        if (!lines[i]) {
            rows[k++] = (HelpRow){0};
            continue;
        }
        const char *s = lines[i]->what;
        const char *key = lines[i]->key;
        do {
            int len = (int)strlen(s), cut = len;
            if (len > tw) {
                cut = tw;
                while (cut > 0 && s[cut] != ' ')
                    cut--;
                if (cut == 0) { /* one word wider than the column: cut it */
                    cut = tw;
                    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
                        cut--;
                }
            }
            rows[k++] = (HelpRow){lines[i], key, s, cut};
            key = NULL;
            s += cut;
            while (*s == ' ')
                s++;
        } while (*s && k < max);
    }
    return k;
}

static void draw_help(App *app) {
    const ScreenKey *lines[128];
    int n = help_lines(app, lines, 128);
    int kw = 4, ww = 20;
    for (int i = 0; i < n; i++) {
        if (lines[i] && (int)strlen(lines[i]->key) > kw)
            kw = (int)strlen(lines[i]->key);
        if (lines[i] && (int)strlen(lines[i]->what) > ww)
            ww = (int)strlen(lines[i]->what);
    }
    int w = kw + ww + 7;
    if (w > COLS - 2)
        w = COLS - 2;
    static HelpRow rows[512]; /* the UI thread's alone */
    int tw = w - 6 - kw;      /* the text column: box, margins, key column and gap */
    int nr = tw >= 8 ? help_wrap(lines, n, tw, rows, 512) : 0;
    int h = nr + 4 < LINES - 2 ? nr + 4 : LINES - 2;
    if (w < 20 || h < 5 || nr == 0)
        return;
    UiRect r = {(LINES - h) / 2, (COLS - w) / 2, h, w};
    /* blank one more column each side: the screen under it must not show through at the
     * terminal's edge as stray letters beside the border */
    ui_fill((UiRect){r.y, r.x > 0 ? r.x - 1 : 0, h, w + (r.x > 0 ? 2 : 1)}, A_NORMAL);
    char title[96];
    snprintf(title, sizeof title, "%s — keys", screens[app->cur]->name);
    ui_box(r, ui_attr(UI_C_ACCENT), title);
    HelpRows hr = {rows, kw};
    app->help_list.n = nr;
    ui_list_draw(&app->help_list, (UiRect){r.y + 2, r.x + 2, h - 4, w - 4}, NULL, 0, help_row,
                 &hr);
    if (nr > app->help_list.rows)
        ui_put(r.y + h - 1, r.x + 2, w - 4, ui_attr(UI_C_DIM),
               " Up/Down PgUp/PgDn Home/End scroll ");
}

static void redraw(App *app) {
    if (app->full)
        clearok(curscr, TRUE);
    erase();
    draw_title(app);
    UiRect body = {1, 0, LINES - 2, COLS};
    if (LINES < 24 || COLS < 80) {
        ui_putf(2, 1, COLS - 2, ui_attr(UI_C_WARN), "The terminal is %dx%d; easel needs 80x24.",
                COLS, LINES);
        ui_put(3, 1, COLS - 2, A_NORMAL, "Enlarge the window (q quits).");
    } else if (app->state[app->cur]) {
        screens[app->cur]->draw(app->state[app->cur], app, body);
    }
    if (app->help)
        draw_help(app);
    draw_status(app);
    wnoutrefresh(stdscr);
    doupdate();
    int full = app->full;
    app->full = 0;
    app->dirty = 0;
    if (!app->help && LINES >= 24 && COLS >= 80 && screens[app->cur]->after_refresh &&
        screens[app->cur]->after_refresh(app->state[app->cur], app, full) ==
            SCREEN_TICK_CHANGED)
        app->dirty = 1; /* drawn again at the next turn */
}

/* ---- input --------------------------------------------------------------------------------- */

static void prompt_key(App *app, int ch) {
    if (ch == 27 || ch == 7 /* Ctrl-G */) {
        app->prompt = 0;
        app->prompt_done(app->prompt_st, app, NULL);
    } else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
        app->prompt = 0;
        app->prompt_done(app->prompt_st, app, app->prompt_buf);
    } else if (ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
        /* drop one UTF-8 character */
        while (app->prompt_len > 0) {
            unsigned char c = (unsigned char)app->prompt_buf[--app->prompt_len];
            if ((c & 0xC0) != 0x80)
                break;
        }
        app->prompt_buf[app->prompt_len] = '\0';
    } else if (ch == 21 /* Ctrl-U */) {
        app->prompt_len = 0;
        app->prompt_buf[0] = '\0';
    } else if (ch >= 32 && ch < 256 && ch != 127 && app->prompt_len + 1 < sizeof app->prompt_buf) {
        app->prompt_buf[app->prompt_len++] = (char)ch;
        app->prompt_buf[app->prompt_len] = '\0';
    }
    app->dirty = 1;
}

static void next_screen(App *app, int dir) {
    for (int k = 1; k <= N_SCREENS; k++) {
        int i = ((app->cur + dir * k) % N_SCREENS + N_SCREENS) % N_SCREENS;
        if (app->state[i]) {
            screen_show(app, i);
            return;
        }
    }
}

static void handle_key(App *app, int ch) {
    if (app->prompt) {
        prompt_key(app, ch);
        return;
    }
    if (app->asking) {
        if (ch != KEY_RESIZE)
            quit_answer(app, ch);
        return;
    }
    if (app->help) {
        if (ui_list_key(&app->help_list, ch) != UI_LIST_NOT_MINE) {
            /* scrolled (or at an end) */
        } else if (ch != KEY_RESIZE) {
            app->help = 0;
            app->full = 1;
        }
        app->dirty = 1;
        return;
    }
    if (app->status_err) { /* an error stays until the next key */
        app->status_err = 0;
        app->status_until = 0;
        app->dirty = 1;
    }
    switch (ch) {
    case 'q':
        quit_ask_from(app, 0);
        return;
    case '?':
    case KEY_F(1):
        app->help = 1;
        app->help_list = (UiList){.view = 1};
        app->dirty = 1;
        app->full = 1; /* clears raw output (images) the overlay's blanks would not cover */
        return;
    case '\t':
        next_screen(app, 1);
        return;
    case KEY_BTAB:
        next_screen(app, -1);
        return;
    case 12: /* Ctrl-L */
        app->full = 1;
        app->dirty = 1;
        return;
    case KEY_RESIZE:
        return;
    default:
        break;
    }
    for (int i = 0; i < N_SCREENS; i++) {
        if (ch == KEY_F(screens[i]->fkey)) {
            if (app->state[i])
                screen_show(app, i);
            else
                app_status_error(app, "%s is not available here", screens[i]->name);
            return;
        }
    }
    if (!app->state[app->cur])
        return;
    if (LINES < 24 || COLS < 80) { /* the screen is not shown: its keys would act blind */
        beep();
        return;
    }
    int r = screens[app->cur]->key(app->state[app->cur], app, ch);
    if (r == SCREEN_KEY_HANDLED)
        app->dirty = 1;
    else if (r == SCREEN_KEY_IGNORED)
        beep(); /* SCREEN_KEY_SAME: the screen's key, nothing to show */
}

static void do_resize(App *app) {
    resized = 0;
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        resizeterm(ws.ws_row, ws.ws_col);
        if (ws.ws_xpixel >= ws.ws_col * 4 && ws.ws_ypixel >= ws.ws_row * 6 &&
            app->caps.cell_from != 1) {
            app->caps.cell_w = ws.ws_xpixel / ws.ws_col;
            app->caps.cell_h = ws.ws_ypixel / ws.ws_row;
        }
    }
    app->full = 1;
    app->dirty = 1;
}

static void tick(App *app) {
    double now = base_now();
    app->next_tick = now + TICK_SECONDS;
    if (app->state[app->cur] && screens[app->cur]->tick &&
        screens[app->cur]->tick(app->state[app->cur], app, now) == SCREEN_TICK_CHANGED)
        app->dirty = 1;
    if (app->status[0] && !app->status_err && now >= app->status_until) {
        app->status[0] = '\0';
        app->dirty = 1;
    }
}

/* After an ESC: if a CSI sequence ncurses did not know follows (a terminal's late answer to
 * the start-up probe, e.g. ESC [ ? 6 2 ; 4 c over a slow link), swallow it, so its digits
 * never reach a screen as keys. Returns 1 if something was dropped. */
static int drop_terminal_reply(void) {
    int c = getch();
    if (c != '[') {
        if (c != ERR)
            ungetch(c);
        return 0;
    }
    for (int n = 0; n < 64; n++) {
        c = getch();
        if (c == ERR || (c >= 0x40 && c <= 0x7e))
            break;
    }
    return 1;
}

static void loop(App *app) {
    app->dirty = 1;
    app->full = 1;
    app->next_tick = base_now();
    while (!app->quit) {
        if (resized)
            do_resize(app);
        if (base_now() >= app->next_tick)
            tick(app);
        if (app->dirty)
            redraw(app);
        int ms = (int)((app->next_tick - base_now()) * 1000.0) + 1;
        if (ms < 0)
            ms = 0;
        struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = app->wake_rd, .events = POLLIN}};
        int r = poll(p, 2, ms);
        if (r < 0 && errno != EINTR)
            break;
        if (r > 0 && (p[1].revents & POLLIN)) {
            char buf[64];
            while (read(app->wake_rd, buf, sizeof buf) > 0) {
            }
            tick(app);
        }
        if (r > 0 && (p[0].revents & (POLLHUP | POLLERR)) && !(p[0].revents & POLLIN))
            break; /* the terminal went away (SSH closed) */
        if (r > 0 && (p[0].revents & POLLIN)) {
            int ch;
            while (!app->quit && (ch = getch()) != ERR) {
                if (ch == 27 && drop_terminal_reply())
                    continue;
                handle_key(app, ch);
            }
        }
        if (session_signals_caught()) /* Ctrl-C, kill, hang-up: leave as q does */
            break;
    }
}

/* ---- start and stop ------------------------------------------------------------------------ */

static char *annotator_name(const AppConfig *cfg) {
    return xstrdup(cfg->annotator && *cfg->annotator ? cfg->annotator : identity_login());
}

static void log_to_file(const AppConfig *cfg) {
    if (cfg->log_path && *cfg->log_path)
        log_open(cfg->log_path);
}

/* The signals the UI thread handles: SIGWINCH here, the stop signals (SIGINT, SIGTERM,
 * SIGHUP) through the session (session_signals_catch), both waking the loop. */
static void signals_install(App *app, struct sigaction *old_winch) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, old_winch);
    session_signals_catch(app->wake_wr, 1);
}

static void signals_restore(const struct sigaction *old_winch) {
    sigaction(SIGWINCH, old_winch, NULL);
    session_signals_release();
}

/* The session of CFG: the store, opened and checked (rating as CFG's annotator, the reviewer
 * role for the disagree order) before the terminal is taken. */
static int session_start(App *app, Err *err) {
    const AppConfig *cfg = &app->cfg;
    AnnotateOrder order = ANNOTATE_ORDER_FEWEST;
    int disagree = cfg->order && store_annotate_order_parse(cfg->order, &order, NULL) == 0 &&
                   order == ANNOTATE_ORDER_DISAGREE;
    SessionConfig sc = {
        .db_path = cfg->db_path,
        .threads = cfg->worker_threads == APP_NO_WORKERS ? 0
                   : cfg->worker_threads > 0          ? cfg->worker_threads
                                                      : SESSION_THREADS_DEFAULT,
        .gpu_share = cfg->gpu_share,
        .act_as = app->annotator,
        .needs_review = disagree ? "the disagree order" : NULL,
    };
    int rc = session_open(&sc, &app->session, err);
    if (!rc)
        app->st = session_store(app->session);
    return rc;
}

static int curses_start(App *app, Err *err) {
    set_escdelay(25);
    if (!initscr())
        return err_set(err, ERR_IO, "cannot start curses on this terminal ($TERM=%s)",
                       getenv("TERM") ? getenv("TERM") : "");
    base_set_fail_hook(end_curses_hook);
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    idlok(stdscr, FALSE);  /* never scroll or shift lines: an image may sit on them */
    idcok(stdscr, FALSE);
    scrollok(stdscr, FALSE);
    leaveok(stdscr, TRUE);
    curs_set(0);
    colors_init();
    app->caps.colors = has_colors() ? COLORS : 0;
    log_info("ui: graphics %s (sixel %d, cell %dx%d from %d, max %dx%d, registers %d, mux %d)",
             gfx_mode_name(app->mode), app->caps.sixel, app->caps.cell_w, app->caps.cell_h,
             app->caps.cell_from, app->caps.max_w, app->caps.max_h, app->caps.color_registers,
             app->caps.in_mux);
    return 0;
}

/* Initialise every screen; a screen that cannot run here is hidden with its reason on the
 * status line. Returns the index of the first screen to show, or -1 if none can run. */
static int screens_start(App *app) {
    for (int i = 0; i < N_SCREENS; i++) {
        Err e = {0};
        app->state[i] = screens[i]->init(app, &e);
        if (!app->state[i]) {
            log_warn("ui: screen %s unavailable: %s", screens[i]->name, e.msg);
            app_status_error(app, "%s: %s", screens[i]->name, e.msg);
        }
    }
    int first = app->cfg.start_screen ? screen_find(app->cfg.start_screen) : 0;
    if (first >= 0 && app->state[first])
        return first;
    for (int i = 0; i < N_SCREENS; i++)
        if (app->state[i])
            return i;
    return -1;
}

int app_run(const AppConfig *cfg, Err *err) {
    App *app = xcalloc(1, sizeof *app);
    app->cfg = *cfg;
    app->annotator = annotator_name(cfg);
    app->login = xstrdup(identity_login());
    int rc = 0;
    log_to_file(cfg);
    if ((rc = session_start(app, err))) /* no store, or refused: said before the tty check */
        goto out_free;
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        rc = err_set(err, ERR_USAGE,
                     "the TUI needs a terminal (stdin and stdout are not both ttys); "
                     "run it in a terminal, or use the commands (easel --help)");
        goto out_close;
    }
    setlocale(LC_ALL, "");
    gfx_probe(STDIN_FILENO, &app->caps, 250);
    int mode = gfx_mode_choose(&app->caps, cfg->graphics, app->caps.mode_note,
                               sizeof app->caps.mode_note, err);
    if (mode < 0) {
        rc = ERR_USAGE;
        goto out_close;
    }
    app->mode = (GfxMode)mode;
    if (theme_setup(cfg->theme, cfg->theme_from, cfg->plot, cfg->plot_from, STDIN_FILENO,
                    app->caps.utf8, err)) {
        rc = err->code;
        goto out_close;
    }
    int pfd[2];
    if (pipe(pfd) != 0) {
        rc = err_set(err, ERR_IO, "cannot create the wake pipe: %s", strerror(errno));
        goto out_close;
    }
    app->wake_rd = pfd[0];
    app->wake_wr = pfd[1];
    fcntl(app->wake_rd, F_SETFL, O_NONBLOCK);
    fcntl(app->wake_wr, F_SETFL, O_NONBLOCK);

    /* Threads started by screens (the image renderer, loaders, job workers) inherit this
     * mask: the UI thread alone takes SIGWINCH, SIGINT, SIGTERM and SIGHUP. */
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGWINCH);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    if ((rc = curses_start(app, err)))
        goto out_pipe;
    app->cur = screens_start(app);
    if (app->caps.mode_note[0]) /* why the graphics are not what was asked for */
        app_status_error(app, "%s", app->caps.mode_note);
    if (app->cur < 0) {
        app->cur = 0;
        rc = err_set(err, ERR_IO, "no screen could start: %s", app->status);
        goto out_screens;
    }
    if (screens[app->cur]->enter)
        screens[app->cur]->enter(app->state[app->cur], app);
    /* from here on a write that finds the store locked by another process answers at once,
     * and the screen retries it from the loop: the UI never freezes on the lock */
    store_set_busy_limit(app->st, APP_STORE_BUSY_MS);

    wake_fd_signal = app->wake_wr;
    struct sigaction saved_winch;
    signals_install(app, &saved_winch);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    loop(app);
    signals_restore(&saved_winch);
    wake_fd_signal = -1;
    if (screens[app->cur]->leave)
        screens[app->cur]->leave(app->state[app->cur], app);
out_screens:
    for (int i = 0; i < N_SCREENS; i++)
        if (app->state[i] && screens[i]->fini)
            screens[i]->fini(app->state[i]);
    endwin();
    base_set_fail_hook(NULL);
    if (app->exit_note[0])
        fprintf(stderr, "%s\n", app->exit_note); /* the terminal is the shell's again */
out_pipe:
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    close(app->wake_rd);
    close(app->wake_wr);
out_close:
    session_close(app->session); /* stops the pool (if a screen left it running), the store */
out_free:
    free(app->annotator);
    free(app->login);
    free(app);
    return rc;
}
