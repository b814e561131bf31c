/* clip_image — decode an image file and turn it into CLIP's input, as OpenCLIP does.
 *
 * OpenCLIP's eval transform on a PIL image: Resize(short side -> size, bicubic), CenterCrop
 * (size), convert("RGB"), ToTensor, Normalize(mean, std). "squash" (the original easel
 * system's preprocessing) resizes straight to size x size instead. Resizing reproduces
 * Pillow's 8-bit resampler: separable convolution with the a = -0.5 bicubic kernel widened
 * by the downscale factor (antialiasing), fixed-point coefficients with 22 fractional
 * bits, horizontal pass first except where Pillow 13 goes vertical first (the height
 * shrinks by more than twice the pixels the width does), each pass rounded and clamped to
 * 8 bits; images with alpha are resized premultiplied, as Pillow does, and palette PNGs
 * with nearest neighbour.
 * Decoding is stb_image (PNG, JPEG, BMP, GIF, TGA, PSD, HDR, PNM); JPEG decoders differ by
 * a level here and there, PNG decodes exactly.
 *
 * Thread-safe: no shared state.
 */
#ifndef EASEL_CLIP_IMAGE_H
#define EASEL_CLIP_IMAGE_H

#include <stdint.h>

#include "err.h"

typedef enum ClipResizeMode {
    CLIP_RESIZE_SHORTEST = 0, /* short side to size, centre crop (OpenCLIP's default) */
    CLIP_RESIZE_SQUASH = 1,   /* both sides to size, aspect ratio not kept */
} ClipResizeMode;

/* OpenAI's CLIP normalisation (OpenCLIP's default). */
extern const float clip_image_mean[3];
extern const float clip_image_std[3];

/* An 8-bit image as decoded: channels 1 (grey), 2 (grey + alpha), 3 (RGB), 4 (RGBA). */
typedef struct ClipImage {
    int w, h, channels;
    int palette;       /* 1 if the file stored palette indices (Pillow resizes those nearest) */
    uint8_t *px;       /* h * w * channels, row-major; owned, free with clip_image_deinit */
} ClipImage;

/* Decode PATH. ERR_NOTFOUND if missing, ERR_FORMAT (naming PATH and the decoder's reason)
 * if it is not an image this build reads. */
int clip_image_load(ClipImage *img, const char *path, Err *err);
void clip_image_deinit(ClipImage *img);

/* OUT (3, size, size), channel-major floats: (pixel/255 - mean[c]) / std[c] after the
 * resize of MODE. Returns 0, or ERR_NOMEM. */
int clip_image_preprocess(float *out, const ClipImage *img, int size, ClipResizeMode mode,
                          const float mean[3], const float std[3], Err *err);

/* Load + preprocess. */
int clip_image_preprocess_file(float *out, const char *path, int size, ClipResizeMode mode,
                               const float mean[3], const float std[3], Err *err);

/* Pillow's Image.resize(..., BICUBIC) of an 8-bit image with C interleaved channels (no
 * alpha handling): DST (dh, dw, c). Exposed for tests. */
void clip_image_resize_bicubic(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh,
                               int c);

#endif
