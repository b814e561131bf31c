/* train_int — private to src/train*.c: the model adapter and checkpoint folders.
 *
 * TrainModel wraps the five-head reward model of model_reward.h with what training needs:
 * inputs as the encoder gives them (image rows: pooled first, then tokens; one text row),
 * a forward/backward pair over a batch, AdamW, and save/load with the original's tensor
 * names (plus the optimizer state for resuming). Only train_model.c knows model_reward.h.
 */
#ifndef EASEL_TRAIN_INT_H
#define EASEL_TRAIN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "train.h"

typedef struct TrainModelDims {
    int d_img;             /* floats per image row */
    int n_tokens;          /* image rows: 1 pooled + grid/patch tokens */
    int d_txt;             /* floats per text vector */
    char fusion[24];       /* "concat", "add", "cross_attention" */
    float dropout;         /* 0.1 */
    int max_batch;         /* samples per forward, at most */
} TrainModelDims;

typedef struct TrainModel TrainModel;

/* A model on the backend DEV names (dev->spec "auto", "cpu", "cuda", "cuda:N"; NULL or ""
 * = auto; dev->threads CPU threads, 0 = all cores; DEV may be NULL: auto, all cores), which
 * fills dev->note (why a cuda request runs on the CPU, "" if nothing to say) and dev->name.
 * Weights initialised from SEED (PyTorch's default init; head weights 0.2) into
 * *out. Returns 0, or ERR_* with *out NULL (ERR_USAGE when the dimensions do not fit the
 * fusion: add needs d_img == d_txt). */
int train_model_new(const TrainModelDims *dims, uint64_t seed, TrainDevice *dev,
                    float weight_decay, TrainModel **out, Err *err);
void train_model_free(TrainModel *m);
const TrainModelDims *train_model_dims(const TrainModel *m);

/* Forward N samples: IMG (N, n_tokens, d_img), TXT (N, d_txt). TRAINING enables dropout with
 * masks drawn from DROPOUT_SEED. Writes HEADS (N, 5) and COMBINED (N). */
void train_model_forward(TrainModel *m, const float *img, const float *txt, int n, int training,
                         uint64_t dropout_seed, float *heads, float *combined);

/* Losses of the last forward. out[0..4] per head, out[5] combined, out[6] irrelevant term. */
#define TRAIN_LOSS_N (TRAIN_N_HEADS + 2)

/* Pairs objective: the last forward ran on 2P samples (P "a" then P "b"); pair i compares
 * samples i and P+i. LABELS (P, 5), LABEL_COMBINED (P), IRRELEVANT (P) flags or NULL with
 * weight W. Sets the score gradients. */
void train_model_loss_pairs(TrainModel *m, int n_pairs, const float *labels,
                            const float *label_combined, const uint8_t *irrelevant, float w,
                            double out[TRAIN_LOSS_N]);
/* Regression objective: RATINGS (N, 5), NAN = not rated. */
void train_model_loss_regression(TrainModel *m, const float *ratings, double out[TRAIN_LOSS_N]);
/* The first failure of the model's backend since the last check (forward and step keep it;
 * the device is waited for): 0 or ERR_*. Once per step. */
int train_model_check(TrainModel *m, Err *err);
/* Backward of the last loss and one AdamW step (t is 1-based, checked against the model's
 * own count) at learning rate LR. */
void train_model_step(TrainModel *m, int t, float lr);
/* The five raw head weights (head importance = their softmax). */
void train_model_head_weights(const TrainModel *m, float w[TRAIN_N_HEADS]);

/* Write model.safetensors at PATH (atomic): the original's tensor names; with OPTIMIZER also
 * the AdamW moments as "optimizer.m.<name>" / "optimizer.v.<name>". META: extra metadata
 * key/value pairs (NULL-terminated list, may be NULL). */
int train_model_save(const TrainModel *m, const char *path, int optimizer,
                     const char *const *meta, Err *err);
/* Read weights (and with OPTIMIZER the moments) from PATH; shapes must match. */
int train_model_load(TrainModel *m, const char *path, int optimizer, Err *err);

/* ---- checkpoint folders (train_ckpt.c) ---- */

/* Replace folder DST by the complete folder TMP in one step (renameat2 RENAME_EXCHANGE when
 * DST exists, then the old one is removed; plain rename otherwise). */
int train_dir_commit(const char *tmp, const char *dst, Err *err);
/* rm -rf PATH (a folder we created); missing is fine. */
void train_dir_remove(const char *path);
/* mkdir -p */
int train_mkdirs(const char *path, Err *err);
/* Write TEXT to PATH and fsync it. */
int train_write_file(const char *path, const char *text, Err *err);
/* Read a whole file as a string (caller frees), or NULL with err. */
char *train_read_file(const char *path, Err *err);

/* The store's ratings as per-image means (pairs.h) over every aspect of the store (at least
 * the TRAIN_N_HEADS heads), so that the combined preference compares the mean over all
 * aspects rated on both images, as `easel export pairs` does; one annotator's when
 * ANNOTATOR_ID > 0, else the mean over annotators. Release with pairs_means_deinit. */
int train_means_load(Store *st, int64_t annotator_id, PairsMeans *out, Err *err);

#endif
