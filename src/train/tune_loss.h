/* tune_loss — the preference objectives of `easel tune` on the UNet's predictions: their loss,
 * their statistics and their gradient with respect to the policy's predictions. Pure host
 * arithmetic (the predictions are a few thousand floats per sample), so the same code serves
 * every backend and is checked against finite differences and PyTorch on its own.
 *
 * A micro-batch holds B pairs; per pair i, the "w" sample and the "l" sample share their
 * timestep and noise. For dpo and dspo w is the preferred image and l the other, both under
 * the prompt; for adpo (seed 004, on diffusion) w and l are the SAME image under the prompt
 * c+ and under the rejected context c-. N = C·H·W floats per sample.
 *
 *   e = mean((pred − target)²) per sample (policy θ, and the reference: the adapter off)
 *   inside = −β/2 · ((e_θ,w − e_θ,l) − (e_ref,w − e_ref,l))
 *   dpo, adpo: loss = mean_i −log σ(inside)            (diffusers' train_diffusion_dpo.py)
 *   dspo (the DSPO code, Diffusion-SDPO's train.py, gradient through σ(inside) too):
 *     SD:   loss = mean_i mean((pred_w − target_w − β·(1 − σ(inside))·(pred_w − ref_w))²)
 *     SDXL: p2 = pred_w − ref_w; when mean_i mean(p2²) >= 0.1
 *           loss = mean_i mean(((1 − σ(inside))·p2)²), else mean_i (1 − σ(inside))²
 * Statistics (per pair, summed): acc = [inside > 0]; margin = inside (the reward margin
 * r_w − r_l with the implicit reward r = −β/2·(e_θ − e_ref), as TRL's rewards/margins);
 * kl = ((e_θ,w − e_ref,w) + (e_θ,l − e_ref,l)) / 2 (the KL proxy mean(e_θ − e_ref)).
 * Train layer; thread-safe (no state). */
#ifndef EASEL_TUNE_LOSS_H
#define EASEL_TUNE_LOSS_H

#include <stddef.h>

typedef enum TuneObjective {
    TUNE_DPO = 0,
    TUNE_DSPO = 1,
    TUNE_ADPO = 2,
} TuneObjective;

/* "dpo", "dspo", "adpo" → objective; -1 for any other name. */
int tune_objective_parse(const char *name);
const char *tune_objective_name(TuneObjective o);

typedef struct TuneLossStats {
    double loss;   /* the micro-batch's loss (a mean over its pairs) */
    double acc;    /* pairs with inside > 0 (a count) */
    double margin; /* Σ inside */
    double kl;     /* Σ of the pairs' KL proxies */
    int n;         /* pairs */
} TuneLossStats;

/* Loss and gradient of one micro-batch. pred_*, ref_*, tgt_*: (B, N) each, row i the pair's
 * sample. d_w, d_l (B, N): SET to scale · d loss / d pred_w, d pred_l (scale: 1/accum, so a
 * step's accumulated gradient is the mean over its pairs). xl selects DSPO's SDXL form.
 * d_w / d_l may be NULL (statistics only). */
void tune_loss_grad(TuneObjective obj, int xl, float beta, int B, size_t N, const float *pred_w,
                    const float *pred_l, const float *ref_w, const float *ref_l,
                    const float *tgt_w, const float *tgt_l, float scale, float *d_w, float *d_l,
                    TuneLossStats *st);

#endif
