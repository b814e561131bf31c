/* store_models — the models table: model folders registered under a name, per kind
 * ("clip"), so `--encoder clip:NAME` finds the files.
 *
 * A name is unique across kinds and never silently replaced: adding an existing name is
 * ERR_CONFLICT (remove it first). Paths are stored absolute, as given after realpath by the
 * caller. Thread safety: as Store (one connection per thread).
 */
#ifndef EASEL_STORE_MODELS_H
#define EASEL_STORE_MODELS_H

#include "err.h"
#include "store.h"

typedef struct StoreModel {
    long long id;
    char *kind;          /* "clip" */
    char *name;
    char *path;          /* absolute folder or file */
    char *config;        /* JSON summary (may be NULL) */
    double created_at;   /* Unix seconds */
} StoreModel;

/* Register NAME. Copies every string. Returns 0, ERR_CONFLICT if NAME exists (the store is
 * unchanged), or ERR_DB/ERR_BUSY. */
int store_model_add(Store *st, const char *kind, const char *name, const char *path,
                    const char *config, Err *err);

/* The model called NAME of KIND into *out (caller frees with store_model_deinit). Returns 0
 * or ERR_NOTFOUND (err set, naming NAME and how to register it). */
int store_model_get(Store *st, const char *kind, const char *name, StoreModel *out, Err *err);

/* All models of KIND (NULL = every kind), by name. *out is a new array of *n models the
 * caller frees with store_model_list_free. */
int store_model_list(Store *st, const char *kind, StoreModel **out, int *n, Err *err);

/* Remove NAME. Returns 0 or ERR_NOTFOUND. */
int store_model_remove(Store *st, const char *name, Err *err);

void store_model_deinit(StoreModel *m); /* NULL allowed */
void store_model_list_free(StoreModel *v, int n);

#endif
