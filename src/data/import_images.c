/* import_images — a folder laid out {prompt_id}/{seed}.png. The subfolders name prompts that
 * must exist; files with an image extension are images, a whole-number name is the seed.
 * Plans the whole tree, then applies it in one transaction (import_int.h).
 */
#include "import_int.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "store_catalog.h"

#define PREFETCH_BATCH 64 /* image files decoded together (on several threads) */

/* ---- an image folder {prompt_id}/{seed}.png ------------------------------------------------- */

typedef struct IRow {
    char *where; /* prompt_id/file, for messages */
    int64_t prompt_id;
    int has_seed;
    int64_t seed;
    ImportImg img;
} IRow;

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    const char *ext[] = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG"};
    for (size_t i = 0; i < ARRAY_LEN(ext); i++)
        if (strcmp(dot, ext[i]) == 0)
            return 1;
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    /* numbers by value, so 2.png comes before 10.png */
    char *ex, *ey;
    long long nx = strtoll(x, &ex, 10), ny = strtoll(y, &ey, 10);
    if (ex != x && ey != y && nx != ny)
        return nx < ny ? -1 : 1;
    return strcmp(x, y);
}

/* Sorted entry names of DIR (no dot-files). NULL if it cannot be read. */
static char **list_dir(const char *dir, size_t *n) {
    DIR *d = opendir(dir);
    *n = 0;
    if (!d)
        return NULL;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        v = xrealloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (*n)
        qsort(v, *n, sizeof *v, cmp_name);
    else
        v = xcalloc(1, sizeof *v);
    return v;
}

/* Is PATH (absolute, resolved) DIR itself or inside it? */
static int is_under(const char *path, const char *dir) {
    size_t n = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return 1;
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* A file whose real location (symlinks followed) is outside both the imported folder and the
 * workspace is refused: a symlink must not smuggle /etc/shadow or another user's files in.
 * 0, or -1 after a problem. */
static int check_inside(ImportCtx *c, const char *where, const char *full, const char *rroot) {
    char real[PATH_MAX];
    if (!realpath(full, real)) {
        import_problem(c, 0, "%s: cannot resolve it (%s): a symlink to nothing?", where,
                       strerror(errno));
        return -1;
    }
    char ws[PATH_MAX];
    int in_ws = realpath(store_dir(c->st), ws) && is_under(real, ws);
    if (is_under(real, rroot) || in_ws)
        return 0;
    import_problem(c, 0,
                   "%s leads to %s, outside the imported folder and the workspace (%s); "
                   "symlinks may not bring files in from elsewhere: copy the image in instead",
                   where, real, store_dir(c->st));
    return -1;
}

int import_images_folder(ImportCtx *c, const char *root, Err *err) {
    if (!import_is_dir(root))
        return err_set(err, access(root, F_OK) == 0 ? ERR_USAGE : ERR_NOTFOUND,
                       "%s: not a folder; 'import images' takes a folder laid out "
                       "{prompt_id}/{seed}.png",
                       root);
    char rroot[PATH_MAX];
    if (!realpath(root, rroot))
        return err_set(err, ERR_IO, "%s: cannot resolve the folder: %s", root, strerror(errno));
    size_t n_sub;
    char **sub = list_dir(root, &n_sub);
    if (!sub)
        return err_set(err, ERR_IO, "%s: cannot read the folder: %s", root, strerror(errno));
    IRow *rows = NULL;
    size_t n = 0;
    for (size_t i = 0; i < n_sub; i++) {
        char *subdir = xasprintf("%s/%s", root, sub[i]);
        if (!import_is_dir(subdir)) {
            if (is_image_name(sub[i]))
                import_warn(c, 0, "%s is not inside a {prompt_id}/ folder; skipped", sub[i]);
            free(subdir);
            continue;
        }
        int64_t pid = import_prompt_lookup(c, sub[i]);
        size_t n_files;
        char **files = list_dir(subdir, &n_files);
        int n_img = 0;
        for (size_t j = 0; files && j < n_files; j++)
            n_img += is_image_name(files[j]);
        if (!pid && n_img > 0)
            import_problem(c, 0,
                           "%s/: no prompt with prompt_id \"%s\" in the store; import prompts.csv "
                           "(or the generation metadata CSV) first",
                           sub[i], sub[i]);
        for (size_t j = 0; pid && files && j < n_files; j++) {
            char *full = xasprintf("%s/%s", subdir, files[j]);
            if (!is_image_name(files[j])) {
                if (!import_is_dir(full))
                    import_warn(c, 0,
                                "%s/%s is not an image file (.png, .jpg, .webp, .bmp); skipped",
                                sub[i], files[j]);
                free(full);
                continue;
            }
            rows = xrealloc(rows, (n + 1) * sizeof *rows);
            IRow *ir = &rows[n++];
            memset(ir, 0, sizeof *ir);
            c->rep->rows++;
            ir->where = xasprintf("%s/%s", sub[i], files[j]);
            ir->prompt_id = pid;
            char *stem = xstrndup(files[j], (size_t)(strrchr(files[j], '.') - files[j]));
            int seed_rc = import_parse_int(stem, &ir->seed);
            ir->has_seed = seed_rc == 0;
            if (seed_rc == -2)
                import_problem(c, 0,
                               "%s: the seed %s in the file name does not fit in a 64-bit "
                               "integer; rename the file",
                               ir->where, stem);
            free(stem);
            ir->img.open = full;
            ir->img.stored = store_path_to_stored(c->st, full);
            ir->img.exists = 1;
        }
        base_strv_free(files, n_files);
        free(subdir);
    }
    base_strv_free(sub, n_sub);
    int rc = 0;
    /* every file: inside the folder or the workspace (checked before it is read at all), a
     * regular file, and an image that decodes (a truncated PNG, an empty file, a FIFO or a
     * device are refused). Decoding runs on several threads, a batch at a time, so that a
     * cancel is seen between batches. */
    ImportImg **batch = xcalloc(PREFETCH_BATCH, sizeof *batch);
    int *inside = xcalloc(PREFETCH_BATCH, sizeof *inside);
    for (size_t b = 0; b < n && !rc; b += PREFETCH_BATCH) {
        size_t e = b + PREFETCH_BATCH < n ? b + PREFETCH_BATCH : n, nb = 0;
        for (size_t i = b; i < e; i++)
            if ((inside[i - b] = check_inside(c, rows[i].where, rows[i].img.open, rroot) == 0))
                batch[nb++] = &rows[i].img;
        import_check_images_prefetch(c, batch, nb);
        for (size_t i = b; i < e; i++) {
            if (import_check_progress(c, i + 1, n)) {
                rc = import_cancelled(c, err);
                break;
            }
            if (inside[i - b])
                import_check_image(c, 0, rows[i].where, &rows[i].img);
        }
    }
    free(batch);
    free(inside);
    if (rc)
        goto out;
    if (import_has_problems(c)) {
        rc = import_fail(c, ERR_FORMAT, err);
        goto out;
    }
    if (n == 0) {
        rc = err_set(err, ERR_FORMAT,
                     "%s: no images found; expected {prompt_id}/{seed}.png inside it", root);
        goto out;
    }
    if ((rc = import_begin(c, err)))
        goto out;
    int cancelled = 0;
    for (size_t i = 0; i < n && !cancelled && !import_stopped(c); i++) {
        IRow *ir = &rows[i];
        StoreImage meta = {.has_seed = ir->has_seed, .seed = ir->seed};
        int64_t id;
        size_t before = c->rep->n_errors;
        if (import_ensure_image(c, 0, &ir->img, ir->prompt_id, &meta, &id) &&
            c->rep->n_errors > before) {
            /* name the file: import_ensure_image had no line to give */
            char *m = c->rep->errors[c->rep->n_errors - 1];
            c->rep->errors[c->rep->n_errors - 1] = xasprintf("%s (%s)", m, ir->where);
            free(m);
        }
        cancelled = import_progress(c, i + 1, n);
    }
    rc = import_finish(c, cancelled, err);
out:
    for (size_t i = 0; i < n; i++) {
        free(rows[i].where);
        import_img_deinit(&rows[i].img);
    }
    free(rows);
    return rc;
}
