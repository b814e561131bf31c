/* nn_diffusion_conv — conv2d as im2col + GEMM. See nn_diffusion.h.
 *
 * Per image, the output pixels are taken in tiles of `tile` columns (a shape-only choice that
 * bounds the scratch to about CONV_SCRATCH_FLOATS); for each tile the input patches are laid
 * out as columns col (C·K·K, tile) and
 *   forward   out[:, tile]  (OC, tile)  = weight (OC, CKK) · col
 *   backward  dweight      (OC, CKK)  += dout[:, tile] · colᵀ
 *             dcol         (CKK, tile) = weightᵀ · dout[:, tile], scattered back (col2im)
 * A 1×1 stride-1 unpadded conv needs no columns: the input (C, HW) already is col, so it is
 * one GEMM on the input (the "direct" path).
 *
 * The forward cuts a tile into chunks of 128–512 columns; one task lays out a chunk's columns
 * and multiplies them at once (single-threaded sgemm), while they are still in cache. The
 * backward's GEMMs run through nn_gemm. All of them run at OpenBLAS's sgemm rate: at
 * 320×64×64 one thread does forward, dweight and dinp each in about the time of the same
 * GEMM alone (bench/bench_ops.c).
 *
 * Determinism: chunk and tile widths depend on the shape only; each chunk is one sgemm call
 * of a fixed shape; nn_gemm cuts fixed column slabs; im2col is split by rows of col; col2im by
 * input channel (a channel's rows of dcol scatter only into that channel of dinp); bias sums
 * by output channel; tiles and images run in order. Nothing depends on the thread count.
 */
#include "nn_diffusion.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_linear.h"

#define CONV_SCRATCH_FLOATS (16u << 20) /* 64 MiB of columns at most (one tile ≥ 128 wide) */
#define CONV_TILE_ALIGN 128             /* = the GEMM's column slab */

int nn_conv2d_out_h(const ConvShape *s) { return (s->H + 2 * s->pad - s->K) / s->stride + 1; }
int nn_conv2d_out_w(const ConvShape *s) { return (s->W + 2 * s->pad - s->K) / s->stride + 1; }

static int is_pointwise(const ConvShape *s) {
    return s->K == 1 && s->stride == 1 && s->pad == 0;
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

size_t nn_conv2d_scratch_floats(const ConvShape *s) {
    if (is_pointwise(s))
        return 0;
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, f->s->OC, nc, f->ckk, 1.0f,
                    f->weight, f->ckk, col, nc, f->beta, f->out + f->p0 + c0, f->P);
    }
}

void nn_conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                       const float *bias, const ConvShape *s) {
    ASSERT(out != inp);
    int Wo = nn_conv2d_out_w(s), P = nn_conv2d_out_h(s) * Wo;
    int ckk = s->C * s->K * s->K, OC = s->OC;
    size_t in_img = (size_t)s->C * s->H * s->W, out_img = (size_t)OC * P;
    int tile = conv_tile(s);
    for (int b = 0; b < s->B; b++) {
        const float *img = inp + b * in_img;
        float *o = out + b * out_img;
        if (bias) {
            BiasFill f = {.out = o, .bias = bias, .P = P};
            backend_cpu_parallel_for(OC, 1 + 16384 / (P ? P : 1), bias_fill_rows, &f);
        }
        float beta = bias ? 1.0f : 0.0f;
        if (is_pointwise(s)) { /* (OC,P) = (OC,C)·(C,P) */
            nn_gemm(0, 0, OC, P, s->C, weight, s->C, img, P, beta, o, P);
            continue;
        }
        for (int p0 = 0; p0 < P; p0 += tile) {
            int np = P - p0 < tile ? P - p0 : tile;
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
    int tile = conv_tile(s);
    for (int b = 0; b < s->B; b++) {
        const float *img = inp + b * in_img, *d = dout + b * out_img;
        float *di = dinp ? dinp + b * in_img : NULL;
        if (is_pointwise(s)) {
            if (dweight) /* (OC,C) += (OC,P)·(C,P)ᵀ */
                nn_gemm(0, 1, OC, s->C, P, d, P, img, P, 1.0f, dweight, s->C);
            if (di) /* (C,P) += (OC,C)ᵀ·(OC,P) */
                nn_gemm(1, 0, s->C, P, OC, weight, s->C, d, P, 1.0f, di, P);
            continue;
        }
        for (int p0 = 0; p0 < P; p0 += tile) {
            int np = P - p0 < tile ? P - p0 : tile;
            ColJob j = {.col = scratch, .dimg = di, .img = img, .s = s, .Wo = Wo, .p0 = p0,
                        .np = np};
            if (dweight) { /* (OC,CKK) += (OC,np)·(CKK,np)ᵀ */
                backend_cpu_parallel_for(ckk, 1 + 16384 / np, im2col_rows, &j);
                nn_gemm(0, 1, OC, ckk, np, d + p0, P, scratch, np, 1.0f, dweight, ckk);
            }
            if (di) { /* dcol (CKK,np) = (OC,CKK)ᵀ·(OC,np), then scattered into di */
                nn_gemm(1, 0, ckk, np, OC, weight, ckk, d + p0, P, 0.0f, scratch, np);
                backend_cpu_parallel_for(s->C, 1 + 16384 / ((size_t)np * s->K * s->K),
                                         col2im_channels, &j);
            }
        }
    }
}
