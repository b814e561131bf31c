/* tune — preference fine-tuning of a text-to-image model's UNet with a LoRA or DoRA adapter
 * (`easel tune`, the `tune` job kind): Diffusion-DPO, DSPO and ADPO (tune_loss.h) on pairs
 * of images, offline. doc/tuning.md is the user's guide.
 *
 * DESIGN
 *   - One model is opened ONCE as an SdPipeline (the UNet trained, its text encoders for the
 *     prompts, its scheduler's ᾱ for the noising, the same pipeline renders the sample
 *     images); a LoRA or DoRA adapter is added to its UNet (unet_adapter_add), and the
 *     reference model of the objectives is the same UNet with the adapter off.
 *   - Before anything is written, every pair is checked and its images encoded: the VAE
 *     encoder's mean × scaling_factor of the image resized (shorter side, bicubic) and
 *     centre-cropped to the training size (tune_latents.h; cached in the store when there is
 *     one), once per image; every prompt encoded once. A pair naming an image that is missing
 *     or does not decode is refused with its line (tune_pairs_src.h).
 *   - Step s (1-based) takes batch·accum pair slots g = ((s−1)·accum + k)·batch + b; slot g is
 *     pair perm_e[g mod n] of a seeded permutation of epoch e = g div n; its timestep
 *     t ~ U[0, T) and noise ε come from a generator seeded by (seed, g, pair index): a resumed
 *     run draws exactly what an uninterrupted one does.
 *   - AdamW on f32 master weights (weight decay 1e-2, ε 1e-8, as diffusers' DPO scripts),
 *     gradient-norm clipping at 1.0 (or the scripts' Adafactor, tune_step.h), learning rate
 *     lr·s/warmup for s <= warmup then lr (diffusers' constant_with_warmup, the DPO scripts'
 *     default).
 *   - OUT/metrics.jsonl gets one JSON object per step (and the store, when given, the same as
 *     run metrics of split "train"); OUT/checkpoint-S/ every save_every steps and OUT/final/
 *     hold the adapter as PEFT / diffusers files (pytorch_lora_weights.safetensors,
 *     adapter_config.json), optimizer.safetensors and state.json, each folder written
 *     whole under a temporary name and renamed into place. A run given an OUT that holds
 *     checkpoints resumes from the newest: after kill -9 the final adapter is bit for bit an
 *     uninterrupted run's. OUT/samples/step-S/ holds sample images at fixed seeds (and the
 *     store's run_images, for the Monitor).
 * Thread safety: one run per thread; the Store (optional) is used from the calling thread. */
#ifndef EASEL_TUNE_H
#define EASEL_TUNE_H

#include <stdint.h>

#include "err.h"
#include "progress.h"
#include "store.h"
#include "tune_pairs.h"

typedef struct TuneConfig {
    char model[1024];          /* a diffusers model folder or a single-file checkpoint */
    char tokenizer[1024];      /* a single file's tokenizer folder (SdPipelineConfig) */
    char prediction[16];       /* "", "epsilon" or "v": SdPipelineConfig.prediction */
    char pairs[1024];          /* a pairs.jsonl, or "" with from_store */
    int from_store;            /* pairs from the store's ratings (tune_pairs_from_store) */
    char aspect[64];           /* with from_store: one aspect's ratings ("" = combined) */
    char reward[1024];         /* with from_store: a reward checkpoint whose head weights
                                * weigh the aspects ("" = their plain mean) */
    double min_diff;           /* with from_store: smallest score difference of a pair: 0.5 */
    char out[1024];            /* the run folder */
    char objective[8];         /* dpo (default), dspo, adpo */
    char adapter[8];           /* lora (default) or dora */
    char device[24];           /* auto, cpu, cuda, cuda:N */
    char dtype[8];             /* the frozen base weights in memory: auto (bf16 on a GPU, f32
                                * on the CPU), f32, f16, bf16; the adapter is f32 always */
    char optimizer[12];        /* adamw (default) or adafactor */
    char checkpointing[8];     /* the backward's memory: auto (default: every activation kept
                                * when the records fit the arena: on the CPU up to half the
                                * RAM; on a GPU the arena is sized for per-block gradient
                                * checkpointing), on (always checkpoint: the least memory), off
                                * (always keep: the fastest; a GPU arena sized for it) */
    char targets[512];         /* comma-separated module suffixes; "" = the original's six */
    int rank;                  /* 8 */
    double alpha;              /* 32 */
    double beta;               /* 0 = the objective's and model's default */
    double lr;                 /* 5e-5 */
    double weight_decay;       /* 1e-2 */
    int steps;                 /* 2000 */
    int batch;                 /* pairs per micro-batch: 1 */
    int accum;                 /* micro-batches per step: 1 */
    uint64_t seed;             /* 0 */
    int save_every;            /* 500 (0: only final/) */
    int width, height;         /* 0: the model's default size */
    int warmup;                /* 0 */
    int threads;               /* CPU threads, 0 = all */
    char sample_seeds[128];    /* "0,1" ("" or "none": no samples) */
    char sample_prompts[1024]; /* a file, one prompt a line; "" = the first pairs' prompts */
    int sample_steps;          /* 20 */
    char run_name[128];        /* the store's run name; "" = generated */
    /* online16: the online loop (tune_online.h; --online): pairs made each round from the
     * current adapter's own candidates, scored by the reward model `reward` */
    int online;                /* 1: rounds of generate → score → pair → steps */
    char prompts[1024];        /* prompts.csv (prompt_id,prompt) */
    int candidates;            /* candidates per prompt and round: 4 */
    int rounds;                /* 10 */
    int steps_per_round;       /* optimizer steps per round: 10 */
    char aspect_weights[256];  /* "spatial=1,style=2": per-head weights ("" = the reward
                                * model's learned head weights) */
    double guidance;           /* candidates' classifier-free guidance: 7.5 (their denoising
                                * steps are sample_steps) */
} TuneConfig;

void tune_config_defaults(TuneConfig *c);
/* Values and combinations; ERR_USAGE naming the flag. */
int tune_config_check(const TuneConfig *c, Err *err);
/* β when c->beta is 0: dpo/adpo 5000 (SDXL) or 2000 (SD 1.x/2.x); dspo 5000 or 0.001. */
double tune_default_beta(const char *objective, int xl);

/* One optimizer step's metrics (metrics.jsonl's fields but the step; doc/tuning.md). */
typedef struct TuneStepMetrics {
    double loss;        /* the objective, mean over the step's pairs */
    double acc;         /* implicit preference accuracy: share of pairs with inside > 0 */
    double margin;      /* reward margin: mean of inside = −β/2·((e_θ,w − e_ref,w) −
                         * (e_θ,l − e_ref,l)) */
    double kl;          /* KL proxy: mean of e_θ − e_ref over both samples of every pair */
    double lr;          /* the learning rate of the step */
    double grad_norm;   /* the adapters' gradient norm before clipping */
    double pairs_per_s; /* pairs of the step per second of the step */
} TuneStepMetrics;

typedef struct TuneHooks {
    Progress progress;       /* unit "steps"; cancel saves a checkpoint and stops */
    int64_t job_id;          /* recorded in the store's run (0 = none) */
    /* called (progress.user) after step S of TOTAL is complete (metrics and any checkpoint
     * written; CHECKPOINT 1 when checkpoint-S/ was) */
    void (*after_step)(void *user, int step, int total, int checkpoint,
                       const TuneStepMetrics *m);
    /* called (progress.user) with one line when the device differs from the one asked */
    void (*device_note)(void *user, const char *note);
} TuneHooks;

/* Train. ST may be NULL (no run in the store). Returns 0, ERR_CANCELLED (a checkpoint of the
 * last complete step kept: run again to resume), or another ERR_*. */
int tune_run(Store *st, const TuneConfig *c, const TuneHooks *h, Err *err);

/* The newest complete checkpoint-S/ in OUT: S, or 0 when there is none. */
int tune_last_checkpoint(const char *out);

#endif
