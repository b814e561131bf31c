/* backend — the engine interface: one Backend handle per job, and the ops every model is made
 * of, behind a table each backend fills (CPU here in src/engine/cpu/backend_cpu_ops.c, CUDA in
 * gpu/backend_cuda.cu). The DESIGN notes (invariants, ownership, errors) are in doc/engine.md.
 *
 * THE GRADIENT RULE (every op, every backend, stated once here):
 *   - a forward OVERWRITES its outputs;
 *   - a backward ADDS into every gradient tensor it is given (+=; zero them before the first
 *     backward of a step), so a tensor used twice receives both contributions;
 *   - a gradient argument that is NULL is skipped: nothing is computed or written for it.
 * Arguments are outputs, inputs, weights, then parameters. Optional tensors (bias, affine
 * weights, gradients) are NULL when absent.
 *
 * Tensors: contiguous, on the backend's device (t->device), with the shapes given in each
 * comment. Activations, outputs and gradients are F32 (attention: see its comment). Weights of
 * linear and conv2d may be F16 or BF16 (marked "any dtype"); arithmetic is always f32 (the CPU backend widens weight tiles
 * to f32 per block of rows; the CUDA backend widens in the kernel or uses cuBLAS with f32
 * compute). Weight gradients are F32 (f32 master weights; half copies are made with
 * backend_convert).
 *
 * ERRORS ARE STICKY. An op returns nothing: a bad argument (shape, dtype, device), a device
 * failure or an op the backend does not implement marks the backend failed with a message
 * naming the op; every later op on it is a no-op; backend_sync(be, err) waits for the device
 * and reports the FIRST failure (with the CUDA / cuBLAS text), then clears it. Check
 * backend_sync once per step, not after every op.
 *
 * Threads: a Backend is used by one thread at a time. Two Backends (two jobs) share nothing:
 * the CPU backend's pool is its own and is bound to the calling thread only for the duration
 * of each op; no backend changes process-wide state (OpenBLAS's thread count included).
 * Engine layer: libc, libm, pthreads, OpenBLAS (and the CUDA runtime in a CUDA build).
 */
#ifndef EASEL_BACKEND_H
#define EASEL_BACKEND_H

#include <stddef.h>

#include "err.h"
#include "nn_diffusion.h"
#include "optim.h"
#include "tensor.h"

typedef struct Backend Backend;

typedef enum BackendKind {
    BACKEND_CPU = 0,
    BACKEND_CUDA = 1,
} BackendKind;

typedef struct BackendConfig {
    int threads;          /* CPU: threads in the backend's pool; <= 0 = online CPUs */
    size_t arena_bytes;   /* scratch arena (activations, per-op scratch); 0 = 64 MiB on the
                           * CPU, 256 MiB on CUDA. conv2d needs its nn_conv2d_scratch_floats
                           * (CPU) from it; CUDA takes bands of output rows, C·K²·Wo floats
                           * per row, up to 64 MiB or what the arena has left. */
} BackendConfig;

/* Open the backend `spec` names: "cpu", "cuda" (device 0), "cuda:N", or "auto" (the first
 * CUDA device when there is one, else the CPU). cfg may be NULL (defaults). When "auto" or a
 * "cuda" request falls back to the CPU because this build has no CUDA or the machine has no
 * GPU, *be is the CPU backend and `note` (when not NULL) gets one line saying why; an
 * explicit "cuda:N" with N beyond the devices present is ERR_NOTFOUND. A bad spec is
 * ERR_USAGE (the accepted forms are in the message). note is "" when there is nothing to say. */
int backend_open(const char *spec, const BackendConfig *cfg, Backend **be, char *note,
                 size_t note_len, Err *err);
/* Wait for outstanding work, free the arena, pools, streams and handles. Accepts NULL. */
void backend_close(Backend *be);

BackendKind backend_kind(const Backend *be);
TensorDevice backend_device(const Backend *be);
/* "cpu (8 threads)", "cuda:0 (NVIDIA H100 80GB HBM3, sm_90)". */
const char *backend_name(const Backend *be);

/* Wait for the device; 0, or the first failure since the last sync (then cleared). */
int backend_sync(Backend *be, Err *err);
/* Nonzero while a failure is pending (ops are no-ops). */
int backend_failed(const Backend *be);

/* ---- memory --------------------------------------------------------------------------------- */

/* Scratch from the backend's arena on its device (64-byte aligned; contents undefined). Out
 * of arena space marks the backend failed (ERR_NOMEM) and returns a tensor with ptr NULL. */
Tensor backend_alloc(Backend *be, DType dtype, int n_dims, const int64_t *shape);
size_t backend_mark(const Backend *be);
void backend_reset(Backend *be, size_t mark);
/* Long-lived device memory (parameters, optimiser state): CPU malloc; on CUDA from the
 * caching allocator, so freeing and asking again for the same size never calls cudaMalloc. */
void *backend_malloc(Backend *be, size_t bytes);
void backend_free(Backend *be, void *p);
/* A contiguous tensor of backend_malloc'd memory, and its release. */
Tensor backend_tensor_new(Backend *be, DType dtype, int n_dims, const int64_t *shape);
void backend_tensor_free(Backend *be, Tensor *t);

/* dst (on the device) = src (host, same shape and dtype); and back. Both contiguous. */
void backend_upload(Backend *be, const Tensor *dst, const Tensor *src_host);
void backend_download(Backend *be, const Tensor *dst_host, const Tensor *src);
/* t = 0 */
void backend_zero(Backend *be, const Tensor *t);
/* dst = src converted between dtypes (same shape, same device); round to nearest even. */
void backend_convert(Backend *be, const Tensor *dst, const Tensor *src);

/* ---- ops (see the gradient rule above) ------------------------------------------------------ */

/* out (N,OC) = inp (N,C) · weight (OC,C, any dtype)ᵀ + bias (OC). */
void backend_linear_forward(Backend *be, const Tensor *out, const Tensor *inp,
                            const Tensor *weight, const Tensor *bias);
/* dinp (N,C) += dout·weight; dweight (OC,C) += doutᵀ·inp; dbias (OC) += Σ_n dout. */
void backend_linear_backward(Backend *be, const Tensor *dinp, const Tensor *dweight,
                             const Tensor *dbias, const Tensor *dout, const Tensor *inp,
                             const Tensor *weight);
/* out (M,N) = a (M,K) · b (K,N); backward da += dout·bᵀ, db += aᵀ·dout. */
void backend_matmul_forward(Backend *be, const Tensor *out, const Tensor *a, const Tensor *b);
void backend_matmul_backward(Backend *be, const Tensor *da, const Tensor *db, const Tensor *dout,
                             const Tensor *a, const Tensor *b);

/* LayerNorm over the last dim of inp (N,C); mean, rstd (N) saved; weight, bias (C) optional. */
void backend_layernorm_forward(Backend *be, const Tensor *out, const Tensor *mean,
                               const Tensor *rstd, const Tensor *inp, const Tensor *weight,
                               const Tensor *bias, float eps);
void backend_layernorm_backward(Backend *be, const Tensor *dinp, const Tensor *dweight,
                                const Tensor *dbias, const Tensor *dout, const Tensor *inp,
                                const Tensor *weight, const Tensor *mean, const Tensor *rstd);
/* GroupNorm of inp (B,C,H,W) in G groups; mean, rstd (B,G); weight, bias (C) optional. */
void backend_groupnorm_forward(Backend *be, const Tensor *out, const Tensor *mean,
                               const Tensor *rstd, const Tensor *inp, const Tensor *weight,
                               const Tensor *bias, int G, float eps);
void backend_groupnorm_backward(Backend *be, const Tensor *dinp, const Tensor *dweight,
                                const Tensor *dbias, const Tensor *dout, const Tensor *inp,
                                const Tensor *weight, const Tensor *mean, const Tensor *rstd,
                                int G);
/* Softmax over the last dim of (N,C); backward takes the forward's output. */
void backend_softmax_forward(Backend *be, const Tensor *out, const Tensor *inp);
void backend_softmax_backward(Backend *be, const Tensor *dinp, const Tensor *dout,
                              const Tensor *out);

typedef enum BackendAct {
    BACKEND_ACT_GELU = 0,      /* erf form, PyTorch approximate='none' */
    BACKEND_ACT_GELU_TANH = 1, /* approximate='tanh' */
    BACKEND_ACT_SILU = 2,
    BACKEND_ACT_QUICKGELU = 3, /* x·σ(1.702x), OpenAI CLIP */
} BackendAct;
/* out = act(inp), any shape (same numel); backward takes the forward's input. */
void backend_act_forward(Backend *be, BackendAct act, const Tensor *out, const Tensor *inp);
void backend_act_backward(Backend *be, BackendAct act, const Tensor *dinp, const Tensor *dout,
                          const Tensor *inp);
/* GEGLU: inp (N,2C) = [value, gate], out (N,C) = value·gelu(gate) (gelu form: GELU or
 * GELU_TANH). */
void backend_geglu_forward(Backend *be, BackendAct gelu, const Tensor *out, const Tensor *inp);
void backend_geglu_backward(Backend *be, BackendAct gelu, const Tensor *dinp, const Tensor *dout,
                            const Tensor *inp);

/* out (B,OC,Ho,Wo) = conv2d(inp (B,C,H,W), weight (OC,C,K,K, any dtype)) + bias (OC), square
 * kernel, `stride`, zero `pad` on every side. Scratch comes from the backend's arena. */
void backend_conv2d_forward(Backend *be, const Tensor *out, const Tensor *inp,
                            const Tensor *weight, const Tensor *bias, int stride, int pad);
void backend_conv2d_backward(Backend *be, const Tensor *dinp, const Tensor *dweight,
                             const Tensor *dbias, const Tensor *dout, const Tensor *inp,
                             const Tensor *weight, int stride, int pad);

/* Fused attention (nn_flash.h semantics): q (B,Tq,NH·hd), k, v (B,Tk,NH·hd), o (B,Tq,NH·hd),
 * lse (B,NH,Tq). scale 0 = 1/√hd; causal as nn_flash; key_len (B) host array or NULL.
 * q, k, v, o, dout, dq, dk, dv: one dtype, F32, F16 or BF16 (f32 sums; o and each gradient
 * rounded once); lse F32. CUDA: hd <= 128. */
typedef struct BackendAttn {
    int NH;
    float scale;
    int causal;
    const int *key_len;
} BackendAttn;
void backend_attention_forward(Backend *be, const Tensor *o, const Tensor *lse, const Tensor *q,
                               const Tensor *k, const Tensor *v, const BackendAttn *a);
void backend_attention_backward(Backend *be, const Tensor *dq, const Tensor *dk,
                                const Tensor *dv, const Tensor *dout, const Tensor *q,
                                const Tensor *k, const Tensor *v, const Tensor *o,
                                const Tensor *lse, const BackendAttn *a);

/* Nearest 2× upsampling: inp (B,C,H,W) → out (B,C,2H,2W). */
void backend_upsample2x_forward(Backend *be, const Tensor *out, const Tensor *inp);
void backend_upsample2x_backward(Backend *be, const Tensor *dinp, const Tensor *dout);
/* Channel concat: out (B,Ca+Cb,H,W) = [a (B,Ca,H,W), b (B,Cb,H,W)]; split is its inverse (a or
 * b may be NULL in the split's forward, da or db in its backward). */
void backend_concat_forward(Backend *be, const Tensor *out, const Tensor *a, const Tensor *b);
void backend_concat_backward(Backend *be, const Tensor *da, const Tensor *db, const Tensor *dout);
void backend_split_forward(Backend *be, const Tensor *a, const Tensor *b, const Tensor *inp);
void backend_split_backward(Backend *be, const Tensor *dinp, const Tensor *da, const Tensor *db);

/* loss (1) = mean((pred − target)²); backward dpred += dloss·2(pred−target)/n, dtarget −=. */
void backend_mse_forward(Backend *be, const Tensor *loss, const Tensor *pred,
                         const Tensor *target);
void backend_mse_backward(Backend *be, const Tensor *dpred, const Tensor *dtarget, float dloss,
                          const Tensor *pred, const Tensor *target);

/* One AdamW step t >= 1 (optim_adamw_step semantics) over same-shaped param, grad, m, v. */
void backend_adamw(Backend *be, const Tensor *param, const Tensor *grad, const Tensor *m,
                   const Tensor *v, int t, float lr, const AdamWConfig *cfg);

#endif
