/* support_cli — temporary folders, command runs and tmux panes for the tests. See support.h.
 *
 * Commands run through popen() of "cd DIR && (CMD)"; a separate stderr goes through a
 * temporary file, read back after the command exits.
 */
#include "support.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"

void support_tmpdir_make(char *dir, size_t n, const char *tag) {
    int k = snprintf(dir, n, "/tmp/easel-%s-XXXXXX", tag);
    cr_assert(k > 0 && (size_t)k < n, "temporary folder name too long for its buffer");
    cr_assert_not_null(mkdtemp(dir), "cannot create %s", dir);
}

void support_tmpdir_remove(const char *dir) {
    if (!dir[0])
        return;
    char *cmd = xasprintf("rm -rf '%s'", dir);
    int rc = system(cmd);
    free(cmd);
    cr_assert_eq(rc, 0, "cannot remove %s", dir);
}

void support_easel_path(char *buf, size_t n) {
    const char *bin = getenv("EASEL_BIN");
    char real[4096];
    if (!realpath(bin ? bin : "bin/easel", real))
        cr_skip_test("bin/easel not found (run from the repository root after make)");
    cr_assert(strlen(real) < n, "%s: path too long", real);
    strcpy(buf, real);
}

static char *vformat(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    cr_assert(n >= 0);
    char *s = xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *read_all(FILE *f) {
    size_t cap = 1 << 16, n = 0, got;
    char *buf = xmalloc(cap);
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = xrealloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    return buf;
}

int support_vrun(const char *dir, char **out, char **err, const char *fmt, va_list ap) {
    char *cmd = vformat(fmt, ap);
    char errpath[] = "/tmp/easel-stderr-XXXXXX";
    if (err) {
        int fd = mkstemp(errpath);
        cr_assert(fd >= 0, "cannot create a file for stderr");
        close(fd);
    }
    char *full = xasprintf("cd '%s' && (%s) 2>%s", dir ? dir : ".", cmd,
                           err ? errpath : "&1");
    FILE *p = popen(full, "r");
    cr_assert_not_null(p, "%s", full);
    *out = read_all(p);
    int st = pclose(p);
    if (err) {
        FILE *e = fopen(errpath, "r");
        cr_assert_not_null(e);
        *err = read_all(e);
        fclose(e);
        unlink(errpath);
    }
    free(full);
    free(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int support_run(const char *dir, char **out, char **err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = support_vrun(dir, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

int support_vrun_buf(const char *dir, char *buf, size_t n, const char *fmt, va_list ap) {
    char *out;
    int rc = support_vrun(dir, &out, NULL, fmt, ap);
    snprintf(buf, n, "%s", out);
    free(out);
    return rc;
}

int support_sh(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *cmd = vformat(fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    free(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

char *support_tmux_capture(const char *sock) {
    static char buf[65536];
    char cmd[256];
    snprintf(cmd, sizeof cmd, "tmux -L %s capture-pane -p -t e 2>/dev/null", sock);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
    if (p)
        pclose(p);
    buf[n] = '\0';
    return buf;
}

void support_tmux_new(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *cmd = vformat(fmt, ap);
    va_end(ap);
    /* tmux's message of the last try: a server just killed may still hold the socket, and a
     * loaded machine now and then refuses the first start (CI saw it once): try again */
    size_t wn = strlen(cmd) + 16;
    char *wrapped = xmalloc(wn);
    snprintf(wrapped, wn, "( %s ) 2>&1", cmd);
    char msg[2048] = "";
    int rc = -1;
    for (int tries = 0; tries < 50 && rc != 0; tries++) {
        if (tries)
            usleep(100 * 1000);
        FILE *p = popen(wrapped, "r");
        size_t n = p ? fread(msg, 1, sizeof msg - 1, p) : 0;
        msg[n] = '\0';
        rc = p ? pclose(p) : -1;
        rc = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    }
    free(wrapped);
    if (rc != 0) {
        char c[1024];
        snprintf(c, sizeof c, "%s", cmd);
        free(cmd);
        cr_assert_fail("tmux did not start after %d tries (exit %d): %s\n%s",
                       50, rc, c, msg);
    }
    free(cmd);
}

void support_tmux_wait_for(const char *sock, const char *text) {
    for (int i = 0; i < 500; i++) {
        if (strstr(support_tmux_capture(sock), text))
            return;
        usleep(20000);
    }
    cr_assert_fail("the screen never showed \"%s\"; it shows:\n%s", text,
                   support_tmux_capture(sock));
}

int support_have(const char *prog) {
    return support_sh("command -v %s >/dev/null 2>&1", prog) == 0;
}

pid_t support_spawn_quiet(char *const argv[]) {
    pid_t p = fork();
    if (p == 0) {
        setpgid(0, 0);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    return p;
}

void support_stop(pid_t *pid) {
    if (*pid > 0) {
        kill(-*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = -1;
    }
}

int support_xvfb_start(pid_t *pid) {
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", pfd[1]);
    pid_t p = fork();
    if (p == 0) {
        setpgid(0, 0);
        close(pfd[0]);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("Xvfb", "Xvfb", "-displayfd", fdarg, "-screen", "0", "1024x768x24", "-nolisten",
               "tcp", (char *)NULL);
        _exit(127);
    }
    *pid = p;
    close(pfd[1]);
    char num[16] = "";
    size_t got = 0;
    struct pollfd pf = {pfd[0], POLLIN, 0};
    while (got < sizeof num - 1 && poll(&pf, 1, 10000) > 0) {
        ssize_t r = read(pfd[0], num + got, sizeof num - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(num, '\n', got))
            break;
    }
    close(pfd[0]);
    return got ? atoi(num) : -1;
}
