/* test_sd_text — SD and SDXL text conditioning against diffusers' encode_prompt (fixtures from
 * tests/gen/make_sdtext_fixtures.py: tiny random CLIPTextModel / CLIPTextModelWithProjection
 * in SD 1.x-, 2.x- and SDXL-like diffusers folders, and one as transformers 5 saves it): the
 * token ids (pad "<|endoftext|>" or "!", truncation), prompt and negative embeds, SDXL's
 * pooled outputs, its zeroed empty negative, clip_skip and the add_time_ids, within 1e-5 on
 * the CPU engine; and the errors of broken folders. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "sd_text.h"

#define FIX "tests/gen/fixtures/sdtext/"

static CpuPool *pool, *prev_pool;

static void setup(void) {
    Err err = {0};
    pool = backend_cpu_pool_new(2, &err);
    cr_assert(pool, "%s", err.msg);
    prev_pool = backend_cpu_use(pool);
}

static void teardown(void) {
    backend_cpu_use(prev_pool);
    backend_cpu_pool_free(pool);
}

TestSuite(sd_text, .init = setup, .fini = teardown);

static json_t *cases(void) {
    json_error_t e;
    json_t *j = json_load_file(FIX "cases.json", 0, &e);
    cr_assert(j, FIX "cases.json: line %d: %s (make it with tests/gen/make_sdtext_fixtures.py)",
              e.line, e.text);
    return j;
}

/* The .f32 file of fixture entry W, its element count checked against N. */
static float *load_f32(json_t *w, size_t n) {
    const char *name = json_string_value(json_object_get(w, "file"));
    char *path = xasprintf(FIX "%s", name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s: cannot open", path);
    float *v = xmalloc(n * sizeof(float) + 1);
    size_t got = fread(v, sizeof(float), n + 1, f);
    fclose(f);
    cr_assert_eq(got, n, "%s: %zu values, expected %zu", path, got, n);
    free(path);
    return v;
}

/* |got - want| <= 1e-5 · max(1, max |want|). */
static void close_to(const char *what, int k, const float *got, const float *want, size_t n) {
    double scale = 1;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs((double)got[i] - want[i]) <= 1e-5 * scale,
                  "case %d %s [%zu]: %.8g, diffusers %.8g", k, what, i, (double)got[i],
                  (double)want[i]);
}

static SdText *load(const char *dir) {
    Err err = {0};
    SdText *t = NULL;
    int rc = sd_text_load(dir, CLIP_WEIGHTS_AUTO, &t, &err);
    cr_assert_eq(rc, 0, "%s: %s", dir, err.msg);
    return t;
}

/* The fixture's cases of PIPELINE ("sd", "sdxl") on the model folder DIR. */
static void run_cases(const char *pipeline, const char *dir) {
    int xl = strcmp(pipeline, "sdxl") == 0;
    SdText *t = load(dir);
    cr_assert_eq(sd_text_kind(t), xl ? SD_TEXT_SDXL : SD_TEXT_SD);
    cr_assert_eq(sd_text_force_zeros(t), xl); /* SDXL's model_index.json says true */
    int T = sd_text_context(t), D = sd_text_width(t), P = sd_text_pooled_width(t);
    cr_assert_eq(T, 77);
    cr_assert_eq(D, xl ? 64 : 32);
    cr_assert_eq(P, xl ? 24 : 0);
    json_t *root = cases();
    json_t *arr = json_object_get(root, "cases");
    int seen = 0;
    for (size_t k = 0; k < json_array_size(arr); k++) {
        json_t *c = json_array_get(arr, k);
        if (strcmp(json_string_value(json_object_get(c, "pipeline")), pipeline) != 0)
            continue;
        seen++;
        const char *prompt = json_string_value(json_object_get(c, "prompt"));
        const char *neg = json_string_value(json_object_get(c, "negative")); /* NULL: null */
        int skip = (int)json_integer_value(json_object_get(c, "clip_skip"));
        /* the ids of the last encoder (SDXL: tokenizer_2, which pads with "!") */
        int32_t ids[77];
        sd_text_tokenize(t, xl ? 1 : 0, prompt, ids);
        json_t *want_ids = json_object_get(c, "ids");
        cr_assert_eq(json_array_size(want_ids), 77);
        for (int i = 0; i < 77; i++)
            cr_assert_eq(ids[i], json_integer_value(json_array_get(want_ids, (size_t)i)),
                         "case %zu \"%s\": id %d is %d, transformers %lld", k, prompt, i, ids[i],
                         (long long)json_integer_value(json_array_get(want_ids, (size_t)i)));
        size_t TD = (size_t)T * (size_t)D;
        float *pe = xmalloc(TD * sizeof(float)), *ne = xmalloc(TD * sizeof(float));
        float *pp = xl ? xmalloc((size_t)P * sizeof(float)) : NULL;
        float *np = xl ? xmalloc((size_t)P * sizeof(float)) : NULL;
        Err err = {0};
        int rc = sd_text_encode_prompt(t, prompt, neg, 1, skip, pe, ne, pp, np, &err);
        cr_assert_eq(rc, 0, "case %zu: %s", k, err.msg);
        float *w = load_f32(json_object_get(c, "prompt_embeds"), TD);
        close_to("prompt_embeds", (int)k, pe, w, TD);
        free(w);
        w = load_f32(json_object_get(c, "negative_prompt_embeds"), TD);
        close_to("negative_prompt_embeds", (int)k, ne, w, TD);
        free(w);
        if (xl) {
            w = load_f32(json_object_get(c, "pooled_prompt_embeds"), (size_t)P);
            close_to("pooled_prompt_embeds", (int)k, pp, w, (size_t)P);
            free(w);
            w = load_f32(json_object_get(c, "negative_pooled_prompt_embeds"), (size_t)P);
            close_to("negative_pooled_prompt_embeds", (int)k, np, w, (size_t)P);
            if (!neg) /* force_zeros_for_empty_prompt */
                for (int i = 0; i < P; i++)
                    cr_assert_eq(np[i], 0.0f);
            free(w);
            json_t *o = json_object_get(c, "original_size"), *cr = json_object_get(c,
                                                                                  "crop_top_left");
            json_t *tg = json_object_get(c, "target_size"), *want = json_object_get(c,
                                                                                   "add_time_ids");
            float tid[6];
            sd_text_add_time_ids((int)json_integer_value(json_array_get(o, 0)),
                                 (int)json_integer_value(json_array_get(o, 1)),
                                 (int)json_integer_value(json_array_get(cr, 0)),
                                 (int)json_integer_value(json_array_get(cr, 1)),
                                 (int)json_integer_value(json_array_get(tg, 0)),
                                 (int)json_integer_value(json_array_get(tg, 1)), tid);
            for (int i = 0; i < 6; i++)
                cr_assert_eq(tid[i], (float)json_number_value(json_array_get(want, (size_t)i)),
                             "case %zu add_time_ids[%d]", k, i);
        }
        /* without guidance: the same prompt embeds, negatives untouched */
        float *pe2 = xmalloc(TD * sizeof(float));
        rc = sd_text_encode_prompt(t, prompt, neg, 0, skip, pe2, NULL, xl ? np : NULL, NULL,
                                   &err);
        cr_assert_eq(rc, 0, "case %zu: %s", k, err.msg);
        close_to("prompt_embeds without guidance", (int)k, pe2, pe, TD);
        free(pe2);
        free(pe);
        free(ne);
        free(pp);
        free(np);
    }
    cr_assert_geq(seen, 3, "%d %s cases in the fixture", seen, pipeline);
    json_decref(root);
    sd_text_free(t);
}

Test(sd_text, sd_matches_diffusers) { run_cases("sd", FIX "sd"); }

Test(sd_text, sdxl_matches_diffusers) { run_cases("sdxl", FIX "sdxl"); }

/* SD 2.x-like: GELU, padded with "!", which is also a token of its own inside prompts. */
Test(sd_text, sd2_matches_diffusers) { run_cases("sd2", FIX "sd2"); }

/* The folder as diffusers + transformers 5 save it: bare tensor names, tokenizer.json. */
Test(sd_text, sd_as_transformers_5_saves_it) { run_cases("sd", FIX "sd_saved"); }

Test(sd_text, sdxl_first_tokenizer_pads_with_end_token) {
    SdText *t = load(FIX "sdxl");
    int32_t a[77], b[77];
    int n = sd_text_tokenize(t, 0, "a cat", a);
    sd_text_tokenize(t, 1, "a cat", b);
    int32_t eot = clip_tokenizer_eot(clip_model_tokenizer(sd_text_encoder(t, 0)));
    for (int i = 0; i < 77; i++) {
        cr_assert_eq(a[i], i < n ? b[i] : eot, "position %d", i);
        cr_assert_eq(b[i], i < n ? a[i] : 0, "position %d", i);
    }
    sd_text_free(t);
}

Test(sd_text, text_only_model_refuses_vision_and_projection) {
    SdText *t = load(FIX "sd");
    const ClipModel *m = sd_text_encoder(t, 0);
    cr_assert(clip_model_text_only(m));
    cr_assert_eq(clip_model_config(m)->embed_dim, 0); /* a CLIPTextModel has no projection */
    Err err = {0};
    float px[1], emb[4];
    cr_assert_eq(clip_model_encode_pixels(m, px, 1, emb, NULL, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "no vision tower"), "%s", err.msg);
    int32_t ids[77];
    sd_text_tokenize(t, 0, "a cat", ids);
    err = (Err){0};
    cr_assert_eq(clip_model_encode_ids(m, ids, 1, emb, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "no text projection"), "%s", err.msg);
    /* clip_skip past the layers */
    float *pe = xmalloc(77 * 32 * sizeof(float));
    err = (Err){0};
    cr_assert_eq(sd_text_encode_prompt(t, "a", NULL, 0, 4, pe, NULL, NULL, NULL, &err),
                 ERR_USAGE);
    cr_assert(strstr(err.msg, "clip_skip 4"), "%s", err.msg);
    free(pe);
    sd_text_free(t);
}

/* A copy of fixture folder NAME in a new temp folder; the caller removes DIR. */
static void copy_fixture(const char *name, char *dir, size_t n) {
    snprintf(dir, n, "/tmp/easel-sdtext-XXXXXX");
    cr_assert(mkdtemp(dir));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp -r " FIX "%s/. '%s'", name, dir);
    cr_assert_eq(system(cmd), 0);
}

static void remove_dir(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void expect_load_error(const char *dir, int code, const char *needle) {
    Err err = {0};
    SdText *t = (SdText *)1;
    cr_assert_eq(sd_text_load(dir, CLIP_WEIGHTS_AUTO, &t, &err), code, "%s", err.msg);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, needle), "'%s' does not say '%s'", err.msg, needle);
}

Test(sd_text, broken_folders_say_what_is_wrong) {
    char dir[64], cmd[600];
    copy_fixture("sdxl", dir, sizeof dir);
    /* no tokenizer_2/ */
    snprintf(cmd, sizeof cmd, "mv '%s/tokenizer_2' '%s/tok2'", dir, dir);
    cr_assert_eq(system(cmd), 0);
    expect_load_error(dir, ERR_NOTFOUND, "no tokenizer_2/ folder");
    /* a pad token the vocabulary lacks */
    snprintf(cmd, sizeof cmd, "mv '%s/tok2' '%s/tokenizer_2' && sed -i 's/\"pad_token\": \"!\"/"
             "\"pad_token\": \"<pad>\"/' '%s/tokenizer_2/tokenizer_config.json'", dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    expect_load_error(dir, ERR_FORMAT, "pad_token \"<pad>\" is not in");
    remove_dir(dir);

    /* SDXL's second encoder without its projection: the first encoder in its place */
    copy_fixture("sdxl", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "rm -r '%s/text_encoder_2' && cp -r '%s/text_encoder' "
             "'%s/text_encoder_2'", dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    expect_load_error(dir, ERR_FORMAT, "no text_projection.weight");
    remove_dir(dir);

    /* no weights */
    copy_fixture("sd", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "rm '%s/text_encoder/model.safetensors'", dir);
    cr_assert_eq(system(cmd), 0);
    expect_load_error(dir, ERR_NOTFOUND, "no text_encoder weights");
    /* shards are read (sd_weights), and an index that lists none is named */
    snprintf(cmd, sizeof cmd, "echo '{}' > '%s/text_encoder/model.safetensors.index.json'", dir);
    cr_assert_eq(system(cmd), 0);
    expect_load_error(dir, ERR_FORMAT, "model.safetensors.index.json");
    remove_dir(dir);

    /* broken JSON: the file and line */
    copy_fixture("sd", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "%s/tokenizer/tokenizer_config.json", dir);
    FILE *f = fopen(cmd, "w");
    cr_assert(f);
    fputs("{\n\"pad_token\": ", f);
    fclose(f);
    expect_load_error(dir, ERR_FORMAT, "tokenizer/tokenizer_config.json:2:");
    remove_dir(dir);
    copy_fixture("sdxl", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "echo '[' > '%s/model_index.json'", dir);
    cr_assert_eq(system(cmd), 0);
    expect_load_error(dir, ERR_FORMAT, "model_index.json:");
    remove_dir(dir);

    /* an activation the CLIP code does not have */
    copy_fixture("sd", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"quick_gelu\"/\"relu\"/' "
             "'%s/text_encoder/config.json'", dir);
    cr_assert_eq(system(cmd), 0);
    expect_load_error(dir, ERR_FORMAT, "hidden_act \"relu\" not supported");
    remove_dir(dir);

    /* a tokenizer.json that is not CLIP's BPE */
    copy_fixture("sd_saved", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"end_of_word_suffix\": \"<\\/w>\"/"
             "\"end_of_word_suffix\": null/' '%s/tokenizer/tokenizer.json'", dir);
    cr_assert_eq(system(cmd), 0);
    expect_load_error(dir, ERR_FORMAT, "not a CLIP tokenizer");
    remove_dir(dir);

    expect_load_error("/nonexistent/sd", ERR_NOTFOUND, "no such model folder");
}

/* bf16 resident weights (half the memory of SDXL's 2.8 GB of text encoders): the same
 * conditioning to bf16's precision. */
Test(sd_text, bf16_weights_close_to_f32) {
    SdText *a = load(FIX "sdxl"), *b = NULL;
    Err err = {0};
    cr_assert_eq(sd_text_load(FIX "sdxl", CLIP_WEIGHTS_BF16, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(clip_model_weights(sd_text_encoder(b, 1)), CLIP_WEIGHTS_BF16);
    size_t TD = 77 * 64;
    float *ea = xmalloc(TD * sizeof(float)), *eb = xmalloc(TD * sizeof(float));
    float pa[24], pb[24];
    const char *prompt = "a photo of an astronaut riding a horse";
    cr_assert_eq(sd_text_encode(a, &prompt, 1, 0, ea, pa, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_text_encode(b, &prompt, 1, 0, eb, pb, &err), 0, "%s", err.msg);
    double worst = 0, scale = 1;
    for (size_t i = 0; i < TD; i++) {
        scale = fmax(scale, fabs(ea[i]));
        worst = fmax(worst, fabs(ea[i] - eb[i]));
    }
    cr_assert(worst > 0, "bf16 gave exactly the f32 numbers: not bf16");
    cr_assert(worst <= 3e-2 * scale, "bf16 off by %g (scale %g)", worst, scale);
    for (int i = 0; i < 24; i++)
        cr_assert(fabs(pa[i] - pb[i]) <= 3e-2 * fmax(1, fabs(pa[i])), "pooled [%d]", i);
    free(ea);
    free(eb);
    sd_text_free(a);
    sd_text_free(b);
}
