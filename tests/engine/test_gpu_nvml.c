/* Tests for gpu/nvml.c: the NVML loader degrades to a clear "no GPU" state without the
 * library, when disabled, and (on a GPU machine, EASEL_TEST_GPU=1) reports real devices. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
        if (getenv("EASEL_TEST_GPU")) {
            char why[512];
            snprintf(why, sizeof why, "%s", gpu_reason(g));
            gpu_close(g);
            cr_assert_fail("EASEL_TEST_GPU set but no NVML library: %s", why);
        }
        gpu_close(g);
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

/* Build tests/fixtures/gpu/fake_nvml.c into DIR/libfake-nvml.so; returns its path. */
static const char *build_fake(char *dir_template, char *path, size_t n) {
    cr_assert_not_null(mkdtemp(dir_template));
    snprintf(path, n, "%s/libfake-nvml.so", dir_template);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O1 -o %s tests/fixtures/gpu/fake_nvml.c", path);
    cr_assert_eq(system(cmd), 0, "cannot build the fake NVML (%s)", cmd);
    return path;
}

Test(gpu_nvml, every_field_through_a_fake_nvml_with_two_gpus) {
    char dir[] = "/tmp/easel-nvml-XXXXXX", lib[128];
    setenv("EASEL_NVML_LIB", build_fake(dir, lib, sizeof lib), 1);
    unsetenv("EASEL_NO_GPU");
    GpuSystem *g = gpu_open();
    cr_assert_eq(gpu_state(g), GPU_STATE_OK, "%s", gpu_reason(g));
    cr_assert_str_eq(gpu_reason(g), "");
    cr_assert_eq(gpu_count(g), 2);
    cr_assert_str_eq(gpu_driver_version(g), "999.01");
    cr_assert_str_eq(gpu_nvml_version(g), "99.999.01");
    cr_assert_eq(gpu_cuda_driver_version(g), 12040);
    cr_assert_str_eq(gpu_library(g), lib);

    GpuInfo a, b;
    Err err = {0};
    cr_assert_eq(gpu_query(g, 0, &a, &err), 0, "%s", err.msg);
    cr_assert_str_eq(a.name, "Fake GPU A");
    cr_assert(a.valid & GPU_HAS_UUID);
    cr_assert_str_eq(a.uuid, "GPU-fake-a");
    cr_assert(a.valid & GPU_HAS_MEM);
    cr_assert_eq(a.mem_total, 8ULL << 30);
    cr_assert_eq(a.mem_used, 2ULL << 30);
    cr_assert_eq(a.mem_free, 6ULL << 30);
    cr_assert(a.valid & GPU_HAS_UTIL);
    cr_assert_eq(a.util_mem, 25);
    cr_assert(a.valid & GPU_HAS_TEMP);
    cr_assert_eq(a.temp_c, 61);
    cr_assert(a.valid & GPU_HAS_POWER && a.valid & GPU_HAS_POWER_LIMIT);
    cr_assert_float_eq(a.power_w, 123.456, 1e-9);
    cr_assert_float_eq(a.power_limit_w, 350.0, 1e-9);
    cr_assert(a.valid & GPU_HAS_CC);
    cr_assert_eq(a.cc_major, 9);
    /* entry points the library lacks read as not available, never as 0 */
    cr_assert_not(a.valid & GPU_HAS_SERIAL);
    cr_assert_not(a.valid & GPU_HAS_FAN);
    cr_assert_not(a.valid & GPU_HAS_BAR1);
    cr_assert_not(a.valid & GPU_HAS_CLOCKS);
    /* processes: this test process (name from /proc) and one NVML cannot size */
    cr_assert(a.valid & GPU_HAS_PROCS);
    cr_assert_eq(a.n_procs, 2);
    cr_assert_eq(a.procs[0].pid, (uint32_t)getpid());
    cr_assert_eq(a.procs[0].mem_used, 512ULL << 20);
    cr_assert_eq(a.procs[0].graphics, 0);
    cr_assert(strstr(a.procs[0].name, "test_gpu"), "%s", a.procs[0].name);
    cr_assert_eq(a.procs[1].mem_used, UINT64_MAX);

    cr_assert_eq(gpu_query(g, 1, &b, &err), 0, "%s", err.msg);
    cr_assert_str_eq(b.name, "Fake GPU B");
    cr_assert_eq(b.util_gpu, 100);
    cr_assert_not(b.valid & GPU_HAS_TEMP, "a failing query is n/a");
    cr_assert(b.valid & GPU_HAS_PROCS);
    cr_assert_eq(b.n_procs, 0);
    cr_assert_eq(gpu_query(g, 2, &b, &err), ERR_GPU);
    gpu_close(g);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
