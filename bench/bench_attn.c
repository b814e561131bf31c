/* bench_attn — the fused attention (nn_flash) forward + backward at Stable-Diffusion-like
 * shapes against PyTorch's scaled_dot_product_attention on the CPU with the same thread
 * count (bench/peer_attn.py), in one run; also how far each one's peak resident set rises
 * while it runs (the materialised probabilities alone would be B·heads·T² floats). Prints a
 * skip line where python3 with torch is missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "base.h"
#include "nn_flash.h"

#define SECONDS 2.0

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':')
            v = atol(line + n + 1);
    fclose(f);
    return v;
}

static int reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static float *filled(size_t n, unsigned seed) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(((i + seed) * 2654435761u) % 2001) / 1000.0f - 1.0f;
    return x;
}

static void run(int B, int H, int T, int D, int threads) {
    size_t n = (size_t)B * T * H * D;
    float *q = filled(n, 1), *k = filled(n, 2), *v = filled(n, 3), *dout = filled(n, 4);
    float *o = filled(n, 5), *dq = filled(n, 6), *dk = filled(n, 7), *dv = filled(n, 8);
    float *lse = filled((size_t)B * H * T, 9);
    FlashAttn a = {.B = B, .NH = H, .Tq = T, .Tk = T, .hd = D};
    nn_flash_forward(o, lse, q, k, v, &a); /* warm-up */
    nn_flash_backward(dq, dk, dv, dout, q, k, v, o, lse, &a);
    int peak_ok = reset_peak() == 0;
    long base = status_kb("VmRSS");
    int iters = 0;
    double t0 = base_now();
    do {
        nn_flash_forward(o, lse, q, k, v, &a);
        memset(dq, 0, n * sizeof(float));
        memset(dk, 0, n * sizeof(float));
        memset(dv, 0, n * sizeof(float));
        nn_flash_backward(dq, dk, dv, dout, q, k, v, o, lse, &a);
        iters++;
    } while (base_now() - t0 < SECONDS);
    double ours = (base_now() - t0) * 1000.0 / iters;
    double our_peak = peak_ok ? (status_kb("VmHWM") - base) / 1024.0 : -1;
    double probs = (double)B * H * T * T * 4 / 1048576.0;
    char name[64], cmd[256];
    snprintf(name, sizeof name, "attn-fwd-bwd-b%d-h%d-t%d-d%d", B, H, T, D);
    snprintf(cmd, sizeof cmd, "python3 bench/peer_attn.py %d %d %d %d %d %.1f 2>/dev/null", B,
             H, T, D, threads, SECONDS);
    double peer = -1, peer_peak = -1;
    FILE *p = popen(cmd, "r");
    if (p) {
        if (fscanf(p, "%lf %lf", &peer, &peer_peak) != 2)
            peer = -1;
        pclose(p);
    }
    if (peer <= 0)
        printf("bench %s: skipped (PyTorch did not run; ours %.2f ms, peak +%.1f MB)\n", name,
               ours, our_peak);
    else
        printf("bench %s: %.2fx vs torch (ours %.2f ms, peer %.2f ms; peak +%.1f MB vs +%.1f "
               "MB, probabilities would be %.0f MB)\n",
               name, peer / ours, ours, peer, our_peak, peer_peak, probs);
    fflush(stdout);
    free(q), free(k), free(v), free(dout), free(o), free(dq), free(dk), free(dv), free(lse);
}

int main(void) {
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(threads, &err);
    if (!pool) {
        printf("bench attn: skipped (%s)\n", err.msg);
        return 0;
    }
    backend_cpu_use(pool);
    fprintf(stderr, "attn: %d threads\n", threads);
    run(1, 8, 1024, 64, threads);
    run(2, 8, 1024, 40, threads);
    run(1, 5, 4096, 64, threads);
    backend_cpu_use(NULL);
    backend_cpu_pool_free(pool);
    return 0;
}
