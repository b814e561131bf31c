/* The Monitor on generator tuning runs (issue 16), in a tmux pane: a store with a fake-but-real
 * tune run — its metrics (loss, acc, margin, kl, lr, grad_norm, pairs_per_s per optimizer
 * step, online rounds' per-head rewards), a claimed job with progress, and sample PNGs written
 * by this test at two steps — shows the curves, the latest values, the job's step and the
 * latest step's sample in half blocks (tmux shows no sixel); [ steps back to the earlier
 * step's sample (another colour), ] forward again, n to the step's next image. A tune-eval
 * run shows per-head win rate and mean gain.
 *
 * Skipped (with the reason) when tmux or bin/easel is missing.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "store_jobs.h"
#include "store_run_images.h"
#include "store_runs.h"
#include "support.h"
#include "support_fixtures.h"

#define HALF_BLOCKS "\xe2\x96\x80\xe2\x96\x80\xe2\x96\x80\xe2\x96\x80"

static char dir[64], sock[64], easel[512];
static Store *st;

static void keys(const char *k) {
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e %s", sock, k), 0, "send-keys %s", k);
}

/* The pane with its colours (tmux capture-pane -e), for telling the samples apart. */
static char *capture_e(void) {
    static char buf[1 << 18];
    char cmd[128];
    snprintf(cmd, sizeof cmd, "tmux -L %s capture-pane -e -p -t e", sock);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    pclose(f);
    return buf;
}

/* Wait up to ~10 s until the coloured pane holds NEEDLE. */
static void wait_e(const char *needle) {
    for (int i = 0; i < 100; i++) {
        if (strstr(capture_e(), needle))
            return;
        usleep(100000);
    }
    cr_assert_fail("'%s' not in the pane:\n%s", needle, support_tmux_capture(sock));
}

static void metric(StoreMetric *m, const char *split, const char *name, int64_t step, double v) {
    memset(m, 0, sizeof *m);
    snprintf(m->split, sizeof m->split, "%s", split);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->step = step;
    m->value = v;
}

/* A solid W x W PNG of one colour at DIR/NAME; its path into PATH. */
static void solid_png(const char *name, const unsigned char rgb[3], char *path, size_t n) {
    unsigned char px[16 * 16 * 3];
    for (int i = 0; i < 16 * 16; i++)
        memcpy(px + 3 * i, rgb, 3);
    snprintf(path, n, "%s/%s", dir, name);
    support_png_write(path, 16, 16, px);
}

static void setup(void) {
    if (!support_have("tmux"))
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    support_easel_path(easel, sizeof easel);
    support_tmpdir_make(dir, sizeof dir, "montune");
    snprintf(sock, sizeof sock, "easel-mtu-%d", (int)getpid());
    char path[128];
    snprintf(path, sizeof path, "%s/t.db", dir);
    Err err = {0};
    st = store_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
}

static void teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    store_close(st);
    support_tmpdir_remove(dir);
}

TestSuite(monitor_tune_tmux, .init = setup, .fini = teardown, .timeout = 90);

static void start(const char *run) {
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 140 -y 40 "
                            "'env -u BXFI_MAP TERM=tmux-256color %s --db t.db --graphics blocks "
                            "monitor %s; sleep 60'", dir, sock, easel, run);
}

Test(monitor_tune_tmux, curves_values_job_and_samples_by_step) {
    Err err = {0};
    /* the job that drives the run, claimed and half done (as a worker's tune job) */
    JobNew jn = {.kind = "tune", .params = "{}"};
    int64_t job = 0;
    cr_assert_eq(store_job_add(st, &jn, &job, &err), 0, "%s", err.msg);
    cr_assert_eq(support_job_claim(st, "w", "h", (int)getpid()), job);
    int64_t run;
    cr_assert_eq(store_run_create(st, "tune-a", "tune", "{}", job, dir, &run, &err), 0, "%s",
                 err.msg);
    static const char *const names[] = {"loss", "acc", "margin", "kl", "lr", "grad_norm",
                                        "pairs_per_s"};
    StoreMetric m[16];
    for (int s = 1; s <= 20; s++) {
        double v[] = {0.6931 * exp(-s / 15.0), 0.5 + s / 50.0, 0.01 * s, 0.001 * s,
                      5e-5 * fmin(1.0, s / 5.0), 1.0 / s, 12.5};
        for (int k = 0; k < 7; k++)
            metric(&m[k], "train", names[k], s, v[k]);
        cr_assert_eq(store_metrics_add(st, run, m, 7, &err), 0, "%s", err.msg);
    }
    static const char *const heads[] = {"spatial", "icono", "style", "fidelity", "material",
                                        "combined"};
    for (int r = 1; r <= 3; r++) {
        for (int h = 0; h < 6; h++) {
            char name[40];
            snprintf(name, sizeof name, "reward_%s", heads[h]);
            metric(&m[h], "round", name, r, h == 2 ? 0.5 * r : 0.1 * h - 0.05 * r);
        }
        cr_assert_eq(store_metrics_add(st, run, m, 6, &err), 0, "%s", err.msg);
    }
    /* two progress reports a moment apart: the job has a rate, so an ETA */
    cr_assert_eq(store_job_progress(st, job, 8, 20, "steps", &err), 0, "%s", err.msg);
    usleep(200000);
    cr_assert_eq(store_job_progress(st, job, 10, 20, "steps", &err), 0, "%s", err.msg);
    /* samples: step 10 red (two seeds: red, blue), step 20 green */
    static const unsigned char red[3] = {255, 0, 0}, green[3] = {0, 255, 0},
                               blue[3] = {0, 0, 255};
    char p[256];
    solid_png("s10-0.png", red, p, sizeof p);
    cr_assert_eq(store_run_image_add(st, run, 10, 0, "a fox", p, &err), 0, "%s", err.msg);
    solid_png("s10-1.png", blue, p, sizeof p);
    cr_assert_eq(store_run_image_add(st, run, 10, 1, "a fox", p, &err), 0, "%s", err.msg);
    solid_png("s20-0.png", green, p, sizeof p);
    cr_assert_eq(store_run_image_add(st, run, 20, 0, "a fox", p, &err), 0, "%s", err.msg);

    start("tune-a");
    support_tmux_wait_for(sock, "Monitor: tune-a");
    support_tmux_wait_for(sock, "reward margin");
    support_tmux_wait_for(sock, "KL proxy");
    support_tmux_wait_for(sock, "grad norm");
    support_tmux_wait_for(sock, "pairs/s");
    support_tmux_wait_for(sock, "reward per head, by round");
    support_tmux_wait_for(sock, "step 20"); /* the curves' x axis */
    support_tmux_wait_for(sock, "10/20 steps (job #");
    support_tmux_wait_for(sock, "round 3\xe2\x94\x82"); /* the rounds x axis, at the edge */
    support_tmux_wait_for(sock, "ETA 0m"); /* 10 steps left at ~10 steps/s */
    support_tmux_wait_for(sock, "pairs_per_s"); /* the latest values */
    support_tmux_wait_for(sock, "12.5");
    support_tmux_wait_for(sock, "round 3: mean reward");
    support_tmux_wait_for(sock, "samples step 20 (latest)");
    support_tmux_wait_for(sock, HALF_BLOCKS);
    /* green in 256 colours (46) for step 20; no red (196) yet */
    wait_e("38;5;46m");
    cr_assert_null(strstr(capture_e(), "38;5;196m"), "red before [");
    keys("[");
    support_tmux_wait_for(sock, "samples step 10");
    support_tmux_wait_for(sock, "1/2 seed 0 a fox");
    wait_e("38;5;196m");
    keys("n");
    support_tmux_wait_for(sock, "2/2 seed 1 a fox");
    wait_e("38;5;21m"); /* blue */
    keys("]");
    support_tmux_wait_for(sock, "samples step 20 (latest)");
    wait_e("38;5;46m");
    /* a new step's sample arrives while following the latest */
    solid_png("s30-0.png", blue, p, sizeof p);
    cr_assert_eq(store_run_image_add(st, run, 30, 0, "a fox", p, &err), 0, "%s", err.msg);
    metric(&m[0], "train", "loss", 30, 0.1);
    cr_assert_eq(store_metrics_add(st, run, m, 1, &err), 0, "%s", err.msg);
    support_tmux_wait_for(sock, "samples step 30 (latest)");
    keys("q");
}

Test(monitor_tune_tmux, tune_eval_shows_win_rate_and_gain) {
    Err err = {0};
    int64_t run;
    cr_assert_eq(store_run_create(st, "eval-a", "tune-eval", "{}", 0, dir, &run, &err), 0, "%s",
                 err.msg);
    static const char *const heads[] = {"spatial", "icono", "style", "fidelity", "material",
                                        "combined"};
    StoreMetric m[32];
    size_t n = 0;
    for (int h = 0; h < 6; h++) {
        char name[40];
        snprintf(name, sizeof name, "win_%s", heads[h]);
        metric(&m[n++], "eval", name, 0, h == 5 ? 0.625 : 0.25 * (h % 3));
        snprintf(name, sizeof name, "gain_%s", heads[h]);
        metric(&m[n++], "eval", name, 0, h == 5 ? 0.1234 : -0.5);
    }
    metric(&m[n++], "sys", "pairs", 0, 8);
    cr_assert_eq(store_metrics_add(st, run, m, n, &err), 0, "%s", err.msg);
    cr_assert_eq(store_run_set_state(st, run, "succeeded", &err), 0);
    start("eval-a");
    support_tmux_wait_for(sock, "Monitor: eval-a");
    support_tmux_wait_for(sock, "tune-eval");
    support_tmux_wait_for(sock, "on 8 (prompt, seed) pairs");
    char *s = support_tmux_capture(sock);
    const char *c = strstr(s, "combined");
    cr_assert_not_null(c, "%s", s);
    cr_assert_not_null(strstr(c, "62.5%"), "%s", s);
    cr_assert_not_null(strstr(c, "+0.1234"), "%s", s);
    const char *sp = strstr(s, "spatial");
    cr_assert_not_null(sp, "%s", s);
    cr_assert_not_null(strstr(sp, "0.0%"), "%s", s);
    cr_assert_not_null(strstr(sp, "-0.5000"), "%s", s);
    keys("q");
}
