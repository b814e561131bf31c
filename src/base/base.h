/* base — the few helpers every layer uses: ASSERT for broken invariants, allocation that
 * cannot fail (bookkeeping only; data-sized allocations return ERR_NOMEM instead), small
 * string helpers and a monotonic clock.
 *
 * Thread-safe. Depends on libc only, so the engine can use it.
 */
#ifndef EASEL_BASE_H
#define EASEL_BASE_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A broken invariant is a bug: on in every build. Runs the fail hook (the UI uses it to end
 * curses), prints file:line and the expression on stderr, aborts. */
#define ASSERT(x) ((x) ? (void)0 : base_fail(__FILE__, __LINE__, #x))

_Noreturn void base_fail(const char *file, int line, const char *what);

/* Called once by base_fail before printing, e.g. to restore the terminal. NULL to clear. */
void base_set_fail_hook(void (*hook)(void));

/* Bookkeeping allocations: never NULL (ASSERT on failure). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);          /* NULL in, NULL out */
char *xstrndup(const char *s, size_t n);

/* Free the N strings of V, then V itself (V may be NULL). */
void base_strv_free(char **v, size_t n);

/* printf into a new string the caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The kB of this process's /proc/self/status line KEY ("VmRSS", "VmHWM"), or -1 where there is
 * none (not Linux). */
long base_proc_status_kb(const char *key);

/* Reset this process's peak resident set (VmHWM) to its current one: 0, or -1. */
int base_peak_rss_reset(void);

/* Seconds since an arbitrary point (CLOCK_MONOTONIC). */
double base_now(void);
/* Seconds since the Unix epoch (CLOCK_REALTIME), with sub-second precision. */
double base_wall(void);

/* 1 when PATH is a regular file (a folder), following links; 0 otherwise or for NULL. */
int base_is_file(const char *path);
int base_is_dir(const char *path);

/* Copy at most size-1 bytes and always terminate; returns strlen(src). */
size_t base_strlcpy(char *dst, const char *src, size_t size);

#endif
