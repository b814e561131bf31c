/* app — the easel TUI application: one ncurses main loop on the UI (main) thread.
 *
 * Design (htop's ScreenManager, redis's event loop): the loop poll()s the terminal and a wake
 * pipe, drains keys, redraws only when something is dirty, and ticks the visible screen at
 * least once a second so it can refresh from the store (other processes write there too).
 * Worker threads never touch ncurses: they call app_wake() (one byte on the pipe) and the
 * screen's tick reads what they left under their own lock. SIGWINCH only sets a flag (and
 * wakes the loop); the loop then resizes and redraws everything, re-sending images.
 *
 * This header is plain C (no ncurses), so src/cli/cli_tui.c can start the app; screens include
 * ui/screen.h for the drawing side.
 */
#ifndef EASEL_APP_H
#define EASEL_APP_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "session.h"
#include "store.h"

typedef struct App App;

/* What the command line asked for; strings are borrowed for the life of the app. */
typedef struct AppConfig {
    const char *db_path;        /* the store (must exist) */
    const char *annotator;      /* who rates: the CLI resolves --annotator, else
                                 * $EASEL_ANNOTATOR (cli_tui_check); NULL: the login */
    const char *graphics;       /* NULL: probe; "sixel" | "blocks" | "ascii" | "none" */
    const char *theme;          /* NULL: from the terminal (ui/theme.h) */
    const char *plot;           /* NULL: auto; "braille" | "blocks" | "ascii" */
    /* Where theme and plot came from, for messages: NULL = "--theme" / "--plot"; the CLI
     * fills in the fallbacks $EASEL_THEME and $EASEL_PLOT (cli_tui_check) and says so. */
    const char *theme_from;
    const char *plot_from;
    const char *log_path;       /* a log file (the CLI: $EASEL_LOG); NULL: no log */
    const char *start_screen;   /* NULL: the first screen; else a screen name ("Annotate") */
    /* Annotate queue options (see src/store/store_annotate.h) */
    const char *order;          /* NULL: "fewest"; also "id", "random", "prompt" */
    const char *prompt_filter;  /* NULL: all prompts; else a prompt id (ext id) */
    int unrated_only;           /* only images nobody has rated yet */
    int overlap;                /* raters wanted per image; 0: 3 */
    /* Monitor: the run to show (name or id, as `easel monitor RUN`), pinned; NULL: follow
     * the newest running run. */
    const char *monitor_run;
    /* Seconds a save waits for another process's write lock before giving up; 0: 30. */
    double store_wait_s;
    /* The worker pool of this TUI's session (src/app/session.h; its Jobs screen starts it):
     * threads (0: the core count; APP_NO_WORKERS: none, jobs are left to `easel worker`) and
     * jobs per GPU (0: 1). The CLI sets them (`easel --threads N --gpu-share N`); the UI
     * never reads the environment for them. */
    int worker_threads;
    int gpu_share;
    /* The A/B screen (ab16): the A/B set to judge (its name, as `easel ab judge NAME`);
     * NULL: the newest set. */
    const char *ab_set;
} AppConfig;

#define APP_NO_WORKERS (-1)

/* The UI thread's connection waits at most this long for another process's write lock per
 * try (store_set_busy_limit); a write that finds the store locked is retried from the loop. */
#define APP_STORE_BUSY_MS 100

/* Run the TUI until the user quits. First opens the app layer's session (src/app/session.h)
 * on cfg->db_path: the store, and the checks that the annotator may rate as that name and,
 * for the disagree order, that the login may review; a refusal returns before the terminal
 * is taken. Returns 0, or an ERR_* with err set when it could not start (no terminal, no
 * store, refused). Restores the terminal on every exit path. */
int app_run(const AppConfig *cfg, Err *err);

/* Graphics modes, weakest first. */
typedef enum GfxMode { GFX_NONE = 0, GFX_ASCII, GFX_BLOCKS, GFX_SIXEL } GfxMode;

/* Names of the screens in the table, in Tab order, ended by NULL (for --help texts). */
const char *const *app_screen_names(void);

/* ---- services for screens (UI thread only, except app_wake) ------------------------------ */

Store *app_store(App *app);                 /* the UI thread's connection; borrowed */
/* This process's session: the store above, the worker pool (the Jobs screen starts it). */
Session *app_session(App *app);
const AppConfig *app_config(App *app);
const char *app_annotator(App *app);        /* cfg->annotator, else the login */
GfxMode app_gfx_mode(App *app);
/* Terminal facts from the start-up probe (see ui/gfx.h GfxCaps); borrowed. */
const struct GfxCaps *app_gfx_caps(App *app);

/* The next frame clears the terminal first, which also removes raw output (an image) that no
 * new frame will cover. It does not ask for the frame: the key, tick or prompt that changed
 * what is shown says so (ui/screen.h, "Who redraws"). */
void app_clear_terminal(App *app);
void app_wake(App *app);                    /* any thread: wake the loop (then tick + redraw) */

/* A message on the status line for a few seconds (errors stay until the next key). */
void app_status(App *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void app_status_error(App *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Drop the status line's message (the user moved on to another image or screen). */
void app_status_clear(App *app);

/* A line printed on stderr after the terminal is restored, when the app ends (e.g. where a
 * headless worker's log is). The last call wins. */
void app_exit_note(App *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Asking before quitting. When the user presses q, each guard's ASK runs in turn: it returns
 * 0 when quitting is fine for it, or 1 with the question (naming the answer keys) in Q; the
 * question then stays on the status line and every key goes to ANSWER, which returns
 * APP_QUIT_GO (this guard agrees: ask the next, then quit), APP_QUIT_STAY (stay in the app)
 * or APP_QUIT_NOT_AN_ANSWER (beep, keep asking). Esc always stays. UI thread only. */
enum { APP_QUIT_NOT_AN_ANSWER = 0, APP_QUIT_GO, APP_QUIT_STAY };
typedef struct AppQuitGuard {
    int (*ask)(void *st, App *app, char *q, size_t n);
    int (*answer)(void *st, App *app, int key);
    void *st;
} AppQuitGuard;
void app_add_quit_guard(App *app, AppQuitGuard guard);

/* Ask for one line of text on the status line. DONE runs on the UI thread with the text, or
 * NULL if the user pressed Esc; the string is borrowed for the call. The app redraws after
 * DONE. */
typedef void (*AppPromptDone)(void *st, App *app, const char *text);
void app_prompt(App *app, const char *label, AppPromptDone done, void *st);

/* Show screen NAME (case-insensitive), and if ID >= 0 ask it to open object ID. Returns 0,
 * ERR_NOTFOUND for an unknown screen, or the screen's open() error. */
int app_switch(App *app, const char *name, int64_t id, Err *err);

/* Raw bytes to the terminal (sixel, truecolor blocks). Only from ScreenClass.after_refresh.
 * Returns 0 or ERR_IO. */
int app_term_write(App *app, const void *buf, size_t n);

#endif
