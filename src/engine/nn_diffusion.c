/* nn_diffusion — GroupNorm, SiLU, GELU by mode, GEGLU, nearest 2× upsampling, the timestep
 * embedding, channel concat/split and the MSE loss. See nn_diffusion.h; conv2d is in
 * nn_diffusion_conv.c.
 *
 * GroupNorm statistics: each channel's HW values are summed in float over eight fixed lanes
 * (so the loop vectorises and the order is fixed), channels are combined in double, and the
 * variance takes a second pass around the mean. The forward splits (image, group) pairs over
 * the pool; the backward splits groups, each task running over the images in order, so a task
 * owns its channels' dweight/dbias and no two threads ever add to the same element.
 */
#include "nn_diffusion.h"

#include <math.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_activation.h"
#include "nn_clip.h"

#define POINTWISE_GRAIN 16384
#define INLINE __attribute__((always_inline))

/* ---- GroupNorm ------------------------------------------------------------------------------- */

/* Σ x[i] in eight fixed lanes, then the lanes in order. */
static inline INLINE float sum_lanes(const float *x, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += x[i + l];
    for (; i < n; i++)
        acc[i & 7] += x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Σ (x[i] − m)² likewise. */
static inline INLINE float sqdev_lanes(const float *x, int n, float m) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            float d = x[i + l] - m;
            acc[l] += d * d;
        }
    for (; i < n; i++) {
        float d = x[i] - m;
        acc[i & 7] += d * d;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

typedef struct GnJob {
    float *out, *mean, *rstd;
    float *dinp, *dweight, *dbias;
    const float *inp, *weight, *bias, *dout;
    const float *cmean, *crstd;
    int B, C, HW, G;
    float eps;
} GnJob;

static inline INLINE void gn_fwd_body(void *ctx, int64_t i0, int64_t i1) {
    const GnJob *j = ctx;
    int cg = j->C / j->G, HW = j->HW;
    for (int64_t i = i0; i < i1; i++) { /* i = b·G + g */
        size_t base = (size_t)i * cg * HW;
        const float *x = j->inp + base;
        double s = 0.0;
        for (int c = 0; c < cg; c++)
            s += sum_lanes(x + (size_t)c * HW, HW);
        double n = (double)cg * HW;
        float m = (float)(s / n);
        double v = 0.0;
        for (int c = 0; c < cg; c++)
            v += sqdev_lanes(x + (size_t)c * HW, HW, m);
        float rs = (float)(1.0 / sqrt(v / n + (double)j->eps));
        int c0 = (int)(i % j->G) * cg;
        for (int c = 0; c < cg; c++) {
            float w = j->weight ? j->weight[c0 + c] : 1.0f;
            float bb = j->bias ? j->bias[c0 + c] : 0.0f;
            float scale = rs * w;
            const float *xc = x + (size_t)c * HW;
            float *o = j->out + base + (size_t)c * HW;
            for (int p = 0; p < HW; p++)
                o[p] = (xc[p] - m) * scale + bb;
        }
        j->mean[i] = m;
        j->rstd[i] = rs;
    }
}


static inline INLINE void gn_bwd_body(void *ctx, int64_t g0, int64_t g1) {
    const GnJob *j = ctx;
    int cg = j->C / j->G, HW = j->HW, G = j->G;
    for (int64_t g = g0; g < g1; g++) {
        int c0 = (int)g * cg;
        for (int b = 0; b < j->B; b++) {
            size_t base = ((size_t)b * j->C + c0) * HW;
            const float *x = j->inp + base, *d = j->dout + base;
            float m = j->cmean[b * G + g], rs = j->crstd[b * G + g];
            double sum_dn = 0.0, sum_dn_xh = 0.0;
            for (int c = 0; c < cg; c++) {
                const float *xc = x + (size_t)c * HW, *dc = d + (size_t)c * HW;
                float acc_d[8] = {0}, acc_dx[8] = {0};
                int p = 0;
                for (; p + 8 <= HW; p += 8)
                    for (int l = 0; l < 8; l++) {
                        acc_d[l] += dc[p + l];
                        acc_dx[l] += dc[p + l] * ((xc[p + l] - m) * rs);
                    }
                for (; p < HW; p++) {
                    acc_d[p & 7] += dc[p];
                    acc_dx[p & 7] += dc[p] * ((xc[p] - m) * rs);
                }
                float sd = 0.0f, sdx = 0.0f;
                for (int l = 0; l < 8; l++)
                    sd += acc_d[l], sdx += acc_dx[l];
                if (j->dbias)
                    j->dbias[c0 + c] += sd;
                if (j->dweight)
                    j->dweight[c0 + c] += sdx;
                float w = j->weight ? j->weight[c0 + c] : 1.0f;
                sum_dn += (double)sd * w;
                sum_dn_xh += (double)sdx * w;
            }
            if (!j->dinp)
                continue;
            double n = (double)cg * HW;
            float mdn = (float)(sum_dn / n), mdnx = (float)(sum_dn_xh / n);
            for (int c = 0; c < cg; c++) {
                const float *xc = x + (size_t)c * HW, *dc = d + (size_t)c * HW;
                float *di = j->dinp + base + (size_t)c * HW;
                float w = j->weight ? j->weight[c0 + c] : 1.0f;
                for (int p = 0; p < HW; p++) {
                    float xh = (xc[p] - m) * rs;
                    di[p] += (dc[p] * w - mdn - xh * mdnx) * rs;
                }
            }
        }
    }
}

/* The GroupNorm loops compiled twice, for AVX2 (vectorised) and for the x86-64 baseline, and
 * picked at run time. Both do the same IEEE operations in the same order — lanes are fixed,
 * and -std=c11 keeps GCC from contracting a·b + c into an FMA — so they give the same bits. */
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("tree-vectorize")
static void gn_fwd_avx2(void *ctx, int64_t a, int64_t b) { gn_fwd_body(ctx, a, b); }
static void gn_bwd_avx2(void *ctx, int64_t a, int64_t b) { gn_bwd_body(ctx, a, b); }
#pragma GCC pop_options
#endif
static void gn_fwd_base(void *ctx, int64_t a, int64_t b) { gn_fwd_body(ctx, a, b); }
static void gn_bwd_base(void *ctx, int64_t a, int64_t b) { gn_bwd_body(ctx, a, b); }

static int have_avx2(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static CpuRangeFn gn_pick(int backward) {
#if defined(__x86_64__)
    if (have_avx2())
        return backward ? gn_bwd_avx2 : gn_fwd_avx2;
#endif
    return backward ? gn_bwd_base : gn_fwd_base;
}

void nn_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int B, int C, int HW, int G,
                          float eps) {
    ASSERT(G > 0 && C % G == 0);
    GnJob j = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .weight = weight,
               .bias = bias, .B = B, .C = C, .HW = HW, .G = G, .eps = eps};
    int64_t per = (int64_t)(C / G) * HW;
    backend_cpu_parallel_for((int64_t)B * G, 1 + 16384 / (per ? per : 1), gn_pick(0), &j);
}

void nn_groupnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, int B, int C, int HW, int G) {
    ASSERT(G > 0 && C % G == 0);
    if (!dinp && !dweight && !dbias)
        return;
    GnJob j = {.dinp = dinp, .dweight = dweight, .dbias = dbias, .inp = inp, .weight = weight,
               .dout = dout, .cmean = mean, .crstd = rstd, .B = B, .C = C, .HW = HW, .G = G};
    int64_t per = (int64_t)B * (C / G) * HW;
    backend_cpu_parallel_for(G, 1 + 16384 / (per ? per : 1), gn_pick(1), &j);
}

/* ---- activations ----------------------------------------------------------------------------- */

typedef struct PwJob {
    float *out;
    const float *inp, *dout;
    int C;
    NnGelu mode;
} PwJob;

/* The forward is nn_clip's vectorised x·σ(x) (exp of its own, AVX-512 or AVX2 where the CPU
 * has it; within 1e-6 relative of x·nn_sigmoidf(x), the backward's form): libm's expf per
 * element was a sixth of a VAE decode. */
static void silu_fwd(void *ctx, int64_t i0, int64_t i1) {
    const PwJob *j = ctx;
    nn_clip_silu_forward(j->out + i0, j->inp + i0, (size_t)(i1 - i0));
}

static void silu_bwd(void *ctx, int64_t i0, int64_t i1) {
    const PwJob *j = ctx;
    for (int64_t i = i0; i < i1; i++) {
        float x = j->inp[i], sg = nn_sigmoidf(x);
        j->out[i] += j->dout[i] * sg * (1.0f + x * (1.0f - sg));
    }
}

void nn_silu_forward(float *out, const float *inp, size_t n) {
    PwJob j = {.out = out, .inp = inp};
    backend_cpu_parallel_for((int64_t)n, POINTWISE_GRAIN, silu_fwd, &j);
}

void nn_silu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    PwJob j = {.out = dinp, .inp = inp, .dout = dout};
    backend_cpu_parallel_for((int64_t)n, POINTWISE_GRAIN, silu_bwd, &j);
}

static void gelu_fwd(void *ctx, int64_t i0, int64_t i1) {
    const PwJob *j = ctx;
    size_t n = (size_t)(i1 - i0);
    if (j->mode == NN_GELU_TANH)
        nn_gelu_tanh_forward(j->out + i0, j->inp + i0, n);
    else
        nn_gelu_forward(j->out + i0, j->inp + i0, n);
}

static void gelu_bwd(void *ctx, int64_t i0, int64_t i1) {
    const PwJob *j = ctx;
    size_t n = (size_t)(i1 - i0);
    if (j->mode == NN_GELU_TANH)
        nn_gelu_tanh_backward(j->out + i0, j->dout + i0, j->inp + i0, n);
    else
        nn_gelu_backward(j->out + i0, j->dout + i0, j->inp + i0, n);
}

void nn_gelu_mode_forward(float *out, const float *inp, size_t n, NnGelu mode) {
    PwJob j = {.out = out, .inp = inp, .mode = mode};
    backend_cpu_parallel_for((int64_t)n, POINTWISE_GRAIN, gelu_fwd, &j);
}

void nn_gelu_mode_backward(float *dinp, const float *dout, const float *inp, size_t n,
                           NnGelu mode) {
    PwJob j = {.out = dinp, .inp = inp, .dout = dout, .mode = mode};
    backend_cpu_parallel_for((int64_t)n, POINTWISE_GRAIN, gelu_bwd, &j);
}

#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f
#define GELU_K 0.7978845608028654f /* √(2/π) */

/* gelu(x) and gelu'(x) in the chosen form (the same formulas as nn_activation.c). */
static inline void gelu_pair(float x, NnGelu mode, float *g, float *dg) {
    if (mode == NN_GELU_TANH) {
        float t = tanhf(GELU_K * (x + 0.044715f * x * x * x));
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        *g = 0.5f * x * (1.0f + t);
        *dg = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    } else {
        float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
        *g = x * cdf;
        *dg = cdf + x * INV_SQRT_2PI * expf(-0.5f * x * x);
    }
}

/* The erf form's forward is a·gelu(gate) with nn_clip's vectorised GELU (as nn_gelu_forward;
 * within 3e-7·|x| of the erff form, the backward's): libm's erff and the unused expf of
 * gelu_pair were most of GEGLU's time in a UNet step. */
static void geglu_fwd(void *ctx, int64_t n0, int64_t n1) {
    const PwJob *j = ctx;
    int C = j->C;
    for (int64_t n = n0; n < n1; n++) {
        const float *a = j->inp + n * 2 * C, *gate = a + C;
        float *o = j->out + n * C;
        if (j->mode == NN_GELU_ERF) {
            nn_clip_gelu_forward(o, gate, (size_t)C);
            for (int c = 0; c < C; c++)
                o[c] = a[c] * o[c];
            continue;
        }
        for (int c = 0; c < C; c++) {
            float g, dg;
            gelu_pair(gate[c], j->mode, &g, &dg);
            o[c] = a[c] * g;
        }
    }
}

static void geglu_bwd(void *ctx, int64_t n0, int64_t n1) {
    const PwJob *j = ctx;
    int C = j->C;
    for (int64_t n = n0; n < n1; n++) {
        const float *a = j->inp + n * 2 * C, *gate = a + C, *d = j->dout + n * C;
        float *da = j->out + n * 2 * C, *dgate = da + C;
        for (int c = 0; c < C; c++) {
            float g, dg;
            gelu_pair(gate[c], j->mode, &g, &dg);
            da[c] += d[c] * g;
            dgate[c] += d[c] * a[c] * dg;
        }
    }
}

void nn_geglu_forward(float *out, const float *inp, int N, int C, NnGelu mode) {
    ASSERT(out != inp);
    PwJob j = {.out = out, .inp = inp, .C = C, .mode = mode};
    backend_cpu_parallel_for(N, 1 + POINTWISE_GRAIN / (C ? C : 1), geglu_fwd, &j);
}

void nn_geglu_backward(float *dinp, const float *dout, const float *inp, int N, int C,
                       NnGelu mode) {
    PwJob j = {.out = dinp, .inp = inp, .dout = dout, .C = C, .mode = mode};
    backend_cpu_parallel_for(N, 1 + POINTWISE_GRAIN / (C ? C : 1), geglu_bwd, &j);
}

/* ---- upsampling ------------------------------------------------------------------------------ */

typedef struct UpJob {
    float *out;
    const float *inp;
    int H, W;
} UpJob;

static void up_fwd(void *ctx, int64_t p0, int64_t p1) {
    const UpJob *j = ctx;
    int H = j->H, W = j->W;
    for (int64_t p = p0; p < p1; p++) { /* one (b, c) plane */
        const float *x = j->inp + (size_t)p * H * W;
        float *o = j->out + (size_t)p * 4 * H * W;
        for (int y = 0; y < H; y++) {
            float *r0 = o + (size_t)(2 * y) * 2 * W, *r1 = r0 + 2 * W;
            for (int xx = 0; xx < W; xx++) {
                float v = x[(size_t)y * W + xx];
                r0[2 * xx] = v;
                r0[2 * xx + 1] = v;
            }
            memcpy(r1, r0, (size_t)2 * W * sizeof(float));
        }
    }
}

static void up_bwd(void *ctx, int64_t p0, int64_t p1) {
    const UpJob *j = ctx;
    int H = j->H, W = j->W;
    for (int64_t p = p0; p < p1; p++) {
        float *dx = j->out + (size_t)p * H * W;
        const float *d = j->inp + (size_t)p * 4 * H * W;
        for (int y = 0; y < H; y++) {
            const float *r0 = d + (size_t)(2 * y) * 2 * W, *r1 = r0 + 2 * W;
            for (int xx = 0; xx < W; xx++)
                dx[(size_t)y * W + xx] +=
                    (r0[2 * xx] + r0[2 * xx + 1]) + (r1[2 * xx] + r1[2 * xx + 1]);
        }
    }
}

void nn_upsample2x_forward(float *out, const float *inp, int B, int C, int H, int W) {
    ASSERT(out != inp);
    UpJob j = {out, inp, H, W};
    backend_cpu_parallel_for((int64_t)B * C, 1 + 16384 / (4 * H * W + 1), up_fwd, &j);
}

void nn_upsample2x_backward(float *dinp, const float *dout, int B, int C, int H, int W) {
    UpJob j = {dinp, dout, H, W};
    backend_cpu_parallel_for((int64_t)B * C, 1 + 16384 / (4 * H * W + 1), up_bwd, &j);
}

/* ---- timestep embedding ---------------------------------------------------------------------- */

void nn_timestep_embedding_forward(float *out, const float *timesteps, int N, int dim,
                                   int flip_sin_to_cos, float downscale_freq_shift, float scale,
                                   float max_period) {
    int half = dim / 2;
    /* the same f32 steps as diffusers: −ln(max_period)·i, / (half − shift), exp, ·t, ·scale */
    float neg_log = (float)-log((double)max_period);
    float den = (float)half - downscale_freq_shift;
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * dim;
        float t = timesteps[n];
        for (int i = 0; i < half; i++) {
            float f = expf(neg_log * (float)i / den);
            float a = scale * (t * f);
            float sn = sinf(a), cs = cosf(a);
            o[i] = flip_sin_to_cos ? cs : sn;
            o[half + i] = flip_sin_to_cos ? sn : cs;
        }
        if (dim % 2)
            o[dim - 1] = 0.0f;
    }
}

/* ---- channel concat / split ------------------------------------------------------------------ */

void nn_channel_concat_forward(float *out, const float *a, const float *b, int B, int Ca,
                               int Cb, int HW) {
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
    for (int i = 0; i < B; i++) {
        memcpy(out + i * (na + nb), a + i * na, na * sizeof(float));
        memcpy(out + i * (na + nb) + na, b + i * nb, nb * sizeof(float));
    }
}

static void add_into(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

void nn_channel_concat_backward(float *da, float *db, const float *dout, int B, int Ca, int Cb,
                                int HW) {
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
    for (int i = 0; i < B; i++) {
        if (da)
            add_into(da + i * na, dout + i * (na + nb), na);
        if (db)
            add_into(db + i * nb, dout + i * (na + nb) + na, nb);
    }
}

void nn_channel_split_forward(float *a, float *b, const float *inp, int B, int Ca, int Cb,
                              int HW) {
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
    for (int i = 0; i < B; i++) {
        if (a)
            memcpy(a + i * na, inp + i * (na + nb), na * sizeof(float));
        if (b)
            memcpy(b + i * nb, inp + i * (na + nb) + na, nb * sizeof(float));
    }
}

void nn_channel_split_backward(float *dinp, const float *da, const float *db, int B, int Ca,
                               int Cb, int HW) {
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
    for (int i = 0; i < B; i++) {
        if (da)
            add_into(dinp + i * (na + nb), da + i * na, na);
        if (db)
            add_into(dinp + i * (na + nb) + na, db + i * nb, nb);
    }
}

/* ---- MSE loss -------------------------------------------------------------------------------- */

float nn_mse_loss_forward(const float *pred, const float *target, size_t n) {
    ASSERT(n > 0);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)pred[i] - target[i];
        s += d * d;
    }
    return (float)(s / (double)n);
}

void nn_mse_loss_backward(float *dpred, float *dtarget, float dloss, const float *pred,
                          const float *target, size_t n) {
    float k = 2.0f * dloss / (float)n;
    for (size_t i = 0; i < n; i++) {
        float g = k * (pred[i] - target[i]);
        if (dpred)
            dpred[i] += g;
        if (dtarget)
            dtarget[i] -= g;
    }
}
