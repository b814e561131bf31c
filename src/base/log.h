/* log — library code never writes to stdout/stderr (ncurses owns the terminal); it logs here.
 *
 * By default messages go nowhere until log_open() names a file or log_to_stderr() is called
 * (the CLI and `easel worker` do that). Thread-safe: one mutex around each line.
 */
#ifndef EASEL_LOG_H
#define EASEL_LOG_H

typedef enum LogLevel { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } LogLevel;

/* Append to PATH. Returns 0 or -1 (errno set). */
int log_open(const char *path);
void log_to_stderr(LogLevel min_level);
void log_close(void);

void log_msg(LogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
