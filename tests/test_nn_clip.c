/* test_nn_clip — the vectorised GELU / QuickGELU against the plain libm forms (nn_activation)
 * over a dense range, extremes, and in place. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "nn_activation.h"
#include "nn_clip.h"

#define N 200003 /* not a multiple of the block size */

static float *grid(void) {
    float *x = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++)
        x[i] = -40.0f + 80.0f * (float)i / (N - 1);
    x[0] = -INFINITY;
    x[1] = INFINITY;
    x[2] = 0.0f;
    x[3] = -0.0f;
    x[4] = 1e-30f;
    x[5] = -1e-30f;
    return x;
}

Test(nn_clip, gelu_matches_erf_form) {
    float *x = grid(), *want = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
    nn_gelu_forward(want, x, N);
    nn_clip_gelu_forward(got, x, N);
    for (int i = 0; i < N; i++) {
        if (isnan(want[i])) {
            cr_assert(isnan(got[i]), "x=%g", x[i]);
            continue;
        }
        if (isinf(want[i])) {
            cr_assert_eq(got[i], want[i], "x=%g", x[i]);
            continue;
        }
        cr_assert_leq(fabsf(got[i] - want[i]), 3e-7f * fabsf(x[i]) + 1e-38f,
                      "x=%.9g got %.9g want %.9g", x[i], got[i], want[i]);
    }
    nn_clip_gelu_forward(x, x, N); /* in place */
    for (int i = 6; i < N; i++)
        cr_assert_eq(x[i], got[i]);
    free(x);
    free(want);
    free(got);
}

Test(nn_clip, quickgelu_matches_sigmoid_form) {
    float *x = grid(), *want = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
    nn_quickgelu_forward(want, x, N);
    nn_clip_quickgelu_forward(got, x, N);
    for (int i = 2; i < N; i++)
        cr_assert_leq(fabsf(got[i] - want[i]), 1e-6f * fabsf(want[i]) + 1e-30f,
                      "x=%.9g got %.9g want %.9g", x[i], got[i], want[i]);
    cr_assert_eq(got[1], INFINITY);
    free(x);
    free(want);
    free(got);
}
