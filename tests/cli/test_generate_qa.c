/* test_generate_qa — `easel generate` as a user runs it into trouble (qa15): an error with
 * long paths still says what to do, an --out that is a file, a prompts file that gives one
 * prompt id two texts or a text other than the store's. Each is refused before anything is
 * generated, and the store is left as it was. On the tiny SD pipeline fixture (64x64, 1
 * step). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#define FIX_SD "tests/gen/fixtures/pipeline_sd"
#define FIX_SDXL_LORA "tests/gen/fixtures/sdxl_te_lora_peft.safetensors"

static char tmpdir[64];
static char dbpath[128];
static char model[512];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "genqa");
    snprintf(dbpath, sizeof dbpath, "%s/s.db", tmpdir);
    /* a model where users keep them: a long path */
    snprintf(model, sizeof model, "%s/models/stabilityai/stable-diffusion-tiny-random-for-"
             "the-easel-tests/snapshots/0123456789abcdef0123456789abcdef01234567", tmpdir);
    cr_assert_eq(support_sh("bin/easel --db %s init >/dev/null && mkdir -p %s && "
                            "cp -r %s/. %s/", dbpath, model, FIX_SD, model), 0);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(genqa, .init = setup, .fini = teardown);

static int gen(const char *args, char **err_out) {
    char easel[512], *out = NULL;
    support_easel_path(easel, sizeof easel);
    int rc = support_run(NULL, &out, err_out, "%s --db %s generate --model %s --steps 1 "
                         "--size 64x64 --device cpu %s", easel, dbpath, model, args);
    free(out);
    return rc;
}

static char *dump(void) {
    char *out = NULL;
    cr_assert_eq(support_run(NULL, &out, NULL, "sqlite3 %s .dump", dbpath), 0);
    return out;
}

Test(genqa, a_lora_for_another_model_says_so_in_full) {
    char lora[1024], args[1200];
    snprintf(lora, sizeof lora, "%s/loras/downloaded-from-a-model-hub/an-sdxl-text-encoder-"
             "lora-with-a-long-descriptive-name.safetensors", tmpdir);
    cr_assert_eq(support_sh("mkdir -p $(dirname %s) && cp %s %s", lora, FIX_SDXL_LORA, lora),
                 0);
    snprintf(args, sizeof args, "--prompt 'a red fox' --seed 1 --lora %s --out %s/o", lora,
             tmpdir);
    char *before = dump(), *err = NULL;
    cr_assert_eq(gen(args, &err), 1, "%s", err);
    /* the file, the tensor, and what is wrong, to the end */
    cr_assert(strstr(err, lora) && strstr(err, "text_encoder_2.") &&
              strstr(err, "which this model does not have: the LoRA is for another model"),
              "%s", err);
    char *after = dump();
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
    free(err);
}

Test(genqa, an_out_that_is_a_file_is_refused_first) {
    char args[512];
    cr_assert_eq(support_sh("echo notes > %s/o.txt", tmpdir), 0);
    snprintf(args, sizeof args, "--prompt 'a red fox' --seed 1 --out %s/o.txt", tmpdir);
    char *before = dump(), *err = NULL;
    cr_assert_eq(gen(args, &err), 1, "%s", err);
    cr_assert(strstr(err, "o.txt: is a file, not a folder"), "%s", err);
    cr_assert(!strstr(err, "failed.csv"), "no failures file promised in a file: %s", err);
    cr_assert_eq(support_sh("test \"$(cat %s/o.txt)\" = notes", tmpdir), 0);
    char *after = dump();
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
    free(err);
}

Test(genqa, one_prompt_id_two_texts_is_refused_with_its_lines) {
    char path[256], args[512];
    support_write_file(tmpdir, "p.csv", "prompt_id,prompt\np1,a red fox\np2,a cat\n"
                       "p1,a blue fox\n", path, sizeof path);
    snprintf(args, sizeof args, "--prompts %s --seed 1 --out %s/o", path, tmpdir);
    char *before = dump(), *err = NULL;
    cr_assert_eq(gen(args, &err), 1, "%s", err);
    cr_assert(strstr(err, "p.csv:4: prompt_id 'p1' is on line 2 too, with another text"), "%s",
              err);
    cr_assert_eq(support_sh("! test -e %s/o", tmpdir), 0, "nothing generated");
    char *after = dump();
    cr_assert_str_eq(before, after);
    free(after);
    free(err);
    /* the same row twice: its images once */
    support_write_file(tmpdir, "p.csv", "prompt_id,prompt\np1,a red fox\np1,a red fox\n", path,
                       sizeof path);
    cr_assert_eq(gen(args, &err), 0, "%s", err);
    free(err);
    cr_assert_eq(support_sh("test $(grep -c '^p1,1,' %s/o/metadata.csv) -eq 1", tmpdir), 0);
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM images"), 1);
    free(before);
}

Test(genqa, a_prompt_id_the_store_has_with_another_text_is_refused_first) {
    char path[256], args[512];
    support_write_file(tmpdir, "p.csv", "prompt_id,prompt\np1,a red fox\n", path, sizeof path);
    snprintf(args, sizeof args, "--prompts %s --seed 1 --out %s/o", path, tmpdir);
    char *err = NULL;
    cr_assert_eq(gen(args, &err), 0, "%s", err);
    free(err);
    /* the file edited afterwards: p1 says something else now */
    support_write_file(tmpdir, "p.csv", "prompt_id,prompt\np1,a red fox in the snow\n", path,
                       sizeof path);
    snprintf(args, sizeof args, "--prompts %s --seed 2 --out %s/o", path, tmpdir);
    char *before = dump();
    cr_assert_eq(gen(args, &err), 1, "%s", err);
    cr_assert(strstr(err, "p.csv:2: prompt_id 'p1' is in the store with another text "
                          "(\"a red fox\")"), "%s", err);
    cr_assert_eq(support_sh("! test -e %s/o/p1/2.png", tmpdir), 0, "nothing generated");
    char *after = dump();
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
    free(err);
}

/* Queued in the workspace with the default --out (generated), run by a worker started in
 * another folder: the images go where the user queued them, as every given path does. */
Test(genqa, a_queued_jobs_default_out_is_the_queuers_folder, .timeout = 120) {
    char easel[512], *out = NULL, *err = NULL;
    support_easel_path(easel, sizeof easel);
    cr_assert_eq(support_run(tmpdir, &out, &err, "%s --db %s generate --model %s --steps 1 "
                             "--size 64x64 --device cpu --prompt 'a red fox' --seed 3 --queue",
                             easel, dbpath, model), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(support_run("/", &out, &err, "%s --db %s worker --threads 1 --until-idle",
                             easel, dbpath), 0, "%s", err);
    free(out);
    cr_assert(!strstr(err, "refused"), "%s", err);
    free(err);
    cr_assert_eq(support_sh("test -f %s/generated/metadata.csv && "
                            "test $(find %s/generated -name 3.png | wc -l) -eq 1", tmpdir,
                            tmpdir), 0);
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"),
                 1);
}

/* The same with a relative --model folder and --lora FILE:SCALE. */
Test(genqa, a_queued_jobs_relative_model_and_lora_are_the_queuers, .timeout = 120) {
    char easel[512], *out = NULL, *err = NULL;
    support_easel_path(easel, sizeof easel);
    cr_assert_eq(support_sh("cp -r %s %s/m && cp tests/gen/fixtures/pipeline_sd_lora.safetensors"
                            " %s/l.safetensors", model, tmpdir, tmpdir), 0);
    cr_assert_eq(support_run(tmpdir, &out, &err, "%s --db %s generate --model m --lora "
                             "l.safetensors:0.5 --steps 1 --size 64x64 --device cpu --prompt "
                             "'a red fox' --seed 4 --out o --queue", easel, dbpath), 0, "%s",
                 err);
    free(out);
    free(err);
    cr_assert_eq(support_run("/", &out, &err, "%s --db %s worker --threads 1 --until-idle",
                             easel, dbpath), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"),
                 1);
    cr_assert_eq(support_sh("test $(find %s/o -name 4.png | wc -l) -eq 1", tmpdir), 0);
    char *p = NULL;
    cr_assert_eq(support_run(NULL, &p, NULL, "sqlite3 %s \"SELECT params FROM jobs\"", dbpath),
                 0);
    char want[256];
    snprintf(want, sizeof want, "/l.safetensors:0.5\"");
    cr_assert(strstr(p, want) && !strstr(p, "\"lora\":\"l.safetensors"), "%s", p);
    free(p);
}

/* A model that does not load: the error names the file and tensor, and nothing is written
 * (not even the --out folder, nor its parents this run would have made); an --out that was
 * there keeps what it held. */
Test(genqa, a_model_that_does_not_load_writes_nothing) {
    char args[1024], *err = NULL;
    cr_assert_eq(support_sh("truncate -s 100000 %s/unet/diffusion_pytorch_model.safetensors",
                            model), 0);
    snprintf(args, sizeof args, "--prompt 'a red fox' --seed 1 --out %s/new/o/", tmpdir);
    char *before = dump();
    cr_assert_eq(gen(args, &err), 1, "%s", err);
    cr_assert(strstr(err, "unet/diffusion_pytorch_model.safetensors: truncated: tensor '"),
              "%s", err);
    free(err);
    cr_assert_eq(support_sh("! test -e %s/new", tmpdir), 0, "the folders it made are left");
    cr_assert_eq(support_sh("mkdir -p %s/had && echo x > %s/had/notes", tmpdir, tmpdir), 0);
    snprintf(args, sizeof args, "--prompt 'a red fox' --seed 1 --out %s/had", tmpdir);
    cr_assert_eq(gen(args, &err), 1, "%s", err);
    free(err);
    cr_assert_eq(support_sh("test -f %s/had/notes", tmpdir), 0);
    char *after = dump();
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
}

/* --from-store with a prompt whose id (imported as it was) cannot be a folder: the error says
 * it is the store's and what to do. */
Test(genqa, from_store_with_an_id_that_cannot_be_a_folder_says_what_to_do) {
    char path[256], args[512], *err = NULL, *out = NULL;
    support_write_file(tmpdir, "p.csv", "prompt_id,prompt\nok1,a cat\nbad id/x,a dog\n", path,
                       sizeof path);
    cr_assert_eq(support_run(NULL, &out, &err, "bin/easel --db %s import prompts %s", dbpath,
                             path), 0, "%s", err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "--from-store --seed 1 --out %s/o", tmpdir);
    cr_assert_eq(gen(args, &err), 1, "%s", err);
    cr_assert(strstr(err, "the store's prompt 'bad id/x' has an id that cannot name a folder") &&
              strstr(err, "easel export prompts"), "%s", err);
    free(err);
    cr_assert_eq(support_sh("! test -e %s/o", tmpdir), 0);
}

/* Seeds: each once, and each one the store's signed 64-bit column holds as it is. */
Test(genqa, seeds_given_twice_or_past_int64_are_refused) {
    char args[512], *err = NULL;
    snprintf(args, sizeof args, "--prompt 'a red fox' --seeds 1,2,1 --out %s/o", tmpdir);
    cr_assert_eq(gen(args, &err), 2, "%s", err); /* a usage error */
    cr_assert(strstr(err, "--seeds 1,2,1: seed 1 is given twice"), "%s", err);
    free(err);
    snprintf(args, sizeof args, "--prompt 'a red fox' --seeds 9223372036854775808 --out %s/o",
             tmpdir);
    cr_assert_eq(gen(args, &err), 2, "%s", err);
    cr_assert(strstr(err, "from 0 to 9223372036854775807"), "%s", err);
    free(err);
    cr_assert_eq(support_sh("! test -e %s/o", tmpdir), 0);
    snprintf(args, sizeof args, "--prompt 'a red fox' --seeds 9223372036854775807 --out %s/o",
             tmpdir);
    cr_assert_eq(gen(args, &err), 0, "%s", err);
    free(err);
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM images WHERE seed = "
                                 "9223372036854775807"), 1);
}

/* `jobs add generate` with a flag given twice: two LoRAs are both kept (the last alone was),
 * anything else is refused (the last silently won). */
Test(genqa, jobs_add_with_a_flag_given_twice) {
    char easel[512], *out = NULL, *err = NULL;
    support_easel_path(easel, sizeof easel);
    cr_assert_eq(support_sh("cp tests/gen/fixtures/pipeline_sd_lora.safetensors %s/a.safetensors"
                            " && cp %s/a.safetensors %s/b.safetensors", tmpdir, tmpdir, tmpdir),
                 0);
    cr_assert_eq(support_run(tmpdir, &out, &err, "%s --db %s jobs add generate --model %s "
                             "--prompt cat --device cpu --lora a.safetensors --lora "
                             "b.safetensors:0.5", easel, dbpath, model), 0, "%s", err);
    free(out);
    free(err);
    char *p = NULL;
    cr_assert_eq(support_run(NULL, &p, NULL, "sqlite3 %s \"SELECT params FROM jobs\"", dbpath),
                 0);
    cr_assert(strstr(p, "/a.safetensors,") && strstr(p, "/b.safetensors:0.5\""), "%s", p);
    free(p);
    cr_assert_eq(support_run(tmpdir, &out, &err, "%s --db %s jobs add generate --model %s "
                             "--prompt cat --device cpu --steps 2 --steps 3", easel, dbpath,
                             model), 2, "%s", err); /* a usage error */
    cr_assert(strstr(err, "--steps given twice ('2' and '3')"), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM jobs"), 1);
}

/* A registered single file named by its path (as a queued job's relative --model becomes):
 * its registered tokenizer is used, and the images' settings name the model. */
Test(genqa, a_registered_single_file_by_its_path_has_its_tokenizer) {
    char easel[512], *out = NULL, *err = NULL;
    support_easel_path(easel, sizeof easel);
    cr_assert_eq(support_sh("cp tests/gen/fixtures/single/sd1.safetensors %s/one.safetensors",
                            tmpdir), 0);
    cr_assert_eq(support_run(tmpdir, &out, &err, "%s --db %s models add diffusion "
                             "one.safetensors --tokenizer %s --name one", easel, dbpath, model),
                 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(support_run(tmpdir, &out, &err, "%s --db %s generate --model one.safetensors "
                             "--scheduler euler --prompt 'a red fox' --seed 1 --steps 1 "
                             "--size 64x64 --device cpu --out o", easel, dbpath), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(support_sql_num(dbpath, "SELECT count(*) FROM images WHERE "
                                 "json_extract(generator, '$.model') = 'one'"), 1);
}

/* --seed takes what --seeds takes (it stopped at 2^62), and a --tokenizer that is not there is
 * named as the tokenizer given, also for a diffusers folder (it said "no nonexist/ folder (a
 * diffusers model folder has text_encoder/ and nonexist/)"). */
Test(genqa, seed_range_and_a_missing_tokenizer_folder) {
    char args[512], *err = NULL;
    snprintf(args, sizeof args, "--prompt 'a red fox' --seed 9223372036854775807 --out %s/o",
             tmpdir);
    cr_assert_eq(gen(args, &err), 0, "%s", err);
    free(err);
    snprintf(args, sizeof args, "--prompt 'a red fox' --seed 1 --tokenizer %s/nonexist "
             "--out %s/o2", tmpdir, tmpdir);
    cr_assert_eq(gen(args, &err), 1, "%s", err);
    cr_assert(strstr(err, "nonexist: no such tokenizer folder (give --tokenizer DIR"), "%s", err);
    free(err);
}
