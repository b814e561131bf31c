/* cli — the subcommand table and shared helpers. See cli.h. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <ftw.h>
#include <grp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "store.h"

const CliCommand cli_commands[] = {
    {"init", cli_init_main, "create the store (idempotent)"},
    {"import", cli_import_main, "import prompts, ratings, pairs, generated images or a folder"},
    {"export", cli_export_main, "export ratings, pairs, prompts or a rating template"},
    {"status", cli_status_main, "counts of prompts, images, ratings, pairs, runs, jobs"},
    {"images", cli_images_main, "list images; retire them from the queue and training, or back"},
    {"annotate", cli_annotate_main, "rate images in the terminal (the TUI's Annotate screen)"},
    {"jobs", cli_jobs_main, "the job queue: add, list, show, cancel, retry, resume, wait"},
    {"worker", cli_worker_main, "run queued jobs headless (threads, GPUs); stops on SIGTERM"},
    {"gpus", cli_gpus_main, "GPU discovery through NVML (or why there is no GPU)"},
    {"gpu", cli_gpus_main, "same as gpus"},
    {"models", cli_models_main, "register CLIP and diffusion model folders: add, list, remove"},
    {"embed", cli_embed_main, "print CLIP (or classic) embeddings of images and texts"},
    {"agreement", cli_agreement_main, "inter-annotator agreement per aspect: alpha, ICC, disagreement"},
    {"train", cli_train_main, "train a five-head reward model (foreground, or --queue a job)"},
    {"eval", cli_eval_main, "evaluate a reward checkpoint on pairs: accuracy, margin, F1"},
    {"score", cli_score_main, "score images with a reward checkpoint, into the store and CSV"},
    {"runs", cli_runs_main, "training and evaluation runs: list, show RUN [--follow]"},
    {"monitor", cli_monitor_main, "watch a training run live (the TUI's Monitor screen)"},
    {"config", cli_config_main, "store settings: blind rating, output roots (owner only)"},
    {"annotators", cli_annotators_main, "annotators and their roles: list, grant, revoke"},
    {"generate", cli_generate_main, "generate images with a diffusion model, into the store"},
    {"tune", cli_tune_main, "fine-tune a diffusion model on preference pairs (DPO, DSPO, ADPO)"},
    {"tune-eval", cli_tune_eval_main, "a tuned adapter vs its base model: win rate, gain"},
    /* ab16: blind A/B sets of a tune-eval run (src/cli/cli_ab.c) */
    {"ab", cli_ab_main, "blind A/B sets of an evaluation: add, list, results, judge (TUI)"},
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

struct Store *cli_open_store(const CliGlobal *g) {
    Err err = {0};
    Store *st = store_open_existing(g->db_path, &err);
    if (!st)
        cli_fail(&err);
    return st;
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

int cli_parse_long(const char *cmd, const char *what, const char *s, long long min,
                   long long max, long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = s && *s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno == ERANGE || v < min || v > max) {
        cli_error("%s: %s %s: expected a whole number from %lld to %lld", cmd, what,
                  s ? s : "(none)", min, max);
        return 2;
    }
    *out = v;
    return 0;
}

/* Levenshtein distance of A and B, capped at 3 (enough to say "close"). */
static int edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 64 || nb > 64)
        return 3;
    int prev[65], cur[65];
    for (size_t j = 0; j <= nb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (nb + 1));
    }
    return prev[nb] < 3 ? prev[nb] : 3;
}

int cli_unexpected(const char *cmd, const char *arg, const char *help) {
    cli_error("%s: unexpected argument '%s' (see 'easel %s --help')", cmd, arg,
              help ? help : cmd);
    return 2;
}

int cli_unknown_option(const char *cmd, const char *opt, const char *const *known) {
    const char *best = NULL;
    int best_d = 3;
    size_t n = strcspn(opt, "=");
    char name[80];
    snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name - 1 ? n : sizeof name - 1), opt);
    for (int i = 0; known && known[i]; i++) {
        int d = edit_distance(name, known[i]);
        if (strlen(name) > 3 && strncmp(known[i], name, strlen(name)) == 0)
            d = 1;
        if (d < best_d) {
            best_d = d;
            best = known[i];
        }
    }
    if (best)
        cli_error("%s: unknown option '%s'; did you mean '%s'? (see 'easel %s --help')", cmd,
                  opt, best, cmd);
    else
        cli_error("%s: unknown option '%s' (see 'easel %s --help')", cmd, opt, cmd);
    return 2;
}

/* mkdir -p of the folder that will hold PATH. */
static int make_parent_dirs(const char *path, Err *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return err_set(err, ERR_USAGE, "%s: path too long", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    *slash = '\0';
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return err_set(err, ERR_IO, "%s: cannot create folder %s: %s", path, buf,
                               strerror(errno));
            if (c == '\0')
                break;
            *p = c;
        }
    }
    return 0;
}

/* chgrp GID and add the group's permissions (rw, x on folders and where the owner has it;
 * setgid on folders so what is made inside inherits the group). */
static int share_one(const char *path, gid_t gid, Err *err) {
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISLNK(sb.st_mode))
        return 0; /* never follow a link out of the workspace */
    if (sb.st_gid != gid && chown(path, (uid_t)-1, gid) != 0)
        return err_set(err, errno == EPERM ? ERR_DENIED : ERR_IO,
                       "%s: cannot give it to the group: %s (only its owner, who must be in "
                       "the group, or root can)", path, strerror(errno));
    mode_t m = sb.st_mode & 07777;
    m |= S_IRGRP | S_IWGRP;
    if (S_ISDIR(sb.st_mode))
        m |= S_IXGRP | S_ISGID;
    else if (sb.st_mode & S_IXUSR)
        m |= S_IXGRP;
    if (m != (sb.st_mode & 07777) && chmod(path, m) != 0)
        return err_set(err, ERR_IO, "%s: cannot make it group-writable: %s", path,
                       strerror(errno));
    return 0;
}

static gid_t walk_gid;
static Err *walk_err;
static int walk_rc; /* what stopped the walk */

static int share_walk(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    walk_rc = share_one(path, walk_gid, walk_err);
    return walk_rc ? 1 : 0; /* nonzero stops the walk; walk_rc says why */
}

/* `init --shared GROUP`: the store, its -wal and -shm, its folder and runs/ (all of it). */
static int share_store(Store *st, const char *group, Err *err) {
    struct group gr, *res = NULL;
    char buf[4096];
    char *end;
    long num = strtol(group, &end, 10);
    gid_t gid;
    if (getgrnam_r(group, &gr, buf, sizeof buf, &res) == 0 && res)
        gid = res->gr_gid;
    else if (*group && !*end && num >= 0)
        gid = (gid_t)num;
    else
        return err_set(err, ERR_USAGE, "init --shared %s: no such group (see 'getent group'; "
                       "create one with 'groupadd %s' and add the users to it)", group, group);
    const char *dir = store_dir(st);
    char *wal = xasprintf("%s-wal", store_path(st));
    char *shm = xasprintf("%s-shm", store_path(st));
    char *runs = xasprintf("%s/runs", dir);
    int rc = 0;
    if (mkdir(runs, 0775) != 0 && errno != EEXIST)
        rc = err_set(err, ERR_IO, "%s: cannot create: %s", runs, strerror(errno));
    if (!rc)
        rc = share_one(dir, gid, err);
    if (!rc)
        rc = share_one(store_path(st), gid, err);
    if (!rc && access(wal, F_OK) == 0)
        rc = share_one(wal, gid, err);
    if (!rc && access(shm, F_OK) == 0)
        rc = share_one(shm, gid, err);
    if (!rc) {
        walk_gid = gid;
        walk_err = err;
        walk_rc = 0;
        int w = nftw(runs, share_walk, 16, FTW_PHYS);
        if (w && walk_rc)
            rc = walk_rc;
        else if (w)
            rc = err_set(err, ERR_IO, "%s: cannot walk: %s", runs, strerror(errno));
    }
    free(wal);
    free(shm);
    free(runs);
    return rc;
}

int cli_init_main(const CliGlobal *g, int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: easel [--db PATH] init [--shared GROUP]\n\n"
               "Create the store at PATH (default $EASEL_DB, else ./easel.db), or migrate an\n"
               "existing one to this version's schema; missing folders of PATH are created.\n"
               "Running it again changes nothing.\n\n"
               "  --shared GROUP   let the Unix group GROUP use the store: the store file, its\n"
               "                   -wal and -shm files, its folder and runs/ become owned by\n"
               "                   GROUP and group-writable, and the folders setgid so what\n"
               "                   is made there later stays the group's. Run it as the store's\n"
               "                   owner (a member of GROUP), on a new or an existing store.\n"
               "                   doc/annotators.md describes the set-up and what it trusts.\n\n"
               "example:\n  easel --db work/easel.db init\n"
               "  easel --db /srv/easel/team.db init --shared rlhf\n");
        return 0;
    }
    const char *shared = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--shared") == 0 && i + 1 < argc && argv[i + 1][0]) {
            shared = argv[++i];
        } else if (strcmp(argv[i], "--shared") == 0) {
            cli_error("init: --shared needs a group name (see 'easel init --help')");
            return 2;
        } else {
            static const char *const known[] = {"--shared", NULL};
            if (argv[i][0] == '-')
                return cli_unknown_option("init", argv[i], known);
            return cli_unexpected("init", argv[i], NULL);
        }
    }
    Err err = {0};
    if (make_parent_dirs(g->db_path, &err))
        return cli_fail(&err);
    Store *st = store_open(g->db_path, &err);
    if (!st)
        return cli_fail(&err);
    if (shared && share_store(st, shared, &err)) {
        store_close(st);
        return cli_fail(&err);
    }
    printf("store %s at schema version %d\n", g->db_path, store_version(st));
    if (shared)
        printf("shared with group %s: the store, its -wal/-shm files, %s and runs/ are "
               "group-writable\n", shared, store_dir(st));
    store_close(st);
    return 0;
}
