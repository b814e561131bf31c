/* gpu — GPU discovery and live state through NVML, loaded at run time.
 *
 * gpu_open() dlopen()s libnvidia-ml.so.1 (or $EASEL_NVML_LIB), resolves the few NVML entry
 * points easel uses (declared in gpu/nvml.c; no NVML headers are needed to build) and
 * counts the devices. No library, no driver or no device is not an error: gpu_open still
 * returns a GpuSystem whose state says why (gpu_reason), gpu_count is 0, and everything
 * in easel runs on the CPU. $EASEL_NO_GPU=1 forces that state (for tests and for users who
 * want CPU only).
 *
 * gpu_query reads one device's live state. A field NVML could not answer (not supported
 * on that board, no permission) has its GPU_HAS_* bit clear in GpuInfo.valid and is shown
 * as "n/a", never as 0 (nvtop's validity bits).
 *
 * Thread safety: NVML is thread-safe; one GpuSystem may be queried from several threads.
 * gpu_open/gpu_close pair like NVML's init/shutdown (reference counted by NVML).
 * Plain C, no NVML or CUDA types: any layer may include this header.
 */
#ifndef EASEL_GPU_H
#define EASEL_GPU_H

#include <stdint.h>

#include "err.h"

typedef enum GpuState {
    GPU_STATE_OK,          /* NVML loaded, at least one device */
    GPU_STATE_NO_LIBRARY,  /* libnvidia-ml.so.1 not found: no NVIDIA driver installed */
    GPU_STATE_NO_DEVICE,   /* NVML loaded but found no device, or failed to initialise */
    GPU_STATE_DISABLED,    /* EASEL_NO_GPU=1 */
} GpuState;

#define GPU_MAX_PROCS 64

typedef struct GpuProcess {
    uint32_t pid;
    uint64_t mem_used;        /* bytes; UINT64_MAX = not available */
    int graphics;             /* 1 graphics context, 0 compute */
    char name[64];            /* from /proc when the process is on this host, else "" */
} GpuProcess;

enum {
    GPU_HAS_UUID = 1u << 0,
    GPU_HAS_SERIAL = 1u << 1,
    GPU_HAS_PCI = 1u << 2,
    GPU_HAS_CC = 1u << 3,
    GPU_HAS_MEM = 1u << 4,
    GPU_HAS_BAR1 = 1u << 5,
    GPU_HAS_UTIL = 1u << 6,
    GPU_HAS_TEMP = 1u << 7,
    GPU_HAS_POWER = 1u << 8,
    GPU_HAS_POWER_LIMIT = 1u << 9,
    GPU_HAS_FAN = 1u << 10,
    GPU_HAS_CLOCKS = 1u << 11,
    GPU_HAS_CLOCKS_MAX = 1u << 12,
    GPU_HAS_PSTATE = 1u << 13,
    GPU_HAS_PCIE = 1u << 14,
    GPU_HAS_ENERGY = 1u << 15,
    GPU_HAS_VBIOS = 1u << 16,
    GPU_HAS_PERSISTENCE = 1u << 17,
    GPU_HAS_COMPUTE_MODE = 1u << 18,
    GPU_HAS_MIG = 1u << 19,
    GPU_HAS_ECC = 1u << 20,
    GPU_HAS_PROCS = 1u << 21,
    GPU_HAS_TEMP_LIMITS = 1u << 22,
};

typedef struct GpuInfo {
    int index;
    unsigned valid;           /* GPU_HAS_* of the fields below that NVML answered */
    char name[96];
    char uuid[96];
    char serial[64];
    char pci_bus_id[32];
    char vbios[32];
    int cc_major;             /* CUDA compute capability */
    int cc_minor;
    uint64_t mem_total;       /* bytes */
    uint64_t mem_used;
    uint64_t mem_free;
    uint64_t bar1_total;      /* bytes */
    uint64_t bar1_used;
    unsigned util_gpu;        /* % of the last sample period */
    unsigned util_mem;        /* % (memory controller) */
    unsigned temp_c;          /* core, degrees C */
    unsigned temp_slowdown_c; /* thresholds, degrees C */
    unsigned temp_shutdown_c;
    double power_w;           /* current draw, watts */
    double power_limit_w;     /* enforced limit, watts */
    unsigned fan_pct;
    unsigned clock_gfx_mhz;
    unsigned clock_sm_mhz;
    unsigned clock_mem_mhz;
    unsigned clock_gfx_max_mhz;
    unsigned clock_sm_max_mhz;
    unsigned clock_mem_max_mhz;
    int pstate;               /* 0 (max performance) .. 15 */
    unsigned pcie_gen;
    unsigned pcie_width;
    unsigned pcie_gen_max;
    unsigned pcie_width_max;
    uint64_t energy_mj;       /* since driver load, millijoules */
    int persistence;          /* 0/1 */
    int compute_mode;         /* 0 default, 1 exclusive thread, 2 prohibited, 3 exclusive process */
    int mig;                  /* 0/1 current MIG mode */
    int ecc;                  /* 0/1 current ECC mode */
    int n_procs;
    GpuProcess procs[GPU_MAX_PROCS];
} GpuInfo;

typedef struct GpuSystem GpuSystem;

/* Load NVML and count devices. Never NULL; see gpu_state. Free with gpu_close. */
GpuSystem *gpu_open(void);
void gpu_close(GpuSystem *g); /* NULL allowed */

GpuState gpu_state(const GpuSystem *g);
/* Why there is no GPU ("" when state is OK). Borrowed until gpu_close. */
const char *gpu_reason(const GpuSystem *g);
int gpu_count(const GpuSystem *g);

/* Versions ("" / 0 when unknown). Borrowed. */
const char *gpu_driver_version(const GpuSystem *g);
const char *gpu_nvml_version(const GpuSystem *g);
int gpu_cuda_driver_version(const GpuSystem *g); /* e.g. 12040 = 12.4 */
/* Where NVML was loaded from ("" if not). */
const char *gpu_library(const GpuSystem *g);

/* Live state of device I (0 <= I < gpu_count). Returns 0, or ERR_GPU if the device
 * vanished or NVML failed (message names the call and NVML's reason). */
int gpu_query(GpuSystem *g, int i, GpuInfo *out, Err *err);

/* "GPU_STATE_OK" -> "ok", ... (static). */
const char *gpu_state_name(GpuState s);

#endif
