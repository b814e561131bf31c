/* kern_unet — the UNet's own kernels (backend.h, "ops of the UNet"): the residual / time
 * embedding add and the (B,R,C) → (B,C,R) transpose between NCHW feature maps and tokens.
 * f32, one thread per output element; forward only (the transpose is its own backward, the
 * add's backward is copies and chan_bias_bwd).
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

#endif
