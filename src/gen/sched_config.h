/* sched_config — a diffusion scheduler's settings, read from diffusers'
 * `scheduler/scheduler_config.json` as diffusers' `from_config` reads them.
 *
 * The sampler kinds (the names `--scheduler` will take) and the diffusers class each follows:
 *   euler            EulerDiscreteScheduler
 *   euler_a          EulerAncestralDiscreteScheduler
 *   ddim             DDIMScheduler
 *   dpmpp_2m         DPMSolverMultistepScheduler (dpmsolver++, order 2)
 *   dpmpp_2m_karras  the same with use_karras_sigmas forced on
 *   pndm             PNDMScheduler (PLMS, with its Runge-Kutta warm-up unless skip_prk_steps)
 * A model folder's config usually names another class (PNDMScheduler for SD 1.5,
 * EulerDiscreteScheduler for SDXL): as in diffusers, the keys the chosen kind knows are taken,
 * the other keys are ignored, and the kind's defaults fill the rest. A known key with a wrong
 * type, an unknown value (beta_schedule "cosine") or an option easel does not implement
 * (trained_betas, thresholding, sde-dpmsolver++, ...) is an error
 * that names the file and the key.
 *
 * Pure, thread-safe.
 */
#ifndef EASEL_SCHED_CONFIG_H
#define EASEL_SCHED_CONFIG_H

#include "err.h"

typedef enum SchedKind {
    SCHED_EULER = 0,
    SCHED_EULER_A,
    SCHED_DDIM,
    SCHED_DPMPP_2M,
    SCHED_DPMPP_2M_KARRAS,
    SCHED_PNDM,
    SCHED_KIND_COUNT
} SchedKind;

typedef enum SchedBetas {
    SCHED_BETAS_LINEAR = 0,
    SCHED_BETAS_SCALED_LINEAR,   /* linspace of square roots, squared */
    SCHED_BETAS_SQUAREDCOS_CAP_V2,
} SchedBetas;

typedef enum SchedSpacing {
    SCHED_SPACING_LINSPACE = 0,
    SCHED_SPACING_LEADING,
    SCHED_SPACING_TRAILING,
} SchedSpacing;

typedef enum SchedPrediction {
    SCHED_PRED_EPSILON = 0,
    SCHED_PRED_V,                /* v_prediction */
    SCHED_PRED_SAMPLE,           /* sample (original_sample for Euler) */
} SchedPrediction;

typedef struct SchedConfig {
    SchedKind kind;
    int num_train_timesteps;     /* 1000 */
    double beta_start, beta_end; /* 0.0001, 0.02 */
    SchedBetas beta_schedule;    /* linear */
    SchedSpacing spacing;        /* linspace (DDIM: leading) */
    int steps_offset;            /* 0 */
    SchedPrediction prediction;  /* epsilon */
    int rescale_zero_snr;        /* rescale_betas_zero_snr: 0 */
    /* DDIM */
    int clip_sample;             /* 1 */
    double clip_sample_range;    /* 1.0 */
    int set_alpha_to_one;        /* 1 */
    double eta;                  /* 0: the pipelines' default; > 0 needs noise per step */
    /* Euler and DPM-Solver++ */
    int use_karras_sigmas;       /* 0 (1 for dpmpp_2m_karras) */
    int final_sigma_min;         /* final_sigmas_type: 0 "zero", 1 "sigma_min" */
    double sigma_min, sigma_max; /* Karras bounds; NAN = from the schedule */
    /* DPM-Solver++ */
    int solver_order;            /* 1 or 2 (2) */
    int solver_heun;             /* solver_type: 0 midpoint, 1 heun */
    int lower_order_final;       /* 1 */
    int euler_at_final;          /* 0 */
    double lambda_min_clipped;   /* -inf */
    /* PNDM (set_alpha_to_one above: its default is 0) */
    int skip_prk_steps;          /* 0: 12 Runge-Kutta steps first; 1: PLMS only (SD 1.5) */
} SchedConfig;

/* The diffusers class defaults of KIND. */
void sched_config_default(SchedConfig *c, SchedKind kind);

/* Parse JSON text (a scheduler_config.json) into C for KIND. WHAT names the input in
 * messages (the file's path). Returns 0, or ERR_FORMAT naming WHAT, the key and the fix;
 * C is unchanged on error. */
int sched_config_parse(SchedConfig *c, SchedKind kind, const char *json, const char *what,
                       Err *err);

/* Read PATH (a regular file of at most 1 MB) and parse it as above. */
int sched_config_load(SchedConfig *c, SchedKind kind, const char *path, Err *err);

/* "euler" etc. → kind; -1 for an unknown name. */
int sched_kind_from_name(const char *name);
const char *sched_kind_name(SchedKind kind);

#endif
