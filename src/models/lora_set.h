/* lora_set — a UNet adapter (LoRA or DoRA) held in host memory: what the trainer exports from
 * the live Unet (unet_adapter_export; unet_adapter_import loads one back), what files are
 * written from (PEFT / diffusers, kohya) and read back into (resume, `easel export`), one
 * layer per entry.
 *
 * Shapes follow PEFT's modules. A Linear(in, out) layer: A (r, in), B (out, r), kh = kw = 0.
 * A Conv2d(in, out, kh×kw) layer: A is Conv2d(in, r, kh×kw) with the layer's stride and
 * padding, (r, in, kh, kw); B is Conv2d(r, out, 1×1), (out, r). The update is
 * s · B·A with s = alpha / r; DoRA's m (out) is the magnitude vector (PEFT's
 * lora_magnitude_vector), NULL for plain LoRA.
 * Models layer. */
#ifndef EASEL_LORA_SET_H
#define EASEL_LORA_SET_H

#include <stddef.h>

typedef struct LoraEntry {
    char name[192]; /* the diffusers module name without "unet.":
                     * "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q" */
    int r;
    float alpha;
    int out, in, kh, kw; /* kh = kw = 0: a linear layer */
    float *A;            /* r · in · max(kh,1) · max(kw,1) floats, malloc'd */
    float *B;            /* out · r floats, malloc'd */
    float *m;            /* out floats (DoRA), or NULL */
} LoraEntry;

typedef struct LoraSet {
    LoraEntry *e; /* malloc'd array of n */
    size_t n;
} LoraSet;

/* Free every entry's arrays and the array; *s is zeroed. NULL allowed. */
void lora_set_free(LoraSet *s);

#endif
