/* genrun — see genrun.h. */
#include "genrun.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "base.h"
#include "fmt_csv.h"
#include "image.h"
#include "png_write.h"
#include "sha256.h"
#include "store_catalog.h"
#include "store_jobs.h"
#include "trust.h"

enum { ST_PENDING, ST_HAVE, ST_FAILED };

/* What a worker tells the coordinator about one item. */
enum { EV_KEPT, EV_MADE, EV_FAILED, EV_CANCELLED, EV_LOST, EV_LOG };

typedef struct Event {
    int kind;
    int worker;
    long item;        /* shard item, -1 none */
    int corrupt;      /* EV_MADE: it was there but did not decode */
    int requeued;     /* EV_LOST: its item went back to the queue */
    int code;         /* EV_FAILED, EV_LOST: the error */
    char *msg;        /* EV_FAILED, EV_LOST: the message; EV_LOG: the line */
    struct Event *next;
} Event;

typedef struct Run Run;

typedef struct Worker {
    Run *r;
    int id;
    pthread_t thread;
    int started;
    long item;        /* the item in hand, -1 none (under r->mu) */
    double frac;      /* its steps done, 0..1 (under r->mu) */
} Worker;

struct Run {
    const GenRunOpts *o;
    size_t *idx;       /* this shard's items: indices into o->items */
    int *state;        /* the coordinator's */
    char **error;      /* per shard item, when failed (the coordinator's) */
    char **gpu;        /* per shard item, its gpu_id (the coordinator's) */
    size_t n;
    char *meta_path, *fail_path;
    /* the queue, under mu */
    pthread_mutex_t mu;
    pthread_cond_t work;     /* workers wait here for an item (or the end) */
    pthread_cond_t news;     /* the coordinator waits here for events */
    size_t next;             /* the next item never handed out */
    long *back;              /* items given back by a lost worker, taken first */
    size_t n_back;
    int *lost_on;            /* per item: workers that were lost holding it */
    int alive;               /* workers not ended */
    int n_unopened;          /* workers whose source failed to open (the coordinator's) */
    int busy;                /* workers holding an item */
    int stepped;             /* a worker's steps moved since the coordinator looked */
    Event *head, *tail;
    atomic_int stop;         /* cancel or a coordinator error: workers stop within a step */
    Worker *w;
    int n_workers;
    char *out_real;          /* o->confine: out_dir resolved; images must stay under it */
};

int gen_prompt_id_ok(const char *s) {
    if (!s || !*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strlen(s) > 200)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return 0;
    return 1;
}

int gen_parse_shard(const char *s, int *k, int *n, Err *err) {
    char *end = NULL;
    errno = 0;
    long a = s ? strtol(s, &end, 10) : 0;
    long b = 0;
    int ok = s && end != s && *end == '/' && errno == 0;
    if (ok) {
        const char *q = end + 1;
        b = strtol(q, &end, 10);
        ok = end != q && *end == '\0' && errno == 0 && a >= 1 && b >= 1 && a <= b &&
             b <= 100000;
    }
    if (!ok)
        return err_set(err, ERR_USAGE, "--shard %s: expected K/N with 1 <= K <= N (e.g. 1/4: "
                       "the first of 4 slices)", s ? s : "(none)");
    *k = (int)a;
    *n = (int)b;
    return 0;
}

/* The shallowest folder of PATH (PATH itself included) that does not exist, or NULL when
 * PATH exists (malloc'd). */
static char *first_missing(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0)
        return NULL;
    char *buf = xstrdup(path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int there = stat(buf, &sb) == 0;
        *p = '/';
        if (!there) {
            *p = '\0';
            return buf;
        }
    }
    return buf;
}

/* Remove the empty folders PATH and its parents up to FRESH (first_missing's), which a run
 * made; one that is not empty stays. */
static void remove_fresh(const char *path, const char *fresh) {
    char *buf = xstrdup(path);
    size_t n = strlen(fresh);
    for (size_t k = strlen(buf); k > 1 && buf[k - 1] == '/'; k--)
        buf[k - 1] = '\0';
    while (strlen(buf) >= n && rmdir(buf) == 0) {
        char *slash = strrchr(buf, '/');
        if (!slash || slash == buf)
            break;
        *slash = '\0';
    }
    free(buf);
}

static int mkdir_p(const char *path, Err *err) {
    char *buf = xstrdup(path);
    int rc = 0;
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                rc = err_set(err, ERR_IO, "%s: cannot create folder %s: %s", path, buf,
                             strerror(errno));
                break;
            }
            if (c == '\0')
                break;
            *p = c;
        }
    }
    struct stat sb; /* qa15: an existing file of that name is no folder to write in */
    if (!rc && (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        rc = err_set(err, ERR_IO, "%s: is a file, not a folder: move it away or give another "
                     "--out", path);
    free(buf);
    return rc;
}

static char *item_rel(const GenItem *it) {
    return xasprintf("%s/%llu.png", it->prompt_id, (unsigned long long)it->seed);
}

static char *item_abs(const Run *r, const GenItem *it) {
    return xasprintf("%s/%s/%llu.png", r->o->out_dir, it->prompt_id,
                     (unsigned long long)it->seed);
}

/* The metadata CSV of the items that have their image, and the failures CSV. */
static int write_csvs(Run *r, Err *err) {
    const GenRunOpts *o = r->o;
    AtomicFile *af = NULL;
    int rc = atomic_file_open(r->meta_path, &af, err);
    if (rc)
        return rc;
    FILE *f = atomic_file_stream(af);
    static const char *const head1[] = {"prompt_id", "seed", "path", "prompt", "width",
                                        "height", "num_inference_steps", "guidance_scale",
                                        "gpu_id"};
    int with_gpu = o->gpu_id || o->worker_ids;
    fmt_csv_write_row(f, head1, with_gpu ? 9 : 8);
    for (size_t i = 0; i < r->n; i++) {
        if (r->state[i] != ST_HAVE)
            continue;
        const GenItem *it = &o->items[r->idx[i]];
        char seed[32], w[16], h[16], st[16], g[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)it->seed);
        snprintf(w, sizeof w, "%d", o->width);
        snprintf(h, sizeof h, "%d", o->height);
        snprintf(st, sizeof st, "%d", o->steps);
        snprintf(g, sizeof g, "%g", o->guidance);
        char *rel = item_rel(it);
        const char *row[] = {it->prompt_id, seed, rel, it->prompt, w, h, st, g,
                             r->gpu[i] ? r->gpu[i] : ""};
        fmt_csv_write_row(f, row, with_gpu ? 9 : 8);
        free(rel);
    }
    if ((rc = atomic_file_commit(af, err)))
        return rc;
    size_t n_failed = 0;
    for (size_t i = 0; i < r->n; i++)
        n_failed += r->state[i] == ST_FAILED;
    if (!n_failed) {
        unlink(r->fail_path); /* an earlier run's failures, all done now */
        return 0;
    }
    if ((rc = atomic_file_open(r->fail_path, &af, err)))
        return rc;
    f = atomic_file_stream(af);
    static const char *const head2[] = {"prompt_id", "seed", "prompt", "error"};
    fmt_csv_write_row(f, head2, 4);
    for (size_t i = 0; i < r->n; i++) {
        if (r->state[i] != ST_FAILED)
            continue;
        const GenItem *it = &o->items[r->idx[i]];
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)it->seed);
        const char *row[] = {it->prompt_id, seed, it->prompt, r->error[i]};
        fmt_csv_write_row(f, row, 4);
    }
    return atomic_file_commit(af, err);
}

/* The store's row of the image at PATH: added, or completed with what this run knows. */
static int store_row(Run *r, const GenItem *it, const char *path, int *added, Err *err) {
    const GenRunOpts *o = r->o;
    Store *st = o->store;
    char hex[SHA256_HEX_LEN + 1];
    int rc = sha256_file_hex(path, hex, err);
    if (rc)
        return rc;
    if ((rc = store_begin(st, err)))
        return rc;
    int64_t pid = 0;
    rc = store_prompt_add(st, it->prompt_id, it->prompt, &pid, NULL, err);
    char *stored = store_path_to_stored(st, path);
    StoreImage img = {.prompt_id = pid, .path = stored, .has_seed = 1,
                      .seed = (int64_t)it->seed, .generator = (char *)o->settings,
                      .width = o->width, .height = o->height, .sha256 = hex};
    StoreImage old = {0};
    int64_t id = 0;
    if (!rc) {
        rc = store_image_by_path(st, stored, &old, err);
        if (rc == ERR_NOTFOUND) {
            rc = store_image_add(st, &img, &id, err);
            *added = rc == 0;
        } else if (!rc) {
            id = old.id;
            rc = store_image_fill(st, old.id, &img, NULL, err);
        }
    }
    if (!rc && o->job_id)
        rc = store_job_image_note(st, o->job_id, id, err);
    store_image_deinit(&old);
    free(stored);
    if (rc) {
        store_rollback(st);
        return rc;
    }
    return store_commit(st, err);
}

/* An image already at PATH that decodes at the run's size. */
static int image_ok(const Run *r, const char *path, int *corrupt) {
    *corrupt = 0;
    if (access(path, F_OK) != 0)
        return 0;
    Image im = {0};
    Err e = {0};
    int ok = image_load(path, 3, &im, &e) == 0 && im.w == r->o->width && im.h == r->o->height;
    image_deinit(&im);
    *corrupt = !ok;
    return ok;
}

static void logf_(const Progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const Progress *p, const char *fmt, ...) {
    if (!p || !p->log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    p->log(p->user, line);
}

/* ---- workers ------------------------------------------------------------------------------ */

static void post(Run *r, Event *ev) { /* under mu */
    ev->next = NULL;
    if (r->tail)
        r->tail->next = ev;
    else
        r->head = ev;
    r->tail = ev;
    pthread_cond_signal(&r->news);
}

static Event *event_new(int kind, const Worker *w, long item) {
    Event *ev = xcalloc(1, sizeof *ev);
    ev->kind = kind;
    ev->worker = w->id;
    ev->item = item;
    return ev;
}

static void wk_progress(void *u, double done, double total, const char *unit) {
    (void)unit;
    Worker *w = u;
    if (!(total > 0))
        return;
    double f = done / total;
    f = f < 0 ? 0 : f > 1 ? 1 : f;
    pthread_mutex_lock(&w->r->mu);
    w->frac = f;
    w->r->stepped = 1;
    pthread_cond_signal(&w->r->news);
    pthread_mutex_unlock(&w->r->mu);
}

static int wk_cancelled(void *u) {
    Worker *w = u;
    return atomic_load(&w->r->stop) || progress_cancelled(w->r->o->progress);
}

static void wk_log(void *u, const char *line) {
    Worker *w = u;
    Event *ev = event_new(EV_LOG, w, -1);
    ev->msg = xstrdup(line);
    pthread_mutex_lock(&w->r->mu);
    post(w->r, ev);
    pthread_mutex_unlock(&w->r->mu);
}

/* The next item for a worker (-1: none left, or stopping). Waits while others hold items
 * that may come back. Under mu. */
static long take(Run *r) {
    for (;;) {
        if (atomic_load(&r->stop))
            return -1;
        if (r->n_back)
            return r->back[--r->n_back];
        if (r->next < r->n)
            return (long)r->next++;
        if (!r->busy)
            return -1;
        pthread_cond_wait(&r->work, &r->mu);
    }
}

/* qa15: a job's image path that leads out of its --out folder through a symlink (the
 * prompt's folder or the image itself, made by whoever can write the workspace): the error
 * (malloc'd), else NULL. The job's --out passed the trust rules; a worker must not read or
 * write elsewhere through it (doc/annotators.md). */
static char *escapes_out(const Run *r, const char *path) {
    char *real = trust_resolve_path(path);
    size_t n = strlen(r->out_real);
    int inside = real && strncmp(real, r->out_real, n) == 0 &&
                 (real[n] == '/' || (n == 1 && r->out_real[0] == '/'));
    char *msg = inside ? NULL
                       : xasprintf("%s leads out of the output folder %s (to %s, through a "
                                   "symbolic link): a job reads and writes only inside its "
                                   "--out; remove the link or give another --out",
                                   path, r->out_real, real ? real : "a missing target");
    free(real);
    return msg;
}

/* One item: kept when its image is there and decodes, else made and written. */
static Event *do_item(Worker *w, const Progress *steps, void *gen_user, long i) {
    Run *r = w->r;
    const GenRunOpts *o = r->o;
    const GenItem *it = &o->items[r->idx[i]];
    char *path = item_abs(r, it);
    int corrupt = 0;
    Event *ev;
    char *outside = r->out_real ? escapes_out(r, path) : NULL;
    if (outside) {
        ev = event_new(EV_FAILED, w, i);
        ev->code = ERR_DENIED;
        ev->msg = outside;
    } else if (image_ok(r, path, &corrupt)) {
        ev = event_new(EV_KEPT, w, i);
    } else {
        if (corrupt) {
            char line[1024];
            snprintf(line, sizeof line, "%s does not decode at %dx%d: generating it again",
                     path, o->width, o->height);
            wk_log(w, line);
        }
        char *dir = xasprintf("%s/%s", o->out_dir, it->prompt_id);
        Err e = {0};
        uint8_t *rgb = NULL;
        int grc = mkdir_p(dir, &e);
        if (!grc)
            grc = o->gen(gen_user, it, steps, &rgb, o->width, o->height, &e);
        if (!grc)
            grc = png_write_rgb(path, rgb, o->width, o->height, &e);
        free(rgb);
        free(dir);
        if (grc == ERR_CANCELLED || (grc && wk_cancelled(w))) {
            ev = event_new(EV_CANCELLED, w, i);
        } else if (grc) {
            ev = event_new(grc == ERR_GPU ? EV_LOST : EV_FAILED, w, i);
            ev->code = grc;
            ev->msg = xstrdup(e.msg[0] ? e.msg : err_name(grc));
        } else {
            ev = event_new(EV_MADE, w, i);
        }
        ev->corrupt = corrupt;
    }
    free(path);
    return ev;
}

static void *worker_main(void *u) {
    Worker *w = u;
    Run *r = w->r;
    const GenRunOpts *o = r->o;
    void *gen_user = o->gen_user;
    Err e = {0};
    Progress steps = {wk_progress, wk_cancelled, wk_log, w};
    int orc = o->open ? o->open(o->open_user, w->id, &steps, &gen_user, &e) : 0;
    int opened = o->open && !orc;
    pthread_mutex_lock(&r->mu);
    if (orc) {
        Event *ev = event_new(EV_LOST, w, -1);
        ev->code = orc;
        ev->msg = xstrdup(e.msg[0] ? e.msg : err_name(orc));
        post(r, ev);
    }
    long i;
    while (!orc && (i = take(r)) >= 0) {
        w->item = i;
        w->frac = 0;
        r->busy++;
        pthread_mutex_unlock(&r->mu);
        Event *ev = do_item(w, &steps, gen_user, i);
        pthread_mutex_lock(&r->mu);
        r->busy--;
        w->item = -1;
        w->frac = 0;
        if (ev->kind == EV_LOST) { /* its device failed: the item goes to the others */
            ev->requeued = ++r->lost_on[i] < 2;
            if (ev->requeued)
                r->back[r->n_back++] = i;
            orc = ev->code;
        } else if (ev->kind == EV_CANCELLED) {
            atomic_store(&r->stop, 1);
        }
        post(r, ev);
        pthread_cond_broadcast(&r->work); /* an item came back, or none is held any more */
    }
    pthread_mutex_unlock(&r->mu);
    if (opened && o->close)
        o->close(o->open_user, w->id, gen_user);
    pthread_mutex_lock(&r->mu);
    r->alive--;
    pthread_cond_signal(&r->news);
    pthread_cond_broadcast(&r->work);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- the coordinator -------------------------------------------------------------------- */

typedef struct Keyed {
    const GenItem *it;
    size_t pos; /* shard position */
} Keyed;

static int key_cmp(const GenItem *a, const char *pid, uint64_t seed) {
    int c = strcmp(a->prompt_id, pid);
    return c ? c : a->seed < seed ? -1 : a->seed > seed;
}

static int keyed_cmp(const void *a, const void *b) {
    const GenItem *y = ((const Keyed *)b)->it;
    return key_cmp(((const Keyed *)a)->it, y->prompt_id, y->seed);
}

/* The gpu_id the folder's CSV already gives each item (a resumed run keeps them). A CSV that
 * is not a regular file of its own is not read: a link may lead out of the folder, and its
 * text would go into this run's CSV (in another user's job, out of the workspace). */
static void load_prev_gpus(Run *r) {
    struct stat sb;
    if (!r->n || lstat(r->meta_path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return;
    CsvTable t = {0};
    Err e = {0};
    if (fmt_csv_read(r->meta_path, &t, &e) != 0)
        return;
    int ci = t.n_rows ? fmt_csv_column(&t.rows[0], "prompt_id") : -1;
    int cs = t.n_rows ? fmt_csv_column(&t.rows[0], "seed") : -1;
    int cg = t.n_rows ? fmt_csv_column(&t.rows[0], "gpu_id") : -1;
    if (ci >= 0 && cs >= 0 && cg >= 0) {
        Keyed *k = xmalloc(r->n * sizeof *k);
        for (size_t i = 0; i < r->n; i++)
            k[i] = (Keyed){&r->o->items[r->idx[i]], i};
        qsort(k, r->n, sizeof *k, keyed_cmp);
        int width = ci > cs ? ci : cs;
        width = width > cg ? width : cg;
        for (size_t row = 1; row < t.n_rows; row++) {
            const CsvRow *cr = &t.rows[row];
            char *end = NULL;
            if (cr->n <= (size_t)width || !cr->field[cg][0])
                continue;
            errno = 0;
            unsigned long long seed = strtoull(cr->field[cs], &end, 10);
            if (errno || end == cr->field[cs] || *end)
                continue;
            size_t lo = 0, hi = r->n;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (key_cmp(k[mid].it, cr->field[ci], seed) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < r->n && key_cmp(k[lo].it, cr->field[ci], seed) == 0 && !r->gpu[k[lo].pos])
                r->gpu[k[lo].pos] = xstrdup(cr->field[cg]);
        }
        free(k);
    }
    fmt_csv_deinit(&t);
}

/* An event's item into the run's state, its row and the CSVs. Returns 0 or the error that
 * stops the run (the store, the CSV). */
static int handle(Run *r, Event *ev, GenRunReport *rep, size_t *done, Err *err) {
    const GenRunOpts *o = r->o;
    const Progress *pr = o->progress;
    long i = ev->item;
    const GenItem *it = i >= 0 ? &o->items[r->idx[i]] : NULL;
    const char *label = o->worker_ids ? o->worker_ids[ev->worker] : o->gpu_id;
    switch (ev->kind) {
    case EV_LOG:
        logf_(pr, "%s", ev->msg);
        return 0;
    case EV_CANCELLED:
        return 0;
    case EV_LOST:
        rep->workers_lost++;
        r->n_unopened += i < 0;
        if (r->n_workers > 1) /* one worker: the run's error says it */
                logf_(pr, "worker %d%s%s%s %s: %s%s", ev->worker, label ? " (gpu " : "",
                  label ? label : "", label ? ")" : "", i < 0 ? "could not start" : "stopped",
                  ev->msg, i < 0 ? "" : ev->requeued ? "; its image goes back to the queue"
                                                     : "; its image failed on two workers: "
                                                       "skipped");
        if (i < 0 || ev->requeued)
            return 0;
        break; /* lost on two workers: recorded as failed below */
    default:
        break;
    }
    int rc = 0;
    char *path = item_abs(r, it);
    if (ev->kind == EV_KEPT) {
        r->state[i] = ST_HAVE;
        rep->kept++;
    } else if (ev->kind == EV_MADE) {
        rep->redone += (size_t)ev->corrupt;
        r->state[i] = ST_HAVE;
        rep->generated++;
        free(r->gpu[i]);
        r->gpu[i] = label ? xstrdup(label) : NULL;
    } else { /* EV_FAILED, or EV_LOST twice */
        r->state[i] = ST_FAILED;
        r->error[i] = xstrdup(ev->msg);
        rep->failed++;
        if (ev->kind == EV_FAILED)
            logf_(pr, "prompt %s seed %llu failed, skipped: %s", it->prompt_id,
                  (unsigned long long)it->seed, r->error[i]);
    }
    if (r->state[i] == ST_HAVE && o->store) {
        int added = 0;
        Err e = {0};
        int src = store_row(r, it, path, &added, &e);
        if (src == ERR_CONFLICT) { /* the store knows this prompt id with another text */
            r->state[i] = ST_FAILED;
            r->error[i] = xstrdup(e.msg);
            rep->failed++;
            logf_(pr, "prompt %s seed %llu not added to the store: %s", it->prompt_id,
                  (unsigned long long)it->seed, e.msg);
        } else if (src) {
            *err = e;
            rc = src;
        } else {
            rep->rows_added += (size_t)added;
        }
    }
    free(path);
    if (!rc) {
        (*done)++;
        Err e = {0};
        int wrc = write_csvs(r, &e);
        if (wrc) {
            *err = e;
            rc = wrc;
        }
    }
    return rc;
}

int gen_run(const GenRunOpts *o, GenRunReport *rep, Err *err) {
    memset(rep, 0, sizeof *rep);
    if (o->shard_n || o->shard_k) {
        if (o->shard_k < 1 || o->shard_n < 1 || o->shard_k > o->shard_n)
            return err_set(err, ERR_USAGE, "--shard %d/%d: expected K/N with 1 <= K <= N",
                           o->shard_k, o->shard_n);
    }
    if (o->width < 8 || o->height < 8 || o->width > 16384 || o->height > 16384)
        return err_set(err, ERR_USAGE, "size %dx%d: expected 8..16384 a side", o->width,
                       o->height);
    for (size_t i = 0; i < o->n_items; i++)
        if (!gen_prompt_id_ok(o->items[i].prompt_id))
            return err_set(err, ERR_USAGE, "prompt id '%s' cannot name a folder: use letters, "
                           "digits, '_', '-' and '.' only (it becomes {out}/{prompt_id}/)",
                           o->items[i].prompt_id);
    char *fresh = first_missing(o->out_dir); /* qa15: what this run creates */
    int rc = mkdir_p(o->out_dir, err);
    if (rc) {
        free(fresh);
        return rc;
    }
    Run r = {.o = o};
    if (o->confine && !(r.out_real = trust_resolve_path(o->out_dir)))
        return err_set(err, ERR_IO, "%s: cannot resolve the output folder", o->out_dir);
    r.idx = xcalloc(o->n_items ? o->n_items : 1, sizeof *r.idx);
    for (size_t i = 0; i < o->n_items; i++)
        if (!o->shard_n || (int)(i % (size_t)o->shard_n) == o->shard_k - 1)
            r.idx[r.n++] = i;
    size_t n1 = r.n ? r.n : 1;
    r.state = xcalloc(n1, sizeof *r.state);
    r.error = xcalloc(n1, sizeof *r.error);
    r.gpu = xcalloc(n1, sizeof *r.gpu);
    r.back = xcalloc(n1, sizeof *r.back);
    r.lost_on = xcalloc(n1, sizeof *r.lost_on);
    if (o->shard_n) {
        r.meta_path = xasprintf("%s/metadata-%d-of-%d.csv", o->out_dir, o->shard_k, o->shard_n);
        r.fail_path = xasprintf("%s/failed-%d-of-%d.csv", o->out_dir, o->shard_k, o->shard_n);
    } else {
        r.meta_path = xasprintf("%s/metadata.csv", o->out_dir);
        r.fail_path = xasprintf("%s/failed.csv", o->out_dir);
    }
    if (o->worker_ids || o->gpu_id)
        load_prev_gpus(&r);
    for (size_t i = 0; i < r.n && o->gpu_id && !o->worker_ids; i++)
        if (!r.gpu[i])
            r.gpu[i] = xstrdup(o->gpu_id);
    rep->total = r.n;
    rep->metadata = xstrdup(r.meta_path);
    const Progress *pr = o->progress;
    size_t done = 0;
    progress_report(pr, 0, (double)r.n, "images");
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.work, NULL);
    pthread_cond_init(&r.news, NULL);
    atomic_init(&r.stop, progress_cancelled(pr));
    r.n_workers = o->n_workers > 1 ? o->n_workers : 1;
    r.w = xcalloc((size_t)r.n_workers, sizeof *r.w);
    for (int k = 0; k < r.n_workers; k++)
        r.w[k] = (Worker){.r = &r, .id = k, .item = -1};
    Err first = {0}; /* the first worker's error, for a run every worker left */
    pthread_mutex_lock(&r.mu);
    for (int k = 0; k < r.n_workers && r.n && !atomic_load(&r.stop); k++) {
        if (pthread_create(&r.w[k].thread, NULL, worker_main, &r.w[k]) == 0) {
            r.w[k].started = 1;
            r.alive++;
            rep->workers++;
        } else if (!first.code) {
            err_set(&first, ERR_NOMEM, "cannot start worker %d: %s", k, strerror(errno));
        }
    }
    double shown = -1;
    for (;;) {
        Event *evs = r.head;
        r.head = r.tail = NULL;
        int stepped = r.stepped;
        r.stepped = 0;
        pthread_mutex_unlock(&r.mu);
        for (Event *ev = evs, *nx; ev; ev = nx) {
            nx = ev->next;
            if (ev->kind == EV_LOST && !first.code)
                err_set(&first, ev->code, "%s", ev->msg);
            if (!rc) {
                rc = handle(&r, ev, rep, &done, err);
                if (rc)
                    atomic_store(&r.stop, 1);
            }
            free(ev->msg);
            free(ev);
        }
        if (!atomic_load(&r.stop) && progress_cancelled(pr))
            atomic_store(&r.stop, 1);
        pthread_mutex_lock(&r.mu);
        if (atomic_load(&r.stop))
            pthread_cond_broadcast(&r.work);
        double at = (double)done;
        for (int k = 0; k < r.n_workers; k++)
            if (r.w[k].item >= 0)
                at += r.w[k].frac;
        if ((evs || stepped) && at != shown) {
            shown = at;
            pthread_mutex_unlock(&r.mu);
            progress_report(pr, at, (double)r.n, "images");
            pthread_mutex_lock(&r.mu);
            continue; /* look again before sleeping */
        }
        if (!r.alive && !r.head)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L; /* the cancel hook is looked at 10 times a second */
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!r.head && !r.stepped)
            pthread_cond_timedwait(&r.news, &r.mu, &ts);
    }
    pthread_mutex_unlock(&r.mu);
    for (int k = 0; k < r.n_workers; k++)
        if (r.w[k].started)
            pthread_join(r.w[k].thread, NULL);
    size_t left = 0;
    for (size_t i = 0; i < r.n; i++)
        left += r.state[i] == ST_PENDING;
    int all_lost = 0;
    if (!rc && left) {
        if (atomic_load(&r.stop) || !first.code) {
            rc = err_set(err, ERR_CANCELLED, "cancelled after %zu of %zu images", done, r.n);
        } else {
            all_lost = 1;
            *err = first;
            rc = first.code;
            if (r.n_unopened == rep->workers) { /* nothing could start: the error as it is */
                if (rep->workers > 1)
                    err_prefix(err, "none of the %d workers could start; the first", rep->workers);
            } else {
                err_prefix(err, "no worker left (%zu of %zu images not made; run it again to "
                           "resume)", left, r.n);
            }
        }
    }
    if (all_lost && r.n_unopened == rep->workers && fresh) {
        /* qa15: nothing could start (a model that does not load) in a folder this run made:
         * it leaves nothing behind, not even the folder */
        remove_fresh(o->out_dir, fresh);
        free(rep->metadata);
        rep->metadata = NULL;
    } else if (!rc || rc == ERR_CANCELLED || all_lost) {
        /* the CSVs exist after any run, even one with nothing */
        Err e = {0};
        int wrc = write_csvs(&r, &e);
        if (wrc) {
            *err = e;
            rc = wrc;
        }
    }
    if (rep->failed)
        rep->failures = xstrdup(r.fail_path);
    pthread_cond_destroy(&r.news);
    pthread_cond_destroy(&r.work);
    pthread_mutex_destroy(&r.mu);
    for (size_t i = 0; i < r.n; i++) {
        free(r.error[i]);
        free(r.gpu[i]);
    }
    free(r.w);
    free(r.lost_on);
    free(r.back);
    free(r.gpu);
    free(r.error);
    free(r.state);
    free(r.idx);
    free(r.meta_path);
    free(r.fail_path);
    free(r.out_real);
    free(fresh);
    return rc;
}

void gen_run_report_deinit(GenRunReport *r) {
    if (!r)
        return;
    free(r->metadata);
    free(r->failures);
    memset(r, 0, sizeof *r);
}
