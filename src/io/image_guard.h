/* image_guard — structural checks of image files that stb_image 2.27 (the Debian 12 package
 * easel decodes with) gets wrong, run on the file's bytes before stb sees them.
 *
 * stb_image is fast and small but trusts some header fields that a hostile file sets; make
 * fuzz found these, and each has a test in tests/ui/test_image_inputs.c:
 *   - JPEG: a Huffman table (DHT) declaring more than 256 codes overflows stb's table
 *     (stbi__build_huffman writes past size[257]).
 * (16-bit PNM, whose conversion overflowed the heap, is not compiled in: every file that
 * includes stb_image defines STBI_ONLY_PNG/JPEG/BMP/GIF/TGA.) Pure functions; thread-safe.
 */
#ifndef EASEL_IMAGE_GUARD_H
#define EASEL_IMAGE_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Check the N bytes of an image file (NAME for messages). Returns 0, or ERR_FORMAT with a
 * message naming NAME and what is wrong. Files of formats it has no checks for pass. */
int image_guard_check(const uint8_t *b, size_t n, const char *name, Err *err);

#endif
