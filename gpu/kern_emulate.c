/* kern_emulate — the host emulation harness. See kern_emulate.h.
 *
 * One launch: nthreads POSIX threads, one per thread of a block, each with its KernCtx. They
 * run the blocks of the grid one after another (in a fixed shuffled order), meeting at a
 * harness barrier before and after each block; thread 0 refills the block's shared memory with
 * NaN bytes in between. kern_sync is a block barrier; a warp operation is two warp barriers (all
 * lanes publish, all read, all leave). One mutex guards all barrier state; shared memory and
 * global memory are plain memory, ordered by the barriers' mutex as __syncthreads orders them.
 *
 * Misuse that would hang or be undefined on a device fails the launch with a message instead:
 * a __syncthreads that some thread skips (it reached the end of the block instead), a warp
 * operation after a lane of that warp returned, a shuffle from a lane the block does not have,
 * different warp operations in one step, a barrier nobody completes for KERN_HANG_S seconds.
 * The failing thread and its block mates leave through pthread_exit; the launch returns
 * ERR_GPU with the message.
 */
#include "kern_emulate.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KERN_HANG_S 30
#define KERN_MAX_THREADS 1024
#define KERN_MAX_SMEM (48 * 1024)

enum { PHASE_BEGIN = 1, PHASE_SYNC, PHASE_END };
enum { WOP_SHFL = 1, WOP_VOTE };

typedef struct Warp {
    int size;            /* lanes that exist (the last warp of a block may be short) */
    int arrived, gen, op, ended;
    float vals[KERN_WARP];
    int preds[KERN_WARP];
    pthread_cond_t cv;
} Warp;

typedef struct Launch {
    const char *name;
    KernLaunch l;
    KernHostBody body;
    const void *args;
    int nthreads, nwarps;
    long nblocks;
    long *order;
    unsigned char *smem;
    Warp *warps;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int b_arrived, b_gen, b_phase;
    KernDim cur; /* block being run, for messages */
    int failed;
    char msg[ERR_MSG_LEN];
} Launch;

struct KernHost {
    Launch *L;
    int warp, lane;
};

static void fail_locked(Launch *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_locked(Launch *L, const char *fmt, ...) {
    if (!L->failed) {
        char what[ERR_MSG_LEN];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        snprintf(L->msg, sizeof L->msg, "harness: kernel %s, block (%d,%d,%d): %s", L->name,
                 L->cur.x, L->cur.y, L->cur.z, what);
        L->failed = 1;
    }
    pthread_cond_broadcast(&L->cv);
    for (int w = 0; w < L->nwarps; w++)
        pthread_cond_broadcast(&L->warps[w].cv);
}

/* Leave the launch: called with the mutex held once it has failed. */
static void bail_locked(Launch *L) {
    pthread_mutex_unlock(&L->mu);
    pthread_exit(NULL);
}

static void deadline(struct timespec *ts) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += KERN_HANG_S;
}

static const char *phase_name(int p) {
    return p == PHASE_SYNC ? "__syncthreads" : p == PHASE_END ? "the end of the kernel"
                                                               : "the start of the block";
}

/* Block barrier; phase says what this thread reached. Mutex held on entry and exit. */
static void block_wait_locked(Launch *L, int phase, int tid) {
    if (L->failed)
        bail_locked(L);
    if (L->b_arrived == 0)
        L->b_phase = phase;
    else if (L->b_phase != phase) {
        fail_locked(L, "thread %d reached %s while others wait at %s (a barrier inside a "
                       "branch that not every thread takes)",
                    tid, phase_name(phase), phase_name(L->b_phase));
        bail_locked(L);
    }
    int gen = L->b_gen;
    if (++L->b_arrived == L->nthreads) {
        L->b_arrived = 0;
        L->b_gen++;
        pthread_cond_broadcast(&L->cv);
        return;
    }
    struct timespec ts;
    deadline(&ts);
    while (gen == L->b_gen && !L->failed)
        if (pthread_cond_timedwait(&L->cv, &L->mu, &ts) == ETIMEDOUT && gen == L->b_gen) {
            fail_locked(L, "%d of %d threads waited %d s at %s for the others (deadlock)",
                        L->b_arrived, L->nthreads, KERN_HANG_S, phase_name(L->b_phase));
            break;
        }
    if (L->failed)
        bail_locked(L);
}

/* Warp barrier for one step of a warp operation. Mutex held on entry and exit. */
static void warp_wait_locked(Launch *L, Warp *w, int op, int lane) {
    if (L->failed)
        bail_locked(L);
    if (w->ended) {
        fail_locked(L, "lane %d of warp %d calls a warp operation after %d lane(s) of its warp "
                       "returned (every lane must take part)",
                    lane, (int)(w - L->warps), w->ended);
        bail_locked(L);
    }
    if (w->arrived == 0)
        w->op = op;
    else if (w->op != op) {
        fail_locked(L, "lanes of warp %d call different warp operations at once (a shuffle "
                       "and a vote)",
                    (int)(w - L->warps));
        bail_locked(L);
    }
    int gen = w->gen;
    if (++w->arrived == w->size) {
        w->arrived = 0;
        w->gen++;
        pthread_cond_broadcast(&w->cv);
        return;
    }
    struct timespec ts;
    deadline(&ts);
    while (gen == w->gen && !L->failed) {
        if (w->ended) {
            fail_locked(L, "lane(s) of warp %d returned while %d lane(s) wait in a warp "
                           "operation (every lane must take part)",
                        (int)(w - L->warps), w->arrived);
            break;
        }
        if (pthread_cond_timedwait(&w->cv, &L->mu, &ts) == ETIMEDOUT && gen == w->gen) {
            fail_locked(L, "%d of %d lanes of warp %d waited %d s in a warp operation (deadlock)",
                        w->arrived, w->size, (int)(w - L->warps), KERN_HANG_S);
            break;
        }
    }
    if (L->failed)
        bail_locked(L);
}

void kern_host_sync(KernCtx *k) {
    Launch *L = k->host->L;
    pthread_mutex_lock(&L->mu);
    block_wait_locked(L, PHASE_SYNC, k->tid);
    pthread_mutex_unlock(&L->mu);
}

float kern_host_shfl(KernCtx *k, float v, int arg, int op) {
    KernHost *h = k->host;
    Launch *L = h->L;
    Warp *w = &L->warps[h->warp];
    int src = op == KERN_SHFL_XOR ? (h->lane ^ arg) : op == KERN_SHFL_DOWN ? h->lane + arg : arg;
    if (op == KERN_SHFL_DOWN && src >= KERN_WARP)
        src = h->lane; /* CUDA: out of the warp, the lane keeps its own value */
    pthread_mutex_lock(&L->mu);
    if (src < 0 || src >= w->size) {
        fail_locked(L, "lane %d of warp %d reads lane %d, which this block of %d threads does "
                       "not have (use a multiple of %d threads)",
                    h->lane, h->warp, src, L->nthreads, KERN_WARP);
        bail_locked(L);
    }
    w->vals[h->lane] = v;
    warp_wait_locked(L, w, WOP_SHFL, h->lane);
    float r = w->vals[src];
    warp_wait_locked(L, w, WOP_SHFL, h->lane);
    pthread_mutex_unlock(&L->mu);
    return r;
}

unsigned kern_host_vote(KernCtx *k, int pred) {
    KernHost *h = k->host;
    Launch *L = h->L;
    Warp *w = &L->warps[h->warp];
    pthread_mutex_lock(&L->mu);
    w->preds[h->lane] = pred != 0;
    warp_wait_locked(L, w, WOP_VOTE, h->lane);
    unsigned bits = 0;
    for (int i = 0; i < w->size; i++)
        if (w->preds[i])
            bits |= 1u << i;
    warp_wait_locked(L, w, WOP_VOTE, h->lane);
    pthread_mutex_unlock(&L->mu);
    return bits;
}

float kern_host_atomic_add_f32(float *p, float v) {
    float old, want;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do
        want = old + v;
    while (!__atomic_compare_exchange(p, &old, &want, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return old;
}

int kern_host_atomic_add_i32(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }

typedef struct Worker {
    Launch *L;
    KernHost host;
    KernCtx k;
    pthread_t th;
} Worker;

static void *worker_main(void *arg) {
    Worker *wk = arg;
    Launch *L = wk->L;
    KernCtx *k = &wk->k;
    for (long i = 0; i < L->nblocks; i++) {
        if (k->tid == 0) {
            pthread_mutex_lock(&L->mu);
            long b = L->order[i];
            L->cur = kern_dim((int)(b % L->l.grid.x), (int)(b / L->l.grid.x % L->l.grid.y),
                              (int)(b / L->l.grid.x / L->l.grid.y));
            if (L->l.smem)
                memset(L->smem, 0xff, L->l.smem); /* NaN: reads of unwritten shared memory show */
            for (int w = 0; w < L->nwarps; w++)
                L->warps[w].ended = 0;
            pthread_mutex_unlock(&L->mu);
        }
        pthread_mutex_lock(&L->mu);
        block_wait_locked(L, PHASE_BEGIN, k->tid);
        k->block_idx = L->cur;
        pthread_mutex_unlock(&L->mu);
        L->body(k, L->args);
        pthread_mutex_lock(&L->mu);
        Warp *w = &L->warps[wk->host.warp];
        w->ended++;
        pthread_cond_broadcast(&w->cv);
        block_wait_locked(L, PHASE_END, k->tid);
        pthread_mutex_unlock(&L->mu);
    }
    return NULL;
}

/* Kernels launched under the harness in this process, for the coverage report. */
#define KERN_MAX_NAMES 128
static struct {
    pthread_mutex_t mu;
    int n;
    const char *names[KERN_MAX_NAMES];
    long counts[KERN_MAX_NAMES];
} g_seen = {PTHREAD_MUTEX_INITIALIZER, 0, {0}, {0}};

static void note_launch(const char *name) {
    pthread_mutex_lock(&g_seen.mu);
    int i = 0;
    while (i < g_seen.n && strcmp(g_seen.names[i], name) != 0)
        i++;
    if (i == g_seen.n && g_seen.n < KERN_MAX_NAMES)
        g_seen.names[g_seen.n++] = name;
    if (i < g_seen.n)
        g_seen.counts[i]++;
    pthread_mutex_unlock(&g_seen.mu);
}

long kern_emulate_launches(const char *name) {
    long c = 0;
    pthread_mutex_lock(&g_seen.mu);
    for (int i = 0; i < g_seen.n; i++)
        if (strcmp(g_seen.names[i], name) == 0)
            c = g_seen.counts[i];
    pthread_mutex_unlock(&g_seen.mu);
    return c;
}

static int check_launch(const char *name, KernLaunch l, Err *err) {
    KernDim g = l.grid, b = l.block;
    if (g.x < 0 || g.y < 1 || g.z < 1 || g.y > 65535 || g.z > 65535)
        return err_set(err, ERR_GPU, "harness: kernel %s: invalid grid (%d,%d,%d)", name, g.x,
                       g.y, g.z);
    if (b.x < 1 || b.y < 1 || b.z < 1 || b.z > 64 || (long)b.x * b.y * b.z > KERN_MAX_THREADS)
        return err_set(err, ERR_GPU,
                       "harness: kernel %s: invalid block (%d,%d,%d) (at most %d threads, z <= 64)",
                       name, b.x, b.y, b.z, KERN_MAX_THREADS);
    if (l.smem > KERN_MAX_SMEM)
        return err_set(err, ERR_GPU,
                       "harness: kernel %s: %zu bytes of shared memory, over the %d a launch "
                       "gets without opting in",
                       name, l.smem, KERN_MAX_SMEM);
    return 0;
}

int kern_emulate(const char *name, KernLaunch l, KernHostBody body, const void *args, Err *err) {
    int rc = check_launch(name, l, err);
    if (rc)
        return rc;
    if (l.grid.x == 0) /* empty grid: the launchers skip it too */
        return 0;
    Launch L;
    memset(&L, 0, sizeof L);
    L.name = name, L.l = l, L.body = body, L.args = args;
    L.nthreads = l.block.x * l.block.y * l.block.z;
    L.nwarps = (L.nthreads + KERN_WARP - 1) / KERN_WARP;
    L.nblocks = (long)l.grid.x * l.grid.y * l.grid.z;
    L.order = malloc(sizeof(long) * (size_t)L.nblocks);
    L.smem = l.smem ? malloc(l.smem) : NULL;
    L.warps = calloc((size_t)L.nwarps, sizeof(Warp));
    Worker *wk = calloc((size_t)L.nthreads, sizeof(Worker));
    if (!L.order || (l.smem && !L.smem) || !L.warps || !wk) {
        free(L.order), free(L.smem), free(L.warps), free(wk);
        return err_set(err, ERR_NOMEM, "harness: kernel %s: out of memory for %ld blocks", name,
                       L.nblocks);
    }
    /* Blocks in a fixed shuffled order: a kernel that depends on block order shows. */
    for (long i = 0; i < L.nblocks; i++)
        L.order[i] = i;
    unsigned long s = 0x9e3779b97f4a7c15ul;
    for (long i = L.nblocks - 1; i > 0; i--) {
        s = s * 6364136223846793005ul + 1442695040888963407ul;
        long j = (long)((s >> 33) % (unsigned long)(i + 1));
        long t = L.order[i];
        L.order[i] = L.order[j], L.order[j] = t;
    }
    pthread_mutex_init(&L.mu, NULL);
    pthread_cond_init(&L.cv, NULL);
    for (int w = 0; w < L.nwarps; w++) {
        L.warps[w].size = w < L.nwarps - 1 ? KERN_WARP : L.nthreads - w * KERN_WARP;
        pthread_cond_init(&L.warps[w].cv, NULL);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    int started = 0;
    for (int t = 0; t < L.nthreads; t++) {
        Worker *w = &wk[t];
        w->L = &L;
        w->host.L = &L;
        w->host.warp = t / KERN_WARP;
        w->host.lane = t % KERN_WARP;
        KernCtx *k = &w->k;
        k->grid_dim = l.grid, k->block_dim = l.block;
        k->thread_idx = kern_dim(t % l.block.x, t / l.block.x % l.block.y,
                                 t / l.block.x / l.block.y);
        k->tid = t, k->nthreads = L.nthreads;
        k->host = &w->host;
        k->smem = L.smem;
        if (pthread_create(&w->th, &attr, worker_main, w) != 0) {
            pthread_mutex_lock(&L.mu);
            fail_locked(&L, "cannot start thread %d of %d", t, L.nthreads);
            pthread_mutex_unlock(&L.mu);
            break;
        }
        started++;
    }
    pthread_attr_destroy(&attr);
    for (int t = 0; t < started; t++)
        pthread_join(wk[t].th, NULL);
    rc = L.failed ? err_set(err, ERR_GPU, "%s", L.msg) : 0;
    if (!L.failed)
        note_launch(name);
    for (int w = 0; w < L.nwarps; w++)
        pthread_cond_destroy(&L.warps[w].cv);
    pthread_cond_destroy(&L.cv);
    pthread_mutex_destroy(&L.mu);
    free(L.order), free(L.smem), free(L.warps), free(wk);
    return rc;
}
