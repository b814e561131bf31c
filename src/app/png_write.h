/* png_write — encode 8-bit RGB pixels as a PNG file (zlib deflate, filter 0 rows), the form
 * `easel generate` writes its images in. The decoder side is src/io/image.h.
 */
#ifndef EASEL_PNG_WRITE_H
#define EASEL_PNG_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The PNG of the W x H RGB pixels RGB (rows packed, 3 bytes a pixel) into *out (malloc'd,
 * *n bytes; the caller frees). Returns 0, ERR_USAGE for a size out of range (1..16384 a
 * side), ERR_NOMEM. */
int png_encode_rgb(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *n, Err *err);

/* Encode and write PATH atomically (atomic_file.h): a reader, or a run stopped half-way,
 * never sees half a PNG. */
int png_write_rgb(const char *path, const uint8_t *rgb, int w, int h, Err *err);

#endif
