/* model_reward — the five-head reward model of the original, on the engine.
 *
 * Architecture (origin-facts.md, "The model as the original built it"):
 *   fused = concat: [img, txt]              (in = dim_img + dim_txt)
 *           add:    img + txt               (in = dim)
 *           cross_attention: img + MHA(q = txt, k = v = image tokens)   (in = dim)
 *   head_h(fused) = Linear(in,512) → LayerNorm → ReLU → Dropout(0.1) → Linear(512,256) →
 *                   LayerNorm → ReLU → Dropout(0.1) → Linear(256,1),  h = spatial, icono,
 *                   style, fidelity, material
 *   combined = Σ_h softmax(head_weights)_h · head_h,   head_weights initialised to 0.2 each.
 * Parameter names are the original's (reward_model_params), so checkpoints interchange with
 * its safetensors files. Unlike the original, cross_attention attends over SEVERAL image
 * tokens (grid or patch tokens); with one token it would ignore the text.
 *
 * Image input layout is the encoder's (encoder.h): per sample img_rows rows of dim_img floats,
 * row 0 the pooled vector, rows 1.. the tokens. concat/add read row 0 only; cross_attention
 * uses rows 1..img_rows−1 as keys/values (row 0 alone when img_rows == 1) and adds the
 * attention output to row 0.
 *
 * Memory (llm.c's ParameterTensors): one contiguous block each for parameters, gradients,
 * AdamW moments (m then v) and activations, allocated by reward_model_new for at most
 * max_batch samples. Nothing allocates in forward, backward or step.
 *
 * Use per training step (pairs objective, P pairs → N = 2P samples, first the P "a" images,
 * then the P "b" images, pair i = samples (i, P+i)):
 *   reward_model_forward(m, img, txt, 2P, 1, seed)     scores and combined
 *   reward_model_loss_pairs(m, &batch, &loss)           losses; sets the score gradients
 *   reward_model_backward(m)                            parameter gradients (overwritten)
 *   reward_model_step(m, lr)                            AdamW (clips first if max_grad_norm)
 * No zero_grad is needed between steps: the backward writes every gradient.
 * For the regression objective use reward_model_loss_regression instead.
 * Under concat fusion, a pairs batch whose sample P+i has the same text row as sample i (two
 * images of one prompt) is detected and its first layers do a quarter less work; the results
 * equal the general path up to float rounding.
 *
 * Backend (src/engine/backend.h): the model runs on the Backend given to reward_model_open —
 * its parameter, gradient and AdamW blocks come from backend_malloc, its activations from one
 * block of the backend's arena (reward_model_arena_bytes sizes it: open the backend with at
 * least that arena_bytes), every layer is a backend op. The losses and the combination of the
 * five scores are computed on the host from the downloaded scores (N·5 floats per step). On the
 * CPU backend the model calls the same nn_* functions as before the backend existed, so its
 * results are bit-identical to them. reward_model_new opens a private CPU backend with the
 * calling thread's backend_cpu_use pool size (1 without one).
 * Pointers the model hands out (param/grad/AdamW blocks, RewardParam.data/.grad) are DEVICE
 * memory: readable on the host only when backend_device is CPU; otherwise use
 * reward_model_read_state / reward_model_write_state. Failures of the backend stick
 * (backend.h): reward_model_forward reports them, reward_model_sync once per step after
 * backward and step.
 * Threads: a RewardModel is used by one thread at a time.
 * Results are bit-identical for the same seed, inputs and thread count (with this engine, for
 * any thread count: tests/models/test_model_reward.c checks 1 against 2).
 */
#ifndef EASEL_MODEL_REWARD_H
#define EASEL_MODEL_REWARD_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"
#include "nn_attention.h"
#include "optim.h"

#define REWARD_N_HEADS 5
#define REWARD_N_LAYERS 5     /* parameterised layers per head: 0, 1, 4, 5, 8 */

/* spatial, icono, style, fidelity, material: the original's order. */
extern const char *const reward_head_names[REWARD_N_HEADS];

typedef enum RewardFusion {
    REWARD_FUSION_CONCAT = 0,
    REWARD_FUSION_ADD = 1,
    REWARD_FUSION_CROSS_ATTENTION = 2,
} RewardFusion;

/* "concat", "add", "cross_attention" and back; parse returns -1 for an unknown name. */
const char *reward_fusion_name(RewardFusion f);
int reward_fusion_parse(const char *name);

typedef struct RewardConfig {
    int dim_img;          /* image embedding width (768 for CLIP ViT-L/14) */
    int dim_txt;          /* text embedding width; equal to dim_img for add/cross_attention */
    int img_rows;         /* rows per image: 1 pooled + tokens (encoder n_image_tokens) */
    RewardFusion fusion;
    int attn_heads;       /* cross_attention heads: 8; must divide dim_img */
    int hidden1;          /* 512 */
    int hidden2;          /* 256 */
    float dropout;        /* 0.1 */
    int max_batch;        /* most samples per forward (a pair counts 2) */
    float max_grad_norm;  /* clip before each step; 0 = no clipping (the original) */
    AdamWConfig adamw;    /* lr is given per step; betas, eps, weight decay (0.01) here */
} RewardConfig;

/* The original's settings for given input widths: concat, 8 attention heads, 512/256,
 * dropout 0.1, AdamW (0.9, 0.999, 1e-8, wd 0.01), no clipping; img_rows 1, max_batch 16. */
void reward_config_defaults(RewardConfig *cfg, int dim_img, int dim_txt);
/* Check widths and combinations; ERR_USAGE naming what is wrong. */
int reward_config_check(const RewardConfig *cfg, Err *err);
/* Width of the fused vector the heads read. */
int reward_config_fused_dim(const RewardConfig *cfg);

/* One named parameter tensor, pointing into the model's blocks. */
typedef struct RewardParam {
    char name[80];        /* e.g. "heads.spatial.layers.0.weight" */
    int n_dims;           /* 1 or 2 */
    int64_t shape[2];     /* PyTorch shape: Linear weight (out, in) */
    size_t numel;
    size_t offset;        /* floats from the start of the parameter block */
    float *data;          /* into the parameter block */
    float *grad;          /* into the gradient block */
} RewardParam;

/* Losses of the last reward_model_loss_* call. */
typedef struct RewardLoss {
    float head[REWARD_N_HEADS]; /* per-head loss (mean over the pairs/samples it counts) */
    int n_head[REWARD_N_HEADS]; /* how many pairs/samples each head counted */
    float combined;             /* pairs: combined-score loss; regression: 0 */
    float irrelevant;           /* pairs: the irrelevant-prompt term (already weighted) */
    float total;                /* Σ head + combined + irrelevant: what the gradients are of */
} RewardLoss;

/* A pairs batch: pair i compares sample i ("a") with sample P+i ("b"), d = score_a − score_b. */
typedef struct RewardPairBatch {
    int n_pairs;                /* P; the forward ran on 2P samples */
    const float *labels;        /* (P,5): 1 = a preferred, 0 = b preferred, 0.5 = neutral */
    const float *label_combined;/* (P): target of the combined score; NULL = mean of labels */
    const uint8_t *irrelevant;  /* (P) or NULL: 1 = the prompt belongs to another sample */
    float irrelevant_weight;    /* w of −½·w·(log σ(d) + log σ(−d)) */
} RewardPairBatch;

typedef struct RewardModel RewardModel;

/* ---- lifecycle ---- */

/* A model with parameters initialised as PyTorch would (Linear: U(±1/√in) for weights and
 * biases; LayerNorm 1 and 0; head_weights 0.2; in_proj xavier-uniform, in/out biases 0),
 * from a seeded Rng. Returns NULL with err set (ERR_USAGE bad config, ERR_NOMEM). */
RewardModel *reward_model_new(const RewardConfig *cfg, uint64_t seed, Err *err);
/* The same on backend `be` (borrowed: it must outlive the model, and its arena hold
 * reward_model_arena_bytes(cfg) more than is in use; the model takes that block until
 * reward_model_free). Returns 0 or ERR_USAGE (config), ERR_NOMEM, the backend's failure. */
int reward_model_open(const RewardConfig *cfg, uint64_t seed, Backend *be, RewardModel **out,
                      Err *err);
/* Arena bytes the model's activations need for cfg.max_batch (the measuring pass). */
size_t reward_model_arena_bytes(const RewardConfig *cfg);
void reward_model_free(RewardModel *m); /* NULL allowed */
Backend *reward_model_backend(const RewardModel *m);
/* backend_sync: 0, or the first failure since the last (once per step). */
int reward_model_sync(RewardModel *m, Err *err);
/* Host copies of the parameters and the AdamW moments (n_params floats each; NULL skips one),
 * and back; both wait for the device. */
int reward_model_read_state(RewardModel *m, float *params, float *adam_m, float *adam_v,
                            Err *err);
int reward_model_write_state(RewardModel *m, const float *params, const float *adam_m,
                             const float *adam_v, Err *err);
/* A host copy of one parameter of the table (p->numel floats). */
int reward_model_read_param(RewardModel *m, const RewardParam *p, float *dst, Err *err);
/* Borrowed until reward_model_free. */
const RewardConfig *reward_model_config(const RewardModel *m);

/* ---- parameters ---- */

/* The parameter table in the original's names and order (heads in aspect order, each
 * layers.{0,1,4,5,8}.{weight,bias}, then head_weights, then cross_attention.* when fused by
 * cross-attention). Borrowed until reward_model_free. */
const RewardParam *reward_model_params(const RewardModel *m, int *n_params);
/* The entry called NAME, or NULL. */
const RewardParam *reward_model_param(const RewardModel *m, const char *name);
/* The blocks: n floats each; borrowed. grads and the moments have the same layout. */
float *reward_model_param_block(RewardModel *m, size_t *n);
float *reward_model_grad_block(RewardModel *m, size_t *n);
/* AdamW state: first and second moments (n floats each) and the number of steps taken.
 * Exposed for checkpoints that resume training exactly. */
float *reward_model_adam_m(RewardModel *m);
float *reward_model_adam_v(RewardModel *m);
int reward_model_step_count(const RewardModel *m);
void reward_model_set_step_count(RewardModel *m, int t);

/* ---- compute ---- */

/* Scores for N <= max_batch samples. img (N, img_rows, dim_img) in the encoder layout,
 * txt (N, dim_txt). train != 0 applies dropout with masks from dropout_seed (vary it per
 * step); train == 0 is inference. Keeps what the backward needs. Returns 0, or ERR_USAGE if
 * N is out of range. */
int reward_model_forward(RewardModel *m, const float *img, const float *txt, int N, int train,
                         uint64_t dropout_seed, Err *err);
/* Results of the last forward, borrowed until the next: per-head scores (N,5) and the
 * combined score (N); head importance softmax(head_weights) (5). */
const float *reward_model_scores(const RewardModel *m);
const float *reward_model_combined(const RewardModel *m);
void reward_model_head_importance(const RewardModel *m, float out[REWARD_N_HEADS]);

/* Pairs objective on the last forward (which ran on 2·n_pairs samples):
 *   per head h: mean over relevant pairs with label ≠ 0.5 of BCE(d_h, label_h)
 *   combined:   mean over relevant pairs of BCE(d_c, label_combined)
 *   irrelevant: w · mean over irrelevant pairs of [Σ_h BCE(d_h, ½) + BCE(d_c, ½)]
 * (BCE(d, ½) = −½(log σ(d) + log σ(−d))). Sets the score gradients for reward_model_backward.
 * Returns 0 or ERR_USAGE (pair count does not match the forward). */
int reward_model_loss_pairs(RewardModel *m, const RewardPairBatch *b, RewardLoss *loss,
                            Err *err);
/* Regression objective on the last forward: per head, mean over samples with a rating
 * (ratings (N,5) on 0..10, NaN = not rated) of (score − rating)². head_weights get no
 * gradient from it. Sets the score gradients. */
int reward_model_loss_regression(RewardModel *m, const float *ratings, RewardLoss *loss,
                                 Err *err);

/* Zero the gradient block (not needed before reward_model_backward, which overwrites it). */
void reward_model_zero_grad(RewardModel *m);
/* Write the gradients of the last loss w.r.t. every parameter into the gradient block,
 * replacing what was there (so there is no accumulation across batches). */
void reward_model_backward(RewardModel *m);
/* One AdamW step at learning rate lr (clipping first when cfg.max_grad_norm > 0); the
 * gradients are left as they were (clipped). Returns the gradient norm before clipping (0 when
 * not clipping and not computed: pass want_norm to always compute it). While the backend has
 * a failure pending the step does not run and the step count stays (reward_model_sync). */
float reward_model_step(RewardModel *m, float lr, int want_norm);

#endif
