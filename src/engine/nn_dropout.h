/* nn_dropout — inverted dropout with counter-based masks.
 *
 * Element i is kept when rng_hash_uniform(seed, i) >= p and then scaled by 1/(1−p), so the
 * mask is a pure function of (seed, i): the backward recomputes it instead of storing it,
 * and neither depends on thread count. Callers derive a fresh seed per step and per layer
 * (e.g. rng_hash_u64(run_seed, step·64 + layer)). p = 0 is the identity (eval mode).
 */
#ifndef EASEL_NN_DROPOUT_H
#define EASEL_NN_DROPOUT_H

#include <stddef.h>
#include <stdint.h>

/* out (n) = inp ⊙ mask / (1−p); 0 <= p < 1. out may alias inp. */
void nn_dropout_forward(float *out, const float *inp, float p, uint64_t seed, size_t n);
/* dinp (n) += dout ⊙ mask / (1−p) with the same p and seed. */
void nn_dropout_backward(float *dinp, const float *dout, float p, uint64_t seed, size_t n);
/* The scale of element i: 0 or 1/(1−p). */
float nn_dropout_scale(float p, uint64_t seed, size_t i);

#endif
