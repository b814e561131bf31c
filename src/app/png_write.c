/* png_write — see png_write.h. */
#include "png_write.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "atomic_file.h"
#include "base.h"

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* One chunk: length, type, data, CRC of type + data. */
static size_t put_chunk(uint8_t *p, const char *type, const uint8_t *data, size_t n) {
    put32(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    if (n)
        memcpy(p + 8, data, n);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, p + 4, (uInt)(n + 4));
    put32(p + 8 + n, (uint32_t)crc);
    return n + 12;
}

int png_encode_rgb(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    if (w < 1 || h < 1 || w > 16384 || h > 16384)
        return err_set(err, ERR_USAGE, "png: size %dx%d out of range (1..16384 a side)", w, h);
    size_t row = (size_t)w * 3 + 1, raw_n = row * (size_t)h;
    uint8_t *raw = xmalloc(raw_n);
    for (int y = 0; y < h; y++) {
        raw[row * (size_t)y] = 0; /* filter: none */
        memcpy(raw + row * (size_t)y + 1, rgb + (size_t)y * (size_t)w * 3, (size_t)w * 3);
    }
    uLongf z_n = compressBound((uLong)raw_n);
    uint8_t *z = xmalloc(z_n);
    int zrc = compress2(z, &z_n, raw, (uLong)raw_n, 6);
    free(raw);
    if (zrc != Z_OK) {
        free(z);
        return err_set(err, ERR_NOMEM, "png: deflate failed (zlib %d)", zrc);
    }
    uint8_t *buf = xmalloc(8 + 25 + (size_t)z_n + 12 + 12);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(buf, sig, 8);
    size_t off = 8;
    uint8_t ihdr[13];
    put32(ihdr, (uint32_t)w);
    put32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 2;  /* colour type: RGB */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* no interlace */
    off += put_chunk(buf + off, "IHDR", ihdr, sizeof ihdr);
    off += put_chunk(buf + off, "IDAT", z, (size_t)z_n);
    off += put_chunk(buf + off, "IEND", NULL, 0);
    free(z);
    *out = buf;
    *n = off;
    return 0;
}

int png_write_rgb(const char *path, const uint8_t *rgb, int w, int h, Err *err) {
    uint8_t *png = NULL;
    size_t n = 0;
    int rc = png_encode_rgb(rgb, w, h, &png, &n, err);
    if (!rc)
        rc = atomic_file_write(path, png, n, err);
    free(png);
    return rc;
}
