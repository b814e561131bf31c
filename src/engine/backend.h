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
 * comment.
 *
 * DTYPES (F32, F16, BF16), stated once here; backend.c checks exactly this:
 *   - ACTIVATIONS are an op's data inputs, outputs and their gradients (inp, out, a, b, dout,
 *     dinp, da, db of matmul/concat/split, ...). Ops marked [half] below take them F32, F16
 *     or BF16, ALL IN ONE DTYPE per call (the first activation's: out, dout and dinp of a
 *     bf16 inp are bf16), and the output is in that dtype: linear, matmul, layernorm,
 *     groupnorm, act, geglu, conv2d, upsample2x, concat, split, forward and backward (the
 *     backwards pass gradients THROUGH a frozen half base). Every other op takes F32
 *     activations only and refuses a half one with "<op>: <arg> is bf16, this op takes f32
 *     only there": softmax, mse (the loss is taken on f32), adamw. Attention takes q, k, v,
 *     o, dout, dq, dk, dv all F32, all F16 or all BF16 (see its comment); lse is F32.
 *   - WEIGHTS AND PARAMETERS (linear/conv2d weight, bias, norm weight and bias) may be F32,
 *     F16 or BF16 whatever the activations' dtype (mixing is allowed: an f32 bias with bf16
 *     activations, a bf16 weight with f32 activations).
 *   - STATISTICS (LayerNorm/GroupNorm mean and rstd, attention lse, the mse loss) and
 *     PARAMETER GRADIENTS (dweight, dbias) are always F32, whatever the weight's dtype: they
 *     are for f32 master weights (the op may run on a half copy made with backend_convert);
 *     a frozen half base passes NULL for them.
 *   - ARITHMETIC is f32 everywhere, accumulation included: half values are widened to f32
 *     (exactly), the op runs in f32, and half outputs are rounded once, to nearest even (as
 *     tensor_half.c). A backward into a half gradient widens it, adds in f32 and rounds once.
 *     So on the same inputs a half output is the f32 op's output rounded once (within one
 *     unit of the dtype's epsilon, 2^-10 f16, 2^-7 bf16, relative to the value: what the
 *     tests hold it to). The CPU backend widens activations in tiles of whole rows of about
 *     2^20 floats per tensor (at least one row; a row is an image for conv2d, groupnorm and
 *     concat/split) and weights in tiles of 64 rows (conv2d: the whole weight) in its arena;
 *     the CUDA backend's pointwise, GroupNorm and conv2d im2col/col2im kernels read and write
 *     half directly, GEMM operands and outputs and LayerNorm are widened whole into its arena
 *     with convert_dtype.
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
                           * (CPU) or C·K²·Ho·Wo floats (CUDA) from it; half activations
                           * their f32 copies (DTYPES above: tiles on the CPU, whole GEMM
                           * operands and LayerNorm tensors on CUDA). */
} BackendConfig;

/* Open the backend `spec` names: "cpu", "cuda" (device 0), "cuda:N", or "auto" (the first
 * CUDA device when there is one, else the CPU). cfg may be NULL (defaults). When "auto" or a
 * "cuda" request falls back to the CPU because this build has no CUDA or the machine has no
 * GPU, *be is the CPU backend; for "cuda" and "cuda:N" (a GPU asked for by name) `note` (when
 * not NULL) gets one line saying why, for "auto" it stays empty (the CPU is an answer); an
 * explicit "cuda:N" with N beyond the devices present is ERR_NOTFOUND. A bad spec is
 * ERR_USAGE (the accepted forms are in the message). note is "" when there is nothing to say. */
int backend_open(const char *spec, const BackendConfig *cfg, Backend **be, char *note,
                 size_t note_len, Err *err);
/* The spec alone, without opening anything (what backend_open parses): 0 with *kind
 * BACKEND_SPEC_AUTO, _CPU or _CUDA and *index the N of "cuda:N" (0 otherwise), or ERR_USAGE
 * with the message backend_open gives (naming the accepted forms). NULL is "auto". */
enum { BACKEND_SPEC_AUTO = 0, BACKEND_SPEC_CPU = 1, BACKEND_SPEC_CUDA = 2 };
int backend_spec_parse(const char *spec, int *kind, int *index, Err *err);
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
/* The arena's size and its high-water mark since the backend was opened (bytes): how much of
 * it a run needed, to size the next one. */
size_t backend_arena_size(const Backend *be);
size_t backend_arena_peak(const Backend *be);
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

/* [half] out (N,OC) = inp (N,C) · weight (OC,C, any dtype)ᵀ + bias (OC, any dtype). */
void backend_linear_forward(Backend *be, const Tensor *out, const Tensor *inp,
                            const Tensor *weight, const Tensor *bias);
/* dinp (N,C) += dout·weight; dweight (OC,C) += doutᵀ·inp; dbias (OC) += Σ_n dout. */
void backend_linear_backward(Backend *be, const Tensor *dinp, const Tensor *dweight,
                             const Tensor *dbias, const Tensor *dout, const Tensor *inp,
                             const Tensor *weight);
/* [half] out (M,N) = a (M,K) · b (K,N); backward da += dout·bᵀ, db += aᵀ·dout. */
void backend_matmul_forward(Backend *be, const Tensor *out, const Tensor *a, const Tensor *b);
void backend_matmul_backward(Backend *be, const Tensor *da, const Tensor *db, const Tensor *dout,
                             const Tensor *a, const Tensor *b);

/* [half] LayerNorm over the last dim of inp (N,C); mean, rstd (N, F32) saved; weight, bias (C)
 * optional. */
void backend_layernorm_forward(Backend *be, const Tensor *out, const Tensor *mean,
                               const Tensor *rstd, const Tensor *inp, const Tensor *weight,
                               const Tensor *bias, float eps);
void backend_layernorm_backward(Backend *be, const Tensor *dinp, const Tensor *dweight,
                                const Tensor *dbias, const Tensor *dout, const Tensor *inp,
                                const Tensor *weight, const Tensor *mean, const Tensor *rstd);
/* [half] GroupNorm of inp (B,C,H,W) in G groups; mean, rstd (B,G, F32); weight, bias (C)
 * optional. */
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
/* [half] out = act(inp), any shape (same numel); backward takes the forward's input. */
void backend_act_forward(Backend *be, BackendAct act, const Tensor *out, const Tensor *inp);
void backend_act_backward(Backend *be, BackendAct act, const Tensor *dinp, const Tensor *dout,
                          const Tensor *inp);
/* [half] GEGLU: inp (N,2C) = [value, gate], out (N,C) = value·gelu(gate) (gelu form: GELU or
 * GELU_TANH). */
void backend_geglu_forward(Backend *be, BackendAct gelu, const Tensor *out, const Tensor *inp);
void backend_geglu_backward(Backend *be, BackendAct gelu, const Tensor *dinp, const Tensor *dout,
                            const Tensor *inp);

/* [half] out (B,OC,Ho,Wo) = conv2d(inp (B,C,H,W), weight (OC,C,K,K)) + bias (OC), square
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

/* [half] Nearest 2× upsampling: inp (B,C,H,W) → out (B,C,2H,2W). */
void backend_upsample2x_forward(Backend *be, const Tensor *out, const Tensor *inp);
void backend_upsample2x_backward(Backend *be, const Tensor *dinp, const Tensor *dout);
/* [half] Channel concat: out (B,Ca+Cb,H,W) = [a (B,Ca,H,W), b (B,Cb,H,W)]; split is its inverse
 * (a or b may be NULL in the split's forward, da or db in its backward). */
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

/* ---- ops of the reward model (src/models/model_reward.c) ------------------------------------ */

/* A strided GEMM on parts of contiguous blocks, as nn_gemm (row-major; op(x) = xᵀ when its
 * trans flag is set): c[c_off..] (M,N, row stride ldc) = op(a[a_off..]) (M,K, lda) ·
 * op(b[b_off..]) (K,N, ldb) + beta·c. For the column blocks of a weight (the paired first
 * layer of the reward model reads W0's image and text columns apart). Every element it reads
 * or writes must lie inside its tensor (F32, any shape). */
typedef struct BackendGemm {
    int trans_a, trans_b;
    int M, N, K;
    size_t a_off, b_off, c_off; /* elements from each tensor's start */
    int lda, ldb, ldc;
    float beta;
} BackendGemm;
void backend_gemm(Backend *be, const Tensor *c, const Tensor *a, const Tensor *b,
                  const BackendGemm *g);
/* out = max(0, inp) (same shape; out may be inp); backward dinp += dout where out > 0 (takes
 * the forward's OUTPUT, so an in-place forward loses nothing). */
void backend_relu_forward(Backend *be, const Tensor *out, const Tensor *inp);
void backend_relu_backward(Backend *be, const Tensor *dinp, const Tensor *dout,
                           const Tensor *out);
/* Inverted dropout with counter-based masks (nn_dropout.h): element i is kept when
 * rng_hash_uniform(seed, i) >= p and scaled by 1/(1−p); 0 <= p < 1. out may be inp.
 * Backward dinp += dout·mask with the same seed. */
void backend_dropout_forward(Backend *be, const Tensor *out, const Tensor *inp, float p,
                             uint64_t seed);
void backend_dropout_backward(Backend *be, const Tensor *dinp, const Tensor *dout, float p,
                              uint64_t seed);
/* out = a·s; out = a + b (same shapes; out may be an input). Their backwards are themselves
 * (dinp += dout·s is backend_scale into scratch, then backend_add). */
void backend_scale(Backend *be, const Tensor *out, const Tensor *a, float s);
void backend_add(Backend *be, const Tensor *out, const Tensor *a, const Tensor *b);

/* ---- ops of CLIP (inference: forward only) -------------------------------------------------- */

/* backend_add (out = a + b) is in the reward model's block above: residuals use it too. */
/* out (N,C) = inp (N,C) + rows (T,C) repeated over the batch: out[n] = inp[n] + rows[n mod T]
 * (N a multiple of T; positional embeddings); out may alias inp. */
void backend_add_rows(Backend *be, const Tensor *out, const Tensor *inp, const Tensor *rows);
/* out (M,C) F32 = rows idx[m] of table (V,C, any dtype), widened to f32; idx is a host array
 * of M ints, each in -1..V-1, -1 giving a row of zeros (embedding lookup; picking one token
 * of each sequence). The backend copies idx before returning: the caller may reuse it. */
void backend_gather_rows(Backend *be, const Tensor *out, const Tensor *table, const int *idx);
/* out (N,C) = inp / max(‖inp‖₂, eps) row by row; norm (N) gets ‖inp‖₂ (optional). out may
 * alias inp. */
void backend_l2norm_forward(Backend *be, const Tensor *out, const Tensor *norm,
                            const Tensor *inp, float eps);
/* Not an op: run fn(ctx, begin, end) over [0, n) on the host, split over the CPU backend's
 * pool (other backends: over the pool the calling thread selected with backend_cpu_use, if
 * any), for host work that feeds the backend (decoding and preprocessing images). */
void backend_host_parallel_for(Backend *be, int64_t n, int64_t grain,
                               void (*fn)(void *ctx, int64_t begin, int64_t end), void *ctx);
/* ---- ops of the UNet (src/models/unet.c; forward only, but upsample_nearest) ----------------- */

/* out (B,C,S) = a (B,C,S) + b (B,C,S) + chan (B,C) broadcast over S; b and chan are optional
 * (NULL: not added). F32 only. out may alias a or b (residuals, the time embedding added to a
 * ResNet's feature map). */
void backend_unet_add(Backend *be, const Tensor *out, const Tensor *a, const Tensor *b,
                      const Tensor *chan);
/* out (B,C,R) = inp (B,R,C) with its last two dimensions swapped, F32 (NCHW feature maps to
 * tokens (B,HW,C) and back; its own backward). out must not alias inp. */
void backend_unet_transpose(Backend *be, const Tensor *out, const Tensor *inp);
/* out (B,C,Ho,Wo) = inp (B,C,H,W) resized by nearest neighbour to any size, as PyTorch's
 * F.interpolate(size=(Ho,Wo), mode="nearest"): source row y = min(floor(oy · (float)H/Ho),
 * H − 1) (oy itself when Ho = H, oy >> 1 when Ho = 2H), columns alike. F32. The UNet's
 * upsamplers when a latent side is not a multiple of 2^(levels−1) (diffusers'
 * upsample_size). out must not alias inp. The backward ADDS every output gradient into the
 * input pixel it came from: dinp (B,C,H,W) += . */
void backend_upsample_nearest_forward(Backend *be, const Tensor *out, const Tensor *inp);
void backend_upsample_nearest_backward(Backend *be, const Tensor *dinp, const Tensor *dout);

/* ---- ops of the VAE (src/models/vae.c): forward only, F32 activations (add and unet_transpose: above) - */

/* out (B,C,Ho,Wo)[y][x] = inp (B,C,H,W)[y − top][x − left] where that is inside inp, else 0:
 * zero padding (top, left >= 0 and a larger out), a window (top, left <= 0: a crop), or both.
 * out must not alias inp. */
void backend_pad2d_forward(Backend *be, const Tensor *out, const Tensor *inp, int top, int left);

/* ---- ops of DoRA (src/models/unet.c's adapters, issue 16) ------------------------------------ */

/* norm (OC) F32 = ‖weight[o] + s·(B·A)[o]‖₂ for every output row o: weight (OC, ...) of any
 * dtype with K elements per row (a linear (OC,K); a conv (OC,C,kh,kw), K = C·kh·kw), B (OC,r)
 * or (OC,r,1,1) F32, A (r, ...) F32 with K elements per row (a conv LoRA's A (r,C,kh,kw)).
 * B and A both NULL: ‖weight[o]‖₂ (DoRA's magnitude at init). Sums in f32 or wider. */
void backend_dora_norm(Backend *be, const Tensor *norm, const Tensor *weight, const Tensor *B,
                       const Tensor *A, float s);
/* out (P,C,Q) = inp (P,C,Q) · m[c] / norm[c] + bias[c] (DoRA's output, and its backward to
 * the layer's output with bias NULL): m, norm (C) F32, bias (C, any dtype) optional; inp and
 * out F32; out may alias inp. (A linear's (N,C) output is (N,C,1); a conv's (B,C,H·W).) */
void backend_dora_scale(Backend *be, const Tensor *out, const Tensor *inp, const Tensor *m,
                        const Tensor *norm, const Tensor *bias);
/* dm (C) += Σ_{p,q} dout[p,c,q] · y[p,c,q] / norm[c]: the magnitude's gradient through
 * backend_dora_scale for the pre-scale output y, the norm detached. All F32. */
void backend_dora_mag_backward(Backend *be, const Tensor *dm, const Tensor *dout, const Tensor *y,
                               const Tensor *norm);

#endif
