/* store — the one SQLite file that holds a workspace: prompts, images, annotators, aspects,
 * ratings (with history), flags, preference pairs, runs and their metrics, jobs, checkpoints,
 * models, embeddings and scores.
 *
 * All SQL of easel lives in src/store*.c; everyone else calls these typed functions and sees
 * plain structs. The schema is versioned with PRAGMA user_version and migrated on open, under
 * a write lock, so several processes may open one store at once.
 *
 * Thread safety: a Store is one connection; use it from one thread at a time. Each thread
 * opens its own Store (WAL mode, busy timeout), as do several processes — annotators over
 * SSH on one machine. Write transactions are BEGIN IMMEDIATE and retried with backoff, so
 * "database is locked" does not reach users unless the store stays locked for minutes.
 *
 * Domain functions are declared in the store_*.h headers (store_catalog.h, store_ratings.h,
 * store_jobs.h, ...), each implemented in the .c of the same name.
 */
#ifndef EASEL_STORE_H
#define EASEL_STORE_H

#include "err.h"

typedef struct Store Store;

/* Number of the newest schema version this build knows. */
int store_schema_version(void);

/* Open (creating if missing or empty) and migrate the store at PATH (":memory:" for tests);
 * only `easel init` and tests create stores. Returns NULL and sets err on failure: not a
 * SQLite file, a SQLite file that is not an easel store (left untouched), newer schema than
 * this build, permission denied, unwritable folder. The caller frees with store_close.
 * A store restored with `sqlite3 old.db .dump | sqlite3 new.db` opens at its version. */
Store *store_open(const char *path, Err *err);

/* Open only if PATH exists and is an easel store; never creates, and changes nothing in a
 * file that is not an easel store (not even its journal mode). Every command but init.
 * A store this user may not read and write is ERR_DENIED, naming its owner and saying to
 * ask for `easel init --shared GROUP`. On a shared store (group-writable, in a setgid
 * folder) both opens clear the group bits of the process umask, so run folders and files
 * this process makes stay writable by the group. */
Store *store_open_existing(const char *path, Err *err);

void store_close(Store *st); /* NULL allowed; rolls back an open transaction */

/* Schema version the file is at (after open, always store_schema_version()). */
int store_version(Store *st);

/* Path as given, and the absolute folder that holds the store file ("." for :memory:).
 * Borrowed; valid until store_close. */
const char *store_path(const Store *st);
const char *store_dir(const Store *st);

/* Write transactions. store_begin takes the write lock (BEGIN IMMEDIATE), waiting with
 * backoff while other connections hold it. Nested calls are counted: only the outermost
 * commit commits; a rollback at any depth rolls back the whole transaction. */
int store_begin(Store *st, Err *err);
int store_commit(Store *st, Err *err);
void store_rollback(Store *st);

/* How long one call on this connection may wait for another process's write lock. MS > 0:
 * the busy timeout becomes MS and a write that still finds the store locked returns ERR_BUSY
 * at once (no retries), so a UI loop never blocks for longer than MS per try and can retry
 * on its own schedule. MS 0 restores the default (a 10 s timeout, retried for minutes). */
void store_set_busy_limit(Store *st, int ms);

/* Image paths. A path is stored relative to store_dir() when the file lies inside that tree,
 * else absolute, so a workspace folder can be moved whole. store_path_to_stored returns that
 * form for an absolute or cwd-relative PATH; store_path_resolve turns a stored path back into
 * one that opens from the current directory. Both return a new string the caller frees. */
char *store_path_to_stored(const Store *st, const char *path);
char *store_path_resolve(const Store *st, const char *stored);

#endif
