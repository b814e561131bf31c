/* nn_softmax — softmax over the last dimension, stable (max subtracted). Conventions as in
 * nn_linear.h. */
#ifndef EASEL_NN_SOFTMAX_H
#define EASEL_NN_SOFTMAX_H

/* out (N,C) = softmax(inp) per row. out may alias inp. */
void nn_softmax_forward(float *out, const float *inp, int N, int C);
/* dinp (N,C) += out ⊙ (dout − Σ_c dout·out); takes the forward's output. */
void nn_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C);

#endif
