/* A tmux test of the Jobs screen: add a job through the form, watch its progress move, cancel
 * it, as a user would.
 *
 * The job must run long enough to watch, so it is a test-only kind ("test-slow") that lives
 * in this binary only. This binary therefore has its own main(): run with
 * EASEL_TEST_TUI_DB=PATH it registers the kind and becomes the easel TUI on that store
 * (inside tmux); run normally it is a Criterion test binary whose test starts itself that way
 * in a private tmux server, types keys and reads the screen. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "base.h"
#include "cli.h"
#include "jobkind.h"
#include "store_jobs.h"
#include "support.h"
#include "support_fixtures.h"

/* ---- the test-only kind ----------------------------------------------------------------- */

static int run_slow(JobCtx *ctx, const JobParams *p, Err *err) {
    int64_t steps = job_param_int(p, "steps");
    for (int64_t i = 0; i < steps; i++) {
        if (job_cancelled(ctx))
            return err_set(err, ERR_CANCELLED, "stopped at step %lld", (long long)i);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        job_progress(ctx, (double)(i + 1), (double)steps, "steps");
    }
    return 0;
}

static const JobParamSpec slow_params[] = {
    {"steps", JOB_PARAM_INT, "3000", "steps of 20 ms", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const JobKind kind_slow = {
    .name = "test-slow", .summary = "sleeps in steps (tests only)", .help = "tests only",
    .params = slow_params, .run = run_slow,
};

/* ---- the tmux driver ---------------------------------------------------------------------- */

static char tmpdir[64], db[128], sock[64];

static void keys(const char *k) { support_sh("tmux -L %s send-keys -t t %s", sock, k); }

/* The screen as text, into BUF. */
static void screen(char *buf, size_t n) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "tmux -L %s capture-pane -t t -p", sock);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = '\0';
    pclose(f);
}

/* Wait until the screen shows NEEDLE; returns 1, or 0 after SECONDS. */
static int wait_screen(const char *needle, double seconds, char *buf, size_t n) {
    double t0 = base_now();
    do {
        screen(buf, n);
        if (strstr(buf, needle))
            return 1;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    } while (base_now() - t0 < seconds);
    return 0;
}

/* Wait until the screen no longer shows NEEDLE; returns 1, or 0 after SECONDS. */
static int wait_gone(const char *needle, double seconds, char *buf, size_t n) {
    double t0 = base_now();
    do {
        screen(buf, n);
        if (!strstr(buf, needle))
            return 1;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    } while (base_now() - t0 < seconds);
    return 0;
}

/* The percentage shown on the line of job #1, or -1. */
static int percent_of_job1(const char *buf) {
    const char *line = strstr(buf, "    1 running");
    if (!line)
        return -1;
    const char *pct = strchr(line, '%');
    const char *eol = strchr(line, '\n');
    if (!pct || (eol && pct > eol))
        return -1;
    const char *p = pct;
    while (p > line && (p[-1] == ' ' || (p[-1] >= '0' && p[-1] <= '9')))
        p--;
    return atoi(p);
}

/* Start this binary as the TUI on the test store in the private tmux server, with ENV
 * (VAR=value ...) added and the TUI options ARGS (--threads N, --gpu-share N: see main). */
static void start_tui_args(const char *env, const char *args) {
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert(n > 0);
    self[n] = '\0';
    support_tmux_new("tmux -L %s new-session -d -s t -x 140 -y 40 "
                     "'env -u BXFI_MAP -u EASEL_WORKER_THREADS -u EASEL_GPU_SHARE %s "
                     "EASEL_TEST_TUI_DB=%s %s %s 2>%s/stderr.txt; sleep 60'", sock, env, db, self,
                     args, tmpdir);
}

static void start_tui(const char *env) { start_tui_args(env, "--threads 1"); }

/* Queue a test-slow job of STEPS steps wanting GPUS GPUs; its id. */
static int64_t queue_slow(Store *st, int steps, int gpus) {
    char params[64];
    snprintf(params, sizeof params, "{\"steps\":%d}", steps);
    JobNew jn = {.kind = "test-slow", .params = params, .gpus_wanted = gpus};
    int64_t id;
    cr_assert_eq(store_job_add(st, &jn, &id, NULL), 0);
    return id;
}

static void setup(void) {
    if (support_sh("command -v tmux >/dev/null 2>&1") != 0)
        cr_skip_test("tmux is not installed (apt-get install tmux)");
    support_tmpdir_store(tmpdir, sizeof tmpdir, "jobtui", "s.db", db, sizeof db);
    snprintf(sock, sizeof sock, "easel-test-%d", (int)getpid());
}

static void teardown(void) {
    support_sh("tmux -L %s kill-server 2>/dev/null", sock);
    support_tmpdir_remove(tmpdir);
}

Test(jobs_tui, add_watch_progress_cancel, .init = setup, .fini = teardown, .timeout = 60) {
    start_tui("EASEL_NO_GPU=1");
    static char buf[65536];
    if (!wait_screen("No jobs yet", 10, buf, sizeof buf)) {
        support_sh("cat %s/stderr.txt >&2", tmpdir);
        cr_assert_fail("Jobs screen not shown:\n%s", buf);
    }

    /* add: a → kind menu, End → the test kind (registered last), Enter → form, s → queue */
    keys("a");
    cr_assert(wait_screen("New job: pick a kind", 5, buf, sizeof buf), "%s", buf);
    keys("End");
    keys("Enter");
    cr_assert(wait_screen("New job: test-slow", 5, buf, sizeof buf), "%s", buf);
    cr_assert(strstr(buf, "[3000]"), "form shows the default from the schema:\n%s", buf);
    keys("s");
    cr_assert(wait_screen("job #1 (test-slow) queued", 5, buf, sizeof buf), "%s", buf);

    /* watch: it runs and its percentage grows */
    cr_assert(wait_screen("    1 running", 10, buf, sizeof buf), "%s", buf);
    int p0 = -1, p1 = -1;
    double t0 = base_now();
    while (base_now() - t0 < 15 && (p0 < 0 || p1 <= p0)) {
        screen(buf, sizeof buf);
        int p = percent_of_job1(buf);
        if (p0 < 0)
            p0 = p;
        else
            p1 = p;
        struct timespec ts = {0, 300 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert(p0 >= 0 && p1 > p0, "progress did not move (%d%% -> %d%%):\n%s", p0, p1, buf);
    cr_assert(strstr(buf, "steps"), "unit shown:\n%s", buf);
    cr_assert(strstr(buf, "log (live)") && strstr(buf, "started on"), "log tail:\n%s", buf);

    /* cancel: c, and the screen shows it cancelled within a second or two */
    keys("c");
    cr_assert(wait_screen("    1 cancelled", 3, buf, sizeof buf), "%s", buf);
    Store *st = store_open(db, NULL);
    JobRow r;
    cr_assert_eq(store_job_get(st, 1, &r, NULL), 0);
    cr_assert_eq(r.state, JOB_STATE_CANCELLED);
    cr_assert(r.done > 0 && r.done < 3000);
    store_job_row_deinit(&r);

    /* a job added by another process (here: this test, through the store) shows up live */
    queue_slow(st, 1, 0);
    cr_assert(wait_screen("    2 succeeded", 5, buf, sizeof buf), "%s", buf);
    store_close(st);

    /* the GPU screen says plainly that there is no GPU, and why */
    keys("F6");
    cr_assert(wait_screen("No GPU.", 3, buf, sizeof buf), "%s", buf);
    cr_assert(strstr(buf, "EASEL_NO_GPU") && strstr(buf, "runs on the CPU"), "%s", buf);
    keys("q");
}

/* The TUI's pool takes its thread count from the config the CLI fills (--threads), not from
 * the environment; $EASEL_WORKER_THREADS is only the CLI's fallback when no flag is given. */
Test(jobs_tui, pool_threads_come_from_the_config, .init = setup, .fini = teardown,
     .timeout = 60) {
    static char buf[65536];
    start_tui_args("EASEL_NO_GPU=1 EASEL_WORKER_THREADS=3", "--threads 2");
    cr_assert(wait_screen("here: 0/2 workers busy", 10, buf, sizeof buf), "%s", buf);
    keys("q");
    support_sh("tmux -L %s kill-server 2>/dev/null", sock);

    start_tui_args("EASEL_NO_GPU=1 EASEL_WORKER_THREADS=3", "");
    cr_assert(wait_screen("here: 0/3 workers busy", 10, buf, sizeof buf), "%s", buf);
    keys("q");
    support_sh("tmux -L %s kill-server 2>/dev/null", sock);

    start_tui_args("EASEL_NO_GPU=1 EASEL_WORKER_THREADS=3", "--threads 0");
    cr_assert(wait_screen("no workers in this TUI", 10, buf, sizeof buf), "%s", buf);
    keys("q");
}

Test(jobs_tui, gpu_panels_with_history_and_the_job_holding_the_gpu, .init = setup,
     .fini = teardown, .timeout = 60) {
    if (support_sh("command -v cc >/dev/null 2>&1") != 0)
        cr_skip_test("no C compiler to build the NVML stand-in");
    char lib[160];
    snprintf(lib, sizeof lib, "%s/libfake-nvml.so", tmpdir);
    cr_assert_eq(support_sh("cc -shared -fPIC -O1 -o %s tests/fixtures/gpu/fake_nvml.c", lib), 0);
    /* a job that wants one GPU, queued before the TUI (and its pool) starts */
    Store *st = store_open(db, NULL);
    queue_slow(st, 3000, 1);
    store_close(st);
    char env[256];
    snprintf(env, sizeof env, "EASEL_NVML_LIB=%s", lib);
    start_tui(env);
    static char buf[65536];
    cr_assert(wait_screen("    1 running", 10, buf, sizeof buf), "%s", buf);
    keys("F6");
    cr_assert(wait_screen("GPU 1  Fake GPU B", 5, buf, sizeof buf), "%s", buf);
    cr_assert(strstr(buf, "GPU 0  Fake GPU A"), "%s", buf);
    cr_assert(strstr(buf, "job  #1 test-slow"), "the job holding GPU 0:\n%s", buf);
    cr_assert(strstr(buf, "2.0 / 8.0 GiB") && strstr(buf, "61 C"), "%s", buf);
    cr_assert(strstr(buf, "utilisation") && strstr(buf, "memory"), "%s", buf);
    /* GPU B runs at 100 %: after two samples its utilisation graph has full braille cells */
    cr_assert(wait_screen("\u28ff", 5, buf, sizeof buf), "no full braille cell:\n%s", buf);
    keys("b");
    cr_assert(wait_screen("\u2588", 3, buf, sizeof buf), "no block graph after b:\n%s", buf);
    keys("F4");
    keys("c");
    cr_assert(wait_screen("    1 cancelled", 3, buf, sizeof buf), "%s", buf);
    keys("q");
}

/* Without a GPU, F6 shows the CPU (total and per core), memory, load and the job this TUI's
 * worker thread runs, so CPU training can be watched; its title says so. */
Test(jobs_tui, system_screen_without_gpu_shows_cpu_memory_load_and_jobs, .init = setup,
     .fini = teardown, .timeout = 60) {
    Store *st = store_open(db, NULL);
    queue_slow(st, 3000, 0);
    store_close(st);
    start_tui("EASEL_NO_GPU=1");
    static char buf[65536];
    cr_assert(wait_screen("    1 running", 10, buf, sizeof buf), "%s", buf);
    keys("F6");
    cr_assert(wait_screen("System: CPU, memory, load and the jobs of this host (no GPU)", 5,
                          buf, sizeof buf), "%s", buf);
    /* after two samples: a total, per-core lines, memory and load */
    cr_assert(wait_screen("% of ", 5, buf, sizeof buf), "%s", buf);
    cr_assert(strstr(buf, " core"), "%s", buf);
    cr_assert(strstr(buf, "Memory ") && strstr(buf, "GiB in use"), "%s", buf);
    cr_assert(strstr(buf, "load average"), "%s", buf);
    cr_assert(strstr(buf, "  0 "), "per-core line of core 0:\n%s", buf);
    cr_assert(strstr(buf, "#1    test-slow") && strstr(buf, "this TUI, thread"),
              "the worker thread's job:\n%s", buf);
    cr_assert(strstr(buf, "No GPU.") && strstr(buf, "EASEL_NO_GPU"), "%s", buf);
    keys("F4");
    keys("c");
    cr_assert(wait_screen("    1 cancelled", 5, buf, sizeof buf), "%s", buf);
    keys("q");
}

/* q while this TUI's pool runs a job asks first; Esc stays; i interrupts it (resumable). */
Test(jobs_tui, quit_asks_and_i_interrupts, .init = setup, .fini = teardown, .timeout = 60) {
    Store *st = store_open(db, NULL);
    int64_t id = queue_slow(st, 3000, 0);
    start_tui("EASEL_NO_GPU=1");
    static char buf[65536];
    cr_assert(wait_screen("    1 running", 10, buf, sizeof buf), "%s", buf);
    keys("q");
    cr_assert(wait_screen("1 job running here: w leave it to a headless worker, i interrupt it",
                          5, buf, sizeof buf), "no question:\n%s", buf);
    keys("Escape");
    cr_assert(wait_gone("1 job running here", 5, buf, sizeof buf),
              "Esc stays and drops the question:\n%s", buf);
    cr_assert(strstr(buf, "    1 running"), "%s", buf);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert_eq(r.state, JOB_STATE_RUNNING, "still running after Esc");
    store_job_row_deinit(&r);
    keys("q");
    cr_assert(wait_screen("1 job running here", 5, buf, sizeof buf), "%s", buf);
    keys("i");
    double t0 = base_now();
    do {
        cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
        JobState s = r.state;
        store_job_row_deinit(&r);
        if (s == JOB_STATE_INTERRUPTED)
            break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    } while (base_now() - t0 < 10);
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    cr_assert_eq(r.state, JOB_STATE_INTERRUPTED, "i interrupts (state %d)", r.state);
    store_job_row_deinit(&r);
    store_close(st);
    char *note = NULL;
    for (int i = 0; i < 100 && !(note && strstr(note, "interrupted")); i++) {
        free(note);
        note = NULL;
        support_run(NULL, &note, NULL, "cat %s/stderr.txt", tmpdir);
        usleep(50000);
    }
    cr_assert(note && strstr(note, "1 job interrupted; resume with u"), "%s", note ? note : "");
    free(note);
}

/* q then w: the TUI ends, and a headless worker it started (own session, log beside the store)
 * resumes the job and runs it to the end, then exits. */
Test(jobs_tui, quit_w_leaves_the_job_to_a_headless_worker, .init = setup, .fini = teardown,
     .timeout = 60) {
    Store *st = store_open(db, NULL);
    int64_t id = queue_slow(st, 150, 0);
    start_tui("EASEL_NO_GPU=1");
    static char buf[65536];
    cr_assert(wait_screen("    1 running", 10, buf, sizeof buf), "%s", buf);
    JobRow r;
    cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
    int64_t tui_pid = r.pid;
    store_job_row_deinit(&r);
    keys("q");
    cr_assert(wait_screen("w leave it to a headless worker", 5, buf, sizeof buf), "%s", buf);
    keys("w");
    /* the TUI is gone and says (on stderr, here a file) where the worker's log is */
    char *note = NULL;
    for (int i = 0; i < 200; i++) {
        free(note);
        note = NULL;
        support_run(NULL, &note, NULL, "cat %s/stderr.txt", tmpdir);
        if (note && strstr(note, "left to a headless worker"))
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert(note && strstr(note, "1 job left to a headless worker") &&
                  strstr(note, "easel-worker.log"), "exit note: %s", note ? note : "");
    free(note);
    /* the job runs again, in another process, and ends */
    double t0 = base_now();
    int64_t pid = 0;
    JobState state = JOB_STATE_QUEUED;
    do {
        cr_assert_eq(store_job_get(st, id, &r, NULL), 0);
        state = r.state;
        if (r.state == JOB_STATE_RUNNING)
            pid = r.pid;
        store_job_row_deinit(&r);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    } while (state != JOB_STATE_SUCCEEDED && base_now() - t0 < 30);
    cr_assert_eq(state, JOB_STATE_SUCCEEDED, "the worker did not finish the job");
    cr_assert(pid > 0 && pid != tui_pid, "ran in pid %lld, the TUI was %lld", (long long)pid,
              (long long)tui_pid);
    store_close(st);
    char path[160];
    snprintf(path, sizeof path, "%s/easel-worker.log", tmpdir);
    cr_assert_eq(access(path, R_OK), 0, "no worker log in the workspace");
    /* --until-idle: the worker exits once the queue is empty */
    t0 = base_now();
    while (kill((pid_t)pid, 0) == 0 && base_now() - t0 < 10) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_neq(kill((pid_t)pid, 0), 0, "the worker (pid %lld) is still running",
                  (long long)pid);
}

/* ---- main: the TUI child, or Criterion ------------------------------------------------------ */

int main(int argc, char **argv) {
    /* the headless worker the TUI starts on quit (w) is this binary: `SELF --db PATH worker` */
    if (argc >= 4 && strcmp(argv[1], "--db") == 0 && strcmp(argv[3], "worker") == 0) {
        Err err = {0};
        if (jobkind_register(&kind_slow, &err))
            return 1;
        CliGlobal g = {.db_path = argv[2], .program = argv[0]};
        return cli_worker_main(&g, argc - 3, argv + 3);
    }
    const char *tui_db = getenv("EASEL_TEST_TUI_DB");
    if (tui_db) {
        Err err = {0};
        if (jobkind_register(&kind_slow, &err))
            return 1;
        AppConfig cfg = {.db_path = tui_db, .start_screen = "Jobs", .graphics = "none"};
        /* the pool's options as `easel --threads N --gpu-share N` hands them over */
        CliGlobal g = {.db_path = tui_db, .program = argv[0]};
        for (int i = 1; i + 1 < argc; i += 2)
            *(strcmp(argv[i], "--threads") == 0 ? &g.threads : &g.gpu_share) = argv[i + 1];
        if (cli_tui_workers(&g, &cfg))
            return 2;
        if (app_run(&cfg, &err)) {
            fprintf(stderr, "easel: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    return support_criterion_main(argc, argv);
}

/* Without the NVML library, F6 gives the reason once: "No GPU. <lib> could not be loaded",
 * not "No GPU. no GPU: ..." (issue 13 QA). */
Test(jobs_tui, system_screen_without_nvml_says_no_gpu_once, .init = setup, .fini = teardown,
     .timeout = 60) {
    start_tui("EASEL_NVML_LIB=/nonexistent/libnvidia-ml.so.1");
    static char buf[65536];
    cr_assert(wait_screen("No jobs yet", 10, buf, sizeof buf), "%s", buf);
    keys("F6");
    cr_assert(wait_screen("No GPU.", 5, buf, sizeof buf), "%s", buf);
    cr_assert(strstr(buf, "could not be loaded"), "%s", buf);
    cr_assert(!strstr(buf, "no GPU:") && !strstr(buf, "No GPU. no GPU"), "%s", buf);
    keys("q");
}
