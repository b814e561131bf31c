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
 *       a single-file checkpoint (PATH is a .safetensors file): the SGM / original names
 *         (`model.diffusion_model.input_blocks.1.0.in_layers.2.weight`, `first_stage_model.*`,
 *         `cond_stage_model.transformer.*` / `cond_stage_model.model.*` (SD 2's OpenCLIP),
 *         `conditioner.embedders.{0,1}.*` (SDXL)) mapped to diffusers names at open time by
 *         one table (sd_weights_single.c), q/k/v and projections reshaped on the fly; the
 *         architecture (SD 1.x, SD 2.x, SDXL) is told from the names, and the config the file
 *         lacks is made from the tensors' shapes (what shapes cannot tell is the released
 *         models': doc/models.md "Weights and LoRA").
 *   - Files are memory-mapped (fmt_safetensors). The models' loaders read each tensor with
 *     sd_weights_read: converted from the file's dtype (f32, f16, bf16, ...) straight into the
 *     resident dtype a bounded piece at a time (SD_WEIGHTS_CHUNK elements), handed to the
 *     loader, and the piece's mapped pages released (madvise) once read — so loading holds
 *     the resident copy, one piece and no whole-model staging, and the mapped file does not
 *     stay in the resident set (doc/models.md "Memory": measured peaks).
 *   - Every read checks the shape the model expects and that every value is finite; an error
 *     names the tensor (diffusers name, and the name in the file when it differs) and the file.
 * Thread safety: one thread at a time per SdWeights.
 */
#ifndef EASEL_SD_WEIGHTS_H
#define EASEL_SD_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"
#include "fmt_safetensors.h"
#include "tensor.h"

typedef struct SdWeights SdWeights;

/* Open COMPONENT ("unet", "vae", "text_encoder", "text_encoder_2") of the model at PATH: a
 * diffusers folder, a COMPONENT folder itself (holding config.json and the weights), or a
 * single-file checkpoint. Returns 0 and *out, or ERR_NOTFOUND (no such path; the single file
 * holds no COMPONENT) / ERR_FORMAT (not SD weights, unknown block layout) / ERR_IO naming
 * the path. */
int sd_weights_open(const char *path, const char *component, SdWeights **out, Err *err);
void sd_weights_close(SdWeights *w); /* NULL allowed */

/* What a single-file checkpoint holds, told from its tensors and name (sd_weights_single.c). */
typedef struct SdSingleInfo {
    int is_single;      /* PATH is a file (a folder: all fields 0) */
    const char *family; /* "sd1" (cond_stage_model.transformer.*), "sd2" (cond_stage_model.
                         * model.*: OpenCLIP ViT-H), "sdxl" (conditioner.embedders.*) */
    int in_channels;    /* the UNet's input channels (4; 9 for inpainting models) */
    int v_pred;         /* the file holds a "v_pred" key (ComfyUI's mark of v-prediction) */
    int turbo;          /* "turbo" in the file's name (SD-Turbo, SDXL-Turbo) */
} SdSingleInfo;

/* Fill *OUT for PATH: a folder gives is_single 0 and returns 0; a file must be a single-file
 * checkpoint with a UNet (ERR_FORMAT naming it otherwise, ERR_IO). */
int sd_weights_single_info(const char *path, SdSingleInfo *out, Err *err);

/* The weight file(s), for messages ("…/unet/diffusion_pytorch_model.safetensors"). */
const char *sd_weights_where(const SdWeights *w);
/* The component's config.json text (NUL-ended, owned by w), or NULL when there is none; for a
 * single file, the diffusers config made from the tensors, with
 * "_easel_single_file_architecture": "SD 1.x" | "SD 2.x" | "SDXL". */
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

/* ---- mem15: reading into the resident dtype in bounded pieces ---------------------------- */

/* Elements per piece of sd_weights_read unless sd_weights_set_chunk says otherwise (4 MiB of
 * f32 staging, plus 2 MiB for a half dtype). */
#define SD_WEIGHTS_CHUNK ((size_t)1 << 20)

/* Receives consecutive pieces of one tensor: elements [FIRST, FIRST + N) in the dtype asked
 * for, at DATA (valid until it returns). Returns 0, or an error code with err set. */
typedef int (*SdWeightsSink)(void *user, size_t first, const void *data, size_t n, Err *err);

/* Read NAME (checked as sd_weights_read_f32 checks it: SHAPE, finite values, LoRAs added)
 * times SCALE, converted to DTYPE (F32, F16, BF16; round to nearest even), and hand it to
 * SINK piece by piece: at most SD_WEIGHTS_CHUNK elements of host staging at a time, and the
 * mapped file pages of each piece leave the resident set once read (safetensors_release),
 * so loading a model holds its resident copy, one piece and no whole-model staging. A
 * transposed tensor (single files' q/k/v) and, when LoRAs were added, every tensor are read
 * whole in f32 first (one tensor at a time). Errors as sd_weights_read_f32, or SINK's. */
int sd_weights_read(SdWeights *w, const char *name, int n_dims, const int64_t *shape,
                    DType dtype, float scale, SdWeightsSink sink, void *user, Err *err);

/* Process-wide: the elements of a piece (0: SD_WEIGHTS_CHUNK). For tests and hosts short of
 * memory. */
void sd_weights_set_chunk(size_t elems);

/* Process-wide, for tests: the largest host staging in bytes one read held since the last
 * reset (RESET nonzero: return it and start again from 0) — sd_weights_read's pieces or its
 * whole-tensor f32 copy, and sd_weights_read_f32's DST (the caller's whole-tensor copy). */
size_t sd_weights_staging_peak(int reset);

/* Write the diffusers model at FOLDER (unet/, vae/, and text_encoder/, text_encoder_2/ when
 * there) as one single-file checkpoint OUT_PATH with the original / SGM names, the inverse of
 * the single-file map (SD 1.x, SD 2.x with its text encoder in OpenCLIP form, SDXL), each
 * tensor in its own dtype. diffusers' from_single_file loads it to the same weights
 * (tests/models/make_single_fixtures.py --check-written). Returns 0, or the error of the
 * component that could not be read, or ERR_IO naming OUT_PATH (then nothing is written). */
int sd_weights_write_single(const char *folder, const char *out_path, Err *err);

/* Add the LoRA (or DoRA) adapters of LORA_FILE for w's component, SCALE times, to the weights
 * as sd_weights_read_f32 reads them: W + scale * alpha / rank * (up . down). Names: PEFT /
 * diffusers (`unet.<module>.lora_A.weight`, `.lora_B.weight`, `.lora.down.weight`,
 * `.lora_magnitude_vector`, `text_encoder.` / `text_encoder_2.`), kohya (`lora_unet_<module>`
 * with diffusers or SGM block names, `lora_te1_`, `lora_te2_`, `.lora_down/.lora_up/.alpha`).
 * Alpha from the `.alpha` tensor, else the file's metadata, else the rank. The other
 * components' adapters in the file are skipped. Returns 0, or ERR_NOTFOUND naming the adapter
 * tensor that matches no weight of the component, ERR_FORMAT for a tensor that is no LoRA
 * tensor or a part missing, ERR_IO. May be called for several files. */
int sd_weights_add_lora(SdWeights *w, const char *lora_file, float scale, Err *err);

/* After the model is loaded: ERR_FORMAT naming the first adapter whose weight was never read
 * (and its LoRA file), so that no LoRA is silently unused; 0 when every one was applied. */
int sd_weights_check_used(const SdWeights *w, Err *err);

/* ---- LoRA module names (lora_file; adio16) ---------------------------------------------------
 * The map sd_weights_add_lora uses, for reading adapter files against a model: the weight of
 * W that a LoRA module changes. MODULE: PEFT's dotted module name
 * ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"), or with KOHYA kohya's
 * underscored one with diffusers or SGM block names ("input_blocks_4_1_transformer_blocks_0_
 * attn1_to_q"), the component prefix and the part suffix taken off. Returns the diffusers
 * weight name ("….to_q.weight", malloc'd), or NULL when W has no such weight. W must outlive
 * the SdLoraNames. */
typedef struct SdLoraNames SdLoraNames;
SdLoraNames *sd_lora_names_new(const SdWeights *w);
char *sd_lora_names_target(SdLoraNames *n, const char *module, int kohya);
void sd_lora_names_free(SdLoraNames *n); /* NULL allowed */
/* Which part of an adapter the tensor NAME is, by its suffix (".lora_A.weight", ".lora_B.weight",
 * ".lora.down.weight", ".lora_down.weight", ".alpha", ".lora_magnitude_vector", ...): SD_LORA_*, with *MODULE_LEN the length of NAME before the suffix; -1 for none. */
enum { SD_LORA_DOWN, SD_LORA_UP, SD_LORA_ALPHA, SD_LORA_MAG };
int sd_lora_name_part(const char *name, size_t *module_len);

/* sd_weights_write_single with adapters merged into the UNet (`easel export merged`): the
 * files LORAS[0..N_LORAS) (each a LoRA .safetensors, at SCALES[i]) applied as
 * sd_weights_add_lora applies them, each changed weight written in its own dtype (f32, f16,
 * bf16). Errors: those of sd_weights_add_lora (an adapter for another model), ERR_FORMAT for
 * an adapter the UNet never used, ERR_USAGE for text-encoder adapters (not merged: refused
 * rather than dropped); then nothing is written. */
int sd_weights_write_single_lora(const char *folder, const char *const *loras,
                                 const float *scales, int n_loras, const char *out_path,
                                 Err *err);

/* dedup16: sd_weights_read (SCALE) straight into the device tensor T of BE (allocated, of
 * N_DIMS dims SHAPE in T's dtype), piece by piece, each uploaded as it comes (the UNet's and
 * the VAE's loaders). The uploads are not synced: backend_sync / backend_failed after. */
int sd_weights_read_device(SdWeights *w, const char *name, int n_dims, const int64_t *shape,
                           float scale, Backend *be, const Tensor *t, Err *err);

#endif
