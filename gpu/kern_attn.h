/* kern_attn — fused attention on the GPU with the semantics of nn_flash (src/engine/nn_flash.h):
 * tiled flash attention (FlashAttention-2 style) with an online softmax that keeps only a
 * log-sum-exp per query, recomputed in the backward; memory linear in the tokens. Masks
 * `causal` (query i sees keys j <= i + Tk − Tq) and `key_len` (batch b sees keys
 * [0, key_len[b])); a query that sees no key gets o = 0, lse = −inf and no gradient. Any NH,
 * Tq != Tk, heads of hd <= KERN_ATTN_MAX_HD; tokens are packed rows of NH·hd elements of
 * `dtype` (f32, f16 or bf16: q, k, v, o, dout, dq, dk, dv all of it), every sum in f32, lse
 * and the D scratch f32.
 *
 * Kernels (a block of KERN_ATTN_WARPS warps each; R "rows" per block, R/4 per warp, R from
 * kern_attn_rows so that everything fits 48 KiB of shared memory):
 *   attn_fwd      block per (batch, head, tile of R queries). Q rows staged once; for each
 *                 tile of 32 keys (lane j = key j) K and V are staged, the scores of the
 *                 warp's rows computed, the running max and sum updated by warp shuffles,
 *                 P written to shared memory and acc (lane = dims lane, lane+32, ...) +=
 *                 P·V. o = acc / l, lse = m + log l.
 *   attn_bwd_pre  D = rowsum(dout ∘ o), a warp per query, into a (B,NH,Tq) f32 scratch.
 *   attn_bwd_dkv  block per (batch, head, tile of R keys): loops over tiles of 32 queries
 *                 (lane i = query i), recomputes P = e^(S − lse) and dS = P ∘ (dP − D), and
 *                 accumulates dV_j += Pᵀ·dO, dK_j += scale·dSᵀ·Q in registers; one write.
 *   attn_bwd_dq   block per (batch, head, tile of R queries): loops over tiles of 32 keys,
 *                 recomputes P and dS the same way, dQ_i += scale·dS·K; one write.
 * dQ and dK/dV are separate kernels (the CPU's two-pass schedule): no atomics, so the
 * results are deterministic and every gradient element has one writer, at the price of
 * computing S and dP twice (7 tile products per tile pair instead of 5).
 *
 * The 32-wide tile is stored transposed with an XOR swizzle: element (c, d) at
 * d·32 + (c ^ (d & 31)); a warp reading column c for 32 consecutive d (lane = d), or row d for
 * 32 consecutive c (lane = c), touches 32 different banks, and so does the staging write.
 */
#ifndef EASEL_KERN_ATTN_H
#define EASEL_KERN_ATTN_H

#include "kern_common.h"
#include "kern_convert.h"

#define KERN_ATTN_MAX_HD 128
#define KERN_ATTN_WARPS 4
#define KERN_ATTN_THREADS (KERN_ATTN_WARPS * KERN_WARP)
#define KERN_ATTN_TILE 32 /* columns of a tile: one per lane */
#define KERN_ATTN_RPW 8   /* rows per warp, at most (registers: 4 f32 per row and dim group) */
#define KERN_ATTN_SMEM (48 * 1024)

/* Loops over a warp's rows and a lane's dims have constant bounds (and an early exit) so that
 * nvcc unrolls them and keeps the accumulators in registers, not in local memory. */
#ifdef __CUDA_ARCH__
#define KERN_UNROLL _Pragma("unroll")
#else
#define KERN_UNROLL
#endif

typedef struct AttnArgs {
    void *o;                 /* forward: written; backward: the forward's, read */
    float *lse;              /* (B,NH,Tq): forward writes, backward reads */
    float *dsum;             /* backward: (B,NH,Tq) scratch, D = rowsum(dout ∘ o) */
    void *dq, *dk, *dv;      /* backward: += ; NULL skipped */
    const void *q, *k, *v, *dout;
    const int *key_len;      /* (B) on the device, or NULL */
    int B, NH, Tq, Tk, hd, causal;
    int dtype;               /* KERN_DT_* of q, k, v, o, dout, dq, dk, dv */
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

/* Element d of head h of token t (of T) of batch b. */
KERN_HD long kern_attn_at(const AttnArgs *a, int b, int T, int t, int h, int d) {
    return (((long)b * T + t) * a->NH + h) * a->hd + d;
}

KERN_HD float kern_attn_ld(const void *p, long i, int dt) {
    if (dt == KERN_DT_F16)
        return kern_from_f16(((const unsigned short *)p)[i]);
    if (dt == KERN_DT_BF16)
        return kern_bits_f32((unsigned)((const unsigned short *)p)[i] << 16);
    return ((const float *)p)[i];
}

KERN_HD void kern_attn_st(void *p, long i, int dt, float x) {
    if (dt == KERN_DT_F16)
        ((unsigned short *)p)[i] = kern_to_f16(x);
    else if (dt == KERN_DT_BF16)
        ((unsigned short *)p)[i] = kern_to_bf16(x);
    else
        ((float *)p)[i] = x;
}

/* Rows [first, first + rpw) of T that exist: how many (0..rpw). The same for every lane of a
 * warp, so a warp skips the shuffles and products of a tail tile's missing rows together. */
KERN_HD int kern_attn_live(int T, int first, int rpw) {
    int n = T - first;
    return n < 0 ? 0 : n > rpw ? rpw : n;
}

/* Swizzled index of element (column c, dim d) of a 32-column tile. */
KERN_HD int kern_attn_sw(int c, int d) { return d * KERN_ATTN_TILE + (c ^ (d & 31)); }

/* Rows per block such that `fixed` + R·`per_row` bytes fit the shared memory: a multiple of
 * the warps, at most KERN_ATTN_RPW per warp. */
KERN_HD int kern_attn_rows(long fixed, long per_row) {
    long r = (KERN_ATTN_SMEM - fixed) / per_row;
    r = r / KERN_ATTN_WARPS * KERN_ATTN_WARPS;
    return r > KERN_ATTN_WARPS * KERN_ATTN_RPW ? KERN_ATTN_WARPS * KERN_ATTN_RPW : (int)r;
}

/* Shared memory plans. fwd: KT, VT (32·hd each), Qs (R·hd), Ps (R·32). dq: KT, VT, Qs, dOs,
 * Ps. dkv: QT, dOT (32·hd each), lse and D of the tile (32 each), Ks, Vs (R·hd), Ps, dSs
 * (R·32). In floats. */
KERN_HD int kern_attn_fwd_rows(int hd) {
    return kern_attn_rows(2L * KERN_ATTN_TILE * hd * 4, ((long)hd + KERN_ATTN_TILE) * 4);
}
KERN_HD int kern_attn_dq_rows(int hd) {
    return kern_attn_rows(2L * KERN_ATTN_TILE * hd * 4, (2L * hd + KERN_ATTN_TILE) * 4);
}
KERN_HD int kern_attn_dkv_rows(int hd) {
    return kern_attn_rows((2L * KERN_ATTN_TILE * hd + 2 * KERN_ATTN_TILE) * 4,
                          (2L * hd + 2 * KERN_ATTN_TILE) * 4);
}

/* Stage rows [t0, t0 + n) (of T tokens; past T zeros) of head (b, h) of x into dst: row-major
 * (dst[r·hd + d]) or, when swizzled, as a 32-column tile. */
KERN_HD void kern_attn_stage(KernCtx *k, const AttnArgs *a, float *dst, const void *x, int b,
                             int T, int t0, int n, int h, int swizzled) {
    int hd = a->hd;
    for (int e = k->tid; e < n * hd; e += k->nthreads) {
        int r = e / hd, d = e % hd, t = t0 + r;
        float val = t < T ? kern_attn_ld(x, kern_attn_at(a, b, T, t, h, d), a->dtype) : 0.0f;
        dst[swizzled ? kern_attn_sw(r, d) : e] = val;
    }
}

/* 4 consecutive floats of shared memory (16-byte aligned): one 128-bit load on the device. */
KERN_HD void kern_attn_ld4(const float *p, float v[4]) {
#ifdef __CUDA_ARCH__
    float4 t = *(const float4 *)p;
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
#else
    v[0] = p[0], v[1] = p[1], v[2] = p[2], v[3] = p[3];
#endif
}

/* s[i] += row i · column `lane` of the tile, for the warp's rows (row-major, hd floats each,
 * from `rows`) and a swizzled 32-column tile. Rows are read 4 floats at a time (a broadcast
 * 128-bit load) when hd is a multiple of 4, so a tile value read serves 4·rpw multiply-adds. */
KERN_HD void kern_attn_rowdots(const float *rows, const float *tile, int hd, int lane, int rpw,
                               float s[KERN_ATTN_RPW]) {
    int d = 0;
    if ((hd & 3) == 0)
        for (; d < hd; d += 4) {
            float t0 = tile[kern_attn_sw(lane, d)], t1 = tile[kern_attn_sw(lane, d + 1)];
            float t2 = tile[kern_attn_sw(lane, d + 2)], t3 = tile[kern_attn_sw(lane, d + 3)];
            KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW && i < rpw; i++) {
                float q[4];
                kern_attn_ld4(rows + i * hd + d, q);
                s[i] += (q[0] * t0 + q[1] * t1) + (q[2] * t2 + q[3] * t3);
            }
        }
    for (; d < hd; d++) {
        float t = tile[kern_attn_sw(lane, d)];
        KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW && i < rpw; i++)
            s[i] += rows[i * hd + d] * t;
    }
}

/* acc[i][c] += Σ_jj P[i][jj] · tile[jj][lane + 32c] over jj < nc: the warp's rows of P (32
 * floats each, from `P`; zero where masked) times the rows of a swizzled tile, lane = dim.
 * P is read 4 columns at a time; columns up to nc rounded up to 4 must hold finite values. */
KERN_HD void kern_attn_accum(const float *P, const float *tile, int nc, int hd, int lane, int rpw,
                             float acc[KERN_ATTN_RPW][KERN_ATTN_MAX_HD / 32]) {
    for (int jj = 0; jj < nc; jj += 4) {
        float p[KERN_ATTN_RPW][4];
        KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW && i < rpw; i++)
            kern_attn_ld4(P + i * KERN_ATTN_TILE + jj, p[i]);
        KERN_UNROLL for (int c = 0; c < KERN_ATTN_MAX_HD / 32; c++) {
            int d = lane + 32 * c;
            if (d >= hd)
                break;
            KERN_UNROLL for (int e = 0; e < 4; e++) {
                float v = tile[kern_attn_sw(jj + e, d)];
                KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW && i < rpw; i++)
                    acc[i][c] += p[i][e] * v;
            }
        }
    }
}

/* ---- forward -------------------------------------------------------------------------------- */

KERN_ENTRY void attn_fwd(KernCtx *k, const AttnArgs *a) {
    int hd = a->hd, R = kern_attn_fwd_rows(hd), rpw = R / KERN_ATTN_WARPS;
    int nqt = (a->Tq + R - 1) / R, blk = k->block_idx.x;
    int qt = blk % nqt, h = (blk / nqt) % a->NH, b = blk / nqt / a->NH;
    int lane = kern_lane(k), w = kern_warp(k), i0 = qt * R;
    int nrw = kern_attn_live(a->Tq, i0 + w * rpw, rpw); /* the warp's rows that exist */
    float *KT = (float *)kern_shared(k), *VT = KT + KERN_ATTN_TILE * hd;
    float *Qs = VT + KERN_ATTN_TILE * hd, *Ps = Qs + (long)R * hd;
    kern_attn_stage(k, a, Qs, a->q, b, a->Tq, i0, R, h, 0);
    int kend = 0, lim[KERN_ATTN_RPW];
    for (int r = 0; r < R && i0 + r < a->Tq; r++) {
        int n = kern_attn_keys(a, b, i0 + r);
        kend = n > kend ? n : kend;
    }
    float m[KERN_ATTN_RPW], l[KERN_ATTN_RPW], acc[KERN_ATTN_RPW][KERN_ATTN_MAX_HD / 32];
    KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW; i++) {
        int t = i0 + w * rpw + i;
        lim[i] = i < rpw && t < a->Tq ? kern_attn_keys(a, b, t) : 0;
        m[i] = -INFINITY, l[i] = 0.0f;
        KERN_UNROLL for (int c = 0; c < KERN_ATTN_MAX_HD / 32; c++)
            acc[i][c] = 0.0f;
    }
    for (int j0 = 0; j0 < kend; j0 += KERN_ATTN_TILE) {
        kern_sync(k); /* everyone is done with the previous tile */
        kern_attn_stage(k, a, KT, a->k, b, a->Tk, j0, KERN_ATTN_TILE, h, 1);
        kern_attn_stage(k, a, VT, a->v, b, a->Tk, j0, KERN_ATTN_TILE, h, 1);
        kern_sync(k);
        float s[KERN_ATTN_RPW];
        KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW; i++)
            s[i] = 0.0f;
        kern_attn_rowdots(Qs + w * rpw * hd, KT, hd, lane, nrw, s);
        int j = j0 + lane;
        KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW && i < nrw; i++) {
            int valid = j < lim[i];
            float sc = valid ? s[i] * a->scale : -INFINITY;
            float mn = kern_fmaxf(m[i], kern_warp_max(k, sc));
            float p = valid ? kern_expf(sc - mn) : 0.0f;
            float corr = m[i] == -INFINITY ? 0.0f : kern_expf(m[i] - mn);
            l[i] = l[i] * corr + kern_warp_sum(k, p);
            m[i] = mn;
            KERN_UNROLL for (int c = 0; c < KERN_ATTN_MAX_HD / 32; c++)
                acc[i][c] *= corr;
            Ps[(w * rpw + i) * KERN_ATTN_TILE + lane] = p;
        }
        kern_sync(k);
        int nc = kend - j0 < KERN_ATTN_TILE ? kend - j0 : KERN_ATTN_TILE;
        kern_attn_accum(Ps + w * rpw * KERN_ATTN_TILE, VT, nc, hd, lane, nrw, acc);
    }
    KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW && i < rpw; i++) {
        int t = i0 + w * rpw + i;
        if (t >= a->Tq)
            break;
        float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        KERN_UNROLL for (int c = 0; c < KERN_ATTN_MAX_HD / 32; c++) {
            int d = lane + 32 * c;
            if (d < hd)
                kern_attn_st(a->o, kern_attn_at(a, b, a->Tq, t, h, d), a->dtype, acc[i][c] * inv);
        }
        if (lane == 0)
            a->lse[((long)b * a->NH + h) * a->Tq + t] = l[i] > 0.0f ? m[i] + logf(l[i])
                                                                    : -INFINITY;
    }
}
KERN_HD KernLaunch attn_fwd_launch(const AttnArgs *a) {
    int R = kern_attn_fwd_rows(a->hd);
    return kern_launch_1d(a->B * a->NH * ((a->Tq + R - 1) / R), KERN_ATTN_THREADS,
                          (size_t)(2 * KERN_ATTN_TILE * a->hd + R * (a->hd + KERN_ATTN_TILE)) *
                              sizeof(float));
}

/* ---- backward ------------------------------------------------------------------------------- */

/* dsum[b,h,i] = Σ_d dout·o for query (b, h, i): a warp per query. */
KERN_ENTRY void attn_bwd_pre(KernCtx *k, const AttnArgs *a) {
    long t = (long)k->block_idx.x * KERN_ATTN_WARPS + kern_warp(k);
    long n = (long)a->B * a->NH * a->Tq;
    if (t >= n)
        return; /* the whole warp leaves together */
    int i = (int)(t % a->Tq), h = (int)((t / a->Tq) % a->NH), b = (int)(t / a->Tq / a->NH);
    float s = 0.0f;
    for (int d = kern_lane(k); d < a->hd; d += KERN_WARP) {
        long e = kern_attn_at(a, b, a->Tq, i, h, d);
        s += kern_attn_ld(a->dout, e, a->dtype) * kern_attn_ld(a->o, e, a->dtype);
    }
    s = kern_warp_sum(k, s);
    if (kern_lane(k) == 0)
        a->dsum[t] = s;
}
KERN_HD KernLaunch attn_bwd_pre_launch(const AttnArgs *a) {
    return kern_launch_1d(a->dq || a->dk || a->dv
                              ? kern_blocks((long)a->B * a->NH * a->Tq, KERN_ATTN_WARPS)
                              : 0,
                          KERN_ATTN_THREADS, 0);
}

/* grad[e] += x, in the gradient's dtype. */
KERN_HD void kern_attn_add(void *g, long e, int dt, float x) {
    kern_attn_st(g, e, dt, kern_attn_ld(g, e, dt) + x);
}

/* dK, dV of a tile of R keys, over every tile of 32 queries that sees one of them. */
KERN_ENTRY void attn_bwd_dkv(KernCtx *k, const AttnArgs *a) {
    int hd = a->hd, R = kern_attn_dkv_rows(hd), rpw = R / KERN_ATTN_WARPS;
    int nkt = (a->Tk + R - 1) / R, blk = k->block_idx.x;
    int kt = blk % nkt, h = (blk / nkt) % a->NH, b = blk / nkt / a->NH;
    int lane = kern_lane(k), w = kern_warp(k), j0 = kt * R;
    int nrw = kern_attn_live(a->Tk, j0 + w * rpw, rpw);
    float *QT = (float *)kern_shared(k), *dOT = QT + KERN_ATTN_TILE * hd;
    float *Ls = dOT + KERN_ATTN_TILE * hd, *Ds = Ls + KERN_ATTN_TILE;
    float *Ks = Ds + KERN_ATTN_TILE, *Vs = Ks + (long)R * hd, *Ps = Vs + (long)R * hd;
    float *dSs = Ps + R * KERN_ATTN_TILE;
    kern_attn_stage(k, a, Ks, a->k, b, a->Tk, j0, R, h, 0);
    kern_attn_stage(k, a, Vs, a->v, b, a->Tk, j0, R, h, 0);
    float dk[KERN_ATTN_RPW][KERN_ATTN_MAX_HD / 32], dv[KERN_ATTN_RPW][KERN_ATTN_MAX_HD / 32];
    KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW; i++)
        KERN_UNROLL for (int c = 0; c < KERN_ATTN_MAX_HD / 32; c++)
            dk[i][c] = dv[i][c] = 0.0f;
    /* the first query that sees key j0: causal hides it from queries i < j0 − (Tk − Tq) */
    int istart = a->causal ? j0 - (a->Tk - a->Tq) : 0;
    istart = istart < 0 ? 0 : istart;
    if (a->key_len && j0 >= a->key_len[b])
        istart = a->Tq; /* the batch sees none of these keys */
    const float *lse = a->lse + ((long)b * a->NH + h) * a->Tq;
    const float *dsum = a->dsum + ((long)b * a->NH + h) * a->Tq;
    for (int i0 = istart; i0 < a->Tq; i0 += KERN_ATTN_TILE) {
        kern_sync(k);
        kern_attn_stage(k, a, QT, a->q, b, a->Tq, i0, KERN_ATTN_TILE, h, 1);
        kern_attn_stage(k, a, dOT, a->dout, b, a->Tq, i0, KERN_ATTN_TILE, h, 1);
        if (k->tid < KERN_ATTN_TILE) {
            int t = i0 + k->tid;
            Ls[k->tid] = t < a->Tq ? lse[t] : -INFINITY;
            Ds[k->tid] = t < a->Tq ? dsum[t] : 0.0f;
        }
        kern_sync(k);
        int i = i0 + lane, nk = i < a->Tq ? kern_attn_keys(a, b, i) : 0;
        float L = Ls[lane], D = Ds[lane];
        float s[KERN_ATTN_RPW], dp[KERN_ATTN_RPW];
        KERN_UNROLL for (int r = 0; r < KERN_ATTN_RPW; r++)
            s[r] = dp[r] = 0.0f;
        kern_attn_rowdots(Ks + w * rpw * hd, QT, hd, lane, nrw, s);
        kern_attn_rowdots(Vs + w * rpw * hd, dOT, hd, lane, nrw, dp);
        KERN_UNROLL for (int r = 0; r < KERN_ATTN_RPW && r < nrw; r++) {
            int row = w * rpw + r, valid = j0 + row < nk && L != -INFINITY;
            float p = valid ? kern_expf(s[r] * a->scale - L) : 0.0f;
            Ps[row * KERN_ATTN_TILE + lane] = p;
            dSs[row * KERN_ATTN_TILE + lane] = p * (dp[r] - D);
        }
        kern_sync(k);
        int nc = a->Tq - i0 < KERN_ATTN_TILE ? a->Tq - i0 : KERN_ATTN_TILE;
        kern_attn_accum(Ps + w * rpw * KERN_ATTN_TILE, dOT, nc, hd, lane, nrw, dv);
        kern_attn_accum(dSs + w * rpw * KERN_ATTN_TILE, QT, nc, hd, lane, nrw, dk);
    }
    KERN_UNROLL for (int r = 0; r < KERN_ATTN_RPW && r < rpw; r++) {
        int j = j0 + w * rpw + r;
        if (j >= a->Tk)
            break;
        KERN_UNROLL for (int c = 0; c < KERN_ATTN_MAX_HD / 32; c++) {
            int d = lane + 32 * c;
            if (d >= hd)
                break;
            long e = kern_attn_at(a, b, a->Tk, j, h, d);
            if (a->dk)
                kern_attn_add(a->dk, e, a->dtype, a->scale * dk[r][c]);
            if (a->dv)
                kern_attn_add(a->dv, e, a->dtype, dv[r][c]);
        }
    }
}
KERN_HD KernLaunch attn_bwd_dkv_launch(const AttnArgs *a) {
    int R = kern_attn_dkv_rows(a->hd);
    return kern_launch_1d(a->dk || a->dv ? a->B * a->NH * ((a->Tk + R - 1) / R) : 0,
                          KERN_ATTN_THREADS,
                          (size_t)((2 * KERN_ATTN_TILE * a->hd + 2 * KERN_ATTN_TILE) +
                                   R * (2 * a->hd + 2 * KERN_ATTN_TILE)) *
                              sizeof(float));
}

/* dQ of a tile of R queries, over every tile of 32 keys one of them sees. */
KERN_ENTRY void attn_bwd_dq(KernCtx *k, const AttnArgs *a) {
    int hd = a->hd, R = kern_attn_dq_rows(hd), rpw = R / KERN_ATTN_WARPS;
    int nqt = (a->Tq + R - 1) / R, blk = k->block_idx.x;
    int qt = blk % nqt, h = (blk / nqt) % a->NH, b = blk / nqt / a->NH;
    int lane = kern_lane(k), w = kern_warp(k), i0 = qt * R;
    int nrw = kern_attn_live(a->Tq, i0 + w * rpw, rpw);
    float *KT = (float *)kern_shared(k), *VT = KT + KERN_ATTN_TILE * hd;
    float *Qs = VT + KERN_ATTN_TILE * hd, *dOs = Qs + (long)R * hd, *Ps = dOs + (long)R * hd;
    kern_attn_stage(k, a, Qs, a->q, b, a->Tq, i0, R, h, 0);
    kern_attn_stage(k, a, dOs, a->dout, b, a->Tq, i0, R, h, 0);
    const float *lse = a->lse + ((long)b * a->NH + h) * a->Tq;
    const float *dsum = a->dsum + ((long)b * a->NH + h) * a->Tq;
    int kend = 0, lim[KERN_ATTN_RPW];
    float L[KERN_ATTN_RPW], D[KERN_ATTN_RPW], acc[KERN_ATTN_RPW][KERN_ATTN_MAX_HD / 32];
    for (int r = 0; r < R && i0 + r < a->Tq; r++) {
        int n = lse[i0 + r] == -INFINITY ? 0 : kern_attn_keys(a, b, i0 + r);
        kend = n > kend ? n : kend;
    }
    KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW; i++) {
        int t = i0 + w * rpw + i, in = i < rpw && t < a->Tq;
        L[i] = in ? lse[t] : -INFINITY;
        D[i] = in ? dsum[t] : 0.0f;
        lim[i] = in && L[i] != -INFINITY ? kern_attn_keys(a, b, t) : 0;
        KERN_UNROLL for (int c = 0; c < KERN_ATTN_MAX_HD / 32; c++)
            acc[i][c] = 0.0f;
    }
    for (int j0 = 0; j0 < kend; j0 += KERN_ATTN_TILE) {
        kern_sync(k);
        kern_attn_stage(k, a, KT, a->k, b, a->Tk, j0, KERN_ATTN_TILE, h, 1);
        kern_attn_stage(k, a, VT, a->v, b, a->Tk, j0, KERN_ATTN_TILE, h, 1);
        kern_sync(k);
        float s[KERN_ATTN_RPW], dp[KERN_ATTN_RPW];
        KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW; i++)
            s[i] = dp[i] = 0.0f;
        kern_attn_rowdots(Qs + w * rpw * hd, KT, hd, lane, nrw, s);
        kern_attn_rowdots(dOs + w * rpw * hd, VT, hd, lane, nrw, dp);
        int j = j0 + lane;
        KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW && i < nrw; i++) {
            float p = j < lim[i] ? kern_expf(s[i] * a->scale - L[i]) : 0.0f;
            Ps[(w * rpw + i) * KERN_ATTN_TILE + lane] = p * (dp[i] - D[i]); /* dS */
        }
        kern_sync(k);
        int nc = kend - j0 < KERN_ATTN_TILE ? kend - j0 : KERN_ATTN_TILE;
        kern_attn_accum(Ps + w * rpw * KERN_ATTN_TILE, KT, nc, hd, lane, nrw, acc);
    }
    KERN_UNROLL for (int i = 0; i < KERN_ATTN_RPW && i < rpw; i++) {
        int t = i0 + w * rpw + i;
        if (t >= a->Tq)
            break;
        KERN_UNROLL for (int c = 0; c < KERN_ATTN_MAX_HD / 32; c++) {
            int d = lane + 32 * c;
            if (d < hd)
                kern_attn_add(a->dq, kern_attn_at(a, b, a->Tq, t, h, d), a->dtype,
                              a->scale * acc[i][c]);
        }
    }
}
KERN_HD KernLaunch attn_bwd_dq_launch(const AttnArgs *a) {
    int R = kern_attn_dq_rows(a->hd);
    return kern_launch_1d(a->dq ? a->B * a->NH * ((a->Tq + R - 1) / R) : 0, KERN_ATTN_THREADS,
                          (size_t)(2 * KERN_ATTN_TILE * a->hd + R * (2 * a->hd + KERN_ATTN_TILE)) *
                              sizeof(float));
}

#endif
