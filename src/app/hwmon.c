/* hwmon — see hwmon.h. One sampler thread; each round reads /proc and queries the GPUs into
 * locals (no lock held during file reads or NVML calls), then takes the lock only to copy the
 * result in and append to the rings of history. */
#include "hwmon.h"

#include <inttypes.h>
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

/* The CPU side: the previous /proc/stat reading (sampler thread only) and what is shown. */
typedef struct CpuTrack {
    HwCpuTimes prev_all;
    HwCpuTimes prev_core[HWMON_MAX_CPUS];
    int have_prev;
    HwCpuInfo info;                 /* under lock */
    double cpu[HWMON_HIST];         /* ring, as Track */
    double mem[HWMON_HIST];
    int head;
    int n;
} CpuTrack;

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
    CpuTrack cpu;
};

/* ---- /proc parsers ---- */

int hwmon_parse_stat(const char *text, HwCpuTimes *all, HwCpuTimes *cores, int max) {
    int n_cores = 0, have_all = 0;
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        if (strncmp(line, "cpu", 3) == 0) {
            const char *p = line + 3;
            int core = -1;
            if (*p >= '0' && *p <= '9')
                core = (int)strtol(p, (char **)&p, 10);
            uint64_t v[10] = {0};
            int k = 0;
            while (k < 10) {
                char *end;
                unsigned long long x = strtoull(p, &end, 10);
                if (end == p || (eol && end > eol))
                    break;
                v[k++] = x;
                p = end;
            }
            if (k >= 4) {
                /* user nice system idle iowait irq softirq steal guest guest_nice; guest time is
                 * already in user and nice */
                uint64_t idle = v[3] + v[4];
                uint64_t busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
                HwCpuTimes t = {busy, busy + idle};
                if (core < 0) {
                    *all = t;
                    have_all = 1;
                } else if (core < max) {
                    cores[core] = t;
                    if (core + 1 > n_cores)
                        n_cores = core + 1;
                }
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return have_all ? n_cores : -1;
}

double hwmon_cpu_busy(HwCpuTimes before, HwCpuTimes after) {
    if (after.total <= before.total || after.busy < before.busy)
        return NAN;
    double f = (double)(after.busy - before.busy) / (double)(after.total - before.total);
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

/* The value in kB of "KEY:" in /proc/meminfo text, as bytes; 0 and *found 0 when absent. */
static uint64_t meminfo_get(const char *text, const char *key, int *found) {
    size_t k = strlen(key);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            *found = 1;
            return (uint64_t)strtoull(line + k + 1, NULL, 10) * 1024u;
        }
        const char *eol = strchr(line, '\n');
        line = eol ? eol + 1 : NULL;
    }
    *found = 0;
    return 0;
}

int hwmon_parse_meminfo(const char *text, uint64_t *total, uint64_t *available,
                        uint64_t *swap_total, uint64_t *swap_free) {
    int f = 0, fa = 0;
    *total = meminfo_get(text, "MemTotal", &f);
    if (!f)
        return -1;
    *available = meminfo_get(text, "MemAvailable", &fa);
    if (!fa) {
        int x;
        *available = meminfo_get(text, "MemFree", &x) + meminfo_get(text, "Buffers", &x) +
                     meminfo_get(text, "Cached", &x);
    }
    if (*available > *total)
        *available = *total;
    int x;
    *swap_total = meminfo_get(text, "SwapTotal", &x);
    *swap_free = meminfo_get(text, "SwapFree", &x);
    return 0;
}

int hwmon_parse_loadavg(const char *text, double load[3], int *running, int *total) {
    *running = *total = 0;
    return sscanf(text, "%lf %lf %lf %d/%d", &load[0], &load[1], &load[2], running, total) >= 3
               ? 0
               : -1;
}

/* Read a small /proc file into BUF (N bytes, NUL-terminated). Returns 0 or -1. */
static int read_proc(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = '\0';
    fclose(f);
    return got > 0 ? 0 : -1;
}

static void sample_cpu(HwMonitor *m) {
    CpuTrack *c = &m->cpu;
    HwCpuInfo *info = xcalloc(1, sizeof *info);
    size_t cap = 64 * 1024 + 256 * (size_t)HWMON_MAX_CPUS;
    char *buf = xmalloc(cap);
    HwCpuTimes all = {0, 0};
    HwCpuTimes *cores = xcalloc(HWMON_MAX_CPUS, sizeof *cores);
    int n_cores = read_proc("/proc/stat", buf, cap) == 0
                      ? hwmon_parse_stat(buf, &all, cores, HWMON_MAX_CPUS)
                      : -1;
    if (n_cores >= 0) {
        info->n_cpus = n_cores;
        double t = c->have_prev ? hwmon_cpu_busy(c->prev_all, all) : NAN;
        if (c->have_prev && isnan(t)) {
            /* no clock tick since the last sample (sampling faster than the kernel's tick, or
             * a stalled process): keep the last figures and measure over the longer interval
             * next time, rather than publish "unknown" */
            if (c->info.ok) {
                info->ok = 1;
                info->total = c->info.total;
                memcpy(info->core, c->info.core, sizeof info->core);
            }
        } else {
            if (c->have_prev) {
                info->ok = 1;
                info->total = t;
                for (int i = 0; i < n_cores; i++)
                    info->core[i] = hwmon_cpu_busy(c->prev_core[i], cores[i]);
            }
            c->prev_all = all;
            memcpy(c->prev_core, cores, sizeof *cores * (size_t)n_cores);
            c->have_prev = 1;
        }
    }
    if (read_proc("/proc/meminfo", buf, cap) == 0)
        info->mem_ok = hwmon_parse_meminfo(buf, &info->mem_total, &info->mem_available,
                                           &info->swap_total, &info->swap_free) == 0;
    if (read_proc("/proc/loadavg", buf, cap) == 0)
        info->load_ok = hwmon_parse_loadavg(buf, info->load, &info->procs_running,
                                            &info->procs_total) == 0;
    double mem_frac = info->mem_ok && info->mem_total
                          ? 1.0 - (double)info->mem_available / (double)info->mem_total
                          : NAN;
    pthread_mutex_lock(&m->lock);
    c->info = *info;
    int slot = (c->head + c->n) % HWMON_HIST;
    if (c->n == HWMON_HIST) {
        slot = c->head;
        c->head = (c->head + 1) % HWMON_HIST;
    } else {
        c->n++;
    }
    c->cpu[slot] = info->ok ? info->total : NAN;
    c->mem[slot] = mem_frac;
    pthread_mutex_unlock(&m->lock);
    free(cores);
    free(buf);
    free(info);
}

void hwmon_cpu_snapshot(HwMonitor *m, HwCpuInfo *info, double *cpu, double *mem, int max,
                        int *n) {
    pthread_mutex_lock(&m->lock);
    CpuTrack *c = &m->cpu;
    *info = c->info;
    int k = c->n < max ? c->n : max;
    for (int j = 0; j < k; j++) {
        int slot = (c->head + c->n - k + j) % HWMON_HIST;
        if (cpu)
            cpu[j] = c->cpu[slot];
        if (mem)
            mem[j] = c->mem[slot];
    }
    *n = k;
    pthread_mutex_unlock(&m->lock);
}

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
        sample_cpu(m);
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
    { /* the CPU side is always sampled */
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
