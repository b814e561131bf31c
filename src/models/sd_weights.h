/* sd_weights — the weights of one component of a diffusion model ("unet", "vae",
 * "text_encoder", "text_encoder_2"), found by their diffusers names whatever the layout on
 * disk.
 *
 * DESIGN
 *   - One naming inside easel: diffusers' (`down_blocks.0.resnets.1.conv1.weight`,
 *     `decoder.up_blocks.2.upsamplers.0.conv.weight`, transformers' for the text encoders).
 *     Models (unet.c, vae.c, the text encoders) ask for tensors by that name; the layout on
 *     disk is this module's business alone:
 *       a diffusers folder: MODEL/COMPONENT/diffusion_pytorch_model.safetensors (or
 *         model.safetensors for text encoders), the `.fp16` variant when only it is there,
 *         or shards listed by `*.safetensors.index.json`; config from MODEL/COMPONENT/config.json;
 *   - Files are memory-mapped (fmt_safetensors); a tensor is converted to f32 only when it is
 *     read, one at a time, so loading never holds two copies of the model.
 *   - Every read checks the shape the model expects and that every value is finite; an error
 *     names the tensor (diffusers name, and the name in the file when it differs) and the file.
 * Thread safety: one thread at a time per SdWeights.
 */
#ifndef EASEL_SD_WEIGHTS_H
#define EASEL_SD_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "fmt_safetensors.h"

typedef struct SdWeights SdWeights;

/* Open COMPONENT ("unet", "vae", "text_encoder", "text_encoder_2") of the model at PATH: a
 * diffusers folder, or a COMPONENT folder itself (holding config.json and the weights).
 * Returns 0 and *out, or ERR_NOTFOUND / ERR_FORMAT / ERR_IO naming the path. */
int sd_weights_open(const char *path, const char *component, SdWeights **out, Err *err);
void sd_weights_close(SdWeights *w); /* NULL allowed */

/* The weight file(s), for messages ("…/unet/diffusion_pytorch_model.safetensors"). */
const char *sd_weights_where(const SdWeights *w);
/* The component's config.json text (NUL-ended, owned by w), or NULL when there is none. */
const char *sd_weights_config_json(const SdWeights *w);

/* The tensor called NAME (diffusers naming), or NULL. */
const StTensor *sd_weights_find(const SdWeights *w, const char *name);
/* Number of tensors and the diffusers name of the i-th, for walking them all. */
size_t sd_weights_count(const SdWeights *w);
const char *sd_weights_name(const SdWeights *w, size_t i);

/* Read NAME as f32 into DST (product of SHAPE floats) after checking that the tensor exists
 * and has exactly SHAPE (n_dims dims) and only finite values. Returns 0, or
 * ERR_FORMAT / ERR_NOTFOUND with a message naming the tensor, the shapes and the file. */
int sd_weights_read_f32(SdWeights *w, const char *name, int n_dims, const int64_t *shape,
                        float *dst, Err *err);

#endif
