/* kern_nn — per-thread bodies of the CUDA kernels that train the reward heads: LayerNorm
 * forward/backward, bias + ReLU, ReLU backward, bias gradient, AdamW. Each is one function of
 * explicit indices (see kern_common.h); the CPU reference of every op is a plain loop in
 * tests/test_gpu_kernels.c and the engine's CPU backend.
 *
 * Shapes: N rows of C floats, row-major. mean/rstd are (N). weight/bias (C).
 */
#ifndef EASEL_KERN_NN_H
#define EASEL_KERN_NN_H

#include "kern_common.h"

/* One thread per row: out = (inp - mean) * rstd * weight + bias; saves mean and rstd. */
KERN_HD void layernorm_forward_thread(KernIdx ix, float *out, float *mean, float *rstd,
                                      const float *inp, const float *weight, const float *bias,
                                      int N, int C) {
    int n = kern_global(ix);
    if (n >= N)
        return;
    const float *x = inp + (long)n * C;
    float m = 0.0f;
    for (int i = 0; i < C; i++)
        m += x[i];
    m /= (float)C;
    float v = 0.0f;
    for (int i = 0; i < C; i++) {
        float d = x[i] - m;
        v += d * d;
    }
    v /= (float)C;
    float s = 1.0f / KERN_SQRTF(v + 1e-5f);
    float *o = out + (long)n * C;
    for (int i = 0; i < C; i++)
        o[i] = (x[i] - m) * s * weight[i] + bias[i];
    mean[n] = m;
    rstd[n] = s;
}

/* One thread per row: dinp (+=) for that row, and dweight/dbias accumulated atomically. */
KERN_HD void layernorm_backward_thread(KernIdx ix, float *dinp, float *dweight, float *dbias,
                                       const float *dout, const float *inp, const float *weight,
                                       const float *mean, const float *rstd, int N, int C) {
    int n = kern_global(ix);
    if (n >= N)
        return;
    const float *g = dout + (long)n * C;
    const float *x = inp + (long)n * C;
    float *dx = dinp + (long)n * C;
    float m = mean[n], s = rstd[n];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * s;
        float dnorm = weight[i] * g[i];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= (float)C;
    dnorm_norm_mean /= (float)C;
    for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * s;
        float dnorm = weight[i] * g[i];
        KERN_ATOMIC_ADD(&dbias[i], g[i]);
        KERN_ATOMIC_ADD(&dweight[i], norm * g[i]);
        dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
}

/* One thread per element: out = max(0, inp + bias[c]) over N*C elements. */
KERN_HD void bias_relu_forward_thread(KernIdx ix, float *out, const float *inp,
                                      const float *bias, int N, int C) {
    int i = kern_global(ix);
    if (i >= N * C)
        return;
    float v = inp[i] + bias[i % C];
    out[i] = v > 0.0f ? v : 0.0f;
}

/* One thread per element: dinp = dout where out > 0, else 0. */
KERN_HD void relu_backward_thread(KernIdx ix, float *dinp, const float *dout, const float *out,
                                  int n_elem) {
    int i = kern_global(ix);
    if (i >= n_elem)
        return;
    dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

/* One thread per element: AdamW with decoupled weight decay, bias-corrected, step t >= 1. */
KERN_HD void adamw_thread(KernIdx ix, float *param, float *m, float *v, const float *grad,
                          long n, float lr, float beta1, float beta2, float eps, float wd,
                          int t) {
    long i = kern_global(ix);
    if (i >= n)
        return;
    float g = grad[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float bc1 = 1.0f, bc2 = 1.0f;
    for (int k = 0; k < t; k++) { /* powf differs between host and device libm; loop doesn't */
        bc1 *= beta1;
        bc2 *= beta2;
    }
    float mhat = mi / (1.0f - bc1);
    float vhat = vi / (1.0f - bc2);
    param[i] -= lr * (mhat / (KERN_SQRTF(vhat) + eps) + wd * param[i]);
}

#endif
