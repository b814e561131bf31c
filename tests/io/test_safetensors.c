/* test_safetensors — our reader and writer against files the Python `safetensors` package
 * made (tests/safetensors/make_fixtures.py), plus every kind of broken file. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "fmt_safetensors.h"

#define FIX "tests/fixtures/safetensors/"

static char tmpdir[256];

static void setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/easel-st-XXXXXX");
    cr_assert(mkdtemp(tmpdir));
}

static void teardown(void) {
    char *cmd = xasprintf("rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
}

TestSuite(safetensors, .init = setup, .fini = teardown);

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = xmalloc((size_t)len + 1);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void spit(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static char *tmp_path(const char *name) { return xasprintf("%s/%s", tmpdir, name); }

/* A file with header JSON HDR (unpadded) and DATA_LEN bytes of data. */
static char *make_file(const char *name, const char *hdr, size_t data_len) {
    char *path = tmp_path(name);
    size_t h = strlen(hdr);
    unsigned char *buf = xcalloc(1, 8 + h + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, hdr, h);
    spit(path, buf, 8 + h + data_len);
    free(buf);
    return path;
}

static int same_float(float a, float b) {
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return a == b && signbit(a) == signbit(b);
}

static float json_num(json_t *v) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "nan") == 0)
            return NAN;
        return strcmp(s, "inf") == 0 ? INFINITY : -INFINITY;
    }
    return (float)json_number_value(v);
}

Test(safetensors, reads_python_file_values_and_metadata) {
    Err err = {0};
    SafeTensors *st = safetensors_open(FIX "py_mixed.safetensors", &err);
    cr_assert(st, "%s", err.msg);
    json_error_t je;
    json_t *exp = json_load_file(FIX "py_mixed.json", 0, &je);
    cr_assert(exp);
    cr_assert_eq(safetensors_count(st), json_object_size(exp) - 1);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(exp, "__metadata__"), k, v) {
        const char *got = safetensors_metadata(st, k);
        cr_assert(got, "metadata %s missing", k);
        cr_assert_str_eq(got, json_string_value(v));
    }
    cr_assert_null(safetensors_metadata(st, "absent"));
    cr_assert_str_eq(safetensors_metadata_key(st, 0), "format"); /* file order */
    cr_assert_str_eq(safetensors_metadata_key(st, 2), "aspects");
    cr_assert_null(safetensors_metadata_key(st, 3));
    int n_checked = 0;
    json_object_foreach(exp, k, v) {
        if (strcmp(k, "__metadata__") == 0)
            continue;
        const StTensor *t = safetensors_find(st, k);
        cr_assert(t, "tensor %s not found", k);
        json_t *shape = json_object_get(v, "shape");
        cr_assert_eq((size_t)t->n_dim, json_array_size(shape), "%s rank", k);
        for (int d = 0; d < t->n_dim; d++)
            cr_assert_eq(t->shape[d], json_integer_value(json_array_get(shape, d)));
        json_t *vals = json_object_get(v, "values");
        size_t n = json_array_size(vals);
        cr_assert_eq((size_t)t->n_elem, n, "%s size", k);
        float *out = xcalloc(n + 1, sizeof(float));
        cr_assert_eq(safetensors_read_f32(st, t, out, n, &err), 0, "%s", err.msg);
        for (size_t i = 0; i < n; i++) {
            float want = json_num(json_array_get(vals, i));
            cr_assert(same_float(out[i], want), "%s[%zu]: got %.9g want %.9g", k, i, out[i],
                      want);
        }
        free(out);
        n_checked++;
    }
    cr_assert_geq(n_checked, 17);
    const StTensor *t = safetensors_find(st, "w.f32");
    cr_assert_eq(t->dtype, ST_F32);
    cr_assert(safetensors_f32_view(t));
    cr_assert_null(safetensors_f32_view(safetensors_find(st, "w.f16")));
    cr_assert_eq(safetensors_find(st, "special.bf16")->dtype, ST_BF16);
    cr_assert_eq(safetensors_find(st, "scalar")->n_dim, 0);
    cr_assert_eq(safetensors_find(st, "scalar")->n_elem, 1);
    cr_assert_null(safetensors_find(st, "w.f3"));
    float one;
    cr_assert_eq(safetensors_read_f32(st, t, &one, 1, &err), ERR_USAGE);
    json_decref(exp);
    safetensors_close(st);
}

Test(safetensors, writer_bytes_equal_python_package) {
    Err err = {0};
    SafeTensors *st = safetensors_open(FIX "py_mixed.safetensors", &err);
    cr_assert(st, "%s", err.msg);
    SafeTensorsWriter *w = safetensors_writer_new();
    /* add in file order reversed: the writer must sort as the package does */
    for (size_t i = safetensors_count(st); i-- > 0;) {
        const StTensor *t = safetensors_at(st, i);
        cr_assert_eq(safetensors_writer_add(w, t->name, t->dtype, t->n_dim, t->shape, t->data,
                                            &err), 0, "%s", err.msg);
    }
    for (size_t i = 0; safetensors_metadata_key(st, i); i++) {
        const char *key = safetensors_metadata_key(st, i);
        safetensors_writer_meta(w, key, "placeholder");
        safetensors_writer_meta(w, key, safetensors_metadata(st, key)); /* replaces */
    }
    const StTensor *t0 = safetensors_at(st, 0);
    cr_assert_eq(safetensors_writer_add(w, t0->name, t0->dtype, t0->n_dim, t0->shape, t0->data,
                                        &err), ERR_CONFLICT);
    cr_assert_eq(safetensors_writer_add(w, "__metadata__", ST_F32, 0, NULL, t0->data, &err),
                 ERR_USAGE);
    char *out = tmp_path("ours.safetensors");
    cr_assert_eq(safetensors_writer_save(w, out, &err), 0, "%s", err.msg);
    safetensors_writer_free(w);
    size_t na, nb;
    unsigned char *a = slurp(FIX "py_mixed.safetensors", &na);
    unsigned char *b = slurp(out, &nb);
    cr_assert_eq(na, nb);
    cr_assert(memcmp(a, b, na) == 0, "our file differs from the Python package's");
    free(a);
    free(b);
    free(out);
    safetensors_close(st);
}

Test(safetensors, write_read_roundtrip_and_atomic_replace) {
    Err err = {0};
    float w32[6] = {1, -2, 3.5f, 1e-8f, -0.0f, 7};
    uint16_t w16[6], wb[6];
    for (int i = 0; i < 6; i++) {
        w16[i] = safetensors_f32_to_f16(w32[i]);
        wb[i] = safetensors_f32_to_bf16(w32[i]);
    }
    int64_t shape[2] = {2, 3};
    char *path = tmp_path("rt.safetensors");
    spit(path, "old", 3);
    SafeTensorsWriter *w = safetensors_writer_new();
    cr_assert_eq(safetensors_writer_add(w, "a", ST_F32, 2, shape, w32, &err), 0);
    cr_assert_eq(safetensors_writer_add(w, "b", ST_F16, 2, shape, w16, &err), 0);
    cr_assert_eq(safetensors_writer_add(w, "c", ST_BF16, 2, shape, wb, &err), 0);
    safetensors_writer_meta(w, "format", "pt");
    cr_assert_eq(safetensors_writer_save(w, path, &err), 0, "%s", err.msg);
    safetensors_writer_free(w);
    SafeTensors *st = safetensors_open(path, &err);
    cr_assert(st, "%s", err.msg);
    float out[6];
    cr_assert_eq(safetensors_read_f32(st, safetensors_find(st, "a"), out, 6, &err), 0);
    for (int i = 0; i < 6; i++)
        cr_assert(same_float(out[i], w32[i]));
    cr_assert_eq(safetensors_read_f32(st, safetensors_find(st, "b"), out, 6, &err), 0);
    for (int i = 0; i < 6; i++)
        cr_assert(fabsf(out[i] - w32[i]) <= 1e-3f * fabsf(w32[i]) + 6e-8f, "%d", i);
    cr_assert_eq(safetensors_read_f32(st, safetensors_find(st, "c"), out, 6, &err), 0);
    for (int i = 0; i < 6; i++)
        cr_assert(fabsf(out[i] - w32[i]) <= 4e-3f * fabsf(w32[i]), "%d", i);
    cr_assert_str_eq(safetensors_metadata(st, "format"), "pt");
    safetensors_close(st);
    /* no temporary file left beside it */
    char *cmd = xasprintf("ls '%s' | grep -c tmp", tmpdir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    cr_assert_eq(n, 0);
    free(cmd);
    /* a folder that does not exist: ERR_IO naming the path */
    char *bad = tmp_path("no/such/dir/x.safetensors");
    w = safetensors_writer_new();
    cr_assert_eq(safetensors_writer_save(w, bad, &err), ERR_IO);
    cr_assert(strstr(err.msg, bad), "%s", err.msg);
    safetensors_writer_free(w);
    free(bad);
    free(path);
}

static float half_value(uint16_t h) { return safetensors_f16_to_f32(h); }

Test(safetensors, half_conversions_exact_and_nearest_even) {
    /* every finite half survives half -> float -> half */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue;
        cr_assert_eq(safetensors_f32_to_f16(half_value((uint16_t)h)), h, "0x%04x", h);
    }
    /* to-half picks the nearest half, ties to even (checked by brute force in double) */
    srand(1);
    for (int i = 0; i < 20000; i++) {
        double x = ldexp((double)rand() / RAND_MAX * 2 - 1, rand() % 44 - 28);
        float f = (float)x;
        uint16_t h = safetensors_f32_to_f16(f);
        double got = half_value(h);
        for (int d = -1; d <= 1; d += 2) {
            uint16_t o = (uint16_t)(h + d);
            if ((o & 0x7fff) > 0x7c00 || ((o ^ h) & 0x8000))
                continue;
            double other = half_value(o);
            double eg = fabs(got - f), eo = fabs(other - f);
            cr_assert(eg < eo || (eg == eo && (h & 1) == 0), "x=%.10g h=0x%04x", f, h);
        }
    }
    cr_assert_eq(safetensors_f32_to_f16(70000.0f), 0x7c00);
    cr_assert_eq(safetensors_f32_to_f16(-INFINITY), 0xfc00);
    cr_assert(isnan(half_value(safetensors_f32_to_f16(NAN))));
    cr_assert_eq(safetensors_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(safetensors_f32_to_bf16(1.00390625f), 0x3f80); /* tie -> even */
    cr_assert_eq(safetensors_f32_to_bf16(1.01171875f), 0x3f82); /* tie -> even (up) */
    cr_assert(isnan(safetensors_bf16_to_f32(safetensors_f32_to_bf16(NAN))));
}

/* Expect open to fail with CODE and a message holding each of the NULL-ended words. */
static void expect_bad(const char *path, int code, ...) {
    Err err = {0};
    SafeTensors *st = safetensors_open(path, &err);
    cr_assert_null(st, "%s opened", path);
    cr_assert_eq(err.code, code, "%s: code %d (%s)", path, err.code, err.msg);
    cr_assert(strstr(err.msg, path), "message does not name the file: %s", err.msg);
    va_list ap;
    va_start(ap, code);
    for (const char *w; (w = va_arg(ap, const char *));)
        cr_assert(strstr(err.msg, w), "message lacks '%s': %s", w, err.msg);
    va_end(ap);
}

Test(safetensors, truncated_files_rejected) {
    size_t n;
    unsigned char *buf = slurp(FIX "py_mixed.safetensors", &n);
    size_t cuts[] = {0, 3, 8, 40, n - 1, n - 20};
    for (size_t i = 0; i < ARRAY_LEN(cuts); i++) {
        char *p = tmp_path("cut.safetensors");
        spit(p, buf, cuts[i]);
        expect_bad(p, ERR_FORMAT, NULL);
        free(p);
    }
    Err err = {0};
    SafeTensors *st = safetensors_open(FIX "py_mixed.safetensors", &err);
    cr_assert(st);
    const char *last = safetensors_at(st, safetensors_count(st) - 1)->name;
    char *p = tmp_path("cut.safetensors");
    spit(p, buf, n - 1);
    expect_bad(p, ERR_FORMAT, "truncated", last, NULL); /* names the tensor cut short */
    safetensors_close(st);
    free(p);
    free(buf);
}

Test(safetensors, not_safetensors_and_bad_json) {
    char *p = tmp_path("x.png");
    spit(p, "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    expect_bad(p, ERR_FORMAT, "not a safetensors file", NULL);
    free(p);
    p = tmp_path("x.txt");
    spit(p, "hello world, this is text", 25);
    expect_bad(p, ERR_FORMAT, "not a safetensors file", NULL);
    free(p);
    p = make_file("badjson.safetensors", "{\"a\": {\"dtype\": \"F32\", ", 0);
    expect_bad(p, ERR_FORMAT, "JSON", NULL);
    free(p);
    p = make_file("dup.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    expect_bad(p, ERR_FORMAT, NULL);
    free(p);
    p = make_file("arr.safetensors", "[1,2,3]", 0);
    expect_bad(p, ERR_FORMAT, NULL);
    free(p);
    p = tmp_path("missing.safetensors");
    expect_bad(p, ERR_NOTFOUND, NULL);
    free(p);
}

Test(safetensors, bad_entries_name_the_tensor) {
    struct {
        const char *hdr;
        size_t data;
        const char *word;
    } cases[] = {
        {"{\"w1\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16, "w1"},
        {"{\"w2\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "Q4"},
        {"{\"w3\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "w3"},
        {"{\"w4\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "w4"},
        {"{\"w5\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "truncated"},
        {"{\"w6\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "w6"},
        {"{\"w7\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"w8\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
        {"{\"__metadata__\":{\"k\":3}}", 0, "__metadata__"},
        {"{\"w9\":{\"dtype\":\"F16\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}", 8, "w9"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *p = make_file("bad.safetensors", cases[i].hdr, cases[i].data);
        expect_bad(p, ERR_FORMAT, cases[i].word, NULL);
        free(p);
    }
    /* a well-formed hand-made file opens: gaps and zero-size tensors are fine */
    char *p = make_file("ok.safetensors",
                        "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                        "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                        "\"c\":{\"dtype\":\"I16\",\"shape\":[],\"data_offsets\":[4,6]}}   ", 6);
    Err err = {0};
    SafeTensors *st = safetensors_open(p, &err);
    cr_assert(st, "%s", err.msg);
    cr_assert_eq(safetensors_count(st), 3);
    cr_assert_str_eq(safetensors_at(st, 0)->name, "b");
    safetensors_close(st);
    free(p);
}

/* An overlap hidden behind a zero-length tensor (sorted by start, the neighbour of "b" is "z",
 * which the old neighbour check skipped), and overlaps of a short tensor inside a long one.
 * Both names are given. */
Test(safetensors, hidden_overlaps_rejected) {
    struct {
        const char *hdr;
        size_t data;
        const char *a, *b;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'a'", "'b'"},
        {"{\"long\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"short\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
         "\"third\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}", 16, "'long'",
         "'short'"},
        {"{\"long\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"s\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
         "\"third\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[12,16]}}", 16, "'long'",
         "'s'"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *p = make_file("hidden.safetensors", cases[i].hdr, cases[i].data);
        expect_bad(p, ERR_FORMAT, "overlap", cases[i].a, cases[i].b, NULL);
        free(p);
    }
    /* a zero-length tensor is out of the overlap chain but still bounds-checked */
    char *p = make_file("zero.safetensors",
                        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[99,99]}}", 8);
    expect_bad(p, ERR_FORMAT, "'z'", NULL);
    free(p);
    /* a FIFO is refused at once, not waited on */
    p = tmp_path("fifo.safetensors");
    cr_assert_eq(mkfifo(p, 0600), 0);
    expect_bad(p, ERR_IO, "not a regular file", NULL);
    free(p);
}
