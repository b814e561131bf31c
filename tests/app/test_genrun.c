/* genrun: the generation run around the image source — files, the metadata CSV, store rows,
 * resume (kept, deleted, corrupt), shards that together are the full set, a failing prompt
 * recorded and skipped, cancel within an image, bad input. The image source here is a test
 * generator drawing a pattern from (prompt, seed); the real pipeline is tested in tests/gen
 * and through `easel generate` in tests/cli. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "fmt_csv.h"
#include "genrun.h"
#include "image.h"
#include "png_write.h"
#include "store_catalog.h"
#include "store_jobs.h"
#include "support.h"

typedef struct TGen {
    int calls;
    const char *fail_prompt;  /* this prompt id fails */
    int cancel_at_call;       /* cancel during this call (1-based), 0 never */
    int cancelled;
} TGen;

static int tgen_cancelled(void *u) { return ((TGen *)u)->cancelled; }

static int tgen(void *user, const GenItem *it, const Progress *steps, uint8_t **rgb, int w,
                int h, Err *err) {
    TGen *t = user;
    t->calls++;
    if (t->fail_prompt && strcmp(it->prompt_id, t->fail_prompt) == 0)
        return err_set(err, ERR_FORMAT, "test: prompt %s is broken", it->prompt_id);
    for (int s = 0; s < 4; s++) {
        if (t->cancel_at_call == t->calls && s == 2)
            t->cancelled = 1;
        if (progress_cancelled(steps))
            return err_set(err, ERR_CANCELLED, "cancelled at step %d", s);
        progress_report(steps, s + 1, 4, "steps");
    }
    uint8_t *px = xmalloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++)
        px[i] = (uint8_t)(i * 7 + it->seed * 31 + (uint8_t)it->prompt_id[0]);
    *rgb = px;
    return 0;
}

static const GenItem items3[] = {{"p1", "a red cube", 0}, {"p1", "a red cube", 1},
                                 {"p2", "a blue sphere", 0}, {"p2", "a blue sphere", 1},
                                 {"p3", "a green cone", 0}, {"p3", "a green cone", 1}};

static GenRunOpts opts_for(const char *out, TGen *t, const Progress *pr) {
    return (GenRunOpts){.out_dir = out, .items = items3, .n_items = 6, .width = 16,
                        .height = 8, .steps = 4, .guidance = 7.5,
                        .settings = "{\"model\":\"test\",\"steps\":4}", .gen = tgen,
                        .gen_user = t, .progress = pr};
}

static int file_exists(const char *dir, const char *rel) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return access(p, F_OK) == 0;
}

static CsvTable read_csv(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CsvTable t = {0};
    Err err = {0};
    cr_assert_eq(fmt_csv_read(p, &t, &err), 0, "%s", err.msg);
    return t;
}

Test(genrun, png_round_trip) {
    uint8_t px[5 * 3 * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 13);
    uint8_t *png;
    size_t n;
    Err err = {0};
    cr_assert_eq(png_encode_rgb(px, 5, 3, &png, &n, &err), 0, "%s", err.msg);
    Image im = {0};
    cr_assert_eq(image_decode(png, n, "t.png", 3, &im, &err), 0, "%s", err.msg);
    cr_assert_eq(im.w, 5);
    cr_assert_eq(im.h, 3);
    cr_assert_eq(memcmp(im.px, px, sizeof px), 0);
    image_deinit(&im);
    free(png);
}

Test(genrun, files_csv_and_rows) {
    char dir[256], out[512];
    support_tmpdir_make(dir, sizeof dir, "genrun");
    snprintf(out, sizeof out, "%s/gen", dir);
    Store *st = support_store_open(dir, "t.db", NULL, 0);
    TGen t = {0};
    GenRunOpts o = opts_for(out, &t, NULL);
    o.store = st;
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.total, 6);
    cr_assert_eq(rep.generated, 6);
    cr_assert_eq(rep.rows_added, 6);
    cr_assert_eq(t.calls, 6);
    cr_assert(file_exists(out, "p1/0.png") && file_exists(out, "p3/1.png"));
    CsvTable c = read_csv(out, "metadata.csv");
    cr_assert_eq(c.n_rows, 7);
    const char *head[] = {"prompt_id", "seed", "path", "prompt", "width", "height",
                          "num_inference_steps", "guidance_scale"};
    cr_assert_eq(c.rows[0].n, 8);
    for (int i = 0; i < 8; i++)
        cr_assert_str_eq(c.rows[0].field[i], head[i]);
    cr_assert_str_eq(c.rows[3].field[2], "p2/0.png");
    cr_assert_str_eq(c.rows[3].field[3], "a blue sphere");
    cr_assert_str_eq(c.rows[3].field[4], "16");
    cr_assert_str_eq(c.rows[3].field[7], "7.5");
    fmt_csv_deinit(&c);
    StoreImage *imgs;
    size_t n;
    cr_assert_eq(store_images_list(st, 0, &imgs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 6);
    cr_assert_eq(imgs[1].seed, 1);
    cr_assert_eq(imgs[1].width, 16);
    cr_assert_str_eq(imgs[1].generator, "{\"model\":\"test\",\"steps\":4}");
    cr_assert_not_null(imgs[1].sha256);
    StorePrompt p;
    cr_assert_eq(store_prompt_get(st, imgs[1].prompt_id, &p, &err), 0);
    cr_assert_str_eq(p.ext_id, "p1");
    cr_assert_str_eq(p.text, "a red cube");
    store_prompt_deinit(&p);
    store_images_free(imgs, n);
    gen_run_report_deinit(&rep);
    /* again: everything kept, nothing generated, no new rows */
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.kept, 6);
    cr_assert_eq(rep.generated, 0);
    cr_assert_eq(rep.rows_added, 0);
    cr_assert_eq(t.calls, 6);
    gen_run_report_deinit(&rep);
    store_close(st);
    support_tmpdir_remove(dir);
}

Test(genrun, resume_deleted_and_corrupt) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrun");
    TGen t = {0};
    GenRunOpts o = opts_for(dir, &t, NULL);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    gen_run_report_deinit(&rep);
    char p[512];
    snprintf(p, sizeof p, "%s/p2/1.png", dir);
    cr_assert_eq(unlink(p), 0);
    snprintf(p, sizeof p, "%s/p3/0.png", dir);
    FILE *f = fopen(p, "wb");
    fputs("not a png", f);
    fclose(f);
    struct stat kept_before, kept_after;
    snprintf(p, sizeof p, "%s/p1/0.png", dir);
    cr_assert_eq(stat(p, &kept_before), 0);
    usleep(20000);
    t.calls = 0;
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(t.calls, 2);
    cr_assert_eq(rep.generated, 2);
    cr_assert_eq(rep.redone, 1);
    cr_assert_eq(rep.kept, 4);
    cr_assert_eq(stat(p, &kept_after), 0);
    cr_assert_eq(kept_before.st_mtim.tv_nsec, kept_after.st_mtim.tv_nsec);
    cr_assert_eq(kept_before.st_ino, kept_after.st_ino);
    Image im = {0};
    snprintf(p, sizeof p, "%s/p3/0.png", dir);
    cr_assert_eq(image_load(p, 3, &im, &err), 0, "%s", err.msg);
    image_deinit(&im);
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, shards_make_the_full_set) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrun");
    size_t rows = 0;
    int calls = 0;
    for (int k = 1; k <= 4; k++) {
        TGen t = {0};
        GenRunOpts o = opts_for(dir, &t, NULL);
        o.shard_k = k;
        o.shard_n = 4;
        GenRunReport rep;
        Err err = {0};
        cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
        cr_assert_eq(rep.kept, 0, "shards overlap");
        char name[64];
        snprintf(name, sizeof name, "metadata-%d-of-4.csv", k);
        CsvTable c = read_csv(dir, name);
        rows += c.n_rows - 1;
        fmt_csv_deinit(&c);
        calls += t.calls;
        gen_run_report_deinit(&rep);
    }
    cr_assert_eq(rows, 6);
    cr_assert_eq(calls, 6);
    for (size_t i = 0; i < 6; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "%s/%llu.png", items3[i].prompt_id,
                 (unsigned long long)items3[i].seed);
        cr_assert(file_exists(dir, rel), "%s missing", rel);
    }
    cr_assert(!file_exists(dir, "metadata.csv"));
    support_tmpdir_remove(dir);
}

static char logged[4096];
static void tlog(void *u, const char *line) {
    (void)u;
    strncat(logged, line, sizeof logged - strlen(logged) - 2);
    strcat(logged, "\n");
}

Test(genrun, failing_prompt_recorded_and_skipped) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrun");
    TGen t = {.fail_prompt = "p2"};
    logged[0] = '\0';
    Progress pr = {.log = tlog, .user = &t};
    GenRunOpts o = opts_for(dir, &t, &pr);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.failed, 2);
    cr_assert_eq(rep.generated, 4);
    cr_assert_not_null(rep.failures);
    cr_assert(strstr(logged, "prompt p2 seed 0 failed, skipped: test: prompt p2 is broken"),
              "%s", logged);
    CsvTable c = read_csv(dir, "failed.csv");
    cr_assert_eq(c.n_rows, 3);
    cr_assert_str_eq(c.rows[1].field[0], "p2");
    cr_assert_str_eq(c.rows[1].field[3], "test: prompt p2 is broken");
    fmt_csv_deinit(&c);
    c = read_csv(dir, "metadata.csv");
    cr_assert_eq(c.n_rows, 5);
    fmt_csv_deinit(&c);
    gen_run_report_deinit(&rep);
    /* fixed: the next run makes only the two, and the failures file goes */
    t.fail_prompt = NULL;
    t.calls = 0;
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(t.calls, 2);
    cr_assert(!file_exists(dir, "failed.csv"));
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, cancel_within_an_image) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrun");
    TGen t = {.cancel_at_call = 3};
    Progress pr = {.cancelled = tgen_cancelled, .user = &t};
    GenRunOpts o = opts_for(dir, &t, &pr);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), ERR_CANCELLED);
    cr_assert(strstr(err.msg, "cancelled after 2 of 6 images"), "%s", err.msg);
    cr_assert_eq(rep.generated, 2);
    cr_assert(file_exists(dir, "p1/1.png"));
    cr_assert(!file_exists(dir, "p2/0.png"));
    CsvTable c = read_csv(dir, "metadata.csv");
    cr_assert_eq(c.n_rows, 3);
    fmt_csv_deinit(&c);
    /* no temporary file left anywhere */
    char *ls = NULL;
    support_run(dir, &ls, NULL, "find . -name '*.tmp-*'");
    cr_assert_str_eq(ls, "");
    free(ls);
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, cancel_before_any_image_still_writes_the_csv) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrun");
    TGen t = {.cancel_at_call = 1};
    Progress pr = {.cancelled = tgen_cancelled, .user = &t};
    GenRunOpts o = opts_for(dir, &t, &pr);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), ERR_CANCELLED);
    CsvTable c = read_csv(dir, "metadata.csv");
    cr_assert_eq(c.n_rows, 1, "the header alone");
    fmt_csv_deinit(&c);
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, bad_input) {
    Err err = {0};
    int k, n;
    cr_assert_eq(gen_parse_shard("2/4", &k, &n, &err), 0);
    cr_assert(k == 2 && n == 4);
    const char *bad[] = {"0/4", "5/4", "4", "a/b", "1/", "/2", "1/2x", "-1/2", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(gen_parse_shard(bad[i], &k, &n, &err), ERR_USAGE, "%s", bad[i]);
        cr_assert(strstr(err.msg, "--shard"), "%s", err.msg);
    }
    cr_assert(!gen_prompt_id_ok("../x"));
    cr_assert(!gen_prompt_id_ok(".."));
    cr_assert(!gen_prompt_id_ok("a b"));
    cr_assert(gen_prompt_id_ok("prompt_3"));
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrun");
    GenItem evil[] = {{"../escape", "x", 0}};
    TGen t = {0};
    GenRunOpts o = opts_for(dir, &t, NULL);
    o.items = evil;
    o.n_items = 1;
    GenRunReport rep;
    cr_assert_eq(gen_run(&o, &rep, &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "../escape"), "%s", err.msg);
    cr_assert_eq(t.calls, 0);
    support_tmpdir_remove(dir);
}

/* Run by a job: each image's row is recorded as the job's, so the Jobs screen can preview the
 * latest; kept images on a resume are the job's too. */
Test(genrun, a_jobs_images_are_recorded_latest_last) {
    char dir[256], out[512], db[512];
    support_tmpdir_make(dir, sizeof dir, "genrunjob");
    snprintf(out, sizeof out, "%s/gen", dir);
    Store *st = support_store_open(dir, "t.db", db, sizeof db);
    Err err = {0};
    int64_t job = 0, again = 0;
    cr_assert_eq(store_job_add(st, &(JobNew){.kind = "generate"}, &job, &err), 0, "%s", err.msg);
    cr_assert_eq(store_job_add(st, &(JobNew){.kind = "generate"}, &again, &err), 0);
    TGen t = {0};
    GenRunOpts o = opts_for(out, &t, NULL);
    o.store = st;
    o.job_id = job;
    GenRunReport rep;
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    gen_run_report_deinit(&rep);
    char *path = NULL;
    int64_t id = 0;
    cr_assert_eq(store_job_latest_image(st, job, &id, &path, &err), 0, "%s", err.msg);
    char want[600];
    snprintf(want, sizeof want, "%s/p3/1.png", out);
    cr_assert_str_eq(path, want, "the last item of the run");
    free(path);
    o.job_id = again; /* everything is kept: still the job's images */
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.kept, 6);
    gen_run_report_deinit(&rep);
    cr_assert_eq(store_job_latest_image(st, again, &id, NULL, &err), 0, "%s", err.msg);
    store_close(st);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM job_images WHERE job_id = %lld",
             (long long)job);
    cr_assert_eq(support_sql_num(db, sql), 6);
    support_tmpdir_remove(dir);
}
