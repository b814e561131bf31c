/* Tests of `easel jobs`, `easel worker` and `easel gpus` as a user runs them: bin/easel on a
 * temporary store, checking stdout, stderr and exit codes. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jobs.h"
#include "store_jobs.h"
#include "support.h"
#include "support_fixtures.h"

static char tmpdir[64];
static char out[16384];

static void setup(void) {
    support_tmpdir_make(tmpdir, sizeof tmpdir, "clijobs");
}

static void teardown(void) {
    support_tmpdir_remove(tmpdir);
}

TestSuite(cli_jobs, .init = setup, .fini = teardown, .timeout = 60);

/* Run `bin/easel --db TMP/s.db ARGS` (stderr merged); output in `out`; returns exit code. */
static int easel(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int easel(const char *fmt, ...) {
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *o;
    int rc = support_run(NULL, &o, NULL, "EASEL_NO_GPU=1 bin/easel --db %s/s.db %s", tmpdir,
                         args);
    snprintf(out, sizeof out, "%s", o);
    free(o);
    return rc;
}

static void write_prompts(void) {
    char path[128];
    support_write_file(tmpdir, "prompts.csv",
                       "prompt_id,prompt\n1,a red cube\n2,a blue cat\n",
                       path, sizeof path);
}

Test(cli_jobs, add_worker_wait_list_show_retry) {
    if (access("bin/easel", X_OK) != 0)
        cr_skip_test("bin/easel not built (run make test from the repository root)");
    write_prompts();
    cr_assert_eq(easel("init"), 0, "%s", out);
    cr_assert_eq(easel("jobs add import --what prompts --path %s/prompts.csv", tmpdir), 0, "%s",
                 out);
    cr_assert_str_eq(out, "1\n");
    cr_assert_eq(easel("jobs add export --what prompts --out %s/out.csv --after 1", tmpdir), 0,
                 "%s", out);
    cr_assert_str_eq(out, "2\n");
    cr_assert_eq(easel("jobs add import --what prompts --path %s/missing.csv", tmpdir), 0);
    cr_assert_str_eq(out, "3\n");
    cr_assert_eq(easel("jobs list"), 0);
    cr_assert(strstr(out, "queued"), "%s", out);
    cr_assert_eq(easel("worker --until-idle --threads 2"), 0, "%s", out);
    cr_assert(strstr(out, "worker pool stopped"), "%s", out);
    cr_assert_eq(easel("jobs wait 1"), 0, "%s", out);
    cr_assert(strstr(out, "job #1 succeeded"), "%s", out);
    cr_assert_eq(easel("jobs wait 2"), 0, "%s", out);
    cr_assert_eq(easel("jobs wait 3"), 1, "a failed job: wait exits 1");
    cr_assert(strstr(out, "job #3 failed") && strstr(out, "missing.csv"), "%s", out);
    cr_assert_eq(easel("jobs show 2"), 0);
    cr_assert(strstr(out, "after        #1"), "%s", out);
    cr_assert(strstr(out, "wrote 2 rows"), "log tail shown:\n%s", out);
    cr_assert_eq(easel("jobs log 3"), 0, "%s", out);
    cr_assert(strstr(out, "importing prompts") && strstr(out, "missing.csv"), "%s", out);
    cr_assert_eq(easel("jobs log 3 --follow"), 1, "an ended failed job: follow exits 1");
    cr_assert_eq(easel("jobs log 1 --tail 1"), 0);
    cr_assert(strstr(out, "succeeded in") && !strstr(out, "started on"), "%s", out);
    cr_assert_eq(easel("jobs retry 3"), 0, "%s", out);
    cr_assert_str_eq(out, "4\n");
    cr_assert_eq(easel("jobs cancel 4"), 0);
    cr_assert(strstr(out, "job #4 cancelled"), "%s", out);
    cr_assert_eq(easel("jobs cancel 1"), 1, "already succeeded");
    cr_assert(strstr(out, "already succeeded"), "%s", out);
    cr_assert_eq(easel("jobs resume 4"), 0, "%s", out);
    cr_assert_eq(easel("jobs priority 4 9"), 0, "%s", out);
    cr_assert_eq(easel("jobs list --state queued"), 0);
    cr_assert(strstr(out, "    4  queued"), "%s", out);
    cr_assert(!strstr(out, "    1  "), "filtered:\n%s", out);
}

Test(cli_jobs, bad_input_is_a_usage_error_naming_what_is_wrong) {
    if (access("bin/easel", X_OK) != 0)
        cr_skip_test("bin/easel not built");
    cr_assert_eq(easel("init"), 0);
    cr_assert_eq(easel("jobs add import --what nope --path x"), 2);
    cr_assert(strstr(out, "'nope' is not one of prompts|ratings"), "%s", out);
    cr_assert_eq(easel("jobs add import --bogus 1 --path x"), 2);
    cr_assert(strstr(out, "unknown parameter --bogus"), "%s", out);
    cr_assert_eq(easel("jobs add import"), 2);
    cr_assert(strstr(out, "--path is required"), "%s", out);
    cr_assert_eq(easel("jobs add no-such-kind"), 2);
    cr_assert_eq(easel("jobs add import --path %s/x --after 99", tmpdir), 1);
    cr_assert(strstr(out, "no job #99"), "%s", out);
    cr_assert_eq(easel("jobs show 12345"), 1);
    cr_assert_eq(easel("jobs frobnicate"), 2);
    cr_assert_eq(easel("worker --threads 0"), 2);
    int counts = easel("jobs list");
    cr_assert_eq(counts, 0);
    cr_assert(strstr(out, "(no jobs)"), "nothing was added by the failed commands:\n%s", out);
}

Test(cli_jobs, a_priority_that_does_not_fit_is_refused_and_waiting_jobs_say_for_what) {
    if (access("bin/easel", X_OK) != 0)
        cr_skip_test("bin/easel not built");
    write_prompts();
    cr_assert_eq(easel("init"), 0);
    cr_assert_eq(easel("jobs add import --what prompts --path %s/prompts.csv "
                       "--priority 99999999999", tmpdir), 2, "%s", out);
    cr_assert(strstr(out, "--priority 99999999999: expected a whole number"), "%s", out);
    cr_assert_eq(easel("jobs add import --what prompts --path %s/prompts.csv --priority "
                       "-2147483649", tmpdir), 2, "%s", out);
    cr_assert_eq(easel("jobs list"), 0);
    cr_assert(strstr(out, "(no jobs)"), "nothing was queued:\n%s", out);
    cr_assert_eq(easel("jobs add import --what prompts --path %s/prompts.csv --priority "
                       "2147483647", tmpdir), 0, "%s", out);
    cr_assert_eq(easel("jobs priority 1 99999999999"), 2, "%s", out);
    cr_assert_eq(easel("jobs show 1"), 0);
    cr_assert(strstr(out, "priority     2147483647"), "%s", out);
    /* a job waiting on --after says so in the list and in show */
    cr_assert_eq(easel("jobs add export --what prompts --out %s/o.csv --after 1", tmpdir), 0,
                 "%s", out);
    cr_assert_eq(easel("jobs list"), 0);
    char *line = strstr(out, "    2  queued");
    cr_assert_not_null(line, "%s", out);
    cr_assert(strstr(line, "waiting for #1 (queued)"), "%s", out);
    cr_assert_eq(easel("jobs show 2"), 0);
    cr_assert(strstr(out, "waiting for  #1 (queued)"), "%s", out);
    cr_assert_eq(easel("jobs cancel 1"), 0);
    cr_assert_eq(easel("jobs list"), 0);
    cr_assert(strstr(out, "waiting for #1 (cancelled)"), "%s", out);
}

/* A training job's numbers are checked when it is queued, as `easel train` checks them: not
 * stored as they came (4294967297 epochs, 0 epochs) to fail later in the worker. */
Test(cli_jobs, train_job_numbers_that_do_not_fit_are_refused_when_queued) {
    if (access("bin/easel", X_OK) != 0)
        cr_skip_test("bin/easel not built");
    cr_assert_eq(easel("init"), 0);
    static const char *const bad[] = {"--epochs 4294967297", "--epochs 0", "--epochs -3",
                                      "--batch-size 99999999999999", "--seed -1",
                                      "--threads 5000", "--save-every -1",
                                      "--learning-rate 0", "--val-fraction 1", "--dropout 2",
                                      "--mode bogus", "--fusion-method sum"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(easel("jobs add train-reward %s", bad[i]), 2, "%s: %s", bad[i], out);
        char opt[32];
        snprintf(opt, sizeof opt, "%.*s", (int)strcspn(bad[i], " "), bad[i]);
        cr_assert(strstr(out, opt), "%s: the refusal does not name %s: %s", bad[i], opt, out);
    }
    cr_assert_eq(easel("jobs add eval-reward --checkpoint x --threads -4"), 2, "%s", out);
    cr_assert_eq(easel("jobs add score --checkpoint x --threads 99999"), 2, "%s", out);
    cr_assert_eq(easel("jobs list"), 0);
    cr_assert(strstr(out, "(no jobs)"), "nothing was queued:\n%s", out);
    cr_assert_eq(easel("jobs add train-reward --epochs 100000 --seed 0"), 0, "%s", out);
}

/* `jobs cancel 1 2` used to cancel job 1 and say nothing of 2; every jobs command that takes
 * one id refuses what it does not understand instead of doing part of what was asked. */
Test(cli_jobs, one_id_commands_refuse_extra_arguments) {
    if (access("bin/easel", X_OK) != 0)
        cr_skip_test("bin/easel not built");
    write_prompts();
    cr_assert_eq(easel("init"), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(easel("jobs add import --what prompts --path %s/prompts.csv", tmpdir), 0,
                     "%s", out);
    static const char *const bad[] = {"jobs cancel 1 2",        "jobs retry 1 2",
                                      "jobs resume 1 2",        "jobs show 1 2",
                                      "jobs show 1 --lgo 5",    "jobs wait 1 2",
                                      "jobs wait 1 --timeout x", "jobs wait 1 --timeout -1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(easel("%s", bad[i]), 2, "%s: %s", bad[i], out);
        cr_assert(strstr(out, "easel: jobs "), "%s: %s", bad[i], out);
    }
    cr_assert_eq(easel("jobs list"), 0);
    cr_assert(strstr(out, "    1  queued") && strstr(out, "    2  queued"),
              "a refused command changed a job:\n%s", out);
    cr_assert_eq(easel("jobs show 1 --log 5"), 0, "%s", out);
    cr_assert_eq(easel("jobs cancel 2"), 0, "%s", out);
    cr_assert_eq(easel("jobs wait 2 --timeout 0.5"), 1, "%s", out);
}

Test(cli_jobs, help_texts_have_examples_and_gpus_degrades) {
    if (access("bin/easel", X_OK) != 0)
        cr_skip_test("bin/easel not built");
    const char *cmds[] = {"jobs --help", "jobs add --help", "jobs add import --help",
                          "jobs list --help", "jobs show --help", "jobs cancel --help",
                          "jobs retry --help", "jobs resume --help", "jobs wait --help",
                          "jobs log --help",
                          "worker --help", "gpus --help"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        cr_assert_eq(easel("%s", cmds[i]), 0, "%s", cmds[i]);
        cr_assert(strstr(out, "example"), "%s has no example:\n%s", cmds[i], out);
    }
    cr_assert_eq(easel("jobs add import --help"), 0);
    cr_assert(strstr(out, "--path") && strstr(out, "required"), "%s", out);
    cr_assert_eq(easel("gpus"), 0, "no GPU is not an error");
    cr_assert(strstr(out, "EASEL_NO_GPU") && strstr(out, "CPU"), "%s", out);
}

Test(cli_jobs, worker_resumes_a_dead_workers_job_and_stops_on_sigterm) {
    if (access("bin/easel", X_OK) != 0)
        cr_skip_test("bin/easel not built");
    write_prompts();
    cr_assert_eq(easel("init"), 0);
    cr_assert_eq(easel("jobs add import --what prompts --path %s/prompts.csv", tmpdir), 0);
    /* a worker on this host claimed it, then died (a pid that does not exist) */
    char db[128];
    snprintf(db, sizeof db, "%s/s.db", tmpdir);
    Store *st = store_open(db, NULL);
    support_job_claim(st, "dead:1:t0", jobs_host(), 0x7ffffff0);
    cr_assert_eq(easel("jobs list"), 0);
    cr_assert(strstr(out, "interrupted") && strstr(out, "is gone"), "%s", out);
    cr_assert_eq(easel("worker --resume --until-idle"), 0, "%s", out);
    cr_assert(strstr(out, "resumed interrupted job #1"), "%s", out);
    cr_assert_eq(easel("jobs wait 1"), 0, "%s", out);
    store_close(st);

    /* SIGTERM stops an idle worker cleanly, exit 0 */
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        execl("bin/easel", "easel", "--db", db, "worker", "--quiet", (char *)NULL);
        _exit(127);
    }
    struct timespec ts = {0, 500 * 1000000L};
    nanosleep(&ts, NULL);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}
