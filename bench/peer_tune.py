#!/usr/bin/env python3
"""Peer for bench/bench_tune.c: one Diffusion-DPO training step with a PEFT LoRA in PyTorch on
the CPU, as diffusers' train_diffusion_dpo.py takes it: the reference prediction with the
adapters disabled (no grad), the policy's forward, the DPO loss, backward, clip_grad_norm_(1.0),
AdamW.

  peer_tune.py UNET_DIR LATENT THREADS REPS
      UNET_DIR: a diffusers UNet folder (the tiny SD-shaped fixture of tests/models);
      one pair (a batch of 2 samples) at LATENT² latents, LoRA r 8, alpha 32 on to_q, to_k,
      to_v, to_out.0, ff.net.0.proj, ff.net.2; one warm-up step, then the median seconds of
      REPS steps and this process's peak RSS in MB.
"""
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from peft import LoraConfig

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]


def main():
    unet_dir, size, threads, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(unet_dir).train()
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=8, lora_alpha=32, target_modules=TARGETS))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-2, eps=1e-8)
    c = unet.config
    x = torch.randn(2, c.in_channels, size, size)
    noise = torch.randn(2, c.in_channels, size, size)
    t = torch.tensor([500, 500])
    ehs = torch.randn(2, 77, c.cross_attention_dim)
    beta = 2000.0

    def step():
        with torch.no_grad():
            unet.disable_adapters()
            ref = unet(x, t, ehs).sample
            unet.enable_adapters()
        pred = unet(x, t, ehs).sample
        e = (pred - noise).pow(2).mean(dim=[1, 2, 3])
        r = (ref - noise).pow(2).mean(dim=[1, 2, 3])
        inside = -0.5 * beta * ((e[0] - e[1]) - (r[0] - r[1]))
        loss = -F.logsigmoid(inside)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()

    step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(statistics.median(times), peak)


if __name__ == "__main__":
    main()
