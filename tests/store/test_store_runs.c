/* Tests for src/store/store_runs.c: runs, metrics (replace on repeat, incremental reads),
 * checkpoints (best moves), scores. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_catalog.h"
#include "store_runs.h"

static Store *st;

static void setup(void) {
    Err err = {0};
    st = store_open(":memory:", &err);
    cr_assert_not_null(st, "%s", err.msg);
}

static void teardown(void) { store_close(st); }

TestSuite(store_runs, .init = setup, .fini = teardown);

static StoreMetric metric(const char *split, const char *name, int64_t step, double v) {
    StoreMetric m = {0};
    strcpy(m.split, split);
    strcpy(m.name, name);
    m.step = step;
    m.epoch = step / 10.0;
    m.value = v;
    return m;
}

Test(store_runs, create_find_list_state) {
    Err err = {0};
    int64_t a = 0, b = 0;
    cr_assert_eq(store_run_create(st, "r1", "train-reward", "{\"x\":1}", 0, "/tmp/o", &a, &err),
                 0, "%s", err.msg);
    cr_assert_eq(store_run_create(st, "r2", "eval-reward", NULL, 0, NULL, &b, &err), 0);
    cr_assert_eq(store_run_create(st, "r1", "train-reward", NULL, 0, NULL, NULL, &err),
                 ERR_CONFLICT);
    cr_assert(strstr(err.msg, "r1"), "%s", err.msg);
    StoreRun r = {0};
    cr_assert_eq(store_run_find(st, "r1", &r, &err), 0);
    cr_assert_eq(r.id, a);
    cr_assert_str_eq(r.state, "running");
    cr_assert_str_eq(r.output, "/tmp/o");
    store_run_deinit(&r);
    char idtext[16];
    snprintf(idtext, sizeof idtext, "%lld", (long long)b);
    cr_assert_eq(store_run_find(st, idtext, &r, &err), 0);
    cr_assert_str_eq(r.name, "r2");
    cr_assert_str_eq(r.config, "{}");
    store_run_deinit(&r);
    cr_assert_eq(store_run_find(st, "nope", &r, &err), ERR_NOTFOUND);
    cr_assert_eq(store_run_set_state(st, a, "succeeded", &err), 0);
    StoreRun *v = NULL;
    size_t n = 0;
    cr_assert_eq(store_runs_list(st, NULL, &v, &n, &err), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0].name, "r2"); /* newest first */
    cr_assert_str_eq(v[1].state, "succeeded");
    store_runs_free(v, n);
    cr_assert_eq(store_runs_list(st, "train-reward", &v, &n, &err), 0);
    cr_assert_eq(n, 1);
    store_runs_free(v, n);
    char *u = store_run_unique_name(st, "train");
    cr_assert(strncmp(u, "train-", 6) == 0);
    cr_assert_eq(store_run_create(st, u, "train-reward", NULL, 0, NULL, NULL, &err), 0);
    char *u2 = store_run_unique_name(st, "train");
    cr_assert_str_neq(u, u2);
    free(u);
    free(u2);
}

Test(store_runs, metrics_replace_and_incremental) {
    Err err = {0};
    int64_t id;
    cr_assert_eq(store_run_create(st, "m", "train-reward", NULL, 0, NULL, &id, &err), 0);
    StoreMetric m[3] = {metric("train", "loss", 1, 0.9), metric("train", "loss", 2, 0.8),
                        metric("val", "spatial_f1", 2, 0.5)};
    cr_assert_eq(store_metrics_add(st, id, m, 3, &err), 0, "%s", err.msg);
    StoreMetric *v = NULL;
    size_t n = 0;
    cr_assert_eq(store_metrics_list(st, id, 0, &v, &n, &err), 0);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(v[0].split, "train");
    cr_assert_eq(v[1].step, 2);
    cr_assert_str_eq(v[2].name, "spatial_f1");
    double t_last = v[2].t;
    free(v);
    /* the same step again replaces, it does not duplicate */
    StoreMetric again = metric("train", "loss", 2, 0.7);
    again.t = t_last + 1;
    cr_assert_eq(store_metrics_add(st, id, &again, 1, &err), 0);
    cr_assert_eq(store_metrics_list(st, id, 0, &v, &n, &err), 0);
    cr_assert_eq(n, 3);
    cr_assert_float_eq(v[1].value, 0.7, 1e-12);
    free(v);
    /* only what came after t_last */
    cr_assert_eq(store_metrics_list(st, id, t_last, &v, &n, &err), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(v[0].step, 2);
    free(v);
    double val;
    int64_t step;
    cr_assert_eq(store_metric_last(st, id, "train", "loss", &val, &step, &err), 0);
    cr_assert_eq(step, 2);
    cr_assert_float_eq(val, 0.7, 1e-12);
    cr_assert_eq(store_metric_last(st, id, "train", "nothing", &val, &step, &err), ERR_NOTFOUND);
    cr_assert_eq(store_metrics_truncate(st, id, 1, &err), 0);
    cr_assert_eq(store_metrics_list(st, id, 0, &v, &n, &err), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(v[0].step, 1);
    free(v);
}

Test(store_runs, checkpoints_best_moves) {
    Err err = {0};
    int64_t id;
    cr_assert_eq(store_run_create(st, "c", "train-reward", NULL, 0, NULL, &id, &err), 0);
    cr_assert_eq(store_checkpoint_put(st, id, "best", "/o/best", 10, 1, "{\"f1\":0.5}", &err), 0);
    cr_assert_eq(store_checkpoint_put(st, id, "checkpoint-2", "/o/checkpoint-2", 20, 2, NULL,
                                      &err), 0);
    cr_assert_eq(store_checkpoint_put(st, id, "best", "/o/best", 30, 3, "{\"f1\":0.7}", &err), 0);
    StoreCheckpoint *c = NULL;
    size_t n = 0;
    cr_assert_eq(store_checkpoints_list(st, id, &c, &n, &err), 0);
    cr_assert_eq(n, 2);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].name, "best") == 0) {
            found = 1;
            cr_assert_eq(c[i].step, 30);
            cr_assert_str_eq(c[i].metrics, "{\"f1\":0.7}");
        }
    }
    cr_assert(found);
    store_checkpoints_free(c, n);
}

Test(store_runs, scores_roundtrip) {
    Err err = {0};
    StoreScore s[2] = {{.image_id = 999, .head = "combined", .value = 0.25},
                       {.image_id = 999, .head = "spatial", .value = -1.5}};
    /* image 999 does not exist: the foreign key refuses, nothing is written */
    cr_assert_eq(store_scores_put(st, "/o/best", s, 2, &err), ERR_CONFLICT, "%s", err.msg);
    StoreScore *v = NULL;
    size_t n = 9;
    cr_assert_eq(store_scores_list(st, "/o/best", 0, &v, &n, &err), 0);
    cr_assert_eq(n, 0);
    free(v);
    StoreImage img = {.path = "a.png"};
    int64_t iid;
    cr_assert_eq(store_image_add(st, &img, &iid, &err), 0, "%s", err.msg);
    s[0].image_id = s[1].image_id = iid;
    cr_assert_eq(store_scores_put(st, "/o/best", s, 2, &err), 0, "%s", err.msg);
    s[0].value = 0.5; /* scoring again replaces */
    cr_assert_eq(store_scores_put(st, "/o/best", s, 1, &err), 0);
    cr_assert_eq(store_scores_list(st, "/o/best", iid, &v, &n, &err), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0].head, "combined");
    cr_assert_float_eq(v[0].value, 0.5, 1e-12);
    cr_assert_float_eq(v[1].value, -1.5, 1e-12);
    free(v);
}
