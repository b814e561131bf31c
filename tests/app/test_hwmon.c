/* Tests for src/app/hwmon.c: the background GPU sampler and its history, on the NVML stand-in
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

Test(hwmon, no_gpu_is_a_clear_state_and_the_cpu_is_still_sampled) {
    setenv("EASEL_NO_GPU", "1", 1);
    atomic_store(&rounds, 0);
    HwMonitor *m = hwmon_start(0.01, count_round, NULL);
    cr_assert_not_null(m);
    cr_assert_eq(hwmon_count(m), 0);
    cr_assert(strstr(hwmon_reason(m), "EASEL_NO_GPU"));
    while (atomic_load(&rounds) < 3) { /* CPU training is watched too: the sampler runs */
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    HwCpuInfo info;
    double cpu[HWMON_HIST], mem[HWMON_HIST];
    int n = 0;
    hwmon_cpu_snapshot(m, &info, cpu, mem, HWMON_HIST, &n);
    cr_assert(info.ok && info.n_cpus >= 1, "cores %d", info.n_cpus);
    cr_assert(info.total >= 0 && info.total <= 1, "%f", info.total);
    cr_assert(info.mem_ok && info.mem_total > info.mem_available && info.mem_available > 0);
    cr_assert(info.load_ok && info.load[0] >= 0);
    cr_assert(n >= 3, "history %d", n);
    cr_assert(mem[n - 1] > 0 && mem[n - 1] < 1, "%f", mem[n - 1]);
    hwmon_stop(m);
}

Test(hwmon, proc_parsers) {
    const char *stat = "cpu  100 5 50 800 20 3 2 0 7 0\n"
                       "cpu0 60 5 30 400 10 2 1 0 7 0\n"
                       "cpu1 40 0 20 400 10 1 1 0 0 0\n"
                       "intr 12345 0 0\nctxt 999\nprocs_running 3\n";
    HwCpuTimes all, cores[4];
    cr_assert_eq(hwmon_parse_stat(stat, &all, cores, 4), 2);
    cr_assert_eq(all.busy, 100 + 5 + 50 + 3 + 2 + 0);
    cr_assert_eq(all.total, all.busy + 800 + 20);
    cr_assert_eq(cores[1].busy, 40 + 20 + 1 + 1);
    cr_assert_eq(hwmon_parse_stat("intr 1\n", &all, cores, 4), -1, "no cpu line");
    HwCpuTimes a = {100, 1000}, b = {175, 1100};
    cr_assert_float_eq(hwmon_cpu_busy(a, b), 0.75, 1e-12);
    cr_assert(isnan(hwmon_cpu_busy(a, a)), "no time passed");
    uint64_t t, av, st, sf;
    cr_assert_eq(hwmon_parse_meminfo("MemTotal:       16000 kB\nMemFree:  1000 kB\n"
                                     "MemAvailable:   4000 kB\nBuffers: 10 kB\n"
                                     "SwapTotal: 2000 kB\nSwapFree: 500 kB\n",
                                     &t, &av, &st, &sf), 0);
    cr_assert_eq(t, 16000u * 1024u);
    cr_assert_eq(av, 4000u * 1024u);
    cr_assert_eq(st, 2000u * 1024u);
    cr_assert_eq(sf, 500u * 1024u);
    cr_assert_eq(hwmon_parse_meminfo("MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 5 kB\n"
                                     "Cached: 20 kB\n", &t, &av, &st, &sf), 0);
    cr_assert_eq(av, 35u * 1024u, "old kernels: free + buffers + cached");
    cr_assert_eq(hwmon_parse_meminfo("nothing\n", &t, &av, &st, &sf), -1);
    double load[3];
    int running, total;
    cr_assert_eq(hwmon_parse_loadavg("0.52 1.58 2.59 2/1234 5678\n", load, &running, &total), 0);
    cr_assert_float_eq(load[1], 1.58, 1e-12);
    cr_assert_eq(running, 2);
    cr_assert_eq(total, 1234);
    cr_assert_eq(hwmon_parse_loadavg("", load, &running, &total), -1);
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

/* Sampling faster than the kernel's clock tick: /proc/stat has not moved between two samples.
 * The CPU figure stays the last one measured instead of turning into NaN ("unknown") — the
 * no-GPU test above failed that way once under a loaded sanitizer run. */
Test(hwmon, sampling_faster_than_the_clock_tick_keeps_a_figure) {
    setenv("EASEL_NO_GPU", "1", 1);
    atomic_store(&rounds, 0);
    HwMonitor *m = hwmon_start(0.0005, count_round, NULL);
    cr_assert_not_null(m);
    int seen = 0, bad = 0;
    while (atomic_load(&rounds) < 60) {
        struct timespec ts = {0, 300000L};
        nanosleep(&ts, NULL);
        HwCpuInfo info;
        double cpu[HWMON_HIST], mem[HWMON_HIST];
        int n = 0;
        hwmon_cpu_snapshot(m, &info, cpu, mem, HWMON_HIST, &n);
        if (!info.ok)
            continue;
        seen++;
        bad += !(info.total >= 0 && info.total <= 1);
    }
    hwmon_stop(m);
    cr_assert_gt(seen, 0);
    cr_assert_eq(bad, 0, "%d of %d snapshots had no CPU figure", bad, seen);
}
