#!/usr/bin/env python3
"""Make the fixtures of tests/gen/test_sd_text.c (committed; `make test` never runs Python).

Run from the repository root with the project's Python (torch, transformers 5.25, diffusers
0.42.1):

    /work/wt/make/build/venv/bin/python tests/gen/make_sdtext_fixtures.py

Writes tests/gen/fixtures/sdtext/:
  sd/     a diffusers folder holding what text conditioning reads: model_index.json,
          text_encoder/ (a tiny random CLIPTextModel) and tokenizer/
  sd_saved/  the same encoder and tokenizer as diffusers 0.42.1 with transformers 5 save them
          (save_pretrained): weight names without "text_model.", tokenizer.json alone
  sd2/    an SD 2.x-like folder: a GELU CLIPTextModel, its tokenizer padding with "!"
  sdxl/   an SDXL pipeline's: text_encoder/ (CLIPTextModel, quick GELU),
          text_encoder_2/ (CLIPTextModelWithProjection, GELU) and tokenizer/, tokenizer_2/
          (pads with "!", as SDXL's second tokenizer does)
  cases.json   per case: the pipeline, prompt, negative prompt (or null), clip_skip (or null),
          the ids of the (last) tokenizer and the names of the .f32 files (raw little-endian float32) holding diffusers'
          encode_prompt outputs: prompt_embeds, negative_prompt_embeds and, for SDXL,
          pooled_prompt_embeds, negative_pooled_prompt_embeds, with add_time_ids.

The tokenizer is a small byte-level BPE learnt here from a few prompts (the real CLIP vocabulary
is 1.6 MB): the 256 byte symbols, the same with "</w>", the learnt merges and the two special
tokens, in CLIP's order. The UNet and VAE the pipelines need to be built are tiny and are not
saved (encode_prompt does not use them).
"""
import collections
import json
import os
import shutil
import tempfile
import types

import numpy as np
import torch
from safetensors.torch import save_file
from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection,
                          CLIPTokenizer)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "sdtext")

CORPUS = """a photo of an astronaut riding a horse on the moon, highly detailed, 8k
a painting of a cat sitting in a garden with flowers, oil on canvas, by a famous artist
blurry, low quality, watermark, text, ugly, deformed hands, extra fingers
portrait of a woman with red hair, studio lighting, sharp focus, photorealistic
a castle on a hill at sunset, fantasy landscape, dramatic clouds, trending on artstation
"""

PROMPTS = {
    "astro": "a photo of an astronaut riding a horse on the moon",
    "cat": "A painting of a cat in a garden, oil on canvas!",
    "neg": "blurry, low quality, watermark",
    "long": ", ".join(["a castle on a hill at sunset with dramatic clouds and flowers"] * 8),
    "unknown": "zebra xylophone quokka 12345 ?!",
    "quotes": "it\u2019s a \u201ccat\u201d &amp; a  dog\tat\u00a0dawn \ufb01ne ZOO",
}


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) +
          list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def learn_bpe(words, n_merges):
    """Plain BPE over CLIP's symbols (the last one of a word with "</w>")."""
    b2u = bytes_to_unicode()
    counts = collections.Counter(words)
    seqs = {}
    for w in counts:
        s = [b2u[b] for b in w.encode("utf-8")]
        s[-1] += "</w>"
        seqs[w] = s
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, s in seqs.items():
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += counts[w]
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def write_tokenizer(d, merges, pad_token):
    os.makedirs(d, exist_ok=True)
    b2u = bytes_to_unicode()
    syms = list(b2u.values())
    vocab = syms + [s + "</w>" for s in syms] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special = {"content": None, "lstrip": False, "normalized": True, "rstrip": False,
               "single_word": False}

    def tok(s):
        return dict(special, content=s)
    cfg = {"add_prefix_space": False, "bos_token": tok("<|startoftext|>"),
           "do_lower_case": True, "eos_token": tok("<|endoftext|>"), "errors": "replace",
           "model_max_length": 77, "pad_token": pad_token, "tokenizer_class": "CLIPTokenizer",
           "unk_token": tok("<|endoftext|>")}
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    smap = {"bos_token": tok("<|startoftext|>"), "eos_token": tok("<|endoftext|>"),
            "pad_token": pad_token, "unk_token": tok("<|endoftext|>")}
    with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
        json.dump(smap, f, indent=2)
    return len(vocab)


def text_config(vocab, eos, act, proj=None):
    kw = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
              num_attention_heads=4, max_position_embeddings=77, hidden_act=act,
              bos_token_id=vocab - 2, eos_token_id=eos, pad_token_id=1)
    if proj:
        kw["projection_dim"] = proj
    return CLIPTextConfig(**kw)


def randomise(model, seed):
    """Weights of a visible size: transformers initialises LayerNorms to 1/0 and the rest to
    std 0.02, which would hide a mistake in the norms or biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.ndim == 1 and
                                                               "norm" in _ and
                                                               _.endswith("weight") else 0.0))
    return model.eval()


def tiny_vae():
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"],
                         up_block_types=["UpDecoderBlock2D"], block_out_channels=[8],
                         layers_per_block=1, latent_channels=4, norm_num_groups=4)


def tiny_unet(cross, sdxl, pooled=0):
    kw = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
              block_out_channels=[8, 16], down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
              up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim=cross,
              attention_head_dim=2, norm_num_groups=4)
    if sdxl:
        kw.update(addition_embed_type="text_time", addition_time_embed_dim=4,
                  projection_class_embeddings_input_dim=6 * 4 + pooled)
    return UNet2DConditionModel(**kw)


def save_f32(name, t):
    a = t.detach().to(torch.float32).cpu().numpy().astype("<f4")
    a.tofile(os.path.join(OUT, name))
    return {"file": name, "shape": list(a.shape)}


def copy_parts(src, dst, encoders, tokenizers):
    """The pipeline's model_index.json and text encoders' config.json as diffusers saved them;
    the weights with the names the released checkpoints use ("text_model." before everything
    but text_projection: transformers 5 saves a CLIPTextModel without it); the tokenizer
    folders as released checkpoints ship them (vocab.json + merges.txt + configs)."""
    if os.path.exists(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "model_index.json"), dst)
    for part, model in encoders.items():
        os.makedirs(os.path.join(dst, part))
        shutil.copy(os.path.join(src, part, "config.json"), os.path.join(dst, part))
        sd = {}
        for k, v in model.state_dict().items():
            if not k.startswith(("text_model.", "text_projection.")):
                k = "text_model." + k
            sd[k] = v.contiguous()
        save_file(sd, os.path.join(dst, part, "model.safetensors"), metadata={"format": "pt"})
    for part, tdir in tokenizers.items():
        shutil.copytree(tdir, os.path.join(dst, part))


def reload(cls, d, model):
    """The encoder as diffusers loads it from the committed folder (the same weights)."""
    m = cls.from_pretrained(d).eval()
    a, b = model.state_dict(), m.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), d
    if not hasattr(m, "text_model"):
        # diffusers 0.42.1's clip_skip path reads text_encoder.text_model.final_layer_norm,
        # which transformers 5's CLIPTextModel no longer has (it is final_layer_norm)
        m.text_model = types.SimpleNamespace(final_layer_norm=m.final_layer_norm)
    return m


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".f32"):
            os.remove(os.path.join(OUT, f))
    merges = learn_bpe(CORPUS.lower().replace(",", " , ").split(), 120)
    tmp = tempfile.mkdtemp()
    tdir = os.path.join(tmp, "tok_eos")
    tdir2 = os.path.join(tmp, "tok_bang")
    vocab = write_tokenizer(tdir, merges, "<|endoftext|>")
    write_tokenizer(tdir2, merges, "!")
    tok = CLIPTokenizer.from_pretrained(tdir)
    tok2 = CLIPTokenizer.from_pretrained(tdir2)
    assert tok.pad_token_id == vocab - 1 and tok2.pad_token_id == 0, (tok.pad_token_id,
                                                                     tok2.pad_token_id)
    sched = EulerDiscreteScheduler()
    cases = []

    # ---- SD 1.x: eos_token_id 2 (the legacy argmax pooling, as SD 1.5's config) ----
    te = randomise(CLIPTextModel(text_config(vocab, 2, "quick_gelu")), 1)
    sd = StableDiffusionPipeline(vae=tiny_vae(), text_encoder=te, tokenizer=tok,
                                 unet=tiny_unet(32, False), scheduler=sched, safety_checker=None,
                                 feature_extractor=None, requires_safety_checker=False)
    sd.save_pretrained(os.path.join(tmp, "sd"))
    # the same as diffusers 0.42.1 + transformers 5 save it: the CLIPTextModel's names without
    # "text_model.", the tokenizer as tokenizer.json (no vocab.json / merges.txt)
    d = os.path.join(OUT, "sd_saved")
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for f in ["model_index.json", "text_encoder", "tokenizer"]:
        src = os.path.join(tmp, "sd", f)
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(d, f))
    d = os.path.join(OUT, "sd")
    copy_parts(os.path.join(tmp, "sd"), d, {"text_encoder": te}, {"tokenizer": tdir})
    sd = StableDiffusionPipeline(vae=sd.vae, text_encoder=reload(CLIPTextModel, os.path.join(
        d, "text_encoder"), te), tokenizer=CLIPTokenizer.from_pretrained(os.path.join(
            d, "tokenizer")), unet=sd.unet, scheduler=sched, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    sd_cases = [("astro", None, None), ("cat", "neg", None), ("", None, None),
                ("long", "", None), ("astro", "neg", 1), ("unknown", None, 2),
                ("quotes", None, None),
                ("a cat<|endoftext|>dog <start_of_text> <|StartOfText|>x", None, None)]
    for i, (p, n, skip) in enumerate(sd_cases):
        prompt = PROMPTS.get(p, p)
        neg = PROMPTS.get(n, n) if n is not None else None
        with torch.no_grad():
            pe, ne = sd.encode_prompt(prompt, "cpu", 1, True, negative_prompt=neg,
                                      clip_skip=skip)
        cases.append({"pipeline": "sd", "prompt": prompt, "negative": neg, "clip_skip": skip,
                      "ids": tok(prompt, padding="max_length", max_length=77,
                                 truncation=True).input_ids,
                      "prompt_embeds": save_f32(f"sd{i}_pe.f32", pe),
                      "negative_prompt_embeds": save_f32(f"sd{i}_ne.f32", ne)})

    # ---- SD 2.x: OpenCLIP's text tower as a CLIPTextModel (GELU), padded with "!" ----
    te = randomise(CLIPTextModel(text_config(vocab, 2, "gelu")), 4)
    sd2 = StableDiffusionPipeline(vae=sd.vae, text_encoder=te, tokenizer=tok2, unet=sd.unet,
                                  scheduler=sched, safety_checker=None, feature_extractor=None,
                                  requires_safety_checker=False)
    sd2.save_pretrained(os.path.join(tmp, "sd2"))
    d = os.path.join(OUT, "sd2")
    copy_parts(os.path.join(tmp, "sd2"), d, {"text_encoder": te}, {"tokenizer": tdir2})
    sd2 = StableDiffusionPipeline(vae=sd.vae, text_encoder=reload(CLIPTextModel, os.path.join(
        d, "text_encoder"), te), tokenizer=CLIPTokenizer.from_pretrained(os.path.join(
            d, "tokenizer")), unet=sd.unet, scheduler=sched, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    for i, (p, n, skip) in enumerate([("cat", None, None), ("astro", "neg", None),
                                      ("!!a!?b!", "", 1)]):
        prompt = PROMPTS.get(p, p)
        neg = PROMPTS.get(n, n) if n is not None else None
        with torch.no_grad():
            pe, ne = sd2.encode_prompt(prompt, "cpu", 1, True, negative_prompt=neg,
                                       clip_skip=skip)
        cases.append({"pipeline": "sd2", "prompt": prompt, "negative": neg, "clip_skip": skip,
                      "ids": sd2.tokenizer(prompt, padding="max_length", max_length=77,
                                           truncation=True).input_ids,
                      "prompt_embeds": save_f32(f"v2_{i}_pe.f32", pe),
                      "negative_prompt_embeds": save_f32(f"v2_{i}_ne.f32", ne)})

    # ---- SDXL: encoder 2 pools at the first eos id (its config names it) ----
    te1 = randomise(CLIPTextModel(text_config(vocab, 2, "quick_gelu")), 2)
    te2 = randomise(CLIPTextModelWithProjection(text_config(vocab, vocab - 1, "gelu", 24)), 3)
    xl = StableDiffusionXLPipeline(vae=tiny_vae(), text_encoder=te1, text_encoder_2=te2,
                                   tokenizer=tok, tokenizer_2=tok2,
                                   unet=tiny_unet(64, True, 24), scheduler=sched,
                                   force_zeros_for_empty_prompt=True)
    xl.save_pretrained(os.path.join(tmp, "sdxl"))
    d = os.path.join(OUT, "sdxl")
    copy_parts(os.path.join(tmp, "sdxl"), d, {"text_encoder": te1, "text_encoder_2": te2},
               {"tokenizer": tdir, "tokenizer_2": tdir2})
    xl = StableDiffusionXLPipeline(
        vae=xl.vae, text_encoder=reload(CLIPTextModel, os.path.join(d, "text_encoder"), te1),
        text_encoder_2=reload(CLIPTextModelWithProjection, os.path.join(d, "text_encoder_2"),
                              te2),
        tokenizer=CLIPTokenizer.from_pretrained(os.path.join(d, "tokenizer")),
        tokenizer_2=CLIPTokenizer.from_pretrained(os.path.join(d, "tokenizer_2")),
        unet=xl.unet, scheduler=sched, force_zeros_for_empty_prompt=True)
    tok2 = xl.tokenizer_2
    xl_cases = [("astro", None, None, (1024, 1024), (0, 0), (1024, 1024)),
                ("cat", "neg", None, (768, 1024), (16, 32), (1024, 768)),
                ("", None, None, (512, 512), (0, 0), (1024, 1024)),
                ("long", "", None, (1024, 1024), (0, 0), (1024, 1024)),
                ("astro", "neg", 1, (1024, 1024), (0, 0), (1024, 1024))]
    for i, (p, n, skip, orig, crop, target) in enumerate(xl_cases):
        prompt = PROMPTS.get(p, p)
        neg = PROMPTS.get(n, n) if n is not None else None
        with torch.no_grad():
            pe, ne, pp, np_ = xl.encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
                                               do_classifier_free_guidance=True,
                                               negative_prompt=neg, clip_skip=skip)
            tid = xl._get_add_time_ids(orig, crop, target, dtype=pe.dtype,
                                       text_encoder_projection_dim=te2.config.projection_dim)
        cases.append({"pipeline": "sdxl", "prompt": prompt, "negative": neg, "clip_skip": skip,
                      "original_size": list(orig), "crop_top_left": list(crop),
                      "target_size": list(target),
                      "ids": tok2(prompt, padding="max_length", max_length=77,
                                  truncation=True).input_ids,
                      "prompt_embeds": save_f32(f"xl{i}_pe.f32", pe),
                      "negative_prompt_embeds": save_f32(f"xl{i}_ne.f32", ne),
                      "pooled_prompt_embeds": save_f32(f"xl{i}_pp.f32", pp),
                      "negative_pooled_prompt_embeds": save_f32(f"xl{i}_np.f32", np_),
                      "add_time_ids": [float(x) for x in tid.flatten()]})
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1, ensure_ascii=False)
    shutil.rmtree(tmp)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
