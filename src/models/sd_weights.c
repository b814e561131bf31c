/* sd_weights — see sd_weights.h. This file: diffusers folders (plain, variant, sharded), the
 * tensor index and reading; single-file names and configs are sd_weights_single.c's, LoRAs
 * sd_weights_lora.c's. */
#include "sd_weights.h"

#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "base.h"
#include "infile.h"
#include "sd_weights_int.h"

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const SdEntry *)a)->t.name, ((const SdEntry *)b)->t.name);
}

int sd_weights_add_file(SdWeights *w, const char *path, Err *err) {
    if (w->n_files == SD_MAX_SHARDS)
        return err_set(err, ERR_FORMAT, "%s: more than %d weight shards", w->where,
                       SD_MAX_SHARDS);
    SafeTensors *st = safetensors_open(path, err);
    if (!st)
        return err ? err->code : ERR_FORMAT;
    w->files[w->n_files++] = st;
    return 0;
}

SdEntry *sd_weights_push(SdWeights *w, int file, const StTensor *src, const char *name,
                         int own_name) {
    if (w->n_ents == w->cap_ents) {
        w->cap_ents = w->cap_ents ? 2 * w->cap_ents : 256;
        w->ents = xrealloc(w->ents, w->cap_ents * sizeof *w->ents);
    }
    SdEntry *e = &w->ents[w->n_ents++];
    memset(e, 0, sizeof *e);
    e->t = *src;
    e->src = src;
    e->file = file;
    if (own_name) {
        e->own = xstrdup(name);
        e->t.name = e->own;
    } else {
        e->t.name = name;
    }
    return e;
}

int sd_weights_index(SdWeights *w, Err *err) {
    qsort(w->ents, w->n_ents, sizeof *w->ents, cmp_entry);
    for (size_t i = 1; i < w->n_ents; i++)
        if (!strcmp(w->ents[i - 1].t.name, w->ents[i].t.name))
            return err_set(err, ERR_FORMAT, "%s: tensor %s is there twice (%s and %s)",
                           w->where, w->ents[i].t.name, w->ents[i - 1].src->name,
                           w->ents[i].src->name);
    return 0;
}

/* Shards named by an index: {"weight_map": {"name": "file-00001-of-00002.safetensors"}}. */
static int open_shards(SdWeights *w, const char *dir, const char *index, Err *err) {
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = infile_read_all(index, "weights index", INFILE_MAX_JSON, &buf, &len, err);
    if (rc)
        return rc;
    json_error_t je;
    json_t *root = json_loadb((const char *)buf, len, 0, &je);
    free(buf);
    json_t *map = root ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(map)) {
        json_decref(root);
        return err_set(err, ERR_FORMAT, "%s: %s", index,
                       root ? "no \"weight_map\" object" : je.text);
    }
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        const char *f = json_string_value(val);
        if (!f || strchr(f, '/')) { /* KEY belongs to ROOT: the message first */
            rc = err_set(err, ERR_FORMAT, "%s: tensor %s: the shard must be a file name "
                         "beside the index", index, key);
            json_decref(root);
            return rc;
        }
        int seen = 0;
        for (int i = 0; i < w->n_files && !seen; i++) {
            const char *p = safetensors_path(w->files[i]);
            const char *base = strrchr(p, '/');
            seen = strcmp(base ? base + 1 : p, f) == 0;
        }
        if (!seen) {
            char *p = xasprintf("%s/%s", dir, f);
            rc = sd_weights_add_file(w, p, err);
            free(p);
            if (rc) {
                json_decref(root);
                return rc;
            }
        }
    }
    json_decref(root);
    return 0;
}

static int index_tensors(SdWeights *w, Err *err) {
    for (int i = 0; i < w->n_files; i++)
        for (size_t j = 0; j < safetensors_count(w->files[i]); j++) {
            const StTensor *t = safetensors_at(w->files[i], j);
            sd_weights_push(w, i, t, t->name, 0);
        }
    return sd_weights_index(w, err);
}

/* A single-file checkpoint: its component's tensors under their diffusers names. */
static int open_single(const char *path, const char *component, SdWeights **out, Err *err) {
    SdWeights *w = xcalloc(1, sizeof *w);
    w->where = xstrdup(path);
    w->component = xstrdup(component);
    int rc = sd_weights_add_file(w, path, err);
    if (!rc)
        rc = sd_weights_single_load(w, err);
    if (rc) {
        sd_weights_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

int sd_weights_open(const char *path, const char *component, SdWeights **out, Err *err) {
    *out = NULL;
    if (base_is_file(path))
        return open_single(path, component, out, err);
    if (!base_is_dir(path))
        return err_set(err, ERR_NOTFOUND, "%s: no such folder or file (a diffusers model "
                       "folder is expected: model_index.json, unet/, vae/, text_encoder/ ..., "
                       "or a single-file .safetensors checkpoint)", path);
    /* MODEL/COMPONENT, or the component folder itself */
    char *dir = xasprintf("%s/%s", path, component);
    if (!base_is_dir(dir)) {
        free(dir);
        dir = xstrdup(path);
    }
    static const char *const names[] = {
        "diffusion_pytorch_model.safetensors", "model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
    };
    static const char *const indexes[] = {
        "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json",
        "diffusion_pytorch_model.safetensors.index.fp16.json",
        "model.safetensors.index.fp16.json",
    };
    SdWeights *w = xcalloc(1, sizeof *w);
    w->component = xstrdup(component);
    int rc = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names && !w->where; i++) {
        char *p = xasprintf("%s/%s", dir, names[i]);
        if (base_is_file(p)) {
            w->where = p;
            rc = sd_weights_add_file(w, p, err);
        } else {
            free(p);
        }
    }
    for (size_t i = 0; i < sizeof indexes / sizeof *indexes && !w->where; i++) {
        char *p = xasprintf("%s/%s", dir, indexes[i]);
        if (base_is_file(p)) {
            w->where = p;
            rc = open_shards(w, dir, p, err);
        } else {
            free(p);
        }
    }
    if (!w->where && !rc)
        rc = err_set(err, ERR_NOTFOUND, "%s: no %s weights (diffusion_pytorch_model."
                     "safetensors, model.safetensors, their .fp16 variants or a "
                     ".safetensors.index.json)", dir, component);
    if (!rc)
        rc = index_tensors(w, err);
    if (!rc) {
        char *cfg = xasprintf("%s/config.json", dir);
        if (base_is_file(cfg)) {
            unsigned char *buf = NULL;
            size_t len = 0;
            rc = infile_read_all(cfg, "model config", INFILE_MAX_JSON, &buf, &len, err);
            w->config = (char *)buf;
        }
        free(cfg);
    }
    free(dir);
    if (rc) {
        sd_weights_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

void sd_weights_close(SdWeights *w) {
    if (!w)
        return;
    for (int i = 0; i < w->n_files; i++)
        safetensors_close(w->files[i]);
    for (size_t i = 0; i < w->n_ents; i++)
        free(w->ents[i].own);
    free(w->ents);
    for (int i = 0; i < w->n_loras; i++)
        sd_weights_lora_free(w->loras[i]);
    free(w->loras);
    free(w->component);
    free(w->where);
    free(w->config);
    free(w);
}

const char *sd_weights_where(const SdWeights *w) { return w->where; }
const char *sd_weights_config_json(const SdWeights *w) { return w->config; }
size_t sd_weights_count(const SdWeights *w) { return w->n_ents; }
const char *sd_weights_name(const SdWeights *w, size_t i) {
    return i < w->n_ents ? w->ents[i].t.name : NULL;
}

static const SdEntry *find_entry(const SdWeights *w, const char *name) {
    size_t lo = 0, hi = w->n_ents;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->ents[mid].t.name, name);
        if (!c)
            return &w->ents[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const StTensor *sd_weights_find(const SdWeights *w, const char *name) {
    const SdEntry *e = find_entry(w, name);
    return e ? &e->t : NULL;
}

static void shape_str(char *buf, size_t n, int n_dims, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "(");
    for (int i = 0; i < n_dims && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n)
        snprintf(buf + o, n - o, ")");
}

/* The entry NAME after checking it exists with exactly SHAPE; *n its element count. */
static const SdEntry *checked_entry(SdWeights *w, const char *name, int n_dims,
                                    const int64_t *shape, int64_t *n, Err *err) {
    const SdEntry *e = find_entry(w, name);
    if (!e) {
        err_set(err, ERR_NOTFOUND, "%s: tensor %s is missing (is this the right model "
                "type for its config?)", w->where, name);
        return NULL;
    }
    const StTensor *t = &e->t;
    int renamed = strcmp(name, e->src->name) != 0;
    int same = t->n_dim == n_dims;
    *n = 1;
    for (int i = 0; i < n_dims; i++) {
        same = same && t->shape[i] == shape[i];
        *n *= shape[i];
    }
    if (!same) {
        char want[96], got[96];
        shape_str(want, sizeof want, n_dims, shape);
        shape_str(got, sizeof got, t->n_dim, t->shape);
        err_set(err, ERR_FORMAT, "%s: tensor %s%s%s%s has shape %s, the config asks for %s",
                w->where, name, renamed ? " (" : "", renamed ? e->src->name : "",
                renamed ? " in the file)" : "", got, want);
        return NULL;
    }
    return e;
}

/* ERR_FORMAT naming NAME and element I when V (N floats, element FIRST first) holds a
 * non-finite value. */
static int check_finite(const SdWeights *w, const SdEntry *e, const char *name,
                        const float *v, size_t first, size_t n, Err *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            int renamed = strcmp(name, e->src->name) != 0;
            return err_set(err, ERR_FORMAT, "%s: tensor %s%s%s%s holds a non-finite value "
                           "(%g at element %zu): the file is damaged", w->where, name,
                           renamed ? " (" : "", renamed ? e->src->name : "",
                           renamed ? " in the file)" : "", (double)v[i], first + i);
        }
    return 0;
}

/* mem15: the host staging reads hold (sd_weights_staging_peak) and the piece size. */
static _Atomic size_t staging_peak;
static _Atomic size_t chunk_elems;

static void note_staging(size_t bytes) {
    size_t cur = atomic_load(&staging_peak);
    while (bytes > cur && !atomic_compare_exchange_weak(&staging_peak, &cur, bytes)) {
    }
}

size_t sd_weights_staging_peak(int reset) {
    return reset ? atomic_exchange(&staging_peak, 0) : atomic_load(&staging_peak);
}

void sd_weights_set_chunk(size_t elems) { atomic_store(&chunk_elems, elems); }

int sd_weights_read_f32(SdWeights *w, const char *name, int n_dims, const int64_t *shape,
                        float *dst, Err *err) {
    int64_t n;
    const SdEntry *e = checked_entry(w, name, n_dims, shape, &n, err);
    if (!e)
        return err ? err->code : ERR_FORMAT;
    const StTensor *t = &e->t;
    note_staging((size_t)n * sizeof *dst); /* the caller's whole-tensor f32 copy */
    int rc = safetensors_read_f32(w->files[e->file], t, dst, (size_t)n, err);
    if (rc)
        return rc;
    safetensors_release(w->files[e->file], t, 0, (size_t)n);
    if (e->transpose) { /* the file holds the (cols, rows) transpose */
        int64_t r = shape[0], c = shape[1];
        float *tmp = xmalloc((size_t)n * sizeof *tmp);
        note_staging(2 * (size_t)n * sizeof *tmp);
        memcpy(tmp, dst, (size_t)n * sizeof *tmp);
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++)
                dst[i * c + j] = tmp[j * r + i];
        free(tmp);
    }
    if (w->n_loras && (rc = sd_weights_lora_apply(w, name, n_dims, shape, dst, err)))
        return rc;
    return check_finite(w, e, name, dst, 0, (size_t)n, err);
}

int sd_weights_read(SdWeights *w, const char *name, int n_dims, const int64_t *shape,
                    DType dtype, float scale, SdWeightsSink sink, void *user, Err *err) {
    int64_t n64;
    const SdEntry *e = checked_entry(w, name, n_dims, shape, &n64, err);
    if (!e)
        return err ? err->code : ERR_FORMAT;
    size_t n = (size_t)n64, es = dtype_size(dtype);
    int rc = 0;
    if (e->transpose || w->n_loras) {
        /* the whole tensor in f32 first: a transpose, or a LoRA's delta (which needs every
         * element of its target), then converted and handed on as one piece */
        float *f = xmalloc((n ? n : 1) * sizeof *f);
        void *h = dtype == DTYPE_F32 ? NULL : xmalloc((n ? n : 1) * es);
        note_staging(n * sizeof *f + (h ? n * es : 0));
        rc = sd_weights_read_f32(w, name, n_dims, shape, f, err);
        if (!rc && scale != 1.0f)
            for (size_t i = 0; i < n; i++)
                f[i] *= scale;
        if (!rc && h)
            dtype_from_f32(h, dtype, f, n);
        if (!rc)
            rc = sink(user, 0, h ? h : (const void *)f, n, err);
        free(f);
        free(h);
        return rc;
    }
    size_t ch = atomic_load(&chunk_elems);
    if (!ch)
        ch = SD_WEIGHTS_CHUNK;
    if (ch > n)
        ch = n ? n : 1;
    float *f = xmalloc(ch * sizeof *f);
    void *h = dtype == DTYPE_F32 ? NULL : xmalloc(ch * es);
    note_staging(ch * sizeof *f + (h ? ch * es : 0));
    SafeTensors *st = w->files[e->file];
    for (size_t first = 0; first < n && !rc; first += ch) {
        size_t m = n - first < ch ? n - first : ch;
        rc = safetensors_read_f32_range(st, &e->t, first, m, f, err);
        if (!rc)
            rc = check_finite(w, e, name, f, first, m, err);
        if (rc)
            break;
        safetensors_release(st, &e->t, first, m);
        if (scale != 1.0f)
            for (size_t i = 0; i < m; i++)
                f[i] *= scale;
        if (h)
            dtype_from_f32(h, dtype, f, m);
        rc = sink(user, first, h ? h : (const void *)f, m, err);
    }
    free(f);
    free(h);
    return rc;
}

/* ---- onto a device (dedup16: the UNet's and the VAE's loaders) ---- */

/* sd_weights_read's sink: a piece of a tensor into its place in the device tensor. */
static int device_piece(void *user, size_t first, const void *data, size_t n, Err *err) {
    (void)err;
    void **ctx = user;
    Backend *be = ctx[0];
    const Tensor *t = ctx[1];
    int64_t len = (int64_t)n;
    Tensor dst = tensor_view_dtype((char *)t->ptr + first * dtype_size(t->dtype), t->dtype, 1,
                                   &len);
    dst.device = t->device;
    Tensor host = tensor_view_dtype((void *)data, t->dtype, 1, &len);
    backend_upload(be, &dst, &host);
    return 0;
}

int sd_weights_read_device(SdWeights *w, const char *name, int n_dims, const int64_t *shape,
                           float scale, Backend *be, const Tensor *t, Err *err) {
    void *ctx[2] = {be, (void *)t};
    return sd_weights_read(w, name, n_dims, shape, t->dtype, scale, device_piece, ctx, err);
}
