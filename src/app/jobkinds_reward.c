/* jobkinds_reward — embed, train-reward, eval-reward and score as job kinds, and the shared
 * work behind `easel train/eval/score`. See jobkinds_reward.h.
 *
 * A train-reward job checkpoints: after every epoch it saves {"output": DIR, "epoch": N} as
 * the job's checkpoint; when the job is resumed (interrupted worker, `easel jobs resume`),
 * training continues from DIR/.resume to the same weights an uninterrupted run reaches.
 */
#include "jobkinds_reward.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <unistd.h>

#include "atomic_file.h"
#include "backend.h"
#include "base.h"
#include "encoder.h"
#include "fmt_csv.h"
#include "store_catalog.h"
#include "store_runs.h"
#include "trust.h"

#define NH TRAIN_N_HEADS
#define NO (TRAIN_N_HEADS + 1)


/* ---- train-reward ---- */

/* The parameters: the training options of train.h's table, then the job's own three. */
#define SPEC_TEXT_INT(v) #v
#define SPEC_TEXT_FLOAT(v) #v
#define SPEC_TEXT_STRING(v) v
#define SPEC_TEXT_CHOICE(v) v
#define SPEC(field, name, type, def, lo, hi, help, choices)                                  \
    {name, JOB_PARAM_##type, SPEC_TEXT_##type(def), help, choices},

static const JobParamSpec train_params[] = {
    TRAIN_OPTIONS(SPEC)
    {"annotator", JOB_PARAM_STRING, "", "train on one annotator's ratings (default: mean)",
     NULL},
    {"output", JOB_PARAM_PATH, "", "run folder (default runs/NAME beside the store)", NULL},
    {"name", JOB_PARAM_STRING, "", "run name (default train-DATE-TIME)", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

/* A TrainConfig field from its parameter. */
#define READ_INT(c, field, name) (c)->field = job_param_int(p, name)
#define READ_FLOAT(c, field, name) (c)->field = job_param_float(p, name)
#define READ_STRING(c, field, name)                                                          \
    base_strlcpy((c)->field, job_param_str(p, name), sizeof (c)->field)
#define READ_CHOICE READ_STRING
#define READ(field, name, type, def, lo, hi, help, choices) READ_##type(c, field, name);

static int int_in_range(const JobParams *p, const char *name, long long lo, long long hi,
                        Err *err) {
    long long v = (long long)job_param_int(p, name);
    if (v < lo || v > hi)
        return err_set(err, ERR_USAGE, "--%s %lld: expected a whole number from %lld to %lld",
                       name, v, lo, hi);
    return 0;
}

/* The parameters that need no store, into C (annotator, name and output stay unset). */
static int train_config_from_params(const JobParams *p, TrainConfig *c, Err *err) {
    /* the whole-number ranges first, on the 64-bit values (before they are narrowed) */
    for (const JobParamSpec *sp = train_params; sp->name; sp++) {
        long long lo, hi;
        if (sp->type != JOB_PARAM_INT || train_option_int_range(sp->name, &lo, &hi))
            continue;
        if (int_in_range(p, sp->name, lo, hi, err))
            return ERR_USAGE;
    }
    train_config_defaults(c);
    TRAIN_OPTIONS(READ)
    return 0;
}

/* When the job is queued: the numbers and choices as `easel train` checks them (the run
 * folder is decided when the job runs). */
static int train_job_validate(const JobParams *p, Err *err) {
    TrainConfig c;
    int kind, index; /* the whole value, before it is cut to the config's field */
    if (backend_spec_parse(job_param_str(p, "device"), &kind, &index, err)) {
        err_prefix(err, "train-reward: --device");
        return ERR_USAGE;
    }
    int rc = train_config_from_params(p, &c, err);
    if (rc) {
        err_prefix(err, "train-reward");
        return rc;
    }
    base_strlcpy(c.output, "(decided when the job runs)", sizeof c.output);
    rc = train_config_check(&c, err);
    if (rc)
        err_prefix(err, "train-reward");
    return rc;
}

int reward_train_config(const JobParams *p, Store *st, TrainConfig *c, Err *err) {
    int rc = train_config_from_params(p, c, err);
    if (rc)
        return rc;
    const char *annot = job_param_str(p, "annotator");
    if (annot[0]) {
        int64_t id;
        if (store_annotator_find(st, annot, &id, err))
            return err_prefix(err, "--annotator %s", annot);
        c->annotator_id = id;
    }
    const char *name = job_param_str(p, "name");
    if (name[0])
        base_strlcpy(c->run_name, name, sizeof c->run_name);
    else {
        char *n = store_run_unique_name(st, "train");
        base_strlcpy(c->run_name, n, sizeof c->run_name);
        free(n);
    }
    const char *out = job_param_str(p, "output");
    if (out[0]) {
        base_strlcpy(c->output, out, sizeof c->output);
    } else {
        char *o = xasprintf("%s/runs/%s", store_dir(st), c->run_name);
        base_strlcpy(c->output, o, sizeof c->output);
        free(o);
    }
    return train_config_check(c, err);
}

/* The device a job opens. A job whose --device is not cpu asks the scheduler for one GPU
 * (jobs_add); when it was given one, it opens cuda:<that GPU>. Given none (the worker has no
 * GPU to schedule): cpu for auto, else what --device says (a cuda request then runs on the
 * CPU with a note when the machine has no GPU). */
static void job_device(JobCtx *ctx, const char *spec, char *buf, size_t n) {
    int kind = BACKEND_SPEC_AUTO, index = 0, ng = 0;
    Err e = {0};
    backend_spec_parse(spec, &kind, &index, &e); /* checked when the job was added */
    const int *g = job_gpus(ctx, &ng);
    if (kind != BACKEND_SPEC_CPU && ng > 0)
        snprintf(buf, n, "cuda:%d", g[0]);
    else
        base_strlcpy(buf, kind == BACKEND_SPEC_AUTO ? "cpu" : spec, n);
}

static void job_device_note(void *user, const char *note) {
    job_log(user, "%s", note);
}

/* A job's note about its device, and what it runs on, into its log. */
static void log_device(JobCtx *ctx, const TrainDevice *dev) {
    if (dev->note[0])
        job_log(ctx, "%s", dev->note);
    if (dev->name[0])
        job_log(ctx, "model on %s", dev->name);
}

static int device_param_check(const JobParams *p, const char *kind, Err *err) {
    int k, i;
    if (backend_spec_parse(job_param_str(p, "device"), &k, &i, err)) {
        err_prefix(err, "%s: --device", kind);
        return ERR_USAGE;
    }
    return 0;
}

static int job_resume_cb(void *user, const char *json, Err *err) {
    return job_checkpoint_save(user, json, err);
}

static int train_job_run(JobCtx *ctx, const JobParams *p, Err *err) {
    Store *st = job_store(ctx);
    TrainConfig cfg;
    const char *resume = job_checkpoint(ctx);
    if (!resume) {
        int rc = reward_train_config(p, st, &cfg, err);
        if (rc)
            return rc;
    } else {
        train_config_defaults(&cfg);
        cfg.threads = (int)job_param_int(p, "threads");
    }
    job_device(ctx, job_param_str(p, "device"), cfg.device, sizeof cfg.device);
    TrainHooks h = {.progress = job_progress_hooks(ctx), .resume_point = job_resume_cb,
                    .resume = resume, .job_id = job_id(ctx), .device_note = job_device_note};
    return train_run(st, &cfg, &h, NULL, err);
}

const JobKind jobkind_train_reward = {
    .name = "train-reward",
    .summary = "train a five-head reward model on the store's ratings or pairs",
    .help = "Trains the five-head reward model (spatial, icono, style, fidelity, material)\n"
            "on frozen image/prompt features, validates per head every epoch and writes\n"
            "best/, checkpoint-N/ and final/ into the run folder. Watch it on the Monitor\n"
            "screen or with 'easel runs show RUN --follow'. Resumable.\n\n"
            "example:\n  easel jobs add train-reward --epochs 20 --fusion-method cross_attention\n",
    .params = train_params,
    .refs = (const JobParamRefSpec[]){{"encoder", JOB_REF_ENCODER}, {"name", JOB_REF_RUN_NAME},
                                      {NULL, JOB_REF_NONE}},
    .checkpoints = 1,
    .validate = train_job_validate,
    .run = train_job_run,
};

/* ---- embed ---- */

static const JobParamSpec embed_params[] = {
    {"encoder", JOB_PARAM_STRING, "classic", "feature encoder: classic, or clip:NAME", NULL},
    {"device", JOB_PARAM_STRING, "auto", "where a clip encoder computes: auto, cpu, cuda or "
     "cuda:N (not cpu: the job asks the scheduler for a GPU and runs on the one it gets)",
     NULL},
    {NULL, 0, NULL, NULL, NULL},
};

int reward_embed_all(Store *st, const char *encoder, const Progress *h, size_t *n_images,
                     size_t *n_prompts, Err *err) {
    return reward_embed_all_on(st, encoder, NULL, h, n_images, n_prompts, err);
}

int reward_embed_all_on(Store *st, const char *encoder, const EncoderDevice *dev,
                        const Progress *h, size_t *n_images, size_t *n_prompts, Err *err) {
    Encoder *enc;
    int rc = encoder_open_on(encoder, st, dev, &enc, err);
    if (rc)
        return rc;
    if (enc->note[0] && h && h->log) {
        char line[300];
        snprintf(line, sizeof line, "note: %s", enc->note);
        progress_log(h, line);
    }
    StoreImage *im = NULL;
    size_t ni = 0, done = 0;
    TrainSkipped sk = {0}; /* unreadable images: skipped, named once at the end */
    StorePrompt *pr = NULL;
    size_t np = 0;
    rc = store_images_list(st, 0, &im, &ni, err);
    if (rc)
        goto out;
    if ((rc = store_prompts_list(st, &pr, &np, err)))
        goto out;
    for (size_t i = 0; i < ni; i++) {
        if (progress_cancelled(h)) {
            rc = err_set(err, ERR_CANCELLED, "cancelled after %zu of %zu images", done, ni);
            goto out;
        }
        char *path = store_path_resolve(st, im[i].path);
        float *v = NULL;
        Err e2 = {0};
        if (access(path, R_OK) != 0)
            rc = err_set(&e2, ERR_NOTFOUND, "%s: cannot open (%s)", path, strerror(errno));
        else
            rc = encoder_embed_image(enc, st, path, im[i].sha256, &v, &e2);
        free(v);
        if (rc && train_err_is_unreadable(rc)) { /* the image's fault, or the cache's? */
            Err e3 = {0};
            int bad = train_image_probe(enc, path, &e3);
            if (bad && train_err_is_unreadable(bad)) {
                train_skipped_add(&sk, im[i].path, e3.msg);
                rc = 0;
            }
        }
        free(path);
        if (rc) {
            if (err)
                *err = e2;
            goto out;
        }
        if (!v)
            continue; /* skipped */
        done++;
        progress_report(h, (double)(i + 1), (double)(ni + np), "items");
    }
    for (size_t i = 0; i < np; i++) {
        float *v = NULL;
        if ((rc = encoder_embed_text(enc, st, pr[i].text, &v, err)))
            goto out;
        free(v);
        progress_report(h, (double)(ni + i + 1), (double)(ni + np), "items");
    }
    if (n_images)
        *n_images = done;
    if (n_prompts)
        *n_prompts = np;
    if (sk.n && h && h->log) {
        char why[900], line[1000];
        train_skipped_text(&sk, why, sizeof why);
        snprintf(line, sizeof line, "warning: %s", why);
        progress_log(h, line);
    }
out:
    store_images_free(im, ni);
    store_prompts_free(pr, np);
    encoder_free(enc);
    return rc;
}

/* "auto", "cpu", "cuda", "cuda:N" (N 0..255), as backend_open takes them. */
static int device_name_ok(const char *d) {
    if (!strcmp(d, "auto") || !strcmp(d, "cpu") || !strcmp(d, "cuda"))
        return 1;
    if (strncmp(d, "cuda:", 5) || !d[5] || d[5] == '-' || d[5] == '+')
        return 0;
    char *end = NULL;
    long v = strtol(d + 5, &end, 10);
    return *end == '\0' && v >= 0 && v <= 255;
}

static int embed_job_validate(const JobParams *p, Err *err) {
    const char *d = job_param_str(p, "device");
    if (!device_name_ok(d))
        return err_set(err, ERR_USAGE, "--device is auto, cpu, cuda or cuda:N (N = 0, 1, ...), "
                       "not '%s'", d);
    if (strcmp(d, "cpu") && strcmp(d, "auto") && strncmp(job_param_str(p, "encoder"), "clip:", 5))
        return err_set(err, ERR_USAGE, "--device %s: only clip encoders run on a GPU", d);
    return 0;
}

/* A clip encoder on anything but the CPU asks for one GPU ("auto" too: it takes one when
 * the machine has one, and runs on the CPU when it has none). */
static int embed_job_gpus(const JobParams *p) {
    return strncmp(job_param_str(p, "encoder"), "clip:", 5) == 0 &&
           strcmp(job_param_str(p, "device"), "cpu") != 0;
}

static int embed_job_run(JobCtx *ctx, const JobParams *p, Err *err) {
    Progress h = job_progress_hooks(ctx);
    size_t ni = 0, np = 0;
    const char *want = job_param_str(p, "device");
    int n_gpus = 0;
    const int *gpus = job_gpus(ctx, &n_gpus);
    char device[32];
    /* the scheduler's GPU, whatever cuda:N said: it hands out the free ones. None given: auto
     * is the CPU (a GPU only through the scheduler); cuda as asked, which on a machine
     * without a GPU runs on the CPU and says so */
    if (n_gpus > 0 && strcmp(want, "cpu") != 0)
        snprintf(device, sizeof device, "cuda:%d", gpus[0]);
    else
        snprintf(device, sizeof device, "%s", strcmp(want, "auto") ? want : "cpu");
    EncoderDevice dev = {device, 0};
    int rc = reward_embed_all_on(job_store(ctx), job_param_str(p, "encoder"), &dev, &h, &ni,
                                 &np, err);
    if (rc == 0)
        job_log(ctx, "encoded %zu images and %zu prompts with %s on %s", ni, np,
                job_param_str(p, "encoder"), device);
    return rc;
}

const JobKind jobkind_embed = {
    .name = "embed",
    .summary = "encode every image and prompt of the store into the feature cache",
    .help = "Computes the features an encoder gives for every image (not missing) and\n"
            "prompt of the store and caches them, so training starts at once. A clip\n"
            "encoder computes on --device (auto: a GPU when the scheduler has one to give).\n\n"
            "example:\n  easel jobs add embed --encoder classic\n"
            "  easel jobs add embed --encoder clip:vit-l-14 --device cuda\n",
    .params = embed_params,
    .refs = (const JobParamRefSpec[]){{"encoder", JOB_REF_ENCODER}, {NULL, JOB_REF_NONE}},
    .validate = embed_job_validate,
    .run = embed_job_run,
    .gpus_for = embed_job_gpus,
};

/* ---- eval-reward ---- */

static void put_stats_json(json_t *o, const char *name, const EvalStats *s) {
    json_object_set_new(o, name,
                        json_pack("{s:f, s:f, s:f, s:I, s:f, s:f}", "accuracy", s->accuracy,
                                  "average_margin", s->margin_mean, "margin_std", s->margin_std,
                                  "sample_count", (json_int_t)s->n, "f1", s->f1, "loss",
                                  s->loss));
}

void reward_eval_print(FILE *f, const char *checkpoint, const EvalReport *r) {
    if (r->checkpoint[0])
        checkpoint = r->checkpoint;
    fprintf(f, "checkpoint %s\npairs from %s: %zu image pairs, %zu preferences, %zu images "
            "scored\n", checkpoint, r->source, r->n_pairs, r->n_labels, r->n_images);
    if (r->skipped.n)
        fprintf(f, "not evaluated: %zu preferences with an unreadable image\n",
                r->n_skipped_labels);
    fprintf(f, "\n");
    fprintf(f, "%-10s %8s %9s %11s %11s %7s %8s\n", "head", "samples", "accuracy",
            "avg_margin", "margin_std", "F1", "loss");
    for (int k = 0; k < NO; k++) {
        const EvalStats *s = &r->st[k];
        if (s->n == 0) /* no pair with a preference on this head */
            fprintf(f, "%-10s %8d %9s %11s %11s %7s %8s\n", train_output_name(k), 0, "-", "-", "-",
                    "-", "-");
        else
            fprintf(f, "%-10s %8zu %9.4f %11.4f %11.4f %7.4f %8.4f\n", train_output_name(k), s->n,
                    s->accuracy, s->margin_mean, s->margin_std, s->f1, s->loss);
    }
}

static int write_text_file(const char *path, const char *text, Err *err) {
    return atomic_file_write(path, text, strlen(text), err);
}

/* ---- naming a checkpoint ---- */

static int is_ckpt_dir(const char *dir) {
    char *p = xasprintf("%s/config.json", dir);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

/* In run folder DIR: best/, else final/, else the newest checkpoint-N/. NULL if none. */
static char *pick_in_run_dir(const char *dir) {
    static const char *const first[] = {"best", "final"};
    for (int i = 0; i < 2; i++) {
        char *p = xasprintf("%s/%s", dir, first[i]);
        if (is_ckpt_dir(p))
            return p;
        free(p);
    }
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "checkpoint-", 11) != 0)
            continue;
        long v = strtol(e->d_name + 11, &end, 10);
        if (*end || end == e->d_name + 11 || v <= best)
            continue;
        char *p = xasprintf("%s/%s", dir, e->d_name);
        if (is_ckpt_dir(p))
            best = v;
        free(p);
    }
    closedir(d);
    return best >= 0 ? xasprintf("%s/checkpoint-%ld", dir, best) : NULL;
}

static char *resolve_folder(const char *path) {
    if (is_ckpt_dir(path))
        return xstrdup(path);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return pick_in_run_dir(path);
    return NULL;
}

char *reward_checkpoint_resolve(Store *st, const char *arg, Err *err) {
    char *r = resolve_folder(arg);
    if (r)
        return r;
    if (arg[0] != '/' && st) {
        char *p = xasprintf("%s/%s", store_dir(st), arg);
        r = resolve_folder(p);
        free(p);
        if (r)
            return r;
    }
    StoreRun run = {0};
    if (st && store_run_find(st, arg, &run, NULL) == 0) {
        StoreCheckpoint *ck = NULL;
        size_t n = 0;
        if (store_checkpoints_list(st, run.id, &ck, &n, NULL) == 0) {
            /* best, else final, else the newest (highest epoch) that is still there */
            for (int pass = 0; pass < 3 && !r; pass++) {
                double top = -1;
                for (size_t i = 0; i < n; i++) {
                    int want = pass == 0   ? strcmp(ck[i].name, "best") == 0
                               : pass == 1 ? strcmp(ck[i].name, "final") == 0
                                           : strncmp(ck[i].name, "checkpoint-", 11) == 0;
                    if (!want || !is_ckpt_dir(ck[i].path) || ck[i].epoch <= top)
                        continue;
                    free(r);
                    r = xstrdup(ck[i].path);
                    top = ck[i].epoch;
                }
            }
            store_checkpoints_free(ck, n);
        }
        if (!r && run.output)
            r = pick_in_run_dir(run.output);
        if (!r)
            err_set(err, ERR_NOTFOUND, "run %s (%s) has no checkpoint yet%s", run.name,
                    run.state, run.output ? "" : " and no output folder");
        store_run_deinit(&run);
        return r;
    }
    err_set(err, ERR_NOTFOUND, "%s is not a reward checkpoint folder (best/, final/, "
            "checkpoint-N/), a run folder, nor a run of this store (see 'easel runs list')",
            arg);
    return NULL;
}

static int open_named(Store *st, const char *arg, TrainDevice *dev, RewardCkpt **out,
                      Err *err) {
    *out = NULL;
    Err e = {0};
    char *dir = reward_checkpoint_resolve(st, arg, &e);
    if (!dir)
        return err_pass(err, &e, ERR_NOTFOUND);
    int rc = train_ckpt_open_on(st, dir, dev, out, err);
    free(dir);
    return rc;
}

int reward_eval(Store *st, const char *checkpoint, const EvalOptions *o, TrainDevice *dev,
                const char *json_path, const char *csv_path, EvalReport *out, Err *err) {
    RewardCkpt *c;
    int rc = open_named(st, checkpoint, dev, &c, err);
    if (rc)
        return rc;
    rc = train_eval(c, st, o, out, err);
    if (rc)
        goto out;
    if (json_path && json_path[0]) {
        json_t *heads = json_object();
        for (int k = 0; k < NO; k++)
            put_stats_json(heads, train_output_name(k), &out->st[k]);
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "checkpoint",
                              train_ckpt_path(c), "pairs", out->source, "n_pairs",
                              (json_int_t)out->n_pairs, "n_preferences",
                              (json_int_t)out->n_labels, "n_images",
                              (json_int_t)out->n_images, "skipped_images",
                              (json_int_t)out->skipped.n, "heads", heads);
        if (!j) { /* a key or value jansson refused (it has freed heads) */
            rc = err_set(err, ERR_FORMAT, "%s: the evaluation could not be written as JSON",
                         json_path);
            goto out;
        }
        char *s = json_dumps(j, JSON_INDENT(2));
        json_decref(j);
        char *s2 = xasprintf("%s\n", s);
        rc = write_text_file(json_path, s2, err);
        free(s);
        free(s2);
        if (rc)
            goto out;
    }
    if (csv_path && csv_path[0]) {
        size_t cap = 4096;
        char *buf = xmalloc(cap);
        int n = snprintf(buf, cap, "head,accuracy,average_margin,margin_std,sample_count,f1,"
                                   "loss\n");
        for (int k = 0; k < NO; k++)
            n += snprintf(buf + n, cap - (size_t)n, "%s,%.6f,%.6f,%.6f,%zu,%.6f,%.6f\n",
                          train_output_name(k), out->st[k].accuracy, out->st[k].margin_mean,
                          out->st[k].margin_std, out->st[k].n, out->st[k].f1, out->st[k].loss);
        rc = write_text_file(csv_path, buf, err);
        free(buf);
        if (rc)
            goto out;
    }
    /* record the evaluation as a run, so it is listed beside the training runs */
    char *name = store_run_unique_name(st, "eval");
    /* the device as asked (as a training run's config has it) and what it ran on */
    json_t *cj = json_pack("{s:s, s:s, s:s, s:s}", "checkpoint", train_ckpt_path(c), "pairs",
                           out->source, "device", dev && dev->spec ? dev->spec : "auto",
                           "device_name", dev ? dev->name : "");
    char *cs = json_dumps(cj, JSON_COMPACT);
    json_decref(cj);
    int64_t run_id = 0;
    if (store_run_create(st, name, "eval-reward", cs, o->job_id, train_ckpt_path(c), &run_id,
                         NULL) ==
        0) {
        StoreMetric m[NO * 4];
        size_t nm = 0;
        for (int k = 0; k < NO; k++) {
            static const char *const what[4] = {"acc", "f1", "margin", "margin_std"};
            double v[4] = {out->st[k].accuracy, out->st[k].f1, out->st[k].margin_mean,
                           out->st[k].margin_std};
            for (int q = 0; q < 4; q++) {
                memset(&m[nm], 0, sizeof m[nm]);
                strcpy(m[nm].split, "eval");
                snprintf(m[nm].name, sizeof m[nm].name, "%s_%s", train_output_name(k), what[q]);
                m[nm].value = v[q];
                nm++;
            }
        }
        store_metrics_add(st, run_id, m, nm, NULL);
        store_run_set_state(st, run_id, "succeeded", NULL);
    }
    free(cs);
    free(name);
out:
    train_ckpt_free(c);
    return rc;
}

static const JobParamSpec eval_params[] = {
    {"checkpoint", JOB_PARAM_PATH, NULL, "checkpoint folder (best/, final/, checkpoint-N/)",
     NULL},
    {"pairs", JOB_PARAM_PATH, "", "pairs.jsonl to evaluate on (default: the store's ratings)",
     NULL},
    {"min-rating-diff", JOB_PARAM_FLOAT, "0.5", "for pairs derived from ratings", NULL},
    {"split", JOB_PARAM_CHOICE, "all", "store pairs: all, or the checkpoint's val/train split",
     "all|val|train"},
    {"json", JOB_PARAM_PATH, "", "write the metrics as JSON here", NULL},
    {"csv", JOB_PARAM_PATH, "", "write the metrics as CSV here", NULL},
    {"threads", JOB_PARAM_INT, "0", "CPU threads (0: all cores)", NULL},
    {"device", JOB_PARAM_STRING, "auto",
     "where the model runs: auto (a GPU when there is one), cpu, cuda or cuda:N", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static int eval_job_validate(const JobParams *p, Err *err) {
    double d = job_param_float(p, "min-rating-diff");
    if (!(d >= 0) || d > 10)
        return err_set(err, ERR_USAGE,
                       "eval-reward: --min-rating-diff %g: expected a number from 0 to 10", d);
    int rc = int_in_range(p, "threads", 0, 4096, err);
    if (rc)
        err_prefix(err, "eval-reward");
    return rc ? rc : device_param_check(p, "eval-reward", err);
}

static int eval_job_run(JobCtx *ctx, const JobParams *p, Err *err) {
    EvalOptions o = {0};
    const char *pairs = job_param_str(p, "pairs");
    o.pairs_file = pairs[0] ? pairs : NULL;
    o.min_rating_diff = job_param_float(p, "min-rating-diff");
    o.split = job_param_str(p, "split");
    o.progress = job_progress_hooks(ctx);
    o.job_paths = 1;
    o.job_id = job_id(ctx);
    EvalReport r;
    char spec[24];
    job_device(ctx, job_param_str(p, "device"), spec, sizeof spec);
    TrainDevice dev = {.spec = spec, .threads = (int)job_param_int(p, "threads")};
    int rc = reward_eval(job_store(ctx), job_param_str(p, "checkpoint"), &o, &dev,
                         job_param_str(p, "json"), job_param_str(p, "csv"), &r, err);
    log_device(ctx, &dev);
    if (rc == 0 && r.skipped.n) {
        char why[900];
        train_skipped_text(&r.skipped, why, sizeof why);
        job_log(ctx, "warning: %s", why);
    }
    if (rc == 0)
        for (int k = 0; k < NO; k++)
            job_log(ctx, "%-9s n=%zu accuracy %.4f margin %.4f +- %.4f F1 %.4f",
                    train_output_name(k), r.st[k].n, r.st[k].accuracy, r.st[k].margin_mean,
                    r.st[k].margin_std, r.st[k].f1);
    return rc;
}

const JobKind jobkind_eval_reward = {
    .name = "eval-reward",
    .summary = "evaluate a reward checkpoint on preference pairs (accuracy, margin, F1)",
    .help = "Scores both images of every pair and reports, per head and combined, the\n"
            "preference accuracy (score(chosen) strictly greater), average margin, margin\n"
            "standard deviation, sample count and F1.\n\n"
            "example:\n  easel jobs add eval-reward --checkpoint runs/r1/best --pairs pairs.jsonl\n",
    .params = eval_params,
    .refs = (const JobParamRefSpec[]){{"checkpoint", JOB_REF_CHECKPOINT}, {NULL, JOB_REF_NONE}},
    .validate = eval_job_validate,
    .run = eval_job_run,
};

/* ---- score ---- */

static int has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".tga", ".gif",
                                      ".PNG", ".JPG", ".JPEG"};
    for (size_t i = 0; i < ARRAY_LEN(ext); i++)
        if (strcmp(dot, ext[i]) == 0)
            return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Expand folders (recursively) into their image files, sorted. */
static void collect(const char *path, char ***v, size_t *n, size_t *cap) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char *p = xasprintf("%s/%s", path, e->d_name);
            struct stat s2;
            if (stat(p, &s2) == 0 && (S_ISDIR(s2.st_mode) || has_image_ext(e->d_name)))
                collect(p, v, n, cap);
            free(p);
        }
        closedir(d);
        return;
    }
    if (*n == *cap)
        *v = xrealloc(*v, (*cap = *cap ? 2 * *cap : 64) * sizeof **v);
    (*v)[(*n)++] = xstrdup(path);
}

/* Score PATH; 1 (recorded in SK under NAME) when the image cannot be read or decoded. */
static int score_one(RewardCkpt *c, Store *st, const char *path, const char *name,
                     const char *sha, const char *prompt, float s[NO], TrainSkipped *sk,
                     Err *err) {
    Err e2 = {0};
    int rc;
    if (access(path, R_OK) != 0)
        rc = err_set(&e2, ERR_NOTFOUND, "%s: cannot open (%s)", path, strerror(errno));
    else
        rc = train_ckpt_score(c, st, path, sha, prompt, s, &e2);
    if (rc == 0)
        return 0;
    if (train_err_is_unreadable(rc)) { /* the image's fault, or the cache's? */
        Err e3 = {0};
        int bad = train_ckpt_probe(c, path, &e3);
        if (bad && train_err_is_unreadable(bad)) {
            train_skipped_add(sk, name, e3.msg);
            return 1;
        }
    }
    if (err)
        *err = e2;
    return rc;
}

int reward_score(Store *st, const char *checkpoint, char *const *paths, int n,
                 const char *prompt, TrainDevice *dev, FILE *csv, const Progress *h,
                 int job_paths, size_t *n_scored, TrainSkipped *skipped, Err *err) {
    TrainSkipped sk_local = {0};
    TrainSkipped *sk = skipped ? skipped : &sk_local;
    memset(sk, 0, sizeof *sk);
    RewardCkpt *c;
    int rc = open_named(st, checkpoint, dev, &c, err);
    if (rc)
        return rc;
    char **files = NULL;
    size_t nf = 0, cap = 0, done = 0;
    StoreImage *all = NULL;
    size_t n_all = 0;
    if (n > 0) {
        for (int i = 0; i < n; i++)
            collect(paths[i], &files, &nf, &cap);
        if (nf)
            qsort(files, nf, sizeof *files, cmp_str);
        for (size_t i = 0; i < nf && job_paths; i++)
            if ((rc = trust_check_path(st, "an image to score", files[i], err)))
                goto out;
    } else if ((rc = store_images_list(st, 0, &all, &n_all, err))) {
        goto out;
    }
    size_t total = n > 0 ? nf : n_all;
    StoreScore *batch = xmalloc(64 * NO * sizeof *batch);
    size_t nb = 0;
    if (csv) {
        fputs("image", csv);
        for (int k = 0; k < NO; k++)
            fprintf(csv, ",%s", train_output_name(k));
        fputc('\n', csv);
    }
    for (size_t i = 0; i < total; i++) {
        if (progress_cancelled(h)) {
            rc = err_set(err, ERR_CANCELLED, "cancelled after %zu of %zu images", done, total);
            break;
        }
        StoreImage im = {0};
        int known = 0;
        char *path;
        if (n > 0) {
            path = xstrdup(files[i]);
            char *stored = store_path_to_stored(st, path);
            known = store_image_by_path(st, stored, &im, NULL) == 0;
            free(stored);
        } else { /* a missing image is tried too: skipped and named if still missing */
            path = store_path_resolve(st, all[i].path);
            im = all[i];
            memset(&all[i], 0, sizeof all[i]);
            known = 1;
        }
        StorePrompt sp = {0};
        if (!prompt && known && im.prompt_id)
            store_prompt_get(st, im.prompt_id, &sp, NULL);
        float s[NO];
        rc = score_one(c, st, path, n > 0 ? files[i] : im.path, known ? im.sha256 : NULL,
                       prompt ? prompt : sp.text ? sp.text : "", s, sk, err);
        store_prompt_deinit(&sp);
        if (rc) {
            free(path);
            store_image_deinit(&im);
            if (rc > 0) { /* unreadable: skipped, named in the warning */
                rc = 0;
                continue;
            }
            break;
        }
        if (csv) {
            fmt_csv_write_field(csv, path);
            for (int k = 0; k < NO; k++)
                fprintf(csv, ",%.6f", s[k]);
            fputc('\n', csv);
        }
        if (known) {
            for (int k = 0; k < NO; k++) {
                batch[nb].image_id = im.id;
                base_strlcpy(batch[nb].head, train_output_name(k), sizeof batch[nb].head);
                batch[nb].value = s[k];
                nb++;
            }
            if (nb >= 64 * NO - NO) {
                if ((rc = store_scores_put(st, train_ckpt_path(c), batch, nb, err))) {
                    free(path);
                    store_image_deinit(&im);
                    break;
                }
                nb = 0;
            }
        }
        free(path);
        store_image_deinit(&im);
        done++;
        progress_report(h, (double)(i + 1), (double)total, "images");
    }
    if (rc == 0 && nb)
        rc = store_scores_put(st, train_ckpt_path(c), batch, nb, err);
    if (rc == 0 && done == 0 && sk->n) {
        char why[900];
        train_skipped_text(sk, why, sizeof why);
        rc = err_set(err, ERR_IO, "nothing scored: %s", why);
    }
    if (rc == 0 && sk->n)
        progress_report(h, (double)total, (double)total, "images");
    free(batch);
    if (n_scored)
        *n_scored = done;
out:
    for (size_t i = 0; i < nf; i++)
        free(files[i]);
    free(files);
    store_images_free(all, n_all);
    train_ckpt_free(c);
    return rc;
}

static const JobParamSpec score_params[] = {
    {"checkpoint", JOB_PARAM_PATH, NULL, "checkpoint folder (best/, final/, checkpoint-N/)",
     NULL},
    {"images", JOB_PARAM_PATH, "", "an image file or folder (default: every store image)",
     NULL},
    {"prompt", JOB_PARAM_STRING, "", "score under this prompt (default: each image's own)",
     NULL},
    {"csv", JOB_PARAM_PATH, "", "also write the scores as CSV here", NULL},
    {"threads", JOB_PARAM_INT, "0", "CPU threads (0: all cores)", NULL},
    {"device", JOB_PARAM_STRING, "auto",
     "where the model runs: auto (a GPU when there is one), cpu, cuda or cuda:N", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static int score_job_validate(const JobParams *p, Err *err) {
    int rc = int_in_range(p, "threads", 0, 4096, err);
    if (rc)
        err_prefix(err, "score");
    return rc ? rc : device_param_check(p, "score", err);
}

static int score_job_run(JobCtx *ctx, const JobParams *p, Err *err) {
    Progress h = job_progress_hooks(ctx);
    const char *images = job_param_str(p, "images");
    const char *csv_path = job_param_str(p, "csv");
    const char *prompt = job_param_str(p, "prompt");
    AtomicFile *af = NULL;
    int rc;
    if (csv_path[0] && (rc = atomic_file_open(csv_path, &af, err)))
        return rc;
    char *one[1] = {(char *)images};
    size_t n = 0;
    TrainSkipped sk;
    char spec[24];
    job_device(ctx, job_param_str(p, "device"), spec, sizeof spec);
    TrainDevice dev = {.spec = spec, .threads = (int)job_param_int(p, "threads")};
    rc = reward_score(job_store(ctx), job_param_str(p, "checkpoint"), one, images[0] ? 1 : 0,
                      prompt[0] ? prompt : NULL, &dev, af ? atomic_file_stream(af) : NULL, &h,
                      1, &n, &sk, err);
    log_device(ctx, &dev);
    if (rc == 0 && sk.n) {
        char why[900];
        train_skipped_text(&sk, why, sizeof why);
        job_log(ctx, "warning: %s", why);
    }
    if (af) {
        if (rc)
            atomic_file_abort(af);
        else
            rc = atomic_file_commit(af, err);
    }
    if (rc == 0)
        job_log(ctx, "scored %zu images", n);
    return rc;
}

const JobKind jobkind_score = {
    .name = "score",
    .summary = "score images with a reward checkpoint (per head and combined)",
    .help = "Scores images with a trained reward model; scores of store images are saved\n"
            "in the store (scores table), and all can be written as CSV.\n\n"
            "example:\n  easel jobs add score --checkpoint runs/r1/best --csv scores.csv\n",
    .params = score_params,
    .refs = (const JobParamRefSpec[]){{"checkpoint", JOB_REF_CHECKPOINT}, {NULL, JOB_REF_NONE}},
    .validate = score_job_validate,
    .run = score_job_run,
};
