/* Tests for what makes a file an easel store and who is using it: only init creates a
 * store, a foreign SQLite file is left byte-for-byte untouched, a store restored from
 * `sqlite3 .dump` opens at its version, and the annotator / login come from the password
 * database, never a fixed word. Also the CLI's shared number and option checks, and infile. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "identity.h"
#include "infile.h"
#include "store.h"
#include "support.h"

static char dir[128];
static char easel[512];
static char *out;

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    free(out);
    out = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = support_vrun(dir, &out, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

static void setup(void) {
    support_tmpdir_make(dir, sizeof dir, "ident");
    support_easel_path(easel, sizeof easel);
}

static void teardown(void) {
    free(out);
    out = NULL;
    support_tmpdir_remove(dir);
}

TestSuite(store_identity, .init = setup, .fini = teardown, .timeout = 60);

Test(store_identity, a_read_command_leaves_a_foreign_sqlite_file_untouched) {
    cr_assert_eq(run("sqlite3 other.db 'CREATE TABLE t(a); INSERT INTO t VALUES (1);' && "
                     "cp other.db before.db"), 0, "%s", out);
    cr_assert_eq(run("%s --db other.db status", easel), 1, "%s", out);
    cr_assert(strstr(out, "not an easel store"), "%s", out);
    cr_assert_eq(run("%s --db other.db import prompts /dev/null", easel), 1, "%s", out);
    cr_assert_eq(run("%s --db other.db init", easel), 1, "%s", out);
    /* same bytes, no easel tables, still a rollback journal (not switched to WAL) */
    cr_assert_eq(run("cmp other.db before.db && test ! -e other.db-wal"), 0, "%s", out);
    cr_assert_eq(run("sqlite3 other.db 'PRAGMA journal_mode'"), 0);
    cr_assert_str_eq(out, "delete\n");
}

Test(store_identity, only_init_creates_a_store) {
    cr_assert_eq(run("%s --db none.db status", easel), 1, "%s", out);
    cr_assert(strstr(out, "easel init"), "%s", out);
    cr_assert_eq(run("test ! -e none.db"), 0, "status created the file");
    cr_assert_eq(run(": > empty.db; %s --db empty.db status", easel), 1, "%s", out);
    cr_assert(strstr(out, "init"), "%s", out);
    /* init creates the folders on its way (README's work/easel.db) */
    cr_assert_eq(run("%s --db work/sub/easel.db init && %s --db work/sub/easel.db status",
                     easel, easel), 0, "%s", out);
}

Test(store_identity, a_store_restored_from_dump_opens) {
    cr_assert_eq(run("%s --db a.db init >/dev/null && "
                     "sqlite3 a.db \"INSERT INTO prompts(ext_id, text, created_at) VALUES "
                     "('p1', 'a fox', 0); INSERT INTO images(prompt_id, path, created_at) VALUES "
                     "(1, 'x.png', 0); INSERT INTO annotators(name, created_at) VALUES ('ann', 0);"
                     "INSERT INTO ratings(image_id, annotator_id, aspect_id, value, created_at, "
                     "updated_at) VALUES (1, 1, 1, 7, 0, 0);\" && "
                     "sqlite3 a.db .dump | sqlite3 b.db && sqlite3 b.db 'PRAGMA user_version'",
                     easel), 0, "%s", out);
    cr_assert_str_eq(out, "0\n", ".dump kept user_version: the test no longer tests anything");
    cr_assert_eq(run("%s --db b.db status --json", easel), 0, "%s", out);
    cr_assert(strstr(out, "\"ratings\": 1"), "%s", out);
    char db[300];
    snprintf(db, sizeof db, "%s/b.db", dir);
    cr_assert_eq((int)support_sql_num(db, "PRAGMA user_version"), store_schema_version());
    /* and a second open changes nothing more */
    cr_assert_eq(run("%s --db b.db status", easel), 0, "%s", out);
}

Test(store_identity, a_version_1_store_migrates_and_keeps_its_ratings) {
    /* a v1 store: drop what v2 and v3 added (as an old easel would have made it) */
    char db[300];
    snprintf(db, sizeof db, "%s/v1.db", dir);
    Err err = {0};
    Store *st = store_open(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    store_close(st);
    support_sql_exec(db, "DROP TABLE ab_judgement_history; DROP TABLE ab_judgements;"
                         "DROP TABLE ab_item_rewards; DROP TABLE ab_items; DROP TABLE ab_sets;"
                         /* v6 (ab16) */
                         "DROP TABLE run_images;" /* v5 */
                         "DROP TABLE latents;"    /* v4 */
                         "DROP TABLE job_images;" /* v3 */
                         "DROP TABLE settings; DROP TABLE output_roots; DROP TABLE queue_order;"
                         "ALTER TABLE images DROP COLUMN retired_reason;"
                         "ALTER TABLE images DROP COLUMN retired_by;"
                         "ALTER TABLE images DROP COLUMN retired_at;"
                         "ALTER TABLE images DROP COLUMN retired;"
                         "ALTER TABLE jobs DROP COLUMN queued_by;"
                         "ALTER TABLE jobs DROP COLUMN queued_uid;"
                         "ALTER TABLE jobs DROP COLUMN resume_done;"
                         "ALTER TABLE jobs DROP COLUMN resume_at;"
                         "ALTER TABLE annotators DROP COLUMN role;"
                         "DELETE FROM meta; PRAGMA user_version = 1;"
                         "INSERT INTO prompts(ext_id, text, created_at) VALUES ('p', 't', 0);");
    st = store_open_existing(db, &err);
    cr_assert_not_null(st, "%s", err.msg);
    cr_assert_eq(store_version(st), store_schema_version());
    store_close(st);
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM prompts"), 1);
    cr_assert_eq((int)support_sql_num(db, "SELECT value FROM meta WHERE key='schema_version'"),
                 store_schema_version());
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM job_images"), 0, "v3 made it");
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM run_images"), 0, "v5 made it");
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM latents"), 0, "v4 made it");
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM ab_judgements"), 0,
                 "v6 made it");
}

Test(store_identity, annotator_comes_from_flag_env_then_password_database) {
    struct passwd *pw = getpwuid(getuid());
    cr_assert_not_null(pw);
    /* no USER, no LOGNAME (cron), or LOGNAME lying: the login from the passwd entry */
    cr_assert_eq(run("env -u USER -u LOGNAME -u EASEL_ANNOTATOR %s --db a.db init >/dev/null && "
                     "printf 'prompt_id,prompt\\n1,a\\n' > p.csv && "
                     "printf 'prompt_id,image_path,spatial_rating,icono_rating,style_rating,"
                     "fidelity_rating,material_rating\\n1,i.png,1,2,3,4,5\\n' > r.csv && "
                     "printf 'prompt_id,image_path,spatial_rating,icono_rating,style_rating,"
                     "fidelity_rating,material_rating\\n1,j.png,1,2,3,4,5\\n' > r2.csv && "
                     "printf 'prompt_id,image_path,spatial_rating,icono_rating,style_rating,"
                     "fidelity_rating,material_rating\\n1,k.png,1,2,3,4,5\\n' > r3.csv && "
                     "%s --db a.db import prompts p.csv >/dev/null && "
                     "env -u USER -u EASEL_ANNOTATOR LOGNAME=someone-else %s --db a.db import "
                     "ratings r.csv --allow-missing >/dev/null 2>&1 || "
                     "env -u USER -u EASEL_ANNOTATOR LOGNAME=someone-else %s --db a.db import "
                     "ratings r.csv >/dev/null 2>&1",
                     easel, easel, easel, easel), 0, "%s", out);
    char db[300];
    snprintf(db, sizeof db, "%s/a.db", dir);
    char sql[400];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM annotators WHERE name = '%s'", pw->pw_name);
    cr_assert_eq((int)support_sql_num(db, sql), 1, "ratings not saved as the login %s",
                 pw->pw_name);
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM annotators"), 1);
    /* $EASEL_ANNOTATOR, then the global --annotator before or after the command */
    cr_assert_eq(run("EASEL_ANNOTATOR=envname %s --db a.db import ratings r2.csv "
                     "--allow-missing >/dev/null 2>&1 || EASEL_ANNOTATOR=envname %s --db a.db "
                     "import ratings r2.csv >/dev/null 2>&1", easel, easel), 0, "%s", out);
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM annotators WHERE name='envname'"),
                 1);
    cr_assert_eq(run("EASEL_ANNOTATOR=envname %s --annotator flagname --db a.db import ratings "
                     "r3.csv --allow-missing >/dev/null 2>&1 || EASEL_ANNOTATOR=envname %s "
                     "--db a.db import ratings r3.csv --annotator flagname >/dev/null 2>&1",
                     easel, easel), 0, "%s", out);
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM annotators WHERE name='flagname'"),
                 1);
    cr_assert_str_eq(identity_login(), pw->pw_name);
    cr_assert_str_eq(identity_annotator("x"), "x");
}

/* A blank name is no one: $EASEL_ANNOTATOR of spaces counts as unset (the login is used, not
 * an annotator whose name prints as nothing), and the store refuses to create one. */
Test(store_identity, a_blank_annotator_name_is_not_an_annotator) {
    struct passwd *pw = getpwuid(getuid());
    cr_assert_not_null(pw);
    setenv("EASEL_ANNOTATOR", " \t ", 1);
    cr_assert_str_eq(identity_annotator(NULL), pw->pw_name);
    unsetenv("EASEL_ANNOTATOR");
    cr_assert_eq(run("%s --db a.db init >/dev/null && printf 'prompt_id,prompt\\n1,a\\n' > p.csv"
                     " && printf 'prompt_id,image_path,spatial_rating\\n1,i.png,4\\n' > r.csv"
                     " && %s --db a.db import prompts p.csv >/dev/null && EASEL_ANNOTATOR='   ' "
                     "%s --db a.db import ratings r.csv --allow-missing", easel, easel, easel), 0,
                 "%s", out);
    char db[300];
    snprintf(db, sizeof db, "%s/a.db", dir);
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM annotators WHERE trim(name) = ''"),
                 0, "a blank annotator was created");
    char sql[400];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM annotators WHERE name = '%s'", pw->pw_name);
    cr_assert_eq((int)support_sql_num(db, sql), 1);
    cr_assert_neq(run("%s --db a.db --annotator '  ' import ratings r.csv --allow-missing", easel),
                  0, "%s", out);
    cr_assert(strstr(out, "blank"), "%s", out);
    cr_assert_eq((int)support_sql_num(db, "SELECT count(*) FROM annotators WHERE trim(name) = ''"),
                 0, "a blank annotator was created");
}

/* The global flag refuses a blank name itself, before any command (and so never blames a CSV
 * line for it), in both spellings. */
Test(store_identity, the_global_flag_refuses_a_blank_name_itself) {
    cr_assert_eq(run("%s --db a.db init >/dev/null", easel), 0, "%s", out);
    cr_assert_eq(run("%s --db a.db --annotator '  ' images list", easel), 2, "%s", out);
    cr_assert(strstr(out, "easel: --annotator") && strstr(out, "blank"), "%s", out);
    cr_assert_eq(run("%s --db a.db --annotator=' \t' images list", easel), 2, "%s", out);
    cr_assert(strstr(out, "blank"), "%s", out);
    cr_assert_eq(run("printf 'prompt_id,image_path,spatial_rating\\n1,i.png,4\\n' > r.csv && "
                     "%s --db a.db --annotator ' ' import ratings r.csv", easel), 2, "%s", out);
    cr_assert(!strstr(out, "r.csv:"), "blamed on the CSV:\n%s", out);
}

/* A store on a disk with no space left cannot get its -shm file: opening it must say so, not
 * call the store "not a SQLite database" (which sends the user looking for the wrong file). */
Test(store_identity, a_store_on_a_full_disk_is_not_called_a_foreign_file) {
    char mnt[200];
    snprintf(mnt, sizeof mnt, "%s/small", dir);
    cr_assert_eq(mkdir(mnt, 0755), 0);
    if (support_sh("mount -t tmpfs -o size=400k tmpfs '%s' 2>/dev/null", mnt) != 0)
        cr_skip_test("cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN)");
    char db[260];
    snprintf(db, sizeof db, "%s/s.db", mnt);
    Err err = {0};
    Store *st = store_open(db, &err);
    if (!st) {
        support_sh("umount '%s'", mnt);
        cr_assert_fail("%s", err.msg);
    }
    store_close(st);
    support_sh("cat /dev/urandom > '%s/fill' 2>/dev/null", mnt); /* until the disk is full */
    st = store_open_existing(db, &err);
    char msg[sizeof err.msg];
    memcpy(msg, err.msg, sizeof msg);
    if (st)
        store_close(st);
    support_sh("rm -f '%s/fill'", mnt);
    Store *again = store_open_existing(db, &err);
    int opened_again = again != NULL;
    if (again)
        store_close(again);
    support_sh("umount '%s'", mnt);
    if (st)
        cr_skip_test("SQLite opened the store on a full disk here; nothing to check");
    cr_assert(strstr(msg, "not a SQLite database") == NULL, "%s", msg);
    cr_assert(strstr(msg, "disk is full"), "the message hides the cause: %s", msg);
    cr_assert(opened_again, "with space again the store opens: %s", err.msg);
}

Test(store_identity, numbers_that_do_not_fit_are_refused_and_typos_get_a_suggestion) {
    cr_assert_eq(run("%s --db a.db init >/dev/null && %s --db a.db annotate --overlap 99999999999",
                     easel, easel), 2, "%s", out);
    cr_assert_eq(run("%s --db a.db train --epoch 3", easel), 2, "%s", out);
    cr_assert(strstr(out, "--epochs"), "no did-you-mean: %s", out);
}

Test(store_identity, infile_refuses_fifos_devices_and_big_files) {
    char fifo[300], big[300];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(big, sizeof big, "%s/big", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    unsigned char *buf = NULL;
    size_t len = 0;
    Err err = {0};
    /* a FIFO with no writer: refused at once, never blocks */
    cr_assert_eq(infile_read_all(fifo, "ratings file", INFILE_MAX_CSV, &buf, &len, &err),
                 ERR_FORMAT);
    cr_assert(strstr(err.msg, "FIFO"), "%s", err.msg);
    cr_assert_eq(infile_read_all("/dev/zero", "image", INFILE_MAX_IMAGE, &buf, &len, &err),
                 ERR_FORMAT);
    cr_assert(strstr(err.msg, "regular file"), "%s", err.msg);
    FILE *f = fopen(big, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 2000; i++)
        fputc('x', f);
    fclose(f);
    cr_assert_eq(infile_read_all(big, "config", 1000, &buf, &len, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "limit"), "%s", err.msg);
    cr_assert_eq(infile_read_all(big, "config", 4000, &buf, &len, &err), 0, "%s", err.msg);
    cr_assert_eq(len, 2000);
    cr_assert_eq(buf[len], 0);
    free(buf);
}
