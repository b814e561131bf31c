/* test_generate_dtype — `easel generate --dtype` (mem15) on the tiny random SD and SDXL
 * pipeline fixtures, as a user runs it: f32 gives diffusers' image (PSNR >= 50 dB), bf16 and
 * f16 weights give an image close to it within the bounds measured and documented in
 * doc/models.md "Memory" (measured: bf16 56.4-56.6 dB against the f32 image on these fixtures,
 * f16 61.6-63.9 dB; asserted: bf16 >= 50, f16 >= 55, f16 nearer than bf16, neither equal), auto
 * on the CPU is f32 (the same bytes), the dtype is in each images row's settings JSON, and a
 * bad value is refused naming the choices. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "image.h"
#include "support.h"
#include "support_fixtures.h"

#define FIX "tests/gen/fixtures/"

static char tmpdir[64];
static char dbpath[128];

static void setup(void) {
    support_cli_store(tmpdir, sizeof tmpdir, "gendt", dbpath, sizeof dbpath);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(gendtype, .init = setup, .fini = teardown);

/* The 64x64 image of the sd_euler / sdxl_euler cases (tests/gen/fixtures/pipeline_cases.json)
 * made with --dtype DT into TAG: its pixels (64*64*3, malloc'd). */
static uint8_t *generate(const char *model, int seed, const char *dt, const char *tag) {
    char *out = NULL, *err = NULL;
    cr_assert_eq(support_run(NULL, &out, &err, "bin/easel --db %s generate --model %s "
                             "--prompt 'a red fox in the snow' --negative 'blurry, low quality' "
                             "--seed %d --steps 4 --guidance 7.5 --size 64x64 --scheduler euler "
                             "--out %s/%s --device cpu --dtype %s", dbpath, model, seed, tmpdir,
                             tag, dt), 0, "--dtype %s: %s", dt, err);
    free(out);
    free(err);
    char *png = NULL;
    cr_assert_eq(support_run(NULL, &png, NULL, "printf %%s %s/%s/*/%d.png", tmpdir, tag, seed),
                 0);
    Image im = {0};
    Err e = {0};
    cr_assert_eq(image_load(png, 3, &im, &e), 0, "%s", e.msg);
    cr_assert(im.w == 64 && im.h == 64);
    uint8_t *px = xmalloc(64 * 64 * 3);
    memcpy(px, im.px, 64 * 64 * 3);
    image_deinit(&im);
    free(png);
    return px;
}

static uint8_t *load_rgb(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    uint8_t *px = xmalloc(64 * 64 * 3);
    cr_assert_eq(fread(px, 1, 64 * 64 * 3, f), 64 * 64 * 3);
    fclose(f);
    return px;
}

static double psnr(const uint8_t *a, const uint8_t *b) {
    double se = 0;
    for (size_t i = 0; i < 64 * 64 * 3; i++)
        se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return se == 0 ? INFINITY : 10 * log10(255.0 * 255.0 / (se / (64.0 * 64 * 3)));
}

static long count_rows(const char *sql) {
    char *out = NULL;
    cr_assert_eq(support_run(NULL, &out, NULL, "sqlite3 %s \"%s\"", dbpath, sql), 0,
                 "sqlite3 CLI needed (DEB_TEST)");
    long n = strtol(out, NULL, 10);
    free(out);
    return n;
}

/* f32, bf16, f16 and auto on one fixture: the PSNRs are printed for doc/models.md. */
static void dtypes_on(const char *name, const char *model, int seed, double bf16_lo,
                      double f16_lo) {
    char *rgb = xasprintf(FIX "pipeline_%s_euler.rgb", name);
    uint8_t *want = load_rgb(rgb);
    char t32[32], t16[32], tb16[32], tauto[32];
    snprintf(t32, sizeof t32, "%s-f32", name);
    snprintf(tb16, sizeof tb16, "%s-bf16", name);
    snprintf(t16, sizeof t16, "%s-f16", name);
    snprintf(tauto, sizeof tauto, "%s-auto", name);
    uint8_t *f32 = generate(model, seed, "f32", t32);
    uint8_t *bf16 = generate(model, seed, "bf16", tb16);
    uint8_t *f16 = generate(model, seed, "f16", t16);
    uint8_t *aut = generate(model, seed, "auto", tauto);
    double d32 = psnr(f32, want), db = psnr(bf16, f32), dh = psnr(f16, f32);
    fprintf(stderr, "%s: f32 %.2f dB against diffusers; bf16 %.2f dB, f16 %.2f dB against "
            "f32 (bf16 %.2f dB, f16 %.2f dB against diffusers)\n", name, d32, db, dh,
            psnr(bf16, want), psnr(f16, want));
    cr_assert_geq(d32, 50.0, "%s f32: PSNR %.2f dB against diffusers", name, d32);
    /* half weights change the image a little, and not to nothing */
    cr_assert(db >= bf16_lo && db < 70.0, "%s bf16 against f32: PSNR %.2f dB", name, db);
    cr_assert(dh >= f16_lo && dh < 80.0, "%s f16 against f32: PSNR %.2f dB", name, dh);
    cr_assert(dh > db, "%s: f16 (%.2f dB) should be nearer f32 than bf16 (%.2f dB)", name, dh,
              db);
    cr_assert_eq(memcmp(aut, f32, 64 * 64 * 3), 0, "%s: --dtype auto on the CPU is not f32",
                 name);
    free(want), free(f32), free(bf16), free(f16), free(aut), free(rgb);
}

Test(gendtype, sd_half_weights_close_to_f32_and_recorded, .timeout = 180) {
    dtypes_on("sd", FIX "pipeline_sd", 42, 50.0, 55.0);
    /* each image's settings say which dtype made it; auto on the CPU says f32 */
    cr_assert_eq(count_rows("SELECT count(*) FROM images WHERE generator LIKE "
                            "'%\\\"dtype\\\":\\\"bf16\\\"%'"), 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM images WHERE generator LIKE "
                            "'%\\\"dtype\\\":\\\"f16\\\"%'"), 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM images WHERE generator LIKE "
                            "'%\\\"dtype\\\":\\\"f32\\\"%'"), 2);
}

Test(gendtype, sdxl_half_weights_close_to_f32, .timeout = 180) {
    dtypes_on("sdxl", FIX "pipeline_sdxl", 11, 50.0, 55.0);
}

Test(gendtype, bad_dtype_is_refused) {
    char *out = NULL, *err = NULL;
    int rc = support_run(NULL, &out, &err, "bin/easel --db %s generate --model %s --prompt "
                         "'a fox' --dtype f64 --out %s/x --device cpu", dbpath,
                         FIX "pipeline_sd", tmpdir);
    cr_assert_eq(rc, 2, "%s", err);
    cr_assert(strstr(err, "easel: generate --dtype: 'f64' is not one of auto|f32|f16|bf16"),
              "%s", err);
    free(out);
    free(err);
    cr_assert_eq(support_sh("test ! -e %s/x", tmpdir), 0);
    cr_assert_eq(count_rows("SELECT count(*) FROM images"), 0);
}
