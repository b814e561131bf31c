/* nvml — gpu.h on NVIDIA's management library, loaded with dlopen at run time.
 *
 * Design: we declare the handful of NVML types and entry points we call ourselves (the
 * ABI is stable: plain structs of unsigned ints and 64-bit counters, versioned entry points
 * such as nvmlInit_v2), so easel builds without NVML headers and runs without the driver.
 * Each entry point is resolved by name; a missing optional one only clears its GPU_HAS_*
 * bit. Newer versioned names are tried first, then the older ones.
 *
 * Invariant: when state != GPU_STATE_OK no NVML function is ever called (the library may
 * not even be loaded), and gpu_count is 0.
 */
#include "gpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

/* ---- the part of the NVML ABI we use ------------------------------------------------------ */

typedef int nvmlReturn;              /* nvmlReturn_t: 0 = NVML_SUCCESS */
typedef void *nvmlDevice;            /* nvmlDevice_t: an opaque pointer */

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_TEMPERATURE_GPU = 0,
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0,
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1,
    NVML_CLOCK_GRAPHICS = 0,
    NVML_CLOCK_SM = 1,
    NVML_CLOCK_MEM = 2,
};

typedef struct NvmlMemory {          /* nvmlMemory_t */
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} NvmlMemory;

typedef struct NvmlBar1 {            /* nvmlBAR1Memory_t */
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} NvmlBar1;

typedef struct NvmlUtil {            /* nvmlUtilization_t */
    unsigned gpu;
    unsigned memory;
} NvmlUtil;

typedef struct NvmlPci {             /* nvmlPciInfo_t (v2/v3 layout) */
    char bus_id_legacy[16];
    unsigned domain;
    unsigned bus;
    unsigned device;
    unsigned pci_device_id;
    unsigned pci_subsystem_id;
    char bus_id[32];
    char spare[64];                  /* room in case a later version grows the struct */
} NvmlPci;

typedef struct NvmlProc1 {           /* nvmlProcessInfo_v1_t */
    unsigned pid;
    unsigned long long used;
} NvmlProc1;

typedef struct NvmlProc2 {           /* nvmlProcessInfo_v2_t / nvmlProcessInfo_t */
    unsigned pid;
    unsigned long long used;
    unsigned gpu_instance;
    unsigned compute_instance;
} NvmlProc2;

typedef struct Nvml {
    nvmlReturn (*init)(void);
    nvmlReturn (*shutdown)(void);
    const char *(*error_string)(nvmlReturn);
    nvmlReturn (*count)(unsigned *);
    nvmlReturn (*handle)(unsigned, nvmlDevice *);
    nvmlReturn (*driver_version)(char *, unsigned);
    nvmlReturn (*nvml_version)(char *, unsigned);
    nvmlReturn (*cuda_version)(int *);
    nvmlReturn (*name)(nvmlDevice, char *, unsigned);
    nvmlReturn (*uuid)(nvmlDevice, char *, unsigned);
    nvmlReturn (*serial)(nvmlDevice, char *, unsigned);
    nvmlReturn (*vbios)(nvmlDevice, char *, unsigned);
    nvmlReturn (*pci)(nvmlDevice, NvmlPci *);
    nvmlReturn (*cc)(nvmlDevice, int *, int *);
    nvmlReturn (*memory)(nvmlDevice, NvmlMemory *);
    nvmlReturn (*bar1)(nvmlDevice, NvmlBar1 *);
    nvmlReturn (*util)(nvmlDevice, NvmlUtil *);
    nvmlReturn (*temp)(nvmlDevice, int, unsigned *);
    nvmlReturn (*temp_threshold)(nvmlDevice, int, unsigned *);
    nvmlReturn (*power)(nvmlDevice, unsigned *);
    nvmlReturn (*power_limit)(nvmlDevice, unsigned *);
    nvmlReturn (*fan)(nvmlDevice, unsigned *);
    nvmlReturn (*clock)(nvmlDevice, int, unsigned *);
    nvmlReturn (*clock_max)(nvmlDevice, int, unsigned *);
    nvmlReturn (*pstate)(nvmlDevice, int *);
    nvmlReturn (*pcie_gen)(nvmlDevice, unsigned *);
    nvmlReturn (*pcie_width)(nvmlDevice, unsigned *);
    nvmlReturn (*pcie_gen_max)(nvmlDevice, unsigned *);
    nvmlReturn (*pcie_width_max)(nvmlDevice, unsigned *);
    nvmlReturn (*energy)(nvmlDevice, unsigned long long *);
    nvmlReturn (*persistence)(nvmlDevice, int *);
    nvmlReturn (*compute_mode)(nvmlDevice, int *);
    nvmlReturn (*mig)(nvmlDevice, unsigned *, unsigned *);
    nvmlReturn (*ecc)(nvmlDevice, int *, int *);
    nvmlReturn (*procs_compute2)(nvmlDevice, unsigned *, NvmlProc2 *); /* _v3 or _v2 */
    nvmlReturn (*procs_graphics2)(nvmlDevice, unsigned *, NvmlProc2 *);
    nvmlReturn (*procs_compute1)(nvmlDevice, unsigned *, NvmlProc1 *);
    nvmlReturn (*procs_graphics1)(nvmlDevice, unsigned *, NvmlProc1 *);
} Nvml;

struct GpuSystem {
    GpuState state;
    char reason[256];
    char library[256];
    void *dl;
    Nvml f;
    int initialised;
    int n;
    char driver[80];
    char nvml[80];
    int cuda;
};

/* ---- loading ------------------------------------------------------------------------------ */

/* Resolve the first of NAMES (NULL-terminated) the library has into *FP (ISO C cannot cast
 * a data pointer to a function pointer, so copy the bits). */
static void resolve(void *dl, void *fp, size_t size, const char *const *names) {
    void *sym = NULL;
    for (int i = 0; names[i] && !sym; i++)
        sym = dlsym(dl, names[i]);
    memset(fp, 0, size);
    if (sym)
        memcpy(fp, &sym, size);
}

#define RESOLVE(field, ...)                                                      \
    do {                                                                         \
        static const char *const names_[] = {__VA_ARGS__, NULL};                \
        resolve(g->dl, &g->f.field, sizeof g->f.field, names_);                 \
    } while (0)

static void resolve_all(GpuSystem *g) {
    RESOLVE(init, "nvmlInit_v2", "nvmlInit");
    RESOLVE(shutdown, "nvmlShutdown");
    RESOLVE(error_string, "nvmlErrorString");
    RESOLVE(count, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
    RESOLVE(handle, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
    RESOLVE(driver_version, "nvmlSystemGetDriverVersion");
    RESOLVE(nvml_version, "nvmlSystemGetNVMLVersion");
    RESOLVE(cuda_version, "nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion");
    RESOLVE(name, "nvmlDeviceGetName");
    RESOLVE(uuid, "nvmlDeviceGetUUID");
    RESOLVE(serial, "nvmlDeviceGetSerial");
    RESOLVE(vbios, "nvmlDeviceGetVbiosVersion");
    RESOLVE(pci, "nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2");
    RESOLVE(cc, "nvmlDeviceGetCudaComputeCapability");
    RESOLVE(memory, "nvmlDeviceGetMemoryInfo");
    RESOLVE(bar1, "nvmlDeviceGetBAR1MemoryInfo");
    RESOLVE(util, "nvmlDeviceGetUtilizationRates");
    RESOLVE(temp, "nvmlDeviceGetTemperature");
    RESOLVE(temp_threshold, "nvmlDeviceGetTemperatureThreshold");
    RESOLVE(power, "nvmlDeviceGetPowerUsage");
    RESOLVE(power_limit, "nvmlDeviceGetEnforcedPowerLimit");
    RESOLVE(fan, "nvmlDeviceGetFanSpeed");
    RESOLVE(clock, "nvmlDeviceGetClockInfo");
    RESOLVE(clock_max, "nvmlDeviceGetMaxClockInfo");
    RESOLVE(pstate, "nvmlDeviceGetPerformanceState");
    RESOLVE(pcie_gen, "nvmlDeviceGetCurrPcieLinkGeneration");
    RESOLVE(pcie_width, "nvmlDeviceGetCurrPcieLinkWidth");
    RESOLVE(pcie_gen_max, "nvmlDeviceGetMaxPcieLinkGeneration");
    RESOLVE(pcie_width_max, "nvmlDeviceGetMaxPcieLinkWidth");
    RESOLVE(energy, "nvmlDeviceGetTotalEnergyConsumption");
    RESOLVE(persistence, "nvmlDeviceGetPersistenceMode");
    RESOLVE(compute_mode, "nvmlDeviceGetComputeMode");
    RESOLVE(mig, "nvmlDeviceGetMigMode");
    RESOLVE(ecc, "nvmlDeviceGetEccMode");
    RESOLVE(procs_compute2, "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetComputeRunningProcesses_v2");
    RESOLVE(procs_graphics2, "nvmlDeviceGetGraphicsRunningProcesses_v3",
            "nvmlDeviceGetGraphicsRunningProcesses_v2");
    RESOLVE(procs_compute1, "nvmlDeviceGetComputeRunningProcesses");
    RESOLVE(procs_graphics1, "nvmlDeviceGetGraphicsRunningProcesses");
}

static const char *nvml_err(const GpuSystem *g, nvmlReturn rc) {
    const char *s = g->f.error_string ? g->f.error_string(rc) : NULL;
    return s ? s : "unknown NVML error";
}

GpuSystem *gpu_open(void) {
    GpuSystem *g = xcalloc(1, sizeof *g);
    const char *no = getenv("EASEL_NO_GPU");
    if (no && *no && strcmp(no, "0") != 0) {
        g->state = GPU_STATE_DISABLED;
        snprintf(g->reason, sizeof g->reason,
                 "GPUs disabled by EASEL_NO_GPU=%s; everything runs on the CPU", no);
        return g;
    }
    const char *lib = getenv("EASEL_NVML_LIB");
    if (!lib || !*lib)
        lib = "libnvidia-ml.so.1";
    g->dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!g->dl) {
        const char *why = dlerror();
        g->state = GPU_STATE_NO_LIBRARY;
        snprintf(g->reason, sizeof g->reason,
                 "no GPU: %s could not be loaded (%s); no NVIDIA driver on this machine, "
                 "so everything runs on the CPU", lib, why ? why : "not found");
        return g;
    }
    base_strlcpy(g->library, lib, sizeof g->library);
    resolve_all(g);
    if (!g->f.init || !g->f.shutdown || !g->f.count || !g->f.handle) {
        g->state = GPU_STATE_NO_DEVICE;
        snprintf(g->reason, sizeof g->reason,
                 "no GPU: %s lacks nvmlInit/nvmlDeviceGetCount (too old a driver?); "
                 "everything runs on the CPU", lib);
        return g;
    }
    nvmlReturn rc = g->f.init();
    if (rc != NVML_SUCCESS) {
        g->state = GPU_STATE_NO_DEVICE;
        snprintf(g->reason, sizeof g->reason,
                 "no GPU: NVML failed to initialise (%s); check the NVIDIA driver with "
                 "nvidia-smi; everything runs on the CPU", nvml_err(g, rc));
        return g;
    }
    g->initialised = 1;
    unsigned n = 0;
    if ((rc = g->f.count(&n)) != NVML_SUCCESS || n == 0) {
        g->state = GPU_STATE_NO_DEVICE;
        snprintf(g->reason, sizeof g->reason, "no GPU: NVML sees no device (%s); everything "
                 "runs on the CPU", rc == NVML_SUCCESS ? "count is 0" : nvml_err(g, rc));
        return g;
    }
    g->n = (int)n;
    g->state = GPU_STATE_OK;
    if (g->f.driver_version && g->f.driver_version(g->driver, sizeof g->driver) != NVML_SUCCESS)
        g->driver[0] = '\0';
    if (g->f.nvml_version && g->f.nvml_version(g->nvml, sizeof g->nvml) != NVML_SUCCESS)
        g->nvml[0] = '\0';
    if (g->f.cuda_version && g->f.cuda_version(&g->cuda) != NVML_SUCCESS)
        g->cuda = 0;
    return g;
}

void gpu_close(GpuSystem *g) {
    if (!g)
        return;
    if (g->initialised && g->f.shutdown)
        g->f.shutdown();
    if (g->dl)
        dlclose(g->dl);
    free(g);
}

GpuState gpu_state(const GpuSystem *g) { return g->state; }
const char *gpu_reason(const GpuSystem *g) { return g->reason; }
int gpu_count(const GpuSystem *g) { return g->state == GPU_STATE_OK ? g->n : 0; }
const char *gpu_driver_version(const GpuSystem *g) { return g->driver; }
const char *gpu_nvml_version(const GpuSystem *g) { return g->nvml; }
int gpu_cuda_driver_version(const GpuSystem *g) { return g->cuda; }
const char *gpu_library(const GpuSystem *g) { return g->library; }

const char *gpu_state_name(GpuState s) {
    switch (s) {
    case GPU_STATE_OK: return "ok";
    case GPU_STATE_NO_LIBRARY: return "no NVML library";
    case GPU_STATE_NO_DEVICE: return "no device";
    case GPU_STATE_DISABLED: return "disabled";
    }
    return "?";
}

/* ---- queries ------------------------------------------------------------------------------ */

static void proc_name(uint32_t pid, char *out, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%u/comm", pid);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fgets(out, (int)size, f))
        out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

static void add_procs(GpuInfo *o, int graphics, unsigned n, const NvmlProc2 *p2,
                      const NvmlProc1 *p1) {
    for (unsigned i = 0; i < n && o->n_procs < GPU_MAX_PROCS; i++) {
        GpuProcess *gp = &o->procs[o->n_procs++];
        gp->pid = p2 ? p2[i].pid : p1[i].pid;
        unsigned long long used = p2 ? p2[i].used : p1[i].used;
        /* NVML reports "not available" as all ones (NVML_VALUE_NOT_AVAILABLE) */
        gp->mem_used = used == ~0ULL ? UINT64_MAX : used;
        gp->graphics = graphics;
        proc_name(gp->pid, gp->name, sizeof gp->name);
    }
}

static void query_procs(GpuSystem *g, nvmlDevice d, GpuInfo *o) {
    enum { CAP = GPU_MAX_PROCS };
    for (int graphics = 0; graphics <= 1; graphics++) {
        nvmlReturn (*f2)(nvmlDevice, unsigned *, NvmlProc2 *) =
            graphics ? g->f.procs_graphics2 : g->f.procs_compute2;
        nvmlReturn (*f1)(nvmlDevice, unsigned *, NvmlProc1 *) =
            graphics ? g->f.procs_graphics1 : g->f.procs_compute1;
        unsigned n = CAP;
        if (f2) {
            NvmlProc2 buf[CAP];
            nvmlReturn rc = f2(d, &n, buf);
            if (rc == NVML_SUCCESS || rc == NVML_ERROR_INSUFFICIENT_SIZE) {
                add_procs(o, graphics, n < CAP ? n : CAP, buf, NULL);
                o->valid |= GPU_HAS_PROCS;
            }
        } else if (f1) {
            NvmlProc1 buf[CAP];
            nvmlReturn rc = f1(d, &n, buf);
            if (rc == NVML_SUCCESS || rc == NVML_ERROR_INSUFFICIENT_SIZE) {
                add_procs(o, graphics, n < CAP ? n : CAP, NULL, buf);
                o->valid |= GPU_HAS_PROCS;
            }
        }
    }
}

#define OK(call) ((call) == NVML_SUCCESS)

int gpu_query(GpuSystem *g, int i, GpuInfo *o, Err *err) {
    memset(o, 0, sizeof *o);
    o->index = i;
    if (g->state != GPU_STATE_OK || i < 0 || i >= g->n)
        return err_set(err, ERR_GPU, "GPU %d: no such device (%s)", i,
                       g->state == GPU_STATE_OK ? "index out of range" : g->reason);
    nvmlDevice d = NULL;
    nvmlReturn rc = g->f.handle((unsigned)i, &d);
    if (rc != NVML_SUCCESS)
        return err_set(err, ERR_GPU, "GPU %d: nvmlDeviceGetHandleByIndex: %s", i,
                       nvml_err(g, rc));
    if (!g->f.name || !OK(g->f.name(d, o->name, sizeof o->name)))
        snprintf(o->name, sizeof o->name, "GPU %d", i);
    if (g->f.uuid && OK(g->f.uuid(d, o->uuid, sizeof o->uuid)))
        o->valid |= GPU_HAS_UUID;
    if (g->f.serial && OK(g->f.serial(d, o->serial, sizeof o->serial)))
        o->valid |= GPU_HAS_SERIAL;
    if (g->f.vbios && OK(g->f.vbios(d, o->vbios, sizeof o->vbios)))
        o->valid |= GPU_HAS_VBIOS;
    NvmlPci pci;
    memset(&pci, 0, sizeof pci);
    if (g->f.pci && OK(g->f.pci(d, &pci))) {
        pci.bus_id[sizeof pci.bus_id - 1] = '\0';
        base_strlcpy(o->pci_bus_id, pci.bus_id, sizeof o->pci_bus_id);
        o->valid |= GPU_HAS_PCI;
    }
    if (g->f.cc && OK(g->f.cc(d, &o->cc_major, &o->cc_minor)))
        o->valid |= GPU_HAS_CC;
    NvmlMemory mem;
    if (g->f.memory && OK(g->f.memory(d, &mem))) {
        o->mem_total = mem.total;
        o->mem_used = mem.used;
        o->mem_free = mem.free;
        o->valid |= GPU_HAS_MEM;
    }
    NvmlBar1 bar1;
    if (g->f.bar1 && OK(g->f.bar1(d, &bar1))) {
        o->bar1_total = bar1.total;
        o->bar1_used = bar1.used;
        o->valid |= GPU_HAS_BAR1;
    }
    NvmlUtil util;
    if (g->f.util && OK(g->f.util(d, &util))) {
        o->util_gpu = util.gpu;
        o->util_mem = util.memory;
        o->valid |= GPU_HAS_UTIL;
    }
    if (g->f.temp && OK(g->f.temp(d, NVML_TEMPERATURE_GPU, &o->temp_c)))
        o->valid |= GPU_HAS_TEMP;
    if (g->f.temp_threshold &&
        OK(g->f.temp_threshold(d, NVML_TEMPERATURE_THRESHOLD_SLOWDOWN, &o->temp_slowdown_c)) &&
        OK(g->f.temp_threshold(d, NVML_TEMPERATURE_THRESHOLD_SHUTDOWN, &o->temp_shutdown_c)))
        o->valid |= GPU_HAS_TEMP_LIMITS;
    unsigned mw;
    if (g->f.power && OK(g->f.power(d, &mw))) {
        o->power_w = mw / 1000.0;
        o->valid |= GPU_HAS_POWER;
    }
    if (g->f.power_limit && OK(g->f.power_limit(d, &mw))) {
        o->power_limit_w = mw / 1000.0;
        o->valid |= GPU_HAS_POWER_LIMIT;
    }
    if (g->f.fan && OK(g->f.fan(d, &o->fan_pct)))
        o->valid |= GPU_HAS_FAN;
    if (g->f.clock && OK(g->f.clock(d, NVML_CLOCK_GRAPHICS, &o->clock_gfx_mhz)) &&
        OK(g->f.clock(d, NVML_CLOCK_SM, &o->clock_sm_mhz)) &&
        OK(g->f.clock(d, NVML_CLOCK_MEM, &o->clock_mem_mhz)))
        o->valid |= GPU_HAS_CLOCKS;
    if (g->f.clock_max && OK(g->f.clock_max(d, NVML_CLOCK_GRAPHICS, &o->clock_gfx_max_mhz)) &&
        OK(g->f.clock_max(d, NVML_CLOCK_SM, &o->clock_sm_max_mhz)) &&
        OK(g->f.clock_max(d, NVML_CLOCK_MEM, &o->clock_mem_max_mhz)))
        o->valid |= GPU_HAS_CLOCKS_MAX;
    if (g->f.pstate && OK(g->f.pstate(d, &o->pstate)))
        o->valid |= GPU_HAS_PSTATE;
    if (g->f.pcie_gen && g->f.pcie_width && g->f.pcie_gen_max && g->f.pcie_width_max &&
        OK(g->f.pcie_gen(d, &o->pcie_gen)) && OK(g->f.pcie_width(d, &o->pcie_width)) &&
        OK(g->f.pcie_gen_max(d, &o->pcie_gen_max)) &&
        OK(g->f.pcie_width_max(d, &o->pcie_width_max)))
        o->valid |= GPU_HAS_PCIE;
    unsigned long long mj;
    if (g->f.energy && OK(g->f.energy(d, &mj))) {
        o->energy_mj = mj;
        o->valid |= GPU_HAS_ENERGY;
    }
    if (g->f.persistence && OK(g->f.persistence(d, &o->persistence)))
        o->valid |= GPU_HAS_PERSISTENCE;
    if (g->f.compute_mode && OK(g->f.compute_mode(d, &o->compute_mode)))
        o->valid |= GPU_HAS_COMPUTE_MODE;
    unsigned mig_cur, mig_pending;
    if (g->f.mig && OK(g->f.mig(d, &mig_cur, &mig_pending))) {
        o->mig = (int)mig_cur;
        o->valid |= GPU_HAS_MIG;
    }
    int ecc_cur, ecc_pending;
    if (g->f.ecc && OK(g->f.ecc(d, &ecc_cur, &ecc_pending))) {
        o->ecc = ecc_cur;
        o->valid |= GPU_HAS_ECC;
    }
    query_procs(g, d, o);
    return 0;
}
