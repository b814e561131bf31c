/* tune — the generator trainer's run: data, the step loop, metrics, checkpoints, resume,
 * samples (tune.h). The maths of one step are in tune_step.c and tune_loss.c.
 *
 * Run folder OUT:
 *   config.json          the run's settings (a resumed run must have the same)
 *   metrics.jsonl        one object per step
 *   checkpoint-S/        pytorch_lora_weights.safetensors + adapter_config.json (the adapter,
 *                        PEFT / diffusers files), optimizer.safetensors, state.json
 *   final/               the same after the last step
 *   samples/step-S/      pI-seedN.png
 * State of a run: fresh (no checkpoint) → steps → checkpoint-S every save_every → final/.
 * Cancelled or killed: the newest checkpoint-S/ is where the next run on OUT starts. */
#include "tune.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "backend.h"
#include "base.h"
#include "image.h"
#include "pipeline.h"
#include "rng.h"
#include "sched_config.h"
#include "scheduler.h"
#include "store_run_images.h"
#include "store_runs.h"
#include "sd_text.h"
#include "sd_weights.h"
#include "train_int.h"
#include "tune_int.h"
#include "tune_latents.h"
#include "tune_online.h"
#include "tune_pairs_src.h"
#include "tune_step.h"
#include "unet.h"
#include "vae.h"

static const char *const DEFAULT_TARGETS[] = UNET_ADAPTER_DEFAULT_TARGETS;

void tune_config_defaults(TuneConfig *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->objective, sizeof c->objective, "dpo");
    snprintf(c->adapter, sizeof c->adapter, "lora");
    snprintf(c->device, sizeof c->device, "auto");
    snprintf(c->dtype, sizeof c->dtype, "auto");
    snprintf(c->optimizer, sizeof c->optimizer, "adamw");
    snprintf(c->checkpointing, sizeof c->checkpointing, "auto");
    c->rank = 8;
    c->alpha = 32;
    c->lr = 5e-5;
    c->weight_decay = 1e-2;
    c->steps = 2000;
    c->batch = 1;
    c->accum = 1;
    c->save_every = 500;
    snprintf(c->sample_seeds, sizeof c->sample_seeds, "0,1");
    c->sample_steps = 20;
    c->min_diff = 0.5;
    c->candidates = 4; /* online16 */
    c->rounds = 10;
    c->steps_per_round = 10;
    c->guidance = 7.5;
}

double tune_default_beta(const char *objective, int xl) {
    if (objective && !strcmp(objective, "dspo"))
        return xl ? 5000 : 0.001;
    return xl ? 5000 : 2000;
}

int tune_config_check(const TuneConfig *c, Err *err) {
    if (!c->model[0])
        return err_set(err, ERR_USAGE, "tune: --model is required (a diffusers model folder "
                       "or a single-file checkpoint)");
    int orc = c->online ? tune_online_check(c, err) : 0; /* online16: its own checks first */
    if (orc)
        return orc;
    if (!c->pairs[0] && !c->from_store && !c->online)
        return err_set(err, ERR_USAGE, "tune: give --pairs FILE (a pairs.jsonl) or --from-store");
    if (c->pairs[0] && c->from_store)
        return err_set(err, ERR_USAGE, "tune: --pairs and --from-store: give one of them");
    if (!c->from_store && !c->online && (c->aspect[0] || c->reward[0]))
        return err_set(err, ERR_USAGE, "tune: --aspect and --reward go with --from-store");
    if (c->aspect[0] && c->reward[0])
        return err_set(err, ERR_USAGE, "tune: --aspect NAME (one aspect's ratings) or --reward "
                       "CKPT (all aspects, weighed by its heads): give one of them");
    if (!(c->min_diff >= 0))
        return err_set(err, ERR_USAGE, "tune: --min-diff must be 0 or more");
    if (!c->out[0])
        return err_set(err, ERR_USAGE, "tune: --out DIR is required (the run folder)");
    if (tune_objective_parse(c->objective) < 0)
        return err_set(err, ERR_USAGE, "tune: --objective '%s': use dpo, dspo or adpo",
                       c->objective);
    if (strcmp(c->adapter, "lora") && strcmp(c->adapter, "dora"))
        return err_set(err, ERR_USAGE, "tune: --adapter '%s': use lora or dora", c->adapter);
    if (strcmp(c->dtype, "auto") && strcmp(c->dtype, "f32") && strcmp(c->dtype, "f16") &&
        strcmp(c->dtype, "bf16"))
        return err_set(err, ERR_USAGE, "tune: --dtype '%s': use auto, f32, f16 or bf16",
                       c->dtype);
    if (strcmp(c->checkpointing, "auto") && strcmp(c->checkpointing, "on") &&
        strcmp(c->checkpointing, "off"))
        return err_set(err, ERR_USAGE, "tune: --checkpointing '%s': use auto, on or off",
                       c->checkpointing);
    if (strcmp(c->optimizer, "adamw") && strcmp(c->optimizer, "adafactor"))
        return err_set(err, ERR_USAGE, "tune: --optimizer '%s': use adamw or adafactor",
                       c->optimizer);
    if (c->rank < 1 || c->rank > 1024)
        return err_set(err, ERR_USAGE, "tune: --rank %d: use 1 to 1024", c->rank);
    if (!(c->alpha > 0) || !isfinite(c->alpha))
        return err_set(err, ERR_USAGE, "tune: --alpha must be a positive number");
    if (!(c->beta >= 0) || !isfinite(c->beta))
        return err_set(err, ERR_USAGE, "tune: --beta must be a positive number");
    if (!(c->lr > 0) || !isfinite(c->lr))
        return err_set(err, ERR_USAGE, "tune: --lr must be a positive number");
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return err_set(err, ERR_USAGE, "tune: --weight-decay must be 0 or more");
    if (c->steps < 1 || c->batch < 1 || c->accum < 1 || c->save_every < 0 || c->warmup < 0 ||
        c->sample_steps < 1 || c->threads < 0)
        return err_set(err, ERR_USAGE, "tune: --steps, --batch, --accum and --sample-steps must "
                       "be 1 or more, --save-every, --warmup and --threads 0 or more");
    if (c->width < 0 || c->height < 0 || c->width % 8 || c->height % 8)
        return err_set(err, ERR_USAGE, "tune: --size %dx%d: use multiples of 8", c->width,
                       c->height);
    return 0;
}

/* ---- the run's data ----------------------------------------------------------------------- */

typedef struct TImage {
    char *path;
    float *lat;   /* (C, h, w) */
    int line;     /* the first pair naming it */
} TImage;

typedef struct TText {
    char *text;
    float *ehs;    /* (T, D) */
    float *pooled; /* (P) or NULL */
} TText;

typedef struct TPair {
    int w, l;      /* images */
    int c, cneg;   /* texts; cneg -1: drawn per slot */
} TPair;

typedef struct Run {
    const TuneConfig *cfg;
    const TuneHooks *hooks;
    Store *st;
    int64_t run_id;
    Backend *be;
    SdPipeline *pipe;
    Unet *u;
    int xl;
    DType wdtype;         /* the base weights' resident dtype */
    TuneObjective obj;
    float beta;
    SchedConfig sc;
    Scheduler sched;      /* for alphas_cumprod */
    int W, H, h, w, C, T, D, P;
    TImage *img;
    size_t n_img;
    TText *txt;
    size_t n_txt;
    TPair *pair;
    size_t n_pair;
    int *perm;            /* the permutation of epoch perm_epoch */
    int64_t perm_epoch;
    TuneOpt opt;
    char **targets;       /* the adapter's target_modules */
    int n_targets;
} Run;

static int find_or_add_image(Run *r, const char *path, int line) {
    for (size_t i = 0; i < r->n_img; i++)
        if (!strcmp(r->img[i].path, path))
            return (int)i;
    r->img = xrealloc(r->img, (r->n_img + 1) * sizeof *r->img);
    r->img[r->n_img] = (TImage){xstrdup(path), NULL, line};
    return (int)r->n_img++;
}

static int find_or_add_text(Run *r, const char *text) {
    for (size_t i = 0; i < r->n_txt; i++)
        if (!strcmp(r->txt[i].text, text))
            return (int)i;
    r->txt = xrealloc(r->txt, (r->n_txt + 1) * sizeof *r->txt);
    r->txt[r->n_txt] = (TText){xstrdup(text), NULL, NULL};
    return (int)r->n_txt++;
}

/* Every image's latents: from the store's latent cache (tune_latents.h: encoded once across
 * runs) when there is a store, else encoded here. Errors name the pairs file's line. */
static int encode_images(Run *r, Err *err) {
    Vae *vae = NULL;
    VaeOptions vo = {0};
    vo.parts = VAE_ENCODER;
    int rc = vae_load(r->be, sd_pipeline_path(r->pipe), &vo, &vae, err);
    char key[SHA256_HEX_LEN + 1];
    if (!rc && r->st)
        rc = tune_vae_key(sd_pipeline_path(r->pipe), key, err);
    if (rc) {
        vae_free(vae);
        return rc;
    }
    const VaeConfig *vc = vae_config(vae);
    size_t npx = (size_t)3 * r->W * r->H, nl = (size_t)r->C * r->h * r->w;
    float *pix = xmalloc(npx * sizeof *pix), *logvar = xmalloc(nl * sizeof *logvar);
    for (size_t i = 0; !rc && i < r->n_img; i++) {
        if (progress_cancelled(&r->hooks->progress)) {
            rc = err_set(err, ERR_CANCELLED, "tune: cancelled while encoding the images");
            break;
        }
        r->img[i].lat = xmalloc(nl * sizeof(float));
        if (r->st) {
            rc = tune_latents_get(r->st, vae, key, r->img[i].path, r->W, r->H, r->img[i].lat,
                                  err);
        } else {
            Image im = {0};
            rc = image_load(r->img[i].path, 3, &im, err);
            if (!rc) {
                tune_image_pixels(im.px, im.w, im.h, r->W, r->H, pix);
                image_deinit(&im);
                rc = vae_encode(vae, pix, 1, r->H, r->W, r->img[i].lat, logvar, err);
            }
            for (size_t j = 0; !rc && j < nl; j++)
                r->img[i].lat[j] = (r->img[i].lat[j] - (vc->has_shift ? vc->shift_factor : 0)) *
                                   vc->scaling_factor;
        }
        if (rc && r->img[i].line)
            err_prefix(err, "%s:%d", r->cfg->pairs, r->img[i].line);
        progress_report(&r->hooks->progress, (double)i + 1, (double)r->n_img, "images");
    }
    free(pix);
    free(logvar);
    vae_free(vae);
    return rc;
}

static int encode_texts(Run *r, Err *err) {
    SdText *t = sd_pipeline_text(r->pipe);
    int rc = 0;
    for (size_t i = 0; !rc && i < r->n_txt; i++) {
        r->txt[i].ehs = xmalloc((size_t)r->T * r->D * sizeof(float));
        if (r->xl)
            r->txt[i].pooled = xmalloc((size_t)r->P * sizeof(float));
        rc = sd_text_encode_prompt(t, r->txt[i].text, NULL, 0, 0, r->txt[i].ehs, NULL,
                                   r->txt[i].pooled, NULL, err);
    }
    return rc;
}

/* The pair of slot G (see tune.h). */
static int pair_at(Run *r, int64_t g) {
    int64_t n = (int64_t)r->n_pair, e = g / n;
    if (!r->perm || r->perm_epoch != e) {
        if (!r->perm)
            r->perm = xmalloc((size_t)n * sizeof *r->perm);
        for (int64_t i = 0; i < n; i++)
            r->perm[i] = (int)i;
        Rng rg;
        rng_init(&rg, rng_hash_u64(r->cfg->seed, 0x5eed0000ull + (uint64_t)e));
        rng_shuffle(&rg, r->perm, (size_t)n);
        r->perm_epoch = e;
    }
    return r->perm[g % n];
}

/* ---- one step ----------------------------------------------------------------------------- */

typedef TuneStepMetrics StepOut;

static float lr_at(const TuneConfig *c, int s) {
    if (c->warmup > 0 && s <= c->warmup)
        return (float)(c->lr * s / c->warmup);
    return (float)c->lr;
}

static int run_step(Run *r, int s, StepOut *so, Err *err) {
    const TuneConfig *c = r->cfg;
    int B = c->batch;
    size_t N = (size_t)r->C * r->h * r->w, TD = (size_t)r->T * r->D;
    float *xt = xmalloc(2 * B * N * sizeof *xt), *tgt = xmalloc(2 * B * N * sizeof *tgt);
    float *noise = xmalloc(N * sizeof *noise), *tt = xmalloc(2 * B * sizeof *tt);
    float *ehs = xmalloc(2 * B * TD * sizeof *ehs);
    float *pooled = r->xl ? xmalloc(2 * B * (size_t)r->P * sizeof *pooled) : NULL;
    float *tids = r->xl ? xmalloc(2 * B * 6 * sizeof *tids) : NULL;
    double t0 = base_wall();
    TuneLossStats sum = {0};
    int rc = 0;
    for (int k = 0; !rc && k < c->accum; k++) {
        if (k > 0 && progress_cancelled(&r->hooks->progress)) {
            /* a long accumulation stops within a micro-batch; the step is dropped whole */
            unet_lora_zero_grad(r->u);
            rc = ERR_CANCELLED;
            break;
        }
        for (int b = 0; b < B; b++) {
            int64_t g = ((int64_t)(s - 1) * c->accum + k) * B + b;
            int pi = pair_at(r, g);
            const TPair *p = &r->pair[pi];
            Rng rg;
            rng_init(&rg, rng_hash_u64(rng_hash_u64(c->seed, (uint64_t)g), (uint64_t)pi));
            int t = (int)rng_below(&rg, (uint64_t)r->sched.n_train);
            rng_fill_normal(&rg, noise, N, 0, 1);
            int cw = p->c, cl = p->c, il = p->l;
            if (r->obj == TUNE_ADPO) {
                il = p->w;
                cl = p->cneg;
                if (cl < 0) { /* another training prompt, drawn */
                    int k2 = (int)rng_below(&rg, r->n_txt - 1);
                    cl = k2 >= p->c ? k2 + 1 : k2;
                }
            }
            int iw = p->w;
            for (int side = 0; side < 2; side++) {
                int row = side * B + b;
                tune_add_noise(r->sched.alphas_cumprod, t, r->img[side ? il : iw].lat, noise, N,
                               r->sc.prediction, xt + row * N, tgt + row * N);
                tt[row] = (float)t;
                const TText *tx = &r->txt[side ? cl : cw];
                memcpy(ehs + row * TD, tx->ehs, TD * sizeof *ehs);
                if (r->xl) {
                    memcpy(pooled + (size_t)row * r->P, tx->pooled, (size_t)r->P * sizeof *pooled);
                    sd_text_add_time_ids(r->H, r->W, 0, 0, r->H, r->W, tids + 6 * row);
                }
            }
        }
        TuneBatch tb = {B, r->C, r->h, r->w, xt, tgt, tt, ehs, r->T, r->D, pooled, r->P, tids};
        TuneLossStats ls;
        rc = tune_batch_grad(r->u, r->be, &tb, r->obj, r->xl, r->beta, 1.0f / c->accum, &ls,
                             err);
        sum.loss += ls.loss;
        sum.acc += ls.acc;
        sum.margin += ls.margin;
        sum.kl += ls.kl;
        sum.n += ls.n;
    }
    float gn = 0, lr = lr_at(c, s);
    if (!rc)
        rc = tune_opt_step(&r->opt, lr, &gn, err);
    if (rc) {
        free(xt), free(tgt), free(noise), free(tt), free(ehs), free(pooled), free(tids);
        return rc;
    }
    double dt = base_wall() - t0;
    so->loss = sum.loss / c->accum;
    so->acc = sum.acc / sum.n;
    so->margin = sum.margin / sum.n;
    so->kl = sum.kl / sum.n;
    so->lr = lr;
    so->grad_norm = gn;
    so->pairs_per_s = dt > 0 ? sum.n / dt : 0;
    free(xt), free(tgt), free(noise), free(tt), free(ehs), free(pooled), free(tids);
    return rc;
}

/* ---- files -------------------------------------------------------------------------------- */

int tune_last_checkpoint(const char *out) {
    DIR *d = opendir(out);
    if (!d)
        return 0;
    int best = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int s;
        char tail;
        if (sscanf(e->d_name, "checkpoint-%d%c", &s, &tail) != 1 || s <= best)
            continue;
        char *p = xasprintf("%s/%s/state.json", out, e->d_name);
        if (base_is_file(p))
            best = s;
        free(p);
    }
    closedir(d);
    return best;
}

static char *config_json(const Run *r) {
    const TuneConfig *c = r->cfg;
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:f,s:f,s:f,s:f,s:i,s:i,s:I,s:i,s:i,"
                          "s:i,s:s,s:b,s:s,s:s,s:f,s:s}",
                          "model", c->model, "pairs", c->pairs, "objective", c->objective,
                          "adapter", c->adapter, "optimizer", c->optimizer, "targets",
                          c->targets, "rank", c->rank, "alpha", c->alpha, "beta",
                          (double)r->beta, "lr", c->lr, "weight_decay", c->weight_decay,
                          "batch", c->batch, "accum", c->accum, "seed", (json_int_t)c->seed,
                          "width", r->W, "height", r->H, "warmup", c->warmup, "family",
                          sd_pipeline_family(r->pipe), "from_store", c->from_store, "aspect",
                          c->aspect, "reward", c->reward, "min_diff", c->min_diff, "dtype",
                          r->wdtype == DTYPE_BF16 ? "bf16" : r->wdtype == DTYPE_F16 ? "f16"
                                                                                      : "f32");
    if (c->prediction[0]) /* only when overridden: older run folders' settings still match */
        json_object_set_new(o, "prediction", json_string(c->prediction));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

/* Write checkpoint folder NAME (checkpoint-S or final) whole, then rename it into place. */
static int save_checkpoint(Run *r, const char *name, int s, Err *err) {
    char *tmp = xasprintf("%s/.tmp-%s", r->cfg->out, name);
    char *dst = xasprintf("%s/%s", r->cfg->out, name);
    train_dir_remove(tmp);
    int rc = train_mkdirs(tmp, err);
    if (!rc)
        rc = tune_opt_save(&r->opt, (const char *const *)r->targets, r->n_targets,
                           r->cfg->model, tmp, err);
    if (!rc) {
        char *st = xasprintf("%s/state.json", tmp);
        char *txt = xasprintf("{\"step\": %d, \"objective\": \"%s\"}\n", s, r->cfg->objective);
        rc = train_write_file(st, txt, err);
        free(st);
        free(txt);
    }
    if (!rc)
        rc = train_dir_commit(tmp, dst, err);
    else
        train_dir_remove(tmp);
    if (!rc)
        atomic_file_sync_dir(dst);
    free(tmp);
    free(dst);
    return rc;
}

/* Keep the lines of metrics.jsonl of steps <= S (a resumed run redoes the rest). */
static int metrics_truncate(const char *path, int s, Err *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t cap = 0, n = 0;
    char *line = NULL, *keep = NULL;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        int st;
        if (sscanf(line, "{\"step\": %d", &st) != 1 || st > s)
            continue;
        keep = xrealloc(keep, n + (size_t)len + 1);
        memcpy(keep + n, line, (size_t)len);
        n += (size_t)len;
    }
    free(line);
    fclose(f);
    int rc = atomic_file_write(path, keep ? keep : "", n, err);
    free(keep);
    return rc;
}

static int metrics_write(Run *r, int s, const StepOut *so, Err *err) {
    char *path = xasprintf("%s/metrics.jsonl", r->cfg->out);
    FILE *f = fopen(path, "ab");
    int rc = 0;
    if (!f) {
        rc = err_set(err, ERR_IO, "%s: cannot append (%s)", path, strerror(errno));
    } else {
        fprintf(f, "{\"step\": %d, \"loss\": %.9g, \"acc\": %.9g, \"margin\": %.9g, "
                "\"kl\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, \"pairs_per_s\": %.6g}\n",
                s, so->loss, so->acc, so->margin, so->kl, so->lr, so->grad_norm,
                so->pairs_per_s);
        if (fflush(f) || fsync(fileno(f)))
            rc = err_set(err, ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
        fclose(f);
    }
    free(path);
    if (!rc && r->st && r->run_id) {
        static const char *const names[] = {"loss", "acc", "margin", "kl", "lr", "grad_norm",
                                            "pairs_per_s"};
        double v[] = {so->loss, so->acc, so->margin, so->kl, so->lr, so->grad_norm,
                      so->pairs_per_s};
        StoreMetric m[10];
        double epoch = (double)s * r->cfg->batch * r->cfg->accum / (double)r->n_pair;
        /* sys: the arena and its peak, and whether the backward kept every activation (1)
         * or checkpointed per block (0) */
        for (int i = 0; i < 10; i++) {
            memset(&m[i], 0, sizeof m[i]);
            snprintf(m[i].split, sizeof m[i].split, i < 7 ? "train" : "sys");
            snprintf(m[i].name, sizeof m[i].name, "%s",
                     i < 7    ? names[i]
                     : i == 7 ? "arena_mb"
                     : i == 8 ? "arena_peak_mb"
                              : "activations_kept");
            m[i].step = s;
            m[i].epoch = epoch;
            m[i].value = i < 7    ? v[i]
                         : i == 7 ? (double)backend_arena_size(r->be) / 1048576.0
                         : i == 8 ? (double)backend_arena_peak(r->be) / 1048576.0
                                  : (double)unet_kept(r->u);
        }
        rc = store_metrics_add(r->st, r->run_id, m, 10, err);
    }
    return rc;
}

/* Sample prompts: the file's lines, else the first pairs' prompts (at most two). */
static char **sample_prompts(const Run *r, int *n, Err *err) {
    *n = 0;
    char **v = NULL;
    if (r->cfg->sample_prompts[0]) {
        char *txt = train_read_file(r->cfg->sample_prompts, err);
        if (!txt)
            return NULL;
        for (char *save = NULL, *l = strtok_r(txt, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save)) {
            size_t len = strlen(l);
            if (len && l[len - 1] == '\r')
                l[--len] = 0;
            if (!len)
                continue;
            v = xrealloc(v, (size_t)(*n + 1) * sizeof *v);
            v[(*n)++] = xstrdup(l);
        }
        free(txt);
        return v;
    }
    for (size_t i = 0; i < r->n_txt && *n < 2; i++) {
        v = xrealloc(v, (size_t)(*n + 1) * sizeof *v);
        v[(*n)++] = xstrdup(r->txt[i].text);
    }
    return v;
}

static int write_samples(Run *r, int s, Err *err) {
    const char *seeds = r->cfg->sample_seeds;
    if (!seeds[0] || !strcmp(seeds, "none"))
        return 0;
    int np = 0, rc = 0;
    char **pr = sample_prompts(r, &np, err);
    if (!pr && r->cfg->sample_prompts[0])
        return err ? err->code : ERR_IO;
    char *dir = xasprintf("%s/samples/step-%d", r->cfg->out, s);
    rc = train_mkdirs(dir, err);
    for (int i = 0; !rc && i < np; i++) {
        char *list = xstrdup(seeds);
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); !rc && tok;
             tok = strtok_r(NULL, ",", &save)) {
            SdGenParams g = {0};
            g.prompt = pr[i];
            g.width = r->W;
            g.height = r->H;
            g.steps = r->cfg->sample_steps;
            g.guidance = 7.5f;
            g.seed = strtoull(tok, NULL, 10);
            uint8_t *rgb = NULL;
            int w = 0, h = 0;
            rc = sd_pipeline_generate(r->pipe, &g, NULL, &rgb, &w, &h, err);
            if (!rc) {
                char *path = xasprintf("%s/p%d-seed%llu.png", dir, i,
                                       (unsigned long long)g.seed);
                rc = image_write_png(path, rgb, w, h, 3, err);
                if (!rc && r->st && r->run_id) /* the Monitor's sample images */
                    rc = store_run_image_add(r->st, r->run_id, s, (int64_t)g.seed, pr[i], path,
                                             err);
                free(path);
            }
            free(rgb);
        }
        free(list);
    }
    base_strv_free(pr, (size_t)np);
    free(dir);
    return rc;
}

/* ---- the run ------------------------------------------------------------------------------ */

static void run_free(Run *r) {
    for (size_t i = 0; i < r->n_img; i++)
        free(r->img[i].path), free(r->img[i].lat);
    for (size_t i = 0; i < r->n_txt; i++)
        free(r->txt[i].text), free(r->txt[i].ehs), free(r->txt[i].pooled);
    free(r->img), free(r->txt), free(r->pair), free(r->perm);
    tune_opt_deinit(&r->opt);
    base_strv_free(r->targets, (size_t)r->n_targets);
    scheduler_deinit(&r->sched);
    sd_pipeline_close(r->pipe);
    backend_close(r->be);
}

static int split_targets(const char *s, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    if (!s || !s[0]) {
        int nd = (int)(sizeof DEFAULT_TARGETS / sizeof DEFAULT_TARGETS[0]);
        *out = xmalloc((size_t)nd * sizeof **out);
        for (int i = 0; i < nd; i++)
            (*out)[i] = xstrdup(DEFAULT_TARGETS[i]);
        *n = nd;
        return 0;
    }
    char *copy = xstrdup(s);
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        *out = xrealloc(*out, (size_t)(*n + 1) * sizeof **out);
        (*out)[(*n)++] = xstrdup(t);
    }
    free(copy);
    return 0;
}

/* The backend's arena for the UNet's backward over 2·batch samples at the training size:
 * per sample and level l, (h·w/4^l) latents × block_out[l] channels × 4 bytes × 110 (the block
 * outputs kept, their gradients, one block's internals with its attention tokens), plus
 * 64 MiB; 0 (the backend's default) when the UNet's config cannot be read (then
 * sd_pipeline_open says why). The factor is measured (the store's sys metric arena_peak_mb):
 * the peak of one step was 1.67 (LoRA) and 1.89 (DoRA) times the old factor 40's term on an
 * SD-1.5-shaped UNet (320/640/1280/1280) at 32² and 64² latents, 1.36-1.40 on an SDXL-shaped
 * one, 1.47-1.74 on the tiny test UNet: 40 ran out of arena ("scratch arena full") on the
 * SD-1.5 shape at 256² with two pairs. 88 became 110 when the per-block checkpointing began
 * keeping a transformer's token states and filling a whole block's record before its backward
 * (unet.c): its peak grew 21 % (LoRA) and 25 % (DoRA) on the bench's SD-1.5-shaped UNet
 * (128/256/256) at 32², batch 4 (222 → 267, 254 → 318 MiB). A larger arena also lets the
 * backward keep every block's record (one forward less) on small models and sizes. */
static size_t arena_for(const TuneConfig *c) {
    /* a folder's unet/ and vae/ configs, or a single file's family configs */
    SdWeights *su = NULL, *sv = NULL;
    const char *ut = sd_weights_open(c->model, "unet", &su, NULL) == 0
                         ? sd_weights_config_json(su) : NULL;
    const char *vt = sd_weights_open(c->model, "vae", &sv, NULL) == 0
                         ? sd_weights_config_json(sv) : NULL;
    int dw = c->width, dh = c->height;
    const char *family;
    if (!dw && sd_pipeline_model_defaults(c->model, c->prediction, &dw, &dh, &family, NULL))
        dw = dh = 0;
    UnetConfig uc;
    VaeConfig vc;
    size_t bytes = 0;
    if (ut && vt && dw > 0 && unet_config_parse(ut, c->model, &uc, NULL) == 0 &&
        vae_config_parse(vt, c->model, &vc, NULL) == 0) {
        double h = dh / vae_scale(&vc), w = dw / vae_scale(&vc), per = 0, top = 0;
        for (int l = 0; l < uc.levels; l++) {
            per += h * w / pow(4, l) * uc.block_out[l] * 4.0 * 110;
            top = uc.block_out[l] > top ? uc.block_out[l] : top;
        }
        /* + a Winograd conv's transformed weights (16·OC·C floats; the widest is an up
         * block's 2C → C), which the term above was measured without */
        bytes = ((size_t)64 << 20) + (size_t)(2.0 * c->batch * per) +
                (size_t)(16.0 * 2 * top * top * 4);
    }
    sd_weights_close(su);
    sd_weights_close(sv);
    return bytes;
}

/* The CPU arena when the backward may keep every activation: half the RAM (at least the
 * checkpointing arena). It is address space that costs memory only as it is used
 * (arena_init), and the UNet keeps its records only when their estimate fits (unet.h), so
 * the ceiling only bounds what keeping may take. */
static size_t keep_arena_cpu(size_t least) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    size_t half = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 2 : 0;
    return half > least ? half : least;
}

/* A GPU arena with room for every activation (--checkpointing off): the checkpointing
 * arena's term times 3.5, the keep records measured beside it on the bench's SD-1.5-shaped
 * UNet (LoRA 751 MiB, DoRA 1000 MiB against 267 / 318 MiB checkpointing; doc/models.md). */
static size_t keep_arena_gpu(size_t checkpointing) {
    size_t base = (size_t)64 << 20;
    return checkpointing > base ? base + (checkpointing - base) / 2 * 7 : checkpointing;
}

/* The pairs: from the store's ratings (per aspect, or combined with a reward model's head
 * weights) or a pairs file. The one place that knows the sources. */
static int load_pairs(Run *r, TunePairs *ps, Err *err) {
    const TuneConfig *c = r->cfg;
    if (!c->from_store)
        return tune_pairs_load_file_ex(r->st, c->pairs, NULL, NULL, ps, err);
    if (!r->st)
        return err_set(err, ERR_USAGE, "tune: --from-store needs a store");
    double hw[TUNE_N_HEADS];
    int rc = 0;
    if (c->reward[0])
        rc = tune_reward_head_weights(c->reward, hw, err);
    if (!rc)
        rc = tune_pairs_from_store(r->st, c->aspect[0] ? c->aspect : NULL,
                                   c->reward[0] ? hw : NULL, c->min_diff, ps, err);
    return rc;
}

/* Open the backend and the model, read and encode the data: nothing written yet. */
static int run_prepare(Run *r, Err *err) {
    const TuneConfig *c = r->cfg;
    TunePairs ps = {0};
    int rc = c->online ? 0 : load_pairs(r, &ps, err); /* online16: pairs come per round */
    if (rc)
        return rc;
    BackendConfig bc = {0};
    bc.threads = c->threads;
    bc.arena_bytes = arena_for(c);
    int keep = !strcmp(c->checkpointing, "on")    ? UNET_KEEP_OFF
               : !strcmp(c->checkpointing, "off") ? UNET_KEEP_ON
                                                  : UNET_KEEP_AUTO;
    int spec = BACKEND_SPEC_AUTO, index = 0;
    backend_spec_parse(c->device, &spec, &index, NULL);
    if (keep == UNET_KEEP_ON && spec != BACKEND_SPEC_CPU)
        bc.arena_bytes = keep_arena_gpu(bc.arena_bytes);
    else if (keep != UNET_KEEP_OFF && spec == BACKEND_SPEC_CPU)
        bc.arena_bytes = keep_arena_cpu(bc.arena_bytes);
    char note[256] = "";
    rc = backend_open(c->device, &bc, &r->be, note, sizeof note, err);
    if (!rc && keep != UNET_KEEP_OFF && spec != BACKEND_SPEC_CPU &&
        backend_kind(r->be) == BACKEND_CPU) { /* auto or cuda fell back to the CPU */
        backend_close(r->be);
        r->be = NULL;
        bc.arena_bytes = keep_arena_cpu(arena_for(c));
        rc = backend_open("cpu", &bc, &r->be, NULL, 0, err);
    }
    if (!rc && note[0]) {
        if (r->hooks->device_note)
            r->hooks->device_note(r->hooks->progress.user, note);
        else
            progress_log(&r->hooks->progress, note);
    }
    if (!rc) {
        SdPipelineConfig pc = {0};
        pc.arena_bytes = bc.arena_bytes;
        pc.weights = !strcmp(c->dtype, "f16")    ? DTYPE_F16
                     : !strcmp(c->dtype, "bf16") ? DTYPE_BF16
                     : !strcmp(c->dtype, "f32")  ? DTYPE_F32
                     : backend_kind(r->be) == BACKEND_CUDA ? DTYPE_BF16 : DTYPE_F32;
        r->wdtype = pc.weights;
        pc.tokenizer = c->tokenizer[0] ? c->tokenizer : NULL;
        pc.prediction = c->prediction[0] ? c->prediction : NULL;
        rc = sd_pipeline_open(c->model, r->be, &pc, &r->pipe, err);
    }
    if (!rc) {
        r->u = sd_pipeline_unet(r->pipe);
        /* auto: keep when the records fit the arena (on a GPU sized for checkpointing, so
         * small models and sizes only) */
        unet_set_keep(r->u, (UnetKeep)keep);
        r->xl = !strcmp(sd_pipeline_family(r->pipe), "sdxl");
        r->obj = (TuneObjective)tune_objective_parse(c->objective);
        r->beta = (float)(c->beta > 0 ? c->beta : tune_default_beta(c->objective, r->xl));
        rc = sd_pipeline_sched_config(r->pipe, &r->sc, err);
    }
    if (!rc)
        rc = scheduler_init(&r->sched, &r->sc, 1, err);
    if (!rc) {
        sd_pipeline_default_size(r->pipe, &r->W, &r->H);
        if (c->width)
            r->W = c->width, r->H = c->height;
        const UnetConfig *uc = unet_config(r->u);
        r->C = uc->in_channels;
        int scale = vae_scale(vae_config(sd_pipeline_vae(r->pipe))); /* 8 but in tiny models */
        r->w = r->W / scale;
        r->h = r->H / scale;
        SdText *t = sd_pipeline_text(r->pipe);
        r->T = sd_text_context(t);
        r->D = sd_text_width(t);
        r->P = r->xl ? sd_text_pooled_width(t) : 0;
        r->pair = xcalloc(ps.n, sizeof *r->pair);
        r->n_pair = ps.n;
        for (size_t i = 0; i < ps.n; i++) {
            const TunePair *p = &ps.v[i];
            r->pair[i].w = find_or_add_image(r, p->path_w, p->line);
            r->pair[i].l = find_or_add_image(r, p->path_l, p->line);
            r->pair[i].c = find_or_add_text(r, p->prompt);
            r->pair[i].cneg = p->prompt_neg ? find_or_add_text(r, p->prompt_neg) : -1;
        }
        int need_draw = 0;
        for (size_t i = 0; i < ps.n; i++)
            need_draw |= r->pair[i].cneg < 0;
        if (r->obj == TUNE_ADPO && need_draw && r->n_txt < 2)
            rc = err_set(err, ERR_USAGE, "%s: adpo needs a rejected context: give the pairs a "
                         "\"prompt_neg\", or pairs of at least two prompts", c->pairs);
    }
    tune_pairs_free(&ps);
    if (!rc)
        rc = encode_images(r, err);
    if (!rc)
        rc = encode_texts(r, err);
    if (!rc) {
        split_targets(c->targets, &r->targets, &r->n_targets);
        UnetAdapterConfig ac = {c->rank, (float)c->alpha, !strcmp(c->adapter, "dora"),
                                (const char *const *)r->targets, r->n_targets, c->seed};
        rc = unet_adapter_add(r->u, &ac, err);
    }
    if (!rc)
        rc = tune_opt_init(&r->opt, r->u, r->be,
                           strcmp(c->optimizer, "adafactor") ? TUNE_OPT_ADAMW
                                                             : TUNE_OPT_ADAFACTOR, err);
    r->opt.weight_decay = (float)c->weight_decay;
    return rc;
}

/* The store's run: created, or found again by the name in OUT/run.txt when resuming. */
static int run_store_open(Run *r, int resume_step, const char *cfg_json, Err *err) {
    if (!r->st)
        return 0;
    char *path = xasprintf("%s/run.txt", r->cfg->out);
    char *name = base_is_file(path) ? train_read_file(path, NULL) : NULL;
    int rc = 0;
    if (name) {
        name[strcspn(name, "\n")] = 0;
        StoreRun sr;
        if (store_run_by_name(r->st, name, &sr, NULL) == 0) {
            r->run_id = sr.id;
            store_run_deinit(&sr);
            rc = store_metrics_truncate(r->st, r->run_id, resume_step, err);
            if (!rc)
                rc = store_run_images_truncate(r->st, r->run_id, resume_step, err);
            if (!rc)
                rc = store_run_set_state(r->st, r->run_id, "running", err);
            free(name), free(path);
            return rc;
        }
        free(name);
    }
    char *nm = NULL;
    /* a generated name can be taken between choosing and creating it (two runs started in
     * the same second): choose again at once (the next choice sees the other run's row) */
    for (int tries = 0; tries < 20; tries++) {
        free(nm);
        nm = r->cfg->run_name[0] ? xstrdup(r->cfg->run_name) : store_run_unique_name(r->st,
                                                                                      "tune");
        Err e = {0};
        rc = store_run_create(r->st, nm, "tune", cfg_json, r->hooks->job_id, r->cfg->out,
                              &r->run_id, &e);
        if (rc != ERR_CONFLICT || r->cfg->run_name[0]) {
            if (rc)
                err_pass(err, &e, rc);
            break;
        }
    }
    if (!rc) {
        char *txt = xasprintf("%s\n", nm);
        rc = atomic_file_write(path, txt, strlen(txt), err);
        free(txt);
    }
    free(nm);
    free(path);
    return rc;
}

int tune_run(Store *st, const TuneConfig *c, const TuneHooks *h, Err *err) {
    static const TuneHooks none = {0};
    int rc = tune_config_check(c, err);
    if (rc)
        return rc;
    if (c->online) /* online16 */
        return tune_online_run(st, c, h, err);
    Run r = {0};
    r.cfg = c;
    r.hooks = h ? h : &none;
    r.st = st;
    rc = run_prepare(&r, err);
    char *cj = rc ? NULL : config_json(&r);
    int start = 0;
    if (!rc) {
        start = tune_last_checkpoint(c->out);
        char *cpath = xasprintf("%s/config.json", c->out);
        if (start > 0) {
            char *old = train_read_file(cpath, NULL);
            if (!old || strncmp(old, cj, strlen(cj)))
                rc = err_set(err, ERR_USAGE, "%s holds a run with other settings (%s): give "
                             "the same flags to resume it, or a new --out", c->out, cpath);
            free(old);
            if (!rc) {
                char *dir = xasprintf("%s/checkpoint-%d", c->out, start);
                rc = tune_opt_load(&r.opt, dir, err);
                free(dir);
            }
            if (!rc) {
                char *mp = xasprintf("%s/metrics.jsonl", c->out);
                rc = metrics_truncate(mp, start, err);
                free(mp);
            }
        } else {
            rc = train_mkdirs(c->out, err);
            if (!rc) {
                char *txt = xasprintf("%s\n", cj);
                rc = atomic_file_write(cpath, txt, strlen(txt), err);
                free(txt);
            }
            char *mp = xasprintf("%s/metrics.jsonl", c->out);
            if (!rc)
                rc = atomic_file_write(mp, "", 0, err);
            free(mp);
        }
        free(cpath);
    }
    if (!rc)
        rc = run_store_open(&r, start, cj, err);
    free(cj);
    if (!rc && start > 0) {
        char line[160];
        snprintf(line, sizeof line, "tune: resuming %s from step %d", c->out, start);
        progress_log(&r.hooks->progress, line);
    }
    int s = start, saved = start;
    while (!rc && s < c->steps) {
        if (progress_cancelled(&r.hooks->progress)) {
            rc = ERR_CANCELLED;
            break;
        }
        StepOut so;
        rc = run_step(&r, s + 1, &so, err);
        if (rc)
            break;
        s++;
        rc = metrics_write(&r, s, &so, err);
        int ck = 0;
        if (!rc && c->save_every > 0 && s % c->save_every == 0 && s < c->steps) {
            char name[32];
            snprintf(name, sizeof name, "checkpoint-%d", s);
            rc = save_checkpoint(&r, name, s, err);
            if (!rc)
                saved = s, ck = 1;
            if (!rc)
                rc = write_samples(&r, s, err);
        }
        if (!rc && r.hooks->after_step)
            r.hooks->after_step(r.hooks->progress.user, s, c->steps, ck, &so);
        progress_report(&r.hooks->progress, s, c->steps, "steps");
    }
    if (rc == ERR_CANCELLED) {
        Err e2 = {0};
        if (s > saved) {
            char name[32];
            snprintf(name, sizeof name, "checkpoint-%d", s);
            save_checkpoint(&r, name, s, &e2);
        }
        err_set(err, ERR_CANCELLED, "tune: cancelled after step %d; run again with the same "
                "--out to resume", s);
    }
    if (!rc) {
        rc = save_checkpoint(&r, "final", s, err);
        if (!rc && s > saved) { /* the last step is a checkpoint too, for the record */
            char name[32];
            snprintf(name, sizeof name, "checkpoint-%d", s);
            rc = save_checkpoint(&r, name, s, err);
        }
        if (!rc)
            rc = write_samples(&r, s, err);
    }
    if (r.st && r.run_id) {
        const char *state = !rc ? "succeeded" : rc == ERR_CANCELLED ? "cancelled" : "failed";
        store_run_set_state(r.st, r.run_id, state, NULL);
    }
    run_free(&r);
    return rc;
}

/* ---- online16: the online loop's access to a run (tune_int.h) ----------------------------- */

int tune_int_open(Store *st, const TuneConfig *c, const TuneHooks *h, TuneInt **out, Err *err) {
    static const TuneHooks none = {0};
    Run *r = xcalloc(1, sizeof *r);
    r->cfg = c;
    r->hooks = h ? h : &none;
    r->st = st;
    *out = r;
    return run_prepare(r, err);
}

int tune_int_begin(TuneInt *r, const char *extra_json, int *start, Err *err) {
    const TuneConfig *c = r->cfg;
    char *base = config_json(r);
    json_t *o = json_loads(base, 0, NULL), *x = json_loads(extra_json, 0, NULL);
    json_object_update(o, x);
    char *cj = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o), json_decref(x), free(base);
    int rc = 0, s = tune_last_checkpoint(c->out);
    char *cpath = xasprintf("%s/config.json", c->out);
    char *mp = xasprintf("%s/metrics.jsonl", c->out);
    if (s > 0) {
        char *old = train_read_file(cpath, NULL);
        if (!old || strncmp(old, cj, strlen(cj)))
            rc = err_set(err, ERR_USAGE, "%s holds a run with other settings (%s): give the "
                         "same flags to resume it, or a new --out", c->out, cpath);
        free(old);
        char *dir = xasprintf("%s/checkpoint-%d", c->out, s);
        if (!rc)
            rc = tune_opt_load(&r->opt, dir, err);
        free(dir);
        if (!rc)
            rc = metrics_truncate(mp, s, err);
    } else {
        rc = train_mkdirs(c->out, err);
        char *txt = xasprintf("%s\n", cj);
        if (!rc)
            rc = atomic_file_write(cpath, txt, strlen(txt), err);
        free(txt);
        if (!rc)
            rc = atomic_file_write(mp, "", 0, err);
    }
    if (!rc)
        rc = run_store_open(r, s, cj, err);
    free(mp), free(cpath), free(cj);
    *start = s;
    return rc;
}

void tune_int_end(TuneInt *r, int rc) {
    if (r->st && r->run_id)
        store_run_set_state(r->st, r->run_id,
                            !rc ? "succeeded" : rc == ERR_CANCELLED ? "cancelled" : "failed",
                            NULL);
}

void tune_int_close(TuneInt *r) {
    if (!r)
        return;
    run_free(r);
    free(r);
}

SdPipeline *tune_int_pipe(TuneInt *r) { return r->pipe; }

void tune_int_size(const TuneInt *r, int *width, int *height) {
    *width = r->W;
    *height = r->H;
}

int64_t tune_int_run_id(const TuneInt *r) { return r->run_id; }

int tune_int_set_pairs(TuneInt *r, size_t n, char *const *w, char *const *l,
                       char *const *prompt, Err *err) {
    for (size_t i = 0; i < r->n_img; i++)
        free(r->img[i].path), free(r->img[i].lat);
    for (size_t i = 0; i < r->n_txt; i++)
        free(r->txt[i].text), free(r->txt[i].ehs), free(r->txt[i].pooled);
    free(r->img), free(r->txt), free(r->pair), free(r->perm);
    r->img = NULL, r->txt = NULL, r->perm = NULL;
    r->n_img = r->n_txt = 0;
    r->perm_epoch = -1;
    r->pair = xcalloc(n ? n : 1, sizeof *r->pair);
    r->n_pair = n;
    for (size_t i = 0; i < n; i++) {
        r->pair[i].w = find_or_add_image(r, w[i], 0);
        r->pair[i].l = find_or_add_image(r, l[i], 0);
        r->pair[i].c = find_or_add_text(r, prompt[i]);
        r->pair[i].cneg = -1;
    }
    if (r->obj == TUNE_ADPO && n && r->n_txt < 2)
        return err_set(err, ERR_USAGE, "tune: adpo online needs pairs of at least two prompts "
                       "in every round (the rejected context is another prompt)");
    /* candidates are not kept in the store's latent cache, and encoding is no progress of
     * the rounds */
    Store *st = r->st;
    const TuneHooks *h = r->hooks;
    TuneHooks quiet = *h;
    quiet.progress.progress = NULL;
    r->st = NULL;
    r->hooks = &quiet;
    int rc = encode_images(r, err);
    r->st = st;
    r->hooks = h;
    if (!rc)
        rc = encode_texts(r, err);
    return rc;
}

int tune_int_step(TuneInt *r, int s, TuneStepMetrics *m, Err *err) {
    int rc = run_step(r, s, m, err);
    if (!rc)
        rc = metrics_write(r, s, m, err);
    return rc;
}

int tune_int_save(TuneInt *r, const char *name, int s, Err *err) {
    return save_checkpoint(r, name, s, err);
}
