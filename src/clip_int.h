/* clip_int — private to src/clip.c and src/clip_load.c: the ClipModel struct.
 *
 * Every weight pointer points either into the safetensors mapping (f32 tensors, used in
 * place) or into one of the `owned` buffers (f16/bf16 converted at load, OpenCLIP's
 * projections transposed to the (E, C) layout nn_linear_forward takes).
 */
#ifndef EASEL_CLIP_INT_H
#define EASEL_CLIP_INT_H

#include "clip.h"
#include "fmt_safetensors.h"

typedef struct ClipBlock {
    const float *ln1_w, *ln1_b;   /* (C) */
    const float *wq, *wk, *wv;    /* (C, C) each */
    const float *bq, *bk, *bv;    /* (C) each */
    const float *wo, *bo;         /* (C, C), (C) */
    const float *ln2_w, *ln2_b;   /* (C) */
    const float *fc1_w, *fc1_b;   /* (M, C), (M) */
    const float *fc2_w, *fc2_b;   /* (C, M), (C) */
} ClipBlock;

struct ClipModel {
    ClipConfig cfg;
    ClipLayout layout;
    char *dir;                    /* the model folder */
    char *weights_path;
    const char *config_source;    /* static string */
    SafeTensors *st;
    float **owned;                /* converted / transposed tensors */
    size_t n_owned, cap_owned;
    size_t weight_bytes;
    ClipTokenizer *tok;
    /* vision */
    const float *patch_w;         /* (Cv, 3, P, P) */
    const float *class_emb;       /* (Cv) */
    const float *pos_v;           /* (1 + n_patches, Cv) */
    const float *ln_pre_w, *ln_pre_b;
    ClipBlock *vblocks;           /* vision_layers */
    const float *ln_post_w, *ln_post_b;
    const float *proj_v;          /* (E, Cv) */
    /* text */
    const float *tok_emb;         /* (V, Ct) */
    const float *pos_t;           /* (L, Ct) */
    ClipBlock *tblocks;           /* text_layers */
    const float *ln_final_w, *ln_final_b;
    const float *proj_t;          /* (E, Ct) */
};

#endif
