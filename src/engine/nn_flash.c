/* nn_flash — see nn_flash.h.
 *
 * Forward, per (batch, head, tile of up to br queries): for each tile of up to bc keys,
 * S = scale·Q_i·K_jᵀ (nn_sgemm_block where the CPU has AVX-512, else cblas_sgemm; sgemv for
 * a single query; leading dimensions pick the head out of the token rows), masked; per row
 * the running max m and sum l are updated online: m' = max(m, max_j S), acc ← acc·e^(m−m'),
 * P = e^(S−m'), l ← l·e^(m−m') + Σ P, acc += P·V_j. At the end o = acc / l and
 * lse = m + log l. Only the tile S (br×BC) and acc (br×hd) exist, on the stack;
 * br is at most BR up to hd = 128 and shrinks above (br·hd <= BR·128), so any head size
 * works with the same stack; br and bc split Tq and Tk into tiles of even size, rounded up to
 * 8 (the tile shape depends on the shape of the problem only, never on threads).
 *
 * Backward, per tile pair (i, j): S recomputed as in the forward, P = e^(S − lse),
 * dV_j += Pᵀ·dO_i, dP = dO_i·V_jᵀ, dS = P ∘ (dP − D_i)·scale with D_i = rowsum(dO_i ∘ O_i),
 * dK_j += dSᵀ·Q_i, dQ_i += dS·K_j. Two writers must not share a row, so the work is done as
 * two passes: one task per key tile (loops over all query tiles, writes dK_j and dV_j), then
 * one task per query tile (loops over all key tiles, writes dQ_i); S and dP are recomputed in
 * each. Where (batch, head) pairs alone keep the threads about as busy, one pass per
 * (batch, head) does all three and computes S and dP once. Both orders accumulate dQ_i over j
 * ascending and dK_j, dV_j over i ascending with the same per-tile arithmetic, so the two
 * schedules give the same bits, whatever the thread count.
 */
#include "nn_flash.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_sgemm.h"

/* Tile sizes: 128×128 measured a little faster than 64×64 (fewer, larger sgemm calls) at
 * SD-like shapes. Stack: the forward holds one BR×BC tile and the accumulator, the backward
 * two tiles: 128 kB either way. */
#define BR 128           /* queries per tile, at most */
#define BC 128           /* keys per tile */
#define ACC (BR * 128)   /* floats of the forward's accumulator: br·hd <= ACC */

typedef struct FlashJob {
    const FlashAttn *a;
    int ldq, ldk, ldv, ldo, br, bc, nqt, nkt;
    float scale;
    float *o, *lse, *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *oc;
} FlashJob;

static void job_init(FlashJob *j, const FlashAttn *a) {
    ASSERT(a->B >= 1 && a->NH >= 1 && a->Tq >= 1 && a->Tk >= 1);
    ASSERT(a->hd >= 1);
    int C = a->NH * a->hd;
    memset(j, 0, sizeof *j);
    j->a = a;
    j->ldq = a->ldq ? a->ldq : C;
    j->ldk = a->ldk ? a->ldk : C;
    j->ldv = a->ldv ? a->ldv : C;
    j->ldo = a->ldo ? a->ldo : C;
    ASSERT(j->ldq >= C && j->ldk >= C && j->ldv >= C && j->ldo >= C);
    j->scale = a->scale != 0.0f ? a->scale : 1.0f / sqrtf((float)a->hd);
    int brmax = a->hd <= ACC / BR ? BR : ACC / a->hd > 1 ? ACC / a->hd : 1;
    /* tiles of even size (rounded up to the GEMM's 8-row micro-tile): 257 tokens (ViT-L/14)
     * are 3 tiles of 88, 88, 81 rows rather than 128, 128 and 1 */
    int nqt = (a->Tq + brmax - 1) / brmax;
    int br = (a->Tq + nqt - 1) / nqt;
    br = (br + 7) / 8 * 8;
    j->br = br < brmax ? br : brmax;
    j->nqt = (a->Tq + j->br - 1) / j->br;
    int nkt = (a->Tk + BC - 1) / BC, bc = (a->Tk + nkt - 1) / nkt; /* key tiles likewise */
    j->bc = (bc + 7) / 8 * 8 < BC ? (bc + 7) / 8 * 8 : BC;
    j->nkt = (a->Tk + j->bc - 1) / j->bc;
}

/* ---- the row loops, vectorised ------------------------------------------------------------
 * They run over the tile's columns rounded up to 16 (the masked or unused ones hold
 * −INFINITY) so the compiler vectorises them at -O2; on x86-64 each also has AVX-512 and AVX2
 * clones picked at load time. No reassociation: sums run in 16 fixed lanes added in a fixed
 * order, and C11 mode does not contract a·b + c into an FMA, so every clone gives the same
 * bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VEC
#endif

/* e^x for x <= 88, within a few ulp of expf; 0 for x < −87 (−INFINITY included). Range
 * reduction x = n·ln2 + r by the round-to-nearest magic constant, a degree-6 polynomial for
 * e^r, 2^n put straight into the exponent bits. The clamp and the final zeroing are done on
 * the bits (a float compare would keep GCC from if-converting, so from vectorising). */
static inline __attribute__((always_inline)) float exp_poly(float x) {
    uint32_t ux, u87 = 0xC2AE0000u; /* −87.0f; a negative float's bits grow with |x| */
    memcpy(&ux, &x, sizeof ux);
    uint32_t under = 0u - (uint32_t)(ux > u87); /* all ones where x < −87 */
    uint32_t uc = (ux & ~under) | (u87 & under);
    float xc;
    memcpy(&xc, &uc, sizeof xc);
    float t = xc * 1.44269504f + 12582912.0f; /* 1.5·2^23: t's low mantissa bits hold n */
    float n = t - 12582912.0f;
    float r = xc - n * 0.693145752f;
    r = r - n * 1.42860677e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t ti;
    memcpy(&ti, &t, sizeof ti);
    int32_t bits = (ti - 0x4B400000 + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    uint32_t uy;
    memcpy(&uy, &y, sizeof uy);
    uy &= ~under;
    memcpy(&y, &uy, sizeof y);
    return y;
}

static VEC float row_max(const float *s, int w) {
    float m[16];
    for (int l = 0; l < 16; l++)
        m[l] = s[l];
    for (int c = 16; c < w; c += 16)
        for (int l = 0; l < 16; l++)
            m[l] = s[c + l] > m[l] ? s[c + l] : m[l];
    float mx = m[0];
    for (int l = 1; l < 16; l++)
        mx = m[l] > mx ? m[l] : mx;
    return mx;
}

/* s = e^(s − sub) over the row; returns the row's sum. */
static VEC float row_exp_sum(float *restrict s, float sub, int w) {
    float acc[16] = {0};
    for (int c = 0; c < w; c += 16)
        for (int l = 0; l < 16; l++) {
            float e = exp_poly(s[c + l] - sub);
            s[c + l] = e;
            acc[l] += e;
        }
    for (int l = 0; l < 8; l++)
        acc[l] += acc[l + 8];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Σ a[d]·b[d] over n: 16 fixed lanes added in a fixed order, then the tail (D_i of the
 * backward, recomputed for every key tile: a serial sum was a tenth of the backward). */
static VEC float row_dot(const float *restrict a, const float *restrict b, int n) {
    float acc[16] = {0};
    int n16 = n / 16 * 16;
    for (int c = 0; c < n16; c += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += a[c + l] * b[c + l];
    for (int l = 0; l < 8; l++)
        acc[l] += acc[l + 8];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (int c = n16; c < n; c++)
        s += a[c] * b[c];
    return s;
}

/* dS = P ∘ (dP − D)·scale over the row, in place of dP. */
static VEC void row_ds(float *restrict dp, const float *restrict p, float D, float scale, int w) {
    for (int c = 0; c < w; c++)
        dp[c] = p[c] * (dp[c] - D) * scale;
}

/* Mask columns [nv, w) of a score row. */
static void row_mask(float *s, int nv, int w) {
    for (int c = nv; c < w; c++)
        s[c] = -INFINITY;
}

/* C (M×N, row-major, ldc) = alpha·op(A)·op(B) + beta·C, beta 0 or 1. One query row (M = 1,
 * the reward model's pooled query) goes to sgemv and a rank-1 update (K = 1) to sger, where
 * OpenBLAS's sgemm would pack for nothing; the choice depends on the shape only. */
static void mm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (M == 1) {
        /* op(A) is 1×K: a row (stride 1) or, transposed, a column (stride lda) */
        int incx = ta ? lda : 1;
        if (beta == 0.0f)
            memset(C, 0, (size_t)N * sizeof(float));
        if (tb) /* B stored N×K */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, incx, 1.0f, C, 1);
        else /* B stored K×N */
            cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, B, ldb, A, incx, 1.0f, C, 1);
        return;
    }
    if (K == 1 && beta == 1.0f) {
        /* op(A) is M×1: a column (stride lda) or, transposed, a row (stride 1); op(B) 1×N */
        cblas_sger(CblasRowMajor, M, N, alpha, A, ta ? 1 : lda, B, tb ? ldb : 1, C, ldc);
        return;
    }
    /* the engine's AVX-512 block where the CPU has it (nn_sgemm.h); alpha (the scores'
     * scale, with beta 0) multiplies the finished sums */
    if (nn_sgemm_available() && (alpha == 1.0f || beta == 0.0f)) {
        NnGemmB bd = {B, NULL, ldb, tb};
        nn_sgemm_block(M, N, K, A, lda, ta, &bd, alpha, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Keys batch b's query at absolute position qpos may see: [0, limit). */
static int key_limit(const FlashAttn *a, int b, int qpos) {
    int lim = a->Tk;
    if (a->key_len) {
        int kl = a->key_len[b];
        lim = kl < 0 ? 0 : kl < lim ? kl : lim;
    }
    if (a->causal) {
        int c = qpos + (a->Tk - a->Tq) + 1;
        lim = c < lim ? c : lim;
    }
    return lim < 0 ? 0 : lim;
}

/* S (rows×cols, ld BC) = scale · Q_i · K_jᵀ for head (b, h). */
static void scores(const FlashJob *j, float *S, int b, int h, int i0, int rows, int j0,
                   int cols) {
    const FlashAttn *a = j->a;
    const float *q = j->q + ((size_t)b * a->Tq + i0) * j->ldq + (size_t)h * a->hd;
    const float *k = j->k + ((size_t)b * a->Tk + j0) * j->ldk + (size_t)h * a->hd;
    mm(0, 1, rows, cols, a->hd, j->scale, q,
                j->ldq, k, j->ldk, 0.0f, S, BC);
}

/* ---- forward --------------------------------------------------------------------------- */

static void fwd_tile(const FlashJob *j, int b, int h, int qt) {
    const FlashAttn *a = j->a;
    int hd = a->hd, i0 = qt * j->br, rows = a->Tq - i0 < j->br ? a->Tq - i0 : j->br;
    float S[BR * BC], acc[ACC], m[BR], l[BR];
    int lim[BR];
    for (int r = 0; r < rows; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        lim[r] = key_limit(a, b, i0 + r);
    }
    memset(acc, 0, (size_t)rows * (size_t)hd * sizeof(float));
    int kend = lim[rows - 1] > lim[0] ? lim[rows - 1] : lim[0];
    const float *vb = j->v + (size_t)b * a->Tk * j->ldv + (size_t)h * hd;
    for (int j0 = 0; j0 < kend; j0 += j->bc) {
        int cols = kend - j0 < j->bc ? kend - j0 : j->bc, w = (cols + 15) / 16 * 16;
        scores(j, S, b, h, i0, rows, j0, cols);
        for (int r = 0; r < rows; r++) {
            float *s = S + (size_t)r * BC;
            int nv = lim[r] - j0;
            nv = nv < 0 ? 0 : nv > cols ? cols : nv;
            if (nv == 0) {
                memset(s, 0, BC * sizeof(float));
                continue;
            }
            row_mask(s, nv, w);
            float mx = row_max(s, w);
            mx = m[r] > mx ? m[r] : mx;
            float alpha = m[r] == -INFINITY ? 0.0f : expf(m[r] - mx);
            float sum = row_exp_sum(s, mx, w);
            if (alpha != 1.0f) {
                float *ar = acc + (size_t)r * hd;
                for (int d = 0; d < hd; d++)
                    ar[d] *= alpha;
            }
            l[r] = l[r] * alpha + sum;
            m[r] = mx;
        }
        /* acc (rows×hd) += P (rows×cols) · V_j (cols×hd) */
        mm(0, 0, rows, hd, cols, 1.0f, S, BC,
                    vb + (size_t)j0 * j->ldv, j->ldv, 1.0f, acc, hd);
    }
    float *lse = j->lse + ((size_t)b * a->NH + h) * a->Tq + i0;
    for (int r = 0; r < rows; r++) {
        float *o = j->o + ((size_t)b * a->Tq + i0 + r) * j->ldo + (size_t)h * hd;
        if (l[r] == 0.0f) {
            memset(o, 0, (size_t)hd * sizeof(float));
            lse[r] = -INFINITY;
            continue;
        }
        float inv = 1.0f / l[r];
        for (int d = 0; d < hd; d++)
            o[d] = acc[(size_t)r * hd + d] * inv;
        lse[r] = m[r] + logf(l[r]);
    }
}

static void fwd_range(void *ctx, int64_t t0, int64_t t1) {
    const FlashJob *j = ctx;
    for (int64_t t = t0; t < t1; t++) {
        int qt = (int)(t % j->nqt);
        int64_t bh = t / j->nqt;
        fwd_tile(j, (int)(bh / j->a->NH), (int)(bh % j->a->NH), qt);
    }
}

/* Tasks per range so that each range has some 64k multiply-adds at least. */
static int64_t grain_for(int64_t work_per_task) {
    return 1 + 65536 / (work_per_task > 0 ? work_per_task : 1);
}

void nn_flash_forward(float *o, float *lse, const float *q, const float *k, const float *v,
                      const FlashAttn *a) {
    FlashJob j;
    job_init(&j, a);
    j.o = o, j.lse = lse, j.q = q, j.k = k, j.v = v;
    int64_t tasks = (int64_t)a->B * a->NH * j.nqt;
    int64_t work = (int64_t)(a->Tq < j.br ? a->Tq : j.br) * a->Tk * a->hd * 2;
    backend_cpu_parallel_dynamic(tasks, grain_for(work), fwd_range, &j);
}

/* ---- backward -------------------------------------------------------------------------- */

/* All tile pairs (i, j) with i in [it0, it1), j in [jt0, jt1), j outer and i inner: writes
 * dK_j, dV_j (when kv) and dQ_i (when dq_on). */
static void bwd_tiles(const FlashJob *j, int b, int h, int it0, int it1, int jt0, int jt1,
                      int kv, int dq_on) {
    const FlashAttn *a = j->a;
    int hd = a->hd;
    float P[BR * BC], dP[BR * BC], D[BR], L[BR];
    int lim[BR];
    size_t hoff = (size_t)h * hd;
    const float *lse = j->lse + ((size_t)b * a->NH + h) * a->Tq;
    memset(dP, 0, sizeof dP); /* columns past a short tile's end stay 0 (finite) */
    for (int jt = jt0; jt < jt1; jt++) {
        int j0 = jt * j->bc, cols = a->Tk - j0 < j->bc ? a->Tk - j0 : j->bc;
        int w = (cols + 15) / 16 * 16;
        size_t krow = (size_t)b * a->Tk + j0;
        for (int it = it0; it < it1; it++) {
            int i0 = it * j->br, rows = a->Tq - i0 < j->br ? a->Tq - i0 : j->br;
            int kend = 0;
            for (int r = 0; r < rows; r++) {
                lim[r] = key_limit(a, b, i0 + r);
                kend = lim[r] > kend ? lim[r] : kend;
            }
            if (kend <= j0)
                continue; /* every pair in the tile is masked */
            size_t qrow = (size_t)b * a->Tq + i0;
            scores(j, P, b, h, i0, rows, j0, cols);
            for (int r = 0; r < rows; r++) {
                const float *dor = j->dout + (qrow + r) * j->ldo + hoff;
                const float *orow = j->oc + (qrow + r) * j->ldo + hoff;
                D[r] = row_dot(dor, orow, hd);
                L[r] = lse[i0 + r];
                float *p = P + (size_t)r * BC;
                int nv = lim[r] - j0;
                nv = nv < 0 ? 0 : nv > cols ? cols : nv;
                if (L[r] == -INFINITY || nv == 0) {
                    memset(p, 0, BC * sizeof(float));
                    continue;
                }
                row_mask(p, nv, w);
                row_exp_sum(p, L[r], w);
            }
            const float *dO = j->dout + qrow * j->ldo + hoff;
            if (kv && j->dv) /* dV_j (cols×hd) += Pᵀ (cols×rows) · dO_i (rows×hd) */
                mm(1, 0, cols, hd, rows, 1.0f, P, BC,
                            dO, j->ldo, 1.0f, j->dv + krow * j->ldv + hoff, j->ldv);
            if (!(kv && j->dk) && !dq_on)
                continue;
            /* dP (rows×cols) = dO_i · V_jᵀ */
            mm(0, 1, rows, cols, hd, 1.0f, dO,
                        j->ldo, j->v + krow * j->ldv + hoff, j->ldv, 0.0f, dP, BC);
            for (int r = 0; r < rows; r++)
                row_ds(dP + (size_t)r * BC, P + (size_t)r * BC, D[r], j->scale, w);
            if (kv && j->dk) /* dK_j (cols×hd) += dSᵀ (cols×rows) · Q_i (rows×hd) */
                mm(1, 0, cols, hd, rows, 1.0f, dP,
                            BC, j->q + qrow * j->ldq + hoff, j->ldq, 1.0f,
                            j->dk + krow * j->ldk + hoff, j->ldk);
            if (dq_on) /* dQ_i (rows×hd) += dS (rows×cols) · K_j (cols×hd) */
                mm(0, 0, rows, hd, cols, 1.0f, dP,
                            BC, j->k + krow * j->ldk + hoff, j->ldk, 1.0f,
                            j->dq + qrow * j->ldq + hoff, j->ldq);
        }
    }
}

static void bwd_kv_range(void *ctx, int64_t t0, int64_t t1) {
    const FlashJob *j = ctx;
    for (int64_t t = t0; t < t1; t++) {
        int jt = (int)(t % j->nkt);
        int64_t bh = t / j->nkt;
        bwd_tiles(j, (int)(bh / j->a->NH), (int)(bh % j->a->NH), 0, j->nqt, jt, jt + 1, 1, 0);
    }
}

static void bwd_q_range(void *ctx, int64_t t0, int64_t t1) {
    const FlashJob *j = ctx;
    for (int64_t t = t0; t < t1; t++) {
        int it = (int)(t % j->nqt);
        int64_t bh = t / j->nqt;
        bwd_tiles(j, (int)(bh / j->a->NH), (int)(bh % j->a->NH), it, it + 1, 0, j->nkt, 0, 1);
    }
}

static void bwd_all_range(void *ctx, int64_t t0, int64_t t1) {
    const FlashJob *j = ctx;
    for (int64_t bh = t0; bh < t1; bh++)
        bwd_tiles(j, (int)(bh / j->a->NH), (int)(bh % j->a->NH), 0, j->nqt, 0, j->nkt, 1,
                  j->dq != NULL);
}

void nn_flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                       const float *k, const float *v, const float *o, const float *lse,
                       const FlashAttn *a) {
    FlashJob j;
    job_init(&j, a);
    j.dq = dq, j.dk = dk, j.dv = dv, j.dout = dout, j.q = q, j.k = k, j.v = v, j.oc = o;
    j.lse = (float *)lse;
    if (!dq && !dk && !dv)
        return;
    int64_t bh = (int64_t)a->B * a->NH;
    int64_t pair =
        (int64_t)(a->Tq < j.br ? a->Tq : j.br) * (a->Tk < j.bc ? a->Tk : j.bc) * a->hd * 5;
    /* One pass does 5 tile products per pair, the split 7 (S and dP twice) but spreads over
     * more tasks: take one pass where its busiest thread, ceil(bh/threads) pairs deep, has no
     * more to do than every thread in the split. */
    int64_t thr = backend_cpu_threads();
    int one = a->schedule == 1 || (j.nqt == 1 && j.nkt == 1) ||
              (a->schedule == 0 && (bh + thr - 1) / thr * 5 * thr <= bh * 7);
    if (one) {
        backend_cpu_parallel_dynamic(bh, grain_for(pair * j.nqt * j.nkt), bwd_all_range, &j);
        return;
    }
    if (dk || dv)
        backend_cpu_parallel_dynamic(bh * j.nkt, grain_for(pair * j.nqt), bwd_kv_range, &j);
    if (dq)
        backend_cpu_parallel_dynamic(bh * j.nqt, grain_for(pair * j.nkt), bwd_q_range, &j);
}
