/* err — errors that travel with the call.
 *
 * Fallible functions return 0 or a negative ERR_* code and take `Err *err` last (NULL
 * allowed). The message is set once, where the failure is seen: file, line, what is wrong,
 * what to do. Callers may prepend context (err_prefix), never replace it. No globals, so
 * threads cannot race on a "last error".
 */
#ifndef EASEL_ERR_H
#define EASEL_ERR_H

enum {
    ERR_OK = 0,
    ERR_IO = -1,        /* file or disk */
    ERR_FORMAT = -2,    /* malformed input */
    ERR_NOMEM = -3,     /* data-sized allocation failed */
    ERR_BUSY = -4,      /* store locked beyond the retry budget */
    ERR_CONFLICT = -5,  /* would overwrite or duplicate something that must not change */
    ERR_GPU = -6,       /* CUDA, cuBLAS, NVML */
    ERR_CANCELLED = -7, /* a job's cancel flag was seen */
    ERR_NOTFOUND = -8,  /* no such id, file, row */
    ERR_USAGE = -9,     /* bad flag or argument */
    ERR_DB = -10,       /* SQLite said no */
    ERR_DENIED = -11,   /* not allowed: permissions, the trust rules, a role */
};

#define ERR_MSG_LEN 1024 /* qa15: 256 cut "what to do" off errors that name two long paths */

typedef struct Err {
    int code;               /* 0 or ERR_* */
    char msg[ERR_MSG_LEN];  /* human text, no trailing newline */
} Err;

/* Set err (if not NULL) and return code, so `return err_set(err, ERR_IO, ...)` works. */
int err_set(Err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepend "context: " to an existing message. Returns err->code (0 if err is NULL). */
int err_prefix(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void err_clear(Err *err);

/* Hand the error held in SRC on to DST (if not NULL) and return its code, or FALLBACK when SRC
 * holds none. For calling a function that returns NULL on failure with a local Err, so the
 * code is known even when the caller's own err is NULL. */
int err_pass(Err *dst, const Err *src, int fallback);

/* Short name of a code, e.g. "io error". */
const char *err_name(int code);

#endif
