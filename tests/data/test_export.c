/* Tests for src/data/export.c: ratings import → export → import → export is byte-identical,
 * exports are deterministic, means and pairs match values computed by hand, prompts with
 * commas, quotes, newlines and UTF-8 come back as they went in. */
#include <criterion/criterion.h>
#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export.h"
#include "import.h"

#define FIX "tests/fixtures/import/"

static char tmpdir[64];
static char absfix[512];   /* absolute path of FIX, as exports write it */

static void setup(void) {
    strcpy(tmpdir, "/tmp/easel-export-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    cr_assert_not_null(realpath(FIX, absfix));
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(export, .init = setup, .fini = teardown);

static Store *new_store(const char *name) {
    char path[160];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    Err err = {0};
    Store *st = store_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    return st;
}

/* The fixtures name images that are not on disk on purpose; since issue 13 that needs
 * --allow-missing. */
static const ImportOptions missing_ok = {.annotator = "tester", .allow_missing = 1};

static void imp(Store *st, ImportKind kind, const char *path) {
    ImportReport rep;
    Err err = {0};
    cr_assert_eq(import_path(st, kind, path, &missing_ok, &rep, &err), 0, "%s: %s", path, err.msg);
    import_report_deinit(&rep);
}

/* A new store NAME with the prompts and ratings of the fixtures. */
static Store *rated_store(const char *name) {
    Store *st = new_store(name);
    imp(st, IMPORT_PROMPTS, FIX "prompts_good.csv");
    imp(st, IMPORT_RATINGS, FIX "ratings_good.csv");
    return st;
}

/* Export KIND to a string. */
static char *export_str(Store *st, ExportKind kind, int per_annotator, double min_diff) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ExportOptions o;
    export_options_init(&o);
    o.per_annotator = per_annotator;
    if (!isnan(min_diff))
        o.min_rating_diff = min_diff;
    o.relative_to = tmpdir;
    Err err = {0};
    cr_assert_eq(export_write(st, kind, f, &o, NULL, &err), 0, "%s", err.msg);
    fclose(f);
    return buf;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&buf, &cap, '\0', f);
    cr_assert_geq(n, 0);
    fclose(f);
    return buf;
}

Test(export, number_format_is_shortest_exact) {
    char b[32];
    cr_assert_str_eq(export_format_number(8, b), "8");
    cr_assert_str_eq(export_format_number(10, b), "10");
    cr_assert_str_eq(export_format_number(0, b), "0");
    cr_assert_str_eq(export_format_number(7.5, b), "7.5");
    cr_assert_str_eq(export_format_number(0.1, b), "0.1");
    cr_assert_str_eq(export_format_number(5.1, b), "5.1");
    double third = 22.0 / 3;
    cr_assert_eq(strtod(export_format_number(third, b), NULL), third);
}

Test(export, prompts_round_trip_byte_for_byte) {
    Store *st = new_store("a.db");
    imp(st, IMPORT_PROMPTS, FIX "prompts_good.csv");
    char *got = export_str(st, EXPORT_PROMPTS, 0, NAN);
    char *want = slurp(FIX "prompts_good.csv"); /* written in canonical order and quoting */
    cr_assert_str_eq(got, want);
    /* and into a second store and out again */
    char path[160];
    snprintf(path, sizeof path, "%s/p.csv", tmpdir);
    Err err = {0};
    cr_assert_eq(export_to_file(st, EXPORT_PROMPTS, path, NULL, NULL, &err), 0, "%s", err.msg);
    Store *st2 = new_store("b.db");
    imp(st2, IMPORT_PROMPTS, path);
    char *again = export_str(st2, EXPORT_PROMPTS, 0, NAN);
    cr_assert_str_eq(again, want);
    free(got);
    free(want);
    free(again);
    store_close(st);
    store_close(st2);
}

/* An empty store exports the header of each file and nothing else (under SAN=1 this once
 * failed: qsort was handed the NULL list of no prompts). */
Test(export, an_empty_store_exports_headers_only) {
    Store *st = new_store("empty.db");
    char *got = export_str(st, EXPORT_PROMPTS, 0, NAN);
    cr_assert_str_eq(got, "prompt_id,prompt\n");
    free(got);
    got = export_str(st, EXPORT_PAIRS, 0, NAN);
    cr_assert_str_eq(got, "");
    free(got);
    store_close(st);
}

Test(export, ratings_round_trip_is_identical_and_deterministic) {
    Store *a = rated_store("a.db");
    char *r1 = export_str(a, EXPORT_RATINGS, 1, NAN);
    char *r1b = export_str(a, EXPORT_RATINGS, 1, NAN);
    cr_assert_str_eq(r1, r1b, "export is not deterministic");
    /* the export sorts by prompt_id numerically: 1, 2, 10 */
    cr_assert(strstr(r1, "\n1,") < strstr(r1, "\n2,") && strstr(r1, "\n2,") < strstr(r1, "\n10,"));
    char path[160];
    snprintf(path, sizeof path, "%s/r1.csv", tmpdir);
    FILE *f = fopen(path, "w");
    fputs(r1, f);
    fclose(f);
    Store *b = new_store("b.db");
    imp(b, IMPORT_PROMPTS, FIX "prompts_good.csv");
    imp(b, IMPORT_RATINGS, path);
    char *r2 = export_str(b, EXPORT_RATINGS, 1, NAN);
    cr_assert_str_eq(r1, r2);
    /* importing the export into the original store changes nothing */
    ImportReport rep;
    Err err = {0};
    cr_assert_eq(import_path(a, IMPORT_RATINGS, path, &missing_ok, &rep, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(rep.ratings_added, 0);
    cr_assert_eq(rep.ratings_unchanged, 29);
    import_report_deinit(&rep);
    char *m1 = export_str(a, EXPORT_RATINGS, 0, NAN), *m2 = export_str(b, EXPORT_RATINGS, 0, NAN);
    cr_assert_str_eq(m1, m2);
    free(r1);
    free(r1b);
    free(r2);
    free(m1);
    free(m2);
    store_close(a);
    store_close(b);
}

Test(export, mean_over_annotators_by_hand) {
    Store *st = rated_store("a.db");
    char *got = export_str(st, EXPORT_RATINGS, 0, NAN);
    char line[1024];
    /* image 1/0: alice 8,7.5,5,-,9 and bob 7,8,-,6,9 → 7.5,7.75,5,6,9 */
    snprintf(line, sizeof line, "\n1,%s/images/1/0.png,7.5,7.75,5,6,9\n", absfix);
    cr_assert(strstr(got, line) != NULL, "%s\nnot in\n%s", line, got);
    /* image 1/1: alice 6,7.5,5.2,3,- and bob 9,7,5,4,2 → 7.5,7.25,5.1,3.5,2 */
    snprintf(line, sizeof line, "\n1,%s/images/1/1.png,7.5,7.25,5.1,3.5,2\n", absfix);
    cr_assert(strstr(got, line) != NULL, "%s\nnot in\n%s", line, got);
    snprintf(line, sizeof line, "\n2,%s/images/2/0.png,3,,,,\n", absfix);
    cr_assert(strstr(got, line) != NULL, "%s\nnot in\n%s", line, got);
    const char *hdr = "prompt_id,image_path,spatial_rating,icono_rating,style_rating,"
                      "fidelity_rating,material_rating\n";
    cr_assert(strncmp(got, hdr, strlen(hdr)) == 0, "%s", got);
    free(got);
    /* the template lists every image, ratings blank */
    got = export_str(st, EXPORT_TEMPLATE, 0, NAN);
    snprintf(line, sizeof line, "\n10,%s/images/10/missing.png,,,,,\n", absfix);
    cr_assert(strstr(got, line) != NULL, "%s", got);
    int lines = 0;
    for (char *c = got; *c; c++)
        lines += *c == '\n';
    cr_assert_eq(lines, 1 + 6);
    free(got);
    store_close(st);
}

/* Pairs from ratings_good.csv, min diff 0.5, means over alice and bob (by hand):
 *   prompt 1: 1/0 = (7.5, 7.75, 5, 6, 9), 1/1 = (7.5, 7.25, 5.1, 3.5, 2)
 *     spatial tie; icono 0.5 → 1/0; style 0.1 none; fidelity 2.5 → 1/0; material 7 → 1/0;
 *     combined 7.05 vs 5.07 → 1/0, diff 1.98
 *   prompt 2: spatial 3 vs 4.4 → 2/1, diff 1.4; combined the same
 *   prompt 10: 10/0 = (10, 0, 5.5, 5.5, 5.5), missing = (0, 10, 5.5, 5, 5.5)
 *     spatial → 10/0 (10); icono → missing (10); fidelity → 10/0 (0.5); combined 5.3 vs 5.2 none
 */
Test(export, pairs_match_hand_computed_labels) {
    Store *st = rated_store("a.db");
    char *got = export_str(st, EXPORT_PAIRS, 0, NAN);
    static const struct {
        const char *prompt_id, *pos, *neg, *aspect;
        double diff;
    } want[] = {
        {"1", "1/0.png", "1/1.png", "icono", 0.5},
        {"1", "1/0.png", "1/1.png", "fidelity", 2.5},
        {"1", "1/0.png", "1/1.png", "material", 7},
        {"1", "1/0.png", "1/1.png", "combined", 1.98},
        {"2", "2/1.png", "2/0.png", "spatial", 1.4},
        {"2", "2/1.png", "2/0.png", "combined", 1.4},
        {"10", "10/0.png", "10/missing.png", "spatial", 10},
        {"10", "10/missing.png", "10/0.png", "icono", 10},
        {"10", "10/0.png", "10/missing.png", "fidelity", 0.5},
    };
    size_t n = 0;
    char *save, *ln = strtok_r(got, "\n", &save);
    for (; ln; ln = strtok_r(NULL, "\n", &save), n++) {
        cr_assert_lt(n, sizeof want / sizeof want[0], "extra pair: %s", ln);
        json_error_t je;
        json_t *o = json_loads(ln, 0, &je);
        cr_assert_not_null(o, "%s", je.text);
        const char *pos = json_string_value(json_object_get(o, "img_pos"));
        const char *neg = json_string_value(json_object_get(o, "img_neg"));
        cr_assert_str_eq(json_string_value(json_object_get(o, "prompt_id")), want[n].prompt_id);
        cr_assert(strstr(pos, want[n].pos) && strlen(strstr(pos, want[n].pos)) ==
                  strlen(want[n].pos), "pair %zu: img_pos %s, want %s", n, pos, want[n].pos);
        cr_assert(strstr(neg, want[n].neg) != NULL, "pair %zu: img_neg %s", n, neg);
        cr_assert_str_eq(json_string_value(json_object_get(o, "aspect")), want[n].aspect);
        cr_assert_float_eq(json_real_value(json_object_get(o, "label")), 1.0, 0);
        double rp = json_number_value(json_object_get(o, "rating_pos"));
        double rn = json_number_value(json_object_get(o, "rating_neg"));
        double d = json_number_value(json_object_get(o, "rating_diff"));
        cr_assert_float_eq(d, want[n].diff, 1e-9, "pair %zu diff %g", n, d);
        cr_assert_float_eq(rp - rn, d, 1e-9);
        cr_assert_gt(rp, rn, "img_pos must be the preferred image");
        cr_assert(json_is_string(json_object_get(o, "prompt")));
        json_decref(o);
    }
    cr_assert_eq(n, sizeof want / sizeof want[0]);
    free(got);
    /* a larger threshold drops the 0.5 pairs; per annotator adds the annotator field */
    got = export_str(st, EXPORT_PAIRS, 0, 1.0);
    n = 0;
    for (char *c = got; *c; c++)
        n += *c == '\n';
    cr_assert_eq(n, 7);
    free(got);
    got = export_str(st, EXPORT_PAIRS, 1, NAN);
    cr_assert(strstr(got, "\"annotator\": \"alice\"") && strstr(got, "\"annotator\": \"bob\""));
    free(got);
    store_close(st);
}

Test(export, to_file_is_atomic_and_leaves_no_tmp) {
    Store *st = new_store("a.db");
    imp(st, IMPORT_PROMPTS, FIX "prompts_good.csv");
    char path[160], tmp[170];
    snprintf(path, sizeof path, "%s/out.csv", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp*", path);
    size_t n = 0;
    Err err = {0};
    cr_assert_eq(export_to_file(st, EXPORT_PROMPTS, path, NULL, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 5);
    glob_t g;
    cr_assert_eq(glob(tmp, 0, NULL, &g), GLOB_NOMATCH, "a temporary file was left behind");
    snprintf(path, sizeof path, "%s/no/such/dir/out.csv", tmpdir);
    cr_assert_eq(export_to_file(st, EXPORT_PROMPTS, path, NULL, NULL, &err), ERR_IO);
    cr_assert(strstr(err.msg, "out.csv") != NULL, "%s", err.msg);
    store_close(st);
}

/* Jobs pass relative_to relative to the cwd; paths inside it are still written relative. */
Test(export, relative_to_may_be_a_relative_folder) {
    Store *st = rated_store("a.db");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ExportOptions o;
    export_options_init(&o);
    o.relative_to = "tests/fixtures/import";
    Err err = {0};
    cr_assert_eq(export_write(st, EXPORT_TEMPLATE, f, &o, NULL, &err), 0, "%s", err.msg);
    fclose(f);
    cr_assert(strstr(buf, "\n1,images/1/0.png,,,,,\n") != NULL, "%s", buf);
    free(buf);
    store_close(st);
}

/* Inside one workspace (the store's folder), paths are written relative to the output's folder,
 * with "../" where needed, and such a file imports back to the same images from anywhere. */
Test(export, paths_inside_the_workspace_stay_relative) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cp -r " FIX "images %s/ && cp " FIX "ratings_good.csv %s/ && "
             "mkdir -p %s/out/deep", tmpdir, tmpdir, tmpdir);
    cr_assert_eq(system(cmd), 0);
    Store *st = new_store("ws.db");
    imp(st, IMPORT_PROMPTS, FIX "prompts_good.csv");
    char path[200];
    snprintf(path, sizeof path, "%s/ratings_good.csv", tmpdir);
    imp(st, IMPORT_RATINGS, path);
    snprintf(path, sizeof path, "%s/out/deep/r.csv", tmpdir);
    ExportOptions o;
    export_options_init(&o);
    o.per_annotator = 1;
    char rel[200];
    snprintf(rel, sizeof rel, "%s/out/deep", tmpdir);
    o.relative_to = rel;
    Err err = {0};
    cr_assert_eq(export_to_file(st, EXPORT_RATINGS, path, &o, NULL, &err), 0, "%s", err.msg);
    char *got = slurp(path);
    cr_assert(strstr(got, "\n1,../../images/1/0.png,8,7.5,5,,9,alice\n") != NULL, "%s", got);
    /* importing it again finds the same images: nothing new */
    ImportReport rep;
    cr_assert_eq(import_path(st, IMPORT_RATINGS, path, &missing_ok, &rep, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(rep.images_added, 0);
    cr_assert_eq(rep.ratings_added, 0);
    cr_assert_eq(rep.ratings_unchanged, 29);
    import_report_deinit(&rep);
    free(got);
    store_close(st);
}

/* Exported pairs import back as stored pairs of the same prompts and images. */
Test(export, exported_pairs_import_back) {
    Store *st = rated_store("a.db");
    char path[160];
    snprintf(path, sizeof path, "%s/pairs.jsonl", tmpdir);
    ExportOptions o;
    export_options_init(&o);
    o.relative_to = tmpdir;
    size_t n = 0;
    Err err = {0};
    cr_assert_eq(export_to_file(st, EXPORT_PAIRS, path, &o, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 9);
    ImportReport rep;
    cr_assert_eq(import_path(st, IMPORT_PAIRS, path, &missing_ok, &rep, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(rep.pairs_added, 9);
    cr_assert_eq(rep.prompts_added, 0);
    cr_assert_eq(rep.images_added, 0);
    import_report_deinit(&rep);
    cr_assert_eq(import_path(st, IMPORT_PAIRS, path, &missing_ok, &rep, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(rep.pairs_added, 0);
    cr_assert_eq(rep.pairs_unchanged, 9);
    import_report_deinit(&rep);
    store_close(st);
}
