/* gfx_encode — frame geometry and the three encoders: sixel (libsixel low-level API), Unicode
 * upper-half blocks (truecolor or xterm-256 colours), ascii. See gfx.h.
 *
 * Design: a frame is drawn relative to the cursor and covers its whole box, so the caller
 * positions the cursor once and a new frame always hides the old one. Sixel frames come from
 * gfx_sixel.c: a palette fitted in OKLab with as many registers as the terminal reports (256
 * when it does not say) and as the image needs, error diffusion, our own writer. On the demo
 * images that is 44 dB against libsixel's 35 dB at about the same bytes, and a sunset sky
 * without bands (bench/bench_sixel.c, doc/perf.md). EASEL_SIXEL_DITHER=none turns diffusion
 * off; =libsixel is the previous encoder (libsixel's median cut with Atkinson diffusion),
 * kept so the bench can show the difference.
 */
#include "gfx.h"
#include "gfx_int.h"

#include <math.h>
#include <sixel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- geometry ------------------------------------------------------------------------------ */

static void fit(int src_w, int src_h, double box_w, double box_h, double *w, double *h) {
    if (src_w <= 0 || src_h <= 0) {
        *w = box_w;
        *h = box_h;
        return;
    }
    double s = box_w / src_w < box_h / src_h ? box_w / src_w : box_h / src_h;
    *w = src_w * s;
    *h = src_h * s;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

GfxGeom gfx_geom(GfxMode mode, const GfxCaps *caps, int cols, int rows, int src_w, int src_h) {
    GfxGeom g = {0};
    if (cols <= 0 || rows <= 0 || mode == GFX_NONE)
        return g;
    int cw = caps->cell_w > 0 ? caps->cell_w : 10;
    int ch = caps->cell_h > 0 ? caps->cell_h : 20;
    double w, h;
    if (mode == GFX_SIXEL) {
        int pw = cols * cw, ph = rows * ch;
        if (caps->max_w > 0 && pw > caps->max_w)
            pw = caps->max_w;
        if (caps->max_h > 0 && ph > caps->max_h)
            ph = caps->max_h;
        ph -= ph % 6;
        if (ph < 6)
            ph = 6;
        fit(src_w, src_h, pw, ph, &w, &h);
        g.canvas_w = pw;
        g.canvas_h = ph;
        g.img_w = clampi((int)floor(w + 1e-9), 1, pw);
        g.img_h = clampi((int)floor(h + 1e-9), 1, ph);
        g.cols = (pw + cw - 1) / cw;
        g.rows = (ph + ch - 1) / ch;
        return g;
    }
    fit(src_w, src_h, (double)cols * cw, (double)rows * ch, &w, &h);
    g.cols = cols;
    g.rows = rows;
    if (mode == GFX_BLOCKS) {
        g.canvas_w = cols;
        g.canvas_h = 2 * rows;
        g.img_w = clampi((int)lround(w / cw), 1, cols);
        g.img_h = clampi((int)lround(h / (ch / 2.0)), 1, 2 * rows);
    } else {
        g.canvas_w = cols;
        g.canvas_h = rows;
        g.img_w = clampi((int)lround(w / cw), 1, cols);
        g.img_h = clampi((int)lround(h / ch), 1, rows);
    }
    return g;
}

/* ---- a growing byte buffer (gfx_int.h; gfx_sixel.c writes sixel into it too) ----------------- */

void gfx_buf_add(GfxBuf *b, const void *p, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->oom = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_str(GfxBuf *b, const char *s) { gfx_buf_add(b, s, strlen(s)); }

/* ---- sixel --------------------------------------------------------------------------------- */

/* EASEL_SIXEL_DITHER=none turns our diffusion off; =libsixel uses libsixel's own palette
 * and Atkinson diffusion (what easel did before: kept to compare in bench/bench_sixel.c). */
static const char *dither_env(void) {
    const char *d = getenv("EASEL_SIXEL_DITHER");
    return d ? d : "";
}

static int libsixel_write_cb(char *data, int size, void *priv) {
    gfx_buf_add(priv, data, (size_t)size);
    return 0;
}

static int encode_libsixel(const GfxGeom *g, const uint8_t *canvas, int colors, GfxBuf *b,
                           Err *err) {
    sixel_output_t *out = NULL;
    sixel_dither_t *dither = NULL;
    int rc = 0;
    if (SIXEL_FAILED(sixel_output_new(&out, libsixel_write_cb, b, NULL)))
        return err_set(err, ERR_NOMEM, "libsixel: cannot create an output");
    sixel_output_set_encode_policy(out, SIXEL_ENCODEPOLICY_SIZE);
    if (SIXEL_FAILED(sixel_dither_new(&dither, colors, NULL))) {
        rc = err_set(err, ERR_NOMEM, "libsixel: cannot create a palette of %d colours", colors);
        goto out_output;
    }
    /* sixel_dither_initialize and sixel_encode write into the pixels: work on a copy. */
    size_t n = (size_t)g->canvas_w * (size_t)g->canvas_h * 3;
    unsigned char *copy = malloc(n);
    if (!copy) {
        rc = err_set(err, ERR_NOMEM, "out of memory encoding a %dx%d sixel", g->canvas_w,
                     g->canvas_h);
        goto out_dither;
    }
    memcpy(copy, canvas, n);
    if (SIXEL_FAILED(sixel_dither_initialize(dither, copy, g->canvas_w, g->canvas_h,
                                             SIXEL_PIXELFORMAT_RGB888, SIXEL_LARGE_AUTO,
                                             SIXEL_REP_AUTO, SIXEL_QUALITY_AUTO))) {
        rc = err_set(err, ERR_FORMAT, "libsixel: cannot build a palette");
        goto out_copy;
    }
    sixel_dither_set_diffusion_type(dither, SIXEL_DIFFUSE_ATKINSON);
    memcpy(copy, canvas, n);
    if (SIXEL_FAILED(sixel_encode(copy, g->canvas_w, g->canvas_h, 3, dither, out)))
        rc = err_set(err, ERR_FORMAT, "libsixel: encoding failed");
out_copy:
    free(copy);
out_dither:
    sixel_dither_unref(dither);
out_output:
    sixel_output_unref(out);
    return rc;
}

/* Ours (gfx_sixel.c): a palette fitted to the image, diffusion, our writer. The padding
 * around the image gets a black register of its own, so no dithering bleeds into it. */
static int encode_sixel(const GfxGeom *g, const uint8_t *canvas, int colors, GfxBuf *b, Err *err) {
    if (strcmp(dither_env(), "libsixel") == 0)
        return encode_libsixel(g, canvas, colors, b, err);
    int iw = g->img_w < g->canvas_w ? g->img_w : g->canvas_w;
    int ih = g->img_h < g->canvas_h ? g->img_h : g->canvas_h;
    int padded = iw < g->canvas_w || ih < g->canvas_h;
    GfxPalette *pal = malloc(sizeof *pal);
    uint8_t *idx = malloc((size_t)g->canvas_w * (size_t)g->canvas_h);
    uint8_t *sub = malloc((size_t)iw * (size_t)ih);
    int rc = 0;
    if (!pal || !idx || !sub) {
        rc = err_set(err, ERR_NOMEM, "out of memory encoding a %dx%d sixel", g->canvas_w,
                     g->canvas_h);
        goto out;
    }
    if ((rc = gfx_palette_fit(canvas, iw, ih, g->canvas_w, padded ? colors - 1 : colors, pal,
                              err)))
        goto out;
    GfxDiffusion kind = strcmp(dither_env(), "none") == 0 ? GFX_DIFFUSE_NONE : GFX_DIFFUSE_FS;
    if ((rc = gfx_dither(canvas, iw, ih, g->canvas_w, pal, kind, sub, err)))
        goto out;
    int black = 0;
    if (padded) {
        black = pal->n;
        for (int i = 0; i < pal->n; i++)
            if (!pal->rgb[i][0] && !pal->rgb[i][1] && !pal->rgb[i][2])
                black = i;
        if (black == pal->n)
            memset(pal->rgb[pal->n++], 0, 3);
    }
    for (int y = 0; y < g->canvas_h; y++) {
        uint8_t *row = idx + (size_t)y * g->canvas_w;
        if (y < ih) {
            memcpy(row, sub + (size_t)y * iw, (size_t)iw);
            memset(row + iw, black, (size_t)(g->canvas_w - iw));
        } else {
            memset(row, black, (size_t)g->canvas_w);
        }
    }
    char *data = NULL;
    size_t len = 0;
    if ((rc = gfx_sixel_write(idx, g->canvas_w, g->canvas_h, pal, &data, &len, err)))
        goto out;
    gfx_buf_add(b, data, len);
    free(data);
out:
    free(pal);
    free(idx);
    free(sub);
    return rc;
}

/* ---- half blocks and ascii ------------------------------------------------------------------ */

static void sgr_color(GfxBuf *b, int fg, const uint8_t *p, int truecolor) {
    char s[40];
    if (truecolor)
        snprintf(s, sizeof s, "\033[%d;2;%d;%d;%dm", fg ? 38 : 48, p[0], p[1], p[2]);
    else
        snprintf(s, sizeof s, "\033[%d;5;%dm", fg ? 38 : 48, gfx_xterm256(p));
    buf_str(b, s);
}

static void row_end(GfxBuf *b, int cols) {
    char s[32];
    snprintf(s, sizeof s, "\033[0m\033[%dD\033[B", cols);
    buf_str(b, s);
}

static void encode_blocks(const GfxGeom *g, const uint8_t *canvas, int truecolor, GfxBuf *b) {
    static const char upper_half[] = "\xe2\x96\x80"; /* U+2580 */
    for (int r = 0; r < g->rows; r++) {
        const uint8_t *last_fg = NULL, *last_bg = NULL;
        for (int c = 0; c < g->cols; c++) {
            int y0 = 2 * r, y1 = 2 * r + 1;
            if (c >= g->img_w || y0 >= g->img_h) {
                if (last_fg || last_bg)
                    buf_str(b, "\033[0m");
                last_fg = last_bg = NULL;
                buf_str(b, " ");
                continue;
            }
            const uint8_t *top = canvas + ((size_t)y0 * g->canvas_w + c) * 3;
            const uint8_t *bot = y1 < g->img_h ? canvas + ((size_t)y1 * g->canvas_w + c) * 3 : NULL;
            if (!last_fg || memcmp(last_fg, top, 3) != 0)
                sgr_color(b, 1, top, truecolor);
            last_fg = top;
            if (bot) {
                if (!last_bg || memcmp(last_bg, bot, 3) != 0)
                    sgr_color(b, 0, bot, truecolor);
                last_bg = bot;
            } else if (last_bg) {
                buf_str(b, "\033[49m");
                last_bg = NULL;
            }
            buf_str(b, upper_half);
        }
        row_end(b, g->cols);
    }
}

static void encode_ascii(const GfxGeom *g, const uint8_t *canvas, GfxBuf *b) {
    static const char ramp[] = " .:-=+*#%@";
    for (int r = 0; r < g->rows; r++) {
        for (int c = 0; c < g->cols; c++) {
            char ch = ' ';
            if (c < g->img_w && r < g->img_h) {
                const uint8_t *p = canvas + ((size_t)r * g->canvas_w + c) * 3;
                int y = (299 * p[0] + 587 * p[1] + 114 * p[2]) / 1000;
                ch = ramp[y * 9 / 255];
            }
            gfx_buf_add(b, &ch, 1);
        }
        row_end(b, g->cols);
    }
}

/* ---- frames -------------------------------------------------------------------------------- */

int gfx_frame_encode(GfxMode mode, const GfxGeom *geom, const GfxImage *img, int colors,
                     int truecolor, GfxFrame *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (mode == GFX_NONE || geom->canvas_w <= 0 || geom->canvas_h <= 0)
        return err_set(err, ERR_USAGE, "no graphics mode to encode in");
    size_t n = (size_t)geom->canvas_w * (size_t)geom->canvas_h * 3;
    uint8_t *canvas = calloc(n, 1); /* padding is black */
    if (!canvas)
        return err_set(err, ERR_NOMEM, "out of memory for a %dx%d frame", geom->canvas_w,
                       geom->canvas_h);
    int w = img->w < geom->canvas_w ? img->w : geom->canvas_w;
    int h = img->h < geom->canvas_h ? img->h : geom->canvas_h;
    for (int y = 0; y < h; y++)
        memcpy(canvas + (size_t)y * geom->canvas_w * 3, img->px + (size_t)y * img->w * 3,
               (size_t)w * 3);
    GfxBuf b = {0};
    int rc = 0;
    if (colors <= 1 || colors > 256)
        colors = 256;
    if (mode == GFX_SIXEL)
        rc = encode_sixel(geom, canvas, colors, &b, err);
    else if (mode == GFX_BLOCKS)
        encode_blocks(geom, canvas, truecolor, &b);
    else
        encode_ascii(geom, canvas, &b);
    free(canvas);
    if (!rc && b.oom)
        rc = err_set(err, ERR_NOMEM, "out of memory holding a frame");
    if (rc) {
        free(b.data);
        return rc;
    }
    out->mode = mode;
    out->cols = geom->cols;
    out->rows = geom->rows;
    out->geom = *geom;
    out->data = b.data;
    out->len = b.len;
    return 0;
}

int gfx_frame_render(GfxMode mode, const GfxCaps *caps, const GfxImage *src, int cols, int rows,
                     GfxFrame *out, Err *err) {
    GfxGeom g = gfx_geom(mode, caps, cols, rows, src->w, src->h);
    GfxImage scaled;
    int rc = gfx_image_resize(src, g.img_w, g.img_h, &scaled, err);
    if (rc)
        return rc;
    int colors = caps->color_registers > 0 && caps->color_registers < 256 ? caps->color_registers
                                                                           : 256;
    rc = gfx_frame_encode(mode, &g, &scaled, colors, caps->truecolor, out, err);
    gfx_image_deinit(&scaled);
    return rc;
}

void gfx_frame_deinit(GfxFrame *f) {
    if (!f)
        return;
    free(f->data);
    f->data = NULL;
    f->len = 0;
}
