/* cli_generate — `easel generate`: the `generate` job kind (src/app/jobkinds_gen.h) in the
 * foreground, its parameters as flags, with a progress line (image, step, ETA) on stderr and
 * Ctrl-C stopping within a step; or --queue to add it as a job. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "cli.h"
#include "cli_device.h"
#include "cli_escape.h"
#include "cli_kindcmd.h"
#include "jobkinds_gen.h"
#include "jobs.h"
#include "store.h"
#include "store_jobs.h"

static volatile sig_atomic_t gen_interrupted;

static void gen_on_sigint(int sig) {
    (void)sig;
    gen_interrupted = 1;
}

typedef struct GenLine {
    int tty;
    int steps;
    double t0, last;
    int finished; /* the last line was printed */
} GenLine;

static void gl_progress(void *user, double done, double total, const char *unit) {
    (void)unit;
    GenLine *l = user;
    double now = base_now();
    if (l->finished || (!l->tty && now - l->last < 10 && done < total))
        return; /* not a terminal: a line every 10 s */
    l->finished = total > 0 && done >= total;
    l->last = now;
    int image = (int)done;
    int step = (int)((done - image) * l->steps + 0.5);
    char eta[64] = "";
    if (done > 0.01 && total > done) {
        double left = (now - l->t0) / done * (total - done);
        snprintf(eta, sizeof eta, ", ETA %dm%02ds", (int)(left / 60), (int)left % 60);
    }
    char line[160];
    if (image < (int)total)
        snprintf(line, sizeof line, "  image %d/%.0f, step %d/%d (%.0f%%)%s", image + 1, total,
                 step, l->steps, total > 0 ? 100.0 * done / total : 0.0, eta);
    else
        snprintf(line, sizeof line, "  %.0f/%.0f images (100%%)", total, total);
    if (l->tty) {
        cli_escape_raw(stderr, "\r\033[K");
        fputs(line, stderr);
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

static int gl_cancelled(void *user) {
    (void)user;
    return gen_interrupted;
}

static void gl_log(void *user, const char *line) {
    GenLine *l = user;
    if (l->tty)
        cli_escape_raw(stderr, "\r\033[K");
    fprintf(stderr, "easel: %s\n", line);
}

static void generate_usage(void) {
    printf("usage: easel [--db PATH] generate [--model NAME|PATH] (--prompts FILE | --from-store\n"
           "                | --prompt TEXT) [--seeds 0,1 | --seed N] [--steps 50]\n"
           "                [--guidance 7.5] [--size WxH] [--scheduler NAME] [--negative TEXT]\n"
           "                [--lora FILE|DIR[:SCALE]]... [--rng torch-cpu|torch-cuda]\n"
           "                [--latents FILE] [--out DIR] [--device auto|cpu|cuda[:N]]\n"
           "                [--shard K/N] [--gpus N] [--dtype auto|f32|f16|bf16]\n"
           "                [--tokenizer DIR] [--prediction model|epsilon|v] [--queue]\n\n"
           "Generate one image per prompt and seed with a Stable Diffusion or SDXL model, as\n"
           "diffusers does for the same seed: {out}/{prompt_id}/{seed}.png, the original's\n"
           "metadata.csv (prompt_id,seed,path,prompt,width,height,num_inference_steps,\n"
           "guidance_scale) and rows in the store's images table with the settings, ready to\n"
           "annotate. Images already there are kept when they decode (run it again to\n"
           "resume); a prompt that fails is reported, written to failed.csv and skipped.\n"
           "Ctrl-C stops within a step; no half-written image is left.\n\n"
           "options:\n");
    cli_kind_options(&jobkind_generate, NULL);
    printf("  --seed N       one seed (same as --seeds N)\n"
           "  --queue        add a generate job instead (runs in 'easel worker' or the TUI)\n"
           "  --gpus N       use at most N GPUs (default: every GPU; --device cuda:N: one)\n\n"
           "--device auto or cuda runs one worker on each GPU of the machine, pulling the next\n"
           "image from one queue (a slow or failing GPU does not hold the others back), and\n"
           "adds the multi-GPU layout's gpu_id column to metadata.csv; an image is the same\n"
           "whichever GPU made it.\n\n"
           "--shard K/N generates only the K-th of N slices of the prompt x seed list (item i\n"
           "when i mod N = K-1), writing metadata-K-of-N.csv: N processes on N machines or\n"
           "GPUs write exactly the full set into one shared folder; then\n"
           "'easel import generated DIR' merges their CSVs into the store.\n\n"
           "examples:\n"
           "  easel models add diffusion ~/models/stable-diffusion-xl-base-1.0 --name sdxl\n"
           "  easel generate --model sdxl --prompts data/prompts.csv --out data/images\n"
           "  easel generate --prompt 'a red cube on a blue sphere' --seed 7 --steps 30\n"
           "  easel generate --model sd_xl_base_1.0.safetensors --tokenizer clip-vit-large/ \\\n"
           "      --prompt 'a red fox' --steps 30    (a single-file checkpoint, doc/models.md)\n"
           "See doc/generate.md.\n");
}

int cli_generate_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        generate_usage();
        return 0;
    }
    const char **names = xcalloc((size_t)argc + 2, sizeof *names);
    const char **values = xcalloc((size_t)argc + 2, sizeof *values);
    char *loras = NULL;
    int n = 0, rc = 2, queue = 0, seed_given = 0, seeds_given = 0;
    long long max_gpus = 0; /* gpus15: --gpus N, at most N GPUs (0: every one) */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--queue") == 0) {
            queue = 1;
            continue;
        }
        if (strcmp(a, "--gpus") == 0) { /* gpus15: not a job parameter but the job's option */
            if (i + 1 >= argc) {
                cli_error("generate: --gpus needs a value (see 'easel generate --help')");
                goto out;
            }
            if (cli_parse_long("generate", "--gpus", argv[++i], 1, 4096, &max_gpus))
                goto out;
            continue;
        }
        if (strcmp(a, "--from-store") == 0) {
            names[n] = "from-store";
            values[n++] = "true";
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            rc = cli_unexpected("generate", a, NULL);
            goto out;
        }
        const char *name = a + 2;
        if (strcmp(name, "seed") != 0 && !cli_kind_param(&jobkind_generate, name)) {
            rc = cli_kind_unknown("generate", &jobkind_generate, a,
                                  (const char *const[]){"--seed", "--queue", "--gpus", NULL});
            goto out;
        }
        if (i + 1 >= argc) {
            cli_error("generate: %s needs a value (see 'easel generate --help')", a);
            goto out;
        }
        const char *val = argv[++i];
        if (strcmp(name, "lora") == 0) {
            if (strchr(val, ',')) {
                cli_error("generate: --lora %s: give one FILE[:SCALE] per --lora (a path "
                          "with ',' cannot be used)", val);
                goto out;
            }
            char *j = loras ? xasprintf("%s,%s", loras, val) : xstrdup(val);
            free(loras);
            loras = j;
            continue;
        }
        if (strcmp(name, "seed") == 0) {
            long long v;
            if (cli_parse_long("generate", "--seed", val, 0, INT64_MAX, &v))
                goto out;
            seed_given = 1;
            name = "seeds";
        } else if (strcmp(name, "seeds") == 0) {
            seeds_given = 1;
        } else if (strcmp(name, "steps") == 0) {
            long long v;
            if (cli_parse_long("generate", "--steps", val, 1, 1000, &v))
                goto out;
        } else if (strcmp(name, "device") == 0 && (rc = cli_device_check("generate", val))) {
            goto out;
        }
        names[n] = name;
        values[n++] = val;
    }
    if (seed_given && seeds_given) {
        cli_error("generate: give --seed N or --seeds LIST, not both");
        goto out;
    }
    if (loras) {
        names[n] = "lora";
        values[n++] = loras;
    }
    Err err = {0};
    JobParams *p = NULL;
    Store *st = NULL;
    if ((rc = cli_kind_open(g, &jobkind_generate, n, names, values, &p, &st)))
        goto out;
    if (queue) {
        JobNew jn = {.gpus_wanted = JOB_GPUS_OF_KIND};
        if (max_gpus) { /* at most N of what the device asks for (every GPU for auto) */
            int want = jobkind_generate.gpus_for(p);
            jn.gpus_wanted = want == JOBKIND_GPUS_ALL || want > max_gpus ? (int)max_gpus : want;
        }
        int64_t id = 0;
        rc = jobs_add(st, p, &jn, &id, &err);
        if (rc) {
            rc = cli_fail(&err);
        } else {
            printf("%lld\n", (long long)id);
            fprintf(stderr, "queued generate job #%lld; it runs in any 'easel worker' or TUI "
                    "on this store\n", (long long)id);
        }
        job_params_free(p);
        store_close(st);
        goto out;
    }
    GenLine line = {.tty = isatty(2), .steps = (int)job_param_int(p, "steps"),
                    .t0 = base_now()};
    Progress pr = {gl_progress, gl_cancelled, gl_log, &line};
    gen_interrupted = 0;
    signal(SIGINT, gen_on_sigint);
    GenRunReport rep;
    rc = gen_job_execute(st, p, (int)max_gpus, &pr, &rep, &err);
    signal(SIGINT, SIG_DFL);
    if (line.tty)
        cli_escape_raw(stderr, "\r\033[K");
    if (rep.metadata)
        printf("%zu images: %zu generated%s, %zu kept, %zu failed; %zu added to the store; "
               "metadata %s\n", rep.total, rep.generated,
               rep.redone ? " (some redone: did not decode)" : "", rep.kept, rep.failed,
               rep.rows_added, rep.metadata);
    if (rep.failures)
        cli_error("%zu image%s failed (listed with their errors in %s); run the same command "
                  "again to retry them", rep.failed, rep.failed == 1 ? "" : "s", rep.failures);
    if (rc == ERR_CANCELLED) {
        cli_error("%s; run the same command again to continue", err.msg);
        rc = 130;
    } else if (rc) {
        rc = cli_fail(&err);
    } else {
        rc = rep.failed ? 1 : 0;
    }
    gen_run_report_deinit(&rep);
    job_params_free(p);
    store_close(st);
out:
    free(loras);
    free(names);
    free(values);
    return rc;
}
