/* kern_pointwise — the ops that are one thread per element: SiLU, GELU (erf and tanh forms)
 * and QuickGELU forward/backward, GEGLU, nearest 2× upsampling, channel block copies (concat and
 * split, both directions) and the mean-squared error. Semantics and formulas are the CPU ops'
 * (src/engine/nn_diffusion.h, src/engine/nn_activation.h): backward ADDS into gradients, NULL skipped.
 * The MSE forward is one block with a fixed-order reduction, so it is deterministic.
 * Activations, GEGLU, upsampling and channel copies take their data in the dtype `dt`
 * (KERN_DT_*: f32, f16, bf16; backend.h's half activations): loaded to f32, computed in f32,
 * stored rounded to nearest even (kern_ld / kern_st); a gradient is loaded, added to in f32
 * and rounded once. dt 0 (f32, the zero of a designated initialiser) is the f32 kernel.
 */
#ifndef EASEL_KERN_POINTWISE_H
#define EASEL_KERN_POINTWISE_H

#include "kern_common.h"
#include "kern_convert.h"

#define KERN_PW_THREADS 256
#define KERN_ACT_GELU 0      /* erf form */
#define KERN_ACT_GELU_TANH 1
#define KERN_ACT_SILU 2
#define KERN_ACT_QUICKGELU 3 /* x·σ(1.702x) */

typedef struct ActArgs {
    void *out;              /* forward: the output; backward: dinp (+=) */
    const void *inp, *dout; /* dout: backward only */
    long n;
    int mode;               /* KERN_ACT_* */
    int dt;                 /* KERN_DT_* of out, inp, dout */
} ActArgs;

typedef struct GegluArgs {
    void *out;              /* forward: out (N,C); backward: dinp (N,2C) (+=) */
    const void *inp, *dout; /* inp (N,2C) = [value, gate] */
    int N, C, mode;         /* KERN_ACT_GELU or KERN_ACT_GELU_TANH */
    int dt;                 /* KERN_DT_* of out, inp, dout */
} GegluArgs;

typedef struct UpsampleArgs {
    void *out;              /* forward: out (B,C,2H,2W); backward: dinp (B,C,H,W) (+=) */
    const void *inp;        /* forward: inp; backward: dout */
    int BC, H, W;           /* B·C planes of H×W (the small side) */
    int dt;                 /* KERN_DT_* of out and inp */
} UpsampleArgs;

/* dst[b, dst_off + c, :] (=|+=) src[b, src_off + c, :] for c < Cn: one part of a channel
 * concat/split; dst has Cd channels, src Cs, HW values per channel. */
typedef struct ChanCopyArgs {
    void *dst;
    const void *src;
    int B, Cd, Cs, dst_off, src_off, Cn, HW;
    int add;                /* 1: +=, a backward */
    int dt;                 /* KERN_DT_* of dst and src */
} ChanCopyArgs;

typedef struct MseArgs {
    float *loss;            /* forward: loss (1) */
    float *dpred, *dtarget; /* backward: += / -= (either may be NULL) */
    const float *pred, *target;
    long n;
    float dloss;
} MseArgs;

KERN_HD float kern_sigmoidf(float x) {
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* gelu(x) and gelu'(x), as gelu_pair in src/engine/nn_diffusion.c. */
KERN_HD void kern_gelu_pair(float x, int mode, float *g, float *dg) {
    if (mode == KERN_ACT_GELU_TANH) {
        float t = tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x));
        float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
        *g = 0.5f * x * (1.0f + t);
        *dg = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    } else {
        float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
        *g = x * cdf;
        *dg = cdf + x * 0.3989422804014327f * expf(-0.5f * x * x);
    }
}

KERN_ENTRY void act_fwd(KernCtx *k, const ActArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    float x = kern_ld(a->inp, i, a->dt), g, dg;
    if (a->mode == KERN_ACT_SILU || a->mode == KERN_ACT_QUICKGELU) {
        kern_st(a->out, i, a->dt, x * kern_sigmoidf(a->mode == KERN_ACT_SILU ? x : 1.702f * x));
        return;
    }
    kern_gelu_pair(x, a->mode, &g, &dg);
    kern_st(a->out, i, a->dt, g);
}
KERN_HD KernLaunch act_fwd_launch(const ActArgs *a) {
    return kern_launch_1d(kern_blocks(a->n, KERN_PW_THREADS), KERN_PW_THREADS, 0);
}

KERN_ENTRY void act_bwd(KernCtx *k, const ActArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    float x = kern_ld(a->inp, i, a->dt), d = kern_ld(a->dout, i, a->dt), g, dg;
    float acc = kern_ld(a->out, i, a->dt);
    if (a->mode == KERN_ACT_SILU) {
        float s = kern_sigmoidf(x);
        kern_st(a->out, i, a->dt, acc + d * s * (1.0f + x * (1.0f - s)));
        return;
    }
    if (a->mode == KERN_ACT_QUICKGELU) {
        float s = kern_sigmoidf(1.702f * x);
        kern_st(a->out, i, a->dt, acc + d * (s + 1.702f * x * s * (1.0f - s)));
        return;
    }
    kern_gelu_pair(x, a->mode, &g, &dg);
    kern_st(a->out, i, a->dt, acc + d * dg);
}
KERN_HD KernLaunch act_bwd_launch(const ActArgs *a) {
    return kern_launch_1d(a->out ? kern_blocks(a->n, KERN_PW_THREADS) : 0, KERN_PW_THREADS, 0);
}

KERN_ENTRY void geglu_fwd(KernCtx *k, const GegluArgs *a) {
    long i = kern_global(k);
    if (i >= (long)a->N * a->C)
        return;
    long n = i / a->C, c = i % a->C, row = n * 2 * a->C;
    float g, dg;
    kern_gelu_pair(kern_ld(a->inp, row + a->C + c, a->dt), a->mode, &g, &dg);
    kern_st(a->out, i, a->dt, kern_ld(a->inp, row + c, a->dt) * g);
}
KERN_HD KernLaunch geglu_fwd_launch(const GegluArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->N * a->C, KERN_PW_THREADS), KERN_PW_THREADS, 0);
}

KERN_ENTRY void geglu_bwd(KernCtx *k, const GegluArgs *a) {
    long i = kern_global(k);
    if (i >= (long)a->N * a->C)
        return;
    long n = i / a->C, c = i % a->C, row = n * 2 * a->C;
    float d = kern_ld(a->dout, i, a->dt), v = kern_ld(a->inp, row + c, a->dt), g, dg;
    kern_gelu_pair(kern_ld(a->inp, row + a->C + c, a->dt), a->mode, &g, &dg);
    kern_st(a->out, row + c, a->dt, kern_ld(a->out, row + c, a->dt) + d * g);
    kern_st(a->out, row + a->C + c, a->dt, kern_ld(a->out, row + a->C + c, a->dt) + d * v * dg);
}
KERN_HD KernLaunch geglu_bwd_launch(const GegluArgs *a) {
    return kern_launch_1d(a->out ? kern_blocks((long)a->N * a->C, KERN_PW_THREADS) : 0,
                          KERN_PW_THREADS, 0);
}

/* One thread per output element (2H×2W per plane). */
KERN_ENTRY void upsample2x_fwd(KernCtx *k, const UpsampleArgs *a) {
    long i = kern_global(k), W2 = 2L * a->W, plane = 4L * a->H * a->W;
    if (i >= (long)a->BC * plane)
        return;
    long p = i / plane, r = i % plane, y = r / W2, x = r % W2;
    kern_st(a->out, i, a->dt, kern_ld(a->inp, p * a->H * a->W + (y / 2) * a->W + x / 2, a->dt));
}
KERN_HD KernLaunch upsample2x_fwd_launch(const UpsampleArgs *a) {
    return kern_launch_1d(kern_blocks(4L * a->BC * a->H * a->W, KERN_PW_THREADS),
                          KERN_PW_THREADS, 0);
}

/* One thread per input element: the sum of its four copies, in a fixed order. */
KERN_ENTRY void upsample2x_bwd(KernCtx *k, const UpsampleArgs *a) {
    long i = kern_global(k), plane = (long)a->H * a->W;
    if (i >= (long)a->BC * plane)
        return;
    long p = i / plane, r = i % plane, y = r / a->W, x = r % a->W, W2 = 2L * a->W;
    long d = p * 4 * plane + (2 * y) * W2 + 2 * x;
    float s = kern_ld(a->inp, d, a->dt) + kern_ld(a->inp, d + 1, a->dt) +
              kern_ld(a->inp, d + W2, a->dt) + kern_ld(a->inp, d + W2 + 1, a->dt);
    kern_st(a->out, i, a->dt, kern_ld(a->out, i, a->dt) + s);
}
KERN_HD KernLaunch upsample2x_bwd_launch(const UpsampleArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->BC * a->H * a->W, KERN_PW_THREADS),
                          KERN_PW_THREADS, 0);
}

KERN_ENTRY void chan_copy(KernCtx *k, const ChanCopyArgs *a) {
    long i = kern_global(k), per_b = (long)a->Cn * a->HW;
    if (i >= (long)a->B * per_b)
        return;
    long b = i / per_b, r = i % per_b, c = r / a->HW, x = r % a->HW;
    float v = kern_ld(a->src, (b * a->Cs + a->src_off + c) * a->HW + x, a->dt);
    long d = (b * a->Cd + a->dst_off + c) * a->HW + x;
    kern_st(a->dst, d, a->dt, a->add ? kern_ld(a->dst, d, a->dt) + v : v);
}
KERN_HD KernLaunch chan_copy_launch(const ChanCopyArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->B * a->Cn * a->HW, KERN_PW_THREADS),
                          KERN_PW_THREADS, 0);
}

/* One block: each thread sums its stride in double, then a fixed-tree block sum. */
KERN_ENTRY void mse_fwd(KernCtx *k, const MseArgs *a) {
    double s = 0.0;
    for (long i = k->tid; i < a->n; i += k->nthreads) {
        double d = (double)a->pred[i] - a->target[i];
        s += d * d;
    }
    float t = kern_block_sum(k, (float)s, (float *)kern_shared(k));
    if (k->tid == 0)
        a->loss[0] = t / (float)a->n;
}
KERN_HD KernLaunch mse_fwd_launch(const MseArgs *a) {
    return kern_launch_1d(a->n > 0 ? 1 : 0, KERN_PW_THREADS, KERN_WARP * sizeof(float));
}

KERN_ENTRY void mse_bwd(KernCtx *k, const MseArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    float g = 2.0f * a->dloss / (float)a->n * (a->pred[i] - a->target[i]);
    if (a->dpred)
        a->dpred[i] += g;
    if (a->dtarget)
        a->dtarget[i] -= g;
}
KERN_HD KernLaunch mse_bwd_launch(const MseArgs *a) {
    return kern_launch_1d(kern_blocks(a->n, KERN_PW_THREADS), KERN_PW_THREADS, 0);
}

#endif
