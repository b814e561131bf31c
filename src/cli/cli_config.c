/* cli_config — `easel config` (store settings: blind rating, output roots) and `easel
 * annotators` (list, grant and revoke the reviewer role).
 *
 * Every change is the store owner's (the Unix owner of the store file): src/data/trust.h has the
 * rule and says who to ask. Reading is anyone's. doc/annotators.md describes the trust model
 * these commands configure.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base.h"
#include "identity.h"
#include "store.h"
#include "store_settings.h"
#include "trust.h"

static void fmt_time(double t, char *buf, size_t n) {
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M", &tm);
}

/* ---- config ------------------------------------------------------------------------------- */

static void config_usage(void) {
    printf("usage: easel config [show]\n"
           "       easel config blind [on|off]\n"
           "       easel config output-root add|remove PATH\n"
           "       easel config output-root list\n\n"
           "Settings of the store, shared by everyone who uses it. Only the store's owner\n"
           "(the Unix owner of the store file) changes them; anyone may read them.\n\n"
           "  blind on|off       blind rating: annotators see only their own ratings; the\n"
           "                     Quality screen, per-annotator exports and agreement detail\n"
           "                     need the reviewer role ('easel annotators grant')\n"
           "  output-root add    a folder outside the store's folder that jobs may read and\n"
           "                     write (export --out, import --path, run folders, models);\n"
           "                     by default jobs use only the store's folder\n\n"
           "See doc/annotators.md for the trust model.\n\n"
           "example:\n  easel config blind on\n  easel config output-root add /data/exports\n");
}

static int config_show(Store *st) {
    Err err = {0};
    uid_t owner;
    int blind;
    StoreOutputRoot *roots;
    int n;
    if (trust_store_owner(st, &owner, &err) || store_blind(st, &blind, &err) ||
        store_output_roots(st, &roots, &n, &err))
        return cli_fail(&err);
    char *oname = identity_name_of(owner);
    printf("store        %s\nowner        %s\nworkspace    %s\nblind        %s\n",
           store_path(st), oname, store_dir(st), blind ? "on" : "off");
    printf("output roots %s\n", n ? "" : "none (jobs use only the workspace)");
    for (int i = 0; i < n; i++) {
        char t[32];
        fmt_time(roots[i].added_at, t, sizeof t);
        printf("  %s  (added by %s, %s)\n", roots[i].path,
               roots[i].added_by[0] ? roots[i].added_by : "?", t);
    }
    free(oname);
    store_output_roots_free(roots, n);
    return 0;
}

static int config_blind(Store *st, int argc, char **argv) {
    Err err = {0};
    if (argc == 1) {
        int blind;
        if (store_blind(st, &blind, &err))
            return cli_fail(&err);
        printf("blind rating is %s\n", blind ? "on" : "off");
        return 0;
    }
    if (argc != 2 || (strcmp(argv[1], "on") && strcmp(argv[1], "off"))) {
        cli_error("config blind: expected 'on' or 'off'%s%s%s", argc > 1 ? ", not '" : "",
                  argc > 1 ? argv[1] : "", argc > 1 ? "'" : "");
        return 2;
    }
    if (trust_require_owner(st, "turn blind rating on or off", &err) ||
        store_setting_set(st, "blind", argv[1], identity_login(), &err))
        return cli_fail(&err);
    printf("blind rating is %s\n", argv[1]);
    return 0;
}

static int config_output_root(Store *st, int argc, char **argv) {
    Err err = {0};
    const char *op = argc > 1 ? argv[1] : "list";
    if (strcmp(op, "list") == 0 && argc <= 2) {
        StoreOutputRoot *roots;
        int n;
        if (store_output_roots(st, &roots, &n, &err))
            return cli_fail(&err);
        for (int i = 0; i < n; i++)
            printf("%s\n", roots[i].path);
        if (!n)
            printf("(no output roots: jobs use only the workspace %s)\n", store_dir(st));
        store_output_roots_free(roots, n);
        return 0;
    }
    if ((strcmp(op, "add") && strcmp(op, "remove")) || argc != 3) {
        cli_error("config output-root: expected 'add PATH', 'remove PATH' or 'list' (see "
                  "'easel config --help')");
        return 2;
    }
    const char *path = argv[2];
    char res[PATH_MAX];
    int add = strcmp(op, "add") == 0;
    if (trust_require_owner(st, add ? "add output roots" : "remove output roots", &err))
        return cli_fail(&err);
    if (add) {
        struct stat sb;
        if (!realpath(path, res) || stat(res, &sb) != 0) {
            cli_error("config output-root add %s: %s; create the folder first", path,
                      strerror(errno));
            return 1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            cli_error("config output-root add %s: not a folder", path);
            return 1;
        }
        if (strcmp(res, "/") == 0) {
            cli_error("config output-root add %s: the root folder would let jobs write "
                      "anywhere; name the folder they should use", path);
            return 1;
        }
        int added = 0;
        if (store_output_root_add(st, res, identity_login(), &added, &err))
            return cli_fail(&err);
        printf(added ? "output root %s added\n" : "%s is already an output root\n", res);
        return 0;
    }
    /* remove: as given, else as it resolves now */
    if (store_output_root_remove(st, path, &err) == 0) {
        printf("output root %s removed\n", path);
        return 0;
    }
    if (err.code == ERR_NOTFOUND && realpath(path, res) && strcmp(res, path) != 0) {
        Err e2 = {0};
        if (store_output_root_remove(st, res, &e2) == 0) {
            printf("output root %s removed\n", res);
            return 0;
        }
    }
    return cli_fail(&err);
}

int cli_config_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        config_usage();
        return 0;
    }
    const char *sub = argc > 1 ? argv[1] : "show";
    if (strcmp(sub, "show") && strcmp(sub, "blind") && strcmp(sub, "output-root")) {
        static const char *const known[] = {"show", "blind", "output-root", NULL};
        return cli_unknown_option("config", sub, known);
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    int rc;
    if (strcmp(sub, "show") == 0) {
        if (argc > 2) {
            cli_error("config show: unexpected argument '%s'", argv[2]);
            rc = 2;
        } else {
            rc = config_show(st);
        }
    } else if (strcmp(sub, "blind") == 0) {
        rc = config_blind(st, argc - 1, argv + 1);
    } else {
        rc = config_output_root(st, argc - 1, argv + 1);
    }
    store_close(st);
    return rc;
}

/* ---- annotators ----------------------------------------------------------------------------- */

static void annotators_usage(void) {
    printf("usage: easel annotators [list]\n"
           "       easel annotators grant NAME reviewer\n"
           "       easel annotators revoke NAME [reviewer]\n\n"
           "The annotators of the store with their role and number of ratings. Under blind\n"
           "rating ('easel config blind on') only reviewers see other annotators' ratings\n"
           "(the Quality screen, per-annotator exports, agreement detail) and may rate under\n"
           "another name. NAME is the Unix login of the person; the store's owner grants and\n"
           "revokes the role, and always has it.\n\n"
           "example:\n  easel annotators grant alice reviewer\n");
}

static int annotators_list(Store *st) {
    Err err = {0};
    StoreAnnotatorRole *v;
    int n;
    if (store_annotator_roles(st, &v, &n, &err))
        return cli_fail(&err);
    printf("%-24s %-10s %8s\n", "ANNOTATOR", "ROLE", "RATINGS");
    for (int i = 0; i < n; i++)
        printf("%-24s %-10s %8lld\n", v[i].name, v[i].role, (long long)v[i].n_ratings);
    if (!n)
        printf("(no annotators yet)\n");
    store_annotator_roles_free(v, n);
    return 0;
}

int cli_annotators_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        annotators_usage();
        return 0;
    }
    const char *sub = argc > 1 ? argv[1] : "list";
    int grant = strcmp(sub, "grant") == 0, revoke = strcmp(sub, "revoke") == 0;
    if (strcmp(sub, "list") == 0) {
        if (argc > 2) {
            cli_error("annotators list: unexpected argument '%s'", argv[2]);
            return 2;
        }
    } else if (grant || revoke) {
        int ok = grant ? argc == 4 : (argc == 3 || argc == 4);
        if (!ok || (argc == 4 && strcmp(argv[3], "reviewer") != 0) || !argv[2][0]) {
            cli_error("annotators %s: expected '%s NAME reviewer' (the one role there is to "
                      "%s)", sub, sub, sub);
            return 2;
        }
    } else {
        static const char *const known[] = {"list", "grant", "revoke", NULL};
        return cli_unknown_option("annotators", sub, known);
    }
    Store *st = cli_open_store(g);
    if (!st)
        return 1;
    int rc;
    if (!grant && !revoke) {
        rc = annotators_list(st);
    } else {
        Err err = {0};
        if (trust_require_owner(st, grant ? "grant roles" : "revoke roles", &err) ||
            store_annotator_set_role(st, argv[2],
                                     grant ? STORE_ROLE_REVIEWER : STORE_ROLE_ANNOTATOR, &err)) {
            rc = cli_fail(&err);
        } else {
            printf(grant ? "%s is a reviewer\n" : "%s is an annotator (no longer a reviewer)\n",
                   argv[2]);
            rc = 0;
        }
    }
    store_close(st);
    return rc;
}
