/* sched_config — scheduler settings from diffusers' scheduler_config.json (sched_config.h). */
#include "sched_config.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "infile.h"

static const char *const kind_names[SCHED_KIND_COUNT] = {
    "euler", "euler_a", "ddim", "dpmpp_2m", "dpmpp_2m_karras", "pndm",
};

int sched_kind_from_name(const char *name) {
    for (int k = 0; k < SCHED_KIND_COUNT; k++)
        if (name && strcmp(name, kind_names[k]) == 0)
            return k;
    return -1;
}

const char *sched_kind_name(SchedKind kind) {
    return (unsigned)kind < SCHED_KIND_COUNT ? kind_names[kind] : "?";
}

void sched_config_default(SchedConfig *c, SchedKind kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->num_train_timesteps = 1000;
    c->beta_start = 0.0001;
    c->beta_end = 0.02;
    c->beta_schedule = SCHED_BETAS_LINEAR;
    c->spacing = kind == SCHED_DDIM || kind == SCHED_PNDM ? SCHED_SPACING_LEADING
                                                          : SCHED_SPACING_LINSPACE;
    c->steps_offset = 0;
    c->prediction = SCHED_PRED_EPSILON;
    c->clip_sample = 1;
    c->clip_sample_range = 1.0;
    c->set_alpha_to_one = kind != SCHED_PNDM;
    c->eta = 0.0;
    c->use_karras_sigmas = kind == SCHED_DPMPP_2M_KARRAS;
    c->final_sigma_min = 0;
    c->sigma_min = NAN;
    c->sigma_max = NAN;
    c->solver_order = 2;
    c->solver_heun = 0;
    c->lower_order_final = 1;
    c->euler_at_final = 0;
    c->lambda_min_clipped = -INFINITY;
    c->skip_prk_steps = 0;
}

/* Which kinds read a key (diffusers' __init__ parameters of each class). */
enum {
    K_EU = 1 << SCHED_EULER,
    K_EA = 1 << SCHED_EULER_A,
    K_DD = 1 << SCHED_DDIM,
    K_DP = (1 << SCHED_DPMPP_2M) | (1 << SCHED_DPMPP_2M_KARRAS),
    K_PN = 1 << SCHED_PNDM,
    K_ALL = K_EU | K_EA | K_DD | K_DP | K_PN,
};

typedef struct Parse {
    json_t *root;
    const char *what;
    int mask;    /* the kind's bit */
    SchedKind kind;
    Err *err;
} Parse;

/* The value of KEY when the kind reads it and it is not null; else NULL. */
static json_t *get(Parse *p, const char *key, int kinds) {
    if (!(p->mask & kinds))
        return NULL;
    json_t *v = json_object_get(p->root, key);
    return json_is_null(v) ? NULL : v;
}

static int bad(Parse *p, const char *key, const char *want) {
    return err_set(p->err, ERR_FORMAT, "%s: \"%s\" must be %s; fix the scheduler config",
                   p->what, key, want);
}

/* Python's json writes float("inf") as a bare -Infinity (diffusers' DPM-Solver++ configs all
 * hold "lambda_min_clipped": -Infinity), which is not JSON: a copy of TEXT with the bare
 * words Infinity, -Infinity and NaN quoted, for get_num to read back. New string (free). */
static char *quote_python_specials(const char *text) {
    size_t n = strlen(text);
    char *out = xmalloc(n * 2 + 1), *o = out;
    int in_str = 0;
    for (const char *t = text; *t;) {
        if (in_str) {
            if (*t == '\\' && t[1]) {
                *o++ = *t++;
            } else if (*t == '"') {
                in_str = 0;
            }
            *o++ = *t++;
            continue;
        }
        if (*t == '"') {
            in_str = 1;
            *o++ = *t++;
            continue;
        }
        static const char *const words[] = {"-Infinity", "Infinity", "NaN"};
        int done = 0;
        for (int w = 0; w < 3 && !done; w++) {
            size_t len = strlen(words[w]);
            if (strncmp(t, words[w], len) == 0) {
                *o++ = '"';
                memcpy(o, t, len);
                o += len;
                *o++ = '"';
                t += len;
                done = 1;
            }
        }
        if (!done)
            *o++ = *t++;
    }
    *o = '\0';
    return out;
}

static int get_num(Parse *p, const char *key, int kinds, double *out) {
    json_t *v = get(p, key, kinds);
    if (!v)
        return 0;
    const char *s = json_string_value(v); /* a bare word quoted above */
    if (s && (strcmp(s, "-Infinity") == 0 || strcmp(s, "Infinity") == 0)) {
        *out = s[0] == '-' ? -INFINITY : INFINITY;
        return 0;
    }
    if (!json_is_number(v))
        return bad(p, key, "a number");
    *out = json_number_value(v);
    return 0;
}

static int get_int(Parse *p, const char *key, int kinds, int lo, int hi, int *out) {
    json_t *v = get(p, key, kinds);
    if (!v)
        return 0;
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(d >= lo && d <= hi) || d != floor(d)) {
        char want[64];
        snprintf(want, sizeof want, "an integer from %d to %d", lo, hi);
        return bad(p, key, want);
    }
    *out = (int)d;
    return 0;
}

static int get_bool(Parse *p, const char *key, int kinds, int *out) {
    json_t *v = get(p, key, kinds);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return bad(p, key, "true or false");
    *out = json_is_true(v);
    return 0;
}

/* A string key with a fixed set of values: the index in NAMES (NULL-terminated). */
static int get_enum(Parse *p, const char *key, int kinds, const char *const *names,
                    const char *want, int *out) {
    json_t *v = get(p, key, kinds);
    if (!v)
        return 0;
    const char *s = json_string_value(v);
    for (int i = 0; s && names[i]; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    if (s)
        return err_set(p->err, ERR_FORMAT, "%s: \"%s\" is \"%.60s\": %s", p->what, key, s, want);
    return bad(p, key, want);
}

/* An option easel does not implement: an error when it is set to anything but its default. */
static int unsupported_bool(Parse *p, const char *key, int kinds) {
    int on = 0;
    int rc = get_bool(p, key, kinds, &on);
    if (rc == 0 && on)
        return err_set(p->err, ERR_FORMAT,
                       "%s: \"%s\": true is not supported by easel's %s; set it to false or "
                       "remove it",
                       p->what, key, kind_names[p->kind]);
    return rc;
}

int sched_config_parse(SchedConfig *out, SchedKind kind, const char *json, const char *what,
                       Err *err) {
    ASSERT((unsigned)kind < SCHED_KIND_COUNT);
    json_error_t jerr;
    char *text = quote_python_specials(json ? json : "");
    json_t *root = json_loads(text, 0, &jerr);
    free(text);
    if (!root)
        return err_set(err, ERR_FORMAT, "%s: line %d, column %d: %s; a scheduler config is a "
                       "JSON object", what, jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(err, ERR_FORMAT, "%s: not a JSON object; a scheduler config is "
                       "{\"beta_start\": ..., ...}", what);
    }
    SchedConfig c;
    sched_config_default(&c, kind);
    Parse p = {root, what, 1 << kind, kind, err};
    int rc = 0;
    int v;
    static const char *const betas[] = {"linear", "scaled_linear", "squaredcos_cap_v2", NULL};
    static const char *const spacing[] = {"linspace", "leading", "trailing", NULL};
    static const char *const pred[] = {"epsilon", "v_prediction", "sample", "original_sample",
                                       NULL};
    static const char *const final[] = {"zero", "sigma_min", NULL};
    static const char *const solver[] = {"midpoint", "heun", "logrho", "bh1", "bh2", NULL};
    static const char *const algo[] = {"dpmsolver++", "deis", NULL};
    static const char *const interp[] = {"linear", NULL};
    static const char *const ttype[] = {"discrete", NULL};

    if ((rc = get_int(&p, "num_train_timesteps", K_ALL, 2, 100000, &c.num_train_timesteps)))
        goto out;
    if ((rc = get_num(&p, "beta_start", K_ALL, &c.beta_start)) ||
        (rc = get_num(&p, "beta_end", K_ALL, &c.beta_end)))
        goto out;
    v = (int)c.beta_schedule;
    if ((rc = get_enum(&p, "beta_schedule", K_ALL, betas,
                       "use linear, scaled_linear or squaredcos_cap_v2", &v)))
        goto out;
    c.beta_schedule = (SchedBetas)v;
    if (get(&p, "trained_betas", K_ALL)) {
        rc = err_set(err, ERR_FORMAT, "%s: \"trained_betas\" is not supported; set it to null "
                     "and give beta_start, beta_end and beta_schedule", what);
        goto out;
    }
    v = (int)c.spacing;
    if ((rc = get_enum(&p, "timestep_spacing", K_ALL, spacing,
                       "use linspace, leading or trailing", &v)))
        goto out;
    c.spacing = (SchedSpacing)v;
    if ((rc = get_int(&p, "steps_offset", K_ALL, 0, 100000, &c.steps_offset)))
        goto out;
    v = (int)c.prediction;
    if ((rc = get_enum(&p, "prediction_type", K_ALL, pred,
                       "use epsilon, v_prediction or sample", &v)))
        goto out;
    c.prediction = v == 3 ? SCHED_PRED_SAMPLE : (SchedPrediction)v;
    if (kind == SCHED_EULER_A && c.prediction == SCHED_PRED_SAMPLE) {
        rc = err_set(err, ERR_FORMAT, "%s: \"prediction_type\" \"sample\" is not supported by "
                     "euler_a (nor by diffusers' EulerAncestralDiscreteScheduler); use euler "
                     "or ddim", what);
        goto out;
    }
    if (kind == SCHED_PNDM && c.prediction == SCHED_PRED_SAMPLE) {
        rc = err_set(err, ERR_FORMAT, "%s: \"prediction_type\" \"sample\" is not supported by "
                     "pndm (nor by diffusers' PNDMScheduler); use euler or ddim", what);
        goto out;
    }
    /* PNDMScheduler has no rescale_betas_zero_snr: from_config ignores it there */
    if ((rc = get_bool(&p, "rescale_betas_zero_snr", K_ALL & ~K_PN, &c.rescale_zero_snr)))
        goto out;

    /* DDIM */
    if ((rc = get_bool(&p, "clip_sample", K_DD, &c.clip_sample)) ||
        (rc = get_num(&p, "clip_sample_range", K_DD, &c.clip_sample_range)) ||
        (rc = get_bool(&p, "set_alpha_to_one", K_DD | K_PN, &c.set_alpha_to_one)) ||
        (rc = unsupported_bool(&p, "thresholding", K_DD | K_DP)))
        goto out;

    /* Euler and DPM-Solver++ */
    if ((rc = get_bool(&p, "use_karras_sigmas", K_EU | K_DP, &c.use_karras_sigmas)) ||
        (rc = unsupported_bool(&p, "use_exponential_sigmas", K_EU | K_DP)) ||
        (rc = unsupported_bool(&p, "use_beta_sigmas", K_EU | K_DP)))
        goto out;
    if (kind == SCHED_DPMPP_2M_KARRAS)
        c.use_karras_sigmas = 1;
    v = c.final_sigma_min;
    if ((rc = get_enum(&p, "final_sigmas_type", K_EU | K_DP, final, "use zero or sigma_min",
                       &v)))
        goto out;
    c.final_sigma_min = v;
    /* DPMSolverMultistepScheduler has no such parameters, but diffusers keeps a config's
     * extra keys and its Karras schedule reads these two when present */
    if ((rc = get_num(&p, "sigma_min", K_EU | K_DP, &c.sigma_min)) ||
        (rc = get_num(&p, "sigma_max", K_EU | K_DP, &c.sigma_max)))
        goto out;
    v = 0;
    if ((rc = get_enum(&p, "interpolation_type", K_EU, interp,
                       "linear (log_linear is not supported)", &v)) ||
        (rc = get_enum(&p, "timestep_type", K_EU, ttype,
                       "discrete (continuous is not supported)", &v)))
        goto out;

    /* DPM-Solver++ */
    if ((rc = get_int(&p, "solver_order", K_DP, 1, 2, &c.solver_order)))
        goto out;
    v = 0;
    if ((rc = get_enum(&p, "algorithm_type", K_DP, algo,
                       "dpmsolver++ (the others are not supported)", &v)))
        goto out;
    v = c.solver_heun;
    if ((rc = get_enum(&p, "solver_type", K_DP, solver, "use midpoint or heun", &v)))
        goto out;
    c.solver_heun = v == 1; /* diffusers maps logrho/bh1/bh2 to midpoint */
    if ((rc = get_bool(&p, "lower_order_final", K_DP, &c.lower_order_final)) ||
        (rc = get_bool(&p, "euler_at_final", K_DP, &c.euler_at_final)) ||
        (rc = get_num(&p, "lambda_min_clipped", K_DP, &c.lambda_min_clipped)) ||
        (rc = unsupported_bool(&p, "use_lu_lambdas", K_DP)) ||
        (rc = unsupported_bool(&p, "use_flow_sigmas", K_DP)) ||
        (rc = unsupported_bool(&p, "use_dynamic_shifting", K_DP)))
        goto out;
    if (get(&p, "variance_type", K_DP)) {
        rc = err_set(err, ERR_FORMAT, "%s: \"variance_type\" (learned variance) is not "
                     "supported; set it to null", what);
        goto out;
    }

    /* PNDM */
    if ((rc = get_bool(&p, "skip_prk_steps", K_PN, &c.skip_prk_steps)))
        goto out;

    if (!(c.beta_start >= 0 && c.beta_end > 0 && c.beta_start < 1 && c.beta_end < 1)) {
        rc = err_set(err, ERR_FORMAT, "%s: beta_start %g and beta_end %g must lie in [0, 1) "
                     "(SD uses 0.00085 and 0.012)", what, c.beta_start, c.beta_end);
        goto out;
    }
    if (!(c.clip_sample_range > 0)) {
        rc = bad(&p, "clip_sample_range", "a number above 0");
        goto out;
    }
    if ((!isnan(c.sigma_min) && !(c.sigma_min > 0)) ||
        (!isnan(c.sigma_max) && !(c.sigma_max > 0))) {
        rc = err_set(err, ERR_FORMAT, "%s: \"sigma_min\" and \"sigma_max\" must be above 0 or "
                     "null", what);
        goto out;
    }
    *out = c;
out:
    json_decref(root);
    return rc;
}

int sched_config_load(SchedConfig *c, SchedKind kind, const char *path, Err *err) {
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = infile_read_all(path, "scheduler config", 1 << 20, &buf, &len, err);
    if (rc)
        return rc;
    rc = sched_config_parse(c, kind, (const char *)buf, path, err);
    free(buf);
    return rc;
}
