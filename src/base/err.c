/* err — see err.h. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(Err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int err_prefix(Err *err, const char *fmt, ...) {
    if (!err)
        return 0;
    char head[ERR_MSG_LEN], old[ERR_MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", head, old);
    return err->code;
}

void err_clear(Err *err) {
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

int err_pass(Err *dst, const Err *src, int fallback) {
    if (dst && dst != src)
        *dst = *src;
    int code = src->code ? src->code : fallback;
    if (dst)
        dst->code = code;
    return code;
}

const char *err_name(int code) {
    switch (code) {
    case ERR_OK: return "ok";
    case ERR_IO: return "i/o error";
    case ERR_FORMAT: return "format error";
    case ERR_NOMEM: return "out of memory";
    case ERR_BUSY: return "store busy";
    case ERR_CONFLICT: return "conflict";
    case ERR_GPU: return "gpu error";
    case ERR_CANCELLED: return "cancelled";
    case ERR_NOTFOUND: return "not found";
    case ERR_USAGE: return "usage error";
    case ERR_DB: return "database error";
    case ERR_DENIED: return "not allowed";
    default: return "error";
    }
}
