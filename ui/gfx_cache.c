/* gfx_cache — encoded frames per (image key, box size), rendered by one background thread.
 *
 * Entry states:   (get/prefetch) ─> PENDING ─(worker: decode, fit, encode)─> READY | FAILED
 * The worker takes the PENDING entry with the highest priority: a gfx_cache_get request gets
 * a new top priority (the image the annotator is looking at), prefetches queue behind in the
 * order they were asked for. When READY/FAILED entries exceed the capacity, the least recently
 * used one that nobody holds goes.
 *
 * Frames are reference counted: the entry holds one reference, each gfx_cache_get that
 * returns READY another, so eviction never frees a frame the UI is writing. One mutex guards
 * everything; decoding and encoding run outside it. The worker blocks every signal (the UI
 * thread handles SIGWINCH) and never calls ncurses: it reports through the wake callback.
 */
#include "gfx.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "log.h"

typedef struct Frame {
    GfxFrame f;      /* first member: a GfxFrame * is a Frame * */
    int refs;
} Frame;

typedef struct Entry {
    int64_t key;
    int cols;
    int rows;
    char *path;
    GfxState state;
    int busy;            /* the worker is rendering it */
    Frame *frame;        /* READY */
    char msg[256];       /* FAILED */
    int64_t priority;    /* higher first */
    uint64_t used;       /* LRU clock */
} Entry;

struct GfxCache {
    GfxMode mode;
    GfxCaps caps;
    int capacity;
    void (*wake)(void *);
    void *wake_data;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    int stop;
    Entry **e;
    int n;
    int cap;
    int64_t next_urgent;   /* increasing: the newest get wins */
    int64_t next_prefetch; /* decreasing below every urgent one */
    uint64_t clock;
};

static void frame_unref(Frame *f) {
    if (f && --f->refs == 0) {
        gfx_frame_deinit(&f->f);
        free(f);
    }
}

static void entry_free(Entry *en) {
    frame_unref(en->frame);
    free(en->path);
    free(en);
}

static Entry *find(GfxCache *c, int64_t key, int cols, int rows) {
    for (int i = 0; i < c->n; i++)
        if (c->e[i]->key == key && c->e[i]->cols == cols && c->e[i]->rows == rows)
            return c->e[i];
    return NULL;
}

static Entry *add(GfxCache *c, int64_t key, const char *path, int cols, int rows) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->e = xrealloc(c->e, sizeof *c->e * (size_t)c->cap);
    }
    Entry *en = xcalloc(1, sizeof *en);
    en->key = key;
    en->cols = cols;
    en->rows = rows;
    en->path = xstrdup(path);
    en->state = GFX_PENDING;
    c->e[c->n++] = en;
    return en;
}

/* Drop least recently used finished entries beyond the capacity. Lock held. */
static void evict(GfxCache *c) {
    for (;;) {
        int done = 0, victim = -1;
        for (int i = 0; i < c->n; i++) {
            Entry *en = c->e[i];
            if (en->state == GFX_PENDING || en->busy)
                continue;
            done++;
            if (victim < 0 || en->used < c->e[victim]->used)
                victim = i;
        }
        if (done <= c->capacity || victim < 0)
            return;
        entry_free(c->e[victim]);
        c->e[victim] = c->e[--c->n];
    }
}

static Entry *next_job(GfxCache *c) {
    Entry *best = NULL;
    for (int i = 0; i < c->n; i++) {
        Entry *en = c->e[i];
        if (en->state == GFX_PENDING && !en->busy && (!best || en->priority > best->priority))
            best = en;
    }
    return best;
}

static void *worker(void *arg) {
    GfxCache *c = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        Entry *en = next_job(c);
        if (!en) {
            pthread_cond_wait(&c->cond, &c->lock);
            continue;
        }
        en->busy = 1;
        char *path = xstrdup(en->path);
        int cols = en->cols, rows = en->rows;
        pthread_mutex_unlock(&c->lock);

        Err err = {0};
        GfxImage img;
        Frame *fr = xcalloc(1, sizeof *fr);
        double t0 = base_now();
        int rc = gfx_image_load(path, &img, &err);
        if (!rc) {
            rc = gfx_frame_render(c->mode, &c->caps, &img, cols, rows, &fr->f, &err);
            gfx_image_deinit(&img);
        }
        if (rc)
            log_info("gfx: %s: %s", path, err.msg);
        else
            log_info("gfx: %s: %s %dx%d cells, canvas %dx%d, image %dx%d at 0,0, %zu bytes, "
                     "%.1f ms", path, gfx_mode_name(c->mode), cols, rows, fr->f.geom.canvas_w,
                     fr->f.geom.canvas_h, fr->f.geom.img_w, fr->f.geom.img_h, fr->f.len,
                     (base_now() - t0) * 1000.0);
        free(path);

        pthread_mutex_lock(&c->lock);
        en->busy = 0;
        if (rc) {
            free(fr);
            en->state = GFX_FAILED;
            base_strlcpy(en->msg, err.msg, sizeof en->msg);
        } else {
            fr->refs = 1;
            en->frame = fr;
            en->state = GFX_READY;
        }
        en->used = ++c->clock;
        evict(c);
        pthread_mutex_unlock(&c->lock);
        if (c->wake)
            c->wake(c->wake_data);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

GfxCache *gfx_cache_new(GfxMode mode, const GfxCaps *caps, int capacity, void (*wake)(void *),
                        void *wake_data) {
    GfxCache *c = xcalloc(1, sizeof *c);
    c->mode = mode;
    c->caps = *caps;
    c->capacity = capacity > 1 ? capacity : 2;
    c->wake = wake;
    c->wake_data = wake_data;
    c->next_urgent = 1;
    c->next_prefetch = -1;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (pthread_create(&c->thread, NULL, worker, c) != 0) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        free(c);
        return NULL;
    }
    return c;
}

void gfx_cache_free(GfxCache *c) {
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    for (int i = 0; i < c->n; i++)
        entry_free(c->e[i]);
    free(c->e);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

GfxState gfx_cache_get(GfxCache *c, int64_t key, const char *path, int cols, int rows,
                       const GfxFrame **frame, char *msg, size_t msg_size) {
    *frame = NULL;
    if (msg_size)
        msg[0] = '\0';
    pthread_mutex_lock(&c->lock);
    Entry *en = find(c, key, cols, rows);
    if (!en)
        en = add(c, key, path, cols, rows);
    en->used = ++c->clock;
    GfxState st = en->state;
    if (st == GFX_READY) {
        en->frame->refs++;
        *frame = &en->frame->f;
    } else if (st == GFX_FAILED) {
        base_strlcpy(msg, en->msg, msg_size);
    } else {
        en->priority = c->next_urgent++;
        pthread_cond_signal(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
    return st;
}

void gfx_cache_release(GfxCache *c, const GfxFrame *frame) {
    if (!frame)
        return;
    pthread_mutex_lock(&c->lock);
    frame_unref((Frame *)(void *)frame);
    pthread_mutex_unlock(&c->lock);
}

void gfx_cache_prefetch(GfxCache *c, int64_t key, const char *path, int cols, int rows) {
    pthread_mutex_lock(&c->lock);
    Entry *en = find(c, key, cols, rows);
    if (!en) {
        en = add(c, key, path, cols, rows);
        en->priority = c->next_prefetch--;
        en->used = ++c->clock;
        pthread_cond_signal(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
}
