/* bench_generate — the generation path on the CPU against diffusers in PyTorch with the same
 * thread count, in one run: one UNet step (batch 2, as with classifier-free guidance) of an
 * SD-1.5-shaped random model at 256² pixels (32² latents) and of an SDXL-shaped one at 512²
 * (64² latents), and the VAE decode of one 256² image (SD's VAE; SDXL's has the same shape).
 * bench/peer_generate.py makes the random diffusers folders once (build/bench-models/NAME/unet,
 * vae: f32 safetensors from the released configs, torch.manual_seed(0)) and times PyTorch;
 * ours loads the same folders with unet_load / vae_load. Each side: one warm-up, then the
 * median of $EASEL_BENCH_GEN_REPS (default 3) runs. The SDXL shape keeps SDXL's widths,
 * heads, text_time conditioning and 2048-wide cross attention, with transformer depth
 * [1, 2, 2] instead of the released [1, 2, 10] (10.3 GB of f32 weights would not fit ours
 * and the peer's on the bench machine). Beside each line: the peak resident set of each
 * side over that measurement (ours: VmHWM reset before the load, and again after it, for the
 * peak of the runs alone; the peer's: ru_maxrss of its own process). $EASEL_BENCH_GEN (sd15,
 * sdxl or vae) runs one part only. A line says "skipped (why)" where the peer or the models
 * cannot be made. Also beside each line (perf15): the CPU seconds of the same runs, all
 * threads of the process (ours: clock(); the peer's: time.process_time()), and their ratio:
 * on a machine loaded by other work the wall-clock ratio swings with the load of the minute
 * each side ran in, the CPU-time ratio much less (both sides' pools spin a little while
 * waiting, which counts).
 *
 * Whole images (generate-sd15-image-256, generate-sdxl-image-512): `peer_generate.py make-pipe`
 * completes each folder into a full diffusers model (random CLIP text encoders of the released
 * shapes — ViT-L/14's text tower, and for SDXL also bigG/14's at full depth — the test
 * fixtures' tiny BPE tokenizers, an Euler scheduler config, model_index.json); ours opens it
 * with sd_pipeline_open and times one sd_pipeline_generate, the peer one call of
 * StableDiffusion(XL)Pipeline: the same prompt and negative prompt, seed 0 (torch-cpu), Euler,
 * guidance 7.5, $EASEL_BENCH_GEN_STEPS steps (default 4: 20 would take half an hour per model
 * and side on a 2-core machine), one run each after a one-step warm-up image (the first call
 * of either side pays one-time costs: diffusers' first one-step image took 30 s against 5.3 s
 * for ours), load not timed. Peak resident set:
 * ours over load and image (and the image alone), the peer's ru_maxrss. $EASEL_BENCH_GEN
 * sd15-image or sdxl-image runs one of them only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "backend_cpu.h"
#include "base.h"
#include "bench_common.h"
#include "pipeline.h"
#include "sd_weights.h"
#include "unet.h"
#include "vae.h"

#define ROOT "build/bench-models"
#define PEER "bench/peer_generate.py"

static int reps(void) {
    const char *e = getenv("EASEL_BENCH_GEN_REPS");
    return e && atoi(e) > 0 ? atoi(e) : 3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void fill(float *p, size_t n, unsigned seed) {
    srand(seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
}

static Tensor upload(Backend *be, const float *host, int nd, const int64_t *shape) {
    Tensor d = backend_tensor_new(be, DTYPE_F32, nd, shape);
    Tensor h = tensor_view((void *)host, nd, shape);
    backend_upload(be, &d, &h);
    return d;
}

static double peak_mb(void) { return base_proc_status_kb("VmHWM") / 1024.0; }

/* CPU seconds of this process so far, all threads (C's clock()). */
static double cpu_now(void) { return (double)clock() / CLOCKS_PER_SEC; }

/* The peer's median seconds, peak MB and median CPU seconds for KIND (unet, vae) of NAME at
 * SIZE, or v[0] = -1. */
static void peer(const char *kind, const char *name, int size, int threads, double v[3]) {
    if (getenv("EASEL_BENCH_GEN_OURS")) { /* ours alone, e.g. under perf */
        v[0] = -1;
        return;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s " PEER " %s " ROOT " %s %d %d %d 2>/dev/null", bench_python(),
             kind, name, size, threads, reps());
    bench_peer_numbers(cmd, v, 3);
}

static void report(const char *bench, const char *what, double ours, double ours_mb,
                   double run_mb, double ours_cpu, const double pv[3]) {
    if (getenv("EASEL_BENCH_GEN_OURS"))
        printf("bench %s: skipped (EASEL_BENCH_GEN_OURS: the peer was not run; ours %.3f s)\n",
               bench, ours);
    else if (pv[0] <= 0)
        printf("bench %s: skipped (diffusers in PyTorch did not run: %s " PEER " by hand shows "
               "why; ours %.3f s)\n", bench, bench_python(), ours);
    else
        printf("bench %s: %.2fx vs diffusers (ours %.3f s, peer %.3f s)\n", bench, pv[0] / ours,
               ours, pv[0]);
    printf("  %s: %s; peak resident set: ours %.0f MB (%.0f MB after the load), peer %.0f MB\n",
           bench, what, ours_mb, run_mb, pv[0] > 0 ? pv[1] : -1.0);
    if (pv[0] > 0 && ours_cpu > 0 && pv[2] > 0)
        printf("  %s: CPU time, all threads: ours %.3f s, peer %.3f s (%.2fx)\n", bench,
               ours_cpu, pv[2], pv[2] / ours_cpu);
    fflush(stdout);
}

/* One UNet step of NAME at SIZE² pixels, batch 2. */
static void bench_unet(const char *name, int size, int threads) {
    char bench[64], path[256];
    snprintf(bench, sizeof bench, "generate-%s-unet-%d", name, size);
    snprintf(path, sizeof path, ROOT "/%s", name);
    int sdxl = strcmp(name, "sdxl") == 0;
    Err err = {0};
    base_peak_rss_reset();
    Backend *be = NULL;
    BackendConfig bcfg = {.threads = threads, .arena_bytes = (size_t)1 << 30};
    SdWeights *w = NULL;
    Unet *u = NULL;
    if (backend_open("cpu", &bcfg, &be, NULL, 0, &err) != 0 ||
        sd_weights_open(path, "unet", &w, &err) != 0 || unet_load(w, be, NULL, &u, &err) != 0) {
        printf("bench %s: skipped (%s)\n", bench, err.msg);
        sd_weights_close(w);
        backend_close(be);
        return;
    }
    sd_weights_close(w);
    const UnetConfig *c = unet_config(u);
    int64_t h = size / 8, B = 2;
    int64_t xs[4] = {B, c->in_channels, h, h}, os[4] = {B, c->out_channels, h, h};
    int64_t es[3] = {B, 77, c->cross_dim}, ts[2] = {B, c->add_in_dim - 6 * c->add_time_dim};
    size_t nx = (size_t)(B * c->in_channels * h * h), ne = (size_t)(B * 77 * c->cross_dim);
    float *hx = xmalloc(nx * sizeof(float)), *he = xmalloc(ne * sizeof(float));
    float *ht = xmalloc((size_t)(ts[0] * ts[1]) * sizeof(float));
    fill(hx, nx, 1), fill(he, ne, 2), fill(ht, (size_t)(ts[0] * ts[1]), 3);
    Tensor dx = upload(be, hx, 4, xs), de = upload(be, he, 3, es);
    Tensor dt = sdxl ? upload(be, ht, 2, ts) : (Tensor){0};
    Tensor dout = backend_tensor_new(be, DTYPE_F32, 4, os);
    float steps[2] = {500, 500};
    float ids[12] = {0};
    for (int b = 0; b < 2; b++) {
        float *r = ids + 6 * b;
        r[0] = r[1] = r[4] = r[5] = (float)size;
    }
    double load_mb = peak_mb();
    base_peak_rss_reset();
    int n = reps();
    double *t = xmalloc(2 * (size_t)n * sizeof(double)), *tc = t + n;
    int rc = 0;
    for (int i = -1; i < n && rc == 0; i++) {
        double t0 = base_now(), c0 = cpu_now();
        rc = unet_forward(u, be, &dout, &dx, steps, &de, sdxl ? &dt : NULL, sdxl ? ids : NULL,
                          &err);
        if (i >= 0)
            t[i] = base_now() - t0, tc[i] = cpu_now() - c0;
    }
    double ours = rc == 0 ? median(t, n) : -1, run_mb = peak_mb();
    double ours_cpu = rc == 0 ? median(tc, n) : -1;
    double ours_mb = load_mb > run_mb ? load_mb : run_mb;
    backend_tensor_free(be, &dx), backend_tensor_free(be, &de), backend_tensor_free(be, &dout);
    if (sdxl)
        backend_tensor_free(be, &dt);
    unet_free(u);
    backend_close(be);
    free(hx), free(he), free(ht), free(t);
    if (rc != 0) {
        printf("bench %s: skipped (our forward failed: %s)\n", bench, err.msg);
        return;
    }
    double pv[3];
    peer("unet", name, size, threads, pv);
    char what[160];
    snprintf(what, sizeof what, "one UNet step, batch 2 (CFG), %dx%d latents, %d threads, "
             "f32, median of %d after a warm-up", (int)h, (int)h, threads, n);
    report(bench, what, ours, ours_mb, run_mb, ours_cpu, pv);
}

/* The VAE decode of one SIZE² image of NAME's VAE. */
static void bench_vae(const char *name, int size, int threads) {
    char bench[64], path[256];
    snprintf(bench, sizeof bench, "generate-%s-vae-decode-%d", name, size);
    snprintf(path, sizeof path, ROOT "/%s", name);
    Err err = {0};
    base_peak_rss_reset();
    Backend *be = NULL;
    size_t arena = (size_t)1 << 30;
    BackendConfig bcfg = {.threads = threads, .arena_bytes = arena};
    VaeOptions vo = {.parts = VAE_DECODER, .arena_bytes = arena};
    Vae *v = NULL;
    if (backend_open("cpu", &bcfg, &be, NULL, 0, &err) != 0 ||
        vae_load(be, path, &vo, &v, &err) != 0) {
        printf("bench %s: skipped (%s)\n", bench, err.msg);
        backend_close(be);
        return;
    }
    int h = size / vae_scale(vae_config(v));
    size_t nz = (size_t)4 * h * h, ni = (size_t)3 * size * size;
    float *z = xmalloc(nz * sizeof(float)), *img = xmalloc(ni * sizeof(float));
    fill(z, nz, 4);
    double load_mb = peak_mb();
    base_peak_rss_reset();
    int n = reps(), rc = 0;
    double *t = xmalloc(2 * (size_t)n * sizeof(double)), *tc = t + n;
    for (int i = -1; i < n && rc == 0; i++) {
        double t0 = base_now(), c0 = cpu_now();
        rc = vae_decode(v, z, 1, h, h, img, &err);
        if (i >= 0)
            t[i] = base_now() - t0, tc[i] = cpu_now() - c0;
    }
    double ours = rc == 0 ? median(t, n) : -1, run_mb = peak_mb();
    double ours_cpu = rc == 0 ? median(tc, n) : -1;
    double ours_mb = load_mb > run_mb ? load_mb : run_mb;
    vae_free(v);
    backend_close(be);
    free(z), free(img), free(t);
    if (rc != 0) {
        printf("bench %s: skipped (our decode failed: %s)\n", bench, err.msg);
        return;
    }
    double pv[3];
    peer("vae", name, size, threads, pv);
    char what[160];
    snprintf(what, sizeof what, "VAE decode of one image, %dx%d latents, %d threads, f32, "
             "median of %d after a warm-up", h, h, threads, n);
    report(bench, what, ours, ours_mb, run_mb, ours_cpu, pv);
}

static int gen_steps(void) {
    const char *e = getenv("EASEL_BENCH_GEN_STEPS");
    return e && atoi(e) > 0 ? atoi(e) : 4;
}

/* One whole SIZE² image of the full diffusers folder NAME (whole-image bench, see the top). */
static void bench_image(const char *name, int size, int threads) {
    char bench[64], path[256];
    snprintf(bench, sizeof bench, "generate-%s-image-%d", name, size);
    snprintf(path, sizeof path, ROOT "/%s", name);
    int steps = gen_steps();
    Err err = {0};
    base_peak_rss_reset();
    size_t arena = (size_t)1 << 30; /* the UNet's 0.29 GB at 64² latents, the VAE's 0.08 GB */
    BackendConfig bcfg = {.threads = threads, .arena_bytes = arena};
    SdPipelineConfig pcfg = {.weights = DTYPE_F32, .arena_bytes = arena};
    Backend *be = NULL;
    SdPipeline *p = NULL;
    CpuPool *pool = backend_cpu_pool_new(threads, &err); /* the text encoders' (host) threads */
    if (!pool || backend_open("cpu", &bcfg, &be, NULL, 0, &err) != 0 ||
        sd_pipeline_open(path, be, &pcfg, &p, &err) != 0) {
        printf("bench %s: skipped (%s)\n", bench, err.msg);
        backend_close(be);
        backend_cpu_pool_free(pool);
        return;
    }
    CpuPool *prev = backend_cpu_use(pool);
    double load_mb = peak_mb();
    base_peak_rss_reset();
    SdGenParams g = {.prompt = "a red fox in the snow", .negative = "blurry, low quality",
                     .width = size, .height = size, .steps = steps, .guidance = 7.5f,
                     .scheduler = "euler", .seed = 0, .rng = SD_RNG_TORCH_CPU};
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    SdGenParams warm = g; /* a one-step image first: the first call's costs are not timed */
    warm.steps = 1;
    int rc = sd_pipeline_generate(p, &warm, NULL, &rgb, &w, &h, &err);
    free(rgb);
    rgb = NULL;
    double t0 = base_now(), c0 = cpu_now();
    if (rc == 0)
        rc = sd_pipeline_generate(p, &g, NULL, &rgb, &w, &h, &err);
    double ours = base_now() - t0, ours_cpu = cpu_now() - c0, run_mb = peak_mb();
    double ours_mb = load_mb > run_mb ? load_mb : run_mb;
    free(rgb);
    backend_cpu_use(prev);
    sd_pipeline_close(p);
    backend_close(be);
    backend_cpu_pool_free(pool);
    if (rc != 0) {
        printf("bench %s: skipped (our image failed: %s)\n", bench, err.msg);
        return;
    }
    double pv[3] = {-1, -1, -1};
    if (!getenv("EASEL_BENCH_GEN_OURS")) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s " PEER " image " ROOT " %s %d %d %d 2>/dev/null",
                 bench_python(), name, size, threads, steps);
        bench_peer_numbers(cmd, pv, 3);
    }
    char what[200];
    snprintf(what, sizeof what, "one %dx%d image, Euler, %d steps, guidance 7.5 (CFG), text "
             "encoders and VAE decode included, %d threads, f32, one run after a one-step "
             "warm-up, load not timed",
             size, size, steps, threads);
    report(bench, what, ours, ours_mb, run_mb, ours_cpu, pv);
}

int main(void) {
    int threads = bench_threads();
    backend_cpu_blas_serial(); /* as easel's main(): the pool threads the work, not OpenBLAS */
    char why[256];
    if (!bench_peer_ready(PEER, why, sizeof why)) {
        printf("bench generate: skipped (%s)\n", why);
        return 0;
    }
    const char *only = getenv("EASEL_BENCH_GEN");
    const char *names[] = {"sd15", "sdxl"};
    for (int i = 0; i < 2; i++) {
        char image_only[32];
        snprintf(image_only, sizeof image_only, "%s-image", names[i]);
        int want_image = !only || strcmp(only, image_only) == 0;
        if (only && strcmp(only, names[i]) != 0 && strcmp(only, "vae") != 0 && !want_image)
            continue;
        if (only && strcmp(only, "vae") == 0 && i > 0)
            continue;
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s " PEER " make " ROOT " %s >/dev/null 2>&1",
                 bench_python(), names[i]);
        if (system(cmd) != 0) {
            printf("bench generate-%s: skipped (%s " PEER " make could not make the random "
                   "models: it needs torch and diffusers, and about 8 GB under " ROOT ")\n",
                   names[i], bench_python());
            continue;
        }
        if (!only || strcmp(only, names[i]) == 0)
            bench_unet(names[i], i == 0 ? 256 : 512, threads);
        if (i == 0 && (!only || strcmp(only, "vae") == 0))
            bench_vae(names[i], 256, threads);
        if (want_image) {
            snprintf(cmd, sizeof cmd, "%s " PEER " make-pipe " ROOT " %s >/dev/null 2>&1",
                     bench_python(), names[i]);
            if (system(cmd) != 0)
                printf("bench generate-%s-image-%d: skipped (%s " PEER " make-pipe could not "
                       "make the text encoders: it needs torch, transformers and diffusers, "
                       "and about 4 GB more under " ROOT ")\n", names[i], i == 0 ? 256 : 512,
                       bench_python());
            else
                bench_image(names[i], i == 0 ? 256 : 512, threads);
        }
    }
    return 0;
}
