/* tune_pairs_file — a pairs.jsonl as a tuning run's pairs (tune_pairs_src.h). The lines are
 * parsed by the importer's own line parser (pairs_jsonl.h); then every distinct image is read
 * and decoded on several threads, and the first problem in line order is the error. */
#include "tune_pairs_src.h"
#include "tune_pairs_int.h"
#include "import_int.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "fmt_csv.h"
#include "image.h"
#include "infile.h"
#include "pairs_jsonl.h"
#include "sha256.h"
#include "store_catalog.h"

/* ---- reading and decoding the images, once per distinct path ---- */

typedef struct CheckPool {
    TuneImgCheck *v;
    size_t n;
    atomic_size_t next;
} CheckPool;

static void check_one(TuneImgCheck *c) {
    struct stat sb;
    if (stat(c->path, &sb) != 0) {
        c->missing = 1;
        return;
    }
    c->dev = sb.st_dev;
    c->ino = sb.st_ino;
    unsigned char *buf;
    size_t n;
    if (infile_read_all(c->path, "PNG/JPEG image", INFILE_MAX_IMAGE, &buf, &n, &c->err))
        return;
    if (n == 0) {
        free(buf);
        err_set(&c->err, ERR_FORMAT, "%s: the file is empty (0 bytes), not an image", c->path);
        return;
    }
    sha256_hex(buf, n, c->sha);
    Image im;
    int rc = image_decode(buf, n, c->path, 3, &im, &c->err);
    free(buf);
    if (rc)
        return;
    image_deinit(&im);
    c->ok = 1;
}

static void *check_worker(void *arg) {
    CheckPool *p = arg;
    for (size_t i; (i = atomic_fetch_add(&p->next, 1)) < p->n;)
        check_one(&p->v[i]);
    return NULL;
}

void tune_img_check_all(TuneImgCheck *v, size_t n) {
    CheckPool p = {.v = v, .n = n};
    atomic_init(&p.next, 0);
    import_run_pool(check_worker, &p, n);
}

/* ---- prompts ---- */

typedef struct Prompts {
    Store *st;
    char *csv_path;  /* prompts.csv next to the pairs file, or NULL */
    int csv_loaded;
    CsvTable csv;
    int col_id, col_text;
    ImportMap ids;   /* prompt_id → row of csv (the first with text) */
} Prompts;

/* "prompt_N" (N digits): the original's prompt ids. */
static int looks_like_id(const char *s) {
    if (strncmp(s, "prompt_", 7) != 0 || !s[7])
        return 0;
    return strspn(s + 7, "0123456789") == strlen(s + 7);
}

/* Load the prompts.csv once: 0, or an error naming it. */
static int csv_load(Prompts *pr, Err *err) {
    if (pr->csv_loaded)
        return 0;
    pr->csv_loaded = 1;
    int rc = fmt_csv_read(pr->csv_path, &pr->csv, err);
    if (rc)
        return rc;
    if (pr->csv.n_rows == 0 || (pr->col_id = fmt_csv_column(&pr->csv.rows[0], "prompt_id")) < 0 ||
        (pr->col_text = fmt_csv_column(&pr->csv.rows[0], "prompt")) < 0) {
        fmt_csv_deinit(&pr->csv);
        memset(&pr->csv, 0, sizeof pr->csv);
        return err_set(err, ERR_FORMAT,
                       "%s: the first line must be the header prompt_id,prompt (it is read to "
                       "turn the pairs file's prompt ids into text)",
                       pr->csv_path);
    }
    for (size_t r = 1; r < pr->csv.n_rows; r++) {
        const CsvRow *row = &pr->csv.rows[r];
        if ((size_t)pr->col_id >= row->n || (size_t)pr->col_text >= row->n ||
            !row->field[pr->col_text][0])
            continue;
        int64_t *slot = import_map_slot(&pr->ids, row->field[pr->col_id], 1);
        if (!*slot) /* new (rows start at 1) */
            *slot = (int64_t)r;
    }
    return 0;
}

/* The text of prompt id ID in the prompts.csv; NULL if absent. */
static const char *csv_text(Prompts *pr, const char *id) {
    const int64_t *slot = import_map_slot(&pr->ids, id, 0);
    return slot ? pr->csv.rows[*slot].field[pr->col_text] : NULL;
}

/* The store's text of prompt id ID (malloc'd), NULL if unknown or without text. */
static char *store_text(Store *st, const char *id) {
    StorePrompt sp;
    if (!st || store_prompt_by_ext(st, id, &sp, NULL) != 0)
        return NULL;
    char *t = sp.text && *sp.text ? xstrdup(sp.text) : NULL;
    store_prompt_deinit(&sp);
    return t;
}

/* The prompt text of a line: *text malloc'd, or an error message in ERR (no file prefix). */
static int prompt_text(Prompts *pr, const PairsLine *pl, char **text, Err *err) {
    const char *ids[3] = {pl->prompt_id, pl->prompt,
                          looks_like_id(pl->prompt) ? pl->prompt + 7 : NULL};
    for (int i = 0; i < 3; i++)
        if (ids[i] && (*text = store_text(pr->st, ids[i])))
            return 0;
    if (pr->csv_path) {
        int rc = csv_load(pr, err);
        if (rc)
            return rc;
        for (int i = 0; i < 3; i++) {
            const char *t = ids[i] ? csv_text(pr, ids[i]) : NULL;
            if (t) {
                *text = xstrdup(t);
                return 0;
            }
        }
    }
    if (looks_like_id(pl->prompt))
        return err_set(err, ERR_FORMAT,
                       "prompt \"%s\" is a prompt id with no text known (%s); import the "
                       "prompts.csv into the store (easel import prompts FILE), or put it "
                       "next to the pairs file",
                       pl->prompt,
                       pr->csv_path ? "not in the store, nor in the prompts.csv beside it"
                                    : "not in the store, and no prompts.csv beside it");
    *text = xstrdup(pl->prompt);
    return 0;
}

/* ---- the loader ---- */

typedef struct Row {
    long line;
    char *prompt;
    char *prompt_neg; /* ADPO's rejected context, "prompt_neg" (tune16), or NULL */
    size_t img[2]; /* pos, neg: indices into the checks */
    double label;
} Row;

/* The first problem found while parsing (line order): kept, the rest ignored. */
typedef struct FirstProblem {
    long line;
    int code; /* ERR_FORMAT unless set otherwise */
    char msg[ERR_MSG_LEN];
} FirstProblem;

static void first_problem(void *ud, long line, const char *msg) {
    FirstProblem *fp = ud;
    if (!fp->line) {
        fp->line = line;
        snprintf(fp->msg, sizeof fp->msg, "%s", msg);
    }
}

static char *join(const char *dir, const char *raw) {
    if (raw[0] == '/' || strcmp(dir, ".") == 0)
        return xstrdup(raw);
    return xasprintf("%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", raw);
}

int tune_pairs_load_file_ex(Store *st, const char *path, const char *base_dir,
                            TunePairsFileInfo *info, TunePairs *out, Err *err) {
    memset(out, 0, sizeof *out);
    TunePairsFileInfo inf = {0};
    unsigned char *buf;
    size_t len;
    int rc = infile_read_all(path, "pairs file", INFILE_MAX_CSV, &buf, &len, err);
    if (rc)
        return rc;
    const unsigned char *z = memchr(buf, 0, len);
    if (z) {
        long line = 1;
        for (const unsigned char *p = buf; p < z; p++)
            line += *p == '\n';
        free(buf);
        return err_set(err, ERR_FORMAT,
                       "%s:%ld: a NUL byte: a pairs file is UTF-8 text, one JSON object per "
                       "line; save it as UTF-8",
                       path, line);
    }
    char *file_dir = import_dir_of(path);
    char *dir = xstrdup(base_dir ? base_dir : file_dir);
    Prompts pr = {.st = st};
    char *csv = join(file_dir, "prompts.csv");
    if (base_is_file(csv))
        pr.csv_path = csv;
    else
        free(csv);

    Row *rows = NULL;
    size_t n = 0, cap = 0;
    TuneImgCheck *chk = NULL;
    size_t n_chk = 0, cap_chk = 0;
    ImportMap map = {0}; /* image path → index + 1 into chk */
    FirstProblem fp = {0};
    long line = 0;
    char *next = (char *)buf, *s;
    while ((s = pairs_jsonl_next_line(&next, &line)) && !fp.line) {
        if (!s[strspn(s, " \t")])
            continue;
        inf.lines++;
        PairsLine pl;
        if (pairs_line_parse(s, line, &pl, first_problem, &fp))
            break;
        if (pl.label == 0.5) {
            inf.neutral++;
            pairs_line_deinit(&pl);
            continue;
        }
        Err pe = {0};
        char *text = NULL;
        if (prompt_text(&pr, &pl, &text, &pe)) {
            first_problem(&fp, line, pe.msg);
            pairs_line_deinit(&pl);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            rows = xrealloc(rows, cap * sizeof *rows);
        }
        Row *r = &rows[n++];
        *r = (Row){.line = line, .prompt = text, .label = pl.label};
        /* tune16: ADPO's rejected context, when the line names one */
        r->prompt_neg = xstrdup(json_string_value(json_object_get(pl.obj, "prompt_neg")));
        const char *raw[2] = {pl.img_pos, pl.img_neg};
        for (int k = 0; k < 2; k++) {
            char *p = join(dir, raw[k]);
            if (n_chk == cap_chk) {
                cap_chk = cap_chk ? 2 * cap_chk : 128;
                chk = xrealloc(chk, cap_chk * sizeof *chk);
            }
            int64_t *slot = import_map_slot(&map, p, 1);
            if (!*slot) {
                chk[n_chk] = (TuneImgCheck){.path = p};
                *slot = (int64_t)++n_chk;
            } else {
                free(p);
            }
            r->img[k] = (size_t)*slot - 1;
        }
        pairs_line_deinit(&pl);
    }
    import_map_free(&map);
    free(buf);

    if (!fp.line)
        tune_img_check_all(chk, n_chk);
    for (size_t i = 0; i < n && !fp.line; i++) {
        Row *r = &rows[i];
        static const char *what[2] = {"img_pos", "img_neg"};
        for (int k = 0; k < 2 && !fp.line; k++) {
            TuneImgCheck *c = &chk[r->img[k]];
            char m[ERR_MSG_LEN];
            if (c->missing) {
                snprintf(m, sizeof m,
                         "%s: no such image file %s; fix the path (relative paths are read "
                         "from %s)",
                         what[k], c->path,
                         base_dir ? "the given base folder" : "the pairs file's folder");
                first_problem(&fp, r->line, m);
                fp.code = ERR_NOTFOUND;
            } else if (!c->ok) {
                snprintf(m, sizeof m, "%s: %s", what[k], c->err.msg);
                first_problem(&fp, r->line, m);
            }
        }
        if (fp.line)
            break;
        const TuneImgCheck *a = &chk[r->img[0]], *b = &chk[r->img[1]];
        int same_file = r->img[0] == r->img[1] || (a->dev == b->dev && a->ino == b->ino);
        if (same_file || strcmp(a->sha, b->sha) == 0) {
            char m[ERR_MSG_LEN];
            snprintf(m, sizeof m,
                     "img_pos and img_neg are the same image (%s); a pair needs two different "
                     "images",
                     same_file ? "the same file" : "the same bytes");
            first_problem(&fp, r->line, m);
        }
    }
    if (!fp.line && n == 0) {
        rc = err_set(err, ERR_FORMAT,
                     "%s: no pairs to learn from (%zu line%s, %zu with label 0.5 = no "
                     "preference); each line needs {\"prompt\", \"img_pos\", \"img_neg\", "
                     "\"label\": 1.0}",
                     path, inf.lines, inf.lines == 1 ? "" : "s", inf.neutral);
    } else if (fp.line) {
        rc = err_set(err, fp.code ? fp.code : ERR_FORMAT, "%s:%ld: %s", path, fp.line,
                     fp.msg);
    } else {
        for (size_t i = 0; i < n; i++) {
            Row *r = &rows[i];
            int swap = r->label < 0.5;
            inf.swapped += swap;
            TunePair p = {.prompt = r->prompt,
                          .prompt_neg = r->prompt_neg,
                          .path_w = chk[r->img[swap]].path,
                          .path_l = chk[r->img[!swap]].path,
                          .weight = 1.0,
                          .line = (int)r->line};
            tune_pairs_push(out, &p);
        }
        inf.pairs = n;
        if (info)
            *info = inf;
    }
    for (size_t i = 0; i < n; i++)
        free(rows[i].prompt), free(rows[i].prompt_neg);
    free(rows);
    for (size_t i = 0; i < n_chk; i++)
        free(chk[i].path);
    free(chk);
    if (pr.csv_loaded)
        fmt_csv_deinit(&pr.csv);
    import_map_free(&pr.ids);
    free(pr.csv_path);
    free(dir);
    free(file_dir);
    return rc;
}

int tune_pairs_load_file(const char *path, const char *base_dir, TunePairs *out, Err *err) {
    return tune_pairs_load_file_ex(NULL, path, base_dir, NULL, out, err);
}
