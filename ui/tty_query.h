/* tty_query — ask the terminal a question on its tty and read the reply, within a deadline.
 *
 * Shared by the graphics probe (ui/gfx_probe.c) and the background probe (ui/theme.c): the tty
 * goes into raw mode (no echo, no line buffering, non-blocking reads) only while it answers,
 * and is put back as it was.
 */
#ifndef EASEL_TTY_QUERY_H
#define EASEL_TTY_QUERY_H

#include <stddef.h>
#include <sys/types.h>

/* Whether the reply read so far (BUF, N bytes, NUL-terminated) is complete. */
typedef int (*TtyReplyDoneFn)(const char *buf, size_t n, void *ctx);

/* Write the query Q to the tty FD, then read its reply into BUF (CAP bytes, always
 * NUL-terminated) until DONE says it is complete, BUF is full, the terminal is silent or
 * TIMEOUT_MS have passed. Returns the bytes read (0: no reply), or -1 when FD is not a tty
 * that takes raw mode or the query could not be written (BUF is then "" as well). */
ssize_t tty_query(int fd, const char *q, char *buf, size_t cap, int timeout_ms,
                  TtyReplyDoneFn done, void *ctx);

#endif
