/* screen_annotate — rate images on the five aspects, the image inline.
 *
 * Session model: `hist` is every image this session has shown, `pos` the one on screen.
 * Enter commits the values of the shown image (one store transaction, src/store_annotate.h)
 * and only then moves on: forward in `hist` if the annotator had gone back, else to the next
 * image of the queue (images shown or skipped this session are left out of it). `u` reopens
 * the last committed image; b/n walk `hist`; s skips; g opens any image by id; f flags.
 *
 * Graphics: the worker of gfx_cache renders frames; this screen asks for the shown image
 * (never blocking) and prefetches the next queue images at the same box size, so moving on
 * only waits for the terminal. The image box is left blank by draw() — ncurses never writes
 * there — and after_refresh writes the frame with ESC 7, CUP, frame, ESC 8. When the image on
 * the terminal must go away and no frame replaces it (failed image, still rendering), the
 * screen asks the app for a full redraw, which clears it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "annotate_vm.h"
#include "base.h"
#include "gfx.h"
#include "loader.h"
#include "log.h"
#include "screen.h"
#include "theme.h"
#include "store_annotate.h"
#include "store_catalog.h"

#define N_PREFETCH 3
#define CACHE_FRAMES 12
#define QUEUE_BATCH 256      /* images per background queue read */
#define QUEUE_LOW 8          /* read again when fewer usable ones are left */
#define QUEUE_REFRESH 30.0   /* seconds: progress and new imports */
#define IDLE_CAP 60.0        /* a pause longer than this counts as this long */

/* A background queue read: what was asked and what came back (see ui/loader.h). */
typedef struct QueueReq {
    AnnotateQuery q;         /* q.prompt owned here */
    int64_t *skip;           /* images this session showed or skipped */
    int n_skip;
    int session_new;         /* the session's count when asked, echoed back */
    double asked_at;         /* echoed back */
} QueueReq;

typedef struct QueueSnap {
    int64_t *ids;
    int n;
    int complete;            /* the whole queue (fewer than QUEUE_BATCH) */
    AnnotateProgress prog;
    int session_new;
    double asked_at;
} QueueSnap;

typedef struct Annotate {
    App *app;
    Store *st;
    int64_t annotator_id;
    StoreAspect *asp;        /* store_aspects_list: the first ANNOTATE_ASPECTS are rated */
    size_t n_asp;
    AnnotateQuery q;
    GfxMode mode;
    GfxCache *cache;

    int64_t *hist;           /* images shown this session, in order */
    int n_hist;
    int pos;                 /* index in hist of the image on screen; -1: none */
    int64_t *done;           /* committed this session, for undo */
    int n_done;
    int64_t *skipped;
    int n_skipped;
    int session_new;         /* images rated for the first time this session */
    double session_start;

    AnnotateImage img;       /* the image on screen (valid when pos >= 0) */
    int have_img;
    AnnotateVm vm;
    double active;           /* seconds spent on it so far, pauses capped (see note_activity) */
    double last_event;       /* last key or appearance */
    int queue_empty;
    int waiting;             /* the next image waits for a queue read */

    UiLoader *loader;        /* reads the queue and progress off the UI thread */
    QueueSnap *snap;         /* the last queue read; NULL before the first */
    double snap_at;          /* when it was asked for */
    double asked_at;

    AnnotateLayout lay;      /* from the last draw */
    int lay_ok;
    GfxState gstate;
    char gmsg[256];
    int64_t on_term_key;     /* image currently drawn on the terminal, -1 none */
    int on_term_cols;
    int on_term_rows;
} Annotate;

static void push(int64_t **a, int *n, int64_t v) {
    *a = xrealloc(*a, sizeof **a * (size_t)(*n + 1));
    (*a)[(*n)++] = v;
}

static void wake_app(void *app) { app_wake(app); }

/* ---- the queue, read in the background -------------------------------------------------- */

static void *queue_load(Store *st, void *argp, Err *err) {
    QueueReq *r = argp;
    QueueSnap *snap = xcalloc(1, sizeof *snap);
    snap->ids = xmalloc(sizeof *snap->ids * QUEUE_BATCH);
    snap->session_new = r->session_new;
    snap->asked_at = r->asked_at;
    if (store_annotate_queue(st, &r->q, r->skip, r->n_skip, snap->ids, QUEUE_BATCH, &snap->n,
                             err) ||
        store_annotate_progress(st, &r->q, &snap->prog, err)) {
        free(snap->ids);
        free(snap);
        return NULL;
    }
    snap->complete = snap->n < QUEUE_BATCH;
    return snap;
}

static void queue_req_free(void *p) {
    QueueReq *r = p;
    free((char *)r->q.prompt);
    free(r->skip);
    free(r);
}

static void queue_snap_free(void *p) {
    QueueSnap *s = p;
    if (s) {
        free(s->ids);
        free(s);
    }
}

static int contains(const int64_t *a, int n, int64_t v) {
    for (int i = 0; i < n; i++)
        if (a[i] == v)
            return 1;
    return 0;
}

static int seen(const Annotate *a, int64_t id) {
    return contains(a->hist, a->n_hist, id) || contains(a->skipped, a->n_skipped, id);
}

static void ask_queue(Annotate *a) {
    QueueReq *r = xcalloc(1, sizeof *r);
    r->q = a->q;
    r->q.prompt = xstrdup(a->q.prompt);
    r->n_skip = a->n_hist + a->n_skipped;
    r->skip = xmalloc(sizeof *r->skip * (size_t)(r->n_skip + 1));
    if (a->n_hist)
        memcpy(r->skip, a->hist, sizeof *r->skip * (size_t)a->n_hist);
    if (a->n_skipped)
        memcpy(r->skip + a->n_hist, a->skipped, sizeof *r->skip * (size_t)a->n_skipped);
    r->session_new = a->session_new;
    r->asked_at = a->asked_at = base_now();
    ui_loader_request(a->loader, r);
}

/* Up to MAX images of the last queue read that this session has not seen and that are still
 * in the queue now (other annotators commit meanwhile). Returns how many. */
static int upcoming(Annotate *a, int64_t *ids, int max) {
    int n = 0;
    for (int i = 0; a->snap && i < a->snap->n && n < max; i++) {
        int64_t id = a->snap->ids[i];
        if (seen(a, id) || contains(ids, n, id))
            continue;
        int ok = 0;
        Err err = {0};
        if (store_annotate_eligible(a->st, &a->q, id, &ok, &err) == 0 && ok)
            ids[n++] = id;
    }
    return n;
}

/* Images of the last read not yet seen (without the eligibility check: a cheap estimate). */
static int unseen_in_snap(const Annotate *a) {
    int n = 0;
    for (int i = 0; a->snap && i < a->snap->n; i++)
        n += !seen(a, a->snap->ids[i]);
    return n;
}

static void prefetch(Annotate *a) {
    if (!a->cache || !a->lay_ok)
        return;
    int64_t ids[N_PREFETCH];
    int n = upcoming(a, ids, N_PREFETCH);
    for (int i = 0; i < n; i++) {
        AnnotateImage im;
        Err err = {0};
        if (store_annotate_image(a->st, ids[i], a->annotator_id, &im, &err) == 0) {
            gfx_cache_prefetch(a->cache, im.id, im.path, a->lay.img_w, a->lay.img_h);
            store_annotate_image_deinit(&im);
        }
    }
}

/* The image on screen just changed (or went away). If the terminal still shows another image
 * and no frame of the new one is ready to cover it, clear the terminal (a full redraw); the
 * new frame follows when it is ready. A ready frame covers the whole box: nothing to do. */
static void terminal_sync(Annotate *a) {
    if (a->on_term_key < 0 || (a->have_img && a->img.id == a->on_term_key))
        return;
    if (a->have_img && a->cache && a->lay_ok) {
        const GfxFrame *f = NULL;
        char msg[8];
        GfxState s = gfx_cache_get(a->cache, a->img.id, a->img.path, a->lay.img_w,
                                   a->lay.img_h, &f, msg, sizeof msg);
        gfx_cache_release(a->cache, f);
        if (s == GFX_READY)
            return;
    }
    a->on_term_key = -1;
    app_redraw_all(a->app);
}

/* Show image ID (already in hist at index POS). */
static int show(Annotate *a, int pos, Err *err) {
    AnnotateImage im;
    int rc = store_annotate_image(a->st, a->hist[pos], a->annotator_id, &im, err);
    if (rc)
        return rc;
    if (a->have_img)
        store_annotate_image_deinit(&a->img);
    a->img = im;
    a->have_img = 1;
    a->pos = pos;
    a->queue_empty = 0;
    a->waiting = 0;
    annotate_vm_load(&a->vm, im.mine);
    a->last_event = base_now();
    a->active = 0;
    a->gstate = GFX_PENDING;
    a->gmsg[0] = '\0';
    prefetch(a);
    terminal_sync(a);
    app_dirty(a->app);
    return 0;
}

static int open_new(Annotate *a, int64_t id, Err *err) {
    push(&a->hist, &a->n_hist, id);
    int rc = show(a, a->n_hist - 1, err);
    if (rc)
        a->n_hist--;
    return rc;
}

/* Next image: forward in hist, else the queue. */
static void go_next(Annotate *a) {
    Err err = {0};
    if (a->pos >= 0 && a->pos + 1 < a->n_hist) {
        if (show(a, a->pos + 1, &err))
            app_status_error(a->app, "%s", err.msg);
        return;
    }
    int64_t id;
    int n = upcoming(a, &id, 1);
    if (unseen_in_snap(a) - n < QUEUE_LOW && !ui_loader_busy(a->loader) &&
        !(a->snap && a->snap->complete && a->snap_at >= a->asked_at))
        ask_queue(a); /* running low: read more while the annotator works */
    if (n == 1) {
        if (open_new(a, id, &err))
            app_status_error(a->app, "%s", err.msg);
        return;
    }
    /* Nothing usable in hand: the queue is empty only if the last read was complete and
     * nothing is being read; otherwise wait for the read (tick calls us again). */
    if (a->have_img)
        store_annotate_image_deinit(&a->img);
    a->have_img = 0;
    a->pos = a->n_hist; /* past the end: b goes back to the last one */
    int final = a->snap && a->snap->complete && !ui_loader_busy(a->loader) &&
                a->snap_at >= a->asked_at;
    a->queue_empty = final;
    a->waiting = !final;
    if (a->waiting && !ui_loader_busy(a->loader))
        ask_queue(a);
    terminal_sync(a);
    app_dirty(a->app);
}

/* Time on an image counts between keys, but a pause longer than IDLE_CAP (the annotator
 * went away) counts as IDLE_CAP: the recorded time is time spent rating, not time the image
 * happened to be open. */
static void note_activity(Annotate *a) {
    double now = base_now(), gap = now - a->last_event;
    a->active += gap < IDLE_CAP ? gap : IDLE_CAP;
    a->last_event = now;
}

static void commit(Annotate *a) {
    Err err = {0};
    double t0 = base_now();
    note_activity(a);
    double secs = a->img.my_seconds + a->active;
    int was_new = isnan(a->vm.stored[0]) && isnan(a->vm.stored[1]) && isnan(a->vm.stored[2]) &&
                  isnan(a->vm.stored[3]) && isnan(a->vm.stored[4]);
    int written = 0;
    if (store_annotate_commit(a->st, a->img.id, a->annotator_id, a->vm.values, secs, &written,
                              &err)) {
        app_status_error(a->app, "not saved: %s", err.msg);
        return;
    }
    double t_saved = base_now();
    int64_t id = a->img.id;
    push(&a->done, &a->n_done, id);
    if (was_new)
        a->session_new++;
    app_status(a->app, "saved image %lld (%d value%s written)", (long long)id, written,
               written == 1 ? "" : "s");
    go_next(a);
    log_debug("annotate: image %lld saved in %.1f ms, next chosen in %.1f ms", (long long)id,
              (t_saved - t0) * 1e3, (base_now() - t_saved) * 1e3);
}

static void flag_done(void *stp, App *app, const char *text) {
    Annotate *a = stp;
    if (!text) {
        app_status(app, "flag cancelled");
        return;
    }
    Err err = {0};
    if (!a->have_img)
        return;
    if (store_annotate_flag(a->st, a->img.id, a->annotator_id, text, &err)) {
        app_status_error(app, "flag not saved: %s", err.msg);
        return;
    }
    a->img.n_my_flags++;
    app_status(app, "flagged image %lld; rate it, or s to skip it", (long long)a->img.id);
}

static void goto_done(void *stp, App *app, const char *text) {
    Annotate *a = stp;
    if (!text || !*text)
        return;
    char *end;
    long long id = strtoll(text, &end, 10);
    while (*end == ' ')
        end++;
    if (end == text || *end || id <= 0) {
        app_status_error(app, "'%s' is not an image id (a whole number, see the panel)", text);
        return;
    }
    Err err = {0};
    if (open_new(a, id, &err))
        app_status_error(app, "%s", err.msg);
}

static void undo(Annotate *a) {
    if (a->n_done == 0) {
        app_status(a->app, "nothing to undo in this session");
        return;
    }
    int64_t id = a->done[--a->n_done];
    Err err = {0};
    for (int i = a->n_hist - 1; i >= 0; i--) {
        if (a->hist[i] == id) {
            if (show(a, i, &err))
                app_status_error(a->app, "%s", err.msg);
            else
                app_status(a->app, "reopened image %lld: change it and press Enter (the old "
                           "values stay in the history)", (long long)id);
            return;
        }
    }
    if (open_new(a, id, &err))
        app_status_error(a->app, "%s", err.msg);
}

/* ---- ScreenClass ---------------------------------------------------------------------------- */

static void *annotate_init(App *app, Err *err) {
    Annotate *a = xcalloc(1, sizeof *a);
    a->app = app;
    a->st = app_store(app);
    a->pos = -1;
    a->on_term_key = -1;
    a->session_start = base_now();
    const AppConfig *cfg = app_config(app);
    if (store_aspects_list(a->st, &a->asp, &a->n_asp, err) ||
        store_annotator_ensure(a->st, app_annotator(app), &a->annotator_id, err))
        goto out_free;
    if (a->n_asp < ANNOTATE_ASPECTS) {
        err_set(err, ERR_FORMAT, "the store has %zu aspects, expected %d", a->n_asp,
                ANNOTATE_ASPECTS);
        goto out_free;
    }
    for (size_t k = 0; k < a->n_asp; k++) /* assets/rubrics/NAME.txt over the store's line */
        theme_rubric(a->asp[k].name, &a->asp[k].rubric);
    a->q.annotator_id = a->annotator_id;
    a->q.overlap = cfg->overlap;
    a->q.prompt = cfg->prompt_filter;
    a->q.unrated_only = cfg->unrated_only;
    if (cfg->order && store_annotate_order_parse(cfg->order, &a->q.order, err))
        goto out_free;
    a->mode = app_gfx_mode(app);
    if (a->mode != GFX_NONE)
        a->cache = gfx_cache_new(a->mode, app_gfx_caps(app), CACHE_FRAMES, wake_app, app);
    a->loader = ui_loader_new(cfg->db_path, wake_app, app, queue_load, queue_req_free,
                              queue_snap_free, err);
    if (!a->loader)
        goto out_free;
    go_next(a); /* no queue read yet: asks for one and waits */
    return a;
out_free:
    gfx_cache_free(a->cache);
    store_aspects_free(a->asp, a->n_asp);
    free(a);
    return NULL;
}

static void annotate_fini(void *stp) {
    Annotate *a = stp;
    ui_loader_free(a->loader);
    queue_snap_free(a->snap);
    gfx_cache_free(a->cache);
    store_aspects_free(a->asp, a->n_asp);
    if (a->have_img)
        store_annotate_image_deinit(&a->img);
    free(a->hist);
    free(a->done);
    free(a->skipped);
    free(a);
}

static void draw_wrapped(int *y, int y_end, int x, int w, attr_t at, const char *s, int max_lines) {
    int lines = 0;
    while (*s && *y < y_end && lines < max_lines) {
        int len = (int)strlen(s);
        int cut = len;
        if (len > w) { /* break at the last space that fits (bytes ~ columns for prompts) */
            cut = w;
            while (cut > 0 && s[cut] != ' ')
                cut--;
            if (cut == 0)
                cut = w;
        }
        char line[512];
        int n = cut < (int)sizeof line - 1 ? cut : (int)sizeof line - 1;
        memcpy(line, s, (size_t)n);
        line[n] = '\0';
        if (lines == max_lines - 1 && len > cut && n >= 1) {
            line[n - 1] = '\0';
            strncat(line, "\xe2\x80\xa6", sizeof line - strlen(line) - 1);
        }
        ui_put(*y, x, w, at, line);
        (*y)++;
        lines++;
        s += cut;
        while (*s == ' ')
            s++;
    }
}

/* 10 cells for 0..10, a half cell for .5; on the selected row (SEL) in its colours. */
static void draw_bar(int y, int x, double v, int sel) {
    for (int i = 0; i < 10; i++) {
        const char *c = "\xc2\xb7"; /* middle dot */
        attr_t at = sel ? ui_attr(UI_C_SELECT) : ui_attr(UI_C_DIM);
        if (!isnan(v) && v >= i + 0.5) {
            c = v >= i + 1 ? "\xe2\x96\x88" : "\xe2\x96\x8c";
            at = sel ? ui_attr(UI_C_SELECT) | A_BOLD : ui_attr(UI_C_ACCENT);
        }
        ui_put(y, x + i, 1, at, c);
    }
}

static void draw_image_box(Annotate *a) {
    AnnotateLayout *l = &a->lay;
    attr_t sep = ui_attr(UI_C_DIM);
    for (int y = l->img_y; y < l->img_y + l->img_h + 1; y++)
        mvaddch(y, l->sep_x, ACS_VLINE | sep);
    if (!a->have_img)
        return;
    if (a->mode == GFX_NONE) {
        int y = l->img_y + l->img_h / 2 - 1;
        ui_putf(y, l->img_x + 1, l->img_w - 2, ui_attr(UI_C_DIM), "image %lld",
                (long long)a->img.id);
        ui_put(y + 1, l->img_x + 1, l->img_w - 2, ui_attr(UI_C_DIM), "(--graphics none)");
        draw_wrapped(&(int){y + 2}, l->img_y + l->img_h, l->img_x + 1, l->img_w - 2,
                     ui_attr(UI_C_DIM), a->img.path, 3);
        return;
    }
    if (a->gstate == GFX_READY)
        return; /* after_refresh draws it; the cells stay blank for ncurses */
    int y = l->img_y + l->img_h / 2 - 2;
    if (a->gstate == GFX_FAILED) {
        ui_put(y, l->img_x + 1, l->img_w - 2, ui_attr(UI_C_BAD) | A_BOLD,
               "IMAGE CANNOT BE SHOWN");
        int yy = y + 1;
        draw_wrapped(&yy, l->img_y + l->img_h, l->img_x + 1, l->img_w - 2, ui_attr(UI_C_WARN),
                     a->gmsg, 6);
        yy++;
        draw_wrapped(&yy, l->img_y + l->img_h, l->img_x + 1, l->img_w - 2, ui_attr(UI_C_DIM),
                     "You can still rate it, s skip it or f flag it.", 3);
    } else {
        ui_put(y, l->img_x + 1, l->img_w - 2, ui_attr(UI_C_DIM), "loading image\xe2\x80\xa6");
    }
}

/* The side panel when there is no image to show. */
static void draw_nothing(Annotate *a, const AnnotateProgress *prog) {
    const AnnotateLayout *l = &a->lay;
    int x = l->side_x, w = l->side_w, yend = l->side_y + l->side_h;
    if (a->waiting) {
        ui_put(l->side_y + 1, x, w, ui_attr(UI_C_DIM), "reading your queue\xe2\x80\xa6");
        return;
    }
    ui_put(l->side_y + 1, x, w, ui_attr(UI_C_GOOD) | A_BOLD, "Nothing left to rate.");
    int y = l->side_y + 3;
    char msg[384];
    int overlap = a->q.overlap > 0 ? a->q.overlap : ANNOTATE_OVERLAP_DEFAULT;
    if (prog->done == 0 && a->n_hist == 0)
        snprintf(msg, sizeof msg,
                 "There is no image for you here: the store has no images yet (add them "
                 "with 'easel import'), or every image already has %d raters or is left "
                 "out by --prompt / --unrated. g opens any image by id, q quits.",
                 overlap);
    else
        snprintf(msg, sizeof msg,
                 "Every image in your queue has your rating or already %d raters. "
                 "b goes back to the last image, g opens any image by id, q quits.",
                 overlap);
    draw_wrapped(&y, yend, x, w, A_NORMAL, msg, 6);
    ui_putf(yend - 2, x, w, ui_attr(UI_C_DIM), "done %d   session %d", prog->done,
            a->session_new);
}

/* One aspect: selection mark, name, value, bar, then its rubric (TALL: two lines). */
static void draw_aspect(Annotate *a, int k, int *y, int yend, int tall) {
    const AnnotateLayout *l = &a->lay;
    int x = l->side_x, w = l->side_w;
    int sel = k == a->vm.sel;
    char v[16];
    annotate_vm_fmt(a->vm.values[k], v, sizeof v);
    attr_t at = sel ? ui_attr(UI_C_SELECT) : A_NORMAL;
    if (sel)
        ui_fill((UiRect){*y, x, 1, w}, at);
    ui_putf(*y, x, 14, at | A_BOLD, "%s%d %s", sel ? "\xe2\x96\xb8" : " ", k + 1,
            a->asp[k].name);
    ui_put(*y, x + 14, 5, at | A_BOLD, v);
    draw_bar(*y, x + 19, a->vm.values[k], sel);
    if (!isnan(a->vm.stored[k]) && a->vm.values[k] != a->vm.stored[k])
        ui_put(*y, x + 30, w - 30, at, "(edited)");
    (*y)++;
    draw_wrapped(y, yend, x + 3, w - 3, ui_attr(UI_C_DIM),
                 a->asp[k].rubric ? a->asp[k].rubric : "", tall ? 2 : 1);
}

/* The side panel of an image: id, prompt, aspects, progress, key hints. */
static void draw_panel(Annotate *a, const AnnotateProgress *prog, int body_h) {
    const AnnotateLayout *l = &a->lay;
    int y = l->side_y, x = l->side_x, w = l->side_w, yend = l->side_y + l->side_h;
    ui_putf(y, x, w, ui_attr(UI_C_ACCENT) | A_BOLD, "image %lld%s%s", (long long)a->img.id,
            a->img.prompt_ext ? "  prompt " : "", a->img.prompt_ext ? a->img.prompt_ext : "");
    if (a->img.n_my_flags)
        ui_put(y, x + w - 9, 9, ui_attr(UI_C_WARN) | A_BOLD, " flagged ");
    y++;
    draw_wrapped(&y, yend, x, w, A_NORMAL,
                 a->img.prompt ? a->img.prompt : "(no prompt recorded for this image)",
                 body_h >= 30 ? 5 : 3);
    y++;
    for (int k = 0; k < ANNOTATE_ASPECTS && y < yend - 3; k++)
        draw_aspect(a, k, &y, yend - 3, body_h >= 34);
    y++;
    if (y < yend - 2) {
        double pace = annotate_vm_pace(a->session_new, base_now() - a->session_start,
                                       prog->last_hour);
        char pace_s[32];
        if (pace > 0)
            snprintf(pace_s, sizeof pace_s, "%.0f/h", pace);
        else
            snprintf(pace_s, sizeof pace_s, "\xe2\x80\x93/h");
        ui_putf(y, x, w, A_NORMAL, "done %d / %d   pace %s   %.0f s/image", prog->done,
                prog->done + prog->remaining, pace_s, prog->mean_seconds);
    }
    ui_put(yend - 2, x, w, ui_attr(UI_C_DIM),
           "0-9 set and move on  t = 10  \xe2\x86\x90\xe2\x86\x92 \xc2\xb1" "0.5");
    ui_put(yend - 1, x, w, ui_attr(UI_C_DIM), "Enter save  u undo  s skip  f flag  ? keys");
}

static void annotate_draw(void *stp, App *app, UiRect r) {
    Annotate *a = stp;
    const GfxCaps *caps = app_gfx_caps(app);
    AnnotateLayout l = annotate_layout(r.y, r.x, r.h, r.w, caps->cell_w, caps->cell_h);
    if (a->lay_ok && (l.img_w != a->lay.img_w || l.img_h != a->lay.img_h))
        a->on_term_key = -1;
    int first_layout = !a->lay_ok;
    a->lay = l;
    a->lay_ok = 1;
    if (first_layout)
        prefetch(a);
    /* ask the cache now, so draw() knows whether the box is the image's */
    if (a->have_img && a->cache) {
        const GfxFrame *f = NULL;
        a->gstate = gfx_cache_get(a->cache, a->img.id, a->img.path, l.img_w, l.img_h, &f,
                                  a->gmsg, sizeof a->gmsg);
        gfx_cache_release(a->cache, f);
    }
    draw_image_box(a);
    AnnotateProgress prog = {0};
    if (a->snap) { /* the last read, plus what this session did since it was asked for */
        int since = a->session_new - a->snap->session_new;
        prog = a->snap->prog;
        prog.done += since;
        prog.last_hour += since;
        prog.remaining = prog.remaining > since ? prog.remaining - since : 0;
    }
    if (!a->have_img)
        draw_nothing(a, &prog);
    else
        draw_panel(a, &prog, r.h);
}

static void annotate_after_refresh(void *stp, App *app, int full) {
    Annotate *a = stp;
    if (!a->cache || !a->have_img || !a->lay_ok)
        return;
    if (!full && a->on_term_key == a->img.id && a->on_term_cols == a->lay.img_w &&
        a->on_term_rows == a->lay.img_h)
        return;
    const GfxFrame *f = NULL;
    GfxState s = gfx_cache_get(a->cache, a->img.id, a->img.path, a->lay.img_w, a->lay.img_h, &f,
                               a->gmsg, sizeof a->gmsg);
    if (s != GFX_READY) {
        if (s != a->gstate) {
            a->gstate = s;
            app_dirty(app);
        }
        return;
    }
    if (a->gstate != GFX_READY) { /* became ready between draw and now: draw blanks first */
        a->gstate = GFX_READY;
        gfx_cache_release(a->cache, f);
        app_dirty(app);
        return;
    }
    char head[48];
    int n = snprintf(head, sizeof head, "\0337\033[%d;%dH", a->lay.img_y + 1, a->lay.img_x + 1);
    app_term_write(app, head, (size_t)n);
    app_term_write(app, f->data, f->len);
    app_term_write(app, "\0338", 2);
    gfx_cache_release(a->cache, f);
    a->on_term_key = a->img.id;
    a->on_term_cols = a->lay.img_w;
    a->on_term_rows = a->lay.img_h;
}

static int map_key(int ch) {
    switch (ch) {
    case KEY_UP: return AVM_KEY_UP;
    case KEY_DOWN: return AVM_KEY_DOWN;
    case KEY_LEFT: return AVM_KEY_LEFT;
    case KEY_RIGHT: return AVM_KEY_RIGHT;
    case '\n':
    case '\r':
    case KEY_ENTER: return AVM_KEY_ENTER;
    case KEY_BACKSPACE:
    case KEY_DC:
    case 127:
    case 8: return AVM_KEY_DELETE;
    default: return ch;
    }
}

static int annotate_key(void *stp, App *app, int ch) {
    Annotate *a = stp;
    if (a->have_img)
        note_activity(a);
    int key = map_key(ch);
    if (!a->have_img) {
        if (key == 'b' && a->n_hist > 0) {
            Err err = {0};
            if (show(a, a->n_hist - 1, &err))
                app_status_error(app, "%s", err.msg);
                    return SCREEN_KEY_HANDLED;
        }
        if (key == 'g') {
            app_prompt(app, "Go to image id:", goto_done, a);
            return SCREEN_KEY_HANDLED;
        }
        if (key == 'n' || key == 's') {
            go_next(a);
            return SCREEN_KEY_HANDLED;
        }
        return SCREEN_KEY_IGNORED;
    }
    AnnotateAction act = annotate_vm_key(&a->vm, key);
    switch (act) {
    case AVM_IGNORED:
        return SCREEN_KEY_IGNORED;
    case AVM_CHANGED:
        break;
    case AVM_COMMIT:
        commit(a);
        break;
    case AVM_EMPTY:
        app_status(app, "nothing to save: set the aspects first (0-9, t = 10), or s to skip");
        break;
    case AVM_PARTIAL:
        app_status(app, "%d of %d aspects set: Enter again saves only those, or set the rest",
                   annotate_vm_n_set(&a->vm), ANNOTATE_ASPECTS);
        break;
    case AVM_UNSAVED:
        app_status(app, "unsaved changes: Enter saves them, or press that key again to drop them");
        break;
    case AVM_UNDO:
        undo(a);
        break;
    case AVM_BACK:
        if (a->pos > 0) {
            Err err = {0};
            if (show(a, a->pos - 1, &err))
                app_status_error(app, "%s", err.msg);
        } else {
            app_status(app, "this is the first image of the session");
        }
        break;
    case AVM_NEXT:
        go_next(a);
        break;
    case AVM_SKIP:
        push(&a->skipped, &a->n_skipped, a->img.id);
        app_status(app, "skipped image %lld (it stays in the queue for later sessions)",
                   (long long)a->img.id);
        go_next(a);
        break;
    case AVM_FLAG:
        app_prompt(app, "Flag: what is wrong with this image? (Enter saves, Esc cancels)",
                   flag_done, a);
        break;
    case AVM_GOTO:
        app_prompt(app, "Go to image id:", goto_done, a);
        break;
    }
    return SCREEN_KEY_HANDLED;
}

static void annotate_tick(void *stp, App *app, double now) {
    Annotate *a = stp;
    int failed = 0;
    char msg[ERR_MSG_LEN];
    QueueSnap *snap = ui_loader_take(a->loader, &failed, msg, sizeof msg);
    if (snap) {
        queue_snap_free(a->snap);
        a->snap = snap;
        a->snap_at = snap->asked_at;
        if (a->waiting || a->queue_empty)
            go_next(a);
        prefetch(a);
        app_dirty(app);
    } else if (failed) {
        a->waiting = 0;
        app_status_error(app, "cannot read the queue: %s", msg);
    }
    /* progress, other annotators' work, new imports */
    if (now - a->asked_at >= QUEUE_REFRESH && !ui_loader_busy(a->loader))
        ask_queue(a);
    if (a->have_img && a->cache && a->lay_ok && a->gstate == GFX_PENDING) {
        const GfxFrame *f = NULL;
        GfxState s = gfx_cache_get(a->cache, a->img.id, a->img.path, a->lay.img_w, a->lay.img_h,
                                   &f, a->gmsg, sizeof a->gmsg);
        gfx_cache_release(a->cache, f);
        if (s != GFX_PENDING)
            app_dirty(app);
    }
}

static int annotate_open(void *stp, App *app, int64_t id, Err *err) {
    Annotate *a = stp;
    int rc = open_new(a, id, err);
    if (!rc)
        app_dirty(app);
    return rc;
}

static void annotate_enter(void *stp, App *app) {
    Annotate *a = stp;
    a->on_term_key = -1;
    if (!ui_loader_busy(a->loader))
        ask_queue(a);
    app_dirty(app);
}

static const ScreenKey annotate_keys[] = {
    {"0 .. 9", "set the selected aspect to that value and select the next aspect"},
    {"t", "set the selected aspect to 10"},
    {"Up / Down", "select the previous / next aspect"},
    {"Left / Right", "lower / raise the selected aspect by 0.5"},
    {"Backspace, x", "clear the selected aspect"},
    {"Enter", "save all aspects of this image and show the next one"},
    {"u", "undo: reopen the last image you saved (edit it, Enter saves again)"},
    {"b / n", "back to the previous image of this session / forward again"},
    {"s", "skip this image for this session"},
    {"f", "flag the image (broken, offensive, wrong prompt) with a comment"},
    {"g", "go to an image by its id"},
    {NULL, NULL},
};

const ScreenClass screen_annotate = {
    .name = "Annotate",
    .fkey = 2,
    .keys = annotate_keys,
    .init = annotate_init,
    .fini = annotate_fini,
    .enter = annotate_enter,
    .draw = annotate_draw,
    .after_refresh = annotate_after_refresh,
    .key = annotate_key,
    .tick = annotate_tick,
    .open = annotate_open,
};
