/* store_int — private to src/store*.c: the Store struct, the statement cache, helpers.
 * Nothing outside src/store*.c includes this file (check-layers enforces it). */
#ifndef EASEL_STORE_INT_H
#define EASEL_STORE_INT_H

#include <sqlite3.h>

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

/* Set err from the connection's current error, with a context prefix. Returns ERR_DB, or
 * ERR_BUSY when the store stayed locked, ERR_CONFLICT for a constraint violation. */
int store_err(Store *st, Err *err, const char *context);

/* Bind a C string or NULL. */
int store_bind_text(sqlite3_stmt *stmt, int i, const char *s);

/* Column as a new string (NULL for SQL NULL); caller frees. */
char *store_col_text(sqlite3_stmt *stmt, int i);

#endif
