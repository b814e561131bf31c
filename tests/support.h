/* support — helpers shared by the non-engine tests (tests/support_*.c are linked into every
 * one of them; see the Makefile).
 *
 * Temporary folders and stores (support_store.c), running bin/easel or any shell command with
 * its output captured, and driving a tmux pane (support_cli.c). Every helper fails the calling test through Criterion when something
 * the test cannot go on without is missing, so callers need no error handling.
 */
#ifndef EASEL_TESTS_SUPPORT_H
#define EASEL_TESTS_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>

#include "store.h"

/* Create a fresh folder "/tmp/easel-TAG-XXXXXX" into DIR (N bytes). */
void support_tmpdir_make(char *dir, size_t n, const char *tag);

/* Remove DIR and everything below it. */
void support_tmpdir_remove(const char *dir);

/* The absolute path of bin/easel ($EASEL_BIN when set) into BUF (N bytes); skips the test
 * with the reason when it is not built. */
void support_easel_path(char *buf, size_t n);

/* Run the shell command made from FMT in folder DIR (NULL: the current one). Its stdout goes
 * to *OUT (malloc'd, caller frees); its stderr to *ERR when ERR is not NULL (malloc'd), else
 * into *OUT as well. Returns the exit status, -1 when it did not exit. */
int support_run(const char *dir, char **out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int support_vrun(const char *dir, char **out, char **err, const char *fmt, va_list ap);

/* As support_vrun with stdout and stderr together, copied into BUF (N bytes, truncated). */
int support_vrun_buf(const char *dir, char *buf, size_t n, const char *fmt, va_list ap);

/* system() of the command made from FMT; returns the exit status, -1 when it did not exit. */
int support_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* 1 when PROG is on PATH. */
int support_have(const char *prog);
/* Start ARGV (argv[0] looked up on PATH) in its own process group, stdout and stderr to
 * /dev/null; returns its pid. support_stop kills that group and reaps it (pid set to -1). */
pid_t support_spawn_quiet(char *const argv[]);
void support_stop(pid_t *pid);
/* Start Xvfb (1024x768x24, no TCP) in its own process group; it picks a free display and
 * reports it (-displayfd), so test runs never race for one. Returns the display number with
 * *pid set (stop it with support_stop), or -1 when it reported none within 10 s. */
int support_xvfb_start(pid_t *pid);
/* Run the shell command FMT (a `tmux -L SOCK new-session -d ...`), trying again for up to 5 s
 * while it fails (a server just killed may still hold its socket); fails the test with tmux's
 * message when it never starts. */
void support_tmux_new(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The text of pane "e" of the tmux server on socket SOCK (a static buffer). */
char *support_tmux_capture(const char *sock);

/* Wait (up to ~10 s) until that pane shows TEXT; fails the test with the screen otherwise. */
void support_tmux_wait_for(const char *sock, const char *text);

/* Open (creating) the store DIR/NAME; its path into DBPATH (N bytes) when DBPATH is not
 * NULL. */
Store *support_store_open(const char *dir, const char *name, char *dbpath, size_t n);

/* Run SQL (one or more statements) on the SQLite file DBPATH behind the store's back. */
void support_sql_exec(const char *dbpath, const char *sql);

/* The first column of the first row SQL returns from DBPATH (NAN when it is NULL). */
double support_sql_num(const char *dbpath, const char *sql);

/* Every row of every table an import may touch (prompts, images, annotators, ratings,
 * rating_history, pairs) of DBPATH as text, new string: equal dumps = unchanged store. */
char *support_import_dump(const char *dbpath);

/* Write TEXT to the new file DIR/NAME; its path into PATH (N bytes), which is returned. */
const char *support_write_file(const char *dir, const char *name, const char *text, char *path,
                               size_t n);

/* Add and claim a job of KIND with params NAMES=VALUES (N of them), run it with its cancel
 * flag preset to CANCEL; returns run()'s code, *ID the job. */
int support_run_job(Store *st, const char *kind, int n, const char *const *names,
                    const char *const *values, int cancel, int64_t *id, Err *err);

#endif
