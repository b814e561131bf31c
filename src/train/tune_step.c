/* tune_step — noising, one micro-batch's gradient, the adapters' optimizer (tune_step.h). */
#include "tune_step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fmt_safetensors.h"
#include "lora_file.h"
#include "lora_set.h"
#include "optim.h"

void tune_add_noise(const float *alphas_cumprod, int t, const float *x0, const float *noise,
                    size_t n, SchedPrediction pred, float *xt, float *target) {
    float a = sqrtf(alphas_cumprod[t]);
    float b = sqrtf(1.0f - alphas_cumprod[t]);
    for (size_t i = 0; i < n; i++) {
        xt[i] = a * x0[i] + b * noise[i];
        if (pred == SCHED_PRED_EPSILON)
            target[i] = noise[i];
        else if (pred == SCHED_PRED_V)
            target[i] = a * noise[i] - b * x0[i];
        else
            target[i] = x0[i];
    }
}

/* ---- one micro-batch ---------------------------------------------------------------------- */

/* What unet_forward_backward's dout_fn needs: the reference's predictions, the batch, and
 * where the statistics go. */
typedef struct DoutCtx {
    Backend *be;
    const TuneBatch *b;
    TuneObjective obj;
    int xl;
    float beta, scale;
    const float *ref;   /* (2B, N) host */
    float *pred, *d;    /* (2B, N) host scratch */
    TuneLossStats *st;
} DoutCtx;

static int dout_fn(void *ctx, const Tensor *out, const Tensor *dout, Err *err) {
    DoutCtx *c = ctx;
    const TuneBatch *b = c->b;
    int B2 = 2 * b->B;
    size_t N = (size_t)b->C * b->H * b->W, h = (size_t)b->B * N;
    Tensor hp = tensor_4d(c->pred, B2, b->C, b->H, b->W);
    backend_download(c->be, &hp, out);
    int rc = backend_sync(c->be, err);
    if (rc)
        return rc;
    tune_loss_grad(c->obj, c->xl, c->beta, b->B, N, c->pred, c->pred + h, c->ref, c->ref + h,
                   b->target, b->target + h, c->scale, c->d, c->d + h, c->st);
    Tensor hd = tensor_4d(c->d, B2, b->C, b->H, b->W);
    backend_upload(c->be, dout, &hd);
    return 0;
}

int tune_batch_grad(Unet *u, Backend *be, const TuneBatch *b, TuneObjective obj, int xl,
                    float beta, float scale, TuneLossStats *st, Err *err) {
    int B2 = 2 * b->B;
    size_t N = (size_t)b->C * b->H * b->W;
    int64_t xs[4] = {B2, b->C, b->H, b->W}, es[3] = {B2, b->T, b->D}, ps[2] = {B2, b->P};
    Tensor x = backend_tensor_new(be, DTYPE_F32, 4, xs);
    Tensor out = backend_tensor_new(be, DTYPE_F32, 4, xs);
    Tensor ehs = backend_tensor_new(be, DTYPE_F32, 3, es);
    Tensor te = {0};
    if (b->pooled)
        te = backend_tensor_new(be, DTYPE_F32, 2, ps);
    float *ref = xmalloc(3 * (size_t)B2 * N * sizeof *ref);
    float *pred = ref + (size_t)B2 * N, *d = pred + (size_t)B2 * N;
    int rc = 0;
    if (!x.ptr || !out.ptr || !ehs.ptr || (b->pooled && !te.ptr)) {
        rc = backend_sync(be, err);
        if (!rc)
            rc = err_set(err, ERR_NOMEM, "tune: out of device memory for a batch of %d", B2);
        goto done;
    }
    Tensor hx = tensor_4d((float *)b->xt, B2, b->C, b->H, b->W);
    Tensor he = tensor_3d((float *)b->ehs, B2, b->T, b->D);
    backend_upload(be, &x, &hx);
    backend_upload(be, &ehs, &he);
    if (b->pooled) {
        Tensor hp = tensor_2d((float *)b->pooled, B2, b->P);
        backend_upload(be, &te, &hp);
    }
    const Tensor *tep = b->pooled ? &te : NULL;
    /* the reference: the adapters off */
    unet_lora_enable(u, 0);
    rc = unet_forward(u, be, &out, &x, b->t, &ehs, tep, b->time_ids, err);
    unet_lora_enable(u, 1);
    if (!rc) {
        Tensor hr = tensor_4d(ref, B2, b->C, b->H, b->W);
        backend_download(be, &hr, &out);
        rc = backend_sync(be, err);
    }
    /* the policy's forward and backward, the objective's gradient in between */
    DoutCtx c = {be, b, obj, xl, beta, scale, ref, pred, d, st};
    if (!rc)
        rc = unet_forward_backward(u, be, &out, NULL, dout_fn, &c, &x, b->t, &ehs, tep,
                                   b->time_ids, err);
done:
    backend_tensor_free(be, &x);
    backend_tensor_free(be, &out);
    backend_tensor_free(be, &ehs);
    if (b->pooled)
        backend_tensor_free(be, &te);
    free(ref);
    return rc;
}

/* ---- the optimizer ------------------------------------------------------------------------ */

/* Copy every adapter tensor (which = 0: A, B, DoRA's m) or its gradient (which = 1) between
 * the device and FLAT (dir 0: device → flat, 1: flat → device), in unet_adapter_param's order. */
static int flat_xfer(TuneOpt *o, float *flat, int which, int dir, Err *err) {
    size_t off = 0;
    int n = unet_adapter_param_count(o->u);
    for (int i = 0; i < n; i++) {
        Tensor t[2];
        unet_adapter_param(o->u, i, &t[0], &t[1]);
        Tensor *dev = &t[which];
        Tensor h = tensor_view(flat + off, dev->n_dims, dev->shape);
        if (dir == 0)
            backend_download(o->be, &h, dev);
        else
            backend_upload(o->be, dev, &h);
        off += (size_t)tensor_numel(dev);
    }
    return backend_sync(o->be, err);
}

int tune_opt_init(TuneOpt *o, Unet *u, Backend *be, TuneOptKind kind, Err *err) {
    memset(o, 0, sizeof *o);
    o->u = u;
    o->be = be;
    o->kind = kind;
    o->weight_decay = 1e-2f;
    o->max_norm = 1.0f;
    int n = unet_adapter_param_count(u);
    if (n <= 0)
        return err_set(err, ERR_USAGE, "tune: the UNet has no adapters to train");
    o->ts = xcalloc((size_t)n, sizeof *o->ts);
    o->nt = n;
    int conv = 0; /* the current adapter's A is 4-D */
    for (int i = 0; i < n; i++) {
        Tensor p;
        const char *name = unet_adapter_param(u, i, &p, NULL);
        TuneOptTensor *t = &o->ts[i];
        t->off = o->n;
        t->n = (size_t)tensor_numel(&p);
        o->n += t->n;
        int dora_m = strstr(name, "lora_magnitude_vector") != NULL;
        if (strstr(name, "lora_A"))
            conv = p.n_dims == 4;
        int nd = dora_m && conv ? 4 : p.n_dims; /* PEFT's conv m is (1, out, 1, 1) */
        if (nd >= 2) {
            t->factored = 1;
            t->C = dora_m ? 1 : (size_t)p.shape[p.n_dims - 1];
            t->R = dora_m ? 1 : (size_t)p.shape[p.n_dims - 2];
            t->lead = t->n / (t->R * t->C);
            t->foff = o->nf;
            o->nf += t->lead * (t->R + t->C);
        } else {
            t->lead = 1, t->R = 1, t->C = t->n;
        }
    }
    o->p = xcalloc(4 * o->n, sizeof(float));
    o->g = o->p + o->n;
    o->m = o->g + o->n;
    o->v = o->m + o->n;
    o->f = xcalloc(o->nf ? o->nf : 1, sizeof(float));
    return flat_xfer(o, o->p, 0, 0, err);
}

void tune_opt_deinit(TuneOpt *o) {
    if (!o)
        return;
    free(o->p);
    free(o->f);
    free(o->ts);
    memset(o, 0, sizeof *o);
}

int tune_opt_upload(TuneOpt *o, Err *err) { return flat_xfer(o, o->p, 0, 1, err); }

/* One transformers.Adafactor step of tensor T (see tune_step.h), in f32 as torch does it. */
static void adafactor_tensor(TuneOpt *o, const TuneOptTensor *t, float lr, float *u) {
    float *p = o->p + t->off, *g = o->g + t->off;
    float beta2t = 1.0f - powf((float)o->t, -0.8f);
    const float eps1 = 1e-30f;
    if (t->factored) {
        float *row = o->f + t->foff, *col = row + t->lead * t->R;
        for (size_t l = 0; l < t->lead; l++) {
            const float *gl = g + l * t->R * t->C;
            float *rl = row + l * t->R, *cl = col + l * t->C;
            for (size_t r = 0; r < t->R; r++) {
                double s = 0;
                for (size_t c = 0; c < t->C; c++)
                    s += (double)(gl[r * t->C + c] * gl[r * t->C + c] + eps1);
                rl[r] = beta2t * rl[r] + (1.0f - beta2t) * (float)(s / (double)t->C);
            }
            for (size_t c = 0; c < t->C; c++) {
                double s = 0;
                for (size_t r = 0; r < t->R; r++)
                    s += (double)(gl[r * t->C + c] * gl[r * t->C + c] + eps1);
                cl[c] = beta2t * cl[c] + (1.0f - beta2t) * (float)(s / (double)t->R);
            }
            double rm = 0;
            for (size_t r = 0; r < t->R; r++)
                rm += rl[r];
            float rmean = (float)(rm / (double)t->R);
            for (size_t r = 0; r < t->R; r++) {
                float rf = 1.0f / sqrtf(rl[r] / rmean);
                for (size_t c = 0; c < t->C; c++)
                    u[l * t->R * t->C + r * t->C + c] =
                        rf * (1.0f / sqrtf(cl[c])) * gl[r * t->C + c];
            }
        }
    } else {
        float *v = o->v + t->off;
        for (size_t i = 0; i < t->n; i++) {
            v[i] = beta2t * v[i] + (1.0f - beta2t) * (g[i] * g[i] + eps1);
            u[i] = (1.0f / sqrtf(v[i])) * g[i];
        }
    }
    double ss = 0;
    for (size_t i = 0; i < t->n; i++)
        ss += (double)u[i] * u[i];
    float rms = (float)(sqrt(ss) / sqrt((double)t->n)); /* clip_threshold 1 */
    float div = rms > 1.0f ? rms : 1.0f;
    for (size_t i = 0; i < t->n; i++) {
        float up = u[i] / div * lr;
        p[i] += p[i] * (-o->weight_decay * lr);
        p[i] -= up;
    }
}

int tune_opt_step(TuneOpt *o, float lr, float *grad_norm, Err *err) {
    int rc = flat_xfer(o, o->g, 1, 0, err);
    if (rc)
        return rc;
    o->t++;
    if (o->kind == TUNE_OPT_ADAFACTOR) {
        if (grad_norm)
            *grad_norm = optim_grad_norm(o->g, o->n);
        float *u = o->m; /* scratch: Adafactor keeps no first moment */
        for (int i = 0; i < o->nt; i++)
            adafactor_tensor(o, &o->ts[i], lr, u + o->ts[i].off);
        memset(o->g, 0, o->n * sizeof *o->g);
    } else {
        float norm = optim_clip_grad_norm(o->g, o->n, o->max_norm);
        if (grad_norm)
            *grad_norm = norm;
        AdamWConfig cfg = optim_adamw_defaults();
        cfg.lr = lr;
        cfg.weight_decay = o->weight_decay;
        optim_adamw_step(o->p, o->g, o->m, o->v, o->n, o->t, lr, &cfg, 1);
    }
    unet_lora_zero_grad(o->u);
    return tune_opt_upload(o, err);
}

/* ---- files -------------------------------------------------------------------------------- */

int tune_opt_save(const TuneOpt *o, const char *const *targets, int n_targets,
                  const char *base_model, const char *dir, Err *err) {
    /* the adapter: adio16's PEFT / diffusers folder files, from the live adapters (which hold
     * the master weights exactly: they are uploaded after every step) */
    LoraSet set = {0};
    int rc = unet_adapter_export(o->u, &set, err);
    LoraFileMeta meta = {targets, n_targets, base_model};
    if (!rc)
        rc = lora_file_write_peft(&set, dir, &meta, err);
    lora_set_free(&set);
    if (rc)
        return rc;
    SafeTensorsWriter *w = safetensors_writer_new();
    int64_t shape[1] = {(int64_t)o->n};
    int64_t fshape[1] = {(int64_t)o->nf};
    rc = safetensors_writer_add(w, "m", ST_F32, 1, shape, o->m, err);
    if (!rc)
        rc = safetensors_writer_add(w, "v", ST_F32, 1, shape, o->v, err);
    if (!rc && o->nf) /* Adafactor's factored statistics */
        rc = safetensors_writer_add(w, "f", ST_F32, 1, fshape, o->f, err);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", o->t);
    safetensors_writer_meta(w, "step", buf);
    char *path = xasprintf("%s/optimizer.safetensors", dir);
    if (!rc)
        rc = safetensors_writer_save(w, path, err);
    free(path);
    safetensors_writer_free(w);
    return rc;
}

static int read_exact(SafeTensors *st, const char *name, float *out, size_t n, Err *err) {
    const StTensor *t = safetensors_find(st, name);
    if (!t || (size_t)t->n_elem != n)
        return err_set(err, ERR_FORMAT,
                       "%s: %s %s (the checkpoint is not of this adapter: start a new --out)",
                       safetensors_path(st), name, t ? "has the wrong size" : "is missing");
    return safetensors_read_f32(st, t, out, n, err);
}

int tune_opt_load(TuneOpt *o, const char *dir, Err *err) {
    LoraSet set = {0};
    int rc = lora_file_read(dir, &set, err);
    if (!rc)
        rc = unet_adapter_import(o->u, &set, err);
    lora_set_free(&set);
    if (!rc) /* the master weights: what the adapters now hold */
        rc = flat_xfer(o, o->p, 0, 0, err);
    if (rc)
        return rc;
    char *path;
    SafeTensors *st;
    path = xasprintf("%s/optimizer.safetensors", dir);
    st = safetensors_open(path, err);
    free(path);
    if (!st)
        return err ? err->code : ERR_IO;
    rc = read_exact(st, "m", o->m, o->n, err);
    if (!rc)
        rc = read_exact(st, "v", o->v, o->n, err);
    if (!rc && o->nf)
        rc = read_exact(st, "f", o->f, o->nf, err);
    const char *s = safetensors_metadata(st, "step");
    if (!rc && (!s || atoi(s) < 0))
        rc = err_set(err, ERR_FORMAT, "%s: no step in its metadata", safetensors_path(st));
    if (!rc)
        o->t = atoi(s);
    safetensors_close(st);
    if (!rc)
        rc = tune_opt_upload(o, err);
    return rc;
}
