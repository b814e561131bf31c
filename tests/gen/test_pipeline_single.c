/* test_pipeline_single — single-file checkpoints (SD 1.x, SD 2.x with OpenCLIP's unused last
 * text layer, SDXL) generate the image of the diffusers folder they were written from
 * (tests/models/make_single_fixtures.py --pipeline: tests/gen/fixtures/single/), which is
 * diffusers' image; the configs made from the tensors equal the folder's; the tokenizer is
 * asked for and found; --prediction; broken files are named. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "backend_cpu.h"
#include "base.h"
#include "fmt_safetensors.h"
#include "pipeline.h"
#include "pipeline_fixture.h"
#include "sched_config.h"
#include "sd_weights.h"

#define FIX "tests/gen/fixtures/single/"

TestSuite(pipeline_single, .init = setup, .fini = teardown);

static const char *P = "a red fox in the snow", *N = "blurry, low quality";

static uint8_t *gen(const char *model, const char *tok, const char *pred, const char *sched,
                    int steps, float guidance, uint64_t seed) {
    SdPipelineConfig cfg = {DTYPE_F32, NULL, 0, 0, tok, pred};
    SdPipeline *p = NULL;
    Err err = {0};
    cr_assert_eq(sd_pipeline_open(model, be, &cfg, &p, &err), 0, "%s: %s", model, err.msg);
    SdGenParams g = {.prompt = P, .negative = N, .width = 64, .height = 64, .steps = steps,
                     .guidance = guidance, .scheduler = sched, .seed = seed};
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &w, &h, &err), 0, "%s", err.msg);
    cr_assert(w == 64 && h == 64);
    sd_pipeline_close(p);
    return rgb;
}

static double psnr(const uint8_t *a, const uint8_t *b) {
    double se = 0;
    for (int i = 0; i < 64 * 64 * 3; i++)
        se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return se == 0 ? INFINITY : 10 * log10(255.0 * 255.0 / (se / (64 * 64 * 3)));
}

static uint8_t *load_rgb(const char *name) {
    char *path = xasprintf(FIX "%s.rgb", name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s (make it with tests/models/make_single_fixtures.py --pipeline)", path);
    uint8_t *v = xmalloc(64 * 64 * 3);
    cr_assert_eq(fread(v, 1, 64 * 64 * 3, f), (size_t)(64 * 64 * 3));
    fclose(f);
    free(path);
    return v;
}

/* Every case of cases.json: the single file (tokenizer from the folder) gives the folder's
 * image byte for byte, and diffusers' within 50 dB. */
Test(pipeline_single, single_files_give_the_folders_and_diffusers_images, .timeout = 120) {
    json_error_t je;
    json_t *all = json_load_file(FIX "cases.json", 0, &je);
    cr_assert(all, FIX "cases.json:%d: %s", je.line, je.text);
    size_t i;
    json_t *c;
    json_array_foreach(all, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *fam = json_string_value(json_object_get(c, "model"));
        const char *sched = json_string_value(json_object_get(c, "scheduler")); /* or NULL */
        int steps = (int)json_integer_value(json_object_get(c, "steps"));
        float guid = (float)json_number_value(json_object_get(c, "guidance"));
        uint64_t seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
        char *file = xasprintf(FIX "%s.safetensors", fam), *dir = xasprintf(FIX "%s", fam);
        uint8_t *a = gen(file, dir, NULL, sched, steps, guid, seed);
        uint8_t *b = gen(dir, NULL, NULL, sched, steps, guid, seed);
        uint8_t *want = load_rgb(name);
        double same = psnr(a, b), dd = psnr(a, want);
        fprintf(stderr, "single %s: %s dB against the folder, %.2f dB against diffusers\n", name,
                isinf(same) ? "inf" : "finite", dd);
        cr_assert(isinf(same), "%s: the single file's image differs from the folder's (%.2f dB)",
                  name, same);
        cr_assert_geq(dd, 50.0, "%s: %.2f dB against diffusers", name, dd);
        free(a), free(b), free(want), free(file), free(dir);
    }
    json_decref(all);
}

static json_t *cfg_of(const char *path, const char *comp) {
    SdWeights *w = NULL;
    Err err = {0};
    cr_assert_eq(sd_weights_open(path, comp, &w, &err), 0, "%s %s: %s", path, comp, err.msg);
    json_t *j = json_loads(sd_weights_config_json(w), 0, NULL);
    cr_assert(j);
    sd_weights_close(w);
    return j;
}

static void same_keys(const char *fam, const char *comp, const char *const *keys) {
    char *file = xasprintf(FIX "%s.safetensors", fam), *dir = xasprintf(FIX "%s", fam);
    json_t *m = cfg_of(file, comp), *f = cfg_of(dir, comp);
    for (int i = 0; keys[i]; i++) {
        json_t *a = json_object_get(m, keys[i]), *b = json_object_get(f, keys[i]);
        /* a scalar in one and the same value per level in the other are the same config */
        int eq = json_equal(a, b);
        if (!eq && json_is_integer(a) && json_is_array(b)) {
            size_t k;
            json_t *v;
            eq = 1;
            json_array_foreach(b, k, v) eq &= json_equal(a, v);
        } else if (!eq && json_is_array(a) && json_is_integer(b)) {
            size_t k;
            json_t *v;
            eq = 1;
            json_array_foreach(a, k, v) eq &= json_equal(b, v);
        }
        if (!eq && json_is_real(a) && json_is_number(b))
            eq = fabs(json_real_value(a) - json_number_value(b)) < 1e-9;
        char *sa = json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT);
        char *sb = json_dumps(b, JSON_ENCODE_ANY | JSON_COMPACT);
        cr_assert(eq, "%s %s: %s is %s from the file, %s in the folder", fam, comp, keys[i],
                  sa ? sa : "missing", sb ? sb : "missing");
        free(sa), free(sb);
    }
    json_decref(m), json_decref(f);
    free(file), free(dir);
}

Test(pipeline_single, configs_from_the_tensors_equal_the_folders) {
    static const char *const unet[] = {
        "block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
        "attention_head_dim", "transformer_layers_per_block", "cross_attention_dim",
        "use_linear_projection", "in_channels", "out_channels", "norm_num_groups", "norm_eps",
        "sample_size", "upcast_attention", "flip_sin_to_cos", "freq_shift", NULL};
    static const char *const unet_xl[] = {"addition_embed_type", "addition_time_embed_dim",
                                          "projection_class_embeddings_input_dim", NULL};
    static const char *const vae[] = {"block_out_channels", "layers_per_block",
                                      "latent_channels", "norm_num_groups", "scaling_factor",
                                      "in_channels", "out_channels", NULL};
    static const char *const te[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
                                     "num_attention_heads", "max_position_embeddings",
                                     "vocab_size", "hidden_act", "layer_norm_eps", NULL};
    static const char *const fams[] = {"sd1", "sd2", "sdxl"};
    for (int i = 0; i < 3; i++) {
        same_keys(fams[i], "unet", unet);
        same_keys(fams[i], "vae", vae);
        same_keys(fams[i], "text_encoder", te);
    }
    same_keys("sdxl", "unet", unet_xl);
    static const char *const te2[] = {"projection_dim", NULL};
    same_keys("sdxl", "text_encoder_2", te);
    same_keys("sdxl", "text_encoder_2", te2);
    /* the scheduler: the family's released config, field by field as easel reads it */
    static const struct {
        const char *fam;
        SchedKind kind;
    } sc[] = {{"sd1", SCHED_EULER}, {"sd2", SCHED_DDIM}, {"sdxl", SCHED_EULER}};
    for (int i = 0; i < 3; i++) {
        char *file = xasprintf(FIX "%s.safetensors", sc[i].fam), *dir = xasprintf(FIX "%s",
                                                                                sc[i].fam);
        SdPipelineConfig cfg = {DTYPE_F32, NULL, 0, 0, dir, NULL};
        SdPipeline *p = NULL;
        Err err = {0};
        cr_assert_eq(sd_pipeline_open(file, be, &cfg, &p, &err), 0, "%s", err.msg);
        SchedConfig a, b;
        cr_assert_eq(sched_config_parse(&a, sc[i].kind, sd_pipeline_scheduler_config(p), file,
                                        &err), 0, "%s", err.msg);
        char *sp = xasprintf("%s/scheduler/scheduler_config.json", dir);
        cr_assert_eq(sched_config_load(&b, sc[i].kind, sp, &err), 0, "%s", err.msg);
        cr_assert(a.num_train_timesteps == b.num_train_timesteps &&
                      a.beta_start == b.beta_start && a.beta_end == b.beta_end &&
                      a.beta_schedule == b.beta_schedule && a.spacing == b.spacing &&
                      a.steps_offset == b.steps_offset && a.prediction == b.prediction &&
                      a.clip_sample == b.clip_sample && a.set_alpha_to_one == b.set_alpha_to_one,
                  "%s: the scheduler differs from the folder's", sc[i].fam);
        cr_assert_str_eq(sd_pipeline_family(p), sc[i].fam);
        sd_pipeline_close(p);
        free(sp), free(file), free(dir);
    }
}

/* SD 2.x single files are v-prediction (2.1, 768²) unless --prediction epsilon (2.1-base,
 * 512²); the override applies to a folder too. */
Test(pipeline_single, prediction_type_and_its_override) {
    SdPipelineConfig cfg = {DTYPE_F32, NULL, 0, 0, FIX "sd2", NULL};
    SdPipeline *p = NULL;
    Err err = {0};
    int w, h;
    cr_assert_eq(sd_pipeline_open(FIX "sd2.safetensors", be, &cfg, &p, &err), 0, "%s", err.msg);
    cr_assert(strstr(sd_pipeline_scheduler_config(p), "\"v_prediction\""));
    sd_pipeline_default_size(p, &w, &h); /* the UNet's sample_size 96 (768² at scale 8) */
    int w_v = w;
    cr_assert_eq(w, h);
    sd_pipeline_close(p);
    cfg.prediction = "epsilon";
    cr_assert_eq(sd_pipeline_open(FIX "sd2.safetensors", be, &cfg, &p, &err), 0, "%s", err.msg);
    cr_assert(strstr(sd_pipeline_scheduler_config(p), "\"epsilon\""));
    sd_pipeline_default_size(p, &w, &h); /* 64 latents: 512² at scale 8 */
    cr_assert(w * 96 == w_v * 64 && w == h, "%dx%d (v: %d)", w, h, w_v);
    sd_pipeline_close(p);
    cfg.prediction = "x";
    cr_assert_eq(sd_pipeline_open(FIX "sd2.safetensors", be, &cfg, &p, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "epsilon or v"), "%s", err.msg);
    /* epsilon changes the image; the folder told epsilon gives the same one */
    uint8_t *v = gen(FIX "sd2.safetensors", FIX "sd2", NULL, "euler", 3, 6.0f, 7);
    uint8_t *e = gen(FIX "sd2.safetensors", FIX "sd2", "epsilon", "euler", 3, 6.0f, 7);
    uint8_t *fe = gen(FIX "sd2", NULL, "epsilon", "euler", 3, 6.0f, 7);
    cr_assert_lt(psnr(v, e), 40.0, "--prediction epsilon did not change the image");
    cr_assert(isinf(psnr(e, fe)), "epsilon: the file's image is not the folder's");
    free(v), free(e), free(fe);
}

static char *rewrite(const char *src, const char *drop, int in_channels);

/* "turbo" in the name: SDXL-Turbo's Euler ancestral with trailing spacing, 512²; a v_pred key
 * (ComfyUI's mark) makes an SD 1.x file v-prediction. */
Test(pipeline_single, turbo_names_and_v_pred_keys) {
    char turbo[96];
    snprintf(turbo, sizeof turbo, "/tmp/easel-sf-%d-sd_xl_turbo_1.0.safetensors", (int)getpid());
    char *abs = realpath(FIX "sdxl.safetensors", NULL);
    cr_assert(abs);
    cr_assert_eq(symlink(abs, turbo), 0);
    free(abs);
    SdPipelineConfig cfg = {DTYPE_F32, NULL, 0, 0, FIX "sdxl", NULL};
    SdPipeline *p = NULL;
    Err err = {0};
    int w, h, w0, h0;
    cr_assert_eq(sd_pipeline_open(FIX "sdxl.safetensors", be, &cfg, &p, &err), 0, "%s", err.msg);
    sd_pipeline_default_size(p, &w0, &h0); /* sample_size 128 */
    sd_pipeline_close(p);
    cr_assert_eq(sd_pipeline_open(turbo, be, &cfg, &p, &err), 0, "%s", err.msg);
    const char *sc = sd_pipeline_scheduler_config(p);
    cr_assert(strstr(sc, "EulerAncestralDiscreteScheduler") && strstr(sc, "\"trailing\""), "%s",
              sc);
    sd_pipeline_default_size(p, &w, &h);
    cr_assert(w * 128 == w0 * 64 && h == w, "%dx%d (base %dx%d)", w, h, w0, h0);
    SchedConfig c;
    cr_assert_eq(sched_config_parse(&c, SCHED_EULER_A, sc, turbo, &err), 0, "%s", err.msg);
    cr_assert(c.spacing == SCHED_SPACING_TRAILING && c.prediction == SCHED_PRED_EPSILON);
    sd_pipeline_close(p);
    unlink(turbo);
    char *f = rewrite(FIX "sd1.safetensors", "+v_pred", 0);
    cfg.tokenizer = FIX "sd1";
    cr_assert_eq(sd_pipeline_open(f, be, &cfg, &p, &err), 0, "%s", err.msg);
    cr_assert(strstr(sd_pipeline_scheduler_config(p), "\"v_prediction\""), "%s",
              sd_pipeline_scheduler_config(p));
    sd_pipeline_close(p);
    unlink(f);
    free(f);
}

/* A single file has no tokenizer: asked for by name; a diffusers folder, its tokenizer/ alone
 * or a bare vocab.json + merges.txt folder all work (pad tokens from the family). */
Test(pipeline_single, the_tokenizer_is_asked_for_and_found, .timeout = 60) {
    SdPipelineConfig cfg = {DTYPE_F32, NULL, 0, 0, NULL, NULL};
    SdPipeline *p = NULL;
    Err err = {0};
    cr_assert_eq(sd_pipeline_open(FIX "sdxl.safetensors", be, &cfg, &p, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "sdxl.safetensors") && strstr(err.msg, "--tokenizer DIR") &&
                  strstr(err.msg, "easel models add clip"), "%s", err.msg);
    cr_assert_null(p);
    cfg.tokenizer = "/nonexistent/tok";
    cr_assert_eq(sd_pipeline_open(FIX "sdxl.safetensors", be, &cfg, &p, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "/nonexistent/tok"), "%s", err.msg);
    /* the bare BPE files (no tokenizer_config.json): SDXL's second encoder pads with "!" */
    char dir[] = "/tmp/easel-sftok-XXXXXX";
    cr_assert(mkdtemp(dir));
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cp " FIX "sdxl/tokenizer/vocab.json " FIX
             "sdxl/tokenizer/merges.txt %s/", dir);
    cr_assert_eq(system(cmd), 0);
    uint8_t *bare = gen(FIX "sdxl.safetensors", dir, NULL, "euler", 4, 7.5f, 42);
    uint8_t *tok = gen(FIX "sdxl.safetensors", FIX "sdxl/tokenizer", NULL, "euler", 4, 7.5f, 42);
    uint8_t *want = load_rgb("sdxl_euler");
    cr_assert_geq(psnr(bare, want), 50.0, "bare tokenizer folder: %.2f dB", psnr(bare, want));
    cr_assert_geq(psnr(tok, want), 50.0, "tokenizer/: %.2f dB", psnr(tok, want));
    /* a broken tokenizer folder is named (here its vocabulary lacks "!", a byte symbol) */
    snprintf(cmd, sizeof cmd, "sed -i 's/{\"!\": 0, /{\"XX\": 0, /' %s/vocab.json", dir);
    cr_assert_eq(system(cmd), 0);
    cfg.tokenizer = dir;
    cr_assert_neq(sd_pipeline_open(FIX "sdxl.safetensors", be, &cfg, &p, &err), 0);
    cr_assert(strstr(err.msg, dir), "%s", err.msg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    free(bare), free(tok), free(want);
}

/* FILE rewritten without tensor DROP (or with conv_in of IN channels, or with a "v_pred" key
 * when DROP is "+v_pred"): returns the path. */
static char *rewrite(const char *src, const char *drop, int in_channels) {
    Err err = {0};
    SafeTensors *st = safetensors_open(src, &err);
    cr_assert(st, "%s", err.msg);
    SafeTensorsWriter *w = safetensors_writer_new();
    void *buf = NULL;
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const StTensor *t = safetensors_at(st, i);
        if (drop && !strcmp(t->name, drop))
            continue;
        if (in_channels && !strcmp(t->name, "model.diffusion_model.input_blocks.0.0.weight")) {
            int64_t shape[4] = {t->shape[0], in_channels, t->shape[2], t->shape[3]};
            size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]) * 4;
            buf = xcalloc(1, n);
            cr_assert_eq(safetensors_writer_add(w, t->name, ST_F32, 4, shape, buf, &err), 0);
            continue;
        }
        cr_assert_eq(safetensors_writer_add(w, t->name, t->dtype, t->n_dim, t->shape, t->data,
                                            &err), 0, "%s", err.msg);
    }
    float one = 1.0f;
    int64_t one_shape[1] = {1};
    if (drop && !strcmp(drop, "+v_pred"))
        cr_assert_eq(safetensors_writer_add(w, "v_pred", ST_F32, 1, one_shape, &one, &err), 0);
    char *out = xasprintf("/tmp/easel-sfbad-%d-%s.safetensors", (int)getpid(),
                          drop ? drop + (drop[0] == '+') : "inpaint");
    cr_assert_eq(safetensors_writer_save(w, out, &err), 0, "%s", err.msg);
    safetensors_writer_free(w);
    safetensors_close(st);
    free(buf);
    return out;
}

Test(pipeline_single, broken_single_files_are_named) {
    SdPipelineConfig cfg = {DTYPE_F32, NULL, 0, 0, FIX "sd1", NULL};
    SdPipeline *p = NULL;
    Err err = {0};
    /* a missing tensor: its diffusers and single-file names */
    char *f = rewrite(FIX "sd1.safetensors", "model.diffusion_model.out.2.weight", 0);
    cr_assert_neq(sd_pipeline_open(f, be, &cfg, &p, &err), 0);
    cr_assert_null(p);
    cr_assert(strstr(err.msg, f) && strstr(err.msg, "conv_out.weight"), "%s", err.msg);
    fprintf(stderr, "missing tensor: %s\n", err.msg);
    unlink(f);
    free(f);
    /* a text-encoder tensor missing */
    f = rewrite(FIX "sd1.safetensors",
                "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight", 0);
    cr_assert_neq(sd_pipeline_open(f, be, &cfg, &p, &err), 0);
    cr_assert(strstr(err.msg, f) && strstr(err.msg, "layers.1.mlp.fc2.weight"), "%s", err.msg);
    unlink(f);
    free(f);
    /* an inpainting UNet (9 input channels) */
    f = rewrite(FIX "sd1.safetensors", NULL, 9);
    cr_assert_eq(sd_pipeline_open(f, be, &cfg, &p, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "9 input channels") && strstr(err.msg, "inpainting"), "%s",
              err.msg);
    unlink(f);
    free(f);
    /* truncated */
    char cut[96];
    snprintf(cut, sizeof cut, "/tmp/easel-sfcut-%d.safetensors", (int)getpid());
    char cmd[256];
    snprintf(cmd, sizeof cmd, "head -c 600000 " FIX "sd1.safetensors > %s", cut);
    cr_assert_eq(system(cmd), 0);
    cr_assert_neq(sd_pipeline_open(cut, be, &cfg, &p, &err), 0);
    cr_assert(strstr(err.msg, cut), "%s", err.msg);
    fprintf(stderr, "truncated: %s\n", err.msg);
    unlink(cut);
    /* an unknown layout: a LoRA file given as the model */
    cr_assert_eq(sd_pipeline_open("tests/gen/fixtures/pipeline_sd_lora.safetensors", be, &cfg,
                                  &p, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "pipeline_sd_lora.safetensors") &&
                  strstr(err.msg, "not a Stable Diffusion single-file checkpoint"), "%s", err.msg);
}

/* The fixture script loaded each single file with diffusers' from_single_file (the folder's
 * configs) and got exactly the folder's weights: the files are single files as diffusers
 * reads them, not only as easel does. */
Test(pipeline_single, the_fixtures_load_in_diffusers_from_single_file) {
    json_error_t je;
    json_t *all = json_load_file(FIX "single_check.json", 0, &je);
    cr_assert(all, FIX "single_check.json:%d: %s", je.line, je.text);
    static const char *const fams[] = {"sd1", "sd2", "sdxl"};
    for (int i = 0; i < 3; i++) {
        json_t *c = json_object_get(all, fams[i]);
        cr_assert(json_is_true(json_object_get(c, "from_single_file_equal")), "%s: %s", fams[i],
                  json_dumps(json_object_get(c, "problems"), JSON_COMPACT));
    }
    json_decref(all);
}

/* The defaults a job sizes its arena by, before any weights are loaded, are the opened
 * pipeline's. */
Test(pipeline_single, defaults_without_loading_are_the_pipelines) {
    static const char *const models[] = {FIX "sd1.safetensors", FIX "sd2.safetensors",
                                         FIX "sdxl.safetensors", FIX "sd2", FIX "sdxl"};
    static const char *const toks[] = {FIX "sd1", FIX "sd2", FIX "sdxl", NULL, NULL};
    static const char *const preds[] = {NULL, "epsilon"};
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 2; k++) {
            SdPipelineConfig cfg = {DTYPE_F32, NULL, 0, 0, toks[i], preds[k]};
            SdPipeline *p = NULL;
            Err err = {0};
            int w, h, pw, ph;
            const char *fam;
            cr_assert_eq(sd_pipeline_model_defaults(models[i], preds[k], &w, &h, &fam, &err), 0,
                         "%s", err.msg);
            cr_assert_eq(sd_pipeline_open(models[i], be, &cfg, &p, &err), 0, "%s", err.msg);
            sd_pipeline_default_size(p, &pw, &ph);
            cr_assert(w == pw && h == ph, "%s %s: %dx%d, the pipeline %dx%d", models[i],
                      preds[k] ? preds[k] : "-", w, h, pw, ph);
            if (i < 3) /* a tiny folder's family is told from its widths (SD 2.x: ≥ 1024) */
                cr_assert_str_eq(fam, sd_pipeline_family(p));
            sd_pipeline_close(p);
        }
}
