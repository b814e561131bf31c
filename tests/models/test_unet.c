/* unet: tiny random diffusers UNet2DConditionModels (an SD-1.5-shaped one and an SDXL-shaped
 * one with text_time added conditioning, per-level transformer depth and linear projections),
 * made by tests/models/make_unet_fixtures.py with diffusers 0.42.1, give diffusers' noise
 * prediction within 1e-4 on the CPU backend and on the emulated CUDA backend (the CUDA
 * backend's code on the host harness: the SDXL-shaped model only, on a batch of one 8×8
 * latent, as every emulated launch starts a thread per GPU thread), and bad weights or
 * configs are named in the error. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "backend_impl.h"
#include "base.h"
#include "fmt_safetensors.h"
#include "sd_weights.h"
#include "unet.h"

#include "unet_fixture.h"

static void check(Backend *be, const char *dir, const char *cs) {
    double scale, md = run_case(be, dir, cs, DTYPE_F32, &scale);
    cr_assert(scale > 0.1, "degenerate fixture output (max |out| %g)", scale);
    cr_log_info("%s case %s on %s: max |easel - diffusers| = %g (max |out| %g)", dir, cs,
                backend_name(be), md, scale);
    cr_assert(md <= 1e-4, "%s case %s on %s: max |easel − diffusers| = %g (max |out| %g)", dir,
              cs, backend_name(be), md, scale);
    backend_close(be);
}

Test(unet, sd_matches_diffusers_cpu) { check(open_cpu(), FIX "unet_sd", "a"); }
Test(unet, sdxl_matches_diffusers_cpu) { check(open_cpu(), FIX "unet_sdxl", "a"); }
Test(unet, sd_not_square_cpu) { check(open_cpu(), FIX "unet_sd", "r"); }
Test(unet, sdxl_not_square_cpu) { check(open_cpu(), FIX "unet_sdxl", "r"); }
/* three levels, layers_per_block [1,2,1], flip_sin_to_cos false, freq_shift 1, 3 outputs */
Test(unet, deep_matches_diffusers_cpu) {
    check(open_cpu(), FIX "unet_deep", "a");
    check(open_cpu(), FIX "unet_deep", "r");
}
/* 9×7 latents: not multiples of 2^(levels−1), so the downsamplers round up and each upsampler
 * resizes to its skip connection's size by nearest (diffusers' upsample_size); the three-level
 * model goes 9×7 → 5×4 → 3×2 and back. */
Test(unet, odd_sizes_match_diffusers_cpu) {
    check(open_cpu(), FIX "unet_sd", "o");
    check(open_cpu(), FIX "unet_sdxl", "o");
    check(open_cpu(), FIX "unet_deep", "o");
}
Test(unet, sdxl_matches_diffusers_emu, .timeout = 120) {
    check(open_emu(), FIX "unet_sdxl", "s");
}

/* An arena too small for the activations: the forward fails with the backend's ERR_NOMEM
 * (naming the arena), writes nothing it did not compute, and the Unet stays usable. */
Test(unet, arena_too_small_is_an_error) {
    Backend *be = NULL;
    Err err = {0};
    BackendConfig cfg = {.threads = 1, .arena_bytes = (size_t)256 << 10};
    cr_assert_eq(backend_open("cpu", &cfg, &be, NULL, 0, &err), 0, "%s", err.msg);
    SdWeights *w = NULL;
    cr_assert_eq(sd_weights_open(FIX "unet_sd", "unet", &w, &err), 0, "%s", err.msg);
    Unet *u = NULL;
    cr_assert_eq(unet_load(w, be, NULL, &u, &err), 0, "%s", err.msg);
    int64_t xs[4] = {2, 4, 16, 16}, es[3] = {2, 7, 24};
    Tensor x = backend_tensor_new(be, DTYPE_F32, 4, xs);
    Tensor e = backend_tensor_new(be, DTYPE_F32, 3, es);
    Tensor o = backend_tensor_new(be, DTYPE_F32, 4, xs);
    backend_zero(be, &x);
    backend_zero(be, &e);
    float t[2] = {1, 2};
    cr_assert_eq(unet_forward(u, be, &o, &x, t, &e, NULL, NULL, &err), ERR_NOMEM);
    cr_assert(strstr(err.msg, "arena"), "%s", err.msg);
    xs[2] = xs[3] = 2; /* a 2x2 latent fits */
    Tensor x2 = tensor_view_dtype(x.ptr, DTYPE_F32, 4, xs);
    Tensor o2 = tensor_view_dtype(o.ptr, DTYPE_F32, 4, xs);
    x2.device = o2.device = backend_device(be);
    cr_assert_eq(unet_forward(u, be, &o2, &x2, t, &e, NULL, NULL, &err), 0, "%s", err.msg);
    backend_tensor_free(be, &x);
    backend_tensor_free(be, &e);
    backend_tensor_free(be, &o);
    unet_free(u);
    sd_weights_close(w);
    backend_close(be);
}

/* Half resident weights: the output moves by about the weights' rounding, not more. */
Test(unet, half_weights_stay_close) {
    Backend *be = open_cpu();
    DType dts[] = {DTYPE_F16, DTYPE_BF16};
    double tol[] = {1e-2, 6e-2};
    for (int i = 0; i < 2; i++) {
        double scale, md = run_case(be, FIX "unet_sdxl", "a", dts[i], &scale);
        cr_assert(md > 0 && md <= tol[i] * scale, "%s weights: max diff %g, max |out| %g",
                  dtype_name(dts[i]), md, scale);
    }
    backend_close(be);
}

/* ---- errors --------------------------------------------------------------------------------- */

static char tmp[64];

static void mk_tmp(void) {
    strcpy(tmp, "/tmp/easel-unet-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}

static void rm_tmp(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

/* tmp/unet/ = the SD fixture's config and weights, with tensor DROP left out and tensor
 * RESHAPE (if any) given one more row, and config key KEY set to JSON value VAL (if any). */
static void make_variant(const char *drop, const char *reshape, const char *key,
                         const char *val) {
    char path[256], cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/unet", tmp);
    cr_assert_eq(system(cmd), 0);
    Err err = {0};
    SafeTensors *st = safetensors_open(FIX "unet_sd/diffusion_pytorch_model.safetensors", &err);
    cr_assert_not_null(st, "%s", err.msg);
    SafeTensorsWriter *wr = safetensors_writer_new();
    float *bufs[1024] = {0};
    size_t nb = 0;
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const StTensor *t = safetensors_at(st, i);
        if (drop && !strcmp(t->name, drop))
            continue;
        int64_t shape[ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        size_t n = (size_t)t->n_elem;
        if (reshape && !strcmp(t->name, reshape)) {
            n += n / (size_t)shape[0];
            shape[0] += 1;
        }
        float *p = xcalloc(n, sizeof(float));
        cr_assert_eq(safetensors_read_f32(st, t, p, (size_t)t->n_elem, &err), 0);
        cr_assert_lt(nb, 1024u);
        bufs[nb++] = p;
        cr_assert_eq(safetensors_writer_add(wr, t->name, ST_F32, t->n_dim, shape, p, &err), 0,
                     "%s", err.msg);
    }
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", tmp);
    cr_assert_eq(safetensors_writer_save(wr, path, &err), 0, "%s", err.msg);
    safetensors_writer_free(wr);
    for (size_t i = 0; i < nb; i++)
        free(bufs[i]);
    safetensors_close(st);
    snprintf(path, sizeof path, "%s/unet/config.json", tmp);
    json_error_t je;
    json_t *cfg = json_load_file(FIX "unet_sd/config.json", 0, &je);
    cr_assert_not_null(cfg, "%s", je.text);
    if (key) {
        json_t *v = json_loads(val, JSON_DECODE_ANY, &je);
        cr_assert_not_null(v, "%s", je.text);
        json_object_set_new(cfg, key, v);
    }
    cr_assert_eq(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
    json_decref(cfg);
}

/* Loading tmp fails with code and a message holding every one of the NULL-ended words. */
static void load_fails(int code, const char *const *words) {
    Backend *be = open_cpu();
    Err err = {0};
    SdWeights *w = NULL;
    cr_assert_eq(sd_weights_open(tmp, "unet", &w, &err), 0, "%s", err.msg);
    Unet *u = NULL;
    int rc = unet_load(w, be, NULL, &u, &err);
    cr_assert_null(u);
    cr_assert_eq(rc, code, "rc %d, message: %s", rc, err.msg);
    for (int i = 0; words[i]; i++)
        cr_assert(strstr(err.msg, words[i]), "message lacks \"%s\": %s", words[i], err.msg);
    sd_weights_close(w);
    backend_close(be);
}

TestSuite(unet_errors, .init = mk_tmp, .fini = rm_tmp);

Test(unet_errors, missing_tensor_named) {
    make_variant("up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight", NULL, NULL,
                 NULL);
    const char *words[] = {"up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight",
                           "diffusion_pytorch_model.safetensors", NULL};
    load_fails(ERR_NOTFOUND, words);
}

Test(unet_errors, wrong_shape_named) {
    make_variant(NULL, "down_blocks.1.resnets.0.conv_shortcut.weight", NULL, NULL);
    const char *words[] = {"down_blocks.1.resnets.0.conv_shortcut.weight", "33", NULL};
    load_fails(ERR_FORMAT, words);
}

Test(unet_errors, bad_block_type_named) {
    make_variant(NULL, NULL, "down_block_types", "[\"CrossAttnDownBlock2D\", \"AttnDownBlock2D\"]");
    const char *words[] = {"config.json", "down_block_types", "AttnDownBlock2D",
                           "CrossAttnDownBlock2D and DownBlock2D", NULL};
    load_fails(ERR_FORMAT, words);
}

Test(unet_errors, bad_heads_named) {
    make_variant(NULL, NULL, "attention_head_dim", "[4, 5]");
    const char *words[] = {"config.json", "attention_head_dim", "head count 5", NULL};
    load_fails(ERR_FORMAT, words);
}

Test(unet_errors, unsupported_field_named) {
    make_variant(NULL, NULL, "resnet_time_scale_shift", "\"scale_shift\"");
    const char *words[] = {"config.json", "resnet_time_scale_shift", NULL};
    load_fails(ERR_FORMAT, words);
}

Test(unet_errors, forward_checks_sizes) {
    Backend *be = open_cpu();
    Err err = {0};
    SdWeights *w = NULL;
    cr_assert_eq(sd_weights_open(FIX "unet_sd", "unet", &w, &err), 0, "%s", err.msg);
    Unet *u = NULL;
    cr_assert_eq(unet_load(w, be, NULL, &u, &err), 0, "%s", err.msg);
    int64_t xs[4] = {1, 4, 6, 8}, es[3] = {1, 7, 24};
    Tensor x = backend_tensor_new(be, DTYPE_F32, 4, xs);
    Tensor e = backend_tensor_new(be, DTYPE_F32, 3, es);
    Tensor o = backend_tensor_new(be, DTYPE_F32, 4, xs);
    backend_zero(be, &x);
    backend_zero(be, &e);
    float t = 1;
    int64_t s7[4] = {1, 4, 7, 8}; /* odd: any size runs (as in diffusers) */
    Tensor x7 = backend_tensor_new(be, DTYPE_F32, 4, s7);
    Tensor o7 = backend_tensor_new(be, DTYPE_F32, 4, s7);
    backend_zero(be, &x7);
    cr_assert_eq(unet_forward(u, be, &o7, &x7, &t, &e, NULL, NULL, &err), 0, "%s", err.msg);
    backend_tensor_free(be, &x7);
    backend_tensor_free(be, &o7);
    xs[2] = 0;
    Tensor x0 = tensor_view_dtype(x.ptr, DTYPE_F32, 4, xs), o0 = x0;
    x0.device = o0.device = backend_device(be);
    cr_assert_eq(unet_forward(u, be, &o0, &x0, &t, &e, NULL, NULL, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "latents 0x8: height and width must be at least 1"), "%s", err.msg);
    cr_assert_eq(unet_forward(u, be, &o, &x, NULL, &e, NULL, NULL, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "timesteps"), "%s", err.msg);
    Backend *other = open_cpu();
    cr_assert_eq(unet_forward(u, other, &o, &x, &t, &e, NULL, NULL, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "parameters live on"), "%s", err.msg);
    backend_close(other);
    cr_assert_eq(unet_forward(u, be, &o, &x, &t, &e, NULL, NULL, &err), 0, "%s", err.msg);
    Unet *u2 = NULL;
    cr_assert_eq(unet_load(w, be, &(UnetOptions){(DType)7}, &u2, &err), ERR_USAGE);
    cr_assert_null(u2);
    backend_tensor_free(be, &x);
    backend_tensor_free(be, &e);
    backend_tensor_free(be, &o);
    unet_free(u);
    sd_weights_close(w);
    backend_close(be);
}

/* ---- config.json as diffusers reads it ------------------------------------------------------ */

/* The fields of stabilityai/stable-diffusion-2-1's unet/config.json that shape the model:
 * attention_head_dim [5,10,20,20] is read as head COUNTS (64-wide heads), as diffusers does. */
Test(unet_config, sd21_heads_from_attention_head_dim) {
    const char *json =
        "{\"attention_head_dim\": [5, 10, 20, 20], \"block_out_channels\": [320, 640, 1280, 1280],"
        " \"cross_attention_dim\": 1024, \"down_block_types\": [\"CrossAttnDownBlock2D\","
        " \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
        " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\","
        " \"CrossAttnUpBlock2D\"], \"layers_per_block\": 2, \"use_linear_projection\": true,"
        " \"upcast_attention\": true, \"sample_size\": 96, \"num_attention_heads\": null,"
        " \"mid_block_type\": \"UNetMidBlock2DCrossAttn\", \"norm_num_groups\": 32}";
    UnetConfig c;
    Err err = {0};
    cr_assert_eq(unet_config_parse(json, "sd21", &c, &err), 0, "%s", err.msg);
    int heads[] = {5, 10, 20, 20};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(c.heads[i], heads[i]);
        cr_assert_eq(c.block_out[i] / c.heads[i], 64);
        cr_assert_eq(c.layers[i], 2);
        cr_assert_eq(c.tlayers[i], 1);
        cr_assert_eq(c.down_attn[i], i < 3);
        cr_assert_eq(c.up_attn[i], i > 0);
    }
    cr_assert_eq(c.levels, 4);
    cr_assert_eq(c.cross_dim, 1024);
    cr_assert_eq(c.time_embed_dim, 1280);
    cr_assert(c.linear_proj && c.upcast_attention && !c.text_time);
}

/* stabilityai/stable-diffusion-xl-base-1.0's shaping fields; num_attention_heads, when given,
 * wins over attention_head_dim. */
Test(unet_config, sdxl_text_time_and_depths) {
    const char *json =
        "{\"addition_embed_type\": \"text_time\", \"addition_time_embed_dim\": 256,"
        " \"attention_head_dim\": [5, 10, 20], \"block_out_channels\": [320, 640, 1280],"
        " \"cross_attention_dim\": 2048, \"down_block_types\": [\"DownBlock2D\","
        " \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\"], \"up_block_types\":"
        " [\"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"UpBlock2D\"],"
        " \"projection_class_embeddings_input_dim\": 2816, \"transformer_layers_per_block\":"
        " [1, 2, 10], \"use_linear_projection\": true, \"sample_size\": 128}";
    UnetConfig c;
    Err err = {0};
    cr_assert_eq(unet_config_parse(json, "sdxl", &c, &err), 0, "%s", err.msg);
    cr_assert(c.text_time);
    cr_assert_eq(c.add_time_dim, 256);
    cr_assert_eq(c.add_in_dim - 6 * c.add_time_dim, 1280); /* bigG's pooled projection */
    cr_assert_eq(c.tlayers[0], 1);
    cr_assert_eq(c.tlayers[1], 2);
    cr_assert_eq(c.tlayers[2], 10);
    cr_assert_eq(c.heads[2], 20);
    char *j2 = xasprintf("%.*s, \"num_attention_heads\": [10, 20, 40]}",
                         (int)strlen(json) - 1, json);
    cr_assert_eq(unet_config_parse(j2, "sdxl", &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.heads[0], 10);
    cr_assert_eq(c.heads[2], 40);
    free(j2);
}

Test(unet_config, refusals_name_the_field) {
    static const char *const bad[][2] = {
        {"{\"block_out_channels\": [32, 64], \"down_block_types\": [\"DownBlock2D\"],"
         " \"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\"]}", "down_block_types"},
        {"{\"block_out_channels\": [32], \"down_block_types\": [\"DownBlock2D\"],"
         " \"up_block_types\": [\"UpBlock2D\"], \"mid_block_type\": null}", "mid_block_type"},
        {"{\"block_out_channels\": [32], \"down_block_types\": [\"DownBlock2D\"],"
         " \"up_block_types\": [\"UpBlock2D\"], \"addition_embed_type\": \"text\"}",
         "addition_embed_type"},
        {"{\"block_out_channels\": [32], \"down_block_types\": [\"DownBlock2D\"],"
         " \"up_block_types\": [\"UpBlock2D\"], \"time_cond_proj_dim\": 256}",
         "time_cond_proj_dim"},
        {"{\"block_out_channels\": [32], \"down_block_types\": [\"DownBlock2D\"],"
         " \"up_block_types\": [\"UpBlock2D\"], \"norm_num_groups\": 5}", "norm_num_groups"},
        {"{\"block_out_channels\": [], \"down_block_types\": []}", "block_out_channels"},
        {"{\"block_out_channels\": [32], \"down_block_types\": [\"DownBlock2D\"],"
         " \"up_block_types\": [\"UpBlock2D\"], \"class_embed_type\": \"timestep\"}",
         "\"class_embed_type\" is not supported (null only)"},
        {"[1, 2", "where.json:1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        UnetConfig c;
        Err err = {0};
        cr_assert_eq(unet_config_parse(bad[i][0], "where.json", &c, &err), ERR_FORMAT,
                     "case %zu accepted", i);
        cr_assert(strstr(err.msg, bad[i][1]) && strstr(err.msg, "where.json"),
                  "case %zu: message lacks %s: %s", i, bad[i][1], err.msg);
    }
}
