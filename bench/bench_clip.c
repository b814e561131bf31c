/* bench_clip — CLIP throughput, images/s and prompts/s, for ViT-B/32 and ViT-L/14 shapes with
 * random weights, against open_clip in PyTorch on the CPU with the same thread count, in one
 * run (bench/peer_clip.py makes the random model folders once, in build/bench-clip, and times
 * PyTorch). Prints a skip line where python3 with torch and open_clip is missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "base.h"
#include "clip.h"

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

static double peer_rate(const char *name, const char *kind, int batch, int threads) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 bench/peer_clip.py time %s %s %s %d %d %.1f 2>/dev/null",
             ROOT, name, kind, batch, threads, SECONDS);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    double r = -1;
    if (fscanf(p, "%lf", &r) != 1)
        r = -1;
    pclose(p);
    return r;
}

static void report(const char *bench, const char *unit, double ours, double peer) {
    if (peer <= 0)
        printf("bench %s: skipped (open_clip in PyTorch did not run; ours %.2f %s)\n", bench,
               ours, unit);
    else
        printf("bench %s: %.2fx vs open_clip (ours %.2f %s, peer %.2f %s)\n", bench, ours / peer,
               ours, unit, peer, unit);
    fflush(stdout);
}

static void run(const char *name, int img_batch, int threads) {
    char *dir = xasprintf(ROOT "/%s", name);
    Err err = {0};
    double t0 = base_now();
    ClipModel *m = clip_model_load(dir, &err);
    if (!m) {
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
    /* images */
    clip_model_encode_pixels(m, pixels, img_batch, emb, NULL, &err); /* warm-up */
    int n = 0;
    t0 = base_now();
    do {
        clip_model_encode_pixels(m, pixels, img_batch, emb, NULL, &err);
        n += img_batch;
    } while (base_now() - t0 < SECONDS);
    double ours_img = n / (base_now() - t0);
    /* prompts, tokenized each time as a user's would be */
    int tb = 16;
    clip_model_encode_texts(m, prompts, tb, emb, &err);
    n = 0;
    t0 = base_now();
    do {
        clip_model_encode_texts(m, prompts, tb, emb, &err);
        n += tb;
    } while (base_now() - t0 < SECONDS);
    double ours_txt = n / (base_now() - t0);
    char b1[64], b2[64];
    snprintf(b1, sizeof b1, "clip-%s-image", name);
    snprintf(b2, sizeof b2, "clip-%s-text", name);
    report(b1, "images/s", ours_img, peer_rate(name, "image", img_batch, threads));
    report(b2, "prompts/s", ours_txt, peer_rate(name, "text", tb, threads));
    /* No peer loads the same folder, so this is a note on stderr, not a bench line. */
    fprintf(stderr, "clip-%s: loaded in %.2f s (weights %.0f MB mapped/converted, %d threads)\n",
            name, load, clip_model_weight_bytes(m) / 1048576.0, threads);
    free(emb);
    free(pixels);
    clip_model_free(m);
    free(dir);
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
    run("b32", 8, threads);
    run("l14", 2, threads);
    backend_cpu_use(NULL);
    backend_cpu_pool_free(pool);
    return 0;
}
