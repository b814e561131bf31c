/* import — the entry points and what every importer shares: the context, problem and
 * warning lists, field parsing, image paths and images, the apply phase's transaction. See
 * import.h for the contract, import_int.h for how the importers are built, doc/formats.md.
 */
#include "import.h"
#include "import_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "encoder.h"
#include "fmt_csv.h"
#include "image.h"
#include "infile.h"
#include "sha256.h"
#include "store_catalog.h"
#include "trust.h"

#define MAX_LISTED 1000 /* problems and warnings kept per import; the rest are counted */
#define PROGRESS_EVERY 64

/* ---- a small string → int64 map (open addressing) ------------------------------------------ */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int64_t *import_map_slot(ImportMap *m, const char *k, int create) {
    if (create && 2 * (m->n + 1) > m->cap) {
        ImportMap g = {.cap = m->cap ? 2 * m->cap : 64};
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

void import_map_free(ImportMap *m) {
    for (size_t i = 0; i < m->cap; i++)
        free(m->key[i]);
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

/* ---- context, problems, warnings --------------------------------------------------------- */

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

static char *vformat(ImportCtx *c, long line, const char *fmt, va_list ap) {
    char body[768];
    vsnprintf(body, sizeof body, fmt, ap);
    return line > 0 ? xasprintf("%s:%ld: %s", c->file, line, body)
                    : xasprintf("%s: %s", c->file, body);
}

void import_problem(ImportCtx *c, long line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    push(&c->rep->errors, &c->rep->n_errors, &c->n_more_errors, vformat(c, line, fmt, ap));
    va_end(ap);
}

void import_warn(ImportCtx *c, long line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    push(&c->rep->warnings, &c->rep->n_warnings, &c->n_more_warnings, vformat(c, line, fmt, ap));
    va_end(ap);
}

/* Problem that comes with an Err from a lower layer (conflicts found while writing). */
void import_problem_err(ImportCtx *c, long line, const char *what, const Err *e) {
    import_problem(c, line, "%s%s%s", what ? what : "", what ? ": " : "", e->msg);
}

int import_has_problems(const ImportCtx *c) {
    return c->rep->n_errors > 0;
}

void import_write_failed(ImportCtx *c, long line, const char *what, const Err *e) {
    if (e->code == ERR_CONFLICT || e->code == ERR_FORMAT || e->code == ERR_NOTFOUND) {
        import_problem_err(c, line, what, e);
        return;
    }
    if (!c->aborted) {
        c->aborted = 1;
        c->fatal = *e;
        if (!c->fatal.code)
            c->fatal.code = ERR_DB;
        if (!c->fatal.msg[0])
            snprintf(c->fatal.msg, sizeof c->fatal.msg, "%s", err_name(c->fatal.code));
    }
}

int import_stopped(const ImportCtx *c) {
    return c->aborted;
}

/* Set err from the first import_problem. */
int import_fail(ImportCtx *c, int code, Err *err) {
    size_t total = c->rep->n_errors + c->n_more_errors;
    if (total > 1)
        return err_set(err, code, "%s (%zu problems in all; nothing was imported)",
                       c->rep->errors[0], total);
    return err_set(err, code, "%s (nothing was imported)", c->rep->errors[0]);
}

char *import_dir_of(const char *path) {
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

int import_is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return 0;
    return 1;
}

/* A decimal number, the whole field: digits, sign, point, exponent. No nan/inf/hex. */
int import_parse_num(const char *s, double *out) {
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

int import_parse_int(const char *s, int64_t *out) {
    if (!*s || strspn(s, "0123456789+-") != strlen(s))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || end == s)
        return -1;
    if (errno == ERANGE)
        return -2;
    if (errno)
        return -1;
    *out = v;
    return 0;
}

int import_check_nul(ImportCtx *c, const unsigned char *buf, size_t n) {
    const unsigned char *z = memchr(buf, 0, n);
    if (!z)
        return 0;
    if (n >= 2 && ((buf[0] == 0xff && buf[1] == 0xfe) || (buf[0] == 0xfe && buf[1] == 0xff))) {
        import_problem(c, 1, "the file is UTF-16 text; save it as UTF-8 (in a spreadsheet: "
                             "\"CSV UTF-8\") and import it again");
        return -1;
    }
    long line = 1;
    const unsigned char *bol = buf;
    for (const unsigned char *p = buf; p < z; p++)
        if (*p == '\n') {
            line++;
            bol = p + 1;
        }
    import_problem(c, line,
                   "a NUL byte (\\0) at column %ld: text files cannot hold one, and everything "
                   "after it on the line would be lost; remove it",
                   (long)(z - bol) + 1);
    return -1;
}

/* ---- images -------------------------------------------------------------------------------- */

int import_is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Something is at P (symlinks followed): a file, or a FIFO, device or folder that
 * import_check_image then refuses with the reason, rather than calling it "not there". */
static int is_there(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
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
static void resolve_image(ImportCtx *c, const char *raw, ImportImg *out);

/* A job reads image paths for whoever queued it: only inside the workspace or an output
 * root (ImportOptions.job_paths). Outside, nothing about the file is looked at or said. */
void import_resolve_image(ImportCtx *c, const char *raw, ImportImg *out) {
    resolve_image(c, raw, out);
    Err e = {0};
    if (c->opts && c->opts->job_paths && trust_check_path(c->st, "image path", out->open, &e)) {
        out->denied = xstrdup(e.msg);
        out->exists = 0;
    }
}

static void resolve_image(ImportCtx *c, const char *raw, ImportImg *out) {
    memset(out, 0, sizeof *out);
    if (raw[0] == '/') {
        out->open = xstrdup(raw);
        out->stored = store_path_to_stored(c->st, raw);
        out->exists = is_there(raw);
        return;
    }
    char *cand[2] = {strcmp(c->dir, ".") == 0 ? xstrdup(raw) : xasprintf("%s/%s", c->dir, raw),
                     xstrdup(raw)};
    int pick = -1;
    for (int i = 0; i < 2 && pick < 0; i++)
        if (is_there(cand[i]))
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

void import_img_deinit(ImportImg *r) {
    free(r->stored);
    free(r->open);
    free(r->denied);
    memset(r, 0, sizeof *r);
}

int import_decode_image(const char *path, char sha[65], int *w, int *h, Err *err) {
    unsigned char *buf;
    size_t n;
    int rc = infile_read_all(path, "PNG/JPEG image", INFILE_MAX_IMAGE, &buf, &n, err);
    if (rc)
        return rc;
    if (n == 0) {
        free(buf);
        return err_set(err, ERR_FORMAT, "%s: the file is empty (0 bytes), not an image", path);
    }
    sha256_hex(buf, n, sha);
    Image im;
    rc = image_decode(buf, n, path, 3, &im, err);
    free(buf);
    if (rc)
        return rc;
    *w = im.w;
    *h = im.h;
    image_deinit(&im);
    return 0;
}

/* One file for the prefetch threads. */
typedef struct PrefetchJob {
    const char *path;
    ImportChecked out;
    Err err;
} PrefetchJob;

typedef struct Prefetch {
    PrefetchJob *jobs;
    size_t n;
    atomic_size_t next;
} Prefetch;

static void *prefetch_worker(void *arg) {
    Prefetch *p = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n)
            return NULL;
        PrefetchJob *j = &p->jobs[i];
        j->out.ok = import_decode_image(j->path, j->out.sha256, &j->out.width, &j->out.height,
                                        &j->err) == 0;
    }
}

#define PREFETCH_THREADS 8

void import_run_pool(void *(*work)(void *), void *arg, size_t n) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nt = cpus < 1 ? 1 : cpus > PREFETCH_THREADS ? PREFETCH_THREADS : (size_t)cpus;
    if (nt > n)
        nt = n;
    pthread_t th[PREFETCH_THREADS];
    size_t started = 0;
    for (size_t t = 1; t < nt; t++) /* this thread is one of them */
        started += pthread_create(&th[started], NULL, work, arg) == 0;
    work(arg);
    for (size_t t = 0; t < started; t++)
        pthread_join(th[t], NULL);
}

void import_check_images_prefetch(ImportCtx *c, ImportImg *const *refs, size_t n) {
    Prefetch p = {.jobs = xcalloc(n ? n : 1, sizeof *p.jobs)};
    char **key = xcalloc(n ? n : 1, sizeof *key);
    ImportMap mine = {0}; /* stored paths queued here, once each */
    for (size_t i = 0; i < n; i++) {
        const ImportImg *r = refs[i];
        if (!r->exists || import_map_slot(&c->checked, r->stored, 0) ||
            import_map_slot(&mine, r->stored, 0))
            continue;
        StoreImage cur;
        int trusted = store_image_by_path(c->st, r->stored, &cur, NULL) == 0 && cur.sha256 &&
                      !cur.missing;
        store_image_deinit(&cur);
        if (trusted)
            continue; /* import_check_image takes the store's word for it */
        *import_map_slot(&mine, r->stored, 1) = 1;
        key[p.n] = r->stored;
        p.jobs[p.n++].path = r->open;
    }
    import_map_free(&mine);
    atomic_init(&p.next, 0);
    import_run_pool(prefetch_worker, &p, p.n);
    for (size_t i = 0; i < p.n; i++) {
        ImportChecked k = p.jobs[i].out;
        if (!k.ok)
            k.msg = xstrdup(p.jobs[i].err.msg[0] ? p.jobs[i].err.msg : "cannot read the image");
        c->chk = xrealloc(c->chk, (c->n_chk + 1) * sizeof *c->chk);
        c->chk[c->n_chk++] = k;
        *import_map_slot(&c->checked, key[i], 1) = (int64_t)c->n_chk;
    }
    free(key);
    free(p.jobs);
}

#define CHECK_BATCH 64

int import_check_images(ImportCtx *c, ImportImg *const *refs, const long *lines,
                        const char *what, size_t n, Err *err) {
    for (size_t b = 0; b < n; b += CHECK_BATCH) {
        size_t e = b + CHECK_BATCH < n ? b + CHECK_BATCH : n;
        import_check_images_prefetch(c, refs + b, e - b);
        for (size_t i = b; i < e; i++) {
            if (import_check_progress(c, i + 1, n))
                return import_cancelled(c, err);
            import_check_image(c, lines[i], what, refs[i]);
        }
    }
    return 0;
}

int import_check_image(ImportCtx *c, long line, const char *what, ImportImg *ref) {
    if (ref->denied) {
        import_problem(c, line, "%s: %s", what, ref->denied);
        return -1;
    }
    if (!ref->exists) {
        if (c->opts && c->opts->allow_missing)
            return 0;
        import_problem(c, line,
                       "%s \"%s\": no such image file (looked next to the imported file and in "
                       "the current folder); fix the path, or pass --allow-missing to import it "
                       "as missing",
                       what, ref->open);
        return -1;
    }
    int64_t *slot = import_map_slot(&c->checked, ref->stored, 0);
    if (slot) {
        ImportChecked *k = &c->chk[*slot - 1];
        if (!k->ok && k->msg) { /* read ahead (import_check_images_prefetch): say it here */
            import_problem(c, line, "%s: %s", what, k->msg);
            free(k->msg);
            k->msg = NULL;
        }
        if (!k->ok)
            return -1; /* its problem was recorded where it first appeared */
        memcpy(ref->sha256, k->sha256, sizeof ref->sha256);
        ref->width = k->width;
        ref->height = k->height;
        return 0;
    }
    ImportChecked k = {0};
    StoreImage cur;
    if (store_image_by_path(c->st, ref->stored, &cur, NULL) == 0 && cur.sha256 && !cur.missing) {
        /* the store read and hashed it when it came in */
        k.ok = 1;
        snprintf(k.sha256, sizeof k.sha256, "%s", cur.sha256);
        k.width = cur.width;
        k.height = cur.height;
        store_image_deinit(&cur);
    } else {
        store_image_deinit(&cur);
        Err e = {0};
        if (import_decode_image(ref->open, k.sha256, &k.width, &k.height, &e) == 0)
            k.ok = 1;
        else
            import_problem(c, line, "%s: %s", what, e.msg);
    }
    c->chk = xrealloc(c->chk, (c->n_chk + 1) * sizeof *c->chk);
    c->chk[c->n_chk++] = k;
    *import_map_slot(&c->checked, ref->stored, 1) = (int64_t)c->n_chk;
    if (!k.ok)
        return -1;
    memcpy(ref->sha256, k.sha256, sizeof ref->sha256);
    ref->width = k.width;
    ref->height = k.height;
    return 0;
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
 * size known from the file. Returns 0 and *id, or -1 after recording a import_problem at LINE. */
int import_ensure_image(ImportCtx *c, long line, const ImportImg *ref, int64_t prompt_id,
                        const StoreImage *meta, int64_t *id) {
    int64_t *cached = import_map_slot(&c->images, ref->stored, 0);
    if (cached) {
        StoreImage cur;
        Err e = {0};
        if (store_image_get(c->st, *cached, &cur, &e)) {
            import_write_failed(c, line, NULL, &e);
            return -1;
        }
        int bad = prompt_id > 0 && cur.prompt_id > 0 && cur.prompt_id != prompt_id;
        store_image_deinit(&cur);
        if (bad) {
            import_problem(c, line, "image %s was given another prompt_id on an earlier line",
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
        import_write_failed(c, line, NULL, &e);
        return -1;
    }
    int known = rc == 0;
    if (ref->exists && (!known || !cur.sha256)) {
        if (ref->sha256[0]) {
            want.sha256 = (char *)ref->sha256;
        } else if (sha256_file_hex(ref->open, hex, &e) == 0) {
            want.sha256 = hex;
        }
        int w = ref->width, h = ref->height;
        if (w <= 0)
            png_size(ref->open, &w, &h);
        if (w > 0) {
            want.width = w;
            want.height = h;
        }
    }
    if (!known && want.sha256) {
        /* the same bytes under another path (a symlinked folder, a copy): the same image */
        StoreImage same;
        rc = store_image_by_sha256(c->st, want.sha256, prompt_id, &same, &e);
        if (rc && rc != ERR_NOTFOUND) {
            import_write_failed(c, line, NULL, &e);
            return -1;
        }
        if (rc == 0) {
            /* under another prompt it is another image (it is rated against its prompt) */
            int other = prompt_id > 0 && same.prompt_id > 0 && same.prompt_id != prompt_id;
            if (other) {
                if (c->n_twins++ == 0)
                    c->twin_example = xasprintf("%s = %s", ref->stored, same.path);
                store_image_deinit(&same);
            } else {
                if (c->n_reused++ == 0)
                    c->reused_example = xasprintf("%s = %s", ref->stored, same.path);
                *id = same.id;
                store_image_deinit(&same);
                *import_map_slot(&c->images, ref->stored, 1) = *id;
                return 0;
            }
        }
    }
    if (!ref->exists && c->rep->images_missing < MISSING_LISTED)
        import_warn(c, line,
                    "image %s is not on disk; imported as missing (--allow-missing; put the file "
                    "there and import again to complete it)",
                    ref->open);
    if (known) {
        int changed = 0;
        rc = store_image_fill(c->st, cur.id, &want, &changed, &e);
        *id = cur.id;
        store_image_deinit(&cur);
        if (rc) {
            import_write_failed(c, line, "image_path", &e);
            return -1;
        }
        c->rep->images_updated += changed;
    } else {
        if (store_image_add(c->st, &want, id, &e)) {
            import_write_failed(c, line, "image_path", &e);
            return -1;
        }
        c->rep->images_added++;
    }
    c->rep->images_missing += !ref->exists;
    *import_map_slot(&c->images, ref->stored, 1) = *id;
    return 0;
}

/* ---- prompts (lookup with a cache) ------------------------------------------------------- */

/* Store id of prompt EXT, 0 if not in the store. */
int64_t import_prompt_lookup(ImportCtx *c, const char *ext) {
    int64_t *v = import_map_slot(&c->prompts, ext, 0);
    if (v)
        return *v;
    StorePrompt p;
    int64_t id = 0;
    if (store_prompt_by_ext(c->st, ext, &p, NULL) == 0) {
        id = p.id;
        store_prompt_deinit(&p);
    }
    *import_map_slot(&c->prompts, ext, 1) = id;
    return id;
}

int64_t import_prompt_plan_new(ImportCtx *c, const char *ext) {
    int64_t *v = import_map_slot(&c->new_prompts, ext, 1);
    if (!*v) {
        c->new_ext = xrealloc(c->new_ext, (c->n_new + 1) * sizeof *c->new_ext);
        c->new_ext[c->n_new++] = xstrdup(ext);
        *v = (int64_t)c->n_new;
    }
    return -*v;
}

int import_prompts_create_planned(ImportCtx *c) {
    if (!c->n_new)
        return 0;
    c->new_id = xcalloc(c->n_new, sizeof *c->new_id);
    for (size_t i = 0; i < c->n_new && !import_stopped(c); i++) {
        int added = 0;
        Err e = {0};
        StorePrompt sp;
        if (store_prompt_by_ext(c->st, c->new_ext[i], &sp, NULL) == 0) {
            c->new_id[i] = sp.id; /* another process added it since the check */
            store_prompt_deinit(&sp);
            continue;
        }
        if (store_prompt_add(c->st, c->new_ext[i], "", &c->new_id[i], &added, &e)) {
            import_write_failed(c, 0, "prompt_id", &e);
            return -1;
        }
        c->rep->prompts_added += added;
        c->rep->prompts_empty += added;
    }
    return import_stopped(c) ? -1 : 0;
}

int64_t import_prompt_real(const ImportCtx *c, int64_t id) {
    if (id >= 0)
        return id;
    ASSERT((size_t)-id <= c->n_new && c->new_id);
    return c->new_id[-id - 1];
}

/* ---- the apply phase's frame ---------------------------------------------------------------- */

int import_cancelled(ImportCtx *c, Err *err) {
    return err_set(err, ERR_CANCELLED, "%s: import cancelled; nothing was imported", c->file);
}

/* Report DONE of TOTAL (every PROGRESS_EVERY and at the end); 1 when cancelled. */
static int report(ImportCtx *c, size_t done, size_t total, size_t offset) {
    if (!c->opts || (done % PROGRESS_EVERY != 0 && done != total))
        return 0;
    progress_report(&c->opts->progress, (double)(offset + done), (double)(2 * total), "rows");
    return progress_cancelled(&c->opts->progress);
}

int import_progress(ImportCtx *c, size_t done, size_t total) {
    return report(c, done, total, total);
}

int import_check_progress(ImportCtx *c, size_t done, size_t total) {
    return report(c, done, total, 0);
}

/* Commit if no problems appeared while applying, else roll back. */
int import_finish(ImportCtx *c, int cancelled, Err *err) {
    if (c->aborted) {
        store_rollback(c->st);
        import_problem(c, 0, "%s; nothing was imported (the store is as it was before)",
                       c->fatal.msg);
        return err_set(err, c->fatal.code,
                       "%s: %s; nothing was imported (the store is as it was before)", c->file,
                       c->fatal.msg);
    }
    if (cancelled) {
        store_rollback(c->st);
        return err_set(err, ERR_CANCELLED, "%s: import cancelled; nothing was imported", c->file);
    }
    if (import_has_problems(c)) {
        store_rollback(c->st);
        return import_fail(c, ERR_CONFLICT, err);
    }
    Err e = {0};
    int rc = store_commit(c->st, &e);
    if (rc)
        return err_set(err, rc, "%s: %s; nothing was imported", c->file, e.msg);
    return 0;
}

int import_begin(ImportCtx *c, Err *err) {
    Err e = {0};
    int rc = store_begin(c->st, &e);
    if (rc)
        return err_set(err, rc, "%s: %s; nothing was imported", c->file, e.msg);
    return 0;
}

int import_is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* ---- entry points ---------------------------------------------------------------------------- */

static const char *const kind_names[] = {"prompts", "ratings", "pairs", "generated", "images"};

int import_kind_parse(const char *name, ImportKind *kind, Err *err) {
    for (size_t i = 0; i < ARRAY_LEN(kind_names); i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (ImportKind)i;
            return 0;
        }
    }
    return err_set(err, ERR_USAGE,
                   "unknown kind '%s': import prompts, ratings, pairs, generated or images", name);
}

const char *import_kind_name(ImportKind kind) {
    ASSERT((size_t)kind < ARRAY_LEN(kind_names));
    return kind_names[kind];
}

int import_path(Store *st, ImportKind kind, const char *path, const ImportOptions *opts,
                ImportReport *report, Err *err) {
    memset(report, 0, sizeof *report);
    ImportCtx c = {.st = st, .file = path, .opts = opts, .rep = report};
    c.dir = import_dir_of(path);
    c.source = xasprintf("import:%s", base_of(path));
    Err e = {0};
    int rc = store_aspects_list(st, &c.aspects, &c.n_aspects, &e);
    if (rc) {
        err_set(err, rc, "%s", e.msg);
        goto out;
    }
    if (kind == IMPORT_IMAGES) {
        rc = import_images_folder(&c, path, err);
    } else if (kind == IMPORT_PAIRS) {
        rc = import_pairs_jsonl(&c, path, err);
    } else {
        if (import_is_dir(path)) {
            rc = err_set(err, ERR_USAGE, "%s is a folder; 'import %s' takes a CSV file", path,
                         import_kind_name(kind));
            goto report;
        }
        CsvTable t;
        unsigned char *buf;
        size_t len;
        if ((rc = infile_read_all(path, "CSV file", INFILE_MAX_CSV, &buf, &len, err)))
            goto report;
        if (import_check_nul(&c, buf, len)) {
            free(buf);
            rc = import_fail(&c, ERR_FORMAT, err);
            goto report;
        }
        rc = fmt_csv_parse(path, (const char *)buf, len, &t, err);
        free(buf);
        if (rc)
            goto report;
        if (t.n_rows == 0) {
            rc = err_set(err, ERR_FORMAT,
                         "%s: the file is empty; the first line must be the "
                         "header (see 'easel import --help')",
                         path);
        } else if (kind == IMPORT_PROMPTS) {
            rc = import_csv_prompts(&c, &t, err);
        } else if (kind == IMPORT_RATINGS) {
            rc = import_csv_ratings(&c, &t, err);
        } else {
            rc = import_csv_generated(&c, &t, err);
        }
        fmt_csv_deinit(&t);
    }
report:
    if (c.n_new && !rc) {
        char list[200] = "";
        size_t used = 0;
        for (size_t i = 0; i < c.n_new && used + 1 < sizeof list; i++) {
            int k = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                             c.new_ext[i]);
            if (k < 0 || used + (size_t)k >= sizeof list) {
                snprintf(list + used, sizeof list - used, ", ...");
                break;
            }
            used += (size_t)k;
        }
        import_warn(&c, 0,
                    "%zu prompt id%s not in the store (%s): created with empty text; import "
                    "their prompts.csv later to fill in the text",
                    c.n_new, c.n_new == 1 ? " was" : "s were", list);
    }
    if (c.n_reused && !rc)
        import_warn(&c, 0,
                    "%zu image path%s led to bytes the store already had under another path "
                    "(e.g. %s); the existing image%s reused, not added twice",
                    c.n_reused, c.n_reused == 1 ? "" : "s", c.reused_example,
                    c.n_reused == 1 ? " was" : "s were");
    if (c.n_twins && !rc)
        import_warn(&c, 0,
                    "%zu image%s the same bytes as an image of another prompt (e.g. %s); kept "
                    "as separate images, since an image is rated against its prompt",
                    c.n_twins, c.n_twins == 1 ? " has" : "s have", c.twin_example);
    if (report->images_missing > MISSING_LISTED)
        import_warn(&c, 0, "%zu more images are not on disk either; they were imported as missing",
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
    import_map_free(&c.images);
    import_map_free(&c.prompts);
    import_map_free(&c.checked);
    for (size_t i = 0; i < c.n_chk; i++)
        free(c.chk[i].msg);
    import_map_free(&c.new_prompts);
    for (size_t i = 0; i < c.n_new; i++)
        free(c.new_ext[i]);
    free(c.new_ext);
    free(c.new_id);
    free(c.chk);
    free(c.reused_example);
    free(c.twin_example);
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
