/* store_embed — the embeddings cache. See store_embed.h.
 *
 * Floats are stored little-endian; on a big-endian host they are byte-swapped on the way in
 * and out (store_blob.c), so a store file moves between machines unchanged.
 */
#include "store_embed.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

int store_embed_get(Store *st, const char *encoder, const char *kind, const char *key,
                    float **data, int *dim, int *n_tokens, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT dim, n_tokens, data FROM embeddings WHERE encoder=?1 AND kind=?2 AND key=?3",
        err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_text(s, 1, encoder, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, key, -1, SQLITE_STATIC);
    int rc = store_step(st, s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return ERR_NOTFOUND;
    }
    if (rc != SQLITE_ROW) {
        rc = store_err(st, err, "read embedding");
        sqlite3_reset(s);
        return rc;
    }
    int d = sqlite3_column_int(s, 0), n = sqlite3_column_int(s, 1);
    const void *blob = sqlite3_column_blob(s, 2);
    size_t bytes = (size_t)sqlite3_column_bytes(s, 2);
    if (d <= 0 || n <= 0 || bytes != (size_t)d * (size_t)n * 4) {
        sqlite3_reset(s);
        return err_set(err, ERR_FORMAT,
                       "%s: cached %s embedding %s/%s has %zu bytes, expected %d x %d floats; "
                       "clear the cache with 'easel embed --clear %s'",
                       store_path(st), kind, encoder, key, bytes, n, d, encoder);
    }
    float *out = malloc(bytes);
    if (!out) {
        sqlite3_reset(s);
        return err_set(err, ERR_NOMEM, "out of memory reading an embedding (%zu bytes)", bytes);
    }
    memcpy(out, blob, bytes);
    sqlite3_reset(s);
    store_blob_host(out, bytes / 4);
    *data = out;
    *dim = d;
    *n_tokens = n;
    return 0;
}

int store_embed_put(Store *st, const char *encoder, const char *kind, const char *key,
                    const float *data, int dim, int n_tokens, Err *err) {
    ASSERT(dim > 0 && n_tokens > 0);
    size_t bytes = (size_t)dim * (size_t)n_tokens * 4;
    float *swapped;
    const void *blob = store_blob_le(data, bytes / 4, &swapped);
    sqlite3_stmt *s = store_stmt(st,
        "INSERT OR REPLACE INTO embeddings(encoder, kind, key, dim, n_tokens, data, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", err);
    int rc = 0;
    if (!s) {
        rc = ERR_DB;
        goto out;
    }
    sqlite3_bind_text(s, 1, encoder, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, key, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, dim);
    sqlite3_bind_int(s, 5, n_tokens);
    sqlite3_bind_blob(s, 6, blob, (int)bytes, SQLITE_STATIC);
    sqlite3_bind_double(s, 7, base_wall());
    if (store_step(st, s) != SQLITE_DONE)
        rc = store_err(st, err, "store embedding");
    sqlite3_reset(s);
out:
    free(swapped);
    return rc;
}

long store_embed_count(Store *st, const char *encoder, const char *kind, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT count(*) FROM embeddings WHERE (?1 IS NULL OR encoder=?1)"
        " AND (?2 IS NULL OR kind=?2)", err);
    if (!s)
        return -1;
    store_bind_text(s, 1, encoder);
    store_bind_text(s, 2, kind);
    long n = -1;
    if (store_step(st, s) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(s, 0);
    else
        store_err(st, err, "count embeddings");
    sqlite3_reset(s);
    return n;
}

long store_embed_clear(Store *st, const char *encoder, Err *err) {
    sqlite3_stmt *s = store_stmt(st, "DELETE FROM embeddings WHERE encoder=?1", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_text(s, 1, encoder, -1, SQLITE_STATIC);
    long n;
    if (store_step(st, s) == SQLITE_DONE)
        n = sqlite3_changes(sqlite3_db_handle(s));
    else
        n = store_err(st, err, "clear embeddings");
    sqlite3_reset(s);
    return n;
}
