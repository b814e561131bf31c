/* support_fixtures — test pictures, small stores of real images, real-terminal helpers. See
 * support_fixtures.h.
 */
#include "support_fixtures.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "store.h"
#include "store_catalog.h"
#include "store_jobs.h"
#include "store_ratings.h"
#include "support.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#pragma GCC diagnostic pop

int support_run_buf(const char *dir, char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = support_vrun_buf(dir, buf, n, fmt, ap);
    va_end(ap);
    return rc;
}

void support_tmpdir_store(char *dir, size_t n, const char *tag, const char *name, char *db,
                          size_t n_db) {
    support_tmpdir_make(dir, n, tag);
    store_close(support_store_open(dir, name, db, n_db));
}

int support_job_log_has(Store *st, int64_t id, const char *needle) {
    JobLogLine *lines;
    int n, found = 0;
    cr_assert_eq(store_job_log_read(st, id, 0, 0, &lines, &n, NULL), 0);
    for (int i = 0; i < n; i++)
        found |= strstr(lines[i].line, needle) != NULL;
    store_job_log_free(lines, n);
    return found;
}

int64_t support_job_claim(Store *st, const char *worker, const char *host, int pid) {
    JobClaim c = {.worker = worker, .host = host, .pid = pid, .gpu_share = 1};
    JobRow r;
    Err err = {0};
    cr_assert_eq(store_job_claim(st, &c, &r, &err), 1, "no job claimed: %s", err.msg);
    int64_t id = r.id;
    store_job_row_deinit(&r);
    return id;
}

int support_criterion_main(int argc, char **argv) {
    struct criterion_test_set *tests = criterion_initialize();
    int rc = 0;
    if (criterion_handle_args(argc, argv, true))
        rc = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return rc;
}

void support_png_write(const char *path, int w, int h, const unsigned char *rgb) {
    cr_assert(stbi_write_png(path, w, h, 3, rgb, w * 3), "cannot write %s", path);
}

void support_shm_tmpdir_make(char *dir, size_t n, const char *tag) {
    int rc = snprintf(dir, n, "%s/easel-%s-XXXXXX",
                      access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", tag);
    cr_assert(rc > 0 && (size_t)rc < n, "tag %s too long", tag);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp %s", dir);
    char img[4096];
    snprintf(img, sizeof img, "%s/img", dir);
    cr_assert_eq(mkdir(img, 0777), 0, "mkdir %s", img);
}

void support_need_tools(const char *const *tools, const char *why) {
    for (; *tools; tools++)
        if (!support_have(*tools))
            cr_skip_test("%s is not installed: %s", *tools, why);
}

void support_one_image_store(const char *easel, const char *dir, const char *prompt,
                             const char *name, int w, int h, const unsigned char *rgb) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    support_png_write(path, w, h, rgb);
    cr_assert_eq(support_sh("%s --db %s/t.db init >/dev/null", easel, dir), 0);
    cr_assert_eq(support_sh("sqlite3 %s/t.db \"INSERT INTO prompts(id, ext_id, text, created_at)"
                            " VALUES (1, 'p1', '%s', 0); INSERT INTO images(id, prompt_id, path,"
                            " created_at) VALUES (1, 1, '%s', 0);\"", dir, prompt, name),
                 0, "sqlite3 CLI needed (DEB_TEST)");
}

void support_synth_store(const char *dir, const char *db, const SupportSynth *synth) {
    Err err = {0};
    Store *st = store_open(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    StoreAspect *asp = NULL;
    size_t na = 0;
    cr_assert_eq(store_aspects_list(st, &asp, &na, &err), 0, "%s", err.msg);
    cr_assert_geq(na, 5);
    int64_t annot;
    cr_assert_eq(store_annotator_ensure(st, "planter", &annot, &err), 0, "%s", err.msg);
    cr_assert_eq(store_begin(st, &err), 0, "%s", err.msg);
    for (int p = 0; p < synth->n_prompts; p++) {
        char ext[64], text[256];
        snprintf(ext, sizeof ext, "%s%d", synth->ext_prefix, p);
        snprintf(text, sizeof text, "%s%d", synth->text_prefix, p);
        int64_t pid;
        cr_assert_eq(store_prompt_add(st, ext, text, &pid, NULL, &err), 0, "%s", err.msg);
        for (int k = 0; k < synth->per_prompt; k++) {
            char rel[64], path[4096];
            snprintf(rel, sizeof rel, "img/%d_%d.png", p, k);
            snprintf(path, sizeof path, "%s/%s", dir, rel);
            double rating[5] = {NAN, NAN, NAN, NAN, NAN};
            synth->image(path, p, k, rating, synth->user);
            StoreImage im = {.prompt_id = pid, .path = rel};
            int64_t iid;
            cr_assert_eq(store_image_add(st, &im, &iid, &err), 0, "%s", err.msg);
            for (int h = 0; h < 5; h++)
                if (!isnan(rating[h]))
                    cr_assert_eq(store_rating_add(st, iid, annot, asp[h].id, rating[h], NAN,
                                                  "test", NULL, &err),
                                 0, "%s", err.msg);
        }
    }
    cr_assert_eq(store_commit(st, &err), 0, "%s", err.msg);
    store_aspects_free(asp, na);
    store_close(st);
}

void support_x_setup(SupportX *x, const char *tag, const char *const *tools, const char *why) {
    x->xvfb = x->xterm = -1;
    x->display = -1;
    support_need_tools(tools, why);
    support_easel_path(x->easel, sizeof x->easel);
    support_tmpdir_make(x->dir, sizeof x->dir, tag);
    x->display = support_xvfb_start(&x->xvfb);
    cr_assert_geq(x->display, 0, "Xvfb did not report a display");
}

void support_x_teardown(SupportX *x) {
    support_stop(&x->xterm);
    support_stop(&x->xvfb);
    if (!x->dir[0])
        return;
    if (getenv("EASEL_KEEP"))
        cr_log_info("kept %s (EASEL_KEEP)", x->dir);
    else
        support_tmpdir_remove(x->dir);
}

pid_t support_xterm_start(int display, int cols, int rows, const char *cmd) {
    char dpy[16], geom[32];
    snprintf(dpy, sizeof dpy, ":%d", display);
    snprintf(geom, sizeof geom, "%dx%d+0+0", cols, rows);
    char *argv[] = {"xterm", "-display", dpy, "-ti", "vt340", "-b", "0", "-bw", "0",
                    "-xrm", "XTerm*numColorRegisters: 256", "-xrm", "XTerm*cursorBlink: false",
                    "-xrm", "XTerm*allowSendEvents: true", "-geometry", geom, "-e", "sh", "-c",
                    (char *)cmd, NULL};
    return support_spawn_quiet(argv);
}

void support_xwd_settled(int display, const char *dir, const char *name, unsigned delay_us) {
    char prev[200] = "", cmd[4096];
    for (int i = 0; i < 50; i++) {
        usleep(delay_us);
        cr_assert_eq(support_sh("xwd -display :%d -root -silent | convert xwd:- %s/%s.png",
                                display, dir, name),
                     0, "screenshot %s", name);
        char sum[200];
        snprintf(cmd, sizeof cmd, "md5sum < %s/%s.png", dir, name);
        FILE *p = popen(cmd, "r");
        cr_assert(p && fgets(sum, sizeof sum, p), "md5sum of %s", name);
        pclose(p);
        if (strcmp(sum, prev) == 0)
            return;
        strcpy(prev, sum);
    }
}

int support_log_scan(const char *path, const char *also, const char *key, const char *fmt,
                     int n, ...) {
    FILE *f = fopen(path, "r");
    char line[4096];
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *k = strstr(line, key);
        if (!k || (also && !strstr(line, also)))
            continue;
        va_list ap;
        va_start(ap, n);
        found |= vsscanf(k, fmt, ap) == n;
        va_end(ap);
    }
    if (f)
        fclose(f);
    return found;
}

double support_psnr(const char *dir, const char *a, const char *b) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && compare -metric PSNR %s %s null: 2>&1", dir, a, b);
    FILE *p = popen(cmd, "r");
    char out[128] = "";
    cr_assert(p && fgets(out, sizeof out, p), "compare %s %s", a, b);
    pclose(p);
    return strncmp(out, "inf", 3) == 0 ? 999.0 : atof(out);
}

SafeTensors *support_st_open(const char *path) {
    Err err = {0};
    SafeTensors *ref = safetensors_open(path, &err);
    cr_assert(ref, "%s", err.msg);
    return ref;
}

const float *support_st_f32(const SafeTensors *ref, const char *name, int64_t *n) {
    const StTensor *t = safetensors_find(ref, name);
    cr_assert(t, "reference lacks %s", name);
    cr_assert_eq(t->dtype, ST_F32, "%s is not f32", name);
    *n = t->n_elem;
    return safetensors_f32_view(t);
}

void support_assert_close(const float *got, const float *want, int64_t n, float tol,
                          int relative, const char *what) {
    float worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        float d = fabsf(got[i] - want[i]);
        if (relative)
            d /= fmaxf(1.0f, fabsf(want[i]));
        if (!(d <= worst)) {
            worst = d;
            at = i;
        }
    }
    cr_assert(worst <= tol, "%s: max %s error %g at %lld (got %g, want %g)", what,
              relative ? "relative" : "abs", worst, (long long)at, got[at], want[at]);
}

/* ---- the generation CLI tests' setup and image check (dedup16) ---- */

void support_cli_store(char *dir, size_t n, const char *tag, char *db, size_t n_db) {
    support_tmpdir_make(dir, n, tag);
    snprintf(db, n_db, "%s/s.db", dir);
    cr_assert_eq(support_sh("bin/easel --db %s init >/dev/null", db), 0);
}

double support_psnr_rgb(const char *png, const char *rgb_file) {
    Image im = {0};
    Err e = {0};
    cr_assert_eq(image_load(png, 3, &im, &e), 0, "%s", e.msg);
    cr_assert(im.w == 64 && im.h == 64);
    FILE *f = fopen(rgb_file, "rb");
    cr_assert_not_null(f, "%s", rgb_file);
    uint8_t want[64 * 64 * 3];
    cr_assert_eq(fread(want, 1, sizeof want, f), sizeof want);
    fclose(f);
    double se = 0;
    for (size_t i = 0; i < sizeof want; i++)
        se += ((double)im.px[i] - want[i]) * ((double)im.px[i] - want[i]);
    image_deinit(&im);
    return se == 0 ? INFINITY : 10 * log10(255.0 * 255.0 / (se / (double)sizeof want));
}
