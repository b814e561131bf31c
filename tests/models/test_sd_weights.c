/* sd_weights: a diffusers component found in its folder (plain, .fp16 variant, shards), read
 * by name with its shape checked, and every bad file named in the error. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "sd_weights.h"

static char root[64];

static void setup(void) {
    strcpy(root, "/tmp/easel-sdw-XXXXXX");
    cr_assert(mkdtemp(root));
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(sd_weights, .init = setup, .fini = teardown);

/* Write FILE in ROOT/DIR with tensors "a.weight" (2,3) = i and "b.bias" (4) = 10+i, as DT. */
static void write_weights(const char *dir, const char *file, StDtype dt, float poison) {
    char *d = xasprintf("%s/%s", root, dir);
    mkdir(d, 0700);
    char *p = xasprintf("%s/%s", d, file);
    float a[6], b[4];
    uint16_t ah[6], bh[4];
    for (int i = 0; i < 6; i++)
        a[i] = (float)i;
    for (int i = 0; i < 4; i++)
        b[i] = 10.0f + (float)i;
    b[3] = poison ? poison : b[3];
    for (int i = 0; i < 6; i++)
        ah[i] = safetensors_f32_to_f16(a[i]);
    for (int i = 0; i < 4; i++)
        bh[i] = safetensors_f32_to_f16(b[i]);
    SafeTensorsWriter *w = safetensors_writer_new();
    Err err = {0};
    int64_t sa[2] = {2, 3}, sb[1] = {4};
    cr_assert_eq(safetensors_writer_add(w, "a.weight", dt, 2, sa, dt == ST_F16 ? (void *)ah
                                        : (void *)a, &err), 0);
    cr_assert_eq(safetensors_writer_add(w, "b.bias", dt, 1, sb, dt == ST_F16 ? (void *)bh
                                        : (void *)b, &err), 0);
    cr_assert_eq(safetensors_writer_save(w, p, &err), 0, "%s", err.msg);
    safetensors_writer_free(w);
    free(p);
    free(d);
}

static void write_text(const char *rel, const char *text) {
    char *p = xasprintf("%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    free(p);
}

Test(sd_weights, reads_a_component_by_name_with_its_config) {
    write_weights("unet", "diffusion_pytorch_model.safetensors", ST_F32, 0);
    write_text("unet/config.json", "{\"sample_size\": 8}");
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(root, "unet", &w, &err), 0, "%s", err.msg);
    cr_assert(strstr(sd_weights_where(w), "unet/diffusion_pytorch_model.safetensors"));
    cr_assert(strstr(sd_weights_config_json(w), "sample_size"));
    cr_assert_eq(sd_weights_count(w), 2);
    cr_assert_str_eq(sd_weights_name(w, 0), "a.weight");
    float a[6];
    int64_t s[2] = {2, 3};
    cr_assert_eq(sd_weights_read_f32(w, "a.weight", 2, s, a, &err), 0, "%s", err.msg);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(a[i], (float)i);
    /* wrong shape, missing tensor: named */
    int64_t bad[2] = {3, 2};
    cr_assert_eq(sd_weights_read_f32(w, "a.weight", 2, bad, a, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "a.weight") && strstr(err.msg, "(2, 3)") &&
              strstr(err.msg, "(3, 2)"), "%s", err.msg);
    cr_assert_eq(sd_weights_read_f32(w, "c.weight", 2, s, a, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "c.weight") && strstr(err.msg, "missing"), "%s", err.msg);
    sd_weights_close(w);
}

Test(sd_weights, takes_the_fp16_variant_and_the_component_folder_itself) {
    write_weights("vae", "diffusion_pytorch_model.fp16.safetensors", ST_F16, 0);
    SdWeights *w = NULL;
    Err err = {0};
    char *dir = xasprintf("%s/vae", root);
    cr_assert_eq(sd_weights_open(dir, "vae", &w, &err), 0, "%s", err.msg);
    float b[4];
    int64_t s[1] = {4};
    cr_assert_eq(sd_weights_read_f32(w, "b.bias", 1, s, b, &err), 0, "%s", err.msg);
    cr_assert_eq(b[2], 12.0f);
    cr_assert_null(sd_weights_config_json(w));
    sd_weights_close(w);
    free(dir);
}

Test(sd_weights, joins_shards_listed_by_an_index) {
    /* two shards, each holding one of the tensors under its own name */
    char *d = xasprintf("%s/unet", root);
    mkdir(d, 0700);
    Err err = {0};
    const char *names[2] = {"a.weight", "b.bias"};
    for (int k = 0; k < 2; k++) {
        float v[4] = {1, 2, 3, (float)k};
        int64_t s[1] = {4};
        SafeTensorsWriter *w = safetensors_writer_new();
        cr_assert_eq(safetensors_writer_add(w, names[k], ST_F32, 1, s, v, &err), 0);
        char *p = xasprintf("%s/part-%d.safetensors", d, k);
        cr_assert_eq(safetensors_writer_save(w, p, &err), 0);
        safetensors_writer_free(w);
        free(p);
    }
    write_text("unet/diffusion_pytorch_model.safetensors.index.json",
               "{\"metadata\": {}, \"weight_map\": {\"a.weight\": \"part-0.safetensors\", "
               "\"b.bias\": \"part-1.safetensors\"}}");
    SdWeights *w = NULL;
    cr_assert_eq(sd_weights_open(root, "unet", &w, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_count(w), 2);
    float v[4];
    int64_t s[1] = {4};
    cr_assert_eq(sd_weights_read_f32(w, "b.bias", 1, s, v, &err), 0, "%s", err.msg);
    cr_assert_eq(v[3], 1.0f);
    sd_weights_close(w);
    /* a shard outside the folder is refused */
    write_text("unet/diffusion_pytorch_model.safetensors.index.json",
               "{\"weight_map\": {\"a.weight\": \"../../etc/passwd\"}}");
    cr_assert_eq(sd_weights_open(root, "unet", &w, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "a.weight"), "%s", err.msg);
    free(d);
}

Test(sd_weights, refuses_nan_missing_files_and_truncated_files) {
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(root, "unet", &w, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "unet") && strstr(err.msg, "safetensors"), "%s", err.msg);
    write_weights("unet", "diffusion_pytorch_model.safetensors", ST_F32, NAN);
    cr_assert_eq(sd_weights_open(root, "unet", &w, &err), 0, "%s", err.msg);
    float b[4];
    int64_t s[1] = {4};
    cr_assert_eq(sd_weights_read_f32(w, "b.bias", 1, s, b, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "b.bias") && strstr(err.msg, "non-finite"), "%s", err.msg);
    sd_weights_close(w);
    char *p = xasprintf("%s/unet/diffusion_pytorch_model.safetensors", root);
    cr_assert_eq(truncate(p, 40), 0);
    cr_assert_neq(sd_weights_open(root, "unet", &w, &err), 0);
    cr_assert_null(w);
    cr_assert(strstr(err.msg, "diffusion_pytorch_model.safetensors"), "%s", err.msg);
    free(p);
}
