/* Tests for src/hwmon.c: the background GPU sampler and its history, on the NVML stand-in
 * of tests/fixtures/gpu (two GPUs: A's utilisation steps 0,10,..,100 %, B's stays 100 %). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hwmon.h"

static atomic_int rounds;
static void count_round(void *ud) {
    (void)ud;
    atomic_fetch_add(&rounds, 1);
}

Test(hwmon, no_gpu_is_a_clear_state_and_no_thread) {
    setenv("EASEL_NO_GPU", "1", 1);
    HwMonitor *m = hwmon_start(0.01, count_round, NULL);
    cr_assert_not_null(m);
    cr_assert_eq(hwmon_count(m), 0);
    cr_assert(strstr(hwmon_reason(m), "EASEL_NO_GPU"));
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    cr_assert_eq(atomic_load(&rounds), 0, "nothing to sample");
    hwmon_stop(m);
}

Test(hwmon, samples_history_in_the_background) {
    char dir[] = "/tmp/easel-hwmon-XXXXXX", cmd[512], lib[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(lib, sizeof lib, "%s/libfake-nvml.so", dir);
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O1 -o %s tests/fixtures/gpu/fake_nvml.c", lib);
    cr_assert_eq(system(cmd), 0);
    setenv("EASEL_NVML_LIB", lib, 1);
    unsetenv("EASEL_NO_GPU");
    HwMonitor *m = hwmon_start(0.01, count_round, NULL);
    cr_assert_eq(hwmon_count(m), 2, "%s", hwmon_reason(m));
    cr_assert_str_eq(hwmon_driver_version(m), "999.01");
    while (atomic_load(&rounds) < 12) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    GpuInfo info;
    double util[HWMON_HIST], mem[HWMON_HIST];
    int n;
    Err err = {0};
    cr_assert_eq(hwmon_snapshot(m, 1, &info, util, mem, HWMON_HIST, &n, &err), 0, "%s",
                 err.msg);
    cr_assert_str_eq(info.name, "Fake GPU B");
    cr_assert(n >= 12);
    for (int i = 0; i < n; i++) {
        cr_assert_float_eq(util[i], 1.0, 1e-12);
        cr_assert_float_eq(mem[i], 0.75, 1e-12);
    }
    /* A steps by 10 %: consecutive samples differ by 0.1 (or wrap from 1.0 to 0) */
    double a[4];
    cr_assert_eq(hwmon_snapshot(m, 0, &info, a, NULL, 4, &n, &err), 0);
    cr_assert_eq(n, 4, "only the newest MAX samples");
    for (int i = 1; i < 4; i++) {
        double d = a[i] - a[i - 1];
        cr_assert(fabs(d - 0.1) < 1e-9 || fabs(a[i]) < 1e-12, "%g then %g", a[i - 1], a[i]);
    }
    hwmon_stop(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
