/* tune_eval — adapter vs base model, scored by a reward model. See tune_eval.h. */
#include "tune_eval.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "base.h"
#include "fmt_csv.h"
#include "genrun.h"
#include "jobkinds_gen.h"
#include "jobkinds_reward.h"
#include "store_runs.h"
#include "train.h"

#define NO TUNE_EVAL_NO

static const JobParamSpec tune_eval_params[] = {
    {"adapter", JOB_PARAM_PATH, NULL, "the adapter: pytorch_lora_weights.safetensors (LoRA or "
     "DoRA) or the folder holding it; FILE:SCALE scales it", NULL},
    {"model", JOB_PARAM_STRING, "", "the base model: a registered diffusion model's name, a "
     "diffusers folder or a single-file checkpoint; default: the one registered", NULL},
    {"tokenizer", JOB_PARAM_PATH, "", "tokenizer folder for a single-file --model (default: "
     "the registered model's, else the first registered CLIP model's)", NULL},
    {"prediction", JOB_PARAM_CHOICE, "model", "the scheduler's prediction type: the model's, "
     "epsilon or v", "model|epsilon|v"},
    {"prompts", JOB_PARAM_PATH, NULL, "held-out prompts.csv (prompt_id,prompt)", NULL},
    {"seeds", JOB_PARAM_STRING, "0,1", "seeds, comma-separated: each prompt x seed is rendered "
     "with and without the adapter", NULL},
    {"reward", JOB_PARAM_PATH, NULL, "reward checkpoint (best/, final/, a run folder or a run's "
     "name) that scores every image", NULL},
    {"out", JOB_PARAM_PATH, "", "output folder: {out}/base/..., {out}/adapter/..., "
     "scores.csv, tune-eval.json; default runs/NAME beside the store", NULL},
    {"device", JOB_PARAM_STRING, "auto", "where the models run: auto, cpu, cuda or cuda:N", NULL},
    {"steps", JOB_PARAM_INT, "50", "denoising steps", NULL},
    {"guidance", JOB_PARAM_FLOAT, "7.5", "classifier-free guidance scale (<= 1: off)", NULL},
    {"size", JOB_PARAM_STRING, "", "WxH, multiples of 8; default the model's", NULL},
    {"scheduler", JOB_PARAM_STRING, "", "euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras or "
     "pndm; default the model's", NULL},
    {"negative", JOB_PARAM_STRING, "", "negative prompt", NULL},
    {"name", JOB_PARAM_STRING, "", "the store run's name; default tune-eval-DATE-TIME", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

/* ---- the adapter file ---- */

/* ADAPTER[:SCALE] as the generate kind's --lora value: a folder becomes its
 * pytorch_lora_weights.safetensors. New string, or NULL with ERR_USAGE. */
static char *adapter_lora(const char *arg, char **file, Err *err) {
    char *path = xstrdup(arg);
    char *scale = NULL;
    char *colon = strrchr(path, ':');
    struct stat sb;
    if (colon && stat(path, &sb) != 0) { /* FILE:SCALE (a path with ':' that exists is a path) */
        char *end = NULL;
        double v = strtod(colon + 1, &end);
        if (end != colon + 1 && !*end && isfinite(v)) {
            scale = xstrdup(colon + 1);
            *colon = '\0';
        }
    }
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char *f = xasprintf("%s/pytorch_lora_weights.safetensors", path);
        free(path);
        path = f;
    }
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        err_set(err, ERR_USAGE, "adapter %s: no such file (give the tune run's "
                "pytorch_lora_weights.safetensors or its folder)", path);
        free(path);
        free(scale);
        return NULL;
    }
    if (strchr(path, ',')) {
        err_set(err, ERR_USAGE, "adapter %s: a path with ',' cannot be used", path);
        free(path);
        free(scale);
        return NULL;
    }
    char *lora = scale ? xasprintf("%s:%s", path, scale) : xstrdup(path);
    *file = path;
    free(scale);
    return lora;
}

static int gen_params_for(const JobParams *p, const char *out, const char *lora, JobParams **gp,
                          Err *err);

static int tune_eval_validate(const JobParams *p, Err *err) {
    char *file = NULL;
    char *lora = adapter_lora(job_param_str(p, "adapter"), &file, err);
    if (!lora)
        return ERR_USAGE;
    free(file);
    struct stat sb;
    const char *prompts = job_param_str(p, "prompts");
    if (stat(prompts, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        free(lora);
        return err_set(err, ERR_USAGE, "--prompts %s: no such file (held-out prompts.csv: "
                       "prompt_id,prompt)", prompts);
    }
    JobParams *gp = NULL;
    int rc = gen_params_for(p, "out", lora, &gp, err); /* seeds, steps, size, scheduler, device */
    job_params_free(gp);
    free(lora);
    return rc;
}

/* ---- one half: the generate kind ---- */

typedef struct Phase {
    const Progress *outer;
    double offset;             /* items done before this phase */
    double items;              /* items per phase (0 until the first phase knows) */
    int in_job;                /* run as a job: generate's trust rules (qa15) */
} Phase;

static void phase_progress(void *user, double done, double total, const char *unit) {
    Phase *ph = user;
    (void)unit;
    if (total > 0)
        ph->items = total;
    progress_report(ph->outer, ph->offset + done, 3 * ph->items, "images");
}

static int phase_cancelled(void *user) {
    Phase *ph = user;
    return progress_cancelled(ph->outer);
}

static void phase_log(void *user, const char *line) {
    Phase *ph = user;
    progress_log(ph->outer, line);
}

/* The generate kind's parameters for one half of P: the work list into OUT, with the adapter
 * when LORA is not NULL (checked by the generate kind's own validation). */
static int gen_params_for(const JobParams *p, const char *out, const char *lora, JobParams **gp,
                          Err *err) {
    static const char *const copy[] = {"model", "prompts", "seeds", "steps", "guidance", "size",
                                       "scheduler", "negative", "device", "tokenizer",
                                       "prediction"};
    const char *names[16], *values[16];
    char num[2][32];
    int n = 0;
    for (size_t i = 0; i < ARRAY_LEN(copy); i++) {
        const char *v;
        if (strcmp(copy[i], "steps") == 0) {
            snprintf(num[0], sizeof num[0], "%lld", (long long)job_param_int(p, "steps"));
            v = num[0];
        } else if (strcmp(copy[i], "guidance") == 0) {
            snprintf(num[1], sizeof num[1], "%.17g", job_param_float(p, "guidance"));
            v = num[1];
        } else {
            v = job_param_str(p, copy[i]);
        }
        if (!v || !*v)
            continue;
        names[n] = copy[i];
        values[n++] = v;
    }
    names[n] = "out";
    values[n++] = out;
    if (lora) {
        names[n] = "lora";
        values[n++] = lora;
    }
    return job_params_parse(&jobkind_generate, n, names, values, gp, err);
}

/* Generate one half (GP: gen_params_for's) into its folder. */
static int generate_half(Store *st, const JobParams *gp, int adapter, Phase *ph, Err *err) {
    Progress wrap = {phase_progress, phase_cancelled, phase_log, ph};
    GenRunReport rep;
    int rc = gen_job_execute_in(st, gp, 0, ph->in_job, &wrap, &rep, err);
    if (rc == 0 && rep.failed) {
        char line[512];
        snprintf(line, sizeof line, "%s: %zu of %zu images failed (%s); their pairs are left "
                 "out", adapter ? "adapter" : "base", rep.failed, rep.total,
                 rep.failures ? rep.failures : "failed.csv");
        progress_log(ph->outer, line);
    }
    if (ph->items == 0)
        ph->items = (double)rep.total;
    gen_run_report_deinit(&rep);
    return rc;
}

/* ---- pairing and scoring ---- */

typedef struct Item {
    char *prompt_id, *prompt, *path;
    uint64_t seed;
} Item;

static void items_free(Item *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].prompt_id);
        free(v[i].prompt);
        free(v[i].path);
    }
    free(v);
}

/* The images DIR's metadata.csv lists (absolute paths). */
static int read_half(const char *dir, Item **out, size_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    char *csv = xasprintf("%s/metadata.csv", dir);
    CsvTable t = {0};
    int rc = fmt_csv_read(csv, &t, err);
    if (rc)
        goto out;
    int c_id = t.n_rows ? fmt_csv_column(&t.rows[0], "prompt_id") : -1;
    int c_seed = t.n_rows ? fmt_csv_column(&t.rows[0], "seed") : -1;
    int c_path = t.n_rows ? fmt_csv_column(&t.rows[0], "path") : -1;
    int c_prompt = t.n_rows ? fmt_csv_column(&t.rows[0], "prompt") : -1;
    if (c_id < 0 || c_seed < 0 || c_path < 0 || c_prompt < 0) {
        rc = err_set(err, ERR_FORMAT, "%s: not a generation's metadata (prompt_id, seed, path, "
                     "prompt columns)", csv);
        goto out;
    }
    *out = xcalloc(t.n_rows, sizeof **out);
    for (size_t i = 1; i < t.n_rows; i++) {
        const CsvRow *row = &t.rows[i];
        if (row->n <= (size_t)c_id || row->n <= (size_t)c_seed || row->n <= (size_t)c_path ||
            row->n <= (size_t)c_prompt) {
            rc = err_set(err, ERR_FORMAT, "%s:%ld: too few fields", csv, row->line);
            goto out;
        }
        Item *it = &(*out)[(*n)++];
        it->prompt_id = xstrdup(row->field[c_id]);
        it->prompt = xstrdup(row->field[c_prompt]);
        it->seed = strtoull(row->field[c_seed], NULL, 10);
        it->path = row->field[c_path][0] == '/' ? xstrdup(row->field[c_path])
                                                : xasprintf("%s/%s", dir, row->field[c_path]);
    }
out:
    if (rc) {
        items_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    fmt_csv_deinit(&t);
    free(csv);
    return rc;
}

static int score_image(RewardCkpt *c, Store *st, const char *path, const char *prompt,
                       float s[NO], Err *err) {
    int rc = train_ckpt_score(c, st, path, NULL, prompt, s, err);
    if (rc)
        err_prefix(err, "score %s", path);
    return rc;
}

/* ---- results ---- */

static void summarize(TuneEvalReport *r) {
    for (int k = 0; k < NO; k++) {
        double win = 0, gain = 0, b = 0, a = 0;
        for (size_t i = 0; i < r->n; i++) {
            const TuneEvalPair *pp = &r->pairs[i];
            win += pp->adapter[k] > pp->base[k];
            gain += (double)pp->adapter[k] - (double)pp->base[k];
            b += pp->base[k];
            a += pp->adapter[k];
        }
        double n = r->n ? (double)r->n : NAN;
        r->win[k] = win / n;
        r->gain[k] = gain / n;
        r->base_mean[k] = b / n;
        r->adapter_mean[k] = a / n;
    }
}

static int record_metrics(Store *st, const TuneEvalReport *r, Err *err) {
    StoreMetric m[4 * NO + 1];
    size_t n = 0;
    static const char *const what[4] = {"win", "gain", "base", "adapter"};
    for (int k = 0; k < NO; k++) {
        const double v[4] = {r->win[k], r->gain[k], r->base_mean[k], r->adapter_mean[k]};
        for (int j = 0; j < 4; j++) {
            memset(&m[n], 0, sizeof m[n]);
            base_strlcpy(m[n].split, "eval", sizeof m[n].split);
            snprintf(m[n].name, sizeof m[n].name, "%s_%s", what[j], train_output_name(k));
            m[n].value = v[j];
            n++;
        }
    }
    memset(&m[n], 0, sizeof m[n]);
    base_strlcpy(m[n].split, "sys", sizeof m[n].split);
    base_strlcpy(m[n].name, "pairs", sizeof m[n].name);
    m[n].value = (double)r->n;
    n++;
    return store_metrics_add(st, r->run_id, m, n, err);
}

static int write_scores_csv(const TuneEvalReport *r, Err *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return err_set(err, ERR_NOMEM, "scores.csv: out of memory");
    fputs("prompt_id,seed,side,path", f);
    for (int k = 0; k < NO; k++)
        fprintf(f, ",%s", train_output_name(k));
    fputc('\n', f);
    for (size_t i = 0; i < r->n; i++) {
        const TuneEvalPair *pp = &r->pairs[i];
        for (int side = 0; side < 2; side++) {
            fmt_csv_write_field(f, pp->prompt_id);
            fprintf(f, ",%llu,%s,", (unsigned long long)pp->seed, side ? "adapter" : "base");
            fmt_csv_write_field(f, side ? pp->adapter_path : pp->base_path);
            for (int k = 0; k < NO; k++)
                fprintf(f, ",%.9g", (double)(side ? pp->adapter[k] : pp->base[k]));
            fputc('\n', f);
        }
    }
    fclose(f);
    char *path = xasprintf("%s/scores.csv", r->out);
    int rc = atomic_file_write(path, buf, len, err);
    free(path);
    free(buf);
    return rc;
}

char *tune_eval_json(const TuneEvalReport *r) {
    json_t *heads = json_object();
    for (int k = 0; k < NO; k++) {
        json_t *h = json_object();
        json_object_set_new(h, "win_rate", r->n ? json_real(r->win[k]) : json_null());
        json_object_set_new(h, "mean_gain", r->n ? json_real(r->gain[k]) : json_null());
        json_object_set_new(h, "base_mean", r->n ? json_real(r->base_mean[k]) : json_null());
        json_object_set_new(h, "adapter_mean",
                            r->n ? json_real(r->adapter_mean[k]) : json_null());
        json_object_set_new(heads, train_output_name(k), h);
    }
    json_t *j = json_object();
    json_object_set_new(j, "run", r->run_name ? json_string(r->run_name) : json_null());
    json_object_set_new(j, "adapter", r->adapter ? json_string(r->adapter) : json_null());
    json_object_set_new(j, "reward", r->reward ? json_string(r->reward) : json_null());
    json_object_set_new(j, "out", r->out ? json_string(r->out) : json_null());
    json_object_set_new(j, "pairs", json_integer((json_int_t)r->n));
    json_object_set_new(j, "missing", json_integer((json_int_t)r->missing));
    json_object_set_new(j, "heads", heads);
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(j);
    char *out = xasprintf("%s\n", s ? s : "{}");
    free(s);
    return out;
}

void tune_eval_print(FILE *f, const TuneEvalReport *r) {
    fprintf(f, "tune-eval %s: adapter %s vs base on %zu (prompt, seed) pairs%s\n",
            r->run_name ? r->run_name : "", r->adapter ? r->adapter : "", r->n,
            r->missing ? " (some left out: an image failed)" : "");
    fprintf(f, "%-10s %9s %11s %10s %10s\n", "head", "win rate", "mean gain", "base",
            "adapter");
    for (int k = 0; k < NO; k++)
        fprintf(f, "%-10s %8.1f%% %+11.4f %10.4f %10.4f\n", train_output_name(k),
                100.0 * r->win[k], r->gain[k], r->base_mean[k], r->adapter_mean[k]);
    fprintf(f, "win rate: share of pairs where the adapter's image scores strictly higher "
               "(50%% = no change); images in %s/base and %s/adapter\n",
            r->out ? r->out : ".", r->out ? r->out : ".");
}

void tune_eval_report_deinit(TuneEvalReport *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->pairs[i].prompt_id);
        free(r->pairs[i].base_path);
        free(r->pairs[i].adapter_path);
    }
    free(r->pairs);
    free(r->run_name);
    free(r->out);
    free(r->adapter);
    free(r->reward);
    memset(r, 0, sizeof *r);
}

/* ---- the whole ---- */

static char *config_json(const JobParams *p, const char *adapter, const char *reward,
                         const char *out) {
    char *params = job_params_to_json(p);
    json_t *j = json_loads(params, 0, NULL);
    free(params);
    if (!j)
        j = json_object();
    json_object_set_new(j, "adapter_file", json_string(adapter));
    json_object_set_new(j, "reward_checkpoint", json_string(reward));
    json_object_set_new(j, "out", json_string(out));
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

int tune_eval_execute(Store *st, int64_t job_id, const JobParams *p, const Progress *pr,
                      TuneEvalReport *r, Err *err) {
    memset(r, 0, sizeof *r);
    char *lora = NULL, *config = NULL, *base_dir = NULL, *adapter_dir = NULL;
    JobParams *gp_base = NULL, *gp_adapter = NULL;
    Item *bi = NULL, *ai = NULL;
    size_t nb = 0, na = 0;
    RewardCkpt *c = NULL;
    int rc = 0;
    if (!(lora = adapter_lora(job_param_str(p, "adapter"), &r->adapter, err)))
        return ERR_USAGE;
    Err e = {0};
    if (!(r->reward = reward_checkpoint_resolve(st, job_param_str(p, "reward"), &e))) {
        rc = err_pass(err, &e, ERR_NOTFOUND);
        goto out;
    }
    r->run_name = job_param_str(p, "name")[0] ? xstrdup(job_param_str(p, "name"))
                                              : store_run_unique_name(st, "tune-eval");
    r->out = job_param_str(p, "out")[0] ? xstrdup(job_param_str(p, "out"))
                                        : xasprintf("%s/runs/%s", store_dir(st), r->run_name);
    base_dir = xasprintf("%s/base", r->out);
    adapter_dir = xasprintf("%s/adapter", r->out);
    if ((rc = tune_eval_validate(p, err)) ||
        (rc = gen_params_for(p, base_dir, NULL, &gp_base, err)) ||
        (rc = gen_params_for(p, adapter_dir, lora, &gp_adapter, err)))
        goto out; /* nothing written yet */
    char *mpath = NULL, *mname = NULL;
    rc = gen_model_resolve(st, job_param_str(p, "model"), &mpath, &mname, err);
    free(mpath);
    free(mname);
    if (rc)
        goto out;
    config = config_json(p, r->adapter, r->reward, r->out);
    if ((rc = store_run_create(st, r->run_name, "tune-eval", config, job_id, r->out,
                               &r->run_id, err)))
        goto out;
    Phase ph = {.outer = pr, .in_job = job_id != 0};
    progress_log(pr, "generating with the base model");
    if ((rc = generate_half(st, gp_base, 0, &ph, err)))
        goto out;
    ph.offset = ph.items;
    progress_log(pr, "generating with the adapter");
    if ((rc = generate_half(st, gp_adapter, 1, &ph, err)))
        goto out;
    if ((rc = read_half(base_dir, &bi, &nb, err)) || (rc = read_half(adapter_dir, &ai, &na, err)))
        goto out;
    TrainDevice dev = {.spec = job_param_str(p, "device")};
    if ((rc = train_ckpt_open_on(st, r->reward, &dev, &c, err)))
        goto out;
    progress_log(pr, "scoring both sides with the reward model");
    r->pairs = xcalloc(nb ? nb : 1, sizeof *r->pairs);
    size_t total = (size_t)ph.items;
    for (size_t i = 0; i < nb; i++) {
        if (progress_cancelled(pr)) {
            rc = err_set(err, ERR_CANCELLED, "cancelled while scoring (%zu of %zu pairs)", i,
                         nb);
            goto out;
        }
        const Item *b = &bi[i], *a = NULL;
        for (size_t k = 0; k < na && !a; k++)
            if (ai[k].seed == b->seed && strcmp(ai[k].prompt_id, b->prompt_id) == 0)
                a = &ai[k];
        if (!a)
            continue;
        TuneEvalPair *pp = &r->pairs[r->n];
        if ((rc = score_image(c, st, b->path, b->prompt, pp->base, err)) ||
            (rc = score_image(c, st, a->path, a->prompt, pp->adapter, err)))
            goto out;
        pp->prompt_id = xstrdup(b->prompt_id);
        pp->seed = b->seed;
        pp->base_path = xstrdup(b->path);
        pp->adapter_path = xstrdup(a->path);
        r->n++;
        progress_report(pr, 2 * ph.items + (double)(i + 1) * ph.items / (double)nb,
                        3 * ph.items, "images");
    }
    r->missing = total > r->n ? total - r->n : 0;
    if (r->n == 0) {
        rc = err_set(err, ERR_IO, "no (prompt, seed) has both images (see %s/base/failed.csv "
                     "and %s/adapter/failed.csv)", r->out, r->out);
        goto out;
    }
    summarize(r);
    if ((rc = write_scores_csv(r, err)))
        goto out;
    char *js = tune_eval_json(r);
    char *jpath = xasprintf("%s/tune-eval.json", r->out);
    rc = atomic_file_write(jpath, js, strlen(js), err);
    free(jpath);
    free(js);
    if (rc)
        goto out;
    rc = record_metrics(st, r, err);
out:
    if (r->run_id)
        store_run_set_state(st, r->run_id, rc == 0               ? "succeeded"
                                           : rc == ERR_CANCELLED ? "cancelled"
                                                                 : "failed", NULL);
    train_ckpt_free(c);
    job_params_free(gp_base);
    job_params_free(gp_adapter);
    items_free(bi, nb);
    items_free(ai, na);
    free(base_dir);
    free(adapter_dir);
    free(config);
    free(lora);
    return rc;
}

/* ---- the job kind ---- */

static int tune_eval_job_run(JobCtx *ctx, const JobParams *p, Err *err) {
    Progress h = job_progress_hooks(ctx);
    TuneEvalReport r;
    int rc = tune_eval_execute(job_store(ctx), job_id(ctx), p, &h, &r, err);
    if (rc == 0)
        for (int k = 0; k < NO; k++)
            job_log(ctx, "%-9s win rate %5.1f%%  mean gain %+.4f", train_output_name(k),
                    100.0 * r.win[k], r.gain[k]);
    if (r.run_name)
        job_log(ctx, "run %s; images, scores.csv and tune-eval.json in %s", r.run_name,
                r.out ? r.out : "-");
    tune_eval_report_deinit(&r);
    return rc;
}

static int tune_eval_gpus(const JobParams *p) {
    return strcmp(job_param_str(p, "device"), "cpu") != 0;
}

const JobKind jobkind_tune_eval = {
    .name = "tune-eval",
    .summary = "a tuned adapter vs its base model: per-head win rate and mean reward gain",
    .help = "Generate held-out prompts x seeds with and without the adapter from the same\n"
            "seeds ({out}/base/ and {out}/adapter/, each with metadata.csv and rows in the\n"
            "store), score every image with the reward model's five heads and its combined\n"
            "score, and report per head the win rate (share of pairs where the adapter's image\n"
            "scores strictly higher) and the mean score gain: a tune-eval run in the store\n"
            "(the Monitor shows it), scores.csv and tune-eval.json. See doc/tuning.md.\n\n"
            "example:\n  easel jobs add tune-eval --adapter runs/tune-1 --prompts heldout.csv "
            "--reward runs/reward/best\n",
    .params = tune_eval_params,
    .gpus = 1,
    .refs = (const JobParamRefSpec[]){{"model", JOB_REF_DIFFUSION_MODEL},
                                      {"reward", JOB_REF_CHECKPOINT},
                                      {NULL, JOB_REF_NONE}},
    .validate = tune_eval_validate,
    .run = tune_eval_job_run,
    .gpus_for = tune_eval_gpus,
};
