/* cli_escape — keep the user's terminal safe from the bytes the CLI prints.
 *
 * Names, prompts, paths and file contents reach the CLI's output from other people (a shared
 * store, a downloaded CSV). Printed raw, an escape sequence inside them can set the clipboard
 * (OSC 52), retitle the terminal or rewrite what is on screen. So every human-readable line
 * the CLI prints goes through one chokepoint: main() replaces stdout and stderr by filtering
 * streams (fopencookie) that write to fds 1 and 2 with
 *   - C0 controls except \n and \t, and DEL, shown as \xHH ("\x1b");
 *   - C1 controls U+0080..U+009F (UTF-8 encoded) shown as \uHHHH ("\u009b");
 *   - bytes that are not valid UTF-8 (stray continuation bytes, overlong forms, surrogates,
 *     code points past U+10FFFF, truncated sequences) shown as \xHH;
 * and valid UTF-8 text (accents, CJK, emoji) unchanged. A UTF-8 sequence split across two
 * writes is carried to the next one, so the filter sees the stream, not the write calls.
 *
 * Data stays byte-exact: main() leaves stdout alone for the commands that print data there
 * (--json, CSV on stdout) or run the TUI (curses owns the terminal); files are never filtered.
 * The program's own terminal control ("\r\033[K" in progress lines) goes through
 * cli_escape_raw, never through the filter.
 *
 * Thread safety: the streams are stdio streams (locked per call); cli_escape_raw and
 * cli_escape_finish take the stream's lock.
 */
#ifndef EASEL_CLI_ESCAPE_H
#define EASEL_CLI_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

/* The state of one filtered stream: the start of a UTF-8 sequence not yet complete. */
typedef struct CliEscape {
    unsigned char carry[4];
    int n_carry;
} CliEscape;

/* Room OUT needs for N input bytes in cli_escape_chunk (the carry included). */
#define CLI_ESCAPE_BOUND(n) (4 * ((size_t)(n) + 4))

/* Escape N bytes of IN (after E's carry) into OUT, which has CLI_ESCAPE_BOUND(N) bytes.
 * Returns the number of bytes written; an incomplete UTF-8 sequence at the end of IN is kept
 * in E for the next call. */
size_t cli_escape_chunk(CliEscape *e, const void *in, size_t n, char *out);

/* End of the stream: E's carry (an incomplete sequence) as \xHH escapes into OUT (at least
 * 16 bytes). Returns the number of bytes written; E is empty afterwards. */
size_t cli_escape_end(CliEscape *e, char *out);

/* Replace stdout (when OUT) and/or stderr (when ERR) by filtering streams over fds 1 and 2:
 * stdout line-buffered on a terminal else fully buffered, stderr unbuffered. Call once, at
 * the start of main(), before anything is printed; registers cli_escape_finish with atexit.
 * Returns 0, or -1 when a stream could not be made (that stream is then left unfiltered). */
int cli_escape_install(int out, int err);

/* Write SEQ, the program's own terminal control (e.g. "\r\033[K"), to F unescaped, after
 * flushing what F holds. For a stream that is not filtered, the same as fputs. */
void cli_escape_raw(FILE *f, const char *seq);

/* Flush the filtered streams and write any carried incomplete sequence (escaped). Runs at
 * exit; safe to call more than once. */
void cli_escape_finish(void);

#endif
