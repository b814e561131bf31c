/* kern_attn — fused attention on the GPU with the semantics of nn_flash (src/engine/nn_flash.h): an
 * online softmax that keeps only a log-sum-exp per query, recomputed in the backward; memory
 * linear in the tokens; masks `causal` (query i sees keys j <= i + Tk − Tq) and `key_len`
 * (batch b sees keys [0, key_len[b])); a query that sees no key gets o = 0, lse = −inf and no
 * gradient. Heads of hd <= KERN_ATTN_MAX_HD floats; tokens are packed rows of NH·hd.
 *
 * This first version is one thread per (batch, head, query) [forward, dq] or (batch, head,
 * key) [dk, dv], reading K/V straight from global memory, every sum in a fixed order (no
 * atomics): correct and deterministic, not yet the tiled shared-memory kernel (doc/engine.md).
 */
#ifndef EASEL_KERN_ATTN_H
#define EASEL_KERN_ATTN_H

#include "kern_common.h"

#define KERN_ATTN_MAX_HD 128
#define KERN_ATTN_THREADS 64

typedef struct AttnArgs {
    float *o, *lse;            /* forward: written; backward: the forward's, read */
    float *dq, *dk, *dv;       /* backward: += ; NULL skipped */
    const float *q, *k, *v, *dout;
    const int *key_len;        /* (B) on the device, or NULL */
    int B, NH, Tq, Tk, hd, causal;
    float scale;
} AttnArgs;

/* Keys [0, n) that query i of batch b sees. */
KERN_HD int kern_attn_keys(const AttnArgs *a, int b, int i) {
    int n = a->Tk;
    if (a->key_len && a->key_len[b] < n)
        n = a->key_len[b] < 0 ? 0 : a->key_len[b];
    if (a->causal && i + a->Tk - a->Tq + 1 < n)
        n = i + a->Tk - a->Tq + 1 < 0 ? 0 : i + a->Tk - a->Tq + 1;
    return n;
}

KERN_HD const float *kern_attn_row(const float *base, const AttnArgs *a, int b, int T, int t,
                                   int h) {
    return base + ((long)b * T + t) * a->NH * a->hd + (long)h * a->hd;
}

KERN_HD float kern_attn_dot(const float *x, const float *y, int n) {
    float s = 0.0f;
    for (int d = 0; d < n; d++)
        s += x[d] * y[d];
    return s;
}

KERN_ENTRY void attn_fwd(KernCtx *k, const AttnArgs *a) {
    long t = kern_global(k);
    if (t >= (long)a->B * a->NH * a->Tq)
        return;
    int i = (int)(t % a->Tq), h = (int)((t / a->Tq) % a->NH), b = (int)(t / ((long)a->Tq * a->NH));
    const float *q = kern_attn_row(a->q, a, b, a->Tq, i, h);
    float *o = (float *)kern_attn_row(a->o, a, b, a->Tq, i, h);
    float acc[KERN_ATTN_MAX_HD];
    for (int d = 0; d < a->hd; d++)
        acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    int nk = kern_attn_keys(a, b, i);
    for (int j = 0; j < nk; j++) {
        float s = a->scale * kern_attn_dot(q, kern_attn_row(a->k, a, b, a->Tk, j, h), a->hd);
        if (s > m) {
            float corr = m == -INFINITY ? 0.0f : kern_expf(m - s);
            for (int d = 0; d < a->hd; d++)
                acc[d] *= corr;
            l *= corr;
            m = s;
        }
        float p = kern_expf(s - m);
        const float *v = kern_attn_row(a->v, a, b, a->Tk, j, h);
        l += p;
        for (int d = 0; d < a->hd; d++)
            acc[d] += p * v[d];
    }
    for (int d = 0; d < a->hd; d++)
        o[d] = l > 0.0f ? acc[d] / l : 0.0f;
    a->lse[t] = l > 0.0f ? m + logf(l) : -INFINITY; /* t is (b, h, i): lse's (B,NH,Tq) order */
}
KERN_HD KernLaunch attn_fwd_launch(const AttnArgs *a) {
    return kern_launch_1d(kern_blocks((long)a->B * a->NH * a->Tq, KERN_ATTN_THREADS),
                          KERN_ATTN_THREADS, 0);
}

/* dq for query (b, h, i): Σ_j scale·p_ij·(dout_i·v_j − D_i)·k_j, D_i = dout_i·o_i. */
KERN_ENTRY void attn_bwd_dq(KernCtx *k, const AttnArgs *a) {
    long t = kern_global(k);
    if (t >= (long)a->B * a->NH * a->Tq)
        return;
    int i = (int)(t % a->Tq), h = (int)((t / a->Tq) % a->NH), b = (int)(t / ((long)a->Tq * a->NH));
    float lse = a->lse[t];
    if (lse == -INFINITY)
        return;
    const float *q = kern_attn_row(a->q, a, b, a->Tq, i, h);
    const float *g = kern_attn_row(a->dout, a, b, a->Tq, i, h);
    float D = kern_attn_dot(g, kern_attn_row(a->o, a, b, a->Tq, i, h), a->hd);
    float acc[KERN_ATTN_MAX_HD];
    for (int d = 0; d < a->hd; d++)
        acc[d] = 0.0f;
    int nk = kern_attn_keys(a, b, i);
    for (int j = 0; j < nk; j++) {
        const float *kj = kern_attn_row(a->k, a, b, a->Tk, j, h);
        float p = kern_expf(a->scale * kern_attn_dot(q, kj, a->hd) - lse);
        float ds = p * (kern_attn_dot(g, kern_attn_row(a->v, a, b, a->Tk, j, h), a->hd) - D);
        for (int d = 0; d < a->hd; d++)
            acc[d] += ds * kj[d];
    }
    float *dq = (float *)kern_attn_row(a->dq, a, b, a->Tq, i, h);
    for (int d = 0; d < a->hd; d++)
        dq[d] += a->scale * acc[d];
}
KERN_HD KernLaunch attn_bwd_dq_launch(const AttnArgs *a) {
    return kern_launch_1d(a->dq ? kern_blocks((long)a->B * a->NH * a->Tq, KERN_ATTN_THREADS) : 0,
                          KERN_ATTN_THREADS, 0);
}

/* dk, dv for key (b, h, j): over the queries that see it, dv_j += p_ij·dout_i and
 * dk_j += scale·p_ij·(dout_i·v_j − D_i)·q_i. */
KERN_ENTRY void attn_bwd_dkv(KernCtx *k, const AttnArgs *a) {
    long t = kern_global(k);
    if (t >= (long)a->B * a->NH * a->Tk)
        return;
    int j = (int)(t % a->Tk), h = (int)((t / a->Tk) % a->NH), b = (int)(t / ((long)a->Tk * a->NH));
    const float *kj = kern_attn_row(a->k, a, b, a->Tk, j, h);
    const float *vj = kern_attn_row(a->v, a, b, a->Tk, j, h);
    float ak[KERN_ATTN_MAX_HD], av[KERN_ATTN_MAX_HD];
    for (int d = 0; d < a->hd; d++)
        ak[d] = av[d] = 0.0f;
    for (int i = 0; i < a->Tq; i++) {
        float lse = a->lse[((long)b * a->NH + h) * a->Tq + i];
        if (j >= kern_attn_keys(a, b, i) || lse == -INFINITY)
            continue;
        const float *q = kern_attn_row(a->q, a, b, a->Tq, i, h);
        const float *g = kern_attn_row(a->dout, a, b, a->Tq, i, h);
        float p = kern_expf(a->scale * kern_attn_dot(q, kj, a->hd) - lse);
        float D = kern_attn_dot(g, kern_attn_row(a->o, a, b, a->Tq, i, h), a->hd);
        float ds = p * (kern_attn_dot(g, vj, a->hd) - D);
        for (int d = 0; d < a->hd; d++) {
            av[d] += p * g[d];
            ak[d] += ds * q[d];
        }
    }
    float *dk = a->dk ? (float *)kern_attn_row(a->dk, a, b, a->Tk, j, h) : NULL;
    float *dv = a->dv ? (float *)kern_attn_row(a->dv, a, b, a->Tk, j, h) : NULL;
    for (int d = 0; d < a->hd; d++) {
        if (dk)
            dk[d] += a->scale * ak[d];
        if (dv)
            dv[d] += av[d];
    }
}
KERN_HD KernLaunch attn_bwd_dkv_launch(const AttnArgs *a) {
    return kern_launch_1d(a->dk || a->dv ? kern_blocks((long)a->B * a->NH * a->Tk,
                                                       KERN_ATTN_THREADS)
                                         : 0,
                          KERN_ATTN_THREADS, 0);
}

#endif
