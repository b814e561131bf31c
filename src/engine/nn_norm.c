/* nn_norm — LayerNorm and L2 normalisation. See nn_norm.h.
 *
 * LayerNorm statistics accumulate in double (two passes), so rows of large magnitude lose no
 * precision; in 8 fixed lanes, so that the loops vectorise with the same bits on every CPU.
 * The backward computes dinp row-parallel and dweight/dbias column-parallel: each parameter
 * gradient sums its rows in order on one thread, so it is deterministic.
 */
#include "nn_norm.h"

#include <math.h>
#include <stddef.h>

#include "backend_cpu.h"

typedef struct LnJob {
    float *out, *mean, *rstd;
    const float *inp, *weight, *bias;
    int C;
    float eps;
} LnJob;

/* Row sums in 8 fixed double lanes added in a fixed order (so the loops vectorise and the
 * result does not depend on the CPU's vector width), the tail after them. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define LN_VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LN_VEC
#endif

static LN_VEC void ln_row(float *restrict o, float *mean, float *rstd, const float *restrict x,
                          const float *restrict w, const float *restrict b, int C, float eps) {
    int C8 = C / 8 * 8;
    double s8[8] = {0};
    for (int c = 0; c < C8; c += 8)
        for (int l = 0; l < 8; l++)
            s8[l] += x[c + l];
    double s = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
    for (int c = C8; c < C; c++)
        s += x[c];
    double m = s / C;
    double v8[8] = {0};
    for (int c = 0; c < C8; c += 8)
        for (int l = 0; l < 8; l++) {
            double d = x[c + l] - m;
            v8[l] += d * d;
        }
    double v = ((v8[0] + v8[1]) + (v8[2] + v8[3])) + ((v8[4] + v8[5]) + (v8[6] + v8[7]));
    for (int c = C8; c < C; c++) {
        double d = x[c] - m;
        v += d * d;
    }
    v /= C;
    float fm = (float)m;
    float rs = (float)(1.0 / sqrt(v + (double)eps));
    if (w && b)
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - fm) * rs * w[c] + b[c];
    else if (w)
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - fm) * rs * w[c];
    else if (b)
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - fm) * rs + b[c];
    else
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - fm) * rs;
    *mean = fm;
    *rstd = rs;
}

static void ln_rows(void *ctx, int64_t n0, int64_t n1) {
    const LnJob *j = ctx;
    int C = j->C;
    for (int64_t n = n0; n < n1; n++)
        ln_row(j->out + n * C, &j->mean[n], &j->rstd[n], j->inp + n * C, j->weight, j->bias, C,
               j->eps);
}

void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int N, int C, float eps) {
    LnJob j = {out, mean, rstd, inp, weight, bias, C, eps};
    backend_cpu_parallel_for(N, 1 + 8192 / (C ? C : 1), ln_rows, &j);
}

typedef struct LnBackJob {
    float *dinp, *dweight, *dbias;
    const float *dout, *inp, *weight, *mean, *rstd;
    int N, C;
} LnBackJob;

static void ln_back_rows(void *ctx, int64_t n0, int64_t n1) {
    const LnBackJob *j = ctx;
    int C = j->C;
    for (int64_t n = n0; n < n1; n++) {
        const float *x = j->inp + n * C, *d = j->dout + n * C;
        float m = j->mean[n], rs = j->rstd[n];
        float sum_dn = 0.0f, sum_dn_xh = 0.0f;
        for (int c = 0; c < C; c++) {
            float xh = (x[c] - m) * rs;
            float dn = d[c] * (j->weight ? j->weight[c] : 1.0f);
            sum_dn += dn;
            sum_dn_xh += dn * xh;
        }
        sum_dn /= C;
        sum_dn_xh /= C;
        float *di = j->dinp + n * C;
        for (int c = 0; c < C; c++) {
            float xh = (x[c] - m) * rs;
            float dn = d[c] * (j->weight ? j->weight[c] : 1.0f);
            di[c] += (dn - sum_dn - xh * sum_dn_xh) * rs;
        }
    }
}

static void ln_back_cols(void *ctx, int64_t c0, int64_t c1) {
    const LnBackJob *j = ctx;
    int C = j->C;
    for (int n = 0; n < j->N; n++) {
        const float *x = j->inp + (size_t)n * C, *d = j->dout + (size_t)n * C;
        float m = j->mean[n], rs = j->rstd[n];
        for (int64_t c = c0; c < c1; c++) {
            if (j->dweight)
                j->dweight[c] += d[c] * (x[c] - m) * rs;
            if (j->dbias)
                j->dbias[c] += d[c];
        }
    }
}

void nn_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, int N, int C) {
    LnBackJob j = {dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C};
    if (dinp)
        backend_cpu_parallel_for(N, 1 + 8192 / (C ? C : 1), ln_back_rows, &j);
    if (dweight || dbias)
        backend_cpu_parallel_for(C, 1 + 8192 / (N ? N : 1), ln_back_cols, &j);
}

void nn_l2norm_forward(float *out, float *norm, const float *inp, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double s = 0.0;
        for (int c = 0; c < C; c++)
            s += (double)x[c] * x[c];
        float nr = (float)sqrt(s);
        float den = nr > eps ? nr : eps;
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++)
            o[c] = x[c] / den;
        norm[n] = nr;
    }
}

void nn_l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm,
                        int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * C, *y = out + (size_t)n * C;
        float *di = dinp + (size_t)n * C;
        if (norm[n] > eps) {
            /* y = x/‖x‖: dx = (dy − y·(y·dy)) / ‖x‖ */
            float dot = 0.0f;
            for (int c = 0; c < C; c++)
                dot += d[c] * y[c];
            for (int c = 0; c < C; c++)
                di[c] += (d[c] - y[c] * dot) / norm[n];
        } else {
            for (int c = 0; c < C; c++)
                di[c] += d[c] / eps;
        }
    }
}
