/* main — the `easel` program: global flags, then a subcommand from the table in cli.c.
 * With no subcommand easel opens the TUI (ui/). Only main() chooses the exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "cli.h"
#include "cli_escape.h"

#define EASEL_VERSION "0.1.0"

static void usage(FILE *f) {
    fprintf(f, "usage: easel [--db PATH] [--annotator NAME] [COMMAND [ARGS]]\n\n"
               "easel — terminal workstation for multi-head RLHF of text-to-image models.\n"
               "With no command, easel opens the TUI on the store (Tab switches screens).\n\n"
               "global options:\n"
               "  --db PATH      the store (default $EASEL_DB, else ./easel.db)\n"
               "  --annotator NAME  who is rating (default $EASEL_ANNOTATOR, else your login\n"
               "                 name); before or after the command\n"
               "  -h, --help     this text; 'easel COMMAND --help' for a command\n"
               "  --version      print the version\n"
               "  --graphics MODE, --theme NAME, --plot GLYPHS  the TUI's look (see 'easel\n"
               "                 annotate --help')\n"
               "  --threads N, --gpu-share N  the TUI's worker pool (see 'easel annotate\n"
               "                 --help')\n\n"
               "commands:\n");
    for (const CliCommand *c = cli_commands; c->name; c++)
        fprintf(f, "  %-12s %s\n", c->name, c->summary);
}

/* Take the TUI's look (--graphics, --theme, --plot, each with a value; cli_tui_option) out of
 * argv where it stands among the global options, so that what follows sees `easel [--db
 * PATH]` alone: the TUI with no command, or `annotate` (which takes them after it too).
 * Before another command they are refused. Returns 0, or 2 after an error. */
static int take_tui_look(CliGlobal *g, int *argc, char **argv) {
    int first = 0, cmd = 0;
    for (int i = 1; i < *argc && !cmd; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        if (cli_tui_option(a)) {
            if (i + 1 >= *argc) {
                cli_error("%s needs a value (see 'easel annotate --help')", a);
                return 2;
            }
            first = first ? first : i;
            i++;
        } else if (strcmp(a, "--db") == 0 || strcmp(a, "--annotator") == 0) {
            i++;
        } else if (a[0] != '-') {
            cmd = i;
        }
    }
    if (!first)
        return 0;
    if (cmd && strcmp(argv[cmd], "annotate") != 0 && strcmp(argv[cmd], "monitor") != 0 &&
        !(strcmp(argv[cmd], "ab") == 0 && cmd + 1 < *argc && /* ab16: `ab judge` */
          strcmp(argv[cmd + 1], "judge") == 0)) {
        cli_error("%s is an option of the TUI ('easel', 'easel annotate' or 'easel monitor'), "
                  "not of '%s'", argv[first], argv[cmd]);
        return 2;
    }
    int o = 1;
    for (int i = 1; i < *argc; i++) {
        if ((!cmd || i < cmd) && cli_tui_option(argv[i])) {
            const char *v = argv[++i];
            if (strcmp(argv[i - 1], "--graphics") == 0)
                g->graphics = v;
            else if (strcmp(argv[i - 1], "--theme") == 0)
                g->theme = v;
            else if (strcmp(argv[i - 1], "--threads") == 0)
                g->threads = v;
            else if (strcmp(argv[i - 1], "--gpu-share") == 0)
                g->gpu_share = v;
            else
                g->plot = v;
            continue;
        }
        argv[o++] = argv[i];
    }
    *argc = o;
    argv[o] = NULL;
    return 0;
}

/* Take the global --annotator NAME (or --annotator=NAME) out of argv, wherever it stands
 * before a "--". Returns 0, or 2 after an error. */
static int take_annotator(CliGlobal *g, int *argc, char **argv) {
    int o = 1;
    int rest = 0;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!rest && strcmp(a, "--") == 0)
            rest = 1;
        if (!rest && strcmp(a, "--annotator") == 0) {
            if (i + 1 >= *argc || !argv[i + 1][0]) {
                cli_error("--annotator needs a name (e.g. --annotator alice)");
                return 2;
            }
            g->annotator = argv[++i];
            continue;
        }
        if (!rest && strncmp(a, "--annotator=", 12) == 0) {
            if (!a[12]) {
                cli_error("--annotator needs a name (e.g. --annotator=alice)");
                return 2;
            }
            g->annotator = a + 12;
            continue;
        }
        argv[o++] = argv[i];
    }
    if (g->annotator && !g->annotator[strspn(g->annotator, " \t\r\n\v\f")]) {
        cli_error("--annotator: the name is blank; give who is rating (e.g. --annotator alice)");
        return 2;
    }
    *argc = o;
    argv[o] = NULL;
    return 0;
}

/* True if ARGV holds OPT as a flag or as OPT=VALUE (before any "--"). */
static int has_opt(int argc, char **argv, const char *opt) {
    size_t n = strlen(opt);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strncmp(argv[i], opt, n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '='))
            return 1;
    }
    return 0;
}

/* Whether command ARGV[0] writes data (or a terminal UI) on stdout, which must then stay
 * byte-exact; everything else the CLI prints is for people and goes through cli_escape. */
static int stdout_is_data(int argc, char **argv) {
    const char *cmd = argv[0];
    if (strcmp(cmd, "annotate") == 0 || strcmp(cmd, "monitor") == 0)
        return 1; /* curses owns the terminal */
    /* ab16: `ab judge` runs the TUI; `ab results --json` prints JSON */
    if (strcmp(cmd, "ab") == 0 && argc > 1 && strcmp(argv[1], "judge") == 0)
        return 1;
    if (strcmp(cmd, "ab") == 0 && argc > 1 && strcmp(argv[1], "results") == 0)
        return has_opt(argc, argv, "--json");
    if (strcmp(cmd, "export") == 0 && argc > 1 &&
        (strcmp(argv[1], "merged") == 0 || strcmp(argv[1], "kohya") == 0 ||
         strcmp(argv[1], "peft") == 0))
        return 0; /* adapters: a file, and a line for people */
    if (strcmp(cmd, "export") == 0) /* CSV on stdout unless -o FILE */
        return !has_opt(argc, argv, "-o") && !has_opt(argc, argv, "--output");
    if (strcmp(cmd, "score") == 0) /* CSV on stdout unless --csv FILE */
        return !has_opt(argc, argv, "--csv");
    /* --json prints JSON on stdout (eval's --json FILE writes a file instead). jansson
     * escapes C0 controls itself, so a command missing here still prints valid JSON. */
    static const char *const json_cmds[] = {"status", "agreement", "embed", "tune-eval", NULL};
    for (int k = 0; json_cmds[k]; k++)
        if (strcmp(cmd, json_cmds[k]) == 0)
            return has_opt(argc, argv, "--json");
    return 0;
}

/* Which of stdout and stderr carry text for people, before a command runs: stderr always;
 * stdout unless the command prints data there or runs the TUI (no command at all). */
static void install_escapes(int argc, char **argv) {
    int i = 1;
    while (i < argc && argv[i][0] == '-') /* global options, as parsed in main() */
        i += strcmp(argv[i], "--db") == 0 ? 2 : 1;
    int tui = i >= argc;
    cli_escape_install(!tui && !stdout_is_data(argc - i, argv + i), 1);
}

int main(int argc, char **argv) {
    CliGlobal g = {0};
    /* every model runs on a Backend whose pool is its --threads: OpenBLAS adds none */
    backend_cpu_blas_serial();
    if (take_tui_look(&g, &argc, argv))
        return 2;
    if (take_annotator(&g, &argc, argv))
        return 2;
    install_escapes(argc, argv);
    g.program = argv[0];
    g.db_path = getenv("EASEL_DB");
    if (!g.db_path || !*g.db_path)
        g.db_path = "easel.db";
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--db") == 0) {
            if (i + 1 >= argc) {
                cli_error("--db needs a path (e.g. --db work/easel.db)");
                return 2;
            }
            g.db_path = argv[++i];
        } else if (strncmp(a, "--db=", 5) == 0) {
            g.db_path = a + 5;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("easel %s\n", EASEL_VERSION);
            return 0;
        } else if (a[0] == '-') {
            cli_error("unknown option '%s' (see 'easel --help')", a);
            return 2;
        } else {
            break;
        }
    }
    if (i >= argc)
        return cli_tui_main(&g); /* no command: the TUI on --db */
    const CliCommand *c = cli_find(argv[i]);
    if (!c) {
        cli_error("unknown command '%s' (see 'easel --help')", argv[i]);
        return 2;
    }
    return c->run(&g, argc - i, argv + i);
}
