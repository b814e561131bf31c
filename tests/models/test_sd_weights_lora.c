/* sd_weights_add_lora: a PEFT LoRA (diffusers' save_lora_weights), the same adapters in kohya
 * names (diffusers-style and SGM block names, `.alpha` tensors), older diffusers `.lora.down`
 * names with the alpha in the metadata, and a DoRA, each applied to a tiny random SD UNet,
 * give the weights diffusers' load_lora_weights + fuse_lora gives (fixtures from
 * tests/models/make_single_fixtures.py) within 1e-5; unused or unmatched adapters are errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "sd_weights.h"

#define FIX "tests/models/fixtures/sdfile/"

static float *read_all(SdWeights *w, const char *name, const StTensor *like) {
    Err err = {0};
    float *v = xmalloc((size_t)like->n_elem * sizeof *v);
    cr_assert_eq(sd_weights_read_f32(w, name, like->n_dim, like->shape, v, &err), 0, "%s",
                 err.msg);
    return v;
}

/* Every tensor of MERGED read from MODEL's COMPONENT with LORA applied at scale 1. */
static void component_matches(const char *model, const char *component, const char *lora,
                              const char *merged) {
    SdWeights *w = NULL, *m = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(model, component, &w, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_add_lora(w, lora, 1.0f, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_open(FIX "lora", "unet", &m, &err), ERR_NOTFOUND);
    /* the merged file is a plain safetensors: open it as a component folder's weights */
    char dir[] = "/tmp/easel-lora-XXXXXX";
    cr_assert(mkdtemp(dir));
    char *link = xasprintf("%s/diffusion_pytorch_model.safetensors", dir);
    char *abs = realpath(merged, NULL);
    cr_assert(abs);
    cr_assert_eq(symlink(abs, link), 0);
    cr_assert_eq(sd_weights_open(dir, "unet", &m, &err), 0, "%s", err.msg);
    double worst = 0;
    for (size_t i = 0; i < sd_weights_count(m); i++) {
        const char *name = sd_weights_name(m, i);
        const StTensor *t = sd_weights_find(m, name);
        /* a folder saved by transformers 5 names the text encoder without text_model. */
        const char *wname = sd_weights_find(w, name) || strncmp(name, "text_model.", 11)
                                ? name : name + 11;
        float *want = read_all(m, name, t), *got = read_all(w, wname, t);
        for (int64_t k = 0; k < t->n_elem; k++) {
            double d = fabs((double)want[k] - got[k]);
            worst = d > worst ? d : worst;
            cr_assert(d <= 1e-5, "%s: %s[%lld] = %g, diffusers %g", lora, name, (long long)k,
                      (double)got[k], (double)want[k]);
        }
        free(want);
        free(got);
    }
    cr_assert_gt(sd_weights_count(m), 10);
    cr_assert_eq(sd_weights_check_used(w, &err), 0, "%s", err.msg);
    sd_weights_close(w);
    sd_weights_close(m);
    unlink(link);
    rmdir(dir);
    free(link);
    free(abs);
}

static void matches_merged(const char *model, const char *lora, const char *merged) {
    component_matches(model, "unet", lora, merged);
}

Test(sd_weights_lora, peft_lora_gives_diffusers_fused_weights) {
    matches_merged(FIX "sd", FIX "lora/peft.safetensors", FIX "lora/peft_merged.safetensors");
}

Test(sd_weights_lora, kohya_lora_with_diffusers_and_sgm_block_names) {
    matches_merged(FIX "sd", FIX "lora/kohya.safetensors", FIX "lora/kohya_merged.safetensors");
    matches_merged(FIX "sd", FIX "lora/kohya_sgm.safetensors",
                   FIX "lora/kohya_merged.safetensors");
    /* and on the single-file checkpoint of the same model */
    matches_merged(FIX "sd.safetensors", FIX "lora/kohya_sgm.safetensors",
                   FIX "lora/kohya_merged.safetensors");
}

Test(sd_weights_lora, peft_alpha_pattern_gives_per_layer_alphas) {
    matches_merged(FIX "sd", FIX "lora/pattern.safetensors",
                   FIX "lora/pattern_merged.safetensors");
}

Test(sd_weights_lora, dora_magnitude_is_applied_per_output_channel) {
    matches_merged(FIX "sd", FIX "lora/dora.safetensors", FIX "lora/dora_merged.safetensors");
}

/* peft.safetensors renamed: PEFT's LoRA names with the `unet.` prefix cut (BARE, as PEFT's
 * own get_peft_model_state_dict gives), else the older .lora.down/.lora.up names; alpha 8
 * only in ss_network_alpha. Returns the file (the caller unlinks and frees). */
static char *renamed_peft(int bare) {
    Err err = {0};
    SafeTensors *src = safetensors_open(FIX "lora/peft.safetensors", &err);
    cr_assert(src, "%s", err.msg);
    SafeTensorsWriter *wr = safetensors_writer_new();
    for (size_t i = 0; i < safetensors_count(src); i++) {
        const StTensor *t = safetensors_at(src, i);
        char *n = xstrdup(t->name);
        char *a = strstr(n, ".lora_A.weight"), *b = strstr(n, ".lora_B.weight");
        char *nn = bare ? xstrdup(n + 5)
                   : a  ? xasprintf("%.*s.lora.down.weight", (int)(a - n), n)
                        : xasprintf("%.*s.lora.up.weight", (int)(b - n), n);
        cr_assert_eq(safetensors_writer_add(wr, nn, t->dtype, t->n_dim, t->shape, t->data,
                                            &err), 0, "%s", err.msg);
        free(n);
        free(nn);
    }
    safetensors_writer_meta(wr, "ss_network_alpha", "8");
    char *path = xstrdup("/tmp/easel-lora-legacy-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(safetensors_writer_save(wr, path, &err), 0, "%s", err.msg);
    safetensors_writer_free(wr);
    safetensors_close(src);
    return path;
}

Test(sd_weights_lora, older_diffusers_names_with_alpha_in_the_metadata) {
    char *path = renamed_peft(0);
    matches_merged(FIX "sd", path, FIX "lora/peft_merged.safetensors");
    unlink(path);
    free(path);
}

Test(sd_weights_lora, peft_names_without_the_unet_prefix_are_the_unets) {
    char *path = renamed_peft(1);
    matches_merged(FIX "sd", path, FIX "lora/peft_merged.safetensors");
    /* and the text encoder leaves them alone */
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(FIX "sd", "text_encoder", &w, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_add_lora(w, path, 1.0f, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_check_used(w, &err), 0, "%s", err.msg);
    sd_weights_close(w);
    unlink(path);
    free(path);
}

Test(sd_weights_lora, scale_weighs_the_update) {
    SdWeights *base = NULL, *full = NULL, *half = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(FIX "sd", "unet", &base, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_open(FIX "sd", "unet", &full, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_open(FIX "sd", "unet", &half, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_add_lora(full, FIX "lora/kohya.safetensors", 1.0f, &err), 0);
    cr_assert_eq(sd_weights_add_lora(half, FIX "lora/kohya.safetensors", 0.5f, &err), 0);
    const char *name = "down_blocks.0.resnets.0.conv1.weight";
    const StTensor *t = sd_weights_find(base, name);
    float *a = read_all(base, name, t), *b = read_all(full, name, t), *c = read_all(half, name, t);
    int changed = 0;
    for (int64_t k = 0; k < t->n_elem; k++) {
        cr_assert(fabsf(c[k] - 0.5f * (a[k] + b[k])) < 1e-6f, "%lld", (long long)k);
        changed += a[k] != b[k];
    }
    cr_assert_gt(changed, t->n_elem / 2);
    /* the half LoRA read one weight only: the others are reported, naming file and tensor */
    cr_assert_eq(sd_weights_check_used(half, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "kohya.safetensors") && strstr(err.msg, "lora_unet_") &&
              strstr(err.msg, "not used"), "%s", err.msg);
    free(a);
    free(b);
    free(c);
    sd_weights_close(base);
    sd_weights_close(full);
    sd_weights_close(half);
}

Test(sd_weights_lora, adapters_for_another_model_are_refused) {
    SdWeights *w = NULL;
    Err err = {0};
    /* the SD LoRA on the SDXL-shaped UNet: its first adapter names no layer there */
    cr_assert_eq(sd_weights_open(FIX "sdxl", "unet", &w, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_add_lora(w, FIX "lora/peft.safetensors", 1.0f, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "peft.safetensors") && strstr(err.msg, "unet.") &&
              strstr(err.msg, "matches no unet weight"), "%s", err.msg);
    /* nothing was added: reading gives the base weights and nothing is left unused */
    cr_assert_eq(sd_weights_check_used(w, &err), 0, "%s", err.msg);
    /* a file that is no LoRA */
    cr_assert_eq(sd_weights_add_lora(w, FIX "sd.safetensors", 1.0f, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "sd.safetensors") && strstr(err.msg, "no LoRA tensor"), "%s",
              err.msg);
    sd_weights_close(w);
    /* the text encoder skips the UNet's adapters */
    cr_assert_eq(sd_weights_open(FIX "sd", "text_encoder", &w, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_add_lora(w, FIX "lora/peft.safetensors", 1.0f, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(sd_weights_check_used(w, &err), 0, "%s", err.msg);
    sd_weights_close(w);
}

Test(sd_weights_lora, text_encoder_lora_in_peft_and_kohya_names) {
    component_matches(FIX "sd", "text_encoder", FIX "lora/te.safetensors",
                      FIX "lora/te_merged.safetensors");
    component_matches(FIX "sd", "text_encoder", FIX "lora/te_kohya.safetensors",
                      FIX "lora/te_merged.safetensors");
    /* the single file names the text encoder text_model.*: the same adapters apply */
    component_matches(FIX "sd.safetensors", "text_encoder", FIX "lora/te_kohya.safetensors",
                      FIX "lora/te_merged.safetensors");
    /* the UNet skips the text encoder's adapters */
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(FIX "sd", "unet", &w, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_add_lora(w, FIX "lora/te.safetensors", 1.0f, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(sd_weights_check_used(w, &err), 0, "%s", err.msg);
    sd_weights_close(w);
}
