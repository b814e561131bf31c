/* backend_cpu — the CPU backend's thread pool and its parallel-for.
 *
 * The nn_* ops are the readable CPU reference; where a loop is worth splitting they call
 * backend_cpu_parallel_for(), which runs on the pool the calling thread selected with
 * backend_cpu_use() (a thread-local choice, so two training jobs on two worker threads each
 * use their own pool; none selected = run serially on the caller).
 *
 * Determinism: work is split into contiguous ranges of independent output elements; every
 * element is computed by one thread with the same arithmetic in the same order whatever the
 * split, so results do not depend on scheduling. GEMM goes to the engine's AVX-512 block
 * (nn_sgemm.h) or OpenBLAS, single-threaded per call, and is split over the pool by output
 * columns (nn_linear.c); OpenBLAS's own threads
 * are switched off (openblas_set_num_threads(1), process-wide) when a pool is selected, so
 * the machine is never oversubscribed by two pools of spinning threads.
 *
 * A pool is used by one thread at a time (its owner); ops must not be nested inside a task.
 */
#ifndef EASEL_BACKEND_CPU_H
#define EASEL_BACKEND_CPU_H

#include <stdint.h>

#include "err.h"

typedef struct CpuPool CpuPool;

/* A pool of n_threads threads in all (the caller counts as one: n_threads - 1 workers are
 * started). n_threads <= 0 means the number of online CPUs. Returns NULL and sets err on
 * failure to start a thread. Free with backend_cpu_pool_free. */
CpuPool *backend_cpu_pool_new(int n_threads, Err *err);
/* Stop and join the workers. Accepts NULL. The pool must not be in use by any thread. */
void backend_cpu_pool_free(CpuPool *pool);
/* Threads in the pool (>= 1). */
int backend_cpu_pool_threads(const CpuPool *pool);

/* Select pool for ops called from this thread (NULL = serial). Returns the previous choice.
 * Borrowed: the pool must outlive its selection. */
CpuPool *backend_cpu_use(CpuPool *pool);
/* As backend_cpu_use, but touches no process-wide state (OpenBLAS's thread count is left as
 * the program set it): what a Backend does around each op. Returns the previous choice. */
CpuPool *backend_cpu_bind(CpuPool *pool);
/* The calling thread's pool, or NULL. */
CpuPool *backend_cpu_current(void);
/* OpenBLAS's own threads off (openblas_set_num_threads(1), process-wide): for a PROGRAM whose
 * parallelism is its Backends' pools (easel's main() calls it once at start; library code
 * never does), so that --threads N means N threads and two jobs' pools do not compete with
 * OpenBLAS's; and because some ops (nn_flash's tiles) call sgemm from inside the pool, where
 * a threaded OpenBLAS spins and contends (ViT-L/14 images: 15-18 % more CPU time). What
 * backend_cpu_use did on every selection before the Backend existed. */
void backend_cpu_blas_serial(void);
/* Threads available to ops on this thread (1 without a pool). */
int backend_cpu_threads(void);

/* fn(ctx, begin, end) over [0, n), split into at most one contiguous range per thread, each
 * at least `grain` long (n < 2*grain runs serially on the caller). Returns when all ranges are
 * done. */
typedef void (*CpuRangeFn)(void *ctx, int64_t begin, int64_t end);
void backend_cpu_parallel_for(int64_t n, int64_t grain, CpuRangeFn fn, void *ctx);

/* fn(ctx, begin, end) over [0, n) in pieces of `chunk` (the last may be shorter) that the
 * threads take in turn as each finishes its last: on a machine shared with other programs a
 * thread that loses its core hands its remaining pieces to the others instead of making
 * everyone wait for it. Which thread runs a piece varies from run to run, so fn must compute
 * each element the same way whatever the piece (the ops do: a piece is whole outputs).
 * n <= chunk, or no pool, runs serially on the caller. */
void backend_cpu_parallel_dynamic(int64_t n, int64_t chunk, CpuRangeFn fn, void *ctx);

#endif
