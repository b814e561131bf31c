/* kern_reward — the elementwise kernels the reward model adds to the CUDA backend ("ops of the
 * reward model" in src/engine/backend.h): inverted dropout with counter-based masks (forward and
 * its adding backward), and scale (add is kern_clip.h's add_fwd). One thread per element of a 1-D grid. Semantics are the
 * CPU engine's (src/engine/nn_dropout.h, src/engine/nn_elementwise.h); the dropout mask is the
 * same function of (seed, i) as rng_hash_uniform in src/engine/rng.h, bit for bit, so a model
 * drops the same elements on every backend.
 */
#ifndef EASEL_KERN_REWARD_H
#define EASEL_KERN_REWARD_H

#include <stdint.h>

#include "kern_common.h"

#define KERN_RM_THREADS 256

typedef struct DropoutArgs {
    float *out;        /* forward: out (=); backward: dinp (+=) */
    const float *inp;  /* forward: inp; backward: dout */
    long n;
    float p;           /* drop probability, 0 <= p < 1 */
    uint64_t seed;
    int add;           /* 1: the backward */
} DropoutArgs;

typedef struct EwArgs {
    float *out;
    const float *a;
    long n;
    float s;
} EwArgs;

/* splitmix64's finaliser of seed ^ i·K, as rng_hash_u64 (src/engine/rng.h). */
KERN_HD uint64_t kern_hash_u64(uint64_t seed, uint64_t i) {
    uint64_t z = (seed ^ (i * 0xD1B54A32D192ED03ull)) + 2 * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* out[i] = inp[i]·mask_i, mask_i = 1/(1−p) when uniform(seed, i) >= p else 0 (nn_dropout_scale);
 * the backward adds dout[i]·mask_i. */
KERN_ENTRY void dropout(KernCtx *k, const DropoutArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    float u = (float)(kern_hash_u64(a->seed, (uint64_t)i) >> 40) * (1.0f / 16777216.0f);
    float m = a->p <= 0.0f ? 1.0f : (u >= a->p ? 1.0f / (1.0f - a->p) : 0.0f);
    float v = a->inp[i] * m;
    if (a->add)
        a->out[i] += v;
    else
        a->out[i] = v;
}
KERN_HD KernLaunch dropout_launch(const DropoutArgs *a) {
    return kern_launch_1d(kern_blocks(a->n, KERN_RM_THREADS), KERN_RM_THREADS, 0);
}

/* out[i] = a[i]·s */
KERN_ENTRY void scale_fwd(KernCtx *k, const EwArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    a->out[i] = a->a[i] * a->s;
}
KERN_HD KernLaunch scale_fwd_launch(const EwArgs *a) {
    return kern_launch_1d(kern_blocks(a->n, KERN_RM_THREADS), KERN_RM_THREADS, 0);
}

#endif
