/* gfx_sixel — our sixel pipeline: a palette fitted to the image in OKLab, error diffusion in
 * linear light with perceptual colour choice, and the DCS writer. See gfx.h.
 *
 *   pixels ─> histogram (6 bits/channel, exact means) ─> median cut in OKLab ─> k-means
 *          ─> registers as the terminal shows them (sixel colours are percent)
 *          ─> serpentine Floyd–Steinberg: error kept in linear RGB, the nearest register
 *             chosen in OKLab ─> indices ─> sixel bands with run-length coding
 *
 * Why ours and not libsixel's: libsixel builds its median cut on a histogram of 5 bits per
 * channel in RGB and its default diffusion throws part of the error away, so a smooth sky
 * came out in visible steps. Fitting in OKLab spends registers where the eye needs them (a
 * wide smooth gradient gets many close entries), and full error diffusion keeps every
 * region's mean colour, which is what removes bands. Dithering noise costs sixel bytes (each
 * colour change breaks a run), so two rules keep the frame small: the chooser keeps the
 * colour of the previous pixel on the row when it is within a third of a just-noticeable
 * difference (JND, about 0.02 in OKLab) of the best (the error still diffuses, so the mean
 * stays right), and only the part of a pixel's error beyond half a JND diffuses (so an area
 * whose colour a register already matches that closely is not dithered at all). The palette
 * stops growing once no cluster holds more than 1/256 of the error of an image off by half a
 * JND everywhere. Measured in bench/bench_sixel.c and doc/perf.md.
 *
 * Nearest-register search: the registers sorted by OKLab lightness; scan outwards from the
 * pixel's lightness and stop when the lightness gap alone exceeds the best distance.
 */
#include "gfx.h"
#include "gfx_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- nearest register ------------------------------------------------------------------- */

typedef struct Finder {
    int n;
    float lab[GFX_MAX_COLORS][3];   /* sorted by L */
    int id[GFX_MAX_COLORS];         /* register of each sorted entry */
} Finder;

static void finder_init(Finder *f, const float (*lab)[3], int n) {
    /* insertion sort of indices by L: n <= 256 */
    f->n = n;
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && lab[f->id[j - 1]][0] > lab[i][0]) {
            f->id[j] = f->id[j - 1];
            j--;
        }
        f->id[j] = i;
    }
    for (int i = 0; i < n; i++)
        memcpy(f->lab[i], lab[f->id[i]], sizeof f->lab[i]);
}

static inline float dist2(const float *a, const float *b) {
    float d0 = a[0] - b[0], d1 = a[1] - b[1], d2 = a[2] - b[2];
    return d0 * d0 + d1 * d1 + d2 * d2;
}

/* Walk the entries from I in steps of STEP (1 or -1) while their L alone can still beat *BD,
 * keeping the nearest to LAB in *BEST and its squared distance in *BD. */
static void finder_scan(const Finder *f, const float *lab, int i, int step, float *bd,
                        int *best) {
    for (; i >= 0 && i < f->n; i += step) {
        float dl = f->lab[i][0] - lab[0];
        if (dl * dl >= *bd)
            break;
        float dd = dist2(lab, f->lab[i]);
        if (dd < *bd) {
            *bd = dd;
            *best = i;
        }
    }
}

/* Sorted position of the entry nearest to LAB; *d gets the squared distance. */
static int finder_nearest(const Finder *f, const float *lab, float *d) {
    int lo = 0, hi = f->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (f->lab[mid][0] < lab[0])
            lo = mid + 1;
        else
            hi = mid;
    }
    int best = lo < f->n ? lo : f->n - 1;
    float bd = dist2(lab, f->lab[best]);
    finder_scan(f, lab, best + 1, 1, &bd, &best);
    finder_scan(f, lab, (lo < f->n ? lo : f->n) - 1, -1, &bd, &best);
    *d = bd;
    return best;
}

/* ---- palette: histogram, median cut, k-means -------------------------------------------- */

typedef struct Point {
    float lab[3];
    float w;
} Point;

typedef struct Box {
    int lo, hi;      /* points[lo, hi) */
    double sse;      /* weighted squared error around the mean */
    float mean[3];
} Box;

static void box_stats(const Point *p, Box *b) {
    double w = 0, s[3] = {0}, s2 = 0;
    for (int i = b->lo; i < b->hi; i++) {
        w += p[i].w;
        for (int k = 0; k < 3; k++) {
            s[k] += p[i].w * p[i].lab[k];
            s2 += p[i].w * p[i].lab[k] * p[i].lab[k];
        }
    }
    double m2 = 0;
    for (int k = 0; k < 3; k++) {
        b->mean[k] = w > 0 ? (float)(s[k] / w) : 0;
        m2 += w > 0 ? s[k] * s[k] / w : 0;
    }
    b->sse = b->hi - b->lo > 1 ? s2 - m2 : 0;
}

static int cmp_l(const void *a, const void *b) {
    float x = ((const Point *)a)->lab[0], y = ((const Point *)b)->lab[0];
    return x < y ? -1 : x > y;
}
static int cmp_a(const void *a, const void *b) {
    float x = ((const Point *)a)->lab[1], y = ((const Point *)b)->lab[1];
    return x < y ? -1 : x > y;
}
static int cmp_b(const void *a, const void *b) {
    float x = ((const Point *)a)->lab[2], y = ((const Point *)b)->lab[2];
    return x < y ? -1 : x > y;
}

/* Split B at its weighted median along its widest axis (by variance) into B and NB. */
static int box_split(Point *p, Box *b, Box *nb) {
    if (b->hi - b->lo < 2)
        return 0;
    double var[3] = {0}, w = 0;
    for (int i = b->lo; i < b->hi; i++) {
        w += p[i].w;
        for (int k = 0; k < 3; k++) {
            double d = p[i].lab[k] - b->mean[k];
            var[k] += p[i].w * d * d;
        }
    }
    int axis = var[0] >= var[1] && var[0] >= var[2] ? 0 : var[1] >= var[2] ? 1 : 2;
    qsort(p + b->lo, (size_t)(b->hi - b->lo), sizeof *p,
          axis == 0 ? cmp_l : axis == 1 ? cmp_a : cmp_b);
    double acc = 0;
    int cut = b->lo + 1;
    for (int i = b->lo; i < b->hi - 1; i++) {
        acc += p[i].w;
        if (acc >= w / 2) {
            cut = i + 1;
            break;
        }
        cut = i + 2;
    }
    if (cut >= b->hi)
        cut = b->hi - 1;
    nb->lo = cut;
    nb->hi = b->hi;
    b->hi = cut;
    box_stats(p, b);
    box_stats(p, nb);
    return 1;
}

#define HBITS 6
#define FIT_JND 0.01 /* OKLab distance: half a just-noticeable difference */
#define HSIZE (1 << (3 * HBITS))

int gfx_palette_fit(const uint8_t *px, int w, int h, int stride, int max_colors,
                    GfxPalette *pal, Err *err) {
    memset(pal, 0, sizeof *pal);
    if (max_colors < 2)
        max_colors = 2;
    if (max_colors > GFX_MAX_COLORS)
        max_colors = GFX_MAX_COLORS;
    uint32_t *hist = calloc(HSIZE, 4 * sizeof *hist); /* count, sum r, sum g, sum b */
    if (!hist)
        return err_set(err, ERR_NOMEM, "out of memory fitting a palette");
    int n_bins = 0;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = px + (size_t)y * stride * 3;
        for (int x = 0; x < w; x++) {
            const uint8_t *c = row + x * 3;
            size_t k = ((size_t)(c[0] >> (8 - HBITS)) << (2 * HBITS)) |
                       ((size_t)(c[1] >> (8 - HBITS)) << HBITS) | (c[2] >> (8 - HBITS));
            uint32_t *e = hist + 4 * k;
            if (e[0]++ == 0)
                n_bins++;
            e[1] += c[0];
            e[2] += c[1];
            e[3] += c[2];
        }
    }
    Point *p = malloc(sizeof *p * (size_t)(n_bins ? n_bins : 1));
    if (!p) {
        free(hist);
        return err_set(err, ERR_NOMEM, "out of memory fitting a palette");
    }
    int np = 0;
    for (size_t k = 0; k < HSIZE; k++) {
        const uint32_t *e = hist + 4 * k;
        if (!e[0])
            continue;
        float lin[3];
        for (int c = 0; c < 3; c++) {
            /* mean of the bin in linear light: the bins are 4 levels wide, close enough */
            lin[c] = gfx_srgb_to_linear((uint8_t)((e[1 + c] + e[0] / 2) / e[0]));
        }
        gfx_linear_to_oklab(lin, p[np].lab);
        p[np].w = (float)e[0];
        np++;
    }
    free(hist);

    /* median cut: split the box with the largest error until there are enough */
    Box box[GFX_MAX_COLORS];
    int nbox = 1;
    double w_total = (double)w * h;
    box[0] = (Box){.lo = 0, .hi = np};
    box_stats(p, &box[0]);
    while (nbox < max_colors) {
        int worst = -1;
        for (int i = 0; i < nbox; i++)
            if (box[i].hi - box[i].lo > 1 && (worst < 0 || box[i].sse > box[worst].sse))
                worst = i;
        /* enough: no box holds more error than 1/256 of an image off by half a JND */
        if (worst >= 0 && box[worst].sse < FIT_JND * FIT_JND * w_total / 256)
            break;
        if (worst < 0 || !box_split(p, &box[worst], &box[nbox]))
            break;
        nbox++;
    }

    /* k-means (Lloyd) from the median-cut centres, a few rounds */
    float cen[GFX_MAX_COLORS][3];
    for (int i = 0; i < nbox; i++)
        memcpy(cen[i], box[i].mean, sizeof cen[i]);
    double *acc = malloc(sizeof *acc * 4 * (size_t)nbox);
    if (!acc) {
        free(p);
        return err_set(err, ERR_NOMEM, "out of memory fitting a palette");
    }
    Finder *f = malloc(sizeof *f);
    if (!f) {
        free(acc);
        free(p);
        return err_set(err, ERR_NOMEM, "out of memory fitting a palette");
    }
    int heavy[GFX_MAX_COLORS]; /* the heaviest point of each cluster */
    for (int round = 0; round < 4; round++) {
        finder_init(f, (const float(*)[3])cen, nbox);
        memset(acc, 0, sizeof *acc * 4 * (size_t)nbox);
        for (int j = 0; j < nbox; j++)
            heavy[j] = -1;
        for (int i = 0; i < np; i++) {
            float d;
            int j = f->id[finder_nearest(f, p[i].lab, &d)];
            acc[4 * j] += p[i].w;
            for (int k = 0; k < 3; k++)
                acc[4 * j + 1 + k] += p[i].w * p[i].lab[k];
            if (heavy[j] < 0 || p[i].w > p[heavy[j]].w)
                heavy[j] = i;
        }
        for (int j = 0; j < nbox; j++)
            if (acc[4 * j] > 0)
                for (int k = 0; k < 3; k++)
                    cen[j][k] = (float)(acc[4 * j + 1 + k] / acc[4 * j]);
    }
    /* A cluster that is mostly one colour (a flat area: sky at the horizon, a sun, a wall)
     * gets that colour exactly. A mean sits inside the colours it averages, so extremes (a
     * white highlight) would otherwise be out of reach of any mix of registers. */
    for (int j = 0; j < nbox; j++)
        if (heavy[j] >= 0 && p[heavy[j]].w >= 0.5 * acc[4 * j])
            memcpy(cen[j], p[heavy[j]].lab, sizeof cen[j]);
    free(f);
    free(acc);
    free(p);

    /* registers as the terminal will show them: sixel colours are percentages */
    for (int i = 0; i < nbox; i++) {
        float lin[3];
        gfx_oklab_to_linear(cen[i], lin);
        for (int k = 0; k < 3; k++) {
            int v = gfx_linear_to_srgb(lin[k]);
            int pct = (v * 100 + 127) / 255;
            pal->rgb[i][k] = (uint8_t)((pct * 255 + 50) / 100);
        }
    }
    pal->n = nbox;
    return 0;
}

/* ---- dithering -------------------------------------------------------------------------- */

/* Keep the previous pixel's register when it is within KEEP (OKLab distance) of the best,
 * and pass on only the part of a pixel's error beyond DEAD: together they turn dithering
 * noise into longer runs (fewer sixel bytes) while the mean colour of every region stays
 * within half a just-noticeable difference. KEEP 0.015 saved another 10% of bytes but drew
 * visible horizontal streaks on flat grainy areas in xterm. Tuned on the demo images:
 * bench/bench_sixel.c, doc/perf.md. */
#define KEEP 0.006f
#define DEAD 0.01f

int gfx_dither(const uint8_t *px, int w, int h, int stride, const GfxPalette *pal,
               GfxDiffusion kind, uint8_t *idx, Err *err) {
    if (pal->n < 1)
        return err_set(err, ERR_USAGE, "dithering with an empty palette");
    Finder *f = malloc(sizeof *f);
    float (*plin)[3] = malloc(sizeof *plin * (size_t)pal->n);
    float (*plab)[3] = malloc(sizeof *plab * (size_t)pal->n);
    /* error rows: this one and the next, with one pixel of margin on each side */
    float *e0 = calloc((size_t)(w + 2) * 3, sizeof *e0);
    float *e1 = calloc((size_t)(w + 2) * 3, sizeof *e1);
    int rc = 0;
    if (!f || !plin || !plab || !e0 || !e1) {
        rc = err_set(err, ERR_NOMEM, "out of memory dithering a %dx%d image", w, h);
        goto out;
    }
    for (int i = 0; i < pal->n; i++) {
        for (int k = 0; k < 3; k++)
            plin[i][k] = gfx_srgb_to_linear(pal->rgb[i][k]);
        gfx_linear_to_oklab(plin[i], plab[i]);
    }
    finder_init(f, (const float(*)[3])plab, pal->n);
    float strength = kind == GFX_DIFFUSE_NONE ? 0.0f : 1.0f;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = px + (size_t)y * stride * 3;
        int rtl = y & 1; /* serpentine */
        int dir = rtl ? -1 : 1;
        int prev = -1;
        for (int step = 0; step < w; step++) {
            int x = rtl ? w - 1 - step : step;
            float want[3], lab[3];
            float *ec = e0 + (size_t)(x + 1) * 3;
            for (int k = 0; k < 3; k++) {
                float v = gfx_srgb_to_linear(row[x * 3 + k]) + ec[k];
                want[k] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
            gfx_linear_to_oklab(want, lab);
            float d;
            int j = f->id[finder_nearest(f, lab, &d)];
            if (prev >= 0 && prev != j && sqrtf(dist2(lab, plab[prev])) <= sqrtf(d) + KEEP)
                j = prev;
            prev = j;
            idx[(size_t)y * w + x] = (uint8_t)j;
            if (strength == 0.0f)
                continue;
            float e = sqrtf(dist2(lab, plab[j]));
            float shrink = e > DEAD ? strength * (1.0f - DEAD / e) : 0.0f;
            if (shrink == 0.0f)
                continue;
            for (int k = 0; k < 3; k++) {
                float q = (want[k] - plin[j][k]) * shrink;
                float *ahead = e0 + (size_t)(x + 1 + dir) * 3;
                float *below = e1 + (size_t)(x + 1) * 3;
                ahead[k] += q * (7.0f / 16);
                below[k - 3 * dir] += q * (3.0f / 16);
                below[k] += q * (5.0f / 16);
                below[k + 3 * dir] += q * (1.0f / 16);
            }
        }
        float *t = e0;
        e0 = e1;
        e1 = t;
        memset(e1, 0, (size_t)(w + 2) * 3 * sizeof *e1);
    }
out:
    free(f);
    free(plin);
    free(plab);
    free(e0);
    free(e1);
    return rc;
}

/* ---- the sixel writer ------------------------------------------------------------------- */

static void out_run(GfxBuf *o, int ch, int n) {
    char s[16];
    if (n >= 4) {
        int k = snprintf(s, sizeof s, "!%d%c", n, ch);
        gfx_buf_add(o, s, (size_t)k);
    } else {
        for (int i = 0; i < n; i++)
            s[i] = (char)ch;
        gfx_buf_add(o, s, (size_t)n);
    }
}

int gfx_sixel_write(const uint8_t *idx, int w, int h, const GfxPalette *pal, char **data,
                    size_t *len, Err *err) {
    *data = NULL;
    *len = 0;
    GfxBuf o = {0};
    uint8_t *codes = calloc((size_t)GFX_MAX_COLORS * (size_t)w, 1);
    if (!codes)
        return err_set(err, ERR_NOMEM, "out of memory writing a %dx%d sixel", w, h);
    char s[64];
    int k = snprintf(s, sizeof s, "\033Pq\"1;1;%d;%d", w, h);
    gfx_buf_add(&o, s, (size_t)k);
    for (int i = 0; i < pal->n; i++) {
        k = snprintf(s, sizeof s, "#%d;2;%d;%d;%d", i, (pal->rgb[i][0] * 100 + 127) / 255,
                     (pal->rgb[i][1] * 100 + 127) / 255, (pal->rgb[i][2] * 100 + 127) / 255);
        gfx_buf_add(&o, s, (size_t)k);
    }
    int used[GFX_MAX_COLORS], hi[GFX_MAX_COLORS]; /* hi: last column of a colour, -1 none */
    for (int i = 0; i < GFX_MAX_COLORS; i++)
        hi[i] = -1;
    for (int y0 = 0; y0 < h; y0 += 6) {
        int n_used = 0;
        for (int dy = 0; dy < 6 && y0 + dy < h; dy++) {
            const uint8_t *row = idx + (size_t)(y0 + dy) * w;
            for (int x = 0; x < w; x++) {
                int c = row[x];
                if (hi[c] < 0)
                    used[n_used++] = c;
                if (x > hi[c])
                    hi[c] = x;
                codes[(size_t)c * w + x] |= (uint8_t)(1 << dy);
            }
        }
        for (int u = 0; u < n_used; u++) {
            int col = used[u], last = hi[col];
            uint8_t *c = codes + (size_t)col * w;
            k = snprintf(s, sizeof s, "#%d", col);
            gfx_buf_add(&o, s, (size_t)k);
            int run_ch = -1, run_n = 0;
            for (int x = 0; x <= last; x++) {
                int ch = 63 + c[x];
                if (ch == run_ch) {
                    run_n++;
                } else {
                    if (run_n)
                        out_run(&o, run_ch, run_n);
                    run_ch = ch;
                    run_n = 1;
                }
                c[x] = 0;
            }
            if (run_n)
                out_run(&o, run_ch, run_n);
            hi[col] = -1;
            if (u + 1 < n_used)
                gfx_buf_add(&o, "$", 1);
        }
        if (y0 + 6 < h)
            gfx_buf_add(&o, "-", 1);
    }
    gfx_buf_add(&o, "\033\\", 2);
    free(codes);
    if (o.oom) {
        free(o.data);
        return err_set(err, ERR_NOMEM, "out of memory writing a %dx%d sixel", w, h);
    }
    *data = o.data;
    *len = o.len;
    return 0;
}
