/* screen_monitor — the Monitor screen: a training run's per-head curves, live.
 *
 * Six plot panels (the five heads and the combined score) show the page chosen with l/a/f:
 * loss, accuracy or F1, training curve and validation curve, plus the same two curves of a
 * second run when comparing. A side panel shows the run's state, epoch, step, elapsed time,
 * ETA, learning rate, throughput, the best checkpoint, the current validation values per
 * head, and head importance (softmax of the learned head weights) as bars.
 *
 * Data: everything comes from the store (store_runs.h), which training jobs in any process
 * write every step. tick() runs at least once a second; when a run's updated_at moved it
 * reads only the metric rows newer than the last one seen and merges them by step, so a
 * long run costs little per refresh. Plot maths is in monitor_plot.c (pure, tested).
 *
 * Which run: unless one is pinned, the screen follows the newest running run (checked each
 * tick), so a run started from the Jobs form, the CLI or another TUI appears by itself; with
 * none running it shows the newest run (one that ended before the screen looked included). Picking a run with r, a
 * link from another screen, or `easel monitor RUN` (AppConfig.monitor_run) pins it; p
 * switches between pinned and following. The header says which.
 *
 * Generator tuning (issue 16): a run of kind "tune" shows its own panels instead — loss,
 * implicit preference accuracy, reward margin, KL proxy, lr, grad norm, pairs/s (split
 * "train", step = optimizer step) and, when online rounds wrote split "round", one line per
 * head of reward_<head> by round — with a side panel of the latest values, the driving job's
 * step and ETA (store_job_get), and the sample images of one saved step (store_run_images.h;
 * the latest unless [ / ] chose another, n the step's next image) rendered by gfx_cache and
 * written in after_refresh as the Jobs screen's preview. A "tune-eval" run shows a table of
 * per-head win rate (bars) and mean score gain (split "eval").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "gfx.h"
#include "img_pane.h"
#include "list.h"
#include "monitor_plot.h"
#include "screen.h"
#include "store_jobs.h"
#include "store_run_images.h"
#include "store_runs.h"
#include "theme.h"

#define N_PANELS 6 /* five heads + combined */

static const char *const panel_names[N_PANELS] = {"spatial", "icono", "style", "fidelity",
                                                  "material", "combined"};
static const char *const page_names[3] = {"loss", "acc", "f1"};
static const char *const page_titles[3] = {"loss", "accuracy", "F1"};
static const double ema_levels[] = {0.0, 0.6, 0.9, 0.97};

typedef struct Series {
    char split[8];
    char name[40];
    double *x;             /* steps, ascending */
    double *y;
    size_t n, cap;
} Series;

typedef struct RunData {
    int have;
    StoreRun run;
    Series *s;
    size_t n_s, cap_s;
    double last_t;         /* newest metric time read */
    double seen_update;    /* run.updated_at when last read */
    StoreCheckpoint *ck;
    size_t n_ck;
    /* tune runs (issue 16): the sample images, latest step first, and the driving job */
    StoreRunImage *img;
    size_t n_img;
    JobRow job;            /* id 0: none (run from the CLI, or not readable) */
} RunData;

typedef struct Monitor {
    RunData main, cmp;
    int page;              /* 0 loss, 1 acc, 2 f1 */
    int ema;               /* index into ema_levels */
    int log_y;
    int picking;           /* 0 none, 1 main run, 2 compare run */
    int pinned;            /* 1: stay on main; 0: follow the newest running run */
    double next_follow;    /* when to look for a newer running run */
    StoreRun *list;
    size_t n_list;
    UiList picker;         /* the picker's selection and scrolling over list (ui/list.h) */
    char err[200];
    /* a tune run's sample images (issue 16): which step and which image of it is shown */
    int64_t smp_step;      /* -1: follow the latest step */
    int smp_idx;           /* index among the images of that step */
    ImgPane pv;            /* the sample shown (key: its run_images id); cache NULL:
                            * --graphics none */
} Monitor;

/* ---- data ---- */

static void rundata_clear(RunData *d) {
    for (size_t i = 0; i < d->n_s; i++) {
        free(d->s[i].x);
        free(d->s[i].y);
    }
    free(d->s);
    store_run_deinit(&d->run);
    store_checkpoints_free(d->ck, d->n_ck);
    store_run_images_free(d->img, d->n_img);
    store_job_row_deinit(&d->job);
    memset(d, 0, sizeof *d);
}

static Series *series_get(RunData *d, const char *split, const char *name, int create) {
    for (size_t i = 0; i < d->n_s; i++)
        if (strcmp(d->s[i].split, split) == 0 && strcmp(d->s[i].name, name) == 0)
            return &d->s[i];
    if (!create)
        return NULL;
    if (d->n_s == d->cap_s) {
        d->cap_s = d->cap_s ? 2 * d->cap_s : 32;
        d->s = xrealloc(d->s, d->cap_s * sizeof *d->s);
    }
    Series *s = &d->s[d->n_s++];
    memset(s, 0, sizeof *s);
    base_strlcpy(s->split, split, sizeof s->split);
    base_strlcpy(s->name, name, sizeof s->name);
    return s;
}

/* Insert (x, y) keeping x ascending; an existing x is replaced (a resumed run redoes steps). */
static void series_put(Series *s, double x, double y) {
    if (s->n == 0 || x > s->x[s->n - 1]) {
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 64;
            s->x = xrealloc(s->x, s->cap * sizeof *s->x);
            s->y = xrealloc(s->y, s->cap * sizeof *s->y);
        }
        s->x[s->n] = x;
        s->y[s->n] = y;
        s->n++;
        return;
    }
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->x[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < s->n && s->x[lo] == x) {
        s->y[lo] = y;
        return;
    }
    if (s->n == s->cap) {
        s->cap = 2 * s->cap;
        s->x = xrealloc(s->x, s->cap * sizeof *s->x);
        s->y = xrealloc(s->y, s->cap * sizeof *s->y);
    }
    memmove(s->x + lo + 1, s->x + lo, (s->n - lo) * sizeof *s->x);
    memmove(s->y + lo + 1, s->y + lo, (s->n - lo) * sizeof *s->y);
    s->x[lo] = x;
    s->y[lo] = y;
    s->n++;
}

static double series_last(RunData *d, const char *split, const char *name) {
    Series *s = series_get(d, split, name, 0);
    return s && s->n ? s->y[s->n - 1] : NAN;
}

static int rundata_load(RunData *d, Store *st, int64_t id, Err *err) {
    rundata_clear(d);
    if (store_run_get(st, id, &d->run, err))
        return err->code;
    d->have = 1;
    return 0;
}

/* Refresh from the store: run row, new metric rows, checkpoints. Cheap when nothing moved. */
static void rundata_refresh(RunData *d, Store *st) {
    if (!d->have)
        return;
    StoreRun r = {0};
    if (store_run_get(st, d->run.id, &r, NULL) != 0)
        return;
    store_run_deinit(&d->run);
    d->run = r;
    if (strcmp(d->run.kind, "tune") == 0) { /* samples and the job's ETA move on their own */
        StoreRunImage *img = NULL;
        size_t n_img = 0;
        if (store_run_images_list(st, d->run.id, &img, &n_img, NULL) == 0) {
            store_run_images_free(d->img, d->n_img);
            d->img = img;
            d->n_img = n_img;
        }
        store_job_row_deinit(&d->job);
        if (d->run.job_id > 0 && store_job_get(st, d->run.job_id, &d->job, NULL) != 0)
            store_job_row_deinit(&d->job);
    }
    if (d->run.updated_at <= d->seen_update && d->n_s > 0)
        return;
    d->seen_update = d->run.updated_at;
    StoreMetric *m = NULL;
    size_t n = 0;
    if (store_metrics_list(st, d->run.id, d->last_t, &m, &n, NULL) == 0) {
        for (size_t i = 0; i < n; i++) {
            series_put(series_get(d, m[i].split, m[i].name, 1), (double)m[i].step, m[i].value);
            if (m[i].t > d->last_t)
                d->last_t = m[i].t;
        }
        free(m);
    }
    store_checkpoints_free(d->ck, d->n_ck);
    d->ck = NULL;
    d->n_ck = 0;
    store_checkpoints_list(st, d->run.id, &d->ck, &d->n_ck, NULL);
}

/* The runs the Monitor shows: reward training, generator tuning and its evaluation. */
static int monitor_kind(const char *kind) {
    return strcmp(kind, "train-reward") == 0 || strcmp(kind, "tune") == 0 ||
           strcmp(kind, "tune-eval") == 0;
}

/* Drop the runs the Monitor does not show from V (N), keeping the order. */
static void runs_filter(StoreRun *v, size_t *n) {
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        if (monitor_kind(v[i].kind))
            v[k++] = v[i];
        else
            store_run_deinit(&v[i]);
    }
    *n = k;
}

static void list_refresh(Monitor *m, Store *st) {
    int64_t sel_id = m->picker.sel < (int)m->n_list ? m->list[m->picker.sel].id : 0;
    store_runs_free(m->list, m->n_list);
    m->list = NULL;
    m->n_list = 0;
    if (store_runs_list(st, NULL, &m->list, &m->n_list, NULL) == 0)
        runs_filter(m->list, &m->n_list);
    for (size_t i = 0; sel_id && i < m->n_list; i++) /* the selection stays on its run */
        if (m->list[i].id == sel_id)
            m->picker.sel = (int)i;
    ui_list_set_count(&m->picker, (int)m->n_list);
}

/* The run to follow: the newest running one, else the newest if it is newer than the one shown
 * (a run that started and ended between two looks, or while another screen was shown, still
 * takes over); 0: none. */
static int64_t newest_run(Store *st, int64_t current) {
    StoreRun *runs = NULL;
    size_t n = 0;
    int64_t pick = current;
    if (store_runs_list(st, NULL, &runs, &n, NULL) == 0) {
        runs_filter(runs, &n);
        size_t i = 0;
        while (i < n && strcmp(runs[i].state, "running") != 0)
            i++;
        if (i < n)
            pick = runs[i].id;
        else if (n && runs[0].id > current) /* ids grow: runs[0] is the newest */
            pick = runs[0].id;
        store_runs_free(runs, n);
    }
    return pick;
}

/* Following: switch to a newer running run. Returns 1 if the run shown changed. */
static int follow(Monitor *m, Store *st) {
    if (m->pinned)
        return 0;
    int64_t cur = m->main.have ? m->main.run.id : 0;
    int64_t want = newest_run(st, cur);
    if (!want || want == cur)
        return 0;
    if (rundata_load(&m->main, st, want, NULL))
        return 0;
    rundata_refresh(&m->main, st);
    return 1;
}

/* Open the picker with the selection on the run shown (else the newest). */
static void pick_open(Monitor *m, Store *st, int which) {
    m->picking = which;
    m->picker.sel = 0;
    store_runs_free(m->list, m->n_list);
    m->list = NULL;
    m->n_list = 0;
    list_refresh(m, st);
    int64_t cur = which == 1 ? (m->main.have ? m->main.run.id : 0)
                             : (m->cmp.have ? m->cmp.run.id : 0);
    for (size_t i = 0; cur && i < m->n_list; i++)
        if (m->list[i].id == cur)
            m->picker.sel = (int)i;
    ui_list_clamp(&m->picker);
}

/* ---- lifecycle ---- */

static void wake_app(void *app) { app_wake(app); }

static void *monitor_init(App *app, Err *err) {
    (void)err;
    Monitor *m = xcalloc(1, sizeof *m);
    m->ema = 1;
    m->smp_step = -1;
    if (app_gfx_mode(app) != GFX_NONE) /* a tune run's sample at one or two sizes */
        m->pv.cache = gfx_cache_new(app_gfx_mode(app), app_gfx_caps(app), 8, wake_app, app);
    Store *st = app_store(app);
    const char *want = app_config(app)->monitor_run;
    StoreRun r = {0};
    if (want && *want) { /* `easel monitor RUN`: that run, pinned */
        Err e = {0};
        m->pinned = 1;
        if (store_run_find(st, want, &r, &e) == 0)
            rundata_load(&m->main, st, r.id, &e);
        else
            snprintf(m->err, sizeof m->err, "%s", e.msg);
        store_run_deinit(&r);
    } else {
        follow(m, st); /* the newest running run, else the newest */
    }
    rundata_refresh(&m->main, st);
    return m;
}

static void monitor_fini(void *p) {
    Monitor *m = p;
    rundata_clear(&m->main);
    rundata_clear(&m->cmp);
    store_runs_free(m->list, m->n_list);
    gfx_cache_free(m->pv.cache);
    img_pane_deinit(&m->pv);
    free(m);
}

static int monitor_tick(void *p, App *app, double now) {
    Monitor *m = p;
    Store *st = app_store(app);
    double before = m->main.last_t + m->cmp.last_t;
    /* a tune run's samples and its job's progress move without new metrics */
    int64_t img_before = m->main.n_img ? m->main.img[0].id + (int64_t)m->main.n_img : 0;
    double job_before = m->main.job.done + m->main.job.eta;
    int64_t run_before = m->main.have ? m->main.run.id : 0;
    const char *state_before = m->main.have ? m->main.run.state : NULL;
    char sb[16] = "";
    if (state_before)
        base_strlcpy(sb, state_before, sizeof sb);
    int moved = 0;
    if (now >= m->next_follow) { /* one short read a second */
        m->next_follow = now + 1.0;
        moved = follow(m, st);
        if (moved)
            app_status(app, "following the newest run: %s", m->main.run.name);
    }
    rundata_refresh(&m->main, st);
    rundata_refresh(&m->cmp, st);
    if (m->picking)
        list_refresh(m, st);
    int64_t img_after = m->main.n_img ? m->main.img[0].id + (int64_t)m->main.n_img : 0;
    int frame_moved = img_pane_tick(&m->pv); /* the sample's frame got ready: draw it */
    if (m->main.have && m->main.run.id != run_before) { /* another run: its latest samples */
        m->smp_step = -1;
        m->smp_idx = 0;
    }
    return moved || m->main.last_t + m->cmp.last_t != before || m->picking ||
                   img_after != img_before || m->main.job.done + m->main.job.eta != job_before ||
                   frame_moved ||
                   (m->main.have && strcmp(sb, m->main.run.state) != 0)
               ? SCREEN_TICK_CHANGED
               : SCREEN_TICK_SAME;
}

static int monitor_open(void *p, App *app, int64_t id, Err *err) {
    Monitor *m = p;
    int rc = rundata_load(&m->main, app_store(app), id, err);
    if (rc == 0) {
        rundata_refresh(&m->main, app_store(app));
        m->pinned = 1; /* a link to one run shows that run */
    }
    m->picking = 0;
    return rc; /* app_switch redraws */
}

/* ---- drawing ---- */

static attr_t series_attr(int id) {
    switch (id) {
    case 1:
        return ui_attr(UI_C_ACCENT);  /* train */
    case 2:
        return ui_attr(UI_C_GOOD);    /* val */
    case 3:
        return ui_attr(UI_C_DIM);     /* compare train */
    default:
        return ui_attr(UI_C_WARN);    /* compare val */
    }
}

/* A smoothed copy of S (x shared). */
static void smoothed(const Series *s, double level, double **y) {
    *y = xmalloc((s->n ? s->n : 1) * sizeof **y);
    plot_ema(s->y, s->n, level, *y);
}

/* Curves SRC[0..N) (NULL or empty ones skipped; series K drawn with id IDS[K], coloured by
 * ATTR) in the box R, whose top line holds the caller's title: smoothed, fitted, with y and x
 * labels (the last x as "XUNIT N"). UNIT01: values live in [0, 1] (accuracy, F1, win rate),
 * keep the scale honest. */
static void draw_plot(Monitor *m, UiRect r, Series *const *src, const int *ids, int n_src,
                      attr_t (*attr)(int), int unit01, const char *xunit) {
    int yaxis = 7; /* label column */
    int cw = r.w - 2 - yaxis, ch = r.h - 3;
    if (cw < 4 || ch < 2)
        return;
    PlotSeries ps[8];
    double *ys[8] = {0};
    int n = 0;
    for (int k = 0; k < n_src && k < 8; k++) {
        if (!src[k] || src[k]->n == 0)
            continue;
        smoothed(src[k], ema_levels[m->ema], &ys[n]);
        ps[n] = (PlotSeries){src[k]->x, ys[n], src[k]->n, ids[k]};
        n++;
    }
    PlotRange range;
    if (n == 0 || !plot_range_fit(ps, n, m->log_y, &range)) {
        ui_put(r.y + r.h / 2, r.x + 2, r.w - 4, ui_attr(UI_C_DIM), "no data yet");
        goto out;
    }
    if (unit01 && !m->log_y) {
        range.y0 = fmax(range.y0, 0.0);
        range.y1 = fmin(range.y1, 1.0);
        if (range.y1 <= range.y0)
            range.y0 = 0, range.y1 = 1;
    }
    PlotCanvas c;
    plot_canvas_init(&c, cw, ch, (PlotGlyphs)theme_plot());
    /* draw the later curves first, so the first (the main run) wins cells both touch */
    for (int k = n - 1; k >= 0; k--)
        plot_canvas_series(&c, &range, &ps[k]);
    for (int row = 0; row < ch; row++) {
        for (int col = 0; col < cw; col++) {
            char g[5];
            plot_canvas_glyph(&c, row, col, g);
            if (g[0] == ' ')
                continue;
            attrset(attr(c.id[row * cw + col]));
            mvaddstr(r.y + 1 + row, r.x + 1 + yaxis + col, g);
        }
    }
    attrset(A_NORMAL);
    /* y labels: top, middle, bottom */
    for (int k = 0; k < 3; k++) {
        int row = k == 0 ? 0 : k == 1 ? ch / 2 : ch - 1;
        double f = 1.0 - (double)row / (ch > 1 ? ch - 1 : 1);
        double v = range.y0 + f * (range.y1 - range.y0);
        if (m->log_y)
            v = pow(10.0, v);
        char lab[16];
        ui_put(r.y + 1 + row, r.x + 1, yaxis - 1, ui_attr(UI_C_DIM), plot_fmt(v, lab, 7));
    }
    /* x labels: first and last step */
    char x0[16], x1[16];
    snprintf(x0, sizeof x0, "%.0f", range.x0);
    snprintf(x1, sizeof x1, "%s %.0f", xunit, range.x1);
    ui_put(r.y + r.h - 2, r.x + 1 + yaxis, cw, ui_attr(UI_C_DIM), x0);
    int l1 = (int)strlen(x1);
    if (l1 < cw - 6)
        ui_put(r.y + r.h - 2, r.x + 1 + yaxis + cw - l1, l1, ui_attr(UI_C_DIM), x1);
    plot_canvas_deinit(&c);
out:
    for (int k = 0; k < 8; k++)
        free(ys[k]);
}

static void draw_panel(Monitor *m, int idx, PlotRect pr) {
    UiRect r = {pr.y, pr.x, pr.h, pr.w};
    char name_tr[48], name_va[48];
    snprintf(name_tr, sizeof name_tr, "%s_%s", panel_names[idx], page_names[m->page]);
    snprintf(name_va, sizeof name_va, "%s_%s", panel_names[idx], page_names[m->page]);
    Series *src[4] = {series_get(&m->main, "train", name_tr, 0),
                      series_get(&m->main, "val", name_va, 0),
                      m->cmp.have ? series_get(&m->cmp, "train", name_tr, 0) : NULL,
                      m->cmp.have ? series_get(&m->cmp, "val", name_va, 0) : NULL};
    char title[128], a[16], b[16];
    double lt = src[0] && src[0]->n ? src[0]->y[src[0]->n - 1] : NAN;
    double lv = src[1] && src[1]->n ? src[1]->y[src[1]->n - 1] : NAN;
    snprintf(title, sizeof title, " %s %s  tr %s  val %s ", panel_names[idx],
             page_titles[m->page], plot_fmt(lt, a, sizeof a), plot_fmt(lv, b, sizeof b));
    ui_box(r, ui_attr(UI_C_DIM), NULL);
    ui_put(r.y, r.x + 1, r.w - 2, ui_attr(UI_C_ACCENT), title);
    static const int ids[4] = {1, 2, 3, 4};
    draw_plot(m, r, src, ids, 4, series_attr, m->page > 0, "step");
}

static void fmt_duration(double s, char *out, size_t n) {
    if (!isfinite(s) || s < 0) {
        snprintf(out, n, "-");
        return;
    }
    long t = lround(s);
    if (t >= 3600)
        snprintf(out, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
        snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
}

static void draw_side(Monitor *m, PlotRect pr) {
    UiRect r = {pr.y, pr.x, pr.h, pr.w};
    ui_box(r, ui_attr(UI_C_DIM), NULL);
    int y = r.y + 1, x = r.x + 2, w = r.w - 4, bottom = r.y + r.h - 1;
    RunData *d = &m->main;
    char a[16], b[16];
    ui_put(y++, x, w, ui_attr(UI_C_ACCENT), d->run.name);
    attr_t sa = strcmp(d->run.state, "running") == 0     ? ui_attr(UI_C_GOOD)
                : strcmp(d->run.state, "succeeded") == 0 ? ui_attr(UI_C_NORMAL)
                                                         : ui_attr(UI_C_WARN);
    ui_putf(y++, x, w, sa, "%s", d->run.state);
    double epoch = series_last(d, "sys", "epoch"), epochs = series_last(d, "sys", "epochs");
    double step = series_last(d, "sys", "step");
    if (y < bottom && isfinite(epoch))
        ui_putf(y++, x, w, A_NORMAL, "epoch %.2f/%.0f  step %.0f", epoch, epochs, step);
    char el[24], eta[24];
    fmt_duration(series_last(d, "sys", "elapsed_s"), el, sizeof el);
    fmt_duration(strcmp(d->run.state, "running") == 0 ? series_last(d, "sys", "eta_s") : NAN,
                 eta, sizeof eta);
    if (y < bottom)
        ui_putf(y++, x, w, A_NORMAL, "elapsed %s  ETA %s", el, eta);
    if (y < bottom)
        ui_putf(y++, x, w, A_NORMAL, "lr %s  %s pairs/s",
                plot_fmt(series_last(d, "train", "lr"), a, sizeof a),
                plot_fmt(series_last(d, "sys", "pairs_per_s"), b, sizeof b));
    for (size_t i = 0; i < d->n_ck && y < bottom; i++)
        if (strcmp(d->ck[i].name, "best") == 0)
            ui_putf(y++, x, w, A_NORMAL, "best: epoch %.0f, mean F1 %s", d->ck[i].epoch,
                    plot_fmt(series_last(d, "sys", "best_f1"), a, sizeof a));
    y++;
    if (y < bottom)
        ui_put(y++, x, w, ui_attr(UI_C_DIM), "head      val acc  val F1");
    for (int h = 0; h < N_PANELS && y < bottom; h++) {
        char n1[48], n2[48];
        snprintf(n1, sizeof n1, "%s_acc", panel_names[h]);
        snprintf(n2, sizeof n2, "%s_f1", panel_names[h]);
        ui_putf(y++, x, w, A_NORMAL, "%-9s %7s  %6s", panel_names[h],
                plot_fmt(series_last(d, "val", n1), a, sizeof a),
                plot_fmt(series_last(d, "val", n2), b, sizeof b));
    }
    y++;
    double hw[5], imp[5];
    int have_w = 1;
    for (int h = 0; h < 5; h++) {
        char n1[48];
        snprintf(n1, sizeof n1, "head_w_%s", panel_names[h]);
        hw[h] = series_last(d, "sys", n1);
        if (!isfinite(hw[h]))
            have_w = 0;
    }
    if (have_w && y < bottom) {
        plot_softmax(hw, 5, imp);
        ui_put(y++, x, w, ui_attr(UI_C_DIM), "head importance");
        int bw = w - 16;
        for (int h = 0; h < 5 && y < bottom; h++) {
            char bar[3 * 64 + 1];
            ui_putf(y, x, 9, A_NORMAL, "%s", panel_names[h]);
            int bn = bw < 64 ? bw : 64;
            if (bw > 0)
                ui_put(y, x + 9, bw, ui_attr(UI_C_ACCENT),
                       theme_plot() == THEME_PLOT_ASCII ? plot_bar_ascii(imp[h], bn, bar)
                                                        : plot_bar(imp[h], bn, bar));
            ui_putf(y++, x + 9 + (bw > 0 ? bw : 0) + 1, 6, A_NORMAL, "%.3f", imp[h]);
        }
    }
    if (m->cmp.have && y + 1 < bottom) {
        y++;
        ui_putf(y++, x, w, ui_attr(UI_C_WARN), "vs %s (%s)", m->cmp.run.name, m->cmp.run.state);
    }
}


/* ---- tune and tune-eval runs (issue 16) --------------------------------------------------- */

/* A tune run's curves: split "train", step = optimizer step. */
typedef struct TunePanel {
    const char *name, *title;
    int unit01;
} TunePanel;

static const TunePanel tune_panels[] = {
    {"loss", "loss", 0},          {"acc", "implicit pref. accuracy", 1},
    {"margin", "reward margin", 0}, {"kl", "KL proxy", 0},
    {"lr", "learning rate", 0},   {"grad_norm", "grad norm", 0},
    {"pairs_per_s", "pairs/s", 0},
};
#define N_TUNE ((int)ARRAY_LEN(tune_panels))

static int run_is(const RunData *d, const char *kind) {
    return d->have && strcmp(d->run.kind, kind) == 0;
}

/* Online rounds write split "round", reward_<head> per round: shown as one line per head. */
static int has_rounds(RunData *d) {
    for (size_t i = 0; i < d->n_s; i++)
        if (strcmp(d->s[i].split, "round") == 0 && strncmp(d->s[i].name, "reward_", 7) == 0)
            return 1;
    return 0;
}

/* One colour per head (ids 1..6 in panel_names order). */
static attr_t head_attr(int id) {
    switch (id) {
    case 1:
        return ui_attr(UI_C_ACCENT);
    case 2:
        return ui_attr(UI_C_GOOD);
    case 3:
        return ui_attr(UI_C_WARN);
    case 4:
        return ui_attr(UI_C_BAD);
    case 5:
        return ui_attr(UI_C_DIM);
    default:
        return ui_attr(UI_C_NORMAL) | A_BOLD;
    }
}

static void draw_tune_panel(Monitor *m, int k, PlotRect pr) {
    UiRect r = {pr.y, pr.x, pr.h, pr.w};
    Series *src[2] = {series_get(&m->main, "train", tune_panels[k].name, 0),
                      m->cmp.have ? series_get(&m->cmp, "train", tune_panels[k].name, 0) : NULL};
    char title[128], a[16];
    snprintf(title, sizeof title, " %s  %s ", tune_panels[k].title,
             plot_fmt(src[0] && src[0]->n ? src[0]->y[src[0]->n - 1] : NAN, a, sizeof a));
    ui_box(r, ui_attr(UI_C_DIM), NULL);
    ui_put(r.y, r.x + 1, r.w - 2, ui_attr(UI_C_ACCENT), title);
    static const int ids[2] = {1, 3};
    draw_plot(m, r, src, ids, 2, series_attr, tune_panels[k].unit01, "step");
}

/* The online rounds' mean reward of the candidates per head: one line each, so a head that
 * climbs while the others fall (over-optimisation) shows. */
static void draw_round_panel(Monitor *m, PlotRect pr) {
    UiRect r = {pr.y, pr.x, pr.h, pr.w};
    Series *src[N_PANELS];
    int ids[N_PANELS];
    for (int h = 0; h < N_PANELS; h++) {
        char name[48];
        snprintf(name, sizeof name, "reward_%s", panel_names[h]);
        src[h] = series_get(&m->main, "round", name, 0);
        ids[h] = h + 1;
    }
    ui_box(r, ui_attr(UI_C_DIM), NULL);
    ui_put(r.y, r.x + 1, r.w - 2, ui_attr(UI_C_ACCENT), " reward per head, by round ");
    draw_plot(m, r, src, ids, N_PANELS, head_attr, 0, "round");
    int x = r.x + 2;
    for (int h = 0; h < N_PANELS && x < r.x + r.w - 2; h++) /* the legend on the bottom edge */
        x += ui_putf(r.y + r.h - 1, x, r.x + r.w - 2 - x, head_attr(h + 1), "%s ",
                     panel_names[h]);
}

/* The step whose samples are shown (the latest unless [ / ] chose one), the first index of
 * its images in main.img and how many there are; 0 when the run has none. */
static int sample_step(Monitor *m, int64_t *step, size_t *first, size_t *count) {
    RunData *d = &m->main;
    if (!d->n_img)
        return 0;
    int64_t want = m->smp_step < 0 ? d->img[0].step : m->smp_step;
    size_t i = 0;
    while (i < d->n_img && d->img[i].step > want)
        i++;
    if (i == d->n_img) /* older than any: the oldest step */
        i = d->n_img - 1;
    *step = d->img[i].step;
    while (i > 0 && d->img[i - 1].step == *step)
        i--;
    *first = i;
    size_t k = i;
    while (k < d->n_img && d->img[k].step == *step)
        k++;
    *count = k - i;
    return 1;
}

/* [ (DIR -1): the next older step with samples; ] (+1): the next newer (the latest follows). */
static int sample_move(Monitor *m, int dir) {
    int64_t step;
    size_t first, count;
    if (!sample_step(m, &step, &first, &count))
        return 0;
    RunData *d = &m->main;
    if (dir < 0) {
        if (first + count >= d->n_img)
            return 0; /* the oldest already */
        m->smp_step = d->img[first + count].step;
    } else {
        if (first == 0)
            return 0; /* the latest already */
        m->smp_step = d->img[first - 1].step == d->img[0].step ? -1 : d->img[first - 1].step;
    }
    m->smp_idx = 0;
    return 1;
}

static void fmt_eta_job(const RunData *d, char *out, size_t n) {
    double eta = NAN;
    if (strcmp(d->run.state, "running") == 0) {
        if (d->job.id && d->job.eta >= 0)
            eta = d->job.eta;
        else
            eta = series_last((RunData *)d, "sys", "eta_s");
    }
    fmt_duration(eta, out, n);
}

static void draw_tune_side(Monitor *m, App *app, PlotRect pr) {
    UiRect r = {pr.y, pr.x, pr.h, pr.w};
    ui_box(r, ui_attr(UI_C_DIM), NULL);
    int y = r.y + 1, x = r.x + 2, w = r.w - 4, bottom = r.y + r.h - 1;
    RunData *d = &m->main;
    char a[16];
    ui_put(y++, x, w, ui_attr(UI_C_ACCENT), d->run.name);
    attr_t sa = strcmp(d->run.state, "running") == 0     ? ui_attr(UI_C_GOOD)
                : strcmp(d->run.state, "succeeded") == 0 ? ui_attr(UI_C_NORMAL)
                                                         : ui_attr(UI_C_WARN);
    ui_putf(y++, x, w, sa, "%s", d->run.state);
    Series *loss = series_get(d, "train", "loss", 0);
    if (y < bottom && d->job.id && d->job.total > 0)
        ui_putf(y++, x, w, A_NORMAL, "%.0f/%.0f %s (job #%lld)", d->job.done, d->job.total,
                d->job.unit && d->job.unit[0] ? d->job.unit : "done", (long long)d->job.id);
    else if (y < bottom && loss && loss->n)
        ui_putf(y++, x, w, A_NORMAL, "step %.0f", loss->x[loss->n - 1]);
    char el[24], eta[24];
    fmt_duration(d->run.updated_at - d->run.created_at, el, sizeof el);
    fmt_eta_job(d, eta, sizeof eta);
    if (y < bottom)
        ui_putf(y++, x, w, A_NORMAL, "elapsed %s  ETA %s", el, eta);
    y++;
    for (int k = 0; k < N_TUNE && y < bottom; k++)
        ui_putf(y++, x, w, A_NORMAL, "%-12s %10s", tune_panels[k].name,
                plot_fmt(series_last(d, "train", tune_panels[k].name), a, sizeof a));
    if (has_rounds(d) && y + 1 < bottom) {
        Series *c = series_get(d, "round", "reward_combined", 0);
        ui_putf(y++, x, w, ui_attr(UI_C_DIM), "round %.0f: mean reward",
                c && c->n ? c->x[c->n - 1] : NAN);
        for (int h = 0; h < N_PANELS && y < bottom; h++) {
            char name[48];
            snprintf(name, sizeof name, "reward_%s", panel_names[h]);
            ui_putf(y++, x, w, head_attr(h + 1), "%-12s %10s", panel_names[h],
                    plot_fmt(series_last(d, "round", name), a, sizeof a));
        }
    }
    if (m->cmp.have && y < bottom)
        ui_putf(y++, x, w, ui_attr(UI_C_WARN), "vs %s (%s)", m->cmp.run.name, m->cmp.run.state);
    /* the samples of one step: a line saying which, then the image */
    int64_t step;
    size_t first, count;
    if (y + 1 >= bottom)
        return;
    y++;
    if (!sample_step(m, &step, &first, &count)) {
        ui_put(y, x, w, ui_attr(UI_C_DIM), "no sample images yet");
        return;
    }
    if (m->smp_idx >= (int)count)
        m->smp_idx = 0;
    const StoreRunImage *im = &d->img[first + (size_t)m->smp_idx];
    ui_putf(y++, x, w, ui_attr(UI_C_ACCENT), "samples step %lld%s", (long long)step,
            m->smp_step < 0 ? " (latest)" : "");
    if (y < bottom)
        ui_putf(y++, x, w, A_NORMAL, "%d/%zu seed %lld %s", m->smp_idx + 1, count,
                (long long)im->seed, im->label);
    if (!m->pv.cache)
        return;
    const GfxCaps *caps = app_gfx_caps(app);
    int cols = r.w - 2;
    int rows = cols * (caps->cell_w > 0 ? caps->cell_w : 1) /
               (caps->cell_h > 0 ? caps->cell_h : 1); /* a square */
    if (rows > bottom - y)
        rows = bottom - y;
    if (rows < 4 || cols < 8)
        return;
    img_pane_set(&m->pv, im->id, im->path);
    img_pane_draw(&m->pv, (UiRect){y, r.x + 1, rows, cols});
}

static void draw_tune(Monitor *m, App *app, UiRect r) {
    int rounds = has_rounds(&m->main);
    MonitorLayout l;
    int n = monitor_layout(r.h, r.w, N_TUNE + rounds, &l);
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "Monitor: %s  [%s]  tune  %s  EMA %.2f (e)  %s (g)  samples [ ] n%s",
             m->main.run.name, m->main.run.state,
             m->pinned ? "pinned (p: follow newest)" : "following newest run (p: pin)",
             ema_levels[m->ema], m->log_y ? "log y" : "linear y",
             m->cmp.have ? "  comparing (c)" : "");
    ui_put(r.y + l.header.y, r.x, r.w, ui_attr(UI_C_ACCENT), hdr);
    const char *line = theme_plot() == THEME_PLOT_ASCII ? "--" : "\xE2\x94\x80\xE2\x94\x80";
    int lx = r.x;
    lx += ui_putf(r.y + 1, lx, r.x + r.w - lx, series_attr(1), "%s train   ", line);
    if (m->cmp.have)
        ui_putf(r.y + 1, lx, r.x + r.w - lx, series_attr(3), "%s compared train", line);
    for (int i = 0; i < n; i++) {
        PlotRect pr = l.plots[i];
        pr.y += r.y;
        pr.x += r.x;
        if (i < N_TUNE)
            draw_tune_panel(m, i, pr);
        else
            draw_round_panel(m, pr);
    }
    if (l.side.h > 0) {
        PlotRect pr = l.side;
        pr.y += r.y;
        pr.x += r.x;
        draw_tune_side(m, app, pr);
    }
    if (n == 0)
        ui_put(r.y + 2, r.x, r.w, ui_attr(UI_C_WARN), "terminal too small for plots");
}

/* A tune-eval run: per head, the share of (prompt, seed) where the adapter's image scores
 * strictly higher than the base model's (win rate) and the mean score gain. */
static void draw_tune_eval(Monitor *m, UiRect r) {
    RunData *d = &m->main;
    char hdr[256], a[16], b[16], c[16];
    snprintf(hdr, sizeof hdr, "Monitor: %s  [%s]  tune-eval  %s", d->run.name, d->run.state,
             m->pinned ? "pinned (p: follow newest)" : "following newest run (p: pin)");
    ui_put(r.y, r.x, r.w, ui_attr(UI_C_ACCENT), hdr);
    int y = r.y + 2, x = r.x + 2, w = r.w - 4;
    double pairs = series_last(d, "sys", "pairs");
    if (isfinite(pairs))
        snprintf(a, sizeof a, "%.0f", pairs);
    else
        snprintf(a, sizeof a, "-");
    ui_putf(y++, x, w, A_NORMAL, "adapter vs base on %s (prompt, seed) pairs; images in %s", a,
            d->run.output ? d->run.output : "-");
    y++;
    int bw = w - 56;
    if (bw > 40)
        bw = 40;
    ui_putf(y++, x, w, ui_attr(UI_C_DIM), "%-10s %9s  %-*s %10s %10s %10s", "head", "win rate",
            bw > 0 ? bw : 0, "", "mean gain", "base", "adapter");
    for (int h = 0; h < N_PANELS && y < r.y + r.h; h++) {
        char n1[48], n2[48], n3[48], n4[48];
        snprintf(n1, sizeof n1, "win_%s", panel_names[h]);
        snprintf(n2, sizeof n2, "gain_%s", panel_names[h]);
        snprintf(n3, sizeof n3, "base_%s", panel_names[h]);
        snprintf(n4, sizeof n4, "adapter_%s", panel_names[h]);
        double win = series_last(d, "eval", n1), gain = series_last(d, "eval", n2);
        attr_t at = !isfinite(win) ? ui_attr(UI_C_DIM)
                    : win > 0.5    ? ui_attr(UI_C_GOOD)
                    : win < 0.5    ? ui_attr(UI_C_WARN)
                                   : A_NORMAL;
        if (isfinite(win))
            ui_putf(y, x, 21, at, "%-10s %8.1f%%", panel_names[h], 100.0 * win);
        else
            ui_putf(y, x, 21, at, "%-10s %9s", panel_names[h], "-");
        if (bw > 0) {
            char bar[3 * 64 + 1];
            double f = isfinite(win) ? win : 0.0;
            ui_put(y, x + 21, bw, at,
                   theme_plot() == THEME_PLOT_ASCII ? plot_bar_ascii(f, bw, bar)
                                                    : plot_bar(f, bw, bar));
        }
        char gs[24];
        if (isfinite(gain))
            snprintf(gs, sizeof gs, "%+.4f", gain);
        else
            snprintf(gs, sizeof gs, "-");
        ui_putf(y++, x + 21 + (bw > 0 ? bw : 0), w - 21 - (bw > 0 ? bw : 0), A_NORMAL,
                " %10s %10s %10s", gs, plot_fmt(series_last(d, "eval", n3), b, sizeof b),
                plot_fmt(series_last(d, "eval", n4), c, sizeof c));
    }
    y++;
    if (y < r.y + r.h)
        ui_put(y, x, w, ui_attr(UI_C_DIM),
               "win rate: share of pairs where the adapter's image scores strictly higher; "
               "50% is no change");
}

static void picker_row(void *user, int i, UiRect row, int selected) {
    const Monitor *m = user;
    const StoreRun *run = &m->list[i];
    ui_putf(row.y, row.x, row.w, selected ? ui_attr(UI_C_SELECT) : A_NORMAL,
            "#%-4lld %-40s %-12s %-11s", (long long)run->id, run->name, run->kind, run->state);
}

static void draw_picker(Monitor *m, UiRect r) {
    ui_put(r.y + 1, r.x + 2, r.w - 4, ui_attr(UI_C_ACCENT),
           m->picking == 1 ? "Pick a run (Enter: open, Esc: back)"
                           : "Pick a run to compare with (Enter: compare, x: none, Esc: back)");
    if (m->n_list == 0) {
        ui_put(r.y + 3, r.x + 2, r.w - 4, ui_attr(UI_C_DIM),
               "no training runs yet: start one with 'easel train' or the Jobs screen");
        return;
    }
    ui_list_draw(&m->picker, (UiRect){r.y + 3, r.x + 2, r.h - 4, r.w - 4}, NULL, 0,
                 picker_row, m);
}

static void monitor_draw(void *p, App *app, UiRect r) {
    Monitor *m = p;
    img_pane_begin(&m->pv);
    if (m->picking) {
        draw_picker(m, r);
        return;
    }
    if (!m->main.have) {
        if (m->err[0]) {
            ui_put(r.y + 1, r.x + 2, r.w - 4, ui_attr(UI_C_WARN), m->err);
            return;
        }
        ui_put(r.y + 1, r.x + 2, r.w - 4, A_BOLD, "No training run yet.");
        ui_put(r.y + 2, r.x + 2, r.w - 4, A_NORMAL,
               "Start one with 'easel train' or on the Jobs screen (F4):");
        ui_put(r.y + 3, r.x + 2, r.w - 4, A_NORMAL,
               "it appears here by itself (following the newest run).");
        return;
    }
    if (run_is(&m->main, "tune")) {
        draw_tune(m, app, r);
        return;
    }
    if (run_is(&m->main, "tune-eval")) {
        draw_tune_eval(m, r);
        return;
    }
    MonitorLayout l;
    int n = monitor_layout(r.h, r.w, N_PANELS, &l);
    char hdr[256];
    /* fits 120 columns with a default run name (train-DATE-TIME) */
    snprintf(hdr, sizeof hdr, "Monitor: %s  [%s]  %s  %s (l/a/f)  EMA %.2f (e)  %s (g)%s",
             m->main.run.name, m->main.run.state,
             m->pinned ? "pinned (p: follow newest)" : "following newest run (p: pin)",
             page_titles[m->page], ema_levels[m->ema], m->log_y ? "log y" : "linear y",
             m->cmp.have ? "  comparing (c)" : "");
    ui_put(r.y + l.header.y, r.x, r.w, ui_attr(UI_C_ACCENT), hdr);
    /* the legend, each entry in its series' colour (and -- in ASCII plots) */
    const char *line = theme_plot() == THEME_PLOT_ASCII ? "--" : "\xE2\x94\x80\xE2\x94\x80";
    static const char *const names[] = {"train", "val", "compared train", "compared val"};
    int lx = r.x;
    for (int k = 0; k < (m->cmp.have ? 4 : 2); k++)
        lx += ui_putf(r.y + 1, lx, r.x + r.w - lx, series_attr(k + 1), "%s %s   ", line, names[k]);
    for (int i = 0; i < n; i++) {
        PlotRect pr = l.plots[i];
        pr.y += r.y;
        pr.x += r.x;
        draw_panel(m, i, pr);
    }
    if (l.side.h > 0) {
        PlotRect pr = l.side;
        pr.y += r.y;
        pr.x += r.x;
        draw_side(m, pr);
    }
    if (n == 0)
        ui_put(r.y + 2, r.x, r.w, ui_attr(UI_C_WARN), "terminal too small for plots");
}

/* ---- keys ---- */

static int monitor_key(void *p, App *app, int ch) {
    Monitor *m = p;
    Store *st = app_store(app);
    if (m->picking) {
        int moved = ui_list_key(&m->picker, ch);
        if (moved != UI_LIST_NOT_MINE)
            return ui_list_key_result(moved);
        switch (ch) {
        case 27:
            m->picking = 0;
            return SCREEN_KEY_HANDLED;
        case 'x':
            if (m->picking == 2)
                rundata_clear(&m->cmp);
            m->picking = 0;
            return SCREEN_KEY_HANDLED;
        case '\n':
        case '\r':
        case KEY_ENTER:
            if (m->n_list) {
                RunData *d = m->picking == 1 ? &m->main : &m->cmp;
                Err e = {0};
                if (rundata_load(d, st, m->list[m->picker.sel].id, &e) == 0) {
                    rundata_refresh(d, st);
                    if (m->picking == 1) {
                        m->pinned = 1;
                        app_status(app, "pinned to %s (p follows the newest run again)",
                                   d->run.name);
                    }
                } else {
                    app_status_error(app, "%s", e.msg);
                }
            }
            m->picking = 0;
            return SCREEN_KEY_HANDLED;
        default:
            return SCREEN_KEY_IGNORED;
        }
    }
    switch (ch) {
    case 'l':
        m->page = 0;
        return SCREEN_KEY_HANDLED;
    case 'a':
        m->page = 1;
        return SCREEN_KEY_HANDLED;
    case 'f':
        m->page = 2;
        return SCREEN_KEY_HANDLED;
    case 'e':
        m->ema = (m->ema + 1) % (int)ARRAY_LEN(ema_levels);
        app_status(app, "smoothing %.2f", ema_levels[m->ema]);
        return SCREEN_KEY_HANDLED;
    case 'g':
        m->log_y = !m->log_y;
        return SCREEN_KEY_HANDLED;
    case '[':
    case ']':
        if (!run_is(&m->main, "tune") || !m->main.n_img)
            return SCREEN_KEY_IGNORED;
        if (!sample_move(m, ch == '[' ? -1 : 1))
            return SCREEN_KEY_SAME;
        return SCREEN_KEY_HANDLED;
    case 'n': {
        int64_t step;
        size_t first, count;
        if (!run_is(&m->main, "tune") || !sample_step(m, &step, &first, &count))
            return SCREEN_KEY_IGNORED;
        m->smp_idx = (m->smp_idx + 1) % (int)count;
        return count > 1 ? SCREEN_KEY_HANDLED : SCREEN_KEY_SAME;
    }
    case 'b':
        theme_plot_set(theme_plot_next(theme_plot()));
        app_status(app, "plots in %s", theme_plot_name(theme_plot()));
        return SCREEN_KEY_HANDLED;
    case 'r':
    case 'c':
        pick_open(m, st, ch == 'r' ? 1 : 2);
        return SCREEN_KEY_HANDLED;
    case 'p':
        m->pinned = !m->pinned;
        if (m->pinned && m->main.have) {
            app_status(app, "pinned to %s", m->main.run.name);
        } else {
            m->pinned = 0;
            follow(m, st);
            app_status(app, "following the newest running run");
        }
        return SCREEN_KEY_HANDLED;
    default:
        return SCREEN_KEY_IGNORED;
    }
}

/* Write a tune run's sample frame (img_pane.h). */
static int monitor_after_refresh(void *p, App *app, int full) {
    Monitor *m = p;
    return img_pane_after_refresh(&m->pv, app, full);
}

static const ScreenKey monitor_keys[] = {
    {"l / a / f", "plot loss / accuracy / F1"},
    {"e", "cycle EMA smoothing (0, 0.6, 0.9, 0.97)"},
    {"g", "toggle log scale on the y axis"},
    {"b", "plot glyphs: braille, blocks, ASCII in turn"},
    {"r", "pick the run to show (pins it)"},
    {"p", "pin the run shown / follow the newest running run again"},
    {"c", "compare with a second run (x in the list: stop comparing)"},
    {"[ / ]", "tune run: the sample images of the previous / next saved step"},
    {"n", "tune run: the next sample image of the step shown"},
    {NULL, NULL},
};

const ScreenClass screen_monitor = {
    .name = "Monitor",
    .fkey = 5,
    .keys = monitor_keys,
    .init = monitor_init,
    .fini = monitor_fini,
    .draw = monitor_draw,
    .key = monitor_key,
    .tick = monitor_tick,
    .open = monitor_open,
    .after_refresh = monitor_after_refresh,
};
