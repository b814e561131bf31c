/* tune_step — one optimizer step's pieces for `easel tune` on a Unet with adapters: the forward
 * diffusion (noising with the scheduler's ᾱ, the ε or v target), one micro-batch's gradient
 * (policy forward, reference forward with the adapter off, the objective's gradient, the
 * backward into the adapters' gradients), and the optimizer over the adapters' f32 master
 * weights (gathered into one flat host block: AdamW with global-norm clipping).
 *
 * DESIGN
 *   - The reference is the same Unet with its adapters switched off (unet_lora_enable): no
 *     second copy of the weights.
 *   - A micro-batch of B pairs runs as one UNet batch of 2B samples, the B "w" samples then the
 *     B "l" samples, so the two members of a pair go through the same kernels together: the
 *     reference's forward (adapters off), then the policy's forward and backward in one
 *     unet_forward_backward, the objective's gradient computed between them on the host.
 *   - Gradients accumulate on the device (the gradient rule of backend.h) over a step's
 *     micro-batches, each scaled by 1/accum; the optimizer gathers them into its flat host
 *     block, clips, updates the master weights, uploads them and zeroes the device gradients.
 *     The flat order is unet_adapter_param's: A, B (and DoRA's magnitude m) of each adapter.
 * Train layer. One thread at a time per TuneOpt (and its Unet). */
#ifndef EASEL_TUNE_STEP_H
#define EASEL_TUNE_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"
#include "sched_config.h"
#include "tune_loss.h"
#include "unet.h"

/* ---- the forward diffusion ---- */

/* x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (diffusers' add_noise, in f32 as torch computes it), and the
 * target: ε, or v = √ᾱ_t·ε − √(1−ᾱ_t)·x0 for v-prediction (any other prediction type:
 * x0). N floats each. */
void tune_add_noise(const float *alphas_cumprod, int t, const float *x0, const float *noise,
                    size_t n, SchedPrediction pred, float *xt, float *target);

/* ---- one micro-batch ---- */

typedef struct TuneBatch {
    int B;                 /* pairs */
    int C, H, W;           /* latent shape */
    const float *xt;       /* (2B, C, H, W): w samples then l samples */
    const float *target;   /* (2B, C, H, W) */
    const float *t;        /* 2B timesteps */
    const float *ehs;      /* (2B, T, D) text conditioning */
    int T, D;
    const float *pooled;   /* (2B, P) SDXL pooled text, or NULL */
    int P;
    const float *time_ids; /* 2B·6 SDXL time ids, or NULL */
} TuneBatch;

/* Adds scale · d loss / d adapter to the adapters' gradients (zeroed by tune_opt_step) and
 * fills *st. The Unet's adapters are left enabled. */
int tune_batch_grad(Unet *u, Backend *be, const TuneBatch *b, TuneObjective obj, int xl,
                    float beta, float scale, TuneLossStats *st, Err *err);

/* ---- the optimizer ---- */

typedef enum TuneOptKind {
    TUNE_OPT_ADAMW = 0,
    TUNE_OPT_ADAFACTOR = 1, /* transformers.Adafactor as the DPO scripts make it (below) */
} TuneOptKind;

/* One adapter tensor in the flat block, as torch sees it (for Adafactor's factoring). */
typedef struct TuneOptTensor {
    size_t off, n;      /* in the flat block */
    size_t lead, R, C;  /* shape = (lead..., R, C); 1-D tensors: lead 1, R 1, C n */
    int factored;       /* 2 or more dims */
    size_t foff;        /* factored statistics at f[foff]: lead·R rows, then lead·C columns */
} TuneOptTensor;

typedef struct TuneOpt {
    Unet *u;
    Backend *be;
    TuneOptKind kind;
    size_t n;           /* adapter parameters */
    float *p;           /* (n) master weights */
    float *g;           /* (n) gradients of the step */
    float *m, *v;       /* (n) AdamW moments; Adafactor: v for unfactored tensors */
    float *f;           /* (nf) Adafactor's row and column statistics */
    size_t nf;
    TuneOptTensor *ts;  /* the adapter tensors, in flat order */
    int nt;
    int t;              /* optimizer steps taken */
    float weight_decay; /* decoupled weight decay: 1e-2 (diffusers' DPO scripts) */
    float max_norm;     /* AdamW: global gradient-norm clipping, 1.0 (Adafactor clips its
                         * update's RMS to 1 instead, as the scripts do) */
} TuneOpt;

/* Gather the Unet's adapters (after unet_adapter_add) as the master weights, for an
 * optimizer of KIND. Adafactor is transformers.Adafactor(lr, weight_decay, clip_threshold=1.0,
 * scale_parameter=False, relative_step=False) as train_diffusion_dpo.py's --use_adafactor
 * makes it: β2_t = 1 − t^−0.8, ε1 1e-30, second moments factored into row and column means for
 * tensors of 2 or more dims (PEFT's shapes: DoRA's m of a conv layer is (1, out, 1, 1)), the
 * update's RMS clipped to 1, no first moment, no gradient-norm clipping. */
int tune_opt_init(TuneOpt *o, Unet *u, Backend *be, TuneOptKind kind, Err *err);
void tune_opt_deinit(TuneOpt *o); /* NULL allowed */
/* Upload the master weights to the adapters (after they were changed on the host). */
int tune_opt_upload(TuneOpt *o, Err *err);
/* One step at learning rate LR from the adapters' accumulated gradients: gather, clip to
 * max_norm, AdamW, upload, zero the device gradients. *grad_norm: the norm before clipping. */
int tune_opt_step(TuneOpt *o, float lr, float *grad_norm, Err *err);

/* The adapter and the optimizer state as files in folder DIR: the adapter as PEFT / diffusers
 * files (lora_file_write_peft: pytorch_lora_weights.safetensors and adapter_config.json, f32,
 * TARGETS as PEFT's target_modules, BASE_MODEL (may be NULL) its base_model_name_or_path;
 * what `easel generate --lora`, `easel tune-eval` and diffusers' load_lora_weights take) and
 * optimizer.safetensors (AdamW's m, v or Adafactor's v and factored statistics f, and the
 * step count in its metadata). tune_opt_load reads them back into the live adapters and the master weights
 * (an adapter of another shape, rank or kind: ERR_FORMAT naming the entry). */
int tune_opt_save(const TuneOpt *o, const char *const *targets, int n_targets,
                  const char *base_model, const char *dir, Err *err);
int tune_opt_load(TuneOpt *o, const char *dir, Err *err);

#endif
