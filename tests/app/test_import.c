/* Tests for src/data/import.c: every importer on good files, idempotence, at least five kinds of
 * bad file per importer (each names FILE:LINE and leaves the store byte-for-byte unchanged),
 * and 8 processes importing ratings into one store at once. */
#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "import.h"
#include "store_catalog.h"
#include "store_pairs.h"
#include "store_ratings.h"
#include "support.h"

#define FIX "tests/fixtures/import/"

static char tmpdir[64];
static char dbpath[128];
static Store *st;

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "import");
    st = support_store_open(tmpdir, "ws.db", dbpath, sizeof dbpath);
}

static void teardown(void) {
    store_close(st);
    support_tmpdir_remove(tmpdir);
}

TestSuite(import, .init = setup, .fini = teardown);

static char *dump(void) { return support_import_dump(dbpath); }

static int64_t count(const char *sql) {
    return (int64_t)support_sql_num(dbpath, sql);
}

/* The good fixtures name some images that are not on disk on purpose (the "missing" path),
 * which issue 13 puts behind --allow-missing: these tests import with it. */
static int imp(ImportKind kind, const char *path, ImportReport *rep, Err *err) {
    ImportOptions o = {.annotator = "tester", .allow_missing = 1};
    return import_path(st, kind, path, &o, rep, err);
}

static void imp_ok(ImportKind kind, const char *path, ImportReport *rep) {
    Err err = {0};
    int rc = imp(kind, path, rep, &err);
    cr_assert_eq(rc, 0, "%s: %s", path, err.msg);
    cr_assert_eq(rep->n_errors, 0);
}

/* Import every good fixture; returns the total of rows added (for idempotence checks). */
static size_t load_good(void) {
    static const struct {
        ImportKind kind;
        const char *path;
    } files[] = {
        {IMPORT_PROMPTS, FIX "prompts_good.csv"},
        {IMPORT_GENERATED, FIX "generated_multi_gpu.csv"},
        {IMPORT_GENERATED, FIX "generated_single_gpu.csv"},
        {IMPORT_IMAGES, FIX "images"},
        {IMPORT_RATINGS, FIX "ratings_good.csv"},
        {IMPORT_PAIRS, FIX "pairs_good.jsonl"},
    };
    size_t added = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        ImportReport rep;
        imp_ok(files[i].kind, files[i].path, &rep);
        added += rep.prompts_added + rep.images_added + rep.images_updated +
                 rep.annotators_added + rep.ratings_added + rep.pairs_added;
        import_report_deinit(&rep);
    }
    return added;
}

Test(import, prompts_with_quotes_newlines_and_utf8) {
    ImportReport rep;
    imp_ok(IMPORT_PROMPTS, FIX "prompts_good.csv", &rep);
    cr_assert_eq(rep.prompts_added, 5);
    import_report_deinit(&rep);
    StorePrompt p;
    cr_assert_eq(store_prompt_by_ext(st, "10", &p, NULL), 0);
    cr_assert_str_eq(p.text, "A cabin, \"cozy\" winter evening");
    store_prompt_deinit(&p);
    cr_assert_eq(store_prompt_by_ext(st, "11", &p, NULL), 0);
    cr_assert_str_eq(p.text, "Two lines:\nsecond line");
    store_prompt_deinit(&p);
    cr_assert_eq(store_prompt_by_ext(st, "12", &p, NULL), 0);
    cr_assert_str_eq(p.text, "Café à Paris — ünïcödé 東京");
    store_prompt_deinit(&p);
}

Test(import, good_files_fill_the_store) {
    load_good();
    cr_assert_eq(count("SELECT count(*) FROM prompts"), 7); /* 5 + "20" + pairs' own prompt */
    /* images: 5 on disk + 20/0 + 10/missing + 10/1 + extra/a + extra/b (not on disk) */
    cr_assert_eq(count("SELECT count(*) FROM images"), 10);
    cr_assert_eq(count("SELECT count(*) FROM images WHERE missing = 1"), 5);
    cr_assert_eq(count("SELECT count(*) FROM images WHERE sha256 IS NOT NULL"), 5);
    cr_assert_eq(count("SELECT width FROM images WHERE path LIKE '%images/2/1.png'"), 11);
    cr_assert_eq(count("SELECT seed FROM images WHERE path LIKE '%images/1/1.png'"), 1);
    cr_assert_eq(count("SELECT count(*) FROM images WHERE generator LIKE '%\"gpu_id\":1%'"), 1);
    cr_assert_eq(count("SELECT count(*) FROM images WHERE generator LIKE "
                       "'%\"guidance_scale\":7.5%' AND generator LIKE "
                       "'%\"num_inference_steps\":50%'"),
                 2);
    cr_assert_eq(count("SELECT count(*) FROM annotators"), 2);
    /* ratings_good.csv: 4+4+4+5 (prompt 1) + 1+1 (prompt 2) + 5+5 (prompt 10) = 29 cells */
    cr_assert_eq(count("SELECT count(*) FROM ratings"), 29);
    cr_assert_eq(count("SELECT count(*) FROM ratings WHERE source = 'import:ratings_good.csv'"),
                 29);
    cr_assert_eq(count("SELECT count(*) FROM pairs"), 4);
    /* label 0.0 was swapped: the preferred image (2/1) is img_pos with label 1 */
    cr_assert_eq(count("SELECT count(*) FROM pairs p JOIN images i ON i.id = p.img_pos"
                       " WHERE i.path LIKE '%images/2/1.png' AND p.label = 1.0"
                       " AND p.rating_pos = 4.4 AND p.aspect = 'spatial'"),
                 1);
    cr_assert_eq(count("SELECT count(*) FROM pairs WHERE aspect = ''"), 3);
    cr_assert_eq(count("SELECT count(*) FROM prompts WHERE ext_id LIKE 'text-%'"), 1);
}

Test(import, importing_twice_changes_nothing) {
    cr_assert_gt(load_good(), 0);
    char *before = dump();
    cr_assert_eq(load_good(), 0);
    char *after = dump();
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
}

Test(import, missing_images_warn_and_are_flagged) {
    ImportReport rep;
    imp_ok(IMPORT_PROMPTS, FIX "prompts_good.csv", &rep);
    import_report_deinit(&rep);
    imp_ok(IMPORT_RATINGS, FIX "ratings_good.csv", &rep);
    cr_assert_eq(rep.images_missing, 1);
    cr_assert_eq(rep.n_warnings, 1);
    cr_assert(strstr(rep.warnings[0], "ratings_good.csv:9:") != NULL, "%s", rep.warnings[0]);
    cr_assert(strstr(rep.warnings[0], "missing.png") != NULL, "%s", rep.warnings[0]);
    import_report_deinit(&rep);
}

Test(import, annotator_from_option_when_no_column) {
    ImportReport rep;
    imp_ok(IMPORT_PROMPTS, FIX "prompts_good.csv", &rep);
    import_report_deinit(&rep);
    char path[160];
    support_write_file(tmpdir, "r.csv",
                       "prompt_id,image_path,spatial_rating,style_rating\n"
                       "1,x.png,7.25,\n2,y.png,,0\n",
                       path, sizeof path);
    ImportOptions o = {.annotator = "zed", .allow_missing = 1};
    Err err = {0};
    cr_assert_eq(import_path(st, IMPORT_RATINGS, path, &o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.ratings_added, 2);
    import_report_deinit(&rep);
    cr_assert_eq(count("SELECT count(*) FROM ratings r JOIN annotators a ON a.id = r.annotator_id"
                       " WHERE a.name = 'zed'"),
                 2);
    /* a relative path next to the CSV is stored relative to the store's folder */
    cr_assert_eq(count("SELECT count(*) FROM images WHERE path = 'x.png'"), 1);
}

/* ---- bad files: each names file:line (or the folder) and changes nothing ------------------- */

typedef struct Bad {
    ImportKind kind;
    const char *file;     /* under FIX "bad/" */
    const char *where;    /* the message starts with this after the path prefix */
    const char *what;     /* and contains this */
} Bad;

static const Bad bad_files[] = {
    {IMPORT_PROMPTS, "prompts_no_header_cols.csv", ":1:", "prompt_id and prompt"},
    {IMPORT_PROMPTS, "prompts_empty_id.csv", ":2:", "prompt_id is empty"},
    {IMPORT_PROMPTS, "prompts_dup_id.csv", ":4:", "appears again (line 2)"},
    {IMPORT_PROMPTS, "prompts_store_conflict.csv", ":3:", "already in the store"},
    {IMPORT_PROMPTS, "prompts_bad_quote.csv", ":3:", "malformed CSV"},
    {IMPORT_PROMPTS, "prompts_bad_utf8.csv", ":3:", "not valid UTF-8"},
    {IMPORT_PROMPTS, "prompts_unterminated.csv", ":2:", "never closed"},
    {IMPORT_PROMPTS, "prompts_empty.csv", ":", "empty"},
    {IMPORT_PROMPTS, "prompts_no_text.csv", ":3:", "has no text"},
    {IMPORT_RATINGS, "ratings_out_of_range.csv", ":3:", "style_rating \"11\" is outside 0..10"},
    {IMPORT_RATINGS, "ratings_not_number.csv", ":2:", "spatial_rating \"7,5\" is not a number"},
    {IMPORT_RATINGS, "ratings_width.csv", ":3:", "5 fields, but the header has 8"},
    {IMPORT_RATINGS, "ratings_unknown_aspect.csv", ":1:", "no aspect \"colour\""},
    {IMPORT_RATINGS, "ratings_contradiction.csv", ":4:", "on line 2"},
    {IMPORT_RATINGS, "ratings_conflict.csv", ":3:", "already rated it 8, not 3"},
    {IMPORT_RATINGS, "ratings_no_path_col.csv", ":1:", "prompt_id and image_path"},
    {IMPORT_RATINGS, "ratings_two_prompts.csv", ":3:", "has prompt_id on line 2"},
    {IMPORT_RATINGS, "ratings_store_prompt.csv", ":2:", "belongs to another prompt"},
    {IMPORT_PAIRS, "pairs_bad_json.jsonl", ":2:", "not valid JSON"},
    {IMPORT_PAIRS, "pairs_missing.jsonl", ":1:", "\"img_neg\" is missing"},
    {IMPORT_PAIRS, "pairs_label.jsonl", ":1:", "label 2 is outside 0..1"},
    {IMPORT_PAIRS, "pairs_aspect.jsonl", ":1:", "aspect \"colour\""},
    {IMPORT_PAIRS, "pairs_same.jsonl", ":1:", "the same image"},
    {IMPORT_PAIRS, "pairs_array.jsonl", ":1:", "one JSON object"},
    {IMPORT_PAIRS, "pairs_label_type.jsonl", ":1:", "\"label\" must be a number"},
    {IMPORT_PAIRS, "pairs_label_conflict.jsonl", ":1:", "with label 1, not 0.7"},
    {IMPORT_GENERATED, "gen_missing_cols.csv", ":1:", "prompt_id, seed, path and prompt"},
    {IMPORT_GENERATED, "gen_bad_seed.csv", ":2:", "seed \"abc\" is not a whole number"},
    {IMPORT_GENERATED, "gen_prompt_text.csv", ":3:", "different prompt text on line 2"},
    {IMPORT_GENERATED, "gen_bad_width.csv", ":2:", "width \"-5\""},
    {IMPORT_GENERATED, "gen_bad_guidance.csv", ":2:", "guidance_scale \"high\""},
    {IMPORT_GENERATED, "gen_store_prompt.csv", ":3:", "already in the store with another text"},
    {IMPORT_GENERATED, "gen_seed_conflict.csv", ":2:", "seed 0 in the store, not 7"},
    {IMPORT_IMAGES, "images_unknown_prompt", ": 99/", "no prompt with prompt_id \"99\""},
    {IMPORT_IMAGES, "images_no_images", ":", "no images found"},
    {IMPORT_IMAGES, "images_loose", ":", "no images found"},
    {IMPORT_IMAGES, "images_nonexistent", ":", "not a folder"},
    {IMPORT_IMAGES, "../prompts_good.csv", ":", "not a folder"},
};

Test(import, bad_files_name_the_line_and_change_nothing) {
    load_good();
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        const Bad *b = &bad_files[i];
        char path[256];
        snprintf(path, sizeof path, FIX "bad/%s", b->file);
        char *before = dump();
        ImportReport rep;
        Err err = {0};
        int rc = imp(b->kind, path, &rep, &err);
        cr_assert_neq(rc, 0, "%s was accepted", b->file);
        cr_assert_gt(rep.n_errors, 0, "%s: no problem listed", b->file);
        char want[300];
        snprintf(want, sizeof want, "%s%s", path, b->where);
        cr_assert(strncmp(err.msg, want, strlen(want)) == 0, "%s: message '%s' should start '%s'",
                  b->file, err.msg, want);
        cr_assert(strstr(err.msg, b->what) != NULL, "%s: message '%s' lacks '%s'", b->file,
                  err.msg, b->what);
        char *after = dump();
        cr_assert_str_eq(before, after, "%s changed the store", b->file);
        free(before);
        free(after);
        import_report_deinit(&rep);
    }
}

Test(import, every_problem_is_listed) {
    load_good();
    ImportReport rep;
    Err err = {0};
    cr_assert_neq(imp(IMPORT_PROMPTS, FIX "bad/prompts_dup_id.csv", &rep, &err), 0);
    import_report_deinit(&rep);
    char path[160];
    support_write_file(tmpdir, "many.csv",
                       "prompt_id,image_path,spatial_rating,icono_rating,style_rating,"
                       "fidelity_rating,"
                       "material_rating\n1,a.png,11,,,,\n1,b.png,,-1,,,\n1,c.png,,,abc,,\n",
                       path, sizeof path);
    cr_assert_eq(imp(IMPORT_RATINGS, path, &rep, &err), ERR_FORMAT);
    cr_assert_eq(rep.n_errors, 3);
    cr_assert(strstr(rep.errors[1], "many.csv:3: icono_rating \"-1\"") != NULL, "%s",
              rep.errors[1]);
    cr_assert(strstr(err.msg, "3 problems") != NULL, "%s", err.msg);
    import_report_deinit(&rep);
}

/* The rating columns a store takes come from its aspects table, also in the error that says
 * none were found. */
Test(import, no_rating_columns_names_the_store_aspects) {
    support_sql_exec(dbpath, "INSERT INTO aspects(name, position, rubric)"
                             " VALUES ('lighting', 5, 'Light and shadow')");
    char path[160];
    support_write_file(tmpdir, "nocols.csv",
                       "prompt_id,image_path,note\n1,a.png,x\n",
                       path, sizeof path);
    ImportReport rep;
    Err err = {0};
    cr_assert_eq(imp(IMPORT_RATINGS, path, &rep, &err), ERR_FORMAT);
    cr_assert_geq(rep.n_errors, 1);
    cr_assert(strstr(rep.errors[0], "no rating columns") &&
              strstr(rep.errors[0], "spatial_rating,") &&
              strstr(rep.errors[0], ",lighting_rating"), "%s", rep.errors[0]);
    import_report_deinit(&rep);
}

static void note_done(void *user, double done, double total, const char *unit) {
    (void)total;
    (void)unit;
    *(size_t *)user = (size_t)done;
}

static int cancel_at_3(void *user) { return *(size_t *)user >= 3; }

Test(import, cancel_writes_nothing) {
    ImportReport rep;
    imp_ok(IMPORT_PROMPTS, FIX "prompts_good.csv", &rep);
    import_report_deinit(&rep);
    char *before = dump();
    size_t seen = 0;
    ImportOptions o = {.progress = {.progress = note_done, .cancelled = cancel_at_3, .user = &seen},
                       .allow_missing = 1};
    Err err = {0};
    /* progress is reported every 64 rows and at the end: the end report cancels */
    cr_assert_eq(import_path(st, IMPORT_RATINGS, FIX "ratings_good.csv", &o, &rep, &err),
                 ERR_CANCELLED);
    cr_assert_eq(seen, 8);
    import_report_deinit(&rep);
    char *after = dump();
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
}

/* ---- 8 processes, one store ---------------------------------------------------------------- */

#define N_PROC 8
#define N_IMG 25

Test(import, eight_processes_import_ratings_at_once) {
    ImportReport rep;
    imp_ok(IMPORT_PROMPTS, FIX "prompts_good.csv", &rep);
    import_report_deinit(&rep);
    store_close(st);
    st = NULL;
    /* every process rates the same 25 new images (so they race to add them) as its own
     * annotator, plus 25 images of its own */
    for (int p = 0; p < N_PROC; p++) {
        char path[160];
        snprintf(path, sizeof path, "%s/r%d.csv", tmpdir, p);
        FILE *f = fopen(path, "w");
        fputs("prompt_id,image_path,spatial_rating,icono_rating,style_rating,fidelity_rating,"
              "material_rating,annotator\n", f);
        for (int i = 0; i < N_IMG; i++) {
            fprintf(f, "1,shared/%d.png,%d,%d,%d,%d,%d.5,w%d\n", i, p, i % 11, (p + i) % 11, 3,
                    4, p);
            fprintf(f, "2,own%d/%d.png,1,2,3,4,5,w%d\n", p, i, p);
        }
        fclose(f);
    }
    pid_t pids[N_PROC];
    for (int p = 0; p < N_PROC; p++) {
        pids[p] = fork();
        cr_assert_geq(pids[p], 0);
        if (pids[p] == 0) {
            Err err = {0};
            Store *s = store_open(dbpath, &err);
            if (!s)
                _exit(10);
            char path[160];
            snprintf(path, sizeof path, "%s/r%d.csv", tmpdir, p);
            ImportReport r;
            ImportOptions o = {.allow_missing = 1};
            int rc = import_path(s, IMPORT_RATINGS, path, &o, &r, &err);
            int ok = rc == 0 && r.ratings_added == 2 * N_IMG * 5;
            if (!ok)
                fprintf(stderr, "process %d: %s\n", p, err.msg);
            import_report_deinit(&r);
            store_close(s);
            _exit(ok ? 0 : 1);
        }
    }
    for (int p = 0; p < N_PROC; p++) {
        int status;
        cr_assert_eq(waitpid(pids[p], &status, 0), pids[p]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "process %d failed (%d)", p,
                  status);
    }
    cr_assert_eq(count("SELECT count(*) FROM ratings"), N_PROC * 2 * N_IMG * 5);
    cr_assert_eq(count("SELECT count(*) FROM images"), N_IMG + N_PROC * N_IMG);
    cr_assert_eq(count("SELECT count(*) FROM annotators"), N_PROC);
    cr_assert_eq(count("SELECT count(DISTINCT annotator_id) FROM ratings r JOIN images i"
                       " ON i.id = r.image_id WHERE i.path LIKE 'shared/%'"),
                 N_PROC);
    Err err = {0};
    st = store_open(dbpath, &err);
    cr_assert_not_null(st);
}

/* ---- corrupted copies of the good files: never a crash, never half an import -------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

/* One random edit: flip a byte, insert a troublesome character, cut a range, or truncate. */
static size_t mutate(char *buf, size_t len, size_t cap) {
    static const char tricky[] = "\",\n\r\xff\xc3{}:0-9.e ";
    uint32_t op = rnd(4), at = len ? rnd((uint32_t)len) : 0;
    if (op == 0 && len) {
        buf[at] ^= (char)(1 + rnd(255));
    } else if (op == 1 && len + 1 < cap) {
        memmove(buf + at + 1, buf + at, len - at);
        buf[at] = tricky[rnd(sizeof tricky - 1)];
        len++;
    } else if (op == 2 && len) {
        uint32_t n = 1 + rnd(20);
        if (at + n > len)
            n = (uint32_t)(len - at);
        memmove(buf + at, buf + at + n, len - at - n);
        len -= n;
    } else {
        len = at;
    }
    return len;
}

Test(import, corrupted_files_import_whole_or_not_at_all) {
    load_good();
    static const struct {
        ImportKind kind;
        const char *path;
    } files[] = {
        {IMPORT_PROMPTS, FIX "prompts_good.csv"},
        {IMPORT_RATINGS, FIX "ratings_good.csv"},
        {IMPORT_GENERATED, FIX "generated_single_gpu.csv"},
        {IMPORT_PAIRS, FIX "pairs_good.jsonl"},
    };
    char out[160];
    snprintf(out, sizeof out, "%s/fuzz/in.txt", tmpdir);
    char dir[160];
    snprintf(dir, sizeof dir, "%s/fuzz", tmpdir);
    mkdir(dir, 0755);
    /* the images the files name, next to the mutated copy */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "cp -r " FIX "images %s/", dir);
    cr_assert_eq(system(cmd), 0);
    int n_failed = 0, n_ok = 0;
    for (int round = 0; round < 200; round++) {
        size_t fi = (size_t)round % (sizeof files / sizeof files[0]);
        size_t len;
        char *buf = read_all(files[fi].path, &len);
        for (int k = 0, n = 1 + (int)rnd(3); k < n; k++)
            len = mutate(buf, len, 1 << 16);
        FILE *f = fopen(out, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        free(buf);
        char *before = dump();
        ImportReport rep;
        Err err = {0};
        int rc = imp(files[fi].kind, out, &rep, &err);
        char *after = dump();
        if (rc) {
            n_failed++;
            cr_assert_gt(rep.n_errors, 0, "round %d: failed without a problem listed", round);
            cr_assert(strncmp(err.msg, out, strlen(out)) == 0, "round %d: '%s' names no file",
                      round, err.msg);
            cr_assert_str_eq(before, after, "round %d: a failed import changed the store", round);
        } else {
            n_ok++;
        }
        import_report_deinit(&rep);
        free(before);
        free(after);
    }
    cr_assert_gt(n_failed, 20); /* the mutations do reach the error paths */
    cr_assert_gt(n_ok, 0);
}
