/* store_ab — blind A/B comparison sets. See store_ab.h. */
#include "store_ab.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

static const char *const choice_names[] = {"", "left", "right", "tie"};

const char *store_ab_choice_name(StoreAbChoice c) {
    return c >= STORE_AB_NONE && c <= STORE_AB_TIE ? choice_names[c] : "";
}

static StoreAbChoice choice_parse(const char *s) {
    for (int c = STORE_AB_LEFT; c <= STORE_AB_TIE; c++)
        if (s && strcmp(s, choice_names[c]) == 0)
            return (StoreAbChoice)c;
    return STORE_AB_NONE;
}

/* splitmix64: the order's random numbers (fixed, so a seed gives the same order everywhere) */
static uint64_t mix_next(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* LEFT[i] = 1 for exactly n / 2 items, shuffled (Fisher–Yates) from SEED. */
static void draw_sides(uint64_t seed, size_t n, unsigned char *left) {
    for (size_t i = 0; i < n; i++)
        left[i] = i < n / 2;
    uint64_t x = seed;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(mix_next(&x) % i);
        unsigned char t = left[i - 1];
        left[i - 1] = left[j];
        left[j] = t;
    }
}

int store_ab_set_create(Store *st, const char *name, int64_t run_id, uint64_t seed,
                        const StoreAbItemNew *items, size_t n, int64_t *set_id, Err *err) {
    if (!name || !*name)
        return err_set(err, ERR_USAGE, "A/B set: the name is empty; give one");
    if (n == 0)
        return err_set(err, ERR_USAGE, "A/B set %s: no image pairs to compare", name);
    for (size_t i = 0; i < n; i++)
        if (items[i].image_a == items[i].image_b)
            return err_set(err, ERR_USAGE, "A/B set %s: item %zu shows image #%lld on both "
                           "sides", name, i + 1, (long long)items[i].image_a);
    unsigned char *left = xmalloc(n);
    draw_sides(seed, n, left);
    int rc = store_begin(st, err);
    if (rc) {
        free(left);
        return rc;
    }
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO ab_sets(name, run_id, seed, created)"
                                     " VALUES (?1, ?2, ?3, ?4)", err);
    if (!s) {
        rc = ERR_DB;
        goto fail;
    }
    store_bind_text(s, 1, name);
    if (run_id > 0)
        sqlite3_bind_int64(s, 2, run_id);
    else
        sqlite3_bind_null(s, 2);
    sqlite3_bind_int64(s, 3, (int64_t)seed);
    sqlite3_bind_double(s, 4, base_wall());
    if ((rc = store_step_done(st, s, "add A/B set", err))) {
        if (rc == ERR_CONFLICT)
            err_set(err, ERR_CONFLICT, "A/B set %s: %s", name,
                    run_id > 0 ? "a set of that name exists, or there is no such run"
                               : "a set of that name exists; choose another name");
        goto fail;
    }
    int64_t sid = sqlite3_last_insert_rowid(st->db);
    for (size_t i = 0; i < n; i++) {
        const StoreAbItemNew *it = &items[i];
        /* left[i]: the adapter's image (or A when unknown) on the left */
        int a_left = it->adapter == 1 ? !left[i] : left[i];
        s = store_stmt(st, "INSERT INTO ab_items(set_id, position, image_a, image_b, adapter,"
                           " a_left) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", err);
        if (!s) {
            rc = ERR_DB;
            goto fail;
        }
        sqlite3_bind_int64(s, 1, sid);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sqlite3_bind_int64(s, 3, it->image_a);
        sqlite3_bind_int64(s, 4, it->image_b);
        if (it->adapter == 0 || it->adapter == 1)
            store_bind_text(s, 5, it->adapter ? "b" : "a");
        else
            sqlite3_bind_null(s, 5);
        sqlite3_bind_int(s, 6, a_left);
        if ((rc = store_step_done(st, s, "add A/B item", err))) {
            if (rc == ERR_CONFLICT)
                err_set(err, ERR_CONFLICT, "A/B set %s, item %zu: image #%lld or #%lld is not "
                        "in the store, or the pair is in the set twice", name, i + 1,
                        (long long)it->image_a, (long long)it->image_b);
            goto fail;
        }
        int64_t iid = sqlite3_last_insert_rowid(st->db);
        for (size_t k = 0; k < it->n_rewards; k++) {
            s = store_stmt(st, "INSERT OR REPLACE INTO ab_item_rewards(item_id, head, a, b)"
                               " VALUES (?1, ?2, ?3, ?4)", err);
            if (!s) {
                rc = ERR_DB;
                goto fail;
            }
            sqlite3_bind_int64(s, 1, iid);
            store_bind_text(s, 2, it->rewards[k].head);
            sqlite3_bind_double(s, 3, it->rewards[k].a);
            sqlite3_bind_double(s, 4, it->rewards[k].b);
            if ((rc = store_step_done(st, s, "add A/B reward scores", err)))
                goto fail;
        }
    }
    free(left);
    if ((rc = store_commit(st, err)))
        return rc;
    if (set_id)
        *set_id = sid;
    return 0;
fail:
    free(left);
    store_rollback(st);
    return rc;
}

/* ---- sets ---- */

#define SET_COLS                                                                               \
    "SELECT s.id, s.name, COALESCE(s.run_id, 0), COALESCE(r.name, ''), s.seed, s.created,"     \
    " (SELECT COUNT(*) FROM ab_items i WHERE i.set_id = s.id),"                                \
    " (SELECT COUNT(DISTINCT j.item_id) FROM ab_judgements j JOIN ab_items i"                  \
    "   ON i.id = j.item_id WHERE i.set_id = s.id),"                                           \
    " (SELECT COUNT(*) FROM ab_judgements j JOIN ab_items i ON i.id = j.item_id"               \
    "   WHERE i.set_id = s.id)"                                                                \
    " FROM ab_sets s LEFT JOIN runs r ON r.id = s.run_id"

static void set_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreAbSet *a = dst;
    a->id = sqlite3_column_int64(s, 0);
    a->name = store_col_text(s, 1);
    a->run_id = sqlite3_column_int64(s, 2);
    a->run_name = store_col_text(s, 3);
    a->seed = (uint64_t)sqlite3_column_int64(s, 4);
    a->created = sqlite3_column_double(s, 5);
    a->items = sqlite3_column_int64(s, 6);
    a->judged = sqlite3_column_int64(s, 7);
    a->judgements = sqlite3_column_int64(s, 8);
}

void store_ab_set_deinit(StoreAbSet *a) {
    if (!a)
        return;
    free(a->name);
    free(a->run_name);
    memset(a, 0, sizeof *a);
}

static void set_deinit(void *e) { store_ab_set_deinit(e); }

int store_ab_sets_list(Store *st, StoreAbSet **out, size_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(st, SET_COLS " ORDER BY s.created DESC, s.id DESC", err);
    return store_read_list(st, s, sizeof **out, set_row, NULL, set_deinit, out, n,
                           "list A/B sets", err);
}

int store_ab_set_find(Store *st, const char *name, StoreAbSet *out, Err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = store_stmt(st, SET_COLS " WHERE s.name = ?1", err);
    if (s)
        store_bind_text(s, 1, name);
    return store_read_one(st, s, set_row, NULL, out, "find A/B set", err,
                          "there is no A/B set '%s' in %s (see 'easel ab list')", name,
                          store_path(st));
}

void store_ab_sets_free(StoreAbSet *v, size_t n) {
    store_free_list(v, (long long)n, sizeof *v, set_deinit);
}

/* ---- what annotators see ---- */

static void view_row(sqlite3_stmt *s, void *dst, void *ctx) {
    const Store *st = ctx;
    StoreAbView *v = dst;
    v->item_id = sqlite3_column_int64(s, 0);
    v->position = sqlite3_column_int64(s, 1);
    v->left_image = sqlite3_column_int64(s, 2);
    v->right_image = sqlite3_column_int64(s, 3);
    char *l = store_col_text(s, 4), *r = store_col_text(s, 5);
    v->left_path = store_path_resolve(st, l ? l : "");
    v->right_path = store_path_resolve(st, r ? r : "");
    free(l);
    free(r);
    v->prompt = store_col_text(s, 6);
    if (!v->prompt)
        v->prompt = xstrdup("");
}

static void view_deinit(void *e) {
    StoreAbView *v = e;
    free(v->left_path);
    free(v->right_path);
    free(v->prompt);
}

int store_ab_views(Store *st, int64_t set_id, StoreAbView **out, size_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT i.id, i.position, l.id, r.id, l.path, r.path, COALESCE(p.text, '')"
        " FROM ab_items i"
        " JOIN images l ON l.id = CASE WHEN i.a_left THEN i.image_a ELSE i.image_b END"
        " JOIN images r ON r.id = CASE WHEN i.a_left THEN i.image_b ELSE i.image_a END"
        " LEFT JOIN prompts p ON p.id = COALESCE(l.prompt_id, r.prompt_id)"
        " WHERE i.set_id = ?1 ORDER BY i.position", err);
    if (s)
        sqlite3_bind_int64(s, 1, set_id);
    return store_read_list(st, s, sizeof **out, view_row, st, view_deinit, out, n,
                           "list A/B items", err);
}

void store_ab_views_free(StoreAbView *v, size_t n) {
    store_free_list(v, (long long)n, sizeof *v, view_deinit);
}

/* ---- judgements ---- */

int store_ab_judge(Store *st, int64_t item_id, int64_t annotator_id, const char *aspect,
                   StoreAbChoice choice, double seconds, Err *err) {
    if (choice < STORE_AB_LEFT || choice > STORE_AB_TIE)
        return err_set(err, ERR_USAGE, "A/B item #%lld: a judgement is left, right or tie",
                       (long long)item_id);
    if (!aspect)
        aspect = "";
    if (*aspect) {
        sqlite3_stmt *q = store_stmt(st, "SELECT id FROM aspects WHERE name = ?1", err);
        if (q)
            store_bind_text(q, 1, aspect);
        int64_t id;
        int rc = store_read_one(st, q, store_row_int64, NULL, &id, "find aspect", err,
                                "A/B judgement: no aspect '%s' in %s", aspect, store_path(st));
        if (rc)
            return rc == ERR_NOTFOUND ? ERR_USAGE : rc;
    }
    sqlite3_stmt *s = store_stmt(st,
        "INSERT INTO ab_judgements(item_id, annotator_id, aspect, choice, seconds, created,"
        " updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
        " ON CONFLICT(item_id, annotator_id, aspect) DO UPDATE SET choice = excluded.choice,"
        " seconds = excluded.seconds, updated = excluded.updated", err);
    if (!s)
        return ERR_DB;
    sqlite3_bind_int64(s, 1, item_id);
    sqlite3_bind_int64(s, 2, annotator_id);
    store_bind_text(s, 3, aspect);
    store_bind_text(s, 4, choice_names[choice]);
    if (seconds >= 0)
        sqlite3_bind_double(s, 5, seconds);
    else
        sqlite3_bind_null(s, 5);
    sqlite3_bind_double(s, 6, base_wall());
    int rc = store_step_done(st, s, "record A/B judgement", err);
    if (rc == ERR_CONFLICT)
        err_set(err, ERR_CONFLICT, "A/B judgement: there is no item #%lld or annotator #%lld "
                "in %s", (long long)item_id, (long long)annotator_id, store_path(st));
    return rc;
}

static void judgement_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreAbJudgement *j = dst;
    j->item_id = sqlite3_column_int64(s, 0);
    j->annotator_id = sqlite3_column_int64(s, 1);
    j->annotator = store_col_text(s, 2);
    j->aspect = store_col_text(s, 3);
    char *c = store_col_text(s, 4);
    j->choice = choice_parse(c);
    free(c);
    j->adapter_side = sqlite3_column_int(s, 5);
    j->updated = sqlite3_column_double(s, 6);
}

static void judgement_deinit(void *e) {
    StoreAbJudgement *j = e;
    free(j->annotator);
    free(j->aspect);
}

int store_ab_judgements(Store *st, int64_t set_id, int64_t annotator_id, StoreAbJudgement **out,
                        size_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT j.item_id, j.annotator_id, a.name, j.aspect, j.choice,"
        " CASE WHEN i.adapter IS NULL THEN -1"
        "      WHEN (i.adapter = 'a') = (i.a_left = 1) THEN 0 ELSE 1 END, j.updated"
        " FROM ab_judgements j JOIN ab_items i ON i.id = j.item_id"
        " JOIN annotators a ON a.id = j.annotator_id"
        " WHERE i.set_id = ?1 AND (?2 = 0 OR j.annotator_id = ?2)"
        " ORDER BY i.position, a.name, j.aspect", err);
    if (s) {
        sqlite3_bind_int64(s, 1, set_id);
        sqlite3_bind_int64(s, 2, annotator_id);
    }
    return store_read_list(st, s, sizeof **out, judgement_row, NULL, judgement_deinit, out, n,
                           "list A/B judgements", err);
}

void store_ab_judgements_free(StoreAbJudgement *v, size_t n) {
    store_free_list(v, (long long)n, sizeof *v, judgement_deinit);
}

static void reward_row(sqlite3_stmt *s, void *dst, void *ctx) {
    (void)ctx;
    StoreAbItemReward *r = dst;
    r->item_id = sqlite3_column_int64(s, 0);
    const unsigned char *h = sqlite3_column_text(s, 1);
    base_strlcpy(r->head, h ? (const char *)h : "", sizeof r->head);
    r->adapter_minus_other = sqlite3_column_double(s, 2);
}

int store_ab_rewards(Store *st, int64_t set_id, StoreAbItemReward **out, size_t *n, Err *err) {
    sqlite3_stmt *s = store_stmt(st,
        "SELECT r.item_id, r.head, CASE WHEN i.adapter = 'a' THEN r.a - r.b ELSE r.b - r.a END"
        " FROM ab_item_rewards r JOIN ab_items i ON i.id = r.item_id"
        " WHERE i.set_id = ?1 AND i.adapter IS NOT NULL ORDER BY i.position, r.head", err);
    if (s)
        sqlite3_bind_int64(s, 1, set_id);
    return store_read_list(st, s, sizeof **out, reward_row, NULL, NULL, out, n,
                           "list A/B reward scores", err);
}
