/* lora_file — a UNet adapter (LoraSet) saved as, and read back from, the files other tools
 * take: diffusers / PEFT and kohya. See doc/models.md "Adapter files".
 *
 * PEFT / diffusers (lora_file_write_peft): a folder DIR holding
 *   DIR/pytorch_lora_weights.safetensors  tensors "unet.<module>.lora_A.weight" (r, in[, kh, kw]),
 *       "unet.<module>.lora_B.weight" (out, r[, 1, 1]), and for DoRA
 *       "unet.<module>.lora_magnitude_vector" ((out) for a Linear, (1, out, 1, 1) for a Conv2d,
 *       PEFT's shapes), all f32; metadata "format": "pt" and "lora_adapter_metadata": the
 *       UNet's LoraConfig as diffusers' save_lora_weights writes it (JSON, keys "unet.r",
 *       "unet.lora_alpha", "unet.target_modules", "unet.use_dora", "unet.rank_pattern",
 *       "unet.alpha_pattern", ... sorted, indent 2), which load_lora_weights turns back into
 *       the LoraConfig;
 *   DIR/adapter_config.json  the same LoraConfig without the "unet." prefix (PEFT's file).
 * kohya (lora_file_write_kohya): one file, "lora_unet_<module, dots as _>.lora_down.weight",
 *   ".lora_up.weight", ".alpha" (a 0-dim f32); metadata ss_network_module, ss_network_dim,
 *   ss_network_alpha (the most common rank and alpha). Every layer gets the most common alpha:
 *   one whose alpha differs has alpha_i / alpha folded into its up matrix (the same update),
 *   because diffusers' kohya converter loses per-layer alphas of attention layers. No DoRA: no reader of kohya files takes
 *   PEFT's DoRA (diffusers 0.42.1 drops `dora_scale` from SD / SDXL kohya files with a warning;
 *   ComfyUI's `dora_scale` divides by the norm of W, not of W + s·BA), so it is refused.
 * Each file is written whole or not at all (a temporary file renamed over the old one); the
 * safetensors' own metadata is what the reader trusts first, so a kill between the two files
 * of a folder never pairs weights with another save's alpha.
 * Models layer. */
#ifndef EASEL_LORA_FILE_H
#define EASEL_LORA_FILE_H

#include "err.h"
#include "lora_set.h"

typedef struct SdWeights SdWeights;

/* What the PEFT files say beyond the tensors. r, lora_alpha and use_dora come from the
 * entries (the most common rank and alpha; rank_pattern / alpha_pattern name the entries
 * that differ; use_dora when any entry has m). */
typedef struct LoraFileMeta {
    const char *const *targets; /* PEFT's target_modules ("to_q", "to_out.0", ...), n_targets
                                 * of them; NULL: every entry's module name */
    int n_targets;
    const char *base_model;     /* base_model_name_or_path, or NULL */
} LoraFileMeta;

/* The PEFT / diffusers file name inside an adapter folder. */
#define LORA_FILE_PEFT_WEIGHTS "pytorch_lora_weights.safetensors"

/* Write S to the folder DIR (made when missing; its parent must exist) as
 * DIR/pytorch_lora_weights.safetensors and DIR/adapter_config.json. META may be NULL.
 * Returns 0, ERR_USAGE (an empty set, an entry without A or B, a rank below 1), ERR_FORMAT
 * (a value that is not finite: named with its entry), ERR_CONFLICT (two entries of one
 * module), or ERR_IO naming the path; on failure neither file is half written. */
int lora_file_write_peft(const LoraSet *s, const char *dir, const LoraFileMeta *meta,
                         Err *err);

/* Write S as one kohya-named .safetensors file PATH (errors as lora_file_write_peft, and
 * ERR_USAGE for a DoRA adapter, naming the forms that keep it: peft, merged). */
int lora_file_write_kohya(const LoraSet *s, const char *path, Err *err);

/* Read the UNet's adapters of FILE_OR_DIR into *OUT (zeroed first; free with lora_set_free):
 * a folder (pytorch_lora_weights.safetensors, else PEFT's adapter_model.safetensors, with
 * adapter_config.json for the alpha when the weights carry none) or one .safetensors file,
 * PEFT / diffusers ("unet.", no prefix, PEFT's "base_model.model.") or kohya ("lora_unet_")
 * names, the inverse of both writers. Alpha: the `.alpha` tensor, else the file's metadata
 * (alpha_pattern, lora_alpha, use_rslora; kohya's ss_network_alpha), else adapter_config.json,
 * else the rank; with rsLoRA the entry's alpha is alpha·√r, so that alpha / r stays the scale.
 * Other components' adapters (text encoders) are skipped. Kohya names are turned back into
 * diffusers module names without a model only when they use diffusers' block names
 * (down_blocks_0_...); SGM ones (input_blocks_4_1_...) need lora_file_read_unet.
 * Entries come sorted by name. Returns 0, ERR_NOTFOUND (no such file, or a folder without
 * weights), ERR_FORMAT naming the tensor and the file (an unknown tensor, a part missing,
 * shapes that do not agree), ERR_IO. */
int lora_file_read(const char *file_or_dir, LoraSet *out, Err *err);

/* As lora_file_read, with kohya names resolved against UNET's weights by the map
 * `generate --lora` uses (diffusers and SGM block names), and every entry's shape checked
 * against the weight it changes: ERR_NOTFOUND / ERR_FORMAT name the adapter and the model
 * ("an adapter for another model?"). */
int lora_file_read_unet(const char *file_or_dir, const SdWeights *unet, LoraSet *out,
                        Err *err);

/* How many text-encoder tensors (text_encoder., text_encoder_2., lora_te*_) FILE_OR_DIR holds
 * (those lora_file_read skips): >= 0, or an error as lora_file_read's. */
int lora_file_text_encoder_tensors(const char *file_or_dir, Err *err);

#endif
