/* Tests for the Python peers of `make bench`: bench/venv.sh makes the virtual environment once
 * (a stamp holding the requirements' hash), says what it installs, stops with a clear error
 * when venv or pip fails; bench/run_all.sh runs every peer with the venv's python3.
 *
 * Stub interpreters stand in for python3 and pip: nothing is downloaded here. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "support_fixtures.h"

static char root[4096], dir[64], out[16384];

/* Run a shell command in DIR; stdout+stderr into out; returns the exit status. */
#define run(...) support_run_buf(dir, out, sizeof out, __VA_ARGS__)

static void setup(void) {
    cr_assert_not_null(realpath(".", root));
    support_tmpdir_make(dir, sizeof dir, "benchvenv");
    /* the scripts run from a copy of the repository's bench/ (they read bench/requirements.txt) */
    cr_assert_eq(run("mkdir -p bench && cp '%s/bench/venv.sh' '%s/bench/run_all.sh' "
                     "'%s/bench/requirements.txt' bench/", root, root, root), 0, "%s", out);
}

static void teardown(void) {
    support_tmpdir_remove(dir);
}

TestSuite(bench_venv, .init = setup, .fini = teardown, .timeout = 30);

/* A python3 stub: `-m venv DIR` makes DIR/bin/python{,3} as copies of a stub whose pip
 * exits with PIP_RC and logs its arguments to pip.log. */
static void make_stubs(int venv_rc, int pip_rc) {
    cr_assert_eq(run("cat > pystub <<'EOF'\n"
                     "#!/bin/sh\n"
                     "if [ \"$1\" = -m ] && [ \"$2\" = venv ]; then\n"
                     "  [ %d = 0 ] || { echo 'No module named venv' >&2; exit 1; }\n"
                     "  mkdir -p \"$3/bin\" && cp \"$0.inner\" \"$3/bin/python\" && "
                     "cp \"$0.inner\" \"$3/bin/python3\"; exit 0\n"
                     "fi\n"
                     "exit 1\n"
                     "EOF\n"
                     "cat > pystub.inner <<'EOF'\n"
                     "#!/bin/sh\n"
                     "if [ \"$1\" = -m ] && [ \"$2\" = pip ]; then echo \"$*\" >> %s/pip.log; "
                     "echo 'ERROR: No matching distribution found' >&2; exit %d; fi\n"
                     "if [ \"$1\" = -c ]; then exit %d; fi\n"
                     "echo 'venv python'\n"
                     "EOF\n"
                     "chmod +x pystub pystub.inner",
                     venv_rc, dir, pip_rc, pip_rc),
                 0, "%s", out);
}

Test(bench_venv, installs_once_then_does_nothing) {
    make_stubs(0, 0);
    cr_assert_eq(run("PYTHON=./pystub bash bench/venv.sh build/venv"), 0, "%s", out);
    cr_assert(strstr(out, "installing the Python peers of make bench into build/venv"), "%s", out);
    cr_assert(strstr(out, "Python peers ready in build/venv"), "%s", out);
    cr_assert_eq(run("test -s build/venv/.easel-stamp && grep -c . pip.log"), 0, "%s", out);
    int pip_calls = atoi(out);
    cr_assert_geq(pip_calls, 1);
    /* the second time: nothing installed, nothing said */
    cr_assert_eq(run("PYTHON=./no-such-python bash bench/venv.sh build/venv"), 0, "%s", out);
    cr_assert_str_eq(out, "");
    cr_assert_eq(run("grep -c . pip.log"), 0, "%s", out);
    cr_assert_eq(atoi(out), pip_calls, "pip ran again");
    /* new requirements: installed again */
    cr_assert_eq(run("echo tqdm >> bench/requirements.txt && PYTHON=./pystub bash bench/venv.sh "
                     "build/venv && grep -c . pip.log"), 0, "%s", out);
    cr_assert(strstr(out, "installing"), "%s", out);
}

Test(bench_venv, a_failing_pip_is_a_clear_error) {
    make_stubs(0, 1);
    cr_assert_eq(run("PYTHON=./pystub bash bench/venv.sh build/venv"), 1, "%s", out);
    cr_assert(strstr(out, "easel: pip could not install torch"), "%s", out);
    cr_assert(strstr(out, "No matching distribution found"), "the log's tail: %s", out);
    cr_assert(strstr(out, "run make bench again"), "%s", out);
    cr_assert_neq(run("test -e build/venv/.easel-stamp"), 0, "a failed install left a stamp");
}

Test(bench_venv, no_venv_module_says_what_to_install) {
    make_stubs(1, 0);
    cr_assert_eq(run("PYTHON=./pystub bash bench/venv.sh build/venv"), 1, "%s", out);
    cr_assert(strstr(out, "apt-get install python3-venv"), "%s", out);
}

Test(bench_venv, every_peer_runs_with_the_venvs_python) {
    make_stubs(0, 0);
    cr_assert_eq(run("PYTHON=./pystub bash bench/venv.sh build/venv"), 0, "%s", out);
    /* a benchmark that calls its peer as bench_*.c do: "python3 bench/peer.py" */
    cr_assert_eq(run("printf '#!/bin/sh\\npython3 bench/peer.py\\n' > bench_x && chmod +x bench_x "
                     "&& bash bench/run_all.sh ./bench_x"),
                 0, "%s", out);
    cr_assert(strstr(out, "venv python"), "the peer ran with another python: %s", out);
}
