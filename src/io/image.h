/* image — the one place easel decodes image files (PNG, JPEG, BMP, GIF, TGA) into pixels.
 *
 * stb_image is compiled into src/io/image.c (and, until it calls image_decode, src/models/clip_image.c),
 * as static functions, never linked as -lstb: libsixel.so exports stb_image symbols of its own and the two collide at run time
 * (terminal-graphics.md). Every decode runs the same checks in the same order, before stb
 * asks for pixel memory: the file is a regular file of at most INFILE_MAX_IMAGE bytes
 * (infile.h), its bytes pass image_guard_check (image_guard.h), and the size its header
 * declares passes infile_check_image_size. Only the formats above are compiled in: stb 2.27's
 * 16-bit PNM path overflows the heap (found by make fuzz), and every other decoder is attack
 * surface. Thread-safe (stb's failure reason is read in the same call that failed).
 */
#ifndef EASEL_IMAGE_H
#define EASEL_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct Image {
    uint8_t *px;  /* w * h * channels bytes, row-major, malloc'd (image_deinit frees) */
    int w, h;
    int channels; /* 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA */
} Image;

/* Decode the N bytes at BYTES (NAME names the file in messages) into IMG. CHANNELS 0 keeps
 * the file's own channel count; 1 to 4 converts to that many. Returns 0, ERR_FORMAT (err:
 * "NAME: cannot decode image (REASON); ..."), or ERR_NOMEM; on failure IMG is zeroed. */
int image_decode(const void *bytes, size_t n, const char *name, int channels, Image *img,
                 Err *err);

/* Read the file at PATH (infile_read_all: a regular file of at most INFILE_MAX_IMAGE bytes)
 * and decode it as image_decode does. Also ERR_NOTFOUND / ERR_IO from reading. */
int image_load(const char *path, int channels, Image *img, Err *err);

void image_deinit(Image *img); /* NULL allowed; zeroes IMG */

/* ---- writing (src/io/image_write.c; the VAE's images) ---- */

/* Write PX (w·h·channels bytes, row-major, 1 to 4 channels) to PATH as a PNG, atomically
 * (atomic_file_write). Returns 0, ERR_USAGE for a bad size, or ERR_IO naming PATH. */
int image_write_png(const char *path, const uint8_t *px, int w, int h, int channels, Err *err);

#endif
