/* train_ckpt — checkpoint folders written whole or not at all. See train_int.h.
 *
 * A checkpoint is built in a hidden sibling folder (".NAME.tmp"), every file fsynced, then
 * swapped with the old folder by renameat2(RENAME_EXCHANGE) and the old contents removed; a
 * crash at any point leaves either the old complete folder or the new complete one (and at
 * worst a stale ".tmp" folder, removed by the next write).
 */
#include "train_int.h"
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "base.h"

void train_dir_remove(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = xasprintf("%s/%s", path, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            train_dir_remove(p);
        else
            unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(path);
}

int train_mkdirs(const char *path, Err *err) {
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return err_set(err, ERR_IO, "%s: cannot create folder (%s)", path, strerror(e));
        }
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        rc = err_set(err, ERR_IO, "%s: cannot create folder (%s)", path, strerror(errno));
    free(p);
    return rc;
}

int train_dir_commit(const char *tmp, const char *dst, Err *err) {
    atomic_file_sync_dir(tmp);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_EXCHANGE) == 0) {
        train_dir_remove(tmp); /* now holds the old contents */
        atomic_file_sync_dir(dst);
        return 0;
    }
    if (errno != ENOENT && errno != EINVAL && errno != ENOSYS)
        return err_set(err, ERR_IO, "%s: cannot replace folder (%s)", dst, strerror(errno));
    /* DST does not exist yet (or the file system cannot exchange): a plain rename, after
     * moving an existing DST aside. */
    char *old = xasprintf("%s.old", dst);
    train_dir_remove(old);
    int had = rename(dst, old) == 0;
    if (rename(tmp, dst) != 0) {
        int e = errno;
        if (had)
            rename(old, dst);
        free(old);
        return err_set(err, ERR_IO, "%s: cannot move the new checkpoint in place (%s)", dst,
                       strerror(e));
    }
    if (had)
        train_dir_remove(old);
    free(old);
    atomic_file_sync_dir(dst);
    return 0;
}

int train_write_file(const char *path, const char *text, Err *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0)
        return err_set(err, ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            return err_set(err, ERR_IO, "%s: write failed (%s)", path, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        return err_set(err, ERR_IO, "%s: cannot flush to disk (%s)", path, strerror(errno));
    return 0;
}

char *train_read_file(const char *path, Err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: cannot open (%s)", path,
                strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = xrealloc(buf, cap *= 2);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        err_set(err, ERR_IO, "%s: read error", path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

uint64_t train_dir_disk_usage(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return 0;
    uint64_t n = (uint64_t)sb.st_blocks * 512u;
    if (!S_ISDIR(sb.st_mode))
        return n;
    DIR *d = opendir(path);
    if (!d)
        return n;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = xasprintf("%s/%s", path, e->d_name);
        n += train_dir_disk_usage(p);
        free(p);
    }
    closedir(d);
    return n;
}
