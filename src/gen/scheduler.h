/* scheduler — diffusion samplers (schedulers) as diffusers runs them, over f32 latents.
 *
 * A Scheduler is made from a SchedConfig (sched_config.h) and a step count, and then holds what
 * diffusers' set_timesteps computes: the timesteps the UNet is called at, the sigmas (Euler
 * and DPM-Solver++) and init_noise_sigma. A pipeline then runs, for i = 0 .. n_steps - 1:
 *
 *     scheduler_scale_model_input(s, x, in, n)    in = x / sqrt(sigma_i^2 + 1) (Euler), else x
 *     model_output = unet(in, s->timesteps[i])
 *     scheduler_step(s, model_output, x, noise, x, n, err)    x = the previous, less noisy one
 *
 * starting from x = noise * init_noise_sigma. `noise` is the step's fresh normal noise of n
 * values when scheduler_step_needs_noise says so (Euler ancestral; DDIM with eta > 0), drawn
 * from the same generator as the initial latents to give diffusers' images; else NULL.
 *
 * Every number follows diffusers' arithmetic: the schedule in float64 where numpy computes it
 * and in float32 where torch does (torch's linspace, its cumprod accumulated in double), each
 * step in float32 in diffusers' order of operations, so the latents agree with diffusers'
 * but for torch's own last-bit roundings (tests/gen/test_scheduler.c checks 1e-6 of the
 * latents' scale; zero terminal SNR 5e-5; doc/generate.md).
 *
 * PNDM (diffusers' PNDMScheduler) runs more steps than asked: n_steps is the length of its
 * timesteps (N + 1 for PLMS, N + 9 with the Runge-Kutta warm-up), and a pipeline loops over
 * n_steps, as diffusers loops over scheduler.timesteps.
 *
 * Not thread-safe per Scheduler (it carries the step index and DPM-Solver's and PNDM's
 * history).
 */
#ifndef EASEL_SCHED_H
#define EASEL_SCHED_H

#include <stddef.h>

#include "err.h"
#include "sched_config.h"

typedef struct Scheduler {
    SchedConfig cfg;
    int n_train;
    float *alphas_cumprod;     /* [n_train], torch's cumprod of 1 - beta */
    int n_steps;
    double *timesteps;         /* [n_steps] the values the UNet gets (integers but Euler's) */
    float *sigmas;             /* [n_steps + 1] Euler, DPM-Solver++; NULL for DDIM */
    float init_noise_sigma;    /* the initial noise's scale */
    int step_index;            /* the next step scheduler_step runs */
    /* DPM-Solver++ history: the previous step's data prediction */
    float *prev_x0;
    size_t n_prev;
    int lower_order_nums;
    /* PNDM: timesteps holds diffusers' prk_timesteps then plms_timesteps (SD 1.5's PLMS with
     * N steps runs N + 1 UNet calls, the second timestep twice); the history of its steps */
    int n_prk;                 /* Runge-Kutta steps first (12, or 0 with skip_prk_steps) */
    int pndm_ratio;            /* num_train_timesteps / N, as diffusers' integer division */
    float *pndm_buf;           /* [6 * pndm_n]: 4 past model outputs, cur_sample, RK sum */
    size_t pndm_n;
    float *ets[4];             /* the past model outputs, oldest first (in pndm_buf) */
    int n_ets;
    int has_cur_sample;        /* cur_sample (pndm_buf + 4 n) is set */
} Scheduler;

/* Compute the schedule of CFG for STEPS steps (1 .. num_train_timesteps). Returns 0, or
 * ERR_USAGE for a step count out of range (the message says the range). */
int scheduler_init(Scheduler *s, const SchedConfig *cfg, int steps, Err *err);
void scheduler_deinit(Scheduler *s);

/* Restart at step 0 (the same schedule), forgetting DPM-Solver's history. */
void scheduler_reset(Scheduler *s);

/* Whether the next scheduler_step needs fresh noise. */
int scheduler_step_needs_noise(const Scheduler *s);

/* The UNet's input at the current step: out[i] = x[i] / sqrt(sigma^2 + 1) for Euler kinds,
 * else a copy. OUT may be X. */
void scheduler_scale_model_input(const Scheduler *s, const float *x, float *out, size_t n);

/* One step at s->step_index: from the model's output MODEL_OUTPUT for SAMPLE (n values), the
 * previous sample into PREV (may be SAMPLE); NOISE as scheduler_step_needs_noise says.
 * Advances the step index. Returns 0, ERR_USAGE past the last step or without needed noise,
 * ERR_NOMEM when DPM-Solver's history cannot be allocated; on error nothing changes. */
int scheduler_step(Scheduler *s, const float *model_output, const float *sample,
                   const float *noise, float *prev, size_t n, Err *err);

#endif
