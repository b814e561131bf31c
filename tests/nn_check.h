/* nn_check.h — helpers shared by the engine tests (header-only: engine tests link the engine
 * alone, without tests/support_*.c).
 *
 * check_grad(): the finite-difference gradient check. The scalar L = Σ w_i·out_i with fixed
 * random weights w; the op's backward gets dout = w and must produce dL/dinput; each input
 * element is nudged by ±eps and the central difference of L (summed in double) compared with
 * it under |a − fd| <= atol + rtol·max(|a|, |fd|).
 */
#ifndef EASEL_TESTS_NN_CHECK_H
#define EASEL_TESTS_NN_CHECK_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define GC_MAX_IN 8

typedef struct GradCase {
    const char *name;
    int n_in;                    /* differentiable inputs */
    float *in[GC_MAX_IN];        /* their values (perturbed in place, restored) */
    size_t n[GC_MAX_IN];         /* their sizes */
    size_t n_out;
    /* out = f(inputs); may use ctx */
    void (*fwd)(struct GradCase *c, float *out);
    /* din[i] += dL/din[i] given dout (din zeroed by the harness) */
    void (*bwd)(struct GradCase *c, float *out, const float *dout, float **din);
    void *ctx;
} GradCase;

/* Test-owned allocations, released together by gc_free_all() (so ASan sees no leaks). */
static int gc_quiet; /* 1: do not log mismatches (tests that expect them) */
static void *gc_allocs[256];
static int gc_n_allocs;

static inline float *gc_randn(Rng *r, size_t n, float std) {
    float *x = calloc(n ? n : 1, sizeof(float));
    rng_fill_normal(r, x, n, 0.0f, std);
    if (gc_n_allocs < 256)
        gc_allocs[gc_n_allocs++] = x;
    return x;
}

static inline void gc_free_all(void) {
    for (int i = 0; i < gc_n_allocs; i++)
        free(gc_allocs[i]);
    gc_n_allocs = 0;
}

static inline double gc_loss(GradCase *c, float *out, const float *w) {
    c->fwd(c, out);
    double s = 0.0;
    for (size_t i = 0; i < c->n_out; i++)
        s += (double)w[i] * out[i];
    return s;
}

/* Returns the number of mismatching elements (0 = pass); reports the first few. */
static inline int check_grad(GradCase *c, float eps, float atol, float rtol) {
    Rng r;
    rng_init(&r, 1234);
    float *w = calloc(c->n_out ? c->n_out : 1, sizeof(float));
    rng_fill_normal(&r, w, c->n_out, 0.0f, 1.0f);
    float *out = calloc(c->n_out ? c->n_out : 1, sizeof(float));
    float *din[GC_MAX_IN];
    for (int i = 0; i < c->n_in; i++)
        din[i] = calloc(c->n[i] ? c->n[i] : 1, sizeof(float));
    c->fwd(c, out);
    c->bwd(c, out, w, din);
    int bad = 0;
    for (int i = 0; i < c->n_in; i++) {
        for (size_t e = 0; e < c->n[i]; e++) {
            float x0 = c->in[i][e];
            c->in[i][e] = x0 + eps;
            double lp = gc_loss(c, out, w);
            c->in[i][e] = x0 - eps;
            double lm = gc_loss(c, out, w);
            c->in[i][e] = x0;
            double fd = (lp - lm) / (2.0 * eps);
            double a = din[i][e];
            double tol = atol + rtol * fmax(fabs(a), fabs(fd));
            if (fabs(a - fd) > tol) {
                if (bad < 5 && !gc_quiet)
                    cr_log_error("%s: input %d element %zu: analytic %.6g vs numeric %.6g",
                                 c->name, i, e, a, fd);
                bad++;
            }
        }
    }
    for (int i = 0; i < c->n_in; i++)
        free(din[i]);
    free(out);
    free(w);
    return bad;
}

static inline float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d > m || isnan(d))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

#endif
