#!/usr/bin/env python3
"""Make the fixtures of tests/models/test_sd_weights_single.c and test_sd_weights_lora.c.

Run from the repository root with the project's venv (torch, diffusers 0.42.1, transformers,
peft):  build/venv/bin/python tests/models/make_single_fixtures.py

Writes tests/models/fixtures/sdfile/:
  sd/   a tiny random SD-1.x-shaped diffusers folder (unet/, vae/, text_encoder/)
  sd2/  a tiny random SD-2-shaped one (linear projections; OpenCLIP text encoder in the file)
  sdxl/ a tiny random SDXL-shaped one (unet/, vae/, text_encoder/, text_encoder_2/)
  sd.safetensors, sd2.safetensors, sdxl.safetensors: the same weights as single-file
      checkpoints (SGM / original names). diffusers has no single-file export, so this script
      writes them with its own map (written apart from easel's C table), and then checks that
      diffusers' from_single_file loads every component of them back to exactly the folder's
      weights: the result goes to single_check.json.
  lora/ a PEFT LoRA of the tiny SD UNet (diffusers' save_lora_weights, alpha in its metadata),
      the same adapters with kohya names (diffusers-style and SGM block names, `.alpha`
      tensors), a DoRA one (PEFT use_dora), each with the UNet weights diffusers'
      lora_state_dict + load_lora_into_unet + fuse_lora give (*_merged); a text-encoder LoRA
      (PEFT and kohya lora_te_ names) with peft's merged weights (te_merged).
easel's sd_weights_write_single of each folder must give the bytes of the single file here
(test_sd_weights_single.c), so the files easel writes are the ones from_single_file loaded.

With --pipeline it writes instead tests/gen/fixtures/single/ (test_pipeline_single.c): tiny
random SD 1.x-, SD 2.x- and SDXL-shaped diffusers folders whose configs are what easel derives
for a single file (the family's published settings where shapes cannot tell: SD 1.x's 8
heads, 64-wide heads for SD 2.x / SDXL and the text encoders, the families' scheduler
configs), the same weights as single files (sd1.safetensors, sd2.safetensors with OpenCLIP's
unused last text layer as the released SD 2 files have it, sdxl.safetensors), and the 8-bit
images diffusers' pipelines make from the folders (cases.json, *.rgb).
"""
import json
import os

import torch
from safetensors.torch import load_file, save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "sdfile")


def rnd_(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


# ---- tiny models ------------------------------------------------------------------------------

def tiny_unet(xl, sd2=False):
    from diffusers import UNet2DConditionModel
    if sd2:
        cfg = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
                   block_out_channels=(8, 16), norm_num_groups=4,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                   attention_head_dim=(2, 4), cross_attention_dim=16,
                   use_linear_projection=True)
    elif xl:
        cfg = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
                   block_out_channels=(8, 16, 16), norm_num_groups=4,
                   down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                   transformer_layers_per_block=(1, 1, 2), attention_head_dim=(2, 4, 4),
                   cross_attention_dim=24, use_linear_projection=True,
                   addition_embed_type="text_time", addition_time_embed_dim=4,
                   projection_class_embeddings_input_dim=16 + 6 * 4)
    else:
        cfg = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
                   block_out_channels=(8, 16), norm_num_groups=4,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                   attention_head_dim=2, cross_attention_dim=16)
    return UNet2DConditionModel(**cfg)


def tiny_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16)


def tiny_clip(width, layers, proj=None, act="quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    c = CLIPTextConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                       num_attention_heads=2, vocab_size=64, max_position_embeddings=16,
                       projection_dim=proj or width, hidden_act=act, eos_token_id=2,
                       bos_token_id=1, pad_token_id=1)
    return CLIPTextModelWithProjection(c) if proj else CLIPTextModel(c)


# ---- diffusers -> single-file names (this script's own map) -----------------------------------

def hf_te_sd(model):
    """The text encoder's state dict with transformers' `text_model.` naming."""
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        if k.startswith("text_model.") or k == "text_projection.weight":
            out[k] = v
        else:
            out["text_model." + k] = v
    return out


def unet_to_sgm(sd, n_levels, lpb):
    res = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
           ("out_layers.0", "norm2"), ("out_layers.3", "conv2"),
           ("skip_connection", "conv_shortcut")]
    pairs = [("time_embed.0.", "time_embedding.linear_1."),
             ("time_embed.2.", "time_embedding.linear_2."),
             ("label_emb.0.0.", "add_embedding.linear_1."),
             ("label_emb.0.2.", "add_embedding.linear_2."),
             ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."),
             ("out.2.", "conv_out.")]
    for i in range(n_levels):
        for j in range(lpb):
            pairs.append((f"input_blocks.{(lpb + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            pairs.append((f"input_blocks.{(lpb + 1) * i + j + 1}.1.",
                          f"down_blocks.{i}.attentions.{j}."))
        if i < n_levels - 1:
            pairs.append((f"input_blocks.{(lpb + 1) * (i + 1)}.0.op.",
                          f"down_blocks.{i}.downsamplers.0.conv."))
        for j in range(lpb + 1):
            pairs.append((f"output_blocks.{(lpb + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            pairs.append((f"output_blocks.{(lpb + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < n_levels - 1:
            has_attn = any(k.startswith(f"up_blocks.{i}.attentions.") for k in sd)
            pairs.append((f"output_blocks.{(lpb + 1) * i + lpb}.{2 if has_attn else 1}.conv.",
                          f"up_blocks.{i}.upsamplers.0.conv."))
    pairs += [("middle_block.0.", "mid_block.resnets.0."), ("middle_block.1.", "mid_block.attentions.0."),
              ("middle_block.2.", "mid_block.resnets.1.")]
    out = {}
    for k, v in sd.items():
        nk = None
        for sgm, dif in pairs:
            if k.startswith(dif):
                rest = k[len(dif):]
                if ".resnets." in dif or dif.startswith("mid_block.resnets"):
                    for a, b in res:
                        if rest.startswith(b + "."):
                            rest = a + rest[len(b):]
                nk = sgm + rest
                break
        assert nk, k
        out["model.diffusion_model." + nk] = v
    return out


def vae_to_sgm(sd, n_levels):
    out = {}
    for k, v in sd.items():
        nk = k
        for side in ("encoder", "decoder"):
            nk = nk.replace(f"{side}.mid_block.resnets.0.", f"{side}.mid.block_1.")
            nk = nk.replace(f"{side}.mid_block.resnets.1.", f"{side}.mid.block_2.")
            nk = nk.replace(f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.")
            nk = nk.replace(f"{side}.conv_norm_out.", f"{side}.norm_out.")
        for i in range(n_levels):
            nk = nk.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            nk = nk.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            r = n_levels - 1 - i
            nk = nk.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{r}.block.")
            nk = nk.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{r}.upsample.")
        nk = nk.replace(".conv_shortcut.", ".nin_shortcut.")
        if ".mid.attn_1." in nk:
            for a, b in (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."),
                         ("to_v.", "v."), ("to_out.0.", "proj_out.")):
                nk = nk.replace(".mid.attn_1." + a, ".mid.attn_1." + b)
            if nk.endswith("weight") and v.dim() == 2:
                v = v[:, :, None, None]
        out["first_stage_model." + nk] = v
    return out


def clip_to_openclip(sd, prefix):
    out = {}
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers.")})
    t = "text_model."
    out[prefix + "token_embedding.weight"] = sd[t + "embeddings.token_embedding.weight"]
    out[prefix + "positional_embedding"] = sd[t + "embeddings.position_embedding.weight"]
    out[prefix + "ln_final.weight"] = sd[t + "final_layer_norm.weight"]
    out[prefix + "ln_final.bias"] = sd[t + "final_layer_norm.bias"]
    if "text_projection.weight" in sd:
        out[prefix + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    for i in layers:
        s = f"{t}encoder.layers.{i}."
        d = f"{prefix}transformer.resblocks.{i}."
        for a, b in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                     ("mlp.fc2", "mlp.c_proj"), ("self_attn.out_proj", "attn.out_proj")):
            out[d + b + ".weight"] = sd[s + a + ".weight"]
            out[d + b + ".bias"] = sd[s + a + ".bias"]
        for wb in ("weight", "bias"):
            out[d + "attn.in_proj_" + wb] = torch.cat(
                [sd[s + f"self_attn.{p}_proj.{wb}"] for p in "qkv"], 0)
    return out


# ---- from_single_file check -------------------------------------------------------------------

def compare(a, b, what):
    bad = []
    for k, v in a.items():
        if k not in b:
            bad.append(f"{what}: {k} missing")
        elif tuple(b[k].shape) != tuple(v.shape) or not torch.equal(b[k].float(), v.float()):
            bad.append(f"{what}: {k} differs")
    return bad


def check_single(path, folder, xl):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel, CLIPTextModelWithProjection
    bad = []
    ck = load_file(path)
    u = UNet2DConditionModel.from_single_file(path, config=folder, subfolder="unet")
    bad += compare(load_file(f"{folder}/unet/diffusion_pytorch_model.safetensors"),
                   u.state_dict(), "unet")
    v = AutoencoderKL.from_single_file(path, config=folder, subfolder="vae")
    bad += compare(load_file(f"{folder}/vae/diffusion_pytorch_model.safetensors"),
                   v.state_dict(), "vae")
    te = create_diffusers_clip_model_from_ldm(CLIPTextModel, ck, subfolder="text_encoder",
                                              config=folder, local_files_only=True)
    bad += compare(load_file(f"{folder}/text_encoder/model.safetensors"), te.state_dict(),
                   "text_encoder")
    if xl:
        te2 = create_diffusers_clip_model_from_ldm(CLIPTextModelWithProjection, ck,
                                                   subfolder="text_encoder_2", config=folder,
                                                   local_files_only=True)
        bad += compare(load_file(f"{folder}/text_encoder_2/model.safetensors"),
                       te2.state_dict(), "text_encoder_2")
    return bad


# ---- LoRA -------------------------------------------------------------------------------------

def kohya_name(peft_key, n_levels, lpb):
    """unet.down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.lora_A.weight ->
    lora_unet_input_blocks_2_1_transformer_blocks_0_attn1_to_q.lora_down.weight (SGM names)."""
    k = peft_key[len("unet."):]
    mod, tail = k.split(".lora_")
    kind = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}[tail]
    sgm = unet_to_sgm({mod + ".weight": torch.zeros(1)}, n_levels, lpb)
    sgm_mod = next(iter(sgm))[len("model.diffusion_model."):-len(".weight")]
    return "lora_unet_" + sgm_mod.replace(".", "_") + "." + kind, "lora_unet_" + sgm_mod.replace(".", "_")


def diffusers_merged(folder, path):
    """The UNet weights after diffusers' own LoRA loading (lora_state_dict, load_lora_into_unet)
    and fuse_lora: only the tensors the LoRA changed."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    sd, alphas, meta = StableDiffusionPipeline.lora_state_dict(path, return_lora_metadata=True)
    StableDiffusionPipeline.load_lora_into_unet(sd, network_alphas=alphas, unet=unet,
                                                metadata=meta)
    unet.fuse_lora()
    unet.unload_lora()
    after = unet.state_dict()
    return {k: v.detach().clone().contiguous() for k, v in after.items()
            if k in before and not torch.equal(before[k], v)}


def make_lora(folder, out):
    from diffusers import UNet2DConditionModel, StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict
    os.makedirs(out, exist_ok=True)
    targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "conv1", "conv2", "time_emb_proj"]
    report = {}
    for name, dora, rank, alpha in (("peft", False, 4, 8), ("dora", True, 2, 2),
                                    ("pattern", False, 4, 8)):
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
        # per-layer alphas (PEFT's alpha_pattern, a regex matched at the end of the name)
        pattern = {"attn1.to_q": 2, r"resnets\.0\.conv1": 16} if name == "pattern" else {}
        cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, use_dora=dora,
                         init_lora_weights=True, alpha_pattern=pattern)
        unet.add_adapter(cfg)
        g = torch.Generator().manual_seed({"peft": 5, "dora": 7, "pattern": 11}[name])
        with torch.no_grad():
            for n, p in sorted(unet.named_parameters()):
                if "lora_B" in n or "lora_A" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                if "lora_magnitude_vector" in n:
                    p.mul_(1 + 0.1 * torch.rand(p.shape, generator=g))
        sd = get_peft_model_state_dict(unet)
        meta = cfg.to_dict()
        meta = {k: (sorted(v) if isinstance(v, set) else v) for k, v in meta.items()}
        StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=sd,
                                                  unet_lora_adapter_metadata=meta,
                                                  weight_name=f"{name}.safetensors")
        files = [name]
        if name == "peft":
            # the kohya file: SGM block names, lora_down/lora_up, alpha as a tensor
            lora = load_file(f"{out}/{name}.safetensors")
            koh, sgm = {}, {}
            for k, v in lora.items():
                kn, base = kohya_name(k, 2, 2)
                sgm[kn] = v
                sgm[base + ".alpha"] = torch.tensor(float(alpha))
                mod, tail = k[len("unet."):].split(".lora_")
                base = "lora_unet_" + mod.replace(".", "_")
                koh[base + {"A.weight": ".lora_down.weight", "B.weight": ".lora_up.weight"}[tail]] = v
                koh[base + ".alpha"] = torch.tensor(float(alpha))
            # diffusers-style kohya names (what diffusers' SD loader converts) ...
            save_file(koh, f"{out}/kohya.safetensors", metadata={"ss_network_dim": str(rank)})
            # ... and SGM block names (SDXL-era kohya files): the same adapters, so the C test
            # checks them against the same merged weights
            save_file(sgm, f"{out}/kohya_sgm.safetensors", metadata={"ss_network_dim": str(rank)})
            files.append("kohya")
        for f in files:
            merged = diffusers_merged(folder, f"{out}/{f}.safetensors")
            save_file(merged, f"{out}/{f}_merged.safetensors")
            report[f] = len(merged)
            if f == "kohya":
                ref = load_file(f"{out}/peft_merged.safetensors")
                report["kohya_vs_peft_max_abs"] = max(
                    float((ref[k] - merged[k]).abs().max()) for k in ref)
    # a text-encoder LoRA (PEFT names, and kohya lora_te_ names), merged by peft
    from transformers import CLIPTextModel
    from peft.tuners.tuners_utils import BaseTunerLayer
    te = CLIPTextModel.from_pretrained(f"{folder}/text_encoder")
    cfg = LoraConfig(r=4, lora_alpha=6, target_modules=["q_proj", "k_proj", "v_proj",
                                                         "out_proj", "fc1", "fc2"])
    from peft import inject_adapter_in_model
    te = inject_adapter_in_model(cfg, te)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for n, p in sorted(te.named_parameters()):
            if "lora_B" in n or "lora_A" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    sd = {k.replace(".default", ""): v for k, v in te.state_dict().items() if ".lora_" in k}
    meta = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.to_dict().items()}
    StableDiffusionPipeline.save_lora_weights(out, text_encoder_lora_layers=sd,
                                              text_encoder_lora_adapter_metadata=meta,
                                              weight_name="te.safetensors")
    koh = {}
    for k, v in load_file(f"{out}/te.safetensors").items():
        mod, tail = k[len("text_encoder."):].split(".lora_")
        if not mod.startswith("text_model."):
            mod = "text_model." + mod
        base = "lora_te_" + mod.replace(".", "_")
        koh[base + {"A.weight": ".lora_down.weight", "B.weight": ".lora_up.weight"}[tail]] = v
        koh[base + ".alpha"] = torch.tensor(6.0)
    save_file(koh, f"{out}/te_kohya.safetensors")
    merged = {}
    for mn, m in te.named_modules():
        if isinstance(m, BaseTunerLayer):
            m.merge()
            name = mn + ".weight"
            merged[name if name.startswith("text_model.") else "text_model." + name] = \
                m.get_base_layer().weight.detach().clone().contiguous()
    save_file(merged, f"{out}/te_merged.safetensors")
    report["te"] = len(merged)
    with open(f"{out}/merged.json", "w") as fh:
        json.dump(report, fh, indent=1, sort_keys=True)
    print("lora merged tensors", report)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    res = {}
    for name, xl, seed in (("sd", False, 1), ("sdxl", True, 2)):
        folder = f"{OUT}/{name}"
        unet = rnd_(tiny_unet(xl), seed)
        vae = rnd_(tiny_vae(), seed + 10)
        te = rnd_(tiny_clip(16 if not xl else 8, 2), seed + 20)
        unet.save_pretrained(f"{folder}/unet")
        vae.save_pretrained(f"{folder}/vae")
        te.save_pretrained(f"{folder}/text_encoder")
        single = {}
        single.update(unet_to_sgm(unet.state_dict(), 2 if not xl else 3, 2))
        single.update(vae_to_sgm(vae.state_dict(), 2))
        if xl:
            te2 = rnd_(tiny_clip(16, 2, proj=16, act="gelu"), seed + 30)
            te2.save_pretrained(f"{folder}/text_encoder_2")
            single.update({"conditioner.embedders.0.transformer." + k: v
                           for k, v in hf_te_sd(te).items()})
            single.update(clip_to_openclip(hf_te_sd(te2), "conditioner.embedders.1.model."))
        else:
            single.update({"cond_stage_model.transformer." + k: v
                           for k, v in hf_te_sd(te).items()})
        single = {k: v.contiguous() for k, v in single.items()}
        save_file(single, f"{OUT}/{name}.safetensors")
        bad = check_single(f"{OUT}/{name}.safetensors", folder, xl)
        res[name] = {"from_single_file_equal": not bad, "problems": bad[:20]}
    # SD 2: linear projections in the UNet, the OpenCLIP text encoder under
    # cond_stage_model.model. (no projection used)
    folder = f"{OUT}/sd2"
    unet = rnd_(tiny_unet(False, sd2=True), 40)
    vae = rnd_(tiny_vae(), 41)
    te = rnd_(tiny_clip(16, 3, act="gelu"), 42)
    unet.save_pretrained(f"{folder}/unet")
    vae.save_pretrained(f"{folder}/vae")
    te.save_pretrained(f"{folder}/text_encoder")
    single = {}
    single.update(unet_to_sgm(unet.state_dict(), 2, 2))
    single.update(vae_to_sgm(vae.state_dict(), 2))
    oc = clip_to_openclip(hf_te_sd(te), "cond_stage_model.model.")
    # OpenCLIP's last layer, which SD 2 does not use: written from a folder it is all zeros
    # (an identity block), so the file holds one layer more than the folder, as released
    # SD 2 files do
    last = max(int(k.split(".")[4]) for k in oc if ".resblocks." in k)
    for k in [k for k in oc if f".resblocks.{last}." in k]:
        oc[k.replace(f".resblocks.{last}.", f".resblocks.{last + 1}.")] = torch.zeros_like(oc[k])
    single.update(oc)
    save_file({k: v.contiguous() for k, v in single.items()}, f"{OUT}/sd2.safetensors")
    bad = check_single(f"{OUT}/sd2.safetensors", folder, False)
    res["sd2"] = {"from_single_file_equal": not bad, "problems": bad[:20]}
    with open(f"{OUT}/single_check.json", "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    print(json.dumps(res))
    make_lora(f"{OUT}/sd", f"{OUT}/lora")


# ---- --pipeline: single files that generate ---------------------------------------------------

PIPE_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gen", "fixtures",
                        "single")
PIPE_FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gen", "fixtures")
SCHED_BASE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  num_train_timesteps=1000, steps_offset=1, set_alpha_to_one=False,
                  clip_sample=False, skip_prk_steps=True)


def pipe_models(fam):
    """A folder's components in the shapes easel's single-file configs reproduce."""
    from diffusers import (AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler,
                           UNet2DConditionModel)
    seed = {"sd1": 100, "sd2": 200, "sdxl": 300}[fam]
    if fam == "sdxl":
        unet = UNet2DConditionModel(
            sample_size=128, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(16, 32, 32), norm_num_groups=16,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 1, 2), attention_head_dim=(1, 1, 1),
            cross_attention_dim=32 + 48, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=40 + 6 * 8)
    else:
        unet = UNet2DConditionModel(
            sample_size=96 if fam == "sd2" else 64, in_channels=4, out_channels=4,
            layers_per_block=1, block_out_channels=(16, 32), norm_num_groups=16,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=(1, 1) if fam == "sd2" else 8, cross_attention_dim=32,
            use_linear_projection=fam == "sd2", upcast_attention=fam == "sd2")
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2,
                        sample_size={"sd1": 512, "sd2": 768, "sdxl": 1024}[fam],
                        scaling_factor=0.13025 if fam == "sdxl" else 0.18215)
    rnd_(unet, seed)
    rnd_(vae, seed + 1)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    # the two SDXL encoders differ in width, as ViT-L and bigG do (diffusers' from_single_file
    # tells them apart by it)
    def te(act, layers, proj, s, width=32):
        c = CLIPTextConfig(hidden_size=width, intermediate_size=2 * width,
                           num_hidden_layers=layers, num_attention_heads=1, vocab_size=634,
                           max_position_embeddings=77, projection_dim=40, hidden_act=act, eos_token_id=2, bos_token_id=632,
                           pad_token_id=1)
        m = CLIPTextModelWithProjection(c) if proj else CLIPTextModel(c)
        return rnd_(m, s).eval()
    tes = [te("gelu" if fam == "sd2" else "quick_gelu", 2, False, seed + 2)]
    if fam == "sdxl":
        tes.append(te("gelu", 2, True, seed + 3, width=48))
    if fam == "sd1":
        sched = PNDMScheduler.from_config(SCHED_BASE)
    elif fam == "sd2":
        sched = DDIMScheduler.from_config(dict(SCHED_BASE, prediction_type="v_prediction"))
    else:
        sched = EulerDiscreteScheduler.from_config(dict(
            SCHED_BASE, interpolation_type="linear", timestep_spacing="leading",
            prediction_type="epsilon"))
    return unet.eval(), vae.eval(), tes, sched


def make_pipeline_singles():
    import shutil
    import numpy as np
    from diffusers import (EulerDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline)
    from transformers import CLIPTokenizer
    torch.set_num_threads(1)
    shutil.rmtree(PIPE_OUT, ignore_errors=True)
    os.makedirs(PIPE_OUT)
    P, N = "a red fox in the snow", "blurry, low quality"
    cases, checks = [], {}
    for fam in ("sd1", "sd2", "sdxl"):
        unet, vae, tes, sched = pipe_models(fam)
        xl = fam == "sdxl"
        tok = CLIPTokenizer.from_pretrained(f"{PIPE_FIX}/pipeline_sdxl/tokenizer")
        if xl:
            tok2 = CLIPTokenizer.from_pretrained(f"{PIPE_FIX}/pipeline_sdxl/tokenizer_2")
            pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=tes[0], text_encoder_2=tes[1],
                                             tokenizer=tok, tokenizer_2=tok2, unet=unet,
                                             scheduler=sched, force_zeros_for_empty_prompt=True)
        else:
            if fam == "sd2":  # SD 2's tokenizer pads with "!" (stable-diffusion-2-1's config)
                tok = CLIPTokenizer.from_pretrained(f"{PIPE_FIX}/pipeline_sdxl/tokenizer_2")
            pipe = StableDiffusionPipeline(vae=vae, text_encoder=tes[0], tokenizer=tok, unet=unet,
                                           scheduler=sched, safety_checker=None,
                                           feature_extractor=None, requires_safety_checker=False)
        folder = f"{PIPE_OUT}/{fam}"
        pipe.save_pretrained(folder, safe_serialization=True)
        for t in (["tokenizer", "tokenizer_2"] if xl else ["tokenizer"]):
            shutil.rmtree(f"{folder}/{t}")
            src = "tokenizer_2" if (t == "tokenizer_2" or fam == "sd2") else "tokenizer"
            shutil.copytree(f"{PIPE_FIX}/pipeline_sdxl/{src}", f"{folder}/{t}")
        # the single file, with this script's own map
        single = {}
        single.update(unet_to_sgm(unet.state_dict(), 3 if xl else 2, 1))
        single.update(vae_to_sgm(vae.state_dict(), 2))
        if fam == "sd1":
            single.update({"cond_stage_model.transformer." + k: v
                           for k, v in hf_te_sd(tes[0]).items()})
        elif fam == "sd2":
            oc = clip_to_openclip(hf_te_sd(tes[0]), "cond_stage_model.model.")
            # OpenCLIP's last layer, which SD 2 does not use (diffusers' config drops it)
            g = torch.Generator().manual_seed(999)
            for k in [k for k in oc if ".resblocks.1." in k]:
                oc[k.replace(".resblocks.1.", ".resblocks.2.")] = \
                    torch.randn(oc[k].shape, generator=g) * 0.2
            single.update(oc)
        else:
            single.update({"conditioner.embedders.0.transformer." + k: v
                           for k, v in hf_te_sd(tes[0]).items()})
            single.update(clip_to_openclip(hf_te_sd(tes[1]), "conditioner.embedders.1.model."))
        save_file({k: v.contiguous() for k, v in single.items()}, f"{PIPE_OUT}/{fam}.safetensors")
        bad = check_single(f"{PIPE_OUT}/{fam}.safetensors", folder, xl)
        checks[fam] = {"from_single_file_equal": not bad, "problems": bad[:20]}
        # diffusers' images from the folder as a user loads it
        cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
        kw = {} if xl else dict(safety_checker=None, requires_safety_checker=False)
        pipe = cls.from_pretrained(folder, **kw)
        pipe.set_progress_bar_config(disable=True)
        runs = [dict(name=f"{fam}_euler", scheduler="euler", steps=4, guidance=7.5, seed=42)]
        if fam != "sd1":  # the model's own scheduler (SD 1.5's PNDM is not easel's)
            runs.append(dict(name=f"{fam}_model", scheduler=None, steps=3, guidance=6.0, seed=7))
        model_sched = pipe.scheduler
        for r in runs:
            cfg = dict(model_sched.config)
            pipe.scheduler = (EulerDiscreteScheduler.from_config(cfg) if r["scheduler"]
                              else type(model_sched).from_config(cfg))
            with torch.no_grad():
                img = pipe(prompt=P, negative_prompt=N, num_inference_steps=r["steps"],
                           guidance_scale=r["guidance"], height=64, width=64,
                           generator=torch.Generator("cpu").manual_seed(r["seed"])).images[0]
            a = np.asarray(img, dtype=np.uint8)
            a.tofile(f"{PIPE_OUT}/{r['name']}.rgb")
            r.update(model=fam, prompt=P, negative=N, w=64, h=64)
            cases.append(r)
    with open(f"{PIPE_OUT}/cases.json", "w") as f:
        json.dump(cases, f, indent=1)
    with open(f"{PIPE_OUT}/single_check.json", "w") as f:
        json.dump(checks, f, indent=1, sort_keys=True)
    print(json.dumps(checks))
    print("single pipelines:", [c["name"] for c in cases])


if __name__ == "__main__":
    import sys
    if "--pipeline" in sys.argv[1:]:
        make_pipeline_singles()
    else:
        main()
