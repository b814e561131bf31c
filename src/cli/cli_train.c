/* cli_train — `easel train`, `easel eval`, `easel score`, `easel runs`, `easel monitor`.
 *
 * `easel train` runs in the foreground with the original's flags (the train-reward job
 * kind's parameters, see jobkinds_reward.c), or queues a train-reward job with --queue.
 * Ctrl-C stops it after the current step; `easel train --resume --output DIR` continues from
 * the last epoch to the same final weights.
 */
#include "cli.h"
#include "cli_device.h"
#include "cli_escape.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "atomic_file.h"
#include "base.h"
#include "fmt_json.h"
#include "import.h"
#include "jobkinds_reward.h"
#include "jobs.h"
#include "log.h"
#include "store.h"
#include "store_jobs.h"
#include "store_runs.h"
#include "train.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static int cb_cancelled(void *user) {
    (void)user;
    return interrupted;
}

static int tty_err;

/* Is OPT (up to a '=') one of KNOWN? */
static int cli_option_in(const char *opt, const char *const *known) {
    for (int i = 0; known[i]; i++)
        if (strcmp(opt, known[i]) == 0)
            return 1;
    return 0;
}

static void cb_progress(void *user, double done, double total, const char *unit) {
    (void)user;
    if (!tty_err)
        return;
    cli_escape_raw(stderr, "\r");
    if (total > 0)
        fprintf(stderr, "  %.0f/%.0f %s (%.0f%%)   ", done, total, unit, 100.0 * done / total);
    else
        fprintf(stderr, "  %.0f %s   ", done, unit);
}

static void cb_log(void *user, const char *line) {
    (void)user;
    if (tty_err)
        cli_escape_raw(stderr, "\r\033[K");
    fprintf(stderr, "%s\n", line);
}

static void cb_device_note(void *user, const char *note) {
    (void)user;
    cli_device_note(note);
}

/* The CLI's progress line, SIGINT flag and stderr lines. */
static const Progress cli_hooks = {cb_progress, cb_cancelled, cb_log, NULL};

static int import_file(Store *st, ImportKind kind, const char *path) {
    Err err = {0};
    ImportReport rep;
    int rc = import_path(st, kind, path, NULL, &rep, &err);
    if (rc) {
        for (size_t i = 0; i < rep.n_errors && i < 20; i++)
            fprintf(stderr, "easel: %s\n", rep.errors[i]);
        if (rep.n_errors == 0)
            cli_fail(&err);
    } else {
        fprintf(stderr, "imported %s %s: %zu rows (%zu prompts, %zu images, %zu ratings, "
                "%zu pairs added)\n", import_kind_name(kind), path, rep.rows, rep.prompts_added,
                rep.images_added, rep.ratings_added, rep.pairs_added);
    }
    import_report_deinit(&rep);
    return rc;
}

/* ---- easel train ---- */

static void train_usage(void) {
    printf("usage: easel [--db PATH] train [--mode pairs|multihead] [--ratings FILE]\n"
           "                   [--pairs FILE] [--prompts FILE] [--output DIR] [--epochs N]\n"
           "                   [--batch-size N] [--learning-rate LR] [--min-rating-diff D]\n"
           "                   [--fusion-method concat|add|cross_attention] [--save-every N]\n"
           "                   [--encoder NAME] [--objective pairs|regression] [--seed N]\n"
           "                   [--patience N] [--threads N] [--device auto|cpu|cuda|cuda:N]\n"
           "                   [--queue] [--resume]\n\n"
           "Train the five-head reward model (spatial, icono, style, fidelity, material) on the\n"
           "store's data, in the foreground; per-step metrics go to the store (watch them with\n"
           "'easel monitor' or 'easel runs show RUN --follow'). Files given with --prompts,\n"
           "--ratings and --pairs are imported into the store first.\n\n"
           "options (the original's flags first):\n");
    for (const JobParamSpec *p = jobkind_train_reward.params; p->name; p++)
        printf("  --%-18s %s%s%s%s%s%s\n", p->name, p->help, p->choices ? ": " : "",
               p->choices ? p->choices : "", p->def && p->def[0] ? " (default " : "",
               p->def && p->def[0] ? p->def : "", p->def && p->def[0] ? ")" : "");
    printf("  --ratings FILE       import multihead_ratings.csv first\n"
           "  --pairs FILE         import pairs.jsonl first (and train on pairs by default)\n"
           "  --prompts FILE       import prompts.csv first\n"
           "  --queue              add a train-reward job instead of training here\n"
           "  --resume             continue the run in --output after an interruption\n\n"
           "Output: DIR/best/ (best mean per-head validation F1), DIR/checkpoint-N/ (the newest\n"
           "--save-total-limit kept), DIR/final/, each with model.safetensors, config.json and\n"
           "metrics.json. --queue prints the job's id alone on stdout. Ctrl-C stops after the\n"
           "current step; --resume then continues from the last finished epoch.\n\n"
           "example:\n  easel --db data/demo.db train --epochs 30 --output runs/demo\n");
}

/* Flags of `easel train` beyond the train-reward parameters. */
static const char *const train_extra_flags[] = {"ratings", "pairs", "prompts", "queue", "resume",
                                                "help", NULL};

static int train_option_known(const char *name) {
    for (const JobParamSpec *p = jobkind_train_reward.params; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return 1;
    for (int i = 0; train_extra_flags[i]; i++)
        if (strcmp(train_extra_flags[i], name) == 0)
            return 1;
    return 0;
}

static int train_unknown_option(const char *opt) {
    char buf[64][48];
    const char *known[65];
    int n = 0;
    for (const JobParamSpec *p = jobkind_train_reward.params; p->name && n < 56; p++, n++) {
        snprintf(buf[n], sizeof buf[n], "--%s", p->name);
        known[n] = buf[n];
    }
    for (int i = 0; train_extra_flags[i] && n < 64; i++, n++) {
        snprintf(buf[n], sizeof buf[n], "--%s", train_extra_flags[i]);
        known[n] = buf[n];
    }
    known[n] = NULL;
    return cli_unknown_option("train", opt, known);
}

/* The values an integer flag of `easel train` may take (reward_train_config checks the
 * same for queued jobs). */
static void int_range(const char *name, long long *lo, long long *hi) {
    if (train_option_int_range(name, lo, hi) != 0) {
        *lo = 0;
        *hi = 1000000;
    }
}

int cli_train_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        train_usage();
        return 0;
    }
    const char *ratings = NULL, *pairs = NULL, *prompts = NULL;
    int queue = 0, resume = 0, mode_given = 0;
    const char **names = xcalloc((size_t)argc, sizeof *names);
    const char **values = xcalloc((size_t)argc, sizeof *values);
    int n = 0, rc = 2;
    const char *output = NULL;
    int threads_given = 0;
    long threads = 0;
    const char *device = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--queue") == 0) {
            queue = 1;
            continue;
        }
        if (strcmp(a, "--resume") == 0) {
            resume = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            cli_error("train: unexpected argument '%s' (see 'easel train --help')", a);
            goto out;
        }
        const char *name = a + 2, *val;
        if (!train_option_known(name)) {
            rc = train_unknown_option(a);
            goto out;
        }
        if (i + 1 >= argc) {
            cli_error("train: %s needs a value (see 'easel train --help')", a);
            goto out;
        }
        val = argv[++i];
        if (strcmp(name, "ratings") == 0)
            ratings = val;
        else if (strcmp(name, "pairs") == 0)
            pairs = val;
        else if (strcmp(name, "prompts") == 0)
            prompts = val;
        else {
            const JobParamSpec *sp = NULL;
            for (const JobParamSpec *p = jobkind_train_reward.params; p->name; p++)
                if (strcmp(p->name, name) == 0)
                    sp = p;
            ASSERT(sp); /* train_option_known said so */
            if (sp->type == JOB_PARAM_INT) {
                long long lo, hi, v;
                int_range(name, &lo, &hi);
                char what[64];
                snprintf(what, sizeof what, "--%s", name);
                if (cli_parse_long("train", what, val, lo, hi, &v))
                    goto out;
            }
            if (strcmp(name, "mode") == 0)
                mode_given = 1;
            if (strcmp(name, "output") == 0)
                output = val;
            if (strcmp(name, "threads") == 0) {
                threads_given = 1;
                threads = strtol(val, NULL, 10);
            }
            if (strcmp(name, "device") == 0) {
                if ((rc = cli_device_check("train", val)))
                    goto out;
                device = val;
            }
            names[n] = name;
            values[n++] = val;
        }
    }
    if (pairs && !mode_given) {
        names[n] = "mode";
        values[n++] = "pairs";
    }
    Store *st = cli_open_store(g);
    if (!st) {
        rc = 1;
        goto out;
    }
    Err err = {0};
    tty_err = isatty(2);
    if (resume) {
        if (!output) {
            cli_error("train --resume needs --output DIR: the folder of the run to continue");
            rc = 2;
            goto out_close;
        }
        char *js = train_resume_read(output, &err);
        if (!js) {
            rc = cli_fail(&err);
            goto out_close;
        }
        TrainConfig cfg;
        train_config_defaults(&cfg);
        cfg.threads = threads_given ? (int)threads : 0;
        if (device) /* where the run continues; else the run's own device */
            base_strlcpy(cfg.device, device, sizeof cfg.device);
        else
            cfg.device[0] = '\0';
        signal(SIGINT, on_sigint);
        TrainHooks h = {.progress = cli_hooks, .resume = js, .device_note = cb_device_note};
        rc = train_run(st, &cfg, &h, NULL, &err);
        free(js);
        goto finish;
    }
    /* imports first, each all-or-nothing */
    if ((prompts && import_file(st, IMPORT_PROMPTS, prompts)) ||
        (ratings && import_file(st, IMPORT_RATINGS, ratings)) ||
        (pairs && import_file(st, IMPORT_PAIRS, pairs))) {
        rc = 1;
        goto out_close;
    }
    JobParams *p;
    if (job_params_parse(&jobkind_train_reward, n, names, values, &p, &err)) {
        rc = cli_fail(&err);
        goto out_close;
    }
    if (queue) {
        JobNew jn = {0};
        int64_t id = 0;
        rc = jobs_add(st, p, &jn, &id, &err); /* checks the trust rules (trust.h) */
        job_params_free(p);
        if (rc) {
            rc = cli_fail(&err);
            goto out_close;
        }
        /* the id alone on stdout, for scripts: id=$(easel train --queue ...) */
        printf("%lld\n", (long long)id);
        fprintf(stderr, "queued train-reward job #%lld; it runs in any 'easel worker' or TUI "
                "on this store\n", (long long)id);
        rc = 0;
        goto out_close;
    }
    TrainConfig cfg;
    rc = reward_train_config(p, st, &cfg, &err);
    job_params_free(p);
    if (rc) {
        rc = cli_fail(&err);
        goto out_close;
    }
    signal(SIGINT, on_sigint);
    TrainHooks h = {.progress = cli_hooks, .device_note = cb_device_note};
    rc = train_run(st, &cfg, &h, NULL, &err);
    output = cfg.output;
finish:
    signal(SIGINT, SIG_DFL);
    if (rc == ERR_CANCELLED) {
        cli_error("%s; continue with: easel train --resume --output %s", err.msg,
                  output ? output : "DIR");
        rc = 130;
    } else if (rc) {
        rc = cli_fail(&err);
    }
out_close:
    store_close(st);
out:
    free(names);
    free(values);
    return rc;
}

/* ---- easel eval ---- */

int cli_eval_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv) || argc < 2) {
        printf("usage: easel [--db PATH] eval CHECKPOINT|RUN [--pairs FILE] [--json FILE]\n"
               "                  [--csv FILE] [--min-rating-diff D] [--split all|val|train]\n"
               "                  [--threads N] [--device auto|cpu|cuda|cuda:N]\n\n"
               "Evaluate a reward checkpoint on preference pairs: per head and combined, the\n"
               "preference accuracy (score(chosen) strictly greater than score(rejected)), the\n"
               "average margin, the margin standard deviation (population), the sample count\n"
               "and F1. Pairs come from --pairs FILE (pairs.jsonl; images not in the store are\n"
               "encoded on the fly) or are derived from the store's ratings as 'easel export\n"
               "pairs' derives them, optionally only the checkpoint's validation (or training)\n"
               "prompts; both give the same numbers. A pair with an aspect counts for that\n"
               "head, one without (combined) for the combined score. The table goes to stdout.\n"
               "CHECKPOINT is a folder (best/, final/, checkpoint-N/, or a run folder), also\n"
               "relative to the store's folder; RUN a run's name or id (its best checkpoint).\n"
               "--device: " CLI_DEVICE_HELP " (default auto).\n\n"
               "example:\n  easel --db data/demo.db eval demo --split val\n");
        return argc < 2 ? 2 : 0;
    }
    EvalOptions o = {0};
    o.min_rating_diff = 0.5;
    o.split = "all";
    const char *ckpt = NULL, *json = NULL, *csv = NULL;
    int threads = 0;
    const char *device = "auto";
    static const char *const known[] = {"--pairs", "--json", "--csv", "--split",
                                        "--min-rating-diff", "--threads", "--device", "--help",
                                        NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && !cli_option_in(a, known))
            return cli_unknown_option("eval", a, known);
        if (a[0] != '-') {
            if (ckpt) {
                cli_error("eval: one checkpoint at a time (got '%s' and '%s')", ckpt, a);
                return 2;
            }
            ckpt = a;
            continue;
        }
        if (i + 1 >= argc) {
            cli_error("eval: %s needs a value (see 'easel eval --help')", a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--pairs") == 0)
            o.pairs_file = v;
        else if (strcmp(a, "--json") == 0)
            json = v;
        else if (strcmp(a, "--csv") == 0)
            csv = v;
        else if (strcmp(a, "--split") == 0) {
            if (strcmp(v, "all") && strcmp(v, "val") && strcmp(v, "train")) {
                cli_error("eval: --split must be all, val or train, not '%s'", v);
                return 2;
            }
            o.split = v;
        } else if (strcmp(a, "--min-rating-diff") == 0) {
            char *end;
            o.min_rating_diff = strtod(v, &end);
            if (*end || !(o.min_rating_diff >= 0)) {
                cli_error("eval: --min-rating-diff needs a number >= 0, got '%s'", v);
                return 2;
            }
        } else if (strcmp(a, "--threads") == 0) {
            long long t;
            if (cli_parse_long("eval", "--threads", v, 0, 4096, &t))
                return 2;
            threads = (int)t;
        } else if (strcmp(a, "--device") == 0) {
            if (cli_device_check("eval", v))
                return 2;
            device = v;
        }
    }
    if (!ckpt) {
        cli_error("eval: which checkpoint? (e.g. easel eval runs/demo/best)");
        return 2;
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    tty_err = isatty(2);
    o.progress = (Progress){cb_progress, cb_cancelled, NULL, NULL};
    signal(SIGINT, on_sigint);
    Err err = {0};
    EvalReport r;
    TrainDevice dev = {.spec = device, .threads = threads};
    int rc = reward_eval(st, ckpt, &o, &dev, json, csv, &r, &err);
    signal(SIGINT, SIG_DFL);
    cli_device_note(dev.note);
    if (tty_err)
        cli_escape_raw(stderr, "\r\033[K");
    if (rc == 0) {
        if (r.skipped.n) {
            char why[900];
            train_skipped_text(&r.skipped, why, sizeof why);
            cli_error("warning: %s", why);
        }
        reward_eval_print(stdout, ckpt, &r);
    } else {
        rc = cli_fail(&err);
    }
    store_close(st);
    return rc;
}

/* ---- easel score ---- */

int cli_score_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv) || argc < 2) {
        printf("usage: easel [--db PATH] score CHECKPOINT|RUN [IMAGE|FOLDER ...] [--prompt TEXT]\n"
               "                   [--csv FILE] [--threads N] [--device auto|cpu|cuda|cuda:N]\n\n"
               "Score images with a reward checkpoint: the five heads and the combined score.\n"
               "With no images, every image of the store is scored. Scores of images the store\n"
               "knows are saved in it; all scores are printed as CSV (or written to --csv FILE):\n"
               "image,spatial,icono,style,fidelity,material,combined. Each store image is\n"
               "scored under its own prompt unless --prompt is given. Images that cannot be\n"
               "read are skipped and named in one warning. CHECKPOINT|RUN as for 'easel eval'.\n"
               "--device: " CLI_DEVICE_HELP " (default auto).\n\n"
               "example:\n  easel --db data/demo.db score runs/demo/best data/images/3\n");
        return argc < 2 ? 2 : 0;
    }
    const char *ckpt = NULL, *prompt = NULL, *csv_path = NULL;
    int threads = 0, n = 0;
    char **paths = xcalloc((size_t)argc, sizeof *paths);
    int rc = 2;
    const char *device = "auto";
    static const char *const known[] = {"--prompt", "--csv", "--threads", "--device", "--help",
                                        NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1]) {
            if (!cli_option_in(a, known)) {
                rc = cli_unknown_option("score", a, known);
                goto out;
            }
            if (i + 1 >= argc) {
                cli_error("score: %s needs a value (see 'easel score --help')", a);
                goto out;
            }
            const char *v = argv[++i];
            if (strcmp(a, "--prompt") == 0)
                prompt = v;
            else if (strcmp(a, "--csv") == 0)
                csv_path = v;
            else if (strcmp(a, "--device") == 0) {
                if ((rc = cli_device_check("score", v)))
                    goto out;
                device = v;
            } else { /* --threads */
                long long t;
                if (cli_parse_long("score", "--threads", v, 0, 4096, &t))
                    goto out;
                threads = (int)t;
            }
        } else if (!ckpt) {
            ckpt = a;
        } else {
            if (access(a, R_OK) != 0) {
                cli_error("score: %s: no such image or folder", a);
                rc = 1;
                goto out;
            }
            paths[n++] = argv[i];
        }
    }
    Store *st = cli_open_store(g);
    if (!st) {
        rc = 1;
        goto out;
    }
    FILE *csv = stdout;
    AtomicFile *af = NULL;
    if (csv_path) {
        Err oerr = {0};
        if (atomic_file_open(csv_path, &af, &oerr)) {
            cli_error("score: %s", oerr.msg);
            store_close(st);
            rc = 1;
            goto out;
        }
        csv = atomic_file_stream(af);
    }
    tty_err = isatty(2);
    signal(SIGINT, on_sigint);
    Progress h = {cb_progress, cb_cancelled, NULL, NULL};
    Err err = {0};
    size_t scored = 0;
    TrainSkipped sk;
    TrainDevice dev = {.spec = device, .threads = threads};
    rc = reward_score(st, ckpt, paths, n, prompt, &dev, csv, &h, 0, &scored, &sk, &err);
    signal(SIGINT, SIG_DFL);
    cli_device_note(dev.note);
    if (tty_err)
        cli_escape_raw(stderr, "\r\033[K");
    if (af) {
        if (rc)
            atomic_file_abort(af);
        else
            rc = atomic_file_commit(af, &err);
    }
    if (rc) {
        rc = cli_fail(&err);
    } else {
        if (sk.n) {
            char why[900];
            train_skipped_text(&sk, why, sizeof why);
            cli_error("warning: %s", why);
        }
        fprintf(stderr, "scored %zu images%s%s\n", scored, csv_path ? " into " : "",
                csv_path ? csv_path : "");
    }
    store_close(st);
out:
    free(paths);
    return rc;
}

/* ---- easel runs ---- */

static void fmt_time(double t, char *buf, size_t n) {
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

/* 1536 -> "1.5 KiB". */
static void fmt_bytes(uint64_t n, char *buf, size_t size) {
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%llu bytes", (unsigned long long)n);
    else
        snprintf(buf, size, "%.1f %s", v, unit[u]);
}

static double last_of(Store *st, int64_t id, const char *split, const char *name) {
    double v = NAN;
    store_metric_last(st, id, split, name, &v, NULL, NULL);
    return v;
}

/* V with PREC decimals, or "-" when there is no value. */
static void fmt_num(char *out, size_t n, int prec, double v) {
    if (isfinite(v))
        snprintf(out, n, "%.*f", prec, v);
    else
        snprintf(out, n, "-");
}


static void print_run(Store *st, const StoreRun *r) {
    char t0[32], t1[32];
    fmt_time(r->created_at, t0, sizeof t0);
    fmt_time(r->updated_at, t1, sizeof t1);
    printf("run %s (#%lld)\nkind      %s\nstate     %s\noutput    %s\ncreated   %s\n"
           "updated   %s\n", r->name, (long long)r->id, r->kind, r->state,
           r->output ? r->output : "-", t0, t1);
    if (r->output && strcmp(r->kind, "train-reward") == 0) {
        /* what the run's folder occupies: checkpoints are what fills a disk */
        char sz[32];
        fmt_bytes(train_dir_disk_usage(r->output), sz, sizeof sz);
        printf("disk      %s%s\n", sz, access(r->output, F_OK) == 0 ? "" : " (folder gone)");
    }
    if (r->job_id)
        printf("job       #%lld\n", (long long)r->job_id);
    char *cfg = fmt_json_human(r->config);
    printf("config    %s\n", cfg ? cfg : "-");
    free(cfg);
    double ep = last_of(st, r->id, "sys", "epoch"), eps = last_of(st, r->id, "sys", "epochs");
    double step = last_of(st, r->id, "sys", "step");
    if (isfinite(ep))
        printf("progress  epoch %.2f of %.0f, step %.0f, %.1f pairs/s, elapsed %.0f s%s\n", ep,
               eps, step, last_of(st, r->id, "sys", "pairs_per_s"),
               last_of(st, r->id, "sys", "elapsed_s"),
               strcmp(r->state, "running") == 0 ? "" : "");
    if (strcmp(r->state, "running") == 0 && isfinite(last_of(st, r->id, "sys", "eta_s")))
        printf("eta       %.0f s\n", last_of(st, r->id, "sys", "eta_s"));
    if (strcmp(r->kind, "tune-eval") == 0) { /* issue 16 (mon16): adapter vs base */
        printf("pairs     %.0f (prompt, seed)\n\n%-10s %9s %11s %10s %10s\n",
               last_of(st, r->id, "sys", "pairs"), "head", "win rate", "mean gain", "base",
               "adapter");
        for (int h = 0; h <= TRAIN_N_HEADS; h++) {
            static const char *const what[4] = {"win", "gain", "base", "adapter"};
            char v[4][24];
            for (int k = 0; k < 4; k++) {
                char name[48];
                snprintf(name, sizeof name, "%s_%s", what[k], train_output_name(h));
                double x = last_of(st, r->id, "eval", name);
                fmt_num(v[k], sizeof v[k], k == 0 ? 1 : 4, k == 0 && isfinite(x) ? 100 * x : x);
            }
            printf("%-10s %8s%% %11s %10s %10s\n", train_output_name(h), v[0], v[1], v[2],
                   v[3]);
        }
        return;
    }
    const char *vs = strcmp(r->kind, "eval-reward") == 0 ? "eval" : "val";
    printf("\n%-10s %10s %9s %9s %9s\n", "head", "train_loss", "val_loss",
           strcmp(vs, "eval") == 0 ? "eval_acc" : "val_acc",
           strcmp(vs, "eval") == 0 ? "eval_f1" : "val_f1");
    for (int h = 0; h <= TRAIN_N_HEADS; h++) {
        char n1[48], n2[48], n3[48];
        snprintf(n1, sizeof n1, "%s_loss", train_output_name(h));
        snprintf(n2, sizeof n2, "%s_acc", train_output_name(h));
        snprintf(n3, sizeof n3, "%s_f1", train_output_name(h));
        char a[16], b[16], c[16], d[16];
        fmt_num(a, sizeof a, 4, last_of(st, r->id, "train", n1));
        fmt_num(b, sizeof b, 4, last_of(st, r->id, "val", n1));
        fmt_num(c, sizeof c, 4, last_of(st, r->id, vs, n2));
        fmt_num(d, sizeof d, 4, last_of(st, r->id, vs, n3));
        printf("%-10s %10s %9s %9s %9s\n", train_output_name(h), a, b, c, d);
    }
    StoreCheckpoint *c = NULL;
    size_t nc = 0;
    if (store_checkpoints_list(st, r->id, &c, &nc, NULL) == 0 && nc) {
        printf("\ncheckpoints\n");
        for (size_t i = 0; i < nc; i++)
            printf("  %-14s epoch %-4.0f step %-7lld %s\n", c[i].name, c[i].epoch,
                   (long long)c[i].step, c[i].path);
    }
    store_checkpoints_free(c, nc);
}

/* --follow: one line per (split, step) group of new metrics until the run ends. */
static int follow_run(Store *st, int64_t id) {
    double after = 0;
    signal(SIGINT, on_sigint);
    for (;;) {
        StoreMetric *m = NULL;
        size_t n = 0;
        Err err = {0};
        if (store_metrics_list(st, id, after, &m, &n, &err)) {
            signal(SIGINT, SIG_DFL);
            return cli_fail(&err);
        }
        /* group by (split, step), in step order */
        for (size_t i = 0; i < n; i++)
            if (m[i].t > after)
                after = m[i].t;
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        for (size_t i = 0; i < n; i++) {
            if (m[i].step < lo)
                lo = m[i].step;
            if (m[i].step > hi)
                hi = m[i].step;
        }
        static const char *const splits[] = {"train", "val", "sys"};
        for (int64_t s = lo; n && s <= hi; s++) {
            for (int k = 0; k < 3; k++) {
                int any = 0;
                for (size_t i = 0; i < n; i++) {
                    if (m[i].step != s || strcmp(m[i].split, splits[k]) != 0)
                        continue;
                    if (!any)
                        printf("%s step=%lld epoch=%.3f", splits[k], (long long)s, m[i].epoch);
                    printf(" %s=%.6g", m[i].name, m[i].value);
                    any = 1;
                }
                if (any)
                    printf("\n");
            }
        }
        free(m);
        fflush(stdout);
        StoreRun r = {0};
        if (store_run_get(st, id, &r, NULL) == 0) {
            int done = strcmp(r.state, "running") != 0;
            if (done)
                printf("run %s %s\n", r.name, r.state);
            store_run_deinit(&r);
            if (done)
                break;
        }
        if (interrupted)
            break;
        struct timespec ts = {0, 500 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    signal(SIGINT, SIG_DFL);
    return 0;
}

int cli_runs_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv) || argc < 2) {
        printf("usage: easel [--db PATH] runs list\n"
               "       easel [--db PATH] runs show RUN [--follow]\n\n"
               "Training and evaluation runs of the store. 'show' prints a run's config, progress,\n"
               "the latest per-head metrics and its checkpoints; --follow then prints every new\n"
               "step's metrics as 'SPLIT step=N epoch=E name=value ...' lines until the run\n"
               "ends. RUN is a run name or id.\n\n"
               "example:\n  easel runs show train-20260101-120000 --follow\n");
        return argc < 2 ? 2 : 0;
    }
    static const char *const known_list[] = {"--help", NULL};
    static const char *const known_show[] = {"--follow", "-f", "--help", NULL};
    int is_show = strcmp(argv[1], "show") == 0;
    if (!is_show && strcmp(argv[1], "list") != 0) {
        cli_error("runs: unknown subcommand '%s' (list or show)", argv[1]);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1] && !cli_option_in(a, is_show ? known_show : known_list))
            return cli_unknown_option(is_show ? "runs show" : "runs list", a,
                                      is_show ? known_show : known_list);
        if (!is_show) {
            cli_error("runs list: unexpected argument '%s'", a);
            return 2;
        }
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    int rc = 0;
    if (strcmp(argv[1], "list") == 0) {
        StoreRun *v = NULL;
        size_t n = 0;
        if ((rc = store_runs_list(st, NULL, &v, &n, &err))) {
            rc = cli_fail(&err);
        } else {
            printf("%5s  %-32s %-12s %-10s %7s %8s %8s  %s\n", "id", "name", "kind", "state",
                   "epoch", "val_F1", "best_F1", "updated");
            for (size_t i = 0; i < n; i++) {
                char t[32], e[16], f1[16], b1[16];
                fmt_time(v[i].updated_at, t, sizeof t);
                fmt_num(e, sizeof e, 2, last_of(st, v[i].id, "sys", "epoch"));
                fmt_num(f1, sizeof f1, 4, last_of(st, v[i].id, "val", "mean_f1"));
                fmt_num(b1, sizeof b1, 4, last_of(st, v[i].id, "sys", "best_f1"));
                printf("%5lld  %-32s %-12s %-10s %7s %8s %8s  %s\n", (long long)v[i].id,
                       v[i].name, v[i].kind, v[i].state, e, f1, b1, t);
            }
            if (n == 0)
                printf("(no runs yet: start one with 'easel train')\n");
        }
        store_runs_free(v, n);
    } else if (strcmp(argv[1], "show") == 0) {
        int follow = 0;
        const char *name = NULL;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0)
                follow = 1;
            else if (!name)
                name = argv[i];
            else {
                cli_error("runs show: unexpected argument '%s'", argv[i]);
                rc = 2;
            }
        }
        if (!name && rc == 0) {
            cli_error("runs show: which run? (see 'easel runs list')");
            rc = 2;
        }
        StoreRun r = {0};
        if (rc == 0 && (rc = store_run_find(st, name, &r, &err)))
            rc = cli_fail(&err);
        if (rc == 0) {
            print_run(st, &r);
            if (follow) {
                printf("\n");
                rc = follow_run(st, r.id);
            }
        }
        store_run_deinit(&r);
    } else {
        cli_error("runs: unknown subcommand '%s' (list or show)", argv[1]);
        rc = 2;
    }
    store_close(st);
    return rc;
}

/* ---- easel monitor ---- */

int cli_monitor_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel [--db PATH] monitor [RUN] [--graphics MODE] [--theme NAME]\n"
               "                                  [--plot GLYPHS]\n\n"
               "Open the TUI on the Monitor screen: per-head loss, accuracy and F1 curves of a\n"
               "training run, live while it trains in any process. RUN is a run name or id\n"
               "(default: the newest running run, else the newest run). Keys: l/a/f pages,\n"
               "e smoothing, g log scale, r pick a run, c compare, ? help.\n\n"
               "example:\n  easel --db data/demo.db monitor\n");
        return 0;
    }
    AppConfig cfg = {0};
    cfg.db_path = g->db_path;
    cfg.start_screen = "Monitor";
    cfg.graphics = g->graphics; /* the look, before the command or after it */
    cfg.theme = g->theme;
    cfg.plot = g->plot;
    if (cli_tui_workers(g, &cfg))
        return 2;
    const char *run = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--graphics") == 0 || strcmp(argv[i], "--theme") == 0 ||
             strcmp(argv[i], "--plot") == 0) && i + 1 < argc) {
            const char *o = argv[i++];
            *(strcmp(o, "--graphics") == 0 ? &cfg.graphics
              : strcmp(o, "--theme") == 0  ? &cfg.theme : &cfg.plot) = argv[i];
        } else if (argv[i][0] != '-' && !run)
            run = argv[i];
        else {
            cli_error("monitor: unexpected argument '%s' (see 'easel monitor --help')", argv[i]);
            return 2;
        }
    }
    if (cli_tui_check(&cfg))
        return 2;
    Err err = {0};
    if (run) {
        Store *st = cli_open_store(g);
        if (!st)
            return 1;
        StoreRun r = {0};
        int rc = store_run_find(st, run, &r, &err);
        store_close(st);
        if (rc)
            return cli_fail(&err);
        store_run_deinit(&r);
        cfg.monitor_run = run; /* the Monitor shows it, pinned */
    }
    if (app_run(&cfg, &err))
        return cli_fail(&err);
    return 0;
}
