/* sd_text — the text conditioning of Stable Diffusion 1.x / 2.x and SDXL: what diffusers'
 * StableDiffusionPipeline.encode_prompt and StableDiffusionXLPipeline.encode_prompt compute,
 * from a diffusers model folder's text encoders and tokenizers, on the CLIP code (clip.h).
 *
 * DESIGN
 *   - The encoders' weights are read through sd_weights (a diffusers folder's files or a
 *     single-file checkpoint's tensors, LoRA adapters applied) into clip.h's text towers
 *     (clip_model_load_text_source); a single file's tokenizer is given (SdTextOptions).
 *   - The folder: model_index.json (its `_class_name` and, for SDXL,
 *     `force_zeros_for_empty_prompt`), text_encoder/ + tokenizer/ and for SDXL also
 *     text_encoder_2/ + tokenizer_2/. A text encoder folder holds config.json (CLIPTextConfig)
 *     and model.safetensors (or only model.fp16.safetensors); a tokenizer folder vocab.json,
 *     merges.txt and tokenizer_config.json / special_tokens_map.json, whose `pad_token` fills
 *     the positions after the end token (SD 1.x: "<|endoftext|>"; SD 2.x and SDXL's second
 *     tokenizer: "!", id 0) and whose `model_max_length` is the context (77).
 *     SDXL: a folder with text_encoder_2/, or whose model_index.json names an XL pipeline.
 *   - Tokens: [start] + BPE pieces + [end], truncated to the context (the 75 first pieces
 *     kept), padded with the pad id, as CLIPTokenizer(padding="max_length", truncation=True).
 *   - SD (text_encoder alone): embeds = last_hidden_state (after the final LayerNorm), or with
 *     clip_skip k > 0, hidden_states[-(k + 1)] through the final LayerNorm. Width: the
 *     encoder's (768 for SD 1.x, 1024 for SD 2.x).
 *   - SDXL: hidden_states[-(k + 2)] (k = clip_skip, 0 by default: the penultimate layer) of
 *     each encoder, without the final LayerNorm, concatenated on the channel axis (768 + 1280
 *     = 2048); pooled = encoder 2's text_embeds (final LayerNorm at the end token, projected),
 *     which clip_skip does not change.
 *   - Classifier-free guidance: the negative prompt encoded the same way ("" when there is
 *     none), except SDXL with force_zeros_for_empty_prompt and no negative prompt: zeros of
 *     the same shapes (an explicit "" is encoded). As in diffusers, clip_skip applies to the
 *     prompt only: the negative prompt is always encoded with clip_skip 0.
 *   - Tokenizer pad tokens other than the end token ("!") are tokens of their own in the
 *     text too, as transformers splits added tokens out before BPE: "canvas!" ends in the
 *     pad id 0, not in "!</w>".
 *   - Not done: SDXL's prompt_2 / negative_prompt_2 (both encoders see the same text here),
 *     textual-inversion tokens, the prompt weighting syntaxes of other front ends, and the
 *     tokenizer differences between OpenCLIP's cleaning (clip_tokenizer.h: ftfy-like fixes,
 *     HTML unescaping) and transformers' CLIPTokenizer, which does neither (they agree on
 *     prompts without HTML entities or mojibake).
 * Thread safety: a loaded SdText on its own CPU backends (SdTextOptions.backend NULL) is
 * read-only; encode from several threads, each with its own CPU pool (backend_cpu_use). One
 * on a given backend (a pipeline's, CUDA or CPU) encodes from one thread at a time.
 */
#ifndef EASEL_SD_TEXT_H
#define EASEL_SD_TEXT_H

#include <stdint.h>

#include "clip.h"
#include "err.h"

typedef enum SdTextKind {
    SD_TEXT_SD = 0,   /* StableDiffusionPipeline: one encoder (SD 1.x, 2.x, SD-Turbo) */
    SD_TEXT_SDXL = 1, /* StableDiffusionXLPipeline: two encoders (SDXL, SDXL-Turbo) */
} SdTextKind;

typedef struct SdText SdText;

/* How sd_text_open finds what a model path lacks, and the adapters it applies. */
typedef struct SdTextOptions {
    const char *tokenizer;         /* NULL: the folder's tokenizer/ (and tokenizer_2/); needed
                                    * for a single file: a folder with vocab.json + merges.txt
                                    * (any CLIP tokenizer folder) for both encoders, or a
                                    * diffusers model folder (its tokenizer/, tokenizer_2/) */
    const char *const *lora_paths; /* n_loras LoRA files: their text-encoder adapters are */
    const float *lora_scales;      /* applied (sd_weights_add_lora); the UNet's are skipped */
    int n_loras;
    /* where the encoders run */
    Backend *backend;              /* borrowed (must outlive the SdText): the encoders' weights
                                    * and activations live there and encoding is not
                                    * thread-safe; NULL: each encoder on a 1-thread CPU backend
                                    * of its own (the pool of backend_cpu_use) */
} SdTextOptions;

/* Load the text encoders and tokenizers of MODEL: a diffusers folder, or a single-file
 * checkpoint (SD 1.x, 2.x, SDXL) with O->tokenizer. The encoders are read through sd_weights
 * (LoRAs applied; an adapter that matches no layer is ERR_NOTFOUND naming it). For a single
 * file the pad token is the family's (SD 1.x and SDXL's first encoder: the end token; SD 2.x
 * and SDXL's second: "!"); for a folder its tokenizer configs say it. O may be NULL. */
int sd_text_open(const char *model, const SdTextOptions *o, ClipWeights weights, SdText **out,
                 Err *err);

/* Load the text encoders and tokenizers of the diffusers folder DIR. WEIGHTS: the resident
 * dtype of the large matrices (clip.h). ERR_NOTFOUND / ERR_FORMAT name the file; nothing is
 * kept on failure. Free with sd_text_free. */
int sd_text_load(const char *dir, ClipWeights weights, SdText **out, Err *err);
void sd_text_free(SdText *t); /* NULL allowed */

SdTextKind sd_text_kind(const SdText *t);
int sd_text_context(const SdText *t);      /* T: positions (77) */
int sd_text_width(const SdText *t);        /* D: channels of the embeds (768, 1024, 2048) */
int sd_text_pooled_width(const SdText *t); /* P: pooled width (SDXL: 1280), 0 for SD */
int sd_text_force_zeros(const SdText *t);  /* SDXL's force_zeros_for_empty_prompt */
/* Encoder I (0 or 1 for SDXL's second), borrowed; NULL when there is none. */
const ClipModel *sd_text_encoder(const SdText *t, int i);

/* The ids encoder I sees for TEXT (T of them: start, pieces, end, pad ids). */
int sd_text_tokenize(const SdText *t, int i, const char *text, int32_t *ids);

/* Encode N texts: embeds (n, T, D); pooled (n, P) for SDXL (NULL to skip; must be NULL for
 * SD). CLIP_SKIP >= 0 as diffusers' clip_skip (0 = None). Returns 0, ERR_USAGE (clip_skip too
 * large for the encoders' layers), ERR_NOMEM. */
int sd_text_encode(const SdText *t, const char *const *texts, int n, int clip_skip,
                   float *embeds, float *pooled, Err *err);

/* encode_prompt for one prompt: prompt_embeds (T, D) and, when CFG, negative_embeds (T, D)
 * from NEGATIVE (NULL: no negative prompt; encoded with clip_skip 0). SDXL also fills
 * pooled / negative_pooled (P) (NULL for SD). Without CFG the negative outputs are not
 * touched (may be NULL). */
int sd_text_encode_prompt(const SdText *t, const char *prompt, const char *negative, int cfg,
                          int clip_skip, float *prompt_embeds, float *negative_embeds,
                          float *pooled, float *negative_pooled, Err *err);

/* SDXL's add_time_ids: (original h, w, crop top, left, target h, w), as floats. */
void sd_text_add_time_ids(int orig_h, int orig_w, int crop_top, int crop_left, int target_h,
                          int target_w, float out[6]);

#endif
