/* Tests for src/train/train*.c end to end on a synthetic store with planted preferences:
 *   - each head learns the image property its ratings were planted on (>= 0.95 validation
 *     accuracy), with the classic encoder;
 *   - kill -9 of a training process, then resume, ends with final weights identical (byte
 *     for byte) to an uninterrupted run;
 *   - checkpoint folders, metrics in the store, eval and score on the result;
 *   - checkpoint folders are replaced whole (train_dir_commit), configs round-trip.
 *
 * The synthetic set: 40 prompts x 4 images of 64x64 pixels. Each image draws five levels in
 * [0, 1] and shows them: a bright square's horizontal position (spatial), its size (icono),
 * a red/blue colour balance (style), pixel noise (fidelity, inverted) and a block pattern's
 * contrast (material), each on 9 visibly distinct levels. Each aspect's rating is 1 + 8 x
 * its level, so a head can only be right by reading its own property.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fmt_safetensors.h"
#include "store.h"
#include "store_catalog.h"
#include "store_ratings.h"
#include "store_runs.h"
#include "support.h"
#include "support_fixtures.h"
#include "train.h"
#include "train_int.h"

#define N_PROMPTS 40
#define PER_PROMPT 4
#define S 64

static char dir[64];
static char db[128];

static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static double unit(uint32_t *s) { return (lcg(s) % 100000) / 100000.0; }

static void make_image(const char *path, const double lv[5], uint32_t seed) {
    unsigned char *p = malloc(S * S * 3);
    double red = lv[2];
    int block = 8;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double v = 0.35 + 0.2 * lv[4] * ((((x / block) + (y / block)) & 1) ? 1 : -1);
            double r = v * (0.6 + 0.8 * red), b = v * (1.4 - 0.8 * red), g = v;
            unsigned char *q = p + (y * S + x) * 3;
            q[0] = (unsigned char)fmin(255, r * 255);
            q[1] = (unsigned char)fmin(255, g * 255);
            q[2] = (unsigned char)fmin(255, b * 255);
        }
    int half = 7 + (int)lround(lv[1] * 8), cx = 16 + (int)lround(lv[0] * 32), cy = S / 2;
    for (int y = cy - half; y < cy + half; y++)
        for (int x = cx - half; x < cx + half; x++)
            if (x >= 0 && y >= 0 && x < S && y < S)
                memset(p + (y * S + x) * 3, 245, 3);
    double amp = 60 * (1 - lv[3]);
    for (int i = 0; i < S * S * 3; i++) {
        int v = p[i] + (int)((unit(&seed) - 0.5) * 2 * amp);
        p[i] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    support_png_write(path, S, S, p);
    free(p);
}

/* Image K of prompt P: five levels drawn from *SEED, shown and planted as its ratings. */
static void planted_image(const char *path, int p, int k, double rating[5], void *user) {
    uint32_t *seed = user;
    (void)p, (void)k;
    double lv[5];
    for (int h = 0; h < 5; h++) /* 9 levels: ratings 1..9, each visibly distinct */
        lv[h] = (lcg(seed) % 9) / 8.0;
    make_image(path, lv, *seed);
    for (int h = 0; h < 5; h++)
        rating[h] = 1 + 8 * lv[h];
}

static void setup(void) {
    support_shm_tmpdir_make(dir, sizeof dir, "train");
    snprintf(db, sizeof db, "%s/t.db", dir);
    uint32_t seed = 12345;
    SupportSynth synth = {N_PROMPTS, PER_PROMPT, "", "synthetic scene number ", planted_image,
                          &seed};
    support_synth_store(dir, db, &synth);
}

static void teardown(void) {
    support_tmpdir_remove(dir);
}

TestSuite(train, .init = setup, .fini = teardown, .timeout = 120);

static void config(TrainConfig *c, const char *out, int epochs) {
    train_config_defaults(c);
    c->epochs = epochs;
    c->batch_size = 16;
    c->learning_rate = 3e-3;
    c->threads = 1;
    c->seed = 7;
    c->save_every = 2;
    snprintf(c->output, sizeof c->output, "%s/%s", dir, out);
    snprintf(c->run_name, sizeof c->run_name, "%s", out);
}

static double val_metric(Store *st, int64_t run, const char *name) {
    double v = NAN;
    cr_assert_eq(store_metric_last(st, run, "val", name, &v, NULL, NULL), 0, "no val/%s", name);
    return v;
}

/* Does DIR/REL exist? */
static int file_exists(const char *d, const char *rel) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", d, rel);
    return access(p, F_OK) == 0;
}

Test(train, planted_preferences_are_learned_per_head) {
    TrainConfig c;
    config(&c, "planted", 16);
    c.min_rating_diff = 1.5; /* a preference is at least two levels apart */
    Err err = {0};
    Store *st = store_open(db, &err);
    int64_t run = 0;
    cr_assert_eq(train_run(st, &c, NULL, &run, &err), 0, "%s", err.msg);
    const char *heads[5] = {"spatial", "icono", "style", "fidelity", "material"};
    for (int h = 0; h < 5; h++) {
        char n[32];
        snprintf(n, sizeof n, "%s_acc", heads[h]);
        double acc = val_metric(st, run, n);
        cr_expect_geq(acc, 0.95, "head %s: validation accuracy %.3f", heads[h], acc);
    }
    /* the combined score is trained against the mean of the five labels and validated on
     * the combined pairs (mean rating over the aspects): a weighted sum of the heads can
     * only approximate either, so well above chance, not perfect */
    cr_assert_geq(val_metric(st, run, "combined_acc"), 0.75, "combined %.3f",
                  val_metric(st, run, "combined_acc"));
    StoreRun r = {0};
    cr_assert_eq(store_run_get(st, run, &r, &err), 0);
    cr_assert_str_eq(r.state, "succeeded");
    store_run_deinit(&r);
    /* the folders of the original, each complete */
    cr_assert(file_exists(c.output, "best/model.safetensors"));
    cr_assert(file_exists(c.output, "best/config.json"));
    cr_assert(file_exists(c.output, "best/metrics.json"));
    /* every 2 epochs a checkpoint, the newest two kept (--save-total-limit 2) */
    cr_assert(file_exists(c.output, "checkpoint-14/model.safetensors"));
    cr_assert(file_exists(c.output, "checkpoint-16/metrics.json"));
    cr_assert(!file_exists(c.output, "checkpoint-12"));
    cr_assert(!file_exists(c.output, "checkpoint-2"));
    cr_assert(!file_exists(c.output, ".checkpoint-12.deleting"));
    cr_assert(file_exists(c.output, "final/model.safetensors"));
    cr_assert(!file_exists(c.output, "checkpoint-3"));
    cr_assert(!file_exists(c.output, ".best.tmp"));
    /* evaluation of best/ on the validation prompts agrees with training's metrics */
    char best[512];
    snprintf(best, sizeof best, "%s/best", c.output);
    RewardCkpt *ck;
    cr_assert_eq(train_ckpt_open(st, best, 1, &ck, &err), 0, "%s", err.msg);
    EvalOptions o = {.min_rating_diff = 1.5, .split = "val"};
    EvalReport rep;
    cr_assert_eq(train_eval(ck, st, &o, &rep, &err), 0, "%s", err.msg);
    cr_assert_gt(rep.n_pairs, 20);
    for (int h = 0; h < 5; h++) {
        cr_assert_geq(rep.st[h].accuracy, 0.95, "%s eval accuracy %.3f", heads[h],
                      rep.st[h].accuracy);
        cr_assert_gt(rep.st[h].margin_mean, 0);
    }
    train_ckpt_free(ck);
    store_close(st);
}

/* The training child's resume_point: after epoch KILL_AFTER's state is on disk it waits to be
 * killed, so the kill lands there however fast the epochs run (with the engine's AVX-512 GEMM
 * the last epoch could finish before the parent's next look, and the test failed). */
static int child_epochs, child_kill_after;
static int wait_for_the_kill(void *user, const char *json, Err *err) {
    (void)user, (void)json, (void)err;
    if (++child_epochs >= child_kill_after)
        for (;;)
            pause();
    return 0;
}

/* Train in a child process and kill it with SIGKILL once epoch KILL_AFTER is saved. */
static void train_and_kill(const char *out, int epochs, int kill_after) {
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        TrainConfig c;
        config(&c, out, epochs);
        Err err = {0};
        Store *st = store_open(db, &err);
        child_epochs = 0;
        child_kill_after = kill_after;
        TrainHooks h = {.resume_point = wait_for_the_kill};
        train_run(st, &c, &h, NULL, &err);
        _exit(0);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s/.resume/resume.json", dir, out);
    for (int i = 0; i < 6000; i++) {
        Err err = {0};
        char *js = train_read_file(path, &err);
        if (js) {
            char *p = strstr(js, "\"epoch_done\":");
            int e = p ? atoi(p + 13) : 0;
            free(js);
            if (e >= kill_after)
                break;
        }
        usleep(5000);
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status), "the training child ended before it was killed");
}

/* Every tensor of DIR/A and DIR/B is equal, byte for byte (the metadata names each run's
 * own folder, so the files themselves differ there). Returns the number of tensors. */
static size_t same_tensors(const char *a, const char *b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/%s", dir, a);
    snprintf(pb, sizeof pb, "%s/%s", dir, b);
    Err err = {0};
    SafeTensors *x = safetensors_open(pa, &err), *y = safetensors_open(pb, &err);
    cr_assert(x && y, "%s", err.msg);
    cr_assert_eq(safetensors_count(x), safetensors_count(y));
    for (size_t i = 0; i < safetensors_count(x); i++) {
        const StTensor *t = safetensors_at(x, i), *u = safetensors_find(y, t->name);
        cr_assert_not_null(u, "%s missing in %s", t->name, pb);
        cr_assert_eq(t->n_bytes, u->n_bytes);
        cr_assert_eq(memcmp(t->data, u->data, t->n_bytes), 0, "tensor %s differs", t->name);
    }
    size_t n = safetensors_count(x);
    safetensors_close(x);
    safetensors_close(y);
    return n;
}

Test(train, kill9_then_resume_gives_the_same_final_weights) {
    const int epochs = 5;
    Err err = {0};
    /* uninterrupted */
    TrainConfig c;
    config(&c, "straight", epochs);
    Store *st = store_open(db, &err);
    cr_assert_eq(train_run(st, &c, NULL, NULL, &err), 0, "%s", err.msg);
    store_close(st);
    /* killed after epoch 2, then resumed */
    train_and_kill("killed", epochs, 2);
    char out[512];
    snprintf(out, sizeof out, "%s/killed", dir);
    char *js = train_resume_read(out, &err);
    cr_assert_not_null(js, "%s", err.msg);
    st = store_open(db, &err);
    TrainHooks h = {.resume = js};
    TrainConfig none;
    train_config_defaults(&none);
    int64_t run = 0;
    cr_assert_eq(train_run(st, &none, &h, &run, &err), 0, "%s", err.msg);
    free(js);
    cr_assert_eq(same_tensors("straight/final/model.safetensors",
                              "killed/final/model.safetensors"),
                 51, "5 heads x 5 layers x 2 tensors + head_weights");
    /* the resumed run is the same run, finished, with one metric row per step */
    StoreRun r = {0};
    cr_assert_eq(store_run_get(st, run, &r, &err), 0);
    cr_assert_str_eq(r.name, "killed");
    cr_assert_str_eq(r.state, "succeeded");
    store_run_deinit(&r);
    double v;
    int64_t step;
    cr_assert_eq(store_metric_last(st, run, "train", "loss", &v, &step, &err), 0);
    StoreMetric *m = NULL;
    size_t nm = 0;
    cr_assert_eq(store_metrics_list(st, run, 0, &m, &nm, &err), 0);
    size_t n_loss = 0;
    for (size_t i = 0; i < nm; i++)
        n_loss += strcmp(m[i].split, "train") == 0 && strcmp(m[i].name, "loss") == 0;
    cr_assert_eq((int64_t)n_loss, step, "one train/loss row per step");
    free(m);
    store_close(st);
}

Test(train, nothing_to_train_on_is_a_clear_error) {
    TrainConfig c;
    config(&c, "none", 2);
    c.min_rating_diff = 9.5; /* no two images differ that much */
    Err err = {0};
    Store *st = store_open(db, &err);
    cr_assert_neq(train_run(st, &c, NULL, NULL, &err), 0);
    cr_assert(strstr(err.msg, "min-rating-diff"), "%s", err.msg);
    /* a folder that holds a run is not trained over */
    config(&c, "taken", 1);
    cr_assert_eq(train_run(st, &c, NULL, NULL, &err), 0, "%s", err.msg);
    snprintf(c.run_name, sizeof c.run_name, "taken-again");
    cr_assert_eq(train_run(st, &c, NULL, NULL, &err), ERR_CONFLICT);
    cr_assert(strstr(err.msg, "--resume"), "%s", err.msg);
    strcpy(c.fusion, "sideways");
    cr_assert_eq(train_run(st, &c, NULL, NULL, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "--fusion-method"), "%s", err.msg);
    store_close(st);
}

Test(train, checkpoint_folders_are_replaced_whole) {
    char a[256], tmp[256], f[300];
    snprintf(a, sizeof a, "%s/ck", dir);
    snprintf(tmp, sizeof tmp, "%s/.ck.tmp", dir);
    Err err = {0};
    cr_assert_eq(train_mkdirs(tmp, &err), 0);
    snprintf(f, sizeof f, "%s/x", tmp);
    cr_assert_eq(train_write_file(f, "one", &err), 0);
    cr_assert_eq(train_dir_commit(tmp, a, &err), 0, "%s", err.msg);
    cr_assert_eq(access(tmp, F_OK), -1);
    cr_assert_eq(train_mkdirs(tmp, &err), 0);
    snprintf(f, sizeof f, "%s/y", tmp);
    cr_assert_eq(train_write_file(f, "two", &err), 0);
    cr_assert_eq(train_dir_commit(tmp, a, &err), 0, "%s", err.msg);
    snprintf(f, sizeof f, "%s/x", a);
    cr_assert_eq(access(f, F_OK), -1, "old contents must be gone");
    snprintf(f, sizeof f, "%s/y", a);
    char *s = train_read_file(f, &err);
    cr_assert_str_eq(s, "two");
    free(s);
    cr_assert_eq(access(tmp, F_OK), -1);
}

Test(train, config_json_round_trip_and_checks) {
    TrainConfig a, b;
    train_config_defaults(&a);
    strcpy(a.fusion, "cross_attention");
    a.epochs = 3;
    a.seed = 18446744073709551615ULL;
    a.irrelevant_weight = 0.5;
    char *js = train_config_json(&a);
    Err err = {0};
    cr_assert_eq(train_config_parse(&b, js, &err), 0, "%s", err.msg);
    free(js);
    cr_assert_str_eq(b.fusion, "cross_attention");
    cr_assert_eq(b.epochs, 3);
    cr_assert_eq(b.seed, a.seed);
    cr_assert_float_eq(b.irrelevant_weight, 0.5, 1e-12);
    b.batch_size = 0;
    cr_assert_eq(train_config_check(&b, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "--batch-size"), "%s", err.msg);
    cr_assert_eq(train_config_parse(&b, "{nope", &err), ERR_FORMAT);
}

/* ---- the train-reward job kind: cancel, then resume from the job's checkpoint ---- */

#include <pthread.h>
#include <stdatomic.h>

#include "jobkind.h"
#include "jobkinds_reward.h"
#include "store_jobs.h"

typedef struct Canceller {
    atomic_int *flag;
    char path[512];
} Canceller;

static void *cancel_after_epoch(void *arg) {
    Canceller *c = arg;
    for (int i = 0; i < 12000 && !atomic_load(c->flag); i++) {
        if (access(c->path, F_OK) == 0)
            atomic_store(c->flag, 1);
        usleep(2000);
    }
    return NULL;
}

static int run_job(Store *st, int64_t id, atomic_int *cancel, Err *err) {
    JobRow row;
    cr_assert_eq(store_job_get(st, id, &row, err), 0, "%s", err->msg);
    const JobKind *k = jobkind_find("train-reward");
    JobParams *p;
    cr_assert_eq(job_params_from_json(k, row.params, &p, err), 0, "%s", err->msg);
    JobCtx *ctx = job_ctx_new(st, id, row.checkpoint, NULL, cancel);
    int rc = k->run(ctx, p, err);
    job_ctx_free(ctx);
    job_params_free(p);
    store_job_row_deinit(&row);
    return rc;
}

Test(train, job_cancelled_then_resumed_matches_an_uninterrupted_job) {
    Err err = {0};
    Store *st = store_open(db, &err);
    cr_assert_not_null(jobkind_find("train-reward"), "train-reward is registered");
    cr_assert_not_null(jobkind_find("embed"));
    cr_assert_not_null(jobkind_find("eval-reward"));
    cr_assert_not_null(jobkind_find("score"));
    char js[2][1024];
    int64_t ids[2];
    for (int k = 0; k < 2; k++) {
        snprintf(js[k], sizeof js[k],
                 "{\"epochs\": 4, \"batch-size\": 16, \"learning-rate\": 0.001, \"threads\": 1,"
                 " \"seed\": 3, \"output\": \"%s/job%d\", \"name\": \"job%d\"}", dir, k, k);
        const JobKind *kind = jobkind_find("train-reward");
        JobParams *p;
        cr_assert_eq(job_params_from_json(kind, js[k], &p, &err), 0, "%s", err.msg);
        char *full = job_params_to_json(p);
        job_params_free(p);
        JobNew jn = {.kind = "train-reward", .params = full};
        cr_assert_eq(store_job_add(st, &jn, &ids[k], &err), 0, "%s", err.msg);
        free(full);
    }
    atomic_int cancel = 0;
    cr_assert_eq(run_job(st, ids[0], &cancel, &err), 0, "%s", err.msg);
    /* the second job is cancelled once its first epoch's resume state exists */
    Canceller c = {.flag = &cancel};
    snprintf(c.path, sizeof c.path, "%s/job1/.resume/resume.json", dir);
    pthread_t th;
    pthread_create(&th, NULL, cancel_after_epoch, &c);
    int rc = run_job(st, ids[1], &cancel, &err);
    pthread_join(th, NULL);
    cr_assert_eq(rc, ERR_CANCELLED, "rc %d: %s", rc, err.msg);
    JobRow row;
    cr_assert_eq(store_job_get(st, ids[1], &row, &err), 0);
    cr_assert_not_null(row.checkpoint, "the job saved a checkpoint to resume from");
    cr_assert(strstr(row.checkpoint, "job1"), "%s", row.checkpoint);
    store_job_row_deinit(&row);
    atomic_store(&cancel, 0);
    cr_assert_eq(run_job(st, ids[1], &cancel, &err), 0, "%s", err.msg);
    cr_assert_gt(same_tensors("job0/final/model.safetensors", "job1/final/model.safetensors"),
                 0);
    StoreRun r = {0};
    cr_assert_eq(store_run_by_name(st, "job1", &r, &err), 0);
    cr_assert_eq(r.job_id, ids[1]);
    cr_assert_str_eq(r.state, "succeeded");
    store_run_deinit(&r);
    store_close(st);
}

/* ---- damaged checkpoints and resume state: clear errors, nothing half-loaded ---- */

Test(train, damaged_checkpoints_are_reported_by_file) {
    TrainConfig c;
    config(&c, "dmg", 1);
    Err err = {0};
    Store *st = store_open(db, &err);
    cr_assert_eq(train_run(st, &c, NULL, NULL, &err), 0, "%s", err.msg);
    char p[600], best[600];
    snprintf(best, sizeof best, "%s/best", c.output);
    RewardCkpt *ck;
    cr_assert_eq(train_ckpt_open(st, best, 1, &ck, &err), 0, "%s", err.msg);
    float s0[6], s1[6];
    char img[300];
    snprintf(img, sizeof img, "%s/img/0_0.png", dir);
    cr_assert_eq(train_ckpt_score(ck, st, img, NULL, "a prompt", s0, &err), 0, "%s", err.msg);
    cr_assert_eq(train_ckpt_score(ck, st, img, NULL, "a prompt", s1, &err), 0);
    cr_assert_eq(memcmp(s0, s1, sizeof s0), 0, "scoring is deterministic");
    train_ckpt_free(ck);
    /* truncated weights */
    snprintf(p, sizeof p, "%s/model.safetensors", best);
    cr_assert_eq(truncate(p, 100), 0);
    cr_assert_neq(train_ckpt_open(st, best, 1, &(RewardCkpt *){NULL}, &err), 0);
    cr_assert(strstr(err.msg, "model.safetensors"), "%s", err.msg);
    /* broken config */
    snprintf(p, sizeof p, "%s/final/config.json", c.output);
    FILE *f = fopen(p, "w");
    fputs("{\"encoder\": ", f);
    fclose(f);
    snprintf(best, sizeof best, "%s/final", c.output);
    cr_assert_neq(train_ckpt_open(st, best, 1, &(RewardCkpt *){NULL}, &err), 0);
    cr_assert(strstr(err.msg, "config.json"), "%s", err.msg);
    /* not a checkpoint folder at all */
    cr_assert_neq(train_ckpt_open(st, dir, 1, &(RewardCkpt *){NULL}, &err), 0);
    cr_assert(strstr(err.msg, "not a reward checkpoint"), "%s", err.msg);
    /* no resume state */
    cr_assert_null(train_resume_read(dir, &err));
    cr_assert(strstr(err.msg, "no resume state"), "%s", err.msg);
    store_close(st);
}

/* ---- options: irrelevant prompts, imported pairs, early stopping, pairs files ---- */

#include "store_pairs.h"

Test(train, irrelevant_prompts_early_stopping_and_imported_pairs) {
    Err err = {0};
    Store *st = store_open(db, &err);
    /* seed 003's irrelevant-prompt term is trained and reported */
    TrainConfig c;
    config(&c, "irr", 1);
    c.irrelevant_weight = 0.5;
    int64_t run = 0;
    cr_assert_eq(train_run(st, &c, NULL, &run, &err), 0, "%s", err.msg);
    double v = NAN;
    cr_assert_eq(store_metric_last(st, run, "train", "irrelevant_loss", &v, NULL, &err), 0);
    cr_assert(v > 0 && isfinite(v), "irrelevant loss %f", v);
    /* early stopping: a learning rate too small to change anything stops after patience */
    config(&c, "early", 10);
    c.learning_rate = 1e-12;
    c.patience = 2;
    cr_assert_eq(train_run(st, &c, NULL, &run, &err), 0, "%s", err.msg);
    double ep = 0;
    cr_assert_eq(store_metric_last(st, run, "sys", "epoch", &ep, NULL, &err), 0);
    cr_assert_eq(ep, 3.0, "stopped after epoch %g", ep);
    cr_assert(file_exists(c.output, "final/model.safetensors"));
    /* imported pairs (mode pairs): an overall preference for the brighter-style image */
    StoreImage *im = NULL;
    size_t n = 0;
    cr_assert_eq(store_images_list(st, 0, &im, &n, &err), 0);
    cr_assert_eq(store_begin(st, &err), 0);
    for (size_t i = 0; i + 1 < n; i += 2) {
        StorePair p = {.prompt_id = im[i].prompt_id, .img_pos = im[i].id,
                       .img_neg = im[i + 1].id, .label = 1.0, .aspect = "",
                       .rating_pos = NAN, .rating_neg = NAN, .rating_diff = NAN,
                       .source = "test"};
        cr_assert_eq(store_pair_add(st, &p, NULL, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(store_commit(st, &err), 0);
    store_images_free(im, n);
    config(&c, "imported", 2);
    strcpy(c.mode, "pairs");
    cr_assert_eq(train_run(st, &c, NULL, &run, &err), 0, "%s", err.msg);
    cr_assert_eq(store_metric_last(st, run, "train", "combined_loss", &v, NULL, &err), 0);
    /* regression needs ratings, not pairs */
    strcpy(c.objective, "regression");
    cr_assert_eq(train_config_check(&c, &err), ERR_USAGE);
    store_close(st);
}

Test(train, eval_on_a_pairs_file_with_images_not_in_the_store) {
    Err err = {0};
    Store *st = store_open(db, &err);
    TrainConfig c;
    config(&c, "evalfile", 1);
    cr_assert_eq(train_run(st, &c, NULL, NULL, &err), 0, "%s", err.msg);
    /* two images the store does not know, next to the pairs file */
    char p[600];
    double lv_a[5] = {0.5, 0.5, 0.5, 1.0, 0.5}, lv_b[5] = {0.5, 0.5, 0.5, 0.0, 0.5};
    snprintf(p, sizeof p, "%s/new_a.png", dir);
    make_image(p, lv_a, 1);
    snprintf(p, sizeof p, "%s/new_b.png", dir);
    make_image(p, lv_b, 2);
    support_write_file(dir, "pairs.jsonl",
                       "{\"prompt\": \"0\", \"img_pos\": \"new_a.png\", \"img_neg\": \"new_b.png\","
                       " \"label\": 1.0, \"aspect\": \"fidelity\"}\n"
                       "\n"
                       "{\"prompt\": \"a free text prompt\", \"img_pos\": \"img/0_1.png\","
                       " \"img_neg\": \"img/0_2.png\"}\n",
                       p, sizeof p);
    char best[600];
    snprintf(best, sizeof best, "%s/best", c.output);
    RewardCkpt *ck;
    cr_assert_eq(train_ckpt_open(st, best, 1, &ck, &err), 0, "%s", err.msg);
    EvalOptions o = {.pairs_file = p};
    EvalReport r;
    cr_assert_eq(train_eval(ck, st, &o, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_pairs, 2);
    cr_assert_eq(r.n_images, 4);
    /* one rule: an aspect's line counts for its head, an aspect-less one for combined */
    cr_assert_eq(r.st[3].n, 1, "fidelity: its own line only");
    cr_assert_eq(r.st[0].n, 0, "spatial: no line of its own");
    cr_assert_eq(r.st[5].n, 1, "combined: the aspect-less line");
    /* a malformed line is named by file and line */
    FILE *f = fopen(p, "a");
    cr_assert_not_null(f);
    fputs("{\"img_pos\": 3}\n", f);
    fclose(f);
    cr_assert_eq(train_eval(ck, st, &o, &r, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "pairs.jsonl:4"), "%s", err.msg);
    train_ckpt_free(ck);
    store_close(st);
}

/* ---- one evaluation rule: the store's pairs and its export give the same numbers ---- */

#include "export.h"

typedef struct LastProgress {
    double done, total;
    int calls;
} LastProgress;

static void note_progress(void *user, double done, double total, const char *unit) {
    (void)unit;
    LastProgress *p = user;
    p->done = done;
    p->total = total;
    p->calls++;
}

static void assert_same_report(const EvalReport *a, const EvalReport *b) {
    const char *names[6] = {"spatial", "icono", "style", "fidelity", "material", "combined"};
    cr_assert_eq(a->n_pairs, b->n_pairs, "pairs %zu vs %zu", a->n_pairs, b->n_pairs);
    cr_assert_eq(a->n_labels, b->n_labels, "preferences %zu vs %zu", a->n_labels, b->n_labels);
    cr_assert_eq(a->n_images, b->n_images);
    for (int k = 0; k < 6; k++) {
        const EvalStats *x = &a->st[k], *y = &b->st[k];
        cr_assert_eq(x->n, y->n, "%s: %zu vs %zu pairs", names[k], x->n, y->n);
        cr_assert_float_eq(x->accuracy, y->accuracy, 1e-12, "%s acc", names[k]);
        cr_assert_float_eq(x->f1, y->f1, 1e-12, "%s F1", names[k]);
        cr_assert_float_eq(x->margin_mean, y->margin_mean, 1e-6, "%s margin", names[k]);
        cr_assert_eq(x->tp, y->tp, "%s tp", names[k]);
        cr_assert_eq(x->fp, y->fp, "%s fp", names[k]);
        cr_assert_eq(x->fn, y->fn, "%s fn", names[k]);
        cr_assert_eq(x->tn, y->tn, "%s tn", names[k]);
    }
}

Test(train, eval_of_the_store_and_of_its_export_agree) {
    Err err = {0};
    Store *st = store_open(db, &err);
    TrainConfig c;
    config(&c, "agree", 1);
    int64_t run = 0;
    cr_assert_eq(train_run(st, &c, NULL, &run, &err), 0, "%s", err.msg);
    /* training's validation metrics follow the same rule: eval --split val of the epoch's
     * checkpoint gives what the run recorded */
    {
        char best[600];
        snprintf(best, sizeof best, "%s/best", c.output);
        RewardCkpt *ck;
        cr_assert_eq(train_ckpt_open(st, best, 1, &ck, &err), 0, "%s", err.msg);
        EvalOptions o = {.min_rating_diff = c.min_rating_diff, .split = "val"};
        EvalReport v;
        cr_assert_eq(train_eval(ck, st, &o, &v, &err), 0, "%s", err.msg);
        const char *names[6] = {"spatial", "icono", "style", "fidelity", "material",
                                "combined"};
        for (int k = 0; k < 6; k++) {
            char n1[48], n2[48];
            snprintf(n1, sizeof n1, "%s_acc", names[k]);
            snprintf(n2, sizeof n2, "%s_f1", names[k]);
            cr_assert_gt(v.st[k].n, 0);
            cr_assert_float_eq(val_metric(st, run, n1), v.st[k].accuracy, 1e-9, "%s", n1);
            cr_assert_float_eq(val_metric(st, run, n2), v.st[k].f1, 1e-9, "%s", n2);
        }
        train_ckpt_free(ck);
    }
    /* a second annotator disagreeing on some images: the combined label is a mean */
    StoreAspect *asp = NULL;
    size_t na = 0;
    cr_assert_eq(store_aspects_list(st, &asp, &na, &err), 0);
    int64_t other;
    cr_assert_eq(store_annotator_ensure(st, "other", &other, &err), 0);
    for (int64_t id = 1; id <= 40; id += 3)
        for (int h = 0; h < 5; h += 2)
            cr_assert_eq(store_rating_add(st, id, other, asp[h].id, (double)((id + h) % 11),
                                          NAN, "test", NULL, &err), 0, "%s", err.msg);
    store_aspects_free(asp, na);
    char pairs[600];
    snprintf(pairs, sizeof pairs, "%s/exported.jsonl", dir);
    ExportOptions eo;
    export_options_init(&eo);
    eo.relative_to = dir;
    cr_assert_eq(export_to_file(st, EXPORT_PAIRS, pairs, &eo, NULL, &err), 0, "%s", err.msg);
    char best[600];
    snprintf(best, sizeof best, "%s/best", c.output);
    RewardCkpt *ck;
    cr_assert_eq(train_ckpt_open(st, best, 1, &ck, &err), 0, "%s", err.msg);
    EvalOptions from_store = {.min_rating_diff = 0.5, .split = "all"};
    EvalOptions from_file = {.pairs_file = pairs, .min_rating_diff = 0.5};
    EvalReport a, b;
    cr_assert_eq(train_eval(ck, st, &from_store, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(train_eval(ck, st, &from_file, &b, &err), 0, "%s", err.msg);
    cr_assert_gt(a.st[0].n, 50);
    cr_assert_lt(a.st[0].n, a.n_labels, "a head counts only its own pairs");
    assert_same_report(&a, &b);
    /* canonical order: both classes occur, so F1 is not a function of accuracy alone */
    for (int k = 0; k < 6; k++) {
        cr_assert_gt(a.st[k].tp + a.st[k].fn, 0, "head %d: first image preferred", k);
        cr_assert_gt(a.st[k].fp + a.st[k].tn, 0, "head %d: second image preferred", k);
    }
    /* the same file with every pair written the other way round gives the same numbers */
    char flipped[600], cmd[1400];
    snprintf(flipped, sizeof flipped, "%s/flipped.jsonl", dir);
    snprintf(cmd, sizeof cmd,
             "sed -e 's/\"img_pos\"/\"IMG_A\"/; s/\"img_neg\"/\"img_pos\"/; "
             "s/\"IMG_A\"/\"img_neg\"/; s/\"label\": *1\\(\\.0\\)*/\"label\": 0/' %s > %s",
             pairs, flipped);
    cr_assert_eq(system(cmd), 0);
    from_file.pairs_file = flipped;
    cr_assert_eq(train_eval(ck, st, &from_file, &b, &err), 0, "%s", err.msg);
    assert_same_report(&a, &b);
    char *txt = train_read_file(flipped, &err);
    cr_assert(txt && strstr(txt, "\"label\": 0,"), "the flipped file has label 0:\n%.300s", txt);
    free(txt);
    /* --split val: progress ends at 100 % */
    LastProgress lp = {0};
    EvalOptions val = {.min_rating_diff = 0.5, .split = "val",
                       .progress = {.progress = note_progress, .user = &lp}};
    cr_assert_eq(train_eval(ck, st, &val, &a, &err), 0, "%s", err.msg);
    cr_assert_gt(a.n_labels, 0);
    cr_assert_lt(a.n_labels, b.n_labels);
    cr_assert_gt(lp.calls, 0);
    cr_assert_gt(lp.total, 0);
    cr_assert_eq(lp.done, lp.total, "last progress %g of %g", lp.done, lp.total);
    train_ckpt_free(ck);
    store_close(st);
}

/* ---- unreadable images: skipped by training, evaluation and scoring, with one warning ---- */

typedef struct Lines {
    char text[8192];
    int n_warn;
} Lines;

static void collect_line(void *user, const char *line) {
    Lines *l = user;
    size_t o = strlen(l->text);
    snprintf(l->text + o, sizeof l->text - o, "%s\n", line);
    l->n_warn += strstr(line, "unreadable") != NULL;
}

Test(train, unreadable_images_are_skipped_with_one_warning) {
    char p[600];
    snprintf(p, sizeof p, "%s/img/0_0.png", dir);
    cr_assert_eq(truncate(p, 40), 0, "a corrupt image");
    snprintf(p, sizeof p, "%s/img/1_1.png", dir);
    cr_assert_eq(unlink(p), 0, "a missing image");
    Err err = {0};
    Store *st = store_open(db, &err);
    TrainConfig c;
    config(&c, "skip", 1);
    Lines lines = {0};
    TrainHooks h = {.progress = {.log = collect_line, .user = &lines}};
    int64_t run = 0;
    cr_assert_eq(train_run(st, &c, &h, &run, &err), 0, "%s", err.msg);
    cr_assert_eq(lines.n_warn, 1, "one warning:\n%s", lines.text);
    cr_assert(strstr(lines.text, "skipped 2 unreadable images (img/0_0.png, img/1_1.png)"),
              "%s", lines.text);
    /* evaluation, from the store and from its export */
    char best[600];
    snprintf(best, sizeof best, "%s/best", c.output);
    RewardCkpt *ck;
    cr_assert_eq(train_ckpt_open(st, best, 1, &ck, &err), 0, "%s", err.msg);
    EvalOptions o = {.min_rating_diff = 0.5, .split = "all"};
    EvalReport a, b;
    cr_assert_eq(train_eval(ck, st, &o, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(a.skipped.n, 2);
    cr_assert_gt(a.n_skipped_labels, 0);
    cr_assert_gt(a.st[0].n, 0);
    char pairs[600];
    snprintf(pairs, sizeof pairs, "%s/skip.jsonl", dir);
    ExportOptions eo;
    export_options_init(&eo);
    eo.relative_to = dir;
    cr_assert_eq(export_to_file(st, EXPORT_PAIRS, pairs, &eo, NULL, &err), 0, "%s", err.msg);
    EvalOptions of = {.pairs_file = pairs};
    cr_assert_eq(train_eval(ck, st, &of, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(b.skipped.n, 2);
    assert_same_report(&a, &b);
    char why[900];
    train_skipped_text(&b.skipped, why, sizeof why);
    cr_assert(strstr(why, "img/0_0.png") && strstr(why, "img/1_1.png"), "%s", why);
    train_ckpt_free(ck);
    /* scoring every store image */
    TrainSkipped sk;
    size_t scored = 0;
    TrainDevice dev = {.spec = "cpu", .threads = 1};
    cr_assert_eq(reward_score(st, best, NULL, 0, NULL, &dev, NULL, NULL, 0, &scored, &sk, &err),
                 0, "%s", err.msg);
    cr_assert_eq(sk.n, 2);
    cr_assert_eq(scored, N_PROMPTS * PER_PROMPT - 2);
    /* and the embed job's work */
    Lines el = {0};
    Progress rh = {.log = collect_line, .user = &el};
    size_t ni = 0, np = 0;
    cr_assert_eq(reward_embed_all(st, "classic", &rh, &ni, &np, &err), 0, "%s", err.msg);
    cr_assert_eq(ni, N_PROMPTS * PER_PROMPT - 2);
    cr_assert_eq(el.n_warn, 1, "%s", el.text);
    cr_assert(strstr(el.text, "img/0_0.png, img/1_1.png"), "%s", el.text);
    store_close(st);
}

/* ---- checkpoints do not fill the disk ---- */

static char *checkpoint_names(Store *st, int64_t run) {
    StoreCheckpoint *ck = NULL;
    size_t n = 0;
    Err err = {0};
    cr_assert_eq(store_checkpoints_list(st, run, &ck, &n, &err), 0);
    static char buf[512];
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(buf, ck[i].name);
        strcat(buf, " ");
    }
    store_checkpoints_free(ck, n);
    return buf;
}

Test(train, only_the_newest_checkpoints_are_kept) {
    Err err = {0};
    Store *st = store_open(db, &err);
    TrainConfig c;
    config(&c, "rot", 5);
    c.save_every = 1;
    c.save_total_limit = 2;
    int64_t run = 0;
    cr_assert_eq(train_run(st, &c, NULL, &run, &err), 0, "%s", err.msg);
    for (int e = 1; e <= 3; e++) {
        char nm[32];
        snprintf(nm, sizeof nm, "checkpoint-%d", e);
        cr_assert(!file_exists(c.output, nm), "%s is deleted", nm);
    }
    cr_assert(file_exists(c.output, "checkpoint-4/model.safetensors"));
    cr_assert(file_exists(c.output, "checkpoint-5/model.safetensors"));
    cr_assert(file_exists(c.output, "best/model.safetensors"));
    cr_assert(file_exists(c.output, "final/model.safetensors"));
    char *names = checkpoint_names(st, run);
    cr_assert(!strstr(names, "checkpoint-1 ") && !strstr(names, "checkpoint-3 "), "%s", names);
    cr_assert(strstr(names, "checkpoint-4 ") && strstr(names, "checkpoint-5 "), "%s", names);
    cr_assert(strstr(names, "best ") && strstr(names, "final "), "%s", names);
    cr_assert_gt(train_dir_disk_usage(c.output), 0);
    /* 0 keeps all, and so does a run recorded before the limit existed */
    config(&c, "all", 3);
    c.save_every = 1;
    c.save_total_limit = 0;
    cr_assert_eq(train_run(st, &c, NULL, &run, &err), 0, "%s", err.msg);
    cr_assert(file_exists(c.output, "checkpoint-1/model.safetensors"));
    cr_assert(file_exists(c.output, "checkpoint-3/model.safetensors"));
    TrainConfig old;
    cr_assert_eq(train_config_parse(&old, "{\"epochs\": 3}", &err), 0, "%s", err.msg);
    cr_assert_eq(old.save_total_limit, 0);
    train_config_defaults(&old);
    cr_assert_eq(old.save_total_limit, 2, "the default, as Hugging Face's Trainer");
    store_close(st);
}

Test(train, resume_after_rotation_continues_from_the_newest) {
    const int epochs = 4;
    train_and_kill("rotkill", epochs, 3); /* save_every 2, limit 2: checkpoint-2 exists */
    char out[512];
    snprintf(out, sizeof out, "%s/rotkill", dir);
    Err err = {0};
    char *js = train_resume_read(out, &err);
    cr_assert_not_null(js, "%s", err.msg);
    Store *st = store_open(db, &err);
    TrainHooks h = {.resume = js};
    TrainConfig none;
    train_config_defaults(&none);
    int64_t run = 0;
    cr_assert_eq(train_run(st, &none, &h, &run, &err), 0, "%s", err.msg);
    free(js);
    cr_assert(file_exists(out, "checkpoint-2/model.safetensors"));
    cr_assert(file_exists(out, "checkpoint-4/model.safetensors"));
    cr_assert(file_exists(out, "final/model.safetensors"));
    store_close(st);
}

/* ---- the training options: one table (train.h TRAIN_OPTIONS) ---- */

/* The job kind's defaults (what `easel train` and the TUI's form start from) and
 * train_config_defaults are the same values, and every whole-number option is refused outside
 * its range in the same words by the job parameters and by train_config_check. */
Test(train, one_table_of_options_for_defaults_and_ranges) {
    Err err = {0};
    Store *st = store_open(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    JobParams *p;
    cr_assert_eq(job_params_parse(&jobkind_train_reward, 0, NULL, NULL, &p, &err), 0, "%s",
                 err.msg);
    TrainConfig from_job, dflt;
    cr_assert_eq(reward_train_config(p, st, &from_job, &err), 0, "%s", err.msg);
    job_params_free(p);
    train_config_defaults(&dflt);
    /* output and run name are the job's own (beside the store, generated) */
    memcpy(from_job.output, dflt.output, sizeof dflt.output);
    memcpy(from_job.run_name, dflt.run_name, sizeof dflt.run_name);
    cr_assert_eq(memcmp(&from_job, &dflt, sizeof dflt), 0, "the job's defaults differ");

    const char *names[] = {"save-every", "patience", "threads", "epochs", "batch-size"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        long long lo, hi;
        cr_assert_eq(train_option_int_range(names[i], &lo, &hi), 0, "%s", names[i]);
        char bad[32], want[96];
        snprintf(bad, sizeof bad, "%lld", lo - 1);
        snprintf(want, sizeof want, "--%s %lld: expected a whole number from %lld to %lld",
                 names[i], lo - 1, lo, hi);
        const char *n1[] = {names[i]}, *v1[] = {bad};
        /* refused when the job is queued (the kind's validate) ... */
        cr_assert_eq(job_params_parse(&jobkind_train_reward, 1, n1, v1, &p, &err), ERR_USAGE);
        cr_assert(strstr(err.msg, want), "queued: %s", err.msg);
        /* ... and again when it runs (a store edited behind easel's back) */
        char json[96];
        snprintf(json, sizeof json, "{\"%s\": %s}", names[i], bad);
        cr_assert_eq(job_params_from_json(&jobkind_train_reward, json, &p, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(reward_train_config(p, st, &from_job, &err), ERR_USAGE);
        cr_assert(strstr(err.msg, want), "job: %s", err.msg);
        job_params_free(p);
        TrainConfig c = dflt;
        if (strcmp(names[i], "save-every") == 0)
            c.save_every = (int)(lo - 1);
        else if (strcmp(names[i], "patience") == 0)
            c.patience = (int)(lo - 1);
        else if (strcmp(names[i], "threads") == 0)
            c.threads = (int)(lo - 1);
        else if (strcmp(names[i], "epochs") == 0)
            c.epochs = (int)(lo - 1);
        else
            c.batch_size = (int)(lo - 1);
        cr_assert_eq(train_config_check(&c, &err), ERR_USAGE);
        cr_assert(strstr(err.msg, want), "config: %s", err.msg);
    }
    cr_assert_eq(train_option_int_range("learning-rate", &(long long){0}, &(long long){0}),
                 ERR_NOTFOUND);
    store_close(st);
}
