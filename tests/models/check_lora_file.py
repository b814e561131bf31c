#!/usr/bin/env python3
"""Check, with diffusers + peft, the adapter files easel writes (src/models/lora_file.c,
`easel export peft|kohya|merged`). make test never runs this (no Python at test time); run it
by hand after changing the writers and record the result in doc/models.md ("Adapter files").

Run from the repository root with the project's venv (torch, diffusers 0.42.1, peft 0.21.2):

  bin/easel export peft --adapter tests/models/fixtures/sdfile/lora/dora.safetensors --out /tmp/d
  /work/wt/make/build/venv/bin/python tests/models/check_lora_file.py --check-written /tmp/d \
      --ref dora

--check-written PATH --ref NAME
    PATH: an adapter folder or file easel wrote from the reference adapter NAME:
      peft, dora, pattern  tests/models/fixtures/sdfile/lora/NAME.safetensors (diffusers'
                           save_lora_weights of a tiny SD UNet: LoRA, DoRA, alpha_pattern),
                           base tests/models/fixtures/sdfile/sd
      pipeline             tests/gen/fixtures/pipeline_sd_lora.safetensors, base
                           tests/gen/fixtures/pipeline_sd (the tiny SD pipeline)
    Checks that diffusers' load_lora_weights takes PATH (PEFT or kohya names) and that
      - for a folder, the LoRA scaling of every layer (alpha / r, from the metadata diffusers
        turns into its LoraConfig) is the reference's (a kohya file has one alpha: a layer's
        own is folded into its up matrix, so there only the fused weights count);
      - fuse_lora gives the UNet weights the reference gives (max abs difference);
      - for a folder, adapter_config.json is a LoraConfig PEFT loads, with the same r and alpha;
      - for `pipeline`: the image of tests/gen/fixtures/pipeline_cases.json's sd_lora case
        (the adapter at 0.7) is the one diffusers makes with its own file (PSNR).
--check-merged FILE
    FILE: `easel export merged --model tests/gen/fixtures/pipeline_sd --adapter
    tests/gen/fixtures/pipeline_sd_lora.safetensors --scale 0.7 --out FILE`. Loads it with
    diffusers' from_single_file and renders the sd_lora case without a LoRA: the image must be
    diffusers' own base + LoRA image.
Prints one JSON object; exits 1 when a check fails.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SDFILE = os.path.join(ROOT, "tests", "models", "fixtures", "sdfile")
GEN = os.path.join(ROOT, "tests", "gen", "fixtures")
REFS = {
    "peft": (os.path.join(SDFILE, "lora", "peft.safetensors"), os.path.join(SDFILE, "sd")),
    "dora": (os.path.join(SDFILE, "lora", "dora.safetensors"), os.path.join(SDFILE, "sd")),
    "pattern": (os.path.join(SDFILE, "lora", "pattern.safetensors"), os.path.join(SDFILE, "sd")),
    "pipeline": (os.path.join(GEN, "pipeline_sd_lora.safetensors"),
                 os.path.join(GEN, "pipeline_sd")),
}


def weight_file(path):
    if os.path.isdir(path):
        return os.path.join(path, "pytorch_lora_weights.safetensors")
    return path


def loaded_unet(folder, path):
    """The UNet of FOLDER with PATH loaded as diffusers' pipelines load a LoRA."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    sd, alphas, meta = StableDiffusionPipeline.lora_state_dict(weight_file(path),
                                                               return_lora_metadata=True)
    StableDiffusionPipeline.load_lora_into_unet(sd, network_alphas=alphas, unet=unet,
                                                metadata=meta)
    return unet


def scalings(unet):
    from peft.tuners.tuners_utils import BaseTunerLayer
    out = {}
    for name, m in unet.named_modules():
        if isinstance(m, BaseTunerLayer):
            (adapter,) = m.scaling.keys()  # the one adapter loaded
            out[name] = (float(m.scaling[adapter]), adapter in getattr(
                m, "lora_magnitude_vector", {}))
    return out


def fused(unet):
    before = {k: v.clone() for k, v in unet.state_dict().items() if ".lora_" not in k
              and "base_layer" not in k}
    unet.fuse_lora()
    unet.unload_lora()
    after = unet.state_dict()
    return {k: after[k].detach().clone() for k in after if k in before or ".lora_" not in k}


def render(pipe, lora=None):
    """tests/gen/fixtures/pipeline_cases.json's sd_lora case (euler, 4 steps, seed 42)."""
    from diffusers import EulerDiscreteScheduler
    pipe.scheduler = EulerDiscreteScheduler.from_config(dict(pipe.scheduler.config))
    if lora:
        pipe.load_lora_weights(weight_file(lora), adapter_name="a")
        pipe.set_adapters(["a"], adapter_weights=[0.7])
    with torch.no_grad():
        img = pipe(prompt="a red fox in the snow", negative_prompt="blurry, low quality",
                   num_inference_steps=4, guidance_scale=7.5, height=64, width=64,
                   generator=torch.Generator("cpu").manual_seed(42)).images[0]
    return np.asarray(img, dtype=np.uint8)


def psnr(a, b):
    se = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if se == 0 else 10 * math.log10(255.0 ** 2 / se)


def check_written(path, ref_name):
    ref, folder = REFS[ref_name]
    res, ok = {"path": path, "ref": ref_name}, True
    u_ref, u_new = loaded_unet(folder, ref), loaded_unet(folder, path)
    s_ref, s_new = scalings(u_ref), scalings(u_new)
    res["layers"] = len(s_new)
    res["same_layers"] = sorted(s_ref) == sorted(s_new)
    res["scaling_max_abs"] = max((abs(s_ref[k][0] - s_new[k][0]) for k in s_ref if k in s_new),
                                 default=math.inf)
    res["dora_layers"] = sum(1 for v in s_new.values() if v[1])
    res["dora_as_ref"] = all(s_ref[k][1] == s_new[k][1] for k in s_ref if k in s_new)
    ok &= res["same_layers"] and res["dora_as_ref"]
    # a PEFT folder carries each layer's alpha; a kohya file has one alpha, a layer's own
    # folded into its up matrix, so there only the fused weights below must agree
    if os.path.isdir(path):
        ok &= res["scaling_max_abs"] <= 1e-6
    f_ref, f_new = fused(u_ref), fused(u_new)
    res["fused_max_abs"] = max(float((f_ref[k] - f_new[k]).abs().max()) for k in f_ref)
    ok &= res["fused_max_abs"] <= 1e-6
    if os.path.isdir(path):
        from peft import LoraConfig
        cfg = LoraConfig.from_pretrained(path)
        meta = json.loads(__import__("safetensors").safe_open(
            weight_file(ref), "pt").metadata()["lora_adapter_metadata"])
        res["adapter_config"] = {"r": cfg.r, "lora_alpha": cfg.lora_alpha,
                                 "use_dora": cfg.use_dora}
        ok &= cfg.r == meta["unet.r"] and cfg.use_dora == meta["unet.use_dora"]
    if ref_name == "pipeline":
        from diffusers import StableDiffusionPipeline
        pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
        want = np.fromfile(os.path.join(GEN, "pipeline_sd_lora.rgb"), dtype=np.uint8)
        got = render(pipe, path)
        res["image_psnr_db_vs_diffusers_own_file"] = psnr(got.reshape(-1), want)
        ok &= res["image_psnr_db_vs_diffusers_own_file"] >= 50
    res["ok"] = bool(ok)
    return res


def check_merged(path):
    from diffusers import StableDiffusionPipeline
    folder = REFS["pipeline"][1]
    pipe = StableDiffusionPipeline.from_single_file(path, config=folder, safety_checker=None)
    want = np.fromfile(os.path.join(GEN, "pipeline_sd_lora.rgb"), dtype=np.uint8)
    got = render(pipe)
    db = psnr(got.reshape(-1), want)
    return {"path": path, "image_psnr_db_vs_base_plus_lora": db, "ok": db >= 50}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check-written")
    ap.add_argument("--ref", choices=sorted(REFS))
    ap.add_argument("--check-merged")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.check_written and a.ref:
        res = check_written(a.check_written, a.ref)
    elif a.check_merged:
        res = check_merged(a.check_merged)
    else:
        ap.error("give --check-written PATH --ref NAME, or --check-merged FILE")
    print(json.dumps(res, sort_keys=True))
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()
