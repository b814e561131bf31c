/* test_clip_layers — what diffusion text conditioning takes from CLIP, against transformers'
 * CLIPTextModelWithProjection / CLIPVisionModelWithProjection with output_hidden_states on
 * the tiny random model (tests/fixtures/clip/tiny_layers.safetensors; open_clip's blocks
 * agreed with them when it was made): every layer's hidden states for all positions, the
 * last hidden state (final LayerNorm), pooled and projected outputs, from both layouts;
 * one state alone (SDXL's penultimate); a batch equal to one-by-one; bf16-resident
 * weights. Tolerance 1e-5, relative above magnitude 1. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "clip.h"
#include "fmt_safetensors.h"
#include "support.h"
#include "support_fixtures.h"

#define FIX "tests/fixtures/clip/"
#define TOL 1e-5f

static SafeTensors *ref;

static void open_ref(void) { ref = support_st_open(FIX "tiny_layers.safetensors"); }

static void close_ref(void) { safetensors_close(ref); }

TestSuite(clip_layers, .init = open_ref, .fini = close_ref);

typedef struct Want {
    const float *hidden, *last, *pooled, *projected;
    int64_t n_hidden, n_last, n_pooled, n_projected;
} Want;

static Want want_of(const char *tower) {
    Want w;
    char n[64];
    snprintf(n, sizeof n, "%s_hidden", tower);
    w.hidden = support_st_f32(ref, n, &w.n_hidden);
    snprintf(n, sizeof n, "%s_last", tower);
    w.last = support_st_f32(ref, n, &w.n_last);
    snprintf(n, sizeof n, "%s_pooled", tower);
    w.pooled = support_st_f32(ref, n, &w.n_pooled);
    snprintf(n, sizeof n, "%s_projected", tower);
    w.projected = support_st_f32(ref, n, &w.n_projected);
    return w;
}

/* One tower of the model in DIR against the reference, every way of asking. */
static void check_tower(const char *dir, int vision) {
    Err err = {0};
    ClipModel *m = clip_model_load(dir, &err);
    cr_assert(m, "%s", err.msg);
    const ClipConfig *c = clip_model_config(m);
    Want w = want_of(vision ? "vision" : "text");
    int L = vision ? c->vision_layers : c->text_layers;
    int C = vision ? c->vision_width : c->text_width;
    int T = vision ? 1 + clip_model_n_patches(m) : c->context_length;
    int n = (int)(w.n_pooled / C);
    cr_assert_eq(w.n_hidden, (int64_t)n * (L + 1) * T * C);
    cr_assert_eq(clip_model_n_states(m, vision, CLIP_ALL_LAYERS), L + 1);
    int64_t n_px;
    const float *pixels = support_st_f32(ref, "pixels", &n_px);
    cr_assert_eq(n_px % (3 * (int64_t)c->image_size * c->image_size), 0, "pixels: %lld floats",
                 (long long)n_px);
    const int32_t *ids = safetensors_find(ref, "ids")->data;
    size_t hs = (size_t)w.n_hidden, st = (size_t)T * C;
    float *hidden = xcalloc(hs, sizeof(float));
    float *pooled = xcalloc((size_t)w.n_pooled, sizeof(float));
    float *proj = xcalloc((size_t)w.n_projected, sizeof(float));
#define FORWARD(o, k) (vision ? clip_model_vision_forward(m, pixels + (size_t)(k) * 3 * 32 * 32, \
                                                          n - (k), o, &err)                     \
                              : clip_model_text_forward(m, ids + (size_t)(k) * 77, n - (k), o,  \
                                                        &err))
    /* all states, pooled, projected in one call */
    ClipOutputs all = {.layer = CLIP_ALL_LAYERS, .hidden = hidden, .pooled = pooled,
                       .projected = proj};
    cr_assert_eq(FORWARD(&all, 0), 0, "%s", err.msg);
    support_assert_close(hidden, w.hidden, w.n_hidden, TOL, 1, "every hidden state");
    support_assert_close(pooled, w.pooled, w.n_pooled, TOL, 1, "pooled");
    support_assert_close(proj, w.projected, w.n_projected, TOL, 1, "projected");
    /* one state alone, by index from either end: SDXL's penultimate, and the last with the
     * final LayerNorm (transformers' last_hidden_state) */
    float *one = xcalloc((size_t)n * st, sizeof(float));
    float *want_one = xcalloc((size_t)n * st, sizeof(float));
    for (int layer = -(L + 1); layer <= L; layer++) {
        int idx = layer < 0 ? L + 1 + layer : layer;
        ClipOutputs o = {.layer = layer, .hidden = one};
        cr_assert_eq(FORWARD(&o, 0), 0, "%s", err.msg);
        for (int b = 0; b < n; b++)
            memcpy(want_one + b * st, w.hidden + ((size_t)b * (L + 1) + idx) * st,
                   st * sizeof(float));
        char what[64];
        snprintf(what, sizeof what, "hidden state %d alone", layer);
        support_assert_close(one, want_one, (int64_t)n * (int64_t)st, TOL, 1, what);
    }
    /* transformers' last_hidden_state: the text tower's has the final LayerNorm, the vision
     * tower's not (post_layernorm is on the pooled output only) */
    ClipOutputs last = {.layer = -1, .final_ln = !vision, .hidden = one};
    cr_assert_eq(FORWARD(&last, 0), 0, "%s", err.msg);
    support_assert_close(one, w.last, w.n_last, TOL, 1, "last_hidden_state");
    /* one at a time gives what the batch gave */
    for (int k = 0; k < n; k++) {
        ClipOutputs o = {.layer = CLIP_ALL_LAYERS, .hidden = hidden, .pooled = pooled,
                         .projected = proj};
        cr_assert_eq(vision ? clip_model_vision_forward(m, pixels + (size_t)k * 3 * 32 * 32, 1,
                                                        &o, &err)
                            : clip_model_text_forward(m, ids + (size_t)k * 77, 1, &o, &err),
                     0);
        support_assert_close(hidden, w.hidden + (size_t)k * (L + 1) * st,
                             (int64_t)(L + 1) * (int64_t)st, TOL, 1, "one by one: hidden");
        support_assert_close(pooled, w.pooled + (size_t)k * C, C, TOL, 1, "one by one: pooled");
        support_assert_close(proj, w.projected + (size_t)k * c->embed_dim, c->embed_dim, TOL, 1,
                             "one by one: projected");
    }
    /* out of range */
    ClipOutputs bad = {.layer = L + 1, .hidden = one};
    cr_assert_eq(FORWARD(&bad, 0), ERR_USAGE);
    cr_assert(strstr(err.msg, "no hidden state"), "%s", err.msg);
    bad.layer = -(L + 2);
    cr_assert_eq(FORWARD(&bad, 0), ERR_USAGE);
#undef FORWARD
    free(one);
    free(want_one);
    free(hidden);
    free(pooled);
    free(proj);
    clip_model_free(m);
}

Test(clip_layers, text_openclip) { check_tower(FIX "tiny_openclip", 0); }
Test(clip_layers, text_hf) { check_tower(FIX "tiny_hf", 0); }
Test(clip_layers, vision_openclip) { check_tower(FIX "tiny_openclip", 1); }
Test(clip_layers, vision_hf) { check_tower(FIX "tiny_hf", 1); }

/* A batch larger than the internal batch of 16, mixed with the embed API. */
Test(clip_layers, batch_of_40_texts_equals_one_by_one) {
    Err err = {0};
    ClipModel *m = clip_model_load(FIX "tiny_openclip", &err);
    cr_assert(m, "%s", err.msg);
    const char *words[] = {"a cat", "a photo of a dog on the beach", "", "lighthouse at dusk",
                           "🎨 &amp; more", "long long long long long long long long"};
    enum { N = 40 };
    const char *texts[N];
    for (int i = 0; i < N; i++)
        texts[i] = words[i % 6];
    float all[N * 16], one[16];
    cr_assert_eq(clip_model_encode_texts(m, texts, N, all, &err), 0, "%s", err.msg);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(clip_model_encode_texts(m, &texts[i], 1, one, &err), 0);
        support_assert_close(one, all + i * 16, 16, TOL, 1, "text batch vs one");
    }
    clip_model_free(m);
}

/* DIR/open_clip_model.safetensors: tiny_openclip's weights, each scaled by 1 + up to 0.4 %
 * so that they are no longer bf16-representable, stored as DT (F32 or F16); the config and
 * vocabulary linked beside. */
static void write_jittered(const char *dir, StDtype dt) {
    Err err = {0};
    SafeTensors *src = safetensors_open(FIX "tiny_openclip/open_clip_model.safetensors", &err);
    cr_assert(src, "%s", err.msg);
    SafeTensorsWriter *w = safetensors_writer_new();
    size_t n = safetensors_count(src);
    void **bufs = xcalloc(n, sizeof(void *));
    uint32_t h = 12345;
    for (size_t i = 0; i < n; i++) {
        const StTensor *t = safetensors_at(src, i);
        cr_assert_eq(t->dtype, ST_F32);
        const float *x = safetensors_f32_view(t);
        float *f = xmalloc((size_t)t->n_elem * sizeof(float));
        uint16_t *half = xmalloc((size_t)t->n_elem * sizeof(uint16_t));
        for (int64_t j = 0; j < t->n_elem; j++) {
            h = h * 1664525u + 1013904223u;
            f[j] = x[j] * (1.0f + 0.004f * ((float)(h >> 8) / 16777216.0f - 0.5f));
            half[j] = safetensors_f32_to_f16(f[j]);
        }
        if (dt == ST_F16) {
            free(f);
            bufs[i] = half;
        } else {
            free(half);
            bufs[i] = f;
        }
        cr_assert_eq(safetensors_writer_add(w, t->name, dt, t->n_dim, t->shape, bufs[i], &err),
                     0, "%s", err.msg);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/open_clip_model.safetensors", dir);
    cr_assert_eq(safetensors_writer_save(w, path, &err), 0, "%s", err.msg);
    safetensors_writer_free(w);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    safetensors_close(src);
    char cwd[1024], from[1200];
    cr_assert(getcwd(cwd, sizeof cwd));
    const char *files[] = {"open_clip_config.json", "bpe_simple_vocab_16e6.txt.gz"};
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/" FIX "tiny_openclip/%s", cwd, files[i]);
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        cr_assert_eq(symlink(from, path), 0);
    }
}

/* Cosine of every row of A and B (n rows of 16) >= MIN; returns the smallest. */
static double min_cosine(const float *a, const float *b, int n) {
    double worst = 1;
    for (int i = 0; i < n; i++) {
        double dot = 0;
        for (int j = 0; j < 16; j++)
            dot += (double)a[i * 16 + j] * b[i * 16 + j];
        worst = dot < worst ? dot : worst;
    }
    return worst;
}

/* Image and text embeddings of the reference inputs from two loads of a model. */
static void embed_both(ClipModel *m, float img[3 * 16], float txt[6 * 16]) {
    Err err = {0};
    int64_t n_px;
    const float *pixels = support_st_f32(ref, "pixels", &n_px);
    const int32_t *ids = safetensors_find(ref, "ids")->data;
    cr_assert_eq(clip_model_encode_pixels(m, pixels, 3, img, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(clip_model_encode_ids(m, ids, 6, txt, &err), 0, "%s", err.msg);
}

/* Weights kept as bf16: the file's bf16 used as it is (tiny_hf: the same numbers as f32);
 * f32 and f16 files rounded to bf16 on request: cosine to f32 >= 0.999, about half the
 * bytes. */
Test(clip_layers, bf16_weights) {
    Err err = {0};
    ClipModel *auto_hf = clip_model_load(FIX "tiny_hf", &err);
    ClipModel *f32_hf = clip_model_load_weights(FIX "tiny_hf", CLIP_WEIGHTS_F32, &err);
    cr_assert(auto_hf && f32_hf, "%s", err.msg);
    cr_assert_eq(clip_model_weights(auto_hf), CLIP_WEIGHTS_BF16);
    cr_assert_eq(clip_model_weights(f32_hf), CLIP_WEIGHTS_F32);
    float a_img[48], a_txt[96], b_img[48], b_txt[96];
    embed_both(auto_hf, a_img, a_txt);
    embed_both(f32_hf, b_img, b_txt);
    support_assert_close(a_img, b_img, 48, 1e-6f, 1, "bf16 file kept as bf16: images");
    support_assert_close(a_txt, b_txt, 96, 1e-6f, 1, "bf16 file kept as bf16: texts");
    clip_model_free(auto_hf);
    clip_model_free(f32_hf);

    char tmp[64], dir[128];
    support_tmpdir_make(tmp, sizeof tmp, "clipbf16");
    StDtype dts[2] = {ST_F32, ST_F16};
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/%s", tmp, k ? "f16" : "f32");
        cr_assert_eq(mkdir(dir, 0700), 0);
        write_jittered(dir, dts[k]);
        ClipModel *f32 = clip_model_load(dir, &err); /* auto: f32 (f16 widened) */
        ClipModel *bf = clip_model_load_weights(dir, CLIP_WEIGHTS_BF16, &err);
        cr_assert(f32 && bf, "%s", err.msg);
        cr_assert_eq(clip_model_weights(f32), CLIP_WEIGHTS_F32);
        cr_assert_eq(clip_model_weights(bf), CLIP_WEIGHTS_BF16);
        double ratio = (double)clip_model_weight_bytes(bf) / (double)clip_model_weight_bytes(f32);
        cr_assert(ratio < 0.56 && ratio > 0.45, "bf16 / f32 weight bytes %.3f", ratio);
        embed_both(f32, a_img, a_txt);
        embed_both(bf, b_img, b_txt);
        double ci = min_cosine(a_img, b_img, 3), ct = min_cosine(a_txt, b_txt, 6);
        cr_assert(ci >= 0.999 && ct >= 0.999, "%s file: cosine bf16 vs f32 images %.6f, texts "
                  "%.6f", k ? "f16" : "f32", ci, ct);
        int differs = memcmp(a_img, b_img, sizeof a_img) != 0;
        cr_assert(differs, "bf16 rounding changed nothing: the test model is bf16-exact");
        clip_model_free(f32);
        clip_model_free(bf);
    }
    support_tmpdir_remove(tmp);
}

Test(clip_layers, weights_names) {
    ClipWeights w;
    cr_assert_eq(clip_weights_parse("bf16", &w), 0);
    cr_assert_eq(w, CLIP_WEIGHTS_BF16);
    cr_assert_eq(clip_weights_parse("f32", &w), 0);
    cr_assert_eq(w, CLIP_WEIGHTS_F32);
    cr_assert_eq(clip_weights_parse("auto", &w), 0);
    cr_assert_eq(w, CLIP_WEIGHTS_AUTO);
    cr_assert_eq(clip_weights_parse("f16", &w), -1);
    cr_assert_str_eq(clip_weights_name(CLIP_WEIGHTS_BF16), "bf16");
}

/* The pooling token: the argmax id for OpenCLIP; with config.json's eos_token_id (49407,
 * not the legacy 2) its first occurrence, position 0 when absent, as transformers does. */
Test(clip_layers, pooling_token_rule) {
    int32_t ids[77] = {320, 49406, 1125, 49407, 49407};
    const char *dirs[2] = {FIX "tiny_openclip", FIX "tiny_hf"};
    int32_t rows[2][77];
    memcpy(rows[0], ids, sizeof ids);
    memcpy(rows[1], ids, sizeof ids);
    rows[1][3] = rows[1][4] = 0; /* no end token at all */
    for (int d = 0; d < 2; d++) {
        Err err = {0};
        ClipModel *m = clip_model_load(dirs[d], &err);
        cr_assert(m, "%s", err.msg);
        cr_assert_eq(clip_model_config(m)->eos_token_id, d ? 49407 : -1);
        for (int r = 0; r < 2; r++) {
            float last[77 * 8], pooled[8];
            ClipOutputs o = {.layer = -1, .final_ln = 1, .hidden = last, .pooled = pooled};
            cr_assert_eq(clip_model_text_forward(m, rows[r], 1, &o, &err), 0, "%s", err.msg);
            /* OpenCLIP: argmax (49407 at 3, else 49406 at 1); HF: first 49407, else 0 */
            int want = d == 0 ? (r == 0 ? 3 : 1) : (r == 0 ? 3 : 0);
            support_assert_close(pooled, last + want * 8, 8, 1e-6f, 1,
                                 "pooled at the pooling token");
        }
        clip_model_free(m);
    }
}

/* n decoded images in one call: what the files give one by one. */
Test(clip_layers, encode_images_batch) {
    Err err = {0};
    ClipModel *m = clip_model_load(FIX "tiny_openclip", &err);
    cr_assert(m, "%s", err.msg);
    const char *names[4] = {FIX "images/rgb_300x200.png", FIX "images/grey_45x60.png",
                            FIX "images/rgba_64x48.png", FIX "images/pal_70x40.png"};
    ClipImage imgs[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(clip_image_load(&imgs[i], names[i], &err), 0, "%s", err.msg);
    float all[4 * 16], tok[4 * 16 * 16], one[16], one_tok[16 * 16];
    cr_assert_eq(clip_model_encode_images(m, imgs, 4, CLIP_RESIZE_SHORTEST, all, tok, &err), 0,
                 "%s", err.msg);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(clip_model_encode_image_files(m, &names[i], 1, CLIP_RESIZE_SHORTEST, one,
                                                   one_tok, &err), 0, "%s", err.msg);
        support_assert_close(all + i * 16, one, 16, TOL, 1, "image batch vs one file");
        support_assert_close(tok + i * 256, one_tok, 256, TOL, 1, "tokens batch vs one file");
        clip_image_deinit(&imgs[i]);
    }
    clip_model_free(m);
}
