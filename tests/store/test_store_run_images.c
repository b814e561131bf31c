/* Tests for src/store/store_run_images.c: a tuning run's sample images per step (issue 16):
 * latest step first, a step rendered again replaces its rows, truncation for a resumed run,
 * and refusals (no such run, empty path, negative step) that write nothing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_run_images.h"
#include "store_runs.h"

static Store *st;
static int64_t run;

static void setup(void) {
    Err err = {0};
    st = store_open(":memory:", &err);
    cr_assert_not_null(st, "%s", err.msg);
    cr_assert_eq(store_run_create(st, "tune-1", "tune", NULL, 0, "/tmp/t", &run, &err), 0, "%s",
                 err.msg);
}

static void teardown(void) { store_close(st); }

TestSuite(store_run_images, .init = setup, .fini = teardown);

static void add(int64_t step, int64_t seed, const char *label) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/t/samples/%lld-%lld-%s.png", (long long)step,
             (long long)seed, label ? label : "");
    Err err = {0};
    cr_assert_eq(store_run_image_add(st, run, step, seed, label, path, &err), 0, "%s", err.msg);
}

Test(store_run_images, latest_step_first_then_label_and_seed) {
    add(10, 1, "b");
    add(10, 0, "b");
    add(20, 1, "a");
    add(0, 0, NULL);
    add(20, 0, "a");
    add(10, 0, "a");
    StoreRunImage *v = NULL;
    size_t n = 0;
    Err err = {0};
    cr_assert_eq(store_run_images_list(st, run, &v, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 6);
    const struct { int64_t step, seed; const char *label; } want[] = {
        {20, 0, "a"}, {20, 1, "a"}, {10, 0, "a"}, {10, 0, "b"}, {10, 1, "b"}, {0, 0, ""}};
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(v[i].step, want[i].step, "row %zu", i);
        cr_assert_eq(v[i].seed, want[i].seed, "row %zu", i);
        cr_assert_str_eq(v[i].label, want[i].label, "row %zu", i);
        cr_assert_eq(v[i].run_id, run);
        cr_assert_gt(v[i].created, 0);
        char path[64];
        snprintf(path, sizeof path, "/tmp/t/samples/%lld-%lld-%s.png", (long long)want[i].step,
                 (long long)want[i].seed, want[i].label);
        cr_assert_str_eq(v[i].path, path);
    }
    store_run_images_free(v, n);
}

Test(store_run_images, same_step_seed_label_replaces) {
    Err err = {0};
    cr_assert_eq(store_run_image_add(st, run, 5, 3, "p", "/old.png", &err), 0, "%s", err.msg);
    cr_assert_eq(store_run_image_add(st, run, 5, 3, "p", "/new.png", &err), 0, "%s", err.msg);
    StoreRunImage *v = NULL;
    size_t n = 0;
    cr_assert_eq(store_run_images_list(st, run, &v, &n, &err), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0].path, "/new.png");
    store_run_images_free(v, n);
}

Test(store_run_images, truncate_drops_later_steps_only) {
    add(1, 0, "x");
    add(2, 0, "x");
    add(3, 0, "x");
    Err err = {0};
    cr_assert_eq(store_run_images_truncate(st, run, 1, &err), 0, "%s", err.msg);
    StoreRunImage *v = NULL;
    size_t n = 0;
    cr_assert_eq(store_run_images_list(st, run, &v, &n, &err), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(v[0].step, 1);
    store_run_images_free(v, n);
}

Test(store_run_images, refusals_write_nothing) {
    Err err = {0};
    cr_assert_eq(store_run_image_add(st, run + 99, 1, 0, "x", "/a.png", &err), ERR_CONFLICT);
    cr_assert(strstr(err.msg, "no run"), "%s", err.msg);
    cr_assert_eq(store_run_image_add(st, run, 1, 0, "x", "", &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "empty path"), "%s", err.msg);
    cr_assert_eq(store_run_image_add(st, run, -1, 0, "x", "/a.png", &err), ERR_USAGE);
    cr_assert(strstr(err.msg, "negative"), "%s", err.msg);
    StoreRunImage *v = NULL;
    size_t n = 7;
    cr_assert_eq(store_run_images_list(st, run, &v, &n, &err), 0);
    cr_assert_eq(n, 0);
    cr_assert_null(v);
}

/* A sample inside the store's folder is kept relative to it: the workspace moves whole. */
Test(store_run_images, paths_inside_the_workspace_move_with_it) {
    char a[] = "/tmp/easel-runimg-XXXXXX";
    cr_assert_not_null(mkdtemp(a));
    char db[128], img[128];
    snprintf(db, sizeof db, "%s/t.db", a);
    snprintf(img, sizeof img, "%s/samples/10-0.png", a);
    Err err = {0};
    Store *s2 = store_open(db, &err);
    cr_assert_not_null(s2, "%s", err.msg);
    int64_t r = 0;
    cr_assert_eq(store_run_create(s2, "t", "tune", NULL, 0, NULL, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(store_run_image_add(s2, r, 10, 0, "x", img, &err), 0, "%s", err.msg);
    cr_assert_eq(store_run_image_add(s2, r, 10, 1, "x", "/elsewhere/1.png", &err), 0);
    store_close(s2);
    char b[160];
    snprintf(b, sizeof b, "%s-moved", a);
    cr_assert_eq(rename(a, b), 0);
    snprintf(db, sizeof db, "%s/t.db", b);
    s2 = store_open(db, &err);
    cr_assert_not_null(s2, "%s", err.msg);
    StoreRunImage *v = NULL;
    size_t n = 0;
    cr_assert_eq(store_run_images_list(s2, r, &v, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    char want[200];
    snprintf(want, sizeof want, "%s/samples/10-0.png", b);
    cr_assert_str_eq(v[0].path, want);
    cr_assert_str_eq(v[1].path, "/elsewhere/1.png");
    store_run_images_free(v, n);
    store_close(s2);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", b);
    cr_assert_eq(system(cmd), 0);
}
