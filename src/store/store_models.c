/* store_models — SQL of the models table. See store_models.h. */
#include "store_models.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

int store_model_add(Store *st, const char *kind, const char *name, const char *path,
                    const char *config, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "INSERT INTO models(kind, name, path, config, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, kind);
    store_bind_text(s, 2, name);
    store_bind_text(s, 3, path);
    store_bind_text(s, 4, config);
    sqlite3_bind_double(s, 5, base_wall());
    int rc = store_step(st, s);
    if (rc != SQLITE_DONE) {
        int code = store_err(st, err, "register model");
        sqlite3_reset(s);
        if (code == ERR_CONFLICT)
            return err_set(err, ERR_CONFLICT, "a model called '%s' is already registered; "
                           "pick another --name or remove it with 'easel models remove %s'",
                           name, name);
        return code;
    }
    sqlite3_reset(s);
    return 0;
}

static void read_row(sqlite3_stmt *s, StoreModel *m) {
    m->id = sqlite3_column_int64(s, 0);
    m->kind = store_col_text(s, 1);
    m->name = store_col_text(s, 2);
    m->path = store_col_text(s, 3);
    m->config = store_col_text(s, 4);
    m->created_at = sqlite3_column_double(s, 5);
}

static void model_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    read_row(s, dst);
}

int store_model_get(Store *st, const char *kind, const char *name, StoreModel *out, Err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = store_stmt(st,
        "SELECT id, kind, name, path, config, created_at FROM models WHERE kind=?1 AND name=?2",
        err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, kind);
    store_bind_text(s, 2, name);
    return store_read_one(st, s, model_row, NULL, out, "read model", err,
                          "no %s model called '%s' in %s; register it with 'easel models add "
                          "%s PATH --name %s'", kind, name, store_path(st), kind, name);
}

static void model_deinit(void *m) {
    store_model_deinit(m);
}

int store_model_list(Store *st, const char *kind, StoreModel **out, int *n, Err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = store_stmt(st,
        "SELECT id, kind, name, path, config, created_at FROM models "
        "WHERE ?1 IS NULL OR kind=?1 ORDER BY name", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, kind);
    size_t len;
    int rc = store_read_list(st, s, sizeof **out, model_row, NULL, model_deinit, out, &len,
                             "list models", err);
    *n = (int)len;
    return rc;
}

int store_model_remove(Store *st, const char *name, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "DELETE FROM models WHERE name=?1", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, name);
    int rc = store_step(st, s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_err(st, err, "remove model");
    if (sqlite3_changes(st->db) == 0)
        return err_set(err, ERR_NOTFOUND, "no model called '%s' in %s", name, store_path(st));
    return 0;
}

void store_model_deinit(StoreModel *m) {
    if (!m)
        return;
    free(m->kind);
    free(m->name);
    free(m->path);
    free(m->config);
    memset(m, 0, sizeof *m);
}

void store_model_list_free(StoreModel *v, int n) {
    store_free_list(v, n, sizeof *v, model_deinit);
}
