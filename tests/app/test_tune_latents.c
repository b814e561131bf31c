/* Tests for the latent cache of generator tuning (src/data/tune_latents.c,
 * src/store/store_latents.c) on the tiny VAE fixture of tests/models: a second call reads the
 * store and does not encode, a changed file is encoded again, another VAE has its own rows,
 * and the latents equal a direct vae_encode of the same crop. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clip_image.h"
#include "fmt_safetensors.h"
#include "image.h"
#include "store_latents.h"
#include "support.h"
#include "tune_latents.h"
#include "vae.h"

#define VAE_SD "tests/models/fixtures/vae_sd"
#define VAE_XL "tests/models/fixtures/vae_sdxl"
#define NL (4 * 8 * 8) /* latents of a 16×16 image: both tiny VAEs scale by 2 */

static char tmpdir[64];
static char dbpath[128];
static Store *st;
static Backend *be;

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "tunelat");
    st = support_store_open(tmpdir, "ws.db", dbpath, sizeof dbpath);
    BackendConfig cfg = {2, 0};
    Err e = {0};
    cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &e), 0, "%s", e.msg);
}

static void teardown(void) {
    backend_close(be);
    store_close(st);
    support_tmpdir_remove(tmpdir);
}

TestSuite(tune_latents, .init = setup, .fini = teardown);

static Vae *vae_open(const char *path) {
    Vae *v = NULL;
    Err e = {0};
    VaeOptions o = {.parts = VAE_ENCODER};
    cr_assert_eq(vae_load(be, path, &o, &v, &e), 0, "%s", e.msg);
    return v;
}

/* A W×H RGB image of noise from SEED: its pixels into *PX (malloc'd), written to DIR/NAME. */
static const char *png(const char *name, int w, int h, uint32_t seed, uint8_t **px) {
    static char path[256];
    uint8_t *p = malloc((size_t)w * h * 3);
    uint32_t x = seed * 2654435761u + 7;
    for (int i = 0; i < w * h * 3; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (uint8_t)(x >> 24);
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    Err e = {0};
    cr_assert_eq(image_write_png(path, p, w, h, 3, &e), 0, "%s", e.msg);
    if (px)
        *px = p;
    else
        free(p);
    return path;
}

/* The latents vae_encode gives for the 16×16 crop at (LEFT, TOP) of the (SW wide, HWC) bytes
 * PX: [-1, 1] floats, mean, (− shift) · scaling_factor. */
static void direct(Vae *v, const uint8_t *px, int sw, int left, int top, float *out) {
    const int W = 16, H = 16;
    float pix[3 * 16 * 16], logvar[NL];
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                pix[(c * H + y) * W + x] =
                    px[((size_t)(y + top) * sw + (x + left)) * 3 + c] / 255.0f * 2.0f - 1.0f;
    Err e = {0};
    cr_assert_eq(vae_encode(v, pix, 1, H, W, out, logvar, &e), 0, "%s", e.msg);
    const VaeConfig *c = vae_config(v);
    for (int i = 0; i < NL; i++)
        out[i] = (out[i] - (c->has_shift ? c->shift_factor : 0.0f)) * c->scaling_factor;
}

static double maxdiff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

Test(tune_latents, cached_once_and_equal_to_a_direct_encode) {
    Vae *v = vae_open(VAE_SD);
    char key[SHA256_HEX_LEN + 1];
    Err e = {0};
    cr_assert_eq(tune_vae_key(VAE_SD, key, &e), 0, "%s", e.msg);
    cr_assert_eq(strlen(key), 64);
    /* 24×16: no resize (the height decides), cropped 4 pixels in from the left */
    uint8_t *px;
    const char *path = png("wide.png", 24, 16, 1, &px);
    float got[NL], again[NL], want[NL];
    int encoded = -1;
    cr_assert_eq(tune_latents_get_ex(st, v, key, path, 16, 16, got, &encoded, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(encoded, 1);
    direct(v, px, 24, 4, 0, want);
    cr_assert(maxdiff(got, want, NL) <= 1e-6, "off by %g", maxdiff(got, want, NL));
    cr_assert_eq(store_latents_count(st, key, &e), 1);
    /* the second call reads the store */
    cr_assert_eq(tune_latents_get_ex(st, v, key, path, 16, 16, again, &encoded, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(encoded, 0);
    cr_assert_eq(memcmp(got, again, sizeof got), 0);
    /* also through another connection (another process's run) */
    Store *st2 = store_open(dbpath, &e);
    cr_assert_not_null(st2, "%s", e.msg);
    cr_assert_eq(tune_latents_get_ex(st2, v, key, path, 16, 16, again, &encoded, &e), 0);
    cr_assert_eq(encoded, 0);
    cr_assert_eq(memcmp(got, again, sizeof got), 0);
    store_close(st2);
    /* the file changes: a new sha256, encoded again */
    uint8_t *px2;
    png("wide.png", 24, 16, 2, &px2);
    cr_assert_eq(tune_latents_get_ex(st, v, key, path, 16, 16, again, &encoded, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(encoded, 1);
    direct(v, px2, 24, 4, 0, want);
    cr_assert(maxdiff(again, want, NL) <= 1e-6);
    cr_assert(maxdiff(again, got, NL) > 1e-4, "the new image's latents are the old ones");
    cr_assert_eq(store_latents_count(st, NULL, &e), 2);
    free(px);
    free(px2);
    vae_free(v);
}

Test(tune_latents, resized_on_the_shorter_side_and_centre_cropped) {
    Vae *v = vae_open(VAE_SD);
    char key[SHA256_HEX_LEN + 1];
    Err e = {0};
    cr_assert_eq(tune_vae_key(VAE_SD, key, &e), 0, "%s", e.msg);
    /* 32×48 to 16×16: the width decides, resized to 16×24 (Pillow's bicubic), rows 4..19 */
    uint8_t *px;
    const char *path = png("tall.png", 32, 48, 3, &px);
    uint8_t rs[16 * 24 * 3];
    clip_image_resize_bicubic(rs, 16, 24, px, 32, 48, 3);
    float got[NL], want[NL];
    cr_assert_eq(tune_latents_get(st, v, key, path, 16, 16, got, &e), 0, "%s", e.msg);
    direct(v, rs, 16, 0, 4, want);
    cr_assert(maxdiff(got, want, NL) <= 1e-6, "off by %g", maxdiff(got, want, NL));
    /* an odd margin rounds half to even, as torchvision's CenterCrop: 16×21 → top 2 (2.5) */
    uint8_t *px3;
    path = png("odd.png", 16, 21, 4, &px3);
    cr_assert_eq(tune_latents_get(st, v, key, path, 16, 16, got, &e), 0, "%s", e.msg);
    direct(v, px3, 16, 0, 2, want);
    cr_assert(maxdiff(got, want, NL) <= 1e-6, "off by %g", maxdiff(got, want, NL));
    free(px);
    free(px3);
    vae_free(v);
}

Test(tune_latents, keys_per_vae_and_size) {
    Err e = {0};
    char k1[SHA256_HEX_LEN + 1], k1b[SHA256_HEX_LEN + 1], k2[SHA256_HEX_LEN + 1];
    cr_assert_eq(tune_vae_key(VAE_SD, k1, &e), 0, "%s", e.msg);
    cr_assert_eq(tune_vae_key(VAE_SD, k1b, &e), 0, "%s", e.msg);
    cr_assert_eq(tune_vae_key(VAE_XL, k2, &e), 0, "%s", e.msg);
    cr_assert_str_eq(k1, k1b);
    cr_assert_str_neq(k1, k2);
    /* one VAE in two layouts (a diffusers folder, a single-file checkpoint): one key */
    cr_assert_eq(tune_vae_key("tests/models/fixtures/sdfile/sd", k1b, &e), 0, "%s", e.msg);
    cr_assert_eq(tune_vae_key("tests/models/fixtures/sdfile/sd.safetensors", k2, &e), 0, "%s",
                 e.msg);
    cr_assert_str_eq(k1b, k2);
    cr_assert_eq(tune_vae_key(VAE_XL, k2, &e), 0, "%s", e.msg);
    Vae *v1 = vae_open(VAE_SD), *v2 = vae_open(VAE_XL);
    const char *path = png("sq.png", 32, 32, 5, NULL);
    float a[4 * 16 * 16];
    int encoded;
    cr_assert_eq(tune_latents_get_ex(st, v1, k1, path, 16, 16, a, &encoded, &e), 0, "%s", e.msg);
    cr_assert_eq(encoded, 1);
    cr_assert_eq(tune_latents_get_ex(st, v2, k2, path, 16, 16, a, &encoded, &e), 0, "%s", e.msg);
    cr_assert_eq(encoded, 1);
    cr_assert_eq(tune_latents_get_ex(st, v1, k1, path, 32, 32, a, &encoded, &e), 0, "%s", e.msg);
    cr_assert_eq(encoded, 1);
    cr_assert_eq(tune_latents_get_ex(st, v1, k1, path, 16, 16, a, &encoded, &e), 0, "%s", e.msg);
    cr_assert_eq(encoded, 0);
    cr_assert_eq(store_latents_count(st, k1, &e), 2);
    cr_assert_eq(store_latents_count(st, NULL, &e), 3);
    vae_free(v1);
    vae_free(v2);
}

Test(tune_latents, bad_input_writes_nothing) {
    Vae *v = vae_open(VAE_SD);
    char key[SHA256_HEX_LEN + 1];
    Err e = {0};
    cr_assert_eq(tune_vae_key(VAE_SD, key, &e), 0, "%s", e.msg);
    float a[NL];
    char p[256];
    snprintf(p, sizeof p, "%s/none.png", tmpdir);
    cr_assert_eq(tune_latents_get(st, v, key, p, 16, 16, a, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "none.png"), "%s", e.msg);
    support_write_file(tmpdir, "bad.png", "not an image", p, sizeof p);
    cr_assert_eq(tune_latents_get(st, v, key, p, 16, 16, a, &e), ERR_FORMAT);
    cr_assert(strstr(e.msg, "bad.png"), "%s", e.msg);
    const char *path = png("ok.png", 16, 16, 6, NULL);
    cr_assert_eq(tune_latents_get(st, v, key, path, 15, 16, a, &e), ERR_USAGE);
    cr_assert(strstr(e.msg, "multiples of 2"), "%s", e.msg);
    cr_assert_eq(store_latents_count(st, NULL, &e), 0);
    cr_assert_eq(tune_vae_key("tests/models/fixtures/nothing", key, &e), ERR_NOTFOUND);
    vae_free(v);
}

/* A row of the wrong shape (a damaged cache) is encoded again and replaced. */
Test(tune_latents, wrong_shape_row_is_replaced) {
    Vae *v = vae_open(VAE_SD);
    char key[SHA256_HEX_LEN + 1];
    Err e = {0};
    cr_assert_eq(tune_vae_key(VAE_SD, key, &e), 0, "%s", e.msg);
    const char *path = png("ok.png", 16, 16, 7, NULL);
    float a[NL], b[NL];
    cr_assert_eq(tune_latents_get(st, v, key, path, 16, 16, a, &e), 0, "%s", e.msg);
    support_sql_exec(dbpath, "UPDATE latents SET data = x'00000000', channels = 1, lh = 1, "
                             "lw = 1");
    StoreLatentShape sh = {4, 8, 8};
    char sha[SHA256_HEX_LEN + 1];
    cr_assert_eq(sha256_file_hex(path, sha, &e), 0);
    cr_assert_eq(store_latents_get(st, sha, key, 16, 16, &sh, b, &e), ERR_FORMAT);
    int encoded;
    cr_assert_eq(tune_latents_get_ex(st, v, key, path, 16, 16, b, &encoded, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(encoded, 1);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    cr_assert_eq(store_latents_get(st, sha, key, 16, 16, &sh, b, &e), 0, "%s", e.msg);
    vae_free(v);
}

/* Against torchvision's Resize(16, bicubic) + CenterCrop(16) + ToTensor + Normalize(0.5) and
 * diffusers' AutoencoderKL (latent_dist.mean · scaling_factor) on images of several sizes
 * (tests/app/make_tune_data_fixtures.py). */
Test(tune_latents, torchvision_and_diffusers_reference) {
    Err e = {0};
    SafeTensors *ref = safetensors_open("tests/fixtures/tune_data/expected.safetensors", &e);
    cr_assert_not_null(ref, "%s", e.msg);
    Vae *v = vae_open(VAE_SD);
    char key[SHA256_HEX_LEN + 1];
    cr_assert_eq(tune_vae_key(VAE_SD, key, &e), 0, "%s", e.msg);
    for (int i = 0; i < 6; i++) {
        char name[64], path[128];
        snprintf(path, sizeof path, "tests/fixtures/tune_data/img_%d.png", i);
        Image im;
        cr_assert_eq(image_load(path, 3, &im, &e), 0, "%s", e.msg);
        float pix[3 * 16 * 16], want_pix[3 * 16 * 16], lat[NL], want_lat[NL];
        tune_image_pixels(im.px, im.w, im.h, 16, 16, pix);
        snprintf(name, sizeof name, "pixels_%d", i);
        const StTensor *t = safetensors_find(ref, name);
        cr_assert_not_null(t, "%s", name);
        cr_assert_eq(safetensors_read_f32(ref, t, want_pix, 3 * 16 * 16, &e), 0, "%s", e.msg);
        double d = maxdiff(pix, want_pix, 3 * 16 * 16);
        cr_expect(d <= 1e-6, "image %d (%dx%d) pixels: off by %g", i, im.w, im.h, d);
        image_deinit(&im);
        cr_assert_eq(tune_latents_get(st, v, key, path, 16, 16, lat, &e), 0, "%s", e.msg);
        snprintf(name, sizeof name, "latents_%d", i);
        t = safetensors_find(ref, name);
        cr_assert_not_null(t, "%s", name);
        cr_assert_eq(safetensors_read_f32(ref, t, want_lat, NL, &e), 0, "%s", e.msg);
        d = maxdiff(lat, want_lat, NL);
        cr_expect(d <= 1e-5, "image %d latents: off by %g", i, d);
    }
    vae_free(v);
    safetensors_close(ref);
}
