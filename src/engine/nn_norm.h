/* nn_norm — LayerNorm (PyTorch nn.LayerNorm over the last dimension, biased variance) and
 * L2 normalisation (F.normalize(x, dim=-1): x / max(‖x‖, eps)). Conventions as in
 * nn_linear.h.
 */
#ifndef EASEL_NN_NORM_H
#define EASEL_NN_NORM_H

/* out (N,C) = (inp − mean)·rstd·weight + bias per row; mean (N) and rstd (N) are saved for
 * the backward. weight and bias (C) may be NULL (no affine part). out may alias inp. */
void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int N, int C, float eps);
/* dinp (N,C), dweight (C), dbias (C) += ...; inp, weight, mean, rstd as in the forward. */
void nn_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, int N, int C);

/* out (N,C) = inp / max(‖inp‖₂, eps) per row; norm (N) saves ‖inp‖₂. out may not alias inp. */
void nn_l2norm_forward(float *out, float *norm, const float *inp, int N, int C, float eps);
/* dinp (N,C) += ...; out and norm from the forward. */
void nn_l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm,
                        int N, int C, float eps);

#endif
