#!/usr/bin/env python3
"""Gradient fixtures for tests/models/test_unet_grad.c (issue 16: UNet backward and LoRA).

Run from the repository root, after make_unet_fixtures.py, with a Python that has torch,
diffusers (0.42.1) and peft (0.21.2):
    /work/wt/make/build/venv/bin/python tests/models/make_unet_grad_fixtures.py
For the tiny fixture UNets unet_sd and unet_sdxl, on their io.safetensors case "s" (batch 1,
8x8), adds PEFT LoRA adapters (LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS), A as
PEFT initialises it, then B set to small random values so that the gradients to A are not
zero), takes L = sum(out * R) for a fixed random R (the shape of the output) and writes
grad.safetensors next to the model: "R", "dx" (dL/d sample), and for every adapted module
(diffusers module name M) "M.A", "M.B" (the adapter's weights) and "M.dA", "M.dB" (torch
autograd's gradients). make test never runs this.

Adapters on every layer (issue 16, dora16): for unet_sd and unet_sdxl, LoraConfig(r=4,
lora_alpha=8, target_modules=ALL, use_dora=False / True) on every linear and conv layer PEFT's
suffix rule reaches with ALL, B (and DoRA's magnitude m, after PEFT's initialisation is saved
as "M.m0") set randomly so that every gradient is non-zero; writes adapters_lora.safetensors /
adapters_dora.safetensors with "R", "out" (the forward's output), "dx", and for every module M:
"M.A", "M.B", "M.dA", "M.dB" and for DoRA "M.m0", "M.m", "M.dm".
"""
import os

import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig
from safetensors.torch import load_file, save_file

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]


def make(name, seed):
    d = os.path.join(HERE, name)
    unet = UNet2DConditionModel.from_pretrained(d).eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    io = load_file(os.path.join(d, "io.safetensors"))
    x = io["s.sample"].clone().requires_grad_(True)
    kw = {}
    if "s.text_embeds" in io:
        kw["added_cond_kwargs"] = {"text_embeds": io["s.text_embeds"],
                                   "time_ids": io["s.time_ids"]}
    loras = {}
    for mname, mod in unet.named_modules():
        if hasattr(mod, "lora_A") and "default" in mod.lora_A:
            with torch.no_grad():
                mod.lora_B["default"].weight.normal_(0.0, 0.05)
            loras[mname] = (mod.lora_A["default"].weight, mod.lora_B["default"].weight)
    out = unet(x, io["s.timesteps"], encoder_hidden_states=io["s.ehs"], **kw).sample
    R = torch.randn_like(out)
    (out * R).sum().backward()
    res = {"R": R, "dx": x.grad}
    for mname, (A, B) in loras.items():
        res[mname + ".A"] = A.detach()
        res[mname + ".B"] = B.detach()
        res[mname + ".dA"] = A.grad
        res[mname + ".dB"] = B.grad
    save_file({k: v.contiguous() for k, v in res.items()}, os.path.join(d, "grad.safetensors"))
    print(f"{name}: {len(loras)} adapters, max |dx| {x.grad.abs().max():.4g}")


ALL = TARGETS + ["proj_in", "proj_out", "conv1", "conv2", "conv_shortcut", "time_emb_proj",
                 "downsamplers.0.conv", "upsamplers.0.conv", "conv_in", "conv_out", "linear_1",
                 "linear_2"]


def make_all(name, seed, dora):
    d = os.path.join(HERE, name)
    unet = UNet2DConditionModel.from_pretrained(d).eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=ALL, use_dora=dora))
    io = load_file(os.path.join(d, "io.safetensors"))
    x = io["s.sample"].clone().requires_grad_(True)
    kw = {}
    if "s.text_embeds" in io:
        kw["added_cond_kwargs"] = {"text_embeds": io["s.text_embeds"],
                                   "time_ids": io["s.time_ids"]}
    res, ads = {}, {}
    for mname, mod in unet.named_modules():
        if hasattr(mod, "lora_A") and "default" in mod.lora_A:
            A, B = mod.lora_A["default"].weight, mod.lora_B["default"].weight
            with torch.no_grad():
                B.normal_(0.0, 0.05)
            t = [A, B]
            if dora:
                m = mod.lora_magnitude_vector["default"].weight
                res[mname + ".m0"] = m.detach().clone()
                with torch.no_grad():
                    m.mul_(1.0 + 0.1 * torch.randn_like(m))
                t.append(m)
            ads[mname] = t
    out = unet(x, io["s.timesteps"], encoder_hidden_states=io["s.ehs"], **kw).sample
    R = torch.randn_like(out)
    (out * R).sum().backward()
    res.update({"R": R, "out": out.detach(), "dx": x.grad})
    for mname, t in ads.items():
        for key, p in zip(("A", "B", "m"), t):
            res[mname + "." + key] = p.detach()
            res[mname + ".d" + key] = p.grad
    fn = "adapters_dora.safetensors" if dora else "adapters_lora.safetensors"
    save_file({k: v.contiguous() for k, v in res.items()}, os.path.join(d, fn))
    print(f"{name} {fn}: {len(ads)} adapters, max |dx| {x.grad.abs().max():.4g}")


if __name__ == "__main__":
    make("unet_sd", 11)
    make("unet_sdxl", 12)
    for dora in (False, True):
        make_all("unet_sd", 13, dora)
        make_all("unet_sdxl", 14, dora)
