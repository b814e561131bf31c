/* nn_attention — multi-head scaled dot-product attention, and the full PyTorch
 * nn.MultiheadAttention (batch_first=True) built on the fused attention (nn_flash.h) with
 * PyTorch's parameter layout:
 * in_proj_weight (3C,C) = [Wq; Wk; Wv], in_proj_bias (3C), out_proj.weight (C,C),
 * out_proj.bias (C). Conventions as in nn_linear.h.
 *
 * Heads: NH heads of hs = C/NH channels; head h of a (B,T,C) tensor is channels
 * [h·hs, (h+1)·hs). Per (batch, head) the score matrix is q·kᵀ/√hs (cblas_sgemm), masked,
 * softmaxed per query row. (batch, head) pairs are split over the CPU pool; each writes only
 * its own rows and head channels, so results are deterministic.
 *
 * A query row whose keys are all masked gets zero probabilities and a zero output (PyTorch
 * would produce NaN there).
 *
 * nn_attention_forward/backward materialise the (B,NH,Tq,Tk) probabilities: they are the
 * readable reference the fused op (nn_flash.h) is tested against; models use nn_flash.
 */
#ifndef EASEL_NN_ATTENTION_H
#define EASEL_NN_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

typedef struct AttnMask {
    const float *add;        /* (Tq,Tk) added to the scores (−INFINITY blocks), or NULL */
    const uint8_t *key_pad;  /* (B,Tk) nonzero = that key is padding, ignored; or NULL */
    int causal;              /* 1: query i sees keys j <= i + (Tk − Tq) */
} AttnMask;

/* out (B,Tq,C) = softmax(q·kᵀ/√hs + mask)·v per head; att (B,NH,Tq,Tk) keeps the
 * probabilities for the backward. q (B,Tq,C), k and v (B,Tk,C). mask may be NULL. */
void nn_attention_forward(float *out, float *att, const float *q, const float *k,
                          const float *v, const AttnMask *mask, int B, int Tq, int Tk, int C,
                          int NH);
/* dq (B,Tq,C), dk, dv (B,Tk,C) += ...; datt is scratch (B,NH,Tq,Tk), overwritten. */
void nn_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                           const float *att, const float *q, const float *k, const float *v,
                           int B, int Tq, int Tk, int C, int NH);

/* Activations nn_mha_forward saves for the backward; each points at caller memory. */
typedef struct MhaCache {
    float *q;    /* (B,Tq,C) projected queries */
    float *k;    /* (B,Tk,C) projected keys */
    float *v;    /* (B,Tk,C) projected values */
    float *lse;  /* (B,NH,Tq) log-sum-exp per query (nn_flash.h) */
    float *ctx;  /* (B,Tq,C) attention output before out_proj */
    int causal;  /* the mask the forward used, for the backward */
} MhaCache;

/* Floats MhaCache needs in all, and floats of scratch nn_mha_backward needs. */
size_t nn_mha_cache_floats(int B, int Tq, int Tk, int C, int NH);
size_t nn_mha_scratch_floats(int B, int Tq, int Tk, int C, int NH);
/* Point a cache's fields into `mem` (nn_mha_cache_floats floats). */
void nn_mha_cache_point(MhaCache *cache, float *mem, int B, int Tq, int Tk, int C, int NH);

/* out (B,Tq,C) = MultiheadAttention(query (B,Tq,C), key (B,Tk,C), value (B,Tk,C)).
 * key and value may be the same array. The attention is the fused one (nn_flash.h): memory
 * linear in the tokens, no probabilities kept. mask may be NULL; of it only `causal` is
 * supported (add and key_pad must be NULL). */
void nn_mha_forward(float *out, MhaCache *cache, const float *query, const float *key,
                    const float *value, const float *in_proj_weight, const float *in_proj_bias,
                    const float *out_weight, const float *out_bias, const AttnMask *mask, int B,
                    int Tq, int Tk, int C, int NH);
/* Gradients of all inputs and parameters (+=, NULL skips); dkey and dvalue may be the same
 * array when key and value were. scratch: nn_mha_scratch_floats floats, overwritten. */
void nn_mha_backward(float *dquery, float *dkey, float *dvalue, float *din_proj_weight,
                     float *din_proj_bias, float *dout_weight, float *dout_bias, float *scratch,
                     const float *dout, const MhaCache *cache, const float *query,
                     const float *key, const float *value, const float *in_proj_weight,
                     const float *out_weight, int B, int Tq, int Tk, int C, int NH);

#endif
