/* train_eval — a trained checkpoint put to use: loading, scoring images, evaluating it on
 * preference pairs (seed 003's metrics, evalrm.h). See train.h.
 *
 * Each distinct (image, prompt) is scored once per evaluation: scores are kept in a small
 * open-addressing table keyed by the image path and prompt text.
 */
#include "train.h"
#include "train_int.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "encoder.h"
#include "store_catalog.h"
#include "store_ratings.h"

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

RewardCkpt *train_ckpt_open(Store *st, const char *dir, int threads, Err *err) {
    char *p = xasprintf("%s/config.json", dir);
    char *text = train_read_file(p, err);
    RewardCkpt *c = NULL;
    json_t *o = NULL;
    if (!text) {
        err_prefix(err, "%s is not a reward checkpoint folder (best/, final/, checkpoint-N/)",
                   dir);
        goto out;
    }
    json_error_t je;
    o = json_loads(text, 0, &je);
    if (!o || !json_is_object(o)) {
        err_set(err, ERR_FORMAT, "%s:%d: bad JSON (%s); the checkpoint is damaged", p, je.line,
                o ? "not an object" : je.text);
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
        err_set(err, ERR_FORMAT, "%s: needs encoder, fusion_method, image_dim, image_tokens "
                "and text_dim; the checkpoint is damaged or not from easel", p);
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
    if (!(c->enc = encoder_open(encname, st, err)))
        goto fail;
    if (c->enc->dim_image != md.d_img || c->enc->n_image_tokens != md.n_tokens ||
        c->enc->dim_text != md.d_txt) {
        err_set(err, ERR_FORMAT, "%s: trained on %s features of %dx%d / %d, but encoder %s now "
                "gives %dx%d / %d", dir, encname, md.n_tokens, md.d_img, md.d_txt, encname,
                c->enc->n_image_tokens, c->enc->dim_image, c->enc->dim_text);
        goto fail;
    }
    if (!(c->model = train_model_new(&md, 0, threads, 0.0f, err)))
        goto fail;
    free(p);
    p = xasprintf("%s/model.safetensors", dir);
    if (train_model_load(c->model, p, 0, err))
        goto fail;
    char *abs = realpath(dir, NULL);
    c->dir = abs ? abs : xstrdup(dir);
    c->img = xmalloc((size_t)md.n_tokens * md.d_img * sizeof(float));
    c->txt = xmalloc((size_t)md.d_txt * sizeof(float));
    goto out;
fail:
    train_ckpt_free(c);
    c = NULL;
out:
    json_decref(o);
    free(text);
    free(p);
    return c;
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
    memcpy(out, heads, sizeof heads);
    out[NH] = comb;
    free(v);
    free(t);
    return 0;
}

/* ---- score cache ---- */

typedef struct Scored {
    char *key;             /* path \x1f prompt */
    float s[NO];
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

static int score_cached(RewardCkpt *c, Store *st, ScoreMap *m, const char *path,
                        const char *sha, const char *prompt, float out[NO], Err *err) {
    char *key = xasprintf("%s\x1f%s", path, prompt);
    int is_new;
    Scored *e = map_find(m, key, &is_new);
    free(key);
    if (is_new) {
        int rc = train_ckpt_score(c, st, path, sha, prompt, e->s, err);
        if (rc) {
            for (int o = 0; o < NO; o++)
                e->s[o] = NAN;
            return rc;
        }
    }
    memcpy(out, e->s, sizeof e->s);
    return 0;
}

/* ---- pair lists ---- */

typedef struct EvalPairs {
    float *sa, *sb, *lab;  /* (n, NO) */
    size_t n, cap;
} EvalPairs;

static void ep_add(EvalPairs *p, const float *sa, const float *sb, const float *lab) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 256;
        p->sa = xrealloc(p->sa, p->cap * NO * sizeof(float));
        p->sb = xrealloc(p->sb, p->cap * NO * sizeof(float));
        p->lab = xrealloc(p->lab, p->cap * NO * sizeof(float));
    }
    memcpy(p->sa + p->n * NO, sa, NO * sizeof(float));
    memcpy(p->sb + p->n * NO, sb, NO * sizeof(float));
    memcpy(p->lab + p->n * NO, lab, NO * sizeof(float));
    p->n++;
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

static int eval_file(RewardCkpt *c, Store *st, const EvalOptions *o, EvalPairs *ep,
                     ScoreMap *map, Err *err) {
    FILE *f = fopen(o->pairs_file, "r");
    if (!f)
        return err_set(err, ERR_NOTFOUND, "%s: cannot open the pairs file", o->pairs_file);
    char *base = dir_of(o->pairs_file);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    size_t total = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (o->cancelled && o->cancelled(o->user)) {
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
        json_t *pj = json_object_get(j, "prompt");
        json_t *lj = json_object_get(j, "label");
        const char *aspect = json_string_value(json_object_get(j, "aspect"));
        if (!pos || !neg) {
            rc = err_set(err, ERR_FORMAT, "%s:%d: \"img_pos\" and \"img_neg\" must be image "
                         "paths (strings)", o->pairs_file, lineno);
            json_decref(j);
            break;
        }
        if (lj && !json_is_number(lj)) {
            rc = err_set(err, ERR_FORMAT, "%s:%d: \"label\" must be a number in 0..1",
                         o->pairs_file, lineno);
            json_decref(j);
            break;
        }
        double label = lj ? json_number_value(lj) : 1.0;
        if (!(label >= 0 && label <= 1)) {
            rc = err_set(err, ERR_FORMAT, "%s:%d: \"label\" %g is not in 0..1", o->pairs_file,
                         lineno, label);
            json_decref(j);
            break;
        }
        /* the prompt: a prompt_id of the store (ext id), else the text itself */
        char *prompt = NULL;
        if (json_is_string(pj)) {
            const char *ptxt = json_string_value(pj);
            StorePrompt sp = {0};
            if (st && store_prompt_by_ext(st, ptxt, &sp, NULL) == 0) {
                prompt = xstrdup(sp.text);
                store_prompt_deinit(&sp);
            } else {
                prompt = xstrdup(ptxt);
            }
        } else if (json_is_integer(pj)) {
            char id[32];
            snprintf(id, sizeof id, "%lld", (long long)json_integer_value(pj));
            StorePrompt sp = {0};
            prompt = xstrdup(st && store_prompt_by_ext(st, id, &sp, NULL) == 0 ? sp.text : id);
            store_prompt_deinit(&sp);
        } else {
            prompt = xstrdup("");
        }
        char *pa = resolve_near(base, pos), *pb = resolve_near(base, neg);
        float sa[NO], sb[NO], lab[NO];
        rc = score_cached(c, st, map, pa, NULL, prompt, sa, err);
        if (!rc)
            rc = score_cached(c, st, map, pb, NULL, prompt, sb, err);
        if (rc)
            err_prefix(err, "%s:%d", o->pairs_file, lineno);
        free(pa);
        free(pb);
        free(prompt);
        if (rc) {
            json_decref(j);
            break;
        }
        float y = label > 0.5 ? 1.0f : label < 0.5 ? 0.0f : 0.5f;
        int head = -1;
        if (aspect && *aspect)
            for (int h = 0; h < NH; h++)
                if (strcmp(aspect, train_head_names[h]) == 0)
                    head = h;
        for (int k = 0; k < NO; k++)
            lab[k] = (head < 0 || k == head) ? y : 0.5f;
        ep_add(ep, sa, sb, lab);
        json_decref(j);
        total++;
        if (o->progress)
            o->progress(o->user, (double)total, 0, "pairs");
    }
    free(line);
    free(base);
    fclose(f);
    return rc;
}

static int eval_store(RewardCkpt *c, Store *st, const EvalOptions *o, EvalPairs *ep,
                      ScoreMap *map, Err *err) {
    StoreRating *r = NULL;
    size_t nr = 0;
    int rc = store_ratings_all(st, &r, &nr, err);
    if (rc)
        return rc;
    PairsMeans pm;
    pairs_means_init(&pm, r, nr, NH, 0);
    free(r);
    Pair *p = NULL;
    size_t np = 0;
    pairs_derive(&pm, o->min_rating_diff, PAIRS_PER_ASPECT, &p, &np);
    TrainPair *tp = NULL;
    size_t nt = 0;
    train_pairs_group(p, np, &tp, &nt);
    free(p);
    /* the checkpoint's split, over the prompts of the paired images */
    uint8_t *is_val = NULL;
    int want = o->split && strcmp(o->split, "val") == 0    ? 1
               : o->split && strcmp(o->split, "train") == 0 ? 0
                                                           : -1;
    if (want >= 0) {
        int64_t *pid = xmalloc((2 * nt + 1) * sizeof *pid);
        for (size_t i = 0; i < nt; i++)
            pid[2 * i] = pid[2 * i + 1] = tp[i].prompt_id;
        is_val = xmalloc(2 * nt + 1);
        train_split_prompts(pid, 2 * nt, c->cfg.val_fraction, c->cfg.seed, is_val);
        free(pid);
    }
    for (size_t i = 0; i < nt && rc == 0; i++) {
        if (want >= 0 && is_val[2 * i] != want)
            continue;
        if (o->cancelled && o->cancelled(o->user)) {
            rc = err_set(err, ERR_CANCELLED, "evaluation cancelled");
            break;
        }
        float s[2][NO];
        int64_t ids[2] = {tp[i].img_a, tp[i].img_b};
        for (int k = 0; k < 2 && rc == 0; k++) {
            StoreImage im = {0};
            if ((rc = store_image_get(st, ids[k], &im, err)))
                break;
            StorePrompt sp = {0};
            if (im.prompt_id)
                store_prompt_get(st, im.prompt_id, &sp, NULL);
            char *path = store_path_resolve(st, im.path);
            rc = score_cached(c, st, map, path, im.sha256, sp.text ? sp.text : "", s[k], err);
            free(path);
            store_prompt_deinit(&sp);
            store_image_deinit(&im);
        }
        if (rc)
            break;
        float lab[NO];
        for (int h = 0; h < NH; h++)
            lab[h] = tp[i].label[h];
        float y = tp[i].label_combined;
        lab[NH] = y > 0.5f ? 1.0f : y < 0.5f ? 0.0f : 0.5f;
        ep_add(ep, s[0], s[1], lab);
        if (o->progress)
            o->progress(o->user, (double)(i + 1), (double)nt, "pairs");
    }
    free(is_val);
    free(tp);
    pairs_means_deinit(&pm);
    return rc;
}

int train_eval(RewardCkpt *c, Store *st, const EvalOptions *o, EvalReport *out, Err *err) {
    memset(out, 0, sizeof *out);
    EvalPairs ep = {0};
    ScoreMap map = {0};
    int rc;
    if (o->pairs_file) {
        snprintf(out->source, sizeof out->source, "%s", o->pairs_file);
        rc = eval_file(c, st, o, &ep, &map, err);
    } else {
        if (!st)
            return err_set(err, ERR_USAGE, "evaluation without --pairs needs a store");
        snprintf(out->source, sizeof out->source, "ratings in %s (min diff %g, %s pairs)",
                 store_path(st), o->min_rating_diff, o->split ? o->split : "all");
        rc = eval_store(c, st, o, &ep, &map, err);
    }
    if (rc == 0) {
        for (int k = 0; k < NO && ep.n > 0; k++)
            evalrm_pairs_strided(ep.sa + k, ep.sb + k, NO, ep.lab + k, NO, ep.n, &out->st[k]);
        out->n_pairs = ep.n;
        out->n_images = map.n;
    }
    free(ep.sa);
    free(ep.sb);
    free(ep.lab);
    map_free(&map);
    return rc;
}
