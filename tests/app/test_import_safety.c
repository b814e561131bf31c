/* Tests for the importers' hardening (issue 13): one transaction or nothing when the disk
 * fills up, image paths that do not exist or do not decode, corrupt and symlinked image
 * files, inputs that are not regular files, NUL bytes and numbers that do not fit, pairs of
 * an image with itself and contradicting pairs, the same bytes under two paths, and ratings
 * whose prompts the store does not know yet. */
#include <criterion/criterion.h>
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
#include "support.h"

#define FIX "tests/fixtures/import/"

static char tmpdir[64];
static char dbpath[160];
static Store *st;

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "impsafe");
    st = support_store_open(tmpdir, "ws.db", dbpath, sizeof dbpath);
}

static void teardown(void) {
    store_close(st);
    st = NULL;
    support_tmpdir_remove(tmpdir);
}

TestSuite(import_safety, .init = setup, .fini = teardown);

static char *dump_of(const char *db_path) { return support_import_dump(db_path); }

static char *dump(void) { return dump_of(dbpath); }

static int64_t count(const char *sql) { return (int64_t)support_sql_num(dbpath, sql); }

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static char *tpath(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int imp_opts(ImportKind kind, const char *path, int allow_missing, ImportReport *rep,
                    Err *err) {
    ImportOptions o = {.annotator = "tester", .allow_missing = allow_missing};
    return import_path(st, kind, path, &o, rep, err);
}

static void imp_ok(ImportKind kind, const char *path) {
    ImportReport rep;
    Err err = {0};
    int rc = imp_opts(kind, path, 0, &rep, &err);
    cr_assert_eq(rc, 0, "%s: %s", path, err.msg);
    import_report_deinit(&rep);
}

/* Import that must fail: returns the message (static), checks nothing changed. */
static const char *imp_fails(ImportKind kind, const char *path) {
    static Err err;
    memset(&err, 0, sizeof err);
    char *before = dump();
    ImportReport rep;
    int rc = imp_opts(kind, path, 0, &rep, &err);
    char *after = dump();
    cr_assert_neq(rc, 0, "%s was accepted", path);
    cr_assert_gt(rep.n_errors, 0);
    cr_assert_str_eq(before, after, "%s: a failed import changed the store", path);
    free(before);
    free(after);
    import_report_deinit(&rep);
    return err.msg;
}

/* A copy of the fixture images in TMPDIR/images and the prompts they belong to. */
static void prompts_and_images(void) {
    imp_ok(IMPORT_PROMPTS, FIX "prompts_good.csv");
    cr_assert_eq(support_sh("cp -r " FIX "images '%s/images'", tmpdir), 0);
}

/* ---- disk full: one transaction or nothing ------------------------------------------------- */

Test(import_safety, disk_full_leaves_the_store_unchanged_and_says_so) {
    char mnt[160];
    snprintf(mnt, sizeof mnt, "%s/small", tmpdir);
    cr_assert_eq(mkdir(mnt, 0755), 0);
    if (support_sh("mount -t tmpfs -o size=640k tmpfs '%s' 2>/dev/null", mnt) != 0)
        cr_skip_test("cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN)");
    char db[200];
    snprintf(db, sizeof db, "%s/full.db", mnt);
    Err err = {0};
    Store *s = store_open(db, &err);
    if (!s) {
        support_sh("umount '%s'", mnt);
        cr_assert_fail("%s", err.msg);
    }
    /* something in the store first, so "unchanged" means more than "empty" */
    ImportReport rep;
    int rc = import_path(s, IMPORT_PROMPTS, FIX "prompts_good.csv", NULL, &rep, &err);
    import_report_deinit(&rep);
    cr_assert_eq(rc, 0, "%s", err.msg);
    /* ~3 MB of prompts into a 640 KB file system */
    FILE *f = fopen(tpath("big.csv"), "w");
    fputs("prompt_id,prompt\n", f);
    for (int i = 0; i < 6000; i++) {
        fprintf(f, "big%d,", i);
        for (int k = 0; k < 500; k++)
            fputc('a' + (i + k) % 26, f);
        fputc('\n', f);
    }
    fclose(f);
    char *before = dump_of(db);
    rc = import_path(s, IMPORT_PROMPTS, tpath("big.csv"), NULL, &rep, &err);
    store_close(s);
    char *after = dump_of(db);
    support_sh("umount '%s'", mnt);
    cr_assert_neq(rc, 0, "an import larger than the disk succeeded");
    cr_assert(strstr(err.msg, "disk is full") != NULL, "the message hides the cause: %s",
              err.msg);
    cr_assert(strstr(err.msg, "nothing was imported") != NULL, "%s", err.msg);
    cr_assert_lt(rep.n_errors, 3, "bogus follow-up problems: %zu, first %s", rep.n_errors,
                 rep.n_errors ? rep.errors[0] : "");
    cr_assert_str_eq(before, after, "the failed import left rows in the store");
    import_report_deinit(&rep);
    free(before);
    free(after);
}

/* ---- image paths that do not exist or do not decode ------------------------------------------ */

Test(import_safety, missing_image_refused_unless_allow_missing) {
    prompts_and_images();
    write_file(tpath("r.csv"), "prompt_id,image_path,spatial_rating\n"
                               "1,images/1/0.png,5\n"
                               "1,images/1/typo.png,6\n");
    const char *msg = imp_fails(IMPORT_RATINGS, tpath("r.csv"));
    char want[300];
    snprintf(want, sizeof want, "%s:3: image_path", tpath("r.csv"));
    cr_assert(strncmp(msg, want, strlen(want)) == 0, "%s", msg);
    cr_assert(strstr(msg, "typo.png") && strstr(msg, "--allow-missing"), "%s", msg);
    /* asked to keep it: the old behaviour, a warning and a "missing" image */
    ImportReport rep;
    Err err = {0};
    cr_assert_eq(imp_opts(IMPORT_RATINGS, tpath("r.csv"), 1, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.images_missing, 1);
    cr_assert_eq(rep.n_warnings, 1);
    cr_assert(strstr(rep.warnings[0], ":3:") && strstr(rep.warnings[0], "typo.png"), "%s",
              rep.warnings[0]);
    import_report_deinit(&rep);
    cr_assert_eq(count("SELECT count(*) FROM images WHERE missing = 1"), 1);
}

Test(import_safety, undecodable_image_in_a_ratings_file_is_refused) {
    prompts_and_images();
    cr_assert_eq(support_sh("head -c 60 '%s/images/1/0.png' > '%s/images/1/cut.png'", tmpdir,
                            tmpdir),
                 0);
    write_file(tpath("r.csv"), "prompt_id,image_path,spatial_rating\n"
                               "1,images/1/1.png,5\n"
                               "1,images/1/cut.png,6\n");
    const char *msg = imp_fails(IMPORT_RATINGS, tpath("r.csv"));
    cr_assert(strstr(msg, "r.csv:3:") && strstr(msg, "cut.png") && strstr(msg, "decode"), "%s",
              msg);
}

/* One bad file in a copy of the image folder: the folder import is refused, naming it and
 * saying why, and nothing is written. */
static void folder_with(const char *make_bad, const char *name, const char *why) {
    prompts_and_images();
    cr_assert_eq(support_sh("cd '%s/images/1' && %s", tmpdir, make_bad), 0, "%s", make_bad);
    const char *msg = imp_fails(IMPORT_IMAGES, tpath("images"));
    cr_assert(strstr(msg, name) != NULL, "'%s' does not name %s", msg, name);
    cr_assert(strstr(msg, why) != NULL, "'%s' does not say '%s'", msg, why);
}

Test(import_safety, truncated_png_refused) {
    folder_with("head -c 50 0.png > 7.png", "1/7.png", "cannot decode");
}

Test(import_safety, zero_byte_image_refused) {
    folder_with(": > 7.png", "1/7.png", "empty (0 bytes)");
}

Test(import_safety, symlink_to_etc_shadow_refused) {
    folder_with("ln -s /etc/shadow 7.png", "1/7.png", "outside the imported folder");
}

Test(import_safety, symlink_out_of_the_folder_refused) {
    cr_assert_eq(support_sh("mkdir -p /tmp/easel-impsafe-outside && cp " FIX
                            "images/1/0.png /tmp/easel-impsafe-outside/x.png"),
                 0);
    folder_with("ln -sf /tmp/easel-impsafe-outside/x.png 7.png", "1/7.png",
                "outside the imported folder");
    support_sh("rm -rf /tmp/easel-impsafe-outside");
}

Test(import_safety, fifo_named_png_refused_without_hanging, .timeout = 20) {
    folder_with("mkfifo 7.png", "1/7.png", "FIFO");
}

Test(import_safety, symlink_inside_the_folder_is_the_same_image) {
    prompts_and_images();
    imp_ok(IMPORT_IMAGES, tpath("images"));
    int64_t before = count("SELECT count(*) FROM images");
    /* 1/5.png is a link to 1/0.png: the same bytes, the same image */
    cr_assert_eq(support_sh("cd '%s/images/1' && ln -s 0.png 5.png", tmpdir), 0);
    ImportReport rep;
    Err err = {0};
    cr_assert_eq(imp_opts(IMPORT_IMAGES, tpath("images"), 0, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.images_added, 0);
    cr_assert_eq(count("SELECT count(*) FROM images"), before);
    int said = 0;
    for (size_t i = 0; i < rep.n_warnings; i++)
        said += strstr(rep.warnings[i], "reused") != NULL;
    cr_assert_eq(said, 1, "the reuse is said once");
    import_report_deinit(&rep);
}

Test(import_safety, symlinked_folder_in_a_ratings_file_is_the_same_image) {
    prompts_and_images();
    imp_ok(IMPORT_IMAGES, tpath("images"));
    cr_assert_eq(support_sh("ln -s images '%s/alias'", tmpdir), 0);
    write_file(tpath("r.csv"), "prompt_id,image_path,spatial_rating\n"
                               "1,alias/1/0.png,5\n"
                               "1,alias/1/1.png,6\n");
    int64_t before = count("SELECT count(*) FROM images");
    ImportReport rep;
    Err err = {0};
    cr_assert_eq(imp_opts(IMPORT_RATINGS, tpath("r.csv"), 0, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(count("SELECT count(*) FROM images"), before, "a second image for the same bytes");
    cr_assert_eq(count("SELECT count(*) FROM ratings r JOIN images i ON i.id = r.image_id"
                       " WHERE i.path LIKE '%images/1/0.png'"),
                 1);
    cr_assert_eq(rep.n_warnings, 1);
    cr_assert(strstr(rep.warnings[0], "2 image paths") && strstr(rep.warnings[0], "reused"), "%s",
              rep.warnings[0]);
    import_report_deinit(&rep);
}

/* The same bytes under two prompts are two images; a ratings line reaching the second one by
 * another path (a symlinked folder, an absolute path) is that image, not a third one, even though
 * the first image with those bytes belongs to the other prompt. */
Test(import_safety, same_bytes_under_two_prompts_resolve_to_the_line_s_prompt) {
    prompts_and_images();
    cr_assert_eq(support_sh("cp '%s/images/1/0.png' '%s/images/2/7.png'", tmpdir, tmpdir), 0);
    imp_ok(IMPORT_IMAGES, tpath("images"));
    cr_assert_eq(support_sh("ln -s images '%s/alias'", tmpdir), 0);
    write_file(tpath("r.csv"), "prompt_id,image_path,spatial_rating\n"
                               "2,alias/2/7.png,5\n");
    int64_t before = count("SELECT count(*) FROM images");
    ImportReport rep;
    Err err = {0};
    cr_assert_eq(imp_opts(IMPORT_RATINGS, tpath("r.csv"), 0, &rep, &err), 0, "%s", err.msg);
    import_report_deinit(&rep);
    cr_assert_eq(count("SELECT count(*) FROM images"), before, "a third image for the same bytes");
    cr_assert_eq(count("SELECT count(*) FROM ratings r JOIN images i ON i.id = r.image_id"
                       " WHERE i.path LIKE '%images/2/7.png' AND i.prompt_id ="
                       " (SELECT id FROM prompts WHERE ext_id = '2')"),
                 1, "the rating is not on prompt 2's image");
}

/* ---- inputs that are not regular files ------------------------------------------------------- */

Test(import_safety, fifo_and_dev_zero_as_input_are_refused, .timeout = 20) {
    imp_ok(IMPORT_PROMPTS, FIX "prompts_good.csv");
    cr_assert_eq(support_sh("mkfifo '%s'", tpath("fifo.csv")), 0);
    const char *msg = imp_fails(IMPORT_RATINGS, tpath("fifo.csv"));
    cr_assert(strstr(msg, "FIFO") != NULL, "%s", msg);
    msg = imp_fails(IMPORT_PAIRS, tpath("fifo.csv"));
    cr_assert(strstr(msg, "FIFO") != NULL, "%s", msg);
    msg = imp_fails(IMPORT_PROMPTS, "/dev/zero");
    cr_assert(strstr(msg, "character device") != NULL, "%s", msg);
    /* /dev/zero or a FIFO as an image: refused with the reason, even with --allow-missing */
    write_file(tpath("r.csv"), "prompt_id,image_path,spatial_rating\n1,/dev/zero,5\n"
                               "1,fifo.csv,4\n");
    ImportReport rep;
    Err err = {0};
    cr_assert_neq(imp_opts(IMPORT_RATINGS, tpath("r.csv"), 1, &rep, &err), 0);
    cr_assert_eq(rep.n_errors, 2);
    cr_assert(strstr(rep.errors[0], "r.csv:2:") && strstr(rep.errors[0], "character device"),
              "%s", rep.errors[0]);
    cr_assert(strstr(rep.errors[1], "r.csv:3:") && strstr(rep.errors[1], "FIFO"), "%s",
              rep.errors[1]);
    import_report_deinit(&rep);
    cr_assert_eq(count("SELECT count(*) FROM images"), 0);
}

/* ---- NUL bytes and numbers that do not fit --------------------------------------------------- */

Test(import_safety, nul_inside_a_prompt_is_refused) {
    FILE *f = fopen(tpath("p.csv"), "wb");
    fwrite("prompt_id,prompt\n1,a cat\n2,a dog\0 and a hidden tail\n", 1, 51, f);
    fclose(f);
    const char *msg = imp_fails(IMPORT_PROMPTS, tpath("p.csv"));
    char want[300];
    snprintf(want, sizeof want, "%s:3: a NUL byte", tpath("p.csv"));
    cr_assert(strncmp(msg, want, strlen(want)) == 0, "%s", msg);
    cr_assert_eq(count("SELECT count(*) FROM prompts"), 0);
    /* a UTF-16 file is full of NULs: say what it is */
    f = fopen(tpath("u16.csv"), "wb");
    fwrite("\xff\xfep\0r\0\n\0", 1, 8, f);
    fclose(f);
    msg = imp_fails(IMPORT_PROMPTS, tpath("u16.csv"));
    cr_assert(strstr(msg, "UTF-16") && strstr(msg, "UTF-8"), "%s", msg);
}

Test(import_safety, numbers_that_do_not_fit_are_refused) {
    prompts_and_images();
    static const struct {
        const char *csv;
        const char *what;
    } cases[] = {
        {"prompt_id,seed,path,prompt,width,height,num_inference_steps,guidance_scale\n"
         "1,0,images/1/0.png,A serene mountain landscape at sunset,99999999999,512,50,7.5\n",
         "width \"99999999999\""},
        {"prompt_id,seed,path,prompt,width,height,num_inference_steps,guidance_scale\n"
         "1,0,images/1/0.png,A serene mountain landscape at sunset,512,4294967808,50,7.5\n",
         "height \"4294967808\""},
        {"prompt_id,seed,path,prompt,gpu_id\n"
         "1,99999999999999999999,images/1/0.png,A serene mountain landscape at sunset,0\n",
         "does not fit"},
        {"prompt_id,seed,path,prompt,gpu_id\n"
         "1,0,images/1/0.png,A serene mountain landscape at sunset,99999999999\n",
         "gpu_id \"99999999999\""},
        {"prompt_id,seed,path,prompt,width,height,num_inference_steps,guidance_scale\n"
         "1,0,images/1/0.png,A serene mountain landscape at sunset,512,512,99999999999,7.5\n",
         "num_inference_steps \"99999999999\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(tpath("g.csv"), cases[i].csv);
        const char *msg = imp_fails(IMPORT_GENERATED, tpath("g.csv"));
        cr_assert(strstr(msg, "g.csv:2:") && strstr(msg, cases[i].what), "case %zu: %s", i, msg);
    }
    /* a seed in an image file name */
    cr_assert_eq(support_sh("cp '%s/images/1/0.png' '%s/images/1/99999999999999999999.png'",
                            tmpdir, tmpdir),
                 0);
    const char *msg = imp_fails(IMPORT_IMAGES, tpath("images"));
    cr_assert(strstr(msg, "does not fit"), "%s", msg);
}

/* ---- pairs: the same image twice, contradictions --------------------------------------------- */

Test(import_safety, pair_of_an_image_with_itself_is_refused) {
    prompts_and_images();
    write_file(tpath("p.jsonl"),
               "{\"prompt\": \"1\", \"img_pos\": \"./images/1/0.png\", \"img_neg\": "
               "\"images/1/0.png\"}\n");
    const char *msg = imp_fails(IMPORT_PAIRS, tpath("p.jsonl"));
    cr_assert(strstr(msg, "p.jsonl:1:") && strstr(msg, "the same image"), "%s", msg);
    /* the same bytes under two names */
    cr_assert_eq(support_sh("cp '%s/images/1/0.png' '%s/images/1/copy.png'", tmpdir, tmpdir), 0);
    write_file(tpath("p.jsonl"), "{\"prompt\": \"1\", \"img_pos\": \"images/1/copy.png\", "
                                 "\"img_neg\": \"images/1/0.png\"}\n");
    msg = imp_fails(IMPORT_PAIRS, tpath("p.jsonl"));
    cr_assert(strstr(msg, "p.jsonl:1:") && strstr(msg, "the same bytes"), "%s", msg);
}

Test(import_safety, both_orders_of_a_pair_are_a_contradiction) {
    prompts_and_images();
    write_file(tpath("p.jsonl"),
               "{\"prompt\": \"1\", \"img_pos\": \"images/1/0.png\", \"img_neg\": "
               "\"images/1/1.png\"}\n"
               "{\"prompt\": \"2\", \"img_pos\": \"images/2/0.png\", \"img_neg\": "
               "\"images/2/1.png\"}\n"
               "{\"prompt\": \"1\", \"img_pos\": \"./images/1/1.png\", \"img_neg\": "
               "\"images/1/0.png\"}\n");
    const char *msg = imp_fails(IMPORT_PAIRS, tpath("p.jsonl"));
    cr_assert(strstr(msg, "p.jsonl:3:") && strstr(msg, "contradicts line 1"), "%s", msg);
    /* a label below 0.5 says the same as the swapped order: not a contradiction */
    write_file(tpath("q.jsonl"),
               "{\"prompt\": \"1\", \"img_pos\": \"images/1/0.png\", \"img_neg\": "
               "\"images/1/1.png\", \"label\": 1.0}\n"
               "{\"prompt\": \"1\", \"img_pos\": \"images/1/1.png\", \"img_neg\": "
               "\"images/1/0.png\", \"label\": 0.0}\n");
    imp_ok(IMPORT_PAIRS, tpath("q.jsonl"));
    cr_assert_eq(count("SELECT count(*) FROM pairs"), 1);
    /* and a later file cannot store the opposite of a stored pair */
    write_file(tpath("r.jsonl"), "{\"prompt\": \"1\", \"img_pos\": \"images/1/1.png\", "
                                 "\"img_neg\": \"images/1/0.png\"}\n");
    msg = imp_fails(IMPORT_PAIRS, tpath("r.jsonl"));
    cr_assert(strstr(msg, "r.jsonl:1:") && strstr(msg, "opposite preference"), "%s", msg);
}

/* ---- ratings of prompts the store does not know ---------------------------------------------- */

Test(import_safety, ratings_of_unknown_prompts_create_them_then_prompts_fill_in) {
    cr_assert_eq(support_sh("cp -r " FIX "images '%s/images'", tmpdir), 0);
    write_file(tpath("r.csv"), "prompt_id,image_path,spatial_rating\n"
                               "1,images/1/0.png,5\n"
                               "1,images/1/1.png,6\n"
                               "2,images/2/0.png,7\n");
    ImportReport rep;
    Err err = {0};
    cr_assert_eq(imp_opts(IMPORT_RATINGS, tpath("r.csv"), 0, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.prompts_added, 2);
    cr_assert_eq(rep.prompts_empty, 2);
    cr_assert_eq(rep.ratings_added, 3);
    cr_assert_eq(rep.n_warnings, 1, "said once");
    cr_assert(strstr(rep.warnings[0], "2 prompt ids") && strstr(rep.warnings[0], "1, 2") &&
                  strstr(rep.warnings[0], "empty text"),
              "%s", rep.warnings[0]);
    import_report_deinit(&rep);
    cr_assert_eq(count("SELECT count(*) FROM prompts WHERE text = ''"), 2);
    /* the prompts file comes later and fills in the text */
    cr_assert_eq(imp_opts(IMPORT_PROMPTS, FIX "prompts_good.csv", 0, &rep, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(rep.prompts_filled, 2);
    import_report_deinit(&rep);
    cr_assert_eq(count("SELECT count(*) FROM prompts WHERE text = ''"), 0);
    StorePrompt p;
    cr_assert_eq(store_prompt_by_ext(st, "1", &p, NULL), 0);
    cr_assert_str_eq(p.text, "A serene mountain landscape at sunset");
    store_prompt_deinit(&p);
    /* a filled-in text is never changed again */
    write_file(tpath("p.csv"), "prompt_id,prompt\n1,something else\n");
    const char *msg = imp_fails(IMPORT_PROMPTS, tpath("p.csv"));
    cr_assert(strstr(msg, "already in the store"), "%s", msg);
}

/* ---- cancel while the rows are read (the job kind's cancel) ---------------------------------- */

/* Cancels at the first report, noting whether the import held the write lock then (it must
 * not: the rows are still being read and checked). */
static int lock_held_at_cancel = -1;
static int cancel_while_checking(void *user) {
    *(size_t *)user += 1;
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    lock_held_at_cancel = sqlite3_exec(db, "BEGIN IMMEDIATE; ROLLBACK;", NULL, NULL, NULL) != 0;
    sqlite3_close(db);
    return 1;
}

Test(import_safety, cancel_works_while_rows_are_checked) {
    prompts_and_images();
    FILE *f = fopen(tpath("r.csv"), "w");
    fputs("prompt_id,image_path,spatial_rating,annotator\n", f);
    for (int i = 0; i < 500; i++)
        fprintf(f, "1,images/1/%d.png,5,a%d\n", i % 2, i);
    fclose(f);
    size_t calls = 0;
    ImportOptions o = {.progress = {.cancelled = cancel_while_checking, .user = &calls}};
    ImportReport rep;
    Err err = {0};
    char *before = dump();
    cr_assert_eq(import_path(st, IMPORT_RATINGS, tpath("r.csv"), &o, &rep, &err), ERR_CANCELLED,
                 "%s", err.msg);
    cr_assert_eq(calls, 1, "cancelled at the first report");
    cr_assert_eq(lock_held_at_cancel, 0, "the first report came while writing, not reading");
    char *after = dump();
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
    import_report_deinit(&rep);
}
