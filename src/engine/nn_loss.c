/* nn_loss — see nn_loss.h. log σ is computed in its stable form (nn_logsigmoidf). */
#include "nn_loss.h"

#include "nn_activation.h"

void nn_logistic_loss_forward(float *losses, const float *logits, const float *targets,
                              size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = logits[i], y = targets[i];
        losses[i] = -(y * nn_logsigmoidf(x) + (1.0f - y) * nn_logsigmoidf(-x));
    }
}

void nn_logistic_loss_backward(float *dlogits, const float *dlosses, const float *logits,
                               const float *targets, size_t n) {
    for (size_t i = 0; i < n; i++)
        dlogits[i] += dlosses[i] * (nn_sigmoidf(logits[i]) - targets[i]);
}

void nn_mse_forward(float *losses, const float *pred, const float *target, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float d = pred[i] - target[i];
        losses[i] = d * d;
    }
}

void nn_mse_backward(float *dpred, const float *dlosses, const float *pred, const float *target,
                     size_t n) {
    for (size_t i = 0; i < n; i++)
        dpred[i] += dlosses[i] * 2.0f * (pred[i] - target[i]);
}
