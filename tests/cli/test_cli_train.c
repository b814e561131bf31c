/* Tests of `easel train/eval/score/runs` as a user runs them: bad flags and missing inputs
 * give clear messages and exit codes and leave the store as it was; `runs` prints what the
 * store holds. Runs bin/easel (skipped with the reason if it is not built). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "store_runs.h"
#include "support.h"
#include "support_fixtures.h"

static char dir[64];
static char easel[512];
static char out[65536];

/* Run a shell command in DIR; stdout+stderr into out; returns the exit status. */
#define run(...) support_run_buf(dir, out, sizeof out, __VA_ARGS__)

static void setup(void) {
    support_easel_path(easel, sizeof easel);
    support_tmpdir_make(dir, sizeof dir, "clitrain");
    cr_assert_eq(run("%s --db t.db init", easel), 0, "%s", out);
}

static void teardown(void) {
    support_tmpdir_remove(dir);
}

TestSuite(cli_train, .init = setup, .fini = teardown, .timeout = 60);

Test(cli_train, bad_flags_are_usage_errors) {
    cr_assert_eq(run("%s --db t.db train --fusion-method sideways", easel), 2, "%s", out);
    cr_assert(strstr(out, "fusion-method"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --epochs", easel), 2, "%s", out);
    cr_assert(strstr(out, "needs a value"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --bogus 1", easel), 2, "%s", out);
    cr_assert(strstr(out, "unknown option '--bogus'"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --resume", easel), 2, "%s", out);
    cr_assert(strstr(out, "--output"), "%s", out);
    cr_assert_eq(run("%s --db t.db eval x --split sideways", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db t.db runs", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db t.db train --help", easel), 0);
    cr_assert(strstr(out, "--min-rating-diff"), "%s", out);
    cr_assert(strstr(out, "example:"), "%s", out);
}

Test(cli_train, nothing_to_train_names_the_cause_and_what_to_do) {
    cr_assert_eq(run("%s --db t.db train --epochs 1 --output o", easel), 1, "%s", out);
    cr_assert(strstr(out, "no training pairs"), "%s", out);
    cr_assert(strstr(out, "easel import ratings"), "%s", out);
    /* a failed run is recorded as failed, never left running */
    cr_assert_eq(run("%s --db t.db runs list", easel), 0, "%s", out);
    cr_assert(strstr(out, "failed"), "%s", out);
    cr_assert(!strstr(out, "running"), "%s", out);
}

Test(cli_train, eval_and_score_name_a_missing_checkpoint) {
    cr_assert_eq(run("%s --db t.db eval nowhere/best", easel), 1, "%s", out);
    cr_assert(strstr(out, "nowhere/best"), "%s", out);
    cr_assert(strstr(out, "checkpoint"), "%s", out);
    cr_assert_eq(run("%s --db t.db score nowhere/best", easel), 1, "%s", out);
    cr_assert(strstr(out, "nowhere/best"), "%s", out);
    cr_assert_eq(run("%s --db t.db score nowhere/best missing.png", easel), 1, "%s", out);
    cr_assert(strstr(out, "missing.png"), "%s", out);
}

Test(cli_train, runs_list_and_show) {
    char path[128];
    snprintf(path, sizeof path, "%s/t.db", dir);
    Err err = {0};
    Store *st = store_open(path, &err);
    int64_t id;
    cr_assert_eq(store_run_create(st, "r-one", "train-reward", "{\"epochs\":3}", 0, "/x/r-one",
                                  &id, &err), 0);
    StoreMetric m[3] = {{.split = "val", .name = "fidelity_acc", .step = 5, .value = 0.875},
                        {.split = "sys", .name = "epoch", .step = 5, .value = 2},
                        {.split = "train", .name = "loss", .step = 5, .value = 0.25}};
    cr_assert_eq(store_metrics_add(st, id, m, 3, &err), 0);
    cr_assert_eq(store_checkpoint_put(st, id, "best", "/x/r-one/best", 5, 2, NULL, &err), 0);
    store_run_set_state(st, id, "succeeded", &err);
    store_close(st);
    cr_assert_eq(run("%s --db t.db runs list", easel), 0, "%s", out);
    cr_assert(strstr(out, "r-one"), "%s", out);
    cr_assert(strstr(out, "succeeded"), "%s", out);
    cr_assert_eq(run("%s --db t.db runs show r-one", easel), 0, "%s", out);
    cr_assert(strstr(out, "0.8750"), "val fidelity acc:\n%s", out);
    cr_assert(strstr(out, "/x/r-one/best"), "%s", out);
    /* a finished run: --follow prints what there is and returns */
    cr_assert_eq(run("%s --db t.db runs show 1 --follow", easel), 0, "%s", out);
    cr_assert(strstr(out, "val step=5 epoch=0.000 fidelity_acc=0.875"), "%s", out);
    cr_assert(strstr(out, "run r-one succeeded"), "%s", out);
    cr_assert_eq(run("%s --db t.db runs show nope", easel), 1, "%s", out);
    cr_assert(strstr(out, "no run 'nope'"), "%s", out);
}

/* ---- a small workspace the CLI can train on (6 prompts x 3 images of 32x32) ---- */

static void workspace(void) {
    char p[256];
    snprintf(p, sizeof p, "%s/images", dir);
    cr_assert_eq(mkdir(p, 0777), 0);
    FILE *pr = NULL, *ra = NULL;
    snprintf(p, sizeof p, "%s/prompts.csv", dir);
    cr_assert_not_null(pr = fopen(p, "w"));
    snprintf(p, sizeof p, "%s/ratings.csv", dir);
    cr_assert_not_null(ra = fopen(p, "w"));
    fprintf(pr, "prompt_id,prompt\n");
    fprintf(ra, "prompt_id,image_path,spatial_rating,icono_rating,style_rating,"
                "fidelity_rating,material_rating\n");
    unsigned char px[32 * 32 * 3];
    for (int q = 0; q < 6; q++) {
        fprintf(pr, "%d,scene number %d\n", q, q);
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < 32 * 32; i++) { /* brighter image, better rating */
                px[3 * i] = (unsigned char)(40 + 70 * k + (i % 32));
                px[3 * i + 1] = (unsigned char)(30 * q + (i / 32));
                px[3 * i + 2] = (unsigned char)(200 - 50 * k);
            }
            snprintf(p, sizeof p, "%s/images/%d_%d.png", dir, q, k);
            support_png_write(p, 32, 32, px);
            fprintf(ra, "%d,images/%d_%d.png,%d,%d,%d,%d,%d\n", q, q, k, 2 + 3 * k, 8 - 3 * k,
                    2 + 3 * k, 3 + k, 2 + 3 * k);
        }
    }
    fclose(pr);
    fclose(ra);
    cr_assert_eq(run("%s --db t.db import prompts prompts.csv", easel), 0, "%s", out);
    cr_assert_eq(run("%s --db t.db import ratings ratings.csv", easel), 0, "%s", out);
}

Test(cli_train, queue_prints_the_job_id_and_the_worker_logs_each_line_once) {
    workspace();
    char *o = NULL, *e = NULL;
    cr_assert_eq(support_run(dir, &o, &e, "%s --db t.db train --queue --epochs 2 --name q1 "
                             "--threads 1", easel), 0, "%s", e);
    cr_assert_str_eq(o, "1\n", "the id alone on stdout");
    cr_assert(strstr(e, "queued train-reward job #1"), "%s", e);
    free(o);
    free(e);
    cr_assert_eq(run("%s --db t.db worker --until-idle --threads 1", easel), 0, "%s", out);
    const char *lines[] = {"epoch 1/2", "epoch 2/2", "done: best mean F1"};
    for (int i = 0; i < 3; i++) {
        const char *a = strstr(out, lines[i]);
        cr_assert(a, "'%s' in the worker log:\n%s", lines[i], out);
        cr_assert_null(strstr(a + 1, lines[i]), "'%s' printed twice:\n%s", lines[i], out);
    }
    cr_assert_eq(run("%s --db t.db jobs show 1", easel), 0, "%s", out);
    cr_assert(strstr(out, "\"val-fraction\":0.2,") && strstr(out, "\"dropout\":0.1,"),
              "params as typed, not 0.20000000000000001:\n%s", out);
    cr_assert(!strstr(out, "0000000"), "%s", out);
    cr_assert_eq(run("%s --db t.db runs show q1", easel), 0, "%s", out);
    cr_assert(strstr(out, "\"val_fraction\":0.2,"), "%s", out);
    cr_assert(!strstr(out, "0000000"), "%s", out);
}

__attribute__((format(printf, 2, 3))) static int run_in(const char *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = support_vrun_buf(d, out, sizeof out, fmt, ap);
    va_end(ap);
    return rc;
}

Test(cli_train, eval_and_score_take_a_run_name_or_a_path_beside_the_store) {
    workspace();
    cr_assert_eq(run("%s --db t.db train --epochs 4 --save-every 1 --name r1 --threads 1",
                     easel), 0, "%s", out);
    /* the store's folder is not the current one: runs/ lives beside the store */
    char sub[128];
    snprintf(sub, sizeof sub, "%s/elsewhere", dir);
    cr_assert_eq(mkdir(sub, 0777), 0);
    const char *forms[] = {"r1", "runs/r1/best", "runs/r1", "1"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(run_in(sub, "%s --db ../t.db eval %s --threads 1", easel, forms[i]), 0,
                     "eval %s:\n%s", forms[i], out);
        cr_assert(strstr(out, "/runs/r1/best\n"), "eval %s means r1's best:\n%s", forms[i],
                  out);
        cr_assert(strstr(out, "combined"), "%s", out);
    }
    cr_assert_eq(run_in(sub, "%s --db ../t.db score r1 --threads 1", easel), 0, "%s", out);
    cr_assert(strstr(out, "images/0_0.png,"), "%s", out);
    /* a run without best/ falls back to final/, then the newest checkpoint */
    char p[256];
    snprintf(p, sizeof p, "rm -rf %s/runs/r1/best", dir);
    cr_assert_eq(system(p), 0);
    cr_assert_eq(run("%s --db t.db eval r1 --threads 1", easel), 0, "%s", out);
    cr_assert(strstr(out, "/runs/r1/final\n"), "%s", out);
    snprintf(p, sizeof p, "rm -rf %s/runs/r1/final", dir);
    cr_assert_eq(system(p), 0);
    cr_assert_eq(run("%s --db t.db eval r1 --threads 1", easel), 0, "%s", out);
    cr_assert(strstr(out, "/runs/r1/checkpoint-4\n"), "%s", out);
    /* what is none of these says so */
    cr_assert_eq(run("%s --db t.db eval nosuchrun", easel), 1, "%s", out);
    cr_assert(strstr(out, "nosuchrun is not a reward checkpoint folder"), "%s", out);
    cr_assert(strstr(out, "runs list"), "%s", out);
}

Test(cli_train, run_disk_use_and_checkpoint_limit) {
    workspace();
    cr_assert_eq(run("%s --db t.db train --epochs 5 --save-every 1 --name r2 --threads 1",
                     easel), 0, "%s", out);
    char p[256];
    for (int e = 1; e <= 5; e++) {
        snprintf(p, sizeof p, "%s/runs/r2/checkpoint-%d", dir, e);
        cr_assert_eq(access(p, F_OK) == 0, e >= 4, "checkpoint-%d", e);
    }
    cr_assert_eq(run("%s --db t.db runs show r2", easel), 0, "%s", out);
    cr_assert(strstr(out, "\ndisk      "), "%s", out);
    cr_assert(strstr(out, "KiB") || strstr(out, "MiB"), "%s", out);
    cr_assert(strstr(out, "checkpoint-5") && !strstr(out, "checkpoint-3"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --epochs 3 --save-every 1 --save-total-limit 0 "
                     "--name r3 --threads 1", easel), 0, "%s", out);
    snprintf(p, sizeof p, "%s/runs/r3/checkpoint-1", dir);
    cr_assert_eq(access(p, F_OK), 0, "--save-total-limit 0 keeps all");
}

Test(cli_train, unknown_options_say_what_was_meant_and_numbers_must_fit) {
    cr_assert_eq(run("%s --db t.db train --epoch 3", easel), 2, "%s", out);
    cr_assert(strstr(out, "did you mean '--epochs'"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --save-total 3", easel), 2, "%s", out);
    cr_assert(strstr(out, "did you mean '--save-total-limit'"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --epochs 99999999999", easel), 2, "%s", out);
    cr_assert(strstr(out, "--epochs 99999999999"), "%s", out);
    cr_assert_eq(run("%s --db t.db train --seed 1x", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db t.db eval x --thread 2", easel), 2, "%s", out);
    cr_assert(strstr(out, "did you mean '--threads'"), "%s", out);
    cr_assert_eq(run("%s --db t.db eval x --threads 99999999999", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db t.db score x --promt a", easel), 2, "%s", out);
    cr_assert(strstr(out, "did you mean '--prompt'"), "%s", out);
    cr_assert_eq(run("%s --db t.db runs show 1 --folow", easel), 2, "%s", out);
    cr_assert(strstr(out, "did you mean '--follow'"), "%s", out);
    /* a queued job is checked as well, when it is queued: a huge value is refused, not
     * wrapped (the worker checks again, for a job row edited since) */
    cr_assert_eq(run("%s --db t.db jobs add train-reward --epochs 99999999999", easel), 2,
                 "%s", out);
    cr_assert(strstr(out, "--epochs 99999999999: expected a whole number from 1 to 100000"),
              "%s", out);
}

/* --device on train, eval, score and their jobs: a bad value is a usage error naming the
 * accepted forms (store unchanged: no run, no job); a cuda request on a machine without a GPU
 * says so in one "easel: " line and runs on the CPU; the run's config records the device;
 * a job with a device other than cpu holds one GPU, a cpu job none. */
Test(cli_train, device_flag_errors_note_and_jobs) {
    const char *cmds[] = {"train --epochs 1", "eval x", "score x", "jobs add train-reward",
                          "jobs add score --checkpoint x", "jobs add eval-reward --checkpoint x"};
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(run("%s --db t.db %s --device gpu0", easel, cmds[i]), 2, "%s:\n%s",
                     cmds[i], out);
        cr_assert(strstr(out, "easel: ") && strstr(out, "'gpu0'") &&
                  strstr(out, "auto, cpu, cuda or cuda:N"), "%s:\n%s", cmds[i], out);
    }
    cr_assert_eq(run("%s --db t.db train --epochs 1 --device cuda:", easel), 2, "%s", out);
    /* checked whole, not as the run config's field would cut it (to a valid cuda:0) */
    cr_assert_eq(run("%s --db t.db jobs add train-reward --device "
                     "cuda:00000000000000000000junk", easel), 2, "%s", out);
    cr_assert_eq(run("%s --db t.db runs list", easel), 0, "%s", out);
    cr_assert(!strstr(out, "train-reward"), "no run was made:\n%s", out);
    cr_assert_eq(run("%s --db t.db jobs list", easel), 0, "%s", out);
    cr_assert(!strstr(out, "train-reward"), "no job was queued:\n%s", out);
    workspace();
    char *o = NULL, *e = NULL;
    cr_assert_eq(support_run(dir, &o, &e, "%s --db t.db train --epochs 1 --name d1 --threads 1 "
                             "--device cuda", easel), 0, "%s", e);
    if (strstr(e, "model on cuda")) { /* a GPU machine: nothing to note */
        cr_assert_null(strstr(e, "running on the CPU"), "%s", e);
    } else {
        const char *note = strstr(e, "easel: cuda: ");
        cr_assert(note && strstr(note, "; running on the CPU\n"), "%s", e);
        cr_assert_null(strstr(note + 1, "easel: cuda: "), "said once:\n%s", e);
        cr_assert(strstr(e, "model on cpu (1 thread)"), "%s", e);
    }
    free(o);
    free(e);
    cr_assert_eq(run("%s --db t.db runs show d1", easel), 0, "%s", out);
    cr_assert(strstr(out, "\"device\":\"cuda\""), "%s", out);
    cr_assert_eq(run("%s --db t.db eval d1 --device cpu --threads 1", easel), 0, "%s", out);
    cr_assert_null(strstr(out, "running on the CPU"), "cpu asked, nothing to note:\n%s", out);
    cr_assert_eq(run("%s --db t.db score d1 --device cpu --threads 1", easel), 0, "%s", out);
    cr_assert(strstr(out, "images/0_0.png,"), "%s", out);
    /* jobs: the GPUs they hold follow the device */
    const char *devs[] = {"cpu", "auto", "cuda:0"};
    const char *want[] = {"(wanted 0)", "(wanted 1)", "(wanted 1)"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(run("%s --db t.db jobs add score --checkpoint runs/d1/best --device %s "
                         "--threads 1",
                         easel, devs[i]), 0, "%s", out);
        int id = atoi(out);
        cr_assert_eq(run("%s --db t.db jobs show %d", easel, id), 0, "%s", out);
        cr_assert(strstr(out, want[i]), "--device %s:\n%s", devs[i], out);
    }
    cr_assert_eq(run("%s --db t.db worker --until-idle --threads 1", easel), 0, "%s", out);
    cr_assert(strstr(out, "model on cpu (1 thread)"), "%s", out);
    cr_assert_null(strstr(out, "failed"), "%s", out);
}

/* eval --json writes the report as JSON (it wrote "(null)" and then crashed in store_close:
 * json_pack was given one integer less than its format asked for, and decref'd a stray word
 * of the stack); its counts are the table's, its heads the CSV's. */
Test(cli_train, eval_json_and_csv_reports) {
    workspace();
    cr_assert_eq(run("%s --db t.db train --epochs 2 --name j1 --threads 1", easel), 0, "%s", out);
    cr_assert_eq(run("%s --db t.db eval j1 --device cpu --threads 1 --json ev.json --csv ev.csv",
                     easel), 0, "%s", out);
    size_t pairs = 0, prefs = 0, images = 0;
    const char *line = strstr(out, "pairs from ");
    cr_assert(line, "%s", out);
    cr_assert_eq(sscanf(strchr(line, ':') + 1, " %zu image pairs, %zu preferences, %zu images",
                        &pairs, &prefs, &images), 3, "%s", out);
    char p[256];
    snprintf(p, sizeof p, "%s/ev.json", dir);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    cr_assert_not_null(j, "ev.json: %s", je.text);
    cr_assert_eq(json_integer_value(json_object_get(j, "n_pairs")), (json_int_t)pairs);
    cr_assert_eq(json_integer_value(json_object_get(j, "n_preferences")), (json_int_t)prefs);
    cr_assert_eq(json_integer_value(json_object_get(j, "n_images")), (json_int_t)images);
    cr_assert(json_is_integer(json_object_get(j, "skipped_images")));
    cr_assert(strstr(json_string_value(json_object_get(j, "checkpoint")), "runs/j1/best"));
    json_t *heads = json_object_get(j, "heads");
    cr_assert_eq(json_object_size(heads), 6);
    snprintf(p, sizeof p, "%s/ev.csv", dir);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f);
    char row[256];
    cr_assert_not_null(fgets(row, sizeof row, f)); /* the header */
    int rows = 0;
    while (fgets(row, sizeof row, f)) {
        char name[32];
        double acc;
        size_t n;
        cr_assert_eq(sscanf(row, "%31[^,],%lf,%*f,%*f,%zu", name, &acc, &n), 3, "%s", row);
        json_t *h = json_object_get(heads, name);
        cr_assert_not_null(h, "head %s in the JSON", name);
        cr_assert_float_eq(json_real_value(json_object_get(h, "accuracy")), acc, 1e-6);
        cr_assert_eq(json_integer_value(json_object_get(h, "sample_count")), (json_int_t)n);
        rows++;
    }
    fclose(f);
    cr_assert_eq(rows, 6);
    json_decref(j);
    /* the eval run's config says where it ran (it named only the checkpoint and the pairs) */
    snprintf(p, sizeof p, "%s/t.db", dir);
    Store *st = store_open(p, NULL);
    cr_assert_not_null(st);
    StoreRun *runs = NULL;
    size_t n_runs = 0;
    cr_assert_eq(store_runs_list(st, "eval-reward", &runs, &n_runs, NULL), 0);
    cr_assert_eq(n_runs, 1);
    json_t *cfg = json_loads(runs[0].config, 0, &je);
    cr_assert_not_null(cfg, "%s", runs[0].config);
    cr_assert_str_eq(json_string_value(json_object_get(cfg, "device")), "cpu", "%s",
                     runs[0].config);
    const char *dn = json_string_value(json_object_get(cfg, "device_name"));
    cr_assert(dn && strstr(dn, "cpu"), "%s", runs[0].config);
    json_decref(cfg);
    store_runs_free(runs, n_runs);
    store_close(st);
    /* a pairs file that is not there: the message says why, as train's does */
    cr_assert_eq(run("%s --db t.db eval j1 --device cpu --pairs nothere.jsonl", easel), 1, "%s",
                 out);
    cr_assert(strstr(out, "nothere.jsonl: cannot open the pairs file: No such file or directory"),
              "%s", out);
}

/* The usage lines at the top of --help name --device on train as on eval and score (train's
 * left it to the option list below). */
Test(cli_train, usage_lines_name_the_device_flag) {
    const char *cmds[] = {"train", "eval", "score"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(run("%s %s --help", easel, cmds[i]), 0, "%s", out);
        char *end = strstr(out, "\n\n"); /* the usage block ends at the first blank line */
        cr_assert_not_null(end, "%s", out);
        *end = '\0';
        cr_assert(strstr(out, "[--device auto|cpu|cuda|cuda:N]"), "%s --help:\n%s", cmds[i],
                  out);
    }
}
