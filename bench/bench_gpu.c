/* bench_gpu — the CUDA kernels of gpu/kern_list.h and the cuBLAS matmul on the device, against
 * the same operations in PyTorch on the same device (bench/peer_torch_gpu.py), in one run.
 * LayerNorm and attention go through the CUDA Backend (src/engine/backend.h), as models call
 * them: LayerNorm's parameter gradients use the backend's scratch, attention (forward +
 * backward, at SDXL's 4096 tokens and CLIP's 77 and 257) is compared with PyTorch's SDPA.
 * Prints a skip line where there is no CUDA build, no device or no torch with CUDA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
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

/* The same with the peer's whole argument list. */
static double peer_ms_args(const char *args) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "python3 bench/peer_torch_gpu.py %s 2>/dev/null", args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    double ms = -1;
    if (fscanf(p, "%lf", &ms) != 1)
        ms = -1;
    pclose(p);
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

/* A device tensor of the given shape and dtype filled with a fixed pattern in [-1, 1). */
static Tensor dev_tensor(Backend *be, DType dt, int nd, const int64_t *shape) {
    Tensor t = backend_tensor_new(be, dt, nd, shape);
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)shape[i];
    float *h = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    void *hd = xmalloc(n * 4);
    dtype_from_f32(hd, dt, h, n);
    Tensor src = tensor_view_dtype(hd, dt, nd, shape);
    backend_upload(be, &t, &src); /* from pageable memory: returns once hd has been read */
    free(h), free(hd);
    return t;
}

/* Milliseconds per call of fn(ctx) over reps calls, after one warm-up pass; -1 when the
 * backend failed (the message in *err). */
static double time_be(Backend *be, int reps, void (*fn)(Backend *be, void *ctx), void *ctx,
                      Err *err) {
    double t0 = 0;
    for (int pass = 0; pass < 2; pass++) {
        t0 = base_now();
        for (int r = 0; r < reps; r++)
            fn(be, ctx);
        if (backend_sync(be, err))
            return -1;
    }
    return (base_now() - t0) * 1e3 / reps;
}

/* LayerNorm forward + backward (N, C) through the backend: t[] = x, w, b, out, mean, rstd,
 * dx, dw, db. */
static void ln_step(Backend *be, void *ctx) {
    Tensor *t = ctx;
    backend_layernorm_forward(be, &t[3], &t[4], &t[5], &t[0], &t[1], &t[2], 1e-5f);
    backend_layernorm_backward(be, &t[6], &t[7], &t[8], &t[3], &t[0], &t[1], &t[4], &t[5]);
}

static double bench_layernorm(Backend *be, int N, int C, Err *err) {
    const int64_t sx[2] = {N, C}, sc[1] = {C}, sn[1] = {N};
    Tensor t[9] = {dev_tensor(be, DTYPE_F32, 2, sx), dev_tensor(be, DTYPE_F32, 1, sc),
                   dev_tensor(be, DTYPE_F32, 1, sc), dev_tensor(be, DTYPE_F32, 2, sx),
                   dev_tensor(be, DTYPE_F32, 1, sn), dev_tensor(be, DTYPE_F32, 1, sn),
                   dev_tensor(be, DTYPE_F32, 2, sx), dev_tensor(be, DTYPE_F32, 1, sc),
                   dev_tensor(be, DTYPE_F32, 1, sc)};
    double ms = time_be(be, 50, ln_step, t, err);
    for (int i = 0; i < 9; i++)
        backend_tensor_free(be, &t[i]);
    return ms;
}

/* Attention forward + backward (dq, dk, dv) at (B, T, NH·hd) through the backend. */
typedef struct AttnBench {
    Tensor q, k, v, o, g, dq, dk, dv, lse;
    BackendAttn a;
} AttnBench;

static void attn_step(Backend *be, void *ctx) {
    AttnBench *x = ctx;
    backend_attention_forward(be, &x->o, &x->lse, &x->q, &x->k, &x->v, &x->a);
    backend_attention_backward(be, &x->dq, &x->dk, &x->dv, &x->g, &x->q, &x->k, &x->v, &x->o,
                               &x->lse, &x->a);
}

static double bench_attention(Backend *be, int B, int NH, int T, int hd, int causal, DType dt,
                              Err *err) {
    const int64_t st[3] = {B, T, (int64_t)NH * hd}, sl[3] = {B, NH, T};
    AttnBench x = {dev_tensor(be, dt, 3, st), dev_tensor(be, dt, 3, st),
                   dev_tensor(be, dt, 3, st), dev_tensor(be, dt, 3, st),
                   dev_tensor(be, dt, 3, st), dev_tensor(be, dt, 3, st),
                   dev_tensor(be, dt, 3, st), dev_tensor(be, dt, 3, st),
                   dev_tensor(be, DTYPE_F32, 3, sl), {NH, 0.0f, causal, NULL}};
    double ms = time_be(be, 10, attn_step, &x, err);
    Tensor *all[] = {&x.q, &x.k, &x.v, &x.o, &x.g, &x.dq, &x.dk, &x.dv, &x.lse};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        backend_tensor_free(be, all[i]);
    return ms;
}

/* The backend benches; 0, or 1 when the backend failed (message on stderr). */
static int bench_backend(void) {
    Backend *be = NULL;
    Err err = {0};
    if (backend_open("cuda:0", NULL, &be, NULL, 0, &err)) {
        fprintf(stderr, "bench gpu: %s\n", err.msg);
        return 1;
    }
    double ln = bench_layernorm(be, 8192, 512, &err);
    static const struct {
        const char *name;
        int B, NH, T, hd, causal;
        DType dt;
    } at[] = {
        {"sdxl-b2-h10-t4096-d64-f32", 2, 10, 4096, 64, 0, DTYPE_F32},
        {"sdxl-b2-h10-t4096-d64-bf16", 2, 10, 4096, 64, 0, DTYPE_BF16},
        {"clip-text-b8-h12-t77-d64-causal-f32", 8, 12, 77, 64, 1, DTYPE_F32},
        {"clip-vision-b8-h16-t257-d64-f32", 8, 16, 257, 64, 0, DTYPE_F32},
    };
    double ams[sizeof at / sizeof at[0]];
    for (size_t i = 0; i < sizeof at / sizeof at[0] && ln >= 0; i++)
        ams[i] = bench_attention(be, at[i].B, at[i].NH, at[i].T, at[i].hd, at[i].causal,
                                 at[i].dt, &err);
    if (ln < 0 || err.code) {
        fprintf(stderr, "bench gpu: %s\n", err.msg);
        backend_close(be);
        return 1;
    }
    backend_close(be);
    report("gpu-layernorm-fwd-bwd-8192x512", ln, peer_ms("layernorm", 8192, 512));
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        char name[96], args[128];
        snprintf(name, sizeof name, "gpu-attn-fwd-bwd-%s", at[i].name);
        snprintf(args, sizeof args, "attention %d %d %d %d %d %s", at[i].B, at[i].NH, at[i].T,
                 at[i].hd, at[i].causal, dtype_name(at[i].dt));
        report(name, ams[i], peer_ms_args(args));
    }
    return 0;
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
    report("gpu-groupnorm-fwd-bwd-2x512x4096-g32", gn, peer_ms("groupnorm", GC, GHW));
    report("gpu-softmax-fwd-bwd-8192x512", sm, peer_ms("softmax", N, C));
    report("gpu-matmul-8192x512x512", mmt, peer_ms("matmul", N, C));
    report("gpu-adamw-4M", ad, peer_ms("adamw", (int)P, 0));
    free(h);
    return bench_backend();
}
#else
int main(void) {
    printf("bench gpu: skipped (built without CUDA: no nvcc at build time)\n");
    return 0;
}
#endif
