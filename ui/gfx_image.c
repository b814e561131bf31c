/* gfx_image — decode image files and resize pixels, with stb_image / stb_image_resize.
 *
 * Both stb libraries are compiled here and only here, as static functions: libsixel.so
 * exports stb_image symbols of its own, and linking the system libstb next to it aborts at
 * run time (terminal-graphics.md), so we never link -lstb. stb's code is not ours to keep
 * warning-free; its warnings are silenced for the two includes only.
 */
#include "gfx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_guard.h"
#include "infile.h"

/* stb declares some static functions it never defines; GCC reports that at the end of the
 * file, so this one stays off for the whole file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
/* Only the formats easel reads (PNG, JPEG, BMP; GIF and TGA for `score`): stb 2.27's 16-bit
 * PNM path overflows the heap (found by make fuzz), and every other decoder is attack surface. */
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_TGA
#define STBI_FAILURE_USERMSG
#include <stb_image.h>
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#pragma GCC diagnostic pop

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int gfx_image_load(const char *path, GfxImage *img, Err *err) {
    memset(img, 0, sizeof *img);
    /* A regular file of bounded size (a FIFO or /dev/zero is refused, never read), checked
     * (image_guard.h, then the header's size) before any pixel memory is asked for. */
    unsigned char *bytes;
    size_t len;
    int w, h, n;
    int rc = infile_read_all(path, "image", INFILE_MAX_IMAGE, &bytes, &len, err);
    if (rc == ERR_NOTFOUND && err)
        err->code = ERR_IO; /* callers tell unreadable from undecodable, not why unreadable */
    if (rc)
        return rc == ERR_NOTFOUND ? ERR_IO : rc;
    unsigned char *px = NULL;
    if (len <= INT32_MAX && (rc = image_guard_check(bytes, len, base_name(path), err)) == 0 &&
        stbi_info_from_memory(bytes, (int)len, &w, &h, &n) &&
        (rc = infile_check_image_size(base_name(path), w, h, err)) == 0)
        px = stbi_load_from_memory(bytes, (int)len, &w, &h, &n, 3);
    free(bytes);
    if (rc)
        return rc;
    if (!px) {
        const char *why = stbi_failure_reason();
        if (why && strstr(why, "memory"))
            return err_set(err, ERR_NOMEM, "%s: out of memory decoding the image", path);
        return err_set(err, ERR_FORMAT, "%s: not a readable image (%s); the file is corrupt, "
                       "truncated or of an unsupported type", base_name(path),
                       why ? why : "unknown format");
    }
    img->w = w;
    img->h = h;
    img->px = px; /* stbi allocates with malloc: free() releases it */
    return 0;
}

int gfx_image_resize(const GfxImage *src, int w, int h, GfxImage *dst, Err *err) {
    memset(dst, 0, sizeof *dst);
    if (w <= 0 || h <= 0)
        return err_set(err, ERR_USAGE, "cannot resize to %dx%d", w, h);
    uint8_t *px = malloc((size_t)w * (size_t)h * 3);
    if (!px)
        return err_set(err, ERR_NOMEM, "out of memory resizing to %dx%d", w, h);
    if (w == src->w && h == src->h)
        memcpy(px, src->px, (size_t)w * (size_t)h * 3);
    else if (!stbir_resize_uint8(src->px, src->w, src->h, 0, px, w, h, 0, 3)) {
        free(px);
        return err_set(err, ERR_NOMEM, "resize %dx%d -> %dx%d failed", src->w, src->h, w, h);
    }
    dst->w = w;
    dst->h = h;
    dst->px = px;
    return 0;
}

void gfx_image_deinit(GfxImage *img) {
    if (!img)
        return;
    free(img->px);
    img->px = NULL;
    img->w = img->h = 0;
}
