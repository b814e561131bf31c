/* clip_load — find a model folder's files, work out the architecture, bind every weight.
 * See clip.h for the contract.
 *
 * Order: weights file -> naming scheme (OpenCLIP or Hugging Face, from the tensor names) ->
 * architecture from the tensor shapes -> overridden by open_clip_config.json / config.json
 * where they say more (heads, activation, preprocessing) -> every tensor bound and checked
 * against that architecture -> tokenizer. The first problem stops the load with an error
 * naming the file and the tensor; nothing is half-loaded.
 */
#include "clip_int.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "nn_clip.h"

typedef struct Loader {
    ClipModel *m;
    Err *err;
    int failed;
} Loader;

static const char *wname(const ClipModel *m) { return m->weights_path; }

/* ---- tensors ------------------------------------------------------------------------------- */

static const StTensor *find(Loader *ld, const char *name) {
    const ClipTensorSource *src = ld->m->src;
    return src ? src->find(src->user, name) : safetensors_find(ld->m->st, name);
}

/* NAME's values as f32 into DST (T's elements), from the file or the tensor source. */
static int read_f32(Loader *ld, const char *name, const StTensor *t, float *dst) {
    const ClipTensorSource *src = ld->m->src;
    if (!src)
        return safetensors_read_f32(ld->m->st, t, dst, (size_t)t->n_elem, NULL);
    int rc = src->read_f32(src->user, name, t->n_dim, t->shape, dst, ld->err);
    if (rc)
        ld->failed = 1;
    return rc;
}

static void *own_bytes(ClipModel *m, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        return NULL;
    if (m->n_owned == m->cap_owned) {
        m->cap_owned = m->cap_owned ? 2 * m->cap_owned : 64;
        m->owned = xrealloc(m->owned, m->cap_owned * sizeof(void *));
    }
    m->owned[m->n_owned++] = p;
    return p;
}

static float *own(ClipModel *m, size_t n) { return own_bytes(m, n * sizeof(float)); }

static void shape_str(char *buf, size_t size, int nd, const int64_t *d) {
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < nd && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (k < size)
        snprintf(buf + k, size - k, "]");
}

/* Index of the first NaN or infinity in P[0..N), or -1. Tests the exponent bits, so the loop
 * vectorises: a ViT-L's 430 M weights take a fraction of a second. */
static int64_t first_nonfinite(const float *p, int64_t n) {
    const int64_t block = 4096;
    for (int64_t b = 0; b < n; b += block) {
        int64_t e = b + block < n ? b + block : n;
        uint32_t any = 0;
        for (int64_t i = b; i < e; i++) {
            uint32_t u;
            memcpy(&u, &p[i], sizeof u);
            any |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
        }
        if (any)
            for (int64_t i = b; i < e; i++)
                if (!isfinite(p[i]))
                    return i;
    }
    return -1;
}

/* NAME with shape (d[0..nd)) and a float dtype; NULL and a sticky error if not. */
static const StTensor *checked(Loader *ld, const char *name, int nd, const int64_t *d) {
    if (ld->failed)
        return NULL;
    ClipModel *m = ld->m;
    const StTensor *t = find(ld, name);
    if (!t) {
        err_set(ld->err, ERR_FORMAT, "%s: missing tensor '%s' (not a complete %s CLIP model)",
                wname(m), name, m->layout == CLIP_LAYOUT_HF ? "Hugging Face" : "OpenCLIP");
        ld->failed = 1;
        return NULL;
    }
    int ok = t->n_dim == nd;
    for (int i = 0; ok && i < nd; i++)
        ok = t->shape[i] == d[i];
    if (!ok) {
        char want[96], got[96];
        shape_str(want, sizeof want, nd, d);
        shape_str(got, sizeof got, t->n_dim, t->shape);
        err_set(ld->err, ERR_FORMAT, "%s: tensor '%s' has shape %s, the architecture (%s) needs %s",
                wname(m), name, got, m->config_source, want);
        ld->failed = 1;
        return NULL;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
        err_set(ld->err, ERR_FORMAT, "%s: tensor '%s' is %s; CLIP weights must be F32, F16 or BF16",
                wname(m), name, safetensors_dtype_name(t->dtype));
        ld->failed = 1;
        return NULL;
    }
    return t;
}

/* T's mapped bytes were copied or converted and are not read again: hand the whole pages
 * among them back, so that they stop counting as resident (the mapping is read-only and
 * private; a later read would fault them in again from the file). */
static void release_mapped(const StTensor *t) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t b = ((uintptr_t)t->data + page - 1) & ~(page - 1);
    uintptr_t e = ((uintptr_t)t->data + (uintptr_t)t->n_bytes) & ~(page - 1);
    if (e > b)
        madvise((void *)b, e - b, MADV_DONTNEED);
}

static int nonfinite_error(Loader *ld, const char *name, float v, int64_t at) {
    err_set(ld->err, ERR_FORMAT, "%s: tensor '%s' holds %s at element %lld: the weights are "
            "corrupt (re-download or re-export the model)", wname(ld->m), name,
            isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf", (long long)at);
    ld->failed = 1;
    return -1;
}

/* The f32 data of NAME with shape (d[0..nd)); NULL and a sticky error if missing,
 * mis-shaped or out of memory. */
static const float *tensor(Loader *ld, const char *name, int nd, const int64_t *d) {
    const StTensor *t = checked(ld, name, nd, d);
    if (!t)
        return NULL;
    ClipModel *m = ld->m;
    m->weight_bytes += (size_t)t->n_elem * sizeof(float);
    const float *p = m->src ? NULL : safetensors_f32_view(t);
    if (!p) {
        float *conv = own(m, (size_t)t->n_elem);
        if (!conv) {
            err_set(ld->err, ERR_NOMEM, "%s: no memory to convert tensor '%s' to f32", wname(m),
                    name);
            ld->failed = 1;
            return NULL;
        }
        if (read_f32(ld, name, t, conv) != 0)
            return NULL;
        if (!m->src)
            release_mapped(t);
        p = conv;
    }
    int64_t bad = first_nonfinite(p, t->n_elem);
    if (bad >= 0) {
        nonfinite_error(ld, name, p[bad], bad);
        return NULL;
    }
    return p;
}

/* Index of the first bf16 NaN or infinity in P[0..N), or -1. */
static int64_t first_nonfinite_bf16(const uint16_t *p, int64_t n) {
    const int64_t block = 4096;
    for (int64_t b = 0; b < n; b += block) {
        int64_t e = b + block < n ? b + block : n;
        uint32_t any = 0;
        for (int64_t i = b; i < e; i++)
            any |= (uint32_t)((p[i] & 0x7f80u) == 0x7f80u);
        if (any)
            for (int64_t i = b; i < e; i++)
                if ((p[i] & 0x7f80u) == 0x7f80u)
                    return i;
    }
    return -1;
}

/* NAME (shape d) in the model's resident dtype, written at DST (N elements of it) when DST
 * is not NULL, else returned in place (bf16 file, bf16 model) or in a new owned buffer. */
static ClipMat wtensor_into(Loader *ld, const char *name, int nd, const int64_t *d, void *dst) {
    ClipModel *m = ld->m;
    if (!m->bf16) {
        const float *p = tensor(ld, name, nd, d);
        if (p && dst) {
            const StTensor *t = find(ld, name);
            memcpy(dst, p, (size_t)t->n_elem * sizeof(float));
            if (!m->src && p == t->data)
                release_mapped(t);
            return dst;
        }
        return p;
    }
    const StTensor *t = checked(ld, name, nd, d);
    if (!t)
        return NULL;
    size_t n = (size_t)t->n_elem;
    uint16_t *out = dst;
    const uint16_t *p;
    if (!m->src && t->dtype == ST_BF16 && !dst && ((uintptr_t)t->data & 1) == 0) {
        p = t->data; /* used in place */
    } else {
        if (!out)
            out = own_bytes(m, n * sizeof(uint16_t));
        const float *view = m->src ? NULL : safetensors_f32_view(t);
        float *tmp = view ? NULL : malloc(n * sizeof(float));
        if (!out || (!view && !tmp)) {
            free(tmp);
            err_set(ld->err, ERR_NOMEM, "%s: no memory to convert tensor '%s' to bf16", wname(m),
                    name);
            ld->failed = 1;
            return NULL;
        }
        if (!view && read_f32(ld, name, t, tmp) != 0) {
            free(tmp);
            return NULL;
        }
        const float *src = view ? view : tmp;
        int64_t bad = first_nonfinite(src, (int64_t)n);
        if (bad >= 0) {
            nonfinite_error(ld, name, src[bad], bad);
            free(tmp);
            return NULL;
        }
        nn_clip_f32_to_bf16(out, src, n);
        free(tmp);
        if (!m->src)
            release_mapped(t);
        p = out;
    }
    if (!dst)
        m->weight_bytes += n * sizeof(uint16_t);
    int64_t bad = first_nonfinite_bf16(p, (int64_t)n);
    if (bad >= 0) { /* a finite f32 beyond bf16's range rounds to infinity */
        uint32_t u = (uint32_t)p[bad] << 16;
        float v;
        memcpy(&v, &u, 4);
        nonfinite_error(ld, name, v, bad);
        return NULL;
    }
    return p;
}

static ClipMat wtensor(Loader *ld, int nd, const int64_t *d, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static ClipMat wtensor(Loader *ld, int nd, const int64_t *d, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return wtensor_into(ld, name, nd, d, NULL);
}

static const float *t1(Loader *ld, const char *name, int64_t a) {
    int64_t d[1] = {a};
    return tensor(ld, name, 1, d);
}

static const float *t2(Loader *ld, const char *name, int64_t a, int64_t b) {
    int64_t d[2] = {a, b};
    return tensor(ld, name, 2, d);
}

/* NAME is (C, E) as OpenCLIP stores projections: return it transposed to (E, C). */
static const float *t2_transposed(Loader *ld, const char *name, int64_t c, int64_t e) {
    const float *src = t2(ld, name, c, e);
    if (!src)
        return NULL;
    float *dst = own(ld->m, (size_t)(c * e));
    if (!dst) {
        err_set(ld->err, ERR_NOMEM, "%s: no memory for '%s'", wname(ld->m), name);
        ld->failed = 1;
        return NULL;
    }
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < e; j++)
            dst[j * c + i] = src[i * e + j];
    const StTensor *t = find(ld, name);
    if (src == t->data)
        release_mapped(t);
    return dst;
}

static const float *tf(Loader *ld, int nd, const int64_t *d, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const float *tf(Loader *ld, int nd, const int64_t *d, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return tensor(ld, name, nd, d);
}

static int has(Loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int has(Loader *ld, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return find(ld, name) != NULL;
}

/* ---- architecture -------------------------------------------------------------------------- */

/* Tower prefixes and names per layout. */
typedef struct Names {
    const char *patch, *cls, *pos_v, *ln_pre, *vblock, *ln_post, *proj_v;
    const char *tok, *pos_t, *tblock, *ln_final, *proj_t;
    const char *ln1, *ln2, *fc1, *fc2, *out;
} Names;

static const Names names_openclip = {
    "visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
    "visual.ln_pre", "visual.transformer.resblocks.", "visual.ln_post", "visual.proj",
    "token_embedding.weight", "positional_embedding", "transformer.resblocks.", "ln_final",
    "text_projection", "ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj", "attn.out_proj",
};

static const Names names_hf = {
    "vision_model.embeddings.patch_embedding.weight", "vision_model.embeddings.class_embedding",
    "vision_model.embeddings.position_embedding.weight", "vision_model.pre_layrnorm",
    "vision_model.encoder.layers.", "vision_model.post_layernorm", "visual_projection.weight",
    "text_model.embeddings.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight", "text_model.encoder.layers.",
    "text_model.final_layer_norm", "text_projection.weight", "layer_norm1", "layer_norm2",
    "mlp.fc1", "mlp.fc2", "self_attn.out_proj",
};

/* A CLIPTextModel as transformers 5 saves it: the text tower's names without "text_model."
 * (the vision names are never used: such a file is a text tower alone). */
static const Names names_hf_bare_text = {
    "vision_model.embeddings.patch_embedding.weight", "vision_model.embeddings.class_embedding",
    "vision_model.embeddings.position_embedding.weight", "vision_model.pre_layrnorm",
    "vision_model.encoder.layers.", "vision_model.post_layernorm", "visual_projection.weight",
    "embeddings.token_embedding.weight", "embeddings.position_embedding.weight",
    "encoder.layers.", "final_layer_norm", "text_projection.weight", "layer_norm1",
    "layer_norm2", "mlp.fc1", "mlp.fc2", "self_attn.out_proj",
};

static int count_layers(Loader *ld, const char *block_fmt, const char *ln1) {
    int n = 0;
    char prefix[200];
    for (;; n++) {
        snprintf(prefix, sizeof prefix, "%s%d.", block_fmt, n);
        if (!has(ld, "%s%s.weight", prefix, ln1))
            return n;
    }
}

static int64_t dim(Loader *ld, const char *name, int i) {
    const StTensor *t = find(ld, name);
    return t && i < t->n_dim ? t->shape[i] : -1;
}

static void shapes_defaults(ClipConfig *c) {
    c->quick_gelu = 0;
    c->eos_token_id = -1;
    c->ln_eps = 1e-5f;
    for (int i = 0; i < 3; i++) {
        c->mean[i] = clip_image_mean[i];
        c->std[i] = clip_image_std[i];
    }
    c->resize = CLIP_RESIZE_SHORTEST;
}

/* A text tower alone (Hugging Face CLIPTextModel / CLIPTextModelWithProjection): the text
 * fields; embed_dim 0 when there is no projection. */
static int shapes_text_only(Loader *ld, const Names *nm, ClipConfig *c) {
    char name[256];
    memset(c, 0, sizeof *c);
    c->embed_dim = find(ld, nm->proj_t) ? (int)dim(ld, nm->proj_t, 0) : 0;
    c->vocab_size = (int)dim(ld, nm->tok, 0);
    c->text_width = (int)dim(ld, nm->tok, 1);
    c->context_length = (int)dim(ld, nm->pos_t, 0);
    c->text_layers = count_layers(ld, nm->tblock, nm->ln1);
    snprintf(name, sizeof name, "%s0.%s.weight", nm->tblock, nm->fc1);
    c->text_mlp = (int)dim(ld, name, 0);
    if (c->vocab_size <= 0 || c->text_width <= 0 || c->context_length <= 0 ||
        c->text_layers == 0 || c->text_mlp <= 0)
        return err_set(ld->err, ERR_FORMAT, "%s: not a CLIP text model: missing or odd tensors "
                       "among '%s', '%s', '%s0.*'", wname(ld->m), nm->tok, nm->pos_t,
                       nm->tblock);
    c->text_heads = c->text_width % 64 == 0 ? c->text_width / 64 : 0;
    shapes_defaults(c);
    return 0;
}

/* The architecture the tensors imply, heads from OpenCLIP's 64-wide default. */
static int shapes_config(Loader *ld, const Names *nm, ClipConfig *c) {
    ClipModel *m = ld->m;
    int hf = m->layout == CLIP_LAYOUT_HF;
    char name[256];
    if (m->text_only)
        return shapes_text_only(ld, nm, c);
    c->vision_width = (int)dim(ld, nm->patch, 0);
    c->patch_size = (int)dim(ld, nm->patch, 2);
    int64_t n_pos = dim(ld, nm->pos_v, 0);
    c->vision_layers = count_layers(ld, nm->vblock, nm->ln1);
    snprintf(name, sizeof name, "%s0.", nm->vblock);
    strcat(name, nm->fc1);
    strcat(name, ".weight");
    c->vision_mlp = (int)dim(ld, name, 0);
    c->embed_dim = (int)dim(ld, nm->proj_v, hf ? 0 : 1);
    c->vocab_size = (int)dim(ld, nm->tok, 0);
    c->text_width = (int)dim(ld, nm->tok, 1);
    c->context_length = (int)dim(ld, nm->pos_t, 0);
    c->text_layers = count_layers(ld, nm->tblock, nm->ln1);
    snprintf(name, sizeof name, "%s0.", nm->tblock);
    strcat(name, nm->fc1);
    strcat(name, ".weight");
    c->text_mlp = (int)dim(ld, name, 0);
    if (c->vision_width <= 0 || c->patch_size <= 0 || n_pos <= 1 || c->vision_layers == 0 ||
        c->vision_mlp <= 0 || c->embed_dim <= 0 || c->vocab_size <= 0 || c->text_width <= 0 ||
        c->context_length <= 0 || c->text_layers == 0 || c->text_mlp <= 0)
        return err_set(ld->err, ERR_FORMAT,
                       "%s: not a CLIP ViT model: missing or odd tensors among '%s', '%s', "
                       "'%s', '%s'", wname(m), nm->patch, nm->pos_v, nm->tok, nm->pos_t);
    int side = (int)lround(sqrt((double)(n_pos - 1)));
    if ((int64_t)side * side != n_pos - 1)
        return err_set(ld->err, ERR_FORMAT, "%s: '%s' has %lld positions, not 1 + a square",
                       wname(m), nm->pos_v, (long long)n_pos);
    c->image_size = side * c->patch_size;
    c->vision_heads = c->vision_width % 64 == 0 ? c->vision_width / 64 : 0;
    c->text_heads = c->text_width % 64 == 0 ? c->text_width / 64 : 0;
    shapes_defaults(c);
    return 0;
}

static int jint(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (int)json_integer_value(v);
    if (json_is_real(v))
        return (int)json_real_value(v);
    return dflt;
}

static double jnum(json_t *o, const char *key, double dflt) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static int read_triplet(json_t *a, float out[3]) {
    if (json_is_number(a)) {
        out[0] = out[1] = out[2] = (float)json_number_value(a);
        return 1;
    }
    if (!json_is_array(a) || json_array_size(a) != 3)
        return 0;
    for (int i = 0; i < 3; i++)
        out[i] = (float)json_number_value(json_array_get(a, (size_t)i));
    return 1;
}

/* open_clip_config.json: {"model_cfg": {...}, "preprocess_cfg": {...}}. */
static int openclip_config(Loader *ld, const char *path, ClipConfig *c, int arch) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return err_set(ld->err, ERR_FORMAT, "%s:%d: %s", path, je.line, je.text);
    int rc = 0;
    json_t *mc = json_object_get(root, "model_cfg");
    json_t *pc = json_object_get(root, "preprocess_cfg");
    if (arch) {
        if (!json_is_object(mc)) {
            rc = err_set(ld->err, ERR_FORMAT, "%s: no \"model_cfg\" object", path);
            goto out;
        }
        json_t *v = json_object_get(mc, "vision_cfg"), *t = json_object_get(mc, "text_cfg");
        const char *unsupported[] = {"timm_model_name", "hf_model_name", "attentional_pool",
                                     "ls_init_value", "no_ln_pre", "final_ln_after_pool"};
        for (size_t i = 0; i < ARRAY_LEN(unsupported); i++) {
            json_t *x = json_object_get(v, unsupported[i]);
            json_t *y = json_object_get(t, unsupported[i]);
            if ((x && !json_is_null(x) && !json_is_false(x)) ||
                (y && !json_is_null(y) && !json_is_false(y))) {
                rc = err_set(ld->err, ERR_FORMAT, "%s: \"%s\" models are not supported (plain "
                             "CLIP ViT only)", path, unsupported[i]);
                goto out;
            }
        }
        c->embed_dim = jint(mc, "embed_dim", c->embed_dim);
        c->quick_gelu = json_is_true(json_object_get(mc, "quick_gelu"));
        if (json_is_object(v)) {
            c->image_size = jint(v, "image_size", c->image_size);
            c->patch_size = jint(v, "patch_size", c->patch_size);
            c->vision_width = jint(v, "width", c->vision_width);
            c->vision_layers = jint(v, "layers", c->vision_layers);
            int hw = jint(v, "head_width", 64);
            c->vision_heads = hw > 0 && c->vision_width % hw == 0 ? c->vision_width / hw : 0;
            c->vision_mlp = (int)lround(jnum(v, "mlp_ratio", 4.0) * c->vision_width);
        }
        if (json_is_object(t)) {
            c->context_length = jint(t, "context_length", c->context_length);
            c->vocab_size = jint(t, "vocab_size", c->vocab_size);
            c->text_width = jint(t, "width", c->text_width);
            c->text_layers = jint(t, "layers", c->text_layers);
            c->text_heads = jint(t, "heads", 8); /* OpenCLIP's CLIPTextCfg default */
            c->text_mlp = (int)lround(jnum(t, "mlp_ratio", 4.0) * c->text_width);
        }
    }
    if (json_is_object(pc)) {
        read_triplet(json_object_get(pc, "mean"), c->mean);
        read_triplet(json_object_get(pc, "std"), c->std);
        const char *rm = json_string_value(json_object_get(pc, "resize_mode"));
        if (rm && strcmp(rm, "squash") == 0)
            c->resize = CLIP_RESIZE_SQUASH;
    }
out:
    json_decref(root);
    return rc;
}

static int hf_act(Loader *ld, const char *path, json_t *o, int dflt, int *quick) {
    const char *a = json_string_value(json_object_get(o, "hidden_act"));
    if (!a) {
        *quick = dflt;
        return 0;
    }
    if (strcmp(a, "quick_gelu") == 0)
        *quick = 1;
    else if (strcmp(a, "gelu") == 0)
        *quick = 0;
    else
        return err_set(ld->err, ERR_FORMAT, "%s: hidden_act \"%s\" not supported (gelu, "
                       "quick_gelu)", path, a);
    return 0;
}

/* The text fields of a Hugging Face config (T: CLIPTextConfig; ROOT: the file's top level,
 * for projection_dim). */
static int hf_text_config(Loader *ld, const char *path, json_t *t, json_t *root, ClipConfig *c) {
    if (c->embed_dim > 0) /* only with a projection, whose shape says it too */
        c->embed_dim = jint(root, "projection_dim", jint(t, "projection_dim", c->embed_dim));
    c->context_length = jint(t, "max_position_embeddings", c->context_length);
    c->vocab_size = jint(t, "vocab_size", c->vocab_size);
    c->text_width = jint(t, "hidden_size", c->text_width);
    c->text_layers = jint(t, "num_hidden_layers", c->text_layers);
    c->text_heads = jint(t, "num_attention_heads", c->text_heads);
    c->text_mlp = jint(t, "intermediate_size", c->text_mlp);
    int eos = jint(t, "eos_token_id", 2);
    c->eos_token_id = eos == 2 ? -1 : eos;
    c->ln_eps = (float)jnum(t, "layer_norm_eps", c->ln_eps);
    return hf_act(ld, path, t, 1, &c->quick_gelu);
}

/* Hugging Face config.json (CLIPModel); the text of a tensor source's config when it has
 * one. */
static int hf_config(Loader *ld, const char *path, ClipConfig *c) {
    json_error_t je;
    const ClipTensorSource *src = ld->m->src;
    json_t *root = src ? json_loads(src->config_json, 0, &je) : json_load_file(path, 0, &je);
    if (!root)
        return err_set(ld->err, ERR_FORMAT, "%s:%d: %s", path, je.line, je.text);
    int rc = 0;
    json_t *v = json_object_get(root, "vision_config"), *t = json_object_get(root, "text_config");
    if (ld->m->text_only) { /* CLIPTextConfig at the top level, or a CLIPModel's text_config */
        rc = hf_text_config(ld, path, json_is_object(t) ? t : root, root, c);
        goto out;
    }
    if (!json_is_object(v) || !json_is_object(t)) {
        rc = err_set(ld->err, ERR_FORMAT, "%s: no \"vision_config\" and \"text_config\" (not a "
                     "CLIPModel config)", path);
        goto out;
    }
    c->embed_dim = jint(root, "projection_dim", c->embed_dim);
    c->image_size = jint(v, "image_size", c->image_size);
    c->patch_size = jint(v, "patch_size", c->patch_size);
    c->vision_width = jint(v, "hidden_size", c->vision_width);
    c->vision_layers = jint(v, "num_hidden_layers", c->vision_layers);
    c->vision_heads = jint(v, "num_attention_heads", c->vision_heads);
    c->vision_mlp = jint(v, "intermediate_size", c->vision_mlp);
    c->context_length = jint(t, "max_position_embeddings", c->context_length);
    c->vocab_size = jint(t, "vocab_size", c->vocab_size);
    c->text_width = jint(t, "hidden_size", c->text_width);
    c->text_layers = jint(t, "num_hidden_layers", c->text_layers);
    c->text_heads = jint(t, "num_attention_heads", c->text_heads);
    c->text_mlp = jint(t, "intermediate_size", c->text_mlp);
    /* transformers pools at the first eos_token_id, except for the legacy id 2 (argmax) */
    int eos = jint(t, "eos_token_id", 2);
    c->eos_token_id = eos == 2 ? -1 : eos;
    c->ln_eps = (float)jnum(v, "layer_norm_eps", c->ln_eps);
    int qv = 1, qt = 1; /* transformers' default is quick_gelu */
    if ((rc = hf_act(ld, path, v, 1, &qv)) != 0 || (rc = hf_act(ld, path, t, 1, &qt)) != 0)
        goto out;
    if (qv != qt) {
        rc = err_set(ld->err, ERR_FORMAT, "%s: different activations in the two towers are "
                     "not supported", path);
        goto out;
    }
    c->quick_gelu = qv;
out:
    json_decref(root);
    return rc;
}

/* preprocessor_config.json (Hugging Face): image_mean, image_std. */
static void hf_preprocess(const char *path, ClipConfig *c) {
    json_t *root = json_load_file(path, 0, NULL);
    if (!root)
        return;
    read_triplet(json_object_get(root, "image_mean"), c->mean);
    read_triplet(json_object_get(root, "image_std"), c->std);
    json_decref(root);
}

static int check_config(Loader *ld, const ClipConfig *c) {
    const char *src = ld->m->config_source;
    if (ld->m->text_only) {
        if (c->text_heads <= 0 || c->text_width % c->text_heads != 0)
            return err_set(ld->err, ERR_FORMAT, "%s: cannot tell the text heads from %s (width "
                           "%d is not a multiple of 64): put config.json beside the weights",
                           ld->m->dir, src, c->text_width);
        return 0;
    }
    if (c->vision_heads <= 0 || c->vision_width % c->vision_heads != 0)
        return err_set(ld->err, ERR_FORMAT, "%s: cannot tell the vision heads from %s (width %d "
                       "is not a multiple of 64): put open_clip_config.json or config.json "
                       "beside the weights", ld->m->dir, src, c->vision_width);
    if (c->text_heads <= 0 || c->text_width % c->text_heads != 0)
        return err_set(ld->err, ERR_FORMAT, "%s: cannot tell the text heads from %s (width %d "
                       "is not a multiple of 64): put open_clip_config.json or config.json "
                       "beside the weights", ld->m->dir, src, c->text_width);
    if (c->image_size % c->patch_size != 0)
        return err_set(ld->err, ERR_FORMAT, "%s: image size %d is not a multiple of the patch "
                       "size %d", src, c->image_size, c->patch_size);
    return 0;
}

/* ---- binding ------------------------------------------------------------------------------- */

static void bind_block(Loader *ld, const Names *nm, const char *block_fmt, int i, int C, int M,
                       ClipBlock *b) {
    char p[200];
    snprintf(p, sizeof p, "%s%d.", block_fmt, i);
    int64_t dc[1] = {C}, dm[1] = {M}, dcc[2] = {C, C}, dmc[2] = {M, C}, dcm[2] = {C, M};
    b->ln1_w = tf(ld, 1, dc, "%s%s.weight", p, nm->ln1);
    b->ln1_b = tf(ld, 1, dc, "%s%s.bias", p, nm->ln1);
    if (ld->m->layout == CLIP_LAYOUT_OPENCLIP) {
        int64_t d3[2] = {3 * (int64_t)C, C}, d3b[1] = {3 * (int64_t)C};
        b->wqkv = wtensor(ld, 2, d3, "%sattn.in_proj_weight", p);
        b->bqkv = tf(ld, 1, d3b, "%sattn.in_proj_bias", p);
    } else { /* q, k, v stacked into one (3C, C) matrix and one (3C) bias */
        size_t es = ld->m->bf16 ? sizeof(uint16_t) : sizeof(float);
        char *w = own_bytes(ld->m, 3 * (size_t)C * (size_t)C * es);
        float *bias = own(ld->m, 3 * (size_t)C);
        if (!w || !bias) {
            err_set(ld->err, ERR_NOMEM, "%s: no memory for block %s", wname(ld->m), p);
            ld->failed = 1;
            return;
        }
        const char *qkv[3] = {"q", "k", "v"};
        for (int j = 0; j < 3; j++) {
            char name[256];
            snprintf(name, sizeof name, "%sself_attn.%s_proj.weight", p, qkv[j]);
            wtensor_into(ld, name, 2, dcc, w + (size_t)j * (size_t)C * (size_t)C * es);
            const float *bj = tf(ld, 1, dc, "%sself_attn.%s_proj.bias", p, qkv[j]);
            if (bj)
                memcpy(bias + (size_t)j * (size_t)C, bj, (size_t)C * sizeof(float));
        }
        if (ld->m->bf16) /* the f32 path counted its tensors */
            ld->m->weight_bytes += 3 * (size_t)C * (size_t)C * es;
        b->wqkv = w;
        b->bqkv = bias;
    }
    b->wo = wtensor(ld, 2, dcc, "%s%s.weight", p, nm->out);
    b->bo = tf(ld, 1, dc, "%s%s.bias", p, nm->out);
    b->ln2_w = tf(ld, 1, dc, "%s%s.weight", p, nm->ln2);
    b->ln2_b = tf(ld, 1, dc, "%s%s.bias", p, nm->ln2);
    b->fc1_w = wtensor(ld, 2, dmc, "%s%s.weight", p, nm->fc1);
    b->fc1_b = tf(ld, 1, dm, "%s%s.bias", p, nm->fc1);
    b->fc2_w = wtensor(ld, 2, dcm, "%s%s.weight", p, nm->fc2);
    b->fc2_b = tf(ld, 1, dc, "%s%s.bias", p, nm->fc2);
}

static void bind_all(Loader *ld, const Names *nm) {
    ClipModel *m = ld->m;
    const ClipConfig *c = &m->cfg;
    int hf = m->layout == CLIP_LAYOUT_HF;
    int Cv = c->vision_width, Ct = c->text_width, E = c->embed_dim, P = c->patch_size;
    char n[128];
    if (m->text_only)
        goto text;
    int64_t np = (int64_t)(c->image_size / P) * (c->image_size / P);
    int64_t dpatch[4] = {Cv, 3, P, P};
    m->patch_w = tensor(ld, nm->patch, 4, dpatch);
    m->class_emb = t1(ld, nm->cls, Cv);
    m->pos_v = t2(ld, nm->pos_v, 1 + np, Cv);
    if (m->pos_v && m->class_emb) { /* the class token's row, summed once */
        m->pos_cls = own(m, (size_t)(1 + np) * (size_t)Cv);
        if (!m->pos_cls) {
            err_set(ld->err, ERR_NOMEM, "%s: no memory for the positional embedding", wname(m));
            ld->failed = 1;
            return;
        }
        memcpy(m->pos_cls, m->pos_v, (size_t)(1 + np) * (size_t)Cv * sizeof(float));
        for (int i = 0; i < Cv; i++)
            m->pos_cls[i] = m->class_emb[i] + m->pos_v[i];
    }
    snprintf(n, sizeof n, "%s.weight", nm->ln_pre);
    m->ln_pre_w = t1(ld, n, Cv);
    snprintf(n, sizeof n, "%s.bias", nm->ln_pre);
    m->ln_pre_b = t1(ld, n, Cv);
    m->vblocks = xcalloc((size_t)c->vision_layers, sizeof(ClipBlock));
    for (int i = 0; i < c->vision_layers; i++)
        bind_block(ld, nm, nm->vblock, i, Cv, c->vision_mlp, &m->vblocks[i]);
    snprintf(n, sizeof n, "%s.weight", nm->ln_post);
    m->ln_post_w = t1(ld, n, Cv);
    snprintf(n, sizeof n, "%s.bias", nm->ln_post);
    m->ln_post_b = t1(ld, n, Cv);
    m->proj_v = hf ? t2(ld, nm->proj_v, E, Cv) : t2_transposed(ld, nm->proj_v, Cv, E);
text:;
    int64_t dtok[2] = {c->vocab_size, Ct};
    m->tok_emb = wtensor(ld, 2, dtok, "%s", nm->tok);
    m->pos_t = t2(ld, nm->pos_t, c->context_length, Ct);
    m->tblocks = xcalloc((size_t)c->text_layers, sizeof(ClipBlock));
    for (int i = 0; i < c->text_layers; i++)
        bind_block(ld, nm, nm->tblock, i, Ct, c->text_mlp, &m->tblocks[i]);
    snprintf(n, sizeof n, "%s.weight", nm->ln_final);
    m->ln_final_w = t1(ld, n, Ct);
    snprintf(n, sizeof n, "%s.bias", nm->ln_final);
    m->ln_final_b = t1(ld, n, Ct);
    if (!m->text_only || E > 0)
        m->proj_t = hf ? t2(ld, nm->proj_t, E, Ct) : t2_transposed(ld, nm->proj_t, Ct, E);
    /* more blocks in the file than the architecture says: the config does not fit */
    const char *fmts[2] = {nm->vblock, nm->tblock};
    int counts[2] = {c->vision_layers, c->text_layers};
    for (int i = m->text_only; i < 2 && !ld->failed; i++) {
        char p[200];
        snprintf(p, sizeof p, "%s%d.", fmts[i], counts[i]);
        if (has(ld, "%s%s.weight", p, nm->ln1)) {
            err_set(ld->err, ERR_FORMAT, "%s: tensor '%s%s.weight' is beyond the %d layers %s "
                    "gives", wname(m), p, nm->ln1, counts[i], m->config_source);
            ld->failed = 1;
        }
    }
}

/* ---- public -------------------------------------------------------------------------------- */

static char *find_weights(const char *dir, Err *err) {
    const char *names[] = {"open_clip_model.safetensors", "model.safetensors"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char *p = xasprintf("%s/%s", dir, names[i]);
        if (base_is_file(p))
            return p;
        free(p);
    }
    const char *pickles[] = {"open_clip_pytorch_model.bin", "pytorch_model.bin"};
    for (size_t i = 0; i < ARRAY_LEN(pickles); i++) {
        char *p = xasprintf("%s/%s", dir, pickles[i]);
        int found = base_is_file(p);
        free(p);
        if (found) {
            err_set(err, ERR_FORMAT, "%s: holds only %s (a PyTorch pickle); easel reads "
                    "safetensors: download open_clip_model.safetensors or model.safetensors",
                    dir, pickles[i]);
            return NULL;
        }
    }
    err_set(err, ERR_NOTFOUND, "%s: no open_clip_model.safetensors or model.safetensors here",
            dir);
    return NULL;
}

int clip_weights_parse(const char *s, ClipWeights *out) {
    static const char *names[] = {"auto", "f32", "bf16"};
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (ClipWeights)i;
            return 0;
        }
    return -1;
}

const char *clip_weights_name(ClipWeights w) {
    return w == CLIP_WEIGHTS_BF16 ? "bf16" : w == CLIP_WEIGHTS_F32 ? "f32" : "auto";
}

/* ---- the weights on the backend ------------------------------------------------------------ */

/* A tensor of host data H on m->be: a view on the CPU, an uploaded copy elsewhere. */
static Tensor place(ClipModel *m, const void *h, DType dt, int nd, int64_t d0, int64_t d1) {
    const int64_t shape[2] = {d0, d1};
    Tensor host = tensor_view_dtype((void *)h, dt, nd, shape);
    if (backend_kind(m->be) == BACKEND_CPU)
        return host;
    Tensor t = backend_tensor_new(m->be, dt, nd, shape);
    if (!t.ptr)
        return t;
    if (m->n_dev_owned % 64 == 0)
        m->dev_owned = xrealloc(m->dev_owned, (m->n_dev_owned + 64) * sizeof(void *));
    m->dev_owned[m->n_dev_owned++] = t.ptr;
    backend_upload(m->be, &t, &host);
    return t;
}

/* Rows [r0, r0 + n) of a 2-D tensor, or elements of a 1-D one: a contiguous view. */
static Tensor rows_of(const Tensor *t, int64_t r0, int64_t n) {
    Tensor v = *t;
    size_t row = t->n_dims == 2 ? (size_t)t->shape[1] : 1;
    v.ptr = (char *)t->ptr + (size_t)r0 * row * dtype_size(t->dtype);
    v.shape[0] = n;
    return v;
}

static void place_block(ClipModel *m, const ClipBlock *b, ClipDevBlock *d, int C, int M) {
    DType wd = m->bf16 ? DTYPE_BF16 : DTYPE_F32;
    d->ln1_w = place(m, b->ln1_w, DTYPE_F32, 1, C, 1);
    d->ln1_b = place(m, b->ln1_b, DTYPE_F32, 1, C, 1);
    Tensor wqkv = place(m, b->wqkv, wd, 2, 3 * (int64_t)C, C);
    Tensor bqkv = place(m, b->bqkv, DTYPE_F32, 1, 3 * (int64_t)C, 1);
    d->wq = rows_of(&wqkv, 0, C), d->wk = rows_of(&wqkv, C, C), d->wv = rows_of(&wqkv, 2 * C, C);
    d->bq = rows_of(&bqkv, 0, C), d->bk = rows_of(&bqkv, C, C), d->bv = rows_of(&bqkv, 2 * C, C);
    d->wo = place(m, b->wo, wd, 2, C, C);
    d->bo = place(m, b->bo, DTYPE_F32, 1, C, 1);
    d->ln2_w = place(m, b->ln2_w, DTYPE_F32, 1, C, 1);
    d->ln2_b = place(m, b->ln2_b, DTYPE_F32, 1, C, 1);
    d->fc1_w = place(m, b->fc1_w, wd, 2, M, C);
    d->fc1_b = place(m, b->fc1_b, DTYPE_F32, 1, M, 1);
    d->fc2_w = place(m, b->fc2_w, wd, 2, C, M);
    d->fc2_b = place(m, b->fc2_b, DTYPE_F32, 1, C, 1);
}

int clip_place_weights(ClipModel *m, Err *err) {
    const ClipConfig *c = &m->cfg;
    int Cv = c->vision_width, Ct = c->text_width, E = c->embed_dim, P = c->patch_size;
    int64_t T = 1 + clip_model_n_patches(m);
    if (m->text_only) /* a text tower alone: no vision weights */
        goto text;
    m->d_patch_w = place(m, m->patch_w, DTYPE_F32, 2, Cv, 3 * (int64_t)P * P);
    m->d_pos_cls = place(m, m->pos_cls, DTYPE_F32, 2, T, Cv);
    m->d_ln_pre_w = place(m, m->ln_pre_w, DTYPE_F32, 1, Cv, 1);
    m->d_ln_pre_b = place(m, m->ln_pre_b, DTYPE_F32, 1, Cv, 1);
    m->dvblocks = xcalloc((size_t)c->vision_layers, sizeof(ClipDevBlock));
    for (int i = 0; i < c->vision_layers; i++)
        place_block(m, &m->vblocks[i], &m->dvblocks[i], Cv, c->vision_mlp);
    m->d_ln_post_w = place(m, m->ln_post_w, DTYPE_F32, 1, Cv, 1);
    m->d_ln_post_b = place(m, m->ln_post_b, DTYPE_F32, 1, Cv, 1);
    m->d_proj_v = place(m, m->proj_v, DTYPE_F32, 2, E, Cv);
text:
    m->d_tok_emb = place(m, m->tok_emb, m->bf16 ? DTYPE_BF16 : DTYPE_F32, 2, c->vocab_size, Ct);
    m->d_pos_t = place(m, m->pos_t, DTYPE_F32, 2, c->context_length, Ct);
    m->dtblocks = xcalloc((size_t)c->text_layers, sizeof(ClipDevBlock));
    for (int i = 0; i < c->text_layers; i++)
        place_block(m, &m->tblocks[i], &m->dtblocks[i], Ct, c->text_mlp);
    m->d_ln_final_w = place(m, m->ln_final_w, DTYPE_F32, 1, Ct, 1);
    m->d_ln_final_b = place(m, m->ln_final_b, DTYPE_F32, 1, Ct, 1);
    if (m->proj_t) /* a CLIPTextModel has none */
        m->d_proj_t = place(m, m->proj_t, DTYPE_F32, 2, E, Ct);
    Err e = {0};
    if (backend_sync(m->be, &e) != 0)
        return err_set(err, e.code, "%s: loading the weights onto %s: %s", m->weights_path,
                       backend_name(m->be), e.msg);
    return 0;
}

ClipModel *clip_model_load(const char *path, Err *err) {
    return clip_model_load_weights(path, CLIP_WEIGHTS_AUTO, err);
}

/* A one-thread CPU backend of the model's own, for the callers of the host-only API. */
static ClipModel *load_on_own_cpu(const char *path, const char *tok_dir, ClipWeights weights,
                                  Err *err);
static int open_on(const char *path, const char *tok_dir, ClipWeights weights, Backend *be,
                   ClipModel **out, Err *err);
static int open_on_src(const char *path, const ClipTensorSource *src, const char *tok_dir,
                       ClipWeights weights, Backend *be, ClipModel **out, Err *err);

ClipModel *clip_model_load_weights(const char *path, ClipWeights weights, Err *err) {
    return load_on_own_cpu(path, NULL, weights, err);
}

ClipModel *clip_model_load_text(const char *path, const char *tokenizer_dir, ClipWeights weights,
                                Err *err) {
    return load_on_own_cpu(path, tokenizer_dir, weights, err);
}

static ClipModel *load_on_own_cpu(const char *path, const char *tok_dir, ClipWeights weights,
                                  Err *err) {
    Backend *be = NULL;
    BackendConfig cfg = {1, 0};
    if (backend_open("cpu", &cfg, &be, NULL, 0, err) != 0)
        return NULL;
    ClipModel *m = NULL;
    if (open_on(path, tok_dir, weights, be, &m, err) != 0) {
        backend_close(be);
        return NULL;
    }
    m->own_be = be;
    return m;
}

static ClipModel *load_host(const char *path, const ClipTensorSource *src, const char *tok_dir,
                            ClipWeights weights, Err *err);

int clip_model_open(const char *path, ClipWeights weights, Backend *be, ClipModel **out,
                    Err *err) {
    return open_on(path, NULL, weights, be, out, err);
}

int clip_model_open_text(const char *path, const char *tokenizer_dir, ClipWeights weights,
                         Backend *be, ClipModel **out, Err *err) {
    return open_on(path, tokenizer_dir, weights, be, out, err);
}

static int open_on_src(const char *path, const ClipTensorSource *src, const char *tok_dir,
                       ClipWeights weights, Backend *be, ClipModel **out, Err *err) {
    *out = NULL;
    Err e = {0};
    ClipModel *m = load_host(path, src, tok_dir, weights, &e);
    if (m) {
        m->be = be;
        if (clip_place_weights(m, &e) != 0) {
            clip_model_free(m);
            m = NULL;
        }
    }
    if (!m) {
        if (err)
            *err = e;
        return e.code ? e.code : ERR_FORMAT;
    }
    *out = m;
    return 0;
}

static int open_on(const char *path, const char *tok_dir, ClipWeights weights, Backend *be,
                   ClipModel **out, Err *err) {
    return open_on_src(path, NULL, tok_dir, weights, be, out, err);
}

/* ---- a text tower from a tensor source (sd_text: diffusion models' text encoders) ---------- */

int clip_model_open_text_source(const ClipTensorSource *src, const char *tokenizer_dir,
                                ClipWeights weights, Backend *be, ClipModel **out, Err *err) {
    return open_on_src(src->where, src, tokenizer_dir, weights, be, out, err);
}

ClipModel *clip_model_load_text_source(const ClipTensorSource *src, const char *tokenizer_dir,
                                       ClipWeights weights, Err *err) {
    Backend *be = NULL;
    BackendConfig cfg = {1, 0};
    if (backend_open("cpu", &cfg, &be, NULL, 0, err) != 0)
        return NULL;
    ClipModel *m = NULL;
    if (open_on_src(src->where, src, tokenizer_dir, weights, be, &m, err) != 0) {
        backend_close(be);
        return NULL;
    }
    m->own_be = be;
    return m;
}

static ClipModel *load_host(const char *path, const ClipTensorSource *src, const char *tok_dir,
                            ClipWeights weights, Err *err) {
    ClipModel *m = xcalloc(1, sizeof *m);
    Loader ld = {m, err, 0};
    if (src) { /* the source's tensors (read while loading only) and config */
        m->src = src;
        m->dir = xstrdup(tok_dir);
        m->weights_path = xstrdup(src->where);
    } else if (base_is_dir(path)) {
        m->dir = xstrdup(path);
        m->weights_path = find_weights(path, err);
        if (!m->weights_path)
            goto fail;
    } else if (base_is_file(path)) {
        char *copy = xstrdup(path);
        m->dir = xstrdup(dirname(copy));
        free(copy);
        m->weights_path = xstrdup(path);
    } else {
        err_set(err, ERR_NOTFOUND, "%s: no such model folder or file", path);
        goto fail;
    }
    if (!src && !(m->st = safetensors_open(m->weights_path, err)))
        goto fail;
    const Names *nm;
    if (find(&ld, names_openclip.patch)) {
        m->layout = CLIP_LAYOUT_OPENCLIP;
        nm = &names_openclip;
    } else if (find(&ld, names_hf.patch)) {
        m->layout = CLIP_LAYOUT_HF;
        nm = &names_hf;
    } else if (find(&ld, names_hf.tok)) { /* CLIPTextModel[WithProjection]: text alone */
        m->layout = CLIP_LAYOUT_HF;
        m->text_only = 1;
        nm = &names_hf;
    } else if (find(&ld, names_hf_bare_text.tok)) { /* the same saved by transformers 5 */
        m->layout = CLIP_LAYOUT_HF;
        m->text_only = 1;
        nm = &names_hf_bare_text;
    } else {
        err_set(err, ERR_FORMAT, "%s: neither '%s' (OpenCLIP) nor '%s' (Hugging Face) nor "
                "'%s' (a text model): not a CLIP checkpoint", m->weights_path,
                names_openclip.patch, names_hf.patch, names_hf.tok);
        goto fail;
    }
    m->config_source = "shapes";
    if (shapes_config(&ld, nm, &m->cfg) != 0)
        goto fail;
    char *oc = xasprintf("%s/open_clip_config.json", m->dir);
    char *hc = xasprintf("%s/config.json", m->dir);
    char *pp = xasprintf("%s/preprocessor_config.json", m->dir);
    int rc = 0;
    int have_oc = base_is_file(oc), have_hc = base_is_file(hc);
    if (src) { /* only the source's config: the tokenizer folder's files are not the model's */
        have_oc = 0;
        have_hc = src->config_json != NULL;
        free(pp);
        pp = xstrdup("");
        free(hc);
        hc = xstrdup(src->where);
    }
    if (base_is_file(pp))
        hf_preprocess(pp, &m->cfg);
    if (have_oc && (m->layout == CLIP_LAYOUT_OPENCLIP || !have_hc)) {
        m->config_source = "open_clip_config.json";
        rc = openclip_config(&ld, oc, &m->cfg, 1);
    } else if (have_hc) {
        m->config_source = "config.json";
        rc = hf_config(&ld, hc, &m->cfg);
        if (rc == 0 && have_oc) /* its preprocess_cfg still applies */
            rc = openclip_config(&ld, oc, &m->cfg, 0);
    }
    free(oc);
    free(hc);
    free(pp);
    if (rc != 0 || check_config(&ld, &m->cfg) != 0)
        goto fail;
    if (weights == CLIP_WEIGHTS_AUTO) { /* as the file holds the blocks */
        char name[256];
        snprintf(name, sizeof name, "%s0.%s.weight", m->text_only ? nm->tblock : nm->vblock,
                 nm->fc1);
        const StTensor *t = find(&ld, name);
        m->bf16 = t && t->dtype == ST_BF16;
    } else {
        m->bf16 = weights == CLIP_WEIGHTS_BF16;
    }
    bind_all(&ld, nm);
    if (ld.failed)
        goto fail;
    m->src = NULL; /* every tensor was read: the source is not used again */
    m->tok = clip_tokenizer_load_dir(tok_dir ? tok_dir : m->dir, err);
    if (!m->tok)
        goto fail;
    if (tok_dir) /* clip_model_load_text: as transformers' CLIPTokenizer cleans text */
        clip_tokenizer_set_hf_clean(m->tok, 1);
    if (clip_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size) {
        err_set(err, ERR_FORMAT, "%s: the tokenizer has %d tokens but the model embeds %d",
                m->dir, clip_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
        goto fail;
    }
    return m;
fail:
    clip_model_free(m);
    return NULL;
}

int clip_model_text_only(const ClipModel *m) { return m->text_only; }

void clip_model_free(ClipModel *m) {
    if (!m)
        return;
    if (m->be) {
        for (size_t i = 0; i < m->n_dev_owned; i++)
            backend_free(m->be, m->dev_owned[i]);
        backend_free(m->be, m->scratch);
    }
    free(m->dev_owned);
    free(m->dvblocks);
    free(m->dtblocks);
    backend_close(m->own_be);
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->vblocks);
    free(m->tblocks);
    clip_tokenizer_free(m->tok);
    safetensors_close(m->st);
    free(m->dir);
    free(m->weights_path);
    free(m);
}

const ClipConfig *clip_model_config(const ClipModel *m) { return &m->cfg; }
const ClipTokenizer *clip_model_tokenizer(const ClipModel *m) { return m->tok; }
ClipLayout clip_model_layout(const ClipModel *m) { return m->layout; }
const char *clip_model_weights_path(const ClipModel *m) { return m->weights_path; }
const char *clip_model_config_source(const ClipModel *m) { return m->config_source; }
size_t clip_model_weight_bytes(const ClipModel *m) { return m->weight_bytes; }
Backend *clip_model_backend(const ClipModel *m) { return m->be; }
ClipWeights clip_model_weights(const ClipModel *m) {
    return m->bf16 ? CLIP_WEIGHTS_BF16 : CLIP_WEIGHTS_F32;
}

int clip_model_n_patches(const ClipModel *m) {
    if (m->text_only)
        return 0;
    int side = m->cfg.image_size / m->cfg.patch_size;
    return side * side;
}
