/* bench_clip — CLIP throughput, images/s and prompts/s, for ViT-B/32 and ViT-L/14 shapes with
 * random weights, against open_clip in PyTorch on the CPU with the same thread count, in one
 * run (bench/peer_clip.py makes the random model folders once, in build/bench-clip, and times
 * PyTorch; ours and the peer alternate twice, each keeping its best), and beside each the
 * items per CPU-second of each side (all threads; on a shared machine the wall rates follow
 * the load). Prints a skip line where python3 with torch and open_clip is missing.
 *
 * Beside each rate: the GFLOP/s it achieves (the multiply-adds of the GEMMs and attention
 * the model executes, ×2), the sgemm peak measured first in the same run (OpenBLAS through
 * the same pool: one 1024³ product cut into column slabs of cblas_sgemm) and the same
 * product through the linear op the model runs (the engine's AVX-512 GEMM block, nn_sgemm,
 * where the CPU has AVX-512; OpenBLAS otherwise). Last, ViT-L/14 with its weights
 * kept as bf16: the cosine of its image and text embeddings to f32's, the resident memory
 * of each (VmRSS growth over the load and one encode) and the bf16 image rate. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cblas.h>

#include "backend_cpu.h"
#include "base.h"
#include "bench_common.h"
#include "clip.h"
#include "nn_clip.h"

#define ROOT "build/bench-clip"
#define SECONDS 3.0

static const char *prompts[] = {
    "a photo of a cat", "an astronaut riding a horse on mars, oil painting",
    "a red sports car parked in front of a modern house at sunset, photorealistic, 8k",
    "portrait of an old fisherman, dramatic lighting, by Rembrandt",
    "isometric pixel art of a cozy cafe", "a bowl of ramen", "low poly mountain landscape",
    "a watercolor painting of a lighthouse in a storm with crashing waves and seagulls",
    "logo of a coffee shop, minimalist, vector", "a dog wearing sunglasses on a beach",
    "cyberpunk city street at night, neon signs, rain, reflections, cinematic",
    "a medieval castle on a hill", "macro photo of a dewdrop on a leaf",
    "an anime girl with blue hair reading a book in a library, soft light",
    "still life with apples and a jug", "a futuristic train crossing a desert bridge",
};

/* The peer's items per second of wall time; *CPU_RATE (when not NULL) its items per
 * CPU-second over all its threads, or -1. */
static double peer_rate(const char *name, const char *kind, int batch, int threads,
                        double *cpu_rate) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 bench/peer_clip.py time %s %s %s %d %d %.1f 2>/dev/null",
             ROOT, name, kind, batch, threads, SECONDS);
    if (cpu_rate)
        *cpu_rate = -1;
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    double r = -1, c = -1;
    int got = fscanf(p, "%lf %lf", &r, &c);
    if (got < 1)
        r = -1;
    if (got == 2 && cpu_rate)
        *cpu_rate = c;
    pclose(p);
    return r;
}

/* CPU seconds (user + system) this process has used, all its threads. */
static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec * 1e-6 +
           (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec * 1e-6;
}

/* Items per CPU-second beside the wall-clock line: on a machine shared with other jobs the
 * wall rates measure the load as much as the code; CPU time (every thread, spinning included)
 * moves far less. */
static void report_cpu(const char *bench, const char *unit, double ours, double peer) {
    if (peer > 0)
        printf("  %s per CPU-second: %.2fx (ours %.3f %s, peer %.3f)\n", bench, ours / peer,
               ours, unit, peer);
    else
        printf("  %s per CPU-second: ours %.3f %s\n", bench, ours, unit);
}

static double sgemm_peak;  /* GFLOP/s, OpenBLAS */
static double kernel_peak; /* GFLOP/s, nn_clip_linear_forward (the op the model runs) */

static void report(const char *bench, const char *unit, double ours, double peer,
                   double gflop_per_item) {
    if (peer <= 0)
        printf("bench %s: skipped (open_clip in PyTorch did not run; ours %.2f %s)\n", bench,
               ours, unit);
    else
        printf("bench %s: %.2fx vs open_clip (ours %.2f %s, peer %.2f %s)\n", bench, ours / peer,
               ours, unit, peer, unit);
    printf("  %s: %.1f GFLOP/%s, %.1f GFLOP/s achieved = %.0f %% of the OpenBLAS sgemm peak "
           "%.1f GFLOP/s, %.0f %% of the linear op's %.1f GFLOP/s\n", bench, gflop_per_item,
           strcmp(unit, "images/s") ? "prompt" : "image", ours * gflop_per_item,
           100 * ours * gflop_per_item / sgemm_peak, sgemm_peak,
           100 * ours * gflop_per_item / kernel_peak, kernel_peak);
    fflush(stdout);
}

typedef struct BlasJob {
    const float *a, *w;
    float *c;
    int n;
} BlasJob;

/* 128-column slabs of c = a · wᵀ, one single-threaded cblas_sgemm each (what nn_linear did
 * before the engine had its own GEMM block). */
static void blas_slabs(void *ctx, int64_t s0, int64_t s1) {
    const BlasJob *j = ctx;
    for (int64_t s = s0; s < s1; s++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, 128, j->n, 1.0f, j->a, j->n,
                    j->w + (size_t)s * 128 * j->n, j->n, 0.0f, j->c + s * 128, j->n);
}

static void blas_product(float *c, const float *a, const float *w, int n) {
    BlasJob j = {a, w, c, n};
    backend_cpu_parallel_for(n / 128, 1, blas_slabs, &j);
}

/* Best over one second of (1024, 1024) x (1024, 1024) products through OpenBLAS's sgemm in
 * 128-column slabs over the pool or, KERNEL, nn_clip_linear_forward (on a busy machine the
 * best is the closest to what the cores can do). */
static double measure_peak(int kernel) {
    int n = 1024;
    float *a = xmalloc((size_t)n * n * sizeof(float)), *w = xmalloc((size_t)n * n * sizeof(float));
    float *c = xmalloc((size_t)n * n * sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++)
        a[i] = (float)(i % 97) / 97.0f, w[i] = (float)(i % 89) / 89.0f - 0.5f;
    if (kernel)
        nn_clip_linear_forward(c, a, w, NULL, NULL, NULL, n, n, n);
    else
        blas_product(c, a, w, n);
    double best = 0, start = base_now();
    do {
        double t0 = base_now();
        if (kernel)
            nn_clip_linear_forward(c, a, w, NULL, NULL, NULL, n, n, n);
        else
            blas_product(c, a, w, n);
        double g = 2.0 * n * n * n / (base_now() - t0) / 1e9;
        best = g > best ? g : best;
    } while (base_now() - start < 1.0);
    free(a), free(w), free(c);
    return best;
}

/* GFLOP of one tower pass per item over T tokens (GEMMs and attention products). */
static double tower_gflop(int T, int C, int M, int layers) {
    double per = 2.0 * T * C * (3.0 * C + C + 2.0 * M) + 4.0 * (double)T * T * C;
    return per * layers / 1e9;
}

static double image_gflop(const ClipConfig *c) {
    int G = c->image_size / c->patch_size, T = G * G + 1;
    return tower_gflop(T, c->vision_width, c->vision_mlp, c->vision_layers) +
           2.0 * G * G * 3 * c->patch_size * c->patch_size * c->vision_width / 1e9 +
           2.0 * c->vision_width * c->embed_dim / 1e9;
}

/* Per prompt of the batch: every prompt runs to the batch's latest end token. */
static double text_gflop(const ClipModel *m, const char *const *texts, int n) {
    const ClipConfig *c = clip_model_config(m);
    int32_t *ids = xmalloc((size_t)c->context_length * sizeof(int32_t));
    int T = 1;
    for (int i = 0; i < n; i++) {
        clip_tokenizer_tokenize(clip_model_tokenizer(m), texts[i], ids, c->context_length);
        int best = 0; /* the pooling position: the argmax id */
        for (int t = 0; t < c->context_length; t++)
            if (ids[t] > ids[best])
                best = t;
        T = best + 1 > T ? best + 1 : T;
    }
    free(ids);
    return tower_gflop(T, c->text_width, c->text_mlp, c->text_layers);
}

/* Resident set size in MB (VmRSS). */
static double rss_mb(void) { return base_proc_status_kb("VmRSS") / 1024.0; }

static Backend *bench_be; /* what CLIP runs on: EASEL_BENCH_CLIP_DEVICE (default cpu) */

static void run(const char *name, int img_batch, int threads) {
    char *dir = xasprintf(ROOT "/%s", name);
    Err err = {0};
    double t0 = base_now();
    ClipModel *m = NULL;
    if (clip_model_open(dir, CLIP_WEIGHTS_AUTO, bench_be, &m, &err) != 0) {
        printf("bench clip-%s: skipped (%s)\n", name, err.msg);
        free(dir);
        return;
    }
    double load = base_now() - t0;
    const ClipConfig *c = clip_model_config(m);
    size_t img = 3 * (size_t)c->image_size * (size_t)c->image_size;
    float *pixels = xmalloc((size_t)img_batch * img * sizeof(float));
    srand(1);
    for (size_t i = 0; i < (size_t)img_batch * img; i++)
        pixels[i] = (float)rand() / RAND_MAX * 4 - 2;
    float *emb = xmalloc((size_t)16 * (size_t)c->embed_dim * sizeof(float));
    /* ours and the peer alternate twice and each keeps its best: on a shared machine the
     * load changes within seconds, and a single pair of windows compares two loads */
    clip_model_encode_pixels(m, pixels, img_batch, emb, NULL, &err); /* warm-up */
    clip_model_encode_texts(m, prompts, 16, emb, &err);
    int tb = 16;
    double ours_img = 0, ours_txt = 0, peer_img = -1, peer_txt = -1;
    double cpu_img = 0, cpu_txt = 0, pcpu_img = -1, pcpu_txt = -1, pc;
    for (int round = 0; round < 2; round++) {
        int n = 0;
        t0 = base_now();
        double c0 = cpu_seconds();
        do {
            clip_model_encode_pixels(m, pixels, img_batch, emb, NULL, &err);
            n += img_batch;
        } while (base_now() - t0 < SECONDS);
        double r = n / (base_now() - t0), rc = n / (cpu_seconds() - c0);
        ours_img = r > ours_img ? r : ours_img;
        cpu_img = rc > cpu_img ? rc : cpu_img;
        r = peer_rate(name, "image", img_batch, threads, &pc);
        peer_img = r > peer_img ? r : peer_img;
        pcpu_img = pc > pcpu_img ? pc : pcpu_img;
        /* prompts, tokenized each time as a user's would be */
        n = 0;
        t0 = base_now();
        c0 = cpu_seconds();
        do {
            clip_model_encode_texts(m, prompts, tb, emb, &err);
            n += tb;
        } while (base_now() - t0 < SECONDS);
        r = n / (base_now() - t0), rc = n / (cpu_seconds() - c0);
        ours_txt = r > ours_txt ? r : ours_txt;
        cpu_txt = rc > cpu_txt ? rc : cpu_txt;
        r = peer_rate(name, "text", tb, threads, &pc);
        peer_txt = r > peer_txt ? r : peer_txt;
        pcpu_txt = pc > pcpu_txt ? pc : pcpu_txt;
    }
    char b1[64], b2[64];
    snprintf(b1, sizeof b1, "clip-%s-image", name);
    snprintf(b2, sizeof b2, "clip-%s-text", name);
    report(b1, "images/s", ours_img, peer_img, image_gflop(c));
    report_cpu(b1, "images", cpu_img, pcpu_img);
    report(b2, "prompts/s", ours_txt, peer_txt, text_gflop(m, prompts, tb));
    report_cpu(b2, "prompts", cpu_txt, pcpu_txt);
    /* No peer loads the same folder, so this is a note on stderr, not a bench line. */
    fprintf(stderr, "clip-%s: loaded in %.2f s (weights %.0f MB mapped/converted) on %s\n",
            name, load, clip_model_weight_bytes(m) / 1048576.0, backend_name(bench_be));
    (void)threads;
    free(emb);
    free(pixels);
    clip_model_free(m);
    free(dir);
}

/* NAME loaded with WEIGHTS: embeddings of the pixels and prompts, RSS growth, image rate. */
static int bf16_side(const char *name, ClipWeights weights, const float *pixels, int B,
                     float *img, float *txt, double *mb, double *rate) {
    char *dir = xasprintf(ROOT "/%s", name);
    Err err = {0};
    double before = rss_mb();
    ClipModel *m = NULL;
    clip_model_open(dir, weights, bench_be, &m, &err);
    free(dir);
    if (!m) {
        printf("bench clip-%s-bf16: skipped (%s)\n", name, err.msg);
        return -1;
    }
    clip_model_encode_pixels(m, pixels, B, img, NULL, &err);
    clip_model_encode_texts(m, prompts, 4, txt, &err);
    *mb = rss_mb() - before;
    int n = 0;
    double t0 = base_now();
    do {
        clip_model_encode_pixels(m, pixels, B, img, NULL, &err);
        n += B;
    } while (base_now() - t0 < SECONDS);
    *rate = n / (base_now() - t0);
    clip_model_free(m);
    return 0;
}

static double min_cos(const float *a, const float *b, int n, int E) {
    double worst = 1;
    for (int i = 0; i < n; i++) {
        double d = 0;
        for (int j = 0; j < E; j++)
            d += (double)a[i * E + j] * b[i * E + j];
        worst = d < worst ? d : worst;
    }
    return worst;
}

/* ViT-L/14 with bf16-resident weights against f32 (the same random f32 file, rounded). */
static void run_bf16(const char *name, int B) {
    int E = 768, S = 224;
    size_t img = 3 * (size_t)S * S;
    float *pixels = xmalloc((size_t)B * img * sizeof(float));
    srand(2);
    for (size_t i = 0; i < (size_t)B * img; i++)
        pixels[i] = (float)rand() / RAND_MAX * 4 - 2;
    float *i32 = xmalloc((size_t)B * E * sizeof(float)), *i16 = xmalloc((size_t)B * E * sizeof(float));
    float t32[4 * 768], t16[4 * 768];
    double mb32, mb16, r32, r16;
    if (bf16_side(name, CLIP_WEIGHTS_F32, pixels, B, i32, t32, &mb32, &r32) == 0 &&
        bf16_side(name, CLIP_WEIGHTS_BF16, pixels, B, i16, t16, &mb16, &r16) == 0) {
        printf("bench clip-%s-bf16: %.2fx memory of f32 (resident %.0f MB vs %.0f MB), cosine "
               "to f32 images %.5f texts %.5f, %.2f images/s (f32 %.2f)\n", name, mb16 / mb32,
               mb16, mb32, min_cos(i16, i32, B, E), min_cos(t16, t32, 4, E), r16, r32);
        fflush(stdout);
    }
    free(pixels), free(i32), free(i16);
}

int main(void) {
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (system("python3 bench/peer_clip.py make " ROOT " >/dev/null 2>&1") != 0) {
        printf("bench clip: skipped (python3 with torch and open_clip_torch is needed to make "
               "the random models and time the peer)\n");
        return 0;
    }
    Err err = {0};
    CpuPool *pool = backend_cpu_pool_new(threads, &err);
    if (!pool) {
        printf("bench clip: skipped (%s)\n", err.msg);
        return 0;
    }
    backend_cpu_use(pool);
    const char *dev = getenv("EASEL_BENCH_CLIP_DEVICE");
    BackendConfig bcfg = {threads, 0};
    char note[256];
    if (backend_open(dev ? dev : "cpu", &bcfg, &bench_be, note, sizeof note, &err) != 0) {
        printf("bench clip: skipped (%s)\n", err.msg);
        backend_cpu_use(NULL);
        backend_cpu_pool_free(pool);
        return 0;
    }
    if (note[0])
        fprintf(stderr, "bench clip: %s\n", note);
    sgemm_peak = measure_peak(0);
    kernel_peak = measure_peak(1);
    printf("  sgemm peak: %.1f GFLOP/s (OpenBLAS, 1024^3, %d threads, core %s%s); the linear "
           "op CLIP runs (nn_clip_linear_forward): %.1f GFLOP/s\n", sgemm_peak, threads,
           openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? ", forced by OPENBLAS_CORETYPE" : "", kernel_peak);
    const char *only = getenv("EASEL_BENCH_CLIP"); /* b32, l14 or bf16: one part only */
    if (!only || strcmp(only, "b32") == 0)
        run("b32", 8, threads);
    if (!only || strcmp(only, "l14") == 0)
        run("l14", 2, threads);
    if (!only || strcmp(only, "bf16") == 0)
        run_bf16("l14", 2);
    /* the load changes during the run */
    printf("  again at the end: sgemm peak %.1f GFLOP/s, linear op %.1f GFLOP/s (the "
           "percentages above used %.1f and %.1f)\n", measure_peak(0), measure_peak(1),
           sgemm_peak, kernel_peak);
    backend_close(bench_be);
    backend_cpu_use(NULL);
    backend_cpu_pool_free(pool);
    return 0;
}
