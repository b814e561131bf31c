/* atomic_file — write a file whole or not at all. See atomic_file.h.
 *
 * The temporary name carries the pid and a process-wide counter and is created with O_EXCL
 * and mode 0666 (less the umask, as fopen would), so concurrent writers of one path (two
 * jobs exporting to the same file) each get their own and the last rename wins whole.
 */
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

struct AtomicFile {
    FILE *f;
    char *path; /* final */
    char *tmp;  /* beside it */
};

static unsigned tmp_counter;

/* Does PATH (symlinks followed) hold an SQLite database? */
static int is_sqlite_db(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat sb;
    char head[16] = {0};
    int yes = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
              read(fd, head, sizeof head) == (ssize_t)sizeof head &&
              memcmp(head, "SQLite format 3", sizeof head) == 0;
    close(fd);
    return yes;
}

/* PATH is an SQLite database, or the -wal, -shm or -journal file of one: replacing it would
 * lose a store (an export's -o that names the store by mistake). */
static int guards_a_database(const char *path) {
    if (is_sqlite_db(path))
        return 1;
    static const char *const side[] = {"-wal", "-shm", "-journal"};
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof side / sizeof side[0]; i++) {
        size_t k = strlen(side[i]);
        if (n > k && strcmp(path + n - k, side[i]) == 0) {
            char *base = xstrdup(path);
            base[n - k] = '\0';
            int yes = is_sqlite_db(base);
            free(base);
            if (yes)
                return 1;
        }
    }
    return 0;
}

int atomic_file_open(const char *path, AtomicFile **out, Err *err) {
    *out = NULL;
    if (guards_a_database(path))
        return err_set(err, ERR_IO, "%s: is an SQLite database (an easel store?) or one of its "
                       "files; writing there would replace it and lose what it holds: choose "
                       "another file name", path);
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode)) {
        /* a device or FIFO (-o /dev/null, /dev/stdout): written into, never replaced (a
         * rename over /dev/null, as root, made it a regular file) */
        int dfd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
        FILE *df = dfd >= 0 ? fdopen(dfd, "w") : NULL;
        if (!df) {
            int e = errno;
            if (dfd >= 0)
                close(dfd);
            return err_set(err, ERR_IO, "%s: cannot open for writing (%s)", path, strerror(e));
        }
        AtomicFile *af = xmalloc(sizeof *af);
        af->f = df;
        af->path = xstrdup(path);
        af->tmp = NULL; /* direct: nothing to rename */
        *out = af;
        return 0;
    }
    char *tmp = NULL;
    int fd = -1;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        free(tmp);
        unsigned n = __atomic_fetch_add(&tmp_counter, 1, __ATOMIC_RELAXED);
        tmp = xasprintf("%s.tmp-%ld-%u", path, (long)getpid(), n);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return err_set(err, ERR_IO, "%s: cannot create a temporary file beside it (%s)", path,
                       strerror(e));
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return err_set(err, ERR_IO, "%s: cannot open a stream (%s)", path, strerror(e));
    }
    AtomicFile *af = xmalloc(sizeof *af);
    af->f = f;
    af->path = xstrdup(path);
    af->tmp = tmp;
    *out = af;
    return 0;
}

FILE *atomic_file_stream(const AtomicFile *af) {
    return af->f;
}

const char *atomic_file_tmp_path(const AtomicFile *af) {
    return af->tmp;
}

static void af_free(AtomicFile *af) {
    free(af->path);
    free(af->tmp);
    free(af);
}

void atomic_file_abort(AtomicFile *af) {
    if (!af)
        return;
    fclose(af->f);
    if (af->tmp)
        unlink(af->tmp);
    af_free(af);
}

int atomic_file_commit(AtomicFile *af, Err *err) {
    int rc = 0;
    /* ferror first: an earlier fwrite may have failed with the error long gone from errno */
    int had_error = ferror(af->f);
    if (fflush(af->f) != 0 || had_error)
        rc = err_set(err, ERR_IO, "%s: write failed (%s)", af->path,
                     had_error ? "disk full or I/O error" : strerror(errno));
    else if (af->tmp && fsync(fileno(af->f)) != 0)
        rc = err_set(err, ERR_IO, "%s: cannot flush to disk (%s)", af->path, strerror(errno));
    if (fclose(af->f) != 0 && !rc)
        rc = err_set(err, ERR_IO, "%s: write failed (%s)", af->path, strerror(errno));
    if (!af->tmp) { /* a device or FIFO, written into */
        af_free(af);
        return rc;
    }
    if (!rc && rename(af->tmp, af->path) != 0)
        rc = err_set(err, ERR_IO, "%s: cannot rename into place (%s)", af->path,
                     strerror(errno));
    if (rc)
        unlink(af->tmp);
    else
        atomic_file_sync_dir(af->path);
    af_free(af);
    return rc;
}

int atomic_file_write(const char *path, const void *data, size_t n, Err *err) {
    AtomicFile *af;
    int rc = atomic_file_open(path, &af, err);
    if (rc)
        return rc;
    if (n && fwrite(data, 1, n, af->f) != n) {
        int e = errno;
        atomic_file_abort(af);
        return err_set(err, ERR_IO, "%s: write failed (%s)", path, strerror(e));
    }
    return atomic_file_commit(af, err);
}

void atomic_file_sync_dir(const char *path) {
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir)
        *slash = '\0';
    else
        strcpy(dir, slash ? "/" : ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}
