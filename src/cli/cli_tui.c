/* cli_tui — `easel` with no command and `easel annotate`: start the TUI (ui/app.h).
 * Parses the options into an AppConfig; the app does the rest. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "identity.h"
#include "store_annotate.h"

static void annotate_usage(void) {
    printf("usage: easel [--db PATH] annotate [--annotator NAME] [--graphics MODE]\n"
           "                                  [--order ORDER] [--prompt ID] [--unrated]\n"
           "                                  [--overlap N]\n\n"
           "Rate images on the five aspects in the terminal, the image shown inline.\n"
           "Opens the TUI on the Annotate screen ('easel' alone opens it too).\n\n"
           "options:\n"
           "  --annotator NAME   who is rating (default $EASEL_ANNOTATOR, else your login\n"
           "                     name); each annotator has a queue\n"
           "  --graphics MODE    sixel | blocks | ascii | none (default: probe the terminal;\n"
           "                     blocks inside tmux or screen)\n"
           "  --order ORDER      which image comes next (o in the TUI cycles them):\n"
           "                       fewest      fewest raters first, ties shuffled per\n"
           "                                   annotator (the default)\n"
           "                       sequential  prompt by prompt, in import order (= prompt;\n"
           "                                   id is import order by image)\n"
           "                       random      shuffled, the same order each session\n"
           "                       uncertain   the newest reward checkpoint least sure within\n"
           "                                   the prompt first (fewest until one exists)\n"
           "                       disagree    largest spread between annotators first, also\n"
           "                                   past the overlap target, for adjudication\n"
           "  --prompt ID        only images of prompt ID (the prompt_id of prompts.csv)\n"
           "  --unrated          only images nobody has rated yet\n"
           "  --overlap N        raters wanted per image (default %d): images with N raters\n"
           "                     leave the queue\n\n"
           "Keys: 0-9 set the selected aspect and move on, t sets 10, Enter saves the image\n"
           "and shows the next, u undo, o next order, ? lists every key. The panel's 'why'\n"
           "line says why an image was served. See doc/annotators.md and doc/queue.md.\n\n"
           "example:\n  easel --db data/demo.db annotate --annotator alice --order uncertain\n",
           ANNOTATE_OVERLAP_DEFAULT);
}

/* The app opens the session (src/app/session.h): the store, and the checks that this user
 * may rate as the annotator (blind rating: under another name only a reviewer) and use the
 * disagree order; a refusal comes back before the terminal is taken. */
static int run_app(const AppConfig *cfg) {
    Err err = {0};
    if (app_run(cfg, &err))
        return cli_fail(&err);
    return 0;
}

static const char *need_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_error("annotate: %s needs a value (see 'easel annotate --help')", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* The rest of the TUI's look, for `easel` alone and `easel annotate` (after the usage). */
static void tui_look_usage(void) {
    printf("\nthe TUI's look (these also go with 'easel' alone):\n"
           "  --theme NAME       colours: light, dark, safe, high-contrast (assets/themes/),\n"
           "                     or a .theme file (default $EASEL_THEME, else light or dark\n"
           "                     from the terminal's background, else safe)\n"
           "  --plot GLYPHS      braille | blocks | ascii (for fonts without braille or box\n"
           "                     glyphs) | auto (default $EASEL_PLOT, else braille in a UTF-8\n"
           "                     locale)\n"
           "  --threads N        worker threads of this TUI's job pool (default\n"
           "                     $EASEL_WORKER_THREADS, else the number of cores; 0: run no\n"
           "                     jobs here, leave them to 'easel worker')\n"
           "  --gpu-share N      jobs that may share one GPU (default $EASEL_GPU_SHARE, else\n"
           "                     1: exclusive)\n");
}

int cli_tui_option(const char *a) {
    return strcmp(a, "--graphics") == 0 || strcmp(a, "--theme") == 0 ||
           strcmp(a, "--plot") == 0 || strcmp(a, "--threads") == 0 ||
           strcmp(a, "--gpu-share") == 0;
}

/* One pool option: the flag's value, else the environment's, else leave *out. */
static int pool_option(const char *what, const char *flag, const char *env, long long min,
                       long long max, int *out) {
    const char *v = flag;
    char what_env[64];
    if (!v || !*v) {
        v = getenv(env);
        if (!v || !*v)
            return 0;
        snprintf(what_env, sizeof what_env, "$%s", env);
        what = what_env;
    }
    long long n;
    if (cli_parse_long("TUI", what, v, min, max, &n))
        return 2;
    *out = (int)n;
    return 0;
}

int cli_tui_workers(const CliGlobal *g, AppConfig *cfg) {
    int threads = -2;
    if (pool_option("--threads", g->threads, "EASEL_WORKER_THREADS", 0, 256, &threads) ||
        pool_option("--gpu-share", g->gpu_share, "EASEL_GPU_SHARE", 1, 1024, &cfg->gpu_share))
        return 2;
    if (threads != -2)
        cfg->worker_threads = threads == 0 ? APP_NO_WORKERS : threads;
    return 0;
}

/* The option ARGV[*I] of the TUI's look into CFG (taking its value). Returns 1 when it was
 * one, 0 when not, -1 after an error. */
static int take_tui_option(AppConfig *cfg, CliGlobal *pool, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (strcmp(a, "--threads") == 0 || strcmp(a, "--gpu-share") == 0) {
        const char **v = a[2] == 't' ? &pool->threads : &pool->gpu_share;
        return (*v = need_value(argc, argv, i)) ? 1 : -1;
    }
    const char **dst = strcmp(a, "--graphics") == 0 ? &cfg->graphics
                       : strcmp(a, "--theme") == 0  ? &cfg->theme
                       : strcmp(a, "--plot") == 0   ? &cfg->plot
                                                    : NULL;
    if (!dst)
        return 0;
    return (*dst = need_value(argc, argv, i)) ? 1 : -1;
}

/* The flag's value in *V, else the environment variable ENV's (non-empty) with *FROM = "$ENV". */
static void env_fallback(const char **v, const char **from, const char *env, char *buf,
                         size_t n) {
    if (*v)
        return;
    const char *e = getenv(env);
    if (!e || !*e)
        return;
    *v = e;
    snprintf(buf, n, "$%s", env);
    *from = buf;
}

/* The documented fallbacks ($EASEL_ANNOTATOR, $EASEL_THEME, $EASEL_PLOT, $EASEL_LOG), read
 * here once, then the values of the TUI options that the CLI can check before the terminal is
 * taken. */
int cli_tui_check(AppConfig *cfg) {
    static char theme_from[32], plot_from[32];
    cfg->annotator = identity_annotator(cfg->annotator); /* --annotator, $EASEL_ANNOTATOR, login */
    env_fallback(&cfg->theme, &cfg->theme_from, "EASEL_THEME", theme_from, sizeof theme_from);
    env_fallback(&cfg->plot, &cfg->plot_from, "EASEL_PLOT", plot_from, sizeof plot_from);
    if (!cfg->log_path)
        cfg->log_path = getenv("EASEL_LOG");
    if (cfg->graphics && strcmp(cfg->graphics, "sixel") && strcmp(cfg->graphics, "blocks") &&
        strcmp(cfg->graphics, "ascii") && strcmp(cfg->graphics, "none")) {
        cli_error("--graphics %s: unknown mode (use sixel, blocks, ascii or none)", cfg->graphics);
        return 2;
    }
    if (cfg->plot && strcmp(cfg->plot, "braille") && strcmp(cfg->plot, "blocks") &&
        strcmp(cfg->plot, "ascii") && strcmp(cfg->plot, "auto")) {
        cli_error("%s %s: unknown (use braille, blocks, ascii or auto)",
                  cfg->plot_from ? cfg->plot_from : "--plot", cfg->plot);
        return 2;
    }
    if (cfg->theme && !*cfg->theme) {
        cli_error("--theme needs a name (light, dark, safe, high-contrast) or a .theme file");
        return 2;
    }
    return 0;
}

int cli_tui_main(const CliGlobal *g) {
    AppConfig cfg = {0};
    cfg.db_path = g->db_path;
    cfg.annotator = g->annotator;
    cfg.graphics = g->graphics;
    cfg.theme = g->theme;
    cfg.plot = g->plot;
    if (cli_tui_check(&cfg) || cli_tui_workers(g, &cfg))
        return 2;
    return run_app(&cfg);
}

int cli_annotate_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        annotate_usage();
        tui_look_usage();
        return 0;
    }
    AppConfig cfg = {0};
    cfg.db_path = g->db_path;
    cfg.start_screen = "Annotate";
    cfg.annotator = g->annotator; /* the global --annotator (main.c takes it out of argv) */
    cfg.graphics = g->graphics;   /* the look, when given before the command */
    cfg.theme = g->theme;
    cfg.plot = g->plot;
    CliGlobal pool = *g; /* --threads / --gpu-share after the command override the global */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        int r = take_tui_option(&cfg, &pool, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (strcmp(a, "--order") == 0)
            dst = &cfg.order;
        else if (strcmp(a, "--prompt") == 0)
            dst = &cfg.prompt_filter;
        else if (strcmp(a, "--unrated") == 0) {
            cfg.unrated_only = 1;
            continue;
        } else if (strcmp(a, "--overlap") == 0) {
            const char *v = need_value(argc, argv, &i);
            if (!v)
                return 2;
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 1000) {
                cli_error("annotate: --overlap %s: expected a whole number from 1 to 1000", v);
                return 2;
            }
            cfg.overlap = (int)n;
            continue;
        } else {
            cli_error("annotate: unknown option '%s' (see 'easel annotate --help')", a);
            return 2;
        }
        if (!(*dst = need_value(argc, argv, &i)))
            return 2;
    }
    if (cfg.annotator && !*cfg.annotator) {
        cli_error("annotate: --annotator needs a non-empty name");
        return 2;
    }
    Err err = {0};
    AnnotateOrder order;
    if (cfg.order && store_annotate_order_parse(cfg.order, &order, &err))
        return cli_fail(&err);
    if (cli_tui_check(&cfg) || cli_tui_workers(&pool, &cfg))
        return 2;
    return run_app(&cfg);
}
