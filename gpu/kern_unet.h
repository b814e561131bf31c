/* kern_unet — the UNet's own kernels (backend.h, "ops of the UNet"): the residual / time
 * embedding add and the (B,R,C) → (B,C,R) transpose between NCHW feature maps and tokens.
 * f32, one thread per output element; forward only (the transpose is its own backward, the
 * add's backward is copies and chan_bias_bwd), but upsample_nearest, the upsamplers' resize
 * to the skip connection's size, whose backward is a gather per input pixel.
 */
#ifndef EASEL_KERN_UNET_H
#define EASEL_KERN_UNET_H

#include "kern_common.h"

#define KERN_UNET_THREADS 256

typedef struct UnetAddArgs {
    float *out;           /* (B·C, S) = a + b + chan[row]; may alias a or b */
    const float *a, *b;   /* b may be NULL */
    const float *chan;    /* (B·C) or NULL */
    long rows, S;
} UnetAddArgs;

typedef struct UnetTransposeArgs {
    float *out;           /* (B, C, R) */
    const float *inp;     /* (B, R, C) */
    int B, R, C;
} UnetTransposeArgs;

KERN_ENTRY void unet_add(KernCtx *k, const UnetAddArgs *a) {
    long i = kern_global(k);
    if (i >= a->rows * a->S)
        return;
    float v = a->a[i];
    if (a->b)
        v += a->b[i];
    if (a->chan)
        v += a->chan[i / a->S];
    a->out[i] = v;
}
KERN_HD KernLaunch unet_add_launch(const UnetAddArgs *a) {
    return kern_launch_1d(kern_blocks(a->rows * a->S, KERN_UNET_THREADS), KERN_UNET_THREADS, 0);
}

/* Thread i writes out[i]: consecutive threads write consecutive rows r of one (b, c). */
KERN_ENTRY void unet_transpose(KernCtx *k, const UnetTransposeArgs *a) {
    long i = kern_global(k), RC = (long)a->R * a->C;
    if (i >= (long)a->B * RC)
        return;
    long b = i / RC, c = (i % RC) / a->R, r = i % a->R;
    a->out[i] = a->inp[b * RC + r * a->C + c];
}
KERN_HD KernLaunch unet_transpose_launch(const UnetTransposeArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->B * a->R * a->C, KERN_UNET_THREADS),
                          KERN_UNET_THREADS, 0);
}

/* upsample_nearest (backend.h): PyTorch's nearest source index, in float as torch computes it
 * (the CPU backend's nearest_src, the same arithmetic). */
KERN_HD long unet_nearest_src(long o, long in, long out) {
    if (out == in)
        return o;
    if (out == 2 * in)
        return o >> 1;
    long s = (long)floorf((float)o * ((float)in / (float)out));
    return s < in - 1 ? s : in - 1;
}

typedef struct NearestArgs {
    float *dst;           /* fwd: out (planes, Ho, Wo); bwd: dinp (planes, H, W), added to */
    const float *src;     /* fwd: inp (planes, H, W); bwd: dout (planes, Ho, Wo) */
    long planes;          /* B·C */
    int H, W, Ho, Wo;
} NearestArgs;

/* Thread i writes output pixel i. */
KERN_ENTRY void upsample_nearest_fwd(KernCtx *k, const NearestArgs *a) {
    long i = kern_global(k), plane = (long)a->Ho * a->Wo;
    if (i >= a->planes * plane)
        return;
    long p = i / plane, y = (i % plane) / a->Wo, x = i % a->Wo;
    long sy = unet_nearest_src(y, a->H, a->Ho), sx = unet_nearest_src(x, a->W, a->Wo);
    a->dst[i] = a->src[(p * a->H + sy) * a->W + sx];
}
KERN_HD KernLaunch upsample_nearest_fwd_launch(const NearestArgs *a) {
    return kern_launch_1d(kern_blocks(a->planes * a->Ho * a->Wo, KERN_UNET_THREADS),
                          KERN_UNET_THREADS, 0);
}

/* The first output index whose source is >= i (the sources rise with the index). */
KERN_HD long unet_nearest_first(long i, long in, long out) {
    long o = i * out / in - 2;
    o = o < 0 ? 0 : o;
    while (o < out && unet_nearest_src(o, in, out) < i)
        o++;
    return o;
}

/* Thread i owns input pixel i and adds the gradients of the output pixels taken from it (a
 * gather: no atomics, the same sum order on every run). */
KERN_ENTRY void upsample_nearest_bwd(KernCtx *k, const NearestArgs *a) {
    long i = kern_global(k), plane = (long)a->H * a->W;
    if (i >= a->planes * plane)
        return;
    long p = i / plane, y = (i % plane) / a->W, x = i % a->W;
    long y0 = unet_nearest_first(y, a->H, a->Ho), x0 = unet_nearest_first(x, a->W, a->Wo);
    float s = 0.0f;
    for (long oy = y0; oy < a->Ho && unet_nearest_src(oy, a->H, a->Ho) == y; oy++)
        for (long ox = x0; ox < a->Wo && unet_nearest_src(ox, a->W, a->Wo) == x; ox++)
            s += a->src[(p * a->Ho + oy) * a->Wo + ox];
    a->dst[i] += s;
}
KERN_HD KernLaunch upsample_nearest_bwd_launch(const NearestArgs *a) {
    return kern_launch_1d(kern_blocks(a->planes * a->H * a->W, KERN_UNET_THREADS),
                          KERN_UNET_THREADS, 0);
}

#endif
