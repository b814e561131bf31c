/* kern_nn — elementwise kernels of reward-head training: bias + ReLU, ReLU backward, AdamW.
 * One thread per element of a 1-D grid (see kern_common.h). Semantics are the CPU engine's
 * (src/engine/nn_activation.h, src/engine/nn_linear.h, src/engine/optim.h): backward ADDS into the gradient.
 */
#ifndef EASEL_KERN_NN_H
#define EASEL_KERN_NN_H

#include "kern_common.h"

#define KERN_ELEM_THREADS 256

typedef struct BiasReluArgs {
    float *out;
    const float *inp, *bias; /* bias (C) may be NULL: plain ReLU */
    int N, C;
} BiasReluArgs;

typedef struct ReluBwdArgs {
    float *dinp;
    const float *dout, *out; /* out: the forward's output */
    long n;
} ReluBwdArgs;

/* AdamW as optim_adamw_step computes it, per element:
 *   p ← p·decay_mul − step_size · m / (√v · inv_bc2_sqrt + eps)
 * with m, v the updated moments; the step's constants come from adamw_args (on the host). */
typedef struct AdamWArgs {
    float *param, *m, *v;
    const float *grad;
    long n;
    float beta1, beta2, eps;
    float decay_mul;    /* 1 − lr·weight_decay */
    float step_size;    /* lr / (1 − β1ᵗ) */
    float inv_bc2_sqrt; /* 1 / √(1 − β2ᵗ) */
} AdamWArgs;

/* out[i] = max(0, inp[i] + bias[i % C]) over N·C elements. */
KERN_ENTRY void bias_relu_fwd(KernCtx *k, const BiasReluArgs *a) {
    long i = kern_global(k);
    if (i >= (long)a->N * a->C)
        return;
    float v = a->inp[i] + (a->bias ? a->bias[i % a->C] : 0.0f);
    a->out[i] = v > 0.0f ? v : 0.0f;
}
KERN_HD KernLaunch bias_relu_fwd_launch(const BiasReluArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->N * a->C, KERN_ELEM_THREADS), KERN_ELEM_THREADS, 0);
}

/* dinp[i] += dout[i] where out[i] > 0. */
KERN_ENTRY void relu_bwd(KernCtx *k, const ReluBwdArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    if (a->out[i] > 0.0f)
        a->dinp[i] += a->dout[i];
}
KERN_HD KernLaunch relu_bwd_launch(const ReluBwdArgs *a) {
    return kern_launch_1d(a->dinp ? kern_blocks(a->n, KERN_ELEM_THREADS) : 0, KERN_ELEM_THREADS, 0);
}

KERN_ENTRY void adamw(KernCtx *k, const AdamWArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    float g = a->grad[i];
    float p = a->param[i] * a->decay_mul;
    float mi = a->beta1 * a->m[i] + (1.0f - a->beta1) * g;
    float vi = a->beta2 * a->v[i] + (1.0f - a->beta2) * g * g;
    float denom = kern_sqrtf(vi) * a->inv_bc2_sqrt + a->eps;
    a->param[i] = p - a->step_size * (mi / denom);
    a->m[i] = mi;
    a->v[i] = vi;
}
KERN_HD KernLaunch adamw_launch(const AdamWArgs *a) {
    return kern_launch_1d(kern_blocks(a->n, KERN_ELEM_THREADS), KERN_ELEM_THREADS, 0);
}

/* The step's constants, on the host, in double as optim_adamw_step computes them (step t >= 1). */
static inline AdamWArgs adamw_args(float *param, float *m, float *v, const float *grad, long n,
                                   float lr, float beta1, float beta2, float eps, float wd, int t) {
    AdamWArgs a;
    double bc1 = 1.0 - pow((double)beta1, t), bc2 = 1.0 - pow((double)beta2, t);
    a.param = param, a.m = m, a.v = v, a.grad = grad, a.n = n;
    a.beta1 = beta1, a.beta2 = beta2, a.eps = eps;
    a.decay_mul = 1.0f - lr * wd;
    a.step_size = (float)(lr / bc1);
    a.inv_bc2_sqrt = (float)(1.0 / sqrt(bc2));
    return a;
}

#endif
