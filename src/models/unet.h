/* unet — diffusers' UNet2DConditionModel (SD 1.5 / 2.1 / SD-Turbo, SDXL base and Turbo) on the
 * engine's Backend, configured by the component's config.json and loaded by diffusers names
 * through sd_weights (every tensor through sd_weights_read, in bounded pieces: folders,
 * single files and LoRA alike).
 *
 * DESIGN
 *   - One model, configured: block_out_channels, layers_per_block (int or per level),
 *     down_block_types / up_block_types (CrossAttnDownBlock2D, DownBlock2D, CrossAttnUpBlock2D,
 *     UpBlock2D), mid_block_type UNetMidBlock2DCrossAttn, transformer_layers_per_block (int or
 *     per level), the head count num_attention_heads, or attention_head_dim when that is null
 *     (diffusers reads attention_head_dim as a head COUNT for every SD model: SD 1.5's 8 and
 *     SD 2.1's [5,10,20,20] are heads, 64-wide each at 320 channels), cross_attention_dim,
 *     use_linear_projection, norm_num_groups, norm_eps, flip_sin_to_cos, freq_shift,
 *     addition_embed_type "text_time" (addition_time_embed_dim,
 *     projection_class_embeddings_input_dim: SDXL's pooled text and size/crop time ids),
 *     upcast_attention (attention is f32 here anyway), in/out_channels, sample_size. Any other
 *     value of a field that changes the computation (class embeddings, time_cond_proj_dim,
 *     resnet_time_scale_shift "scale_shift", dual or only-cross attention, ...) is refused at
 *     load with an error naming the field. The prediction type is the scheduler's business.
 *   - Parameters are resident on the backend's device in the dtype of UnetOptions (F32, F16 or
 *     BF16; biases and norm affines too); activations are F32 (the backend's attention takes
 *     f32 only).
 *   - The forward is a sequence of blocks (ResNet, Transformer2D, down/up samplers), each a
 *     function that takes its input and writes a caller-allocated output; its temporaries come
 *     from the backend's arena between a mark and a reset, so scratch stays near the largest
 *     block. The skip connections of the down path stay allocated until the up path has used
 *     them (as in diffusers); the up path's hidden state alternates between two buffers.
 *     The backward (unet_backward, below) keeps every block's output and either every
 *     block's internals too (keep mode) or recomputes each block's internals in its backward
 *     (gradient checkpointing per block), as the arena allows (doc/models.md).
 *   - Memory (f32 activations, arena): measured on the CPU backend with SDXL's widths
 *     (320/640/1280, 2 layers per level, text_time, 77×2048 conditioning; the transformer depth
 *     does not change the peak), batch 2 as with guidance: 107 MB of arena at 32² latents,
 *     287 MB at 64², growing with the area, so about 1.0 GB at 128² (a 1024² image): size the
 *     arena at 1.25 GiB on the CPU. The CUDA backend's conv2d column buffer (C·9·H·W floats
 *     per image, 0.57 GB for the 960-channel ResNet at 128²) comes on top: about 1.75 GiB
 *     there. Weights: 2.6 G parameters, 10.3 GB in f32, 5.1 GB in f16/bf16.
 * Models layer: the engine's Backend, sd_weights, jansson. One thread at a time per Unet.
 */
#ifndef EASEL_UNET_H
#define EASEL_UNET_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"
#include "lora_set.h"
#include "sd_weights.h"

#define UNET_MAX_LEVELS 6

typedef struct UnetConfig {
    int in_channels, out_channels, sample_size;
    int levels;                          /* len(block_out_channels) */
    int block_out[UNET_MAX_LEVELS];
    int layers[UNET_MAX_LEVELS];         /* layers_per_block, per level (down path) */
    int down_attn[UNET_MAX_LEVELS];      /* 1: CrossAttnDownBlock2D, 0: DownBlock2D */
    int up_attn[UNET_MAX_LEVELS];        /* up block i (i = 0 the deepest) */
    int tlayers[UNET_MAX_LEVELS];        /* transformer_layers_per_block, per level */
    int heads[UNET_MAX_LEVELS];          /* attention heads, per level */
    int cross_dim;                       /* cross_attention_dim */
    int linear_proj;                     /* use_linear_projection */
    int groups;                          /* norm_num_groups */
    float eps;                           /* norm_eps */
    int flip_sin_to_cos;
    float freq_shift;
    int time_embed_dim;                  /* time_embedding_dim or 4·block_out[0] */
    int text_time;                       /* addition_embed_type == "text_time" */
    int add_time_dim;                    /* addition_time_embed_dim */
    int add_in_dim;                      /* projection_class_embeddings_input_dim */
    int upcast_attention;
} UnetConfig;

typedef struct UnetOptions {
    DType dtype; /* resident parameters: DTYPE_F32 (default, the zero), F16 or BF16 */
} UnetOptions;

typedef struct Unet Unet;

/* Parse a UNet config.json text. `where` names it in messages. ERR_FORMAT naming the field
 * and what is accepted. */
int unet_config_parse(const char *json, const char *where, UnetConfig *cfg, Err *err);

/* Load the UNet of an open sd_weights component ("unet") onto be: the config from its
 * config.json, every tensor through sd_weights_read into the resident dtype (missing tensor
 * or wrong shape: ERR_FORMAT / ERR_NOTFOUND naming it and the file). opts may be NULL (f32). */
int unet_load(SdWeights *w, Backend *be, const UnetOptions *opts, Unet **out, Err *err);
void unet_free(Unet *u); /* NULL allowed; the backend must still be open */

const UnetConfig *unet_config(const Unet *u);
/* Bytes of parameters resident on the device. */
size_t unet_param_bytes(const Unet *u);

/* The noise prediction: out (B,out_channels,h,w) for latents x (B,in_channels,h,w), F32 on
 * be's device, any h, w >= 1 (as diffusers: the downsamplers give ceil(size/2), and when a side
 * is not a multiple of 2^(levels−1) each upsampler resizes by nearest to its skip connection's
 * size, diffusers' upsample_size; otherwise exactly 2×); timesteps: B host floats; ehs: the text
 * conditioning (B,T,cross_dim) F32 on the device. SDXL (text_time) also takes text_embeds
 * (B,E) on the device, E + 6·add_time_dim = add_in_dim, and time_ids: B·6 host floats
 * (original size, crop top-left, target size); NULL for other models. Uses the backend's
 * arena (released before returning) and syncs the backend once: 0, or its failure. */
int unet_forward(Unet *u, Backend *be, const Tensor *out, const Tensor *x, const float *timesteps,
                 const Tensor *ehs, const Tensor *text_embeds, const float *time_ids, Err *err);

/* ---- backward and adapters: LoRA and DoRA (issue 16) -----------------------------------------
 * The base is frozen: the backward computes the gradient w.r.t. the input latents and the
 * adapters' tensors, never the base weights (nor the conditioning). */

/* Adapters as PEFT's LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets,
 * use_dora=dora, init_lora_weights=True) on diffusers' UNet2DConditionModel:
 *   - targets: PEFT's suffix rule: a module is adapted when its diffusers name equals a target
 *     or ends with "." + target. Every linear and conv layer can be adapted: the transformer
 *     blocks' attn1/attn2 to_q, to_k, to_v, to_out.0, ff.net.0.proj, ff.net.2, the
 *     transformers' proj_in / proj_out (linear or 1×1 conv), the ResNets' conv1, conv2,
 *     conv_shortcut, time_emb_proj, the down/upsamplers' conv, conv_in, conv_out,
 *     time_embedding.linear_1/2, add_embedding.linear_1/2 (SDXL). NULL (n_targets 0): the
 *     original's UNET_ADAPTER_DEFAULT_TARGETS. A target that names no such layer is ERR_USAGE
 *     naming it.
 *   - A linear layer (out, in): A (r, in), B (out, r); a conv (out, in, k, k) with its stride
 *     and padding: A is Conv2d(in, r, k, same stride and padding) (r, in, k, k), B is
 *     Conv2d(r, out, 1×1) (out, r, 1, 1). A kaiming-uniform with a = √5 (U(±1/√fan_in), from
 *     seed), B zero: a new adapter leaves the output unchanged. LoRA: y = W x + b + s·B A x,
 *     s = alpha / rank.
 *   - DoRA (dora = 1): also a magnitude m (out), initialised to the norm of each output row of
 *     W (over every other dimension); y = (m / ‖W + s·B A‖) ⊙ (W x + s·B A x) + b with the row
 *     norm DETACHED from the gradient (PEFT, the DoRA paper's §4.3).
 *   - Adapter tensors are F32 on the UNet's backend whatever the base's dtype (UnetOptions).
 * rank 0 means 8 and alpha 0 means 32 (the defaults). Once per Unet (unet_lora_remove first to
 * start again). */
typedef struct UnetAdapterConfig {
    int rank;
    float alpha;
    int dora;
    const char *const *targets;
    int n_targets;
    uint64_t seed;
} UnetAdapterConfig;
#define UNET_ADAPTER_DEFAULT_TARGETS \
    {"to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"}
int unet_adapter_add(Unet *u, const UnetAdapterConfig *c, Err *err);
/* The trainable tensors in a fixed order (per adapter, in module load order: A, B, then m for
 * DoRA), 0 when there are no adapters. unet_adapter_param: the name of tensor i (PEFT's
 * names without the "unet." prefix: "down_blocks.1.attentions.0.transformer_blocks.0.attn1.
 * to_q.lora_A.weight", "...lora_B.weight", "...lora_magnitude_vector"; valid while the
 * adapters are), NULL when out of range,
 * and views of it and its gradient (either may be NULL; read or write them with
 * backend_upload / backend_download). */
int unet_adapter_param_count(const Unet *u);
const char *unet_adapter_param(Unet *u, int i, Tensor *p, Tensor *g);
/* The adapters' tensors into host memory (src/models/lora_set.h: one entry per adapted
 * module, its diffusers name, r, alpha, shapes, m for DoRA). *out must be zeroed or hold a
 * set (freed first); free the result with lora_set_free. Syncs. */
int unet_adapter_export(Unet *u, LoraSet *out, Err *err);
/* Load s into the live adapters (resume, evaluation): every entry must name a live adapter
 * with the same rank, alpha and shapes, have m exactly when the adapters are DoRA, and every live
 * adapter must be given: else ERR_FORMAT naming the entry (nothing is changed then). Syncs. */
int unet_adapter_import(Unet *u, const LoraSet *s, Err *err);

/* The LoRA interface of the first version (kept: the trainer and the tests use it):
 * unet_lora_add is unet_adapter_add without DoRA; count is the number of adapted modules;
 * get gives adapter i's module name and A, B and their gradients (any pointer may be NULL);
 * zero_grad zeroes every adapter gradient (DoRA's dm too). */
int unet_lora_add(Unet *u, int rank, float alpha, const char *const *targets, int n_targets,
                  uint64_t seed, Err *err);
void unet_lora_remove(Unet *u);
int unet_lora_count(const Unet *u);
const char *unet_lora_get(Unet *u, int i, Tensor *A, Tensor *B, Tensor *dA, Tensor *dB);
void unet_lora_zero_grad(Unet *u);
/* on = 0: every adapter is skipped, in the forward and the backward (the base model: a
 * preference objective's reference, without a second copy of the weights); 1 (the default
 * after unet_adapter_add): applied. */
void unet_lora_enable(Unet *u, int on);

/* Backward of unet_forward for the same inputs, for the upstream gradient dout (shaped as the
 * output): dx (shaped as x, F32; NULL: not wanted) += d/dx, and every adapter tensor's
 * gradient += (the gradient rule of backend.h: zero them first, unet_lora_zero_grad). It runs
 * the forward itself, keeping every block's output (a transformer's blocks count: the token
 * states between its BasicTransformerBlocks are kept) and, in keep mode, every block's
 * internals (its record: GroupNorm and LayerNorm statistics and outputs, attention q/k/v/o and
 * row log-sum-exps, the feed-forward's projection), which the backward then uses: one forward
 * in all, as PyTorch's autograd. Without keep mode (per-block gradient checkpointing) each
 * block's backward runs that block's forward once more to fill its record, so the arena holds
 * the block outputs, one gradient per block output and one block's record. The mode is
 * unet_set_keep's (default UNET_KEEP_AUTO: keep when an estimate of every record, beside what
 * checkpointing needs, fits the arena's free space at the call); both give the same gradients
 * bit for bit. With an adapter on the time or added embedding the gradient also flows back
 * through the embedding MLP. Syncs once: 0, or the failure. */
typedef enum UnetKeep {
    UNET_KEEP_AUTO = 0, /* keep when the records fit the arena (the default) */
    UNET_KEEP_ON = 1,   /* always keep (an arena too small fails with ERR_NOMEM) */
    UNET_KEEP_OFF = 2,  /* always checkpoint per block (the least memory) */
} UnetKeep;
void unet_set_keep(Unet *u, UnetKeep keep);
/* Whether the last unet_backward / unet_forward_backward kept its records (1) or checkpointed
 * per block (0). */
int unet_kept(const Unet *u);
int unet_backward(Unet *u, Backend *be, const Tensor *dx, const Tensor *dout, const Tensor *x,
                  const float *timesteps, const Tensor *ehs, const Tensor *text_embeds,
                  const float *time_ids, Err *err);
/* One forward and its backward (a training step's, without running the forward twice): the
 * forward keeping block outputs writes out (shaped as unet_forward's), the backend is synced
 * (a failure is returned), then dout_fn(ctx, out, dout, err) fills dout (F32, shaped as out,
 * zeroed, in the backend's arena) with the upstream gradient (it may run ops and download; a
 * non-zero return stops here and is returned), then the backward as unet_backward's. */
int unet_forward_backward(Unet *u, Backend *be, const Tensor *out, const Tensor *dx,
                          int (*dout_fn)(void *ctx, const Tensor *out, const Tensor *dout,
                                         Err *err),
                          void *ctx, const Tensor *x, const float *timesteps, const Tensor *ehs,
                          const Tensor *text_embeds, const float *time_ids, Err *err);

#endif
