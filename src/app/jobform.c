/* jobform — see jobform.h. Submitting goes through job_params_parse, the same parser as the
 * CLI, so the form can accept nothing the CLI would refuse. */
#include "jobform.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "jobs.h"
#include "store_jobs.h"

JobForm *jobform_new(const JobKind *k) {
    JobForm *f = xcalloc(1, sizeof *f);
    f->kind = k;
    int n = 0;
    while (k->params[n].name)
        n++;
    /* a kind that may hold GPUs (generate holds every free one unless told) gets "gpus" */
    int gpu_kind = k->gpus != 0 || k->gpus_for || k->gpu_required;
    f->n_fields = n + 2 + gpu_kind;
    f->fields = xcalloc((size_t)f->n_fields, sizeof *f->fields);
    for (int i = 0; i < n; i++) {
        f->fields[i].kind = JOBFORM_PARAM;
        f->fields[i].spec = &k->params[i];
        f->fields[i].text = xstrdup(k->params[i].def ? k->params[i].def : "");
    }
    f->fields[n].kind = JOBFORM_PRIORITY;
    f->fields[n].text = xstrdup("0");
    f->fields[n + 1].kind = JOBFORM_AFTER;
    f->fields[n + 1].text = xstrdup("");
    if (gpu_kind) {
        f->fields[n + 2].kind = JOBFORM_GPUS;
        f->fields[n + 2].text = xstrdup("");
    }
    return f;
}

void jobform_free(JobForm *f) {
    if (!f)
        return;
    for (int i = 0; i < f->n_fields; i++)
        free(f->fields[i].text);
    free(f->fields);
    free(f);
}

const char *jobform_label(const JobForm *f, int i) {
    ASSERT(i >= 0 && i < f->n_fields);
    switch (f->fields[i].kind) {
    case JOBFORM_PARAM: return f->fields[i].spec->name;
    case JOBFORM_PRIORITY: return "priority";
    case JOBFORM_AFTER: return "after";
    case JOBFORM_GPUS: return "gpus";
    }
    return "?";
}

const char *jobform_hint(const JobForm *f, int i, char *buf, int size) {
    ASSERT(i >= 0 && i < f->n_fields);
    const JobFormField *fd = &f->fields[i];
    static const char *types[] = {"text", "path", "integer", "number", "true/false", "choice"};
    if (fd->kind == JOBFORM_PRIORITY)
        snprintf(buf, (size_t)size, "integer, default 0: higher runs first");
    else if (fd->kind == JOBFORM_AFTER)
        snprintf(buf, (size_t)size, "job ids like 3,4: start after they succeeded (optional)");
    else if (fd->kind == JOBFORM_GPUS)
        snprintf(buf, (size_t)size, "GPUs to hold: empty = what the kind asks for (%s), 'all' "
                 "= every free GPU, or a count (0: the CPU)",
                 f->kind->gpus_for ? "by its device" : f->kind->gpus == JOBKIND_GPUS_ALL
                 ? "every free GPU" : f->kind->gpus == 1 ? "1" : "its default");
    else
        snprintf(buf, (size_t)size, "%s, %s: %s",
                 fd->spec->type == JOB_PARAM_CHOICE ? fd->spec->choices : types[fd->spec->type],
                 !fd->spec->def ? "required" : fd->spec->def[0] ? "has a default" : "optional",
                 fd->spec->help);
    return buf;
}

void jobform_set(JobForm *f, int i, const char *text) {
    ASSERT(i >= 0 && i < f->n_fields);
    free(f->fields[i].text);
    f->fields[i].text = xstrdup(text ? text : "");
}

/* The N-th ('|'-separated) choice of CHOICES into BUF; returns the number of choices. */
static int choice_at(const char *choices, int n, char *buf, size_t size) {
    int count = 0;
    const char *c = choices;
    while (c) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (count == n && buf) {
            size_t m = len < size - 1 ? len : size - 1;
            memcpy(buf, c, m);
            buf[m] = '\0';
        }
        count++;
        c = bar ? bar + 1 : NULL;
    }
    return count;
}

int jobform_cycle(JobForm *f, int i, int dir) {
    ASSERT(i >= 0 && i < f->n_fields);
    JobFormField *fd = &f->fields[i];
    if (fd->kind != JOBFORM_PARAM)
        return 0;
    if (fd->spec->type == JOB_PARAM_BOOL) {
        int on = strcmp(fd->text, "true") == 0 || strcmp(fd->text, "1") == 0 ||
                 strcmp(fd->text, "yes") == 0 || strcmp(fd->text, "on") == 0;
        jobform_set(f, i, on ? "false" : "true");
        return 1;
    }
    if (fd->spec->type != JOB_PARAM_CHOICE)
        return 0;
    int n = choice_at(fd->spec->choices, -1, NULL, 0);
    int cur = 0;
    char buf[128];
    for (int j = 0; j < n; j++) {
        choice_at(fd->spec->choices, j, buf, sizeof buf);
        if (strcmp(buf, fd->text) == 0)
            cur = j;
    }
    cur = ((cur + (dir > 0 ? 1 : -1)) % n + n) % n;
    choice_at(fd->spec->choices, cur, buf, sizeof buf);
    jobform_set(f, i, buf);
    return 1;
}

void jobform_move(JobForm *f, int delta) {
    f->cur += delta;
    if (f->cur < 0)
        f->cur = 0;
    if (f->cur >= f->n_fields)
        f->cur = f->n_fields - 1;
}

static int field_of(const JobForm *f, JobFormFieldKind kind) {
    for (int i = 0; i < f->n_fields; i++)
        if (f->fields[i].kind == kind)
            return i;
    return 0;
}

/* Select the parameter field whose "--NAME" ERR's message names (if any). */
static void point_at_named_field(JobForm *f, const Err *err) {
    for (int i = 0; err && i < f->n_fields; i++) {
        char needle[80];
        snprintf(needle, sizeof needle, "--%s", jobform_label(f, i));
        const char *m = f->fields[i].kind == JOBFORM_PARAM ? strstr(err->msg, needle) : NULL;
        char after = m ? m[strlen(needle)] : 'x';
        if (m && (after == ' ' || after == ':' || after == '\0')) {
            f->cur = i;
            return;
        }
    }
}

int jobform_submit(JobForm *f, Store *st, int64_t *id, Err *err) {
    int n = 0, rc;
    const char **names = xcalloc((size_t)f->n_fields, sizeof *names);
    const char **values = xcalloc((size_t)f->n_fields, sizeof *values);
    int64_t *deps = NULL;
    int n_deps = 0;
    JobNew jn = {.kind = f->kind->name, .gpus_wanted = JOB_GPUS_OF_KIND};
    for (int i = 0; i < f->n_fields; i++) {
        JobFormField *fd = &f->fields[i];
        if (fd->kind == JOBFORM_PARAM) {
            /* an empty optional field means its default; empty required ones are reported
             * by the parser as "--name is required" */
            if (!fd->text[0])
                continue;
            names[n] = fd->spec->name;
            values[n++] = fd->text;
        } else if (fd->kind == JOBFORM_PRIORITY) {
            char *end;
            errno = 0;
            long v = strtol(fd->text, &end, 10);
            if (!fd->text[0] || *end || errno || v < INT_MIN || v > INT_MAX) {
                f->cur = i;
                rc = err_set(err, ERR_USAGE, "priority: '%s' is not a whole number from %d to "
                             "%d", fd->text, INT_MIN, INT_MAX);
                goto out;
            }
            jn.priority = (int)v;
        } else if (fd->kind == JOBFORM_GPUS) {
            char *end;
            errno = 0;
            long v = strtol(fd->text, &end, 10);
            if (!fd->text[0])
                continue; /* the kind's */
            if (strcmp(fd->text, "all") == 0) {
                jn.gpus_wanted = JOBKIND_GPUS_ALL;
                continue;
            }
            if (*end || errno || v < 0 || v > 1024) {
                f->cur = i;
                rc = err_set(err, ERR_USAGE, "gpus: '%s' is not 'all' or a count from 0 to "
                             "1024 (empty: what the kind asks for)", fd->text);
                goto out;
            }
            jn.gpus_wanted = (int)v;
        } else {
            char *copy = xstrdup(fd->text);
            for (char *tok = strtok(copy, ", "); tok; tok = strtok(NULL, ", ")) {
                char *end;
                long long v = strtoll(tok[0] == '#' ? tok + 1 : tok, &end, 10);
                if (*end || v <= 0) {
                    f->cur = i;
                    rc = err_set(err, ERR_USAGE, "after: '%s' is not a job id", tok);
                    free(copy);
                    goto out;
                }
                deps = xrealloc(deps, sizeof *deps * (size_t)(n_deps + 1));
                deps[n_deps++] = v;
            }
            free(copy);
        }
    }
    JobParams *p;
    if ((rc = job_params_parse(f->kind, n, names, values, &p, err))) {
        point_at_named_field(f, err);
        goto out;
    }
    jn.deps = deps;
    jn.n_deps = n_deps;
    rc = jobs_add(st, p, &jn, id, err); /* checks the trust rules (trust.h) */
    job_params_free(p);
    if (rc == ERR_NOTFOUND)
        f->cur = field_of(f, JOBFORM_AFTER);
    else if (rc == ERR_DENIED) /* a path outside the workspace */
        point_at_named_field(f, err);
out:
    free(deps);
    free(names);
    free(values);
    return rc;
}
