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
 * each, same layout; the parameter table gives each tensor's offset), all from
 * backend_malloc, and the activations in one block of the backend's arena, laid out by a
 * measuring pass of the same allocation sequence (plan_activations). Every layer is a backend
 * op on device memory; the host sees the inputs (staged, or written in place on the CPU), the
 * scores (downloaded once per forward) and the losses, which it computes with the
 * head-weight softmax (N·5 values). On the CPU backend each op is the nn_* call this file
 * made before the backend existed, in the same order: the same bits.
 */
#include "model_reward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_activation.h"
#include "nn_elementwise.h"
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

/* Per-head activations, (N, width) each at most max_batch rows; on the backend's device. */
typedef struct HeadActs {
    float *h1;     /* (B, H1) Linear0 output */
    float *a1;     /* (B, H1) dropout(relu(layernorm(h1))) */
    float *mean1;  /* (B) */
    float *rstd1;  /* (B) */
    float *h2;     /* (B, H2) */
    float *a2;     /* (B, H2) */
    float *mean2;  /* (B) */
    float *rstd2;  /* (B) */
    float *s;      /* (B) score: row h of s_all */
    float *gs;     /* (B) its gradient: row h of gs_all */
} HeadActs;

/* Device activations (the backend's arena) */
typedef struct Acts {
    float *fused;     /* (B, in) what the heads read */
    float *txt;       /* (B, C) copy of the text rows (cross_attention query) */
    float *keys;      /* (B, Tk, C) image tokens (cross_attention keys/values) */
    float *attn;      /* (B, C) attention output (out_proj) */
    float *q, *k, *v; /* (B, C), (B, Tk, C) x2: projections (the MultiheadAttention cache) */
    float *ctx;       /* (B, C) attention before out_proj */
    float *lse;       /* (B, NH) */
    float *dctx, *dq, *dk, *dv; /* backward scratch of the same shapes */
    float *dfused;    /* (B, in) cross_attention only */
    HeadActs head[REWARD_N_HEADS];
    float *s_all;     /* (5, B) head scores */
    float *gs_all;    /* (5, B) their gradients */
    float *ones;      /* (B) ones: the paired first layer's bias broadcast */
    float *g1a, *g1b; /* (B, H1) backward scratch */
    float *g2a, *g2b; /* (B, H2) */
} Acts;

/* Host buffers (malloc'd): results and loss gradients, and the staging of inputs and scores
 * when the backend's memory is not the host's. */
typedef struct HostBufs {
    float *scores;    /* (B, 5) */
    float *combined;  /* (B) */
    float *dscores;   /* (B, 5) */
    float *dcombined; /* (B) */
    float *stage;     /* (B, max(in, img_rows·C + C)) inputs on their way to the device */
    float *s_all;     /* (5, B) scores downloaded */
    float *gs_all;    /* (5, B) gradients to upload */
    float hw[REWARD_N_HEADS];      /* head_weights (a host copy) */
    float hw_grad[REWARD_N_HEADS];
} HostBufs;

struct RewardModel {
    RewardConfig cfg;
    int in_dim;          /* fused width */
    int n_keys;          /* cross-attention keys per sample */
    size_t n_params;
    Backend *be;         /* where the blocks live and the ops run */
    int own_be;          /* reward_model_new opened it */
    int on_host;         /* be's memory is host memory (the CPU backend): read in place */
    size_t arena_mark;   /* the backend arena's mark before the activations */
    float *params;       /* (n_params) one block */
    float *grads;        /* (n_params) one block, same layout */
    float *adam_m;       /* (n_params) the AdamW state block: m ... */
    float *adam_v;       /* (n_params) ... then v, in the same block */
    ModelTensors p;      /* views into params */
    ModelTensors g;      /* views into grads */
    RewardParam table[MAX_PARAMS];
    int n_table;
    Arena arena;         /* activations: over a block of the backend's arena */
    Acts a;
    HostBufs h;
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

static void init_params(RewardModel *m, const ModelTensors *pt, uint64_t seed) {
    const RewardConfig *c = &m->cfg;
    Rng r;
    rng_init(&r, seed);
    for (int h = 0; h < REWARD_N_HEADS; h++) {
        const HeadParams *p = &pt->head[h];
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
        pt->head_weights[h] = 0.2f;
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION) {
        int C = c->dim_img;
        float xb = sqrtf(6.0f / (float)(4 * C)), ob = 1.0f / sqrtf((float)C);
        rng_fill_uniform(&r, pt->ipw, (size_t)3 * C * C, -xb, xb);
        memset(pt->ipb, 0, (size_t)3 * C * sizeof(float));
        rng_fill_uniform(&r, pt->opw, (size_t)C * C, -ob, ob);
        memset(pt->opb, 0, (size_t)C * sizeof(float));
    }
}

/* The activation layout: run once on a measuring arena, once on the real one. */
static void plan_activations(const RewardConfig *c, int in_dim, int n_keys, Acts *a, Arena *ar) {
    size_t B = (size_t)c->max_batch, H1 = (size_t)c->hidden1, H2 = (size_t)c->hidden2;
    size_t in = (size_t)in_dim;
    memset(a, 0, sizeof *a);
    a->fused = arena_alloc_f32(ar, B * in);
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION) {
        size_t C = (size_t)c->dim_img, Tk = (size_t)n_keys, NH = (size_t)c->attn_heads;
        a->txt = arena_alloc_f32(ar, B * C);
        a->keys = arena_alloc_f32(ar, B * Tk * C);
        a->attn = arena_alloc_f32(ar, B * C);
        a->q = arena_alloc_f32(ar, B * C);
        a->k = arena_alloc_f32(ar, B * Tk * C);
        a->v = arena_alloc_f32(ar, B * Tk * C);
        a->ctx = arena_alloc_f32(ar, B * C);
        a->lse = arena_alloc_f32(ar, B * NH);
        a->dctx = arena_alloc_f32(ar, B * C);
        a->dq = arena_alloc_f32(ar, B * C);
        a->dk = arena_alloc_f32(ar, B * Tk * C);
        a->dv = arena_alloc_f32(ar, B * Tk * C);
        a->dfused = arena_alloc_f32(ar, B * in);
    }
    a->s_all = arena_alloc_f32(ar, REWARD_N_HEADS * B);
    a->gs_all = arena_alloc_f32(ar, REWARD_N_HEADS * B);
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
        ha->s = a->s_all ? a->s_all + (size_t)h * B : NULL;
        ha->gs = a->gs_all ? a->gs_all + (size_t)h * B : NULL;
    }
    a->ones = arena_alloc_f32(ar, B);
    a->g1a = arena_alloc_f32(ar, B * H1);
    a->g1b = arena_alloc_f32(ar, B * H1);
    a->g2a = arena_alloc_f32(ar, B * H2);
    a->g2b = arena_alloc_f32(ar, B * H2);
}

size_t reward_model_arena_bytes(const RewardConfig *cfg) {
    Arena measure;
    Acts a;
    arena_init_measure(&measure);
    int keys = cfg->img_rows > 1 ? cfg->img_rows - 1 : 1;
    plan_activations(cfg, reward_config_fused_dim(cfg), keys, &a, &measure);
    /* + what the ops take from the arena while the model runs (none at f32 today) */
    return measure.used + ((size_t)1 << 20);
}

/* A tensor view of device memory p: (d0) when d1 == 0, else (d0, d1). */
static Tensor TV(const RewardModel *m, const float *p, int64_t d0, int64_t d1) {
    Tensor t = d1 ? tensor_2d((float *)p, d0, d1) : tensor_1d((float *)p, d0);
    t.device = backend_device(m->be);
    return t;
}

static Tensor T3(const RewardModel *m, const float *p, int64_t d0, int64_t d1, int64_t d2) {
    Tensor t = tensor_3d((float *)p, d0, d1, d2);
    t.device = backend_device(m->be);
    return t;
}

/* dst (device) = src (host), n floats; and back. */
static void put(RewardModel *m, float *dst, const float *src, size_t n) {
    if (n == 0)
        return;
    Tensor d = TV(m, dst, (int64_t)n, 0), h = tensor_1d((float *)src, (int64_t)n);
    backend_upload(m->be, &d, &h);
}

static void get(RewardModel *m, float *dst, const float *src, size_t n) {
    if (n == 0)
        return;
    Tensor h = tensor_1d(dst, (int64_t)n), d = TV(m, src, (int64_t)n, 0);
    backend_download(m->be, &h, &d);
}

static void zero(RewardModel *m, float *p, size_t n) {
    Tensor t = TV(m, p, (int64_t)n, 0);
    backend_zero(m->be, &t);
}

int reward_model_open(const RewardConfig *cfg, uint64_t seed, Backend *be, RewardModel **out,
                      Err *err) {
    *out = NULL;
    if (reward_config_check(cfg, err) != 0)
        return err ? err->code : ERR_USAGE;
    RewardModel *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    m->on_host = backend_device(be) == TENSOR_DEVICE_CPU;
    m->in_dim = reward_config_fused_dim(cfg);
    m->n_keys = cfg->img_rows > 1 ? cfg->img_rows - 1 : 1;
    m->n_params = layout_params(m);
    m->arena_mark = backend_mark(be);
    size_t bytes = m->n_params * sizeof(float), rb = arena_round(bytes);
    /* three blocks: parameters, gradients, and the AdamW state (m then v, each aligned) */
    m->params = backend_malloc(be, rb);
    m->grads = backend_malloc(be, rb);
    m->adam_m = backend_malloc(be, 2 * rb);
    int rc = 0;
    Err e = {0};
    if (!m->params || !m->grads || !m->adam_m) {
        backend_sync(be, &e);
        rc = err_set(err, ERR_NOMEM, "reward model: cannot allocate %zu parameters (%.1f MiB "
                     "per block) on %s; reduce the input width", m->n_params,
                     (double)bytes / 1048576.0, backend_name(be));
        goto fail;
    }
    m->adam_v = m->adam_m + rb / sizeof(float);
    for (int i = 0; i < m->n_table; i++) {
        m->table[i].data = m->params + m->table[i].offset;
        m->table[i].grad = m->grads + m->table[i].offset;
    }
    point_tensors(m, &m->p, m->params);
    point_tensors(m, &m->g, m->grads);
    zero(m, m->grads, rb / sizeof(float));
    zero(m, m->adam_m, 2 * rb / sizeof(float));
    /* activations: one block of the backend's arena, laid out by the measuring pass */
    Arena measure;
    arena_init_measure(&measure);
    plan_activations(cfg, m->in_dim, m->n_keys, &m->a, &measure);
    Tensor blk = backend_alloc(be, DTYPE_F32, 1, (int64_t[]){(int64_t)(measure.used / 4)});
    if (!blk.ptr) {
        backend_sync(be, &e);
        rc = err_set(err, ERR_NOMEM, "reward model activations for batch %d (%.1f MiB): %s",
                     cfg->max_batch, (double)measure.used / 1048576.0, e.msg);
        goto fail;
    }
    arena_init_over(&m->arena, blk.ptr, measure.used);
    plan_activations(cfg, m->in_dim, m->n_keys, &m->a, &m->arena);
    /* host buffers */
    size_t B = (size_t)cfg->max_batch, C = (size_t)cfg->dim_img;
    size_t stage = (size_t)m->in_dim;
    if (cfg->fusion == REWARD_FUSION_CROSS_ATTENTION)
        stage = (size_t)m->n_keys * C + C;
    m->h.scores = xcalloc(B * REWARD_N_HEADS, sizeof(float));
    m->h.combined = xcalloc(B, sizeof(float));
    m->h.dscores = xcalloc(B * REWARD_N_HEADS, sizeof(float));
    m->h.dcombined = xcalloc(B, sizeof(float));
    m->h.s_all = xcalloc(B * REWARD_N_HEADS, sizeof(float));
    m->h.gs_all = xcalloc(B * REWARD_N_HEADS, sizeof(float));
    if (!m->on_host)
        m->h.stage = xcalloc(B * stage, sizeof(float));
    float *ones = xmalloc(B * sizeof(float));
    for (size_t i = 0; i < B; i++)
        ones[i] = 1.0f;
    put(m, m->a.ones, ones, B);
    free(ones);
    /* parameters: initialised in place on the host, else on the host and uploaded */
    if (m->on_host) {
        init_params(m, &m->p, seed);
    } else {
        float *tmp = xcalloc(m->n_params, sizeof(float));
        ModelTensors ht;
        point_tensors(m, &ht, tmp);
        init_params(m, &ht, seed);
        put(m, m->params, tmp, m->n_params);
        free(tmp);
    }
    if ((rc = backend_sync(be, err)) != 0) {
        err_prefix(err, "reward model on %s", backend_name(be));
        goto fail;
    }
    *out = m;
    return 0;
fail:
    reward_model_free(m);
    return rc;
}

RewardModel *reward_model_new(const RewardConfig *cfg, uint64_t seed, Err *err) {
    if (reward_config_check(cfg, err) != 0)
        return NULL;
    BackendConfig bc = {backend_cpu_threads(), reward_model_arena_bytes(cfg)};
    Backend *be = NULL;
    if (backend_open("cpu", &bc, &be, NULL, 0, err) != 0)
        return NULL;
    RewardModel *m = NULL;
    if (reward_model_open(cfg, seed, be, &m, err) != 0) {
        backend_close(be);
        return NULL;
    }
    m->own_be = 1;
    return m;
}

void reward_model_free(RewardModel *m) {
    if (!m)
        return;
    if (m->arena.base)
        backend_reset(m->be, m->arena_mark);
    backend_free(m->be, m->params);
    backend_free(m->be, m->grads);
    backend_free(m->be, m->adam_m); /* m and v share one block */
    free(m->h.scores);
    free(m->h.combined);
    free(m->h.dscores);
    free(m->h.dcombined);
    free(m->h.stage);
    free(m->h.s_all);
    free(m->h.gs_all);
    if (m->own_be)
        backend_close(m->be);
    free(m);
}

const RewardConfig *reward_model_config(const RewardModel *m) { return &m->cfg; }
Backend *reward_model_backend(const RewardModel *m) { return m->be; }

int reward_model_sync(RewardModel *m, Err *err) { return backend_sync(m->be, err); }

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

int reward_model_read_state(RewardModel *m, float *params, float *adam_m, float *adam_v,
                            Err *err) {
    if (params)
        get(m, params, m->params, m->n_params);
    if (adam_m)
        get(m, adam_m, m->adam_m, m->n_params);
    if (adam_v)
        get(m, adam_v, m->adam_v, m->n_params);
    return backend_sync(m->be, err);
}

int reward_model_write_state(RewardModel *m, const float *params, const float *adam_m,
                             const float *adam_v, Err *err) {
    if (params)
        put(m, m->params, params, m->n_params);
    if (adam_m)
        put(m, m->adam_m, adam_m, m->n_params);
    if (adam_v)
        put(m, m->adam_v, adam_v, m->n_params);
    return backend_sync(m->be, err);
}

int reward_model_read_param(RewardModel *m, const RewardParam *p, float *dst, Err *err) {
    get(m, dst, p->data, p->numel);
    return backend_sync(m->be, err);
}

/* head_weights on the host (the parameter itself on the CPU backend). */
static const float *host_head_weights(RewardModel *m) {
    if (m->on_host)
        return m->p.head_weights;
    get(m, m->h.hw, m->p.head_weights, REWARD_N_HEADS);
    return m->h.hw;
}

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

/* c (M,N, ldc, from c_off) = op(a)·op(b) + beta·c on parts of device blocks (backend_gemm). */
static void gemm(RewardModel *m, int ta, int tb, int M, int N, int K, const float *a,
                 size_t a_n, size_t a_off, int lda, const float *b, size_t b_n, size_t b_off,
                 int ldb, float beta, float *c, size_t c_n, size_t c_off, int ldc) {
    Tensor A = TV(m, a, (int64_t)a_n, 0), Bt = TV(m, b, (int64_t)b_n, 0),
           Ct = TV(m, c, (int64_t)c_n, 0);
    BackendGemm g = {ta, tb, M, N, K, a_off, b_off, c_off, lda, ldb, ldc, beta};
    backend_gemm(m->be, &Ct, &A, &Bt, &g);
}

static void layer0_paired_forward(RewardModel *m, int h, int N) {
    const RewardConfig *c = &m->cfg;
    const HeadParams *p = &m->p.head[h];
    HeadActs *a = &m->a.head[h];
    int D = c->dim_img, Dt = c->dim_txt, in = m->in_dim, H1 = c->hidden1, P = N / 2;
    size_t nw = (size_t)H1 * in, nh = (size_t)N * H1, np = (size_t)P * H1;
    const float *img0 = m->a.fused, *txt = m->a.fused + (size_t)N * D;
    float *t = m->a.g1a; /* (P,H1): backward scratch, free during the forward */
    /* h1 = 1·b0 (each row the bias, exactly), += img·W0_imgᵀ; t = txt·W0_txtᵀ */
    gemm(m, 0, 0, N, H1, 1, m->a.ones, (size_t)N, 0, 1, p->b0, (size_t)H1, 0, H1, 0.0f, a->h1,
         nh, 0, H1);
    gemm(m, 0, 1, N, H1, D, img0, (size_t)N * D, 0, D, p->w0, nw, 0, in, 1.0f, a->h1, nh, 0, H1);
    gemm(m, 0, 1, P, H1, Dt, txt, (size_t)P * Dt, 0, Dt, p->w0, nw, (size_t)D, in, 0.0f, t, np,
         0, H1);
    Tensor tt = TV(m, t, (int64_t)np, 0), lo = TV(m, a->h1, (int64_t)np, 0),
           hi = TV(m, a->h1 + np, (int64_t)np, 0);
    backend_add(m->be, &lo, &lo, &tt);
    backend_add(m->be, &hi, &hi, &tt);
}

/* Weight and bias gradients of the paired Linear0 from dh1 (N,H1); scratch (P,H1). The bias
 * gradient was cleared by reward_model_backward. */
static void layer0_paired_backward(RewardModel *m, int h, int N, const float *dh1,
                                   float *scratch) {
    const RewardConfig *c = &m->cfg;
    const HeadParams *p = &m->p.head[h];
    HeadParams *g = &m->g.head[h];
    int D = c->dim_img, Dt = c->dim_txt, in = m->in_dim, H1 = c->hidden1, P = N / 2;
    size_t nw = (size_t)H1 * in, nh = (size_t)N * H1, np = (size_t)P * H1;
    const float *img0 = m->a.fused, *txt = m->a.fused + (size_t)N * D;
    gemm(m, 1, 0, H1, D, N, dh1, nh, 0, H1, img0, (size_t)N * D, 0, D, 0.0f, g->w0, nw, 0, in);
    Tensor sc = TV(m, scratch, (int64_t)np, 0), lo = TV(m, dh1, (int64_t)np, 0),
           hi = TV(m, dh1 + np, (int64_t)np, 0);
    backend_add(m->be, &sc, &lo, &hi);
    gemm(m, 1, 0, H1, Dt, P, scratch, np, 0, H1, txt, (size_t)P * Dt, 0, Dt, 0.0f, g->w0, nw,
         (size_t)D, in);
    /* dbias (H1) += Σ_n dh1 through linear_backward's bias part (shapes only from the rest) */
    Tensor dout = TV(m, dh1, N, H1), inp = TV(m, m->a.fused, N, in), w = TV(m, p->w0, H1, in),
           db = TV(m, g->b0, H1, 0);
    backend_linear_backward(m->be, NULL, NULL, &db, &dout, &inp, &w);
}

static void head_forward(RewardModel *m, int h, int N) {
    const RewardConfig *c = &m->cfg;
    const HeadParams *p = &m->p.head[h];
    HeadActs *a = &m->a.head[h];
    Backend *be = m->be;
    int H1 = c->hidden1, H2 = c->hidden2;
    float pdrop = m->train ? c->dropout : 0.0f;
    Tensor h1 = TV(m, a->h1, N, H1), a1 = TV(m, a->a1, N, H1), m1 = TV(m, a->mean1, N, 0),
           r1 = TV(m, a->rstd1, N, 0), h2 = TV(m, a->h2, N, H2), a2 = TV(m, a->a2, N, H2),
           m2 = TV(m, a->mean2, N, 0), r2 = TV(m, a->rstd2, N, 0), s = TV(m, a->s, N, 1);
    Tensor b0 = TV(m, p->b0, H1, 0), l1w = TV(m, p->ln1w, H1, 0), l1b = TV(m, p->ln1b, H1, 0),
           w4 = TV(m, p->w4, H2, H1), b4 = TV(m, p->b4, H2, 0), l2w = TV(m, p->ln2w, H2, 0),
           l2b = TV(m, p->ln2b, H2, 0), w8 = TV(m, p->w8, 1, H2), b8 = TV(m, p->b8, 1, 0);
    if (m->paired) {
        layer0_paired_forward(m, h, N);
    } else {
        Tensor x = TV(m, m->a.fused, N, m->in_dim), w0 = TV(m, p->w0, H1, m->in_dim);
        backend_linear_forward(be, &h1, &x, &w0, &b0);
    }
    backend_layernorm_forward(be, &a1, &m1, &r1, &h1, &l1w, &l1b, LN_EPS);
    backend_relu_forward(be, &a1, &a1);
    if (pdrop > 0.0f)
        backend_dropout_forward(be, &a1, &a1, pdrop, layer_seed(m->seed, h, 0));
    backend_linear_forward(be, &h2, &a1, &w4, &b4);
    backend_layernorm_forward(be, &a2, &m2, &r2, &h2, &l2w, &l2b, LN_EPS);
    backend_relu_forward(be, &a2, &a2);
    if (pdrop > 0.0f)
        backend_dropout_forward(be, &a2, &a2, pdrop, layer_seed(m->seed, h, 1));
    backend_linear_forward(be, &s, &a2, &w8, &b8);
}

/* Cross-attention fusion: nn.MultiheadAttention(q = txt, k = v = image tokens) as nn_mha_forward
 * computes it (the same ops in the same order), then fused = img row 0 + its output. */
static void cross_attention_forward(RewardModel *m, int N) {
    const RewardConfig *c = &m->cfg;
    Acts *a = &m->a;
    Backend *be = m->be;
    int C = c->dim_img, Tk = m->n_keys;
    size_t CC = (size_t)C * C;
    Tensor txt = TV(m, a->txt, N, C), keys = TV(m, a->keys, (int64_t)N * Tk, C),
           q = TV(m, a->q, N, C), k = TV(m, a->k, (int64_t)N * Tk, C),
           v = TV(m, a->v, (int64_t)N * Tk, C), ctx = TV(m, a->ctx, N, C),
           out = TV(m, a->attn, N, C), fused = TV(m, a->fused, N, C);
    Tensor wq = TV(m, m->p.ipw, C, C), wk = TV(m, m->p.ipw + CC, C, C),
           wv = TV(m, m->p.ipw + 2 * CC, C, C), bq = TV(m, m->p.ipb, C, 0),
           bk = TV(m, m->p.ipb + C, C, 0), bv = TV(m, m->p.ipb + 2 * C, C, 0),
           wo = TV(m, m->p.opw, C, C), bo = TV(m, m->p.opb, C, 0);
    backend_linear_forward(be, &q, &txt, &wq, &bq);
    backend_linear_forward(be, &k, &keys, &wk, &bk);
    backend_linear_forward(be, &v, &keys, &wv, &bv);
    BackendAttn at = {c->attn_heads, 0.0f, 0, NULL};
    Tensor q3 = T3(m, a->q, N, 1, C), k3 = T3(m, a->k, N, Tk, C), v3 = T3(m, a->v, N, Tk, C),
           o3 = T3(m, a->ctx, N, 1, C), lse = T3(m, a->lse, N, c->attn_heads, 1);
    backend_attention_forward(be, &o3, &lse, &q3, &k3, &v3, &at);
    backend_linear_forward(be, &out, &ctx, &wo, &bo);
    backend_add(be, &fused, &fused, &out);
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
    /* the inputs go to the device through the staging buffer, or in place on the host */
    float *fused = m->on_host ? a->fused : m->h.stage;
    size_t n_fused = 0;
    switch (c->fusion) {
    case REWARD_FUSION_CONCAT:
        m->paired = is_paired(txt, N, c->dim_txt);
        if (m->paired) { /* fused holds the N image rows, then the P distinct text rows */
            for (int n = 0; n < N; n++)
                memcpy(fused + (size_t)n * D, img + (size_t)n * rows * D,
                       (size_t)D * sizeof(float));
            memcpy(fused + (size_t)N * D, txt, (size_t)(N / 2) * c->dim_txt * sizeof(float));
            n_fused = (size_t)N * D + (size_t)(N / 2) * c->dim_txt;
            break;
        }
        for (int n = 0; n < N; n++) {
            memcpy(fused + (size_t)n * m->in_dim, img + (size_t)n * rows * D,
                   (size_t)D * sizeof(float));
            memcpy(fused + (size_t)n * m->in_dim + D, txt + (size_t)n * c->dim_txt,
                   (size_t)c->dim_txt * sizeof(float));
        }
        n_fused = (size_t)N * m->in_dim;
        break;
    case REWARD_FUSION_ADD:
        for (int n = 0; n < N; n++)
            nn_add_forward(fused + (size_t)n * D, img + (size_t)n * rows * D,
                           txt + (size_t)n * D, (size_t)D);
        n_fused = (size_t)N * D;
        break;
    case REWARD_FUSION_CROSS_ATTENTION: {
        int Tk = m->n_keys, first = rows > 1 ? 1 : 0;
        /* fused = image row 0 (the attention output is added on the device); keys; txt */
        for (int n = 0; n < N; n++)
            memcpy(fused + (size_t)n * D, img + (size_t)n * rows * D, (size_t)D * sizeof(float));
        n_fused = (size_t)N * D;
        if (!m->on_host)
            put(m, a->fused, fused, n_fused);
        float *keys = m->on_host ? a->keys : m->h.stage;
        for (int n = 0; n < N; n++)
            memcpy(keys + (size_t)n * Tk * D, img + ((size_t)n * rows + first) * D,
                   (size_t)Tk * D * sizeof(float));
        if (!m->on_host)
            put(m, a->keys, keys, (size_t)N * Tk * D);
        if (m->on_host)
            memcpy(a->txt, txt, (size_t)N * D * sizeof(float));
        else
            put(m, a->txt, txt, (size_t)N * D);
        n_fused = 0; /* uploaded */
        cross_attention_forward(m, N);
        break;
    }
    }
    if (!m->on_host)
        put(m, a->fused, fused, n_fused);
    for (int h = 0; h < REWARD_N_HEADS; h++)
        head_forward(m, h, N);
    /* the scores back on the host: the losses and the combination are computed there */
    const float *s_all = a->s_all;
    if (!m->on_host) {
        get(m, m->h.s_all, a->s_all, (size_t)REWARD_N_HEADS * c->max_batch);
        s_all = m->h.s_all;
    }
    const float *hw = host_head_weights(m);
    int rc = backend_sync(m->be, err);
    if (rc) {
        err_prefix(err, "reward model forward");
        return rc;
    }
    nn_softmax_forward(m->hw_soft, hw, 1, REWARD_N_HEADS);
    for (int n = 0; n < N; n++) {
        float comb = 0.0f;
        for (int h = 0; h < REWARD_N_HEADS; h++) {
            float s = s_all[(size_t)h * c->max_batch + n];
            m->h.scores[(size_t)n * REWARD_N_HEADS + h] = s;
            comb += m->hw_soft[h] * s;
        }
        m->h.combined[n] = comb;
    }
    return 0;
}

const float *reward_model_scores(const RewardModel *m) { return m->h.scores; }
const float *reward_model_combined(const RewardModel *m) { return m->h.combined; }

void reward_model_head_importance(const RewardModel *m, float out[REWARD_N_HEADS]) {
    float hw[REWARD_N_HEADS];
    if (m->on_host) {
        memcpy(hw, m->p.head_weights, sizeof hw);
    } else {
        get((RewardModel *)m, hw, m->p.head_weights, REWARD_N_HEADS); /* waits */
        if (backend_failed(m->be))
            memset(hw, 0, sizeof hw); /* equal weights; the failure stays for the next sync */
    }
    nn_softmax_forward(out, hw, 1, REWARD_N_HEADS);
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
    HostBufs *a = &m->h;
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
    HostBufs *a = &m->h;
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
    zero(m, m->grads, m->n_params);
}

/* The gradients of a Linear layer out = inp·Wᵀ + b: dW OVERWRITTEN by one GEMM (no zeroing, no
 * re-reading), dinp and db added (both cleared before). */
static void linear_bwd(RewardModel *m, float *dinp, float *dw, float *db, const float *dout,
                       const float *inp, const float *w, int N, int C, int OC) {
    size_t nw = (size_t)OC * C;
    gemm(m, 1, 0, OC, C, N, dout, (size_t)N * OC, 0, OC, inp, (size_t)N * C, 0, C, 0.0f, dw, nw,
         0, C);
    Tensor tdi = TV(m, dinp, N, C), tdb = TV(m, db, OC, 0), tdo = TV(m, dout, N, OC),
           ti = TV(m, inp, N, C), tw = TV(m, w, OC, C);
    backend_linear_backward(m->be, dinp ? &tdi : NULL, NULL, &tdb, &tdo, &ti, &tw);
}

/* dinp = dout·[out > 0] / (1−p): ReLU then dropout, whose output out > 0 exactly where an
 * element was kept and positive (the mask need not be regenerated). dinp is overwritten. */
static void relu_dropout_bwd(RewardModel *m, float *dinp, const float *dout, const float *out,
                             size_t n, float pdrop) {
    Tensor di = TV(m, dinp, (int64_t)n, 0), d = TV(m, dout, (int64_t)n, 0),
           o = TV(m, out, (int64_t)n, 0);
    backend_zero(m->be, &di);
    backend_relu_backward(m->be, &di, &d, &o);
    if (pdrop > 0.0f)
        backend_scale(m->be, &di, &di, 1.0f / (1.0f - pdrop));
}

static void head_backward(RewardModel *m, int h, int N) {
    const RewardConfig *c = &m->cfg;
    const HeadParams *p = &m->p.head[h];
    HeadParams *g = &m->g.head[h];
    HeadActs *a = &m->a.head[h];
    Acts *A = &m->a;
    Backend *be = m->be;
    int H1 = c->hidden1, H2 = c->hidden2;
    size_t n1 = (size_t)N * H1, n2 = (size_t)N * H2;
    float pdrop = m->train ? c->dropout : 0.0f;
    /* score = Linear8(a2) */
    zero(m, A->g2a, n2);
    linear_bwd(m, A->g2a, g->w8, g->b8, a->gs, a->a2, p->w8, N, H2, 1);
    /* a2 = dropout(relu(ln2)) */
    relu_dropout_bwd(m, A->g2b, A->g2a, a->a2, n2, pdrop);
    zero(m, A->g2a, n2);
    Tensor dx2 = TV(m, A->g2a, N, H2), dw2 = TV(m, g->ln2w, H2, 0), db2 = TV(m, g->ln2b, H2, 0),
           do2 = TV(m, A->g2b, N, H2), x2 = TV(m, a->h2, N, H2), w2 = TV(m, p->ln2w, H2, 0),
           mu2 = TV(m, a->mean2, N, 0), rs2 = TV(m, a->rstd2, N, 0);
    backend_layernorm_backward(be, &dx2, &dw2, &db2, &do2, &x2, &w2, &mu2, &rs2);
    /* h2 = Linear4(a1) */
    zero(m, A->g1a, n1);
    linear_bwd(m, A->g1a, g->w4, g->b4, A->g2a, a->a1, p->w4, N, H1, H2);
    relu_dropout_bwd(m, A->g1b, A->g1a, a->a1, n1, pdrop);
    zero(m, A->g1a, n1);
    Tensor dx1 = TV(m, A->g1a, N, H1), dw1 = TV(m, g->ln1w, H1, 0), db1 = TV(m, g->ln1b, H1, 0),
           do1 = TV(m, A->g1b, N, H1), x1 = TV(m, a->h1, N, H1), w1 = TV(m, p->ln1w, H1, 0),
           mu1 = TV(m, a->mean1, N, 0), rs1 = TV(m, a->rstd1, N, 0);
    backend_layernorm_backward(be, &dx1, &dw1, &db1, &do1, &x1, &w1, &mu1, &rs1);
    /* h1 = Linear0(fused): the fused input only needs a gradient under cross-attention */
    float *dfused = c->fusion == REWARD_FUSION_CROSS_ATTENTION ? A->dfused : NULL;
    if (m->paired)
        layer0_paired_backward(m, h, N, A->g1a, A->g1b);
    else
        linear_bwd(m, dfused, g->w0, g->b0, A->g1a, A->fused, p->w0, N, m->in_dim, H1);
}

/* The MultiheadAttention's parameter gradients from dfused (its output's gradient), as
 * nn_mha_backward computes them; the query and key/value inputs get none. */
static void cross_attention_backward(RewardModel *m, int N) {
    const RewardConfig *c = &m->cfg;
    Acts *a = &m->a;
    Backend *be = m->be;
    int C = c->dim_img, Tk = m->n_keys;
    size_t CC = (size_t)C * C, nq = (size_t)N * C, nk = (size_t)N * Tk * C;
    zero(m, a->dctx, nq);
    zero(m, a->dq, nq);
    zero(m, a->dk, nk);
    zero(m, a->dv, nk);
    Tensor dout = TV(m, a->dfused, N, C), ctx = TV(m, a->ctx, N, C), dctx = TV(m, a->dctx, N, C),
           wo = TV(m, m->p.opw, C, C), dwo = TV(m, m->g.opw, C, C), dbo = TV(m, m->g.opb, C, 0);
    backend_linear_backward(be, &dctx, &dwo, &dbo, &dout, &ctx, &wo);
    BackendAttn at = {c->attn_heads, 0.0f, 0, NULL};
    Tensor q3 = T3(m, a->q, N, 1, C), k3 = T3(m, a->k, N, Tk, C), v3 = T3(m, a->v, N, Tk, C),
           o3 = T3(m, a->ctx, N, 1, C), lse = T3(m, a->lse, N, c->attn_heads, 1),
           dq3 = T3(m, a->dq, N, 1, C), dk3 = T3(m, a->dk, N, Tk, C),
           dv3 = T3(m, a->dv, N, Tk, C), dc3 = T3(m, a->dctx, N, 1, C);
    backend_attention_backward(be, &dq3, &dk3, &dv3, &dc3, &q3, &k3, &v3, &o3, &lse, &at);
    const float *x[3] = {a->txt, a->keys, a->keys}, *d[3] = {a->dq, a->dk, a->dv};
    int rows[3] = {N, N * Tk, N * Tk};
    for (int i = 0; i < 3; i++) {
        Tensor dy = TV(m, d[i], rows[i], C), xi = TV(m, x[i], rows[i], C),
               w = TV(m, m->p.ipw + i * CC, C, C), dw = TV(m, m->g.ipw + i * CC, C, C),
               db = TV(m, m->g.ipb + (size_t)i * C, C, 0);
        backend_linear_backward(be, NULL, &dw, &db, &dy, &xi, &w);
    }
}

void reward_model_backward(RewardModel *m) {
    const RewardConfig *c = &m->cfg;
    HostBufs *hb = &m->h;
    int N = m->N, B = c->max_batch;
    /* combined = Σ_h softmax(hw)_h · s_h (on the host: N·5 values) */
    float dsoft[REWARD_N_HEADS] = {0};
    for (int n = 0; n < N; n++) {
        float dc = hb->dcombined[n];
        if (dc == 0.0f)
            continue;
        for (int h = 0; h < REWARD_N_HEADS; h++) {
            hb->dscores[(size_t)n * REWARD_N_HEADS + h] += m->hw_soft[h] * dc;
            dsoft[h] += hb->scores[(size_t)n * REWARD_N_HEADS + h] * dc;
        }
    }
    /* each head's score gradient, (5, B) rows, to the device */
    float *gs = m->on_host ? m->a.gs_all : hb->gs_all;
    for (int h = 0; h < REWARD_N_HEADS; h++)
        for (int n = 0; n < N; n++)
            gs[(size_t)h * B + n] = hb->dscores[(size_t)n * REWARD_N_HEADS + h];
    if (!m->on_host)
        put(m, m->a.gs_all, gs, (size_t)REWARD_N_HEADS * B);
    /* Every gradient is overwritten: the Linear weights' by one GEMM each, the rest (biases,
     * LayerNorms, head_weights, cross_attention: small) are cleared here, then added to. The
     * parameter layout puts b0, ln1w, ln1b together, and b4, ln2w, ln2b. */
    for (int h = 0; h < REWARD_N_HEADS; h++) {
        zero(m, m->g.head[h].b0, 3 * (size_t)c->hidden1);
        zero(m, m->g.head[h].b4, 3 * (size_t)c->hidden2);
        zero(m, m->g.head[h].b8, 1);
    }
    float *ghw = m->on_host ? m->g.head_weights : hb->hw_grad;
    memset(ghw, 0, REWARD_N_HEADS * sizeof(float));
    nn_softmax_backward(ghw, dsoft, m->hw_soft, 1, REWARD_N_HEADS);
    if (!m->on_host)
        put(m, m->g.head_weights, ghw, REWARD_N_HEADS);
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION) {
        size_t C = (size_t)c->dim_img;
        zero(m, m->g.ipw, 3 * C * C + 3 * C + C * C + C); /* ipw, ipb, opw, opb in a row */
        zero(m, m->a.dfused, (size_t)N * m->in_dim);
    }
    for (int h = 0; h < REWARD_N_HEADS; h++)
        head_backward(m, h, N);
    if (c->fusion == REWARD_FUSION_CROSS_ATTENTION)
        cross_attention_backward(m, N); /* fused = img + attn: its gradient is dfused */
}

float reward_model_step(RewardModel *m, float lr, int want_norm) {
    float norm = 0.0f;
    if (m->cfg.max_grad_norm > 0.0f || want_norm) {
        /* the global norm (and clipping) on the host: in place on the CPU backend, else on a
         * copy of the gradients (a device reduction is not in the table yet) */
        float *g = m->grads;
        if (!m->on_host) {
            g = xmalloc(m->n_params * sizeof(float));
            get(m, g, m->grads, m->n_params);
        }
        if (m->cfg.max_grad_norm > 0.0f)
            norm = optim_clip_grad_norm(g, m->n_params, m->cfg.max_grad_norm);
        else
            norm = optim_grad_norm(g, m->n_params);
        if (!m->on_host) {
            if (m->cfg.max_grad_norm > 0.0f)
                put(m, m->grads, g, m->n_params);
            free(g);
        }
    }
    if (backend_failed(m->be))
        return norm; /* the step does not run: the count stays with the moments */
    m->t++;
    Tensor p = TV(m, m->params, (int64_t)m->n_params, 0), g = TV(m, m->grads, (int64_t)m->n_params, 0),
           am = TV(m, m->adam_m, (int64_t)m->n_params, 0),
           av = TV(m, m->adam_v, (int64_t)m->n_params, 0);
    backend_adamw(m->be, &p, &g, &am, &av, m->t, lr, &m->cfg.adamw);
    return norm;
}
