/* nn_linear — dense layers: linear (x·Wᵀ + b, PyTorch nn.Linear layout), plain matmul and
 * bias add. GEMM runs in the engine's AVX-512 block (nn_sgemm.h) where the CPU has it, else
 * OpenBLAS (cblas_sgemm), split over the caller's CPU pool by output columns; everything else
 * is plain loops.
 *
 * Conventions of every nn_* op (llm.c): arguments are outputs, inputs, weights, sizes;
 * tensors are contiguous row-major f32 arrays whose shapes are given in the comments;
 * forward overwrites its outputs; backward ADDS into every gradient it is given (zero them
 * before the first backward of a step) and skips any gradient pointer that is NULL.
 * Engine layer; thread-safe as long as callers do not share output buffers.
 */
#ifndef EASEL_NN_LINEAR_H
#define EASEL_NN_LINEAR_H

/* out (N,OC) = inp (N,C) · weight (OC,C)ᵀ + bias (OC); bias may be NULL. out must not alias
 * inp or weight. */
void nn_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, int OC);
/* dinp (N,C) += dout·weight; dweight (OC,C) += doutᵀ·inp; dbias (OC) += Σ_n dout. */
void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int C, int OC);

/* As nn_linear_backward, but dweight and dbias are OVERWRITTEN with this batch's gradient
 * instead of added to (dinp still adds). For a layer used once per step this saves zeroing
 * the gradient and re-reading it inside the GEMM: at small batches the weight gradients are
 * most of a step's memory traffic. */
void nn_linear_backward_set(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int N, int C, int OC);

/* out (M,N) = a (M,K) · b (K,N). */
void nn_matmul_forward(float *out, const float *a, const float *b, int M, int K, int N);
/* da (M,K) += dout·bᵀ; db (K,N) += aᵀ·dout. */
void nn_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                        int M, int K, int N);

/* The GEMM the ops above are made of, for callers that address sub-matrices (a column block
 * of a weight, rows with a stride): c (M,N) = beta·c + op(a)·op(b), row-major with leading
 * dimensions; op(x) = xᵀ when trans_x. Same slab split and determinism as the ops. */
void nn_gemm(int trans_a, int trans_b, int M, int N, int K, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc);

/* out (N,C) = inp (N,C) + bias (C), broadcast over rows; out may alias inp. */
void nn_bias_add_forward(float *out, const float *inp, const float *bias, int N, int C);
/* dinp (N,C) += dout; dbias (C) += Σ_n dout. */
void nn_bias_add_backward(float *dinp, float *dbias, const float *dout, int N, int C);

#endif
