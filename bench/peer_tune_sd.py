#!/usr/bin/env python3
"""Peer for bench/bench_tune_sd.c: one Diffusion-DPO step with a PEFT LoRA (or DoRA) adapter on
diffusers' UNet2DConditionModel in PyTorch on the CPU, as diffusers'
examples/research_projects/diffusion_dpo/train_diffusion_dpo.py takes it (its defaults: no
gradient checkpointing, AdamW, gradient clipping at 1.0).

  peer_tune.py make ROOT              ROOT/tune-sd15/unet: a diffusers folder of f32
                                      safetensors of the bench's SD-1.5-shaped UNet (CONFIG
                                      below), random (torch.manual_seed(0)), made once
  peer_tune.py step ROOT ADAPTER SIZE B THREADS REPS
                                      ADAPTER lora or dora: rank 8, alpha 32 on the original's
                                      six targets; SIZE² latents; B pairs per step (a UNet
                                      batch of 2B); one
                                      warm-up step, then REPS timed steps: prints the median
                                      seconds per step, this process's peak RSS in MB and the
                                      median CPU seconds per step (all threads)
The step: per pair one timestep and one noise shared by its two images (the script's
chunk(2)[0].repeat(2)), DDPMScheduler.add_noise, the policy's forward, the reference's forward
under no_grad with the adapter disabled, the DPO loss (beta 2000, SD 1.5's default), backward,
clip_grad_norm_(1.0), AdamW(lr 1e-5, weight decay 1e-2) step, zero_grad.
"""
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel

# SD 1.5's unet/config.json (runwayml/stable-diffusion-v1-5) with block_out_channels
# (320, 640, 1280, 1280) reduced to (128, 256, 256) over three levels: the same block types,
# two layers per level, 8 heads, 768-wide cross attention, 32 groups. A full SD 1.5 DPO step
# takes minutes per side on a 2-core machine.
CONFIG = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[128, 256, 256],
    center_input_sample=False, cross_attention_dim=768,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4,
    layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32,
    out_channels=4, sample_size=32,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
NAME = "tune-sd15"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]
TOKENS, BETA = 77, 2000.0


def make(root):
    d = os.path.join(root, NAME)
    if not os.path.exists(os.path.join(d, "unet", "diffusion_pytorch_model.safetensors")):
        torch.manual_seed(0)
        UNet2DConditionModel(**CONFIG).save_pretrained(os.path.join(d, "unet.tmp"),
                                                       safe_serialization=True)
        os.replace(os.path.join(d, "unet.tmp"), os.path.join(d, "unet"))
    print("ok")


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def step(root, adapter, SIZE, B, threads, reps):
    from peft import LoraConfig
    torch.set_num_threads(threads)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(root, NAME, "unet"))
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=8, lora_alpha=32,
                                target_modules=TARGETS, use_dora=adapter == "dora"))
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000)
    g = torch.Generator().manual_seed(1)
    C = CONFIG["in_channels"]

    def one():
        latents = torch.randn(2 * B, C, SIZE, SIZE, generator=g) * 0.8
        noise = torch.randn(B, C, SIZE, SIZE, generator=g).repeat(2, 1, 1, 1)
        t = torch.randint(0, 1000, (B,), generator=g).repeat(2)
        ehs = torch.randn(B, TOKENS, CONFIG["cross_attention_dim"], generator=g).repeat(2, 1, 1)
        noisy = sched.add_noise(latents, noise, t)
        model_pred = unet(noisy, t, ehs).sample
        model_losses = (model_pred - noise).pow(2).mean(dim=[1, 2, 3])
        model_losses_w, model_losses_l = model_losses.chunk(2)
        model_diff = model_losses_w - model_losses_l
        with torch.no_grad():
            unet.disable_adapters()
            ref_pred = unet(noisy, t, ehs).sample.detach()
            unet.enable_adapters()
            ref_losses = (ref_pred - noise).pow(2).mean(dim=[1, 2, 3])
            ref_losses_w, ref_losses_l = ref_losses.chunk(2)
            ref_diff = ref_losses_w - ref_losses_l
        inside_term = -0.5 * BETA * (model_diff - ref_diff)
        loss = -1 * F.logsigmoid(inside_term).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    one()  # warm-up
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        one()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(f"{statistics.median(times):.6f} {peak_mb():.1f} {statistics.median(cpu):.6f}")


if __name__ == "__main__":
    a = sys.argv
    if len(a) == 3 and a[1] == "make":
        make(a[2])
    elif len(a) == 8 and a[1] == "step":
        step(a[2], a[3], int(a[4]), int(a[5]), int(a[6]), int(a[7]))
    else:
        sys.exit(__doc__)
