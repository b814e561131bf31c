/* train_eval — a trained checkpoint put to use: loading, scoring images, evaluating it on
 * preference pairs (seed 003's metrics, evalrm.h). See train.h.
 *
 * Each distinct (image, prompt) is scored once per evaluation: scores are kept in a small
 * open-addressing table keyed by the image path and prompt text.
 */
#include "train.h"
#include "train_int.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "encoder.h"
#include "pairs.h"
#include "store_catalog.h"
#include "store_ratings.h"
#include "trust.h"

#define NH TRAIN_N_HEADS
#define NO (TRAIN_N_HEADS + 1)

struct RewardCkpt {
    char *dir;             /* absolute */
    Encoder *enc;
    TrainModel *model;
    TrainConfig cfg;       /* the training config recorded in config.json */
    float *img;            /* one sample's buffers */
    float *txt;
};

int train_ckpt_open(Store *st, const char *dir, int threads, RewardCkpt **out, Err *err) {
    TrainDevice dev = {.spec = "cpu", .threads = threads};
    return train_ckpt_open_on(st, dir, &dev, out, err);
}

int train_ckpt_open_on(Store *st, const char *dir, TrainDevice *dev, RewardCkpt **out,
                       Err *err) {
    *out = NULL;
    char *p = xasprintf("%s/config.json", dir);
    Err e = {0};
    char *text = train_read_file(p, &e);
    RewardCkpt *c = NULL;
    json_t *o = NULL;
    int rc;
    if (!text) {
        rc = err_pass(err, &e, ERR_IO);
        err_prefix(err, "%s is not a reward checkpoint folder (best/, final/, checkpoint-N/)",
                   dir);
        goto out;
    }
    json_error_t je;
    o = json_loads(text, 0, &je);
    if (!o || !json_is_object(o)) {
        rc = err_set(err, ERR_FORMAT, "%s:%d: bad JSON (%s); the checkpoint is damaged", p,
                     je.line, o ? "not an object" : je.text);
        goto out;
    }
    const char *encname = json_string_value(json_object_get(o, "encoder"));
    const char *fusion = json_string_value(json_object_get(o, "fusion_method"));
    TrainModelDims md = {0};
    md.d_img = (int)json_integer_value(json_object_get(o, "image_dim"));
    md.n_tokens = (int)json_integer_value(json_object_get(o, "image_tokens"));
    md.d_txt = (int)json_integer_value(json_object_get(o, "text_dim"));
    md.dropout = (float)json_number_value(json_object_get(o, "dropout"));
    md.max_batch = 1;
    if (!encname || !fusion || md.d_img <= 0 || md.n_tokens <= 0 || md.d_txt <= 0) {
        rc = err_set(err, ERR_FORMAT, "%s: needs encoder, fusion_method, image_dim, "
                     "image_tokens and text_dim; the checkpoint is damaged or not from easel", p);
        goto out;
    }
    base_strlcpy(md.fusion, fusion, sizeof md.fusion);
    c = xcalloc(1, sizeof *c);
    train_config_defaults(&c->cfg);
    json_t *tc = json_object_get(o, "training");
    if (tc) {
        char *tj = json_dumps(tc, JSON_COMPACT);
        Err e2 = {0};
        if (train_config_parse(&c->cfg, tj, &e2))
            train_config_defaults(&c->cfg);
        free(tj);
    }
    if ((rc = encoder_open(encname, st, &c->enc, err)))
        goto fail;
    if (c->enc->dim_image != md.d_img || c->enc->n_image_tokens != md.n_tokens ||
        c->enc->dim_text != md.d_txt) {
        rc = err_set(err, ERR_FORMAT, "%s: trained on %s features of %dx%d / %d, but encoder %s "
                     "now gives %dx%d / %d", dir, encname, md.n_tokens, md.d_img, md.d_txt,
                     encname, c->enc->n_image_tokens, c->enc->dim_image, c->enc->dim_text);
        goto fail;
    }
    if ((rc = train_model_new(&md, 0, dev, 0.0f, &c->model, err)))
        goto fail;
    free(p);
    p = xasprintf("%s/model.safetensors", dir);
    if ((rc = train_model_load(c->model, p, 0, err)))
        goto fail;
    char *abs = realpath(dir, NULL);
    c->dir = abs ? abs : xstrdup(dir);
    c->img = xmalloc((size_t)md.n_tokens * md.d_img * sizeof(float));
    c->txt = xmalloc((size_t)md.d_txt * sizeof(float));
    *out = c;
    goto out;
fail:
    train_ckpt_free(c);
out:
    json_decref(o);
    free(text);
    free(p);
    return rc;
}

void train_ckpt_free(RewardCkpt *c) {
    if (!c)
        return;
    encoder_free(c->enc);
    train_model_free(c->model);
    free(c->dir);
    free(c->img);
    free(c->txt);
    free(c);
}

const char *train_ckpt_path(const RewardCkpt *c) { return c->dir; }
const char *train_ckpt_encoder(const RewardCkpt *c) { return c->enc->name; }

int train_ckpt_score(RewardCkpt *c, Store *st, const char *path, const char *sha256,
                     const char *prompt, float out[NO], Err *err) {
    float *v = NULL, *t = NULL;
    int rc = encoder_embed_image(c->enc, st, path, sha256, &v, err);
    if (rc)
        return rc;
    if ((rc = encoder_embed_text(c->enc, st, prompt ? prompt : "", &t, err))) {
        free(v);
        return rc;
    }
    float heads[NH], comb;
    train_model_forward(c->model, v, t, 1, 0, 0, heads, &comb);
    free(v);
    free(t);
    if ((rc = train_model_check(c->model, err)))
        return rc;
    memcpy(out, heads, sizeof heads);
    out[NH] = comb;
    return 0;
}

int train_image_probe(Encoder *enc, const char *path, Err *err) {
    if (access(path, R_OK) != 0)
        return err_set(err, ERR_NOTFOUND, "%s: cannot open (%s)", path, strerror(errno));
    float *v = NULL;
    int rc = encoder_embed_image(enc, NULL, path, NULL, &v, err);
    free(v);
    return rc;
}

int train_ckpt_probe(RewardCkpt *c, const char *path, Err *err) {
    return train_image_probe(c->enc, path, err);
}

/* ---- score cache ---- */

/* Two kinds of entries: "S" sha256 \x1f prompt -> scores; "P" path -> its sha256, or bad
 * (unreadable: skipped everywhere after the first try). */
typedef struct Scored {
    char *key;
    float s[NO];
    char sha[65];
    int bad;
} Scored;

typedef struct ScoreMap {
    Scored *slot;
    size_t cap, n;
} ScoreMap;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static Scored *map_find(ScoreMap *m, const char *key, int *is_new) {
    if (m->n * 2 >= m->cap) {
        ScoreMap g = {xcalloc(m->cap ? 2 * m->cap : 64, sizeof(Scored)),
                      m->cap ? 2 * m->cap : 64, 0};
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slot[i].key)
                continue;
            size_t j = hash_str(m->slot[i].key) & (g.cap - 1);
            while (g.slot[j].key)
                j = (j + 1) & (g.cap - 1);
            g.slot[j] = m->slot[i];
            g.n++;
        }
        free(m->slot);
        *m = g;
    }
    size_t j = hash_str(key) & (m->cap - 1);
    while (m->slot[j].key && strcmp(m->slot[j].key, key) != 0)
        j = (j + 1) & (m->cap - 1);
    *is_new = !m->slot[j].key;
    if (*is_new) {
        m->slot[j].key = xstrdup(key);
        m->n++;
    }
    return &m->slot[j];
}

static void map_free(ScoreMap *m) {
    for (size_t i = 0; i < m->cap; i++)
        free(m->slot[i].key);
    free(m->slot);
}

/* ---- evaluation items ---- */

/* One preference, oriented canonically: image 0 has the smaller sha256. */
typedef struct EvalItem {
    char *path[2];         /* resolved, to open */
    char *name[2];         /* as the source wrote it (messages) */
    char sha[2][65];       /* "" until known */
    char *prompt;          /* text scored under */
    int out;               /* output: head 0..4, or NH = combined */
    float label;           /* 1: image 0 preferred, 0: image 1, 0.5: none */
    int line;              /* file line, 0 for store pairs */
} EvalItem;

typedef struct EvalItems {
    EvalItem *v;
    size_t n, cap;
} EvalItems;

static EvalItem *items_push(EvalItems *it) {
    if (it->n == it->cap)
        it->v = xrealloc(it->v, (it->cap = it->cap ? 2 * it->cap : 256) * sizeof *it->v);
    EvalItem *e = &it->v[it->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static void items_free(EvalItems *it) {
    for (size_t i = 0; i < it->n; i++) {
        free(it->v[i].path[0]);
        free(it->v[i].path[1]);
        free(it->v[i].name[0]);
        free(it->v[i].name[1]);
        free(it->v[i].prompt);
    }
    free(it->v);
}

/* Put image 0 first when its sha256 (then its path) sorts first; the label follows. */
static void item_orient(EvalItem *e) {
    int c = strcmp(e->sha[0], e->sha[1]);
    if (c == 0)
        c = strcmp(e->path[0], e->path[1]);
    if (c <= 0)
        return;
    char *t;
    t = e->path[0], e->path[0] = e->path[1], e->path[1] = t;
    t = e->name[0], e->name[0] = e->name[1], e->name[1] = t;
    char h[65];
    memcpy(h, e->sha[0], 65);
    memcpy(e->sha[0], e->sha[1], 65);
    memcpy(e->sha[1], h, 65);
    if (e->label != 0.5f)
        e->label = 1.0f - e->label;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
}

/* A path from a pairs file: relative to the file's folder first, then the current one. */
static char *resolve_near(const char *base_dir, const char *p) {
    if (p[0] == '/')
        return xstrdup(p);
    char *a = xasprintf("%s/%s", base_dir, p);
    if (access(a, R_OK) == 0)
        return a;
    free(a);
    return xstrdup(p);
}

/* The prompt text of a pairs-file line: "prompt_id" (the store's id, as export writes it),
 * else "prompt" as a store id, else "prompt" as the text itself. */
static char *line_prompt(Store *st, json_t *j) {
    json_t *pid = json_object_get(j, "prompt_id"), *pj = json_object_get(j, "prompt");
    char id[32];
    const char *tries[2] = {NULL, NULL};
    if (json_is_string(pid))
        tries[0] = json_string_value(pid);
    else if (json_is_integer(pid)) {
        snprintf(id, sizeof id, "%lld", (long long)json_integer_value(pid));
        tries[0] = id;
    }
    char id2[32];
    if (json_is_string(pj))
        tries[1] = json_string_value(pj);
    else if (json_is_integer(pj)) {
        snprintf(id2, sizeof id2, "%lld", (long long)json_integer_value(pj));
        tries[1] = id2;
    }
    for (int k = 0; k < 2; k++) {
        StorePrompt sp = {0};
        if (st && tries[k] && store_prompt_by_ext(st, tries[k], &sp, NULL) == 0) {
            char *t = xstrdup(sp.text ? sp.text : "");
            store_prompt_deinit(&sp);
            return t;
        }
    }
    return xstrdup(tries[1] ? tries[1] : "");
}

static int read_file_items(Store *st, const EvalOptions *o, EvalItems *it, Err *err) {
    FILE *f = fopen(o->pairs_file, "r");
    if (!f) {
        int e = errno;
        return err_set(err, e == ENOENT ? ERR_NOTFOUND : ERR_IO,
                       "%s: cannot open the pairs file: %s", o->pairs_file, strerror(e));
    }
    char *base = dir_of(o->pairs_file);
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (progress_cancelled(&o->progress)) {
            rc = err_set(err, ERR_CANCELLED, "evaluation cancelled");
            break;
        }
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\n' || *s == '\r' || *s == '\0')
            continue;
        json_error_t je;
        json_t *j = json_loads(s, JSON_DISABLE_EOF_CHECK, &je);
        if (!j || !json_is_object(j)) {
            rc = err_set(err, ERR_FORMAT, "%s:%d: not a JSON object (%s); each line must be "
                         "{\"prompt\":..., \"img_pos\":..., \"img_neg\":..., \"label\":...}",
                         o->pairs_file, lineno, j ? "wrong type" : je.text);
            json_decref(j);
            break;
        }
        const char *pos = json_string_value(json_object_get(j, "img_pos"));
        const char *neg = json_string_value(json_object_get(j, "img_neg"));
        json_t *lj = json_object_get(j, "label");
        json_t *aj = json_object_get(j, "aspect");
        const char *aspect = json_string_value(aj);
        double label = lj ? json_number_value(lj) : 1.0;
        int head = NH;
        if (aspect && *aspect && strcmp(aspect, "combined") != 0) {
            head = -1;
            for (int h = 0; h < NH; h++)
                if (strcmp(aspect, train_output_name(h)) == 0)
                    head = h;
        }
        if (!pos || !neg)
            rc = err_set(err, ERR_FORMAT, "%s:%d: \"img_pos\" and \"img_neg\" must be image "
                         "paths (strings)", o->pairs_file, lineno);
        else if (lj && !json_is_number(lj))
            rc = err_set(err, ERR_FORMAT, "%s:%d: \"label\" must be a number in 0..1",
                         o->pairs_file, lineno);
        else if (!(label >= 0 && label <= 1))
            rc = err_set(err, ERR_FORMAT, "%s:%d: \"label\" %g is not in 0..1", o->pairs_file,
                         lineno, label);
        else if (aj && !json_is_null(aj) && !aspect)
            rc = err_set(err, ERR_FORMAT, "%s:%d: \"aspect\" must be a string (a head name "
                         "or \"combined\")", o->pairs_file, lineno);
        if (rc) {
            json_decref(j);
            break;
        }
        if (head < 0) { /* an aspect this model has no head for: nothing to compare */
            json_decref(j);
            continue;
        }
        char *rp[2] = {resolve_near(base, pos), resolve_near(base, neg)};
        for (int k = 0; k < 2 && o->job_paths && st && !rc; k++)
            if ((rc = trust_check_path(st, k ? "img_neg" : "img_pos", rp[k], err)))
                err_prefix(err, "%s:%d", o->pairs_file, lineno);
        if (rc) {
            free(rp[0]);
            free(rp[1]);
            json_decref(j);
            break;
        }
        EvalItem *e = items_push(it);
        e->path[0] = rp[0];
        e->path[1] = rp[1];
        e->name[0] = xstrdup(pos);
        e->name[1] = xstrdup(neg);
        e->prompt = line_prompt(st, j);
        e->out = head;
        e->label = label > 0.5 ? 1.0f : label < 0.5 ? 0.0f : 0.5f;
        e->line = lineno;
        json_decref(j);
    }
    free(line);
    free(base);
    fclose(f);
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_image_id(const void *a, const void *b) {
    int64_t x = ((const StoreImage *)a)->id, y = ((const StoreImage *)b)->id;
    return x < y ? -1 : x > y;
}

static int cmp_prompt_id(const void *a, const void *b) {
    int64_t x = ((const StorePrompt *)a)->id, y = ((const StorePrompt *)b)->id;
    return x < y ? -1 : x > y;
}

static const StoreImage *find_image(const StoreImage *v, size_t n, int64_t id) {
    StoreImage key = {.id = id};
    return bsearch(&key, v, n, sizeof *v, cmp_image_id);
}

static const StorePrompt *find_prompt(const StorePrompt *v, size_t n, int64_t id) {
    StorePrompt key = {.id = id};
    return id ? bsearch(&key, v, n, sizeof *v, cmp_prompt_id) : NULL;
}

static int read_store_items(RewardCkpt *c, Store *st, const EvalOptions *o, EvalItems *it,
                            Err *err) {
    PairsMeans pm;
    int rc = train_means_load(st, 0, &pm, err);
    if (rc)
        return rc;
    Pair *p = NULL;
    size_t np = 0;
    pairs_derive(&pm, o->min_rating_diff, PAIRS_ALL, &p, &np);
    pairs_means_deinit(&pm);
    /* every image and prompt once, looked up by id below */
    StoreImage *imgs = NULL;
    StorePrompt *prs = NULL;
    size_t n_imgs = 0, n_prs = 0;
    if ((rc = store_images_list(st, 0, &imgs, &n_imgs, err)) ||
        (rc = store_prompts_list(st, &prs, &n_prs, err))) {
        store_images_free(imgs, n_imgs);
        free(p);
        return rc;
    }
    qsort(imgs, n_imgs, sizeof *imgs, cmp_image_id);
    qsort(prs, n_prs, sizeof *prs, cmp_prompt_id);
    /* the checkpoint's split, over the prompts of the per-aspect pairs (as training) */
    uint8_t *is_val = NULL;
    int want = o->split && strcmp(o->split, "val") == 0    ? 1
               : o->split && strcmp(o->split, "train") == 0 ? 0
                                                           : -1;
    if (want >= 0) {
        /* training splits the prompts of its head pairs; a pair of another prompt (only a
         * combined pair there, from aspects beyond the heads) is on neither side */
        int64_t *pid = xmalloc((np + 1) * sizeof *pid);
        size_t k = 0;
        for (size_t i = 0; i < np; i++)
            if (p[i].aspect >= 0 && p[i].aspect < NH)
                pid[k++] = p[i].prompt_id;
        uint8_t *v = xmalloc(k + 1);
        train_split_prompts(pid, k, c->cfg.val_fraction, c->cfg.seed, v);
        int64_t *held = xmalloc((k + 1) * sizeof *held), *seen = xmalloc((k + 1) * sizeof *seen);
        size_t n_held = 0, n_seen = 0;
        for (size_t i = 0; i < k; i++) {
            seen[n_seen++] = pid[i];
            if (v[i])
                held[n_held++] = pid[i];
        }
        qsort(held, n_held, sizeof *held, cmp_i64);
        qsort(seen, n_seen, sizeof *seen, cmp_i64);
        is_val = xmalloc(np + 1);
        for (size_t i = 0; i < np; i++)
            is_val[i] = !bsearch(&p[i].prompt_id, seen, n_seen, sizeof *seen, cmp_i64) ? 2
                        : bsearch(&p[i].prompt_id, held, n_held, sizeof *held, cmp_i64) ? 1
                                                                                         : 0;
        free(held);
        free(seen);
        free(v);
        free(pid);
    }
    for (size_t i = 0; i < np && rc == 0; i++) {
        if (p[i].aspect >= NH || (want >= 0 && is_val[i] != want))
            continue;
        if (progress_cancelled(&o->progress)) {
            rc = err_set(err, ERR_CANCELLED, "evaluation cancelled");
            break;
        }
        EvalItem *e = items_push(it);
        e->out = p[i].aspect == PAIRS_COMBINED ? NH : p[i].aspect;
        e->label = 1.0f; /* img_pos is preferred */
        int64_t ids[2] = {p[i].img_pos, p[i].img_neg};
        for (int k = 0; k < 2 && rc == 0; k++) {
            StoreImage one = {0};
            const StoreImage *im = find_image(imgs, n_imgs, ids[k]);
            if (!im) { /* not listed (e.g. retired since): ask for it alone */
                if ((rc = store_image_get(st, ids[k], &one, err)))
                    break;
                im = &one;
            }
            if (k == 0) {
                const StorePrompt *sp = find_prompt(prs, n_prs, im->prompt_id);
                e->prompt = xstrdup(sp && sp->text ? sp->text : "");
            }
            e->path[k] = store_path_resolve(st, im->path);
            e->name[k] = xstrdup(im->path);
            if (im->sha256)
                base_strlcpy(e->sha[k], im->sha256, sizeof e->sha[k]);
            store_image_deinit(&one);
        }
    }
    free(is_val);
    free(p);
    store_images_free(imgs, n_imgs);
    store_prompts_free(prs, n_prs);
    return rc;
}

/* The sha256 of item E's image K (from the source, else from the file). 1 when the file
 * cannot be read (it is then recorded as skipped, once); 0; or an error that must stop the
 * evaluation. */
static int item_hash(EvalItem *e, int k, ScoreMap *m, TrainSkipped *sk, Err *err) {
    char *key = xasprintf("P\x1f%s", e->path[k]);
    int is_new;
    Scored *p = map_find(m, key, &is_new);
    free(key);
    if (!is_new) {
        if (!p->bad && !e->sha[k][0])
            memcpy(e->sha[k], p->sha, sizeof p->sha);
        return p->bad;
    }
    Err e2 = {0};
    int rc = 0;
    if (access(e->path[k], R_OK) != 0)
        rc = err_set(&e2, ERR_NOTFOUND, "%s: cannot open (%s)", e->path[k], strerror(errno));
    else if (!e->sha[k][0])
        rc = encoder_hash_file(e->path[k], e->sha[k], &e2);
    if (rc == 0) {
        memcpy(p->sha, e->sha[k], sizeof p->sha);
        return 0;
    }
    if (!train_err_is_unreadable(rc)) {
        if (err)
            *err = e2;
        return rc;
    }
    p->bad = 1;
    train_skipped_add(sk, e->name[k], e2.msg);
    return 1;
}

/* Scores of item E's image K: 0, 1 when the image cannot be decoded or encoded (recorded as
 * skipped), or an error that stops the evaluation. */
static int item_score(RewardCkpt *c, Store *st, EvalItem *e, int k, ScoreMap *m,
                      TrainSkipped *sk, float out[NO], size_t *n_images, Err *err) {
    char *key = xasprintf("S\x1f%s\x1f%s", e->sha[k], e->prompt);
    int is_new;
    Scored *p = map_find(m, key, &is_new);
    free(key);
    if (!is_new) {
        memcpy(out, p->s, sizeof p->s);
        return p->bad;
    }
    Err e2 = {0};
    int rc = train_ckpt_score(c, st, e->path[k], e->sha[k], e->prompt, p->s, &e2);
    if (rc == 0) {
        memcpy(out, p->s, sizeof p->s);
        /* distinct images: the first time this hash is scored under any prompt */
        char *ik = xasprintf("I\x1f%s", e->sha[k]);
        int first;
        map_find(m, ik, &first);
        free(ik);
        *n_images += first != 0;
        return 0;
    }
    if (train_err_is_unreadable(rc)) {
        /* really the image? (a cache write can fail too) */
        Err e3 = {0};
        int bad = train_image_probe(c->enc, e->path[k], &e3);
        if (bad && train_err_is_unreadable(bad)) {
            p->bad = 1;
            char *pk = xasprintf("P\x1f%s", e->path[k]);
            int pn;
            Scored *pp = map_find(m, pk, &pn);
            free(pk);
            if (!pp->bad) {
                pp->bad = 1;
                train_skipped_add(sk, e->name[k], e3.msg);
            }
            return 1;
        }
    }
    p->bad = 1;
    if (err)
        *err = e2;
    return rc;
}

typedef struct DistinctPair {
    const char *a, *b, *prompt;
} DistinctPair;

static int cmp_distinct(const void *x, const void *y) {
    const DistinctPair *p = x, *q = y;
    int c = strcmp(p->a, q->a);
    if (!c)
        c = strcmp(p->b, q->b);
    if (!c)
        c = strcmp(p->prompt, q->prompt);
    return c;
}

int train_eval(RewardCkpt *c, Store *st, const EvalOptions *o, EvalReport *out, Err *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->checkpoint, sizeof out->checkpoint, "%s", c->dir);
    EvalItems it = {0};
    ScoreMap map = {0};
    int rc;
    if (o->pairs_file) {
        snprintf(out->source, sizeof out->source, "%s", o->pairs_file);
        rc = read_file_items(st, o, &it, err);
    } else {
        if (!st)
            return err_set(err, ERR_USAGE, "evaluation without --pairs needs a store");
        snprintf(out->source, sizeof out->source, "ratings in %s (min diff %g, %s pairs)",
                 store_path(st), o->min_rating_diff, o->split ? o->split : "all");
        rc = read_store_items(c, st, o, &it, err);
    }
    float *sa = xmalloc((it.n ? it.n : 1) * NO * sizeof *sa);
    float *sb = xmalloc((it.n ? it.n : 1) * NO * sizeof *sb);
    float *lab = xmalloc((it.n ? it.n : 1) * NO * sizeof *lab);
    DistinctPair *dp = xmalloc((it.n ? it.n : 1) * sizeof *dp);
    size_t n = 0;
    for (size_t i = 0; i < it.n && rc == 0; i++) {
        if (progress_cancelled(&o->progress)) {
            rc = err_set(err, ERR_CANCELLED, "evaluation cancelled");
            break;
        }
        EvalItem *e = &it.v[i];
        int skip = 0;
        float s[2][NO];
        for (int k = 0; k < 2 && rc >= 0 && !skip; k++)
            if ((rc = item_hash(e, k, &map, &out->skipped, err)) > 0)
                skip = 1, rc = 0;
        if (rc == 0 && !skip) {
            item_orient(e);
            for (int k = 0; k < 2 && rc >= 0 && !skip; k++)
                if ((rc = item_score(c, st, e, k, &map, &out->skipped, s[k], &out->n_images,
                                     err)) > 0)
                    skip = 1, rc = 0;
        }
        if (rc && e->line)
            err_prefix(err, "%s:%d", o->pairs_file, e->line);
        if (rc == 0 && skip)
            out->n_skipped_labels++;
        if (rc == 0 && !skip && e->label != 0.5f) {
            for (int k = 0; k < NO; k++) {
                sa[n * NO + k] = s[0][k];
                sb[n * NO + k] = s[1][k];
                lab[n * NO + k] = k == e->out ? e->label : 0.5f;
            }
            dp[n] = (DistinctPair){e->sha[0], e->sha[1], e->prompt};
            n++;
        }
        progress_report(&o->progress, (double)(i + 1), (double)it.n, "pairs");
    }
    if (rc == 0 && n == 0 && out->skipped.n > 0) {
        char why[900];
        train_skipped_text(&out->skipped, why, sizeof why);
        rc = err_set(err, ERR_IO, "nothing to evaluate: %s", why);
    }
    if (rc == 0) {
        for (int k = 0; k < NO; k++)
            evalrm_pairs_strided(sa + k, sb + k, NO, lab + k, NO, n, &out->st[k]);
        out->n_labels = n;
        qsort(dp, n, sizeof *dp, cmp_distinct);
        for (size_t i = 0; i < n; i++)
            out->n_pairs += i == 0 || cmp_distinct(&dp[i - 1], &dp[i]) != 0;
        /* the end is 100 %, whatever was skipped on the way */
        progress_report(&o->progress, (double)it.n, (double)it.n, "pairs");
    }
    free(dp);
    free(sa);
    free(sb);
    free(lab);
    items_free(&it);
    map_free(&map);
    return rc;
}
