/* optim — AdamW (decoupled weight decay, PyTorch torch.optim.AdamW semantics), gradient
 * clipping by global norm, learning-rate schedules.
 *
 * Works on flat arrays: a model keeps its parameters, gradients and the two moment buffers
 * each in one contiguous block, so one call updates everything. The update is split over the
 * CPU pool by element ranges; each element's arithmetic is the same on any thread, so results
 * are deterministic. Norms sum fixed-size chunks in double, then the chunk sums in order, so
 * they do not depend on the thread count either. Engine layer.
 */
#ifndef EASEL_OPTIM_H
#define EASEL_OPTIM_H

#include <stddef.h>

typedef struct AdamWConfig {
    float lr;            /* learning rate (a schedule may override per step) */
    float beta1;         /* 0.9 */
    float beta2;         /* 0.999 */
    float eps;           /* 1e-8 */
    float weight_decay;  /* 0.01 (PyTorch AdamW's default) */
} AdamWConfig;

/* PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01. */
AdamWConfig optim_adamw_defaults(void);

/* One AdamW step t (1-based) over n parameters with learning rate lr:
 *   p ← p − lr·wd·p;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
 *   p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + eps)
 * as torch.optim.AdamW (non-fused) computes it, to float rounding. m and v start at zero.
 * If zero_grad is nonzero, g is set to 0 in the same pass (saves a separate memset). */
void optim_adamw_step(float *params, float *grads, float *m, float *v, size_t n, int t,
                      float lr, const AdamWConfig *cfg, int zero_grad);

/* √(Σ g²) over n values, deterministic (see above). */
float optim_grad_norm(const float *grads, size_t n);
/* Scale grads so their global norm is at most max_norm (PyTorch clip_grad_norm_: factor
 * max_norm / (norm + 1e-6) when that is below 1). Returns the norm before clipping. */
float optim_clip_grad_norm(float *grads, size_t n, float max_norm);

typedef enum LrScheduleKind {
    LR_SCHEDULE_CONSTANT = 0,
    LR_SCHEDULE_WARMUP_COSINE = 1,
} LrScheduleKind;

typedef struct LrSchedule {
    LrScheduleKind kind;
    float lr;            /* peak (or constant) learning rate */
    float lr_min;        /* floor of the cosine */
    int warmup_steps;    /* linear ramp 0 → lr over steps 1..warmup_steps */
    int total_steps;     /* cosine reaches lr_min at this step */
} LrSchedule;

/* Learning rate at 1-based step t. Constant: lr. Warmup+cosine: lr·t/warmup for
 * t <= warmup, then lr_min + ½(lr − lr_min)(1 + cos(π·(t−warmup)/(total−warmup))),
 * lr_min after total. */
float optim_lr_at(const LrSchedule *s, int t);

#endif
