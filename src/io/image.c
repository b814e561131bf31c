/* image — stb_image, compiled here and only here. See image.h. */
#include "image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image_guard.h"
#include "infile.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_TGA
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#include <stb_image.h>
#pragma GCC diagnostic pop
/* stb_image 2.27 declares stbi_set_unpremultiply_on_load_thread static and never defines it;
 * GCC reports that at the end of the file, after the pop above. */
#pragma GCC diagnostic ignored "-Wunused-function"

static int decode_error(const char *name, Err *err) {
    const char *why = stbi_failure_reason();
    if (why && strstr(why, "memory"))
        return err_set(err, ERR_NOMEM, "%s: out of memory decoding the image", name);
    return err_set(err, ERR_FORMAT, "%s: cannot decode image (%s); is it a PNG/JPEG file?", name,
                   why ? why : "unknown format");
}

int image_decode(const void *bytes, size_t n, const char *name, int channels, Image *img,
                 Err *err) {
    memset(img, 0, sizeof *img);
    if (channels < 0 || channels > 4)
        return err_set(err, ERR_USAGE, "%s: cannot decode to %d channels", name, channels);
    if (n > (size_t)INT32_MAX)
        return err_set(err, ERR_FORMAT, "%s: file too large to decode (%zu bytes)", name, n);
    /* The header first: a size no one can decode is refused before memory is asked for. */
    int rc, w, h, comp = 0;
    if ((rc = image_guard_check(bytes, n, name, err)))
        return rc;
    if (!stbi_info_from_memory(bytes, (int)n, &w, &h, &comp))
        return decode_error(name, err);
    if ((rc = infile_check_image_size(name, w, h, err)))
        return rc;
    uint8_t *px = stbi_load_from_memory(bytes, (int)n, &w, &h, &comp, channels);
    if (!px)
        return decode_error(name, err);
    img->px = px; /* stbi allocates with malloc (STBI_MALLOC unset): free() releases it */
    img->w = w;
    img->h = h;
    img->channels = channels ? channels : comp;
    return 0;
}

int image_load(const char *path, int channels, Image *img, Err *err) {
    memset(img, 0, sizeof *img);
    uint8_t *bytes = NULL;
    size_t n = 0;
    int rc = infile_read_all(path, "image", INFILE_MAX_IMAGE, &bytes, &n, err);
    if (rc)
        return rc;
    rc = image_decode(bytes, n, path, channels, img, err);
    free(bytes);
    return rc;
}

void image_deinit(Image *img) {
    if (!img)
        return;
    free(img->px);
    memset(img, 0, sizeof *img);
}
