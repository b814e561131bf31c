/* hwmon — live hardware monitoring for the UI: a sampling thread that reads the CPUs, memory
 * and load average from /proc (Linux) and queries every GPU through gpu/gpu.h once per period,
 * and keeps utilisation and memory histories, so the System screen has history even for the
 * time it was not shown and never calls NVML on the UI thread (ui/ does not call gpu/
 * directly; STYLE.md §1). CPU training is watched the same way as GPU training.
 *
 * Thread safety: the sampler writes under the monitor's own lock; hwmon_* readers copy out
 * under it and may be called from any thread. The on_sample hook runs on the sampler thread
 * (e.g. app_wake); it must not block. The sampler blocks SIGWINCH, SIGINT and SIGTERM.
 */
#ifndef EASEL_HWMON_H
#define EASEL_HWMON_H

#include <stdint.h>

#include "gpu.h"

#define HWMON_HIST 512   /* samples of history kept per GPU (and for the CPU and memory) */
#define HWMON_MAX_GPUS 16
#define HWMON_MAX_CPUS 512

typedef struct HwMonitor HwMonitor;

/* Open NVML and start sampling the CPUs, memory, load and the GPUs every PERIOD_S seconds
 * (first sample at once). Never NULL: without a GPU hwmon_count is 0 and hwmon_reason says
 * why (the CPU side is sampled all the same). ON_SAMPLE (may be NULL) is called after each
 * round with USER_DATA. Free with hwmon_stop. */
HwMonitor *hwmon_start(double period_s, void (*on_sample)(void *user_data), void *user_data);

/* Stop the sampler and free everything. NULL allowed. */
void hwmon_stop(HwMonitor *m);

int hwmon_count(const HwMonitor *m);
/* Why there is no GPU, the driver and NVML versions. Borrowed until hwmon_stop. */
const char *hwmon_reason(const HwMonitor *m);
const char *hwmon_driver_version(const HwMonitor *m);
const char *hwmon_nvml_version(const HwMonitor *m);

/* Copy GPU I's latest state into *INFO and up to MAX of its newest history samples (oldest
 * first, 0..1, NaN = no sample) into UTIL and MEM (either may be NULL); *N = samples copied.
 * Returns 0, or ERR_GPU with err set when the last query failed (INFO then holds the index
 * only) or ERR_NOTFOUND before the first sample. */
int hwmon_snapshot(HwMonitor *m, int i, GpuInfo *info, double *util, double *mem, int max,
                    int *n, Err *err);

/* ---- CPU, memory, load (from /proc) ---- */

typedef struct HwCpuInfo {
    int ok;                      /* /proc/stat was read at least twice */
    int n_cpus;                  /* cores in /proc/stat */
    double total;                /* 0..1 busy over the last period, all cores */
    double core[HWMON_MAX_CPUS]; /* 0..1 per core (n_cpus of them) */
    int mem_ok;
    uint64_t mem_total;          /* bytes (MemTotal) */
    uint64_t mem_available;      /* bytes (MemAvailable) */
    uint64_t swap_total, swap_free;
    int load_ok;
    double load[3];              /* 1, 5, 15 minute load averages */
    int procs_running, procs_total;
} HwCpuInfo;

/* Copy the latest CPU/memory/load state into *INFO and up to MAX newest samples (oldest first,
 * 0..1, NaN = no sample) of total CPU use into CPU and of memory in use into MEM (either may be
 * NULL); *N = samples copied. */
void hwmon_cpu_snapshot(HwMonitor *m, HwCpuInfo *info, double *cpu, double *mem, int max,
                        int *n);

/* Parsers of the /proc files (pure, for tests). Counters of /proc/stat: the "cpu" line into
 * *ALL, the "cpuN" lines into CORES (up to MAX); returns the number of cores, or -1 when TEXT
 * has no "cpu" line. BUSY is everything but idle and iowait. */
typedef struct HwCpuTimes {
    uint64_t busy;
    uint64_t total;
} HwCpuTimes;
int hwmon_parse_stat(const char *text, HwCpuTimes *all, HwCpuTimes *cores, int max);
/* Busy fraction between two readings (0..1), NaN when no time passed. */
double hwmon_cpu_busy(HwCpuTimes before, HwCpuTimes after);
/* /proc/meminfo: bytes. Returns 0, or -1 when MemTotal is missing. MemAvailable falls back to
 * MemFree + Buffers + Cached on old kernels. */
int hwmon_parse_meminfo(const char *text, uint64_t *total, uint64_t *available,
                        uint64_t *swap_total, uint64_t *swap_free);
/* /proc/loadavg: "0.52 0.58 0.59 2/1234 5678". Returns 0 or -1. */
int hwmon_parse_loadavg(const char *text, double load[3], int *running, int *total);

#endif
