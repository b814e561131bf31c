/* Tests for src/io/atomic_file.c: a commit replaces the file whole, an abort or a failed write
 * leaves the old file byte for byte and no temporary file beside it, and a path in a missing
 * folder fails with a message naming the path and the reason. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "base.h"
#include "support.h"

static char tmpdir[64];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "atomic");
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(atomic_file, .init = setup, .fini = teardown);

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char *buf = xmalloc(4096);
    size_t n = fread(buf, 1, 4095, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Number of entries in tmpdir besides . and .. */
static int n_entries(void) {
    DIR *d = opendir(tmpdir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

Test(atomic_file, commit_creates_then_replaces) {
    char *path = xasprintf("%s/out.txt", tmpdir);
    Err err = {0};
    cr_assert_eq(atomic_file_write(path, "first\n", 6, &err), 0, "%s", err.msg);
    char *got = slurp(path);
    cr_assert_str_eq(got, "first\n");
    free(got);

    AtomicFile *af;
    cr_assert_eq(atomic_file_open(path, &af, &err), 0, "%s", err.msg);
    const char *tmp = atomic_file_tmp_path(af);
    cr_assert(strncmp(tmp, path, strlen(path)) == 0, "temp %s is not beside %s", tmp, path);
    fprintf(atomic_file_stream(af), "second %d\n", 2);
    /* until the commit, readers still see the old file */
    got = slurp(path);
    cr_assert_str_eq(got, "first\n");
    free(got);
    cr_assert_eq(atomic_file_commit(af, &err), 0, "%s", err.msg);
    got = slurp(path);
    cr_assert_str_eq(got, "second 2\n");
    free(got);
    cr_assert_eq(n_entries(), 1, "a temporary file was left behind");
    free(path);
}

Test(atomic_file, abort_leaves_old_file_and_no_temp) {
    char *path = xasprintf("%s/keep.txt", tmpdir);
    Err err = {0};
    cr_assert_eq(atomic_file_write(path, "old", 3, &err), 0, "%s", err.msg);
    AtomicFile *af;
    cr_assert_eq(atomic_file_open(path, &af, &err), 0, "%s", err.msg);
    char *tmp = xstrdup(atomic_file_tmp_path(af));
    fputs("half a new fi", atomic_file_stream(af));
    fflush(atomic_file_stream(af));
    cr_assert_eq(access(tmp, F_OK), 0, "the temporary file should exist while writing");
    atomic_file_abort(af);
    cr_assert_neq(access(tmp, F_OK), 0, "%s was not removed", tmp);
    char *got = slurp(path);
    cr_assert_str_eq(got, "old");
    free(got);
    cr_assert_eq(n_entries(), 1);
    atomic_file_abort(NULL); /* a no-op */
    free(tmp);
    free(path);
}

Test(atomic_file, two_writers_get_their_own_temp_and_last_commit_wins) {
    char *path = xasprintf("%s/both.txt", tmpdir);
    Err err = {0};
    AtomicFile *a, *b;
    cr_assert_eq(atomic_file_open(path, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(atomic_file_open(path, &b, &err), 0, "%s", err.msg);
    cr_assert_str_neq(atomic_file_tmp_path(a), atomic_file_tmp_path(b));
    fputs("from a", atomic_file_stream(a));
    fputs("from b", atomic_file_stream(b));
    cr_assert_eq(atomic_file_commit(a, &err), 0, "%s", err.msg);
    cr_assert_eq(atomic_file_commit(b, &err), 0, "%s", err.msg);
    char *got = slurp(path);
    cr_assert_str_eq(got, "from b");
    free(got);
    cr_assert_eq(n_entries(), 1);
    free(path);
}

Test(atomic_file, missing_folder_is_a_clear_error) {
    char *path = xasprintf("%s/no/such/dir/out.csv", tmpdir);
    Err err = {0};
    AtomicFile *af = (AtomicFile *)&err; /* any non-NULL: NULL after a failure */
    cr_assert_eq(atomic_file_open(path, &af, &err), ERR_IO);
    cr_assert_null(af);
    cr_assert_eq(err.code, ERR_IO);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "No such file or directory") != NULL, "%s", err.msg);
    err_clear(&err);
    cr_assert_eq(atomic_file_write(path, "x", 1, &err), ERR_IO);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert_eq(n_entries(), 0);
    free(path);
}

/* The rename fails (the final path is a non-empty folder): the error names it, the folder is
 * untouched and the temporary file is gone. */
Test(atomic_file, failed_rename_removes_temp) {
    char *path = xasprintf("%s/taken", tmpdir);
    cr_assert_eq(mkdir(path, 0777), 0);
    char *inner = xasprintf("%s/inner.txt", path);
    Err err = {0};
    cr_assert_eq(atomic_file_write(inner, "kept", 4, &err), 0, "%s", err.msg);
    cr_assert_eq(atomic_file_write(path, "data", 4, &err), ERR_IO);
    cr_assert(strstr(err.msg, path) != NULL && strstr(err.msg, "rename") != NULL, "%s",
              err.msg);
    char *got = slurp(inner);
    cr_assert_str_eq(got, "kept");
    free(got);
    cr_assert_eq(n_entries(), 1, "a temporary file was left behind");
    free(inner);
    free(path);
}

/* A write error flagged on the stream (as a full disk would) makes the commit fail, remove
 * the temporary file and keep the old one. Reading a write-only stream sets that flag. */
Test(atomic_file, stream_error_fails_the_commit) {
    char *path = xasprintf("%s/err.txt", tmpdir);
    Err err = {0};
    cr_assert_eq(atomic_file_write(path, "old", 3, &err), 0, "%s", err.msg);
    AtomicFile *af;
    cr_assert_eq(atomic_file_open(path, &af, &err), 0, "%s", err.msg);
    FILE *f = atomic_file_stream(af);
    cr_assert_eq(fgetc(f), EOF);
    cr_assert(ferror(f));
    cr_assert_eq(atomic_file_commit(af, &err), ERR_IO);
    cr_assert(strstr(err.msg, path) != NULL && strstr(err.msg, "write failed") != NULL, "%s",
              err.msg);
    char *got = slurp(path);
    cr_assert_str_eq(got, "old");
    free(got);
    cr_assert_eq(n_entries(), 1);
    free(path);
}

/* `easel export prompts -o easel.db` (a slip of the output name) replaced the store with a
 * CSV file: every rating gone. No write replaces an SQLite database, nor the -wal, -shm or
 * -journal file beside one; the refusal says why, and the file stays as it was. Through a
 * symlink too. Any other file is replaced as before. */
Test(atomic_file, never_replaces_an_sqlite_database_or_its_wal) {
    char db[128], wal[140], link[128];
    snprintf(db, sizeof db, "%s/s.db", tmpdir);
    snprintf(wal, sizeof wal, "%s-wal", db);
    snprintf(link, sizeof link, "%s/l.db", tmpdir);
    cr_assert_eq(support_sh("sqlite3 %s 'CREATE TABLE t(x); INSERT INTO t VALUES (1);'", db), 0);
    cr_assert_eq(support_sh("printf 'wal bytes' > %s && ln -s s.db %s", wal, link), 0);
    const char *const targets[] = {db, wal, link};
    for (int i = 0; i < 3; i++) {
        Err err = {0};
        cr_assert_neq(atomic_file_write(targets[i], "prompt_id,prompt\n", 17, &err), 0,
                      "%s was replaced", targets[i]);
        cr_assert(strstr(err.msg, "SQLite database") && strstr(err.msg, "another"), "%s",
                  err.msg);
    }
    char *w = slurp(wal); /* before sqlite3 opens the database (it tidies a stray -wal) */
    cr_assert_str_eq(w, "wal bytes");
    free(w);
    cr_assert_eq(support_sh("sqlite3 %s 'SELECT x FROM t' | grep -qx 1", db), 0,
                 "the database changed");
    char other[128];
    snprintf(other, sizeof other, "%s/o.csv", tmpdir);
    cr_assert_eq(support_sh("printf old > %s", other), 0);
    Err err = {0};
    cr_assert_eq(atomic_file_write(other, "new", 3, &err), 0, "%s", err.msg);
}

/* `easel export prompts -o /dev/null` run as root made /dev/null a regular file (the temporary
 * file was renamed over the device). A target that is a device or a FIFO is written straight
 * into, never replaced: here a FIFO, read by a child, keeps being a FIFO. */
Test(atomic_file, a_device_or_fifo_is_written_into_not_replaced, .timeout = 20) {
    char fifo[128], got[140];
    snprintf(fifo, sizeof fifo, "%s/p", tmpdir);
    snprintf(got, sizeof got, "%s/got", tmpdir);
    cr_assert_eq(support_sh("mkfifo %s && (timeout 10 cat %s > %s 2>/dev/null </dev/null &)", fifo,
                            fifo, got), 0);
    Err err = {0};
    cr_assert_eq(atomic_file_write(fifo, "hello\n", 6, &err), 0, "%s", err.msg);
    struct stat sb;
    cr_assert_eq(stat(fifo, &sb), 0);
    cr_assert(S_ISFIFO(sb.st_mode), "the FIFO was replaced by a file");
    for (int i = 0; i < 100 && support_sh("grep -qx hello %s", got) != 0; i++)
        usleep(20000);
    char *s = slurp(got);
    cr_assert_str_eq(s, "hello\n");
    free(s);
    cr_assert_eq(atomic_file_write("/dev/null", "x", 1, &err), 0, "%s", err.msg);
    cr_assert_eq(stat("/dev/null", &sb), 0);
    cr_assert(S_ISCHR(sb.st_mode), "/dev/null is no longer a device");
}
