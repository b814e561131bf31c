"""Fixtures of tests/app/test_tune_latents.c: what diffusers' training scripts feed the VAE.

For noise images of several sizes (PNG, written here), torchvision's
Resize(S, bicubic) + CenterCrop(S) + ToTensor + Normalize([0.5], [0.5]) on the PIL image, and
the latents diffusers' AutoencoderKL (the tiny tests/models/fixtures/vae_sd) makes of them:
latent_dist.mean * scaling_factor.

Run from the repository root with the venv's python (torch, torchvision, diffusers):
    /work/wt/make/build/venv/bin/python tests/app/make_tune_data_fixtures.py
Writes tests/fixtures/tune_data/img_*.png and expected.safetensors.
"""
import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

OUT = "tests/fixtures/tune_data"
S = 16
# (width, height): wider, taller, exact, odd margins (half-even crop), upscaled
SIZES = [(37, 23), (20, 50), (16, 16), (64, 40), (16, 21), (12, 9)]

tf = transforms.Compose([
    transforms.Resize(S, interpolation=transforms.InterpolationMode.BICUBIC),
    transforms.CenterCrop(S),
    transforms.ToTensor(),
    transforms.Normalize([0.5], [0.5]),
])
vae = AutoencoderKL.from_pretrained("tests/models/fixtures/vae_sd").eval()
rng = np.random.default_rng(16)
out = {}
for i, (w, h) in enumerate(SIZES):
    px = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    path = f"{OUT}/img_{i}.png"
    Image.fromarray(px, "RGB").save(path)
    img = Image.open(path).convert("RGB")
    x = tf(img).unsqueeze(0)
    with torch.no_grad():
        lat = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    out[f"pixels_{i}"] = x.contiguous()
    out[f"latents_{i}"] = lat.contiguous()
save_file(out, f"{OUT}/expected.safetensors")
print("wrote", len(SIZES), "images")
