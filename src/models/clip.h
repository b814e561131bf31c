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
 * memory-mapped and used in place where the file holds them in the resident dtype, else
 * converted once at load. The resident dtype of the large matrices (the blocks' and the
 * token embedding, 97 % of the weights) is f32 or bf16 (ClipWeights); bf16 halves the memory,
 * and each matrix is widened to f32 just before its GEMM (f32 accumulation).
 *
 * Vision: patch embedding (convolution as a GEMM), class token, positional embedding,
 * ln_pre, pre-LN transformer blocks, ln_post, projection. Outputs the L2-normalised pooled
 * embedding (class token) and, optionally, the patch tokens: ln_post(x[1:]) · proj, NOT
 * normalised, in the same embedding space (dimension embed_dim). Text: token + positional
 * embedding, causal blocks, ln_final, the end-of-text token (argmax id, or the first
 * eos_token_id where config.json names one other than the legacy 2, as transformers does),
 * projection, L2-normalised. Because attention is causal, the text tower runs only up to the
 * latest end token of the batch unless all positions' hidden states are asked for; the
 * result is the same.
 *
 * clip_model_text_forward / clip_model_vision_forward give what diffusion text
 * conditioning needs (SDXL: the penultimate layer's states of all 77 positions without the
 * final LayerNorm, and the projected pooled output): hidden states numbered as transformers'
 * output_hidden_states (0 = the embeddings entering the first block — for vision after
 * ln_pre —, i = the output of block i), the pooled output (final LayerNorm at the pooling
 * position: transformers' pooler_output) and the projected one (text_embeds /
 * image_embeds), for a batch in one call: the batch is one (B·T, C) matrix per GEMM.
 *
 * Backend: the forward passes run on the engine interface (backend.h) of the Backend the
 * model was opened on (clip_model_open): its weights live there as Tensors (on the CPU the
 * mapped / converted host memory itself, on CUDA copies uploaded once at load, f32 or bf16 as
 * resident), and every op (GEMMs, LayerNorm, attention, GELU / QuickGELU, residual adds,
 * embedding lookup, pooling, L2 normalisation) goes through its table. Image decoding and
 * preprocessing, tokenizing and the patch rearrangement stay on the host and are uploaded.
 * On the CPU backend the results are those of the engine's CPU ops (the AVX-512 linear kernel
 * where the CPU has it), whatever its thread count.
 *
 * Threads: a ClipModel is used by one thread at a time (its Backend's rule); its activation
 * scratch is kept between calls. clip_model_load / clip_model_load_weights open a CPU backend
 * of one thread of their own; clip_model_open uses the caller's (more threads, or CUDA).
 */
#ifndef EASEL_CLIP_H
#define EASEL_CLIP_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "clip_image.h"
#include "clip_tokenizer.h"
#include "err.h"
#include "fmt_safetensors.h"

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
    int eos_token_id;      /* text pooling: first position holding it; -1: argmax id */
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

/* The resident dtype of the large weight matrices. AUTO: bf16 if the file holds them as
 * bf16 (used in place, half the memory, the same numbers), else f32 (f16 files widen to
 * f32). F32 / BF16 force one (bf16 from f32 or f16 rounds to nearest even). */
typedef enum ClipWeights {
    CLIP_WEIGHTS_AUTO = 0,
    CLIP_WEIGHTS_F32 = 1,
    CLIP_WEIGHTS_BF16 = 2,
} ClipWeights;

/* "auto", "f32", "bf16" -> *OUT; -1 for anything else. */
int clip_weights_parse(const char *s, ClipWeights *out);
const char *clip_weights_name(ClipWeights w);

/* ---- loading ------------------------------------------------------------------------------- */

/* Load from a model folder, or from a .safetensors file (config and tokenizer files then
 * come from its folder). Errors name the file and tensor: ERR_NOTFOUND (no weights file, no
 * tokenizer), ERR_FORMAT (bad or truncated safetensors, missing or mis-shaped tensor,
 * unsupported architecture), ERR_NOMEM. Free with clip_model_free. */
/* Load onto BE (borrowed: it must outlive the model): *out is the model, or NULL with the
 * error returned. Errors as below, and the backend's (ERR_NOMEM / ERR_GPU) while uploading. */
int clip_model_open(const char *path, ClipWeights weights, Backend *be, ClipModel **out,
                    Err *err);
/* As clip_model_open on a CPU backend of one thread that the model owns. */
ClipModel *clip_model_load(const char *path, Err *err); /* CLIP_WEIGHTS_AUTO */
ClipModel *clip_model_load_weights(const char *path, ClipWeights weights, Err *err);
void clip_model_free(ClipModel *m); /* NULL allowed */

/* A text tower alone, as diffusion models ship it (diffusers' text_encoder/, text_encoder_2/):
 * Hugging Face CLIPTextModel or CLIPTextModelWithProjection weights (text_model.* and
 * text_projection.weight) with their config.json (a CLIPTextConfig), the tokenizer files in
 * TOKENIZER_DIR (NULL: beside the weights; given, the tokenizer cleans text as transformers'
 * CLIPTokenizer does: clip_tokenizer_set_hf_clean). A full CLIP model loads here too. A text-only
 * model has no vision tower (vision calls are ERR_USAGE, n_patches 0); without a projection
 * embed_dim is 0 and the projected and normalised outputs are ERR_USAGE. */
ClipModel *clip_model_load_text(const char *path, const char *tokenizer_dir, ClipWeights weights,
                                Err *err);
/* The same onto BE (borrowed), as clip_model_open. */
int clip_model_open_text(const char *path, const char *tokenizer_dir, ClipWeights weights,
                         Backend *be, ClipModel **out, Err *err);
/* A text tower whose tensors come from elsewhere: a diffusion model's text encoder as
 * sd_weights reads it (a diffusers folder or a single-file checkpoint, LoRAs applied). FIND
 * gives a tensor's shape by its Hugging Face name (text_model.*, text_projection.weight;
 * NULL when absent); READ_F32 its values (shape as FIND gave; 0 or an error naming it).
 * Every tensor is read into the model's own memory while loading; the source is not used
 * after clip_model_open_text_source returns. */
typedef struct ClipTensorSource {
    void *user;
    const StTensor *(*find)(void *user, const char *name);
    int (*read_f32)(void *user, const char *name, int n_dims, const int64_t *shape, float *dst,
                    Err *err);
    const char *where;       /* names the weights in messages */
    const char *config_json; /* a CLIPTextConfig's JSON text, or NULL (then from the shapes) */
} ClipTensorSource;

/* Load the text tower of SRC onto BE (borrowed), with the tokenizer of TOKENIZER_DIR
 * (cleaning text as transformers' CLIPTokenizer does). Errors as clip_model_open_text. */
int clip_model_open_text_source(const ClipTensorSource *src, const char *tokenizer_dir,
                                ClipWeights weights, Backend *be, ClipModel **out, Err *err);
/* The same on a CPU backend of one thread that the model owns. */
ClipModel *clip_model_load_text_source(const ClipTensorSource *src, const char *tokenizer_dir,
                                       ClipWeights weights, Err *err);
/* 1 when M has no vision tower. */
int clip_model_text_only(const ClipModel *m);

/* Borrowed; valid until clip_model_free. */
const ClipConfig *clip_model_config(const ClipModel *m);
const ClipTokenizer *clip_model_tokenizer(const ClipModel *m);
ClipLayout clip_model_layout(const ClipModel *m);
const char *clip_model_weights_path(const ClipModel *m);
Backend *clip_model_backend(const ClipModel *m);
/* The resident dtype chosen at load: CLIP_WEIGHTS_F32 or CLIP_WEIGHTS_BF16. */
ClipWeights clip_model_weights(const ClipModel *m);
/* Where the architecture came from: "open_clip_config.json", "config.json" or "shapes". */
const char *clip_model_config_source(const ClipModel *m);

/* Number of patch tokens per image: (S/P)^2. */
int clip_model_n_patches(const ClipModel *m);

/* Bytes of weights resident on the host once everything was touched (mapped + converted),
 * and of activation scratch on the backend an encode of a batch of B images / texts needs. */
size_t clip_model_weight_bytes(const ClipModel *m);
size_t clip_model_scratch_bytes(const ClipModel *m, int batch);

/* ---- encoding ------------------------------------------------------------------------------ */

/* pixels (n, 3, S, S) preprocessed (clip_image_preprocess with the config's size, mean,
 * std) -> embeds (n, E) L2-normalised; tokens (n, n_patches, E) or NULL. Works in batches
 * of up to 16. Returns 0, ERR_NOMEM, or the backend's failure (ERR_GPU with its message). */
int clip_model_encode_pixels(const ClipModel *m, const float *pixels, int n, float *embeds,
                             float *tokens, Err *err);

/* ids (n, context_length) as clip_tokenizer_tokenize makes them -> embeds (n, E),
 * L2-normalised. Returns 0, ERR_USAGE for an id outside the vocabulary, ERR_NOMEM. */
int clip_model_encode_ids(const ClipModel *m, const int32_t *ids, int n, float *embeds,
                          Err *err);

/* Tokenize and encode n UTF-8 strings. */
int clip_model_encode_texts(const ClipModel *m, const char *const *texts, int n, float *embeds,
                            Err *err);

/* ---- layers, pooled and projected outputs ------------------------------------------------- */

#define CLIP_ALL_LAYERS (-1000)

/* What a forward call returns; NULL outputs are skipped. T is context_length (text) or
 * 1 + n_patches (vision); C the tower's width. */
typedef struct ClipOutputs {
    int layer;        /* hidden state: 0..layers as transformers' hidden_states[i]; negative
                       * from the end (-1 the last block's output, -2 the penultimate, SDXL's);
                       * CLIP_ALL_LAYERS: all layers + 1 states */
    int final_ln;     /* 1: the tower's final LayerNorm (ln_final / ln_post) applied to the
                       * hidden states returned (transformers' last_hidden_state for -1) */
    float *hidden;    /* (n, n_states, T, C) */
    float *pooled;    /* (n, C): final LayerNorm at the pooling position (pooler_output) */
    float *projected; /* (n, E): pooled · projection, NOT normalised (text/image_embeds) */
} ClipOutputs;

/* The number of hidden states O->layer asks for (1, or layers + 1), or -1 if the layer is
 * out of range for the tower (VISION 1 or 0). */
int clip_model_n_states(const ClipModel *m, int vision, int layer);

/* ids (n, context_length) / pixels (n, 3, S, S) -> OUT. Returns 0, ERR_USAGE (an id
 * outside the vocabulary, a layer out of range), ERR_NOMEM. Runs only the blocks the
 * outputs need. */
int clip_model_text_forward(const ClipModel *m, const int32_t *ids, int n,
                            const ClipOutputs *out, Err *err);
int clip_model_vision_forward(const ClipModel *m, const float *pixels, int n,
                              const ClipOutputs *out, Err *err);

/* Preprocess (MODE) and encode n decoded images at once (batched as encode_pixels).
 * embeds and tokens as in clip_model_encode_pixels. */
int clip_model_encode_images(const ClipModel *m, const ClipImage *images, int n,
                             ClipResizeMode mode, float *embeds, float *tokens, Err *err);

/* Decode, preprocess (MODE) and encode n image files; the first failing file is named in
 * err. tokens as in clip_model_encode_pixels. */
int clip_model_encode_image_files(const ClipModel *m, const char *const *paths, int n,
                                  ClipResizeMode mode, float *embeds, float *tokens, Err *err);

#endif
