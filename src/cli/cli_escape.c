/* cli_escape — the filtering stdout/stderr of the CLI. See cli_escape.h.
 *
 * The escaper is a small UTF-8 validator (RFC 3629 ranges, as the Unicode standard's
 * table 3-7): a lead byte fixes the length and the allowed range of the second byte, the
 * other continuation bytes are 80..BF. A sequence cut by the end of a write waits in the
 * carry; a sequence broken by a bad byte gives its lead byte as \xHH and the scan goes on at
 * the next byte, so one bad byte never swallows good text after it.
 */
#include "cli_escape.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char hex[] = "0123456789abcdef";

static size_t put_x(char *out, unsigned char c) {
    out[0] = '\\';
    out[1] = 'x';
    out[2] = hex[c >> 4];
    out[3] = hex[c & 15];
    return 4;
}

/* Length of the sequence led by C (0: not a lead byte) and the range of its second byte. */
static int utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0)
            *lo = 0xa0; /* no overlong forms */
        if (c == 0xed)
            *hi = 0x9f; /* no surrogates */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0)
            *lo = 0x90;
        if (c == 0xf4)
            *hi = 0x8f; /* nothing past U+10FFFF */
        return 4;
    }
    return 0;
}

/* How many bytes of S (N available) form a valid sequence: the length when complete and
 * valid, 0 when S[0] cannot start one or a byte is wrong, -1 when S is a valid but
 * incomplete start. */
static int utf8_valid(const unsigned char *s, size_t n) {
    unsigned char lo, hi;
    int len = utf8_lead(s[0], &lo, &hi);
    if (!len)
        return 0;
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n)
            return -1;
        unsigned char a = k == 1 ? lo : 0x80, b = k == 1 ? hi : 0xbf;
        if (s[k] < a || s[k] > b)
            return 0;
    }
    return len;
}

/* Escape what fits in S[0..N) as complete units into OUT; *USED gets the input consumed
 * (less than N only when S ends in an incomplete sequence). */
static size_t escape_run(const unsigned char *s, size_t n, size_t *used, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
                o += put_x(out + o, c);
            else
                out[o++] = (char)c;
            i++;
            continue;
        }
        int len = utf8_valid(s + i, n - i);
        if (len < 0)
            break; /* wait for the rest */
        if (len == 0) {
            o += put_x(out + o, c);
            i++;
            continue;
        }
        if (c == 0xc2 && s[i + 1] <= 0x9f) { /* C1 control U+0080..U+009F */
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[s[i + 1] >> 4];
            out[o + 5] = hex[s[i + 1] & 15];
            o += 6;
        } else {
            memcpy(out + o, s + i, (size_t)len);
            o += (size_t)len;
        }
        i += (size_t)len;
    }
    *used = i;
    return o;
}

size_t cli_escape_chunk(CliEscape *e, const void *in, size_t n, char *out) {
    const unsigned char *s = in;
    size_t o = 0;
    /* Finish the carried sequence with the first bytes of IN. */
    while (e->n_carry > 0) {
        unsigned char buf[8];
        size_t k = (size_t)e->n_carry, take = n < 4 ? n : 4;
        memcpy(buf, e->carry, k);
        memcpy(buf + k, s, take);
        int len = utf8_valid(buf, k + take);
        if (len < 0) { /* still incomplete: IN was too short */
            memcpy(e->carry + k, s, take);
            e->n_carry += (int)take;
            return o;
        }
        if (len == 0) { /* the lead byte is bad; rescan what follows it */
            o += put_x(out + o, buf[0]);
            memmove(e->carry, e->carry + 1, k - 1);
            e->n_carry--;
            continue;
        }
        size_t used;
        o += escape_run(buf, (size_t)len, &used, out + o);
        s += (size_t)len - k;
        n -= (size_t)len - k;
        e->n_carry = 0;
    }
    size_t used = 0;
    o += escape_run(s, n, &used, out + o);
    if (used < n) {
        memcpy(e->carry, s + used, n - used);
        e->n_carry = (int)(n - used);
    }
    return o;
}

size_t cli_escape_end(CliEscape *e, char *out) {
    size_t o = 0;
    for (int i = 0; i < e->n_carry; i++)
        o += put_x(out + o, e->carry[i]);
    e->n_carry = 0;
    return o;
}

/* ---- the streams ---------------------------------------------------------------------------- */

typedef struct Filter {
    int fd;
    FILE *f;
    CliEscape esc;
} Filter;

static Filter filters[2];

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pf = {.fd = fd, .events = POLLOUT};
                poll(&pf, 1, 1000);
                continue;
            }
            return; /* the reader is gone (EPIPE) or the disk full: nothing to tell */
        }
        p += w;
        n -= (size_t)w;
    }
}

static ssize_t filter_write(void *cookie, const char *buf, size_t size) {
    Filter *flt = cookie;
    char out[CLI_ESCAPE_BOUND(1024)];
    size_t done = 0;
    while (done < size) {
        size_t n = size - done < 1024 ? size - done : 1024;
        size_t o = cli_escape_chunk(&flt->esc, buf + done, n, out);
        write_all(flt->fd, out, o);
        done += n;
    }
    return (ssize_t)size;
}

static void filter_end(Filter *flt) {
    char out[32];
    size_t o = cli_escape_end(&flt->esc, out);
    write_all(flt->fd, out, o);
}

static int filter_close(void *cookie) {
    filter_end(cookie);
    return 0;
}

static Filter *filter_of(FILE *f) {
    for (int i = 0; i < 2; i++)
        if (filters[i].f && filters[i].f == f)
            return &filters[i];
    return NULL;
}

int cli_escape_install(int out, int err) {
    static const cookie_io_functions_t io = {NULL, filter_write, NULL, filter_close};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (!(i == 0 ? out : err) || filters[i].f)
            continue;
        Filter *flt = &filters[i];
        flt->fd = i == 0 ? STDOUT_FILENO : STDERR_FILENO;
        FILE *f = fopencookie(flt, "w", io);
        if (!f) {
            rc = -1;
            continue;
        }
        if (i == 0)
            setvbuf(f, NULL, isatty(flt->fd) ? _IOLBF : _IOFBF, BUFSIZ);
        else
            setvbuf(f, NULL, _IONBF, 0);
        flt->f = f;
        if (i == 0) {
            fflush(stdout);
            stdout = f;
        } else {
            fflush(stderr);
            stderr = f;
        }
    }
    static int registered;
    if (!registered && (filters[0].f || filters[1].f)) {
        atexit(cli_escape_finish);
        registered = 1;
    }
    return rc;
}

void cli_escape_raw(FILE *f, const char *seq) {
    Filter *flt = filter_of(f);
    if (!flt) {
        fputs(seq, f);
        return;
    }
    flockfile(f);
    fflush(f);
    filter_end(flt); /* a sequence cut short by a control sequence is not text */
    write_all(flt->fd, seq, strlen(seq));
    funlockfile(f);
}

void cli_escape_finish(void) {
    for (int i = 0; i < 2; i++) {
        Filter *flt = &filters[i];
        if (!flt->f)
            continue;
        flockfile(flt->f);
        fflush(flt->f);
        filter_end(flt);
        funlockfile(flt->f);
    }
}
