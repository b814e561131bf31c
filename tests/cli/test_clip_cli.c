/* test_clip_cli — `easel models` and `easel embed` run as a user would (bin/easel on the tiny
 * fixture models), the store's models table, and CLIP as a reward-training encoder: outputs
 * equal open_clip's reference embeddings (tests/fixtures/clip/tiny_ref.safetensors). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "clip_encoder.h"
#include "encoder.h"
#include "fmt_safetensors.h"
#include "store.h"
#include "store_models.h"
#include "support.h"

#define FIX "tests/fixtures/clip/"

static char tmpdir[64];
static char dbpath[128];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "clipcli");
    snprintf(dbpath, sizeof dbpath, "%s/s.db", tmpdir);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(clip_cli, .init = setup, .fini = teardown);

/* bin/easel --db DB ARGS; stdout into *out (caller frees), stderr into *err_out; exit code. */
static int run(const char *args, char **out, char **err_out) {
    return support_run(NULL, out, err_out, "bin/easel --db %s %s", dbpath, args);
}

static const float *ref_tensor(SafeTensors *ref, const char *name) {
    const StTensor *t = safetensors_find(ref, name);
    cr_assert(t);
    return safetensors_f32_view(t);
}

static float max_diff_json(json_t *arr, const float *want, int n) {
    cr_assert_eq(json_array_size(arr), (size_t)n);
    float w = 0;
    for (int i = 0; i < n; i++) {
        float d = fabsf((float)json_number_value(json_array_get(arr, (size_t)i)) - want[i]);
        if (!(d <= w))
            w = d;
    }
    return w;
}

Test(clip_cli, models_add_and_embed_json_match_reference) {
    char *out, *err;
    cr_assert_eq(run("init", &out, &err), 0, "%s", err);
    free(out), free(err);
    cr_assert_eq(run("models add clip " FIX "tiny_openclip --name tiny", &out, &err), 0, "%s",
                 err);
    cr_assert(strstr(out, "registered clip model 'tiny'"), "%s", out);
    free(out), free(err);
    /* the same name again: refused, nothing replaced */
    cr_assert_eq(run("models add clip " FIX "tiny_hf --name tiny", &out, &err), 1);
    cr_assert(strstr(err, "already registered"), "%s", err);
    free(out), free(err);
    /* a broken folder is refused before anything is registered */
    cr_assert_eq(run("models add clip " FIX "images --name broken", &out, &err), 1);
    cr_assert(strstr(err, "safetensors"), "%s", err);
    free(out), free(err);
    cr_assert_eq(run("models list", &out, &err), 0);
    cr_assert(strstr(out, "tiny") && strstr(out, "tiny_openclip") && !strstr(out, "broken"),
              "%s", out);
    free(out), free(err);

    Err e = {0};
    SafeTensors *ref = safetensors_open(FIX "tiny_ref.safetensors", &e);
    cr_assert(ref, "%s", e.msg);
    cr_assert_eq(run("embed --encoder clip:tiny --text 'a photo of a cat' --image " FIX
                     "images/rgb_300x200.png --text \"it's a dog's life\" --image " FIX
                     "images/grey_45x60.png --json --threads 2", &out, &err), 0, "%s", err);
    /* in input order: text 0, image 0, text 5, image 2 of the reference */
    const char *kinds[] = {"text", "image", "text", "image"};
    const float *want[] = {ref_tensor(ref, "text_embeds"), ref_tensor(ref, "image_embeds"),
                           ref_tensor(ref, "text_embeds") + 5 * 16,
                           ref_tensor(ref, "image_embeds") + 2 * 16};
    char *line = out;
    for (int i = 0; i < 4; i++) {
        char *nl = strchr(line, '\n');
        cr_assert(nl, "line %d missing: %s", i, out);
        *nl = 0;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        cr_assert(o, "line %d not JSON: %s", i, line);
        cr_assert_str_eq(json_string_value(json_object_get(o, "kind")), kinds[i]);
        float d = max_diff_json(json_object_get(o, "embedding"), want[i], 16);
        cr_assert_leq(d, 1e-4f, "line %d: max difference %g", i, d);
        json_decref(o);
        line = nl + 1;
    }
    cr_assert_eq(*line, 0);
    free(out), free(err);
    /* a path instead of a name; squash changes a non-square image's embedding */
    cr_assert_eq(run("embed --encoder clip:" FIX "tiny_hf --image " FIX
                     "images/rgb_300x200.png --preprocess squash", &out, &err), 0, "%s", err);
    cr_assert(strncmp(out, "image\t", 6) == 0, "%s", out);
    free(out), free(err);
    /* errors: unknown model, missing image, bad flag */
    cr_assert_eq(run("embed --encoder clip:nope --text x", &out, &err), 1);
    cr_assert(strstr(err, "nope") && strstr(err, "models add"), "%s", err);
    free(out), free(err);
    cr_assert_eq(run("embed --encoder clip:tiny --image /nonexistent.png", &out, &err), 1);
    cr_assert(strstr(err, "/nonexistent.png"), "%s", err);
    free(out), free(err);
    cr_assert_eq(run("embed --encoder clip:tiny --text x --preprocess stretch", &out, &err), 2);
    free(out), free(err);
    cr_assert_eq(run("models remove tiny", &out, &err), 0, "%s", err);
    free(out), free(err);
    cr_assert_eq(run("models remove tiny", &out, &err), 1);
    free(out), free(err);
    safetensors_close(ref);
}

/* --weights bf16 and f32 both run end to end (the fixture's weights are bf16-representable,
 * so the two agree; test_clip_layers checks the rounding on weights that are not). */
Test(clip_cli, embed_weights_option) {
    char *out32, *out16, *err;
    const char *args = "embed --encoder clip:" FIX "tiny_openclip --text 'a photo of a cat' "
                       "--image " FIX "images/rgb_300x200.png --json";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s --weights f32", args);
    cr_assert_eq(run(cmd, &out32, &err), 0, "%s", err);
    free(err);
    snprintf(cmd, sizeof cmd, "%s --weights bf16", args);
    cr_assert_eq(run(cmd, &out16, &err), 0, "%s", err);
    free(err);
    char *l32 = out32, *l16 = out16;
    for (int i = 0; i < 2; i++) {
        char *n32 = strchr(l32, '\n'), *n16 = strchr(l16, '\n');
        cr_assert(n32 && n16);
        *n32 = *n16 = 0;
        json_t *a = json_object_get(json_loads(l32, 0, NULL), "embedding");
        json_t *b = json_object_get(json_loads(l16, 0, NULL), "embedding");
        cr_assert(a && b && json_array_size(a) == 16 && json_array_size(b) == 16);
        double dot = 0, diff = 0;
        for (size_t j = 0; j < 16; j++) {
            double x = json_number_value(json_array_get(a, j)),
                   y = json_number_value(json_array_get(b, j));
            dot += x * y;
            diff += fabs(x - y);
        }
        cr_assert(dot >= 0.99999 && diff < 1e-4, "line %d: cosine %.6f, difference %g", i, dot,
                  diff);
        l32 = n32 + 1, l16 = n16 + 1;
    }
    free(out32), free(out16);
    /* the encoder suffix asks for the same as --weights bf16 */
    cr_assert_eq(run("embed --encoder clip:" FIX "tiny_openclip,bf16 --text 'a photo of a cat'",
                     &out32, &err), 0, "%s", err);
    free(err);
    cr_assert_eq(run("embed --encoder clip:" FIX "tiny_openclip --weights bf16 --text "
                     "'a photo of a cat'", &out16, &err), 0, "%s", err);
    cr_assert_str_eq(out32, out16);
    free(out32), free(out16), free(err);
    cr_assert_eq(run("embed --encoder clip:" FIX "tiny_openclip --text x --weights f16", &out32,
                     &err), 2);
    cr_assert(strstr(err, "--weights is auto, f32 or bf16"), "%s", err);
    free(out32), free(err);
    cr_assert_eq(run("embed --encoder classic --text x --weights bf16", &out32, &err), 2);
    cr_assert(strstr(err, "--weights applies to clip encoders only"), "%s", err);
    free(out32), free(err);
    /* as an encoder, bf16 weights are another name (cache key); options in either order */
    Err e = {0};
    Encoder *enc = clip_encoder_open(FIX "tiny_openclip,bf16,squash", NULL, NULL, &e);
    cr_assert(enc, "%s", e.msg);
    cr_assert_str_eq(enc->name, "clip:" FIX "tiny_openclip,squash,bf16");
    encoder_free(enc);
}

/* --device: the CPU by name, CUDA (on a machine without a GPU: one line, then the CPU), bad
 * names, and the option refused for encoders that do not run on the engine. */
Test(clip_cli, embed_device_option) {
    const char *args = "embed --encoder clip:" FIX "tiny_openclip --text 'a photo of a cat' "
                       "--image " FIX "images/rgb_300x200.png";
    char cmd[512], *cpu, *dflt, *cuda, *err;
    snprintf(cmd, sizeof cmd, "%s --device cpu --threads 2", args);
    cr_assert_eq(run(cmd, &cpu, &err), 0, "%s", err);
    cr_assert_str_eq(err, "", "the CPU asked for by name says nothing");
    free(err);
    snprintf(cmd, sizeof cmd, "%s --threads 1", args); /* default auto */
    cr_assert_eq(run(cmd, &dflt, &err), 0, "%s", err);
    cr_assert_str_eq(err, "", "auto says nothing when it picks the CPU");
    free(err);
    snprintf(cmd, sizeof cmd, "%s --device cuda", args);
    cr_assert_eq(run(cmd, &cuda, &err), 0, "%s", err);
    if (err[0]) { /* no GPU here (or no CUDA in this build): one line, then the CPU's result */
        cr_assert(!strncmp(err, "easel: cuda: ", 13) && strstr(err, "running on the CPU") &&
                  strchr(err, '\n') == err + strlen(err) - 1, "%s", err);
        cr_assert_str_eq(cuda, cpu);
        cr_assert_str_eq(dflt, cpu, "auto on a machine without a GPU is the CPU");
    }
    free(err), free(cpu), free(dflt), free(cuda);
    const char *bad[] = {"tpu", "cuda:", "cuda:x", "cuda:-1", "cuda:256", "CPU"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out;
        snprintf(cmd, sizeof cmd, "%s --device '%s'", args, bad[i]);
        cr_assert_eq(run(cmd, &out, &err), 2, "--device %s", bad[i]);
        cr_assert(strstr(err, "embed: --device: ") && strstr(err, "auto, cpu, cuda or cuda:N"), "%s", err);
        cr_assert_str_eq(out, "");
        free(out), free(err);
    }
    char *out;
    cr_assert_eq(run("embed --encoder classic --text x --device cpu", &out, &err), 2);
    cr_assert(strstr(err, "--device applies to clip encoders only"), "%s", err);
    free(out), free(err);
}

Test(clip_cli, store_models_table) {
    Err e = {0};
    Store *st = store_open(":memory:", &e);
    cr_assert(st, "%s", e.msg);
    cr_assert_eq(store_model_add(st, "clip", "b", "/models/b", "{\"x\":1}", &e), 0, "%s", e.msg);
    cr_assert_eq(store_model_add(st, "clip", "a", "/models/a", NULL, &e), 0);
    cr_assert_eq(store_model_add(st, "clip", "a", "/elsewhere", NULL, &e), ERR_CONFLICT);
    StoreModel m;
    cr_assert_eq(store_model_get(st, "clip", "a", &m, &e), 0);
    cr_assert_str_eq(m.path, "/models/a"); /* not replaced */
    cr_assert_null(m.config);
    store_model_deinit(&m);
    cr_assert_eq(store_model_get(st, "clip", "zz", &m, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "easel models add clip"), "%s", e.msg);
    StoreModel *v;
    int n;
    cr_assert_eq(store_model_list(st, "clip", &v, &n, &e), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0].name, "a");
    cr_assert_str_eq(v[1].config, "{\"x\":1}");
    store_model_list_free(v, n);
    cr_assert_eq(store_model_remove(st, "a", &e), 0);
    cr_assert_eq(store_model_remove(st, "a", &e), ERR_NOTFOUND);
    store_close(st);
}

Test(clip_cli, clip_encoder_for_reward_training) {
    Err e = {0};
    Store *st = store_open(dbpath, &e);
    cr_assert(st, "%s", e.msg);
    cr_assert_eq(store_model_add(st, "clip", "tiny", FIX "tiny_hf", NULL, &e), 0);
    Encoder *enc;
    cr_assert_eq(encoder_open("clip:tiny", st, &enc, &e), 0, "%s", e.msg);
    cr_assert_str_eq(enc->name, "clip:tiny");
    cr_assert_eq(enc->dim_image, 16);
    cr_assert_eq(enc->n_image_tokens, 17);
    cr_assert_eq(enc->dim_text, 16);
    SafeTensors *ref = safetensors_open(FIX "tiny_ref.safetensors", &e);
    cr_assert(ref);
    /* through the cache: computed, stored, then read back the same */
    float *v = NULL;
    cr_assert_eq(encoder_embed_image(enc, st, FIX "images/rgb_300x200.png", NULL, &v, &e), 0,
                 "%s", e.msg);
    const float *want_img = ref_tensor(ref, "image_embeds");
    const float *want_tok = ref_tensor(ref, "image_tokens");
    for (int i = 0; i < 16; i++)
        cr_assert_leq(fabsf(v[i] - want_img[i]), 1e-4f, "pooled[%d]", i);
    for (int i = 0; i < 16 * 16; i++)
        cr_assert_leq(fabsf(v[16 + i] - want_tok[i]), 1e-4f, "token value %d", i);
    float *again = NULL;
    cr_assert_eq(encoder_embed_image(enc, st, FIX "images/rgb_300x200.png", NULL, &again, &e), 0);
    cr_assert(memcmp(v, again, 17 * 16 * sizeof(float)) == 0);
    free(v);
    free(again);
    cr_assert_eq(encoder_embed_text(enc, st, "a photo of a cat", &v, &e), 0, "%s", e.msg);
    const float *want_txt = ref_tensor(ref, "text_embeds");
    for (int i = 0; i < 16; i++)
        cr_assert_leq(fabsf(v[i] - want_txt[i]), 1e-4f, "text[%d]", i);
    free(v);
    encoder_free(enc);
    /* squash is a different encoder name (and cache key); a path works without a store */
    cr_assert_eq(encoder_open("clip:" FIX "tiny_openclip,squash", NULL, &enc, &e), 0, "%s", e.msg);
    cr_assert(strstr(enc->name, ",squash"));
    encoder_free(enc);
    cr_assert_neq(encoder_open("clip:missing-model", st, &enc, &e), 0);
    cr_assert_null(enc);
    cr_assert_eq(e.code, ERR_NOTFOUND);
    safetensors_close(ref);
    store_close(st);
}
