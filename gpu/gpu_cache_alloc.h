/* gpu_cache_alloc — the CUDA backend's caching allocator, as plain C over two callbacks so that
 * the host tests can drive it with malloc (tests/engine/test_gpu_cache_alloc.c) and the CUDA backend
 * with cudaMalloc/cudaFree (gpu/backend_cuda.cu).
 *
 * Sizes are rounded to a class (512 B steps below 1 MiB, 2 MiB steps above). A freed block is
 * kept and serves the next request of its class without calling raw_alloc, so a training loop
 * that frees and asks again calls cudaMalloc only in its first step. When raw_alloc fails, the
 * free cached blocks are released and it is tried once more. Not thread-safe: one per Backend.
 */
#ifndef EASEL_GPU_CACHE_ALLOC_H
#define EASEL_GPU_CACHE_ALLOC_H

#include <stddef.h>

typedef struct CacheBlock {
    void *p;
    size_t bytes; /* the rounded size class */
    int in_use;
} CacheBlock;

typedef struct CacheAlloc {
    void *(*raw_alloc)(void *ctx, size_t bytes); /* NULL on failure */
    void (*raw_free)(void *ctx, void *p);
    void *ctx;
    CacheBlock *blocks; /* every block raw_alloc gave and nobody released */
    int n_blocks, cap_blocks;
    size_t raw_calls;   /* raw_alloc calls so far (the tests count them) */
} CacheAlloc;

void cache_alloc_init(CacheAlloc *c, void *(*raw_alloc)(void *, size_t),
                      void (*raw_free)(void *, void *), void *ctx);
/* The rounded size class of a request. */
size_t cache_alloc_class(size_t bytes);
/* A block of at least `bytes`, or NULL when raw_alloc fails even after releasing the cache. */
void *cache_alloc_get(CacheAlloc *c, size_t bytes);
/* Back to the cache (not to raw_free). Unknown pointers and NULL are ignored. */
void cache_alloc_put(CacheAlloc *c, void *p);
/* raw_free the blocks nobody holds. */
void cache_alloc_trim(CacheAlloc *c);
/* raw_free everything, held or not. */
void cache_alloc_deinit(CacheAlloc *c);

#endif
