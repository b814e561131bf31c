/* Tests for ui/loader.c: loads run on the loader's own connection, newer requests replace
 * queued ones, results and failures come back through take, and wake is called. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader.h"
#include "store.h"
#include "support.h"
#include "support_fixtures.h"

static char dir[64], db[128];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int wakes, args_freed;

static void setup(void) {
    support_tmpdir_store(dir, sizeof dir, "loader", "l.db", db, sizeof db);
    wakes = args_freed = 0;
}

static void teardown(void) {
    support_tmpdir_remove(dir);
}

TestSuite(ui_loader, .init = setup, .fini = teardown, .timeout = 20);

static void on_wake(void *p) {
    (void)p;
    pthread_mutex_lock(&mu);
    wakes++;
    pthread_mutex_unlock(&mu);
}

static void free_arg(void *p) {
    pthread_mutex_lock(&mu);
    args_freed++;
    pthread_mutex_unlock(&mu);
    free(p);
}

/* The store's schema version times the argument; negative arguments fail. */
static void *load(Store *st, void *arg, Err *err) {
    int v = *(int *)arg;
    usleep(20000);
    if (v < 0) {
        err_set(err, ERR_FORMAT, "argument %d is negative", v);
        return NULL;
    }
    int *r = malloc(sizeof *r);
    *r = store_version(st) * v;
    return r;
}

static int *arg(int v) {
    int *p = malloc(sizeof *p);
    *p = v;
    return p;
}

static void *wait_take(UiLoader *l, int *failed, char *msg) {
    for (int i = 0; i < 1000; i++) {
        void *r = ui_loader_take(l, failed, msg, 256);
        if (r || *failed)
            return r;
        usleep(2000);
    }
    return NULL;
}

Test(ui_loader, loads_on_its_own_connection_and_wakes) {
    Err err = {0};
    UiLoader *l = ui_loader_new(db, on_wake, NULL, load, free_arg, free, &err);
    cr_assert_not_null(l, "%s", err.msg);
    ui_loader_request(l, arg(7));
    int failed = 0;
    char msg[256] = "";
    int *r = wait_take(l, &failed, msg);
    cr_assert_not_null(r);
    cr_assert_eq(*r, 7 * store_schema_version());
    free(r);
    cr_assert_eq(wakes, 1);
    cr_assert_not(ui_loader_busy(l));
    cr_assert_null(ui_loader_take(l, &failed, msg, sizeof msg), "taken once");
    ui_loader_request(l, arg(-1));
    r = wait_take(l, &failed, msg);
    cr_assert_null(r);
    cr_assert(failed);
    cr_assert(strstr(msg, "negative"), "%s", msg);
    ui_loader_free(l);
    cr_assert_eq(args_freed, 2);
}

Test(ui_loader, newer_request_replaces_a_queued_one) {
    UiLoader *l = ui_loader_new(db, NULL, NULL, load, free_arg, free, NULL);
    cr_assert_not_null(l);
    ui_loader_request(l, arg(1));   /* starts at once */
    ui_loader_request(l, arg(2));   /* queued ... */
    ui_loader_request(l, arg(3));   /* ... and replaced */
    cr_assert(ui_loader_busy(l));
    int last = 0, failed = 0;
    char msg[256];
    for (int i = 0; i < 1000 && last != 3 * store_schema_version(); i++) {
        int *r = ui_loader_take(l, &failed, msg, sizeof msg);
        if (r) {
            last = *r;
            free(r);
        }
        usleep(2000);
    }
    cr_assert_eq(last, 3 * store_schema_version());
    ui_loader_free(l);
    cr_assert_eq(args_freed, 3, "every argument freed once, the replaced one too");
}

Test(ui_loader, missing_store_fails_each_load) {
    char bad[160];
    snprintf(bad, sizeof bad, "%s/none.db", dir);
    UiLoader *l = ui_loader_new(bad, NULL, NULL, load, free_arg, free, NULL);
    ui_loader_request(l, arg(1));
    int failed = 0;
    char msg[256] = "";
    cr_assert_null(wait_take(l, &failed, msg));
    cr_assert(failed);
    cr_assert(strstr(msg, "none.db"), "%s", msg);
    ui_loader_free(l);
}
