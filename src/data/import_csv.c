/* import_csv — the CSV importers: prompts.csv, multihead_ratings.csv and both generation
 * metadata layouts. Each plans the whole file, then applies it in one transaction; see
 * import_int.h for the two phases and doc/formats.md for the columns.
 */
#include "import_int.h"
#include "identity.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fmt_csv.h"
#include "store_catalog.h"
#include "store_ratings.h"
#include "store_settings.h"
#include "trust.h"

static int check_width(ImportCtx *c, const CsvRow *hdr, const CsvRow *r) {
    if (r->n == hdr->n)
        return 0;
    import_problem(c, r->line,
                   "%zu fields, but the header has %zu (a field holding a comma must be quoted)",
                   r->n, hdr->n);
    return -1;
}

/* Check the header for duplicate names; import_problem for each. */
static void check_header_dups(ImportCtx *c, const CsvRow *hdr) {
    for (size_t i = 0; i < hdr->n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(hdr->field[i], hdr->field[j]) == 0 && hdr->field[i][0])
                import_problem(c, hdr->line,
                               "column \"%s\" appears twice in the header; rename or remove one",
                               hdr->field[i]);
}

static int row_is_empty(const CsvRow *r) {
    for (size_t i = 0; i < r->n; i++)
        if (!import_is_blank(r->field[i]))
            return 0;
    return 1;
}

/* ---- prompts.csv --------------------------------------------------------------------------- */

int import_csv_prompts(ImportCtx *c, const CsvTable *t, Err *err) {
    const CsvRow *hdr = &t->rows[0];
    int ci = fmt_csv_column(hdr, "prompt_id"), ct = fmt_csv_column(hdr, "prompt");
    check_header_dups(c, hdr);
    if (ci < 0 || ct < 0) {
        import_problem(c, hdr->line,
                       "the header must name the columns prompt_id and prompt "
                       "(e.g. \"prompt_id,prompt\")");
        return import_fail(c, ERR_FORMAT, err);
    }
    for (size_t i = 0; i < hdr->n; i++)
        if ((int)i != ci && (int)i != ct)
            import_warn(c, hdr->line, "column \"%s\" is not used", hdr->field[i]);
    ImportMap seen = {0}; /* ext → row index + 1 */
    size_t n_fill = 0;
    for (size_t r = 1; r < t->n_rows; r++) {
        const CsvRow *row = &t->rows[r];
        if (import_check_progress(c, r, t->n_rows - 1)) {
            import_map_free(&seen);
            return import_cancelled(c, err);
        }
        if (row_is_empty(row) || check_width(c, hdr, row))
            continue;
        c->rep->rows++;
        const char *ext = row->field[ci], *text = row->field[ct];
        if (import_is_blank(ext)) {
            import_problem(c, row->line, "prompt_id is empty; every prompt needs an id");
            continue;
        }
        if (import_is_blank(text)) {
            import_problem(c, row->line,
                           "prompt \"%s\" has no text; write the prompt or remove the row", ext);
            continue;
        }
        int64_t *prev = import_map_slot(&seen, ext, 0);
        if (prev) {
            const CsvRow *p = &t->rows[*prev - 1];
            if (strcmp(p->field[ct], text) != 0)
                import_problem(c, row->line,
                               "prompt_id \"%s\" appears again (line %ld) with a different text",
                               ext, p->line);
            continue;
        }
        *import_map_slot(&seen, ext, 1) = (int64_t)r + 1;
        StorePrompt sp;
        if (store_prompt_by_ext(c->st, ext, &sp, NULL) == 0) {
            if (!sp.text[0]) /* created by a ratings import: its text comes now */
                n_fill++;
            else if (strcmp(sp.text, text) != 0)
                import_problem(
                    c, row->line,
                    "prompt_id \"%s\" is already in the store with another text (\"%.60s\"); "
                    "an import never changes a prompt — give the new prompt a new id",
                    ext, sp.text);
            store_prompt_deinit(&sp);
        }
    }
    import_map_free(&seen);
    if (import_has_problems(c))
        return import_fail(c, ERR_FORMAT, err);
    int rc = import_begin(c, err);
    if (rc)
        return rc;
    int cancelled = 0;
    for (size_t r = 1; r < t->n_rows && !cancelled && !import_stopped(c); r++) {
        const CsvRow *row = &t->rows[r];
        if (row_is_empty(row))
            continue;
        int added = 0;
        Err e = {0};
        if (store_prompt_add(c->st, row->field[ci], row->field[ct], NULL, &added, &e))
            import_write_failed(c, row->line, "prompt_id", &e);
        c->rep->prompts_added += added;
        cancelled = import_progress(c, r, t->n_rows - 1);
    }
    rc = import_finish(c, cancelled, err);
    if (rc == 0)
        c->rep->prompts_filled = n_fill;
    return rc;
}

/* ---- multihead_ratings.csv ------------------------------------------------------------------ */

typedef struct RRow {
    long line;
    int64_t prompt_id; /* 0 = no prompt */
    ImportImg img;
    const char *annotator; /* borrowed from the table or the options */
    double *val;           /* (n_aspects) NAN = blank */
} RRow;

/* Where the columns are. */
typedef struct RCols {
    int prompt, image, annotator; /* -1 = absent */
    int *rating;                  /* (n_aspects) column of <aspect>_rating, -1 = absent */
    const char *dflt_annotator;   /* --annotator, else $USER, else NULL */
    int no_annotator_said;        /* that problem is reported once */
} RCols;

static void ratings_columns(ImportCtx *c, const CsvRow *hdr, RCols *rc) {
    check_header_dups(c, hdr);
    rc->prompt = fmt_csv_column(hdr, "prompt_id");
    rc->image = fmt_csv_column(hdr, "image_path");
    rc->annotator = fmt_csv_column(hdr, "annotator");
    rc->rating = xmalloc((c->n_aspects ? c->n_aspects : 1) * sizeof *rc->rating);
    int n_rating_cols = 0;
    for (size_t k = 0; k < c->n_aspects; k++) {
        char *name = xasprintf("%s_rating", c->aspects[k].name);
        rc->rating[k] = fmt_csv_column(hdr, name);
        n_rating_cols += rc->rating[k] >= 0;
        free(name);
    }
    if (rc->prompt < 0 || rc->image < 0)
        import_problem(c, hdr->line,
                       "the header must name the columns prompt_id and image_path "
                       "(e.g. \"prompt_id,image_path,spatial_rating,...\")");
    else if (n_rating_cols == 0) {
        /* the columns this store takes, from its aspects table */
        char cols[400] = "";
        for (size_t k = 0, o = 0; k < c->n_aspects && o < sizeof cols; k++)
            o += (size_t)snprintf(cols + o, sizeof cols - o, "%s%s_rating", k ? "," : "",
                                  c->aspects[k].name);
        import_problem(c, hdr->line, "no rating columns: name them <aspect>_rating, e.g. %s",
                       cols);
    }
    for (size_t i = 0; i < hdr->n; i++) {
        int used = (int)i == rc->prompt || (int)i == rc->image || (int)i == rc->annotator;
        for (size_t k = 0; k < c->n_aspects; k++)
            used |= rc->rating[k] == (int)i;
        if (used)
            continue;
        size_t len = strlen(hdr->field[i]);
        if (len > 7 && strcmp(hdr->field[i] + len - 7, "_rating") == 0)
            import_problem(c, hdr->line, "column \"%s\": there is no aspect \"%.*s\" in this store",
                           hdr->field[i], (int)(len - 7), hdr->field[i]);
        else
            import_warn(c, hdr->line, "column \"%s\" is not used", hdr->field[i]);
    }
    rc->dflt_annotator = identity_annotator(c->opts ? c->opts->annotator : NULL);
    if (rc->dflt_annotator && !*rc->dflt_annotator)
        rc->dflt_annotator = NULL;
}

/* Check one data row into *RR. Returns 0, or -1 after recording its problems. */
static int ratings_plan_row(ImportCtx *c, RCols *rc, const CsvRow *row, RRow *rr) {
    memset(rr, 0, sizeof *rr);
    rr->line = row->line;
    const char *ext = row->field[rc->prompt], *path = row->field[rc->image];
    int bad = 0;
    if (import_is_blank(path)) {
        import_problem(c, row->line,
                       "image_path is empty; give the image file (or remove the row)");
        bad = 1;
    }
    if (!import_is_blank(ext) && !(rr->prompt_id = import_prompt_lookup(c, ext)))
        rr->prompt_id = import_prompt_plan_new(c, ext); /* created with empty text */
    rr->annotator = rc->annotator >= 0 && !import_is_blank(row->field[rc->annotator])
                        ? row->field[rc->annotator]
                        : rc->dflt_annotator;
    if (!rr->annotator) {
        if (!rc->no_annotator_said)
            import_problem(c, row->line,
                           "no annotator for this row (nor for any later row without one): add "
                           "an annotator column or pass --annotator NAME");
        rc->no_annotator_said = bad = 1;
    }
    rr->val = xmalloc((c->n_aspects ? c->n_aspects : 1) * sizeof *rr->val);
    for (size_t k = 0; k < c->n_aspects; k++) {
        rr->val[k] = NAN;
        if (rc->rating[k] < 0 || import_is_blank(row->field[rc->rating[k]]))
            continue;
        const char *s = row->field[rc->rating[k]];
        double v;
        if (import_parse_num(s, &v)) {
            import_problem(c, row->line,
                           "%s_rating \"%s\" is not a number; write a rating 0..10 with a "
                           "decimal point (e.g. 7.5), or leave the cell blank for \"not rated\"",
                           c->aspects[k].name, s);
            bad = 1;
        } else if (v < STORE_RATING_MIN || v > STORE_RATING_MAX) {
            import_problem(
                c, row->line,
                "%s_rating \"%s\" is outside 0..10 (leave the cell blank if it was not rated)",
                c->aspects[k].name, s);
            bad = 1;
        } else {
            rr->val[k] = v == 0 ? 0.0 : v; /* "-0" is 0 */
        }
    }
    if (bad) {
        free(rr->val);
        rr->val = NULL;
        return -1;
    }
    import_resolve_image(c, path, &rr->img); /* checked with the others: ratings_check_images */
    return 0;
}

/* Every planned row's image: on disk (or allowed missing) and decodable. */
static int ratings_check_images(ImportCtx *c, RRow *rows, size_t n, Err *err) {
    ImportImg **refs = xcalloc(n ? n : 1, sizeof *refs);
    long *lines = xcalloc(n ? n : 1, sizeof *lines);
    for (size_t i = 0; i < n; i++) {
        refs[i] = &rows[i].img;
        lines[i] = rows[i].line;
    }
    int rc = import_check_images(c, refs, lines, "image_path", n, err);
    free(refs);
    free(lines);
    return rc;
}

static int cmp_rrow(const void *a, const void *b) {
    const RRow *x = *(const RRow *const *)a, *y = *(const RRow *const *)b;
    int k = strcmp(x->img.stored, y->img.stored);
    if (k)
        return k;
    k = strcmp(x->annotator, y->annotator);
    if (k)
        return k;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* In-file contradictions: one image under two prompts, or rated twice differently by one
 * annotator. Sorting by (image, annotator) puts such rows next to each other. */
static void ratings_check_contradictions(ImportCtx *c, RRow *rows, size_t n) {
    RRow **ord = xmalloc((n ? n : 1) * sizeof *ord);
    for (size_t i = 0; i < n; i++)
        ord[i] = &rows[i];
    qsort(ord, n, sizeof *ord, cmp_rrow);
    for (size_t i = 1; i < n; i++) {
        const RRow *a = ord[i - 1], *b = ord[i];
        if (strcmp(a->img.stored, b->img.stored) != 0)
            continue;
        if (a->prompt_id != b->prompt_id)
            import_problem(c, b->line,
                           "image %s has prompt_id on line %ld different from this line's",
                           b->img.stored, a->line);
        if (strcmp(a->annotator, b->annotator) != 0)
            continue;
        for (size_t k = 0; k < c->n_aspects; k++)
            if (!isnan(a->val[k]) && !isnan(b->val[k]) && a->val[k] != b->val[k])
                import_problem(
                    c, b->line, "%s_rating: %s by %s is %g here but %g on line %ld; keep one value",
                    c->aspects[k].name, b->img.stored, b->annotator, b->val[k], a->val[k], a->line);
    }
    free(ord);
}

/* Write the planned rows inside the open transaction; returns 1 if cancelled. */
static int ratings_apply(ImportCtx *c, RRow *rows, size_t n) {
    ImportMap ann = {0};
    int cancelled = 0;
    if (import_prompts_create_planned(c))
        return 0;
    for (size_t i = 0; i < n && !cancelled && !import_stopped(c); i++) {
        RRow *rr = &rows[i];
        int64_t img, who;
        if (import_ensure_image(c, rr->line, &rr->img, import_prompt_real(c, rr->prompt_id),
                                NULL, &img))
            continue;
        int64_t *a = import_map_slot(&ann, rr->annotator, 0);
        if (a) {
            who = *a;
        } else {
            Err e = {0};
            int existed = store_annotator_find(c->st, rr->annotator, &who, NULL) == 0;
            if (!existed && store_annotator_ensure(c->st, rr->annotator, &who, &e)) {
                import_write_failed(c, rr->line, "annotator", &e);
                continue;
            }
            c->rep->annotators_added += !existed;
            *import_map_slot(&ann, rr->annotator, 1) = who;
        }
        for (size_t k = 0; k < c->n_aspects && !import_stopped(c); k++) {
            if (isnan(rr->val[k]))
                continue;
            int added = 0;
            Err e = {0};
            if (store_rating_add(c->st, img, who, c->aspects[k].id, rr->val[k], NAN, c->source,
                                 &added, &e)) {
                char what[200];
                snprintf(what, sizeof what, "%s_rating: %s by %s", c->aspects[k].name,
                         rr->img.stored, rr->annotator);
                import_write_failed(c, rr->line, what, &e);
                continue;
            }
            c->rep->ratings_added += added;
            c->rep->ratings_unchanged += !added;
        }
        cancelled = import_progress(c, i + 1, n);
    }
    import_map_free(&ann);
    return cancelled;
}

/* Blind rating (trust.h): whoever the import is for (store_actor: this process's user or
 * the job's queuer) imports only their own ratings unless they may review. Rows of another
 * annotator are problems, said without comparing them with the store (a refused change
 * would tell that annotator's value). */
static int ratings_check_blind(ImportCtx *c, const RRow *rows, size_t n, Err *err) {
    const char *me = store_actor(c->st);
    int only_self = 0;
    int rc = trust_blind_view(c->st, me, &only_self, err);
    if (rc || !only_self)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (rows[i].annotator && strcmp(rows[i].annotator, me) != 0) {
            import_problem(c, rows[i].line,
                           "annotator \"%s\": blind rating is on, so you (%s) may import only "
                           "your own ratings; importing others' needs the reviewer role (the "
                           "store's owner grants it: easel annotators grant %s reviewer)",
                           rows[i].annotator, me, me);
            break; /* once is enough: the file is refused */
        }
    return 0;
}

int import_csv_ratings(ImportCtx *c, const CsvTable *t, Err *err) {
    RCols cols = {0};
    ratings_columns(c, &t->rows[0], &cols);
    RRow *rows = xcalloc(t->n_rows, sizeof *rows);
    size_t n = 0;
    int rc = 0;
    if (import_has_problems(c)) {
        rc = import_fail(c, ERR_FORMAT, err);
        goto out;
    }
    for (size_t r = 1; r < t->n_rows; r++) {
        const CsvRow *row = &t->rows[r];
        if (row_is_empty(row) || check_width(c, &t->rows[0], row))
            continue;
        c->rep->rows++;
        n += ratings_plan_row(c, &cols, row, &rows[n]) == 0;
    }
    if ((rc = ratings_check_blind(c, rows, n, err)))
        goto out;
    if (import_has_problems(c)) { /* before anything is compared with others' ratings */
        rc = import_fail(c, ERR_FORMAT, err);
        goto out;
    }
    if ((rc = ratings_check_images(c, rows, n, err)))
        goto out;
    ratings_check_contradictions(c, rows, n);
    if (import_has_problems(c)) {
        rc = import_fail(c, ERR_FORMAT, err);
        goto out;
    }
    if ((rc = import_begin(c, err)))
        goto out;
    rc = import_finish(c, ratings_apply(c, rows, n), err);
out:
    for (size_t i = 0; i < t->n_rows; i++) {
        import_img_deinit(&rows[i].img);
        free(rows[i].val);
    }
    free(rows);
    free(cols.rating);
    return rc;
}

/* ---- generation metadata CSV ---------------------------------------------------------------- */

typedef struct GRow {
    long line;
    const char *ext; /* borrowed from the table */
    const char *text;
    int64_t seed;
    ImportImg img;
    char *generator;   /* JSON */
    int width, height; /* from the CSV; 0 = not given */
} GRow;

/* Optional integer column: -1 absent/blank, 0 ok, import_problem and 1 if malformed or
 * outside LO..HI (never wrapped). */
static int opt_int(ImportCtx *c, const CsvRow *row, int col, const char *name, int64_t lo,
                   int64_t hi, int64_t *out) {
    if (col < 0 || import_is_blank(row->field[col]))
        return -1;
    if (import_parse_int(row->field[col], out) || *out < lo || *out > hi) {
        import_problem(c, row->line, "%s \"%s\" is not a whole number from %lld to %lld", name,
                       row->field[col], (long long)lo, (long long)hi);
        return 1;
    }
    return 0;
}

#define MAX_SIDE 65535    /* width, height: what any image format here can hold */
#define MAX_GPU 4095
#define MAX_STEPS 1000000

typedef struct GCols {
    int prompt, seed, path, text;                   /* required */
    int gpu, width, height, steps, guidance, model; /* optional, -1 = absent */
    ImportMap seen;                                 /* ext → plan row + 1: in-file prompt texts */
} GCols;

/* Find the columns; 0, or -1 after a problem (a required column is missing). */
static int generated_columns(ImportCtx *c, const CsvRow *hdr, GCols *k) {
    check_header_dups(c, hdr);
    k->prompt = fmt_csv_column(hdr, "prompt_id");
    k->seed = fmt_csv_column(hdr, "seed");
    k->path = fmt_csv_column(hdr, "path");
    k->text = fmt_csv_column(hdr, "prompt");
    k->gpu = fmt_csv_column(hdr, "gpu_id");
    k->width = fmt_csv_column(hdr, "width");
    k->height = fmt_csv_column(hdr, "height");
    k->steps = fmt_csv_column(hdr, "num_inference_steps");
    k->guidance = fmt_csv_column(hdr, "guidance_scale");
    k->model = fmt_csv_column(hdr, "model");
    if (k->prompt < 0 || k->seed < 0 || k->path < 0 || k->text < 0) {
        import_problem(
            c, hdr->line,
            "the header must name prompt_id, seed, path and prompt (the generation "
            "metadata layouts are prompt_id,seed,path,prompt,gpu_id and "
            "prompt_id,seed,path,prompt,width,height,num_inference_steps,guidance_scale)");
        return -1;
    }
    const int used[] = {k->prompt, k->seed,   k->path,  k->text,     k->gpu,
                        k->width,  k->height, k->steps, k->guidance, k->model};
    for (size_t i = 0; i < hdr->n; i++) {
        int is_used = 0;
        for (size_t j = 0; j < ARRAY_LEN(used); j++)
            is_used |= used[j] == (int)i;
        if (!is_used)
            import_warn(c, hdr->line, "column \"%s\" is not used", hdr->field[i]);
    }
    return 0;
}

/* The prompt of row G must agree with earlier rows and with the store. */
static void generated_check_prompt(ImportCtx *c, GCols *k, const GRow *rows, const GRow *g,
                                   size_t index) {
    int64_t *prev = import_map_slot(&k->seen, g->ext, 0);
    if (prev) {
        if (strcmp(rows[*prev - 1].text, g->text) != 0)
            import_problem(c, g->line, "prompt_id \"%s\" has a different prompt text on line %ld",
                           g->ext, rows[*prev - 1].line);
        return;
    }
    *import_map_slot(&k->seen, g->ext, 1) = (int64_t)index + 1;
    StorePrompt sp;
    if (store_prompt_by_ext(c->st, g->ext, &sp, NULL) == 0) {
        if (sp.text[0] && strcmp(sp.text, g->text) != 0) /* empty: filled in now */
            import_problem(c, g->line,
                           "prompt_id \"%s\" is already in the store with another text "
                           "(\"%.60s\"); an import never changes a prompt",
                           g->ext, sp.text);
        store_prompt_deinit(&sp);
    }
}

/* Check one data row into ROWS[INDEX]. Returns 0, or -1 after recording its problems. */
static int generated_plan_row(ImportCtx *c, GCols *k, const CsvRow *row, GRow *rows, size_t index) {
    GRow *g = &rows[index];
    memset(g, 0, sizeof *g);
    g->line = row->line;
    g->ext = row->field[k->prompt];
    g->text = row->field[k->text];
    int bad = 0;
    if (import_is_blank(g->ext)) {
        import_problem(c, row->line, "prompt_id is empty; every image belongs to a prompt");
        bad = 1;
    }
    if (import_is_blank(row->field[k->path])) {
        import_problem(c, row->line, "path is empty; give the image file");
        bad = 1;
    }
    int seed_rc = import_parse_int(row->field[k->seed], &g->seed);
    if (seed_rc == -2) {
        import_problem(c, row->line,
                       "seed \"%s\" does not fit in a 64-bit integer (-9223372036854775808 to "
                       "9223372036854775807)",
                       row->field[k->seed]);
        bad = 1;
    } else if (seed_rc) {
        import_problem(c, row->line, "seed \"%s\" is not a whole number", row->field[k->seed]);
        bad = 1;
    }
    int64_t gpu = 0, w = 0, h = 0, steps = 0;
    int has_gpu = opt_int(c, row, k->gpu, "gpu_id", 0, MAX_GPU, &gpu);
    int has_w = opt_int(c, row, k->width, "width", 1, MAX_SIDE, &w);
    int has_h = opt_int(c, row, k->height, "height", 1, MAX_SIDE, &h);
    int has_steps = opt_int(c, row, k->steps, "num_inference_steps", 1, MAX_STEPS, &steps);
    bad |= has_gpu == 1 || has_w == 1 || has_h == 1 || has_steps == 1;
    double gs = 0;
    int has_gs = k->guidance >= 0 && !import_is_blank(row->field[k->guidance]);
    if (has_gs && import_parse_num(row->field[k->guidance], &gs)) {
        import_problem(c, row->line, "guidance_scale \"%s\" is not a number",
                       row->field[k->guidance]);
        bad = 1;
    }
    if (bad)
        return -1;
    import_resolve_image(c, row->field[k->path], &g->img); /* checked after all rows */
    generated_check_prompt(c, k, rows, g, index);
    json_t *gen = json_object();
    if (k->model >= 0 && !import_is_blank(row->field[k->model]))
        json_object_set_new(gen, "model", json_string(row->field[k->model]));
    if (has_steps == 0)
        json_object_set_new(gen, "num_inference_steps", json_integer(steps));
    if (has_gs)
        json_object_set_new(gen, "guidance_scale", json_real(gs));
    if (has_gpu == 0)
        json_object_set_new(gen, "gpu_id", json_integer(gpu));
    g->generator = json_object_size(gen)
                       ? json_dumps(gen, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(12))
                       : NULL;
    json_decref(gen);
    g->width = has_w == 0 ? (int)w : 0;
    g->height = has_h == 0 ? (int)h : 0;
    return 0;
}

/* Write the planned rows inside the open transaction; returns 1 if cancelled. */
static int generated_apply(ImportCtx *c, GRow *rows, size_t n) {
    int cancelled = 0;
    for (size_t i = 0; i < n && !cancelled && !import_stopped(c); i++) {
        GRow *g = &rows[i];
        int64_t pid, img;
        int added = 0;
        Err e = {0};
        if (store_prompt_add(c->st, g->ext, g->text, &pid, &added, &e)) {
            import_write_failed(c, g->line, "prompt_id", &e);
            continue;
        }
        c->rep->prompts_added += added;
        *import_map_slot(&c->prompts, g->ext, 1) = pid;
        StoreImage meta = {.has_seed = 1,
                           .seed = g->seed,
                           .generator = g->generator,
                           .width = g->width,
                           .height = g->height};
        if (import_ensure_image(c, g->line, &g->img, pid, &meta, &img) == 0) {
            /* the same path listed twice with different seeds */
            StoreImage cur;
            if (store_image_get(c->st, img, &cur, NULL) == 0) {
                if (cur.has_seed && cur.seed != g->seed)
                    import_problem(c, g->line, "image %s has seed %lld in the store, not %lld",
                                   g->img.stored, (long long)cur.seed, (long long)g->seed);
                store_image_deinit(&cur);
            }
        }
        cancelled = import_progress(c, i + 1, n);
    }
    return cancelled;
}

int import_csv_generated(ImportCtx *c, const CsvTable *t, Err *err) {
    GCols cols = {0};
    if (generated_columns(c, &t->rows[0], &cols))
        return import_fail(c, ERR_FORMAT, err);
    GRow *rows = xcalloc(t->n_rows, sizeof *rows);
    size_t n = 0;
    int rc = 0;
    for (size_t r = 1; r < t->n_rows; r++) {
        const CsvRow *row = &t->rows[r];
        if (row_is_empty(row) || check_width(c, &t->rows[0], row))
            continue;
        c->rep->rows++;
        n += generated_plan_row(c, &cols, row, rows, n) == 0;
    }
    import_map_free(&cols.seen);
    ImportImg **refs = xcalloc(n ? n : 1, sizeof *refs);
    long *lines = xcalloc(n ? n : 1, sizeof *lines);
    for (size_t i = 0; i < n; i++) {
        refs[i] = &rows[i].img;
        lines[i] = rows[i].line;
    }
    rc = import_check_images(c, refs, lines, "path", n, err);
    free(refs);
    free(lines);
    if (rc)
        goto out;
    if (import_has_problems(c)) {
        rc = import_fail(c, ERR_FORMAT, err);
        goto out;
    }
    if ((rc = import_begin(c, err)))
        goto out;
    rc = import_finish(c, generated_apply(c, rows, n), err);
out:
    for (size_t i = 0; i < t->n_rows; i++) {
        import_img_deinit(&rows[i].img);
        free(rows[i].generator);
    }
    free(rows);
    return rc;
}
