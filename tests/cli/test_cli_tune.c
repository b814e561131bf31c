/* test_cli_tune — `easel tune` run as a user would, on the tiny SD pipeline of tests/gen:
 * --help lists the flags, a run writes metrics, checkpoints, the final adapter and a `tune` run
 * in the store; bad flags and bad pairs fail with "easel: " messages (exit 2 / 1) and write
 * nothing; --queue adds a `tune` job, and the job kind runs to the same files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fmt_safetensors.h"
#include "image.h"
#include "store.h"
#include "support.h"

#define MODEL "tests/gen/fixtures/pipeline_sd"

static char tmpdir[64];
static char dbpath[128];
static char pairs[256];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "tunecli");
    snprintf(dbpath, sizeof dbpath, "%s/s.db", tmpdir);
    cr_assert_eq(support_sh("bin/easel --db %s init >/dev/null", dbpath), 0);
    uint8_t px[64 * 64 * 3];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 64 * 64 * 3; i++)
            px[i] = (uint8_t)((k ? 60 : 160) + (i * 13) % 40);
        char p[300];
        snprintf(p, sizeof p, "%s/img%d.png", tmpdir, k);
        Err err = {0};
        cr_assert_eq(image_write_png(p, px, 64, 64, 3, &err), 0, "%s", err.msg);
    }
    support_write_file(tmpdir, "pairs.jsonl",
                       "{\"prompt\": \"a red fox\", \"img_pos\": \"img0.png\", \"img_neg\": "
                       "\"img1.png\", \"label\": 1.0}\n",
                       pairs, sizeof pairs);
}

static void teardown(void) { support_tmpdir_remove(tmpdir); }

TestSuite(tunecli, .init = setup, .fini = teardown, .timeout = 240);

static int run(const char *args, char **out, char **err_out) {
    return support_run(NULL, out, err_out, "bin/easel --db %s %s", dbpath, args);
}

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

Test(tunecli, help_lists_the_flags) {
    char *out, *err;
    cr_assert_eq(run("tune --help", &out, &err), 0);
    const char *flags[] = {"--model", "--pairs", "--from-store", "--objective", "--adapter",
                           "--out", "--device", "--rank", "--alpha", "--targets", "--beta",
                           "--lr", "--steps", "--batch", "--accum", "--seed", "--save-every",
                           "--size", "--warmup", "--optimizer", "--queue", "dpo|dspo|adpo",
                           "lora|dora", "adamw|adafactor", "doc/tuning.md"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        cr_assert(strstr(out, flags[i]), "--help lacks %s:\n%s", flags[i], out);
    free(out), free(err);
    cr_assert_eq(run("--help", &out, &err), 0);
    cr_assert(strstr(out, "tune"), "easel --help does not list tune");
    free(out), free(err);
}

Test(tunecli, a_run_writes_its_folder_and_a_store_run) {
    char args[1024], *out, *err;
    snprintf(args, sizeof args, "tune --model %s --pairs %s --out %s/run --steps 3 "
             "--save-every 2 --device cpu --sample-seeds 0 --sample-steps 2 --lr 1e-3",
             MODEL, pairs, tmpdir);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cr_assert(strstr(out, "/run/final/pytorch_lora_weights.safetensors"), "%s", out);
    free(out), free(err);
    char p[512];
    snprintf(p, sizeof p, "%s/run/metrics.jsonl", tmpdir);
    cr_assert_eq(count_lines(p), 3);
    snprintf(p, sizeof p, "%s/run/checkpoint-2/pytorch_lora_weights.safetensors", tmpdir);
    cr_assert(base_is_file(p));
    snprintf(p, sizeof p, "%s/run/samples/step-3/p0-seed0.png", tmpdir);
    cr_assert(base_is_file(p));
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM runs WHERE kind = 'tune' AND "
                                         "state = 'succeeded'"), 1);
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM metrics WHERE split = 'train' "
                                         "AND name = 'loss'"), 3);
    /* the adapter renders through generate --lora */
    snprintf(args, sizeof args, "generate --model %s --prompt 'a red fox' --seed 1 --steps 2 "
             "--out %s/gen --device cpu --lora %s/run/final/pytorch_lora_weights.safetensors",
             MODEL, tmpdir, tmpdir);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    free(out), free(err);
}

Test(tunecli, bad_flags_and_pairs_are_refused) {
    char args[1024], *out, *err;
    snprintf(args, sizeof args, "tune --model %s --pairs %s --out %s/r --objective kto", MODEL,
             pairs, tmpdir);
    cr_assert_eq(run(args, &out, &err), 2);
    cr_assert(strstr(err, "easel: ") && strstr(err, "dpo|dspo|adpo"), "%s", err);
    free(out), free(err);
    snprintf(args, sizeof args, "tune --model %s --pairs %s", MODEL, pairs);
    cr_assert_eq(run(args, &out, &err), 2);
    cr_assert(strstr(err, "easel: ") && strstr(err, "out"), "%s", err);
    free(out), free(err);
    snprintf(args, sizeof args, "tune --model %s --pairs %s --out %s/r --steps 0", MODEL, pairs,
             tmpdir);
    cr_assert_eq(run(args, &out, &err), 2);
    free(out), free(err);
    snprintf(args, sizeof args, "tune --model %s/nope --pairs %s --out %s/r", tmpdir, pairs,
             tmpdir);
    cr_assert_eq(run(args, &out, &err), 1);
    cr_assert(strstr(err, "neither a registered diffusion model nor a folder"), "%s", err);
    free(out), free(err);
    char bad[256];
    support_write_file(tmpdir, "bad.jsonl",
                       "{\"prompt\": \"a\", \"img_pos\": \"img0.png\", \"img_neg\": "
                       "\"img1.png\"}\n{\"prompt\": \"b\", \"img_pos\": \"img0.png\", "
                       "\"img_neg\": \"missing.png\"}\n",
                       bad, sizeof bad);
    snprintf(args, sizeof args, "tune --model %s --pairs %s --out %s/r --device cpu", MODEL, bad,
             tmpdir);
    cr_assert_eq(run(args, &out, &err), 1);
    cr_assert(strstr(err, "easel: ") && strstr(err, "bad.jsonl:2") && strstr(err, "missing.png"),
              "%s", err);
    free(out), free(err);
    char p[300];
    snprintf(p, sizeof p, "%s/r", tmpdir);
    cr_assert(!base_is_dir(p), "a refused run wrote its folder");
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM runs"), 0);
}

Test(tunecli, queue_adds_a_job_and_the_job_kind_runs) {
    char args[1024], *out, *err, model[300];
    /* a job's paths must be inside the workspace (the trust rules): the model copied there */
    snprintf(model, sizeof model, "%s/model", tmpdir);
    cr_assert_eq(support_sh("cp -r %s %s", MODEL, model), 0);
    snprintf(args, sizeof args, "tune --model %s --pairs %s --out %s/q --steps 2 --device cpu "
             "--queue", model, pairs, tmpdir);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cr_assert(strstr(err, "queued tune job"), "%s", err);
    free(out), free(err);
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM jobs WHERE kind = 'tune'"), 1);
    Err e = {0};
    Store *st = store_open_existing(dbpath, &e);
    cr_assert_not_null(st, "%s", e.msg);
    char outdir[300];
    snprintf(outdir, sizeof outdir, "%s/j", tmpdir);
    const char *names[] = {"model", "pairs", "out", "steps", "save-every", "device",
                           "sample-seeds"};
    const char *values[] = {model, pairs, outdir, "3", "2", "cpu", "none"};
    int64_t id = 0;
    int rc = support_run_job(st, "tune", 7, names, values, 0, &id, &e);
    cr_assert_eq(rc, 0, "%s", e.msg);
    store_close(st);
    char p[400];
    snprintf(p, sizeof p, "%s/final/pytorch_lora_weights.safetensors", outdir);
    cr_assert(base_is_file(p));
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM runs WHERE kind = 'tune' AND "
                                         "job_id IS NOT NULL AND job_id > 0"), 1);
}

/* A registered model's name (resolved only with the store) did not stop the checks of the
 * other flags: with --online the prompts file was reported missing ("--prompts : no such
 * file") whatever was given. */
Test(tunecli, a_registered_model_name_keeps_the_other_checks) {
    char *out = NULL, *err = NULL, args[1024], prompts[256];
    cr_assert_eq(run("models add diffusion " MODEL " --name tiny", &out, &err), 0, "%s", err);
    free(out);
    free(err);
    support_write_file(tmpdir, "prompts.csv", "prompt_id,prompt\np1,a red fox\n", prompts,
                       sizeof prompts);
    snprintf(args, sizeof args, "tune --model tiny --online --reward %s/no-rm --prompts %s "
             "--out %s/on", tmpdir, prompts, tmpdir);
    cr_assert_eq(run(args, &out, &err), 1, "%s", err);
    cr_assert(strstr(err, "--reward") && strstr(err, "no-rm: no such folder"), "%s", err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "tune --model tiny --pairs %s --rank 0 --out %s/o", pairs,
             tmpdir);
    cr_assert_eq(run(args, &out, &err), 2, "%s", err);
    cr_assert(strstr(err, "--rank 0: use 1 to 1024"), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(support_sh("! test -e %s/on && ! test -e %s/o", tmpdir, tmpdir), 0);
}

/* The adapters A and B hold the same tensors under the same names, bit for bit. */
static void same_adapter(const char *a, const char *b) {
    Err err = {0};
    SafeTensors *x = safetensors_open(a, &err), *y = NULL;
    cr_assert_not_null(x, "%s", err.msg);
    y = safetensors_open(b, &err);
    cr_assert_not_null(y, "%s", err.msg);
    cr_assert_eq(safetensors_count(x), safetensors_count(y), "%s, %s: tensor counts", a, b);
    cr_assert_gt(safetensors_count(x), 0);
    for (size_t i = 0; i < safetensors_count(x); i++) {
        const StTensor *t = safetensors_at(x, i), *u = safetensors_find(y, t->name);
        cr_assert_not_null(u, "%s: no %s (in %s)", b, t->name, a);
        cr_assert(t->n_bytes == u->n_bytes && !memcmp(t->data, u->data, t->n_bytes),
                  "%s differs", t->name);
    }
    safetensors_close(x);
    safetensors_close(y);
}

/* A single-file checkpoint (with its tokenizer, or registered with it) trains the adapter the
 * diffusers folder it was written from trains: same names (unet.<module>.lora_A/B, as
 * generate --lora and diffusers load), same values; export merged takes the file as base. */
Test(tunecli, a_single_file_model_trains_the_folders_adapter) {
#define SFIX "tests/gen/fixtures/single/"
    char *out = NULL, *err = NULL, args[1024], a[400], b[400];
    cr_assert_eq(run("models add diffusion " SFIX "sd1.safetensors --tokenizer " SFIX "sd1 "
                     "--name sf", &out, &err), 0, "%s", err);
    free(out), free(err);
    static const char *const models[] = {SFIX "sd1", SFIX "sd1.safetensors --tokenizer " SFIX
                                         "sd1", "sf"};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "tune --model %s --pairs %s --out %s/m%d --steps 2 "
                 "--save-every 0 --device cpu --sample-seeds none --size 64x64 --lr 1e-3",
                 models[i], pairs, tmpdir, i);
        cr_assert_eq(run(args, &out, &err), 0, "--model %s: %s", models[i], err);
        free(out), free(err);
        snprintf(b, sizeof b, "%s/m%d/final/adapter_config.json", tmpdir, i);
        cr_assert(base_is_file(b), "%s", b);
        snprintf(b, sizeof b, "%s/m%d/final/pytorch_lora_weights.safetensors", tmpdir, i);
        if (i)
            same_adapter(a, b);
        else
            snprintf(a, sizeof a, "%s", b);
    }
    snprintf(args, sizeof args, "export merged --model " SFIX "sd1.safetensors --adapter %s/m1/"
             "final --out %s/merged.safetensors", tmpdir, tmpdir);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    free(out), free(err);
#undef SFIX
}
