/* bench_tune_sd — one Diffusion-DPO training step of `easel tune` on the CPU against diffusers +
 * PEFT in PyTorch with the same thread count, in one run (issue 16).
 *
 * The model: an SD-1.5-shaped UNet of bench size (bench/peer_tune_sd.py's CONFIG: SD 1.5's
 * config with block_out_channels (128, 256, 256), the same block types, two layers per level,
 * 8 heads, 768-wide cross attention), random weights that `peer_tune_sd.py make` saves once as a
 * diffusers folder of f32 safetensors (build/bench-models/tune-sd15/unet, torch.manual_seed(0));
 * ours loads the same folder with unet_load. The adapter: rank 8, alpha 32 on the original's
 * six targets (to_q, to_k, to_v, to_out.0, ff.net.0.proj, ff.net.2), LoRA (tune-dpo-…) and
 * DoRA (tune-dora-dpo-…), B zero at the start as PEFT's. The step: $EASEL_BENCH_TUNE_PAIRS
 * pairs (default 2: one UNet batch of 4) at $EASEL_BENCH_TUNE_SIZE² latents (default 32, 256²
 * images), one timestep and noise per pair shared by its two images, 77-token conditioning,
 * the reference's forward with the adapter off, the policy's forward and backward, the DPO
 * loss (β 2000), gradient clipping at 1.0 and one AdamW step: ours tune_batch_grad +
 * tune_opt_step (what `easel tune` runs per step), the peer train_diffusion_dpo.py's step (its
 * defaults: no gradient checkpointing; ours keeps every block's internals for the backward
 * too when its arena has room, as the bench's 1.25 GiB has, else checkpoints per block:
 * $EASEL_BENCH_TUNE_ARENA_MB=512 times that path). Each side: one
 * warm-up step, then the median of $EASEL_BENCH_TUNE_REPS (default 3) steps, as pairs/s.
 * Beside each line: the peak resident set of each side (ours: VmHWM reset before the load and
 * again after it, for the steps alone; the peer's: ru_maxrss of its own process).
 * $EASEL_BENCH_TUNE (lora or dora) runs one of them only; $EASEL_BENCH_TUNE_OURS=1 runs ours
 * alone (e.g. under perf); $EASEL_BENCH_TUNE_PARTS=1 adds a line of where our step's CPU time
 * goes (the reference's forward, a forward with the adapter, the micro-batch, the optimizer).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "backend_cpu.h"
#include "base.h"
#include "bench_common.h"
#include "rng.h"
#include "scheduler.h"
#include "sd_weights.h"
#include "tune_loss.h"
#include "tune_step.h"
#include "unet.h"

#define ROOT "build/bench-models"
#define MODEL ROOT "/tune-sd15"
#define PEER "bench/peer_tune_sd.py"
#define TOKENS 77
#define BETA 2000.0f

static int env_int(const char *name, int dflt) {
    const char *e = getenv(name);
    return e && atoi(e) > 0 ? atoi(e) : dflt;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* CPU seconds of this process, all threads. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double peak_mb(void) { return base_proc_status_kb("VmHWM") / 1024.0; }

/* Our median seconds per step, or -1 with the reason in ERR; *cpu_s: the median CPU seconds
 * per step; *load_mb, *run_mb: peak RSS over the load and over the steps. */
static double ours(int dora, int size, int B, int threads, int reps, double *cpu_s,
                   double *load_mb, double *run_mb, Err *err) {
    base_peak_rss_reset();
    Backend *be = NULL;
    /* block outputs, their gradients and every block's record (keep mode, unet.h): 1.25 GiB
     * at the defaults (peaks of 751 MiB for LoRA, 1000 MiB for DoRA at 32², batch 4, whose
     * estimate is 1.07 GiB; per-block checkpointing needs under 512 MiB);
     * $EASEL_BENCH_TUNE_ARENA_MB sets it (e.g. 512: the checkpointing path) */
    size_t arena_mb = (size_t)env_int("EASEL_BENCH_TUNE_ARENA_MB", 1280);
    BackendConfig bcfg = {.threads = threads, .arena_bytes = arena_mb << 20};
    SdWeights *w = NULL;
    Unet *u = NULL;
    TuneOpt o = {0};
    double sec = -1;
    static const char *const targets[] = UNET_ADAPTER_DEFAULT_TARGETS;
    UnetAdapterConfig ac = {8, 32.0f, dora, targets, 6, 1};
    int rc = backend_open("cpu", &bcfg, &be, NULL, 0, err);
    if (!rc)
        rc = sd_weights_open(MODEL, "unet", &w, err);
    if (!rc)
        rc = unet_load(w, be, NULL, &u, err);
    sd_weights_close(w);
    if (!rc)
        rc = unet_adapter_add(u, &ac, err);
    if (!rc)
        rc = tune_opt_init(&o, u, be, TUNE_OPT_ADAMW, err);
    SchedConfig sc;
    sched_config_default(&sc, SCHED_DDIM);
    sc.beta_start = 0.00085, sc.beta_end = 0.012, sc.num_train_timesteps = 1000;
    sc.beta_schedule = SCHED_BETAS_SCALED_LINEAR;
    Scheduler sch = {0};
    if (!rc)
        rc = scheduler_init(&sch, &sc, 1, err);
    if (rc) {
        unet_free(u);
        backend_close(be);
        return -1;
    }
    const UnetConfig *c = unet_config(u);
    int C = c->in_channels, D = c->cross_dim;
    size_t N = (size_t)C * size * size, ne = (size_t)TOKENS * D;
    float *x0 = xmalloc(2 * B * N * sizeof *x0), *noise = xmalloc(B * N * sizeof *noise);
    float *xt = xmalloc(2 * B * N * sizeof *xt), *tgt = xmalloc(2 * B * N * sizeof *tgt);
    float *ehs = xmalloc(2 * B * ne * sizeof *ehs), *t = xmalloc(2 * B * sizeof *t);
    Rng r;
    rng_init(&r, 1);
    *load_mb = peak_mb();
    base_peak_rss_reset();
    double *times = xmalloc(2 * (size_t)reps * sizeof *times), *cpu = times + reps;
    for (int i = -1; i < reps && !rc; i++) {
        double t0 = base_now(), c0 = cpu_now();
        /* the batch: as the trainer draws one (tune.c), the pair's t and noise shared */
        rng_fill_normal(&r, x0, 2 * B * N, 0.0f, 0.8f);
        rng_fill_normal(&r, noise, B * N, 0.0f, 1.0f);
        rng_fill_normal(&r, ehs, B * ne, 0.0f, 1.0f);
        for (int b = 0; b < B; b++) {
            int ts = (int)rng_below(&r, 1000);
            for (int side = 0; side < 2; side++) {
                int row = side * B + b;
                t[row] = (float)ts;
                tune_add_noise(sch.alphas_cumprod, ts, x0 + row * N, noise + b * N, N,
                               SCHED_PRED_EPSILON, xt + row * N, tgt + row * N);
            }
        }
        memcpy(ehs + B * ne, ehs, B * ne * sizeof *ehs);
        TuneBatch tb = {B, C, size, size, xt, tgt, t, ehs, TOKENS, D, NULL, 0, NULL};
        TuneLossStats st;
        float gn;
        rc = tune_batch_grad(u, be, &tb, TUNE_DPO, 0, BETA, 1.0f, &st, err);
        if (!rc)
            rc = tune_opt_step(&o, 1e-5f, &gn, err);
        if (i >= 0)
            times[i] = base_now() - t0, cpu[i] = cpu_now() - c0;
    }
    if (!rc)
        sec = median(times, reps), *cpu_s = median(cpu, reps);
    if (!rc && getenv("EASEL_BENCH_TUNE_PARTS")) { /* where a step's CPU time goes */
        int64_t xs[4] = {2 * B, C, size, size}, es[3] = {2 * B, TOKENS, D};
        Tensor dx = backend_tensor_new(be, DTYPE_F32, 4, xs);
        Tensor dout = backend_tensor_new(be, DTYPE_F32, 4, xs);
        Tensor de = backend_tensor_new(be, DTYPE_F32, 3, es);
        Tensor hx = tensor_4d(xt, 2 * B, C, size, size), he = tensor_3d(ehs, 2 * B, TOKENS, D);
        backend_upload(be, &dx, &hx);
        backend_upload(be, &de, &he);
        double c0 = cpu_now();
        unet_lora_enable(u, 0);
        rc = unet_forward(u, be, &dout, &dx, t, &de, NULL, NULL, err);
        unet_lora_enable(u, 1);
        double c1 = cpu_now();
        if (!rc)
            rc = unet_forward(u, be, &dout, &dx, t, &de, NULL, NULL, err);
        double c2 = cpu_now();
        TuneBatch tb = {B, C, size, size, xt, tgt, t, ehs, TOKENS, D, NULL, 0, NULL};
        TuneLossStats st;
        float gn;
        if (!rc)
            rc = tune_batch_grad(u, be, &tb, TUNE_DPO, 0, BETA, 1.0f, &st, err);
        double c3 = cpu_now();
        if (!rc)
            rc = tune_opt_step(&o, 1e-5f, &gn, err);
        double c4 = cpu_now();
        printf("  parts (CPU s): forward adapter off %.3f, forward adapter on %.3f, "
               "tune_batch_grad %.3f (so forward+backward %.3f), tune_opt_step %.3f; "
               "records %s, arena peak %.0f of %zu MiB\n",
               c1 - c0, c2 - c1, c3 - c2, c3 - c2 - (c1 - c0), c4 - c3,
               unet_kept(u) ? "kept" : "recomputed per block",
               backend_arena_peak(be) / 1048576.0, arena_mb);
        backend_tensor_free(be, &dx), backend_tensor_free(be, &dout);
        backend_tensor_free(be, &de);
    }
    *run_mb = peak_mb();
    free(times), free(x0), free(noise), free(xt), free(tgt), free(ehs), free(t);
    scheduler_deinit(&sch);
    tune_opt_deinit(&o);
    unet_free(u);
    backend_close(be);
    return sec;
}

static void bench_one(int dora, int size, int B, int threads, int reps) {
    char bench[64];
    snprintf(bench, sizeof bench, "tune-%sdpo-b%d-%d", dora ? "dora-" : "", B, size);
    Err err = {0};
    double load_mb = 0, run_mb = 0, cpu = 0;
    double s = ours(dora, size, B, threads, reps, &cpu, &load_mb, &run_mb, &err);
    if (s <= 0) {
        printf("bench %s: skipped (our step failed: %s)\n", bench, err.msg);
        fflush(stdout);
        return;
    }
    double pv[3] = {-1, -1, -1};
    int alone = getenv("EASEL_BENCH_TUNE_OURS") != NULL;
    if (!alone) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s " PEER " step " ROOT " %s %d %d %d %d 2>/dev/null",
                 bench_python(), dora ? "dora" : "lora", size, B, threads, reps);
        bench_peer_numbers(cmd, pv, 3);
    }
    double mine = B / s;
    if (alone)
        printf("bench %s: skipped (EASEL_BENCH_TUNE_OURS: the peer was not run; ours %.3f "
               "pairs/s)\n", bench, mine);
    else if (pv[0] <= 0)
        printf("bench %s: skipped (diffusers + PEFT in PyTorch did not run: %s " PEER
               " by hand shows why; ours %.3f pairs/s)\n", bench, bench_python(), mine);
    else
        printf("bench %s: %.2fx vs diffusers+peft (ours %.3f pairs/s, peer %.3f pairs/s)\n",
               bench, mine / (B / pv[0]), mine, B / pv[0]);
    double ours_mb = load_mb > run_mb ? load_mb : run_mb;
    printf("  %s: one DPO step, %s rank 8 alpha 32 on 6 targets, %d pairs (UNet batch %d), "
           "%dx%d latents, %d threads, f32, median of %d after a warm-up; per step: ours %.2f s "
           "(%.2f CPU s), peer %.2f s (%.2f CPU s); peak resident set: ours %.0f MB (%.0f MB "
           "in the steps), peer %.0f MB\n",
           bench, dora ? "DoRA" : "LoRA", B, 2 * B, size, size, threads, reps, s, cpu, pv[0],
           pv[2], ours_mb, run_mb, pv[0] > 0 ? pv[1] : -1.0);
    fflush(stdout);
}

int main(void) {
    int threads = bench_threads();
    backend_cpu_blas_serial(); /* as easel's main(): the pool threads the work, not OpenBLAS */
    char why[256];
    if (!bench_peer_ready(PEER, why, sizeof why)) {
        printf("bench tune: skipped (%s)\n", why);
        return 0;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s " PEER " make " ROOT " >/dev/null 2>&1", bench_python());
    if (system(cmd) != 0) {
        printf("bench tune: skipped (%s " PEER " make could not make the random model: it "
               "needs torch, diffusers and peft)\n", bench_python());
        return 0;
    }
    int size = env_int("EASEL_BENCH_TUNE_SIZE", 32), B = env_int("EASEL_BENCH_TUNE_PAIRS", 2);
    int reps = env_int("EASEL_BENCH_TUNE_REPS", 3);
    const char *only = getenv("EASEL_BENCH_TUNE");
    for (int dora = 0; dora < 2; dora++)
        if (!only || !strcmp(only, dora ? "dora" : "lora"))
            bench_one(dora, size, B, threads, reps);
    return 0;
}
