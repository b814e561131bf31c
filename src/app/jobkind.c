/* jobkind — the registry table, parameter parsing and the job context. See jobkind.h.
 *
 * Design: kinds are const structs listed once in JOBKIND_LIST below (an X-macro, so one
 * line declares and registers a kind). Parameters are parsed once against the schema and
 * kept both as text and typed values; what is stored in jobs.params is the canonical JSON
 * of every parameter, defaults included, so a job records exactly what it ran with.
 *
 * The context throttles progress writes (at most every 250 ms); the store derives the rate
 * (and so every process's ETA) from the work done since the run's baseline, so a resumed
 * job's first report of step 3100 is not 3100 steps in a fraction of a second.
 */
#include "jobkind.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "log.h"
#include "clip_encoder.h"
#include "store_jobs.h"
#include "store_models.h"
#include "trust.h"

/* ---- the table ------------------------------------------------------------------------- */

/* ONE line per kind, `X(jobkind_<name>) \`, naming the const JobKind defined in the kind's
 * own file; keep the closing comment line last. The order is the order of `easel jobs add
 * --help` and the TUI's kind menu. */
#define JOBKIND_LIST(X) \
    X(jobkind_import) \
    X(jobkind_export) \
    X(jobkind_embed) \
    X(jobkind_train_reward) \
    X(jobkind_eval_reward) \
    X(jobkind_score) \
    X(jobkind_generate) \
    X(jobkind_tune) /* issue 16 (tune16) */ \
    X(jobkind_tune_eval) /* issue 16 (mon16) */ \
    /* end of the list */

#define JOBKIND_DECLARE(k) extern const JobKind k;
#define JOBKIND_ADDRESS(k) &k,
JOBKIND_LIST(JOBKIND_DECLARE)

static const JobKind *const builtin[] = {JOBKIND_LIST(JOBKIND_ADDRESS) NULL};

#define MAX_EXTRA 32
static const JobKind *extra[MAX_EXTRA];
static int n_extra;

int jobkind_count(void) { return (int)ARRAY_LEN(builtin) - 1 + n_extra; }

const JobKind *jobkind_at(int i) {
    int n_builtin = (int)ARRAY_LEN(builtin) - 1;
    ASSERT(i >= 0 && i < n_builtin + n_extra);
    return i < n_builtin ? builtin[i] : extra[i - n_builtin];
}

const JobKind *jobkind_find(const char *name) {
    for (int i = 0; i < jobkind_count(); i++)
        if (strcmp(jobkind_at(i)->name, name) == 0)
            return jobkind_at(i);
    return NULL;
}

int jobkind_register(const JobKind *k, Err *err) {
    ASSERT(k && k->name && k->run && k->params);
    if (jobkind_find(k->name))
        return err_set(err, ERR_CONFLICT, "job kind '%s' is already registered", k->name);
    ASSERT(n_extra < MAX_EXTRA);
    extra[n_extra++] = k;
    return 0;
}

/* ---- parameters ------------------------------------------------------------------------ */

typedef struct ParamValue {
    const JobParamSpec *spec;
    char *text;          /* canonical text */
    int64_t i;
    double f;
    int b;
} ParamValue;

struct JobParams {
    const JobKind *kind;
    int n;
    ParamValue *v;       /* one per schema entry, in schema order */
};

static int n_specs(const JobKind *k) {
    int n = 0;
    while (k->params[n].name)
        n++;
    return n;
}

static const char *type_name(JobParamType t) {
    switch (t) {
    case JOB_PARAM_STRING: return "text";
    case JOB_PARAM_PATH: return "path";
    case JOB_PARAM_INT: return "integer";
    case JOB_PARAM_FLOAT: return "number";
    case JOB_PARAM_BOOL: return "true/false";
    case JOB_PARAM_CHOICE: return "choice";
    }
    return "?";
}

static int choice_ok(const char *choices, const char *s) {
    size_t n = strlen(s);
    const char *c = choices;
    while (c && *c) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, s, n) == 0)
            return 1;
        c = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* An absolute form of PATH (the worker may run in another directory). */
static char *absolute_path(const char *path) {
    if (!path[0] || path[0] == '/')
        return xstrdup(path);
    char buf[PATH_MAX];
    if (realpath(path, buf))
        return xstrdup(buf);
    if (!getcwd(buf, sizeof buf))
        return xstrdup(path);
    return xasprintf("%s/%s", buf, path);
}

/* qa15: TEXT of string parameter NAME with the paths it names made absolute, as PATH values
 * are: a model folder or file that exists here (JOB_REF_DIFFUSION_MODEL; a registered name
 * is no path here), each FILE of FILE[:SCALE],... (JOB_REF_PATH_LIST). Malloc'd. */
static JobParamRef ref_of(const JobKind *k, const char *name) {
    for (int j = 0; k->refs && k->refs[j].param; j++)
        if (strcmp(k->refs[j].param, name) == 0)
            return k->refs[j].ref;
    return JOB_REF_NONE;
}

static char *absolute_refs(const JobKind *k, const char *name, const char *text) {
    JobParamRef ref = ref_of(k, name);
    if (ref == JOB_REF_DIFFUSION_MODEL)
        return access(text, F_OK) == 0 ? absolute_path(text) : xstrdup(text);
    if (ref != JOB_REF_PATH_LIST || !text[0])
        return xstrdup(text);
    char *copy = xstrdup(text), *save = NULL, *res = xstrdup("");
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(t, ':'), *end = NULL;
        double scale = colon ? strtod(colon + 1, &end) : 0;
        if (colon && end != colon + 1 && !*end && isfinite(scale))
            *colon = '\0'; /* FILE:SCALE, read as the generate kind reads it */
        else
            colon = NULL;
        char *abs = absolute_path(t), *next;
        next = xasprintf("%s%s%s%s%s", res, res[0] ? "," : "", abs, colon ? ":" : "",
                         colon ? colon + 1 : "");
        free(abs);
        free(res);
        res = next;
    }
    free(copy);
    return res;
}

/* Set V from TEXT, checking its type. ABS_PATHS: make PATH values absolute. */
static int set_value(const JobKind *k, ParamValue *v, const char *text, int abs_paths,
                     Err *err) {
    const JobParamSpec *sp = v->spec;
    char *end;
    free(v->text);
    v->text = NULL;
    switch (sp->type) {
    case JOB_PARAM_INT:
        errno = 0;
        v->i = strtoll(text, &end, 10);
        if (!*text || *end || errno)
            return err_set(err, ERR_USAGE, "%s --%s: '%s' is not an integer", k->name,
                           sp->name, text);
        v->text = xasprintf("%lld", (long long)v->i);
        v->f = (double)v->i;
        break;
    case JOB_PARAM_FLOAT:
        errno = 0;
        v->f = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v->f))
            return err_set(err, ERR_USAGE, "%s --%s: '%s' is not a number", k->name,
                           sp->name, text);
        v->text = xasprintf("%.17g", v->f);
        break;
    case JOB_PARAM_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "yes") ||
            !strcmp(text, "on"))
            v->b = 1;
        else if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "no") ||
                 !strcmp(text, "off"))
            v->b = 0;
        else
            return err_set(err, ERR_USAGE, "%s --%s: '%s' is not true or false", k->name,
                           sp->name, text);
        v->text = xstrdup(v->b ? "true" : "false");
        break;
    case JOB_PARAM_CHOICE:
        if (!choice_ok(sp->choices, text))
            return err_set(err, ERR_USAGE, "%s --%s: '%s' is not one of %s", k->name,
                           sp->name, text, sp->choices);
        v->text = xstrdup(text);
        break;
    case JOB_PARAM_PATH:
        v->text = abs_paths ? absolute_path(text) : xstrdup(text);
        break;
    case JOB_PARAM_STRING:
        v->text = abs_paths ? absolute_refs(k, sp->name, text) : xstrdup(text);
        break;
    }
    return 0;
}

static JobParams *params_new(const JobKind *k) {
    JobParams *p = xcalloc(1, sizeof *p);
    p->kind = k;
    p->n = n_specs(k);
    p->v = xcalloc((size_t)(p->n ? p->n : 1), sizeof *p->v);
    for (int i = 0; i < p->n; i++)
        p->v[i].spec = &k->params[i];
    return p;
}

static int find_spec(const JobParams *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->v[i].spec->name, name) == 0)
            return i;
    return -1;
}

/* Apply defaults to what is still unset; a required one missing is an error. ABS_PATHS: a
 * PATH default made absolute like a given one (qa15: a queued generate job's default --out
 * "generated" went to the worker's folder, not the one it was queued in). */
static int fill_defaults(JobParams *p, int abs_paths, Err *err) {
    for (int i = 0; i < p->n; i++) {
        if (p->v[i].text)
            continue;
        const JobParamSpec *sp = p->v[i].spec;
        if (!sp->def)
            return err_set(err, ERR_USAGE, "%s: --%s is required (%s: %s)", p->kind->name,
                           sp->name, type_name(sp->type), sp->help);
        int rc = set_value(p->kind, &p->v[i], sp->def, abs_paths, err);
        ASSERT(rc == 0); /* a default that does not parse is a bug in the kind */
    }
    return 0;
}

static void append_names(const JobKind *k, char *buf, size_t size) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; k->params[i].name && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s--%s", i ? ", " : "", k->params[i].name);
    if (!k->params[0].name)
        base_strlcpy(buf, "none", size);
}

int job_params_parse(const JobKind *k, int n, const char *const *names,
                     const char *const *values, JobParams **out, Err *err) {
    *out = NULL;
    JobParams *p = params_new(k);
    int rc;
    for (int j = 0; j < n; j++) {
        int i = find_spec(p, names[j]);
        if (i < 0) {
            char known[200];
            append_names(k, known, sizeof known);
            rc = err_set(err, ERR_USAGE, "%s: unknown parameter --%s (parameters: %s)", k->name,
                         names[j], known);
            goto out_free;
        }
        if (p->v[i].text) { /* qa15: given again (jobs add --lora A --lora B kept only B) */
            if (ref_of(k, names[j]) != JOB_REF_PATH_LIST) {
                rc = err_set(err, ERR_USAGE, "%s: --%s given twice ('%s' and '%s'); give it "
                             "once", k->name, names[j], p->v[i].text, values[j]);
                goto out_free;
            }
            char *both = xasprintf("%s,%s", p->v[i].text, values[j]); /* a list: both */
            rc = set_value(k, &p->v[i], both, 1, err);
            free(both);
            if (rc)
                goto out_free;
            continue;
        }
        if ((rc = set_value(k, &p->v[i], values[j], 1, err)))
            goto out_free;
    }
    if ((rc = fill_defaults(p, 1, err)))
        goto out_free;
    if (k->validate && (rc = k->validate(p, err)))
        goto out_free;
    *out = p;
    return 0;
out_free:
    job_params_free(p);
    return rc;
}

int job_params_from_json(const JobKind *k, const char *json, JobParams **out, Err *err) {
    *out = NULL;
    int rc;
    json_error_t jerr;
    json_t *root = json_loads(json ? json : "{}", 0, &jerr);
    JobParams *p = params_new(k);
    if (!root || !json_is_object(root)) {
        rc = err_set(err, ERR_FORMAT, "%s: job parameters are not a JSON object (%s)", k->name,
                root ? "not an object" : jerr.text);
        goto out_free;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        int i = find_spec(p, key);
        if (i < 0) {
            rc = err_set(err, ERR_FORMAT, "%s: stored parameter '%s' is not in this easel's "
                    "schema for the kind", k->name, key);
            goto out_free;
        }
        char *text;
        if (json_is_string(val))
            text = xstrdup(json_string_value(val));
        else if (json_is_integer(val))
            text = xasprintf("%lld", (long long)json_integer_value(val));
        else if (json_is_real(val))
            text = xasprintf("%.17g", json_real_value(val));
        else if (json_is_boolean(val))
            text = xstrdup(json_is_true(val) ? "true" : "false");
        else {
            rc = err_set(err, ERR_FORMAT, "%s: stored parameter '%s' has an unusable JSON type",
                    k->name, key);
            goto out_free;
        }
        rc = set_value(k, &p->v[i], text, 0, err);
        free(text);
        if (rc)
            goto out_free;
    }
    if ((rc = fill_defaults(p, 0, err)))
        goto out_free;
    json_decref(root);
    *out = p;
    return 0;
out_free:
    json_decref(root);
    job_params_free(p);
    return rc;
}

char *job_params_to_json(const JobParams *p) {
    json_t *root = json_object();
    for (int i = 0; i < p->n; i++) {
        const ParamValue *v = &p->v[i];
        json_t *j;
        switch (v->spec->type) {
        case JOB_PARAM_INT: j = json_integer((json_int_t)v->i); break;
        case JOB_PARAM_FLOAT: j = json_real(v->f); break;
        case JOB_PARAM_BOOL: j = json_boolean(v->b); break;
        default: j = json_string(v->text); break;
        }
        ASSERT(j);
        json_object_set_new(root, v->spec->name, j);
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    ASSERT(s);
    json_decref(root);
    char *res = xstrdup(s);
    free(s);
    return res;
}

void job_params_free(JobParams *p) {
    if (!p)
        return;
    for (int i = 0; i < p->n; i++)
        free(p->v[i].text);
    free(p->v);
    free(p);
}

const JobKind *job_params_kind(const JobParams *p) { return p->kind; }

/* The "output" folder a checkpoint JSON names (train-reward's), or NULL. Caller frees. */
static char *checkpoint_output(const char *checkpoint) {
    json_t *o = checkpoint ? json_loads(checkpoint, 0, NULL) : NULL;
    json_t *v = json_is_object(o) ? json_object_get(o, "output") : NULL;
    char *res = json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
    json_decref(o);
    return res;
}

/* The model folder of encoder ENC ("clip:NAME", "clip:PATH", either with ",squash") must
 * pass too, resolved as the encoder resolves it; WHAT names where ENC came from. An unknown
 * model is left to run(), which says so. */
static int check_encoder(Store *st, const char *what, const char *enc, Err *err) {
    if (strncmp(enc, "clip:", 5) != 0)
        return 0;
    char *name = xstrdup(enc + 5);
    char *comma = strrchr(name, ',');
    if (comma && strcmp(comma, ",squash") == 0)
        *comma = '\0';
    Err e = {0};
    char *path = clip_encoder_resolve(name, st, &e);
    int rc = 0;
    if (path) {
        char w2[192];
        snprintf(w2, sizeof w2, "%s (model folder of %s)", what, enc);
        rc = trust_check_path(st, w2, path, err);
    }
    free(path);
    free(name);
    return rc;
}

/* The encoder a checkpoint folder's config.json names, or NULL. Caller frees. */
static char *checkpoint_encoder(const char *dir) {
    char *p = xasprintf("%s/config.json", dir);
    json_t *o = json_load_file(p, 0, NULL);
    free(p);
    json_t *v = json_is_object(o) ? json_object_get(o, "encoder") : NULL;
    char *res = json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
    json_decref(o);
    return res;
}

/* The name of the one registered diffusion model (what an empty --model means), else NULL.
 * Caller frees. */
static char *only_diffusion_model(Store *st) {
    StoreModel *v = NULL;
    int n = 0;
    char *res = NULL;
    if (store_model_list(st, "diffusion", &v, &n, NULL) == 0 && n == 1)
        res = xstrdup(v[0].name);
    store_model_list_free(v, n);
    return res;
}

int job_params_check_trust(Store *st, const JobParams *p, const char *checkpoint, Err *err) {
    char what[96];
    int rc = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        const JobParamSpec *sp = p->v[i].spec;
        const char *text = p->v[i].text ? p->v[i].text : "";
        JobParamRef ref = JOB_REF_NONE;
        for (int j = 0; p->kind->refs && p->kind->refs[j].param; j++)
            if (strcmp(p->kind->refs[j].param, sp->name) == 0)
                ref = p->kind->refs[j].ref;
        snprintf(what, sizeof what, "%s --%s", p->kind->name, sp->name);
        if (sp->type == JOB_PARAM_PATH) {
            rc = trust_check_path(st, what, text, err);
            if (!rc && ref == JOB_REF_CHECKPOINT && text[0]) {
                char *enc = checkpoint_encoder(text); /* read only once the folder passed */
                if (enc)
                    rc = check_encoder(st, what, enc, err);
                free(enc);
            }
        } else if (ref == JOB_REF_RUN_NAME && text[0]) {
            char *dir = xasprintf("%s/runs/%s", store_dir(st), text);
            rc = trust_check_path(st, what, dir, err);
            free(dir);
        } else if (ref == JOB_REF_ENCODER) {
            rc = check_encoder(st, what, text, err);
        } else if (ref == JOB_REF_DIFFUSION_MODEL) { /* issue 15 */
            StoreModel m = {0};
            char *name = text[0] ? xstrdup(text) : only_diffusion_model(st);
            int reg = name && store_model_get(st, "diffusion", name, &m, NULL) == 0;
            if (reg || text[0]) /* none given: the one registered (qa15: it went unchecked) */
                rc = trust_check_path(st, what, reg ? m.path : text, err);
            json_t *cfg = !rc && reg && m.config ? json_loads(m.config, 0, NULL) : NULL;
            const char *tok = json_string_value(json_object_get(cfg, "tokenizer"));
            if (tok) { /* qa15: a registered single file's tokenizer folder is read too */
                char w2[192];
                snprintf(w2, sizeof w2, "%s (tokenizer of model '%s')", what, name);
                rc = trust_check_path(st, w2, tok, err);
            }
            json_decref(cfg);
            free(name);
            store_model_deinit(&m);
        } else if (ref == JOB_REF_PATH_LIST && text[0]) {
            char *copy = xstrdup(text), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
                /* FILE:SCALE: the kind decides which it reads (a file "a:1" there or not), so
                 * both "a:1" and "a" must pass (qa15: a symlink "a" leading out, beside a
                 * file "a:1" inside, passed while the run read "a") */
                rc = trust_check_path(st, what, t, err);
                char *colon = strrchr(t, ':');
                if (!rc && colon) {
                    *colon = '\0';
                    rc = trust_check_path(st, what, t, err);
                }
            }
            free(copy);
        }
    }
    char *out = rc ? NULL : checkpoint_output(checkpoint);
    if (out) {
        snprintf(what, sizeof what, "%s checkpoint output", p->kind->name);
        rc = trust_check_path(st, what, out, err);
        free(out);
    }
    return rc;
}

static const ParamValue *get(const JobParams *p, const char *name, int t1, int t2, int t3) {
    int i = find_spec(p, name);
    ASSERT(i >= 0); /* the kind reads a parameter its schema does not declare */
    const ParamValue *v = &p->v[i];
    ASSERT((int)v->spec->type == t1 || (int)v->spec->type == t2 || (int)v->spec->type == t3);
    return v;
}

const char *job_param_str(const JobParams *p, const char *name) {
    const ParamValue *v = get(p, name, JOB_PARAM_STRING, JOB_PARAM_PATH, JOB_PARAM_CHOICE);
    return v->text ? v->text : "";
}

int64_t job_param_int(const JobParams *p, const char *name) {
    return get(p, name, JOB_PARAM_INT, JOB_PARAM_INT, JOB_PARAM_INT)->i;
}

double job_param_float(const JobParams *p, const char *name) {
    return get(p, name, JOB_PARAM_FLOAT, JOB_PARAM_INT, JOB_PARAM_FLOAT)->f;
}

int job_param_bool(const JobParams *p, const char *name) {
    return get(p, name, JOB_PARAM_BOOL, JOB_PARAM_BOOL, JOB_PARAM_BOOL)->b;
}

/* ---- the job context ------------------------------------------------------------------- */

#define JOB_MAX_GPUS 64

struct JobCtx {
    Store *st;
    int64_t id;
    const atomic_int *cancel;
    char *checkpoint;
    int gpus[JOB_MAX_GPUS];
    int n_gpus;
    /* progress throttle */
    double last_write;       /* base_now() of the last store write, 0 = never */
    double done, total;      /* latest values seen */
    char unit[32];
    int unit_changed;
    int pending;             /* latest values not yet written */
};

JobCtx *job_ctx_new(Store *st, int64_t id, const char *checkpoint, const char *gpus,
                    const atomic_int *cancel) {
    JobCtx *c = xcalloc(1, sizeof *c);
    c->st = st;
    c->id = id;
    c->cancel = cancel;
    c->checkpoint = xstrdup(checkpoint);
    const char *g = gpus;
    while (g && *g && c->n_gpus < JOB_MAX_GPUS) {
        char *end;
        long i = strtol(g, &end, 10);
        if (end == g)
            break;
        c->gpus[c->n_gpus++] = (int)i;
        g = *end == ',' ? end + 1 : end;
    }
    return c;
}

static void write_progress(JobCtx *c) {
    Err err = {0};
    if (store_job_progress(c->st, c->id, c->done, c->total, c->unit_changed ? c->unit : NULL,
                           &err))
        log_warn("job #%lld: progress not saved: %s", (long long)c->id, err.msg);
    c->unit_changed = 0;
    c->pending = 0;
    c->last_write = base_now();
}

void job_ctx_free(JobCtx *c) {
    if (!c)
        return;
    if (c->pending)
        write_progress(c);
    free(c->checkpoint);
    free(c);
}

int64_t job_id(const JobCtx *ctx) { return ctx->id; }
Store *job_store(JobCtx *ctx) { return ctx->st; }

void job_progress(JobCtx *c, double done, double total, const char *unit) {
    double now = base_now();
    if (unit && strcmp(unit, c->unit) != 0) {
        base_strlcpy(c->unit, unit, sizeof c->unit);
        c->unit_changed = 1;
    }
    c->done = done;
    c->total = total;
    c->pending = 1;
    if (now - c->last_write >= 0.25 || (total > 0 && done >= total) || c->unit_changed)
        write_progress(c);
}

void job_log(JobCtx *c, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    Err err = {0};
    if (store_job_log_append(c->st, c->id, line, &err))
        log_warn("job #%lld: log line not saved: %s", (long long)c->id, err.msg);
    log_info("job #%lld: %s", (long long)c->id, line);
}

int job_cancelled(const JobCtx *c) { return c->cancel && atomic_load(c->cancel) != 0; }

static void hook_progress(void *user, double done, double total, const char *unit) {
    job_progress(user, done, total, unit);
}
static int hook_cancelled(void *user) { return job_cancelled(user); }
static void hook_log(void *user, const char *line) { job_log(user, "%s", line); }

Progress job_progress_hooks(JobCtx *ctx) {
    return (Progress){hook_progress, hook_cancelled, hook_log, ctx};
}

int job_checkpoint_save(JobCtx *c, const char *json, Err *err) {
    int rc = store_job_checkpoint_save(c->st, c->id, json, err);
    if (rc)
        return rc;
    free(c->checkpoint);
    c->checkpoint = xstrdup(json);
    return 0;
}

const char *job_checkpoint(const JobCtx *c) { return c->checkpoint; }

const int *job_gpus(const JobCtx *c, int *n) {
    *n = c->n_gpus;
    return c->gpus;
}
