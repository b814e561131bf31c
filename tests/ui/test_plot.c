/* Tests for ui/plot.c: braille and block area charts from numbers, without a terminal. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"

static char **alloc_rows(int w, int h) {
    char **rows = calloc((size_t)h, sizeof *rows);
    for (int i = 0; i < h; i++)
        rows[i] = calloc((size_t)plot_row_bytes(w), 1);
    return rows;
}

static void free_rows(char **rows, int h) {
    for (int i = 0; i < h; i++)
        free(rows[i]);
    free(rows);
}

Test(plot, braille_full_and_empty_columns) {
    /* 2 cells wide, 1 row: samples 0, 1, 0.5, NaN -> cells (0,1) and (0.5,nan) */
    double v[] = {0, 1, 0.5, NAN};
    char **rows = alloc_rows(2, 1);
    plot_area(v, 4, 2, 1, PLOT_BRAILLE, rows);
    /* cell 0: left column empty, right column all 4 dots = 0x08|0x10|0x20|0x80 = 0xB8 */
    /* cell 1: left column half = the 2 bottom dots (0x04|0x40), right empty */
    cr_assert_str_eq(rows[0], "\u28B8\u2844");
    free_rows(rows, 1);
}

Test(plot, braille_two_rows_fill_from_the_bottom) {
    double v[] = {1.0, 0.25}; /* 8 dots and 2 dots of 8 */
    char **rows = alloc_rows(1, 2);
    plot_area(v, 2, 1, 2, PLOT_BRAILLE, rows);
    cr_assert_str_eq(rows[0], "\u2847", "top row: only the full left column");
    cr_assert_str_eq(rows[1], "\u28E7", "bottom row: left full, right 2 bottom dots");
    free_rows(rows, 2);
}

Test(plot, right_aligned_newest_last_and_tiny_values_visible) {
    double v[] = {1, 1, 1, 0.001};
    char **rows = alloc_rows(1, 1);
    plot_area(v, 4, 1, 1, PLOT_BLOCKS, rows);
    cr_assert_str_eq(rows[0], "\u2581", "the newest sample, not zero-height");
    free_rows(rows, 1);
}

Test(plot, blocks_levels_and_padding) {
    double v[] = {0.5, 1.5};
    char **rows = alloc_rows(3, 1);
    plot_area(v, 2, 3, 1, PLOT_BLOCKS, rows);
    cr_assert_str_eq(rows[0], " \u2584\u2588", "no sample, half, clamped full");
    free_rows(rows, 1);
}
