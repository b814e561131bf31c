/* ab_eval — A/B sets from tune-eval runs, and their results. See ab_eval.h. */
#include "ab_eval.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fmt_csv.h"
#include "store_ab.h"
#include "store_catalog.h"
#include "store_runs.h"

/* ---- making a set ---- */

/* The store's image id of PATH as scores.csv gives it: relative to the directory the
 * evaluation ran in (tried from here) or to the store's folder. */
static int64_t image_of(Store *st, const char *path) {
    StoreImage im;
    Err e = {0};
    char *stored = store_path_to_stored(st, path);
    int rc = store_image_by_path(st, stored, &im, &e);
    free(stored);
    if (rc && path[0] != '/')
        rc = store_image_by_path(st, path, &im, &e);
    if (rc)
        return 0;
    int64_t id = im.id;
    store_image_deinit(&im);
    return id;
}

int ab_from_eval(Store *st, const char *name, const char *run, uint64_t seed, int64_t *set_id,
                 size_t *n_items, Err *err) {
    StoreRun r = {0};
    CsvTable t = {0};
    StoreAbItemNew *items = NULL;
    StoreAbReward *rewards = NULL;
    char *csv = NULL;
    size_t n = 0;
    int rc = store_run_find(st, run, &r, err);
    if (rc)
        return rc;
    if (strcmp(r.kind, "tune-eval") != 0) {
        rc = err_set(err, ERR_USAGE, "run %s is a %s run, not a tune-eval run (an A/B set is "
                     "made from 'easel tune-eval')", r.name, r.kind);
        goto out;
    }
    if (!r.output || !*r.output) {
        rc = err_set(err, ERR_USAGE, "tune-eval run %s has no output folder", r.name);
        goto out;
    }
    csv = xasprintf("%s/scores.csv", r.output);
    if ((rc = fmt_csv_read(csv, &t, err))) {
        err_prefix(err, "A/B set from tune-eval run %s (state %s; a finished run writes it)",
                   r.name, r.state);
        goto out;
    }
    const CsvRow *hdr = t.n_rows ? &t.rows[0] : NULL;
    int c_id = hdr ? fmt_csv_column(hdr, "prompt_id") : -1;
    int c_seed = hdr ? fmt_csv_column(hdr, "seed") : -1;
    int c_side = hdr ? fmt_csv_column(hdr, "side") : -1;
    int c_path = hdr ? fmt_csv_column(hdr, "path") : -1;
    if (c_id < 0 || c_seed < 0 || c_side < 0 || c_path < 0) {
        rc = err_set(err, ERR_FORMAT, "%s:1: not a tune-eval scores.csv (prompt_id, seed, side, "
                     "path columns)", csv);
        goto out;
    }
    /* the heads: every column after path */
    size_t first_head = (size_t)c_path + 1, n_heads = hdr->n > first_head ? hdr->n - first_head
                                                                           : 0;
    items = xcalloc(t.n_rows, sizeof *items);
    rewards = xcalloc(t.n_rows * (n_heads ? n_heads : 1), sizeof *rewards);
    const CsvRow *pending = NULL; /* a base row waiting for its adapter row */
    for (size_t i = 1; i < t.n_rows; i++) {
        const CsvRow *row = &t.rows[i];
        if (row->n != hdr->n) {
            rc = err_set(err, ERR_FORMAT, "%s:%ld: %zu fields, the header has %zu", csv,
                         row->line, row->n, hdr->n);
            goto out;
        }
        const char *side = row->field[c_side];
        if (strcmp(side, "base") == 0) {
            pending = row;
            continue;
        }
        if (strcmp(side, "adapter") != 0) {
            rc = err_set(err, ERR_FORMAT, "%s:%ld: side '%s' (expected base or adapter)", csv,
                         row->line, side);
            goto out;
        }
        if (!pending || strcmp(pending->field[c_id], row->field[c_id]) != 0 ||
            strcmp(pending->field[c_seed], row->field[c_seed]) != 0) {
            rc = err_set(err, ERR_FORMAT, "%s:%ld: the adapter's image of prompt %s seed %s "
                         "has no base image on the line before", csv, row->line,
                         row->field[c_id], row->field[c_seed]);
            goto out;
        }
        const CsvRow *rows2[2] = {pending, row};
        int64_t ids[2];
        for (int k = 0; k < 2; k++) {
            if (!(ids[k] = image_of(st, rows2[k]->field[c_path]))) {
                rc = err_set(err, ERR_FORMAT, "%s:%ld: image %s is not in the store %s (add it "
                             "with 'easel import images', or run the command in the folder "
                             "the evaluation ran in)", csv, rows2[k]->line,
                             rows2[k]->field[c_path], store_path(st));
                goto out;
            }
        }
        StoreAbItemNew *it = &items[n];
        it->image_a = ids[0];
        it->image_b = ids[1];
        it->adapter = 1;
        it->rewards = rewards + n * n_heads;
        for (size_t h = 0; h < n_heads; h++) {
            StoreAbReward *w = &rewards[n * n_heads + h];
            base_strlcpy(w->head, hdr->field[first_head + h], sizeof w->head);
            char *e1, *e2;
            w->a = strtod(pending->field[first_head + h], &e1);
            w->b = strtod(row->field[first_head + h], &e2);
            if (*e1 || *e2 || e1 == pending->field[first_head + h] ||
                e2 == row->field[first_head + h]) {
                rc = err_set(err, ERR_FORMAT, "%s:%ld: %s score is not a number", csv,
                             *e1 ? pending->line : row->line, w->head);
                goto out;
            }
        }
        it->n_rewards = n_heads;
        n++;
        pending = NULL;
    }
    if (n == 0) {
        rc = err_set(err, ERR_FORMAT, "%s: no (prompt, seed) with both images", csv);
        goto out;
    }
    if ((rc = store_ab_set_create(st, name, r.id, seed, items, n, set_id, err)))
        goto out;
    if (n_items)
        *n_items = n;
out:
    free(items);
    free(rewards);
    free(csv);
    fmt_csv_deinit(&t);
    store_run_deinit(&r);
    return rc;
}

/* ---- results ---- */

void ab_wilson(double wins, long n, double *lo, double *hi) {
    const double z = 1.959963984540054;
    if (n <= 0) {
        *lo = *hi = NAN;
        return;
    }
    double nn = (double)n, p = wins / nn, z2 = z * z;
    double den = 1 + z2 / nn;
    double centre = (p + z2 / (2 * nn)) / den;
    double half = z * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / den;
    *lo = fmax(0.0, centre - half);
    *hi = fmin(1.0, centre + half);
}

static void stat_add(AbStat *s, double win) {
    s->n++;
    s->wins += win;
}

static void stat_finish(AbStat *s) {
    s->rate = s->n ? s->wins / (double)s->n : NAN;
    ab_wilson(s->wins, s->n, &s->lo, &s->hi);
}

static int row_of(const AbResults *r, const char *aspect) {
    for (size_t i = 0; i < r->n_rows; i++)
        if (strcmp(r->rows[i].aspect, aspect) == 0)
            return (int)i;
    return -1;
}

int ab_results(Store *st, const char *name, AbResults *r, Err *err) {
    memset(r, 0, sizeof *r);
    StoreAbSet set;
    StoreAspect *asp = NULL;
    StoreAbJudgement *j = NULL;
    StoreAbItemReward *rw = NULL;
    size_t na = 0, nj = 0, nr = 0;
    int rc = store_ab_set_find(st, name, &set, err);
    if (rc)
        return rc;
    r->set = xstrdup(set.name);
    r->run = xstrdup(set.run_name);
    r->items = set.items;
    if ((rc = store_aspects_list(st, &asp, &na, err)) ||
        (rc = store_ab_judgements(st, set.id, 0, &j, &nj, err)) ||
        (rc = store_ab_rewards(st, set.id, &rw, &nr, err)))
        goto out;
    /* annotators (the judgements come in name order within an item: collect sorted) */
    for (size_t i = 0; i < nj; i++) {
        size_t k = 0;
        while (k < r->n_annotators && strcmp(r->annotators[k], j[i].annotator) != 0)
            k++;
        if (k == r->n_annotators) {
            r->annotators = xrealloc(r->annotators, (k + 1) * sizeof *r->annotators);
            size_t at = 0;
            while (at < k && strcmp(r->annotators[at], j[i].annotator) < 0)
                at++;
            memmove(r->annotators + at + 1, r->annotators + at, (k - at) * sizeof(char *));
            r->annotators[at] = xstrdup(j[i].annotator);
            r->n_annotators++;
        }
    }
    r->n_rows = na + 1;
    r->rows = xcalloc(r->n_rows, sizeof *r->rows);
    for (size_t i = 0; i < r->n_rows; i++) {
        r->rows[i].aspect = xstrdup(i < na ? asp[i].name : "");
        r->rows[i].per = xcalloc(r->n_annotators ? r->n_annotators : 1, sizeof(AbStat));
    }
    for (size_t i = 0; i < nj; i++) {
        const StoreAbJudgement *x = &j[i];
        r->judgements++;
        if (x->adapter_side < 0) {
            r->unknown++;
            continue;
        }
        int ri = row_of(r, x->aspect);
        if (ri < 0)
            continue; /* an aspect removed since: not reported */
        AbRow *row = &r->rows[ri];
        int chose_adapter = (x->choice == STORE_AB_LEFT && x->adapter_side == 0) ||
                            (x->choice == STORE_AB_RIGHT && x->adapter_side == 1);
        double win = x->choice == STORE_AB_TIE ? 0.5 : chose_adapter ? 1.0 : 0.0;
        stat_add(&row->pooled, win);
        size_t a = 0;
        while (a < r->n_annotators && strcmp(r->annotators[a], x->annotator) != 0)
            a++;
        stat_add(&row->per[a], win);
        if (x->choice == STORE_AB_TIE)
            continue;
        const char *head = x->aspect[0] ? x->aspect : "combined";
        for (size_t k = 0; k < nr; k++) {
            if (rw[k].item_id != x->item_id || strcmp(rw[k].head, head) != 0)
                continue;
            if (rw[k].adapter_minus_other != 0) {
                row->agree_n++;
                row->agree += chose_adapter == (rw[k].adapter_minus_other > 0);
            }
            break;
        }
    }
    for (size_t i = 0; i < r->n_rows; i++) {
        stat_finish(&r->rows[i].pooled);
        for (size_t a = 0; a < r->n_annotators; a++)
            stat_finish(&r->rows[i].per[a]);
    }
out:
    store_ab_set_deinit(&set);
    store_aspects_free(asp, na);
    store_ab_judgements_free(j, nj);
    free(rw);
    return rc;
}

static const char *row_name(const AbRow *row) { return row->aspect[0] ? row->aspect : "overall"; }

static void print_stat(FILE *f, const char *aspect, const char *who, const AbStat *s,
                       const AbRow *agree) {
    fprintf(f, "%-10s %-12s %5ld", aspect, who, s->n);
    if (s->n)
        fprintf(f, " %8.1f%%  [%5.1f%%, %5.1f%%]", 100 * s->rate, 100 * s->lo, 100 * s->hi);
    else
        fprintf(f, " %9s  %16s", "-", "");
    if (agree && agree->agree_n)
        fprintf(f, "  %ld/%ld (%.0f%%)", agree->agree, agree->agree_n,
                100.0 * (double)agree->agree / (double)agree->agree_n);
    else if (agree)
        fprintf(f, "  -");
    fputc('\n', f);
}

void ab_results_print(FILE *f, const AbResults *r) {
    fprintf(f, "A/B set %s%s%s: %ld items, %ld judgements by %zu annotator%s\n", r->set,
            r->run[0] ? " from tune-eval run " : "", r->run, r->items, r->judgements,
            r->n_annotators, r->n_annotators == 1 ? "" : "s");
    fprintf(f, "%-10s %-12s %5s %9s  %-16s  %s\n", "aspect", "annotator", "n", "adapter",
            "95% interval", "reward model agrees");
    for (size_t i = 0; i < r->n_rows; i++) {
        const AbRow *row = &r->rows[i];
        if (!row->pooled.n)
            continue;
        print_stat(f, row_name(row), "(pooled)", &row->pooled, row);
        for (size_t a = 0; a < r->n_annotators; a++)
            if (row->per[a].n)
                print_stat(f, "", r->annotators[a], &row->per[a], NULL);
    }
    if (r->judgements == 0)
        fprintf(f, "no judgements yet: judge the set in the TUI ('easel ab judge %s')\n",
                r->set);
    if (r->unknown)
        fprintf(f, "%ld judgement%s on items with no known adapter side left out\n", r->unknown,
                r->unknown == 1 ? "" : "s");
    fprintf(f, "adapter: the adapter's human win rate (a win 1, a tie counted half, a loss 0)\n"
               "with a 95%% Wilson interval; pooled counts every annotator's judgements.\n"
               "reward model agrees: non-tie judgements where the human chose the side the\n"
               "reward model's head of that aspect (combined for overall) scores higher.\n");
}

static json_t *stat_json(const AbStat *s) {
    json_t *o = json_object();
    json_object_set_new(o, "n", json_integer(s->n));
    json_object_set_new(o, "wins", json_real(s->wins));
    json_object_set_new(o, "win_rate", s->n ? json_real(s->rate) : json_null());
    json_object_set_new(o, "ci95_low", s->n ? json_real(s->lo) : json_null());
    json_object_set_new(o, "ci95_high", s->n ? json_real(s->hi) : json_null());
    return o;
}

char *ab_results_json(const AbResults *r) {
    json_t *j = json_object();
    json_object_set_new(j, "set", json_string(r->set));
    json_object_set_new(j, "run", r->run[0] ? json_string(r->run) : json_null());
    json_object_set_new(j, "items", json_integer(r->items));
    json_object_set_new(j, "judgements", json_integer(r->judgements));
    json_object_set_new(j, "ties", json_string("counted as half a win"));
    json_object_set_new(j, "interval", json_string("wilson 95%"));
    json_t *as = json_object();
    for (size_t i = 0; i < r->n_rows; i++) {
        const AbRow *row = &r->rows[i];
        json_t *o = json_object();
        json_object_set_new(o, "pooled", stat_json(&row->pooled));
        json_t *per = json_object();
        for (size_t a = 0; a < r->n_annotators; a++)
            if (row->per[a].n)
                json_object_set_new(per, r->annotators[a], stat_json(&row->per[a]));
        json_object_set_new(o, "annotators", per);
        json_t *ag = json_object();
        json_object_set_new(ag, "head", json_string(row->aspect[0] ? row->aspect : "combined"));
        json_object_set_new(ag, "n", json_integer(row->agree_n));
        json_object_set_new(ag, "agree", json_integer(row->agree));
        json_object_set_new(ag, "rate", row->agree_n ? json_real((double)row->agree /
                                                                 (double)row->agree_n)
                                                     : json_null());
        json_object_set_new(o, "reward_agreement", ag);
        json_object_set_new(as, row_name(row), o);
    }
    json_object_set_new(j, "aspects", as);
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(j);
    char *out = xasprintf("%s\n", s ? s : "{}");
    free(s);
    return out;
}

void ab_results_deinit(AbResults *r) {
    if (!r)
        return;
    free(r->set);
    free(r->run);
    for (size_t a = 0; a < r->n_annotators; a++)
        free(r->annotators[a]);
    free(r->annotators);
    for (size_t i = 0; i < r->n_rows; i++) {
        free(r->rows[i].aspect);
        free(r->rows[i].per);
    }
    free(r->rows);
    memset(r, 0, sizeof *r);
}
