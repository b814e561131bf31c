/* encoder — the backend table, image decoding, and the embedding cache. See encoder.h.
 *
 * stb_image is compiled here, static (STB_IMAGE_STATIC), never linked as -lstb: libsixel
 * exports stb symbols of its own and the two collide at run time.
 *
 * Cache invariant: a row in the embeddings table is written only after its encoder returned
 * success, and its key is the content hash of the exact bytes that were decoded (the file is
 * read once into memory, hashed and decoded from that buffer).
 */
#include "encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "feat_classic.h"
#include "image_guard.h"
#include "infile.h"
#include "sha256.h"
#include "store_embed.h"
#include "clip_encoder.h"

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
/* Only the formats easel reads (PNG, JPEG, BMP; GIF and TGA for `score`): stb 2.27's 16-bit
 * PNM path overflows the heap (found by make fuzz), and every other decoder is attack surface. */
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

/* The backends. One line each; `clip` opens models registered with `easel models add`. */
const EncoderBackend encoder_backends[] = {
    {"classic", feat_classic_open, "built-in image statistics and hashed prompt n-grams"},
    {"clip", clip_encoder_open, "CLIP ViT (OpenCLIP or Hugging Face folder): clip:NAME or clip:PATH"},
    {NULL, NULL, NULL},
};

Encoder *encoder_alloc(const char *name) {
    Encoder *enc = xcalloc(1, sizeof *enc);
    base_strlcpy(enc->name, name, sizeof enc->name);
    return enc;
}

Encoder *encoder_open(const char *name, Store *st, Err *err) {
    const char *colon = strchr(name, ':');
    size_t plen = colon ? (size_t)(colon - name) : strlen(name);
    for (const EncoderBackend *b = encoder_backends; b->prefix; b++) {
        if (strlen(b->prefix) == plen && strncmp(b->prefix, name, plen) == 0) {
            Encoder *enc = b->open(colon ? colon + 1 : "", st, err);
            if (enc) {
                ASSERT(enc->dim_image > 0 && enc->n_image_tokens > 0 && enc->dim_text > 0);
                ASSERT(enc->ops.encode_image && enc->ops.encode_text);
            }
            return enc;
        }
    }
    char known[256] = "";
    for (const EncoderBackend *b = encoder_backends; b->prefix; b++) {
        size_t n = strlen(known);
        snprintf(known + n, sizeof known - n, "%s%s%s", n ? ", " : "", b->prefix,
                 strcmp(b->prefix, "classic") ? ":NAME" : "");
    }
    err_set(err, ERR_USAGE, "unknown encoder '%s' (known: %s)", name, known);
    return NULL;
}

void encoder_free(Encoder *enc) {
    if (!enc)
        return;
    if (enc->ops.free_state)
        enc->ops.free_state(enc);
    free(enc);
}

/* ---- images ---- */

uint8_t *encoder_image_decode(const void *bytes, size_t n, const char *name, int *w, int *h,
                              Err *err) {
    if (n > (size_t)0x7fffffff) {
        err_set(err, ERR_FORMAT, "%s: file too large to decode (%zu bytes)", name, n);
        return NULL;
    }
    /* The header first: a size no one can decode is refused before memory is asked for. */
    int comp = 0;
    if (image_guard_check(bytes, n, name, err))
        return NULL;
    if (!stbi_info_from_memory(bytes, (int)n, w, h, &comp)) {
        err_set(err, ERR_FORMAT, "%s: cannot decode image (%s); is it a PNG/JPEG file?", name,
                stbi_failure_reason());
        return NULL;
    }
    if (infile_check_image_size(name, *w, *h, err))
        return NULL;
    uint8_t *px = stbi_load_from_memory(bytes, (int)n, w, h, &comp, 3);
    if (!px) {
        err_set(err, ERR_FORMAT, "%s: cannot decode image (%s); is it a PNG/JPEG file?", name,
                stbi_failure_reason());
        return NULL;
    }
    /* Hand back a malloc'd buffer: stbi_image_free is free() by default, but say so here. */
    return px;
}

/* An image file's bytes: a regular file of at most INFILE_MAX_IMAGE bytes (a FIFO or
 * /dev/zero is refused with the reason, never read). */
static int read_file(const char *path, uint8_t **out, size_t *n, Err *err) {
    return infile_read_all(path, "image", INFILE_MAX_IMAGE, out, n, err);
}

uint8_t *encoder_image_load(const char *path, int *w, int *h, Err *err) {
    uint8_t *bytes = NULL;
    size_t n = 0;
    if (read_file(path, &bytes, &n, err))
        return NULL;
    uint8_t *px = encoder_image_decode(bytes, n, path, w, h, err);
    free(bytes);
    return px;
}

/* ---- hashes ---- */

int encoder_hash_file(const char *path, char hex[65], Err *err) {
    uint8_t *bytes = NULL;
    size_t n = 0;
    int rc = read_file(path, &bytes, &n, err);
    if (rc)
        return rc;
    sha256_hex(bytes, n, hex);
    free(bytes);
    return 0;
}

void encoder_hash_text(const char *text, char hex[65]) { sha256_hex(text, strlen(text), hex); }

/* ---- cached embeddings ---- */

int encoder_embed_image(Encoder *enc, Store *st, const char *path, const char *key, float **out,
                        Err *err) {
    char hex[65];
    uint8_t *bytes = NULL;
    size_t n = 0;
    int rc;
    if (st && key) {
        int dim = 0, nt = 0;
        rc = store_embed_get(st, enc->name, "image", key, out, &dim, &nt, err);
        if (rc == 0 && dim == enc->dim_image && nt == enc->n_image_tokens)
            return 0;
        if (rc == 0)
            free(*out); /* shape changed (encoder updated): recompute below */
        else if (rc != ERR_NOTFOUND)
            return rc;
    }
    if ((rc = read_file(path, &bytes, &n, err)))
        return rc;
    sha256_hex(bytes, n, hex);
    if (st && !key) {
        int dim = 0, nt = 0;
        rc = store_embed_get(st, enc->name, "image", hex, out, &dim, &nt, err);
        if (rc == 0 && dim == enc->dim_image && nt == enc->n_image_tokens) {
            free(bytes);
            return 0;
        }
        if (rc == 0)
            free(*out);
        else if (rc != ERR_NOTFOUND)
            goto out_free_bytes;
    }
    int w = 0, h = 0;
    uint8_t *px = encoder_image_decode(bytes, n, path, &w, &h, err);
    if (!px) {
        rc = err ? err->code : ERR_FORMAT;
        goto out_free_bytes;
    }
    size_t nf = (size_t)enc->n_image_tokens * (size_t)enc->dim_image;
    float *v = malloc(nf * sizeof *v);
    if (!v) {
        rc = err_set(err, ERR_NOMEM, "out of memory for an embedding");
        goto out_free_px;
    }
    if ((rc = enc->ops.encode_image(enc, px, w, h, v, err))) {
        err_prefix(err, "%s", path);
        free(v);
        goto out_free_px;
    }
    if (st && (rc = store_embed_put(st, enc->name, "image", key ? key : hex, v, enc->dim_image,
                                    enc->n_image_tokens, err))) {
        free(v);
        goto out_free_px;
    }
    *out = v;
out_free_px:
    stbi_image_free(px);
out_free_bytes:
    free(bytes);
    return rc;
}

int encoder_embed_text(Encoder *enc, Store *st, const char *text, float **out, Err *err) {
    char hex[65];
    encoder_hash_text(text, hex);
    int rc;
    if (st) {
        int dim = 0, nt = 0;
        rc = store_embed_get(st, enc->name, "text", hex, out, &dim, &nt, err);
        if (rc == 0 && dim == enc->dim_text && nt == 1)
            return 0;
        if (rc == 0)
            free(*out);
        else if (rc != ERR_NOTFOUND)
            return rc;
    }
    float *v = malloc((size_t)enc->dim_text * sizeof *v);
    if (!v)
        return err_set(err, ERR_NOMEM, "out of memory for an embedding");
    if ((rc = enc->ops.encode_text(enc, text, v, err))) {
        free(v);
        return rc;
    }
    if (st && (rc = store_embed_put(st, enc->name, "text", hex, v, enc->dim_text, 1, err))) {
        free(v);
        return rc;
    }
    *out = v;
    return 0;
}
