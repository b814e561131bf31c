/* plot — see plot.h. A sample of value v fills round(v * h * levels) dots of its column from
 * the bottom; any sample above zero shows at least one dot, so activity is never invisible. */
#include "plot.h"

#include <math.h>
#include <string.h>

int plot_row_bytes(int w) { return w * 3 + 1; }

/* Dots (0..max) of sample I, or -1 for no sample. */
static int level(const double *values, int n, int i, int max) {
    if (i < 0 || i >= n || isnan(values[i]))
        return -1;
    double v = values[i];
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    int d = (int)lround(v * max);
    if (d == 0 && v > 0)
        d = 1;
    return d;
}

static int put_utf8(char *p, unsigned cp) {
    if (cp < 0x80) {
        p[0] = (char)cp;
        return 1;
    }
    p[0] = (char)(0xE0 | (cp >> 12));
    p[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    p[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

void plot_area(const double *values, int n, int w, int h, PlotStyle style, char **rows) {
    /* dot bits of a braille cell: left column rows 0..3, right column rows 0..3 (top first) */
    static const unsigned left[4] = {0x01, 0x02, 0x04, 0x40};
    static const unsigned right[4] = {0x08, 0x10, 0x20, 0x80};
    static const unsigned eighths[9] = {' ', 0x2581, 0x2582, 0x2583, 0x2584,
                                        0x2585, 0x2586, 0x2587, 0x2588};
    int per_cell = style == PLOT_BRAILLE ? 2 : 1;
    int rows_levels = style == PLOT_BRAILLE ? 4 : style == PLOT_ASCII ? 3 : 8;
    int max = h * rows_levels;
    int first = n - w * per_cell; /* sample index at the left edge */
    for (int r = 0; r < h; r++) {
        char *p = rows[r];
        int base = (h - 1 - r) * rows_levels; /* dots below this row */
        for (int c = 0; c < w; c++) {
            if (style == PLOT_BRAILLE) {
                unsigned bits = 0;
                for (int k = 0; k < 2; k++) {
                    int d = level(values, n, first + c * 2 + k, max);
                    for (int y = 0; y < 4; y++) /* y = 0 is the top dot row of the cell */
                        if (d > base + (3 - y))
                            bits |= k ? right[y] : left[y];
                }
                p += bits ? put_utf8(p, 0x2800 + bits) : put_utf8(p, ' ');
            } else {
                int d = level(values, n, first + c, max);
                int in = d < 0 ? 0 : d - base;
                in = in < 0 ? 0 : in > rows_levels ? rows_levels : in;
                p += put_utf8(p, style == PLOT_ASCII ? (unsigned char)" .:#"[in] : eighths[in]);
            }
        }
        *p = '\0';
    }
}
