#!/usr/bin/env python3
"""Peer for bench/bench_generate.c: diffusers' UNet2DConditionModel and AutoencoderKL in
PyTorch on the CPU, random weights of the released shapes.

  peer_generate.py make ROOT NAME     ROOT/NAME/unet (and ROOT/NAME/vae), diffusers folders of
                                      f32 safetensors, random (torch.manual_seed(0)), made once
  peer_generate.py unet ROOT NAME SIZE THREADS REPS
                                      one warm-up and REPS UNet steps (batch 2, as with
                                      classifier-free guidance) at SIZE² pixels: prints the
                                      median seconds, this process's peak RSS in MB and the
                                      median CPU seconds (all threads) of the same runs
  peer_generate.py vae ROOT NAME SIZE THREADS REPS
                                      the VAE decode of one SIZE² image, the same way
  peer_generate.py make-pipe ROOT NAME
                                      the rest of a full diffusers folder ROOT/NAME: random text
                                      encoders of the released shapes, the test fixtures' tiny
                                      BPE tokenizers, an Euler scheduler config, model_index.json
  peer_generate.py image ROOT NAME SIZE THREADS STEPS
                                      one SIZE² image with StableDiffusion(XL)Pipeline from
                                      ROOT/NAME (Euler, STEPS steps, guidance 7.5, seed 0, a
                                      prompt and a negative prompt) after a one-step warm-up
                                      image: prints the seconds of the timed pipeline call,
                                      this process's peak RSS and the call's CPU seconds
NAME: sd15 (SD 1.5's unet/config.json) or sdxl (SDXL base's, with transformer depth reduced
to [1, 2, 2] from [1, 2, 10]: the widths, heads and conditioning are SDXL's).
"""
import os
import resource
import statistics
import sys
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

# The released configs (public values: runwayml/stable-diffusion-v1-5 unet/config.json and
# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json), written out: nothing downloads.
SD15_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280],
    center_input_sample=False, cross_attention_dim=768,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                      "DownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4,
    layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32,
    out_channels=4, sample_size=64,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                    "CrossAttnUpBlock2D"])
SDXL_UNET = dict(
    act_fn="silu", addition_embed_type="text_time", addition_embed_type_num_heads=64,
    addition_time_embed_dim=256, attention_head_dim=[5, 10, 20],
    block_out_channels=[320, 640, 1280], center_input_sample=False, cross_attention_dim=2048,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4,
    layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32,
    out_channels=4, projection_class_embeddings_input_dim=2816, sample_size=128,
    # released: [1, 2, 10] (10.3 GB in f32); reduced so that both sides fit this machine
    transformer_layers_per_block=[1, 2, 2],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    upcast_attention=False, use_linear_projection=True)
# SD 1.5's vae/config.json (SDXL's VAE has the same shape; scaling 0.13025, force_upcast)
SD_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4, in_channels=3, latent_channels=4,
    layers_per_block=2, norm_num_groups=32, out_channels=3, sample_size=512,
    scaling_factor=0.18215, up_block_types=["UpDecoderBlock2D"] * 4)
# The released text encoders' shapes (openai/clip-vit-large-patch14's text tower, SD 1.5's and
# SDXL's text_encoder; laion's ViT-bigG-14 text tower, SDXL's text_encoder_2: full depth), with
# the full 49408-token embedding table. Token ids come from the test fixtures' tiny BPE
# tokenizer (ids < 634; its bos/eos ids), which costs the same per token as the real vocabulary.
CLIP_L_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                   projection_dim=768, vocab_size=49408, pad_token_id=1, bos_token_id=632,
                   eos_token_id=2)
CLIP_BIGG_TEXT = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                      num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu",
                      projection_dim=1280, vocab_size=49408, pad_token_id=1, bos_token_id=632,
                      eos_token_id=633)
# SD 1.5's and SDXL's scheduler_config.json values, as EulerDiscreteScheduler
SCHED = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
             num_train_timesteps=1000, steps_offset=1, interpolation_type="linear",
             timestep_spacing="leading", prediction_type="epsilon", use_karras_sigmas=False)
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "gen",
                        "fixtures")
PROMPT, NEGATIVE = "a red fox in the snow", "blurry, low quality"
MODELS = {"sd15": (SD15_UNET, 768, 0), "sdxl": (SDXL_UNET, 2048, 1280)}


def make(root, name):
    cfg = MODELS[name][0]
    d = os.path.join(root, name)
    if not os.path.exists(os.path.join(d, "unet", "diffusion_pytorch_model.safetensors")):
        torch.manual_seed(0)
        UNet2DConditionModel(**cfg).save_pretrained(os.path.join(d, "unet.tmp"),
                                                    safe_serialization=True)
        os.replace(os.path.join(d, "unet.tmp"), os.path.join(d, "unet"))
    if not os.path.exists(os.path.join(d, "vae", "diffusion_pytorch_model.safetensors")):
        torch.manual_seed(1)
        AutoencoderKL(**SD_VAE).save_pretrained(os.path.join(d, "vae.tmp"),
                                                safe_serialization=True)
        os.replace(os.path.join(d, "vae.tmp"), os.path.join(d, "vae"))
    print("ok")


def make_pipe(root, name):
    import json
    import shutil
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    d = os.path.join(root, name)
    xl = name == "sdxl"
    parts = [("text_encoder", CLIPTextModel, CLIP_L_TEXT, 2)]
    if xl:
        parts.append(("text_encoder_2", CLIPTextModelWithProjection, CLIP_BIGG_TEXT, 3))
    for sub, cls, cfg, seed in parts:
        if os.path.exists(os.path.join(d, sub, "model.safetensors")):
            continue
        torch.manual_seed(seed)
        cls(CLIPTextConfig(**cfg)).save_pretrained(os.path.join(d, sub + ".tmp"),
                                                   safe_serialization=True)
        os.replace(os.path.join(d, sub + ".tmp"), os.path.join(d, sub))
    src = os.path.join(FIXTURES, "pipeline_sdxl")
    for sub in (["tokenizer", "tokenizer_2"] if xl else ["tokenizer"]):
        shutil.rmtree(os.path.join(d, sub), ignore_errors=True)
        shutil.copytree(os.path.join(src, sub), os.path.join(d, sub))
    EulerDiscreteScheduler(**SCHED).save_pretrained(os.path.join(d, "scheduler"))
    idx = {"_class_name": "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline",
           "_diffusers_version": "0.42.1",
           "feature_extractor": [None, None], "image_encoder": [None, None],
           "scheduler": ["diffusers", "EulerDiscreteScheduler"],
           "text_encoder": ["transformers", "CLIPTextModel"],
           "tokenizer": ["transformers", "CLIPTokenizer"],
           "unet": ["diffusers", "UNet2DConditionModel"],
           "vae": ["diffusers", "AutoencoderKL"]}
    if xl:
        idx.update(force_zeros_for_empty_prompt=True,
                   text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                   tokenizer_2=["transformers", "CLIPTokenizer"])
    else:
        idx.update(requires_safety_checker=False, safety_checker=[None, None])
    with open(os.path.join(d, "model_index.json"), "w") as f:
        json.dump(idx, f, indent=2, sort_keys=True)
    print("ok")


def image(root, name, size, threads, steps):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    torch.set_num_threads(threads)
    d = os.path.join(root, name)
    if name == "sdxl":
        pipe = StableDiffusionXLPipeline.from_pretrained(d)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(d, safety_checker=None,
                                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    def run(n):
        return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=n,
                    guidance_scale=7.5, height=size, width=size,
                    generator=torch.Generator("cpu").manual_seed(0)).images[0]
    with torch.inference_mode():
        run(1)  # warm-up: a one-step image
        t0, c0 = time.perf_counter(), time.process_time()
        img = run(steps)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert img.size == (size, size)
    print(f"{sec:.6f} {peak_mb():.1f} {cpu:.6f}")


def median_time(run, reps):
    """The median wall seconds and the median CPU seconds (the process's, all threads: on a
    loaded machine a steadier figure than the wall clock) of REPS runs after a warm-up."""
    with torch.inference_mode():
        run()  # warm-up
        times, cpus = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpus)


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def unet(root, name, size, threads, reps):
    torch.set_num_threads(threads)
    cfg, cross, pooled = MODELS[name]
    m = UNet2DConditionModel.from_pretrained(os.path.join(root, name, "unet")).eval()
    g = torch.Generator().manual_seed(1)
    h = size // 8
    x = torch.randn(2, 4, h, h, generator=g)
    ehs = torch.randn(2, 77, cross, generator=g)
    t = torch.tensor([500.0, 500.0])
    extra = None
    if pooled:
        extra = {"text_embeds": torch.randn(2, pooled, generator=g),
                 "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2,
                                          dtype=torch.float32)}
    sec, cpu = median_time(lambda: m(x, t, ehs, added_cond_kwargs=extra).sample, reps)
    print(f"{sec:.6f} {peak_mb():.1f} {cpu:.6f}")


def vae(root, name, size, threads, reps):
    torch.set_num_threads(threads)
    m = AutoencoderKL.from_pretrained(os.path.join(root, name, "vae")).eval()
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, 4, size // 8, size // 8, generator=g)
    sec, cpu = median_time(lambda: m.decode(z).sample, reps)
    print(f"{sec:.6f} {peak_mb():.1f} {cpu:.6f}")


if __name__ == "__main__":
    a = sys.argv
    if a[1] == "make":
        make(a[2], a[3])
    elif a[1] == "make-pipe":
        make_pipe(a[2], a[3])
    elif a[1] == "image":
        image(a[2], a[3], int(a[4]), int(a[5]), int(a[6]))
    elif a[1] in ("unet", "vae"):
        (unet if a[1] == "unet" else vae)(a[2], a[3], int(a[4]), int(a[5]), int(a[6]))
    else:
        sys.exit(__doc__)
