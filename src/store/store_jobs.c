/* store_jobs — jobs, job_deps and job_log of schema v1. See store_jobs.h for the state
 * machine.
 *
 * Design: every state change is one statement guarded by the state it expects
 * (`WHERE id = ? AND state = 'queued'`), inside BEGIN IMMEDIATE when it reads first, so
 * concurrent processes cannot both move one job. Times are wall-clock seconds (base_wall)
 * because other processes and hosts compare them.
 */
#include "store_jobs.h"
#include "store_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "identity.h"

static const char *const state_names[JOB_STATE_COUNT] = {
    "queued", "running", "succeeded", "failed", "cancelled", "interrupted",
};

const char *store_job_state_name(JobState s) {
    ASSERT(s >= 0 && s < JOB_STATE_COUNT);
    return state_names[s];
}

int store_job_state_parse(const char *s) {
    for (int i = 0; i < JOB_STATE_COUNT; i++)
        if (s && strcmp(s, state_names[i]) == 0)
            return i;
    return -1;
}

void store_job_row_deinit(JobRow *r) {
    if (!r)
        return;
    free(r->kind);
    free(r->params);
    free(r->unit);
    free(r->gpus);
    free(r->worker);
    free(r->host);
    free(r->checkpoint);
    free(r->message);
    free(r->deps);
    free(r->waiting);
    free(r->queued_by);
    memset(r, 0, sizeof *r);
}

static void job_row_deinit(void *r) {
    store_job_row_deinit(r);
}

void store_job_rows_free(JobRow *rows, int n) {
    store_free_list(rows, n, sizeof *rows, job_row_deinit);
}

/* ---- reading rows ------------------------------------------------------------------------ */

#define JOB_COLS                                                                            \
    "id, kind, params, state, priority, done, total, rate, unit, gpus_wanted, gpus, worker, " \
    "pid, host, heartbeat_at, cancel_requested, checkpoint, retry_of, message, created_at, "  \
    "started_at, finished_at, queued_by, queued_uid, resume_done"

static double col_real(sqlite3_stmt *s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_NULL ? 0 : sqlite3_column_double(s, i);
}

static void row_from_stmt(sqlite3_stmt *s, JobRow *r) {
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(s, 0);
    r->kind = store_col_text(s, 1);
    r->params = store_col_text(s, 2);
    char *state = store_col_text(s, 3);
    int st = store_job_state_parse(state);
    free(state);
    r->state = st < 0 ? JOB_STATE_FAILED : (JobState)st;
    r->priority = sqlite3_column_int(s, 4);
    r->done = col_real(s, 5);
    r->total = col_real(s, 6);
    r->rate = col_real(s, 7);
    r->unit = store_col_text(s, 8);
    if (!r->unit)
        r->unit = xstrdup("");
    r->gpus_wanted = sqlite3_column_int(s, 9);
    r->gpus = store_col_text(s, 10);
    r->worker = store_col_text(s, 11);
    r->pid = sqlite3_column_int64(s, 12);
    r->host = store_col_text(s, 13);
    r->heartbeat_at = col_real(s, 14);
    r->cancel_requested = sqlite3_column_int(s, 15);
    r->checkpoint = store_col_text(s, 16);
    r->retry_of = sqlite3_column_int64(s, 17);
    r->message = store_col_text(s, 18);
    r->created_at = col_real(s, 19);
    r->started_at = col_real(s, 20);
    r->finished_at = col_real(s, 21);
    r->queued_by = store_col_text(s, 22);
    if (!r->queued_by)
        r->queued_by = xstrdup("");
    r->queued_uid = sqlite3_column_type(s, 23) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 23);
    r->resume_done = col_real(s, 24);
    r->eta = -1;
    if (r->state == JOB_STATE_RUNNING && r->rate > 0 && r->total > 0 && r->done <= r->total)
        r->eta = (r->total - r->done) / r->rate;
}

/* Note dependency DEP in state STATE of R: its list, and R->waiting while R is queued. */
static void add_dep(JobRow *r, int64_t dep, const char *state) {
    r->deps = xrealloc(r->deps, sizeof *r->deps * (size_t)(r->n_deps + 1));
    r->deps[r->n_deps++] = dep;
    if (r->state != JOB_STATE_QUEUED || !state || strcmp(state, "succeeded") == 0)
        return;
    char *w = xasprintf("%s%s#%lld (%s)", r->waiting ? r->waiting : "", r->waiting ? ", " : "",
                        (long long)dep, state);
    free(r->waiting);
    r->waiting = w;
}

static int read_deps(Store *st, JobRow *r, Err *err) {
    static const char sql[] = "SELECT d.depends_on, j.state FROM job_deps d "
                              "LEFT JOIN jobs j ON j.id = d.depends_on WHERE d.job_id = ? "
                              "ORDER BY 1";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, r->id);
    int rc;
    while ((rc = store_step(st, s)) == SQLITE_ROW)
        add_dep(r, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1));
    if (rc != SQLITE_DONE)
        return store_err(st, err, "read job dependencies");
    return 0;
}

/* Step SQL (one parameter: the job ID) to the job's row: 0 with *S on it (read, then reset),
 * or ERR_NOTFOUND naming the job, or the store's error (WHAT: the context). */
static int job_row(Store *st, const char *sql, int64_t id, const char *what, sqlite3_stmt **s,
                   Err *err) {
    if (!(*s = store_stmt(st, sql, err)))
        return ERR_DB;
    sqlite3_bind_int64(*s, 1, id);
    int rc = store_step_row(st, *s, what, err);
    if (rc == ERR_NOTFOUND)
        return err_set(err, ERR_NOTFOUND, "no job #%lld in %s (see 'easel jobs list')",
                       (long long)id, store_path(st));
    return rc;
}

int store_job_get(Store *st, int64_t id, JobRow *out, Err *err) {
    static const char sql[] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?";
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s;
    int rc = job_row(st, sql, id, "read job", &s, err);
    if (rc)
        return rc;
    row_from_stmt(s, out);
    sqlite3_reset(s);
    if ((rc = read_deps(st, out, err))) {
        store_job_row_deinit(out);
        return rc;
    }
    return 0;
}

/* Dependencies of ROWS (sorted by id, descending) in one query, not one per row: the TUI
 * lists hundreds of jobs twice a second. */
static int read_all_deps(Store *st, JobRow *rows, int n, Err *err) {
    static const char sql[] =
        "SELECT d.job_id, d.depends_on, j.state FROM job_deps d "
        "LEFT JOIN jobs j ON j.id = d.depends_on WHERE d.job_id BETWEEN ? AND ? "
        "ORDER BY d.job_id, d.depends_on";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, rows[n - 1].id);
    sqlite3_bind_int64(s, 2, rows[0].id);
    int rc;
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        int lo = 0, hi = n - 1; /* binary search in descending ids */
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (rows[mid].id > id)
                lo = mid + 1;
            else
                hi = mid;
        }
        JobRow *r = &rows[lo];
        if (r->id != id)
            continue; /* filtered out of the list */
        add_dep(r, sqlite3_column_int64(s, 1), (const char *)sqlite3_column_text(s, 2));
    }
    if (rc != SQLITE_DONE)
        return store_err(st, err, "read job dependencies");
    return 0;
}

int store_jobs_list(Store *st, const JobFilter *f, JobRow **rows, int *n, Err *err) {
    static const char sql[] = "SELECT " JOB_COLS " FROM jobs ORDER BY id DESC";
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    int rc, cap = 0;
    JobRow *out = NULL;
    int count = 0;
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        JobRow r;
        row_from_stmt(s, &r);
        if (f && f->states && !(f->states & (1u << r.state))) {
            store_job_row_deinit(&r);
            continue;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            out = xrealloc(out, sizeof *out * (size_t)cap);
        }
        out[count++] = r;
        if (f && f->limit > 0 && count >= f->limit)
            break;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        store_job_rows_free(out, count);
        return store_err(st, err, "list jobs");
    }
    if (count && (rc = read_all_deps(st, out, count, err))) {
        store_job_rows_free(out, count);
        return rc;
    }
    *rows = out;
    *n = count;
    return 0;
}

int store_jobs_count(Store *st, int counts[JOB_STATE_COUNT], Err *err) {
    static const char sql[] = "SELECT state, count(*) FROM jobs GROUP BY state";
    memset(counts, 0, sizeof(int) * JOB_STATE_COUNT);
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    int rc;
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        int i = store_job_state_parse((const char *)sqlite3_column_text(s, 0));
        if (i >= 0)
            counts[i] = sqlite3_column_int(s, 1);
    }
    if (rc != SQLITE_DONE)
        return store_err(st, err, "count jobs");
    return 0;
}

/* ---- adding ------------------------------------------------------------------------------- */

static int job_exists(Store *st, int64_t id, Err *err) {
    static const char sql[] = "SELECT 1 FROM jobs WHERE id = ?";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    int rc = store_step(st, s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return store_err(st, err, "look up job");
}

static int insert_job(Store *st, const JobNew *j, int64_t *id, Err *err) {
    static const char sql_job[] =
        "INSERT INTO jobs(kind, params, priority, gpus_wanted, retry_of, created_at, queued_by,"
        " queued_uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    static const char sql_dep[] =
        "INSERT OR IGNORE INTO job_deps(job_id, depends_on) VALUES (?, ?)";
    for (int i = 0; i < j->n_deps; i++) {
        int rc = job_exists(st, j->deps[i], err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return err_set(err, ERR_NOTFOUND,
                           "dependency: no job #%lld (see 'easel jobs list')",
                           (long long)j->deps[i]);
    }
    sqlite3_stmt *s = store_stmt(st, sql_job, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, j->kind);
    store_bind_text(s, 2, j->params ? j->params : "{}");
    sqlite3_bind_int(s, 3, j->priority);
    sqlite3_bind_int(s, 4, j->gpus_wanted);
    if (j->retry_of)
        sqlite3_bind_int64(s, 5, j->retry_of);
    else
        sqlite3_bind_null(s, 5);
    sqlite3_bind_double(s, 6, base_wall());
    if (j->queued_by) {
        store_bind_text(s, 7, j->queued_by);
        if (j->queued_uid >= 0)
            sqlite3_bind_int64(s, 8, j->queued_uid);
        else
            sqlite3_bind_null(s, 8);
    } else {
        store_bind_text(s, 7, identity_login());
        sqlite3_bind_int64(s, 8, (int64_t)getuid());
    }
    int rc = store_step_done(st, s, "add job", err);
    if (rc)
        return rc;
    *id = sqlite3_last_insert_rowid(st->db);
    for (int i = 0; i < j->n_deps; i++) {
        if (j->deps[i] == *id)
            continue;
        if (!(s = store_stmt(st, sql_dep, err)))
            return ERR_DB;
        sqlite3_bind_int64(s, 1, *id);
        sqlite3_bind_int64(s, 2, j->deps[i]);
        if ((rc = store_step_done(st, s, "add job dependency", err)))
            return rc;
    }
    return 0;
}

int store_job_add(Store *st, const JobNew *j, int64_t *id, Err *err) {
    int rc = store_begin(st, err);
    if (rc)
        return rc;
    if ((rc = insert_job(st, j, id, err))) {
        store_rollback(st);
        return rc;
    }
    return store_commit(st, err);
}

/* ---- log ---------------------------------------------------------------------------------- */

int store_job_log_append(Store *st, int64_t id, const char *line, Err *err) {
    static const char sql[] = "INSERT INTO job_log(job_id, t, line) VALUES (?, ?, ?)";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_double(s, 2, base_wall());
    store_bind_text(s, 3, line);
    return store_step_done(st, s, "append job log", err);
}

static void log_line_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    JobLogLine *l = dst;
    l->seq = sqlite3_column_int64(s, 0);
    l->t = sqlite3_column_double(s, 1);
    l->line = store_col_text(s, 2);
}

static void log_line_deinit(void *l) {
    free(((JobLogLine *)l)->line);
}

int store_job_log_read(Store *st, int64_t id, int64_t after, int tail, JobLogLine **lines,
                       int *n, Err *err) {
    static const char sql_all[] =
        "SELECT id, t, line FROM job_log WHERE job_id = ? AND id > ? ORDER BY id";
    static const char sql_tail[] =
        "SELECT id, t, line FROM (SELECT id, t, line FROM job_log WHERE job_id = ? AND id > ? "
        "ORDER BY id DESC LIMIT ?) ORDER BY id";
    *lines = NULL;
    *n = 0;
    sqlite3_stmt *s = store_stmt(st, tail > 0 ? sql_tail : sql_all, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, after);
    if (tail > 0)
        sqlite3_bind_int(s, 3, tail);
    size_t len;
    int rc = store_read_list(st, s, sizeof **lines, log_line_row, NULL, log_line_deinit, lines,
                             &len, "read job log", err);
    *n = (int)len;
    return rc;
}

void store_job_log_free(JobLogLine *lines, int n) {
    store_free_list(lines, n, sizeof *lines, log_line_deinit);
}

/* ---- user actions ------------------------------------------------------------------------- */

static int get_state(Store *st, int64_t id, JobState *state, Err *err) {
    static const char sql[] = "SELECT state FROM jobs WHERE id = ?";
    sqlite3_stmt *s;
    int rc = job_row(st, sql, id, "read job state", &s, err);
    if (rc)
        return rc;
    *state = (JobState)store_job_state_parse((const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    return 0;
}

static int exec_id(Store *st, const char *sql, int64_t id, const char *context, Err *err) {
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    if (store_step(st, s) != SQLITE_DONE)
        return store_err(st, err, context);
    return 0;
}

int store_job_cancel(Store *st, int64_t id, JobState *now_state, Err *err) {
    static const char sql_queued[] =
        "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?2, "
        "message = 'cancelled before it started' WHERE id = ?1 AND state = 'queued'";
    static const char sql_interrupted[] =
        "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?2, "
        "message = 'cancelled while interrupted' WHERE id = ?1 AND state = 'interrupted'";
    static const char sql_running[] =
        "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'";
    JobState s0;
    int rc = store_begin(st, err);
    if (rc)
        return rc;
    if ((rc = get_state(st, id, &s0, err)))
        goto out_rollback;
    if (s0 == JOB_STATE_QUEUED || s0 == JOB_STATE_INTERRUPTED) {
        sqlite3_stmt *s = store_stmt(st, s0 == JOB_STATE_QUEUED ? sql_queued : sql_interrupted,
                                     err);
        if (!s) {
            rc = ERR_DB;
            goto out_rollback;
        }
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_double(s, 2, base_wall());
        if ((rc = store_step_done(st, s, "cancel job", err)))
            goto out_rollback;
        s0 = JOB_STATE_CANCELLED;
    } else if (s0 == JOB_STATE_RUNNING) {
        if ((rc = exec_id(st, sql_running, id, "cancel job", err)))
            goto out_rollback;
    } else {
        rc = err_set(err, ERR_CONFLICT, "job #%lld already %s; nothing to cancel",
                     (long long)id, store_job_state_name(s0));
        goto out_rollback;
    }
    if ((rc = store_commit(st, err)))
        return rc;
    if (now_state)
        *now_state = s0;
    return 0;
out_rollback:
    store_rollback(st);
    return rc;
}

int store_job_retry(Store *st, int64_t id, int64_t *new_id, Err *err) {
    JobRow r;
    int rc = store_begin(st, err);
    if (rc)
        return rc;
    if ((rc = store_job_get(st, id, &r, err)))
        goto out_rollback;
    if (r.state == JOB_STATE_QUEUED || r.state == JOB_STATE_RUNNING) {
        rc = err_set(err, ERR_CONFLICT, "job #%lld is %s; retry makes a new job once it ended "
                     "(cancel it first)", (long long)id, store_job_state_name(r.state));
        goto out_free;
    }
    JobNew j = {.kind = r.kind, .params = r.params, .priority = r.priority,
                .gpus_wanted = r.gpus_wanted, .deps = r.deps, .n_deps = r.n_deps,
                .retry_of = id};
    if ((rc = insert_job(st, &j, new_id, err)))
        goto out_free;
    store_job_row_deinit(&r);
    return store_commit(st, err);
out_free:
    store_job_row_deinit(&r);
out_rollback:
    store_rollback(st);
    return rc;
}

/* First dependency of ID that ended failed or cancelled, into *dep (0 = none). */
static int blocked_by(Store *st, int64_t id, int64_t *dep, char *state, size_t n, Err *err) {
    static const char sql[] =
        "SELECT j.id, j.state FROM job_deps d JOIN jobs j ON j.id = d.depends_on "
        "WHERE d.job_id = ? AND j.state IN ('failed', 'cancelled') ORDER BY j.id LIMIT 1";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    int rc = store_step(st, s);
    *dep = 0;
    if (rc == SQLITE_ROW) {
        *dep = sqlite3_column_int64(s, 0);
        base_strlcpy(state, (const char *)sqlite3_column_text(s, 1), n);
    } else if (rc != SQLITE_DONE) {
        return store_err(st, err, "read job dependencies");
    }
    sqlite3_reset(s);
    return 0;
}

int store_job_resume(Store *st, int64_t id, Err *err) {
    static const char sql[] =
        "UPDATE jobs SET state = 'queued', cancel_requested = 0, message = NULL, worker = NULL,"
        " pid = NULL, heartbeat_at = NULL, finished_at = NULL, rate = NULL "
        "WHERE id = ? AND state IN ('failed', 'cancelled', 'interrupted')";
    JobState s0;
    int64_t dep;
    char dep_state[16];
    int rc = store_begin(st, err);
    if (rc)
        return rc;
    if ((rc = get_state(st, id, &s0, err)))
        goto out_rollback;
    if (s0 != JOB_STATE_FAILED && s0 != JOB_STATE_CANCELLED && s0 != JOB_STATE_INTERRUPTED) {
        rc = err_set(err, ERR_CONFLICT, "job #%lld is %s; only failed, cancelled or interrupted "
                     "jobs can be resumed", (long long)id, store_job_state_name(s0));
        goto out_rollback;
    }
    if ((rc = blocked_by(st, id, &dep, dep_state, sizeof dep_state, err)))
        goto out_rollback;
    if (dep) {
        rc = err_set(err, ERR_CONFLICT, "job #%lld waits for job #%lld, which %s: resume "
                     "#%lld first", (long long)id, (long long)dep, dep_state, (long long)dep);
        goto out_rollback;
    }
    if ((rc = exec_id(st, sql, id, "resume job", err)))
        goto out_rollback;
    return store_commit(st, err);
out_rollback:
    store_rollback(st);
    return rc;
}

int store_job_set_priority(Store *st, int64_t id, int priority, Err *err) {
    static const char sql[] = "UPDATE jobs SET priority = ? WHERE id = ?";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int(s, 1, priority);
    sqlite3_bind_int64(s, 2, id);
    int rc = store_step_done(st, s, "set job priority", err);
    if (rc)
        return rc;
    if (sqlite3_changes(st->db) == 0)
        return err_set(err, ERR_NOTFOUND, "no job #%lld in %s", (long long)id, store_path(st));
    return 0;
}

/* ---- workers ------------------------------------------------------------------------------ */

/* Queued jobs whose dependency ended failed or cancelled: fail them, naming it. */
static int fail_blocked(Store *st, Err *err) {
    static const char sql[] =
        "UPDATE jobs SET state = 'failed', finished_at = ?1, message = 'dependency #' || "
        "(SELECT j.id || ' ' || j.state FROM job_deps d JOIN jobs j ON j.id = d.depends_on "
        " WHERE d.job_id = jobs.id AND j.state IN ('failed','cancelled') ORDER BY j.id LIMIT 1)"
        " || '; resume it, then resume this job' "
        "WHERE state = 'queued' AND EXISTS (SELECT 1 FROM job_deps d JOIN jobs j "
        " ON j.id = d.depends_on WHERE d.job_id = jobs.id AND j.state IN ('failed','cancelled'))";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_double(s, 1, base_wall());
    return store_step_done(st, s, "fail blocked jobs", err);
}

/* GPU use on HOST: use[i] = running jobs holding GPU i. */
static int gpu_use(Store *st, const char *host, int *use, int n_gpus, Err *err) {
    static const char sql[] =
        "SELECT gpus FROM jobs WHERE state = 'running' AND host = ? AND gpus IS NOT NULL";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, host);
    int rc;
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        const char *g = (const char *)sqlite3_column_text(s, 0);
        while (g && *g) {
            char *end;
            long i = strtol(g, &end, 10);
            if (end == g)
                break;
            if (i >= 0 && i < n_gpus)
                use[i]++;
            g = *end == ',' ? end + 1 : end;
        }
    }
    if (rc != SQLITE_DONE)
        return store_err(st, err, "read GPU use");
    return 0;
}

/* Choose GPUs for a job wanting WANT (-1 = all free) into GPUS as "0,1".
 * Returns 1 if the job can start now (GPUS may be "" = CPU), 0 if it must wait. */
static int pick_gpus(const JobClaim *c, const int *use, int want, int required, char *gpus,
                     size_t size) {
    gpus[0] = '\0';
    if (want == 0)
        return 1;
    if (c->n_gpus == 0)
        return !required;
    int share = c->gpu_share < 1 ? 1 : c->gpu_share;
    int n_free = 0;
    for (int i = 0; i < c->n_gpus; i++)
        n_free += use[i] < share;
    int need = want < 0 ? 1 : (want < c->n_gpus ? want : c->n_gpus);
    if (n_free < need)
        return 0;
    int take = want < 0 ? n_free : need;
    size_t o = 0;
    /* least used first, then lowest index */
    for (int level = 0; level < share && take > 0; level++) {
        for (int i = 0; i < c->n_gpus && take > 0; i++) {
            if (use[i] != level)
                continue;
            o += (size_t)snprintf(gpus + o, size - o, "%s%d", o ? "," : "", i);
            take--;
        }
    }
    return 1;
}

int store_jobs_claimable(Store *st, const JobClaim *c, Err *err) {
    static const char sql[] =
        "SELECT queued_by, queued_uid FROM jobs WHERE state = 'queued' AND NOT EXISTS ("
        " SELECT 1 FROM job_deps d JOIN jobs j ON j.id = d.depends_on"
        " WHERE d.job_id = jobs.id AND j.state IN ('queued', 'running', 'interrupted'))";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    int rc, found = 0;
    while (!found && (rc = store_step(st, s)) == SQLITE_ROW) {
        int64_t uid = sqlite3_column_type(s, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 1);
        found = !c || !c->accept_user ||
                c->accept_user(c->user_data, (const char *)sqlite3_column_text(s, 0), uid);
    }
    sqlite3_reset(s);
    if (found)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return store_err(st, err, "look for queued jobs");
}

int store_job_claim(Store *st, const JobClaim *c, JobRow *out, Err *err) {
    static const char sql_candidates[] =
        "SELECT id, kind, gpus_wanted, queued_by, queued_uid FROM jobs "
        "WHERE state = 'queued' AND NOT EXISTS ("
        " SELECT 1 FROM job_deps d JOIN jobs j ON j.id = d.depends_on"
        " WHERE d.job_id = jobs.id AND j.state <> 'succeeded') "
        "ORDER BY priority DESC, id ASC";
    static const char sql_claim[] =
        "UPDATE jobs SET state = 'running', worker = ?2, pid = ?3, host = ?4, gpus = ?5,"
        " started_at = ?6, heartbeat_at = ?6, finished_at = NULL, message = NULL, rate = NULL,"
        " cancel_requested = 0, resume_done = done, resume_at = NULL"
        " WHERE id = ?1 AND state = 'queued'";
    memset(out, 0, sizeof *out);
    int rc = store_jobs_claimable(st, c, err);
    if (rc <= 0)
        return rc;
    int n_gpus = c->n_gpus > 0 ? c->n_gpus : 0;
    int *use = xcalloc((size_t)(n_gpus ? n_gpus : 1), sizeof *use);
    char gpus[256];
    int64_t chosen = 0;
    rc = store_begin(st, err);
    if (rc)
        goto out_free;
    if ((rc = fail_blocked(st, err)))
        goto out_rollback;
    if (n_gpus && (rc = gpu_use(st, c->host, use, n_gpus, err)))
        goto out_rollback;
    sqlite3_stmt *s = store_stmt(st, sql_candidates, err);
    if (!s) {
        rc = ERR_DB;
        goto out_rollback;
    }
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        const char *kind = (const char *)sqlite3_column_text(s, 1);
        int required = 0;
        if (c->accept && !c->accept(c->user_data, kind, &required))
            continue;
        int64_t uid = sqlite3_column_type(s, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 4);
        if (c->accept_user &&
            !c->accept_user(c->user_data, (const char *)sqlite3_column_text(s, 3), uid))
            continue;
        if (pick_gpus(c, use, sqlite3_column_int(s, 2), required, gpus, sizeof gpus)) {
            chosen = sqlite3_column_int64(s, 0);
            break;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = store_err(st, err, "find runnable jobs");
        goto out_rollback;
    }
    rc = 0;
    if (chosen) {
        if (!(s = store_stmt(st, sql_claim, err))) {
            rc = ERR_DB;
            goto out_rollback;
        }
        sqlite3_bind_int64(s, 1, chosen);
        store_bind_text(s, 2, c->worker);
        sqlite3_bind_int64(s, 3, c->pid);
        store_bind_text(s, 4, c->host);
        store_bind_text(s, 5, gpus[0] ? gpus : NULL);
        sqlite3_bind_double(s, 6, base_wall());
        if ((rc = store_step_done(st, s, "claim job", err)))
            goto out_rollback;
        ASSERT(sqlite3_changes(st->db) == 1); /* under the write lock it was queued */
    }
    if ((rc = store_commit(st, err)))
        goto out_free;
    free(use);
    if (!chosen)
        return 0;
    if ((rc = store_job_get(st, chosen, out, err)))
        return rc;
    return 1;
out_rollback:
    store_rollback(st);
out_free:
    free(use);
    return rc;
}

int store_jobs_heartbeat(Store *st, const char *host, int64_t pid, Err *err) {
    static const char sql[] =
        "UPDATE jobs SET heartbeat_at = ? WHERE state = 'running' AND host = ? AND pid = ?";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_double(s, 1, base_wall());
    store_bind_text(s, 2, host);
    sqlite3_bind_int64(s, 3, pid);
    return store_step_done(st, s, "heartbeat", err);
}

static void id_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    *(int64_t *)dst = sqlite3_column_int64(s, 0);
}

int store_jobs_cancel_requested(Store *st, const char *host, int64_t pid, int64_t **ids,
                                int *n, Err *err) {
    static const char sql[] = "SELECT id FROM jobs WHERE state = 'running' AND "
                              "cancel_requested = 1 AND host = ? AND pid = ?";
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, host);
    sqlite3_bind_int64(s, 2, pid);
    size_t len;
    int rc = store_read_list(st, s, sizeof **ids, id_row, NULL, NULL, ids, &len,
                             "read cancel requests", err);
    *n = (int)len;
    return rc;
}

int store_job_progress(Store *st, int64_t id, double done, double total, const char *unit,
                       Err *err) {
    /* ?5 = now. A new baseline (done, now) when there is none since the claim, when done
     * went backwards, or when the unit changed; else rate = work since the baseline over the
     * time since it. Every expression reads the row as it was before the update. */
#define NEW_BASELINE \
    "(resume_at IS NULL OR ?2 < resume_done OR (?4 IS NOT NULL AND ?4 IS NOT unit))"
    static const char sql[] =
        "UPDATE jobs SET"
        " rate = CASE WHEN " NEW_BASELINE " THEN NULL"
        "  WHEN ?5 > resume_at AND ?2 > resume_done THEN (?2 - resume_done) / (?5 - resume_at)"
        "  ELSE NULL END,"
        " resume_done = CASE WHEN " NEW_BASELINE " THEN ?2 ELSE resume_done END,"
        " resume_at = CASE WHEN " NEW_BASELINE " THEN ?5 ELSE resume_at END,"
        " done = ?2, total = ?3, unit = coalesce(?4, unit) "
        "WHERE id = ?1 AND state = 'running'";
#undef NEW_BASELINE
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_double(s, 2, done);
    sqlite3_bind_double(s, 3, total);
    store_bind_text(s, 4, unit);
    sqlite3_bind_double(s, 5, base_wall());
    return store_step_done(st, s, "job progress", err);
}

int store_job_checkpoint_save(Store *st, int64_t id, const char *json, Err *err) {
    static const char sql[] = "UPDATE jobs SET checkpoint = ? WHERE id = ?";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, json);
    sqlite3_bind_int64(s, 2, id);
    return store_step_done(st, s, "save job checkpoint", err);
}

int store_job_finish(Store *st, int64_t id, const char *worker, JobState state,
                     const char *message, Err *err) {
    static const char sql[] =
        "UPDATE jobs SET state = ?3, message = ?4, finished_at = ?5, rate = NULL "
        "WHERE id = ?1 AND worker = ?2 AND state = 'running'";
    ASSERT(state == JOB_STATE_SUCCEEDED || state == JOB_STATE_FAILED ||
           state == JOB_STATE_CANCELLED || state == JOB_STATE_INTERRUPTED);
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    store_bind_text(s, 2, worker);
    store_bind_text(s, 3, store_job_state_name(state));
    store_bind_text(s, 4, message);
    sqlite3_bind_double(s, 5, base_wall());
    int rc = store_step_done(st, s, "finish job", err);
    if (rc)
        return rc;
    if (sqlite3_changes(st->db) == 0)
        return err_set(err, ERR_CONFLICT, "job #%lld is no longer held by %s (it was marked "
                       "interrupted meanwhile)", (long long)id, worker);
    return 0;
}

int store_jobs_reap(Store *st, double stale_s, const char *host, int (*pid_alive)(int64_t pid),
                    int *n, Err *err) {
    static const char sql_running[] =
        "SELECT id, host, pid, heartbeat_at, worker FROM jobs WHERE state = 'running'";
    /* guarded by the heartbeat read: a job that heartbeated since is alive after all */
    static const char sql_mark[] =
        "UPDATE jobs SET state = 'interrupted', finished_at = ?3, message = ?2 "
        "WHERE id = ?1 AND state = 'running' AND heartbeat_at IS ?4";
    int changed = 0;
    int64_t *ids = NULL;
    double *hbs = NULL;
    char **why = NULL;
    int n_ids = 0, cap = 0;
    double now = base_wall();
    if (n)
        *n = 0;
    /* Read phase, without the write lock (every process runs this every few seconds). */
    sqlite3_stmt *s = store_stmt(st, sql_running, err);
    if (!s)
        return ERR_DB;
    int rc;
    while ((rc = store_step(st, s)) == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(s, 1);
        int64_t pid = sqlite3_column_int64(s, 2);
        int has_hb = sqlite3_column_type(s, 3) != SQLITE_NULL;
        double hb = col_real(s, 3);
        const char *w = (const char *)sqlite3_column_text(s, 4);
        char *msg = NULL;
        if (host && h && pid_alive && strcmp(h, host) == 0 && !pid_alive(pid))
            msg = xasprintf("worker %s is gone (process %lld ended); resume to continue",
                            w ? w : "?", (long long)pid);
        else if (now - hb > stale_s)
            msg = xasprintf("worker %s stopped heartbeating %.0f s ago; resume to continue",
                            w ? w : "?", now - hb);
        if (!msg)
            continue;
        if (n_ids == cap) {
            cap = cap ? cap * 2 : 4;
            ids = xrealloc(ids, sizeof *ids * (size_t)cap);
            hbs = xrealloc(hbs, sizeof *hbs * (size_t)cap);
            why = xrealloc(why, sizeof *why * (size_t)cap);
        }
        ids[n_ids] = sqlite3_column_int64(s, 0);
        hbs[n_ids] = has_hb ? hb : NAN;
        why[n_ids++] = msg;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        rc = store_err(st, err, "find dead workers");
        goto out_free;
    }
    rc = 0;
    if (n_ids == 0)
        goto out_free;
    /* Write phase: only when some job looks dead. */
    if ((rc = store_begin(st, err)))
        goto out_free;
    for (int i = 0; i < n_ids; i++) {
        if (!(s = store_stmt(st, sql_mark, err))) {
            rc = ERR_DB;
            goto out_rollback;
        }
        sqlite3_bind_int64(s, 1, ids[i]);
        store_bind_text(s, 2, why[i]);
        sqlite3_bind_double(s, 3, now);
        if (isnan(hbs[i]))
            sqlite3_bind_null(s, 4);
        else
            sqlite3_bind_double(s, 4, hbs[i]);
        if ((rc = store_step_done(st, s, "mark job interrupted", err)))
            goto out_rollback;
        changed += sqlite3_changes(st->db);
    }
    if ((rc = store_commit(st, err)))
        goto out_free;
    if (n)
        *n = changed;
    goto out_free;
out_rollback:
    store_rollback(st);
out_free:
    base_strv_free(why, (size_t)n_ids);
    free(hbs);
    free(ids);
    return rc;
}

/* ---- the images a job wrote ------------------------------------------------------------- */

int store_job_image_note(Store *st, int64_t job_id, int64_t image_id, Err *err) {
    static const char sql[] =
        "INSERT INTO job_images(job_id, image_id, written_at) VALUES (?, ?, ?) "
        "ON CONFLICT(job_id, image_id) DO UPDATE SET written_at = excluded.written_at";
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_int64(s, 2, image_id);
    sqlite3_bind_double(s, 3, base_wall());
    return store_step_done(st, s, "record a job's image", err);
}

typedef struct LatestImage {
    int64_t id;
    char *path;
} LatestImage;

static void latest_image_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    LatestImage *l = dst;
    l->id = sqlite3_column_int64(s, 0);
    l->path = store_col_text(s, 1);
}

int store_job_latest_image(Store *st, int64_t job_id, int64_t *image_id, char **path,
                           Err *err) {
    static const char sql[] =
        "SELECT i.id, i.path FROM job_images j JOIN images i ON i.id = j.image_id "
        "WHERE j.job_id = ? ORDER BY j.written_at DESC, j.image_id DESC LIMIT 1";
    if (path)
        *path = NULL;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (s)
        sqlite3_bind_int64(s, 1, job_id);
    LatestImage l = {0};
    int rc = store_read_one(st, s, latest_image_row, NULL, &l, "read a job's latest image", err,
                            "job #%lld has written no image yet", (long long)job_id);
    if (rc)
        return rc;
    if (image_id)
        *image_id = l.id;
    if (path)
        *path = l.path ? store_path_resolve(st, l.path) : NULL;
    free(l.path);
    return 0;
}
