/* queue_order — computing the Annotate queue's `uncertain` and `disagree` orders. See
 * queue_order.h for what they mean and when they are recomputed.
 *
 * Uncertain scores every image once under the checkpoint (train_ckpt_score: features come
 * from the store's embedding cache after the first time), then compares every image with
 * every other of its prompt (quadratic per prompt; prompts hold a handful of images).
 */
#include "queue_order.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "log.h"
#include "store_catalog.h"
#include "train.h"

/* ---- pure: uncertainty within prompts ---------------------------------------------------- */

typedef struct SortKey {
    int64_t group;
    size_t i;
} SortKey;

static int key_cmp(const void *a, const void *b) {
    const SortKey *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static double sigmoid(double d) { return 1.0 / (1.0 + exp(-d)); }

void queue_order_uncertainty(const int64_t *group, const float *scores, const uint8_t *valid,
                             const uint8_t *rated, double unrated_weight, size_t n,
                             QueueUncertainty *out) {
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        for (int a = 0; a < QUEUE_N_ASPECTS; a++) {
            out[i].partner[a] = -1;
            out[i].p[a] = NAN;
        }
    }
    /* images by group; each image against every other of its group (groups are small: the
     * images generated for one prompt) */
    SortKey *k = xmalloc((n ? n : 1) * sizeof *k);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if ((!valid || valid[i]) && group[i] != 0)
            k[m++] = (SortKey){group[i], i};
    qsort(k, m, sizeof *k, key_cmp);
    for (size_t g0 = 0, g1; g0 < m; g0 = g1) {
        for (g1 = g0 + 1; g1 < m && k[g1].group == k[g0].group; g1++)
            ;
        for (size_t x = g0; x < g1; x++) {
            size_t i = k[x].i;
            QueueUncertainty *o = &out[i];
            for (int a = 0; a < QUEUE_N_ASPECTS; a++) {
                double best = -1;
                for (size_t y = g0; y < g1; y++) {
                    size_t j = k[y].i;
                    float si = scores[i * QUEUE_N_ASPECTS + a];
                    float sj = scores[j * QUEUE_N_ASPECTS + a];
                    if (j == i || !isfinite(si) || !isfinite(sj))
                        continue;
                    double p = sigmoid((double)si - sj);
                    double u = 1.0 - 2.0 * fabs(p - 0.5);
                    double w = !rated || rated[j] ? u : unrated_weight * u;
                    if (w > best) {
                        best = w;
                        o->p[a] = p;
                        o->u[a] = w;
                        o->partner[a] = (int)j;
                    }
                }
            }
        }
    }
    free(k);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int a = 0; a < QUEUE_N_ASPECTS; a++)
            s += out[i].u[a];
        out[i].score = s / QUEUE_N_ASPECTS;
    }
}

void queue_order_uncertain_reason(const QueueUncertainty *u, const int64_t *ids,
                                  const char *const names[QUEUE_N_ASPECTS], const char *source,
                                  char *buf, size_t size) {
    int top[2] = {-1, -1};
    for (int a = 0; a < QUEUE_N_ASPECTS; a++) {
        if (u->partner[a] < 0)
            continue;
        if (top[0] < 0 || u->u[a] > u->u[top[0]]) {
            top[1] = top[0];
            top[0] = a;
        } else if (top[1] < 0 || u->u[a] > u->u[top[1]]) {
            top[1] = a;
        }
    }
    size_t len = 0;
    if (top[0] < 0) {
        len = (size_t)snprintf(buf, size, "uncertain: no other image of its prompt to compare");
    } else {
        len = (size_t)snprintf(buf, size, "uncertain:");
        for (int t = 0; t < 2 && top[t] >= 0 && len < size; t++) {
            int a = top[t];
            len += (size_t)snprintf(buf + len, size - len, "%s %s %.0f %% vs image %lld",
                                    t ? "," : "", names[a], 100.0 * u->p[a],
                                    (long long)ids[u->partner[a]]);
        }
    }
    if (len < size && source && *source)
        snprintf(buf + len, size - len, " \xe2\x80\x94 checkpoint %s", source);
}

/* A comparison with an image nobody rated yet counts this much of one with a rated image. */
#define UNRATED_WEIGHT 0.5

/* ---- uncertain ----------------------------------------------------------------------------- */

static void note(QueueOrderResult *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(QueueOrderResult *res, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->note, sizeof res->note, fmt, ap);
    va_end(ap);
}

/* The preferred checkpoint whose folder is still on disk (one deleted by hand is passed
 * over). *c->found 0 when there is none. */
static int pick_checkpoint(Store *st, AnnotateCheckpoint *c, Err *err) {
    for (int i = 0;; i++) {
        int rc = store_annotate_order_checkpoint(st, i, c, err);
        if (rc || !c->found)
            return rc;
        char *cfg = xasprintf("%s/config.json", c->path);
        int ok = access(cfg, R_OK) == 0;
        free(cfg);
        if (ok)
            return 0;
        log_warn("queue order: checkpoint %s (%s) is gone from disk; trying an older one",
                 c->label, c->path);
        store_annotate_checkpoint_deinit(c);
    }
}

static int aspect_names(Store *st, char names[QUEUE_N_ASPECTS][32], Err *err) {
    StoreAspect *asp = NULL;
    size_t n = 0;
    int rc = store_aspects_list(st, &asp, &n, err);
    if (rc)
        return rc;
    for (int a = 0; a < QUEUE_N_ASPECTS; a++)
        base_strlcpy(names[a], (size_t)a < n ? asp[a].name : "?", sizeof names[a]);
    store_aspects_free(asp, n);
    return 0;
}

static int compute_uncertain(Store *st, const AnnotateCheckpoint *ck, const QueueOrderOptions *o,
                             QueueOrderResult *res, Err *err) {
    char names_buf[QUEUE_N_ASPECTS][32];
    const char *names[QUEUE_N_ASPECTS];
    int rc = aspect_names(st, names_buf, err);
    if (rc)
        return rc;
    for (int a = 0; a < QUEUE_N_ASPECTS; a++)
        names[a] = names_buf[a];
    AnnotateOrderImage *im = NULL;
    size_t n = 0;
    if ((rc = store_annotate_order_images(st, &im, &n, err)))
        return rc;
    RewardCkpt *c;
    if ((rc = train_ckpt_open(st, ck->path, o->threads > 0 ? o->threads : 1, &c, err))) {
        err_prefix(err, "checkpoint %s", ck->label);
        store_annotate_order_images_free(im, n);
        return rc;
    }
    float *scores = xcalloc(n ? n : 1, QUEUE_N_ASPECTS * sizeof *scores);
    int64_t *group = xmalloc((n ? n : 1) * sizeof *group);
    int64_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
    uint8_t *valid = xcalloc(n ? n : 1, 1);
    uint8_t *rated = xcalloc(n ? n : 1, 1);
    QueueUncertainty *u = xmalloc((n ? n : 1) * sizeof *u);
    AnnotateOrderRow *rows = xmalloc((n ? n : 1) * sizeof *rows);
    char **reasons = xcalloc(n ? n : 1, sizeof *reasons);
    char first_bad[256] = "";
    for (size_t i = 0; i < n; i++) {
        if (progress_cancelled(&o->progress)) {
            rc = err_set(err, ERR_CANCELLED, "computing the uncertain order was cancelled");
            goto out;
        }
        ids[i] = im[i].id;
        group[i] = im[i].prompt_id;
        rated[i] = im[i].n_raters > 0;
        if (im[i].missing)
            continue;
        float out[TRAIN_N_HEADS + 1];
        Err e2 = {0};
        if (train_ckpt_score(c, st, im[i].path, im[i].sha256, im[i].prompt ? im[i].prompt : "",
                             out, &e2)) {
            if (!res->n_unreadable++)
                base_strlcpy(first_bad, e2.msg, sizeof first_bad);
            continue;
        }
        memcpy(scores + i * QUEUE_N_ASPECTS, out, QUEUE_N_ASPECTS * sizeof(float));
        valid[i] = 1;
    }
    queue_order_uncertainty(group, scores, valid, rated, UNRATED_WEIGHT, n, u);
    for (size_t i = 0; i < n; i++) {
        char buf[320];
        if (!valid[i])
            snprintf(buf, sizeof buf, "uncertain: not scored (%s) \xe2\x80\x94 checkpoint %s",
                     im[i].missing ? "file missing" : "file unreadable", ck->label);
        else
            queue_order_uncertain_reason(&u[i], ids, names, ck->label, buf, sizeof buf);
        reasons[i] = xstrdup(buf);
        rows[i] = (AnnotateOrderRow){ids[i], valid[i] ? u[i].score : 0.0, reasons[i]};
    }
    if ((rc = store_annotate_order_replace(st, "uncertain", rows, n, ck->label, err)))
        goto out;
    res->computed = 1;
    res->n_rows = (int)n;
    if (res->n_unreadable)
        log_warn("queue order: %d image%s could not be scored under %s (first: %s); they are "
                 "served after the others", res->n_unreadable, res->n_unreadable == 1 ? "" : "s",
                 ck->label, first_bad);
out:
    base_strv_free(reasons, n);
    free(rows);
    free(u);
    free(valid);
    free(rated);
    free(ids);
    free(group);
    free(scores);
    train_ckpt_free(c);
    store_annotate_order_images_free(im, n);
    return rc;
}

static int refresh_uncertain(Store *st, const QueueOrderOptions *o, QueueOrderResult *res,
                             Err *err) {
    AnnotateCheckpoint ck;
    AnnotateOrderInfo info;
    int rc = pick_checkpoint(st, &ck, err);
    if (rc)
        return rc;
    if ((rc = store_annotate_order_info(st, "uncertain", &info, err)))
        goto out;
    if (!ck.found) {
        res->fallback = 1;
        if (info.n_rows && (rc = store_annotate_order_replace(st, "uncertain", NULL, 0, "", err)))
            goto out;
        note(res, "uncertain: no reward checkpoint yet (train one: easel train), so the queue "
                  "is in fewest order");
        goto out;
    }
    base_strlcpy(res->source, ck.label, sizeof res->source);
    int current = info.n_rows > 0 && strcmp(info.source, ck.label) == 0 &&
                  info.computed_at >= ck.created_at && info.n_missing == 0;
    if (!current || o->force) {
        double t0 = base_now();
        if ((rc = compute_uncertain(st, &ck, o, res, err)))
            goto out;
        log_info("queue order: uncertain recomputed from %s for %d images in %.1f s", ck.label,
                 res->n_rows, base_now() - t0);
    } else {
        res->n_rows = info.n_rows;
    }
    note(res, "uncertain: from checkpoint %s (%d image%s)%s", ck.label, res->n_rows,
         res->n_rows == 1 ? "" : "s", res->computed ? ", just computed" : "");
out:
    store_annotate_checkpoint_deinit(&ck);
    return rc;
}

/* ---- disagree ------------------------------------------------------------------------------ */

static int compute_disagree(Store *st, QueueOrderResult *res, Err *err) {
    char names[QUEUE_N_ASPECTS][32];
    int rc = aspect_names(st, names, err);
    if (rc)
        return rc;
    AnnotateSpread *d = NULL;
    size_t n = 0;
    if ((rc = store_annotate_order_spread(st, &d, &n, err)))
        return rc;
    AnnotateOrderRow *rows = xmalloc((n ? n : 1) * sizeof *rows);
    char **reasons = xcalloc(n ? n : 1, sizeof *reasons);
    size_t n_rows = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int top[2] = {-1, -1};
        int raters = 0;
        for (; j < n && d[j].image_id == d[i].image_id; j++) {
            if (d[j].aspect < 0 || d[j].aspect >= QUEUE_N_ASPECTS)
                continue;
            raters = d[j].n > raters ? d[j].n : raters;
            if (top[0] < 0 || d[j].sd > d[top[0]].sd) {
                top[1] = top[0];
                top[0] = (int)j;
            } else if (top[1] < 0 || d[j].sd > d[top[1]].sd) {
                top[1] = (int)j;
            }
        }
        if (top[0] >= 0) {
            char buf[320];
            size_t len;
            if (d[top[0]].sd <= 0) {
                len = (size_t)snprintf(buf, sizeof buf, "disagree: none (%d raters agree)",
                                       raters);
            } else {
                len = (size_t)snprintf(buf, sizeof buf, "disagree:");
                for (int t = 0; t < 2 && top[t] >= 0 && d[top[t]].sd > 0; t++) {
                    const AnnotateSpread *x = &d[top[t]];
                    len += (size_t)snprintf(buf + len, sizeof buf - len,
                                            "%s %s sd %.1f, range %g (%d raters)", t ? "," : "",
                                            names[x->aspect], x->sd, x->hi - x->lo, x->n);
                }
            }
            (void)len;
            reasons[n_rows] = xstrdup(buf);
            rows[n_rows] = (AnnotateOrderRow){d[i].image_id, d[top[0]].sd, reasons[n_rows]};
            n_rows++;
        }
        i = j;
    }
    rc = store_annotate_order_replace(st, "disagree", rows, n_rows, "ratings", err);
    if (!rc) {
        res->computed = 1;
        res->n_rows = (int)n_rows;
    }
    base_strv_free(reasons, n_rows);
    free(rows);
    free(d);
    return rc;
}

static int refresh_disagree(Store *st, const QueueOrderOptions *o, QueueOrderResult *res,
                            Err *err) {
    AnnotateOrderInfo info;
    double changed = 0;
    int rc = store_annotate_order_info(st, "disagree", &info, err);
    if (!rc)
        rc = store_annotate_ratings_changed_at(st, &changed, err);
    if (rc)
        return rc;
    base_strlcpy(res->source, "ratings", sizeof res->source);
    if (o->force || info.n_rows == 0 || changed >= info.computed_at) {
        if ((rc = compute_disagree(st, res, err)))
            return rc;
    } else {
        res->n_rows = info.n_rows;
    }
    if (res->n_rows == 0)
        note(res, "disagree: no image has two raters yet, so the queue is in fewest order");
    else
        note(res, "disagree: %d image%s with two or more raters, largest spread first",
             res->n_rows, res->n_rows == 1 ? "" : "s");
    return 0;
}

/* ---- entry --------------------------------------------------------------------------------- */

int queue_order_refresh(Store *st, AnnotateOrder order, const QueueOrderOptions *opt,
                        QueueOrderResult *res, Err *err) {
    static const QueueOrderOptions none = {0};
    const QueueOrderOptions *o = opt ? opt : &none;
    memset(res, 0, sizeof *res);
    switch (order) {
    case ANNOTATE_ORDER_UNCERTAIN:
        return refresh_uncertain(st, o, res, err);
    case ANNOTATE_ORDER_DISAGREE:
        return refresh_disagree(st, o, res, err);
    default:
        note(res, "%s: computed by the queue itself", store_annotate_order_name(order));
        return 0;
    }
}
