/* cli_jobs — `easel jobs ...`, `easel worker` and `easel gpus`.
 *
 * `jobs add KIND --param value` is generated from the kind's schema in the registry
 * (jobkind.h): its --help lists the parameters with types, defaults and help. Commands that
 * read jobs first reap dead workers, so a job whose process was killed shows as interrupted
 * in any easel process. `easel worker` parses its flags into a SessionConfig and runs the
 * app layer's session (src/app/session.h: the same object as the TUI's): the session opens
 * and checks the store, and session_serve is the loop, logging to stderr; SIGINT or SIGTERM
 * stops it after running jobs checkpointed (they end interrupted, resumable); a second
 * signal exits at once (the jobs then show as interrupted via the dead-pid check).
 */
#include "cli.h"
#include "cli_escape.h"
#include "cli_kindcmd.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "fmt_json.h"
#include "gpu.h"
#include "jobkind.h"
#include "jobs.h"
#include "log.h"
#include "session.h"
#include "identity.h"
#include "store_jobs.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static int parse_id(const char *s, int64_t *id) {
    char *end;
    errno = 0;
    if (s[0] == '#')
        s++;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v <= 0)
        return -1;
    *id = v;
    return 0;
}

static void fmt_duration(double s, char *buf, size_t n) {
    if (s < 0) {
        snprintf(buf, n, "-");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void fmt_progress(const JobRow *r, char *buf, size_t n) {
    if (r->total > 0)
        snprintf(buf, n, "%3.0f%% %.0f/%.0f %s", 100.0 * r->done / r->total, r->done, r->total,
                 r->unit);
    else if (r->done > 0)
        snprintf(buf, n, "%.0f %s", r->done, r->unit);
    else
        snprintf(buf, n, "-");
}

static void print_kind_help(const JobKind *k) {
    int col = printf("usage: easel jobs add %s [JOB OPTIONS]", k->name);
    for (int i = 0; k->params[i].name; i++) {
        const JobParamSpec *p = &k->params[i];
        char item[96];
        int n = snprintf(item, sizeof item, p->def ? " [--%s V]" : " --%s V", p->name);
        if (col + n > 92) {
            col = printf("\n                    ") - 1;
        }
        col += printf("%s", item);
    }
    printf("\n\n%s\n\n%s\n\nparameters:\n", k->summary, k->help);
    if (!k->params[0].name)
        printf("  (none)\n");
    for (int i = 0; k->params[i].name; i++) {
        const JobParamSpec *p = &k->params[i];
        static const char *types[] = {"text", "path", "int", "number", "bool", "choice"};
        char def[96];
        if (!p->def)
            snprintf(def, sizeof def, "required");
        else if (!p->def[0])
            snprintf(def, sizeof def, "optional");
        else
            snprintf(def, sizeof def, "default %s", p->def);
        printf("  --%-18s %s, %s: %s\n", p->name,
               p->type == JOB_PARAM_CHOICE ? p->choices : types[p->type], def, p->help);
    }
    printf("\njob options:\n"
           "  --priority N        higher runs first (default 0)\n"
           "  --after ID[,ID...]  start only after these jobs succeeded\n"
           "  --gpus N            GPUs to hold (default %d%s)\n"
           "  --wait              wait for the job; exit 0 only if it succeeded\n",
           k->gpus, k->gpus == JOBKIND_GPUS_ALL ? " = every free GPU" : "");
    printf("the job runs in any 'easel worker' or easel TUI on this store.\n");
}

/* What a job's MESSAGE column says: its exit message, a cancel request, or what a queued
 * job waits for. */
static void fmt_message(const JobRow *r, char *buf, size_t n) {
    if (r->message)
        snprintf(buf, n, "%s", r->message);
    else if (r->cancel_requested)
        snprintf(buf, n, "cancel requested");
    else if (r->state == JOB_STATE_QUEUED && r->waiting)
        snprintf(buf, n, "waiting for %s", r->waiting);
    else
        buf[0] = '\0';
}

static void print_row_line(const JobRow *r) {
    char prog[64], eta[16], rate[32], msg[1024];
    fmt_progress(r, prog, sizeof prog);
    fmt_duration(r->eta, eta, sizeof eta);
    if (r->rate > 0)
        snprintf(rate, sizeof rate, "%.3g/s", r->rate);
    else
        snprintf(rate, sizeof rate, "-");
    fmt_message(r, msg, sizeof msg);
    printf("%5lld  %-11s %-18s %-10s %4d  %-26s %-10s %-8s %s\n", (long long)r->id,
           store_job_state_name(r->state), r->kind, r->queued_by[0] ? r->queued_by : "?",
           r->priority, prog, rate, eta, msg);
}

static void print_time(const char *label, double t) {
    if (t <= 0)
        return;
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%-12s %s\n", label, buf);
}

/* ---- jobs add ------------------------------------------------------------------------------- */

static int wait_for(const CliGlobal *g, Store *st, int64_t id, double timeout, int quiet);

static int is_bool_word(const char *s) {
    static const char *w[] = {"true", "false", "1", "0", "yes", "no", "on", "off"};
    for (size_t i = 0; i < ARRAY_LEN(w); i++)
        if (strcmp(s, w[i]) == 0)
            return 1;
    return 0;
}

static int parse_deps(const char *s, int64_t **deps, int *n) {
    char *copy = xstrdup(s);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        int64_t id;
        if (parse_id(tok, &id)) {
            free(copy);
            return -1;
        }
        *deps = xrealloc(*deps, sizeof **deps * (size_t)(*n + 1));
        (*deps)[(*n)++] = id;
    }
    free(copy);
    return 0;
}

static int cmd_add(const CliGlobal *g, int argc, char **argv) {
    if (argc < 2 || (argv[1][0] == '-' && cli_wants_help(argc, argv))) {
        printf("usage: easel jobs add KIND [--PARAM VALUE ...] [--priority N] [--after ID]"
               " [--gpus N] [--wait]\n\nQueue a job; prints its id. Kinds:\n");
        for (int i = 0; i < jobkind_count(); i++)
            printf("  %-18s %s\n", jobkind_at(i)->name, jobkind_at(i)->summary);
        printf("\n'easel jobs add KIND --help' lists a kind's parameters.\n"
               "example:\n  easel jobs add import --what ratings --path ratings.csv\n");
        return argc < 2 ? 2 : 0;
    }
    const JobKind *k = jobkind_find(argv[1]);
    if (!k) {
        cli_error("jobs add: unknown job kind '%s' (see 'easel jobs kinds')", argv[1]);
        return 2;
    }
    if (cli_wants_help(argc, argv)) {
        print_kind_help(k);
        return 0;
    }
    int n = 0, rc = 2, wait = 0;
    const char **names = xcalloc((size_t)argc, sizeof *names);
    const char **values = xcalloc((size_t)argc, sizeof *values);
    char **owned = xcalloc((size_t)argc, sizeof *owned);
    int64_t *deps = NULL;
    int n_deps = 0;
    JobNew jn = {.kind = k->name, .gpus_wanted = JOB_GPUS_OF_KIND};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            cli_error("jobs add %s: unexpected argument '%s' (parameters are --NAME VALUE; "
                      "see 'easel jobs add %s --help')", k->name, a, k->name);
            goto out;
        }
        char *name = xstrdup(a + 2);
        owned[i] = name;
        char *eq = strchr(name, '=');
        const char *val = NULL;
        if (eq) {
            *eq = '\0';
            val = eq + 1;
        }
        if (strcmp(name, "wait") == 0) {
            wait = 1;
            continue;
        }
        /* find the spec to know whether a value follows */
        const JobParamSpec *sp = NULL;
        for (int j = 0; k->params[j].name; j++)
            if (strcmp(k->params[j].name, name) == 0)
                sp = &k->params[j];
        int is_bool = sp && sp->type == JOB_PARAM_BOOL;
        if (!sp && strncmp(name, "no-", 3) == 0) {
            for (int j = 0; k->params[j].name; j++)
                if (strcmp(k->params[j].name, name + 3) == 0 &&
                    k->params[j].type == JOB_PARAM_BOOL) {
                    names[n] = name + 3;
                    values[n++] = "false";
                    sp = &k->params[j];
                }
            if (sp)
                continue;
        }
        if (!val) {
            if (is_bool && !(i + 1 < argc && is_bool_word(argv[i + 1])))
                val = "true";
            else if (i + 1 < argc)
                val = argv[++i];
            else {
                cli_error("jobs add %s: --%s needs a value", k->name, name);
                goto out;
            }
        }
        if (strcmp(name, "priority") == 0 || strcmp(name, "gpus") == 0) {
            long long v;
            if (cli_parse_long("jobs add", name[0] == 'p' ? "--priority" : "--gpus", val,
                               name[0] == 'p' ? INT_MIN : -1, name[0] == 'p' ? INT_MAX : 1024,
                               &v))
                goto out;
            if (name[0] == 'p')
                jn.priority = (int)v;
            else
                jn.gpus_wanted = (int)v;
            continue;
        }
        if (strcmp(name, "after") == 0) {
            if (parse_deps(val, &deps, &n_deps)) {
                cli_error("jobs add: --after needs job ids like 3 or 3,4, got '%s'", val);
                goto out;
            }
            continue;
        }
        names[n] = name;
        values[n++] = val;
    }
    Err err = {0};
    JobParams *p;
    Store *st;
    if ((rc = cli_kind_open(g, k, n, names, values, &p, &st)))
        goto out;
    jn.deps = deps;
    jn.n_deps = n_deps;
    int64_t id;
    rc = jobs_add(st, p, &jn, &id, &err);
    job_params_free(p);
    if (rc) {
        rc = cli_fail(&err);
    } else {
        if (k->gpu_required && jn.gpus_wanted != 0) {
            GpuSystem *gs = gpu_open();
            if (gpu_count(gs) == 0)
                fprintf(stderr, "easel: note: %s needs a GPU and this machine has none (%s); "
                        "the job waits for a worker on a GPU machine\n", k->name,
                        gpu_state_name(gpu_state(gs)));
            gpu_close(gs);
        }
        printf("%lld\n", (long long)id);
        fflush(stdout);
        rc = wait ? wait_for(g, st, id, 0, 1) : 0;
    }
    store_close(st);
out:
    base_strv_free(owned, (size_t)argc);
    free(names);
    free(values);
    free(deps);
    return rc;
}

/* ---- list, show, actions ------------------------------------------------------------------ */

static int jobs_list(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel jobs list [--state STATE[,STATE]] [--limit N]\n\n"
               "Jobs newest first with state, progress, rate, ETA and message.\n"
               "STATE: queued, running, succeeded, failed, cancelled, interrupted.\n\n"
               "example:\n  easel jobs list --state running,queued\n");
        return 0;
    }
    JobFilter f = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--state") == 0 && i + 1 < argc) {
            char *copy = xstrdup(argv[++i]);
            for (char *t = strtok(copy, ","); t; t = strtok(NULL, ",")) {
                int s = store_job_state_parse(t);
                if (s < 0) {
                    cli_error("jobs list: unknown state '%s' (queued, running, succeeded, "
                              "failed, cancelled, interrupted)", t);
                    free(copy);
                    return 2;
                }
                f.states |= 1u << s;
            }
            free(copy);
        } else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            long long v;
            if (cli_parse_long("jobs list", "--limit", argv[++i], 0, INT_MAX, &v))
                return 2;
            f.limit = (int)v;
        } else {
            return cli_unexpected("jobs list", argv[i], NULL);
        }
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    JobRow *rows;
    int n;
    jobs_reap(st, 0, NULL, NULL);
    if (store_jobs_list(st, &f, &rows, &n, &err)) {
        store_close(st);
        return cli_fail(&err);
    }
    printf("%5s  %-11s %-18s %-10s %4s  %-26s %-10s %-8s %s\n", "ID", "STATE", "KIND", "USER",
           "PRIO", "PROGRESS", "RATE", "ETA", "MESSAGE");
    for (int i = 0; i < n; i++)
        print_row_line(&rows[i]);
    if (n == 0)
        printf("(no jobs)\n");
    store_job_rows_free(rows, n);
    store_close(st);
    return 0;
}

static int get_id_arg(const char *cmd, int argc, char **argv, int64_t *id) {
    if (argc < 2 || parse_id(argv[1], id)) {
        cli_error("jobs %s: needs a job id (see 'easel jobs list')", cmd);
        return 2;
    }
    return 0;
}

/* The ID and at most one "OPT VALUE" after it (OPT NULL: nothing after the id): 0, or 2 after
 * saying what was not understood, so that `jobs cancel 1 2` does not cancel only job 1. */
static int only_id_and(const char *cmd, int argc, char **argv, const char *opt) {
    int i = 2;
    if (opt && argc >= 4 && strcmp(argv[2], opt) == 0)
        i = 4;
    if (i < argc) {
        cli_error("jobs %s: unexpected argument '%s'; it takes one job id%s%s (see 'easel jobs "
                  "%s --help')", cmd, argv[i], opt ? " and " : "", opt ? opt : "", cmd);
        return 2;
    }
    return 0;
}

static int jobs_show(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel jobs show ID [--log N]\n\n"
               "Everything about one job: state, parameters, progress, dependencies, GPUs,\n"
               "worker, times, message and the last N log lines (default 20, 0 = all).\n\n"
               "example:\n  easel jobs show 3 --log 50\n");
        return 0;
    }
    int64_t id;
    int rc = get_id_arg("show", argc, argv, &id);
    if (rc || (rc = only_id_and("show", argc, argv, "--log")))
        return rc;
    int tail = 20;
    if (argc >= 4 && strcmp(argv[2], "--log") == 0) {
        long long v;
        if (cli_parse_long("jobs show", "--log", argv[3], 0, INT_MAX, &v))
            return 2;
        tail = (int)v;
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    JobRow r;
    jobs_reap(st, 0, NULL, NULL);
    if (store_job_get(st, id, &r, &err)) {
        store_close(st);
        return cli_fail(&err);
    }
    char prog[64], eta[16];
    fmt_progress(&r, prog, sizeof prog);
    fmt_duration(r.eta, eta, sizeof eta);
    printf("job          #%lld\nkind         %s\nstate        %s%s\npriority     %d\n",
           (long long)r.id, r.kind, store_job_state_name(r.state),
           r.cancel_requested && r.state == JOB_STATE_RUNNING ? " (cancel requested)" : "",
           r.priority);
    if (r.queued_uid >= 0)
        printf("queued by    %s (uid %lld)\n", r.queued_by, (long long)r.queued_uid);
    else
        printf("queued by    unknown (queued before easel recorded it)\n");
    char *params = fmt_json_human(r.params); /* 0.2, not 0.20000000000000001 */
    printf("params       %s\nprogress     %s\n", params ? params : "{}", prog);
    free(params);
    if (r.rate > 0)
        printf("rate         %.4g %s/s\neta          %s\n", r.rate, r.unit, eta);
    if (r.n_deps) {
        printf("after        ");
        for (int i = 0; i < r.n_deps; i++)
            printf("%s#%lld", i ? ", " : "", (long long)r.deps[i]);
        printf("\n");
    }
    if (r.state == JOB_STATE_QUEUED && r.waiting)
        printf("waiting for  %s\n", r.waiting);
    printf("gpus         %s (wanted %d)\n", r.gpus ? r.gpus : "none", r.gpus_wanted);
    if (r.worker)
        printf("worker       %s\n", r.worker);
    if (r.retry_of)
        printf("retry of     #%lld\n", (long long)r.retry_of);
    printf("checkpoint   %s\n", r.checkpoint ? r.checkpoint : "none");
    print_time("created", r.created_at);
    print_time("started", r.started_at);
    print_time("heartbeat", r.state == JOB_STATE_RUNNING ? r.heartbeat_at : 0);
    print_time("finished", r.finished_at);
    if (r.message)
        printf("message      %s\n", r.message);
    JobLogLine *lines;
    int n;
    if (store_job_log_read(st, id, 0, tail, &lines, &n, &err) == 0) {
        printf("log%s\n", n ? ":" : "        (empty)");
        for (int i = 0; i < n; i++) {
            time_t tt = (time_t)lines[i].t;
            struct tm tm;
            localtime_r(&tt, &tm);
            char buf[16];
            strftime(buf, sizeof buf, "%H:%M:%S", &tm);
            printf("  %s %s\n", buf, lines[i].line);
        }
        store_job_log_free(lines, n);
    }
    store_job_row_deinit(&r);
    store_close(st);
    return 0;
}

typedef enum Action { ACT_CANCEL, ACT_RETRY, ACT_RESUME } Action;

/* A retry queues a job anew: the trust rules apply as to `jobs add` (trust.h). */
static int check_retry(Store *st, int64_t id, Err *err) {
    JobRow r;
    int rc = store_job_get(st, id, &r, err);
    if (rc)
        return rc;
    const JobKind *k = jobkind_find(r.kind);
    JobParams *p = NULL;
    if (!k)
        rc = err_set(err, ERR_FORMAT, "job #%lld is of kind '%s', which this easel does not "
                     "know", (long long)id, r.kind);
    else if ((rc = job_params_from_json(k, r.params, &p, err)) == 0)
        rc = job_params_check_trust(st, p, NULL, err);
    job_params_free(p);
    store_job_row_deinit(&r);
    return rc;
}

static int jobs_action(const CliGlobal *g, int argc, char **argv, Action act) {
    static const char *names[] = {"cancel", "retry", "resume"};
    static const char *helps[] = {
        "Cancel a job: a queued one at once, a running one within a second (it stops at\n"
        "its next check and leaves nothing half-written).",
        "Queue a new job with the same kind, parameters, priority and dependencies as an\n"
        "ended one; prints the new id.",
        "Re-queue a failed, cancelled or interrupted job (same id); a kind that\n"
        "checkpoints continues from its last checkpoint, others start over.",
    };
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel jobs %s ID\n\n%s\n\nexample:\n  easel jobs %s 3\n", names[act],
               helps[act], names[act]);
        return 0;
    }
    int64_t id;
    int rc = get_id_arg(names[act], argc, argv, &id);
    if (rc || (rc = only_id_and(names[act], argc, argv, NULL)))
        return rc;
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    jobs_reap(st, 0, NULL, NULL);
    if (act == ACT_CANCEL) {
        JobState s;
        if ((rc = store_job_cancel(st, id, &s, &err)) == 0)
            printf(s == JOB_STATE_CANCELLED ? "job #%lld cancelled\n"
                                            : "job #%lld: cancel requested; it stops within "
                                              "a second\n",
                   (long long)id);
    } else if (act == ACT_RETRY) {
        int64_t nid;
        if ((rc = check_retry(st, id, &err)) == 0 &&
            (rc = store_job_retry(st, id, &nid, &err)) == 0)
            printf("%lld\n", (long long)nid);
    } else {
        if ((rc = store_job_resume(st, id, &err)) == 0)
            printf("job #%lld queued again\n", (long long)id);
    }
    store_close(st);
    return rc ? cli_fail(&err) : 0;
}

static int jobs_priority(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv) || argc != 3) {
        printf("usage: easel jobs priority ID N\n\nSet a job's priority (higher runs first "
               "among queued jobs).\n\nexample:\n  easel jobs priority 3 10\n");
        return argc == 3 ? 0 : 2;
    }
    int64_t id;
    if (parse_id(argv[1], &id)) {
        cli_error("jobs priority: '%s' is not a job id", argv[1]);
        return 2;
    }
    long long prio;
    if (cli_parse_long("jobs priority", "priority", argv[2], INT_MIN, INT_MAX, &prio))
        return 2;
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    int rc = store_job_set_priority(st, id, (int)prio, &err);
    store_close(st);
    if (rc)
        return cli_fail(&err);
    printf("job #%lld priority %lld\n", (long long)id, prio);
    return 0;
}

static int wait_for(const CliGlobal *g, Store *st, int64_t id, double timeout, int quiet) {
    (void)g;
    double t0 = base_now(), last_print = 0;
    for (;;) {
        Err err = {0};
        JobRow r;
        jobs_reap(st, 0, NULL, NULL);
        if (store_job_get(st, id, &r, &err))
            return cli_fail(&err);
        JobState s = r.state;
        if (s != JOB_STATE_QUEUED && s != JOB_STATE_RUNNING) {
            printf("job #%lld %s%s%s\n", (long long)id, store_job_state_name(s),
                   r.message ? ": " : "", r.message ? r.message : "");
            store_job_row_deinit(&r);
            return s == JOB_STATE_SUCCEEDED ? 0 : 1;
        }
        if (!quiet && isatty(2) && base_now() - last_print > 1) {
            char prog[64];
            fmt_progress(&r, prog, sizeof prog);
            cli_escape_raw(stderr, "\r");
            fprintf(stderr, "job #%lld %s %s   ", (long long)id, store_job_state_name(s), prog);
            last_print = base_now();
        }
        store_job_row_deinit(&r);
        if (timeout > 0 && base_now() - t0 > timeout) {
            cli_error("jobs wait: job #%lld still %s after %.0f s", (long long)id,
                      store_job_state_name(s), timeout);
            return 1;
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int jobs_wait(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel jobs wait ID [--timeout SECONDS]\n\n"
               "Wait until the job ends; print its final state. Exit 0 only if it succeeded\n"
               "(1 if it failed, was cancelled or interrupted, or the timeout passed).\n"
               "Needs a worker on the store: 'easel worker' or an easel TUI.\n\n"
               "example:\n  easel jobs wait 3 && easel jobs add train ...\n");
        return 0;
    }
    int64_t id;
    int rc = get_id_arg("wait", argc, argv, &id);
    if (rc || (rc = only_id_and("wait", argc, argv, "--timeout")))
        return rc;
    double timeout = 0;
    if (argc >= 4) {
        char *end;
        timeout = strtod(argv[3], &end);
        if (end == argv[3] || *end || !(timeout >= 0) || timeout > 1e9) {
            cli_error("jobs wait: --timeout %s: expected seconds, a number >= 0", argv[3]);
            return 2;
        }
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    rc = wait_for(g, st, id, timeout, 0);
    store_close(st);
    return rc;
}

static void print_log_lines(const JobLogLine *lines, int n) {
    for (int i = 0; i < n; i++) {
        time_t tt = (time_t)lines[i].t;
        struct tm tm;
        localtime_r(&tt, &tm);
        char buf[16];
        strftime(buf, sizeof buf, "%H:%M:%S", &tm);
        printf("%s %s\n", buf, lines[i].line);
    }
    fflush(stdout);
}

static int jobs_log(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel jobs log ID [--tail N] [--follow]\n\n"
               "A job's log (all of it is kept). --tail N prints only the last N lines;\n"
               "--follow keeps printing new lines until the job ends (like tail -f), then\n"
               "exits 0 if it succeeded, else 1.\n\n"
               "example:\n  easel jobs log 3 --follow\n");
        return 0;
    }
    int64_t id;
    int rc = get_id_arg("log", argc, argv, &id);
    if (rc)
        return rc;
    int tail = 0, follow = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--tail") == 0 && i + 1 < argc) {
            long long v;
            if (cli_parse_long("jobs log", "--tail", argv[++i], 0, INT_MAX, &v))
                return 2;
            tail = (int)v;
        } else if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0) {
            follow = 1;
        } else {
            return cli_unexpected("jobs log", argv[i], NULL);
        }
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    JobRow r;
    if (store_job_get(st, id, &r, &err)) {
        store_close(st);
        return cli_fail(&err);
    }
    store_job_row_deinit(&r);
    int64_t after = 0;
    for (int first = 1;; first = 0) {
        JobLogLine *lines;
        int n;
        if (store_job_log_read(st, id, after, first ? tail : 0, &lines, &n, &err)) {
            store_close(st);
            return cli_fail(&err);
        }
        print_log_lines(lines, n);
        if (n)
            after = lines[n - 1].seq;
        store_job_log_free(lines, n);
        if (!follow)
            break;
        jobs_reap(st, 0, NULL, NULL);
        if (store_job_get(st, id, &r, &err)) {
            store_close(st);
            return cli_fail(&err);
        }
        JobState s = r.state;
        store_job_row_deinit(&r);
        if (s != JOB_STATE_QUEUED && s != JOB_STATE_RUNNING) {
            /* the last lines were written before the state changed: read them once more */
            if (store_job_log_read(st, id, after, 0, &lines, &n, &err) == 0) {
                print_log_lines(lines, n);
                store_job_log_free(lines, n);
            }
            rc = s == JOB_STATE_SUCCEEDED ? 0 : 1;
            break;
        }
        struct timespec ts = {0, 300 * 1000000L};
        nanosleep(&ts, NULL);
    }
    store_close(st);
    return rc;
}

static int jobs_kinds(void) {
    for (int i = 0; i < jobkind_count(); i++) {
        const JobKind *k = jobkind_at(i);
        printf("%-18s %s%s%s\n", k->name, k->summary, k->gpus ? " [GPU]" : "",
               k->checkpoints ? " [resumable]" : "");
    }
    if (!jobkind_count())
        printf("(no job kinds in this build)\n");
    return 0;
}

static void jobs_usage(void) {
    printf("usage: easel jobs COMMAND [ARGS]\n\n"
           "The persistent job queue of the store. Jobs run in 'easel worker' processes and\n"
           "in the easel TUI; every process on the store sees the same jobs.\n\n"
           "commands:\n"
           "  kinds               the job kinds and what they do\n"
           "  add KIND [--P V]    queue a job (see 'easel jobs add KIND --help'); prints its id\n"
           "  list                jobs with state, progress, rate, ETA\n"
           "  show ID             one job: parameters, progress, log tail\n"
           "  log ID [--follow]   the job's whole log; --follow until it ends\n"
           "  cancel ID           cancel (within a second when running)\n"
           "  retry ID            new job with the same parameters; prints its id\n"
           "  resume ID           re-queue a failed/cancelled/interrupted job from its checkpoint\n"
           "  priority ID N       change a job's priority\n"
           "  wait ID             wait; exit 0 only if it succeeded\n\n"
           "example:\n"
           "  id=$(easel jobs add import --what ratings --path ratings.csv) && easel jobs wait $id\n");
}

int cli_jobs_main(const CliGlobal *g, int argc, char **argv) {
    if (argc < 2 || (cli_wants_help(argc, argv) && argv[1][0] == '-')) {
        jobs_usage();
        return argc < 2 ? 2 : 0;
    }
    const char *c = argv[1];
    argc--;
    argv++;
    if (!strcmp(c, "add"))
        return cmd_add(g, argc, argv);
    if (!strcmp(c, "list") || !strcmp(c, "ls"))
        return jobs_list(g, argc, argv);
    if (!strcmp(c, "show"))
        return jobs_show(g, argc, argv);
    if (!strcmp(c, "cancel"))
        return jobs_action(g, argc, argv, ACT_CANCEL);
    if (!strcmp(c, "retry"))
        return jobs_action(g, argc, argv, ACT_RETRY);
    if (!strcmp(c, "resume"))
        return jobs_action(g, argc, argv, ACT_RESUME);
    if (!strcmp(c, "priority"))
        return jobs_priority(g, argc, argv);
    if (!strcmp(c, "wait"))
        return jobs_wait(g, argc, argv);
    if (!strcmp(c, "log"))
        return jobs_log(g, argc, argv);
    if (!strcmp(c, "kinds"))
        return jobs_kinds();
    cli_error("jobs: unknown command '%s' (see 'easel jobs --help')", c);
    return 2;
}

/* ---- worker --------------------------------------------------------------------------------- */

int cli_worker_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel worker [--threads N] [--gpu-share N] [--resume] [--until-idle] "
               "[--quiet]\n                    [--accept-user NAME ...]\n\n"
               "Run queued jobs of the store headless (under nohup, systemd or tmux), logging\n"
               "to stderr. Several workers (and TUIs) may serve one store: each job runs once.\n"
               "SIGINT/SIGTERM stop it cleanly: running jobs checkpoint and end interrupted\n"
               "(resume them later); a second signal exits at once.\n\n"
               "options:\n"
               "  --threads N     worker threads (default: the number of cores, %d here)\n"
               "  --gpu-share N   jobs that may share one GPU (default 1: exclusive)\n"
               "  --resume        first re-queue every interrupted job (e.g. after a reboot;\n"
               "                  they continue from their checkpoints)\n"
               "  --until-idle    exit when no job is queued or running here\n"
               "  --quiet         log warnings and errors only\n"
               "  --accept-user NAME\n"
               "                  also run jobs queued by Unix user NAME (repeatable); by\n"
               "                  default a worker runs only its own user's jobs\n\n"
               "Every path a job reads or writes must lie in the store's folder or under an\n"
               "output root ('easel config output-root'); the worker checks again before\n"
               "each job runs. doc/annotators.md has the trust model.\n\n"
               "example:\n  nohup easel --db work/easel.db worker --threads 4 2>worker.log &\n",
               jobs_default_threads());
        return 0;
    }
    SessionConfig cfg = {.db_path = g->db_path, .threads = SESSION_THREADS_DEFAULT};
    int until_idle = 0, resume = 0, n_accept = 0;
    const char **accept = NULL; /* --accept-user names, NULL-ended */
    LogLevel level = LOG_INFO;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--threads") == 0 || strcmp(argv[i], "-j") == 0) && i + 1 < argc) {
            long long v;
            if (cli_parse_long("worker", "--threads", argv[++i], 1, 256, &v)) {
                free(accept);
                return 2;
            }
            cfg.threads = (int)v;
        } else if (strcmp(argv[i], "--gpu-share") == 0 && i + 1 < argc) {
            long long v;
            if (cli_parse_long("worker", "--gpu-share", argv[++i], 1, 1024, &v)) {
                free(accept);
                return 2;
            }
            cfg.gpu_share = (int)v;
        } else if (strcmp(argv[i], "--until-idle") == 0) {
            until_idle = 1;
        } else if (strcmp(argv[i], "--resume") == 0) {
            resume = 1;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            level = LOG_WARN;
        } else if (strcmp(argv[i], "--accept-user") == 0 && i + 1 < argc && argv[i + 1][0]) {
            accept = xrealloc(accept, sizeof *accept * (size_t)(n_accept + 2));
            accept[n_accept++] = argv[++i];
            accept[n_accept] = NULL;
        } else {
            static const char *const known[] = {"--threads", "--gpu-share", "--until-idle",
                                                "--resume", "--quiet", "--accept-user", NULL};
            free(accept);
            if (strcmp(argv[i], "--accept-user") == 0) {
                cli_error("worker: --accept-user needs a login name (see 'easel worker "
                          "--help')");
                return 2;
            }
            return cli_unknown_option("worker", argv[i], known);
        }
    }
    cfg.accept_users = (const char *const *)accept;
    log_to_stderr(level);
    for (int i = 0; i < n_accept; i++)
        if (!getpwnam(accept[i]))
            log_warn("--accept-user %s: no such user on this machine (a job records the "
                     "login of whoever queued it; 'easel jobs list' shows them)", accept[i]);
    Err err = {0};
    Session *session;
    if (session_open(&cfg, &session, &err)) { /* the store, its owner */
        free(accept);
        return cli_fail(&err);
    }
    if (resume)
        session_resume_interrupted(session);
    log_info("worker %s:%lld serving %s, running jobs queued by %s%s%s", jobs_host(),
             (long long)getpid(), g->db_path, identity_login(), n_accept ? " and " : "",
             n_accept ? "the accepted users" : " only");
    struct stat sb;
    if (geteuid() == 0 && stat(g->db_path, &sb) == 0 && (sb.st_mode & (S_IWGRP | S_IWOTH)))
        log_warn("running as root on a store other users can write (mode %03o): whoever can "
                 "write the file can add a job as if root queued it, with sqlite3, and this "
                 "worker would run it as root (doc/annotators.md); run workers as an "
                 "unprivileged user", (unsigned)(sb.st_mode & 0777));
    SessionServeOptions so = {.until_idle = until_idle};
    int rc = session_serve(session, &so, &err);
    if (rc == SESSION_ABANDONED) {
        free(accept);
        return 130; /* not session_close: it would wait for the running jobs */
    }
    session_close(session);
    free(accept);
    return rc < 0 ? cli_fail(&err) : 0;
}

/* ---- gpus ------------------------------------------------------------------------------------ */

static void print_bytes(const char *label, uint64_t b) {
    printf("  %-18s %.2f GiB (%llu bytes)\n", label, (double)b / (1024.0 * 1024 * 1024),
           (unsigned long long)b);
}

int cli_gpus_main(const CliGlobal *g, int argc, char **argv) {
    (void)g;
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel gpus\n\n"
               "GPU discovery through NVML (libnvidia-ml.so.1, loaded at run time): driver,\n"
               "and per GPU everything NVML reports: name, UUID, PCI, memory, utilisation,\n"
               "temperature, power, clocks, PCIe link, modes and the processes on it.\n"
               "Without NVML or a GPU it says so and exits 0: easel runs on the CPU.\n"
               "EASEL_NO_GPU=1 hides GPUs from easel; EASEL_NVML_LIB=PATH loads another NVML.\n\n"
               "example:\n  easel gpus\n");
        return 0;
    }
    if (argc > 1)
        return cli_unexpected("gpus", argv[1], NULL);
    GpuSystem *gs = gpu_open();
    if (gpu_state(gs) != GPU_STATE_OK) {
        printf("%s\n", gpu_reason(gs));
        gpu_close(gs);
        return 0;
    }
    int cuda = gpu_cuda_driver_version(gs);
    printf("NVML           %s (%s)\ndriver         %s\nCUDA driver    %d.%d\nGPUs           %d\n",
           gpu_nvml_version(gs)[0] ? gpu_nvml_version(gs) : "n/a", gpu_library(gs),
           gpu_driver_version(gs)[0] ? gpu_driver_version(gs) : "n/a", cuda / 1000,
           cuda % 1000 / 10, gpu_count(gs));
    int rc = 0;
    for (int i = 0; i < gpu_count(gs); i++) {
        GpuInfo o;
        Err err = {0};
        if (gpu_query(gs, i, &o, &err)) {
            cli_fail(&err);
            rc = 1;
            continue;
        }
        unsigned v = o.valid;
        printf("\nGPU %d: %s\n", i, o.name);
#define NA(bit) (!(v & (bit)))
        printf("  %-18s %s\n", "uuid", NA(GPU_HAS_UUID) ? "n/a" : o.uuid);
        printf("  %-18s %s\n", "serial", NA(GPU_HAS_SERIAL) ? "n/a" : o.serial);
        printf("  %-18s %s\n", "pci bus", NA(GPU_HAS_PCI) ? "n/a" : o.pci_bus_id);
        printf("  %-18s %s\n", "vbios", NA(GPU_HAS_VBIOS) ? "n/a" : o.vbios);
        if (NA(GPU_HAS_CC))
            printf("  %-18s n/a\n", "compute capability");
        else
            printf("  %-18s %d.%d\n", "compute capability", o.cc_major, o.cc_minor);
        if (NA(GPU_HAS_MEM)) {
            printf("  %-18s n/a\n", "memory");
        } else {
            print_bytes("memory total", o.mem_total);
            print_bytes("memory used", o.mem_used);
            print_bytes("memory free", o.mem_free);
        }
        if (!NA(GPU_HAS_BAR1))
            printf("  %-18s %.0f / %.0f MiB\n", "BAR1 used/total", o.bar1_used / 1048576.0,
                   o.bar1_total / 1048576.0);
        if (NA(GPU_HAS_UTIL))
            printf("  %-18s n/a\n", "utilisation");
        else
            printf("  %-18s gpu %u %%, memory %u %%\n", "utilisation", o.util_gpu, o.util_mem);
        if (NA(GPU_HAS_TEMP))
            printf("  %-18s n/a\n", "temperature");
        else if (NA(GPU_HAS_TEMP_LIMITS))
            printf("  %-18s %u C\n", "temperature", o.temp_c);
        else
            printf("  %-18s %u C (slowdown %u C, shutdown %u C)\n", "temperature", o.temp_c,
                   o.temp_slowdown_c, o.temp_shutdown_c);
        if (NA(GPU_HAS_POWER))
            printf("  %-18s n/a\n", "power");
        else if (NA(GPU_HAS_POWER_LIMIT))
            printf("  %-18s %.1f W\n", "power", o.power_w);
        else
            printf("  %-18s %.1f W of %.1f W limit\n", "power", o.power_w, o.power_limit_w);
        if (!NA(GPU_HAS_ENERGY))
            printf("  %-18s %.1f kJ since driver load\n", "energy", o.energy_mj / 1e6);
        if (NA(GPU_HAS_FAN))
            printf("  %-18s n/a\n", "fan");
        else
            printf("  %-18s %u %%\n", "fan", o.fan_pct);
        if (!NA(GPU_HAS_CLOCKS))
            printf("  %-18s graphics %u, sm %u, memory %u MHz\n", "clocks", o.clock_gfx_mhz,
                   o.clock_sm_mhz, o.clock_mem_mhz);
        if (!NA(GPU_HAS_CLOCKS_MAX))
            printf("  %-18s graphics %u, sm %u, memory %u MHz\n", "clocks max",
                   o.clock_gfx_max_mhz, o.clock_sm_max_mhz, o.clock_mem_max_mhz);
        if (!NA(GPU_HAS_PSTATE))
            printf("  %-18s P%d\n", "performance state", o.pstate);
        if (!NA(GPU_HAS_PCIE))
            printf("  %-18s gen %u x%u (max gen %u x%u)\n", "pcie link", o.pcie_gen,
                   o.pcie_width, o.pcie_gen_max, o.pcie_width_max);
        if (!NA(GPU_HAS_PERSISTENCE))
            printf("  %-18s %s\n", "persistence mode", o.persistence ? "on" : "off");
        if (!NA(GPU_HAS_COMPUTE_MODE)) {
            static const char *modes[] = {"default", "exclusive thread", "prohibited",
                                          "exclusive process"};
            printf("  %-18s %s\n", "compute mode",
                   o.compute_mode >= 0 && o.compute_mode < 4 ? modes[o.compute_mode] : "?");
        }
        if (!NA(GPU_HAS_MIG))
            printf("  %-18s %s\n", "MIG mode", o.mig ? "enabled" : "disabled");
        if (!NA(GPU_HAS_ECC))
            printf("  %-18s %s\n", "ECC", o.ecc ? "enabled" : "disabled");
        if (NA(GPU_HAS_PROCS)) {
            printf("  %-18s n/a\n", "processes");
        } else {
            printf("  %-18s %d\n", "processes", o.n_procs);
            for (int j = 0; j < o.n_procs; j++) {
                const GpuProcess *p = &o.procs[j];
                if (p->mem_used == UINT64_MAX)
                    printf("    pid %-8u %-8s %-20s memory n/a\n", p->pid,
                           p->graphics ? "graphics" : "compute", p->name);
                else
                    printf("    pid %-8u %-8s %-20s %.0f MiB\n", p->pid,
                           p->graphics ? "graphics" : "compute", p->name,
                           p->mem_used / 1048576.0);
            }
        }
#undef NA
    }
    gpu_close(gs);
    return rc;
}
