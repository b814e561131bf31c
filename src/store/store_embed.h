/* store_embed — the embeddings cache: frozen encoder outputs per (encoder, kind, key).
 *
 * kind is "image" (key = hex sha256 of the image file's bytes) or "text" (key = hex sha256
 * of the prompt's UTF-8 text). data is n_tokens rows of dim little-endian f32 floats
 * (images: pooled row first, then grid/patch tokens).
 *
 * A row is written once; putting an existing key again replaces it (the same encoder on the
 * same bytes gives the same floats, so this only matters after an encoder fix).
 * Thread safety: as Store (one connection per thread).
 */
#ifndef EASEL_STORE_EMBED_H
#define EASEL_STORE_EMBED_H

#include "err.h"
#include "store.h"

/* Look up one embedding. On a hit returns 0 and sets *data (n_tokens*dim floats, caller
 * frees), *dim and *n_tokens. On a miss returns ERR_NOTFOUND (err not touched). A stored row
 * whose blob size does not match dim*n_tokens is reported as ERR_FORMAT. */
int store_embed_get(Store *st, const char *encoder, const char *kind, const char *key,
                    float **data, int *dim, int *n_tokens, Err *err);

/* Insert or replace one embedding; copies data. */
int store_embed_put(Store *st, const char *encoder, const char *kind, const char *key,
                    const float *data, int dim, int n_tokens, Err *err);

/* Number of cached rows for ENCODER and KIND (NULL = all encoders/kinds). -1 on error. */
long store_embed_count(Store *st, const char *encoder, const char *kind, Err *err);

/* Delete every cached row of ENCODER (e.g. after a feature change). Returns rows removed
 * or a negative ERR_*. */
long store_embed_clear(Store *st, const char *encoder, Err *err);

#endif
