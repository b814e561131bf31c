/* cli_tune_eval — `easel tune-eval ADAPTER`: the tune-eval job kind (src/app/tune_eval.h) in
 * the foreground, its parameters as flags, a progress line on stderr and Ctrl-C stopping
 * within a step; the table (or --json) on stdout; or --queue to add it as a job. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ab_eval.h"
#include "base.h"
#include "cli.h"
#include "cli_device.h"
#include "cli_escape.h"
#include "cli_kindcmd.h"
#include "jobkinds_reward.h"
#include "store.h"
#include "store_ab.h"
#include "tune_eval.h"

static volatile sig_atomic_t te_interrupted;

static void te_on_sigint(int sig) {
    (void)sig;
    te_interrupted = 1;
}

typedef struct TeLine {
    int tty;
    double last;
} TeLine;

static void te_progress(void *user, double done, double total, const char *unit) {
    TeLine *l = user;
    double now = base_now();
    if (!l->tty && now - l->last < 10 && done < total)
        return; /* not a terminal: a line every 10 s */
    l->last = now;
    const char *phase = total <= 0             ? ""
                        : done < total / 3     ? "base model"
                        : done < 2 * total / 3 ? "adapter"
                                               : "scoring";
    char line[160];
    snprintf(line, sizeof line, "  %s: %.1f/%.0f %s (%.0f%%)", phase, done, total, unit,
             total > 0 ? 100.0 * done / total : 0.0);
    if (l->tty) {
        cli_escape_raw(stderr, "\r\033[K");
        fputs(line, stderr);
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

static int te_cancelled(void *user) {
    (void)user;
    return te_interrupted;
}

static void te_log(void *user, const char *line) {
    TeLine *l = user;
    if (l->tty)
        cli_escape_raw(stderr, "\r\033[K");
    fprintf(stderr, "easel: %s\n", line);
}


static void tune_eval_usage(void) {
    printf("usage: easel [--db PATH] tune-eval ADAPTER --prompts FILE --reward CKPT\n"
           "                [--model NAME|PATH] [--seeds 0,1] [--out DIR] [--json]\n"
           "                [--device auto|cpu|cuda[:N]] [--steps 50] [--guidance 7.5]\n"
           "                [--size WxH] [--scheduler NAME] [--negative TEXT] [--name RUN]\n"
           "                [--queue] [--ab NAME]\n\n"
           "Measure a tuned adapter against its base model: every held-out prompt x seed is\n"
           "generated with and without the adapter from the same seed (DIR/base/{prompt_id}/\n"
           "{seed}.png and DIR/adapter/..., each with metadata.csv and rows in the store),\n"
           "every image is scored with the reward model's five heads and its combined score,\n"
           "and per head the win rate (share of pairs where the adapter's image scores\n"
           "strictly higher; 50%% = no change) and the mean score gain are reported: as a table\n"
           "(or JSON with --json), in DIR/tune-eval.json and DIR/scores.csv, and as a\n"
           "tune-eval run in the store that the Monitor shows. Images already there are kept\n"
           "(run it again to resume). ADAPTER is the tune run's\n"
           "pytorch_lora_weights.safetensors or its folder (FILE:SCALE scales it).\n\n"
           "options:\n");
    cli_kind_options(&jobkind_tune_eval, "adapter");
    printf("  --json         print the report as JSON on stdout\n"
           "  --ab NAME      then make blind A/B set NAME of the pairs for annotators\n"
           "                 ('easel ab judge NAME'; 'easel ab --help')\n"
           "  --queue        add a tune-eval job instead (runs in 'easel worker' or the TUI)\n\n"
           "example:\n"
           "  easel tune-eval runs/tune-1 --model sd15 --prompts heldout.csv --seeds 0,1,2,3 \\\n"
           "      --reward runs/reward/best --out runs/tune-1-eval\n"
           "See doc/tuning.md.\n");
}

int cli_tune_eval_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        tune_eval_usage();
        return 0;
    }
    const char **names = xcalloc((size_t)argc + 2, sizeof *names);
    const char **values = xcalloc((size_t)argc + 2, sizeof *values);
    char *reward = NULL;
    int n = 0, rc = 2, queue = 0, json = 0, have_adapter = 0;
    const char *ab = NULL; /* ab16: --ab NAME */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--ab") == 0) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                cli_error("tune-eval: --ab needs the A/B set's name (see 'easel ab --help')");
                goto out;
            }
            ab = argv[++i];
            continue;
        }
        if (strcmp(a, "--queue") == 0) {
            queue = 1;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            if (have_adapter || a[0] == '-') {
                rc = cli_unexpected("tune-eval", a, NULL);
                goto out;
            }
            names[n] = "adapter";
            values[n++] = a;
            have_adapter = 1;
            continue;
        }
        const char *name = a + 2;
        if (!cli_kind_param(&jobkind_tune_eval, name)) {
            rc = cli_kind_unknown("tune-eval", &jobkind_tune_eval, a,
                                  (const char *const[]){"--json", "--queue", "--ab", NULL});
            goto out;
        }
        if (i + 1 >= argc) {
            cli_error("tune-eval: %s needs a value (see 'easel tune-eval --help')", a);
            goto out;
        }
        const char *val = argv[++i];
        if (strcmp(name, "adapter") == 0) {
            if (have_adapter) {
                cli_error("tune-eval: give the adapter once");
                goto out;
            }
            have_adapter = 1;
        } else if (strcmp(name, "steps") == 0) {
            long long v;
            if (cli_parse_long("tune-eval", "--steps", val, 1, 1000, &v))
                goto out;
        } else if (strcmp(name, "device") == 0 && (rc = cli_device_check("tune-eval", val))) {
            goto out;
        }
        names[n] = name;
        values[n++] = val;
    }
    if (!have_adapter) {
        cli_error("tune-eval: which adapter? give ADAPTER (the tune run's "
                  "pytorch_lora_weights.safetensors or its folder; see 'easel tune-eval "
                  "--help')");
        goto out;
    }
    if (ab && queue) {
        cli_error("tune-eval: --ab makes the A/B set when a foreground run ends; with --queue, "
                  "make it after the job: easel ab add %s --from-eval RUN", ab);
        goto out;
    }
    Store *st = cli_open_store(g);
    if (!st) {
        rc = 1;
        goto out;
    }
    if (ab) { /* the name must be free before the long work starts */
        StoreAbSet s;
        Err e = {0};
        int frc = store_ab_set_find(st, ab, &s, &e);
        store_ab_set_deinit(&s);
        if (frc != ERR_NOTFOUND) {
            if (frc == 0)
                cli_error("tune-eval: --ab %s: an A/B set of that name exists (see 'easel ab "
                          "list'); choose another name", ab);
            else
                cli_fail(&e);
            rc = frc == 0 ? 2 : 1;
            store_close(st);
            goto out;
        }
    }
    /* --reward as `easel score` takes it: a checkpoint or run folder, or a run's name */
    Err err = {0};
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], "reward") != 0)
            continue;
        if (!(reward = reward_checkpoint_resolve(st, values[i], &err))) {
            rc = cli_fail(&err);
            store_close(st);
            goto out;
        }
        values[i] = reward;
    }
    JobParams *p = NULL;
    if (job_params_parse(&jobkind_tune_eval, n, names, values, &p, &err)) {
        rc = cli_fail(&err);
        store_close(st);
        goto out;
    }
    if (queue) {
        rc = cli_kind_queue(st, p, "tune-eval");
        job_params_free(p);
        store_close(st);
        goto out;
    }
    TeLine line = {.tty = isatty(2)};
    Progress pr = {te_progress, te_cancelled, te_log, &line};
    te_interrupted = 0;
    signal(SIGINT, te_on_sigint);
    TuneEvalReport r;
    rc = tune_eval_execute(st, 0, p, &pr, &r, &err);
    signal(SIGINT, SIG_DFL);
    if (line.tty)
        cli_escape_raw(stderr, "\r\033[K");
    if (rc == 0) {
        if (json) {
            char *s = tune_eval_json(&r);
            fputs(s, stdout);
            free(s);
        } else {
            tune_eval_print(stdout, &r);
        }
        if (r.missing)
            cli_error("%zu (prompt, seed) pair%s left out: an image failed (see %s/base/"
                      "failed.csv and %s/adapter/failed.csv)", r.missing,
                      r.missing == 1 ? " was" : "s were", r.out, r.out);
        if (ab) { /* ab16: the pairs as a blind A/B set */
            size_t na = 0;
            if (ab_from_eval(st, ab, r.run_name, 0, NULL, &na, &err)) {
                rc = cli_fail(&err);
                cli_error("the evaluation itself is done; make the set with: easel ab add %s "
                          "--from-eval %s", ab, r.run_name);
            } else {
                cli_error("A/B set %s: %zu pairs for blind judging (easel ab judge %s)", ab,
                          na, ab);
            }
        }
    } else if (rc == ERR_CANCELLED) {
        cli_error("%s; run the same command again to continue (images already made are kept)",
                  err.msg);
        rc = 130;
    } else {
        rc = cli_fail(&err);
    }
    tune_eval_report_deinit(&r);
    job_params_free(p);
    store_close(st);
out:
    free(reward);
    free(names);
    free(values);
    return rc;
}
