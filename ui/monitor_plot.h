/* monitor_plot — the maths of the Monitor screen's plots and layout, with no terminal.
 *
 * A plot is drawn on a canvas of character cells; each cell holds a 2x4 grid of dots
 * (braille, U+2800..U+28FF), a 1x2 grid (half blocks ▀ ▄ █) for terminals without
 * braille glyphs, or a 1x3 grid in ASCII (' - _ : |) for fonts with neither. Series are mapped into dot space through a range fitted to the data
 * (rescaled every frame, so curves always fill the panel), optionally on a log10 y axis, and
 * drawn as connected line segments. Each cell remembers the last series drawn into it, for
 * its colour.
 *
 * Also here: EMA smoothing, "nice" axis ticks, compact number formatting, the head-importance
 * softmax, and the panel layout of the screen for a given terminal size.
 *
 * Pure and deterministic: no ncurses, no store, no globals. Tested in tests/ui/test_monitor_plot.c.
 */
#ifndef EASEL_MONITOR_PLOT_H
#define EASEL_MONITOR_PLOT_H

#include <stddef.h>
#include <stdint.h>

/* ---- series and ranges ---- */

typedef struct PlotSeries {
    const double *x;       /* (n) ascending (steps) */
    const double *y;       /* (n) */
    size_t n;
    int id;                /* 1.. : stored in the cells it touches (colour), 0 is "empty" */
} PlotSeries;

typedef struct PlotRange {
    double x0, x1;         /* x0 < x1 */
    double y0, y1;         /* y0 < y1; in log10 units when log_y */
    int log_y;             /* y axis is log10(y); values <= 0 are skipped */
} PlotRange;

/* Fit a range around all finite points of the series (5% headroom on y; a flat series gets
 * a +-0.5 (or +-1 decade) band). Returns 0 if there is nothing to draw (no points), else 1. */
int plot_range_fit(const PlotSeries *s, int n_series, int log_y, PlotRange *r);

/* ---- canvas ---- */

typedef enum PlotGlyphs { PLOT_BRAILLE = 0, PLOT_BLOCKS = 1, PLOT_ASCII = 2 } PlotGlyphs;

typedef struct PlotCanvas {
    int w, h;              /* cells */
    PlotGlyphs glyphs;
    int dx, dy;            /* dots per cell: 2x4 (braille), 1x2 (blocks), 1x3 (ascii) */
    uint8_t *bits;         /* (h, w) dot bitmask per cell */
    uint8_t *id;           /* (h, w) last series id drawn into the cell, 0 = none */
} PlotCanvas;

/* Allocate a cleared canvas of W x H cells (W, H >= 1). plot_canvas_deinit frees it. */
void plot_canvas_init(PlotCanvas *c, int w, int h, PlotGlyphs glyphs);
void plot_canvas_deinit(PlotCanvas *c);
void plot_canvas_clear(PlotCanvas *c);

/* Set dot (px, py) of the canvas (0,0 = top-left dot); out-of-range dots are ignored. */
void plot_canvas_dot(PlotCanvas *c, int px, int py, int id);

/* Draw the series as a polyline through R. A single point is drawn as a dot. */
void plot_canvas_series(PlotCanvas *c, const PlotRange *r, const PlotSeries *s);

/* Map a value to dot coordinates (may be outside the canvas). */
int plot_x_to_dot(const PlotCanvas *c, const PlotRange *r, double x);
int plot_y_to_dot(const PlotCanvas *c, const PlotRange *r, double y);

/* The UTF-8 glyph of cell (row, col) into OUT (at most 4 bytes + NUL): a braille pattern, a
 * block or an ASCII character; " " for an empty cell. Returns the byte length. */
int plot_canvas_glyph(const PlotCanvas *c, int row, int col, char out[5]);

/* ---- numbers ---- */

/* Exponential moving average with smoothing S in [0, 1): out[0] = y[0], out[i] =
 * S*out[i-1] + (1-S)*y[i] (TensorBoard's smoothing; S = 0 copies). Non-finite values are
 * passed through and do not disturb the average. out may equal y. */
void plot_ema(const double *y, size_t n, double s, double *out);

/* Up to MAX "nice" tick values (1, 2, 5 x 10^k steps) covering [lo, hi]; returns count. */
int plot_ticks(double lo, double hi, int max, double *ticks);

/* Format V in at most WIDTH-1 characters: 0.853, 12.4, 1.2e-4, 3.4k. Returns OUT. */
char *plot_fmt(double v, char *out, size_t width);

/* Head importance: softmax of the N head weights into OUT. */
void plot_softmax(const double *w, int n, double *out);

/* A horizontal bar of FRAC (0..1) in WIDTH cells with eighth-block precision, as UTF-8
 * into OUT (needs 3*WIDTH+1 bytes). Returns OUT. */
char *plot_bar(double frac, int width, char *out);

/* The same bar in ASCII: '#' per full cell, '+' for a half one (needs WIDTH+1 bytes). */
char *plot_bar_ascii(double frac, int width, char *out);

/* ---- layout ---- */

typedef struct PlotRect {
    int y, x, h, w;
} PlotRect;

/* The Monitor screen's panels inside an area of H rows x W columns (origin 0,0):
 * a header line, N_PLOTS plot panels in a grid, and a side panel (values, head importance,
 * LR, throughput, ETA, best checkpoint). Narrow terminals drop the side panel below the
 * plots or hide it. Returns the number of plot panels that fit (<= n_plots). */
typedef struct MonitorLayout {
    PlotRect header;
    PlotRect side;         /* h == 0: hidden */
    PlotRect plots[8];
    int n_plots;
    int cols, rows;        /* grid of the plots */
} MonitorLayout;

int monitor_layout(int h, int w, int n_plots, MonitorLayout *out);

#endif
