/* cli_diffusion — `easel models add diffusion PATH [--name NAME]`: check a diffusers folder
 * (model_index.json of a Stable Diffusion pipeline; its unet, vae and text encoders' weights
 * open by their diffusers names, src/models/sd_weights.h) and register it in the store's
 * models table as kind "diffusion", so `--model NAME` finds it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "cli.h"
#include "cli_diffusion.h"
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

int cli_models_add_diffusion(const CliGlobal *g, const char *abs, const char *name) {
    Err err = {0};
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
