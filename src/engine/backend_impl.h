/* backend_impl — what a backend implements: the ops table and the Backend struct. Included by
 * src/backend*.c, gpu/backend_cuda.cu and the engine tests (which build copies of a table with
 * one entry replaced, to prove the checks catch a wrong op). Models use backend.h only.
 *
 * The front end (src/engine/backend.c) checks every op's tensors (shape, dtype, device, NULL where
 * required) and that the backend has not failed BEFORE calling the table, so an entry may
 * assume valid, consistent arguments. A NULL entry is an op the backend does not have: the
 * front end fails the backend with "<op>: not implemented on <backend>".
 */
#ifndef EASEL_BACKEND_IMPL_H
#define EASEL_BACKEND_IMPL_H

#include "backend.h"

#define BACKEND_MSG_LEN 384

typedef const Tensor CT;

typedef struct BackendOps {
    const char *name; /* "cpu", "cuda" */
    /* lifetime and memory */
    void (*close)(Backend *be);
    int (*sync)(Backend *be); /* wait; report a device failure through backend_fail */
    void *(*malloc_)(Backend *be, size_t bytes);
    void (*free_)(Backend *be, void *p);
    void (*upload)(Backend *be, CT *dst, CT *src_host);
    void (*download)(Backend *be, CT *dst_host, CT *src);
    void (*zero)(Backend *be, CT *t);
    void (*convert)(Backend *be, CT *dst, CT *src);
    /* ops: the signatures of backend.h */
    void (*linear_forward)(Backend *, CT *out, CT *inp, CT *w, CT *b);
    void (*linear_backward)(Backend *, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w);
    void (*matmul_forward)(Backend *, CT *out, CT *a, CT *b);
    void (*matmul_backward)(Backend *, CT *da, CT *db, CT *dout, CT *a, CT *b);
    void (*layernorm_forward)(Backend *, CT *out, CT *mean, CT *rstd, CT *inp, CT *w, CT *b,
                              float eps);
    void (*layernorm_backward)(Backend *, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w,
                               CT *mean, CT *rstd);
    void (*groupnorm_forward)(Backend *, CT *out, CT *mean, CT *rstd, CT *inp, CT *w, CT *b,
                              int G, float eps);
    void (*groupnorm_backward)(Backend *, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w,
                               CT *mean, CT *rstd, int G);
    void (*softmax_forward)(Backend *, CT *out, CT *inp);
    void (*softmax_backward)(Backend *, CT *dinp, CT *dout, CT *out);
    void (*act_forward)(Backend *, BackendAct act, CT *out, CT *inp);
    void (*act_backward)(Backend *, BackendAct act, CT *dinp, CT *dout, CT *inp);
    void (*geglu_forward)(Backend *, BackendAct gelu, CT *out, CT *inp);
    void (*geglu_backward)(Backend *, BackendAct gelu, CT *dinp, CT *dout, CT *inp);
    void (*conv2d_forward)(Backend *, CT *out, CT *inp, CT *w, CT *b, const ConvShape *s);
    void (*conv2d_backward)(Backend *, CT *dinp, CT *dw, CT *db, CT *dout, CT *inp, CT *w,
                            const ConvShape *s);
    void (*attention_forward)(Backend *, CT *o, CT *lse, CT *q, CT *k, CT *v,
                              const BackendAttn *a);
    void (*attention_backward)(Backend *, CT *dq, CT *dk, CT *dv, CT *dout, CT *q, CT *k, CT *v,
                               CT *o, CT *lse, const BackendAttn *a);
    void (*upsample2x_forward)(Backend *, CT *out, CT *inp);
    void (*upsample2x_backward)(Backend *, CT *dinp, CT *dout);
    void (*concat_forward)(Backend *, CT *out, CT *a, CT *b);
    void (*concat_backward)(Backend *, CT *da, CT *db, CT *dout);
    void (*split_forward)(Backend *, CT *a, CT *b, CT *inp);
    void (*split_backward)(Backend *, CT *dinp, CT *da, CT *db);
    void (*mse_forward)(Backend *, CT *loss, CT *pred, CT *target);
    void (*mse_backward)(Backend *, CT *dpred, CT *dtarget, float dloss, CT *pred, CT *target);
    void (*adamw)(Backend *, CT *param, CT *grad, CT *m, CT *v, int t, float lr,
                  const AdamWConfig *cfg);
    /* ops of the reward model */
    void (*gemm)(Backend *, CT *c, CT *a, CT *b, const BackendGemm *g);
    void (*relu_forward)(Backend *, CT *out, CT *inp);
    void (*relu_backward)(Backend *, CT *dinp, CT *dout, CT *out);
    void (*dropout_forward)(Backend *, CT *out, CT *inp, float p, uint64_t seed);
    void (*dropout_backward)(Backend *, CT *dinp, CT *dout, float p, uint64_t seed);
    void (*scale)(Backend *, CT *out, CT *a, float s);
    void (*add)(Backend *, CT *out, CT *a, CT *b);
    /* ops of CLIP (add: above) */
    void (*add_rows)(Backend *, CT *out, CT *inp, CT *rows);
    void (*gather_rows)(Backend *, CT *out, CT *table, const int *idx);
    void (*l2norm_forward)(Backend *, CT *out, CT *norm, CT *inp, float eps);
    /* ops of the UNet */
    void (*unet_add)(Backend *, CT *out, CT *a, CT *b, CT *chan);
    void (*unet_transpose)(Backend *, CT *out, CT *inp);
    void (*upsample_nearest_forward)(Backend *, CT *out, CT *inp);
    void (*upsample_nearest_backward)(Backend *, CT *dinp, CT *dout);
    /* ops of the VAE (add, unet_transpose: above) */
    void (*pad2d_forward)(Backend *, CT *out, CT *inp, int top, int left);
    /* ops of DoRA (issue 16) */
    void (*dora_norm)(Backend *, CT *norm, CT *weight, CT *B, CT *A, float s);
    void (*dora_scale)(Backend *, CT *out, CT *inp, CT *m, CT *norm, CT *bias);
    void (*dora_mag_backward)(Backend *, CT *dm, CT *dout, CT *y, CT *norm);
} BackendOps;

struct Backend {
    const BackendOps *ops; /* borrowed: a static table (or a test's copy) */
    BackendKind kind;
    TensorDevice device;
    char name[160];
    Arena arena;           /* scratch on the device; CPU owns its block, CUDA borrows one */
    void *impl;            /* the backend's own state (CpuPool *, CudaState *) */
    /* the sticky failure: the first one since the last backend_sync */
    int fail_code;
    char fail_msg[BACKEND_MSG_LEN];
};

/* Record a failure (kept only if none is pending). For backends and the front end. */
void backend_fail(Backend *be, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The CPU backend's table, for tests that copy it. */
extern const BackendOps backend_cpu_ops;
/* Open the CPU backend (threads <= 0: online CPUs). */
int backend_cpu_open(const BackendConfig *cfg, Backend **be, Err *err);
/* Open CUDA device `index`; ERR_NOTFOUND with the reason when this build has no CUDA or the
 * device is absent (gpu/backend_cuda.cu, or src/engine/backend.c's fallback without nvcc). */
int backend_cuda_open(int index, const BackendConfig *cfg, Backend **be, Err *err);

/* The CUDA backend's op code over the host emulation harness (gpu/backend_emu.c), for tests
 * on machines without a GPU: kind BACKEND_CUDA, device tag CUDA, host memory. */
int backend_emu_open(const BackendConfig *cfg, Backend **be, Err *err);

#endif
