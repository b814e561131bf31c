/* cli_kindcmd — what a command whose flags are a job kind's parameters shares (`easel
 * generate`, `easel tune`, `easel tune-eval`, `easel jobs add`): the flag's parameter,
 * "unknown option" with a suggestion among them, their "options:" lines in --help, the
 * parameters checked and the store opened, and --queue (add the job instead). */
#ifndef EASEL_CLI_KINDCMD_H
#define EASEL_CLI_KINDCMD_H

#include "jobkind.h"
#include "store.h"

/* The parameter NAME of kind K, or NULL. */
const JobParamSpec *cli_kind_param(const JobKind *k, const char *name);

/* cli_unknown_option for command CMD, whose flags are K's parameters and EXTRA (NULL-ended,
 * with their dashes: "--queue"). Returns 2. */
int cli_kind_unknown(const char *cmd, const JobKind *k, const char *opt,
                     const char *const *extra);

/* The "  --NAME  help (default D)" lines of K's parameters but SKIP (may be NULL). */
void cli_kind_options(const JobKind *k, const char *skip);

/* --queue: add P as a job (its kind's GPUs), print its id on stdout and "queued CMD job #N"
 * on stderr. Returns the exit status (0, or cli_fail's). */
int cli_kind_queue(Store *st, const JobParams *p, const char *cmd);

/* After the flags (dedup16): K's parameters NAMES=VALUES (N of them) checked into *P, then the
 * store of G opened into *ST. Returns 0, or the exit status with the error said (nothing to
 * free then). */
struct CliGlobal;
int cli_kind_open(const struct CliGlobal *g, const JobKind *k, int n, const char **names,
                  const char **values, JobParams **p, Store **st);

#endif
