/* nn_softmax — see nn_softmax.h. */
#include "nn_softmax.h"

#include <math.h>
#include <stddef.h>

void nn_softmax_forward(float *out, const float *inp, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float mx = -INFINITY;
        for (int c = 0; c < C; c++)
            mx = x[c] > mx ? x[c] : mx;
        float s = 0.0f;
        for (int c = 0; c < C; c++) {
            o[c] = expf(x[c] - mx);
            s += o[c];
        }
        float inv = 1.0f / s;
        for (int c = 0; c < C; c++)
            o[c] *= inv;
    }
}

void nn_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * C, *y = out + (size_t)n * C;
        float dot = 0.0f;
        for (int c = 0; c < C; c++)
            dot += d[c] * y[c];
        float *di = dinp + (size_t)n * C;
        for (int c = 0; c < C; c++)
            di[c] += y[c] * (d[c] - dot);
    }
}
