/* kern_conv — the kernels of conv2d on the GPU as im2col + GEMM (the GEMM is cuBLAS, in
 * gpu/cuda_blas.cu): im2col of a band of output rows of one image, col2im (the adjoint,
 * ADDING into the image the band's part, one thread per image element the band touches,
 * gathering its columns in a fixed order: deterministic), and the
 * per-channel bias of an NCHW output with its gradient (a block per channel, fixed-order sum).
 * Semantics as nn_conv2d_* (src/engine/nn_diffusion.h): square kernel K, stride, zero padding.
 */
#ifndef EASEL_KERN_CONV_H
#define EASEL_KERN_CONV_H

#include "kern_common.h"
#include "kern_convert.h"

#define KERN_CONV_THREADS 256

typedef struct ConvColArgs {
    float *col;  /* (C·K·K, rows·Wo): row (c, ky, kx), column (oy − oy0, ox) */
    void *img;   /* (C, H, W), one image: im2col reads it, col2im adds into it */
    int C, H, W, K, stride, pad, Ho, Wo;
    int dt;      /* KERN_DT_* of img (half activations: widened on load, the sum rounded once) */
    int oy0, rows; /* the band of output rows [oy0, oy0 + rows); rows 0 = all Ho rows */
} ConvColArgs;

KERN_HD int kern_conv_rows(const ConvColArgs *a) { return a->rows ? a->rows : a->Ho; }

/* Input rows [*iy0, *iy1) that the band's output rows read. */
KERN_HD void kern_conv_in_rows(const ConvColArgs *a, int *iy0, int *iy1) {
    int lo = a->oy0 * a->stride - a->pad, hi = (a->oy0 + kern_conv_rows(a) - 1) * a->stride -
                                              a->pad + a->K;
    *iy0 = lo < 0 ? 0 : lo;
    *iy1 = hi > a->H ? a->H : hi;
}

typedef struct ChanBiasArgs {
    float *out;         /* forward: out (B, OC, P) += bias[oc]; backward: dbias (OC) += Σ dout */
    const float *bias;  /* forward: bias (OC); backward: dout (B, OC, P) */
    int B, OC, P;
} ChanBiasArgs;

KERN_ENTRY void conv_im2col(KernCtx *k, const ConvColArgs *a) {
    long P = (long)kern_conv_rows(a) * a->Wo, i = kern_global(k);
    if (i >= (long)a->C * a->K * a->K * P)
        return;
    long r = i / P, p = i % P;
    int c = (int)(r / (a->K * a->K)), kk = (int)(r % (a->K * a->K)), ky = kk / a->K, kx = kk % a->K;
    int oy = a->oy0 + (int)(p / a->Wo), ox = (int)(p % a->Wo);
    int iy = oy * a->stride - a->pad + ky, ix = ox * a->stride - a->pad + kx;
    a->col[i] = (iy >= 0 && iy < a->H && ix >= 0 && ix < a->W)
                    ? kern_ld(a->img, ((long)c * a->H + iy) * a->W + ix, a->dt)
                    : 0.0f;
}
KERN_HD KernLaunch conv_im2col_launch(const ConvColArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->C * a->K * a->K * kern_conv_rows(a) * a->Wo,
                                      KERN_CONV_THREADS),
                          KERN_CONV_THREADS, 0);
}

KERN_ENTRY void conv_col2im(KernCtx *k, const ConvColArgs *a) {
    int iy0, iy1, rows = kern_conv_rows(a);
    kern_conv_in_rows(a, &iy0, &iy1);
    long i = kern_global(k), HWb = (long)(iy1 - iy0) * a->W, P = (long)rows * a->Wo;
    if (i >= (long)a->C * HWb)
        return;
    int c = (int)(i / HWb), iy = iy0 + (int)((i % HWb) / a->W), ix = (int)(i % a->W);
    float s = 0.0f;
    for (int ky = 0; ky < a->K; ky++) {
        int ty = iy + a->pad - ky;
        if (ty < 0 || ty % a->stride || ty / a->stride < a->oy0 ||
            ty / a->stride >= a->oy0 + rows)
            continue;
        for (int kx = 0; kx < a->K; kx++) {
            int tx = ix + a->pad - kx;
            if (tx < 0 || tx % a->stride || tx / a->stride >= a->Wo)
                continue;
            long r = ((long)c * a->K + ky) * a->K + kx;
            s += a->col[r * P + (long)(ty / a->stride - a->oy0) * a->Wo + tx / a->stride];
        }
    }
    long e = ((long)c * a->H + iy) * a->W + ix;
    kern_st(a->img, e, a->dt, kern_ld(a->img, e, a->dt) + s);
}
KERN_HD KernLaunch conv_col2im_launch(const ConvColArgs *a) {
    int iy0, iy1;
    kern_conv_in_rows(a, &iy0, &iy1);
    return kern_launch_1d(iy1 > iy0 ? kern_blocks((long)a->C * (iy1 - iy0) * a->W,
                                                  KERN_CONV_THREADS)
                                    : 0,
                          KERN_CONV_THREADS, 0);
}

KERN_ENTRY void chan_bias_fwd(KernCtx *k, const ChanBiasArgs *a) {
    long i = kern_global(k);
    if (i >= (long)a->B * a->OC * a->P)
        return;
    a->out[i] += a->bias[(i / a->P) % a->OC];
}
KERN_HD KernLaunch chan_bias_fwd_launch(const ChanBiasArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->B * a->OC * a->P, KERN_CONV_THREADS),
                          KERN_CONV_THREADS, 0);
}

/* Block oc: dbias[oc] += Σ_b Σ_p dout[b, oc, p]; each thread a fixed stride, then the tree. */
KERN_ENTRY void chan_bias_bwd(KernCtx *k, const ChanBiasArgs *a) {
    int oc = k->block_idx.x;
    float s = 0.0f;
    for (long j = k->tid; j < (long)a->B * a->P; j += k->nthreads) {
        long b = j / a->P, p = j % a->P;
        s += a->bias[((long)b * a->OC + oc) * a->P + p];
    }
    s = kern_block_sum(k, s, (float *)kern_shared(k));
    if (k->tid == 0)
        a->out[oc] += s;
}
KERN_HD KernLaunch chan_bias_bwd_launch(const ChanBiasArgs *a) {
    return kern_launch_1d(a->out ? a->OC : 0, KERN_CONV_THREADS, KERN_WARP * sizeof(float));
}

#endif
