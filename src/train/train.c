/* train — the training run: data from the store, the loop, metrics, checkpoints, resume.
 * See train.h.
 *
 * DESIGN
 *   load    ratings -> per-image means (pairs.h) -> pairs per prompt -> TrainPair labels;
 *           or imported pairs (store_pairs.h). Every image and prompt involved is encoded
 *           once (encoder.h; cached in the store) into one feature table each.
 *   split   by prompt, train_split_prompts(seed).
 *   epoch   shuffle the training items with the run's Rng; batches of batch_size pairs (or
 *           images for regression); forward both images of each pair with the pair's prompt
 *           (plus, with irrelevant_weight > 0, both with another prompt), losses, backward,
 *           AdamW. Step metrics are buffered and flushed to the store at most 4 times a
 *           second and at every epoch end, so readers see each step within a second.
 *   eval    after each epoch every validation image is scored once (dropout off); the
 *           validation pairs are evaluated per head and combined (evalrm.h).
 *   save    best/ when the mean per-head validation F1 improves, checkpoint-N/ every
 *           save_every epochs, final/ at the end; .resume/ (weights, AdamW moments, Rng,
 *           counters) after every epoch, then hooks->resume_point.
 *
 * Determinism: the split, init, shuffles, irrelevant prompts and dropout masks derive from
 * the seed and the step; the engine is deterministic for a thread count. A run resumed from
 * .resume/ therefore ends with the same weights as one that was never interrupted.
 */
#include "train.h"
#include "train_int.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "encoder.h"
#include "evalrm.h"
#include "backend.h"
#include "fmt_json.h"
#include "log.h"
#include "rng.h"
#include "store_catalog.h"
#include "store_pairs.h"
#include "store_ratings.h"
#include "store_runs.h"

#define NH TRAIN_N_HEADS
#define NO (TRAIN_N_HEADS + 1) /* outputs: heads + combined */


/* ---- config ---- */

#define DEFAULT_INT(c, field, v) (c)->field = (v)
#define DEFAULT_FLOAT(c, field, v) (c)->field = (v)
#define DEFAULT_STRING(c, field, v) base_strlcpy((c)->field, (v), sizeof (c)->field)
#define DEFAULT_CHOICE DEFAULT_STRING
#define SET_DEFAULT(field, name, type, def, lo, hi, help, choices) DEFAULT_##type(c, field, def);

void train_config_defaults(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    TRAIN_OPTIONS(SET_DEFAULT)
    base_strlcpy(c->output, "runs/reward", sizeof c->output);
}

/* The INT options' ranges, and where each one's value sits in a TrainConfig. */
#define INT_RANGE_INT(field, name, lo, hi) {name, lo, hi},
#define INT_RANGE_FLOAT(field, name, lo, hi)
#define INT_RANGE_STRING(field, name, lo, hi)
#define INT_RANGE_CHOICE(field, name, lo, hi)
#define INT_RANGE(field, name, type, def, lo, hi, help, choices)                              \
    INT_RANGE_##type(field, name, lo, hi)

static const struct {
    const char *name;
    long long lo, hi;
} int_ranges[] = {TRAIN_OPTIONS(INT_RANGE)};

int train_option_int_range(const char *name, long long *lo, long long *hi) {
    for (size_t i = 0; i < ARRAY_LEN(int_ranges); i++)
        if (strcmp(int_ranges[i].name, name) == 0) {
            *lo = int_ranges[i].lo;
            *hi = int_ranges[i].hi;
            return 0;
        }
    return ERR_NOTFOUND;
}

/* (the seed, a uint64_t, may hold any value here: its range, up to INT64_MAX, is what a
 * job parameter, a signed 64-bit integer, can say) */
#define INT_CHECK_INT(c, field, name, lo, hi)                                                \
    if ((long long)(hi) < INT64_MAX &&                                                        \
        ((long long)(c)->field < (long long)(lo) || (long long)(c)->field > (long long)(hi))) \
        return err_set(err, ERR_USAGE, "--%s %lld: expected a whole number from %lld to %lld", \
                       name, (long long)(c)->field, (long long)(lo), (long long)(hi));
#define INT_CHECK_FLOAT(c, field, name, lo, hi)
#define INT_CHECK_STRING(c, field, name, lo, hi)
#define INT_CHECK_CHOICE(c, field, name, lo, hi)
#define INT_CHECK(field, name, type, def, lo, hi, help, choices)                              \
    INT_CHECK_##type(c, field, name, lo, hi)

int train_config_check(const TrainConfig *c, Err *err) {
    if (strcmp(c->mode, "multihead") && strcmp(c->mode, "pairs"))
        return err_set(err, ERR_USAGE, "--mode must be pairs or multihead, not '%s'", c->mode);
    if (strcmp(c->objective, "pairs") && strcmp(c->objective, "regression"))
        return err_set(err, ERR_USAGE, "--objective must be pairs or regression, not '%s'",
                       c->objective);
    if (strcmp(c->mode, "pairs") == 0 && strcmp(c->objective, "regression") == 0)
        return err_set(err, ERR_USAGE, "--objective regression needs ratings (--mode "
                       "multihead): imported pairs carry no 0-10 values");
    if (strcmp(c->fusion, "concat") && strcmp(c->fusion, "add") &&
        strcmp(c->fusion, "cross_attention"))
        return err_set(err, ERR_USAGE,
                       "--fusion-method must be concat, add or cross_attention, not '%s'",
                       c->fusion);
    TRAIN_OPTIONS(INT_CHECK)
    if (!(c->learning_rate > 0) || c->learning_rate > 10)
        return err_set(err, ERR_USAGE, "--learning-rate must be > 0 (got %g)", c->learning_rate);
    if (!(c->weight_decay >= 0))
        return err_set(err, ERR_USAGE, "--weight-decay must be >= 0");
    if (!(c->min_rating_diff >= 0) || c->min_rating_diff > 10)
        return err_set(err, ERR_USAGE, "--min-rating-diff must be in 0..10 (got %g)",
                       c->min_rating_diff);
    if (!(c->val_fraction >= 0) || c->val_fraction >= 1)
        return err_set(err, ERR_USAGE, "--val-fraction must be in [0, 1) (got %g)",
                       c->val_fraction);
    if (!(c->irrelevant_weight >= 0))
        return err_set(err, ERR_USAGE, "--irrelevant-weight must be >= 0");
    if (!(c->dropout >= 0) || c->dropout >= 1)
        return err_set(err, ERR_USAGE, "--dropout must be in [0, 1)");
    if (!c->output[0])
        return err_set(err, ERR_USAGE, "--output needs a folder");
    int kind, index;
    if (backend_spec_parse(c->device, &kind, &index, err)) {
        err_prefix(err, "--device");
        return ERR_USAGE;
    }
    return 0;
}

static json_t *config_to_json(const TrainConfig *c) {
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:i, s:i, s:i, s:s,"
                     " s:f, s:f, s:I, s:s, s:s, s:i, s:s}",
                     "mode", c->mode, "objective", c->objective, "encoder", c->encoder,
                     "fusion_method", c->fusion, "epochs", c->epochs, "batch_size",
                     c->batch_size, "learning_rate", c->learning_rate, "weight_decay",
                     c->weight_decay, "min_rating_diff", c->min_rating_diff, "val_fraction",
                     c->val_fraction, "save_every", c->save_every, "patience", c->patience,
                     "threads", c->threads, "seed", seed, "irrelevant_weight",
                     c->irrelevant_weight, "dropout", c->dropout, "annotator_id",
                     (json_int_t)c->annotator_id, "output", c->output, "run_name",
                     c->run_name, "save_total_limit", c->save_total_limit, "device",
                     c->device);
}

static void copy_str(char *dst, size_t n, json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    if (s)
        base_strlcpy(dst, s, n);
}

static int config_from_json(TrainConfig *c, json_t *o, Err *err) {
    if (!json_is_object(o))
        return err_set(err, ERR_FORMAT, "training config is not a JSON object");
    train_config_defaults(c);
    copy_str(c->mode, sizeof c->mode, o, "mode");
    copy_str(c->objective, sizeof c->objective, o, "objective");
    copy_str(c->encoder, sizeof c->encoder, o, "encoder");
    copy_str(c->fusion, sizeof c->fusion, o, "fusion_method");
    copy_str(c->output, sizeof c->output, o, "output");
    copy_str(c->run_name, sizeof c->run_name, o, "run_name");
    copy_str(c->device, sizeof c->device, o, "device");
    json_t *v;
    if ((v = json_object_get(o, "epochs")))
        c->epochs = (int)json_integer_value(v);
    if ((v = json_object_get(o, "batch_size")))
        c->batch_size = (int)json_integer_value(v);
    if ((v = json_object_get(o, "learning_rate")))
        c->learning_rate = json_number_value(v);
    if ((v = json_object_get(o, "weight_decay")))
        c->weight_decay = json_number_value(v);
    if ((v = json_object_get(o, "min_rating_diff")))
        c->min_rating_diff = json_number_value(v);
    if ((v = json_object_get(o, "val_fraction")))
        c->val_fraction = json_number_value(v);
    if ((v = json_object_get(o, "save_every")))
        c->save_every = (int)json_integer_value(v);
    /* a run recorded before the limit existed kept every checkpoint: it still does */
    c->save_total_limit = 0;
    if ((v = json_object_get(o, "save_total_limit")))
        c->save_total_limit = (int)json_integer_value(v);
    if ((v = json_object_get(o, "patience")))
        c->patience = (int)json_integer_value(v);
    if ((v = json_object_get(o, "threads")))
        c->threads = (int)json_integer_value(v);
    if ((v = json_object_get(o, "seed")) && json_is_string(v))
        c->seed = strtoull(json_string_value(v), NULL, 10);
    if ((v = json_object_get(o, "irrelevant_weight")))
        c->irrelevant_weight = json_number_value(v);
    if ((v = json_object_get(o, "dropout")))
        c->dropout = json_number_value(v);
    if ((v = json_object_get(o, "annotator_id")))
        c->annotator_id = json_integer_value(v);
    return train_config_check(c, err);
}

char *train_config_json(const TrainConfig *c) {
    json_t *o = config_to_json(c);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    char *h = fmt_json_human(s); /* the same values, 0.2 rather than 0.20000000000000001 */
    free(s);
    return h;
}

int train_config_parse(TrainConfig *c, const char *json, Err *err) {
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    if (!o)
        return err_set(err, ERR_FORMAT, "training config: bad JSON at line %d: %s", je.line,
                       je.text);
    int rc = config_from_json(c, o, err);
    json_decref(o);
    return rc;
}

/* ---- data ---- */

typedef struct Data {
    int d_img, n_tok, d_txt;
    size_t n_img;
    int64_t *img_id;       /* (n_img) */
    float *img;            /* (n_img, n_tok, d_img) */
    int *img_prm;          /* (n_img) row in the prompt table */
    float *target;         /* (n_img, NH) mean ratings, NAN = none (regression) */
    size_t n_prm;
    int64_t *prm_id;       /* (n_prm); 0 = images without a prompt */
    float *txt;            /* (n_prm, d_txt) */
    TrainPair *pairs;
    size_t n_pairs;
    int *pa, *pb;          /* (n_pairs) image rows of img_a, img_b */
    uint8_t *pair_val;     /* (n_pairs) */
    uint8_t *pair_flip;    /* (n_pairs) 1: metrics present the pair as (b, a), so that the
                            * image with the smaller sha256 comes first, as eval does */
    char (*img_sha)[65];   /* (n_img) content hashes */
    char **img_path;       /* (n_img) resolved paths (orders two images with one hash) */
    uint8_t *img_val;      /* (n_img) */
    int *items;            /* training items: pair indexes, or image rows (regression) */
    size_t n_items;
    int *prm_train;        /* prompt rows of training prompts (irrelevant prompts) */
    size_t n_prm_train;
} Data;

static void data_free(Data *d) {
    free(d->img_id);
    free(d->img);
    free(d->img_prm);
    free(d->target);
    free(d->prm_id);
    free(d->txt);
    free(d->pairs);
    free(d->pa);
    free(d->pb);
    free(d->pair_val);
    free(d->pair_flip);
    free(d->img_sha);
    for (size_t i = 0; d->img_path && i < d->n_img; i++)
        free(d->img_path[i]);
    free(d->img_path);
    free(d->img_val);
    free(d->items);
    free(d->prm_train);
    memset(d, 0, sizeof *d);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int find_row(const int64_t *sorted, size_t n, int64_t id) {
    const int64_t *p = bsearch(&id, sorted, n, sizeof *sorted, cmp_i64);
    return p ? (int)(p - sorted) : -1;
}

static void say(const TrainHooks *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const TrainHooks *h, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* one destination: the hook (a job's log also goes to the process log), else the log */
    if (h && h->progress.log)
        progress_log(&h->progress, line);
    else
        log_info("train: %s", line);
}

static int cancelled(const TrainHooks *h) { return h && progress_cancelled(&h->progress); }

/* Pairs from the store: derived from ratings (multihead) or imported (pairs). */
static int load_pairs(Store *st, const TrainConfig *cfg, Data *d, PairsMeans *means, Err *err) {
    if (strcmp(cfg->mode, "pairs") == 0) {
        StorePair *sp = NULL;
        size_t n = 0;
        int rc = store_pairs_list(st, &sp, &n, err);
        if (rc)
            return rc;
        d->pairs = xmalloc((n ? n : 1) * sizeof *d->pairs);
        for (size_t i = 0; i < n; i++) {
            TrainPair *t = &d->pairs[d->n_pairs];
            memset(t, 0, sizeof *t);
            int head = -1;
            for (int h = 0; h < NH; h++)
                if (strcmp(sp[i].aspect, train_output_name(h)) == 0)
                    head = h;
            if (sp[i].aspect[0] && head < 0)
                continue; /* an aspect this model has no head for */
            t->prompt_id = sp[i].prompt_id;
            t->img_a = sp[i].img_pos < sp[i].img_neg ? sp[i].img_pos : sp[i].img_neg;
            t->img_b = sp[i].img_pos < sp[i].img_neg ? sp[i].img_neg : sp[i].img_pos;
            /* label: probability that img_a is preferred */
            float p_pos = (float)sp[i].label;
            float la = sp[i].img_pos == t->img_a ? p_pos : 1.0f - p_pos;
            float hard = la > 0.5f ? 1.0f : la < 0.5f ? 0.0f : 0.5f;
            for (int h = 0; h < NH; h++)
                t->label[h] = head < 0 ? hard : (h == head ? hard : 0.5f);
            t->label_combined = head < 0 ? la : 0.5f;
            t->label_overall = head < 0 ? hard : 0.5f;
            d->n_pairs++;
        }
        store_pairs_free(sp, n);
        return 0;
    }
    /* every aspect of the store: the combined pair (validation's combined label) compares
     * the mean over all aspects rated on both images, as `easel export pairs` and eval do */
    int rc = train_means_load(st, cfg->annotator_id, means, err);
    if (rc)
        return rc;
    Pair *p = NULL;
    size_t np = 0;
    pairs_derive(means, cfg->min_rating_diff, PAIRS_ALL, &p, &np);
    train_pairs_group(p, np, &d->pairs, &d->n_pairs);
    free(p);
    return 0;
}

/* Encode every image and prompt the pairs (or, for regression, the rated images) use. */
static int load_features(Store *st, const TrainConfig *cfg, Encoder *enc, const PairsMeans *pm,
                         const TrainHooks *hooks, Data *d, Err *err) {
    int regression = strcmp(cfg->objective, "regression") == 0;
    size_t cap = 2 * d->n_pairs + (regression ? pm->n_images : 0) + 1, n = 0;
    int64_t *ids = xmalloc(cap * sizeof *ids);
    for (size_t i = 0; i < d->n_pairs; i++) {
        ids[n++] = d->pairs[i].img_a;
        ids[n++] = d->pairs[i].img_b;
    }
    if (regression)
        for (size_t i = 0; i < pm->n_images; i++)
            ids[n++] = pm->image_id[i];
    qsort(ids, n, sizeof *ids, cmp_i64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || ids[i] != ids[u - 1])
            ids[u++] = ids[i];
    d->n_img = u;
    d->img_id = ids;
    d->d_img = enc->dim_image;
    d->n_tok = enc->n_image_tokens;
    d->d_txt = enc->dim_text;
    size_t row = (size_t)d->n_tok * d->d_img;
    d->img = malloc((u ? u : 1) * row * sizeof(float));
    if (!d->img)
        return err_set(err, ERR_NOMEM, "out of memory for the features of %zu images", u);
    d->img_prm = xmalloc((u ? u : 1) * sizeof *d->img_prm);
    d->img_sha = xcalloc(u ? u : 1, sizeof *d->img_sha);
    d->img_path = xcalloc(u ? u : 1, sizeof *d->img_path);
    int64_t *img_prompt = xmalloc((u ? u : 1) * sizeof *img_prompt);
    double t0 = base_now();
    int rc = 0;
    size_t k = 0; /* images kept: an unreadable one is skipped, its pairs with it */
    TrainSkipped sk = {0};
    for (size_t i = 0; i < u; i++) {
        if (cancelled(hooks)) {
            rc = err_set(err, ERR_CANCELLED, "cancelled while encoding images");
            goto out;
        }
        StoreImage im = {0};
        if ((rc = store_image_get(st, ids[i], &im, err)))
            goto out;
        char *path = store_path_resolve(st, im.path);
        float *v = NULL;
        Err e2 = {0};
        if (access(path, R_OK) != 0)
            rc = err_set(&e2, ERR_NOTFOUND, "%s: cannot open (%s)", path, strerror(errno));
        else
            rc = encoder_embed_image(enc, st, path, im.sha256, &v, &e2);
        if (rc && train_err_is_unreadable(rc)) {
            /* the image itself, or something else (the cache) that must stop the run? */
            Err e3 = {0};
            int bad = train_image_probe(enc, path, &e3);
            if (bad && train_err_is_unreadable(bad)) {
                train_skipped_add(&sk, im.path, e3.msg);
                rc = 0;
            }
        }
        if (rc) {
            free(path);
            store_image_deinit(&im);
            if (err)
                *err = e2;
            err_prefix(err, "image #%lld", (long long)ids[i]);
            goto out;
        }
        if (v) {
            ids[k] = ids[i];
            img_prompt[k] = im.prompt_id;
            memcpy(d->img + k * row, v, row * sizeof(float));
            if (im.sha256)
                base_strlcpy(d->img_sha[k], im.sha256, sizeof d->img_sha[k]);
            else if (encoder_hash_file(path, d->img_sha[k], NULL) != 0)
                d->img_sha[k][0] = '\0'; /* read a moment ago; then ordered by path */
            d->img_path[k] = path;
            path = NULL;
            k++;
            free(v);
        }
        free(path);
        store_image_deinit(&im);
        if (hooks)
            progress_report(&hooks->progress, (double)(i + 1), (double)u, "images encoded");
    }
    say(hooks, "encoded %zu images with '%s' in %.1f s", k, enc->name, base_now() - t0);
    if (sk.n) {
        char why[900];
        train_skipped_text(&sk, why, sizeof why);
        say(hooks, "warning: %s", why);
        /* drop the pairs that need a skipped image */
        size_t o = 0;
        for (size_t i = 0; i < d->n_pairs; i++)
            if (find_row(ids, k, d->pairs[i].img_a) >= 0 &&
                find_row(ids, k, d->pairs[i].img_b) >= 0)
                d->pairs[o++] = d->pairs[i];
        d->n_pairs = o;
    }
    u = k;
    d->n_img = k;
    /* prompts: every distinct prompt of those images (0 = no prompt: empty text) */
    int64_t *pids = xmalloc((u ? u : 1) * sizeof *pids);
    memcpy(pids, img_prompt, u * sizeof *pids);
    qsort(pids, u, sizeof *pids, cmp_i64);
    size_t np = 0;
    for (size_t i = 0; i < u; i++)
        if (np == 0 || pids[i] != pids[np - 1])
            pids[np++] = pids[i];
    d->n_prm = np;
    d->prm_id = pids;
    d->txt = xmalloc((np ? np : 1) * (size_t)d->d_txt * sizeof(float));
    for (size_t i = 0; i < np; i++) {
        char *text = NULL;
        if (pids[i] != 0) {
            StorePrompt p = {0};
            if ((rc = store_prompt_get(st, pids[i], &p, err)))
                goto out;
            text = xstrdup(p.text);
            store_prompt_deinit(&p);
        }
        float *v = NULL;
        rc = encoder_embed_text(enc, st, text ? text : "", &v, err);
        free(text);
        if (rc)
            goto out;
        memcpy(d->txt + i * (size_t)d->d_txt, v, (size_t)d->d_txt * sizeof(float));
        free(v);
    }
    for (size_t i = 0; i < u; i++)
        d->img_prm[i] = find_row(d->prm_id, d->n_prm, img_prompt[i]);
out:
    free(img_prompt);
    return rc;
}

static int build_split(const TrainConfig *cfg, const PairsMeans *pm, Data *d, Err *err) {
    int regression = strcmp(cfg->objective, "regression") == 0;
    d->pa = xmalloc((d->n_pairs ? d->n_pairs : 1) * sizeof *d->pa);
    d->pb = xmalloc((d->n_pairs ? d->n_pairs : 1) * sizeof *d->pb);
    for (size_t i = 0; i < d->n_pairs; i++) {
        d->pa[i] = find_row(d->img_id, d->n_img, d->pairs[i].img_a);
        d->pb[i] = find_row(d->img_id, d->n_img, d->pairs[i].img_b);
        ASSERT(d->pa[i] >= 0 && d->pb[i] >= 0);
    }
    /* split over the prompt ids of the images (covers pairs and regression alike) */
    int64_t *prompt_of = xmalloc((d->n_img ? d->n_img : 1) * sizeof *prompt_of);
    for (size_t i = 0; i < d->n_img; i++)
        prompt_of[i] = d->prm_id[d->img_prm[i]];
    d->img_val = xcalloc(d->n_img ? d->n_img : 1, 1);
    size_t n_val = train_split_prompts(prompt_of, d->n_img, cfg->val_fraction, cfg->seed,
                                       d->img_val);
    (void)n_val;
    free(prompt_of);
    d->pair_val = xcalloc(d->n_pairs ? d->n_pairs : 1, 1);
    d->pair_flip = xcalloc(d->n_pairs ? d->n_pairs : 1, 1);
    for (size_t i = 0; i < d->n_pairs; i++) {
        d->pair_val[i] = d->img_val[d->pa[i]];
        int c = strcmp(d->img_sha[d->pa[i]], d->img_sha[d->pb[i]]);
        if (c == 0)
            c = strcmp(d->img_path[d->pa[i]], d->img_path[d->pb[i]]);
        d->pair_flip[i] = c > 0;
    }
    /* targets for regression */
    if (regression) {
        d->target = xmalloc((d->n_img ? d->n_img : 1) * NH * sizeof *d->target);
        for (size_t i = 0; i < d->n_img * NH; i++)
            d->target[i] = NAN;
        for (size_t i = 0; i < pm->n_images; i++) {
            int r = find_row(d->img_id, d->n_img, pm->image_id[i]);
            if (r < 0)
                continue;
            for (int h = 0; h < NH; h++)
                d->target[(size_t)r * NH + h] = (float)pm->mean[i * (size_t)pm->n_aspects + h];
        }
    }
    size_t cap = regression ? d->n_img : d->n_pairs;
    d->items = xmalloc((cap ? cap : 1) * sizeof *d->items);
    if (regression) {
        for (size_t i = 0; i < d->n_img; i++)
            if (!d->img_val[i])
                d->items[d->n_items++] = (int)i;
    } else {
        for (size_t i = 0; i < d->n_pairs; i++)
            if (!d->pair_val[i])
                d->items[d->n_items++] = (int)i;
    }
    if (d->n_items == 0)
        return err_set(err, ERR_NOTFOUND,
                       "nothing to train on: %zu pairs (%zu images) with min_rating_diff %g, "
                       "none in the training split; rate more images, import pairs, or lower "
                       "--min-rating-diff", d->n_pairs, d->n_img, cfg->min_rating_diff);
    d->prm_train = xmalloc((d->n_prm ? d->n_prm : 1) * sizeof *d->prm_train);
    uint8_t *seen = xcalloc(d->n_prm ? d->n_prm : 1, 1);
    for (size_t i = 0; i < d->n_img; i++)
        if (!d->img_val[i] && !seen[d->img_prm[i]]) {
            seen[d->img_prm[i]] = 1;
            d->prm_train[d->n_prm_train++] = d->img_prm[i];
        }
    free(seen);
    return 0;
}

/* ---- metrics buffer ---- */

typedef struct MetricBuf {
    StoreMetric *m;
    size_t n, cap;
    double last_flush;
} MetricBuf;

static void mb_add(MetricBuf *b, const char *split, const char *name, int64_t step,
                   double epoch, double value) {
    if (!isfinite(value))
        return;
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->m = xrealloc(b->m, b->cap * sizeof *b->m);
    }
    StoreMetric *m = &b->m[b->n++];
    memset(m, 0, sizeof *m);
    base_strlcpy(m->split, split, sizeof m->split);
    base_strlcpy(m->name, name, sizeof m->name);
    m->step = step;
    m->epoch = epoch;
    m->value = value;
}

static int mb_flush(MetricBuf *b, Store *st, int64_t run_id, Err *err) {
    b->last_flush = base_now();
    if (b->n == 0)
        return 0;
    int rc = store_metrics_add(st, run_id, b->m, b->n, err);
    b->n = 0;
    return rc;
}

/* ---- the run state ---- */

typedef struct Run {
    TrainConfig cfg;
    Data d;
    TrainModel *model;
    Rng rng;
    int64_t run_id;
    int epoch_done;        /* completed epochs */
    int64_t step;          /* optimizer steps done */
    double best_f1;
    int best_epoch;
    int since_best;
    MetricBuf mb;
    /* batch buffers */
    int max_n;
    float *bimg, *btxt, *bheads, *bcomb;
    float *blab, *blabc;   /* pair labels (pairs, 5) and combined targets; ratings (n, 5) */
    uint8_t *birr;         /* irrelevant-prompt flags per pair */
    /* per-epoch training margins for acc/F1: (n_items, NO) and labels */
    float *ep_sa, *ep_sb, *ep_lab;
    size_t ep_n;
    /* owned for the run's length, freed by run_free */
    json_t *res;           /* the resume state, or NULL for a fresh run */
    Encoder *enc;
    PairsMeans pm;
    int *order;            /* this epoch's shuffle of d.items */
} Run;

static void run_free(Run *r) {
    data_free(&r->d);
    train_model_free(r->model);
    free(r->mb.m);
    free(r->bimg);
    free(r->btxt);
    free(r->bheads);
    free(r->bcomb);
    free(r->blab);
    free(r->blabc);
    free(r->birr);
    free(r->ep_sa);
    free(r->ep_sb);
    free(r->ep_lab);
    json_decref(r->res);
    encoder_free(r->enc);
    pairs_means_deinit(&r->pm);
    free(r->order);
}

static void put_sample(Run *r, int k, int img_row, int prm_row) {
    size_t row = (size_t)r->d.n_tok * r->d.d_img;
    memcpy(r->bimg + (size_t)k * row, r->d.img + (size_t)img_row * row, row * sizeof(float));
    memcpy(r->btxt + (size_t)k * r->d.d_txt, r->d.txt + (size_t)prm_row * r->d.d_txt,
           (size_t)r->d.d_txt * sizeof(float));
}

static uint64_t step_seed(uint64_t seed, int64_t step) {
    uint64_t x = seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(step + 1));
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    return x ^ (x >> 29);
}

/* Row E, output O of a metrics table: the pair as evaluation presents it (flipped when
 * FLIP: the image with the smaller sha256 first), label 1 / 0 / 0.5 (none). */
static void put_metric_pair(float *sa, float *sb, float *lab, size_t e, int o, float a,
                            float b, float y, int flip) {
    y = y > 0.5f ? 1.0f : y < 0.5f ? 0.0f : 0.5f;
    if (flip && y != 0.5f)
        y = 1.0f - y;
    sa[e * NO + o] = flip ? b : a;
    sb[e * NO + o] = flip ? a : b;
    lab[e * NO + o] = y;
}

/* One training step's forward and loss over items[0..n): pairs a then b, each under the
 * pair's prompt; with irrelevant_weight, the same pairs again under another training prompt
 * (flagged irrelevant). LOSSES gets TRAIN_LOSS_N values. */
static void train_step_pairs(Run *r, const int *items, int n, double *losses) {
    Data *d = &r->d;
    int irr = r->cfg.irrelevant_weight > 0 && d->n_prm_train > 1;
    int q = irr ? 2 * n : n; /* pairs in the batch */
    for (int i = 0; i < n; i++) {
        const int p = items[i];
        int prm = d->img_prm[d->pa[p]];
        put_sample(r, i, d->pa[p], prm);
        put_sample(r, q + i, d->pb[p], prm);
        memcpy(r->blab + (size_t)i * NH, d->pairs[p].label, NH * sizeof(float));
        r->blabc[i] = d->pairs[p].label_combined;
        r->birr[i] = 0;
        if (irr) {
            int other = prm;
            while (other == prm)
                other = d->prm_train[rng_below(&r->rng, d->n_prm_train)];
            put_sample(r, n + i, d->pa[p], other);
            put_sample(r, q + n + i, d->pb[p], other);
            memcpy(r->blab + (size_t)(n + i) * NH, d->pairs[p].label, NH * sizeof(float));
            r->blabc[n + i] = 0.5f;
            r->birr[n + i] = 1;
        }
    }
    train_model_forward(r->model, r->bimg, r->btxt, 2 * q, 1, step_seed(r->cfg.seed, r->step),
                        r->bheads, r->bcomb);
    train_model_loss_pairs(r->model, q, r->blab, r->blabc, irr ? r->birr : NULL,
                           (float)r->cfg.irrelevant_weight, losses);
    /* this epoch's training accuracy and F1, from the real pairs */
    for (int i = 0; i < n; i++) {
        const TrainPair *tp = &d->pairs[items[i]];
        size_t e = r->ep_n + (size_t)i;
        for (int o = 0; o < NO; o++) {
            float sa = o < NH ? r->bheads[i * NH + o] : r->bcomb[i];
            float sb = o < NH ? r->bheads[(q + i) * NH + o] : r->bcomb[q + i];
            put_metric_pair(r->ep_sa, r->ep_sb, r->ep_lab, e, o, sa, sb,
                            o < NH ? tp->label[o] : tp->label_overall,
                            d->pair_flip[items[i]]);
        }
    }
    r->ep_n += (size_t)n;
}

static void train_step_regression(Run *r, const int *items, int n, double *losses) {
    Data *d = &r->d;
    for (int i = 0; i < n; i++) {
        put_sample(r, i, items[i], d->img_prm[items[i]]);
        memcpy(r->blab + (size_t)i * NH, &d->target[(size_t)items[i] * NH], NH * sizeof(float));
    }
    train_model_forward(r->model, r->bimg, r->btxt, n, 1, step_seed(r->cfg.seed, r->step),
                        r->bheads, r->bcomb);
    train_model_loss_regression(r->model, r->blab, losses);
    losses[NH] = NAN; /* the combined score is not a regression target */
}

/* Score images ROWS[0..n) (dropout off) into S (n_img, NO) at their rows. */
static void score_rows(Run *r, const int *rows, size_t n, float *s) {
    size_t done = 0;
    while (done < n) {
        int b = (int)(n - done < (size_t)r->max_n ? n - done : (size_t)r->max_n);
        for (int i = 0; i < b; i++)
            put_sample(r, i, rows[done + i], r->d.img_prm[rows[done + i]]);
        train_model_forward(r->model, r->bimg, r->btxt, b, 0, 0, r->bheads, r->bcomb);
        for (int i = 0; i < b; i++) {
            float *o = s + (size_t)rows[done + i] * NO;
            memcpy(o, r->bheads + (size_t)i * NH, NH * sizeof(float));
            o[NH] = r->bcomb[i];
        }
        done += (size_t)b;
    }
}

typedef struct ValResult {
    EvalStats st[NO];
    double mse[NO];        /* regression only; NAN otherwise */
    double mean_f1;        /* over the five heads */
    double loss;           /* sum of per-output losses */
    size_t n_pairs;
} ValResult;

/* Mean F1 over the heads that have pairs with a preference (0 when none has). */
static double mean_head_f1(const EvalStats *st) {
    double s = 0;
    int k = 0;
    for (int h = 0; h < NH; h++)
        if (st[h].n > 0) {
            s += st[h].f1;
            k++;
        }
    return k ? s / k : 0.0;
}

/* Evaluate on the validation split (WHICH = 1) or the training split (0). */
static void evaluate(Run *r, int which, ValResult *vr) {
    Data *d = &r->d;
    memset(vr, 0, sizeof *vr);
    int *rows = xmalloc((d->n_img ? d->n_img : 1) * sizeof *rows);
    size_t n_rows = 0;
    for (size_t i = 0; i < d->n_img; i++)
        if (d->img_val[i] == which)
            rows[n_rows++] = (int)i;
    float *s = xcalloc((d->n_img ? d->n_img : 1) * NO, sizeof *s);
    score_rows(r, rows, n_rows, s);
    size_t np = 0;
    float *sa = xmalloc((d->n_pairs ? d->n_pairs : 1) * NO * sizeof *sa);
    float *sb = xmalloc((d->n_pairs ? d->n_pairs : 1) * NO * sizeof *sb);
    float *lab = xmalloc((d->n_pairs ? d->n_pairs : 1) * NO * sizeof *lab);
    for (size_t i = 0; i < d->n_pairs; i++) {
        if (d->pair_val[i] != which)
            continue;
        for (int o = 0; o < NO; o++)
            put_metric_pair(sa, sb, lab, np, o, s[(size_t)d->pa[i] * NO + o],
                            s[(size_t)d->pb[i] * NO + o],
                            o < NH ? d->pairs[i].label[o] : d->pairs[i].label_overall,
                            d->pair_flip[i]);
        np++;
    }
    vr->n_pairs = np;
    for (int o = 0; o < NO; o++) {
        evalrm_pairs_strided(sa + o, sb + o, NO, lab + o, NO, np, &vr->st[o]);
        vr->loss += vr->st[o].loss;
        vr->mse[o] = NAN;
    }
    vr->mean_f1 = mean_head_f1(vr->st);
    if (d->target) {
        vr->loss = 0;
        for (int o = 0; o < NO; o++) {
            double sum = 0;
            int k = 0;
            for (size_t j = 0; j < n_rows; j++) {
                const float *t = &d->target[(size_t)rows[j] * NH];
                float tv;
                if (o < NH) {
                    tv = t[o];
                } else {
                    double m = 0;
                    int c = 0;
                    for (int h = 0; h < NH; h++)
                        if (!isnan(t[h]))
                            m += t[h], c++;
                    tv = c ? (float)(m / c) : NAN;
                }
                if (isnan(tv))
                    continue;
                double e = s[(size_t)rows[j] * NO + o] - tv;
                sum += e * e;
                k++;
            }
            vr->mse[o] = k ? sum / k : NAN;
            if (k)
                vr->loss += vr->mse[o];
        }
    }
    free(sa);
    free(sb);
    free(lab);
    free(s);
    free(rows);
}

/* ---- checkpoints and resume ---- */

static char *model_config_json(const Run *r) {
    json_t *heads = json_array();
    for (int h = 0; h < NH; h++)
        json_array_append_new(heads, json_string(train_output_name(h)));
    const TrainModelDims *md = train_model_dims(r->model);
    json_t *o = json_pack("{s:s, s:o, s:s, s:s, s:i, s:i, s:i, s:[i,i], s:f, s:i, s:o}",
                          "model", "easel-multihead-reward", "heads", heads, "encoder",
                          r->cfg.encoder, "fusion_method", md->fusion, "image_dim", md->d_img,
                          "image_tokens", md->n_tokens, "text_dim", md->d_txt, "hidden", 512,
                          256, "dropout", (double)md->dropout, "attention_heads", 8,
                          "training", config_to_json(&r->cfg));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static json_t *val_json(const ValResult *v) {
    json_t *o = json_object();
    for (int k = 0; k < NO; k++) {
        json_t *h = json_pack("{s:f, s:f, s:f, s:f, s:f, s:I}", "accuracy", v->st[k].accuracy,
                              "f1", v->st[k].f1, "loss", v->st[k].loss, "margin_mean",
                              v->st[k].margin_mean, "margin_std", v->st[k].margin_std,
                              "n", (json_int_t)v->st[k].n);
        if (isfinite(v->mse[k]))
            json_object_set_new(h, "mse", json_real(v->mse[k]));
        json_object_set_new(o, train_output_name(k), h);
    }
    json_object_set_new(o, "mean_f1", json_real(v->mean_f1));
    return o;
}

static int write_checkpoint(Run *r, Store *st, const char *name, const ValResult *val,
                            const ValResult *tr, Err *err) {
    char *dst = xasprintf("%s/%s", r->cfg.output, name);
    char *tmp = xasprintf("%s/.%s.tmp", r->cfg.output, name);
    train_dir_remove(tmp);
    int rc = train_mkdirs(tmp, err);
    char *cfg = NULL, *met = NULL, *p = NULL;
    if (rc)
        goto out;
    cfg = model_config_json(r);
    const char *meta[] = {"format", "pt", "easel_config", cfg, NULL};
    p = xasprintf("%s/model.safetensors", tmp);
    if ((rc = train_model_save(r->model, p, 0, meta, err)))
        goto out;
    free(p);
    p = xasprintf("%s/config.json", tmp);
    if ((rc = train_write_file(p, cfg, err)))
        goto out;
    json_t *m = json_pack("{s:i, s:I, s:o, s:o}", "epoch", r->epoch_done, "step",
                          (json_int_t)r->step, "val", val_json(val), "train", val_json(tr));
    met = json_dumps(m, JSON_INDENT(2));
    json_decref(m);
    free(p);
    p = xasprintf("%s/metrics.json", tmp);
    if ((rc = train_write_file(p, met, err)))
        goto out;
    if ((rc = train_dir_commit(tmp, dst, err)))
        goto out;
    char *abs = realpath(dst, NULL);
    char *compact = NULL;
    json_t *mm = json_pack("{s:f, s:o}", "mean_f1", val->mean_f1, "val", val_json(val));
    compact = json_dumps(mm, JSON_COMPACT);
    json_decref(mm);
    rc = store_checkpoint_put(st, r->run_id, name, abs ? abs : dst, r->step, r->epoch_done,
                              compact, err);
    free(compact);
    free(abs);
out:
    if (rc)
        train_dir_remove(tmp);
    free(p);
    free(cfg);
    free(met);
    free(tmp);
    free(dst);
    return rc;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

/* Keep the newest save_total_limit checkpoint-N/ folders of the run (best/ and final/ are
 * other folders and always stay). An older one is first renamed to .checkpoint-N.deleting,
 * so it is never half there under its real name, then its row goes and the folder is
 * removed; a crash in between leaves a hidden folder that the next rotation removes. */
static void rotate_checkpoints(Run *r, Store *st, const TrainHooks *hooks) {
    if (r->cfg.save_total_limit <= 0)
        return;
    DIR *dp = opendir(r->cfg.output);
    if (!dp)
        return;
    int *ep = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        const char *nm = e->d_name;
        if (strncmp(nm, ".checkpoint-", 12) == 0 && strstr(nm, ".deleting")) {
            char *p = xasprintf("%s/%s", r->cfg.output, nm);
            train_dir_remove(p);
            free(p);
            continue;
        }
        if (strncmp(nm, "checkpoint-", 11) != 0)
            continue;
        char *end;
        long v = strtol(nm + 11, &end, 10);
        if (*end || end == nm + 11 || v < 0 || v > 1000000)
            continue;
        if (n == cap)
            ep = xrealloc(ep, (cap = cap ? 2 * cap : 16) * sizeof *ep);
        ep[n++] = (int)v;
    }
    closedir(dp);
    if (n > (size_t)r->cfg.save_total_limit) {
        qsort(ep, n, sizeof *ep, cmp_int);
        for (size_t i = 0; i + (size_t)r->cfg.save_total_limit < n; i++) {
            char nm[32];
            snprintf(nm, sizeof nm, "checkpoint-%d", ep[i]);
            char *from = xasprintf("%s/%s", r->cfg.output, nm);
            char *to = xasprintf("%s/.%s.deleting", r->cfg.output, nm);
            train_dir_remove(to);
            if (rename(from, to) == 0) {
                Err e2 = {0};
                if (store_checkpoint_delete(st, r->run_id, nm, &e2))
                    say(hooks, "warning: %s deleted, but its record stays: %s", nm, e2.msg);
                train_dir_remove(to);
            } else {
                say(hooks, "warning: cannot delete old checkpoint %s (%s)", from,
                    strerror(errno));
            }
            free(from);
            free(to);
        }
    }
    free(ep);
}

static char *rng_json(const Rng *g) {
    char buf[160];
    snprintf(buf, sizeof buf, "%016llx%016llx%016llx%016llx",
             (unsigned long long)g->s[0], (unsigned long long)g->s[1],
             (unsigned long long)g->s[2], (unsigned long long)g->s[3]);
    return xstrdup(buf);
}

static int rng_parse(Rng *g, const char *hex) {
    if (!hex || strlen(hex) != 64)
        return -1;
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, hex + 16 * i, 16);
        part[16] = 0;
        g->s[i] = strtoull(part, NULL, 16);
    }
    g->has_spare = 0;
    g->spare = 0;
    return 0;
}

static char *resume_json(const Run *r) {
    char *rs = rng_json(&r->rng);
    json_t *o = json_pack("{s:I, s:i, s:I, s:f, s:i, s:i, s:s, s:s, s:o}", "run_id",
                          (json_int_t)r->run_id, "epoch_done", r->epoch_done, "step",
                          (json_int_t)r->step, "best_f1", r->best_f1, "best_epoch",
                          r->best_epoch, "since_best", r->since_best, "rng", rs, "output",
                          r->cfg.output, "config", config_to_json(&r->cfg));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    free(rs);
    return s;
}

static int write_resume(Run *r, Err *err) {
    char *dst = xasprintf("%s/.resume", r->cfg.output);
    char *tmp = xasprintf("%s/.resume.tmp", r->cfg.output);
    train_dir_remove(tmp);
    int rc = train_mkdirs(tmp, err);
    char *p = NULL, *js = NULL;
    if (rc)
        goto out;
    p = xasprintf("%s/state.safetensors", tmp);
    if ((rc = train_model_save(r->model, p, 1, NULL, err)))
        goto out;
    free(p);
    js = resume_json(r);
    p = xasprintf("%s/resume.json", tmp);
    if ((rc = train_write_file(p, js, err)))
        goto out;
    rc = train_dir_commit(tmp, dst, err);
out:
    if (rc)
        train_dir_remove(tmp);
    free(p);
    free(js);
    free(tmp);
    free(dst);
    return rc;
}

char *train_resume_read(const char *output, Err *err) {
    char *p = xasprintf("%s/.resume/resume.json", output);
    char *s = train_read_file(p, err);
    if (!s)
        err_prefix(err, "no resume state in %s (was a run started there?)", output);
    free(p);
    return s;
}

/* Load .resume/ of the run folder named in RESUME (a resume JSON). Fills r->cfg first. */
static int resume_parse(Run *r, const char *resume, json_t **out, Err *err) {
    json_error_t je;
    json_t *o = json_loads(resume, 0, &je);
    if (!o)
        return err_set(err, ERR_FORMAT, "resume state: bad JSON: %s", je.text);
    /* a job's checkpoint holds only {"output": ...}: read the full state from the folder */
    if (!json_object_get(o, "config")) {
        const char *outdir = json_string_value(json_object_get(o, "output"));
        if (!outdir) {
            json_decref(o);
            return err_set(err, ERR_FORMAT, "resume state names no output folder");
        }
        Err e = {0};
        char *full = train_resume_read(outdir, &e);
        json_decref(o);
        if (!full)
            return err_pass(err, &e, ERR_NOTFOUND);
        o = json_loads(full, 0, &je);
        free(full);
        if (!o)
            return err_set(err, ERR_FORMAT, "resume.json: bad JSON: %s", je.text);
    }
    int rc = config_from_json(&r->cfg, json_object_get(o, "config"), err);
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* ---- the run ---- */

static int alloc_batches(Run *r, Err *err) {
    int irr = r->cfg.irrelevant_weight > 0;
    r->max_n = r->cfg.batch_size * (irr ? 4 : 2);
    if (r->max_n < 64)
        r->max_n = 64; /* scoring batches */
    size_t row = (size_t)r->d.n_tok * r->d.d_img;
    r->bimg = malloc((size_t)r->max_n * row * sizeof(float));
    r->btxt = malloc((size_t)r->max_n * (size_t)r->d.d_txt * sizeof(float));
    r->bheads = malloc((size_t)r->max_n * NH * sizeof(float));
    r->bcomb = malloc((size_t)r->max_n * sizeof(float));
    r->blab = malloc((size_t)r->max_n * NH * sizeof(float));
    r->blabc = malloc((size_t)r->max_n * sizeof(float));
    r->birr = malloc((size_t)r->max_n);
    size_t ne = r->d.n_items ? r->d.n_items : 1;
    r->ep_sa = malloc(ne * NO * sizeof(float));
    r->ep_sb = malloc(ne * NO * sizeof(float));
    r->ep_lab = malloc(ne * NO * sizeof(float));
    if (!r->bimg || !r->btxt || !r->bheads || !r->bcomb || !r->blab || !r->blabc || !r->birr ||
        !r->ep_sa || !r->ep_sb || !r->ep_lab)
        return err_set(err, ERR_NOMEM, "out of memory for batches of %d samples", r->max_n);
    return 0;
}

static void metrics_val(Run *r, const ValResult *v, const char *split, double epoch) {
    for (int o = 0; o < NO; o++) {
        char n[48];
        if (strcmp(split, "val") == 0 && isfinite(v->mse[o])) {
            snprintf(n, sizeof n, "%s_mse", train_output_name(o));
            mb_add(&r->mb, split, n, r->step, epoch, v->mse[o]);
        }
        if (v->st[o].n == 0) /* no pair has a preference on this head: nothing to say */
            continue;
        snprintf(n, sizeof n, "%s_acc", train_output_name(o));
        mb_add(&r->mb, split, n, r->step, epoch, v->st[o].accuracy);
        snprintf(n, sizeof n, "%s_f1", train_output_name(o));
        mb_add(&r->mb, split, n, r->step, epoch, v->st[o].f1);
        if (strcmp(split, "val") == 0) {
            snprintf(n, sizeof n, "%s_loss", train_output_name(o));
            mb_add(&r->mb, split, n, r->step, epoch,
                   isfinite(v->mse[o]) ? v->mse[o] : v->st[o].loss);
            snprintf(n, sizeof n, "%s_margin", train_output_name(o));
            mb_add(&r->mb, split, n, r->step, epoch, v->st[o].margin_mean);
        }
    }
    mb_add(&r->mb, split, "mean_f1", r->step, epoch, v->mean_f1);
    if (strcmp(split, "val") == 0)
        mb_add(&r->mb, split, "loss", r->step, epoch, v->loss);
}

static void epoch_train_stats(Run *r, ValResult *tr) {
    memset(tr, 0, sizeof *tr);
    for (int o = 0; o < NO; o++) {
        evalrm_pairs_strided(r->ep_sa + o, r->ep_sb + o, NO, r->ep_lab + o, NO, r->ep_n,
                             &tr->st[o]);
        tr->mse[o] = NAN;
    }
    tr->mean_f1 = mean_head_f1(tr->st);
    tr->n_pairs = r->ep_n;
}

/* ---- the run, step by step: each step returns 0 or ERR_*, train_run cleans up once ---- */

/* The config (fresh or from the resume state in HOOKS), the output folder, the runs row. */
static int run_begin(Run *r, Store *st, const TrainConfig *cfg_in, const TrainHooks *hooks,
                     Err *err) {
    int rc;
    if (hooks && hooks->resume) {
        if ((rc = resume_parse(r, hooks->resume, &r->res, err)))
            return rc;
        if (cfg_in && cfg_in->threads) /* the things a resume may change: where it runs */
            r->cfg.threads = cfg_in->threads;
        if (cfg_in && cfg_in->device[0])
            base_strlcpy(r->cfg.device, cfg_in->device, sizeof r->cfg.device);
    } else {
        r->cfg = *cfg_in;
        if ((rc = train_config_check(&r->cfg, err)))
            return rc;
    }
    const TrainConfig *cfg = &r->cfg;
    if (!r->res) { /* never train over another run's checkpoints */
        char *p = xasprintf("%s/.resume/resume.json", cfg->output);
        int taken = access(p, F_OK) == 0;
        free(p);
        if (taken)
            return err_set(err, ERR_CONFLICT,
                           "%s already holds a training run; continue it with 'easel train "
                           "--resume --output %s', or choose another --output", cfg->output,
                           cfg->output);
    }
    if ((rc = train_mkdirs(cfg->output, err)))
        return rc;
    if (r->res) {
        r->run_id = json_integer_value(json_object_get(r->res, "run_id"));
        StoreRun sr = {0};
        if ((rc = store_run_get(st, r->run_id, &sr, err))) {
            err_prefix(err, "resume");
            return rc;
        }
        store_run_deinit(&sr);
        store_run_set_state(st, r->run_id, "running", NULL);
        return 0;
    }
    char *name = cfg->run_name[0] ? xstrdup(cfg->run_name) : store_run_unique_name(st, "train");
    char *cj = train_config_json(cfg);
    char *abs = realpath(cfg->output, NULL);
    int64_t id = 0;
    rc = store_run_create(st, name, "train-reward", cj, hooks ? hooks->job_id : 0,
                          abs ? abs : cfg->output, &id, err);
    free(abs);
    free(cj);
    if (rc == 0) {
        r->run_id = id;
        say(hooks, "run '%s' (#%lld), output %s", name, (long long)r->run_id, cfg->output);
    }
    free(name);
    return rc;
}

/* The encoder, the pairs, their features and the train/validation split. */
static int run_load_data(Run *r, Store *st, const TrainHooks *hooks, Err *err) {
    const TrainConfig *cfg = &r->cfg;
    int rc;
    if ((rc = encoder_open(cfg->encoder, st, &r->enc, err)))
        return rc;
    if ((rc = load_pairs(st, cfg, &r->d, &r->pm, err)))
        return rc;
    if (strcmp(cfg->objective, "pairs") == 0 && r->d.n_pairs == 0)
        return err_set(err, ERR_NOTFOUND,
                       "no training pairs in %s: %s; import ratings (easel import ratings "
                       "FILE) or pairs, or lower --min-rating-diff", store_path(st),
                       strcmp(cfg->mode, "pairs") == 0 ? "no imported pairs"
                                                       : "no two images of a prompt differ "
                                                         "enough");
    if ((rc = load_features(st, cfg, r->enc, &r->pm, hooks, &r->d, err)))
        return rc;
    if ((rc = build_split(cfg, &r->pm, &r->d, err)))
        return rc;
    size_t n_val_pairs = 0;
    for (size_t i = 0; i < r->d.n_pairs; i++)
        n_val_pairs += r->d.pair_val[i];
    say(hooks, "%zu pairs (%zu validation), %zu images, %zu prompts; %zu training %s",
        r->d.n_pairs, n_val_pairs, r->d.n_img, r->d.n_prm, r->d.n_items,
        strcmp(cfg->objective, "regression") == 0 ? "images" : "pairs");
    return 0;
}

/* The model, the batch buffers, and (resuming) the weights, optimizer and counters. */
static int run_build_model(Run *r, Store *st, const TrainHooks *hooks, Err *err) {
    const TrainConfig *cfg = &r->cfg;
    TrainModelDims md = {.d_img = r->d.d_img, .n_tokens = r->d.n_tok, .d_txt = r->d.d_txt,
                         .dropout = (float)cfg->dropout};
    base_strlcpy(md.fusion, cfg->fusion, sizeof md.fusion);
    int rc;
    if ((rc = alloc_batches(r, err)))
        return rc;
    md.max_batch = r->max_n;
    TrainDevice dev = {.spec = cfg->device, .threads = cfg->threads};
    if ((rc = train_model_new(&md, cfg->seed, &dev, (float)cfg->weight_decay, &r->model, err)))
        return rc;
    if (dev.note[0] && hooks && hooks->device_note)
        hooks->device_note(hooks->progress.user, dev.note);
    else if (dev.note[0])
        say(hooks, "%s", dev.note);
    say(hooks, "model on %s", dev.name);
    rng_init(&r->rng, cfg->seed ^ 0x5eedULL);
    r->best_f1 = -1;
    if (!r->res)
        return 0;
    char *p = xasprintf("%s/.resume/state.safetensors", cfg->output);
    rc = train_model_load(r->model, p, 1, err);
    free(p);
    if (rc)
        return rc;
    json_t *res = r->res;
    r->epoch_done = (int)json_integer_value(json_object_get(res, "epoch_done"));
    r->step = json_integer_value(json_object_get(res, "step"));
    r->best_f1 = json_number_value(json_object_get(res, "best_f1"));
    r->best_epoch = (int)json_integer_value(json_object_get(res, "best_epoch"));
    r->since_best = (int)json_integer_value(json_object_get(res, "since_best"));
    if (rng_parse(&r->rng, json_string_value(json_object_get(res, "rng"))))
        return err_set(err, ERR_FORMAT, "%s/.resume/resume.json: bad rng state; start the run "
                       "again without --resume", cfg->output);
    store_metrics_truncate(st, r->run_id, r->step, NULL);
    say(hooks, "resuming after epoch %d (step %lld)", r->epoch_done, (long long)r->step);
    return 0;
}

/* Throughput and time left, over the whole run. */
typedef struct RunClock {
    double total_steps;
    double t_start;
    int64_t step_start;
    size_t pairs_window;
    double pps, busy_window; /* step time only: checkpoints do not count */
} RunClock;

/* The "train" losses of one step at fractional epoch EP. */
static void metrics_step(Run *r, double ep, const double losses[TRAIN_LOSS_N]) {
    const TrainConfig *cfg = &r->cfg;
    double total = 0;
    for (int o = 0; o < TRAIN_LOSS_N; o++) {
        if (o < NO) {
            char nm[48];
            snprintf(nm, sizeof nm, "%s_loss", train_output_name(o));
            mb_add(&r->mb, "train", nm, r->step, ep, losses[o]);
        }
        if (isfinite(losses[o]))
            total += losses[o];
    }
    if (cfg->irrelevant_weight > 0)
        mb_add(&r->mb, "train", "irrelevant_loss", r->step, ep, losses[NO]);
    mb_add(&r->mb, "train", "loss", r->step, ep, total);
    mb_add(&r->mb, "train", "lr", r->step, ep, cfg->learning_rate);
}

/* The "sys" rows (speed, time, head weights) at fractional epoch EP, then a flush. */
static int metrics_sys(Run *r, Store *st, RunClock *c, double ep, double now, Err *err) {
    if (c->busy_window > 0)
        c->pps = (double)c->pairs_window / c->busy_window;
    c->busy_window = 0;
    c->pairs_window = 0;
    double el = now - c->t_start;
    double done_here = (double)(r->step - c->step_start);
    double eta = done_here > 0 ? el / done_here * (c->total_steps - (double)r->step) : NAN;
    mb_add(&r->mb, "sys", "pairs_per_s", r->step, ep, c->pps);
    mb_add(&r->mb, "sys", "elapsed_s", r->step, ep, el);
    mb_add(&r->mb, "sys", "eta_s", r->step, ep, eta);
    mb_add(&r->mb, "sys", "epoch", r->step, ep, ep);
    mb_add(&r->mb, "sys", "epochs", r->step, ep, r->cfg.epochs);
    mb_add(&r->mb, "sys", "step", r->step, ep, (double)r->step);
    float hw[NH];
    train_model_head_weights(r->model, hw);
    for (int h = 0; h < NH; h++) {
        char nm[48];
        snprintf(nm, sizeof nm, "head_w_%s", train_output_name(h));
        mb_add(&r->mb, "sys", nm, r->step, ep, hw[h]);
    }
    return mb_flush(&r->mb, st, r->run_id, err);
}

/* The optimizer steps of epoch EPOCH over a fresh shuffle of the training items. */
static int run_train_epoch(Run *r, Store *st, const TrainHooks *hooks, int epoch, RunClock *c,
                           Err *err) {
    const TrainConfig *cfg = &r->cfg;
    int B = cfg->batch_size;
    for (size_t i = 0; i < r->d.n_items; i++)
        r->order[i] = r->d.items[i];
    rng_shuffle(&r->rng, r->order, r->d.n_items);
    r->ep_n = 0;
    for (size_t b0 = 0; b0 < r->d.n_items; b0 += (size_t)B) {
        if (cancelled(hooks)) {
            mb_flush(&r->mb, st, r->run_id, NULL);
            return err_set(err, ERR_CANCELLED,
                           "training cancelled in epoch %d; resume continues after epoch %d",
                           epoch + 1, r->epoch_done);
        }
        int n = (int)((r->d.n_items - b0) < (size_t)B ? r->d.n_items - b0 : (size_t)B);
        double losses[TRAIN_LOSS_N];
        double t_step = base_now();
        if (r->d.target)
            train_step_regression(r, r->order + b0, n, losses);
        else
            train_step_pairs(r, r->order + b0, n, losses);
        r->step++;
        train_model_step(r->model, (int)r->step, (float)cfg->learning_rate);
        int frc = train_model_check(r->model, err); /* the step's device failure */
        if (frc) {
            mb_flush(&r->mb, st, r->run_id, NULL);
            return frc;
        }
        c->busy_window += base_now() - t_step;
        double ep = epoch + (double)(b0 + (size_t)n) / (double)r->d.n_items;
        metrics_step(r, ep, losses);
        c->pairs_window += (size_t)n;
        double now = base_now();
        int rc;
        if ((now - r->mb.last_flush >= 0.25 || b0 + (size_t)n >= r->d.n_items) &&
            (rc = metrics_sys(r, st, c, ep, now, err)))
            return rc;
        if (hooks)
            progress_report(&hooks->progress, (double)r->step, c->total_steps, "steps");
    }
    return 0;
}

/* The end of an epoch: training acc/F1, validation, checkpoints, the resume state. *STOP is
 * set when patience ran out. VAL and TRS keep the epoch's results for the final checkpoint. */
static int run_end_epoch(Run *r, Store *st, const TrainHooks *hooks, int epoch, ValResult *val,
                         ValResult *trs, int *stop, Err *err) {
    const TrainConfig *cfg = &r->cfg;
    int rc;
    r->epoch_done = epoch + 1;
    epoch_train_stats(r, trs);
    if (!r->d.target)
        metrics_val(r, trs, "train", r->epoch_done);
    evaluate(r, 1, val);
    int have_val = val->n_pairs > 0;
    if (!have_val) /* no validation pairs: judge on the training split */
        evaluate(r, 0, val);
    if ((rc = train_model_check(r->model, err))) /* the validation forwards' device failure */
        return rc;
    metrics_val(r, val, have_val ? "val" : "train", r->epoch_done);
    int better = val->mean_f1 > r->best_f1;
    if (better) {
        r->best_f1 = val->mean_f1;
        r->best_epoch = r->epoch_done;
        r->since_best = 0;
    } else {
        r->since_best++;
    }
    mb_add(&r->mb, "sys", "best_f1", r->step, r->epoch_done, r->best_f1);
    if ((rc = mb_flush(&r->mb, st, r->run_id, err)))
        return rc;
    say(hooks, "epoch %d/%d: val mean F1 %.3f, combined acc %.3f%s", r->epoch_done, cfg->epochs,
        val->mean_f1, val->st[NH].accuracy, better ? " (best)" : "");
    if (better && (rc = write_checkpoint(r, st, "best", val, trs, err)))
        return rc;
    if (cfg->save_every > 0 && r->epoch_done % cfg->save_every == 0) {
        char nm[32];
        snprintf(nm, sizeof nm, "checkpoint-%d", r->epoch_done);
        if ((rc = write_checkpoint(r, st, nm, val, trs, err)))
            return rc;
        rotate_checkpoints(r, st, hooks);
    }
    *stop = cfg->patience > 0 && r->since_best >= cfg->patience && r->epoch_done < cfg->epochs;
    if ((rc = write_resume(r, err)))
        return rc;
    if (hooks && hooks->resume_point) {
        json_t *j = json_pack("{s:s, s:i}", "output", cfg->output, "epoch", r->epoch_done);
        char *js = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        rc = hooks->resume_point(hooks->progress.user, js, err);
        free(js);
        if (rc)
            return rc;
    }
    if (*stop)
        say(hooks, "early stop: no better validation F1 for %d epochs (best %.3f at epoch %d)",
            cfg->patience, r->best_f1, r->best_epoch);
    return 0;
}

/* The epochs, then the final checkpoint. */
static int run_epochs(Run *r, Store *st, const TrainHooks *hooks, Err *err) {
    const TrainConfig *cfg = &r->cfg;
    size_t steps_per_epoch = (r->d.n_items + (size_t)cfg->batch_size - 1) / (size_t)cfg->batch_size;
    RunClock c = {.total_steps = (double)steps_per_epoch * cfg->epochs,
                  .t_start = base_now(), .step_start = r->step, .pps = NAN};
    ValResult val = {0}, trs = {0};
    r->order = xmalloc(r->d.n_items * sizeof *r->order);
    int rc, stop = 0;
    for (int epoch = r->epoch_done; epoch < cfg->epochs && !stop; epoch++) {
        if ((rc = run_train_epoch(r, st, hooks, epoch, &c, err)))
            return rc;
        if ((rc = run_end_epoch(r, st, hooks, epoch, &val, &trs, &stop, err)))
            return rc;
    }
    if ((rc = write_checkpoint(r, st, "final", &val, &trs, err)))
        return rc;
    say(hooks, "done: best mean F1 %.3f at epoch %d; checkpoints in %s", r->best_f1,
        r->best_epoch, cfg->output);
    return 0;
}

int train_run(Store *st, const TrainConfig *cfg_in, const TrainHooks *hooks, int64_t *run_id,
              Err *err) {
    Run r;
    memset(&r, 0, sizeof r);
    int rc = run_begin(&r, st, cfg_in, hooks, err);
    if (rc == 0 && run_id)
        *run_id = r.run_id;
    if (rc == 0)
        rc = run_load_data(&r, st, hooks, err);
    if (rc == 0)
        rc = run_build_model(&r, st, hooks, err);
    if (rc == 0)
        rc = run_epochs(&r, st, hooks, err);
    if (r.run_id) {
        const char *state = rc == 0 ? "succeeded" : rc == ERR_CANCELLED ? "cancelled" : "failed";
        store_run_set_state(st, r.run_id, state, NULL);
    }
    run_free(&r);
    return rc;
}
