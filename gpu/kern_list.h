/* kern_list — every CUDA kernel of gpu/, named once: X(name, argument struct). gpu/cuda_nn.cu
 * makes a __global__ wrapper and a launcher of each, kern_emulate.h a host runner of each, and
 * tests/engine/test_gpu_kernels.c checks that this list, the KERN_ENTRY functions in gpu/kern_*.h and
 * the kernels its harness comparisons ran are the same set.
 */
#ifndef EASEL_KERN_LIST_H
#define EASEL_KERN_LIST_H

#include "kern_attn.h"
#include "kern_clip.h" /* ops of CLIP */
#include "kern_conv.h"
#include "kern_convert.h"
#include "kern_dora.h" /* ops of DoRA */
#include "kern_nn.h"
#include "kern_norm.h"
#include "kern_pointwise.h"
#include "kern_reward.h"
#include "kern_unet.h"
#include "kern_vae.h" /* ops of the VAE */

#define KERN_LIST(X)                                                                         \
    X(layernorm_fwd, LayerNormFwdArgs)                                                       \
    X(layernorm_bwd_dx, LayerNormBwdArgs)                                                    \
    X(layernorm_bwd_params, LayerNormBwdArgs)                                                \
    X(layernorm_bwd_params_sum, LayerNormBwdArgs)                                            \
    X(groupnorm_fwd, GroupNormFwdArgs)                                                       \
    X(groupnorm_bwd_dx, GroupNormBwdArgs)                                                    \
    X(groupnorm_bwd_params, GroupNormBwdArgs)                                                \
    X(softmax_fwd, SoftmaxArgs)                                                              \
    X(softmax_bwd, SoftmaxBwdArgs)                                                           \
    X(bias_relu_fwd, BiasReluArgs)                                                           \
    X(relu_bwd, ReluBwdArgs)                                                                 \
    X(adamw, AdamWArgs)                                                                      \
    X(convert_dtype, ConvertArgs)                                                            \
    X(act_fwd, ActArgs)                                                                      \
    X(act_bwd, ActArgs)                                                                      \
    X(geglu_fwd, GegluArgs)                                                                  \
    X(geglu_bwd, GegluArgs)                                                                  \
    X(upsample2x_fwd, UpsampleArgs)                                                          \
    X(upsample2x_bwd, UpsampleArgs)                                                          \
    X(chan_copy, ChanCopyArgs)                                                               \
    X(mse_fwd, MseArgs)                                                                      \
    X(mse_bwd, MseArgs)                                                                      \
    X(conv_im2col, ConvColArgs)                                                              \
    X(conv_col2im, ConvColArgs)                                                              \
    X(chan_bias_fwd, ChanBiasArgs)                                                           \
    X(chan_bias_bwd, ChanBiasArgs)                                                           \
    X(attn_fwd, AttnArgs)                                                                    \
    X(attn_bwd_pre, AttnArgs)                                                                \
    X(attn_bwd_dq, AttnArgs)                                                                 \
    X(attn_bwd_dkv, AttnArgs)                                                                \
    /* ops of the reward model (kern_reward.h) */                                            \
    X(dropout, DropoutArgs)                                                                  \
    X(scale_fwd, EwArgs)                                                                     \
    /* ops of CLIP (gpu/kern_clip.h) */                                                      \
    X(add_fwd, AddArgs)                                                                      \
    X(gather_rows, GatherArgs)                                                               \
    X(l2norm_fwd, L2NormArgs)                                                                \
    /* ops of the UNet (kern_unet.h) */                                                      \
    X(unet_add, UnetAddArgs)                                                                 \
    X(unet_transpose, UnetTransposeArgs)                                                     \
    X(upsample_nearest_fwd, NearestArgs)                                                     \
    X(upsample_nearest_bwd, NearestArgs)                                                     \
    /* ops of the VAE (kern_vae.h) */                                                        \
    X(pad2d_fwd, Pad2dArgs)                                                                  \
    /* ops of DoRA (kern_dora.h) */                                                          \
    X(dora_norm, DoraNormArgs)                                                               \
    X(dora_scale, DoraScaleArgs)                                                             \
    X(dora_mag_bwd, DoraMagArgs)

#endif
