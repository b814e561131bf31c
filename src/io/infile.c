/* infile — regular, bounded, non-blocking input files. See infile.h. */
#include "infile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

const char *infile_human_size(long long b, char *buf, size_t n) {
    if (b < 1000)
        snprintf(buf, n, "%lld bytes", b);
    else if (b < 1000LL * 1000)
        snprintf(buf, n, "%.1f KB", b / 1e3);
    else if (b < 1000LL * 1000 * 1000)
        snprintf(buf, n, "%.1f MB", b / 1e6);
    else
        snprintf(buf, n, "%.1f GB", b / 1e9);
    return buf;
}

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO (named pipe)";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    return "not a regular file";
}

int infile_open(const char *path, const char *what, long long max, int *fd_out, off_t *size,
                Err *err) {
    /* O_NONBLOCK: opening a FIFO with no writer must not hang; cleared below for regular
     * files (where it means nothing anyway). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return err_set(err, e == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: cannot open %s: %s", path,
                       what, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, ERR_IO, "%s: cannot stat %s: %s", path, what, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(err, ERR_FORMAT, "%s: is %s; a %s must be a regular file", path,
                       kind_of(sb.st_mode), what);
    }
    if ((long long)sb.st_size > max) {
        char a[32], b[32];
        close(fd);
        return err_set(err, ERR_FORMAT, "%s: %s is larger than the limit for a %s (%s)", path,
                       infile_human_size((long long)sb.st_size, a, sizeof a), what,
                       infile_human_size(max, b, sizeof b));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    if (size)
        *size = sb.st_size;
    return 0;
}

int infile_read_all(const char *path, const char *what, long long max, unsigned char **buf,
                    size_t *len, Err *err) {
    int fd;
    off_t size;
    int rc = infile_open(path, what, max, &fd, &size, err);
    if (rc)
        return rc;
    /* The file may grow while we read: never read past MAX. */
    size_t cap = (size_t)size + 1, n = 0;
    unsigned char *b = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if ((long long)cap > max) {
                char a[32];
                free(b);
                close(fd);
                return err_set(err, ERR_FORMAT, "%s: grew past the limit for a %s (%s)", path,
                               what, infile_human_size(max, a, sizeof a));
            }
            cap *= 2;
            b = xrealloc(b, cap + 1);
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(b);
            close(fd);
            return err_set(err, ERR_IO, "%s: cannot read %s: %s", path, what, strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if ((long long)n > max) {
        char a[32];
        free(b);
        return err_set(err, ERR_FORMAT, "%s: larger than the limit for a %s (%s)", path, what,
                       infile_human_size(max, a, sizeof a));
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

int infile_check_image_size(const char *path, int w, int h, Err *err) {
    if (w <= 0 || h <= 0)
        return err_set(err, ERR_FORMAT, "%s: the image header gives a size of %dx%d pixels",
                       path, w, h);
    if (w > INFILE_MAX_IMAGE_SIDE || h > INFILE_MAX_IMAGE_SIDE ||
        (long long)w * h > INFILE_MAX_IMAGE_PIXELS)
        return err_set(err, ERR_FORMAT, "%s: image of %dx%d pixels is larger than easel decodes "
                       "(%d pixels a side, %lld megapixels); scale it down first", path, w, h,
                       INFILE_MAX_IMAGE_SIDE, INFILE_MAX_IMAGE_PIXELS / 1000000);
    return 0;
}
