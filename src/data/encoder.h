/* encoder — pluggable feature encoders for the reward model, and their embedding cache.
 *
 * An encoder turns an image into a pooled vector plus a grid of patch tokens, and a prompt
 * into one vector. The reward model trains on these frozen features, so each is computed
 * once and cached in the store (embeddings table) per (encoder name, image content hash) and
 * per (encoder name, sha256 of the prompt text).
 *
 * Encoders register in one explicit table in encoder.c (no constructors): a name prefix and
 * an open function. `classic` (feat_classic.c) is embedded and needs no download; `clip:NAME`
 * (the CLIP module) opens a model registered in the store's models table.
 *
 * Layout of an image embedding: n_tokens rows of dim floats, row-major; row 0 is the pooled
 * vector, rows 1..n_tokens-1 the grid/patch tokens (row-major over the grid, top-left first).
 * A text embedding is one row of dim_text floats.
 *
 * Thread safety: an Encoder is used by one thread at a time (each worker opens its own).
 * Functions are stateless otherwise. Ownership is stated per function.
 */
#ifndef EASEL_ENCODER_H
#define EASEL_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

typedef struct Encoder Encoder;

/* Where an encoder that runs on the compute engine (clip) computes; others ignore it. */
typedef struct EncoderDevice {
    const char *device;     /* "auto", "cpu", "cuda", "cuda:N" (backend.h); NULL = "cpu" */
    int threads;            /* CPU threads; <= 0 = one per online CPU */
} EncoderDevice;

/* Implementation hooks. A backend fills these in its open function. */
typedef struct EncoderOps {
    /* Encode decoded pixels (RGB8, row-major, w*h*3 bytes) into out, which has room for
     * enc->n_image_tokens * enc->dim_image floats (pooled row first). Returns 0 or ERR_*. */
    int (*encode_image)(Encoder *enc, const uint8_t *rgb, int w, int h, float *out, Err *err);
    /* Encode a prompt (UTF-8) into out, dim_text floats. Returns 0 or ERR_*. */
    int (*encode_text)(Encoder *enc, const char *text, float *out, Err *err);
    /* Release state (may be NULL). */
    void (*free_state)(Encoder *enc);
} EncoderOps;

struct Encoder {
    char name[64];          /* cache key prefix: "classic", "clip:ViT-L-14" */
    int dim_image;          /* floats per image row (pooled and tokens alike) */
    int n_image_tokens;     /* rows per image: 1 pooled + grid/patch tokens */
    int dim_text;           /* floats per text vector */
    EncoderOps ops;
    void *state;            /* backend-owned */
    char note[256];         /* one line about the device (a CUDA request that runs on the
                             * CPU), "" if none; whoever opened the encoder shows it */
};

/* An open function: ARG is what follows "prefix:" in the name ("" if none). ST may be NULL
 * (no store: e.g. a unit test); backends that need registered model files then fail with
 * ERR_NOTFOUND. Returns a new Encoder (encoder_free) or NULL with err set. */
typedef Encoder *(*EncoderOpen)(const char *arg, Store *st, const EncoderDevice *dev,
                                Err *err);

typedef struct EncoderBackend {
    const char *prefix;     /* "classic", "clip" */
    EncoderOpen open;
    const char *help;       /* one line for --help and the TUI */
} EncoderBackend;

/* The table of backends, ended by {NULL}. */
extern const EncoderBackend encoder_backends[];

/* ---- lifecycle ---- */

/* Open the encoder called NAME ("classic", "clip:ViT-L-14") into *out. Returns 0, or ERR_*
 * with *out NULL: unknown names fail with ERR_USAGE and a message listing the known ones. */
int encoder_open(const char *name, Store *st, Encoder **out, Err *err);
/* As encoder_open, computing on DEV (NULL = the CPU, one thread per online CPU). A device
 * that cannot be had is the open's error (ERR_NOTFOUND for a missing cuda:N, ERR_USAGE for a
 * bad name); a CUDA request on a machine without a GPU runs on the CPU and says so in
 * enc->note. */
int encoder_open_on(const char *name, Store *st, const EncoderDevice *dev, Encoder **out,
                    Err *err);
void encoder_free(Encoder *enc); /* NULL allowed */

/* Allocate an Encoder for a backend's open function (zeroed, name copied). */
Encoder *encoder_alloc(const char *name);

/* ---- cached embeddings ---- */

/* Embedding of the image file PATH whose content hash is KEY (hex sha256 of the file's bytes;
 * NULL = compute it). Looks in the store first; on a miss decodes, encodes and stores it.
 * ST may be NULL (no cache). *out receives n_image_tokens*dim_image floats the caller frees.
 * Returns 0 or ERR_*; on error nothing is stored. */
int encoder_embed_image(Encoder *enc, Store *st, const char *path, const char *key, float **out,
                        Err *err);

/* Embedding of a prompt text (cached by sha256 of the UTF-8 text). *out: dim_text floats,
 * caller frees. */
int encoder_embed_text(Encoder *enc, Store *st, const char *text, float **out, Err *err);

/* Hex sha256 (65 bytes with NUL) of a file's bytes / of a string. Return 0 or ERR_IO. */
int encoder_hash_file(const char *path, char hex[65], Err *err);
void encoder_hash_text(const char *text, char hex[65]);

#endif
