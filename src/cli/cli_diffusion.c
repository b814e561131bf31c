/* cli_diffusion — `easel models add diffusion PATH [--name NAME] [--tokenizer DIR]
 * [--prediction epsilon|v]`: check a diffusers folder (model_index.json of a Stable Diffusion
 * pipeline; its unet, vae and text encoders' weights open by their diffusers names,
 * src/models/sd_weights.h) or a single-file checkpoint (its text encoders loaded with the
 * tokenizer it will be used with), and register it in the store's models table as kind
 * "diffusion", so `--model NAME` finds it; a single file's tokenizer and a prediction type
 * are kept in the row's config. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "cli.h"
#include "cli_diffusion.h"
#include "sd_text.h"
#include "sd_weights.h"
#include "store.h"
#include "store_models.h"

/* The components the pipeline loads; text_encoder_2 only for SDXL. */
static int check_component(const char *abs, const char *comp, int *sample_size, Err *err) {
    SdWeights *w = NULL;
    int rc = sd_weights_open(abs, comp, &w, err);
    if (rc)
        return rc;
    if (sample_size) {
        const char *cfg = sd_weights_config_json(w);
        json_t *j = cfg ? json_loads(cfg, 0, NULL) : NULL;
        json_t *s = j ? json_object_get(j, "sample_size") : NULL;
        *sample_size = json_is_integer(s) ? (int)json_integer_value(s) : 0;
        json_decref(j);
    }
    sd_weights_close(w);
    return 0;
}

/* A single-file checkpoint: its components open, its text encoders load with TOKENIZER
 * (else the first registered CLIP model's folder), then the row. */
static int add_single(const CliGlobal *g, const char *abs, const char *name,
                      const char *tokenizer, const char *prediction) {
    Err err = {0};
    SdSingleInfo si;
    if (sd_weights_single_info(abs, &si, &err) != 0) {
        cli_error("models add diffusion: %s", err.msg);
        return 1;
    }
    if (si.in_channels != 4) {
        cli_error("models add diffusion: %s: the UNet takes %d input channels (%s): easel "
                  "generates from text alone", abs, si.in_channels,
                  si.in_channels == 9 ? "an inpainting model" : "not a text-to-image model");
        return 1;
    }
    int xl = !strcmp(si.family, "sdxl"), sample = 0, status = 1;
    const char *comps[] = {"unet", "vae", "text_encoder", xl ? "text_encoder_2" : NULL};
    for (int i = 0; i < 4 && comps[i]; i++) {
        if (check_component(abs, comps[i], i == 0 ? &sample : NULL, &err)) {
            cli_error("models add diffusion: %s (component %s)", err.msg, comps[i]);
            return 1;
        }
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    char tok_abs[PATH_MAX];
    char *tok = NULL;
    if (tokenizer) {
        if (!realpath(tokenizer, tok_abs)) {
            cli_error("models add diffusion: --tokenizer %s: no such folder", tokenizer);
            goto out;
        }
        tok = xstrdup(tok_abs);
    } else {
        StoreModel *v = NULL;
        int n = 0;
        if (store_model_list(st, "clip", &v, &n, NULL) == 0 && n > 0)
            tok = xstrdup(v[0].path);
        store_model_list_free(v, n);
    }
    if (!tok) {
        cli_error("models add diffusion: %s is a single-file checkpoint, which holds no "
                  "tokenizer: give --tokenizer DIR (a folder with vocab.json and merges.txt, "
                  "such as the tokenizer/ of any SD model on Hugging Face, or a diffusers model "
                  "folder), or register a CLIP model first (easel models add clip PATH)", abs);
        goto out;
    }
    SdText *t = NULL;
    SdTextOptions to = {tok, NULL, NULL, 0, NULL};
    if (sd_text_open(abs, &to, CLIP_WEIGHTS_BF16, &t, &err) != 0) {
        cli_error("models add diffusion: %s", err.msg);
        goto out;
    }
    sd_text_free(t);
    /* the size the family's released model was trained at (pipeline.c's rule) */
    int small = si.turbo || (!strcmp(si.family, "sd2") && prediction &&
                             !strcmp(prediction, "epsilon"));
    int size = (small ? 64 : sample) * 8;
    char cls[64];
    snprintf(cls, sizeof cls, "single-file %s%s",
             xl ? "SDXL" : !strcmp(si.family, "sd2") ? "SD 2.x" : "SD 1.x",
             si.turbo ? " Turbo" : "");
    json_t *cfg = json_pack("{s:s, s:s, s:i, s:s}", "class", cls, "family",
                            xl ? "sdxl" : "sd", "default_size", size, "tokenizer", tok);
    if (prediction)
        json_object_set_new(cfg, "prediction", json_string(prediction));
    char *cfg_s = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    if (store_model_add(st, "diffusion", name, abs, cfg_s, &err) != 0) {
        status = cli_fail(&err);
    } else {
        printf("registered diffusion model '%s': %s\n  %s (%s), default size %dx%d, "
               "tokenizer %s%s%s\n", name, abs, cls, si.family, size, size, tok,
               prediction ? ", prediction " : "", prediction ? prediction : "");
        status = 0;
    }
    free(cfg_s);
out:
    free(tok);
    store_close(st);
    return status;
}

int cli_models_add_diffusion(const CliGlobal *g, const char *abs, const char *name,
                             const char *tokenizer, const char *prediction) {
    Err err = {0};
    if (prediction && strcmp(prediction, "epsilon") && strcmp(prediction, "v")) {
        cli_error("models add diffusion: --prediction %s: use epsilon or v", prediction);
        return 2;
    }
    if (base_is_file(abs))
        return add_single(g, abs, name, tokenizer, prediction);
    char *index = xasprintf("%s/model_index.json", abs);
    json_error_t je;
    json_t *j = json_load_file(index, 0, &je);
    if (!j) {
        cli_error("models add diffusion: %s: %s (a diffusers model folder holds "
                  "model_index.json, unet/, vae/, text_encoder/ and tokenizer/, as "
                  "StableDiffusionPipeline.save_pretrained writes it)", index, je.text);
        free(index);
        return 1;
    }
    const char *cls = json_string_value(json_object_get(j, "_class_name"));
    if (!cls || !strstr(cls, "StableDiffusion")) {
        cli_error("models add diffusion: %s: _class_name is %s, not a Stable Diffusion "
                  "pipeline (StableDiffusionPipeline or StableDiffusionXLPipeline)", index,
                  cls ? cls : "missing");
        json_decref(j);
        free(index);
        return 1;
    }
    int xl = strstr(cls, "XL") != NULL;
    const char *family = xl ? "sdxl" : "sd";
    char *cls_copy = xstrdup(cls);
    json_decref(j);
    free(index);
    int sample = 0, status = 1;
    const char *comps[] = {"unet", "vae", "text_encoder", xl ? "text_encoder_2" : NULL};
    for (int i = 0; i < 4 && comps[i]; i++) {
        if (check_component(abs, comps[i], i == 0 ? &sample : NULL, &err)) {
            cli_error("models add diffusion: %s (component %s)", err.msg, comps[i]);
            goto out;
        }
    }
    json_t *cfg = json_pack("{s:s, s:s, s:i}", "class", cls_copy, "family", family,
                            "default_size", sample * 8);
    if (prediction) /* sf15 */
        json_object_set_new(cfg, "prediction", json_string(prediction));
    if (tokenizer) {
        char tabs[PATH_MAX];
        json_object_set_new(cfg, "tokenizer",
                            json_string(realpath(tokenizer, tabs) ? tabs : tokenizer));
    }
    char *cfg_s = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    Store *st = cli_open_store(g);
    if (st) {
        if (store_model_add(st, "diffusion", name, abs, cfg_s, &err) != 0) {
            status = cli_fail(&err);
        } else {
            printf("registered diffusion model '%s': %s\n  %s (%s), default size %dx%d\n",
                   name, abs, cls_copy, family, sample * 8, sample * 8);
            status = 0;
        }
        store_close(st);
    }
    free(cfg_s);
out:
    free(cls_copy);
    return status;
}
