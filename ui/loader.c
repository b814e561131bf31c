/* loader — one background thread per loader: request -> LOAD on its own Store -> result.
 *
 *   UI thread                      loader thread
 *   request(arg) ── pending ──────> takes pending, unlocks, LOAD(st, arg), locks
 *   tick: take() <── result ─────── stores result (replacing an untaken one), app_wake
 *
 * One mutex guards pending/result/flags; LOAD runs without it. See loader.h.
 */
#include "loader.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "log.h"

struct UiLoader {
    void (*wake)(void *);
    void *wake_data;
    char *db_path;
    UiLoadFn load;
    void (*free_arg)(void *);
    void (*free_result)(void *);
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    int stop;
    int has_pending;
    void *pending;
    int running;
    void *result;
    int failed;
    char msg[ERR_MSG_LEN];
};

static void drop_arg(UiLoader *l, void *arg) {
    if (arg && l->free_arg)
        l->free_arg(arg);
}

static void *loader_main(void *p) {
    UiLoader *l = p;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    Err err = {0};
    Store *st = store_open_existing(l->db_path, &err);
    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        if (!l->has_pending) {
            pthread_cond_wait(&l->cond, &l->lock);
            continue;
        }
        void *arg = l->pending;
        l->pending = NULL;
        l->has_pending = 0;
        l->running = 1;
        pthread_mutex_unlock(&l->lock);

        void *res = NULL;
        Err e = {0};
        if (st)
            res = l->load(st, arg, &e);
        else
            e = err;
        drop_arg(l, arg);

        pthread_mutex_lock(&l->lock);
        l->running = 0;
        if (l->result && l->free_result)
            l->free_result(l->result);
        l->result = res;
        l->failed = res == NULL;
        if (!res) {
            base_strlcpy(l->msg, e.msg[0] ? e.msg : "loading failed", sizeof l->msg);
            log_warn("ui loader: %s", l->msg);
        }
        pthread_mutex_unlock(&l->lock);
        if (l->wake)
            l->wake(l->wake_data);
        pthread_mutex_lock(&l->lock);
    }
    pthread_mutex_unlock(&l->lock);
    store_close(st);
    return NULL;
}

UiLoader *ui_loader_new(const char *db_path, void (*wake)(void *), void *wake_data,
                        UiLoadFn load, void (*free_arg)(void *), void (*free_result)(void *),
                        Err *err) {
    UiLoader *l = xcalloc(1, sizeof *l);
    l->wake = wake;
    l->wake_data = wake_data;
    l->db_path = xstrdup(db_path);
    l->load = load;
    l->free_arg = free_arg;
    l->free_result = free_result;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    if (pthread_create(&l->thread, NULL, loader_main, l) != 0) {
        err_set(err, ERR_NOMEM, "cannot start a loader thread");
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->cond);
        free(l->db_path);
        free(l);
        return NULL;
    }
    return l;
}

void ui_loader_free(UiLoader *l) {
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    l->stop = 1;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    if (l->has_pending)
        drop_arg(l, l->pending);
    if (l->result && l->free_result)
        l->free_result(l->result);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    free(l->db_path);
    free(l);
}

void ui_loader_request(UiLoader *l, void *arg) {
    pthread_mutex_lock(&l->lock);
    if (l->has_pending)
        drop_arg(l, l->pending);
    l->pending = arg;
    l->has_pending = 1;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

void *ui_loader_take(UiLoader *l, int *failed, char *msg, size_t msg_size) {
    pthread_mutex_lock(&l->lock);
    void *res = l->result;
    int f = l->failed;
    l->result = NULL;
    l->failed = 0;
    if (f && msg && msg_size)
        base_strlcpy(msg, l->msg, msg_size);
    pthread_mutex_unlock(&l->lock);
    if (failed)
        *failed = f;
    return res;
}

int ui_loader_busy(UiLoader *l) {
    pthread_mutex_lock(&l->lock);
    int b = l->has_pending || l->running;
    pthread_mutex_unlock(&l->lock);
    return b;
}
