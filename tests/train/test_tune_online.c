/* The online loop (issue 16's "Done when": "the online loop on the same tiny model raises the
 * reward model's mean score of its candidates round over round"):
 *   - a reward model with a planted, learnable property: `easel train`'s train_run with the
 *     built-in classic encoder on the tiny SD model's own images, every aspect rated by the
 *     image's brightness rank;
 *   - `easel tune --online` (tune_run with c.online) on the same tiny model: each round's
 *     candidates (the same seeds every round) scored with that reward model; the mean
 *     combined reward of the last round's candidates is above the first round's, for seeds
 *     1, 2 and 3 (16 seeds measured in doc/tuning.md), and every round's per-head metrics
 *     are in the store (split "round", step = round), the candidates in
 *     OUT/round-R/ID/SEED.png;
 *   - a run stopped after round 2 and run again to round 3 ends with the adapter of an
 *     uninterrupted 3-round run, byte for byte;
 *   - bad online settings are refused before anything is written. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "base.h"
#include "image.h"
#include "pipeline.h"
#include "store.h"
#include "store_catalog.h"
#include "store_ratings.h"
#include "store_run_images.h"
#include "store_runs.h"
#include "train.h"
#include "tune.h"
#include "tune_online.h"

#define MODEL "tests/gen/fixtures/pipeline_sd"
#define N_RM_PROMPTS 8
#define RM_PER_PROMPT 4
#define N_RM (N_RM_PROMPTS * RM_PER_PROMPT)

static char dir[64];

static double brightness(const uint8_t *px, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += px[i];
    return s / (double)n;
}

static void rmtree(const char *d) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static const char *const rm_prompts[N_RM_PROMPTS] = {
    "a red fox", "a blue house", "a green tree", "a small boat",
    "a city at night", "a bowl of fruit", "a snowy mountain", "an old car"};

/* The store t.db: the tiny model's images of 8 prompts x 4 seeds, every aspect rated
 * 1 + 8 x the image's brightness rank among them; then a reward model trained on it:
 * DIR/rm/final. */
static void make_reward_model(void) {
    Err err = {0};
    Backend *be = NULL;
    BackendConfig bc = {.threads = 2};
    cr_assert_eq(backend_open("cpu", &bc, &be, NULL, 0, &err), 0, "%s", err.msg);
    SdPipeline *p = NULL;
    SdPipelineConfig pc = {0};
    cr_assert_eq(sd_pipeline_open(MODEL, be, &pc, &p, &err), 0, "%s", err.msg);
    double b[N_RM];
    char mk[128];
    snprintf(mk, sizeof mk, "%s/img", dir);
    cr_assert_eq(mkdir(mk, 0777), 0);
    for (int i = 0; i < N_RM; i++) {
        SdGenParams g = {0};
        g.prompt = rm_prompts[i / RM_PER_PROMPT];
        g.steps = 8;
        g.guidance = 1.0f;
        g.seed = 1000 + (uint64_t)i;
        uint8_t *rgb = NULL;
        int w, h;
        cr_assert_eq(sd_pipeline_generate(p, &g, NULL, &rgb, &w, &h, &err), 0, "%s", err.msg);
        char path[200];
        snprintf(path, sizeof path, "%s/img/%d.png", dir, i);
        cr_assert_eq(image_write_png(path, rgb, w, h, 3, &err), 0, "%s", err.msg);
        b[i] = brightness(rgb, (size_t)w * h * 3);
        free(rgb);
    }
    sd_pipeline_close(p);
    backend_close(be);
    char db[128];
    snprintf(db, sizeof db, "%s/t.db", dir);
    Store *st = store_open(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    StoreAspect *asp = NULL;
    size_t na = 0;
    cr_assert_eq(store_aspects_list(st, &asp, &na, &err), 0, "%s", err.msg);
    cr_assert_geq(na, 5);
    int64_t annot;
    cr_assert_eq(store_annotator_ensure(st, "planter", &annot, &err), 0, "%s", err.msg);
    cr_assert_eq(store_begin(st, &err), 0, "%s", err.msg);
    for (int q = 0; q < N_RM_PROMPTS; q++) {
        char ext[32];
        snprintf(ext, sizeof ext, "p%d", q);
        int64_t pid;
        cr_assert_eq(store_prompt_add(st, ext, rm_prompts[q], &pid, NULL, &err), 0, "%s",
                     err.msg);
        for (int k = 0; k < RM_PER_PROMPT; k++) {
            int i = q * RM_PER_PROMPT + k, rank = 0;
            for (int j = 0; j < N_RM; j++)
                rank += b[j] < b[i];
            char rel[64];
            snprintf(rel, sizeof rel, "img/%d.png", i);
            StoreImage im = {.prompt_id = pid, .path = rel};
            int64_t iid;
            cr_assert_eq(store_image_add(st, &im, &iid, &err), 0, "%s", err.msg);
            for (int h = 0; h < 5; h++)
                cr_assert_eq(store_rating_add(st, iid, annot, asp[h].id,
                                              1 + 8.0 * rank / (N_RM - 1), NAN, "test", NULL,
                                              &err), 0, "%s", err.msg);
        }
    }
    cr_assert_eq(store_commit(st, &err), 0, "%s", err.msg);
    store_aspects_free(asp, na);
    TrainConfig c;
    train_config_defaults(&c);
    c.epochs = 40;
    c.batch_size = 16;
    c.learning_rate = 3e-3;
    c.threads = 2;
    c.seed = 7;
    c.save_every = 0;
    c.val_fraction = 0;
    snprintf(c.output, sizeof c.output, "%s/rm", dir);
    snprintf(c.run_name, sizeof c.run_name, "rm");
    cr_assert_eq(train_run(st, &c, NULL, NULL, &err), 0, "%s", err.msg);
    store_close(st);
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/easel-online-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    make_reward_model();
    char path[128];
    snprintf(path, sizeof path, "%s/prompts.csv", dir);
    write_text(path, "prompt_id,prompt\nfox,a red fox\nhouse,a blue house\n"
                     "tree,a green tree\nboat,a small boat\n");
    snprintf(path, sizeof path, "%s/two.csv", dir);
    write_text(path, "prompt_id,prompt\nfox,a red fox\nhouse,a blue house\n");
}

static void teardown(void) { rmtree(dir); }

TestSuite(tune_online, .init = setup, .fini = teardown, .timeout = 600);

static void online_config(TuneConfig *c, const char *out, int rounds) {
    tune_config_defaults(c);
    c->online = 1;
    snprintf(c->model, sizeof c->model, "%s", MODEL);
    snprintf(c->reward, sizeof c->reward, "%s/rm/final", dir);
    snprintf(c->prompts, sizeof c->prompts, "%s/prompts.csv", dir);
    snprintf(c->out, sizeof c->out, "%s/%s", dir, out);
    snprintf(c->device, sizeof c->device, "cpu");
    snprintf(c->targets, sizeof c->targets,
             "to_q,to_k,to_v,to_out.0,ff.net.0.proj,ff.net.2,conv1,conv2,conv_in,conv_out");
    snprintf(c->run_name, sizeof c->run_name, "%s", out);
    c->candidates = 4;
    c->rounds = rounds;
    c->steps_per_round = 10;
    c->sample_steps = 8;
    c->guidance = 1.0;
    c->batch = 4;
    c->lr = 5e-3;
    c->beta = 200; /* the SD default 2000 saturates the DPO sigmoid on this tiny UNet's small
                    * denoising errors: steps then only follow the pairs it ranks wrong */
    c->seed = 2;
    c->threads = 2;
}

static int same_file(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    int same = f && g;
    while (same) {
        int x = fgetc(f), y = fgetc(g);
        same = x == y;
        if (x == EOF)
            break;
    }
    if (f)
        fclose(f);
    if (g)
        fclose(g);
    return same;
}

/* Stopped after round 1 (as a kill -9 in round 2 leaves it: checkpoint-K is the newest) and
 * run again to round 2: the adapter of an uninterrupted 2-round run, byte for byte (round 2's
 * candidates regenerated from the restored adapter with the same seeds). */
static void resumed_equals_uninterrupted(void) {
    Err err = {0};
    TuneConfig a, b;
    online_config(&a, "whole", 2);
    online_config(&b, "parts", 1);
    TuneConfig *v[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        snprintf(v[i]->prompts, sizeof v[i]->prompts, "%s/two.csv", dir);
        v[i]->candidates = 2;
        v[i]->steps_per_round = 2;
        v[i]->batch = 1;
    }
    cr_assert_eq(tune_run(NULL, &a, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(tune_run(NULL, &b, NULL, &err), 0, "%s", err.msg);
    char p[300], q[300];
    snprintf(p, sizeof p, "%s/parts/round-2", dir);
    cr_assert(!base_is_dir(p), "round 2 ran in a 1-round run");
    b.rounds = 2;
    cr_assert_eq(tune_run(NULL, &b, NULL, &err), 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/whole/final/pytorch_lora_weights.safetensors", dir);
    snprintf(q, sizeof q, "%s/parts/final/pytorch_lora_weights.safetensors", dir);
    cr_assert(same_file(p, q), "the resumed run's adapter differs from the uninterrupted one's");
    snprintf(p, sizeof p, "%s/whole/rounds.jsonl", dir);
    snprintf(q, sizeof q, "%s/parts/rounds.jsonl", dir);
    cr_assert(same_file(p, q), "rounds.jsonl differs");
    /* settings that differ are refused, the folder unchanged */
    b.steps_per_round = 3;
    cr_assert_eq(tune_run(NULL, &b, NULL, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "other settings"), "%s", err.msg);
}

/* OUT's rounds.jsonl: each round's mean combined reward into V (R of them). */
static void round_means(const char *out, double *v, int R) {
    char p[300], line[2048];
    snprintf(p, sizeof p, "%s/%s/rounds.jsonl", dir, out);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "%s", p);
    int n = 0;
    while (n < R && fgets(line, sizeof line, f)) {
        const char *k = strstr(line, "\"reward_combined\": ");
        cr_assert_not_null(k, "%s: %s", p, line);
        v[n++] = atof(k + strlen("\"reward_combined\": "));
    }
    fclose(f);
    cr_assert_eq(n, R, "%s: %d rounds, not %d", p, n, R);
}

/* Not one lucky seed: the first seeds after seed 2 climb too (seeds 1 and 3; the others
 * measured in doc/tuning.md), without a store. */
static void other_seeds_rise(void) {
    static const int seeds[] = {1, 3};
    for (int i = 0; i < 2; i++) {
        TuneConfig c;
        char out[32];
        snprintf(out, sizeof out, "seed%d", seeds[i]);
        online_config(&c, out, 4);
        c.seed = (uint64_t)seeds[i];
        Err err = {0};
        cr_assert_eq(tune_run(NULL, &c, NULL, &err), 0, "%s", err.msg);
        double v[4];
        round_means(out, v, 4);
        cr_log_info("seed %d: mean combined reward %.4f %.4f %.4f %.4f", seeds[i], v[0], v[1],
                    v[2], v[3]);
        cr_assert(v[3] > v[0] + 2.0, "seed %d: mean combined reward round 4 %.4f, round 1 %.4f",
                  seeds[i], v[3], v[0]);
    }
}

Test(tune_online, rounds_raise_the_reward_of_the_candidates) {
    char db[128];
    snprintf(db, sizeof db, "%s/t.db", dir);
    Err err = {0};
    Store *st = store_open(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    TuneConfig c;
    int R = 4;
    online_config(&c, "online", R);
    double t0 = base_wall();
    cr_assert_eq(tune_run(st, &c, NULL, &err), 0, "%s", err.msg);
    cr_log_info("online run: %.1f s", base_wall() - t0);
    StoreRun sr;
    cr_assert_eq(store_run_by_name(st, "online", &sr, &err), 0, "%s", err.msg);
    const char *heads[6] = {"spatial", "icono", "style", "fidelity", "material", "combined"};
    double first = NAN, last = NAN;
    StoreMetric *m = NULL;
    size_t n = 0;
    cr_assert_eq(store_metrics_list(st, sr.id, 0, &m, &n, &err), 0, "%s", err.msg);
    for (int k = 0; k < 6; k++) { /* every head's line has a point per round */
        char name[40];
        snprintf(name, sizeof name, "reward_%s", heads[k]);
        int rounds = 0;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(m[i].split, "round") && !strcmp(m[i].name, name))
                rounds |= 1 << (m[i].step - 1);
        cr_assert_eq(rounds, (1 << R) - 1, "round/%s: not one value per round", name);
    }
    int n_round = 0, n_loss = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(m[i].split, "round") && !strcmp(m[i].name, "reward_combined")) {
            n_round++;
            cr_log_info("round %d: mean combined reward %.4f", (int)m[i].step, m[i].value);
            if (m[i].step == 1)
                first = m[i].value;
            if (m[i].step == R)
                last = m[i].value;
        }
        if (!strcmp(m[i].split, "round") && !strncmp(m[i].name, "reward_", 7))
            cr_assert(m[i].step >= 1 && m[i].step <= R);
        n_loss += !strcmp(m[i].split, "train") && !strcmp(m[i].name, "loss");
    }
    free(m);
    cr_assert_eq(n_round, R, "%d rounds of reward_combined, not %d", n_round, R);
    cr_assert_eq(n_loss, R * c.steps_per_round, "the steps' train metrics");
    /* measured over seeds 1-16 (doc/tuning.md): 14 rise, by +3.8 to +11.9 (seed 2: +5.07) */
    cr_assert(last > first + 2.0, "mean combined reward: round %d %.4f, round 1 %.4f", R, last,
              first);
    /* the candidates (the same seeds every round) and the checkpoints */
    char p[300];
    for (int r = 1; r <= R; r += R - 1) {
        snprintf(p, sizeof p, "%s/online/round-%d/fox/%llu.png", dir, r,
                 (unsigned long long)tune_online_seed(c.seed, 0, 3));
        cr_assert(base_is_file(p), "%s", p);
    }
    snprintf(p, sizeof p, "%s/online/round-1/scores.csv", dir);
    cr_assert(base_is_file(p), "%s", p);
    snprintf(p, sizeof p, "%s/online/final/pytorch_lora_weights.safetensors", dir);
    cr_assert(base_is_file(p), "%s", p);
    cr_assert_eq(tune_last_checkpoint(c.out), R * c.steps_per_round);
    /* each round's best candidate per prompt in the store's run images (the Monitor's) */
    StoreRunImage *ri = NULL;
    size_t n_ri = 0;
    cr_assert_eq(store_run_images_list(st, sr.id, &ri, &n_ri, &err), 0, "%s", err.msg);
    cr_assert_eq(n_ri, (size_t)R * 4, "%zu run images, not one per prompt and round", n_ri);
    store_run_images_free(ri, n_ri);
    store_run_deinit(&sr);
    store_close(st);
    resumed_equals_uninterrupted(); /* on the same reward model: trained once */
    other_seeds_rise();
}

/* no reward model needed: the settings are refused before anything opens */
static void usage_setup(void) {
    snprintf(dir, sizeof dir, "/tmp/easel-online-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

TestSuite(tune_online_usage, .init = usage_setup, .fini = teardown, .timeout = 60);

Test(tune_online_usage, bad_settings_are_refused) {
    TuneConfig c;
    Err err = {0};
    online_config(&c, "bad", 1);
    c.reward[0] = 0;
    cr_assert_eq(tune_config_check(&c, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "--reward"), "%s", err.msg);
    online_config(&c, "bad", 1);
    c.candidates = 1;
    cr_assert_eq(tune_config_check(&c, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "--candidates"), "%s", err.msg);
    online_config(&c, "bad", 1);
    snprintf(c.aspect_weights, sizeof c.aspect_weights, "spatial=1,colour=2");
    cr_assert_eq(tune_config_check(&c, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "colour"), "%s", err.msg);
    double w[5];
    cr_assert_eq(tune_online_aspect_weights("style=2,spatial=1", w, &err), 0, "%s", err.msg);
    cr_assert(w[0] == 1 && w[1] == 0 && w[2] == 2 && w[3] == 0 && w[4] == 0);
    online_config(&c, "bad", 1);
    snprintf(c.pairs, sizeof c.pairs, "pairs.jsonl");
    cr_assert_eq(tune_config_check(&c, &err), ERR_USAGE);
    /* a prompts file with a bad id: refused with its line, nothing written */
    char path[200];
    snprintf(path, sizeof path, "%s/badids.csv", dir);
    write_text(path, "prompt_id,prompt\nok,a fox\n../up,a cat\n");
    online_config(&c, "bad", 1);
    snprintf(c.prompts, sizeof c.prompts, "%s", path);
    cr_assert_eq(tune_run(NULL, &c, NULL, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "badids.csv:3"), "%s", err.msg);
    cr_assert(!base_is_dir(c.out), "%s was written", c.out);
}
