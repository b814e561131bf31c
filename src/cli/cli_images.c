/* cli_images — `easel images list|retire|unretire`: look at the store's images and take
 * images out of use without deleting anything. Argument parsing and printing only; the work
 * is in store_catalog.c (store_images_select, store_image_retire).
 *
 * A retired image leaves the annotate queue, training, evaluation, scoring, agreement and
 * export; every rating and pair of it stays in the store and counts again after `unretire`.
 * Exit codes: 0 ok, 1 failure (unknown image, store error), 2 usage error.
 */
#include "cli.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"
#include "identity.h"
#include "store_catalog.h"

static void images_usage(void) {
    printf("usage: easel [--db PATH] images list [--retired | --missing] [--json]\n"
           "       easel [--db PATH] images retire ID|PATH... [--reason TEXT]\n"
           "       easel [--db PATH] images unretire ID|PATH...\n\n"
           "list      every image with its id, prompt, path and state; --retired or --missing\n"
           "          shows only those (missing: the file was not on disk when last imported)\n"
           "retire    take images out of use: out of the annotate queue, training, evaluation,\n"
           "          scoring, agreement and export. Nothing is deleted: their ratings and pairs\n"
           "          stay in the store, and 'unretire' brings them back. Use it for an image\n"
           "          whose file is gone or broken, or that should not be trained on.\n"
           "unretire  bring retired images back into use\n\n"
           "An image is named by its id (first column of 'images list') or by its path, as\n"
           "stored or as a path from the current folder. All the images given change in one\n"
           "transaction: if one is unknown, none changes.\n\n"
           "options:\n"
           "  --reason TEXT   retire: why (shown by 'images list --retired')\n"
           "  --retired       list: retired images only\n"
           "  --missing       list: images not on disk when last imported\n"
           "  --json          list: one JSON array, for scripts\n\n"
           "examples:\n"
           "  easel images retire 17 images/3/2.png --reason \"file is corrupt\"\n"
           "  easel images list --retired\n"
           "  easel images unretire 17\n");
}

/* Print S for a human: control characters (an escape sequence hidden in a path or a reason)
 * are shown escaped, never sent to the terminal. */
static void put_safe(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
}

/* The image ARG names: an id (all digits) or a path (stored form, or from the cwd). */
static int find_image(Store *st, const char *arg, StoreImage *out, Err *err) {
    if (arg[0] && strspn(arg, "0123456789") == strlen(arg)) {
        long long id;
        if (cli_parse_long("images", "image id", arg, 1, INT64_MAX, &id))
            return ERR_USAGE;
        if (store_image_get(st, id, out, NULL) == 0)
            return 0;
        return err_set(err, ERR_NOTFOUND,
                       "images: no image with id %s in %s (see 'easel images list')", arg,
                       store_path(st));
    }
    if (store_image_by_path(st, arg, out, NULL) == 0)
        return 0;
    char *stored = store_path_to_stored(st, arg);
    int rc = store_image_by_path(st, stored, out, NULL);
    free(stored);
    if (rc == 0)
        return 0;
    return err_set(err, ERR_NOTFOUND,
                   "images: no image '%s' in %s; give its id or its path (see 'easel images "
                   "list')",
                   arg, store_path(st));
}

static int images_change(const CliGlobal *g, int argc, char **argv, int retire) {
    const char *cmd = retire ? "retire" : "unretire";
    const char *reason = NULL;
    const char **names = xcalloc((size_t)argc + 1, sizeof *names);
    int n = 0;
    static const char *const known_retire[] = {"--reason", NULL};
    static const char *const known_none[] = {NULL};
    for (int i = 1; i < argc; i++) {
        if (retire && strcmp(argv[i], "--reason") == 0) {
            if (i + 1 >= argc) {
                free(names);
                cli_error("images retire: --reason needs a text, e.g. --reason \"corrupt file\"");
                return 2;
            }
            reason = argv[++i];
        } else if (retire && strncmp(argv[i], "--reason=", 9) == 0) {
            reason = argv[i] + 9;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            free(names);
            char what[32];
            snprintf(what, sizeof what, "images %s", cmd);
            return cli_unknown_option(what, argv[i], retire ? known_retire : known_none);
        } else {
            names[n++] = argv[i];
        }
    }
    if (n == 0) {
        free(names);
        cli_error("images %s: name at least one image by id or path, e.g. 'easel images %s 17' "
                  "(see 'easel images --help')",
                  cmd, cmd);
        return 2;
    }
    Store *st = cli_open_store(g);
    if (!st) {
        free(names);
        return 1;
    }
    Err err = {0};
    const char *by = identity_annotator(g->annotator);
    int rc = store_begin(st, &err);
    int64_t *ids = xcalloc((size_t)n, sizeof *ids);
    int *changed = xcalloc((size_t)n, sizeof *changed);
    int64_t *n_ratings = xcalloc((size_t)n, sizeof *n_ratings);
    char **paths = xcalloc((size_t)n, sizeof *paths);
    int began = rc == 0;
    for (int i = 0; i < n && !rc; i++) {
        StoreImage img;
        if ((rc = find_image(st, names[i], &img, &err)))
            break;
        ids[i] = img.id;
        paths[i] = xstrdup(img.path);
        store_image_deinit(&img);
        if ((rc = store_image_retire(st, ids[i], retire, by, reason, &changed[i], &err)))
            break;
        rc = store_image_rating_count(st, ids[i], &n_ratings[i], &err);
    }
    if (began) {
        if (rc)
            store_rollback(st);
        else
            rc = store_commit(st, &err);
    }
    store_close(st);
    int status = 0;
    if (rc) {
        status = rc == ERR_USAGE ? 2 : cli_fail(&err);
        cli_error("images %s: nothing was changed", cmd);
    } else {
        for (int i = 0; i < n; i++) {
            if (!changed[i])
            {
                printf("image %lld (", (long long)ids[i]);
                put_safe(paths[i]);
                printf(") was already %s\n", retire ? "retired" : "in use");
            } else if (retire) {
                printf("retired image %lld (", (long long)ids[i]);
                put_safe(paths[i]);
                printf("); its %lld rating%s kept, unused until 'easel images unretire %lld'\n",
                       (long long)n_ratings[i], n_ratings[i] == 1 ? " is" : "s are",
                       (long long)ids[i]);
            } else {
                printf("image %lld (", (long long)ids[i]);
                put_safe(paths[i]);
                printf(") is in use again, with its %lld rating%s\n", (long long)n_ratings[i],
                       n_ratings[i] == 1 ? "" : "s");
            }
        }
    }
    base_strv_free(paths, (size_t)n);
    free(ids);
    free(changed);
    free(n_ratings);
    free(names);
    return status;
}

static const StorePrompt *prompt_of(const StorePrompt *p, size_t n, int64_t id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && p[lo].id == id ? &p[lo] : NULL;
}

static int images_list(const CliGlobal *g, int argc, char **argv) {
    StoreImageFilter filter = STORE_IMAGES_ALL;
    int json = 0;
    static const char *const known[] = {"--retired", "--missing", "--json", NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--retired") == 0 || strcmp(argv[i], "--missing") == 0) {
            StoreImageFilter f =
                argv[i][2] == 'r' ? STORE_IMAGES_RETIRED : STORE_IMAGES_MISSING;
            if (filter != STORE_IMAGES_ALL && filter != f) {
                cli_error("images list: give --retired or --missing, not both");
                return 2;
            }
            filter = f;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-') {
            return cli_unknown_option("images list", argv[i], known);
        } else {
            return cli_unexpected("images list", argv[i], "images");
        }
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    Err err = {0};
    StoreImage *im = NULL;
    size_t n = 0;
    StorePrompt *pr = NULL;
    size_t np = 0;
    int rc = store_images_select(st, filter, &im, &n, &err);
    if (!rc)
        rc = store_prompts_list(st, &pr, &np, &err);
    store_close(st);
    if (rc) {
        store_images_free(im, n);
        return cli_fail(&err);
    }
    if (json) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++) {
            const StorePrompt *p = prompt_of(pr, np, im[i].prompt_id);
            json_t *o = json_object();
            json_object_set_new(o, "id", json_integer(im[i].id));
            json_object_set_new(o, "prompt_id", p ? json_string(p->ext_id) : json_null());
            json_object_set_new(o, "path", json_string(im[i].path));
            json_object_set_new(o, "missing", json_boolean(im[i].missing));
            json_object_set_new(o, "retired", json_boolean(im[i].retired));
            if (im[i].retired) {
                json_object_set_new(o, "retired_at", json_real(im[i].retired_at));
                json_object_set_new(o, "retired_by",
                                    json_string(im[i].retired_by ? im[i].retired_by : ""));
                json_object_set_new(o, "retired_reason", im[i].retired_reason
                                                             ? json_string(im[i].retired_reason)
                                                             : json_null());
            }
            json_array_append_new(a, o);
        }
        char *s = json_dumps(a, JSON_PRESERVE_ORDER | JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(a);
    } else if (n == 0) {
        printf("%s\n", filter == STORE_IMAGES_RETIRED  ? "no retired images"
                       : filter == STORE_IMAGES_MISSING ? "no missing images"
                                                        : "no images");
    } else {
        printf("%-6s %-10s %-15s %s\n", "id", "prompt", "state", "path");
        for (size_t i = 0; i < n; i++) {
            const StorePrompt *p = prompt_of(pr, np, im[i].prompt_id);
            const char *state = im[i].retired && im[i].missing ? "retired,missing"
                                : im[i].retired                ? "retired"
                                : im[i].missing                ? "missing"
                                                               : "ok";
            printf("%-6lld ", (long long)im[i].id);
            char pid[16];
            snprintf(pid, sizeof pid, "%-10s", p ? p->ext_id : "-");
            put_safe(pid);
            printf(" %-15s ", state);
            put_safe(im[i].path);
            if (im[i].retired) {
                char when[32] = "";
                time_t t = (time_t)im[i].retired_at;
                struct tm tm;
                if (localtime_r(&t, &tm))
                    strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
                printf("  (by ");
                put_safe(im[i].retired_by && *im[i].retired_by ? im[i].retired_by : "?");
                printf(", %s", when);
                if (im[i].retired_reason) {
                    printf(": ");
                    put_safe(im[i].retired_reason);
                }
                putchar(')');
            }
            putchar('\n');
        }
    }
    store_images_free(im, n);
    store_prompts_free(pr, np);
    return 0;
}

int cli_images_main(const CliGlobal *g, int argc, char **argv) {
    if (argc < 2 || (cli_wants_help(argc, argv) && argv[1][0] == '-')) {
        images_usage();
        return argc < 2 ? 2 : 0;
    }
    if (cli_wants_help(argc, argv)) {
        images_usage();
        return 0;
    }
    const char *c = argv[1];
    argc--;
    argv++;
    if (!strcmp(c, "list") || !strcmp(c, "ls"))
        return images_list(g, argc, argv);
    if (!strcmp(c, "retire"))
        return images_change(g, argc, argv, 1);
    if (!strcmp(c, "unretire"))
        return images_change(g, argc, argv, 0);
    cli_error("images: unknown command '%s': list, retire or unretire (see 'easel images "
              "--help')",
              c);
    return 2;
}
