/* nn_reduce — see nn_reduce.h. */
#include "nn_reduce.h"

#include <stddef.h>

void nn_sum_forward(float *out, const float *inp, int N, int C) {
    for (int n = 0; n < N; n++) {
        double s = 0.0;
        for (int c = 0; c < C; c++)
            s += inp[(size_t)n * C + c];
        out[n] = (float)s;
    }
}

void nn_sum_backward(float *dinp, const float *dout, int N, int C) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            dinp[(size_t)n * C + c] += dout[n];
}

void nn_mean_forward(float *out, const float *inp, int N, int C) {
    nn_sum_forward(out, inp, N, C);
    for (int n = 0; n < N; n++)
        out[n] /= (float)C;
}

void nn_mean_backward(float *dinp, const float *dout, int N, int C) {
    for (int n = 0; n < N; n++) {
        float g = dout[n] / (float)C;
        for (int c = 0; c < C; c++)
            dinp[(size_t)n * C + c] += g;
    }
}
