/* sd_weights — see sd_weights.h. This file: diffusers folders (plain, variant, sharded). */
#include "sd_weights.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"
#include "infile.h"

#define SD_MAX_SHARDS 64

struct SdWeights {
    SafeTensors *files[SD_MAX_SHARDS];
    int n_files;
    char *where;  /* the file, or the index for shards */
    char *config; /* config.json text or NULL */
    /* every tensor, sorted by name, with the file that holds it */
    const StTensor **tensors;
    size_t n_tensors;
};

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int cmp_tensor(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    return strcmp(x->name, y->name);
}

static int add_file(SdWeights *w, const char *path, Err *err) {
    if (w->n_files == SD_MAX_SHARDS)
        return err_set(err, ERR_FORMAT, "%s: more than %d weight shards", w->where,
                       SD_MAX_SHARDS);
    SafeTensors *st = safetensors_open(path, err);
    if (!st)
        return err ? err->code : ERR_FORMAT;
    w->files[w->n_files++] = st;
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
        if (!f || strchr(f, '/')) {
            json_decref(root);
            return err_set(err, ERR_FORMAT, "%s: tensor %s: the shard must be a file name "
                           "beside the index", index, key);
        }
        int seen = 0;
        for (int i = 0; i < w->n_files && !seen; i++) {
            const char *p = safetensors_path(w->files[i]);
            const char *base = strrchr(p, '/');
            seen = strcmp(base ? base + 1 : p, f) == 0;
        }
        if (!seen) {
            char *p = xasprintf("%s/%s", dir, f);
            rc = add_file(w, p, err);
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
    size_t n = 0;
    for (int i = 0; i < w->n_files; i++)
        n += safetensors_count(w->files[i]);
    w->tensors = xmalloc((n ? n : 1) * sizeof *w->tensors);
    for (int i = 0; i < w->n_files; i++)
        for (size_t j = 0; j < safetensors_count(w->files[i]); j++)
            w->tensors[w->n_tensors++] = safetensors_at(w->files[i], j);
    qsort(w->tensors, w->n_tensors, sizeof *w->tensors, cmp_tensor);
    for (size_t i = 1; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i - 1]->name, w->tensors[i]->name))
            return err_set(err, ERR_FORMAT, "%s: tensor %s is in two shards", w->where,
                           w->tensors[i]->name);
    return 0;
}

int sd_weights_open(const char *path, const char *component, SdWeights **out, Err *err) {
    *out = NULL;
    if (!is_dir(path))
        return err_set(err, is_file(path) ? ERR_FORMAT : ERR_NOTFOUND,
                       "%s: %s (a diffusers model folder is expected: model_index.json, "
                       "unet/, vae/, text_encoder/ ...)", path,
                       is_file(path) ? "is a file" : "no such folder");
    /* MODEL/COMPONENT, or the component folder itself */
    char *dir = xasprintf("%s/%s", path, component);
    if (!is_dir(dir)) {
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
    int rc = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names && !w->where; i++) {
        char *p = xasprintf("%s/%s", dir, names[i]);
        if (is_file(p)) {
            w->where = p;
            rc = add_file(w, p, err);
        } else {
            free(p);
        }
    }
    for (size_t i = 0; i < sizeof indexes / sizeof *indexes && !w->where; i++) {
        char *p = xasprintf("%s/%s", dir, indexes[i]);
        if (is_file(p)) {
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
        if (is_file(cfg)) {
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
    free(w->tensors);
    free(w->where);
    free(w->config);
    free(w);
}

const char *sd_weights_where(const SdWeights *w) { return w->where; }
const char *sd_weights_config_json(const SdWeights *w) { return w->config; }
size_t sd_weights_count(const SdWeights *w) { return w->n_tensors; }
const char *sd_weights_name(const SdWeights *w, size_t i) {
    return i < w->n_tensors ? w->tensors[i]->name : NULL;
}

const StTensor *sd_weights_find(const SdWeights *w, const char *name) {
    size_t lo = 0, hi = w->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->tensors[mid]->name, name);
        if (!c)
            return w->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static SafeTensors *file_of(const SdWeights *w, const StTensor *t) {
    for (int i = 0; i < w->n_files; i++)
        if (safetensors_find(w->files[i], t->name) == t)
            return w->files[i];
    return w->files[0];
}

static void shape_str(char *buf, size_t n, int n_dims, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "(");
    for (int i = 0; i < n_dims && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n)
        snprintf(buf + o, n - o, ")");
}

int sd_weights_read_f32(SdWeights *w, const char *name, int n_dims, const int64_t *shape,
                        float *dst, Err *err) {
    const StTensor *t = sd_weights_find(w, name);
    if (!t)
        return err_set(err, ERR_NOTFOUND, "%s: tensor %s is missing (is this the right model "
                       "type for its config?)", w->where, name);
    int same = t->n_dim == n_dims;
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        same = same && t->shape[i] == shape[i];
        n *= shape[i];
    }
    if (!same) {
        char want[96], got[96];
        shape_str(want, sizeof want, n_dims, shape);
        shape_str(got, sizeof got, t->n_dim, t->shape);
        return err_set(err, ERR_FORMAT, "%s: tensor %s has shape %s, the config asks for %s",
                       w->where, name, got, want);
    }
    int rc = safetensors_read_f32(file_of(w, t), t, dst, (size_t)n, err);
    if (rc)
        return rc;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return err_set(err, ERR_FORMAT, "%s: tensor %s holds a non-finite value (%g at "
                           "element %lld): the file is damaged", w->where, name,
                           (double)dst[i], (long long)i);
    return 0;
}
