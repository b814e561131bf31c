/* bench_ops — the diffusion ops of nn_diffusion.h at an SD-like shape (one 320-channel
 * 64×64 feature map, the first UNet level at 512×512) against PyTorch on the CPU with the same
 * thread count (bench/peer_ops.py, run after ours in the same process tree; skipped with a
 * reason when Python cannot import torch):
 *   conv2d-3x3-fwd     Conv2d(320, 320, 3, padding=1) with bias, forward
 *   conv2d-3x3-train   forward + backward (input, weight and bias gradients)
 *   groupnorm-fwd      GroupNorm(32, 320, eps=1e-5) with affine, forward
 *   groupnorm-train    forward + backward
 * "train" includes zeroing our gradient buffers (backward adds into them), as PyTorch pays
 * for allocating its .grad tensors.
 *
 * Prints  bench NAME: R.RRx vs torch (ours A ms, peer B ms), R = peer time / ours; each time
 * is the fastest iteration of a run of EASEL_BENCH_SECONDS, on both sides.
 * Threads: EASEL_BENCH_THREADS, else every online CPU. Seconds per measurement:
 * EASEL_BENCH_SECONDS (default 3). Python: $EASEL_PY, else python3 on PATH.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "base.h"
#include "bench_common.h"
#include "nn_diffusion.h"
#include "nn_sgemm.h"
#include "rng.h"

#define N_OPS 4
static const char *const op_names[N_OPS] = {"conv2d-3x3-fwd", "conv2d-3x3-train",
                                             "groupnorm-fwd", "groupnorm-train"};

typedef struct Bufs {
    ConvShape s;
    int G;
    size_t n; /* floats in one (1,320,64,64) map */
    float *x, *w, *b, *y, *dout, *dx, *dw, *db, *scratch, *gw, *gb, *mean, *rstd;
} Bufs;

static void run_op(Bufs *u, int op) {
    size_t nw = (size_t)u->s.OC * u->s.C * 9;
    int C = u->s.C, HW = u->s.H * u->s.W;
    switch (op) {
    case 0:
        nn_conv2d_forward(u->y, u->scratch, u->x, u->w, u->b, &u->s);
        break;
    case 1:
        nn_conv2d_forward(u->y, u->scratch, u->x, u->w, u->b, &u->s);
        memset(u->dx, 0, u->n * sizeof(float));
        memset(u->dw, 0, nw * sizeof(float));
        memset(u->db, 0, (size_t)u->s.OC * sizeof(float));
        nn_conv2d_backward(u->dx, u->dw, u->db, u->scratch, u->dout, u->x, u->w, &u->s);
        break;
    case 2:
        nn_groupnorm_forward(u->y, u->mean, u->rstd, u->x, u->gw, u->gb, 1, C, HW, u->G, 1e-5f);
        break;
    default:
        nn_groupnorm_forward(u->y, u->mean, u->rstd, u->x, u->gw, u->gb, 1, C, HW, u->G, 1e-5f);
        memset(u->dx, 0, u->n * sizeof(float));
        memset(u->dw, 0, (size_t)C * sizeof(float));
        memset(u->db, 0, (size_t)C * sizeof(float));
        nn_groupnorm_backward(u->dx, u->dw, u->db, u->dout, u->x, u->gw, u->mean, u->rstd, 1, C,
                              HW, u->G);
        break;
    }
}

/* Milliseconds per iteration of every op: the fastest iteration after one warm-up, so that a
 * busy machine's stalls do not count (the peer is timed the same way). */
static int ours_ms(double *ms, int threads, double seconds) {
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(threads, &err);
    if (!pool) {
        fprintf(stderr, "bench ops: %s\n", err.msg);
        return -1;
    }
    CpuPool *prev = backend_cpu_use(pool);
    Bufs u = {.s = {.B = 1, .C = 320, .H = 64, .W = 64, .OC = 320, .K = 3, .stride = 1,
                    .pad = 1},
              .G = 32};
    u.n = (size_t)320 * 64 * 64;
    size_t nw = (size_t)320 * 320 * 9;
    Rng r;
    rng_init(&r, 1);
    u.x = xmalloc(u.n * sizeof(float));
    u.y = xmalloc(u.n * sizeof(float));
    u.dout = xmalloc(u.n * sizeof(float));
    u.dx = xmalloc(u.n * sizeof(float));
    u.w = xmalloc(nw * sizeof(float));
    u.dw = xmalloc(nw * sizeof(float));
    u.b = xmalloc(320 * sizeof(float));
    u.db = xmalloc(320 * sizeof(float));
    u.gw = xmalloc(320 * sizeof(float));
    u.gb = xmalloc(320 * sizeof(float));
    u.mean = xmalloc(32 * sizeof(float));
    u.rstd = xmalloc(32 * sizeof(float));
    u.scratch = xmalloc((nn_conv2d_scratch_floats(&u.s) + 1) * sizeof(float));
    rng_fill_normal(&r, u.x, u.n, 0.0f, 1.0f);
    rng_fill_normal(&r, u.dout, u.n, 0.0f, 1.0f);
    rng_fill_normal(&r, u.w, nw, 0.0f, 0.02f);
    rng_fill_normal(&r, u.b, 320, 0.0f, 1.0f);
    rng_fill_normal(&r, u.gw, 320, 0.0f, 1.0f);
    rng_fill_normal(&r, u.gb, 320, 0.0f, 1.0f);
    for (int op = 0; op < N_OPS; op++) {
        run_op(&u, op);
        int n = 0;
        double t0 = base_now(), best = 1e30;
        for (;;) {
            double t1 = base_now();
            run_op(&u, op);
            double t2 = base_now();
            best = t2 - t1 < best ? t2 - t1 : best;
            n++;
            if (t2 - t0 >= seconds && n >= 3)
                break;
        }
        ms[op] = best * 1e3;
    }
    float *all[] = {u.x, u.y, u.dout, u.dx, u.w, u.dw, u.b, u.db, u.gw, u.gb, u.mean, u.rstd,
                    u.scratch};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    backend_cpu_use(prev);
    backend_cpu_pool_free(pool);
    return 0;
}

/* The peer's milliseconds per op (0 where it printed none); returns 0, or -1 with a reason. */
static int torch_ms(double *ms, int threads, double seconds, char *why, size_t n_why) {
    const char *script = "bench/peer_ops.py";
    if (!bench_peer_ready(script, why, n_why))
        return -1;
    const char *py = bench_python();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d MKL_NUM_THREADS=%d %s %s %d %g", threads,
             threads, py, script, threads, seconds);
    FILE *f = popen(cmd, "r");
    if (!f) {
        snprintf(why, n_why, "cannot run %s", cmd);
        return -1;
    }
    char line[256], name[64];
    double v;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %lf", name, &v) == 2)
            for (int op = 0; op < N_OPS; op++)
                if (strcmp(name, op_names[op]) == 0)
                    ms[op] = v;
    int st = pclose(f);
    if (st != 0)
        snprintf(why, n_why, "the PyTorch peer failed (run: %s)", cmd);
    return st == 0 ? 0 : -1;
}

int main(void) {
    int threads = bench_threads();
    double seconds = bench_seconds();
    fprintf(stderr, "bench ops: %d threads for both, %.0f s per measurement, GEMM %s (OpenBLAS "
            "core %s)\n", threads, seconds,
            nn_sgemm_available() ? "nn_sgemm (AVX-512)" : "OpenBLAS", openblas_get_corename());
    double ours[N_OPS] = {0}, peer[N_OPS] = {0};
    if (ours_ms(ours, threads, seconds) != 0) {
        printf("bench ops: failed\n");
        return 1;
    }
    char why[256] = "";
    int prc = torch_ms(peer, threads, seconds, why, sizeof why);
    for (int op = 0; op < N_OPS; op++) {
        if (peer[op] > 0)
            printf("bench %s: %.2fx vs torch (ours %.2f ms, peer %.2f ms)\n", op_names[op],
                   peer[op] / ours[op], ours[op], peer[op]);
        else
            printf("bench %s: skipped torch: %s (ours %.2f ms, %d threads)\n", op_names[op],
                   prc ? why : "the peer printed no time for it", ours[op], threads);
    }
    return 0;
}
