/* test_generate_single — single-file checkpoints as a user runs them: `easel generate --model
 * FILE --tokenizer DIR` writes the image of the diffusers folder the file was written from
 * (tests/gen/fixtures/single/, diffusers' image); `easel models add diffusion FILE` checks and
 * registers it with its tokenizer and prediction type, and `--model NAME` then needs neither;
 * without a tokenizer both say exactly what to give; a CLIP model's folder stands in. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "image.h"
#include "store.h"
#include "store_models.h"
#include "support.h"
#include "support_fixtures.h"

#define SFIX "tests/gen/fixtures/single/"

static char tmpdir[64];
static char dbpath[128];

static void setup(void) {
    support_cli_store(tmpdir, sizeof tmpdir, "gensingle", dbpath, sizeof dbpath);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(gensingle, .init = setup, .fini = teardown);

static int gen(const char *model_args, const char *out, char **err) {
    char *o = NULL;
    int rc = support_run(NULL, &o, err, "bin/easel --db %s generate %s --prompt 'a red fox in "
                         "the snow' --negative 'blurry, low quality' --seed 42 --steps 4 "
                         "--guidance 7.5 --size 64x64 --scheduler euler --device cpu --out %s/%s",
                         dbpath, model_args, tmpdir, out);
    free(o);
    return rc;
}

static char *png_of(const char *out) {
    char *p = NULL;
    cr_assert_eq(support_run(NULL, &p, NULL, "printf %%s %s/%s/*/42.png", tmpdir, out), 0);
    return p;
}

Test(gensingle, generate_from_a_single_file_gives_the_folders_image, .timeout = 120) {
    static const char *const fams[] = {"sd1", "sdxl"};
    for (int i = 0; i < 2; i++) {
        char args[256], out[32], *err = NULL;
        snprintf(args, sizeof args, "--model " SFIX "%s.safetensors --tokenizer " SFIX "%s",
                 fams[i], fams[i]);
        snprintf(out, sizeof out, "file-%s", fams[i]);
        cr_assert_eq(gen(args, out, &err), 0, "%s", err);
        free(err);
        snprintf(args, sizeof args, "--model " SFIX "%s", fams[i]);
        snprintf(out, sizeof out, "dir-%s", fams[i]);
        cr_assert_eq(gen(args, out, &err), 0, "%s", err);
        free(err);
        snprintf(out, sizeof out, "file-%s", fams[i]);
        char *a = png_of(out);
        snprintf(out, sizeof out, "dir-%s", fams[i]);
        char *b = png_of(out);
        cr_assert_eq(support_sh("cmp -s %s %s", a, b), 0, "%s: the single file's PNG differs "
                     "from the folder's", fams[i]);
        char rgb[128];
        snprintf(rgb, sizeof rgb, SFIX "%s_euler.rgb", fams[i]);
        double db = support_psnr_rgb(a, rgb);
        cr_assert_geq(db, 50.0, "%s: %.1f dB against diffusers", fams[i], db);
        free(a), free(b);
    }
    /* the settings rows say the tokenizer */
    char *o = NULL;
    cr_assert_eq(support_run(NULL, &o, NULL, "sqlite3 %s \"SELECT count(*) FROM images WHERE "
                             "generator LIKE '%%tokenizer%%'\"", dbpath), 0);
    cr_assert_eq(strtol(o, NULL, 10), 2, "%s", o);
    free(o);
}

Test(gensingle, no_tokenizer_says_what_to_give, .timeout = 60) {
    char *err = NULL;
    cr_assert_eq(gen("--model " SFIX "sd1.safetensors", "x", &err), 2); /* usage */
    cr_assert(strstr(err, "easel: ") && strstr(err, "sd1.safetensors") &&
                  strstr(err, "--tokenizer DIR") && strstr(err, "easel models add clip"),
              "%s", err);
    free(err);
    char *out = NULL;
    cr_assert_eq(support_run(NULL, &out, &err, "bin/easel --db %s models add diffusion "
                             SFIX "sd1.safetensors", dbpath), 1);
    cr_assert(strstr(err, "holds no tokenizer") && strstr(err, "--tokenizer DIR"), "%s", err);
    free(out), free(err);
    /* nothing was registered */
    Err e = {0};
    Store *st = store_open_existing(dbpath, &e);
    StoreModel *v;
    int n;
    cr_assert_eq(store_model_list(st, NULL, &v, &n, &e), 0);
    cr_assert_eq(n, 0);
    store_model_list_free(v, n);
    store_close(st);
    /* a bad --prediction */
    cr_assert_eq(gen("--model " SFIX "sd2.safetensors --tokenizer " SFIX "sd2 --prediction x",
                     "y", &err), 2);
    cr_assert(strstr(err, "--prediction") && strstr(err, "epsilon"), "%s", err);
    free(err);
}

Test(gensingle, models_add_single_file_then_generate_by_name, .timeout = 120) {
    char *out = NULL, *err = NULL;
    cr_assert_eq(support_run(NULL, &out, &err, "bin/easel --db %s models add diffusion "
                             SFIX "sd2.safetensors --tokenizer " SFIX "sd2/tokenizer "
                             "--prediction epsilon", dbpath), 0, "%s", err);
    cr_assert(strstr(out, "registered diffusion model 'sd2'") && strstr(out, "SD 2.x") &&
                  strstr(out, "prediction epsilon"), "%s", out);
    free(out), free(err);
    Err e = {0};
    Store *st = store_open_existing(dbpath, &e);
    StoreModel m;
    cr_assert_eq(store_model_get(st, "diffusion", "sd2", &m, &e), 0, "%s", e.msg);
    cr_assert(strstr(m.path, "/sd2.safetensors"), "%s", m.path);
    cr_assert(strstr(m.config, "\"tokenizer\":") && strstr(m.config, "sd2/tokenizer") &&
                  strstr(m.config, "\"prediction\":\"epsilon\""), "%s", m.config);
    store_model_deinit(&m);
    store_close(st);
    /* by name: the tokenizer and the prediction type come from the row; the same image as
     * the folder told epsilon */
    cr_assert_eq(gen("--model sd2", "byname", &err), 0, "%s", err);
    free(err);
    cr_assert_eq(gen("--model " SFIX "sd2 --prediction epsilon", "dir", &err), 0, "%s", err);
    free(err);
    cr_assert_eq(gen("--model " SFIX "sd2", "dirv", &err), 0, "%s", err);
    free(err);
    char *a = png_of("byname"), *b = png_of("dir"), *c = png_of("dirv");
    cr_assert_eq(support_sh("cmp -s %s %s", a, b), 0, "by name: not the folder's epsilon image");
    cr_assert_neq(support_sh("cmp -s %s %s", a, c), 0, "epsilon made the v image");
    free(a), free(b), free(c);
}

/* With no --tokenizer, a registered CLIP model's folder gives the BPE. */
Test(gensingle, a_registered_clip_models_tokenizer_stands_in, .timeout = 120) {
    char clip[128];
    snprintf(clip, sizeof clip, "%s/clip", tmpdir);
    /* a CLIP model folder: the SDXL fixture's tokenizer files and a text model beside them */
    cr_assert_eq(support_sh("mkdir -p %s && cp " SFIX "sdxl/tokenizer/vocab.json " SFIX
                            "sdxl/tokenizer/merges.txt %s/ && cp " SFIX "sdxl/text_encoder/* "
                            "%s/", clip, clip, clip), 0);
    Err e = {0};
    Store *st = store_open_existing(dbpath, &e);
    cr_assert_eq(store_model_add(st, "clip", "tok", clip, NULL, &e), 0, "%s", e.msg);
    store_close(st);
    char *err = NULL;
    cr_assert_eq(gen("--model " SFIX "sdxl.safetensors", "clip", &err), 0, "%s", err);
    free(err);
    char *a = png_of("clip");
    double db = support_psnr_rgb(a, SFIX "sdxl_euler.rgb");
    cr_assert_geq(db, 50.0, "%.1f dB against diffusers", db);
    free(a);
}
