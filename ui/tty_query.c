/* tty_query — ask the terminal on its tty, read the reply within a deadline. See tty_query.h. */
#include "tty_query.h"

#include <poll.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "base.h"

ssize_t tty_query(int fd, const char *q, char *buf, size_t cap, int timeout_ms,
                  TtyReplyDoneFn done, void *ctx) {
    ASSERT(cap > 1);
    buf[0] = '\0';
    struct termios old, raw;
    if (!isatty(fd) || tcgetattr(fd, &old) != 0)
        return -1;
    raw = old;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &raw) != 0)
        return -1;
    size_t len = strlen(q), n = 0;
    ssize_t rc = -1;
    if (write(fd, q, len) == (ssize_t)len) {
        double deadline = base_now() + timeout_ms / 1000.0;
        for (;;) {
            int left = (int)((deadline - base_now()) * 1000.0);
            if (left <= 0)
                break;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, left) <= 0)
                break;
            ssize_t r = read(fd, buf + n, cap - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = '\0';
            if (done(buf, n, ctx) || n >= cap - 1)
                break;
        }
        rc = (ssize_t)n;
    }
    tcsetattr(fd, TCSANOW, &old);
    return rc;
}
