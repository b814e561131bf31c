/* Tests for gpu/gpu_cache_alloc.c, the CUDA backend's caching allocator, driven on the host with
 * malloc behind a counter: freeing and asking again must not reach the raw allocator (no
 * cudaMalloc in a training step's hot path), a failing raw allocator gets the cache released
 * and one retry, and deinit returns every block. Engine-only. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "gpu_cache_alloc.h"

typedef struct Raw {
    int live;       /* blocks handed out and not freed */
    size_t budget;  /* bytes the "device" has left */
} Raw;

static void *raw_alloc(void *ctx, size_t bytes) {
    Raw *r = ctx;
    if (bytes > r->budget)
        return NULL;
    r->budget -= bytes;
    r->live++;
    size_t *h = malloc(bytes + 16); /* the size in front, so a free returns it to the budget */
    h[0] = bytes;
    return (char *)h + 16;
}

static void raw_free_(void *ctx, void *p) {
    Raw *r = ctx;
    size_t *h = (size_t *)((char *)p - 16);
    r->live--;
    r->budget += h[0];
    free(h);
}

Test(gpu_cache_alloc, classes) {
    cr_expect_eq(cache_alloc_class(0), 512);
    cr_expect_eq(cache_alloc_class(1), 512);
    cr_expect_eq(cache_alloc_class(513), 1024);
    cr_expect_eq(cache_alloc_class((1 << 20) - 1), 1 << 20);
    cr_expect_eq(cache_alloc_class((1 << 20) + 1), 2 << 20);
    cr_expect_eq(cache_alloc_class((3 << 20)), 4 << 20);
}

Test(gpu_cache_alloc, a_step_loop_allocates_once) {
    Raw r = {0, (size_t)1 << 30};
    CacheAlloc c;
    cache_alloc_init(&c, raw_alloc, raw_free_, &r);
    for (int step = 0; step < 10; step++) {
        void *a = cache_alloc_get(&c, 1000), *b = cache_alloc_get(&c, 3 << 20);
        void *d = cache_alloc_get(&c, 1000);
        cr_assert(a && b && d && a != d);
        cache_alloc_put(&c, a);
        cache_alloc_put(&c, b);
        cache_alloc_put(&c, d);
    }
    cr_expect_eq(c.raw_calls, 3, "only the first step reaches the raw allocator");
    cr_expect_eq(r.live, 3);
    void *x = cache_alloc_get(&c, 900); /* same class as 1000 */
    cr_expect_eq(c.raw_calls, 3);
    cache_alloc_put(&c, x);
    cache_alloc_put(&c, (void *)&r); /* unknown pointer: ignored */
    cache_alloc_deinit(&c);
    cr_expect_eq(r.live, 0);
}

Test(gpu_cache_alloc, out_of_memory_releases_the_cache_and_retries) {
    Raw r = {0, 4 << 20};
    CacheAlloc c;
    cache_alloc_init(&c, raw_alloc, raw_free_, &r);
    void *a = cache_alloc_get(&c, 2 << 20), *b = cache_alloc_get(&c, 2 << 20);
    cr_assert(a && b);
    cache_alloc_put(&c, a); /* cached, still counted against the device */
    void *big = cache_alloc_get(&c, 4 << 20);
    cr_expect_null(big, "b is still held: 4 MiB cannot fit");
    void *small = cache_alloc_get(&c, 1 << 20); /* a's class is 2 MiB: a was trimmed above */
    cr_expect_eq(r.live, 1 + (small != NULL));
    r.budget += 2 << 20; /* the device frees memory elsewhere */
    cache_alloc_put(&c, b);
    cache_alloc_put(&c, small);
    void *again = cache_alloc_get(&c, 4 << 20);
    cr_expect_not_null(again, "the free blocks are released to make room");
    cache_alloc_deinit(&c);
    cr_expect_eq(r.live, 0);
}
