/* assets — finding and reading the run-time files of assets/. See assets.h. */
#include "assets.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "infile.h"

#ifndef EASEL_SHARE_DIR
#define EASEL_SHARE_DIR "/usr/local/share/easel"
#endif

/* The folder holding the running binary, into BUF; 0 when unknown. */
static int exe_dir(char *buf, size_t n) {
    ssize_t k = readlink("/proc/self/exe", buf, n - 1);
    if (k <= 0)
        return 0;
    buf[k] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    return 1;
}

char *assets_dir(void) {
    const char *env = getenv("EASEL_ASSETS");
    if (env && *env)
        return base_is_dir(env) ? xstrdup(env) : NULL;
    char exe[PATH_MAX];
    if (exe_dir(exe, sizeof exe)) {
        const char *rel[] = {"../assets", "../share/easel"};
        for (size_t i = 0; i < 2; i++) {
            char *p = xasprintf("%s/%s", exe, rel[i]);
            char real[PATH_MAX];
            if (base_is_dir(p) && realpath(p, real)) {
                free(p);
                return xstrdup(real);
            }
            free(p);
        }
    }
    return base_is_dir(EASEL_SHARE_DIR) ? xstrdup(EASEL_SHARE_DIR) : NULL;
}

char *assets_path(const char *rel) {
    char *dir = assets_dir();
    if (!dir)
        return NULL;
    char *p = xasprintf("%s/%s", dir, rel);
    free(dir);
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(p);
        return NULL;
    }
    return p;
}

int assets_read(const char *rel, char **text, Err *err) {
    *text = NULL;
    char *p = assets_path(rel);
    if (!p) {
        char *dir = assets_dir();
        int rc;
        if (dir)
            rc = err_set(err, ERR_NOTFOUND, "%s/%s: no such file", dir, rel);
        else
            rc = err_set(err, ERR_NOTFOUND,
                         "%s: no assets folder ($EASEL_ASSETS, ../assets or ../share/easel "
                         "beside the binary, %s); reinstall easel or set EASEL_ASSETS",
                         rel, EASEL_SHARE_DIR);
        free(dir);
        return rc;
    }
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = infile_read_all(p, "asset", 1 << 20, &buf, &len, err);
    free(p);
    if (rc)
        return rc;
    *text = (char *)buf;
    return 0;
}
