/* store_settings — store-wide settings, annotator roles, the output roots jobs may use, and
 * the login a connection acts for.
 *
 * Tables of schema v2: settings(key, value, set_by, set_at), annotators.role ('annotator' or
 * 'reviewer'), output_roots(path, added_by, added_at). Who may change them (the store's
 * owner) is decided by src/data/trust.h, not here: these functions only read and write.
 *
 * Thread safety: as store.h — one Store per thread.
 */
#ifndef EASEL_STORE_SETTINGS_H
#define EASEL_STORE_SETTINGS_H

#include <stdint.h>

#include "err.h"
#include "store.h"

/* ---- settings ----------------------------------------------------------------------------- */

/* *VALUE = the value of KEY (caller frees), or NULL when it is not set. */
int store_setting_get(Store *st, const char *key, char **value, Err *err);

/* Set KEY to VALUE, recording SET_BY (a login) and the time. */
int store_setting_set(Store *st, const char *key, const char *value, const char *set_by,
                      Err *err);

/* *on = 1 when blind rating is on (setting 'blind' = 'on'), else 0. */
int store_blind(Store *st, int *on, Err *err);

/* ---- roles -------------------------------------------------------------------------------- */

#define STORE_ROLE_ANNOTATOR "annotator"
#define STORE_ROLE_REVIEWER "reviewer"

/* *role = the role of annotator NAME (caller frees); NULL when there is no such annotator. */
int store_annotator_role(Store *st, const char *name, char **role, Err *err);

/* Set NAME's role (creating the annotator when new). ROLE is STORE_ROLE_*. */
int store_annotator_set_role(Store *st, const char *name, const char *role, Err *err);

typedef struct StoreAnnotatorRole {
    char *name;
    char *role;
    int64_t n_ratings;     /* current ratings by this annotator */
} StoreAnnotatorRole;

/* Every annotator by name with role and ratings. *out is the caller's
 * (store_annotator_roles_free). */
int store_annotator_roles(Store *st, StoreAnnotatorRole **out, int *n, Err *err);
void store_annotator_roles_free(StoreAnnotatorRole *v, int n);

/* ---- output roots ------------------------------------------------------------------------- */

typedef struct StoreOutputRoot {
    char *path;            /* absolute, resolved when added */
    char *added_by;
    double added_at;       /* wall seconds */
} StoreOutputRoot;

/* Add PATH (absolute, resolved by the caller). Adding one already there changes nothing
 * (*added = 0; may be NULL). */
int store_output_root_add(Store *st, const char *path, const char *added_by, int *added,
                          Err *err);
/* Remove PATH; ERR_NOTFOUND when it is not a root. */
int store_output_root_remove(Store *st, const char *path, Err *err);
/* Every root by path. *out is the caller's (store_output_roots_free). */
int store_output_roots(Store *st, StoreOutputRoot **out, int *n, Err *err);
void store_output_roots_free(StoreOutputRoot *v, int n);

/* ---- the acting login ----------------------------------------------------------------------- */

/* The Unix login this connection acts for: a worker thread running a job queued by another
 * user (`easel worker --accept-user`) sets the job's queuer, so what the job shows (exports
 * under blind rating) is what that user may see. LOGIN is copied; NULL = this process's own
 * login again. */
void store_set_actor(Store *st, const char *login);
/* The acting login: the one set, else identity_login(). Borrowed until the next set. */
const char *store_actor(const Store *st);

#endif
