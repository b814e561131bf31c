/* Tests for the sources of a tuning run's pairs (src/data/tune_pairs_file.c,
 * tune_pairs_store.c): a pairs.jsonl read as the importer reads it, every image checked to
 * decode, each error naming the file and line, and the store left unchanged. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "store_catalog.h"
#include "support.h"
#include "tune_pairs_src.h"

static char tmpdir[64];
static char dbpath[128];
static Store *st;

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "tunepairs");
    st = support_store_open(tmpdir, "ws.db", dbpath, sizeof dbpath);
}

static void teardown(void) {
    store_close(st);
    support_tmpdir_remove(tmpdir);
}

TestSuite(tune_pairs, .init = setup, .fini = teardown);

/* A W×H PNG of noise at DIR/NAME, from seed VALUE (distinct values = distinct bytes). */
static void png(const char *name, int w, int h, int value) {
    uint8_t *px = malloc((size_t)w * h * 3);
    uint32_t x = (uint32_t)value * 2654435761u + 1;
    for (int i = 0; i < w * h * 3; i++) {
        x = x * 1664525u + 1013904223u;
        px[i] = (uint8_t)(x >> 24);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    Err e = {0};
    cr_assert_eq(image_write_png(path, px, w, h, 3, &e), 0, "%s", e.msg);
    free(px);
}

static const char *pairs_file(const char *text) {
    static char path[256];
    return support_write_file(tmpdir, "pairs.jsonl", text, path, sizeof path);
}

static void three_images(void) {
    png("a.png", 8, 8, 10);
    png("b.png", 8, 8, 60);
    png("c.png", 8, 8, 120);
}

/* The error of loading TEXT: its code, its message into MSG; and the store unchanged. */
static int load_err(const char *text, char *msg, size_t n) {
    char *before = support_import_dump(dbpath);
    TunePairs ps;
    Err e = {0};
    int rc = tune_pairs_load_file_ex(st, pairs_file(text), NULL, NULL, &ps, &e);
    cr_assert_neq(rc, 0, "expected an error for:\n%s", text);
    cr_assert_eq(ps.n, 0);
    cr_assert_null(ps.v);
    snprintf(msg, n, "%s", e.msg);
    cr_log_info("%s", msg);
    char *after = support_import_dump(dbpath);
    cr_assert_str_eq(before, after, "the store changed");
    free(before);
    free(after);
    return rc;
}

static int ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

Test(tune_pairs, good_file_swaps_and_skips) {
    three_images();
    char abs_c[256];
    snprintf(abs_c, sizeof abs_c, "%s/c.png", tmpdir);
    char text[1024];
    snprintf(text, sizeof text,
             "{\"prompt\": \"a red cube\", \"img_pos\": \"a.png\", \"img_neg\": \"b.png\", "
             "\"label\": 1.0}\n"
             "\n"
             "{\"prompt\": \"a red cube\", \"img_pos\": \"a.png\", \"img_neg\": \"%s\", "
             "\"label\": 0.0, \"rating_pos\": 3, \"rating_neg\": 7}\r\n"
             "{\"prompt\": \"a blue cone\", \"img_pos\": \"b.png\", \"img_neg\": \"c.png\", "
             "\"label\": 0.5}\n"
             "{\"prompt\": \"a blue cone\", \"img_pos\": \"c.png\", \"img_neg\": \"b.png\", "
             "\"aspect\": \"style\"}",
             abs_c);
    TunePairs ps;
    TunePairsFileInfo info;
    Err e = {0};
    char *before = support_import_dump(dbpath);
    cr_assert_eq(tune_pairs_load_file_ex(st, pairs_file(text), NULL, &info, &ps, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(ps.n, 3);
    cr_assert_eq(info.lines, 4);
    cr_assert_eq(info.pairs, 3);
    cr_assert_eq(info.neutral, 1);
    cr_assert_eq(info.swapped, 1);
    cr_assert_str_eq(ps.v[0].prompt, "a red cube");
    cr_assert(ends_with(ps.v[0].path_w, "/a.png"), "%s", ps.v[0].path_w);
    cr_assert(ends_with(ps.v[0].path_l, "/b.png"));
    cr_assert_eq(ps.v[0].line, 1);
    cr_assert_float_eq(ps.v[0].weight, 1.0, 0);
    /* label 0.0: img_neg (c, absolute) is the preferred one */
    cr_assert_str_eq(ps.v[1].path_w, abs_c);
    cr_assert(ends_with(ps.v[1].path_l, "/a.png"));
    cr_assert_eq(ps.v[1].line, 3);
    /* no label: 1.0 */
    cr_assert_str_eq(ps.v[2].prompt, "a blue cone");
    cr_assert(ends_with(ps.v[2].path_w, "/c.png"));
    cr_assert_eq(ps.v[2].line, 5);
    for (size_t i = 0; i < ps.n; i++) {
        FILE *f = fopen(ps.v[i].path_w, "rb");
        cr_assert_not_null(f, "%s does not open from the cwd", ps.v[i].path_w);
        fclose(f);
    }
    tune_pairs_free(&ps);
    char *after = support_import_dump(dbpath);
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
    /* the same file without a store, relative paths against another folder */
    cr_assert_eq(tune_pairs_load_file(pairs_file(text), tmpdir, &ps, &e), 0, "%s", e.msg);
    cr_assert_eq(ps.n, 3);
    tune_pairs_free(&ps);
}

Test(tune_pairs, prompt_ids_from_the_store_and_prompts_csv) {
    three_images();
    const char *text =
        "{\"prompt\": \"prompt_7\", \"img_pos\": \"a.png\", \"img_neg\": \"b.png\"}\n"
        "{\"prompt\": \"prompt_8\", \"img_pos\": \"a.png\", \"img_neg\": \"c.png\"}\n";
    char msg[ERR_MSG_LEN];
    /* unknown ids: an error naming the line */
    cr_assert_eq(load_err(text, msg, sizeof msg), ERR_FORMAT);
    cr_assert(strstr(msg, "pairs.jsonl:1: prompt \"prompt_7\" is a prompt id"), "%s", msg);
    Err e = {0};
    cr_assert_eq(store_prompt_add(st, "7", "seven lamps", NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(load_err(text, msg, sizeof msg), ERR_FORMAT);
    cr_assert(strstr(msg, "pairs.jsonl:2: prompt \"prompt_8\""), "%s", msg);
    char p[256];
    support_write_file(tmpdir, "prompts.csv", "prompt_id,prompt\n8,eight owls\n", p, sizeof p);
    TunePairs ps;
    cr_assert_eq(tune_pairs_load_file_ex(st, pairs_file(text), NULL, NULL, &ps, &e), 0, "%s",
                 e.msg);
    cr_assert_str_eq(ps.v[0].prompt, "seven lamps");
    cr_assert_str_eq(ps.v[1].prompt, "eight owls");
    tune_pairs_free(&ps);
}

Test(tune_pairs, missing_image_names_its_line) {
    three_images();
    char msg[ERR_MSG_LEN];
    int rc = load_err("{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"b.png\"}\n"
                      "{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"gone.png\"}\n"
                      "{\"prompt\": \"x\", \"img_pos\": \"nope.png\", \"img_neg\": \"b.png\"}\n",
                      msg, sizeof msg);
    cr_assert_eq(rc, ERR_NOTFOUND);
    cr_assert(strstr(msg, "pairs.jsonl:2: img_neg: no such image file"), "%s", msg);
    cr_assert(strstr(msg, "gone.png"), "%s", msg);
}

Test(tune_pairs, corrupt_image_names_its_line) {
    three_images();
    /* a PNG cut in half: its header reads, its pixels do not decode */
    char src[256], dst[256];
    snprintf(src, sizeof src, "%s/c.png", tmpdir);
    snprintf(dst, sizeof dst, "%s/cut.png", tmpdir);
    png("big.png", 64, 64, 33);
    cr_assert_eq(support_sh("head -c 300 '%s/big.png' > '%s'", tmpdir, dst), 0);
    support_write_file(tmpdir, "text.png", "not an image at all", src, sizeof src);
    char msg[ERR_MSG_LEN];
    int rc = load_err("{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"b.png\"}\n"
                      "{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"c.png\"}\n"
                      "{\"prompt\": \"x\", \"img_pos\": \"cut.png\", \"img_neg\": \"b.png\"}\n"
                      "{\"prompt\": \"x\", \"img_pos\": \"text.png\", \"img_neg\": \"b.png\"}\n",
                      msg, sizeof msg);
    cr_assert_eq(rc, ERR_FORMAT);
    cr_assert(strstr(msg, "pairs.jsonl:3: img_pos: "), "%s", msg);
    cr_assert(strstr(msg, "cut.png"), "%s", msg);
    rc = load_err("{\"prompt\": \"x\", \"img_pos\": \"b.png\", \"img_neg\": \"text.png\"}\n", msg,
                  sizeof msg);
    cr_assert_eq(rc, ERR_FORMAT);
    cr_assert(strstr(msg, "pairs.jsonl:1: img_neg: "), "%s", msg);
}

Test(tune_pairs, malformed_lines_name_their_line) {
    three_images();
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"b.png\"}\n"
         "{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"b.png\"\n",
         "pairs.jsonl:2: not valid JSON"},
        {"[1, 2]\n", "pairs.jsonl:1: each line must be one JSON object"},
        {"\n\n{\"img_pos\": \"a.png\", \"img_neg\": \"b.png\"}\n",
         "pairs.jsonl:3: \"prompt\" is missing"},
        {"{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"b.png\", \"label\": 2}\n",
         "pairs.jsonl:1: label 2 is outside 0..1"},
        {"{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"b.png\", \"label\": \"1\"}\n",
         "pairs.jsonl:1: \"label\" must be a number"},
        {"{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"./a.png\"}\n",
         "pairs.jsonl:1: img_pos and img_neg are the same image (the same file)"},
        {"{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"b.png\", \"label\": 0.5}\n",
         "pairs.jsonl: no pairs to learn from"},
        {"", "pairs.jsonl: no pairs to learn from"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msg[ERR_MSG_LEN];
        cr_assert_eq(load_err(cases[i].text, msg, sizeof msg), ERR_FORMAT, "case %zu", i);
        cr_assert(strstr(msg, cases[i].want), "case %zu: %s", i, msg);
    }
}

Test(tune_pairs, same_bytes_under_two_names) {
    three_images();
    cr_assert_eq(support_sh("cp '%s/a.png' '%s/a2.png'", tmpdir, tmpdir), 0);
    char msg[ERR_MSG_LEN];
    load_err("{\"prompt\": \"x\", \"img_pos\": \"a.png\", \"img_neg\": \"a2.png\"}\n", msg,
             sizeof msg);
    cr_assert(strstr(msg, "pairs.jsonl:1: img_pos and img_neg are the same image (the same "
                          "bytes)"),
              "%s", msg);
}

Test(tune_pairs, not_there) {
    TunePairs ps;
    Err e = {0};
    char p[256];
    snprintf(p, sizeof p, "%s/none.jsonl", tmpdir);
    cr_assert_eq(tune_pairs_load_file(p, NULL, &ps, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "none.jsonl"), "%s", e.msg);
}
