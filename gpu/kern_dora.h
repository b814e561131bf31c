/* kern_dora — the ops of DoRA (src/engine/backend.h, "ops of DoRA"; issue 16), f32 with the
 * base weight and the bias of any dtype (kern_ld): dora_norm (a block per output row, the row
 * norm of W + s·B·A reduced with kern_block_sum), dora_scale (a thread per element:
 * out = inp · m/norm + bias) and dora_mag_bwd (a block per channel: dm += Σ dout·y / norm).
 * The CPU ops of the same names (src/engine/cpu/backend_cpu_ops.c) are the reference; they
 * sum in double, these in f32 in a fixed order.
 */
#ifndef EASEL_KERN_DORA_H
#define EASEL_KERN_DORA_H

#include "kern_common.h"
#include "kern_convert.h"
#include "kern_norm.h"

#define KERN_DORA_THREADS 256

/* norm[o] = ‖w[o,:] + s·B[o,:]·A‖₂ over K; B NULL: ‖w[o,:]‖₂. A (r,K), B (OC,r). */
typedef struct DoraNormArgs {
    float *norm;
    const void *w;
    const float *B, *A;
    int OC, r;
    long K;
    float s;
    int wdt; /* KERN_DT_* of w */
} DoraNormArgs;

KERN_ENTRY void dora_norm(KernCtx *k, const DoraNormArgs *a) {
    float *scratch = (float *)kern_shared(k);
    long o = k->block_idx.x;
    float acc = 0.0f;
    for (long j = k->tid; j < a->K; j += k->nthreads) {
        float v = kern_ld(a->w, o * a->K + j, a->wdt);
        if (a->B) {
            float ba = 0.0f;
            for (int q = 0; q < a->r; q++)
                ba += a->B[o * a->r + q] * a->A[q * a->K + j];
            v += a->s * ba;
        }
        acc += v * v;
    }
    float t = kern_block_sum(k, acc, scratch);
    if (k->tid == 0)
        a->norm[o] = kern_sqrtf(t);
}
KERN_HD KernLaunch dora_norm_launch(const DoraNormArgs *a) {
    return kern_launch_1d(a->OC, kern_row_threads(a->K), KERN_WARP * sizeof(float));
}

/* out[p,c,q] = inp[p,c,q] · m[c] / norm[c] + bias[c] (bias NULL: none); out may be inp. */
typedef struct DoraScaleArgs {
    float *out;
    const float *inp, *m, *norm;
    const void *bias;
    long n; /* P·C·Q */
    int C;
    long Q;
    int bdt; /* KERN_DT_* of bias */
} DoraScaleArgs;

KERN_ENTRY void dora_scale(KernCtx *k, const DoraScaleArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    int c = (int)((i / a->Q) % a->C);
    float b = a->bias ? kern_ld(a->bias, c, a->bdt) : 0.0f;
    a->out[i] = a->inp[i] * (a->m[c] / a->norm[c]) + b;
}
KERN_HD KernLaunch dora_scale_launch(const DoraScaleArgs *a) {
    return kern_launch_1d(kern_blocks(a->n, KERN_DORA_THREADS), KERN_DORA_THREADS, 0);
}

/* dm[c] += Σ_{p,q} dout[p,c,q] · y[p,c,q] / norm[c]. */
typedef struct DoraMagArgs {
    float *dm;
    const float *dout, *y, *norm;
    int P, C;
    long Q;
} DoraMagArgs;

KERN_ENTRY void dora_mag_bwd(KernCtx *k, const DoraMagArgs *a) {
    float *scratch = (float *)kern_shared(k);
    int c = k->block_idx.x;
    long n = (long)a->P * a->Q;
    float acc = 0.0f;
    for (long j = k->tid; j < n; j += k->nthreads) {
        long p = j / a->Q, q = j % a->Q, i = (p * a->C + c) * a->Q + q;
        acc += a->dout[i] * a->y[i];
    }
    float t = kern_block_sum(k, acc, scratch);
    if (k->tid == 0)
        a->dm[c] += t / a->norm[c];
}
KERN_HD KernLaunch dora_mag_bwd_launch(const DoraMagArgs *a) {
    return kern_launch_1d(a->C, kern_row_threads((long)a->P * a->Q), KERN_WARP * sizeof(float));
}

#endif
