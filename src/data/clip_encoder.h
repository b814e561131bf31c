/* clip_encoder — CLIP as a reward-model feature encoder (encoder.h's "clip" backend).
 *
 * `clip:NAME` opens the model registered as NAME (`easel models add clip PATH --name NAME`),
 * `clip:PATH` a model folder or .safetensors file directly. Append ",squash" to resize
 * images straight to the model's size (the original system's preprocessing) instead of the
 * model's own (OpenCLIP: short side + centre crop), ",bf16" or ",f32" to keep the weights in
 * that dtype (clip.h's ClipWeights; default: as the file holds them), in any order; the
 * suffixes are part of the encoder name, so the variants never share cached embeddings.
 *
 * Image embedding rows: the L2-normalised pooled embedding, then the n_patches projected
 * patch tokens (not normalised), all embed_dim wide (768 for ViT-L/14); text: the
 * L2-normalised text embedding. Computes on the Backend DEV names (encoder.h's
 * EncoderDevice; default the CPU with one thread per online CPU), which the Encoder owns.
 */
#ifndef EASEL_CLIP_ENCODER_H
#define EASEL_CLIP_ENCODER_H

#include "clip.h"
#include "encoder.h"

/* The EncoderOpen of the "clip" backend. */
Encoder *clip_encoder_open(const char *arg, Store *st, const EncoderDevice *dev, Err *err);

/* Resolve "NAME" or "PATH" (option suffixes ",squash", ",bf16", ",f32" ignored) to a model
 * path: the registered model NAME if ST has one, else PATH if it exists. Returns a new
 * string or NULL with err set. */
char *clip_encoder_resolve(const char *arg, Store *st, Err *err);

/* The weights dtype ARG's suffixes ask for (CLIP_WEIGHTS_AUTO if none). */
ClipWeights clip_encoder_weights(const char *arg);

#endif
