/* store_settings — settings, roles, output roots and the acting login. See store_settings.h.
 *
 * Plain reads and single-statement writes; no policy here (src/data/trust.c decides who may
 * write). Annotator rows made by a grant have the same shape as those ratings make.
 */
#include "store_settings.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "identity.h"

/* ---- settings ------------------------------------------------------------------------------ */

int store_setting_get(Store *st, const char *key, char **value, Err *err) {
    static const char sql[] = "SELECT value FROM settings WHERE key = ?";
    *value = NULL;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, key);
    int rc = store_step(st, s);
    if (rc == SQLITE_ROW)
        *value = store_col_text(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_err(st, err, "read setting");
    return 0;
}

int store_setting_set(Store *st, const char *key, const char *value, const char *set_by,
                      Err *err) {
    static const char sql[] =
        "INSERT INTO settings(key, value, set_by, set_at) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT(key) DO UPDATE SET value = ?2, set_by = ?3, set_at = ?4";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, key);
    store_bind_text(s, 2, value);
    store_bind_text(s, 3, set_by ? set_by : "");
    sqlite3_bind_double(s, 4, base_wall());
    return store_step_done(st, s, "save setting", err);
}

int store_blind(Store *st, int *on, Err *err) {
    char *v = NULL;
    *on = 0;
    int rc = store_setting_get(st, "blind", &v, err);
    if (rc)
        return rc;
    *on = v && strcmp(v, "on") == 0;
    free(v);
    return 0;
}

/* ---- roles --------------------------------------------------------------------------------- */

int store_annotator_role(Store *st, const char *name, char **role, Err *err) {
    static const char sql[] = "SELECT role FROM annotators WHERE name = ?";
    *role = NULL;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, name);
    int rc = store_step(st, s);
    if (rc == SQLITE_ROW)
        *role = store_col_text(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_err(st, err, "read annotator role");
    return 0;
}

int store_annotator_set_role(Store *st, const char *name, const char *role, Err *err) {
    static const char sql[] =
        "INSERT INTO annotators(name, created_at, role) VALUES (?1, ?2, ?3) "
        "ON CONFLICT(name) DO UPDATE SET role = ?3";
    ASSERT(strcmp(role, STORE_ROLE_ANNOTATOR) == 0 || strcmp(role, STORE_ROLE_REVIEWER) == 0);
    if (!name || !*name)
        return err_set(err, ERR_USAGE, "annotator name is empty");
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, name);
    sqlite3_bind_double(s, 2, base_wall());
    store_bind_text(s, 3, role);
    return store_step_done(st, s, "set annotator role", err);
}

static void role_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreAnnotatorRole *r = dst;
    r->name = store_col_text(s, 0);
    r->role = store_col_text(s, 1);
    r->n_ratings = sqlite3_column_int64(s, 2);
}

static void role_deinit(void *elem) {
    StoreAnnotatorRole *r = elem;
    free(r->name);
    free(r->role);
}

int store_annotator_roles(Store *st, StoreAnnotatorRole **out, int *n, Err *err) {
    static const char sql[] =
        "SELECT a.name, a.role, (SELECT count(*) FROM ratings r WHERE r.annotator_id = a.id) "
        "FROM annotators a ORDER BY a.name";
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    size_t len;
    int rc = store_read_list(st, s, sizeof **out, role_row, NULL, role_deinit, out, &len,
                             "list annotators", err);
    *n = (int)len;
    return rc;
}

void store_annotator_roles_free(StoreAnnotatorRole *v, int n) {
    store_free_list(v, n, sizeof *v, role_deinit);
}

/* ---- output roots ---------------------------------------------------------------------------- */

int store_output_root_add(Store *st, const char *path, const char *added_by, int *added,
                          Err *err) {
    static const char sql[] =
        "INSERT OR IGNORE INTO output_roots(path, added_by, added_at) VALUES (?, ?, ?)";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, path);
    store_bind_text(s, 2, added_by ? added_by : "");
    sqlite3_bind_double(s, 3, base_wall());
    int rc = store_step_done(st, s, "add output root", err);
    if (rc)
        return rc;
    if (added)
        *added = sqlite3_changes(st->db) > 0;
    return 0;
}

int store_output_root_remove(Store *st, const char *path, Err *err) {
    static const char sql[] = "DELETE FROM output_roots WHERE path = ?";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, path);
    int rc = store_step_done(st, s, "remove output root", err);
    if (rc)
        return rc;
    if (sqlite3_changes(st->db) == 0)
        return err_set(err, ERR_NOTFOUND, "%s is not an output root of %s (see 'easel config "
                       "output-root list')", path, store_path(st));
    return 0;
}

static void root_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreOutputRoot *r = dst;
    r->path = store_col_text(s, 0);
    r->added_by = store_col_text(s, 1);
    r->added_at = sqlite3_column_double(s, 2);
}

static void root_deinit(void *elem) {
    StoreOutputRoot *r = elem;
    free(r->path);
    free(r->added_by);
}

int store_output_roots(Store *st, StoreOutputRoot **out, int *n, Err *err) {
    static const char sql[] = "SELECT path, added_by, added_at FROM output_roots ORDER BY path";
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    size_t len;
    int rc = store_read_list(st, s, sizeof **out, root_row, NULL, root_deinit, out, &len,
                             "list output roots", err);
    *n = (int)len;
    return rc;
}

void store_output_roots_free(StoreOutputRoot *v, int n) {
    store_free_list(v, n, sizeof *v, root_deinit);
}

/* ---- the acting login -------------------------------------------------------------------- */

void store_set_actor(Store *st, const char *login) {
    free(st->actor);
    st->actor = login && *login ? xstrdup(login) : NULL;
}

const char *store_actor(const Store *st) { return st->actor ? st->actor : identity_login(); }
