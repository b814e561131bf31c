/* trust — the rules of a shared store. See trust.h for the model.
 *
 * Paths are resolved component by component: the part that exists is followed through
 * symlinks (so a link inside the workspace to /etc is /etc), the part that does not is
 * appended as text; ".." on the resolved part is its parent, which is exact because the
 * resolved part holds no symlinks. A symlink to a missing target is refused: writing
 * through it would create the target, wherever it points.
 */
#include "trust.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "identity.h"
#include "store_settings.h"

/* ---- the owner ------------------------------------------------------------------------------- */

int trust_store_owner(const Store *st, uid_t *uid, Err *err) {
    const char *path = store_path(st);
    if (strcmp(path, ":memory:") == 0 || !path[0]) {
        *uid = getuid();
        return 0;
    }
    struct stat sb;
    if (stat(path, &sb) != 0)
        return err_set(err, ERR_IO, "%s: cannot read the store's owner: %s", path,
                       strerror(errno));
    *uid = sb.st_uid;
    return 0;
}

int trust_require_owner(const Store *st, const char *what, Err *err) {
    uid_t owner;
    int rc = trust_store_owner(st, &owner, err);
    if (rc)
        return rc;
    if (owner == getuid())
        return 0;
    char *name = identity_name_of(owner);
    err_set(err, ERR_DENIED, "permission denied: only the store's owner (%s) may %s; you are "
            "%s. Ask %s to do it", name, what, identity_login(), name);
    free(name);
    return ERR_DENIED;
}

/* ---- paths ----------------------------------------------------------------------------------- */

/* Drop the last component of absolute CUR (in place); "/" stays "/". */
static void pop_component(char *cur) {
    char *slash = strrchr(cur, '/');
    if (!slash || slash == cur)
        cur[1] = '\0';
    else
        *slash = '\0';
}

char *trust_resolve_path(const char *path) {
    char cur[PATH_MAX];
    if (path[0] == '/') {
        base_strlcpy(cur, "/", sizeof cur);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) || !realpath(cwd, cur))
            return NULL;
    }
    int missing = 0; /* a component did not exist: the rest is text */
    const char *s = path;
    while (*s) {
        while (*s == '/')
            s++;
        if (!*s)
            break;
        size_t len = strcspn(s, "/");
        char comp[NAME_MAX + 1];
        if (len > NAME_MAX)
            return NULL;
        memcpy(comp, s, len);
        comp[len] = '\0';
        s += len;
        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0) {
            pop_component(cur);
            continue;
        }
        char cand[PATH_MAX];
        if (snprintf(cand, sizeof cand, "%s%s%s", cur, strcmp(cur, "/") ? "/" : "", comp) >=
            (int)sizeof cand)
            return NULL;
        struct stat sb;
        if (!missing && lstat(cand, &sb) == 0) {
            if (S_ISLNK(sb.st_mode)) {
                char res[PATH_MAX];
                if (!realpath(cand, res))
                    return NULL; /* dangling or looping symlink */
                base_strlcpy(cur, res, sizeof cur);
            } else {
                base_strlcpy(cur, cand, sizeof cur);
            }
        } else if (!missing && errno != ENOENT) {
            return NULL; /* cannot look: do not guess */
        } else {
            missing = 1;
            base_strlcpy(cur, cand, sizeof cur);
        }
    }
    return xstrdup(cur);
}

/* PATH is DIR or lies below it (both resolved). */
static int is_inside(const char *path, const char *dir) {
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/')
        return 1;
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

int trust_check_path(Store *st, const char *what, const char *path, Err *err) {
    if (!path || !path[0])
        return 0;
    char *res = trust_resolve_path(path);
    if (!res)
        return err_set(err, ERR_DENIED, "%s %s: cannot be resolved (a symlink to a missing "
                       "target, or a folder that cannot be read); jobs only use paths that "
                       "resolve inside the workspace %s or an output root", what, path,
                       store_dir(st));
    char ws[PATH_MAX];
    int ok = realpath(store_dir(st), ws) && is_inside(res, ws);
    StoreOutputRoot *roots = NULL;
    int n = 0, rc = 0;
    if (!ok && (rc = store_output_roots(st, &roots, &n, err)) != 0)
        goto out;
    for (int i = 0; i < n && !ok; i++) {
        char r[PATH_MAX];
        ok = realpath(roots[i].path, r) && is_inside(res, r);
    }
    if (!ok) {
        uid_t owner = getuid();
        trust_store_owner(st, &owner, NULL);
        char *oname = identity_name_of(owner);
        char parent[PATH_MAX];
        base_strlcpy(parent, res, sizeof parent);
        pop_component(parent);
        /* short: Err holds ERR_MSG_LEN bytes, and the paths take most of them */
        int same = strcmp(res, path) == 0;
        rc = err_set(err, ERR_DENIED,
                     "%s %s%s%s%s: permission denied: outside the workspace %s and every "
                     "output root; use a path there, or ask the owner (%s) to run 'easel "
                     "config output-root add %s'", what, path, same ? "" : " (= ",
                     same ? "" : res, same ? "" : ")", store_dir(st), oname, parent);
        free(oname);
    }
out:
    store_output_roots_free(roots, n);
    free(res);
    return rc;
}

/* ---- jobs ------------------------------------------------------------------------------------ */

int trust_job_accepted(const char *queued_by, int64_t queued_uid, uid_t worker_uid,
                       const char *const *accept, uid_t owner_uid) {
    if (queued_uid < 0)
        queued_uid = (int64_t)owner_uid;
    if (queued_uid == (int64_t)worker_uid)
        return 1;
    for (int i = 0; accept && accept[i]; i++)
        if (queued_by && queued_by[0] && strcmp(accept[i], queued_by) == 0)
            return 1;
    return 0;
}

/* ---- blind rating and roles ------------------------------------------------------------------ */

int trust_may_review(Store *st, const char *login, Err *err) {
    uid_t owner;
    int rc = trust_store_owner(st, &owner, err);
    if (rc)
        return rc;
    char *oname = identity_name_of(owner);
    int yes = strcmp(oname, login) == 0;
    free(oname);
    if (yes)
        return 1;
    char *role = NULL;
    if ((rc = store_annotator_role(st, login, &role, err)))
        return rc;
    yes = role && strcmp(role, STORE_ROLE_REVIEWER) == 0;
    free(role);
    return yes;
}

int trust_blind_view(Store *st, const char *login, int *only_self, Err *err) {
    int blind;
    *only_self = 0;
    int rc = store_blind(st, &blind, err);
    if (rc || !blind)
        return rc;
    rc = trust_may_review(st, login, err);
    if (rc < 0)
        return rc;
    *only_self = !rc;
    return 0;
}

static int deny_review(Store *st, const char *login, const char *what, Err *err) {
    uid_t owner = getuid();
    trust_store_owner(st, &owner, NULL);
    char *oname = identity_name_of(owner);
    err_set(err, ERR_DENIED, "permission denied: blind rating is on in %s, so %s needs the "
            "reviewer role, and %s has not got it; ask the store's owner (%s) to run 'easel "
            "annotators grant %s reviewer'", store_path(st), what, login, oname, login);
    free(oname);
    return ERR_DENIED;
}

int trust_require_review(Store *st, const char *login, const char *what, Err *err) {
    int only_self;
    int rc = trust_blind_view(st, login, &only_self, err);
    if (rc)
        return rc;
    return only_self ? deny_review(st, login, what, err) : 0;
}

int trust_check_act_as(Store *st, const char *annotator, Err *err) {
    const char *me = identity_login();
    if (!annotator || strcmp(annotator, me) == 0)
        return 0;
    char what[160];
    snprintf(what, sizeof what, "rating as another annotator ('%s'; you are %s)", annotator,
             me);
    return trust_require_review(st, me, what, err);
}
