/* feat_classic — the embedded `classic` encoder: hand-made image features a reviewer would
 * recognise, and hashed n-gram features of the prompt. No download, no model file.
 *
 * Image: FEAT_CLASSIC_DIM features computed once over the whole image (the pooled row) and
 * again on each cell of a FEAT_CLASSIC_GRID x FEAT_CLASSIC_GRID grid (the tokens, row-major,
 * top-left first). Each feature is described in doc/reward.md; feat_classic_image_names()
 * gives their short names in order. Values are scaled to roughly [0,1] or [-1,1].
 *
 * Text: FEAT_CLASSIC_DIM buckets of signed feature hashing over lower-cased word unigrams,
 * word bigrams and character trigrams, L2-normalised (all-zero for an empty prompt).
 *
 * Pure functions of their input: deterministic, thread-safe, no allocation visible to the
 * caller.
 */
#ifndef EASEL_FEAT_CLASSIC_H
#define EASEL_FEAT_CLASSIC_H

#include <stdint.h>

#include "encoder.h"
#include "err.h"

#define FEAT_CLASSIC_DIM 64
#define FEAT_CLASSIC_GRID 4
#define FEAT_CLASSIC_TOKENS (1 + FEAT_CLASSIC_GRID * FEAT_CLASSIC_GRID)

/* Features of an RGB8 image (w*h*3 bytes): out receives FEAT_CLASSIC_TOKENS rows of
 * FEAT_CLASSIC_DIM floats (pooled first). Images smaller than 16x16 fail with ERR_FORMAT;
 * ERR_NOMEM if the working buffers cannot be allocated. */
int feat_classic_image(const uint8_t *rgb, int w, int h, float *out, Err *err);

/* Hashed text features of TEXT (UTF-8), FEAT_CLASSIC_DIM floats. */
void feat_classic_text(const char *text, float *out);

/* Short names of the FEAT_CLASSIC_DIM image features, in order (static strings). */
const char *const *feat_classic_image_names(void);

/* The encoder backend: open function for encoder.c's table (ARG must be ""). */
Encoder *feat_classic_open(const char *arg, Store *st, const EncoderDevice *dev,
                           Err *err);

#endif
