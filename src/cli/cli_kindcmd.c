/* cli_kindcmd — commands whose flags are a job kind's parameters. See cli_kindcmd.h. */
#include "cli_kindcmd.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "jobs.h"

const JobParamSpec *cli_kind_param(const JobKind *k, const char *name) {
    for (const JobParamSpec *p = k->params; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

int cli_kind_unknown(const char *cmd, const JobKind *k, const char *opt,
                     const char *const *extra) {
    enum { MAX = 64 }; /* the tune kind has 37 parameters (online16) */
    char buf[MAX][40];
    const char *known[MAX + 1];
    int n = 0;
    for (const JobParamSpec *p = k->params; p->name && n < MAX; p++, n++) {
        snprintf(buf[n], sizeof buf[n], "--%s", p->name);
        known[n] = buf[n];
    }
    for (int i = 0; extra && extra[i] && n < MAX; i++)
        known[n++] = extra[i];
    known[n] = NULL;
    return cli_unknown_option(cmd, opt, known);
}

void cli_kind_options(const JobKind *k, const char *skip) {
    for (const JobParamSpec *p = k->params; p->name; p++) {
        if (skip && strcmp(p->name, skip) == 0)
            continue;
        int def = p->def && p->def[0] && p->type != JOB_PARAM_BOOL;
        printf("  --%-12s %s%s%s%s\n", p->name, p->help, def ? " (default " : "",
               def ? p->def : "", def ? ")" : "");
    }
}

int cli_kind_queue(Store *st, const JobParams *p, const char *cmd) {
    JobNew jn = {.gpus_wanted = JOB_GPUS_OF_KIND};
    int64_t id = 0;
    Err err = {0};
    if (jobs_add(st, p, &jn, &id, &err))
        return cli_fail(&err);
    printf("%lld\n", (long long)id);
    fprintf(stderr, "queued %s job #%lld; it runs in any 'easel worker' or TUI on this store\n",
            cmd, (long long)id);
    return 0;
}

int cli_kind_open(const CliGlobal *g, const JobKind *k, int n, const char **names,
                  const char **values, JobParams **p, Store **st) {
    Err err = {0};
    *p = NULL;
    *st = NULL;
    if (job_params_parse(k, n, names, values, p, &err))
        return cli_fail(&err);
    *st = cli_open_store(g);
    if (!*st) {
        job_params_free(*p);
        *p = NULL;
        return 1;
    }
    return 0;
}
