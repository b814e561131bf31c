/* lora_file — see lora_file.h. */
#include "lora_file.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "base.h"
#include "fmt_safetensors.h"
#include "sd_weights.h"
#include "sd_weights_int.h"

/* ---- checks and shapes ---------------------------------------------------------------------- */

static size_t a_count(const LoraEntry *e) {
    return (size_t)e->r * (size_t)e->in * (size_t)(e->kh > 0 ? e->kh : 1) *
           (size_t)(e->kw > 0 ? e->kw : 1);
}

static int finite_all(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

static int check_set(const LoraSet *s, const char *where, Err *err) {
    if (!s || !s->n)
        return err_set(err, ERR_USAGE, "%s: the adapter has no layers: nothing to save", where);
    for (size_t i = 0; i < s->n; i++) {
        const LoraEntry *e = &s->e[i];
        if (!e->name[0] || e->r < 1 || e->out < 1 || e->in < 1 || !e->A || !e->B ||
            (e->kh > 0) != (e->kw > 0) || e->kh < 0)
            return err_set(err, ERR_USAGE, "%s: adapter layer %zu (\"%s\") is incomplete: rank "
                           "%d, %d x %d, A %s, B %s", where, i, e->name, e->r, e->out, e->in,
                           e->A ? "set" : "missing", e->B ? "set" : "missing");
        if (!isfinite(e->alpha) || !finite_all(e->A, a_count(e)) ||
            !finite_all(e->B, (size_t)e->out * (size_t)e->r) ||
            (e->m && !finite_all(e->m, (size_t)e->out)))
            return err_set(err, ERR_FORMAT, "%s: adapter layer %s holds a value that is not "
                           "finite (alpha, A, B or m): the training diverged; save an earlier "
                           "step", where, e->name);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s->e[j].name, e->name))
                return err_set(err, ERR_CONFLICT, "%s: two adapter layers for %s", where,
                               e->name);
    }
    return 0;
}

/* Tensor shapes of entry E in PEFT's layout: A, B, and the magnitude. */
static int shape_a(const LoraEntry *e, int64_t *sh) {
    sh[0] = e->r;
    sh[1] = e->in;
    if (e->kh <= 0)
        return 2;
    sh[2] = e->kh;
    sh[3] = e->kw;
    return 4;
}

static int shape_b(const LoraEntry *e, int64_t *sh) {
    sh[0] = e->out;
    sh[1] = e->r;
    sh[2] = sh[3] = 1;
    return e->kh > 0 ? 4 : 2;
}

static int shape_m(const LoraEntry *e, int64_t *sh) {
    if (e->kh <= 0) {
        sh[0] = e->out;
        return 1;
    }
    sh[0] = 1; /* PEFT's DoraConv2dLayer: the norm over (in, kh, kw), transposed */
    sh[1] = e->out;
    sh[2] = sh[3] = 1;
    return 4;
}

/* The most common rank and alpha of S (the first seen wins a tie). */
static void common_r_alpha(const LoraSet *s, int *r, float *alpha) {
    int best_n = 0, best_an = 0;
    *r = s->e[0].r;
    *alpha = s->e[0].alpha;
    for (size_t i = 0; i < s->n; i++) {
        int nr = 0, na = 0;
        for (size_t j = 0; j < s->n; j++) {
            nr += s->e[j].r == s->e[i].r;
            na += s->e[j].alpha == s->e[i].alpha;
        }
        if (nr > best_n) {
            best_n = nr;
            *r = s->e[i].r;
        }
        if (na > best_an) {
            best_an = na;
            *alpha = s->e[i].alpha;
        }
    }
}

static json_t *json_num(double v) {
    return v == floor(v) && fabs(v) < 1e15 ? json_integer((json_int_t)v) : json_real(v);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* PEFT's LoraConfig of S (the keys to_dict gives that matter to a reader; unset ones left to
 * LoraConfig's defaults). */
static json_t *lora_config(const LoraSet *s, const LoraFileMeta *meta) {
    int r;
    float alpha;
    common_r_alpha(s, &r, &alpha);
    int dora = 0;
    json_t *rp = json_object(), *ap = json_object(), *tm = json_array();
    const char **t = xmalloc((s->n + (meta ? (size_t)meta->n_targets : 0) + 1) * sizeof *t);
    size_t nt = 0;
    for (size_t i = 0; i < s->n; i++) {
        const LoraEntry *e = &s->e[i];
        dora |= e->m != NULL;
        if (e->r != r)
            json_object_set_new(rp, e->name, json_integer(e->r));
        if (e->alpha != alpha)
            json_object_set_new(ap, e->name, json_num(e->alpha));
        if (!meta || !meta->targets)
            t[nt++] = e->name;
    }
    for (int i = 0; meta && meta->targets && i < meta->n_targets; i++)
        t[nt++] = meta->targets[i];
    qsort(t, nt, sizeof *t, cmp_str);
    for (size_t i = 0; i < nt; i++)
        if (!i || strcmp(t[i], t[i - 1]))
            json_array_append_new(tm, json_string(t[i]));
    free(t);
    json_t *c = json_object();
    json_object_set_new(c, "alpha_pattern", ap);
    json_object_set_new(c, "base_model_name_or_path",
                        meta && meta->base_model ? json_string(meta->base_model) : json_null());
    json_object_set_new(c, "bias", json_string("none"));
    json_object_set_new(c, "fan_in_fan_out", json_false());
    json_object_set_new(c, "inference_mode", json_true());
    json_object_set_new(c, "init_lora_weights", json_true());
    json_object_set_new(c, "lora_alpha", json_num(alpha));
    json_object_set_new(c, "lora_bias", json_false());
    json_object_set_new(c, "lora_dropout", json_real(0.0));
    json_object_set_new(c, "peft_type", json_string("LORA"));
    json_object_set_new(c, "r", json_integer(r));
    json_object_set_new(c, "rank_pattern", rp);
    json_object_set_new(c, "target_modules", tm);
    json_object_set_new(c, "task_type", json_null());
    json_object_set_new(c, "use_dora", json_boolean(dora));
    json_object_set_new(c, "use_rslora", json_false());
    return c;
}

static int make_dir(const char *dir, Err *err) {
    if (mkdir(dir, 0777) == 0) {
        atomic_file_sync_dir(dir);
        return 0;
    }
    if (errno == EEXIST && base_is_dir(dir))
        return 0;
    return err_set(err, ERR_IO, "%s: cannot make the adapter folder (%s)", dir,
                   errno == EEXIST ? "a file of that name is there" : strerror(errno));
}

/* ---- writing -------------------------------------------------------------------------------- */

int lora_file_write_peft(const LoraSet *s, const char *dir, const LoraFileMeta *meta,
                         Err *err) {
    int rc = check_set(s, dir, err);
    if (rc || (rc = make_dir(dir, err)))
        return rc;
    SafeTensorsWriter *wr = safetensors_writer_new();
    for (size_t i = 0; i < s->n && !rc; i++) {
        const LoraEntry *e = &s->e[i];
        int64_t sh[4];
        char *n = xasprintf("unet.%s.lora_A.weight", e->name);
        rc = safetensors_writer_add(wr, n, ST_F32, shape_a(e, sh), sh, e->A, err);
        free(n);
        n = xasprintf("unet.%s.lora_B.weight", e->name);
        if (!rc)
            rc = safetensors_writer_add(wr, n, ST_F32, shape_b(e, sh), sh, e->B, err);
        free(n);
        n = xasprintf("unet.%s.lora_magnitude_vector", e->name);
        if (!rc && e->m)
            rc = safetensors_writer_add(wr, n, ST_F32, shape_m(e, sh), sh, e->m, err);
        free(n);
    }
    json_t *cfg = lora_config(s, meta);
    /* diffusers' save_lora_weights: {"format": "pt", "lora_adapter_metadata": the UNet's
     * LoraConfig with "unet." before each key, sorted, indent 2} */
    json_t *pre = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(cfg, k, v) {
        char *pk = xasprintf("unet.%s", k);
        json_object_set(pre, pk, v);
        free(pk);
    }
    char *meta_json = json_dumps(pre, JSON_INDENT(2) | JSON_SORT_KEYS);
    char *cfg_json = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(pre);
    json_decref(cfg);
    safetensors_writer_meta(wr, "format", "pt");
    safetensors_writer_meta(wr, "lora_adapter_metadata", meta_json);
    char *path = xasprintf("%s/%s", dir, LORA_FILE_PEFT_WEIGHTS);
    if (!rc)
        rc = safetensors_writer_save(wr, path, err);
    safetensors_writer_free(wr);
    free(path);
    if (!rc) {
        path = xasprintf("%s/adapter_config.json", dir);
        char *text = xasprintf("%s\n", cfg_json);
        rc = atomic_file_write(path, text, strlen(text), err);
        free(text);
        free(path);
    }
    free(meta_json);
    free(cfg_json);
    return rc;
}

static char *underscored(const char *s) {
    char *k = xstrdup(s);
    for (char *p = k; *p; p++)
        if (*p == '.')
            *p = '_';
    return k;
}

int lora_file_write_kohya(const LoraSet *s, const char *path, Err *err) {
    int rc = check_set(s, path, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].m)
            return err_set(err, ERR_USAGE, "%s: DoRA has no kohya form that other tools read "
                           "the same (diffusers drops dora_scale): export it as peft or merged",
                           path);
    int r;
    float alpha;
    common_r_alpha(s, &r, &alpha);
    /* one alpha for all: a layer whose alpha differs has it folded into B (B·alpha_i/alpha),
     * since diffusers' kohya converter loses per-layer alphas of attention layers */
    float **folded = xcalloc(s->n, sizeof *folded);
    SafeTensorsWriter *wr = safetensors_writer_new();
    for (size_t i = 0; i < s->n && !rc; i++) {
        const LoraEntry *e = &s->e[i];
        const float *b = e->B;
        const float *a_out = &e->alpha;
        if (e->alpha != alpha && alpha != 0) {
            size_t nb = (size_t)e->out * (size_t)e->r;
            folded[i] = xmalloc(nb * sizeof **folded);
            for (size_t k = 0; k < nb; k++)
                folded[i][k] = (float)((double)e->B[k] * e->alpha / alpha);
            b = folded[i];
            a_out = &alpha;
        }
        char *key = underscored(e->name);
        int64_t sh[4];
        char *n = xasprintf("lora_unet_%s.lora_down.weight", key);
        rc = safetensors_writer_add(wr, n, ST_F32, shape_a(e, sh), sh, e->A, err);
        free(n);
        n = xasprintf("lora_unet_%s.lora_up.weight", key);
        if (!rc)
            rc = safetensors_writer_add(wr, n, ST_F32, shape_b(e, sh), sh, b, err);
        free(n);
        n = xasprintf("lora_unet_%s.alpha", key);
        if (!rc)
            rc = safetensors_writer_add(wr, n, ST_F32, 0, sh, a_out, err);
        free(n);
        free(key);
    }
    char buf[64];
    safetensors_writer_meta(wr, "ss_network_module", "networks.lora");
    snprintf(buf, sizeof buf, "%d", r);
    safetensors_writer_meta(wr, "ss_network_dim", buf);
    snprintf(buf, sizeof buf, "%.9g", (double)alpha);
    safetensors_writer_meta(wr, "ss_network_alpha", buf);
    if (!rc)
        rc = safetensors_writer_save(wr, path, err);
    safetensors_writer_free(wr);
    for (size_t i = 0; i < s->n; i++)
        free(folded[i]);
    free(folded);
    return rc;
}

/* ---- reading -------------------------------------------------------------------------------- */

/* kohya's underscored module name back to diffusers' dotted one, for diffusers block names:
 * '_' is a '.' except inside these words of diffusers' UNet module names. */
static const char *const WORDS[] = {
    "time_emb_proj", "conv_norm_out", "down_blocks", "up_blocks", "mid_block",
    "transformer_blocks", "to_q", "to_k", "to_v", "to_out", "proj_in", "proj_out",
    "conv_shortcut", "conv_in", "conv_out", "time_embedding", "add_embedding", "linear_1",
    "linear_2", NULL,
};

static int word_at(const char *s, size_t *len) {
    for (int i = 0; WORDS[i]; i++) {
        size_t n = strlen(WORDS[i]);
        if (!strncmp(s, WORDS[i], n) && (s[n] == '_' || !s[n])) {
            *len = n;
            return 1;
        }
    }
    return 0;
}

static char *dotted(const char *k) {
    char *out = xstrdup(k);
    size_t i = 0, n = strlen(k);
    while (i < n) {
        size_t w = 0;
        if (word_at(k + i, &w))
            i += w;
        else
            i += strcspn(k + i, "_");
        if (i < n)
            out[i++] = '.';
    }
    return out;
}

static int sgm_named(const char *k) {
    static const char *const sgm[] = {"input_blocks_", "middle_block_", "output_blocks_",
                                      "time_embed_", "label_emb_", "out_", NULL};
    for (int i = 0; sgm[i]; i++)
        if (!strncmp(k, sgm[i], strlen(sgm[i])))
            return 1;
    return 0;
}

typedef struct Pending {
    char *name; /* diffusers module name */
    char *key;  /* the name in the file, for messages */
    const StTensor *part[4];
} Pending;

typedef struct Alphas {
    float alpha; /* NAN: none */
    int rslora;
    json_t *pattern; /* {regex: alpha} or NULL */
    const char *from;
} Alphas;

static void alphas_from(Alphas *a, json_t *j, const char *prefix, const char *from) {
    char key[64];
    snprintf(key, sizeof key, "%slora_alpha", prefix);
    json_t *v = json_object_get(j, key);
    if (json_is_number(v) && isnan(a->alpha)) {
        a->alpha = (float)json_number_value(v);
        a->from = from;
        snprintf(key, sizeof key, "%suse_rslora", prefix);
        a->rslora = json_is_true(json_object_get(j, key));
        snprintf(key, sizeof key, "%salpha_pattern", prefix);
        v = json_object_get(j, key);
        if (json_is_object(v) && json_object_size(v))
            a->pattern = json_incref(v);
    }
}

static int read_tensor(const SafeTensors *st, const StTensor *t, float **out, Err *err) {
    *out = malloc((size_t)(t->n_elem ? t->n_elem : 1) * sizeof **out);
    if (!*out)
        return err_set(err, ERR_NOMEM, "%s: out of memory reading %s", safetensors_path(st),
                       t->name);
    int rc = safetensors_read_f32(st, t, *out, (size_t)t->n_elem, err);
    if (!rc && !finite_all(*out, (size_t)t->n_elem))
        rc = err_set(err, ERR_FORMAT, "%s: tensor %s holds a value that is not finite",
                     safetensors_path(st), t->name);
    return rc;
}

/* Pending P into entry E: shapes checked, data copied. */
static int make_entry(const SafeTensors *st, const Pending *p, const Alphas *al,
                      const SdWeights *unet, LoraEntry *e, Err *err) {
    const char *file = safetensors_path(st);
    const StTensor *down = p->part[SD_LORA_DOWN], *up = p->part[SD_LORA_UP];
    if (!down || !up)
        return err_set(err, ERR_FORMAT, "%s: adapter %s has %s but no %s", file, p->key,
                       down ? "a down (A) matrix" : "an up (B) matrix",
                       down ? "up (B)" : "down (A)");
    int64_t r = down->n_dim >= 1 ? down->shape[0] : 0;
    int ok = (down->n_dim == 2 || down->n_dim == 4) && r >= 1 && r <= 1 << 16 &&
             (up->n_dim == 2 || (up->n_dim == 4 && up->shape[2] == 1 && up->shape[3] == 1)) &&
             up->shape[1] == r && up->shape[0] >= 1 && up->shape[0] <= 1 << 24 &&
             down->shape[1] >= 1 && down->shape[1] <= 1 << 24 &&
             (down->n_dim == 2 || (down->shape[2] >= 1 && down->shape[2] <= 64 &&
                                   down->shape[3] >= 1 && down->shape[3] <= 64));
    if (!ok)
        return err_set(err, ERR_FORMAT, "%s: adapter %s: down %s and up %s do not make a "
                       "LoRA (down (r, in[, kh, kw]), up (out, r[, 1, 1]))", file, p->key,
                       down->name, up->name);
    if (strlen(p->name) >= sizeof e->name)
        return err_set(err, ERR_FORMAT, "%s: adapter %s: the module name is too long", file,
                       p->key);
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", p->name);
    e->r = (int)r;
    e->out = (int)up->shape[0];
    e->in = (int)down->shape[1];
    if (down->n_dim == 4) {
        e->kh = (int)down->shape[2];
        e->kw = (int)down->shape[3];
    }
    if (unet) {
        char *wname = xasprintf("%s.weight", p->name);
        const StTensor *w = sd_weights_find(unet, wname);
        int64_t rest = 1;
        for (int d = 1; w && d < w->n_dim; d++)
            rest *= w->shape[d];
        int good = w && w->n_dim >= 2 && w->shape[0] == e->out &&
                   rest == (int64_t)e->in * (e->kh ? e->kh : 1) * (e->kw ? e->kw : 1);
        int rc = good ? 0
                      : err_set(err, ERR_FORMAT, "%s: adapter %s gives a %d x %lld update, "
                                "%s in %s is %lld x %lld (an adapter for another model?)",
                                file, p->key, e->out,
                                (long long)e->in * (e->kh ? e->kh : 1) * (e->kw ? e->kw : 1),
                                wname, sd_weights_where(unet),
                                (long long)(w ? w->shape[0] : 0), (long long)rest);
        free(wname);
        if (rc)
            return rc;
        /* a 1x1 conv's adapter on a Linear, or the other way: the layer's kind wins */
        if (w->n_dim == 2 && e->kh == 1 && e->kw == 1)
            e->kh = e->kw = 0;
        else if (w->n_dim == 4 && !e->kh)
            e->kh = e->kw = 1;
    }
    float alpha = (float)r;
    const StTensor *ta = p->part[SD_LORA_ALPHA];
    if (ta) {
        if (ta->n_elem != 1 || safetensors_read_f32(st, ta, &alpha, 1, NULL) || !isfinite(alpha))
            return err_set(err, ERR_FORMAT, "%s: %s must hold one finite number", file,
                           ta->name);
    } else {
        float pa = NAN;
        if (al->pattern) {
            int rc = sd_weights_pattern_alpha(al->pattern, al->from, p->name, &pa, err);
            if (rc)
                return rc;
        }
        if (!isnan(pa))
            alpha = pa;
        else if (!isnan(al->alpha))
            alpha = al->alpha;
        if (al->rslora) /* s = alpha / sqrt(r): kept as alpha' / r */
            alpha *= sqrtf((float)r);
    }
    e->alpha = alpha;
    int rc = read_tensor(st, down, &e->A, err);
    if (!rc)
        rc = read_tensor(st, up, &e->B, err);
    const StTensor *tm = p->part[SD_LORA_MAG];
    if (!rc && tm) {
        if (tm->n_elem != e->out)
            rc = err_set(err, ERR_FORMAT, "%s: %s has %lld values for a layer of %d output "
                         "features", file, tm->name, (long long)tm->n_elem, e->out);
        else
            rc = read_tensor(st, tm, &e->m, err);
    }
    return rc;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const LoraEntry *)a)->name, ((const LoraEntry *)b)->name);
}

/* Which tensor family NAME is in: 1 the UNet's PEFT names ("unet."), 2 kohya's UNet
 * ("lora_unet_"), 0 another component's, -1 none. */
static int family(const char *name) {
    if (!strncmp(name, "unet.", 5))
        return 1;
    if (!strncmp(name, "lora_unet_", 10))
        return 2;
    static const char *const other[] = {"text_encoder.", "text_encoder_2.", "lora_te_",
                                        "lora_te1_", "lora_te2_", NULL};
    for (int i = 0; other[i]; i++)
        if (!strncmp(name, other[i], strlen(other[i])))
            return 0;
    return -1;
}

static const char *peft_base(const char *name) {
    return !strncmp(name, "base_model.model.", 17) ? name + 17 : name;
}

/* The weights file of FILE_OR_DIR into *PATH, and for a folder its adapter_config.json into
 * *CFG_PATH (else NULL); both malloc'd. */
static int resolve(const char *file_or_dir, char **path, char **cfg_path, Err *err) {
    *path = *cfg_path = NULL;
    if (base_is_dir(file_or_dir)) {
        static const char *const names[] = {LORA_FILE_PEFT_WEIGHTS, "adapter_model.safetensors"};
        for (int i = 0; i < 2 && !*path; i++) {
            char *p = xasprintf("%s/%s", file_or_dir, names[i]);
            if (base_is_file(p))
                *path = p;
            else
                free(p);
        }
        if (!*path)
            return err_set(err, ERR_NOTFOUND, "%s: no %s or adapter_model.safetensors in this "
                           "folder (give an adapter folder or a LoRA .safetensors file)",
                           file_or_dir, LORA_FILE_PEFT_WEIGHTS);
        *cfg_path = xasprintf("%s/adapter_config.json", file_or_dir);
    } else if (base_is_file(file_or_dir)) {
        *path = xstrdup(file_or_dir);
    } else {
        return err_set(err, ERR_NOTFOUND, "%s: no such adapter file or folder", file_or_dir);
    }
    return 0;
}

int lora_file_text_encoder_tensors(const char *file_or_dir, Err *err) {
    char *path, *cfg_path;
    int rc = resolve(file_or_dir, &path, &cfg_path, err);
    free(cfg_path);
    if (rc)
        return rc;
    SafeTensors *st = safetensors_open(path, err);
    free(path);
    if (!st)
        return err ? err->code : ERR_IO;
    int n = 0;
    for (size_t i = 0; i < safetensors_count(st); i++)
        n += family(safetensors_at(st, i)->name) == 0;
    safetensors_close(st);
    return n;
}

static int read_file(const char *file_or_dir, const SdWeights *unet, LoraSet *out, Err *err) {
    memset(out, 0, sizeof *out);
    char *path = NULL, *cfg_path = NULL;
    int rc0 = resolve(file_or_dir, &path, &cfg_path, err);
    if (rc0)
        return rc0;
    SafeTensors *st = safetensors_open(path, err);
    free(path);
    if (!st) {
        free(cfg_path);
        return err ? err->code : ERR_IO;
    }
    const char *file = safetensors_path(st);
    Alphas al = {NAN, 0, NULL, file};
    const char *m = safetensors_metadata(st, "lora_adapter_metadata");
    json_t *j = m ? json_loads(m, 0, NULL) : NULL;
    if (j) {
        alphas_from(&al, j, "unet.", file);
        alphas_from(&al, j, "", file);
    }
    json_decref(j);
    const char *ss = safetensors_metadata(st, "ss_network_alpha");
    if (isnan(al.alpha) && ss) {
        char *end;
        double v = strtod(ss, &end);
        if (end != ss && isfinite(v))
            al.alpha = (float)v;
    }
    int rc = 0;
    if (isnan(al.alpha) && cfg_path && base_is_file(cfg_path)) {
        json_error_t je;
        j = json_load_file(cfg_path, 0, &je);
        if (!j)
            rc = err_set(err, ERR_FORMAT, "%s:%d: not JSON (%s)", cfg_path, je.line, je.text);
        else
            alphas_from(&al, j, "", cfg_path);
        json_decref(j);
        if (al.pattern)
            al.from = cfg_path;
    }
    /* PEFT's own save of a UNet has no component prefix: a file where no name has one */
    int bare = 1;
    for (size_t i = 0; i < safetensors_count(st) && bare; i++)
        bare = family(safetensors_at(st, i)->name) < 0;
    SdLoraNames *names = unet ? sd_lora_names_new(unet) : NULL;
    Pending *pend = NULL;
    size_t n_pend = 0;
    for (size_t i = 0; i < safetensors_count(st) && !rc; i++) {
        const StTensor *t = safetensors_at(st, i);
        const char *name = bare ? peft_base(t->name) : t->name;
        int fam = bare ? 1 : family(name);
        if (fam == 0)
            continue; /* a text encoder's adapter */
        size_t ml = 0;
        int part = sd_lora_name_part(name, &ml);
        if (fam < 0 || part < 0) {
            rc = err_set(err, ERR_FORMAT, "%s: tensor %s is no UNet LoRA tensor easel knows "
                         "(unet.<module> with .lora_A.weight/.lora_B.weight/"
                         ".lora_magnitude_vector, or lora_unet_<module> with .lora_down.weight/"
                         ".lora_up.weight/.alpha)", file, t->name);
            break;
        }
        size_t pl = bare ? 0 : fam == 1 ? 5 : 10;
        char *mod = xstrndup(name + pl, ml - pl);
        char *dif = NULL;
        if (names) {
            char *w = sd_lora_names_target(names, mod, fam == 2);
            if (w) {
                w[strlen(w) - 7] = 0; /* ".weight" */
                dif = w;
            }
        } else if (fam == 2 && sgm_named(mod)) {
            rc = err_set(err, ERR_FORMAT, "%s: %s has SGM block names: read it with its "
                         "model (--model)", file, t->name);
        } else {
            dif = fam == 2 ? dotted(mod) : xstrdup(mod);
        }
        if (!rc && !dif)
            rc = err_set(err, ERR_NOTFOUND, "%s: %s matches no weight of %s (an adapter "
                         "for another model?)", file, t->name, sd_weights_where(unet));
        free(mod);
        if (rc) {
            free(dif);
            break;
        }
        Pending *p = NULL;
        for (size_t k = 0; k < n_pend && !p; k++)
            if (!strcmp(pend[k].name, dif))
                p = &pend[k];
        if (!p) {
            pend = xrealloc(pend, (n_pend + 1) * sizeof *pend);
            p = &pend[n_pend++];
            memset(p, 0, sizeof *p);
            p->name = dif;
            p->key = xstrndup(t->name, (size_t)(name - t->name) + ml);
        } else {
            free(dif);
        }
        if (p->part[part])
            rc = err_set(err, ERR_FORMAT, "%s: tensors %s and %s are the same part of one "
                         "adapter", file, p->part[part]->name, t->name);
        p->part[part] = t;
    }
    if (!rc && !n_pend)
        rc = err_set(err, ERR_FORMAT, "%s: holds no UNet adapter (only text-encoder ones, or "
                     "nothing)", file);
    if (!rc) {
        out->e = xcalloc(n_pend, sizeof *out->e);
        for (size_t k = 0; k < n_pend && !rc; k++, out->n++)
            rc = make_entry(st, &pend[k], &al, unet, &out->e[k], err);
        if (!rc)
            qsort(out->e, out->n, sizeof *out->e, cmp_entry);
    }
    for (size_t k = 0; k < n_pend; k++) {
        free(pend[k].name);
        free(pend[k].key);
    }
    free(pend);
    sd_lora_names_free(names);
    json_decref(al.pattern);
    free(cfg_path);
    safetensors_close(st);
    if (rc)
        lora_set_free(out);
    return rc;
}

int lora_file_read(const char *file_or_dir, LoraSet *out, Err *err) {
    return read_file(file_or_dir, NULL, out, err);
}

int lora_file_read_unet(const char *file_or_dir, const SdWeights *unet, LoraSet *out,
                        Err *err) {
    return read_file(file_or_dir, unet, out, err);
}
