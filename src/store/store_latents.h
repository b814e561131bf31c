/* store_latents — the VAE latent cache of generator tuning (`easel tune`): the latents one VAE
 * made of one image's bytes at one pixel size, so each image is encoded once however many runs
 * train on it.
 *
 * Key: the image file's sha256 (a changed file is a new key: re-encoded), the VAE's identity
 * (a string the caller makes: tune_vae_key), and the width x height the image was resized
 * and cropped to. Value: channels x lh x lw little-endian f32 (the scaled latents).
 * A row is written once; putting an existing key again replaces it.
 * Thread safety: as Store (one connection per thread).
 */
#ifndef EASEL_STORE_LATENTS_H
#define EASEL_STORE_LATENTS_H

#include <stddef.h>

#include "err.h"
#include "store.h"

/* The latent shape of one cache entry. */
typedef struct StoreLatentShape {
    int channels, lh, lw;
} StoreLatentShape;

/* Read the latents of (SHA256, VAE, WIDTH, HEIGHT) into OUT, which holds
 * SHAPE->channels·lh·lw floats. Returns 0 on a hit; ERR_NOTFOUND on a miss (err untouched);
 * ERR_FORMAT when the row holds another shape or a blob of the wrong size (naming the key;
 * store_latents_put of the right latents replaces it); ERR_DB/ERR_BUSY. */
int store_latents_get(Store *st, const char *sha256, const char *vae, int width, int height,
                      const StoreLatentShape *shape, float *out, Err *err);

/* Insert or replace the latents DATA (SHAPE->channels·lh·lw floats) of the key. */
int store_latents_put(Store *st, const char *sha256, const char *vae, int width, int height,
                      const StoreLatentShape *shape, const float *data, Err *err);

/* Rows cached for VAE (NULL: every VAE); -1 on error (err set). */
long store_latents_count(Store *st, const char *vae, Err *err);

/* Delete the rows of VAE (NULL: all). Returns the rows removed, or a negative ERR_*. */
long store_latents_clear(Store *st, const char *vae, Err *err);

#endif
