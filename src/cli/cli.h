/* cli — the `easel` subcommands. main() parses the global flags (--db, --help, --version)
 * and dispatches through the table in cli.c; each subcommand lives in src/cli_<area>.c.
 *
 * Contract of every subcommand: print results on stdout, errors on stderr starting with
 * "easel: "; return 0 on success, 1 on failure, 2 on a usage error; "--help" prints a usage
 * text with an example and returns 0.
 */
#ifndef EASEL_CLI_H
#define EASEL_CLI_H

#include <stdio.h>

#include "err.h"

typedef struct CliGlobal {
    const char *db_path;   /* --db, else $EASEL_DB, else ./easel.db */
    const char *program;   /* argv[0] */
    const char *annotator; /* global --annotator (before or after the command), else NULL;
                            * resolve with identity_annotator() */
    const char *graphics;  /* the TUI's look given before any command (main.c takes them */
    const char *theme;     /* out of argv; see cli_tui_option), else NULL */
    const char *plot;
    const char *threads;   /* the TUI's worker pool (--threads N, --gpu-share N before any */
    const char *gpu_share; /* command), as given, else NULL; see cli_tui_workers */
} CliGlobal;

typedef int (*CliRun)(const CliGlobal *g, int argc, char **argv);

typedef struct CliCommand {
    const char *name;      /* "import" */
    CliRun run;            /* argv[0] is the subcommand name */
    const char *summary;   /* one line for `easel --help` */
} CliCommand;

/* The table, ended by a {NULL} entry. */
extern const CliCommand cli_commands[];

const CliCommand *cli_find(const char *name);

/* Print "easel: " + message to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print an Err as "easel: msg" and return the exit status for it (2 for ERR_USAGE, else 1). */
int cli_fail(const Err *err);

/* The store G names (store_open_existing: it must exist), or NULL after printing why. */
struct Store *cli_open_store(const CliGlobal *g);

/* True if argv holds -h or --help. */
int cli_wants_help(int argc, char **argv);

/* Parse S as a whole decimal number in [MIN, MAX] into *OUT. On failure print
 * "easel: CMD: WHAT S: expected a whole number from MIN to MAX" and return 2; else 0.
 * Refuses what does not fit (99999999999 for an int) instead of wrapping. */
int cli_parse_long(const char *cmd, const char *what, const char *s, long long min,
                   long long max, long long *out);

/* Report an unknown option OPT of command CMD, with "did you mean --X?" when one of KNOWN
 * (NULL-ended) is close (a prefix of it, or within two edits). Returns 2. */
int cli_unknown_option(const char *cmd, const char *opt, const char *const *known);

/* Report ARG, which command CMD does not take: "CMD: unexpected argument 'ARG' (see 'easel
 * HELP --help')", HELP NULL meaning CMD. Returns 2. */
int cli_unexpected(const char *cmd, const char *arg, const char *help);

/* Subcommands (src/cli_*.c). */
int cli_init_main(const CliGlobal *g, int argc, char **argv);
int cli_import_main(const CliGlobal *g, int argc, char **argv);   /* cli_io.c */
int cli_export_main(const CliGlobal *g, int argc, char **argv);   /* cli_io.c */
int cli_status_main(const CliGlobal *g, int argc, char **argv);   /* cli_io.c */
/* export merged / kohya / peft, from cli_export_main: argv[0] is the kind */
int cli_export_adapter_main(const CliGlobal *g, int argc, char **argv); /* cli_export_adapter.c */
int cli_images_main(const CliGlobal *g, int argc, char **argv);   /* cli_images.c */
int cli_annotate_main(const CliGlobal *g, int argc, char **argv);   /* cli_tui.c */
int cli_tui_main(const CliGlobal *g);   /* no command: the TUI (cli_tui.c) */
int cli_tui_option(const char *a);      /* --graphics, --theme, --plot, --threads, --gpu-share */
struct AppConfig;
/* The TUI's fallbacks ($EASEL_ANNOTATOR, $EASEL_THEME, $EASEL_PLOT, $EASEL_LOG) into CFG where
 * no flag gave them (the TUI reads no environment for them), then the options' values
 * checked. Returns 0, or 2 after an error. */
int cli_tui_check(struct AppConfig *cfg);
/* The TUI's worker pool options into CFG: G's --threads / --gpu-share, else the documented
 * fallbacks $EASEL_WORKER_THREADS / $EASEL_GPU_SHARE. Returns 0, or 2 after an error. */
int cli_tui_workers(const CliGlobal *g, struct AppConfig *cfg);
int cli_jobs_main(const CliGlobal *g, int argc, char **argv);   /* src/cli/cli_jobs.c */
int cli_worker_main(const CliGlobal *g, int argc, char **argv); /* src/cli/cli_jobs.c */
int cli_gpus_main(const CliGlobal *g, int argc, char **argv);   /* src/cli/cli_jobs.c */
int cli_agreement_main(const CliGlobal *g, int argc, char **argv);  /* cli_agreement.c */
int cli_train_main(const CliGlobal *g, int argc, char **argv);    /* cli_train.c */
int cli_eval_main(const CliGlobal *g, int argc, char **argv);     /* cli_train.c */
int cli_score_main(const CliGlobal *g, int argc, char **argv);    /* cli_train.c */
int cli_runs_main(const CliGlobal *g, int argc, char **argv);     /* cli_train.c */
int cli_monitor_main(const CliGlobal *g, int argc, char **argv);  /* cli_train.c */

int cli_config_main(const CliGlobal *g, int argc, char **argv);     /* cli_config.c */
int cli_annotators_main(const CliGlobal *g, int argc, char **argv); /* cli_config.c */

/* src/cli/cli_clip.c */
int cli_models_main(const CliGlobal *g, int argc, char **argv);
int cli_embed_main(const CliGlobal *g, int argc, char **argv);

/* src/cli/cli_generate.c (issue 15) */
int cli_generate_main(const CliGlobal *g, int argc, char **argv);

/* src/cli/cli_tune.c (issue 16, tune16) */
int cli_tune_main(const CliGlobal *g, int argc, char **argv);
/* src/cli/cli_tune_eval.c (issue 16, mon16) */
int cli_tune_eval_main(const CliGlobal *g, int argc, char **argv);

/* src/cli/cli_ab.c (issue 16, ab16): `easel ab` */
int cli_ab_main(const CliGlobal *g, int argc, char **argv);

#endif
