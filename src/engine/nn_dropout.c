/* nn_dropout — see nn_dropout.h. */
#include "nn_dropout.h"

#include "base.h"
#include "rng.h"

float nn_dropout_scale(float p, uint64_t seed, size_t i) {
    if (p <= 0.0f)
        return 1.0f;
    return rng_hash_uniform(seed, i) >= p ? 1.0f / (1.0f - p) : 0.0f;
}

void nn_dropout_forward(float *out, const float *inp, float p, uint64_t seed, size_t n) {
    ASSERT(p >= 0.0f && p < 1.0f);
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] * nn_dropout_scale(p, seed, i);
}

void nn_dropout_backward(float *dinp, const float *dout, float p, uint64_t seed, size_t n) {
    ASSERT(p >= 0.0f && p < 1.0f);
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * nn_dropout_scale(p, seed, i);
}
