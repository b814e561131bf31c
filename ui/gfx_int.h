/* gfx_int — private to ui/gfx_*.c: what the encoders share. Nothing else includes it. */
#ifndef EASEL_GFX_INT_H
#define EASEL_GFX_INT_H

#include <stddef.h>

/* A growing byte buffer, always NUL-terminated once it holds anything. Zero-initialise it;
 * the owner frees data. A failed allocation sets oom and makes later adds no-ops, so a writer
 * checks once, at the end. */
typedef struct GfxBuf {
    char *data;
    size_t len;
    size_t cap;
    int oom;
} GfxBuf;

/* Append the N bytes at P. */
void gfx_buf_add(GfxBuf *b, const void *p, size_t n);

#endif
