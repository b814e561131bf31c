/* store_ratings — set, add and read ratings. See store_ratings.h.
 *
 * Design: a value changes only through the UPSERT in store_rating_set; the schema's trigger
 * copies the replaced value into rating_history in the same statement, so an edit can never
 * lose the old value, whichever process makes it. store_rating_add is INSERT .. DO NOTHING
 * followed by a comparison: an import cannot change a value at all.
 * Aspect positions are computed densely in SQL (row_number over position, id) so they index
 * the array store_aspects_list returns.
 */
#include "store_ratings.h"
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static int check_value(double value, Err *err) {
    if (!isfinite(value) || value < STORE_RATING_MIN || value > STORE_RATING_MAX)
        return err_set(err, ERR_FORMAT, "rating %g is outside %g..%g", value, STORE_RATING_MIN,
                       STORE_RATING_MAX);
    return 0;
}

static void bind_seconds(sqlite3_stmt *s, int i, double seconds) {
    if (isfinite(seconds))
        sqlite3_bind_double(s, i, seconds);
    else
        sqlite3_bind_null(s, i);
}

/* SQL prepared with the key of one rating bound: ?1 image, ?2 annotator, ?3 aspect. NULL
 * (err set) when it does not prepare; store_read_one and store_read_list take that. */
static sqlite3_stmt *key_stmt(Store *st, const char *sql, int64_t image_id, int64_t annotator_id,
                              int64_t aspect_id, Err *err) {
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (s) {
        sqlite3_bind_int64(s, 1, image_id);
        sqlite3_bind_int64(s, 2, annotator_id);
        sqlite3_bind_int64(s, 3, aspect_id);
    }
    return s;
}

/* Check VALUE, then run SQL (an INSERT of one rating); *changed: a row was written. */
static int write_rating(Store *st, const char *sql, int64_t image_id, int64_t annotator_id,
                        int64_t aspect_id, double value, double seconds, const char *source,
                        int *changed, Err *err) {
    *changed = 0;
    int rc = check_value(value, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = key_stmt(st, sql, image_id, annotator_id, aspect_id, err);
    if (!s)
        return ERR_DB;
    double now = base_wall();
    sqlite3_bind_double(s, 4, value);
    bind_seconds(s, 5, seconds);
    store_bind_text(s, 6, source ? source : "");
    sqlite3_bind_double(s, 7, now);
    if ((rc = store_step_done(st, s, "write rating", err)))
        return rc;
    *changed = sqlite3_changes(st->db) > 0;
    return 0;
}

/* One rating row: ?1 image, ?2 annotator, ?3 aspect, ?4 value, ?5 seconds, ?6 source, ?7 now;
 * the callers add what a conflict with the current value does. */
#define RATING_INSERT                                                                          \
    "INSERT INTO ratings(image_id, annotator_id, aspect_id, value, seconds, source, created_at," \
    " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)"

int store_rating_set(Store *st, int64_t image_id, int64_t annotator_id, int64_t aspect_id,
                     double value, double seconds, const char *source, int *changed, Err *err) {
    int ch;
    int rc = write_rating(st,
                          RATING_INSERT
                          " ON CONFLICT(image_id, annotator_id, aspect_id) DO UPDATE SET"
                          " value = excluded.value, seconds = excluded.seconds,"
                          " source = excluded.source, updated_at = excluded.updated_at"
                          " WHERE value IS NOT excluded.value",
                          image_id, annotator_id, aspect_id, value, seconds, source, &ch, err);
    if (changed)
        *changed = ch;
    return rc;
}

int store_rating_add(Store *st, int64_t image_id, int64_t annotator_id, int64_t aspect_id,
                     double value, double seconds, const char *source, int *added, Err *err) {
    if (added)
        *added = 0;
    int ch;
    int rc = write_rating(st,
                          RATING_INSERT
                          " ON CONFLICT(image_id, annotator_id, aspect_id) DO NOTHING",
                          image_id, annotator_id, aspect_id, value, seconds, source, &ch, err);
    if (rc)
        return rc;
    if (ch) {
        if (added)
            *added = 1;
        return 0;
    }
    double old;
    if ((rc = store_rating_get(st, image_id, annotator_id, aspect_id, &old, err)))
        return rc;
    if (old != value)
        return err_set(err, ERR_CONFLICT,
                       "this annotator already rated it %g, not %g; an import never changes a "
                       "rating (edit ratings in the TUI, which keeps their history)",
                       old, value);
    return 0;
}

int store_rating_get(Store *st, int64_t image_id, int64_t annotator_id, int64_t aspect_id,
                     double *value, Err *err) {
    sqlite3_stmt *s = key_stmt(st,
                               "SELECT value FROM ratings WHERE image_id = ?1"
                               " AND annotator_id = ?2 AND aspect_id = ?3",
                               image_id, annotator_id, aspect_id, err);
    return store_read_one(st, s, store_row_double, NULL, value, "read rating", err, "not rated");
}

#define RATING_SELECT                                                                          \
    "WITH ap AS (SELECT id, row_number() OVER (ORDER BY position, id) - 1 AS pos"              \
    " FROM aspects)"                                                                           \
    " SELECT r.image_id, coalesce(i.prompt_id, 0), r.annotator_id, r.aspect_id, ap.pos,"       \
    " r.value, r.seconds, r.updated_at"                                                        \
    " FROM ratings r JOIN images i ON i.id = r.image_id JOIN ap ON ap.id = r.aspect_id "

static void rating_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreRating *r = dst;
    r->image_id = sqlite3_column_int64(s, 0);
    r->prompt_id = sqlite3_column_int64(s, 1);
    r->annotator_id = sqlite3_column_int64(s, 2);
    r->aspect_id = sqlite3_column_int64(s, 3);
    r->aspect_pos = sqlite3_column_int(s, 4);
    r->value = sqlite3_column_double(s, 5);
    r->seconds = sqlite3_column_type(s, 6) == SQLITE_NULL ? NAN : sqlite3_column_double(s, 6);
    r->updated_at = sqlite3_column_double(s, 7);
}

static int read_ratings(Store *st, sqlite3_stmt *s, StoreRating **out, size_t *n, Err *err) {
    return store_read_list(st, s, sizeof **out, rating_row, NULL, NULL, out, n, "read ratings",
                           err);
}

int store_ratings_of_image(Store *st, int64_t image_id, StoreRating **out, size_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(
        st, RATING_SELECT "WHERE r.image_id = ?1 ORDER BY r.annotator_id, ap.pos", err);
    if (!s) {
        *out = NULL;
        *n = 0;
        return ERR_DB;
    }
    sqlite3_bind_int64(s, 1, image_id);
    return read_ratings(st, s, out, n, err);
}

int store_ratings_all(Store *st, StoreRating **out, size_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
                                 RATING_SELECT "WHERE i.retired = 0"
                                               " ORDER BY coalesce(i.prompt_id, 0), r.image_id,"
                                               " r.annotator_id, ap.pos",
                                 err);
    if (!s) {
        *out = NULL;
        *n = 0;
        return ERR_DB;
    }
    return read_ratings(st, s, out, n, err);
}

static void rating_event_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreRatingEvent *e = dst;
    e->value = sqlite3_column_double(s, 0);
    e->seconds = sqlite3_column_type(s, 1) == SQLITE_NULL ? NAN : sqlite3_column_double(s, 1);
    e->source = store_col_text(s, 2);
    e->set_at = sqlite3_column_double(s, 3);
}

static void rating_event_deinit(void *e) {
    free(((StoreRatingEvent *)e)->source);
}

int store_rating_history(Store *st, int64_t image_id, int64_t annotator_id, int64_t aspect_id,
                         StoreRatingEvent **out, size_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = key_stmt(
        st,
        "SELECT h.value, h.seconds, h.source, h.set_at, 0 AS cur, h.id FROM rating_history h"
        " JOIN ratings r ON r.id = h.rating_id"
        " WHERE r.image_id = ?1 AND r.annotator_id = ?2 AND r.aspect_id = ?3"
        " UNION ALL SELECT value, seconds, source, updated_at, 1, 0 FROM ratings"
        " WHERE image_id = ?1 AND annotator_id = ?2 AND aspect_id = ?3"
        " ORDER BY cur, 6",
        image_id, annotator_id, aspect_id, err);
    return store_read_list(st, s, sizeof **out, rating_event_row, NULL, rating_event_deinit, out, n,
                           "read rating history", err);
}

void store_rating_events_free(StoreRatingEvent *ev, size_t n) {
    store_free_list(ev, n, sizeof *ev, rating_event_deinit);
}
