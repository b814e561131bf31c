/* kern_vae — the op of the VAE (src/engine/backend.h, "ops of the VAE"), one thread per output
 * element, f32: pad2d (zero padding and windows: the encoder's (0,1,0,1) padding before a
 * stride-2 conv, and latent tiles). Forward only; the CPU op of the same name
 * (src/engine/cpu/backend_cpu_ops.c) is the reference. (Residual adds and the channels ↔
 * tokens transpose are kern_clip.h's add_fwd and kern_unet.h's unet_transpose.)
 */
#ifndef EASEL_KERN_VAE_H
#define EASEL_KERN_VAE_H

#include "kern_common.h"

#define KERN_VAE_THREADS 256

/* out (BC,Ho,Wo)[y][x] = inp (BC,H,W)[y − top][x − left] inside inp, else 0. */
typedef struct Pad2dArgs {
    float *out;
    const float *inp;
    int BC, H, W, Ho, Wo, top, left;
} Pad2dArgs;

KERN_ENTRY void pad2d_fwd(KernCtx *k, const Pad2dArgs *a) {
    long i = kern_global(k), plane = (long)a->Ho * a->Wo;
    if (i >= (long)a->BC * plane)
        return;
    long p = i / plane, r = i % plane, y = r / a->Wo - a->top, x = r % a->Wo - a->left;
    a->out[i] = y >= 0 && y < a->H && x >= 0 && x < a->W
                    ? a->inp[(p * a->H + y) * a->W + x]
                    : 0.0f;
}
KERN_HD KernLaunch pad2d_fwd_launch(const Pad2dArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->BC * a->Ho * a->Wo, KERN_VAE_THREADS),
                          KERN_VAE_THREADS, 0);
}

#endif
