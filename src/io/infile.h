/* infile — open the files a user names as input, safely: regular files only, of bounded size,
 * and never blocking. A FIFO, a device (/dev/zero), a directory or a socket is refused with a
 * reason instead of hanging a job or growing memory until it dies; a file over the limit for
 * its kind is refused with both sizes. Symlinks are followed (the caller decides whether the
 * target is allowed; see trust rules in doc/annotators.md).
 */
#ifndef EASEL_INFILE_H
#define EASEL_INFILE_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* Size limits per kind of input, in bytes. */
#define INFILE_MAX_CSV    (1LL << 30)   /* a ratings / prompts / pairs file: 1 GiB */
#define INFILE_MAX_IMAGE  (256LL << 20) /* one image file: 256 MiB */
#define INFILE_MAX_JSON   (64LL << 20)  /* a config or metadata JSON: 64 MiB */

/* The largest image easel decodes: 16384 pixels a side, 100 megapixels in all (400 MB as
 * RGBA). A header claiming more is refused before any pixel memory is allocated. */
#define INFILE_MAX_IMAGE_SIDE   16384
#define INFILE_MAX_IMAGE_PIXELS 100000000LL

/* Check the size W x H an image file's header (PATH) declares against the limits above.
 * Returns 0, or ERR_FORMAT with a message naming PATH, the size and the limit. */
int infile_check_image_size(const char *path, int w, int h, Err *err);

/* Open PATH for reading if it is a regular file of at most MAX bytes. WHAT names the input in
 * messages ("ratings file", "image"). Returns 0 with *FD (blocking, close-on-exec) and *SIZE,
 * or ERR_NOTFOUND (missing), ERR_IO (unreadable) or ERR_FORMAT (not a regular file, too big). */
int infile_open(const char *path, const char *what, long long max, int *fd, off_t *size,
                Err *err);

/* Read all of PATH (as infile_open) into a new buffer with a NUL after the data, so text
 * parsers may treat it as a string. The caller frees *BUF. */
int infile_read_all(const char *path, const char *what, long long max, unsigned char **buf,
                    size_t *len, Err *err);

/* "1.2 MB" style, for messages. Writes into BUF (at least 16 bytes) and returns it. */
const char *infile_human_size(long long bytes, char *buf, size_t n);

#endif
