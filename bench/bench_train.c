/* bench_train — training throughput of the five-head reward model (concat fusion, 768 image +
 * 768 text inputs = 1536-d, heads 512/256, dropout 0.1, pairs objective, AdamW) at batch 8
 * and 256 pairs (both images of a pair under one prompt, as in every pair built from ratings),
 * against the same model in PyTorch on CPU with the same thread count, run in
 * the same process tree one after the other (bench/bench_train_torch.py; skipped with a
 * reason when python3 cannot import torch).
 *
 * Prints  bench train-b8: R.RRx vs pytorch (ours A pairs/s, peer B pairs/s)
 * Threads: EASEL_BENCH_THREADS, else every online CPU. Seconds per measurement:
 * EASEL_BENCH_SECONDS (default 3). Python: $EASEL_PY, else python3 on PATH (bench_common.h).
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "base.h"
#include "bench_common.h"
#include "model_reward.h"
#include "nn_sgemm.h"
#include "rng.h"

#define N_BATCHES 8 /* distinct batches cycled through, as a data loader would */

static double ours_pairs_per_s(int P, int threads, double seconds) {
    RewardConfig cfg;
    reward_config_defaults(&cfg, 768, 768);
    cfg.max_batch = 2 * P;
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(threads, &err);
    if (!pool) {
        fprintf(stderr, "bench train: %s\n", err.msg);
        return -1;
    }
    CpuPool *prev = backend_cpu_use(pool);
    RewardModel *m = reward_model_new(&cfg, 0, &err);
    if (!m) {
        fprintf(stderr, "bench train: %s\n", err.msg);
        backend_cpu_use(prev);
        backend_cpu_pool_free(pool);
        return -1;
    }
    Rng r;
    rng_init(&r, 1);
    size_t n_in = (size_t)2 * P * 768;
    float *img = xmalloc(N_BATCHES * n_in * sizeof(float));
    float *txt = xmalloc(N_BATCHES * n_in * sizeof(float));
    float *labels = xmalloc((size_t)N_BATCHES * P * 5 * sizeof(float));
    rng_fill_normal(&r, img, N_BATCHES * n_in, 0.0f, 1.0f / sqrtf(768.0f));
    rng_fill_normal(&r, txt, N_BATCHES * n_in, 0.0f, 1.0f / sqrtf(768.0f));
    /* both images of a pair answer the same prompt, as every pair from ratings does */
    for (int k = 0; k < N_BATCHES; k++)
        memcpy(txt + k * n_in + n_in / 2, txt + k * n_in, n_in / 2 * sizeof(float));
    for (size_t i = 0; i < (size_t)N_BATCHES * P * 5; i++)
        labels[i] = (float)rng_below(&r, 3) * 0.5f;
    RewardLoss loss;
    int steps = 0;
    double t0 = 0.0, el = 0.0;
    for (int it = 0;; it++) {
        if (it == 3)
            t0 = base_now(); /* three warm-up steps */
        int k = it % N_BATCHES;
        RewardPairBatch b = {P, labels + (size_t)k * P * 5, NULL, NULL, 0.0f};
        reward_model_forward(m, img + k * n_in, txt + k * n_in, 2 * P, 1, (uint64_t)it, NULL);
        reward_model_loss_pairs(m, &b, &loss, NULL);
        reward_model_backward(m);
        reward_model_step(m, 1e-4f, 0);
        if (it >= 3) {
            steps++;
            el = base_now() - t0;
            if (el >= seconds && steps >= 3)
                break;
        }
    }
    free(img);
    free(txt);
    free(labels);
    reward_model_free(m);
    backend_cpu_use(prev);
    backend_cpu_pool_free(pool);
    return steps * (double)P / el;
}

/* The peer's pairs/s, 0 when torch is unavailable (reason in why), -1 on failure. */
static double torch_pairs_per_s(int P, int threads, double seconds, char *why, size_t n_why) {
    const char *script = "bench/bench_train_torch.py";
    if (!bench_peer_ready(script, why, n_why))
        return 0;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d MKL_NUM_THREADS=%d %s %s %d %d %g", threads,
             threads, bench_python(), script, P, threads, seconds);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[256];
    double v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "pairs_per_s %lf", &v) == 1)
            break;
    pclose(f);
    if (v <= 0)
        snprintf(why, n_why, "the PyTorch peer failed (run: %s)", cmd);
    return v;
}

int main(void) {
    int threads = bench_threads();
    double seconds = bench_seconds();
    fprintf(stderr, "bench train: %d threads for both, %.0f s per measurement, GEMM %s (OpenBLAS "
            "core %s)\n", threads, seconds,
            nn_sgemm_available() ? "nn_sgemm (AVX-512)" : "OpenBLAS", openblas_get_corename());
    int batches[2] = {8, 256};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        int P = batches[i];
        double ours = ours_pairs_per_s(P, threads, seconds);
        char why[256] = "";
        double peer = torch_pairs_per_s(P, threads, seconds, why, sizeof why);
        if (ours <= 0) {
            printf("bench train-b%d: failed\n", P);
            rc = 1;
        } else if (peer <= 0) {
            printf("bench train-b%d: skipped pytorch: %s (ours %.1f pairs/s, %d threads)\n", P,
                   why, ours, threads);
        } else {
            printf("bench train-b%d: %.2fx vs pytorch (ours %.1f pairs/s, peer %.1f pairs/s)\n", P,
                   ours / peer, ours, peer);
        }
        fflush(stdout);
    }
    return rc;
}
