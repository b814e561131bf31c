/* sha256 — SHA-256 (FIPS 180-4) of bytes and of files: the content hash that identifies an
 * image in the store (images.sha256) and keys the embedding cache.
 *
 * Plain C, no state outside the Sha256 struct: thread-safe. Checked against the FIPS test
 * vectors in tests/base/test_sha256.c.
 */
#ifndef EASEL_SHA256_H
#define EASEL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SHA256_HEX_LEN 64 /* hex digits, without the terminating NUL */

typedef struct Sha256 {
    uint32_t h[8];         /* chaining state */
    uint64_t n_bytes;      /* bytes hashed so far */
    uint8_t buf[64];       /* pending partial block */
    size_t n_buf;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
/* Finish and write 32 bytes to OUT; S must be re-initialised before reuse. */
void sha256_final(Sha256 *s, uint8_t out[32]);

/* Lowercase hex of the hash of N bytes at DATA into HEX (65 bytes, NUL-terminated). */
void sha256_hex(const void *data, size_t n, char hex[SHA256_HEX_LEN + 1]);

/* Lowercase hex of the hash of the file at PATH into HEX. Returns 0, or ERR_IO naming the
 * file and the reason (ERR_NOTFOUND if it does not exist). */
int sha256_file_hex(const char *path, char hex[SHA256_HEX_LEN + 1], Err *err);

#endif
