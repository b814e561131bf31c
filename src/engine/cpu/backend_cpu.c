/* backend_cpu — a small fork-join pool. See backend_cpu.h.
 *
 * DESIGN. One job at a time: the owner publishes (fn, ctx, n, n_parts), bumps `generation`
 * and wakes the workers; worker k runs part k+1, the owner runs part 0, then the owner waits
 * until `pending` reaches zero. Workers spin briefly on the generation before sleeping on the
 * condition variable, because training issues many short ops back to back and a futex wake
 * costs more than most of them. Parts are fixed by (n, n_parts), never stolen, so a given
 * range always runs the same code on the same data. backend_cpu_parallel_dynamic runs one
 * such part per thread, each taking pieces from a shared counter until none is left: the
 * pieces, not the threads, fix the arithmetic, so GEMMs get the load balance of work taking
 * on a shared machine with the same bits.
 */
#include "backend_cpu.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"

#define SPIN_ITERS 4000 /* ~0.1 ms of pause: long enough to catch the next op, short
                          * enough not to steal a busy machine's cores */

typedef struct Worker {
    CpuPool *pool;
    int index;          /* part index 1..n_threads-1 */
    pthread_t thread;
} Worker;

struct CpuPool {
    int n_threads;
    Worker *workers;    /* n_threads - 1 */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done;
    atomic_uint generation;
    atomic_int pending;
    atomic_int quit;
    /* the current job, written by the owner before generation is bumped */
    CpuRangeFn fn;
    void *ctx;
    int64_t n;
    int n_parts;
};

static _Thread_local CpuPool *current_pool;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#endif
}

static void part_range(int64_t n, int n_parts, int k, int64_t *b, int64_t *e) {
    *b = n * k / n_parts;
    *e = n * (k + 1) / n_parts;
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    CpuPool *p = w->pool;
    unsigned seen = 0; /* generation at creation: a job posted before this thread ran still counts */
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load(&p->quit) && spins < SPIN_ITERS) {
            spins++;
            cpu_relax();
        }
        if (g == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit))
            break;
        seen = g;
        if (w->index < p->n_parts) {
            int64_t b, e;
            part_range(p->n, p->n_parts, w->index, &b, &e);
            if (e > b)
                p->fn(p->ctx, b, e);
        }
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

CpuPool *backend_cpu_pool_new(int n_threads, Err *err) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    CpuPool *p = xcalloc(1, sizeof *p);
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->quit, 0);
    p->workers = xcalloc((size_t)(n_threads > 1 ? n_threads - 1 : 1), sizeof *p->workers);
    for (int i = 0; i < n_threads - 1; i++) {
        p->workers[i].pool = p;
        p->workers[i].index = i + 1;
        int rc = pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
        if (rc != 0) {
            p->n_threads = i + 1; /* join the ones started */
            backend_cpu_pool_free(p);
            err_set(err, ERR_NOMEM, "cpu backend: cannot start thread %d of %d (%s); "
                    "ask for fewer threads", i + 2, n_threads, strerror(rc));
            return NULL;
        }
    }
    return p;
}

void backend_cpu_pool_free(CpuPool *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads - 1; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p);
}

int backend_cpu_pool_threads(const CpuPool *p) { return p ? p->n_threads : 1; }

CpuPool *backend_cpu_use(CpuPool *pool) {
    CpuPool *old = current_pool;
    current_pool = pool;
    if (pool)
        openblas_set_num_threads(1);
    return old;
}

CpuPool *backend_cpu_bind(CpuPool *pool) {
    CpuPool *old = current_pool;
    current_pool = pool;
    return old;
}

CpuPool *backend_cpu_current(void) { return current_pool; }

void backend_cpu_blas_serial(void) { openblas_set_num_threads(1); }

int backend_cpu_threads(void) { return current_pool ? current_pool->n_threads : 1; }

void backend_cpu_parallel_for(int64_t n, int64_t grain, CpuRangeFn fn, void *ctx) {
    if (n <= 0)
        return;
    CpuPool *p = current_pool;
    if (grain < 1)
        grain = 1;
    int n_parts = p ? p->n_threads : 1;
    if (n / grain < n_parts)
        n_parts = (int)(n / grain);
    if (n_parts <= 1) {
        fn(ctx, 0, n);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->n_parts = n_parts;
    atomic_store(&p->pending, p->n_threads - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    int64_t b, e;
    part_range(n, n_parts, 0, &b, &e);
    fn(ctx, b, e);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && spins < SPIN_ITERS) {
        spins++;
        cpu_relax();
    }
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ---- pieces taken in turn (backend_cpu_parallel_dynamic) ---------------------------------- */

typedef struct DynJob {
    CpuRangeFn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_llong next;
} DynJob;

static void dyn_part(void *ctx, int64_t b, int64_t e) {
    DynJob *d = ctx;
    (void)b, (void)e;
    for (;;) {
        int64_t s = atomic_fetch_add_explicit(&d->next, d->chunk, memory_order_relaxed);
        if (s >= d->n)
            break;
        d->fn(d->ctx, s, s + d->chunk < d->n ? s + d->chunk : d->n);
    }
}

void backend_cpu_parallel_dynamic(int64_t n, int64_t chunk, CpuRangeFn fn, void *ctx) {
    if (n <= 0)
        return;
    if (chunk < 1)
        chunk = 1;
    int threads = backend_cpu_threads();
    if (threads <= 1 || n <= chunk) {
        fn(ctx, 0, n);
        return;
    }
    int64_t pieces = (n + chunk - 1) / chunk;
    DynJob d;
    d.fn = fn, d.ctx = ctx, d.n = n, d.chunk = chunk;
    atomic_init(&d.next, 0);
    backend_cpu_parallel_for(pieces < threads ? pieces : threads, 1, dyn_part, &d);
}
