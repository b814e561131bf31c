/* sd_text — SD / SDXL text conditioning. See sd_text.h. */
#include "sd_text.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"
#include "clip_tokenizer.h"

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

/* The weights of encoder folder EDIR: model.safetensors, else the .fp16 variant. */
static char *encoder_weights(const char *edir, Err *err) {
    const char *names[] = {"model.safetensors", "model.fp16.safetensors"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char *p = xasprintf("%s/%s", edir, names[i]);
        if (base_is_file(p))
            return p;
        free(p);
    }
    char *idx = xasprintf("%s/model.safetensors.index.json", edir);
    int sharded = base_is_file(idx);
    free(idx);
    if (sharded)
        err_set(err, ERR_FORMAT, "%s: the text encoder's weights are in shards "
                "(model.safetensors.index.json), which easel does not read: save it as one "
                "model.safetensors (save_pretrained(..., max_shard_size=\"100GB\"))", edir);
    else
        err_set(err, ERR_NOTFOUND, "%s: no model.safetensors or model.fp16.safetensors (the "
                "text encoder's weights) here", edir);
    return NULL;
}

static int load_encoder(const char *dir, const char *enc_name, const char *tok_name,
                        ClipWeights weights, Encoder *e, Err *err) {
    char *edir = xasprintf("%s/%s", dir, enc_name), *tdir = xasprintf("%s/%s", dir, tok_name);
    char *wpath = NULL;
    int rc = 0, max_len;
    if (!base_is_dir(edir) || !base_is_dir(tdir)) {
        rc = err_set(err, ERR_NOTFOUND, "%s: no %s/ folder (a diffusers model folder has %s/ "
                     "and %s/)", dir, base_is_dir(edir) ? tok_name : enc_name, enc_name, tok_name);
        goto out;
    }
    if (!(wpath = encoder_weights(edir, err))) {
        rc = err && err->code ? err->code : ERR_NOTFOUND;
        goto out;
    }
    e->clip = clip_model_load_text(wpath, tdir, weights, err);
    if (!e->clip) {
        rc = err && err->code ? err->code : ERR_FORMAT;
        goto out;
    }
    const ClipConfig *c = clip_model_config(e->clip);
    e->width = c->text_width;
    if ((rc = tokenizer_settings(tdir, clip_model_tokenizer(e->clip), &e->pad, &e->pad_text,
                                 &max_len, err)))
        goto out;
    if (max_len > 0 && max_len != c->context_length)
        rc = err_set(err, ERR_FORMAT, "%s/tokenizer_config.json: model_max_length %d differs "
                     "from the text encoder's %d positions (%s/config.json)", tdir, max_len,
                     c->context_length, edir);
out:
    free(edir);
    free(tdir);
    free(wpath);
    return rc;
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
    *out = NULL;
    if (!base_is_dir(dir))
        return err_set(err, ERR_NOTFOUND, "%s: no such model folder", dir);
    SdText *t = xcalloc(1, sizeof *t);
    int xl = 0, rc;
    char *te2 = xasprintf("%s/text_encoder_2", dir);
    xl = base_is_dir(te2);
    free(te2);
    if ((rc = model_index(dir, &xl, &t->force_zeros, err)) != 0)
        goto fail;
    if (!xl) /* StableDiffusionPipeline has no such setting */
        t->force_zeros = 0;
    t->kind = xl ? SD_TEXT_SDXL : SD_TEXT_SD;
    t->n_enc = xl ? 2 : 1;
    if ((rc = load_encoder(dir, "text_encoder", "tokenizer", weights, &t->enc[0], err)) != 0)
        goto fail;
    if (xl &&
        (rc = load_encoder(dir, "text_encoder_2", "tokenizer_2", weights, &t->enc[1], err)))
        goto fail;
    t->context = clip_model_config(t->enc[0].clip)->context_length;
    if (xl) {
        const ClipConfig *c2 = clip_model_config(t->enc[1].clip);
        if (c2->context_length != t->context) {
            rc = err_set(err, ERR_FORMAT, "%s: text_encoder has %d positions but text_encoder_2 "
                         "%d", dir, t->context, c2->context_length);
            goto fail;
        }
        if (c2->embed_dim <= 0) {
            rc = err_set(err, ERR_FORMAT, "%s/text_encoder_2: no text_projection.weight: SDXL's "
                         "second encoder is a CLIPTextModelWithProjection (its pooled, projected "
                         "output conditions the UNet)", dir);
            goto fail;
        }
    }
    *out = t;
    return 0;
fail:
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
