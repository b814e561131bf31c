/* store_latents — the VAE latent cache. See store_latents.h.
 *
 * Floats are stored little-endian; on a big-endian host they are byte-swapped on the way in
 * and out (store_blob.c), so a store file moves between machines unchanged.
 */
#include "store_latents.h"
#include "store_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static size_t shape_floats(const StoreLatentShape *sh) {
    return (size_t)sh->channels * (size_t)sh->lh * (size_t)sh->lw;
}

int store_latents_get(Store *st, const char *sha256, const char *vae, int width, int height,
                      const StoreLatentShape *shape, float *out, Err *err) {
    ASSERT(shape->channels > 0 && shape->lh > 0 && shape->lw > 0);
    sqlite3_stmt *s = store_stmt(st,
        "SELECT channels, lh, lw, data FROM latents"
        " WHERE image_sha256=?1 AND vae=?2 AND width=?3 AND height=?4",
        err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_text(s, 1, sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, vae, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, width);
    sqlite3_bind_int(s, 4, height);
    int rc = store_step(st, s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return ERR_NOTFOUND;
    }
    if (rc != SQLITE_ROW) {
        rc = store_err(st, err, "read cached latents");
        sqlite3_reset(s);
        return rc;
    }
    StoreLatentShape got = {sqlite3_column_int(s, 0), sqlite3_column_int(s, 1),
                            sqlite3_column_int(s, 2)};
    size_t n = shape_floats(shape);
    size_t bytes = (size_t)sqlite3_column_bytes(s, 3);
    if (got.channels != shape->channels || got.lh != shape->lh || got.lw != shape->lw ||
        bytes != n * 4) {
        sqlite3_reset(s);
        return err_set(err, ERR_FORMAT,
                       "%s: cached latents of image %.12s for VAE %.12s at %dx%d are %dx%dx%d "
                       "(%zu bytes), expected %dx%dx%d; a put of the right ones replaces "
                       "them",
                       store_path(st), sha256, vae, width, height, got.channels, got.lh, got.lw,
                       bytes, shape->channels, shape->lh, shape->lw);
    }
    memcpy(out, sqlite3_column_blob(s, 3), bytes);
    sqlite3_reset(s);
    store_blob_host(out, n);
    return 0;
}

int store_latents_put(Store *st, const char *sha256, const char *vae, int width, int height,
                      const StoreLatentShape *shape, const float *data, Err *err) {
    ASSERT(shape->channels > 0 && shape->lh > 0 && shape->lw > 0);
    size_t n = shape_floats(shape), bytes = n * 4;
    if (bytes > (size_t)INT32_MAX)
        return err_set(err, ERR_USAGE, "latents of %zu bytes are too large to cache", bytes);
    float *swapped;
    const void *blob = store_blob_le(data, n, &swapped);
    sqlite3_stmt *s = store_stmt(st,
        "INSERT OR REPLACE INTO latents(image_sha256, vae, width, height, channels, lh, lw,"
        " data, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        err);
    int rc = 0;
    if (!s) {
        rc = ERR_DB;
        goto out;
    }
    sqlite3_bind_text(s, 1, sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, vae, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, width);
    sqlite3_bind_int(s, 4, height);
    sqlite3_bind_int(s, 5, shape->channels);
    sqlite3_bind_int(s, 6, shape->lh);
    sqlite3_bind_int(s, 7, shape->lw);
    sqlite3_bind_blob(s, 8, blob, (int)bytes, SQLITE_STATIC);
    sqlite3_bind_double(s, 9, base_wall());
    rc = store_step_done(st, s, "store latents", err);
out:
    free(swapped);
    return rc;
}

long store_latents_count(Store *st, const char *vae, Err *err) {
    sqlite3_stmt *s =
        store_stmt(st, "SELECT count(*) FROM latents WHERE (?1 IS NULL OR vae=?1)", err);
    if (!s)
        return -1;
    store_bind_text(s, 1, vae);
    long n = -1;
    if (store_step(st, s) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(s, 0);
    else
        store_err(st, err, "count cached latents");
    sqlite3_reset(s);
    return n;
}

long store_latents_clear(Store *st, const char *vae, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "DELETE FROM latents WHERE (?1 IS NULL OR vae=?1)", err);
    if (!s)
        return ERR_DB;
    store_bind_text(s, 1, vae);
    int rc = store_step_done(st, s, "clear cached latents", err);
    return rc ? rc : (long)sqlite3_changes(st->db);
}
