/* monitor_plot — plot canvas, numbers and layout of the Monitor screen. See monitor_plot.h.
 *
 * Dot space: a canvas of W x H cells has (W*dx) x (H*dy) dots, (0,0) top-left. x maps
 * linearly so x0 lands on dot 0 and x1 on the last dot column; y likewise with y1 on the top
 * row. Lines use Bresenham between consecutive points, so a curve has no gaps whatever its
 * slope. Braille bit order (Unicode): dots 1,2,3,7 down the left column = bits 0,1,2,6;
 * dots 4,5,6,8 down the right = bits 3,4,5,7.
 */
#include "monitor_plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

/* ---- ranges ---- */

static int point_ok(double x, double y, int log_y) {
    return isfinite(x) && isfinite(y) && (!log_y || y > 0);
}

int plot_range_fit(const PlotSeries *s, int n_series, int log_y, PlotRange *r) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < n_series; k++) {
        for (size_t i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!point_ok(x, y, log_y))
                continue;
            if (log_y)
                y = log10(y);
            x0 = fmin(x0, x);
            x1 = fmax(x1, x);
            y0 = fmin(y0, y);
            y1 = fmax(y1, y);
        }
    }
    r->log_y = log_y;
    if (!(x0 <= x1)) {
        *r = (PlotRange){0, 1, 0, 1, log_y};
        return 0;
    }
    if (x1 == x0) {
        x0 -= 0.5;
        x1 += 0.5;
    }
    if (y1 == y0) {
        double pad = log_y ? 1.0 : (fabs(y0) > 1 ? fabs(y0) * 0.1 : 0.5);
        y0 -= pad;
        y1 += pad;
    } else {
        double pad = (y1 - y0) * 0.05;
        y0 -= pad;
        y1 += pad;
    }
    r->x0 = x0;
    r->x1 = x1;
    r->y0 = y0;
    r->y1 = y1;
    return 1;
}

/* ---- canvas ---- */

void plot_canvas_init(PlotCanvas *c, int w, int h, PlotGlyphs glyphs) {
    ASSERT(w >= 1 && h >= 1);
    c->w = w;
    c->h = h;
    c->glyphs = glyphs;
    c->dx = glyphs == PLOT_BRAILLE ? 2 : 1;
    c->dy = glyphs == PLOT_BRAILLE ? 4 : glyphs == PLOT_ASCII ? 3 : 2;
    c->bits = xcalloc((size_t)w * h, 1);
    c->id = xcalloc((size_t)w * h, 1);
}

void plot_canvas_deinit(PlotCanvas *c) {
    if (!c)
        return;
    free(c->bits);
    free(c->id);
    c->bits = c->id = NULL;
}

void plot_canvas_clear(PlotCanvas *c) {
    memset(c->bits, 0, (size_t)c->w * c->h);
    memset(c->id, 0, (size_t)c->w * c->h);
}

static const uint8_t braille_bit[4][2] = {{0x01, 0x08}, {0x02, 0x10}, {0x04, 0x20},
                                          {0x40, 0x80}};

void plot_canvas_dot(PlotCanvas *c, int px, int py, int id) {
    if (px < 0 || py < 0 || px >= c->w * c->dx || py >= c->h * c->dy)
        return;
    int col = px / c->dx, row = py / c->dy;
    size_t i = (size_t)row * c->w + col;
    if (c->glyphs == PLOT_BRAILLE)
        c->bits[i] |= braille_bit[py % 4][px % 2];
    else /* blocks: bit 0 upper half, bit 1 lower; ascii: bits 0, 1, 2 top, middle, bottom */
        c->bits[i] |= (uint8_t)(1u << (py % c->dy));
    c->id[i] = (uint8_t)id;
}

int plot_x_to_dot(const PlotCanvas *c, const PlotRange *r, double x) {
    int n = c->w * c->dx;
    return (int)lround((x - r->x0) / (r->x1 - r->x0) * (n - 1));
}

int plot_y_to_dot(const PlotCanvas *c, const PlotRange *r, double y) {
    int n = c->h * c->dy;
    if (r->log_y)
        y = log10(y);
    double f = (y - r->y0) / (r->y1 - r->y0);
    if (f > 4) /* keep far-off points from overflowing int; they are clipped anyway */
        f = 4;
    if (f < -4)
        f = -4;
    return (int)lround((1.0 - f) * (n - 1));
}

static void line(PlotCanvas *c, int x0, int y0, int x1, int y1, int id) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) {
        plot_canvas_dot(c, x0, y0, id);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

void plot_canvas_series(PlotCanvas *c, const PlotRange *r, const PlotSeries *s) {
    int have = 0, px = 0, py = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (!point_ok(s->x[i], s->y[i], r->log_y))
            continue;
        int qx = plot_x_to_dot(c, r, s->x[i]), qy = plot_y_to_dot(c, r, s->y[i]);
        if (have)
            line(c, px, py, qx, qy, s->id);
        else
            plot_canvas_dot(c, qx, qy, s->id);
        px = qx;
        py = qy;
        have = 1;
    }
}

static int utf8(unsigned cp, char out[5]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
        return 1;
    }
    /* everything we emit is in U+0800..U+FFFF: three bytes */
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    out[3] = 0;
    return 3;
}

int plot_canvas_glyph(const PlotCanvas *c, int row, int col, char out[5]) {
    uint8_t b = c->bits[(size_t)row * c->w + col];
    if (!b)
        return utf8(' ', out);
    if (c->glyphs == PLOT_BRAILLE)
        return utf8(0x2800u + b, out);
    if (c->glyphs == PLOT_ASCII) /* top ', middle -, bottom _, two or three of them : or | */
        return utf8((unsigned char)" '-|_:||"[b & 7], out);
    return utf8(b == 1 ? 0x2580u : b == 2 ? 0x2584u : 0x2588u, out); /* ▀ ▄ █ */
}

/* ---- numbers ---- */

void plot_ema(const double *y, size_t n, double s, double *out) {
    double acc = NAN;
    for (size_t i = 0; i < n; i++) {
        double v = y[i];
        if (!isfinite(v)) {
            out[i] = v;
            continue;
        }
        acc = isfinite(acc) ? s * acc + (1.0 - s) * v : v;
        out[i] = acc;
    }
}

int plot_ticks(double lo, double hi, int max, double *ticks) {
    if (max < 1 || !(hi > lo) || !isfinite(lo) || !isfinite(hi))
        return 0;
    double raw = (hi - lo) / (max > 1 ? max - 1 : 1);
    double mag = pow(10.0, floor(log10(raw)));
    double step = mag;
    static const double mult[] = {1, 2, 5, 10};
    for (size_t i = 0; i < ARRAY_LEN(mult); i++) {
        step = mult[i] * mag;
        if ((floor(hi / step) - ceil(lo / step)) + 1 <= max)
            break;
    }
    int n = 0;
    for (double t = ceil(lo / step) * step; t <= hi + step * 1e-9 && n < max; t += step)
        ticks[n++] = fabs(t) < step * 1e-9 ? 0.0 : t;
    return n;
}

char *plot_fmt(double v, char *out, size_t width) {
    if (width < 2) {
        if (width)
            out[0] = 0;
        return out;
    }
    double a = fabs(v);
    if (!isfinite(v))
        snprintf(out, width, "%s", isnan(v) ? "-" : v > 0 ? "inf" : "-inf");
    else if (a == 0)
        snprintf(out, width, "0");
    else if (a >= 1e4 && a < 1e7)
        snprintf(out, width, "%.1fk", v / 1e3);
    else if (a >= 1e7 || a < 1e-3)
        snprintf(out, width, "%.1e", v);
    else if (a >= 100)
        snprintf(out, width, "%.0f", v);
    else if (a >= 10)
        snprintf(out, width, "%.1f", v);
    else
        snprintf(out, width, "%.3f", v);
    return out;
}

void plot_softmax(const double *w, int n, double *out) {
    double mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = fmax(mx, w[i]);
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (out[i] = exp(w[i] - mx));
    for (int i = 0; i < n; i++)
        out[i] /= s;
}

char *plot_bar_ascii(double frac, int width, char *out) {
    if (!(frac > 0))
        frac = 0;
    if (frac > 1)
        frac = 1;
    int halves = (int)lround(frac * width * 2);
    for (int i = 0; i < width; i++)
        out[i] = halves - i * 2 >= 2 ? '#' : halves - i * 2 == 1 ? '+' : ' ';
    out[width > 0 ? width : 0] = 0;
    return out;
}

char *plot_bar(double frac, int width, char *out) {
    if (!(frac > 0))
        frac = 0;
    if (frac > 1)
        frac = 1;
    int eighths = (int)lround(frac * width * 8), o = 0;
    for (int i = 0; i < width; i++) {
        int e = eighths - i * 8;
        char g[5];
        if (e >= 8)
            o += utf8(0x2588u, g); /* █ */
        else if (e > 0)
            o += utf8(0x2590u - (unsigned)e, g); /* ▏..▉ are U+258F..U+2589 */
        else
            o += utf8(' ', g);
        memcpy(out + o - strlen(g), g, strlen(g));
    }
    out[o] = 0;
    return out;
}

/* ---- layout ---- */

int monitor_layout(int h, int w, int n_plots, MonitorLayout *out) {
    memset(out, 0, sizeof *out);
    if (n_plots > 8)
        n_plots = 8;
    out->header = (PlotRect){0, 0, h > 0 ? 1 : 0, w};
    int top = 2, body_h = h - top;
    if (body_h < 4 || w < 20 || n_plots <= 0)
        return 0;
    int side_w = w >= 100 ? 34 : w >= 80 ? 28 : 0;
    int plot_w = w - side_w;
    int side_h = body_h;
    if (side_w == 0 && body_h >= 24) { /* narrow: side panel under the plots */
        side_h = 10;
        body_h -= side_h;
        out->side = (PlotRect){top + body_h, 0, side_h, w};
    } else if (side_w) {
        out->side = (PlotRect){top, plot_w, side_h, side_w};
    }
    /* the most plots that keep each at least 24x6 cells, as square a grid as possible */
    int best = 0, best_cols = 1;
    for (int cols = 1; cols <= n_plots; cols++) {
        int rows = (n_plots + cols - 1) / cols;
        int cw = plot_w / cols, ch = body_h / rows;
        if (cw >= 24 && ch >= 6) {
            best = n_plots;
            best_cols = cols;
            if (cw < 2.5 * ch * 2) /* cells are ~2x taller than wide: stop before too wide */
                break;
        }
    }
    if (!best) { /* show as many as fit in one column */
        best = body_h / 6;
        if (best > n_plots)
            best = n_plots;
        if (best < 1 || plot_w < 24)
            return 0;
        best_cols = 1;
    }
    int rows = (best + best_cols - 1) / best_cols;
    out->cols = best_cols;
    out->rows = rows;
    out->n_plots = best;
    for (int i = 0; i < best; i++) {
        int r = i / best_cols, c = i % best_cols;
        int x0 = c * plot_w / best_cols, x1 = (c + 1) * plot_w / best_cols;
        int y0 = r * body_h / rows, y1 = (r + 1) * body_h / rows;
        out->plots[i] = (PlotRect){top + y0, x0, y1 - y0, x1 - x0};
    }
    return best;
}
