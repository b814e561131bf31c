/* nn_attention — see nn_attention.h.
 *
 * Per (batch, head): S = q_h·k_hᵀ (sgemm with leading dimension C picks the head's channels
 * out of the (T,C) rows without copying), scale, mask, row softmax into att; out_h = att·v_h.
 * Backward per (batch, head): dv_h += attᵀ·dout_h; datt = dout_h·v_hᵀ; dS = att ⊙ (datt −
 * rowsum(datt ⊙ att)) / √hs; dq_h += dS·k_h; dk_h += dSᵀ·q_h. Masked entries have att = 0, so
 * their gradient is zero without looking at the mask again.
 */
#include "nn_attention.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_flash.h"
#include "nn_linear.h"

typedef struct AttnJob {
    float *out, *att;
    float *dq, *dk, *dv, *datt;
    const float *dout;
    const float *q, *k, *v;
    const AttnMask *mask;
    int B, Tq, Tk, C, NH;
} AttnJob;

static void attn_fwd_range(void *ctx, int64_t i0, int64_t i1) {
    const AttnJob *j = ctx;
    int Tq = j->Tq, Tk = j->Tk, C = j->C, NH = j->NH, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int64_t bh = i0; bh < i1; bh++) {
        int b = (int)(bh / NH), h = (int)(bh % NH);
        const float *q = j->q + (size_t)b * Tq * C + (size_t)h * hs;
        const float *k = j->k + (size_t)b * Tk * C + (size_t)h * hs;
        const float *v = j->v + (size_t)b * Tk * C + (size_t)h * hs;
        float *att = j->att + (size_t)bh * Tq * Tk;
        float *out = j->out + (size_t)b * Tq * C + (size_t)h * hs;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, hs, scale, q, C, k, C,
                    0.0f, att, Tk);
        for (int i = 0; i < Tq; i++) {
            float *row = att + (size_t)i * Tk;
            float mx = -INFINITY;
            for (int t = 0; t < Tk; t++) {
                float s = row[t];
                if (j->mask) {
                    if (j->mask->add)
                        s += j->mask->add[(size_t)i * Tk + t];
                    if (j->mask->key_pad && j->mask->key_pad[(size_t)b * Tk + t])
                        s = -INFINITY;
                    if (j->mask->causal && t > i + (Tk - Tq))
                        s = -INFINITY;
                }
                row[t] = s;
                mx = s > mx ? s : mx;
            }
            if (mx == -INFINITY) { /* every key masked */
                memset(row, 0, (size_t)Tk * sizeof(float));
                continue;
            }
            float sum = 0.0f;
            for (int t = 0; t < Tk; t++) {
                row[t] = expf(row[t] - mx);
                sum += row[t];
            }
            float inv = 1.0f / sum;
            for (int t = 0; t < Tk; t++)
                row[t] *= inv;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, hs, Tk, 1.0f, att, Tk, v, C,
                    0.0f, out, C);
    }
}

void nn_attention_forward(float *out, float *att, const float *q, const float *k,
                          const float *v, const AttnMask *mask, int B, int Tq, int Tk, int C,
                          int NH) {
    ASSERT(NH > 0 && C % NH == 0);
    AttnJob j = {.out = out, .att = att, .q = q, .k = k, .v = v, .mask = mask,
                 .B = B, .Tq = Tq, .Tk = Tk, .C = C, .NH = NH};
    int64_t work = (int64_t)Tq * Tk * (C / NH);
    backend_cpu_parallel_for((int64_t)B * NH, 1 + 32768 / (work ? work : 1), attn_fwd_range, &j);
}

static void attn_bwd_range(void *ctx, int64_t i0, int64_t i1) {
    const AttnJob *j = ctx;
    int Tq = j->Tq, Tk = j->Tk, C = j->C, NH = j->NH, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int64_t bh = i0; bh < i1; bh++) {
        int b = (int)(bh / NH), h = (int)(bh % NH);
        size_t oq = (size_t)b * Tq * C + (size_t)h * hs, ok = (size_t)b * Tk * C + (size_t)h * hs;
        const float *att = j->att + (size_t)bh * Tq * Tk;
        float *datt = j->datt + (size_t)bh * Tq * Tk;
        const float *dout = j->dout + oq;
        if (j->dv) /* (Tk,hs) += attᵀ (Tk,Tq) · dout (Tq,hs) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, hs, Tq, 1.0f, att, Tk,
                        dout, C, 1.0f, j->dv + ok, C);
        /* datt (Tq,Tk) = dout (Tq,hs) · vᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, hs, 1.0f, dout, C,
                    j->v + ok, C, 0.0f, datt, Tk);
        for (int i = 0; i < Tq; i++) {
            const float *a = att + (size_t)i * Tk;
            float *d = datt + (size_t)i * Tk;
            float dot = 0.0f;
            for (int t = 0; t < Tk; t++)
                dot += a[t] * d[t];
            for (int t = 0; t < Tk; t++)
                d[t] = a[t] * (d[t] - dot) * scale;
        }
        if (j->dq) /* (Tq,hs) += dS (Tq,Tk) · k (Tk,hs) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, hs, Tk, 1.0f, datt, Tk,
                        j->k + ok, C, 1.0f, j->dq + oq, C);
        if (j->dk) /* (Tk,hs) += dSᵀ (Tk,Tq) · q (Tq,hs) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, hs, Tq, 1.0f, datt, Tk,
                        j->q + oq, C, 1.0f, j->dk + ok, C);
    }
}

void nn_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                           const float *att, const float *q, const float *k, const float *v,
                           int B, int Tq, int Tk, int C, int NH) {
    ASSERT(NH > 0 && C % NH == 0);
    AttnJob j = {.att = (float *)att, .dq = dq, .dk = dk, .dv = dv, .datt = datt,
                 .dout = dout, .q = q, .k = k, .v = v, .B = B, .Tq = Tq, .Tk = Tk, .C = C,
                 .NH = NH};
    int64_t work = (int64_t)Tq * Tk * (C / NH);
    backend_cpu_parallel_for((int64_t)B * NH, 1 + 32768 / (work ? work : 1), attn_bwd_range, &j);
}

/* ---- nn.MultiheadAttention ------------------------------------------------------------ */

size_t nn_mha_cache_floats(int B, int Tq, int Tk, int C, int NH) {
    return (size_t)B * Tq * C * 2 + (size_t)B * Tk * C * 2 + (size_t)B * NH * Tq;
}

size_t nn_mha_scratch_floats(int B, int Tq, int Tk, int C, int NH) {
    (void)NH; /* dctx, dq (B,Tq,C); dk, dv (B,Tk,C) */
    return (size_t)B * Tq * C * 2 + (size_t)B * Tk * C * 2;
}

void nn_mha_cache_point(MhaCache *cache, float *mem, int B, int Tq, int Tk, int C, int NH) {
    cache->q = mem;
    mem += (size_t)B * Tq * C;
    cache->k = mem;
    mem += (size_t)B * Tk * C;
    cache->v = mem;
    mem += (size_t)B * Tk * C;
    cache->lse = mem;
    mem += (size_t)B * NH * Tq;
    cache->ctx = mem;
    cache->causal = 0;
}

void nn_mha_forward(float *out, MhaCache *cache, const float *query, const float *key,
                    const float *value, const float *in_proj_weight, const float *in_proj_bias,
                    const float *out_weight, const float *out_bias, const AttnMask *mask, int B,
                    int Tq, int Tk, int C, int NH) {
    size_t CC = (size_t)C * C;
    const float *bq = in_proj_bias, *bk = in_proj_bias ? in_proj_bias + C : NULL,
                *bv = in_proj_bias ? in_proj_bias + 2 * C : NULL;
    nn_linear_forward(cache->q, query, in_proj_weight, bq, B * Tq, C, C);
    nn_linear_forward(cache->k, key, in_proj_weight + CC, bk, B * Tk, C, C);
    nn_linear_forward(cache->v, value, in_proj_weight + 2 * CC, bv, B * Tk, C, C);
    ASSERT(!mask || (!mask->add && !mask->key_pad));
    cache->causal = mask ? mask->causal : 0;
    FlashAttn fa = {.B = B, .NH = NH, .Tq = Tq, .Tk = Tk, .hd = C / NH, .causal = cache->causal};
    nn_flash_forward(cache->ctx, cache->lse, cache->q, cache->k, cache->v, &fa);
    nn_linear_forward(out, cache->ctx, out_weight, out_bias, B * Tq, C, C);
}

void nn_mha_backward(float *dquery, float *dkey, float *dvalue, float *din_proj_weight,
                     float *din_proj_bias, float *dout_weight, float *dout_bias, float *scratch,
                     const float *dout, const MhaCache *cache, const float *query,
                     const float *key, const float *value, const float *in_proj_weight,
                     const float *out_weight, int B, int Tq, int Tk, int C, int NH) {
    size_t CC = (size_t)C * C;
    size_t nq = (size_t)B * Tq * C, nk = (size_t)B * Tk * C;
    float *dctx = scratch, *dq = dctx + nq, *dk = dq + nq, *dv = dk + nk;
    memset(scratch, 0, (nq * 2 + nk * 2) * sizeof(float));
    nn_linear_backward(dctx, dout_weight, dout_bias, dout, cache->ctx, out_weight, B * Tq, C, C);
    FlashAttn fa = {.B = B, .NH = NH, .Tq = Tq, .Tk = Tk, .hd = C / NH, .causal = cache->causal};
    nn_flash_backward(dq, dk, dv, dctx, cache->q, cache->k, cache->v, cache->ctx, cache->lse,
                      &fa);
    float *dbq = din_proj_bias, *dbk = din_proj_bias ? din_proj_bias + C : NULL,
          *dbv = din_proj_bias ? din_proj_bias + 2 * C : NULL;
    float *dwq = din_proj_weight, *dwk = din_proj_weight ? din_proj_weight + CC : NULL,
          *dwv = din_proj_weight ? din_proj_weight + 2 * CC : NULL;
    nn_linear_backward(dquery, dwq, dbq, dq, query, in_proj_weight, B * Tq, C, C);
    nn_linear_backward(dkey, dwk, dbk, dk, key, in_proj_weight + CC, B * Tk, C, C);
    nn_linear_backward(dvalue, dwv, dbv, dv, value, in_proj_weight + 2 * CC, B * Tk, C, C);
}
