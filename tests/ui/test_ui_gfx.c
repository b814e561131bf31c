/* Tests for ui/gfx_*.c with no terminal: probe replies, mode choice, geometry, decoding,
 * the pixel round trip (encode to sixel, decode with libsixel's sixel_decode_raw, PSNR), the
 * half-block encoder decoded back, and the frame cache with its worker. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <sixel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gfx.h"
#include "support.h"
#include "support_fixtures.h"

/* A photo-like test picture: smooth gradients, a disc, soft stripes. Deterministic. */
static GfxImage picture(int w, int h) {
    GfxImage img = {w, h, malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            double u = (double)x / w, v = (double)y / h;
            double r = 200 * u + 30 + 20 * sin(12 * v);
            double g = 180 * v + 40 * sin(6 * u);
            double b = 120 + 100 * sin(3 * (u + v));
            double dx = u - 0.6, dy = v - 0.4;
            if (dx * dx + dy * dy < 0.04) {
                r = 240 - 100 * v;
                g = 200 * u;
                b = 60;
            }
            uint8_t *p = img.px + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)fmin(255, fmax(0, r));
            p[1] = (uint8_t)fmin(255, fmax(0, g));
            p[2] = (uint8_t)fmin(255, fmax(0, b));
        }
    }
    return img;
}

/* PSNR of A's top-left W x H against B (both RGB, given strides in pixels). */
static double psnr(const uint8_t *a, int stride_a, const uint8_t *b, int stride_b, int w, int h) {
    double se = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w * 3; x++) {
            double d = (double)a[(size_t)y * stride_a * 3 + x] - b[(size_t)y * stride_b * 3 + x];
            se += d * d;
        }
    double mse = se / ((double)w * h * 3);
    return mse == 0 ? 99.0 : 10 * log10(255.0 * 255.0 / mse);
}

Test(ui_gfx, probe_parse_xterm_vt340) {
    GfxCaps c = {0};
    const char r[] = "\033[?1;0;256S\033[?2;0;1000;1000S\033[?63;1;2;3;4;6;9;15;22c";
    cr_assert_eq(gfx_probe_parse(r, sizeof r - 1, &c), 1);
    cr_assert(c.answered);
    cr_assert(c.sixel);
    cr_assert_eq(c.color_registers, 256);
    cr_assert_eq(c.max_w, 1000);
    cr_assert_eq(c.max_h, 1000);
}

Test(ui_gfx, probe_parse_tmux_cell_size_and_garbage) {
    GfxCaps c = {0};
    const char r[] = "\033[6;16;8t\033[?1;2c";
    cr_assert_eq(gfx_probe_parse(r, sizeof r - 1, &c), 1);
    cr_assert_not(c.sixel, "4 is not in ?1;2");
    cr_assert_eq(c.cell_w, 8);
    cr_assert_eq(c.cell_h, 16);
    cr_assert_eq(c.cell_from, 1);
    GfxCaps d = {0};
    const char g[] = "xx\033[?1;3;0S\033[?2;0;1\033[?64;4";  /* failed item, truncated replies */
    cr_assert_eq(gfx_probe_parse(g, sizeof g - 1, &d), 0, "no DA1 seen");
    cr_assert_eq(d.color_registers, 0);
    cr_assert_not(d.sixel);
}

Test(ui_gfx, mode_choice) {
    GfxCaps c = {.sixel = 1, .utf8 = 1};
    char note[256];
    cr_assert_eq(gfx_mode_choose(&c, NULL, note, sizeof note, NULL), GFX_SIXEL);
    c.in_mux = GFX_MUX_TMUX;
    cr_assert_eq(gfx_mode_choose(&c, NULL, note, sizeof note, NULL), GFX_BLOCKS,
                 "tmux/screen default to blocks");
    c.utf8 = 0;
    cr_assert_eq(gfx_mode_choose(&c, NULL, note, sizeof note, NULL), GFX_ASCII);
    cr_assert_eq(gfx_mode_choose(&c, "sixel", note, sizeof note, NULL), GFX_SIXEL,
                 "the override wins where the multiplexer says it has sixel (tmux 3.4)");
    cr_assert_str_empty(note);
    cr_assert_eq(gfx_mode_choose(&c, "none", note, sizeof note, NULL), GFX_NONE);
    Err err = {0};
    cr_assert_eq(gfx_mode_choose(&c, "kitty", note, sizeof note, &err), -1);
    cr_assert_eq(err.code, ERR_USAGE);
    cr_assert(strstr(err.msg, "sixel, blocks, ascii or none"), "%s", err.msg);
}

Test(ui_gfx, sixel_in_tmux_without_sixel_falls_back_and_says_why) {
    GfxCaps c = {.answered = 1, .sixel = 0, .in_mux = GFX_MUX_TMUX, .utf8 = 1};
    char note[256];
    cr_assert_eq(gfx_mode_choose(&c, "sixel", note, sizeof note, NULL), GFX_BLOCKS);
    cr_assert(strstr(note, "tmux does not pass it through"), "%s", note);
    cr_assert(strstr(note, "allow-passthrough"), "%s", note);
    cr_assert(strstr(note, "showing blocks"), "%s", note);
    c.in_mux = GFX_MUX_SCREEN;
    c.utf8 = 0;
    cr_assert_eq(gfx_mode_choose(&c, "sixel", note, sizeof note, NULL), GFX_ASCII);
    cr_assert(strstr(note, "GNU screen"), "%s", note);
    c.in_mux = 0; /* a plain terminal that did not answer: the user's word wins */
    cr_assert_eq(gfx_mode_choose(&c, "sixel", note, sizeof note, NULL), GFX_SIXEL);
    cr_assert_str_empty(note);
}

Test(ui_gfx, geometry) {
    GfxCaps c = {.cell_w = 10, .cell_h = 20, .max_w = 1000, .max_h = 1000};
    GfxGeom g = gfx_geom(GFX_SIXEL, &c, 60, 30, 1024, 1024);
    cr_assert_eq(g.canvas_w, 600);
    cr_assert_eq(g.canvas_h, 600);
    cr_assert_eq(g.img_w, 600);
    cr_assert_eq(g.img_h, 600);
    cr_assert_eq(g.cols, 60);
    cr_assert_eq(g.rows, 30);
    /* clamped to the terminal's maximum, height a multiple of 6 */
    c.max_w = 400;
    c.max_h = 250;
    g = gfx_geom(GFX_SIXEL, &c, 60, 30, 1024, 512);
    cr_assert_eq(g.canvas_w, 400);
    cr_assert_eq(g.canvas_h, 246);
    cr_assert_eq(g.img_w, 400);
    cr_assert_eq(g.img_h, 200, "aspect 2:1 kept");
    cr_assert_eq(g.rows, 13);
    /* a tall image in a wide box */
    c.max_w = c.max_h = 0;
    g = gfx_geom(GFX_SIXEL, &c, 60, 15, 300, 600);
    cr_assert_eq(g.canvas_h, 300);
    cr_assert_eq(g.img_h, 300);
    cr_assert_eq(g.img_w, 150);
    /* half blocks: two pixels per cell vertically */
    g = gfx_geom(GFX_BLOCKS, &c, 40, 20, 512, 512);
    cr_assert_eq(g.canvas_w, 40);
    cr_assert_eq(g.canvas_h, 40);
    cr_assert_eq(g.img_w, 40);
    cr_assert_eq(g.img_h, 40);
    g = gfx_geom(GFX_ASCII, &c, 40, 20, 512, 512);
    cr_assert_eq(g.img_w, 40);
    cr_assert_eq(g.img_h, 20);
    g = gfx_geom(GFX_NONE, &c, 40, 20, 512, 512);
    cr_assert_eq(g.cols, 0);
}

Test(ui_gfx, decode_errors_name_the_file) {
    char dir[] = "/tmp/easel-gfx-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    support_write_file(dir, "broken.png", "\x89PNG\r\n\x1a\nnot really", path, sizeof path);
    GfxImage img;
    Err err = {0};
    cr_assert_eq(gfx_image_load(path, &img, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "broken.png"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/absent.png", dir);
    cr_assert_eq(gfx_image_load(path, &img, &err), ERR_IO);
    cr_assert(strstr(err.msg, "absent.png"), "%s", err.msg);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(ui_gfx, sixel_round_trip_psnr_above_30db) {
    GfxImage src = picture(512, 512);
    GfxCaps c = {.cell_w = 8, .cell_h = 16, .max_w = 1000, .max_h = 1000};
    GfxFrame fr;
    Err err = {0};
    cr_assert_eq(gfx_frame_render(GFX_SIXEL, &c, &src, 60, 30, &fr, &err), 0, "%s", err.msg);
    GfxGeom g = fr.geom;
    cr_assert_eq(g.img_w, 480);
    cr_assert_eq(g.img_h, 480);
    cr_assert(fr.len > 1000);
    cr_assert_eq(memcmp(fr.data, "\033P", 2), 0, "a DCS sixel sequence");

    sixel_allocator_t *al = NULL;
    cr_assert(SIXEL_SUCCEEDED(sixel_allocator_new(&al, NULL, NULL, NULL, NULL)));
    unsigned char *idx = NULL, *pal = NULL;
    int w = 0, h = 0, nc = 0;
    SIXELSTATUS s = sixel_decode_raw((unsigned char *)fr.data, (int)fr.len, &idx, &w, &h, &pal,
                                     &nc, al);
    cr_assert(SIXEL_SUCCEEDED(s));
    cr_assert_geq(w, g.img_w);
    cr_assert_geq(h, g.img_h);
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++)
        memcpy(rgb + (size_t)i * 3, pal + idx[i] * 3, 3); /* the palette is RGB, 3 bytes */
    GfxImage ref;
    cr_assert_eq(gfx_image_resize(&src, g.img_w, g.img_h, &ref, &err), 0);
    double db = psnr(rgb, w, ref.px, ref.w, g.img_w, g.img_h);
    cr_log_info("sixel round trip: %.1f dB, %zu bytes", db, fr.len);
    cr_assert_gt(db, 30.0, "PSNR %.1f dB", db);
    free(rgb);
    sixel_allocator_free(al, idx);
    sixel_allocator_free(al, pal);
    sixel_allocator_unref(al);
    gfx_image_deinit(&ref);
    gfx_frame_deinit(&fr);
    gfx_image_deinit(&src);
}

Test(ui_gfx, encode_does_not_touch_the_source) {
    GfxImage src = picture(64, 48);
    uint8_t *copy = malloc(64 * 48 * 3);
    memcpy(copy, src.px, 64 * 48 * 3);
    GfxGeom g = {.canvas_w = 64, .canvas_h = 48, .img_w = 64, .img_h = 48, .cols = 8, .rows = 3};
    GfxFrame fr;
    cr_assert_eq(gfx_frame_encode(GFX_SIXEL, &g, &src, 256, 0, &fr, NULL), 0);
    cr_assert_eq(memcmp(copy, src.px, 64 * 48 * 3), 0, "sixel_encode dithers a copy only");
    gfx_frame_deinit(&fr);
    free(copy);
    gfx_image_deinit(&src);
}

/* Read our truecolor half-block output back into pixels. */
static void decode_blocks(const char *s, size_t n, int cols, int rows, uint8_t *out) {
    int r = 0, c = 0;
    int fg[3] = {0}, bg[3] = {0};
    size_t i = 0;
    while (i < n && r < rows) {
        if (s[i] == '\033' && s[i + 1] == '[') {
            size_t j = i + 2;
            int v[8], k = 0, cur = 0;
            while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == ';')) {
                if (s[j] == ';') {
                    v[k++] = cur;
                    cur = 0;
                } else {
                    cur = cur * 10 + (s[j] - '0');
                }
                j++;
            }
            v[k++] = cur;
            char fin = s[j];
            if (fin == 'm' && k == 5 && v[0] == 38 && v[1] == 2)
                fg[0] = v[2], fg[1] = v[3], fg[2] = v[4];
            else if (fin == 'm' && k == 5 && v[0] == 48 && v[1] == 2)
                bg[0] = v[2], bg[1] = v[3], bg[2] = v[4];
            else if (fin == 'B') {
                r++;
                c = 0;
            }
            i = j + 1;
        } else if ((unsigned char)s[i] == 0xe2) {
            for (int k = 0; k < 3; k++) {
                out[((size_t)(2 * r) * cols + c) * 3 + k] = (uint8_t)fg[k];
                out[((size_t)(2 * r + 1) * cols + c) * 3 + k] = (uint8_t)bg[k];
            }
            c++;
            i += 3;
        } else {
            c++;
            i++;
        }
    }
}

Test(ui_gfx, blocks_truecolor_decode_back_exactly) {
    GfxImage src = picture(300, 300);
    GfxCaps c = {.cell_w = 10, .cell_h = 20, .truecolor = 1};
    GfxFrame fr;
    cr_assert_eq(gfx_frame_render(GFX_BLOCKS, &c, &src, 40, 20, &fr, NULL), 0);
    uint8_t *out = calloc(40 * 40 * 3, 1);
    decode_blocks(fr.data, fr.len, 40, 20, out);
    GfxImage ref;
    cr_assert_eq(gfx_image_resize(&src, 40, 40, &ref, NULL), 0);
    double db = psnr(out, 40, ref.px, 40, 40, 40);
    cr_assert_gt(db, 60.0, "truecolor blocks are exact, got %.1f dB", db);
    free(out);
    gfx_image_deinit(&ref);
    gfx_frame_deinit(&fr);
    /* 256 colours: xterm palette sequences only */
    c.truecolor = 0;
    cr_assert_eq(gfx_frame_render(GFX_BLOCKS, &c, &src, 40, 20, &fr, NULL), 0);
    cr_assert_null(strstr(fr.data, ";2;"));
    cr_assert_not_null(strstr(fr.data, "38;5;"));
    gfx_frame_deinit(&fr);
    cr_assert_eq(gfx_frame_render(GFX_ASCII, &c, &src, 40, 20, &fr, NULL), 0);
    cr_assert_null(strstr(fr.data, "\xe2"), "ascii is ascii");
    gfx_frame_deinit(&fr);
    gfx_image_deinit(&src);
}

static pthread_mutex_t wl = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wc = PTHREAD_COND_INITIALIZER;
static int wakes;

static void on_wake(void *p) {
    (void)p;
    pthread_mutex_lock(&wl);
    wakes++;
    pthread_cond_broadcast(&wc);
    pthread_mutex_unlock(&wl);
}

static GfxState wait_ready(GfxCache *c, int64_t key, const char *path, const GfxFrame **f,
                           char *msg) {
    for (int i = 0; i < 500; i++) {
        GfxState s = gfx_cache_get(c, key, path, 20, 10, f, msg, 256);
        if (s != GFX_PENDING)
            return s;
        pthread_mutex_lock(&wl);
        int seen = wakes;
        while (wakes == seen) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            if (pthread_cond_timedwait(&wc, &wl, &ts))
                break;
        }
        pthread_mutex_unlock(&wl);
    }
    return GFX_PENDING;
}

Test(ui_gfx, cache_renders_in_background_and_reports_failures) {
    char dir[] = "/tmp/easel-gfxc-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char good[128], bad[128];
    snprintf(good, sizeof good, "%s/a.png", dir);
    snprintf(bad, sizeof bad, "%s/b.png", dir);
    GfxImage src = picture(64, 64);
    support_png_write(good, 64, 64, src.px);
    FILE *f = fopen(bad, "w");
    fputs("garbage", f);
    fclose(f);
    GfxCaps caps = {.cell_w = 8, .cell_h = 16, .utf8 = 1};
    GfxCache *c = gfx_cache_new(GFX_BLOCKS, &caps, 4, on_wake, NULL);
    cr_assert_not_null(c);
    gfx_cache_prefetch(c, 2, bad, 20, 10);
    const GfxFrame *fr = NULL;
    char msg[256];
    cr_assert_eq(wait_ready(c, 1, good, &fr, msg), GFX_READY);
    cr_assert_not_null(fr);
    cr_assert_eq(fr->cols, 20);
    cr_assert_gt(fr->len, 100);
    gfx_cache_release(c, fr);
    cr_assert_eq(wait_ready(c, 2, bad, &fr, msg), GFX_FAILED);
    cr_assert_null(fr);
    cr_assert(strstr(msg, "b.png"), "%s", msg);
    /* more images than the capacity: old ones go, a held frame stays valid */
    cr_assert_eq(wait_ready(c, 1, good, &fr, msg), GFX_READY);
    const GfxFrame *held = fr;
    for (int k = 10; k < 20; k++) {
        const GfxFrame *g = NULL;
        cr_assert_eq(wait_ready(c, k, good, &g, msg), GFX_READY);
        gfx_cache_release(c, g);
    }
    cr_assert_gt(held->len, 100, "still readable after eviction");
    gfx_cache_release(c, held);
    gfx_cache_free(c);
    gfx_image_deinit(&src);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- banding: a sunset sky must come back smooth ----------------------------------------- */

/* A sunset like the demo's: a tall vertical sky gradient, a sun, two flat mountains and a
 * textured ground competing for the palette. */
static GfxImage sunset(int w, int h) {
    GfxImage img = {w, h, malloc((size_t)w * h * 3)};
    unsigned state = 7;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            double v = (double)y / (h * 0.6);
            double c[3] = {70 + 180 * v, 60 + 90 * v, 140 - 60 * v};
            double dx = x - 0.7 * w, dy = y - 0.45 * h;
            if (dx * dx + dy * dy < 0.006 * w * h)
                c[0] = 255, c[1] = 220, c[2] = 120;
            if (y > 0.6 * h - 0.8 * fabs(x - 0.3 * w) && y > 0.35 * h)
                c[0] = 90, c[1] = 80, c[2] = 110;
            if (y >= 0.6 * h) {
                state = state * 1103515245u + 12345u;
                double n = (double)((state >> 16) & 31) - 16;
                c[0] = 40 + n, c[1] = 70 + n + 20 * sin(x * 0.05), c[2] = 60 + n;
            }
            uint8_t *p = img.px + ((size_t)y * w + x) * 3;
            for (int k = 0; k < 3; k++)
                p[k] = (uint8_t)fmin(255, fmax(0, c[k]));
        }
    }
    return img;
}

/* Encode SRC as the Annotate screen would (60x30 cells of 8x16 px) and decode it back. */
static uint8_t *sixel_round_trip(const GfxImage *src, GfxGeom *g, size_t *bytes, int *stride) {
    GfxCaps c = {.cell_w = 8, .cell_h = 16, .max_w = 1000, .max_h = 1000};
    GfxFrame fr;
    Err err = {0};
    cr_assert_eq(gfx_frame_render(GFX_SIXEL, &c, src, 60, 30, &fr, &err), 0, "%s", err.msg);
    *g = fr.geom;
    *bytes = fr.len;
    sixel_allocator_t *al = NULL;
    cr_assert(SIXEL_SUCCEEDED(sixel_allocator_new(&al, NULL, NULL, NULL, NULL)));
    unsigned char *idx = NULL, *pal = NULL;
    int w = 0, h = 0, nc = 0;
    cr_assert(SIXEL_SUCCEEDED(sixel_decode_raw((unsigned char *)fr.data, (int)fr.len, &idx, &w,
                                               &h, &pal, &nc, al)));
    cr_assert_geq(w, g->img_w);
    cr_assert_geq(h, g->img_h);
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++)
        memcpy(rgb + (size_t)i * 3, pal + idx[i] * 3, 3);
    *stride = w;
    sixel_allocator_free(al, idx);
    sixel_allocator_free(al, pal);
    sixel_allocator_unref(al);
    gfx_frame_deinit(&fr);
    return rgb;
}

/* Mean of channel K over the (2R+1)^2 box around (X, Y): what the eye sees of dithering. */
static double box_mean(const uint8_t *px, int stride, int x, int y, int k, int r) {
    double s = 0;
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++)
            s += px[((size_t)(y + dy) * stride + x + dx) * 3 + k];
    return s / ((2 * r + 1) * (2 * r + 1));
}

Test(ui_gfx, sixel_sky_gradient_has_no_bands) {
    GfxImage src = sunset(480, 480);
    GfxGeom g;
    size_t bytes;
    int stride;
    uint8_t *out = sixel_round_trip(&src, &g, &bytes, &stride);
    cr_assert_eq(g.img_w, 480);
    /* the sky: left of the sun, above the mountains */
    int x0 = 20, x1 = 140, y0 = 10, y1 = 160;
    double worst = 0, se = 0;
    int n = 0, levels_src = 0, levels_out = 0, last_src = -1, last_out = -1;
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            for (int k = 0; k < 3; k++) {
                double d = box_mean(out, stride, x, y, k, 3) - box_mean(src.px, 480, x, y, k, 3);
                worst = fmax(worst, fabs(d));
                double e = (double)out[((size_t)y * stride + x) * 3 + k] -
                           src.px[((size_t)y * 480 + x) * 3 + k];
                se += e * e;
                n++;
            }
        }
        /* distinct levels of the red channel down the sky, as the eye averages it */
        int ls = (int)lround(box_mean(src.px, 480, 80, y, 0, 3));
        int lo = (int)lround(box_mean(out, stride, 80, y, 0, 3));
        levels_src += ls != last_src;
        levels_out += lo != last_out;
        last_src = ls;
        last_out = lo;
    }
    double db = 10 * log10(255.0 * 255.0 / (se / n));
    cr_log_info("sky: worst local mean error %.1f levels, %.1f dB, %d of %d levels, %zu bytes",
                worst, db, levels_out, levels_src, bytes);
    cr_assert_lt(worst, 3.0, "a band: the local mean is off by %.1f levels", worst);
    cr_assert_gt(db, 40.0, "sky PSNR %.1f dB", db);
    cr_assert_geq(levels_out, levels_src * 7 / 10, "%d distinct levels of %d: bands", levels_out,
                  levels_src);
    free(out);
    gfx_image_deinit(&src);
}

/* ---- 256 colours: hues survive --------------------------------------------------------- */

static double hue_deg(const uint8_t c[3], double *chroma) {
    float lab[3];
    gfx_srgb_to_oklab(c, lab);
    *chroma = sqrt((double)lab[1] * lab[1] + (double)lab[2] * lab[2]);
    return atan2(lab[2], lab[1]) * 180 / M_PI;
}

/* The xterm-256 colour of index I, computed here independently of ui/. */
static void xterm_rgb(int i, uint8_t c[3]) {
    static const int level[6] = {0, 95, 135, 175, 215, 255};
    if (i >= 232) {
        c[0] = c[1] = c[2] = (uint8_t)(8 + 10 * (i - 232));
    } else {
        c[0] = (uint8_t)level[(i - 16) / 36];
        c[1] = (uint8_t)level[((i - 16) / 6) % 6];
        c[2] = (uint8_t)level[(i - 16) % 6];
    }
}

Test(ui_gfx, xterm256_keeps_hues) {
    /* a saturated orange, the demo's sunset sky and dusk colours, a mauve mountain */
    static const uint8_t colours[][3] = {
        {255, 128, 0}, {250, 150, 80}, {230, 120, 60}, {200, 130, 90}, {160, 100, 120},
        {115, 108, 138}, {90, 80, 110}, {70, 60, 140}, {120, 150, 210}, {200, 170, 180},
    };
    for (size_t i = 0; i < sizeof colours / sizeof colours[0]; i++) {
        const uint8_t *c = colours[i];
        int x = gfx_xterm256(c);
        cr_assert(x >= 16 && x <= 255, "%d", x);
        uint8_t m[3];
        xterm_rgb(x, m);
        double c_in, c_out;
        double h_in = hue_deg(c, &c_in), h_out = hue_deg(m, &c_out);
        double dh = fabs(h_in - h_out);
        if (dh > 180)
            dh = 360 - dh;
        cr_assert(x < 232, "(%d,%d,%d) mapped to grey %d", c[0], c[1], c[2], x);
        cr_assert_gt(c_out, 0.4 * c_in, "(%d,%d,%d) -> %d (%d,%d,%d) lost its colour", c[0],
                     c[1], c[2], x, m[0], m[1], m[2]);
        cr_assert_lt(dh, 45, "(%d,%d,%d) -> %d (%d,%d,%d): hue off by %.0f degrees", c[0], c[1],
                     c[2], x, m[0], m[1], m[2], dh);
    }
    uint8_t grey[3] = {128, 128, 128};
    uint8_t m[3];
    xterm_rgb(gfx_xterm256(grey), m);
    cr_assert(m[0] == m[1] && m[1] == m[2], "a grey stays grey");
}

Test(ui_gfx, truecolor_from_colorterm_or_terminfo) {
    char dir[] = "/tmp/easel-ti-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char src[160], cmd[400];
    support_write_file(dir, "direct.ti",
                       "easeltest-direct|direct colour for a test,\n"
                       "\tRGB, colors#0x1000000, pairs#0x10000,"
                       " use=xterm-256color,\n",
                       src, sizeof src);
    snprintf(cmd, sizeof cmd, "tic -x -o %s %s 2>/dev/null", dir, src);
    cr_assert_eq(system(cmd), 0, "tic");
    setenv("TERMINFO", dir, 1);
    unsetenv("TMUX");
    unsetenv("STY");
    GfxCaps c;
    setenv("TERM", "easeltest-direct", 1);
    unsetenv("COLORTERM");
    gfx_probe(-1, &c, 10);
    cr_assert(c.truecolor, "terminfo RGB means 24-bit colour");
    setenv("TERM", "xterm-256color", 1);
    unsetenv("TERMINFO");
    gfx_probe(-1, &c, 10);
    cr_assert_not(c.truecolor);
    setenv("COLORTERM", "truecolor", 1);
    gfx_probe(-1, &c, 10);
    cr_assert(c.truecolor);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(ui_gfx, sixel_uses_at_most_the_registers_the_terminal_reports) {
    GfxImage src = sunset(240, 240);
    const int reported[] = {16, 64, 0 /* unknown: 256 */, 1024 /* more than we index */};
    for (size_t i = 0; i < sizeof reported / sizeof reported[0]; i++) {
        GfxCaps c = {.cell_w = 8, .cell_h = 16, .color_registers = reported[i]};
        GfxFrame fr;
        cr_assert_eq(gfx_frame_render(GFX_SIXEL, &c, &src, 30, 15, &fr, NULL), 0);
        int defs = 0, max_reg = -1;
        for (const char *p = fr.data; (p = strchr(p, '#')) != NULL; p++) {
            int reg, n = 0;
            if (sscanf(p, "#%d;2;%*d;%*d;%*d%n", &reg, &n) == 1 && n > 0) {
                defs++;
                if (reg > max_reg)
                    max_reg = reg;
            }
        }
        int limit = reported[i] > 0 && reported[i] < 256 ? reported[i] : 256;
        cr_assert_gt(defs, 1);
        cr_assert_leq(defs, limit, "%d registers defined for a terminal with %d", defs,
                      reported[i]);
        cr_assert_lt(max_reg, limit);
        gfx_frame_deinit(&fr);
    }
    gfx_image_deinit(&src);
}
