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

int log_open(const char *path) {
    FILE *f = fopen(path, "a");
    if (!f)
        return -1;
    pthread_mutex_lock(&log_lock);
    if (log_file && log_owned)
        fclose(log_file);
    log_file = f;
    log_owned = 1;
    log_min = LOG_DEBUG;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void log_to_stderr(LogLevel min_level) {
    pthread_mutex_lock(&log_lock);
    if (log_file && log_owned)
        fclose(log_file);
    log_file = stderr;
    log_owned = 0;
    log_min = min_level;
    pthread_mutex_unlock(&log_lock);
}

void log_close(void) {
    pthread_mutex_lock(&log_lock);
    if (log_file && log_owned)
        fclose(log_file);
    log_file = NULL;
    log_owned = 0;
    pthread_mutex_unlock(&log_lock);
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
