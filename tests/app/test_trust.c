/* Tests of the trust rules of a shared store (src/data/trust.h), as users meet them: bin/easel
 * run as root and as a second Unix user (nobody, through setpriv), on a temporary store.
 *
 * The second-user tests need root (to switch users and make groups); without it they skip
 * and say so. The path rules need no second user.
 */
#include <criterion/criterion.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobkind.h"
#include "store_models.h"
#include "store_settings.h"
#include "support.h"
#include "trust.h"

static char tmpdir[64];   /* the test's folder; the workspace is tmpdir/ws */
static char outside[96];  /* a folder outside the workspace */
static char easel_bin[4096];
static char out[16384];
static char group[32];    /* a group made for the test (root only), "" = none */

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "trust");
    chmod(tmpdir, 0755); /* the second user walks into it */
    snprintf(outside, sizeof outside, "%s/outside", tmpdir);
    cr_assert_eq(mkdir(outside, 0777), 0);
    chmod(outside, 0777);
    group[0] = '\0';
}

static void teardown(void) {
    if (group[0])
        support_sh("groupdel %s 2>/dev/null", group);
    support_tmpdir_remove(tmpdir);
}

TestSuite(trust, .init = setup, .fini = teardown, .timeout = 60);

/* Run bin/easel on the test's store as USER ("" = this process, else a setpriv prefix);
 * stdout and stderr in `out`; returns the exit status. */
static int easel_as(const char *user, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int easel_as(const char *user, const char *fmt, ...) {
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    support_easel_path(easel_bin, sizeof easel_bin);
    char *o;
    int rc = support_run(tmpdir, &o, NULL, "%s env EASEL_NO_GPU=1 %s --db %s/ws/s.db %s", user,
                         easel_bin, tmpdir, args);
    snprintf(out, sizeof out, "%s", o);
    free(o);
    return rc;
}

#define easel(...) easel_as("", __VA_ARGS__)

static void write_file(const char *name, const char *text) {
    char path[256];
    support_write_file(tmpdir, name, text, path, sizeof path);
}

static double sql_num(const char *sql) {
    char db[128];
    snprintf(db, sizeof db, "%s/ws/s.db", tmpdir);
    return support_sql_num(db, sql);
}

static void need_root(void) {
    if (geteuid() != 0)
        cr_skip_test("needs root to run easel as a second Unix user (setpriv) and to make a "
                     "group; run the tests as root to check the multi-user rules");
    if (support_sh("command -v setpriv >/dev/null && command -v groupadd >/dev/null") != 0)
        cr_skip_test("needs setpriv and groupadd (util-linux, passwd)");
}

/* Make a group for the test and share the store with it; returns the setpriv prefix that
 * runs a command as nobody in that group, into BUF. */
static void share_with_nobody(char *buf, size_t n) {
    snprintf(group, sizeof group, "easeltst%d", (int)getpid() % 100000);
    support_sh("groupdel %s 2>/dev/null", group);
    cr_assert_eq(support_sh("groupadd %s", group), 0, "groupadd %s", group);
    cr_assert_eq(easel("init --shared %s", group), 0, "%s", out);
    struct group *gr = getgrnam(group);
    cr_assert_not_null(gr);
    snprintf(buf, n, "setpriv --reuid=65534 --regid=%d --clear-groups", (int)gr->gr_gid);
}

/* ---- paths --------------------------------------------------------------------------------- */

Test(trust, export_outside_the_workspace_is_refused_when_queued_and_when_run) {
    cr_assert_eq(easel("init"), 0, "%s", out);
    write_file("ws/prompts.csv", "prompt_id,prompt\n1,a red cube\n");
    /* queue time: an absolute path outside, and a symlink in the workspace that leads out */
    cr_assert_eq(easel("jobs add export --what prompts --out %s/evil.csv", outside), 1, "%s",
                 out);
    cr_assert(strstr(out, "permission denied") && strstr(out, "outside the workspace") &&
              strstr(out, "output-root add"), "%s", out);
    char link[128];
    snprintf(link, sizeof link, "%s/ws/link", tmpdir);
    cr_assert_eq(symlink(outside, link), 0);
    cr_assert_eq(easel("jobs add export --what prompts --out %s/x.csv", link), 1, "%s", out);
    cr_assert(strstr(out, "permission denied") && strstr(out, outside), "%s", out);
    cr_assert_eq(easel("jobs add import --what prompts --path /etc/passwd"), 1, "%s", out);
    cr_assert(strstr(out, "permission denied"), "reads are checked too:\n%s", out);
    cr_assert_eq(sql_num("SELECT count(*) FROM jobs"), 0, "nothing was queued");

    /* run time: a job queued inside, then edited behind easel's back */
    cr_assert_eq(easel("jobs add export --what prompts --out %s/ws/ok.csv", tmpdir), 0, "%s",
                 out);
    char db[128], sql[512];
    snprintf(db, sizeof db, "%s/ws/s.db", tmpdir);
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET params = json_set(params, '$.out', '%s/evil.csv')", outside);
    support_sql_exec(db, sql);
    cr_assert_eq(easel("worker --until-idle --threads 1"), 0, "%s", out);
    cr_assert_eq(easel("jobs wait 1"), 1, "%s", out);
    cr_assert(strstr(out, "failed") && strstr(out, "refused") &&
              strstr(out, "permission denied"), "%s", out);
    char evil[160];
    snprintf(evil, sizeof evil, "%s/evil.csv", outside);
    cr_assert_neq(access(evil, F_OK), 0, "the worker wrote outside the workspace");

    /* an output root added by the owner opens the folder */
    cr_assert_eq(easel("config output-root add %s", outside), 0, "%s", out);
    cr_assert_eq(easel("jobs add export --what prompts --out %s/fine.csv", outside), 0, "%s",
                 out);
    cr_assert_eq(easel("config output-root list"), 0);
    cr_assert(strstr(out, outside), "%s", out);
    cr_assert_eq(easel("config output-root remove %s", outside), 0, "%s", out);
    cr_assert_eq(easel("jobs add export --what prompts --out %s/fine.csv", outside), 1, "%s",
                 out);
}

/* The image paths inside an imported file are read by the job as well: a file in the
 * workspace naming an image outside it made the worker hash that image (a root-only file,
 * for whoever queued the job) and say which store image has the same bytes. An import job
 * refuses them like its own --path, even with --allow-missing; the CLI import (which reads
 * as the user who runs it) does not. */
Test(trust, an_import_job_reads_no_image_outside_the_workspace) {
    cr_assert_eq(easel("init"), 0, "%s", out);
    write_file("ws/prompts.csv", "prompt_id,prompt\n1,a red cube\n");
    cr_assert_eq(easel("import prompts %s/ws/prompts.csv", tmpdir), 0, "%s", out);
    cr_assert_eq(support_sh("mkdir -p %s/ws/images/1 && cp tests/fixtures/import/images/1/0.png "
                            "%s/ws/images/1/0.png && cp tests/fixtures/import/images/1/0.png "
                            "%s/private.png", tmpdir, tmpdir, outside), 0);
    cr_assert_eq(easel("import images %s/ws/images", tmpdir), 0, "%s", out);
    char csv[300];
    snprintf(csv, sizeof csv, "prompt_id,image_path,spatial_rating\n1,%s/private.png,4\n",
             outside);
    write_file("ws/leak.csv", csv);
    for (int allow = 0; allow < 2; allow++) {
        cr_assert_eq(easel("jobs add import --what ratings --path %s/ws/leak.csv%s", tmpdir,
                           allow ? " --allow-missing" : ""), 0, "%s", out);
        cr_assert_eq(easel("worker --until-idle --threads 1"), 0, "%s", out);
        cr_assert(strstr(out, "outside the workspace"), "%s", out);
        cr_assert(strstr(out, "same bytes") == NULL && strstr(out, "reused") == NULL,
                  "the job told what the outside file holds:\n%s", out);
    }
    cr_assert_eq(sql_num("SELECT count(*) FROM jobs WHERE state = 'failed'"), 2);
    cr_assert_eq(sql_num("SELECT count(*) FROM ratings"), 0);
    cr_assert_eq(sql_num("SELECT count(*) FROM images"), 1);
    /* the user's own CLI import reads as that user: allowed */
    cr_assert_eq(easel("import ratings %s/ws/leak.csv", tmpdir), 0, "%s", out);
    cr_assert_eq(sql_num("SELECT count(*) FROM ratings"), 1);
}

/* The same for an eval job's --pairs file: its image paths are read (and scored) by the job,
 * so one outside the workspace is refused; `easel eval` on the command line reads as you. */
Test(trust, an_eval_job_scores_no_image_outside_the_workspace) {
    cr_assert_eq(easel("init"), 0, "%s", out);
    /* the demo's images (the fixtures' are too small for the classic encoder) */
    cr_assert_eq(support_sh("cp -r data/images %s/ws/images && cp data/prompts.csv "
                            "data/multihead_ratings.csv %s/ws/ && cp data/images/0/0.png "
                            "%s/private.png", tmpdir, tmpdir, outside), 0);
    cr_assert_eq(easel("import prompts %s/ws/prompts.csv", tmpdir), 0, "%s", out);
    cr_assert_eq(easel("import ratings %s/ws/multihead_ratings.csv", tmpdir), 0, "%s", out);
    cr_assert_eq(easel("train --epochs 1 --save-every 0 --name m --threads 1"), 0, "%s", out);
    char line[512];
    snprintf(line, sizeof line, "{\"prompt\": \"A serene mountain landscape at sunset\", "
             "\"img_pos\": \"%s/private.png\", \"img_neg\": \"images/0/1.png\", "
             "\"label\": 1.0, \"aspect\": \"style\"}\n", outside);
    write_file("ws/p.jsonl", line);
    cr_assert_eq(easel("jobs add eval-reward --checkpoint %s/ws/runs/m/best --pairs "
                       "%s/ws/p.jsonl", tmpdir, tmpdir), 0, "%s", out);
    cr_assert_eq(easel("worker --until-idle --threads 1"), 0, "%s", out);
    cr_assert(strstr(out, "outside the workspace"), "%s", out);
    cr_assert(strstr(out, "n=1") == NULL, "the job scored the outside image:\n%s", out);
    cr_assert_eq(sql_num("SELECT count(*) FROM jobs WHERE state = 'failed'"), 1);
    cr_assert_eq(easel("eval %s/ws/runs/m/best --pairs %s/ws/p.jsonl", tmpdir, tmpdir), 0,
                 "%s", out);
    /* a score job's --images folder: a symlink in it that leads out is not followed */
    cr_assert_eq(support_sh("mkdir %s/ws/sc && ln -s %s/private.png %s/ws/sc/x.png", tmpdir,
                            outside, tmpdir), 0);
    cr_assert_eq(easel("jobs add score --checkpoint %s/ws/runs/m/best --images %s/ws/sc "
                       "--csv %s/ws/sc.csv", tmpdir, tmpdir, tmpdir), 0, "%s", out);
    cr_assert_eq(easel("worker --until-idle --threads 1"), 0, "%s", out);
    cr_assert(strstr(out, "outside the workspace"), "%s", out);
    char sc[160];
    snprintf(sc, sizeof sc, "%s/ws/sc.csv", tmpdir);
    cr_assert_neq(access(sc, F_OK), 0, "the job wrote the outside image's scores");
}

Test(trust, resolve_path_follows_symlinks_of_the_existing_part) {
    char link[128], p[256];
    snprintf(link, sizeof link, "%s/l", tmpdir);
    cr_assert_eq(symlink(outside, link), 0);
    snprintf(p, sizeof p, "%s/l/new/../x.csv", tmpdir);
    char *r = trust_resolve_path(p);
    char want[256];
    snprintf(want, sizeof want, "%s/x.csv", outside);
    cr_assert_not_null(r);
    cr_assert_str_eq(r, want);
    free(r);
    snprintf(link, sizeof link, "%s/dangling", tmpdir);
    cr_assert_eq(symlink("/nonexistent-easel-target/x", link), 0);
    snprintf(p, sizeof p, "%s/dangling", tmpdir);
    cr_assert_null(trust_resolve_path(p), "writing through a dangling link is refused");
}

/* Parse NAMES=VALUES for kind KIND and run the trust check on ST. */
static int check_job(Store *st, const char *kind, int n, const char *const *names,
                     const char *const *values, Err *err) {
    const JobKind *k = jobkind_find(kind);
    cr_assert_not_null(k, "%s", kind);
    JobParams *p;
    cr_assert_eq(job_params_parse(k, n, names, values, &p, err), 0, "%s", err->msg);
    int rc = job_params_check_trust(st, p, NULL, err);
    job_params_free(p);
    return rc;
}

Test(trust, every_kind_declares_the_paths_it_reaches_indirectly) {
    char ws[128], db[160];
    snprintf(ws, sizeof ws, "%s/ws", tmpdir);
    cr_assert_eq(mkdir(ws, 0777), 0);
    Store *st = support_store_open(ws, "s.db", db, sizeof db);
    Err err = {0};
    /* a model folder outside the workspace, used as an encoder and through a checkpoint */
    cr_assert_eq(store_model_add(st, "clip", "far", outside, NULL, &err), 0, "%s", err.msg);
    const char *n1[] = {"encoder"}, *v1[] = {"clip:far"};
    cr_assert_eq(check_job(st, "train-reward", 1, n1, v1, &err), ERR_DENIED, "%s", err.msg);
    cr_assert(strstr(err.msg, "model folder of clip:far"), "%s", err.msg);
    cr_assert_eq(check_job(st, "embed", 1, n1, v1, &err), ERR_DENIED, "%s", err.msg);
    char unreg[160];
    snprintf(unreg, sizeof unreg, "clip:%s,squash", outside); /* a folder, not registered */
    const char *v1b[] = {unreg};
    cr_assert_eq(check_job(st, "embed", 1, n1, v1b, &err), ERR_DENIED, "%s", err.msg);
    char ckpt[192];
    snprintf(ckpt, sizeof ckpt, "%s/runs/r/best", ws);
    cr_assert_eq(support_sh("mkdir -p %s && echo '{\"encoder\": \"clip:far\"}' > "
                            "%s/config.json", ckpt, ckpt), 0);
    const char *n2[] = {"checkpoint"}, *v2[] = {ckpt};
    cr_assert_eq(check_job(st, "eval-reward", 1, n2, v2, &err), ERR_DENIED, "%s", err.msg);
    cr_assert_eq(check_job(st, "score", 1, n2, v2, &err), ERR_DENIED, "%s", err.msg);
    /* a run name that climbs out of runs/ */
    const char *n3[] = {"name"}, *v3[] = {"../../../outside/r"};
    cr_assert_eq(check_job(st, "train-reward", 1, n3, v3, &err), ERR_DENIED, "%s", err.msg);
    const char *v4[] = {"plain-name"};
    cr_assert_eq(check_job(st, "train-reward", 1, n3, v4, &err), 0, "%s", err.msg);
    /* a resumed job's checkpoint names its output folder: checked too */
    const JobKind *k = jobkind_find("train-reward");
    JobParams *p;
    cr_assert_eq(job_params_parse(k, 0, NULL, NULL, &p, &err), 0, "%s", err.msg);
    char cp[256];
    snprintf(cp, sizeof cp, "{\"output\": \"%s/r\", \"epoch\": 1}", outside);
    cr_assert_eq(job_params_check_trust(st, p, cp, &err), ERR_DENIED, "%s", err.msg);
    /* the owner opens the folder: all of them pass */
    int added = 0;
    cr_assert_eq(store_output_root_add(st, outside, "root", &added, &err), 0, "%s", err.msg);
    cr_assert_eq(job_params_check_trust(st, p, cp, &err), 0, "%s", err.msg);
    cr_assert_eq(check_job(st, "train-reward", 1, n1, v1, &err), 0, "%s", err.msg);
    cr_assert_eq(check_job(st, "eval-reward", 1, n2, v2, &err), 0, "%s", err.msg);
    job_params_free(p);
    store_close(st);
}

/* ---- a second Unix user ---------------------------------------------------------------------- */

Test(trust, worker_runs_only_its_own_users_jobs_unless_accepted) {
    need_root();
    char nobody[128];
    share_with_nobody(nobody, sizeof nobody);
    write_file("ws/prompts.csv", "prompt_id,prompt\n1,a red cube\n");
    /* root queues an export; nobody's worker must not run it */
    cr_assert_eq(easel("jobs add export --what prompts --out %s/ws/root.csv", tmpdir), 0, "%s",
                 out);
    cr_assert_eq(easel("jobs show 1"), 0);
    cr_assert(strstr(out, "queued by    root (uid 0)"), "%s", out);
    cr_assert_eq(easel_as(nobody, "worker --until-idle --threads 1"), 0, "%s", out);
    cr_assert(strstr(out, "other users"), "the worker says why it waits:\n%s", out);
    cr_assert_eq(easel("jobs list"), 0);
    cr_assert(strstr(out, "queued") && strstr(out, "root"), "%s", out);
    cr_assert_eq(sql_num("SELECT count(*) FROM jobs WHERE state = 'queued'"), 1,
                 "a worker of another user ran root's job");
    /* nobody's own job runs in nobody's worker; root's only with --accept-user root */
    cr_assert_eq(easel_as(nobody, "jobs add export --what prompts --out %s/ws/n.csv", tmpdir),
                 0, "%s", out);
    cr_assert_eq(easel_as(nobody, "worker --until-idle --threads 1"), 0, "%s", out);
    cr_assert_eq(sql_num("SELECT state = 'succeeded' FROM jobs WHERE id = 2"), 1);
    cr_assert_eq(sql_num("SELECT queued_uid FROM jobs WHERE id = 2"), 65534);
    cr_assert_eq(sql_num("SELECT state = 'queued' FROM jobs WHERE id = 1"), 1);
    cr_assert_eq(easel_as(nobody, "worker --until-idle --threads 1 --accept-user root"), 0,
                 "%s", out);
    cr_assert_eq(sql_num("SELECT state = 'succeeded' FROM jobs WHERE id = 1"), 1, "%s", out);
    /* and root's worker leaves nobody's jobs alone the same way */
    cr_assert_eq(easel_as(nobody, "jobs add export --what prompts --out %s/ws/n2.csv", tmpdir),
                 0, "%s", out);
    cr_assert_eq(easel("worker --until-idle --threads 1"), 0, "%s", out);
    cr_assert_eq(sql_num("SELECT state = 'queued' FROM jobs WHERE id = 3"), 1);
}

/* The rules above stop a colleague who uses easel, not one who edits the file: a member can
 * write a job "queued by root" and an output root with sqlite3 (doc/annotators.md). A worker
 * running as root on a store others can write says so when it starts; on a private store it
 * says nothing. */
Test(trust, a_root_worker_on_a_store_others_can_write_warns) {
    need_root();
    cr_assert_eq(easel("init"), 0, "%s", out);
    char db[128];
    snprintf(db, sizeof db, "%s/ws/s.db", tmpdir);
    cr_assert_eq(chmod(db, 0644), 0);
    cr_assert_eq(easel("worker --until-idle --threads 1"), 0, "%s", out);
    cr_assert(strstr(out, "as root") == NULL, "a private store needs no warning:\n%s", out);
    char nobody[128];
    share_with_nobody(nobody, sizeof nobody);
    cr_assert_eq(easel("worker --until-idle --threads 1"), 0, "%s", out);
    cr_assert(strstr(out, "running as root on a store other users can write"), "%s", out);
    cr_assert(strstr(out, "doc/annotators.md"), "%s", out);
}

Test(trust, only_the_owner_configures_the_store) {
    need_root();
    char nobody[128];
    share_with_nobody(nobody, sizeof nobody);
    cr_assert_eq(easel_as(nobody, "config output-root add %s", outside), 1, "%s", out);
    cr_assert(strstr(out, "only the store's owner (root)"), "%s", out);
    cr_assert_eq(easel_as(nobody, "config blind on"), 1, "%s", out);
    cr_assert_eq(easel_as(nobody, "annotators grant nobody reviewer"), 1, "%s", out);
    cr_assert_eq(sql_num("SELECT count(*) FROM output_roots"), 0);
    cr_assert_eq(sql_num("SELECT count(*) FROM settings"), 0);
    cr_assert_eq(easel_as(nobody, "config"), 0, "anyone reads the settings: %s", out);
    cr_assert(strstr(out, "owner        root"), "%s", out);
}

Test(trust, init_shared_lets_the_group_in_and_tells_the_rest_what_to_ask) {
    need_root();
    /* before: a store made with the usual umask is closed to another user, who is told why */
    cr_assert_eq(easel("init"), 0, "%s", out);
    cr_assert_eq(easel_as("setpriv --reuid=65534 --regid=65534 --clear-groups", "status"), 1,
                 "%s", out);
    cr_assert(strstr(out, "permission denied") && strstr(out, "init --shared") &&
              strstr(out, "root"), "%s", out);
    char nobody[128];
    share_with_nobody(nobody, sizeof nobody);
    struct group *gr = getgrnam(group);
    cr_assert_not_null(gr);
    char p[160];
    struct stat sb;
    snprintf(p, sizeof p, "%s/ws/s.db", tmpdir);
    cr_assert_eq(stat(p, &sb), 0);
    cr_assert_eq(sb.st_gid, gr->gr_gid);
    cr_assert(sb.st_mode & S_IWGRP, "store not group-writable: %o", sb.st_mode);
    snprintf(p, sizeof p, "%s/ws", tmpdir);
    cr_assert_eq(stat(p, &sb), 0);
    cr_assert(sb.st_gid == gr->gr_gid && (sb.st_mode & S_ISGID) && (sb.st_mode & S_IWGRP),
              "folder %o", sb.st_mode);
    snprintf(p, sizeof p, "%s/ws/runs", tmpdir);
    cr_assert_eq(stat(p, &sb), 0);
    cr_assert(sb.st_gid == gr->gr_gid && (sb.st_mode & S_ISGID) && (sb.st_mode & S_IWGRP),
              "runs/ %o", sb.st_mode);
    /* a member of the group reads and writes; the -wal/-shm it makes stay the group's */
    cr_assert_eq(easel_as(nobody, "status"), 0, "%s", out);
    cr_assert_eq(easel_as(nobody, "jobs add export --what prompts --out %s/ws/n.csv", tmpdir),
                 0, "%s", out);
    cr_assert_eq(easel("jobs list"), 0, "root still uses it after nobody: %s", out);
    cr_assert(strstr(out, "nobody"), "%s", out);
    /* someone outside the group is still told what to ask for */
    cr_assert_eq(easel_as("setpriv --reuid=65534 --regid=65534 --clear-groups", "status"), 1,
                 "%s", out);
    cr_assert(strstr(out, "permission denied") && strstr(out, "init --shared"), "%s", out);
}

/* ---- blind rating -------------------------------------------------------------------------- */

/* style ratings: image 10 by nobody 3 and alice 7; image 11 by alice 6 and bo 2. */
static void fill_ratings(void) {
    char db[128];
    snprintf(db, sizeof db, "%s/ws/s.db", tmpdir);
    support_sql_exec(db,
        "INSERT INTO prompts(id, ext_id, text, created_at) VALUES (1, 'p1', 'a cat', 0);"
        "INSERT INTO images(id, prompt_id, path, created_at) VALUES"
        "  (10, 1, 'img/0.png', 0), (11, 1, 'img/1.png', 0);"
        "INSERT INTO annotators(id, name, created_at) VALUES (1, 'nobody', 0), (2, 'alice', 0),"
        "  (3, 'bo', 0);"
        "WITH t(i, a, v) AS (VALUES (10, 1, 3.0), (10, 2, 7.0), (11, 2, 6.0), (11, 3, 2.0))"
        " INSERT INTO ratings(image_id, annotator_id, aspect_id, value, created_at, updated_at)"
        " SELECT i, a, (SELECT id FROM aspects WHERE name = 'style'), v, 0, 0 FROM t;");
}

Test(trust, blind_rating_shows_an_annotator_only_their_own_ratings) {
    need_root();
    char nobody[128];
    share_with_nobody(nobody, sizeof nobody);
    fill_ratings();
    /* blind off: everyone sees the means and every annotator */
    cr_assert_eq(easel_as(nobody, "export ratings"), 0, "%s", out);
    cr_assert(strstr(out, ",5,") || strstr(out, ",5\n"), "mean of 3 and 7:\n%s", out);
    cr_assert_eq(easel("config blind on"), 0, "%s", out);
    cr_assert_eq(easel("config"), 0);
    cr_assert(strstr(out, "blind        on"), "%s", out);
    /* nobody now sees only their own: image 10 with 3, image 11 not at all */
    cr_assert_eq(easel_as(nobody, "export ratings"), 0, "%s", out);
    cr_assert(strstr(out, "img/0.png") && strstr(out, ",3,") && !strstr(out, "img/1.png") &&
              !strstr(out, ",5,"), "%s", out);
    cr_assert_eq(easel_as(nobody, "export ratings --per-annotator"), 1, "%s", out);
    cr_assert(strstr(out, "reviewer") && strstr(out, "annotators grant nobody reviewer"), "%s",
              out);
    /* the same through a job run by a worker of the owner that accepts nobody's jobs */
    cr_assert_eq(easel_as(nobody, "jobs add export --what ratings --out %s/ws/n.csv", tmpdir),
                 0, "%s", out);
    cr_assert_eq(easel("worker --until-idle --threads 1 --accept-user nobody"), 0, "%s", out);
    char path[160];
    snprintf(path, sizeof path, "%s/ws/n.csv", tmpdir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "the job wrote nothing: %s", out);
    char buf[4096] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    cr_assert(!strstr(buf, "img/1.png") && strstr(buf, "img/0.png"), "root's worker exported "
              "for nobody what nobody may not see:\n%s", buf);
    /* agreement: the per-aspect table, nobody's own row, no other annotator, no image list */
    cr_assert_eq(easel_as(nobody, "agreement --aspect style"), 0, "%s", out);
    cr_assert(strstr(out, "nobody") && !strstr(out, "alice") && !strstr(out, "most "
              "disagreement") && strstr(out, "reviewer"), "%s", out);
    /* rating as someone else is a reviewer's */
    cr_assert_eq(easel_as(nobody, "--annotator alice annotate"), 1, "%s", out);
    cr_assert(strstr(out, "permission denied") && strstr(out, "another annotator"), "%s", out);
    /* so is exporting as someone else: refused, not nobody's own rows under alice's name */
    cr_assert_eq(easel_as(nobody, "--annotator alice export ratings"), 1, "%s", out);
    cr_assert(strstr(out, "permission denied") && strstr(out, "another annotator") &&
              !strstr(out, "img/0.png"), "%s", out);
    cr_assert_eq(easel_as(nobody, "--annotator nobody export ratings"), 0, "%s", out);
    setenv("EASEL_ANNOTATOR", "alice", 1);
    int rc = easel_as(nobody, "export ratings");
    unsetenv("EASEL_ANNOTATOR");
    cr_assert_eq(rc, 1, "$EASEL_ANNOTATOR=alice: %s", out);
    /* the disagree order shows the raters' spread: a reviewer's too */
    cr_assert_eq(easel_as(nobody, "annotate --order disagree"), 1, "%s", out);
    cr_assert(strstr(out, "disagree order") && strstr(out, "reviewer"), "%s", out);
    /* the owner (always a reviewer) sees everything; a granted reviewer too */
    cr_assert_eq(easel("export ratings --per-annotator"), 0, "%s", out);
    cr_assert(strstr(out, "alice") && strstr(out, "img/1.png"), "%s", out);
    cr_assert_eq(easel("annotators grant nobody reviewer"), 0, "%s", out);
    cr_assert_eq(easel("annotators list"), 0, "%s", out);
    cr_assert(strstr(out, "nobody") && strstr(out, "reviewer"), "%s", out);
    cr_assert_eq(easel_as(nobody, "export ratings --per-annotator"), 0, "%s", out);
    cr_assert(strstr(out, "alice"), "%s", out);
    cr_assert_eq(easel_as(nobody, "agreement --aspect style"), 0, "%s", out);
    cr_assert(strstr(out, "alice"), "%s", out);
    cr_assert_eq(easel("annotators revoke nobody"), 0, "%s", out);
    cr_assert_eq(easel_as(nobody, "export ratings --per-annotator"), 1, "%s", out);
    /* blind off again: back to everything */
    cr_assert_eq(easel("config blind off"), 0, "%s", out);
    cr_assert_eq(easel_as(nobody, "export ratings --per-annotator"), 0, "%s", out);
}

/* Under blind rating an annotator imports only their own ratings: a file (or --annotator)
 * naming someone else was imported as them, and the refusal of a changed value told the
 * other annotator's rating ("already rated it 7"). Refused before anything is compared;
 * through a job too (the worker acts for the queuer). */
Test(trust, blind_rating_imports_only_your_own_ratings) {
    need_root();
    char nobody[128];
    share_with_nobody(nobody, sizeof nobody);
    fill_ratings();
    cr_assert_eq(easel("config blind on"), 0, "%s", out);
    write_file("ws/alice.csv", "prompt_id,image_path,style_rating,annotator\np1,img/0.png,1,alice\n");
    write_file("ws/mine.csv", "prompt_id,image_path,style_rating\np1,img/1.png,4\n");
    double before = sql_num("SELECT count(*) FROM ratings");
    cr_assert_eq(easel_as(nobody, "import ratings %s/ws/alice.csv --allow-missing", tmpdir), 1,
                 "%s", out);
    cr_assert(strstr(out, "blind rating") && strstr(out, "alice"), "%s", out);
    cr_assert(strstr(out, "rated it") == NULL && strstr(out, "it 7") == NULL,
              "the refusal told alice's rating:\n%s", out);
    cr_assert_eq(easel_as(nobody, "--annotator alice import ratings %s/ws/mine.csv "
                          "--allow-missing", tmpdir), 1, "%s", out);
    cr_assert(strstr(out, "blind rating"), "%s", out);
    cr_assert_eq(easel_as(nobody, "jobs add import --what ratings --path %s/ws/alice.csv "
                          "--allow-missing true", tmpdir), 0, "%s", out);
    cr_assert_eq(easel("worker --until-idle --threads 1 --accept-user nobody"), 0, "%s", out);
    cr_assert(strstr(out, "blind rating") && strstr(out, "rated it") == NULL, "%s", out);
    cr_assert_eq(sql_num("SELECT count(*) FROM ratings"), before, "a rating was imported");
    /* one's own ratings, and a reviewer's for others, are imported as before */
    cr_assert_eq(easel_as(nobody, "import ratings %s/ws/mine.csv --allow-missing", tmpdir), 0,
                 "%s", out);
    cr_assert_eq(sql_num("SELECT count(*) FROM ratings"), before + 1);
    write_file("ws/alice2.csv", "prompt_id,image_path,icono_rating,annotator\np1,img/0.png,2,alice\n");
    cr_assert_eq(easel("import ratings %s/ws/alice2.csv --allow-missing", tmpdir), 0, "%s", out);
    cr_assert_eq(sql_num("SELECT count(*) FROM ratings"), before + 2);
}

Test(trust, blind_rating_closes_the_quality_screen_to_annotators) {
    need_root();
    if (support_sh("command -v tmux >/dev/null") != 0)
        cr_skip_test("tmux is not installed (the Makefile's DEB_TEST installs it)");
    char nobody[128];
    share_with_nobody(nobody, sizeof nobody);
    fill_ratings();
    cr_assert_eq(easel("config blind on"), 0, "%s", out);
    char sock[48];
    snprintf(sock, sizeof sock, "easel-trust-%d", (int)getpid());
    support_easel_path(easel_bin, sizeof easel_bin);
    support_tmux_new("cd %s && tmux -L %s new-session -d -s e -x 110 -y 30 "
                            "'%s env EASEL_NO_GPU=1 %s --db ws/s.db annotate --graphics none'",
                            tmpdir, sock, nobody, easel_bin);
    support_tmux_wait_for(sock, "F3 Quality");
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e F3", sock), 0);
    support_tmux_wait_for(sock, "blind rating is on");
    const char *screen = support_tmux_capture(sock);
    cr_assert(strstr(screen, "reviewer") && !strstr(screen, "alice"), "%s", screen);
    /* the owner grants the role: `r` (or the next reload) opens the screen */
    cr_assert_eq(easel("annotators grant nobody reviewer"), 0, "%s", out);
    cr_assert_eq(support_sh("tmux -L %s send-keys -t e r", sock), 0);
    support_tmux_wait_for(sock, "Krippendorff");
    support_sh("tmux -L %s kill-server 2>/dev/null", sock);
}

/* ab16: the A/B results hold every annotator's judgements: under blind rating they are the
 * reviewers' (and the owner's), as the Quality screen. */
Test(trust, blind_rating_keeps_the_ab_results_for_reviewers) {
    need_root();
    char nobody[128];
    share_with_nobody(nobody, sizeof nobody);
    char db[128];
    snprintf(db, sizeof db, "%s/ws/s.db", tmpdir);
    support_sql_exec(db, "INSERT INTO ab_sets(name, seed, created) VALUES ('ab1', 0, 0);");
    cr_assert_eq(easel_as(nobody, "ab results ab1"), 0, "blind off: anyone\n%s", out);
    cr_assert_eq(easel("config blind on"), 0, "%s", out);
    cr_assert_eq(easel_as(nobody, "ab results ab1"), 1, "%s", out);
    cr_assert(strstr(out, "A/B results") && strstr(out, "reviewer"), "%s", out);
    cr_assert_eq(easel("ab results ab1"), 0, "the owner may:\n%s", out);
    cr_assert_eq(easel("annotators grant nobody reviewer"), 0, "%s", out);
    cr_assert_eq(easel_as(nobody, "ab results ab1"), 0, "a reviewer may:\n%s", out);
    cr_assert(strstr(out, "A/B set ab1: 0 items"), "%s", out);
}
