/* bench_sixel — how long an annotator waits for the next image, and how many bytes it costs.
 *
 * Ours: bin/easel in a pseudo-terminal (100x30 cells of 8x16 px, --graphics sixel) on a
 * temporary store of N generated 1024x1024 photos. For each image: type the five values,
 * wait as an annotator would (the prefetch thread works meanwhile), then press Enter and time
 * until the next image's sixel has been completely written to the terminal (read from the
 * pty). Bytes: the sixel sequence of each image as it crossed the pty.
 * Peer: `img2sixel -w W -h H FILE` on the same files at the size easel drew them, the whole
 * process timed until its output ends (what a shell-script viewer would do per image); bytes
 * of its output. A second peer line uses `-d none` (no dithering), which is what we do.
 *
 * Times are medians over the images (the machine may be busy); bytes are means.
 * Prints: bench sixel-next-image: R.RRx vs img2sixel (ours A ms, peer B ms)
 *         bench sixel-bytes: R.RRx vs img2sixel (ours A KB, peer B KB)   (R > 1: fewer bytes)
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

#include "base.h"
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
    if (!mkdtemp(dir) || make_store())
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
