/* train_data — the data steps of training: the prompt split, pair labels, and the store's
 * ratings as per-image means (train_means_load, the one step here that reads the store).
 * See train.h.
 *
 * The split orders the distinct prompt ids by a keyed hash of (seed, id) and holds out the
 * first ones. That is deterministic from the seed, independent of input order, and stable:
 * adding prompts to a workspace moves no existing prompt across the split unless the count
 * of held-out prompts changes.
 */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "model_reward.h"
#include "store_catalog.h"
#include "store_ratings.h"
#include "train_int.h"

_Static_assert(REWARD_N_HEADS == TRAIN_N_HEADS, "head counts of model and training differ");

const char *train_output_name(int k) {
    ASSERT(k >= 0 && k <= TRAIN_N_HEADS);
    return k < TRAIN_N_HEADS ? reward_head_names[k] : "combined";
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

typedef struct Keyed {
    uint64_t key;
    int64_t id;
} Keyed;

static int cmp_keyed(const void *a, const void *b) {
    const Keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

size_t train_split_prompts(const int64_t *prompt_ids, size_t n, double val_fraction,
                           uint64_t seed, uint8_t *is_val) {
    memset(is_val, 0, n);
    if (n == 0)
        return 0;
    int64_t *ids = xmalloc(n * sizeof *ids);
    memcpy(ids, prompt_ids, n * sizeof *ids);
    qsort(ids, n, sizeof *ids, cmp_i64);
    size_t nd = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || ids[i] != ids[i - 1])
            ids[nd++] = ids[i];
    size_t n_val = (size_t)llround(val_fraction * (double)nd);
    if (val_fraction > 0 && n_val == 0 && nd >= 2)
        n_val = 1;
    if (n_val >= nd)
        n_val = nd > 1 ? nd - 1 : 0;
    Keyed *k = xmalloc(nd * sizeof *k);
    for (size_t i = 0; i < nd; i++) {
        k[i].id = ids[i];
        k[i].key = mix64(mix64(seed) ^ (uint64_t)ids[i]);
    }
    qsort(k, nd, sizeof *k, cmp_keyed);
    int64_t *held = xmalloc((n_val ? n_val : 1) * sizeof *held);
    for (size_t i = 0; i < n_val; i++)
        held[i] = k[i].id;
    qsort(held, n_val, sizeof *held, cmp_i64);
    for (size_t i = 0; i < n; i++)
        is_val[i] = n_val && bsearch(&prompt_ids[i], held, n_val, sizeof *held, cmp_i64) != NULL;
    free(held);
    free(k);
    free(ids);
    return n_val;
}

static int cmp_tpair(const void *a, const void *b) {
    const TrainPair *x = a, *y = b;
    if (x->prompt_id != y->prompt_id)
        return x->prompt_id < y->prompt_id ? -1 : 1;
    if (x->img_a != y->img_a)
        return x->img_a < y->img_a ? -1 : 1;
    return x->img_b < y->img_b ? -1 : x->img_b > y->img_b;
}

void train_pairs_group(const Pair *p, size_t n, TrainPair **out, size_t *n_out) {
    TrainPair *v = xmalloc((n ? n : 1) * sizeof *v);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].aspect != PAIRS_COMBINED && (p[i].aspect < 0 || p[i].aspect >= TRAIN_N_HEADS))
            continue;
        TrainPair t = {0};
        t.prompt_id = p[i].prompt_id;
        t.img_a = p[i].img_pos < p[i].img_neg ? p[i].img_pos : p[i].img_neg;
        t.img_b = p[i].img_pos < p[i].img_neg ? p[i].img_neg : p[i].img_pos;
        for (int h = 0; h < TRAIN_N_HEADS; h++)
            t.label[h] = 0.5f;
        t.label_overall = 0.5f;
        /* img_pos is always the preferred image (pairs.h): label 1 when it is img_a */
        float y = p[i].label >= 0.5 ? (p[i].img_pos == t.img_a ? 1.0f : 0.0f)
                                    : (p[i].img_pos == t.img_a ? 0.0f : 1.0f);
        if (p[i].aspect == PAIRS_COMBINED)
            t.label_overall = y;
        else
            t.label[p[i].aspect] = y;
        v[len++] = t;
    }
    qsort(v, len, sizeof *v, cmp_tpair);
    /* merge entries of the same image pair */
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (o > 0 && cmp_tpair(&v[o - 1], &v[i]) == 0) {
            for (int h = 0; h < TRAIN_N_HEADS; h++)
                if (v[i].label[h] != 0.5f)
                    v[o - 1].label[h] = v[i].label[h];
            if (v[i].label_overall != 0.5f)
                v[o - 1].label_overall = v[i].label_overall;
        } else {
            v[o++] = v[i];
        }
    }
    /* a pair no head has a preference on trains nothing */
    size_t kept = 0;
    for (size_t i = 0; i < o; i++) {
        int any = 0;
        for (int h = 0; h < TRAIN_N_HEADS; h++)
            any |= v[i].label[h] != 0.5f;
        if (any)
            v[kept++] = v[i];
    }
    o = kept;
    for (size_t i = 0; i < o; i++) {
        float s = 0;
        for (int h = 0; h < TRAIN_N_HEADS; h++)
            s += v[i].label[h];
        v[i].label_combined = s / TRAIN_N_HEADS;
    }
    *out = v;
    *n_out = o;
}

/* ---- unreadable images ---- */

int train_err_is_unreadable(int code) {
    return code == ERR_IO || code == ERR_NOTFOUND || code == ERR_FORMAT || code == ERR_DENIED;
}

void train_skipped_add(TrainSkipped *s, const char *name, const char *reason) {
    if (s->n < TRAIN_SKIP_NAMES)
        base_strlcpy(s->names[s->n], name, sizeof s->names[s->n]);
    if (s->n == 0 && reason)
        base_strlcpy(s->reason, reason, sizeof s->reason);
    s->n++;
}

void train_skipped_text(const TrainSkipped *s, char *buf, size_t n) {
    if (!n)
        return;
    buf[0] = '\0';
    if (s->n == 0)
        return;
    size_t o = (size_t)snprintf(buf, n, "skipped %zu unreadable image%s (", s->n,
                                s->n == 1 ? "" : "s");
    size_t shown = s->n < TRAIN_SKIP_NAMES ? s->n : TRAIN_SKIP_NAMES;
    for (size_t i = 0; i < shown && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", s->names[i]);
    if (o < n && s->n > shown)
        o += (size_t)snprintf(buf + o, n - o, " and %zu more", s->n - shown);
    if (o < n)
        snprintf(buf + o, n - o, ")%s%s", s->reason[0] ? ": " : "", s->reason);
}

int train_means_load(Store *st, int64_t annotator_id, PairsMeans *out, Err *err) {
    memset(out, 0, sizeof *out);
    StoreAspect *asp = NULL;
    size_t n_asp = 0;
    int rc = store_aspects_list(st, &asp, &n_asp, err);
    if (rc)
        return rc;
    store_aspects_free(asp, n_asp);
    StoreRating *r = NULL;
    size_t nr = 0;
    if ((rc = store_ratings_all(st, &r, &nr, err)))
        return rc;
    int n = n_asp > TRAIN_N_HEADS ? (int)n_asp : TRAIN_N_HEADS;
    pairs_means_init(out, r, nr, n, annotator_id);
    free(r);
    return 0;
}
