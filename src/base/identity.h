/* identity — who is running easel: the Unix login (for jobs and trust) and the annotator name
 * (for ratings).
 *
 * The Unix login comes from the password database (getpwuid(getuid())), never from $USER or
 * $LOGNAME, which cron, containers and some SSH set-ups leave unset or set to something else.
 * The annotator is --annotator, else $EASEL_ANNOTATOR, else that login: one human, one name.
 */
#ifndef EASEL_IDENTITY_H
#define EASEL_IDENTITY_H

#include <sys/types.h>

/* The login name of the real user id; for a uid with no passwd entry, "uid-N". Borrowed,
 * process-wide, valid for the life of the process. */
const char *identity_login(void);

/* The annotator name: FLAG if non-empty, else $EASEL_ANNOTATOR if not blank, else
 * identity_login(). Borrowed (FLAG itself, the environment, or the login). */
const char *identity_annotator(const char *flag);

/* The login name for UID ("uid-N" when there is none). Caller frees. */
char *identity_name_of(uid_t uid);

#endif
