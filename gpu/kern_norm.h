/* kern_norm — LayerNorm, GroupNorm and row softmax kernels, forward and backward: a block per
 * row (or per group), f32 accumulation through warp shuffles and shared memory (see
 * kern_common.h), fixed reduction order. Parameter gradients come from their own kernels that
 * sum over rows in a fixed order (no atomics), so every result here is deterministic.
 *
 * Semantics are the CPU engine's (src/engine/nn_norm.h, src/engine/nn_softmax.h): eps is an argument,
 * weight and bias may be NULL (no affine part), out may alias inp, and backward ADDS into
 * every gradient it is given; a NULL gradient is skipped.
 *
 * Shapes: LayerNorm and softmax over the last dimension of (N, C), row-major. GroupNorm over
 * (N, C, HW) (NCHW with H·W flattened), G groups of C/G channels (C a multiple of G; a group's
 * C/G·HW elements and N·HW fit an int); mean and rstd are (N, G).
 */
#ifndef EASEL_KERN_NORM_H
#define EASEL_KERN_NORM_H

#include "kern_common.h"
#include "kern_convert.h"

/* Threads for a block that reduces `len` elements: one warp for short rows, up to 256. */
KERN_HD int kern_row_threads(long len) {
    return len <= 128 ? 32 : len <= 512 ? 128 : 256;
}

/* ---- LayerNorm ---------------------------------------------------------------------------- */

typedef struct LayerNormFwdArgs {
    float *out, *mean, *rstd;
    const float *inp, *weight, *bias;
    int N, C;
    float eps;
} LayerNormFwdArgs;

typedef struct LayerNormBwdArgs {
    float *dinp, *dweight, *dbias;
    const float *dout, *inp, *weight, *mean, *rstd;
    int N, C;
} LayerNormBwdArgs;

/* Block n normalises row n: two-pass mean and variance (biased), then the affine part. */
KERN_ENTRY void layernorm_fwd(KernCtx *k, const LayerNormFwdArgs *a) {
    float *scratch = (float *)kern_shared(k);
    long n = k->block_idx.x;
    int C = a->C;
    const float *x = a->inp + n * C;
    float s = 0.0f;
    for (int c = k->tid; c < C; c += k->nthreads)
        s += x[c];
    float m = kern_block_sum(k, s, scratch) / (float)C;
    float v = 0.0f;
    for (int c = k->tid; c < C; c += k->nthreads) {
        float d = x[c] - m;
        v += d * d;
    }
    v = kern_block_sum(k, v, scratch) / (float)C;
    float rs = 1.0f / kern_sqrtf(v + a->eps);
    float *o = a->out + n * C;
    for (int c = k->tid; c < C; c += k->nthreads) {
        float y = (x[c] - m) * rs;
        if (a->weight)
            y *= a->weight[c];
        if (a->bias)
            y += a->bias[c];
        o[c] = y;
    }
    if (k->tid == 0) {
        a->mean[n] = m;
        a->rstd[n] = rs;
    }
}
KERN_HD KernLaunch layernorm_fwd_launch(const LayerNormFwdArgs *a) {
    return kern_launch_1d(a->N, kern_row_threads(a->C), KERN_WARP * sizeof(float));
}

/* Block n: dinp[n] += (dn − mean(dn) − x̂·mean(dn·x̂))·rstd, dn = dout·weight. */
KERN_ENTRY void layernorm_bwd_dx(KernCtx *k, const LayerNormBwdArgs *a) {
    float *scratch = (float *)kern_shared(k);
    long n = k->block_idx.x;
    int C = a->C;
    const float *x = a->inp + n * C, *d = a->dout + n * C;
    float m = a->mean[n], rs = a->rstd[n];
    float s_dn = 0.0f, s_dnx = 0.0f;
    for (int c = k->tid; c < C; c += k->nthreads) {
        float dn = d[c] * (a->weight ? a->weight[c] : 1.0f);
        s_dn += dn;
        s_dnx += dn * (x[c] - m) * rs;
    }
    s_dn = kern_block_sum(k, s_dn, scratch) / (float)C;
    s_dnx = kern_block_sum(k, s_dnx, scratch) / (float)C;
    float *dx = a->dinp + n * C;
    for (int c = k->tid; c < C; c += k->nthreads) {
        float xh = (x[c] - m) * rs;
        float dn = d[c] * (a->weight ? a->weight[c] : 1.0f);
        dx[c] += (dn - s_dn - xh * s_dnx) * rs;
    }
}
KERN_HD KernLaunch layernorm_bwd_dx_launch(const LayerNormBwdArgs *a) {
    return kern_launch_1d(a->dinp ? a->N : 0, kern_row_threads(a->C), KERN_WARP * sizeof(float));
}

/* Block (32 × 8 threads) b owns columns 32b..32b+31: thread (x, y) sums rows y, y+8, ... of
 * column 32b+x, then row y = 0 adds the 8 partial sums, in order, into dweight and dbias. */
enum { KERN_PARAM_COLS = 32, KERN_PARAM_ROWS = 8 };
KERN_ENTRY void layernorm_bwd_params(KernCtx *k, const LayerNormBwdArgs *a) {
    float *sw = (float *)kern_shared(k), *sb = sw + KERN_PARAM_COLS * KERN_PARAM_ROWS;
    int tx = k->thread_idx.x, ty = k->thread_idx.y, C = a->C;
    int c = k->block_idx.x * KERN_PARAM_COLS + tx;
    float gw = 0.0f, gb = 0.0f;
    if (c < C)
        for (int n = ty; n < a->N; n += KERN_PARAM_ROWS) {
            float d = a->dout[(long)n * C + c];
            gw += d * (a->inp[(long)n * C + c] - a->mean[n]) * a->rstd[n];
            gb += d;
        }
    sw[ty * KERN_PARAM_COLS + tx] = gw;
    sb[ty * KERN_PARAM_COLS + tx] = gb;
    kern_sync(k);
    if (ty == 0 && c < C) {
        for (int r = 1; r < KERN_PARAM_ROWS; r++) {
            gw += sw[r * KERN_PARAM_COLS + tx];
            gb += sb[r * KERN_PARAM_COLS + tx];
        }
        if (a->dweight)
            a->dweight[c] += gw;
        if (a->dbias)
            a->dbias[c] += gb;
    }
}
KERN_HD KernLaunch layernorm_bwd_params_launch(const LayerNormBwdArgs *a) {
    KernLaunch l = kern_launch_1d((a->dweight || a->dbias) ? kern_blocks(a->C, KERN_PARAM_COLS) : 0,
                                  KERN_PARAM_COLS, 2 * KERN_PARAM_COLS * KERN_PARAM_ROWS * sizeof(float));
    l.block.y = KERN_PARAM_ROWS;
    return l;
}

/* ---- GroupNorm ---------------------------------------------------------------------------- */

/* out, inp (and dinp, dout) are in the dtype dt (KERN_DT_*: backend.h's half activations),
 * loaded to f32 and stored rounded to nearest even (kern_ld / kern_st); weight, bias, mean,
 * rstd and the parameter gradients are f32. */
typedef struct GroupNormFwdArgs {
    void *out;
    float *mean, *rstd;
    const void *inp;
    const float *weight, *bias;
    int N, C, HW, G;
    float eps;
    int dt;
} GroupNormFwdArgs;

typedef struct GroupNormBwdArgs {
    void *dinp;
    float *dweight, *dbias;
    const void *dout, *inp;
    const float *weight, *mean, *rstd;
    int N, C, HW, G;
    int dt;
} GroupNormBwdArgs;

/* Block (n, g) = block_idx.x: the group's C/G·HW elements are contiguous in NCHW. */
KERN_ENTRY void groupnorm_fwd(KernCtx *k, const GroupNormFwdArgs *a) {
    float *scratch = (float *)kern_shared(k);
    long ng = k->block_idx.x;
    int g = (int)(ng % a->G), Cg = a->C / a->G;
    int len = Cg * a->HW;
    long base = ng * len;
    float s = 0.0f;
    for (int i = k->tid; i < len; i += k->nthreads)
        s += kern_ld(a->inp, base + i, a->dt);
    float m = kern_block_sum(k, s, scratch) / (float)len;
    float v = 0.0f;
    for (int i = k->tid; i < len; i += k->nthreads) {
        float d = kern_ld(a->inp, base + i, a->dt) - m;
        v += d * d;
    }
    v = kern_block_sum(k, v, scratch) / (float)len;
    float rs = 1.0f / kern_sqrtf(v + a->eps);
    for (int i = k->tid; i < len; i += k->nthreads) {
        int c = g * Cg + i / a->HW;
        float y = (kern_ld(a->inp, base + i, a->dt) - m) * rs;
        if (a->weight)
            y *= a->weight[c];
        if (a->bias)
            y += a->bias[c];
        kern_st(a->out, base + i, a->dt, y);
    }
    if (k->tid == 0) {
        a->mean[ng] = m;
        a->rstd[ng] = rs;
    }
}
KERN_HD KernLaunch groupnorm_fwd_launch(const GroupNormFwdArgs *a) {
    return kern_launch_1d(a->N * a->G, kern_row_threads((long)(a->C / a->G) * a->HW),
                          KERN_WARP * sizeof(float));
}

KERN_ENTRY void groupnorm_bwd_dx(KernCtx *k, const GroupNormBwdArgs *a) {
    float *scratch = (float *)kern_shared(k);
    long ng = k->block_idx.x;
    int g = (int)(ng % a->G), Cg = a->C / a->G;
    int len = Cg * a->HW;
    long base = ng * len;
    float m = a->mean[ng], rs = a->rstd[ng];
    float s_dn = 0.0f, s_dnx = 0.0f;
    for (int i = k->tid; i < len; i += k->nthreads) {
        int c = g * Cg + i / a->HW;
        float dn = kern_ld(a->dout, base + i, a->dt) * (a->weight ? a->weight[c] : 1.0f);
        s_dn += dn;
        s_dnx += dn * (kern_ld(a->inp, base + i, a->dt) - m) * rs;
    }
    s_dn = kern_block_sum(k, s_dn, scratch) / (float)len;
    s_dnx = kern_block_sum(k, s_dnx, scratch) / (float)len;
    for (int i = k->tid; i < len; i += k->nthreads) {
        int c = g * Cg + i / a->HW;
        float dn = kern_ld(a->dout, base + i, a->dt) * (a->weight ? a->weight[c] : 1.0f);
        float x = kern_ld(a->inp, base + i, a->dt);
        kern_st(a->dinp, base + i, a->dt,
                kern_ld(a->dinp, base + i, a->dt) + (dn - s_dn - (x - m) * rs * s_dnx) * rs);
    }
}
KERN_HD KernLaunch groupnorm_bwd_dx_launch(const GroupNormBwdArgs *a) {
    return kern_launch_1d(a->dinp ? a->N * a->G : 0, kern_row_threads((long)(a->C / a->G) * a->HW),
                          KERN_WARP * sizeof(float));
}

/* Block c sums channel c over every sample and position: dweight[c] += Σ dout·x̂, dbias[c] +=
 * Σ dout. */
KERN_ENTRY void groupnorm_bwd_params(KernCtx *k, const GroupNormBwdArgs *a) {
    float *scratch = (float *)kern_shared(k);
    int c = k->block_idx.x, HW = a->HW, g = c / (a->C / a->G);
    long len = (long)a->N * HW;
    float gw = 0.0f, gb = 0.0f;
    for (int i = k->tid; i < len; i += k->nthreads) {
        long n = i / HW, at = (n * a->C + c) * HW + i % HW;
        float d = kern_ld(a->dout, at, a->dt);
        gw += d * (kern_ld(a->inp, at, a->dt) - a->mean[(long)n * a->G + g]) *
              a->rstd[(long)n * a->G + g];
        gb += d;
    }
    gw = kern_block_sum(k, gw, scratch);
    gb = kern_block_sum(k, gb, scratch);
    if (k->tid == 0) {
        if (a->dweight)
            a->dweight[c] += gw;
        if (a->dbias)
            a->dbias[c] += gb;
    }
}
KERN_HD KernLaunch groupnorm_bwd_params_launch(const GroupNormBwdArgs *a) {
    return kern_launch_1d((a->dweight || a->dbias) ? a->C : 0,
                          kern_row_threads((long)a->N * a->HW), KERN_WARP * sizeof(float));
}

/* ---- softmax over rows -------------------------------------------------------------------- */

typedef struct SoftmaxArgs {
    float *out;
    const float *inp;
    int N, C;
} SoftmaxArgs;

typedef struct SoftmaxBwdArgs {
    float *dinp;
    const float *dout, *out;
    int N, C;
} SoftmaxBwdArgs;

/* Block n: out = exp(x − max)·(1/Σ exp(x − max)). */
KERN_ENTRY void softmax_fwd(KernCtx *k, const SoftmaxArgs *a) {
    float *scratch = (float *)kern_shared(k);
    long n = k->block_idx.x;
    int C = a->C;
    const float *x = a->inp + n * C;
    float *o = a->out + n * C;
    float mx = -INFINITY;
    for (int c = k->tid; c < C; c += k->nthreads)
        mx = kern_fmaxf(mx, x[c]);
    mx = kern_block_max(k, mx, scratch);
    float s = 0.0f;
    for (int c = k->tid; c < C; c += k->nthreads) {
        float e = kern_expf(x[c] - mx);
        o[c] = e;
        s += e;
    }
    float inv = 1.0f / kern_block_sum(k, s, scratch);
    for (int c = k->tid; c < C; c += k->nthreads)
        o[c] *= inv;
}
KERN_HD KernLaunch softmax_fwd_launch(const SoftmaxArgs *a) {
    return kern_launch_1d(a->N, kern_row_threads(a->C), KERN_WARP * sizeof(float));
}

/* Block n: dinp += y ⊙ (dout − Σ dout·y). */
KERN_ENTRY void softmax_bwd(KernCtx *k, const SoftmaxBwdArgs *a) {
    float *scratch = (float *)kern_shared(k);
    long n = k->block_idx.x;
    int C = a->C;
    const float *d = a->dout + n * C, *y = a->out + n * C;
    float dot = 0.0f;
    for (int c = k->tid; c < C; c += k->nthreads)
        dot += d[c] * y[c];
    dot = kern_block_sum(k, dot, scratch);
    float *dx = a->dinp + n * C;
    for (int c = k->tid; c < C; c += k->nthreads)
        dx[c] += y[c] * (d[c] - dot);
}
KERN_HD KernLaunch softmax_bwd_launch(const SoftmaxBwdArgs *a) {
    return kern_launch_1d(a->dinp ? a->N : 0, kern_row_threads(a->C), KERN_WARP * sizeof(float));
}

#endif
