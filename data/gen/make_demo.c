/* make_demo — writes easel's demo workspace: procedural scenes for 30 prompts with planted,
 * recorded defects, and ratings from three simulated annotators derived from those defects.
 *
 *   make_demo [--out DIR]       (default DIR = data)
 *
 * Writes DIR/prompts.csv, DIR/images/{prompt_id}/{seed}.png (192×192 RGB), DIR/defects.csv
 * and DIR/multihead_ratings.csv. See doc/demo.md for what each defect is and how the ratings
 * are derived.
 *
 * Design: every scene is drawn from a few antialiased primitives (gradients, rectangles,
 * ellipses, triangles, value-noise textures) into a 256×256 float RGB canvas, area-averaged
 * to 192×192; defects are applied to that image (blur, noise, colour cast, ...) or to the
 * scene layout (off-centre subject, missing subject); it is quantised once and written with
 * stb_image_write. Each aspect has its own driving defects, planted independently per image
 * (plan_images), so most pairs of images of a prompt differ in some aspect for a visible
 * reason.
 *
 * Invariant: the output is a pure function of this file. Randomness comes from a counter-
 * based hash (splitmix64) keyed by prompt, seed and purpose, never from time or rand(); the
 * pixel and rating maths uses + − × ÷ and sqrt only (IEEE-exact), no libm transcendental
 * functions whose last bit could differ between C libraries; the Makefile compiles it with
 * -ffp-contract=off so no fused multiply-add changes a rounding. Re-running it gives the same
 * bytes; tests/test_demo_data.c checks that against the committed files.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* stb_image_write's own deflate is simple; zlib at level 9 makes the PNGs ~30% smaller. */
static unsigned char *zlib_compress(unsigned char *data, int len, int *out_len, int quality) {
    (void)quality;
    uLongf n = compressBound((uLong)len);
    unsigned char *buf = malloc(n);
    if (!buf || compress2(buf, &n, data, (uLong)len, 9) != Z_OK) {
        free(buf);
        return NULL;
    }
    *out_len = (int)n;
    return buf;
}

#define STBIW_ZLIB_COMPRESS zlib_compress
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

#define W 256 /* scenes are drawn on a 256×256 canvas ... */
#define H 256
#define OW 192 /* ... and written at 192×192 (smaller files, more images) */
#define OH 192

/* ---- deterministic randomness ---------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct Rng {
    uint64_t state;
} Rng;

static Rng rng_make(uint64_t a, uint64_t b, uint64_t c) {
    Rng r = {mix64(mix64(mix64(a) ^ b) ^ c)};
    return r;
}

static uint64_t rng_next(Rng *r) { return mix64(r->state++); }

/* Uniform in [0, 1), 24 bits: exact in float and double. */
static double rng_unit(Rng *r) { return (double)(rng_next(r) >> 40) / 16777216.0; }

static double rng_range(Rng *r, double lo, double hi) { return lo + (hi - lo) * rng_unit(r); }

/* Approximately standard normal: Irwin–Hall sum of 12 uniforms minus 6 (no libm). */
static double rng_normal(Rng *r) {
    double s = 0;
    for (int i = 0; i < 12; i++)
        s += rng_unit(r);
    return s - 6.0;
}

/* ---- canvas and primitives --------------------------------------------------------------- */

typedef struct Col {
    double r, g, b;
} Col;

typedef struct Canvas {
    double px[H][W][3];
} Canvas;

/* The written image: the scene canvas area-averaged down to OW×OH; defects act on this. */
typedef struct Out {
    double px[OH][OW][3];
} Out;

static Col rgb(int r, int g, int b) {
    Col c = {r / 255.0, g / 255.0, b / 255.0};
    return c;
}

static Col mixc(Col a, Col b, double t) {
    Col c = {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
    return c;
}

static Col scalec(Col a, double s) {
    Col c = {a.r * s, a.g * s, a.b * s};
    return c;
}

static double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

static void blend(Canvas *cv, int x, int y, Col c, double a) {
    if (x < 0 || y < 0 || x >= W || y >= H || a <= 0)
        return;
    if (a > 1)
        a = 1;
    double *p = cv->px[y][x];
    p[0] += (c.r - p[0]) * a;
    p[1] += (c.g - p[1]) * a;
    p[2] += (c.b - p[2]) * a;
}

static int lo_i(double v) {
    int i = (int)v - 1;
    return i < 0 ? 0 : i;
}

static int hi_i(double v, int max) {
    int i = (int)v + 2;
    return i > max ? max : i;
}

/* Vertical gradient over rows [y0, y1). */
static void draw_vgrad(Canvas *cv, double y0, double y1, Col top, Col bottom) {
    for (int y = lo_i(y0); y < hi_i(y1, H); y++) {
        double cy = y + 0.5;
        if (cy < y0 || cy >= y1)
            continue;
        Col c = mixc(top, bottom, (cy - y0) / (y1 - y0));
        for (int x = 0; x < W; x++)
            blend(cv, x, y, c, 1);
    }
}

static double overlap(double a0, double a1, double b0, double b1) {
    double lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? hi - lo : 0;
}

/* Axis-aligned rectangle with exact fractional edge coverage. */
static void draw_rect(Canvas *cv, double x0, double y0, double x1, double y1, Col c) {
    for (int y = lo_i(y0); y < hi_i(y1, H); y++) {
        double oy = overlap(y, y + 1, y0, y1);
        if (oy <= 0)
            continue;
        for (int x = lo_i(x0); x < hi_i(x1, W); x++)
            blend(cv, x, y, c, oy * overlap(x, x + 1, x0, x1));
    }
}

/* Ellipse; SHADE > 0 darkens towards the lower right like a lit sphere. */
static void draw_ellipse_shaded(Canvas *cv, double cx, double cy, double rx, double ry, Col c,
                                double shade) {
    double rmin = rx < ry ? rx : ry;
    for (int y = lo_i(cy - ry); y < hi_i(cy + ry, H); y++) {
        for (int x = lo_i(cx - rx); x < hi_i(cx + rx, W); x++) {
            double dx = (x + 0.5 - cx) / rx, dy = (y + 0.5 - cy) / ry;
            double d = sqrt(dx * dx + dy * dy);
            double a = clamp01((1.0 - d) * rmin + 0.5);
            if (a <= 0)
                continue;
            Col k = c;
            if (shade > 0) {
                double hx = dx + 0.35, hy = dy + 0.35;
                double l = clamp01(1.0 - shade * sqrt(hx * hx + hy * hy) * 0.7);
                k = scalec(c, 0.45 + 0.55 * l);
            }
            blend(cv, x, y, k, a);
        }
    }
}

/* Lower half of an ellipse (a bowl). */
static void draw_half_ellipse(Canvas *cv, double cx, double cy, double rx, double ry, Col c) {
    double rmin = rx < ry ? rx : ry;
    for (int y = lo_i(cy); y < hi_i(cy + ry, H); y++) {
        double cov = overlap(y, y + 1, cy, cy + ry);
        for (int x = lo_i(cx - rx); x < hi_i(cx + rx, W); x++) {
            double dx = (x + 0.5 - cx) / rx, dy = (y + 0.5 - cy) / ry;
            double a = clamp01((1.0 - sqrt(dx * dx + dy * dy)) * rmin + 0.5);
            double shade = 1.0 - 0.25 * (dy > 0 ? dy : 0) - 0.1 * (dx > 0 ? dx : 0);
            blend(cv, x, y, scalec(c, shade), a * cov);
        }
    }
}

static void draw_ellipse(Canvas *cv, double cx, double cy, double rx, double ry, Col c) {
    draw_ellipse_shaded(cv, cx, cy, rx, ry, c, 0);
}

static double edge(double ax, double ay, double bx, double by, double px, double py) {
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax);
}

/* Triangle, 4×4 supersampled inside its bounding box. */
static void draw_tri(Canvas *cv, double ax, double ay, double bx, double by, double cx, double cy,
                     Col c) {
    double x0 = ax < bx ? (ax < cx ? ax : cx) : (bx < cx ? bx : cx);
    double x1 = ax > bx ? (ax > cx ? ax : cx) : (bx > cx ? bx : cx);
    double y0 = ay < by ? (ay < cy ? ay : cy) : (by < cy ? by : cy);
    double y1 = ay > by ? (ay > cy ? ay : cy) : (by > cy ? by : cy);
    double area = edge(ax, ay, bx, by, cx, cy);
    if (area == 0)
        return;
    double sg = area > 0 ? 1 : -1;
    for (int y = lo_i(y0); y < hi_i(y1, H); y++) {
        for (int x = lo_i(x0); x < hi_i(x1, W); x++) {
            int in = 0;
            for (int sy = 0; sy < 4; sy++)
                for (int sx = 0; sx < 4; sx++) {
                    double px = x + (sx + 0.5) / 4, py = y + (sy + 0.5) / 4;
                    in += sg * edge(ax, ay, bx, by, px, py) >= 0 &&
                          sg * edge(bx, by, cx, cy, px, py) >= 0 &&
                          sg * edge(cx, cy, ax, ay, px, py) >= 0;
                }
            blend(cv, x, y, c, in / 16.0);
        }
    }
}

/* Thick line segment as two triangles. */
static void draw_line(Canvas *cv, double x0, double y0, double x1, double y1, double width,
                      Col c) {
    double dx = x1 - x0, dy = y1 - y0, len = sqrt(dx * dx + dy * dy);
    if (len == 0)
        return;
    double nx = -dy / len * width / 2, ny = dx / len * width / 2;
    draw_tri(cv, x0 + nx, y0 + ny, x1 + nx, y1 + ny, x1 - nx, y1 - ny, c);
    draw_tri(cv, x0 + nx, y0 + ny, x1 - nx, y1 - ny, x0 - nx, y0 - ny, c);
}

/* Value noise in [0, 1): hashed lattice, smoothstep interpolation. */
static double lattice(int x, int y, uint64_t seed) {
    return (double)(mix64(seed ^ ((uint64_t)(uint32_t)x << 32 | (uint32_t)y)) >> 40) /
           16777216.0;
}

static double vnoise(double x, double y, uint64_t seed) {
    int xi = (int)floor(x), yi = (int)floor(y);
    double fx = x - xi, fy = y - yi;
    fx = fx * fx * (3 - 2 * fx);
    fy = fy * fy * (3 - 2 * fy);
    double a = lattice(xi, yi, seed), b = lattice(xi + 1, yi, seed);
    double c = lattice(xi, yi + 1, seed), d = lattice(xi + 1, yi + 1, seed);
    return a + (b - a) * fx + (c - a) * fy + (a - b - c + d) * fx * fy;
}

/* Multiply a rectangle by a value-noise texture: 1 ± AMOUNT, feature size SCALE pixels.
 * STRETCH > 1 elongates the features horizontally (wood grain). */
static void texture_rect(Canvas *cv, int x0, int y0, int x1, int y1, double scale,
                         double stretch, double amount, uint64_t seed) {
    scale *= 2; /* features of at least a few pixels: texture, not noise */
    for (int y = y0 < 0 ? 0 : y0; y < y1 && y < H; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x1 && x < W; x++) {
            double n = vnoise(x / (scale * stretch), y / scale, seed) * 0.7 +
                       vnoise(x / (scale * stretch * 0.4), y / (scale * 0.4), seed + 1) * 0.3;
            double m = 1 + amount * (2 * n - 1);
            for (int k = 0; k < 3; k++)
                cv->px[y][x][k] *= m;
        }
}

/* ---- defects ----------------------------------------------------------------------------- */

enum {
    D_BLUR,
    D_NOISE,
    D_OFFCENTRE,
    D_COLORCAST,
    D_LOWCONTRAST,
    D_OVEREXPOSED,
    D_BLOCKY,
    D_MISSING,
    N_DEFECTS
};

static const char *const defect_name[N_DEFECTS] = {
    "blur", "noise", "offcentre", "colorcast", "lowcontrast", "overexposed", "blocky",
    "missing_subject",
};

/* Rating penalty per unit severity, per aspect (spatial, icono, style, fidelity, material):
 * what a careful annotator would take off for this defect at full strength. Each aspect has
 * its own driving defects (the bold column in doc/demo.md), with small side effects. */
static const double penalty[N_DEFECTS][5] = {
    [D_BLUR] = {0.0, 0.3, 0.3, 4.5, 1.0},
    [D_NOISE] = {0.0, 0.0, 0.3, 4.5, 0.5},
    [D_OFFCENTRE] = {5.0, 0.3, 0.3, 0.0, 0.0},
    [D_COLORCAST] = {0.0, 0.3, 4.5, 0.3, 0.5},
    [D_LOWCONTRAST] = {0.0, 0.0, 4.0, 0.5, 0.5},
    [D_OVEREXPOSED] = {0.0, 0.0, 0.5, 1.0, 5.0},
    [D_BLOCKY] = {0.0, 0.0, 0.5, 4.0, 1.0},
    [D_MISSING] = {0.5, 6.0, 0.3, 0.0, 0.0},
};

typedef struct Defects {
    double sev[N_DEFECTS];   /* 0 = absent, else severity in (0, 1] */
    int cast;                /* colour cast kind: 0 warm, 1 green, 2 magenta, 3 blue */
    int shift_dir;           /* off-centre direction: 0 left, 1 right */
} Defects;

static void box_blur_pass(Out *cv, int r, int horizontal) {
    static double line[OW > OH ? OW : OH][3];
    int n = horizontal ? OW : OH, m = horizontal ? OH : OW;
    for (int j = 0; j < m; j++) {
        for (int i = 0; i < n; i++) {
            double s[3] = {0, 0, 0};
            for (int d = -r; d <= r; d++) {
                int q = i + d < 0 ? 0 : i + d >= n ? n - 1 : i + d;
                double *p = horizontal ? cv->px[j][q] : cv->px[q][j];
                s[0] += p[0];
                s[1] += p[1];
                s[2] += p[2];
            }
            for (int k = 0; k < 3; k++)
                line[i][k] = s[k] / (2 * r + 1);
        }
        for (int i = 0; i < n; i++) {
            double *p = horizontal ? cv->px[j][i] : cv->px[i][j];
            memcpy(p, line[i], sizeof line[i]);
        }
    }
}

static void apply_blur(Out *cv, double sev) {
    int r = 1 + (int)(sev * 3.0 + 0.5); /* 1..4 px, three passes ≈ Gaussian σ ≈ r */
    for (int pass = 0; pass < 3; pass++) {
        box_blur_pass(cv, r, 1);
        box_blur_pass(cv, r, 0);
    }
}

/* Sensor-like grain: luminance noise in 2×2-pixel grains, quantised to steps of sd/2 (what a
 * denoiser-less upscaler leaves), so the file stays small while the high-frequency energy a
 * fidelity model should notice is plainly there. */
static void apply_noise(Out *cv, double sev, Rng *rng) {
    double sd = 0.03 + 0.08 * sev;
    for (int y = 0; y < OH; y += 2)
        for (int x = 0; x < OW; x += 2) {
            double l = floor(rng_normal(rng) * 2.0 + 0.5) * sd / 2.0;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++)
                    for (int k = 0; k < 3; k++)
                        cv->px[y + dy][x + dx][k] += l;
        }
}

static void apply_colorcast(Out *cv, double sev, int kind) {
    static const double tint[4][3] = {
        {1.00, 0.55, 0.05}, {0.35, 1.00, 0.25}, {1.00, 0.20, 0.90}, {0.10, 0.45, 1.00}};
    double a = 0.25 + 0.45 * sev;
    for (int y = 0; y < OH; y++)
        for (int x = 0; x < OW; x++) {
            double *p = cv->px[y][x];
            double l = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            for (int k = 0; k < 3; k++)
                p[k] = p[k] * (1 - a) + l * tint[kind][k] * a * 1.6;
        }
}

static void apply_lowcontrast(Out *cv, double sev) {
    double keep = 1.0 - 0.75 * sev, grey = 0.55;
    for (int y = 0; y < OH; y++)
        for (int x = 0; x < OW; x++)
            for (int k = 0; k < 3; k++)
                cv->px[y][x][k] = grey + (cv->px[y][x][k] - grey) * keep;
}

static void apply_overexposed(Out *cv, double sev) {
    double gain = 1.4 + 1.4 * sev, lift = 0.08 + 0.12 * sev;
    for (int y = 0; y < OH; y++)
        for (int x = 0; x < OW; x++)
            for (int k = 0; k < 3; k++)
                cv->px[y][x][k] = cv->px[y][x][k] * gain + lift; /* clipped on output */
}

/* JPEG-like blockiness: each 8×8 block keeps only part of its detail around its mean, and
 * colours are posterised per block, leaving visible seams at block edges. */
static void apply_blocky(Out *cv, double sev) {
    double keep = 0.65 - 0.55 * sev, levels = 12 - 8 * sev;
    for (int by = 0; by < OH; by += 8)
        for (int bx = 0; bx < OW; bx += 8) {
            double m[3] = {0, 0, 0};
            for (int y = by; y < by + 8; y++)
                for (int x = bx; x < bx + 8; x++)
                    for (int k = 0; k < 3; k++)
                        m[k] += cv->px[y][x][k] / 64.0;
            for (int y = by; y < by + 8; y++)
                for (int x = bx; x < bx + 8; x++)
                    for (int k = 0; k < 3; k++) {
                        double v = m[k] + (cv->px[y][x][k] - m[k]) * keep;
                        v = floor(clamp01(v) * levels + 0.5) / levels;
                        cv->px[y][x][k] = v;
                    }
        }
}

/* ---- scenes ------------------------------------------------------------------------------ */

/* What a scene needs: the canvas, its randomness, where the subject goes (centre of the
 * subject in pixels, normally near the middle) and whether to draw the subject at all. */
typedef struct Scene {
    Canvas *cv;
    Rng *rng;
    double sx, sy;     /* subject centre */
    int subject;       /* 0 = missing_subject defect */
    uint64_t seed;     /* for textures */
} Scene;

static double jit(Scene *s, double amount) { return rng_range(s->rng, -amount, amount); }

static void scene_mountains(Scene *s) { /* 0: a serene mountain landscape at sunset */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, 170, rgb(70, 60, 140), rgb(250, 150, 80));
    draw_ellipse(cv, s->sx + jit(s, 10), 150, 26, 26, rgb(255, 220, 120));
    if (s->subject) {
        draw_tri(cv, s->sx - 110, 190, s->sx - 10 + jit(s, 8), 70 + jit(s, 10), s->sx + 90, 190,
                 rgb(90, 80, 110));
        draw_tri(cv, s->sx - 30 + jit(s, 6), 95, s->sx - 10, 70, s->sx + 12, 95,
                 rgb(240, 235, 245));
        draw_tri(cv, s->sx + 10, 190, s->sx + 80 + jit(s, 8), 100, s->sx + 170, 190,
                 rgb(110, 90, 120));
    }
    draw_tri(cv, -60, 200, 60 + jit(s, 10), 130, 180, 200, rgb(60, 70, 90));
    draw_rect(cv, 0, 185, W, H, rgb(40, 70, 60));
    texture_rect(cv, 0, 185, W, H, 6, 3, 0.25, s->seed);
}

static void scene_lighthouse(Scene *s) { /* 1: red lighthouse on a rocky cliff, stormy sea */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, 150, rgb(90, 100, 115), rgb(170, 175, 180));
    draw_vgrad(cv, 150, H, rgb(40, 70, 95), rgb(20, 40, 60));
    texture_rect(cv, 0, 150, W, H, 5, 4, 0.2, s->seed);
    double x = s->sx, top = s->sy - 70;
    draw_tri(cv, x - 90, H, x - 50, 160, x + 80, H, rgb(85, 75, 65));
    draw_tri(cv, x - 40, 175, x + 20, 150, x + 90, 200, rgb(100, 90, 80));
    texture_rect(cv, (int)(x - 90), 150, (int)(x + 90), H, 4, 1, 0.3, s->seed + 7);
    if (s->subject) {
        for (int i = 0; i < 5; i++)
            draw_rect(cv, x - 14 + i * 0.6, top + 20 + i * 22, x + 14 - i * 0.6, top + 42 + i * 22,
                      i % 2 ? rgb(240, 240, 235) : rgb(200, 30, 35));
        draw_rect(cv, x - 11, top, x + 11, top + 20, rgb(250, 240, 170));
        draw_tri(cv, x - 15, top, x, top - 16, x + 15, top, rgb(60, 40, 40));
        draw_tri(cv, x + 10, top + 10, W + 40, top - 20 + jit(s, 10), W + 40, top + 40,
                 rgb(255, 250, 200));
    }
}

static void scene_oranges(Scene *s) { /* 2: a bowl of oranges on a wooden table */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, 160, rgb(225, 215, 195), rgb(190, 175, 150));
    draw_rect(cv, 0, 160, W, H, rgb(140, 90, 50));
    texture_rect(cv, 0, 160, W, H, 3, 12, 0.3, s->seed);
    double x = s->sx, y = s->sy + 30;
    draw_ellipse(cv, x + 10, y + 52, 85, 10, rgb(110, 70, 40)); /* shadow */
    if (s->subject) {
        int n = 4 + (int)(rng_unit(s->rng) * 3);
        for (int i = 0; i < n; i++)
            draw_ellipse_shaded(cv, x - 48 + i * 96.0 / (n - 1) + jit(s, 4),
                                y - 8 - (i % 2) * 14 + jit(s, 3), 21, 21, rgb(245, 140, 20), 1);
        for (int i = 0; i < 3; i++)
            draw_ellipse_shaded(cv, x - 34 + i * 34 + jit(s, 3), y + 6 + jit(s, 2), 21, 21,
                                rgb(250, 150, 25), 1);
    }
    draw_half_ellipse(cv, x, y + 8, 78, 45, rgb(230, 232, 238));
    draw_ellipse(cv, x, y + 8, 78, 5, rgb(205, 208, 218));
}

static void scene_cabin(Scene *s) { /* 3: small cabin in a snowy pine forest */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, 170, rgb(20, 30, 70), rgb(80, 90, 140));
    draw_vgrad(cv, 170, H, rgb(225, 230, 245), rgb(190, 200, 225));
    for (int i = 0; i < 9; i++) {
        double tx = 10 + i * 30 + jit(s, 8), ty = 175 + jit(s, 6), h = 50 + jit(s, 15);
        draw_rect(cv, tx - 3, ty - 5, tx + 3, ty + 8, rgb(60, 40, 30));
        draw_tri(cv, tx - 16, ty, tx, ty - h, tx + 16, ty, rgb(25, 70, 45));
        draw_tri(cv, tx - 9, ty - h * 0.55, tx, ty - h, tx + 9, ty - h * 0.55, rgb(230, 235, 245));
    }
    if (s->subject) {
        double x = s->sx, y = s->sy + 40;
        draw_rect(cv, x - 40, y - 40, x + 40, y + 12, rgb(120, 70, 40));
        texture_rect(cv, (int)(x - 40), (int)(y - 40), (int)(x + 40), (int)(y + 12), 2, 10, 0.3,
                     s->seed);
        draw_tri(cv, x - 52, y - 38, x, y - 80, x + 52, y - 38, rgb(235, 240, 250));
        draw_rect(cv, x - 25, y - 28, x - 5, y - 10, rgb(255, 210, 90));
        draw_rect(cv, x + 10, y - 25, x + 26, y + 12, rgb(70, 40, 25));
        draw_rect(cv, x + 18, y - 78, x + 28, y - 55, rgb(90, 60, 50));
    }
}

static void scene_sailboat(Scene *s) { /* 4: a sailboat on a calm lake at dawn */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, 150, rgb(120, 150, 210), rgb(250, 190, 180));
    draw_vgrad(cv, 150, H, rgb(200, 170, 180), rgb(60, 90, 140));
    draw_tri(cv, -20, 150, 70, 118 + jit(s, 6), 160, 150, rgb(90, 100, 130));
    draw_tri(cv, 120, 150, 210, 125 + jit(s, 6), 290, 150, rgb(100, 110, 140));
    if (s->subject) {
        double x = s->sx, y = s->sy + 35;
        draw_tri(cv, x - 40, y, x + 40, y, x + 28, y + 12, rgb(120, 60, 40));
        draw_tri(cv, x - 40, y, x - 28, y + 12, x + 28, y + 12, rgb(120, 60, 40));
        draw_rect(cv, x - 1.5, y - 80, x + 1.5, y, rgb(70, 50, 40));
        draw_tri(cv, x + 3, y - 78, x + 3, y - 6, x + 45, y - 6, rgb(250, 248, 240));
        draw_tri(cv, x - 3, y - 65, x - 3, y - 6, x - 35, y - 6, rgb(235, 230, 220));
        draw_tri(cv, x - 30, y + 14, x + 30, y + 14, x, y + 60, rgb(170, 150, 165));
    }
    for (int i = 0; i < 12; i++)
        draw_rect(cv, 20 + i * 19 + jit(s, 6), 170 + i * 7, 40 + i * 19 + jit(s, 6),
                  171.2 + i * 7, rgb(230, 210, 220));
}

static void scene_city(Scene *s) { /* 5: a city skyline at night with lit windows */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, H, rgb(8, 10, 35), rgb(40, 30, 80));
    draw_ellipse(cv, 40 + jit(s, 10), 40, 14, 14, rgb(240, 240, 220));
    int n = 7;
    double x = s->sx - 128;
    for (int i = 0; i < n; i++) {
        double bw = 30 + jit(s, 6), bh = 90 + rng_unit(s->rng) * 90;
        double bx = x + i * 37, by = H - bh;
        if (!s->subject && bh > 110)
            bh = 40 + jit(s, 10), by = H - bh;
        draw_rect(cv, bx, by, bx + bw, H, rgb(25 + i * 3, 28, 45));
        for (double wy = by + 6; wy < H - 6; wy += 10)
            for (double wx = bx + 4; wx < bx + bw - 5; wx += 8)
                if (rng_unit(s->rng) < 0.45)
                    draw_rect(cv, wx, wy, wx + 4, wy + 5, rgb(255, 215, 120));
    }
}

static void scene_balloon(Scene *s) { /* 6: a hot air balloon over green hills */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, H, rgb(110, 170, 235), rgb(200, 225, 245));
    draw_ellipse(cv, 60 + jit(s, 20), 40, 30, 10, rgb(250, 250, 255));
    draw_ellipse(cv, 200 + jit(s, 20), 60, 26, 8, rgb(250, 250, 255));
    draw_ellipse(cv, 60, 270, 160, 90, rgb(90, 170, 70));
    draw_ellipse(cv, 220, 280, 150, 85, rgb(70, 150, 60));
    texture_rect(cv, 0, 180, W, H, 8, 2, 0.15, s->seed);
    if (s->subject) {
        double x = s->sx, y = s->sy - 20;
        draw_ellipse_shaded(cv, x, y, 42, 50, rgb(220, 50, 50), 0.6);
        draw_rect(cv, x - 14, y - 48, x + 14, y + 48, rgb(250, 210, 60));
        draw_rect(cv, x - 4, y - 50, x + 4, y + 49, rgb(220, 50, 50));
        draw_line(cv, x - 25, y + 40, x - 8, y + 72, 1.2, rgb(60, 40, 30));
        draw_line(cv, x + 25, y + 40, x + 8, y + 72, 1.2, rgb(60, 40, 30));
        draw_rect(cv, x - 9, y + 70, x + 9, y + 84, rgb(140, 90, 50));
    }
}

static void scene_desert(Scene *s) { /* 7: a desert with saguaro cacti under a full moon */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, 180, rgb(15, 20, 60), rgb(70, 60, 110));
    for (int i = 0; i < 30; i++) {
        double px = rng_unit(s->rng) * W, py = rng_unit(s->rng) * 150;
        draw_rect(cv, px, py, px + 1, py + 1, rgb(220, 220, 235));
    }
    draw_ellipse(cv, 200 + jit(s, 15), 50, 22, 22, rgb(245, 240, 215));
    draw_ellipse(cv, 60, 260, 200, 90, rgb(190, 140, 90));
    draw_ellipse(cv, 230, 275, 160, 90, rgb(170, 120, 80));
    texture_rect(cv, 0, 170, W, H, 3, 4, 0.15, s->seed);
    if (s->subject) {
        double x = s->sx, y = s->sy + 50;
        Col g = rgb(50, 110, 60);
        draw_rect(cv, x - 8, y - 90, x + 8, y + 10, g);
        draw_ellipse(cv, x, y - 90, 8, 8, g);
        draw_rect(cv, x - 30, y - 45, x - 8, y - 37, g);
        draw_rect(cv, x - 30, y - 70, x - 22, y - 37, g);
        draw_ellipse(cv, x - 26, y - 70, 4, 4, g);
        draw_rect(cv, x + 8, y - 30, x + 28, y - 22, g);
        draw_rect(cv, x + 20, y - 60, x + 28, y - 22, g);
        draw_ellipse(cv, x + 24, y - 60, 4, 4, g);
    }
    draw_rect(cv, 30, 200, 34, 215, rgb(50, 110, 60));
}

static void scene_sunflower(Scene *s) { /* 8: a single sunflower in a blue vase, minimalist */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, H, rgb(240, 235, 225), rgb(225, 218, 205));
    draw_rect(cv, 0, 210, W, H, rgb(200, 190, 175));
    double x = s->sx, y = s->sy;
    draw_rect(cv, x - 2, y - 40, x + 2, y + 60, rgb(60, 120, 50));
    draw_ellipse(cv, x + 14, y + 20, 14, 6, rgb(70, 140, 60));
    draw_tri(cv, x - 24, y + 60, x + 24, y + 60, x + 18, y + 130, rgb(40, 90, 170));
    draw_tri(cv, x - 24, y + 60, x - 18, y + 130, x + 18, y + 130, rgb(40, 90, 170));
    draw_ellipse(cv, x, y + 60, 24, 5, rgb(30, 70, 140));
    if (s->subject) {
        static const double dx[12] = {1, .87, .5, 0, -.5, -.87, -1, -.87, -.5, 0, .5, .87};
        static const double dy[12] = {0, .5, .87, 1, .87, .5, 0, -.5, -.87, -1, -.87, -.5};
        for (int i = 0; i < 12; i++)
            draw_ellipse(cv, x + dx[i] * 22, y - 45 + dy[i] * 22, 11, 11, rgb(250, 200, 30));
        draw_ellipse_shaded(cv, x, y - 45, 16, 16, rgb(110, 70, 30), 0.8);
    }
}

static void scene_bauhaus(Scene *s) { /* 9: geometric abstract poster, Bauhaus style */
    Canvas *cv = s->cv;
    draw_rect(cv, 0, 0, W, H, rgb(238, 230, 210));
    double x = s->sx, y = s->sy;
    draw_rect(cv, x - 100, y + 40 + jit(s, 4), x + 100, y + 48, rgb(20, 20, 20));
    draw_rect(cv, x + 5 + jit(s, 6), y - 30, x + 75, y + 40, rgb(245, 200, 30));
    draw_tri(cv, x - 90, y + 40, x - 40 + jit(s, 6), y - 60, x + 10, y + 40, rgb(30, 70, 160));
    if (s->subject)
        draw_ellipse(cv, x - 10 + jit(s, 6), y - 40, 38, 38, rgb(215, 40, 35));
    draw_rect(cv, x - 100, y - 100, x - 94, y + 48, rgb(20, 20, 20));
}

static void scene_moon(Scene *s) { /* 10: an astronaut planting a flag on the moon */
    Canvas *cv = s->cv;
    draw_rect(cv, 0, 0, W, H, rgb(5, 5, 12));
    for (int i = 0; i < 40; i++) {
        double px = rng_unit(s->rng) * W, py = rng_unit(s->rng) * 170;
        draw_rect(cv, px, py, px + 1, py + 1, rgb(230, 230, 240));
    }
    draw_ellipse_shaded(cv, 205 + jit(s, 10), 50, 24, 24, rgb(70, 130, 220), 0.9);
    draw_ellipse(cv, 200, 45, 10, 6, rgb(90, 170, 90));
    draw_ellipse(cv, 128, 300, 240, 130, rgb(150, 150, 155));
    texture_rect(cv, 0, 170, W, H, 6, 1, 0.2, s->seed);
    draw_ellipse(cv, 60 + jit(s, 10), 215, 20, 6, rgb(115, 115, 120));
    draw_ellipse(cv, 190 + jit(s, 10), 235, 26, 7, rgb(115, 115, 120));
    if (s->subject) {
        double x = s->sx, y = s->sy + 20;
        draw_rect(cv, x - 14, y - 30, x + 14, y + 12, rgb(235, 235, 235));
        draw_ellipse(cv, x, y - 42, 14, 14, rgb(240, 240, 240));
        draw_ellipse(cv, x + 3, y - 42, 9, 7, rgb(200, 150, 60));
        draw_rect(cv, x - 12, y + 12, x - 3, y + 38, rgb(225, 225, 225));
        draw_rect(cv, x + 3, y + 12, x + 12, y + 38, rgb(225, 225, 225));
        draw_rect(cv, x - 22, y - 26, x - 14, y + 4, rgb(200, 200, 205));
        draw_rect(cv, x + 30, y - 60, x + 32, y + 38, rgb(180, 180, 180));
        draw_rect(cv, x + 32, y - 60, x + 62, y - 40, rgb(220, 40, 40));
        draw_rect(cv, x + 32, y - 60, x + 44, y - 50, rgb(40, 60, 160));
    }
}

static void scene_pancakes(Scene *s) { /* 11: a stack of pancakes with syrup and berries */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, 150, rgb(245, 240, 230), rgb(220, 210, 195));
    draw_rect(cv, 0, 150, W, H, rgb(120, 85, 60));
    texture_rect(cv, 0, 150, W, H, 3, 10, 0.25, s->seed);
    double x = s->sx, y = s->sy + 50;
    draw_ellipse(cv, x, y + 10, 95, 28, rgb(250, 250, 250));
    draw_ellipse(cv, x, y + 10, 75, 20, rgb(235, 235, 240));
    if (s->subject) {
        int n = 5 + (int)(rng_unit(s->rng) * 3);
        for (int i = 0; i < n; i++) {
            draw_ellipse(cv, x + jit(s, 3), y - i * 11 + 4, 62, 18, rgb(170, 110, 50));
            draw_ellipse(cv, x + jit(s, 2), y - i * 11, 60, 16, rgb(225, 170, 95));
        }
        double top = y - (n - 1) * 11;
        draw_ellipse(cv, x, top, 40, 10, rgb(140, 70, 20));
        draw_rect(cv, x + 30, top, x + 36, top + 35, rgb(140, 70, 20));
        draw_rect(cv, x - 12, top - 10, x + 12, top - 2, rgb(255, 245, 200));
        for (int i = 0; i < 5; i++)
            draw_ellipse_shaded(cv, x - 70 + i * 8 + jit(s, 3), y + 14 + jit(s, 3), 6, 6,
                                rgb(60, 60, 150), 1);
    }
}

static void scene_bridge(Scene *s) { /* 12: a stone bridge over a river in autumn, watercolor */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, 140, rgb(180, 200, 220), rgb(235, 225, 205));
    draw_rect(cv, 0, 140, W, H, rgb(120, 150, 80));
    draw_vgrad(cv, 170, H, rgb(90, 140, 170), rgb(60, 110, 150));
    for (int i = 0; i < 10; i++) {
        double tx = rng_unit(s->rng) * W, ty = 120 + jit(s, 15);
        draw_rect(cv, tx - 2, ty, tx + 2, ty + 30, rgb(80, 55, 40));
        draw_ellipse(cv, tx, ty, 18 + jit(s, 5), 16, i % 2 ? rgb(220, 120, 40) : rgb(200, 70, 40));
    }
    if (s->subject) {
        double x = s->sx, y = s->sy + 40;
        draw_rect(cv, x - 90, y - 20, x + 90, y + 18, rgb(150, 140, 130));
        texture_rect(cv, (int)(x - 90), (int)(y - 20), (int)(x + 90), (int)(y + 18), 3, 1.5, 0.25,
                     s->seed + 3);
        draw_ellipse(cv, x, y + 25, 45, 32, rgb(75, 125, 160));
        draw_rect(cv, x - 92, y - 26, x + 92, y - 20, rgb(120, 110, 100));
    }
    texture_rect(cv, 0, 0, W, H, 14, 1, 0.06, s->seed + 5); /* watercolor paper */
}

static void scene_robot(Scene *s) { /* 13: a robot watering tulips, 3D render */
    Canvas *cv = s->cv;
    draw_vgrad(cv, 0, 160, rgb(150, 200, 240), rgb(210, 230, 245));
    draw_vgrad(cv, 160, H, rgb(110, 80, 55), rgb(85, 60, 40));
    for (int i = 0; i < 10; i++) {
        double tx = 12 + i * 26 + jit(s, 5), ty = 200 + jit(s, 8);
        draw_rect(cv, tx - 1.5, ty, tx + 1.5, ty + 30, rgb(50, 130, 50));
        Col c = i % 3 == 0 ? rgb(230, 50, 70) : i % 3 == 1 ? rgb(250, 200, 40) : rgb(200, 90, 200);
        draw_ellipse_shaded(cv, tx, ty, 7, 10, c, 0.6);
    }
    if (s->subject) {
        double x = s->sx, y = s->sy;
        draw_rect(cv, x - 25, y - 20, x + 25, y + 35, rgb(170, 180, 195));
        draw_rect(cv, x - 18, y - 50, x + 18, y - 22, rgb(190, 200, 210));
        draw_ellipse(cv, x - 8, y - 37, 5, 5, rgb(60, 200, 255));
        draw_ellipse(cv, x + 8, y - 37, 5, 5, rgb(60, 200, 255));
        draw_rect(cv, x - 1, y - 62, x + 1, y - 50, rgb(80, 80, 90));
        draw_ellipse(cv, x, y - 63, 3, 3, rgb(240, 60, 60));
        draw_rect(cv, x - 20, y + 35, x - 8, y + 60, rgb(120, 125, 140));
        draw_rect(cv, x + 8, y + 35, x + 20, y + 60, rgb(120, 125, 140));
        draw_line(cv, x + 25, y - 10, x + 50, y + 5, 7, rgb(150, 160, 175));
        draw_rect(cv, x + 45, y - 2, x + 70, y + 16, rgb(60, 150, 90));
        draw_line(cv, x + 70, y + 2, x + 85, y - 8, 3, rgb(60, 150, 90));
        for (int i = 0; i < 6; i++)
            draw_rect(cv, x + 84 + i * 2, y - 4 + i * 7, x + 85.5 + i * 2, y + i * 7,
                      rgb(120, 180, 255));
    }
}

typedef struct Prompt {
    const char *text;
    void (*draw)(Scene *);
    int n_images;    /* 2 or 3 seeds */
    double quality;  /* how well the "generator" does on this prompt: ± rating points */
} Prompt;

static const Prompt prompts[] = {
    {"A serene mountain landscape at sunset", scene_mountains, 3, 0.6},
    {"A red lighthouse on a rocky cliff, stormy sea, dramatic light", scene_lighthouse, 3, 0.2},
    {"A bowl of oranges on a wooden table, still life", scene_oranges, 3, -0.3},
    {"A small cabin in a snowy pine forest, \"cozy\" winter evening", scene_cabin, 3, 0.4},
    {"A sailboat on a calm lake at dawn", scene_sailboat, 3, 0.8},
    {"A city skyline at night with lit windows", scene_city, 2, -0.1},
    {"A hot air balloon over green hills", scene_balloon, 3, 0.3},
    {"A desert with saguaro cacti under a full moon", scene_desert, 3, -0.5},
    {"A single sunflower in a blue vase, minimalist", scene_sunflower, 3, 0.1},
    {"Geometric abstract poster, Bauhaus style: red circle, yellow square, blue triangle",
     scene_bauhaus, 3, 0.5},
    {"An astronaut planting a flag on the moon, Earth in the sky", scene_moon, 3, -0.6},
    {"A stack of pancakes with syrup and blueberries, food photography", scene_pancakes, 3, -0.2},
    {"A stone bridge over a river in autumn, watercolor", scene_bridge, 2, 0.0},
    {"A robot watering tulips in a garden, 3D render", scene_robot, 3, -0.4},
    /* the same scenes under other wordings, as a second batch of prompts would bring */
    {"Purple mountains under an orange evening sky", scene_mountains, 3, 0.2},
    {"Oranges in a bowl on a rustic wooden table", scene_oranges, 3, 0.1},
    {"A lone sailboat, pastel sky, early morning", scene_sailboat, 3, -0.3},
    {"Hot air balloon drifting above rolling hills, clear day", scene_balloon, 3, 0.6},
    {"Moonlit desert with tall cacti and stars", scene_desert, 3, -0.2},
    {"Minimalist still life: one sunflower, blue vase", scene_sunflower, 3, 0.4},
    {"Bauhaus poster with primary-colour shapes", scene_bauhaus, 3, -0.1},
    {"Fluffy pancakes stacked high, maple syrup, berries", scene_pancakes, 3, 0.3},
    {"A friendly robot tending tulips, \"toy\" 3D style", scene_robot, 3, 0.0},
    {"Lighthouse on a cliff above a grey, stormy sea", scene_lighthouse, 3, -0.4},
    {"Snowy forest cabin with warm lit windows", scene_cabin, 3, 0.3},
    {"Night skyline, tall buildings with glowing windows", scene_city, 3, -0.3},
    {"Astronaut on the lunar surface with a flag, Earth rising", scene_moon, 3, 0.2},
    {"Autumn river under an old stone bridge, soft watercolor", scene_bridge, 3, 0.5},
    {"Calm dawn lake with a small white sailboat", scene_sailboat, 3, 0.1},
    {"Still life: citrus fruit in a ceramic bowl", scene_oranges, 3, -0.1},
};
#define N_PROMPTS ((int)(sizeof prompts / sizeof prompts[0]))
#define MAX_IMAGES 128

/* ---- the plan: which image gets which defect ------------------------------------------- */

typedef struct Image {
    int prompt;
    int seed;
    Defects d;
    double truth[5];  /* the "true" rating per aspect before annotator bias and noise */
} Image;

static int plan_images(Image *img) {
    int n = 0;
    for (int p = 0; p < N_PROMPTS; p++)
        for (int sd = 0; sd < prompts[p].n_images; sd++) {
            memset(&img[n], 0, sizeof img[n]);
            img[n].prompt = p;
            img[n].seed = sd;
            n++;
        }
    /* Each image draws, independently per aspect, whether that aspect's driving defect is
     * planted (spatial: off-centre; icono: missing subject; style: colour cast or low
     * contrast; fidelity: blur, noise or blocking; material: overexposure) and how strongly
     * (severity 0.3–1). The first 6 images of a shuffled order stay clean. */
    int order[MAX_IMAGES];
    for (int i = 0; i < n; i++)
        order[i] = i;
    Rng r = rng_make(2024, 11, 27);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next(&r) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int o = 6; o < n; o++) {
        Image *im = &img[order[o]];
        Rng q = rng_make(3, (uint64_t)im->prompt, (uint64_t)im->seed);
        double u[5], kind[5];
        for (int a = 0; a < 5; a++) {
            u[a] = rng_unit(&q);
            kind[a] = rng_unit(&q);
        }
        if (u[1] < 0.35)
            im->d.sev[D_MISSING] = 0.3 + 0.7 * rng_unit(&q);
        else if (u[0] < 0.6) /* an absent subject cannot be off-centre */
            im->d.sev[D_OFFCENTRE] = 0.3 + 0.7 * rng_unit(&q);
        if (u[2] < 0.55)
            im->d.sev[kind[2] < 0.5 ? D_COLORCAST : D_LOWCONTRAST] = 0.3 + 0.7 * rng_unit(&q);
        if (u[3] < 0.55)
            im->d.sev[kind[3] < 1 / 3.0   ? D_BLUR
                      : kind[3] < 2 / 3.0 ? D_NOISE
                                          : D_BLOCKY] = 0.3 + 0.7 * rng_unit(&q);
        if (u[4] < 0.5)
            im->d.sev[D_OVEREXPOSED] = 0.3 + 0.7 * rng_unit(&q);
    }
    for (int i = 0; i < n; i++) {
        Rng q = rng_make(7, (uint64_t)img[i].prompt, (uint64_t)img[i].seed);
        img[i].d.cast = (int)(rng_next(&q) % 4);
        img[i].d.shift_dir = rng_next(&q) % 5 == 0 ? 0 : 1; /* mostly right: the generator's habit */
        for (int a = 0; a < 5; a++) {
            double t = 8.2 + prompts[img[i].prompt].quality + rng_range(&q, -0.15, 0.15);
            for (int k = 0; k < N_DEFECTS; k++)
                t -= penalty[k][a] * img[i].d.sev[k];
            img[i].truth[a] = t < 0.5 ? 0.5 : t > 9.8 ? 9.8 : t;
        }
    }
    return n;
}

/* ---- output ------------------------------------------------------------------------------ */

static int mkdirs(const char *path) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST)
        return -1;
    return 0;
}

static void write_cb(void *ctx, void *data, int size) {
    size_t done = fwrite(data, 1, (size_t)size, (FILE *)ctx);
    (void)done; /* a short write sets the stream's error flag, checked by render() */
}

static int render(const char *out, const Image *im) {
    static Canvas cv;
    memset(&cv, 0, sizeof cv);
    Rng rng = rng_make(1000 + (uint64_t)im->prompt, (uint64_t)im->seed, 1);
    Scene s = {.cv = &cv, .rng = &rng, .sx = W / 2.0, .sy = H / 2.0,
               .subject = im->d.sev[D_MISSING] == 0,
               .seed = mix64((uint64_t)im->prompt * 131 + (uint64_t)im->seed)};
    s.sx += rng_range(&rng, -6, 6);
    s.sy += rng_range(&rng, -6, 6);
    double off = im->d.sev[D_OFFCENTRE];
    if (off > 0) {
        static const double dir[2][2] = {{-1, 0}, {1, 0}};
        s.sx += dir[im->d.shift_dir][0] * (50 + 50 * off);
        s.sy += dir[im->d.shift_dir][1] * (50 + 50 * off);
    }
    prompts[im->prompt].draw(&s);

    /* area-average the 256×256 scene down to 192×192: each output pixel covers 4/3 × 4/3
     * canvas pixels, weighted by overlap */
    static Out o;
    for (int y = 0; y < OH; y++)
        for (int x = 0; x < OW; x++) {
            double y0 = y * (double)H / OH, y1 = (y + 1) * (double)H / OH;
            double x0 = x * (double)W / OW, x1 = (x + 1) * (double)W / OW;
            double acc[3] = {0, 0, 0}, wsum = 0;
            for (int cy = (int)y0; cy < H && cy < y1; cy++)
                for (int cx = (int)x0; cx < W && cx < x1; cx++) {
                    double wgt = overlap(cy, cy + 1, y0, y1) * overlap(cx, cx + 1, x0, x1);
                    for (int k = 0; k < 3; k++)
                        acc[k] += cv.px[cy][cx][k] * wgt;
                    wsum += wgt;
                }
            for (int k = 0; k < 3; k++)
                o.px[y][x][k] = acc[k] / wsum;
        }

    Rng noise = rng_make(5000 + (uint64_t)im->prompt, (uint64_t)im->seed, 2);
    const Defects *d = &im->d;
    if (d->sev[D_BLUR] > 0)
        apply_blur(&o, d->sev[D_BLUR]);
    if (d->sev[D_LOWCONTRAST] > 0)
        apply_lowcontrast(&o, d->sev[D_LOWCONTRAST]);
    if (d->sev[D_COLORCAST] > 0)
        apply_colorcast(&o, d->sev[D_COLORCAST], d->cast);
    if (d->sev[D_OVEREXPOSED] > 0)
        apply_overexposed(&o, d->sev[D_OVEREXPOSED]);
    if (d->sev[D_BLOCKY] > 0)
        apply_blocky(&o, d->sev[D_BLOCKY]);
    if (d->sev[D_NOISE] > 0)
        apply_noise(&o, d->sev[D_NOISE], &noise);

    static unsigned char px[OH][OW][3];
    for (int y = 0; y < OH; y++)
        for (int x = 0; x < OW; x++)
            for (int k = 0; k < 3; k++)
                px[y][x][k] = (unsigned char)(clamp01(o.px[y][x][k]) * 255.0 + 0.5);

    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/images/%d", out, im->prompt);
    if (mkdirs(dir)) {
        fprintf(stderr, "make_demo: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/%d.png", dir, im->seed);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "make_demo: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    int ok = stbi_write_png_to_func(write_cb, f, OW, OH, 3, px, OW * 3);
    if (!ok || ferror(f) || fclose(f)) {
        fprintf(stderr, "make_demo: writing %s failed\n", path);
        return -1;
    }
    return 0;
}

/* CSV field: quoted when it holds a comma, quote or newline; quotes doubled. */
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Simulated annotators: overall bias, per-aspect bias, noise, rounding step, and which part
 * of the work queue they have done. Images are put in one shuffled queue order (position
 * u in [0, 1)); an annotator has rated the images whose u lies in one of their [from, to)
 * bands. So the first ~45% have three raters, then two, then one, and the last ~10% are
 * still unrated — work left for the TUI. */
typedef struct Annotator {
    const char *name;
    double bias;
    double aspect_bias[5];
    double noise;
    double step;       /* 0.5 or 1 */
    double band[2][2]; /* queue positions rated: [from, to) twice */
} Annotator;

static const Annotator annotators[] = {
    {"alice", 0.3, {0.0, 0.2, -0.2, 0.0, 0.1}, 0.6, 0.5, {{0.0, 0.90}, {0, 0}}},
    {"bob", -0.4, {0.3, 0.0, 0.0, -0.3, 0.0}, 0.75, 1.0, {{0.0, 0.70}, {0, 0}}},
    {"chen", 0.2, {-0.3, 0.0, 0.3, 0.3, -0.3}, 0.9, 1.0, {{0.0, 0.45}, {0.70, 0.80}}},
};
#define N_ANNOTATORS 3

static const char *const aspect_col[5] = {"spatial_rating", "icono_rating", "style_rating",
                                          "fidelity_rating", "material_rating"};

static double round_step(double v, double step) { return floor(v / step + 0.5) * step; }

static int write_csvs(const char *out, const Image *img, int n) {
    char path[600];
    snprintf(path, sizeof path, "%s/prompts.csv", out);
    FILE *f = fopen(path, "wb");
    if (!f)
        goto fail;
    fputs("prompt_id,prompt\n", f);
    for (int p = 0; p < N_PROMPTS; p++) {
        fprintf(f, "%d,", p);
        csv_field(f, prompts[p].text);
        fputc('\n', f);
    }
    if (ferror(f) | fclose(f))
        goto fail;

    snprintf(path, sizeof path, "%s/defects.csv", out);
    if (!(f = fopen(path, "wb")))
        goto fail;
    static const char *const cast_name[4] = {"warm", "green", "magenta", "blue"};
    static const char *const dir_name[2] = {"left", "right"};
    fputs("prompt_id,seed,image_path,defect,severity,detail\n", f);
    for (int i = 0; i < n; i++) {
        int any = 0;
        for (int k = 0; k < N_DEFECTS; k++) {
            double sv = img[i].d.sev[k];
            if (sv <= 0)
                continue;
            any = 1;
            const char *detail = k == D_COLORCAST   ? cast_name[img[i].d.cast]
                                 : k == D_OFFCENTRE ? dir_name[img[i].d.shift_dir]
                                                    : "";
            fprintf(f, "%d,%d,images/%d/%d.png,%s,%.2f,%s\n", img[i].prompt, img[i].seed,
                    img[i].prompt, img[i].seed, defect_name[k], sv, detail);
        }
        if (!any)
            fprintf(f, "%d,%d,images/%d/%d.png,none,0.00,\n", img[i].prompt, img[i].seed,
                    img[i].prompt, img[i].seed);
    }
    if (ferror(f) | fclose(f))
        goto fail;

    snprintf(path, sizeof path, "%s/multihead_ratings.csv", out);
    if (!(f = fopen(path, "wb")))
        goto fail;
    fputs("prompt_id,image_path", f);
    for (int a = 0; a < 5; a++)
        fprintf(f, ",%s", aspect_col[a]);
    fputs(",annotator\n", f);
    int pos[MAX_IMAGES];
    for (int i = 0; i < n; i++)
        pos[i] = i;
    Rng shuf = rng_make(31, 41, 59);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next(&shuf) % (uint64_t)(i + 1)), t = pos[i];
        pos[i] = pos[j];
        pos[j] = t;
    }
    for (int r = 0; r < N_ANNOTATORS; r++) {
        const Annotator *an = &annotators[r];
        for (int i = 0; i < n; i++) {
            Rng q = rng_make(9000 + (uint64_t)r, (uint64_t)img[i].prompt, (uint64_t)img[i].seed);
            double u = (double)pos[i] / n;
            if (!(u >= an->band[0][0] && u < an->band[0][1]) &&
                !(u >= an->band[1][0] && u < an->band[1][1]))
                continue;
            fprintf(f, "%d,images/%d/%d.png", img[i].prompt, img[i].prompt, img[i].seed);
            for (int a = 0; a < 5; a++) {
                double v = img[i].truth[a] + an->bias + an->aspect_bias[a] +
                           an->noise * rng_normal(&q);
                v = round_step(v, an->step);
                v = v < 0 ? 0 : v > 10 ? 10 : v;
                /* now and then an aspect is left blank: "not sure" */
                if (rng_unit(&q) < 0.03)
                    fputc(',', f);
                else if (an->step < 1)
                    fprintf(f, ",%.1f", v);
                else
                    fprintf(f, ",%.0f", v);
            }
            fprintf(f, ",%s\n", an->name);
        }
    }
    if (ferror(f) | fclose(f))
        goto fail;
    return 0;
fail:
    fprintf(stderr, "make_demo: cannot write %s: %s\n", path, strerror(errno));
    return -1;
}

int main(int argc, char **argv) {
    const char *out = "data";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: make_demo [--out DIR]\n\nWrites easel's demo workspace into DIR "
                   "(default data): prompts.csv,\nimages/{prompt_id}/{seed}.png, defects.csv, "
                   "multihead_ratings.csv.\n\nexample:\n  build/gen/make_demo --out data\n");
            return 0;
        } else {
            fprintf(stderr, "make_demo: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    static Image img[MAX_IMAGES];
    int n = plan_images(img);
    if (mkdirs(out)) {
        fprintf(stderr, "make_demo: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    for (int i = 0; i < n; i++)
        if (render(out, &img[i]))
            return 1;
    if (write_csvs(out, img, n))
        return 1;
    printf("make_demo: %d prompts, %d images in %s\n", N_PROMPTS, n, out);
    return 0;
}
