/* Tests for gpu/nvml.c: the NVML loader degrades to a clear "no GPU" state without the
 * library, when disabled, and (on a GPU machine, EASEL_TEST_GPU=1) reports real devices. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"

Test(gpu_nvml, missing_library_is_a_clear_no_gpu_state) {
    setenv("EASEL_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
    unsetenv("EASEL_NO_GPU");
    GpuSystem *g = gpu_open();
    cr_assert_not_null(g);
    cr_assert_eq(gpu_state(g), GPU_STATE_NO_LIBRARY);
    cr_assert_eq(gpu_count(g), 0);
    cr_assert(strstr(gpu_reason(g), "no GPU"), "%s", gpu_reason(g));
    cr_assert(strstr(gpu_reason(g), "/nonexistent/libnvidia-ml.so.1"), "%s", gpu_reason(g));
    cr_assert(strstr(gpu_reason(g), "CPU"), "%s", gpu_reason(g));
    GpuInfo info;
    Err err = {0};
    cr_assert_eq(gpu_query(g, 0, &info, &err), ERR_GPU);
    cr_assert(strstr(err.msg, "no such device"), "%s", err.msg);
    gpu_close(g);
}

Test(gpu_nvml, disabled_by_environment) {
    setenv("EASEL_NO_GPU", "1", 1);
    GpuSystem *g = gpu_open();
    cr_assert_eq(gpu_state(g), GPU_STATE_DISABLED);
    cr_assert_eq(gpu_count(g), 0);
    cr_assert(strstr(gpu_reason(g), "EASEL_NO_GPU"));
    gpu_close(g);
}

Test(gpu_nvml, a_library_without_nvml_symbols_is_refused) {
    /* libm loads fine but has no nvmlInit: must be "no device", never a crash */
    setenv("EASEL_NVML_LIB", "libm.so.6", 1);
    unsetenv("EASEL_NO_GPU");
    GpuSystem *g = gpu_open();
    cr_assert_eq(gpu_state(g), GPU_STATE_NO_DEVICE);
    cr_assert_eq(gpu_count(g), 0);
    cr_assert(strstr(gpu_reason(g), "nvmlInit"), "%s", gpu_reason(g));
    gpu_close(g);
}

Test(gpu_nvml, this_machine) {
    unsetenv("EASEL_NVML_LIB");
    unsetenv("EASEL_NO_GPU");
    void *dl = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    GpuSystem *g = gpu_open();
    if (!dl) {
        /* no driver here: the state must say so, and everything runs on the CPU */
        cr_assert_eq(gpu_state(g), GPU_STATE_NO_LIBRARY);
        cr_assert_eq(gpu_count(g), 0);
        cr_assert(strstr(gpu_reason(g), "libnvidia-ml.so.1"), "%s", gpu_reason(g));
        gpu_close(g);
        if (getenv("EASEL_TEST_GPU"))
            cr_assert_fail("EASEL_TEST_GPU set but no NVML library: %s", gpu_reason(g));
        return;
    }
    dlclose(dl);
    if (gpu_state(g) != GPU_STATE_OK) {
        cr_assert_eq(gpu_count(g), 0);
        cr_assert(gpu_reason(g)[0]);
        gpu_close(g);
        return;
    }
    cr_assert(gpu_count(g) >= 1);
    cr_assert(gpu_driver_version(g)[0], "driver version missing");
    for (int i = 0; i < gpu_count(g); i++) {
        GpuInfo o;
        Err err = {0};
        cr_assert_eq(gpu_query(g, i, &o, &err), 0, "%s", err.msg);
        cr_assert_eq(o.index, i);
        cr_assert(o.name[0]);
        cr_assert(o.valid & GPU_HAS_MEM, "NVML gave no memory info");
        cr_assert(o.mem_total > 0 && o.mem_used <= o.mem_total);
        if (o.valid & GPU_HAS_UTIL)
            cr_assert(o.util_gpu <= 100 && o.util_mem <= 100);
    }
    GpuInfo o;
    cr_assert_eq(gpu_query(g, gpu_count(g), &o, NULL), ERR_GPU);
    gpu_close(g);
}
