/* test_export_adapter — adapter files as a user meets them: the diffusers LoRA of the tiny SD
 * pipeline (tests/gen/fixtures/pipeline_sd_lora.safetensors, made by diffusers + peft, and
 * pipeline_sd_lora.rgb, diffusers' image with it at scale 0.7) re-written by `easel export
 * peft` (a diffusers / PEFT folder) and `easel export kohya` renders diffusers' image under
 * `easel generate --lora`; `easel export merged` gives a checkpoint whose UNet renders the same
 * image without --lora; bad input writes nothing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fmt_safetensors.h"
#include "image.h"
#include "lora_file.h"
#include "sd_weights.h"
#include "support.h"
#include "support_fixtures.h"

#define PIPE "tests/gen/fixtures/pipeline_sd"
#define LORA "tests/gen/fixtures/pipeline_sd_lora.safetensors"
#define LORA_RGB "tests/gen/fixtures/pipeline_sd_lora.rgb"

static char tmpdir[64];
static char dbpath[128];

static void setup(void) {
    support_cli_store(tmpdir, sizeof tmpdir, "expad", dbpath, sizeof dbpath);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(export_adapter, .init = setup, .fini = teardown);

/* `easel generate` of diffusers' sd_lora case (tests/gen/fixtures/pipeline_cases.json) with
 * MODEL and LORA_ARG ("" or "--lora FILE:0.7") into OUT; returns the PNG's path. */
static char *generate(const char *model, const char *lora_arg, const char *out) {
    char *o, *e;
    cr_assert_eq(support_run(NULL, &o, &e, "bin/easel --db %s generate --model %s --prompt "
                             "'a red fox in the snow' --negative 'blurry, low quality' --seed 42 "
                             "--steps 4 --guidance 7.5 --size 64x64 --scheduler euler --out %s "
                             "--device cpu %s", dbpath, model, out, lora_arg), 0, "%s", e);
    free(o);
    free(e);
    char *png = NULL;
    cr_assert_eq(support_run(NULL, &png, NULL, "printf %%s %s/*/42.png", out), 0);
    return png;
}

Test(export_adapter, easel_written_peft_and_kohya_render_diffusers_image, .timeout = 120) {
    char dir[128], arg[256], out[128], *o, *e;
    snprintf(dir, sizeof dir, "%s/adapter", tmpdir);
    cr_assert_eq(support_run(NULL, &o, &e, "bin/easel export peft --adapter " LORA " --out %s",
                             dir), 0, "%s", e);
    cr_assert(strstr(o, "48 adapter layers"), "%s", o);
    free(o);
    free(e);
    /* a second export onto the folder needs --force */
    cr_assert_eq(support_run(NULL, &o, &e, "bin/easel export peft --adapter " LORA " --out %s",
                             dir), 1);
    cr_assert(strstr(e, "holds an adapter; add --force"), "%s", e);
    free(o);
    free(e);
    snprintf(arg, sizeof arg, "--lora %s/" LORA_FILE_PEFT_WEIGHTS ":0.7", dir);
    snprintf(out, sizeof out, "%s/peft", tmpdir);
    char *png = generate(PIPE, arg, out);
    double db = support_psnr_rgb(png, LORA_RGB);
    cr_assert_geq(db, 50.0, "PSNR %.1f dB against diffusers with its own file", db);
    free(png);

    cr_assert_eq(support_run(NULL, &o, &e, "bin/easel export kohya --adapter %s --out "
                             "%s/k.safetensors", dir, tmpdir), 0, "%s", e);
    cr_assert(strstr(o, "48 adapter layers with kohya names"), "%s", o);
    free(o);
    free(e);
    snprintf(arg, sizeof arg, "--lora %s/k.safetensors:0.7", tmpdir);
    snprintf(out, sizeof out, "%s/kohya", tmpdir);
    png = generate(PIPE, arg, out);
    db = support_psnr_rgb(png, LORA_RGB);
    cr_assert_geq(db, 50.0, "PSNR %.1f dB against diffusers with the kohya export", db);
    free(png);
}

/* The merged checkpoint's UNet as a diffusers folder beside the base model's other parts, so
 * that `easel generate` (which takes folders) renders with it. */
static void folder_from_merged(const char *merged, const char *dir) {
    cr_assert_eq(support_sh("mkdir -p %s/unet && for p in model_index.json scheduler tokenizer "
                            "text_encoder vae; do ln -s $PWD/" PIPE "/$p %s/$p; done && cp "
                            PIPE "/unet/config.json %s/unet/", dir, dir, dir), 0);
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(merged, "unet", &w, &err), 0, "%s", err.msg);
    SafeTensorsWriter *wr = safetensors_writer_new();
    float **keep = xcalloc(sd_weights_count(w), sizeof *keep);
    for (size_t i = 0; i < sd_weights_count(w); i++) {
        const char *name = sd_weights_name(w, i);
        const StTensor *t = sd_weights_find(w, name);
        keep[i] = xmalloc((size_t)t->n_elem * sizeof(float));
        cr_assert_eq(sd_weights_read_f32(w, name, t->n_dim, t->shape, keep[i], &err), 0, "%s",
                     err.msg);
        cr_assert_eq(safetensors_writer_add(wr, name, ST_F32, t->n_dim, t->shape, keep[i], &err),
                     0, "%s", err.msg);
    }
    char *path = xasprintf("%s/unet/diffusion_pytorch_model.safetensors", dir);
    cr_assert_eq(safetensors_writer_save(wr, path, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < sd_weights_count(w); i++)
        free(keep[i]);
    free(keep);
    free(path);
    safetensors_writer_free(wr);
    sd_weights_close(w);
}

Test(export_adapter, merged_checkpoint_renders_base_plus_lora, .timeout = 120) {
    char *o, *e, merged[128], dir[128], out[128];
    snprintf(merged, sizeof merged, "%s/merged.safetensors", tmpdir);
    /* the base model by its registered name */
    cr_assert_eq(support_sh("bin/easel --db %s models add diffusion " PIPE " --name tiny "
                            ">/dev/null", dbpath), 0);
    cr_assert_eq(support_run(NULL, &o, &e, "bin/easel --db %s export merged --model tiny "
                             "--adapter " LORA " --scale 0.7 --out %s", dbpath, merged), 0, "%s",
                 e);
    cr_assert(strstr(o, "48 adapter layers merged at scale 0.7"), "%s", o);
    free(o);
    free(e);
    /* the UNet weights are the base's with the LoRA added as generate --lora adds it */
    SdWeights *m = NULL, *b = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(merged, "unet", &m, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_open(PIPE, "unet", &b, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_add_lora(b, LORA, 0.7f, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_count(m), sd_weights_count(b));
    int changed = 0;
    for (size_t i = 0; i < sd_weights_count(b); i++) {
        const char *name = sd_weights_name(b, i);
        const StTensor *t = sd_weights_find(b, name);
        float *x = xmalloc((size_t)t->n_elem * sizeof *x), *y = xmalloc((size_t)t->n_elem * 4);
        cr_assert_eq(sd_weights_read_f32(b, name, t->n_dim, t->shape, x, &err), 0, "%s", err.msg);
        cr_assert_eq(sd_weights_read_f32(m, name, t->n_dim, t->shape, y, &err), 0, "%s", err.msg);
        cr_assert_eq(memcmp(x, y, (size_t)t->n_elem * sizeof *x), 0, "%s differs", name);
        changed += strstr(name, "to_q.weight") != NULL;
        free(x);
        free(y);
    }
    cr_assert_gt(changed, 0);
    sd_weights_close(m);
    sd_weights_close(b);
    /* and the image: diffusers' with the LoRA, without --lora */
    snprintf(dir, sizeof dir, "%s/merged-model", tmpdir);
    folder_from_merged(merged, dir);
    snprintf(out, sizeof out, "%s/gen", tmpdir);
    char *png = generate(dir, "", out);
    double db = support_psnr_rgb(png, LORA_RGB);
    cr_assert_geq(db, 50.0, "PSNR %.1f dB against diffusers' base + LoRA", db);
    free(png);
}

/* Each refused command leaves the folder as it was: only "keep.safetensors" (and the store). */
static void refused(const char *args, int want_rc, const char *want) {
    char *o, *e;
    int rc = support_run(NULL, &o, &e, "bin/easel --db %s export %s", dbpath, args);
    cr_assert_eq(rc, want_rc, "export %s: rc %d: %s", args, rc, e);
    cr_assert(strstr(e, "easel: export ") && strstr(e, want), "export %s: %s", args, e);
    free(o);
    free(e);
    cr_assert_eq(support_sh("test \"$(ls %s | sort | tr '\\n' ' ')\" = 'keep.safetensors s.db '",
                            tmpdir), 0, "export %s left files behind", args);
}

Test(export_adapter, bad_input_writes_nothing, .timeout = 60) {
    char keep[128], args[512];
    snprintf(keep, sizeof keep, "%s/keep.safetensors", tmpdir);
    cr_assert_eq(support_sh("printf old > %s", keep), 0);
    snprintf(args, sizeof args, "kohya --adapter " LORA " --out %s", keep);
    refused(args, 1, "exists; add --force");
    snprintf(args, sizeof args, "merged --model tests/models/fixtures/sdfile/sdxl --adapter "
             "tests/models/fixtures/sdfile/lora/peft.safetensors --out %s/m.safetensors",
             tmpdir);
    refused(args, 1, "another model");
    snprintf(args, sizeof args, "merged --model " PIPE " --adapter "
             "tests/gen/fixtures/pipeline_sd_te_lora.safetensors --out %s/m.safetensors", tmpdir);
    refused(args, 1, "text-encoder adapters");
    snprintf(args, sizeof args, "kohya --adapter %s/none --out %s/k.safetensors", tmpdir,
             tmpdir);
    refused(args, 1, "no such file or folder");
    snprintf(args, sizeof args, "kohya --adapter %s --out %s/k.safetensors", tmpdir, tmpdir);
    refused(args, 1, LORA_FILE_PEFT_WEIGHTS);
    snprintf(args, sizeof args, "kohya --adapter tests/models/fixtures/sdfile/lora/"
             "kohya_sgm.safetensors --out %s/k.safetensors", tmpdir);
    refused(args, 1, "--model");
    snprintf(args, sizeof args, "merged --adapter " LORA " --out %s/m.safetensors", tmpdir);
    refused(args, 2, "needs --model");
    snprintf(args, sizeof args, "kohya --adapter " LORA " --scale 2 --out %s/k.safetensors",
             tmpdir);
    refused(args, 2, "--scale applies to 'export merged'");
    snprintf(args, sizeof args, "merged --model nosuch --adapter " LORA
             " --out %s/m.safetensors", tmpdir);
    refused(args, 1, "neither a folder nor a registered");
    refused("merged --modle x", 2, "did you mean '--model'");
    snprintf(args, sizeof args, "kohya --adapter tests/models/fixtures/sdfile/lora/"
             "dora.safetensors --out %s/k.safetensors", tmpdir);
    refused(args, 2, "DoRA");
    snprintf(args, sizeof args, "peft --adapter " LORA " --out %s", keep);
    refused(args, 2, "is a file");
    cr_assert_eq(support_sh("test \"$(cat %s)\" = old", keep), 0);
    /* --force replaces it, with a file that reads back to the adapter */
    char *o, *e;
    cr_assert_eq(support_run(NULL, &o, &e, "bin/easel export kohya --adapter " LORA " --out %s "
                             "--force", keep), 0, "%s", e);
    free(o);
    free(e);
    LoraSet a = {0}, b = {0};
    Err err = {0};
    cr_assert_eq(lora_file_read(LORA, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(lora_file_read(keep, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(a.n, b.n);
    for (size_t i = 0; i < a.n; i++)
        cr_assert(!strcmp(a.e[i].name, b.e[i].name) &&
                  a.e[i].alpha / a.e[i].r == b.e[i].alpha / b.e[i].r &&
                  !memcmp(a.e[i].B, b.e[i].B, (size_t)a.e[i].out * a.e[i].r * sizeof(float)));
    lora_set_free(&a);
    lora_set_free(&b);
}

Test(export_adapter, help_lists_the_adapter_exports) {
    char *o, *e;
    cr_assert_eq(support_run(NULL, &o, &e, "bin/easel export --help"), 0);
    cr_assert(strstr(o, "merged") && strstr(o, "kohya"), "%s", o);
    free(o);
    free(e);
    cr_assert_eq(support_run(NULL, &o, &e, "bin/easel export merged --help"), 0);
    cr_assert(strstr(o, "--adapter DIR|FILE") && strstr(o, "--scale") && strstr(o, "example"),
              "%s", o);
    free(o);
    free(e);
}
