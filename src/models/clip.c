/* clip — the CLIP forward passes on the engine interface (backend.h). See clip.h.
 *
 * Both towers run the same pre-LN block (x += attn(ln_1 x); x += mlp(ln_2 x)) over a batch
 * held as one (B*T, C) activation matrix, so every projection is one GEMM over the whole
 * batch (backend_linear_forward; q, k and v as three GEMMs over the row blocks of the stacked
 * in-projection, so attention gets contiguous tensors). Activations live in one block on the
 * backend (Scratch), kept in the model and grown when a larger batch comes; per-op scratch is
 * the backend's arena. Each batch ends with one backend_sync, whose failure is the call's.
 */
#include "clip_int.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

#define CLIP_BATCH 16

/* The activations of one batch of B sequences of T tokens, C wide, MLP M, NH heads. Row
 * views (N = B·T rows) of one backend block; 2-D (N, C) for GEMMs, q/k/v/a also 3-D. */
typedef struct Scratch {
    Backend *be;
    int B, T, C, N;
    Tensor x;            /* (N, C) the residual stream */
    Tensor h;            /* (N, C) */
    Tensor q, k, v, a;   /* (N, C) */
    Tensor q3, k3, v3, a3; /* the same as (B, T, C) */
    Tensor m;            /* (N, M) MLP hidden */
    Tensor lse;          /* (B, NH, T) the attention's log-sum-exp (unused after) */
    Tensor mean, rstd;   /* (N) */
    Tensor patches;      /* vision: (B·NP, 3·P·P) */
    Tensor tokp;         /* vision with tokens: (N, E) */
    Tensor pool, lnp;    /* (B, C) the pooled token, after the final LayerNorm */
    Tensor proj, emb;    /* (B, E) projected, L2-normalised */
    Tensor mean_b, rstd_b; /* (B) */
} Scratch;

/* Lays out (or, with base NULL, measures) the tensors; returns the floats used. */
static size_t scratch_layout(Scratch *s, float *base, TensorDevice dev, int B, int T, int C,
                             int M, int NH, int E, int64_t patch_rows, int64_t patch_cols,
                             int tokens) {
    size_t off = 0;
    int64_t N = (int64_t)B * T;
#define CARVE(t, nd, ...)                                                                    \
    do {                                                                                     \
        const int64_t sh_[] = {__VA_ARGS__};                                                 \
        t = tensor_view_dtype(base ? base + off : NULL, DTYPE_F32, nd, sh_);                \
        t.device = dev;                                                                      \
        off += ((size_t)tensor_numel(&t) + 15) / 16 * 16; /* 64-byte aligned */              \
    } while (0)
    CARVE(s->x, 2, N, C);
    CARVE(s->h, 2, N, C);
    CARVE(s->q, 2, N, C);
    CARVE(s->k, 2, N, C);
    CARVE(s->v, 2, N, C);
    CARVE(s->a, 2, N, C);
    CARVE(s->m, 2, N, M);
    CARVE(s->lse, 3, B, NH, T);
    CARVE(s->mean, 1, N);
    CARVE(s->rstd, 1, N);
    CARVE(s->patches, 2, patch_rows, patch_cols);
    CARVE(s->tokp, 2, tokens ? N : 0, E);
    CARVE(s->pool, 2, B, C);
    CARVE(s->lnp, 2, B, C);
    CARVE(s->proj, 2, B, E);
    CARVE(s->emb, 2, B, E);
#undef CARVE
    const int64_t s3[3] = {B, T, C};
    Tensor *two[4] = {&s->q, &s->k, &s->v, &s->a}, *three[4] = {&s->q3, &s->k3, &s->v3, &s->a3};
    for (int i = 0; i < 4; i++) {
        *three[i] = tensor_view_dtype(two[i]->ptr, DTYPE_F32, 3, s3);
        three[i]->device = dev;
    }
    s->mean_b = s->mean, s->mean_b.shape[0] = B;
    s->rstd_b = s->rstd, s->rstd_b.shape[0] = B;
    s->B = B, s->T = T, s->C = C, s->N = (int)N;
    return off;
}

/* The scratch of a batch on the model's backend (the kept block, grown if too small). */
static int scratch_init(ClipModel *m, Scratch *s, int B, int T, int C, int M, int NH,
                        int64_t patch_rows, int64_t patch_cols, int tokens, Err *err) {
    Backend *be = m->be;
    TensorDevice dev = backend_device(be);
    int E = m->cfg.embed_dim;
    size_t n = scratch_layout(s, NULL, dev, B, T, C, M, NH, E, patch_rows, patch_cols, tokens);
    size_t bytes = n * sizeof(float);
    if (bytes > m->scratch_bytes) {
        backend_free(be, m->scratch);
        m->scratch = backend_malloc(be, bytes);
        m->scratch_bytes = m->scratch ? bytes : 0;
        if (!m->scratch) {
            Err e = {0};
            backend_sync(be, &e);
            return err_set(err, ERR_NOMEM, "clip: no memory for a batch of %d (%zu MB of "
                           "activations on %s)%s%s", B, bytes >> 20, backend_name(be),
                           e.msg[0] ? ": " : "", e.msg);
        }
    }
    scratch_layout(s, m->scratch, dev, B, T, C, M, NH, E, patch_rows, patch_cols, tokens);
    s->be = be;
    return 0;
}

size_t clip_model_scratch_bytes(const ClipModel *m, int batch) {
    const ClipConfig *c = &m->cfg;
    int B = batch < CLIP_BATCH ? batch : CLIP_BATCH, NP = clip_model_n_patches(m);
    Scratch s;
    size_t v = scratch_layout(&s, NULL, TENSOR_DEVICE_CPU, B, 1 + NP, c->vision_width,
                              c->vision_mlp, c->vision_heads, c->embed_dim, (int64_t)B * NP,
                              3 * (int64_t)c->patch_size * c->patch_size, 1);
    size_t t = scratch_layout(&s, NULL, TENSOR_DEVICE_CPU, B, c->context_length, c->text_width,
                              c->text_mlp, c->text_heads, c->embed_dim, 0, 0, 0);
    return (v > t ? v : t) * sizeof(float);
}

/* Rows [r0, r0 + n) of a 2-D tensor (or elements of a 1-D one), as a contiguous view. */
static Tensor rows(const Tensor *t, int64_t r0, int64_t n) {
    Tensor v = *t;
    size_t row = t->n_dims >= 2 ? (size_t)(tensor_numel(t) / t->shape[0]) : 1;
    v.ptr = (char *)t->ptr + (size_t)r0 * row * dtype_size(t->dtype);
    v.shape[0] = n;
    return v;
}

/* Copy the device tensor SRC into host floats DST. */
static void download(Backend *be, float *dst, const Tensor *src) {
    Tensor h = tensor_view_dtype(dst, DTYPE_F32, src->n_dims, src->shape);
    backend_download(be, &h, src);
}

/* 0, or the backend's failure during this batch as the call's error. */
static int synced(Backend *be, Err *err) {
    Err e = {0};
    int rc = backend_sync(be, &e);
    if (rc != 0)
        return err_set(err, rc, "clip: %s", e.msg);
    return 0;
}

/* ---- the block ----------------------------------------------------------------------------- */

/* x (B, T, C) in place through one pre-LN residual block. */
static void block_forward(const ClipModel *m, const ClipDevBlock *b, Scratch *s, int NH,
                          int causal) {
    Backend *be = s->be;
    float eps = m->cfg.ln_eps;
    backend_layernorm_forward(be, &s->h, &s->mean, &s->rstd, &s->x, &b->ln1_w, &b->ln1_b, eps);
    backend_linear_forward(be, &s->q, &s->h, &b->wq, &b->bq);
    backend_linear_forward(be, &s->k, &s->h, &b->wk, &b->bk);
    backend_linear_forward(be, &s->v, &s->h, &b->wv, &b->bv);
    BackendAttn at = {NH, 0.0f, causal, NULL};
    backend_attention_forward(be, &s->a3, &s->lse, &s->q3, &s->k3, &s->v3, &at);
    backend_linear_forward(be, &s->h, &s->a, &b->wo, &b->bo);
    backend_add(be, &s->x, &s->x, &s->h);
    backend_layernorm_forward(be, &s->h, &s->mean, &s->rstd, &s->x, &b->ln2_w, &b->ln2_b, eps);
    backend_linear_forward(be, &s->m, &s->h, &b->fc1_w, &b->fc1_b);
    backend_act_forward(be, m->cfg.quick_gelu ? BACKEND_ACT_QUICKGELU : BACKEND_ACT_GELU, &s->m,
                        &s->m);
    backend_linear_forward(be, &s->h, &s->m, &b->fc2_w, &b->fc2_b);
    backend_add(be, &s->x, &s->x, &s->h);
}

/* ---- the towers ------------------------------------------------------------------------------ */

typedef struct Tower {
    const ClipDevBlock *blocks;
    int layers, C, M, NH, causal;
    const Tensor *lnf_w, *lnf_b; /* ln_final / ln_post */
} Tower;

static Tower tower_of(const ClipModel *m, int vision) {
    const ClipConfig *c = &m->cfg;
    if (vision)
        return (Tower){m->dvblocks, c->vision_layers, c->vision_width, c->vision_mlp,
                       c->vision_heads, 0, &m->d_ln_post_w, &m->d_ln_post_b};
    return (Tower){m->dtblocks, c->text_layers, c->text_width, c->text_mlp, c->text_heads, 1,
                   &m->d_ln_final_w, &m->d_ln_final_b};
}

int clip_model_n_states(const ClipModel *m, int vision, int layer) {
    int L = vision ? m->cfg.vision_layers : m->cfg.text_layers;
    if (layer == CLIP_ALL_LAYERS)
        return L + 1;
    return layer >= -(L + 1) && layer <= L ? 1 : -1;
}

/* Which states O asks for: [first, last] (first > last: none). */
static void wanted_states(const ClipOutputs *o, int L, int *first, int *last) {
    *first = 1, *last = 0;
    if (!o || !o->hidden)
        return;
    if (o->layer == CLIP_ALL_LAYERS) {
        *first = 0, *last = L;
    } else {
        int i = o->layer < 0 ? L + 1 + o->layer : o->layer;
        *first = *last = i;
    }
}

/* Copy state I of the batch (x, B rows of T tokens) into O->hidden (batch offset applied by
 * the caller) at slot I - FIRST. */
static void save_state(const ClipModel *m, const Tower *tw, Scratch *s, const ClipOutputs *o,
                       int first, int last, int i) {
    if (i < first || i > last)
        return;
    int n_states = last - first + 1;
    const Tensor *src = &s->x;
    if (o->final_ln) {
        backend_layernorm_forward(s->be, &s->h, &s->mean, &s->rstd, &s->x, tw->lnf_w, tw->lnf_b,
                                  m->cfg.ln_eps);
        src = &s->h;
    }
    size_t tc = (size_t)s->T * (size_t)s->C;
    for (int b = 0; b < s->B; b++) {
        Tensor r = rows(src, (int64_t)b * s->T, s->T);
        download(s->be, o->hidden + ((size_t)b * n_states + (size_t)(i - first)) * tc, &r);
    }
}

/* The blocks over s->x, saving the states asked for; all blocks if FULL, else only up to
 * the last state asked for. */
static void run_tower(const ClipModel *m, const Tower *tw, Scratch *s, const ClipOutputs *o,
                      int full) {
    int first, last;
    wanted_states(o, tw->layers, &first, &last);
    int upto = full ? tw->layers : last;
    save_state(m, tw, s, o, first, last, 0);
    for (int l = 0; l < upto; l++) {
        block_forward(m, &tw->blocks[l], s, tw->NH, tw->causal);
        save_state(m, tw, s, o, first, last, l + 1);
    }
}

/* The pooled rows (B, C) already in s->pool: final LayerNorm, projection, the outputs asked
 * for downloaded; embeds L2-normalised. */
static void pool_outputs(const ClipModel *m, Scratch *s, const Tower *tw, const Tensor *proj_w,
                         const ClipOutputs *o, float *embeds, int project) {
    Backend *be = s->be;
    if (project) {
        backend_layernorm_forward(be, &s->lnp, &s->mean_b, &s->rstd_b, &s->pool, tw->lnf_w,
                                  tw->lnf_b, m->cfg.ln_eps);
        if (proj_w->ptr) /* a CLIPTextModel has no projection (text_all refuses its outputs) */
            backend_linear_forward(be, &s->proj, &s->lnp, proj_w, NULL);
    }
    if (o && o->pooled)
        download(be, o->pooled, &s->lnp);
    if (o && o->projected)
        download(be, o->projected, &s->proj);
    if (embeds) {
        backend_l2norm_forward(be, &s->emb, NULL, &s->proj, 1e-12f);
        download(be, embeds, &s->emb);
    }
}

/* 0, or the ERR_USAGE code (set in ERR, which may be NULL) for a layer out of range. */
static int check_layer(const ClipModel *m, int vision, const ClipOutputs *o, Err *err) {
    if (o && o->hidden && clip_model_n_states(m, vision, o->layer) < 0)
        return err_set(err, ERR_USAGE, "clip: the %s tower has no hidden state %d (0..%d, or "
                       "-1..-%d from the end)", vision ? "vision" : "text", o->layer,
                       vision ? m->cfg.vision_layers : m->cfg.text_layers,
                       (vision ? m->cfg.vision_layers : m->cfg.text_layers) + 1);
    return 0;
}

/* O with its outputs moved to batch element I. */
static ClipOutputs outputs_at(const ClipOutputs *o, size_t i, size_t hidden_row, int C, int E) {
    ClipOutputs r = *o;
    if (r.hidden)
        r.hidden += i * hidden_row;
    if (r.pooled)
        r.pooled += i * (size_t)C;
    if (r.projected)
        r.projected += i * (size_t)E;
    return r;
}

/* ---- vision -------------------------------------------------------------------------------- */

/* One batch of B <= CLIP_BATCH images: O (may be NULL), EMBEDS (L2-normalised projected,
 * may be NULL), TOKENS (may be NULL). */
static int vision_batch(const ClipModel *cm, const float *pixels, int B, const ClipOutputs *o,
                        float *embeds, float *tokens, Err *err) {
    ClipModel *m = (ClipModel *)cm; /* the scratch block is the model's; the weights stay */
    const ClipConfig *c = &m->cfg;
    Tower tw = tower_of(m, 1);
    int C = c->vision_width, P = c->patch_size, S = c->image_size, G = S / P;
    int NP = G * G, T = NP + 1, E = c->embed_dim, K = 3 * P * P, N = B * T;
    Scratch s;
    int rc = scratch_init(m, &s, B, T, C, c->vision_mlp, c->vision_heads, (int64_t)B * NP, K,
                          tokens != NULL, err);
    if (rc != 0)
        return rc;
    Backend *be = m->be;
    size_t n_patch = (size_t)B * (size_t)NP * (size_t)K;
    float *host = malloc(n_patch * sizeof(float));
    int *idx = malloc((size_t)N * sizeof(int));
    if (!host || !idx) {
        free(host);
        free(idx);
        return err_set(err, ERR_NOMEM, "clip: no memory for a batch of %d images", B);
    }
    /* patches (B*NP, 3*P*P) in the (channel, row, column) order of the conv weight */
    for (int b = 0; b < B; b++)
        for (int gy = 0; gy < G; gy++)
            for (int gx = 0; gx < G; gx++) {
                float *row = host + ((size_t)b * NP + (size_t)gy * G + gx) * (size_t)K;
                for (int ch = 0; ch < 3; ch++)
                    for (int py = 0; py < P; py++)
                        memcpy(row + ((size_t)ch * P + py) * P,
                               pixels + (((size_t)b * 3 + ch) * S + (size_t)gy * P + py) * S +
                                   (size_t)gx * P,
                               (size_t)P * sizeof(float));
            }
    Tensor hp = tensor_view_dtype(host, DTYPE_F32, 2, s.patches.shape);
    backend_upload(be, &s.patches, &hp);
    Tensor pe = rows(&s.h, 0, (int64_t)B * NP);
    backend_linear_forward(be, &pe, &s.patches, &m->d_patch_w, NULL); /* the conv as a GEMM */
    /* x[b, 0] = 0 and x[b, t] = patch t-1, then + (class + pos[0], pos[1..]) */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            idx[b * T + t] = t == 0 ? -1 : b * NP + t - 1;
    backend_gather_rows(be, &s.x, &pe, idx);
    backend_add_rows(be, &s.x, &s.x, &m->d_pos_cls);
    backend_layernorm_forward(be, &s.x, &s.mean, &s.rstd, &s.x, &m->d_ln_pre_w, &m->d_ln_pre_b,
                              c->ln_eps);
    int need_pool = embeds || tokens || (o && (o->pooled || o->projected));
    run_tower(m, &tw, &s, o, need_pool);
    if (need_pool) {
        for (int b = 0; b < B; b++)
            idx[b] = b * T; /* the class tokens */
        if (tokens) { /* every token through ln_post and the projection */
            backend_layernorm_forward(be, &s.h, &s.mean, &s.rstd, &s.x, &m->d_ln_post_w,
                                      &m->d_ln_post_b, c->ln_eps);
            backend_linear_forward(be, &s.tokp, &s.h, &m->d_proj_v, NULL);
            backend_gather_rows(be, &s.lnp, &s.h, idx);
            backend_gather_rows(be, &s.proj, &s.tokp, idx);
            for (int b = 0; b < B; b++) {
                Tensor r = rows(&s.tokp, (int64_t)b * T + 1, NP);
                download(be, tokens + (size_t)b * NP * E, &r);
            }
        } else {
            backend_gather_rows(be, &s.pool, &s.x, idx);
        }
        pool_outputs(m, &s, &tw, &m->d_proj_v, o, embeds, !tokens);
    }
    free(idx);
    free(host);
    return synced(be, err);
}

/* ERR_USAGE for a text-only model (clip_model_load_text), else 0. */
static int need_vision(const ClipModel *m, Err *err) {
    if (m->text_only)
        return err_set(err, ERR_USAGE, "clip: %s is a text model alone: it has no vision tower",
                       m->weights_path);
    return 0;
}

static int vision_all(const ClipModel *m, const float *pixels, int n, const ClipOutputs *o,
                      float *embeds, float *tokens, Err *err) {
    const ClipConfig *c = &m->cfg;
    if (need_vision(m, err) != 0)
        return ERR_USAGE;
    size_t img = 3 * (size_t)c->image_size * (size_t)c->image_size;
    size_t tok = (size_t)clip_model_n_patches(m) * (size_t)c->embed_dim;
    int first, last;
    wanted_states(o, c->vision_layers, &first, &last);
    size_t hrow = (size_t)(last - first + 1 > 0 ? last - first + 1 : 0) *
                  (size_t)(1 + clip_model_n_patches(m)) * (size_t)c->vision_width;
    for (int i = 0; i < n; i += CLIP_BATCH) {
        int B = n - i < CLIP_BATCH ? n - i : CLIP_BATCH;
        ClipOutputs oi;
        if (o)
            oi = outputs_at(o, (size_t)i, hrow, c->vision_width, c->embed_dim);
        int rc = vision_batch(m, pixels + (size_t)i * img, B, o ? &oi : NULL,
                              embeds ? embeds + (size_t)i * c->embed_dim : NULL,
                              tokens ? tokens + (size_t)i * tok : NULL, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int clip_model_encode_pixels(const ClipModel *m, const float *pixels, int n, float *embeds,
                             float *tokens, Err *err) {
    return vision_all(m, pixels, n, NULL, embeds, tokens, err);
}

int clip_model_vision_forward(const ClipModel *m, const float *pixels, int n,
                              const ClipOutputs *out, Err *err) {
    int rc = check_layer(m, 1, out, err);
    if (rc != 0)
        return rc;
    return vision_all(m, pixels, n, out, NULL, NULL, err);
}

/* ---- text ---------------------------------------------------------------------------------- */

/* The pooling position of one row of ids (transformers' rule, see clip.h). */
static int pool_position(const ClipConfig *c, const int32_t *r) {
    int best = 0;
    if (c->eos_token_id >= 0) {
        for (int t = 0; t < c->context_length; t++)
            if (r[t] == c->eos_token_id)
                return t;
        return 0;
    }
    for (int t = 0; t < c->context_length; t++)
        if (r[t] > r[best])
            best = t;
    return best;
}

static int text_batch(const ClipModel *cm, const int32_t *ids, int B, const ClipOutputs *o,
                      float *embeds, Err *err) {
    ClipModel *m = (ClipModel *)cm; /* the scratch block is the model's; the weights stay */
    const ClipConfig *c = &m->cfg;
    Tower tw = tower_of(m, 0);
    int L = c->context_length, C = c->text_width;
    int *eot = xmalloc((size_t)B * sizeof(int));
    int T = 1;
    for (int b = 0; b < B; b++) {
        const int32_t *r = ids + (size_t)b * L;
        for (int t = 0; t < L; t++)
            if (r[t] < 0 || r[t] >= c->vocab_size) {
                free(eot);
                return err_set(err, ERR_USAGE, "clip: token id %d outside the vocabulary (%d)",
                               r[t], c->vocab_size);
            }
        eot[b] = pool_position(c, r);
        if (eot[b] + 1 > T)
            T = eot[b] + 1;
    }
    /* causal attention: positions after the last end token cannot change it, so they run
     * only when their hidden states are asked for */
    if (o && o->hidden)
        T = L;
    Scratch s;
    int rc = scratch_init(m, &s, B, T, C, c->text_mlp, c->text_heads, 0, 0, 0, err);
    if (rc != 0) {
        free(eot);
        return rc;
    }
    Backend *be = m->be;
    int *idx = xmalloc((size_t)B * (size_t)T * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            idx[b * T + t] = ids[(size_t)b * L + t];
    backend_gather_rows(be, &s.x, &m->d_tok_emb, idx); /* token embeddings (f32 or bf16) */
    Tensor pos = rows(&m->d_pos_t, 0, T);
    backend_add_rows(be, &s.x, &s.x, &pos);
    int need_pool = embeds || (o && (o->pooled || o->projected));
    run_tower(m, &tw, &s, o, need_pool);
    if (need_pool) {
        for (int b = 0; b < B; b++)
            idx[b] = b * T + eot[b];
        backend_gather_rows(be, &s.pool, &s.x, idx);
        pool_outputs(m, &s, &tw, &m->d_proj_t, o, embeds, 1);
    }
    free(idx);
    free(eot);
    return synced(be, err);
}

static int text_all(const ClipModel *m, const int32_t *ids, int n, const ClipOutputs *o,
                    float *embeds, Err *err) {
    const ClipConfig *c = &m->cfg;
    if (!m->proj_t && (embeds || (o && o->projected)))
        return err_set(err, ERR_USAGE, "clip: %s has no text projection (a CLIPTextModel): "
                       "it gives hidden states and the pooled output only", m->weights_path);
    int first, last;
    wanted_states(o, c->text_layers, &first, &last);
    size_t hrow = (size_t)(last - first + 1 > 0 ? last - first + 1 : 0) *
                  (size_t)c->context_length * (size_t)c->text_width;
    for (int i = 0; i < n; i += CLIP_BATCH) {
        int B = n - i < CLIP_BATCH ? n - i : CLIP_BATCH;
        ClipOutputs oi;
        if (o)
            oi = outputs_at(o, (size_t)i, hrow, c->text_width, c->embed_dim);
        int rc = text_batch(m, ids + (size_t)i * c->context_length, B, o ? &oi : NULL,
                            embeds ? embeds + (size_t)i * c->embed_dim : NULL, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int clip_model_encode_ids(const ClipModel *m, const int32_t *ids, int n, float *embeds,
                          Err *err) {
    return text_all(m, ids, n, NULL, embeds, err);
}

int clip_model_text_forward(const ClipModel *m, const int32_t *ids, int n,
                            const ClipOutputs *out, Err *err) {
    int rc = check_layer(m, 0, out, err);
    if (rc != 0)
        return rc;
    return text_all(m, ids, n, out, NULL, err);
}

int clip_model_encode_texts(const ClipModel *m, const char *const *texts, int n, float *embeds,
                            Err *err) {
    int L = m->cfg.context_length;
    int32_t *ids = malloc((size_t)(n > 0 ? n : 1) * (size_t)L * sizeof(int32_t));
    if (!ids)
        return err_set(err, ERR_NOMEM, "clip: no memory to tokenize %d texts", n);
    for (int i = 0; i < n; i++)
        clip_tokenizer_tokenize(m->tok, texts[i], ids + (size_t)i * L, L);
    int rc = clip_model_encode_ids(m, ids, n, embeds, err);
    free(ids);
    return rc;
}

/* ---- image files ----------------------------------------------------------------------- */

typedef struct PrepCtx {
    const ClipModel *m;
    const char *const *paths;
    ClipResizeMode mode;
    float *pixels;
    int *rc;
    Err *errs;
} PrepCtx;

static void prep_range(void *ctx, int64_t b, int64_t e) {
    PrepCtx *p = ctx;
    const ClipConfig *c = &p->m->cfg;
    size_t img = 3 * (size_t)c->image_size * (size_t)c->image_size;
    for (int64_t i = b; i < e; i++)
        p->rc[i] = clip_image_preprocess_file(p->pixels + (size_t)i * img, p->paths[i],
                                              c->image_size, p->mode, c->mean, c->std,
                                              &p->errs[i]);
}

int clip_model_encode_image_files(const ClipModel *m, const char *const *paths, int n,
                                  ClipResizeMode mode, float *embeds, float *tokens, Err *err) {
    if (need_vision(m, err) != 0)
        return ERR_USAGE;
    const ClipConfig *c = &m->cfg;
    size_t img = 3 * (size_t)c->image_size * (size_t)c->image_size;
    size_t tok = (size_t)clip_model_n_patches(m) * (size_t)c->embed_dim;
    float *pixels = malloc((size_t)CLIP_BATCH * img * sizeof(float));
    if (!pixels)
        return err_set(err, ERR_NOMEM, "clip: no memory for %d images", CLIP_BATCH);
    int rcs[CLIP_BATCH];
    Err errs[CLIP_BATCH];
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i += CLIP_BATCH) {
        int B = n - i < CLIP_BATCH ? n - i : CLIP_BATCH;
        memset(errs, 0, sizeof errs);
        PrepCtx p = {m, paths + i, mode, pixels, rcs, errs};
        backend_host_parallel_for(m->be, B, 1, prep_range, &p); /* decode + resize */
        for (int b = 0; b < B; b++)
            if (rcs[b] != 0) {
                if (err)
                    *err = errs[b];
                rc = rcs[b];
                break;
            }
        if (rc == 0)
            rc = vision_batch(m, pixels, B, NULL, embeds + (size_t)i * c->embed_dim,
                              tokens ? tokens + (size_t)i * tok : NULL, err);
    }
    free(pixels);
    return rc;
}

typedef struct PrepImgCtx {
    const ClipModel *m;
    const ClipImage *images;
    ClipResizeMode mode;
    float *pixels;
    int *rc;
    Err *errs;
} PrepImgCtx;

static void prep_img_range(void *ctx, int64_t b, int64_t e) {
    PrepImgCtx *p = ctx;
    const ClipConfig *c = &p->m->cfg;
    size_t img = 3 * (size_t)c->image_size * (size_t)c->image_size;
    for (int64_t i = b; i < e; i++)
        p->rc[i] = clip_image_preprocess(p->pixels + (size_t)i * img, &p->images[i],
                                         c->image_size, p->mode, c->mean, c->std, &p->errs[i]);
}

int clip_model_encode_images(const ClipModel *m, const ClipImage *images, int n,
                             ClipResizeMode mode, float *embeds, float *tokens, Err *err) {
    if (need_vision(m, err) != 0)
        return ERR_USAGE;
    const ClipConfig *c = &m->cfg;
    size_t img = 3 * (size_t)c->image_size * (size_t)c->image_size;
    size_t tok = (size_t)clip_model_n_patches(m) * (size_t)c->embed_dim;
    float *pixels = malloc((size_t)CLIP_BATCH * img * sizeof(float));
    if (!pixels)
        return err_set(err, ERR_NOMEM, "clip: no memory for %d images", CLIP_BATCH);
    int rcs[CLIP_BATCH];
    Err errs[CLIP_BATCH];
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i += CLIP_BATCH) {
        int B = n - i < CLIP_BATCH ? n - i : CLIP_BATCH;
        memset(errs, 0, sizeof errs);
        PrepImgCtx p = {m, images + i, mode, pixels, rcs, errs};
        backend_host_parallel_for(m->be, B, 1, prep_img_range, &p);
        for (int b = 0; b < B; b++)
            if (rcs[b] != 0) {
                if (err)
                    *err = errs[b];
                rc = rcs[b];
                break;
            }
        if (rc == 0)
            rc = vision_batch(m, pixels, B, NULL, embeds + (size_t)i * c->embed_dim,
                              tokens ? tokens + (size_t)i * tok : NULL, err);
    }
    free(pixels);
    return rc;
}
