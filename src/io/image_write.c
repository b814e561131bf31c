/* image_write — PNG files from 8-bit pixels (image.h, image_write_png), through stb_image_write
 * compiled in here as static functions (as stb_image in image.c, never -lstb), into memory and
 * then atomic_file_write: a half-written PNG never has the final name. */
#include "image.h"

#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#pragma GCC diagnostic pop

#include "atomic_file.h"
#include "base.h"

typedef struct PngBuf {
    unsigned char *p;
    size_t n, cap;
} PngBuf;

static void png_sink(void *ctx, void *data, int size) {
    PngBuf *b = ctx;
    if (b->n + (size_t)size > b->cap) {
        b->cap = (b->n + (size_t)size) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, (size_t)size);
    b->n += (size_t)size;
}

int image_write_png(const char *path, const uint8_t *px, int w, int h, int channels, Err *err) {
    if (w < 1 || h < 1 || channels < 1 || channels > 4)
        return err_set(err, ERR_USAGE, "%s: cannot write a %dx%d image of %d channels as PNG",
                       path, w, h, channels);
    PngBuf b = {0};
    if (!stbi_write_png_to_func(png_sink, &b, w, h, channels, px, w * channels)) {
        free(b.p);
        return err_set(err, ERR_NOMEM, "%s: PNG encoding failed", path);
    }
    int rc = atomic_file_write(path, b.p, b.n, err);
    free(b.p);
    return rc;
}
