/* gfx — images in the terminal: probe, decode, fit, encode (sixel, half blocks, ascii), and
 * a cache of encoded frames filled by a background thread.
 *
 * Parts (one module split by concern, see STYLE.md §1):
 *   gfx_probe.c   what the terminal can do: one batch of queries closed by DA1 (every
 *                 terminal answers DA1, so its reply ends the wait; capped at ~250 ms)
 *   gfx_image.c   decode with src/io/image.h and resize with stb_image_resize (compiled here,
 *                 static: libsixel exports stb symbols of its own)
 *   gfx_encode.c  frame geometry (pure), sixel (gfx_sixel.c; libsixel's encoder only for the
 *                 before/after comparison), Unicode half blocks in truecolor or 256 colours,
 *                 ascii
 *   gfx_sixel.c   our sixel pipeline: palette fitted in OKLab, error diffusion, DCS writer
 *   gfx_color.c   sRGB / linear / OKLab, the perceptually nearest xterm-256 colour
 *   gfx_cache.c   frames per (image key, cell size), a worker thread that decodes and encodes
 *                 requests, most urgent first, and prefetches what comes next
 *
 * A frame is a byte string that draws the image with the cursor at the image's top-left cell
 * and moves only relative to it (sixel, or rows joined by cursor-left/cursor-down), so the
 * caller writes ESC 7, a cursor move, the frame, ESC 8 — after ncurses has refreshed — into
 * a rectangle ncurses never writes (terminal-graphics.md pitfalls 1–3).
 *
 * Threads: everything but gfx_cache_* is pure or thread-compatible (no shared state).
 * gfx_cache_* may be called from one thread (the UI); its worker never touches ncurses and
 * reports through the wake callback.
 */
#ifndef EASEL_GFX_H
#define EASEL_GFX_H

#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "err.h"

/* ---- terminal capabilities (gfx_probe.c) ----------------------------------------------- */

enum { GFX_MUX_TMUX = 1, GFX_MUX_SCREEN = 2 };

typedef struct GfxCaps {
    int answered;         /* the terminal replied to DA1 */
    int sixel;            /* DA1 listed attribute 4 */
    int color_registers;  /* XTSMGRAPHICS, 0 = unknown */
    int max_w;            /* largest sixel image, pixels; 0 = unknown */
    int max_h;
    int cell_w;           /* pixels per cell; always set (default 10x20) */
    int cell_h;
    int cell_from;        /* 0 default, 1 CSI 16 t, 2 TIOCGWINSZ pixels */
    int truecolor;        /* $COLORTERM says truecolor/24bit */
    int colors;           /* colours ncurses reports (set by the app after initscr) */
    int in_mux;           /* GFX_MUX_TMUX or GFX_MUX_SCREEN inside a multiplexer, else 0 */
    int utf8;             /* the locale's charset is UTF-8 */
    char mode_note[200];  /* why the mode is not the one asked for (gfx_mode_choose), or "" */
} GfxCaps;

/* Fill the fields that come from replies, parsing N bytes of terminal output: DA1
 * (CSI ? a;b;... c), XTSMGRAPHICS (CSI ? item ; status ; values S), cell size
 * (CSI 6 ; h ; w t). Unknown bytes are skipped. Returns 1 if the DA1 reply was seen. Pure. */
int gfx_probe_parse(const char *buf, size_t n, GfxCaps *caps);

/* Probe the terminal on FD (a tty in its normal mode; restored before return): environment
 * ($TERM, $TMUX, $STY, $COLORTERM, locale), one query batch, TIOCGWINSZ pixels, defaults.
 * Waits at most TIMEOUT_MS for the DA1 reply; a silent terminal just yields defaults. */
void gfx_probe(int fd, GfxCaps *caps, int timeout_ms);

/* The mode to use: OVERRIDE ("sixel", "blocks", "ascii", "none") if given, else sixel when
 * the terminal has it and is not a multiplexer, else blocks with UTF-8, else ascii. An
 * override of sixel inside a multiplexer that did not list sixel in its DA1 reply falls back
 * to blocks (or ascii), and NOTE (NOTE_SIZE bytes; may be 0) says why, for the status line;
 * otherwise NOTE is empty. Returns -1 with err set (ERR_USAGE) for an unknown override. */
int gfx_mode_choose(const GfxCaps *caps, const char *override, char *note, size_t note_size,
                    Err *err);
const char *gfx_mode_name(GfxMode mode);

/* ---- pixels (gfx_image.c) ---------------------------------------------------------------- */

typedef struct GfxImage {
    int w;
    int h;
    uint8_t *px;  /* RGB888, w*h*3 bytes, row-major; owned */
} GfxImage;

/* Decode PATH (PNG, JPEG, BMP, GIF, TGA, PSD, HDR, PNM) into RGB. Returns 0, ERR_IO (cannot
 * read), ERR_FORMAT (not an image or corrupt), ERR_NOMEM. */
int gfx_image_load(const char *path, GfxImage *img, Err *err);

/* Resize SRC into a new W x H image (any ratio). Returns 0 or ERR_NOMEM. */
int gfx_image_resize(const GfxImage *src, int w, int h, GfxImage *dst, Err *err);

void gfx_image_deinit(GfxImage *img);   /* frees px; NULL-safe */

/* ---- colour (gfx_color.c) ------------------------------------------------------------- */

/* sRGB bytes <-> linear light (0..1) <-> OKLab (L 0..1, a/b about -0.4..0.4). Pure. */
float gfx_srgb_to_linear(uint8_t v);
uint8_t gfx_linear_to_srgb(float v);
void gfx_linear_to_oklab(const float rgb[3], float lab[3]);
void gfx_oklab_to_linear(const float lab[3], float rgb[3]);
void gfx_srgb_to_oklab(const uint8_t rgb[3], float lab[3]);

/* The xterm-256 colour (16..255: the 6x6x6 cube and the grey ramp; 0..15 are left out,
 * terminals theme them) nearest to RGB in OKLab, and an index's RGB. Pure. */
int gfx_xterm256(const uint8_t rgb[3]);
void gfx_xterm256_rgb(int index, uint8_t rgb[3]);

/* ---- sixel: palette, dithering, writer (gfx_sixel.c) ----------------------------------- */

#define GFX_MAX_COLORS 256

typedef struct GfxPalette {
    int n;
    uint8_t rgb[GFX_MAX_COLORS][3];  /* as the terminal shows them (sixel: whole percents) */
} GfxPalette;

typedef enum GfxDiffusion { GFX_DIFFUSE_FS = 0, GFX_DIFFUSE_NONE } GfxDiffusion;

/* Fit at most MAX_COLORS registers to the W x H pixels at PX (RGB, STRIDE pixels a row):
 * median cut then k-means in OKLab. Returns 0 or ERR_NOMEM. Thread-compatible. */
int gfx_palette_fit(const uint8_t *px, int w, int h, int stride, int max_colors,
                    GfxPalette *pal, Err *err);
/* Map the pixels to PAL's registers into IDX (W*H bytes), with serpentine Floyd–Steinberg
 * diffusion in linear light (or none), choosing registers in OKLab. PX is not modified. */
int gfx_dither(const uint8_t *px, int w, int h, int stride, const GfxPalette *pal,
               GfxDiffusion kind, uint8_t *idx, Err *err);
/* The DCS sixel sequence of the indexed image (1:1 pixels, run-length coded). *DATA is
 * malloc'd, NUL-terminated. Returns 0 or ERR_NOMEM. */
int gfx_sixel_write(const uint8_t *idx, int w, int h, const GfxPalette *pal, char **data,
                    size_t *len, Err *err);

/* ---- frames (gfx_encode.c) ------------------------------------------------------------- */

/* Where an image of SRC_W x SRC_H pixels goes in a box of COLS x ROWS cells. Every frame
 * covers its whole box (the image at the top-left, the rest padded), so a new frame always
 * hides the previous one. Canvas: sixel pixels (the box in pixels, clamped to the terminal's
 * maximum, height a multiple of 6), or half-block pixels (COLS x 2 ROWS), or characters
 * (COLS x ROWS). The image is fitted inside keeping its aspect ratio. Pure. */
typedef struct GfxGeom {
    int canvas_w;   /* frame size in canvas pixels */
    int canvas_h;
    int img_w;      /* the image's size inside the canvas, top-left aligned */
    int img_h;
    int cols;       /* cells covered (<= the box) */
    int rows;
} GfxGeom;
GfxGeom gfx_geom(GfxMode mode, const GfxCaps *caps, int cols, int rows, int src_w, int src_h);

typedef struct GfxFrame {
    GfxMode mode;
    int cols;          /* cells covered */
    int rows;
    GfxGeom geom;      /* canvas and image size */
    char *data;        /* the bytes to write; owned */
    size_t len;
} GfxFrame;

/* Encode IMG (already img_w x img_h of GEOM) on GEOM's canvas as MODE. IMG is not
 * modified. COLORS is the palette size for sixel (<= 256). Returns 0 or ERR_NOMEM /
 * ERR_FORMAT (libsixel failed). */
int gfx_frame_encode(GfxMode mode, const GfxGeom *geom, const GfxImage *img, int colors,
                     int truecolor, GfxFrame *out, Err *err);
/* Decode, fit and encode in one call (what the cache worker does). */
int gfx_frame_render(GfxMode mode, const GfxCaps *caps, const GfxImage *src, int cols, int rows,
                     GfxFrame *out, Err *err);
void gfx_frame_deinit(GfxFrame *f);

/* ---- cache and prefetch (gfx_cache.c) ---------------------------------------------------- */

typedef struct GfxCache GfxCache;

/* A worker thread renders for MODE/CAPS; WAKE(WAKE_DATA) is called from it when a frame is
 * ready (app_wake). CAPACITY frames are kept (least recently used go first). */
GfxCache *gfx_cache_new(GfxMode mode, const GfxCaps *caps, int capacity,
                        void (*wake)(void *), void *wake_data);
void gfx_cache_free(GfxCache *c);   /* stops and joins the worker; NULL-safe */

typedef enum GfxState { GFX_PENDING = 0, GFX_READY, GFX_FAILED } GfxState;

/* The frame of image KEY (file PATH) in a COLS x ROWS box. Never blocks: if it is not ready
 * the request goes to the front of the worker's queue and GFX_PENDING is returned. READY:
 * *frame is a copy-free reference the caller releases with gfx_cache_release. FAILED: msg
 * holds why (e.g. "photo.png: not a PNG/JPEG image (corrupt or truncated)"). */
GfxState gfx_cache_get(GfxCache *c, int64_t key, const char *path, int cols, int rows,
                       const GfxFrame **frame, char *msg, size_t msg_size);
void gfx_cache_release(GfxCache *c, const GfxFrame *frame);

/* Queue KEY for rendering in the background, behind any gfx_cache_get request. */
void gfx_cache_prefetch(GfxCache *c, int64_t key, const char *path, int cols, int rows);

#endif
