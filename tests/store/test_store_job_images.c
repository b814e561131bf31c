/* Tests for the images a job wrote (src/store/store_jobs.c: store_job_image_note,
 * store_job_latest_image): the Jobs screen's preview of a generate job reads the latest. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_catalog.h"
#include "store_jobs.h"

static Store *st;

static void setup(void) {
    Err err = {0};
    st = store_open(":memory:", &err);
    cr_assert_not_null(st, "%s", err.msg);
}

static void teardown(void) { store_close(st); }

TestSuite(store_job_images, .init = setup, .fini = teardown);

static int64_t job(const char *kind) {
    Err err = {0};
    int64_t id = 0;
    JobNew j = {.kind = kind};
    cr_assert_eq(store_job_add(st, &j, &id, &err), 0, "%s", err.msg);
    return id;
}

static int64_t image(const char *path) {
    Err err = {0};
    int64_t id = 0;
    StoreImage im = {.path = (char *)path, .width = 64, .height = 64};
    cr_assert_eq(store_image_add(st, &im, &id, &err), 0, "%s", err.msg);
    return id;
}

static int64_t latest(int64_t job_id, char **path) {
    Err err = {0};
    int64_t id = -1;
    int rc = store_job_latest_image(st, job_id, &id, path, &err);
    if (rc == ERR_NOTFOUND)
        return 0;
    cr_assert_eq(rc, 0, "%s", err.msg);
    return id;
}

Test(store_job_images, none_until_noted_then_the_latest_per_job) {
    int64_t gen = job("generate"), other = job("generate");
    Err err = {0};
    char *path = (char *)"untouched";
    cr_assert_eq(store_job_latest_image(st, gen, NULL, &path, &err), ERR_NOTFOUND);
    cr_assert_null(path, "no path on ERR_NOTFOUND");
    cr_assert(strstr(err.msg, "no image"), "%s", err.msg);
    int64_t a = image("/data/gen/p1/0.png"), b = image("/data/gen/p1/1.png"),
            c = image("/data/gen/p2/0.png");
    cr_assert_eq(store_job_image_note(st, gen, a, &err), 0, "%s", err.msg);
    cr_assert_eq(latest(gen, &path), a);
    cr_assert_str_eq(path, "/data/gen/p1/0.png");
    free(path);
    cr_assert_eq(store_job_image_note(st, gen, b, &err), 0, "%s", err.msg);
    cr_assert_eq(store_job_image_note(st, other, c, &err), 0, "%s", err.msg);
    cr_assert_eq(latest(gen, NULL), b, "the last one it wrote");
    cr_assert_eq(latest(other, NULL), c, "each job its own");
    /* written again (a resumed job keeps or redoes it): the latest again */
    cr_assert_eq(store_job_image_note(st, gen, a, &err), 0, "%s", err.msg);
    cr_assert_eq(latest(gen, NULL), a);
    cr_assert_eq(latest(job("train-reward"), NULL), 0, "a job that wrote none");
}

Test(store_job_images, unknown_job_or_image_is_refused) {
    int64_t gen = job("generate"), a = image("/data/a.png");
    Err err = {0};
    cr_assert_eq(store_job_image_note(st, gen, a + 100, &err), ERR_CONFLICT, "%s", err.msg);
    cr_assert_eq(store_job_image_note(st, gen + 100, a, &err), ERR_CONFLICT, "%s", err.msg);
    cr_assert_eq(latest(gen, NULL), 0, "nothing recorded");
}
