/* kern_clip — the kernels of the ops CLIP adds to the table (src/engine/backend.h, "ops of
 * CLIP"): elementwise add (same shape, or a (T,C) block of rows repeated over a batch, for
 * positional embeddings), a gather of rows from a table of any dtype (token embeddings, the
 * pooled token of each sequence; index -1 gives zeros), and L2 normalisation of rows.
 * Forward only (CLIP is inference). Semantics are the CPU backend's (src/engine/cpu/
 * backend_cpu_ops.c: nn_add_forward, nn_l2norm_forward): the L2 norm reduces in f32 through
 * kern_block_sum (fixed order, deterministic) where the CPU sums in double.
 */
#ifndef EASEL_KERN_CLIP_H
#define EASEL_KERN_CLIP_H

#include "kern_common.h"
#include "kern_convert.h"
#include "kern_norm.h"

#define KERN_CLIP_THREADS 256

/* out[i] = a[i] + b[bn ? i % bn : i], i < n (bn: the repeated block's size, 0 = same shape).
 * out may alias a. */
typedef struct AddArgs {
    float *out;
    const float *a, *b;
    long n, bn;
} AddArgs;

/* out[m, :] = table[idx[m], :] widened to f32 (idx[m] < 0: zeros); M rows of C. */
typedef struct GatherArgs {
    float *out;
    const void *table;
    const int *idx; /* device memory */
    int M, C;
    int dtype;      /* KERN_DT_* of the table */
} GatherArgs;

/* out[n] = inp[n] / max(‖inp[n]‖₂, eps); norm[n] = ‖inp[n]‖₂ (norm may be NULL). */
typedef struct L2NormArgs {
    float *out, *norm;
    const float *inp;
    int N, C;
    float eps;
} L2NormArgs;

KERN_ENTRY void add_fwd(KernCtx *k, const AddArgs *a) {
    long i = kern_global(k);
    if (i >= a->n)
        return;
    a->out[i] = a->a[i] + a->b[a->bn ? i % a->bn : i];
}
KERN_HD KernLaunch add_fwd_launch(const AddArgs *a) {
    return kern_launch_1d(kern_blocks(a->n, KERN_CLIP_THREADS), KERN_CLIP_THREADS, 0);
}

KERN_ENTRY void gather_rows(KernCtx *k, const GatherArgs *a) {
    long i = kern_global(k);
    if (i >= (long)a->M * a->C)
        return;
    long m = i / a->C, c = i % a->C;
    int r = a->idx[m];
    float x = 0.0f;
    if (r >= 0) {
        long s = (long)r * a->C + c;
        if (a->dtype == KERN_DT_F16)
            x = kern_from_f16(((const unsigned short *)a->table)[s]);
        else if (a->dtype == KERN_DT_BF16)
            x = kern_bits_f32((unsigned)((const unsigned short *)a->table)[s] << 16);
        else
            x = ((const float *)a->table)[s];
    }
    a->out[i] = x;
}
KERN_HD KernLaunch gather_rows_launch(const GatherArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->M * a->C, KERN_CLIP_THREADS), KERN_CLIP_THREADS,
                          0);
}

/* Block n normalises row n. */
KERN_ENTRY void l2norm_fwd(KernCtx *k, const L2NormArgs *a) {
    float *scratch = (float *)kern_shared(k);
    long n = k->block_idx.x;
    const float *x = a->inp + n * a->C;
    float s = 0.0f;
    for (int c = k->tid; c < a->C; c += k->nthreads)
        s += x[c] * x[c];
    float nr = kern_sqrtf(kern_block_sum(k, s, scratch));
    float den = nr > a->eps ? nr : a->eps;
    float *o = a->out + n * a->C;
    for (int c = k->tid; c < a->C; c += k->nthreads)
        o[c] = x[c] / den;
    if (k->tid == 0 && a->norm)
        a->norm[n] = nr;
}
KERN_HD KernLaunch l2norm_fwd_launch(const L2NormArgs *a) {
    return kern_launch_1d(a->N, kern_row_threads(a->C), KERN_WARP * sizeof(float));
}

#endif
