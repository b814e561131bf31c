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

int store_annotate_order_parse(const char *s, AnnotateOrder *order, Err *err) {
    static const char *const names[] = {"fewest", "id", "prompt", "random"};
    for (int i = 0; i < (int)ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *order = (AnnotateOrder)i;
            return 0;
        }
    }
    return err_set(err, ERR_USAGE, "--order %s: unknown order (use fewest, id, prompt or random)",
                   s);
}

/* ?1 annotator, ?2 prompt ext id or NULL, ?3 overlap, ?4 unrated only, ?5 order, ?6 salt. */
static const char queue_sql[] =
    "SELECT id FROM ("
    "  SELECT i.id AS id, i.prompt_id AS pid,"
    "    (SELECT count(DISTINCT r.annotator_id) FROM ratings r WHERE r.image_id = i.id) AS n"
    "  FROM images i LEFT JOIN prompts p ON p.id = i.prompt_id"
    "  WHERE i.retired = 0 AND (?2 IS NULL OR p.ext_id = ?2)"
    "    AND NOT EXISTS (SELECT 1 FROM ratings m WHERE m.annotator_id = ?1 AND m.image_id = i.id))"
    " WHERE n < ?3 AND (?4 = 0 OR n = 0)"
    " ORDER BY CASE ?5 WHEN 0 THEN n ELSE 0 END,"
    "          CASE ?5 WHEN 2 THEN pid ELSE 0 END,"
    "          CASE WHEN ?5 IN (0, 3) THEN ((id * 1103515245 + ?6) & 2147483647) ELSE 0 END,"
    "          id"
    " LIMIT ?7";

static const char queue_count_sql[] =
    "SELECT count(*) FROM ("
    "  SELECT (SELECT count(DISTINCT r.annotator_id) FROM ratings r WHERE r.image_id = i.id) AS n"
    "  FROM images i LEFT JOIN prompts p ON p.id = i.prompt_id"
    "  WHERE i.retired = 0 AND (?2 IS NULL OR p.ext_id = ?2)"
    "    AND NOT EXISTS (SELECT 1 FROM ratings m WHERE m.annotator_id = ?1 AND m.image_id = i.id))"
    " WHERE n < ?3 AND (?4 = 0 OR n = 0)";

static int overlap_of(const AnnotateQuery *q) {
    return q->overlap > 0 ? q->overlap : ANNOTATE_OVERLAP_DEFAULT;
}

static void bind_query(sqlite3_stmt *s, const AnnotateQuery *q) {
    sqlite3_bind_int64(s, 1, q->annotator_id);
    store_bind_text(s, 2, q->prompt && *q->prompt ? q->prompt : NULL);
    sqlite3_bind_int(s, 3, overlap_of(q));
    sqlite3_bind_int(s, 4, q->unrated_only ? 1 : 0);
}

int store_annotate_queue(Store *st, const AnnotateQuery *q, const int64_t *skip, int n_skip,
                         int64_t *ids, int max, int *n, Err *err) {
    *n = 0;
    sqlite3_stmt *s = store_stmt(st, queue_sql, err);
    if (!s)
        return ERR_DB;
    bind_query(s, q);
    sqlite3_bind_int(s, 5, (int)q->order);
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
        "SELECT (SELECT count(DISTINCT r.annotator_id) FROM ratings r WHERE r.image_id = i.id) AS n"
        " FROM images i LEFT JOIN prompts p ON p.id = i.prompt_id"
        " WHERE i.id = ?5 AND i.retired = 0 AND (?2 IS NULL OR p.ext_id = ?2)"
        "   AND NOT EXISTS (SELECT 1 FROM ratings m WHERE m.annotator_id = ?1"
        "                   AND m.image_id = i.id)"
        "   AND n < ?3 AND (?4 = 0 OR n = 0)";
    *ok = 0;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    bind_query(s, q);
    sqlite3_bind_int64(s, 5, image_id);
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
        store_err(st, err, "read my ratings");
        goto out_fail;
    }
    return 0;
out_fail:
    store_annotate_image_deinit(img);
    return err ? err->code : ERR_DB;
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
    if (store_step(st, s) != SQLITE_DONE)
        return store_err(st, err, "save flag");
    return 0;
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
