/* Tests for the sources of a tuning run's pairs (src/data/tune_pairs_file.c,
 * tune_pairs_store.c): a pairs.jsonl read as the importer reads it, every image checked to
 * decode, each error naming the file and line, and the store left unchanged. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fmt_safetensors.h"
#include "image.h"
#include "store_catalog.h"
#include "store_ratings.h"
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
    support_write_file(tmpdir, "prompts.csv", "id,text\n8,eight owls\n", p, sizeof p);
    cr_assert_eq(load_err(text, msg, sizeof msg), ERR_FORMAT);
    cr_assert(strstr(msg, "pairs.jsonl:2: ") && strstr(msg, "prompts.csv: the first line must "
                                                              "be the header prompt_id,prompt"),
              "%s", msg);
    support_write_file(tmpdir, "prompts.csv", "prompt_id,prompt\n9,nine\n8,eight owls\n", p,
                       sizeof p);
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

/* ---- pairs from the store ---- */


static int64_t img_a, img_b, img_c;

/* Prompt 1 "three boats": images a, b, c; prompt 2 "one tree": image d (never paired).
 * One annotator:      spatial  icono
 *   a                    8       2
 *   b                    6       5
 *   c                    7       -
 *   d                    5       5      */
static void rated_store(void) {
    png("a.png", 8, 8, 10);
    png("b.png", 8, 8, 60);
    png("c.png", 8, 8, 120);
    png("d.png", 8, 8, 200);
    Err e = {0};
    int64_t p1, p2, ann;
    cr_assert_eq(store_prompt_add(st, "1", "three boats", &p1, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(store_prompt_add(st, "2", "one tree", &p2, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(store_annotator_ensure(st, "ann", &ann, &e), 0, "%s", e.msg);
    StoreAspect *asp;
    size_t n_asp;
    cr_assert_eq(store_aspects_list(st, &asp, &n_asp, &e), 0, "%s", e.msg);
    cr_assert_str_eq(asp[0].name, "spatial");
    cr_assert_str_eq(asp[1].name, "icono");
    int64_t spatial = asp[0].id, icono = asp[1].id;
    store_aspects_free(asp, n_asp);
    const struct {
        const char *name;
        int64_t prompt;
        double s, i;
        int64_t *id;
    } imgs[] = {{"a.png", p1, 8, 2, &img_a}, {"b.png", p1, 6, 5, &img_b},
                {"c.png", p1, 7, NAN, &img_c}, {"d.png", p2, 5, 5, NULL}};
    for (size_t k = 0; k < 4; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", tmpdir, imgs[k].name);
        char *stored = store_path_to_stored(st, path);
        StoreImage im = {.prompt_id = imgs[k].prompt, .path = stored};
        int64_t id;
        cr_assert_eq(store_image_add(st, &im, &id, &e), 0, "%s", e.msg);
        free(stored);
        if (imgs[k].id)
            *imgs[k].id = id;
        cr_assert_eq(store_rating_set(st, id, ann, spatial, imgs[k].s, NAN, "test", NULL, &e), 0,
                     "%s", e.msg);
        if (!isnan(imgs[k].i))
            cr_assert_eq(store_rating_set(st, id, ann, icono, imgs[k].i, NAN, "test", NULL, &e),
                         0, "%s", e.msg);
    }
}

/* PS holds exactly the pairs W[i] > L[i] (store ids), in some order. */
static void expect_pairs(const TunePairs *ps, const int64_t *w, const int64_t *l, size_t n) {
    cr_assert_eq(ps->n, n, "%zu pairs, expected %zu", ps->n, n);
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t j = 0; j < ps->n; j++)
            found += ps->v[j].image_w == w[i] && ps->v[j].image_l == l[i];
        cr_assert_eq(found, 1, "pair %lld > %lld not found once", (long long)w[i],
                     (long long)l[i]);
    }
    for (size_t j = 0; j < ps->n; j++) {
        cr_assert_str_eq(ps->v[j].prompt, "three boats");
        cr_assert_eq(ps->v[j].line, 0);
        FILE *f = fopen(ps->v[j].path_w, "rb");
        cr_assert_not_null(f, "%s", ps->v[j].path_w);
        fclose(f);
        const char *want = ps->v[j].image_w == img_a ? "/a.png"
                           : ps->v[j].image_w == img_b ? "/b.png"
                                                       : "/c.png";
        cr_assert(ends_with(ps->v[j].path_w, want), "%s", ps->v[j].path_w);
    }
}

Test(tune_pairs, store_per_aspect) {
    rated_store();
    char *before = support_import_dump(dbpath);
    TunePairs ps;
    Err e = {0};
    /* spatial: a 8 > c 7 > b 6 */
    cr_assert_eq(tune_pairs_from_store(st, "spatial", NULL, 0.5, &ps, &e), 0, "%s", e.msg);
    expect_pairs(&ps, (int64_t[]){img_a, img_a, img_c}, (int64_t[]){img_b, img_c, img_b}, 3);
    tune_pairs_free(&ps);
    /* min diff 1.5 keeps only a > b (2) */
    cr_assert_eq(tune_pairs_from_store(st, "spatial", NULL, 1.5, &ps, &e), 0, "%s", e.msg);
    expect_pairs(&ps, (int64_t[]){img_a}, (int64_t[]){img_b}, 1);
    tune_pairs_free(&ps);
    /* icono: b 5 > a 2; c has none */
    cr_assert_eq(tune_pairs_from_store(st, "icono", NULL, 0.5, &ps, &e), 0, "%s", e.msg);
    expect_pairs(&ps, (int64_t[]){img_b}, (int64_t[]){img_a}, 1);
    tune_pairs_free(&ps);
    /* nobody rated style */
    cr_assert_eq(tune_pairs_from_store(st, "style", NULL, 0.5, &ps, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "no pairs on style"), "%s", e.msg);
    cr_assert_eq(tune_pairs_from_store(st, "colour", NULL, 0.5, &ps, &e), ERR_USAGE);
    cr_assert(strstr(e.msg, "no aspect \"colour\"") && strstr(e.msg, "spatial, icono"), "%s",
              e.msg);
    char *after = support_import_dump(dbpath);
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
}

Test(tune_pairs, store_combined_with_head_weights) {
    rated_store();
    TunePairs ps;
    Err e = {0};
    /* equal: a (8+2)/2 = 5 < b (6+5)/2 = 5.5 -> b > a; a, c and b, c on spatial alone */
    cr_assert_eq(tune_pairs_from_store(st, NULL, NULL, 0.5, &ps, &e), 0, "%s", e.msg);
    expect_pairs(&ps, (int64_t[]){img_b, img_a, img_c}, (int64_t[]){img_a, img_c, img_b}, 3);
    tune_pairs_free(&ps);
    /* equal head weights give the same pairs as no weights */
    double eq[TUNE_N_HEADS] = {0.2, 0.2, 0.2, 0.2, 0.2};
    cr_assert_eq(tune_pairs_from_store(st, NULL, eq, 0.5, &ps, &e), 0, "%s", e.msg);
    expect_pairs(&ps, (int64_t[]){img_b, img_a, img_c}, (int64_t[]){img_a, img_c, img_b}, 3);
    tune_pairs_free(&ps);
    /* spatial weighs 3 times the others: softmax(ln 3, 0, 0, 0, 0) = (3, 1, 1, 1, 1) / 7;
     * a (3·8 + 2)/4 = 6.5 > b (3·6 + 5)/4 = 5.75 (diff 0.75): the preference flips */
    double w[TUNE_N_HEADS] = {log(3.0), 0, 0, 0, 0};
    double p[TUNE_N_HEADS];
    tune_head_softmax(w, p);
    cr_assert_float_eq(p[0], 3.0 / 7, 1e-12);
    cr_assert_float_eq(p[4], 1.0 / 7, 1e-12);
    cr_assert_eq(tune_pairs_from_store(st, NULL, w, 0.5, &ps, &e), 0, "%s", e.msg);
    expect_pairs(&ps, (int64_t[]){img_a, img_a, img_c}, (int64_t[]){img_b, img_c, img_b}, 3);
    tune_pairs_free(&ps);
    /* min diff 0.8 drops a > b (0.75) */
    cr_assert_eq(tune_pairs_from_store(st, NULL, w, 0.8, &ps, &e), 0, "%s", e.msg);
    expect_pairs(&ps, (int64_t[]){img_a, img_c}, (int64_t[]){img_c, img_b}, 2);
    tune_pairs_free(&ps);
    cr_assert_eq(tune_pairs_from_store(st, "spatial", w, 0.5, &ps, &e), ERR_USAGE);
}

Test(tune_pairs, store_image_gone_or_broken) {
    rated_store();
    char *before = support_import_dump(dbpath);
    char p[256];
    snprintf(p, sizeof p, "%s/c.png", tmpdir);
    cr_assert_eq(unlink(p), 0);
    TunePairs ps;
    Err e = {0};
    cr_assert_eq(tune_pairs_from_store(st, "spatial", NULL, 0.5, &ps, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "c.png") && strstr(e.msg, "not on disk"), "%s", e.msg);
    cr_assert_eq(ps.n, 0);
    support_write_file(tmpdir, "c.png", "garbage", p, sizeof p);
    cr_assert_eq(tune_pairs_from_store(st, "spatial", NULL, 0.5, &ps, &e), ERR_FORMAT);
    cr_assert(strstr(e.msg, "c.png") && strstr(e.msg, "decode"), "%s", e.msg);
    /* icono pairs do not name c: fine */
    cr_assert_eq(tune_pairs_from_store(st, "icono", NULL, 0.5, &ps, &e), 0, "%s", e.msg);
    tune_pairs_free(&ps);
    char *after = support_import_dump(dbpath);
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
}

Test(tune_pairs, reward_head_weights) {
    const float hw[TUNE_N_HEADS] = {0.5f, -1.0f, 0.25f, 2.0f, 0.125f};
    const float other[4] = {1, 2, 3, 4};
    char dir[256], file[300];
    snprintf(dir, sizeof dir, "%s/final", tmpdir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    Err e = {0};
    SafeTensorsWriter *w = safetensors_writer_new();
    int64_t s5 = TUNE_N_HEADS, s4 = 4;
    cr_assert_eq(safetensors_writer_add(w, "heads.spatial.layers.8.bias", ST_F32, 1, &s4, other,
                                        &e), 0);
    cr_assert_eq(safetensors_writer_add(w, "head_weights", ST_F32, 1, &s5, hw, &e), 0);
    cr_assert_eq(safetensors_writer_save(w, file, &e), 0, "%s", e.msg);
    safetensors_writer_free(w);
    double got[TUNE_N_HEADS];
    cr_assert_eq(tune_reward_head_weights(dir, got, &e), 0, "%s", e.msg);
    for (int i = 0; i < TUNE_N_HEADS; i++)
        cr_assert_float_eq(got[i], hw[i], 0);
    memset(got, 0, sizeof got);
    cr_assert_eq(tune_reward_head_weights(file, got, &e), 0, "%s", e.msg);
    cr_assert_float_eq(got[3], 2.0, 0);
    /* a file without them */
    w = safetensors_writer_new();
    cr_assert_eq(safetensors_writer_add(w, "x", ST_F32, 1, &s4, other, &e), 0);
    char bad[300];
    snprintf(bad, sizeof bad, "%s/other.safetensors", tmpdir);
    cr_assert_eq(safetensors_writer_save(w, bad, &e), 0, "%s", e.msg);
    safetensors_writer_free(w);
    cr_assert_eq(tune_reward_head_weights(bad, got, &e), ERR_FORMAT);
    cr_assert(strstr(e.msg, "other.safetensors: no head_weights"), "%s", e.msg);
    cr_assert_neq(tune_reward_head_weights(tmpdir, got, &e), 0);
    cr_assert(strstr(e.msg, "not a reward checkpoint folder"), "%s", e.msg);
}
