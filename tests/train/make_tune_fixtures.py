#!/usr/bin/env python3
"""Fixtures for tests/train/test_tune.c: one training step of each preference objective of
`easel tune` computed by PyTorch + diffusers + peft, on the tiny fixture UNets of
tests/models (unet_sd: SD-1.x-shaped, unet_sdxl: SDXL-shaped with text_time).

Run from the repository root with the project's venv (torch, diffusers 0.42.1, peft 0.21.2):
    /work/wt/make/build/venv/bin/python tests/train/make_tune_fixtures.py
Writes tests/train/fixtures/tune_step.safetensors. make test never runs this.

Per case CASE (a UNet, an objective, beta):
  - PEFT LoRA on the UNet: LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS), A as PEFT
    initialises it, B zero (case names ending in "_init": the policy equals the reference)
    or small random values;
  - B = 2 pairs: latents x0_w, x0_l, one noise and one timestep per pair shared by its two
    samples (train_diffusion_dpo.py's chunk(2)[0].repeat(2)), DDPMScheduler(scaled_linear,
    0.00085..0.012, 1000 steps).add_noise, target = the noise; conditioning ehs (random,
    given to both sides; adpo: the same image under ehs and ehs_neg);
  - the loss exactly as the reference code writes it: diffusers'
    examples/research_projects/diffusion_dpo/train_diffusion_dpo.py (dpo), the DSPO branch of
    Diffusion-SDPO's train.py (dspo: the SD form on unet_sd, the SDXL form on unet_sdxl,
    gradients through sigmoid(inside) included), and adpo = the dpo form over the context
    difference; the reference prediction with the adapters disabled (unet.disable_adapters());
  - backward, clip_grad_norm_(1.0), one torch.optim.AdamW(lr=1e-3, weight_decay=1e-2) step;
    the "_adafactor" cases: no clipping, one transformers.Adafactor(lr=1e-3, weight_decay=1e-2,
    clip_threshold=1.0, scale_parameter=False, relative_step=False) step (the DPO script's
    --use_adafactor).
Stored: CASE.x0_w, .x0_l, .noise, .t, .ehs, .ehs_neg, .text_embeds, .time_ids, .xt (the
noisy latents, 2B), .loss, .acc, .grad_norm, and per adapted module M: CASE.M.A0, .B0 (before),
.dA, .dB (autograd's, before clipping), .A1, .B1 (after the AdamW step); the "_dora" cases
(use_dora=True) also .m0, .dm, .m1 (PEFT's lora_magnitude_vector). vpred.x0, .noise, .t,
.xt, .v: add_noise and get_velocity of a v_prediction DDPMScheduler (the v target).
"""
import os

import torch
import torch.nn.functional as F
import transformers
from diffusers import DDPMScheduler, UNet2DConditionModel
from peft import LoraConfig
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "tests", "models", "fixtures")
OUT = os.path.join(ROOT, "tests", "train", "fixtures")
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]

CASES = [
    # name, model, objective, beta, B std (0: PEFT's zero init), seed. The "_init" cases
    # use the defaults' beta; the others a smaller one: once the policy differs from the
    # reference, inside = -beta/2 * (a difference of mean squared errors) turns float32's
    # rounding of those errors (torch's own) into beta/2 times larger loss differences, so a
    # default beta would compare rounding, not the objective, at 1e-4.
    ("dpo_init", "unet_sd", "dpo", 2000.0, 0.0, 1),
    ("dpo", "unet_sd", "dpo", 100.0, 0.02, 2),
    ("dspo", "unet_sd", "dspo", 0.001, 0.02, 3),
    ("adpo_init", "unet_sd", "adpo", 2000.0, 0.0, 4),
    ("adpo", "unet_sd", "adpo", 100.0, 0.02, 5),
    ("dpo_xl_init", "unet_sdxl", "dpo", 5000.0, 0.0, 9),
    ("dpo_xl", "unet_sdxl", "dpo", 100.0, 0.01, 6),
    ("dspo_xl", "unet_sdxl", "dspo", 20.0, 0.3, 7),
    ("dspo_xl_small", "unet_sdxl", "dspo", 20.0, 0.01, 8),
    # DoRA (use_dora=True): the magnitude m starts at W's row norms, its gradient too
    ("dpo_dora_init", "unet_sd", "dpo", 2000.0, 0.0, 10),
    ("dpo_dora", "unet_sd", "dpo", 100.0, 0.02, 11),
    ("dspo_dora", "unet_sd", "dspo", 0.001, 0.02, 12),
    ("adpo_dora", "unet_sd", "adpo", 100.0, 0.02, 13),
    # Adafactor as train_diffusion_dpo.py's --use_adafactor makes it (no gradient clipping)
    ("dpo_adafactor", "unet_sd", "dpo", 100.0, 0.02, 14),
    ("dspo_dora_adafactor", "unet_sd", "dspo", 0.001, 0.02, 15),
]


def run(name, model, objective, beta, bstd, seed, res):
    unet = UNet2DConditionModel.from_pretrained(os.path.join(MODELS, model)).eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    dora = "_dora" in name
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, use_dora=dora))
    loras = {}
    for mname, mod in unet.named_modules():
        if hasattr(mod, "lora_A") and "default" in mod.lora_A:
            if bstd > 0:
                with torch.no_grad():
                    mod.lora_B["default"].weight.normal_(0.0, bstd)
            ts = (mod.lora_A["default"].weight, mod.lora_B["default"].weight)
            if dora:
                ts = ts + (mod.lora_magnitude_vector["default"].weight,)
            loras[mname] = ts
    cfg = unet.config
    xl = cfg.addition_embed_type == "text_time"
    B, C, S, T = 2, cfg.in_channels, 8, 7
    D = cfg.cross_attention_dim
    x0_w = torch.randn(B, C, S, S) * 0.8
    x0_l = torch.randn(B, C, S, S) * 0.8
    noise = torch.randn(B, C, S, S)
    t = torch.randint(0, 1000, (B,))
    ehs = torch.randn(B, T, D)
    ehs_neg = torch.randn(B, T, D)
    kw = {}
    te = tid = None
    if xl:
        P = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        te = torch.randn(B, P)
        tid = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]).repeat(B, 1)
        kw["added_cond_kwargs"] = {"text_embeds": te.repeat(2, 1), "time_ids": tid.repeat(2, 1)}
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000)
    if objective == "adpo":
        latents = torch.cat([x0_w, x0_w])
        ehs2 = torch.cat([ehs, ehs_neg])
    else:
        latents = torch.cat([x0_w, x0_l])
        ehs2 = ehs.repeat(2, 1, 1)
    noise2 = noise.repeat(2, 1, 1, 1)
    t2 = t.repeat(2)
    noisy = sched.add_noise(latents, noise2, t2)
    target = noise2
    model_pred = unet(noisy, t2, ehs2, **kw).sample
    with torch.no_grad():
        unet.disable_adapters()
        ref_pred = unet(noisy, t2, ehs2, **kw).sample.detach()
        unet.enable_adapters()
    model_losses = (model_pred - target).pow(2).mean(dim=[1, 2, 3])
    model_losses_w, model_losses_l = model_losses.chunk(2)
    model_diff = model_losses_w - model_losses_l
    ref_losses = (ref_pred - target).pow(2).mean(dim=[1, 2, 3])
    ref_losses_w, ref_losses_l = ref_losses.chunk(2)
    ref_diff = ref_losses_w - ref_losses_l
    inside_term = -0.5 * beta * (model_diff - ref_diff)
    acc = (inside_term > 0).sum().float() / inside_term.size(0)
    if objective in ("dpo", "adpo"):
        loss = -1 * F.logsigmoid(inside_term).mean()
    else:
        pred2, _ = (model_pred - ref_pred).chunk(2)
        if xl:
            if pred2.pow(2).mean(dim=[1, 2, 3]).mean() >= 0.1:
                loss = ((1 - F.sigmoid(inside_term)[:, None, None, None]) * pred2).pow(2) \
                    .mean(dim=[1, 2, 3]).mean()
            else:
                loss = (1 - F.sigmoid(inside_term)[:, None, None, None]).pow(2) \
                    .mean(dim=[1, 2, 3]).mean()
        else:
            model_diff_w, _ = (model_pred - target).chunk(2)
            loss = (model_diff_w - beta * (1 - F.sigmoid(inside_term)[:, None, None, None])
                    * pred2).pow(2).mean(dim=[1, 2, 3]).mean()
    before = {m: tuple(x.detach().clone() for x in ts) for m, ts in loras.items()}
    loss.backward()
    grads = {m: tuple(x.grad.clone() for x in ts) for m, ts in loras.items()}
    params = [p for m in loras for p in loras[m]]
    if "_adafactor" in name:
        gn = torch.nn.utils.clip_grad_norm_(params, float("inf"))  # the norm, not clipped
        opt = transformers.Adafactor(params, lr=1e-3, weight_decay=1e-2, clip_threshold=1.0,
                                     scale_parameter=False, relative_step=False)
    else:
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-2,
                                eps=1e-8)
    opt.step()
    r = {"x0_w": x0_w, "x0_l": x0_l, "noise": noise, "t": t.float(), "ehs": ehs,
         "ehs_neg": ehs_neg, "xt": noisy, "loss": loss.detach().reshape(1),
         "acc": acc.reshape(1), "grad_norm": gn.reshape(1), "beta": torch.tensor([beta])}
    if xl:
        r["text_embeds"] = te
        r["time_ids"] = tid
    for m, ts in loras.items():
        for letter, x0, g, x1 in zip("ABm", before[m], grads[m], ts):
            r[m + "." + letter + "0"] = x0
            r[m + ".d" + letter] = g
            r[m + "." + letter + "1"] = x1.detach()
    for k, v in r.items():
        res[name + "." + k] = v.contiguous().float()
    print(f"{name}: loss {loss.item():.6g} acc {acc.item()} grad_norm {gn.item():.4g} "
          f"{len(loras)} adapters")


def velocity(res):
    """v-prediction's target: DDPMScheduler.get_velocity (v = sqrt(a)*eps - sqrt(1-a)*x0)."""
    torch.manual_seed(20)
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000, prediction_type="v_prediction")
    x0 = torch.randn(3, 4, 8, 8)
    noise = torch.randn(3, 4, 8, 8)
    t = torch.tensor([0, 417, 999])
    res["vpred.x0"], res["vpred.noise"], res["vpred.t"] = x0, noise, t.float()
    res["vpred.xt"] = sched.add_noise(x0, noise, t)
    res["vpred.v"] = sched.get_velocity(x0, noise, t)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    res = {}
    for c in CASES:
        run(*c, res)
    velocity(res)
    save_file(res, os.path.join(OUT, "tune_step.safetensors"))
