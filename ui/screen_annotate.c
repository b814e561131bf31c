/* screen_annotate — rate images on the five aspects, the image inline.
 *
 * Session model: `hist` is every image this session has shown, `pos` the one on screen.
 * Enter commits the values of the shown image (one store transaction, src/store/store_annotate.h)
 * and only then moves on: forward in `hist` if the annotator had gone back, else to the next
 * image of the queue (images shown or skipped this session are left out of it). `u` reopens
 * the last committed image; b/n walk `hist`; s skips; g opens any image by id; f flags.
 *
 * Orders: `o` cycles the queue order. The computed ones (uncertain, disagree) are brought up
 * to date by src/app/queue_order.c on a second loader thread (never the UI thread: scoring every
 * image under a new checkpoint takes a while), asked at start, on `o` and every
 * QUEUE_REFRESH seconds; when it rewrote the order the queue is read again. The panel says
 * why the image on screen was served (its queue_order reason, read when it is shown).
 *
 * Graphics: the worker of gfx_cache renders frames; this screen asks for the shown image
 * (never blocking) and prefetches the next queue images at the same box size, so moving on
 * only waits for the terminal. The image box is left blank by draw() — ncurses never writes
 * there — and after_refresh writes the frame with ESC 7, CUP, frame, ESC 8. When the image on
 * the terminal must go away and no frame replaces it (failed image, still rendering), the
 * screen asks the app for a full redraw, which clears it.
 *
 * Saving while another process holds the store's write lock: the UI connection answers
 * ERR_BUSY within APP_STORE_BUSY_MS (app.h), so the save becomes pending — the status line
 * says "waiting for the store" at once, keys keep working (values can still be changed; moving
 * to another image waits), each tick tries again, Esc stops trying, and after
 * AppConfig.store_wait_s (30 s) it gives up with a message. The values stay on screen until they are saved.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "annotate_vm.h"
#include "base.h"
#include "gfx.h"
#include "identity.h"
#include "list.h"
#include "loader.h"
#include "log.h"
#include "queue_order.h"
#include "screen.h"
#include "theme.h"
#include "store_annotate.h"
#include "store_catalog.h"
#include "trust.h"

#define N_PREFETCH 3
#define ZOOM_MAX_SCALE 8
#define CACHE_FRAMES 12
#define QUEUE_BATCH 256      /* images per background queue read */
#define QUEUE_LOW 8          /* read again when fewer usable ones are left */
#define QUEUE_REFRESH 30.0   /* seconds: progress and new imports */
#define IDLE_CAP 60.0        /* a pause longer than this counts as this long */
#define SAVE_GIVE_UP 30.0    /* default of AppConfig.store_wait_s */
#define PACE_KEEP 512        /* save times kept for the pace */

/* The zoom view (z): the shown image over the whole screen, fitted or at 1:1 pixels with
 * panning. Rendered on the UI thread when the view changes (one image, on a key press); the
 * original pixels are kept while zoomed. */
typedef struct Zoom {
    int on;
    int one_to_one;          /* 1: SCALE terminal pixels (sixel, half block, char) a pixel */
    int scale;               /* 1 .. ZOOM_MAX_SCALE */
    int pan_x, pan_y;        /* top-left image pixel shown at 1:1 */
    int64_t key;             /* image of img below, -1 none */
    GfxImage img;            /* original pixels */
    GfxFrame fr;             /* the current view; data NULL: none */
    int fr_y, fr_x;          /* where it goes (screen cell) */
    UiRect rect;             /* the screen area it was rendered for */
    int view_w, view_h;      /* the view in image pixels at 1:1 (for panning) */
    int sent;                /* fr is on the terminal */
    char msg[256];           /* why there is no frame */
} Zoom;

/* A background queue read: what was asked and what came back (see ui/loader.h). */
typedef struct QueueReq {
    AnnotateQuery q;         /* q.prompt owned here */
    int64_t *skip;           /* images this session showed or skipped */
    int n_skip;
    int session_new;         /* the session's count when asked, echoed back */
    double asked_at;         /* echoed back */
} QueueReq;

typedef struct QueueSnap {
    AnnotateOrder order;     /* the order it was read in */
    int64_t *ids;
    int n;
    int complete;            /* the whole queue (fewer than QUEUE_BATCH) */
    AnnotateProgress prog;
    int session_new;
    double asked_at;
} QueueSnap;

/* A computed order brought up to date in the background (queue_order_refresh). */
typedef struct OrderReq {
    AnnotateOrder order;
    atomic_int *stop;        /* the screen's: set when it closes */
} OrderReq;

typedef struct OrderDone {
    AnnotateOrder order;
    QueueOrderResult res;
} OrderDone;

typedef struct Annotate {
    App *app;
    Store *st;
    int64_t annotator_id;
    StoreAspect *asp;        /* store_aspects_list: the first ANNOTATE_ASPECTS are rated */
    size_t n_asp;
    AnnotateQuery q;
    GfxMode mode;
    GfxCache *cache;
    Zoom zoom;               /* z: the image alone on the screen */
    int mode_noted;          /* the graphics fallback note was shown with the first image */

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
    UiList aspects;          /* the aspects as a list (ui/list.h): sel is vm.sel, wraps */
    double active;           /* seconds spent on it so far, pauses capped (see note_activity) */
    double last_event;       /* last key or appearance */
    int queue_empty;
    int waiting;             /* the next image waits for a queue read */
    int saving;              /* a save waits for the store's write lock (see the top) */
    double saving_since;
    double save_t[PACE_KEEP];/* when this session's saves happened (ring, for the pace) */
    int n_saves;             /* saves this session (save_t holds the last PACE_KEEP) */
    double save_secs;        /* seconds recorded for those saves, for s/image */
    char *flag_text;         /* a flag waiting for the lock (its comment), or NULL */
    int64_t flag_image;
    double flag_since;

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

    UiLoader *order_loader;  /* queue_order_refresh off the UI thread */
    atomic_int order_stop;
    double order_asked_at;
    char order_note[320];    /* what the last refresh of the current order said */
    char why[384];           /* why the image on screen was served */
    AnnotateOrder why_order; /* the order it was served in */
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
    snap->order = r->q.order;
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

/* ---- computed orders, refreshed in the background ------------------------------------------ */

static int order_stopped(void *user) { return atomic_load((atomic_int *)user); }

static void *order_load(Store *st, void *argp, Err *err) {
    OrderReq *r = argp;
    OrderDone *d = xcalloc(1, sizeof *d);
    d->order = r->order;
    QueueOrderOptions o = {.threads = 1, .progress = {.cancelled = order_stopped, .user = r->stop}};
    if (queue_order_refresh(st, r->order, &o, &d->res, err)) {
        free(d);
        return NULL;
    }
    return d;
}

static int order_computed(AnnotateOrder o) { return store_annotate_order_kind(o) != NULL; }

static void ask_order(Annotate *a) {
    if (!order_computed(a->q.order) || ui_loader_busy(a->order_loader))
        return;
    OrderReq *r = xcalloc(1, sizeof *r);
    r->order = a->q.order;
    r->stop = &a->order_stop;
    a->order_asked_at = base_now();
    ui_loader_request(a->order_loader, r);
}

/* The why line of the image on screen (a short indexed read), in the order it was served
 * in: after `o` it keeps saying why this one came, the next image follows the new order. */
static void update_why(Annotate *a) {
    char *reason = NULL;
    const char *kind = store_annotate_order_kind(a->why_order);
    Err err = {0};
    if (a->have_img && kind &&
        store_annotate_order_reason(a->st, kind, a->img.id, &reason, NULL, &err))
        log_warn("annotate: %s", err.msg);
    annotate_vm_why(a->why_order, reason, a->why_order == a->q.order ? a->order_note : NULL,
                    a->have_img ? a->img.n_raters : 0, a->why, (int)sizeof a->why);
    free(reason);
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
    app_clear_terminal(a->app);
}

/* Show image ID (already in hist at index POS). */
static int show(Annotate *a, int pos, Err *err) {
    AnnotateImage im;
    int rc = store_annotate_image(a->st, a->hist[pos], a->annotator_id, &im, err);
    if (rc)
        return rc;
    if (!a->have_img || a->img.id != im.id)
        app_status_clear(a->app); /* the message was about the image before */
    if (a->have_img)
        store_annotate_image_deinit(&a->img);
    a->img = im;
    a->have_img = 1;
    a->pos = pos;
    a->queue_empty = 0;
    a->waiting = 0;
    annotate_vm_load(&a->vm, im.mine);
    a->why_order = a->q.order;
    update_why(a);
    a->last_event = base_now();
    a->active = 0;
    a->gstate = GFX_PENDING;
    a->gmsg[0] = '\0';
    prefetch(a);
    terminal_sync(a);
    return 0; /* the caller's key, tick or prompt tells the app what changed */
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
}

/* Time on an image counts between keys, but a pause longer than IDLE_CAP (the annotator
 * went away) counts as IDLE_CAP: the recorded time is time spent rating, not time the image
 * happened to be open. */
static void note_activity(Annotate *a) {
    double now = base_now(), gap = now - a->last_event;
    a->active += gap < IDLE_CAP ? gap : IDLE_CAP;
    a->last_event = now;
}

/* Seconds a save waits for the lock (AppConfig.store_wait_s, default SAVE_GIVE_UP). */
static double give_up_s(Annotate *a) {
    double s = app_config(a->app)->store_wait_s;
    return s > 0 ? s : SAVE_GIVE_UP;
}

/* Save the values on screen (one try). ERR_BUSY: another process holds the write lock; the
 * save stays pending and annotate_tick tries again. */
static void commit(Annotate *a) {
    Err err = {0};
    double t0 = base_now();
    if (!a->saving)
        note_activity(a); /* the wait for the lock is not time spent rating */
    double secs = a->img.my_seconds + a->active;
    int was_new = isnan(a->vm.stored[0]) && isnan(a->vm.stored[1]) && isnan(a->vm.stored[2]) &&
                  isnan(a->vm.stored[3]) && isnan(a->vm.stored[4]);
    int written = 0;
    int rc = store_annotate_commit(a->st, a->img.id, a->annotator_id, a->vm.values, secs,
                                   &written, &err);
    if (rc == ERR_BUSY) {
        if (!a->saving) {
            a->saving = 1;
            a->saving_since = t0;
        }
        double waited = base_now() - a->saving_since;
        if (waited >= give_up_s(a)) {
            a->saving = 0;
            app_status_error(a->app, "not saved: another process held the store for %.0f s; "
                             "your values are kept: Enter tries again", waited);
            return;
        }
        app_status(a->app, "waiting for the store: another process is writing (%.0f s; your "
                   "values are kept; Esc stops trying)", waited);
        return;
    }
    a->saving = 0;
    if (rc) {
        app_status_error(a->app, "not saved: %s", err.msg);
        return;
    }
    double t_saved = base_now();
    int64_t id = a->img.id;
    push(&a->done, &a->n_done, id);
    if (was_new)
        a->session_new++;
    a->save_t[a->n_saves % PACE_KEEP] = t_saved;
    a->n_saves++;
    a->save_secs += a->active;
    go_next(a);
    app_status(a->app, "saved image %lld (%d value%s written)", (long long)id, written,
               written == 1 ? "" : "s");
    log_debug("annotate: image %lld saved in %.1f ms, next chosen in %.1f ms", (long long)id,
              (t_saved - t0) * 1e3, (base_now() - t_saved) * 1e3);
}

/* Save the pending flag (one try); busy: it stays pending and annotate_tick tries again. */
static void flag_save(Annotate *a) {
    Err err = {0};
    int rc = store_annotate_flag(a->st, a->flag_image, a->annotator_id, a->flag_text, &err);
    if (rc == ERR_BUSY && base_now() - a->flag_since < give_up_s(a)) {
        app_status(a->app, "waiting for the store to save your flag of image %lld: another "
                   "process is writing", (long long)a->flag_image);
        return;
    }
    if (rc == ERR_BUSY)
        app_status_error(a->app, "flag of image %lld not saved: another process kept the store "
                         "locked for %.0f s; your comment was: %s", (long long)a->flag_image,
                         give_up_s(a), a->flag_text);
    else if (rc)
        app_status_error(a->app, "flag not saved: %s", err.msg);
    else if (a->have_img && a->img.id == a->flag_image)
        a->img.n_my_flags++;
    if (!rc)
        app_status(a->app, "flagged image %lld; rate it, or s to skip it",
                   (long long)a->flag_image);
    free(a->flag_text);
    a->flag_text = NULL;
}

static void flag_done(void *stp, App *app, const char *text) {
    Annotate *a = stp;
    if (!text) {
        app_status(app, "flag cancelled");
        return;
    }
    if (!a->have_img)
        return;
    if (a->flag_text) {
        app_status_error(app, "an earlier flag still waits for the store; flag again once it "
                         "is saved");
        return;
    }
    a->flag_text = xstrdup(text);
    a->flag_image = a->img.id;
    a->flag_since = base_now();
    flag_save(a);
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

/* `o`: the next order. The image on screen stays; the next one comes from the new order. */
static void cycle_order(Annotate *a) {
    a->q.order = annotate_vm_next_order(a->q.order);
    if (a->q.order == ANNOTATE_ORDER_DISAGREE) {
        /* under blind rating, the raters' spread is a reviewer's (trust.h) */
        Err e = {0};
        if (trust_require_review(app_store(a->app), identity_login(), "the disagree order", &e))
            a->q.order = annotate_vm_next_order(a->q.order);
    }
    a->order_note[0] = '\0';
    queue_snap_free(a->snap); /* read in the old order */
    a->snap = NULL;
    if (!ui_loader_busy(a->loader))
        ask_queue(a);
    ask_order(a);
    if (order_computed(a->q.order))
        app_status(a->app, "order: %s (computing it in the background; the next image "
                   "follows it)", store_annotate_order_name(a->q.order));
    else
        app_status(a->app, "order: %s (from the next image on)",
                   store_annotate_order_name(a->q.order));
}

/* ---- ScreenClass ---------------------------------------------------------------------------- */

/* Quitting while a save waits for the lock would lose those values: ask. */
static int quit_ask(void *stp, App *app, char *q, size_t n) {
    Annotate *a = stp;
    (void)app;
    if (a->saving && a->have_img)
        snprintf(q, n, "image %lld is not saved yet (another process is writing): Esc stay and "
                 "keep trying, q quit without saving it", (long long)a->img.id);
    else if (a->flag_text)
        snprintf(q, n, "your flag of image %lld is not saved yet (another process is "
                 "writing): Esc stay and keep trying, q quit without it",
                 (long long)a->flag_image);
    else if (a->have_img && annotate_vm_dirty(&a->vm))
        snprintf(q, n, "image %lld has values you have not saved: Esc stay (Enter saves them), "
                 "q quit without them", (long long)a->img.id);
    else
        return 0;
    return 1;
}

static int quit_answer(void *stp, App *app, int key) {
    (void)stp;
    (void)app;
    return key == 'q' ? APP_QUIT_GO : APP_QUIT_NOT_AN_ANSWER;
}

static void *annotate_init(App *app, Err *err) {
    Annotate *a = xcalloc(1, sizeof *a);
    a->app = app;
    a->st = app_store(app);
    a->pos = -1;
    a->on_term_key = -1;
    a->zoom.key = -1;
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
    a->order_loader = ui_loader_new(cfg->db_path, wake_app, app, order_load, free, free, err);
    if (!a->order_loader)
        goto out_free;
    ask_order(a);
    go_next(a); /* no queue read yet: asks for one and waits */
    app_add_quit_guard(app, (AppQuitGuard){quit_ask, quit_answer, a});
    return a;
out_free:
    ui_loader_free(a->loader);
    gfx_cache_free(a->cache);
    store_aspects_free(a->asp, a->n_asp);
    free(a);
    return NULL;
}

static void annotate_fini(void *stp) {
    Annotate *a = stp;
    atomic_store(&a->order_stop, 1); /* a long computation stops at its next image */
    ui_loader_free(a->order_loader);
    ui_loader_free(a->loader);
    queue_snap_free(a->snap);
    gfx_cache_free(a->cache);
    gfx_frame_deinit(&a->zoom.fr);
    gfx_image_deinit(&a->zoom.img);
    store_aspects_free(a->asp, a->n_asp);
    if (a->have_img)
        store_annotate_image_deinit(&a->img);
    free(a->flag_text);
    free(a->hist);
    free(a->done);
    free(a->skipped);
    free(a);
}

/* S broken at spaces into lines of W columns, at most MAX_LINES (the last one cut with an
 * ellipsis), from *y on up to Y_END (drawn when DRAW); *y is left past the last line. */
static void wrap_text(int *y, int y_end, int x, int w, attr_t at, const char *s, int max_lines,
                      int draw) {
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
        if (draw)
            ui_put(*y, x, w, at, line);
        (*y)++;
        lines++;
        s += cut;
        while (*s == ' ')
            s++;
    }
}

static void draw_wrapped(int *y, int y_end, int x, int w, attr_t at, const char *s, int max_lines) {
    wrap_text(y, y_end, x, w, at, s, max_lines, 1);
}

/* The lines draw_wrapped would take for S at width W, at most MAX_LINES. */
static int wrapped_lines(int w, const char *s, int max_lines) {
    int y = 0;
    wrap_text(&y, max_lines, 0, w, 0, s, max_lines, 0);
    return y;
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

/* One aspect (a row of the aspects list, ROW.h lines): selection mark, name, value, bar,
 * then its rubric on the lines left. */
static void draw_aspect(void *p, int k, UiRect row, int sel) {
    Annotate *a = p;
    int x = row.x, w = row.w, yy = row.y;
    int *y = &yy;
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
    draw_wrapped(y, row.y + row.h, x + 3, w - 3, ui_attr(UI_C_DIM),
                 a->asp[k].rubric ? a->asp[k].rubric : "", row.h - 1);
}

/* The aspects list over the lines from Y to YEND; returns the line after it. An aspect takes
 * one line plus its rubric's (up to two when the body is TALL, else one). */
static int draw_aspects(Annotate *a, int y, int yend, int tall) {
    const AnnotateLayout *l = &a->lay;
    int rubric = 0;
    for (int k = 0; k < ANNOTATE_ASPECTS; k++) {
        int n = wrapped_lines(l->side_w - 3, a->asp[k].rubric ? a->asp[k].rubric : "",
                              tall ? 2 : 1);
        rubric = n > rubric ? n : rubric;
    }
    a->aspects.item_h = 1 + rubric;
    a->aspects.n = ANNOTATE_ASPECTS;
    a->aspects.sel = a->vm.sel;
    ui_list_draw(&a->aspects, (UiRect){y, l->side_x, yend - y, l->side_w}, NULL, 0, draw_aspect,
                 a);
    int shown = a->aspects.n - a->aspects.top;
    shown = shown < a->aspects.rows ? shown : a->aspects.rows;
    return y + shown * a->aspects.item_h;
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
    if (a->why[0]) {
        char line[400];
        snprintf(line, sizeof line, "why: %s", a->why);
        draw_wrapped(&y, yend, x, w, ui_attr(UI_C_DIM), line, body_h >= 30 ? 2 : 1);
    }
    y++;
    y = draw_aspects(a, y, yend - 3, body_h >= 34);
    y++;
    if (y < yend - 2) {
        int kept = a->n_saves < PACE_KEEP ? a->n_saves : PACE_KEEP;
        double pace = annotate_vm_pace(a->save_t, kept, a->session_start, base_now());
        double per_image = a->n_saves ? a->save_secs / a->n_saves : prog->mean_seconds;
        char pace_s[32];
        if (pace > 0)
            snprintf(pace_s, sizeof pace_s, "%.0f/h", pace);
        else
            snprintf(pace_s, sizeof pace_s, "\xe2\x80\x93/h");
        char per_s[32];
        if (per_image > 0)
            snprintf(per_s, sizeof per_s, per_image < 10 ? "%.1f s/image" : "%.0f s/image",
                     per_image);
        else
            snprintf(per_s, sizeof per_s, "\xe2\x80\x93 s/image");
        ui_putf(y, x, w, A_NORMAL, "done %d / %d   pace %s   %s", prog->done,
                prog->done + prog->remaining, pace_s, per_s);
    }
    ui_put(yend - 2, x, w, ui_attr(UI_C_DIM),
           "0-9 set and move on  t = 10  \xe2\x86\x90\xe2\x86\x92 \xc2\xb1" "0.5");
    ui_put(yend - 1, x, w, ui_attr(UI_C_DIM), "Enter save  u undo  s skip  f flag  ? keys");
}

/* ---- zoom ------------------------------------------------------------------------------- */

static void zoom_drop_frame(Zoom *z) {
    gfx_frame_deinit(&z->fr);
    z->sent = 0;
}

static void zoom_end(Annotate *a, App *app) {
    Zoom *z = &a->zoom;
    zoom_drop_frame(z);
    gfx_image_deinit(&z->img);
    z->key = -1;
    z->on = 0;
    a->on_term_key = -1;
    app_clear_terminal(app); /* wipe the full-screen image */
}

/* The frame geometry of a W x H picture shown as it is: the canvas is the picture (the
 * screen was cleared, so nothing needs covering), whole cells. */
static GfxGeom zoom_geom(GfxMode mode, const GfxCaps *caps, int w, int h) {
    int cw = caps->cell_w > 0 ? caps->cell_w : 10, ch = caps->cell_h > 0 ? caps->cell_h : 20;
    GfxGeom g = {.canvas_w = w, .canvas_h = h, .img_w = w, .img_h = h, .cols = w, .rows = h};
    if (mode == GFX_SIXEL) {
        g.canvas_h = (h + 5) / 6 * 6;
        g.cols = (w + cw - 1) / cw;
        g.rows = (g.canvas_h + ch - 1) / ch;
    } else if (mode == GFX_BLOCKS) {
        g.canvas_h = (h + 1) / 2 * 2;
        g.rows = g.canvas_h / 2;
    }
    return g;
}

/* Render the view for the ROWS x COLS cells at Y, X: the image fitted, or a crop of it at
 * SCALE terminal pixels per image pixel (nearest neighbour: every pixel stays a crisp
 * square). Centred horizontally. */
static void zoom_render(Annotate *a, App *app, int y, int x, int rows, int cols) {
    Zoom *z = &a->zoom;
    const GfxCaps *caps = app_gfx_caps(app);
    zoom_drop_frame(z);
    z->msg[0] = '\0';
    Err err = {0};
    if (z->key != a->img.id) {
        gfx_image_deinit(&z->img);
        z->key = -1;
        if (gfx_image_load(a->img.path, &z->img, &err)) {
            base_strlcpy(z->msg, err.msg, sizeof z->msg);
            return;
        }
        z->key = a->img.id;
    }
    /* the room in terminal pixels: sixel pixels, half-block pixels, or characters */
    int cw = caps->cell_w > 0 ? caps->cell_w : 10, ch = caps->cell_h > 0 ? caps->cell_h : 20;
    int vw = a->mode == GFX_SIXEL ? cols * cw : cols;
    int vh = a->mode == GFX_SIXEL ? rows * ch : a->mode == GFX_BLOCKS ? 2 * rows : rows;
    if (a->mode == GFX_SIXEL && caps->max_w > 0 && vw > caps->max_w)
        vw = caps->max_w;
    if (a->mode == GFX_SIXEL && caps->max_h > 0 && vh > caps->max_h)
        vh = caps->max_h;
    if (a->mode == GFX_SIXEL)
        vh -= vh % 6;
    GfxImage view = {0};
    int rc = 0;
    if (!z->one_to_one) {
        GfxGeom g0 = gfx_geom(a->mode, caps, cols, rows, z->img.w, z->img.h);
        rc = gfx_image_resize(&z->img, g0.img_w, g0.img_h, &view, &err);
    } else {
        int sc = z->scale;
        z->view_w = vw / sc < z->img.w ? vw / sc : z->img.w;
        z->view_h = vh / sc < z->img.h ? vh / sc : z->img.h;
        if (z->view_w < 1 || z->view_h < 1) {
            base_strlcpy(z->msg, "the screen is too small for this zoom (press -)",
                         sizeof z->msg);
            return;
        }
        if (z->pan_x > z->img.w - z->view_w)
            z->pan_x = z->img.w - z->view_w;
        if (z->pan_y > z->img.h - z->view_h)
            z->pan_y = z->img.h - z->view_h;
        if (z->pan_x < 0)
            z->pan_x = 0;
        if (z->pan_y < 0)
            z->pan_y = 0;
        view.w = z->view_w * sc;
        view.h = z->view_h * sc;
        view.px = malloc((size_t)view.w * view.h * 3);
        if (!view.px) {
            base_strlcpy(z->msg, "out of memory for the zoom view", sizeof z->msg);
            return;
        }
        for (int r = 0; r < view.h; r++)
            for (int c = 0; c < view.w; c++)
                memcpy(view.px + ((size_t)r * view.w + c) * 3,
                       z->img.px + ((size_t)(z->pan_y + r / sc) * z->img.w + z->pan_x + c / sc) * 3,
                       3);
    }
    if (!rc) {
        GfxGeom g = zoom_geom(a->mode, caps, view.w, view.h);
        int colors = caps->color_registers > 0 && caps->color_registers < 256
                         ? caps->color_registers
                         : 256;
        rc = gfx_frame_encode(a->mode, &g, &view, colors, caps->truecolor, &z->fr, &err);
        z->fr_x = x + (cols > g.cols ? (cols - g.cols) / 2 : 0);
    }
    if (!rc) {
        char how[16] = "fit";
        if (z->one_to_one)
            snprintf(how, sizeof how, "%d:1", z->scale);
        log_info("zoom: image %lld %s, view %dx%d px at cell %d,%d (pan %d,%d), %zu bytes",
                 (long long)a->img.id, how, view.w, view.h, z->fr_x, y, z->pan_x, z->pan_y,
                 z->fr.len);
    }
    gfx_image_deinit(&view);
    if (rc)
        base_strlcpy(z->msg, err.msg, sizeof z->msg);
    z->fr_y = y;
}

static void zoom_draw(Annotate *a, App *app, UiRect r) {
    Zoom *z = &a->zoom;
    if (z->fr.data && memcmp(&z->rect, &r, sizeof r) != 0)
        zoom_drop_frame(z); /* the window was resized: a full redraw is under way */
    if (!z->fr.data) {
        z->rect = r;
        zoom_render(a, app, r.y + 1, r.x, r.h - 1, r.w);
        if (z->key < 0 || !z->fr.data) {
            ui_putf(r.y, r.x, r.w, ui_attr(UI_C_ACCENT), "image %lld  zoom  z/Esc back",
                    (long long)a->img.id);
            ui_put(r.y + 2, r.x + 1, r.w - 2, ui_attr(UI_C_BAD), z->msg);
            return;
        }
    }
    int moving = z->one_to_one && (z->img.w > z->view_w || z->img.h > z->view_h);
    if (z->one_to_one)
        ui_putf(r.y, r.x, r.w, ui_attr(UI_C_ACCENT),
                "image %lld  %d:1  %dx%d px, showing %d,%d-%d,%d  %s+/- scale  f fit  "
                "z/Esc back", (long long)a->img.id, z->scale, z->img.w, z->img.h, z->pan_x,
                z->pan_y, z->pan_x + z->view_w, z->pan_y + z->view_h,
                moving ? "arrows pan  " : "");
    else
        ui_putf(r.y, r.x, r.w, ui_attr(UI_C_ACCENT), "image %lld  fit to screen  %dx%d px  "
                "1 one-to-one  z/Esc back", (long long)a->img.id, z->img.w, z->img.h);
}

static void annotate_draw(void *stp, App *app, UiRect r) {
    Annotate *a = stp;
    if (a->zoom.on && a->have_img) {
        zoom_draw(a, app, r);
        return;
    }
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

static int annotate_after_refresh(void *stp, App *app, int full) {
    Annotate *a = stp;
    if (a->zoom.on) {
        Zoom *z = &a->zoom;
        if (z->fr.data && (full || !z->sent)) {
            char head[48];
            int n = snprintf(head, sizeof head, "\0337\033[%d;%dH", z->fr_y + 1, z->fr_x + 1);
            app_term_write(app, head, (size_t)n);
            app_term_write(app, z->fr.data, z->fr.len);
            app_term_write(app, "\0338", 2);
            z->sent = 1;
        }
        return SCREEN_TICK_SAME;
    }
    if (!a->cache || !a->have_img || !a->lay_ok)
        return SCREEN_TICK_SAME;
    if (!full && a->on_term_key == a->img.id && a->on_term_cols == a->lay.img_w &&
        a->on_term_rows == a->lay.img_h)
        return SCREEN_TICK_SAME;
    const GfxFrame *f = NULL;
    GfxState s = gfx_cache_get(a->cache, a->img.id, a->img.path, a->lay.img_w, a->lay.img_h, &f,
                               a->gmsg, sizeof a->gmsg);
    if (s != GFX_READY) {
        if (s == a->gstate)
            return SCREEN_TICK_SAME;
        a->gstate = s; /* e.g. failed: the box says why */
        return SCREEN_TICK_CHANGED;
    }
    if (a->gstate != GFX_READY) { /* became ready between draw and now: draw blanks first */
        a->gstate = GFX_READY;
        gfx_cache_release(a->cache, f);
        return SCREEN_TICK_CHANGED;
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
    /* The note said at start-up (sixel asked for where it cannot work) is cleared with
     * stale messages when the first image comes: say it again under that image, once. */
    const GfxCaps *caps = app_gfx_caps(app);
    if (!a->mode_noted && caps->mode_note[0])
        app_status_error(app, "%s", caps->mode_note);
    a->mode_noted = 1;
    return SCREEN_TICK_SAME;
}

static int map_key(int ch) {
    switch (ch) {
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

/* Keys while zoomed: z / Esc back, 1 and f switch 1:1 and fit, + and - change the scale
 * (2:1 .. 8:1, for small images), arrows pan by a tenth of the view (PageUp/PageDown and
 * Home/End by a whole one). Every other key is swallowed, so
 * nothing is rated blind. */
static int zoom_key(Annotate *a, App *app, int ch) {
    Zoom *z = &a->zoom;
    int dx = 0, dy = 0, sx = z->view_w / 10 > 1 ? z->view_w / 10 : 1,
        sy = z->view_h / 10 > 1 ? z->view_h / 10 : 1;
    switch (ch) {
    case 'z':
    case 'Z':
    case 27:
        zoom_end(a, app);
        return SCREEN_KEY_HANDLED;
    case '1':
        z->one_to_one = 1;
        z->scale = 1;
        break;
    case '+':
    case '=':
    case '-':
        if (!z->one_to_one) { /* from the fitted view: 1:1 first */
            z->one_to_one = 1;
            z->scale = 1;
            break;
        }
        int old = z->scale;
        z->scale += ch == '-' ? -1 : 1;
        z->scale = z->scale < 1 ? 1 : z->scale > ZOOM_MAX_SCALE ? ZOOM_MAX_SCALE : z->scale;
        /* keep the centre of the view where it was */
        z->pan_x += (z->view_w - z->view_w * old / z->scale) / 2;
        z->pan_y += (z->view_h - z->view_h * old / z->scale) / 2;
        break;
    case 'f':
        z->one_to_one = 0;
        break;
    case KEY_LEFT: dx = -sx; break;
    case KEY_RIGHT: dx = sx; break;
    case KEY_UP: dy = -sy; break;
    case KEY_DOWN: dy = sy; break;
    case KEY_PPAGE: dy = -z->view_h; break;
    case KEY_NPAGE: dy = z->view_h; break;
    case KEY_HOME: dx = -z->view_w; break;
    case KEY_END: dx = z->view_w; break;
    default:
        app_status(app, "zoom: z or Esc goes back to rating");
        return SCREEN_KEY_HANDLED;
    }
    if ((dx || dy) && !z->one_to_one) {
        app_status(app, "zoom: press 1 for 1:1 pixels, then the arrows pan");
        return SCREEN_KEY_HANDLED;
    }
    z->pan_x += dx;
    z->pan_y += dy;
    zoom_drop_frame(z);  /* draw() renders the new view */
    app_clear_terminal(app); /* on a cleared screen: no edge of the old view stays */
    return SCREEN_KEY_HANDLED;
}

static int annotate_key(void *stp, App *app, int ch) {
    Annotate *a = stp;
    if (a->have_img && !a->saving)
        note_activity(a);
    int key = map_key(ch);
    if (a->saving) { /* a save waits for the lock: values may change, the image may not */
        if (ch == 27) {
            a->saving = 0;
            app_status_error(app, "stopped trying: image %lld is not saved; your values are "
                             "still here: Enter tries again", (long long)a->img.id);
            return SCREEN_KEY_HANDLED;
        }
        if (key > 0 && key < 128 && strchr("ubnsgf", key)) {
            app_status(app, "still saving image %lld (the store is locked by another "
                       "process): wait, or Esc to stop trying", (long long)a->img.id);
            return SCREEN_KEY_HANDLED;
        }
        if (key == AVM_KEY_ENTER) {
            commit(a); /* try again now, with the values as they are */
            return SCREEN_KEY_HANDLED;
        }
    }
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
        if (key == 'o') {
            cycle_order(a);
            go_next(a);
            return SCREEN_KEY_HANDLED;
        }
        return SCREEN_KEY_IGNORED;
    }
    /* the aspects list: Up/Down (round), PgUp/PgDn, Home/End, j/k */
    a->aspects.n = ANNOTATE_ASPECTS;
    a->aspects.wrap = 1;
    a->aspects.sel = a->vm.sel;
    ui_list_clamp(&a->aspects);
    int moved = ui_list_key(&a->aspects, ch);
    if (moved != UI_LIST_NOT_MINE) {
        annotate_vm_select(&a->vm, a->aspects.sel);
        return ui_list_key_result(moved);
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
    case AVM_SKIP: {
        int64_t skipped = a->img.id;
        push(&a->skipped, &a->n_skipped, skipped);
        go_next(a);
        app_status(app, "skipped image %lld (it stays in the queue for later sessions)",
                   (long long)skipped);
        break;
    }
    case AVM_FLAG:
        app_prompt(app, "Flag: what is wrong with this image? (Enter saves, Esc cancels)",
                   flag_done, a);
        break;
    case AVM_GOTO:
        app_prompt(app, "Go to image id:", goto_done, a);
        break;
    case AVM_ORDER:
        cycle_order(a);
        break;
    }
    return SCREEN_KEY_HANDLED;
}

static int annotate_tick(void *stp, App *app, double now) {
    Annotate *a = stp;
    int redraw = SCREEN_TICK_SAME;
    if (a->saving && a->have_img) {
        commit(a); /* one more try: at most APP_STORE_BUSY_MS */
        if (!a->saving) /* saved (the next image shows) or given up: the panel changed */
            redraw = SCREEN_TICK_CHANGED;
    }
    if (a->flag_text) {
        flag_save(a);
        if (!a->flag_text) /* saved (the "flagged" mark) or given up */
            redraw = SCREEN_TICK_CHANGED;
    }
    int failed = 0;
    char msg[ERR_MSG_LEN];
    QueueSnap *snap = ui_loader_take(a->loader, &failed, msg, sizeof msg);
    if (snap && snap->order != a->q.order) { /* read before `o` changed the order */
        queue_snap_free(snap);
        snap = NULL;
        if (!ui_loader_busy(a->loader))
            ask_queue(a);
    }
    if (snap) {
        queue_snap_free(a->snap);
        a->snap = snap;
        a->snap_at = snap->asked_at;
        if (a->waiting || a->queue_empty)
            go_next(a);
        prefetch(a);
        redraw = SCREEN_TICK_CHANGED;
    } else if (failed) {
        a->waiting = 0;
        app_status_error(app, "cannot read the queue: %s", msg);
    }
    /* progress, other annotators' work, new imports */
    if (now - a->asked_at >= QUEUE_REFRESH && !ui_loader_busy(a->loader))
        ask_queue(a);
    /* the computed order: a newer checkpoint, new ratings */
    failed = 0;
    OrderDone *od = ui_loader_take(a->order_loader, &failed, msg, sizeof msg);
    if (od && od->order == a->q.order) {
        int changed = strcmp(a->order_note, od->res.note) != 0;
        base_strlcpy(a->order_note, od->res.note, sizeof a->order_note);
        if (changed && (od->res.fallback || !a->have_img))
            app_status(app, "%s", od->res.note);
        if (od->res.computed) { /* read the queue again in the new order */
            queue_snap_free(a->snap);
            a->snap = NULL;
            if (!ui_loader_busy(a->loader))
                ask_queue(a);
        }
        update_why(a);
        redraw = SCREEN_TICK_CHANGED;
    } else if (!od && failed) {
        char note[sizeof a->order_note];
        snprintf(note, sizeof note, "%s: cannot compute it (%s); the last computed order or "
                 "fewest is served", store_annotate_order_name(a->q.order), msg);
        if (strcmp(a->order_note, note) != 0) { /* said once, not every QUEUE_REFRESH */
            base_strlcpy(a->order_note, note, sizeof a->order_note);
            app_status_error(app, "%s", note);
            update_why(a);
        }
    }
    free(od);
    if (order_computed(a->q.order) && now - a->order_asked_at >= QUEUE_REFRESH)
        ask_order(a);
    if (a->have_img && a->cache && a->lay_ok && a->gstate == GFX_PENDING) {
        const GfxFrame *f = NULL;
        GfxState s = gfx_cache_get(a->cache, a->img.id, a->img.path, a->lay.img_w, a->lay.img_h,
                                   &f, a->gmsg, sizeof a->gmsg);
        gfx_cache_release(a->cache, f);
        if (s != GFX_PENDING)
            redraw = SCREEN_TICK_CHANGED;
    }
    return redraw;
}

static int annotate_open(void *stp, App *app, int64_t id, Err *err) {
    Annotate *a = stp;
    (void)app;
    return open_new(a, id, err); /* app_switch redraws */
}

static void annotate_enter(void *stp, App *app) {
    Annotate *a = stp;
    if (a->zoom.on)
        zoom_end(a, app);
    a->on_term_key = -1;
    if (!ui_loader_busy(a->loader))
        ask_queue(a); /* the app redraws after enter */
}

static const ScreenKey annotate_keys[] = {
    {"0 .. 9", "set the selected aspect to that value and select the next aspect"},
    {"t", "set the selected aspect to 10"},
    {"Up/Down, j/k", "select the previous / next aspect (Home / End: the first / last)"},
    {"Left / Right", "lower / raise the selected aspect by 0.5"},
    {"Backspace, x", "clear the selected aspect"},
    {"Enter", "save all aspects of this image and show the next one"},
    {"u", "undo: reopen the last image you saved (edit it, Enter saves again)"},
    {"b / n", "back to the previous image of this session / forward again"},
    {"s", "skip this image for this session"},
    {"f", "flag the image (broken, offensive, wrong prompt) with a comment"},
    {"z", "zoom: the image over the whole screen (fit); 1 = 1:1 pixels, + / - = 2:1 .. 8:1, "
          "arrows pan, f = fit, z or Esc back"},
    {"g", "go to an image by its id"},
    {"o", "next queue order: fewest, sequential, random, uncertain (reward model least sure "
          "first), disagree (annotators' spread first); the panel's why line says why an "
          "image was served"},
    {NULL, NULL},
};

/* The screen's keys: z and, while zoomed, the zoom view's keys first; the rest rate. */
static int annotate_key_or_zoom(void *stp, App *app, int ch) {
    Annotate *a = stp;
    if (a->zoom.on)
        return zoom_key(a, app, ch);
    if ((ch == 'z' || ch == 'Z') && a->have_img) {
        if (a->mode == GFX_NONE) {
            app_status(app, "zoom needs graphics (--graphics sixel, blocks or ascii)");
            return SCREEN_KEY_HANDLED;
        }
        a->zoom.on = 1;
        a->zoom.one_to_one = 0;
        a->zoom.pan_x = a->zoom.pan_y = 0;
        zoom_drop_frame(&a->zoom);
        app_clear_terminal(app);
        return SCREEN_KEY_HANDLED;
    }
    return annotate_key(stp, app, ch);
}

const ScreenClass screen_annotate = {
    .name = "Annotate",
    .fkey = 2,
    .keys = annotate_keys,
    .init = annotate_init,
    .fini = annotate_fini,
    .enter = annotate_enter,
    .draw = annotate_draw,
    .after_refresh = annotate_after_refresh,
    .key = annotate_key_or_zoom,
    .tick = annotate_tick,
    .open = annotate_open,
};
