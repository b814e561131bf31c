/* lora_file: adapters written in diffusers / PEFT and kohya form and read back.
 * The references are the diffusers-made adapters of tests/models/fixtures/sdfile/lora/
 * (make_single_fixtures.py: a PEFT LoRA on attention, proj_in, ResNet convs and time_emb_proj
 * of a tiny SD UNet, a DoRA, a LoRA with PEFT's alpha_pattern, the kohya renames) and the UNet
 * weights diffusers' load_lora_weights + fuse_lora gives for each (*_merged): a file easel
 * writes must merge to those weights under the loader `generate --lora` uses, and read back to
 * the very numbers it was written from. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "lora_file.h"
#include "sd_weights.h"

#define FIX "tests/models/fixtures/sdfile/"

static char tmp[64];

static void setup(void) {
    snprintf(tmp, sizeof tmp, "/tmp/easel-lora-file-XXXXXX");
    cr_assert(mkdtemp(tmp));
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(lora_file, .init = setup, .fini = teardown);

static char *at(const char *name) {
    return xasprintf("%s/%s", tmp, name);
}

static void read_ok(const char *path, LoraSet *s) {
    Err err = {0};
    cr_assert_eq(lora_file_read(path, s, &err), 0, "%s: %s", path, err.msg);
    cr_assert_gt(s->n, 0);
}

static size_t a_count(const LoraEntry *e) {
    return (size_t)e->r * (size_t)e->in * (size_t)(e->kh ? e->kh : 1) *
           (size_t)(e->kw ? e->kw : 1);
}

/* A and B equal, and the scale alpha / r (the entries may spell it differently). */
static void sets_equal(const LoraSet *a, const LoraSet *b, int with_m) {
    cr_assert_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const LoraEntry *x = &a->e[i], *y = &b->e[i];
        cr_assert_str_eq(x->name, y->name);
        cr_assert(x->r == y->r && x->out == y->out && x->in == y->in && x->kh == y->kh &&
                  x->kw == y->kw, "%s: shapes differ", x->name);
        cr_assert_float_eq(x->alpha / (float)x->r, y->alpha / (float)y->r, 1e-6f, "%s",
                           x->name);
        cr_assert_eq(memcmp(x->A, y->A, a_count(x) * sizeof(float)), 0, "%s: A", x->name);
        cr_assert_eq(memcmp(x->B, y->B, (size_t)x->out * (size_t)x->r * sizeof(float)), 0,
                     "%s: B", x->name);
        if (with_m) {
            cr_assert_eq(!x->m, !y->m, "%s: m", x->name);
            if (x->m)
                cr_assert_eq(memcmp(x->m, y->m, (size_t)x->out * sizeof(float)), 0, "%s: m",
                             x->name);
        }
    }
}

static float *read_all(SdWeights *w, const char *name, const StTensor *like) {
    Err err = {0};
    float *v = xmalloc((size_t)like->n_elem * sizeof *v);
    cr_assert_eq(sd_weights_read_f32(w, name, like->n_dim, like->shape, v, &err), 0, "%s",
                 err.msg);
    return v;
}

/* The tiny SD UNet with LORA applied by sd_weights_add_lora (generate --lora's loader) has
 * diffusers' fused weights MERGED, within 1e-5. */
static void merges_like_diffusers(const char *lora, const char *merged) {
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(FIX "sd", "unet", &w, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_add_lora(w, lora, 1.0f, &err), 0, "%s", err.msg);
    SafeTensors *m = safetensors_open(merged, &err);
    cr_assert(m, "%s", err.msg);
    for (size_t i = 0; i < safetensors_count(m); i++) {
        const StTensor *t = safetensors_at(m, i);
        float *want = xmalloc((size_t)t->n_elem * sizeof *want);
        cr_assert_eq(safetensors_read_f32(m, t, want, (size_t)t->n_elem, &err), 0);
        float *got = read_all(w, t->name, t);
        for (int64_t k = 0; k < t->n_elem; k++)
            cr_assert(fabsf(want[k] - got[k]) <= 1e-5f, "%s: %s[%lld] = %g, diffusers %g",
                      lora, t->name, (long long)k, (double)got[k], (double)want[k]);
        free(want);
        free(got);
    }
    cr_assert_gt(safetensors_count(m), 10);
    cr_assert_eq(sd_weights_check_used(w, &err), 0, "%s", err.msg);
    safetensors_close(m);
    sd_weights_close(w);
}

Test(lora_file, peft_lora_written_merges_like_diffusers_and_reads_back) {
    LoraSet s = {0}, back = {0};
    read_ok(FIX "lora/peft.safetensors", &s);
    /* linear and conv layers (ResNet 3x3 convs, SD's 1x1 proj_in), rank 4, alpha 8 */
    int conv3 = 0, lin = 0;
    for (size_t i = 0; i < s.n; i++) {
        cr_assert(s.e[i].r == 4 && s.e[i].alpha == 8.0f && !s.e[i].m, "%s", s.e[i].name);
        conv3 += s.e[i].kh == 3 && s.e[i].kw == 3;
        lin += s.e[i].kh == 0;
    }
    cr_assert(conv3 > 0 && lin > 0);
    char *dir = at("peft");
    Err err = {0};
    cr_assert_eq(lora_file_write_peft(&s, dir, NULL, &err), 0, "%s", err.msg);
    char *file = xasprintf("%s/" LORA_FILE_PEFT_WEIGHTS, dir);
    merges_like_diffusers(file, FIX "lora/peft_merged.safetensors");
    read_ok(dir, &back);
    sets_equal(&s, &back, 1);
    lora_set_free(&back);
    read_ok(file, &back); /* the file alone: alpha from its own metadata */
    sets_equal(&s, &back, 1);
    /* the metadata diffusers turns back into the LoraConfig, and PEFT's adapter_config.json */
    SafeTensors *st = safetensors_open(file, &err);
    cr_assert(st);
    const char *md = safetensors_metadata(st, "lora_adapter_metadata");
    cr_assert(md && strstr(md, "\"unet.r\": 4") && strstr(md, "\"unet.lora_alpha\": 8") &&
              strstr(md, "\"unet.use_dora\": false") && strstr(md, "\"unet.peft_type\": "
                                                                   "\"LORA\""), "%s", md);
    cr_assert_str_eq(safetensors_metadata(st, "format"), "pt");
    cr_assert(safetensors_find(st, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1."
                                   "to_q.lora_A.weight"));
    safetensors_close(st);
    char *cfg = xasprintf("%s/adapter_config.json", dir);
    FILE *f = fopen(cfg, "r");
    cr_assert(f);
    char text[8192] = {0};
    cr_assert_gt(fread(text, 1, sizeof text - 1, f), 0);
    fclose(f);
    cr_assert(strstr(text, "\"r\": 4") && strstr(text, "\"lora_alpha\": 8") &&
              strstr(text, "\"target_modules\"") && !strstr(text, "unet."), "%s", text);
    /* no temporary file left beside them */
    char *cmd = xasprintf("test $(ls %s | wc -l) -eq 2", dir);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    free(cfg);
    free(file);
    free(dir);
    lora_set_free(&back);
    lora_set_free(&s);
}

Test(lora_file, dora_written_merges_like_diffusers_and_kohya_refuses_it) {
    LoraSet s = {0}, back = {0};
    read_ok(FIX "lora/dora.safetensors", &s);
    int conv = 0;
    for (size_t i = 0; i < s.n; i++) {
        cr_assert(s.e[i].m, "%s has no magnitude", s.e[i].name);
        conv += s.e[i].kh > 0;
    }
    cr_assert_gt(conv, 0);
    char *dir = at("dora"), *koh = at("dora_kohya.safetensors");
    Err err = {0};
    cr_assert_eq(lora_file_write_peft(&s, dir, NULL, &err), 0, "%s", err.msg);
    char *file = xasprintf("%s/" LORA_FILE_PEFT_WEIGHTS, dir);
    merges_like_diffusers(file, FIX "lora/dora_merged.safetensors");
    read_ok(dir, &back);
    sets_equal(&s, &back, 1);
    lora_set_free(&back);
    /* a conv layer's magnitude has PEFT's (1, out, 1, 1) shape, a linear's (out) */
    SafeTensors *st = safetensors_open(file, &err);
    cr_assert(st);
    const StTensor *t = safetensors_find(st, "unet.down_blocks.0.resnets.0.conv1."
                                             "lora_magnitude_vector");
    cr_assert(t && t->n_dim == 4 && t->shape[0] == 1 && t->shape[2] == 1 && t->shape[3] == 1);
    t = safetensors_find(st, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q."
                             "lora_magnitude_vector");
    cr_assert(t && t->n_dim == 1);
    cr_assert(strstr(safetensors_metadata(st, "lora_adapter_metadata"),
                     "\"unet.use_dora\": true"));
    safetensors_close(st);
    /* kohya: refused (no reader of kohya files takes PEFT's DoRA), nothing written */
    cr_assert_eq(lora_file_write_kohya(&s, koh, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "DoRA") && strstr(err.msg, "peft or merged"), "%s", err.msg);
    cr_assert_neq(access(koh, F_OK), 0);
    free(file);
    free(dir);
    free(koh);
    lora_set_free(&back);
    lora_set_free(&s);
}

Test(lora_file, alpha_pattern_is_kept_per_layer) {
    LoraSet s = {0}, back = {0};
    read_ok(FIX "lora/pattern.safetensors", &s);
    int seen2 = 0, seen16 = 0;
    for (size_t i = 0; i < s.n; i++) {
        seen2 += s.e[i].alpha == 2.0f;
        seen16 += s.e[i].alpha == 16.0f;
    }
    cr_assert(seen2 > 0 && seen16 > 0, "alpha_pattern not applied");
    char *dir = at("pattern"), *koh = at("pattern_kohya.safetensors");
    Err err = {0};
    cr_assert_eq(lora_file_write_peft(&s, dir, NULL, &err), 0, "%s", err.msg);
    char *file = xasprintf("%s/" LORA_FILE_PEFT_WEIGHTS, dir);
    merges_like_diffusers(file, FIX "lora/pattern_merged.safetensors");
    cr_assert_eq(lora_file_write_kohya(&s, koh, &err), 0, "%s", err.msg);
    merges_like_diffusers(koh, FIX "lora/pattern_merged.safetensors");
    /* kohya: one alpha (8) for every layer, the others' folded into B (diffusers' kohya
     * converter loses attention layers' own alphas) */
    read_ok(koh, &back);
    cr_assert_eq(back.n, s.n);
    for (size_t i = 0; i < back.n; i++) {
        const LoraEntry *x = &s.e[i], *y = &back.e[i];
        cr_assert(y->alpha == 8.0f, "%s: alpha %g", y->name, (double)y->alpha);
        for (int k = 0; k < x->out * x->r; k++)
            cr_assert_float_eq(y->B[k] * y->alpha, x->B[k] * x->alpha, 1e-6f, "%s", x->name);
    }
    lora_set_free(&back);
    read_ok(file, &back);
    sets_equal(&s, &back, 1);
    free(file);
    free(dir);
    free(koh);
    lora_set_free(&back);
    lora_set_free(&s);
}

Test(lora_file, kohya_files_read_as_the_peft_one) {
    LoraSet peft = {0}, k = {0};
    read_ok(FIX "lora/peft.safetensors", &peft);
    /* diffusers' block names: no model needed */
    read_ok(FIX "lora/kohya.safetensors", &k);
    sets_equal(&peft, &k, 1);
    lora_set_free(&k);
    /* SGM block names need the model (the map generate --lora uses) */
    Err err = {0};
    cr_assert_eq(lora_file_read(FIX "lora/kohya_sgm.safetensors", &k, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "kohya_sgm.safetensors") && strstr(err.msg, "lora_unet_input_") &&
              strstr(err.msg, "SGM"), "%s", err.msg);
    cr_assert_eq(k.n, 0);
    SdWeights *w = NULL;
    cr_assert_eq(sd_weights_open(FIX "sd", "unet", &w, &err), 0, "%s", err.msg);
    cr_assert_eq(lora_file_read_unet(FIX "lora/kohya_sgm.safetensors", w, &k, &err), 0, "%s",
                 err.msg);
    sets_equal(&peft, &k, 1);
    lora_set_free(&k);
    /* easel's kohya export reads back to the same numbers */
    char *koh = at("k.safetensors");
    cr_assert_eq(lora_file_write_kohya(&peft, koh, &err), 0, "%s", err.msg);
    merges_like_diffusers(koh, FIX "lora/peft_merged.safetensors");
    read_ok(koh, &k);
    sets_equal(&peft, &k, 1);
    SafeTensors *st = safetensors_open(koh, &err);
    cr_assert(st);
    cr_assert_str_eq(safetensors_metadata(st, "ss_network_dim"), "4");
    cr_assert_str_eq(safetensors_metadata(st, "ss_network_alpha"), "8");
    cr_assert(safetensors_find(st, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_"
                                   "attn1_to_out_0.lora_down.weight"));
    safetensors_close(st);
    lora_set_free(&k);
    sd_weights_close(w);
    free(koh);
    lora_set_free(&peft);
}

/* Every weight of the tiny SD and SDXL UNets as an adapter: the kohya names (dots as '_')
 * come back as the same diffusers module names. */
Test(lora_file, kohya_names_round_trip_for_every_unet_layer) {
    const char *models[] = {FIX "sd", FIX "sdxl"};
    for (int mi = 0; mi < 2; mi++) {
        SdWeights *w = NULL;
        Err err = {0};
        cr_assert_eq(sd_weights_open(models[mi], "unet", &w, &err), 0, "%s", err.msg);
        LoraSet s = {0};
        s.e = xcalloc(sd_weights_count(w), sizeof *s.e);
        for (size_t i = 0; i < sd_weights_count(w); i++) {
            const char *name = sd_weights_name(w, i);
            const StTensor *t = sd_weights_find(w, name);
            size_t n = strlen(name);
            if (n < 8 || strcmp(name + n - 7, ".weight") || (t->n_dim != 2 && t->n_dim != 4))
                continue;
            LoraEntry *e = &s.e[s.n++];
            snprintf(e->name, sizeof e->name, "%.*s", (int)(n - 7), name);
            e->r = 1;
            e->alpha = 1;
            e->out = (int)t->shape[0];
            e->in = (int)t->shape[1];
            if (t->n_dim == 4) {
                e->kh = (int)t->shape[2];
                e->kw = (int)t->shape[3];
            } else if (mi == 1) { /* a Linear's adapter saved as a 1x1 conv's (as kohya does) */
                e->kh = e->kw = 1;
            }
            e->A = xcalloc(a_count(e), sizeof(float));
            e->B = xcalloc((size_t)e->out, sizeof(float));
        }
        cr_assert_gt(s.n, 20);
        char *koh = at("all.safetensors");
        cr_assert_eq(lora_file_write_kohya(&s, koh, &err), 0, "%s", err.msg);
        LoraSet back = {0};
        read_ok(koh, &back);
        cr_assert_eq(back.n, s.n);
        for (size_t i = 0; i < s.n; i++) /* both sorted: the weights are, by name */
            cr_assert_str_eq(back.e[i].name, s.e[i].name);
        /* and the model's own map agrees; the layer's kind wins over a 1x1 conv's shape */
        lora_set_free(&back);
        cr_assert_eq(lora_file_read_unet(koh, w, &back, &err), 0, "%s", err.msg);
        cr_assert_eq(back.n, s.n);
        for (size_t i = 0; i < s.n; i++) {
            char *wn = xasprintf("%s.weight", back.e[i].name);
            const StTensor *t = sd_weights_find(w, wn);
            cr_assert(t && (t->n_dim == 4) == (back.e[i].kh > 0), "%s", wn);
            free(wn);
        }
        lora_set_free(&back);
        lora_set_free(&s);
        sd_weights_close(w);
        free(koh);
    }
}

Test(lora_file, bad_input_is_refused_and_leaves_old_files) {
    LoraSet s = {0}, back = {0};
    Err err = {0};
    cr_assert_eq(lora_file_read("/nonexistent/lora", &s, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "/nonexistent/lora"), "%s", err.msg);
    cr_assert_eq(lora_file_read(tmp, &s, &err), ERR_NOTFOUND); /* a folder without weights */
    cr_assert(strstr(err.msg, LORA_FILE_PEFT_WEIGHTS), "%s", err.msg);
    /* a model file is no adapter: the tensor and the file are named */
    cr_assert_eq(lora_file_read(FIX "sd.safetensors", &s, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "sd.safetensors") && strstr(err.msg, "tensor ") &&
              strstr(err.msg, "no UNet LoRA tensor"), "%s", err.msg);
    /* text-encoder adapters only: nothing for the UNet */
    cr_assert_eq(lora_file_read(FIX "lora/te.safetensors", &s, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "no UNet adapter"), "%s", err.msg);
    /* an SD adapter against the SDXL-shaped UNet */
    SdWeights *w = NULL;
    cr_assert_eq(sd_weights_open(FIX "sdxl", "unet", &w, &err), 0, "%s", err.msg);
    int rc = lora_file_read_unet(FIX "lora/peft.safetensors", w, &s, &err);
    cr_assert(rc == ERR_NOTFOUND || rc == ERR_FORMAT);
    cr_assert(strstr(err.msg, "peft.safetensors") && strstr(err.msg, "another model"), "%s",
              err.msg);
    sd_weights_close(w);
    /* a diverged adapter is not saved, and the last good save stays whole */
    read_ok(FIX "lora/peft.safetensors", &s);
    char *dir = at("keep"), *koh = at("keep.safetensors");
    cr_assert_eq(lora_file_write_peft(&s, dir, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(lora_file_write_kohya(&s, koh, &err), 0, "%s", err.msg);
    float was = s.e[3].B[1];
    s.e[3].B[1] = NAN;
    cr_assert_eq(lora_file_write_peft(&s, dir, NULL, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, s.e[3].name) && strstr(err.msg, "not finite"), "%s", err.msg);
    cr_assert_eq(lora_file_write_kohya(&s, koh, &err), ERR_FORMAT);
    s.e[3].B[1] = was;
    read_ok(dir, &back);
    sets_equal(&s, &back, 1);
    lora_set_free(&back);
    read_ok(koh, &back);
    sets_equal(&s, &back, 1);
    lora_set_free(&back);
    /* an empty set, and a folder that cannot be made */
    LoraSet empty = {0};
    cr_assert_eq(lora_file_write_peft(&empty, dir, NULL, &err), ERR_USAGE);
    cr_assert_eq(lora_file_write_peft(&s, "/nonexistent/a/b", NULL, &err), ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/a/b"), "%s", err.msg);
    free(dir);
    free(koh);
    lora_set_free(&s);
}

Test(lora_file, targets_and_base_model_go_to_the_config) {
    LoraSet s = {0};
    read_ok(FIX "lora/peft.safetensors", &s);
    static const char *const targets[] = {"to_q", "to_k", "to_v", "to_out.0", "proj_in",
                                          "conv1", "conv2", "time_emb_proj"};
    LoraFileMeta meta = {targets, 8, "runwayml/stable-diffusion-v1-5"};
    char *dir = at("meta");
    Err err = {0};
    cr_assert_eq(lora_file_write_peft(&s, dir, &meta, &err), 0, "%s", err.msg);
    char *cfg = xasprintf("%s/adapter_config.json", dir);
    FILE *f = fopen(cfg, "r");
    cr_assert(f);
    char text[8192] = {0};
    cr_assert_gt(fread(text, 1, sizeof text - 1, f), 0);
    fclose(f);
    cr_assert(strstr(text, "\"time_emb_proj\"") && strstr(text, "\"to_out.0\"") &&
              strstr(text, "runwayml/stable-diffusion-v1-5") && !strstr(text, "down_blocks"),
              "%s", text);
    free(cfg);
    free(dir);
    lora_set_free(&s);
}

/* sd_weights_write_single_lora on an f16 UNet: the changed weights stay f16, rounded from the
 * f32 merge; the others are the base's bytes. */
Test(lora_file, merged_single_file_keeps_each_weights_dtype) {
    char *dir = at("f16"), *udir = at("f16/unet"), *out = at("merged.safetensors");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && ln -s $PWD/" FIX "sd/vae %s/vae && ln -s $PWD/" FIX
             "sd/text_encoder %s/text_encoder && cp " FIX "sd/unet/config.json %s/", udir, dir,
             dir, udir);
    cr_assert_eq(system(cmd), 0);
    SdWeights *b = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(FIX "sd", "unet", &b, &err), 0, "%s", err.msg);
    SafeTensorsWriter *wr = safetensors_writer_new();
    uint16_t **h = xcalloc(sd_weights_count(b), sizeof *h);
    for (size_t i = 0; i < sd_weights_count(b); i++) {
        const char *name = sd_weights_name(b, i);
        const StTensor *t = sd_weights_find(b, name);
        float *v = read_all(b, name, t);
        h[i] = xmalloc((size_t)t->n_elem * sizeof **h);
        for (int64_t k = 0; k < t->n_elem; k++)
            h[i][k] = safetensors_f32_to_f16(v[k]);
        free(v);
        cr_assert_eq(safetensors_writer_add(wr, name, ST_F16, t->n_dim, t->shape, h[i], &err), 0);
    }
    char *file = xasprintf("%s/diffusion_pytorch_model.safetensors", udir);
    cr_assert_eq(safetensors_writer_save(wr, file, &err), 0, "%s", err.msg);
    safetensors_writer_free(wr);
    for (size_t i = 0; i < sd_weights_count(b); i++)
        free(h[i]);
    free(h);
    sd_weights_close(b);
    const char *loras[] = {FIX "lora/peft.safetensors"};
    float scale = 0.5f;
    cr_assert_eq(sd_weights_write_single_lora(dir, loras, &scale, 1, out, &err), 0, "%s",
                 err.msg);
    SdWeights *m = NULL;
    cr_assert_eq(sd_weights_open(out, "unet", &m, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_open(dir, "unet", &b, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_weights_add_lora(b, loras[0], scale, &err), 0, "%s", err.msg);
    int changed = 0;
    for (size_t i = 0; i < sd_weights_count(b); i++) {
        const char *name = sd_weights_name(b, i);
        const StTensor *t = sd_weights_find(m, name);
        cr_assert(t && t->dtype == ST_F16, "%s is not f16 in the merged file", name);
        float *want = read_all(b, name, t), *got = read_all(m, name, t);
        for (int64_t k = 0; k < t->n_elem; k++) {
            float r = safetensors_f16_to_f32(safetensors_f32_to_f16(want[k]));
            cr_assert(got[k] == r, "%s[%lld]: %g, want %g", name, (long long)k, (double)got[k],
                      (double)r);
        }
        changed += strstr(name, "conv1.weight") != NULL;
        free(want);
        free(got);
    }
    cr_assert_gt(changed, 0);
    sd_weights_close(m);
    sd_weights_close(b);
    /* an adapter for another model: refused, nothing written */
    const char *bad[] = {FIX "lora/te.safetensors"};
    char *out2 = at("merged2.safetensors");
    cr_assert_eq(sd_weights_write_single_lora(dir, bad, &scale, 1, out2, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "text_encoder adapters"), "%s", err.msg);
    cr_assert_neq(access(out2, F_OK), 0);
    free(out2);
    free(file);
    free(out);
    free(udir);
    free(dir);
}

/* A writer killed at any moment leaves a folder that reads as one whole save: the last
 * finished one or the one before, weights and alpha together (the alpha read from the
 * weights file's own metadata first, so a new adapter_config.json beside old weights does
 * not mix them). */
Test(lora_file, a_killed_save_leaves_one_whole_save, .timeout = 60) {
    LoraSet a = {0}, b = {0}, got = {0};
    read_ok(FIX "lora/peft.safetensors", &a);
    read_ok(FIX "lora/peft.safetensors", &b);
    for (size_t i = 0; i < b.n; i++) { /* the same update at another alpha */
        b.e[i].alpha *= 2;
        for (int k = 0; k < b.e[i].out * b.e[i].r; k++)
            b.e[i].B[k] *= 0.5f;
    }
    char *dir = at("killed");
    Err err = {0};
    cr_assert_eq(lora_file_write_peft(&a, dir, NULL, &err), 0, "%s", err.msg);
    for (int round = 0; round < 12; round++) {
        fflush(NULL);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            for (int k = 0;; k++)
                if (lora_file_write_peft(k % 2 ? &a : &b, dir, NULL, NULL))
                    _exit(3);
        }
        usleep(1000 + 2500 * (useconds_t)round);
        cr_assert_eq(kill(pid, SIGKILL), 0);
        int st = 0;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFSIGNALED(st), "the writer failed (exit %d)", WEXITSTATUS(st));
        read_ok(dir, &got);
        const LoraSet *want = got.e[0].alpha == a.e[0].alpha ? &a : &b;
        sets_equal(want, &got, 1);
        for (size_t i = 0; i < got.n; i++)
            cr_assert(got.e[i].alpha == want->e[i].alpha, "%s: alpha from another save",
                      got.e[i].name);
        lora_set_free(&got);
    }
    free(dir);
    lora_set_free(&a);
    lora_set_free(&b);
}
