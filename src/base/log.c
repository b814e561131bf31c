/* log — see log.h. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;
static int log_owned;
static LogLevel log_min = LOG_INFO;

/* Log to F from level MIN on (OWNED: ours to close), closing the file we had. */
static void set_sink(FILE *f, int owned, LogLevel min) {
    pthread_mutex_lock(&log_lock);
    if (log_file && log_owned)
        fclose(log_file);
    log_file = f;
    log_owned = owned;
    log_min = min;
    pthread_mutex_unlock(&log_lock);
}

int log_open(const char *path) {
    FILE *f = fopen(path, "a");
    if (!f)
        return -1;
    set_sink(f, 1, LOG_DEBUG);
    return 0;
}

void log_to_stderr(LogLevel min_level) {
    set_sink(stderr, 0, min_level);
}

void log_close(void) {
    set_sink(NULL, 0, LOG_INFO); /* the level matters again only after the next open */
}

void log_msg(LogLevel level, const char *fmt, ...) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    pthread_mutex_lock(&log_lock);
    if (log_file && level >= log_min) {
        char stamp[32];
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
        fprintf(log_file, "%s easel %s: ", stamp, names[level]);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(log_file, fmt, ap);
        va_end(ap);
        fputc('\n', log_file);
        fflush(log_file);
    }
    pthread_mutex_unlock(&log_lock);
}
