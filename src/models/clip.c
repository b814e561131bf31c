/* clip — the CLIP forward passes on the engine's ops. See clip.h.
 *
 * Both towers run the same pre-LN block (x += attn(ln_1 x); x += mlp(ln_2 x)) over a batch
 * held as one (B*T, C) activation matrix, so every projection is one GEMM over the whole
 * batch (nn_linear_forward, split over the CPU pool). Scratch for a batch is one malloc
 * (sizes in Scratch), made per call: encoding never touches shared state, so threads can
 * share a model.
 */
#include "clip_int.h"

#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_clip.h"
#include "nn_flash.h"
#include "nn_elementwise.h"
#include "nn_linear.h"
#include "nn_norm.h"

#define CLIP_BATCH 16

typedef struct Scratch {
    float *x;      /* (N, C) the residual stream */
    float *h;      /* (N, C) */
    float *qkv;    /* (N, 3C) q, k, v side by side in each row */
    float *a;      /* (N, C) attention output */
    float *m;      /* (N, M) MLP hidden */
    float *lse;    /* (B, NH, T) the attention's log-sum-exp (unused after) */
    float *mean;   /* (N) */
    float *rstd;   /* (N) */
    float *wbuf;   /* (max(3C, M) · C) one weight matrix widened from bf16, or NULL */
    float *block;  /* the one allocation */
} Scratch;

static size_t wbuf_floats(int C, int M, int bf16) {
    size_t w = (size_t)(M > 3 * C ? M : 3 * C) * (size_t)C;
    return bf16 ? w : 0;
}

static size_t scratch_floats(int B, int T, int C, int M, int NH, int bf16) {
    size_t N = (size_t)B * (size_t)T;
    return 6 * N * (size_t)C + N * (size_t)M + (size_t)B * (size_t)NH * (size_t)T + 2 * N +
           wbuf_floats(C, M, bf16);
}

static int scratch_init(Scratch *s, int B, int T, int C, int M, int NH, int bf16, Err *err) {
    size_t N = (size_t)B * (size_t)T;
    size_t n = scratch_floats(B, T, C, M, NH, bf16);
    s->block = malloc(n * sizeof(float));
    if (!s->block)
        return err_set(err, ERR_NOMEM, "clip: no memory for a batch of %d (%zu MB of scratch)", B,
                       n * sizeof(float) >> 20);
    float *p = s->block;
    s->x = p, p += N * (size_t)C;
    s->h = p, p += N * (size_t)C;
    s->qkv = p, p += 3 * N * (size_t)C;
    s->a = p, p += N * (size_t)C;
    s->m = p, p += N * (size_t)M;
    s->lse = p, p += (size_t)B * (size_t)NH * (size_t)T;
    s->mean = p, p += N;
    s->rstd = p, p += N;
    s->wbuf = bf16 ? p : NULL;
    return 0;
}

size_t clip_model_scratch_bytes(const ClipModel *m, int batch) {
    const ClipConfig *c = &m->cfg;
    int B = batch < CLIP_BATCH ? batch : CLIP_BATCH;
    size_t v = scratch_floats(B, 1 + clip_model_n_patches(m), c->vision_width, c->vision_mlp,
                              c->vision_heads, m->bf16);
    size_t t = scratch_floats(B, c->context_length, c->text_width, c->text_mlp, c->text_heads,
                              m->bf16);
    size_t patches = (size_t)B * (size_t)clip_model_n_patches(m) * 3 * (size_t)c->patch_size *
                     (size_t)c->patch_size;
    return ((v > t ? v : t) + patches + (size_t)B * (size_t)(1 + clip_model_n_patches(m)) *
                                            (size_t)c->embed_dim) * sizeof(float);
}

/* ---- pointwise work split over the pool ------------------------------------------------- */

typedef struct ActCtx {
    float *x;
    int quick;
} ActCtx;

static void act_range(void *ctx, int64_t b, int64_t e) {
    ActCtx *a = ctx;
    if (a->quick)
        nn_clip_quickgelu_forward(a->x + b, a->x + b, (size_t)(e - b));
    else
        nn_clip_gelu_forward(a->x + b, a->x + b, (size_t)(e - b));
}

static void activation(float *x, size_t n, int quick) {
    ActCtx a = {x, quick};
    backend_cpu_parallel_for((int64_t)n, 16384, act_range, &a);
}

/* out (N, O) = in (N, K) · wᵀ + bias, W (O, K) in the model's resident dtype (a bf16 W is
 * widened tile by tile into the scratch: the GEMM and its sums are f32). */
static void linear(const ClipModel *m, Scratch *s, float *out, const float *in, ClipMat w,
                   const float *bias, int N, int K, int O) {
    nn_clip_linear_forward(out, in, m->bf16 ? NULL : w, m->bf16 ? w : NULL, bias, s->wbuf, N, K,
                           O);
}

/* Row I of the token embedding as f32 into DST. */
static void token_row(const ClipModel *m, int id, float *dst) {
    int C = m->cfg.text_width;
    if (m->bf16)
        nn_clip_bf16_to_f32(dst, (const uint16_t *)m->tok_emb + (size_t)id * C, (size_t)C);
    else
        memcpy(dst, (const float *)m->tok_emb + (size_t)id * C, (size_t)C * sizeof(float));
}

/* ---- the block ----------------------------------------------------------------------------- */

/* x (B, T, C) in place through one pre-LN residual block. */
static void block_forward(const ClipModel *m, const ClipBlock *b, Scratch *s, int B, int T,
                          int C, int M, int NH, int causal) {
    const ClipConfig *cfg = &m->cfg;
    int N = B * T;
    nn_layernorm_forward(s->h, s->mean, s->rstd, s->x, b->ln1_w, b->ln1_b, N, C, cfg->ln_eps);
    linear(m, s, s->qkv, s->h, b->wqkv, b->bqkv, N, C, 3 * C); /* q | k | v in one GEMM */
    FlashAttn fa = {.B = B, .NH = NH, .Tq = T, .Tk = T, .hd = C / NH, .causal = causal,
                    .ldq = 3 * C, .ldk = 3 * C, .ldv = 3 * C, .ldo = C};
    nn_flash_forward(s->a, s->lse, s->qkv, s->qkv + C, s->qkv + 2 * C, &fa);
    linear(m, s, s->h, s->a, b->wo, b->bo, N, C, C);
    nn_add_forward(s->x, s->x, s->h, (size_t)N * (size_t)C);
    nn_layernorm_forward(s->h, s->mean, s->rstd, s->x, b->ln2_w, b->ln2_b, N, C, cfg->ln_eps);
    linear(m, s, s->m, s->h, b->fc1_w, b->fc1_b, N, C, M);
    activation(s->m, (size_t)N * (size_t)M, cfg->quick_gelu);
    linear(m, s, s->h, s->m, b->fc2_w, b->fc2_b, N, M, C);
    nn_add_forward(s->x, s->x, s->h, (size_t)N * (size_t)C);
}

/* ---- the towers ------------------------------------------------------------------------------ */

typedef struct Tower {
    const ClipBlock *blocks;
    int layers, C, M, NH, causal;
    const float *lnf_w, *lnf_b; /* ln_final / ln_post */
} Tower;

static Tower tower_of(const ClipModel *m, int vision) {
    const ClipConfig *c = &m->cfg;
    if (vision)
        return (Tower){m->vblocks, c->vision_layers, c->vision_width, c->vision_mlp,
                       c->vision_heads, 0, m->ln_post_w, m->ln_post_b};
    return (Tower){m->tblocks, c->text_layers, c->text_width, c->text_mlp, c->text_heads, 1,
                   m->ln_final_w, m->ln_final_b};
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
static void save_state(const ClipModel *m, const Tower *tw, Scratch *s, int B, int T,
                       const ClipOutputs *o, int first, int last, int i) {
    if (i < first || i > last)
        return;
    int C = tw->C, n_states = last - first + 1;
    const float *src = s->x;
    if (o->final_ln) {
        nn_layernorm_forward(s->h, s->mean, s->rstd, s->x, tw->lnf_w, tw->lnf_b, B * T, C,
                             m->cfg.ln_eps);
        src = s->h;
    }
    size_t tc = (size_t)T * (size_t)C;
    for (int b = 0; b < B; b++)
        memcpy(o->hidden + ((size_t)b * n_states + (size_t)(i - first)) * tc, src + b * tc,
               tc * sizeof(float));
}

/* The blocks over s->x, saving the states asked for; all blocks if FULL, else only up to
 * the last state asked for. */
static void run_tower(const ClipModel *m, const Tower *tw, Scratch *s, int B, int T,
                      const ClipOutputs *o, int full) {
    int first, last;
    wanted_states(o, tw->layers, &first, &last);
    int upto = full ? tw->layers : last;
    save_state(m, tw, s, B, T, o, first, last, 0);
    for (int l = 0; l < upto; l++) {
        block_forward(m, &tw->blocks[l], s, B, T, tw->C, tw->M, tw->NH, tw->causal);
        save_state(m, tw, s, B, T, o, first, last, l + 1);
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
static int vision_batch(const ClipModel *m, const float *pixels, int B, const ClipOutputs *o,
                        float *embeds, float *tokens, Err *err) {
    const ClipConfig *c = &m->cfg;
    Tower tw = tower_of(m, 1);
    int C = c->vision_width, P = c->patch_size, S = c->image_size, G = S / P;
    int NP = G * G, T = NP + 1, E = c->embed_dim, K = 3 * P * P;
    Scratch s;
    int rc = scratch_init(&s, B, T, C, c->vision_mlp, c->vision_heads, m->bf16, err);
    if (rc != 0)
        return rc;
    size_t n_patch = (size_t)B * (size_t)NP * (size_t)K;
    size_t n_out = (size_t)B * (size_t)T * (size_t)E;
    float *extra = malloc((n_patch > n_out ? n_patch : n_out) * sizeof(float));
    float *pooled = malloc((size_t)B * (size_t)(2 * C + E + 1) * sizeof(float));
    if (!extra || !pooled) {
        free(s.block);
        free(extra);
        free(pooled);
        return err_set(err, ERR_NOMEM, "clip: no memory for a batch of %d images", B);
    }
    /* patches (B*NP, 3*P*P) in the (channel, row, column) order of the conv weight */
    for (int b = 0; b < B; b++)
        for (int gy = 0; gy < G; gy++)
            for (int gx = 0; gx < G; gx++) {
                float *row = extra + ((size_t)b * NP + (size_t)gy * G + gx) * (size_t)K;
                for (int ch = 0; ch < 3; ch++)
                    for (int py = 0; py < P; py++)
                        memcpy(row + ((size_t)ch * P + py) * P,
                               pixels + (((size_t)b * 3 + ch) * S + (size_t)gy * P + py) * S +
                                   (size_t)gx * P,
                               (size_t)P * sizeof(float));
            }
    nn_linear_forward(s.h, extra, m->patch_w, NULL, B * NP, K, C); /* the conv as one GEMM */
    for (int b = 0; b < B; b++) {
        float *x = s.x + (size_t)b * T * C;
        for (int i = 0; i < C; i++)
            x[i] = m->class_emb[i] + m->pos_v[i];
        for (int t = 1; t < T; t++) {
            const float *pe = s.h + ((size_t)b * NP + (size_t)(t - 1)) * C;
            const float *pos = m->pos_v + (size_t)t * C;
            for (int i = 0; i < C; i++)
                x[(size_t)t * C + i] = pe[i] + pos[i];
        }
    }
    int N = B * T;
    nn_layernorm_forward(s.x, s.mean, s.rstd, s.x, m->ln_pre_w, m->ln_pre_b, N, C, c->ln_eps);
    int need_pool = embeds || tokens || (o && (o->pooled || o->projected));
    run_tower(m, &tw, &s, B, T, o, need_pool);
    if (need_pool) {
        float *cls = pooled, *lnc = pooled + (size_t)B * C, *proj = pooled + 2 * (size_t)B * C;
        float *norm = proj + (size_t)B * E;
        if (tokens) { /* every token through ln_post and the projection */
            nn_layernorm_forward(s.h, s.mean, s.rstd, s.x, m->ln_post_w, m->ln_post_b, N, C,
                                 c->ln_eps);
            nn_linear_forward(extra, s.h, m->proj_v, NULL, N, C, E);
            for (int b = 0; b < B; b++) {
                memcpy(lnc + (size_t)b * C, s.h + (size_t)b * T * C, (size_t)C * sizeof(float));
                memcpy(proj + (size_t)b * E, extra + (size_t)b * T * E, (size_t)E * sizeof(float));
                memcpy(tokens + (size_t)b * NP * E, extra + ((size_t)b * T + 1) * E,
                       (size_t)NP * E * sizeof(float));
            }
        } else { /* the class tokens only */
            for (int b = 0; b < B; b++)
                memcpy(cls + (size_t)b * C, s.x + (size_t)b * T * C, (size_t)C * sizeof(float));
            nn_layernorm_forward(lnc, s.mean, s.rstd, cls, m->ln_post_w, m->ln_post_b, B, C,
                                 c->ln_eps);
            nn_linear_forward(proj, lnc, m->proj_v, NULL, B, C, E);
        }
        if (o && o->pooled)
            memcpy(o->pooled, lnc, (size_t)B * C * sizeof(float));
        if (o && o->projected)
            memcpy(o->projected, proj, (size_t)B * E * sizeof(float));
        if (embeds)
            nn_l2norm_forward(embeds, norm, proj, B, E, 1e-12f);
    }
    free(pooled);
    free(extra);
    free(s.block);
    return 0;
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

static int text_batch(const ClipModel *m, const int32_t *ids, int B, const ClipOutputs *o,
                      float *embeds, Err *err) {
    const ClipConfig *c = &m->cfg;
    Tower tw = tower_of(m, 0);
    int L = c->context_length, C = c->text_width, E = c->embed_dim;
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
    int rc = scratch_init(&s, B, T, C, c->text_mlp, c->text_heads, m->bf16, err);
    if (rc != 0) {
        free(eot);
        return rc;
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *x = s.x + ((size_t)b * T + t) * C;
            const float *pe = m->pos_t + (size_t)t * C;
            token_row(m, ids[(size_t)b * L + t], x);
            for (int i = 0; i < C; i++)
                x[i] += pe[i];
        }
    int need_pool = embeds || (o && (o->pooled || o->projected));
    run_tower(m, &tw, &s, B, T, o, need_pool);
    if (need_pool) {
        for (int b = 0; b < B; b++)
            memcpy(s.a + (size_t)b * C, s.x + ((size_t)b * T + eot[b]) * C,
                   (size_t)C * sizeof(float));
        nn_layernorm_forward(s.h, s.mean, s.rstd, s.a, m->ln_final_w, m->ln_final_b, B, C,
                             c->ln_eps);
        if (m->proj_t)
            nn_linear_forward(s.qkv, s.h, m->proj_t, NULL, B, C, E);
        if (o && o->pooled)
            memcpy(o->pooled, s.h, (size_t)B * C * sizeof(float));
        if (o && o->projected)
            memcpy(o->projected, s.qkv, (size_t)B * E * sizeof(float));
        if (embeds)
            nn_l2norm_forward(embeds, s.mean, s.qkv, B, E, 1e-12f);
    }
    free(s.block);
    free(eot);
    return 0;
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
        backend_cpu_parallel_for(B, 1, prep_range, &p); /* decode + resize in parallel */
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
        backend_cpu_parallel_for(B, 1, prep_img_range, &p);
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
