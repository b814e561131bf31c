/* nn_flash — fused multi-head scaled dot-product attention with an online softmax
 * (flash-attention style) on the CPU: the (Tq, Tk) score and probability matrices are never
 * stored. Memory beyond the inputs and outputs is one log-sum-exp per (batch, head, query)
 * kept by the forward for the backward, plus fixed-size tiles on each thread's stack: linear
 * in the token count, where materialising attention is quadratic (671 MB per image per layer
 * at SDXL's 4096 tokens).
 *
 * Layout: tokens are rows. Head h of token t of batch b in q is the hd floats at
 *   q + (b·Tq + t)·ldq + h·hd
 * and likewise k and v (Tk tokens, ldk, ldv), o and dout (Tq tokens, ldo); the gradient dq
 * has q's layout, dk k's, dv v's. With ld* = 0 the rows are packed (NH·hd floats), which is
 * a (B, T, C = NH·hd) tensor; a larger ld reads heads straight out of a fused qkv buffer.
 * lse is (B, NH, Tq).
 *
 * Forward: o = softmax(scale·q·kᵀ + mask)·v per (batch, head); lse = log Σ exp(scale·q·kᵀ +
 * mask) per query row (natural log, as PyTorch's logsumexp). Backward recomputes the
 * probabilities tile by tile from q, k and lse, with D = rowsum(dout ∘ o).
 *
 * Masks: `causal` lets query i see keys j <= i + (Tk − Tq) (PyTorch's bottom-right causal
 * alignment; for Tq == Tk, j <= i, what CLIP's text tower uses); `key_len` (B), when not
 * NULL, lets batch b see keys [0, key_len[b]) only (right padding, what text encoders need).
 * A query row that sees no key gets o = 0, lse = −INFINITY and zero gradients (PyTorch would
 * give NaN).
 *
 * GRADIENT RULE (as every nn_* op): backward ADDS into dq, dk and dv (+=, never overwrites);
 * a NULL gradient pointer is skipped and its work not done.
 *
 * Shapes: any B, NH, Tq, Tk >= 1 (Tq != Tk for cross attention), any head size hd >= 1 (tuned
 * for hd <= NN_FLASH_TUNED_HD; above it the query tiles get shorter).
 *
 * Threads: work is split over (batch, head, query tile) in the forward; in the backward over
 * (batch, head) or, where that gives the threads too few tasks, over (batch, head, key tile)
 * then (batch, head, query tile); on the calling thread's CPU pool (backend_cpu.h), the
 * threads taking tasks in turn (backend_cpu_parallel_dynamic). Every output element is
 * computed by one task with the same arithmetic in the same order for any thread count, so
 * results are identical across the pool's thread counts. The tile products run on the
 * engine's AVX-512 GEMM block where the CPU has it (nn_sgemm.h), else OpenBLAS (with no
 * pool selected, OpenBLAS's own threads may split a tile product another way;
 * backend_cpu_use switches them off). Query and key tiles are of even size (rounded up to
 * 8): 257 tokens are tiles of 88, 88 and 81, not 128, 128 and 1.
 */
#ifndef EASEL_NN_FLASH_H
#define EASEL_NN_FLASH_H

#include <stddef.h>

#define NN_FLASH_TUNED_HD 128

typedef struct FlashAttn {
    int B, NH, Tq, Tk, hd;
    int ldq, ldk, ldv, ldo; /* floats from one token's row to the next; 0 = NH·hd */
    float scale;            /* scores = scale·q·kᵀ; 0 = 1/√hd */
    int causal;             /* 1: query i sees keys j <= i + (Tk − Tq) */
    const int *key_len;     /* (B) valid keys per batch, a prefix; NULL = all Tk */
    int schedule;           /* backward: 0 picks; 1 one pass per (batch, head); 2 the two-pass
                             * split. All give the same bits (the tests check it). */
} FlashAttn;

/* o (see layout) and lse (B,NH,Tq) from q, k, v. */
void nn_flash_forward(float *o, float *lse, const float *q, const float *k, const float *v,
                      const FlashAttn *a);
/* dq, dk, dv += the gradients given dout, from the forward's inputs, o and lse. Each of dq,
 * dk, dv may be NULL (skipped). No scratch: tiles live on the stack. */
void nn_flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                       const float *k, const float *v, const float *o, const float *lse,
                       const FlashAttn *a);

#endif
