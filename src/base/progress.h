/* progress — the one callback set through which long work (an import, training, evaluation,
 * scoring, embedding, ordering the queue) reports how far it got, learns that it should stop,
 * and logs a line for the user.
 *
 * Passed by value inside the work's options (or by pointer; NULL is allowed), any member may
 * be NULL: nothing is called. A job points it at the job (job_progress_hooks in jobkind.h:
 * the job's progress row, its cancel flag, its log); the CLI at its progress line on stderr
 * and at the SIGINT flag. Work checks `cancelled` between units and then returns
 * ERR_CANCELLED, having written nothing it cannot keep.
 */
#ifndef EASEL_PROGRESS_H
#define EASEL_PROGRESS_H

typedef struct Progress {
    /* DONE of TOTAL units (TOTAL 0 = unknown). UNIT is a short noun ("rows", "steps"). */
    void (*progress)(void *user, double done, double total, const char *unit);
    /* Nonzero: stop at the next safe point (ERR_CANCELLED). */
    int (*cancelled)(void *user);
    /* One line for the user (a job's log, stderr), no trailing newline. */
    void (*log)(void *user, const char *line);
    void *user;
} Progress;

static inline void progress_report(const Progress *p, double done, double total,
                                   const char *unit) {
    if (p && p->progress)
        p->progress(p->user, done, total, unit);
}

static inline int progress_cancelled(const Progress *p) {
    return p && p->cancelled && p->cancelled(p->user);
}

static inline void progress_log(const Progress *p, const char *line) {
    if (p && p->log)
        p->log(p->user, line);
}

#endif
