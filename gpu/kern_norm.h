/* kern_norm — LayerNorm, GroupNorm and row softmax kernels, forward and backward: a warp per
 * row (LayerNorm), a block per row (softmax) or per group (GroupNorm), f32 accumulation through warp shuffles and shared memory (see
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

/* ---- LayerNorm ----------------------------------------------------------------------------
 * A warp per row, KERN_LN_WARPS rows per block: the row's reductions are warp shuffles only (no
 * shared memory, no block barrier), and lanes read the row in float4 pieces where C is a
 * multiple of 4 and the rows are 16-byte aligned (else one float at a time), so a warp's load
 * is 512 contiguous bytes. The earlier version (one thread per row, then a block per row with
 * 128 threads for C = 512) read rows uncoalesced or left most of a block idle; see
 * doc/engine.md. The parameter gradients are summed by column blocks over `nsplit` chunks of
 * rows into a scratch `part`, then the chunks' sums added in order (layernorm_bwd_params_sum):
 * enough blocks to fill the device at N = 8192, C = 512 (the old kernel had 16), and still
 * deterministic (no atomics). */

#define KERN_LN_WARPS 4

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
    float *part; /* (2, nsplit, C) scratch when nsplit > 1: per-chunk sums of dweight, dbias */
    int nsplit;  /* chunks of rows for the parameter gradients; 0 or 1: add directly */
} LayerNormBwdArgs;

/* Nonzero when every pointer given is 16-byte aligned and C a multiple of 4 (float4 path). */
KERN_HD int kern_ln_vec(int C, const void *p0, const void *p1, const void *p2) {
    unsigned long m = (unsigned long)(size_t)p0 | (unsigned long)(size_t)p1 |
                      (unsigned long)(size_t)p2;
    return C % 4 == 0 && (m & 15ul) == 0;
}

KERN_HD void kern_ld4(const float *p, float v[4]) {
#ifdef __CUDA_ARCH__
    float4 t = *(const float4 *)p;
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
#else
    v[0] = p[0], v[1] = p[1], v[2] = p[2], v[3] = p[3];
#endif
}

KERN_HD void kern_st4(float *p, const float v[4]) {
#ifdef __CUDA_ARCH__
    *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
#else
    p[0] = v[0], p[1] = v[1], p[2] = v[2], p[3] = v[3];
#endif
}

/* Warp w of block b normalises row b·KERN_LN_WARPS + w: two-pass mean and variance (biased),
 * then the affine part. */
KERN_ENTRY void layernorm_fwd(KernCtx *k, const LayerNormFwdArgs *a) {
    long n = (long)k->block_idx.x * KERN_LN_WARPS + kern_warp(k);
    if (n >= a->N)
        return; /* the whole warp together */
    int C = a->C, lane = kern_lane(k);
    const float *x = a->inp + n * C;
    float *o = a->out + n * C;
    int vec = kern_ln_vec(C, x, o, NULL);
    float s = 0.0f;
    if (vec)
        for (int c = lane * 4; c < C; c += KERN_WARP * 4) {
            float v[4];
            kern_ld4(x + c, v);
            s += (v[0] + v[1]) + (v[2] + v[3]);
        }
    else
        for (int c = lane; c < C; c += KERN_WARP)
            s += x[c];
    float m = kern_warp_sum(k, s) / (float)C;
    float var = 0.0f;
    if (vec)
        for (int c = lane * 4; c < C; c += KERN_WARP * 4) {
            float v[4];
            kern_ld4(x + c, v);
            for (int e = 0; e < 4; e++)
                var += (v[e] - m) * (v[e] - m);
        }
    else
        for (int c = lane; c < C; c += KERN_WARP)
            var += (x[c] - m) * (x[c] - m);
    var = kern_warp_sum(k, var) / (float)C;
    float rs = 1.0f / kern_sqrtf(var + a->eps);
    if (vec)
        for (int c = lane * 4; c < C; c += KERN_WARP * 4) {
            float v[4];
            kern_ld4(x + c, v);
            for (int e = 0; e < 4; e++) {
                float y = (v[e] - m) * rs;
                if (a->weight)
                    y *= a->weight[c + e];
                if (a->bias)
                    y += a->bias[c + e];
                v[e] = y;
            }
            kern_st4(o + c, v);
        }
    else
        for (int c = lane; c < C; c += KERN_WARP) {
            float y = (x[c] - m) * rs;
            if (a->weight)
                y *= a->weight[c];
            if (a->bias)
                y += a->bias[c];
            o[c] = y;
        }
    if (lane == 0) {
        a->mean[n] = m;
        a->rstd[n] = rs;
    }
}
KERN_HD KernLaunch layernorm_fwd_launch(const LayerNormFwdArgs *a) {
    return kern_launch_1d(kern_blocks(a->N, KERN_LN_WARPS), KERN_LN_WARPS * KERN_WARP, 0);
}

/* A warp per row n: dinp[n] += (dn − mean(dn) − x̂·mean(dn·x̂))·rstd, dn = dout·weight. */
KERN_ENTRY void layernorm_bwd_dx(KernCtx *k, const LayerNormBwdArgs *a) {
    long n = (long)k->block_idx.x * KERN_LN_WARPS + kern_warp(k);
    if (n >= a->N)
        return;
    int C = a->C, lane = kern_lane(k);
    const float *x = a->inp + n * C, *d = a->dout + n * C;
    float *dx = a->dinp + n * C;
    float m = a->mean[n], rs = a->rstd[n];
    int vec = kern_ln_vec(C, x, d, dx);
    float s_dn = 0.0f, s_dnx = 0.0f;
    int step = vec ? 4 : 1;
    for (int c = lane * step; c < C; c += KERN_WARP * step) {
        float xv[4], dv[4];
        if (vec)
            kern_ld4(x + c, xv), kern_ld4(d + c, dv);
        else
            xv[0] = x[c], dv[0] = d[c];
        for (int e = 0; e < step; e++) {
            float dn = dv[e] * (a->weight ? a->weight[c + e] : 1.0f);
            s_dn += dn;
            s_dnx += dn * (xv[e] - m) * rs;
        }
    }
    s_dn = kern_warp_sum(k, s_dn) / (float)C;
    s_dnx = kern_warp_sum(k, s_dnx) / (float)C;
    for (int c = lane * step; c < C; c += KERN_WARP * step) {
        float xv[4], dv[4], gv[4];
        if (vec)
            kern_ld4(x + c, xv), kern_ld4(d + c, dv), kern_ld4(dx + c, gv);
        else
            xv[0] = x[c], dv[0] = d[c], gv[0] = dx[c];
        for (int e = 0; e < step; e++) {
            float xh = (xv[e] - m) * rs;
            float dn = dv[e] * (a->weight ? a->weight[c + e] : 1.0f);
            gv[e] += (dn - s_dn - xh * s_dnx) * rs;
        }
        if (vec)
            kern_st4(dx + c, gv);
        else
            dx[c] = gv[0];
    }
}
KERN_HD KernLaunch layernorm_bwd_dx_launch(const LayerNormBwdArgs *a) {
    return kern_launch_1d(a->dinp ? kern_blocks(a->N, KERN_LN_WARPS) : 0,
                          KERN_LN_WARPS * KERN_WARP, 0);
}

/* Block (32 × 8 threads) (b, s) owns columns 32b..32b+31 and chunk s of the rows: thread
 * (x, y) sums rows y, y+8, ... of the chunk for column 32b+x, then row y = 0 adds the 8
 * partial sums in order, into dweight and dbias (one chunk) or into part (several). */
enum { KERN_PARAM_COLS = 32, KERN_PARAM_ROWS = 8 };
KERN_HD int kern_ln_split(const LayerNormBwdArgs *a) { return a->nsplit > 1 ? a->nsplit : 1; }
KERN_ENTRY void layernorm_bwd_params(KernCtx *k, const LayerNormBwdArgs *a) {
    float *sw = (float *)kern_shared(k), *sb = sw + KERN_PARAM_COLS * KERN_PARAM_ROWS;
    int tx = k->thread_idx.x, ty = k->thread_idx.y, C = a->C, ns = kern_ln_split(a);
    int c = k->block_idx.x * KERN_PARAM_COLS + tx, sp = k->block_idx.y;
    int chunk = (a->N + ns - 1) / ns, n0 = sp * chunk, n1 = n0 + chunk < a->N ? n0 + chunk : a->N;
    float gw = 0.0f, gb = 0.0f;
    if (c < C)
        for (int n = n0 + ty; n < n1; n += KERN_PARAM_ROWS) {
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
        if (ns > 1) {
            a->part[(long)sp * C + c] = gw;
            a->part[(long)(ns + sp) * C + c] = gb;
        } else {
            if (a->dweight)
                a->dweight[c] += gw;
            if (a->dbias)
                a->dbias[c] += gb;
        }
    }
}
KERN_HD KernLaunch layernorm_bwd_params_launch(const LayerNormBwdArgs *a) {
    KernLaunch l = kern_launch_1d((a->dweight || a->dbias) ? kern_blocks(a->C, KERN_PARAM_COLS) : 0,
                                  KERN_PARAM_COLS, 2 * KERN_PARAM_COLS * KERN_PARAM_ROWS * sizeof(float));
    l.block.y = KERN_PARAM_ROWS;
    l.grid.y = kern_ln_split(a);
    return l;
}

/* Thread c: dweight[c] += Σ_s part[0, s, c], dbias[c] += Σ_s part[1, s, c], s in order. */
KERN_ENTRY void layernorm_bwd_params_sum(KernCtx *k, const LayerNormBwdArgs *a) {
    long c = kern_global(k);
    if (c >= a->C)
        return;
    float gw = 0.0f, gb = 0.0f;
    for (int s = 0; s < a->nsplit; s++) {
        gw += a->part[(long)s * a->C + c];
        gb += a->part[(long)(a->nsplit + s) * a->C + c];
    }
    if (a->dweight)
        a->dweight[c] += gw;
    if (a->dbias)
        a->dbias[c] += gb;
}
KERN_HD KernLaunch layernorm_bwd_params_sum_launch(const LayerNormBwdArgs *a) {
    return kern_launch_1d((a->dweight || a->dbias) && a->nsplit > 1 ? kern_blocks(a->C, 256) : 0,
                          256, 0);
}

/* Chunks of rows for the parameter gradients: enough for about 256 blocks in all (an H100
 * has 132 SMs), each chunk at least 32 rows, at most 64 chunks. */
KERN_HD int kern_ln_nsplit(int N, int C) {
    int want = (256 + kern_blocks(C, KERN_PARAM_COLS) - 1) / kern_blocks(C, KERN_PARAM_COLS);
    int most = N / 32;
    int s = want < most ? want : most;
    return s < 1 ? 1 : s > 64 ? 64 : s;
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
