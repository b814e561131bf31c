/* sd_weights on single-file checkpoints: every tensor of every component of a tiny random SD-,
 * SDXL- and SD-2-shaped checkpoint (tests/models/fixtures/sdfile, made and checked against
 * diffusers' from_single_file by tests/models/make_single_fixtures.py) reads equal to the
 * diffusers folder's, under diffusers names; the configs made from the tensors match the
 * folders'; bad files are named. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "sd_weights.h"

#define FIX "tests/models/fixtures/sdfile/"

/* The folder's name for a diffusers name (transformers 5 saves CLIPTextModel without the
 * `text_model.` prefix; released folders and easel's naming keep it). */
static const StTensor *folder_find(SdWeights *f, const char *name, const char **fname) {
    *fname = name;
    const StTensor *t = sd_weights_find(f, name);
    if (!t && !strncmp(name, "text_model.", 11)) {
        *fname = name + 11;
        t = sd_weights_find(f, *fname);
    }
    return t;
}

static void same_component(const char *single, const char *folder, const char *component) {
    SdWeights *s = NULL, *f = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(single, component, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_open(folder, component, &f, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_count(s), sd_weights_count(f), "%s: %zu tensors, folder %zu",
                 component, sd_weights_count(s), sd_weights_count(f));
    for (size_t i = 0; i < sd_weights_count(s); i++) {
        const char *name = sd_weights_name(s, i), *fname;
        const StTensor *ts = sd_weights_find(s, name);
        const StTensor *tf = folder_find(f, name, &fname);
        cr_assert(tf, "%s: %s is not in the folder", component, name);
        cr_assert_eq(ts->n_dim, tf->n_dim, "%s", name);
        for (int d = 0; d < ts->n_dim; d++)
            cr_assert_eq(ts->shape[d], tf->shape[d], "%s dim %d", name, d);
        float *a = xmalloc((size_t)ts->n_elem * sizeof *a);
        float *b = xmalloc((size_t)ts->n_elem * sizeof *b);
        cr_assert_eq(sd_weights_read_f32(s, name, ts->n_dim, ts->shape, a, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(sd_weights_read_f32(f, fname, tf->n_dim, tf->shape, b, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(memcmp(a, b, (size_t)ts->n_elem * sizeof *a), 0, "%s: %s differs",
                     component, name);
        free(a);
        free(b);
    }
    sd_weights_close(s);
    sd_weights_close(f);
}

Test(sd_weights_single, sd_checkpoint_reads_as_the_diffusers_folder) {
    same_component(FIX "sd.safetensors", FIX "sd", "unet");
    same_component(FIX "sd.safetensors", FIX "sd", "vae");
    same_component(FIX "sd.safetensors", FIX "sd", "text_encoder");
}

Test(sd_weights_single, sdxl_checkpoint_reads_as_the_diffusers_folder) {
    same_component(FIX "sdxl.safetensors", FIX "sdxl", "unet");
    same_component(FIX "sdxl.safetensors", FIX "sdxl", "vae");
    same_component(FIX "sdxl.safetensors", FIX "sdxl", "text_encoder");
    same_component(FIX "sdxl.safetensors", FIX "sdxl", "text_encoder_2");
}

Test(sd_weights_single, sd2_checkpoint_with_openclip_text_encoder_reads_as_the_folder) {
    same_component(FIX "sd2.safetensors", FIX "sd2", "unet");
    same_component(FIX "sd2.safetensors", FIX "sd2", "vae");
    same_component(FIX "sd2.safetensors", FIX "sd2", "text_encoder");
}

Test(sd_weights_single, the_fixtures_load_in_diffusers_from_single_file) {
    json_error_t je;
    json_t *r = json_load_file(FIX "single_check.json", 0, &je);
    cr_assert(r, "%s", je.text);
    const char *names[] = {"sd", "sdxl", "sd2"};
    for (int i = 0; i < 3; i++)
        cr_assert(json_is_true(json_object_get(json_object_get(r, names[i]),
                                               "from_single_file_equal")), "%s", names[i]);
    json_decref(r);
}

/* KEY of the made config equals the folder's (an int equals a list of that int). */
static void same_key(json_t *made, json_t *folder, const char *key, const char *what) {
    json_t *a = json_object_get(made, key), *b = json_object_get(folder, key);
    cr_assert(a, "%s: made config lacks %s", what, key);
    cr_assert(b, "%s: folder config lacks %s", what, key);
    if (json_is_integer(b) && json_is_array(a)) {
        for (size_t i = 0; i < json_array_size(a); i++)
            cr_assert_eq(json_integer_value(json_array_get(a, i)), json_integer_value(b),
                         "%s: %s", what, key);
        return;
    }
    cr_assert(json_equal(a, b), "%s: %s: made %s, folder %s", what, key,
              json_dumps(a, JSON_ENCODE_ANY), json_dumps(b, JSON_ENCODE_ANY));
}

static json_t *made_config(const char *single, const char *component, const char *arch) {
    SdWeights *s = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(single, component, &s, &err), 0, "%s", err.msg);
    cr_assert(sd_weights_config_json(s));
    json_error_t je;
    json_t *c = json_loads(sd_weights_config_json(s), 0, &je);
    cr_assert(c, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(c, "_easel_single_file_architecture")),
                     arch);
    sd_weights_close(s);
    return c;
}

static json_t *folder_config(const char *path) {
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    cr_assert(c, "%s: %s", path, je.text);
    return c;
}

/* What the tensors cannot tell (GroupNorm groups, attention heads, sample size) is the
 * released models' (doc/models.md), so those keys are not compared with the tiny folders. */
static void check_unet_config(const char *single, const char *folder, const char *arch) {
    json_t *m = made_config(single, "unet", arch);
    char *p = xasprintf("%s/unet/config.json", folder);
    json_t *f = folder_config(p);
    const char *keys[] = {"block_out_channels", "layers_per_block", "down_block_types",
                          "up_block_types", "cross_attention_dim", "in_channels",
                          "out_channels", "transformer_layers_per_block",
                          "use_linear_projection"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        same_key(m, f, keys[i], p);
    if (!strcmp(arch, "SDXL")) {
        same_key(m, f, "addition_embed_type", p);
        same_key(m, f, "addition_time_embed_dim", p);
        same_key(m, f, "projection_class_embeddings_input_dim", p);
    }
    free(p);
    json_decref(m);
    json_decref(f);
    m = made_config(single, "vae", arch);
    p = xasprintf("%s/vae/config.json", folder);
    f = folder_config(p);
    const char *vkeys[] = {"block_out_channels", "layers_per_block", "latent_channels",
                           "in_channels", "out_channels"};
    for (size_t i = 0; i < sizeof vkeys / sizeof *vkeys; i++)
        same_key(m, f, vkeys[i], p);
    free(p);
    json_decref(m);
    json_decref(f);
}

static void check_clip_config(const char *single, const char *folder, const char *component,
                              const char *arch, int layers_less) {
    json_t *m = made_config(single, component, arch);
    char *p = xasprintf("%s/%s/config.json", folder, component);
    json_t *f = folder_config(p);
    const char *keys[] = {"hidden_size", "intermediate_size", "max_position_embeddings",
                          "vocab_size", "hidden_act"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        same_key(m, f, keys[i], p);
    cr_assert_eq(json_integer_value(json_object_get(m, "num_hidden_layers")) + layers_less,
                 json_integer_value(json_object_get(f, "num_hidden_layers")), "%s", p);
    if (json_object_get(m, "projection_dim"))
        same_key(m, f, "projection_dim", p);
    free(p);
    json_decref(m);
    json_decref(f);
}

Test(sd_weights_single, configs_come_from_the_tensors) {
    check_unet_config(FIX "sd.safetensors", FIX "sd", "SD 1.x");
    check_unet_config(FIX "sdxl.safetensors", FIX "sdxl", "SDXL");
    check_unet_config(FIX "sd2.safetensors", FIX "sd2", "SD 2.x");
    check_clip_config(FIX "sd.safetensors", FIX "sd", "text_encoder", "SD 1.x", 0);
    check_clip_config(FIX "sdxl.safetensors", FIX "sdxl", "text_encoder", "SDXL", 0);
    check_clip_config(FIX "sdxl.safetensors", FIX "sdxl", "text_encoder_2", "SDXL", 0);
    /* SD 2 conditions on the penultimate layer: the file's last (OpenCLIP's whole tower, as
     * released; all zeros when easel writes a folder) is left out, as diffusers' released
     * stable-diffusion-2 text encoder has one layer less */
    check_clip_config(FIX "sd2.safetensors", FIX "sd2", "text_encoder", "SD 2.x", 0);
}

Test(sd_weights_single, bad_files_and_missing_components_are_named) {
    SdWeights *w = NULL;
    Err err = {0};
    /* SD 2 has one text encoder */
    cr_assert_eq(sd_weights_open(FIX "sd2.safetensors", "text_encoder_2", &w, &err),
                 ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "sd2.safetensors") && strstr(err.msg, "text_encoder_2") &&
              strstr(err.msg, "conditioner.embedders.1.model."), "%s", err.msg);
    cr_assert_null(w);
    /* a safetensors file that is no SD checkpoint */
    cr_assert_eq(sd_weights_open(FIX "lora/peft.safetensors", "unet", &w, &err),
                 ERR_FORMAT);
    cr_assert(strstr(err.msg, "peft.safetensors") && strstr(err.msg, "single-file"),
              "%s", err.msg);
    /* a diffusers component's own file: pointed at its folder */
    cr_assert_eq(sd_weights_open(FIX "sd/unet/diffusion_pytorch_model.safetensors", "unet", &w,
                                 &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "diffusion_pytorch_model.safetensors") &&
              strstr(err.msg, "folder"), "%s", err.msg);
    /* a wrong shape names both names and the file */
    cr_assert_eq(sd_weights_open(FIX "sd.safetensors", "vae", &w, &err), 0, "%s", err.msg);
    float x[4];
    int64_t s[2] = {2, 2};
    cr_assert_eq(sd_weights_read_f32(w, "encoder.mid_block.attentions.0.to_q.weight", 2, s, x,
                                     &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "sd.safetensors") &&
              strstr(err.msg, "encoder.mid_block.attentions.0.to_q.weight") &&
              strstr(err.msg, "first_stage_model.encoder.mid.attn_1.q.weight"), "%s", err.msg);
    sd_weights_close(w);
    /* not there at all */
    cr_assert_eq(sd_weights_open(FIX "nothing.safetensors", "unet", &w, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "nothing.safetensors"), "%s", err.msg);
}

static int same_bytes(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    cr_assert(fa && fb, "%s / %s", a, b);
    int ca, cb;
    do {
        ca = fgetc(fa);
        cb = fgetc(fb);
    } while (ca == cb && ca != EOF);
    fclose(fa);
    fclose(fb);
    return ca == cb;
}

/* easel writes the folder as the very bytes of the fixture's single file, which
 * make_single_fixtures.py made with its own map and diffusers' from_single_file loaded to the
 * folder's weights (single_check.json). */
static void writes(const char *name, int xl) {
    char *folder = xasprintf(FIX "%s", name);
    char *checked = xasprintf(FIX "%s.safetensors", name);
    char *out = xasprintf("/tmp/easel-sdw-%d-%s.safetensors", (int)getpid(), name);
    Err err = {0};
    cr_assert_eq(sd_weights_write_single(folder, out, &err), 0, "%s", err.msg);
    /* reads back as the folder, component by component */
    same_component(out, folder, "unet");
    same_component(out, folder, "vae");
    same_component(out, folder, "text_encoder");
    if (xl)
        same_component(out, folder, "text_encoder_2");
    cr_assert(same_bytes(out, checked), "%s differs from %s", out, checked);
    json_error_t je;
    json_t *r = json_load_file(FIX "single_check.json", 0, &je);
    cr_assert(r, "%s", je.text);
    cr_assert(json_is_true(json_object_get(json_object_get(r, name), "from_single_file_equal")),
              "%s", name);
    json_decref(r);
    unlink(out);
    free(out);
    free(folder);
    free(checked);
}

Test(sd_weights_single, written_sd_file_loads_in_diffusers) { writes("sd", 0); }
Test(sd_weights_single, written_sdxl_file_loads_in_diffusers) { writes("sdxl", 1); }
Test(sd_weights_single, written_sd2_file_loads_in_diffusers) { writes("sd2", 0); }

Test(sd_weights_single, writing_a_folder_without_a_unet_fails_and_writes_nothing) {
    Err err = {0};
    char out[64];
    snprintf(out, sizeof out, "/tmp/easel-sdw-%d-none.safetensors", (int)getpid());
    cr_assert_eq(sd_weights_write_single(FIX "lora", out, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "unet"), "%s", err.msg);
    cr_assert_eq(access(out, F_OK), -1);
}

/* Released checkpoints are mostly f16: the sliced (q/k/v), transposed (text_projection) and
 * reshaped (VAE attention) tensors read right from 2-byte elements too. */
static void f16_case(const char *model, int xl) {
    Err err = {0};
    char *single = xasprintf(FIX "%s.safetensors", model);
    char *folder = xasprintf(FIX "%s", model);
    SafeTensors *src = safetensors_open(single, &err);
    cr_assert(src, "%s", err.msg);
    SafeTensorsWriter *wr = safetensors_writer_new();
    size_t n = safetensors_count(src);
    uint16_t **h = xcalloc(n, sizeof *h);
    for (size_t i = 0; i < n; i++) {
        const StTensor *t = safetensors_at(src, i);
        float *f = xmalloc((size_t)t->n_elem * sizeof *f);
        cr_assert_eq(safetensors_read_f32(src, t, f, (size_t)t->n_elem, &err), 0);
        h[i] = xmalloc((size_t)t->n_elem * sizeof **h);
        for (int64_t k = 0; k < t->n_elem; k++)
            h[i][k] = safetensors_f32_to_f16(f[k]);
        free(f);
        cr_assert_eq(safetensors_writer_add(wr, t->name, ST_F16, t->n_dim, t->shape, h[i],
                                            &err), 0, "%s", err.msg);
    }
    char *out = xasprintf("/tmp/easel-sdw-%d-f16-%s.safetensors", (int)getpid(), model);
    cr_assert_eq(safetensors_writer_save(wr, out, &err), 0, "%s", err.msg);
    safetensors_writer_free(wr);
    for (size_t i = 0; i < n; i++)
        free(h[i]);
    free(h);
    safetensors_close(src);
    const char *comps[] = {"unet", "vae", "text_encoder", "text_encoder_2"};
    for (int c = 0; c < 3 + xl; c++) {
        SdWeights *s = NULL, *f = NULL;
        cr_assert_eq(sd_weights_open(out, comps[c], &s, &err), 0, "%s", err.msg);
        cr_assert_eq(sd_weights_open(folder, comps[c], &f, &err), 0, "%s", err.msg);
        for (size_t i = 0; i < sd_weights_count(s); i++) {
            const char *name = sd_weights_name(s, i), *fname;
            const StTensor *ts = sd_weights_find(s, name);
            const StTensor *tf = folder_find(f, name, &fname);
            cr_assert(tf, "%s", name);
            cr_assert_eq(ts->dtype, ST_F16);
            float *a = xmalloc((size_t)ts->n_elem * sizeof *a);
            float *b = xmalloc((size_t)ts->n_elem * sizeof *b);
            cr_assert_eq(sd_weights_read_f32(s, name, ts->n_dim, ts->shape, a, &err), 0, "%s",
                         err.msg);
            cr_assert_eq(sd_weights_read_f32(f, fname, tf->n_dim, tf->shape, b, &err), 0);
            for (int64_t k = 0; k < ts->n_elem; k++)
                cr_assert_eq(a[k], safetensors_f16_to_f32(safetensors_f32_to_f16(b[k])),
                             "%s[%lld]", name, (long long)k);
            free(a);
            free(b);
        }
        sd_weights_close(s);
        sd_weights_close(f);
    }
    unlink(out);
    free(out);
    free(single);
    free(folder);
}

Test(sd_weights_single, f16_checkpoints_read_as_the_rounded_folder) {
    f16_case("sd2", 0);  /* OpenCLIP q/k/v slices of 2-byte rows */
    f16_case("sdxl", 1); /* and bigG's transposed text_projection */
}

/* `export merged` writes through the same code as the plain single file: with no adapters an
 * SD 2.x folder gives the very same bytes (OpenCLIP's unused last layer included, so the text
 * encoder reads back with all its layers). */
Test(sd_weights_single, merged_sd2_file_without_adapters_is_the_plain_file) {
    char *out = xasprintf("/tmp/easel-sdw-%d-merged-sd2.safetensors", (int)getpid());
    Err err = {0};
    cr_assert_eq(sd_weights_write_single_lora(FIX "sd2", NULL, NULL, 0, out, &err), 0, "%s",
                 err.msg);
    same_component(out, FIX "sd2", "text_encoder");
    cr_assert(same_bytes(out, FIX "sd2.safetensors"), "%s differs from the plain file", out);
    unlink(out);
    free(out);
}
