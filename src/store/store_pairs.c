/* store_pairs — stored preference pairs. See store_pairs.h.
 * Invariant: a stored pair is never rewritten; re-importing a file is a no-op. */
#include "store_pairs.h"
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static void bind_opt(sqlite3_stmt *s, int i, double v) {
    if (isfinite(v))
        sqlite3_bind_double(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static double col_opt(sqlite3_stmt *s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

/* SQL prepared with P's images and ASPECT bound: ?1 img_pos, ?2 img_neg, ?3 aspect. NULL (err
 * set) when it does not prepare. */
static sqlite3_stmt *key_stmt(Store *st, const char *sql, const StorePair *p, const char *aspect,
                              Err *err) {
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (s) {
        sqlite3_bind_int64(s, 1, p->img_pos);
        sqlite3_bind_int64(s, 2, p->img_neg);
        store_bind_text(s, 3, aspect);
    }
    return s;
}

int store_pair_add(Store *st, const StorePair *p, int *added, Err *err) {
    if (added)
        *added = 0;
    const char *source = p->source ? p->source : "import";
    const char *aspect = p->aspect ? p->aspect : "";
    if (p->img_pos == p->img_neg)
        return err_set(err, ERR_CONFLICT, "a pair of image %lld with itself",
                       (long long)p->img_pos);
    /* the opposite preference between the same two images, on the same aspect */
    sqlite3_stmt *s = key_stmt(st,
                               "SELECT id, label FROM pairs WHERE img_pos = ?2 AND img_neg = ?1"
                               " AND aspect = ?3 LIMIT 1",
                               p, aspect, err);
    if (!s)
        return ERR_DB;
    int rc = store_step(st, s);
    if (rc == SQLITE_ROW) {
        long long other = sqlite3_column_int64(s, 0);
        double lab = sqlite3_column_double(s, 1);
        sqlite3_reset(s);
        if (!(lab == 0.5 && p->label == 0.5))
            return err_set(err, ERR_CONFLICT,
                           "the store already has the opposite preference between these two "
                           "images (pair %lld); a pair file cannot contradict it",
                           other);
    } else {
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_err(st, err, "read pair");
    }
    s = store_stmt(st,
                                 "INSERT INTO pairs(prompt_id, img_pos, img_neg, label, aspect,"
                                 " rating_pos, rating_neg, rating_diff, source, created_at)"
                                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                                 " ON CONFLICT(img_pos, img_neg, aspect, source) DO NOTHING",
                                 err);
    if (!s)
        return ERR_DB;
    if (p->prompt_id > 0)
        sqlite3_bind_int64(s, 1, p->prompt_id);
    sqlite3_bind_int64(s, 2, p->img_pos);
    sqlite3_bind_int64(s, 3, p->img_neg);
    sqlite3_bind_double(s, 4, p->label);
    store_bind_text(s, 5, aspect);
    bind_opt(s, 6, p->rating_pos);
    bind_opt(s, 7, p->rating_neg);
    bind_opt(s, 8, p->rating_diff);
    store_bind_text(s, 9, source);
    sqlite3_bind_double(s, 10, base_wall());
    if ((rc = store_step_done(st, s, "add pair", err)))
        return rc;
    if (sqlite3_changes(st->db) > 0) {
        if (added)
            *added = 1;
        return 0;
    }
    s = key_stmt(st,
                 "SELECT label FROM pairs WHERE img_pos = ?1 AND img_neg = ?2 AND aspect = ?3"
                 " AND source = ?4",
                 p, aspect, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 4, source);
    double old;
    if ((rc = store_read_one(st, s, store_row_double, NULL, &old, "read pair", err,
                             "read pair: no such row")))
        return rc;
    if (old != p->label)
        return err_set(err, ERR_CONFLICT,
                       "this pair is already in the store with label %g, not %g", old, p->label);
    return 0;
}

static void pair_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StorePair *p = dst;
    p->id = sqlite3_column_int64(s, 0);
    p->prompt_id = sqlite3_column_int64(s, 1);
    p->img_pos = sqlite3_column_int64(s, 2);
    p->img_neg = sqlite3_column_int64(s, 3);
    p->label = sqlite3_column_double(s, 4);
    p->aspect = store_col_text(s, 5);
    p->rating_pos = col_opt(s, 6);
    p->rating_neg = col_opt(s, 7);
    p->rating_diff = col_opt(s, 8);
    p->source = store_col_text(s, 9);
}

static void pair_deinit(void *elem) {
    StorePair *p = elem;
    free(p->aspect);
    free(p->source);
}

int store_pairs_list(Store *st, StorePair **out, size_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = store_stmt(st,
                                 "SELECT id, coalesce(prompt_id, 0), img_pos, img_neg, label,"
                                 " aspect, rating_pos, rating_neg, rating_diff, source"
                                 " FROM pairs p WHERE NOT EXISTS (SELECT 1 FROM images i"
                                 " WHERE i.id IN (p.img_pos, p.img_neg) AND i.retired != 0)"
                                 " ORDER BY id",
                                 err);
    if (!s)
        return ERR_DB;
    return store_read_list(st, s, sizeof **out, pair_row, NULL, pair_deinit, out, n, "list pairs",
                           err);
}

void store_pairs_free(StorePair *p, size_t n) {
    store_free_list(p, n, sizeof *p, pair_deinit);
}
