/* store_run_images — a tuning run's sample images per step. See store_run_images.h. */
#include "store_run_images.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

int store_run_image_add(Store *st, int64_t run_id, int64_t step, int64_t seed, const char *label,
                        const char *path, Err *err) {
    if (!path || !*path)
        return err_set(err, ERR_USAGE, "run image of run #%lld step %lld: empty path",
                       (long long)run_id, (long long)step);
    if (step < 0)
        return err_set(err, ERR_USAGE, "run image %s: step %lld is negative", path,
                       (long long)step);
    sqlite3_stmt *s = store_stmt(st,
        "INSERT INTO run_images(run_id, step, seed, label, path, created)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(run_id, step, seed, label) DO UPDATE SET"
        " path=excluded.path, created=excluded.created", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_int64(s, 2, step);
    sqlite3_bind_int64(s, 3, seed);
    store_bind_text(s, 4, label ? label : "");
    char *stored = store_path_to_stored(st, path);
    store_bind_text(s, 5, stored);
    free(stored);
    sqlite3_bind_double(s, 6, base_wall());
    int rc = store_step_done(st, s, "record run image", err);
    if (rc == ERR_CONFLICT)
        err_set(err, ERR_CONFLICT, "run image %s: there is no run #%lld in %s", path,
                (long long)run_id, store_path(st));
    return rc;
}

static void run_image_row(sqlite3_stmt *s, void *dst, void *ctx) {
    const Store *st = ctx;
    StoreRunImage *r = dst;
    r->id = sqlite3_column_int64(s, 0);
    r->run_id = sqlite3_column_int64(s, 1);
    r->step = sqlite3_column_int64(s, 2);
    r->seed = sqlite3_column_int64(s, 3);
    r->label = store_col_text(s, 4);
    if (!r->label)
        r->label = xstrdup("");
    char *stored = store_col_text(s, 5);
    r->path = store_path_resolve(st, stored ? stored : "");
    free(stored);
    r->created = sqlite3_column_double(s, 6);
}

static void run_image_deinit(void *elem) {
    StoreRunImage *r = elem;
    free(r->label);
    free(r->path);
}

int store_run_images_list(Store *st, int64_t run_id, StoreRunImage **out, size_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT id, run_id, step, seed, label, path, created FROM run_images WHERE run_id=?1"
        " ORDER BY step DESC, label, seed, id", err);
    if (s)
        sqlite3_bind_int64(s, 1, run_id);
    return store_read_list(st, s, sizeof **out, run_image_row, st, run_image_deinit, out, n,
                           "list run images", err);
}

int store_run_images_truncate(Store *st, int64_t run_id, int64_t step, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "DELETE FROM run_images WHERE run_id=?1 AND step > ?2", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_int64(s, 2, step);
    return store_step_done(st, s, "truncate run images", err);
}

void store_run_images_free(StoreRunImage *v, size_t n) {
    store_free_list(v, (long long)n, sizeof *v, run_image_deinit);
}
