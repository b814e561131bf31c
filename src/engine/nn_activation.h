/* nn_activation — pointwise nonlinearities over n elements: ReLU, GELU (exact erf form and
 * the tanh approximation, as PyTorch's approximate='none'|'tanh'), QuickGELU (x·σ(1.702x),
 * OpenAI CLIP), sigmoid and log-sigmoid. Conventions as in nn_linear.h. Forwards may run in
 * place (out == inp) except where the backward needs inp (GELU family, log-sigmoid).
 */
#ifndef EASEL_NN_ACTIVATION_H
#define EASEL_NN_ACTIVATION_H

#include <stddef.h>

/* out = max(x, 0) */
void nn_relu_forward(float *out, const float *inp, size_t n);
/* dinp += dout · [out > 0]; takes the forward's OUTPUT, so an in-place forward is fine. */
void nn_relu_backward(float *dinp, const float *dout, const float *out, size_t n);

/* out = x·Φ(x), Φ the standard normal CDF (erf); vectorised (nn_clip_gelu_forward), within
 * 3e-7·|x| of the erff form. Serial (callers split it: nn_gelu_mode_forward). */
void nn_gelu_forward(float *out, const float *inp, size_t n);
void nn_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* out = ½x(1 + tanh(√(2/π)(x + 0.044715x³))) */
void nn_gelu_tanh_forward(float *out, const float *inp, size_t n);
void nn_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* out = x·σ(1.702x); vectorised (nn_clip_quickgelu_forward, 1e-6 relative of the expf form)
 * and split over the caller's pool: not to be called from inside a pool task. */
void nn_quickgelu_forward(float *out, const float *inp, size_t n);
void nn_quickgelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* out = σ(x) = 1/(1+e^−x), computed without overflow. */
void nn_sigmoid_forward(float *out, const float *inp, size_t n);
/* dinp += dout · out(1−out); takes the forward's output. */
void nn_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);

/* out = log σ(x) = −softplus(−x), stable for large |x|. */
void nn_logsigmoid_forward(float *out, const float *inp, size_t n);
/* dinp += dout · σ(−x) */
void nn_logsigmoid_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Scalar helpers shared with the loss ops. */
float nn_sigmoidf(float x);
float nn_logsigmoidf(float x);

#endif
