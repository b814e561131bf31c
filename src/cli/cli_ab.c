/* cli_ab — `easel ab`: blind A/B sets of a tune-eval run's images (issue 16): add, list,
 * results, and judge (the TUI's A/B screen). See src/app/ab_eval.h and src/store/store_ab.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ab_eval.h"
#include "app.h"
#include "base.h"
#include "cli.h"
#include "identity.h"
#include "store.h"
#include "store_ab.h"
#include "trust.h"

#define AB_SEED_DEFAULT 0

static void ab_usage(void) {
    printf("usage: easel [--db PATH] ab add NAME --from-eval RUN [--seed N]\n"
           "       easel [--db PATH] ab list\n"
           "       easel [--db PATH] ab results NAME [--json]\n"
           "       easel [--db PATH] [--annotator NAME] ab judge [NAME] [--graphics MODE]\n\n"
           "Blind A/B comparison of a tuned adapter against its base model by people.\n"
           "  add      make set NAME from a tune-eval run's (prompt, seed) pairs: the base\n"
           "           model's and the adapter's image of each, shown side by side, each item's\n"
           "           sides drawn from --seed (default %d) so that half the adapter's images\n"
           "           are on the left ('easel tune-eval ... --ab NAME' does this at the end)\n"
           "  list     the sets: items, items judged, judgements\n"
           "  results  per aspect and overall, the adapter's human win rate (ties count half)\n"
           "           with its count and a 95%% Wilson interval, per annotator and pooled, and\n"
           "           how often the humans agree with the reward model's head of that aspect\n"
           "  judge    open the TUI's A/B screen on set NAME (default: the newest): per aspect\n"
           "           1 left, 2 right, 0 tie; never shows which side is the adapter's\n\n"
           "A judgement, once entered, is never lost; judging again replaces your own.\n\n"
           "example:\n"
           "  easel ab add heldout-ab --from-eval tune-eval-1\n"
           "  easel --annotator alice ab judge heldout-ab\n"
           "  easel ab results heldout-ab --json\n"
           "See doc/annotators.md (\"A/B mode\") and doc/tuning.md (\"Evaluation\").\n",
           AB_SEED_DEFAULT);
}

static int ab_add(const CliGlobal *g, int argc, char **argv) {
    const char *name = NULL, *run = NULL;
    long long seed = AB_SEED_DEFAULT;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--from-eval") == 0 || strcmp(a, "--seed") == 0) {
            if (i + 1 >= argc) {
                cli_error("ab add: %s needs a value (see 'easel ab --help')", a);
                return 2;
            }
            const char *v = argv[++i];
            if (a[2] == 'f')
                run = v;
            else if (cli_parse_long("ab add", "--seed", v, 0, 0x7fffffffffffffffLL, &seed))
                return 2;
        } else if (a[0] == '-') {
            return cli_unknown_option("ab add", a,
                                      (const char *const[]){"--from-eval", "--seed", NULL});
        } else if (!name) {
            name = a;
        } else {
            return cli_unexpected("ab add", a, "ab");
        }
    }
    if (!name || !*name) {
        cli_error("ab add: give the set's NAME (see 'easel ab --help')");
        return 2;
    }
    if (!run) {
        cli_error("ab add %s: which evaluation? give --from-eval RUN (a tune-eval run; see "
                  "'easel runs list')", name);
        return 2;
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    int64_t id = 0;
    size_t n = 0;
    int rc = ab_from_eval(st, name, run, (uint64_t)seed, &id, &n, &err);
    store_close(st);
    if (rc)
        return cli_fail(&err);
    printf("A/B set %s: %zu pairs from tune-eval run %s (judge them: easel ab judge %s)\n",
           name, n, run, name);
    return 0;
}

static int ab_list(const CliGlobal *g, int argc, char **argv) {
    if (argc > 2)
        return cli_unexpected("ab list", argv[2], "ab");
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    StoreAbSet *v = NULL;
    size_t n = 0;
    int rc = store_ab_sets_list(st, &v, &n, &err);
    store_close(st);
    if (rc)
        return cli_fail(&err);
    if (n == 0)
        printf("no A/B sets (make one: easel ab add NAME --from-eval RUN)\n");
    else
        printf("%-20s %-20s %6s %6s %10s  %s\n", "name", "run", "items", "judged", "judgements",
               "created");
    for (size_t i = 0; i < n; i++) {
        char when[32];
        time_t t = (time_t)v[i].created;
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime_r(&t, &tm));
        printf("%-20s %-20s %6lld %6lld %10lld  %s\n", v[i].name,
               v[i].run_name[0] ? v[i].run_name : "-", (long long)v[i].items,
               (long long)v[i].judged, (long long)v[i].judgements, when);
    }
    store_ab_sets_free(v, n);
    return 0;
}

static int ab_results_cmd(const CliGlobal *g, int argc, char **argv) {
    const char *name = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (argv[i][0] == '-')
            return cli_unknown_option("ab results", argv[i], (const char *const[]){"--json", NULL});
        else if (!name)
            name = argv[i];
        else
            return cli_unexpected("ab results", argv[i], "ab");
    }
    if (!name) {
        cli_error("ab results: which set? give NAME (see 'easel ab list')");
        return 2;
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    /* blind rating: everyone's judgements are the reviewers' to see (trust.h) */
    if (trust_require_review(st, identity_login(), "the A/B results", &err)) {
        store_close(st);
        return cli_fail(&err);
    }
    AbResults r;
    int rc = ab_results(st, name, &r, &err);
    store_close(st);
    if (rc) {
        ab_results_deinit(&r);
        return cli_fail(&err);
    }
    if (json) {
        char *s = ab_results_json(&r);
        fputs(s, stdout);
        free(s);
    } else {
        ab_results_print(stdout, &r);
    }
    ab_results_deinit(&r);
    return 0;
}

static int ab_judge(const CliGlobal *g, int argc, char **argv) {
    AppConfig cfg = {0};
    cfg.db_path = g->db_path;
    cfg.start_screen = "A/B";
    cfg.annotator = g->annotator;
    cfg.graphics = g->graphics;
    cfg.theme = g->theme;
    cfg.plot = g->plot;
    const char *name = NULL;
    for (int i = 2; i < argc; i++) {
        if ((strcmp(argv[i], "--graphics") == 0 || strcmp(argv[i], "--theme") == 0) &&
            i + 1 < argc) {
            const char *o = argv[i++];
            *(o[2] == 'g' ? &cfg.graphics : &cfg.theme) = argv[i];
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            return cli_unexpected("ab judge", argv[i], "ab");
        }
    }
    if (cli_tui_check(&cfg) || cli_tui_workers(g, &cfg))
        return 2;
    Err err = {0};
    if (name) {
        Store *st = cli_open_store(g);
        if (!st)
            return 1;
        StoreAbSet s;
        int rc = store_ab_set_find(st, name, &s, &err);
        store_close(st);
        if (rc)
            return cli_fail(&err);
        store_ab_set_deinit(&s);
        cfg.ab_set = name;
    }
    if (app_run(&cfg, &err))
        return cli_fail(&err);
    return 0;
}

int cli_ab_main(const CliGlobal *g, int argc, char **argv) {
    if (argc < 2 || cli_wants_help(argc, argv)) {
        ab_usage();
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "add") == 0)
        return ab_add(g, argc, argv);
    if (strcmp(sub, "list") == 0)
        return ab_list(g, argc, argv);
    if (strcmp(sub, "results") == 0)
        return ab_results_cmd(g, argc, argv);
    if (strcmp(sub, "judge") == 0)
        return ab_judge(g, argc, argv);
    cli_error("ab: unknown subcommand '%s' (add, list, results, judge; see 'easel ab --help')",
              sub);
    return 2;
}
