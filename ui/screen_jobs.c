/* screen_jobs — the Jobs screen: every job of the store, live, with state, progress bar,
 * rate and ETA; the selected job's parameters, dependencies, worker, GPUs, message and log
 * tail following live; keys to add a job (a form generated from the kind's schema, see
 * src/app/jobform.h), cancel, retry, resume and change priority.
 *
 * This screen runs the pool of the TUI's session (src/app/session.h, the same object as
 * `easel worker`'s, opened by app_run with AppConfig's worker_threads — default the core
 * count; APP_NO_WORKERS = run no jobs here, leave them to `easel worker` — and gpu_share jobs
 * per GPU, as the CLI set them): started in init, stopped in fini, which interrupts running
 * jobs (resumable). Worker threads
 * only call app_wake(); everything shown is re-read from the store on the UI thread at each
 * tick, so jobs of other processes (other TUIs over SSH, `easel worker`) appear the same way.
 *
 * Quitting while this pool runs jobs asks first (an app quit guard): w hands them to a
 * headless `easel worker --until-idle` started here in its own session (setsid; its log is
 * easel-worker.log beside the store), which resumes them from their checkpoints and exits when
 * the queue is empty; i interrupts them (resumable later); Esc stays.
 *
 * Modes: LIST (the table + details) -> 'a' -> PICK (kind menu) -> Enter -> FORM -> 's' -> LIST.
 *
 * Preview: for a selected `generate` job, the latest image it wrote (store_job_latest_image,
 * read again at every refresh, so it follows the job) in a box right of the details, sized to
 * the details' height; none when the job has no image yet, the terminal is too narrow, or
 * --graphics none. Rendered by gfx_cache's worker (never blocking), written in after_refresh
 * as the Annotate screen does (ESC 7, cursor move, frame, ESC 8 into cells ncurses leaves
 * blank); when it must go away and no frame covers it, the next frame clears the terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "fmt_json.h"
#include "gfx.h"
#include "img_pane.h"
#include "jobform.h"
#include "jobkind.h"
#include "jobs.h"
#include "list.h"
#include "screen.h"
#include "session.h"
#include "store_jobs.h"

#define MAX_ROWS 500
#define MAX_LOG 400
#define REFRESH_S 0.5

typedef enum Mode { MODE_LIST, MODE_PICK, MODE_FORM } Mode;

typedef struct JobsScreen {
    App *app;
    Session *session;         /* this TUI's worker pool (session_has_pool: 0 = none) */
    JobRow *rows;
    int n_rows;
    UiList list;              /* selection and scrolling over rows (ui/list.h) */
    int64_t sel_id;           /* keeps the selection on its job across refreshes */
    int counts[JOB_STATE_COUNT];
    JobLogLine log[MAX_LOG];  /* tail of the selected job's log */
    int n_log;
    int64_t log_job;
    int64_t log_after;
    int log_only;             /* Enter: the details pane takes the whole screen */
    double last_refresh;
    Mode mode;
    UiList kinds;             /* the kind menu (PICK): selection over jobkind_at() */
    JobForm *form;
    UiList fields;            /* the form's fields (FORM); sel follows form->cur */
    int label_w;              /* the form's label column while drawing */
    char error[ERR_MSG_LEN];  /* last refresh error, shown in the header */
    /* the preview: the latest image of the selected generate job */
    ImgPane pv;               /* its cache NULL: --graphics none */
} JobsScreen;

static const ScreenKey jobs_keys[] = {
    {"Up / Down, j / k", "select a job (PgUp / PgDn, Home / End)"},
    {"Enter", "details only / back to the list (the log follows live)"},
    {"a", "add a job: pick a kind, fill in the form (from the kind's schema)"},
    {"c", "cancel the selected job (a running one stops within a second)"},
    {"r", "retry: a new job with the same parameters"},
    {"u", "resume a failed, cancelled or interrupted job (from its checkpoint)"},
    {"+ / -", "raise / lower the selected job's priority"},
    {"a: Up / Down, j / k", "pick a kind (PgUp / PgDn, Home / End); Enter opens its form"},
    {"form: Up / Down, j / k", "select a field (PgUp / PgDn, Home / End)"},
    {"form: Enter", "type a new value (Esc keeps the old one)"},
    {"form: Left / Right, Space", "change a choice or true/false field"},
    {"form: s", "queue the job; Esc goes back"},
    {NULL, NULL},
};

/* ---- worker pool ------------------------------------------------------------------------ */

static void on_job_change(void *user_data, int64_t job_id, JobState state) {
    (void)job_id;
    (void)state;
    app_wake(user_data); /* any thread; the tick re-reads the store */
}

/* ---- data ----------------------------------------------------------------------------- */

static void log_clear(JobsScreen *s) {
    for (int i = 0; i < s->n_log; i++)
        free(s->log[i].line);
    s->n_log = 0;
    s->log_after = 0;
}

static void preview_clear(JobsScreen *s) { img_pane_clear(&s->pv); }

/* The latest image of the selected job when it is a generate job (nothing otherwise). */
static void preview_follow(JobsScreen *s, Store *st) {
    const JobRow *j = s->n_rows ? &s->rows[s->list.sel] : NULL;
    if (!s->pv.cache || !j || j->id != s->sel_id || strcmp(j->kind, "generate") != 0) {
        preview_clear(s);
        return;
    }
    int64_t id;
    char *path;
    Err err = {0};
    int rc = store_job_latest_image(st, j->id, &id, &path, &err);
    if (rc == ERR_NOTFOUND) {
        preview_clear(s);
        return;
    }
    if (rc)
        return; /* busy or failing store: keep what is shown, the header says why */
    img_pane_set(&s->pv, id, path);
    free(path);
}

static void follow_log(JobsScreen *s, Store *st) {
    int64_t id = s->sel_id;
    if (id != s->log_job) {
        log_clear(s);
        s->log_job = id;
    }
    if (!id) {
        preview_clear(s);
        return;
    }
    JobLogLine *lines;
    int n;
    if (store_job_log_read(st, id, s->log_after, MAX_LOG, &lines, &n, NULL))
        return;
    for (int i = 0; i < n; i++) {
        if (s->n_log == MAX_LOG) {
            free(s->log[0].line);
            memmove(&s->log[0], &s->log[1], sizeof s->log[0] * (MAX_LOG - 1));
            s->n_log--;
        }
        s->log[s->n_log++] = lines[i];
        s->log_after = lines[i].seq;
    }
    free(lines); /* the strings moved into s->log */
    preview_follow(s, st);
}

static void reload(JobsScreen *s) {
    Store *st = app_store(s->app);
    Err err = {0};
    if (!session_has_pool(s->session))
        jobs_reap(st, 0, NULL, NULL); /* with a pool, its monitor does this */
    JobRow *rows;
    int n;
    JobFilter f = {.limit = MAX_ROWS};
    if (store_jobs_list(st, &f, &rows, &n, &err) || store_jobs_count(st, s->counts, &err)) {
        snprintf(s->error, sizeof s->error, "%s", err.msg);
        return;
    }
    s->error[0] = '\0';
    store_job_rows_free(s->rows, s->n_rows);
    s->rows = rows;
    s->n_rows = n;
    s->list.sel = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].id == s->sel_id)
            s->list.sel = i;
    ui_list_set_count(&s->list, n);
    s->sel_id = n ? rows[s->list.sel].id : 0;
    follow_log(s, st);
    s->last_refresh = base_now();
}

static JobRow *selected(JobsScreen *s) { return s->n_rows ? &s->rows[s->list.sel] : NULL; }

/* ---- lifecycle ------------------------------------------------------------------------- */

/* ---- quitting: hand the pool's running jobs to a headless worker ------------------------ */

/* Start `SELF --db DB worker --until-idle --threads N` in a new session, stdin /dev/null, stdout
 * and stderr appended to LOG. Returns its pid, or -1 with err set (exec failures included:
 * a close-on-exec pipe carries the child's errno back). */
static pid_t spawn_worker(const char *db, int threads, const char *log_path, Err *err) {
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        err_set(err, ERR_IO, "cannot find this program (/proc/self/exe): %s", strerror(errno));
        return -1;
    }
    self[len] = '\0';
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        err_set(err, ERR_IO, "%s: cannot open the worker's log: %s", log_path, strerror(errno));
        return -1;
    }
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int pfd[2];
    if (nullfd < 0 || pipe2(pfd, O_CLOEXEC) != 0) {
        err_set(err, ERR_IO, "cannot start a worker: %s", strerror(errno));
        close(logfd);
        if (nullfd >= 0)
            close(nullfd);
        return -1;
    }
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%d", threads > 0 ? threads : 1);
    char *argv[] = {self, "--db", (char *)db, "worker", "--until-idle", "--threads", nthreads,
                    NULL};
    pid_t pid = fork();
    if (pid == 0) { /* the child: only async-signal-safe calls until exec */
        setsid();   /* no SIGHUP when the terminal goes */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGWINCH, SIG_DFL);
        dup2(nullfd, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        struct rlimit rl;
        int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur
                                                                              : 65536;
        for (int fd = 3; fd < max; fd++) /* the store's files, the wake pipe, the terminal */
            if (fd != pfd[1])
                close(fd);
        execv(self, argv);
        int e = errno;
        ssize_t w = write(pfd[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    int e = errno;
    close(pfd[1]);
    close(logfd);
    close(nullfd);
    if (pid < 0) {
        close(pfd[0]);
        err_set(err, ERR_IO, "cannot start a worker: fork: %s", strerror(e));
        return -1;
    }
    int child_errno = 0;
    ssize_t got;
    do
        got = read(pfd[0], &child_errno, sizeof child_errno);
    while (got < 0 && errno == EINTR);
    close(pfd[0]);
    if (got == (ssize_t)sizeof child_errno) {
        err_set(err, ERR_IO, "cannot start a worker: %s: %s", self, strerror(child_errno));
        return -1;
    }
    return pid;
}

/* Interrupt this pool's running jobs, queue them again and start a headless worker for them.
 * Returns 0, or an ERR_* with err set (the pool is then stopped and the jobs interrupted,
 * resumable as with i). */
static int hand_over(JobsScreen *s, Err *err) {
    App *app = s->app;
    Store *st = app_store(app);
    store_set_busy_limit(st, 0); /* quitting: waiting for the lock is right here */
    int64_t ids[64];
    int n_ids = session_running_jobs(s->session, ids, (int)ARRAY_LEN(ids), err);
    if (n_ids < 0)
        n_ids = 0;
    session_stop_pool(s->session); /* they checkpoint and end interrupted */
    int rc = 0;
    for (int i = n_ids - 1; i >= 0 && rc == 0; i--) /* oldest first */
        rc = store_job_resume(st, ids[i], err);
    if (rc == 0) {
        char log_path[4096];
        snprintf(log_path, sizeof log_path, "%s/easel-worker.log", store_dir(st));
        pid_t pid = spawn_worker(app_config(app)->db_path, session_threads(s->session), log_path,
                                 err);
        if (pid < 0)
            rc = err->code;
        else
            app_exit_note(app, "easel: %d job%s left to a headless worker (pid %d) that exits "
                          "when the queue is empty; its log: %s", n_ids, n_ids == 1 ? "" : "s",
                          (int)pid, log_path);
    }
    store_set_busy_limit(st, APP_STORE_BUSY_MS);
    return rc;
}

static int quit_ask(void *p, App *app, char *q, size_t n) {
    JobsScreen *s = p;
    (void)app;
    int busy = session_busy(s->session);
    if (busy == 0)
        return 0;
    snprintf(q, n, "%d job%s running here: w leave %s to a headless worker, i interrupt %s "
             "(resume later), Esc stay", busy, busy == 1 ? "" : "s", busy == 1 ? "it" : "them",
             busy == 1 ? "it" : "them");
    return 1;
}

static int quit_answer(void *p, App *app, int key) {
    JobsScreen *s = p;
    if (key == 'i') { /* fini stops the pool: the jobs end interrupted, resumable */
        int busy = session_busy(s->session);
        app_exit_note(app, "easel: %d job%s interrupted; resume with u on the Jobs screen or "
                      "'easel --db %s worker --resume'", busy, busy == 1 ? "" : "s",
                      app_config(app)->db_path);
        return APP_QUIT_GO;
    }
    if (key != 'w')
        return APP_QUIT_NOT_AN_ANSWER;
    Err err = {0};
    if (hand_over(s, &err)) {
        app_status_error(app, "could not hand the jobs over (they are interrupted; resume them "
                         "with u or 'easel worker --resume'): %s", err.msg);
        return APP_QUIT_STAY;
    }
    return APP_QUIT_GO;
}

static void wake_app(void *app) { app_wake(app); }

static void *jobs_init(App *app, Err *err) {
    JobsScreen *s = xcalloc(1, sizeof *s);
    s->app = app;
    s->session = app_session(app);
    if (app_gfx_mode(app) != GFX_NONE) /* a few frames: the preview at one or two sizes */
        s->pv.cache = gfx_cache_new(app_gfx_mode(app), app_gfx_caps(app), 4, wake_app, app);
    if (session_start_pool(s->session, on_job_change, app, err)) {
        gfx_cache_free(s->pv.cache);
        free(s);
        return NULL;
    }
    reload(s);
    app_add_quit_guard(app, (AppQuitGuard){quit_ask, quit_answer, s});
    return s;
}

static void jobs_fini(void *p) {
    JobsScreen *s = p;
    session_stop_pool(s->session); /* running jobs end interrupted, resumable */
    store_job_rows_free(s->rows, s->n_rows);
    log_clear(s);
    jobform_free(s->form);
    gfx_cache_free(s->pv.cache);
    img_pane_deinit(&s->pv);
    free(s);
}

static int jobs_tick(void *p, App *app, double now) {
    JobsScreen *s = p;
    (void)app;
    (void)now;
    reload(s);
    return SCREEN_TICK_CHANGED; /* progress, rates and ETAs move */
}

/* ---- drawing --------------------------------------------------------------------------- */

static attr_t state_attr(JobState st) {
    switch (st) {
    case JOB_STATE_RUNNING: return ui_attr(UI_C_ACCENT) | A_BOLD;
    case JOB_STATE_SUCCEEDED: return ui_attr(UI_C_GOOD);
    case JOB_STATE_FAILED: return ui_attr(UI_C_BAD);
    case JOB_STATE_INTERRUPTED: return ui_attr(UI_C_WARN);
    case JOB_STATE_CANCELLED: return ui_attr(UI_C_DIM);
    default: return ui_attr(UI_C_NORMAL);
    }
}

static void fmt_duration(double sec, char *buf, size_t n) {
    if (sec < 0) {
        snprintf(buf, n, "-");
        return;
    }
    long t = (long)(sec + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* A bar of W cells for FRAC in 0..1, with eighth blocks at the edge. */
static void fmt_bar(double frac, int w, char *buf, size_t size) {
    static const char *eighth[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    int units = (int)(frac * w * 8 + 0.5);
    size_t o = 0;
    buf[0] = '\0';
    for (int c = 0; c < w && o + 4 < size; c++) {
        int u = units - c * 8;
        const char *g = u >= 8 ? "█" : u > 0 ? eighth[u] : "·";
        o += (size_t)snprintf(buf + o, size - o, "%s", g);
    }
}

static void draw_header(JobsScreen *s, UiRect r) {
    char pool[96];
    if (session_has_pool(s->session))
        snprintf(pool, sizeof pool, "here: %d/%d workers busy, %d GPU%s",
                 session_busy(s->session), session_threads(s->session),
                 session_gpus(s->session), session_gpus(s->session) == 1 ? "" : "s");
    else
        snprintf(pool, sizeof pool, "no workers in this TUI (easel --threads 0)");
    ui_putf(r.y, r.x, r.w, ui_attr(UI_C_ACCENT),
            "%d running  %d queued  %d succeeded  %d failed  %d cancelled  %d interrupted   %s",
            s->counts[JOB_STATE_RUNNING], s->counts[JOB_STATE_QUEUED],
            s->counts[JOB_STATE_SUCCEEDED], s->counts[JOB_STATE_FAILED],
            s->counts[JOB_STATE_CANCELLED], s->counts[JOB_STATE_INTERRUPTED], pool);
    if (s->error[0])
        ui_putf(r.y + 1, r.x, r.w, ui_attr(UI_C_BAD), "store: %s", s->error);
    else if (!session_has_pool(s->session) && s->counts[JOB_STATE_QUEUED] &&
             !s->counts[JOB_STATE_RUNNING])
        ui_put(r.y + 1, r.x, r.w, ui_attr(UI_C_WARN),
               "queued jobs wait for a worker: run 'easel worker' on this store");
}

static void draw_row(JobsScreen *s, const JobRow *j, int y, int x, int w, int is_sel) {
    (void)s;
    attr_t base = is_sel ? ui_attr(UI_C_SELECT) : ui_attr(UI_C_NORMAL);
    if (is_sel)
        ui_fill((UiRect){y, x, 1, w}, base);
    char bar[64], prog[48], rate[24], eta[16];
    double frac = j->total > 0 ? j->done / j->total : (j->state == JOB_STATE_SUCCEEDED ? 1 : 0);
    fmt_bar(frac, 12, bar, sizeof bar);
    if (j->total > 0)
        snprintf(prog, sizeof prog, "%3.0f%% %.0f/%.0f %s", 100 * frac, j->done, j->total,
                 j->unit);
    else if (j->done > 0)
        snprintf(prog, sizeof prog, "%.0f %s", j->done, j->unit);
    else
        prog[0] = '\0';
    if (j->rate > 0 && j->state == JOB_STATE_RUNNING)
        snprintf(rate, sizeof rate, "%.3g/s", j->rate);
    else
        rate[0] = '\0';
    fmt_duration(j->state == JOB_STATE_RUNNING ? j->eta : -1, eta, sizeof eta);
    int c = x;
    c += ui_putf(y, c, w - (c - x), base, "%5lld ", (long long)j->id);
    ui_put(y, c, 12, is_sel ? base : state_attr(j->state), store_job_state_name(j->state));
    c += 12;
    c += ui_putf(y, c, w - (c - x), base, "%-13.13s %3d ", j->kind, j->priority);
    c += ui_putf(y, c, w - (c - x), base, "%s ", bar);
    c += ui_putf(y, c, w - (c - x), base, "%-22.22s %8s %7s  ", prog, rate,
                 j->state == JOB_STATE_RUNNING ? eta : "");
    const char *msg = j->state == JOB_STATE_RUNNING && j->cancel_requested ? "cancel requested"
                      : j->message ? j->message : "";
    if (c < x + w)
        ui_put(y, c, w - (c - x), is_sel ? base : ui_attr(UI_C_DIM), msg);
}

static void list_row(void *user, int i, UiRect row, int selected) {
    JobsScreen *s = user;
    draw_row(s, &s->rows[i], row.y, row.x, row.w, selected);
}

static void draw_list(JobsScreen *s, UiRect r) {
    char header[256];
    snprintf(header, sizeof header, "%5s %-11s %-13s %3s %-12s %-22s %8s %7s  %s", "ID",
             "STATE", "KIND", "PRI", "PROGRESS", "", "RATE", "ETA", "MESSAGE");
    ui_list_draw(&s->list, r, header, ui_attr(UI_C_DIM) | A_UNDERLINE, list_row, s);
    if (s->n_rows == 0)
        ui_put(r.y + 2, r.x + 2, r.w - 2, ui_attr(UI_C_DIM),
               "No jobs yet. Press a to add one, or use 'easel jobs add KIND ...'.");
}

static void put_time(int y, int x, int w, const char *label, double t) {
    if (t <= 0)
        return;
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    ui_putf(y, x, w, ui_attr(UI_C_NORMAL), "%-9s %s", label, buf);
}

static void draw_details(JobsScreen *s, UiRect r) {
    JobRow *j = selected(s);
    ui_box(r, ui_attr(UI_C_DIM), j ? "Job" : NULL);
    if (!j || r.h < 4)
        return;
    int x = r.x + 2, w = r.w - 4, y = r.y + 1;
    ui_putf(y++, x, w, ui_attr(UI_C_ACCENT) | A_BOLD, "#%lld %s  %s%s", (long long)j->id,
            j->kind, store_job_state_name(j->state),
            j->retry_of ? "  (retry)" : "");
    char *params = fmt_json_human(j->params); /* 0.2, not 0.20000000000000001 */
    ui_putf(y++, x, w, ui_attr(UI_C_NORMAL), "params   %s", params ? params : "{}");
    free(params);
    char deps[128] = "";
    size_t o = 0;
    for (int i = 0; i < j->n_deps && o < sizeof deps - 16; i++)
        o += (size_t)snprintf(deps + o, sizeof deps - o, "%s#%lld", i ? ", " : "",
                              (long long)j->deps[i]);
    ui_putf(y++, x, w, ui_attr(UI_C_NORMAL), "after    %-20s gpus %s (wanted %d)   worker %s",
            j->n_deps ? deps : "-", j->gpus ? j->gpus : "none", j->gpus_wanted,
            j->worker ? j->worker : "-");
    if (y < r.y + r.h - 1) {
        put_time(y, x, w / 2, "started", j->started_at);
        put_time(y++, x + w / 2, w - w / 2, "finished", j->finished_at);
    }
    if (j->message && y < r.y + r.h - 1)
        ui_putf(y++, x, w, state_attr(j->state), "message  %s", j->message);
    if (j->checkpoint && y < r.y + r.h - 1)
        ui_putf(y++, x, w, ui_attr(UI_C_DIM), "checkpoint %s", j->checkpoint);
    int bottom = r.y + r.h - 1;
    if (y >= bottom)
        return;
    ui_put(y++, x, w, ui_attr(UI_C_DIM) | A_UNDERLINE, "log (live)");
    int avail = bottom - y;
    int first = s->n_log > avail ? s->n_log - avail : 0;
    for (int i = first; i < s->n_log && y < bottom; i++) {
        time_t tt = (time_t)s->log[i].t;
        struct tm tm;
        localtime_r(&tt, &tm);
        char ts[16];
        strftime(ts, sizeof ts, "%H:%M:%S", &tm);
        ui_putf(y++, x, w, ui_attr(UI_C_NORMAL), "%s %s", ts, s->log[i].line);
    }
}

/* The preview's box right of the details pane R (shrinking R), or nothing when the job has
 * no image, graphics are off or the pane is too small for both. */
static void draw_preview(JobsScreen *s, App *app, UiRect *r) {
    if (!s->pv.cache || !s->pv.image)
        return;
    const GfxCaps *caps = app_gfx_caps(app);
    int rows = r->h - 2;
    int cols = rows * caps->cell_h / (caps->cell_w > 0 ? caps->cell_w : 1); /* a square */
    if (cols > r->w / 3)
        cols = r->w / 3;
    if (rows < 4 || cols < 8 || r->w - (cols + 2) < 60)
        return;
    UiRect box = {r->y, r->x + r->w - (cols + 2), r->h, cols + 2};
    r->w -= cols + 2;
    ui_box(box, ui_attr(UI_C_DIM), cols >= 16 ? "latest image" : "latest");
    img_pane_draw(&s->pv, (UiRect){box.y + 1, box.x + 1, rows, cols});
}

static void pick_row(void *p, int i, UiRect row, int selected) {
    (void)p;
    const JobKind *k = jobkind_at(i);
    attr_t a = selected ? ui_attr(UI_C_SELECT) : ui_attr(UI_C_NORMAL);
    if (selected)
        ui_fill(row, a);
    ui_putf(row.y, row.x + 1, row.w - 2, a, "%-16s %s%s", k->name, k->summary,
            k->gpus ? "  [GPU]" : "");
}

static void draw_pick(JobsScreen *s, UiRect r) {
    ui_box(r, ui_attr(UI_C_ACCENT), "New job: pick a kind");
    ui_list_set_count(&s->kinds, jobkind_count());
    ui_list_draw(&s->kinds, (UiRect){r.y + 1, r.x + 1, r.h - 3, r.w - 2}, NULL, 0, pick_row, s);
    if (!jobkind_count())
        ui_put(r.y + 1, r.x + 2, r.w - 4, ui_attr(UI_C_DIM), "this build has no job kinds");
    ui_put(r.y + r.h - 2, r.x + 2, r.w - 4, ui_attr(UI_C_DIM),
           "Up/Down/PgUp/PgDn/Home/End select   Enter open the form   Esc back");
}

static void form_row(void *p, int i, UiRect row, int selected) {
    JobsScreen *s = p;
    JobForm *f = s->form;
    attr_t a = selected ? ui_attr(UI_C_SELECT) : ui_attr(UI_C_NORMAL);
    if (selected)
        ui_fill((UiRect){row.y, row.x - 1, 1, row.w + 2}, a);
    int cycles = f->fields[i].kind == JOBFORM_PARAM &&
                 (f->fields[i].spec->type == JOB_PARAM_CHOICE ||
                  f->fields[i].spec->type == JOB_PARAM_BOOL);
    const char *req = f->fields[i].kind == JOBFORM_PARAM && !f->fields[i].spec->def ? "*" : " ";
    ui_putf(row.y, row.x, row.w, a, "%s%-*s  %s%s%s", req, s->label_w, jobform_label(f, i),
            cycles ? "◂ " : "[", f->fields[i].text, cycles ? " ▸" : "]");
}

/* The list's selection is the form's: f->cur (jobform_submit may move it to a bad field). */
static void fields_sync(JobsScreen *s) {
    s->fields.n = s->form->n_fields;
    s->fields.sel = s->form->cur;
    ui_list_clamp(&s->fields);
}

static void draw_form(JobsScreen *s, UiRect r) {
    JobForm *f = s->form;
    char title[128];
    snprintf(title, sizeof title, "New job: %s", f->kind->name);
    ui_box(r, ui_attr(UI_C_ACCENT), title);
    int x = r.x + 2, w = r.w - 4, y = r.y + 1;
    ui_put(y++, x, w, ui_attr(UI_C_DIM), f->kind->summary);
    y++;
    s->label_w = 8; /* label column: the longest parameter name */
    for (int i = 0; i < f->n_fields; i++) {
        int len = (int)strlen(jobform_label(f, i));
        s->label_w = len > s->label_w ? len : s->label_w;
    }
    /* the fields scroll (kinds can have many parameters) */
    fields_sync(s);
    ui_list_draw(&s->fields, (UiRect){y, x, r.y + r.h - 4 - y, w}, NULL, 0, form_row, s);
    if (ui_list_more_above(&s->fields))
        ui_put(y - 1, x + w - 12, 12, ui_attr(UI_C_DIM), "  (more ↑)");
    if (ui_list_more_below(&s->fields))
        ui_put(r.y + r.h - 4, x + w - 12, 12, ui_attr(UI_C_DIM), "  (more ↓)");
    char hint[256];
    jobform_hint(f, f->cur, hint, sizeof hint);
    ui_put(r.y + r.h - 3, x, w, ui_attr(UI_C_ACCENT), hint);
    ui_put(r.y + r.h - 2, x, w, ui_attr(UI_C_DIM),
           "Up/Down field  Enter type a value  Left/Right/Space change  s queue  Esc back  "
           "(* required)");
}

static void jobs_draw(void *p, App *app, UiRect r) {
    JobsScreen *s = p;
    img_pane_begin(&s->pv);
    if (r.h < 6 || r.w < 40) {
        ui_put(r.y, r.x, r.w, ui_attr(UI_C_WARN), "terminal too small for the Jobs screen");
        return;
    }
    draw_header(s, (UiRect){r.y, r.x, 2, r.w});
    UiRect body = {r.y + 2, r.x, r.h - 2, r.w};
    if (s->mode == MODE_PICK) {
        draw_pick(s, body);
        return;
    }
    if (s->mode == MODE_FORM) {
        draw_form(s, body);
        return;
    }
    if (s->log_only) {
        draw_details(s, body);
        return;
    }
    int list_h = body.h * 11 / 20;
    if (list_h < 3)
        list_h = 3;
    draw_list(s, (UiRect){body.y, body.x, list_h, body.w});
    UiRect details = {body.y + list_h, body.x, body.h - list_h, body.w};
    draw_preview(s, app, &details);
    draw_details(s, details);
}

/* Write the preview's frame once it is ready (again after a clear); make the terminal drop
 * an image no frame will cover. */
static int jobs_after_refresh(void *p, App *app, int full) {
    JobsScreen *s = p;
    return img_pane_after_refresh(&s->pv, app, full);
}

/* ---- keys ------------------------------------------------------------------------------ */

static void form_text_done(void *p, App *app, const char *text) {
    JobsScreen *s = p;
    (void)app; /* the app redraws after a prompt */
    if (text && s->form)
        jobform_set(s->form, s->form->cur, text);
}

static int form_key(JobsScreen *s, App *app, int ch) {
    JobForm *f = s->form;
    fields_sync(s);
    int moved = ui_list_key(&s->fields, ch);
    if (moved != UI_LIST_NOT_MINE) {
        f->cur = s->fields.sel;
        return ui_list_key_result(moved);
    }
    switch (ch) {
    case 27: /* Esc */
        jobform_free(f);
        s->form = NULL;
        s->mode = MODE_PICK;
        return SCREEN_KEY_HANDLED;
    case KEY_LEFT:
    case KEY_RIGHT:
    case ' ':
        return jobform_cycle(f, f->cur, ch == KEY_LEFT ? -1 : 1) ? SCREEN_KEY_HANDLED
                                                                 : SCREEN_KEY_IGNORED;
    case '\n':
    case '\r':
    case KEY_ENTER: {
        if (jobform_cycle(f, f->cur, 1))
            return SCREEN_KEY_HANDLED;
        char label[96];
        snprintf(label, sizeof label, "%s (now '%.60s'): ", jobform_label(f, f->cur),
                 f->fields[f->cur].text);
        app_prompt(app, label, form_text_done, s);
        return SCREEN_KEY_HANDLED;
    }
    case 's': {
        Err err = {0};
        int64_t id;
        if (jobform_submit(f, app_store(app), &id, &err)) {
            if (err.code == ERR_BUSY) /* the UI never waits for the lock (app.h) */
                app_status_error(app, "not queued: another process is writing to the store; "
                                 "the form is kept, press s again in a moment");
            else
                app_status_error(app, "%s", err.msg);
            return SCREEN_KEY_HANDLED;
        }
        app_status(app, "job #%lld (%s) queued", (long long)id, f->kind->name);
        jobform_free(f);
        s->form = NULL;
        s->mode = MODE_LIST;
        s->sel_id = id;
        session_kick(s->session);
        reload(s);
        return SCREEN_KEY_HANDLED;
    }
    }
    return SCREEN_KEY_IGNORED;
}

static int pick_key(JobsScreen *s, App *app, int ch) {
    (void)app;
    int n = jobkind_count();
    ui_list_set_count(&s->kinds, n);
    int moved = ui_list_key(&s->kinds, ch);
    if (moved != UI_LIST_NOT_MINE)
        return ui_list_key_result(moved);
    switch (ch) {
    case 27:
        s->mode = MODE_LIST;
        return SCREEN_KEY_HANDLED;
    case '\n':
    case '\r':
    case KEY_ENTER:
        if (n == 0)
            return SCREEN_KEY_IGNORED;
        s->form = jobform_new(jobkind_at(s->kinds.sel));
        s->fields = (UiList){0};
        s->mode = MODE_FORM;
        return SCREEN_KEY_HANDLED;
    }
    return SCREEN_KEY_IGNORED;
}

static void act(JobsScreen *s, App *app, int ch) {
    JobRow *j = selected(s);
    if (!j) {
        app_status_error(app, "no job selected");
        return;
    }
    Store *st = app_store(app);
    Err err = {0};
    int64_t id = j->id, nid;
    JobState now;
    int rc;
    switch (ch) {
    case 'c':
        if (!(rc = store_job_cancel(st, id, &now, &err)))
            app_status(app, now == JOB_STATE_CANCELLED ? "job #%lld cancelled"
                                                       : "job #%lld: cancel requested",
                       (long long)id);
        break;
    case 'r':
        if (!(rc = store_job_retry(st, id, &nid, &err))) {
            app_status(app, "job #%lld queued again as #%lld", (long long)id, (long long)nid);
            s->sel_id = nid;
        }
        break;
    case 'u':
        if (!(rc = store_job_resume(st, id, &err)))
            app_status(app, "job #%lld resumed (queued)", (long long)id);
        break;
    default: {
        int prio = j->priority + (ch == '+' || ch == '=' ? 1 : -1);
        if (!(rc = store_job_set_priority(st, id, prio, &err)))
            app_status(app, "job #%lld priority %d", (long long)id, prio);
        break;
    }
    }
    if (rc == ERR_BUSY) /* the UI never waits for the lock (app.h) */
        app_status_error(app, "nothing changed: another process is writing to the store; "
                         "press %c again in a moment", ch);
    else if (rc)
        app_status_error(app, "%s", err.msg);
    else
        session_kick(s->session);
    reload(s);
}

static int jobs_key(void *p, App *app, int ch) {
    JobsScreen *s = p;
    if (s->mode == MODE_FORM)
        return form_key(s, app, ch);
    if (s->mode == MODE_PICK)
        return pick_key(s, app, ch);
    int moved = ui_list_key(&s->list, ch);
    if (moved != UI_LIST_NOT_MINE) {
        s->sel_id = s->n_rows ? s->rows[s->list.sel].id : 0;
        follow_log(s, app_store(app));
        return ui_list_key_result(moved);
    }
    switch (ch) {
    case '\n':
    case '\r':
    case KEY_ENTER:
        s->log_only = !s->log_only;
        return SCREEN_KEY_HANDLED;
    case 27:
        if (!s->log_only)
            return SCREEN_KEY_IGNORED;
        s->log_only = 0;
        return SCREEN_KEY_HANDLED;
    case 'a':
        s->mode = MODE_PICK;
        return SCREEN_KEY_HANDLED;
    case 'c':
    case 'r':
    case 'u':
    case '+':
    case '=':
    case '-':
        act(s, app, ch);
        return SCREEN_KEY_HANDLED;
    default:
        return SCREEN_KEY_IGNORED;
    }
}

static int jobs_open(void *p, App *app, int64_t id, Err *err) {
    JobsScreen *s = p;
    for (int i = 0; i < s->n_rows; i++) {
        if (s->rows[i].id == id) {
            s->list.sel = i;
            ui_list_clamp(&s->list);
            s->sel_id = id;
            s->mode = MODE_LIST;
            follow_log(s, app_store(app));
            return 0;
        }
    }
    return err_set(err, ERR_NOTFOUND, "no job #%lld in the list", (long long)id);
}

static void jobs_enter(void *p, App *app) {
    (void)app;
    reload(p);
}

const ScreenClass screen_jobs = {
    .name = "Jobs",
    .fkey = 4,
    .keys = jobs_keys,
    .init = jobs_init,
    .fini = jobs_fini,
    .enter = jobs_enter,
    .draw = jobs_draw,
    .after_refresh = jobs_after_refresh,
    .key = jobs_key,
    .tick = jobs_tick,
    .open = jobs_open,
};
