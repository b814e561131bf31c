/* tune_online — the online loop of `easel tune --online` (tune_online.h). */
#include "tune_online.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "base.h"
#include "fmt_csv.h"
#include "image.h"
#include "pipeline.h"
#include "rng.h"
#include "store_run_images.h"
#include "store_runs.h"
#include "train.h"
#include "train_int.h"
#include "tune_int.h"

#define NH TRAIN_N_HEADS

int tune_online_aspect_weights(const char *s, double w[NH], Err *err) {
    for (int k = 0; k < NH; k++)
        w[k] = 0;
    char *copy = xstrdup(s);
    int rc = 0;
    double sum = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); !rc && t;
         t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        int head = -1;
        if (eq) {
            *eq = 0;
            for (int k = 0; k < NH; k++)
                if (!strcmp(t, train_output_name(k)))
                    head = k;
        }
        char *end = NULL;
        double v = eq ? strtod(eq + 1, &end) : NAN;
        if (!eq || head < 0)
            rc = err_set(err, ERR_USAGE, "tune: --aspect-weights: '%s' is not ASPECT=WEIGHT "
                         "with an aspect of spatial, icono, style, fidelity, material", t);
        else if (end == eq + 1 || *end || !isfinite(v) || v < 0)
            rc = err_set(err, ERR_USAGE, "tune: --aspect-weights: %s=%s: give a weight of 0 "
                         "or more", t, eq + 1);
        else
            w[head] = v, sum += v;
    }
    free(copy);
    if (!rc && !(sum > 0))
        rc = err_set(err, ERR_USAGE, "tune: --aspect-weights '%s': give at least one aspect a "
                     "weight above 0 (e.g. spatial=1,style=2)", s);
    return rc;
}

int tune_online_check(const TuneConfig *c, Err *err) {
    if (c->pairs[0] || c->from_store)
        return err_set(err, ERR_USAGE, "tune: --online makes its own pairs: leave out --pairs "
                       "and --from-store");
    if (c->aspect[0])
        return err_set(err, ERR_USAGE, "tune: --online weighs the heads with --aspect-weights "
                       "(e.g. style=1), not --aspect");
    if (!c->reward[0])
        return err_set(err, ERR_USAGE, "tune: --online needs --reward CKPT (a reward "
                       "checkpoint folder of `easel train`: best/, final/ or checkpoint-N/)");
    if (!c->prompts[0])
        return err_set(err, ERR_USAGE, "tune: --online needs --prompts FILE (prompts.csv with "
                       "prompt_id,prompt columns)");
    if (c->candidates < 2 || c->candidates > 1024)
        return err_set(err, ERR_USAGE, "tune: --candidates %d: use 2 to 1024 (the best and the "
                       "worst of them make a pair)", c->candidates);
    if (c->rounds < 1 || c->steps_per_round < 1)
        return err_set(err, ERR_USAGE, "tune: --rounds and --steps-per-round must be 1 or "
                       "more");
    if (!(c->guidance >= 0) || !isfinite(c->guidance))
        return err_set(err, ERR_USAGE, "tune: --guidance must be 0 or more");
    double w[NH];
    if (c->aspect_weights[0])
        return tune_online_aspect_weights(c->aspect_weights, w, err);
    return 0;
}

uint64_t tune_online_seed(uint64_t seed, int p, int j) {
    uint64_t h = rng_hash_u64(rng_hash_u64(rng_hash_u64(seed, 0x0a11e0000ull), (uint64_t)p),
                              (uint64_t)j);
    return h % 1000000007ull; /* short enough to read in a file name */
}

/* ---- prompts.csv ---- */

typedef struct OPrompt {
    char *id, *text;
} OPrompt;

static int id_ok(const char *s) {
    if (!s[0] || !strcmp(s, ".") || !strcmp(s, "..") || strlen(s) > 100)
        return 0;
    for (const char *p = s; *p; p++)
        if (!(((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-' || *p == '.'))
            return 0;
    return 1;
}

static int read_prompts(const char *path, OPrompt **out, int *n, Err *err) {
    *out = NULL;
    *n = 0;
    CsvTable t = {0};
    int rc = fmt_csv_read(path, &t, err);
    if (rc)
        return rc;
    int ci = t.n_rows ? fmt_csv_column(&t.rows[0], "prompt_id") : -1;
    int cp = t.n_rows ? fmt_csv_column(&t.rows[0], "prompt") : -1;
    if (ci < 0 || cp < 0)
        rc = err_set(err, ERR_FORMAT, "%s:1: the header must name the columns prompt_id and "
                     "prompt", path);
    OPrompt *v = xcalloc(t.n_rows ? t.n_rows : 1, sizeof *v);
    for (size_t i = 1; !rc && i < t.n_rows; i++) {
        const CsvRow *row = &t.rows[i];
        if (row->n == 1 && !row->field[0][0])
            continue; /* an empty line */
        if (row->n <= (size_t)ci || row->n <= (size_t)cp) {
            rc = err_set(err, ERR_FORMAT, "%s:%ld: too few fields (prompt_id,prompt)", path,
                         row->line);
        } else if (!id_ok(row->field[ci])) {
            rc = err_set(err, ERR_FORMAT, "%s:%ld: prompt_id '%s' names a folder: use letters, "
                         "digits, '_', '-' and '.' (at most 100)", path, row->line,
                         row->field[ci]);
        } else if (!row->field[cp][0]) {
            rc = err_set(err, ERR_FORMAT, "%s:%ld: the prompt is empty", path, row->line);
        } else {
            for (int k = 0; !rc && k < *n; k++)
                if (!strcmp(v[k].id, row->field[ci]))
                    rc = err_set(err, ERR_FORMAT, "%s:%ld: prompt_id '%s' is given twice", path,
                                 row->line, row->field[ci]);
            if (!rc) {
                v[*n].id = xstrdup(row->field[ci]);
                v[*n].text = xstrdup(row->field[cp]);
                (*n)++;
            }
        }
    }
    if (!rc && *n == 0)
        rc = err_set(err, ERR_FORMAT, "%s: no prompts (a header prompt_id,prompt and one row "
                     "per prompt)", path);
    fmt_csv_deinit(&t);
    if (rc) {
        for (int k = 0; k < *n; k++)
            free(v[k].id), free(v[k].text);
        free(v);
        *n = 0;
        return rc;
    }
    *out = v;
    return 0;
}

/* ---- the run ---- */

typedef struct Online {
    const TuneConfig *c;
    const TuneHooks *h;
    Store *st;
    TuneInt *run;
    RewardCkpt *rm;
    OPrompt *pr;
    int np;
    double w[NH];   /* user's head weights; used when user_w */
    int user_w;
    double units;   /* progress units of one round: candidates + steps */
} Online;

static void report(const Online *o, int round, double u) {
    progress_report(&o->h->progress, (double)(round - 1) + u / o->units, o->c->rounds, "rounds");
}

/* Combined score of S (the heads, then the model's combined). */
static double combine(const Online *o, const float s[NH + 1]) {
    if (!o->user_w)
        return s[NH];
    double a = 0, b = 0;
    for (int k = 0; k < NH; k++)
        a += o->w[k] * s[k], b += o->w[k];
    return a / b;
}

static int record_round(Online *o, int round, const double mean[NH + 1], int n_pairs,
                        Err *err) {
    char *path = xasprintf("%s/rounds.jsonl", o->c->out);
    /* lines of later rounds (a resumed run redoes them) are dropped */
    char *old = base_is_file(path) ? train_read_file(path, NULL) : NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    for (char *save = NULL, *l = old ? strtok_r(old, "\n", &save) : NULL; l;
         l = strtok_r(NULL, "\n", &save)) {
        int r;
        if (sscanf(l, "{\"round\": %d", &r) == 1 && r < round)
            fprintf(f, "%s\n", l);
    }
    fprintf(f, "{\"round\": %d, \"step\": %d", round, (round - 1) * o->c->steps_per_round);
    for (int k = 0; k < NH; k++)
        fprintf(f, ", \"reward_%s\": %.9g", train_output_name(k), mean[k]);
    fprintf(f, ", \"reward_combined\": %.9g, \"pairs\": %d}\n", mean[NH], n_pairs);
    fclose(f);
    int rc = atomic_file_write(path, buf, len, err);
    free(buf), free(old), free(path);
    if (rc || !o->st || !tune_int_run_id(o->run))
        return rc;
    StoreMetric m[NH + 2];
    for (int k = 0; k < NH + 2; k++) {
        memset(&m[k], 0, sizeof m[k]);
        snprintf(m[k].split, sizeof m[k].split, "round");
        if (k < NH)
            snprintf(m[k].name, sizeof m[k].name, "reward_%s", train_output_name(k));
        else
            snprintf(m[k].name, sizeof m[k].name, k == NH ? "reward_combined" : "pairs");
        m[k].step = round;
        m[k].epoch = round;
        m[k].value = k <= NH ? mean[k] : n_pairs;
    }
    return store_metrics_add(o->st, tune_int_run_id(o->run), m, NH + 2, err);
}

/* Round R's candidates: generated, scored, paired, recorded; the pairs into PW, PL, PP. */
static int round_candidates(Online *o, int round, char ***pw, char ***pl, char ***pp,
                            size_t *n_pairs, Err *err) {
    const TuneConfig *c = o->c;
    int W, H, N = c->candidates, rc = 0;
    tune_int_size(o->run, &W, &H);
    double mean[NH + 1] = {0};
    *pw = xcalloc((size_t)o->np, sizeof **pw);
    *pl = xcalloc((size_t)o->np, sizeof **pl);
    *pp = xcalloc((size_t)o->np, sizeof **pp);
    *n_pairs = 0;
    char *dir = xasprintf("%s/round-%d", c->out, round);
    char *csv = NULL;
    size_t csv_len = 0;
    FILE *cf = open_memstream(&csv, &csv_len);
    fprintf(cf, "prompt_id,seed,path");
    for (int k = 0; k < NH; k++)
        fprintf(cf, ",%s", train_output_name(k));
    fprintf(cf, ",combined\n");
    Progress gp = {NULL, o->h->progress.cancelled, NULL, o->h->progress.user};
    char **path = xcalloc((size_t)N, sizeof *path);
    double *score = xcalloc((size_t)N, sizeof *score);
    for (int p = 0; !rc && p < o->np; p++) {
        char *pdir = xasprintf("%s/%s", dir, o->pr[p].id);
        rc = train_mkdirs(pdir, err);
        for (int j = 0; !rc && j < N; j++) {
            if (progress_cancelled(&o->h->progress)) {
                rc = ERR_CANCELLED;
                break;
            }
            SdGenParams g = {0};
            g.prompt = o->pr[p].text;
            g.width = W;
            g.height = H;
            g.steps = c->sample_steps;
            g.guidance = (float)c->guidance;
            g.seed = tune_online_seed(c->seed, p, j);
            uint8_t *rgb = NULL;
            int w = 0, h = 0;
            rc = sd_pipeline_generate(tune_int_pipe(o->run), &g, &gp, &rgb, &w, &h, err);
            free(path[j]);
            path[j] = xasprintf("%s/%llu.png", pdir, (unsigned long long)g.seed);
            if (!rc)
                rc = image_write_png(path[j], rgb, w, h, 3, err);
            free(rgb);
            float s[NH + 1];
            if (!rc && (rc = train_ckpt_score(o->rm, NULL, path[j], NULL, o->pr[p].text, s,
                                              err)))
                err_prefix(err, "tune: scoring %s", path[j]);
            if (rc)
                break;
            score[j] = combine(o, s);
            for (int k = 0; k < NH; k++)
                mean[k] += s[k];
            mean[NH] += score[j];
            fprintf(cf, "%s,%llu,%s/%llu.png", o->pr[p].id, (unsigned long long)g.seed,
                    o->pr[p].id, (unsigned long long)g.seed);
            for (int k = 0; k < NH; k++)
                fprintf(cf, ",%.9g", s[k]);
            fprintf(cf, ",%.9g\n", score[j]);
            report(o, round, (double)p * N + j + 1);
        }
        free(pdir);
        if (rc)
            break;
        int best = 0, worst = 0;
        for (int j = 1; j < N; j++) {
            if (score[j] > score[best])
                best = j;
            if (score[j] < score[worst])
                worst = j;
        }
        if (o->st && tune_int_run_id(o->run)) { /* the Monitor's images: each prompt's best,
                                                   * at the round's first step (a resumed run
                                                   * drops them with the round) */
            char *label = xasprintf("round %d best: %s", round, o->pr[p].text);
            rc = store_run_image_add(o->st, tune_int_run_id(o->run),
                                     (int64_t)(round - 1) * c->steps_per_round + 1,
                                     (int64_t)tune_online_seed(c->seed, p, best), label,
                                     path[best], err);
            free(label);
            if (rc)
                break;
        }
        if (score[best] > score[worst]) { /* a tie gives no pair */
            (*pw)[*n_pairs] = xstrdup(path[best]);
            (*pl)[*n_pairs] = xstrdup(path[worst]);
            (*pp)[*n_pairs] = xstrdup(o->pr[p].text);
            (*n_pairs)++;
        }
    }
    if (rc == ERR_CANCELLED)
        err_set(err, ERR_CANCELLED, "tune: cancelled in round %d (generating)", round);
    fclose(cf);
    if (!rc) {
        char *sp = xasprintf("%s/scores.csv", dir);
        rc = atomic_file_write(sp, csv, csv_len, err);
        free(sp);
    }
    if (!rc) {
        for (int k = 0; k <= NH; k++)
            mean[k] /= (double)o->np * N;
        rc = record_round(o, round, mean, (int)*n_pairs, err);
    }
    if (!rc) {
        char line[300];
        snprintf(line, sizeof line, "round %d: mean combined reward %.4g of %d candidates, %zu "
                 "pairs", round, mean[NH], o->np * N, *n_pairs);
        progress_log(&o->h->progress, line);
    }
    base_strv_free(path, (size_t)N);
    free(score);
    free(csv);
    free(dir);
    return rc;
}

static char *extra_json(const TuneConfig *c) {
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    /* not the rounds: a run may be given more rounds to continue */
    fprintf(f, "{\"online\": true, \"candidates\": %d, \"steps_per_round\": %d, "
            "\"guidance\": %.9g, \"candidate_steps\": %d, \"aspect_weights\": \"",
            c->candidates, c->steps_per_round, c->guidance, c->sample_steps);
    for (const char *p = c->aspect_weights; *p; p++)
        if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
            fputc(*p, f);
    fprintf(f, "\", \"prompts\": \"");
    for (const char *p = c->prompts; *p; p++)
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if ((unsigned char)*p >= 0x20)
            fputc(*p, f);
    fprintf(f, "\"}");
    fclose(f);
    return s;
}

int tune_online_run(Store *st, const TuneConfig *c, const TuneHooks *h, Err *err) {
    static const TuneHooks none = {0};
    Online o = {0};
    o.c = c;
    o.h = h ? h : &none;
    o.st = st;
    int rc = read_prompts(c->prompts, &o.pr, &o.np, err);
    if (!rc && c->aspect_weights[0]) {
        rc = tune_online_aspect_weights(c->aspect_weights, o.w, err);
        o.user_w = 1;
    }
    o.units = (double)o.np * c->candidates + c->steps_per_round;
    if (!rc)
        rc = tune_int_open(st, c, o.h, &o.run, err);
    if (!rc) {
        TrainDevice dev = {.spec = c->device, .threads = c->threads};
        rc = train_ckpt_open_on(st, c->reward, &dev, &o.rm, err);
        if (!rc && dev.note[0]) {
            if (o.h->device_note)
                o.h->device_note(o.h->progress.user, dev.note);
            else
                progress_log(&o.h->progress, dev.note);
        }
    }
    int start = 0, K = c->steps_per_round, began = 0;
    if (!rc) {
        char *x = extra_json(c);
        rc = tune_int_begin(o.run, x, &start, err);
        free(x);
        began = !rc;
    }
    if (!rc && start % K)
        rc = err_set(err, ERR_USAGE, "%s/checkpoint-%d is not the end of a round of %d steps: "
                     "give the --steps-per-round it was run with", c->out, start, K);
    if (!rc && start > 0) {
        char line[160];
        snprintf(line, sizeof line, "tune: resuming %s after round %d", c->out, start / K);
        progress_log(&o.h->progress, line);
    }
    int total = c->rounds * K;
    for (int round = start / K + 1; !rc && round <= c->rounds; round++) {
        char **pw = NULL, **pl = NULL, **pp = NULL;
        size_t n = 0;
        rc = round_candidates(&o, round, &pw, &pl, &pp, &n, err);
        if (!rc && n)
            rc = tune_int_set_pairs(o.run, n, pw, pl, pp, err);
        if (!rc && !n)
            progress_log(&o.h->progress, "tune: no pairs this round (every prompt's candidates "
                         "tie): no steps");
        for (int k = 0; !rc && n && k < K; k++) {
            int s = (round - 1) * K + k + 1;
            if (progress_cancelled(&o.h->progress)) {
                rc = err_set(err, ERR_CANCELLED, "tune: cancelled in round %d", round);
                break;
            }
            TuneStepMetrics m;
            rc = tune_int_step(o.run, s, &m, err);
            if (rc == ERR_CANCELLED)
                err_set(err, ERR_CANCELLED, "tune: cancelled in round %d", round);
            if (!rc && k == K - 1) {
                char name[32];
                snprintf(name, sizeof name, "checkpoint-%d", s);
                rc = tune_int_save(o.run, name, s, err);
            }
            if (!rc && o.h->after_step)
                o.h->after_step(o.h->progress.user, s, total, k == K - 1, &m);
            report(&o, round, (double)o.np * c->candidates + k + 1);
        }
        if (!rc && !n) {
            char name[32];
            snprintf(name, sizeof name, "checkpoint-%d", round * K);
            rc = tune_int_save(o.run, name, round * K, err);
        }
        base_strv_free(pw, n), base_strv_free(pl, n), base_strv_free(pp, n);
    }
    if (!rc)
        rc = tune_int_save(o.run, "final", total, err);
    if (began)
        tune_int_end(o.run, rc);
    if (rc == ERR_CANCELLED)
        err_set(err, ERR_CANCELLED, "tune: cancelled; run again with the same --out to resume "
                "after the last complete round");
    train_ckpt_free(o.rm);
    tune_int_close(o.run);
    for (int k = 0; k < o.np; k++)
        free(o.pr[k].id), free(o.pr[k].text);
    free(o.pr);
    return rc;
}
