/* cli_io — `easel import`, `easel export`, `easel status`. Argument parsing and printing only;
 * the work is in import.c, export.c and store_catalog.c.
 *
 * Exit codes: 0 ok, 1 failure (bad file, conflict, I/O), 2 usage error. Results on stdout,
 * warnings and errors on stderr, each line starting "easel: ".
 */
#include "cli.h"
#include "cli_escape.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "export.h"
#include "identity.h"
#include "import.h"
#include "pairs.h"
#include "store_catalog.h"
#include "store_ratings.h"
#include "trust.h"

#define MAX_PRINTED 20 /* problems or warnings printed; the rest are counted */

/* ---- import ---------------------------------------------------------------------------------- */

static void import_usage(void) {
    printf("usage: easel [--db PATH] import KIND PATH [--annotator NAME] [--allow-missing]\n"
           "       easel [--db PATH] import generated CSV_OR_DIR...\n\n"
           "Import a file of the original system into the store. KIND is one of:\n"
           "  prompts    prompts.csv: prompt_id,prompt\n"
           "  ratings    multihead_ratings.csv: prompt_id,image_path,spatial_rating,\n"
           "             icono_rating,style_rating,fidelity_rating,material_rating[,annotator]\n"
           "             (0..10, decimals allowed, blank = not rated)\n"
           "  pairs      pairs.jsonl: {\"prompt\", \"img_pos\", \"img_neg\", \"label\", ...}\n"
           "  generated  generation metadata CSV: prompt_id,seed,path,prompt,gpu_id or\n"
           "             prompt_id,seed,path,prompt,width,height,num_inference_steps,"
           "guidance_scale\n"
           "             (several files or folders: a folder means every metadata*.csv in\n"
           "             it, e.g. the shards' metadata-K-of-N.csv of 'easel generate')\n"
           "  images     a folder laid out {prompt_id}/{seed}.png\n\n"
           "Everything is checked first; any problem (listed as FILE:LINE: ...) means nothing\n"
           "is imported. Importing the same file twice changes nothing. An import never\n"
           "changes an existing rating: ratings are edited in the TUI, which keeps history.\n"
           "Relative image paths are looked up next to the file first, then in the current\n"
           "folder. Every image must be a regular file that decodes (PNG, JPEG, BMP...); a\n"
           "path that is not on disk is refused unless --allow-missing is given. 'import\n"
           "images' also refuses symlinks that lead outside the folder and the workspace.\n"
           "The same bytes reached by another path are the same image (the row is reused).\n"
           "A ratings file may name prompt ids the store does not know: they are created with\n"
           "empty text, which a later 'import prompts' fills in.\n\n"
           "options:\n"
           "  --annotator NAME   who rated, for a ratings file without an annotator column\n"
           "                     (default: $EASEL_ANNOTATOR, else your login name)\n"
           "  --allow-missing    import image paths that are not on disk as \"missing\" (with\n"
           "                     a warning) instead of refusing the file\n\n"
           "examples:\n"
           "  easel import prompts data/prompts.csv\n"
           "  easel import ratings data/annotations/multihead_ratings.csv --annotator alice\n"
           "  easel import images data/images\n"
           "See doc/formats.md for every column.\n");
}

static void print_list(char **items, size_t n, const char *prefix) {
    for (size_t i = 0; i < n && i < MAX_PRINTED; i++)
        fprintf(stderr, "easel: %s%s\n", prefix, items[i]);
    if (n > MAX_PRINTED)
        fprintf(stderr, "easel: %s... and %zu more\n", prefix, n - MAX_PRINTED);
}

typedef struct ImportBar {
    double last;
    int tty;
    int open; /* a progress line is on the screen without its newline */
} ImportBar;

static void show_progress(void *user, double done_d, double total_d, const char *unit) {
    (void)unit;
    ImportBar *p = user;
    size_t done = (size_t)done_d, total = (size_t)total_d;
    if (!p->tty)
        return;
    double now = base_now();
    if (done < total && now - p->last < 0.2)
        return;
    p->last = now;
    /* the first half is checking the file, the second writing it (import.h) */
    cli_escape_raw(stderr, "\r");
    fprintf(stderr, "easel: %s %zu%%%s", 2 * done <= total ? "checking" : "writing",
            total ? 100 * done / total : 100, done == total ? "\n" : "");
    p->open = done < total;
}

static int opt_value(int argc, char **argv, int *i, const char *name, const char **out) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return 1;
    }
    if (strcmp(argv[*i], name) != 0)
        return 0;
    if (*i + 1 >= argc) {
        *out = NULL;
        return 1;
    }
    *out = argv[++*i];
    return 1;
}

/* Import one file PATH of KIND into ST; prints its report. Returns the exit status. */
static int import_one(Store *st, ImportKind kind, const char *path, ImportOptions *opts) {
    Err err = {0};
    ImportBar prog = {.tty = isatty(2)};
    opts->progress = (Progress){.progress = show_progress, .user = &prog};
    ImportReport rep;
    int rc = import_path(st, kind, path, opts, &rep, &err);
    if (prog.open)
        fputc('\n', stderr);
    if (!rc) /* after a failure nothing was imported, so warnings about it are moot */
        print_list(rep.warnings, rep.n_warnings, "warning: ");
    int status = 0;
    if (rc) {
        if (rep.n_errors > 1 || rc == ERR_CONFLICT) {
            print_list(rep.errors, rep.n_errors, "");
            cli_error("nothing was imported from %s (%zu problem%s); fix the file and run the "
                      "same command again", path, rep.n_errors, rep.n_errors == 1 ? "" : "s");
        } else {
            cli_fail(&err);
        }
        status = rc == ERR_USAGE ? 2 : 1;
    } else {
        printf("imported %s %s: %zu %s", import_kind_name(kind), path, rep.rows,
               kind == IMPORT_IMAGES ? "files" : kind == IMPORT_PAIRS ? "lines" : "rows");
        if (rep.prompts_added)
            printf(", %zu prompt%s added", rep.prompts_added, rep.prompts_added == 1 ? "" : "s");
        if (rep.prompts_empty)
            printf(" (%zu with empty text)", rep.prompts_empty);
        if (rep.prompts_filled)
            printf(", %zu prompt text%s filled in", rep.prompts_filled,
                   rep.prompts_filled == 1 ? "" : "s");
        if (rep.images_added || rep.images_updated)
            printf(", %zu images added, %zu updated", rep.images_added, rep.images_updated);
        if (rep.images_missing)
            printf(", %zu image%s not on disk", rep.images_missing,
                   rep.images_missing == 1 ? "" : "s");
        if (rep.annotators_added)
            printf(", %zu annotator%s added", rep.annotators_added,
                   rep.annotators_added == 1 ? "" : "s");
        if (kind == IMPORT_RATINGS)
            printf(", %zu ratings added, %zu already there", rep.ratings_added,
                   rep.ratings_unchanged);
        if (kind == IMPORT_PAIRS)
            printf(", %zu pairs added, %zu already there", rep.pairs_added, rep.pairs_unchanged);
        if (!rep.prompts_added && !rep.prompts_filled && !rep.images_added &&
            !rep.images_updated &&
            !rep.annotators_added && !rep.ratings_added && !rep.pairs_added)
            printf("; nothing new, the store already had all of it");
        printf("\n");
    }
    import_report_deinit(&rep);
    return status;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* `import generated DIR`: the metadata CSVs `easel generate` wrote there (metadata.csv and the
 * shards' metadata-K-of-N.csv), sorted, into *out (appended; *n counts). */
static int generated_csvs(const char *dir, char ***out, size_t *n) {
    DIR *d = opendir(dir);
    if (!d) {
        cli_error("import generated: %s: %s", dir, strerror(errno));
        return 1;
    }
    size_t first = *n;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "metadata", 8) == 0 && l >= 12 &&
            strcmp(e->d_name + l - 4, ".csv") == 0) {
            *out = xrealloc(*out, (*n + 1) * sizeof **out);
            (*out)[(*n)++] = xasprintf("%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    if (*n == first) {
        cli_error("import generated: %s holds no metadata.csv or metadata-K-of-N.csv (the "
                  "files 'easel generate' writes beside the images)", dir);
        return 1;
    }
    qsort(*out + first, *n - first, sizeof **out, cmp_str);
    return 0;
}

int cli_import_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        import_usage();
        return 0;
    }
    const char **pos = xcalloc((size_t)argc + 1, sizeof *pos);
    int n_pos = 0;
    ImportOptions opts = {0};
    opts.annotator = g->annotator; /* the global --annotator (main.c takes it out of argv) */
    static const char *const known[] = {"--allow-missing", "--annotator", NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--allow-missing") == 0) {
            opts.allow_missing = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            free(pos);
            return cli_unknown_option("import", argv[i], known);
        } else {
            pos[n_pos++] = argv[i];
        }
    }
    if (n_pos < 2) {
        free(pos);
        cli_error("import: needs KIND and PATH, e.g. 'easel import ratings ratings.csv' "
                  "(see 'easel import --help')");
        return 2;
    }
    Err err = {0};
    ImportKind kind;
    if (import_kind_parse(pos[0], &kind, &err)) {
        free(pos);
        return cli_fail(&err);
    }
    if (n_pos > 2 && kind != IMPORT_GENERATED) {
        int rc = cli_unexpected("import", pos[2], NULL);
        free(pos);
        return rc;
    }
    /* generated: several files or folders (the shards of one run) */
    char **paths = NULL;
    size_t n_paths = 0;
    int status = 0;
    for (int i = 1; i < n_pos && !status; i++) {
        struct stat sb;
        if (kind == IMPORT_GENERATED && stat(pos[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            status = generated_csvs(pos[i], &paths, &n_paths);
        } else {
            paths = xrealloc(paths, (n_paths + 1) * sizeof *paths);
            paths[n_paths++] = xstrdup(pos[i]);
        }
    }
    free(pos);
    Store *st = status ? NULL : cli_open_store(g);
    if (!status && !st)
        status = 1;
    for (size_t i = 0; i < n_paths && !status; i++)
        status = import_one(st, kind, paths[i], &opts);
    store_close(st);
    base_strv_free(paths, n_paths);
    return status;
}

/* ---- export ---------------------------------------------------------------------------------- */

static void export_usage(void) {
    printf("usage: easel [--db PATH] export KIND [-o FILE] [--per-annotator]\n"
           "                                     [--min-rating-diff X]\n\n"
           "Write the store's data in the original system's formats (stdout by default).\n"
           "KIND is one of:\n"
           "  ratings    multihead_ratings.csv, the mean over annotators of each aspect;\n"
           "             --per-annotator writes one row per annotator with an annotator column\n"
           "  pairs      pairs.jsonl derived from the ratings, per aspect and combined;\n"
           "             img_pos is always the preferred image, label 1.0\n"
           "  prompts    prompts.csv\n"
           "  template   every image with blank ratings, to fill in\n"
           "  merged     a generator adapter merged into its base model, one checkpoint\n"
           "  kohya      a generator adapter with kohya's names\n"
           "  peft       a generator adapter as a diffusers / PEFT folder\n"
           "             (see 'easel export merged --help')\n\n"
           "options:\n"
           "  -o, --output FILE    write FILE (atomically) instead of stdout; image paths are\n"
           "                       written relative to FILE's folder when inside it\n"
           "  --per-annotator      ratings, pairs: per annotator instead of the mean\n"
           "  --min-rating-diff X  pairs: smallest rating difference that makes a pair\n"
           "                       (default 0.5)\n\n"
           "The output is deterministic: sorted by prompt_id, image path, annotator.\n\n"
           "examples:\n"
           "  easel export ratings --per-annotator -o ratings.csv\n"
           "  easel export pairs --min-rating-diff 1 -o pairs.jsonl\n");
}

int cli_export_main(const CliGlobal *g, int argc, char **argv) {
    /* adapters: export merged / kohya / peft (cli_export_adapter.c, adio16) */
    if (argc > 1 && (!strcmp(argv[1], "merged") || !strcmp(argv[1], "kohya") ||
                     !strcmp(argv[1], "peft")))
        return cli_export_adapter_main(g, argc - 1, argv + 1);
    if (cli_wants_help(argc, argv)) {
        export_usage();
        return 0;
    }
    const char *kind_name = NULL, *output = NULL, *diff = NULL;
    ExportOptions opts;
    export_options_init(&opts);
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (opt_value(argc, argv, &i, "-o", &v) || opt_value(argc, argv, &i, "--output", &v)) {
            if (!v || !*v) {
                cli_error("export: -o needs a file name (e.g. -o ratings.csv)");
                return 2;
            }
            output = v;
        } else if (opt_value(argc, argv, &i, "--min-rating-diff", &v)) {
            if (!v) {
                cli_error("export: --min-rating-diff needs a number (e.g. 0.5)");
                return 2;
            }
            diff = v;
        } else if (strcmp(argv[i], "--per-annotator") == 0) {
            opts.per_annotator = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("export: unknown option '%s' (see 'easel export --help')", argv[i]);
            return 2;
        } else if (!kind_name) {
            kind_name = argv[i];
        } else {
            return cli_unexpected("export", argv[i], NULL);
        }
    }
    if (!kind_name) {
        cli_error("export: needs KIND: ratings, pairs, prompts, template, merged, kohya or peft "
                  "(see 'easel export --help')");
        return 2;
    }
    Err err = {0};
    ExportKind kind;
    if (export_kind_parse(kind_name, &kind, &err))
        return cli_fail(&err);
    if (diff) {
        char *end;
        double x = strtod(diff, &end);
        if (*end || end == diff || !isfinite(x) || x < 0 || x > 10) {
            cli_error("export: --min-rating-diff '%s' must be a number in 0..10", diff);
            return 2;
        }
        if (kind != EXPORT_PAIRS) {
            cli_error("export: --min-rating-diff applies to 'export pairs' only");
            return 2;
        }
        opts.min_rating_diff = x;
    }
    if (opts.per_annotator && kind != EXPORT_RATINGS && kind != EXPORT_PAIRS) {
        cli_error("export: --per-annotator applies to 'export ratings' and 'export pairs'");
        return 2;
    }
    char rel[PATH_MAX];
    if (output) {
        char *slash = strrchr(output, '/');
        char *dir = slash ? xstrndup(output, slash == output ? 1 : (size_t)(slash - output))
                          : xstrdup(".");
        int ok = realpath(dir, rel) != NULL;
        if (!ok)
            cli_error("export: %s: the folder does not exist", dir);
        free(dir);
        if (!ok)
            return 1;
    } else if (!getcwd(rel, sizeof rel)) {
        rel[0] = '\0';
    }
    opts.relative_to = rel[0] ? rel : NULL;
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    size_t n = 0;
    /* blind rating: --annotator NAME ($EASEL_ANNOTATOR) shows a non-reviewer no NAME's rows */
    const char *as = identity_annotator(g->annotator);
    char what[200];
    snprintf(what, sizeof what, "exporting as another annotator ('%s'; you are %s)", as,
             identity_login());
    int rc = strcmp(as, identity_login()) != 0 &&
                     (kind == EXPORT_RATINGS || kind == EXPORT_PAIRS)
                 ? trust_require_review(st, identity_login(), what, &err) : 0;
    if (rc) {
        store_close(st);
        return cli_fail(&err);
    }
    rc = output ? export_to_file(st, kind, output, &opts, &n, &err)
                    : export_write(st, kind, stdout, &opts, &n, &err);
    store_close(st);
    if (rc)
        return cli_fail(&err);
    if (output)
        printf("wrote %zu %s to %s\n", n, kind == EXPORT_PAIRS ? "pairs" : "rows", output);
    return 0;
}

/* ---- status ---------------------------------------------------------------------------------- */

static void status_usage(void) {
    printf("usage: easel [--db PATH] status [--json]\n\n"
           "Counts of what the store holds: prompts, images (and how many are missing on\n"
           "disk or retired), annotators, ratings per aspect, edits kept in history,\n"
           "preference pairs (imported, and derived from the ratings of images in use with\n"
           "min difference 0.5), runs and jobs. Retired images ('easel images retire') keep\n"
           "their ratings but are left out of the queue, training and the derived pairs.\n\n"
           "options:\n"
           "  --json   one JSON object, for scripts\n\n"
           "example:\n"
           "  easel --db data/demo.db status\n");
}

int cli_status_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        status_usage();
        return 0;
    }
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else {
            return cli_unexpected("status", argv[i], NULL);
        }
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    StoreCounts c;
    StoreRating *rat = NULL;
    size_t n_rat = 0;
    int rc = store_counts(st, &c, &err);
    if (!rc)
        rc = store_ratings_all(st, &rat, &n_rat, &err);
    store_close(st);
    if (rc) {
        store_counts_deinit(&c);
        return cli_fail(&err);
    }
    PairsMeans m;
    pairs_means_init(&m, rat, n_rat, (int)c.n_aspects, 0);
    Pair *pairs;
    size_t n_aspect_pairs, n_combined = 0;
    pairs_derive(&m, PAIRS_MIN_DIFF_DEFAULT, PAIRS_ALL, &pairs, &n_aspect_pairs);
    for (size_t i = 0; i < n_aspect_pairs; i++)
        n_combined += pairs[i].aspect == PAIRS_COMBINED;
    n_aspect_pairs -= n_combined;
    free(pairs);
    pairs_means_deinit(&m);
    free(rat);
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "store", json_string(g->db_path));
        json_object_set_new(o, "prompts", json_integer(c.prompts));
        json_object_set_new(o, "images", json_integer(c.images));
        json_object_set_new(o, "images_missing", json_integer(c.images_missing));
        json_object_set_new(o, "images_retired", json_integer(c.images_retired));
        json_object_set_new(o, "images_rated", json_integer(c.images_rated));
        json_object_set_new(o, "annotators", json_integer(c.annotators));
        json_object_set_new(o, "ratings", json_integer(c.ratings));
        json_object_set_new(o, "rating_edits", json_integer(c.rating_edits));
        json_t *a = json_object();
        for (size_t i = 0; i < c.n_aspects; i++) {
            json_t *x = json_object();
            json_object_set_new(x, "ratings", json_integer(c.aspects[i].n_ratings));
            json_object_set_new(x, "images", json_integer(c.aspects[i].n_images));
            json_object_set_new(a, c.aspects[i].name, x);
        }
        json_object_set_new(o, "aspects", a);
        json_object_set_new(o, "pairs_imported", json_integer(c.pairs));
        json_object_set_new(o, "pairs_derived_aspect", json_integer((json_int_t)n_aspect_pairs));
        json_object_set_new(o, "pairs_derived_combined", json_integer((json_int_t)n_combined));
        json_object_set_new(o, "runs", json_integer(c.runs));
        json_object_set_new(o, "jobs", json_integer(c.jobs));
        json_object_set_new(o, "jobs_queued", json_integer(c.jobs_queued));
        json_object_set_new(o, "jobs_running", json_integer(c.jobs_running));
        char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("store       %s\n", g->db_path);
        printf("prompts     %lld\n", (long long)c.prompts);
        printf("images      %lld (%lld rated, %lld missing on disk, %lld retired)\n",
               (long long)c.images, (long long)c.images_rated, (long long)c.images_missing,
               (long long)c.images_retired);
        if (c.images_retired)
            printf("            retired images keep their ratings but are out of the queue,\n"
                   "            training and evaluation: 'easel images list --retired'\n");
        printf("annotators  %lld\n", (long long)c.annotators);
        printf("ratings     %lld (%lld earlier values kept in history)\n", (long long)c.ratings,
               (long long)c.rating_edits);
        for (size_t i = 0; i < c.n_aspects; i++)
            printf("  %-10s %lld ratings on %lld images\n", c.aspects[i].name,
                   (long long)c.aspects[i].n_ratings, (long long)c.aspects[i].n_images);
        printf("pairs       %lld imported; from ratings (diff >= 0.5): %zu per aspect, %zu "
               "combined\n",
               (long long)c.pairs, n_aspect_pairs, n_combined);
        printf("runs        %lld\n", (long long)c.runs);
        printf("jobs        %lld (%lld queued, %lld running)\n", (long long)c.jobs,
               (long long)c.jobs_queued, (long long)c.jobs_running);
    }
    store_counts_deinit(&c);
    return 0;
}
