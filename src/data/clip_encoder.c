/* clip_encoder — the "clip" encoder backend. See clip_encoder.h.
 *
 * The Encoder's state owns the Backend it computes on (EncoderDevice: the CPU with its own
 * pool, or a GPU), the ClipModel on it (weights mapped once; uploaded once on a GPU) and a
 * preprocessing buffer. One Encoder serves one thread (encoder.h).
 */
#include "clip_encoder.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"
#include "clip.h"
#include "store_models.h"

typedef struct ClipEncState {
    Backend *be;
    ClipModel *model;
    ClipResizeMode mode;
    float *pixels;          /* (3, S, S) */
} ClipEncState;

static char *resolve_name(const char *arg, Store *st, Err *err);

/* Strip the option suffixes off NAME in place; their values into the out-parameters. */
static void strip_options(char *name, int *squash, ClipWeights *weights) {
    *squash = 0;
    *weights = CLIP_WEIGHTS_AUTO;
    for (;;) {
        char *comma = strrchr(name, ',');
        if (!comma)
            return;
        if (strcmp(comma, ",squash") == 0)
            *squash = 1;
        else if (strcmp(comma, ",bf16") == 0 && *weights == CLIP_WEIGHTS_AUTO)
            *weights = CLIP_WEIGHTS_BF16;
        else if (strcmp(comma, ",f32") == 0 && *weights == CLIP_WEIGHTS_AUTO)
            *weights = CLIP_WEIGHTS_F32;
        else
            return;
        *comma = '\0';
    }
}

ClipWeights clip_encoder_weights(const char *arg) {
    char *name = xstrdup(arg ? arg : "");
    int squash;
    ClipWeights w;
    strip_options(name, &squash, &w);
    free(name);
    return w;
}

char *clip_encoder_resolve(const char *arg_in, Store *st, Err *err) {
    char *copy = xstrdup(arg_in ? arg_in : "");
    int squash;
    ClipWeights w;
    strip_options(copy, &squash, &w);
    char *res = resolve_name(copy, st, err);
    free(copy);
    return res;
}

static char *resolve_name(const char *arg, Store *st, Err *err) {
    if (!arg || !*arg) {
        err_set(err, ERR_USAGE, "clip: name the model: --encoder clip:NAME or clip:PATH");
        return NULL;
    }
    if (st) {
        StoreModel sm;
        Err e2 = {0};
        if (store_model_get(st, "clip", arg, &sm, &e2) == 0) {
            char *p = xstrdup(sm.path);
            store_model_deinit(&sm);
            return p;
        }
        if (e2.code != ERR_NOTFOUND) {
            if (err)
                *err = e2;
            return NULL;
        }
    }
    struct stat sb;
    if (stat(arg, &sb) == 0)
        return xstrdup(arg);
    err_set(err, ERR_NOTFOUND, "clip: '%s' is neither a registered model%s nor a folder; "
            "register one with 'easel models add clip PATH --name %s'", arg,
            st ? "" : " (no store open)", arg);
    return NULL;
}

static int enc_image(Encoder *enc, const uint8_t *rgb, int w, int h, float *out, Err *err) {
    ClipEncState *s = enc->state;
    const ClipConfig *c = clip_model_config(s->model);
    ClipImage img = {w, h, 3, 0, (uint8_t *)rgb};
    int rc = clip_image_preprocess(s->pixels, &img, c->image_size, s->mode, c->mean, c->std,
                                   err);
    if (rc != 0)
        return rc;
    return clip_model_encode_pixels(s->model, s->pixels, 1, out, out + c->embed_dim, err);
}

static int enc_text(Encoder *enc, const char *text, float *out, Err *err) {
    ClipEncState *s = enc->state;
    return clip_model_encode_texts(s->model, &text, 1, out, err);
}

static void enc_free(Encoder *enc) {
    ClipEncState *s = enc->state;
    if (!s)
        return;
    clip_model_free(s->model);
    backend_close(s->be);
    free(s->pixels);
    free(s);
    enc->state = NULL;
}

Encoder *clip_encoder_open(const char *arg, Store *st, const EncoderDevice *dev, Err *err) {
    char *name = xstrdup(arg ? arg : "");
    ClipResizeMode mode = CLIP_RESIZE_SHORTEST;
    int squash = 0;
    ClipWeights weights;
    strip_options(name, &squash, &weights);
    char *path = clip_encoder_resolve(name, st, err);
    if (!path) {
        free(name);
        return NULL;
    }
    Backend *be = NULL;
    BackendConfig cfg = {dev ? dev->threads : 0, 0};
    char note[256] = "";
    if (backend_open(dev && dev->device ? dev->device : "cpu", &cfg, &be, note, sizeof note,
                     err) != 0) {
        free(path);
        free(name);
        return NULL;
    }
    ClipModel *m = NULL;
    int rc = clip_model_open(path, weights, be, &m, err);
    free(path);
    if (rc != 0) {
        backend_close(be);
        free(name);
        return NULL;
    }
    const ClipConfig *c = clip_model_config(m);
    mode = squash ? CLIP_RESIZE_SQUASH : c->resize;
    ClipEncState *s = xcalloc(1, sizeof *s);
    s->be = be;
    s->model = m;
    s->mode = mode;
    s->pixels = malloc(3 * (size_t)c->image_size * (size_t)c->image_size * sizeof(float));
    if (!s->pixels) {
        err_set(err, ERR_NOMEM, "clip: no memory for an image buffer");
        enc_free(&(Encoder){.state = s});
        free(name);
        return NULL;
    }
    char *full = xasprintf("clip:%s%s%s", name, squash ? ",squash" : "",
                           weights == CLIP_WEIGHTS_AUTO ? "" : weights == CLIP_WEIGHTS_BF16 ?
                           ",bf16" : ",f32");
    if (strlen(full) >= sizeof(((Encoder *)0)->name)) {
        /* the name is the cache key: never truncate it */
        err_set(err, ERR_USAGE, "clip: encoder name '%s' is longer than %zu characters; "
                "register the model under a short name with 'easel models add clip PATH --name "
                "NAME'", full, sizeof(((Encoder *)0)->name) - 1);
        free(full);
        free(name);
        enc_free(&(Encoder){.state = s});
        return NULL;
    }
    Encoder *enc = encoder_alloc(full);
    free(full);
    free(name);
    enc->dim_image = c->embed_dim;
    enc->n_image_tokens = 1 + clip_model_n_patches(m);
    enc->dim_text = c->embed_dim;
    enc->ops.encode_image = enc_image;
    enc->ops.encode_text = enc_text;
    enc->ops.free_state = enc_free;
    enc->state = s;
    if (!dev || !dev->device || strcmp(dev->device, "auto") != 0) /* auto: whatever is here */
        base_strlcpy(enc->note, note, sizeof enc->note);
    return enc;
}
