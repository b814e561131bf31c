/* genrun: the generation run around the image source — files, the metadata CSV, store rows,
 * resume (kept, deleted, corrupt), shards that together are the full set, a failing prompt
 * recorded and skipped, cancel within an image, bad input. The image source here is a test
 * generator drawing a pattern from (prompt, seed); the real pipeline is tested in tests/gen
 * and through `easel generate` in tests/cli. */
#include <criterion/criterion.h>
#include <pthread.h>
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

/* ---- several workers (one per GPU): a test source per worker, opened on its thread ---- */

#include <stdatomic.h>
#include <time.h>

#define MW_MAX 4

typedef struct MGen {
    int workers;
    int steps;                  /* per image */
    int step_ms[MW_MAX];        /* per worker: how long a step takes */
    int fail_open[MW_MAX];      /* this worker's device does not open */
    int die_at[MW_MAX];         /* this worker's device fails (ERR_GPU) at its Nth image */
    const char *poison;         /* an item (prompt id, seed 0) that fails any device */
    int barrier;                /* every worker holds its first image until all have one */
    atomic_int opened, closed, at_barrier;
    atomic_int made[MW_MAX];
    atomic_int cancel;          /* the run's cancel flag (the Progress below reads it) */
    atomic_int cancel_after;    /* raise it once this many steps were done in all */
    atomic_int steps_done;
    atomic_int late_steps[MW_MAX]; /* steps a worker took after the flag was up */
    pthread_t opener[MW_MAX];
} MGen;

typedef struct MWorker {
    MGen *m;
    int k;
    int calls;
} MWorker;

static void ms_sleep(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int mopen(void *user, int worker, const Progress *log, void **gen_user, Err *err) {
    MGen *m = user;
    m->opener[worker] = pthread_self();
    if (m->fail_open[worker])
        return err_set(err, ERR_GPU, "test: cuda:%d does not open", worker);
    progress_log(log, "test: a note from opening a worker");
    MWorker *w = xcalloc(1, sizeof *w);
    w->m = m;
    w->k = worker;
    *gen_user = w;
    atomic_fetch_add(&m->opened, 1);
    return 0;
}

static void mclose(void *user, int worker, void *gen_user) {
    MGen *m = user;
    cr_assert(pthread_equal(m->opener[worker], pthread_self()), "closed on another thread");
    free(gen_user);
    atomic_fetch_add(&m->closed, 1);
}

static int mgen(void *user, const GenItem *it, const Progress *steps, uint8_t **rgb, int w,
                int h, Err *err) {
    MWorker *mw = user;
    MGen *m = mw->m;
    cr_assert(pthread_equal(m->opener[mw->k], pthread_self()), "ran on another thread");
    mw->calls++;
    if (m->barrier && mw->calls == 1) { /* every worker that opens gets here */
        int want = 0;
        for (int k = 0; k < m->workers; k++)
            want += !m->fail_open[k];
        atomic_fetch_add(&m->at_barrier, 1);
        for (int t = 0; t < 10000 && atomic_load(&m->at_barrier) < want; t++)
            ms_sleep(1);
    }
    if (m->die_at[mw->k] == mw->calls)
        return err_set(err, ERR_GPU, "test: cuda:%d fell off the bus", mw->k);
    if (m->poison && strcmp(it->prompt_id, m->poison) == 0 && it->seed == 0)
        return err_set(err, ERR_GPU, "test: %s kills the device", m->poison);
    for (int s = 0; s < m->steps; s++) {
        int up = atomic_load(&m->cancel);
        if (progress_cancelled(steps))
            return err_set(err, ERR_CANCELLED, "cancelled at step %d", s);
        if (up)
            atomic_fetch_add(&m->late_steps[mw->k], 1);
        if (m->step_ms[mw->k])
            ms_sleep(m->step_ms[mw->k]);
        int done = atomic_fetch_add(&m->steps_done, 1) + 1;
        if (atomic_load(&m->cancel_after) && done >= atomic_load(&m->cancel_after))
            atomic_store(&m->cancel, 1);
        progress_report(steps, s + 1, m->steps, "steps");
    }
    uint8_t *px = xmalloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++)
        px[i] = (uint8_t)(i * 7 + it->seed * 31 + (uint8_t)it->prompt_id[0]);
    *rgb = px;
    atomic_fetch_add(&m->made[mw->k], 1);
    return 0;
}

static int mcancelled(void *u) { return atomic_load(&((MGen *)u)->cancel); }

/* What the coordinator reported: images (fractions while images are in flight), and log. */
typedef struct MSeen {
    double last, max;
    int reports, fractional, backwards;
    char log[8192];
    pthread_t thread;
} MSeen;

static MSeen seen;

static void mprogress(void *u, double done, double total, const char *unit) {
    (void)u;
    (void)total;
    cr_assert_str_eq(unit, "images");
    cr_assert(pthread_equal(seen.thread, pthread_self()), "progress from a worker thread");
    seen.reports++;
    seen.fractional += done != (double)(long)done;
    seen.last = done;
    if (done > seen.max)
        seen.max = done;
}

static void mlog(void *u, const char *line) {
    (void)u;
    cr_assert(pthread_equal(seen.thread, pthread_self()), "log from a worker thread");
    strncat(seen.log, line, sizeof seen.log - strlen(seen.log) - 2);
    strcat(seen.log, "\n");
}

static GenItem items12[12];
static char item_ids[12][8];

static const char *const labels[] = {"0", "1", "2", "3"};

static GenRunOpts mopts(const char *out, MGen *m, Progress *pr, int workers) {
    for (int i = 0; i < 12; i++) {
        snprintf(item_ids[i], sizeof item_ids[i], "q%d", i / 2);
        items12[i] = (GenItem){item_ids[i], "a prompt", (uint64_t)(i % 2)};
    }
    memset(&seen, 0, sizeof seen);
    seen.thread = pthread_self();
    m->workers = workers;
    if (!m->steps)
        m->steps = 4;
    *pr = (Progress){mprogress, mcancelled, mlog, m};
    return (GenRunOpts){.out_dir = out, .items = items12, .n_items = 12, .width = 16,
                        .height = 8, .steps = 4, .guidance = 7.5, .settings = "{}",
                        .gen = mgen, .progress = pr, .n_workers = workers, .open = mopen,
                        .close = mclose, .open_user = m,
                        .worker_ids = workers > 1 ? labels : NULL};
}

/* The gpu_id column of metadata.csv by path ("" none), and how many rows. */
static int gpu_of(const char *dir, const char *rel, char *gpu, size_t n) {
    CsvTable c = read_csv(dir, "metadata.csv");
    int col = fmt_csv_column(&c.rows[0], "gpu_id"), rows = (int)c.n_rows - 1;
    gpu[0] = '\0';
    for (size_t i = 1; i < c.n_rows && col >= 0; i++)
        if (strcmp(c.rows[i].field[2], rel) == 0)
            snprintf(gpu, n, "%s", c.rows[i].field[col]);
    if (col < 0)
        snprintf(gpu, n, "(no column)");
    fmt_csv_deinit(&c);
    return rows;
}

Test(genrun, three_workers_make_the_same_bytes_as_one, .timeout = 60) {
    char dir[256], one[512], three[512];
    support_tmpdir_make(dir, sizeof dir, "genrunw");
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(three, sizeof three, "%s/three", dir);
    MGen m1 = {0};
    Progress pr;
    GenRunOpts o = mopts(one, &m1, &pr, 1);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.workers, 1);
    gen_run_report_deinit(&rep);
    char g[16];
    gpu_of(one, "q0/0.png", g, sizeof g);
    cr_assert_str_eq(g, "(no column)", "one device: the single-GPU layout");
    MGen m3 = {.barrier = 1, .step_ms = {2, 2, 2}};
    o = mopts(three, &m3, &pr, 3);
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.generated, 12);
    cr_assert_eq(rep.workers, 3);
    cr_assert_eq(rep.workers_lost, 0);
    cr_assert_eq(atomic_load(&m3.opened), 3);
    cr_assert_eq(atomic_load(&m3.closed), 3);
    for (int k = 0; k < 3; k++)
        cr_assert_geq(atomic_load(&m3.made[k]), 1, "worker %d made nothing", k);
    /* the same bytes whoever made them; each row names its worker's GPU */
    int counts[3] = {0};
    for (int i = 0; i < 12; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "%s/%llu.png", items12[i].prompt_id,
                 (unsigned long long)items12[i].seed);
        cr_assert_eq(support_sh("cmp -s %s/%s %s/%s", one, rel, three, rel), 0, "%s differs",
                     rel);
        cr_assert_eq(gpu_of(three, rel, g, sizeof g), 12);
        cr_assert(strlen(g) == 1 && g[0] >= '0' && g[0] <= '2', "gpu_id '%s'", g);
        counts[g[0] - '0']++;
    }
    for (int k = 0; k < 3; k++)
        cr_assert_eq(counts[k], atomic_load(&m3.made[k]));
    /* progress: on the calling thread, in images, the ones in flight counted by their steps */
    cr_assert_float_eq(seen.last, 12, 1e-9);
    cr_assert_gt(seen.fractional, 0);
    cr_assert(strstr(seen.log, "test: a note from opening a worker"), "%s", seen.log);
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, a_slow_worker_does_not_hold_the_others, .timeout = 60) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrunw");
    MGen m = {.step_ms = {100, 1, 1}};
    Progress pr;
    GenRunOpts o = mopts(dir, &m, &pr, 3);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.generated, 12);
    /* worker 0 takes 400 ms an image: the others take the rest from the queue (a fixed
     * split would have given it 4) */
    cr_assert_leq(atomic_load(&m.made[0]), 2, "the slow worker made %d",
                  atomic_load(&m.made[0]));
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, a_lost_worker_hands_its_image_to_the_others, .timeout = 60) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrunw");
    MGen m = {.fail_open = {0, 0, 1}, .die_at = {0, 2, 0}, .step_ms = {3, 3, 3}};
    Progress pr;
    GenRunOpts o = mopts(dir, &m, &pr, 3);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.generated, 12, "every image made by the worker left");
    cr_assert_eq(rep.failed, 0);
    cr_assert_eq(rep.workers_lost, 2);
    cr_assert_eq(atomic_load(&m.made[0]) + atomic_load(&m.made[1]), 12);
    cr_assert_eq(atomic_load(&m.made[1]), 1, "worker 1 died at its second image");
    cr_assert(strstr(seen.log, "worker 2 (gpu 2) could not start: test: cuda:2 does not open"),
              "%s", seen.log);
    cr_assert(strstr(seen.log, "worker 1 (gpu 1) stopped: test: cuda:1 fell off the bus; its "
                     "image goes back to the queue"), "%s", seen.log);
    cr_assert_eq(atomic_load(&m.closed), 2, "both opened workers closed, the dead one too");
    char g[16];
    int zero = 0;
    for (int i = 0; i < 12; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "%s/%llu.png", items12[i].prompt_id,
                 (unsigned long long)items12[i].seed);
        cr_assert_eq(gpu_of(dir, rel, g, sizeof g), 12);
        zero += strcmp(g, "0") == 0;
    }
    cr_assert_eq(zero, atomic_load(&m.made[0]));
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, an_image_that_kills_two_devices_is_skipped, .timeout = 60) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrunw");
    MGen m = {.poison = "q2", .step_ms = {2, 2, 2}};
    Progress pr;
    GenRunOpts o = mopts(dir, &m, &pr, 3);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.workers_lost, 2);
    cr_assert_eq(rep.failed, 1);
    cr_assert_eq(rep.generated, 11, "the worker left made the rest");
    CsvTable c = read_csv(dir, "failed.csv");
    cr_assert_eq(c.n_rows, 2);
    cr_assert_str_eq(c.rows[1].field[0], "q2");
    cr_assert_str_eq(c.rows[1].field[3], "test: q2 kills the device");
    fmt_csv_deinit(&c);
    cr_assert(strstr(seen.log, "its image failed on two workers: skipped"), "%s", seen.log);
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, every_worker_lost_fails_with_the_first_error_and_never_hangs, .timeout = 60) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrunw");
    MGen m = {.fail_open = {1, 1}};
    Progress pr;
    GenRunOpts o = mopts(dir, &m, &pr, 2);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), ERR_GPU, "%s", err.msg);
    cr_assert(strstr(err.msg, "none of the 2 workers could start; the first: test: cuda:"),
              "%s", err.msg);
    cr_assert(strstr(err.msg, "does not open"), "%s", err.msg);
    CsvTable c = read_csv(dir, "metadata.csv");
    cr_assert_eq(c.n_rows, 1, "the header alone");
    fmt_csv_deinit(&c);
    gen_run_report_deinit(&rep);
    /* both die mid-run: the images made are kept, the run fails, a later run resumes */
    MGen m2 = {.die_at = {3, 2}};
    o = mopts(dir, &m2, &pr, 2);
    cr_assert_eq(gen_run(&o, &rep, &err), ERR_GPU, "%s", err.msg);
    cr_assert(strstr(err.msg, "no worker left (") && /* 9, or 8 and one both died on */
              strstr(err.msg, " of 12 images not made; run it again to resume): test: cuda:"),
              "%s", err.msg);
    cr_assert_eq(rep.generated, 3);
    c = read_csv(dir, "metadata.csv");
    cr_assert_eq(c.n_rows, 4);
    fmt_csv_deinit(&c);
    gen_run_report_deinit(&rep);
    MGen m3 = {0};
    o = mopts(dir, &m3, &pr, 2);
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.kept, 3);
    cr_assert_eq(rep.generated, 9);
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, cancel_reaches_every_worker_within_a_step, .timeout = 60) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrunw");
    MGen m = {.steps = 1000, .step_ms = {1, 1, 1}, .barrier = 1};
    atomic_store(&m.cancel_after, 30);
    Progress pr;
    GenRunOpts o = mopts(dir, &m, &pr, 3);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), ERR_CANCELLED, "%s", err.msg);
    cr_assert(strstr(err.msg, "cancelled after 0 of 12 images"), "%s", err.msg);
    for (int k = 0; k < 3; k++)
        cr_assert_leq(atomic_load(&m.late_steps[k]), 1, "worker %d went on for %d steps", k,
                      atomic_load(&m.late_steps[k]));
    cr_assert_eq(atomic_load(&m.closed), 3);
    char *ls = NULL;
    support_run(dir, &ls, NULL, "find . -name '*.png' -o -name '*.tmp-*'");
    cr_assert_str_eq(ls, "", "nothing half-written");
    free(ls);
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

Test(genrun, a_resumed_run_keeps_each_images_gpu_id, .timeout = 60) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrunw");
    MGen m = {.barrier = 1, .step_ms = {2, 2, 2}};
    Progress pr;
    GenRunOpts o = mopts(dir, &m, &pr, 3);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    gen_run_report_deinit(&rep);
    char before[12][16], g[16];
    for (int i = 0; i < 12; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "q%d/%d.png", i / 2, i % 2);
        gpu_of(dir, rel, before[i], sizeof before[i]);
    }
    char p[512];
    snprintf(p, sizeof p, "%s/q3/1.png", dir);
    cr_assert_eq(unlink(p), 0);
    static const char *const other[] = {"3"};
    MGen m2 = {0};
    o = mopts(dir, &m2, &pr, 1);
    o.worker_ids = other; /* one worker, on GPU 3 */
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.kept, 11);
    cr_assert_eq(rep.generated, 1);
    for (int i = 0; i < 12; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "q%d/%d.png", i / 2, i % 2);
        cr_assert_eq(gpu_of(dir, rel, g, sizeof g), 12);
        cr_assert_str_eq(g, i == 7 ? "3" : before[i], "%s", rel);
    }
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}

/* A metadata.csv that is a link leading out of the folder is not read on resume (the gpu_id
 * a resumed run keeps would copy another file's text into this one) and is replaced, not
 * written through. */
Test(genrun, a_linked_metadata_csv_is_not_read_on_resume, .timeout = 60) {
    char dir[256], out[256];
    support_tmpdir_make(dir, sizeof dir, "genrunl");
    support_tmpdir_make(out, sizeof out, "genrunl-out");
    MGen m = {.barrier = 1, .step_ms = {2, 2, 2}};
    Progress pr;
    GenRunOpts o = mopts(dir, &m, &pr, 3);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    gen_run_report_deinit(&rep);
    char meta[300];
    support_write_file(out, "meta.csv", "prompt_id,seed,path,gpu_id\nq0,0,q0/0.png,SECRET\n",
                       meta, sizeof meta);
    cr_assert_eq(support_sh("rm %s/metadata.csv && ln -s %s %s/metadata.csv", dir, meta, dir), 0);
    MGen m2 = {.barrier = 1, .step_ms = {2, 2, 2}};
    o = mopts(dir, &m2, &pr, 3);
    cr_assert_eq(gen_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.kept, 12);
    gen_run_report_deinit(&rep);
    char g[16];
    gpu_of(dir, "q0/0.png", g, sizeof g);
    cr_assert_str_neq(g, "SECRET", "the linked file's gpu_id was copied");
    cr_assert_eq(support_sh("test -f %s/metadata.csv && ! test -L %s/metadata.csv", dir, dir), 0);
    cr_assert_eq(support_sh("grep -q SECRET %s", meta), 0, "the outside file was changed");
    support_tmpdir_remove(dir);
    support_tmpdir_remove(out);
}

Test(genrun, one_worker_that_cannot_start_gives_its_error_as_it_is) {
    char dir[256];
    support_tmpdir_make(dir, sizeof dir, "genrunw");
    MGen m = {.fail_open = {1}};
    Progress pr;
    GenRunOpts o = mopts(dir, &m, &pr, 1);
    GenRunReport rep;
    Err err = {0};
    cr_assert_eq(gen_run(&o, &rep, &err), ERR_GPU, "%s", err.msg);
    cr_assert_str_eq(err.msg, "test: cuda:0 does not open");
    cr_assert_str_eq(seen.log, "", "the error alone says it");
    gen_run_report_deinit(&rep);
    support_tmpdir_remove(dir);
}
