/* fuzz_image — libFuzzer target for easel's image decoders (`make fuzz`, needs clang).
 *
 * The first input byte picks the decoder, the rest is the image file:
 *   0  image_decode (bytes in memory: classic features, training, scoring, embed)
 *   1  clip_image_load + clip_image_preprocess to 32x32, crop and squash (CLIP's resampler,
 *      for images up to 4 megapixels)
 *   2  gfx_image_load + gfx_image_resize to 16x9 (the TUI's preview)
 * Invariants on every input: no crash, leak or undefined behaviour (ASan + UBSan); a refused
 * image names the file in its message; a decoded one has a size within the limits of
 * src/io/infile.h, and preprocessing it gives finite values.
 * Seeds: tests/fixtures/clip/images and small PNG, JPEG, BMP, GIF, TGA and PNM files made by
 * `make fuzz` (ImageMagick), each prefixed with one byte per decoder.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clip_image.h"
#include "encoder.h"
#include "image.h"
#include "gfx.h"
#include "infile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void check_size(int w, int h) {
    if (w <= 0 || h <= 0 || w > INFILE_MAX_IMAGE_SIDE || h > INFILE_MAX_IMAGE_SIDE ||
        (long long)w * h > INFILE_MAX_IMAGE_PIXELS)
        __builtin_trap();
}

static void check_refusal(const Err *err, const char *name) {
    if (err->code >= 0 || !strstr(err->msg, name))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/easel-fuzz-img-%d.png", (int)getpid());
    if (size < 1)
        return 0;
    int which = data[0] % 3;
    data++;
    size--;
    Err err = {0};
    if (which == 0) {
        Image im;
        if (image_decode(data, size, "fuzz.png", 3, &im, &err) == 0)
            check_size(im.w, im.h);
        else
            check_refusal(&err, "fuzz.png");
        image_deinit(&im);
        return 0;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    const char *base = strrchr(path, '/') + 1;
    if (which == 1) {
        ClipImage img;
        if (clip_image_load(&img, path, &err) == 0) {
            check_size(img.w, img.h);
            float out[3 * 32 * 32];
            /* resampling is linear in the pixels: past 4 MP it only slows the search down */
            for (int mode = 0; mode < 2 && (long long)img.w * img.h <= 4000000; mode++) {
                if (clip_image_preprocess(out, &img, 32, (ClipResizeMode)mode, clip_image_mean,
                                          clip_image_std, &err) != 0)
                    __builtin_trap();
                for (size_t i = 0; i < sizeof out / sizeof *out; i++)
                    if (!isfinite(out[i]))
                        __builtin_trap();
            }
        } else {
            check_refusal(&err, base);
        }
        clip_image_deinit(&img);
    } else {
        GfxImage img, small;
        if (gfx_image_load(path, &img, &err) == 0) {
            check_size(img.w, img.h);
            if (gfx_image_resize(&img, 16, 9, &small, &err) != 0)
                __builtin_trap();
            gfx_image_deinit(&small);
        } else {
            check_refusal(&err, base);
        }
        gfx_image_deinit(&img);
    }
    unlink(path);
    return 0;
}
