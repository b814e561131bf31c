/* screen — the interface every TUI screen implements, and the drawing helpers they share.
 *
 * easel's TUI is one application (ui/app.c) showing one screen at a time: Annotate, Quality,
 * and the screens later issues add (Jobs, GPU, Monitor). A screen is a const ScreenClass — a
 * struct of function pointers, as htop's Panel classes — plus the private state its `init`
 * returns. The app owns the main loop, the title bar (screen tabs), the status line, the `?`
 * help overlay, the line prompt and the terminal; a screen draws inside the rectangle it is
 * given and handles the keys the app does not take.
 *
 * HOW TO ADD A SCREEN (one new file plus one line):
 *   1. Write ui/screen_NAME.c ending in `const ScreenClass screen_NAME = {...};` (everything
 *      else in it static). ui/screen_quality.c is a short, complete example.
 *   2. Add `&screen_NAME,` to the `screens[]` table in ui/app.c (the order is the Tab order)
 *      and the matching `extern const ScreenClass screen_NAME;` line just above it.
 *   That is all: the F-key, the tab title and the help overlay come from the class.
 *   Read data from the store with the typed store functions in `init`/`enter`/`tick` (never SQL
 *   here). A read that can take more than a few milliseconds on a big store goes through
 *   ui/loader.h (a background thread with its own connection; screen_quality.c shows how);
 *   long work is a job (src/app/jobs.h). Worker threads never call ncurses: they update their own
 *   state under their own lock and call app_wake(), and the screen's `tick` picks it up on the
 *   UI thread.
 *
 * Keys the app keeps for itself (a screen never sees them): q (quit), ? (help), Tab and
 * Shift-Tab (next/previous screen), F1 (help), F2..F12 (screens by F-key), Ctrl-L (redraw).
 * Everything else goes to the current screen's `key` first.
 *
 * Threading: every function here runs on the UI thread only.
 */
#ifndef EASEL_SCREEN_H
#define EASEL_SCREEN_H

#include <ncurses.h>
#include <stdint.h>

#include "app.h"

/* A rectangle of character cells, screen coordinates. */
typedef struct UiRect {
    int y;      /* top row */
    int x;      /* left column */
    int h;      /* rows */
    int w;      /* columns */
} UiRect;

/* One line of the help overlay: "KEY  what it does". */
typedef struct ScreenKey {
    const char *key;   /* "0-9", "Enter", "Up/Down" */
    const char *what;  /* "set the selected aspect and move to the next" */
} ScreenKey;

/* Who redraws: a screen never asks for a frame. Its key handler, tick and after_refresh
 * return what happened, and the app (ui/app.c) alone decides to draw: after a handled key,
 * a changed tick or after_refresh, a prompt's answer, a screen switch or open, a status line
 * message, a resize. A screen whose raw output (an image) no new frame would cover asks that
 * the next frame clear the terminal first (app_clear_terminal). */

/* Return values of ScreenClass.key. */
enum {
    SCREEN_KEY_IGNORED = 0,   /* not this screen's key (the app beeps) */
    SCREEN_KEY_HANDLED = 1,   /* handled; the app redraws */
    SCREEN_KEY_SAME = 2,      /* this screen's key, but nothing changed (a list already at its
                               * end): no beep, no redraw */
};

/* Return values of ScreenClass.tick and after_refresh. */
enum {
    SCREEN_TICK_SAME = 0,     /* nothing shown changed */
    SCREEN_TICK_CHANGED = 1,  /* the app redraws */
};

typedef struct ScreenClass {
    const char *name;      /* tab title, also the name for app_switch: "Annotate" */
    int fkey;              /* F-key number 2..12 that opens it (F1 is help) */
    const ScreenKey *keys; /* help lines, ended by {NULL, NULL} */

    /* Create the screen's state (called once, at start). NULL = the screen cannot run here;
     * it is then hidden, and err says why (shown on the status line). */
    void *(*init)(App *app, Err *err);
    void (*fini)(void *st);                       /* NULL allowed */

    /* Became visible / is about to be hidden (optional). */
    void (*enter)(void *st, App *app);
    void (*leave)(void *st, App *app);

    /* Draw into R of stdscr with ncurses calls. Only this rectangle; erase() was done. */
    void (*draw)(void *st, App *app, UiRect r);

    /* Optional: called after the frame reached the terminal (doupdate()). The only place a
     * screen may write raw bytes (sixel, truecolor blocks) with app_term_write. `full` is 1
     * when the terminal was cleared or something was drawn over the screen since the last
     * call (resize, Ctrl-L, help overlay): raw output must then be sent again. Returns
     * SCREEN_TICK_CHANGED when the frame just drawn is out of date (the image it left room
     * for cannot be shown, or became ready after draw): the app draws again. */
    int (*after_refresh)(void *st, App *app, int full);

    /* A key (ncurses code: a character, KEY_UP, KEY_F(n), ...). */
    int (*key)(void *st, App *app, int ch);

    /* Optional: at least once a second while visible, and after every app_wake(). Returns
     * SCREEN_TICK_CHANGED when what the screen shows changed (the app then redraws), else
     * SCREEN_TICK_SAME: the screen says what happened, the app decides when to draw. */
    int (*tick)(void *st, App *app, double now);

    /* Optional: open object ID (Annotate: an image id), for cross-screen links such as
     * Quality → "review this image". Returns 0 or an ERR_* with err set. */
    int (*open)(void *st, App *app, int64_t id, Err *err);
} ScreenClass;

/* ---- colours: pairs the app initialises (fall back to attributes on mono terminals) ----- */
typedef enum UiColor {
    UI_C_NORMAL = 0,
    UI_C_TITLE,       /* title bar */
    UI_C_TAB,         /* the current screen's tab */
    UI_C_STATUS,      /* status line */
    UI_C_DIM,         /* secondary text */
    UI_C_ACCENT,      /* headings, values */
    UI_C_SELECT,      /* the selected row */
    UI_C_GOOD,
    UI_C_WARN,
    UI_C_BAD,
    UI_C_COUNT
} UiColor;

/* Attribute for colour C (A_BOLD/A_REVERSE fallbacks without colour). */
attr_t ui_attr(UiColor c);

/* Write S at (y, x), clipped to W columns (display width, UTF-8 aware). Returns columns used. */
int ui_put(int y, int x, int w, attr_t a, const char *s);

/* printf into a line clipped to W columns. */
int ui_putf(int y, int x, int w, attr_t a, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Fill R with blanks in attribute A. */
void ui_fill(UiRect r, attr_t a);

/* A box outline with an optional title. */
void ui_box(UiRect r, attr_t a, const char *title);

#endif
