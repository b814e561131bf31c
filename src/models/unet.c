/* unet — diffusers' UNet2DConditionModel on the Backend. See unet.h for the design. */
#include "unet.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "nn_diffusion.h"

/* ---- config.json ---------------------------------------------------------------------------- */

/* An int field: absent or null gives dflt. */
static int cfg_int(json_t *root, const char *key, int dflt, int *out, const char *where,
                   Err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return err_set(err, ERR_FORMAT, "%s: \"%s\" must be an integer", where, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int cfg_num(json_t *root, const char *key, double dflt, float *out, const char *where,
                   Err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = (float)dflt;
        return 0;
    }
    if (!json_is_number(v))
        return err_set(err, ERR_FORMAT, "%s: \"%s\" must be a number", where, key);
    *out = (float)json_number_value(v);
    return 0;
}

static int cfg_bool(json_t *root, const char *key, int dflt, int *out, const char *where,
                    Err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return err_set(err, ERR_FORMAT, "%s: \"%s\" must be true or false", where, key);
    *out = json_is_true(v);
    return 0;
}

/* An int or a list of n ints (one per level), each in [lo, hi]; absent or null gives dflt. */
static int cfg_per_level(json_t *root, const char *key, int n, int dflt, int lo, int hi,
                         int *out, const char *where, Err *err) {
    json_t *v = json_object_get(root, key);
    for (int i = 0; i < n; i++)
        out[i] = dflt;
    if (!v || json_is_null(v))
        return dflt >= lo ? 0
                          : err_set(err, ERR_FORMAT, "%s: \"%s\" is required", where, key);
    if (json_is_integer(v)) {
        for (int i = 0; i < n; i++)
            out[i] = (int)json_integer_value(v);
    } else if (json_is_array(v) && (int)json_array_size(v) == n) {
        for (int i = 0; i < n; i++) {
            json_t *e = json_array_get(v, (size_t)i);
            if (!json_is_integer(e))
                return err_set(err, ERR_FORMAT, "%s: \"%s\"[%d] must be an integer (a list "
                               "of lists is not supported)", where, key, i);
            out[i] = (int)json_integer_value(e);
        }
    } else {
        return err_set(err, ERR_FORMAT, "%s: \"%s\" must be an integer or a list of %d "
                       "integers (one per block_out_channels entry)", where, key, n);
    }
    for (int i = 0; i < n; i++)
        if (out[i] < lo || out[i] > hi)
            return err_set(err, ERR_FORMAT, "%s: \"%s\" entry %d is %d, expected %d..%d", where,
                           key, i, out[i], lo, hi);
    return 0;
}

/* A list of n block type names, each one of the two accepted; is_attn[i] = 1 for the first. */
static int cfg_types(json_t *root, const char *key, int n, const char *attn, const char *plain,
                     int *is_attn, const char *where, Err *err) {
    json_t *v = json_object_get(root, key);
    if (!json_is_array(v) || (int)json_array_size(v) != n)
        return err_set(err, ERR_FORMAT, "%s: \"%s\" must be a list of %d block types (one per "
                       "block_out_channels entry)", where, key, n);
    for (int i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(v, (size_t)i));
        if (s && !strcmp(s, attn))
            is_attn[i] = 1;
        else if (s && !strcmp(s, plain))
            is_attn[i] = 0;
        else
            return err_set(err, ERR_FORMAT, "%s: \"%s\"[%d] is %s%s%s: supported are %s and %s",
                           where, key, i, s ? "\"" : "", s ? s : "not a string", s ? "\"" : "",
                           attn, plain);
    }
    return 0;
}

/* A field that must have one value (or be absent / null): what diffusers does otherwise is
 * not implemented here. */
static int cfg_must(json_t *root, const char *key, const char *want_str, int want_bool,
                    const char *where, Err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (want_str && json_is_string(v) && !strcmp(json_string_value(v), want_str))
        return 0;
    if (want_bool >= 0 && json_is_boolean(v) && json_is_true(v) == want_bool)
        return 0;
    if (want_bool < 0 && !want_str && json_is_number(v) && json_number_value(v) == 1.0)
        return 0;
    return err_set(err, ERR_FORMAT, "%s: \"%s\" other than %s is not supported", where, key,
                   want_str ? want_str : want_bool >= 0 ? (want_bool ? "true" : "false")
                                                        : "1 (or null)");
}

int unet_config_parse(const char *json, const char *where, UnetConfig *c, Err *err) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_loads(json, 0, &je);
    if (!root)
        return err_set(err, ERR_FORMAT, "%s:%d: %s", where, je.line, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = err_set(err, ERR_FORMAT, "%s: not a JSON object", where);
        goto out;
    }
    json_t *bo = json_object_get(root, "block_out_channels");
    int n = json_is_array(bo) ? (int)json_array_size(bo) : 0;
    if (n < 1 || n > UNET_MAX_LEVELS) {
        rc = err_set(err, ERR_FORMAT, "%s: \"block_out_channels\" must be a list of 1..%d "
                     "channel counts", where, UNET_MAX_LEVELS);
        goto out;
    }
    c->levels = n;
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(bo, (size_t)i);
        c->block_out[i] = json_is_integer(e) ? (int)json_integer_value(e) : 0;
        if (c->block_out[i] < 1 || c->block_out[i] > 65536) {
            rc = err_set(err, ERR_FORMAT, "%s: \"block_out_channels\"[%d] must be a positive "
                         "integer", where, i);
            goto out;
        }
    }
    /* fields that must keep diffusers' default for this implementation */
    static const struct {
        const char *key, *str;
        int boolean;
    } must[] = {
        {"mid_block_type", "UNetMidBlock2DCrossAttn", -1},
        {"time_embedding_type", "positional", -1},
        {"resnet_time_scale_shift", "default", -1},
        {"act_fn", "silu", -1},
        {"attention_type", "default", -1},
        {"dual_cross_attention", NULL, 0},
        {"only_cross_attention", NULL, 0},
        {"center_input_sample", NULL, 0},
        {"class_embeddings_concat", NULL, 0},
        {"resnet_skip_time_act", NULL, 0},
        {"mid_block_only_cross_attention", NULL, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(must) && !rc; i++)
        rc = cfg_must(root, must[i].key, must[i].str, must[i].boolean, where, err);
    json_t *mbt = json_object_get(root, "mid_block_type");
    if (!rc && mbt && json_is_null(mbt)) /* null is "no mid block" to diffusers */
        rc = err_set(err, ERR_FORMAT, "%s: \"mid_block_type\" null (no mid block) is not "
                     "supported; UNetMidBlock2DCrossAttn is", where);
    static const char *const must_null[] = {
        "num_class_embeds",     "time_cond_proj_dim",   "encoder_hid_dim",
        "class_embed_type",     "encoder_hid_dim_type", "time_embedding_act_fn",
        "timestep_post_act",    "cross_attention_norm", "reverse_transformer_layers_per_block",
    };
    for (size_t i = 0; i < ARRAY_LEN(must_null) && !rc; i++) {
        json_t *v = json_object_get(root, must_null[i]);
        if (v && !json_is_null(v))
            rc = err_set(err, ERR_FORMAT, "%s: \"%s\" is not supported (null only)", where,
                         must_null[i]);
    }
    static const char *const must_one[] = {"mid_block_scale_factor", "resnet_out_scale_factor"};
    for (size_t i = 0; i < ARRAY_LEN(must_one) && !rc; i++)
        rc = cfg_must(root, must_one[i], NULL, -1, where, err);
    if (rc)
        goto out;
    int conv_in_k = 3, conv_out_k = 3, pad = 1;
    if ((rc = cfg_int(root, "in_channels", 4, &c->in_channels, where, err)) ||
        (rc = cfg_int(root, "out_channels", 4, &c->out_channels, where, err)) ||
        (rc = cfg_int(root, "sample_size", 64, &c->sample_size, where, err)) ||
        (rc = cfg_int(root, "conv_in_kernel", 3, &conv_in_k, where, err)) ||
        (rc = cfg_int(root, "conv_out_kernel", 3, &conv_out_k, where, err)) ||
        (rc = cfg_int(root, "downsample_padding", 1, &pad, where, err)) ||
        (rc = cfg_int(root, "cross_attention_dim", 1280, &c->cross_dim, where, err)) ||
        (rc = cfg_int(root, "norm_num_groups", 32, &c->groups, where, err)) ||
        (rc = cfg_num(root, "norm_eps", 1e-5, &c->eps, where, err)) ||
        (rc = cfg_bool(root, "flip_sin_to_cos", 1, &c->flip_sin_to_cos, where, err)) ||
        (rc = cfg_num(root, "freq_shift", 0, &c->freq_shift, where, err)) ||
        (rc = cfg_bool(root, "use_linear_projection", 0, &c->linear_proj, where, err)) ||
        (rc = cfg_bool(root, "upcast_attention", 0, &c->upcast_attention, where, err)) ||
        (rc = cfg_int(root, "time_embedding_dim", 4 * c->block_out[0], &c->time_embed_dim,
                      where, err)))
        goto out;
    if (conv_in_k != 3 || conv_out_k != 3 || pad != 1) {
        rc = err_set(err, ERR_FORMAT, "%s: \"conv_in_kernel\", \"conv_out_kernel\" other than 3 "
                     "or \"downsample_padding\" other than 1 is not supported", where);
        goto out;
    }
    if (c->in_channels < 1 || c->out_channels < 1 || c->cross_dim < 1 || c->groups < 1 ||
        c->time_embed_dim < 1 || !(c->eps > 0)) {
        rc = err_set(err, ERR_FORMAT, "%s: in_channels, out_channels, cross_attention_dim, "
                     "norm_num_groups, time_embedding_dim and norm_eps must be positive", where);
        goto out;
    }
    json_t *cad = json_object_get(root, "cross_attention_dim");
    if (json_is_array(cad)) {
        rc = err_set(err, ERR_FORMAT, "%s: \"cross_attention_dim\" per level is not supported",
                     where);
        goto out;
    }
    if ((rc = cfg_per_level(root, "layers_per_block", n, 2, 1, 64, c->layers, where, err)) ||
        (rc = cfg_per_level(root, "transformer_layers_per_block", n, 1, 1, 64, c->tlayers, where,
                            err)) ||
        (rc = cfg_types(root, "down_block_types", n, "CrossAttnDownBlock2D", "DownBlock2D",
                        c->down_attn, where, err)) ||
        (rc = cfg_types(root, "up_block_types", n, "CrossAttnUpBlock2D", "UpBlock2D", c->up_attn,
                        where, err)))
        goto out;
    /* diffusers: num_attention_heads = num_attention_heads or attention_head_dim */
    json_t *nah = json_object_get(root, "num_attention_heads");
    const char *hkey = nah && !json_is_null(nah) ? "num_attention_heads" : "attention_head_dim";
    if ((rc = cfg_per_level(root, hkey, n, 8, 1, 4096, c->heads, where, err)))
        goto out;
    for (int i = 0; i < n; i++) {
        if (c->block_out[i] % c->groups) {
            rc = err_set(err, ERR_FORMAT, "%s: \"block_out_channels\"[%d] = %d is not a multiple "
                         "of \"norm_num_groups\" %d", where, i, c->block_out[i], c->groups);
            goto out;
        }
        if (c->block_out[i] % c->heads[i]) {
            rc = err_set(err, ERR_FORMAT, "%s: \"block_out_channels\"[%d] = %d is not a multiple "
                         "of its head count %d (\"%s\")", where, i, c->block_out[i], c->heads[i],
                         hkey);
            goto out;
        }
    }
    json_t *aet = json_object_get(root, "addition_embed_type");
    if (aet && !json_is_null(aet)) {
        if (!json_is_string(aet) || strcmp(json_string_value(aet), "text_time")) {
            rc = err_set(err, ERR_FORMAT, "%s: \"addition_embed_type\" other than \"text_time\" "
                         "(SDXL) or null is not supported", where);
            goto out;
        }
        c->text_time = 1;
        if ((rc = cfg_int(root, "addition_time_embed_dim", 0, &c->add_time_dim, where, err)) ||
            (rc = cfg_int(root, "projection_class_embeddings_input_dim", 0, &c->add_in_dim,
                          where, err)))
            goto out;
        if (c->add_time_dim < 2 || c->add_time_dim % 2 || c->add_in_dim <= 6 * c->add_time_dim) {
            rc = err_set(err, ERR_FORMAT, "%s: \"text_time\" needs an even "
                         "\"addition_time_embed_dim\" and \"projection_class_embeddings_input_"
                         "dim\" larger than 6 times it (the pooled text width + 6·time dim)",
                         where);
            goto out;
        }
    }
    if (c->block_out[0] % 2) {
        rc = err_set(err, ERR_FORMAT, "%s: \"block_out_channels\"[0] must be even (the "
                     "timestep embedding's width)", where);
        goto out;
    }
out:
    json_decref(root);
    return rc;
}

/* ---- parameters ----------------------------------------------------------------------------- */

typedef struct ULinear {
    Tensor w, b; /* b.ptr NULL: no bias */
} ULinear;

typedef struct UConv {
    Tensor w, b;
    int k, stride, pad;
} UConv;

typedef struct UNorm {
    Tensor w, b;
} UNorm;

typedef struct UResnet {
    int cin, cout;
    UNorm n1, n2;
    UConv c1, c2, sc; /* sc.w.ptr NULL: identity shortcut */
    ULinear temb;
} UResnet;

typedef struct UAttn {
    ULinear q, k, v, o;
    int heads, kv_dim;
} UAttn;

typedef struct UTBlock {
    UNorm ln1, ln2, ln3;
    UAttn a1, a2;
    ULinear ff1, ff2; /* ff1: (8C, C) GEGLU projection, ff2: (C, 4C) */
} UTBlock;

typedef struct UTransformer {
    int C, heads, n;
    UNorm gn;
    ULinear pin_l, pout_l; /* use_linear_projection */
    UConv pin_c, pout_c;   /* else 1×1 convs */
    UTBlock *blocks;
} UTransformer;

/* A down or up block, or the mid block (resnets n_res, transformers after resnet j, or for
 * the mid block before resnet j ≥ 1). */
typedef struct ULevel {
    int n_res;
    UResnet res[8];
    int n_attn;
    UTransformer attn[8];
    int has_sample;
    UConv sample; /* down: stride-2 conv; up: conv after the nearest 2× */
} ULevel;

struct Unet {
    UnetConfig cfg;
    DType dtype;
    size_t param_bytes;
    ULinear t1, t2;       /* time_embedding.linear_1/2 */
    ULinear a1, a2;       /* add_embedding.linear_1/2 (text_time) */
    UConv conv_in, conv_out;
    UNorm norm_out;
    ULevel down[UNET_MAX_LEVELS], mid, up[UNET_MAX_LEVELS];
    Backend *be;          /* the one the parameters live on */
};

typedef struct Loader {
    SdWeights *w;
    Backend *be;
    DType dtype;
    float *buf;           /* host f32 staging */
    void *hbuf;           /* host half staging */
    size_t cap;
    size_t *bytes;
    Err *err;
} Loader;

/* Read NAME (n dims of SHAPE) onto the device in the resident dtype. */
static int load_t(Loader *ld, Tensor *t, const char *name, int nd, int64_t d0, int64_t d1,
                  int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)shape[i];
    if (n > ld->cap) {
        free(ld->buf);
        free(ld->hbuf);
        ld->buf = xmalloc(n * sizeof(float));
        ld->hbuf = xmalloc(n * sizeof(uint16_t));
        ld->cap = n;
    }
    int rc = sd_weights_read_f32(ld->w, name, nd, shape, ld->buf, ld->err);
    if (rc)
        return rc;
    *t = backend_tensor_new(ld->be, ld->dtype, nd, shape);
    Tensor host;
    if (ld->dtype == DTYPE_F32) {
        host = tensor_view(ld->buf, nd, shape);
    } else {
        dtype_from_f32(ld->hbuf, ld->dtype, ld->buf, n);
        host = tensor_view_dtype(ld->hbuf, ld->dtype, nd, shape);
    }
    backend_upload(ld->be, t, &host);
    *ld->bytes += n * dtype_size(ld->dtype);
    return backend_sync(ld->be, ld->err);
}

static int load_linear(Loader *ld, ULinear *l, const char *pre, int out, int in, int bias) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", pre);
    int rc = load_t(ld, &l->w, name, 2, out, in, 0, 0);
    if (!rc && bias) {
        snprintf(name, sizeof name, "%s.bias", pre);
        rc = load_t(ld, &l->b, name, 1, out, 0, 0, 0);
    }
    return rc;
}

static int load_conv(Loader *ld, UConv *c, const char *pre, int out, int in, int k, int stride) {
    char name[256];
    c->k = k;
    c->stride = stride;
    c->pad = k / 2;
    snprintf(name, sizeof name, "%s.weight", pre);
    int rc = load_t(ld, &c->w, name, 4, out, in, k, k);
    if (!rc) {
        snprintf(name, sizeof name, "%s.bias", pre);
        rc = load_t(ld, &c->b, name, 1, out, 0, 0, 0);
    }
    return rc;
}

static int load_norm(Loader *ld, UNorm *nm, const char *pre, int C) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", pre);
    int rc = load_t(ld, &nm->w, name, 1, C, 0, 0, 0);
    if (!rc) {
        snprintf(name, sizeof name, "%s.bias", pre);
        rc = load_t(ld, &nm->b, name, 1, C, 0, 0, 0);
    }
    return rc;
}

static int load_resnet(Loader *ld, UResnet *r, const char *pre, int cin, int cout, int temb) {
    char p[224];
    int rc;
    r->cin = cin;
    r->cout = cout;
#define SUB(s) (snprintf(p, sizeof p, "%s.%s", pre, s), p)
    if ((rc = load_norm(ld, &r->n1, SUB("norm1"), cin)) ||
        (rc = load_conv(ld, &r->c1, SUB("conv1"), cout, cin, 3, 1)) ||
        (rc = load_linear(ld, &r->temb, SUB("time_emb_proj"), cout, temb, 1)) ||
        (rc = load_norm(ld, &r->n2, SUB("norm2"), cout)) ||
        (rc = load_conv(ld, &r->c2, SUB("conv2"), cout, cout, 3, 1)))
        return rc;
    if (cin != cout)
        rc = load_conv(ld, &r->sc, SUB("conv_shortcut"), cout, cin, 1, 1);
    return rc;
}

static int load_attn(Loader *ld, UAttn *a, const char *pre, int C, int kv, int heads) {
    char p[224];
    int rc;
    a->heads = heads;
    a->kv_dim = kv;
    if ((rc = load_linear(ld, &a->q, SUB("to_q"), C, C, 0)) ||
        (rc = load_linear(ld, &a->k, SUB("to_k"), C, kv, 0)) ||
        (rc = load_linear(ld, &a->v, SUB("to_v"), C, kv, 0)))
        return rc;
    return load_linear(ld, &a->o, SUB("to_out.0"), C, C, 1);
}

static int load_transformer(Loader *ld, UTransformer *t, const char *pre, int C, int heads,
                            int n, const UnetConfig *c) {
    char p[224], q[256];
    int rc;
    t->C = C;
    t->heads = heads;
    t->n = n;
    t->blocks = xcalloc((size_t)n, sizeof *t->blocks);
    if ((rc = load_norm(ld, &t->gn, SUB("norm"), C)))
        return rc;
    if (c->linear_proj)
        rc = load_linear(ld, &t->pin_l, SUB("proj_in"), C, C, 1);
    else
        rc = load_conv(ld, &t->pin_c, SUB("proj_in"), C, C, 1, 1);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) {
        UTBlock *b = &t->blocks[i];
#define SUBB(s) (snprintf(q, sizeof q, "%s.transformer_blocks.%d.%s", pre, i, s), q)
        if ((rc = load_norm(ld, &b->ln1, SUBB("norm1"), C)) ||
            (rc = load_attn(ld, &b->a1, SUBB("attn1"), C, C, heads)) ||
            (rc = load_norm(ld, &b->ln2, SUBB("norm2"), C)) ||
            (rc = load_attn(ld, &b->a2, SUBB("attn2"), C, c->cross_dim, heads)) ||
            (rc = load_norm(ld, &b->ln3, SUBB("norm3"), C)) ||
            (rc = load_linear(ld, &b->ff1, SUBB("ff.net.0.proj"), 8 * C, C, 1)) ||
            (rc = load_linear(ld, &b->ff2, SUBB("ff.net.2"), C, 4 * C, 1)))
            return rc;
#undef SUBB
    }
    if (c->linear_proj)
        return load_linear(ld, &t->pout_l, SUB("proj_out"), C, C, 1);
    return load_conv(ld, &t->pout_c, SUB("proj_out"), C, C, 1, 1);
}

static int load_all(Loader *ld, Unet *u) {
    const UnetConfig *c = &u->cfg;
    char p[192];
    int rc, L = c->levels, temb = c->time_embed_dim;
    if ((rc = load_linear(ld, &u->t1, "time_embedding.linear_1", temb, c->block_out[0], 1)) ||
        (rc = load_linear(ld, &u->t2, "time_embedding.linear_2", temb, temb, 1)))
        return rc;
    if (c->text_time &&
        ((rc = load_linear(ld, &u->a1, "add_embedding.linear_1", temb, c->add_in_dim, 1)) ||
         (rc = load_linear(ld, &u->a2, "add_embedding.linear_2", temb, temb, 1))))
        return rc;
    if ((rc = load_conv(ld, &u->conv_in, "conv_in", c->block_out[0], c->in_channels, 3, 1)))
        return rc;
    int ch = c->block_out[0];
    for (int i = 0; i < L; i++) {
        ULevel *lv = &u->down[i];
        int oc = c->block_out[i];
        lv->n_res = c->layers[i];
        lv->n_attn = c->down_attn[i] ? c->layers[i] : 0;
        if (lv->n_res > 8)
            return err_set(ld->err, ERR_FORMAT, "unet: more than 8 layers per block");
        for (int j = 0; j < lv->n_res; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            if ((rc = load_resnet(ld, &lv->res[j], p, j ? oc : ch, oc, temb)))
                return rc;
            if (lv->n_attn) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                if ((rc = load_transformer(ld, &lv->attn[j], p, oc, c->heads[i], c->tlayers[i],
                                           c)))
                    return rc;
            }
        }
        ch = oc;
        if (i < L - 1) {
            lv->has_sample = 1;
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            if ((rc = load_conv(ld, &lv->sample, p, oc, oc, 3, 2)))
                return rc;
        }
    }
    int top = c->block_out[L - 1];
    u->mid.n_res = 2;
    u->mid.n_attn = 1;
    if ((rc = load_resnet(ld, &u->mid.res[0], "mid_block.resnets.0", top, top, temb)) ||
        (rc = load_transformer(ld, &u->mid.attn[0], "mid_block.attentions.0", top,
                               c->heads[L - 1], c->tlayers[L - 1], c)) ||
        (rc = load_resnet(ld, &u->mid.res[1], "mid_block.resnets.1", top, top, temb)))
        return rc;
    /* the skip channels, in the order the down path pushes them */
    int skips[UNET_MAX_LEVELS * 10], ns = 0;
    skips[ns++] = c->block_out[0];
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < c->layers[i]; j++)
            skips[ns++] = c->block_out[i];
        if (i < L - 1)
            skips[ns++] = c->block_out[i];
    }
    int prev = top;
    for (int i = 0; i < L; i++) {
        int lvl = L - 1 - i, oc = c->block_out[lvl];
        ULevel *lv = &u->up[i];
        lv->n_res = c->layers[lvl] + 1;
        lv->n_attn = c->up_attn[i] ? lv->n_res : 0;
        if (lv->n_res > 8)
            return err_set(ld->err, ERR_FORMAT, "unet: more than 7 layers per block");
        for (int j = 0; j < lv->n_res; j++) {
            int in = (j ? oc : prev) + skips[--ns];
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            if ((rc = load_resnet(ld, &lv->res[j], p, in, oc, temb)))
                return rc;
            if (lv->n_attn) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                if ((rc = load_transformer(ld, &lv->attn[j], p, oc, c->heads[lvl],
                                           c->tlayers[lvl], c)))
                    return rc;
            }
        }
        prev = oc;
        if (i < L - 1) {
            lv->has_sample = 1;
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            if ((rc = load_conv(ld, &lv->sample, p, oc, oc, 3, 1)))
                return rc;
        }
    }
    if ((rc = load_norm(ld, &u->norm_out, "conv_norm_out", c->block_out[0])))
        return rc;
    return load_conv(ld, &u->conv_out, "conv_out", c->out_channels, c->block_out[0], 3, 1);
}
#undef SUB

static void free_t(Backend *be, Tensor *t) {
    if (t->ptr)
        backend_tensor_free(be, t);
}

/* Every Tensor of the Unet struct and its transformers' blocks: walked as the fields they
 * are (a Unet is plain data of Tensors and ints). */
static void free_level(Backend *be, ULevel *lv) {
    for (int j = 0; j < 8; j++) {
        UResnet *r = &lv->res[j];
        Tensor *ts[] = {&r->n1.w, &r->n1.b, &r->n2.w, &r->n2.b, &r->c1.w, &r->c1.b, &r->c2.w,
                        &r->c2.b, &r->sc.w, &r->sc.b, &r->temb.w, &r->temb.b};
        for (size_t k = 0; k < ARRAY_LEN(ts); k++)
            free_t(be, ts[k]);
        UTransformer *t = &lv->attn[j];
        for (int i = 0; i < t->n && t->blocks; i++) {
            UTBlock *b = &t->blocks[i];
            Tensor *bs[] = {&b->ln1.w, &b->ln1.b, &b->ln2.w, &b->ln2.b, &b->ln3.w, &b->ln3.b,
                            &b->a1.q.w, &b->a1.k.w, &b->a1.v.w, &b->a1.o.w, &b->a1.o.b,
                            &b->a2.q.w, &b->a2.k.w, &b->a2.v.w, &b->a2.o.w, &b->a2.o.b,
                            &b->ff1.w, &b->ff1.b, &b->ff2.w, &b->ff2.b};
            for (size_t k = 0; k < ARRAY_LEN(bs); k++)
                free_t(be, bs[k]);
        }
        free(t->blocks);
        t->blocks = NULL;
        Tensor *tt[] = {&t->gn.w, &t->gn.b, &t->pin_l.w, &t->pin_l.b, &t->pout_l.w,
                        &t->pout_l.b, &t->pin_c.w, &t->pin_c.b, &t->pout_c.w, &t->pout_c.b};
        for (size_t k = 0; k < ARRAY_LEN(tt); k++)
            free_t(be, tt[k]);
    }
    free_t(be, &lv->sample.w);
    free_t(be, &lv->sample.b);
}

void unet_free(Unet *u) {
    if (!u)
        return;
    Backend *be = u->be;
    Tensor *ts[] = {&u->t1.w, &u->t1.b, &u->t2.w, &u->t2.b, &u->a1.w, &u->a1.b, &u->a2.w,
                    &u->a2.b, &u->conv_in.w, &u->conv_in.b, &u->conv_out.w, &u->conv_out.b,
                    &u->norm_out.w, &u->norm_out.b};
    for (size_t k = 0; k < ARRAY_LEN(ts); k++)
        free_t(be, ts[k]);
    for (int i = 0; i < UNET_MAX_LEVELS; i++) {
        free_level(be, &u->down[i]);
        free_level(be, &u->up[i]);
    }
    free_level(be, &u->mid);
    free(u);
}

int unet_load(SdWeights *w, Backend *be, const UnetOptions *opts, Unet **out, Err *err) {
    *out = NULL;
    const char *json = sd_weights_config_json(w);
    char where[1100];
    snprintf(where, sizeof where, "config.json of %s", sd_weights_where(w));
    if (!json)
        return err_set(err, ERR_FORMAT, "%s: missing (the UNet's config.json is needed)", where);
    DType dt = opts ? opts->dtype : DTYPE_F32;
    if (dt != DTYPE_F32 && dt != DTYPE_F16 && dt != DTYPE_BF16)
        return err_set(err, ERR_USAGE, "unet_load: resident dtype %d: use f32, f16 or bf16",
                       (int)dt);
    Unet *u = xcalloc(1, sizeof *u);
    u->be = be;
    u->dtype = dt;
    int rc = unet_config_parse(json, where, &u->cfg, err);
    if (rc) {
        free(u);
        return rc;
    }
    Loader ld = {w, be, u->dtype, NULL, NULL, 0, &u->param_bytes, err};
    rc = load_all(&ld, u);
    free(ld.buf);
    free(ld.hbuf);
    if (rc) {
        unet_free(u);
        return rc;
    }
    *out = u;
    return 0;
}

const UnetConfig *unet_config(const Unet *u) { return &u->cfg; }
size_t unet_param_bytes(const Unet *u) { return u->param_bytes; }

/* ---- forward -------------------------------------------------------------------------------- */


static Tensor view(const Tensor *t, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    Tensor v = tensor_view_dtype(t->ptr, t->dtype, nd, shape);
    v.device = t->device;
    return v;
}

static Tensor alloc4(Backend *be, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    return backend_alloc(be, DTYPE_F32, 4, shape);
}

static Tensor alloc2(Backend *be, int64_t d0, int64_t d1) {
    int64_t shape[2] = {d0, d1};
    return backend_alloc(be, DTYPE_F32, 2, shape);
}

/* out (B,C,H,W) = GroupNorm(inp), then SiLU when act. */
static void gnorm(Backend *be, const Tensor *out, const Tensor *inp, const UNorm *nm, int G,
                  float eps, int act) {
    size_t m = backend_mark(be);
    int64_t B = inp->shape[0];
    Tensor mean = alloc2(be, B, G), rstd = alloc2(be, B, G);
    backend_groupnorm_forward(be, out, &mean, &rstd, inp, &nm->w, &nm->b, G, eps);
    if (act)
        backend_act_forward(be, BACKEND_ACT_SILU, out, out);
    backend_reset(be, m);
}

static void conv(Backend *be, const Tensor *out, const Tensor *inp, const UConv *c) {
    backend_conv2d_forward(be, out, inp, &c->w, &c->b, c->stride, c->pad);
}

/* out (B,cout,H,W) = ResnetBlock2D(x (B,cin,H,W), semb = silu(temb) (B,temb)). */
static void resnet_fwd(Backend *be, const Unet *u, const UResnet *r, const Tensor *out,
                       const Tensor *x, const Tensor *semb) {
    size_t m = backend_mark(be);
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
    int G = u->cfg.groups;
    Tensor h = alloc4(be, B, r->cin, H, W);
    gnorm(be, &h, x, &r->n1, G, u->cfg.eps, 1);
    Tensor h2 = alloc4(be, B, r->cout, H, W);
    conv(be, &h2, &h, &r->c1);
    Tensor t = alloc2(be, B, r->cout);
    backend_linear_forward(be, &t, semb, &r->temb.w, &r->temb.b);
    Tensor h3 = view(&h2, 3, B, r->cout, H * W, 0);
    backend_unet_add(be, &h3, &h3, NULL, &t);
    Tensor h4 = alloc4(be, B, r->cout, H, W);
    gnorm(be, &h4, &h2, &r->n2, G, u->cfg.eps, 1);
    conv(be, out, &h4, &r->c2); /* dropout is the identity at inference */
    Tensor o3 = view(out, 3, B, r->cout, H * W, 0);
    if (r->sc.w.ptr) {
        conv(be, &h2, x, &r->sc);
        backend_unet_add(be, &o3, &o3, &h3, NULL);
    } else {
        Tensor x3 = view(x, 3, B, r->cin, H * W, 0);
        backend_unet_add(be, &o3, &o3, &x3, NULL);
    }
    backend_reset(be, m);
}

/* out (N,C) = attention(x (B·Tq, C), ctx (B·Tk, kv)) with its output projection, ADDED to
 * res (N,C) (out may alias res). */
static void attn_fwd(Backend *be, const UAttn *a, const Tensor *out, const Tensor *res,
                     const Tensor *x, const Tensor *ctx, int64_t B, int64_t Tq, int64_t Tk) {
    size_t m = backend_mark(be);
    int64_t C = x->shape[1];
    Tensor q = alloc2(be, B * Tq, C), k = alloc2(be, B * Tk, C), v = alloc2(be, B * Tk, C);
    backend_linear_forward(be, &q, x, &a->q.w, NULL);
    backend_linear_forward(be, &k, ctx, &a->k.w, NULL);
    backend_linear_forward(be, &v, ctx, &a->v.w, NULL);
    Tensor q3 = view(&q, 3, B, Tq, C, 0), k3 = view(&k, 3, B, Tk, C, 0);
    Tensor v3 = view(&v, 3, B, Tk, C, 0);
    Tensor o = alloc2(be, B * Tq, C);
    Tensor o3 = view(&o, 3, B, Tq, C, 0);
    int64_t lshape[3] = {B, a->heads, Tq};
    Tensor lse = backend_alloc(be, DTYPE_F32, 3, lshape);
    BackendAttn ba = {a->heads, 0.0f, 0, NULL};
    backend_attention_forward(be, &o3, &lse, &q3, &k3, &v3, &ba);
    Tensor p = q; /* q is dead: the projection goes there */
    backend_linear_forward(be, &p, &o, &a->o.w, &a->o.b);
    Tensor p3 = view(&p, 3, 1, B * Tq, C, 0), r3 = view(res, 3, 1, B * Tq, C, 0);
    Tensor out3 = view(out, 3, 1, B * Tq, C, 0);
    backend_unet_add(be, &out3, &r3, &p3, NULL);
    backend_reset(be, m);
}

/* out (B,C,H,W) = Transformer2DModel(x (B,C,H,W), ehs (B,T,D)) + x. */
static void transformer_fwd(Backend *be, const Unet *u, const UTransformer *t, const Tensor *out,
                            const Tensor *x, const Tensor *ehs) {
    size_t m = backend_mark(be);
    int64_t B = x->shape[0], C = t->C, H = x->shape[2], W = x->shape[3], S = H * W;
    int64_t T = ehs->shape[1], D = ehs->shape[2];
    Tensor g = alloc4(be, B, C, H, W);
    gnorm(be, &g, x, &t->gn, u->cfg.groups, 1e-6f, 0);
    Tensor tok = alloc2(be, B * S, C); /* hidden states (B·S, C) */
    Tensor tmp = alloc2(be, B * S, C);
    Tensor tok3 = view(&tok, 3, B, S, C, 0), tmp3 = view(&tmp, 3, B, S, C, 0);
    if (u->cfg.linear_proj) {
        Tensor g3 = view(&g, 3, B, C, S, 0);
        backend_unet_transpose(be, &tmp3, &g3);
        backend_linear_forward(be, &tok, &tmp, &t->pin_l.w, &t->pin_l.b);
    } else {
        Tensor p = view(&tmp, 4, B, C, H, W);
        conv(be, &p, &g, &t->pin_c);
        Tensor p3 = view(&tmp, 3, B, C, S, 0);
        backend_unet_transpose(be, &tok3, &p3);
    }
    Tensor ctx = view(ehs, 2, B * T, D, 0, 0);
    Tensor mean = backend_alloc(be, DTYPE_F32, 1, &(int64_t){B * S});
    Tensor rstd = backend_alloc(be, DTYPE_F32, 1, &(int64_t){B * S});
    for (int i = 0; i < t->n; i++) {
        const UTBlock *b = &t->blocks[i];
        backend_layernorm_forward(be, &tmp, &mean, &rstd, &tok, &b->ln1.w, &b->ln1.b, 1e-5f);
        attn_fwd(be, &b->a1, &tok, &tok, &tmp, &tmp, B, S, S);
        backend_layernorm_forward(be, &tmp, &mean, &rstd, &tok, &b->ln2.w, &b->ln2.b, 1e-5f);
        attn_fwd(be, &b->a2, &tok, &tok, &tmp, &ctx, B, S, T);
        backend_layernorm_forward(be, &tmp, &mean, &rstd, &tok, &b->ln3.w, &b->ln3.b, 1e-5f);
        size_t m2 = backend_mark(be);
        Tensor proj = alloc2(be, B * S, 8 * C), gg = alloc2(be, B * S, 4 * C);
        backend_linear_forward(be, &proj, &tmp, &b->ff1.w, &b->ff1.b);
        backend_geglu_forward(be, BACKEND_ACT_GELU, &gg, &proj);
        backend_linear_forward(be, &tmp, &gg, &b->ff2.w, &b->ff2.b);
        Tensor t3 = view(&tmp, 3, 1, B * S, C, 0), k3 = view(&tok, 3, 1, B * S, C, 0);
        backend_unet_add(be, &k3, &k3, &t3, NULL);
        backend_reset(be, m2);
    }
    Tensor o3 = view(out, 3, B, C, S, 0), x3 = view(x, 3, B, C, S, 0);
    if (u->cfg.linear_proj) {
        backend_linear_forward(be, &tmp, &tok, &t->pout_l.w, &t->pout_l.b);
        backend_unet_transpose(be, &o3, &tmp3);
    } else {
        Tensor gt = view(&g, 3, B, C, S, 0);
        backend_unet_transpose(be, &gt, &tok3);
        conv(be, out, &g, &t->pout_c);
    }
    backend_unet_add(be, &o3, &o3, &x3, NULL);
    backend_reset(be, m);
}

int unet_forward(Unet *u, Backend *be, const Tensor *out, const Tensor *x, const float *timesteps,
                 const Tensor *ehs, const Tensor *text_embeds, const float *time_ids, Err *err) {
    const UnetConfig *c = &u->cfg;
    int L = c->levels;
    if (be != u->be)
        return err_set(err, ERR_USAGE, "unet_forward: the UNet's parameters live on %s, not on "
                       "%s", backend_name(u->be), backend_name(be));
    if (!timesteps)
        return err_set(err, ERR_USAGE, "unet_forward: timesteps are required (one per image)");
    if (x->n_dims != 4 || x->shape[1] != c->in_channels)
        return err_set(err, ERR_USAGE, "unet_forward: latents must be (B,%d,h,w)",
                       c->in_channels);
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
    int64_t div = (int64_t)1 << (L - 1);
    if (H % div || W % div || H < div || W < div)
        return err_set(err, ERR_USAGE, "unet_forward: latents %lldx%lld: height and width must "
                       "be multiples of %lld (the UNet halves them %d times)", (long long)H,
                       (long long)W, (long long)div, L - 1);
    if (out->n_dims != 4 || out->shape[0] != B || out->shape[1] != c->out_channels ||
        out->shape[2] != H || out->shape[3] != W)
        return err_set(err, ERR_USAGE, "unet_forward: out must be (%lld,%d,%lld,%lld)",
                       (long long)B, c->out_channels, (long long)H, (long long)W);
    if (ehs->n_dims != 3 || ehs->shape[0] != B || ehs->shape[2] != c->cross_dim)
        return err_set(err, ERR_USAGE, "unet_forward: encoder_hidden_states must be "
                       "(%lld,T,%d)", (long long)B, c->cross_dim);
    if (c->text_time) {
        int64_t E = c->add_in_dim - 6 * c->add_time_dim;
        if (!text_embeds || !time_ids || text_embeds->n_dims != 2 ||
            text_embeds->shape[0] != B || text_embeds->shape[1] != E)
            return err_set(err, ERR_USAGE, "unet_forward: this UNet (addition_embed_type "
                           "text_time) needs text_embeds (%lld,%lld) and %lld·6 time_ids",
                           (long long)B, (long long)E, (long long)B);
    }
    size_t m0 = backend_mark(be);
    int64_t temb = c->time_embed_dim, C0 = c->block_out[0];
    /* time embedding: sinusoids on the host, the MLP on the device */
    float *hs = xmalloc(sizeof(float) * (size_t)(B * (C0 > 6 * c->add_time_dim
                                                          ? C0 : 6 * c->add_time_dim)));
    nn_timestep_embedding_forward(hs, timesteps, (int)B, (int)C0, c->flip_sin_to_cos,
                                  c->freq_shift, 1.0f, 10000.0f);
    Tensor tsin = alloc2(be, B, C0);
    Tensor hsv = tensor_view(hs, 2, tsin.shape);
    backend_upload(be, &tsin, &hsv);
    Tensor e1 = alloc2(be, B, temb), emb = alloc2(be, B, temb), semb = alloc2(be, B, temb);
    backend_linear_forward(be, &e1, &tsin, &u->t1.w, &u->t1.b);
    backend_act_forward(be, BACKEND_ACT_SILU, &e1, &e1);
    backend_linear_forward(be, &emb, &e1, &u->t2.w, &u->t2.b);
    if (c->text_time) {
        int64_t E = c->add_in_dim - 6 * c->add_time_dim, TD = 6 * c->add_time_dim;
        nn_timestep_embedding_forward(hs, time_ids, (int)(B * 6), c->add_time_dim,
                                      c->flip_sin_to_cos, c->freq_shift, 1.0f, 10000.0f);
        Tensor tt = alloc4(be, B, TD, 1, 1), cat = alloc4(be, B, c->add_in_dim, 1, 1);
        Tensor htt = tensor_view(hs, 4, tt.shape);
        backend_upload(be, &tt, &htt);
        Tensor te = view(text_embeds, 4, B, E, 1, 1);
        backend_concat_forward(be, &cat, &te, &tt);
        Tensor cat2 = view(&cat, 2, B, c->add_in_dim, 0, 0);
        backend_linear_forward(be, &e1, &cat2, &u->a1.w, &u->a1.b);
        backend_act_forward(be, BACKEND_ACT_SILU, &e1, &e1);
        backend_linear_forward(be, &semb, &e1, &u->a2.w, &u->a2.b);
        Tensor a3 = view(&emb, 3, 1, B, temb, 0), b3 = view(&semb, 3, 1, B, temb, 0);
        backend_unet_add(be, &a3, &a3, &b3, NULL);
    }
    backend_act_forward(be, BACKEND_ACT_SILU, &semb, &emb); /* every ResNet's silu(temb) */
    /* the up path's two hidden-state buffers: the largest hidden state of the up path */
    int64_t hmax = 0;
    for (int i = 0; i < L; i++) {
        int64_t lvl = L - 1 - i, s = (H >> lvl) * (W >> lvl) * c->block_out[lvl];
        hmax = s > hmax ? s : hmax;
        if (lvl > 0) /* the upsampled state, at the next resolution */
            hmax = s * 4 > hmax ? s * 4 : hmax;
    }
    Tensor hbuf[2] = {alloc2(be, B, hmax), alloc2(be, B, hmax)};
    /* down path: every pushed state is its own allocation (the skips) */
    Tensor skips[UNET_MAX_LEVELS * 10];
    int ns = 0;
    skips[ns] = alloc4(be, B, C0, H, W);
    conv(be, &skips[ns], x, &u->conv_in);
    Tensor h = skips[ns++];
    int64_t hh = H, ww = W;
    for (int i = 0; i < L; i++) {
        const ULevel *lv = &u->down[i];
        for (int j = 0; j < lv->n_res; j++) {
            Tensor r = alloc4(be, B, lv->res[j].cout, hh, ww);
            resnet_fwd(be, u, &lv->res[j], &r, &h, &semb);
            if (lv->n_attn) {
                Tensor a = alloc4(be, B, lv->res[j].cout, hh, ww);
                transformer_fwd(be, u, &lv->attn[j], &a, &r, ehs);
                r = a; /* the resnet's output stays below as dead space: small next to skips */
            }
            skips[ns++] = r;
            h = r;
        }
        if (lv->has_sample) {
            hh /= 2;
            ww /= 2;
            Tensor d = alloc4(be, B, h.shape[1], hh, ww);
            conv(be, &d, &h, &lv->sample);
            skips[ns++] = d;
            h = d;
        }
    }
    /* mid block */
    int64_t top = c->block_out[L - 1];
    int cur = 0;
    Tensor m1 = view(&hbuf[cur], 4, B, top, hh, ww), m2 = view(&hbuf[!cur], 4, B, top, hh, ww);
    resnet_fwd(be, u, &u->mid.res[0], &m1, &h, &semb);
    transformer_fwd(be, u, &u->mid.attn[0], &m2, &m1, ehs);
    resnet_fwd(be, u, &u->mid.res[1], &m1, &m2, &semb);
    h = m1;
    /* up path */
    for (int i = 0; i < L; i++) {
        const ULevel *lv = &u->up[i];
        for (int j = 0; j < lv->n_res; j++) {
            size_t m = backend_mark(be);
            const Tensor *s = &skips[--ns];
            Tensor cat = alloc4(be, B, h.shape[1] + s->shape[1], hh, ww);
            backend_concat_forward(be, &cat, &h, s);
            cur = !cur;
            Tensor r = view(&hbuf[cur], 4, B, lv->res[j].cout, hh, ww);
            resnet_fwd(be, u, &lv->res[j], &r, &cat, &semb);
            backend_reset(be, m);
            h = r;
            if (lv->n_attn) {
                cur = !cur;
                Tensor a = view(&hbuf[cur], 4, B, lv->res[j].cout, hh, ww);
                transformer_fwd(be, u, &lv->attn[j], &a, &h, ehs);
                h = a;
            }
        }
        if (lv->has_sample) {
            size_t m = backend_mark(be);
            Tensor up = alloc4(be, B, h.shape[1], 2 * hh, 2 * ww);
            backend_upsample2x_forward(be, &up, &h);
            hh *= 2;
            ww *= 2;
            cur = !cur;
            Tensor r = view(&hbuf[cur], 4, B, h.shape[1], hh, ww);
            conv(be, &r, &up, &lv->sample);
            backend_reset(be, m);
            h = r;
        }
    }
    {
        Tensor g = alloc4(be, B, C0, H, W);
        gnorm(be, &g, &h, &u->norm_out, c->groups, c->eps, 1);
        conv(be, out, &g, &u->conv_out);
    }
    backend_reset(be, m0);
    int rc = backend_sync(be, err);
    free(hs);
    return rc;
}
