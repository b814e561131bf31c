/* bench_gpu — the CUDA kernels of gpu/kern_list.h and the cuBLAS matmul on the device, against
 * the same operations in PyTorch on the same device (bench/peer_torch_gpu.py), in one run.
 * Prints a skip line where there is no CUDA build, no device or no torch with CUDA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "bench_common.h"
#include "cuda.h"

#ifdef EASEL_CUDA
/* PyTorch's time for the same case, in ms, from the peer script; < 0 if unavailable. */
static double peer_ms(const char *name, int a, int b) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "python3 bench/peer_torch_gpu.py %s %d %d 2>/dev/null", name, a, b);
    double ms;
    bench_peer_numbers(cmd, &ms, 1);
    return ms;
}

static void report(const char *name, double ours, double peer) {
    if (peer <= 0)
        printf("bench %s: skipped (no PyTorch with CUDA to compare with; ours %.4f ms)\n", name,
               ours);
    else
        printf("bench %s: %.2fx vs pytorch-cuda (ours %.4f ms, peer %.4f ms)\n", name,
               peer / ours, ours, peer);
}

int main(void) {
    CudaDevice d[8];
    int n = 0;
    char why[256];
    cuda_probe(d, 8, &n, why, sizeof why);
    if (n == 0) {
        printf("bench gpu: skipped (%s)\n", why);
        return 0;
    }
    Err err = {0};
    enum { N = 8192, C = 512, OC = 512, REPS = 50 };
    const long P = 1L << 22;
    float *x = cuda_alloc((size_t)N * C, &err), *w = cuda_alloc(C, &err), *b = cuda_alloc(C, &err);
    float *out = cuda_alloc((size_t)N * C, &err), *mean = cuda_alloc(N, &err);
    float *rstd = cuda_alloc(N, &err), *dx = cuda_alloc((size_t)N * C, &err);
    float *dw = cuda_alloc(C, &err), *db = cuda_alloc(C, &err), *w2 = cuda_alloc(OC * C, &err);
    float *mm = cuda_alloc((size_t)N * OC, &err), *pp = cuda_alloc(P, &err);
    float *pm = cuda_alloc(P, &err), *pv = cuda_alloc(P, &err), *pg = cuda_alloc(P, &err);
    if (!pg) {
        fprintf(stderr, "bench gpu: %s\n", err.msg);
        return 1;
    }
    float *h = xmalloc(sizeof(float) * (size_t)N * C);
    for (long i = 0; i < (long)N * C; i++)
        h[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    cuda_upload(x, h, (size_t)N * C, &err);
    cuda_upload(w, h, C, &err);
    cuda_upload(b, h + C, C, &err);
    cuda_upload(w2, h, OC * C, &err);
    cuda_zero(pp, P, &err), cuda_zero(pm, P, &err), cuda_zero(pv, P, &err);
    cuda_upload(pg, h, P < (long)N * C ? P : (long)N * C, &err);

    double t0;
    for (int pass = 0; pass < 2; pass++) { /* pass 0 warms up */
        t0 = base_now();
        for (int r = 0; r < REPS; r++) {
            cuda_layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-5f, &err);
            cuda_layernorm_backward(dx, dw, db, out, x, w, mean, rstd, N, C, &err);
        }
        cuda_sync(&err);
    }
    double ln = (base_now() - t0) * 1e3 / REPS;
    /* GroupNorm at an SDXL-like shape, (2, 512, 64×64) in 32 groups: the same 4M floats */
    enum { GN = 2, GC = 512, GHW = 4096, GG = 32 };
    for (int pass = 0; pass < 2; pass++) {
        t0 = base_now();
        for (int r = 0; r < REPS; r++) {
            cuda_groupnorm_forward(out, mean, rstd, x, w, b, GN, GC, GHW, GG, 1e-5f, &err);
            cuda_groupnorm_backward(dx, dw, db, out, x, w, mean, rstd, GN, GC, GHW, GG, &err);
        }
        cuda_sync(&err);
    }
    double gn = (base_now() - t0) * 1e3 / REPS;
    for (int pass = 0; pass < 2; pass++) {
        t0 = base_now();
        for (int r = 0; r < REPS; r++) {
            cuda_softmax_forward(out, x, N, C, &err);
            cuda_softmax_backward(dx, x, out, N, C, &err);
        }
        cuda_sync(&err);
    }
    double sm = (base_now() - t0) * 1e3 / REPS;
    for (int pass = 0; pass < 2; pass++) {
        t0 = base_now();
        for (int r = 0; r < REPS; r++)
            cuda_matmul_forward(mm, x, w2, N, C, OC, &err);
        cuda_sync(&err);
    }
    double mmt = (base_now() - t0) * 1e3 / REPS;
    for (int pass = 0; pass < 2; pass++) {
        t0 = base_now();
        for (int r = 0; r < REPS; r++)
            cuda_adamw(pp, pm, pv, pg, P, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, r + 1, &err);
        cuda_sync(&err);
    }
    double ad = (base_now() - t0) * 1e3 / REPS;
    if (err.code) {
        fprintf(stderr, "bench gpu: %s\n", err.msg);
        return 1;
    }
    report("gpu-layernorm-fwd-bwd-8192x512", ln, peer_ms("layernorm", N, C));
    report("gpu-groupnorm-fwd-bwd-2x512x4096-g32", gn, peer_ms("groupnorm", GC, GHW));
    report("gpu-softmax-fwd-bwd-8192x512", sm, peer_ms("softmax", N, C));
    report("gpu-matmul-8192x512x512", mmt, peer_ms("matmul", N, C));
    report("gpu-adamw-4M", ad, peer_ms("adamw", (int)P, 0));
    free(h);
    return 0;
}
#else
int main(void) {
    printf("bench gpu: skipped (built without CUDA: no nvcc at build time)\n");
    return 0;
}
#endif
