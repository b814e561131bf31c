/* clip_image — decoding (image.h) and Pillow-exact bicubic resizing. See clip_image.h.
 *
 * Decoding is image.h's (the one file that compiles stb_image).
 */
#include "clip_image.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "image.h"
#include "infile.h"


const float clip_image_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float clip_image_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

#define PRECISION_BITS (32 - 8 - 2)

/* ---- decoding ------------------------------------------------------------------------------ */

/* PNG colour type 3 = palette. */
static int png_is_palette(const unsigned char *b, size_t n) {
    return n >= 26 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(b + 12, "IHDR", 4) == 0 &&
           b[25] == 3;
}

int clip_image_load(ClipImage *img, const char *path, Err *err) {
    memset(img, 0, sizeof *img);
    /* A regular file of bounded size (not a FIFO, not /dev/zero), read once: the palette
     * flag comes from its header, the pixels from image_decode (which checks the size the
     * header declares before any pixel memory is asked for). */
    unsigned char *bytes;
    size_t n;
    int rc = infile_read_all(path, "image", INFILE_MAX_IMAGE, &bytes, &n, err);
    if (rc)
        return rc;
    Image im;
    if ((rc = image_decode(bytes, n, path, 0, &im, err)) == 0) {
        img->w = im.w;
        img->h = im.h;
        img->channels = im.channels;
        img->palette = png_is_palette(bytes, n);
        img->px = im.px;
    }
    free(bytes);
    return rc;
}

void clip_image_deinit(ClipImage *img) {
    if (!img)
        return;
    free(img->px);
    img->px = NULL;
}

/* ---- Pillow's resampler -------------------------------------------------------------------- */

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* Fixed-point taps for in_size -> out_size: bounds (out, 2) = first tap, tap count; kk
 * (out, ksize). Returns ksize. */
static int coeffs(int in_size, int out_size, int **bounds_out, int32_t **kk_out) {
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = xmalloc((size_t)out_size * 2 * sizeof(int));
    int32_t *kk = xcalloc((size_t)out_size * (size_t)ksize, sizeof(int32_t));
    double *k = xmalloc((size_t)ksize * sizeof(double));
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            k[x] = bicubic((x + xmin - center + 0.5) * ss);
            ww += k[x];
        }
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? k[x] / ww : k[x];
            kk[xx * ksize + x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                                       : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static inline uint8_t clip8(int64_t v) {
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* One horizontal pass: DST (rows, dw, c) from rows [row0, row0 + rows) of SRC (*, sw, c). */
static void pass_h(uint8_t *dst, int dw, const uint8_t *src, int sw, int row0, int rows, int c,
                   const int *bounds, const int32_t *kk, int ksize) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *s = src + (size_t)(y + row0) * (size_t)sw * (size_t)c;
        uint8_t *d = dst + (size_t)y * (size_t)dw * (size_t)c;
        for (int x = 0; x < dw; x++) {
            int xmin = bounds[2 * x], xmax = bounds[2 * x + 1];
            const int32_t *k = kk + (size_t)x * (size_t)ksize;
            for (int ch = 0; ch < c; ch++) {
                int64_t ss = 1 << (PRECISION_BITS - 1);
                for (int i = 0; i < xmax; i++)
                    ss += (int64_t)s[(size_t)(xmin + i) * (size_t)c + (size_t)ch] * k[i];
                d[(size_t)x * (size_t)c + (size_t)ch] = clip8(ss);
            }
        }
    }
}

/* One vertical pass: DST (dh, w, c) from SRC (*, w, c) whose first row is source row ROW0. */
static void pass_v(uint8_t *dst, int dh, const uint8_t *src, int w, int row0, int c,
                   const int *bounds, const int32_t *kk, int ksize) {
    size_t stride = (size_t)w * (size_t)c;
    for (int y = 0; y < dh; y++) {
        int ymin = bounds[2 * y] - row0, ymax = bounds[2 * y + 1];
        const int32_t *k = kk + (size_t)y * (size_t)ksize;
        uint8_t *d = dst + (size_t)y * stride;
        for (size_t x = 0; x < stride; x++) {
            int64_t ss = 1 << (PRECISION_BITS - 1);
            for (int i = 0; i < ymax; i++)
                ss += (int64_t)src[(size_t)(ymin + i) * stride + x] * k[i];
            d[x] = clip8(ss);
        }
    }
}

void clip_image_resize_bicubic(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh,
                               int c) {
    int *bh, *bv;
    int32_t *kh, *kv;
    int ksh = coeffs(sw, dw, &bh, &kh);
    int ksv = coeffs(sh, dh, &bv, &kv);
    int need_h = dw != sw, need_v = dh != sh;
    /* Pillow 13 runs the vertical pass first when the height shrinks by more than twice
     * the pixels the width does (found by testing its output: exact on 548 random shapes);
     * otherwise horizontal first, on only the source rows the vertical pass reads. */
    int vertical_first = dh < sh && 2 * (sw - dw) < sh - dh;
    if (need_h && need_v && vertical_first) {
        uint8_t *tmp = xmalloc((size_t)dh * (size_t)sw * (size_t)c);
        pass_v(tmp, dh, src, sw, 0, c, bv, kv, ksv);
        pass_h(dst, dw, tmp, sw, 0, dh, c, bh, kh, ksh);
        free(tmp);
    } else if (need_h && need_v) {
        int y0 = bv[0], y1 = bv[2 * (dh - 1)] + bv[2 * (dh - 1) + 1];
        uint8_t *tmp = xmalloc((size_t)(y1 - y0) * (size_t)dw * (size_t)c);
        pass_h(tmp, dw, src, sw, y0, y1 - y0, c, bh, kh, ksh);
        pass_v(dst, dh, tmp, dw, y0, c, bv, kv, ksv);
        free(tmp);
    } else if (need_h) {
        pass_h(dst, dw, src, sw, 0, sh, c, bh, kh, ksh);
    } else if (need_v) {
        pass_v(dst, dh, src, sw, 0, c, bv, kv, ksv);
    } else {
        memcpy(dst, src, (size_t)sh * (size_t)sw * (size_t)c);
    }
    free(bh);
    free(bv);
    free(kh);
    free(kv);
}

/* Pillow's NEAREST resize (used for palette images). */
static void resize_nearest(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh,
                           int c) {
    for (int y = 0; y < dh; y++) {
        int sy = (int)floor((y + 0.5) * sh / dh);
        if (sy >= sh)
            sy = sh - 1;
        for (int x = 0; x < dw; x++) {
            int sx = (int)floor((x + 0.5) * sw / dw);
            if (sx >= sw)
                sx = sw - 1;
            memcpy(dst + ((size_t)y * (size_t)dw + (size_t)x) * (size_t)c,
                   src + ((size_t)sy * (size_t)sw + (size_t)sx) * (size_t)c, (size_t)c);
        }
    }
}

/* Pillow's RGBA -> RGBa (premultiply), in place, alpha the last of C channels. */
static void premultiply(uint8_t *px, size_t n, int c) {
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = px + i * (size_t)c;
        unsigned a = p[c - 1];
        for (int ch = 0; ch < c - 1; ch++) {
            unsigned t = p[ch] * a + 128;
            p[ch] = (uint8_t)((t + (t >> 8)) >> 8);
        }
    }
}

/* Pillow's RGBa -> RGBA. */
static void unpremultiply(uint8_t *px, size_t n, int c) {
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = px + i * (size_t)c;
        unsigned a = p[c - 1];
        if (a == 0 || a == 255)
            continue;
        for (int ch = 0; ch < c - 1; ch++) {
            unsigned v = 255u * p[ch] / a;
            p[ch] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

/* Python's round(x) for x = k / 2: halves to even. */
static int round_half_even(int twice) {
    int q = twice / 2;
    if (twice % 2 == 0)
        return q;
    return (q % 2 == 0) ? q : q + 1;
}

int clip_image_preprocess(float *out, const ClipImage *img, int size, ClipResizeMode mode,
                          const float mean[3], const float std[3], Err *err) {
    int c = img->channels, w = img->w, h = img->h;
    int rw, rh;
    if (mode == CLIP_RESIZE_SQUASH) {
        rw = rh = size;
    } else if (w <= h) {
        rw = size;
        rh = (int)((long long)size * h / w);
    } else {
        rh = size;
        rw = (int)((long long)size * w / h);
    }
    size_t n_src = (size_t)w * (size_t)h;
    uint8_t *src = malloc(n_src * (size_t)c);
    uint8_t *res = malloc((size_t)rw * (size_t)rh * (size_t)c);
    if (!src || !res) {
        free(src);
        free(res);
        return err_set(err, ERR_NOMEM, "no memory to resize a %dx%d image", w, h);
    }
    memcpy(src, img->px, n_src * (size_t)c);
    int alpha = c == 2 || c == 4;
    if (img->palette) {
        resize_nearest(res, rw, rh, src, w, h, c);
    } else {
        if (alpha)
            premultiply(src, n_src, c);
        clip_image_resize_bicubic(res, rw, rh, src, w, h, c);
        if (alpha)
            unpremultiply(res, (size_t)rw * (size_t)rh, c);
    }
    int top = round_half_even(rh - size), left = round_half_even(rw - size);
    size_t plane = (size_t)size * (size_t)size;
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            const uint8_t *p = res + ((size_t)(y + top) * (size_t)rw + (size_t)(x + left)) *
                                         (size_t)c;
            uint8_t rgb[3];
            if (c >= 3) {
                rgb[0] = p[0];
                rgb[1] = p[1];
                rgb[2] = p[2];
            } else {
                rgb[0] = rgb[1] = rgb[2] = p[0];
            }
            for (int ch = 0; ch < 3; ch++)
                out[(size_t)ch * plane + (size_t)y * (size_t)size + (size_t)x] =
                    ((float)rgb[ch] / 255.0f - mean[ch]) / std[ch];
        }
    free(src);
    free(res);
    return 0;
}

int clip_image_preprocess_file(float *out, const char *path, int size, ClipResizeMode mode,
                               const float mean[3], const float std[3], Err *err) {
    ClipImage img;
    int rc = clip_image_load(&img, path, err);
    if (rc != 0)
        return rc;
    rc = clip_image_preprocess(out, &img, size, mode, mean, std, err);
    clip_image_deinit(&img);
    if (rc != 0)
        err_prefix(err, "%s", path);
    return rc;
}
