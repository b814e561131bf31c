/* bench_queue — how many ratings the Annotate queue's `uncertain` order needs to reach a
 * held-out accuracy, against `sequential` (and `random`), on the demo workspace (data/).
 *
 * Everything runs through the code a user runs: the store (store_open, import_path of
 * data/prompts.csv and data/images), the annotate queue (store_annotate_queue with the order
 * under test, commits with store_annotate_commit), training (train_run, classic encoder) and
 * the computed order (queue_order_refresh, which scores the images under the newest
 * checkpoint and writes queue_order).
 *
 * Simulated annotator: rates every aspect as the demo's planted defects say (data/defects.csv
 * and the penalty table of doc/demo.md): 8.2 - sum of severity x penalty, clamped to
 * 0.5..9.8, plus noise of sd 0.6 (a sum of 12 uniforms), rounded to 0.5. The noise of an
 * (image, aspect) is fixed per repeat, so every order sees the same value for an image and
 * the orders differ only in which images are rated when.
 *
 * Protocol per repeat: 8 of the 30 prompts (seeded) are held out; their images are never
 * served (the queue's skip list) and every pair of them within a prompt whose planted
 * quality differs by >= 0.5 on an aspect is a test pair of that aspect. The annotator rates
 * BATCH images from the queue, the model is retrained from scratch on all ratings so far
 * (train_run: 15 epochs, lr 1e-3, batch 8, no validation split), the queue's order is
 * refreshed from the new checkpoint, and so on until the pool is rated. After each round the
 * checkpoint the queue uses (the run's best/) is scored on the test pairs: held-out accuracy
 * per head, and their mean (chance 0.5 before any model). The target is 90 % of the way from
 * chance to the accuracy with the whole pool rated (the same for every order: the same
 * ratings); "ratings" counts rated images (five aspect values each).
 *
 * Prints per order the mean curve over repeats (stderr, and doc/queue.md's table with
 * EASEL_BENCH_QUEUE_TABLE=1 on stdout), then
 *   bench queue-uncertain: R.RRx vs sequential (ours N ratings, peer M ratings)
 *   bench queue-uncertain-random: R.RRx vs random (ours N ratings, peer M ratings)
 * R > 1: uncertain needs fewer ratings. Repeats: EASEL_BENCH_QUEUE_REPEATS (default 8);
 * threads: EASEL_BENCH_THREADS (default 2); EASEL_BENCH_QUEUE_DEBUG=1 prints every round.
 * Run from the repository root.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "encoder.h"
#include "import.h"
#include "queue_order.h"
#include "rng.h"
#include "store.h"
#include "store_annotate.h"
#include "store_catalog.h"
#include "store_runs.h"
#include "train.h"

#define NA 5
#define MAX_IMG 256
#define BATCH 4
#define HELD_PROMPTS 8
#define MAX_ROUNDS (MAX_IMG / BATCH + 2)

enum { ORD_SEQ, ORD_RANDOM, ORD_UNC, N_ORD };
static const AnnotateOrder orders[N_ORD] = {ANNOTATE_ORDER_SEQUENTIAL, ANNOTATE_ORDER_RANDOM,
                                            ANNOTATE_ORDER_UNCERTAIN};

/* penalty per defect and aspect (spatial, icono, style, fidelity, material): doc/demo.md */
static const struct {
    const char *name;
    double pen[NA];
} defects[] = {
    {"blur", {0, 0.3, 0.3, 4.5, 1}},        {"noise", {0, 0, 0.3, 4.5, 0.5}},
    {"offcentre", {5, 0.3, 0.3, 0, 0}},     {"colorcast", {0, 0.3, 4.5, 0.3, 0.5}},
    {"lowcontrast", {0, 0, 4, 0.5, 0.5}},   {"overexposed", {0, 0, 0.5, 1, 5}},
    {"blocky", {0, 0, 0.5, 4, 1}},          {"missing_subject", {0.5, 6, 0.3, 0, 0}},
};

typedef struct Truth {
    char path[64];          /* "images/P/S.png" */
    double q[NA];           /* planted quality per aspect */
} Truth;

static Truth truth[MAX_IMG];
static int n_truth;
static int threads = 2;

static void die(const char *what, const Err *err) {
    fprintf(stderr, "bench queue: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

static Truth *truth_of(const char *path) {
    size_t lp = strlen(path);
    for (int i = 0; i < n_truth; i++) {
        size_t lt = strlen(truth[i].path);
        if (lp >= lt && strcmp(path + lp - lt, truth[i].path) == 0 &&
            (lp == lt || path[lp - lt - 1] == '/'))
            return &truth[i];
    }
    return NULL;
}

static void read_defects(void) {
    FILE *f = fopen("data/defects.csv", "r");
    if (!f) {
        fprintf(stderr, "bench queue: data/defects.csv not found (run from the repository "
                        "root)\n");
        exit(1);
    }
    char line[512];
    if (!fgets(line, sizeof line, f))
        exit(1);
    while (fgets(line, sizeof line, f)) {
        char path[64], defect[32];
        double sev;
        int pid, seed;
        if (sscanf(line, "%d,%d,%63[^,],%31[^,],%lf", &pid, &seed, path, defect, &sev) != 5)
            continue;
        Truth *t = truth_of(path);
        if (!t) {
            if (n_truth == MAX_IMG)
                exit(1);
            t = &truth[n_truth++];
            base_strlcpy(t->path, path, sizeof t->path);
            for (int a = 0; a < NA; a++)
                t->q[a] = 8.2;
        }
        for (size_t d = 0; d < ARRAY_LEN(defects); d++)
            if (strcmp(defect, defects[d].name) == 0)
                for (int a = 0; a < NA; a++)
                    t->q[a] -= sev * defects[d].pen[a];
    }
    fclose(f);
    for (int i = 0; i < n_truth; i++)
        for (int a = 0; a < NA; a++)
            truth[i].q[a] = fmin(9.8, fmax(0.5, truth[i].q[a]));
}

/* The simulated annotator's value for (image, aspect) in repeat REP. */
static double rate(const Truth *t, int a, int rep) {
    uint64_t key = (uint64_t)(t - truth) * 16 + (uint64_t)a;
    double s = 0;
    for (int k = 0; k < 12; k++)
        s += rng_hash_uniform(0x5eed0000u + (uint64_t)rep, key * 12 + (uint64_t)k);
    double v = t->q[a] + 0.6 * (s - 6.0);
    v = round(v * 2.0) / 2.0;
    return fmin(10.0, fmax(0.0, v));
}

/* ---- one repeat of one order ------------------------------------------------------------ */

typedef struct Img {
    int64_t id;
    int64_t prompt_id;
    char *path;
    char *sha;
    char *prompt;
    Truth *t;
    int held;
} Img;

typedef struct World {
    Img img[MAX_IMG];
    int n;
} World;

static void world_load(Store *st, World *w) {
    AnnotateOrderImage *im = NULL;
    size_t n = 0;
    Err err = {0};
    if (store_annotate_order_images(st, &im, &n, &err))
        die("list images", &err);
    if (n > MAX_IMG)
        die("too many images", NULL);
    w->n = (int)n;
    for (size_t i = 0; i < n; i++) {
        Img *g = &w->img[i];
        g->id = im[i].id;
        g->prompt_id = im[i].prompt_id;
        g->path = xstrdup(im[i].path);
        g->sha = im[i].sha256 ? xstrdup(im[i].sha256) : NULL;
        g->prompt = xstrdup(im[i].prompt ? im[i].prompt : "");
        if (!(g->t = truth_of(im[i].path)))
            die(im[i].path, NULL);
    }
    store_annotate_order_images_free(im, n);
}

/* Held-out accuracy per head of the checkpoint the queue would use; 0.5 each without one. */
static void held_out_accuracy(Store *st, const World *w, double acc[NA], double *mean) {
    for (int a = 0; a < NA; a++)
        acc[a] = 0.5;
    *mean = 0.5;
    AnnotateCheckpoint ck;
    Err err = {0};
    if (store_annotate_order_checkpoint(st, 0, &ck, &err))
        die("find checkpoint", &err);
    if (!ck.found)
        return;
    RewardCkpt *c;
    if (train_ckpt_open(st, ck.path, threads, &c, &err))
        die("open checkpoint", &err);
    float (*sc)[TRAIN_N_HEADS + 1] = xcalloc((size_t)w->n, sizeof *sc);
    for (int i = 0; i < w->n; i++)
        if (w->img[i].held &&
            train_ckpt_score(c, st, w->img[i].path, w->img[i].sha, w->img[i].prompt, sc[i],
                             &err))
            die("score", &err);
    int right[NA] = {0}, total[NA] = {0};
    for (int i = 0; i < w->n; i++)
        for (int j = i + 1; j < w->n; j++) {
            const Img *x = &w->img[i], *y = &w->img[j];
            if (!x->held || !y->held || x->prompt_id != y->prompt_id)
                continue;
            for (int a = 0; a < NA; a++) {
                double d = x->t->q[a] - y->t->q[a];
                if (fabs(d) < 0.5)
                    continue;
                total[a]++;
                double p = (double)sc[i][a] - sc[j][a];
                right[a] += (p > 0) == (d > 0) && p != 0;
            }
        }
    *mean = 0;
    for (int a = 0; a < NA; a++) {
        acc[a] = total[a] ? (double)right[a] / total[a] : 0.5;
        *mean += acc[a] / NA;
    }
    free(sc);
    train_ckpt_free(c);
    store_annotate_checkpoint_deinit(&ck);
}

typedef struct Curve {
    int n_points;
    int ratings[MAX_ROUNDS];
    double mean[MAX_ROUNDS];
    double head[MAX_ROUNDS][NA];
} Curve;

static int train_once(Store *st, const char *dir, int round, int rep) {
    TrainConfig cfg;
    train_config_defaults(&cfg);
    base_strlcpy(cfg.encoder, "classic", sizeof cfg.encoder);
    cfg.epochs = 15;
    cfg.batch_size = 8;
    cfg.learning_rate = 1e-3;
    cfg.val_fraction = 0;
    cfg.save_every = 0;
    cfg.threads = threads;
    cfg.seed = (uint64_t)(100 + rep);
    snprintf(cfg.output, sizeof cfg.output, "%s/runs/r%d", dir, round);
    snprintf(cfg.run_name, sizeof cfg.run_name, "round-%d", round);
    Err err = {0};
    int rc = train_run(st, &cfg, NULL, NULL, &err);
    if (rc && rc != ERR_USAGE && rc != ERR_NOTFOUND && rc != ERR_FORMAT)
        die("train", &err);
    return rc; /* too few pairs yet: no model this round */
}

static void run_order(const char *base_db, const char *dir, int rep, int ord, Curve *cv) {
    char db[512];
    snprintf(db, sizeof db, "%s/o%d.db", dir, ord);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/runs' '%s' && cp '%s' '%s'", dir, db, base_db, db);
    if (system(cmd) != 0)
        die("copy store", NULL);
    Err err = {0};
    Store *st = store_open_existing(db, &err);
    if (!st)
        die("open", &err);
    World w = {0};
    world_load(st, &w);
    /* held-out prompts: a seeded shuffle of the prompt ids, the first HELD_PROMPTS */
    int64_t pids[MAX_IMG];
    int n_p = 0;
    for (int i = 0; i < w.n; i++) {
        int seen = 0;
        for (int k = 0; k < n_p; k++)
            seen |= pids[k] == w.img[i].prompt_id;
        if (!seen)
            pids[n_p++] = w.img[i].prompt_id;
    }
    Rng r;
    rng_init(&r, 0xbe7c0000u + (uint64_t)rep);
    for (int i = n_p - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1);
        int64_t t = pids[i];
        pids[i] = pids[j];
        pids[j] = t;
    }
    int64_t skip[MAX_IMG];
    int n_skip = 0;
    for (int i = 0; i < w.n; i++) {
        for (int k = 0; k < HELD_PROMPTS; k++)
            w.img[i].held |= w.img[i].prompt_id == pids[k];
        if (w.img[i].held)
            skip[n_skip++] = w.img[i].id;
    }
    /* the annotator: a different one per repeat, so `random` and fewest's ties shuffle anew */
    int64_t annot = 0;
    for (int k = 0; k <= rep; k++) {
        char name[32];
        snprintf(name, sizeof name, "sim-%d", k);
        if (store_annotator_ensure(st, name, &annot, &err))
            die("annotator", &err);
    }
    AnnotateQuery q = {.annotator_id = annot, .overlap = 1, .order = orders[ord]};
    int rated = 0, round = 0;
    cv->n_points = 0;
    for (;;) {
        if (orders[ord] == ANNOTATE_ORDER_UNCERTAIN) {
            QueueOrderOptions o = {.threads = threads};
            QueueOrderResult res;
            if (queue_order_refresh(st, orders[ord], &o, &res, &err))
                die("queue order", &err);
        }
        int64_t ids[BATCH];
        int n = 0;
        if (store_annotate_queue(st, &q, skip, n_skip, ids, BATCH, &n, &err))
            die("queue", &err);
        if (n == 0)
            break;
        for (int k = 0; k < n; k++) {
            Img *g = NULL;
            for (int i = 0; i < w.n; i++)
                if (w.img[i].id == ids[k])
                    g = &w.img[i];
            double v[ANNOTATE_ASPECTS];
            for (int a = 0; a < NA; a++)
                v[a] = rate(g->t, a, rep);
            if (store_annotate_commit(st, g->id, annot, v, 10.0, NULL, &err))
                die("commit", &err);
        }
        rated += n;
        int trc = train_once(st, dir, round++, rep);
        int p = cv->n_points++;
        cv->ratings[p] = rated;
        held_out_accuracy(st, &w, cv->head[p], &cv->mean[p]);
        if (getenv("EASEL_BENCH_QUEUE_DEBUG"))
            fprintf(stderr, "  %s rep %d: %d rated, train rc %d, held-out %.3f\n",
                    store_annotate_order_name(orders[ord]), rep, rated, trc, cv->mean[p]);
    }
    for (int i = 0; i < w.n; i++) {
        free(w.img[i].path);
        free(w.img[i].sha);
        free(w.img[i].prompt);
    }
    store_close(st);
}

/* Fewest ratings at which CURVE first reaches TARGET; the last point's count + 1 if never. */
static int needed(const double *mean, const int *ratings, int n, double target) {
    for (int i = 0; i < n; i++)
        if (mean[i] >= target - 1e-12)
            return ratings[i];
    return ratings[n - 1] + 1;
}

static double auc(const double *mean, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += mean[i] / n;
    return s;
}

int main(void) {
    const char *e = getenv("EASEL_BENCH_THREADS");
    if (e && atoi(e) > 0)
        threads = atoi(e);
    int repeats = 8;
    if ((e = getenv("EASEL_BENCH_QUEUE_REPEATS")) && atoi(e) > 0)
        repeats = atoi(e);
    int table = (e = getenv("EASEL_BENCH_QUEUE_TABLE")) && *e == '1';
    read_defects();
    char dir[] = "/dev/shm/easel-bench-queue-XXXXXX";
    char dir_tmp[] = "/tmp/easel-bench-queue-XXXXXX";
    char *d = access("/dev/shm", W_OK) == 0 ? mkdtemp(dir) : mkdtemp(dir_tmp);
    if (!d)
        die("mkdtemp", NULL);
    double t0 = base_now();
    /* the base store: the demo's prompts and images, classic features cached once */
    char base_db[512];
    snprintf(base_db, sizeof base_db, "%s/base.db", d);
    Err err = {0};
    Store *st = store_open(base_db, &err);
    if (!st)
        die("create store", &err);
    ImportReport rep;
    if (import_path(st, IMPORT_PROMPTS, "data/prompts.csv", NULL, &rep, &err))
        die("import prompts", &err);
    import_report_deinit(&rep);
    if (import_path(st, IMPORT_IMAGES, "data/images", NULL, &rep, &err))
        die("import images", &err);
    import_report_deinit(&rep);
    World w = {0};
    world_load(st, &w);
    Encoder *enc;
    if (encoder_open("classic", st, &enc, &err))
        die("encoder", &err);
    for (int i = 0; i < w.n; i++) {
        float *v = NULL;
        if (encoder_embed_image(enc, st, w.img[i].path, w.img[i].sha, &v, &err))
            die("embed", &err);
        free(v);
    }
    encoder_free(enc);
    store_close(st);
    fprintf(stderr, "bench queue: %d images, %d held-out prompts, batch %d, %d repeats, %d "
            "threads\n", w.n, HELD_PROMPTS, BATCH, repeats, threads);

    static Curve cv[N_ORD][64];
    if (repeats > 64)
        repeats = 64;
    for (int rp = 0; rp < repeats; rp++)
        for (int o = 0; o < N_ORD; o++) {
            run_order(base_db, d, rp, o, &cv[o][rp]);
            fprintf(stderr, "bench queue: repeat %d %-10s final %.3f (%.0f s)\n", rp + 1,
                    store_annotate_order_name(orders[o]),
                    cv[o][rp].mean[cv[o][rp].n_points - 1], base_now() - t0);
        }
    /* mean curves; every repeat has the same pool size per repeat, points aligned by round */
    int n_pts = cv[0][0].n_points;
    for (int o = 0; o < N_ORD; o++)
        for (int rp = 0; rp < repeats; rp++)
            if (cv[o][rp].n_points < n_pts)
                n_pts = cv[o][rp].n_points;
    static double mean[N_ORD][MAX_ROUNDS], head[N_ORD][MAX_ROUNDS][NA];
    int ratings[MAX_ROUNDS];
    for (int p = 0; p < n_pts; p++) {
        ratings[p] = cv[0][0].ratings[p];
        for (int o = 0; o < N_ORD; o++) {
            mean[o][p] = 0;
            for (int a = 0; a < NA; a++)
                head[o][p][a] = 0;
            for (int rp = 0; rp < repeats; rp++) {
                mean[o][p] += cv[o][rp].mean[p] / repeats;
                for (int a = 0; a < NA; a++)
                    head[o][p][a] += cv[o][rp].head[p][a] / repeats;
            }
        }
    }
    /* the whole pool rated: each repeat's last point, the same model for every order */
    double full = 0;
    for (int rp = 0; rp < repeats; rp++)
        full += cv[0][rp].mean[cv[0][rp].n_points - 1] / repeats;
    double target = 0.5 + 0.9 * (full - 0.5);
    int need[N_ORD];
    for (int o = 0; o < N_ORD; o++)
        need[o] = needed(mean[o], ratings, n_pts, target);
    /* per repeat, against that repeat's own whole-pool accuracy: who needs fewer ratings */
    int wins[N_ORD] = {0}, ties[N_ORD] = {0}, losses[N_ORD] = {0};
    for (int rp = 0; rp < repeats; rp++) {
        const Curve *u = &cv[ORD_UNC][rp];
        double t = 0.5 + 0.9 * (u->mean[u->n_points - 1] - 0.5);
        int nu = needed(u->mean, u->ratings, u->n_points, t);
        for (int o = 0; o < ORD_UNC; o++) {
            const Curve *c = &cv[o][rp];
            int nc = needed(c->mean, c->ratings, c->n_points, t);
            wins[o] += nu < nc;
            ties[o] += nu == nc;
            losses[o] += nu > nc;
        }
    }

    FILE *out = table ? stdout : stderr;
    fprintf(out, "| ratings | sequential | random | uncertain | uncertain per head "
                 "(spatial, icono, style, fidelity, material) |\n|---|---|---|---|---|\n");
    for (int p = 0; p < n_pts; p++)
        fprintf(out, "| %d | %.3f | %.3f | %.3f | %.2f %.2f %.2f %.2f %.2f |\n", ratings[p],
                mean[ORD_SEQ][p], mean[ORD_RANDOM][p], mean[ORD_UNC][p], head[ORD_UNC][p][0],
                head[ORD_UNC][p][1], head[ORD_UNC][p][2], head[ORD_UNC][p][3],
                head[ORD_UNC][p][4]);
    fprintf(out, "\nwhole pool rated: %.3f held-out mean per-head accuracy (mean of the "
                 "repeats); target %.3f (90 %% of the way from chance)\n", full, target);
    fprintf(out, "ratings to the target, per repeat (its own target): uncertain needs fewer / "
                 "as many / more than sequential in %d / %d / %d of %d repeats, than random in "
                 "%d / %d / %d\n", wins[ORD_SEQ], ties[ORD_SEQ], losses[ORD_SEQ], repeats,
            wins[ORD_RANDOM], ties[ORD_RANDOM], losses[ORD_RANDOM]);
    fprintf(out, "mean over the curve (area under it, per point): sequential %.3f, random %.3f, "
                 "uncertain %.3f\n\n", auc(mean[ORD_SEQ], n_pts), auc(mean[ORD_RANDOM], n_pts),
            auc(mean[ORD_UNC], n_pts));
    /* ASCII plot: x ratings, y mean held-out accuracy; S sequential, R random, U uncertain */
    const int H = 12;
    double lo = 0.5, hi = full > 0.5 ? full + 0.02 : 0.6;
    for (int o = 0; o < N_ORD; o++)
        for (int p = 0; p < n_pts; p++)
            if (mean[o][p] > hi)
                hi = mean[o][p];
    for (int row = H; row >= 0; row--) {
        double yv = lo + (hi - lo) * row / H;
        fprintf(out, "%5.2f |", yv);
        for (int p = 0; p < n_pts; p++) {
            char c = ' ';
            const char marks[N_ORD] = {'S', 'R', 'U'};
            for (int o = 0; o < N_ORD; o++) {
                int yr = (int)lround((mean[o][p] - lo) / (hi - lo) * H);
                if (yr == row)
                    c = c == ' ' ? marks[o] : '*';
            }
            if (c == ' ' && fabs(yv - target) < (hi - lo) / (2.0 * H))
                c = '-';
            fprintf(out, "%c%c", c, c == '-' ? '-' : ' ');
        }
        fprintf(out, "\n");
    }
    fprintf(out, "      +");
    for (int p = 0; p < n_pts; p++)
        fprintf(out, "--");
    fprintf(out, "\n       ratings %d .. %d, one column per %d; S sequential, R random, "
                 "U uncertain, * several, -- target\n\n", ratings[0], ratings[n_pts - 1],
            BATCH);
    fprintf(stderr, "bench queue: %.0f s in all; per repeat, uncertain needs fewer / as many / "
            "more ratings than sequential in %d / %d / %d of %d (read the ratio with that: "
            "doc/queue.md)\n", base_now() - t0, wins[ORD_SEQ], ties[ORD_SEQ], losses[ORD_SEQ],
            repeats);
    printf("bench queue-uncertain: %.2fx vs sequential (ours %d ratings, peer %d ratings)\n",
           (double)need[ORD_SEQ] / need[ORD_UNC], need[ORD_UNC], need[ORD_SEQ]);
    printf("bench queue-uncertain-random: %.2fx vs random (ours %d ratings, peer %d ratings)\n",
           (double)need[ORD_RANDOM] / need[ORD_UNC], need[ORD_UNC], need[ORD_RANDOM]);
    snprintf(base_db, sizeof base_db, "rm -rf '%s'", d);
    if (system(base_db) != 0)
        fprintf(stderr, "bench queue: could not remove %s\n", d);
    for (int i = 0; i < w.n; i++) {
        free(w.img[i].path);
        free(w.img[i].sha);
        free(w.img[i].prompt);
    }
    return 0;
}
