/* store_catalog — prompts, images, annotators, aspects and counts. See store_catalog.h.
 *
 * Design: one cached prepared statement per query (store_stmt); every read copies its columns
 * out before the statement is reset, so nothing returned borrows from SQLite.
 * Invariant: nothing here deletes a row or changes an image's path; a prompt's text changes
 * only from empty (a prompt a ratings import created by id alone) to its first real text.
 * Retiring an image sets its retired* columns; its ratings stay untouched.
 */
#include "store_catalog.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* Run a statement that returns no rows. Returns 0 or the store error. */
/* A query with one integer result (count(*) etc.). */
static int query_int(Store *st, const char *sql, int64_t *out, Err *err) {
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    int rc = store_step_row(st, s, "count", err);
    if (rc)
        return rc;
    *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return 0;
}

/* ---- prompts -------------------------------------------------------------------------------- */

#define PROMPT_COLS "SELECT id, ext_id, text FROM prompts "

static void read_prompt(sqlite3_stmt *s, StorePrompt *p) {
    p->id = sqlite3_column_int64(s, 0);
    p->ext_id = store_col_text(s, 1);
    p->text = store_col_text(s, 2);
}

static void prompt_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    read_prompt(s, dst);
}

/* Step S (bound) expecting at most one prompt row. */
static int one_prompt(Store *st, sqlite3_stmt *s, StorePrompt *out, Err *err, const char *what) {
    memset(out, 0, sizeof *out);
    return store_read_one(st, s, prompt_row, NULL, out, what, err, "%s: no such prompt", what);
}

int store_prompt_by_ext(Store *st, const char *ext_id, StorePrompt *out, Err *err) {
    sqlite3_stmt *s = store_stmt(st, PROMPT_COLS "WHERE ext_id = ?1", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, ext_id);
    return one_prompt(st, s, out, err, ext_id);
}

int store_prompt_get(Store *st, int64_t id, StorePrompt *out, Err *err) {
    sqlite3_stmt *s = store_stmt(st, PROMPT_COLS "WHERE id = ?1", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    return one_prompt(st, s, out, err, "prompt by id");
}

int store_prompt_by_text(Store *st, const char *text, StorePrompt *out, Err *err) {
    sqlite3_stmt *s = store_stmt(st, PROMPT_COLS "WHERE text = ?1 ORDER BY id LIMIT 1", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, text);
    return one_prompt(st, s, out, err, "prompt by text");
}

int store_prompt_add(Store *st, const char *ext_id, const char *text, int64_t *id, int *added,
                     Err *err) {
    if (added)
        *added = 0;
    StorePrompt p;
    int rc = store_prompt_by_ext(st, ext_id, &p, err);
    if (rc == 0) {
        int same = strcmp(p.text, text) == 0, fill = !p.text[0] && text[0];
        int64_t pid = p.id;
        if (id)
            *id = pid;
        store_prompt_deinit(&p);
        if (fill) {
            sqlite3_stmt *u =
                store_stmt(st, "UPDATE prompts SET text = ?2 WHERE id = ?1 AND text = ''", err);
            if (!u)
                return ERR_DB;
            sqlite3_bind_int64(u, 1, pid);
            store_bind_text(u, 2, text);
            return store_step_done(st, u, "fill in prompt text", err);
        }
        if (!same)
            return err_set(err, ERR_CONFLICT,
                           "prompt %s already exists with a different text", ext_id);
        return 0;
    }
    if (rc != ERR_NOTFOUND)
        return rc;
    err_clear(err);
    sqlite3_stmt *s = store_stmt(
        st, "INSERT INTO prompts(ext_id, text, created_at) VALUES (?1, ?2, ?3)", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, ext_id);
    store_bind_text(s, 2, text);
    sqlite3_bind_double(s, 3, base_wall());
    if ((rc = store_step_done(st, s, "add prompt", err)))
        return rc;
    if (id)
        *id = sqlite3_last_insert_rowid(st->db);
    if (added)
        *added = 1;
    return 0;
}

static void prompt_deinit(void *p) {
    store_prompt_deinit(p);
}

int store_prompts_list(Store *st, StorePrompt **out, size_t *n, Err *err) {
    return store_read_list(st, store_stmt(st, PROMPT_COLS "ORDER BY id", err), sizeof **out,
                           prompt_row, NULL, prompt_deinit, out, n, "list prompts", err);
}

void store_prompt_deinit(StorePrompt *p) {
    if (!p)
        return;
    free(p->ext_id);
    free(p->text);
    memset(p, 0, sizeof *p);
}

void store_prompts_free(StorePrompt *p, size_t n) {
    store_free_list(p, n, sizeof *p, prompt_deinit);
}

/* ---- images --------------------------------------------------------------------------------- */

#define IMAGE_COLS                                                                             \
    "SELECT id, prompt_id, path, seed, generator, width, height, sha256, missing, retired,"    \
    " retired_at, retired_by, retired_reason FROM images "

static void read_image(sqlite3_stmt *s, StoreImage *img) {
    memset(img, 0, sizeof *img);
    img->id = sqlite3_column_int64(s, 0);
    img->prompt_id = sqlite3_column_int64(s, 1); /* NULL reads as 0 */
    img->path = store_col_text(s, 2);
    img->has_seed = sqlite3_column_type(s, 3) != SQLITE_NULL;
    img->seed = sqlite3_column_int64(s, 3);
    img->generator = store_col_text(s, 4);
    img->width = sqlite3_column_int(s, 5);
    img->height = sqlite3_column_int(s, 6);
    img->sha256 = store_col_text(s, 7);
    img->missing = sqlite3_column_int(s, 8);
    img->retired = sqlite3_column_int(s, 9);
    img->retired_at = sqlite3_column_double(s, 10);
    img->retired_by = store_col_text(s, 11);
    img->retired_reason = store_col_text(s, 12);
}

static void image_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    read_image(s, dst);
}

static int one_image(Store *st, sqlite3_stmt *s, StoreImage *out, Err *err, const char *what) {
    memset(out, 0, sizeof *out);
    return store_read_one(st, s, image_row, NULL, out, what, err, "%s: no such image", what);
}

int store_image_get(Store *st, int64_t id, StoreImage *out, Err *err) {
    sqlite3_stmt *s = store_stmt(st, IMAGE_COLS "WHERE id = ?1", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    return one_image(st, s, out, err, "image by id");
}

int store_image_by_path(Store *st, const char *stored_path, StoreImage *out, Err *err) {
    sqlite3_stmt *s = store_stmt(st, IMAGE_COLS "WHERE path = ?1", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, stored_path);
    return one_image(st, s, out, err, stored_path);
}

int store_image_by_sha256(Store *st, const char *sha256, int64_t prefer_prompt, StoreImage *out,
                          Err *err) {
    sqlite3_stmt *s = store_stmt(
        st, IMAGE_COLS "WHERE sha256 = ?1 ORDER BY coalesce(prompt_id = ?2, 0) DESC, id LIMIT 1",
        err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, sha256);
    sqlite3_bind_int64(s, 2, prefer_prompt);
    return one_image(st, s, out, err, "image by sha256");
}

static void bind_nullable_id(sqlite3_stmt *s, int i, int64_t v) {
    if (v > 0)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

int store_image_add(Store *st, const StoreImage *img, int64_t *id, Err *err) {
    ASSERT(img->path != NULL);
    sqlite3_stmt *s = store_stmt(st,
                                 "INSERT INTO images(prompt_id, path, seed, generator, width,"
                                 " height, sha256, missing, created_at)"
                                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                                 err);
    if (!s)
        return ERR_DB;
    bind_nullable_id(s, 1, img->prompt_id);
    store_bind_text(s, 2, img->path);
    if (img->has_seed)
        sqlite3_bind_int64(s, 3, img->seed);
    store_bind_text(s, 4, img->generator);
    bind_nullable_id(s, 5, img->width);
    bind_nullable_id(s, 6, img->height);
    store_bind_text(s, 7, img->sha256);
    sqlite3_bind_int(s, 8, img->missing ? 1 : 0);
    sqlite3_bind_double(s, 9, base_wall());
    int rc = store_step(st, s);
    if (rc != SQLITE_DONE) {
        int code = store_err(st, err, img->path);
        sqlite3_reset(s);
        return code;
    }
    sqlite3_reset(s);
    if (id)
        *id = sqlite3_last_insert_rowid(st->db);
    return 0;
}

int store_image_fill(Store *st, int64_t id, const StoreImage *meta, int *changed, Err *err) {
    if (changed)
        *changed = 0;
    StoreImage cur;
    int rc = store_image_get(st, id, &cur, err);
    if (rc)
        return rc;
    if (meta->prompt_id > 0 && cur.prompt_id > 0 && meta->prompt_id != cur.prompt_id) {
        rc = err_set(err, ERR_CONFLICT, "%s belongs to another prompt in the store", cur.path);
        goto out;
    }
    if (meta->has_seed && cur.has_seed && meta->seed != cur.seed) {
        rc = err_set(err, ERR_CONFLICT, "%s has seed %lld in the store, not %lld", cur.path,
                     (long long)cur.seed, (long long)meta->seed);
        goto out;
    }
    int want = (meta->prompt_id > 0 && cur.prompt_id == 0) || (meta->has_seed && !cur.has_seed) ||
               (meta->generator && !cur.generator) || (meta->width > 0 && cur.width == 0) ||
               (meta->height > 0 && cur.height == 0) || (meta->sha256 && !cur.sha256) ||
               (!meta->missing != !cur.missing);
    if (!want)
        goto out;
    sqlite3_stmt *s = store_stmt(st,
                                 "UPDATE images SET prompt_id = coalesce(prompt_id, ?2),"
                                 " seed = coalesce(seed, ?3), generator = coalesce(generator, ?4),"
                                 " width = coalesce(width, ?5), height = coalesce(height, ?6),"
                                 " sha256 = coalesce(sha256, ?7), missing = ?8 WHERE id = ?1",
                                 err);
    if (!s) {
        rc = ERR_DB;
        goto out;
    }
    sqlite3_bind_int64(s, 1, id);
    bind_nullable_id(s, 2, meta->prompt_id);
    if (meta->has_seed)
        sqlite3_bind_int64(s, 3, meta->seed);
    store_bind_text(s, 4, meta->generator);
    bind_nullable_id(s, 5, meta->width);
    bind_nullable_id(s, 6, meta->height);
    store_bind_text(s, 7, meta->sha256);
    sqlite3_bind_int(s, 8, meta->missing ? 1 : 0);
    if ((rc = store_step_done(st, s, "update image", err)) == 0 && changed)
        *changed = 1;
out:
    store_image_deinit(&cur);
    return rc;
}

static int read_images(Store *st, sqlite3_stmt *s, StoreImage **out, size_t *n, Err *err);

int store_images_list(Store *st, int64_t prompt_id, StoreImage **out, size_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s =
        prompt_id > 0
            ? store_stmt(st, IMAGE_COLS "WHERE prompt_id = ?1 AND retired = 0 ORDER BY id", err)
            : store_stmt(st, IMAGE_COLS "WHERE retired = 0 ORDER BY id", err);
    if (!s)
        return ERR_DB;
    if (prompt_id > 0)
        sqlite3_bind_int64(s, 1, prompt_id);
    return read_images(st, s, out, n, err);
}

int store_images_select(Store *st, StoreImageFilter filter, StoreImage **out, size_t *n,
                        Err *err) {
    *out = NULL;
    *n = 0;
    static const char all[] = IMAGE_COLS "ORDER BY id";
    static const char retired[] = IMAGE_COLS "WHERE retired != 0 ORDER BY id";
    static const char missing[] = IMAGE_COLS "WHERE missing != 0 ORDER BY id";
    static const char active[] = IMAGE_COLS "WHERE retired = 0 ORDER BY id";
    const char *sql = filter == STORE_IMAGES_RETIRED   ? retired
                      : filter == STORE_IMAGES_MISSING ? missing
                      : filter == STORE_IMAGES_ACTIVE  ? active
                                                       : all;
    sqlite3_stmt *s = store_stmt(st, sql, err);
    if (!s)
        return ERR_DB;
    return read_images(st, s, out, n, err);
}

int store_image_retire(Store *st, int64_t id, int retire, const char *by, const char *reason,
                       int *changed, Err *err) {
    if (changed)
        *changed = 0;
    StoreImage cur;
    int rc = store_image_get(st, id, &cur, err);
    if (rc)
        return rc;
    int was = cur.retired;
    store_image_deinit(&cur);
    if (!was == !retire)
        return 0;
    sqlite3_stmt *s =
        retire ? store_stmt(st,
                            "UPDATE images SET retired = 1, retired_at = ?2, retired_by = ?3,"
                            " retired_reason = ?4 WHERE id = ?1",
                            err)
               : store_stmt(st,
                            "UPDATE images SET retired = 0, retired_at = NULL, retired_by = NULL,"
                            " retired_reason = NULL WHERE id = ?1",
                            err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    if (retire) {
        sqlite3_bind_double(s, 2, base_wall());
        store_bind_text(s, 3, by ? by : "");
        store_bind_text(s, 4, reason && *reason ? reason : NULL);
    }
    if ((rc = store_step_done(st, s, retire ? "retire image" : "unretire image", err)))
        return rc;
    if (changed)
        *changed = 1;
    return 0;
}

int store_image_rating_count(Store *st, int64_t id, int64_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "SELECT count(*) FROM ratings WHERE image_id = ?1", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    int rc = store_step_row(st, s, "count ratings", err);
    if (rc)
        return rc;
    *n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return 0;
}

static void image_deinit(void *img) {
    store_image_deinit(img);
}

static int read_images(Store *st, sqlite3_stmt *s, StoreImage **out, size_t *n, Err *err) {
    return store_read_list(st, s, sizeof **out, image_row, NULL, image_deinit, out, n,
                           "list images", err);
}

void store_image_deinit(StoreImage *img) {
    if (!img)
        return;
    free(img->path);
    free(img->generator);
    free(img->sha256);
    free(img->retired_by);
    free(img->retired_reason);
    memset(img, 0, sizeof *img);
}

void store_images_free(StoreImage *img, size_t n) {
    store_free_list(img, n, sizeof *img, image_deinit);
}

/* ---- annotators ------------------------------------------------------------------------------ */

int store_annotator_find(Store *st, const char *name, int64_t *id, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "SELECT id FROM annotators WHERE name = ?1", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, name);
    return store_read_one(st, s, store_row_int64, NULL, id, "find annotator", err,
                          "no annotator named '%s'", name);
}

int store_annotator_ensure(Store *st, const char *name, int64_t *id, Err *err) {
    if (!name || !*name)
        return err_set(err, ERR_FORMAT, "annotator name is empty");
    if (!name[strspn(name, " \t\r\n\v\f")])
        return err_set(err, ERR_FORMAT, "annotator name is blank (only spaces); give a name");
    int rc = store_annotator_find(st, name, id, err);
    if (rc != ERR_NOTFOUND)
        return rc;
    err_clear(err);
    sqlite3_stmt *s =
        store_stmt(st, "INSERT INTO annotators(name, created_at) VALUES (?1, ?2)", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, name);
    sqlite3_bind_double(s, 2, base_wall());
    if ((rc = store_step_done(st, s, "add annotator", err)))
        return rc;
    *id = sqlite3_last_insert_rowid(st->db);
    return 0;
}

static void annotator_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreAnnotator *a = dst;
    a->id = sqlite3_column_int64(s, 0);
    a->name = store_col_text(s, 1);
}

static void annotator_deinit(void *a) {
    free(((StoreAnnotator *)a)->name);
}

int store_annotators_list(Store *st, StoreAnnotator **out, size_t *n, Err *err) {
    return store_read_list(st, store_stmt(st, "SELECT id, name FROM annotators ORDER BY name", err),
                           sizeof **out, annotator_row, NULL, annotator_deinit, out, n,
                           "list annotators", err);
}

void store_annotators_free(StoreAnnotator *a, size_t n) {
    store_free_list(a, n, sizeof *a, annotator_deinit);
}

/* ---- aspects --------------------------------------------------------------------------------- */

static void aspect_row(sqlite3_stmt *s, void *dst, void *ctx) {
    size_t *pos = ctx;
    StoreAspect *a = dst;
    a->id = sqlite3_column_int64(s, 0);
    a->position = (int)(*pos)++; /* dense, whatever gaps the column has */
    a->name = store_col_text(s, 2);
    a->rubric = store_col_text(s, 3);
}

static void aspect_deinit(void *elem) {
    StoreAspect *a = elem;
    free(a->name);
    free(a->rubric);
}

int store_aspects_list(Store *st, StoreAspect **out, size_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s =
        store_stmt(st, "SELECT id, position, name, rubric FROM aspects ORDER BY position, id", err);
    if (!s)
        return ERR_DB;
    size_t pos = 0;
    return store_read_list(st, s, sizeof **out, aspect_row, &pos, aspect_deinit, out, n,
                           "list aspects", err);
}

void store_aspects_free(StoreAspect *a, size_t n) {
    store_free_list(a, n, sizeof *a, aspect_deinit);
}

/* ---- counts ---------------------------------------------------------------------------------- */

static void aspect_count_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreAspectCount *a = dst;
    a->name = store_col_text(s, 0);
    a->n_ratings = sqlite3_column_int64(s, 1);
    a->n_images = sqlite3_column_int64(s, 2);
}

static void aspect_count_deinit(void *a) {
    free(((StoreAspectCount *)a)->name);
}

int store_counts(Store *st, StoreCounts *out, Err *err) {
    memset(out, 0, sizeof *out);
    struct {
        const char *sql;
        int64_t *dst;
    } q[] = {
        {"SELECT count(*) FROM prompts", &out->prompts},
        {"SELECT count(*) FROM images", &out->images},
        {"SELECT count(*) FROM images WHERE missing != 0", &out->images_missing},
        {"SELECT count(*) FROM images WHERE retired != 0", &out->images_retired},
        {"SELECT count(DISTINCT image_id) FROM ratings", &out->images_rated},
        {"SELECT count(*) FROM annotators", &out->annotators},
        {"SELECT count(*) FROM ratings", &out->ratings},
        {"SELECT count(*) FROM rating_history", &out->rating_edits},
        {"SELECT count(*) FROM pairs", &out->pairs},
        {"SELECT count(*) FROM runs", &out->runs},
        {"SELECT count(*) FROM jobs", &out->jobs},
        {"SELECT count(*) FROM jobs WHERE state = 'queued'", &out->jobs_queued},
        {"SELECT count(*) FROM jobs WHERE state = 'running'", &out->jobs_running},
    };
    int rc;
    for (size_t i = 0; i < ARRAY_LEN(q); i++)
        if ((rc = query_int(st, q[i].sql, q[i].dst, err)))
            return rc;
    sqlite3_stmt *s = store_stmt(st,
                                 "SELECT a.name, count(r.id), count(DISTINCT r.image_id)"
                                 " FROM aspects a LEFT JOIN ratings r ON r.aspect_id = a.id"
                                 " GROUP BY a.id ORDER BY a.position, a.id",
                                 err);
    if (!s)
        return ERR_DB;
    return store_read_list(st, s, sizeof *out->aspects, aspect_count_row, NULL,
                           aspect_count_deinit, &out->aspects, &out->n_aspects,
                           "count ratings per aspect", err);
}

void store_counts_deinit(StoreCounts *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->n_aspects; i++)
        free(c->aspects[i].name);
    free(c->aspects);
    memset(c, 0, sizeof *c);
}
