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
    float *q;      /* (N, C) */
    float *k;      /* (N, C) */
    float *v;      /* (N, C) */
    float *a;      /* (N, C) attention output */
    float *m;      /* (N, M) MLP hidden */
    float *lse;    /* (B, NH, T) the attention's log-sum-exp (unused after) */
    float *mean;   /* (N) */
    float *rstd;   /* (N) */
    float *block;  /* the one allocation */
} Scratch;

static size_t scratch_floats(int B, int T, int C, int M, int NH) {
    size_t N = (size_t)B * (size_t)T;
    return 6 * N * (size_t)C + N * (size_t)M + (size_t)B * (size_t)NH * (size_t)T + 2 * N;
}

static int scratch_init(Scratch *s, int B, int T, int C, int M, int NH, Err *err) {
    size_t N = (size_t)B * (size_t)T;
    s->block = malloc(scratch_floats(B, T, C, M, NH) * sizeof(float));
    if (!s->block)
        return err_set(err, ERR_NOMEM, "clip: no memory for a batch of %d (%zu MB of scratch)", B,
                       scratch_floats(B, T, C, M, NH) * sizeof(float) >> 20);
    float *p = s->block;
    s->x = p, p += N * (size_t)C;
    s->h = p, p += N * (size_t)C;
    s->q = p, p += N * (size_t)C;
    s->k = p, p += N * (size_t)C;
    s->v = p, p += N * (size_t)C;
    s->a = p, p += N * (size_t)C;
    s->m = p, p += N * (size_t)M;
    s->lse = p, p += (size_t)B * (size_t)NH * (size_t)T;
    s->mean = p, p += N;
    s->rstd = p;
    return 0;
}

size_t clip_model_scratch_bytes(const ClipModel *m, int batch) {
    const ClipConfig *c = &m->cfg;
    int B = batch < CLIP_BATCH ? batch : CLIP_BATCH;
    size_t v = scratch_floats(B, 1 + clip_model_n_patches(m), c->vision_width, c->vision_mlp,
                              c->vision_heads);
    size_t t = scratch_floats(B, c->context_length, c->text_width, c->text_mlp, c->text_heads);
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

/* ---- the block ----------------------------------------------------------------------------- */

/* x (B, T, C) in place through one pre-LN residual block. */
static void block_forward(const ClipBlock *b, Scratch *s, int B, int T, int C, int M, int NH,
                          int causal, const ClipConfig *cfg) {
    int N = B * T;
    nn_layernorm_forward(s->h, s->mean, s->rstd, s->x, b->ln1_w, b->ln1_b, N, C, cfg->ln_eps);
    nn_linear_forward(s->q, s->h, b->wq, b->bq, N, C, C);
    nn_linear_forward(s->k, s->h, b->wk, b->bk, N, C, C);
    nn_linear_forward(s->v, s->h, b->wv, b->bv, N, C, C);
    FlashAttn fa = {.B = B, .NH = NH, .Tq = T, .Tk = T, .hd = C / NH, .causal = causal};
    nn_flash_forward(s->a, s->lse, s->q, s->k, s->v, &fa);
    nn_linear_forward(s->h, s->a, b->wo, b->bo, N, C, C);
    nn_add_forward(s->x, s->x, s->h, (size_t)N * (size_t)C);
    nn_layernorm_forward(s->h, s->mean, s->rstd, s->x, b->ln2_w, b->ln2_b, N, C, cfg->ln_eps);
    nn_linear_forward(s->m, s->h, b->fc1_w, b->fc1_b, N, C, M);
    activation(s->m, (size_t)N * (size_t)M, cfg->quick_gelu);
    nn_linear_forward(s->h, s->m, b->fc2_w, b->fc2_b, N, M, C);
    nn_add_forward(s->x, s->x, s->h, (size_t)N * (size_t)C);
}

/* ---- vision -------------------------------------------------------------------------------- */

/* One batch of B <= CLIP_BATCH images. */
static int vision_batch(const ClipModel *m, const float *pixels, int B, float *embeds,
                        float *tokens, Err *err) {
    const ClipConfig *c = &m->cfg;
    int C = c->vision_width, P = c->patch_size, S = c->image_size, G = S / P;
    int NP = G * G, T = NP + 1, E = c->embed_dim, K = 3 * P * P;
    Scratch s;
    int rc = scratch_init(&s, B, T, C, c->vision_mlp, c->vision_heads, err);
    if (rc)
        return rc;
    size_t n_patch = (size_t)B * (size_t)NP * (size_t)K;
    size_t n_out = (size_t)B * (size_t)T * (size_t)E;
    float *extra = malloc((n_patch > n_out ? n_patch : n_out) * sizeof(float));
    float *pooled = malloc((size_t)B * (size_t)(C + E + 1) * sizeof(float));
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
    nn_linear_forward(s.h, extra, m->patch_w, NULL, B * NP, K, C);
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
    for (int l = 0; l < c->vision_layers; l++)
        block_forward(&m->vblocks[l], &s, B, T, C, c->vision_mlp, c->vision_heads, 0, c);
    nn_layernorm_forward(s.h, s.mean, s.rstd, s.x, m->ln_post_w, m->ln_post_b, N, C, c->ln_eps);
    float *norm = pooled + (size_t)B * (size_t)(C + E);
    if (tokens) {
        nn_linear_forward(extra, s.h, m->proj_v, NULL, N, C, E);
        for (int b = 0; b < B; b++) {
            memcpy(pooled + (size_t)B * C + (size_t)b * E, extra + (size_t)b * T * E,
                   (size_t)E * sizeof(float));
            memcpy(tokens + (size_t)b * NP * E, extra + ((size_t)b * T + 1) * E,
                   (size_t)NP * E * sizeof(float));
        }
    } else {
        for (int b = 0; b < B; b++)
            memcpy(pooled + (size_t)b * C, s.h + (size_t)b * T * C, (size_t)C * sizeof(float));
        nn_linear_forward(pooled + (size_t)B * C, pooled, m->proj_v, NULL, B, C, E);
    }
    nn_l2norm_forward(embeds, norm, pooled + (size_t)B * C, B, E, 1e-12f);
    free(pooled);
    free(extra);
    free(s.block);
    return 0;
}

int clip_model_encode_pixels(const ClipModel *m, const float *pixels, int n, float *embeds,
                             float *tokens, Err *err) {
    const ClipConfig *c = &m->cfg;
    size_t img = 3 * (size_t)c->image_size * (size_t)c->image_size;
    size_t tok = (size_t)clip_model_n_patches(m) * (size_t)c->embed_dim;
    for (int i = 0; i < n; i += CLIP_BATCH) {
        int B = n - i < CLIP_BATCH ? n - i : CLIP_BATCH;
        int rc = vision_batch(m, pixels + (size_t)i * img, B, embeds + (size_t)i * c->embed_dim,
                              tokens ? tokens + (size_t)i * tok : NULL, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- text ---------------------------------------------------------------------------------- */

static int text_batch(const ClipModel *m, const int32_t *ids, int B, float *embeds, Err *err) {
    const ClipConfig *c = &m->cfg;
    int L = c->context_length, C = c->text_width, E = c->embed_dim;
    /* pooling position: argmax id (the first, as torch.argmax) */
    int *eot = xmalloc((size_t)B * sizeof(int));
    int T = 1;
    for (int b = 0; b < B; b++) {
        const int32_t *r = ids + (size_t)b * L;
        int best = 0;
        for (int t = 0; t < L; t++) {
            if (r[t] < 0 || r[t] >= c->vocab_size) {
                free(eot);
                return err_set(err, ERR_USAGE, "clip: token id %d outside the vocabulary (%d)",
                               r[t], c->vocab_size);
            }
            if (r[t] > r[best])
                best = t;
        }
        eot[b] = best;
        if (best + 1 > T)
            T = best + 1;
    }
    /* causal attention: positions after the last end token cannot change it */
    Scratch s;
    int rc = scratch_init(&s, B, T, C, c->text_mlp, c->text_heads, err);
    if (rc) {
        free(eot);
        return rc;
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *te = m->tok_emb + (size_t)ids[(size_t)b * L + t] * C;
            const float *pe = m->pos_t + (size_t)t * C;
            float *x = s.x + ((size_t)b * T + t) * C;
            for (int i = 0; i < C; i++)
                x[i] = te[i] + pe[i];
        }
    for (int l = 0; l < c->text_layers; l++)
        block_forward(&m->tblocks[l], &s, B, T, C, c->text_mlp, c->text_heads, 1, c);
    for (int b = 0; b < B; b++)
        memcpy(s.q + (size_t)b * C, s.x + ((size_t)b * T + eot[b]) * C, (size_t)C * sizeof(float));
    nn_layernorm_forward(s.h, s.mean, s.rstd, s.q, m->ln_final_w, m->ln_final_b, B, C, c->ln_eps);
    nn_linear_forward(s.k, s.h, m->proj_t, NULL, B, C, E);
    nn_l2norm_forward(embeds, s.mean, s.k, B, E, 1e-12f);
    free(s.block);
    free(eot);
    return 0;
}

int clip_model_encode_ids(const ClipModel *m, const int32_t *ids, int n, float *embeds,
                          Err *err) {
    const ClipConfig *c = &m->cfg;
    for (int i = 0; i < n; i += CLIP_BATCH) {
        int B = n - i < CLIP_BATCH ? n - i : CLIP_BATCH;
        int rc = text_batch(m, ids + (size_t)i * c->context_length, B,
                            embeds + (size_t)i * c->embed_dim, err);
        if (rc != 0)
            return rc;
    }
    return 0;
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
            rc = vision_batch(m, pixels, B, embeds + (size_t)i * c->embed_dim,
                              tokens ? tokens + (size_t)i * tok : NULL, err);
    }
    free(pixels);
    return rc;
}
