#!/usr/bin/env python3
"""Peer for bench/bench_generate.c: diffusers' UNet2DConditionModel and AutoencoderKL in
PyTorch on the CPU, random weights of the released shapes.

  peer_generate.py make ROOT NAME     ROOT/NAME/unet (and ROOT/NAME/vae), diffusers folders of
                                      f32 safetensors, random (torch.manual_seed(0)), made once
  peer_generate.py unet ROOT NAME SIZE THREADS REPS
                                      one warm-up and REPS UNet steps (batch 2, as with
                                      classifier-free guidance) at SIZE² pixels: prints the
                                      median seconds and this process's peak RSS in MB
  peer_generate.py vae ROOT NAME SIZE THREADS REPS
                                      the VAE decode of one SIZE² image, the same way
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


def median_time(run, reps):
    with torch.inference_mode():
        run()  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    sec = median_time(lambda: m(x, t, ehs, added_cond_kwargs=extra).sample, reps)
    print(f"{sec:.6f} {peak_mb():.1f}")


def vae(root, name, size, threads, reps):
    torch.set_num_threads(threads)
    m = AutoencoderKL.from_pretrained(os.path.join(root, name, "vae")).eval()
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, 4, size // 8, size // 8, generator=g)
    sec = median_time(lambda: m.decode(z).sample, reps)
    print(f"{sec:.6f} {peak_mb():.1f}")


if __name__ == "__main__":
    a = sys.argv
    if a[1] == "make":
        make(a[2], a[3])
    elif a[1] in ("unet", "vae"):
        (unet if a[1] == "unet" else vae)(a[2], a[3], int(a[4]), int(a[5]), int(a[6]))
    else:
        sys.exit(__doc__)
