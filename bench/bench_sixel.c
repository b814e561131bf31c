/* bench_sixel — how long an annotator waits for the next image, and how many bytes it costs.
 *
 * Ours: bin/easel in a pseudo-terminal (100x30 cells of 8x16 px, --graphics sixel) on a
 * temporary store of N generated 1024x1024 photos. For each image: type the five values,
 * wait as an annotator would (the prefetch thread works meanwhile), then press Enter and time
 * until the next image's sixel has been completely written to the terminal (read from the
 * pty). Bytes: the sixel sequence of each image as it crossed the pty.
 * Peer: `img2sixel -w W -h H FILE` on the same files at the size easel drew them, the whole
 * process timed until its output ends (what a shell-script viewer would do per image); bytes
 * of its output. A second peer line uses `-d none` (no dithering). With
 * BENCH_SIXEL_CHILD_DITHER=libsixel the easel under test uses the previous encoder.
 *
 * Times are medians over the images (the machine may be busy); bytes are means.
 * Prints: bench sixel-next-image: R.RRx vs img2sixel (ours A ms, peer B ms)
 *         bench sixel-bytes: R.RRx vs img2sixel (ours A KB, peer B KB)   (R > 1: fewer bytes)
 *
 * Picture quality, on the demo's sunset and sky images (data/images/{0,14,16}: prompts "A
 * serene mountain landscape at sunset", "Purple mountains under an orange evening sky", "A
 * lone sailboat, pastel sky"), each resized once to the 480x480 the Annotate screen shows
 * (60x30 cells of 8x16 px) and written to a PNG, so that every encoder quantizes the same
 * pixels: ours in-process (gfx_frame_encode), `img2sixel FILE` (libsixel's defaults), and
 * libsixel in-process as easel used it before (EASEL_SIXEL_DITHER=libsixel). Each output is
 * decoded back with libsixel's sixel_decode_raw and compared with the pixels it was given.
 *         bench sixel-psnr: R.RRx vs img2sixel (ours A dB, peer B dB)
 *             R = the peer's mean squared error / ours (10^(dB difference / 10))
 *         bench sixel-banding: R.RRx vs img2sixel (ours A levels, peer B levels)
 *             the error of 7x7 local means (what the eye averages dithering into) where the
 *             picture is smooth (the window spans <= SMOOTH levels), 99th percentile, worst
 *             image: a band is a large local error along a smooth gradient; R = peer / ours
 *         bench sixel-demo-bytes: R.RRx vs img2sixel (ours A KB, peer B KB)
 *         bench sixel-encode: R.RRx vs libsixel (ours A ms, peer B ms)   in-process, median
 *         bench sixel-psnr-before: ... vs libsixel (the previous encoder, same pixels)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <math.h>
#include <sixel.h>

#include "base.h"
#include "gfx.h"
#include "store.h"
#include "store_catalog.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#pragma GCC diagnostic pop

#define N_IMAGES 10
#define SIDE 1024
#define THINK_MS 600

static char dir[64];

static void make_photo(const char *path, int seed) {
    unsigned char *px = malloc((size_t)SIDE * SIDE * 3);
    unsigned state = 12345u + (unsigned)seed * 7919u;
    for (int y = 0; y < SIDE; y++) {
        for (int x = 0; x < SIDE; x++) {
            state = state * 1103515245u + 12345u;
            int noise = (int)((state >> 16) & 15) - 8;
            double u = (double)x / SIDE, v = (double)y / SIDE;
            double dx = u - 0.3 - 0.04 * seed, dy = v - 0.55;
            int disc = dx * dx + dy * dy < 0.05;
            int r = (int)(disc ? 220 - 80 * v : 60 + 150 * u + 20 * seed % 60);
            int g = (int)(disc ? 120 + 60 * u : 90 + 120 * v);
            int b = (int)(disc ? 50 : 200 - 120 * v + 40 * (seed % 3));
            unsigned char *p = px + ((size_t)y * SIDE + x) * 3;
            p[0] = (unsigned char)(r + noise < 0 ? 0 : r + noise > 255 ? 255 : r + noise);
            p[1] = (unsigned char)(g + noise < 0 ? 0 : g + noise > 255 ? 255 : g + noise);
            p[2] = (unsigned char)(b + noise < 0 ? 0 : b + noise > 255 ? 255 : b + noise);
        }
    }
    stbi_write_png(path, SIDE, SIDE, 3, px, SIDE * 3);
    free(px);
}

static int make_store(void) {
    char db[128];
    snprintf(db, sizeof db, "%s/bench.db", dir);
    Err err = {0};
    Store *st = store_open(db, &err);
    if (!st) {
        fprintf(stderr, "bench_sixel: %s\n", err.msg);
        return -1;
    }
    int64_t pid = 0;
    if (store_prompt_add(st, "p1", "a red fox in a snowy forest", &pid, NULL, &err))
        goto fail;
    for (int i = 0; i < N_IMAGES; i++) {
        char path[160];
        snprintf(path, sizeof path, "%s/img%02d.png", dir, i);
        make_photo(path, i);
        StoreImage im = {0};
        im.prompt_id = pid;
        im.path = store_path_to_stored(st, path);
        int rc = store_image_add(st, &im, NULL, &err);
        free(im.path);
        if (rc)
            goto fail;
    }
    store_close(st);
    return 0;
fail:
    fprintf(stderr, "bench_sixel: %s\n", err.msg);
    store_close(st);
    return -1;
}

/* Read from FD until the terminal output holds a complete sixel (DCS ... ST) followed by
 * ESC 8, or until TIMEOUT_MS. Returns the sixel's length, or -1. */
static long read_frame(int fd, int timeout_ms) {
    static char acc[1 << 22];
    size_t n = 0;
    double deadline = base_now() + timeout_ms / 1000.0;
    for (;;) {
        int left = (int)((deadline - base_now()) * 1000);
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            return -1;
        ssize_t r = read(fd, acc + n, sizeof acc - 1 - n);
        if (r <= 0)
            return -1;
        n += (size_t)r;
        acc[n] = '\0';
        char *dcs = memmem(acc, n, "\033P", 2);
        if (!dcs)
            continue;
        char *st = memmem(dcs, n - (size_t)(dcs - acc), "\033\\", 2);
        if (!st)
            continue;
        if (memmem(st, n - (size_t)(st - acc), "\0338", 2))
            return (long)(st + 2 - dcs);
    }
}

static void drain(int fd, int ms) {
    char buf[65536];
    double end = base_now() + ms / 1000.0;
    for (;;) {
        int left = (int)((end - base_now()) * 1000);
        if (left <= 0)
            return;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            return;
        if (read(fd, buf, sizeof buf) <= 0)
            return;
    }
}

static int frame_size(int *w, int *h) {
    char path[160], line[1024];
    snprintf(path, sizeof path, "%s/easel.log", dir);
    FILE *f = fopen(path, "r");
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        char *k = strstr(line, "canvas ");
        if (k && sscanf(k, "canvas %dx%d", w, h) == 2)
            found = 1;
    }
    if (f)
        fclose(f);
    return found;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of N values (sorts them). */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median milliseconds per image; *bytes gets the mean output size. */
static double run_peer(const char *args, int w, int h, double *bytes) {
    double t[N_IMAGES];
    *bytes = 0;
    for (int i = 0; i < N_IMAGES; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "img2sixel %s -w %d -h %d %s/img%02d.png", args, w, h, dir, i);
        double t0 = base_now();
        FILE *p = popen(cmd, "r");
        char buf[65536];
        size_t n, sum = 0;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0)
            sum += n;
        pclose(p);
        t[i] = (base_now() - t0) * 1000.0;
        *bytes += (double)sum;
    }
    *bytes /= N_IMAGES;
    return median(t, N_IMAGES);
}

/* ---- picture quality on the demo's sunset and sky images -------------------------------- */

#define Q_SIDE 480
#define Q_MAX 9
#define SMOOTH 12 /* a 7x7 window whose values span at most this many levels is smooth */

typedef struct Quality {
    double mse;      /* mean over the images */
    double band;     /* worst 7x7 local-mean error over the images, levels */
    double bytes;    /* mean */
    double ms[Q_MAX];
    int n;
} Quality;

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Decode the sixel S back and add its errors against REF (Q_SIDE square) to Q. */
static int score(const char *s, size_t len, const GfxImage *ref, Quality *q) {
    sixel_allocator_t *al = NULL;
    if (SIXEL_FAILED(sixel_allocator_new(&al, NULL, NULL, NULL, NULL)))
        return -1;
    unsigned char *idx = NULL, *pal = NULL;
    int w = 0, h = 0, nc = 0;
    int rc = -1;
    if (SIXEL_FAILED(sixel_decode_raw((unsigned char *)s, (int)len, &idx, &w, &h, &pal, &nc, al))
        || w < ref->w || h < ref->h)
        goto out;
    double se = 0;
    size_t n_loc = 0, cap_loc = (size_t)ref->w * ref->h * 3 / 4 + 1;
    float *loc = malloc(sizeof *loc * cap_loc);
    if (!loc)
        goto out;
    for (int y = 0; y < ref->h; y++)
        for (int x = 0; x < ref->w; x++)
            for (int k = 0; k < 3; k++) {
                double d = (double)pal[idx[(size_t)y * w + x] * 3 + k] -
                           ref->px[((size_t)y * ref->w + x) * 3 + k];
                se += d * d;
            }
    for (int y = 3; y < ref->h - 3; y += 2)
        for (int x = 3; x < ref->w - 3; x += 2)
            for (int k = 0; k < 3; k++) {
                double a = 0, b = 0;
                int lo = 255, hi = 0;
                for (int dy = -3; dy <= 3; dy++)
                    for (int dx = -3; dx <= 3; dx++) {
                        int v = ref->px[((size_t)(y + dy) * ref->w + x + dx) * 3 + k];
                        a += pal[idx[(size_t)(y + dy) * w + x + dx] * 3 + k];
                        b += v;
                        lo = v < lo ? v : lo;
                        hi = v > hi ? v : hi;
                    }
                if (hi - lo > SMOOTH)
                    continue; /* an edge or texture: not where bands show */
                if (n_loc < cap_loc)
                    loc[n_loc++] = (float)(fabs(a - b) / 49);
            }
    /* the 99th percentile: a band covers far more than 1% of a sky; one odd spot does not */
    qsort(loc, n_loc, sizeof *loc, cmp_float);
    double worst = n_loc ? loc[n_loc * 99 / 100] : 0;
    free(loc);
    q->mse += se / ((double)ref->w * ref->h * 3);
    if (worst > q->band)
        q->band = worst;
    q->bytes += (double)len;
    rc = 0;
out:
    sixel_allocator_free(al, idx);
    sixel_allocator_free(al, pal);
    sixel_allocator_unref(al);
    return rc;
}

static double db(double mse) { return 10 * log10(255.0 * 255.0 / mse); }

/* Our encoder (or, with EASEL_SIXEL_DITHER=libsixel, the previous one) on IMG. */
static int run_ours(const GfxImage *img, Quality *q) {
    GfxGeom g = {.canvas_w = img->w, .canvas_h = img->h, .img_w = img->w, .img_h = img->h,
                 .cols = img->w / 8, .rows = img->h / 16};
    GfxFrame fr;
    double t0 = base_now();
    if (gfx_frame_encode(GFX_SIXEL, &g, img, 256, 0, &fr, NULL))
        return -1;
    q->ms[q->n++] = (base_now() - t0) * 1000.0;
    int rc = score(fr.data, fr.len, img, q);
    gfx_frame_deinit(&fr);
    return rc;
}

static int run_img2sixel(const char *png, const GfxImage *img, Quality *q) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "img2sixel %s", png);
    double t0 = base_now();
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = 0, cap = 1 << 20;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, p)) > 0) {
        n += r;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    pclose(p);
    q->ms[q->n++] = (base_now() - t0) * 1000.0;
    int rc = buf ? score(buf, n, img, q) : -1;
    free(buf);
    return rc;
}

static int quality_bench(void) {
    static const char *const files[Q_MAX] = {
        "data/images/0/0.png",  "data/images/0/1.png",  "data/images/0/2.png",
        "data/images/14/0.png", "data/images/14/1.png", "data/images/14/2.png",
        "data/images/16/0.png", "data/images/16/1.png", "data/images/16/2.png",
    };
    Quality ours = {0}, peer = {0}, before = {0};
    int n = 0;
    for (int i = 0; i < Q_MAX; i++) {
        GfxImage src, img;
        if (gfx_image_load(files[i], &src, NULL)) {
            fprintf(stderr, "bench_sixel: %s missing (run from the repository root)\n", files[i]);
            return -1;
        }
        int rc = gfx_image_resize(&src, Q_SIDE, Q_SIDE, &img, NULL);
        gfx_image_deinit(&src);
        if (rc)
            return -1;
        char png[160];
        snprintf(png, sizeof png, "%s/q%d.png", dir, i);
        stbi_write_png(png, img.w, img.h, 3, img.px, img.w * 3);
        unsetenv("EASEL_SIXEL_DITHER");
        rc = run_ours(&img, &ours);
        setenv("EASEL_SIXEL_DITHER", "libsixel", 1);
        rc = rc ? rc : run_ours(&img, &before);
        unsetenv("EASEL_SIXEL_DITHER");
        rc = rc ? rc : run_img2sixel(png, &img, &peer);
        gfx_image_deinit(&img);
        if (rc) {
            fprintf(stderr, "bench_sixel: %s: encoding or decoding failed\n", files[i]);
            return -1;
        }
        n++;
    }
    ours.mse /= n;
    peer.mse /= n;
    before.mse /= n;
    printf("bench sixel-psnr: %.2fx vs img2sixel (ours %.1f dB, peer %.1f dB)\n",
           peer.mse / ours.mse, db(ours.mse), db(peer.mse));
    printf("bench sixel-banding: %.2fx vs img2sixel (ours %.1f levels, peer %.1f levels)\n",
           peer.band / ours.band, ours.band, peer.band);
    printf("bench sixel-demo-bytes: %.2fx vs img2sixel (ours %.1f KB, peer %.1f KB)\n",
           peer.bytes / ours.bytes, ours.bytes / n / 1024.0, peer.bytes / n / 1024.0);
    double ms_ours = median(ours.ms, ours.n), ms_before = median(before.ms, before.n);
    printf("bench sixel-encode: %.2fx vs libsixel (ours %.1f ms, peer %.1f ms)\n",
           ms_before / ms_ours, ms_ours, ms_before);
    printf("bench sixel-psnr-before: %.2fx vs libsixel (ours %.1f dB, peer %.1f dB)\n",
           before.mse / ours.mse, db(ours.mse), db(before.mse));
    printf("bench sixel-demo-bytes-before: %.2fx vs libsixel (ours %.1f KB, peer %.1f KB)\n",
           before.bytes / ours.bytes, ours.bytes / n / 1024.0, before.bytes / n / 1024.0);
    printf("     (%d sunset/sky demo images at %dx%d px; banding: 99th percentile of smooth 7x7"
           " local-mean errors, worst image; before %.1f levels)\n", n, Q_SIDE, Q_SIDE, before.band);
    return 0;
}

int main(void) {
    if (system("command -v img2sixel >/dev/null 2>&1") != 0) {
        printf("bench sixel: skipped (img2sixel not installed: apt-get install libsixel-bin)\n");
        return 0;
    }
    char easel[512];
    if (!realpath("bin/easel", easel)) {
        fprintf(stderr, "bench_sixel: run from the repository root after make\n");
        return 1;
    }
    strcpy(dir, "/tmp/easel-bench-sixel-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    if (quality_bench())
        return 1;
    if (make_store())
        return 1;

    struct winsize ws = {.ws_row = 30, .ws_col = 100, .ws_xpixel = 800, .ws_ypixel = 480};
    int fd;
    pid_t pid = forkpty(&fd, NULL, NULL, &ws);
    if (pid == 0) {
        char logp[160], db[160];
        snprintf(logp, sizeof logp, "%s/easel.log", dir);
        snprintf(db, sizeof db, "%s/bench.db", dir);
        setenv("EASEL_LOG", logp, 1);
        setenv("TERM", "xterm-256color", 1);
        /* BENCH_SIXEL_CHILD_DITHER=libsixel measures the previous encoder in the same run */
        const char *cd = getenv("BENCH_SIXEL_CHILD_DITHER");
        if (cd)
            setenv("EASEL_SIXEL_DITHER", cd, 1);
        unsetenv("TMUX");
        unsetenv("STY");
        execl(easel, "easel", "--db", db, "annotate", "--annotator", "bench", "--graphics",
              "sixel", "--order", "id", (char *)NULL);
        _exit(127);
    }
    long first = read_frame(fd, 10000);
    if (first < 0) {
        fprintf(stderr, "bench_sixel: easel never drew the first image\n");
        kill(pid, SIGKILL);
        return 1;
    }
    double times[N_IMAGES], bytes = 0;
    int n = 0;
    for (int i = 0; i + 1 < N_IMAGES; i++) {
        if (write(fd, "77777", 5) != 5)
            break;
        drain(fd, THINK_MS); /* the annotator looks; easel prefetches */
        double t0 = base_now();
        if (write(fd, "\r", 1) != 1)
            break;
        long len = read_frame(fd, 10000);
        if (len < 0) {
            fprintf(stderr, "bench_sixel: no frame after Enter on image %d\n", i + 1);
            break;
        }
        times[n] = (base_now() - t0) * 1000.0;
        bytes += (double)len;
        n++;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fd);
    int w = 0, h = 0;
    if (n == 0 || !frame_size(&w, &h)) {
        fprintf(stderr, "bench_sixel: no measurement\n");
        return 1;
    }
    double ours_ms = median(times, n), ours_kb = bytes / n / 1024.0;
    double peer_b, peer_nb;
    double peer_ms = run_peer("", w, h, &peer_b);
    double peer_n_ms = run_peer("-d none", w, h, &peer_nb);
    printf("bench sixel-next-image: %.2fx vs img2sixel (ours %.1f ms, peer %.1f ms)\n",
           peer_ms / ours_ms, ours_ms, peer_ms);
    printf("bench sixel-bytes: %.2fx vs img2sixel (ours %.1f KB, peer %.1f KB)\n",
           peer_b / 1024.0 / ours_kb, ours_kb, peer_b / 1024.0);
    printf("bench sixel-next-image-nodither: %.2fx vs img2sixel -d none (ours %.1f ms, "
           "peer %.1f ms)\n", peer_n_ms / ours_ms, ours_ms, peer_n_ms);
    printf("bench sixel-bytes-nodither: %.2fx vs img2sixel -d none (ours %.1f KB, peer %.1f KB)\n",
           peer_nb / 1024.0 / ours_kb, ours_kb, peer_nb / 1024.0);
    printf("     (%d images of %dx%d px shown at %dx%d px, %d ms between images)\n", n, SIDE, SIDE,
           w, h, THINK_MS);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
