/* trust — who may do what on a store that several Unix users share. Every rule is here;
 * callers (the job queue, the worker, the CLI, exports, the Quality screen) only ask.
 *
 * The model (doc/annotators.md says it for users):
 *   - The store's OWNER is the Unix owner of the store file. Only the owner changes store
 *     settings (blind rating), grants roles and adds output roots.
 *   - A job records the Unix user who queued it. A worker runs only jobs its own user
 *     queued, plus those of users it was told to accept (`easel worker --accept-user NAME`).
 *     A job of unknown origin (queued before schema 2) counts as the owner's.
 *   - Every path a job reads or writes must resolve (symlinks followed, for the part that
 *     exists) inside the workspace (the store's folder) or under an output root the owner
 *     configured. Checked when the job is queued and again when it runs, because anyone who
 *     can write the store can also edit a queued job's parameters.
 *   - Blind rating (setting 'blind' = 'on'): an annotator sees only their own ratings; the
 *     per-annotator views (Quality screen, per-annotator exports, agreement detail) and
 *     rating under another annotator's name need the reviewer role. The owner always has it.
 * What this cannot do: anyone with write access to the file can open it with sqlite3 and
 * change anything, these rules included. They protect against honest colleagues and
 * accidents, and keep a worker from being a confused deputy for the ordinary commands.
 *
 * Thread safety: as store.h (one Store per thread); the functions keep no state.
 */
#ifndef EASEL_TRUST_H
#define EASEL_TRUST_H

#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "store.h"

/* ---- the owner --------------------------------------------------------------------------- */

/* The Unix owner of the store file into *uid. ERR_IO when it cannot be read (":memory:" is
 * owned by this process). */
int trust_store_owner(const Store *st, uid_t *uid, Err *err);

/* 0 when this process's user owns the store; else ERR_DENIED: "only the store's owner (NAME)
 * may WHAT". */
int trust_require_owner(const Store *st, const char *what, Err *err);

/* ---- paths ------------------------------------------------------------------------------- */

/* PATH made absolute (against the current folder) with its longest existing prefix
 * resolved by the kernel's rules (symlinks followed, "." and ".." applied) and the rest
 * appended. NULL when a component is a symlink whose target is missing (writing through it
 * would create a file elsewhere) or a prefix cannot be read. Caller frees. */
char *trust_resolve_path(const char *path);

/* 0 when PATH resolves inside the workspace or under an output root of ST; else ERR_DENIED
 * naming WHAT ("export --out"), the resolved path and what to do. An empty PATH is 0. */
int trust_check_path(Store *st, const char *what, const char *path, Err *err);

/* ---- jobs and workers --------------------------------------------------------------------- */

/* Whether a worker of user WORKER_UID, accepting the logins in ACCEPT (NULL-ended; NULL =
 * none), runs a job queued by QUEUED_BY / QUEUED_UID (-1 = unknown: counts as OWNER_UID's). */
int trust_job_accepted(const char *queued_by, int64_t queued_uid, uid_t worker_uid,
                       const char *const *accept, uid_t owner_uid);

/* ---- blind rating and roles --------------------------------------------------------------- */

/* 1 when LOGIN may review (see every annotator's ratings under blind rating): the store's
 * owner, or an annotator named LOGIN with the reviewer role; else 0; or a negative ERR_*. */
int trust_may_review(Store *st, const char *login, Err *err);

/* What LOGIN sees: *only_self = 1 when blind rating is on and LOGIN may not review. */
int trust_blind_view(Store *st, const char *login, int *only_self, Err *err);

/* 0 when LOGIN may use what only reviewers see under blind rating (WHAT: "the Quality
 * screen"), or blind rating is off; else ERR_DENIED saying so and how to get the role. */
int trust_require_review(Store *st, const char *login, const char *what, Err *err);

/* 0 when this process's user may rate as ANNOTATOR: it is their own login, blind rating is
 * off, or they may review; else ERR_DENIED. */
int trust_check_act_as(Store *st, const char *annotator, Err *err);

#endif
