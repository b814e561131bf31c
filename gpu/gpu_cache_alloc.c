/* gpu_cache_alloc — see gpu_cache_alloc.h. A flat array of blocks, searched linearly: a
 * Backend holds tens to a few hundred blocks (parameters, moments, arena, workspace), not
 * thousands. */
#include "gpu_cache_alloc.h"

#include <stdlib.h>
#include <string.h>

void cache_alloc_init(CacheAlloc *c, void *(*raw_alloc)(void *, size_t),
                      void (*raw_free)(void *, void *), void *ctx) {
    memset(c, 0, sizeof *c);
    c->raw_alloc = raw_alloc;
    c->raw_free = raw_free;
    c->ctx = ctx;
}

size_t cache_alloc_class(size_t b) {
    if (b == 0)
        b = 1;
    if (b < ((size_t)1 << 20))
        return (b + 511) & ~(size_t)511;
    size_t step = (size_t)2 << 20;
    return (b + step - 1) / step * step;
}

void cache_alloc_trim(CacheAlloc *c) {
    int j = 0;
    for (int i = 0; i < c->n_blocks; i++) {
        if (c->blocks[i].in_use)
            c->blocks[j++] = c->blocks[i];
        else
            c->raw_free(c->ctx, c->blocks[i].p);
    }
    c->n_blocks = j;
}

void *cache_alloc_get(CacheAlloc *c, size_t bytes) {
    size_t r = cache_alloc_class(bytes);
    for (int i = 0; i < c->n_blocks; i++)
        if (!c->blocks[i].in_use && c->blocks[i].bytes == r) {
            c->blocks[i].in_use = 1;
            return c->blocks[i].p;
        }
    if (c->n_blocks == c->cap_blocks) {
        int cap = c->cap_blocks ? 2 * c->cap_blocks : 64;
        CacheBlock *nb = realloc(c->blocks, (size_t)cap * sizeof *nb);
        if (!nb)
            return NULL;
        c->blocks = nb;
        c->cap_blocks = cap;
    }
    c->raw_calls++;
    void *p = c->raw_alloc(c->ctx, r);
    if (!p) {
        cache_alloc_trim(c);
        c->raw_calls++;
        p = c->raw_alloc(c->ctx, r);
        if (!p)
            return NULL;
    }
    c->blocks[c->n_blocks++] = (CacheBlock){p, r, 1};
    return p;
}

void cache_alloc_put(CacheAlloc *c, void *p) {
    if (!p)
        return;
    for (int i = 0; i < c->n_blocks; i++)
        if (c->blocks[i].p == p) {
            c->blocks[i].in_use = 0;
            return;
        }
}

void cache_alloc_deinit(CacheAlloc *c) {
    for (int i = 0; i < c->n_blocks; i++)
        c->raw_free(c->ctx, c->blocks[i].p);
    free(c->blocks);
    memset(c, 0, sizeof *c);
}
