/* nn_embedding — row lookup in a table (token and position embeddings). Conventions as in
 * nn_linear.h. Ids out of range are a caller bug (ASSERT); tokenizers validate first. */
#ifndef EASEL_NN_EMBEDDING_H
#define EASEL_NN_EMBEDDING_H

#include <stdint.h>

/* out (N,C) = table (V,C)[ids (N)] */
void nn_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C,
                          int V);
/* dtable (V,C) += rows of dout at ids, in order of n (deterministic for repeated ids). */
void nn_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C,
                           int V);

#endif
