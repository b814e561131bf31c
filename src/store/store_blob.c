/* store_blob — float blobs stored little-endian (the embeddings and latent caches). See
 * store_int.h. */
#include "store_int.h"

#include <stdint.h>
#include <string.h>

#include "base.h"

static int host_is_le(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static void swap4(void *p, size_t n) {
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++, b += 4) {
        uint8_t t0 = b[0], t1 = b[1];
        b[0] = b[3];
        b[1] = b[2];
        b[2] = t1;
        b[3] = t0;
    }
}

const void *store_blob_le(const float *data, size_t n, float **swapped) {
    *swapped = NULL;
    if (host_is_le())
        return data;
    *swapped = xmalloc(n * 4);
    memcpy(*swapped, data, n * 4);
    swap4(*swapped, n);
    return *swapped;
}

void store_blob_host(float *out, size_t n) {
    if (!host_is_le())
        swap4(out, n);
}
