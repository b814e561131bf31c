/* backend_emu — the CUDA backend's op code (gpu/backend_kern_ops.h) over the host emulation
 * harness: every kern_list.h kernel runs block by block on host threads (kern_emulate.h), GEMMs
 * in nn_gemm, memory is host memory tagged as the GPU's. It exists so that the marshalling the
 * CUDA backend does (shapes to kernel arguments, the GEMMs' operands, arena scratch, masks) is
 * tested on machines without a GPU: tests/engine/test_nn_backend_ops.c runs every op case on it.
 * Slow (a thread per emulated GPU thread); for tests only, not offered by backend_open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "kern_emulate.h"
#include "nn_linear.h"

#define EMU_ARENA ((size_t)64 << 20)

typedef struct EmuState {
    float *ones;
    size_t ones_n;
} EmuState;

/* Each kernel of the list through the harness with its launcher's geometry. */
#define KERN_EMU_BE_(name, Args)                                                             \
    __attribute__((unused)) static void name##_be(Backend *be, Args a) {                     \
        if (be->fail_code)                                                                   \
            return;                                                                          \
        Err e = {0};                                                                         \
        if (name##_run(&a, &e))                                                              \
            backend_fail(be, ERR_GPU, "%s: %s", #name, e.msg);                               \
    }
KERN_LIST(KERN_EMU_BE_)

static void gemm(Backend *be, int ta, int tb, int M, int N, int K, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc, const char *what) {
    (void)what;
    if (be->fail_code || M == 0 || N == 0)
        return;
    nn_gemm(ta, tb, M, N, K, a, lda, b, ldb, beta, c, ldc);
}

static const float *ones(Backend *be, size_t n) {
    EmuState *s = be->impl;
    if (s->ones_n < n) {
        free(s->ones);
        s->ones = malloc(n * sizeof(float));
        s->ones_n = s->ones ? n : 0;
        if (!s->ones) {
            backend_fail(be, ERR_NOMEM, "ones: out of memory");
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            s->ones[i] = 1.0f;
    }
    return s->ones;
}

static int to_device(Backend *be, void *dst, const void *src, size_t bytes, const char *what) {
    (void)be;
    (void)what;
    memcpy(dst, src, bytes);
    return 1;
}

// cattn: no cuBLAS here: half × half GEMMs take backend_kern_ops.h's widening path (nn_gemm).
static int gemm_half(Backend *be, int ta, int tb, int M, int N, int K, const void *a, int lda,
                     const void *b, int ldb, DType dt, float beta, float *c, int ldc) {
    (void)be, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)a, (void)lda, (void)b;
    (void)ldb, (void)dt, (void)beta, (void)c, (void)ldc;
    return 0;
}

#include "backend_kern_ops.h"

static void emu_close(Backend *be) {
    EmuState *s = be->impl;
    if (s)
        free(s->ones);
    free(s);
    arena_deinit(&be->arena);
    free(be);
}

static void *emu_malloc(Backend *be, size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, TENSOR_ALIGN, arena_round(bytes ? bytes : 1)) != 0) {
        backend_fail(be, ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    return p;
}

static void emu_free(Backend *be, void *p) {
    (void)be;
    free(p);
}

static void emu_copy(Backend *be, CT *dst, CT *src) {
    (void)be;
    memcpy(dst->ptr, src->ptr, tensor_nbytes(src));
}

static void emu_zero(Backend *be, CT *t) {
    (void)be;
    memset(t->ptr, 0, tensor_nbytes(t));
}

static const BackendOps emu_ops = {
    "emu", emu_close, NULL, emu_malloc, emu_free, emu_copy, emu_copy, emu_zero, kop_convert,
    KERN_OPS_POSITIONAL,
    KERN_OPS_REWARD_POSITIONAL, /* ops of the reward model */
    KERN_OPS_CLIP, /* ops of CLIP */
    KERN_OPS_UNET, /* ops of the UNet */
    KERN_OPS_VAE,
    KERN_OPS_DORA, /* ops of DoRA */
};

int backend_emu_open(const BackendConfig *cfg, Backend **out, Err *err) {
    *out = NULL;
    Backend *be = calloc(1, sizeof *be);
    EmuState *s = calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return err_set(err, ERR_NOMEM, "emu backend: out of memory");
    }
    int rc = arena_init(&be->arena, cfg && cfg->arena_bytes ? cfg->arena_bytes : EMU_ARENA, err);
    if (rc) {
        free(be);
        free(s);
        return rc;
    }
    be->ops = &emu_ops;
    be->kind = BACKEND_CUDA;
    be->device = TENSOR_DEVICE_CUDA;
    be->impl = s;
    snprintf(be->name, sizeof be->name, "emu (the CUDA backend's ops on the host harness)");
    *out = be;
    return 0;
}
