/* tune_latents — the latents a generator tuning run (`easel tune`) trains on: each image
 * resized and centre-cropped to the training size, encoded by the model's VAE, and cached in
 * the store (store_latents.h) under the image's bytes, the VAE and the size, so it is encoded
 * once across runs. Data layer.
 */
#ifndef EASEL_TUNE_LATENTS_H
#define EASEL_TUNE_LATENTS_H

#include <stdint.h>

#include "err.h"
#include "sha256.h"
#include "store.h"
#include "vae.h"

/* The identity of the VAE encoder of the model at MODEL_PATH (what vae_load takes: a diffusers
 * folder, its vae/ folder or a single-file checkpoint), as 64 hex digits into KEY: a sha256
 * over its scaling_factor and shift_factor and, for every encoder.* and quant_conv.* tensor,
 * its name, dtype, shape and size and up to 4 KiB of its bytes at the start, middle and end.
 * A VAE whose decoder alone differs (sd-vae-ft-mse) shares the key: its latents are the same.
 * Returns 0, or sd_weights_open's and vae_config_parse's errors. */
int tune_vae_key(const char *model_path, char key[SHA256_HEX_LEN + 1], Err *err);

/* RGB bytes PX (SH rows of SW pixels, HWC) → OUT (3, H, W) in [-1, 1], as torchvision's
 * Resize(shorter side) + CenterCrop + ToTensor + Normalize(0.5, 0.5) on a PIL image: scaled so
 * that the image covers W×H (the side that decides keeps the exact target, the other is
 * truncated, as Resize does), resized with Pillow's bicubic (clip_image_resize_bicubic; not
 * resized when it already has that size), then cropped at round-half-even((size − target)/2). */
void tune_image_pixels(const uint8_t *px, int sw, int sh, int W, int H, float *out);

/* The latents (latent_channels, HEIGHT/s, WIDTH/s) of the image at IMAGE_PATH for VAE (s =
 * vae_scale; WIDTH, HEIGHT multiples of s) into LATENTS: (mean − shift_factor) · scaling_factor
 * of vae_encode on tune_image_pixels, as diffusers' training scripts make them
 * (latent_dist.sample() there; the mean here, so they are deterministic).
 * Read from the store's cache when (sha256 of the file's bytes, VAE_KEY, WIDTH, HEIGHT) is
 * there; else encoded and stored (a changed file has a new sha256: encoded again).
 * *ENCODED (may be NULL) is 1 when this call ran the encoder, 0 on a cache hit.
 * Returns 0; ERR_USAGE (size not a multiple of s); the file's errors naming it (ERR_NOTFOUND,
 * ERR_IO, ERR_FORMAT: does not decode); the encoder's; the store's. */
int tune_latents_get_ex(Store *st, Vae *vae, const char *vae_key, const char *image_path,
                        int width, int height, float *latents, int *encoded, Err *err);
int tune_latents_get(Store *st, Vae *vae, const char *vae_key, const char *image_path, int width,
                     int height, float *latents, Err *err);

#endif
