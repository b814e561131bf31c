/* pipeline — diffusers' StableDiffusionPipeline / StableDiffusionXLPipeline __call__, step by
 * step (pipeline.h; doc/generate.md, "Pipeline"). */
#include "pipeline.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "infile.h"
#include "scheduler.h"
#include "sd_text.h"
#include "sd_weights.h"
#include "torch_rng.h"
#include "unet.h"
#include "vae.h"

struct SdPipeline {
    char *path;
    Backend *be;
    SdText *text;
    Unet *unet;
    Vae *vae;
    const char *family;
    int xl;
    int scale;        /* pixels per latent pixel (the VAE's) */
    int multiple;     /* sizes must be multiples of this: the VAE's scale, as diffusers checks
                       * (the UNet takes any latent size, unet.h) */
    int def_w, def_h;
    char *sched_path; /* scheduler/scheduler_config.json, or what stands for a single file's */
    char *sched_json; /* its text (a single file's: the family's, sched_family_json) */
    int sched_kind;   /* the kind its _class_name names, or -1 (then NULL is refused) */
    char sched_class[64];
};

/* The sampler kind a scheduler_config.json's _class_name means (-1: none easel implements). */
static int sched_class_kind(const char *text, char *cls, size_t cls_len) {
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    int kind = -1;
    snprintf(cls, cls_len, "no _class_name");
    if (!root)
        return -1;
    const char *c = json_string_value(json_object_get(root, "_class_name"));
    if (c) {
        snprintf(cls, cls_len, "%s", c);
        if (!strcmp(c, "EulerDiscreteScheduler"))
            kind = SCHED_EULER;
        else if (!strcmp(c, "EulerAncestralDiscreteScheduler"))
            kind = SCHED_EULER_A;
        else if (!strcmp(c, "DDIMScheduler"))
            kind = SCHED_DDIM;
        else if (!strcmp(c, "DPMSolverMultistepScheduler"))
            kind = json_is_true(json_object_get(root, "use_karras_sigmas"))
                       ? SCHED_DPMPP_2M_KARRAS
                       : SCHED_DPMPP_2M;
        else if (!strcmp(c, "PNDMScheduler"))
            kind = SCHED_PNDM;
    }
    json_decref(root);
    return kind;
}

/* ---- single-file checkpoints: the scheduler settings a file lacks ------------------------ */

/* The released models' scheduler_config.json (diffusers' configs of runwayml SD 1.5,
 * stabilityai SD 2.1 and SDXL base 1.0, SD-Turbo / SDXL-Turbo), as easel's own table: every
 * one uses the same scaled-linear betas. */
typedef struct SchedFamily {
    const char *name;       /* what doc/models.md calls it */
    const char *cls;        /* _class_name */
    const char *spacing;    /* timestep_spacing */
    const char *prediction; /* prediction_type */
} SchedFamily;

static const SchedFamily SCHED_FAMILIES[] = {
    {"SD 1.x", "PNDMScheduler", "leading", "epsilon"},
    {"SD 2.x", "DDIMScheduler", "leading", "v_prediction"},       /* 2.1 (768, v) */
    {"SD 2.x base", "PNDMScheduler", "leading", "epsilon"},       /* 2.1-base (512) */
    {"SDXL", "EulerDiscreteScheduler", "leading", "epsilon"},
    {"Turbo", "EulerAncestralDiscreteScheduler", "trailing", "epsilon"},
};

static char *sched_family_json(const SchedFamily *f) {
    json_t *c = json_pack("{s:s, s:f, s:s, s:f, s:b, s:s, s:i, s:s, s:f, s:b, s:b, s:i, s:s, "
                          "s:n, s:b}",
                          "_class_name", f->cls, "beta_end", 0.012, "beta_schedule",
                          "scaled_linear", "beta_start", 0.00085, "clip_sample", 0,
                          "interpolation_type", "linear", "num_train_timesteps", 1000,
                          "prediction_type", f->prediction, "sample_max_value", 1.0,
                          "set_alpha_to_one", 0, "skip_prk_steps", 1, "steps_offset", 1,
                          "timestep_spacing", f->spacing, "trained_betas",
                          "use_karras_sigmas", 0);
    json_object_set_new(c, "_easel_defaults_of", json_string(f->name));
    char *s = json_dumps(c, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(c);
    return s;
}

/* The SCHED_FAMILIES row a single file samples with: the family's released scheduler; SD 2.x
 * is 2.1 (768, v-prediction) unless the user says epsilon (2.1-base, 512). */
static int single_sched_family(const SdSingleInfo *si, const char *pred) {
    if (si->turbo)
        return 4;
    if (!strcmp(si->family, "sdxl"))
        return 3;
    if (!strcmp(si->family, "sd2"))
        return pred && !strcmp(pred, "epsilon") ? 2 : 1;
    return 0;
}

/* TEXT with prediction_type set to PRED ("epsilon" or "v"), or NULL on a JSON error. */
static char *sched_with_prediction(const char *text, const char *pred, const char *what,
                                   Err *err) {
    json_error_t je;
    json_t *c = json_loads(text, 0, &je);
    if (!c || !json_is_object(c)) {
        json_decref(c);
        err_set(err, ERR_FORMAT, "%s:%d: %s", what, je.line, je.text);
        return NULL;
    }
    json_object_set_new(c, "prediction_type",
                        json_string(!strcmp(pred, "v") ? "v_prediction" : "epsilon"));
    char *s = json_dumps(c, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(c);
    return s;
}

/* A single file trained at 512² whose UNet config (the family's) says more: the Turbos, and
 * SD 2.x told epsilon (2.1-base). */
static int single_small(const SdSingleInfo *si, const char *pred) {
    return si->is_single && (si->turbo || (!strcmp(si->family, "sd2") && pred &&
                                           !strcmp(pred, "epsilon")));
}

void sd_pipeline_close(SdPipeline *p) {
    if (!p)
        return;
    vae_free(p->vae);
    unet_free(p->unet);
    sd_text_free(p->text);
    free(p->sched_path);
    free(p->sched_json);
    free(p->path);
    free(p);
}

int sd_pipeline_open(const char *path, Backend *be, const SdPipelineConfig *cfg,
                     SdPipeline **out, Err *err) {
    *out = NULL;
    DType wt = cfg ? cfg->weights : DTYPE_F32;
    const char *pred = cfg && cfg->prediction && cfg->prediction[0] ? cfg->prediction : NULL;
    if (pred && strcmp(pred, "epsilon") && strcmp(pred, "v"))
        return err_set(err, ERR_USAGE, "prediction \"%s\": use epsilon or v", pred);
    SdSingleInfo si;
    int rc = sd_weights_single_info(path, &si, err);
    if (rc)
        return rc;
    if (si.is_single && si.in_channels != 4)
        return err_set(err, ERR_USAGE, "%s: the UNet takes %d input channels (%s): easel "
                       "generates from text alone (4 latent channels); use a text-to-image "
                       "checkpoint", path, si.in_channels,
                       si.in_channels == 9 ? "an inpainting model: latents, mask and masked "
                       "image" : "not a text-to-image model");
    if (!si.is_single) {
        char *mi = xasprintf("%s/model_index.json", path);
        FILE *f = fopen(mi, "rb");
        if (!f) {
            err_set(err, ERR_NOTFOUND,
                    "%s: no model_index.json: not a diffusers model folder (give the folder "
                    "that holds model_index.json, unet/, vae/, text_encoder/, scheduler/, or a "
                    "single-file .safetensors checkpoint)", mi);
            free(mi);
            return ERR_NOTFOUND;
        }
        fclose(f);
        free(mi);
    }
    SdPipeline *p = calloc(1, sizeof *p);
    if (!p)
        return err_set(err, ERR_NOMEM, "pipeline: out of memory");
    p->path = xstrdup(path);
    p->be = be;
    int small = single_small(&si, pred); /* trained at 512² (its UNet config says more) */
    if (si.is_single) {
        int f = single_sched_family(&si, pred);
        p->sched_path = xasprintf("%s (the %s scheduler config)", path, SCHED_FAMILIES[f].name);
        p->sched_json = sched_family_json(&SCHED_FAMILIES[f]);
        if (si.v_pred && !pred)
            pred = "v";
    } else {
        p->sched_path = xasprintf("%s/scheduler/scheduler_config.json", path);
        unsigned char *buf = NULL;
        size_t len = 0;
        if (!base_is_file(p->sched_path))
            rc = err_set(err, ERR_NOTFOUND, "%s: missing (a diffusers model folder has its "
                         "scheduler's settings there)", p->sched_path);
        else
            rc = infile_read_all(p->sched_path, "scheduler config", INFILE_MAX_JSON, &buf, &len,
                                 err);
        p->sched_json = (char *)buf;
    }
    if (!rc && pred) {
        char *s2 = sched_with_prediction(p->sched_json, pred, p->sched_path, err);
        if (!s2)
            rc = ERR_FORMAT;
        free(p->sched_json);
        p->sched_json = s2;
    }
    const char **lp = NULL;
    float *ls = NULL;
    int nl = cfg ? cfg->n_loras : 0;
    if (nl) {
        lp = xmalloc((size_t)nl * sizeof *lp);
        ls = xmalloc((size_t)nl * sizeof *ls);
        for (int i = 0; i < nl; i++) {
            lp[i] = cfg->loras[i].path;
            ls[i] = cfg->loras[i].scale;
        }
    }
    SdTextOptions to = {cfg ? cfg->tokenizer : NULL, lp, ls, nl, be}; /* on the UNet's backend */
    if (!rc)
        rc = sd_text_open(path, &to, wt == DTYPE_F32 ? CLIP_WEIGHTS_F32 : CLIP_WEIGHTS_BF16,
                          &p->text, err);
    free(lp);
    free(ls);
    SdWeights *w = NULL;
    if (!rc)
        rc = sd_weights_open(path, "unet", &w, err);
    for (int i = 0; !rc && cfg && i < cfg->n_loras; i++)
        rc = sd_weights_add_lora(w, cfg->loras[i].path, cfg->loras[i].scale, err);
    if (!rc) {
        UnetOptions uo = {wt};
        rc = unet_load(w, be, &uo, &p->unet, err);
        if (!rc && (rc = sd_weights_check_used(w, err)) != 0) {
            unet_free(p->unet);
            p->unet = NULL;
        }
    }
    sd_weights_close(w);
    if (!rc) {
        VaeOptions vo = {0};
        vo.parts = VAE_DECODER;
        vo.weight_dtype = wt;
        vo.arena_bytes = cfg ? cfg->arena_bytes : 0;
        rc = vae_load(be, path, &vo, &p->vae, err);
    }
    if (rc) {
        if (err && strncmp(err->msg, path, strlen(path))) /* not named yet */
            err_prefix(err, "%s", path);
        sd_pipeline_close(p);
        return rc;
    }
    const UnetConfig *uc = unet_config(p->unet);
    p->xl = sd_text_kind(p->text) == SD_TEXT_SDXL;
    p->family = si.is_single ? si.family
                : p->xl ? "sdxl" : sd_text_width(p->text) >= 1024 ? "sd2" : "sd1";
    p->scale = vae_scale(vae_config(p->vae));
    p->multiple = p->scale;
    p->def_w = p->def_h = (small ? 64 : uc->sample_size) * p->scale;
    if (uc->cross_dim != sd_text_width(p->text) ||
        (p->xl && (!uc->text_time || uc->add_in_dim != sd_text_pooled_width(p->text) +
                                                        6 * uc->add_time_dim)) ||
        (!p->xl && uc->text_time) || uc->in_channels != vae_config(p->vae)->latent_channels ||
        uc->out_channels != uc->in_channels) {
        err_set(err, ERR_FORMAT,
                "%s: the UNet (cross_attention_dim %d, in/out channels %d/%d%s) does not fit the "
                "text encoders (width %d) and the VAE (%d latent channels)",
                path, uc->cross_dim, uc->in_channels, uc->out_channels,
                uc->text_time ? ", text_time" : "", sd_text_width(p->text),
                vae_config(p->vae)->latent_channels);
        sd_pipeline_close(p);
        return ERR_FORMAT;
    }
    p->sched_kind = sched_class_kind(p->sched_json, p->sched_class, sizeof p->sched_class);
    *out = p;
    return 0;
}

int sd_pipeline_model_defaults(const char *path, const char *prediction, int *width,
                               int *height, const char **family, Err *err) {
    SdSingleInfo si;
    int rc = sd_weights_single_info(path, &si, err);
    SdWeights *u = NULL, *v = NULL;
    UnetConfig uc;
    VaeConfig vc;
    if (!rc)
        rc = sd_weights_open(path, "unet", &u, err);
    if (!rc)
        rc = sd_weights_open(path, "vae", &v, err);
    if (!rc && (!sd_weights_config_json(u) || !sd_weights_config_json(v)))
        rc = err_set(err, ERR_NOTFOUND, "%s: no unet/config.json or vae/config.json", path);
    if (!rc)
        rc = unet_config_parse(sd_weights_config_json(u), sd_weights_where(u), &uc, err);
    if (!rc)
        rc = vae_config_parse(sd_weights_config_json(v), sd_weights_where(v), &vc, err);
    sd_weights_close(u);
    sd_weights_close(v);
    if (rc)
        return rc;
    const char *pred = prediction && prediction[0] ? prediction : NULL;
    *width = *height = (single_small(&si, pred) ? 64 : uc.sample_size) * vae_scale(&vc);
    *family = si.is_single ? si.family
              : uc.text_time ? "sdxl" : uc.cross_dim >= 1024 ? "sd2" : "sd1";
    return 0;
}

const char *sd_pipeline_model_scheduler(const char *path, const char *prediction) {
    SdSingleInfo si;
    char cls[64];
    int kind = -1;
    if (sd_weights_single_info(path, &si, NULL))
        return NULL;
    if (si.is_single) {
        char *js = sched_family_json(&SCHED_FAMILIES[single_sched_family(&si, prediction)]);
        kind = sched_class_kind(js, cls, sizeof cls);
        free(js);
    } else {
        char *sp = xasprintf("%s/scheduler/scheduler_config.json", path);
        unsigned char *buf = NULL;
        size_t len = 0;
        if (base_is_file(sp) &&
            !infile_read_all(sp, "scheduler config", INFILE_MAX_JSON, &buf, &len, NULL))
            kind = sched_class_kind((const char *)buf, cls, sizeof cls);
        free(buf);
        free(sp);
    }
    return kind < 0 ? NULL : sched_kind_name((SchedKind)kind);
}

const char *sd_pipeline_family(const SdPipeline *p) { return p->family; }
const char *sd_pipeline_scheduler_config(const SdPipeline *p) { return p->sched_json; }

void sd_pipeline_default_size(const SdPipeline *p, int *width, int *height) {
    *width = p->def_w;
    *height = p->def_h;
}

typedef struct Rng {
    SdRng kind;
    TorchCpuGen cpu;
    TorchCudaGen cuda;
} Rng;

static void rng_randn(Rng *r, float *x, size_t n) {
    if (r->kind == SD_RNG_TORCH_CUDA)
        torch_cuda_randn(&r->cuda, x, n);
    else
        torch_cpu_randn(&r->cpu, x, n);
}

static int tensor_ok(const Tensor *t) { return t->ptr != NULL; }

int sd_pipeline_generate(SdPipeline *p, const SdGenParams *g, const Progress *pr, uint8_t **rgb,
                         int *width, int *height, Err *err) {
    *rgb = NULL;
    int W = g->width > 0 ? g->width : p->def_w, H = g->height > 0 ? g->height : p->def_h;
    int steps = g->steps > 0 ? g->steps : 50;
    if (g->width < 0 || g->height < 0 || g->steps < 0)
        return err_set(err, ERR_USAGE, "size %dx%d, %d steps: give positive numbers (0: the "
                       "model's size, 50 steps)", g->width, g->height, g->steps);
    if (W % p->multiple || H % p->multiple)
        return err_set(err, ERR_USAGE,
                       "size %dx%d: width and height must be multiples of %d for this model",
                       W, H, p->multiple);
    if (g->rng != SD_RNG_TORCH_CPU && g->rng != SD_RNG_TORCH_CUDA)
        return err_set(err, ERR_USAGE, "rng %d: use torch-cpu or torch-cuda", (int)g->rng);
    /* the scheduler */
    int kind = p->sched_kind;
    if (g->scheduler) {
        kind = sched_kind_from_name(g->scheduler);
        if (kind < 0)
            return err_set(err, ERR_USAGE,
                           "scheduler \"%s\": use euler, euler_a, ddim, dpmpp_2m, "
                           "dpmpp_2m_karras or pndm", g->scheduler);
    } else if (kind < 0) {
        return err_set(err, ERR_USAGE,
                       "%s: %s, which easel does not implement: choose a scheduler "
                       "(euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras, pndm)",
                       p->sched_path, p->sched_class);
    }
    SchedConfig sc;
    int rc = sched_config_parse(&sc, (SchedKind)kind, p->sched_json, p->sched_path, err);
    if (rc)
        return rc;
    Scheduler s;
    if ((rc = scheduler_init(&s, &sc, steps, err)) != 0) {
        err_prefix(err, "%s", p->sched_path); /* the settings it was made from */
        return rc;
    }

    const UnetConfig *uc = unet_config(p->unet);
    int cfg = g->guidance > 1.0f, B = cfg ? 2 : 1;
    int h = H / p->scale, w = W / p->scale, C = uc->in_channels;
    int T = sd_text_context(p->text), D = sd_text_width(p->text);
    int P = p->xl ? sd_text_pooled_width(p->text) : 0;
    size_t n = (size_t)C * h * w;
    float *ehs = calloc((size_t)2 * T * D, sizeof(float));
    float *pooled = P ? calloc((size_t)2 * P, sizeof(float)) : NULL;
    float *x = malloc(n * sizeof(float)), *in = malloc(2 * n * sizeof(float));
    float *eps = malloc(2 * n * sizeof(float)), *noise = malloc(n * sizeof(float));
    float time_ids[12], ts[2];
    uint8_t *img = malloc((size_t)W * H * 3);
    Tensor dx = {0}, dout = {0}, dehs = {0}, dpool = {0};
    if (!ehs || (P && !pooled) || !x || !in || !eps || !noise || !img) {
        rc = err_set(err, ERR_NOMEM, "pipeline: out of memory for a %dx%d image", W, H);
        goto done;
    }
    /* encode_prompt; CFG batches are [negative, positive], as diffusers concatenates them */
    float *pe = ehs + (cfg ? (size_t)T * D : 0), *pp = pooled ? pooled + (cfg ? P : 0) : NULL;
    size_t text_mark = backend_mark(p->be); /* the encoders run on the UNet's backend */
    rc = sd_text_encode_prompt(p->text, g->prompt ? g->prompt : "", g->negative, cfg, g->clip_skip,
                               pe, cfg ? ehs : NULL, pp, cfg ? pooled : NULL, err);
    backend_reset(p->be, text_mark);
    if (rc)
        goto done;
    if (p->xl)
        for (int b = 0; b < B; b++)
            sd_text_add_time_ids(H, W, 0, 0, H, W, time_ids + 6 * b);
    /* prepare_latents: randn_tensor((1, C, h, w), generator) or the given latents, then
     * × init_noise_sigma */
    Rng r;
    memset(&r, 0, sizeof r);
    r.kind = g->rng;
    if (g->rng == SD_RNG_TORCH_CUDA)
        torch_cuda_gen_seed(&r.cuda, g->seed, 0, 0);
    else
        torch_cpu_gen_seed(&r.cpu, g->seed, TORCH_RNG_AVX2);
    if (g->latents)
        memcpy(x, g->latents, n * sizeof(float));
    else
        rng_randn(&r, x, n);
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] * s.init_noise_sigma;

    int64_t sx[4] = {B, C, h, w}, se[3] = {B, T, D}, sp[2] = {B, P};
    dx = backend_tensor_new(p->be, DTYPE_F32, 4, sx);
    dout = backend_tensor_new(p->be, DTYPE_F32, 4, sx);
    dehs = backend_tensor_new(p->be, DTYPE_F32, 3, se);
    if (P)
        dpool = backend_tensor_new(p->be, DTYPE_F32, 2, sp);
    if (!tensor_ok(&dx) || !tensor_ok(&dout) || !tensor_ok(&dehs) || (P && !tensor_ok(&dpool))) {
        rc = backend_sync(p->be, err);
        if (!rc)
            rc = err_set(err, ERR_NOMEM, "pipeline: out of device memory for the latents");
        goto done;
    }
    Tensor he = tensor_view(cfg ? ehs : pe, 3, se);
    backend_upload(p->be, &dehs, &he);
    if (P) {
        Tensor hp = tensor_view(cfg ? pooled : pp, 2, sp);
        backend_upload(p->be, &dpool, &hp);
    }
    /* the scheduler's timesteps: PNDM has more than the steps asked for (SD 1.5's PLMS: one) */
    int n_steps = s.n_steps;
    progress_report(pr, 0, n_steps, "steps");
    for (int i = 0; i < n_steps; i++) {
        if (progress_cancelled(pr)) {
            rc = err_set(err, ERR_CANCELLED, "generation cancelled at step %d of %d", i,
                         n_steps);
            goto done;
        }
        /* latent_model_input = cat([latents] * 2), scale_model_input */
        scheduler_scale_model_input(&s, x, in, n);
        if (cfg)
            memcpy(in + n, in, n * sizeof(float));
        ts[0] = ts[1] = (float)s.timesteps[i];
        Tensor hx = tensor_view(in, 4, sx);
        backend_upload(p->be, &dx, &hx);
        size_t mark = backend_mark(p->be);
        rc = unet_forward(p->unet, p->be, &dout, &dx, ts, &dehs, P ? &dpool : NULL,
                          p->xl ? time_ids : NULL, err);
        backend_reset(p->be, mark);
        if (rc)
            goto done;
        Tensor ho = tensor_view(eps, 4, sx);
        backend_download(p->be, &ho, &dout);
        if ((rc = backend_sync(p->be, err)) != 0)
            goto done;
        if (progress_cancelled(pr)) {
            rc = err_set(err, ERR_CANCELLED, "generation cancelled in step %d of %d", i + 1,
                         n_steps);
            goto done;
        }
        /* noise_pred = uncond + g·(text − uncond), in diffusers' order */
        if (cfg)
            for (size_t k = 0; k < n; k++) {
                float d = eps[n + k] - eps[k];
                d = g->guidance * d;
                eps[k] = eps[k] + d;
            }
        const float *nz = NULL;
        if (scheduler_step_needs_noise(&s)) {
            rng_randn(&r, noise, n);
            nz = noise;
        }
        if ((rc = scheduler_step(&s, eps, x, nz, x, n, err)) != 0)
            goto done;
        progress_report(pr, i + 1, n_steps, "steps");
    }
    if (progress_cancelled(pr)) {
        rc = err_set(err, ERR_CANCELLED, "generation cancelled before decoding");
        goto done;
    }
    rc = vae_latents_to_rgb8(p->vae, x, 1, h, w, 0, img, err);
    if (!rc) {
        *rgb = img;
        img = NULL;
        *width = W;
        *height = H;
    }
done:
    backend_tensor_free(p->be, &dx);
    backend_tensor_free(p->be, &dout);
    backend_tensor_free(p->be, &dehs);
    if (P)
        backend_tensor_free(p->be, &dpool);
    scheduler_deinit(&s);
    free(ehs), free(pooled), free(x), free(in), free(eps), free(noise), free(img);
    return rc;
}

/* ---- accessors for the generator trainer (issue 16, tune16) ------------------------------- */

Unet *sd_pipeline_unet(SdPipeline *p) { return p->unet; }
Vae *sd_pipeline_vae(SdPipeline *p) { return p->vae; }
SdText *sd_pipeline_text(SdPipeline *p) { return p->text; }
Backend *sd_pipeline_backend(SdPipeline *p) { return p->be; }
const char *sd_pipeline_path(const SdPipeline *p) { return p->path; }

int sd_pipeline_sched_config(const SdPipeline *p, SchedConfig *c, Err *err) {
    /* the text the sampler uses: a single file's family config, a --prediction applied */
    return sched_config_parse(c, p->sched_kind >= 0 ? (SchedKind)p->sched_kind : SCHED_DDIM,
                              p->sched_json, p->sched_path, err);
}
