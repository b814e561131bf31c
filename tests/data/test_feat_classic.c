/* Tests for src/data/feat_classic.c: each feature family responds to the defect it is meant to
 * see, on synthetic images whose truth is known by construction; text hashing properties. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "feat_classic.h"

#define W 256
#define H 256

static int idx(const char *name) {
    const char *const *n = feat_classic_image_names();
    for (int i = 0; i < FEAT_CLASSIC_DIM; i++)
        if (strcmp(n[i], name) == 0)
            return i;
    cr_assert_fail("no feature %s", name);
    return -1;
}

static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* A textured scene: smooth gradient plus sharp-edged shapes. */
static uint8_t *scene(void) {
    uint8_t *p = malloc(W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *q = p + (y * W + x) * 3;
            int v = 40 + x / 3 + y / 4;
            int in_box = (x / 16 + y / 16) % 2;
            q[0] = (uint8_t)(v + (in_box ? 60 : 0));
            q[1] = (uint8_t)(v / 2 + 30 + (in_box ? 60 : 0));
            q[2] = (uint8_t)(200 - v / 2);
        }
    return p;
}

static void features(const uint8_t *p, float *f) {
    Err err = {0};
    cr_assert_eq(feat_classic_image(p, W, H, f, &err), 0, "%s", err.msg);
    for (int i = 0; i < FEAT_CLASSIC_TOKENS * FEAT_CLASSIC_DIM; i++)
        cr_assert(isfinite(f[i]), "feature %d not finite", i);
}

static void box_blur(uint8_t *p, int r) {
    uint8_t *src = malloc(W * H * 3);
    memcpy(src, p, W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                int s = 0, n = 0;
                for (int dy = -r; dy <= r; dy++)
                    for (int dx = -r; dx <= r; dx++) {
                        int yy = y + dy, xx = x + dx;
                        if (yy < 0 || yy >= H || xx < 0 || xx >= W)
                            continue;
                        s += src[(yy * W + xx) * 3 + c];
                        n++;
                    }
                p[(y * W + x) * 3 + c] = (uint8_t)(s / n);
            }
    free(src);
}

static float F[FEAT_CLASSIC_TOKENS * FEAT_CLASSIC_DIM], G[FEAT_CLASSIC_TOKENS * FEAT_CLASSIC_DIM];

Test(feat_classic, deterministic_and_shapes) {
    uint8_t *p = scene();
    features(p, F);
    features(p, G);
    cr_assert_eq(memcmp(F, G, sizeof F), 0);
    /* pooled position is the centre; the first token is the top-left cell */
    cr_assert_float_eq(F[idx("pos_x")], 0.5f, 1e-6);
    cr_assert_float_eq(F[FEAT_CLASSIC_DIM + idx("pos_x")], 0.125f, 1e-6);
    cr_assert_float_eq(F[FEAT_CLASSIC_DIM + idx("pos_y")], 0.125f, 1e-6);
    free(p);
}

Test(feat_classic, blur_lowers_sharpness) {
    uint8_t *p = scene();
    features(p, F);
    box_blur(p, 3);
    features(p, G);
    int s = idx("sharpness"), e = idx("edge_density_strong");
    cr_assert_gt(F[s], G[s] + 0.1f, "sharp %f blurred %f", F[s], G[s]);
    cr_assert_gt(F[e], G[e], "edges sharp %f blurred %f", F[e], G[e]);
    free(p);
}

Test(feat_classic, noise_raises_noise_estimate) {
    uint8_t *p = scene();
    box_blur(p, 1); /* a smooth base so the estimate measures the added noise */
    features(p, F);
    uint32_t seed = 7;
    for (int i = 0; i < W * H * 3; i++) {
        int v = p[i] + (int)(lcg(&seed) % 41) - 20;
        p[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    features(p, G);
    int n = idx("noise_sigma");
    cr_assert_gt(G[n], F[n] * 2, "clean %f noisy %f", F[n], G[n]);
    /* uniform noise of +-20 levels has sigma 11.8/255 = 0.046; feature = 10 sigma */
    cr_assert(G[n] > 0.3f && G[n] < 0.8f, "noisy sigma feature %f", G[n]);
    free(p);
}

Test(feat_classic, block_grid_raises_blockiness) {
    uint8_t *p = scene();
    box_blur(p, 2);
    features(p, F);
    /* replace each 8x8 block by its mean: what heavy JPEG quantisation does */
    for (int by = 0; by < H; by += 8)
        for (int bx = 0; bx < W; bx += 8)
            for (int c = 0; c < 3; c++) {
                int s = 0;
                for (int y = by; y < by + 8; y++)
                    for (int x = bx; x < bx + 8; x++)
                        s += p[(y * W + x) * 3 + c];
                for (int y = by; y < by + 8; y++)
                    for (int x = bx; x < bx + 8; x++)
                        p[(y * W + x) * 3 + c] = (uint8_t)(s / 64);
            }
    features(p, G);
    int b = idx("blockiness");
    cr_assert_gt(G[b], F[b] + 0.5f, "smooth %f blocky %f", F[b], G[b]);
    free(p);
}

Test(feat_classic, exposure_and_clipping) {
    uint8_t *p = scene();
    features(p, F);
    for (int i = 0; i < W * H * 3; i++)
        p[i] = (uint8_t)(p[i] * 2 > 255 ? 255 : p[i] * 2);
    features(p, G);
    cr_assert_gt(G[idx("luma_mean")], F[idx("luma_mean")] + 0.1f);
    cr_assert_gt(G[idx("channel_clip")], F[idx("channel_clip")] + 0.1f);
    free(p);
}

Test(feat_classic, composition_centroid_and_symmetry) {
    uint8_t *p = calloc(W * H * 3, 1);
    /* a bright disc on the right third: saliency and brightness centroids move right */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int dx = x - 200, dy = y - 128;
            if (dx * dx + dy * dy < 30 * 30)
                memset(p + (y * W + x) * 3, 230, 3);
        }
    features(p, F);
    cr_assert_gt(F[idx("bright_cx")], 0.4f, "%f", F[idx("bright_cx")]);
    cr_assert_gt(F[idx("saliency_cx")], 0.4f, "%f", F[idx("saliency_cx")]);
    cr_assert_float_eq(F[idx("bright_cy")], 0.0f, 0.02f);
    /* the disc is centred at x = 200 of 256: (200 - 128) / 128 = 0.5625 */
    cr_assert_float_eq(F[idx("subject_cx")], 0.5625f, 0.02f, "%f", F[idx("subject_cx")]);
    cr_assert_float_eq(F[idx("subject_cy")], 0.0f, 0.02f);
    /* left-right asymmetric, top-bottom symmetric */
    cr_assert_lt(F[idx("symmetry_lr")], F[idx("symmetry_tb")] - 0.05f);
    cr_assert_float_eq(F[idx("symmetry_tb")], 1.0f, 0.02f);
    free(p);
}

Test(feat_classic, colour_cast) {
    uint8_t *p = scene();
    features(p, F);
    for (int i = 0; i < W * H; i++) {
        int r = p[3 * i] + 50;
        p[3 * i] = (uint8_t)(r > 255 ? 255 : r);
        p[3 * i + 2] = (uint8_t)(p[3 * i + 2] / 2);
    }
    features(p, G);
    cr_assert_gt(G[idx("warm_cool")], F[idx("warm_cool")] + 0.2f);
    free(p);
}

Test(feat_classic, too_small_is_an_error) {
    uint8_t p[8 * 8 * 3] = {0};
    Err err = {0};
    cr_assert_eq(feat_classic_image(p, 8, 8, F, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "8x8"), "%s", err.msg);
}

Test(feat_classic, text_hashing) {
    float a[FEAT_CLASSIC_DIM], b[FEAT_CLASSIC_DIM], c[FEAT_CLASSIC_DIM];
    feat_classic_text("A red fox, in the SNOW", a);
    feat_classic_text("a red fox in the snow", b);
    feat_classic_text("a blue whale under the sea", c);
    double na = 0, dot_ab = 0, dot_ac = 0;
    for (int i = 0; i < FEAT_CLASSIC_DIM; i++) {
        na += a[i] * a[i];
        dot_ab += a[i] * b[i];
        dot_ac += a[i] * c[i];
    }
    cr_assert_float_eq(na, 1.0, 1e-5);
    cr_assert_float_eq(dot_ab, 1.0, 1e-5, "case and punctuation do not matter");
    cr_assert_lt(dot_ac, 0.6, "different prompts differ: cos %f", dot_ac);
    feat_classic_text("", c);
    for (int i = 0; i < FEAT_CLASSIC_DIM; i++)
        cr_assert_eq(c[i], 0.0f);
}
