/* encoder — the backend table, image decoding, and the embedding cache. See encoder.h.
 *
 * Images are decoded by image.h (the one place stb_image is compiled).
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
#include "image.h"
#include "infile.h"
#include "sha256.h"
#include "store_embed.h"
#include "clip_encoder.h"


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

int encoder_open(const char *name, Store *st, Encoder **out, Err *err) {
    return encoder_open_on(name, st, NULL, out, err);
}

int encoder_open_on(const char *name, Store *st, const EncoderDevice *dev, Encoder **out,
                    Err *err) {
    *out = NULL;
    const char *colon = strchr(name, ':');
    size_t plen = colon ? (size_t)(colon - name) : strlen(name);
    for (const EncoderBackend *b = encoder_backends; b->prefix; b++) {
        if (strlen(b->prefix) == plen && strncmp(b->prefix, name, plen) == 0) {
            Err e = {0};
            Encoder *enc = b->open(colon ? colon + 1 : "", st, dev, &e);
            if (!enc)
                return err_pass(err, &e, ERR_USAGE);
            ASSERT(enc->dim_image > 0 && enc->n_image_tokens > 0 && enc->dim_text > 0);
            ASSERT(enc->ops.encode_image && enc->ops.encode_text);
            *out = enc;
            return 0;
        }
    }
    char known[256] = "";
    for (const EncoderBackend *b = encoder_backends; b->prefix; b++) {
        size_t n = strlen(known);
        snprintf(known + n, sizeof known - n, "%s%s%s", n ? ", " : "", b->prefix,
                 strcmp(b->prefix, "classic") ? ":NAME" : "");
    }
    return err_set(err, ERR_USAGE, "unknown encoder '%s' (known: %s)", name, known);
}

void encoder_free(Encoder *enc) {
    if (!enc)
        return;
    if (enc->ops.free_state)
        enc->ops.free_state(enc);
    free(enc);
}

/* ---- images ---- */

/* An image file's bytes: a regular file of at most INFILE_MAX_IMAGE bytes (a FIFO or
 * /dev/zero is refused with the reason, never read). */
static int read_file(const char *path, uint8_t **out, size_t *n, Err *err) {
    return infile_read_all(path, "image", INFILE_MAX_IMAGE, out, n, err);
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
    Image im;
    if ((rc = image_decode(bytes, n, path, 3, &im, err)))
        goto out_free_bytes;
    size_t nf = (size_t)enc->n_image_tokens * (size_t)enc->dim_image;
    float *v = malloc(nf * sizeof *v);
    if (!v) {
        rc = err_set(err, ERR_NOMEM, "out of memory for an embedding");
        goto out_free_px;
    }
    if ((rc = enc->ops.encode_image(enc, im.px, im.w, im.h, v, err))) {
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
    image_deinit(&im);
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
