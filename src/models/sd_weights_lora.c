/* sd_weights_lora — LoRA / DoRA adapters added to a component's weights as they are read.
 * See sd_weights.h (sd_weights_add_lora).
 *
 * Names understood (COMPONENT's share of the file; other components' tensors are left for
 * their own SdWeights):
 *   PEFT / diffusers  unet.<module>.lora_A.weight, .lora_B.weight, .lora_magnitude_vector (DoRA)
 *                     unet.<module>.lora.down.weight, .lora.up.weight (older diffusers)
 *                     text_encoder.<module>..., text_encoder_2.<module>...; a file with
 *                     no component prefix at all is the UNet's (PEFT's own save)
 *   kohya             lora_unet_<module with _>.lora_down.weight, .lora_up.weight, .alpha,
 *                     with diffusers module names (down_blocks_0_attentions_0_...) or SGM ones
 *                     (input_blocks_4_1_...); lora_te_ / lora_te1_ (text_encoder),
 *                     lora_te2_ (text_encoder_2)
 * Alpha: the `.alpha` tensor, else the metadata (diffusers' lora_adapter_metadata JSON:
 * "<component>.alpha_pattern" (PEFT's regexes), "<component>.lora_alpha", and use_rslora;
 * kohya's ss_network_alpha), else the rank.
 * W' = W + scale * alpha / rank * (up . down), up (OUT, r[,1,1]), down (r, IN[,kh,kw]).
 * DoRA (PEFT): W' = m * V / ||V|| with V = W + s * up . down and the norm per output channel
 * (over every other dim, for Linear and Conv alike: peft/tuners/lora/dora.py). */
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "sd_weights_int.h"

typedef struct Adapter {
    char *target;        /* diffusers weight name the adapter changes */
    char *key;           /* the module's name in the LoRA file (for messages) */
    const StTensor *down, *up, *alpha, *mag;
    float pattern_alpha; /* from PEFT's alpha_pattern, or NAN */
    int used;
} Adapter;

struct SdLora {
    SafeTensors *st;
    float scale;
    float meta_alpha; /* NAN: none */
    int rslora;
    json_t *alpha_pattern; /* PEFT's {regex: alpha}, or NULL */
    Adapter *ad;
    size_t n_ad;
};

void sd_weights_lora_free(SdLora *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->n_ad; i++) {
        free(l->ad[i].target);
        free(l->ad[i].key);
    }
    free(l->ad);
    json_decref(l->alpha_pattern);
    safetensors_close(l->st);
    free(l);
}

/* Component prefixes of both naming families. */
static const struct {
    const char *component, *peft, *kohya;
} FAMILY[] = {
    {"unet", "unet.", "lora_unet_"},
    {"text_encoder", "text_encoder.", "lora_te1_"},
    {"text_encoder", "text_encoder.", "lora_te_"},
    {"text_encoder_2", "text_encoder_2.", "lora_te2_"},
};
#define N_FAMILY (sizeof FAMILY / sizeof *FAMILY)

/* The adapter parts: suffix after the module name, and which slot it fills. */
enum { P_DOWN, P_UP, P_ALPHA, P_MAG };
static const struct {
    const char *suffix;
    int part;
} PARTS[] = {
    {".lora_A.weight", P_DOWN}, {".lora_B.weight", P_UP},  {".lora.down.weight", P_DOWN},
    {".lora.up.weight", P_UP},  {".lora_down.weight", P_DOWN}, {".lora_up.weight", P_UP},
    {".alpha", P_ALPHA},        {".lora_magnitude_vector", P_MAG},
};
#define N_PARTS (sizeof PARTS / sizeof *PARTS)

/* kohya keys of W's weights ("down_blocks_0_..._to_q" and the SGM spelling for the UNet). */
typedef struct Key {
    char *key;
    const char *name;
} Key;

static int cmp_key(const void *a, const void *b) {
    return strcmp(((const Key *)a)->key, ((const Key *)b)->key);
}

static char *underscored(const char *s, size_t n) {
    char *k = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        k[i] = s[i] == '.' ? '_' : s[i];
    k[n] = 0;
    return k;
}

static Key *kohya_keys(const SdWeights *w, size_t *n_out) {
    Key *k = xmalloc((2 * w->n_ents + 1) * sizeof *k);
    size_t n = 0;
    char **sgm = sd_weights_single_sgm_names(w);
    for (size_t i = 0; i < w->n_ents; i++) {
        const char *name = w->ents[i].t.name;
        size_t len = strlen(name);
        if (len >= 8 && !strcmp(name + len - 7, ".weight")) {
            k[n].key = underscored(name, len - 7);
            k[n++].name = name;
            size_t sl = sgm && sgm[i] ? strlen(sgm[i]) : 0;
            if (sl > 7 && strcmp(sgm[i], name)) {
                k[n].key = underscored(sgm[i], sl - 7);
                k[n++].name = name;
            }
        }
        if (sgm)
            free(sgm[i]);
    }
    free(sgm);
    qsort(k, n, sizeof *k, cmp_key);
    *n_out = n;
    return k;
}

static const char *find_key(const Key *k, size_t n, const char *key) {
    Key probe = {(char *)key, NULL};
    const Key *hit = bsearch(&probe, k, n, sizeof *k, cmp_key);
    return hit ? hit->name : NULL;
}

/* The diffusers weight that MODULE (PEFT naming, dots) changes, or NULL. */
static char *peft_target(const SdWeights *w, const char *module, size_t len) {
    char *name = xasprintf("%.*s.weight", (int)len, module);
    if (sd_weights_find(w, name))
        return name;
    /* text encoders: folders saved by transformers 5 drop `text_model.` */
    char *alt = !strncmp(name, "text_model.", 11) ? xstrdup(name + 11)
                                                   : xasprintf("text_model.%s", name);
    free(name);
    if (sd_weights_find(w, alt))
        return alt;
    free(alt);
    return NULL;
}

/* The weight of W that the adapter MODULE (LEN chars, the component prefix and the part
 * suffix taken off) changes: PEFT's dotted module name, or kohya's underscored one with
 * diffusers or SGM block names (*KEYS built on first use). Allocated, or NULL. */
static char *lora_target(const SdWeights *w, Key **keys, size_t *n_keys, const char *module,
                         size_t ml, int kohya) {
    if (!kohya)
        return peft_target(w, module, ml);
    if (!*keys)
        *keys = kohya_keys(w, n_keys);
    char *k = xasprintf("%.*s", (int)ml, module);
    const char *hit = find_key(*keys, *n_keys, k);
    if (!hit && !strncmp(k, "text_model_", 11))
        hit = find_key(*keys, *n_keys, k + 11);
    if (!hit) {
        char *tk = xasprintf("text_model_%s", k);
        hit = find_key(*keys, *n_keys, tk);
        free(tk);
    }
    free(k);
    return hit ? xstrdup(hit) : NULL;
}

/* ---- the name map for lora_file (adio16) ---------------------------------------------------- */

struct SdLoraNames {
    const SdWeights *w;
    Key *keys;
    size_t n_keys;
};

SdLoraNames *sd_lora_names_new(const SdWeights *w) {
    SdLoraNames *n = xcalloc(1, sizeof *n);
    n->w = w;
    return n;
}

void sd_lora_names_free(SdLoraNames *n) {
    if (!n)
        return;
    for (size_t i = 0; i < n->n_keys; i++)
        free(n->keys[i].key);
    free(n->keys);
    free(n);
}

char *sd_lora_names_target(SdLoraNames *n, const char *module, int kohya) {
    return lora_target(n->w, &n->keys, &n->n_keys, module, strlen(module), kohya);
}

int sd_lora_name_part(const char *name, size_t *module_len) {
    size_t len = strlen(name);
    for (size_t p = 0; p < N_PARTS; p++) {
        size_t sl = strlen(PARTS[p].suffix);
        if (len > sl && !strcmp(name + len - sl, PARTS[p].suffix)) {
            *module_len = len - sl;
            return PARTS[p].part == P_DOWN ? SD_LORA_DOWN : PARTS[p].part == P_UP ? SD_LORA_UP
                   : PARTS[p].part == P_ALPHA ? SD_LORA_ALPHA : SD_LORA_MAG;
        }
    }
    return -1;
}

int sd_weights_lora_targets(const SdWeights *w, const char *name) {
    for (int i = 0; i < w->n_loras; i++)
        for (size_t j = 0; j < w->loras[i]->n_ad; j++)
            if (!strcmp(w->loras[i]->ad[j].target, name))
                return 1;
    return 0;
}

int sd_weights_lora_any(const SdWeights *w) {
    for (int i = 0; i < w->n_loras; i++)
        if (w->loras[i]->n_ad)
            return 1;
    return 0;
}

/* ---- end of adio16's block ------------------------------------------------------------------- */

static Adapter *adapter_for(SdLora *l, const char *target, const char *key, size_t key_len) {
    for (size_t i = 0; i < l->n_ad; i++)
        if (!strcmp(l->ad[i].target, target))
            return &l->ad[i];
    l->ad = xrealloc(l->ad, (l->n_ad + 1) * sizeof *l->ad);
    Adapter *a = &l->ad[l->n_ad++];
    memset(a, 0, sizeof *a);
    a->target = xstrdup(target);
    a->key = xasprintf("%.*s", (int)key_len, key);
    a->pattern_alpha = NAN;
    return a;
}

static void read_metadata(SdLora *l, const char *component) {
    l->meta_alpha = NAN;
    const char *m = safetensors_metadata(l->st, "lora_adapter_metadata");
    if (m) {
        json_error_t je;
        json_t *j = json_loads(m, 0, &je);
        char key[64];
        snprintf(key, sizeof key, "%s.lora_alpha", component);
        json_t *a = j ? json_object_get(j, key) : NULL;
        if (!a && j)
            a = json_object_get(j, "lora_alpha");
        if (json_is_number(a))
            l->meta_alpha = (float)json_number_value(a);
        snprintf(key, sizeof key, "%s.use_rslora", component);
        l->rslora = j && json_is_true(json_object_get(j, key));
        snprintf(key, sizeof key, "%s.alpha_pattern", component);
        json_t *pat = j ? json_object_get(j, key) : NULL;
        if (json_is_object(pat) && json_object_size(pat))
            l->alpha_pattern = json_incref(pat);
        json_decref(j);
    }
    const char *ss = safetensors_metadata(l->st, "ss_network_alpha");
    if (isnan(l->meta_alpha) && ss) {
        char *end;
        double v = strtod(ss, &end);
        if (end != ss && isfinite(v))
            l->meta_alpha = (float)v;
    }
}

int sd_weights_pattern_alpha(json_t *pattern, const char *file, const char *module,
                             float *alpha, Err *err) {
    const char *k;
    json_t *v;
    json_object_foreach(pattern, k, v) {
        char *re = xasprintf("^(.*\\.)?(%s)$", k);
        regex_t rx;
        int bad = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
        free(re);
        if (bad || !json_is_number(v)) {
            if (!bad)
                regfree(&rx);
            return err_set(err, ERR_FORMAT, "%s: alpha_pattern entry \"%s\" is not a regular "
                           "expression with a number", file, k);
        }
        int hit = regexec(&rx, module, 0, NULL, 0) == 0;
        regfree(&rx);
        if (hit) {
            *alpha = (float)json_number_value(v);
            return 0;
        }
    }
    return 0;
}

int sd_weights_add_lora(SdWeights *w, const char *lora_file, float scale, Err *err) {
    SafeTensors *st = safetensors_open(lora_file, err);
    if (!st)
        return err ? err->code : ERR_IO;
    SdLora *l = xcalloc(1, sizeof *l);
    l->st = st;
    l->scale = scale;
    read_metadata(l, w->component);
    Key *keys = NULL;
    size_t n_keys = 0;
    int rc = 0;
    /* PEFT's own save (get_peft_model_state_dict of the UNet) has no "unet." prefix: a file
     * where no name has a component prefix is the UNet's, as diffusers' loader takes it */
    int bare_unet = 1;
    for (size_t i = 0; i < safetensors_count(st) && bare_unet; i++)
        for (size_t f = 0; f < N_FAMILY; f++)
            if (!strncmp(safetensors_at(st, i)->name, FAMILY[f].peft, strlen(FAMILY[f].peft)) ||
                !strncmp(safetensors_at(st, i)->name, FAMILY[f].kohya, strlen(FAMILY[f].kohya)))
                bare_unet = 0;
    for (size_t i = 0; i < safetensors_count(st) && !rc; i++) {
        const StTensor *t = safetensors_at(st, i);
        const char *name = t->name;
        size_t len = strlen(name);
        int part = -1;
        size_t mod_len = 0;
        for (size_t p = 0; p < N_PARTS && part < 0; p++) {
            size_t sl = strlen(PARTS[p].suffix);
            if (len > sl && !strcmp(name + len - sl, PARTS[p].suffix)) {
                part = PARTS[p].part;
                mod_len = len - sl;
            }
        }
        int fam = -1, kohya = 0, other = 0;
        for (size_t f = 0; f < N_FAMILY && fam < 0; f++) {
            size_t pl = strlen(FAMILY[f].peft), kl = strlen(FAMILY[f].kohya);
            int is_peft = !strncmp(name, FAMILY[f].peft, pl);
            int is_kohya = !strncmp(name, FAMILY[f].kohya, kl);
            /* "text_encoder." is also the start of nothing else; "text_encoder_2." differs */
            if (!is_peft && !is_kohya)
                continue;
            if (strcmp(FAMILY[f].component, w->component)) {
                other = 1;
                continue;
            }
            fam = (int)f;
            kohya = is_kohya;
        }
        if (fam < 0 && other)
            continue; /* another component's adapter */
        int bare = fam < 0 && bare_unet && part >= 0;
        if (bare && strcmp(w->component, "unet"))
            continue; /* a UNet-only file without prefixes: the UNet's */
        if ((fam < 0 && !bare) || part < 0) {
            rc = err_set(err, ERR_FORMAT, "%s: tensor %s is no LoRA tensor easel knows "
                         "(unet./text_encoder./text_encoder_2. with .lora_A/.lora_B/"
                         ".lora.down/.lora.up/.lora_magnitude_vector, or lora_unet_/lora_te1_/"
                         "lora_te2_ with .lora_down/.lora_up/.alpha)", lora_file, name);
            break;
        }
        size_t pl = bare ? 0 : strlen(kohya ? FAMILY[fam].kohya : FAMILY[fam].peft);
        const char *module = name + pl;
        size_t ml = mod_len - pl;
        char *target = lora_target(w, &keys, &n_keys, module, ml, kohya);
        if (!target) {
            rc = err_set(err, ERR_NOTFOUND, "%s: adapter tensor %s matches no %s weight of %s "
                         "(is this LoRA for another model?)", lora_file, name, w->component,
                         w->where);
            break;
        }
        Adapter *a = adapter_for(l, target, name, mod_len);
        free(target);
        if (l->alpha_pattern && !kohya && isnan(a->pattern_alpha)) {
            char *m = xasprintf("%.*s", (int)ml, module);
            rc = sd_weights_pattern_alpha(l->alpha_pattern, lora_file, m, &a->pattern_alpha,
                                          err);
            free(m);
        }
        const StTensor **slot = part == P_DOWN ? &a->down : part == P_UP ? &a->up
                                : part == P_ALPHA ? &a->alpha : &a->mag;
        *slot = t;
    }
    for (size_t i = 0; i < n_keys; i++)
        free(keys[i].key);
    free(keys);
    for (size_t i = 0; i < l->n_ad && !rc; i++) {
        const Adapter *a = &l->ad[i];
        if (!a->down || !a->up)
            rc = err_set(err, ERR_FORMAT, "%s: adapter %s has %s but no %s", lora_file, a->key,
                         a->down ? "a down (A) matrix" : "an up (B) matrix",
                         a->down ? "up (B)" : "down (A)");
        else if (a->down->n_dim < 2 || a->up->n_dim < 2 || a->up->shape[1] != a->down->shape[0])
            rc = err_set(err, ERR_FORMAT, "%s: adapter %s: the up matrix's rank %lld is not the "
                         "down matrix's %lld", lora_file, a->key,
                         (long long)(a->up->n_dim > 1 ? a->up->shape[1] : -1),
                         (long long)a->down->shape[0]);
    }
    if (rc) {
        sd_weights_lora_free(l);
        return rc;
    }
    w->loras = xrealloc(w->loras, (size_t)(w->n_loras + 1) * sizeof *w->loras);
    w->loras[w->n_loras++] = l;
    return 0;
}

static int read_small(const SdLora *l, const StTensor *t, float **out, Err *err) {
    *out = xmalloc((size_t)(t->n_elem ? t->n_elem : 1) * sizeof **out);
    return safetensors_read_f32(l->st, t, *out, (size_t)t->n_elem, err);
}

static int apply_one(SdLora *l, Adapter *a, const char *where, int n_dims,
                     const int64_t *shape, float *dst, Err *err) {
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++)
        n *= shape[i];
    int64_t rank = a->down->shape[0], out = a->up->shape[0];
    int64_t in = a->down->n_elem / rank;
    if (n_dims < 2 || out != shape[0] || out * in != n)
        return err_set(err, ERR_FORMAT, "%s: adapter %s gives a %lld x %lld update, but %s in "
                       "%s has %lld x %lld", safetensors_path(l->st), a->key, (long long)out,
                       (long long)in, a->target, where, (long long)shape[0],
                       (long long)(n / shape[0]));
    float alpha = (float)rank;
    if (a->alpha) {
        float v;
        if (a->alpha->n_elem != 1 || safetensors_read_f32(l->st, a->alpha, &v, 1, err))
            return err_set(err, ERR_FORMAT, "%s: %s.alpha must hold one number",
                           safetensors_path(l->st), a->key);
        alpha = v;
    } else if (!isnan(a->pattern_alpha)) {
        alpha = a->pattern_alpha;
    } else if (!isnan(l->meta_alpha)) {
        alpha = l->meta_alpha;
    }
    float s = l->scale * alpha / (l->rslora ? sqrtf((float)rank) : (float)rank);
    float *up = NULL, *down = NULL, *mag = NULL;
    int rc = read_small(l, a->up, &up, err);
    if (!rc)
        rc = read_small(l, a->down, &down, err);
    if (!rc && a->mag) {
        if (a->mag->n_elem != out)
            rc = err_set(err, ERR_FORMAT, "%s: %s.lora_magnitude_vector has %lld values, %s "
                         "has %lld output channels", safetensors_path(l->st), a->key,
                         (long long)a->mag->n_elem, a->target, (long long)out);
        else
            rc = read_small(l, a->mag, &mag, err);
    }
    if (!rc) {
        for (int64_t o = 0; o < out; o++) {
            float *row = dst + o * in;
            double sq = 0;
            for (int64_t r = 0; r < rank; r++) {
                float u = s * up[o * rank + r];
                const float *d = down + r * in;
                for (int64_t c = 0; c < in; c++)
                    row[c] += u * d[c];
            }
            if (mag) {
                for (int64_t c = 0; c < in; c++)
                    sq += (double)row[c] * row[c];
                float f = sq > 0 ? mag[o] / (float)sqrt(sq) : 0.0f;
                for (int64_t c = 0; c < in; c++)
                    row[c] *= f;
            }
        }
        a->used = 1;
    }
    free(up);
    free(down);
    free(mag);
    return rc;
}

int sd_weights_lora_apply(SdWeights *w, const char *name, int n_dims, const int64_t *shape,
                          float *dst, Err *err) {
    for (int i = 0; i < w->n_loras; i++) {
        SdLora *l = w->loras[i];
        for (size_t j = 0; j < l->n_ad; j++)
            if (!strcmp(l->ad[j].target, name)) {
                int rc = apply_one(l, &l->ad[j], w->where, n_dims, shape, dst, err);
                if (rc)
                    return rc;
            }
    }
    return 0;
}

int sd_weights_check_used(const SdWeights *w, Err *err) {
    for (int i = 0; i < w->n_loras; i++) {
        const SdLora *l = w->loras[i];
        for (size_t j = 0; j < l->n_ad; j++)
            if (!l->ad[j].used)
                return err_set(err, ERR_FORMAT, "%s: adapter %s (for %s) was not used: the "
                               "%s never read that weight (is this LoRA for another model?)",
                               safetensors_path(l->st), l->ad[j].key, l->ad[j].target,
                               w->component);
    }
    return 0;
}
