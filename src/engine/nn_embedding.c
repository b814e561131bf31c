/* nn_embedding — see nn_embedding.h. */
#include "nn_embedding.h"

#include <stddef.h>
#include <string.h>

#include "base.h"

void nn_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C,
                          int V) {
    for (int n = 0; n < N; n++) {
        ASSERT(ids[n] >= 0 && ids[n] < V);
        memcpy(out + (size_t)n * C, table + (size_t)ids[n] * C, (size_t)C * sizeof(float));
    }
}

void nn_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C,
                           int V) {
    for (int n = 0; n < N; n++) {
        ASSERT(ids[n] >= 0 && ids[n] < V);
        float *row = dtable + (size_t)ids[n] * C;
        const float *d = dout + (size_t)n * C;
        for (int c = 0; c < C; c++)
            row[c] += d[c];
    }
}
