/* test_nn_diffusion — the diffusion ops (nn_diffusion.h) against PyTorch and diffusers:
 * forward outputs and every gradient on small random shapes, read from
 * tests/fixtures/nn_diffusion/ref.bin (written by tests/torch/make_diffusion_fixtures.py);
 * conv2d against plain loops on a shape large enough to be cut into several tiles; and
 * bit-identical results with 1, 2 and 3 threads. Finite differences are in
 * test_nn_diffusion_grad.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "nn_clip.h"
#include "nn_diffusion.h"
#include "nn_check.h"

#define REF "tests/fixtures/nn_diffusion/ref.bin"
#define MAX_REC 256

/* ---- the fixture file ------------------------------------------------------------------------ */

typedef struct Rec {
    char name[64];
    size_t n;
    float *data;
} Rec;

static Rec recs[MAX_REC];
static int n_recs;

static uint32_t rd_u32(FILE *f) {
    unsigned char b[4];
    cr_assert_eq(fread(b, 1, 4, f), 4, REF ": truncated");
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void load(void) {
    FILE *f = fopen(REF, "rb");
    cr_assert_not_null(f, "cannot open " REF " (run the tests from the repository root)");
    int c;
    while ((c = fgetc(f)) != EOF) {
        ungetc(c, f);
        cr_assert_lt(n_recs, MAX_REC, REF ": too many tensors");
        Rec *r = &recs[n_recs++];
        uint32_t len = rd_u32(f);
        cr_assert_lt(len, sizeof r->name, REF ": name too long");
        cr_assert_eq(fread(r->name, 1, len, f), len);
        r->name[len] = 0;
        uint32_t nd = rd_u32(f);
        r->n = 1;
        for (uint32_t d = 0; d < nd; d++)
            r->n *= rd_u32(f);
        r->data = malloc((r->n ? r->n : 1) * sizeof(float));
        for (size_t i = 0; i < r->n; i++) { /* little-endian f32 */
            uint32_t u = rd_u32(f);
            memcpy(&r->data[i], &u, 4);
        }
    }
    fclose(f);
}

static void unload(void) {
    for (int i = 0; i < n_recs; i++)
        free(recs[i].data);
    n_recs = 0;
    gc_free_all();
    backend_cpu_use(NULL);
}

TestSuite(nn_diffusion, .init = load, .fini = unload);

/* The tensor "<cs>.<what>"; its size must be n (0: any). */
static float *ref(const char *cs, const char *what, size_t n) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", cs, what);
    for (int i = 0; i < n_recs; i++)
        if (strcmp(recs[i].name, name) == 0) {
            if (n)
                cr_assert_eq(recs[i].n, n, "%s: %zu values, expected %zu", name, recs[i].n, n);
            return recs[i].data;
        }
    cr_assert_fail(REF " has no tensor %s (rerun tests/torch/make_diffusion_fixtures.py)", name);
    return NULL;
}

static float *zeros(size_t n) {
    float *x = calloc(n ? n : 1, sizeof(float));
    if (gc_n_allocs < 256)
        gc_allocs[gc_n_allocs++] = x;
    return x;
}

/* |got − want| <= atol + rtol·|want| everywhere (want: PyTorch's, or the definition's). */
static void expect_close(const char *what, const float *got, const float *want, size_t n,
                         float atol, float rtol) {
    for (size_t i = 0; i < n; i++) {
        float tol = atol + rtol * fabsf(want[i]);
        if (!(fabsf(got[i] - want[i]) <= tol)) {
            cr_expect_fail("%s[%zu]: got %.7g, expected %.7g", what, i, got[i], want[i]);
            return;
        }
    }
}

/* ---- conv2d ---------------------------------------------------------------------------------- */

static void conv_case(const char *cs) {
    float *sh = ref(cs, "shape", 9);
    ConvShape s = {(int)sh[0], (int)sh[1], (int)sh[2], (int)sh[3], (int)sh[4],
                   (int)sh[5], (int)sh[6], (int)sh[7]};
    int has_bias = (int)sh[8];
    size_t nx = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.K * s.K;
    size_t ny = (size_t)s.B * s.OC * nn_conv2d_out_h(&s) * nn_conv2d_out_w(&s);
    float *x = ref(cs, "x", nx), *w = ref(cs, "w", nw), *b = has_bias ? ref(cs, "b", s.OC) : NULL;
    float *scratch = zeros(nn_conv2d_scratch_floats(&s));
    float *y = zeros(ny), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(s.OC);
    nn_conv2d_forward(y, scratch, x, w, b, &s);
    expect_close(cs, y, ref(cs, "y", ny), ny, 1e-5f, 1e-5f);
    nn_conv2d_backward(dx, dw, has_bias ? db : NULL, scratch, ref(cs, "dout", ny), x, w, &s);
    expect_close(cs, dx, ref(cs, "dx", nx), nx, 1e-5f, 1e-5f);
    expect_close(cs, dw, ref(cs, "dw", nw), nw, 1e-5f, 1e-5f);
    if (has_bias)
        expect_close(cs, db, ref(cs, "db", s.OC), s.OC, 1e-5f, 1e-5f);
}

Test(nn_diffusion, conv2d_matches_pytorch) {
    conv_case("conv3_s1");
    conv_case("conv3_s2");
    conv_case("conv3_p0");
    conv_case("conv1");
    conv_case("conv1_s2");
    /* up to 4 output channels take the direct path, more im2col + GEMM: both for each */
    conv_case("conv3_s1_wide");
    conv_case("conv3_p0_wide");
    conv_case("conv1_s2_wide");
    conv_case("conv3_s2_narrow");
}

/* make_diffusion_fixtures.py's ramp(): values in [-1, 1] from integers, exact in f32. */
static float *ramp(size_t n, int64_t mult, int64_t mod, float scale) {
    float *x = zeros(n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(((int64_t)i * mult) % mod - mod / 2) / (float)(mod / 2) * scale;
    return x;
}

/* The Winograd path (16 channels, a 32×32 output) against PyTorch: inputs from ramp() on
 * both sides, every 7th output and input-gradient value and all weight gradients stored. */
Test(nn_diffusion, conv2d_winograd_matches_pytorch) {
    ConvShape s = {.B = 1, .C = 16, .H = 32, .W = 32, .OC = 16, .K = 3, .stride = 1, .pad = 1};
    size_t n = 16 * 32 * 32, nw = 16 * 16 * 9, n7 = (n + 6) / 7;
    float *x = ramp(n, 7919, 2001, 1.0f), *w = ramp(nw, 104729, 1999, 0.1f);
    float *b = ramp(16, 31, 17, 1.0f), *dout = ramp(n, 6007, 1003, 1.0f);
    float *scratch = zeros(nn_conv2d_scratch_floats(&s));
    float *y = zeros(n), *dx = zeros(n), *dw = zeros(nw), *db = zeros(16);
    float *y7 = zeros(n7), *dx7 = zeros(n7);
    nn_conv2d_forward(y, scratch, x, w, b, &s);
    nn_conv2d_backward(dx, dw, db, scratch, dout, x, w, &s);
    for (size_t i = 0; i < n7; i++)
        y7[i] = y[7 * i], dx7[i] = dx[7 * i];
    expect_close("winograd y", y7, ref("conv_wino", "y7", n7), n7, 1e-4f, 1e-4f);
    expect_close("winograd dx", dx7, ref("conv_wino", "dx7", n7), n7, 1e-4f, 1e-4f);
    expect_close("winograd dw", dw, ref("conv_wino", "dw", nw), nw, 1e-3f, 1e-4f);
    expect_close("winograd db", db, ref("conv_wino", "db", 16), 16, 1e-3f, 1e-5f);
}

/* out (B,OC,Ho,Wo) by the definition, in double. */
static void naive_conv(float *out, const float *x, const float *w, const float *b,
                       const ConvShape *s) {
    int Ho = nn_conv2d_out_h(s), Wo = nn_conv2d_out_w(s);
    for (int n = 0; n < s->B; n++)
        for (int o = 0; o < s->OC; o++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double acc = b ? b[o] : 0.0;
                    for (int c = 0; c < s->C; c++)
                        for (int ky = 0; ky < s->K; ky++)
                            for (int kx = 0; kx < s->K; kx++) {
                                int iy = oy * s->stride - s->pad + ky;
                                int ix = ox * s->stride - s->pad + kx;
                                if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W)
                                    continue;
                                acc += (double)x[((size_t)(n * s->C + c) * s->H + iy) * s->W +
                                                 ix] *
                                       w[((size_t)(o * s->C + c) * s->K + ky) * s->K + kx];
                            }
                    out[((size_t)(n * s->OC + o) * Ho + oy) * Wo + ox] = (float)acc;
                }
}

/* dinp (B,C,H,W) and dweight (OC,C,K,K) of L = Σ dout·out by the definition, in double. */
static void naive_conv_backward(float *dx, float *dw, const float *x, const float *w,
                                const float *dout, const ConvShape *s) {
    int Ho = nn_conv2d_out_h(s), Wo = nn_conv2d_out_w(s), K = s->K;
    size_t nx = (size_t)s->B * s->C * s->H * s->W, nw = (size_t)s->OC * s->C * K * K;
    double *ax = calloc(nx, sizeof(double)), *aw = calloc(nw, sizeof(double));
    for (int n = 0; n < s->B; n++)
        for (int o = 0; o < s->OC; o++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double g = dout[((size_t)(n * s->OC + o) * Ho + oy) * Wo + ox];
                    for (int c = 0; c < s->C; c++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                int iy = oy * s->stride - s->pad + ky;
                                int ix = ox * s->stride - s->pad + kx;
                                if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W)
                                    continue;
                                size_t xi = ((size_t)(n * s->C + c) * s->H + iy) * s->W + ix;
                                size_t wi = ((size_t)(o * s->C + c) * K + ky) * K + kx;
                                ax[xi] += g * w[wi];
                                aw[wi] += g * x[xi];
                            }
                }
    for (size_t i = 0; i < nx; i++)
        dx[i] = (float)ax[i];
    for (size_t i = 0; i < nw; i++)
        dw[i] = (float)aw[i];
    free(ax);
    free(aw);
}

/* conv s against its definition: forward, dinp and dweight element by element. */
static void check_against_loops(const char *what, ConvShape s, uint64_t seed) {
    Rng r;
    rng_init(&r, seed);
    size_t nx = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.K * s.K;
    size_t P = (size_t)nn_conv2d_out_h(&s) * nn_conv2d_out_w(&s), ny = (size_t)s.B * s.OC * P;
    float *x = gc_randn(&r, nx, 1), *w = gc_randn(&r, nw, 0.05f), *b = gc_randn(&r, s.OC, 1);
    float *scratch = zeros(nn_conv2d_scratch_floats(&s));
    float *y = zeros(ny), *want = zeros(ny), *dout = gc_randn(&r, ny, 1);
    nn_conv2d_forward(y, scratch, x, w, b, &s);
    naive_conv(want, x, w, b, &s);
    expect_close(what, y, want, ny, 1e-4f, 1e-4f);
    float *dx = zeros(nx), *dw = zeros(nw), *wdx = zeros(nx), *wdw = zeros(nw);
    nn_conv2d_backward(dx, dw, NULL, scratch, dout, x, w, &s);
    naive_conv_backward(wdx, wdw, x, w, dout, &s);
    expect_close(what, dx, wdx, nx, 1e-4f, 1e-4f);
    expect_close(what, dw, wdw, nw, 1e-3f, 1e-4f); /* sums over B·Ho·Wo terms */
}

/* With 512 input channels the columns no longer fit one tile: the output is done in several,
 * the first ending mid-row. Small maps have too few column chunks to share out, and their
 * GEMMs are split by rows. From 32×32 outputs (16×16 in a batch of 256 tiles) and 16
 * channels a 3×3 stride-1 conv takes the Winograd path (odd sizes leave partial tiles;
 * padding 0 and 2 too). */
Test(nn_diffusion, conv2d_matches_loops_on_every_path) {
    ConvShape big = {.B = 1, .C = 512, .H = 64, .W = 60, .OC = 5, .K = 3, .stride = 1, .pad = 1};
    cr_assert_gt((size_t)big.C * 9 * 64 * 60, nn_conv2d_scratch_floats(&big),
                 "expected several tiles");
    check_against_loops("tiled conv", big, 41);
    ConvShape deep = {.B = 2, .C = 16, .H = 6, .W = 6, .OC = 80, .K = 3, .stride = 1, .pad = 1};
    check_against_loops("row-split conv", deep, 42);
    ConvShape down = {.B = 1, .C = 32, .H = 9, .W = 7, .OC = 70, .K = 3, .stride = 2, .pad = 1};
    check_against_loops("row-split conv, stride 2", down, 43);
    /* 4 images of 289 tiles: blocks of 64 tiles, the last partial; 20 blocks take two waves */
    ConvShape wino = {.B = 4, .C = 16, .H = 33, .W = 34, .OC = 20, .K = 3, .stride = 1, .pad = 1};
    check_against_loops("winograd", wino, 44);
    wino.pad = 0, wino.H = 33, wino.W = 34, wino.B = 1;
    check_against_loops("winograd, pad 0", wino, 45);
    wino.pad = 2, wino.C = 17, wino.OC = 16;
    check_against_loops("winograd, pad 2", wino, 46);
    /* a batch of small maps (a training step's 16×16 level): 4 × 72 tiles, one partial block
     * each; its scratch holds the transformed weights and tiles, more than im2col's columns */
    ConvShape small = {.B = 4, .C = 16, .H = 15, .W = 17, .OC = 20, .K = 3, .stride = 1,
                       .pad = 1};
    cr_assert_gt(nn_conv2d_scratch_floats(&small), (size_t)16 * 9 * 15 * 17,
                 "expected the Winograd path");
    check_against_loops("winograd, batch of small maps", small, 51);
}

/* perf15: on AVX-512 the Winograd transforms run 16 tiles of a tile row per vector (masked at
 * a run's end, the tiles crossing the row's left or right edge one at a time) and gather the
 * weights 16 input channels at a time: rows of 36 interior tiles (runs of 16, 16 and 4), odd
 * widths (a partial output tile), channel counts not multiples of 16, every padding; the
 * backward's dinp runs the same transforms on the turned weights, accumulating. */
Test(nn_diffusion, conv2d_winograd_wide_rows_match_loops) {
    ConvShape s = {.B = 2, .C = 19, .H = 35, .W = 75, .OC = 21, .K = 3, .stride = 1, .pad = 1};
    check_against_loops("winograd, wide rows", s, 47);
    s.pad = 0, s.B = 1, s.C = 33, s.OC = 17, s.W = 76;
    check_against_loops("winograd, wide rows, pad 0", s, 48);
    s.pad = 2, s.C = 16, s.OC = 35, s.H = 31, s.W = 69;
    check_against_loops("winograd, wide rows, pad 2", s, 49);
}

/* A frozen conv's backward (easel tune: no dweight, no dbias) on the Winograd path adds the
 * input gradient into what dinp already holds (the skip connection's share), like the other
 * paths: odd sizes (partial tiles), 3 images, fewer channels out than in. */
Test(nn_diffusion, conv2d_winograd_dinp_alone_adds) {
    ConvShape s = {.B = 3, .C = 24, .H = 35, .W = 33, .OC = 17, .K = 3, .stride = 1, .pad = 1};
    Rng r;
    rng_init(&r, 50);
    size_t nx = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * 9;
    size_t ny = (size_t)s.B * s.OC * nn_conv2d_out_h(&s) * nn_conv2d_out_w(&s);
    float *x = gc_randn(&r, nx, 1), *w = gc_randn(&r, nw, 0.05f), *dout = gc_randn(&r, ny, 1);
    float *dx = gc_randn(&r, nx, 1), *want = zeros(nx), *wdw = zeros(nw);
    float *scratch = gc_randn(&r, nn_conv2d_scratch_floats(&s), 1); /* stale values */
    naive_conv_backward(want, wdw, x, w, dout, &s);
    for (size_t i = 0; i < nx; i++)
        want[i] += dx[i];
    nn_conv2d_backward(dx, NULL, NULL, scratch, dout, x, w, &s);
    expect_close("winograd dinp alone, added", dx, want, nx, 1e-4f, 1e-4f);
}

/* ---- GroupNorm ------------------------------------------------------------------------------- */

static void gn_case(const char *cs) {
    float *sh = ref(cs, "shape", 6);
    int B = (int)sh[0], C = (int)sh[1], HW = (int)sh[2], G = (int)sh[3], affine = (int)sh[5];
    float eps = sh[4];
    size_t n = (size_t)B * C * HW;
    float *x = ref(cs, "x", n);
    float *w = affine ? ref(cs, "w", C) : NULL, *b = affine ? ref(cs, "b", C) : NULL;
    float *y = zeros(n), *mean = zeros(B * G), *rstd = zeros(B * G);
    float *dx = zeros(n), *dw = zeros(C), *db = zeros(C);
    nn_groupnorm_forward(y, mean, rstd, x, w, b, B, C, HW, G, eps);
    expect_close(cs, y, ref(cs, "y", n), n, 1e-5f, 1e-5f);
    nn_groupnorm_backward(dx, affine ? dw : NULL, affine ? db : NULL, ref(cs, "dout", n), x, w,
                          mean, rstd, B, C, HW, G);
    expect_close(cs, dx, ref(cs, "dx", n), n, 1e-5f, 1e-4f);
    if (affine) {
        expect_close(cs, dw, ref(cs, "dw", C), C, 1e-5f, 1e-5f);
        expect_close(cs, db, ref(cs, "db", C), C, 1e-5f, 1e-5f);
    }
}

Test(nn_diffusion, groupnorm_matches_pytorch) {
    gn_case("gn_affine");
    gn_case("gn_plain");
}

/* ---- activations ----------------------------------------------------------------------------- */

typedef void (*ActFwd)(float *, const float *, size_t, NnGelu);
typedef void (*ActBwd)(float *, const float *, const float *, size_t, NnGelu);

static void silu_f(float *o, const float *x, size_t n, NnGelu m) {
    (void)m;
    nn_silu_forward(o, x, n);
}
static void silu_b(float *dx, const float *d, const float *x, size_t n, NnGelu m) {
    (void)m;
    nn_silu_backward(dx, d, x, n);
}

static void act_case(const char *cs, ActFwd f, ActBwd b, NnGelu mode) {
    float *x = ref(cs, "x", 97), *y = zeros(97), *dx = zeros(97);
    f(y, x, 97, mode);
    expect_close(cs, y, ref(cs, "y", 97), 97, 1e-6f, 1e-5f);
    b(dx, ref(cs, "dout", 97), x, 97, mode);
    expect_close(cs, dx, ref(cs, "dx", 97), 97, 1e-6f, 1e-5f);
}

Test(nn_diffusion, activations_match_pytorch) {
    act_case("silu", silu_f, silu_b, NN_GELU_ERF);
    act_case("gelu_erf", nn_gelu_mode_forward, nn_gelu_mode_backward, NN_GELU_ERF);
    act_case("gelu_tanh", nn_gelu_mode_forward, nn_gelu_mode_backward, NN_GELU_TANH);
}

static void geglu_case(const char *cs, NnGelu mode) {
    float *sh = ref(cs, "shape", 2);
    int N = (int)sh[0], C = (int)sh[1];
    size_t n = (size_t)N * C;
    float *x = ref(cs, "x", 2 * n), *y = zeros(n), *dx = zeros(2 * n);
    nn_geglu_forward(y, x, N, C, mode);
    expect_close(cs, y, ref(cs, "y", n), n, 1e-6f, 1e-5f);
    nn_geglu_backward(dx, ref(cs, "dout", n), x, N, C, mode);
    expect_close(cs, dx, ref(cs, "dx", 2 * n), 2 * n, 1e-6f, 1e-5f);
}

/* The first half is the value and the second the gate, as diffusers' GEGLU chunks them. */
/* perf15: the erf form's forward is a·gelu(gate) with the vectorised GELU (nn_clip.h), the
 * same bits, on rows whose width is no multiple of a vector. */
Test(nn_diffusion, geglu_erf_forward_runs_the_vectorised_gelu) {
    Rng r;
    rng_init(&r, 50);
    int N = 7, C = 37;
    float *x = gc_randn(&r, (size_t)N * 2 * C, 2), *y = zeros((size_t)N * C);
    float *want = zeros((size_t)N * C);
    nn_geglu_forward(y, x, N, C, NN_GELU_ERF);
    for (int n = 0; n < N; n++) {
        nn_clip_gelu_forward(want + n * C, x + n * 2 * C + C, (size_t)C);
        for (int c = 0; c < C; c++)
            want[n * C + c] = x[n * 2 * C + c] * want[n * C + c];
    }
    cr_assert(memcmp(y, want, (size_t)N * C * sizeof(float)) == 0);
}

Test(nn_diffusion, geglu_matches_diffusers) {
    geglu_case("geglu_erf", NN_GELU_ERF);
    geglu_case("geglu_tanh", NN_GELU_TANH);
}

/* ---- upsampling, timestep embedding, concat, MSE --------------------------------------------- */

Test(nn_diffusion, upsample_matches_pytorch) {
    size_t n = 2 * 3 * 3 * 4;
    float *y = zeros(4 * n), *dx = zeros(n);
    nn_upsample2x_forward(y, ref("up", "x", n), 2, 3, 3, 4);
    expect_close("up", y, ref("up", "y", 4 * n), 4 * n, 0.0f, 0.0f);
    nn_upsample2x_backward(dx, ref("up", "dout", 4 * n), 2, 3, 3, 4);
    expect_close("up", dx, ref("up", "dx", n), n, 1e-6f, 1e-6f);
}

/* Arguments reach 999 radians, where one f32 ulp of the argument is 6e-5: agreement to 2e-4
 * means the same f32 steps as diffusers. */
Test(nn_diffusion, timestep_embedding_matches_diffusers) {
    float *t = ref("temb", "t", 6);
    float *y = zeros(6 * 320);
    nn_timestep_embedding_forward(y, t, 6, 320, 1, 0.0f, 1.0f, 10000.0f);
    expect_close("temb_sd", y, ref("temb_sd", "y", 6 * 320), 6 * 320, 2e-4f, 0.0f);
    float *z = zeros(6 * 33);
    nn_timestep_embedding_forward(z, t, 6, 33, 0, 1.0f, 2.0f, 5000.0f);
    expect_close("temb_odd", z, ref("temb_odd", "y", 6 * 33), 6 * 33, 2e-4f, 0.0f);
}

Test(nn_diffusion, channel_concat_and_split_match_pytorch) {
    size_t na = 2 * 3 * 4, nb = 2 * 5 * 4;
    float *a = ref("cat", "a", na), *b = ref("cat", "b", nb), *want = ref("cat", "y", na + nb);
    float *y = zeros(na + nb);
    nn_channel_concat_forward(y, a, b, 2, 3, 5, 4);
    expect_close("concat", y, want, na + nb, 0.0f, 0.0f);
    float *da = zeros(na), *db = zeros(nb), *dout = ref("cat", "dout", na + nb);
    nn_channel_concat_backward(da, db, dout, 2, 3, 5, 4);
    expect_close("concat da", da, ref("cat", "da", na), na, 0.0f, 0.0f);
    expect_close("concat db", db, ref("cat", "db", nb), nb, 0.0f, 0.0f);
    /* split is concat's inverse, and its backward concat's forward (added) */
    float *sa = zeros(na), *sb = zeros(nb), *dinp = zeros(na + nb);
    nn_channel_split_forward(sa, sb, y, 2, 3, 5, 4);
    expect_close("split a", sa, a, na, 0.0f, 0.0f);
    expect_close("split b", sb, b, nb, 0.0f, 0.0f);
    nn_channel_split_backward(dinp, ref("cat", "da", na), ref("cat", "db", nb), 2, 3, 5, 4);
    nn_channel_split_backward(dinp, NULL, ref("cat", "db", nb), 2, 3, 5, 4);
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 32; j++) {
            float d = dout[i * 32 + j];
            cr_expect_eq(dinp[i * 32 + j], j < 12 ? d : d + d, "dinp[%zu]", i * 32 + j);
        }
}

Test(nn_diffusion, mse_loss_matches_pytorch) {
    size_t n = 2 * 4 * 3 * 3;
    float *p = ref("mse", "pred", n), *q = ref("mse", "target", n);
    float loss = nn_mse_loss_forward(p, q, n);
    cr_expect_leq(fabsf(loss - ref("mse", "loss", 1)[0]), 1e-6f * loss, "loss %.9g", loss);
    float *dp = zeros(n), *dq = zeros(n);
    nn_mse_loss_backward(dp, dq, 0.7f, p, q, n);
    expect_close("mse dpred", dp, ref("mse", "dpred", n), n, 1e-7f, 1e-5f);
    expect_close("mse dtarget", dq, ref("mse", "dtarget", n), n, 1e-7f, 1e-5f);
}

/* ---- determinism across thread counts -------------------------------------------------------- */

/* Every op that splits work over the pool, forward and backward, into res. */
static size_t run_all(float *res, int threads) {
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(threads, &err);
    cr_assert_not_null(pool, "%s", err.msg);
    backend_cpu_use(pool);
    Rng r;
    rng_init(&r, 77);
    ConvShape s = {.B = 2, .C = 24, .H = 20, .W = 18, .OC = 40, .K = 3, .stride = 1, .pad = 1};
    ConvShape s2 = s;
    s2.stride = 2;
    ConvShape s1 = s;
    s1.K = 1, s1.pad = 0;
    ConvShape sd = s; /* few output channels: the direct path */
    sd.OC = 3;
    ConvShape sr = s; /* a small map, many output channels: GEMMs split by rows */
    sr.H = 8, sr.W = 8, sr.OC = 96;
    ConvShape sw = s; /* 32×32, 16 channels in: Winograd */
    sw.B = 1, sw.C = 16, sw.H = 32, sw.W = 32, sw.OC = 24;
    size_t nx = (size_t)2 * 24 * 20 * 18, ny = (size_t)2 * 40 * 20 * 18;
    float *x = gc_randn(&r, nx, 1), *w = gc_randn(&r, 96 * 24 * 9, 0.1f);
    float *b = gc_randn(&r, 96, 1), *dout = gc_randn(&r, ny, 1);
    size_t k = 0;
    const ConvShape *shapes[6] = {&s, &s2, &s1, &sd, &sr, &sw};
    size_t n_scratch = 0;
    for (int i = 0; i < 6; i++)
        if (nn_conv2d_scratch_floats(shapes[i]) > n_scratch)
            n_scratch = nn_conv2d_scratch_floats(shapes[i]);
    float *scratch = zeros(n_scratch);
    for (int i = 0; i < 6; i++) {
        const ConvShape *c = shapes[i];
        size_t nyc = (size_t)c->B * c->OC * nn_conv2d_out_h(c) * nn_conv2d_out_w(c);
        size_t nw = (size_t)c->OC * c->C * c->K * c->K;
        nn_conv2d_forward(res + k, scratch, x, w, b, c);
        k += nyc;
        nn_conv2d_backward(res + k, res + k + nx, res + k + nx + nw, scratch, dout, x, w, c);
        k += nx + nw + c->OC;
    }
    /* GroupNorm over the conv input viewed as (2, 24, 360), 8 groups */
    float *gw = gc_randn(&r, 24, 1), *gb = gc_randn(&r, 24, 1);
    float *mean = res + k, *rstd = res + k + 16;
    nn_groupnorm_forward(res + k + 32, mean, rstd, x, gw, gb, 2, 24, 360, 8, 1e-6f);
    k += 32 + nx;
    nn_groupnorm_backward(res + k, res + k + nx, res + k + nx + 24, dout, x, gw, mean, rstd, 2,
                          24, 360, 8);
    k += nx + 48;
    nn_silu_forward(res + k, x, nx);
    nn_silu_backward(res + k + nx, dout, x, nx);
    k += 2 * nx;
    nn_geglu_forward(res + k, x, 360, 24, NN_GELU_ERF); /* x as (360, 48) */
    nn_geglu_backward(res + k + nx / 2, dout, x, 360, 24, NN_GELU_ERF);
    k += nx / 2 + nx;
    nn_upsample2x_forward(res + k, x, 2, 24, 20, 18);
    nn_upsample2x_backward(res + k + 4 * nx, dout, 2, 24, 10, 9); /* dout as (2,24,20,18) */
    k += 4 * nx + nx / 4;
    backend_cpu_use(NULL);
    backend_cpu_pool_free(pool);
    return k;
}

Test(nn_diffusion, results_do_not_depend_on_threads) {
    size_t cap = (size_t)1 << 20;
    float *r1 = zeros(cap), *r2 = zeros(cap), *r3 = zeros(cap);
    size_t n = run_all(r1, 1);
    cr_assert_lt(n, cap);
    cr_assert_eq(run_all(r2, 2), n);
    cr_assert_eq(run_all(r3, 3), n);
    cr_expect_arr_eq(r1, r2, n * sizeof(float));
    cr_expect_arr_eq(r1, r3, n * sizeof(float));
}
