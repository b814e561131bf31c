/* hwmon — live hardware (GPU) monitoring for the UI: a sampling thread that queries every
 * GPU through gpu/gpu.h once per period and keeps utilisation and memory histories, so the GPU screen
 * has history even for the time it was not shown and never calls NVML on the UI thread
 * (ui/ does not call gpu/ directly; STYLE.md §1).
 *
 * Thread safety: the sampler writes under the monitor's own lock; hwmon_* readers copy out
 * under it and may be called from any thread. The on_sample hook runs on the sampler thread
 * (e.g. app_wake); it must not block. The sampler blocks SIGWINCH, SIGINT and SIGTERM.
 */
#ifndef EASEL_HWMON_H
#define EASEL_HWMON_H

#include "gpu.h"

#define HWMON_HIST 512   /* samples of history kept per GPU */
#define HWMON_MAX_GPUS 16

typedef struct HwMonitor HwMonitor;

/* Open NVML and, if there is a GPU, start sampling every PERIOD_S seconds (first sample at
 * once). Never NULL: without a GPU hwmon_count is 0 and hwmon_reason says why. ON_SAMPLE
 * (may be NULL) is called after each round with USER_DATA. Free with hwmon_stop. */
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

#endif
