/* cli — the subcommand table and shared helpers. See cli.h. */
#include "cli.h"

#include <stdarg.h>
#include <string.h>

#include "store.h"

const CliCommand cli_commands[] = {
    {"init", cli_init_main, "create the store (idempotent)"},
    {"import", cli_import_main, "import prompts, ratings, pairs, generated images or a folder"},
    {"export", cli_export_main, "export ratings, pairs, prompts or a rating template"},
    {"status", cli_status_main, "counts of prompts, images, ratings, pairs, runs, jobs"},
    {"annotate", cli_annotate_main, "rate images in the terminal (the TUI's Annotate screen)"},
    {"jobs", cli_jobs_main, "the job queue: add, list, show, cancel, retry, resume, wait"},
    {"worker", cli_worker_main, "run queued jobs headless (threads, GPUs); stops on SIGTERM"},
    {"gpus", cli_gpus_main, "GPU discovery through NVML (or why there is no GPU)"},
    {"gpu", cli_gpus_main, "same as gpus"},
    {"models", cli_models_main, "register CLIP model folders: add, list, remove"},
    {"embed", cli_embed_main, "print CLIP (or classic) embeddings of images and texts"},
    {"agreement", cli_agreement_main, "inter-annotator agreement per aspect: alpha, ICC, disagreement"},
    {"train", cli_train_main, "train a five-head reward model (foreground, or --queue a job)"},
    {"eval", cli_eval_main, "evaluate a reward checkpoint on pairs: accuracy, margin, F1"},
    {"score", cli_score_main, "score images with a reward checkpoint, into the store and CSV"},
    {"runs", cli_runs_main, "training and evaluation runs: list, show RUN [--follow]"},
    {"monitor", cli_monitor_main, "watch a training run live (the TUI's Monitor screen)"},
    /* more subcommands: one line each, in the order `easel --help` lists them */
    {NULL, NULL, NULL},
};

const CliCommand *cli_find(const char *name) {
    for (const CliCommand *c = cli_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("easel: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_fail(const Err *err) {
    cli_error("%s", err->msg[0] ? err->msg : err_name(err->code));
    return err->code == ERR_USAGE ? 2 : 1;
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    }
    return 0;
}

int cli_init_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel [--db PATH] init\n\n"
               "Create the store at PATH (default $EASEL_DB, else ./easel.db), or migrate an\n"
               "existing one to this version's schema. Running it again changes nothing.\n\n"
               "example:\n  easel --db work/easel.db init\n");
        return 0;
    }
    if (argc > 1) {
        cli_error("init: unexpected argument '%s' (see 'easel init --help')", argv[1]);
        return 2;
    }
    Err err = {0};
    Store *st = store_open(g->db_path, &err);
    if (!st)
        return cli_fail(&err);
    printf("store %s at schema version %d\n", g->db_path, store_version(st));
    store_close(st);
    return 0;
}
