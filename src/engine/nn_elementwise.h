/* nn_elementwise — add, multiply, scale and concatenate/split along the last dimension.
 * Conventions as in nn_linear.h (forward overwrites, backward adds, NULL gradients skipped).
 * Elementwise forwards may run in place (out == a or out == b).
 */
#ifndef EASEL_NN_ELEMENTWISE_H
#define EASEL_NN_ELEMENTWISE_H

#include <stddef.h>

/* out (n) = a + b */
void nn_add_forward(float *out, const float *a, const float *b, size_t n);
/* da += dout; db += dout */
void nn_add_backward(float *da, float *db, const float *dout, size_t n);

/* out (n) = a ⊙ b */
void nn_mul_forward(float *out, const float *a, const float *b, size_t n);
/* da += dout ⊙ b; db += dout ⊙ a */
void nn_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                     size_t n);

/* out (n) = s · a */
void nn_scale_forward(float *out, const float *a, float s, size_t n);
/* da += s · dout */
void nn_scale_backward(float *da, const float *dout, float s, size_t n);

/* out (N, Ca+Cb) = [a (N,Ca), b (N,Cb)] along the last dimension. */
void nn_concat_forward(float *out, const float *a, const float *b, int N, int Ca, int Cb);
/* da (N,Ca) += dout[:, :Ca]; db (N,Cb) += dout[:, Ca:] */
void nn_concat_backward(float *da, float *db, const float *dout, int N, int Ca, int Cb);

#endif
