/* clip — OpenCLIP / Hugging Face CLIP ViT models on the CPU engine: load a model folder,
 * embed images and texts.
 *
 * A model folder as users have it: weights in `open_clip_model.safetensors` (OpenCLIP
 * names: visual.conv1.weight, visual.transformer.resblocks.N.attn.in_proj_weight, ...) or
 * `model.safetensors` (Hugging Face names: vision_model.encoder.layers.N.self_attn.
 * q_proj.weight, ...); the tokenizer files beside them (clip_tokenizer.h); the architecture
 * from `open_clip_config.json` (its model_cfg) or `config.json`, else from the tensor
 * shapes with OpenCLIP's defaults (64-wide heads, GELU). Every tensor is checked against
 * the architecture; a missing or mis-shaped one is an error naming it. Weights are
 * memory-mapped: f32 tensors are used in place, f16/bf16 converted once at load.
 *
 * Vision: patch embedding (convolution as a GEMM), class token, positional embedding,
 * ln_pre, pre-LN transformer blocks, ln_post, projection. Outputs the L2-normalised pooled
 * embedding (class token) and, optionally, the patch tokens: ln_post(x[1:]) · proj, NOT
 * normalised, in the same embedding space (dimension embed_dim). Text: token + positional
 * embedding, causal blocks, ln_final, the end-of-text token (argmax id), projection,
 * L2-normalised. Because attention is causal, the text tower runs only up to the latest
 * end token of the batch; the result is the same.
 *
 * Threads: ops split work over the CPU pool the calling thread selected with
 * backend_cpu_use() (backend_cpu.h); none = one thread. A loaded ClipModel is read-only:
 * several threads may encode with it at once, each with its own pool.
 */
#ifndef EASEL_CLIP_H
#define EASEL_CLIP_H

#include <stddef.h>
#include <stdint.h>

#include "clip_image.h"
#include "clip_tokenizer.h"
#include "err.h"

typedef struct ClipConfig {
    int embed_dim;         /* E: projection output */
    int image_size;        /* S: input side in pixels */
    int patch_size;        /* P */
    int vision_width;      /* C of the vision tower */
    int vision_layers;
    int vision_heads;
    int vision_mlp;        /* hidden width of the MLP */
    int context_length;    /* text positions (77) */
    int vocab_size;
    int text_width;
    int text_layers;
    int text_heads;
    int text_mlp;
    int quick_gelu;        /* 1: x·σ(1.702x) (OpenAI weights); 0: exact GELU */
    float ln_eps;          /* LayerNorm epsilon (1e-5) */
    float mean[3];         /* preprocessing normalisation */
    float std[3];
    ClipResizeMode resize; /* the model's own preprocessing (OpenCLIP's "shortest" default) */
} ClipConfig;

typedef enum ClipLayout {
    CLIP_LAYOUT_OPENCLIP = 0,
    CLIP_LAYOUT_HF = 1,
} ClipLayout;

typedef struct ClipModel ClipModel;

/* ---- loading ------------------------------------------------------------------------------- */

/* Load from a model folder, or from a .safetensors file (config and tokenizer files then
 * come from its folder). Errors name the file and tensor: ERR_NOTFOUND (no weights file, no
 * tokenizer), ERR_FORMAT (bad or truncated safetensors, missing or mis-shaped tensor,
 * unsupported architecture), ERR_NOMEM. Free with clip_model_free. */
ClipModel *clip_model_load(const char *path, Err *err);
void clip_model_free(ClipModel *m); /* NULL allowed */

/* Borrowed; valid until clip_model_free. */
const ClipConfig *clip_model_config(const ClipModel *m);
const ClipTokenizer *clip_model_tokenizer(const ClipModel *m);
ClipLayout clip_model_layout(const ClipModel *m);
const char *clip_model_weights_path(const ClipModel *m);
/* Where the architecture came from: "open_clip_config.json", "config.json" or "shapes". */
const char *clip_model_config_source(const ClipModel *m);

/* Number of patch tokens per image: (S/P)^2. */
int clip_model_n_patches(const ClipModel *m);

/* Bytes of weights resident once everything was touched (mapped f32 + converted), and of
 * scratch an encode of a batch of B images / texts allocates. */
size_t clip_model_weight_bytes(const ClipModel *m);
size_t clip_model_scratch_bytes(const ClipModel *m, int batch);

/* ---- encoding ------------------------------------------------------------------------------ */

/* pixels (n, 3, S, S) preprocessed (clip_image_preprocess with the config's size, mean,
 * std) -> embeds (n, E) L2-normalised; tokens (n, n_patches, E) or NULL. Works in batches
 * of up to 16. Returns 0 or ERR_NOMEM. */
int clip_model_encode_pixels(const ClipModel *m, const float *pixels, int n, float *embeds,
                             float *tokens, Err *err);

/* ids (n, context_length) as clip_tokenizer_tokenize makes them -> embeds (n, E),
 * L2-normalised. Returns 0, ERR_USAGE for an id outside the vocabulary, ERR_NOMEM. */
int clip_model_encode_ids(const ClipModel *m, const int32_t *ids, int n, float *embeds,
                          Err *err);

/* Tokenize and encode n UTF-8 strings. */
int clip_model_encode_texts(const ClipModel *m, const char *const *texts, int n, float *embeds,
                            Err *err);

/* Decode, preprocess (MODE) and encode n image files; the first failing file is named in
 * err. tokens as in clip_model_encode_pixels. */
int clip_model_encode_image_files(const ClipModel *m, const char *const *paths, int n,
                                  ClipResizeMode mode, float *embeds, float *tokens, Err *err);

#endif
