/* hwmon — see hwmon.h. One sampler thread; each round queries the GPUs into a local
 * GpuInfo (no lock held during NVML calls), then takes the lock only to copy the result in
 * and append to the ring of history. */
#include "hwmon.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"

typedef struct Track {
    GpuInfo info;
    int ok;                         /* last query succeeded */
    int sampled;                    /* at least one round done */
    char error[ERR_MSG_LEN];
    double util[HWMON_HIST];       /* ring: oldest at `head` once full */
    double mem[HWMON_HIST];
    int head;
    int n;
} Track;

struct HwMonitor {
    GpuSystem *g;
    int n_gpus;
    double period_s;
    void (*on_sample)(void *user_data);
    void *user_data;
    pthread_t thread;
    int running;                    /* thread started */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;                       /* under lock */
    Track tracks[HWMON_MAX_GPUS];  /* under lock */
};

static void sample_round(HwMonitor *m) {
    GpuInfo *info = xmalloc(sizeof *info);
    for (int i = 0; i < m->n_gpus; i++) {
        Err err = {0};
        int ok = gpu_query(m->g, i, info, &err) == 0;
        double u = NAN, mm = NAN;
        if (ok && (info->valid & GPU_HAS_UTIL))
            u = info->util_gpu / 100.0;
        if (ok && (info->valid & GPU_HAS_MEM) && info->mem_total)
            mm = (double)info->mem_used / (double)info->mem_total;
        pthread_mutex_lock(&m->lock);
        Track *t = &m->tracks[i];
        t->ok = ok;
        t->sampled = 1;
        if (ok)
            t->info = *info;
        else
            snprintf(t->error, sizeof t->error, "%s", err.msg);
        int slot = (t->head + t->n) % HWMON_HIST;
        if (t->n == HWMON_HIST) {
            slot = t->head;
            t->head = (t->head + 1) % HWMON_HIST;
        } else {
            t->n++;
        }
        t->util[slot] = u;
        t->mem[slot] = mm;
        pthread_mutex_unlock(&m->lock);
    }
    free(info);
}

static void *sampler_main(void *arg) {
    HwMonitor *m = arg;
    for (;;) {
        sample_round(m);
        if (m->on_sample)
            m->on_sample(m->user_data);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)m->period_s;
        until.tv_nsec += (long)((m->period_s - (double)(time_t)m->period_s) * 1e9);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&m->lock);
        while (!m->stop && pthread_cond_timedwait(&m->wake, &m->lock, &until) == 0) {
        }
        int stop = m->stop;
        pthread_mutex_unlock(&m->lock);
        if (stop)
            break;
    }
    return NULL;
}

HwMonitor *hwmon_start(double period_s, void (*on_sample)(void *user_data), void *user_data) {
    HwMonitor *m = xcalloc(1, sizeof *m);
    m->g = gpu_open();
    m->n_gpus = gpu_count(m->g) < HWMON_MAX_GPUS ? gpu_count(m->g) : HWMON_MAX_GPUS;
    m->period_s = period_s > 0 ? period_s : 1.0;
    m->on_sample = on_sample;
    m->user_data = user_data;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->wake, NULL);
    if (m->n_gpus > 0) {
        sigset_t set, old;
        sigemptyset(&set);
        sigaddset(&set, SIGWINCH);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, &old);
        m->running = pthread_create(&m->thread, NULL, sampler_main, m) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return m;
}

void hwmon_stop(HwMonitor *m) {
    if (!m)
        return;
    if (m->running) {
        pthread_mutex_lock(&m->lock);
        m->stop = 1;
        pthread_cond_broadcast(&m->wake);
        pthread_mutex_unlock(&m->lock);
        pthread_join(m->thread, NULL);
    }
    gpu_close(m->g);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->wake);
    free(m);
}

int hwmon_count(const HwMonitor *m) { return m->n_gpus; }
const char *hwmon_reason(const HwMonitor *m) { return gpu_reason(m->g); }
const char *hwmon_driver_version(const HwMonitor *m) { return gpu_driver_version(m->g); }
const char *hwmon_nvml_version(const HwMonitor *m) { return gpu_nvml_version(m->g); }

int hwmon_snapshot(HwMonitor *m, int i, GpuInfo *info, double *util, double *mem, int max,
                    int *n, Err *err) {
    ASSERT(i >= 0 && i < m->n_gpus);
    *n = 0;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    Track *t = &m->tracks[i];
    if (!t->sampled) {
        memset(info, 0, sizeof *info);
        info->index = i;
        rc = err_set(err, ERR_NOTFOUND, "GPU %d: not sampled yet", i);
    } else {
        if (t->ok) {
            *info = t->info;
        } else {
            memset(info, 0, sizeof *info);
            info->index = i;
            rc = err_set(err, ERR_GPU, "%s", t->error);
        }
        int k = t->n < max ? t->n : max;
        for (int j = 0; j < k; j++) {
            int slot = (t->head + t->n - k + j) % HWMON_HIST;
            if (util)
                util[j] = t->util[slot];
            if (mem)
                mem[j] = t->mem[slot];
        }
        *n = k;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}
