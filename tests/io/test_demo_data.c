/* Tests for the demo workspace in data/: it is exactly what data/gen/make_demo writes (byte
 * for byte), it has the shape doc/demo.md promises, and its ratings agree the way it says. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agreement.h"

/* static stb: unused decoders are reported at the end of the file, hence outside push/pop */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "image.h"

static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = n;
    return buf;
}

/* Lines of a small CSV file (no quoted newlines in these files), header included. */
static int read_lines(const char *path, char ***out) {
    long n;
    char *buf = slurp(path, &n);
    cr_assert_not_null(buf, "cannot read %s", path);
    int c = 0, cap = 64;
    char **v = malloc(sizeof *v * (size_t)cap);
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (c == cap)
            v = realloc(v, sizeof *v * (size_t)(cap *= 2));
        v[c++] = strdup(line);
    }
    free(buf);
    *out = v;
    return c;
}

static int split(char *line, char **f, int max) {
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == ',') {
            *p = 0;
            f[n++] = p + 1;
        }
    return n;
}

static int cmp_files(const char *a, const char *b) {
    long na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, (size_t)na) == 0;
    free(x);
    free(y);
    return same;
}

Test(demo_data, regenerates_byte_for_byte) {
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char tmp[] = "/tmp/easel-demo-XXXXXX", cmd[512];
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(cmd, sizeof cmd, "%s/gen/make_demo --out %s >/dev/null", build, tmp);
    cr_assert_eq(system(cmd), 0, "%s failed (run make %s/gen/make_demo)", cmd, build);
    const char *csvs[] = {"prompts.csv", "defects.csv", "multihead_ratings.csv"};
    char a[512], b[512];
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "data/%s", csvs[i]);
        snprintf(b, sizeof b, "%s/%s", tmp, csvs[i]);
        cr_assert(cmp_files(a, b), "%s differs from what make_demo writes (make demo-data)", a);
    }
    /* every generated image is committed and identical, and data/images holds no others */
    int n_gen = 0, n_data = 0;
    for (int p = 0; p < 100; p++)
        for (int s = 0; s < 10; s++) {
            struct stat sb;
            snprintf(b, sizeof b, "%s/images/%d/%d.png", tmp, p, s);
            snprintf(a, sizeof a, "data/images/%d/%d.png", p, s);
            int in_gen = stat(b, &sb) == 0, in_data = stat(a, &sb) == 0;
            n_gen += in_gen;
            n_data += in_data;
            cr_assert_eq(in_gen, in_data, "%s: committed %d, generated %d", a, in_data, in_gen);
            if (in_gen)
                cr_assert(cmp_files(a, b), "%s differs from what make_demo writes", a);
        }
    cr_assert_eq(n_gen, n_data);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

Test(demo_data, prompts_and_images) {
    char **lines;
    int n = read_lines("data/prompts.csv", &lines);
    cr_assert_str_eq(lines[0], "prompt_id,prompt");
    cr_assert_geq(n - 1, 12, "at least 12 prompts");
    int quoted = 0, n_images = 0;
    long bytes = 0;
    for (int i = 1; i < n; i++) {
        quoted += strchr(lines[i], '"') != NULL;
        int per = 0;
        for (int s = 0; s < 10; s++) {
            char path[256];
            snprintf(path, sizeof path, "data/images/%d/%d.png", i - 1, s);
            struct stat sb;
            if (stat(path, &sb) != 0)
                continue;
            bytes += sb.st_size;
            Image im;
            Err err = {0};
            cr_assert_eq(image_load(path, 3, &im, &err), 0, "%s", err.msg);
            cr_assert_eq(im.w, 192);
            cr_assert_eq(im.h, 192);
            image_deinit(&im);
            per++;
        }
        cr_assert(per >= 2 && per <= 3, "prompt %d has %d images", i - 1, per);
        n_images += per;
        free(lines[i]);
    }
    cr_assert_geq(n_images, 24);
    cr_assert_geq(quoted, 2, "prompts with commas/quotes exercise CSV quoting");
    cr_assert_lt(bytes, 1000 * 1000, "demo images stay small: %ld bytes", bytes);
    free(lines[0]);
    free(lines);
}

Test(demo_data, defects_cover_every_kind) {
    char **lines;
    int n = read_lines("data/defects.csv", &lines);
    cr_assert_str_eq(lines[0], "prompt_id,seed,image_path,defect,severity,detail");
    const char *kinds[] = {"blur", "noise", "offcentre", "colorcast", "lowcontrast",
                           "overexposed", "blocky", "missing_subject", "none"};
    int count[9] = {0};
    for (int i = 1; i < n; i++) {
        char *f[8];
        cr_assert_eq(split(lines[i], f, 8), 6, "defects.csv:%d", i + 1);
        struct stat sb;
        char path[256];
        snprintf(path, sizeof path, "data/%s", f[2]);
        cr_assert_eq(stat(path, &sb), 0, "defects.csv:%d: %s missing", i + 1, path);
        int k = 0;
        while (k < 9 && strcmp(kinds[k], f[3]) != 0)
            k++;
        cr_assert_lt(k, 9, "defects.csv:%d: unknown defect %s", i + 1, f[3]);
        count[k]++;
        double sev = atof(f[4]);
        cr_assert(k == 8 ? sev == 0 : sev > 0 && sev <= 1, "defects.csv:%d", i + 1);
        free(lines[i]);
    }
    for (int k = 0; k < 9; k++)
        cr_assert_geq(count[k], 3, "defect %s planted only %d times", kinds[k], count[k]);
    free(lines[0]);
    free(lines);
}

Test(demo_data, ratings_three_annotators_partial_realistic_agreement) {
    char **lines;
    int n = read_lines("data/multihead_ratings.csv", &lines);
    cr_assert_str_eq(lines[0], "prompt_id,image_path,spatial_rating,icono_rating,style_rating,"
                               "fidelity_rating,material_rating,annotator");
    /* images × annotators tables, one per aspect */
    enum { MAXI = 128 };
    char *paths[MAXI];
    int n_img = 0;
    const char *names[3] = {"alice", "bob", "chen"};
    AgreeTable *t[5];
    for (int a = 0; a < 5; a++)
        t[a] = agreement_table_new(MAXI, 3);
    for (int i = 1; i < n; i++) {
        char *f[10];
        cr_assert_eq(split(lines[i], f, 10), 8, "multihead_ratings.csv:%d", i + 1);
        char path[256];
        struct stat sb;
        snprintf(path, sizeof path, "data/%s", f[1]);
        cr_assert_eq(stat(path, &sb), 0, "multihead_ratings.csv:%d: %s missing", i + 1, path);
        int img = 0;
        while (img < n_img && strcmp(paths[img], f[1]) != 0)
            img++;
        if (img == n_img)
            paths[n_img++] = f[1];
        int r = 0;
        while (r < 3 && strcmp(names[r], f[7]) != 0)
            r++;
        cr_assert_lt(r, 3, "multihead_ratings.csv:%d: annotator %s", i + 1, f[7]);
        for (int a = 0; a < 5; a++) {
            if (!*f[2 + a])
                continue;
            double v = atof(f[2 + a]);
            cr_assert(v >= 0 && v <= 10);
            cr_assert(isnan(*agreement_cell(t[a], img, r)), "duplicate rating line %d", i + 1);
            *agreement_cell(t[a], img, r) = v;
        }
    }
    /* the demo has 88 images; at least 6 are left for the annotators */
    cr_assert_leq(n_img, 88 - 6, "some images must be left for the annotators (%d rated)", n_img);
    cr_assert_geq(n_img, 60, "most images are rated, so each head has pairs to learn from");
    for (int a = 0; a < 5; a++) {
        t[a]->n_items = n_img;
        AgreeStats *s = agreement_compute(t[a], NULL);
        cr_assert(s->alpha >= 0.45 && s->alpha <= 0.85, "aspect %d alpha %.3f", a, s->alpha);
        cr_assert_eq(s->n_raters_active, 3);
        cr_assert_eq(s->raters_max, 3);
        cr_assert_geq(s->icc_n_items, 10);
        agreement_stats_free(s);
        agreement_table_free(t[a]);
    }
    for (int i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}
