/* pipeline — text to image: diffusers' StableDiffusionPipeline / StableDiffusionXLPipeline in
 * C, on the engine's Backend: text conditioning (sd_text.h) → initial latents (torch_rng.h,
 * or given) → the scheduler's loop (scheduler.h) with classifier-free guidance over the UNet
 * (unet.h) → VAE decode (vae.h, f32) → 8-bit RGB, as diffusers' image processor makes it.
 *
 * DESIGN
 *   - One SdPipeline per loaded model (a diffusers folder, or a single-file checkpoint: its
 *     configs from the tensors (sd_weights), its scheduler config the family's released one
 *     (SD 1.5 PNDM, SD 2.1 DDIM v-prediction, SDXL Euler, Turbo Euler ancestral trailing),
 *     its tokenizer given (SdPipelineConfig.tokenizer)),
 *     one Backend it borrows. Generating is single-threaded per pipeline; the Backend's pool
 *     (CPU) or stream (CUDA) does the parallel work. The text encoders (sd_text) run on the
 *     same Backend (on CUDA their weights live on the device).
 *   - Defaults are the model's (the scheduler from scheduler/scheduler_config.json, the size
 *     from the UNet's sample_size × the VAE's scale factor) and diffusers' (50 steps, guidance
 *     7.5; SDXL's time ids from the size, no crop).
 *   - Seeds give diffusers' images: with SD_RNG_TORCH_CPU the initial latents and every
 *     ancestral step's noise are torch.Generator("cpu").manual_seed(seed)'s draws, in
 *     diffusers' order.
 *   - Long work reports per step through Progress (unit "steps") and stops within one step
 *     when it is cancelled (ERR_CANCELLED, nothing written).
 *   - The scheduler's settings are always the model's scheduler_config.json, read by the kind
 *     asked for (diffusers' Kind.from_config(pipe.scheduler.config)); with no kind asked for,
 *     the kind its _class_name names (SD 1.5's PNDMScheduler: pndm), and an error naming it
 *     when easel has no such sampler (LMSDiscreteScheduler, ...). The loop runs over the
 *     scheduler's timesteps (PNDM: more than the steps asked for) and reports them as steps.
 *   - LoRAs go into the UNet's and the text encoders' weights as they are read
 *     (sd_weights_add_lora), as diffusers' load_lora_weights. doc/generate.md "Pipeline"
 *     lists what is matched.
 */
#ifndef EASEL_PIPELINE_H
#define EASEL_PIPELINE_H

#include <stdint.h>

#include "backend.h"
#include "err.h"
#include "progress.h"

typedef struct SdPipeline SdPipeline;

typedef enum SdRng {
    SD_RNG_TORCH_CPU = 0,  /* torch.Generator("cpu").manual_seed(seed) (the default) */
    SD_RNG_TORCH_CUDA = 1, /* torch.Generator("cuda") (Philox) */
} SdRng;

typedef struct SdLora {
    const char *path;  /* a .safetensors LoRA (PEFT, diffusers or kohya names) */
    float scale;       /* 1 = as trained */
} SdLora;

typedef struct SdPipelineConfig {
    DType weights;        /* resident dtype of the UNet, VAE and text encoders: F32, F16, BF16
                           * (the text encoders: BF16 for either half type; activations f32) */
    const SdLora *loras;  /* n_loras adapters applied at load (sd_weights_add_lora: PEFT,
                           * diffusers, kohya names) to the UNet and the text encoders, as
                           * diffusers' load_lora_weights; one that matches no layer is an
                           * error naming it */
    int n_loras;
    size_t arena_bytes;   /* the Backend's arena (BackendConfig.arena_bytes; 0 = its default):
                           * the VAE decodes in tiles only when the whole does not fit in it.
                           * Needs: the UNet's (doc/models.md: batch 2, 107 MB at 32² latents,
                           * ~1.0 GB at 128²), then the VAE's (vae_decode_need) */
    /* single-file checkpoints (issue 15): */
    const char *tokenizer; /* a tokenizer folder (sd_text.h SdTextOptions); NULL: the
                            * folder's own (a single file needs one) */
    const char *prediction;/* "epsilon" or "v" overrides the scheduler's prediction_type;
                            * NULL or "": the model's (a single file: its family's) */
} SdPipelineConfig;

typedef struct SdGenParams {
    const char *prompt;
    const char *negative;  /* NULL: none (SDXL: zeros when force_zeros_for_empty_prompt) */
    int width, height;     /* 0: the model's default */
    int steps;             /* 0: 50 */
    float guidance;        /* classifier-free guidance scale; <= 1: off */
    const char *scheduler; /* "euler", "euler_a", "ddim", "dpmpp_2m", "dpmpp_2m_karras",
                            * "pndm"; NULL: the model's scheduler_config.json */
    uint64_t seed;
    SdRng rng;             /* torch-cuda: Philox draws with an uncapped grid (torch_rng.h) */
    const float *latents;  /* optional (1, 4, height/8, width/8) initial latents, before
                            * init_noise_sigma scaling, as diffusers' `latents=` argument */
    int clip_skip;         /* 0: none */
} SdGenParams;

/* Load the model at PATH onto BE (borrowed; it must outlive the pipeline). cfg may be NULL
 * (f32 weights, no LoRA). Errors name the file and tensor; nothing is half-loaded. */
int sd_pipeline_open(const char *path, Backend *be, const SdPipelineConfig *cfg,
                     SdPipeline **out, Err *err);
void sd_pipeline_close(SdPipeline *p); /* NULL allowed */

/* What sd_pipeline_default_size and sd_pipeline_family will say for the model at PATH (a
 * folder or a single file) with PREDICTION as SdPipelineConfig.prediction, read from the
 * UNet's and the VAE's configs without loading any weights (for sizing a Backend's arena
 * before the pipeline opens). Returns 0 or the error of opening the UNet's or VAE's config. */
int sd_pipeline_model_defaults(const char *path, const char *prediction, int *width,
                               int *height, const char **family, Err *err);

/* The name (sched_kind_name) of the sampler the model at PATH runs when no --scheduler is
 * given: its scheduler_config.json's _class_name, a single file's family scheduler; NULL when
 * it cannot be read or names a class easel has no sampler for (the pipeline then refuses to
 * sample without one). */
const char *sd_pipeline_model_scheduler(const char *path, const char *prediction);

/* "sd1", "sd2" or "sdxl", and the default size. */
const char *sd_pipeline_family(const SdPipeline *p);
void sd_pipeline_default_size(const SdPipeline *p, int *width, int *height);

/* The scheduler settings the pipeline samples with: the folder's scheduler_config.json, or a
 * single file's family config (_class_name, betas, spacing, prediction_type as the released
 * model's), with a --prediction override applied. JSON text owned by p. */
const char *sd_pipeline_scheduler_config(const SdPipeline *p);

/* One image: *rgb (width·height·3 bytes, row-major, owned by the caller: free()) and its size.
 * pr may be NULL. */
int sd_pipeline_generate(SdPipeline *p, const SdGenParams *g, const Progress *pr, uint8_t **rgb,
                         int *width, int *height, Err *err);


/* ---- accessors for the generator trainer (issue 16, tune16) ---------------------------------
 * The pipeline's parts, borrowed until sd_pipeline_close: `easel tune` trains adapters on the
 * UNet of one opened pipeline and renders its sample images with the same pipeline. */
typedef struct Unet Unet;
typedef struct Vae Vae;
typedef struct SdText SdText;
typedef struct SchedConfig SchedConfig;
Unet *sd_pipeline_unet(SdPipeline *p);
Vae *sd_pipeline_vae(SdPipeline *p);          /* the decoder only */
SdText *sd_pipeline_text(SdPipeline *p);
Backend *sd_pipeline_backend(SdPipeline *p);
const char *sd_pipeline_path(const SdPipeline *p); /* the model folder */
/* The scheduler settings sd_pipeline_scheduler_config gives (a --prediction applied) read
 * for the training schedule (betas, num_train_timesteps, prediction_type; the sampler kind
 * they name, or DDIM's reading when easel has no such sampler). ERR_FORMAT naming the file
 * and key. */
int sd_pipeline_sched_config(const SdPipeline *p, SchedConfig *c, Err *err);

#endif
