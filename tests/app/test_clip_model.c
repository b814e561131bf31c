/* test_clip_model — a small random CLIP (tests/clip/make_fixtures.py) gives open_clip's
 * image embeddings, patch tokens and text embeddings within 1e-4, loaded from OpenCLIP
 * names (f32, open_clip_config.json, bpe .gz) and from Hugging Face names (bf16,
 * config.json, vocab.json + merges.txt; transformers' CLIPModel agreed with open_clip on it
 * when the fixtures were made). Broken folders give errors naming the file and tensor. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "clip.h"
#include "fmt_safetensors.h"
#include "support.h"
#include "support_fixtures.h"

#define FIX "tests/fixtures/clip/"
#define TOL 1e-4f

static SafeTensors *ref;

static void open_ref(void) { ref = support_st_open(FIX "tiny_ref.safetensors"); }

static void close_ref(void) { safetensors_close(ref); }

TestSuite(clip_model, .init = open_ref, .fini = close_ref);

static void check_model(const char *dir, ClipLayout layout, const char *config_source) {
    Err err = {0};
    ClipModel *m = clip_model_load(dir, &err);
    cr_assert(m, "%s", err.msg);
    cr_assert_eq(clip_model_layout(m), layout);
    cr_assert_str_eq(clip_model_config_source(m), config_source);
    const ClipConfig *c = clip_model_config(m);
    cr_assert_eq(c->embed_dim, 16);
    cr_assert_eq(c->image_size, 32);
    cr_assert_eq(c->patch_size, 8);
    cr_assert_eq(c->vision_width, 32);
    cr_assert_eq(c->vision_layers, 2);
    cr_assert_eq(c->vision_heads, 2);
    cr_assert_eq(c->vision_mlp, 128);
    cr_assert_eq(c->text_width, 8);
    cr_assert_eq(c->text_heads, 2);
    cr_assert_eq(c->text_layers, 2);
    cr_assert_eq(c->context_length, 77);
    cr_assert_eq(c->vocab_size, 49408);
    cr_assert_eq(c->quick_gelu, 0);
    cr_assert_eq(clip_model_n_patches(m), 16);

    int64_t n_px, n_emb, n_tok, n_txt;
    const float *pixels = support_st_f32(ref, "pixels", &n_px);
    const float *want_img = support_st_f32(ref, "image_embeds", &n_emb);
    const float *want_tok = support_st_f32(ref, "image_tokens", &n_tok);
    const float *want_txt = support_st_f32(ref, "text_embeds", &n_txt);
    int n_img = (int)(n_emb / 16), n_text = (int)(n_txt / 16);
    cr_assert_eq(n_img, 3);
    float *emb = xcalloc((size_t)n_emb, sizeof(float));
    float *tok = xcalloc((size_t)n_tok, sizeof(float));
    cr_assert_eq(clip_model_encode_pixels(m, pixels, n_img, emb, tok, &err), 0, "%s", err.msg);
    support_assert_close(emb, want_img, n_emb, TOL, 0, "image embeddings");
    support_assert_close(tok, want_tok, n_tok, TOL, 0, "patch tokens");
    /* without tokens, and one image at a time: the same pooled embeddings */
    float one[16];
    for (int i = 0; i < n_img; i++) {
        cr_assert_eq(clip_model_encode_pixels(m, pixels + (size_t)i * 3 * 32 * 32, 1, one, NULL,
                                              &err), 0);
        support_assert_close(one, want_img + i * 16, 16, TOL, 0, "single image");
    }

    /* texts: from the reference ids, then from the strings through our tokenizer */
    const StTensor *ids = safetensors_find(ref, "ids");
    cr_assert_eq(ids->dtype, ST_I32);
    float *txt = xcalloc((size_t)n_txt, sizeof(float));
    cr_assert_eq(clip_model_encode_ids(m, ids->data, n_text, txt, &err), 0, "%s", err.msg);
    support_assert_close(txt, want_txt, n_txt, TOL, 0, "text embeddings from ids");
    json_t *texts = json_loads(safetensors_metadata(ref, "texts"), 0, NULL);
    cr_assert_eq(json_array_size(texts), (size_t)n_text);
    const char **strs = xcalloc((size_t)n_text, sizeof(char *));
    for (int i = 0; i < n_text; i++)
        strs[i] = json_string_value(json_array_get(texts, (size_t)i));
    memset(txt, 0, (size_t)n_txt * sizeof(float));
    cr_assert_eq(clip_model_encode_texts(m, strs, n_text, txt, &err), 0, "%s", err.msg);
    support_assert_close(txt, want_txt, n_txt, TOL, 0, "text embeddings from strings");

    /* image files end to end: our decoding + preprocessing + model (PNG: exact pixels) */
    json_t *images = json_loads(safetensors_metadata(ref, "images"), 0, NULL);
    char **paths = xcalloc((size_t)n_img, sizeof(char *));
    for (int i = 0; i < n_img; i++)
        paths[i] = xasprintf(FIX "images/%s", json_string_value(json_array_get(images, (size_t)i)));
    memset(emb, 0, (size_t)n_emb * sizeof(float));
    cr_assert_eq(clip_model_encode_image_files(m, (const char *const *)paths, n_img,
                                               CLIP_RESIZE_SHORTEST, emb, NULL, &err), 0, "%s",
                 err.msg);
    support_assert_close(emb, want_img, n_emb, TOL, 0, "image files");
    for (int i = 0; i < n_img; i++)
        free(paths[i]);
    free(paths);
    json_decref(images);
    json_decref(texts);
    free(strs);
    free(txt);
    free(tok);
    free(emb);
    clip_model_free(m);
}

Test(clip_model, openclip_layout_matches_open_clip) {
    check_model(FIX "tiny_openclip", CLIP_LAYOUT_OPENCLIP, "open_clip_config.json");
}

Test(clip_model, hf_layout_bf16_matches_open_clip) {
    check_model(FIX "tiny_hf", CLIP_LAYOUT_HF, "config.json");
}

Test(clip_model, threads_give_the_same_embeddings) {
    Err err = {0};
    int64_t n_px, n_emb;
    const float *pixels = support_st_f32(ref, "pixels", &n_px);
    support_st_f32(ref, "image_embeds", &n_emb);
    float out[2][48];
    const char *texts[2] = {"a photo of a cat", "two dogs"};
    float txt[2][32];
    for (int i = 0; i < 2; i++) { /* a CPU backend of 1 thread, then of 3 */
        Backend *be = NULL;
        BackendConfig cfg = {i ? 3 : 1, 0};
        cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0, "%s", err.msg);
        ClipModel *m = NULL;
        cr_assert_eq(clip_model_open(FIX "tiny_openclip", CLIP_WEIGHTS_AUTO, be, &m, &err), 0,
                     "%s", err.msg);
        cr_assert_eq(clip_model_backend(m), be);
        cr_assert_eq(clip_model_encode_pixels(m, pixels, 3, out[i], NULL, &err), 0);
        cr_assert_eq(clip_model_encode_texts(m, texts, 2, txt[i], &err), 0);
        clip_model_free(m);
        backend_close(be);
    }
    cr_assert_eq(memcmp(out[0], out[1], sizeof out[0]), 0, "images: 3 threads vs 1 differ");
    cr_assert_eq(memcmp(txt[0], txt[1], sizeof txt[0]), 0, "texts: 3 threads vs 1 differ");
}

/* ---- broken folders ------------------------------------------------------------------------ */

static char tmp[64];

static void mk_tmp(void) {
    snprintf(tmp, sizeof tmp, "/tmp/easel-clip-XXXXXX");
    cr_assert(mkdtemp(tmp));
    char *cmd = xasprintf("cp " FIX "tiny_openclip/open_clip_config.json " FIX
                          "tiny_openclip/bpe_simple_vocab_16e6.txt.gz '%s'/", tmp);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
}

static void rm_tmp(void) {
    char *cmd = xasprintf("rm -rf '%s'", tmp);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
}

/* Rewrite the tiny OpenCLIP weights into TMP, dropping DROP and giving RESHAPE a wrong
 * shape (NULL: neither). */
static void write_variant(const char *drop, const char *reshape) {
    Err err = {0};
    SafeTensors *st = safetensors_open(FIX "tiny_openclip/open_clip_model.safetensors", &err);
    cr_assert(st, "%s", err.msg);
    SafeTensorsWriter *w = safetensors_writer_new();
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const StTensor *t = safetensors_at(st, i);
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        int64_t shape[ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        int nd = t->n_dim;
        if (reshape && strcmp(t->name, reshape) == 0) { /* same bytes, rows and columns swapped */
            ASSERT(nd == 2);
            int64_t a = shape[0];
            shape[0] = shape[1];
            shape[1] = a;
        }
        cr_assert_eq(safetensors_writer_add(w, t->name, t->dtype, nd, shape, t->data, &err), 0);
    }
    char *out = xasprintf("%s/open_clip_model.safetensors", tmp);
    cr_assert_eq(safetensors_writer_save(w, out, &err), 0, "%s", err.msg);
    free(out);
    safetensors_writer_free(w);
    safetensors_close(st);
}

/* Rewrite the tiny OpenCLIP weights into TMP with element IDX of tensor NAME set to V. */
static void write_poisoned(const char *name, int64_t idx, float v) {
    Err err = {0};
    SafeTensors *st = safetensors_open(FIX "tiny_openclip/open_clip_model.safetensors", &err);
    cr_assert(st, "%s", err.msg);
    SafeTensorsWriter *w = safetensors_writer_new();
    float *copy = NULL;
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const StTensor *t = safetensors_at(st, i);
        const void *data = t->data;
        StDtype dt = t->dtype;
        if (strcmp(t->name, name) == 0) {
            cr_assert(idx < t->n_elem);
            copy = xmalloc((size_t)t->n_elem * sizeof(float));
            cr_assert_eq(safetensors_read_f32(st, t, copy, (size_t)t->n_elem, &err), 0);
            copy[idx] = v;
            data = copy;
            dt = ST_F32;
        }
        cr_assert_eq(safetensors_writer_add(w, t->name, dt, t->n_dim, t->shape, data, &err), 0);
    }
    cr_assert(copy, "no tensor %s", name);
    char *out = xasprintf("%s/open_clip_model.safetensors", tmp);
    cr_assert_eq(safetensors_writer_save(w, out, &err), 0, "%s", err.msg);
    free(out);
    free(copy);
    safetensors_writer_free(w);
    safetensors_close(st);
}

static void expect_fail(const char *path, int code, const char *w1, const char *w2) {
    Err err = {0};
    ClipModel *m = clip_model_load(path, &err);
    cr_assert_null(m, "%s loaded", path);
    cr_assert_eq(err.code, code, "code %d: %s", err.code, err.msg);
    if (w1)
        cr_assert(strstr(err.msg, w1), "message lacks '%s': %s", w1, err.msg);
    if (w2)
        cr_assert(strstr(err.msg, w2), "message lacks '%s': %s", w2, err.msg);
}

Test(clip_model, missing_tensor_named, .init = mk_tmp, .fini = rm_tmp) {
    write_variant("visual.transformer.resblocks.1.attn.in_proj_weight", NULL);
    expect_fail(tmp, ERR_FORMAT, "visual.transformer.resblocks.1.attn.in_proj_weight", "missing");
    write_variant("text_projection", NULL);
    expect_fail(tmp, ERR_FORMAT, "text_projection", "open_clip_model.safetensors");
}

Test(clip_model, wrong_shape_named, .init = mk_tmp, .fini = rm_tmp) {
    write_variant(NULL, "transformer.resblocks.0.mlp.c_fc.weight");
    expect_fail(tmp, ERR_FORMAT, "transformer.resblocks.0.mlp.c_fc.weight", "[8, 32]");
}

Test(clip_model, truncated_and_not_safetensors, .init = mk_tmp, .fini = rm_tmp) {
    char *cmd = xasprintf("head -c -1000 " FIX "tiny_openclip/open_clip_model.safetensors > "
                          "'%s/open_clip_model.safetensors'", tmp);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    expect_fail(tmp, ERR_FORMAT, "truncated", "open_clip_model.safetensors");
    cmd = xasprintf("echo 'this is not a model' > '%s/open_clip_model.safetensors'", tmp);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    expect_fail(tmp, ERR_FORMAT, "not a safetensors file", NULL);
    cmd = xasprintf("rm '%s/open_clip_model.safetensors' && touch '%s/pytorch_model.bin'", tmp,
                    tmp);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    expect_fail(tmp, ERR_FORMAT, "pytorch_model.bin", "safetensors");
    expect_fail("/nonexistent/model", ERR_NOTFOUND, "/nonexistent/model", NULL);
}

Test(clip_model, no_tokenizer_or_config, .init = mk_tmp, .fini = rm_tmp) {
    write_variant(NULL, NULL);
    char *gz = xasprintf("%s/bpe_simple_vocab_16e6.txt.gz", tmp);
    cr_assert_eq(unlink(gz), 0);
    expect_fail(tmp, ERR_NOTFOUND, "vocab.json", NULL);
    /* tokenizer back, config gone: heads cannot come from 32-wide shapes */
    char *cmd = xasprintf("cp " FIX "tiny_openclip/bpe_simple_vocab_16e6.txt.gz '%s'/ && rm "
                          "'%s/open_clip_config.json'", tmp, tmp);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    expect_fail(tmp, ERR_FORMAT, "heads", "open_clip_config.json");
    free(gz);
}

Test(clip_model, config_disagreeing_with_weights, .init = mk_tmp, .fini = rm_tmp) {
    write_variant(NULL, NULL);
    char *cfg = xasprintf("%s/open_clip_config.json", tmp);
    FILE *f = fopen(cfg, "w");
    fputs("{\"model_cfg\": {\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 32, "
          "\"patch_size\": 8, \"width\": 32, \"layers\": 1, \"head_width\": 16}, "
          "\"text_cfg\": {\"width\": 8, \"heads\": 2, \"layers\": 2}}}", f);
    fclose(f);
    expect_fail(tmp, ERR_FORMAT, "visual.transformer.resblocks.1.", "beyond");
    f = fopen(cfg, "w");
    fputs("{\"model_cfg\": {\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 32, "
          "\"patch_size\": 16, \"width\": 32, \"layers\": 2, \"head_width\": 16}, "
          "\"text_cfg\": {\"width\": 8, \"heads\": 2, \"layers\": 2}}}", f);
    fclose(f);
    expect_fail(tmp, ERR_FORMAT, "visual.conv1.weight", "[32, 3, 16, 16]");
    free(cfg);
}

/* A NaN or an infinity anywhere in the weights is refused with the tensor's name: before,
 * such a model loaded and `easel embed` printed nan with exit status 0. */
Test(clip_model, nonfinite_weights_refused, .init = mk_tmp, .fini = rm_tmp) {
    write_poisoned("visual.transformer.resblocks.1.mlp.c_fc.weight", 5, NAN);
    expect_fail(tmp, ERR_FORMAT, "visual.transformer.resblocks.1.mlp.c_fc.weight", "NaN");
    write_poisoned("text_projection", 0, -INFINITY);
    expect_fail(tmp, ERR_FORMAT, "'text_projection'", "-inf");
    write_poisoned("positional_embedding", 3, INFINITY);
    expect_fail(tmp, ERR_FORMAT, "positional_embedding", "+inf at element 3");
    /* the CLI: `models add` refuses it, `embed` with the path fails instead of printing nan */
    char easel[4096], cwd[4096], *out, *err;
    support_easel_path(easel, sizeof easel);
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    write_poisoned("visual.proj", 2, NAN);
    cr_assert_eq(support_run(tmp, &out, &err, "'%s' --db e.db init", easel), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(support_run(tmp, &out, &err, "'%s' --db e.db models add clip . --name bad",
                             easel), 1, "%s", out);
    cr_assert(strstr(err, "visual.proj") && strstr(err, "NaN"), "%s", err);
    free(out);
    free(err);
    cr_assert_neq(support_run(tmp, &out, &err, "'%s' --db e.db embed --encoder clip:. --image "
                              "%s/" FIX "images/rgb_50x37.png", easel, cwd), 0, "%s", out);
    cr_assert(strstr(err, "visual.proj") && !strstr(out, "nan"), "%s%s", out, err);
    free(out);
    free(err);
}
