/* train_model — the adapter between training and the engine's five-head model
 * (model_reward.h): a Backend per model (backend_open of the TrainDevice: the CPU with its own
 * pool, or a CUDA device), save/load in safetensors with the original's tensor names
 * (fmt_safetensors.h) through host copies of the blocks, AdamW state for exact resumes. The
 * backend's failures stick: forward and step keep the first, train_model_check reports it
 * once per step. See train_int.h.
 *
 * Resume files hold, besides the parameters, "optimizer.m.<name>" and "optimizer.v.<name>"
 * for every parameter and the AdamW step count in the metadata ("optimizer_step").
 */
#include "train_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "base.h"
#include "fmt_safetensors.h"
#include "model_reward.h"

struct TrainModel {
    TrainModelDims dims;
    Backend *be;           /* the model's device (and on the CPU its threads) */
    RewardModel *rm;
    float *labels_comb;    /* scratch (max_batch) */
    Err fail;              /* the first failure of forward/step since train_model_check */
};

_Static_assert(REWARD_N_HEADS == TRAIN_N_HEADS, "head counts of model and training differ");

int train_model_new(const TrainModelDims *d, uint64_t seed, TrainDevice *dev, float weight_decay,
                    TrainModel **out, Err *err) {
    *out = NULL;
    int fusion = reward_fusion_parse(d->fusion);
    if (fusion < 0)
        return err_set(err, ERR_USAGE, "unknown fusion method '%s' (concat, add, cross_attention)",
                       d->fusion);
    RewardConfig rc;
    reward_config_defaults(&rc, d->d_img, d->d_txt);
    rc.img_rows = d->n_tokens;
    rc.fusion = (RewardFusion)fusion;
    rc.dropout = d->dropout;
    rc.max_batch = d->max_batch;
    rc.adamw.weight_decay = weight_decay;
    if (fusion == REWARD_FUSION_CROSS_ATTENTION && d->d_img % rc.attn_heads != 0)
        rc.attn_heads = 1; /* widths that 8 heads cannot split */
    int code = reward_config_check(&rc, err);
    if (code) {
        err_prefix(err, "--fusion-method %s with %d-d image and %d-d text features", d->fusion,
                   d->d_img, d->d_txt);
        return code;
    }
    TrainModel *m = xcalloc(1, sizeof *m);
    m->dims = *d;
    Err e = {0};
    /* the backend's arena holds the model's activations (the measuring pass) and the ops'
     * scratch; a CPU backend always has a pool, even of one thread */
    BackendConfig bc = {dev ? dev->threads : 0, reward_model_arena_bytes(&rc)};
    char note[sizeof dev->note] = "";
    const char *spec = dev && dev->spec && dev->spec[0] ? dev->spec : "auto";
    if ((code = backend_open(spec, &bc, &m->be, note, sizeof note, &e)) != 0) {
        free(m);
        err_pass(err, &e, code);
        err_prefix(err, "--device %s", spec);
        return code;
    }
    if (dev) {
        base_strlcpy(dev->note, note, sizeof dev->note);
        base_strlcpy(dev->name, backend_name(m->be), sizeof dev->name);
    }
    if ((code = reward_model_open(&rc, seed, m->be, &m->rm, &e)) != 0) {
        train_model_free(m);
        return err_pass(err, &e, code);
    }
    m->labels_comb = xmalloc((size_t)(d->max_batch > 0 ? d->max_batch : 1) * sizeof(float));
    *out = m;
    return 0;
}

void train_model_free(TrainModel *m) {
    if (!m)
        return;
    reward_model_free(m->rm);
    backend_close(m->be);
    free(m->labels_comb);
    free(m);
}

/* Keep the first failure for train_model_check. */
static void keep(TrainModel *m, const Err *e) {
    if (!m->fail.code)
        m->fail = *e;
}

int train_model_check(TrainModel *m, Err *err) {
    Err e = {0};
    if (reward_model_sync(m->rm, &e))
        keep(m, &e);
    int rc = m->fail.code;
    if (rc) {
        err_set(err, rc, "%s", m->fail.msg);
        memset(&m->fail, 0, sizeof m->fail);
    }
    return rc;
}

const TrainModelDims *train_model_dims(const TrainModel *m) { return &m->dims; }

void train_model_forward(TrainModel *m, const float *img, const float *txt, int n, int training,
                         uint64_t dropout_seed, float *heads, float *combined) {
    Err err = {0};
    /* n is checked against max_batch by the caller; a failure is the backend's (kept) */
    if (reward_model_forward(m->rm, img, txt, n, training, dropout_seed, &err)) {
        keep(m, &err);
        memset(heads, 0, (size_t)n * TRAIN_N_HEADS * sizeof(float));
        memset(combined, 0, (size_t)n * sizeof(float));
        return;
    }
    memcpy(heads, reward_model_scores(m->rm), (size_t)n * TRAIN_N_HEADS * sizeof(float));
    memcpy(combined, reward_model_combined(m->rm), (size_t)n * sizeof(float));
}

static void copy_loss(const RewardLoss *l, double out[TRAIN_LOSS_N]) {
    for (int h = 0; h < TRAIN_N_HEADS; h++)
        out[h] = l->n_head[h] ? l->head[h] : NAN;
    out[TRAIN_N_HEADS] = l->combined;
    out[TRAIN_N_HEADS + 1] = l->irrelevant;
}

void train_model_loss_pairs(TrainModel *m, int n_pairs, const float *labels,
                            const float *label_combined, const uint8_t *irrelevant, float w,
                            double out[TRAIN_LOSS_N]) {
    RewardPairBatch b = {.n_pairs = n_pairs, .labels = labels, .label_combined = label_combined,
                         .irrelevant = irrelevant, .irrelevant_weight = w};
    RewardLoss l;
    Err err = {0};
    int rc = reward_model_loss_pairs(m->rm, &b, &l, &err);
    ASSERT(rc == 0);
    copy_loss(&l, out);
}

void train_model_loss_regression(TrainModel *m, const float *ratings, double out[TRAIN_LOSS_N]) {
    RewardLoss l;
    Err err = {0};
    int rc = reward_model_loss_regression(m->rm, ratings, &l, &err);
    ASSERT(rc == 0);
    copy_loss(&l, out);
}

void train_model_step(TrainModel *m, int t, float lr) {
    ASSERT(reward_model_step_count(m->rm) == t - 1);
    reward_model_backward(m->rm); /* writes every gradient: no zeroing needed */
    reward_model_step(m->rm, lr, 0);
}

void train_model_head_weights(const TrainModel *m, float w[TRAIN_N_HEADS]) {
    const RewardParam *p = reward_model_param(m->rm, "head_weights");
    ASSERT(p && p->numel == TRAIN_N_HEADS);
    Err e = {0};
    if (reward_model_read_param(m->rm, p, w, &e)) {
        memset(w, 0, sizeof(float) * TRAIN_N_HEADS);
        keep((TrainModel *)m, &e);
    }
}

/* ---- files ---- */

int train_model_save(const TrainModel *m, const char *path, int optimizer,
                     const char *const *meta, Err *err) {
    int n = 0;
    RewardModel *rm = m->rm;
    const RewardParam *ps = reward_model_params(rm, &n);
    /* the blocks as the host sees them: in place on the CPU, else copies from the device */
    size_t np = 0;
    const float *pb = reward_model_param_block(rm, &np), *am = reward_model_adam_m(rm),
                *av = reward_model_adam_v(rm);
    float *host = NULL;
    if (backend_device(reward_model_backend(rm)) != TENSOR_DEVICE_CPU) {
        host = malloc(np * sizeof(float) * (optimizer ? 3 : 1));
        if (!host)
            return err_set(err, ERR_NOMEM, "out of memory saving %s", path);
        int rc = reward_model_read_state(rm, host, optimizer ? host + np : NULL,
                                         optimizer ? host + 2 * np : NULL, err);
        if (rc) {
            free(host);
            return rc;
        }
        pb = host, am = host + np, av = host + 2 * np;
    }
    SafeTensorsWriter *w = safetensors_writer_new();
    char **names = xcalloc((size_t)(2 * n + 1), sizeof *names);
    int rc = 0, k = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = safetensors_writer_add(w, ps[i].name, ST_F32, ps[i].n_dims, ps[i].shape,
                                    pb + ps[i].offset, err);
    if (optimizer && !rc) {
        for (int i = 0; i < n && !rc; i++) {
            names[k] = xasprintf("optimizer.m.%s", ps[i].name);
            rc = safetensors_writer_add(w, names[k++], ST_F32, ps[i].n_dims, ps[i].shape,
                                        am + ps[i].offset, err);
            if (rc)
                break;
            names[k] = xasprintf("optimizer.v.%s", ps[i].name);
            rc = safetensors_writer_add(w, names[k++], ST_F32, ps[i].n_dims, ps[i].shape,
                                        av + ps[i].offset, err);
        }
        char step[32];
        snprintf(step, sizeof step, "%d", reward_model_step_count(m->rm));
        safetensors_writer_meta(w, "optimizer_step", step);
    }
    for (int i = 0; meta && meta[i] && meta[i + 1]; i += 2)
        safetensors_writer_meta(w, meta[i], meta[i + 1]);
    if (!rc)
        rc = safetensors_writer_save(w, path, err);
    safetensors_writer_free(w);
    for (int i = 0; i < k; i++)
        free(names[i]);
    free(names);
    free(host);
    return rc;
}

static int read_into(const SafeTensors *sf, const char *path, const char *name,
                     const RewardParam *p, float *dst, Err *err) {
    const StTensor *t = safetensors_find(sf, name);
    if (!t)
        return err_set(err, ERR_FORMAT, "%s: no tensor '%s'; not a checkpoint of this model "
                       "(fusion method or encoder differ?)", path, name);
    int same = t->n_dim == p->n_dims;
    for (int d = 0; same && d < p->n_dims; d++)
        same = t->shape[d] == p->shape[d];
    if (!same)
        return err_set(err, ERR_FORMAT, "%s: tensor '%s' has shape %s[%lld%s], the model needs "
                       "[%lld%s]; the checkpoint was trained with other features", path, name,
                       "", (long long)t->shape[0], t->n_dim > 1 ? ",..." : "",
                       (long long)p->shape[0], p->n_dims > 1 ? ",..." : "");
    int rc = safetensors_read_f32(sf, t, dst, p->numel, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < p->numel; i++)
        if (!isfinite(dst[i]))
            return err_set(err, ERR_FORMAT, "%s: tensor '%s' holds a non-finite value; the "
                           "checkpoint is damaged", path, name);
    return 0;
}

int train_model_load(TrainModel *m, const char *path, int optimizer, Err *err) {
    Err e = {0};
    SafeTensors *sf = safetensors_open(path, &e);
    if (!sf)
        return err_pass(err, &e, ERR_IO);
    int n = 0;
    const RewardParam *ps = reward_model_params(m->rm, &n);
    /* read into scratch copies first: a failure leaves the model as it was */
    size_t np = 0;
    reward_model_param_block(m->rm, &np);
    float *tmp = malloc(np * sizeof(float) * (optimizer ? 3 : 1));
    int rc = 0;
    if (!tmp) {
        rc = err_set(err, ERR_NOMEM, "out of memory loading %s", path);
        goto out;
    }
    for (int i = 0; i < n && !rc; i++)
        rc = read_into(sf, path, ps[i].name, &ps[i], tmp + ps[i].offset, err);
    int step = 0;
    if (optimizer && !rc) {
        for (int i = 0; i < n && !rc; i++) {
            char name[128];
            snprintf(name, sizeof name, "optimizer.m.%s", ps[i].name);
            rc = read_into(sf, path, name, &ps[i], tmp + np + ps[i].offset, err);
            if (rc)
                break;
            snprintf(name, sizeof name, "optimizer.v.%s", ps[i].name);
            rc = read_into(sf, path, name, &ps[i], tmp + 2 * np + ps[i].offset, err);
        }
        const char *s = safetensors_metadata(sf, "optimizer_step");
        if (!rc && (!s || (step = atoi(s)) < 0))
            rc = err_set(err, ERR_FORMAT, "%s: no optimizer_step in the metadata", path);
    }
    if (!rc)
        rc = reward_model_write_state(m->rm, tmp, optimizer ? tmp + np : NULL,
                                      optimizer ? tmp + 2 * np : NULL, err);
    if (!rc && optimizer)
        reward_model_set_step_count(m->rm, step);
out:
    free(tmp);
    safetensors_close(sf);
    return rc;
}
