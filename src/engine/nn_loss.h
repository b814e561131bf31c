/* nn_loss — elementwise losses; callers reduce them (mean over a mask, weighted sums) with
 * nn_reduce or their own loop, so per-element losses stay inspectable. Conventions as in
 * nn_linear.h.
 */
#ifndef EASEL_NN_LOSS_H
#define EASEL_NN_LOSS_H

#include <stddef.h>

/* Logistic (binary cross-entropy with logits, Bradley–Terry for a score difference):
 * losses (n) = −(y·log σ(x) + (1−y)·log σ(−x)), targets y in [0,1]. With y = ½ this is
 * −½(log σ(x) + log σ(−x)), the "no preference" loss. */
void nn_logistic_loss_forward(float *losses, const float *logits, const float *targets,
                              size_t n);
/* dlogits (n) += dlosses · (σ(x) − y) */
void nn_logistic_loss_backward(float *dlogits, const float *dlosses, const float *logits,
                               const float *targets, size_t n);

/* Squared error: losses (n) = (pred − target)² */
void nn_mse_forward(float *losses, const float *pred, const float *target, size_t n);
/* dpred (n) += dlosses · 2(pred − target) */
void nn_mse_backward(float *dpred, const float *dlosses, const float *pred, const float *target,
                     size_t n);

#endif
