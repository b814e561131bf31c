/* agreement — inter-rater agreement statistics. See agreement.h for what and why.
 *
 * Design: every statistic is a plain loop over the (items × raters) table that a reader can
 * check against the textbook formula; no statistic depends on another's intermediate state.
 *
 * Krippendorff's alpha (interval) without the coincidence matrix: for the interval metric
 * δ²(a,b) = (a−b)², and the sum over ordered pairs of a set of m values of (a−b)² is
 * 2·m·SS where SS = Σ(v − mean)². With n = pairable values (in images with m_u ≥ 2):
 *     D_o = (1/n) Σ_u 2·m_u·SS_u/(m_u − 1)      D_e = 2·n·SS_all/(n(n − 1))
 *     alpha = 1 − D_o/D_e
 * which is exactly the coincidence-matrix definition (Krippendorff 2011, "Computing
 * Krippendorff's alpha-reliability"), written with centred sums for numerical stability.
 *
 * ICC from the two-way ANOVA of a complete n×k block (McGraw & Wong 1996, case A):
 *     MSR = k Σ(row mean − G)²/(n−1)    MSC = n Σ(col mean − G)²/(k−1)
 *     MSE = (SST − SSR − SSC)/((n−1)(k−1))
 *     ICC(2,1) = (MSR − MSE) / (MSR + (k−1)MSE + k(MSC − MSE)/n)
 *     ICC(2,k) = (MSR − MSE) / (MSR + (MSC − MSE)/n)
 *
 * Invariant: NAN in the table means "not rated" and nothing else; results never contain a
 * number for an undefined statistic.
 */
#include "agreement.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

/* ---- table ---------------------------------------------------------------------------------- */

AgreeTable *agreement_table_new(int n_items, int n_raters) {
    ASSERT(n_items >= 0 && n_raters >= 0);
    AgreeTable *t = xcalloc(1, sizeof *t);
    t->n_items = n_items;
    t->n_raters = n_raters;
    t->values = xmalloc(sizeof(double) * ((size_t)n_items * (size_t)n_raters + 1));
    for (size_t i = 0; i < (size_t)n_items * (size_t)n_raters; i++)
        t->values[i] = NAN;
    t->item_ids = xmalloc(sizeof(int64_t) * ((size_t)n_items + 1));
    for (int i = 0; i < n_items; i++)
        t->item_ids[i] = i;
    return t;
}

void agreement_table_free(AgreeTable *t) {
    if (!t)
        return;
    if (t->item_labels)
        for (int i = 0; i < t->n_items; i++)
            free(t->item_labels[i]);
    if (t->rater_names)
        for (int j = 0; j < t->n_raters; j++)
            free(t->rater_names[j]);
    free(t->item_labels);
    free(t->rater_names);
    free(t->item_ids);
    free(t->values);
    free(t->aspect);
    free(t);
}

static double cell(const AgreeTable *t, int i, int j) {
    return t->values[(int64_t)i * t->n_raters + j];
}

/* Mean and centred sum of squares of the rated cells of row i; returns their count. */
static int row_moments(const AgreeTable *t, int i, double *mean, double *ss, double *lo,
                       double *hi) {
    int m = 0;
    double sum = 0, mn = INFINITY, mx = -INFINITY;
    for (int j = 0; j < t->n_raters; j++) {
        double v = cell(t, i, j);
        if (isnan(v))
            continue;
        m++;
        sum += v;
        if (v < mn)
            mn = v;
        if (v > mx)
            mx = v;
    }
    double mu = m ? sum / m : NAN, s = 0;
    for (int j = 0; j < t->n_raters && m; j++) {
        double v = cell(t, i, j);
        if (!isnan(v))
            s += (v - mu) * (v - mu);
    }
    *mean = mu;
    *ss = s;
    *lo = mn;
    *hi = mx;
    return m;
}

/* ---- Krippendorff's alpha ---------------------------------------------------------------- */

static double alpha_with_note(const AgreeTable *t, const char **note) {
    /* pass 1: pairable values, their mean, and the within-image disagreement */
    int64_t n = 0;
    double sum = 0, within = 0, lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < t->n_items; i++) {
        double mu, ss, mn, mx;
        int m = row_moments(t, i, &mu, &ss, &mn, &mx);
        if (m < 2)
            continue;
        n += m;
        sum += mu * m;
        within += (double)m * ss / (m - 1);
        if (mn < lo)
            lo = mn;
        if (mx > hi)
            hi = mx;
    }
    if (n < 2) {
        *note = "no image has two ratings";
        return NAN;
    }
    if (lo == hi) {
        *note = "every rating is the same value (no variation)";
        return NAN;
    }
    /* pass 2: total sum of squares of the pairable values around their grand mean */
    double g = sum / (double)n, ss_all = 0;
    for (int i = 0; i < t->n_items; i++) {
        int m = 0;
        for (int j = 0; j < t->n_raters; j++)
            m += !isnan(cell(t, i, j));
        if (m < 2)
            continue;
        for (int j = 0; j < t->n_raters; j++) {
            double v = cell(t, i, j);
            if (!isnan(v))
                ss_all += (v - g) * (v - g);
        }
    }
    *note = "";
    /* D_o / D_e = (n − 1) · within / (n · ss_all) */
    return 1.0 - ((double)(n - 1) * within) / ((double)n * ss_all);
}

double agreement_alpha_interval(const AgreeTable *t) {
    const char *note;
    return alpha_with_note(t, &note);
}

/* ---- ICC ------------------------------------------------------------------------------------- */

int agreement_icc2(const double *x, int n, int k, double *icc_2_1, double *icc_2_k) {
    *icc_2_1 = NAN;
    *icc_2_k = NAN;
    if (n < 2 || k < 2)
        return -1;
    double g = 0;
    for (int i = 0; i < n * k; i++)
        g += x[i];
    g /= (double)n * k;
    double ssr = 0, ssc = 0, sst = 0;
    for (int i = 0; i < n; i++) {
        double r = 0;
        for (int j = 0; j < k; j++) {
            r += x[i * k + j];
            sst += (x[i * k + j] - g) * (x[i * k + j] - g);
        }
        r = r / k - g;
        ssr += r * r;
    }
    ssr *= k;
    for (int j = 0; j < k; j++) {
        double c = 0;
        for (int i = 0; i < n; i++)
            c += x[i * k + j];
        c = c / n - g;
        ssc += c * c;
    }
    ssc *= n;
    double sse = sst - ssr - ssc;
    if (sse < 0) /* rounding when the residual is exactly zero */
        sse = 0;
    double msr = ssr / (n - 1), msc = ssc / (k - 1), mse = sse / ((double)(n - 1) * (k - 1));
    double d1 = msr + (k - 1) * mse + k * (msc - mse) / n;
    double dk = msr + (msc - mse) / n;
    /* scale-aware zero test: a constant block gives sums of squares at rounding level */
    double scale = 1e-12 * (sst / ((double)n * k) + g * g + 1e-300);
    if (sst <= scale || fabs(d1) <= scale || fabs(dk) <= scale)
        return -1;
    *icc_2_1 = (msr - mse) / d1;
    *icc_2_k = (msr - mse) / dk;
    return 0;
}

/* ---- the largest complete block ------------------------------------------------------------ */

/* Rater sets are bitsets of W 64-bit words. A distinct pattern is the set of raters of one or
 * more images; the block for rater set S holds every image whose pattern contains S. */
typedef struct Pattern {
    uint64_t *bits;    /* w words */
    int w;
    int count;         /* images with exactly this pattern */
} Pattern;

static int cmp_pattern(const void *a, const void *b) {
    const Pattern *x = a, *y = b;
    for (int i = x->w - 1; i >= 0; i--)
        if (x->bits[i] != y->bits[i])
            return x->bits[i] < y->bits[i] ? -1 : 1;
    return 0;
}

static int contains(const uint64_t *set, const uint64_t *sub, int w) {
    for (int i = 0; i < w; i++)
        if ((set[i] & sub[i]) != sub[i])
            return 0;
    return 1;
}

static int popcount_set(const uint64_t *s, int w) {
    int c = 0;
    for (int i = 0; i < w; i++)
        c += __builtin_popcountll(s[i]);
    return c;
}

static int items_covering(const Pattern *p, int n_p, const uint64_t *s, int w) {
    int n = 0;
    for (int i = 0; i < n_p; i++)
        if (contains(p[i].bits, s, w))
            n += p[i].count;
    return n;
}

/* Is (n, k) with set s better than the best so far? Cells, then images; equal → keep old. */
static int better(int n, int k, int best_n, int best_k) {
    if (n < 2 || k < 2)
        return 0;
    if (best_n == 0)
        return 1;
    long a = (long)n * k, b = (long)best_n * best_k;
    return a > b || (a == b && n > best_n);
}

#define GREEDY_MAX_RATERS 256

static void find_block(const AgreeTable *t, uint64_t *best, int w, int *best_n, int *best_k) {
    int r = t->n_raters;
    /* distinct patterns, counted: every pairable image's rater set, sorted, runs merged */
    Pattern *p = xcalloc((size_t)t->n_items + 1, sizeof *p);
    uint64_t *bits = xcalloc(((size_t)t->n_items + 1) * (size_t)w, sizeof *bits);
    int n_p = 0;
    for (int i = 0; i < t->n_items; i++) {
        uint64_t *cur = bits + (size_t)n_p * w;
        int m = 0;
        for (int j = 0; j < r; j++)
            if (!isnan(cell(t, i, j))) {
                cur[j / 64] |= 1ULL << (j % 64);
                m++;
            }
        if (m < 2) {
            memset(cur, 0, sizeof *cur * (size_t)w);
            continue;
        }
        p[n_p].bits = cur;
        p[n_p].w = w;
        p[n_p].count = 1;
        n_p++;
    }
    qsort(p, (size_t)n_p, sizeof *p, cmp_pattern);
    int u = 0;
    for (int q = 0; q < n_p; q++) {
        if (u > 0 && cmp_pattern(&p[u - 1], &p[q]) == 0)
            p[u - 1].count++;
        else
            p[u++] = p[q];
    }
    n_p = u;
    *best_n = 0;
    *best_k = 0;
    memset(best, 0, sizeof *best * (size_t)w);
    if (r <= 24 && ((double)(1u << r) * n_p) <= 3e7) {
        /* exhaustive over subsets in increasing bitmask order: ties keep the lower mask */
        for (uint64_t s = 3; s < (1ULL << r); s++) {
            int k = __builtin_popcountll(s);
            if (k < 2)
                continue;
            int n = items_covering(p, n_p, &s, 1);
            if (better(n, k, *best_n, *best_k)) {
                best[0] = s;
                *best_n = n;
                *best_k = k;
            }
        }
    } else {
        /* every distinct pattern is a candidate block ... */
        for (int q = 0; q < n_p; q++) {
            int k = popcount_set(p[q].bits, w), n = items_covering(p, n_p, p[q].bits, w);
            if (better(n, k, *best_n, *best_k)) {
                memcpy(best, p[q].bits, sizeof *best * (size_t)w);
                *best_n = n;
                *best_k = k;
            }
        }
        /* ... and so is each step of greedy elimination: from all raters, drop the one whose
         * removal keeps the most images; ties drop the rater with fewer ratings, then the
         * later one. That costs raters^2 x patterns: past GREEDY_MAX_RATERS (crowd data,
         * thousands of raters with a rating or two each, ran `easel agreement` and the
         * Quality screen for hours) the candidates are instead, for each M, the raters
         * with at least M ratings (the crowd's core). */
        int *n_rated = xcalloc((size_t)r + 1, sizeof *n_rated);
        for (int i = 0; i < t->n_items; i++)
            for (int j = 0; j < r; j++)
                n_rated[j] += !isnan(cell(t, i, j));
        uint64_t *s = xcalloc((size_t)w, sizeof *s), *trial = xcalloc((size_t)w, sizeof *s);
        if (r > GREEDY_MAX_RATERS) {
            for (int m = t->n_items; m >= 2; m--) {
                memset(s, 0, sizeof *s * (size_t)w);
                int k = 0;
                for (int j = 0; j < r; j++)
                    if (n_rated[j] >= m) {
                        s[j / 64] |= 1ULL << (j % 64);
                        k++;
                    }
                if (k < 2)
                    continue;
                int n = items_covering(p, n_p, s, w);
                if (better(n, k, *best_n, *best_k)) {
                    memcpy(best, s, sizeof *s * (size_t)w);
                    *best_n = n;
                    *best_k = k;
                }
            }
        } else {
            for (int j = 0; j < r; j++)
                s[j / 64] |= 1ULL << (j % 64);
            for (int k = r; k >= 2; k--) {
                int n = items_covering(p, n_p, s, w);
                if (better(n, k, *best_n, *best_k)) {
                    memcpy(best, s, sizeof *s * (size_t)w);
                    *best_n = n;
                    *best_k = k;
                }
                if (k == 2)
                    break;
                int drop = -1, drop_n = -1;
                for (int j = 0; j < r; j++) {
                    if (!(s[j / 64] >> (j % 64) & 1))
                        continue;
                    memcpy(trial, s, sizeof *s * (size_t)w);
                    trial[j / 64] &= ~(1ULL << (j % 64));
                    int nn = items_covering(p, n_p, trial, w);
                    if (nn > drop_n || (nn == drop_n && n_rated[j] <= n_rated[drop])) {
                        drop_n = nn;
                        drop = j;
                    }
                }
                s[drop / 64] &= ~(1ULL << (drop % 64));
            }
        }
        free(s);
        free(trial);
        free(n_rated);
    }
    ASSERT(*best_n == 0 || popcount_set(best, w) == *best_k);
    free(bits);
    free(p);
}

static void compute_icc(const AgreeTable *t, AgreeStats *s) {
    int w = (t->n_raters + 63) / 64 + 1;
    uint64_t *set = xcalloc((size_t)w, sizeof *set);
    int n = 0, k = 0;
    s->icc_2_1 = NAN;
    s->icc_2_k = NAN;
    if (t->n_raters >= 2)
        find_block(t, set, w, &n, &k);
    if (n < 2 || k < 2) {
        s->icc_note = "no two raters rated the same two images";
        free(set);
        return;
    }
    s->icc_n_items = n;
    s->icc_k = k;
    s->icc_raters = xmalloc(sizeof(int) * (size_t)k);
    s->icc_items = xmalloc(sizeof(int) * (size_t)n);
    int c = 0;
    for (int j = 0; j < t->n_raters; j++)
        if (set[j / 64] >> (j % 64) & 1)
            s->icc_raters[c++] = j;
    ASSERT(c == k);
    double *x = xmalloc(sizeof(double) * (size_t)n * (size_t)k);
    int row = 0;
    for (int i = 0; i < t->n_items; i++) {
        int all = 1;
        for (int q = 0; q < k && all; q++)
            all = !isnan(cell(t, i, s->icc_raters[q]));
        if (!all)
            continue;
        ASSERT(row < n);
        s->icc_items[row] = i;
        for (int q = 0; q < k; q++)
            x[(size_t)row * k + q] = cell(t, i, s->icc_raters[q]);
        row++;
    }
    ASSERT(row == n);
    if (agreement_icc2(x, n, k, &s->icc_2_1, &s->icc_2_k) != 0)
        s->icc_note = "every rating in the block is the same value (no variation)";
    else
        s->icc_note = "";
    free(x);
    free(set);
}

/* ---- the rest ------------------------------------------------------------------------------ */

static int cmp_item(const void *a, const void *b) {
    const AgreeItem *x = a, *y = b;
    if (x->range != y->range)
        return x->range > y->range ? -1 : 1;
    if (x->sd != y->sd)
        return x->sd > y->sd ? -1 : 1;
    if (x->n_ratings != y->n_ratings)
        return x->n_ratings > y->n_ratings ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

AgreeStats *agreement_compute(const AgreeTable *t, const AgreeOptions *opt) {
    AgreeStats *s = xcalloc(1, sizeof *s);
    s->disagree_range = (opt && opt->disagree_range > 0) ? opt->disagree_range
                                                          : AGREE_DISAGREE_RANGE;
    s->n_raters = t->n_raters;
    s->raters = xcalloc((size_t)t->n_raters + 1, sizeof *s->raters);
    s->ranked = xcalloc((size_t)t->n_items + 1, sizeof *s->ranked);
    double *offset = xcalloc((size_t)t->n_raters + 1, sizeof *offset);
    double *abs_offset = xcalloc((size_t)t->n_raters + 1, sizeof *abs_offset);

    long raters_sum = 0;
    s->raters_min = 0;
    for (int i = 0; i < t->n_items; i++) {
        double mu, ss, lo, hi;
        int m = row_moments(t, i, &mu, &ss, &lo, &hi);
        if (m == 0)
            continue;
        s->n_items_rated++;
        s->n_ratings += m;
        raters_sum += m;
        if (s->n_items_rated == 1 || m < s->raters_min)
            s->raters_min = m;
        if (m > s->raters_max)
            s->raters_max = m;
        for (int j = 0; j < t->n_raters; j++) {
            double v = cell(t, i, j);
            if (isnan(v))
                continue;
            s->raters[j].n_rated++;
            if (m < 2)
                continue;
            double others = (mu * m - v) / (m - 1);
            s->raters[j].n_shared++;
            offset[j] += v - others;
            abs_offset[j] += fabs(v - others);
        }
        if (m < 2)
            continue;
        AgreeItem *it = &s->ranked[s->n_ranked++];
        it->item = i;
        it->id = t->item_ids ? t->item_ids[i] : i;
        it->n_ratings = m;
        it->mean = mu;
        it->range = hi - lo;
        it->sd = sqrt(ss / (m - 1));
        it->high = it->range >= s->disagree_range - 1e-9;
        s->n_high_disagree += it->high;
    }
    s->n_items_pairable = s->n_ranked;
    s->raters_mean = s->n_items_rated ? (double)raters_sum / s->n_items_rated : NAN;
    qsort(s->ranked, (size_t)s->n_ranked, sizeof *s->ranked, cmp_item);

    for (int j = 0; j < t->n_raters; j++) {
        AgreeRater *r = &s->raters[j];
        r->rater = j;
        s->n_raters_active += r->n_rated > 0;
        r->mean_offset = r->n_shared ? offset[j] / r->n_shared : NAN;
        r->mean_abs_offset = r->n_shared ? abs_offset[j] / r->n_shared : NAN;
    }
    free(offset);
    free(abs_offset);

    s->alpha = alpha_with_note(t, &s->alpha_note);
    compute_icc(t, s);
    return s;
}

void agreement_stats_free(AgreeStats *s) {
    if (!s)
        return;
    free(s->icc_raters);
    free(s->icc_items);
    free(s->raters);
    free(s->ranked);
    free(s);
}
