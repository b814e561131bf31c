/* store_annotate — queue, image, commit, flag and progress queries of the Annotate screen.
 * See store_annotate.h for the contract.
 *
 * The queue is one SELECT over images with a per-image count of distinct raters (the
 * ratings UNIQUE(image_id, annotator_id, aspect_id) index answers it), so it stays correct
 * while other annotators commit: every call sees the store as it is now.
 */
#include "store_annotate.h"
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "store_catalog.h"
#include "store_ratings.h"

static const char *const order_names[ANNOTATE_N_ORDERS] = {
    "fewest", "id", "prompt", "random", "sequential", "uncertain", "disagree"};

int store_annotate_order_parse(const char *s, AnnotateOrder *order, Err *err) {
    for (int i = 0; i < ANNOTATE_N_ORDERS; i++) {
        if (strcmp(s, order_names[i]) == 0) {
            *order = (AnnotateOrder)i;
            return 0;
        }
    }
    return err_set(err, ERR_USAGE,
                   "--order %s: unknown order (use sequential, random, uncertain, disagree, "
                   "fewest, id or prompt)", s);
}

const char *store_annotate_order_name(AnnotateOrder order) {
    return (int)order >= 0 && (int)order < ANNOTATE_N_ORDERS ? order_names[order] : "?";
}

const char *store_annotate_order_kind(AnnotateOrder order) {
    return order == ANNOTATE_ORDER_UNCERTAIN  ? "uncertain"
           : order == ANNOTATE_ORDER_DISAGREE ? "disagree"
                                              : NULL;
}

/* A disagree score (the largest per-aspect sd of the raters' values) at least this keeps an
 * image in the queue past the overlap target: two raters two points apart. */
#define DISAGREE_ADJUDICATE "1.0"

/* The queue's rows: ?1 annotator, ?2 prompt ext id or NULL, ?3 overlap, ?4 unrated only,
 * ?5 order, ?8 queue_order kind or NULL (qs: that order's score, NULL without a row). */
#define QUEUE_ROWS                                                                             \
    "  SELECT i.id AS id, i.prompt_id AS pid,"                                                 \
    "    (SELECT count(DISTINCT r.annotator_id) FROM ratings r WHERE r.image_id = i.id) AS n," \
    "    (SELECT qo.score FROM queue_order qo WHERE qo.kind = ?8 AND qo.image_id = i.id) AS qs" \
    "  FROM images i LEFT JOIN prompts p ON p.id = i.prompt_id"                                \
    "  WHERE i.retired = 0 AND (?2 IS NULL OR p.ext_id = ?2)"                                 \
    "    AND NOT EXISTS (SELECT 1 FROM ratings m WHERE m.annotator_id = ?1 AND m.image_id = i.id)"
#define QUEUE_FILTER                                                                           \
    " WHERE (n < ?3 OR (?5 = 6 AND qs >= " DISAGREE_ADJUDICATE ")) AND (?4 = 0 OR n = 0)"

/* ... ?6 salt, ?7 limit. Orders: 0 fewest, 1 id, 2 prompt, 3 random, 4 sequential (= prompt),
 * 5 uncertain, 6 disagree (scored images first, highest score first, then as fewest). */
static const char queue_sql[] =
    "SELECT id FROM (" QUEUE_ROWS ")" QUEUE_FILTER
    " ORDER BY CASE WHEN ?5 IN (5, 6) THEN qs IS NULL ELSE 0 END,"
    "          CASE WHEN ?5 IN (5, 6) THEN -coalesce(qs, 0) ELSE 0 END,"
    "          CASE WHEN ?5 IN (0, 5, 6) THEN n ELSE 0 END,"
    "          CASE WHEN ?5 IN (2, 4) THEN pid ELSE 0 END,"
    "          CASE WHEN ?5 IN (0, 3, 5, 6) THEN ((id * 1103515245 + ?6) & 2147483647)"
    "               ELSE 0 END,"
    "          id"
    " LIMIT ?7";

static const char queue_count_sql[] = "SELECT count(*) FROM (" QUEUE_ROWS ")" QUEUE_FILTER;

static int overlap_of(const AnnotateQuery *q) {
    return q->overlap > 0 ? q->overlap : ANNOTATE_OVERLAP_DEFAULT;
}

static void bind_query(sqlite3_stmt *s, const AnnotateQuery *q) {
    sqlite3_bind_int64(s, 1, q->annotator_id);
    store_bind_text(s, 2, q->prompt && *q->prompt ? q->prompt : NULL);
    sqlite3_bind_int(s, 3, overlap_of(q));
    sqlite3_bind_int(s, 4, q->unrated_only ? 1 : 0);
    sqlite3_bind_int(s, 5, (int)q->order);
    store_bind_text(s, 8, store_annotate_order_kind(q->order));
}

int store_annotate_queue(Store *st, const AnnotateQuery *q, const int64_t *skip, int n_skip,
                         int64_t *ids, int max, int *n, Err *err) {
    *n = 0;
    sqlite3_stmt *s = store_stmt(st, queue_sql, err);
    if (!s)
        return ERR_DB;
    bind_query(s, q);
    sqlite3_bind_int64(s, 6, (q->annotator_id * 2654435761LL) & 0x7fffffff);
    sqlite3_bind_int(s, 7, max + n_skip);
    int rc;
    while ((rc = store_step(st, s)) == SQLITE_ROW && *n < max) {
        int64_t id = sqlite3_column_int64(s, 0);
        int skipped = 0;
        for (int k = 0; k < n_skip && !skipped; k++)
            skipped = skip[k] == id;
        if (!skipped)
            ids[(*n)++] = id;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_err(st, err, "read the annotation queue");
    sqlite3_reset(s);
    return 0;
}

int store_annotate_eligible(Store *st, const AnnotateQuery *q, int64_t image_id, int *ok,
                            Err *err) {
    static const char sql[] =
        "SELECT 1 FROM (" QUEUE_ROWS " AND i.id = ?9)" QUEUE_FILTER;
    *ok = 0;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    bind_query(s, q);
    sqlite3_bind_int64(s, 9, image_id);
    int rc = store_step(st, s);
    if (rc == SQLITE_ROW)
        *ok = 1;
    else if (rc != SQLITE_DONE)
        return store_err(st, err, "check the annotation queue");
    sqlite3_reset(s);
    return 0;
}

int store_annotate_image(Store *st, int64_t image_id, int64_t annotator_id, AnnotateImage *img,
                         Err *err) {
    static const char sql[] =
        "SELECT i.path, p.ext_id, p.text, i.missing, i.width, i.height,"
        "  (SELECT count(DISTINCT annotator_id) FROM ratings WHERE image_id = i.id),"
        "  (SELECT count(*) FROM flags WHERE image_id = i.id AND annotator_id = ?2)"
        " FROM images i LEFT JOIN prompts p ON p.id = i.prompt_id WHERE i.id = ?1";
    static const char mine_sql[] =
        "SELECT a.position, r.value, r.seconds FROM ratings r JOIN aspects a ON a.id = r.aspect_id"
        " WHERE r.image_id = ?1 AND r.annotator_id = ?2";
    memset(img, 0, sizeof *img);
    for (int k = 0; k < ANNOTATE_ASPECTS; k++)
        img->mine[k] = NAN;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, image_id);
    sqlite3_bind_int64(s, 2, annotator_id);
    int rc = store_step(st, s);
    if (rc == SQLITE_DONE)
        return err_set(err, ERR_NOTFOUND, "no image with id %lld in %s", (long long)image_id,
                       store_path(st));
    if (rc != SQLITE_ROW)
        return store_err(st, err, "read image");
    img->id = image_id;
    char *stored = store_col_text(s, 0);
    img->path = store_path_resolve(st, stored);
    free(stored);
    img->prompt_ext = store_col_text(s, 1);
    img->prompt = store_col_text(s, 2);
    img->missing = sqlite3_column_int(s, 3);
    img->width = sqlite3_column_int(s, 4);
    img->height = sqlite3_column_int(s, 5);
    img->n_raters = sqlite3_column_int(s, 6);
    img->n_my_flags = sqlite3_column_int(s, 7);
    sqlite3_reset(s);

    s = store_stmt(st, mine_sql, err);
    rc = ERR_DB;
    if (!s)
        goto out_fail;
    sqlite3_bind_int64(s, 1, image_id);
    sqlite3_bind_int64(s, 2, annotator_id);
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        int pos = sqlite3_column_int(s, 0);
        if (pos >= 0 && pos < ANNOTATE_ASPECTS)
            img->mine[pos] = sqlite3_column_double(s, 1);
        if (sqlite3_column_type(s, 2) != SQLITE_NULL)
            img->my_seconds = sqlite3_column_double(s, 2);
    }
    if (rc != SQLITE_DONE) {
        rc = store_err(st, err, "read my ratings");
        sqlite3_reset(s);
        goto out_fail;
    }
    sqlite3_reset(s);
    return 0;
out_fail:
    store_annotate_image_deinit(img);
    return rc;
}

void store_annotate_image_deinit(AnnotateImage *img) {
    if (!img)
        return;
    free(img->path);
    free(img->prompt_ext);
    free(img->prompt);
    img->path = img->prompt_ext = img->prompt = NULL;
}

int store_annotate_commit(Store *st, int64_t image_id, int64_t annotator_id,
                          const double values[ANNOTATE_ASPECTS], double seconds, int *n_written,
                          Err *err) {
    int rc, any = 0, written = 0;
    if (n_written)
        *n_written = 0;
    for (int k = 0; k < ANNOTATE_ASPECTS; k++)
        any |= !isnan(values[k]);
    if (!any)
        return err_set(err, ERR_USAGE, "nothing to save: no aspect has a value");
    StoreAspect *asp = NULL;
    size_t n_asp = 0;
    if ((rc = store_aspects_list(st, &asp, &n_asp, err)))
        return rc;
    if (n_asp < ANNOTATE_ASPECTS) {
        rc = err_set(err, ERR_FORMAT, "%s: the store has %zu aspects, expected %d",
                     store_path(st), n_asp, ANNOTATE_ASPECTS);
        goto out_free;
    }
    if ((rc = store_begin(st, err)))
        goto out_free;
    for (int k = 0; k < ANNOTATE_ASPECTS; k++) {
        if (isnan(values[k]))
            continue;
        int changed = 0;
        rc = store_rating_set(st, image_id, annotator_id, asp[k].id, values[k], seconds, "tui",
                              &changed, err);
        if (rc) {
            err_prefix(err, "image %lld, %s", (long long)image_id, asp[k].name);
            store_rollback(st);
            goto out_free;
        }
        written += changed;
    }
    if ((rc = store_commit(st, err)))
        goto out_free;
    if (n_written)
        *n_written = written;
out_free:
    store_aspects_free(asp, n_asp);
    return rc;
}

int store_annotate_flag(Store *st, int64_t image_id, int64_t annotator_id, const char *comment,
                        Err *err) {
    static const char sql[] = "INSERT INTO flags(image_id, annotator_id, comment, created_at)"
                              " VALUES (?1, ?2, ?3, ?4)";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, image_id);
    sqlite3_bind_int64(s, 2, annotator_id);
    store_bind_text(s, 3, comment ? comment : "");
    sqlite3_bind_double(s, 4, base_wall());
    return store_step_done(st, s, "save flag", err);
}

int store_annotate_progress(Store *st, const AnnotateQuery *q, AnnotateProgress *p, Err *err) {
    static const char done_sql[] =
        "SELECT count(DISTINCT r.image_id),"
        "  count(DISTINCT CASE WHEN r.source = 'tui' AND r.updated_at >= ?3 THEN r.image_id END)"
        " FROM ratings r JOIN images i ON i.id = r.image_id"
        " LEFT JOIN prompts p ON p.id = i.prompt_id"
        " WHERE r.annotator_id = ?1 AND (?2 IS NULL OR p.ext_id = ?2)";
    static const char secs_sql[] =
        "SELECT avg(s) FROM (SELECT max(seconds) AS s FROM ratings"
        " WHERE annotator_id = ?1 AND source = 'tui' AND seconds IS NOT NULL GROUP BY image_id)";
    memset(p, 0, sizeof *p);
    sqlite3_stmt *s = store_stmt(st, done_sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, q->annotator_id);
    store_bind_text(s, 2, q->prompt && *q->prompt ? q->prompt : NULL);
    sqlite3_bind_double(s, 3, base_wall() - 3600.0);
    if (store_step(st, s) != SQLITE_ROW)
        return store_err(st, err, "count my ratings");
    p->done = sqlite3_column_int(s, 0);
    p->last_hour = sqlite3_column_int(s, 1);
    sqlite3_reset(s);

    s = store_stmt(st, queue_count_sql, err);
    if (!s)
        return ERR_DB;
    bind_query(s, q);
    if (store_step(st, s) != SQLITE_ROW)
        return store_err(st, err, "count the annotation queue");
    p->remaining = sqlite3_column_int(s, 0);
    sqlite3_reset(s);

    s = store_stmt(st, secs_sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, q->annotator_id);
    if (store_step(st, s) != SQLITE_ROW)
        return store_err(st, err, "time per image");
    p->mean_seconds = sqlite3_column_double(s, 0);
    sqlite3_reset(s);
    return 0;
}

/* ---- computed orders -------------------------------------------------------------------- */

int store_annotate_order_replace(Store *st, const char *kind, const AnnotateOrderRow *rows,
                                 size_t n, const char *source, Err *err) {
    static const char del_sql[] = "DELETE FROM queue_order WHERE kind = ?1";
    static const char ins_sql[] =
        "INSERT INTO queue_order(kind, image_id, score, reason, source, computed_at)"
        " SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM images WHERE id = ?2)";
    int rc = store_begin(st, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = store_stmt(st, del_sql, err);
    rc = ERR_DB;
    if (!s)
        goto out_rollback;
    store_bind_text(s, 1, kind);
    if ((rc = store_step_done(st, s, "clear the computed order", err)))
        goto out_rollback;
    double now = base_wall();
    for (size_t i = 0; i < n; i++) {
        rc = ERR_DB;
        if (!(s = store_stmt(st, ins_sql, err)))
            goto out_rollback;
        store_bind_text(s, 1, kind);
        sqlite3_bind_int64(s, 2, rows[i].image_id);
        sqlite3_bind_double(s, 3, isfinite(rows[i].score) ? rows[i].score : 0.0);
        store_bind_text(s, 4, rows[i].reason ? rows[i].reason : "");
        store_bind_text(s, 5, source ? source : "");
        sqlite3_bind_double(s, 6, now);
        if ((rc = store_step_done(st, s, "write the computed order", err)))
            goto out_rollback;
    }
    return store_commit(st, err);
out_rollback:
    store_rollback(st);
    return rc;
}

int store_annotate_order_info(Store *st, const char *kind, AnnotateOrderInfo *info, Err *err) {
    static const char sql[] =
        "SELECT count(*), min(computed_at), min(source), max(source) FROM queue_order"
        " WHERE kind = ?1";
    static const char missing_sql[] =
        "SELECT count(*) FROM images i WHERE i.retired = 0 AND NOT EXISTS"
        " (SELECT 1 FROM queue_order qo WHERE qo.kind = ?1 AND qo.image_id = i.id)";
    memset(info, 0, sizeof *info);
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, kind);
    if (store_step(st, s) != SQLITE_ROW)
        return store_err(st, err, "read the computed order");
    info->n_rows = sqlite3_column_int(s, 0);
    info->computed_at = sqlite3_column_double(s, 1);
    const unsigned char *lo = sqlite3_column_text(s, 2), *hi = sqlite3_column_text(s, 3);
    /* rows of two sources (cannot happen through replace) read as no source: recompute */
    if (lo && hi && strcmp((const char *)lo, (const char *)hi) == 0)
        base_strlcpy(info->source, (const char *)lo, sizeof info->source);
    sqlite3_reset(s);
    if (!(s = store_stmt(st, missing_sql, err)))
        return ERR_DB;
    store_bind_text(s, 1, kind);
    if (store_step(st, s) != SQLITE_ROW)
        return store_err(st, err, "count images outside the computed order");
    info->n_missing = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return 0;
}

int store_annotate_order_reason(Store *st, const char *kind, int64_t image_id, char **reason,
                                char **source, Err *err) {
    static const char sql[] =
        "SELECT reason, source FROM queue_order WHERE kind = ?1 AND image_id = ?2";
    *reason = NULL;
    if (source)
        *source = NULL;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, kind);
    sqlite3_bind_int64(s, 2, image_id);
    int rc = store_step(st, s);
    if (rc == SQLITE_ROW) {
        *reason = store_col_text(s, 0);
        if (source)
            *source = store_col_text(s, 1);
    } else if (rc != SQLITE_DONE) {
        return store_err(st, err, "read why an image is in the computed order");
    }
    sqlite3_reset(s);
    return 0;
}

int store_annotate_order_checkpoint(Store *st, int index, AnnotateCheckpoint *c, Err *err) {
    /* Runs by their latest checkpoint, newest first; per run its best, else its latest. */
    static const char sql[] =
        "SELECT r.name, c.name, c.path, c.created_at FROM checkpoints c"
        " JOIN runs r ON r.id = c.run_id"
        " JOIN (SELECT run_id, max(created_at) AS latest FROM checkpoints GROUP BY run_id) l"
        "   ON l.run_id = c.run_id"
        " ORDER BY l.latest DESC, c.run_id DESC, c.name = 'best' DESC, c.created_at DESC, c.id"
        " LIMIT 1 OFFSET ?1";
    memset(c, 0, sizeof *c);
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int(s, 1, index);
    int rc = store_step(st, s);
    if (rc == SQLITE_ROW) {
        c->found = 1;
        c->label = xasprintf("%s/%s", (const char *)sqlite3_column_text(s, 0),
                             (const char *)sqlite3_column_text(s, 1));
        char *stored = store_col_text(s, 2);
        c->path = store_path_resolve(st, stored);
        free(stored);
        c->created_at = sqlite3_column_double(s, 3);
    } else if (rc != SQLITE_DONE) {
        return store_err(st, err, "find the newest reward checkpoint");
    }
    sqlite3_reset(s);
    return 0;
}

void store_annotate_checkpoint_deinit(AnnotateCheckpoint *c) {
    if (!c)
        return;
    free(c->label);
    free(c->path);
    memset(c, 0, sizeof *c);
}

static void store_annotate_order_images_free_one(AnnotateOrderImage *im) {
    free(im->path);
    free(im->sha256);
    free(im->prompt);
}

static void order_image_row(sqlite3_stmt *s, void *dst, void *ctx) {
    Store *st = ctx;
    AnnotateOrderImage *im = dst;
    im->id = sqlite3_column_int64(s, 0);
    im->prompt_id = sqlite3_column_int64(s, 1);
    char *stored = store_col_text(s, 2);
    im->path = store_path_resolve(st, stored);
    free(stored);
    im->sha256 = store_col_text(s, 3);
    im->prompt = store_col_text(s, 4);
    im->missing = sqlite3_column_int(s, 5);
    im->n_raters = sqlite3_column_int(s, 6);
}

static void order_image_deinit(void *elem) {
    store_annotate_order_images_free_one(elem);
}

int store_annotate_order_images(Store *st, AnnotateOrderImage **out, size_t *n, Err *err) {
    static const char sql[] =
        "SELECT i.id, coalesce(i.prompt_id, 0), i.path, i.sha256, p.text, i.missing,"
        "  (SELECT count(DISTINCT r.annotator_id) FROM ratings r WHERE r.image_id = i.id)"
        " FROM images i LEFT JOIN prompts p ON p.id = i.prompt_id WHERE i.retired = 0"
        " ORDER BY i.id";
    return store_read_list(st, store_stmt(st, sql, err), sizeof **out, order_image_row, st,
                           order_image_deinit, out, n, "list images to order", err);
}

void store_annotate_order_images_free(AnnotateOrderImage *im, size_t n) {
    store_free_list(im, n, sizeof *im, order_image_deinit);
}

static void spread_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    AnnotateSpread *d = dst;
    d->image_id = sqlite3_column_int64(s, 0);
    d->aspect = sqlite3_column_int(s, 1);
    d->n = sqlite3_column_int(s, 2);
    d->lo = sqlite3_column_double(s, 3);
    d->hi = sqlite3_column_double(s, 4);
    d->mean = sqlite3_column_double(s, 5);
    double var = sqlite3_column_double(s, 6) - d->mean * d->mean;
    d->sd = var > 0 ? sqrt(var) : 0.0;
}

int store_annotate_order_spread(Store *st, AnnotateSpread **out, size_t *n, Err *err) {
    static const char sql[] =
        "SELECT r.image_id, a.position, count(*), min(r.value), max(r.value), avg(r.value),"
        "  avg(r.value * r.value)"
        " FROM ratings r JOIN aspects a ON a.id = r.aspect_id"
        " GROUP BY r.image_id, a.position HAVING count(*) >= 2"
        " ORDER BY r.image_id, a.position";
    return store_read_list(st, store_stmt(st, sql, err), sizeof **out, spread_row, NULL, NULL, out,
                           n, "read the annotators' spread", err);
}

int store_annotate_ratings_changed_at(Store *st, double *t, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "SELECT coalesce(max(updated_at), 0) FROM ratings", err);
    *t = 0;
    if (!s)
        return ERR_DB;
    if (store_step(st, s) != SQLITE_ROW)
        return store_err(st, err, "read when ratings last changed");
    *t = sqlite3_column_double(s, 0);
    sqlite3_reset(s);
    return 0;
}
