/* store_runs — runs, metrics, checkpoints, scores. See store_runs.h.
 *
 * Every writer is one short transaction so readers in other processes (WAL) see complete
 * batches: a step's metrics appear together or not at all.
 */
#include "store_runs.h"
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"

/* ---- runs ---- */

#define RUN_COLS "id, name, kind, config, state, coalesce(job_id, 0), output, created_at, " \
                 "updated_at"

static void run_from_row(sqlite3_stmt *s, StoreRun *r) {
    r->id = sqlite3_column_int64(s, 0);
    r->name = store_col_text(s, 1);
    r->kind = store_col_text(s, 2);
    r->config = store_col_text(s, 3);
    r->state = store_col_text(s, 4);
    r->job_id = sqlite3_column_int64(s, 5);
    r->output = store_col_text(s, 6);
    r->created_at = sqlite3_column_double(s, 7);
    r->updated_at = sqlite3_column_double(s, 8);
}

int store_run_create(Store *st, const char *name, const char *kind, const char *config,
                     int64_t job_id, const char *output, int64_t *id, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "INSERT INTO runs(name, kind, config, state, job_id, output, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?6)", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, name);
    store_bind_text(s, 2, kind);
    store_bind_text(s, 3, config ? config : "{}");
    if (job_id > 0)
        sqlite3_bind_int64(s, 4, job_id);
    else
        sqlite3_bind_null(s, 4);
    store_bind_text(s, 5, output);
    sqlite3_bind_double(s, 6, base_wall());
    int rc = 0;
    if (store_step(st, s) != SQLITE_DONE) {
        rc = store_err(st, err, "create run");
        if (rc == ERR_CONFLICT)
            err_set(err, ERR_CONFLICT, "a run named '%s' exists already; pick another name",
                    name);
    } else if (id) {
        *id = sqlite3_last_insert_rowid(sqlite3_db_handle(s));
    }
    sqlite3_reset(s);
    return rc;
}

char *store_run_unique_name(Store *st, const char *prefix) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    char *base = xasprintf("%s-%s", prefix, stamp);
    char *name = xstrdup(base);
    for (int k = 2;; k++) {
        StoreRun r = {0};
        int rc = store_run_by_name(st, name, &r, NULL);
        store_run_deinit(&r);
        if (rc != 0)
            break;
        free(name);
        name = xasprintf("%s-%d", base, k);
    }
    free(base);
    return name;
}

static void run_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    run_from_row(s, dst);
}

static int run_one(Store *st, sqlite3_stmt *s, StoreRun *out, const char *what, Err *err) {
    return store_read_one(st, s, run_row, NULL, out, "read run", err,
                          "no run %s in %s (see 'easel runs list')", what, store_path(st));
}

int store_run_get(Store *st, int64_t id, StoreRun *out, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "SELECT " RUN_COLS " FROM runs WHERE id=?1", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    char what[32];
    snprintf(what, sizeof what, "#%lld", (long long)id);
    return run_one(st, s, out, what, err);
}

int store_run_by_name(Store *st, const char *name, StoreRun *out, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "SELECT " RUN_COLS " FROM runs WHERE name=?1", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, name);
    char what[160];
    snprintf(what, sizeof what, "'%s'", name);
    return run_one(st, s, out, what, err);
}

int store_run_find(Store *st, const char *name_or_id, StoreRun *out, Err *err) {
    int rc = store_run_by_name(st, name_or_id, out, NULL);
    if (rc != ERR_NOTFOUND)
        return rc ? store_run_by_name(st, name_or_id, out, err) : 0;
    const char *p = name_or_id[0] == '#' ? name_or_id + 1 : name_or_id;
    char *end = NULL;
    long long id = strtoll(p, &end, 10);
    if (*p && end && *end == '\0' && id > 0)
        return store_run_get(st, id, out, err);
    return store_run_by_name(st, name_or_id, out, err);
}

static void run_deinit(void *r) {
    store_run_deinit(r);
}

int store_runs_list(Store *st, const char *kind, StoreRun **out, size_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT " RUN_COLS " FROM runs WHERE ?1 IS NULL OR kind=?1 ORDER BY id DESC", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, kind);
    return store_read_list(st, s, sizeof **out, run_row, NULL, run_deinit, out, n, "list runs",
                           err);
}

static int exec_run_update(Store *st, const char *sql, int64_t id, const char *text,
                           const char *what, Err *err) {
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    store_bind_text(s, 2, text);
    sqlite3_bind_double(s, 3, base_wall());
    int rc = 0;
    if (store_step(st, s) != SQLITE_DONE)
        rc = store_err(st, err, what);
    else if (sqlite3_changes(sqlite3_db_handle(s)) == 0)
        rc = err_set(err, ERR_NOTFOUND, "no run #%lld", (long long)id);
    sqlite3_reset(s);
    return rc;
}

int store_run_set_state(Store *st, int64_t id, const char *state, Err *err) {
    return exec_run_update(st, "UPDATE runs SET state=?2, updated_at=?3 WHERE id=?1", id, state,
                           "set run state", err);
}

int store_run_set_config(Store *st, int64_t id, const char *config, Err *err) {
    return exec_run_update(st, "UPDATE runs SET config=?2, updated_at=?3 WHERE id=?1", id,
                           config, "set run config", err);
}

void store_run_deinit(StoreRun *r) {
    if (!r)
        return;
    free(r->name);
    free(r->kind);
    free(r->config);
    free(r->state);
    free(r->output);
    memset(r, 0, sizeof *r);
}

void store_runs_free(StoreRun *r, size_t n) {
    store_free_list(r, n, sizeof *r, run_deinit);
}

/* ---- metrics ---- */

int store_metrics_add(Store *st, int64_t run_id, const StoreMetric *m, size_t n, Err *err) {
    int rc = store_begin(st, err);
    if (rc)
        return rc;
    double now = base_wall();
    sqlite3_stmt *s = store_stmt(st,
        "INSERT OR REPLACE INTO metrics(run_id, split, name, step, epoch, value, t)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", err);
    if (!s) {
        rc = ERR_DB;
        goto out_rollback;
    }
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_text(s, 2, m[i].split, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 3, m[i].name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 4, m[i].step);
        sqlite3_bind_double(s, 5, m[i].epoch);
        sqlite3_bind_double(s, 6, m[i].value);
        sqlite3_bind_double(s, 7, m[i].t > 0 ? m[i].t : now);
        if ((rc = store_step_done(st, s, "write metric", err)))
            goto out_rollback;
    }
    sqlite3_reset(s);
    s = store_stmt(st, "UPDATE runs SET updated_at=?2 WHERE id=?1", err);
    if (!s) {
        rc = ERR_DB;
        goto out_rollback;
    }
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_double(s, 2, now);
    if ((rc = store_step_done(st, s, "touch run", err)))
        goto out_rollback;
    return store_commit(st, err);
out_rollback:
    store_rollback(st);
    return rc;
}

static void metric_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreMetric *m = dst;
    const char *sp = (const char *)sqlite3_column_text(s, 0);
    const char *nm = (const char *)sqlite3_column_text(s, 1);
    base_strlcpy(m->split, sp ? sp : "", sizeof m->split);
    base_strlcpy(m->name, nm ? nm : "", sizeof m->name);
    m->step = sqlite3_column_int64(s, 2);
    m->epoch = sqlite3_column_double(s, 3);
    m->value = sqlite3_column_double(s, 4);
    m->t = sqlite3_column_double(s, 5);
}

int store_metrics_list(Store *st, int64_t run_id, double after_t, StoreMetric **out, size_t *n,
                       Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT split, name, step, coalesce(epoch, 0), value, t FROM metrics"
        " WHERE run_id=?1 AND t > ?2 ORDER BY split, name, step", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_double(s, 2, after_t);
    return store_read_list(st, s, sizeof **out, metric_row, NULL, NULL, out, n, "read metrics",
                           err);
}

int store_metric_last(Store *st, int64_t run_id, const char *split, const char *name,
                      double *value, int64_t *step, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT value, step FROM metrics WHERE run_id=?1 AND split=?2 AND name=?3"
        " ORDER BY step DESC LIMIT 1", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, run_id);
    store_bind_text(s, 2, split);
    store_bind_text(s, 3, name);
    int rc = store_step(st, s);
    if (rc == SQLITE_ROW) {
        if (value)
            *value = sqlite3_column_double(s, 0);
        if (step)
            *step = sqlite3_column_int64(s, 1);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = ERR_NOTFOUND;
    } else {
        rc = store_err(st, err, "read metric");
    }
    sqlite3_reset(s);
    return rc;
}

int store_metrics_truncate(Store *st, int64_t run_id, int64_t step, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "DELETE FROM metrics WHERE run_id=?1 AND step > ?2", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_int64(s, 2, step);
    return store_step_done(st, s, "truncate metrics", err);
}

/* ---- checkpoints ---- */

int store_checkpoint_put(Store *st, int64_t run_id, const char *name, const char *path,
                         int64_t step, double epoch, const char *metrics_json, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "INSERT INTO checkpoints(run_id, name, path, step, epoch, metrics, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(run_id, name) DO UPDATE SET"
        " path=excluded.path, step=excluded.step, epoch=excluded.epoch,"
        " metrics=excluded.metrics, created_at=excluded.created_at", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, run_id);
    store_bind_text(s, 2, name);
    store_bind_text(s, 3, path);
    sqlite3_bind_int64(s, 4, step);
    sqlite3_bind_double(s, 5, epoch);
    store_bind_text(s, 6, metrics_json);
    sqlite3_bind_double(s, 7, base_wall());
    return store_step_done(st, s, "record checkpoint", err);
}

int store_checkpoint_delete(Store *st, int64_t run_id, const char *name, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "DELETE FROM checkpoints WHERE run_id=?1 AND name=?2", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, run_id);
    store_bind_text(s, 2, name);
    return store_step_done(st, s, "delete checkpoint", err);
}

static void checkpoint_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreCheckpoint *c = dst;
    c->id = sqlite3_column_int64(s, 0);
    c->run_id = sqlite3_column_int64(s, 1);
    c->name = store_col_text(s, 2);
    c->path = store_col_text(s, 3);
    c->step = sqlite3_column_int64(s, 4);
    c->epoch = sqlite3_column_double(s, 5);
    c->metrics = store_col_text(s, 6);
    c->created_at = sqlite3_column_double(s, 7);
}

static void checkpoint_deinit(void *elem) {
    StoreCheckpoint *c = elem;
    free(c->name);
    free(c->path);
    free(c->metrics);
}

int store_checkpoints_list(Store *st, int64_t run_id, StoreCheckpoint **out, size_t *n,
                           Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT id, run_id, name, path, coalesce(step, 0), coalesce(epoch, 0), metrics,"
        " created_at FROM checkpoints WHERE run_id=?1 ORDER BY created_at, id", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, run_id);
    return store_read_list(st, s, sizeof **out, checkpoint_row, NULL, checkpoint_deinit, out, n,
                           "list checkpoints", err);
}

void store_checkpoints_free(StoreCheckpoint *c, size_t n) {
    store_free_list(c, n, sizeof *c, checkpoint_deinit);
}

/* ---- scores ---- */

int store_scores_put(Store *st, const char *checkpoint, const StoreScore *v, size_t n,
                     Err *err) {
    int rc = store_begin(st, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = store_stmt(st,
        "INSERT OR REPLACE INTO scores(checkpoint, image_id, head, value, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5)", err);
    if (!s) {
        rc = ERR_DB;
        goto out_rollback;
    }
    double now = base_wall();
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(s);
        store_bind_text(s, 1, checkpoint);
        sqlite3_bind_int64(s, 2, v[i].image_id);
        sqlite3_bind_text(s, 3, v[i].head, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(s, 4, v[i].value);
        sqlite3_bind_double(s, 5, now);
        if ((rc = store_step_done(st, s, "write score", err)))
            goto out_rollback;
    }
    sqlite3_reset(s);
    return store_commit(st, err);
out_rollback:
    store_rollback(st);
    return rc;
}

static void score_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreScore *sc = dst;
    sc->image_id = sqlite3_column_int64(s, 0);
    const char *h = (const char *)sqlite3_column_text(s, 1);
    base_strlcpy(sc->head, h ? h : "", sizeof sc->head);
    sc->value = sqlite3_column_double(s, 2);
}

int store_scores_list(Store *st, const char *checkpoint, int64_t image_id, StoreScore **out,
                      size_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT image_id, head, value FROM scores WHERE checkpoint=?1"
        " AND (?2 = 0 OR image_id=?2) ORDER BY image_id, head", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, checkpoint);
    sqlite3_bind_int64(s, 2, image_id);
    return store_read_list(st, s, sizeof **out, score_row, NULL, NULL, out, n, "list scores", err);
}
