/* nn_diffusion_conv — conv2d: im2col + GEMM, Winograd F(2×2,3×3), or direct loops. See
 * nn_diffusion.h.
 *
 * Which path (by shape only): up to CONV_DIRECT_MAX_OC output channels, direct loops; a 3×3
 * stride-1 conv with >= WINO_MIN_CH channels in and out, >= WINO_MIN_IMG_TILES 2×2 output
 * tiles an image (16×16 outputs) and >= WINO_MIN_TILES over the batch (32×32 outputs at
 * batch 1), Winograd for the forward, dinp and dweight; a 1×1
 * stride-1 unpadded conv, one GEMM on the input; everything else im2col + GEMM.
 *
 * Per image, the output pixels are taken in tiles of `tile` columns (a shape-only choice that
 * bounds the scratch to about CONV_SCRATCH_FLOATS); for each tile the input patches are laid
 * out as columns col (C·K·K, tile) and
 *   forward   out[:, tile]  (OC, tile)  = weight (OC, CKK) · col
 *   backward  dweight      (OC, CKK)  += dout[:, tile] · colᵀ
 *             dcol         (CKK, tile) = weightᵀ · dout[:, tile], scattered back (col2im)
 * A 1×1 stride-1 unpadded conv needs no columns: the input (C, HW) already is col, so it is
 * one GEMM on the input.
 *
 * Up to CONV_DIRECT_MAX_OC output channels (a VAE's conv_out to RGB) a GEMM with that few
 * rows runs at a fifth of its rate, so a direct path is taken instead: each output row is
 * built from input rows by vectorised axpy per tap, dinp likewise per input plane, dweight
 * as eight-lane dot products per input channel. Measured at C=128, 256×256 on one thread:
 * 3 output channels 19 ms direct vs 57 ms GEMM forward, 35 vs 123 ms backward; at 8 they
 * are even and at 16 GEMM wins by 1.4×.
 *
 * The forward cuts a tile into chunks of 128–512 columns; one task lays out a chunk's columns
 * and multiplies them at once (single-threaded sgemm), while they are still in cache. The
 * other GEMMs go through conv_gemm: nn_gemm's 128-column slabs, or, where a small map leaves
 * fewer than GEMM_MIN_SLABS of them (the 8×8 and 16×16 levels of a UNet), blocks of rows;
 * there the forward lays out the whole tile first. At 320×64×64 one thread does the forward,
 * dweight and dinp each in 62–66 ms of CPU, about 120 GFLOP/s, OpenBLAS's sgemm rate here.
 *
 * Determinism: chunk and tile widths depend on the shape only; each chunk is one sgemm call
 * of a fixed shape; conv_gemm cuts fixed slabs or row blocks; im2col is split by rows of col;
 * col2im by input channel (a channel's rows of dcol scatter only into that channel of dinp);
 * the direct path by output row, input plane and input channel; bias sums by output channel;
 * tiles and images run in order. Nothing depends on the thread count.
 */
#include "nn_diffusion.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_linear.h"
#include "nn_sgemm.h"

#define CONV_SCRATCH_FLOATS (16u << 20) /* 64 MiB of columns at most (one tile ≥ 128 wide) */
#define CONV_TILE_ALIGN 128             /* = the GEMM's column slab */
#define CONV_DIRECT_MAX_OC 4 /* direct loops up to this many output channels */

/* One single-threaded GEMM of a task, c (M,N) = beta·c + op(a)·op(b), beta 0 or 1: the
 * engine's AVX-512 block where the CPU has it (as nn_gemm's slabs; nn_sgemm.h), else
 * OpenBLAS. The choice depends on the CPU and M only, never on the thread count. */
static void task_sgemm(int ta, int tb, int M, int N, int K, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc) {
    if (M >= 16 && (beta == 0.0f || beta == 1.0f) && nn_sgemm_available()) {
        NnGemmB bd = {b, NULL, ldb, tb};
        nn_sgemm_block(M, N, K, a, lda, ta, &bd, 1.0f, beta, c, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

int nn_conv2d_out_h(const ConvShape *s) { return (s->H + 2 * s->pad - s->K) / s->stride + 1; }
int nn_conv2d_out_w(const ConvShape *s) { return (s->W + 2 * s->pad - s->K) / s->stride + 1; }

static int is_pointwise(const ConvShape *s) {
    return s->K == 1 && s->stride == 1 && s->pad == 0;
}

/* Few output channels (a VAE's conv_out to 3): a GEMM with OC rows runs far below its rate
 * there, and a direct loop over input rows wins (bench numbers in doc/engine.md). */
static int is_direct(const ConvShape *s) {
    return !is_pointwise(s) && s->OC <= CONV_DIRECT_MAX_OC;
}

/* Output columns ox whose tap kx reads inside the input row: [*lo, *hi). */
static void tap_range(const ConvShape *s, int Wo, int kx, int *lo, int *hi) {
    int a = s->pad - kx; /* ix = ox·stride − a >= 0 */
    *lo = a <= 0 ? 0 : (a + s->stride - 1) / s->stride;
    int b = s->W - 1 + a; /* ix <= W − 1 */
    *hi = b < 0 ? 0 : b / s->stride + 1;
    if (*hi > Wo)
        *hi = Wo;
    if (*lo > *hi)
        *lo = *hi;
}

/* Output pixels per tile: all of them when the columns fit, else a multiple of 128. */
static int conv_tile(const ConvShape *s) {
    size_t ckk = (size_t)s->C * s->K * s->K;
    int P = nn_conv2d_out_h(s) * nn_conv2d_out_w(s);
    size_t t = CONV_SCRATCH_FLOATS / (ckk ? ckk : 1);
    t -= t % CONV_TILE_ALIGN;
    if (t < CONV_TILE_ALIGN)
        t = CONV_TILE_ALIGN;
    return (size_t)P < t ? P : (int)t;
}

static size_t wino_scratch(const ConvShape *s);
static int is_winograd(const ConvShape *s);

size_t nn_conv2d_scratch_floats(const ConvShape *s) {
    if (is_pointwise(s) || is_direct(s))
        return 0;
    if (is_winograd(s))
        return wino_scratch(s);
    return (size_t)s->C * s->K * s->K * (size_t)conv_tile(s);
}

typedef struct ColJob {
    float *col;         /* (CKK, np) */
    float *dimg;        /* col2im: dinp of one image (C,H,W) */
    const float *img;   /* im2col: one image (C,H,W) */
    const ConvShape *s;
    int Wo, p0, np;
} ColJob;

/* Rows [r0, r1) of col: row r = (c, ky, kx) holds, for each output pixel p of the tile, the
 * input value its kernel tap (ky, kx) reads, or 0 in the padding. */
static void im2col_rows(void *ctx, int64_t r0, int64_t r1) {
    const ColJob *j = ctx;
    const ConvShape *s = j->s;
    int K = s->K, st = s->stride, H = s->H, W = s->W;
    for (int64_t r = r0; r < r1; r++) {
        int c = (int)(r / (K * K)), ky = (int)(r / K % K), kx = (int)(r % K);
        const float *plane = j->img + (size_t)c * H * W;
        float *dst = j->col + (size_t)r * j->np;
        int oy = j->p0 / j->Wo, ox = j->p0 % j->Wo;
        for (int n = 0; n < j->np;) {
            int run = j->Wo - ox; /* pixels left in this output row */
            if (run > j->np - n)
                run = j->np - n;
            int iy = oy * st - s->pad + ky;
            if (iy < 0 || iy >= H) {
                memset(dst + n, 0, (size_t)run * sizeof(float));
            } else {
                const float *row = plane + (size_t)iy * W;
                for (int q = 0; q < run; q++) {
                    int ix = (ox + q) * st - s->pad + kx;
                    dst[n + q] = ix >= 0 && ix < W ? row[ix] : 0.0f;
                }
            }
            n += run;
            ox = 0;
            oy++;
        }
    }
}

/* Channels [c0, c1) of dimg += the rows of col that belong to them. */
static void col2im_channels(void *ctx, int64_t c0, int64_t c1) {
    const ColJob *j = ctx;
    const ConvShape *s = j->s;
    int K = s->K, st = s->stride, H = s->H, W = s->W;
    for (int64_t c = c0; c < c1; c++) {
        float *plane = j->dimg + (size_t)c * H * W;
        for (int t = 0; t < K * K; t++) {
            int ky = t / K, kx = t % K;
            const float *src = j->col + ((size_t)c * K * K + t) * j->np;
            int oy = j->p0 / j->Wo, ox = j->p0 % j->Wo;
            for (int n = 0; n < j->np;) {
                int run = j->Wo - ox;
                if (run > j->np - n)
                    run = j->np - n;
                int iy = oy * st - s->pad + ky;
                if (iy >= 0 && iy < H) {
                    float *row = plane + (size_t)iy * W;
                    for (int q = 0; q < run; q++) {
                        int ix = (ox + q) * st - s->pad + kx;
                        if (ix >= 0 && ix < W)
                            row[ix] += src[n + q];
                    }
                }
                n += run;
                ox = 0;
                oy++;
            }
        }
    }
}

typedef struct BiasFill {
    float *out;         /* (OC, P) of one image */
    const float *bias;
    int P;
    float *dbias;
    const float *dout;  /* (B, OC, P) */
    int B, OC;
} BiasFill;

static void bias_fill_rows(void *ctx, int64_t o0, int64_t o1) {
    const BiasFill *j = ctx;
    for (int64_t o = o0; o < o1; o++) {
        float *row = j->out + (size_t)o * j->P;
        float b = j->bias[o];
        for (int p = 0; p < j->P; p++)
            row[p] = b;
    }
}

static void bias_sum_rows(void *ctx, int64_t o0, int64_t o1) {
    const BiasFill *j = ctx;
    for (int64_t o = o0; o < o1; o++) {
        double acc = 0.0;
        for (int b = 0; b < j->B; b++) {
            const float *row = j->dout + ((size_t)b * j->OC + o) * j->P;
            float part = 0.0f;
            for (int p = 0; p < j->P; p++)
                part += row[p];
            acc += part;
        }
        j->dbias[o] += (float)acc;
    }
}

/* ---- direct path (few output channels) ------------------------------------------------------- */

/* y[i] += a·x[i], and the eight-lane dot acc[i & 7] += x[i]·y[i]: the direct path's inner
 * loops, compiled twice (AVX2 + FMA, vectorised; and the x86-64 baseline) and picked at run
 * time as nn_clip.c does. Lane assignment and order are the same in both, and -std=c11 keeps
 * GCC from contracting into FMAs, so both give the same bits. */
#define AXPY_BODY                                                                          \
    for (int i = 0; i < n; i++)                                                            \
        y[i] += a * x[i];
#define DOT8_BODY                                                                          \
    int i = 0;                                                                             \
    for (; i + 8 <= n; i += 8)                                                             \
        for (int l = 0; l < 8; l++)                                                        \
            acc[l] += x[i + l] * y[i + l];                                                 \
    for (; i < n; i++)                                                                     \
        acc[i & 7] += x[i] * y[i];

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("tree-vectorize")
static void axpy_avx2(float *restrict y, const float *restrict x, float a, int n) { AXPY_BODY }
static void dot8_avx2(float *restrict acc, const float *restrict x, const float *restrict y,
                      int n) {
    DOT8_BODY
}
#pragma GCC pop_options
#endif
static void axpy_base(float *restrict y, const float *restrict x, float a, int n) { AXPY_BODY }
static void dot8_base(float *restrict acc, const float *restrict x, const float *restrict y,
                      int n) {
    DOT8_BODY
}

typedef void (*AxpyFn)(float *restrict, const float *restrict, float, int);
typedef void (*Dot8Fn)(float *restrict, const float *restrict, const float *restrict, int);

static int have_avx2(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static AxpyFn pick_axpy(void) {
#if defined(__x86_64__)
    if (have_avx2())
        return axpy_avx2;
#endif
    return axpy_base;
}

static Dot8Fn pick_dot8(void) {
#if defined(__x86_64__)
    if (have_avx2())
        return dot8_avx2;
#endif
    return dot8_base;
}

typedef struct DirectJob {
    float *out, *dinp, *dweight;
    const float *inp, *weight, *bias, *dout;
    const ConvShape *s;
    int Ho, Wo;
} DirectJob;

/* Output rows [r0, r1), r = b·Ho + oy, every output channel: out row += w · input row, taps
 * in (c, ky, kx) order. */
static void direct_fwd_rows(void *ctx, int64_t r0, int64_t r1) {
    const DirectJob *j = ctx;
    const ConvShape *s = j->s;
    int K = s->K, st = s->stride, Ho = j->Ho, Wo = j->Wo;
    AxpyFn axpy = pick_axpy();
    for (int64_t r = r0; r < r1; r++) {
        int b = (int)(r / Ho), oy = (int)(r % Ho);
        for (int o = 0; o < s->OC; o++) {
            float *orow = j->out + (((size_t)b * s->OC + o) * Ho + oy) * Wo;
            float v = j->bias ? j->bias[o] : 0.0f;
            for (int ox = 0; ox < Wo; ox++)
                orow[ox] = v;
        }
        for (int c = 0; c < s->C; c++)
            for (int ky = 0; ky < K; ky++) {
                int iy = oy * st - s->pad + ky;
                if (iy < 0 || iy >= s->H)
                    continue;
                const float *irow = j->inp + (((size_t)b * s->C + c) * s->H + iy) * s->W;
                for (int kx = 0; kx < K; kx++) {
                    int lo, hi;
                    tap_range(s, Wo, kx, &lo, &hi);
                    int off = kx - s->pad; /* output ox reads irow[ox·st + off] */
                    for (int o = 0; o < s->OC; o++) {
                        float w = j->weight[(((size_t)o * s->C + c) * K + ky) * K + kx];
                        float *orow = j->out + (((size_t)b * s->OC + o) * Ho + oy) * Wo;
                        if (st == 1)
                            axpy(orow + lo, irow + lo + off, w, hi - lo);
                        else
                            for (int ox = lo; ox < hi; ox++)
                                orow[ox] += w * irow[ox * st + off];
                    }
                }
            }
    }
}

/* Input planes [p0, p1), p = b·C + c: dinp row += w · dout row for every tap that read it,
 * in (oy, ky, kx, o) order. */
static void direct_dinp_planes(void *ctx, int64_t p0, int64_t p1) {
    const DirectJob *j = ctx;
    const ConvShape *s = j->s;
    int K = s->K, st = s->stride, Ho = j->Ho, Wo = j->Wo;
    AxpyFn axpy = pick_axpy();
    for (int64_t p = p0; p < p1; p++) {
        int b = (int)(p / s->C), c = (int)(p % s->C);
        float *plane = j->dinp + (size_t)p * s->H * s->W;
        for (int oy = 0; oy < Ho; oy++)
            for (int ky = 0; ky < K; ky++) {
                int iy = oy * st - s->pad + ky;
                if (iy < 0 || iy >= s->H)
                    continue;
                float *dst = plane + (size_t)iy * s->W;
                for (int kx = 0; kx < K; kx++) {
                    int lo, hi;
                    tap_range(s, Wo, kx, &lo, &hi);
                    int off = kx - s->pad;
                    for (int o = 0; o < s->OC; o++) {
                        float w = j->weight[(((size_t)o * s->C + c) * K + ky) * K + kx];
                        const float *g = j->dout + (((size_t)b * s->OC + o) * Ho + oy) * Wo;
                        if (st == 1)
                            axpy(dst + lo + off, g + lo, w, hi - lo);
                        else
                            for (int ox = lo; ox < hi; ox++)
                                dst[ox * st + off] += w * g[ox];
                    }
                }
            }
    }
}

/* Input channels [c0, c1): dweight[:, c] += Σ over images and output pixels of dout · input,
 * each sum in eight fixed float lanes per image, images added in order. */
static void direct_dweight_channels(void *ctx, int64_t c0, int64_t c1) {
    const DirectJob *j = ctx;
    const ConvShape *s = j->s;
    int K = s->K, st = s->stride, Ho = j->Ho, Wo = j->Wo;
    Dot8Fn dot8 = pick_dot8();
    for (int64_t c = c0; c < c1; c++)
        for (int o = 0; o < s->OC; o++)
            for (int t = 0; t < K * K; t++) {
                int ky = t / K, kx = t % K, lo, hi;
                tap_range(s, Wo, kx, &lo, &hi);
                double total = 0.0;
                for (int b = 0; b < s->B; b++) {
                    float acc[8] = {0};
                    const float *plane = j->inp + ((size_t)b * s->C + c) * s->H * s->W;
                    const float *g = j->dout + ((size_t)b * s->OC + o) * Ho * Wo;
                    for (int oy = 0; oy < Ho; oy++) {
                        int iy = oy * st - s->pad + ky;
                        if (iy < 0 || iy >= s->H)
                            continue;
                        const float *src = plane + (size_t)iy * s->W;
                        int off = kx - s->pad;
                        const float *gr = g + (size_t)oy * Wo;
                        if (st == 1)
                            dot8(acc, gr + lo, src + lo + off, hi - lo);
                        else
                            for (int ox = lo; ox < hi; ox++)
                                acc[ox & 7] += gr[ox] * src[ox * st + off];
                    }
                    total += ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                             ((acc[4] + acc[5]) + (acc[6] + acc[7]));
                }
                j->dweight[(((size_t)o * s->C + c) * K + ky) * K + kx] += (float)total;
            }
}

/* ---- GEMM over the pool ---------------------------------------------------------------------- */

#define GEMM_MIN_SLABS 8 /* fewer 128-column slabs than this: split rows instead */

typedef struct RowGemm {
    int ta, tb, M, N, K, mb;
    const float *a, *b;
    int lda, ldb, ldc;
    float beta;
    float *c;
} RowGemm;

static void row_blocks(void *ctx, int64_t i0, int64_t i1) {
    const RowGemm *g = ctx;
    for (int64_t i = i0; i < i1; i++) {
        int r0 = (int)i * g->mb, m = g->M - r0 < g->mb ? g->M - r0 : g->mb;
        const float *a = g->ta ? g->a + r0 : g->a + (size_t)r0 * g->lda;
        task_sgemm(g->ta, g->tb, m, g->N, g->K, a, g->lda, g->b, g->ldb, g->beta,
                   g->c + (size_t)r0 * g->ldc, g->ldc);
    }
}

/* c (M,N) = beta·c + op(a)·op(b), as nn_gemm. nn_gemm shares out 128-column slabs, which
 * leaves threads idle when N is small (the 8×8 and 16×16 levels of a UNet); then the rows are
 * cut instead, into blocks whose height depends on M only. Either way each output element is
 * computed by one sgemm call of a shape fixed by the problem, whatever the thread count. */
static void conv_gemm(int ta, int tb, int M, int N, int K, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc) {
    if ((N + 127) / 128 >= GEMM_MIN_SLABS || M < 64 || K == 0) {
        nn_gemm(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    int mb = (M + 15) / 16;
    mb = (mb + 15) / 16 * 16;
    if (mb < 32)
        mb = 32;
    RowGemm g = {ta, tb, M, N, K, mb, a, b, lda, ldb, ldc, beta, c};
    int64_t n_blocks = (M + mb - 1) / mb;
    int64_t grain = (int64_t)M * N * K < 64 * 1024 ? n_blocks : 1;
    backend_cpu_parallel_for(n_blocks, grain, row_blocks, &g);
}

/* ---- Winograd F(2×2, 3×3) ------------------------------------------------------------------ */

/* A 3×3 stride-1 conv computes each 2×2 output tile from a 4×4 input tile as
 * Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A (Lavin & Gray, "Fast Algorithms for Convolutional Neural
 * Networks"): 16 multiplies where im2col spends 36, so the GEMMs — 16 of them, (OC,C)·(C,tiles)
 * — do 2.25× less work. Used from WINO_MIN_CH channels in and out, WINO_MIN_IMG_TILES tiles
 * an image (below, the GEMMs are too thin to gain) and WINO_MIN_TILES over the batch (so a
 * batch of 16×16 maps, as a training step's, takes it: 1.3–1.8× faster there on 2 threads;
 * one 16×16 image would leave all but one block's thread idle); the transforms are a few
 * adds per value. Forward
 * and dinp (the same algorithm on dout with the weights transposed and turned 180°) run
 * blocks of tiles start to finish on one thread each (wino_items); dweight is the gradient of
 * the Winograd form, accumulated in order (wino_dweight). Every split is by shape only. */
#define WINO_MIN_CH 16
#define WINO_MIN_TILES 256 /* over the batch: at least 4 blocks of 64 tiles to share out */
#define WINO_MIN_IMG_TILES 64 /* 16×16 outputs; at 8×8 the thin GEMMs lose (doc/engine.md) */
#define WINO_SCRATCH_FLOATS (16u << 20) /* dweight's V and M for one block: 64 MiB at most */
#define WINO_NB_MIN 64                  /* tiles per forward/dinp item: 64–256, see wino_nb */
#define WINO_NB_MAX 256
#define WINO_WAVE 16                    /* forward/dinp items in flight at most (see wino_wave) */

static int is_winograd(const ConvShape *s) {
    int tiles = ((nn_conv2d_out_h(s) + 1) / 2) * ((nn_conv2d_out_w(s) + 1) / 2);
    return s->K == 3 && s->stride == 1 && s->pad <= 2 && s->C >= WINO_MIN_CH &&
           s->OC >= WINO_MIN_CH && tiles >= WINO_MIN_IMG_TILES &&
           (int64_t)s->B * tiles >= WINO_MIN_TILES;
}

/* Tiles per block: all of them when V and M fit, else a multiple of 128. */
static int wino_block(int C, int OC, int T) {
    size_t b = WINO_SCRATCH_FLOATS / (16 * (size_t)(C + OC));
    b -= b % 128;
    if (b < 128)
        b = 128;
    return (size_t)T < b ? T : (int)b;
}

static int wino_nb(int B, int T);
static size_t wino_slot_floats(int C, int OC, int nb);

/* Items in flight (scratch slots): WINO_WAVE, but no more than there are items, and no more
 * than fit in WINO_SCRATCH_FLOATS (at least one). Shape-only, like the rest. */
static int wino_wave(int B, int C, int OC, int T) {
    int nb = wino_nb(B, T);
    int64_t items = (int64_t)B * ((T + nb - 1) / nb);
    int64_t fit = (int64_t)(WINO_SCRATCH_FLOATS / wino_slot_floats(C, OC, nb));
    int64_t w = WINO_WAVE;
    w = items < w ? items : w;
    w = fit < w ? fit : w;
    return w < 1 ? 1 : (int)w;
}

/* U, then the larger of: the wave's slots (forward, dinp) or one block's V and M (dweight). */
static size_t wino_floats(int B, int C, int OC, int Ho, int Wo) {
    int T = ((Ho + 1) / 2) * ((Wo + 1) / 2);
    size_t wave = (size_t)wino_wave(B, C, OC, T) * wino_slot_floats(C, OC, wino_nb(B, T));
    size_t blk = 16 * (size_t)(C + OC) * wino_block(C, OC, T);
    return 16 * (size_t)OC * C + (wave > blk ? wave : blk);
}

typedef struct Wino {
    const ConvShape *s;   /* the conv computed (for dinp: dout → dinp with C and OC swapped) */
    int Ho, Wo, tw;       /* output size; tiles per output row */
    int t0, nt;           /* this block's first tile and tile count */
    const float *img;     /* one input image (C,H,W) */
    const float *weight;  /* (OC,C,3,3); flip: the forward's (C,OC,3,3), used turned 180° */
    int flip;
    float *U, *V, *M;     /* (16,OC,C), (16,C,nt), (16,OC,nt) */
    float *out;           /* one output image (OC,Ho,Wo) */
    const float *dy;      /* dweight: one image of dout (OC,Ho,Wo) */
    const float *bias;    /* (OC) or NULL */
    int accumulate;       /* 1: out += y (a gradient), 0: out = y + bias */
} Wino;

/* U[:, o, :] = G g Gᵀ for output channels [o0, o1). */
static void wino_weights_loops(const Wino *w, int64_t o0, int64_t o1) {
    int C = w->s->C, OC = w->s->OC;
    for (int64_t o = o0; o < o1; o++)
        for (int c = 0; c < C; c++) {
            float g[3][3], t[4][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    size_t turned = (((size_t)c * OC + o) * 3 + 2 - ky) * 3 + 2 - kx;
                    g[ky][kx] = w->flip ? w->weight[turned]
                                        : w->weight[(((size_t)o * C + c) * 3 + ky) * 3 + kx];
                }
            for (int k = 0; k < 3; k++) { /* t = G g */
                t[0][k] = g[0][k];
                t[1][k] = 0.5f * (g[0][k] + g[1][k] + g[2][k]);
                t[2][k] = 0.5f * (g[0][k] - g[1][k] + g[2][k]);
                t[3][k] = g[2][k];
            }
            for (int i = 0; i < 4; i++) { /* u = t Gᵀ */
                float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]),
                              0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
                for (int k = 0; k < 4; k++)
                    w->U[((size_t)(i * 4 + k) * OC + o) * C + c] = u[k];
            }
        }
}

#define WT 32 /* tiles transformed together: the arithmetic runs across them, vectorised */

/* V[:, c, :] = Bᵀ d B for input channels [c0, c1), each tile of the block. */
static void wino_inputs_loops(const Wino *w, int64_t c0, int64_t c1) {
    const ConvShape *s = w->s;
    float d[16][WT], b[16][WT], v[16][WT];
    for (int64_t c = c0; c < c1; c++) {
        const float *plane = w->img + (size_t)c * s->H * s->W;
        for (int tb = 0; tb < w->nt; tb += WT) {
            int n = w->nt - tb < WT ? w->nt - tb : WT;
            memset(d, 0, sizeof d);
            for (int t = 0; t < n; t++) { /* gather the 4×4 input tiles, zero outside */
                int ty = (w->t0 + tb + t) / w->tw, tx = (w->t0 + tb + t) % w->tw;
                int iy0 = 2 * ty - s->pad, ix0 = 2 * tx - s->pad;
                if (iy0 >= 0 && iy0 + 4 <= s->H && ix0 >= 0 && ix0 + 4 <= s->W) {
                    const float *src = plane + (size_t)iy0 * s->W + ix0;
                    for (int i = 0; i < 4; i++)
                        for (int k = 0; k < 4; k++)
                            d[i * 4 + k][t] = src[(size_t)i * s->W + k];
                    continue;
                }
                for (int i = 0; i < 4; i++) {
                    int iy = iy0 + i;
                    if (iy < 0 || iy >= s->H)
                        continue;
                    const float *row = plane + (size_t)iy * s->W;
                    for (int k = 0; k < 4; k++) {
                        int ix = ix0 + k;
                        if (ix >= 0 && ix < s->W)
                            d[i * 4 + k][t] = row[ix];
                    }
                }
            }
            for (int k = 0; k < 4; k++) /* b = Bᵀ d */
                for (int t = 0; t < WT; t++) {
                    b[0 + k][t] = d[0 + k][t] - d[8 + k][t];
                    b[4 + k][t] = d[4 + k][t] + d[8 + k][t];
                    b[8 + k][t] = d[8 + k][t] - d[4 + k][t];
                    b[12 + k][t] = d[4 + k][t] - d[12 + k][t];
                }
            for (int i = 0; i < 4; i++) /* v = b B */
                for (int t = 0; t < WT; t++) {
                    v[i * 4 + 0][t] = b[i * 4 + 0][t] - b[i * 4 + 2][t];
                    v[i * 4 + 1][t] = b[i * 4 + 1][t] + b[i * 4 + 2][t];
                    v[i * 4 + 2][t] = b[i * 4 + 2][t] - b[i * 4 + 1][t];
                    v[i * 4 + 3][t] = b[i * 4 + 1][t] - b[i * 4 + 3][t];
                }
            for (int x = 0; x < 16; x++)
                memcpy(w->V + ((size_t)x * s->C + c) * w->nt + tb, v[x], n * sizeof(float));
        }
    }
}

/* out[o] tiles = Aᵀ m A for output channels [o0, o1). */
static void wino_outputs_loops(const Wino *w, int64_t o0, int64_t o1) {
    int OC = w->s->OC;
    float m[16][WT], a[8][WT], y[4][WT];
    for (int64_t o = o0; o < o1; o++) {
        float *plane = w->out + (size_t)o * w->Ho * w->Wo;
        float bias = w->bias ? w->bias[o] : 0.0f;
        for (int tb = 0; tb < w->nt; tb += WT) {
            int n = w->nt - tb < WT ? w->nt - tb : WT;
            for (int x = 0; x < 16; x++)
                memcpy(m[x], w->M + ((size_t)x * OC + o) * w->nt + tb, n * sizeof(float));
            for (int x = 0; x < 16; x++) /* lanes past n hold no tile: give them zeros */
                for (int t = n; t < WT; t++)
                    m[x][t] = 0.0f;
            for (int k = 0; k < 4; k++) /* a = Aᵀ m */
                for (int t = 0; t < WT; t++) {
                    a[k][t] = m[0 + k][t] + m[4 + k][t] + m[8 + k][t];
                    a[4 + k][t] = m[4 + k][t] - m[8 + k][t] - m[12 + k][t];
                }
            for (int i = 0; i < 2; i++) /* y = a A */
                for (int t = 0; t < WT; t++) {
                    y[i * 2 + 0][t] = a[i * 4 + 0][t] + a[i * 4 + 1][t] + a[i * 4 + 2][t];
                    y[i * 2 + 1][t] = a[i * 4 + 1][t] - a[i * 4 + 2][t] - a[i * 4 + 3][t];
                }
            for (int t = 0; t < n; t++) {
                int ty = (w->t0 + tb + t) / w->tw, tx = (w->t0 + tb + t) % w->tw;
                for (int i = 0; i < 2; i++) {
                    int oy = 2 * ty + i;
                    if (oy >= w->Ho)
                        break;
                    for (int k = 0; k < 2; k++) {
                        int ox = 2 * tx + k;
                        if (ox >= w->Wo)
                            break;
                        float *dst = plane + (size_t)oy * w->Wo + ox;
                        if (w->accumulate)
                            *dst += y[i * 2 + k][t];
                        else
                            *dst = y[i * 2 + k][t] + bias;
                    }
                }
            }
        }
    }
}

/* The same three transforms on AVX-512 (where nn_sgemm_available(), the CPUs whose GEMMs run
 * the AVX-512 kernel), 16 tiles of one tile row per vector: an input tile's four columns are
 * the even and odd lanes of two pairs of loads along the row (masked at the end of a run, so
 * nothing past it is read), the two output columns are interleaved back the same way, and the
 * weights are gathered 16 input channels at a time. Every value is the same sum of the same
 * terms in the same order as in the loops above (adds, subtracts and halvings; no FMA): the
 * same bits. A tile whose columns cross the left or right edge of the input takes the loops'
 * per-tile gather (wino_in_tile). The loops were 30 % of a VAE decode (doc/perf.md). */
#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

static __mmask16 lanes(int n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* V[:, c, t] for one tile whose 4×4 input starts at (iy0, ix0), zeros outside the input. */
static void wino_in_tile(const Wino *w, const float *plane, int c, int t, int iy0, int ix0) {
    const ConvShape *s = w->s;
    float d[16] = {0}, b[16], v[16];
    for (int i = 0; i < 4; i++) {
        int iy = iy0 + i;
        if (iy < 0 || iy >= s->H)
            continue;
        const float *row = plane + (size_t)iy * s->W;
        for (int k = 0; k < 4; k++) {
            int ix = ix0 + k;
            if (ix >= 0 && ix < s->W)
                d[i * 4 + k] = row[ix];
        }
    }
    for (int k = 0; k < 4; k++) { /* b = Bᵀ d */
        b[0 + k] = d[0 + k] - d[8 + k];
        b[4 + k] = d[4 + k] + d[8 + k];
        b[8 + k] = d[8 + k] - d[4 + k];
        b[12 + k] = d[4 + k] - d[12 + k];
    }
    for (int i = 0; i < 4; i++) { /* v = b B */
        v[i * 4 + 0] = b[i * 4 + 0] - b[i * 4 + 2];
        v[i * 4 + 1] = b[i * 4 + 1] + b[i * 4 + 2];
        v[i * 4 + 2] = b[i * 4 + 2] - b[i * 4 + 1];
        v[i * 4 + 3] = b[i * 4 + 1] - b[i * 4 + 3];
    }
    for (int x = 0; x < 16; x++)
        w->V[((size_t)x * s->C + c) * w->nt + t] = v[x];
}

AVX512 static void wino_inputs_avx512(const Wino *w, int64_t c0, int64_t c1) {
    const ConvShape *s = w->s;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const __m512 zero = _mm512_setzero_ps();
    /* tiles tx in [xa, xb) read inside the row: 2·tx − pad >= 0 and 2·tx − pad + 4 <= W */
    int xa = (s->pad + 1) / 2, xb = s->W + s->pad - 4 < 0 ? 0 : (s->W + s->pad - 4) / 2 + 1;
    xb = xb > w->tw ? w->tw : xb;
    size_t xs = (size_t)s->C * w->nt; /* V's stride from one transform element to the next */
    for (int64_t c = c0; c < c1; c++) {
        const float *plane = w->img + (size_t)c * s->H * s->W;
        float *vc = w->V + (size_t)c * w->nt;
        for (int t = 0; t < w->nt;) {
            int g = w->t0 + t, ty = g / w->tw, tx = g % w->tw;
            int iy0 = 2 * ty - s->pad, ix0 = 2 * tx - s->pad;
            if (tx < xa || tx >= xb) {
                wino_in_tile(w, plane, (int)c, t, iy0, ix0);
                t++;
                continue;
            }
            int n = w->nt - t; /* this run: interior tiles of one tile row, at most 16 */
            n = n > xb - tx ? xb - tx : n;
            n = n > 16 ? 16 : n;
            int ncol = 2 * n + 2; /* the input columns the run reads, from ix0 */
            __m512 d[16], b[16];
            for (int i = 0; i < 4; i++) {
                int iy = iy0 + i;
                if (iy < 0 || iy >= s->H) {
                    d[i * 4 + 0] = d[i * 4 + 1] = d[i * 4 + 2] = d[i * 4 + 3] = zero;
                    continue;
                }
                const float *row = plane + (size_t)iy * s->W + ix0;
                __m512 lo = _mm512_maskz_loadu_ps(lanes(ncol), row);
                __m512 hi = ncol > 16 ? _mm512_maskz_loadu_ps(lanes(ncol - 16), row + 16) : zero;
                __m512 lo2 = _mm512_maskz_loadu_ps(lanes(ncol - 2), row + 2);
                __m512 hi2 = ncol > 18 ? _mm512_maskz_loadu_ps(lanes(ncol - 18), row + 18) : zero;
                d[i * 4 + 0] = _mm512_permutex2var_ps(lo, ev, hi);   /* column 2j of lane j */
                d[i * 4 + 1] = _mm512_permutex2var_ps(lo, od, hi);   /* 2j + 1 */
                d[i * 4 + 2] = _mm512_permutex2var_ps(lo2, ev, hi2); /* 2j + 2 */
                d[i * 4 + 3] = _mm512_permutex2var_ps(lo2, od, hi2); /* 2j + 3 */
            }
            for (int k = 0; k < 4; k++) { /* b = Bᵀ d */
                b[0 + k] = _mm512_sub_ps(d[0 + k], d[8 + k]);
                b[4 + k] = _mm512_add_ps(d[4 + k], d[8 + k]);
                b[8 + k] = _mm512_sub_ps(d[8 + k], d[4 + k]);
                b[12 + k] = _mm512_sub_ps(d[4 + k], d[12 + k]);
            }
            __mmask16 m = lanes(n);
            for (int i = 0; i < 4; i++) { /* v = b B, stored */
                float *v = vc + (size_t)(i * 4) * xs + t;
                _mm512_mask_storeu_ps(v, m, _mm512_sub_ps(b[i * 4 + 0], b[i * 4 + 2]));
                _mm512_mask_storeu_ps(v + xs, m, _mm512_add_ps(b[i * 4 + 1], b[i * 4 + 2]));
                _mm512_mask_storeu_ps(v + 2 * xs, m, _mm512_sub_ps(b[i * 4 + 2], b[i * 4 + 1]));
                _mm512_mask_storeu_ps(v + 3 * xs, m, _mm512_sub_ps(b[i * 4 + 1], b[i * 4 + 3]));
            }
            t += n;
        }
    }
}

AVX512 static void wino_outputs_avx512(const Wino *w, int64_t o0, int64_t o1) {
    int OC = w->s->OC;
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih = _mm512_add_epi32(il, _mm512_set1_epi32(8));
    for (int64_t o = o0; o < o1; o++) {
        float *plane = w->out + (size_t)o * w->Ho * w->Wo;
        __m512 bias = _mm512_set1_ps(w->bias ? w->bias[o] : 0.0f);
        for (int t = 0; t < w->nt;) {
            int g = w->t0 + t, ty = g / w->tw, tx = g % w->tw;
            int n = w->nt - t; /* this run: tiles of one tile row, at most 16 */
            n = n > w->tw - tx ? w->tw - tx : n;
            n = n > 16 ? 16 : n;
            __mmask16 mn = lanes(n);
            __m512 m[16], a[8], y[4];
            for (int x = 0; x < 16; x++) /* lanes past n hold no tile: zeros */
                m[x] = _mm512_maskz_loadu_ps(mn, w->M + ((size_t)x * OC + o) * w->nt + t);
            for (int k = 0; k < 4; k++) { /* a = Aᵀ m */
                a[k] = _mm512_add_ps(_mm512_add_ps(m[0 + k], m[4 + k]), m[8 + k]);
                a[4 + k] = _mm512_sub_ps(_mm512_sub_ps(m[4 + k], m[8 + k]), m[12 + k]);
            }
            for (int i = 0; i < 2; i++) { /* y = a A */
                y[i * 2] = _mm512_add_ps(_mm512_add_ps(a[i * 4], a[i * 4 + 1]), a[i * 4 + 2]);
                y[i * 2 + 1] =
                    _mm512_sub_ps(_mm512_sub_ps(a[i * 4 + 1], a[i * 4 + 2]), a[i * 4 + 3]);
            }
            int ncol = w->Wo - 2 * tx; /* output columns of the run inside the row */
            ncol = ncol > 2 * n ? 2 * n : ncol;
            __mmask16 ml = lanes(ncol), mh = lanes(ncol - 16);
            for (int i = 0; i < 2 && 2 * ty + i < w->Ho; i++) {
                float *dst = plane + (size_t)(2 * ty + i) * w->Wo + 2 * tx;
                __m512 lo = _mm512_permutex2var_ps(y[i * 2], il, y[i * 2 + 1]);
                __m512 hi = _mm512_permutex2var_ps(y[i * 2], ih, y[i * 2 + 1]);
                if (w->accumulate) {
                    lo = _mm512_add_ps(_mm512_maskz_loadu_ps(ml, dst), lo);
                    if (mh)
                        hi = _mm512_add_ps(_mm512_maskz_loadu_ps(mh, dst + 16), hi);
                } else {
                    lo = _mm512_add_ps(lo, bias);
                    hi = _mm512_add_ps(hi, bias);
                }
                _mm512_mask_storeu_ps(dst, ml, lo);
                if (mh)
                    _mm512_mask_storeu_ps(dst + 16, mh, hi);
            }
            t += n;
        }
    }
}

AVX512 static void wino_weights_avx512(const Wino *w, int64_t o0, int64_t o1) {
    int C = w->s->C, OC = w->s->OC;
    const __m512 half = _mm512_set1_ps(0.5f);
    /* lane l is input channel c + l: tap j = 3·ky + kx at weight[(o·C + c + l)·9 + j], or,
     * turned (flip), at weight[((c + l)·OC + o)·9 + 8 − j] */
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(w->flip ? OC * 9 : 9));
    for (int64_t o = o0; o < o1; o++)
        for (int c = 0; c < C; c += 16) {
            __mmask16 m = lanes(C - c);
            const float *base = w->flip ? w->weight + ((size_t)c * OC + o) * 9
                                        : w->weight + ((size_t)o * C + c) * 9;
            __m512 g[3][3], t[4][3];
            for (int j = 0; j < 9; j++)
                g[j / 3][j % 3] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx,
                                                           base + (w->flip ? 8 - j : j), 4);
            for (int k = 0; k < 3; k++) { /* t = G g */
                t[0][k] = g[0][k];
                t[1][k] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g[0][k], g[1][k]),
                                                            g[2][k]));
                t[2][k] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g[0][k], g[1][k]),
                                                            g[2][k]));
                t[3][k] = g[2][k];
            }
            for (int i = 0; i < 4; i++) { /* u = t Gᵀ, stored */
                __m512 u[4] = {
                    t[i][0],
                    _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2])),
                    _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2])),
                    t[i][2]};
                for (int k = 0; k < 4; k++)
                    _mm512_mask_storeu_ps(w->U + ((size_t)(i * 4 + k) * OC + o) * C + c, m, u[k]);
            }
        }
}
#endif

/* The transforms: AVX-512 where the GEMMs have it, else the loops (the same bits). */
static void wino_weights(void *ctx, int64_t o0, int64_t o1) {
#if defined(__x86_64__)
    if (nn_sgemm_available()) {
        wino_weights_avx512(ctx, o0, o1);
        return;
    }
#endif
    wino_weights_loops(ctx, o0, o1);
}

static void wino_inputs(void *ctx, int64_t c0, int64_t c1) {
#if defined(__x86_64__)
    if (nn_sgemm_available()) {
        wino_inputs_avx512(ctx, c0, c1);
        return;
    }
#endif
    wino_inputs_loops(ctx, c0, c1);
}

static void wino_outputs(const Wino *w, int64_t o0, int64_t o1) {
#if defined(__x86_64__)
    if (nn_sgemm_available()) {
        wino_outputs_avx512(w, o0, o1);
        return;
    }
#endif
    wino_outputs_loops(w, o0, o1);
}

/* out (B,OC,Ho,Wo) = (or +=) the conv s of inp by weight; see Wino for flip and accumulate. */
typedef struct WinoWave {
    Wino w;             /* shared: shapes, U, weight, bias, flip, accumulate */
    const float *inp;   /* (B,C,H,W) */
    float *out;         /* (B,OC,Ho,Wo) */
    float *slots;       /* `wave` regions of wino_slot_floats */
    int wave;           /* items in flight: wino_wave */
    int T, nb, n_blk;   /* tiles per image, tiles per block, blocks per image */
    int64_t first;      /* this wave's first (image, block) item */
    int64_t n_items;    /* B·n_blk */
} WinoWave;

/* Tiles per item: about 16 items over the batch, so 16 threads have work, but no thinner
 * than 64 tiles (the sgemms' column count) nor wider than 256. Shape-only. */
static int wino_nb(int B, int T) {
    int64_t nb = (int64_t)B * T / 16;
    nb -= nb % 32;
    nb = nb < WINO_NB_MIN ? WINO_NB_MIN : nb > WINO_NB_MAX ? WINO_NB_MAX : nb;
    return T < nb ? T : (int)nb;
}

static size_t wino_slot_floats(int C, int OC, int nb) {
    return 16 * (size_t)(C + OC) * nb;
}

/* Items [i0, i1) of the wave, each a block of nb tiles of one image done start to finish
 * on one thread — transform in, 16 single-threaded sgemms, transform out — in its own slot of
 * scratch, so its V and M stay in cache. */
static void wino_items(void *ctx, int64_t i0, int64_t i1) {
    const WinoWave *v = ctx;
    const ConvShape *s = v->w.s;
    int C = s->C, OC = s->OC;
    for (int64_t i = i0; i < i1; i++) {
        int64_t item = v->first + i;
        if (item >= v->n_items)
            break;
        int b = (int)(item / v->n_blk), k = (int)(item % v->n_blk);
        Wino w = v->w;
        w.img = v->inp + (size_t)b * C * s->H * s->W;
        w.out = v->out + (size_t)b * OC * w.Ho * w.Wo;
        w.t0 = k * v->nb;
        w.nt = v->T - w.t0 < v->nb ? v->T - w.t0 : v->nb;
        w.V = v->slots + (size_t)i * wino_slot_floats(C, OC, v->nb);
        w.M = w.V + 16 * (size_t)C * w.nt;
        wino_inputs(&w, 0, C);
        for (int x = 0; x < 16; x++) /* M_x (OC,nt) = U_x (OC,C) · V_x (C,nt) */
            task_sgemm(0, 0, OC, w.nt, C, w.U + (size_t)x * OC * C, C,
                       w.V + (size_t)x * C * w.nt, w.nt, 0.0f, w.M + (size_t)x * OC * w.nt,
                       w.nt);
        wino_outputs(&w, 0, OC);
    }
}

/* out (B,OC,Ho,Wo) = (or +=) the conv s of inp by weight; see Wino for flip and accumulate.
 * The (image, block) items run in waves of wino_wave items, a shape-only split. */
static void wino_run(float *out, float *scratch, const float *inp, const float *weight,
                     const float *bias, const ConvShape *s, int flip, int accumulate) {
    int Ho = nn_conv2d_out_h(s), Wo = nn_conv2d_out_w(s), C = s->C, OC = s->OC;
    int tw = (Wo + 1) / 2, T = ((Ho + 1) / 2) * tw;
    WinoWave v = {.w = {.s = s, .Ho = Ho, .Wo = Wo, .tw = tw, .weight = weight, .flip = flip,
                        .U = scratch, .bias = bias, .accumulate = accumulate},
                  .inp = inp, .out = out, .T = T, .nb = wino_nb(s->B, T)};
    v.n_blk = (T + v.nb - 1) / v.nb;
    v.slots = scratch + 16 * (size_t)OC * C;
    v.n_items = (int64_t)s->B * v.n_blk;
    backend_cpu_parallel_for(OC, 1, wino_weights, &v.w);
    v.wave = wino_wave(s->B, C, OC, T);
    for (v.first = 0; v.first < v.n_items; v.first += v.wave) {
        int64_t n = v.n_items - v.first < v.wave ? v.n_items - v.first : v.wave;
        backend_cpu_parallel_for(n, 1, wino_items, &v);
    }
}

/* M[:, o, :] = A dy Aᵀ for output channels [o0, o1): the 2×2 tiles of dout spread back onto
 * the 4×4 transform grid (the transpose of wino_outputs' Aᵀ m A). */
static void wino_grads(void *ctx, int64_t o0, int64_t o1) {
    const Wino *w = ctx;
    int OC = w->s->OC;
    float dy[4][WT], a[8][WT], m[16][WT];
    for (int64_t o = o0; o < o1; o++) {
        const float *plane = w->dy + (size_t)o * w->Ho * w->Wo;
        for (int tb = 0; tb < w->nt; tb += WT) {
            int n = w->nt - tb < WT ? w->nt - tb : WT;
            memset(dy, 0, sizeof dy);
            for (int t = 0; t < n; t++) {
                int ty = (w->t0 + tb + t) / w->tw, tx = (w->t0 + tb + t) % w->tw;
                for (int i = 0; i < 2 && 2 * ty + i < w->Ho; i++)
                    for (int k = 0; k < 2 && 2 * tx + k < w->Wo; k++)
                        dy[i * 2 + k][t] = plane[(size_t)(2 * ty + i) * w->Wo + 2 * tx + k];
            }
            for (int k = 0; k < 2; k++) /* a (4×2) = A dy */
                for (int t = 0; t < WT; t++) {
                    a[0 + k][t] = dy[k][t];
                    a[2 + k][t] = dy[k][t] + dy[2 + k][t];
                    a[4 + k][t] = dy[k][t] - dy[2 + k][t];
                    a[6 + k][t] = -dy[2 + k][t];
                }
            for (int i = 0; i < 4; i++) /* m (4×4) = a Aᵀ */
                for (int t = 0; t < WT; t++) {
                    m[i * 4 + 0][t] = a[i * 2][t];
                    m[i * 4 + 1][t] = a[i * 2][t] + a[i * 2 + 1][t];
                    m[i * 4 + 2][t] = a[i * 2][t] - a[i * 2 + 1][t];
                    m[i * 4 + 3][t] = -a[i * 2 + 1][t];
                }
            for (int x = 0; x < 16; x++)
                memcpy(w->M + ((size_t)x * OC + o) * w->nt + tb, m[x], n * sizeof(float));
        }
    }
}

/* dweight[o] += Gᵀ dU G for output channels [o0, o1), dU = U's (16,OC,C) buffer. */
static void wino_dweights(void *ctx, int64_t o0, int64_t o1) {
    const Wino *w = ctx;
    int C = w->s->C, OC = w->s->OC;
    float *dweight = (float *)w->weight; /* wino_dweight passes the gradient here */
    for (int64_t o = o0; o < o1; o++)
        for (int c = 0; c < C; c++) {
            float u[4][4], t[3][4];
            for (int x = 0; x < 16; x++)
                u[x / 4][x % 4] = w->U[((size_t)x * OC + o) * C + c];
            for (int k = 0; k < 4; k++) { /* t (3×4) = Gᵀ u */
                t[0][k] = u[0][k] + 0.5f * (u[1][k] + u[2][k]);
                t[1][k] = 0.5f * (u[1][k] - u[2][k]);
                t[2][k] = 0.5f * (u[1][k] + u[2][k]) + u[3][k];
            }
            float *g = dweight + ((size_t)o * C + c) * 9;
            for (int i = 0; i < 3; i++) { /* g += t G */
                g[i * 3 + 0] += t[i][0] + 0.5f * (t[i][1] + t[i][2]);
                g[i * 3 + 1] += 0.5f * (t[i][1] - t[i][2]);
                g[i * 3 + 2] += 0.5f * (t[i][1] + t[i][2]) + t[i][3];
            }
        }
}

/* dweight (OC,C,3,3) += the gradient of the Winograd forward: dU_x = Σ_tiles (A dy Aᵀ)_x ⊙
 * (Bᵀ d B)_x as 16 GEMMs (OC,tiles)·(C,tiles)ᵀ summed over blocks and images in order, then
 * dw = Gᵀ dU G. 2.25× less GEMM work than im2col's dout·colᵀ, like the forward. */
static void wino_dweight(float *dweight, float *scratch, const float *inp, const float *dout,
                         const ConvShape *s) {
    int Ho = nn_conv2d_out_h(s), Wo = nn_conv2d_out_w(s), C = s->C, OC = s->OC;
    int tw = (Wo + 1) / 2, T = ((Ho + 1) / 2) * tw, blk = wino_block(C, OC, T);
    Wino w = {.s = s, .Ho = Ho, .Wo = Wo, .tw = tw, .weight = dweight, .U = scratch};
    w.V = w.U + 16 * (size_t)OC * C;
    w.M = w.V + 16 * (size_t)C * blk;
    memset(w.U, 0, 16 * (size_t)OC * C * sizeof(float));
    for (int b = 0; b < s->B; b++) {
        w.img = inp + (size_t)b * C * s->H * s->W;
        w.dy = dout + (size_t)b * OC * Ho * Wo;
        for (w.t0 = 0; w.t0 < T; w.t0 += blk) {
            w.nt = T - w.t0 < blk ? T - w.t0 : blk;
            backend_cpu_parallel_for(C, 1 + 4096 / w.nt, wino_inputs, &w);
            backend_cpu_parallel_for(OC, 1 + 4096 / w.nt, wino_grads, &w);
            for (int x = 0; x < 16; x++) /* dU_x (OC,C) += M_x (OC,nt) · V_x (C,nt)ᵀ */
                conv_gemm(0, 1, OC, C, w.nt, w.M + (size_t)x * OC * w.nt, w.nt,
                          w.V + (size_t)x * C * w.nt, w.nt, 1.0f, w.U + (size_t)x * OC * C, C);
        }
    }
    backend_cpu_parallel_for(OC, 1, wino_dweights, &w);
}

/* The conv whose output is dinp: dout (B,OC,Ho,Wo) in, C channels out, padding 2 − pad. */
static ConvShape wino_dinp_shape(const ConvShape *s) {
    ConvShape t = {.B = s->B, .C = s->OC, .H = nn_conv2d_out_h(s), .W = nn_conv2d_out_w(s),
                   .OC = s->C, .K = 3, .stride = 1, .pad = 2 - s->pad};
    return t;
}

/* Forward and dinp both run as Winograd convs: room for the larger. */
static size_t wino_scratch(const ConvShape *s) {
    if (!is_winograd(s))
        return 0;
    ConvShape t = wino_dinp_shape(s);
    size_t f = wino_floats(s->B, s->C, s->OC, nn_conv2d_out_h(s), nn_conv2d_out_w(s));
    size_t d = wino_floats(t.B, t.C, t.OC, nn_conv2d_out_h(&t), nn_conv2d_out_w(&t));
    return f > d ? f : d;
}

/* Output columns per forward chunk: a shape-only choice (so the bits do not depend on the
 * thread count) that leaves about 16 chunks per tile to share out, each wide enough for the
 * sgemm to run near its peak. */
static int conv_chunk(int np) {
    int c = np / 16;
    c -= c % 64;
    return c < 128 ? 128 : c > 512 ? 512 : c;
}

typedef struct FwdJob {
    float *out;         /* (OC, P) of one image */
    float *col;         /* the tile's scratch: chunk k at col + k·CKK·chunk */
    const float *img, *weight;
    const ConvShape *s;
    int Wo, P, p0, np, chunk, ckk;
    float beta;
} FwdJob;

/* Chunks [k0, k1) of the tile: each lays out its own columns and multiplies them. */
static void fwd_chunks(void *ctx, int64_t k0, int64_t k1) {
    const FwdJob *f = ctx;
    for (int64_t k = k0; k < k1; k++) {
        int c0 = (int)k * f->chunk, nc = f->np - c0 < f->chunk ? f->np - c0 : f->chunk;
        float *col = f->col + (size_t)k * f->ckk * f->chunk;
        ColJob j = {.col = col, .img = f->img, .s = f->s, .Wo = f->Wo, .p0 = f->p0 + c0,
                    .np = nc};
        im2col_rows(&j, 0, f->ckk);
        task_sgemm(0, 0, f->s->OC, nc, f->ckk, f->weight, f->ckk, col, nc, f->beta,
                   f->out + f->p0 + c0, f->P);
    }
}

void nn_conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                       const float *bias, const ConvShape *s) {
    ASSERT(out != inp);
    int Wo = nn_conv2d_out_w(s), P = nn_conv2d_out_h(s) * Wo;
    int ckk = s->C * s->K * s->K, OC = s->OC;
    size_t in_img = (size_t)s->C * s->H * s->W, out_img = (size_t)OC * P;
    int tile = conv_tile(s);
    if (is_direct(s)) {
        DirectJob j = {.out = out, .inp = inp, .weight = weight, .bias = bias, .s = s,
                       .Ho = nn_conv2d_out_h(s), .Wo = Wo};
        int64_t per = (int64_t)s->C * s->K * s->K * Wo * OC;
        backend_cpu_parallel_for((int64_t)s->B * j.Ho, 1 + 65536 / (per ? per : 1),
                                 direct_fwd_rows, &j);
        return;
    }
    if (is_winograd(s)) {
        wino_run(out, scratch, inp, weight, bias, s, 0, 0);
        return;
    }
    for (int b = 0; b < s->B; b++) {
        const float *img = inp + b * in_img;
        float *o = out + b * out_img;
        if (bias) {
            BiasFill f = {.out = o, .bias = bias, .P = P};
            backend_cpu_parallel_for(OC, 1 + 16384 / (P ? P : 1), bias_fill_rows, &f);
        }
        float beta = bias ? 1.0f : 0.0f;
        if (is_pointwise(s)) { /* (OC,P) = (OC,C)·(C,P) */
            conv_gemm(0, 0, OC, P, s->C, weight, s->C, img, P, beta, o, P);
            continue;
        }
        for (int p0 = 0; p0 < P; p0 += tile) {
            int np = P - p0 < tile ? P - p0 : tile;
            if (np < GEMM_MIN_SLABS * 128) { /* too few chunks to share: lay out, then split rows */
                ColJob j = {.col = scratch, .img = img, .s = s, .Wo = Wo, .p0 = p0, .np = np};
                backend_cpu_parallel_for(ckk, 1 + 16384 / np, im2col_rows, &j);
                conv_gemm(0, 0, OC, np, ckk, weight, ckk, scratch, np, beta, o + p0, P);
                continue;
            }
            FwdJob f = {.out = o, .col = scratch, .img = img, .weight = weight, .s = s,
                        .Wo = Wo, .P = P, .p0 = p0, .np = np, .chunk = conv_chunk(np),
                        .ckk = ckk, .beta = beta};
            int64_t n_chunks = (np + f.chunk - 1) / f.chunk;
            backend_cpu_parallel_for(n_chunks, 1, fwd_chunks, &f);
        }
    }
}

void nn_conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch,
                        const float *dout, const float *inp, const float *weight,
                        const ConvShape *s) {
    int Wo = nn_conv2d_out_w(s), P = nn_conv2d_out_h(s) * Wo;
    int ckk = s->C * s->K * s->K, OC = s->OC;
    size_t in_img = (size_t)s->C * s->H * s->W, out_img = (size_t)OC * P;
    if (dbias) {
        BiasFill f = {.dbias = dbias, .dout = dout, .P = P, .B = s->B, .OC = OC};
        backend_cpu_parallel_for(OC, 1 + 16384 / ((size_t)P * s->B + 1), bias_sum_rows, &f);
    }
    if (!dinp && !dweight)
        return;
    if (is_direct(s)) {
        DirectJob j = {.dinp = dinp, .dweight = dweight, .inp = inp, .weight = weight,
                       .dout = dout, .s = s, .Ho = nn_conv2d_out_h(s), .Wo = Wo};
        int64_t per = (int64_t)P * OC * s->K * s->K;
        if (dinp)
            backend_cpu_parallel_for((int64_t)s->B * s->C, 1 + 65536 / (per ? per : 1),
                                     direct_dinp_planes, &j);
        if (dweight)
            backend_cpu_parallel_for(s->C, 1 + 65536 / (per * s->B + 1),
                                     direct_dweight_channels, &j);
        return;
    }
    if (is_winograd(s)) { /* dinp += the Winograd conv of dout; dweight by Winograd too */
        if (dinp) {
            ConvShape t = wino_dinp_shape(s);
            wino_run(dinp, scratch, dout, weight, NULL, &t, 1, 1);
        }
        if (dweight)
            wino_dweight(dweight, scratch, inp, dout, s);
        return;
    }
    int tile = conv_tile(s);
    for (int b = 0; b < s->B; b++) {
        const float *img = inp + b * in_img, *d = dout + b * out_img;
        float *di = dinp ? dinp + b * in_img : NULL;
        if (is_pointwise(s)) {
            if (dweight) /* (OC,C) += (OC,P)·(C,P)ᵀ */
                conv_gemm(0, 1, OC, s->C, P, d, P, img, P, 1.0f, dweight, s->C);
            if (di) /* (C,P) += (OC,C)ᵀ·(OC,P) */
                conv_gemm(1, 0, s->C, P, OC, weight, s->C, d, P, 1.0f, di, P);
            continue;
        }
        for (int p0 = 0; p0 < P; p0 += tile) {
            int np = P - p0 < tile ? P - p0 : tile;
            ColJob j = {.col = scratch, .dimg = di, .img = img, .s = s, .Wo = Wo, .p0 = p0,
                        .np = np};
            if (dweight) { /* (OC,CKK) += (OC,np)·(CKK,np)ᵀ */
                backend_cpu_parallel_for(ckk, 1 + 16384 / np, im2col_rows, &j);
                conv_gemm(0, 1, OC, ckk, np, d + p0, P, scratch, np, 1.0f, dweight, ckk);
            }
            if (di) { /* dcol (CKK,np) = (OC,CKK)ᵀ·(OC,np), then scattered into di */
                conv_gemm(1, 0, ckk, np, OC, weight, ckk, d + p0, P, 0.0f, scratch, np);
                backend_cpu_parallel_for(s->C, 1 + 16384 / ((size_t)np * s->K * s->K),
                                         col2im_channels, &j);
            }
        }
    }
}
