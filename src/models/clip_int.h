/* clip_int — private to src/models/clip.c and src/models/clip_load.c: the ClipModel struct.
 *
 * Every weight pointer points either into the safetensors mapping (tensors already in the
 * resident dtype, used in place) or into one of the `owned` buffers (converted at load,
 * OpenCLIP's projections transposed to the (E, C) layout nn_linear_forward takes, Hugging
 * Face's q, k, v projections concatenated into one (3C, C) matrix).
 *
 * The large matrices (ClipMat: the blocks' qkv, out, fc1, fc2, and the token embedding) are
 * in the model's resident dtype, `bf16` (uint16_t) or f32; everything else is f32.
 *
 * The forward passes use the weights as Tensors on the model's Backend (ClipDevBlock and the
 * d_* fields), made once at load by clip_place_weights: on the CPU views of the host memory
 * above (nothing copied), on a GPU copies uploaded into backend_malloc blocks (dev_owned).
 */
#ifndef EASEL_CLIP_INT_H
#define EASEL_CLIP_INT_H

#include "backend.h"
#include "clip.h"
#include "fmt_safetensors.h"

/* f32 or bf16 data, as ClipModel.bf16 says. */
typedef const void *ClipMat;

typedef struct ClipBlock {
    const float *ln1_w, *ln1_b;   /* (C) */
    ClipMat wqkv;                 /* (3C, C): q, k, v projections stacked */
    const float *bqkv;            /* (3C) */
    ClipMat wo;                   /* (C, C) */
    const float *bo;              /* (C) */
    const float *ln2_w, *ln2_b;   /* (C) */
    ClipMat fc1_w;                /* (M, C) */
    const float *fc1_b;           /* (M) */
    ClipMat fc2_w;                /* (C, M) */
    const float *fc2_b;           /* (C) */
} ClipBlock;

/* A block's weights on the backend; wq, wk, wv (C, C) and bq, bk, bv (C) are views of the
 * rows of the stacked qkv projection. */
typedef struct ClipDevBlock {
    Tensor ln1_w, ln1_b, wq, wk, wv, bq, bk, bv, wo, bo, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} ClipDevBlock;

struct ClipModel {
    ClipConfig cfg;
    ClipLayout layout;
    char *dir;                    /* the model folder */
    char *weights_path;
    const char *config_source;    /* static string */
    SafeTensors *st;              /* NULL when loaded from a ClipTensorSource */
    const ClipTensorSource *src;  /* the source, borrowed while loading only */
    int bf16;                     /* ClipMat weights are bf16 (else f32) */
    void **owned;                 /* converted / transposed tensors */
    size_t n_owned, cap_owned;
    size_t weight_bytes;
    ClipTokenizer *tok;
    int text_only;                /* a text tower alone (CLIPTextModel[WithProjection]): no
                                   * vision weights; proj_t NULL without a projection */
    /* vision */
    const float *patch_w;         /* (Cv, 3, P, P) */
    const float *class_emb;       /* (Cv) */
    const float *pos_v;           /* (1 + n_patches, Cv) */
    const float *ln_pre_w, *ln_pre_b;
    ClipBlock *vblocks;           /* vision_layers */
    const float *ln_post_w, *ln_post_b;
    const float *proj_v;          /* (E, Cv) */
    /* text */
    ClipMat tok_emb;              /* (V, Ct) */
    const float *pos_t;           /* (L, Ct) */
    ClipBlock *tblocks;           /* text_layers */
    const float *ln_final_w, *ln_final_b;
    const float *proj_t;          /* (E, Ct) */
    float *pos_cls;               /* (1 + n_patches, Cv): pos_v with class_emb added to row 0 */
    /* on the backend (clip_place_weights) */
    Backend *be;                  /* borrowed, or own_be */
    Backend *own_be;              /* the CPU backend clip_model_load opened, or NULL */
    void **dev_owned;             /* backend_malloc blocks of uploaded weights */
    size_t n_dev_owned;
    ClipDevBlock *dvblocks, *dtblocks;
    Tensor d_patch_w;             /* (Cv, 3·P·P) */
    Tensor d_pos_cls;             /* (1 + n_patches, Cv) */
    Tensor d_ln_pre_w, d_ln_pre_b, d_ln_post_w, d_ln_post_b, d_proj_v;
    Tensor d_tok_emb;             /* (V, Ct) in the resident dtype */
    Tensor d_pos_t;               /* (L, Ct) */
    Tensor d_ln_final_w, d_ln_final_b, d_proj_t;
    void *scratch;                /* backend_malloc'd activations of one batch, grown on need */
    size_t scratch_bytes;
};

/* Make the d_* tensors on m->be (clip_load.c). Returns 0 or the backend's error. */
int clip_place_weights(ClipModel *m, Err *err);

#endif
