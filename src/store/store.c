/* store — open, migrate, transactions, the statement cache. See store.h.
 *
 * Schema history (PRAGMA user_version):
 *   0  empty file
 *   1  the workspace: prompts, images, annotators, aspects (the five), ratings + history,
 *      flags, pairs, runs, metrics, jobs (+deps, log), checkpoints, models, embeddings, scores
 *   2  images.retired*, jobs.queued_by/queued_uid/resume_done, annotators.role, settings,
 *      output_roots, queue_order; meta('application'), meta('schema_version')
 *   3  job_images (the images each job wrote: the Jobs screen's preview)
 *   4  latents (the VAE latent cache of generator tuning)
 *   5  run_images (a tuning run's sample images per step: the Monitor)
 *   6  ab_sets, ab_items, ab_item_rewards, ab_judgements (+ history): blind A/B sets of a
 *      tune-eval run's image pairs (store_ab.h)
 * meta('schema_version') repeats user_version so that a store restored from `sqlite3 .dump`
 * (which drops the pragma) opens at the right version.
 * A migration runs inside BEGIN IMMEDIATE and re-reads user_version under the lock, so two
 * processes opening an old store at once migrate it exactly once.
 *
 * Invariants kept by the schema itself, so no code path can break them:
 *   - a rating is never deleted (trigger), and an update of its value copies the old value
 *     into rating_history first (trigger);
 *   - one current value per (image, annotator, aspect) (unique key);
 *   - values lie in 0..10 (check).
 */
#include "store.h"
#include "store_int.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "identity.h"
#include "log.h"

/* ---- schema ----------------------------------------------------------------------------- */

static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"

    "CREATE TABLE prompts("
    "  id INTEGER PRIMARY KEY,"
    "  ext_id TEXT NOT NULL UNIQUE,"             /* prompt_id of the CSV files, as text */
    "  text TEXT NOT NULL,"
    "  created_at REAL NOT NULL);"

    "CREATE TABLE images("
    "  id INTEGER PRIMARY KEY,"
    "  prompt_id INTEGER REFERENCES prompts(id),"
    "  path TEXT NOT NULL UNIQUE,"               /* see store_path_to_stored */
    "  seed INTEGER,"
    "  generator TEXT,"                          /* JSON: model, steps, guidance, gpu_id... */
    "  width INTEGER,"
    "  height INTEGER,"
    "  sha256 TEXT,"                             /* hex of the file's bytes */
    "  missing INTEGER NOT NULL DEFAULT 0,"
    "  created_at REAL NOT NULL);"
    "CREATE INDEX images_prompt ON images(prompt_id);"
    "CREATE INDEX images_sha ON images(sha256);"

    "CREATE TABLE annotators("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created_at REAL NOT NULL);"

    "CREATE TABLE aspects("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  position INTEGER NOT NULL,"
    "  rubric TEXT NOT NULL DEFAULT '');"
    "INSERT INTO aspects(name, position, rubric) VALUES"
    "  ('spatial', 0, 'Composition and layout: balance, framing, rule of thirds, focal point'),"
    "  ('icono', 1, 'Iconography: the objects, symbols and story the prompt asks for'),"
    "  ('style', 2, 'Style: technique, colour harmony and palette, visual coherence'),"
    "  ('fidelity', 3, 'Technical quality: sharpness, no noise, artefacts or blur'),"
    "  ('material', 4, 'Materials: texture realism, surfaces, light on them');"

    "CREATE TABLE ratings("
    "  id INTEGER PRIMARY KEY,"
    "  image_id INTEGER NOT NULL REFERENCES images(id),"
    "  annotator_id INTEGER NOT NULL REFERENCES annotators(id),"
    "  aspect_id INTEGER NOT NULL REFERENCES aspects(id),"
    "  value REAL NOT NULL CHECK (value >= 0 AND value <= 10),"
    "  seconds REAL,"                            /* time spent on the image, if known */
    "  source TEXT NOT NULL DEFAULT '',"         /* 'tui', 'import:FILE', ... */
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL,"
    "  UNIQUE(image_id, annotator_id, aspect_id));"
    "CREATE INDEX ratings_annotator ON ratings(annotator_id, image_id);"
    "CREATE TABLE rating_history("
    "  id INTEGER PRIMARY KEY,"
    "  rating_id INTEGER NOT NULL REFERENCES ratings(id),"
    "  value REAL NOT NULL,"
    "  seconds REAL,"
    "  source TEXT NOT NULL,"
    "  set_at REAL NOT NULL,"                    /* when that value was entered */
    "  replaced_at REAL NOT NULL);"
    "CREATE TRIGGER ratings_keep_history AFTER UPDATE OF value ON ratings"
    "  WHEN old.value IS NOT new.value BEGIN"
    "  INSERT INTO rating_history(rating_id, value, seconds, source, set_at, replaced_at)"
    "  VALUES (old.id, old.value, old.seconds, old.source, old.updated_at, new.updated_at);"
    "  END;"
    "CREATE TRIGGER ratings_never_deleted BEFORE DELETE ON ratings BEGIN"
    "  SELECT RAISE(ABORT, 'ratings are never deleted');"
    "  END;"

    "CREATE TABLE flags("
    "  id INTEGER PRIMARY KEY,"
    "  image_id INTEGER NOT NULL REFERENCES images(id),"
    "  annotator_id INTEGER REFERENCES annotators(id),"
    "  comment TEXT NOT NULL DEFAULT '',"
    "  created_at REAL NOT NULL,"
    "  resolved_at REAL);"

    "CREATE TABLE pairs("
    "  id INTEGER PRIMARY KEY,"
    "  prompt_id INTEGER REFERENCES prompts(id),"
    "  img_pos INTEGER NOT NULL REFERENCES images(id),"  /* always the preferred image */
    "  img_neg INTEGER NOT NULL REFERENCES images(id),"
    "  label REAL NOT NULL DEFAULT 1.0,"
    "  aspect TEXT NOT NULL DEFAULT '',"         /* '' = overall / combined */
    "  rating_pos REAL,"
    "  rating_neg REAL,"
    "  rating_diff REAL,"
    "  source TEXT NOT NULL DEFAULT 'import',"
    "  created_at REAL NOT NULL,"
    "  UNIQUE(img_pos, img_neg, aspect, source));"

    "CREATE TABLE runs("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL,"                      /* 'train-reward', 'eval-reward', ... */
    "  config TEXT NOT NULL DEFAULT '{}',"       /* JSON */
    "  state TEXT NOT NULL DEFAULT 'running',"
    "  job_id INTEGER REFERENCES jobs(id),"
    "  output TEXT,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL);"
    "CREATE TABLE metrics("
    "  run_id INTEGER NOT NULL REFERENCES runs(id),"
    "  split TEXT NOT NULL,"                     /* 'train', 'val', 'sys' */
    "  name TEXT NOT NULL,"                      /* 'loss', 'spatial_f1', 'lr', ... */
    "  step INTEGER NOT NULL,"
    "  epoch REAL,"
    "  value REAL NOT NULL,"
    "  t REAL NOT NULL,"
    "  PRIMARY KEY(run_id, split, name, step)) WITHOUT ROWID;"

    "CREATE TABLE jobs("
    "  id INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL,"
    "  params TEXT NOT NULL DEFAULT '{}',"       /* JSON */
    "  state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN"
    "    ('queued','running','succeeded','failed','cancelled','interrupted')),"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  done REAL NOT NULL DEFAULT 0,"
    "  total REAL NOT NULL DEFAULT 0,"
    "  rate REAL,"                               /* units per second */
    "  unit TEXT NOT NULL DEFAULT '',"
    "  gpus_wanted INTEGER NOT NULL DEFAULT 0,"
    "  gpus TEXT,"                               /* the GPUs it holds, e.g. '0,1' */
    "  worker TEXT,"                             /* host:pid:thread */
    "  pid INTEGER,"
    "  host TEXT,"
    "  heartbeat_at REAL,"
    "  cancel_requested INTEGER NOT NULL DEFAULT 0,"
    "  checkpoint TEXT,"                         /* JSON the job kind resumes from */
    "  retry_of INTEGER REFERENCES jobs(id),"
    "  message TEXT,"
    "  created_at REAL NOT NULL,"
    "  started_at REAL,"
    "  finished_at REAL);"
    "CREATE INDEX jobs_state ON jobs(state, priority);"
    "CREATE TABLE job_deps("
    "  job_id INTEGER NOT NULL REFERENCES jobs(id),"
    "  depends_on INTEGER NOT NULL REFERENCES jobs(id),"
    "  PRIMARY KEY(job_id, depends_on)) WITHOUT ROWID;"
    "CREATE TABLE job_log("
    "  id INTEGER PRIMARY KEY,"
    "  job_id INTEGER NOT NULL REFERENCES jobs(id),"
    "  t REAL NOT NULL,"
    "  line TEXT NOT NULL);"
    "CREATE INDEX job_log_job ON job_log(job_id, id);"

    "CREATE TABLE checkpoints("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER REFERENCES runs(id),"
    "  name TEXT NOT NULL,"                      /* 'best', 'final', 'checkpoint-4' */
    "  path TEXT NOT NULL,"
    "  step INTEGER,"
    "  epoch REAL,"
    "  metrics TEXT,"                            /* JSON */
    "  created_at REAL NOT NULL,"
    "  UNIQUE(run_id, name));"

    "CREATE TABLE models("
    "  id INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL,"                      /* 'clip' */
    "  name TEXT NOT NULL UNIQUE,"
    "  path TEXT NOT NULL,"
    "  config TEXT,"
    "  created_at REAL NOT NULL);"

    "CREATE TABLE embeddings("
    "  encoder TEXT NOT NULL,"                   /* 'classic', 'clip:NAME' */
    "  kind TEXT NOT NULL CHECK (kind IN ('image','text')),"
    "  key TEXT NOT NULL,"                       /* image sha256, or sha256 of the text */
    "  dim INTEGER NOT NULL,"                    /* floats per token */
    "  n_tokens INTEGER NOT NULL DEFAULT 1,"     /* pooled vector first, then tokens */
    "  data BLOB NOT NULL,"                      /* little-endian f32, n_tokens * dim */
    "  created_at REAL NOT NULL,"
    "  PRIMARY KEY(encoder, kind, key)) WITHOUT ROWID;"

    "CREATE TABLE scores("
    "  id INTEGER PRIMARY KEY,"
    "  checkpoint TEXT NOT NULL,"                /* checkpoint folder */
    "  image_id INTEGER NOT NULL REFERENCES images(id),"
    "  head TEXT NOT NULL,"                      /* aspect name or 'combined' */
    "  value REAL NOT NULL,"
    "  created_at REAL NOT NULL,"
    "  UNIQUE(checkpoint, image_id, head));",

    /* 1 -> 2: hardening. The version is also kept in meta, which `sqlite3 .dump` keeps
     * (it drops PRAGMA user_version); see store_open. */
    "INSERT OR REPLACE INTO meta(key, value) VALUES ('application', 'easel');"
    "ALTER TABLE images ADD COLUMN retired INTEGER NOT NULL DEFAULT 0;" /* out of queues, training */
    "ALTER TABLE images ADD COLUMN retired_at REAL;"
    "ALTER TABLE images ADD COLUMN retired_by TEXT;"
    "ALTER TABLE images ADD COLUMN retired_reason TEXT;"
    "ALTER TABLE jobs ADD COLUMN queued_by TEXT NOT NULL DEFAULT '';" /* Unix login that queued it */
    "ALTER TABLE jobs ADD COLUMN queued_uid INTEGER;"
    "ALTER TABLE jobs ADD COLUMN resume_done REAL NOT NULL DEFAULT 0;" /* done when (re)started */
    "ALTER TABLE annotators ADD COLUMN role TEXT NOT NULL DEFAULT 'annotator';" /* or 'reviewer' */
    "CREATE TABLE settings("                     /* store-wide settings: 'blind' = 'on'|'off' */
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL,"
    "  set_by TEXT NOT NULL DEFAULT '',"
    "  set_at REAL NOT NULL);"
    "CREATE TABLE output_roots("                 /* folders outside the workspace jobs may use */
    "  path TEXT PRIMARY KEY,"                   /* absolute, resolved */
    "  added_by TEXT NOT NULL DEFAULT '',"
    "  added_at REAL NOT NULL);"
    "CREATE TABLE queue_order("                  /* the annotate queue's computed orders */
    "  kind TEXT NOT NULL,"                      /* 'uncertain', 'disagree' */
    "  image_id INTEGER NOT NULL REFERENCES images(id),"
    "  score REAL NOT NULL,"                     /* higher is served first */
    "  reason TEXT NOT NULL DEFAULT '',"         /* shown to the annotator */
    "  source TEXT NOT NULL DEFAULT '',"         /* e.g. the checkpoint it came from */
    "  computed_at REAL NOT NULL,"
    "  PRIMARY KEY(kind, image_id)) WITHOUT ROWID;"
    "ALTER TABLE jobs ADD COLUMN resume_at REAL;", /* when resume_done was taken (rate) */

    /* 2 -> 3: which images a job wrote (the Jobs screen's preview of a generate job). */
    "CREATE TABLE job_images("
    "  job_id INTEGER NOT NULL REFERENCES jobs(id),"
    "  image_id INTEGER NOT NULL REFERENCES images(id),"
    "  written_at REAL NOT NULL,"                /* the last time the job wrote or kept it */
    "  PRIMARY KEY(job_id, image_id)) WITHOUT ROWID;"
    "CREATE INDEX job_images_latest ON job_images(job_id, written_at);",

    /* 3 -> 4: the VAE latent cache of generator tuning (store_latents.h): the latents of an
     * image's bytes encoded by one VAE at one size. */
    "CREATE TABLE latents("
    "  image_sha256 TEXT NOT NULL,"              /* sha256 of the image file's bytes */
    "  vae TEXT NOT NULL,"                       /* the VAE's identity (tune_vae_key) */
    "  width INTEGER NOT NULL,"                  /* the pixel size it was cropped to */
    "  height INTEGER NOT NULL,"
    "  channels INTEGER NOT NULL,"               /* latent shape: channels x lh x lw */
    "  lh INTEGER NOT NULL,"
    "  lw INTEGER NOT NULL,"
    "  data BLOB NOT NULL,"                      /* little-endian f32, channels*lh*lw */
    "  created_at REAL NOT NULL,"
    "  PRIMARY KEY(image_sha256, vae, width, height)) WITHOUT ROWID;",

    /* 4 -> 5: the sample images a generator tuning run wrote every --save-every
     * steps, which the Monitor shows (store_run_images.h). */
    "CREATE TABLE run_images("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id),"
    "  step INTEGER NOT NULL,"                   /* optimizer steps when it was rendered */
    "  seed INTEGER NOT NULL,"
    "  label TEXT NOT NULL DEFAULT '',"          /* e.g. the prompt it shows */
    "  path TEXT NOT NULL,"                      /* the PNG (as images.path) */
    "  created REAL NOT NULL,"
    "  UNIQUE(run_id, step, seed, label));"
    "CREATE INDEX run_images_step ON run_images(run_id, step);",

    /* 5 -> 6 (issue 16, the blind A/B queue; store_ab.h): A/B sets of image pairs (a
     * tune-eval run's base vs adapter images), the reward model's scores of both sides, and
     * the annotators' judgements, which are never deleted (as ratings). */
    "CREATE TABLE ab_sets("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  run_id INTEGER REFERENCES runs(id),"      /* the tune-eval run it came from, or NULL */
    "  seed INTEGER NOT NULL,"                   /* drew the left/right order */
    "  created REAL NOT NULL);"
    "CREATE TABLE ab_items("
    "  id INTEGER PRIMARY KEY,"
    "  set_id INTEGER NOT NULL REFERENCES ab_sets(id),"
    "  position INTEGER NOT NULL,"               /* 0-based order in the queue */
    "  image_a INTEGER NOT NULL REFERENCES images(id),"
    "  image_b INTEGER NOT NULL REFERENCES images(id),"
    "  adapter TEXT CHECK (adapter IN ('a','b')),"  /* which is the adapter's; never shown */
    "  a_left INTEGER NOT NULL CHECK (a_left IN (0,1)),"
    "  UNIQUE(set_id, position),"
    "  UNIQUE(set_id, image_a, image_b));"
    "CREATE TABLE ab_item_rewards("              /* the reward model's scores of both sides */
    "  item_id INTEGER NOT NULL REFERENCES ab_items(id),"
    "  head TEXT NOT NULL,"                      /* an aspect's name or 'combined' */
    "  a REAL NOT NULL,"
    "  b REAL NOT NULL,"
    "  PRIMARY KEY(item_id, head)) WITHOUT ROWID;"
    "CREATE TABLE ab_judgements("
    "  id INTEGER PRIMARY KEY,"
    "  item_id INTEGER NOT NULL REFERENCES ab_items(id),"
    "  annotator_id INTEGER NOT NULL REFERENCES annotators(id),"
    "  aspect TEXT NOT NULL DEFAULT '',"         /* '' = one overall choice */
    "  choice TEXT NOT NULL CHECK (choice IN ('left','right','tie')),"
    "  seconds REAL,"
    "  created REAL NOT NULL,"
    "  updated REAL NOT NULL,"
    "  UNIQUE(item_id, annotator_id, aspect));"
    "CREATE TABLE ab_judgement_history("
    "  id INTEGER PRIMARY KEY,"
    "  judgement_id INTEGER NOT NULL REFERENCES ab_judgements(id),"
    "  choice TEXT NOT NULL,"
    "  set_at REAL NOT NULL,"
    "  replaced_at REAL NOT NULL);"
    "CREATE TRIGGER ab_judgements_keep_history AFTER UPDATE OF choice ON ab_judgements"
    "  WHEN old.choice IS NOT new.choice BEGIN"
    "  INSERT INTO ab_judgement_history(judgement_id, choice, set_at, replaced_at)"
    "  VALUES (old.id, old.choice, old.updated, new.updated);"
    "  END;"
    "CREATE TRIGGER ab_judgements_never_deleted BEFORE DELETE ON ab_judgements BEGIN"
    "  SELECT RAISE(ABORT, 'A/B judgements are never deleted');"
    "  END;",
};

int store_schema_version(void) { return (int)ARRAY_LEN(migrations); }

/* ---- errors and statements ---------------------------------------------------------------- */

int store_err(Store *st, Err *err, const char *context) {
    int rc = sqlite3_extended_errcode(st->db);
    int code = ERR_DB;
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        code = ERR_BUSY;
    else if ((rc & 0xff) == SQLITE_CONSTRAINT)
        code = ERR_CONFLICT;
    else if ((rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR)
        return err_set(err, ERR_IO, "%s: %s: %s (%s)", context,
                       (rc & 0xff) == SQLITE_FULL ? "the disk is full (SQLITE_FULL)"
                                                  : "I/O error (SQLITE_IOERR)",
                       sqlite3_errmsg(st->db), st->path);
    return err_set(err, code, "%s: %s (%s)", context, sqlite3_errmsg(st->db), st->path);
}

sqlite3_stmt *store_stmt(Store *st, const char *sql, Err *err) {
    for (int i = 0; i < st->n_cache; i++) {
        if (st->cache[i].sql == sql) {
            sqlite3_stmt *s = st->cache[i].stmt;
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return s;
        }
    }
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK) {
        store_err(st, err, "prepare");
        return NULL;
    }
    if (st->n_cache == st->cap_cache) {
        st->cap_cache = st->cap_cache ? 2 * st->cap_cache : 64;
        st->cache = xrealloc(st->cache, sizeof *st->cache * (size_t)st->cap_cache);
    }
    st->cache[st->n_cache].sql = sql;
    st->cache[st->n_cache].stmt = s;
    st->n_cache++;
    return s;
}

/* SQLITE_BUSY can still come back after the busy timeout in WAL edge cases (a snapshot that
 * cannot be upgraded, a checkpoint in progress). Retry with backoff for up to ~2 minutes. */
static void backoff(int attempt) {
    long us = 1000L << (attempt < 8 ? attempt : 8); /* 1 ms .. 256 ms */
    us += rand() % 1000;
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Give up on a busy store: after the connection's busy limit, or ~2 minutes by default. */
static int busy_give_up(const Store *st, int attempt) {
    return attempt > 600 || (st && st->busy_limit_ms > 0);
}

void store_set_busy_limit(Store *st, int ms) {
    st->busy_limit_ms = ms > 0 ? ms : 0;
    sqlite3_busy_timeout(st->db, ms > 0 ? ms : 10000);
}

int store_step(Store *st, sqlite3_stmt *stmt) {
    int rc;
    for (int attempt = 0;; attempt++) {
        rc = sqlite3_step(stmt);
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || busy_give_up(st, attempt))
            break;
        sqlite3_reset(stmt);
        backoff(attempt);
    }
    return rc;
}

int store_exec(Store *st, const char *sql, Err *err) {
    char *msg = NULL;
    int rc;
    for (int attempt = 0;; attempt++) {
        rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || busy_give_up(st, attempt))
            break;
        sqlite3_free(msg);
        msg = NULL;
        backoff(attempt);
    }
    if (rc != SQLITE_OK) {
        int code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? ERR_BUSY : ERR_DB;
        const char *why = (rc & 0xff) == SQLITE_FULL    ? "the disk is full (SQLITE_FULL): "
                          : (rc & 0xff) == SQLITE_IOERR ? "I/O error (SQLITE_IOERR): "
                                                        : "";
        if (*why)
            code = ERR_IO;
        err_set(err, code, "%s%s (%s)", why, msg ? msg : sqlite3_errstr(rc), st->path);
        sqlite3_free(msg);
        return code;
    }
    return 0;
}

int store_bind_text(sqlite3_stmt *stmt, int i, const char *s) {
    return s ? sqlite3_bind_text(stmt, i, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(stmt, i);
}

char *store_col_text(sqlite3_stmt *stmt, int i) {
    const unsigned char *t = sqlite3_column_text(stmt, i);
    return t ? xstrdup((const char *)t) : NULL;
}

int store_step_done(Store *st, sqlite3_stmt *s, const char *what, Err *err) {
    int rc = store_step(st, s) == SQLITE_DONE ? 0 : store_err(st, err, what);
    sqlite3_reset(s);
    return rc;
}

int store_step_row(Store *st, sqlite3_stmt *s, const char *what, Err *err) {
    int rc = store_step(st, s);
    if (rc == SQLITE_ROW)
        return 0;
    rc = rc == SQLITE_DONE ? err_set(err, ERR_NOTFOUND, "%s: no such row", what)
                           : store_err(st, err, what);
    sqlite3_reset(s);
    return rc;
}

int store_read_list(Store *st, sqlite3_stmt *s, size_t elem, StoreRowFn row, void *ctx,
                    StoreElemFn deinit, void *out, size_t *n, const char *what, Err *err) {
    char *v = NULL;
    size_t len = 0, cap = 0;
    int step;
    memcpy(out, &v, sizeof v);
    *n = 0;
    if (!s)
        return ERR_DB; /* store_stmt failed and said why */
    while ((step = store_step(st, s)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? 2 * cap : 16;
            v = xrealloc(v, cap * elem);
        }
        void *dst = v + len * elem;
        memset(dst, 0, elem);
        len++;
        row(s, dst, ctx);
    }
    if (step != SQLITE_DONE) {
        int rc = store_err(st, err, what);
        sqlite3_reset(s);
        store_free_list(v, (long long)len, elem, deinit);
        return rc;
    }
    sqlite3_reset(s);
    memcpy(out, &v, sizeof v);
    *n = len;
    return 0;
}

int store_read_one(Store *st, sqlite3_stmt *s, StoreRowFn row, void *ctx, void *dst,
                   const char *what, Err *err, const char *notfound, ...) {
    if (!s)
        return ERR_DB; /* store_stmt failed and said why */
    int rc = store_step(st, s);
    if (rc == SQLITE_ROW) {
        row(s, dst, ctx);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        char msg[ERR_MSG_LEN];
        va_list ap;
        va_start(ap, notfound);
        vsnprintf(msg, sizeof msg, notfound, ap);
        va_end(ap);
        rc = err_set(err, ERR_NOTFOUND, "%s", msg);
    } else {
        rc = store_err(st, err, what);
    }
    sqlite3_reset(s);
    return rc;
}

void store_row_int64(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    *(int64_t *)dst = sqlite3_column_int64(s, 0);
}

void store_row_double(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    *(double *)dst = sqlite3_column_double(s, 0);
}

void store_free_list(void *arr, long long n, size_t elem, StoreElemFn deinit) {
    if (!arr)
        return;
    for (long long i = 0; deinit && i < n; i++)
        deinit((char *)arr + (size_t)i * elem);
    free(arr);
}

/* ---- transactions --------------------------------------------------------------------------- */

int store_begin(Store *st, Err *err) {
    if (st->tx_depth++ > 0)
        return 0;
    st->tx_failed = 0;
    int rc = store_exec(st, "BEGIN IMMEDIATE", err);
    if (rc)
        st->tx_depth = 0;
    return rc;
}

int store_commit(Store *st, Err *err) {
    ASSERT(st->tx_depth > 0);
    if (--st->tx_depth > 0)
        return 0;
    if (st->tx_failed) {
        store_exec(st, "ROLLBACK", NULL);
        return err_set(err, ERR_CONFLICT, "transaction was rolled back by an inner failure");
    }
    int rc = store_exec(st, "COMMIT", err);
    if (rc) {
        store_exec(st, "ROLLBACK", NULL);
    }
    return rc;
}

void store_rollback(Store *st) {
    ASSERT(st->tx_depth > 0);
    if (--st->tx_depth > 0) {
        st->tx_failed = 1;
        return;
    }
    if (!sqlite3_get_autocommit(st->db))
        store_exec(st, "ROLLBACK", NULL);
}

/* ---- open and migrate ------------------------------------------------------------------------ */

static int read_version(Store *st, int *version, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "PRAGMA user_version", err);
    if (!s)
        return ERR_DB;
    int rc = store_step(st, s);
    if (rc != SQLITE_ROW)
        return store_err(st, err, "read schema version");
    *version = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return 0;
}

/* 1 if the connection's schema has table NAME. */
static int has_table(Store *st, const char *name) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM sqlite_schema WHERE type='table' AND name=?",
                           -1, &s, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int yes = store_step(st, s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return yes;
}

/* Number of tables, views, indexes and triggers in the file (0: an empty database). */
static int n_schema_objects(Store *st) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM sqlite_schema", -1, &s, NULL) !=
        SQLITE_OK)
        return -1;
    int n = store_step(st, s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
}

/* The schema version a store restored from `sqlite3 .dump` had: .dump keeps the meta table
 * but not PRAGMA user_version. Version 1 wrote no schema_version row; its meta table is the
 * mark. Returns 0 when the file has no meta table. */
static int dumped_version(Store *st) {
    if (!has_table(st, "meta"))
        return 0;
    sqlite3_stmt *s = NULL;
    int v = 1;
    if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key='schema_version'", -1, &s,
                           NULL) == SQLITE_OK &&
        store_step(st, s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v > 0 ? v : 1;
}

/* Is this file an easel store (or an empty database, when CREATE allows making one)?
 * Reads only: nothing is written to a file that is not ours. */
static int check_identity(Store *st, int create, Err *err) {
    int n = n_schema_objects(st);
    if (n < 0)
        return err_set(err, ERR_FORMAT, "%s: not an easel store (not a SQLite database)",
                       st->path);
    if (n == 0) {
        if (create)
            return 0;
        return err_set(err, ERR_NOTFOUND,
                       "%s: an empty database, not an easel store; create one with "
                       "'easel --db %s init'", st->path, st->path);
    }
    if (!has_table(st, "meta") || !has_table(st, "ratings") || !has_table(st, "images"))
        return err_set(err, ERR_FORMAT,
                       "%s: a SQLite database but not an easel store (no easel tables); "
                       "nothing was changed in it. Pass the store with --db, or create one "
                       "with 'easel --db NEW.db init'", st->path);
    return 0;
}

static int migrate(Store *st, Err *err) {
    int v;
    int rc = read_version(st, &v, err);
    if (rc)
        return rc;
    if (v == 0 && dumped_version(st) > 0) {
        /* Restored from a dump: put the version back (under the write lock) and go on. */
        if ((rc = store_begin(st, err)))
            return rc;
        if ((rc = read_version(st, &v, err)))
            goto out_rollback;
        if (v == 0) {
            v = dumped_version(st);
            if (v > store_schema_version()) {
                rc = err_set(err, ERR_FORMAT,
                             "%s: store schema version %d is newer than this easel (%d); "
                             "use a newer easel", st->path, v, store_schema_version());
                goto out_rollback;
            }
            char pragma[64];
            snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v);
            if ((rc = store_exec(st, pragma, err)))
                goto out_rollback;
            log_info("store: %s was restored from a dump; schema version %d put back",
                     st->path, v);
        }
        if ((rc = store_commit(st, err)))
            return rc;
    }
    if (v == store_schema_version())
        return 0;
    if (v > store_schema_version())
        return err_set(err, ERR_FORMAT,
                       "%s: store schema version %d is newer than this easel (%d); "
                       "use a newer easel", st->path, v, store_schema_version());
    if ((rc = store_begin(st, err)))
        return rc;
    if ((rc = read_version(st, &v, err))) /* again, under the write lock */
        goto out_rollback;
    if (v == 0 && n_schema_objects(st) != 0) {
        rc = err_set(err, ERR_FORMAT, "%s: not an easel store; nothing was changed in it",
                     st->path);
        goto out_rollback;
    }
    for (; v < store_schema_version(); v++) {
        if ((rc = store_exec(st, migrations[v], err))) {
            err_prefix(err, "migrate store from version %d", v);
            goto out_rollback;
        }
        char pragma[160];
        snprintf(pragma, sizeof pragma,
                 "PRAGMA user_version = %d; INSERT OR REPLACE INTO meta(key, value) "
                 "VALUES ('schema_version', '%d')", v + 1, v + 1);
        if ((rc = store_exec(st, pragma, err)))
            goto out_rollback;
    }
    return store_commit(st, err);
out_rollback:
    store_rollback(st);
    return rc;
}

static char *abs_dir_of(const char *path) {
    if (strcmp(path, ":memory:") == 0 || path[0] == '\0')
        return xstrdup(".");
    char *copy = xstrdup(path);
    char *slash = strrchr(copy, '/');
    const char *dir = ".";
    if (slash == copy)
        dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = copy;
    }
    char buf[PATH_MAX];
    char *res = realpath(dir, buf) ? xstrdup(buf) : xstrdup(dir);
    free(copy);
    return res;
}

/* The folder that holds PATH (caller frees). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? xasprintf("%.*s", (int)(slash == path ? 1 : slash - path), path)
                 : xstrdup(".");
}

/* The refusal for a store this user may not open: whose it is and what to ask for. */
static int permission_denied(const char *path, Err *err) {
    struct stat sb;
    char *dir = dir_of(path);
    int have = stat(path, &sb) == 0 || stat(dir, &sb) == 0;
    char *owner = have ? identity_name_of(sb.st_uid) : xstrdup("its owner");
    err_set(err, ERR_DENIED, "%s: permission denied: this store belongs to %s and is not "
            "shared with you; ask %s to run 'easel --db %s init --shared GROUP' (a group you "
            "are in)", path, owner, owner, path);
    free(owner);
    free(dir);
    return ERR_DENIED;
}

/* A shared store (group-writable file in a setgid folder, `easel init --shared`): let this
 * process create files and folders the group can write too (run folders, checkpoints). */
static void share_umask(const char *path) {
    struct stat f, d;
    char *dir = dir_of(path);
    if (stat(path, &f) == 0 && stat(dir, &d) == 0 && (f.st_mode & S_IWGRP) &&
        (d.st_mode & S_ISGID) && f.st_gid == d.st_gid) {
        mode_t old = umask(0);
        umask(old & ~(mode_t)S_IRWXG);
    }
    free(dir);
}

/* Is the file system holding PATH out of space (for an unprivileged writer)? */
static int disk_full(const char *path) {
    struct statvfs v;
    char *dir = dir_of(path);
    int full = statvfs(dir, &v) == 0 && v.f_bavail == 0;
    free(dir);
    return full;
}

static Store *open_flags(const char *path, int flags, int create, Err *err) {
    Store *st = xcalloc(1, sizeof *st);
    st->path = xstrdup(path);
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        err_set(err, ERR_IO, "%s: cannot open store: %s", path,
                st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto out_free;
    }
    st->dir = abs_dir_of(path);
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 10000);
    /* Validate the file is a database before anything writes to it. */
    if (store_exec(st, "SELECT count(*) FROM sqlite_schema", err)) {
        int code = sqlite3_errcode(st->db);
        if (code == SQLITE_CANTOPEN || code == SQLITE_PERM || code == SQLITE_READONLY ||
            access(path, R_OK | W_OK) != 0)
            permission_denied(path, err);
        else if (code == SQLITE_NOTADB)
            err_set(err, ERR_FORMAT, "%s: not an easel store (not a SQLite database)", path);
        else /* a full disk (no room for the -shm file), an I/O error, a damaged file */
            err_set(err, ERR_IO, "%s: cannot read the store: %s%s", path,
                    sqlite3_errmsg(st->db),
                    code == SQLITE_FULL || disk_full(path)
                        ? "; the disk is full: free some space and try again"
                        : "");
        goto out_free;
    }
    if (check_identity(st, create, err))
        goto out_free;
    if (store_exec(st, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
                       "PRAGMA synchronous=NORMAL;", err))
        goto out_free;
    if (migrate(st, err))
        goto out_free;
    if (strcmp(path, ":memory:") != 0)
        share_umask(path);
    return st;
out_free:
    store_close(st);
    return NULL;
}

Store *store_open(const char *path, Err *err) {
    return open_flags(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, 1, err);
}

Store *store_open_existing(const char *path, Err *err) {
    if (strcmp(path, ":memory:") != 0 && access(path, F_OK) != 0) {
        if (errno == EACCES) {
            permission_denied(path, err);
            return NULL;
        }
        err_set(err, ERR_NOTFOUND, "%s: no store here; create one with 'easel init' or pass --db",
                path);
        return NULL;
    }
    return open_flags(path, SQLITE_OPEN_READWRITE, 0, err);
}

void store_close(Store *st) {
    if (!st)
        return;
    if (st->db) {
        if (!sqlite3_get_autocommit(st->db))
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        for (int i = 0; i < st->n_cache; i++)
            sqlite3_finalize(st->cache[i].stmt);
        free(st->cache);
        sqlite3_close_v2(st->db);
    }
    free(st->path);
    free(st->dir);
    free(st->actor);
    free(st);
}

int store_version(Store *st) {
    int v = -1;
    read_version(st, &v, NULL);
    return v;
}

const char *store_path(const Store *st) { return st->path; }
const char *store_dir(const Store *st) { return st->dir; }

/* ---- paths ----------------------------------------------------------------------------------- */

/* Lexically normalise an absolute path: collapse //, /./ and /../. */
static char *normalize_abs(const char *p) {
    size_t n = strlen(p);
    char *out = xmalloc(n + 2);
    size_t o = 0;
    const char *s = p;
    while (*s) {
        while (*s == '/')
            s++;
        if (!*s)
            break;
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 1 && s[0] == '.') {
        } else if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
        } else {
            out[o++] = '/';
            memcpy(out + o, s, len);
            o += len;
        }
        s += len;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return out;
}

static char *absolute(const char *path) {
    if (path[0] == '/')
        return normalize_abs(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return xstrdup(path);
    char *joined = xasprintf("%s/%s", cwd, path);
    char *res = normalize_abs(joined);
    free(joined);
    return res;
}

char *store_path_to_stored(const Store *st, const char *path) {
    char *abs = absolute(path);
    char *dir = normalize_abs(st->dir);
    size_t n = strlen(dir);
    char *res;
    if (strcmp(dir, "/") != 0 && strncmp(abs, dir, n) == 0 && abs[n] == '/')
        res = xstrdup(abs + n + 1);
    else
        res = xstrdup(abs);
    free(abs);
    free(dir);
    return res;
}

char *store_path_resolve(const Store *st, const char *stored) {
    if (stored[0] == '/')
        return xstrdup(stored);
    return xasprintf("%s/%s", st->dir, stored);
}
