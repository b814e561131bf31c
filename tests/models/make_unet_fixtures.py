#!/usr/bin/env python3
"""Tiny random diffusers UNet2DConditionModel fixtures for tests/models/test_unet.c.

Run from the repository root with a Python that has torch and diffusers (0.42.1):
    /work/wt/make/build/venv/bin/python tests/models/make_unet_fixtures.py
Writes tests/models/fixtures/unet_sd/, unet_sdxl/ and unet_deep/ (three levels, other
field values): a diffusers folder (config.json,
diffusion_pytorch_model.safetensors, f32) and io.safetensors holding fixed inputs and
diffusers' output for them ("<case>.sample", ".timesteps", ".ehs", [".text_embeds",
".time_ids"], ".out"). Cases: "a" (batch 2, 16x16) and "r" (batch 1, 8x24: not square) for the
CPU backend, "s" (batch 1, 8x8) small enough for the emulated CUDA backend, "o" (batch 1, 9x7:
sides that are not multiples of 2^(levels-1), so diffusers' upsamplers take upsample_size).
make test never runs this.
"""
import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

SD = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(16, 32),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=24, attention_head_dim=4, norm_num_groups=8,
    flip_sin_to_cos=True, freq_shift=0,
)

SDXL = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(16, 32),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=[1, 2], attention_head_dim=[1, 2],
    cross_attention_dim=40, norm_num_groups=8, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=16 + 6 * 8,
    flip_sin_to_cos=True, freq_shift=0, upcast_attention=False,
)

# Three levels, per-level layers, the other sinusoid layout and a set time embedding width:
# fields the two model-shaped configs leave at one value.
DEEP = dict(
    sample_size=16, in_channels=4, out_channels=3, layers_per_block=[1, 2, 1],
    block_out_channels=(8, 16, 16),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    transformer_layers_per_block=2, attention_head_dim=[2, 4, 4],
    cross_attention_dim=12, norm_num_groups=4, norm_eps=1e-6, time_embedding_dim=48,
    flip_sin_to_cos=False, freq_shift=1,
)


def make(name, cfg, seed, text_dim):
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**cfg).eval()
    with torch.no_grad():  # move norms and biases off 1/0 so their use is checked
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out_dir = os.path.join(HERE, name)
    unet.save_pretrained(out_dir, safe_serialization=True)
    io = {}
    # "o" last, so that adding it left the earlier cases' draws as they were
    cases = {"a": (2, 16, 16, [999.0, 37.0]), "s": (1, 8, 8, [500.0]), "r": (1, 8, 24, [1.0]),
             "o": (1, 9, 7, [250.0])}
    for case, (B, hh, ww, ts) in cases.items():
        x = torch.randn(B, 4, hh, ww)
        t = torch.tensor(ts, dtype=torch.float32)
        ehs = torch.randn(B, 7, cfg["cross_attention_dim"])
        kw = {}
        if text_dim:
            te = torch.randn(B, text_dim)
            tid = torch.tensor([[hh * 8, ww * 8, 0, 0, hh * 8, ww * 8]] * B, dtype=torch.float32)
            kw["added_cond_kwargs"] = {"text_embeds": te, "time_ids": tid}
            io[case + ".text_embeds"] = te
            io[case + ".time_ids"] = tid
        with torch.no_grad():
            out = unet(x, t, encoder_hidden_states=ehs, **kw).sample
        io[case + ".sample"] = x
        io[case + ".timesteps"] = t
        io[case + ".ehs"] = ehs
        io[case + ".out"] = out
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out_dir, "io.safetensors"))
    n = sum(p.numel() for p in unet.parameters())
    print(f"{name}: {n} parameters")


if __name__ == "__main__":
    make("unet_sd", SD, 1, 0)
    make("unet_sdxl", SDXL, 2, 16)
    make("unet_deep", DEEP, 3, 0)
