/* store_agreement — the ratings of each aspect as an images × annotators table. See
 * store_agreement.h.
 *
 * Built on the typed reads of store_catalog.h (aspects, annotators, images) and
 * store_ratings.h (every current rating), all inside one read transaction so the tables are
 * one consistent snapshot under WAL while annotators keep writing. No SQL of its own beyond
 * BEGIN/COMMIT. Cost: one pass over all current ratings per report, then a sort and binary
 * searches per aspect: O(R log R) for R ratings.
 */
#include "store_agreement.h"
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "store_catalog.h"
#include "store_ratings.h"

void store_agreement_names_free(char **names, int n) {
    if (!names)
        return;
    base_strv_free(names, (size_t)n);
}

int store_agreement_aspects(Store *st, char ***names, int *n, Err *err) {
    StoreAspect *a;
    size_t n_a;
    *names = NULL;
    *n = 0;
    int rc = store_aspects_list(st, &a, &n_a, err);
    if (rc)
        return rc;
    char **v = xcalloc(n_a + 1, sizeof *v);
    for (size_t i = 0; i < n_a; i++)
        v[i] = xstrdup(a[i].name);
    store_aspects_free(a, n_a);
    *names = v;
    *n = (int)n_a;
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

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Index of KEY in the ascending array V of N, or -1. */
static long find_i64(const int64_t *v, size_t n, int64_t key) {
    const int64_t *p = bsearch(&key, v, n, sizeof *v, cmp_i64);
    return p ? (long)(p - v) : -1;
}

/* Everything one report needs, read once. */
typedef struct Snapshot {
    StoreAspect *aspects;
    size_t n_aspects;
    StoreAnnotator *ann;       /* name order */
    size_t n_ann;
    int64_t *ann_ids;          /* ascending ids ... */
    size_t *ann_pos;           /* ... and each one's index in ann */
    StoreImage *images;        /* id order */
    size_t n_images;
    int64_t *image_ids;        /* ascending */
    StoreRating *ratings;
    size_t n_ratings;
} Snapshot;

static void snapshot_deinit(Snapshot *s) {
    store_aspects_free(s->aspects, s->n_aspects);
    store_annotators_free(s->ann, s->n_ann);
    store_images_free(s->images, s->n_images);
    free(s->ann_ids);
    free(s->ann_pos);
    free(s->image_ids);
    free(s->ratings);
    memset(s, 0, sizeof *s);
}

typedef struct IdPos {
    int64_t id;
    size_t pos;
} IdPos;

static int cmp_idpos(const void *a, const void *b) {
    return cmp_i64(&((const IdPos *)a)->id, &((const IdPos *)b)->id);
}

static int snapshot_read(Store *st, Snapshot *s, Err *err) {
    memset(s, 0, sizeof *s);
    int rc;
    if ((rc = store_aspects_list(st, &s->aspects, &s->n_aspects, err)) ||
        (rc = store_annotators_list(st, &s->ann, &s->n_ann, err)) ||
        (rc = store_images_list(st, 0, &s->images, &s->n_images, err)) ||
        (rc = store_ratings_all(st, &s->ratings, &s->n_ratings, err))) {
        snapshot_deinit(s);
        return rc;
    }
    IdPos *ip = xcalloc(s->n_ann + 1, sizeof *ip);
    for (size_t i = 0; i < s->n_ann; i++)
        ip[i] = (IdPos){s->ann[i].id, i};
    qsort(ip, s->n_ann, sizeof *ip, cmp_idpos);
    s->ann_ids = xcalloc(s->n_ann + 1, sizeof *s->ann_ids);
    s->ann_pos = xcalloc(s->n_ann + 1, sizeof *s->ann_pos);
    for (size_t i = 0; i < s->n_ann; i++) {
        s->ann_ids[i] = ip[i].id;
        s->ann_pos[i] = ip[i].pos;
    }
    free(ip);
    s->image_ids = xcalloc(s->n_images + 1, sizeof *s->image_ids);
    for (size_t i = 0; i < s->n_images; i++)
        s->image_ids[i] = s->images[i].id;
    qsort(s->image_ids, s->n_images, sizeof *s->image_ids, cmp_i64); /* already id order */
    return 0;
}

/* The table of aspect position POS: rows = rated images in id order, columns = annotators
 * who rated this aspect, in name order. */
static AgreeTable *build_table(const Snapshot *s, size_t pos) {
    int64_t *items = xcalloc(s->n_ratings + 1, sizeof *items);
    char *used = xcalloc(s->n_ann + 1, 1);
    size_t n_items = 0;
    for (size_t i = 0; i < s->n_ratings; i++) {
        const StoreRating *r = &s->ratings[i];
        if ((size_t)r->aspect_pos != pos)
            continue;
        items[n_items++] = r->image_id;
        long a = find_i64(s->ann_ids, s->n_ann, r->annotator_id);
        ASSERT(a >= 0); /* foreign key */
        used[s->ann_pos[a]] = 1;
    }
    qsort(items, n_items, sizeof *items, cmp_i64);
    size_t u = 0;
    for (size_t i = 0; i < n_items; i++)
        if (u == 0 || items[u - 1] != items[i])
            items[u++] = items[i];
    n_items = u;
    int *col = xcalloc(s->n_ann + 1, sizeof *col);
    int n_cols = 0;
    for (size_t k = 0; k < s->n_ann; k++)
        col[k] = used[k] ? n_cols++ : -1;

    AgreeTable *t = agreement_table_new((int)n_items, n_cols);
    t->aspect = xstrdup(s->aspects[pos].name);
    t->rater_names = xcalloc((size_t)n_cols + 1, sizeof *t->rater_names);
    for (size_t k = 0; k < s->n_ann; k++)
        if (col[k] >= 0)
            t->rater_names[col[k]] = xstrdup(s->ann[k].name);
    t->item_labels = xcalloc(n_items + 1, sizeof *t->item_labels);
    for (size_t i = 0; i < n_items; i++) {
        t->item_ids[i] = items[i];
        long q = find_i64(s->image_ids, s->n_images, items[i]);
        ASSERT(q >= 0);
        t->item_labels[i] = xstrdup(s->images[q].path);
    }
    for (size_t i = 0; i < s->n_ratings; i++) {
        const StoreRating *r = &s->ratings[i];
        if ((size_t)r->aspect_pos != pos)
            continue;
        long row = find_i64(items, n_items, r->image_id);
        long a = find_i64(s->ann_ids, s->n_ann, r->annotator_id);
        *agreement_cell(t, (int)row, col[s->ann_pos[a]]) = r->value;
    }
    free(col);
    free(used);
    free(items);
    return t;
}

static int unknown_aspect(const Snapshot *s, const char *aspect, Err *err) {
    char list[160] = "";
    for (size_t i = 0; i < s->n_aspects; i++) {
        if (i)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, s->aspects[i].name, sizeof list - strlen(list) - 1);
    }
    return err_set(err, ERR_NOTFOUND, "no aspect named '%s' (aspects: %s)", aspect, list);
}

AgreeTable *store_agreement_table(Store *st, const char *aspect, Err *err) {
    AgreeReport *r = store_agreement_report(st, aspect, NULL, err);
    if (!r)
        return NULL;
    AgreeTable *t = r->tables[0];
    r->tables[0] = NULL;
    store_agreement_report_free(r);
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
    Snapshot s;
    int rc = snapshot_read(st, &s, err);
    read_end(st, began);
    if (rc)
        return NULL;
    AgreeReport *r = NULL;
    size_t first = 0, end = s.n_aspects;
    if (aspect) {
        while (first < s.n_aspects && strcmp(s.aspects[first].name, aspect) != 0)
            first++;
        if (first == s.n_aspects) {
            unknown_aspect(&s, aspect, err);
            goto out;
        }
        end = first + 1;
    }
    r = xcalloc(1, sizeof *r);
    r->tables = xcalloc(end - first + 1, sizeof *r->tables);
    r->stats = xcalloc(end - first + 1, sizeof *r->stats);
    for (size_t p = first; p < end; p++) {
        r->tables[r->n] = build_table(&s, p);
        r->stats[r->n] = agreement_compute(r->tables[r->n], opt);
        r->n++;
    }
out:
    snapshot_deinit(&s);
    return r;
}
