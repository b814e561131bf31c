/* gfx_image — decode image files (image.h) and resize pixels (stb_image_resize).
 *
 * stb_image_resize is compiled here and only here, as static functions: libsixel.so
 * exports stb symbols of its own, and linking the system libstb next to it aborts at
 * run time (terminal-graphics.md), so we never link -lstb. stb's code is not ours to keep
 * warning-free; its warnings are silenced for the include only.
 */
#include "gfx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

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
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#pragma GCC diagnostic pop

int gfx_image_load(const char *path, GfxImage *img, Err *err) {
    memset(img, 0, sizeof *img);
    Image im;
    int rc = image_load(path, 3, &im, err);
    if (rc == ERR_NOTFOUND && err)
        err->code = ERR_IO; /* callers tell unreadable from undecodable, not why unreadable */
    if (rc)
        return rc == ERR_NOTFOUND ? ERR_IO : rc;
    img->w = im.w;
    img->h = im.h;
    img->px = im.px; /* malloc'd: free() releases it */
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
