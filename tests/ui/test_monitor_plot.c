/* Tests for ui/monitor_plot.c: range fitting, dot mapping, braille and block glyphs, lines
 * without gaps, EMA, ticks, number formats, softmax, bars and the screen layout. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "monitor_plot.h"

Test(monitor_plot, range_fits_data_with_headroom) {
    double x[] = {1, 2, 3, 4}, y[] = {2, 4, NAN, 6};
    PlotSeries s = {x, y, 4, 1};
    PlotRange r;
    cr_assert_eq(plot_range_fit(&s, 1, 0, &r), 1);
    cr_assert_float_eq(r.x0, 1, 1e-12);
    cr_assert_float_eq(r.x1, 4, 1e-12);
    cr_assert_float_eq(r.y0, 2 - 0.2, 1e-12);
    cr_assert_float_eq(r.y1, 6 + 0.2, 1e-12);
    /* log scale: log10(2)..log10(6) */
    cr_assert_eq(plot_range_fit(&s, 1, 1, &r), 1);
    double span = log10(6) - log10(2);
    cr_assert_float_eq(r.y0, log10(2) - 0.05 * span, 1e-12);
    /* rescale when the data grows */
    double y2[] = {2, 4, 8, 100};
    PlotSeries s2 = {x, y2, 4, 1};
    plot_range_fit(&s2, 1, 0, &r);
    cr_assert_gt(r.y1, 100);
    /* nothing to draw */
    PlotSeries e = {x, y, 0, 1};
    cr_assert_eq(plot_range_fit(&e, 1, 0, &r), 0);
    /* flat series still gets a band */
    double f[] = {3, 3};
    PlotSeries sf = {x, f, 2, 1};
    plot_range_fit(&sf, 1, 0, &r);
    cr_assert_lt(r.y0, 3);
    cr_assert_gt(r.y1, 3);
}

Test(monitor_plot, braille_corners_and_glyphs) {
    PlotCanvas c;
    plot_canvas_init(&c, 3, 2, PLOT_BRAILLE); /* 6 x 8 dots */
    double x[] = {0, 1}, y[] = {1, 0};
    PlotRange r = {0, 1, 0, 1, 0};
    cr_assert_eq(plot_x_to_dot(&c, &r, 0), 0);
    cr_assert_eq(plot_x_to_dot(&c, &r, 1), 5);
    cr_assert_eq(plot_y_to_dot(&c, &r, 1), 0);
    cr_assert_eq(plot_y_to_dot(&c, &r, 0), 7);
    PlotSeries s = {x, y, 2, 3};
    plot_canvas_series(&c, &r, &s);
    /* top-left dot (dot 1) and bottom-right dot (dot 8) set */
    cr_assert(c.bits[0] & 0x01);
    cr_assert(c.bits[1 * 3 + 2] & 0x80);
    cr_assert_eq(c.id[0], 3);
    char g[5];
    cr_assert_eq(plot_canvas_glyph(&c, 0, 0, g), 3);
    /* U+2800 + bits: first byte E2, then A0|(bits>>6), 80|(bits&63) */
    cr_assert_eq((unsigned char)g[0], 0xE2);
    /* the line from (0,0) to (5,7) touches every cell on the diagonal and no gaps: each of
     * the 8 dot rows has a dot */
    for (int py = 0; py < 8; py++) {
        int found = 0;
        for (int px = 0; px < 6; px++) {
            int col = px / 2, row = py / 4;
            static const unsigned char bit[4][2] = {{1, 8}, {2, 16}, {4, 32}, {64, 128}};
            if (c.bits[row * 3 + col] & bit[py % 4][px % 2])
                found = 1;
        }
        cr_assert(found, "dot row %d empty", py);
    }
    plot_canvas_clear(&c);
    cr_assert_eq(plot_canvas_glyph(&c, 1, 1, g), 1);
    cr_assert_str_eq(g, " ");
    plot_canvas_deinit(&c);
}

Test(monitor_plot, blocks_halves) {
    PlotCanvas c;
    plot_canvas_init(&c, 1, 1, PLOT_BLOCKS);
    char g[5];
    plot_canvas_dot(&c, 0, 0, 1);
    plot_canvas_glyph(&c, 0, 0, g);
    cr_assert_str_eq(g, "\xE2\x96\x80"); /* ▀ */
    plot_canvas_dot(&c, 0, 1, 1);
    plot_canvas_glyph(&c, 0, 0, g);
    cr_assert_str_eq(g, "\xE2\x96\x88"); /* █ */
    plot_canvas_dot(&c, 5, 5, 1);       /* outside: ignored */
    plot_canvas_deinit(&c);
}

Test(monitor_plot, ema_hand_computed) {
    double y[] = {1, 3, NAN, 5}, o[4];
    plot_ema(y, 4, 0.5, o);
    cr_assert_float_eq(o[0], 1, 1e-12);
    cr_assert_float_eq(o[1], 2, 1e-12);    /* .5*1 + .5*3 */
    cr_assert(isnan(o[2]));
    cr_assert_float_eq(o[3], 3.5, 1e-12);  /* .5*2 + .5*5 */
    plot_ema(y, 4, 0, o);
    cr_assert_float_eq(o[3], 5, 1e-12);
}

Test(monitor_plot, ticks_are_nice) {
    double t[10];
    int n = plot_ticks(0.03, 0.97, 5, t);
    cr_assert_eq(n, 4);
    cr_assert_float_eq(t[0], 0.2, 1e-12);
    cr_assert_float_eq(t[3], 0.8, 1e-12);
    n = plot_ticks(-1, 1, 5, t);
    cr_assert_eq(n, 5);
    cr_assert_eq(t[2], 0.0);
    cr_assert_eq(plot_ticks(1, 1, 5, t), 0);
}

Test(monitor_plot, formats_numbers) {
    char b[16];
    cr_assert_str_eq(plot_fmt(0.8531, b, sizeof b), "0.853");
    cr_assert_str_eq(plot_fmt(12.44, b, sizeof b), "12.4");
    cr_assert_str_eq(plot_fmt(1.2e-4, b, sizeof b), "1.2e-04");
    cr_assert_str_eq(plot_fmt(34567, b, sizeof b), "34.6k");
    cr_assert_str_eq(plot_fmt(NAN, b, sizeof b), "-");
    cr_assert_str_eq(plot_fmt(0, b, sizeof b), "0");
}

Test(monitor_plot, softmax_and_bars) {
    double w[5] = {0.2, 0.2, 0.2, 0.2, 0.2}, p[5];
    plot_softmax(w, 5, p);
    for (int i = 0; i < 5; i++)
        cr_assert_float_eq(p[i], 0.2, 1e-12);
    double w2[2] = {0, log(3.0)};
    plot_softmax(w2, 2, p);
    cr_assert_float_eq(p[1], 0.75, 1e-12);
    char bar[64];
    plot_bar(0.5, 4, bar);
    cr_assert_str_eq(bar, "\xE2\x96\x88\xE2\x96\x88  ");
    plot_bar(1.0 / 16, 2, bar); /* one eighth of the first cell: ▏ U+258F */
    cr_assert_str_eq(bar, "\xE2\x96\x8F ");
}

Test(monitor_plot, layout_fills_and_degrades) {
    MonitorLayout l;
    cr_assert_eq(monitor_layout(40, 140, 6, &l), 6);
    cr_assert_gt(l.side.w, 0);
    int area = 0;
    for (int i = 0; i < l.n_plots; i++) {
        cr_assert_geq(l.plots[i].w, 24);
        cr_assert_geq(l.plots[i].h, 6);
        cr_assert_leq(l.plots[i].x + l.plots[i].w, l.side.x);
        cr_assert_leq(l.plots[i].y + l.plots[i].h, 40);
        area += l.plots[i].w * l.plots[i].h;
    }
    /* the plots fill the body left of the side panel */
    cr_assert_eq(area, (140 - l.side.w) * (40 - 2));
    /* 80x24: still all six, side panel kept */
    cr_assert_gt(monitor_layout(24, 80, 6, &l), 0);
    /* tiny terminal: nothing rather than garbage */
    cr_assert_eq(monitor_layout(5, 15, 6, &l), 0);
}
