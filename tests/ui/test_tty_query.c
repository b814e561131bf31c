/* Tests for ui/tty_query.c on a pseudo-terminal: the query reaches the terminal, the reply comes
 * back whole and stops the read as soon as it is complete, a silent terminal gives an empty
 * reply, something that is not a tty gives -1, and the tty's modes are put back as they were.
 * A child process plays the terminal on the pty's master side.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "tty_query.h"

static int master = -1, slave = -1;
static pid_t term = -1;

static void setup(void) {
    master = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert_geq(master, 0, "posix_openpt");
    cr_assert_eq(grantpt(master), 0);
    cr_assert_eq(unlockpt(master), 0);
    slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    cr_assert_geq(slave, 0, "open the pty's slave side");
}

static void teardown(void) {
    if (term > 0) {
        kill(term, SIGKILL);
        waitpid(term, NULL, 0);
    }
    close(slave);
    close(master);
}

TestSuite(tty_query, .init = setup, .fini = teardown, .timeout = 30);

/* The terminal: read strlen(WANT) bytes of query; exit 3 unless they are WANT, else answer
 * REPLY and stay (the parent ends it). */
static void play_terminal(const char *want, const char *reply) {
    term = fork();
    cr_assert_geq(term, 0);
    if (term > 0)
        return;
    char got[256] = "";
    size_t n = 0, len = strlen(want);
    while (n < len) {
        ssize_t r = read(master, got + n, len - n);
        if (r <= 0)
            _exit(2);
        n += (size_t)r;
    }
    if (memcmp(got, want, len) != 0)
        _exit(3);
    if (write(master, reply, strlen(reply)) != (ssize_t)strlen(reply))
        _exit(4);
    pause();
    _exit(0);
}

static int reply_has_c(const char *buf, size_t n, void *ctx) {
    (void)n;
    ++*(int *)ctx;
    return strchr(buf, 'c') != NULL;
}

Test(tty_query, reply_read_whole_and_modes_restored) {
    static const char q[] = "\033[c";
    static const char reply[] = "\033[?62;4c";
    struct termios before, after;
    cr_assert_eq(tcgetattr(slave, &before), 0);
    play_terminal(q, reply);
    char buf[64];
    int calls = 0;
    ssize_t n = tty_query(slave, q, buf, sizeof buf, 10000, reply_has_c, &calls);
    cr_assert_eq(n, (ssize_t)strlen(reply), "read %zd bytes: '%s'", n, buf + 1);
    cr_assert_str_eq(buf, reply);
    cr_assert_geq(calls, 1, "the completion test saw the reply");
    int status;
    cr_assert_eq(waitpid(term, &status, WNOHANG), 0, "the terminal got the query (status %d)",
                 status);
    cr_assert_eq(tcgetattr(slave, &after), 0);
    cr_assert_eq(after.c_lflag, before.c_lflag, "ICANON/ECHO put back");
    cr_assert_eq(after.c_cc[VMIN], before.c_cc[VMIN]);
    cr_assert_eq(after.c_cc[VTIME], before.c_cc[VTIME]);
}

Test(tty_query, a_silent_terminal_gives_an_empty_reply) {
    char buf[64] = "junk";
    int calls = 0;
    cr_assert_eq(tty_query(slave, "\033[c", buf, sizeof buf, 50, reply_has_c, &calls), 0);
    cr_assert_str_eq(buf, "");
    cr_assert_eq(calls, 0);
    char q[8] = "";
    cr_assert_eq(read(master, q, sizeof q - 1), 3, "the query was written all the same");
    cr_assert_str_eq(q, "\033[c");
}

Test(tty_query, a_full_buffer_ends_the_read) {
    static const char reply[] = "0123456789abcdef";
    play_terminal("?", reply);
    char buf[8];
    int calls = 0;
    cr_assert_eq(tty_query(slave, "?", buf, sizeof buf, 10000, reply_has_c, &calls), 7);
    cr_assert_str_eq(buf, "0123456");
}

Test(tty_query, not_a_tty) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    char buf[16] = "junk";
    int calls = 0;
    cr_assert_eq(tty_query(p[1], "\033[c", buf, sizeof buf, 50, reply_has_c, &calls), -1);
    cr_assert_str_eq(buf, "");
    cr_assert_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    char c;
    cr_assert_eq(read(p[0], &c, 1), -1, "nothing written");
    close(p[0]);
    close(p[1]);
}
