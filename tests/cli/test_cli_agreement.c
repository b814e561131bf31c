/* Tests for `easel agreement` (src/cli/cli_agreement.c): runs bin/easel on a small store. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static char tmpdir[64];
static char dbpath[128];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "cliagree");
    snprintf(dbpath, sizeof dbpath, "%s/a.db", tmpdir);
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(cli_agreement, .init = setup, .fini = teardown);

/* Run bin/easel with ARGS; stdout into *out (caller frees), stderr into *errout; exit code. */
static int run(const char *args, char **out, char **errout) {
    return support_run(NULL, out, errout, "bin/easel --db %s %s", dbpath, args);
}

/* style: img 10: al 3, bo 7, zoe 4; img 11: al 6; img 12: bo 8, zoe 8.
 * By hand: alpha = 1 − (n−1)·within/(n·SS) = 1 − 4·13/(5·22) = 58/110; the largest complete
 * block is bo, zoe over images 10 and 12. */
static void fill(void) {
    char *out, *err;
    cr_assert_eq(run("init", &out, &err), 0, "%s", err);
    free(out);
    free(err);
    support_sql_exec(dbpath, "INSERT INTO prompts(id, ext_id, text, created_at) VALUES (1, 'p1', 'a cat', 0);"
             "INSERT INTO images(id, prompt_id, path, created_at) VALUES"
             "  (10, 1, 'img/0.png', 0), (11, 1, 'img/1.png', 0), (12, 1, 'img/2.png', 0);"
             "INSERT INTO annotators(id, name, created_at) VALUES (1, 'zoe', 0), (2, 'al', 0),"
             "  (3, 'bo', 0);"
             "WITH t(i, a, v) AS (VALUES"
             "  (10, 2, 3.0), (10, 3, 7.0), (10, 1, 4.0), (11, 2, 6.0), (12, 3, 8.0),"
             "  (12, 1, 8.0))"
             " INSERT INTO ratings(image_id, annotator_id, aspect_id, value, created_at,"
             "  updated_at) SELECT i, a, (SELECT id FROM aspects WHERE name = 'style'), v, 0, 0"
             "  FROM t;");
}

Test(cli_agreement, json_report) {
    fill();
    char *out, *err;
    cr_assert_eq(run("agreement --json", &out, &err), 0, "%s", err);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    cr_assert_not_null(o, "not JSON: %s\n%s", je.text, out);
    json_t *asp = json_object_get(o, "aspects");
    cr_assert_eq(json_array_size(asp), 5);
    json_t *style = json_array_get(asp, 2);
    cr_assert_str_eq(json_string_value(json_object_get(style, "aspect")), "style");
    cr_assert(fabs(json_real_value(json_object_get(style, "alpha")) - 58.0 / 110.0) < 1e-9);
    cr_assert(json_is_null(json_object_get(json_array_get(asp, 0), "alpha")));
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(asp, 0), "alpha_note")),
                     "no image has two ratings");
    json_t *icc = json_object_get(style, "icc");
    cr_assert_eq(json_integer_value(json_object_get(icc, "block_images")), 2);
    json_t *br = json_object_get(icc, "block_annotators");
    cr_assert_str_eq(json_string_value(json_array_get(br, 0)), "bo");
    cr_assert_str_eq(json_string_value(json_array_get(br, 1)), "zoe");
    json_t *dis = json_object_get(style, "disagreement");
    cr_assert_eq(json_array_size(dis), 2);
    json_t *first = json_array_get(dis, 0);
    cr_assert_eq(json_integer_value(json_object_get(first, "image_id")), 10);
    cr_assert_str_eq(json_string_value(json_object_get(first, "path")), "img/0.png");
    cr_assert(json_is_true(json_object_get(first, "high")));
    cr_assert(json_real_value(json_object_get(json_object_get(first, "by_annotator"), "bo")) ==
              7.0);
    json_t *raters = json_object_get(style, "annotators");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(raters, 0), "name")), "al");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(raters, 0), "ratings")), 2);
    json_decref(o);
    free(out);
    free(err);
}

Test(cli_agreement, text_report_one_aspect) {
    fill();
    char *out, *err;
    cr_assert_eq(run("agreement --aspect style --top 1", &out, &err), 0, "%s", err);
    cr_assert(strstr(out, "0.527"), "alpha 58/110 in:\n%s", out);
    cr_assert(strstr(out, "2 img x 2"), "%s", out);
    cr_assert(strstr(out, "img/0.png (10)"), "%s", out);
    cr_assert_null(strstr(out, "img/2.png (12)"), "--top 1 lists one image:\n%s", out);
    cr_assert_null(strstr(out, "spatial"), "%s", out);
    free(out);
    free(err);
}

Test(cli_agreement, errors_and_help) {
    fill();
    char *out, *err;
    cr_assert_eq(run("agreement --aspect colour", &out, &err), 1);
    cr_assert(strstr(err, "easel: no aspect named 'colour'") && strstr(err, "spatial"), "%s",
              err);
    free(out);
    free(err);
    cr_assert_eq(run("agreement --top -3", &out, &err), 2);
    cr_assert(strstr(err, "--top"), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(run("agreement --frobnicate", &out, &err), 2);
    cr_assert(strstr(err, "unknown argument '--frobnicate'"), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(run("agreement --help", &out, &err), 0);
    cr_assert(strstr(out, "example:") && strstr(out, "Krippendorff"), "%s", out);
    free(out);
    free(err);
    snprintf(dbpath, sizeof dbpath, "%s/none.db", tmpdir);
    cr_assert_eq(run("agreement", &out, &err), 1);
    cr_assert(strstr(err, "easel: "), "%s", err);
    cr_assert(access(dbpath, F_OK) != 0, "agreement must not create a store");
    free(out);
    free(err);
}
