/* Tests for src/cli/cli_escape.c: the escaper itself, then bin/easel on a pseudo-terminal — what
 * a user over SSH sees — with hostile bytes in an annotator name, an imported file and a job,
 * and the data outputs (--json, CSV on stdout) that must stay byte-exact. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "base.h"
#include "cli_escape.h"
#include "support.h"

/* ---- the escaper ------------------------------------------------------------------------------ */

/* Escape IN (N bytes) in one chunk plus the end; a malloc'd NUL-terminated string. */
static char *esc(const char *in, size_t n) {
    CliEscape e = {0};
    char *out = xmalloc(CLI_ESCAPE_BOUND(n) + 32);
    size_t o = cli_escape_chunk(&e, in, n, out);
    o += cli_escape_end(&e, out + o);
    out[o] = '\0';
    return out;
}

static void check(const char *in, const char *want) {
    char *got = esc(in, strlen(in));
    cr_expect_str_eq(got, want, "escaping \"%s\"", in);
    free(got);
}

Test(cli_escape, controls_escaped_text_kept) {
    check("plain text, 100% ok\n\tnext", "plain text, 100% ok\n\tnext");
    check("\033]52;c;aGk=\007", "\\x1b]52;c;aGk=\\x07");
    check("a\rb\bc\x7f", "a\\x0db\\x08c\\x7f");
    check("\x01\x1f", "\\x01\\x1f");
    /* C1 controls, UTF-8 encoded: CSI (U+009B), the first and the last */
    check("x\xc2\x9b" "31m", "x\\u009b31m");
    check("\xc2\x80\xc2\x9f", "\\u0080\\u009f");
    /* valid text, including the code points next to the C1 range */
    check("caf\xc3\xa9 \xe7\x8c\xab \xf0\x9f\x98\x80 \xc2\xa0\xc2\xbf",
          "caf\xc3\xa9 \xe7\x8c\xab \xf0\x9f\x98\x80 \xc2\xa0\xc2\xbf");
}

Test(cli_escape, invalid_utf8_escaped) {
    check("a\xff" "b", "a\\xffb");
    check("\x80", "\\x80");                         /* stray continuation byte */
    check("\xc0\xaf", "\\xc0\\xaf");                /* overlong '/' */
    check("\xe0\x80\xaf", "\\xe0\\x80\\xaf");       /* overlong, 3 bytes */
    check("\xed\xa0\x80", "\\xed\\xa0\\x80");       /* a surrogate */
    check("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
    check("\xe7\x8c" "A", "\\xe7\\x8cA");           /* cut short, then ASCII */
    check("\xe7\x8c", "\\xe7\\x8c");                /* cut short by the end */
    check("\xe7\xc3\xa9", "\\xe7\xc3\xa9");         /* a bad lead does not eat good text */
}

/* The stream is cut into two writes at every position: the output never changes. */
Test(cli_escape, split_writes_carry) {
    const char *in = "a\xe7\x8c\xab\xc2\x9b\xf0\x9f\x98\x80\033x\xc3\xa9\xff\xe7\x8c";
    size_t n = strlen(in);
    char *whole = esc(in, n);
    for (size_t cut = 0; cut <= n; cut++) {
        for (size_t cut2 = cut; cut2 <= n; cut2++) {
            CliEscape e = {0};
            char out[256];
            size_t o = cli_escape_chunk(&e, in, cut, out);
            o += cli_escape_chunk(&e, in + cut, cut2 - cut, out + o);
            o += cli_escape_chunk(&e, in + cut2, n - cut2, out + o);
            o += cli_escape_end(&e, out + o);
            out[o] = '\0';
            cr_assert_str_eq(out, whole, "cut at %zu and %zu", cut, cut2);
        }
    }
    free(whole);
}

/* One byte at a time, as an unbuffered stream may write it. */
Test(cli_escape, byte_by_byte) {
    const char *in = "\xc3\xa9\xc2\x9b\xed\xa0\x80\xf0\x9f\x98\x80";
    CliEscape e = {0};
    char out[256];
    size_t o = 0;
    for (size_t i = 0; in[i]; i++)
        o += cli_escape_chunk(&e, in + i, 1, out + o);
    o += cli_escape_end(&e, out + o);
    out[o] = '\0';
    cr_assert_str_eq(out, "\xc3\xa9\\u009b\\xed\\xa0\\x80\xf0\x9f\x98\x80");
}

/* ---- the streams -------------------------------------------------------------------------------- */

/* In a child whose fd 1 and 2 are a pipe: install the filters, print a UTF-8 character split
 * over two calls, hostile bytes, the program's own "\r\033[K" through cli_escape_raw, and end
 * in the middle of a sequence. What reached the pipe into *OUT. */
static size_t stream_child(char *out, size_t cap) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[1]);
        if (cli_escape_install(1, 1) != 0)
            _exit(3);
        printf("caf\xc3");
        fflush(stdout);
        printf("\xa9 \033]0;T\007|");
        fflush(stdout);
        fprintf(stderr, "err \xc2\x9b|");
        cli_escape_raw(stderr, "\r\033[K");
        printf("end \xe7\x8c");
        exit(0); /* atexit: the cut sequence is flushed, escaped */
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(p[0], out + n, cap - n - 1)) > 0)
        n += (size_t)r;
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    out[n] = '\0';
    return n;
}

Test(cli_escape, streams_filter_and_raw) {
    char out[512];
    stream_child(out, sizeof out);
    const char *want = "caf\xc3\xa9 \\x1b]0;T\\x07|err \\u009b|\r\033[Kend \\xe7\\x8c";
    /* under ASan, LeakSanitizer may add its own "==PID==..." line at exit: not ours */
    char *san = strstr(out, "==");
    if (san && (size_t)(san - out) >= strlen(want))
        *san = '\0';
    cr_assert_str_eq(out, want);
}

/* ---- bin/easel on a pty ----------------------------------------------------------------------- */

static char tmpdir[64];
static char dbpath[128];
static char easel[4096];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "cliesc");
    snprintf(dbpath, sizeof dbpath, "%s/e.db", tmpdir);
    support_easel_path(easel, sizeof easel);
}

static void teardown(void) { support_tmpdir_remove(tmpdir); }

TestSuite(cli_escape_pty, .init = setup, .fini = teardown);

/* Run "sh -c CMD" in TMPDIR with stdin, stdout and stderr on a new pseudo-terminal in raw
 * mode (no \n -> \r\n), as a terminal over SSH would; everything it writes there into *OUT
 * (malloc'd, NUL added), its length into *LEN. Returns the exit status. */
static int run_pty(const char *cmd, char **out, size_t *len) {
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0, "no pty: %s", strerror(errno));
    char *name = ptsname(m);
    cr_assert_not_null(name);
    char sname[128];
    snprintf(sname, sizeof sname, "%s", name);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        setsid();
        int s = open(sname, O_RDWR);
        if (s < 0)
            _exit(127);
        struct termios t;
        tcgetattr(s, &t);
        cfmakeraw(&t);
        tcsetattr(s, TCSANOW, &t);
        dup2(s, 0);
        dup2(s, 1);
        dup2(s, 2);
        close(m);
        if (s > 2)
            close(s);
        if (chdir(tmpdir) != 0)
            _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 == cap)
            buf = xrealloc(buf, cap *= 2);
        ssize_t r = read(m, buf + n, cap - n - 1);
        if (r > 0) {
            n += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        break; /* EIO: every process holding the terminal has gone */
    }
    close(m);
    int st;
    waitpid(pid, &st, 0);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* No raw control byte, C1 control or invalid UTF-8 in S[0..N). */
static void expect_clean(const char *s, size_t n) {
    char *again = esc(s, n);
    cr_expect_str_eq(again, s, "raw control bytes reached the terminal");
    free(again);
}

static void easel_ok(const char *args) {
    char *out;
    int rc = support_run(tmpdir, &out, NULL, "'%s' --db '%s' %s", easel, dbpath, args);
    cr_assert_eq(rc, 0, "easel %s: %s", args, out);
    free(out);
}

/* Two annotators rate two images; the second one's name holds HOSTILE (SQL expression). */
static void fill(const char *hostile) {
    easel_ok("init");
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO prompts(id, ext_id, text, created_at) VALUES (1, 'p1', 'a cat', 0);"
             "INSERT INTO images(id, prompt_id, path, created_at) VALUES (10, 1, 'a.png', 0),"
             "  (11, 1, 'b.png', 0);"
             "INSERT INTO annotators(id, name, created_at) VALUES (1, 'al', 0), (2, %s, 0);"
             "WITH t(i, a, v) AS (VALUES (10, 1, 3.0), (10, 2, 7.0), (11, 1, 6.0), (11, 2, 5.0))"
             " INSERT INTO ratings(image_id, annotator_id, aspect_id, value, created_at,"
             "  updated_at) SELECT i, a, (SELECT id FROM aspects WHERE name = 'style'), v, 0, 0"
             "  FROM t;",
             hostile);
    support_sql_exec(dbpath, sql);
}

/* The attack: OSC 52 (set the clipboard) in an annotator name, printed by
 * `easel agreement`; with a C1 CSI, an invalid byte and an accent that must survive. */
Test(cli_escape_pty, agreement_annotator_name) {
    fill("'zo' || char(235) || char(27) || ']52;c;aGk=' || char(7) || char(155) || '2J'"
         " || CAST(x'ff' AS TEXT)");
    char *out, cmd[8192];
    size_t n;
    snprintf(cmd, sizeof cmd, "'%s' --db e.db agreement", easel);
    cr_assert_eq(run_pty(cmd, &out, &n), 0, "%s", out);
    cr_expect(strstr(out, "zo\xc3\xab\\x1b]52;c;aGk=\\x07\\u009b2J\\xff") != NULL,
              "the name is not shown escaped:\n%s", out);
    expect_clean(out, n);
    free(out);
}

/* --json stays exact: jansson's own escapes, and the C1 character as its UTF-8 bytes. */
Test(cli_escape_pty, json_stays_exact) {
    fill("'zo' || char(27) || ']52;c;aGk=' || char(7) || char(155)");
    char *out, cmd[8192];
    size_t n;
    snprintf(cmd, sizeof cmd, "'%s' --db e.db agreement --json", easel);
    cr_assert_eq(run_pty(cmd, &out, &n), 0, "%s", out);
    cr_expect(strstr(out, "\"zo\\u001B]52;c;aGk=\\u0007\xc2\x9b\"") != NULL,
              "the JSON was changed:\n%s", out);
    free(out);
}

/* An import error that echoes the file's bytes (an unknown column) must not retitle the
 * terminal; nor may a file name. */
Test(cli_escape_pty, import_error_echo) {
    easel_ok("init");
    char path[256];
    support_write_file(tmpdir, "r.csv",
                       "prompt_id,image_path,style_rating,x\033]0;pwned\007y_rating\n1,a.png,5,3\n",
                       path, sizeof path);
    char *out, cmd[8192];
    size_t n;
    snprintf(cmd, sizeof cmd, "'%s' --db e.db import ratings r.csv", easel);
    cr_assert_neq(run_pty(cmd, &out, &n), 0, "%s", out);
    cr_expect(strstr(out, "x\\x1b]0;pwned\\x07y") != NULL, "%s", out);
    expect_clean(out, n);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' --db e.db import ratings \"$(printf 'no\\033]0;t\\007')\"",
             easel);
    cr_assert_neq(run_pty(cmd, &out, &n), 0, "%s", out);
    cr_expect(strstr(out, "no\\x1b]0;t\\x07") != NULL, "%s", out);
    expect_clean(out, n);
    free(out);
}

/* `jobs show` and `jobs list`: parameters, message and log lines come from whoever queued
 * or ran the job. */
Test(cli_escape_pty, jobs_show) {
    easel_ok("init");
    support_sql_exec(dbpath,
                     "INSERT INTO jobs(id, kind, params, state, message, created_at) VALUES (7,"
                     " 'import', '{\"path\":\"x' || char(27) || ']0;T' || char(7) || '\"}',"
                     " 'failed', 'boom ' || char(27) || ']52;c;aGk=' || char(7), 0);"
                     "INSERT INTO job_log(job_id, t, line) VALUES (7, 0, 'log ' || char(155) ||"
                     " '31m r' || char(233) || 'd');");
    char *out, cmd[8192];
    size_t n;
    snprintf(cmd, sizeof cmd, "'%s' --db e.db jobs show 7 && '%s' --db e.db jobs list", easel,
             easel);
    cr_assert_eq(run_pty(cmd, &out, &n), 0, "%s", out);
    cr_expect(strstr(out, "x\\x1b]0;T\\x07") != NULL, "%s", out);
    cr_expect(strstr(out, "boom \\x1b]52;c;aGk=\\x07") != NULL, "%s", out);
    cr_expect(strstr(out, "log \\u009b31m r\xc3\xa9" "d") != NULL, "%s", out);
    expect_clean(out, n);
    free(out);
}

/* CSV on stdout is data: the same bytes as the file `export -o` writes. */
Test(cli_escape_pty, export_stdout_exact) {
    easel_ok("init");
    support_sql_exec(dbpath, "INSERT INTO prompts(id, ext_id, text, created_at) VALUES (1, 'p1',"
                             " 'caf' || char(233) || ' ' || char(27) || ']0;T' || char(7) ||"
                             " char(155), 0);");
    easel_ok("export prompts -o p.csv");
    char path[256], *file;
    size_t n_file;
    snprintf(path, sizeof path, "%s/p.csv", tmpdir);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    file = xmalloc(4096);
    n_file = fread(file, 1, 4096, f);
    fclose(f);
    cr_assert(memmem(file, n_file, "\033]0;T\007\xc2\x9b", 6) != NULL, "export changed bytes");
    char *out, cmd[8192];
    size_t n;
    snprintf(cmd, sizeof cmd, "'%s' --db e.db export prompts", easel);
    cr_assert_eq(run_pty(cmd, &out, &n), 0, "%s", out);
    cr_expect_eq(n, n_file);
    cr_expect(memcmp(out, file, n < n_file ? n : n_file) == 0, "stdout differs from the file");
    free(out);
    free(file);
}
