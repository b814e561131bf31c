/* feat_classic — the `classic` encoder. See feat_classic.h; every feature is documented in
 * doc/reward.md under the same short name.
 *
 * Design: the image is converted once into per-pixel maps (luma, saturation, hue, Sobel
 * gradient, Laplacian, Immerkær's noise residual) at a working resolution of at most
 * WORK_MAX pixels a side (integer box downsampling, so sharpness is measured at a scale
 * comparable between large and small images). One function then summarises any rectangle
 * of those maps into FEAT_CLASSIC_DIM numbers; it runs once on the whole image and once per
 * grid cell. Blockiness (8x8 JPEG-style block edges) is measured on the native-resolution
 * luma, since downsampling would hide the block grid.
 *
 * Invariants: output is a pure function of the pixels; every value is finite.
 */
#include "feat_classic.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

#define WORK_MAX 768
#define D FEAT_CLASSIC_DIM

enum {
    F_R_MEAN, F_G_MEAN, F_B_MEAN, F_R_STD, F_G_STD, F_B_STD,
    F_LUMA_MEAN, F_LUMA_STD, F_LUMA_P05, F_LUMA_P50, F_LUMA_P95,
    F_CLIP_DARK, F_CLIP_BRIGHT,
    F_SAT_MEAN, F_SAT_STD, F_SAT_CLIP,
    F_HUE_COS, F_HUE_SIN, F_COLOURFUL, F_WARM_COOL, F_GREEN_MAGENTA,
    F_DARK_CHANNEL, F_LUMA_ENTROPY,
    F_SHARPNESS, F_GRAD_MEAN, F_NOISE, F_HF_RATIO,
    F_EDGE_LO, F_EDGE_HI, F_SUBJ_CX,
    F_SAL_CX, F_SAL_CY, F_BRIGHT_CX, F_BRIGHT_CY,
    F_SYM_LR, F_SYM_TB,
    F_BLOCKINESS,
    F_POS_X, F_POS_Y,
    F_LUMA_HIST,                 /* 8 bins */
    F_HUE_HIST = F_LUMA_HIST + 8, /* 8 bins */
    F_GRAD_HIST = F_HUE_HIST + 8, /* 7 bins */
    F_SUBJ_CY = F_GRAD_HIST + 7,
    F_CHAN_CLIP,
    F_COUNT
};

_Static_assert(F_COUNT == D, "feature table and FEAT_CLASSIC_DIM disagree");

static const char *const names[D] = {
    "r_mean", "g_mean", "b_mean", "r_std", "g_std", "b_std",
    "luma_mean", "luma_std", "luma_p05", "luma_p50", "luma_p95",
    "clip_dark", "clip_bright",
    "sat_mean", "sat_std", "sat_clip",
    "hue_cos", "hue_sin", "colourfulness", "warm_cool", "green_magenta",
    "dark_channel", "luma_entropy",
    "sharpness", "grad_mean", "noise_sigma", "hf_ratio",
    "edge_density", "edge_density_strong", "subject_cx",
    "saliency_cx", "saliency_cy", "bright_cx", "bright_cy",
    "symmetry_lr", "symmetry_tb",
    "blockiness",
    "pos_x", "pos_y",
    "luma_hist0", "luma_hist1", "luma_hist2", "luma_hist3",
    "luma_hist4", "luma_hist5", "luma_hist6", "luma_hist7",
    "hue_hist0", "hue_hist1", "hue_hist2", "hue_hist3",
    "hue_hist4", "hue_hist5", "hue_hist6", "hue_hist7",
    "grad_hist0", "grad_hist1", "grad_hist2", "grad_hist3",
    "grad_hist4", "grad_hist5", "grad_hist6",
    "subject_cy",
    "channel_clip",
};

const char *const *feat_classic_image_names(void) { return names; }

/* Per-pixel maps at working resolution. */
typedef struct Maps {
    int w, h;
    float *r, *g, *b;    /* [0,1] */
    float *luma;         /* Rec. 601 luma, [0,1] */
    float *sat, *hue;    /* HSV saturation [0,1], hue in radians [0,2pi) */
    float *gx, *gy;      /* Sobel / 4: |g| <= ~1.4 */
    float *lap;          /* 4-neighbour Laplacian */
    float *noise;        /* |Immerkær mask * luma| */
    float *mag;          /* gradient magnitude */
    float *lb;           /* luma, 3x3 box mean (pixel noise averaged out) */
    float *hc, *hs;      /* saturation-weighted hue vector: s cos(hue), s sin(hue) */
    uint8_t *hbin;       /* hue histogram bin 0..7 */
    uint8_t *obin;       /* gradient orientation bin 0..7 (mod pi); 255 = no gradient */
    const float *nat;    /* native luma (blockiness), nat_w x nat_h */
    int nat_w, nat_h;
    int scale;           /* native pixels per working pixel */
} Maps;

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

/* Mean horizontal+vertical luma step across 8-pixel block borders, relative to steps inside
 * blocks, on native pixels [x0,x1)x[y0,y1). 0 = no block grid; grows with JPEG blocking. */
static float blockiness(const Maps *m, int x0, int y0, int x1, int y1) {
    double edge = 0, inner = 0;
    long n_edge = 0, n_inner = 0;
    const float *L = m->nat;
    int W = m->nat_w;
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x + 1 < x1; x++) {
            double d = fabs(L[(size_t)y * W + x + 1] - L[(size_t)y * W + x]);
            if ((x & 7) == 7) {
                edge += d;
                n_edge++;
            } else {
                inner += d;
                n_inner++;
            }
        }
    }
    for (int y = y0; y + 1 < y1; y++) {
        int on_edge = (y & 7) == 7;
        for (int x = x0; x < x1; x++) {
            double d = fabs(L[(size_t)(y + 1) * W + x] - L[(size_t)y * W + x]);
            if (on_edge) {
                edge += d;
                n_edge++;
            } else {
                inner += d;
                n_inner++;
            }
        }
    }
    if (n_edge == 0 || n_inner == 0)
        return 0.0f;
    double e = edge / (double)n_edge, i = inner / (double)n_inner;
    return clampf((float)(e / (i + 1e-3) - 1.0) / 2.0f, -0.5f, 2.0f);
}

/* Summarise the rectangle [x0,x1)x[y0,y1) of the working maps into f[D]. */
static void region_features(const Maps *m, int x0, int y0, int x1, int y1, float *f) {
    int W = m->w;
    double n = (double)(x1 - x0) * (y1 - y0);
    double s_r = 0, s_g = 0, s_b = 0, q_r = 0, q_g = 0, q_b = 0;
    double s_l = 0, q_l = 0, s_s = 0, q_s = 0, s_hc = 0, s_hs = 0;
    double s_rg = 0, q_rg = 0, s_yb = 0, q_yb = 0, s_dark = 0;
    double s_mag = 0, s_lap = 0, q_lap = 0, s_mag2 = 0;
    double sal_w = 0, sal_x = 0, sal_y = 0, br_x = 0, br_y = 0;
    long clip_dark = 0, clip_bright = 0, sat_clip = 0, chan_clip = 0, edge_lo = 0, edge_hi = 0;
    long lhist[256] = {0};
    double hue_hist[8] = {0}, grad_hist[7] = {0};
    double s_noise = 0;
    long n_noise = 0;
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            size_t i = (size_t)y * W + x;
            float r = m->r[i], g = m->g[i], b = m->b[i], l = m->luma[i], s = m->sat[i];
            s_r += r; s_g += g; s_b += b;
            q_r += r * r; q_g += g * g; q_b += b * b;
            s_l += l; q_l += (double)l * l;
            s_s += s; q_s += (double)s * s;
            s_hc += m->hc[i];
            s_hs += m->hs[i];
            hue_hist[m->hbin[i]] += s;
            double rg = r - g, yb = 0.5 * (r + g) - b;
            s_rg += rg; q_rg += rg * rg; s_yb += yb; q_yb += yb * yb;
            float mn = r < g ? r : g;
            s_dark += mn < b ? mn : b;
            int li = (int)(l * 255.0f + 0.5f);
            lhist[li < 0 ? 0 : li > 255 ? 255 : li]++;
            clip_dark += l <= 5.0f / 255;
            clip_bright += l >= 250.0f / 255;
            sat_clip += s >= 0.95f;
            chan_clip += r >= 254.0f / 255 || g >= 254.0f / 255 || b >= 254.0f / 255;
            double mag = m->mag[i];
            s_mag += mag; s_mag2 += mag * mag;
            edge_lo += mag > 0.03;
            edge_hi += mag > 0.10;
            if (m->obin[i] != 255)
                grad_hist[m->obin[i]] += mag;
            s_lap += m->lap[i]; q_lap += (double)m->lap[i] * m->lap[i];
            sal_w += mag; sal_x += mag * (x + 0.5); sal_y += mag * (y + 0.5);
            br_x += l * (x + 0.5); br_y += l * (y + 0.5);
            if (x > 0 && y > 0 && x + 1 < W && y + 1 < m->h) {
                s_noise += m->noise[i];
                n_noise++;
            }
        }
    }
    double rw = x1 - x0, rh = y1 - y0, cx = 0.5 * (x0 + x1), cy = 0.5 * (y0 + y1);
#define MEAN(s) ((s) / n)
#define STD(s, q) sqrt(fmax(0.0, (q) / n - ((s) / n) * ((s) / n)))
    f[F_R_MEAN] = (float)MEAN(s_r);
    f[F_G_MEAN] = (float)MEAN(s_g);
    f[F_B_MEAN] = (float)MEAN(s_b);
    f[F_R_STD] = (float)(2 * STD(s_r, q_r));
    f[F_G_STD] = (float)(2 * STD(s_g, q_g));
    f[F_B_STD] = (float)(2 * STD(s_b, q_b));
    f[F_LUMA_MEAN] = (float)MEAN(s_l);
    f[F_LUMA_STD] = (float)(2 * STD(s_l, q_l));
    long acc = 0;
    int p05 = -1, p50 = -1, p95 = -1;
    double entropy = 0;
    float lh[8] = {0};
    for (int k = 0; k < 256; k++) {
        acc += lhist[k];
        if (p05 < 0 && acc >= 0.05 * n) p05 = k;
        if (p50 < 0 && acc >= 0.50 * n) p50 = k;
        if (p95 < 0 && acc >= 0.95 * n) p95 = k;
        if (lhist[k]) {
            double p = lhist[k] / n;
            entropy -= p * log2(p);
        }
        lh[k / 32] += (float)(lhist[k] / n);
    }
    f[F_LUMA_P05] = p05 / 255.0f;
    f[F_LUMA_P50] = p50 / 255.0f;
    f[F_LUMA_P95] = p95 / 255.0f;
    f[F_CLIP_DARK] = (float)(clip_dark / n);
    f[F_CLIP_BRIGHT] = (float)(clip_bright / n);
    f[F_SAT_MEAN] = (float)MEAN(s_s);
    f[F_SAT_STD] = (float)(2 * STD(s_s, q_s));
    f[F_SAT_CLIP] = (float)(sat_clip / n);
    f[F_HUE_COS] = (float)MEAN(s_hc);
    f[F_HUE_SIN] = (float)MEAN(s_hs);
    /* Hasler & Süsstrunk colourfulness, ~0..1 for natural images. */
    double sd_rg = STD(s_rg, q_rg), sd_yb = STD(s_yb, q_yb);
    double mu_rg = MEAN(s_rg), mu_yb = MEAN(s_yb);
    f[F_COLOURFUL] = (float)(2 * (sqrt(sd_rg * sd_rg + sd_yb * sd_yb) +
                                  0.3 * sqrt(mu_rg * mu_rg + mu_yb * mu_yb)));
    f[F_WARM_COOL] = (float)MEAN(s_r - s_b);
    f[F_GREEN_MAGENTA] = (float)(MEAN(s_g) - 0.5 * (MEAN(s_r) + MEAN(s_b)));
    f[F_DARK_CHANNEL] = (float)MEAN(s_dark);
    f[F_LUMA_ENTROPY] = (float)(entropy / 8.0);
    double lap_var = fmax(0.0, q_lap / n - (s_lap / n) * (s_lap / n));
    f[F_SHARPNESS] = clampf((float)((log10(lap_var + 1e-6) + 6.0) / 5.0), 0.0f, 1.5f);
    f[F_GRAD_MEAN] = (float)(4 * MEAN(s_mag));
    /* Immerkær: sigma = sqrt(pi/2) / 6 * mean |N * I|. */
    double sigma = n_noise ? sqrt(M_PI / 2.0) / 6.0 * s_noise / (double)n_noise : 0.0;
    f[F_NOISE] = clampf((float)(10.0 * sigma), 0.0f, 2.0f);
    f[F_HF_RATIO] = clampf((float)(sqrt(q_lap / n) / (sqrt(s_mag2 / n) + 1e-3)) / 4.0f,
                           0.0f, 2.0f);
    f[F_EDGE_LO] = (float)(edge_lo / n);
    f[F_EDGE_HI] = (float)(edge_hi / n);
    if (sal_w > 1e-9) {
        f[F_SAL_CX] = (float)(2 * (sal_x / sal_w - cx) / rw);
        f[F_SAL_CY] = (float)(2 * (sal_y / sal_w - cy) / rh);
    } else {
        f[F_SAL_CX] = f[F_SAL_CY] = 0;
    }
    if (s_l > 1e-9) {
        f[F_BRIGHT_CX] = (float)(2 * (br_x / s_l - cx) / rw);
        f[F_BRIGHT_CY] = (float)(2 * (br_y / s_l - cy) / rh);
    } else {
        f[F_BRIGHT_CX] = f[F_BRIGHT_CY] = 0;
    }
    /* Mirror symmetry: 1 - 2 * mean |L(p) - L(mirror(p))| over the region. */
    double d_lr = 0, d_tb = 0;
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            float l = m->luma[(size_t)y * W + x];
            d_lr += fabsf(l - m->luma[(size_t)y * W + (x1 - 1 - (x - x0))]);
            d_tb += fabsf(l - m->luma[(size_t)(y1 - 1 - (y - y0)) * W + x]);
        }
    }
    /* Subject: the pixels whose smoothed luma departs from the region's median by more than
     * the 90th percentile of that departure (and at least 0.04), weighted by how far beyond
     * it they go; their centroid does not move with the subject's size, and a busy but even
     * background (texture, noise) weighs nothing. The centre when nothing stands out. */
    long dev_hist[256] = {0};
    float med = p50 / 255.0f;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            int k = (int)(fabsf(m->lb[(size_t)y * W + x] - med) * 255.0f);
            dev_hist[k > 255 ? 255 : k]++;
        }
    int thr = 255;
    for (long acc2 = 0; thr > 0; thr--) {
        acc2 += dev_hist[thr];
        if (acc2 >= 0.10 * n)
            break;
    }
    float t_dev = fmaxf((thr + 1) / 255.0f, 0.04f);
    double sx = 0, sy = 0, sn = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            float w = fabsf(m->lb[(size_t)y * W + x] - med) - t_dev;
            if (w > 0) {
                sx += w * (x + 0.5);
                sy += w * (y + 0.5);
                sn += w;
            }
        }
    f[F_SUBJ_CX] = sn > 1e-6 ? (float)(2 * (sx / sn - cx) / rw) : 0.0f;
    f[F_SUBJ_CY] = sn > 1e-6 ? (float)(2 * (sy / sn - cy) / rh) : 0.0f;
    f[F_SYM_LR] = clampf((float)(1.0 - 2.0 * d_lr / n), -1.0f, 1.0f);
    f[F_SYM_TB] = clampf((float)(1.0 - 2.0 * d_tb / n), -1.0f, 1.0f);
    int s = m->scale;
    int nx1 = x1 * s > m->nat_w ? m->nat_w : x1 * s, ny1 = y1 * s > m->nat_h ? m->nat_h : y1 * s;
    f[F_BLOCKINESS] = blockiness(m, x0 * s, y0 * s, nx1, ny1);
    f[F_POS_X] = (float)(cx / W);
    f[F_POS_Y] = (float)(cy / m->h);
    double gsum = 0;
    for (int k = 0; k < 7; k++)
        gsum += grad_hist[k];
    for (int k = 0; k < 8; k++) {
        f[F_LUMA_HIST + k] = lh[k];
        f[F_HUE_HIST + k] = (float)(hue_hist[k] / n);
    }
    for (int k = 0; k < 7; k++)
        f[F_GRAD_HIST + k] = gsum > 1e-9 ? (float)(grad_hist[k] / gsum) : 1.0f / 7;
    f[F_CHAN_CLIP] = (float)(chan_clip / n);
#undef MEAN
#undef STD
    for (int k = 0; k < D; k++)
        if (!isfinite(f[k]))
            f[k] = 0.0f;
}

static void rgb_to_hsv(float r, float g, float b, float *sat, float *hue) {
    float mx = fmaxf(r, fmaxf(g, b)), mn = fminf(r, fminf(g, b)), c = mx - mn;
    *sat = mx > 1e-6f ? c / mx : 0.0f;
    float h = 0.0f;
    if (c > 1e-6f) {
        if (mx == r)
            h = fmodf((g - b) / c + 6.0f, 6.0f);
        else if (mx == g)
            h = (b - r) / c + 2.0f;
        else
            h = (r - g) / c + 4.0f;
    }
    *hue = h / 6.0f * 2.0f * (float)M_PI;
    if (*hue >= 2.0f * (float)M_PI)
        *hue = 0.0f;
}

int feat_classic_image(const uint8_t *rgb, int w, int h, float *out, Err *err) {
    if (w < 16 || h < 16)
        return err_set(err, ERR_FORMAT,
                       "image is %dx%d pixels; the classic encoder needs at least 16x16", w, h);
    int scale = 1;
    while ((w + scale - 1) / scale > WORK_MAX || (h + scale - 1) / scale > WORK_MAX)
        scale++;
    int W = w / scale, H = h / scale;
    size_t np = (size_t)W * H, nn = (size_t)w * h;
    float *buf = malloc(sizeof(float) * (np * 15 + nn) + np * 2);
    if (!buf)
        return err_set(err, ERR_NOMEM, "out of memory for features of a %dx%d image", w, h);
    Maps m = {.w = W, .h = H, .scale = scale, .nat_w = w, .nat_h = h};
    /* 15 maps of W x H in a row (the last a spare that keeps the layout simple), then the
     * image at its natural size, then the two byte maps */
    float **maps[] = {&m.r,  &m.g,   &m.b,     &m.luma, &m.sat, &m.hue, &m.gx,
                      &m.gy, &m.lap, &m.noise, &m.mag,  &m.hc,  &m.hs,  &m.lb};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++)
        *maps[i] = buf + i * np;
    float *nat = buf + 15 * np;
    m.hbin = (uint8_t *)(nat + nn);
    m.obin = m.hbin + np;
    m.nat = nat;
    for (size_t i = 0; i < nn; i++)
        nat[i] = (0.299f * rgb[3 * i] + 0.587f * rgb[3 * i + 1] + 0.114f * rgb[3 * i + 2]) /
                 255.0f;
    /* Box downsample by `scale` (the leftover right/bottom strip is dropped). */
    float inv = 1.0f / (255.0f * (float)scale * (float)scale);
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++) {
            unsigned sr = 0, sg = 0, sb = 0;
            for (int dy = 0; dy < scale; dy++) {
                const uint8_t *p = rgb + ((size_t)(y * scale + dy) * w + (size_t)x * scale) * 3;
                for (int dx = 0; dx < scale; dx++, p += 3) {
                    sr += p[0];
                    sg += p[1];
                    sb += p[2];
                }
            }
            size_t i = (size_t)y * W + x;
            m.r[i] = sr * inv;
            m.g[i] = sg * inv;
            m.b[i] = sb * inv;
            m.luma[i] = 0.299f * m.r[i] + 0.587f * m.g[i] + 0.114f * m.b[i];
            rgb_to_hsv(m.r[i], m.g[i], m.b[i], &m.sat[i], &m.hue[i]);
            m.hc[i] = m.sat[i] * cosf(m.hue[i]);
            m.hs[i] = m.sat[i] * sinf(m.hue[i]);
            int hb = (int)(m.hue[i] / (2.0f * (float)M_PI) * 8.0f);
            m.hbin[i] = (uint8_t)(hb < 0 ? 0 : hb > 7 ? 7 : hb);
        }
    }
    /* Sobel, Laplacian and Immerkær's noise mask with replicated borders. */
    const float *L = m.luma;
    for (int y = 0; y < H; y++) {
        int ym = y > 0 ? y - 1 : 0, yp = y + 1 < H ? y + 1 : H - 1;
        for (int x = 0; x < W; x++) {
            int xm = x > 0 ? x - 1 : 0, xp = x + 1 < W ? x + 1 : W - 1;
#define P(yy, xx) L[(size_t)(yy) * W + (xx)]
            float a = P(ym, xm), b = P(ym, x), c = P(ym, xp);
            float d = P(y, xm), e = P(y, x), f = P(y, xp);
            float g = P(yp, xm), hh = P(yp, x), k = P(yp, xp);
#undef P
            size_t i = (size_t)y * W + x;
            m.gx[i] = ((c + 2 * f + k) - (a + 2 * d + g)) / 4.0f;
            m.gy[i] = ((g + 2 * hh + k) - (a + 2 * b + c)) / 4.0f;
            m.lap[i] = b + d + f + hh - 4 * e;
            m.lb[i] = (a + b + c + d + e + f + g + hh + k) / 9.0f;
            m.noise[i] = fabsf(a - 2 * b + c - 2 * d + 4 * e - 2 * f + g - 2 * hh + k);
            double gxd = m.gx[i], gyd = m.gy[i];
            double mag = sqrt(gxd * gxd + gyd * gyd);
            m.mag[i] = (float)mag;
            m.obin[i] = 255;
            if (mag > 1e-6) {
                double th = atan2(gyd, gxd); /* orientation modulo pi */
                if (th < 0)
                    th += M_PI;
                int ob = (int)(th / M_PI * 7.0);
                m.obin[i] = (uint8_t)(ob > 6 ? 6 : ob);
            }
        }
    }
    region_features(&m, 0, 0, W, H, out);
    const int G = FEAT_CLASSIC_GRID;
    for (int gy = 0; gy < G; gy++) {
        for (int gx = 0; gx < G; gx++) {
            int x0 = gx * W / G, x1 = (gx + 1) * W / G, y0 = gy * H / G, y1 = (gy + 1) * H / G;
            region_features(&m, x0, y0, x1, y1, out + (size_t)(1 + gy * G + gx) * D);
        }
    }
    free(buf);
    return 0;
}

/* ---- text ---- */

static uint64_t fnv1a(const char *s, size_t n, uint64_t seed) {
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ULL;
    }
    /* Final avalanche so nearby strings spread over buckets. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static void add_hashed(float *out, const char *s, size_t n, uint64_t seed, float weight) {
    uint64_t h = fnv1a(s, n, seed);
    out[h % D] += (h >> 63) ? -weight : weight;
}

void feat_classic_text(const char *text, float *out) {
    memset(out, 0, sizeof(float) * D);
    size_t len = strlen(text);
    /* Lower-case ASCII, everything that is not alphanumeric (or a UTF-8 byte) separates
     * words; the normalised text is " w1 w2 ... " for character trigrams. */
    char *norm = xmalloc(len + 3);
    size_t o = 0;
    norm[o++] = ' ';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (isalnum(c) || c >= 0x80)
            norm[o++] = (char)tolower(c);
        else if (norm[o - 1] != ' ')
            norm[o++] = ' ';
    }
    if (norm[o - 1] != ' ')
        norm[o++] = ' ';
    norm[o] = '\0';
    const char *prev = NULL;
    size_t prev_n = 0;
    for (size_t i = 1; i < o;) {
        size_t j = i;
        while (j < o && norm[j] != ' ')
            j++;
        if (j > i) {
            add_hashed(out, norm + i, j - i, 1, 1.0f);
            if (prev) /* the bigram is the span "prev cur" in norm */
                add_hashed(out, prev, (size_t)(norm + j - prev), 2, 0.7f);
            prev = norm + i;
            prev_n = j - i;
        }
        i = j + 1;
    }
    (void)prev_n;
    for (size_t i = 0; i + 3 <= o; i++)
        if (!(norm[i + 1] == ' '))
            add_hashed(out, norm + i, 3, 3, 0.3f);
    free(norm);
    double ss = 0;
    for (int k = 0; k < D; k++)
        ss += (double)out[k] * out[k];
    if (ss > 0) {
        float inv = (float)(1.0 / sqrt(ss));
        for (int k = 0; k < D; k++)
            out[k] *= inv;
    }
}

/* ---- encoder backend ---- */

static int enc_image(Encoder *enc, const uint8_t *rgb, int w, int h, float *out, Err *err) {
    (void)enc;
    return feat_classic_image(rgb, w, h, out, err);
}

static int enc_text(Encoder *enc, const char *text, float *out, Err *err) {
    (void)enc;
    (void)err;
    feat_classic_text(text, out);
    return 0;
}

Encoder *feat_classic_open(const char *arg, Store *st, const EncoderDevice *dev, Err *err) {
    (void)st;
    (void)dev; /* plain C on the calling thread */
    if (arg && *arg) {
        err_set(err, ERR_USAGE, "encoder 'classic' takes no argument (got 'classic:%s')", arg);
        return NULL;
    }
    Encoder *enc = encoder_alloc("classic");
    enc->dim_image = D;
    enc->n_image_tokens = FEAT_CLASSIC_TOKENS;
    enc->dim_text = D;
    enc->ops.encode_image = enc_image;
    enc->ops.encode_text = enc_text;
    return enc;
}
