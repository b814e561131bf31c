/* nn_clip — see nn_clip.h.
 *
 * Why A&S 7.1.26 and not a longer rational erf: the model's tolerance against PyTorch is
 * 1e-4 on unit-norm embeddings, and 1.5e-7 on erf is below f32 rounding of the activations
 * that feed it; the formula needs one exp and one division, both vectorisable.
 */
#include "nn_clip.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "nn_sgemm.h"

/* The loops below only vectorise with if-conversion of non-trapping float code. */
#pragma GCC optimize("O3", "no-trapping-math")

#define BLOCK 256

/* One element: out = ½x(1 + erf(x/√2)). erf(z) = 1 − poly(t)·e^(−z²), t = 1/(1 + p z) (A&S
 * 7.1.26). e^y for y = −z² clamped to [−87, 0] (on the bit pattern: an integer select):
 * y = n·ln2 + r with n rounded by the 1.5·2^23 trick, e^r by Taylor to r^6, 2^n put in the
 * exponent field. Written as a macro so each compiled copy below inlines it. */
#define EXP_NEG(y, dst)                                                                    \
    do {                                                                                   \
        float y_ = (y);                                                                    \
        uint32_t yb_;                                                                      \
        memcpy(&yb_, &y_, 4);                                                              \
        yb_ = (yb_ & 0x7fffffffu) > 0x42ae0000u ? 0xc2ae0000u : yb_;                       \
        memcpy(&y_, &yb_, 4);                                                              \
        float n_ = (y_ * 1.44269504f + 12582912.0f) - 12582912.0f;                         \
        float r_ = y_ - n_ * 0.693145752f;                                                 \
        r_ = r_ - n_ * 1.42860677e-6f;                                                     \
        float p_ = 1.0f + r_ * (1.0f + r_ * (0.5f + r_ * (0.166666672f + r_ *              \
                   (0.0416666679f + r_ * (0.00833333377f + r_ * 0.00138888892f)))));       \
        uint32_t sb_ = (uint32_t)((int32_t)n_ + 127) << 23;                                \
        float s_;                                                                          \
        memcpy(&s_, &sb_, 4);                                                              \
        (dst) = p_ * s_;                                                                   \
    } while (0)

#define GELU_ONE(x, dst)                                                                   \
    do {                                                                                   \
        float z_ = fabsf(x) * 0.707106781f;                                                \
        float t_ = 1.0f / (1.0f + 0.3275911f * z_);                                        \
        float poly_ = t_ * (0.254829592f + t_ * (-0.284496736f + t_ * (1.421413741f +      \
                      t_ * (-1.453152027f + t_ * 1.061405429f))));                         \
        float e_;                                                                          \
        EXP_NEG(-z_ * z_, e_);                                                             \
        float erf_ = 1.0f - poly_ * e_;                                                    \
        (dst) = 0.5f * (x) * (1.0f + copysignf(erf_, (x)));                               \
    } while (0)

/* QuickGELU x·σ(1.702x): with e = e^(−1.702|x|), σ = 1/(1+e) for x >= 0 and e/(1+e) below. */
#define QUICKGELU_ONE(x, dst)                                                              \
    do {                                                                                   \
        float e_;                                                                          \
        EXP_NEG(-1.702f * fabsf(x), e_);                                                   \
        float pos_ = 0.5f + copysignf(0.5f, (x)); /* 1 for x >= +0, else 0 */              \
        (dst) = (x) * (pos_ + (1.0f - pos_) * e_) / (1.0f + e_);                           \
    } while (0)

/* SiLU x·σ(x) (perf15: the UNet's and the VAE's activation), QuickGELU's form with 1 for
 * 1.702: with e = e^(−|x|), σ = 1/(1+e) for x >= 0 and e/(1+e) below. */
#define SILU_ONE(x, dst)                                                                   \
    do {                                                                                   \
        float e_;                                                                          \
        EXP_NEG(-fabsf(x), e_);                                                            \
        float pos_ = 0.5f + copysignf(0.5f, (x)); /* 1 for x >= +0, else 0 */              \
        (dst) = (x) * (pos_ + (1.0f - pos_) * e_) / (1.0f + e_);                           \
    } while (0)

#define BODY(ONE)                                                                          \
    for (int i = 0; i < n; i++) {                                                          \
        float x = inp[i];                                                                  \
        ONE(x, out[i]);                                                                    \
    }

/* The same loops compiled three times: for AVX-512, for AVX2 + FMA, and for the x86-64
 * baseline (or any other CPU); the public functions pick one at run time. C11 mode does not
 * contract a·b + c into an FMA, so the three give the same bits. */
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
static void gelu_avx2(float *restrict out, const float *restrict inp, int n) { BODY(GELU_ONE) }
static void quick_avx2(float *restrict out, const float *restrict inp, int n) {
    BODY(QUICKGELU_ONE)
}
static void silu_avx2(float *restrict out, const float *restrict inp, int n) { BODY(SILU_ONE) }
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
__attribute__((target("avx512f,fma"))) static void silu_avx512(float *restrict out,
                                                               const float *restrict inp, int n) {
    BODY(SILU_ONE)
}
__attribute__((target("avx512f,fma"))) static void gelu_avx512(float *restrict out,
                                                               const float *restrict inp, int n) {
    BODY(GELU_ONE)
}
__attribute__((target("avx512f,fma"))) static void quick_avx512(float *restrict out,
                                                                const float *restrict inp,
                                                                int n) {
    BODY(QUICKGELU_ONE)
}
#pragma GCC pop_options
#endif

static void gelu_base(float *restrict out, const float *restrict inp, int n) { BODY(GELU_ONE) }
static void quick_base(float *restrict out, const float *restrict inp, int n) {
    BODY(QUICKGELU_ONE)
}

static void silu_base(float *restrict out, const float *restrict inp, int n) { BODY(SILU_ONE) }

typedef void (*BlockFn)(float *restrict, const float *restrict, int);

static void run_blocks(float *out, const float *inp, size_t n, BlockFn wide, BlockFn fast,
                       BlockFn base) {
#if defined(__x86_64__)
    BlockFn fn = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? fast : base;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
        fn = wide;
#else
    BlockFn fn = base;
    (void)fast, (void)wide;
#endif
    float tmp[BLOCK];
    for (size_t i = 0; i < n; i += BLOCK) {
        int k = (int)(n - i < BLOCK ? n - i : BLOCK);
        const float *src = inp + i;
        if (out == inp) { /* the blocks take restrict pointers: work from a copy */
            memcpy(tmp, inp + i, (size_t)k * sizeof(float));
            src = tmp;
        }
        fn(out + i, src, k);
    }
}

void nn_clip_gelu_forward(float *out, const float *inp, size_t n) {
#if defined(__x86_64__)
    run_blocks(out, inp, n, gelu_avx512, gelu_avx2, gelu_base);
#else
    run_blocks(out, inp, n, NULL, NULL, gelu_base);
#endif
}

void nn_clip_quickgelu_forward(float *out, const float *inp, size_t n) {
#if defined(__x86_64__)
    run_blocks(out, inp, n, quick_avx512, quick_avx2, quick_base);
#else
    run_blocks(out, inp, n, NULL, NULL, quick_base);
#endif
}

void nn_clip_silu_forward(float *out, const float *inp, size_t n) {
#if defined(__x86_64__)
    run_blocks(out, inp, n, silu_avx512, silu_avx2, silu_base);
#else
    run_blocks(out, inp, n, NULL, NULL, silu_base);
#endif
}

void nn_clip_bf16_to_f32(float *restrict out, const uint16_t *restrict inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)inp[i] << 16;
        memcpy(&out[i], &u, 4);
    }
}

void nn_clip_f32_to_bf16(uint16_t *restrict out, const float *restrict inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &inp[i], 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it one, quiet */
            out[i] = (uint16_t)((u >> 16) | 0x40u);
        else
            out[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

#define SLAB 128 /* output columns per parallel unit (and per widened bf16 tile) */

typedef struct LinJob {
    float *out;
    const float *inp, *w, *bias;
    const uint16_t *wh;
    float *wbuf;
    int N, K, O;
    NnClipAct act;
} LinJob;

/* The activation over columns [c0, c1) of every row: run by the thread that just computed
 * them, while they are in its cache. */
static void lin_act(const LinJob *j, int c0, int c1) {
    if (j->act == NN_CLIP_ACT_NONE)
        return;
    for (int n = 0; n < j->N; n++) {
        float *o = j->out + (size_t)n * j->O + c0;
        if (j->act == NN_CLIP_ACT_QUICKGELU)
            nn_clip_quickgelu_forward(o, o, (size_t)(c1 - c0));
        else
            nn_clip_gelu_forward(o, o, (size_t)(c1 - c0));
    }
}

/* Columns [j0, j1): bias rows, then the product (beta 1 over the bias, else 0). */
static void lin_cols(const LinJob *j, const float *w, int j0, int j1) {
    if (j->bias)
        for (int n = 0; n < j->N; n++)
            memcpy(j->out + (size_t)n * j->O + j0, j->bias + j0, (size_t)(j1 - j0) * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->N, j1 - j0, j->K, 1.0f, j->inp,
                j->K, w + (size_t)j0 * j->K, j->K, j->bias ? 1.0f : 0.0f, j->out + j0, j->O);
}

/* N columns of out (at t->out, row stride t->O) = inp · Wᵀ (+ bias at t->bias), W the
 * (N, K) tile. */
static void lin_cols_ld(const LinJob *t, const float *w, int n) {
    if (t->bias)
        for (int r = 0; r < t->N; r++)
            memcpy(t->out + (size_t)r * t->O, t->bias, (size_t)n * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t->N, n, t->K, 1.0f, t->inp, t->K, w,
                t->K, t->bias ? 1.0f : 0.0f, t->out, t->O);
}

static void lin_range(void *ctx, int64_t s0, int64_t s1) {
    const LinJob *j = ctx;
    int c0 = (int)s0 * SLAB, c1 = (int)(s1 * SLAB < j->O ? s1 * SLAB : j->O);
    if (nn_sgemm_available()) { /* bias rows, then the product over them (beta 1) */
        if (j->bias)
            for (int n = 0; n < j->N; n++)
                memcpy(j->out + (size_t)n * j->O + c0, j->bias + c0,
                       (size_t)(c1 - c0) * sizeof(float));
        NnGemmB b = {j->w ? j->w + (size_t)c0 * j->K : NULL,
                     j->wh ? j->wh + (size_t)c0 * j->K : NULL, j->K, 1};
        nn_sgemm_block(j->N, c1 - c0, j->K, j->inp, j->K, 0, &b, 1.0f, j->bias ? 1.0f : 0.0f,
                       j->out + c0, j->O);
        lin_act(j, c0, c1);
        return;
    }
    if (!j->wh) {
        lin_cols(j, j->w, c0, c1);
        lin_act(j, c0, c1);
        return;
    }
    /* no WBUF (the CPU backend passes none): one slab's tile of our own; the columns'
     * pointer is offset back so lin_cols indexes the tile by absolute column */
    float *tile = j->wbuf ? NULL : malloc((size_t)SLAB * (size_t)j->K * sizeof(float));
    for (int a = c0; a < c1; a += SLAB) {
        int b = a + SLAB < c1 ? a + SLAB : c1;
        float *dst = tile ? tile : j->wbuf ? j->wbuf + (size_t)a * j->K : NULL;
        if (!dst)
            break; /* out of memory: the caller's outputs stay as they were */
        nn_clip_bf16_to_f32(dst, j->wh + (size_t)a * j->K, (size_t)(b - a) * (size_t)j->K);
        if (tile) {
            LinJob t = *j;
            t.out = j->out + a, t.bias = j->bias ? j->bias + a : NULL, t.O = j->O;
            lin_cols_ld(&t, tile, b - a);
        } else {
            lin_cols(j, j->wbuf, a, b);
        }
    }
    free(tile);
    lin_act(j, c0, c1);
}

int nn_clip_linear_avx512(void) { return nn_sgemm_available(); }

void nn_clip_linear_forward(float *out, const float *inp, const float *w, const uint16_t *wh,
                            const float *bias, float *wbuf, int N, int K, int O) {
    nn_clip_linear_act_forward(out, inp, w, wh, bias, wbuf, N, K, O, NN_CLIP_ACT_NONE);
}

void nn_clip_linear_act_forward(float *out, const float *inp, const float *w,
                                const uint16_t *wh, const float *bias, float *wbuf, int N, int K,
                                int O, NnClipAct act) {
    if (N <= 0 || O <= 0)
        return;
    LinJob j = {out, inp, w, bias, wh, wbuf, N, K, O, act};
    int64_t n_slabs = (O + SLAB - 1) / SLAB;
    int64_t grain = (int64_t)N * O * K < 64 * 1024 ? n_slabs : 1;
    if (nn_sgemm_available()) /* slabs taken in turn: the same bits whoever takes them */
        backend_cpu_parallel_dynamic(n_slabs, grain, lin_range, &j);
    else
        backend_cpu_parallel_for(n_slabs, grain, lin_range, &j);
}
