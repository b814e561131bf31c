/* tune_pairs_store — the store's ratings as a tuning run's pairs (tune_pairs_src.h), derived by
 * pairs.c per aspect, or on the combined score weighted as a reward model weighs its heads;
 * and a reward checkpoint's learned head weights. */
#include "tune_pairs_src.h"
#include "tune_pairs_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fmt_safetensors.h"
#include "pairs.h"
#include "store_catalog.h"
#include "store_ratings.h"

#define DIFF_SLACK 1e-9 /* as pairs.c: 7.5 - 7.0 is a difference of 0.5 */

/* The combined pairs of M with aspect weights P (n_aspects of them, >= 0): for two images of
 * one prompt, over the aspects rated on both, score = Σ p_k r_k / Σ p_k; the rule of
 * pairs_derive (|d| >= min_diff, d != 0). Aspects of weight 0 do not count. */
static void derive_weighted(const PairsMeans *m, const double *p, double min_diff, Pair **out,
                            size_t *n_out) {
    Pair *v = NULL;
    size_t n = 0, cap = 0;
    int na = m->n_aspects;
    for (size_t start = 0; start < m->n_images;) {
        size_t end = start;
        while (end < m->n_images && m->prompt_id[end] == m->prompt_id[start])
            end++;
        for (size_t a = start; a < end && m->prompt_id[start]; a++) {
            for (size_t b = a + 1; b < end; b++) {
                const double *ra = &m->mean[a * (size_t)na], *rb = &m->mean[b * (size_t)na];
                double sa = 0, sb = 0, sw = 0;
                for (int k = 0; k < na; k++) {
                    if (isnan(ra[k]) || isnan(rb[k]) || p[k] <= 0)
                        continue;
                    sa += p[k] * ra[k];
                    sb += p[k] * rb[k];
                    sw += p[k];
                }
                if (sw <= 0)
                    continue;
                sa /= sw;
                sb /= sw;
                double d = sa - sb;
                if (d == 0 || fabs(d) < min_diff - DIFF_SLACK)
                    continue;
                if (n == cap) {
                    cap = cap ? 2 * cap : 256;
                    v = xrealloc(v, cap * sizeof *v);
                }
                int a_wins = d > 0;
                v[n++] = (Pair){.prompt_id = m->prompt_id[a],
                                .img_pos = m->image_id[a_wins ? a : b],
                                .img_neg = m->image_id[a_wins ? b : a],
                                .aspect = PAIRS_COMBINED,
                                .label = 1.0,
                                .rating_pos = a_wins ? sa : sb,
                                .rating_neg = a_wins ? sb : sa,
                                .rating_diff = fabs(d)};
            }
        }
        start = end;
    }
    *out = v;
    *n_out = n;
}

void tune_head_softmax(const double w[TUNE_N_HEADS], double p[TUNE_N_HEADS]) {
    double mx = w[0];
    for (int i = 1; i < TUNE_N_HEADS; i++)
        mx = w[i] > mx ? w[i] : mx;
    double s = 0;
    for (int i = 0; i < TUNE_N_HEADS; i++)
        s += p[i] = exp(w[i] - mx);
    for (int i = 0; i < TUNE_N_HEADS; i++)
        p[i] /= s;
}

static int cmp_id(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The text of prompt ID: 0 and *text, or an error naming it. */
static int prompt_text(Store *st, int64_t id, char **text, Err *err) {
    StorePrompt sp;
    int rc = store_prompt_get(st, id, &sp, err);
    if (rc)
        return rc;
    if (!sp.text || !*sp.text) {
        rc = err_set(err, ERR_FORMAT,
                     "prompt %s (store id %lld) has rated images but no text to tune on; import "
                     "its prompts.csv (easel import prompts FILE)",
                     sp.ext_id ? sp.ext_id : "?", (long long)id);
        store_prompt_deinit(&sp);
        return rc;
    }
    *text = sp.text;
    sp.text = NULL;
    store_prompt_deinit(&sp);
    return 0;
}

int tune_pairs_from_store(Store *st, const char *aspect, const double *head_weights,
                          double min_diff, TunePairs *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (aspect && head_weights)
        return err_set(err, ERR_USAGE,
                       "pairs of one aspect (%s) take no head weights; give an aspect, or head "
                       "weights for the combined score",
                       aspect);
    if (!(min_diff >= 0) || !isfinite(min_diff))
        return err_set(err, ERR_USAGE, "the minimum rating difference must be a number >= 0");
    if (head_weights)
        for (int i = 0; i < TUNE_N_HEADS; i++)
            if (!isfinite(head_weights[i]))
                return err_set(err, ERR_FORMAT, "head weight %d is not a finite number", i);
    StoreAspect *asp = NULL;
    size_t n_asp = 0;
    int rc = store_aspects_list(st, &asp, &n_asp, err);
    if (rc)
        return rc;
    int pos = -1;
    if (aspect) {
        for (size_t k = 0; k < n_asp; k++)
            if (strcmp(asp[k].name, aspect) == 0)
                pos = asp[k].position;
        if (pos < 0) {
            char names[160] = "";
            for (size_t k = 0, o = 0; k < n_asp && o < sizeof names; k++)
                o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", k ? ", " : "",
                                      asp[k].name);
            rc = err_set(err, ERR_USAGE, "no aspect \"%s\" in this store (it has: %s)", aspect,
                         names);
            store_aspects_free(asp, n_asp);
            return rc;
        }
    }
    int na = (int)n_asp;
    store_aspects_free(asp, n_asp);
    StoreRating *r = NULL;
    size_t nr = 0;
    if ((rc = store_ratings_all(st, &r, &nr, err)))
        return rc;
    PairsMeans m;
    pairs_means_init(&m, r, nr, na, 0);
    free(r);
    Pair *p = NULL;
    size_t np = 0;
    if (aspect) {
        pairs_derive(&m, min_diff, PAIRS_PER_ASPECT, &p, &np);
        size_t k = 0;
        for (size_t i = 0; i < np; i++)
            if (p[i].aspect == pos)
                p[k++] = p[i];
        np = k;
    } else if (!head_weights) {
        pairs_derive(&m, min_diff, PAIRS_WITH_COMBINED, &p, &np);
    } else {
        double soft[TUNE_N_HEADS], *wk = xcalloc((size_t)na + 1, sizeof *wk);
        tune_head_softmax(head_weights, soft);
        for (int k = 0; k < na && k < TUNE_N_HEADS; k++)
            wk[k] = soft[k]; /* aspects past the reward model's heads weigh nothing */
        derive_weighted(&m, wk, min_diff, &p, &np);
        free(wk);
    }
    pairs_means_deinit(&m);
    if (np == 0) {
        free(p);
        if (aspect)
            return err_set(err, ERR_NOTFOUND,
                           "no pairs on %s: no two images of one prompt whose %s ratings differ "
                           "by %g or more; rate more images, or lower the minimum difference",
                           aspect, aspect, min_diff);
        return err_set(err, ERR_NOTFOUND,
                       "no pairs: no two images of one prompt whose combined ratings differ by "
                       "%g or more; rate more images, or lower the minimum difference",
                       min_diff);
    }

    /* the images: resolved as the store resolves them, each checked to decode */
    int64_t *ids = xmalloc(2 * np * sizeof *ids);
    size_t n_ids = 0;
    for (size_t i = 0; i < np; i++) {
        ids[n_ids++] = p[i].img_pos;
        ids[n_ids++] = p[i].img_neg;
    }
    qsort(ids, n_ids, sizeof *ids, cmp_id);
    size_t n_chk = 0;
    for (size_t i = 0; i < n_ids; i++)
        if (!n_chk || ids[n_chk - 1] != ids[i])
            ids[n_chk++] = ids[i];
    TuneImgCheck *chk = xcalloc(n_chk, sizeof *chk);
    for (size_t i = 0; i < n_chk && !rc; i++) {
        StoreImage img;
        if ((rc = store_image_get(st, ids[i], &img, err)))
            break;
        chk[i].path = store_path_resolve(st, img.path);
        store_image_deinit(&img);
    }
    if (!rc)
        tune_img_check_all(chk, n_chk);
    for (size_t i = 0; i < n_chk && !rc; i++) {
        if (chk[i].missing)
            rc = err_set(err, ERR_NOTFOUND,
                         "image %lld of the store is not on disk (%s); put it back, or retire it "
                         "(easel images retire) so that its ratings make no pairs",
                         (long long)ids[i], chk[i].path);
        else if (!chk[i].ok)
            rc = err_set(err, ERR_FORMAT, "image %lld of the store: %s; replace it, or retire "
                         "it", (long long)ids[i], chk[i].err.msg);
    }
    for (size_t i = 0; i < np && !rc; i++) {
        const int64_t *kw = bsearch(&p[i].img_pos, ids, n_chk, sizeof *ids, cmp_id);
        const int64_t *kl = bsearch(&p[i].img_neg, ids, n_chk, sizeof *ids, cmp_id);
        const char *pw = chk[kw - ids].path, *pl = chk[kl - ids].path;
        char *text = NULL;
        if (i == 0 || p[i].prompt_id != p[i - 1].prompt_id || !out->n) {
            if ((rc = prompt_text(st, p[i].prompt_id, &text, err)))
                break;
        } else {
            text = xstrdup(out->v[out->n - 1].prompt);
        }
        TunePair tp = {.prompt = text,
                       .path_w = (char *)pw,
                       .path_l = (char *)pl,
                       .image_w = p[i].img_pos,
                       .image_l = p[i].img_neg,
                       .weight = 1.0};
        tune_pairs_push(out, &tp);
        free(text);
    }
    if (rc)
        tune_pairs_free(out);
    for (size_t i = 0; i < n_chk; i++)
        free(chk[i].path);
    free(chk);
    free(ids);
    free(p);
    return rc;
}

int tune_reward_head_weights(const char *ckpt, double w[TUNE_N_HEADS], Err *err) {
    char *path = base_is_dir(ckpt) ? xasprintf("%s/model.safetensors", ckpt) : xstrdup(ckpt);
    Err e = {0};
    SafeTensors *sf = safetensors_open(path, &e);
    int rc;
    if (!sf) {
        rc = err_pass(err, &e, ERR_IO);
        if (base_is_dir(ckpt))
            err_prefix(err, "%s is not a reward checkpoint folder (best/, final/, "
                       "checkpoint-N/ of `easel train`)",
                       ckpt);
        free(path);
        return rc;
    }
    const StTensor *t = safetensors_find(sf, "head_weights");
    float f[TUNE_N_HEADS];
    if (!t || t->n_elem != TUNE_N_HEADS) {
        rc = err_set(err, ERR_FORMAT,
                     "%s: no head_weights tensor of %d values; is it a reward model (easel "
                     "train, or the original's multi-head reward model)?",
                     path, TUNE_N_HEADS);
    } else if (!(rc = safetensors_read_f32(sf, t, f, TUNE_N_HEADS, err))) {
        for (int i = 0; i < TUNE_N_HEADS && !rc; i++) {
            if (!isfinite(f[i]))
                rc = err_set(err, ERR_FORMAT, "%s: head_weights[%d] is not a finite number",
                             path, i);
            w[i] = f[i];
        }
    }
    safetensors_close(sf);
    free(path);
    return rc;
}
