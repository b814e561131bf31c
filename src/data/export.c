/* export — ratings, template, prompts and pairs in the original formats. See export.h.
 *
 * Design: load each table once (catalog lists, store_ratings_all), build output rows in
 * memory, sort them with a natural-order comparison, write. Memory is a few words per
 * rating, which is fine for the hundreds of thousands of ratings a team produces.
 */
#include "export.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "base.h"
#include "fmt_csv.h"
#include "pairs.h"
#include "store_catalog.h"
#include "store_ratings.h"
#include "store_settings.h"
#include "trust.h"

void export_options_init(ExportOptions *o) {
    memset(o, 0, sizeof *o);
    o->min_rating_diff = PAIRS_MIN_DIFF_DEFAULT;
}

static const char *const kind_names[] = {"ratings", "pairs", "prompts", "template"};

int export_kind_parse(const char *name, ExportKind *kind, Err *err) {
    for (size_t i = 0; i < ARRAY_LEN(kind_names); i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (ExportKind)i;
            return 0;
        }
    }
    return err_set(err, ERR_USAGE,
                   "unknown kind '%s': export ratings, pairs, prompts or template", name);
}

char *export_format_number(double v, char buf[32]) {
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, 32, "%.*g", p, v);
        if (strtod(buf, NULL) == v && !strchr(buf, 'e'))
            return buf;
    }
    snprintf(buf, 32, "%.17g", v);
    return buf;
}

/* Compare with digit runs as numbers ("p2" < "p10"); ties broken bytewise (total order). */
static int natcmp(const char *a, const char *b) {
    const char *x = a, *y = b;
    while (*x && *y) {
        if (isdigit((unsigned char)*x) && isdigit((unsigned char)*y)) {
            while (*x == '0' && isdigit((unsigned char)x[1]))
                x++;
            while (*y == '0' && isdigit((unsigned char)y[1]))
                y++;
            size_t nx = 0, ny = 0;
            while (isdigit((unsigned char)x[nx]))
                nx++;
            while (isdigit((unsigned char)y[ny]))
                ny++;
            if (nx != ny)
                return nx < ny ? -1 : 1;
            int k = memcmp(x, y, nx);
            if (k)
                return k;
            x += nx;
            y += ny;
        } else if (*x != *y) {
            return (unsigned char)*x < (unsigned char)*y ? -1 : 1;
        } else {
            x++;
            y++;
        }
    }
    if (*x || *y)
        return *x ? 1 : -1;
    return strcmp(a, b);
}

/* ---- the loaded store ------------------------------------------------------------------------ */

typedef struct Data {
    StoreAspect *asp;
    size_t n_asp;
    StorePrompt *pr;       /* id order */
    size_t n_pr;
    StoreImage *img;       /* id order */
    size_t n_img;
    StoreAnnotator *ann;   /* name order */
    size_t n_ann;
    StoreRating *rat;
    size_t n_rat;
    char **img_out;        /* (n_img) image path as written */
} Data;

static void data_free(Data *d) {
    store_aspects_free(d->asp, d->n_asp);
    store_prompts_free(d->pr, d->n_pr);
    for (size_t i = 0; d->img_out && i < d->n_img; i++)
        free(d->img_out[i]);
    free(d->img_out);
    store_images_free(d->img, d->n_img);
    store_annotators_free(d->ann, d->n_ann);
    free(d->rat);
    memset(d, 0, sizeof *d);
}

/* True if PATH is DIR or lies inside it (both absolute, normalised). */
static int inside(const char *path, const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* The image path as written: relative to REL when the image lies inside REL, or when both lie
 * inside the workspace (the store's folder, which moves whole) — then with "../" steps —
 * else absolute. */
static char *out_path(Store *st, const char *stored, const char *rel) {
    char *abs = store_path_resolve(st, stored);
    if (!rel)
        return abs;
    if (inside(abs, rel) && strcmp(rel, "/") != 0) {
        size_t n = strlen(rel);
        while (n > 1 && rel[n - 1] == '/')
            n--;
        char *r = xstrdup(abs + n + 1);
        free(abs);
        return r;
    }
    const char *ws = store_dir(st);
    if (strcmp(ws, "/") == 0 || !inside(abs, ws) || !inside(rel, ws))
        return abs;
    /* longest common folder of REL and the image, then one "../" per folder of REL below it */
    size_t common = 0;
    for (size_t i = 0; rel[i] && abs[i] == rel[i]; i++)
        if (rel[i] == '/')
            common = i;
    if (rel[common] == '/' && abs[strlen(rel)] == '/' && strncmp(abs, rel, strlen(rel)) == 0)
        common = strlen(rel);
    size_t ups = 0;
    for (const char *c = rel + common; *c; c++)
        ups += *c == '/';
    size_t len = 3 * ups + strlen(abs + common + 1) + 1;
    char *r = xmalloc(len);
    r[0] = '\0';
    for (size_t i = 0; i < ups; i++)
        strcat(r, "../");
    strcat(r, abs + common + 1);
    free(abs);
    return r;
}

static int data_load(Store *st, Data *d, int ratings, const ExportOptions *o, Err *err) {
    memset(d, 0, sizeof *d);
    int rc;
    if ((rc = store_aspects_list(st, &d->asp, &d->n_asp, err)) ||
        (rc = store_prompts_list(st, &d->pr, &d->n_pr, err)) ||
        (rc = store_images_list(st, 0, &d->img, &d->n_img, err)) ||
        (rc = store_annotators_list(st, &d->ann, &d->n_ann, err)) ||
        (ratings && (rc = store_ratings_all(st, &d->rat, &d->n_rat, err)))) {
        data_free(d);
        return rc;
    }
    d->img_out = xcalloc(d->n_img ? d->n_img : 1, sizeof *d->img_out);
    for (size_t i = 0; i < d->n_img; i++)
        d->img_out[i] = out_path(st, d->img[i].path, o->relative_to);
    return 0;
}

/* bsearch over rows in id order whose first member is their int64_t id. */
static int cmp_id(const void *key, const void *row) {
    int64_t k = *(const int64_t *)key, id = *(const int64_t *)row;
    return (k > id) - (k < id);
}
_Static_assert(offsetof(StoreImage, id) == 0 && offsetof(StorePrompt, id) == 0,
               "cmp_id reads the id first");

static size_t find_image(const Data *d, int64_t id) {
    const StoreImage *im = bsearch(&id, d->img, d->n_img, sizeof *d->img, cmp_id);
    ASSERT(im);
    return (size_t)(im - d->img);
}

static const StorePrompt *find_prompt(const Data *d, int64_t id) {
    return bsearch(&id, d->pr, d->n_pr, sizeof *d->pr, cmp_id);
}

static const char *prompt_ext(const Data *d, int64_t id) {
    const StorePrompt *p = id > 0 ? find_prompt(d, id) : NULL;
    return p ? p->ext_id : "";
}

static const char *annotator_name(const Data *d, int64_t id) {
    for (size_t i = 0; i < d->n_ann; i++)
        if (d->ann[i].id == id)
            return d->ann[i].name;
    return "";
}

/* ---- CSV tables: ratings and template -------------------------------------------------------- */

typedef struct Row {
    const char *ext;       /* prompt_id */
    const char *path;      /* image path as written */
    const char *annotator; /* NULL without the column */
    double *val;           /* (n_asp) NAN = blank */
} Row;

static int cmp_row(const void *a, const void *b) {
    const Row *x = a, *y = b;
    int k = natcmp(x->ext, y->ext);
    if (!k)
        k = natcmp(x->path, y->path);
    if (!k && x->annotator)
        k = strcmp(x->annotator, y->annotator);
    return k;
}

static int write_header(FILE *out, const Data *d, int with_annotator) {
    size_t n = 2 + d->n_asp + (with_annotator ? 1 : 0);
    char **f = xcalloc(n, sizeof *f);
    f[0] = xstrdup("prompt_id");
    f[1] = xstrdup("image_path");
    for (size_t k = 0; k < d->n_asp; k++)
        f[2 + k] = xasprintf("%s_rating", d->asp[k].name);
    if (with_annotator)
        f[n - 1] = xstrdup("annotator");
    int rc = fmt_csv_write_row(out, (const char *const *)f, n);
    base_strv_free(f, n);
    return rc;
}

static int write_rows(FILE *out, const Data *d, Row *rows, size_t n, int with_annotator) {
    qsort(rows, n, sizeof *rows, cmp_row);
    size_t nf = 2 + d->n_asp + (with_annotator ? 1 : 0);
    const char **f = xcalloc(nf, sizeof *f);
    char (*num)[32] = xcalloc(d->n_asp ? d->n_asp : 1, sizeof *num);
    int rc = write_header(out, d, with_annotator);
    for (size_t i = 0; i < n && !rc; i++) {
        f[0] = rows[i].ext;
        f[1] = rows[i].path;
        for (size_t k = 0; k < d->n_asp; k++)
            f[2 + k] = rows[i].val && !isnan(rows[i].val[k])
                           ? export_format_number(rows[i].val[k], num[k])
                           : "";
        if (with_annotator)
            f[nf - 1] = rows[i].annotator;
        rc = fmt_csv_write_row(out, f, nf);
    }
    free(num);
    free(f);
    return rc;
}

static int export_ratings(Data *d, FILE *out, const ExportOptions *o, size_t *n_rows) {
    size_t na = d->n_asp;
    Row *rows = xcalloc(d->n_rat ? d->n_rat : 1, sizeof *rows);
    double *vals = xmalloc((d->n_rat ? d->n_rat : 1) * (na ? na : 1) * sizeof *vals);
    size_t n = 0;
    if (o->per_annotator) {
        /* store order: prompt, image, annotator, aspect → group runs of (image, annotator) */
        for (size_t i = 0; i < d->n_rat; i++) {
            const StoreRating *r = &d->rat[i];
            if (i == 0 || r->image_id != d->rat[i - 1].image_id ||
                r->annotator_id != d->rat[i - 1].annotator_id) {
                size_t im = find_image(d, r->image_id);
                rows[n].ext = prompt_ext(d, d->img[im].prompt_id);
                rows[n].path = d->img_out[im];
                rows[n].annotator = annotator_name(d, r->annotator_id);
                rows[n].val = &vals[n * na];
                for (size_t k = 0; k < na; k++)
                    rows[n].val[k] = NAN;
                n++;
            }
            if ((size_t)r->aspect_pos < na)
                rows[n - 1].val[r->aspect_pos] = r->value;
        }
    } else {
        PairsMeans m;
        pairs_means_init(&m, d->rat, d->n_rat, (int)na, 0);
        for (size_t i = 0; i < m.n_images; i++) {
            size_t im = find_image(d, m.image_id[i]);
            rows[n].ext = prompt_ext(d, d->img[im].prompt_id);
            rows[n].path = d->img_out[im];
            rows[n].val = &vals[n * na];
            memcpy(rows[n].val, &m.mean[i * na], na * sizeof *vals);
            n++;
        }
        pairs_means_deinit(&m);
    }
    int rc = write_rows(out, d, rows, n, o->per_annotator);
    *n_rows = n;
    free(vals);
    free(rows);
    return rc;
}

static int export_template(Data *d, FILE *out, size_t *n_rows) {
    Row *rows = xcalloc(d->n_img ? d->n_img : 1, sizeof *rows);
    for (size_t i = 0; i < d->n_img; i++) {
        rows[i].ext = prompt_ext(d, d->img[i].prompt_id);
        rows[i].path = d->img_out[i];
    }
    int rc = write_rows(out, d, rows, d->n_img, 0);
    *n_rows = d->n_img;
    free(rows);
    return rc;
}

static int cmp_prompt(const void *a, const void *b) {
    return natcmp(((const StorePrompt *)a)->ext_id, ((const StorePrompt *)b)->ext_id);
}

static int export_prompts(Data *d, FILE *out, size_t *n_rows) {
    if (d->n_pr) /* no prompts: d->pr may be NULL, which qsort must not get */
        qsort(d->pr, d->n_pr, sizeof *d->pr, cmp_prompt);
    const char *hdr[] = {"prompt_id", "prompt"};
    int rc = fmt_csv_write_row(out, hdr, 2);
    for (size_t i = 0; i < d->n_pr && !rc; i++) {
        const char *f[] = {d->pr[i].ext_id, d->pr[i].text};
        rc = fmt_csv_write_row(out, f, 2);
    }
    *n_rows = d->n_pr;
    return rc;
}

/* ---- pairs.jsonl ----------------------------------------------------------------------------- */

typedef struct PairOut {
    Pair p;
    const char *ext;
    const char *a, *b;     /* the two paths in sorted order */
    const char *annotator; /* NULL in mean mode */
} PairOut;

static int cmp_pair(const void *x, const void *y) {
    const PairOut *p = x, *q = y;
    int k = 0;
    if (p->annotator && q->annotator)
        k = strcmp(p->annotator, q->annotator);
    if (!k)
        k = natcmp(p->ext, q->ext);
    if (!k)
        k = natcmp(p->a, q->a);
    if (!k)
        k = natcmp(p->b, q->b);
    if (!k) {
        int ap = p->p.aspect < 0 ? 1 << 30 : p->p.aspect;
        int aq = q->p.aspect < 0 ? 1 << 30 : q->p.aspect;
        k = ap < aq ? -1 : ap > aq;
    }
    return k;
}

static void collect_pairs(const Data *d, int64_t annotator, const char *name, double min_diff,
                          PairOut **v, size_t *n) {
    PairsMeans m;
    pairs_means_init(&m, d->rat, d->n_rat, (int)d->n_asp, annotator);
    Pair *p;
    size_t np;
    pairs_derive(&m, min_diff, PAIRS_ALL, &p, &np);
    *v = xrealloc(*v, (*n + np + 1) * sizeof **v);
    for (size_t i = 0; i < np; i++) {
        PairOut *o = &(*v)[(*n)++];
        o->p = p[i];
        o->ext = prompt_ext(d, p[i].prompt_id);
        const char *pp = d->img_out[find_image(d, p[i].img_pos)];
        const char *pn = d->img_out[find_image(d, p[i].img_neg)];
        int pos_first = natcmp(pp, pn) <= 0;
        o->a = pos_first ? pp : pn;
        o->b = pos_first ? pn : pp;
        o->annotator = name;
    }
    free(p);
    pairs_means_deinit(&m);
}

static int export_pairs(Data *d, FILE *out, const ExportOptions *o, size_t *n_rows) {
    PairOut *v = NULL;
    size_t n = 0;
    if (o->per_annotator)
        for (size_t i = 0; i < d->n_ann; i++)
            collect_pairs(d, d->ann[i].id, d->ann[i].name, o->min_rating_diff, &v, &n);
    else
        collect_pairs(d, 0, NULL, o->min_rating_diff, &v, &n);
    if (n)
        qsort(v, n, sizeof *v, cmp_pair);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const Pair *p = &v[i].p;
        const StorePrompt *pr = find_prompt(d, p->prompt_id);
        json_t *j = json_object();
        json_object_set_new(j, "prompt", json_string(pr ? pr->text : ""));
        json_object_set_new(j, "prompt_id", json_string(v[i].ext));
        json_object_set_new(j, "img_pos", json_string(d->img_out[find_image(d, p->img_pos)]));
        json_object_set_new(j, "img_neg", json_string(d->img_out[find_image(d, p->img_neg)]));
        json_object_set_new(j, "label", json_real(p->label));
        json_object_set_new(j, "rating_pos", json_real(p->rating_pos));
        json_object_set_new(j, "rating_neg", json_real(p->rating_neg));
        json_object_set_new(j, "rating_diff", json_real(p->rating_diff));
        json_object_set_new(j, "aspect", json_string(p->aspect == PAIRS_COMBINED
                                                         ? "combined"
                                                         : d->asp[p->aspect].name));
        if (v[i].annotator)
            json_object_set_new(j, "annotator", json_string(v[i].annotator));
        char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
        json_decref(j);
        if (!s || fputs(s, out) < 0 || fputc('\n', out) == EOF)
            rc = ERR_IO;
        free(s);
    }
    *n_rows = n;
    free(v);
    return rc;
}

/* ---- entry points ---------------------------------------------------------------------------- */

int export_write(Store *st, ExportKind kind, FILE *out, const ExportOptions *opts,
                 size_t *n_rows, Err *err) {
    ExportOptions dflt;
    if (!opts) {
        export_options_init(&dflt);
        opts = &dflt;
    }
    /* relative_to may come relative to the cwd (a job's parameter): make it absolute */
    ExportOptions o = *opts;
    char rel[PATH_MAX];
    if (o.relative_to && o.relative_to[0] != '/')
        o.relative_to = realpath(o.relative_to, rel) ? rel : NULL;
    opts = &o;
    /* Blind rating: whoever this export is for sees only their own ratings unless they may
     * review; per-annotator exports are the reviewers' (trust.h). */
    int with_ratings = kind == EXPORT_RATINGS || kind == EXPORT_PAIRS;
    int only_self = 0;
    const char *viewer = store_actor(st);
    int rc = with_ratings ? trust_blind_view(st, viewer, &only_self, err) : 0;
    if (rc)
        return rc;
    if (only_self && o.per_annotator)
        return trust_require_review(st, viewer, "a per-annotator export", err);
    Data d;
    rc = data_load(st, &d, with_ratings, opts, err);
    if (rc)
        return rc;
    if (only_self) {
        int64_t me = -1;
        for (size_t i = 0; i < d.n_ann; i++)
            if (strcmp(d.ann[i].name, viewer) == 0)
                me = d.ann[i].id;
        size_t k = 0;
        for (size_t i = 0; i < d.n_rat; i++)
            if (d.rat[i].annotator_id == me)
                d.rat[k++] = d.rat[i];
        d.n_rat = k;
    }
    size_t n = 0;
    switch (kind) {
    case EXPORT_RATINGS:
        rc = export_ratings(&d, out, opts, &n);
        break;
    case EXPORT_TEMPLATE:
        rc = export_template(&d, out, &n);
        break;
    case EXPORT_PROMPTS:
        rc = export_prompts(&d, out, &n);
        break;
    case EXPORT_PAIRS:
        rc = export_pairs(&d, out, opts, &n);
        break;
    }
    data_free(&d);
    if (!rc && (fflush(out) != 0 || ferror(out)))
        rc = ERR_IO;
    if (rc == ERR_IO)
        return err_set(err, ERR_IO, "write failed: %s", strerror(errno));
    if (n_rows)
        *n_rows = n;
    return rc;
}

int export_to_file(Store *st, ExportKind kind, const char *path, const ExportOptions *opts,
                   size_t *n_rows, Err *err) {
    AtomicFile *af;
    int rc = atomic_file_open(path, &af, err);
    if (rc)
        return rc;
    rc = export_write(st, kind, atomic_file_stream(af), opts, n_rows, err);
    if (rc) {
        atomic_file_abort(af);
        err_prefix(err, "%s", path);
        return rc;
    }
    return atomic_file_commit(af, err);
}
