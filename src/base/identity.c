/* identity — the Unix login and the annotator name. See identity.h. */
#include "identity.h"

#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"

char *identity_name_of(uid_t uid) {
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res && res->pw_name &&
        res->pw_name[0])
        return xstrdup(res->pw_name);
    return xasprintf("uid-%ld", (long)uid);
}

static char *login_name;
static pthread_once_t login_once = PTHREAD_ONCE_INIT;

static void login_init(void) { login_name = identity_name_of(getuid()); }

const char *identity_login(void) {
    pthread_once(&login_once, login_init);
    return login_name;
}

const char *identity_annotator(const char *flag) {
    if (flag && *flag)
        return flag;
    const char *env = getenv("EASEL_ANNOTATOR");
    if (env && env[strspn(env, " \t\r\n\v\f")]) /* blank counts as unset */
        return env;
    return identity_login();
}
