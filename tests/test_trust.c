/* Tests of the trust rules of a shared store (src/trust.h), as users meet them: bin/easel
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
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
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
