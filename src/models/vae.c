/* vae — diffusers' AutoencoderKL on the Backend (vae.h; doc/models.md, "The VAE"). */
#include "vae.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fmt_json.h"
#include "nn_diffusion.h"
#include "sd_weights.h"

#define VAE_EPS 1e-6f /* every GroupNorm of the VAE (resnet_eps, norm_out) */

/* ---- config ----------------------------------------------------------------------------------- */

static int bad(Err *err, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(Err *err, const char *where, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(err, ERR_FORMAT, "%s: %s", where, msg);
}

/* KEY as an integer >= LO (DFLT when absent; -1 DFLT = required). */
static int cfg_int(json_t *o, const char *key, int dflt, int lo, int *out, const char *where,
                   Err *err) {
    json_t *v = json_object_get(o, key);
    if (dflt < 0 && (!v || json_is_null(v)))
        return bad(err, where, "VAE config has no \"%s\"; is this an AutoencoderKL "
                   "config.json?", key);
    return fmt_json_get_int(o, key, dflt, lo, 1 << 20, out, where, err);
}


/* Every entry of the array KEY (when present) must be the string WANT. */
static int cfg_types(json_t *o, const char *key, const char *want, int n, const char *where,
                     Err *err) {
    json_t *a = json_object_get(o, key);
    if (!a)
        return 0;
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        return bad(err, where, "\"%s\" must list %d block types, one per block_out_channels",
                   key, n);
    for (int i = 0; i < n; i++) {
        const char *t = json_string_value(json_array_get(a, (size_t)i));
        if (!t || strcmp(t, want))
            return bad(err, where, "%s[%d] is %s; easel's VAE has %s blocks only", key, i,
                       t ? t : "not a string", want);
    }
    return 0;
}

int vae_config_parse(const char *text, const char *where, VaeConfig *c, Err *err) {
    memset(c, 0, sizeof *c);
    if (!text)
        return bad(err, where, "no config.json beside the VAE weights");
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return bad(err, where, "config.json is not a JSON object (line %d: %s)", je.line,
                   je.text);
    }
    int rc = 0;
    json_t *bo = json_object_get(o, "block_out_channels");
    const char *cls = json_string_value(json_object_get(o, "_class_name"));
    const char *act = json_string_value(json_object_get(o, "act_fn"));
    if (cls && strcmp(cls, "AutoencoderKL"))
        rc = bad(err, where, "_class_name is %s; easel's VAE is diffusers' AutoencoderKL", cls);
    else if (act && strcmp(act, "silu"))
        rc = bad(err, where, "act_fn is %s; the VAE takes silu only", act);
    else if (!json_is_array(bo) || json_array_size(bo) < 1 ||
             json_array_size(bo) > VAE_MAX_LEVELS)
        rc = bad(err, where, "\"block_out_channels\" must be a list of 1 to %d widths",
                 VAE_MAX_LEVELS);
    if (!rc) {
        c->n_levels = (int)json_array_size(bo);
        rc = cfg_int(o, "in_channels", 3, 1, &c->in_channels, where, err) ||
             cfg_int(o, "out_channels", 3, 1, &c->out_channels, where, err) ||
             cfg_int(o, "latent_channels", 4, 1, &c->latent_channels, where, err) ||
             cfg_int(o, "layers_per_block", 1, 1, &c->layers_per_block, where, err) ||
             cfg_int(o, "norm_num_groups", 32, 1, &c->norm_groups, where, err) ||
             cfg_int(o, "sample_size", 32, 1, &c->sample_size, where, err) ||
             fmt_json_get_bool(o, "force_upcast", 1, &c->force_upcast, where, err) ||
             fmt_json_get_bool(o, "mid_block_add_attention", 1, &c->mid_attention, where, err) ||
             fmt_json_get_bool(o, "use_quant_conv", 1, &c->use_quant_conv, where, err) ||
             fmt_json_get_bool(o, "use_post_quant_conv", 1, &c->use_post_quant_conv, where, err) ||
             cfg_types(o, "down_block_types", "DownEncoderBlock2D", c->n_levels, where, err) ||
             cfg_types(o, "up_block_types", "UpDecoderBlock2D", c->n_levels, where, err)
                 ? ERR_FORMAT
                 : 0;
    }
    for (int i = 0; !rc && i < c->n_levels; i++) {
        json_t *v = json_array_get(bo, (size_t)i);
        int w = json_is_integer(v) ? (int)json_integer_value(v) : 0;
        if (w < 1 || w > 1 << 16)
            rc = bad(err, where, "block_out_channels[%d] must be a positive integer", i);
        else if (w % c->norm_groups)
            rc = bad(err, where, "block_out_channels[%d] = %d is not a multiple of "
                     "norm_num_groups %d", i, w, c->norm_groups);
        c->block_out[i] = w;
    }
    if (!rc) {
        json_t *sf = json_object_get(o, "scaling_factor"), *sh = json_object_get(o,
                                                                                 "shift_factor");
        if (sf && !json_is_number(sf))
            rc = bad(err, where, "\"scaling_factor\" must be a number");
        else if (sh && !json_is_null(sh) && !json_is_number(sh))
            rc = bad(err, where, "\"shift_factor\" must be a number or null");
        c->scaling_factor = sf ? (float)json_number_value(sf) : 0.18215f;
        if (!rc && !(c->scaling_factor > 0.0f))
            rc = bad(err, where, "\"scaling_factor\" must be above 0");
        c->has_shift = sh && json_is_number(sh);
        c->shift_factor = c->has_shift ? (float)json_number_value(sh) : 0.0f;
    }
    json_decref(o);
    return rc;
}

int vae_scale(const VaeConfig *c) { return 1 << (c->n_levels - 1); }

/* ---- the model -------------------------------------------------------------------------------- */

typedef struct Conv {
    Tensor w, b;
    int ic, oc, k;
} Conv;
typedef struct Norm {
    Tensor w, b;
} Norm;
typedef struct Lin {
    Tensor w, b;
} Lin;
typedef struct Res {
    Norm n1, n2;
    Conv c1, c2, sc;
    int has_sc;
} Res;
typedef struct Attn {
    Norm gn;
    Lin q, k, v, o;
    int c;
} Attn;
typedef struct Mid {
    Res r0, r1;
    Attn at;
    int has_attn;
} Mid;
typedef struct Level {
    Res *res;
    int n_res;
    Conv resample; /* up: after nearest 2×; down: stride 2 after (0,1,0,1) padding */
    int has_resample;
} Level;
typedef struct Coder {
    Conv conv_in, conv_out, quant; /* quant: post_quant_conv before / quant_conv after */
    int has_quant;
    Mid mid;
    Level lv[VAE_MAX_LEVELS];
    Norm norm_out;
    int loaded;
} Coder;

struct Vae {
    Backend *be;
    VaeConfig cfg;
    VaeOptions opt;
    int attn_matmul; /* the mid-block attention as matmul, softmax, matmul */
    Coder dec, enc;
    void **blocks; /* every weight's backend_malloc block */
    size_t n_blocks, cap_blocks;
};

typedef struct Loader {
    Vae *v;
    SdWeights *sw;
    Err *err;
} Loader;

/* Tensor NAME of SHAPE, read through sd_weights (shape and finiteness checked there) straight
 * into the options' weight dtype a bounded piece at a time (sd_weights_read); SCALE
 * multiplies it (the matmul attention's 1/√C folded into to_q). */
static int ld_scaled(Loader *L, const char *name, int nd, const int64_t *shape, float scale,
                     Tensor *t) {
    /* A linear layer stored as a 1×1 conv (OC,C,1,1), as the original SD checkpoints keep the
     * VAE's attention projections: the same values, read with that shape. */
    const StTensor *st = nd == 2 ? sd_weights_find(L->sw, name) : NULL;
    int64_t as_conv[4] = {nd == 2 ? shape[0] : 0, nd == 2 ? shape[1] : 0, 1, 1};
    int conv_form = st && st->n_dim == 4 && st->shape[0] == as_conv[0] &&
                    st->shape[1] == as_conv[1] && st->shape[2] == 1 && st->shape[3] == 1;
    Vae *v = L->v;
    DType dt = v->opt.weight_dtype;
    *t = backend_tensor_new(v->be, dt, nd, shape);
    if (v->n_blocks == v->cap_blocks) {
        v->cap_blocks = v->cap_blocks ? 2 * v->cap_blocks : 256;
        v->blocks = xrealloc(v->blocks, v->cap_blocks * sizeof *v->blocks);
    }
    v->blocks[v->n_blocks++] = t->ptr;
    int rc = sd_weights_read_device(L->sw, name, conv_form ? 4 : nd,
                                    conv_form ? as_conv : shape, scale, v->be, t, L->err);
    if (rc)
        return rc;
    if (backend_failed(v->be)) {
        Err e = {0};
        backend_sync(v->be, &e);
        return err_set(L->err, e.code, "%s (%s): %s", sd_weights_where(L->sw), name, e.msg);
    }
    return 0;
}

static int ld(Loader *L, const char *name, int nd, const int64_t *shape, Tensor *t) {
    return ld_scaled(L, name, nd, shape, 1.0f, t);
}

static int ld_conv(Loader *L, const char *prefix, int ic, int oc, int k, Conv *c) {
    char name[256];
    const int64_t ws[4] = {oc, ic, k, k}, bs[1] = {oc};
    c->ic = ic, c->oc = oc, c->k = k;
    snprintf(name, sizeof name, "%s.weight", prefix);
    int rc = ld(L, name, 4, ws, &c->w);
    snprintf(name, sizeof name, "%s.bias", prefix);
    return rc ? rc : ld(L, name, 1, bs, &c->b);
}

static int ld_norm(Loader *L, const char *prefix, int ch, Norm *nm) {
    char name[256];
    const int64_t s[1] = {ch};
    snprintf(name, sizeof name, "%s.weight", prefix);
    int rc = ld(L, name, 1, s, &nm->w);
    snprintf(name, sizeof name, "%s.bias", prefix);
    return rc ? rc : ld(L, name, 1, s, &nm->b);
}

static int ld_lin(Loader *L, const char *prefix, int ch, float scale, Lin *l) {
    char name[256];
    const int64_t ws[2] = {ch, ch}, bs[1] = {ch};
    snprintf(name, sizeof name, "%s.weight", prefix);
    int rc = ld_scaled(L, name, 2, ws, scale, &l->w);
    snprintf(name, sizeof name, "%s.bias", prefix);
    return rc ? rc : ld_scaled(L, name, 1, bs, scale, &l->b);
}

static int ld_res(Loader *L, const char *prefix, int in, int out, Res *r) {
    char p[256];
    int rc = 0;
#define SUB(s) (snprintf(p, sizeof p, "%s.%s", prefix, s), p)
    rc = rc ? rc : ld_norm(L, SUB("norm1"), in, &r->n1);
    rc = rc ? rc : ld_conv(L, SUB("conv1"), in, out, 3, &r->c1);
    rc = rc ? rc : ld_norm(L, SUB("norm2"), out, &r->n2);
    rc = rc ? rc : ld_conv(L, SUB("conv2"), out, out, 3, &r->c2);
    r->has_sc = in != out;
    if (r->has_sc)
        rc = rc ? rc : ld_conv(L, SUB("conv_shortcut"), in, out, 1, &r->sc);
#undef SUB
    return rc;
}

static int ld_mid(Loader *L, const char *prefix, int ch, Mid *m) {
    char p[256];
    int rc = 0;
#define SUB(s) (snprintf(p, sizeof p, "%s.%s", prefix, s), p)
    rc = rc ? rc : ld_res(L, SUB("resnets.0"), ch, ch, &m->r0);
    m->has_attn = L->v->cfg.mid_attention;
    if (m->has_attn) {
        float qs = L->v->attn_matmul ? 1.0f / sqrtf((float)ch) : 1.0f;
        m->at.c = ch;
        rc = rc ? rc : ld_norm(L, SUB("attentions.0.group_norm"), ch, &m->at.gn);
        rc = rc ? rc : ld_lin(L, SUB("attentions.0.to_q"), ch, qs, &m->at.q);
        rc = rc ? rc : ld_lin(L, SUB("attentions.0.to_k"), ch, 1.0f, &m->at.k);
        rc = rc ? rc : ld_lin(L, SUB("attentions.0.to_v"), ch, 1.0f, &m->at.v);
        rc = rc ? rc : ld_lin(L, SUB("attentions.0.to_out.0"), ch, 1.0f, &m->at.o);
    }
    rc = rc ? rc : ld_res(L, SUB("resnets.1"), ch, ch, &m->r1);
#undef SUB
    return rc;
}

static int ld_decoder(Loader *L) {
    const VaeConfig *c = &L->v->cfg;
    Coder *d = &L->v->dec;
    int top = c->block_out[c->n_levels - 1], rc = 0;
    d->has_quant = c->use_post_quant_conv;
    if (d->has_quant)
        rc = ld_conv(L, "post_quant_conv", c->latent_channels, c->latent_channels, 1, &d->quant);
    rc = rc ? rc : ld_conv(L, "decoder.conv_in", c->latent_channels, top, 3, &d->conv_in);
    rc = rc ? rc : ld_mid(L, "decoder.mid_block", top, &d->mid);
    int prev = top;
    for (int i = 0; !rc && i < c->n_levels; i++) {
        int out = c->block_out[c->n_levels - 1 - i];
        Level *lv = &d->lv[i];
        lv->n_res = c->layers_per_block + 1;
        lv->res = xcalloc((size_t)lv->n_res, sizeof *lv->res);
        for (int j = 0; !rc && j < lv->n_res; j++) {
            char p[128];
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            rc = ld_res(L, p, j ? out : prev, out, &lv->res[j]);
        }
        lv->has_resample = i < c->n_levels - 1;
        if (!rc && lv->has_resample) {
            char p[128];
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            rc = ld_conv(L, p, out, out, 3, &lv->resample);
        }
        prev = out;
    }
    rc = rc ? rc : ld_norm(L, "decoder.conv_norm_out", c->block_out[0], &d->norm_out);
    rc = rc ? rc : ld_conv(L, "decoder.conv_out", c->block_out[0], c->out_channels, 3,
                           &d->conv_out);
    d->loaded = !rc;
    return rc;
}

static int ld_encoder(Loader *L) {
    const VaeConfig *c = &L->v->cfg;
    Coder *e = &L->v->enc;
    int top = c->block_out[c->n_levels - 1], rc = 0;
    rc = ld_conv(L, "encoder.conv_in", c->in_channels, c->block_out[0], 3, &e->conv_in);
    int prev = c->block_out[0];
    for (int i = 0; !rc && i < c->n_levels; i++) {
        int out = c->block_out[i];
        Level *lv = &e->lv[i];
        lv->n_res = c->layers_per_block;
        lv->res = xcalloc((size_t)lv->n_res, sizeof *lv->res);
        for (int j = 0; !rc && j < lv->n_res; j++) {
            char p[128];
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            rc = ld_res(L, p, j ? out : prev, out, &lv->res[j]);
        }
        lv->has_resample = i < c->n_levels - 1;
        if (!rc && lv->has_resample) {
            char p[128];
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            rc = ld_conv(L, p, out, out, 3, &lv->resample);
        }
        prev = out;
    }
    rc = rc ? rc : ld_mid(L, "encoder.mid_block", top, &e->mid);
    rc = rc ? rc : ld_norm(L, "encoder.conv_norm_out", top, &e->norm_out);
    rc = rc ? rc : ld_conv(L, "encoder.conv_out", top, 2 * c->latent_channels, 3, &e->conv_out);
    e->has_quant = c->use_quant_conv;
    if (!rc && e->has_quant)
        rc = ld_conv(L, "quant_conv", 2 * c->latent_channels, 2 * c->latent_channels, 1,
                     &e->quant);
    e->loaded = !rc;
    return rc;
}

int vae_load(Backend *be, const char *path, const VaeOptions *opt, Vae **out, Err *err) {
    *out = NULL;
    VaeOptions o = opt ? *opt : (VaeOptions){0};
    if (!o.parts)
        o.parts = VAE_DECODER | VAE_ENCODER;
    if (o.weight_dtype != DTYPE_F32 && o.weight_dtype != DTYPE_F16 &&
        o.weight_dtype != DTYPE_BF16)
        return err_set(err, ERR_USAGE, "vae: weight dtype must be f32, f16 or bf16");
    SdWeights *sw = NULL;
    int rc = sd_weights_open(path, "vae", &sw, err);
    if (rc)
        return rc;
    Vae *v = xcalloc(1, sizeof *v);
    v->be = be;
    v->opt = o;
    char where[1024];
    snprintf(where, sizeof where, "%s (its config.json)", sd_weights_where(sw));
    rc = vae_config_parse(sd_weights_config_json(sw), where, &v->cfg, err);
    if (!rc) {
        int top = v->cfg.block_out[v->cfg.n_levels - 1];
        v->attn_matmul = o.attn == VAE_ATTN_MATMUL ||
                         (o.attn == VAE_ATTN_AUTO && backend_kind(be) == BACKEND_CUDA &&
                          top > 128);
        Loader L = {v, sw, err};
        if (o.parts & VAE_DECODER)
            rc = ld_decoder(&L);
        if (!rc && (o.parts & VAE_ENCODER))
            rc = ld_encoder(&L);
    }
    sd_weights_close(sw);
    if (rc) {
        vae_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

void vae_free(Vae *v) {
    if (!v)
        return;
    for (size_t i = 0; i < v->n_blocks; i++)
        backend_free(v->be, v->blocks[i]);
    free(v->blocks);
    for (int i = 0; i < VAE_MAX_LEVELS; i++)
        free(v->dec.lv[i].res), free(v->enc.lv[i].res);
    free(v);
}

const VaeConfig *vae_config(const Vae *v) { return &v->cfg; }

/* ---- forward ---------------------------------------------------------------------------------- */

/* An f32 activation block of SHAPE on the device (freed with act_free as soon as it is dead). */
static Tensor act_new(Vae *v, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    const int64_t s[4] = {d0, d1, d2, d3};
    return backend_tensor_new(v->be, DTYPE_F32, nd, s);
}
static void act_free(Vae *v, Tensor *t) {
    if (t->ptr)
        backend_tensor_free(v->be, t);
}
/* The same memory seen with another shape. */
static Tensor view(const Tensor *t, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    const int64_t s[4] = {d0, d1, d2, d3};
    Tensor r = tensor_view_dtype(t->ptr, t->dtype, nd, s);
    r.device = t->device;
    return r;
}
#define DIM(t, i) ((t)->shape[i])

static Tensor conv(Vae *v, const Tensor *x, const Conv *c, int stride, int pad) {
    int64_t Ho = (DIM(x, 2) + 2 * pad - c->k) / stride + 1;
    int64_t Wo = (DIM(x, 3) + 2 * pad - c->k) / stride + 1;
    Tensor y = act_new(v, 4, DIM(x, 0), c->oc, Ho, Wo);
    backend_conv2d_forward(v->be, &y, x, &c->w, &c->b, stride, pad);
    return y;
}

static Tensor gnorm(Vae *v, const Tensor *x, const Norm *nm, int silu) {
    Tensor y = act_new(v, 4, DIM(x, 0), DIM(x, 1), DIM(x, 2), DIM(x, 3));
    size_t mark = backend_mark(v->be);
    const int64_t s[2] = {DIM(x, 0), v->cfg.norm_groups};
    Tensor mean = backend_alloc(v->be, DTYPE_F32, 2, s);
    Tensor rstd = backend_alloc(v->be, DTYPE_F32, 2, s);
    backend_groupnorm_forward(v->be, &y, &mean, &rstd, x, &nm->w, &nm->b, v->cfg.norm_groups,
                              VAE_EPS);
    backend_reset(v->be, mark);
    if (silu)
        backend_act_forward(v->be, BACKEND_ACT_SILU, &y, &y);
    return y;
}

/* ResnetBlock2D: x + conv2(silu(norm2(conv1(silu(norm1(x)))))), x through conv_shortcut when the
 * widths differ (output_scale_factor 1, no time embedding). */
static Tensor resnet(Vae *v, const Tensor *x, const Res *r) {
    Tensor h = gnorm(v, x, &r->n1, 1);
    Tensor h2 = conv(v, &h, &r->c1, 1, 1);
    act_free(v, &h);
    h = gnorm(v, &h2, &r->n2, 1);
    act_free(v, &h2);
    Tensor out = conv(v, &h, &r->c2, 1, 1);
    act_free(v, &h);
    if (r->has_sc) {
        Tensor s = conv(v, x, &r->sc, 1, 0);
        backend_add(v->be, &out, &out, &s);
        act_free(v, &s);
    } else {
        backend_add(v->be, &out, &out, x);
    }
    return out;
}

/* The mid block's Attention: one head over the H·W tokens, group_norm first, residual added. */
static Tensor attention(Vae *v, const Tensor *x, const Attn *a) {
    Backend *be = v->be;
    int64_t B = DIM(x, 0), C = DIM(x, 1), T = DIM(x, 2) * DIM(x, 3);
    Tensor h = gnorm(v, x, &a->gn, 0);
    Tensor h3 = view(&h, 3, B, C, T, 1);
    Tensor t = act_new(v, 3, B, T, C, 1);
    backend_unet_transpose(be, &t, &h3);
    act_free(v, &h);
    Tensor t2 = view(&t, 2, B * T, C, 1, 1);
    Tensor q = act_new(v, 3, B, T, C, 1), k = act_new(v, 3, B, T, C, 1),
           val = act_new(v, 3, B, T, C, 1);
    Tensor q2 = view(&q, 2, B * T, C, 1, 1), k2 = view(&k, 2, B * T, C, 1, 1),
           v2 = view(&val, 2, B * T, C, 1, 1);
    backend_linear_forward(be, &q2, &t2, &a->q.w, &a->q.b);
    backend_linear_forward(be, &k2, &t2, &a->k.w, &a->k.b);
    backend_linear_forward(be, &v2, &t2, &a->v.w, &a->v.b);
    act_free(v, &t);
    Tensor o = act_new(v, 3, B, T, C, 1);
    if (!v->attn_matmul) {
        size_t mark = backend_mark(be);
        const int64_t ls[3] = {B, 1, T};
        Tensor lse = backend_alloc(be, DTYPE_F32, 3, ls);
        BackendAttn ba = {1, 0.0f, 0, NULL};
        backend_attention_forward(be, &o, &lse, &q, &k, &val, &ba);
        backend_reset(be, mark);
    } else { /* q already carries 1/√C (ld_mid) */
        Tensor kt = act_new(v, 3, B, C, T, 1);
        backend_unet_transpose(be, &kt, &k);
        Tensor s = act_new(v, 2, T, T, 1, 1), p = act_new(v, 2, T, T, 1, 1);
        for (int64_t b = 0; b < B; b++) {
            Tensor qb = view(&q, 2, T, C, 1, 1), ktb = view(&kt, 2, C, T, 1, 1),
                   vb = view(&val, 2, T, C, 1, 1), ob = view(&o, 2, T, C, 1, 1);
            qb.ptr = (float *)q.ptr + b * T * C, ktb.ptr = (float *)kt.ptr + b * T * C;
            vb.ptr = (float *)val.ptr + b * T * C, ob.ptr = (float *)o.ptr + b * T * C;
            backend_matmul_forward(be, &s, &qb, &ktb);
            backend_softmax_forward(be, &p, &s);
            backend_matmul_forward(be, &ob, &p, &vb);
        }
        act_free(v, &s), act_free(v, &p), act_free(v, &kt);
    }
    act_free(v, &q), act_free(v, &k), act_free(v, &val);
    Tensor o2 = view(&o, 2, B * T, C, 1, 1);
    Tensor p = act_new(v, 3, B, T, C, 1);
    Tensor p2 = view(&p, 2, B * T, C, 1, 1);
    backend_linear_forward(be, &p2, &o2, &a->o.w, &a->o.b);
    act_free(v, &o);
    Tensor back = act_new(v, 4, B, C, DIM(x, 2), DIM(x, 3));
    Tensor back3 = view(&back, 3, B, C, T, 1);
    backend_unet_transpose(be, &back3, &p);
    act_free(v, &p);
    backend_add(be, &back, &back, x);
    return back;
}

/* x = f(x): the old block is freed. */
static void step(Vae *v, Tensor *x, Tensor y) {
    act_free(v, x);
    *x = y;
}

static void mid_block(Vae *v, Tensor *x, const Mid *m) {
    step(v, x, resnet(v, x, &m->r0));
    if (m->has_attn)
        step(v, x, attention(v, x, &m->at));
    step(v, x, resnet(v, x, &m->r1));
}

static int check_coder(const Vae *v, const Coder *c, const char *what, int B, int h, int w,
                       Err *err) {
    if (!c->loaded)
        return err_set(err, ERR_USAGE, "vae: the %s was not loaded (VaeOptions.parts)", what);
    if (B < 1 || h < 1 || w < 1 || (int64_t)h * w > (int64_t)1 << 26)
        return err_set(err, ERR_USAGE, "vae: %s input of batch %d and %dx%d is not a size it "
                       "takes", what, B, w, h);
    (void)v;
    return 0;
}

int vae_decode(Vae *v, const float *z, int B, int h, int w, float *img, Err *err) {
    int rc = check_coder(v, &v->dec, "decoder", B, h, w, err);
    if (rc)
        return rc;
    const VaeConfig *c = &v->cfg;
    Backend *be = v->be;
    Tensor x = act_new(v, 4, B, c->latent_channels, h, w);
    Tensor zh = view(&x, 4, B, c->latent_channels, h, w);
    zh.ptr = (void *)z, zh.device = TENSOR_DEVICE_CPU;
    backend_upload(be, &x, &zh);
    const Coder *d = &v->dec;
    if (d->has_quant)
        step(v, &x, conv(v, &x, &d->quant, 1, 0));
    step(v, &x, conv(v, &x, &d->conv_in, 1, 1));
    mid_block(v, &x, &d->mid);
    for (int i = 0; i < c->n_levels; i++) {
        const Level *lv = &d->lv[i];
        for (int j = 0; j < lv->n_res; j++)
            step(v, &x, resnet(v, &x, &lv->res[j]));
        if (lv->has_resample) {
            Tensor u = act_new(v, 4, B, DIM(&x, 1), 2 * DIM(&x, 2), 2 * DIM(&x, 3));
            backend_upsample2x_forward(be, &u, &x);
            step(v, &x, u);
            step(v, &x, conv(v, &x, &lv->resample, 1, 1));
        }
    }
    step(v, &x, gnorm(v, &x, &d->norm_out, 1));
    step(v, &x, conv(v, &x, &d->conv_out, 1, 1));
    Tensor out = view(&x, 4, DIM(&x, 0), DIM(&x, 1), DIM(&x, 2), DIM(&x, 3));
    out.ptr = img, out.device = TENSOR_DEVICE_CPU;
    backend_download(be, &out, &x);
    act_free(v, &x);
    return backend_sync(be, err);
}

/* The encoder and quant_conv: moments (B, 2·latent_channels, H/s, W/s), host. */
static int encode_moments(Vae *v, const float *img, int B, int H, int W, float *mom, Err *err) {
    const VaeConfig *c = &v->cfg;
    Backend *be = v->be;
    Tensor x = act_new(v, 4, B, c->in_channels, H, W);
    Tensor xh = view(&x, 4, B, c->in_channels, H, W);
    xh.ptr = (void *)img, xh.device = TENSOR_DEVICE_CPU;
    backend_upload(be, &x, &xh);
    const Coder *e = &v->enc;
    step(v, &x, conv(v, &x, &e->conv_in, 1, 1));
    for (int i = 0; i < c->n_levels; i++) {
        const Level *lv = &e->lv[i];
        for (int j = 0; j < lv->n_res; j++)
            step(v, &x, resnet(v, &x, &lv->res[j]));
        if (lv->has_resample) { /* Downsample2D(padding=0): F.pad (0,1,0,1), conv stride 2 */
            Tensor p = act_new(v, 4, B, DIM(&x, 1), DIM(&x, 2) + 1, DIM(&x, 3) + 1);
            backend_pad2d_forward(be, &p, &x, 0, 0);
            step(v, &x, p);
            step(v, &x, conv(v, &x, &lv->resample, 2, 0));
        }
    }
    mid_block(v, &x, &e->mid);
    step(v, &x, gnorm(v, &x, &e->norm_out, 1));
    step(v, &x, conv(v, &x, &e->conv_out, 1, 1));
    if (e->has_quant)
        step(v, &x, conv(v, &x, &e->quant, 1, 0));
    Tensor out = view(&x, 4, DIM(&x, 0), DIM(&x, 1), DIM(&x, 2), DIM(&x, 3));
    out.ptr = mom, out.device = TENSOR_DEVICE_CPU;
    backend_download(be, &out, &x);
    act_free(v, &x);
    return backend_sync(be, err);
}

static void split_moments(const float *mom, int B, size_t half, float *mean, float *logvar);

int vae_encode(Vae *v, const float *img, int B, int H, int W, float *mean, float *logvar,
               Err *err) {
    int rc = check_coder(v, &v->enc, "encoder", B, H, W, err);
    if (rc)
        return rc;
    const VaeConfig *c = &v->cfg;
    int s = vae_scale(c);
    if (H % s || W % s)
        return err_set(err, ERR_USAGE, "vae: an image to encode must be a multiple of %d "
                       "pixels on each side, not %dx%d", s, W, H);
    size_t half = (size_t)c->latent_channels * (H / s) * (W / s);
    float *mom = xmalloc((size_t)B * 2 * half * sizeof(float));
    rc = encode_moments(v, img, B, H, W, mom, err);
    if (!rc)
        split_moments(mom, B, half, mean, logvar);
    free(mom);
    return rc;
}

/* ---- tiled decode (diffusers' AutoencoderKL.tiled_decode) ------------------------------------- */

typedef struct Tile {
    float *px; /* (B, C, th, tw) */
    int th, tw;
} Tile;

/* b's first rows (vertical) or columns blended with a's last ones, in place, as blend_v/blend_h:
 * b = a·(1 − y/e) + b·(y/e) with the weights rounded to f32 as torch rounds a Python scalar. */
static void blend(const Tile *a, Tile *b, int BC, int extent, int vertical) {
    int e = vertical ? (a->th < b->th ? a->th : b->th) : (a->tw < b->tw ? a->tw : b->tw);
    if (extent < e)
        e = extent;
    for (int p = 0; p < BC; p++)
        for (int y = 0; y < (vertical ? e : b->th); y++)
            for (int x = 0; x < (vertical ? b->tw : e); x++) {
                int i = vertical ? y : x;
                float wa = (float)(1.0 - (double)i / e), wb = (float)((double)i / e);
                const float *ap = vertical
                                      ? &a->px[((size_t)p * a->th + (a->th - e + y)) * a->tw + x]
                                      : &a->px[((size_t)p * a->th + y) * a->tw + (a->tw - e + x)];
                float *bp = &b->px[((size_t)p * b->th + y) * b->tw + x];
                float s = *ap * wa, t = *bp * wb;
                *bp = s + t;
            }
}

/* What runs on one tile: decode (latents → pixels) or the encoder's moments (pixels →
 * latents, before the split and clamp: diffusers blends the moments). */
typedef int (*TileFn)(Vae *v, const float *in, int B, int h, int w, float *out, Err *err);

/* diffusers' tiled_decode / _tiled_encode, one loop: input tiles of TIN every ⌊0.75·TIN⌋,
 * output tiles NUM/DEN times the size, blended over ⌊0.25·TOUT⌋ and cut to TOUT − that. */
static int run_tiled(Vae *v, TileFn fn, const float *in, int B, int Cin, int h, int w, int Tin,
                     int Cout, int num, int den, float *out, Err *err) {
    int Tout = Tin * num / den;
    int overlap = (int)(Tin * (1 - 0.25)), extent = (int)(Tout * 0.25), limit = Tout - extent;
    if (overlap < 1)
        overlap = 1;
    int rows = (h + overlap - 1) / overlap, cols = (w + overlap - 1) / overlap, BC = B * Cout;
    Tile *tiles = xcalloc((size_t)rows * cols, sizeof *tiles);
    float *part = xmalloc((size_t)B * Cin * Tin * Tin * sizeof(float));
    int rc = 0;
    for (int r = 0; !rc && r < rows; r++)
        for (int q = 0; !rc && q < cols; q++) {
            int i = r * overlap, j = q * overlap;
            int th = h - i < Tin ? h - i : Tin, tw = w - j < Tin ? w - j : Tin;
            for (int p = 0; p < B * Cin; p++)
                for (int y = 0; y < th; y++)
                    memcpy(&part[((size_t)p * th + y) * tw], &in[((size_t)p * h + i + y) * w + j],
                           (size_t)tw * sizeof(float));
            Tile *t = &tiles[r * cols + q];
            t->th = th * num / den, t->tw = tw * num / den;
            t->px = xmalloc((size_t)BC * t->th * t->tw * sizeof(float));
            rc = fn(v, part, B, th, tw, t->px, err);
        }
    free(part);
    int H = h * num / den, W = w * num / den, y0 = 0;
    for (int r = 0; !rc && r < rows; r++) {
        int x0 = 0, rh = 0;
        for (int q = 0; q < cols; q++) {
            Tile *t = &tiles[r * cols + q];
            if (r > 0)
                blend(&tiles[(r - 1) * cols + q], t, BC, extent, 1);
            if (q > 0)
                blend(&tiles[r * cols + q - 1], t, BC, extent, 0);
            int ch = t->th < limit ? t->th : limit, cw = t->tw < limit ? t->tw : limit;
            for (int p = 0; p < BC && y0 + ch <= H && x0 + cw <= W; p++)
                for (int y = 0; y < ch; y++)
                    memcpy(&out[((size_t)p * H + y0 + y) * W + x0],
                           &t->px[((size_t)p * t->th + y) * t->tw], (size_t)cw * sizeof(float));
            x0 += cw;
            rh = ch;
        }
        if (x0 != W)
            rc = err_set(err, ERR_USAGE, "vae: tiles of %d cover %d of %d columns", Tin, x0, W);
        y0 += rh;
    }
    if (!rc && y0 != H)
        rc = err_set(err, ERR_USAGE, "vae: tiles of %d cover %d of %d rows", Tin, y0, H);
    for (int i = 0; i < rows * cols; i++)
        free(tiles[i].px);
    free(tiles);
    return rc;
}

int vae_decode_tiled(Vae *v, const float *z, int B, int h, int w, int tile, float *img,
                     Err *err) {
    const VaeConfig *c = &v->cfg;
    int s = vae_scale(c);
    if (tile <= 0)
        tile = c->sample_size / s;
    if (tile < 1)
        return err_set(err, ERR_USAGE, "vae: a latent tile must be at least 1 wide");
    if (h <= tile && w <= tile)
        return vae_decode(v, z, B, h, w, img, err);
    int rc = check_coder(v, &v->dec, "decoder", B, h, w, err);
    return rc ? rc
              : run_tiled(v, vae_decode, z, B, c->latent_channels, h, w, tile, c->out_channels,
                          s, 1, img, err);
}

/* mean and logvar from the moments (B, 2L, h, w): torch.chunk, logvar clamped to [-30, 20]. */
static void split_moments(const float *mom, int B, size_t half, float *mean, float *logvar) {
    for (int b = 0; b < B; b++) {
        memcpy(mean + b * half, mom + (size_t)b * 2 * half, half * sizeof(float));
        for (size_t i = 0; i < half; i++) {
            float lv = mom[(size_t)b * 2 * half + half + i];
            logvar[b * half + i] = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
        }
    }
}

int vae_encode_tiled(Vae *v, const float *img, int B, int H, int W, int tile, float *mean,
                     float *logvar, Err *err) {
    const VaeConfig *c = &v->cfg;
    int s = vae_scale(c);
    if (tile <= 0)
        tile = c->sample_size;
    if (H <= tile && W <= tile)
        return vae_encode(v, img, B, H, W, mean, logvar, err);
    int rc = check_coder(v, &v->enc, "encoder", B, H, W, err);
    if (!rc && (H % s || W % s || tile % s || (int)(tile * 0.75) % s))
        rc = err_set(err, ERR_USAGE, "vae: tiled encode needs the image (%dx%d), the tile (%d) "
                     "and three quarters of the tile in multiples of %d pixels", W, H, tile, s);
    if (rc)
        return rc;
    size_t half = (size_t)c->latent_channels * (H / s) * (W / s);
    float *mom = xmalloc((size_t)B * 2 * half * sizeof(float));
    rc = run_tiled(v, encode_moments, img, B, c->in_channels, H, W, tile,
                   2 * c->latent_channels, 1, s, mom, err);
    if (!rc)
        split_moments(mom, B, half, mean, logvar);
    free(mom);
    return rc;
}

/* ---- memory: what a decode takes, and the tile that fits -------------------------------------- */

typedef struct Need {
    BackendKind kind;
    size_t live, peak, arena;
} Need;

static void need_new(Need *n, size_t floats) {
    n->live += floats * sizeof(float);
    if (n->live > n->peak)
        n->peak = n->live;
}
static void need_free(Need *n, size_t floats) { n->live -= floats * sizeof(float); }

static size_t need_conv(Need *n, int B, int C, int OC, int H, int W, int k, int stride,
                        int pad) {
    ConvShape cs = {B, C, H, W, OC, k, stride, pad};
    int Ho = nn_conv2d_out_h(&cs), Wo = nn_conv2d_out_w(&cs);
    size_t scratch = n->kind == BACKEND_CUDA ? (size_t)C * k * k * Ho * Wo
                                             : nn_conv2d_scratch_floats(&cs);
    scratch = scratch * sizeof(float) + 4096;
    if (scratch > n->arena)
        n->arena = scratch;
    size_t out = (size_t)B * OC * Ho * Wo;
    need_new(n, out);
    return out;
}

/* resnet(): x live; gn h, conv h2, free h, gn h, free h2, conv out, free h, shortcut s. */
static void need_res(Need *n, int B, int in, int out, int H, int W) {
    size_t a = (size_t)B * in * H * W, b = (size_t)B * out * H * W;
    need_new(n, a);
    need_conv(n, B, in, out, H, W, 3, 1, 1);
    need_free(n, a);
    need_new(n, b);
    need_free(n, b);
    need_conv(n, B, out, out, H, W, 3, 1, 1);
    need_free(n, b);
    if (in != out) {
        need_conv(n, B, in, out, H, W, 1, 1, 0);
        need_free(n, b);
    }
    need_free(n, a); /* the caller's x, freed after */
}

static void need_attn(Need *n, const Vae *v, int B, int C, int H, int W) {
    size_t x = (size_t)B * C * H * W, T = (size_t)H * W;
    need_new(n, x), need_new(n, x); /* gn, transpose */
    need_free(n, x);
    need_new(n, 3 * x); /* q, k, v */
    need_free(n, x);
    need_new(n, x); /* o */
    if (v->attn_matmul) {
        need_new(n, x + 2 * T * T);
        need_free(n, x + 2 * T * T);
    }
    need_free(n, 3 * x);
    need_new(n, x); /* to_out */
    need_free(n, x); /* o */
    need_new(n, x); /* back */
    need_free(n, 2 * x); /* to_out, and the caller's x */
}

void vae_decode_need(const Vae *v, int B, int h, int w, size_t *arena_bytes,
                     size_t *tensor_bytes) {
    const VaeConfig *c = &v->cfg;
    Need n = {backend_kind(v->be), 0, 0, 0};
    int top = c->block_out[c->n_levels - 1], H = h, W = w;
    size_t x = (size_t)B * c->latent_channels * h * w;
    need_new(&n, x);
    if (c->use_post_quant_conv) {
        need_conv(&n, B, c->latent_channels, c->latent_channels, H, W, 1, 1, 0);
        need_free(&n, x);
    }
    need_conv(&n, B, c->latent_channels, top, H, W, 3, 1, 1);
    need_free(&n, x);
    need_res(&n, B, top, top, H, W);
    if (c->mid_attention)
        need_attn(&n, v, B, top, H, W);
    need_res(&n, B, top, top, H, W);
    int prev = top;
    for (int i = 0; i < c->n_levels; i++) {
        int out = c->block_out[c->n_levels - 1 - i];
        for (int j = 0; j <= c->layers_per_block; j++)
            need_res(&n, B, j ? out : prev, out, H, W);
        if (i < c->n_levels - 1) { /* x (a) live: upsample, free x, conv, free u */
            size_t a = (size_t)B * out * H * W;
            need_new(&n, 4 * a);
            need_free(&n, a);
            H *= 2, W *= 2;
            need_conv(&n, B, out, out, H, W, 3, 1, 1);
            need_free(&n, 4 * a);
        }
        prev = out;
    }
    size_t a = (size_t)B * c->block_out[0] * H * W;
    need_new(&n, a); /* norm_out, beside x */
    need_free(&n, a);
    need_conv(&n, B, c->block_out[0], c->out_channels, H, W, 3, 1, 1);
    *arena_bytes = n.arena + (size_t)B * 2 * c->norm_groups * 2 * sizeof(float) + 8192;
    *tensor_bytes = n.peak;
}

static int fits(const Vae *v, int B, int th, int tw, size_t arena_free, size_t budget) {
    size_t ab, tb;
    vae_decode_need(v, B, th, tw, &ab, &tb);
    return ab <= arena_free && (!budget || tb <= budget);
}

int vae_pick_tile(const Vae *v, int B, int h, int w, size_t arena_free, size_t budget) {
    if (fits(v, B, h, w, arena_free, budget))
        return h > w ? h : w;
    int t = v->cfg.sample_size / vae_scale(&v->cfg);
    int m = h > w ? h : w;
    if (t > m)
        t = m;
    t -= t % 8;
    for (; t >= 8; t -= 8)
        if (fits(v, B, t, t, arena_free, budget))
            return t;
    return 0;
}

/* ---- the pipeline's end ----------------------------------------------------------------------- */

void vae_image_to_rgb8(const float *img, int B, int H, int W, uint8_t *rgb) {
    size_t plane = (size_t)H * W;
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < plane; i++)
            for (int ch = 0; ch < 3; ch++) {
                float x = img[((size_t)b * 3 + ch) * plane + i] * 0.5f + 0.5f;
                x = x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; /* clamp(0, 1) in torch */
                float y = x * 255.0f;                      /* numpy, f32 */
                rgb[((size_t)b * plane + i) * 3 + ch] = (uint8_t)nearbyintf(y); /* half-even */
            }
}

int vae_latents_to_rgb8(Vae *v, const float *latents, int B, int h, int w, int tile,
                        uint8_t *rgb, Err *err) {
    const VaeConfig *c = &v->cfg;
    if (c->out_channels != 3)
        return err_set(err, ERR_USAGE, "vae: %d output channels is not an RGB image",
                       c->out_channels);
    int s = vae_scale(c);
    size_t n = (size_t)B * c->latent_channels * h * w;
    float *z = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        z[i] = latents[i] / c->scaling_factor;
        if (c->has_shift)
            z[i] = z[i] + c->shift_factor;
    }
    if (tile == 0) {
        size_t arena = v->opt.arena_bytes ? v->opt.arena_bytes
                       : backend_kind(v->be) == BACKEND_CUDA ? (size_t)256 << 20
                                                             : (size_t)64 << 20;
        size_t used = backend_mark(v->be), free_ = arena > used ? arena - used : 0;
        size_t ab, tb;
        vae_decode_need(v, B, h, w, &ab, &tb);
        if (ab > free_ || (v->opt.tensor_budget && tb > v->opt.tensor_budget)) {
            tile = vae_pick_tile(v, B, h, w, free_, v->opt.tensor_budget);
            if (!tile) {
                size_t a8, t8;
                vae_decode_need(v, 1, 8, 8, &a8, &t8);
                free(z);
                return err_set(err, ERR_NOMEM, "vae: not even an 8x8 latent tile fits in "
                               "%zu MiB of free arena (it needs %zu MiB); open the backend "
                               "with a larger arena_bytes", free_ >> 20, (a8 >> 20) + 1);
            }
        }
    }
    size_t npx = (size_t)B * 3 * h * s * w * s;
    float *img = xmalloc(npx * sizeof(float));
    int rc = tile > 0 ? vae_decode_tiled(v, z, B, h, w, tile, img, err)
                      : vae_decode(v, z, B, h, w, img, err);
    if (!rc)
        vae_image_to_rgb8(img, B, h * s, w * s, rgb);
    free(z), free(img);
    return rc;
}
