/* cli_tune — `easel tune`: the `tune` job kind (src/app/jobkinds_tune.h) in the foreground,
 * its parameters as flags, with a progress line (step, loss, accuracy, ETA) on stderr and
 * Ctrl-C stopping within a step with a checkpoint kept; or --queue to add it as a job. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "cli.h"
#include "cli_device.h"
#include "cli_escape.h"
#include "cli_kindcmd.h"
#include "jobkinds_tune.h"
#include "jobs.h"
#include "store.h"

static volatile sig_atomic_t tune_interrupted;

static void tune_on_sigint(int sig) {
    (void)sig;
    tune_interrupted = 1;
}

typedef struct TuneLine {
    int tty;
    double t0, last;
    int first_step;     /* the first step this process ran (a resumed run starts later) */
    TuneStepMetrics m;  /* the last step's */
    int have_m;
    double first_round; /* online16: the round progress this process started at */
} TuneLine;

static void tl_print(TuneLine *l, const char *line) {
    if (l->tty) {
        cli_escape_raw(stderr, "\r\033[K");
        fputs(line, stderr);
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

static void tl_progress(void *user, double done, double total, const char *unit) {
    TuneLine *l = user;
    double now = base_now();
    if (!l->tty && now - l->last < 10 && done < total)
        return; /* not a terminal: a line every 10 s */
    l->last = now;
    char line[200];
    if (strcmp(unit, "rounds") == 0) { /* online16: the online loop's fractional rounds */
        char eta[48] = "";
        if (l->first_step == 0)
            l->first_step = 1, l->t0 = now, l->first_round = done;
        double ran = done - l->first_round;
        if (ran > 0 && total > done) {
            double left = (now - l->t0) / ran * (total - done);
            snprintf(eta, sizeof eta, ", ETA %dm%02ds", (int)(left / 60), (int)left % 60);
        }
        snprintf(line, sizeof line, "  round %.2f/%.0f: loss %.4g, acc %.2f, margin %.3g%s",
                 done, total, l->m.loss, l->m.acc, l->m.margin, eta);
    } else if (strcmp(unit, "steps") != 0) {
        snprintf(line, sizeof line, "  encoding %s %.0f/%.0f", unit, done, total);
    } else {
        char eta[48] = "";
        if (l->first_step == 0)
            l->first_step = (int)done, l->t0 = now;
        double ran = done - l->first_step;
        if (ran > 0 && total > done) {
            double left = (now - l->t0) / ran * (total - done);
            snprintf(eta, sizeof eta, ", ETA %dm%02ds", (int)(left / 60), (int)left % 60);
        }
        snprintf(line, sizeof line, "  step %.0f/%.0f: loss %.4g, acc %.2f, margin %.3g, "
                 "%.2f pairs/s%s", done, total, l->m.loss, l->m.acc, l->m.margin,
                 l->m.pairs_per_s, eta);
    }
    tl_print(l, line);
}

static void tl_step(void *user, int step, int total, int ck, const TuneStepMetrics *m) {
    (void)step, (void)total, (void)ck;
    TuneLine *l = user;
    l->m = *m;
    l->have_m = 1;
}

static int tl_cancelled(void *user) {
    (void)user;
    return tune_interrupted;
}

static void tl_log(void *user, const char *line) {
    TuneLine *l = user;
    if (l->tty)
        cli_escape_raw(stderr, "\r\033[K");
    fprintf(stderr, "easel: %s\n", line);
}

static void tl_note(void *user, const char *note) {
    (void)user;
    cli_device_note(note);
}

static void tune_usage(void) {
    printf("usage: easel [--db PATH] tune --model NAME|PATH (--pairs FILE | --from-store\n"
           "                [--aspect NAME | --reward CKPT]) --out DIR\n"
           "                [--objective dpo|dspo|adpo] [--adapter lora|dora]\n"
           "                [--device auto|cpu|cuda[:N]] [--rank 8]\n"
           "                [--alpha 32] [--targets LIST] [--beta B] [--lr LR] [--steps N]\n"
           "                [--batch N] [--accum N] [--seed N] [--save-every N] [--size WxH]\n"
           "                [--warmup N] [--optimizer adamw|adafactor]\n"
           "                [--checkpointing auto|on|off] [--queue]\n"
           "       easel tune --model NAME|PATH --online --reward CKPT --prompts FILE --out DIR\n"
           "                [--candidates 4] [--rounds R] [--steps-per-round K]\n"
           "                [--aspect-weights spatial=1,style=2,...] [...]\n\n"
           "Fine-tune a Stable Diffusion / SDXL model's UNet with a LoRA or DoRA adapter so that\n"
           "it prefers the preferred image of each pair: Diffusion-DPO (dpo), DSPO (dspo) or\n"
           "ADPO (adpo: the image under its own prompt against another prompt), against the\n"
           "same UNet with the adapter off. Writes DIR/metrics.jsonl (one line per step),\n"
           "DIR/checkpoint-N/ and DIR/final/ (the adapter as PEFT / diffusers files,\n"
           "pytorch_lora_weights.safetensors and adapter_config.json; optimizer state),\n"
           "DIR/samples/step-N/*.png, and a 'tune' run in the store (the Monitor shows it).\n"
           "Run it again on the same DIR to resume from its newest checkpoint; Ctrl-C stops\n"
           "within a step and keeps a checkpoint.\n"
           "--online: each round generates --candidates images per prompt with the current\n"
           "adapter (DIR/round-R/ID/SEED.png), scores them with the reward model's five heads,\n"
           "trains on the best vs the worst of each prompt; per-head mean rewards per round\n"
           "go to the Monitor (a checkpoint per round; a rerun resumes after the last one).\n\n"
           "options:\n");
    for (const JobParamSpec *p = jobkind_tune.params; p->name; p++)
        printf("  --%-15s %s%s%s%s\n", p->name, p->help,
               p->def && p->def[0] && p->type != JOB_PARAM_BOOL ? " (default " : "",
               p->def && p->def[0] && p->type != JOB_PARAM_BOOL ? p->def : "",
               p->def && p->def[0] && p->type != JOB_PARAM_BOOL ? ")" : "");
    printf("  --queue           add a tune job instead (runs in 'easel worker' or the TUI)\n\n"
           "examples:\n"
           "  easel tune --model sdxl --pairs data/pairs.jsonl --out runs/dpo\n"
           "  easel tune --model sd15 --from-store --reward runs/rm/best --objective dspo \\\n"
           "      --adapter dora --steps 1000 --out runs/dspo\n"
           "  easel tune --model sd15 --online --reward runs/rm/best --prompts prompts.csv \\\n"
           "      --candidates 4 --rounds 20 --steps-per-round 10 --out runs/online\n"
           "See doc/tuning.md.\n");
}

int cli_tune_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        tune_usage();
        return 0;
    }
    const char **names = xcalloc((size_t)argc + 1, sizeof *names);
    const char **values = xcalloc((size_t)argc + 1, sizeof *values);
    int n = 0, rc = 2, queue = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--queue") == 0) {
            queue = 1;
            continue;
        }
        if (strcmp(a, "--from-store") == 0 || strcmp(a, "--online") == 0) { /* switches */
            names[n] = a + 2;
            values[n++] = "true";
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            rc = cli_unexpected("tune", a, NULL);
            goto out;
        }
        const char *name = a + 2;
        if (!cli_kind_param(&jobkind_tune, name)) {
            rc = cli_kind_unknown("tune", &jobkind_tune, a,
                                  (const char *const[]){"--queue", NULL});
            goto out;
        }
        if (i + 1 >= argc) {
            cli_error("tune: %s needs a value (see 'easel tune --help')", a);
            goto out;
        }
        const char *val = argv[++i];
        if (strcmp(name, "device") == 0 && (rc = cli_device_check("tune", val)))
            goto out;
        names[n] = name;
        values[n++] = val;
    }
    Err err = {0};
    JobParams *p = NULL;
    Store *st = NULL;
    if ((rc = cli_kind_open(g, &jobkind_tune, n, names, values, &p, &st)))
        goto out;
    TuneConfig cfg;
    rc = tune_job_config(st, p, &cfg, &err);
    if (rc) {
        rc = cli_fail(&err);
    } else if (queue) {
        rc = cli_kind_queue(st, p, "tune");
    } else {
        TuneLine line = {.tty = isatty(2), .t0 = base_now()};
        TuneHooks h = {0};
        h.progress = (Progress){tl_progress, tl_cancelled, tl_log, &line};
        h.after_step = tl_step;
        h.device_note = tl_note;
        tune_interrupted = 0;
        signal(SIGINT, tune_on_sigint);
        rc = tune_run(st, &cfg, &h, &err);
        signal(SIGINT, SIG_DFL);
        if (line.tty)
            cli_escape_raw(stderr, "\r\033[K");
        if (rc == ERR_CANCELLED) {
            cli_error("%s", err.msg);
            rc = 130;
        } else if (rc) {
            rc = cli_fail(&err);
        } else {
            printf("%s/final/pytorch_lora_weights.safetensors", cfg.out);
            if (line.have_m)
                printf(" (step %d: loss %.4g, acc %.2f, margin %.4g)",
                       cfg.online ? cfg.rounds * cfg.steps_per_round : cfg.steps, line.m.loss,
                       line.m.acc, line.m.margin);
            printf("\n");
        }
    }
    job_params_free(p);
    store_close(st);
out:
    free(names);
    free(values);
    return rc;
}
