/* bench_tune — one Diffusion-DPO training step of `easel tune` on the CPU against diffusers +
 * PEFT in PyTorch with the same thread count, in one run (bench name tune-dpo-step-LATENT): the
 * tiny SD-shaped UNet of tests/models (unet_sd) at 32² latents, one pair (a batch of 2
 * samples), LoRA r 8 / alpha 32 on the original's six targets; ours is tune_batch_grad (the
 * reference's forward with the adapter off, the policy's forward and backward in one
 * unet_forward_backward) and tune_opt_step (gather, clip at 1.0, AdamW, upload), the peer
 * bench/peer_tune.py the same step as train_diffusion_dpo.py takes it (reference under no_grad
 * with the adapters disabled, forward, loss, backward, clip_grad_norm_, AdamW). Each side: one
 * warm-up step, then the median of $EASEL_BENCH_TUNE_REPS (default 5). The target is
 * 1.5× the peer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "base.h"
#include "bench_common.h"
#include "sd_weights.h"
#include "tune_step.h"
#include "unet.h"

#define UNET "tests/models/fixtures/unet_sd"
#define PEER "bench/peer_tune.py"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    const int S = 32, T = 77, threads = bench_threads();
    const char *e = getenv("EASEL_BENCH_TUNE_REPS");
    int reps = e && atoi(e) > 0 ? atoi(e) : 5;
    char bench[64];
    snprintf(bench, sizeof bench, "tune-dpo-step-%d", S);
    Err err = {0};
    Backend *be = NULL;
    BackendConfig bc = {.threads = threads, .arena_bytes = (size_t)256 << 20};
    SdWeights *w = NULL;
    Unet *u = NULL;
    if (backend_open("cpu", &bc, &be, NULL, 0, &err) || sd_weights_open(UNET, "unet", &w, &err) ||
        unet_load(w, be, NULL, &u, &err) ||
        unet_adapter_add(u, &(UnetAdapterConfig){8, 32.0f, 0, NULL, 0, 1}, &err)) {
        printf("bench %s: skipped (%s)\n", bench, err.msg);
        return 0;
    }
    const UnetConfig *uc = unet_config(u);
    int C = uc->in_channels, D = uc->cross_dim;
    size_t N = (size_t)C * S * S;
    float *xt = xmalloc(2 * N * sizeof *xt), *tgt = xmalloc(2 * N * sizeof *tgt);
    float *ehs = xmalloc((size_t)2 * T * D * sizeof *ehs), tt[2] = {500, 500};
    srand(1);
    for (size_t i = 0; i < 2 * N; i++)
        xt[i] = (float)rand() / RAND_MAX * 2 - 1, tgt[i] = (float)rand() / RAND_MAX * 2 - 1;
    for (size_t i = 0; i < (size_t)2 * T * D; i++)
        ehs[i] = (float)rand() / RAND_MAX * 2 - 1;
    TuneBatch b = {1, C, S, S, xt, tgt, tt, ehs, T, D, NULL, 0, NULL};
    TuneOpt o;
    int rc = tune_opt_init(&o, u, be, TUNE_OPT_ADAMW, &err);
    double *times = xmalloc((size_t)(reps + 1) * sizeof *times);
    for (int i = 0; !rc && i <= reps; i++) {
        double t0 = base_wall();
        TuneLossStats st;
        float gn;
        rc = tune_batch_grad(u, be, &b, TUNE_DPO, 0, 2000.0f, 1.0f, &st, &err);
        if (!rc)
            rc = tune_opt_step(&o, 1e-5f, &gn, &err);
        times[i] = base_wall() - t0; /* [0] is the warm-up */
    }
    if (rc) {
        printf("bench %s: skipped (%s)\n", bench, err.msg);
        return 0;
    }
    qsort(times + 1, (size_t)reps, sizeof *times, cmp_double);
    double ours = times[1 + reps / 2];
    double peak = base_proc_status_kb("VmHWM") / 1024.0;
    char why[256], cmd[512];
    double pv[2] = {-1, 0};
    if (bench_peer_ready(PEER, why, sizeof why)) {
        snprintf(cmd, sizeof cmd, "%s " PEER " " UNET " %d %d %d 2>/dev/null", bench_python(), S,
                 threads, reps);
        if (bench_peer_numbers(cmd, pv, 2))
            snprintf(why, sizeof why, "diffusers + peft did not run: %s " PEER " by hand shows "
                     "why", bench_python());
    }
    if (pv[0] <= 0)
        printf("bench %s: skipped (%s; ours %.4f s)\n", bench, why, ours);
    else
        printf("bench %s: %.2fx vs diffusers + peft (ours %.4f s, peer %.4f s)\n", bench,
               pv[0] / ours, ours, pv[0]);
    printf("  one DPO step, 1 pair, LoRA r 8, %d threads; peak resident set: ours %.0f MB, "
           "peer %.0f MB\n", threads, peak, pv[1]);
    free(times), free(xt), free(tgt), free(ehs);
    tune_opt_deinit(&o);
    unet_free(u);
    sd_weights_close(w);
    backend_close(be);
    return 0;
}
