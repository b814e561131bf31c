/* plot — history graphs as text: area charts in braille (2x4 dots per cell) or, for
 * terminals without braille glyphs, in eighth blocks (1x8 per cell), or in ASCII for fonts
 * with neither (1x3 per cell: . : #). Pure functions of
 * numbers to UTF-8 strings, no ncurses, so they are tested without a terminal (nvtop's
 * plot.c does its layout maths the same way).
 *
 * Used by the GPU screen (utilisation and memory history); any screen may use it.
 * Thread-safe (no state).
 */
#ifndef EASEL_PLOT_H
#define EASEL_PLOT_H

typedef enum PlotStyle {
    PLOT_BRAILLE, /* 2 samples per column, 4 levels per row */
    PLOT_BLOCKS,  /* 1 sample per column, 8 levels per row */
    PLOT_ASCII,   /* 1 sample per column, 3 levels per row: . : # */
} PlotStyle;

/* Bytes one rendered row of W cells needs, with the terminating NUL. */
int plot_row_bytes(int w);

/* Render the last samples of VALUES (N of them, oldest first, each in 0..1; values outside
 * are clamped, NaN is "no sample") right-aligned into H rows of W cells: rows[0] is the top.
 * Each rows[i] must hold plot_row_bytes(W) bytes. */
void plot_area(const double *values, int n, int w, int h, PlotStyle style, char **rows);

#endif
