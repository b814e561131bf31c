/* nn_elementwise — plain loops. See nn_elementwise.h. These are memory-bound and small in
 * every model we train, so they stay serial: a wake-up of the pool costs more. */
#include "nn_elementwise.h"

#include <string.h>

void nn_add_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void nn_add_backward(float *da, float *db, const float *dout, size_t n) {
    if (da)
        for (size_t i = 0; i < n; i++)
            da[i] += dout[i];
    if (db)
        for (size_t i = 0; i < n; i++)
            db[i] += dout[i];
}

void nn_mul_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] * b[i];
}

void nn_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                     size_t n) {
    if (da)
        for (size_t i = 0; i < n; i++)
            da[i] += dout[i] * b[i];
    if (db)
        for (size_t i = 0; i < n; i++)
            db[i] += dout[i] * a[i];
}

void nn_scale_forward(float *out, const float *a, float s, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = s * a[i];
}

void nn_scale_backward(float *da, const float *dout, float s, size_t n) {
    if (da)
        for (size_t i = 0; i < n; i++)
            da[i] += s * dout[i];
}

void nn_concat_forward(float *out, const float *a, const float *b, int N, int Ca, int Cb) {
    size_t C = (size_t)Ca + (size_t)Cb;
    for (int n = 0; n < N; n++) {
        memcpy(out + n * C, a + (size_t)n * Ca, (size_t)Ca * sizeof(float));
        memcpy(out + n * C + Ca, b + (size_t)n * Cb, (size_t)Cb * sizeof(float));
    }
}

void nn_concat_backward(float *da, float *db, const float *dout, int N, int Ca, int Cb) {
    size_t C = (size_t)Ca + (size_t)Cb;
    for (int n = 0; n < N; n++) {
        const float *d = dout + n * C;
        if (da)
            for (int c = 0; c < Ca; c++)
                da[(size_t)n * Ca + c] += d[c];
        if (db)
            for (int c = 0; c < Cb; c++)
                db[(size_t)n * Cb + c] += d[Ca + c];
    }
}
