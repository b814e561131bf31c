/* base — ASSERT, x-allocators, clocks. See base.h. */
#include "base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/stat.h>

static void (*fail_hook)(void);

void base_set_fail_hook(void (*hook)(void)) { fail_hook = hook; }

_Noreturn void base_fail(const char *file, int line, const char *what) {
    void (*hook)(void) = fail_hook;
    fail_hook = NULL; /* a failing hook must not recurse */
    if (hook)
        hook();
    fprintf(stderr, "easel: %s:%d: assertion failed: %s\n", file, line, what);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    ASSERT(p != NULL);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    ASSERT(p != NULL);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    ASSERT(q != NULL);
    return q;
}

char *xstrdup(const char *s) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    ASSERT(d != NULL);
    return d;
}

char *xstrndup(const char *s, size_t n) {
    if (!s)
        return NULL;
    char *d = strndup(s, n);
    ASSERT(d != NULL);
    return d;
}

void base_strv_free(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    ASSERT(n >= 0 && s != NULL);
    return s;
}

long base_proc_status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':')
            v = atol(line + n + 1);
    fclose(f);
    return v;
}

int base_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

double base_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double base_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t base_strlcpy(char *dst, const char *src, size_t size) {
    size_t n = strlen(src);
    if (size) {
        size_t k = n < size - 1 ? n : size - 1;
        memcpy(dst, src, k);
        dst[k] = '\0';
    }
    return n;
}

int base_is_file(const char *path) {
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int base_is_dir(const char *path) {
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}
