/* nn_reduce — sums and means over the last dimension (use N = 1 for a whole array).
 * Sums run in order in double, so they are deterministic and accurate. Conventions as in
 * nn_linear.h. */
#ifndef EASEL_NN_REDUCE_H
#define EASEL_NN_REDUCE_H

/* out (N) = Σ_c inp (N,C) */
void nn_sum_forward(float *out, const float *inp, int N, int C);
/* dinp (N,C) += dout[n] */
void nn_sum_backward(float *dinp, const float *dout, int N, int C);

/* out (N) = (1/C) Σ_c inp (N,C) */
void nn_mean_forward(float *out, const float *inp, int N, int C);
/* dinp (N,C) += dout[n] / C */
void nn_mean_backward(float *dinp, const float *dout, int N, int C);

#endif
