/* vae — diffusers' AutoencoderKL (SD 1.x/2.x, SDXL and its fp16-fix VAE, any config of the same
 * blocks) on the engine's Backend: the decoder (latents → image in [-1,1]), the encoder (image →
 * the latent distribution's mean and logvar), diffusers' tiled decode with blended overlaps for
 * sizes past memory, and the pipeline's last step (latents / scaling_factor (+ shift_factor) →
 * decode → 8-bit RGB bytes as diffusers' VaeImageProcessor makes them).
 *
 * DESIGN (doc/models.md, "The VAE")
 *   - Configured by vae/config.json alone (vae_config_parse): block_out_channels,
 *     layers_per_block, latent_channels, norm_num_groups, scaling_factor, shift_factor,
 *     force_upcast, mid_block_add_attention, use_(post_)quant_conv, sample_size. Block types
 *     other than DownEncoderBlock2D / UpDecoderBlock2D and act_fn other than silu are refused by
 *     name.
 *   - Weights through sd_weights (diffusers names, any layout it reads), each tensor's shape
 *     checked against the config; resident on the backend in the dtype asked for (F32, F16 or
 *     BF16; conv2d, linear and GroupNorm widen half weights themselves).
 *   - Activations are ALWAYS f32, whatever the weights (the SDXL VAE overflows f16: black
 *     images); force_upcast is read into VaeConfig and never needed.
 *   - Activations are backend_tensor_new blocks freed as soon as they are dead (at most about
 *     four at a time); conv2d's scratch comes from the backend's arena. vae_decode_need says
 *     how much of each a decode takes, vae_pick_tile the largest tile that fits a budget.
 *   - The mid-block attention is one head over the H·W tokens through the fused attention op;
 *     on CUDA, whose attention kernel takes heads of at most 128 floats, wider VAEs (SD's 512)
 *     run it as matmul, softmax, matmul (VAE_ATTN_MATMUL; the H·W × H·W scores are in
 *     vae_decode_need).
 * Thread safety: one thread at a time per Vae (and its Backend).
 */
#ifndef EASEL_VAE_H
#define EASEL_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"

#define VAE_MAX_LEVELS 8

typedef struct VaeConfig {
    int in_channels, out_channels, latent_channels;
    int n_levels;                     /* len(block_out_channels) */
    int block_out[VAE_MAX_LEVELS];
    int layers_per_block, norm_groups;
    int sample_size;                  /* diffusers' tile_sample_min_size */
    float scaling_factor, shift_factor; /* shift 0 when the config has none (or null) */
    int has_shift;
    int force_upcast, mid_attention, use_quant_conv, use_post_quant_conv;
} VaeConfig;

/* Parse config.json text; WHERE names the file in messages. ERR_FORMAT naming the key and what
 * is wrong with it. */
int vae_config_parse(const char *json, const char *where, VaeConfig *cfg, Err *err);
/* Pixels per latent pixel: 2^(n_levels − 1) (8 for SD and SDXL). */
int vae_scale(const VaeConfig *cfg);

typedef enum VaeAttnPath {
    VAE_ATTN_AUTO = 0,   /* fused, except on CUDA with channels over 128: matmul */
    VAE_ATTN_FUSED = 1,  /* backend_attention_forward, one head */
    VAE_ATTN_MATMUL = 2, /* scores = q·kᵀ (scale folded into to_q), softmax, ·v */
} VaeAttnPath;

enum { VAE_DECODER = 1, VAE_ENCODER = 2 };

typedef struct VaeOptions {
    unsigned parts;      /* VAE_DECODER | VAE_ENCODER; 0 = both */
    DType weight_dtype;  /* resident weights: DTYPE_F32 (0), DTYPE_F16 or DTYPE_BF16 */
    VaeAttnPath attn;
    size_t arena_bytes;   /* the backend's arena (BackendConfig.arena_bytes); 0 = its default,
                           * 64 MiB on the CPU, 256 MiB on CUDA: what tiles are chosen for */
    size_t tensor_budget; /* bytes of activation blocks a decode may hold; 0 = no limit */
} VaeOptions;

typedef struct Vae Vae;

/* Load the VAE of the model at PATH (a diffusers folder or its vae/ folder: sd_weights_open
 * with "vae") onto BE. opt may be NULL (both parts, f32 weights). Errors name the file and the
 * tensor (missing, wrong shape, not finite) or the config key. */
int vae_load(Backend *be, const char *path, const VaeOptions *opt, Vae **out, Err *err);
void vae_free(Vae *v); /* NULL allowed */
const VaeConfig *vae_config(const Vae *v);

/* img (B, out_channels, h·s, w·s) = vae.decode(z).sample for z (B, latent_channels, h, w), s =
 * vae_scale; host arrays, f32. */
int vae_decode(Vae *v, const float *z, int B, int h, int w, float *img, Err *err);
/* diffusers' tiled_decode: latent tiles of TILE (<= 0: the config's sample_size / s, as
 * diffusers) every TILE·3/4 latents, decoded alone, each blended linearly into its upper and
 * left neighbours over TILE·s/4 pixels and cut to TILE·s·3/4. When z fits one tile this is
 * vae_decode (as diffusers, which tiles only latents larger than a tile). */
int vae_decode_tiled(Vae *v, const float *z, int B, int h, int w, int tile, float *img,
                     Err *err);
/* mean, logvar (B, latent_channels, H/s, W/s) of vae.encode(img).latent_dist for img
 * (B, in_channels, H, W) in [-1,1] (H, W multiples of s); logvar clamped to [-30, 20]. */
int vae_encode(Vae *v, const float *img, int B, int H, int W, float *mean, float *logvar,
               Err *err);

/* diffusers' _tiled_encode (enable_tiling): image tiles of TILE pixels (<= 0: the config's
 * sample_size) every ⌊0.75·TILE⌋, encoded alone, their moments blended over ⌊TILE/s/4⌋ latents
 * and cut, then split as vae_encode. H, W, TILE and ⌊0.75·TILE⌋ multiples of s. When the image
 * fits one tile this is vae_encode. */
int vae_encode_tiled(Vae *v, const float *img, int B, int H, int W, int tile, float *mean,
                     float *logvar, Err *err);

/* What decoding (B, h, w) latents in one piece takes: *arena_bytes of the backend's scratch
 * arena (conv2d's largest scratch) and *tensor_bytes of activation blocks at their peak. */
void vae_decode_need(const Vae *v, int B, int h, int w, size_t *arena_bytes,
                     size_t *tensor_bytes);
/* The largest latent tile (a multiple of 8, at most the config's default tile; or h, w
 * themselves when they fit whole) whose decode of a batch of B needs at most ARENA_FREE arena
 * bytes and BUDGET tensor bytes (0 = no limit); 0 when not even an 8×8 tile fits. */
int vae_pick_tile(const Vae *v, int B, int h, int w, size_t arena_free, size_t budget);

/* The pipeline's end: z = latents / scaling_factor (+ shift_factor), decoded (tiled with
 * vae_pick_tile against the options' arena_bytes (less what is in use) and tensor_budget when
 * TILE is 0 and the whole does not fit;
 * TILE > 0 forces tiles of that size), then 8-bit RGB as VaeImageProcessor.postprocess(...,
 * "pil"): round-half-even((clamp(x·0.5 + 0.5, 0, 1))·255) in f32. rgb (B, h·s, w·s, 3)
 * bytes, row-major HWC. out_channels must be 3. */
int vae_latents_to_rgb8(Vae *v, const float *latents, int B, int h, int w, int tile,
                        uint8_t *rgb, Err *err);
/* The byte conversion alone: img (B,3,H,W) in [-1,1] → rgb (B,H,W,3). */
void vae_image_to_rgb8(const float *img, int B, int H, int W, uint8_t *rgb);

#endif
