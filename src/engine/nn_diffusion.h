/* nn_diffusion — the ops a diffusion UNet/VAE needs beyond the transformer ones: 2-D
 * convolution, GroupNorm, SiLU, GELU with its form as a parameter, GEGLU, nearest 2×
 * upsampling, the sinusoidal timestep embedding, channel concat/split and the mean-squared
 * error loss. Each matches its PyTorch / diffusers counterpart (tests/engine/test_nn_diffusion.c
 * checks them against fixtures written by tests/torch/make_diffusion_fixtures.py).
 *
 * THE GRADIENT RULE (the same for every nn_* op, stated here once for these):
 *   - forward OVERWRITES its outputs;
 *   - backward ADDS into every gradient buffer it is given (zero them before the first
 *     backward of a step), so a tensor used twice simply receives both contributions;
 *   - a gradient pointer that is NULL is skipped: nothing is computed for it.
 * Arguments come in the order outputs, inputs, weights, sizes; tensors are contiguous
 * row-major f32, images NCHW, shapes given in each comment.
 *
 * Threads and determinism: conv2d, GroupNorm and the pointwise ops split their work over the
 * calling thread's CPU pool (backend_cpu.h) so that every output element, and every partial
 * sum, is computed by one thread in a fixed order whatever the thread count: results are
 * bit-identical with 1 or N threads. Engine layer: libc, libm, OpenBLAS, pthreads.
 */
#ifndef EASEL_NN_DIFFUSION_H
#define EASEL_NN_DIFFUSION_H

#include <stddef.h>

/* ---- conv2d ---------------------------------------------------------------------------------- */

/* A 2-D convolution's sizes, as PyTorch nn.Conv2d(C, OC, K, stride, pad) on (B,C,H,W); the
 * output is (B,OC,Ho,Wo), Ho = (H + 2·pad − K)/stride + 1 (likewise Wo). */
typedef struct ConvShape {
    int B, C, H, W; /* input */
    int OC;         /* output channels */
    int K;          /* kernel size (square): 1 and 3 are the ones diffusion uses */
    int stride;     /* 1 or 2 (any >= 1 works) */
    int pad;        /* zero padding on every side */
} ConvShape;

int nn_conv2d_out_h(const ConvShape *s);
int nn_conv2d_out_w(const ConvShape *s);
/* Floats of scratch nn_conv2d_forward/backward need (0 for a 1×1 stride-1 unpadded conv and
 * for up to 4 output channels, which need none). Bounded to about 64 MiB plus, for Winograd,
 * the transformed weights (16·OC·C floats) and 16 blocks of transformed tiles. */
size_t nn_conv2d_scratch_floats(const ConvShape *s);

/* out (B,OC,Ho,Wo) = conv(inp (B,C,H,W), weight (OC,C,K,K)) + bias (OC); bias may be NULL.
 * scratch: nn_conv2d_scratch_floats floats (may be NULL when that is 0), overwritten.
 * The path follows from the shape alone (nn_diffusion_conv.c): Winograd F(2×2,3×3) for 3×3
 * stride-1 convs from 16 channels, 16×16 outputs and 256 2×2 output tiles over the batch (32×32
 * at batch 1), direct loops up to 4 output channels,
 * else im2col + GEMM (OpenBLAS). out must not alias inp. */
void nn_conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                       const float *bias, const ConvShape *s);
/* dinp (B,C,H,W), dweight (OC,C,K,K), dbias (OC) += ... given dout (B,OC,Ho,Wo). */
void nn_conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch,
                        const float *dout, const float *inp, const float *weight,
                        const ConvShape *s);

/* ---- GroupNorm ------------------------------------------------------------------------------- */

/* PyTorch nn.GroupNorm(G, C, eps): the C channels of each image are cut into G groups of
 * C/G consecutive channels; each group is normalised over its (C/G)·HW values (biased
 * variance), then out = x̂·weight[c] + bias[c]. inp, out (B,C,HW); mean, rstd (B,G) are saved
 * for the backward; weight, bias (C) may be NULL (no affine part). C % G == 0. out may alias
 * inp. */
void nn_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int B, int C, int HW, int G,
                          float eps);
/* dinp (B,C,HW), dweight (C), dbias (C) += ...; inp, weight, mean, rstd as in the forward. */
void nn_groupnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, int B, int C, int HW, int G);

/* ---- activations ----------------------------------------------------------------------------- */

/* out (n) = x·σ(x) (SiLU / swish). May run in place. */
void nn_silu_forward(float *out, const float *inp, size_t n);
/* dinp (n) += dout·σ(x)(1 + x(1 − σ(x))); inp is the forward's input. */
void nn_silu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Which GELU: PyTorch's approximate='none' (x·Φ(x), erf) or 'tanh'. */
typedef enum NnGelu {
    NN_GELU_ERF = 0,
    NN_GELU_TANH = 1,
} NnGelu;

/* out (n) = gelu(x) in the chosen form (nn_gelu_forward / nn_gelu_tanh_forward). */
void nn_gelu_mode_forward(float *out, const float *inp, size_t n, NnGelu mode);
/* dinp (n) += dout·gelu'(x) */
void nn_gelu_mode_backward(float *dinp, const float *dout, const float *inp, size_t n,
                           NnGelu mode);

/* GEGLU as diffusers' GEGLU after its projection: inp (N,2C) is split along the last
 * dimension into a = inp[:, :C] (the value) and g = inp[:, C:] (the gate), and
 * out (N,C) = a · gelu(g). out must not alias inp. */
void nn_geglu_forward(float *out, const float *inp, int N, int C, NnGelu mode);
/* dinp (N,2C) += [dout·gelu(g), dout·a·gelu'(g)] */
void nn_geglu_backward(float *dinp, const float *dout, const float *inp, int N, int C,
                       NnGelu mode);

/* ---- resampling, embedding, concat ----------------------------------------------------------- */

/* Nearest-neighbour 2× upsampling (F.interpolate(scale_factor=2, mode='nearest')):
 * out (B,C,2H,2W)[b,c,y,x] = inp (B,C,H,W)[b,c,y/2,x/2]. */
void nn_upsample2x_forward(float *out, const float *inp, int B, int C, int H, int W);
/* dinp (B,C,H,W) += the sum of the four dout values each input pixel was copied to. */
void nn_upsample2x_backward(float *dinp, const float *dout, int B, int C, int H, int W);

/* diffusers' get_timestep_embedding: half = dim/2 frequencies
 * f_i = exp(−ln(max_period)·i / (half − downscale_freq_shift)), arguments a = scale·t·f_i,
 * out (N,dim) = [sin a, cos a] ([cos a, sin a] when flip_sin_to_cos), a zero last column when
 * dim is odd. timesteps (N) may be fractional. Computed in f32 in the same order as diffusers.
 * Forward only: the timesteps are data (integers in training), no gradient flows to them;
 * the embedding's trainable part is the linear layers after it. */
void nn_timestep_embedding_forward(float *out, const float *timesteps, int N, int dim,
                                   int flip_sin_to_cos, float downscale_freq_shift, float scale,
                                   float max_period);

/* out (B,Ca+Cb,HW) = [a (B,Ca,HW), b (B,Cb,HW)] along the channels (torch.cat(dim=1)). */
void nn_channel_concat_forward(float *out, const float *a, const float *b, int B, int Ca,
                               int Cb, int HW);
/* da (B,Ca,HW) += dout[:, :Ca]; db (B,Cb,HW) += dout[:, Ca:] */
void nn_channel_concat_backward(float *da, float *db, const float *dout, int B, int Ca, int Cb,
                                int HW);
/* a (B,Ca,HW) = inp[:, :Ca]; b (B,Cb,HW) = inp[:, Ca:] (torch.split along dim 1); either
 * output may be NULL (that part is not copied). */
void nn_channel_split_forward(float *a, float *b, const float *inp, int B, int Ca, int Cb,
                              int HW);
/* dinp (B,Ca+Cb,HW) += [da, db]; da or db may be NULL (no gradient reached that part). */
void nn_channel_split_backward(float *dinp, const float *da, const float *db, int B, int Ca,
                               int Cb, int HW);

/* ---- loss ------------------------------------------------------------------------------------ */

/* Mean-squared error, F.mse_loss(pred, target) with reduction='mean': returns
 * Σ (pred − target)² / n, summed in double in index order. n > 0. */
float nn_mse_loss_forward(const float *pred, const float *target, size_t n);
/* dpred (n) += dloss·2(pred − target)/n; dtarget (n) += −dloss·2(pred − target)/n. */
void nn_mse_loss_backward(float *dpred, float *dtarget, float dloss, const float *pred,
                          const float *target, size_t n);

#endif
