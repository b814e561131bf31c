/* jobkinds_tune — the `tune` job kind (jobkinds_tune.h). */
#include "jobkinds_tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "base.h"
#include "jobkinds_gen.h"
#include "store_models.h"
#include "tune_loss.h"

static const JobParamSpec tune_params[] = {
    {"model", JOB_PARAM_STRING, NULL, "a registered diffusion model's name (easel models add "
     "diffusion), a diffusers folder or a single-file checkpoint (.safetensors)", NULL},
    {"tokenizer", JOB_PARAM_PATH, "", "tokenizer folder for a single-file --model (vocab.json + "
     "merges.txt; default: the registered model's, else the first registered CLIP model's)",
     NULL},
    {"prediction", JOB_PARAM_CHOICE, "model", "the training target's prediction type: the "
     "model's, epsilon or v (v-prediction)", "model|epsilon|v"},
    {"pairs", JOB_PARAM_PATH, "", "pairs.jsonl (prompt, img_pos, img_neg, label[, prompt_neg])",
     NULL},
    {"from-store", JOB_PARAM_BOOL, "false", "pairs from the store's ratings instead of --pairs",
     NULL},
    {"aspect", JOB_PARAM_STRING, "", "with --from-store: one aspect's ratings (default: all, "
     "combined)", NULL},
    {"reward", JOB_PARAM_PATH, "", "with --from-store: a reward checkpoint whose head weights "
     "weigh the aspects; with --online: the reward model that scores the candidates", NULL},
    {"min-diff", JOB_PARAM_FLOAT, "0.5", "with --from-store: smallest score difference of a "
     "pair", NULL},
    {"objective", JOB_PARAM_CHOICE, "dpo", "dpo (Diffusion-DPO), dspo or adpo (context "
     "preference)", "dpo|dspo|adpo"},
    {"adapter", JOB_PARAM_CHOICE, "lora", "lora or dora (PEFT's use_dora)", "lora|dora"},
    {"out", JOB_PARAM_PATH, NULL, "the run folder (metrics.jsonl, checkpoint-N/, final/, "
     "samples/); an existing one resumes", NULL},
    {"device", JOB_PARAM_STRING, "auto", "where the model runs: auto (a GPU when there is one), "
     "cpu, cuda or cuda:N", NULL},
    {"dtype", JOB_PARAM_CHOICE, "auto", "the frozen base weights in memory: auto (bf16 on a "
     "GPU, f32 on the CPU), f32, f16 or bf16; the adapter is f32 always", "auto|f32|f16|bf16"},
    {"rank", JOB_PARAM_INT, "8", "adapter rank", NULL},
    {"alpha", JOB_PARAM_FLOAT, "32", "adapter alpha (scale alpha/rank)", NULL},
    {"targets", JOB_PARAM_STRING, "", "module suffixes, comma-separated (default to_q,to_k,"
     "to_v,to_out.0,ff.net.0.proj,ff.net.2)", NULL},
    {"beta", JOB_PARAM_FLOAT, "0", "the objective's beta; 0: its default (dpo/adpo 2000 SD, "
     "5000 SDXL; dspo 0.001 SD, 5000 SDXL)", NULL},
    {"lr", JOB_PARAM_FLOAT, "5e-5", "learning rate (after warmup)", NULL},
    {"weight-decay", JOB_PARAM_FLOAT, "0.01", "AdamW's decoupled weight decay", NULL},
    {"steps", JOB_PARAM_INT, "2000", "optimizer steps", NULL},
    {"batch", JOB_PARAM_INT, "1", "pairs per micro-batch", NULL},
    {"accum", JOB_PARAM_INT, "1", "micro-batches per optimizer step (gradient accumulation)",
     NULL},
    {"seed", JOB_PARAM_INT, "0", "seed of the adapter's init, pair order, timesteps and noise",
     NULL},
    {"save-every", JOB_PARAM_INT, "500", "write checkpoint-N/ and sample images every N steps "
     "(0: only at the end)", NULL},
    {"size", JOB_PARAM_STRING, "", "WxH training size, multiples of 8; default the model's",
     NULL},
    {"warmup", JOB_PARAM_INT, "0", "steps of linear learning-rate warmup", NULL},
    {"optimizer", JOB_PARAM_CHOICE, "adamw", "adamw (clipping the gradient norm at 1) or "
     "adafactor (the DPO scripts' --use_adafactor)", "adamw|adafactor"},
    {"checkpointing", JOB_PARAM_CHOICE, "auto", "the backward's memory: on (per-block gradient "
     "checkpointing: the least memory, one more forward per step), off (every activation kept: "
     "the fastest), auto (off when the activations fit: on the CPU in half the RAM; on a GPU "
     "in an arena sized for checkpointing)",
     "auto|on|off"},
    {"sample-seeds", JOB_PARAM_STRING, "0,1", "seeds of the sample images ('none': no samples)",
     NULL},
    {"sample-prompts", JOB_PARAM_PATH, "", "a file of sample prompts, one a line (default: the "
     "first two training prompts)", NULL},
    {"sample-steps", JOB_PARAM_INT, "20", "denoising steps of the sample images", NULL},
    {"threads", JOB_PARAM_INT, "0", "CPU threads (0: all cores)", NULL},
    {"name", JOB_PARAM_STRING, "", "the run's name in the store (default tune-DATE-TIME)", NULL},
    /* online16: the online loop (tune_online.h) */
    {"online", JOB_PARAM_BOOL, "false", "rounds of: generate candidates with the current "
     "adapter, score them with --reward, pair best vs worst per prompt, train", NULL},
    {"prompts", JOB_PARAM_PATH, "", "with --online: prompts.csv (prompt_id,prompt)", NULL},
    {"candidates", JOB_PARAM_INT, "4", "with --online: candidates per prompt and round", NULL},
    {"rounds", JOB_PARAM_INT, "10", "with --online: rounds (more rounds continue a run)", NULL},
    {"steps-per-round", JOB_PARAM_INT, "10", "with --online: optimizer steps per round "
     "(--steps is not used)", NULL},
    {"aspect-weights", JOB_PARAM_STRING, "", "with --online: per-head weights of the combined "
     "score, e.g. spatial=1,style=2 (default: the reward model's learned head weights)", NULL},
    {"guidance", JOB_PARAM_FLOAT, "7.5", "with --online: the candidates' guidance scale (their "
     "steps: --sample-steps)", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

/* --model as a path (a registered name, a folder or a single file) into C->model, with the
 * tokenizer and prediction type a single file needs (flags, else the registered model's), as
 * the generate kind finds them. */
static int resolve_model(Store *st, const JobParams *p, TuneConfig *c, Err *err) {
    char *path = NULL, *name = NULL, *tok = NULL, *pred = NULL;
    const char *m = job_param_str(p, "model");
    int rc = m[0] ? gen_model_resolve(st, m, &path, &name, err)
                  : err_set(err, ERR_USAGE, "tune: --model is required (a registered diffusion "
                            "model, a diffusers folder or a single-file checkpoint)");
    if (!rc) {
        gen_model_extras(st, job_param_str(p, "tokenizer"), job_param_str(p, "prediction"),
                         name, path, &tok, &pred);
        if (strlen(path) >= sizeof c->model || (tok && strlen(tok) >= sizeof c->tokenizer) ||
            (pred && strlen(pred) >= sizeof c->prediction))
            rc = err_set(err, ERR_USAGE, "tune: --model %s: its path or tokenizer path is too "
                         "long (at most %zu characters)", m, sizeof c->model - 1);
    }
    if (!rc) {
        snprintf(c->model, sizeof c->model, "%s", path);
        snprintf(c->tokenizer, sizeof c->tokenizer, "%s", tok ? tok : "");
        snprintf(c->prediction, sizeof c->prediction, "%s", pred ? pred : "");
    }
    free(path), free(name), free(tok), free(pred);
    return rc;
}

static int copy_str(char *dst, size_t n, const char *src, const char *flag, Err *err) {
    if (strlen(src) >= n)
        return err_set(err, ERR_USAGE, "--%s: longer than %zu characters", flag, n - 1);
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

int tune_job_config(Store *st, const JobParams *p, TuneConfig *c, Err *err) {
    tune_config_defaults(c);
    int rc = resolve_model(st, p, c, err);
    int deferred = 0; /* no store: a registered model's name is resolved when the job runs; the
                       * other parameters are still checked (they were skipped) */
    if (rc == ERR_NOTFOUND && !st) {
        deferred = 1;
        rc = copy_str(c->model, sizeof c->model, job_param_str(p, "model"), "model", err);
    }
#define STR(field, flag) \
    if (!rc) \
        rc = copy_str(c->field, sizeof c->field, job_param_str(p, flag), flag, err)
    STR(pairs, "pairs");
    STR(aspect, "aspect");
    STR(reward, "reward");
    STR(objective, "objective");
    STR(adapter, "adapter");
    STR(out, "out");
    STR(device, "device");
    STR(dtype, "dtype");
    STR(targets, "targets");
    STR(optimizer, "optimizer");
    STR(checkpointing, "checkpointing");
    STR(sample_seeds, "sample-seeds");
    STR(sample_prompts, "sample-prompts");
    STR(run_name, "name");
    STR(prompts, "prompts"); /* online16 */
    STR(aspect_weights, "aspect-weights");
#undef STR
    c->from_store = job_param_bool(p, "from-store");
    c->min_diff = job_param_float(p, "min-diff");
    c->alpha = job_param_float(p, "alpha");
    c->beta = job_param_float(p, "beta");
    c->lr = job_param_float(p, "lr");
    c->weight_decay = job_param_float(p, "weight-decay");
    c->seed = (uint64_t)job_param_int(p, "seed");
    c->online = job_param_bool(p, "online"); /* online16 */
    c->guidance = job_param_float(p, "guidance");
    static const struct {
        const char *flag;
        int lo, hi;
    } ints[] = {{"rank", 1, 1024},   {"steps", 1, 100000000}, {"batch", 1, 65536},
                {"accum", 1, 65536}, {"save-every", 0, 100000000}, {"warmup", 0, 100000000},
                {"sample-steps", 1, 1000}, {"threads", 0, 4096},
                {"candidates", 2, 1024}, {"rounds", 1, 1000000}, /* online16 */
                {"steps-per-round", 1, 1000000}};
    int *dst[] = {&c->rank, &c->steps, &c->batch, &c->accum, &c->save_every, &c->warmup,
                  &c->sample_steps, &c->threads, &c->candidates, &c->rounds,
                  &c->steps_per_round};
    for (size_t i = 0; !rc && i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = job_param_int(p, ints[i].flag);
        if (v < ints[i].lo || v > ints[i].hi)
            rc = err_set(err, ERR_USAGE, "--%s %lld: use %d to %d", ints[i].flag, (long long)v,
                         ints[i].lo, ints[i].hi);
        else
            *dst[i] = (int)v;
    }
    const char *size = job_param_str(p, "size");
    if (!rc && size[0]) {
        char x;
        int w, h;
        if (sscanf(size, "%d%c%d", &w, &x, &h) != 3 || (x != 'x' && x != 'X') || w <= 0 ||
            h <= 0 || w % 8 || h % 8 || w > 8192 || h > 8192)
            rc = err_set(err, ERR_USAGE, "--size %s: give WxH, multiples of 8 (e.g. 512x512)",
                         size);
        else
            c->width = w, c->height = h;
    }
    int k, idx;
    if (!rc && backend_spec_parse(c->device, &k, &idx, err))
        rc = err_prefix(err, "tune: --device");
    if (!rc)
        rc = tune_config_check(c, err);
    if (!rc && deferred)
        rc = err_set(err, ERR_NOTFOUND, "--model %s: not a folder or a file (a registered "
                     "model's name is resolved with the store)", c->model);
    return rc;
}

static int tune_validate(const JobParams *p, Err *err) {
    TuneConfig c;
    int rc = tune_job_config(NULL, p, &c, err);
    if (rc == ERR_NOTFOUND) /* a registered model's name: resolved when the job runs */
        rc = 0;
    if (!rc && c.pairs[0] && !base_is_file(c.pairs))
        rc = err_set(err, ERR_NOTFOUND, "--pairs %s: no such file", c.pairs);
    if (!rc && c.online && !base_is_file(c.prompts)) /* online16 */
        rc = err_set(err, ERR_NOTFOUND, "--prompts %s: no such file", c.prompts);
    if (!rc && c.online && !base_is_dir(c.reward))
        rc = err_set(err, ERR_NOTFOUND, "--reward %s: no such folder (a reward checkpoint: "
                     "best/, final/ or checkpoint-N/ of easel train)", c.reward);
    return rc;
}

/* ---- the job ---- */

static void tj_step(void *user, int step, int total, int ck, const TuneStepMetrics *m) {
    JobCtx *ctx = user;
    if (step == 1 || ck || step == total || step % 50 == 0)
        job_log(ctx, "step %d/%d: loss %.4g, acc %.2f, margin %.4g, kl %.4g, grad norm %.3g",
                step, total, m->loss, m->acc, m->margin, m->kl, m->grad_norm);
    if (ck) {
        char *json = xasprintf("{\"step\": %d}", step);
        Err e = {0};
        if (job_checkpoint_save(ctx, json, &e))
            job_log(ctx, "could not record the checkpoint: %s", e.msg);
        free(json);
    }
}

static void tj_note(void *user, const char *note) { job_log(user, "%s", note); }

static int tune_job_run(JobCtx *ctx, const JobParams *p, Err *err) {
    Store *st = job_store(ctx);
    TuneConfig c;
    int rc = tune_job_config(st, p, &c, err);
    if (rc)
        return rc;
    /* given a GPU: that one; none: the CPU for auto, else what --device says */
    int kind = BACKEND_SPEC_AUTO, index = 0, ng = 0;
    backend_spec_parse(c.device, &kind, &index, NULL);
    const int *g = job_gpus(ctx, &ng);
    if (kind != BACKEND_SPEC_CPU && ng > 0)
        snprintf(c.device, sizeof c.device, "cuda:%d", g[0]);
    else if (kind == BACKEND_SPEC_AUTO)
        snprintf(c.device, sizeof c.device, "cpu");
    if (job_checkpoint(ctx))
        job_log(ctx, "resuming from %s (checkpoint-%d)", c.out, tune_last_checkpoint(c.out));
    TuneHooks h = {0};
    h.progress = job_progress_hooks(ctx);
    h.job_id = job_id(ctx);
    h.after_step = tj_step;
    h.device_note = tj_note;
    return tune_run(st, &c, &h, err);
}

/* A GPU unless --device cpu or the model's UNet file (a single file: the whole checkpoint)
 * is small (under 64 MiB). */
static int tune_job_gpus(const JobParams *p) {
    if (!strcmp(job_param_str(p, "device"), "cpu"))
        return 0;
    const char *m = job_param_str(p, "model");
    char *f = base_is_file(m) ? xstrdup(m)
                              : xasprintf("%s/unet/diffusion_pytorch_model.safetensors", m);
    struct stat sb;
    int small = stat(f, &sb) == 0 && sb.st_size < ((off_t)64 << 20);
    free(f);
    return small ? 0 : 1;
}

const JobKind jobkind_tune = {
    .name = "tune",
    .summary = "fine-tune a diffusion model on preference pairs (Diffusion-DPO, DSPO, ADPO)",
    .help = "Trains a LoRA or DoRA adapter on the UNet of a Stable Diffusion / SDXL model so\n"
            "that it prefers the preferred image of each pair: Diffusion-DPO, DSPO or ADPO\n"
            "against the same UNet with the adapter off. Writes metrics.jsonl, checkpoint-N/,\n"
            "final/ and sample images into --out; metrics go to the store (the Monitor). A run\n"
            "folder with checkpoints resumes. See doc/tuning.md.\n\n"
            "example:\n  easel jobs add tune --model sdxl --pairs pairs.jsonl --out runs/dpo\n",
    .params = tune_params,
    .gpus = 1,
    .checkpoints = 1,
    .refs = (const JobParamRefSpec[]){{"model", JOB_REF_DIFFUSION_MODEL},
                                      {NULL, JOB_REF_NONE}},
    .validate = tune_validate,
    .run = tune_job_run,
    .gpus_for = tune_job_gpus,
};
