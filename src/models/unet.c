/* unet — diffusers' UNet2DConditionModel on the Backend. See unet.h for the design. */
#include "unet.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fmt_json.h"
#include "nn_diffusion.h"
#include "rng.h"

/* ---- config.json ---------------------------------------------------------------------------- */

/* Typed fields: fmt_json_get_int / _num / _bool (src/io/fmt_json.h); an int of any value. */
static int cfg_int(json_t *root, const char *key, int dflt, int *out, const char *where,
                   Err *err) {
    return fmt_json_get_int(root, key, dflt, INT_MIN, INT_MAX, out, where, err);
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
        (rc = fmt_json_get_num(root, "norm_eps", 1e-5, &c->eps, where, err)) ||
        (rc = fmt_json_get_bool(root, "flip_sin_to_cos", 1, &c->flip_sin_to_cos, where, err)) ||
        (rc = fmt_json_get_num(root, "freq_shift", 0, &c->freq_shift, where, err)) ||
        (rc = fmt_json_get_bool(root, "use_linear_projection", 0, &c->linear_proj, where, err)) ||
        (rc = fmt_json_get_bool(root, "upcast_attention", 0, &c->upcast_attention, where, err)) ||
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

typedef struct UAdapter UAdapter;

typedef struct ULinear {
    Tensor w, b;  /* b.ptr NULL: no bias */
    UAdapter *ad; /* a LoRA / DoRA adapter on this layer (unet_adapter_add), or NULL */
} ULinear;

typedef struct UConv {
    Tensor w, b;
    int k, stride, pad;
    UAdapter *ad; /* as ULinear's */
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
    UAdapter *ads;        /* unet_adapter_add's adapters (n_ad), NULL when none */
    int n_ad;
    int ad_off;           /* unet_lora_enable(u, 0): every adapter skipped */
    unsigned ad_gen;      /* bumped by every unet_forward / backward: DoRA's norm cache */
    int temb_ad;          /* an adapter on time_embedding / add_embedding: the backward goes
                           * through the time embedding */
    Tensor ones;          /* n_ones ones on the device (per-channel sums in the backward) */
    int64_t n_ones;
    UnetKeep keep;        /* unet_set_keep */
    int kept;             /* the last backward kept its blocks' records */
};

static void adapters_free(Unet *u); /* the adapter section, at the end */

typedef struct Loader {
    SdWeights *w;
    Backend *be;
    DType dtype;
    size_t *bytes;
    Err *err;
} Loader;

/* Read NAME (n dims of SHAPE) onto the device in the resident dtype, a bounded piece at a
 * time (sd_weights_read: no whole-tensor staging). */
static int load_t(Loader *ld, Tensor *t, const char *name, int nd, int64_t d0, int64_t d1,
                  int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)shape[i];
    *t = backend_tensor_new(ld->be, ld->dtype, nd, shape);
    int rc = sd_weights_read_device(ld->w, name, nd, shape, 1.0f, ld->be, t, ld->err);
    if (rc)
        return rc;
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
    adapters_free(u); /* first: it walks the layers */
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
    Loader ld = {w, be, u->dtype, &u->param_bytes, err};
    rc = load_all(&ld, u);
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

/* The records of the blocks' forwards (issue 16's backward): what each block's backward needs
 * of its forward's internals. A forward given a record allocates every recorded tensor in the
 * backend's arena and leaves it there (the caller's mark frees it); given none, it keeps only
 * its output and frees its temporaries (inference). The backward either finds the record kept
 * by the forward ("keep" mode) or has the block's forward fill one (per-block checkpointing):
 * one forward code path for both, and no recompute inside a block's backward. */

/* GroupNorm's statistics and, when SiLU follows, its output before the activation. */
typedef struct UGnRec {
    Tensor mean, rstd, g;
} UGnRec;

/* out (B,C,H,W) = GroupNorm(inp), then SiLU when act; rec (NULL: none) keeps its statistics. */
static void gnorm(Backend *be, const Tensor *out, const Tensor *inp, const UNorm *nm, int G,
                  float eps, int act, UGnRec *rec) {
    size_t m = backend_mark(be);
    int64_t B = inp->shape[0];
    UGnRec loc, *k = rec ? rec : &loc;
    k->mean = alloc2(be, B, G), k->rstd = alloc2(be, B, G);
    k->g = *out;
    if (act && rec) /* SiLU's backward takes its input */
        k->g = backend_alloc(be, DTYPE_F32, out->n_dims, out->shape);
    backend_groupnorm_forward(be, &k->g, &k->mean, &k->rstd, inp, &nm->w, &nm->b, G, eps);
    if (act)
        backend_act_forward(be, BACKEND_ACT_SILU, out, &k->g);
    if (!rec)
        backend_reset(be, m);
}

/* out (N,OC) = inp · wᵀ + b, and a conv layer's output, with the layer's adapter when it has
 * one (the adapter section, at the end). */
static void lin_fwd(Backend *be, const Tensor *out, const Tensor *inp, const ULinear *l);
static void conv(Backend *be, const Tensor *out, const Tensor *inp, const UConv *c);
/* With a DoRA adapter on, a record's slot (N,C) for the layer's y0 (its backward's pre-scale
 * output), else none; lin_fwd_y0 is lin_fwd that fills y0 when it is a slot. */
static Tensor y0_slot(Backend *be, const ULinear *l, int64_t N, int64_t C);
static void lin_fwd_y0(Backend *be, const Tensor *out, const Tensor *inp, const ULinear *l,
                       const Tensor *y0);

/* A ResNet's internals: h = silu(n1(x)), h2 = conv1(h) + temb, h4 = silu(n2(h2)). */
typedef struct UResRec {
    UGnRec n1, n2;
    Tensor h, h2, h4;
} UResRec;

/* out (B,cout,H,W) = ResnetBlock2D(x (B,cin,H,W), semb = silu(temb) (B,temb)); out NULL: the
 * record only (a backward's recompute). */
static void resnet_fwd(Backend *be, const Unet *u, const UResnet *r, const Tensor *out,
                       const Tensor *x, const Tensor *semb, UResRec *rec) {
    size_t m = backend_mark(be);
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
    int G = u->cfg.groups;
    UResRec loc, *k = rec ? rec : &loc;
    k->h = alloc4(be, B, r->cin, H, W);
    gnorm(be, &k->h, x, &r->n1, G, u->cfg.eps, 1, rec ? &k->n1 : NULL);
    k->h2 = alloc4(be, B, r->cout, H, W);
    conv(be, &k->h2, &k->h, &r->c1);
    size_t mt = backend_mark(be);
    Tensor t = alloc2(be, B, r->cout);
    lin_fwd(be, &t, semb, &r->temb);
    Tensor h3 = view(&k->h2, 3, B, r->cout, H * W, 0);
    backend_unet_add(be, &h3, &h3, NULL, &t);
    backend_reset(be, mt);
    k->h4 = alloc4(be, B, r->cout, H, W);
    gnorm(be, &k->h4, &k->h2, &r->n2, G, u->cfg.eps, 1, rec ? &k->n2 : NULL);
    if (out) {
        conv(be, out, &k->h4, &r->c2); /* dropout is the identity at inference */
        Tensor o3 = view(out, 3, B, r->cout, H * W, 0);
        if (r->sc.w.ptr) {
            mt = backend_mark(be);
            Tensor s = rec ? alloc4(be, B, r->cout, H, W) : k->h2; /* h2: dead without rec */
            conv(be, &s, x, &r->sc);
            Tensor s3 = view(&s, 3, B, r->cout, H * W, 0);
            backend_unet_add(be, &o3, &o3, &s3, NULL);
            backend_reset(be, mt);
        } else {
            Tensor x3 = view(x, 3, B, r->cin, H * W, 0);
            backend_unet_add(be, &o3, &o3, &x3, NULL);
        }
    }
    if (!rec)
        backend_reset(be, m);
}

/* The attention of attn_fwd before its output projection, from the backend's arena: q, k, v
 * (the projections of x (B·Tq, C) and ctx (B·Tk, kv)), o (B·Tq, C) and the row log-sum-exps
 * lse that attention_backward takes: an attention's record. */
typedef struct UAttnCore {
    Tensor q, k, v, o, lse;
    Tensor q3, k3, v3, o3;
    BackendAttn ba;
    Tensor y0q, y0k, y0v, y0o; /* DoRA's y0 of the four projections (with keep) */
} UAttnCore;

static void attn_core(Backend *be, const UAttn *a, UAttnCore *c, const Tensor *x,
                      const Tensor *ctx, int64_t B, int64_t Tq, int64_t Tk, int keep) {
    int64_t C = x->shape[1];
    c->q = alloc2(be, B * Tq, C), c->k = alloc2(be, B * Tk, C), c->v = alloc2(be, B * Tk, C);
    Tensor none = {0};
    c->y0q = keep ? y0_slot(be, &a->q, B * Tq, C) : none;
    c->y0k = keep ? y0_slot(be, &a->k, B * Tk, C) : none;
    c->y0v = keep ? y0_slot(be, &a->v, B * Tk, C) : none;
    lin_fwd_y0(be, &c->q, x, &a->q, &c->y0q);
    lin_fwd_y0(be, &c->k, ctx, &a->k, &c->y0k);
    lin_fwd_y0(be, &c->v, ctx, &a->v, &c->y0v);
    c->q3 = view(&c->q, 3, B, Tq, C, 0), c->k3 = view(&c->k, 3, B, Tk, C, 0);
    c->v3 = view(&c->v, 3, B, Tk, C, 0);
    c->o = alloc2(be, B * Tq, C);
    c->o3 = view(&c->o, 3, B, Tq, C, 0);
    int64_t lshape[3] = {B, a->heads, Tq};
    c->lse = backend_alloc(be, DTYPE_F32, 3, lshape);
    c->ba = (BackendAttn){a->heads, 0.0f, 0, NULL};
    backend_attention_forward(be, &c->o3, &c->lse, &c->q3, &c->k3, &c->v3, &c->ba);
}

/* out (N,C) = attention(x (B·Tq, C), ctx (B·Tk, kv)) with its output projection, ADDED to
 * res (N,C) (out may alias res); rec (NULL: none) keeps the core. */
static void attn_fwd(Backend *be, const UAttn *a, const Tensor *out, const Tensor *res,
                     const Tensor *x, const Tensor *ctx, int64_t B, int64_t Tq, int64_t Tk,
                     UAttnCore *rec) {
    size_t m = backend_mark(be);
    int64_t C = x->shape[1];
    UAttnCore loc, *c = rec ? rec : &loc;
    attn_core(be, a, c, x, ctx, B, Tq, Tk, rec != NULL);
    c->y0o = rec ? y0_slot(be, &a->o, B * Tq, C) : (Tensor){0};
    size_t mp = backend_mark(be);
    Tensor p = rec ? alloc2(be, B * Tq, C) : c->q; /* q is dead without rec */
    lin_fwd_y0(be, &p, &c->o, &a->o, &c->y0o);
    Tensor p3 = view(&p, 3, 1, B * Tq, C, 0), r3 = view(res, 3, 1, B * Tq, C, 0);
    Tensor out3 = view(out, 3, 1, B * Tq, C, 0);
    backend_unet_add(be, &out3, &r3, &p3, NULL);
    backend_reset(be, rec ? mp : m);
}

/* A transformer block's internals: the token states after its self- and cross-attention
 * (s1, s2), its three LayerNorms' outputs and statistics, both attentions' cores, the
 * feed-forward's projection and GEGLU output. */
typedef struct UTBRec {
    Tensor s1, s2, ln[3], mean[3], rstd[3], proj, gg;
    UAttnCore a1, a2;
    Tensor y0f1, y0f2; /* DoRA's y0 of the feed-forward's layers */
} UTBRec;

/* out (B·S, C) = BasicTransformerBlock(in (B·S, C), ctx (B·T, D)); out may alias in without
 * rec; out NULL (with rec): the record only. */
static void tblock_fwd(Backend *be, const UTBlock *b, const Tensor *out, const Tensor *in,
                       const Tensor *ctx, int64_t B, int64_t S, int64_t T, UTBRec *rec) {
    size_t m = backend_mark(be);
    int64_t C = in->shape[1];
    UTBRec loc, *k = rec ? rec : &loc;
    for (int i = 0; i < 3; i++) { /* without rec: one of each, reused, and the state in place */
        if (rec || !i) {
            k->ln[i] = alloc2(be, B * S, C);
            k->mean[i] = backend_alloc(be, DTYPE_F32, 1, &(int64_t){B * S});
            k->rstd[i] = backend_alloc(be, DTYPE_F32, 1, &(int64_t){B * S});
        } else {
            k->ln[i] = k->ln[0], k->mean[i] = k->mean[0], k->rstd[i] = k->rstd[0];
        }
    }
    k->s1 = rec ? alloc2(be, B * S, C) : *out;
    k->s2 = rec ? alloc2(be, B * S, C) : *out;
    backend_layernorm_forward(be, &k->ln[0], &k->mean[0], &k->rstd[0], in, &b->ln1.w, &b->ln1.b,
                              1e-5f);
    attn_fwd(be, &b->a1, &k->s1, in, &k->ln[0], &k->ln[0], B, S, S, rec ? &k->a1 : NULL);
    backend_layernorm_forward(be, &k->ln[1], &k->mean[1], &k->rstd[1], &k->s1, &b->ln2.w,
                              &b->ln2.b, 1e-5f);
    attn_fwd(be, &b->a2, &k->s2, &k->s1, &k->ln[1], ctx, B, S, T, rec ? &k->a2 : NULL);
    backend_layernorm_forward(be, &k->ln[2], &k->mean[2], &k->rstd[2], &k->s2, &b->ln3.w,
                              &b->ln3.b, 1e-5f);
    k->proj = alloc2(be, B * S, 8 * C), k->gg = alloc2(be, B * S, 4 * C);
    Tensor none = {0};
    k->y0f1 = rec ? y0_slot(be, &b->ff1, B * S, 8 * C) : none;
    k->y0f2 = rec ? y0_slot(be, &b->ff2, B * S, C) : none;
    lin_fwd_y0(be, &k->proj, &k->ln[2], &b->ff1, &k->y0f1);
    backend_geglu_forward(be, BACKEND_ACT_GELU, &k->gg, &k->proj);
    if (out || k->y0f2.ptr) { /* without out: ff.net.2's y0 only */
        size_t mf = backend_mark(be);
        Tensor f = rec ? alloc2(be, B * S, C) : k->ln[2]; /* ln is dead without rec */
        lin_fwd_y0(be, &f, &k->gg, &b->ff2, &k->y0f2);
        Tensor f3 = view(&f, 3, 1, B * S, C, 0), s3 = view(&k->s2, 3, 1, B * S, C, 0);
        if (out) {
            Tensor o3 = view(out, 3, 1, B * S, C, 0);
            backend_unet_add(be, &o3, &s3, &f3, NULL);
        }
        backend_reset(be, mf);
    }
    if (!rec)
        backend_reset(be, m);
}

/* A transformer's input side: g = GroupNorm(x) and, with linear projections, its tokens tin
 * (proj_in's input). */
typedef struct UTInRec {
    UGnRec gn;
    Tensor g, tin;
} UTInRec;

/* tok (B·S, C) = proj_in(GroupNorm(x (B,C,H,W))) as tokens. */
static void tr_in(Backend *be, const Unet *u, const UTransformer *t, const Tensor *tok,
                  const Tensor *x, UTInRec *rec) {
    size_t m = backend_mark(be);
    int64_t B = x->shape[0], C = t->C, H = x->shape[2], W = x->shape[3], S = H * W;
    UTInRec loc, *k = rec ? rec : &loc;
    k->g = alloc4(be, B, C, H, W);
    gnorm(be, &k->g, x, &t->gn, u->cfg.groups, 1e-6f, 0, rec ? &k->gn : NULL);
    Tensor g3 = view(&k->g, 3, B, C, S, 0), tok3 = view(tok, 3, B, S, C, 0);
    k->tin = alloc2(be, B * S, C);
    if (u->cfg.linear_proj) {
        Tensor tin3 = view(&k->tin, 3, B, S, C, 0);
        backend_unet_transpose(be, &tin3, &g3);
        lin_fwd(be, tok, &k->tin, &t->pin_l);
    } else {
        Tensor p = view(&k->tin, 4, B, C, H, W), p3 = view(&k->tin, 3, B, C, S, 0);
        conv(be, &p, &k->g, &t->pin_c);
        backend_unet_transpose(be, &tok3, &p3);
    }
    if (!rec)
        backend_reset(be, m);
}

/* A transformer's output side with 1×1 convs: gt, proj_out's input (tok as (B,C,H,W)). */
typedef struct UTOutRec {
    Tensor gt;
} UTOutRec;

/* out (B,C,H,W) = proj_out(tok (B·S, C)) as a feature map + x; out NULL (with rec): the record
 * only. */
static void tr_out(Backend *be, const Unet *u, const UTransformer *t, const Tensor *out,
                   const Tensor *tok, const Tensor *x, UTOutRec *rec) {
    size_t m = backend_mark(be);
    int64_t B = x->shape[0], C = t->C, H = x->shape[2], W = x->shape[3], S = H * W;
    UTOutRec loc, *k = rec ? rec : &loc;
    Tensor tok3 = view(tok, 3, B, S, C, 0);
    if (!u->cfg.linear_proj) {
        k->gt = alloc4(be, B, C, H, W);
        Tensor gt3 = view(&k->gt, 3, B, C, S, 0);
        backend_unet_transpose(be, &gt3, &tok3);
    }
    if (out) {
        size_t mo = backend_mark(be);
        Tensor o3 = view(out, 3, B, C, S, 0), x3 = view(x, 3, B, C, S, 0);
        if (u->cfg.linear_proj) {
            Tensor p = alloc2(be, B * S, C), p3 = view(&p, 3, B, S, C, 0);
            lin_fwd(be, &p, tok, &t->pout_l);
            backend_unet_transpose(be, &o3, &p3);
        } else {
            conv(be, out, &k->gt, &t->pout_c);
        }
        backend_unet_add(be, &o3, &o3, &x3, NULL);
        backend_reset(be, mo);
    }
    if (!rec)
        backend_reset(be, m);
}

/* out (B,C,H,W) = Transformer2DModel(x (B,C,H,W), ehs (B,T,D)) + x (inference: no records,
 * the token state updated in place). */
static void transformer_fwd(Backend *be, const Unet *u, const UTransformer *t, const Tensor *out,
                            const Tensor *x, const Tensor *ehs) {
    size_t m = backend_mark(be);
    int64_t B = x->shape[0], S = x->shape[2] * x->shape[3], T = ehs->shape[1];
    Tensor tok = alloc2(be, B * S, t->C);
    tr_in(be, u, t, &tok, x, NULL);
    Tensor ctx = view(ehs, 2, B * T, ehs->shape[2], 0, 0);
    for (int i = 0; i < t->n; i++)
        tblock_fwd(be, &t->blocks[i], &tok, &tok, &ctx, B, S, T, NULL);
    tr_out(be, u, t, out, &tok, x, NULL);
    backend_reset(be, m);
}

/* semb (B,temb) = silu(time embedding (+ the text_time embedding)), every ResNet's input;
 * its temporaries stay in the arena (the caller's mark). Returns the host staging buffer,
 * to free after the backend has synced (uploads may read it until then). */
static float *time_embed(const Unet *u, Backend *be, const Tensor *semb_out,
                         const float *timesteps, const Tensor *text_embeds,
                         const float *time_ids) {
    const UnetConfig *c = &u->cfg;
    int64_t B = semb_out->shape[0];
    int64_t temb = c->time_embed_dim, C0 = c->block_out[0];
    /* time embedding: sinusoids on the host, the MLP on the device */
    float *hs = xmalloc(sizeof(float) * (size_t)(B * (C0 > 6 * c->add_time_dim
                                                          ? C0 : 6 * c->add_time_dim)));
    nn_timestep_embedding_forward(hs, timesteps, (int)B, (int)C0, c->flip_sin_to_cos,
                                  c->freq_shift, 1.0f, 10000.0f);
    Tensor tsin = alloc2(be, B, C0);
    Tensor hsv = tensor_view(hs, 2, tsin.shape);
    backend_upload(be, &tsin, &hsv);
    Tensor e1 = alloc2(be, B, temb), emb = alloc2(be, B, temb), semb = *semb_out;
    lin_fwd(be, &e1, &tsin, &u->t1);
    backend_act_forward(be, BACKEND_ACT_SILU, &e1, &e1);
    lin_fwd(be, &emb, &e1, &u->t2);
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
        lin_fwd(be, &e1, &cat2, &u->a1);
        backend_act_forward(be, BACKEND_ACT_SILU, &e1, &e1);
        lin_fwd(be, &semb, &e1, &u->a2);
        Tensor a3 = view(&emb, 3, 1, B, temb, 0), b3 = view(&semb, 3, 1, B, temb, 0);
        backend_unet_add(be, &a3, &a3, &b3, NULL);
    }
    backend_act_forward(be, BACKEND_ACT_SILU, &semb, &emb); /* every ResNet's silu(temb) */
    return hs;
}

/* The latent size at each level: the downsamplers' stride-2 convolutions with padding 1 give
 * ceil(size / 2). */
static void level_sizes(const Unet *u, int64_t H, int64_t W, int64_t *lh, int64_t *lw) {
    for (int i = 0; i < u->cfg.levels; i++) {
        lh[i] = H;
        lw[i] = W;
        if (u->down[i].has_sample) {
            H = (H + 1) / 2;
            W = (W + 1) / 2;
        }
    }
}

/* An up block's upsampler: nearest to the size of the skip connection it meets next, as
 * diffusers passes upsample_size when a latent side is not a multiple of 2^(levels−1) (exactly
 * 2× otherwise, the same pixels). */
static void upsample(Backend *be, const Tensor *out, const Tensor *inp) {
    if (out->shape[2] == 2 * inp->shape[2] && out->shape[3] == 2 * inp->shape[3])
        backend_upsample2x_forward(be, out, inp);
    else
        backend_upsample_nearest_forward(be, out, inp);
}

/* The arguments of unet_forward (out) and unet_backward (dout), checked; fn names the caller. */
static int check_args(const char *fn, const Unet *u, Backend *be, const Tensor *out,
                      const Tensor *x, const float *timesteps, const Tensor *ehs,
                      const Tensor *text_embeds, const float *time_ids, Err *err) {
    const UnetConfig *c = &u->cfg;
    if (be != u->be)
        return err_set(err, ERR_USAGE, "%s: the UNet's parameters live on %s, not on "
                       "%s", fn, backend_name(u->be), backend_name(be));
    if (!timesteps)
        return err_set(err, ERR_USAGE, "%s: timesteps are required (one per image)", fn);
    if (x->n_dims != 4 || x->shape[1] != c->in_channels)
        return err_set(err, ERR_USAGE, "%s: latents must be (B,%d,h,w)", fn,
                       c->in_channels);
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
    if (H < 1 || W < 1)
        return err_set(err, ERR_USAGE, "%s: latents %lldx%lld: height and width must be at "
                       "least 1", fn, (long long)H, (long long)W);
    if (out->n_dims != 4 || out->shape[0] != B || out->shape[1] != c->out_channels ||
        out->shape[2] != H || out->shape[3] != W)
        return err_set(err, ERR_USAGE, "%s: out must be (%lld,%d,%lld,%lld)", fn,
                       (long long)B, c->out_channels, (long long)H, (long long)W);
    if (ehs->n_dims != 3 || ehs->shape[0] != B || ehs->shape[2] != c->cross_dim)
        return err_set(err, ERR_USAGE, "%s: encoder_hidden_states must be "
                       "(%lld,T,%d)", fn, (long long)B, c->cross_dim);
    if (c->text_time) {
        int64_t E = c->add_in_dim - 6 * c->add_time_dim;
        if (!text_embeds || !time_ids || text_embeds->n_dims != 2 ||
            text_embeds->shape[0] != B || text_embeds->shape[1] != E)
            return err_set(err, ERR_USAGE, "%s: this UNet (addition_embed_type "
                           "text_time) needs text_embeds (%lld,%lld) and %lld·6 time_ids", fn,
                           (long long)B, (long long)E, (long long)B);
    }
    return 0;
}

int unet_forward(Unet *u, Backend *be, const Tensor *out, const Tensor *x, const float *timesteps,
                 const Tensor *ehs, const Tensor *text_embeds, const float *time_ids, Err *err) {
    const UnetConfig *c = &u->cfg;
    int L = c->levels;
    int rc0 = check_args("unet_forward", u, be, out, x, timesteps, ehs, text_embeds, time_ids,
                         err);
    if (rc0)
        return rc0;
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
    u->ad_gen++; /* the adapters may have changed since the last call */
    size_t m0 = backend_mark(be);
    int64_t C0 = c->block_out[0];
    Tensor semb = alloc2(be, B, c->time_embed_dim);
    float *hs = time_embed(u, be, &semb, timesteps, text_embeds, time_ids);
    /* the up path's two hidden-state buffers: the largest hidden state of the up path */
    int64_t hmax = 0, lh[UNET_MAX_LEVELS], lw[UNET_MAX_LEVELS];
    level_sizes(u, H, W, lh, lw);
    for (int i = 0; i < L; i++) {
        int64_t lvl = L - 1 - i, s = lh[lvl] * lw[lvl] * c->block_out[lvl];
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
            resnet_fwd(be, u, &lv->res[j], &r, &h, &semb, NULL);
            if (lv->n_attn) {
                Tensor a = alloc4(be, B, lv->res[j].cout, hh, ww);
                transformer_fwd(be, u, &lv->attn[j], &a, &r, ehs);
                r = a; /* the resnet's output stays below as dead space: small next to skips */
            }
            skips[ns++] = r;
            h = r;
        }
        if (lv->has_sample) {
            hh = (hh + 1) / 2; /* stride 2, padding 1: ceil */
            ww = (ww + 1) / 2;
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
    resnet_fwd(be, u, &u->mid.res[0], &m1, &h, &semb, NULL);
    transformer_fwd(be, u, &u->mid.attn[0], &m2, &m1, ehs);
    resnet_fwd(be, u, &u->mid.res[1], &m1, &m2, &semb, NULL);
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
            resnet_fwd(be, u, &lv->res[j], &r, &cat, &semb, NULL);
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
            int64_t nh = skips[ns - 1].shape[2], nw = skips[ns - 1].shape[3];
            Tensor up = alloc4(be, B, h.shape[1], nh, nw);
            upsample(be, &up, &h);
            hh = nh;
            ww = nw;
            cur = !cur;
            Tensor r = view(&hbuf[cur], 4, B, h.shape[1], hh, ww);
            conv(be, &r, &up, &lv->sample);
            backend_reset(be, m);
            h = r;
        }
    }
    {
        Tensor g = alloc4(be, B, C0, H, W);
        gnorm(be, &g, &h, &u->norm_out, c->groups, c->eps, 1, NULL);
        conv(be, out, &g, &u->conv_out);
    }
    backend_reset(be, m0);
    int rc = backend_sync(be, err);
    free(hs);
    return rc;
}

/* ---- adapters: LoRA and DoRA on linear and conv layers (issue 16) ---------------------------- */

struct UAdapter {
    char name[192];   /* the diffusers module name, "down_blocks.0.attentions.0....attn1.to_q" */
    char pname[3][224]; /* its tensors' names: name + ".lora_A.weight", ... */
    int r, in, out;   /* in: the layer's input channels */
    int k;            /* 0: a linear layer; else a k×k conv with the layer's stride and pad */
    int stride, pad;
    float s;          /* alpha / r */
    float alpha;
    int dora;
    const int *off;   /* the Unet's ad_off: the adapter is skipped (the reference model) */
    const Tensor *w;  /* the base layer's weight (OC, in) or (OC, in, k, k), any dtype */
    const Tensor *b;  /* its bias (OC), ptr NULL when it has none */
    Tensor A, B, m;   /* (r,in) or (r,in,k,k); (out,r) or (out,r,1,1); (out), DoRA only; F32 */
    Tensor dA, dB, dm;
    /* benchtune16: DoRA's ‖W + s·BA‖ computed once per unet_forward / backward call (the
     * policy's forward, its recompute and the backward use the same weights) */
    const unsigned *gen; /* the Unet's ad_gen */
    unsigned nrm_gen;    /* the generation nrm was computed in */
    Tensor nrm;          /* (out) F32, DoRA only */
    Tensor gm1, cb;      /* m − ‖·‖ (so g − 1 = gm1 / ‖·‖) and −b·(g − 1) (with a bias) */
    Tensor one, nb;      /* (out) ones, and −b in f32 (with a bias) */
};

/* DoRA's row norms ‖W + s·BA‖ of this call, with gm1 and cb (computed on their first use in
 * the call). */
static const Tensor *dora_nrm(Backend *be, UAdapter *a, const Tensor *w) {
    if (a->nrm_gen != *a->gen) {
        backend_dora_norm(be, &a->nrm, w, &a->B, &a->A, a->s);
        backend_scale(be, &a->gm1, &a->nrm, -1.0f);
        backend_add(be, &a->gm1, &a->gm1, &a->m);
        if (a->b->ptr) {
            Tensor c3 = view(&a->cb, 3, 1, a->out, 1, 0), n3 = view(&a->nb, 3, 1, a->out, 1, 0);
            backend_dora_scale(be, &c3, &n3, &a->gm1, &a->nrm, NULL);
        }
        a->nrm_gen = *a->gen;
    }
    return &a->nrm;
}

static Tensor like(Backend *be, const Tensor *t) {
    return backend_alloc(be, DTYPE_F32, t->n_dims, t->shape);
}

static Tensor zeros_like(Backend *be, const Tensor *t) {
    Tensor z = like(be, t);
    backend_zero(be, &z);
    return z;
}

static int ad_on(const UAdapter *a) { return a && !*a->off; }

/* An output (N,C) or (B,C,H,W) as the (P,C,Q) of the DoRA ops. */
static Tensor pcq(const Tensor *t) {
    if (t->n_dims == 2)
        return view(t, 3, t->shape[0], t->shape[1], 1, 0);
    return view(t, 3, t->shape[0], t->shape[1], t->shape[2] * t->shape[3], 0);
}

/* The adapter's first factor on inp: t = A x (a linear (N,r), or the conv (B,r,Ho,Wo)). */
static Tensor ad_down(Backend *be, const UAdapter *a, const Tensor *inp, const Tensor *out) {
    Tensor t;
    if (!a->k) {
        t = alloc2(be, inp->shape[0], a->r);
        backend_linear_forward(be, &t, inp, &a->A, NULL);
    } else {
        t = alloc4(be, out->shape[0], a->r, out->shape[2], out->shape[3]);
        backend_conv2d_forward(be, &t, inp, &a->A, NULL, a->stride, a->pad);
    }
    return t;
}

/* out += s · B (A inp), s applied to the rank-r A inp (not to an output-sized tensor; the
 * same values when s is a power of 2). B's product is added after its GEMM, not inside it:
 * accumulated onto out in the GEMM, the small delta lost precision to out's magnitude (the
 * finite differences of test_unet_grad's lora_gradients_match_finite_differences grew noisy). */
static void ad_delta(Backend *be, const UAdapter *a, const Tensor *out, const Tensor *inp) {
    size_t m = backend_mark(be);
    Tensor t = ad_down(be, a, inp, out), v = like(be, out);
    backend_scale(be, &t, &t, a->s);
    if (!a->k)
        backend_linear_forward(be, &v, &t, &a->B, NULL);
    else
        backend_conv2d_forward(be, &v, &t, &a->B, NULL, 1, 0);
    backend_add(be, out, out, &v);
    backend_reset(be, m);
}

/* The base layer: out = W inp (+ bias). */
static void base_fwd(Backend *be, const Tensor *out, const Tensor *inp, const Tensor *w,
                     const Tensor *b, int k, int stride, int pad) {
    if (!k)
        backend_linear_forward(be, out, inp, w, b);
    else
        backend_conv2d_forward(be, out, inp, w, b, stride, pad);
}

/* A layer with its adapter: LoRA W x + b + s·B A x; DoRA (m / ‖W + s·BA‖)(W x + s·B A x) + b. */
static void layer_fwd(Backend *be, const Tensor *out, const Tensor *inp, const Tensor *w,
                      const Tensor *b, int k, int stride, int pad, UAdapter *a,
                      const Tensor *y0) {
    const Tensor *bias = b->ptr ? b : NULL;
    if (!ad_on(a)) {
        base_fwd(be, out, inp, w, bias, k, stride, pad);
        return;
    }
    if (!a->dora) {
        base_fwd(be, out, inp, w, bias, k, stride, pad);
        ad_delta(be, a, out, inp);
        return;
    }
    /* PEFT's form: out = base(x) + (g − 1)·W x + g·s·B A x with g = m / ‖W + s·BA‖, the
     * base layer's own output (bias inside its GEMM) kept whole, so that a new adapter (m =
     * ‖W‖, B = 0: g − 1 = 0 and B A x = 0 exactly) gives the reference's output bit for bit,
     * as PEFT's does. Mathematically (m/‖·‖)(W x + s·B A x) + b. W x is base(x) − b: one base
     * GEMM, (g − 1)·W x = base(x)·(g − 1) − b·(g − 1), still exactly 0 for a new adapter. */
    const Tensor *nrm = dora_nrm(be, a, w);
    base_fwd(be, out, inp, w, bias, k, stride, pad);
    size_t mk = backend_mark(be);
    Tensor wx = like(be, out), d = zeros_like(be, out);
    ad_delta(be, a, &d, inp);
    Tensor o3 = pcq(out), w3 = pcq(&wx), d3 = pcq(&d);
    if (y0 && y0->ptr) { /* the record's y0 = W x + s·B A x = base(x) − b + s·B A x */
        Tensor y3 = pcq(y0);
        backend_dora_scale(be, &y3, &o3, &a->one, &a->one, bias ? &a->nb : NULL);
        backend_add(be, y0, y0, &d);
    }
    backend_dora_scale(be, &w3, &o3, &a->gm1, nrm, bias ? &a->cb : NULL);
    backend_dora_scale(be, &d3, &d3, &a->m, nrm, NULL);
    backend_add(be, out, out, &wx);
    backend_add(be, out, out, &d);
    backend_reset(be, mk);
}

/* The backward of layer_fwd with the base frozen: dinp (may be NULL) += the input gradient,
 * the adapter's dA, dB (and dm) += theirs; DoRA's y0 from the forward's record when y0 is one,
 * else recomputed. */
static void layer_bwd(Backend *be, const Tensor *dinp, const Tensor *dout, const Tensor *inp,
                      const Tensor *w, int k, int stride, int pad, UAdapter *a,
                      const Tensor *y0) {
    if (!ad_on(a)) {
        if (!dinp)
            return;
        if (!k)
            backend_linear_backward(be, dinp, NULL, NULL, dout, inp, w);
        else
            backend_conv2d_backward(be, dinp, NULL, NULL, dout, inp, w, stride, pad);
        return;
    }
    size_t m = backend_mark(be);
    const Tensor *dy = dout;
    Tensor dys;
    if (a->dora) {
        /* y0 = W x + s·B A x (no bias), out = g ⊙ y0 + b with g = m / ‖W + s·BA‖ detached:
         * dm += Σ dout·y0 / ‖·‖, dy0 = g ⊙ dout */
        const Tensor *nrm = dora_nrm(be, a, w);
        Tensor yr;
        if (!y0 || !y0->ptr) {
            yr = like(be, dout);
            base_fwd(be, &yr, inp, w, NULL, k, stride, pad);
            ad_delta(be, a, &yr, inp);
            y0 = &yr;
        }
        Tensor d3 = pcq(dout), y3 = pcq(y0);
        backend_dora_mag_backward(be, &a->dm, &d3, &y3, nrm);
        dys = like(be, dout);
        Tensor s3 = pcq(&dys);
        backend_dora_scale(be, &s3, &d3, &a->m, nrm, NULL);
        dy = &dys;
    }
    if (dinp) {
        if (!k)
            backend_linear_backward(be, dinp, NULL, NULL, dy, inp, w);
        else
            backend_conv2d_backward(be, dinp, NULL, NULL, dy, inp, w, stride, pad);
    }
    /* s on the rank-r side: dB += dyᵀ (s·t), dt = s·(dy B) */
    Tensor t = ad_down(be, a, inp, dout), dt = zeros_like(be, &t);
    backend_scale(be, &t, &t, a->s);
    if (!k)
        backend_linear_backward(be, &dt, &a->dB, NULL, dy, &t, &a->B);
    else
        backend_conv2d_backward(be, &dt, &a->dB, NULL, dy, &t, &a->B, 1, 0);
    backend_scale(be, &dt, &dt, a->s);
    if (!k)
        backend_linear_backward(be, dinp, &a->dA, NULL, &dt, inp, &a->A);
    else
        backend_conv2d_backward(be, dinp, &a->dA, NULL, &dt, inp, &a->A, a->stride, a->pad);
    backend_reset(be, m);
}

static void lin_fwd(Backend *be, const Tensor *out, const Tensor *inp, const ULinear *l) {
    layer_fwd(be, out, inp, &l->w, &l->b, 0, 1, 0, l->ad, NULL);
}

static Tensor y0_slot(Backend *be, const ULinear *l, int64_t N, int64_t C) {
    return ad_on(l->ad) && l->ad->dora ? alloc2(be, N, C) : (Tensor){0};
}

static void lin_fwd_y0(Backend *be, const Tensor *out, const Tensor *inp, const ULinear *l,
                       const Tensor *y0) {
    layer_fwd(be, out, inp, &l->w, &l->b, 0, 1, 0, l->ad, y0);
}

static void conv(Backend *be, const Tensor *out, const Tensor *inp, const UConv *c) {
    layer_fwd(be, out, inp, &c->w, &c->b, c->k, c->stride, c->pad, c->ad, NULL);
}

/* dinp (N,C, may be NULL) += dout·W (through the adapter too); the adapter's gradients +=;
 * y0: lin_fwd_y0's (NULL: none). */
static void lin_bwd(Backend *be, const Tensor *dinp, const Tensor *dout, const Tensor *inp,
                    const ULinear *l) {
    layer_bwd(be, dinp, dout, inp, &l->w, 0, 1, 0, l->ad, NULL);
}

static void lin_bwd_y0(Backend *be, const Tensor *dinp, const Tensor *dout, const Tensor *inp,
                       const ULinear *l, const Tensor *y0) {
    layer_bwd(be, dinp, dout, inp, &l->w, 0, 1, 0, l->ad, y0);
}

static void conv_bwd(Backend *be, const Tensor *dinp, const Tensor *dout, const Tensor *inp,
                     const UConv *c) {
    layer_bwd(be, dinp, dout, inp, &c->w, c->k, c->stride, c->pad, c->ad, NULL);
}

/* The walk over every adaptable layer, in load order: fn(ctx, name, l, c), one of l, c set. */
typedef void (*LayerFn)(void *ctx, const char *name, ULinear *l, UConv *c);

static void walk_resnet(UResnet *r, const char *pre, LayerFn fn, void *ctx) {
    char n[192];
    snprintf(n, sizeof n, "%s.conv1", pre);
    fn(ctx, n, NULL, &r->c1);
    snprintf(n, sizeof n, "%s.time_emb_proj", pre);
    fn(ctx, n, &r->temb, NULL);
    snprintf(n, sizeof n, "%s.conv2", pre);
    fn(ctx, n, NULL, &r->c2);
    if (r->sc.w.ptr) {
        snprintf(n, sizeof n, "%s.conv_shortcut", pre);
        fn(ctx, n, NULL, &r->sc);
    }
}

static void walk_transformer(const Unet *u, UTransformer *t, const char *pre, LayerFn fn,
                             void *ctx) {
    char n[192];
    snprintf(n, sizeof n, "%s.proj_in", pre);
    fn(ctx, n, u->cfg.linear_proj ? &t->pin_l : NULL, u->cfg.linear_proj ? NULL : &t->pin_c);
    for (int k = 0; k < t->n; k++) {
        UTBlock *b = &t->blocks[k];
        struct {
            const char *s;
            ULinear *l;
        } ls[] = {{"attn1.to_q", &b->a1.q},   {"attn1.to_k", &b->a1.k},
                  {"attn1.to_v", &b->a1.v},   {"attn1.to_out.0", &b->a1.o},
                  {"attn2.to_q", &b->a2.q},   {"attn2.to_k", &b->a2.k},
                  {"attn2.to_v", &b->a2.v},   {"attn2.to_out.0", &b->a2.o},
                  {"ff.net.0.proj", &b->ff1}, {"ff.net.2", &b->ff2}};
        for (size_t q = 0; q < ARRAY_LEN(ls); q++) {
            snprintf(n, sizeof n, "%s.transformer_blocks.%d.%s", pre, k, ls[q].s);
            fn(ctx, n, ls[q].l, NULL);
        }
    }
    snprintf(n, sizeof n, "%s.proj_out", pre);
    fn(ctx, n, u->cfg.linear_proj ? &t->pout_l : NULL, u->cfg.linear_proj ? NULL : &t->pout_c);
}

static void walk_layers(Unet *u, LayerFn fn, void *ctx) {
    char pre[160];
    fn(ctx, "time_embedding.linear_1", &u->t1, NULL);
    fn(ctx, "time_embedding.linear_2", &u->t2, NULL);
    if (u->cfg.text_time) {
        fn(ctx, "add_embedding.linear_1", &u->a1, NULL);
        fn(ctx, "add_embedding.linear_2", &u->a2, NULL);
    }
    fn(ctx, "conv_in", NULL, &u->conv_in);
    for (int part = 0; part < 3; part++) {
        int nl = part == 1 ? 1 : u->cfg.levels;
        for (int i = 0; i < nl; i++) {
            ULevel *lv = part == 0 ? &u->down[i] : part == 1 ? &u->mid : &u->up[i];
            const char *blk = part == 0 ? "down_blocks" : "up_blocks";
            for (int j = 0; j < lv->n_res; j++) {
                if (part == 1) {
                    /* the mid block: resnets.0, attentions.0, resnets.1 */
                    snprintf(pre, sizeof pre, "mid_block.resnets.%d", j);
                    walk_resnet(&lv->res[j], pre, fn, ctx);
                    if (j == 0) {
                        walk_transformer(u, &lv->attn[0], "mid_block.attentions.0", fn, ctx);
                    }
                    continue;
                }
                snprintf(pre, sizeof pre, "%s.%d.resnets.%d", blk, i, j);
                walk_resnet(&lv->res[j], pre, fn, ctx);
                if (lv->n_attn) {
                    snprintf(pre, sizeof pre, "%s.%d.attentions.%d", blk, i, j);
                    walk_transformer(u, &lv->attn[j], pre, fn, ctx);
                }
            }
            if (lv->has_sample) {
                snprintf(pre, sizeof pre, "%s.%d.%s.0.conv", blk, i,
                         part == 0 ? "downsamplers" : "upsamplers");
                fn(ctx, pre, NULL, &lv->sample);
            }
        }
    }
    fn(ctx, "conv_out", NULL, &u->conv_out);
}

typedef struct AdAdd {
    Unet *u;
    const char *const *targets;
    int n_targets, rank, dora, n;
    float alpha;
    Rng rng;
} AdAdd;

/* PEFT's rule: the name equals a target or ends with "." + target. */
static int ad_targeted(const AdAdd *aa, const char *name) {
    size_t nl = strlen(name);
    for (int i = 0; i < aa->n_targets; i++) {
        size_t tl = strlen(aa->targets[i]);
        if (tl && tl <= nl && !strcmp(name + nl - tl, aa->targets[i]) &&
            (tl == nl || name[nl - tl - 1] == '.'))
            return 1;
    }
    return 0;
}

static void ad_count(void *ctx, const char *name, ULinear *l, UConv *c) {
    AdAdd *aa = ctx;
    (void)l, (void)c;
    aa->n += ad_targeted(aa, name);
}

/* DoRA's constants: ones (out) and the bias negated in f32 (ones·1/1 − b, exactly), cb's room. */
static void dora_consts(Backend *be, UAdapter *a) {
    int64_t n = a->out;
    a->one = backend_tensor_new(be, DTYPE_F32, 1, &n);
    float *h = xmalloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        h[i] = 1.0f;
    Tensor hv = tensor_view(h, 1, &n);
    backend_upload(be, &a->one, &hv);
    backend_sync(be, NULL); /* the upload may read h until then */
    free(h);
    if (!a->b->ptr)
        return;
    a->cb = backend_tensor_new(be, DTYPE_F32, 1, &n);
    a->nb = backend_tensor_new(be, DTYPE_F32, 1, &n);
    Tensor n3 = view(&a->nb, 3, 1, n, 1, 0);
    backend_zero(be, &a->nb);
    backend_dora_scale(be, &n3, &n3, &a->one, &a->one, a->b);
    backend_scale(be, &a->nb, &a->nb, -1.0f);
}

static void ad_make(void *ctx, const char *name, ULinear *l, UConv *c) {
    AdAdd *aa = ctx;
    if (!ad_targeted(aa, name))
        return;
    Unet *u = aa->u;
    Backend *be = u->be;
    UAdapter *a = &u->ads[aa->n++];
    snprintf(a->name, sizeof a->name, "%s", name);
    static const char *const sfx[3] = {"lora_A.weight", "lora_B.weight",
                                       "lora_magnitude_vector"};
    for (int k = 0; k < 3; k++)
        snprintf(a->pname[k], sizeof a->pname[k], "%s.%s", name, sfx[k]);
    a->r = aa->rank;
    a->w = l ? &l->w : &c->w;
    a->b = l ? &l->b : &c->b;
    a->out = (int)a->w->shape[0];
    a->in = (int)a->w->shape[1];
    a->k = l ? 0 : c->k;
    a->stride = l ? 1 : c->stride;
    a->pad = l ? 0 : c->pad;
    a->alpha = aa->alpha;
    a->s = aa->alpha / (float)aa->rank;
    a->dora = aa->dora;
    a->off = &u->ad_off;
    int64_t as[4] = {a->r, a->in, a->k, a->k}, bs[4] = {a->out, a->r, 1, 1};
    int nd = a->k ? 4 : 2;
    a->A = backend_tensor_new(be, DTYPE_F32, nd, as);
    a->dA = backend_tensor_new(be, DTYPE_F32, nd, as);
    a->B = backend_tensor_new(be, DTYPE_F32, nd, bs);
    a->dB = backend_tensor_new(be, DTYPE_F32, nd, bs);
    /* PEFT: A kaiming-uniform with a = √5, i.e. U(−1/√fan_in, 1/√fan_in); B zero */
    size_t n = (size_t)tensor_numel(&a->A);
    int fan_in = a->in * (a->k ? a->k * a->k : 1);
    float *h = xmalloc(sizeof(float) * n), bound = 1.0f / sqrtf((float)fan_in);
    for (size_t i = 0; i < n; i++)
        h[i] = (2.0f * rng_uniform(&aa->rng) - 1.0f) * bound;
    Tensor hv = tensor_view(h, nd, as);
    backend_upload(be, &a->A, &hv);
    backend_sync(be, NULL); /* the upload may read h until then */
    free(h);
    backend_zero(be, &a->B);
    backend_zero(be, &a->dA);
    backend_zero(be, &a->dB);
    if (a->dora) {
        /* m = the row norm of W (B is zero) */
        a->m = backend_tensor_new(be, DTYPE_F32, 1, &(int64_t){a->out});
        a->dm = backend_tensor_new(be, DTYPE_F32, 1, &(int64_t){a->out});
        backend_dora_norm(be, &a->m, a->w, NULL, NULL, 0.0f);
        backend_zero(be, &a->dm);
        a->nrm = backend_tensor_new(be, DTYPE_F32, 1, &(int64_t){a->out});
        a->gm1 = backend_tensor_new(be, DTYPE_F32, 1, &(int64_t){a->out});
        dora_consts(be, a);
        a->gen = &u->ad_gen;
        a->nrm_gen = u->ad_gen - 1; /* not computed yet */
    }
    if (l)
        l->ad = a;
    else
        c->ad = a;
    if (l && (l == &u->t1 || l == &u->t2 || l == &u->a1 || l == &u->a2))
        u->temb_ad = 1;
}

int unet_adapter_add(Unet *u, const UnetAdapterConfig *cf, Err *err) {
    static const char *const dflt[] = UNET_ADAPTER_DEFAULT_TARGETS;
    if (u->ads)
        return err_set(err, ERR_USAGE, "unet_adapter_add: this UNet has adapters already");
    int rank = cf->rank ? cf->rank : 8;
    float alpha = cf->alpha != 0.0f ? cf->alpha : 32.0f;
    if (rank < 1 || !(alpha > 0) || cf->n_targets < 0 || (cf->n_targets && !cf->targets))
        return err_set(err, ERR_USAGE, "unet_adapter_add: rank must be >= 1 and alpha > 0 "
                       "(rank %d, alpha %g)", rank, (double)alpha);
    AdAdd aa;
    memset(&aa, 0, sizeof aa);
    aa.u = u, aa.rank = rank, aa.alpha = alpha, aa.dora = cf->dora != 0;
    aa.targets = cf->n_targets ? cf->targets : dflt;
    aa.n_targets = cf->n_targets ? cf->n_targets : (int)ARRAY_LEN(dflt);
    for (int i = 0; i < aa.n_targets; i++) {
        AdAdd one = aa;
        one.targets = &aa.targets[i];
        one.n_targets = 1;
        one.n = 0;
        walk_layers(u, ad_count, &one);
        if (!one.n)
            return err_set(err, ERR_USAGE, "unet_adapter_add: target \"%s\" names no linear "
                           "or conv layer of the UNet (a module name or its suffix after a "
                           "'.': to_q, to_k, to_v, to_out.0, ff.net.0.proj, ff.net.2, proj_in, "
                           "proj_out, conv1, conv2, conv_shortcut, time_emb_proj, "
                           "downsamplers.0.conv, upsamplers.0.conv, conv_in, conv_out, "
                           "time_embedding.linear_1, ...)", aa.targets[i]);
    }
    aa.n = 0;
    walk_layers(u, ad_count, &aa);
    u->ads = xcalloc((size_t)aa.n, sizeof *u->ads);
    u->n_ad = aa.n;
    aa.n = 0;
    rng_init(&aa.rng, cf->seed);
    walk_layers(u, ad_make, &aa);
    return backend_sync(u->be, err);
}

int unet_lora_add(Unet *u, int rank, float alpha, const char *const *targets, int n_targets,
                  uint64_t seed, Err *err) {
    if (rank < 1 || !(alpha > 0) || n_targets < 1)
        return err_set(err, ERR_USAGE, "unet_lora_add: rank must be >= 1, alpha > 0 and at "
                       "least one target module given");
    UnetAdapterConfig c = {rank, alpha, 0, targets, n_targets, seed};
    return unet_adapter_add(u, &c, err);
}

int unet_adapter_param_count(const Unet *u) {
    int n = 0;
    for (int i = 0; i < u->n_ad; i++)
        n += u->ads[i].dora ? 3 : 2;
    return n;
}

const char *unet_adapter_param(Unet *u, int i, Tensor *p, Tensor *g) {
    if (i < 0)
        return NULL;
    for (int j = 0; j < u->n_ad; j++) {
        UAdapter *a = &u->ads[j];
        int np = a->dora ? 3 : 2;
        if (i >= np) {
            i -= np;
            continue;
        }
        Tensor *ps[3] = {&a->A, &a->B, &a->m}, *gs[3] = {&a->dA, &a->dB, &a->dm};
        if (p)
            *p = *ps[i];
        if (g)
            *g = *gs[i];
        return a->pname[i];
    }
    return NULL;
}

int unet_lora_count(const Unet *u) { return u->n_ad; }

const char *unet_lora_get(Unet *u, int i, Tensor *A, Tensor *B, Tensor *dA, Tensor *dB) {
    if (i < 0 || i >= u->n_ad)
        return NULL;
    UAdapter *a = &u->ads[i];
    if (A)
        *A = a->A;
    if (B)
        *B = a->B;
    if (dA)
        *dA = a->dA;
    if (dB)
        *dB = a->dB;
    return a->name;
}

void unet_lora_zero_grad(Unet *u) {
    for (int i = 0; i < u->n_ad; i++) {
        backend_zero(u->be, &u->ads[i].dA);
        backend_zero(u->be, &u->ads[i].dB);
        if (u->ads[i].dora)
            backend_zero(u->be, &u->ads[i].dm);
    }
}

static float *down_f32(Backend *be, const Tensor *t) {
    float *h = xmalloc(sizeof(float) * (size_t)tensor_numel(t));
    Tensor v = tensor_view(h, t->n_dims, t->shape);
    backend_download(be, &v, t);
    return h;
}

int unet_adapter_export(Unet *u, LoraSet *out, Err *err) {
    lora_set_free(out);
    if (!u->n_ad)
        return 0;
    LoraSet s = {xcalloc((size_t)u->n_ad, sizeof(LoraEntry)), (size_t)u->n_ad};
    for (int i = 0; i < u->n_ad; i++) {
        UAdapter *a = &u->ads[i];
        LoraEntry *e = &s.e[i];
        snprintf(e->name, sizeof e->name, "%s", a->name);
        e->r = a->r;
        e->alpha = a->alpha;
        e->out = a->out, e->in = a->in, e->kh = a->k, e->kw = a->k;
        e->A = down_f32(u->be, &a->A);
        e->B = down_f32(u->be, &a->B);
        e->m = a->dora ? down_f32(u->be, &a->m) : NULL;
    }
    int rc = backend_sync(u->be, err);
    if (rc)
        lora_set_free(&s);
    *out = s;
    return rc;
}

int unet_adapter_import(Unet *u, const LoraSet *s, Err *err) {
    /* check everything first: nothing changes on a mismatch */
    for (size_t i = 0; i < s->n; i++) {
        const LoraEntry *e = &s->e[i];
        const UAdapter *a = NULL;
        for (int j = 0; j < u->n_ad && !a; j++)
            if (!strcmp(u->ads[j].name, e->name))
                a = &u->ads[j];
        if (!a)
            return err_set(err, ERR_FORMAT, "adapter entry \"%s\": this UNet has no adapter "
                           "on that module (%d adapted modules)", e->name, u->n_ad);
        if (e->r != a->r || e->out != a->out || e->in != a->in || e->kh != a->k ||
            e->kw != a->k)
            return err_set(err, ERR_FORMAT, "adapter entry \"%s\": rank %d, out %d, in %d, "
                           "kernel %dx%d; the live adapter has rank %d, out %d, in %d, kernel "
                           "%dx%d", e->name, e->r, e->out, e->in, e->kh, e->kw, a->r, a->out,
                           a->in, a->k, a->k);
        if (e->alpha != a->alpha)
            return err_set(err, ERR_FORMAT, "adapter entry \"%s\": alpha %g, the live adapter "
                           "has %g (the scale alpha/rank would differ)", e->name,
                           (double)e->alpha, (double)a->alpha);
        if (!e->A || !e->B || !e->m != !a->dora)
            return err_set(err, ERR_FORMAT, "adapter entry \"%s\": %s", e->name,
                           !e->A || !e->B ? "A or B missing"
                           : a->dora      ? "no magnitude vector (the live adapters are DoRA)"
                                          : "a magnitude vector (the live adapters are LoRA)");
    }
    for (int j = 0; j < u->n_ad; j++) {
        size_t i = 0;
        while (i < s->n && strcmp(s->e[i].name, u->ads[j].name))
            i++;
        if (i == s->n)
            return err_set(err, ERR_FORMAT, "adapter set: no entry for the live adapter on "
                           "\"%s\"", u->ads[j].name);
    }
    for (size_t i = 0; i < s->n; i++) {
        const LoraEntry *e = &s->e[i];
        UAdapter *a = NULL;
        for (int j = 0; j < u->n_ad && !a; j++)
            if (!strcmp(u->ads[j].name, e->name))
                a = &u->ads[j];
        Tensor v = tensor_view(e->A, a->A.n_dims, a->A.shape);
        backend_upload(u->be, &a->A, &v);
        v = tensor_view(e->B, a->B.n_dims, a->B.shape);
        backend_upload(u->be, &a->B, &v);
        if (a->dora) {
            v = tensor_view(e->m, 1, a->m.shape);
            backend_upload(u->be, &a->m, &v);
        }
    }
    return backend_sync(u->be, err);
}

static void unhook(void *ctx, const char *name, ULinear *l, UConv *c) {
    (void)ctx, (void)name;
    if (l)
        l->ad = NULL;
    else
        c->ad = NULL;
}

static void adapters_free(Unet *u) {
    if (u->ones.ptr)
        backend_tensor_free(u->be, &u->ones);
    u->n_ones = 0;
    if (!u->ads)
        return;
    walk_layers(u, unhook, NULL);
    for (int i = 0; i < u->n_ad; i++) {
        UAdapter *a = &u->ads[i];
        Tensor *ts[] = {&a->A,   &a->B,   &a->dA,  &a->dB, &a->m,
                        &a->dm,  &a->nrm, &a->gm1, &a->cb, &a->one, &a->nb};
        for (size_t k = 0; k < ARRAY_LEN(ts); k++)
            if (ts[k]->ptr)
                backend_tensor_free(u->be, ts[k]);
    }
    free(u->ads);
    u->ads = NULL;
    u->n_ad = 0;
    u->temb_ad = 0;
}

void unet_lora_remove(Unet *u) { adapters_free(u); }

void unet_lora_enable(Unet *u, int on) { u->ad_off = !on; }

/* ---- backward (issue 16): the blocks' records, kept or recomputed per block ------------------ */

/* dinp += the gradient of GroupNorm (then SiLU when act) at inp, for dout, from gnorm's
 * record. */
static void gnorm_bwd(Backend *be, const Tensor *dinp, const Tensor *dout, const Tensor *inp,
                      const UNorm *nm, int G, int act, const UGnRec *rec) {
    size_t m = backend_mark(be);
    const Tensor *dg = dout;
    Tensor t;
    if (act) {
        t = zeros_like(be, inp);
        backend_act_backward(be, BACKEND_ACT_SILU, &t, dout, &rec->g);
        dg = &t;
    }
    backend_groupnorm_backward(be, dinp, NULL, NULL, dg, inp, &nm->w, &rec->mean, &rec->rstd,
                               G);
    backend_reset(be, m);
}

/* out (B,C) = Σ_s inp (B,C,S) over s: a matmul with the Unet's ones per image. */
static void chan_sum(Backend *be, const Unet *u, const Tensor *out, const Tensor *inp) {
    int64_t B = inp->shape[0], C = inp->shape[1], S = inp->shape[2];
    for (int64_t b = 0; b < B; b++) {
        Tensor o = view(out, 2, C, 1, 0, 0), a = view(inp, 2, C, S, 0, 0);
        o.ptr = (float *)out->ptr + b * C;
        a.ptr = (float *)inp->ptr + b * C * S;
        Tensor one = view(&u->ones, 2, S, 1, 0, 0);
        backend_matmul_forward(be, &o, &a, &one);
    }
}

/* dx += the gradient of resnet_fwd at x for dout; semb is a constant here but for the
 * time_emb_proj's adapter and dsemb (B,temb, NULL: not wanted) += d/dsemb. rec: the forward's
 * record, or NULL: recomputed here. */
static void resnet_bwd(Backend *be, const Unet *u, const UResnet *r, const Tensor *dx,
                       const Tensor *dout, const Tensor *x, const Tensor *semb,
                       const Tensor *dsemb, const UResRec *rec) {
    size_t m = backend_mark(be);
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
    int G = u->cfg.groups;
    UResRec loc;
    if (!rec) {
        resnet_fwd(be, u, r, NULL, x, semb, &loc);
        rec = &loc;
    }
    Tensor d4 = zeros_like(be, &rec->h4);
    conv_bwd(be, &d4, dout, &rec->h4, &r->c2);
    Tensor d2 = zeros_like(be, &rec->h2);
    gnorm_bwd(be, &d2, &d4, &rec->h2, &r->n2, G, 1, &rec->n2);
    if (dsemb || ad_on(r->temb.ad)) {
        Tensor dt = alloc2(be, B, r->cout), d23 = view(&d2, 3, B, r->cout, H * W, 0);
        chan_sum(be, u, &dt, &d23);
        lin_bwd(be, dsemb, &dt, semb, &r->temb);
    }
    Tensor d1 = zeros_like(be, &rec->h);
    conv_bwd(be, &d1, &d2, &rec->h, &r->c1);
    gnorm_bwd(be, dx, &d1, x, &r->n1, G, 1, &rec->n1);
    if (r->sc.w.ptr) {
        conv_bwd(be, dx, dout, x, &r->sc);
    } else {
        Tensor dx3 = view(dx, 3, B, r->cin, H * W, 0), do3 = view(dout, 3, B, r->cin, H * W, 0);
        backend_unet_add(be, &dx3, &dx3, &do3, NULL);
    }
    backend_reset(be, m);
}

/* The backward of attn_fwd's attention and projection (not the residual) from its core c:
 * dx (B·Tq, C) +=, dctx (B·Tk, kv) += (NULL: not wanted; dctx may be dx for self-attention),
 * the adapters' gradients +=. */
static void attn_bwd(Backend *be, const UAttn *a, const Tensor *dx, const Tensor *dctx,
                     const Tensor *dout, const Tensor *x, const Tensor *ctx, int64_t B,
                     int64_t Tq, int64_t Tk, const UAttnCore *c) {
    size_t m = backend_mark(be);
    int64_t C = x->shape[1];
    Tensor dO = zeros_like(be, &c->o);
    lin_bwd_y0(be, &dO, dout, &c->o, &a->o, &c->y0o);
    Tensor dq = zeros_like(be, &c->q), dk = zeros_like(be, &c->k), dv = zeros_like(be, &c->v);
    Tensor dq3 = view(&dq, 3, B, Tq, C, 0), dk3 = view(&dk, 3, B, Tk, C, 0);
    Tensor dv3 = view(&dv, 3, B, Tk, C, 0), dO3 = view(&dO, 3, B, Tq, C, 0);
    backend_attention_backward(be, &dq3, &dk3, &dv3, &dO3, &c->q3, &c->k3, &c->v3, &c->o3,
                               &c->lse, &c->ba);
    lin_bwd_y0(be, dx, &dq, x, &a->q, &c->y0q);
    lin_bwd_y0(be, dctx, &dk, ctx, &a->k, &c->y0k);
    lin_bwd_y0(be, dctx, &dv, ctx, &a->v, &c->y0v);
    backend_reset(be, m);
}

/* din (B·S, C) += the gradient of tblock_fwd at in for dout (ctx a constant); rec: the
 * forward's record, or NULL: recomputed here. */
static void tblock_bwd(Backend *be, const UTBlock *b, const Tensor *din, const Tensor *dout,
                       const Tensor *in, const Tensor *ctx, int64_t B, int64_t S, int64_t T,
                       const UTBRec *rec) {
    size_t m = backend_mark(be);
    UTBRec loc;
    if (!rec) {
        tblock_fwd(be, b, NULL, in, ctx, B, S, T, &loc);
        rec = &loc;
    }
    /* the residual stream: dtok is the gradient at s2, then s1, then in */
    Tensor dtok = like(be, dout), dln = like(be, dout);
    backend_scale(be, &dtok, dout, 1.0f);
    /* feed-forward on s2 */
    size_t m2 = backend_mark(be);
    Tensor dgg = zeros_like(be, &rec->gg), dproj = zeros_like(be, &rec->proj);
    lin_bwd_y0(be, &dgg, &dtok, &rec->gg, &b->ff2, &rec->y0f2);
    backend_geglu_backward(be, BACKEND_ACT_GELU, &dproj, &dgg, &rec->proj);
    backend_zero(be, &dln);
    lin_bwd_y0(be, &dln, &dproj, &rec->ln[2], &b->ff1, &rec->y0f1);
    backend_reset(be, m2);
    backend_layernorm_backward(be, &dtok, NULL, NULL, &dln, &rec->s2, &b->ln3.w, &rec->mean[2],
                               &rec->rstd[2]);
    /* cross-attention on s1 */
    backend_zero(be, &dln);
    attn_bwd(be, &b->a2, &dln, NULL, &dtok, &rec->ln[1], ctx, B, S, T, &rec->a2);
    backend_layernorm_backward(be, &dtok, NULL, NULL, &dln, &rec->s1, &b->ln2.w, &rec->mean[1],
                               &rec->rstd[1]);
    /* self-attention on in */
    backend_zero(be, &dln);
    attn_bwd(be, &b->a1, &dln, &dln, &dtok, &rec->ln[0], &rec->ln[0], B, S, S, &rec->a1);
    backend_layernorm_backward(be, &dtok, NULL, NULL, &dln, in, &b->ln1.w, &rec->mean[0],
                               &rec->rstd[0]);
    backend_add(be, din, din, &dtok);
    backend_reset(be, m);
}

/* dx (B,C,H,W) += the gradient of tr_in at x for dtok (B·S, C); rec or NULL as above. */
static void tr_in_bwd(Backend *be, const Unet *u, const UTransformer *t, const Tensor *dx,
                      const Tensor *dtok, const Tensor *x, const UTInRec *rec) {
    size_t m = backend_mark(be);
    int64_t B = x->shape[0], C = t->C, H = x->shape[2], W = x->shape[3], S = H * W;
    UTInRec loc;
    if (!rec) {
        Tensor tok = like(be, dtok);
        tr_in(be, u, t, &tok, x, &loc);
        rec = &loc;
    }
    Tensor dg = zeros_like(be, &rec->g), dg3 = view(&dg, 3, B, C, S, 0);
    if (u->cfg.linear_proj) {
        Tensor tmp = zeros_like(be, dtok), tmp3 = view(&tmp, 3, B, S, C, 0);
        lin_bwd(be, &tmp, dtok, &rec->tin, &t->pin_l);
        backend_unet_transpose(be, &dg3, &tmp3);
    } else {
        Tensor dp = alloc4(be, B, C, H, W), dp3 = view(&dp, 3, B, C, S, 0);
        Tensor dtok3 = view(dtok, 3, B, S, C, 0);
        backend_unet_transpose(be, &dp3, &dtok3);
        conv_bwd(be, &dg, &dp, &rec->g, &t->pin_c);
    }
    gnorm_bwd(be, dx, &dg, x, &t->gn, u->cfg.groups, 0, &rec->gn);
    backend_reset(be, m);
}

/* dtok (B·S, C) += and dx (B,C,H,W) += the gradients of tr_out at tok and x for dout; rec or
 * NULL as above. */
static void tr_out_bwd(Backend *be, const Unet *u, const UTransformer *t, const Tensor *dtok,
                       const Tensor *dx, const Tensor *dout, const Tensor *tok, const Tensor *x,
                       const UTOutRec *rec) {
    size_t m = backend_mark(be);
    int64_t B = x->shape[0], C = t->C, H = x->shape[2], W = x->shape[3], S = H * W;
    Tensor dx3 = view(dx, 3, B, C, S, 0), do3 = view(dout, 3, B, C, S, 0);
    backend_unet_add(be, &dx3, &dx3, &do3, NULL);
    if (u->cfg.linear_proj) {
        Tensor tmp = alloc2(be, B * S, C), tmp3 = view(&tmp, 3, B, S, C, 0);
        backend_unet_transpose(be, &tmp3, &do3);
        lin_bwd(be, dtok, &tmp, tok, &t->pout_l);
    } else {
        UTOutRec loc;
        if (!rec) {
            tr_out(be, u, t, NULL, tok, x, &loc);
            rec = &loc;
        }
        Tensor dgt = zeros_like(be, &rec->gt), dgt3 = view(&dgt, 3, B, C, S, 0);
        conv_bwd(be, &dgt, dout, &rec->gt, &t->pout_c);
        Tensor d = alloc2(be, B * S, C), d3 = view(&d, 3, B, S, C, 0);
        backend_unet_transpose(be, &d3, &dgt3);
        backend_add(be, dtok, dtok, &d);
    }
    backend_reset(be, m);
}

/* dsemb (B,temb) is the gradient of time_embed's output: back through silu, the time
 * embedding's MLP (and SDXL's added embedding) into their adapters (the sinusoids and the
 * text embeds are constants). Recomputes the forward; the host buffers returned are freed
 * after the sync. */
static float *time_embed_bwd(const Unet *u, Backend *be, const Tensor *dsemb,
                             const float *timesteps, const Tensor *text_embeds,
                             const float *time_ids) {
    const UnetConfig *c = &u->cfg;
    int64_t B = dsemb->shape[0], temb = c->time_embed_dim, C0 = c->block_out[0];
    int64_t TD = 6 * c->add_time_dim;
    float *hs = xmalloc(sizeof(float) * (size_t)(B * (C0 + TD)));
    nn_timestep_embedding_forward(hs, timesteps, (int)B, (int)C0, c->flip_sin_to_cos,
                                  c->freq_shift, 1.0f, 10000.0f);
    Tensor tsin = alloc2(be, B, C0), hsv = tensor_view(hs, 2, tsin.shape);
    backend_upload(be, &tsin, &hsv);
    Tensor e1 = alloc2(be, B, temb), a1 = alloc2(be, B, temb), emb = alloc2(be, B, temb);
    lin_fwd(be, &e1, &tsin, &u->t1);
    backend_act_forward(be, BACKEND_ACT_SILU, &a1, &e1);
    lin_fwd(be, &emb, &a1, &u->t2);
    Tensor f1 = {0}, f1a = {0}, cat2 = {0};
    if (c->text_time) {
        int64_t E = c->add_in_dim - TD;
        nn_timestep_embedding_forward(hs + B * C0, time_ids, (int)(B * 6), c->add_time_dim,
                                      c->flip_sin_to_cos, c->freq_shift, 1.0f, 10000.0f);
        Tensor tt = alloc4(be, B, TD, 1, 1), cat = alloc4(be, B, c->add_in_dim, 1, 1);
        Tensor htt = tensor_view(hs + B * C0, 4, tt.shape);
        backend_upload(be, &tt, &htt);
        Tensor te = view(text_embeds, 4, B, E, 1, 1);
        backend_concat_forward(be, &cat, &te, &tt);
        cat2 = view(&cat, 2, B, c->add_in_dim, 0, 0);
        f1 = alloc2(be, B, temb), f1a = alloc2(be, B, temb);
        Tensor g = alloc2(be, B, temb);
        lin_fwd(be, &f1, &cat2, &u->a1);
        backend_act_forward(be, BACKEND_ACT_SILU, &f1a, &f1);
        lin_fwd(be, &g, &f1a, &u->a2);
        backend_add(be, &emb, &emb, &g);
    }
    Tensor demb = zeros_like(be, &emb);
    backend_act_backward(be, BACKEND_ACT_SILU, &demb, dsemb, &emb);
    Tensor da = zeros_like(be, &a1), de = zeros_like(be, &e1);
    lin_bwd(be, &da, &demb, &a1, &u->t2);
    backend_act_backward(be, BACKEND_ACT_SILU, &de, &da, &e1);
    lin_bwd(be, NULL, &de, &tsin, &u->t1);
    if (c->text_time) {
        backend_zero(be, &da);
        backend_zero(be, &de);
        lin_bwd(be, &da, &demb, &f1a, &u->a2);
        backend_act_backward(be, BACKEND_ACT_SILU, &de, &da, &f1);
        lin_bwd(be, NULL, &de, &cat2, &u->a1);
    }
    return hs;
}

/* The tape of unet_backward's forward: every block's input and output kept, and in keep mode
 * every block's record. A transformer is three kinds of step (its input side, each
 * transformer block, its output side) with the token states between them kept. */
enum { ST_CONV, ST_RES, ST_TIN, ST_TB, ST_TOUT, ST_CAT, ST_UP, ST_OUT };

typedef union URec {
    UResRec res;
    UTInRec tin;
    UTBRec tb;
    UTOutRec tout;
    struct {
        UGnRec gn;
        Tensor g;
    } out;
} URec;

typedef struct UStep {
    int kind;
    const void *p;      /* the block's parameters */
    int in, in2, out;   /* indices into the tape's tensors (in2: a concat's skip, or a
                         * transformer's input x) */
    int rec;            /* the record was kept (keep mode) */
} UStep;

typedef struct Tape {
    Backend *be;
    int keep;
    Tensor *act, *grad;
    int *share;         /* per act: the act whose gradient buffer it shares, or −1 */
    int n_act, cap_act;
    UStep *st;
    URec *rec;          /* per step */
    int n_st, cap_st;
} Tape;

static int tape_put(Tape *tp, Tensor t) {
    if (tp->n_act == tp->cap_act) {
        tp->cap_act = tp->cap_act ? 2 * tp->cap_act : 64;
        tp->act = xrealloc(tp->act, sizeof(Tensor) * (size_t)tp->cap_act);
        tp->share = xrealloc(tp->share, sizeof(int) * (size_t)tp->cap_act);
    }
    tp->act[tp->n_act] = t;
    tp->share[tp->n_act] = -1;
    return tp->n_act++;
}

static int tape_act(Tape *tp, int64_t B, int64_t C, int64_t H, int64_t W) {
    return tape_put(tp, alloc4(tp->be, B, C, H, W));
}

/* A step; its record to fill (in keep mode), else NULL. The pointer is valid until the next
 * tape_step. */
static URec *tape_step(Tape *tp, int kind, const void *p, int in, int in2, int out) {
    if (tp->n_st == tp->cap_st) {
        tp->cap_st = tp->cap_st ? 2 * tp->cap_st : 64;
        tp->st = xrealloc(tp->st, sizeof(UStep) * (size_t)tp->cap_st);
        tp->rec = xrealloc(tp->rec, sizeof(URec) * (size_t)tp->cap_st);
    }
    tp->st[tp->n_st] = (UStep){kind, p, in, in2, out, tp->keep};
    return tp->keep ? &tp->rec[tp->n_st++] : (tp->n_st++, NULL);
}

/* A transformer at tape index x onto the tape; returns its output's index. The token states'
 * gradients alternate between two buffers (each state's gradient comes from the one step that
 * reads it: ST_TB and ST_TOUT zero their input's before adding to it). */
static int tape_transformer(Tape *tp, const Unet *u, const UTransformer *t, int x,
                            const Tensor *ehs) {
    Backend *be = tp->be;
    int64_t B = tp->act[x].shape[0], C = t->C, H = tp->act[x].shape[2], W = tp->act[x].shape[3];
    int64_t S = H * W, T = ehs->shape[1];
    Tensor ctx = view(ehs, 2, B * T, ehs->shape[2], 0, 0);
    int tok = tape_put(tp, alloc2(be, B * S, C));
    URec *r = tape_step(tp, ST_TIN, t, x, -1, tok);
    tr_in(be, u, t, &tp->act[tok], &tp->act[x], r ? &r->tin : NULL);
    int prev = -1;
    for (int i = 0; i < t->n; i++) {
        int nx = tape_put(tp, alloc2(be, B * S, C));
        if (prev >= 0)
            tp->share[nx] = tp->share[prev] >= 0 ? tp->share[prev] : prev;
        r = tape_step(tp, ST_TB, &t->blocks[i], tok, x, nx);
        tblock_fwd(be, &t->blocks[i], &tp->act[nx], &tp->act[tok], &ctx, B, S, T,
                   r ? &r->tb : NULL);
        prev = tok;
        tok = nx;
    }
    int out = tape_act(tp, B, C, H, W);
    r = tape_step(tp, ST_TOUT, t, tok, x, out);
    tr_out(be, u, t, &tp->act[out], &tp->act[tok], &tp->act[x], r ? &r->tout : NULL);
    return out;
}

/* Bytes (f32, with the arena's alignment) of a ResNet's, a transformer's and norm_out's
 * records for B images of S pixels, and of the tape (the steps' outputs and their
 * gradients): keep_fits' estimate. */
static size_t tb(int64_t floats, int tensors) {
    return (size_t)floats * sizeof(float) + (size_t)tensors * 64;
}

typedef struct KeepEst {
    size_t rec, max_rec, tape;
} KeepEst;

static void est_add(KeepEst *e, size_t rec, size_t tape) {
    e->rec += rec;
    e->max_rec = rec > e->max_rec ? rec : e->max_rec;
    e->tape += tape;
}

static void est_res(KeepEst *e, const Unet *u, const UResnet *r, int64_t B, int64_t S) {
    est_add(e, tb(B * S * (2 * r->cin + 3 * r->cout) + 4 * B * u->cfg.groups, 9),
            tb(2 * B * S * (r->cin + r->cout), 4));
}

/* DoRA's y0 of a recorded linear layer, (N, C). */
static int64_t est_y0(const ULinear *l, int64_t N, int64_t C) {
    return ad_on(l->ad) && l->ad->dora ? N * C : 0;
}

static void est_tr(KeepEst *e, const UTransformer *t, int64_t B, int64_t S, int64_t T) {
    int64_t C = t->C, heads = t->n ? t->blocks[0].a1.heads : 1;
    est_add(e, tb(2 * B * S * C + 4 * B * 32, 4), tb(2 * B * S * C, 2));
    for (int i = 0; i < t->n; i++) {
        const UTBlock *b = &t->blocks[i];
        int64_t y0 = est_y0(&b->a1.q, B * S, C) + est_y0(&b->a1.k, B * S, C) +
                     est_y0(&b->a1.v, B * S, C) + est_y0(&b->a1.o, B * S, C) +
                     est_y0(&b->a2.q, B * S, C) + est_y0(&b->a2.k, B * T, C) +
                     est_y0(&b->a2.v, B * T, C) + est_y0(&b->a2.o, B * S, C) +
                     est_y0(&b->ff1, B * S, 8 * C) + est_y0(&b->ff2, B * S, C);
        est_add(e, tb(23 * B * S * C + 2 * B * T * C + 2 * B * heads * S + 6 * B * S + y0, 38),
                tb(B * S * C, 1));
    }
    est_add(e, tb(B * S * C, 1), tb(2 * B * S * C, 2));
}

/* Whether the records of every block fit the arena's free space beside what the per-block
 * checkpointing needs (the tape, the largest recompute and the backward's scratch, taken as
 * two more records). */
static int keep_fits(const Unet *u, Backend *be, int64_t B, int64_t H, int64_t W, int64_t T) {
    const UnetConfig *c = &u->cfg;
    int L = c->levels;
    int64_t lh[UNET_MAX_LEVELS] = {0}, lw[UNET_MAX_LEVELS] = {0};
    level_sizes(u, H, W, lh, lw);
    KeepEst e = {0, 0, tb(2 * B * H * W * c->block_out[0], 2)};
    for (int i = 0; i < L; i++) {
        const ULevel *lv = &u->down[i];
        for (int j = 0; j < lv->n_res; j++) {
            est_res(&e, u, &lv->res[j], B, lh[i] * lw[i]);
            if (lv->n_attn)
                est_tr(&e, &lv->attn[j], B, lh[i] * lw[i], T);
        }
    }
    est_res(&e, u, &u->mid.res[0], B, lh[L - 1] * lw[L - 1]);
    est_tr(&e, &u->mid.attn[0], B, lh[L - 1] * lw[L - 1], T);
    est_res(&e, u, &u->mid.res[1], B, lh[L - 1] * lw[L - 1]);
    for (int i = 0; i < L; i++) {
        const ULevel *lv = &u->up[i];
        int64_t S = lh[L - 1 - i] * lw[L - 1 - i];
        for (int j = 0; j < lv->n_res; j++) {
            est_res(&e, u, &lv->res[j], B, S);
            if (lv->n_attn)
                est_tr(&e, &lv->attn[j], B, S, T);
        }
    }
    est_add(&e, tb(2 * B * H * W * c->block_out[0], 4), 0);
    size_t need = e.rec + e.tape + 2 * e.max_rec, used = backend_mark(be);
    size_t size = backend_arena_size(be);
    return used <= size && need <= size - used;
}

/* The ones chan_sum needs (n of them), on the device; 0 or the sync's failure. */
static int ensure_ones(Unet *u, int64_t n, Err *err) {
    if (u->n_ones >= n)
        return 0;
    if (u->ones.ptr)
        backend_tensor_free(u->be, &u->ones);
    u->ones = backend_tensor_new(u->be, DTYPE_F32, 1, &n);
    float *h = xmalloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        h[i] = 1.0f;
    Tensor v = tensor_view(h, 1, &n);
    backend_upload(u->be, &u->ones, &v);
    int rc = backend_sync(u->be, err);
    free(h);
    u->n_ones = rc ? 0 : n;
    return rc;
}

/* unet_backward (dout given) and unet_forward_backward (out written, dout from dout_fn). */
static int fwd_bwd(Unet *u, Backend *be, const Tensor *out, const Tensor *dx,
                   const Tensor *dout_in,
                   int (*dout_fn)(void *, const Tensor *, const Tensor *, Err *), void *ctx,
                   const Tensor *x, const float *timesteps, const Tensor *ehs,
                   const Tensor *text_embeds, const float *time_ids, Err *err) {
    const char *fn = dout_fn ? "unet_forward_backward" : "unet_backward";
    int rc = check_args(fn, u, be, dout_fn ? out : dout_in, x, timesteps, ehs, text_embeds,
                        time_ids, err);
    if (rc)
        return rc;
    if (dx && (dx->n_dims != 4 || dx->dtype != DTYPE_F32 || dx->shape[0] != x->shape[0] ||
               dx->shape[1] != x->shape[1] || dx->shape[2] != x->shape[2] ||
               dx->shape[3] != x->shape[3]))
        return err_set(err, ERR_USAGE, "%s: dx must be f32 and shaped as x", fn);
    if (u->n_ad && (rc = ensure_ones(u, x->shape[2] * x->shape[3], err)))
        return rc;
    const Tensor *dout = dout_in;
    const UnetConfig *c = &u->cfg;
    int L = c->levels;
    int64_t B = x->shape[0], hh = x->shape[2], ww = x->shape[3], C0 = c->block_out[0];
    u->ad_gen++; /* the adapters may have changed since the last call */
    size_t m0 = backend_mark(be);
    Tape tp = {0};
    tp.be = be;
    tp.keep = u->keep == UNET_KEEP_ON ||
              (u->keep == UNET_KEEP_AUTO && keep_fits(u, be, B, hh, ww, ehs->shape[1]));
    u->kept = tp.keep;
    Tensor semb = alloc2(be, B, c->time_embed_dim);
    float *hs = time_embed(u, be, &semb, timesteps, text_embeds, time_ids);
    /* the forward, keeping every block's output (tape index 0 is x) */
    (void)tape_put(&tp, *x);
    int skips[UNET_MAX_LEVELS * 10], ns = 0;
    int h = tape_act(&tp, B, C0, hh, ww);
    conv(be, &tp.act[h], x, &u->conv_in);
    (void)tape_step(&tp, ST_CONV, &u->conv_in, 0, -1, h);
    skips[ns++] = h;
    URec *rr;
    for (int i = 0; i < L; i++) {
        const ULevel *lv = &u->down[i];
        for (int j = 0; j < lv->n_res; j++) {
            int r = tape_act(&tp, B, lv->res[j].cout, hh, ww);
            rr = tape_step(&tp, ST_RES, &lv->res[j], h, -1, r);
            resnet_fwd(be, u, &lv->res[j], &tp.act[r], &tp.act[h], &semb,
                       rr ? &rr->res : NULL);
            if (lv->n_attn)
                r = tape_transformer(&tp, u, &lv->attn[j], r, ehs);
            skips[ns++] = h = r;
        }
        if (lv->has_sample) {
            hh = (hh + 1) / 2;
            ww = (ww + 1) / 2;
            int d = tape_act(&tp, B, tp.act[h].shape[1], hh, ww);
            conv(be, &tp.act[d], &tp.act[h], &lv->sample);
            (void)tape_step(&tp, ST_CONV, &lv->sample, h, -1, d);
            skips[ns++] = h = d;
        }
    }
    int64_t top = c->block_out[L - 1];
    for (int k = 0; k < 3; k++) {
        if (k == 1) {
            h = tape_transformer(&tp, u, &u->mid.attn[0], h, ehs);
            continue;
        }
        int o = tape_act(&tp, B, top, hh, ww);
        rr = tape_step(&tp, ST_RES, &u->mid.res[k / 2], h, -1, o);
        resnet_fwd(be, u, &u->mid.res[k / 2], &tp.act[o], &tp.act[h], &semb,
                   rr ? &rr->res : NULL);
        h = o;
    }
    for (int i = 0; i < L; i++) {
        const ULevel *lv = &u->up[i];
        for (int j = 0; j < lv->n_res; j++) {
            int s = skips[--ns];
            int cat = tape_act(&tp, B, tp.act[h].shape[1] + tp.act[s].shape[1], hh, ww);
            backend_concat_forward(be, &tp.act[cat], &tp.act[h], &tp.act[s]);
            (void)tape_step(&tp, ST_CAT, NULL, h, s, cat);
            int r = tape_act(&tp, B, lv->res[j].cout, hh, ww);
            rr = tape_step(&tp, ST_RES, &lv->res[j], cat, -1, r);
            resnet_fwd(be, u, &lv->res[j], &tp.act[r], &tp.act[cat], &semb,
                       rr ? &rr->res : NULL);
            h = r;
            if (lv->n_attn)
                h = tape_transformer(&tp, u, &lv->attn[j], h, ehs);
        }
        if (lv->has_sample) {
            hh = tp.act[skips[ns - 1]].shape[2];
            ww = tp.act[skips[ns - 1]].shape[3];
            int up = tape_act(&tp, B, tp.act[h].shape[1], hh, ww);
            upsample(be, &tp.act[up], &tp.act[h]);
            (void)tape_step(&tp, ST_UP, NULL, h, -1, up);
            int r = tape_act(&tp, B, tp.act[h].shape[1], hh, ww);
            conv(be, &tp.act[r], &tp.act[up], &lv->sample);
            (void)tape_step(&tp, ST_CONV, &lv->sample, up, -1, r);
            h = r;
        }
    }
    tp.keep = tp.keep && dout_fn; /* without dout_fn, norm_out runs in the backward only */
    rr = tape_step(&tp, ST_OUT, NULL, h, -1, -1);
    Tensor dsemb = {0};
    if (u->temb_ad && !u->ad_off)
        dsemb = zeros_like(be, &semb);
    Tensor dbuf;
    if (dout_fn) {
        size_t m = backend_mark(be);
        Tensor g = alloc4(be, B, C0, hh, ww);
        gnorm(be, &g, &tp.act[h], &u->norm_out, c->groups, c->eps, 1,
              rr ? &rr->out.gn : NULL);
        conv(be, out, &g, &u->conv_out);
        if (rr)
            rr->out.g = g;
        else
            backend_reset(be, m);
        dbuf = zeros_like(be, out);
        dout = &dbuf;
        if ((rc = backend_sync(be, err)) || (rc = dout_fn(ctx, out, dout, err)))
            goto done;
    }
    /* gradients: one per kept tensor, zero, or a token state's shared buffer; x's is the
     * caller's dx (or none) */
    tp.grad = xcalloc((size_t)tp.n_act, sizeof(Tensor));
    for (int i = 1; i < tp.n_act; i++)
        tp.grad[i] = tp.share[i] >= 0 ? tp.grad[tp.share[i]] : zeros_like(be, &tp.act[i]);
    if (dx)
        tp.grad[0] = *dx;
    for (int k = tp.n_st - 1; k >= 0; k--) {
        const UStep *s = &tp.st[k];
        const URec *r = s->rec ? &tp.rec[k] : NULL;
        const Tensor *in = &tp.act[s->in];
        const Tensor *din = s->in == 0 && !dx ? NULL : &tp.grad[s->in];
        const Tensor *dO = s->out >= 0 ? &tp.grad[s->out] : dout;
        switch (s->kind) {
        case ST_CONV:
            conv_bwd(be, din, dO, in, s->p); /* din NULL: the adapter's gradients only */
            break;
        case ST_RES:
            resnet_bwd(be, u, s->p, din, dO, in, &semb, dsemb.ptr ? &dsemb : NULL,
                       r ? &r->res : NULL);
            break;
        case ST_TIN:
            tr_in_bwd(be, u, s->p, din, dO, in, r ? &r->tin : NULL);
            break;
        case ST_TB: {
            const Tensor *xt = &tp.act[s->in2];
            int64_t S = xt->shape[2] * xt->shape[3], T = ehs->shape[1];
            Tensor cx = view(ehs, 2, xt->shape[0] * T, ehs->shape[2], 0, 0);
            backend_zero(be, din);
            tblock_bwd(be, s->p, din, dO, in, &cx, xt->shape[0], S, T, r ? &r->tb : NULL);
            break;
        }
        case ST_TOUT:
            backend_zero(be, din);
            tr_out_bwd(be, u, s->p, din, &tp.grad[s->in2], dO, in, &tp.act[s->in2],
                       r ? &r->tout : NULL);
            break;
        case ST_CAT:
            backend_concat_backward(be, din, &tp.grad[s->in2], dO);
            break;
        case ST_UP:
            if (dO->shape[2] == 2 * din->shape[2] && dO->shape[3] == 2 * din->shape[3])
                backend_upsample2x_backward(be, din, dO);
            else
                backend_upsample_nearest_backward(be, din, dO);
            break;
        case ST_OUT: {
            size_t m = backend_mark(be);
            URec loc;
            if (!r) {
                loc.out.g = alloc4(be, B, C0, hh, ww);
                gnorm(be, &loc.out.g, in, &u->norm_out, c->groups, c->eps, 1, &loc.out.gn);
                r = &loc;
            }
            Tensor dg = zeros_like(be, &r->out.g);
            conv_bwd(be, &dg, dout, &r->out.g, &u->conv_out);
            gnorm_bwd(be, din, &dg, in, &u->norm_out, c->groups, 1, &r->out.gn);
            backend_reset(be, m);
            break;
        }
        }
    }
    float *hs2 = NULL;
    if (dsemb.ptr)
        hs2 = time_embed_bwd(u, be, &dsemb, timesteps, text_embeds, time_ids);
    rc = backend_sync(be, err);
    free(hs2);
done:
    backend_reset(be, m0);
    if (rc)
        (void)backend_sync(be, NULL); /* the pending failure was reported; clear what follows */
    else
        rc = backend_sync(be, err);
    free(hs);
    free(tp.act);
    free(tp.share);
    free(tp.grad);
    free(tp.st);
    free(tp.rec);
    return rc;
}

void unet_set_keep(Unet *u, UnetKeep keep) { u->keep = keep; }
int unet_kept(const Unet *u) { return u->kept; }

int unet_backward(Unet *u, Backend *be, const Tensor *dx, const Tensor *dout, const Tensor *x,
                  const float *timesteps, const Tensor *ehs, const Tensor *text_embeds,
                  const float *time_ids, Err *err) {
    return fwd_bwd(u, be, NULL, dx, dout, NULL, NULL, x, timesteps, ehs, text_embeds, time_ids,
                   err);
}

int unet_forward_backward(Unet *u, Backend *be, const Tensor *out, const Tensor *dx,
                          int (*dout_fn)(void *ctx, const Tensor *out, const Tensor *dout,
                                         Err *err),
                          void *ctx, const Tensor *x, const float *timesteps, const Tensor *ehs,
                          const Tensor *text_embeds, const float *time_ids, Err *err) {
    if (!dout_fn || !out)
        return err_set(err, ERR_USAGE, "unet_forward_backward: out and dout_fn are required");
    return fwd_bwd(u, be, out, dx, NULL, dout_fn, ctx, x, timesteps, ehs, text_embeds, time_ids,
                   err);
}
