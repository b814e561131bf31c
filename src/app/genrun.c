/* genrun — see genrun.h. */
#include "genrun.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "base.h"
#include "fmt_csv.h"
#include "image.h"
#include "png_write.h"
#include "sha256.h"
#include "store_catalog.h"
#include "store_jobs.h"

enum { ST_PENDING, ST_HAVE, ST_FAILED };

typedef struct Run {
    const GenRunOpts *o;
    size_t *idx;       /* this shard's items: indices into o->items */
    int *state;
    char **error;      /* per shard item, when failed */
    size_t n;
    char *meta_path, *fail_path;
} Run;

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
    fmt_csv_write_row(f, head1, o->gpu_id ? 9 : 8);
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
                             o->gpu_id ? o->gpu_id : ""};
        fmt_csv_write_row(f, row, o->gpu_id ? 9 : 8);
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
    int rc = mkdir_p(o->out_dir, err);
    if (rc)
        return rc;
    Run r = {.o = o};
    r.idx = xcalloc(o->n_items ? o->n_items : 1, sizeof *r.idx);
    for (size_t i = 0; i < o->n_items; i++)
        if (!o->shard_n || (int)(i % (size_t)o->shard_n) == o->shard_k - 1)
            r.idx[r.n++] = i;
    r.state = xcalloc(r.n ? r.n : 1, sizeof *r.state);
    r.error = xcalloc(r.n ? r.n : 1, sizeof *r.error);
    if (o->shard_n) {
        r.meta_path = xasprintf("%s/metadata-%d-of-%d.csv", o->out_dir, o->shard_k, o->shard_n);
        r.fail_path = xasprintf("%s/failed-%d-of-%d.csv", o->out_dir, o->shard_k, o->shard_n);
    } else {
        r.meta_path = xasprintf("%s/metadata.csv", o->out_dir);
        r.fail_path = xasprintf("%s/failed.csv", o->out_dir);
    }
    rep->total = r.n;
    rep->metadata = xstrdup(r.meta_path);
    const Progress *pr = o->progress;
    size_t done = 0;
    progress_report(pr, 0, (double)r.n, "images");
    for (size_t i = 0; i < r.n && !rc; i++) {
        const GenItem *it = &o->items[r.idx[i]];
        char *path = item_abs(&r, it);
        int corrupt = 0;
        if (progress_cancelled(pr)) {
            rc = err_set(err, ERR_CANCELLED, "cancelled after %zu of %zu images", done, r.n);
        } else if (image_ok(&r, path, &corrupt)) {
            r.state[i] = ST_HAVE;
            rep->kept++;
        } else {
            if (corrupt) {
                logf_(pr, "%s does not decode at %dx%d: generating it again", path, o->width,
                      o->height);
                rep->redone++;
            }
            char *dir = xasprintf("%s/%s", o->out_dir, it->prompt_id);
            Err e = {0};
            uint8_t *rgb = NULL;
            int grc = mkdir_p(dir, &e);
            if (!grc)
                grc = o->gen(o->gen_user, it, pr, &rgb, o->width, o->height, &e);
            if (!grc)
                grc = png_write_rgb(path, rgb, o->width, o->height, &e);
            free(rgb);
            free(dir);
            if (grc == ERR_CANCELLED || (grc && progress_cancelled(pr))) {
                rc = err_set(err, ERR_CANCELLED, "cancelled after %zu of %zu images", done,
                             r.n);
            } else if (grc) {
                r.state[i] = ST_FAILED;
                r.error[i] = xstrdup(e.msg[0] ? e.msg : err_name(grc));
                rep->failed++;
                logf_(pr, "prompt %s seed %llu failed, skipped: %s", it->prompt_id,
                      (unsigned long long)it->seed, r.error[i]);
            } else {
                r.state[i] = ST_HAVE;
                rep->generated++;
            }
        }
        if (!rc && r.state[i] == ST_HAVE && o->store) {
            int added = 0;
            Err e = {0};
            int src = store_row(&r, it, path, &added, &e);
            if (src == ERR_CONFLICT) { /* the store knows this prompt id with another text */
                r.state[i] = ST_FAILED;
                r.error[i] = xstrdup(e.msg);
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
            done++;
            progress_report(pr, (double)done, (double)r.n, "images");
        }
        if (r.state[i] != ST_PENDING) {
            Err e = {0};
            int wrc = write_csvs(&r, &e);
            if (wrc && !rc) {
                *err = e;
                rc = wrc;
            }
        }
    }
    if (!rc || rc == ERR_CANCELLED) { /* the CSVs exist after any run, even one with nothing */
        Err e = {0};
        int wrc = write_csvs(&r, &e);
        if (wrc) {
            *err = e;
            rc = wrc;
        }
    }
    if (rep->failed)
        rep->failures = xstrdup(r.fail_path);
    for (size_t i = 0; i < r.n; i++)
        free(r.error[i]);
    free(r.error);
    free(r.state);
    free(r.idx);
    free(r.meta_path);
    free(r.fail_path);
    return rc;
}

void gen_run_report_deinit(GenRunReport *r) {
    if (!r)
        return;
    free(r->metadata);
    free(r->failures);
    memset(r, 0, sizeof *r);
}
