/* End-to-end test of the Monitor screen: bin/easel monitor in a tmux pane on a temporary
 * store while this process writes a run's metrics step by step (as a training job in another
 * process does); the pane must show the curves and move as new steps arrive.
 *
 * Skipped (with the reason) when tmux or bin/easel is missing. Waits poll the pane with a
 * generous deadline; nothing here measures time.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "store_runs.h"
#include "support.h"

static char dir[64];
static char sock[64];
static char easel[512];
static Store *st;
static int64_t run_id;

static char *capture(void) {
    return support_tmux_capture(sock);
}

/* Wait until the pane shows TEXT (up to ~10 s); fails the test with the screen otherwise. */
static void wait_for(const char *text) {
    support_tmux_wait_for(sock, text);
}

static void keys(const char *k) {
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e %s", sock, k), 0, "send-keys %s", k);
}

static const char *const heads[6] = {"spatial", "icono", "style", "fidelity", "material",
                                     "combined"};

/* Steps FROM..TO of a run whose losses fall and whose accuracies rise. */
static void write_steps(int from, int to) {
    StoreMetric m[64];
    Err err = {0};
    for (int s = from; s <= to; s++) {
        size_t n = 0;
        for (int h = 0; h < 6; h++) {
            memset(&m[n], 0, sizeof m[n]);
            strcpy(m[n].split, "train");
            snprintf(m[n].name, sizeof m[n].name, "%s_loss", heads[h]);
            m[n].step = s;
            m[n].value = 0.7 * exp(-s / 30.0) + 0.02 * h;
            n++;
            memset(&m[n], 0, sizeof m[n]);
            strcpy(m[n].split, "val");
            snprintf(m[n].name, sizeof m[n].name, "%s_acc", heads[h]);
            m[n].step = s;
            m[n].value = 1 - 0.5 * exp(-s / 20.0);
            n++;
        }
        const char *sys[] = {"step", "epoch", "epochs"};
        double v[] = {s, s / 10.0, 20};
        for (int k = 0; k < 3; k++) {
            memset(&m[n], 0, sizeof m[n]);
            strcpy(m[n].split, "sys");
            strcpy(m[n].name, sys[k]);
            m[n].step = s;
            m[n].value = v[k];
            n++;
        }
        cr_assert_eq(store_metrics_add(st, run_id, m, n, &err), 0, "%s", err.msg);
    }
}

static void setup(void) {
    if (!support_have("tmux"))
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    support_easel_path(easel, sizeof easel);
    support_tmpdir_make(dir, sizeof dir, "montmux");
    snprintf(sock, sizeof sock, "easel-mon-%d", (int)getpid());
    char path[128];
    snprintf(path, sizeof path, "%s/t.db", dir);
    Err err = {0};
    st = store_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    cr_assert_eq(store_run_create(st, "live-run", "train-reward", "{}", 0, dir, &run_id, &err),
                 0);
    int64_t other;
    cr_assert_eq(store_run_create(st, "old-run", "train-reward", "{}", 0, dir, &other, &err), 0);
    StoreMetric m = {.split = "train", .name = "spatial_loss", .step = 1, .value = 0.5};
    cr_assert_eq(store_metrics_add(st, other, &m, 1, &err), 0);
    store_run_set_state(st, other, "succeeded", &err);
}

static void teardown(void) {
    if (sock[0])
        support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    store_close(st);
    support_tmpdir_remove(dir);
}

TestSuite(monitor_tmux, .init = setup, .fini = teardown, .timeout = 60);

/* The number after "step " on the screen's x axis labels (the newest step plotted). */
static int shown_step(void) {
    const char *s = capture(), *p = s;
    int best = -1;
    while ((p = strstr(p, "step "))) {
        int v;
        if (sscanf(p + 5, "%d", &v) == 1 && v > best)
            best = v;
        p += 5;
    }
    return best;
}

Test(monitor_tmux, curves_move_while_the_run_writes) {
    write_steps(1, 10);
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 140 -y 40 "
                    "'exec %s --db t.db monitor live-run'", dir, sock, easel);
    wait_for("Monitor: live-run");
    wait_for("spatial loss");
    wait_for("step 10");
    char before[65536];
    strcpy(before, capture());
    /* braille dots are on the screen: the curves are drawn */
    cr_assert(strstr(before, "\xe2\xa0") || strstr(before, "\xe2\xa1") ||
                  strstr(before, "\xe2\xa2") || strstr(before, "\xe2\xa3"),
              "no braille plot:\n%s", before);
    /* the run goes on in "another process": the screen follows within a second or two */
    write_steps(11, 40);
    wait_for("step 40");
    cr_assert_eq(shown_step(), 40);
    cr_assert_str_neq(before, capture(), "the plots did not change");
    /* pages: accuracy, and the latest value in the panel title */
    keys("a");
    wait_for("spatial accuracy");
    /* compare with the other run, then pick it as the main run */
    keys("c");
    wait_for("Pick a run to compare with");
    wait_for("old-run");
    keys("Enter"); /* the list is newest first: old-run */
    wait_for("comparing");
    wait_for("vs old-run");
    /* the run ends: its state follows */
    Err err = {0};
    cr_assert_eq(store_run_set_state(st, run_id, "succeeded", &err), 0);
    write_steps(41, 41);
    wait_for("[succeeded]");
    keys("q");
}

/* The same with a real training process: `easel train` on the demo workspace's files in one
 * tmux window, `easel monitor` in another; the plotted step must advance while it trains. */
Test(monitor_tmux, follows_a_real_training_process) {
    char root[512];
    if (!getcwd(root, sizeof root) || access("data/multihead_ratings.csv", R_OK) != 0)
        cr_skip_test("data/ (the demo workspace) not found from the repository root");
    cr_assert_eq(support_sh("cd %s && %s --db d.db init >/dev/null && "
                    "%s --db d.db import prompts %s/data/prompts.csv >/dev/null && "
                    "%s --db d.db import images %s/data/images >/dev/null && "
                    "%s --db d.db import ratings %s/data/multihead_ratings.csv >/dev/null",
                    dir, easel, easel, root, easel, root, easel, root),
                 0, "demo import failed");
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 140 -y 40 "
                    "'%s --db d.db train --epochs 100000 --save-every 0 --threads 1 "
                    "--name live --output runs/live 2>train.log'",
                    dir, sock, easel);
    /* wait until the run exists and has metrics, then watch it from a second window */
    for (int i = 0; i < 500; i++) {
        if (support_sh("cd %s && %s --db d.db runs show live 2>/dev/null | grep -q 'progress'", dir,
               easel) == 0)
            break;
        usleep(20000);
    }
    cr_assert_eq(support_sh("cd %s && tmux -L %s new-window -t e: 'exec %s --db d.db monitor live'",
                    dir, sock, easel), 0);
    wait_for("Monitor: live");
    wait_for("[running]");
    int first = -1;
    for (int i = 0; i < 500 && first < 0; i++) {
        first = shown_step();
        usleep(20000);
    }
    cr_assert_gt(first, 0, "no step shown:\n%s", capture());
    int later = first;
    for (int i = 0; i < 500 && later <= first; i++) {
        later = shown_step();
        usleep(20000);
    }
    cr_assert_gt(later, first, "the curves did not move:\n%s", capture());
    /* stop the training with Ctrl-C: the run ends cancelled, and the Monitor says so */
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e:0 C-c", sock), 0);
    wait_for("[cancelled]");
    keys("q");
}

/* One step of loss for RUN on store S (enough for the panels to have data). */
static void one_step(Store *s, int64_t run) {
    StoreMetric m = {.split = "train", .name = "spatial_loss", .step = 1, .value = 0.5};
    Err err = {0};
    cr_assert_eq(store_metrics_add(s, run, &m, 1, &err), 0, "%s", err.msg);
}

/* Without RUN the Monitor follows the newest running run: from "No training run yet" to a run
 * started elsewhere, then to a newer one; r opens the picker on the run shown and picking a
 * run pins it (a newer run does not take over); p follows again. */
Test(monitor_tmux, follows_the_newest_running_run_unless_pinned) {
    char path[128];
    snprintf(path, sizeof path, "%s/f.db", dir);
    Err err = {0};
    Store *s = store_open(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 140 -y 40 "
                            "'exec %s --db f.db monitor'", dir, sock, easel);
    wait_for("No training run yet");
    int64_t first, second, third;
    cr_assert_eq(store_run_create(s, "first", "train-reward", "{}", 0, dir, &first, &err), 0);
    one_step(s, first);
    wait_for("Monitor: first  [running]  following newest run");
    cr_assert_eq(store_run_set_state(s, first, "succeeded", &err), 0);
    cr_assert_eq(store_run_create(s, "second", "train-reward", "{}", 0, dir, &second, &err), 0);
    one_step(s, second);
    wait_for("Monitor: second  [running]  following newest run");
    /* r: the picker's selection is on the run shown (second, the newest, first in the list);
     * Down Enter picks the one below it (first) and pins it */
    keys("r");
    wait_for("Pick a run");
    keys("Down");
    keys("Enter");
    wait_for("Monitor: first  [succeeded]  pinned");
    cr_assert_eq(store_run_create(s, "third", "train-reward", "{}", 0, dir, &third, &err), 0);
    one_step(s, third);
    usleep(1500000); /* the follower looks once a second: it must leave a pinned run alone */
    cr_assert(strstr(capture(), "Monitor: first  [succeeded]  pinned"), "%s", capture());
    keys("p");
    wait_for("Monitor: third  [running]  following newest run");
    keys("r");
    wait_for("Pick a run");
    keys("Enter"); /* the selection starts on the run shown: third */
    wait_for("Monitor: third  [running]  pinned");
    /* the picker is the list widget (ui/list.h): End selects the oldest run */
    keys("r");
    wait_for("Pick a run");
    keys("End");
    keys("Enter");
    wait_for("Monitor: first  [succeeded]  pinned");
    keys("q");
    store_close(s);
}

/* A run that starts and ends between two looks of the follower (a short job queued from the
 * Jobs form while another screen was shown) still takes over when it is newer than the run
 * shown: the header says "following newest run", so it must not stay on an older one. */
Test(monitor_tmux, follows_a_newer_run_that_already_ended) {
    char path[128];
    snprintf(path, sizeof path, "%s/g.db", dir);
    Err err = {0};
    Store *s = store_open(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    int64_t first, second;
    cr_assert_eq(store_run_create(s, "first", "train-reward", "{}", 0, dir, &first, &err), 0);
    one_step(s, first);
    cr_assert_eq(store_run_set_state(s, first, "succeeded", &err), 0);
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 140 -y 40 "
                            "'exec %s --db g.db monitor'", dir, sock, easel);
    wait_for("Monitor: first  [succeeded]  following newest run");
    cr_assert_eq(store_run_create(s, "second", "train-reward", "{}", 0, dir, &second, &err), 0);
    one_step(s, second);
    cr_assert_eq(store_run_set_state(s, second, "failed", &err), 0);
    wait_for("Monitor: second  [failed]  following newest run");
    keys("q");
    store_close(s);
}

/* The header line fits 120 columns with a default run name (train-DATE-TIME) and the longest
 * page name: its last item, the y axis (g), is on the screen (it was cut to "linea"). */
Test(monitor_tmux, the_header_fits_120_columns) {
    char path[128];
    snprintf(path, sizeof path, "%s/h.db", dir);
    Err err = {0};
    Store *s = store_open(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    int64_t id;
    cr_assert_eq(store_run_create(s, "train-20261206-163815", "train-reward", "{}", 0, dir, &id,
                                  &err), 0);
    one_step(s, id);
    cr_assert_eq(store_run_set_state(s, id, "succeeded", &err), 0);
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 120 -y 36 "
                            "'exec %s --db h.db monitor'", dir, sock, easel);
    wait_for("Monitor: train-20261206-163815  [succeeded]  following newest run");
    keys("a"); /* the accuracy page: the longest page name */
    wait_for("accuracy (l/a/f)");
    wait_for("linear y (g)");
    keys("q");
    store_close(s);
}
