/* pairs — per-image means and the pairs derived from them. See pairs.h.
 *
 * Design: sort the ratings by (prompt, image) once, fold them into a dense means table, then
 * compare every two rows of one prompt. Quadratic per prompt, which is what the format is
 * (a prompt has a handful of images). Differences compare with a 1e-9 slack so 7.5 - 7.0
 * counts as 0.5 whatever rounding the decimal inputs had.
 */
#include "pairs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

#define DIFF_SLACK 1e-9

static int cmp_rating(const void *a, const void *b) {
    const StoreRating *x = *(const StoreRating *const *)a, *y = *(const StoreRating *const *)b;
    if (x->prompt_id != y->prompt_id)
        return x->prompt_id < y->prompt_id ? -1 : 1;
    if (x->image_id != y->image_id)
        return x->image_id < y->image_id ? -1 : 1;
    return 0;
}

void pairs_means_init(PairsMeans *m, const StoreRating *ratings, size_t n, int n_aspects,
                      int64_t annotator_id) {
    ASSERT(n_aspects >= 0);
    memset(m, 0, sizeof *m);
    m->n_aspects = n_aspects;
    const StoreRating **ord = xmalloc((n ? n : 1) * sizeof *ord);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const StoreRating *r = &ratings[i];
        if (r->aspect_pos < 0 || r->aspect_pos >= n_aspects)
            continue;
        if (annotator_id > 0 && r->annotator_id != annotator_id)
            continue;
        ord[k++] = r;
    }
    qsort(ord, k, sizeof *ord, cmp_rating);
    size_t n_img = 0;
    for (size_t i = 0; i < k; i++)
        if (i == 0 || ord[i]->image_id != ord[i - 1]->image_id ||
            ord[i]->prompt_id != ord[i - 1]->prompt_id)
            n_img++;
    size_t cells = n_img * (size_t)n_aspects;
    m->n_images = n_img;
    m->image_id = xcalloc(n_img, sizeof *m->image_id);
    m->prompt_id = xcalloc(n_img, sizeof *m->prompt_id);
    m->mean = xcalloc(cells, sizeof *m->mean);
    m->n_raters = xcalloc(cells, sizeof *m->n_raters);
    size_t row = (size_t)-1;
    for (size_t i = 0; i < k; i++) {
        if (i == 0 || ord[i]->image_id != ord[i - 1]->image_id ||
            ord[i]->prompt_id != ord[i - 1]->prompt_id) {
            row++;
            m->image_id[row] = ord[i]->image_id;
            m->prompt_id[row] = ord[i]->prompt_id;
        }
        size_t c = row * (size_t)n_aspects + (size_t)ord[i]->aspect_pos;
        m->mean[c] += ord[i]->value;
        m->n_raters[c]++;
    }
    for (size_t c = 0; c < cells; c++)
        m->mean[c] = m->n_raters[c] ? m->mean[c] / m->n_raters[c] : NAN;
    free(ord);
}

void pairs_means_deinit(PairsMeans *m) {
    if (!m)
        return;
    free(m->image_id);
    free(m->prompt_id);
    free(m->mean);
    free(m->n_raters);
    memset(m, 0, sizeof *m);
}

typedef struct PairList {
    Pair *v;
    size_t n, cap;
} PairList;

/* Append the pair of images A, B (rows) with ratings RA, RB if they differ enough. */
static void consider(PairList *l, const PairsMeans *m, size_t a, size_t b, int aspect,
                     double ra, double rb, double min_diff) {
    double d = ra - rb;
    if (d == 0 || fabs(d) < min_diff - DIFF_SLACK)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    int a_wins = d > 0;
    Pair *p = &l->v[l->n++];
    p->prompt_id = m->prompt_id[a];
    p->img_pos = a_wins ? m->image_id[a] : m->image_id[b];
    p->img_neg = a_wins ? m->image_id[b] : m->image_id[a];
    p->aspect = aspect;
    p->label = 1.0;
    p->rating_pos = a_wins ? ra : rb;
    p->rating_neg = a_wins ? rb : ra;
    p->rating_diff = p->rating_pos - p->rating_neg;
}

void pairs_derive(const PairsMeans *m, double min_diff, int what, Pair **out, size_t *n) {
    ASSERT(min_diff >= 0);
    PairList l = {0};
    int na = m->n_aspects;
    for (size_t start = 0; start < m->n_images;) {
        size_t end = start;
        while (end < m->n_images && m->prompt_id[end] == m->prompt_id[start])
            end++;
        if (m->prompt_id[start] != 0) {
            for (size_t a = start; a < end; a++) {
                for (size_t b = a + 1; b < end; b++) {
                    const double *ra = &m->mean[a * (size_t)na];
                    const double *rb = &m->mean[b * (size_t)na];
                    double sa = 0, sb = 0;
                    int both = 0;
                    for (int k = 0; k < na; k++) {
                        if (isnan(ra[k]) || isnan(rb[k]))
                            continue;
                        if (what & PAIRS_PER_ASPECT)
                            consider(&l, m, a, b, k, ra[k], rb[k], min_diff);
                        sa += ra[k];
                        sb += rb[k];
                        both++;
                    }
                    if ((what & PAIRS_WITH_COMBINED) && both > 0)
                        consider(&l, m, a, b, PAIRS_COMBINED, sa / both, sb / both, min_diff);
                }
            }
        }
        start = end;
    }
    *out = l.v;
    *n = l.n;
}
