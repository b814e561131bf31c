/* jobs — the worker pool and the monitor thread. See jobs.h for the design.
 *
 * Per worker thread a Slot: its Store, the id of the job it runs (0 = idle) and that job's
 * atomic cancel flag. The monitor reads cancel requests from the store and sets the flag of
 * the slot running that job; it finds the slot under the pool mutex, which guards only the
 * slots' job ids, the stop flags and the kick generation.
 */
#include "jobs.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "base.h"
#include "gpu.h"
#include "jobkind.h"
#include "log.h"
#include "store_settings.h"
#include "trust.h"

#define IDLE_WAIT_S 5.0 /* an idle worker looks at the store at least this often */

typedef struct Slot {
    struct JobsPool *pool;
    int index;
    pthread_t thread;
    Store *st;
    char worker[128];       /* host:pid:tN */
    int64_t job_id;         /* under pool->lock; 0 = idle */
    atomic_int cancel;
} Slot;

struct JobsPool {
    JobsPoolConfig cfg;
    char *db_path;
    int n_gpus;
    int n_slots;
    Slot *slots;
    pthread_t monitor;
    Store *monitor_st;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    unsigned kick_gen;      /* bumped by jobs_pool_kick */
    int stopping;           /* workers: stop claiming, running jobs were asked to stop */
    int monitor_stop;       /* monitor: exit (after the workers are joined) */
    char **accept_users;    /* NULL-ended copy of cfg.accept_users */
    uid_t uid;              /* this process's user */
    uid_t owner_uid;        /* the store file's owner */
};

/* ---- helpers ------------------------------------------------------------------------------ */

static char host_name[64];
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void set_host(void) {
    if (gethostname(host_name, sizeof host_name - 1) != 0 || !host_name[0])
        base_strlcpy(host_name, "localhost", sizeof host_name);
}

const char *jobs_host(void) {
    pthread_once(&host_once, set_host);
    return host_name;
}

/* A process that exists and is not a zombie (a killed worker whose parent has not reaped
 * it yet is dead for our purposes: it will never heartbeat again). */
static int pid_alive(int64_t pid) {
    if (pid <= 0)
        return 0;
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM)
        return 0;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1; /* no /proc: trust kill() */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* "PID (comm) STATE ..." */
    return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

int jobs_reap(Store *st, double stale_s, int *n, Err *err) {
    return store_jobs_reap(st, stale_s > 0 ? stale_s : 30.0, jobs_host(), pid_alive, n, err);
}

int jobs_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

void jobs_pool_config_init(JobsPoolConfig *cfg, const char *db_path) {
    memset(cfg, 0, sizeof *cfg);
    cfg->db_path = db_path;
    cfg->n_gpus = -1;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static int accept_kind(void *user_data, const char *kind, int *gpu_required) {
    (void)user_data;
    const JobKind *k = jobkind_find(kind);
    if (!k)
        return 0;
    *gpu_required = k->gpu_required;
    return 1;
}

/* Does this pool run jobs of QUEUED_BY / QUEUED_UID? (trust.h has the rule.) */
static int accept_user(void *user_data, const char *queued_by, int64_t queued_uid) {
    JobsPool *p = user_data;
    return trust_job_accepted(queued_by, queued_uid, p->uid,
                              (const char *const *)p->accept_users, p->owner_uid);
}

/* A kind's parameter named `device` (backend_open's auto, cpu, cuda, cuda:N) decides the
 * GPUs a job holds: cpu none, anything else one (unless more were asked for); the job then
 * opens the GPU it was given (jobkinds_reward.c). */
static void gpus_of_device(const JobKind *k, const JobParams *p, JobNew *jn) {
    for (int i = 0; k->params[i].name; i++) {
        if (strcmp(k->params[i].name, "device") != 0)
            continue;
        int kind, index;
        Err e = {0};
        if (backend_spec_parse(job_param_str(p, "device"), &kind, &index, &e))
            return; /* the kind's validate reports it */
        if (kind == BACKEND_SPEC_CPU)
            jn->gpus_wanted = 0;
        else if (jn->gpus_wanted == 0)
            jn->gpus_wanted = 1;
        return;
    }
}

int jobs_add(Store *st, const JobParams *p, JobNew *jn, int64_t *id, Err *err) {
    const JobKind *k = job_params_kind(p);
    int rc = job_params_check_trust(st, p, NULL, err);
    if (rc)
        return rc;
    if (jn->gpus_wanted == JOB_GPUS_OF_KIND) /* no --gpus given */
        jn->gpus_wanted = k->gpus_for ? k->gpus_for(p) : k->gpus;
    if (!k->gpus_for) /* a kind with its own rule (embed: CLIP encoders only) keeps it */
        gpus_of_device(k, p, jn);
    char *json = job_params_to_json(p);
    jn->kind = k->name;
    jn->params = json;
    rc = store_job_add(st, jn, id, err);
    jn->params = NULL;
    free(json);
    return rc;
}

/* ---- running one job ------------------------------------------------------------------------ */

static void notify(JobsPool *p, int64_t id, JobState s) {
    if (p->cfg.on_change)
        p->cfg.on_change(p->cfg.user_data, id, s);
}

static void run_one(Slot *s, JobRow *row) {
    JobsPool *p = s->pool;
    const JobKind *k = jobkind_find(row->kind);
    ASSERT(k); /* accept_kind let only known kinds through */
    atomic_store(&s->cancel, 0);
    pthread_mutex_lock(&p->lock);
    s->job_id = row->id;
    int shutdown = p->stopping;
    pthread_mutex_unlock(&p->lock);
    if (shutdown)
        atomic_store(&s->cancel, 1);
    notify(p, row->id, JOB_STATE_RUNNING);

    Err err = {0};
    int rc;
    double t0 = base_now();
    JobCtx *ctx = job_ctx_new(s->st, row->id, row->checkpoint, row->gpus, &s->cancel);
    JobParams *params;
    int prc = job_params_from_json(k, row->params, &params, &err);
    int other = row->queued_uid >= 0 && row->queued_uid != (int64_t)p->uid;
    if (other)
        store_set_actor(s->st, row->queued_by);
    if (prc) {
        rc = prc;
    } else if ((rc = job_params_check_trust(s->st, params, row->checkpoint, &err)) != 0) {
        err_prefix(&err, "refused at run time"); /* the job was edited since it was queued */
    } else {
        job_log(ctx, "started on %s%s%s%s", s->worker, row->gpus ? " with GPU " : " (CPU)",
                row->gpus ? row->gpus : "", row->checkpoint ? ", resuming from checkpoint" : "");
        rc = k->run(ctx, params, &err);
    }
    double dt = base_now() - t0;

    pthread_mutex_lock(&p->lock);
    shutdown = p->stopping;
    pthread_mutex_unlock(&p->lock);
    JobState state;
    char msg[ERR_MSG_LEN + 64];
    if (rc == 0) {
        state = JOB_STATE_SUCCEEDED;
        snprintf(msg, sizeof msg, "succeeded in %.1f s", dt);
    } else if (rc == ERR_CANCELLED && shutdown) {
        state = JOB_STATE_INTERRUPTED;
        snprintf(msg, sizeof msg, "interrupted: worker %s stopped; resume to continue",
                 s->worker);
    } else if (rc == ERR_CANCELLED) {
        state = JOB_STATE_CANCELLED;
        snprintf(msg, sizeof msg, "cancelled after %.1f s%s%s", dt, err.msg[0] ? ": " : "",
                 err.msg);
    } else {
        state = JOB_STATE_FAILED;
        snprintf(msg, sizeof msg, "%s", err.msg[0] ? err.msg : err_name(rc));
    }
    job_log(ctx, "%s", msg);
    job_ctx_free(ctx);
    store_set_actor(s->st, NULL);
    job_params_free(params);
    Err ferr = {0};
    if (store_job_finish(s->st, row->id, s->worker, state, msg, &ferr))
        log_warn("job #%lld: %s", (long long)row->id, ferr.msg);
    pthread_mutex_lock(&p->lock);
    s->job_id = 0;
    pthread_mutex_unlock(&p->lock);
    notify(p, row->id, state);
}

/* Wake one idle worker (a claim is one write transaction; one try is enough). */
static void kick_one(JobsPool *p) {
    pthread_mutex_lock(&p->lock);
    p->kick_gen++;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

static void *worker_main(void *arg) {
    Slot *s = arg;
    JobsPool *p = s->pool;
    JobClaim claim = {.worker = s->worker, .host = jobs_host(), .pid = getpid(),
                      .n_gpus = p->n_gpus, .gpu_share = p->cfg.gpu_share,
                      .accept = accept_kind, .accept_user = accept_user, .user_data = p};
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int stop = p->stopping;
        unsigned gen = p->kick_gen;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            break;
        Err err = {0};
        JobRow row;
        int rc = store_job_claim(s->st, &claim, &row, &err);
        if (rc == 1) {
            kick_one(p); /* there may be more: let another idle worker look */
            run_one(s, &row);
            store_job_row_deinit(&row);
            continue;
        }
        if (rc < 0)
            log_warn("%s: claim: %s", s->worker, err.msg);
        /* Idle: the monitor wakes one of us when the store has claimable work; the timeout
         * is only a safety net. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        double poll = IDLE_WAIT_S;
        until.tv_sec += (time_t)poll;
        until.tv_nsec += (long)((poll - (double)(time_t)poll) * 1e9);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&p->lock);
        while (!p->stopping && p->kick_gen == gen) {
            if (pthread_cond_timedwait(&p->wake, &p->lock, &until) == ETIMEDOUT)
                break;
        }
        pthread_mutex_unlock(&p->lock);
    }
    return NULL;
}

/* ---- the monitor ---------------------------------------------------------------------------- */

static void *monitor_main(void *arg) {
    JobsPool *p = arg;
    const char *host = jobs_host();
    int64_t pid = getpid();
    double last_hb = 0, last_reap = 0, last_look = 0;
    double nap = p->cfg.poll_s < 0.25 ? p->cfg.poll_s : 0.25;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int stop = p->monitor_stop;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            break;
        Err err = {0};
        int64_t *ids;
        int n;
        if (store_jobs_cancel_requested(p->monitor_st, host, pid, &ids, &n, &err) == 0) {
            pthread_mutex_lock(&p->lock);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < p->n_slots; j++)
                    if (p->slots[j].job_id == ids[i])
                        atomic_store(&p->slots[j].cancel, 1);
            pthread_mutex_unlock(&p->lock);
            free(ids);
        } else {
            log_warn("job monitor: %s", err.msg);
        }
        double now = base_now();
        /* a write, so only while this process runs something */
        if (now - last_hb >= p->cfg.heartbeat_s && jobs_pool_busy(p) > 0) {
            if (store_jobs_heartbeat(p->monitor_st, host, pid, &err))
                log_warn("job monitor: %s", err.msg);
            last_hb = now;
        }
        if (now - last_reap >= 2 * p->cfg.heartbeat_s) {
            int n_reaped = 0;
            if (jobs_reap(p->monitor_st, p->cfg.stale_s, &n_reaped, &err))
                log_warn("job monitor: %s", err.msg);
            else if (n_reaped)
                log_info("job monitor: %d job(s) of dead workers marked interrupted", n_reaped);
            last_reap = now;
        }
        /* one cheap read for the whole pool instead of every idle thread polling */
        if (now - last_look >= p->cfg.poll_s && jobs_pool_busy(p) < p->n_slots) {
            JobClaim c = {.accept_user = accept_user, .user_data = p};
            if (store_jobs_claimable(p->monitor_st, &c, &err) == 1)
                kick_one(p);
            last_look = now;
        }
        sleep_s(nap);
    }
    return NULL;
}

/* ---- the pool ------------------------------------------------------------------------------- */

static void block_signals(sigset_t *old) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, old);
}

static void pool_free(JobsPool *p) {
    for (int i = 0; i < p->n_slots; i++)
        store_close(p->slots[i].st);
    store_close(p->monitor_st);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->slots);
    free(p->db_path);
    for (int i = 0; p->accept_users && p->accept_users[i]; i++)
        free(p->accept_users[i]);
    free(p->accept_users);
    free(p);
}

JobsPool *jobs_pool_start(const JobsPoolConfig *cfg, Err *err) {
    JobsPool *p = xcalloc(1, sizeof *p);
    p->cfg = *cfg;
    p->db_path = xstrdup(cfg->db_path);
    p->cfg.db_path = p->db_path;
    if (p->cfg.threads <= 0)
        p->cfg.threads = jobs_default_threads();
    if (p->cfg.gpu_share <= 0)
        p->cfg.gpu_share = 1;
    if (p->cfg.poll_s <= 0)
        p->cfg.poll_s = 0.5;
    if (p->cfg.heartbeat_s <= 0)
        p->cfg.heartbeat_s = 2.0;
    if (p->cfg.stale_s <= 0)
        p->cfg.stale_s = 30.0;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (cfg->n_gpus < 0) {
        GpuSystem *g = gpu_open();
        p->n_gpus = gpu_count(g);
        if (!p->n_gpus)
            log_info("jobs: %s", gpu_reason(g));
        gpu_close(g);
    } else {
        p->n_gpus = cfg->n_gpus;
    }
    int n_acc = 0;
    while (cfg->accept_users && cfg->accept_users[n_acc])
        n_acc++;
    p->accept_users = xcalloc((size_t)n_acc + 1, sizeof *p->accept_users);
    for (int i = 0; i < n_acc; i++)
        p->accept_users[i] = xstrdup(cfg->accept_users[i]);
    p->cfg.accept_users = NULL;
    p->uid = getuid();
    p->n_slots = p->cfg.threads;
    p->slots = xcalloc((size_t)p->n_slots, sizeof *p->slots);
    if (!(p->monitor_st = store_open_existing(p->db_path, err)))
        goto out_free;
    if (trust_store_owner(p->monitor_st, &p->owner_uid, err))
        goto out_free;
    for (int i = 0; i < p->n_slots; i++) {
        Slot *s = &p->slots[i];
        s->pool = p;
        s->index = i;
        atomic_init(&s->cancel, 0);
        snprintf(s->worker, sizeof s->worker, "%s:%lld:t%d", jobs_host(), (long long)getpid(),
                 i);
        if (!(s->st = store_open_existing(p->db_path, err)))
            goto out_free;
    }
    sigset_t old;
    block_signals(&old);
    int started = 0;
    for (; started < p->n_slots; started++)
        if (pthread_create(&p->slots[started].thread, NULL, worker_main, &p->slots[started]))
            break;
    int mon_ok = started == p->n_slots && pthread_create(&p->monitor, NULL, monitor_main, p) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!mon_ok) {
        pthread_mutex_lock(&p->lock);
        p->stopping = 1;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (int i = 0; i < started; i++)
            pthread_join(p->slots[i].thread, NULL);
        err_set(err, ERR_NOMEM, "cannot start job worker threads");
        goto out_free;
    }
    log_info("jobs: %d worker thread(s), %d GPU(s)%s on %s", p->n_slots, p->n_gpus,
             p->cfg.gpu_share > 1 ? " (shared)" : "", p->db_path);
    return p;
out_free:
    pool_free(p);
    return NULL;
}

void jobs_pool_kick(JobsPool *p) {
    pthread_mutex_lock(&p->lock);
    p->kick_gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

int jobs_pool_busy(JobsPool *p) {
    int n = 0;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->n_slots; i++)
        n += p->slots[i].job_id != 0;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int jobs_pool_threads(const JobsPool *p) { return p->n_slots; }
int jobs_pool_gpus(const JobsPool *p) { return p->n_gpus; }

void jobs_pool_request_stop(JobsPool *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    for (int i = 0; i < p->n_slots; i++)
        if (p->slots[i].job_id)
            atomic_store(&p->slots[i].cancel, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void jobs_pool_stop(JobsPool *p) {
    if (!p)
        return;
    jobs_pool_request_stop(p);
    for (int i = 0; i < p->n_slots; i++)
        pthread_join(p->slots[i].thread, NULL);
    pthread_mutex_lock(&p->lock);
    p->monitor_stop = 1;
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->monitor, NULL);
    log_info("jobs: worker pool stopped");
    pool_free(p);
}
