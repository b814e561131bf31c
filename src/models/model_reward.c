/* model_reward — the five-head reward model: parameters, forward, losses, backward, AdamW.
 * See model_reward.h for the architecture and the call sequence.
 *
 * DESIGN. Explicit layer-by-layer backward (llm.c), no tape: the graph is fixed and small, so
 * the backward reads top to bottom as the forward in reverse and every saved activation is a
 * named field. Per head the forward keeps h1 = Linear0(x) (LayerNorm's input) and
 * a1 = Dropout(ReLU(LayerNorm(h1))) in one buffer (ReLU and dropout run in place: ReLU's
 * backward only needs the sign of its output, and a dropped element has zero gradient either
 * way), then the same at width hidden2, then the score. The backward runs the heads one after
 * another through four shared scratch buffers; it never regenerates a dropout mask, because
 * a1 > 0 exactly where an element was both kept and positive.
 *
 * Blocks: params, grads, and one AdamW block holding adam_m then adam_v (n_params floats
 * each, same layout; the parameter table gives each tensor's offset) and one activation arena sized by a measuring pass of the
 * same allocation sequence (plan_activations).
 */
#include "model_reward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "nn_activation.h"
#include "nn_dropout.h"
#include "nn_elementwise.h"
#include "nn_linear.h"
#include "nn_norm.h"
#include "nn_softmax.h"
#include "rng.h"
#include "tensor.h"

#define LN_EPS 1e-5f
#define MAX_PARAMS (REWARD_N_HEADS * 2 * REWARD_N_LAYERS + 1 + 4)

const char *const reward_head_names[REWARD_N_HEADS] = {"spatial", "icono", "style", "fidelity",
                                                       "material"};

/* One head's tensors (parameters or their gradients). */
typedef struct HeadParams {
    float *w0;    /* (H1, in) */
    float *b0;    /* (H1) */
    float *ln1w;  /* (H1) */
    float *ln1b;  /* (H1) */
    float *w4;    /* (H2, H1) */
    float *b4;    /* (H2) */
    float *ln2w;  /* (H2) */
    float *ln2b;  /* (H2) */
    float *w8;    /* (1, H2) */
    float *b8;    /* (1) */
} HeadParams;

typedef struct ModelTensors {
    HeadParams head[REWARD_N_HEADS];
    float *head_weights;  /* (5) */
    float *ipw;           /* cross_attention.in_proj_weight (3C, C) */
    float *ipb;           /* cross_attention.in_proj_bias (3C) */
    float *opw;           /* cross_attention.out_proj.weight (C, C) */
    float *opb;           /* cross_attention.out_proj.bias (C) */
} ModelTensors;

/* Per-head activations, (N, width) each at most max_batch rows. */
typedef struct HeadActs {
    float *h1;     /* (B, H1) Linear0 output */
    float *a1;     /* (B, H1) dropout(relu(layernorm(h1))) */
    float *mean1;  /* (B) */
    float *rstd1;  /* (B) */
    float *h2;     /* (B, H2) */
    float *a2;     /* (B, H2) */
    float *mean2;  /* (B) */
    float *rstd2;  /* (B) */
    float *s;      /* (B) score */
} HeadActs;

typedef struct Acts {
    float *fused;     /* (B, in) what the heads read */
    float *txt;       /* (B, C) copy of the text rows (cross_attention query) */
    float *keys;      /* (B, Tk, C) image tokens (cross_attention keys/values) */
    float *attn;      /* (B, C) attention output */
    float *mha_cache; /* nn_mha_cache_floats */
    float *mha_scratch;
    float *dfused;    /* (B, in) cross_attention only */
    HeadActs head[REWARD_N_HEADS];
    float *scores;    /* (B, 5) */
    float *combined;  /* (B) */
    float *dscores;   /* (B, 5) */
    float *dcombined; /* (B) */
    float *g1a, *g1b; /* (B, H1) backward scratch */
    float *g2a, *g2b; /* (B, H2) */
    float *gs;        /* (B) */
} Acts;

struct RewardModel {
    RewardConfig cfg;
    int in_dim;          /* fused width */
    int n_keys;          /* cross-attention keys per sample */
    size_t n_params;
    float *params;       /* (n_params) one block */
    float *grads;        /* (n_params) one block, same layout */
    float *adam_m;       /* (n_params) the AdamW state block: m ... */
    float *adam_v;       /* (n_params) ... then v, in the same block */
    ModelTensors p;      /* views into params */
    ModelTensors g;      /* views into grads */
    RewardParam table[MAX_PARAMS];
    int n_table;
    Arena arena;         /* activations */
    Acts a;
    MhaCache cache;
    int N;               /* samples in the last forward */
    int paired;          /* concat, and sample P+i has the same text as sample i (see below) */
    int train;           /* the last forward applied dropout */
    uint64_t seed;       /* its dropout seed */
    float hw_soft[REWARD_N_HEADS]; /* softmax(head_weights) at the last forward */
    int t;               /* AdamW steps taken */
};

/* ---- config ----------------------------------------------------------------------------- */

const char *reward_fusion_name(RewardFusion f) {
    switch (f) {
    case REWARD_FUSION_CONCAT: return "concat";
    case REWARD_FUSION_ADD: return "add";
    case REWARD_FUSION_CROSS_ATTENTION: return "cross_attention";
    }
    return "?";
}

int reward_fusion_parse(const char *name) {
    for (int f = 0; f <= REWARD_FUSION_CROSS_ATTENTION; f++)
        if (strcmp(name, reward_fusion_name((RewardFusion)f)) == 0)
            return f;
    return -1;
}

void reward_config_defaults(RewardConfig *cfg, int dim_img, int dim_txt) {
    memset(cfg, 0, sizeof *cfg);
    cfg->dim_img = dim_img;
    cfg->dim_txt = dim_txt;
    cfg->img_rows = 1;
    cfg->fusion = REWARD_FUSION_CONCAT;
    cfg->attn_heads = 8;
    cfg->hidden1 = 512;
    cfg->hidden2 = 256;
    cfg->dropout = 0.1f;
    cfg->max_batch = 16;
    cfg->max_grad_norm = 0.0f;
    cfg->adamw = optim_adamw_defaults();
}

int reward_config_check(const RewardConfig *c, Err *err) {
    if (c->dim_img < 1 || c->dim_txt < 1)
        return err_set(err, ERR_USAGE, "reward model: embedding widths must be positive "
                       "(image %d, text %d)", c->dim_img, c->dim_txt);
    if (c->hidden1 < 1 || c->hidden2 < 1)
        return err_set(err, ERR_USAGE, "reward model: hidden widths must be positive (%d, %d)",
                       c->hidden1, c->hidden2);
    if (c->img_rows < 1)
        return err_set(err, ERR_USAGE, "reward model: img_rows must be at least 1 (got %d)",
                       c->img_rows);
    if (c->max_batch < 1)
        return err_set(err, ERR_USAGE, "reward model: max_batch must be at least 1");
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return err_set(err, ERR_USAGE, "reward model: dropout must be in [0, 1) (got %g)",
                       (double)c->dropout);
    if ((int)c->fusion < 0 || c->fusion > REWARD_FUSION_CROSS_ATTENTION)
        return err_set(err, ERR_USAGE, "reward model: unknown fusion %d", (int)c->fusion);
    if (c->fusion != REWARD_FUSION_CONCAT && c->dim_img != c->dim_txt)
        return err_set(err, ERR_USAGE, "reward model: fusion %s needs equal image and text "
                       "widths (image %d, text %d); use concat", reward_fusion_name(c->fusion),
                       c->dim_img, c->dim_txt);
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION &&
        (c->attn_heads < 1 || c->dim_img % c->attn_heads != 0))
        return err_set(err, ERR_USAGE, "reward model: %d attention heads do not divide the "
                       "width %d", c->attn_heads, c->dim_img);
    return 0;
}

int reward_config_fused_dim(const RewardConfig *c) {
    return c->fusion == REWARD_FUSION_CONCAT ? c->dim_img + c->dim_txt : c->dim_img;
}

/* ---- parameters ------------------------------------------------------------------------- */

static void add_param(RewardModel *m, size_t *off, const char *name, int n_dims, int64_t d0,
                        int64_t d1) {
    ASSERT(m->n_table < MAX_PARAMS);
    RewardParam *p = &m->table[m->n_table++];
    base_strlcpy(p->name, name, sizeof p->name);
    p->n_dims = n_dims;
    p->shape[0] = d0;
    p->shape[1] = n_dims > 1 ? d1 : 1;
    p->numel = (size_t)d0 * (size_t)(n_dims > 1 ? d1 : 1);
    p->offset = *off;
    *off += p->numel;
}

/* Fill the table (names, shapes, offsets); returns the total floats. */
static size_t layout_params(RewardModel *m) {
    const RewardConfig *c = &m->cfg;
    size_t off = 0;
    char nm[80];
    m->n_table = 0;
    for (int h = 0; h < REWARD_N_HEADS; h++) {
        const char *a = reward_head_names[h];
#define P(suffix, nd, d0, d1)                                                                \
    do {                                                                                     \
        snprintf(nm, sizeof nm, "heads.%s.layers.%s", a, suffix);                            \
        add_param(m, &off, nm, nd, d0, d1);                                                  \
    } while (0)
        P("0.weight", 2, c->hidden1, m->in_dim);
        P("0.bias", 1, c->hidden1, 0);
        P("1.weight", 1, c->hidden1, 0);
        P("1.bias", 1, c->hidden1, 0);
        P("4.weight", 2, c->hidden2, c->hidden1);
        P("4.bias", 1, c->hidden2, 0);
        P("5.weight", 1, c->hidden2, 0);
        P("5.bias", 1, c->hidden2, 0);
        P("8.weight", 2, 1, c->hidden2);
        P("8.bias", 1, 1, 0);
#undef P
    }
    add_param(m, &off, "head_weights", 1, REWARD_N_HEADS, 0);
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION) {
        int C = c->dim_img;
        add_param(m, &off, "cross_attention.in_proj_weight", 2, 3 * C, C);
        add_param(m, &off, "cross_attention.in_proj_bias", 1, 3 * C, 0);
        add_param(m, &off, "cross_attention.out_proj.weight", 2, C, C);
        add_param(m, &off, "cross_attention.out_proj.bias", 1, C, 0);
    }
    return off;
}

/* Point a ModelTensors at a block following the table's offsets. */
static void point_tensors(RewardModel *m, ModelTensors *t, float *block) {
    int k = 0;
    for (int h = 0; h < REWARD_N_HEADS; h++) {
        float **f[10] = {&t->head[h].w0, &t->head[h].b0, &t->head[h].ln1w, &t->head[h].ln1b,
                         &t->head[h].w4, &t->head[h].b4, &t->head[h].ln2w, &t->head[h].ln2b,
                         &t->head[h].w8, &t->head[h].b8};
        for (int i = 0; i < 10; i++)
            *f[i] = block + m->table[k++].offset;
    }
    t->head_weights = block + m->table[k++].offset;
    if (m->cfg.fusion == REWARD_FUSION_CROSS_ATTENTION) {
        t->ipw = block + m->table[k++].offset;
        t->ipb = block + m->table[k++].offset;
        t->opw = block + m->table[k++].offset;
        t->opb = block + m->table[k++].offset;
    } else {
        t->ipw = t->ipb = t->opw = t->opb = NULL;
    }
    ASSERT(k == m->n_table);
}

static void init_params(RewardModel *m, uint64_t seed) {
    const RewardConfig *c = &m->cfg;
    Rng r;
    rng_init(&r, seed);
    for (int h = 0; h < REWARD_N_HEADS; h++) {
        HeadParams *p = &m->p.head[h];
        float b0 = 1.0f / sqrtf((float)m->in_dim), b4 = 1.0f / sqrtf((float)c->hidden1),
              b8 = 1.0f / sqrtf((float)c->hidden2);
        rng_fill_uniform(&r, p->w0, (size_t)c->hidden1 * m->in_dim, -b0, b0);
        rng_fill_uniform(&r, p->b0, (size_t)c->hidden1, -b0, b0);
        rng_fill_uniform(&r, p->w4, (size_t)c->hidden2 * c->hidden1, -b4, b4);
        rng_fill_uniform(&r, p->b4, (size_t)c->hidden2, -b4, b4);
        rng_fill_uniform(&r, p->w8, (size_t)c->hidden2, -b8, b8);
        rng_fill_uniform(&r, p->b8, 1, -b8, b8);
        for (int i = 0; i < c->hidden1; i++)
            p->ln1w[i] = 1.0f, p->ln1b[i] = 0.0f;
        for (int i = 0; i < c->hidden2; i++)
            p->ln2w[i] = 1.0f, p->ln2b[i] = 0.0f;
    }
    for (int h = 0; h < REWARD_N_HEADS; h++)
        m->p.head_weights[h] = 0.2f;
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION) {
        int C = c->dim_img;
        float xb = sqrtf(6.0f / (float)(4 * C)), ob = 1.0f / sqrtf((float)C);
        rng_fill_uniform(&r, m->p.ipw, (size_t)3 * C * C, -xb, xb);
        memset(m->p.ipb, 0, (size_t)3 * C * sizeof(float));
        rng_fill_uniform(&r, m->p.opw, (size_t)C * C, -ob, ob);
        memset(m->p.opb, 0, (size_t)C * sizeof(float));
    }
}

/* The activation layout: run once on a measuring arena, once on the real one. */
static void plan_activations(RewardModel *m, Arena *ar) {
    const RewardConfig *c = &m->cfg;
    size_t B = (size_t)c->max_batch, H1 = (size_t)c->hidden1, H2 = (size_t)c->hidden2;
    size_t in = (size_t)m->in_dim;
    Acts *a = &m->a;
    memset(a, 0, sizeof *a);
    a->fused = arena_alloc_f32(ar, B * in);
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION) {
        int C = c->dim_img, Tk = m->n_keys, NH = c->attn_heads;
        a->txt = arena_alloc_f32(ar, B * C);
        a->keys = arena_alloc_f32(ar, B * Tk * C);
        a->attn = arena_alloc_f32(ar, B * C);
        a->mha_cache = arena_alloc_f32(ar, nn_mha_cache_floats((int)B, 1, Tk, C, NH));
        a->mha_scratch = arena_alloc_f32(ar, nn_mha_scratch_floats((int)B, 1, Tk, C, NH));
        a->dfused = arena_alloc_f32(ar, B * in);
    }
    for (int h = 0; h < REWARD_N_HEADS; h++) {
        HeadActs *ha = &a->head[h];
        ha->h1 = arena_alloc_f32(ar, B * H1);
        ha->a1 = arena_alloc_f32(ar, B * H1);
        ha->mean1 = arena_alloc_f32(ar, B);
        ha->rstd1 = arena_alloc_f32(ar, B);
        ha->h2 = arena_alloc_f32(ar, B * H2);
        ha->a2 = arena_alloc_f32(ar, B * H2);
        ha->mean2 = arena_alloc_f32(ar, B);
        ha->rstd2 = arena_alloc_f32(ar, B);
        ha->s = arena_alloc_f32(ar, B);
    }
    a->scores = arena_alloc_f32(ar, B * REWARD_N_HEADS);
    a->combined = arena_alloc_f32(ar, B);
    a->dscores = arena_alloc_f32(ar, B * REWARD_N_HEADS);
    a->dcombined = arena_alloc_f32(ar, B);
    a->g1a = arena_alloc_f32(ar, B * H1);
    a->g1b = arena_alloc_f32(ar, B * H1);
    a->g2a = arena_alloc_f32(ar, B * H2);
    a->g2b = arena_alloc_f32(ar, B * H2);
    a->gs = arena_alloc_f32(ar, B);
}

RewardModel *reward_model_new(const RewardConfig *cfg, uint64_t seed, Err *err) {
    if (reward_config_check(cfg, err) != 0)
        return NULL;
    RewardModel *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->in_dim = reward_config_fused_dim(cfg);
    m->n_keys = cfg->img_rows > 1 ? cfg->img_rows - 1 : 1;
    m->n_params = layout_params(m);
    size_t bytes = m->n_params * sizeof(float);
    /* three blocks: parameters, gradients, and the AdamW state (m then v, each aligned) */
    size_t sizes[3] = {arena_round(bytes), arena_round(bytes), 2 * arena_round(bytes)};
    void *blk[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        if (posix_memalign(&blk[i], TENSOR_ALIGN, sizes[i]) != 0) {
            for (int k = 0; k < i; k++)
                free(blk[k]);
            err_set(err, ERR_NOMEM, "reward model: cannot allocate %zu parameters (%.1f MiB "
                    "per block); reduce the input width", m->n_params, (double)bytes / 1048576.0);
            free(m);
            return NULL;
        }
        memset(blk[i], 0, sizes[i]);
    }
    m->params = blk[0], m->grads = blk[1], m->adam_m = blk[2];
    m->adam_v = m->adam_m + arena_round(bytes) / sizeof(float);
    for (int i = 0; i < m->n_table; i++) {
        m->table[i].data = m->params + m->table[i].offset;
        m->table[i].grad = m->grads + m->table[i].offset;
    }
    point_tensors(m, &m->p, m->params);
    point_tensors(m, &m->g, m->grads);
    Arena measure;
    arena_init_measure(&measure);
    plan_activations(m, &measure);
    if (arena_init(&m->arena, measure.used, err) != 0) {
        err_prefix(err, "reward model activations for batch %d", cfg->max_batch);
        reward_model_free(m);
        return NULL;
    }
    plan_activations(m, &m->arena);
    if (cfg->fusion == REWARD_FUSION_CROSS_ATTENTION)
        nn_mha_cache_point(&m->cache, m->a.mha_cache, cfg->max_batch, 1, m->n_keys,
                           cfg->dim_img, cfg->attn_heads);
    init_params(m, seed);
    return m;
}

void reward_model_free(RewardModel *m) {
    if (!m)
        return;
    free(m->params);
    free(m->grads);
    free(m->adam_m); /* m and v share one block */
    arena_deinit(&m->arena);
    free(m);
}

const RewardConfig *reward_model_config(const RewardModel *m) { return &m->cfg; }

const RewardParam *reward_model_params(const RewardModel *m, int *n_params) {
    *n_params = m->n_table;
    return m->table;
}

const RewardParam *reward_model_param(const RewardModel *m, const char *name) {
    for (int i = 0; i < m->n_table; i++)
        if (strcmp(m->table[i].name, name) == 0)
            return &m->table[i];
    return NULL;
}

float *reward_model_param_block(RewardModel *m, size_t *n) {
    *n = m->n_params;
    return m->params;
}

float *reward_model_grad_block(RewardModel *m, size_t *n) {
    *n = m->n_params;
    return m->grads;
}

float *reward_model_adam_m(RewardModel *m) { return m->adam_m; }
float *reward_model_adam_v(RewardModel *m) { return m->adam_v; }
int reward_model_step_count(const RewardModel *m) { return m->t; }
void reward_model_set_step_count(RewardModel *m, int t) { m->t = t; }

/* ---- forward ---------------------------------------------------------------------------- */

static uint64_t layer_seed(uint64_t seed, int head, int layer) {
    return rng_hash_u64(seed, (uint64_t)(head * 2 + layer));
}

/* A pairs batch compares two images of the same prompt, so under concat fusion samples i and
 * P+i usually carry the same text row. Then Linear0 splits into an image part, computed for
 * all N samples, and a text part computed once per pair: W0·[img, txt] = W0_img·img +
 * W0_txt·txt. That removes a quarter of Linear0's forward and weight-gradient work — most of
 * the model's arithmetic — and the results equal the plain path up to float rounding. */
static int is_paired(const float *txt, int N, int Dt) {
    if (N < 2 || N % 2 != 0)
        return 0;
    size_t half = (size_t)(N / 2) * Dt;
    return memcmp(txt, txt + half, half * sizeof(float)) == 0;
}

static void layer0_paired_forward(RewardModel *m, int h, int N) {
    const RewardConfig *c = &m->cfg;
    const HeadParams *p = &m->p.head[h];
    HeadActs *a = &m->a.head[h];
    int D = c->dim_img, Dt = c->dim_txt, in = m->in_dim, H1 = c->hidden1, P = N / 2;
    const float *img0 = m->a.fused, *txt = m->a.fused + (size_t)N * D;
    float *t = m->a.g1a; /* (P,H1): backward scratch, free during the forward */
    for (int n = 0; n < N; n++)
        memcpy(a->h1 + (size_t)n * H1, p->b0, (size_t)H1 * sizeof(float));
    nn_gemm(0, 1, N, H1, D, img0, D, p->w0, in, 1.0f, a->h1, H1);
    nn_gemm(0, 1, P, H1, Dt, txt, Dt, p->w0 + D, in, 0.0f, t, H1);
    nn_add_forward(a->h1, a->h1, t, (size_t)P * H1);
    nn_add_forward(a->h1 + (size_t)P * H1, a->h1 + (size_t)P * H1, t, (size_t)P * H1);
}

/* Weight and bias gradients of the paired Linear0 from dh1 (N,H1); scratch (P,H1). */
static void layer0_paired_backward(RewardModel *m, int h, int N, const float *dh1,
                                   float *scratch) {
    const RewardConfig *c = &m->cfg;
    HeadParams *g = &m->g.head[h];
    int D = c->dim_img, Dt = c->dim_txt, in = m->in_dim, H1 = c->hidden1, P = N / 2;
    const float *img0 = m->a.fused, *txt = m->a.fused + (size_t)N * D;
    nn_gemm(1, 0, H1, D, N, dh1, H1, img0, D, 0.0f, g->w0, in);
    nn_add_forward(scratch, dh1, dh1 + (size_t)P * H1, (size_t)P * H1);
    nn_gemm(1, 0, H1, Dt, P, scratch, H1, txt, Dt, 0.0f, g->w0 + D, in);
    memset(g->b0, 0, (size_t)H1 * sizeof(float));
    nn_bias_add_backward(NULL, g->b0, dh1, N, H1);
}

static void head_forward(RewardModel *m, int h, int N) {
    const RewardConfig *c = &m->cfg;
    const HeadParams *p = &m->p.head[h];
    HeadActs *a = &m->a.head[h];
    int H1 = c->hidden1, H2 = c->hidden2;
    float pdrop = m->train ? c->dropout : 0.0f;
    if (m->paired)
        layer0_paired_forward(m, h, N);
    else
        nn_linear_forward(a->h1, m->a.fused, p->w0, p->b0, N, m->in_dim, H1);
    nn_layernorm_forward(a->a1, a->mean1, a->rstd1, a->h1, p->ln1w, p->ln1b, N, H1, LN_EPS);
    nn_relu_forward(a->a1, a->a1, (size_t)N * H1);
    if (pdrop > 0.0f)
        nn_dropout_forward(a->a1, a->a1, pdrop, layer_seed(m->seed, h, 0), (size_t)N * H1);
    nn_linear_forward(a->h2, a->a1, p->w4, p->b4, N, H1, H2);
    nn_layernorm_forward(a->a2, a->mean2, a->rstd2, a->h2, p->ln2w, p->ln2b, N, H2, LN_EPS);
    nn_relu_forward(a->a2, a->a2, (size_t)N * H2);
    if (pdrop > 0.0f)
        nn_dropout_forward(a->a2, a->a2, pdrop, layer_seed(m->seed, h, 1), (size_t)N * H2);
    nn_linear_forward(a->s, a->a2, p->w8, p->b8, N, H2, 1);
}

int reward_model_forward(RewardModel *m, const float *img, const float *txt, int N, int train,
                         uint64_t dropout_seed, Err *err) {
    const RewardConfig *c = &m->cfg;
    if (N < 1 || N > c->max_batch)
        return err_set(err, ERR_USAGE, "reward model: batch of %d samples, the model was sized "
                       "for 1..%d", N, c->max_batch);
    m->N = N;
    m->paired = 0;
    m->train = train;
    m->seed = dropout_seed;
    int D = c->dim_img, rows = c->img_rows;
    Acts *a = &m->a;
    switch (c->fusion) {
    case REWARD_FUSION_CONCAT:
        m->paired = is_paired(txt, N, c->dim_txt);
        if (m->paired) { /* fused holds the N image rows, then the P distinct text rows */
            for (int n = 0; n < N; n++)
                memcpy(a->fused + (size_t)n * D, img + (size_t)n * rows * D,
                       (size_t)D * sizeof(float));
            memcpy(a->fused + (size_t)N * D, txt, (size_t)(N / 2) * c->dim_txt * sizeof(float));
            break;
        }
        for (int n = 0; n < N; n++) {
            memcpy(a->fused + (size_t)n * m->in_dim, img + (size_t)n * rows * D,
                   (size_t)D * sizeof(float));
            memcpy(a->fused + (size_t)n * m->in_dim + D, txt + (size_t)n * c->dim_txt,
                   (size_t)c->dim_txt * sizeof(float));
        }
        break;
    case REWARD_FUSION_ADD:
        for (int n = 0; n < N; n++)
            nn_add_forward(a->fused + (size_t)n * D, img + (size_t)n * rows * D,
                           txt + (size_t)n * D, (size_t)D);
        break;
    case REWARD_FUSION_CROSS_ATTENTION: {
        int Tk = m->n_keys, first = rows > 1 ? 1 : 0;
        memcpy(a->txt, txt, (size_t)N * D * sizeof(float));
        for (int n = 0; n < N; n++)
            memcpy(a->keys + (size_t)n * Tk * D, img + ((size_t)n * rows + first) * D,
                   (size_t)Tk * D * sizeof(float));
        nn_mha_forward(a->attn, &m->cache, a->txt, a->keys, a->keys, m->p.ipw, m->p.ipb,
                       m->p.opw, m->p.opb, NULL, N, 1, Tk, D, c->attn_heads);
        for (int n = 0; n < N; n++)
            nn_add_forward(a->fused + (size_t)n * D, img + (size_t)n * rows * D,
                           a->attn + (size_t)n * D, (size_t)D);
        break;
    }
    }
    for (int h = 0; h < REWARD_N_HEADS; h++)
        head_forward(m, h, N);
    nn_softmax_forward(m->hw_soft, m->p.head_weights, 1, REWARD_N_HEADS);
    for (int n = 0; n < N; n++) {
        float comb = 0.0f;
        for (int h = 0; h < REWARD_N_HEADS; h++) {
            float s = a->head[h].s[n];
            a->scores[(size_t)n * REWARD_N_HEADS + h] = s;
            comb += m->hw_soft[h] * s;
        }
        a->combined[n] = comb;
    }
    return 0;
}

const float *reward_model_scores(const RewardModel *m) { return m->a.scores; }
const float *reward_model_combined(const RewardModel *m) { return m->a.combined; }

void reward_model_head_importance(const RewardModel *m, float out[REWARD_N_HEADS]) {
    nn_softmax_forward(out, m->p.head_weights, 1, REWARD_N_HEADS);
}

/* ---- losses ----------------------------------------------------------------------------- */

/* BCE(d, y) and its derivative σ(d) − y. */
static float bce(float d, float y) {
    return -(y * nn_logsigmoidf(d) + (1.0f - y) * nn_logsigmoidf(-d));
}

int reward_model_loss_pairs(RewardModel *m, const RewardPairBatch *b, RewardLoss *loss,
                            Err *err) {
    int P = b->n_pairs;
    if (P < 1 || 2 * P != m->N)
        return err_set(err, ERR_USAGE, "reward model: %d pairs need a forward on %d samples, "
                       "the last forward had %d", P, 2 * P, m->N);
    Acts *a = &m->a;
    memset(loss, 0, sizeof *loss);
    memset(a->dscores, 0, (size_t)m->N * REWARD_N_HEADS * sizeof(float));
    memset(a->dcombined, 0, (size_t)m->N * sizeof(float));
    int n_rel = 0, n_irr = 0;
    for (int i = 0; i < P; i++) {
        if (b->irrelevant && b->irrelevant[i]) {
            n_irr++;
            continue;
        }
        n_rel++;
        for (int h = 0; h < REWARD_N_HEADS; h++)
            if (fabsf(b->labels[i * REWARD_N_HEADS + h] - 0.5f) > 1e-6f)
                loss->n_head[h]++;
    }
    float w_irr = n_irr > 0 ? b->irrelevant_weight / (float)n_irr : 0.0f;
    for (int i = 0; i < P; i++) {
        const float *sa = a->scores + (size_t)i * REWARD_N_HEADS;
        const float *sb = a->scores + (size_t)(P + i) * REWARD_N_HEADS;
        float *da = a->dscores + (size_t)i * REWARD_N_HEADS;
        float *db = a->dscores + (size_t)(P + i) * REWARD_N_HEADS;
        float dc = a->combined[i] - a->combined[P + i];
        if (b->irrelevant && b->irrelevant[i]) {
            if (w_irr == 0.0f)
                continue;
            for (int h = 0; h < REWARD_N_HEADS; h++) {
                float d = sa[h] - sb[h];
                loss->irrelevant += w_irr * bce(d, 0.5f);
                float g = w_irr * (nn_sigmoidf(d) - 0.5f);
                da[h] += g;
                db[h] -= g;
            }
            loss->irrelevant += w_irr * bce(dc, 0.5f);
            float g = w_irr * (nn_sigmoidf(dc) - 0.5f);
            a->dcombined[i] += g;
            a->dcombined[P + i] -= g;
            continue;
        }
        const float *y = b->labels + (size_t)i * REWARD_N_HEADS;
        float ymean = 0.0f;
        for (int h = 0; h < REWARD_N_HEADS; h++) {
            ymean += y[h];
            if (fabsf(y[h] - 0.5f) <= 1e-6f)
                continue;
            float d = sa[h] - sb[h], inv = 1.0f / (float)loss->n_head[h];
            loss->head[h] += inv * bce(d, y[h]);
            float g = inv * (nn_sigmoidf(d) - y[h]);
            da[h] += g;
            db[h] -= g;
        }
        float yc = b->label_combined ? b->label_combined[i] : ymean / REWARD_N_HEADS;
        float inv = 1.0f / (float)n_rel;
        loss->combined += inv * bce(dc, yc);
        float g = inv * (nn_sigmoidf(dc) - yc);
        a->dcombined[i] += g;
        a->dcombined[P + i] -= g;
    }
    loss->total = loss->combined + loss->irrelevant;
    for (int h = 0; h < REWARD_N_HEADS; h++)
        loss->total += loss->head[h];
    return 0;
}

int reward_model_loss_regression(RewardModel *m, const float *ratings, RewardLoss *loss,
                                 Err *err) {
    (void)err;
    Acts *a = &m->a;
    int N = m->N;
    memset(loss, 0, sizeof *loss);
    memset(a->dscores, 0, (size_t)N * REWARD_N_HEADS * sizeof(float));
    memset(a->dcombined, 0, (size_t)N * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int h = 0; h < REWARD_N_HEADS; h++)
            if (!isnan(ratings[n * REWARD_N_HEADS + h]))
                loss->n_head[h]++;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < REWARD_N_HEADS; h++) {
            size_t k = (size_t)n * REWARD_N_HEADS + h;
            if (isnan(ratings[k]))
                continue;
            float inv = 1.0f / (float)loss->n_head[h], e = a->scores[k] - ratings[k];
            loss->head[h] += inv * e * e;
            a->dscores[k] += inv * 2.0f * e;
        }
    for (int h = 0; h < REWARD_N_HEADS; h++)
        loss->total += loss->head[h];
    return 0;
}

/* ---- backward --------------------------------------------------------------------------- */

void reward_model_zero_grad(RewardModel *m) {
    memset(m->grads, 0, m->n_params * sizeof(float));
}

static void head_backward(RewardModel *m, int h, int N) {
    const RewardConfig *c = &m->cfg;
    const HeadParams *p = &m->p.head[h];
    HeadParams *g = &m->g.head[h];
    HeadActs *a = &m->a.head[h];
    Acts *A = &m->a;
    int H1 = c->hidden1, H2 = c->hidden2;
    size_t n1 = (size_t)N * H1, n2 = (size_t)N * H2;
    float pdrop = m->train ? c->dropout : 0.0f;
    for (int n = 0; n < N; n++)
        A->gs[n] = A->dscores[(size_t)n * REWARD_N_HEADS + h];
    /* score = Linear8(a2) */
    memset(A->g2a, 0, n2 * sizeof(float));
    nn_linear_backward_set(A->g2a, g->w8, g->b8, A->gs, a->a2, p->w8, N, H2, 1);
    /* a2 = dropout(relu(ln2)): a2 > 0 exactly where the element was kept and positive, so
     * the gradient is dout·[a2 > 0]/(1−p) and the mask need not be regenerated */
    memset(A->g2b, 0, n2 * sizeof(float));
    nn_relu_backward(A->g2b, A->g2a, a->a2, n2);
    if (pdrop > 0.0f)
        nn_scale_forward(A->g2b, A->g2b, 1.0f / (1.0f - pdrop), n2);
    memset(A->g2a, 0, n2 * sizeof(float));
    nn_layernorm_backward(A->g2a, g->ln2w, g->ln2b, A->g2b, a->h2, p->ln2w, a->mean2, a->rstd2,
                          N, H2);
    /* h2 = Linear4(a1) */
    memset(A->g1a, 0, n1 * sizeof(float));
    nn_linear_backward_set(A->g1a, g->w4, g->b4, A->g2a, a->a1, p->w4, N, H1, H2);
    memset(A->g1b, 0, n1 * sizeof(float));
    nn_relu_backward(A->g1b, A->g1a, a->a1, n1);
    if (pdrop > 0.0f)
        nn_scale_forward(A->g1b, A->g1b, 1.0f / (1.0f - pdrop), n1);
    memset(A->g1a, 0, n1 * sizeof(float));
    nn_layernorm_backward(A->g1a, g->ln1w, g->ln1b, A->g1b, a->h1, p->ln1w, a->mean1, a->rstd1,
                          N, H1);
    /* h1 = Linear0(fused): the fused input only needs a gradient under cross-attention */
    float *dfused = c->fusion == REWARD_FUSION_CROSS_ATTENTION ? A->dfused : NULL;
    if (m->paired)
        layer0_paired_backward(m, h, N, A->g1a, A->g1b);
    else
        nn_linear_backward_set(dfused, g->w0, g->b0, A->g1a, A->fused, p->w0, N, m->in_dim, H1);
}

void reward_model_backward(RewardModel *m) {
    const RewardConfig *c = &m->cfg;
    Acts *a = &m->a;
    int N = m->N;
    /* combined = Σ_h softmax(hw)_h · s_h */
    float dsoft[REWARD_N_HEADS] = {0};
    for (int n = 0; n < N; n++) {
        float dc = a->dcombined[n];
        if (dc == 0.0f)
            continue;
        for (int h = 0; h < REWARD_N_HEADS; h++) {
            a->dscores[(size_t)n * REWARD_N_HEADS + h] += m->hw_soft[h] * dc;
            dsoft[h] += a->head[h].s[n] * dc;
        }
    }
    /* Every gradient is overwritten: the Linear layers' by nn_linear_backward_set, the rest
     * (LayerNorms, head_weights, cross_attention: small) are cleared here, then added to. */
    for (int h = 0; h < REWARD_N_HEADS; h++) {
        memset(m->g.head[h].ln1w, 0, (size_t)c->hidden1 * sizeof(float));
        memset(m->g.head[h].ln1b, 0, (size_t)c->hidden1 * sizeof(float));
        memset(m->g.head[h].ln2w, 0, (size_t)c->hidden2 * sizeof(float));
        memset(m->g.head[h].ln2b, 0, (size_t)c->hidden2 * sizeof(float));
    }
    memset(m->g.head_weights, 0, REWARD_N_HEADS * sizeof(float));
    nn_softmax_backward(m->g.head_weights, dsoft, m->hw_soft, 1, REWARD_N_HEADS);
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION) {
        size_t C = (size_t)c->dim_img;
        memset(m->g.ipw, 0, 3 * C * C * sizeof(float));
        memset(m->g.ipb, 0, 3 * C * sizeof(float));
        memset(m->g.opw, 0, C * C * sizeof(float));
        memset(m->g.opb, 0, C * sizeof(float));
        memset(a->dfused, 0, (size_t)N * m->in_dim * sizeof(float));
    }
    for (int h = 0; h < REWARD_N_HEADS; h++)
        head_backward(m, h, N);
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION) {
        /* fused = img + attn: the attention output's gradient is dfused */
        nn_mha_backward(NULL, NULL, NULL, m->g.ipw, m->g.ipb, m->g.opw, m->g.opb,
                        a->mha_scratch, a->dfused, &m->cache, a->txt, a->keys, a->keys,
                        m->p.ipw, m->p.opw, N, 1, m->n_keys, c->dim_img, c->attn_heads);
    }
}

float reward_model_step(RewardModel *m, float lr, int want_norm) {
    float norm = 0.0f;
    if (m->cfg.max_grad_norm > 0.0f)
        norm = optim_clip_grad_norm(m->grads, m->n_params, m->cfg.max_grad_norm);
    else if (want_norm)
        norm = optim_grad_norm(m->grads, m->n_params);
    m->t++;
    optim_adamw_step(m->params, m->grads, m->adam_m, m->adam_v, m->n_params, m->t, lr,
                     &m->cfg.adamw, 0);
    return norm;
}
