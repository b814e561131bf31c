"""Make the VAE fixtures of tests/models/test_vae.c: tiny random diffusers AutoencoderKLs and
what diffusers computes with them.

Run from the repository root with the project's Python (torch, diffusers 0.42.1):
    python tests/models/make_vae_fixtures.py
It writes, for each config NAME in (vae_sd, vae_sdxl):
    tests/models/fixtures/NAME/config.json, diffusion_pytorch_model.safetensors
        a diffusers AutoencoderKL folder (vae_sdxl's weights stored in f16, as the fp16-fix
        VAE is published; the references below are computed from the same f16 values
        widened to f32);
    tests/models/fixtures/NAME_ref.safetensors
        latents (2,4,8,8), decoded = vae.decode(latents).sample (f32),
        image (1,3,16,16) in [-1,1], enc_mean, enc_logvar = vae.encode(image).latent_dist
        (logvar clamped as diffusers does),
        tiled_latents (1,4,14,12), tiled = the tiled decode (enable_tiling, the config's
        sample_size) and untiled = the plain decode of the same latents,
        pipe_latents (1,4,8,8) and pipe_uint8 (1,16,16,3): what a pipeline does at its end,
        vae.decode(latents / scaling_factor (+ shift_factor)) then VaeImageProcessor
        .postprocess(output_type="pil") bytes (uint8 HWC);
        tiled_image (1,3,28,24), tiled_mean/tiled_logvar from the tiled encode
        (enable_tiling) and untiled_mean/untiled_logvar from the plain one.
make test never runs this; the outputs are committed.
"""
import json
import os

import numpy as np
import torch
from diffusers import AutoencoderKL
from diffusers.image_processor import VaeImageProcessor
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

CONFIGS = {
    # SD 1.x/2.x-shaped: 2 levels, 1 resnet per level, mid-block attention.
    "vae_sd": dict(block_out_channels=[8, 16], layers_per_block=1, latent_channels=4,
                   norm_num_groups=4, sample_size=16, scaling_factor=0.18215,
                   down_block_types=["DownEncoderBlock2D"] * 2,
                   up_block_types=["UpDecoderBlock2D"] * 2, force_upcast=False),
    # SDXL-shaped: SDXL's scaling factor and force_upcast, f16 weights on disk; a shift
    # factor so the (latents / scale + shift) postprocess is exercised.
    "vae_sdxl": dict(block_out_channels=[16, 16], layers_per_block=1, latent_channels=4,
                     norm_num_groups=8, sample_size=16, scaling_factor=0.13025,
                     shift_factor=0.0625, down_block_types=["DownEncoderBlock2D"] * 2,
                     up_block_types=["UpDecoderBlock2D"] * 2, force_upcast=True),
}


def perturb(vae, seed):
    # Random init leaves GroupNorm at (1, 0) and the convs small: give every parameter
    # random values of a useful size so every tensor matters in the outputs.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def main():
    torch.set_grad_enabled(False)
    for k, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(1234 + k)
        vae = AutoencoderKL(**cfg).eval()
        perturb(vae, 99 + k)
        half = name == "vae_sdxl"
        if half:  # the values the C side reads: f16 on disk, widened
            vae = vae.half().float()
        out = os.path.join(ROOT, name)
        os.makedirs(out, exist_ok=True)
        if half:
            vae.half().save_pretrained(out, safe_serialization=True)
            vae.float()
        else:
            vae.save_pretrained(out, safe_serialization=True)

        g = torch.Generator().manual_seed(7 + k)
        ref = {}
        lat = torch.randn(2, 4, 8, 8, generator=g)
        ref["latents"] = lat
        ref["decoded"] = vae.decode(lat).sample
        img = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
        ref["image"] = img
        dist = vae.encode(img).latent_dist
        ref["enc_mean"] = dist.mean
        ref["enc_logvar"] = dist.logvar
        tl = torch.randn(1, 4, 14, 12, generator=g)
        ref["tiled_latents"] = tl
        ref["untiled"] = vae.decode(tl).sample
        vae.enable_tiling()
        ref["tiled"] = vae.decode(tl).sample
        vae.disable_tiling()
        pl = torch.randn(1, 4, 8, 8, generator=g)
        ref["pipe_latents"] = pl
        z = pl / vae.config.scaling_factor
        if vae.config.shift_factor is not None:
            z = z + vae.config.shift_factor
        dec = vae.decode(z).sample
        ref["pipe_decoded"] = dec
        pil = VaeImageProcessor(vae_scale_factor=2).postprocess(dec, output_type="pil")
        ref["pipe_uint8"] = torch.from_numpy(np.stack([np.asarray(p) for p in pil]).copy())
        ti = torch.rand(1, 3, 28, 24, generator=g) * 2 - 1
        ref["tiled_image"] = ti
        d0 = vae.encode(ti).latent_dist
        ref["untiled_mean"], ref["untiled_logvar"] = d0.mean, d0.logvar
        vae.enable_tiling()
        d1 = vae.encode(ti).latent_dist
        vae.disable_tiling()
        ref["tiled_mean"], ref["tiled_logvar"] = d1.mean, d1.logvar
        ref = {a: b.contiguous() for a, b in ref.items()}
        save_file(ref, os.path.join(ROOT, name + "_ref.safetensors"))
        print(name, {a: tuple(b.shape) for a, b in ref.items()})


if __name__ == "__main__":
    main()
