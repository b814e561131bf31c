/* store_int — private to src/store*.c: the Store struct, the statement cache, helpers.
 * Nothing outside src/store*.c includes this file (check-layers enforces it). */
#ifndef EASEL_STORE_INT_H
#define EASEL_STORE_INT_H

#include <sqlite3.h>
#include <stddef.h>

#include "store.h"


struct Store {
    sqlite3 *db;
    char *path;        /* as given */
    char *dir;         /* absolute folder of the file, "." for :memory: */
    int tx_depth;      /* nesting of store_begin */
    int tx_failed;     /* an inner rollback poisoned the outer transaction */
    int busy_limit_ms; /* store_set_busy_limit: 0 = wait and retry (minutes) */
    char *actor;       /* login this connection acts for (store_set_actor); NULL = own */
    /* The statement cache: one prepared statement per SQL string, kept until store_close and
     * never evicted, so a statement a caller is stepping can never be finalized under it.
     * Bounded by the number of SQL literals in src/store*.c (a few hundred). */
    struct StoreStmt {
        const char *sql;      /* key: the address of a static SQL string */
        sqlite3_stmt *stmt;
    } *cache;
    int n_cache, cap_cache;
};

/* A prepared statement for SQL, from the cache, reset and with bindings cleared.
 * SQL must be a string literal or otherwise outlive the Store (its address is the key).
 * Returns NULL and sets err on a prepare error (a bug in our SQL, or a corrupt file). */
sqlite3_stmt *store_stmt(Store *st, const char *sql, Err *err);

/* Run SQL that returns no rows (one or more statements, no parameters). */
int store_exec(Store *st, const char *sql, Err *err);

/* Step a statement, waiting out SQLITE_BUSY; returns the sqlite3_step code. */
int store_step(Store *st, sqlite3_stmt *stmt);

/* Step S, a statement that returns no rows, then reset it. Returns 0, or store_err's code
 * with WHAT as the context ("add job"). sqlite3_changes and the last rowid stay readable. */
int store_step_done(Store *st, sqlite3_stmt *s, const char *what, Err *err);

/* Step S to its first row: 0 with S on the row (read the columns, then sqlite3_reset), or,
 * with S reset, ERR_NOTFOUND when there is none (err says "WHAT: no such row"; callers that
 * word it better set their own) or store_err's code. */
int store_step_row(Store *st, sqlite3_stmt *s, const char *what, Err *err);

/* Set err from the connection's current error, with a context prefix. Returns ERR_DB, or
 * ERR_BUSY when the store stayed locked, ERR_CONFLICT for a constraint violation. */
int store_err(Store *st, Err *err, const char *context);

/* Bind a C string or NULL. */
int store_bind_text(sqlite3_stmt *stmt, int i, const char *s);

/* Column as a new string (NULL for SQL NULL); caller frees. */
char *store_col_text(sqlite3_stmt *stmt, int i);

/* Fill the zeroed element DST from the current row of S (CTX: the caller's). */
typedef void (*StoreRowFn)(sqlite3_stmt *s, void *dst, void *ctx);
/* Free what a StoreRowFn put into one element (not the element itself). */
typedef void (*StoreElemFn)(void *elem);

/* The list loop, written once: step the prepared, bound statement S to its end, reading each
 * row with ROW into a new ELEM-byte element at the end of a growing array. OUT is the address
 * of the caller's `T *` (T * and void * share one representation, as POSIX requires). On
 * success it holds the array (NULL when there are no rows; the caller frees it) and *N its
 * length. On failure DEINIT (may be NULL) runs on each element read, the array is freed, the
 * pointer is NULL, *N is 0 and the error (WHAT: the context, e.g. "list prompts") is
 * returned. S is reset either way. S may be NULL (store_stmt failed and set err): ERR_DB and
 * an empty list, so that a query without parameters is one call. */
int store_read_list(Store *st, sqlite3_stmt *s, size_t elem, StoreRowFn row, void *ctx,
                    StoreElemFn deinit, void *out, size_t *n, const char *what, Err *err);

/* The one-row read, written once: step the prepared, bound statement S to its first row and
 * read it with ROW into DST. Returns 0; ERR_NOTFOUND, with err's message made from the format
 * NOTFOUND, when there is no row; or store_err's code with WHAT as the context. S is reset
 * either way; S may be NULL (store_stmt failed and set err): ERR_DB. */
int store_read_one(Store *st, sqlite3_stmt *s, StoreRowFn row, void *ctx, void *dst,
                   const char *what, Err *err, const char *notfound, ...)
    __attribute__((format(printf, 8, 9)));

/* StoreRowFns for a one-column row: column 0 into the int64_t / double at DST. */
void store_row_int64(sqlite3_stmt *s, void *dst, void *ctx);
void store_row_double(sqlite3_stmt *s, void *dst, void *ctx);

/* The list free, written once: DEINIT (may be NULL) on each of the N ELEM-byte elements of
 * ARR, then ARR itself. ARR may be NULL; N <= 0 frees the array only. Every public
 * store_*_free of a list is this call. */
void store_free_list(void *arr, long long n, size_t elem, StoreElemFn deinit);

/* Float blobs (the embeddings and latent caches; dedup16, store_blob.c) are stored
 * little-endian, so a store file moves between machines unchanged. store_blob_le: the N
 * floats of DATA as the blob to bind (DATA itself on a little-endian host, else a swapped copy
 * put in *SWAPPED for the caller to free; NULL there otherwise). store_blob_host: the N floats
 * read from a blob into OUT put in the host's order, in place. */
const void *store_blob_le(const float *data, size_t n, float **swapped);
void store_blob_host(float *out, size_t n);

#endif
