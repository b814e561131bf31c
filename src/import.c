/* import — the five importers. See import.h for the contract, doc/formats.md for the formats.
 *
 * Design: every importer runs in two phases.
 *   1. plan: parse the whole input into plan rows, checking every field and everything that
 *      can be checked against the store by reading it (prompts exist, no in-file
 *      contradictions). Each problem is recorded with FILE:LINE; nothing is written.
 *   2. apply: if there were no problems, BEGIN IMMEDIATE, write the plan row by row (adding
 *      or completing images, annotators, prompts, ratings, pairs), record any conflict a
 *      write reveals, and COMMIT only if none did; otherwise ROLLBACK.
 * So an error at any point leaves the store untouched, and the write lock is held only for
 * the apply phase. A second import of the same file finds every row already there.
 */
#include "import.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "fmt_csv.h"
#include "sha256.h"
#include "store_catalog.h"
#include "store_pairs.h"
#include "store_ratings.h"

#define MAX_LISTED 1000 /* problems and warnings kept per import; the rest are counted */
#define PROGRESS_EVERY 64
#define MISSING_LISTED 3  /* images not on disk named one by one; the rest are counted */

/* ---- a small string → int64 map (open addressing) ------------------------------------------ */

typedef struct StrMap {
    char **key;
    int64_t *val;
    size_t cap;   /* power of two */
    size_t n;
} StrMap;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int64_t *map_slot(StrMap *m, const char *k, int create) {
    if (create && 2 * (m->n + 1) > m->cap) {
        StrMap g = {.cap = m->cap ? 2 * m->cap : 64};
        g.key = xcalloc(g.cap, sizeof *g.key);
        g.val = xcalloc(g.cap, sizeof *g.val);
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->key[i])
                continue;
            size_t j = hash_str(m->key[i]) & (g.cap - 1);
            while (g.key[j])
                j = (j + 1) & (g.cap - 1);
            g.key[j] = m->key[i];
            g.val[j] = m->val[i];
        }
        g.n = m->n;
        free(m->key);
        free(m->val);
        *m = g;
    }
    if (!m->cap)
        return NULL;
    size_t j = hash_str(k) & (m->cap - 1);
    while (m->key[j]) {
        if (strcmp(m->key[j], k) == 0)
            return &m->val[j];
        j = (j + 1) & (m->cap - 1);
    }
    if (!create)
        return NULL;
    m->key[j] = xstrdup(k);
    m->n++;
    return &m->val[j];
}

static void map_free(StrMap *m) {
    for (size_t i = 0; i < m->cap; i++)
        free(m->key[i]);
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

/* ---- context, problems, warnings --------------------------------------------------------- */

typedef struct Ctx {
    Store *st;
    const char *file;          /* as the user gave it: the prefix of every message */
    char *dir;                 /* folder relative paths resolve against first */
    char *source;              /* "import:NAME" for ratings */
    const ImportOptions *opts;
    ImportReport *rep;
    StoreAspect *aspects;
    size_t n_aspects;
    StrMap images;             /* stored path → image id, filled while applying */
    StrMap prompts;            /* ext_id → store id (0 = not in the store) */
    size_t n_more_errors;
    size_t n_more_warnings;
} Ctx;

static void push(char ***list, size_t *n, size_t *more, char *msg) {
    if (*n >= MAX_LISTED) {
        (*more)++;
        free(msg);
        return;
    }
    *list = xrealloc(*list, (*n + 1) * sizeof **list);
    (*list)[(*n)++] = msg;
}

static void append(char ***list, size_t *n, char *msg) {
    *list = xrealloc(*list, (*n + 1) * sizeof **list);
    (*list)[(*n)++] = msg;
}

static char *vformat(Ctx *c, long line, const char *fmt, va_list ap) {
    char body[768];
    vsnprintf(body, sizeof body, fmt, ap);
    return line > 0 ? xasprintf("%s:%ld: %s", c->file, line, body)
                    : xasprintf("%s: %s", c->file, body);
}

__attribute__((format(printf, 3, 4))) static void problem(Ctx *c, long line, const char *fmt,
                                                          ...) {
    va_list ap;
    va_start(ap, fmt);
    push(&c->rep->errors, &c->rep->n_errors, &c->n_more_errors, vformat(c, line, fmt, ap));
    va_end(ap);
}

__attribute__((format(printf, 3, 4))) static void warn(Ctx *c, long line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    push(&c->rep->warnings, &c->rep->n_warnings, &c->n_more_warnings, vformat(c, line, fmt, ap));
    va_end(ap);
}

/* Problem that comes with an Err from a lower layer (conflicts found while writing). */
static void problem_err(Ctx *c, long line, const char *what, const Err *e) {
    problem(c, line, "%s%s%s", what ? what : "", what ? ": " : "", e->msg);
}

static int n_problems(const Ctx *c) { return c->rep->n_errors > 0; }

/* Set err from the first problem. */
static int fail_with_problems(Ctx *c, int code, Err *err) {
    size_t total = c->rep->n_errors + c->n_more_errors;
    if (total > 1)
        return err_set(err, code, "%s (%zu problems in all; nothing was imported)",
                       c->rep->errors[0], total);
    return err_set(err, code, "%s (nothing was imported)", c->rep->errors[0]);
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ---- field parsing ------------------------------------------------------------------------- */

static int is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return 0;
    return 1;
}

/* A decimal number, the whole field: digits, sign, point, exponent. No nan/inf/hex. */
static int parse_num(const char *s, double *out) {
    if (!*s || strspn(s, "0123456789+-.eE") != strlen(s))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int64_t *out) {
    if (!*s || strspn(s, "0123456789+-") != strlen(s))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

static int row_is_empty(const CsvRow *r) {
    for (size_t i = 0; i < r->n; i++)
        if (!is_blank(r->field[i]))
            return 0;
    return 1;
}

/* Check the header for duplicate names; problem for each. */
static void check_header_dups(Ctx *c, const CsvRow *hdr) {
    for (size_t i = 0; i < hdr->n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(hdr->field[i], hdr->field[j]) == 0 && hdr->field[i][0])
                problem(c, hdr->line, "column \"%s\" appears twice in the header",
                        hdr->field[i]);
}

static int check_width(Ctx *c, const CsvRow *hdr, const CsvRow *r) {
    if (r->n == hdr->n)
        return 0;
    problem(c, r->line,
            "%zu fields, but the header has %zu (a field holding a comma must be quoted)", r->n,
            hdr->n);
    return -1;
}

/* ---- images -------------------------------------------------------------------------------- */

typedef struct ImgRef {
    char *stored;   /* store_path_to_stored form */
    char *open;     /* a path that opens from the cwd */
    int exists;     /* a regular file is there */
} ImgRef;

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int store_has_path(Store *st, const char *stored) {
    StoreImage img;
    if (store_image_by_path(st, stored, &img, NULL) != 0)
        return 0;
    store_image_deinit(&img);
    return 1;
}

/* Resolve RAW (from the file) against the file's folder, then the cwd. A file that is on
 * disk wins; otherwise a path the store already knows; otherwise the file's folder. */
static void resolve_image(Ctx *c, const char *raw, ImgRef *out) {
    memset(out, 0, sizeof *out);
    if (raw[0] == '/') {
        out->open = xstrdup(raw);
        out->stored = store_path_to_stored(c->st, raw);
        out->exists = is_file(raw);
        return;
    }
    char *cand[2] = {strcmp(c->dir, ".") == 0 ? xstrdup(raw) : xasprintf("%s/%s", c->dir, raw),
                     xstrdup(raw)};
    int pick = -1;
    for (int i = 0; i < 2 && pick < 0; i++)
        if (is_file(cand[i]))
            pick = i;
    out->exists = pick >= 0;
    char *stored[2] = {store_path_to_stored(c->st, cand[0]), store_path_to_stored(c->st, cand[1])};
    if (pick < 0)
        pick = !store_has_path(c->st, stored[0]) && store_has_path(c->st, stored[1]) ? 1 : 0;
    out->open = cand[pick];
    out->stored = stored[pick];
    free(cand[1 - pick]);
    free(stored[1 - pick]);
}

static void imgref_deinit(ImgRef *r) {
    free(r->stored);
    free(r->open);
    memset(r, 0, sizeof *r);
}

/* Width and height from a PNG's IHDR; 0 if not a PNG or unreadable. */
static void png_size(const char *path, int *w, int *h) {
    *w = *h = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    unsigned char b[24];
    if (fread(b, 1, 24, f) == 24 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 &&
        memcmp(b + 12, "IHDR", 4) == 0) {
        uint32_t ww = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
        uint32_t hh = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
        if (ww > 0 && ww < 1u << 20 && hh > 0 && hh < 1u << 20) {
            *w = (int)ww;
            *h = (int)hh;
        }
    }
    fclose(f);
}

/* Find or add the image REF (apply phase). META (may be NULL) carries seed, generator and
 * size known from the file. Returns 0 and *id, or -1 after recording a problem at LINE. */
static int ensure_image(Ctx *c, long line, const ImgRef *ref, int64_t prompt_id,
                        const StoreImage *meta, int64_t *id) {
    int64_t *cached = map_slot(&c->images, ref->stored, 0);
    if (cached) {
        StoreImage cur;
        Err e = {0};
        if (store_image_get(c->st, *cached, &cur, &e)) {
            problem_err(c, line, NULL, &e);
            return -1;
        }
        int bad = prompt_id > 0 && cur.prompt_id > 0 && cur.prompt_id != prompt_id;
        store_image_deinit(&cur);
        if (bad) {
            problem(c, line, "image %s was given another prompt_id on an earlier line",
                    ref->stored);
            return -1;
        }
        *id = *cached;
        return 0;
    }
    StoreImage want = {0};
    if (meta)
        want = *meta;
    want.id = 0;
    want.path = ref->stored;
    want.prompt_id = prompt_id;
    want.missing = !ref->exists;
    want.sha256 = NULL;
    char hex[SHA256_HEX_LEN + 1];
    StoreImage cur;
    Err e = {0};
    int rc = store_image_by_path(c->st, ref->stored, &cur, &e);
    if (rc && rc != ERR_NOTFOUND) {
        problem_err(c, line, NULL, &e);
        return -1;
    }
    int known = rc == 0;
    if (ref->exists && (!known || !cur.sha256)) {
        if (sha256_file_hex(ref->open, hex, &e) == 0)
            want.sha256 = hex;
        int w, h;
        png_size(ref->open, &w, &h);
        if (w > 0) {
            want.width = w;
            want.height = h;
        }
    }
    if (!ref->exists && c->rep->images_missing < MISSING_LISTED)
        warn(c, line, "image %s is not on disk; imported as missing (put the file there and "
                      "import again to complete it)", ref->open);
    if (known) {
        int changed = 0;
        rc = store_image_fill(c->st, cur.id, &want, &changed, &e);
        *id = cur.id;
        store_image_deinit(&cur);
        if (rc) {
            problem_err(c, line, "image_path", &e);
            return -1;
        }
        c->rep->images_updated += changed;
    } else {
        if (store_image_add(c->st, &want, id, &e)) {
            problem_err(c, line, "image_path", &e);
            return -1;
        }
        c->rep->images_added++;
    }
    c->rep->images_missing += !ref->exists;
    *map_slot(&c->images, ref->stored, 1) = *id;
    return 0;
}

/* ---- prompts (lookup with a cache) ------------------------------------------------------- */

/* Store id of prompt EXT, 0 if not in the store. */
static int64_t prompt_lookup(Ctx *c, const char *ext) {
    int64_t *v = map_slot(&c->prompts, ext, 0);
    if (v)
        return *v;
    StorePrompt p;
    int64_t id = 0;
    if (store_prompt_by_ext(c->st, ext, &p, NULL) == 0) {
        id = p.id;
        store_prompt_deinit(&p);
    }
    *map_slot(&c->prompts, ext, 1) = id;
    return id;
}

/* ---- the apply phase's frame ---------------------------------------------------------------- */

static int progress(Ctx *c, size_t done, size_t total) {
    if (!c->opts || !c->opts->progress)
        return 0;
    if (done % PROGRESS_EVERY != 0 && done != total)
        return 0;
    return c->opts->progress(c->opts->user_data, done, total);
}

/* Commit if no problems appeared while applying, else roll back. */
static int finish_apply(Ctx *c, int cancelled, Err *err) {
    if (cancelled) {
        store_rollback(c->st);
        return err_set(err, ERR_CANCELLED, "%s: import cancelled; nothing was imported", c->file);
    }
    if (n_problems(c)) {
        store_rollback(c->st);
        return fail_with_problems(c, ERR_CONFLICT, err);
    }
    Err e = {0};
    int rc = store_commit(c->st, &e);
    if (rc)
        return err_set(err, rc, "%s: %s; nothing was imported", c->file, e.msg);
    return 0;
}

static int begin_apply(Ctx *c, Err *err) {
    Err e = {0};
    int rc = store_begin(c->st, &e);
    if (rc)
        return err_set(err, rc, "%s: %s; nothing was imported", c->file, e.msg);
    return 0;
}

/* ---- prompts.csv --------------------------------------------------------------------------- */

static int import_prompts(Ctx *c, const CsvTable *t, Err *err) {
    const CsvRow *hdr = &t->rows[0];
    int ci = fmt_csv_column(hdr, "prompt_id"), ct = fmt_csv_column(hdr, "prompt");
    check_header_dups(c, hdr);
    if (ci < 0 || ct < 0) {
        problem(c, hdr->line, "the header must name the columns prompt_id and prompt "
                              "(e.g. \"prompt_id,prompt\")");
        return fail_with_problems(c, ERR_FORMAT, err);
    }
    for (size_t i = 0; i < hdr->n; i++)
        if ((int)i != ci && (int)i != ct)
            warn(c, hdr->line, "column \"%s\" is not used", hdr->field[i]);
    StrMap seen = {0}; /* ext → row index + 1 */
    for (size_t r = 1; r < t->n_rows; r++) {
        const CsvRow *row = &t->rows[r];
        if (row_is_empty(row) || check_width(c, hdr, row))
            continue;
        c->rep->rows++;
        const char *ext = row->field[ci], *text = row->field[ct];
        if (is_blank(ext)) {
            problem(c, row->line, "prompt_id is empty; every prompt needs an id");
            continue;
        }
        if (is_blank(text)) {
            problem(c, row->line, "prompt \"%s\" has no text", ext);
            continue;
        }
        int64_t *prev = map_slot(&seen, ext, 0);
        if (prev) {
            const CsvRow *p = &t->rows[*prev - 1];
            if (strcmp(p->field[ct], text) != 0)
                problem(c, row->line,
                        "prompt_id \"%s\" appears again (line %ld) with a different text",
                        ext, p->line);
            continue;
        }
        *map_slot(&seen, ext, 1) = (int64_t)r + 1;
        StorePrompt sp;
        if (store_prompt_by_ext(c->st, ext, &sp, NULL) == 0) {
            if (strcmp(sp.text, text) != 0)
                problem(c, row->line,
                        "prompt_id \"%s\" is already in the store with another text (\"%.60s\"); "
                        "an import never changes a prompt — give the new prompt a new id",
                        ext, sp.text);
            store_prompt_deinit(&sp);
        }
    }
    map_free(&seen);
    if (n_problems(c))
        return fail_with_problems(c, ERR_FORMAT, err);
    int rc = begin_apply(c, err);
    if (rc)
        return rc;
    int cancelled = 0;
    for (size_t r = 1; r < t->n_rows && !cancelled; r++) {
        const CsvRow *row = &t->rows[r];
        if (row_is_empty(row))
            continue;
        int added = 0;
        Err e = {0};
        if (store_prompt_add(c->st, row->field[ci], row->field[ct], NULL, &added, &e))
            problem_err(c, row->line, "prompt_id", &e);
        c->rep->prompts_added += added;
        cancelled = progress(c, r, t->n_rows - 1);
    }
    return finish_apply(c, cancelled, err);
}

/* ---- multihead_ratings.csv ------------------------------------------------------------------ */

typedef struct RRow {
    long line;
    int64_t prompt_id;     /* 0 = no prompt */
    ImgRef img;
    const char *annotator; /* borrowed from the table or the options */
    double *val;           /* (n_aspects) NAN = blank */
} RRow;

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

static int import_ratings(Ctx *c, const CsvTable *t, Err *err) {
    const CsvRow *hdr = &t->rows[0];
    check_header_dups(c, hdr);
    int cp = fmt_csv_column(hdr, "prompt_id"), ci = fmt_csv_column(hdr, "image_path");
    int ca = fmt_csv_column(hdr, "annotator");
    int *col = xmalloc((c->n_aspects ? c->n_aspects : 1) * sizeof *col);
    int n_rating_cols = 0;
    for (size_t k = 0; k < c->n_aspects; k++) {
        char *name = xasprintf("%s_rating", c->aspects[k].name);
        col[k] = fmt_csv_column(hdr, name);
        n_rating_cols += col[k] >= 0;
        free(name);
    }
    if (cp < 0 || ci < 0)
        problem(c, hdr->line, "the header must name the columns prompt_id and image_path "
                              "(e.g. \"prompt_id,image_path,spatial_rating,...\")");
    else if (n_rating_cols == 0)
        problem(c, hdr->line, "no rating columns: name them <aspect>_rating, e.g. "
                              "spatial_rating,icono_rating,style_rating,fidelity_rating,"
                              "material_rating");
    for (size_t i = 0; i < hdr->n; i++) {
        int used = (int)i == cp || (int)i == ci || (int)i == ca;
        for (size_t k = 0; k < c->n_aspects; k++)
            used |= col[k] == (int)i;
        if (used)
            continue;
        size_t len = strlen(hdr->field[i]);
        if (len > 7 && strcmp(hdr->field[i] + len - 7, "_rating") == 0)
            problem(c, hdr->line, "column \"%s\": there is no aspect \"%.*s\" in this store",
                    hdr->field[i], (int)(len - 7), hdr->field[i]);
        else
            warn(c, hdr->line, "column \"%s\" is not used", hdr->field[i]);
    }
    if (n_problems(c)) {
        free(col);
        return fail_with_problems(c, ERR_FORMAT, err);
    }
    const char *dflt = c->opts && c->opts->annotator ? c->opts->annotator : getenv("USER");
    if (dflt && !*dflt)
        dflt = NULL;
    RRow *rows = xcalloc(t->n_rows, sizeof *rows);
    size_t n = 0;
    int no_annotator_said = 0;
    for (size_t r = 1; r < t->n_rows; r++) {
        const CsvRow *row = &t->rows[r];
        if (row_is_empty(row) || check_width(c, hdr, row))
            continue;
        c->rep->rows++;
        RRow *rr = &rows[n];
        memset(rr, 0, sizeof *rr);
        rr->line = row->line;
        const char *ext = row->field[cp], *path = row->field[ci];
        int bad = 0;
        if (is_blank(path)) {
            problem(c, row->line, "image_path is empty");
            bad = 1;
        }
        if (!is_blank(ext)) {
            rr->prompt_id = prompt_lookup(c, ext);
            if (!rr->prompt_id) {
                problem(c, row->line,
                        "prompt_id \"%s\" is not in the store; import its prompts.csv first",
                        ext);
                bad = 1;
            }
        }
        rr->annotator = ca >= 0 && !is_blank(row->field[ca]) ? row->field[ca] : dflt;
        if (!rr->annotator) {
            if (!no_annotator_said)
                problem(c, row->line, "no annotator for this row (nor for any later row "
                                      "without one): add an annotator column or pass "
                                      "--annotator NAME");
            no_annotator_said = bad = 1;
        }
        rr->val = xmalloc((c->n_aspects ? c->n_aspects : 1) * sizeof *rr->val);
        for (size_t k = 0; k < c->n_aspects; k++) {
            rr->val[k] = NAN;
            if (col[k] < 0 || is_blank(row->field[col[k]]))
                continue;
            const char *s = row->field[col[k]];
            double v;
            if (parse_num(s, &v)) {
                problem(c, row->line,
                        "%s_rating \"%s\" is not a number; write a rating 0..10 with a decimal "
                        "point (e.g. 7.5), or leave the cell blank for \"not rated\"",
                        c->aspects[k].name, s);
                bad = 1;
            } else if (v < STORE_RATING_MIN || v > STORE_RATING_MAX) {
                problem(c, row->line, "%s_rating \"%s\" is outside 0..10", c->aspects[k].name,
                        s);
                bad = 1;
            } else {
                rr->val[k] = v;
            }
        }
        if (bad) {
            free(rr->val);
            rr->val = NULL;
            continue;
        }
        resolve_image(c, path, &rr->img);
        n++;
    }
    /* in-file contradictions: the same image with two prompts, or rated twice differently */
    RRow **ord = xmalloc((n ? n : 1) * sizeof *ord);
    for (size_t i = 0; i < n; i++)
        ord[i] = &rows[i];
    qsort(ord, n, sizeof *ord, cmp_rrow);
    for (size_t i = 1; i < n; i++) {
        const RRow *a = ord[i - 1], *b = ord[i];
        if (strcmp(a->img.stored, b->img.stored) != 0)
            continue;
        if (a->prompt_id != b->prompt_id)
            problem(c, b->line, "image %s has prompt_id on line %ld different from this line's",
                    b->img.stored, a->line);
        if (strcmp(a->annotator, b->annotator) != 0)
            continue;
        for (size_t k = 0; k < c->n_aspects; k++)
            if (!isnan(a->val[k]) && !isnan(b->val[k]) && a->val[k] != b->val[k])
                problem(c, b->line,
                        "%s_rating: %s by %s is %g here but %g on line %ld; keep one value",
                        c->aspects[k].name, b->img.stored, b->annotator, b->val[k], a->val[k],
                        a->line);
    }
    free(ord);
    int rc = 0;
    if (n_problems(c)) {
        rc = fail_with_problems(c, ERR_FORMAT, err);
        goto out;
    }
    if ((rc = begin_apply(c, err)))
        goto out;
    StrMap ann = {0};
    int cancelled = 0;
    for (size_t i = 0; i < n && !cancelled; i++) {
        RRow *rr = &rows[i];
        int64_t img, who;
        if (ensure_image(c, rr->line, &rr->img, rr->prompt_id, NULL, &img))
            continue;
        int64_t *a = map_slot(&ann, rr->annotator, 0);
        if (a) {
            who = *a;
        } else {
            Err e = {0};
            int existed = store_annotator_find(c->st, rr->annotator, &who, NULL) == 0;
            if (!existed && store_annotator_ensure(c->st, rr->annotator, &who, &e)) {
                problem_err(c, rr->line, "annotator", &e);
                continue;
            }
            c->rep->annotators_added += !existed;
            *map_slot(&ann, rr->annotator, 1) = who;
        }
        for (size_t k = 0; k < c->n_aspects; k++) {
            if (isnan(rr->val[k]))
                continue;
            int added = 0;
            Err e = {0};
            if (store_rating_add(c->st, img, who, c->aspects[k].id, rr->val[k], NAN, c->source,
                                 &added, &e)) {
                problem(c, rr->line, "%s_rating: %s by %s: %s", c->aspects[k].name,
                        rr->img.stored, rr->annotator, e.msg);
                continue;
            }
            c->rep->ratings_added += added;
            c->rep->ratings_unchanged += !added;
        }
        cancelled = progress(c, i + 1, n);
    }
    map_free(&ann);
    rc = finish_apply(c, cancelled, err);
out:
    for (size_t i = 0; i < t->n_rows; i++) {
        imgref_deinit(&rows[i].img);
        free(rows[i].val);
    }
    free(rows);
    free(col);
    return rc;
}

/* ---- generation metadata CSV ---------------------------------------------------------------- */

typedef struct GRow {
    long line;
    const char *ext;       /* borrowed from the table */
    const char *text;
    int64_t seed;
    ImgRef img;
    char *generator;       /* JSON */
    int width, height;     /* from the CSV; 0 = not given */
} GRow;

/* Optional integer column: -1 absent/blank, 0 ok, problem and 1 if malformed. */
static int opt_int(Ctx *c, const CsvRow *row, int col, const char *name, int64_t lo,
                   int64_t *out) {
    if (col < 0 || is_blank(row->field[col]))
        return -1;
    if (parse_int(row->field[col], out) || *out < lo) {
        problem(c, row->line, "%s \"%s\" is not a whole number >= %lld", name, row->field[col],
                (long long)lo);
        return 1;
    }
    return 0;
}

static int import_generated(Ctx *c, const CsvTable *t, Err *err) {
    const CsvRow *hdr = &t->rows[0];
    check_header_dups(c, hdr);
    int cp = fmt_csv_column(hdr, "prompt_id"), cs = fmt_csv_column(hdr, "seed");
    int cpath = fmt_csv_column(hdr, "path"), ct = fmt_csv_column(hdr, "prompt");
    int cg = fmt_csv_column(hdr, "gpu_id"), cw = fmt_csv_column(hdr, "width");
    int ch = fmt_csv_column(hdr, "height"), cn = fmt_csv_column(hdr, "num_inference_steps");
    int cgs = fmt_csv_column(hdr, "guidance_scale"), cm = fmt_csv_column(hdr, "model");
    if (cp < 0 || cs < 0 || cpath < 0 || ct < 0) {
        problem(c, hdr->line,
                "the header must name prompt_id, seed, path and prompt (the generation "
                "metadata layouts are prompt_id,seed,path,prompt,gpu_id and "
                "prompt_id,seed,path,prompt,width,height,num_inference_steps,guidance_scale)");
        return fail_with_problems(c, ERR_FORMAT, err);
    }
    for (size_t i = 0; i < hdr->n; i++) {
        int k = (int)i;
        if (k != cp && k != cs && k != cpath && k != ct && k != cg && k != cw && k != ch &&
            k != cn && k != cgs && k != cm)
            warn(c, hdr->line, "column \"%s\" is not used", hdr->field[i]);
    }
    GRow *rows = xcalloc(t->n_rows, sizeof *rows);
    size_t n = 0;
    StrMap seen = {0}; /* ext → row index + 1, for in-file prompt text conflicts */
    for (size_t r = 1; r < t->n_rows; r++) {
        const CsvRow *row = &t->rows[r];
        if (row_is_empty(row) || check_width(c, hdr, row))
            continue;
        c->rep->rows++;
        GRow *g = &rows[n];
        memset(g, 0, sizeof *g);
        g->line = row->line;
        g->ext = row->field[cp];
        g->text = row->field[ct];
        int bad = 0;
        if (is_blank(g->ext)) {
            problem(c, row->line, "prompt_id is empty");
            bad = 1;
        }
        if (is_blank(row->field[cpath])) {
            problem(c, row->line, "path is empty");
            bad = 1;
        }
        if (parse_int(row->field[cs], &g->seed)) {
            problem(c, row->line, "seed \"%s\" is not a whole number", row->field[cs]);
            bad = 1;
        }
        int64_t gpu = 0, w = 0, h = 0, steps = 0;
        int has_gpu = opt_int(c, row, cg, "gpu_id", 0, &gpu);
        int has_w = opt_int(c, row, cw, "width", 1, &w);
        int has_h = opt_int(c, row, ch, "height", 1, &h);
        int has_steps = opt_int(c, row, cn, "num_inference_steps", 1, &steps);
        bad |= has_gpu == 1 || has_w == 1 || has_h == 1 || has_steps == 1;
        double gs = 0;
        int has_gs = cgs >= 0 && !is_blank(row->field[cgs]);
        if (has_gs && parse_num(row->field[cgs], &gs)) {
            problem(c, row->line, "guidance_scale \"%s\" is not a number", row->field[cgs]);
            bad = 1;
        }
        if (!bad && !is_blank(g->ext)) {
            int64_t *prev = map_slot(&seen, g->ext, 0);
            if (prev && strcmp(rows[*prev - 1].text, g->text) != 0)
                problem(c, row->line,
                        "prompt_id \"%s\" has a different prompt text on line %ld", g->ext,
                        rows[*prev - 1].line);
            else if (!prev)
                *map_slot(&seen, g->ext, 1) = (int64_t)n + 1;
            StorePrompt sp;
            if (!prev && store_prompt_by_ext(c->st, g->ext, &sp, NULL) == 0) {
                if (strcmp(sp.text, g->text) != 0)
                    problem(c, row->line,
                            "prompt_id \"%s\" is already in the store with another text "
                            "(\"%.60s\"); an import never changes a prompt",
                            g->ext, sp.text);
                store_prompt_deinit(&sp);
            }
        }
        if (bad)
            continue;
        json_t *gen = json_object();
        if (cm >= 0 && !is_blank(row->field[cm]))
            json_object_set_new(gen, "model", json_string(row->field[cm]));
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
        resolve_image(c, row->field[cpath], &g->img);
        n++;
    }
    map_free(&seen);
    int rc = 0;
    if (n_problems(c)) {
        rc = fail_with_problems(c, ERR_FORMAT, err);
        goto out;
    }
    if ((rc = begin_apply(c, err)))
        goto out;
    int cancelled = 0;
    for (size_t i = 0; i < n && !cancelled; i++) {
        GRow *g = &rows[i];
        int64_t pid, img;
        int added = 0;
        Err e = {0};
        if (store_prompt_add(c->st, g->ext, g->text, &pid, &added, &e)) {
            problem_err(c, g->line, "prompt_id", &e);
            continue;
        }
        c->rep->prompts_added += added;
        *map_slot(&c->prompts, g->ext, 1) = pid;
        StoreImage meta = {.has_seed = 1, .seed = g->seed, .generator = g->generator,
                           .width = g->width, .height = g->height};
        if (ensure_image(c, g->line, &g->img, pid, &meta, &img) == 0) {
            /* the same path listed twice with different seeds */
            StoreImage cur;
            if (store_image_get(c->st, img, &cur, NULL) == 0) {
                if (cur.has_seed && cur.seed != g->seed)
                    problem(c, g->line, "image %s has seed %lld in the store, not %lld",
                            g->img.stored, (long long)cur.seed, (long long)g->seed);
                store_image_deinit(&cur);
            }
        }
        cancelled = progress(c, i + 1, n);
    }
    rc = finish_apply(c, cancelled, err);
out:
    for (size_t i = 0; i < t->n_rows; i++) {
        imgref_deinit(&rows[i].img);
        free(rows[i].generator);
    }
    free(rows);
    return rc;
}

/* ---- an image folder {prompt_id}/{seed}.png ------------------------------------------------- */

typedef struct IRow {
    char *where;           /* prompt_id/file, for messages */
    int64_t prompt_id;
    int has_seed;
    int64_t seed;
    ImgRef img;
} IRow;

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    const char *ext[] = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG"};
    for (size_t i = 0; i < ARRAY_LEN(ext); i++)
        if (strcmp(dot, ext[i]) == 0)
            return 1;
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    /* numbers by value, so 2.png comes before 10.png */
    char *ex, *ey;
    long long nx = strtoll(x, &ex, 10), ny = strtoll(y, &ey, 10);
    if (ex != x && ey != y && nx != ny)
        return nx < ny ? -1 : 1;
    return strcmp(x, y);
}

/* Sorted entry names of DIR (no dot-files). NULL if it cannot be read. */
static char **list_dir(const char *dir, size_t *n) {
    DIR *d = opendir(dir);
    *n = 0;
    if (!d)
        return NULL;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        v = xrealloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (*n)
        qsort(v, *n, sizeof *v, cmp_name);
    else
        v = xcalloc(1, sizeof *v);
    return v;
}

static void free_names(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int import_images(Ctx *c, const char *root, Err *err) {
    if (!is_dir(root))
        return err_set(err, access(root, F_OK) == 0 ? ERR_USAGE : ERR_NOTFOUND,
                       "%s: not a folder; 'import images' takes a folder laid out "
                       "{prompt_id}/{seed}.png",
                       root);
    size_t n_sub;
    char **sub = list_dir(root, &n_sub);
    if (!sub)
        return err_set(err, ERR_IO, "%s: cannot read the folder: %s", root, strerror(errno));
    IRow *rows = NULL;
    size_t n = 0;
    for (size_t i = 0; i < n_sub; i++) {
        char *subdir = xasprintf("%s/%s", root, sub[i]);
        if (!is_dir(subdir)) {
            if (is_image_name(sub[i]))
                warn(c, 0, "%s is not inside a {prompt_id}/ folder; skipped", sub[i]);
            free(subdir);
            continue;
        }
        int64_t pid = prompt_lookup(c, sub[i]);
        size_t n_files;
        char **files = list_dir(subdir, &n_files);
        int n_img = 0;
        for (size_t j = 0; files && j < n_files; j++)
            n_img += is_image_name(files[j]);
        if (!pid && n_img > 0)
            problem(c, 0, "%s/: no prompt with prompt_id \"%s\" in the store; import prompts.csv "
                          "(or the generation metadata CSV) first",
                    sub[i], sub[i]);
        for (size_t j = 0; pid && files && j < n_files; j++) {
            char *full = xasprintf("%s/%s", subdir, files[j]);
            if (!is_image_name(files[j]) || !is_file(full)) {
                warn(c, 0, "%s/%s is not an image file (.png, .jpg, .webp, .bmp); skipped",
                     sub[i], files[j]);
                free(full);
                continue;
            }
            rows = xrealloc(rows, (n + 1) * sizeof *rows);
            IRow *ir = &rows[n++];
            memset(ir, 0, sizeof *ir);
            c->rep->rows++;
            ir->where = xasprintf("%s/%s", sub[i], files[j]);
            ir->prompt_id = pid;
            char *stem = xstrndup(files[j], (size_t)(strrchr(files[j], '.') - files[j]));
            ir->has_seed = parse_int(stem, &ir->seed) == 0;
            free(stem);
            ir->img.open = full;
            ir->img.stored = store_path_to_stored(c->st, full);
            ir->img.exists = 1;
        }
        free_names(files, n_files);
        free(subdir);
    }
    free_names(sub, n_sub);
    int rc = 0;
    if (n_problems(c)) {
        rc = fail_with_problems(c, ERR_FORMAT, err);
        goto out;
    }
    if (n == 0) {
        rc = err_set(err, ERR_FORMAT,
                     "%s: no images found; expected {prompt_id}/{seed}.png inside it", root);
        goto out;
    }
    if ((rc = begin_apply(c, err)))
        goto out;
    int cancelled = 0;
    for (size_t i = 0; i < n && !cancelled; i++) {
        IRow *ir = &rows[i];
        StoreImage meta = {.has_seed = ir->has_seed, .seed = ir->seed};
        int64_t id;
        size_t before = c->rep->n_errors;
        if (ensure_image(c, 0, &ir->img, ir->prompt_id, &meta, &id) &&
            c->rep->n_errors > before) {
            /* name the file: ensure_image had no line to give */
            char *m = c->rep->errors[c->rep->n_errors - 1];
            c->rep->errors[c->rep->n_errors - 1] = xasprintf("%s (%s)", m, ir->where);
            free(m);
        }
        cancelled = progress(c, i + 1, n);
    }
    rc = finish_apply(c, cancelled, err);
out:
    for (size_t i = 0; i < n; i++) {
        free(rows[i].where);
        imgref_deinit(&rows[i].img);
    }
    free(rows);
    return rc;
}

/* ---- pairs.jsonl ------------------------------------------------------------------------------ */

typedef struct PRow {
    long line;
    int64_t prompt_id;     /* 0: create the prompt below */
    char *new_ext;         /* id for a prompt given by text only */
    char *text;
    ImgRef pos, neg;
    double label;
    char *aspect;          /* "" = combined */
    double rating_pos, rating_neg, rating_diff;
} PRow;

static int json_num(Ctx *c, long line, json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    *out = NAN;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v)) {
        problem(c, line, "\"%s\" must be a number", key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static const char *json_str(Ctx *c, long line, json_t *o, const char *key, int required) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            problem(c, line, "\"%s\" is missing", key);
        return NULL;
    }
    if (!json_is_string(v) || !*json_string_value(v)) {
        problem(c, line, "\"%s\" must be a non-empty string", key);
        return NULL;
    }
    return json_string_value(v);
}

/* The prompt a pair names: a prompt_id, "prompt_N" for prompt_id N, or the prompt text. */
static void pair_prompt(Ctx *c, PRow *p, const char *s) {
    if ((p->prompt_id = prompt_lookup(c, s)))
        return;
    if (strncmp(s, "prompt_", 7) == 0 && (p->prompt_id = prompt_lookup(c, s + 7)))
        return;
    StorePrompt sp;
    if (store_prompt_by_text(c->st, s, &sp, NULL) == 0) {
        p->prompt_id = sp.id;
        store_prompt_deinit(&sp);
        return;
    }
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(s, strlen(s), hex);
    p->new_ext = xasprintf("text-%.12s", hex);
    p->text = xstrdup(s);
}

static int aspect_known(const Ctx *c, const char *name) {
    for (size_t k = 0; k < c->n_aspects; k++)
        if (strcmp(c->aspects[k].name, name) == 0)
            return 1;
    return 0;
}

static int import_pairs(Ctx *c, const char *path, Err *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(err, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    PRow *rows = NULL;
    size_t n = 0;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    long line = 0;
    while ((len = getline(&buf, &cap, f)) >= 0) {
        line++;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        const char *s = buf;
        if (line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
            s += 3;
        if (is_blank(s))
            continue;
        c->rep->rows++;
        json_error_t je;
        json_t *o = json_loads(s, JSON_REJECT_DUPLICATES, &je);
        if (!o) {
            problem(c, line, "not valid JSON at column %d: %s", je.column, je.text);
            continue;
        }
        if (!json_is_object(o)) {
            problem(c, line, "each line must be one JSON object {\"prompt\": ..., \"img_pos\": "
                             "..., \"img_neg\": ..., \"label\": 1.0}");
            json_decref(o);
            continue;
        }
        PRow p = {.line = line};
        const char *prompt = json_str(c, line, o, "prompt", 1);
        const char *ip = json_str(c, line, o, "img_pos", 1);
        const char *in = json_str(c, line, o, "img_neg", 1);
        json_t *ja = json_object_get(o, "aspect");
        const char *asp = NULL;
        int bad_aspect = 0;
        if (ja && json_is_string(ja))
            asp = json_string_value(ja);
        else if (ja && !json_is_null(ja)) {
            problem(c, line, "\"aspect\" must be a string (an aspect name or \"combined\")");
            bad_aspect = 1;
        }
        int bad = !prompt || !ip || !in || bad_aspect;
        bad |= json_num(c, line, o, "label", &p.label) != 0;
        bad |= json_num(c, line, o, "rating_pos", &p.rating_pos) != 0;
        bad |= json_num(c, line, o, "rating_neg", &p.rating_neg) != 0;
        bad |= json_num(c, line, o, "rating_diff", &p.rating_diff) != 0;
        if (isnan(p.label))
            p.label = 1.0;
        if (!bad && (p.label < 0 || p.label > 1)) {
            problem(c, line, "label %g is outside 0..1 (1.0 = img_pos preferred)", p.label);
            bad = 1;
        }
        if (asp && *asp && strcmp(asp, "combined") != 0 && !aspect_known(c, asp)) {
            problem(c, line, "aspect \"%s\" is not an aspect of this store (use one of the "
                             "aspect names, or \"combined\")", asp);
            bad = 1;
        }
        if (!bad && strcmp(ip, in) == 0) {
            problem(c, line, "img_pos and img_neg are the same image");
            bad = 1;
        }
        if (!bad) {
            p.aspect = xstrdup(asp && strcmp(asp, "combined") != 0 ? asp : "");
            pair_prompt(c, &p, prompt);
            resolve_image(c, ip, &p.pos);
            resolve_image(c, in, &p.neg);
            if (p.label < 0.5) { /* keep img_pos the preferred image */
                ImgRef t = p.pos;
                p.pos = p.neg;
                p.neg = t;
                double r = p.rating_pos;
                p.rating_pos = p.rating_neg;
                p.rating_neg = r;
                p.rating_diff = -p.rating_diff;
                p.label = 1.0 - p.label;
            }
            rows = xrealloc(rows, (n + 1) * sizeof *rows);
            rows[n++] = p;
        }
        json_decref(o);
    }
    int read_err = ferror(f);
    free(buf);
    fclose(f);
    int rc = 0;
    if (read_err) {
        rc = err_set(err, ERR_IO, "%s: read error", path);
        goto out;
    }
    if (n_problems(c)) {
        rc = fail_with_problems(c, ERR_FORMAT, err);
        goto out;
    }
    if ((rc = begin_apply(c, err)))
        goto out;
    int cancelled = 0;
    for (size_t i = 0; i < n && !cancelled; i++) {
        PRow *p = &rows[i];
        Err e = {0};
        if (!p->prompt_id) {
            int added = 0;
            if (store_prompt_add(c->st, p->new_ext, p->text, &p->prompt_id, &added, &e)) {
                problem_err(c, p->line, "prompt", &e);
                continue;
            }
            c->rep->prompts_added += added;
        }
        StorePair sp = {.prompt_id = p->prompt_id, .label = p->label, .aspect = p->aspect,
                        .rating_pos = p->rating_pos, .rating_neg = p->rating_neg,
                        .rating_diff = p->rating_diff, .source = "import"};
        if (ensure_image(c, p->line, &p->pos, p->prompt_id, NULL, &sp.img_pos) ||
            ensure_image(c, p->line, &p->neg, p->prompt_id, NULL, &sp.img_neg))
            continue;
        int added = 0;
        if (store_pair_add(c->st, &sp, &added, &e)) {
            problem_err(c, p->line, NULL, &e);
            continue;
        }
        c->rep->pairs_added += added;
        c->rep->pairs_unchanged += !added;
        cancelled = progress(c, i + 1, n);
    }
    rc = finish_apply(c, cancelled, err);
out:
    for (size_t i = 0; i < n; i++) {
        free(rows[i].new_ext);
        free(rows[i].text);
        free(rows[i].aspect);
        imgref_deinit(&rows[i].pos);
        imgref_deinit(&rows[i].neg);
    }
    free(rows);
    return rc;
}

/* ---- entry points ----------------------------------------------------------------------------- */

static const char *const kind_names[] = {"prompts", "ratings", "pairs", "generated", "images"};

int import_kind_parse(const char *name, ImportKind *kind, Err *err) {
    for (size_t i = 0; i < ARRAY_LEN(kind_names); i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (ImportKind)i;
            return 0;
        }
    }
    return err_set(err, ERR_USAGE,
                   "unknown kind '%s': import prompts, ratings, pairs, generated or images",
                   name);
}

const char *import_kind_name(ImportKind kind) {
    ASSERT((size_t)kind < ARRAY_LEN(kind_names));
    return kind_names[kind];
}

int import_path(Store *st, ImportKind kind, const char *path, const ImportOptions *opts,
                ImportReport *report, Err *err) {
    memset(report, 0, sizeof *report);
    Ctx c = {.st = st, .file = path, .opts = opts, .rep = report};
    c.dir = dir_of(path);
    c.source = xasprintf("import:%s", base_of(path));
    Err e = {0};
    int rc = store_aspects_list(st, &c.aspects, &c.n_aspects, &e);
    if (rc) {
        err_set(err, rc, "%s", e.msg);
        goto out;
    }
    if (kind == IMPORT_IMAGES) {
        rc = import_images(&c, path, err);
    } else if (kind == IMPORT_PAIRS) {
        rc = import_pairs(&c, path, err);
    } else {
        if (is_dir(path)) {
            rc = err_set(err, ERR_USAGE, "%s is a folder; 'import %s' takes a CSV file", path,
                         import_kind_name(kind));
            goto report;
        }
        CsvTable t;
        if ((rc = fmt_csv_read(path, &t, err)))
            goto report;
        if (t.n_rows == 0) {
            rc = err_set(err, ERR_FORMAT, "%s: the file is empty; the first line must be the "
                                          "header (see 'easel import --help')",
                         path);
        } else if (kind == IMPORT_PROMPTS) {
            rc = import_prompts(&c, &t, err);
        } else if (kind == IMPORT_RATINGS) {
            rc = import_ratings(&c, &t, err);
        } else {
            rc = import_generated(&c, &t, err);
        }
        fmt_csv_deinit(&t);
    }
report:
    if (report->images_missing > MISSING_LISTED)
        warn(&c, 0, "%zu more images are not on disk either; they were imported as missing",
             report->images_missing - MISSING_LISTED);
    if (c.n_more_errors) {
        append(&report->errors, &report->n_errors,
               xasprintf("%s: ... and %zu more problems", path, c.n_more_errors));
    }
    if (c.n_more_warnings)
        append(&report->warnings, &report->n_warnings,
               xasprintf("%s: ... and %zu more warnings", path, c.n_more_warnings));
    if (rc && report->n_errors == 0) /* errors that were not per-line problems */
        append(&report->errors, &report->n_errors,
               xstrdup(err && err->msg[0] ? err->msg : err_name(rc)));
out:
    store_aspects_free(c.aspects, c.n_aspects);
    map_free(&c.images);
    map_free(&c.prompts);
    free(c.dir);
    free(c.source);
    return rc;
}

void import_report_deinit(ImportReport *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n_warnings; i++)
        free(r->warnings[i]);
    for (size_t i = 0; i < r->n_errors; i++)
        free(r->errors[i]);
    free(r->warnings);
    free(r->errors);
    memset(r, 0, sizeof *r);
}
