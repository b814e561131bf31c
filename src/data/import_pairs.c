/* import_pairs — pairs.jsonl, one JSON object per line (jansson). Pairs whose label is below
 * 0.5 are stored swapped so img_pos is always the preferred image. Plans the whole file, then
 * applies it in one transaction (import_int.h).
 */
#include "import_int.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "infile.h"
#include "pairs_jsonl.h"
#include "sha256.h"
#include "store_pairs.h"

/* ---- pairs.jsonl ----------------------------------------------------------------------------- */

typedef struct PRow {
    long line;
    int64_t prompt_id; /* 0: create the prompt below */
    char *new_ext;     /* id for a prompt given by text only */
    char *text;
    ImportImg pos, neg;
    double label;
    char *aspect; /* "" = combined */
    double rating_pos, rating_neg, rating_diff;
} PRow;

/* ---- one line, store-free (pairs_jsonl.h) ---- */

typedef struct LineCtx {
    PairsProblemFn fn;
    void *ud;
    long line;
} LineCtx;

static void problem(LineCtx *lc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(LineCtx *lc, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lc->fn(lc->ud, lc->line, msg);
}

static int json_num(LineCtx *lc, json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    *out = NAN;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v)) {
        problem(lc, "\"%s\" must be a number", key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static const char *json_str(LineCtx *lc, json_t *o, const char *key, int required) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            problem(lc,
                    "\"%s\" is missing (every line needs \"prompt\", \"img_pos\" and "
                    "\"img_neg\")",
                    key);
        return NULL;
    }
    if (!json_is_string(v) || !*json_string_value(v)) {
        problem(lc, "\"%s\" must be a non-empty string", key);
        return NULL;
    }
    return json_string_value(v);
}

int pairs_line_parse(const char *s, long line, PairsLine *out, PairsProblemFn fn, void *ud) {
    LineCtx lc = {.fn = fn, .ud = ud, .line = line};
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *o = json_loads(s, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        problem(&lc, "not valid JSON at column %d: %s", je.column, je.text);
        return -1;
    }
    if (!json_is_object(o)) {
        problem(&lc, "each line must be one JSON object {\"prompt\": ..., \"img_pos\": ..., "
                     "\"img_neg\": ..., \"label\": 1.0}");
        json_decref(o);
        return -1;
    }
    PairsLine *p = out;
    p->prompt = json_str(&lc, o, "prompt", 1);
    p->img_pos = json_str(&lc, o, "img_pos", 1);
    p->img_neg = json_str(&lc, o, "img_neg", 1);
    int bad = !p->prompt || !p->img_pos || !p->img_neg;
    json_t *ja = json_object_get(o, "aspect");
    if (ja && !json_is_null(ja)) {
        if (json_is_string(ja)) {
            p->aspect = json_string_value(ja);
        } else {
            problem(&lc, "\"aspect\" must be a string (an aspect name or \"combined\")");
            bad = 1;
        }
    }
    bad |= json_num(&lc, o, "label", &p->label) != 0;
    bad |= json_num(&lc, o, "rating_pos", &p->rating_pos) != 0;
    bad |= json_num(&lc, o, "rating_neg", &p->rating_neg) != 0;
    bad |= json_num(&lc, o, "rating_diff", &p->rating_diff) != 0;
    if (isnan(p->label))
        p->label = 1.0;
    if (!bad && (p->label < 0 || p->label > 1)) {
        problem(&lc, "label %g is outside 0..1 (1.0 = img_pos preferred)", p->label);
        bad = 1;
    }
    if (!bad && strcmp(p->img_pos, p->img_neg) == 0) {
        problem(&lc, "img_pos and img_neg are the same image");
        bad = 1;
    }
    json_t *jid = json_object_get(o, "prompt_id");
    if (!bad && jid && json_is_string(jid) && *json_string_value(jid))
        p->prompt_id = json_string_value(jid);
    if (bad) {
        json_decref(o);
        memset(out, 0, sizeof *out);
        return -1;
    }
    p->obj = o;
    return 0;
}

void pairs_line_deinit(PairsLine *pl) {
    if (!pl)
        return;
    json_decref(pl->obj);
    memset(pl, 0, sizeof *pl);
}

char *pairs_jsonl_next_line(char **cursor, long *line) {
    char *s = *cursor;
    if (!*s)
        return NULL;
    char *nl = strchr(s, '\n');
    *cursor = nl ? nl + 1 : s + strlen(s);
    if (nl)
        *nl = '\0';
    size_t len = strlen(s);
    ++*line;
    while (len > 0 && s[len - 1] == '\r')
        s[--len] = '\0';
    if (*line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
        s += 3;
    return s;
}

/* ---- the importer ---- */

static void import_line_problem(void *ud, long line, const char *msg) {
    import_problem(ud, line, "%s", msg);
}

/* The prompt a pair names: a prompt_id, "prompt_N" for prompt_id N, or the prompt text. */
static void pair_prompt(ImportCtx *c, PRow *p, const char *s) {
    if ((p->prompt_id = import_prompt_lookup(c, s)))
        return;
    if (strncmp(s, "prompt_", 7) == 0 && (p->prompt_id = import_prompt_lookup(c, s + 7)))
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

static int aspect_known(const ImportCtx *c, const char *name) {
    for (size_t k = 0; k < c->n_aspects; k++)
        if (strcmp(c->aspects[k].name, name) == 0)
            return 1;
    return 0;
}

/* Check the JSON text S of LINE into *P. Returns 0, or -1 after recording its problems. */
static int pairs_plan_line(ImportCtx *c, long line, const char *s, PRow *p) {
    memset(p, 0, sizeof *p);
    p->line = line;
    PairsLine pl;
    if (pairs_line_parse(s, line, &pl, import_line_problem, c))
        return -1;
    int bad = 0;
    const char *prompt = pl.prompt, *ip = pl.img_pos, *in = pl.img_neg, *asp = pl.aspect;
    p->label = pl.label;
    p->rating_pos = pl.rating_pos;
    p->rating_neg = pl.rating_neg;
    p->rating_diff = pl.rating_diff;
    if (asp && *asp && strcmp(asp, "combined") != 0 && !aspect_known(c, asp)) {
        import_problem(c, line,
                       "aspect \"%s\" is not an aspect of this store (use one of the aspect "
                       "names, or \"combined\")",
                       asp);
        bad = 1;
    }
    if (bad)
        goto out;
    p->aspect = xstrdup(asp && strcmp(asp, "combined") != 0 ? asp : "");
    /* "prompt_id" is written by easel's export */
    if (!(pl.prompt_id && (p->prompt_id = import_prompt_lookup(c, pl.prompt_id))))
        pair_prompt(c, p, prompt);
    import_resolve_image(c, ip, &p->pos);
    import_resolve_image(c, in, &p->neg);
    int bad_pos = import_check_image(c, line, "img_pos", &p->pos);
    int bad_neg = import_check_image(c, line, "img_neg", &p->neg);
    if (bad_pos || bad_neg) {
        bad = 1;
        goto out;
    }
    /* the same file by two spellings (./a.png, a.png), or the same bytes by two paths */
    if (strcmp(p->pos.stored, p->neg.stored) == 0 ||
        (p->pos.sha256[0] && strcmp(p->pos.sha256, p->neg.sha256) == 0)) {
        import_problem(c, line,
                       "img_pos \"%s\" and img_neg \"%s\" are the same image (%s); a pair "
                       "needs two different images",
                       ip, in,
                       strcmp(p->pos.stored, p->neg.stored) == 0 ? "the same file"
                                                                 : "the same bytes");
        bad = 1;
        goto out;
    }
    if (p->label < 0.5) { /* keep img_pos the preferred image */
        ImportImg t = p->pos;
        p->pos = p->neg;
        p->neg = t;
        double r = p->rating_pos;
        p->rating_pos = p->rating_neg;
        p->rating_neg = r;
        p->rating_diff = -p->rating_diff;
        p->label = 1.0 - p->label;
    }
out:
    pairs_line_deinit(&pl);
    if (bad) {
        free(p->aspect);
        free(p->new_ext);
        free(p->text);
        import_img_deinit(&p->pos);
        import_img_deinit(&p->neg);
        memset(p, 0, sizeof *p);
    }
    return bad ? -1 : 0;
}

/* What identifies an image of a pair: its bytes when known, else its stored path. */
static const char *ident(const ImportImg *m) {
    return m->sha256[0] ? m->sha256 : m->stored;
}

/* One file may list a pair twice, but never with two different preferences: both orders of
 * the same two images (on one aspect), or two labels. ROWS[I] was just planned; SEEN maps
 * (aspect, the two images unordered) to the first row + 1. */
static void pairs_check_contradiction(ImportCtx *c, ImportMap *seen, PRow *rows, size_t i) {
    const PRow *p = &rows[i];
    const char *a = ident(&p->pos), *b = ident(&p->neg);
    int pos_first = strcmp(a, b) < 0;
    char *key = xasprintf("%s\x1f%s\x1f%s", p->aspect, pos_first ? a : b, pos_first ? b : a);
    int64_t *slot = import_map_slot(seen, key, 1);
    free(key);
    if (!*slot) {
        *slot = (int64_t)i + 1;
        return;
    }
    const PRow *q = &rows[*slot - 1];
    int same_order = strcmp(ident(&q->pos), a) == 0;
    if (same_order && q->label == p->label)
        return; /* the same pair again: stored once */
    if (!same_order && q->label == 0.5 && p->label == 0.5)
        return; /* "no preference" both ways agrees with itself */
    import_problem(c, p->line,
                   "this pair of %s and %s%s%s contradicts line %ld (%s); keep one of the two "
                   "lines",
                   p->pos.stored, p->neg.stored, p->aspect[0] ? " on " : "",
                   p->aspect[0] ? p->aspect : "", q->line,
                   same_order ? "another label" : "the opposite preference");
}

/* Write the planned pairs inside the open transaction; returns 1 if cancelled. */
static int pairs_apply(ImportCtx *c, PRow *rows, size_t n) {
    int cancelled = 0;
    for (size_t i = 0; i < n && !cancelled && !import_stopped(c); i++) {
        PRow *p = &rows[i];
        Err e = {0};
        if (!p->prompt_id) {
            int added = 0;
            if (store_prompt_add(c->st, p->new_ext, p->text, &p->prompt_id, &added, &e)) {
                import_write_failed(c, p->line, "prompt", &e);
                continue;
            }
            c->rep->prompts_added += added;
        }
        StorePair sp = {.prompt_id = p->prompt_id,
                        .label = p->label,
                        .aspect = p->aspect,
                        .rating_pos = p->rating_pos,
                        .rating_neg = p->rating_neg,
                        .rating_diff = p->rating_diff,
                        .source = "import"};
        if (import_ensure_image(c, p->line, &p->pos, p->prompt_id, NULL, &sp.img_pos) ||
            import_ensure_image(c, p->line, &p->neg, p->prompt_id, NULL, &sp.img_neg))
            continue;
        int added = 0;
        if (store_pair_add(c->st, &sp, &added, &e)) {
            import_write_failed(c, p->line, NULL, &e);
            continue;
        }
        c->rep->pairs_added += added;
        c->rep->pairs_unchanged += !added;
        cancelled = import_progress(c, i + 1, n);
    }
    return cancelled;
}

int import_pairs_jsonl(ImportCtx *c, const char *path, Err *err) {
    unsigned char *buf;
    size_t len_all;
    int rc = infile_read_all(path, "pairs file", INFILE_MAX_CSV, &buf, &len_all, err);
    if (rc)
        return rc;
    if (import_check_nul(c, buf, len_all)) {
        free(buf);
        return import_fail(c, ERR_FORMAT, err);
    }
    size_t n_lines = 0;
    for (size_t i = 0; i < len_all; i++)
        n_lines += buf[i] == '\n';
    n_lines += len_all > 0 && buf[len_all - 1] != '\n';
    PRow *rows = NULL;
    size_t n = 0, cap_rows = 0;
    ImportMap seen = {0};
    long line = 0;
    int read_err = 0;
    char *next = (char *)buf;
    char *s;
    while ((s = pairs_jsonl_next_line(&next, &line))) {
        if (import_check_progress(c, (size_t)line, n_lines)) {
            read_err = ERR_CANCELLED;
            break;
        }
        if (import_is_blank(s))
            continue;
        c->rep->rows++;
        if (n == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 64;
            rows = xrealloc(rows, cap_rows * sizeof *rows);
        }
        if (pairs_plan_line(c, line, s, &rows[n]) == 0) {
            pairs_check_contradiction(c, &seen, rows, n);
            n++;
        }
    }
    import_map_free(&seen);
    free(buf);
    if (read_err)
        rc = import_cancelled(c, err);
    else if (import_has_problems(c))
        rc = import_fail(c, ERR_FORMAT, err);
    else if (!(rc = import_begin(c, err)))
        rc = import_finish(c, pairs_apply(c, rows, n), err);
    for (size_t i = 0; i < n; i++) {
        free(rows[i].new_ext);
        free(rows[i].text);
        free(rows[i].aspect);
        import_img_deinit(&rows[i].pos);
        import_img_deinit(&rows[i].neg);
    }
    free(rows);
    return rc;
}
