/* kern_vae — the ops of the VAE (src/engine/backend.h, "ops of the VAE"), one thread per output
 * element, f32: add (residual connections), transpose of the last two dims (channels-first ↔
 * tokens for the mid-block attention) and pad2d (zero padding and windows: the encoder's
 * (0,1,0,1) padding before a stride-2 conv, and latent tiles). Forward only; the CPU ops of the
 * same names (src/engine/cpu/backend_cpu_ops.c) are the reference.
 */
#ifndef EASEL_KERN_VAE_H
#define EASEL_KERN_VAE_H

#include "kern_common.h"

#define KERN_VAE_THREADS 256

/* main has AddArgs and add_fwd in kern_clip.h (with a broadcast length bn): keep main's when
 * merging and drop these two. */
typedef struct AddArgs {
    float *out;
    const float *a, *b;
    long n;
} AddArgs;

/* out (B,N,M) = inp (B,M,N) transposed in its last two dims. (main has the same as
 * kern_unet.h's unet_transpose: keep main's when merging and drop this one.) */
typedef struct TransposeArgs {
    float *out;
    const float *inp;
    int B, M, N;
} TransposeArgs;

/* out (BC,Ho,Wo)[y][x] = inp (BC,H,W)[y − top][x − left] inside inp, else 0. */
typedef struct Pad2dArgs {
    float *out;
    const float *inp;
    int BC, H, W, Ho, Wo, top, left;
} Pad2dArgs;

KERN_ENTRY void add_fwd(KernCtx *k, const AddArgs *a) {
    long i = kern_global(k);
    if (i < a->n)
        a->out[i] = a->a[i] + a->b[i];
}
KERN_HD KernLaunch add_fwd_launch(const AddArgs *a) {
    return kern_launch_1d(kern_blocks(a->n, KERN_VAE_THREADS), KERN_VAE_THREADS, 0);
}

/* One thread per output element (writes coalesced). */
KERN_ENTRY void transpose_fwd(KernCtx *k, const TransposeArgs *a) {
    long i = kern_global(k), mn = (long)a->M * a->N;
    if (i >= (long)a->B * mn)
        return;
    long b = i / mn, r = i % mn, n = r / a->M, m = r % a->M;
    a->out[i] = a->inp[b * mn + m * a->N + n];
}
KERN_HD KernLaunch transpose_fwd_launch(const TransposeArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->B * a->M * a->N, KERN_VAE_THREADS),
                          KERN_VAE_THREADS, 0);
}

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
