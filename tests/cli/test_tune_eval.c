/* Tests of `easel tune-eval` (issue 16) as a user runs it, on the tiny random SD pipeline
 * fixture (64x64) with its LoRA fixture as the adapter and a tiny reward model trained here
 * (classic encoder, 6 prompts x 3 images): every prompt x seed is generated with and without
 * the adapter into DIR/base and DIR/adapter, and the report's per-head win rates and mean
 * gains equal the ones this test recomputes from `easel score`'s scores of those images; the
 * store holds a tune-eval run with the same numbers; the job kind gives the same; bad input
 * is refused with a clear message and writes nothing. Runs bin/easel (skipped with the reason
 * if it is not built). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support.h"
#include "support_fixtures.h"

#define FIX_SD "tests/gen/fixtures/pipeline_sd"
#define FIX_LORA "tests/gen/fixtures/pipeline_sd_lora.safetensors"

static char dir[64], easel[512], model[4096], lora[4096];
static char out[1 << 17];

#define run(...) support_run_buf(dir, out, sizeof out, __VA_ARGS__)

static const char *const heads[6] = {"spatial", "icono", "style", "fidelity", "material",
                                     "combined"};

/* Image K of prompt Q: brighter for higher K, and rated better. */
static void rated_image(const char *path, int q, int k, double rating[5], void *user) {
    (void)user;
    unsigned char px[32 * 32 * 3];
    for (int i = 0; i < 32 * 32; i++) {
        px[3 * i] = (unsigned char)(40 + 70 * k + (i % 32));
        px[3 * i + 1] = (unsigned char)(30 * q + (i / 32));
        px[3 * i + 2] = (unsigned char)(200 - 50 * k);
    }
    support_png_write(path, 32, 32, px);
    const double r[5] = {2 + 3 * k, 8 - 3 * k, 2 + 3 * k, 3 + k, 2 + 3 * k};
    memcpy(rating, r, sizeof r);
}

/* 6 prompts x 3 rated images, a reward model "rm" trained on them, and held.csv. */
static void workspace(void) {
    char p[256], db[128];
    snprintf(p, sizeof p, "%s/img", dir);
    cr_assert_eq(mkdir(p, 0777), 0);
    snprintf(db, sizeof db, "%s/t.db", dir);
    SupportSynth synth = {.n_prompts = 6, .per_prompt = 3, .ext_prefix = "",
                          .text_prefix = "scene number ", .image = rated_image};
    support_synth_store(dir, db, &synth);
    cr_assert_eq(run("%s --db t.db train --epochs 2 --name rm --threads 1", easel), 0, "%s",
                 out);
    snprintf(p, sizeof p, "%s/held.csv", dir);
    FILE *pr = fopen(p, "w");
    cr_assert_not_null(pr);
    fprintf(pr, "prompt_id,prompt\nh1,a red fox in the snow\nh2,a blue boat\n");
    fclose(pr);
}

static void setup(void) {
    support_easel_path(easel, sizeof easel);
    cr_assert_not_null(realpath(FIX_SD, model), "%s missing", FIX_SD);
    cr_assert_not_null(realpath(FIX_LORA, lora), "%s missing", FIX_LORA);
    support_tmpdir_make(dir, sizeof dir, "tuneeval");
    cr_assert_eq(run("%s --db t.db init", easel), 0, "%s", out);
}

static void teardown(void) { support_tmpdir_remove(dir); }

TestSuite(tune_eval, .init = setup, .fini = teardown, .timeout = 180);

/* The scores `easel score CKPT FOLDER` prints for FOLDER's images, by "prompt_id/seed". */
typedef struct Scored {
    char key[64];
    double s[6];
} Scored;

static int score_folder(const char *folder, Scored *v, int max) {
    cr_assert_eq(support_run_buf(dir, out, sizeof out, "%s --db t.db score rm %s 2>/dev/null",
                                 easel, folder), 0, "%s", out);
    int n = 0;
    char *save = NULL;
    char *line = strtok_r(out, "\n", &save); /* the header */
    cr_assert(line && strncmp(line, "image,spatial,icono,style,fidelity,material,combined",
                              52) == 0, "%s", line ? line : "(none)");
    while ((line = strtok_r(NULL, "\n", &save)) && n < max) {
        char path[512];
        Scored *s = &v[n];
        cr_assert_eq(sscanf(line, "%511[^,],%lf,%lf,%lf,%lf,%lf,%lf", path, &s->s[0], &s->s[1],
                            &s->s[2], &s->s[3], &s->s[4], &s->s[5]), 7, "%s", line);
        /* .../{prompt_id}/{seed}.png -> prompt_id/seed */
        char *dot = strrchr(path, '.');
        cr_assert_not_null(dot);
        *dot = '\0';
        char *slash = strrchr(path, '/');
        cr_assert_not_null(slash);
        *slash = '\0';
        char *pid = strrchr(path, '/');
        cr_assert_not_null(pid);
        snprintf(s->key, sizeof s->key, "%s/%s", pid + 1, slash + 1);
        n++;
    }
    return n;
}

/* The win rates and gains recomputed from the images' own scores, checked against REPORT
 * (the --json object) and against the store's run NAME. */
static void check_against_scores(json_t *report, const char *ev, const char *name) {
    char base[256], adapter[256];
    snprintf(base, sizeof base, "%s/base", ev);
    snprintf(adapter, sizeof adapter, "%s/adapter", ev);
    Scored b[16], a[16];
    int nb = score_folder(base, b, 16), na = score_folder(adapter, a, 16);
    cr_assert_eq(nb, 4, "2 prompts x 2 seeds on the base side");
    cr_assert_eq(na, 4, "and on the adapter side");
    double win[6] = {0}, gain[6] = {0};
    int pairs = 0, differ = 0;
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < na; j++) {
            if (strcmp(b[i].key, a[j].key) != 0)
                continue;
            pairs++;
            for (int k = 0; k < 6; k++) {
                win[k] += a[j].s[k] > b[i].s[k];
                gain[k] += a[j].s[k] - b[i].s[k];
                differ += a[j].s[k] != b[i].s[k];
            }
        }
    cr_assert_eq(pairs, 4);
    cr_assert_gt(differ, 0, "the adapter changed no score: it was not applied");
    cr_assert_eq(json_integer_value(json_object_get(report, "pairs")), 4);
    cr_assert_eq(json_integer_value(json_object_get(report, "missing")), 0);
    json_t *hj = json_object_get(report, "heads");
    for (int k = 0; k < 6; k++) {
        json_t *h = json_object_get(hj, heads[k]);
        cr_assert_not_null(h, "head %s in the report", heads[k]);
        double w = json_number_value(json_object_get(h, "win_rate"));
        double g = json_number_value(json_object_get(h, "mean_gain"));
        cr_assert_float_eq(w, win[k] / pairs, 1e-9, "%s win rate %g vs %g", heads[k], w,
                           win[k] / pairs);
        /* the CSV of `easel score` has 6 decimals */
        cr_assert_float_eq(g, gain[k] / pairs, 2e-6, "%s gain %g vs %g", heads[k], g,
                           gain[k] / pairs);
        char db[128];
        snprintf(db, sizeof db, "%s/t.db", dir);
        char sql[512];
        snprintf(sql, sizeof sql, "SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id"
                 " WHERE r.name = '%s' AND r.kind = 'tune-eval' AND m.split = 'eval' AND"
                 " m.name = 'win_%s'", name, heads[k]);
        cr_assert_float_eq(support_sql_num(db, sql), w, 1e-12, "%s win in the store", heads[k]);
        snprintf(sql, sizeof sql, "SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id"
                 " WHERE r.name = '%s' AND m.split = 'eval' AND m.name = 'gain_%s'", name,
                 heads[k]);
        cr_assert_float_eq(support_sql_num(db, sql), g, 1e-12, "%s gain in the store",
                           heads[k]);
    }
}

/* ab16: A/B set NAME made by `tune-eval --ab` from run RUN: one item per (prompt, seed),
 * image A the base model's and B the adapter's of the same prompt and seed, the reward scores
 * of both as scores.csv has them, half the adapter images on the left; listed by `ab list`. */
static void check_ab_set(const char *db, const char *name, const char *run_name) {
    cr_assert_eq(support_sh("grep -q 'A/B set %s: 4 pairs' %s/ab.txt", name, dir), 0,
                 "the note on stderr");
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM ab_items i JOIN ab_sets s ON s.id = i.set_id"
             " JOIN runs r ON r.id = s.run_id JOIN images a ON a.id = i.image_a"
             " JOIN images b ON b.id = i.image_b WHERE s.name = '%s' AND r.name = '%s'"
             " AND i.adapter = 'b' AND a.path LIKE '%%/base/%%' AND b.path LIKE '%%/adapter/%%'"
             " AND a.seed = b.seed AND a.prompt_id = b.prompt_id", name, run_name);
    cr_assert_eq(support_sql_num(db, sql), 4, "%s", sql);
    snprintf(sql, sizeof sql, "SELECT SUM(a_left = 0) FROM ab_items i JOIN ab_sets s ON"
             " s.id = i.set_id WHERE s.name = '%s'", name);
    cr_assert_eq(support_sql_num(db, sql), 2, "half the adapter images on the left");
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM ab_item_rewards w JOIN ab_items i ON"
             " i.id = w.item_id JOIN ab_sets s ON s.id = i.set_id WHERE s.name = '%s'", name);
    cr_assert_eq(support_sql_num(db, sql), 4 * 6, "six heads per item");
    cr_assert_eq(run("%s --db t.db ab list", easel), 0, "%s", out);
    cr_assert(strstr(out, name) && strstr(out, run_name), "%s", out);
    cr_assert_eq(run("%s --db t.db ab results %s", easel, name), 0, "%s", out);
    cr_assert(strstr(out, "4 items, 0 judgements") && strstr(out, "no judgements yet"), "%s",
              out);
}

Test(tune_eval, report_equals_the_images_scores_and_the_store_run) {
    workspace();
    cr_assert_eq(support_run_buf(dir, out, sizeof out, "%s --db t.db tune-eval %s --model %s "
                                 "--prompts held.csv --seeds 0,1 --reward rm --steps 2 --device "
                                 "cpu --out ev --name ev1 --json 2>err.txt", easel, lora, model),
                 0, "%s", out);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "--json: %s\n%s", je.text, out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "run")), "ev1");
    /* the layout: both sides, each with the generation's metadata */
    for (int s = 0; s < 2; s++)
        for (int p = 1; p <= 2; p++)
            for (int seed = 0; seed <= 1; seed++)
                cr_assert_eq(support_sh("test -s %s/ev/%s/h%d/%d.png", dir,
                                        s ? "adapter" : "base", p, seed), 0);
    cr_assert_eq(support_sh("grep -q '^h2,1,h2/1.png,a blue boat,64,64,2,7.5$' "
                            "%s/ev/base/metadata.csv", dir), 0);
    cr_assert_eq(support_sh("grep -q '^h2,1,h2/1.png,a blue boat,64,64,2,7.5$' "
                            "%s/ev/adapter/metadata.csv", dir), 0);
    cr_assert_neq(support_sh("cmp -s %s/ev/base/h1/0.png %s/ev/adapter/h1/0.png", dir, dir), 0,
                  "the adapter's image is the base image");
    cr_assert_eq(support_sh("test -s %s/ev/tune-eval.json && test $(wc -l < %s/ev/scores.csv) "
                            "-eq 9", dir, dir), 0, "tune-eval.json, scores.csv (header + 8)");
    char db[128];
    snprintf(db, sizeof db, "%s/t.db", dir);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM runs WHERE name = 'ev1' AND "
                                     "kind = 'tune-eval' AND state = 'succeeded'"), 1);
    cr_assert_eq(support_sql_num(db, "SELECT m.value FROM metrics m JOIN runs r ON r.id = "
                                     "m.run_id WHERE r.name = 'ev1' AND m.name = 'pairs'"), 4);
    check_against_scores(j, "ev", "ev1");
    /* `easel runs show` prints the run's table */
    double wc = json_number_value(json_object_get(json_object_get(json_object_get(j, "heads"),
                                                                  "combined"), "win_rate"));
    json_decref(j);
    cr_assert_eq(run("%s --db t.db runs show ev1", easel), 0, "%s", out);
    char want[64];
    snprintf(want, sizeof want, "combined %10.1f%%", 100 * wc);
    cr_assert(strstr(out, "pairs     4 (prompt, seed)") && strstr(out, want), "'%s' in:\n%s",
              want, out);
    /* the table; with --ab (ab16) the pairs become a blind A/B set */
    cr_assert_eq(run("%s --db t.db tune-eval %s --model %s --prompts held.csv --seeds 0,1 "
                     "--reward runs/rm/best --steps 2 --device cpu --out ev --name ev2 "
                     "--ab ev2-ab 2>ab.txt", easel, lora, model), 0, "%s", out);
    cr_assert(strstr(out, "vs base on 4 (prompt, seed) pairs"), "%s", out);
    cr_assert(strstr(out, "combined") && strstr(out, "win rate"), "%s", out);
    check_ab_set(db, "ev2-ab", "ev2");
}

Test(tune_eval, the_job_kind_gives_the_same_report) {
    workspace();
    char ck[256];
    snprintf(ck, sizeof ck, "%s/runs/rm/best", dir);
    /* a job's paths lie in the workspace: the adapter as a tune run leaves it (a folder
     * holding pytorch_lora_weights.safetensors), the model registered (the default) */
    cr_assert_eq(run("mkdir tune1 && cp %s tune1/pytorch_lora_weights.safetensors && "
                     "%s --db t.db models add diffusion %s --name tiny", lora, easel, model),
                 0, "%s", out);
    /* qa15: the one registered model, used when no --model is given, is checked too: the
     * repository's copy is outside this workspace */
    cr_assert_neq(run("%s --db t.db jobs add tune-eval --adapter %s/tune1 --prompts "
                      "%s/held.csv --reward %s --device cpu", easel, dir, dir, ck), 0);
    cr_assert(strstr(out, "tune-eval --model") && strstr(out, "permission denied"), "%s", out);
    cr_assert_eq(run("cp -r %s tiny && %s --db t.db models remove tiny && %s --db t.db models "
                     "add diffusion tiny --name tiny", model, easel, easel), 0, "%s", out);
    cr_assert_eq(run("%s --db t.db jobs add tune-eval --adapter %s/tune1 "
                     "--prompts %s/held.csv --seeds 0,1 --reward %s --steps 2 --device cpu "
                     "--out %s/evj --name evj", easel, dir, dir, ck, dir), 0, "%s", out);
    cr_assert_eq(run("%s --db t.db worker --until-idle --threads 1", easel), 0, "%s", out);
    cr_assert(strstr(out, "combined  win rate"), "the job logs the rates:\n%s", out);
    cr_assert_eq(run("cat evj/tune-eval.json"), 0, "%s", out);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    check_against_scores(j, "evj", "evj");
    json_decref(j);
    /* qa15: the model's folder with its UNet a link to a copy outside the workspace: the
     * job's run refuses it (a worker reads every file of the model under the trust rules) */
    char far[64];
    support_tmpdir_make(far, sizeof far, "tuneeval-far");
    cr_assert_eq(run("mv tiny/unet %s/unet && ln -s %s/unet tiny/unet && %s --db t.db jobs add "
                     "tune-eval --adapter %s/tune1 --prompts %s/held.csv --seeds 0 --reward %s "
                     "--steps 2 --device cpu --out %s/evk --name evk", far, far, easel, dir, dir,
                     ck, dir), 0, "%s", out);
    run("%s --db t.db worker --until-idle --threads 1", easel);
    cr_assert(strstr(out, "generate --model") && strstr(out, far), "%s", out);
    char db[128];
    snprintf(db, sizeof db, "%s/t.db", dir);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM jobs WHERE kind = 'tune-eval' AND "
                                 "state = 'failed'"), 1);
    support_tmpdir_remove(far);
}

/* A single-file checkpoint as the base (with --tokenizer, or registered with its tokenizer)
 * gives the report of the diffusers folder it was written from: the same scores; `tune
 * --online` runs on it. */
Test(tune_eval, a_single_file_base_gives_the_folders_report) {
#define SFIX "tests/gen/fixtures/single/"
    char fdir[4096], file[4096];
    cr_assert_not_null(realpath(SFIX "sd1", fdir));
    cr_assert_not_null(realpath(SFIX "sd1.safetensors", file));
    workspace();
    cr_assert_eq(run("%s --db t.db tune --model %s --from-store --steps 2 --lr 1e-2 --size "
                     "64x64 --save-every 0 --sample-seeds none --device cpu --out ad 2>err.txt",
                     easel, fdir), 0, "%s", out);
    cr_assert_eq(run("%s --db t.db models add diffusion %s --tokenizer %s --name sf", easel,
                     file, fdir), 0, "%s", out);
    char model_args[3][9000];
    snprintf(model_args[0], sizeof model_args[0], "%s", fdir);
    snprintf(model_args[1], sizeof model_args[1], "%s --tokenizer %s", file, fdir);
    snprintf(model_args[2], sizeof model_args[2], "sf");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(run("%s --db t.db tune-eval ad/final --model %s --prompts held.csv --seeds 0 "
                         "--reward rm --steps 2 --size 64x64 --device cpu --out e%d 2>&1",
                         easel, model_args[i], i), 0, "--model %s: %s", model_args[i], out);
        /* the scores without the path column */
        cr_assert_eq(support_sh("cut -d, -f1-3,5- %s/e%d/scores.csv > %s/s%d.csv", dir, i, dir,
                                i), 0);
        if (i)
            cr_assert_eq(support_sh("cmp -s %s/s0.csv %s/s%d.csv", dir, dir, i), 0,
                         "--model %s: other scores than the folder's", model_args[i]);
    }
    /* the online loop on the registered file: its candidates scored, a round trained */
    cr_assert_eq(run("%s --db t.db tune --model sf --online --reward runs/rm/best --prompts "
                     "held.csv --candidates 2 --rounds 1 --steps-per-round 1 --sample-steps 2 "
                     "--guidance 1 --size 64x64 --sample-seeds none --device cpu --out on "
                     "2>&1", easel), 0, "%s", out);
    cr_assert_eq(support_sh("test -s %s/on/round-1/scores.csv && test -s %s/on/final/"
                            "pytorch_lora_weights.safetensors", dir, dir), 0);
#undef SFIX
}

Test(tune_eval, bad_input_is_refused_and_writes_nothing) {
    char db[128];
    snprintf(db, sizeof db, "%s/t.db", dir);
    cr_assert_eq(run("%s --db t.db tune-eval", easel), 2, "%s", out);
    cr_assert(strstr(out, "easel: tune-eval: which adapter?"), "%s", out);
    cr_assert_eq(run("%s --db t.db tune-eval %s --prompts p.csv --reward x --bogus 1", easel,
                     lora), 2, "%s", out);
    cr_assert(strstr(out, "--bogus"), "%s", out);
    /* no reward checkpoint of that name */
    cr_assert_neq(run("%s --db t.db tune-eval %s --model %s --prompts p.csv --reward nope",
                      easel, lora, model), 0, "%s", out);
    cr_assert(strstr(out, "easel: ") && strstr(out, "nope"), "%s", out);
    /* an adapter that is not there */
    workspace();
    cr_assert_neq(run("%s --db t.db tune-eval missing.safetensors --model %s --prompts held.csv "
                      "--reward rm", easel, model), 0, "%s", out);
    cr_assert(strstr(out, "missing.safetensors: no such file"), "%s", out);
    /* no prompts file; seeds that are not numbers; an unknown scheduler */
    cr_assert_eq(run("%s --db t.db tune-eval %s --model %s --prompts nope.csv --reward rm",
                     easel, lora, model), 2, "%s", out);
    cr_assert(strstr(out, "--prompts") && strstr(out, "nope.csv: no such file"), "%s", out);
    cr_assert_eq(run("%s --db t.db tune-eval %s --model %s --prompts held.csv --reward rm "
                     "--seeds 1,x", easel, lora, model), 2, "%s", out);
    cr_assert(strstr(out, "easel: ") && strstr(out, "1,x"), "%s", out);
    cr_assert_eq(run("%s --db t.db tune-eval %s --model %s --prompts held.csv --reward rm "
                     "--scheduler fast", easel, lora, model), 2, "%s", out);
    cr_assert(strstr(out, "--scheduler fast"), "%s", out);
    cr_assert_eq(run("%s --db t.db tune-eval %s --model nope --prompts held.csv --reward rm "
                     "--device cpu", easel, lora), 1, "%s", out);
    cr_assert(strstr(out, "--model nope: neither a registered diffusion model"), "%s", out);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM runs WHERE kind = 'tune-eval'"), 0);
    cr_assert_eq(support_sh("test ! -e %s/runs/tune-eval-*", dir), 0);
}

/* ab16: --ab is refused with --queue, and when the set's name is taken, before any work */
Test(tune_eval, ab_refusals_write_nothing) {
    char db[128];
    snprintf(db, sizeof db, "%s/t.db", dir);
    cr_assert_eq(run("%s --db t.db tune-eval %s --prompts p.csv --reward x --queue --ab s",
                     easel, lora), 2, "%s", out);
    cr_assert(strstr(out, "easel: tune-eval: --ab makes the A/B set when a foreground run ends"),
              "%s", out);
    support_sql_exec(db, "INSERT INTO ab_sets(name, seed, created) VALUES ('taken', 0, 0)");
    workspace();
    cr_assert_eq(run("%s --db t.db tune-eval %s --model %s --prompts held.csv --reward rm "
                     "--device cpu --ab taken", easel, lora, model), 2, "%s", out);
    cr_assert(strstr(out, "--ab taken: an A/B set of that name exists"), "%s", out);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM runs WHERE kind = 'tune-eval'"), 0);
    cr_assert_eq(support_sql_num(db, "SELECT count(*) FROM jobs"), 0);
    cr_assert_eq(run("%s --db t.db ab results nope", easel), 1, "%s", out);
    cr_assert(strstr(out, "easel: there is no A/B set 'nope'"), "%s", out);
    cr_assert_eq(run("%s --db t.db ab add x --from-eval rm", easel), 2, "%s", out);
    cr_assert(strstr(out, "not a tune-eval run"), "%s", out);
    cr_assert_eq(run("%s --db t.db ab add x", easel), 2, "%s", out);
    cr_assert(strstr(out, "give --from-eval RUN"), "%s", out);
}
