/* sd_text — SD / SDXL text conditioning. See sd_text.h. */
#include "sd_text.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"
#include "clip_tokenizer.h"
#include "fmt_safetensors.h"
#include "sd_weights.h"

typedef struct Encoder {
    ClipModel *clip;
    int32_t pad;     /* the pad token's id */
    char *pad_text;  /* its text when it is a token of its own ("!"), else NULL */
    int width;       /* C */
} Encoder;

struct SdText {
    SdTextKind kind;
    int force_zeros;
    int context;
    int n_enc;
    Encoder enc[2];
};

/* A special token entry: "text" or {"content": "text", ...}. */
static const char *token_text(json_t *v) {
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_string_value(v);
}

/* The pad id and model_max_length of tokenizer folder TDIR (tokenizer_config.json, then
 * special_tokens_map.json); CLIPTokenizer's default pad is "<|endoftext|>". */
static int tokenizer_settings(const char *tdir, const ClipTokenizer *tok, int32_t *pad,
                              char **pad_special, int *max_len, Err *err) {
    const char *files[2] = {"tokenizer_config.json", "special_tokens_map.json"};
    char *pad_text = NULL, *pad_file = NULL;
    *max_len = -1;
    for (int i = 0; i < 2; i++) {
        char *p = xasprintf("%s/%s", tdir, files[i]);
        if (!base_is_file(p)) {
            free(p);
            continue;
        }
        json_error_t je;
        json_t *root = json_load_file(p, 0, &je);
        if (!root) {
            err_set(err, ERR_FORMAT, "%s:%d: %s", p, je.line, je.text);
            free(p);
            free(pad_text);
            free(pad_file);
            return ERR_FORMAT;
        }
        json_t *ml = json_object_get(root, "model_max_length");
        if (i == 0 && json_is_integer(ml))
            *max_len = (int)json_integer_value(ml);
        const char *pt = token_text(json_object_get(root, "pad_token"));
        if (pt && !pad_text) {
            pad_text = xstrdup(pt);
            pad_file = xstrdup(p);
        }
        json_decref(root);
        free(p);
    }
    int rc = 0;
    if (!pad_text) {
        *pad = clip_tokenizer_eot(tok);
    } else {
        *pad = clip_tokenizer_token_id(tok, pad_text);
        if (*pad < 0)
            rc = err_set(err, ERR_FORMAT, "%s: pad_token \"%s\" is not in %s/vocab.json",
                         pad_file, pad_text, tdir);
        else if (*pad != clip_tokenizer_eot(tok) && *pad != clip_tokenizer_sot(tok) &&
                 pad_text[0])
            *pad_special = xstrdup(pad_text);
    }
    free(pad_text);
    free(pad_file);
    return rc;
}

/* The text encoder's tensors through sd_weights (a diffusers folder or a single-file
 * checkpoint, LoRAs applied), under transformers' names: folders saved by transformers 5 drop
 * `text_model.`. */
static const char *te_name(SdWeights *w, const char *name) {
    if (!sd_weights_find(w, name) && !strncmp(name, "text_model.", 11))
        return name + 11;
    return name;
}

static const StTensor *te_find(void *user, const char *name) {
    return sd_weights_find(user, te_name(user, name));
}

static int te_read(void *user, const char *name, int n_dims, const int64_t *shape, float *dst,
                   Err *err) {
    return sd_weights_read_f32(user, te_name(user, name), n_dims, shape, dst, err);
}

/* A single file's family pad token (no tokenizer config to say it): SD 1.x's and SDXL's first
 * encoder pad with the end token, SD 2.x's and SDXL's second (OpenCLIP) with "!" (id 0), as
 * diffusers' tokenizer configs of stable-diffusion-2-1 and SDXL's tokenizer_2 do. */
static int family_pad(const ClipTokenizer *tok, int openclip, const char *tdir, int32_t *pad,
                      char **pad_text, Err *err) {
    *pad = clip_tokenizer_eot(tok);
    if (!openclip)
        return 0;
    *pad = clip_tokenizer_token_id(tok, "!");
    if (*pad < 0)
        return err_set(err, ERR_FORMAT, "%s: the tokenizer has no \"!\" token, which this "
                       "model's OpenCLIP text encoder pads with: give the CLIP BPE tokenizer "
                       "(vocab.json and merges.txt of openai/clip-vit-large-patch14, or the "
                       "model's diffusers tokenizer_2/)", tdir);
    *pad_text = xstrdup("!");
    return 0;
}

/* Encoder COMP of MODEL with the tokenizer of TDIR. SINGLE: MODEL is a single file (the pad
 * token from the family: OPENCLIP says which), else TDIR's tokenizer_config.json says it. */
static int load_encoder(const char *model, const char *comp, const char *tdir, int single,
                        int openclip, const SdTextOptions *o, ClipWeights weights, Encoder *e,
                        Err *err) {
    int rc = 0, max_len = -1;
    SdWeights *w = NULL;
    if (!base_is_dir(tdir)) {
        if (single || (o && o->tokenizer)) /* a tokenizer given (--tokenizer) is named as such */
            return err_set(err, ERR_NOTFOUND, "%s: no such tokenizer folder (give --tokenizer "
                           "DIR: a folder with vocab.json and merges.txt, or a diffusers "
                           "model folder with tokenizer/)", tdir);
        return err_set(err, ERR_NOTFOUND, "%s: no %s/ folder (a diffusers model folder has %s/ "
                       "and %s/)", model, strrchr(tdir, '/') ? strrchr(tdir, '/') + 1 : tdir,
                       comp, strrchr(tdir, '/') ? strrchr(tdir, '/') + 1 : tdir);
    }
    if ((rc = sd_weights_open(model, comp, &w, err)) != 0)
        return rc;
    for (int i = 0; !rc && o && i < o->n_loras; i++)
        rc = sd_weights_add_lora(w, o->lora_paths[i], o->lora_scales[i], err);
    if (!rc) {
        const char *cfg = sd_weights_config_json(w);
        ClipTensorSource src = {w, te_find, te_read, sd_weights_where(w), cfg};
        if (o && o->backend) { /* the pipeline's backend */
            rc = clip_model_open_text_source(&src, tdir, weights, o->backend, &e->clip, err);
        } else {
            e->clip = clip_model_load_text_source(&src, tdir, weights, err);
            if (!e->clip)
                rc = err && err->code ? err->code : ERR_FORMAT;
        }
    }
    if (!rc)
        rc = sd_weights_check_used(w, err);
    sd_weights_close(w);
    if (rc)
        return rc;
    const ClipConfig *c = clip_model_config(e->clip);
    e->width = c->text_width;
    if (single)
        return family_pad(clip_model_tokenizer(e->clip), openclip, tdir, &e->pad, &e->pad_text,
                          err);
    if ((rc = tokenizer_settings(tdir, clip_model_tokenizer(e->clip), &e->pad, &e->pad_text,
                                 &max_len, err)))
        return rc;
    if (max_len > 0 && max_len != c->context_length)
        rc = err_set(err, ERR_FORMAT, "%s/tokenizer_config.json: model_max_length %d differs "
                     "from the text encoder's %d positions (%s)", tdir, max_len,
                     c->context_length, model);
    return rc;
}

/* For a model with one text encoder: a LoRA file's adapters for a second one match nothing
 * here (an SDXL LoRA on an SD model): the first such tensor, named. */
static int loras_no_second_encoder(const SdTextOptions *o, Err *err) {
    for (int i = 0; o && i < o->n_loras; i++) {
        SafeTensors *st = safetensors_open(o->lora_paths[i], err);
        if (!st)
            return err && err->code ? err->code : ERR_IO;
        int rc = 0;
        for (size_t j = 0; j < safetensors_count(st) && !rc; j++) {
            const char *n = safetensors_at(st, j)->name;
            if (!strncmp(n, "text_encoder_2.", 15) || !strncmp(n, "lora_te2_", 9))
                rc = err_set(err, ERR_NOTFOUND, "%s: adapter tensor %s is for a second text "
                             "encoder (SDXL's), which this model does not have: the LoRA is "
                             "for another model", o->lora_paths[i], n);
        }
        safetensors_close(st);
        if (rc)
            return rc;
    }
    return 0;
}

/* model_index.json: *xl when its _class_name is an XL pipeline, *force_zeros as it says
 * (absent: diffusers' default, true). A missing file is not an error. */
static int model_index(const char *dir, int *xl, int *force_zeros, Err *err) {
    char *p = xasprintf("%s/model_index.json", dir);
    *force_zeros = 1;
    int rc = 0;
    if (base_is_file(p)) {
        json_error_t je;
        json_t *root = json_load_file(p, 0, &je);
        if (!root) {
            rc = err_set(err, ERR_FORMAT, "%s:%d: %s", p, je.line, je.text);
        } else {
            const char *cls = json_string_value(json_object_get(root, "_class_name"));
            if (cls && strstr(cls, "XL"))
                *xl = 1;
            json_t *fz = json_object_get(root, "force_zeros_for_empty_prompt");
            if (json_is_boolean(fz))
                *force_zeros = json_is_true(fz);
            json_decref(root);
        }
    }
    free(p);
    return rc;
}

int sd_text_load(const char *dir, ClipWeights weights, SdText **out, Err *err) {
    return sd_text_open(dir, NULL, weights, out, err);
}

int sd_text_open(const char *model, const SdTextOptions *o, ClipWeights weights, SdText **out,
                 Err *err) {
    *out = NULL;
    SdSingleInfo si;
    int rc = sd_weights_single_info(model, &si, err);
    if (rc)
        return rc;
    if (!si.is_single && !base_is_dir(model))
        return err_set(err, ERR_NOTFOUND, "%s: no such model folder or file", model);
    const char *tok = o && o->tokenizer && o->tokenizer[0] ? o->tokenizer : NULL;
    if (si.is_single && !tok)
        return err_set(err, ERR_USAGE, "%s: a single file holds no tokenizer: give "
                       "--tokenizer DIR (vocab.json + merges.txt, e.g. an SD model's "
                       "tokenizer/) or register a CLIP model (easel models add clip PATH)",
                       model);
    SdText *t = xcalloc(1, sizeof *t);
    int xl = 0;
    char *tdir[2] = {NULL, NULL};
    if (si.is_single) {
        xl = !strcmp(si.family, "sdxl");
        t->force_zeros = xl; /* SDXL's model_index.json: force_zeros_for_empty_prompt */
    } else {
        char *te2 = xasprintf("%s/text_encoder_2", model);
        xl = base_is_dir(te2);
        free(te2);
        if ((rc = model_index(model, &xl, &t->force_zeros, err)) != 0)
            goto fail;
    }
    if (!xl) /* StableDiffusionPipeline has no such setting */
        t->force_zeros = 0;
    t->kind = xl ? SD_TEXT_SDXL : SD_TEXT_SD;
    t->n_enc = xl ? 2 : 1;
    /* the tokenizers: --tokenizer DIR (its tokenizer/ and tokenizer_2/ when a diffusers model
     * folder, else DIR for both: both encoders use the same CLIP BPE), else the folder's */
    for (int i = 0; i < t->n_enc; i++) {
        const char *sub = i ? "tokenizer_2" : "tokenizer";
        if (!tok) {
            tdir[i] = xasprintf("%s/%s", model, sub);
            continue;
        }
        char *d = xasprintf("%s/%s", tok, sub);
        char *d0 = xasprintf("%s/tokenizer", tok);
        tdir[i] = base_is_dir(d) ? xstrdup(d) : base_is_dir(d0) ? xstrdup(d0) : xstrdup(tok);
        free(d);
        free(d0);
    }
    if (!xl && (rc = loras_no_second_encoder(o, err)) != 0)
        goto fail;
    int sd2 = si.is_single && !strcmp(si.family, "sd2");
    if ((rc = load_encoder(model, "text_encoder", tdir[0], si.is_single, sd2, o, weights,
                           &t->enc[0], err)) != 0)
        goto fail;
    if (xl && (rc = load_encoder(model, "text_encoder_2", tdir[1], si.is_single, 1, o, weights,
                                 &t->enc[1], err)))
        goto fail;
    t->context = clip_model_config(t->enc[0].clip)->context_length;
    if (xl) {
        const ClipConfig *c2 = clip_model_config(t->enc[1].clip);
        if (c2->context_length != t->context) {
            rc = err_set(err, ERR_FORMAT, "%s: text_encoder has %d positions but text_encoder_2 "
                         "%d", model, t->context, c2->context_length);
            goto fail;
        }
        if (c2->embed_dim <= 0) {
            rc = err_set(err, ERR_FORMAT, "%s: text_encoder_2 has no text_projection.weight: "
                         "SDXL's second encoder is a CLIPTextModelWithProjection (its pooled, "
                         "projected output conditions the UNet)", model);
            goto fail;
        }
    }
    free(tdir[0]);
    free(tdir[1]);
    *out = t;
    return 0;
fail:
    free(tdir[0]);
    free(tdir[1]);
    sd_text_free(t);
    return rc;
}

void sd_text_free(SdText *t) {
    if (!t)
        return;
    for (int i = 0; i < 2; i++) {
        clip_model_free(t->enc[i].clip);
        free(t->enc[i].pad_text);
    }
    free(t);
}

SdTextKind sd_text_kind(const SdText *t) { return t->kind; }
int sd_text_context(const SdText *t) { return t->context; }
int sd_text_force_zeros(const SdText *t) { return t->force_zeros; }

int sd_text_width(const SdText *t) {
    return t->enc[0].width + (t->n_enc > 1 ? t->enc[1].width : 0);
}

int sd_text_pooled_width(const SdText *t) {
    return t->n_enc > 1 ? clip_model_config(t->enc[1].clip)->embed_dim : 0;
}

const ClipModel *sd_text_encoder(const SdText *t, int i) {
    return i >= 0 && i < t->n_enc ? t->enc[i].clip : NULL;
}

/* The pieces of TEXT into BODY (up to MAX), the pad token's text being a token of its own
 * wherever it occurs, as transformers splits added tokens out before BPE ("canvas!" -> ca n
 * vas</w> !, with "!" the pad id 0, not "!</w>"). Returns the count kept. */
static int split_pieces(const Encoder *e, const char *text, int32_t *body, int max) {
    const ClipTokenizer *tok = clip_model_tokenizer(e->clip);
    size_t plen = strlen(e->pad_text);
    int k = 0;
    for (const char *s = text; k < max;) {
        const char *hit = strstr(s, e->pad_text);
        char *seg = xstrndup(s, hit ? (size_t)(hit - s) : strlen(s));
        size_t got = clip_tokenizer_encode(tok, seg, body + k, (size_t)(max - k));
        free(seg);
        k += got < (size_t)(max - k) ? (int)got : max - k;
        if (!hit)
            break;
        if (k < max)
            body[k++] = e->pad;
        s = hit + plen;
    }
    return k;
}

int sd_text_tokenize(const SdText *t, int i, const char *text, int32_t *ids) {
    const Encoder *e = &t->enc[i];
    const ClipTokenizer *tok = clip_model_tokenizer(e->clip);
    int T = t->context, n;
    if (!e->pad_text) {
        n = clip_tokenizer_tokenize(tok, text, ids, T);
    } else { /* [start] + at most T - 2 pieces + [end] */
        n = split_pieces(e, text, ids + 1, T - 2) + 2;
        ids[0] = clip_tokenizer_sot(tok);
        ids[n - 1] = clip_tokenizer_eot(tok);
    }
    for (int k = n; k < T; k++)
        ids[k] = e->pad;
    return n;
}

int sd_text_encode(const SdText *t, const char *const *texts, int n, int clip_skip,
                   float *embeds, float *pooled, Err *err) {
    if (clip_skip < 0)
        return err_set(err, ERR_USAGE, "clip_skip %d: must be 0 (none) or more", clip_skip);
    if (pooled && t->kind != SD_TEXT_SDXL)
        return err_set(err, ERR_USAGE, "sd_text: an SD model has no pooled text embedding");
    int T = t->context, D = sd_text_width(t), rc = 0;
    int32_t *ids = xmalloc((size_t)n * (size_t)T * sizeof(int32_t));
    float *h = NULL;
    for (int e = 0; e < t->n_enc && rc == 0; e++) {
        const Encoder *enc = &t->enc[e];
        int C = enc->width, L = clip_model_config(enc->clip)->text_layers;
        int layer = t->kind == SD_TEXT_SDXL ? -(clip_skip + 2) : -(clip_skip + 1);
        if (-layer > L + 1) {
            rc = err_set(err, ERR_USAGE, "clip_skip %d: %s has only %d layers", clip_skip,
                         e ? "text_encoder_2" : "text_encoder", L);
            break;
        }
        for (int i = 0; i < n; i++)
            sd_text_tokenize(t, e, texts[i], ids + (size_t)i * T);
        h = xrealloc(h, (size_t)n * (size_t)T * (size_t)C * sizeof(float));
        ClipOutputs o = {.layer = layer,
                         .final_ln = t->kind == SD_TEXT_SD,
                         .hidden = h,
                         .projected = e == 1 ? pooled : NULL};
        rc = clip_model_text_forward(enc->clip, ids, n, &o, err);
        if (rc != 0)
            break;
        /* channel offset of this encoder in the concatenation */
        int off = e == 0 ? 0 : t->enc[0].width;
        for (size_t r = 0; r < (size_t)n * (size_t)T; r++)
            memcpy(embeds + r * (size_t)D + off, h + r * (size_t)C, (size_t)C * sizeof(float));
    }
    free(h);
    free(ids);
    return rc;
}

int sd_text_encode_prompt(const SdText *t, const char *prompt, const char *negative, int cfg,
                          int clip_skip, float *prompt_embeds, float *negative_embeds,
                          float *pooled, float *negative_pooled, Err *err) {
    int xl = t->kind == SD_TEXT_SDXL;
    size_t TD = (size_t)t->context * (size_t)sd_text_width(t), P = (size_t)sd_text_pooled_width(t);
    if (xl && (!pooled || (cfg && !negative_pooled)))
        return err_set(err, ERR_USAGE, "sd_text: SDXL needs the pooled outputs");
    if (!cfg)
        return sd_text_encode(t, &prompt, 1, clip_skip, prompt_embeds, xl ? pooled : NULL, err);
    if (xl && !negative && t->force_zeros) {
        memset(negative_embeds, 0, TD * sizeof(float));
        memset(negative_pooled, 0, P * sizeof(float));
        return sd_text_encode(t, &prompt, 1, clip_skip, prompt_embeds, pooled, err);
    }
    /* diffusers encodes the negative prompt without clip_skip (last_hidden_state for SD,
     * hidden_states[-2] for SDXL) */
    const char *texts[2] = {prompt, negative ? negative : ""};
    float *e = xmalloc(2 * TD * sizeof(float));
    float *p = xl ? xmalloc(2 * P * sizeof(float)) : NULL;
    int rc;
    if (clip_skip == 0) { /* both in one batch: every GEMM runs once over the two */
        rc = sd_text_encode(t, texts, 2, 0, e, p, err);
    } else {
        rc = sd_text_encode(t, texts, 1, clip_skip, e, p, err);
        if (rc == 0)
            rc = sd_text_encode(t, texts + 1, 1, 0, e + TD, p ? p + P : NULL, err);
    }
    if (rc == 0) {
        memcpy(prompt_embeds, e, TD * sizeof(float));
        memcpy(negative_embeds, e + TD, TD * sizeof(float));
        if (xl) {
            memcpy(pooled, p, P * sizeof(float));
            memcpy(negative_pooled, p + P, P * sizeof(float));
        }
    }
    free(e);
    free(p);
    return rc;
}

void sd_text_add_time_ids(int orig_h, int orig_w, int crop_top, int crop_left, int target_h,
                          int target_w, float out[6]) {
    int v[6] = {orig_h, orig_w, crop_top, crop_left, target_h, target_w};
    for (int i = 0; i < 6; i++)
        out[i] = (float)v[i];
}
