/* bench_common — what the benchmarks of bench/ share: the thread count and seconds per
 * measurement they take from the environment, and running a Python peer. Header-only: each
 * bench/bench_*.c is a binary of its own and links no test support.
 */
#ifndef EASEL_BENCH_COMMON_H
#define EASEL_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Threads for ours and the peer: $EASEL_BENCH_THREADS, else every online CPU. */
static inline int bench_threads(void) {
    const char *e = getenv("EASEL_BENCH_THREADS");
    int threads = e ? atoi(e) : 0;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    return threads;
}

/* Seconds per measurement: $EASEL_BENCH_SECONDS, else 3. */
static inline double bench_seconds(void) {
    const char *e = getenv("EASEL_BENCH_SECONDS");
    return e && atof(e) > 0 ? atof(e) : 3.0;
}

/* The peers' Python: $EASEL_PY, else python3 on PATH (bench/run_all.sh puts the venv's first). */
static inline const char *bench_python(void) {
    const char *py = getenv("EASEL_PY");
    return py && *py ? py : "python3";
}

/* 1 when the peer SCRIPT is there and bench_python() imports torch; else 0 with the reason in
 * WHY (N_WHY bytes). */
static inline int bench_peer_ready(const char *script, char *why, size_t n_why) {
    if (access(script, R_OK) != 0) {
        snprintf(why, n_why, "%s not found (run from the repository root)", script);
        return 0;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s -c 'import torch' >/dev/null 2>&1", bench_python());
    if (system(cmd) != 0) {
        snprintf(why, n_why, "%s cannot import torch (make bench installs it)", bench_python());
        return 0;
    }
    return 1;
}

/* Run the peer command CMD; the first N numbers it prints go into V. Returns 0, or -1 when it
 * did not start or printed fewer (V[0] is then -1). */
static inline int bench_peer_numbers(const char *cmd, double *v, int n) {
    FILE *p = popen(cmd, "r");
    int got = 0;
    if (p) {
        while (got < n && fscanf(p, "%lf", &v[got]) == 1)
            got++;
        pclose(p);
    }
    if (got == n)
        return 0;
    v[0] = -1;
    return -1;
}

#endif
