/* store_agreement — the ratings of one aspect as an images × annotators table. See
 * store_agreement.h.
 *
 * Two queries per aspect inside one read transaction (a consistent snapshot under WAL): the
 * annotators who rated the aspect (columns, by name), then every current rating ordered by
 * image, which fills rows as image ids change. Memory is one row per rated image.
 */
#include "store_agreement.h"
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static const char SQL_ASPECTS[] = "SELECT name FROM aspects ORDER BY position, id";
static const char SQL_ASPECT_ID[] = "SELECT id FROM aspects WHERE name = ?1";
static const char SQL_RATERS[] =
    "SELECT DISTINCT an.name FROM ratings r JOIN annotators an ON an.id = r.annotator_id"
    " WHERE r.aspect_id = ?1 ORDER BY an.name";
static const char SQL_N_IMAGES[] =
    "SELECT count(DISTINCT image_id) FROM ratings WHERE aspect_id = ?1";
static const char SQL_RATINGS[] =
    "SELECT r.image_id, i.path, an.name, r.value FROM ratings r"
    " JOIN images i ON i.id = r.image_id JOIN annotators an ON an.id = r.annotator_id"
    " WHERE r.aspect_id = ?1 ORDER BY r.image_id, an.name";

void store_agreement_names_free(char **names, int n) {
    if (!names)
        return;
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int store_agreement_aspects(Store *st, char ***names, int *n, Err *err) {
    *names = NULL;
    *n = 0;
    sqlite3_stmt *s = store_stmt(st, SQL_ASPECTS, err);
    if (!s)
        return ERR_DB;
    int cap = 8, rc;
    char **v = xmalloc(sizeof *v * (size_t)cap);
    int c = 0;
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        if (c == cap)
            v = xrealloc(v, sizeof *v * (size_t)(cap *= 2));
        v[c++] = store_col_text(s, 0);
    }
    if (rc != SQLITE_DONE) {
        int e = store_err(st, err, "list aspects");
        sqlite3_reset(s);
        store_agreement_names_free(v, c);
        return e;
    }
    sqlite3_reset(s);
    *names = v;
    *n = c;
    return 0;
}

/* Read transaction unless the caller already holds one. */
static int read_begin(Store *st, int *began, Err *err) {
    *began = 0;
    if (!sqlite3_get_autocommit(st->db))
        return 0;
    int rc = store_exec(st, "BEGIN", err);
    if (rc == 0)
        *began = 1;
    return rc;
}

static void read_end(Store *st, int began) {
    if (began)
        store_exec(st, "COMMIT", NULL);
}

static int unknown_aspect(Store *st, const char *aspect, Err *err) {
    char **names;
    int n;
    char list[160] = "";
    if (store_agreement_aspects(st, &names, &n, NULL) == 0) {
        for (int i = 0; i < n; i++) {
            if (i)
                strncat(list, ", ", sizeof list - strlen(list) - 1);
            strncat(list, names[i], sizeof list - strlen(list) - 1);
        }
        store_agreement_names_free(names, n);
    }
    return err_set(err, ERR_NOTFOUND, "no aspect named '%s' (aspects: %s)", aspect, list);
}

static AgreeTable *load(Store *st, const char *aspect, Err *err) {
    sqlite3_stmt *s = store_stmt(st, SQL_ASPECT_ID, err);
    if (!s)
        return NULL;
    store_bind_text(s, 1, aspect);
    int rc = store_step(st, s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        unknown_aspect(st, aspect, err);
        return NULL;
    }
    if (rc != SQLITE_ROW) {
        store_err(st, err, "find aspect");
        sqlite3_reset(s);
        return NULL;
    }
    sqlite3_int64 aspect_id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);

    /* columns */
    if (!(s = store_stmt(st, SQL_RATERS, err)))
        return NULL;
    sqlite3_bind_int64(s, 1, aspect_id);
    int n_r = 0, cap = 8;
    char **raters = xmalloc(sizeof *raters * (size_t)cap);
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        if (n_r == cap)
            raters = xrealloc(raters, sizeof *raters * (size_t)(cap *= 2));
        raters[n_r++] = store_col_text(s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        store_err(st, err, "list annotators of an aspect");
        store_agreement_names_free(raters, n_r);
        return NULL;
    }

    /* rows */
    if (!(s = store_stmt(st, SQL_N_IMAGES, err))) {
        store_agreement_names_free(raters, n_r);
        return NULL;
    }
    sqlite3_bind_int64(s, 1, aspect_id);
    if (store_step(st, s) != SQLITE_ROW) {
        store_err(st, err, "count rated images");
        sqlite3_reset(s);
        store_agreement_names_free(raters, n_r);
        return NULL;
    }
    int n_i = sqlite3_column_int(s, 0);
    sqlite3_reset(s);

    AgreeTable *t = agreement_table_new(n_i, n_r);
    t->aspect = xstrdup(aspect);
    t->rater_names = raters;
    t->item_labels = xcalloc((size_t)n_i + 1, sizeof *t->item_labels);

    if (!(s = store_stmt(st, SQL_RATINGS, err)))
        goto out_free;
    sqlite3_bind_int64(s, 1, aspect_id);
    int row = -1, col;
    sqlite3_int64 last = 0;
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        sqlite3_int64 id = sqlite3_column_int64(s, 0);
        if (row < 0 || id != last) {
            row++;
            ASSERT(row < n_i); /* same snapshot as the count */
            t->item_ids[row] = id;
            t->item_labels[row] = store_col_text(s, 1);
            last = id;
        }
        const char *name = (const char *)sqlite3_column_text(s, 2);
        /* columns are in name order (the same collation as the query's ORDER BY) */
        int lo = 0, hi = n_r - 1;
        col = -1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2, c = strcmp(raters[mid], name);
            if (c == 0) {
                col = mid;
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid - 1;
        }
        ASSERT(col >= 0);
        *agreement_cell(t, row, col) = sqlite3_column_double(s, 3);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        store_err(st, err, "read ratings");
        goto out_free;
    }
    ASSERT(row == n_i - 1);
    return t;
out_free:
    agreement_table_free(t);
    return NULL;
}

AgreeTable *store_agreement_table(Store *st, const char *aspect, Err *err) {
    int began;
    if (read_begin(st, &began, err))
        return NULL;
    AgreeTable *t = load(st, aspect, err);
    read_end(st, began);
    return t;
}

void store_agreement_report_free(AgreeReport *r) {
    if (!r)
        return;
    for (int i = 0; i < r->n; i++) {
        agreement_stats_free(r->stats[i]);
        agreement_table_free(r->tables[i]);
    }
    free(r->stats);
    free(r->tables);
    free(r);
}

AgreeReport *store_agreement_report(Store *st, const char *aspect, const AgreeOptions *opt,
                                    Err *err) {
    int began;
    if (read_begin(st, &began, err))
        return NULL;
    char **names = NULL;
    int n = 0;
    AgreeReport *r = NULL;
    if (aspect) {
        names = xmalloc(sizeof *names);
        names[0] = xstrdup(aspect);
        n = 1;
    } else if (store_agreement_aspects(st, &names, &n, err)) {
        goto out_end;
    }
    r = xcalloc(1, sizeof *r);
    r->tables = xcalloc((size_t)n + 1, sizeof *r->tables);
    r->stats = xcalloc((size_t)n + 1, sizeof *r->stats);
    for (int i = 0; i < n; i++) {
        AgreeTable *t = load(st, names[i], err);
        if (!t) {
            store_agreement_report_free(r);
            r = NULL;
            goto out_names;
        }
        r->tables[i] = t;
        r->stats[i] = agreement_compute(t, opt);
        r->n++;
    }
out_names:
    store_agreement_names_free(names, n);
out_end:
    read_end(st, began);
    return r;
}
