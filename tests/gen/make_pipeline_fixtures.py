"""Fixtures for tests/gen/test_pipeline.c: tiny random SD-1.5-shaped and SDXL-shaped
pipelines saved as diffusers folders, and the 8-bit images diffusers' pipelines make with them.

Run with the project's venv (torch, diffusers 0.42.1, transformers 5.25):
    /work/wt/make/build/venv/bin/python tests/gen/make_pipeline_fixtures.py
(--pndm: only the sd_pndm case, SD 1.5's own PNDMScheduler, on the saved SD folder)
Writes tests/gen/fixtures/pipeline_sd/, pipeline_sdxl/ (the models) and pipeline_cases.json +
pipeline_*.rgb (raw uint8 HWC images, what StableDiffusion(XL)Pipeline(...).images[0] holds as
a PIL image). The text encoders and tokenizers are the sdtext fixtures' (make_sdtext_fixtures.py);
the UNets and VAEs are new random ones of the shapes the UNet and VAE fixtures use.
"""
import json
import os
import shutil

import numpy as np
import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler,
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
                       StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SDTEXT = os.path.join(HERE, "sdtext")

VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           layers_per_block=1, norm_num_groups=4, sample_size=32, scaling_factor=0.18215)
UNET_SD = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
               block_out_channels=(16, 32),
               down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
               cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
UNET_XL = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
               block_out_channels=(16, 32),
               down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
               up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
               transformer_layers_per_block=[1, 2], attention_head_dim=[1, 2],
               cross_attention_dim=64, norm_num_groups=8, use_linear_projection=True,
               addition_embed_type="text_time", addition_time_embed_dim=8,
               projection_class_embeddings_input_dim=24 + 6 * 8)
SCHED_SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                num_train_timesteps=1000, steps_offset=1, set_alpha_to_one=False,
                clip_sample=False)
SCHED_XL = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                num_train_timesteps=1000, steps_offset=1, interpolation_type="linear",
                timestep_spacing="leading", prediction_type="epsilon", use_karras_sigmas=False)

KINDS = {
    "euler": lambda c: EulerDiscreteScheduler.from_config(c),
    "euler_a": lambda c: EulerAncestralDiscreteScheduler.from_config(c),
    "ddim": lambda c: DDIMScheduler.from_config(c),
    "dpmpp_2m": lambda c: DPMSolverMultistepScheduler.from_config(c),
    "dpmpp_2m_karras": lambda c: DPMSolverMultistepScheduler.from_config(c, use_karras_sigmas=True),
}


def build(name, xl):
    torch.manual_seed(1234 if xl else 4321)
    src = os.path.join(SDTEXT, "sdxl" if xl else "sd")
    unet = UNet2DConditionModel(**(UNET_XL if xl else UNET_SD)).eval()
    vae = AutoencoderKL(**VAE).eval()
    sched = EulerDiscreteScheduler(**SCHED_XL) if xl else DDIMScheduler(**SCHED_SD)
    te = CLIPTextModel.from_pretrained(os.path.join(src, "text_encoder")).eval()
    tok = CLIPTokenizer.from_pretrained(os.path.join(src, "tokenizer"))
    if xl:
        te2 = CLIPTextModelWithProjection.from_pretrained(os.path.join(src, "text_encoder_2")).eval()
        tok2 = CLIPTokenizer.from_pretrained(os.path.join(src, "tokenizer_2"))
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2,
                                         tokenizer=tok, tokenizer_2=tok2, unet=unet,
                                         scheduler=sched, force_zeros_for_empty_prompt=True)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                       scheduler=sched, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    pipe.save_pretrained(out, safe_serialization=True)
    for t in (["tokenizer", "tokenizer_2"] if xl else ["tokenizer"]):  # the files sd_text reads
        shutil.rmtree(os.path.join(out, t))
        shutil.copytree(os.path.join(src, t), os.path.join(out, t))
    # the images come from the folder as saved, loaded as a user loads it
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    kw = {} if xl else dict(safety_checker=None, requires_safety_checker=False)
    pipe = cls.from_pretrained(out, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, case, model_sched):
    """As a diffusers user switches samplers: Kind.from_config(pipe.scheduler.config), the model's
    saved config (all its keys) read by the chosen class."""
    sched = case.get("scheduler")
    cfg = dict(model_sched.config)
    if case.get("trailing"):
        cfg["timestep_spacing"] = "trailing"
    pipe.scheduler = KINDS[sched](cfg) if sched else type(model_sched).from_config(cfg)
    kw = {}
    if "latents" in case:
        g = torch.Generator("cpu").manual_seed(case["latents"])
        lat = torch.randn(1, 4, case["h"] // 8, case["w"] // 8, generator=g)
        lat.numpy().astype("<f4").tofile(os.path.join(HERE, "pipeline_" + case["name"] + ".lat"))
        kw["latents"] = lat
    with torch.no_grad():
        img = pipe(prompt=case["prompt"], negative_prompt=case.get("negative"),
                   num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                   height=case["h"], width=case["w"],
                   generator=torch.Generator("cpu").manual_seed(case["seed"]), **kw).images[0]
    a = np.asarray(img, dtype=np.uint8)
    assert a.shape == (case["h"], case["w"], 3)
    a.tofile(os.path.join(HERE, "pipeline_" + case["name"] + ".rgb"))


def make_lora(pipe, path):
    """A PEFT LoRA of the SD UNet (attention and ResNet convs, rank 4, alpha 8, random A and B)
    saved as diffusers' training scripts save one."""
    from peft import LoraConfig, get_peft_model_state_dict
    unet = UNet2DConditionModel.from_config(pipe.unet.config).eval()
    unet.load_state_dict(pipe.unet.state_dict())
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0",
                                                        "conv1", "conv2"])
    unet.add_adapter(cfg)
    g = torch.Generator().manual_seed(77)
    with torch.no_grad():
        for n, p in sorted(unet.named_parameters()):
            if "lora_A" in n or "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    meta = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.to_dict().items()}
    StableDiffusionPipeline.save_lora_weights(os.path.dirname(path),
                                              unet_lora_layers=get_peft_model_state_dict(unet),
                                              unet_lora_adapter_metadata=meta,
                                              weight_name=os.path.basename(path))


def main():
    torch.set_num_threads(1)
    P, N = "a red fox in the snow", "blurry, low quality"
    sd_cases = [dict(name="sd_" + k, scheduler=k, prompt=P, negative=N, steps=4, guidance=7.5,
                     w=64, h=64, seed=42) for k in KINDS]
    sd_cases += [
        dict(name="sd_default", prompt=P, negative=N, steps=4, guidance=5.0, w=64, h=48, seed=7),
        dict(name="sd_turbo", scheduler="euler_a", trailing=1, prompt=P, steps=1, guidance=0.0,
             w=64, h=64, seed=3),
        dict(name="sd_latents", scheduler="euler", prompt=P, steps=3, guidance=7.5, w=64, h=64,
             seed=5, latents=99),
        # 9x7 latents: not multiples of the UNet's 2^(levels-1) (diffusers' upsample_size)
        dict(name="sd_odd", scheduler="euler", prompt=P, negative=N, steps=3, guidance=7.5,
             w=72, h=56, seed=9),
    ]
    xl_cases = [dict(name="sdxl_" + k, scheduler=k, prompt=P, negative=N, steps=4, guidance=7.5,
                     w=64, h=64, seed=11) for k in ("euler", "euler_a", "dpmpp_2m")]
    xl_cases += [dict(name="sdxl_noneg", scheduler="euler", prompt=P, steps=3, guidance=6.0,
                      w=48, h=64, seed=1),
                 dict(name="sdxl_odd", scheduler="euler", prompt=P, negative=N, steps=3,
                      guidance=7.5, w=56, h=72, seed=4)]
    for name, xl, cases in (("pipeline_sd", 0, sd_cases), ("pipeline_sdxl", 1, xl_cases)):
        pipe = build(name, xl)
        model_sched = pipe.scheduler
        for c in cases:
            c["model"] = name
            run(pipe, c, model_sched)
        if not xl:
            # the image with a LoRA at scale 0.7, as load_lora_weights + set_adapters make it
            lp = os.path.join(HERE, "pipeline_sd_lora.safetensors")
            make_lora(pipe, lp)
            pipe.load_lora_weights(lp, adapter_name="a")
            pipe.set_adapters(["a"], adapter_weights=[0.7])
            c = dict(name="sd_lora", model=name, scheduler="euler", prompt=P, negative=N,
                     steps=4, guidance=7.5, w=64, h=64, seed=42,
                     lora="pipeline_sd_lora.safetensors", lora_scale=0.7)
            run(pipe, c, model_sched)
            cases.append(c)
            pipe.unload_lora_weights()
            # a text-encoder LoRA (q/v only; the tests use the --te-lora files instead)
            from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
            te = CLIPTextModel.from_pretrained(os.path.join(HERE, name, "text_encoder"))
            te = inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                                    target_modules=["q_proj", "v_proj"]), te)
            StableDiffusionPipeline.save_lora_weights(
                HERE, text_encoder_lora_layers=get_peft_model_state_dict(te),
                weight_name="pipeline_sd_te_lora.safetensors")
    with open(os.path.join(HERE, "pipeline_cases.json"), "w") as f:
        json.dump(sd_cases + xl_cases, f, indent=1)


# ---- --te-lora: LoRAs with text-encoder adapters (issue 15, sf15) ----------------------------

def rand_lora(model, targets, r, alpha, seed):
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets)
    if isinstance(model, UNet2DConditionModel):
        model.add_adapter(cfg)
    else:
        model = inject_adapter_in_model(cfg, model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in sorted(model.named_parameters()):
            if "lora_A" in n or "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    sd = {k.replace(".default", ""): v for k, v in get_peft_model_state_dict(model).items()}
    meta = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.to_dict().items()}
    return sd, meta


def to_kohya(peft, prefixes):
    """PEFT names (unet./text_encoder./text_encoder_2. + module + .lora_A/B) as kohya's
    (lora_unet_/lora_te1_/lora_te2_ + module with '_' + .lora_down/.lora_up, .alpha tensors)."""
    from safetensors.torch import load_file
    out = {}
    for k, v in peft.items():
        comp, rest = k.split(".", 1)
        mod, tail = rest.split(".lora_")
        if comp != "unet" and not mod.startswith("text_model."):
            mod = "text_model." + mod
        base = prefixes[comp] + mod.replace(".", "_")
        out[base + {"A.weight": ".lora_down.weight", "B.weight": ".lora_up.weight"}[tail]] = v
        out[base + ".alpha"] = torch.tensor(float(prefixes["alpha_" + comp]))
    return out


def make_te_loras():
    """PEFT and kohya LoRA files with UNet and text-encoder adapters (SD: text_encoder; SDXL:
    both) and the images diffusers' load_lora_weights gives with them at scale 0.8."""
    from safetensors.torch import load_file, save_file
    torch.set_num_threads(1)
    P, N = "a red fox in the snow", "blurry, low quality"
    te_t = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
    cases = []
    for name, xl in (("pipeline_sd", 0), ("pipeline_sdxl", 1)):
        cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
        kw = {} if xl else dict(safety_checker=None, requires_safety_checker=False)
        pipe = cls.from_pretrained(os.path.join(HERE, name), **kw)
        pipe.set_progress_bar_config(disable=True)
        unet = UNet2DConditionModel.from_config(pipe.unet.config)
        unet.load_state_dict(pipe.unet.state_dict())
        u, um = rand_lora(unet, ["to_q", "to_k", "to_v", "to_out.0"], 4, 8, 21)
        t1, t1m = rand_lora(CLIPTextModel.from_pretrained(os.path.join(HERE, name,
                                                                       "text_encoder")),
                            te_t, 4, 6, 22)
        kwl = dict(unet_lora_layers=u, text_encoder_lora_layers=t1,
                   unet_lora_adapter_metadata=um, text_encoder_lora_adapter_metadata=t1m)
        alphas = {"alpha_unet": 8, "alpha_text_encoder": 6, "unet": "lora_unet_",
                  "text_encoder": "lora_te1_" if xl else "lora_te_"}
        if xl:
            t2, t2m = rand_lora(CLIPTextModelWithProjection.from_pretrained(
                os.path.join(HERE, name, "text_encoder_2")), te_t, 2, 4, 23)
            kwl.update(text_encoder_2_lora_layers=t2, text_encoder_2_lora_adapter_metadata=t2m)
            alphas.update(alpha_text_encoder_2=4, text_encoder_2="lora_te2_")
        short = "sdxl" if xl else "sd"
        peft_file = f"{short}_te_lora_peft.safetensors"
        cls.save_lora_weights(HERE, weight_name=peft_file, **kwl)
        koh = to_kohya(load_file(os.path.join(HERE, peft_file)), alphas)
        koh_file = f"{short}_te_lora_kohya.safetensors"
        save_file(koh, os.path.join(HERE, koh_file))
        for f in (peft_file, koh_file):
            pipe.load_lora_weights(os.path.join(HERE, f), adapter_name="a")
            pipe.set_adapters(["a"], adapter_weights=[0.8])
            c = dict(name=f[:-len(".safetensors")], model=name, scheduler="euler", prompt=P,
                     negative=N, steps=4, guidance=7.5, w=64, h=64, seed=11 if xl else 42,
                     lora=f, lora_scale=0.8)
            pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
            with torch.no_grad():
                img = pipe(prompt=P, negative_prompt=N, num_inference_steps=4,
                           guidance_scale=7.5, height=64, width=64,
                           generator=torch.Generator("cpu").manual_seed(c["seed"])).images[0]
            np.asarray(img, dtype=np.uint8).tofile(os.path.join(HERE, "pipeline_" + c["name"]
                                                                + ".rgb"))
            pipe.unload_lora_weights()
            cases.append(c)
    with open(os.path.join(HERE, "te_lora_cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print("text-encoder LoRA cases:", [c["name"] for c in cases])


# ---- the model's own PNDMScheduler (SD 1.5's scheduler folder; issue 15, pndm15) -------------

SCHED_SD15 = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
              "beta_schedule": "scaled_linear", "beta_start": 0.00085,
              "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
              "steps_offset": 1, "trained_betas": None, "clip_sample": False}


def make_pndm():
    """The SD fixture with SD 1.5's scheduler_config.json (PNDM, PLMS): the config
    (pipeline_sd_pndm.scheduler_config.json, which the test puts into a copy of the folder) and
    the image StableDiffusionPipeline makes with it, added to pipeline_cases.json."""
    from diffusers import PNDMScheduler
    torch.set_num_threads(1)
    name = "pipeline_sd"
    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(HERE, name), safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with open(os.path.join(HERE, "pipeline_sd_pndm.scheduler_config.json"), "w") as f:
        json.dump(SCHED_SD15, f, indent=2)
        f.write("\n")
    pndm = PNDMScheduler.from_config(SCHED_SD15)
    # 4 steps: 5 UNet calls, every one of PLMS's warm-up formulas and the 4th-order one
    c = dict(name="sd_pndm", prompt="a red fox in the snow", negative="blurry, low quality",
             steps=4, guidance=7.5, w=64, h=64, seed=42, model=name,
             scheduler_config="pipeline_sd_pndm.scheduler_config.json")
    run(pipe, c, pndm)
    path = os.path.join(HERE, "pipeline_cases.json")
    with open(path) as f:
        cases = [x for x in json.load(f) if x["name"] != c["name"]]
    with open(path, "w") as f:
        json.dump(cases + [c], f, indent=1)
    print("pndm case:", c["name"])


if __name__ == "__main__":
    import sys
    if "--te-lora" in sys.argv[1:]:
        make_te_loras()
    elif "--pndm" in sys.argv[1:]:
        make_pndm()
    else:
        main()
        make_pndm()
