#!/usr/bin/env python3
"""Make the CLIP fixtures for tests/test_clip*.c with the reference implementations
(open_clip, transformers, torch, Pillow from pip). Run from the repository root:

    python3 tests/clip/make_fixtures.py                 # committed fixtures (a few MB)
    python3 tests/clip/make_fixtures.py --reference DIR # ViT-B/32-shaped random model + refs

Committed output, tests/fixtures/clip/:
  tokenizer.json     >= 300 strings and open_clip's token ids for each
  images/*.png|jpg   small test images (RGB, grey, RGBA, JPEG; up- and down-scaled)
  preprocess.safetensors  open_clip's preprocessing of each image at 64 px, "crop"
                     (resize short side + centre crop) and "squash" (plain resize)
  tiny_openclip/     a small random CLIP in OpenCLIP layout: open_clip_model.safetensors
                     (f32), open_clip_config.json, bpe_simple_vocab_16e6.txt.gz
  tiny_hf/           the same weights in Hugging Face layout (bf16): model.safetensors,
                     config.json, vocab.json, merges.txt
  tiny_ref.safetensors  inputs and open_clip's outputs: pixels, image embeddings, projected
                     patch tokens, token ids, text embeddings (transformers' CLIPModel on
                     tiny_hf is checked to agree before anything is written)
  tiny_layers.safetensors  for tiny_ref's inputs, transformers' CLIPTextModelWithProjection /
                     CLIPVisionModelWithProjection on tiny_hf with output_hidden_states:
                     every hidden state (index 0 = embeddings, i = after layer i), the last
                     hidden state (text: with the final LayerNorm; vision: without, as
                     transformers gives them), pooled and projected outputs; each
                     checked against open_clip's blocks (forward hooks) before it is written

    python3 tests/clip/make_fixtures.py --layers        # only tiny_layers.safetensors
Weights are rounded to bf16-representable values so both layouts hold identical numbers.
"""
import gzip
import json
import os
import random
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import open_clip
from open_clip.tokenizer import SimpleTokenizer, default_bpe

FIX = os.path.join("tests", "fixtures", "clip")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

# ---- tokenizer --------------------------------------------------------------------------------

WORDS = ("a photo of the cat dog astronaut riding horse on mars oil painting by van gogh "
         "portrait studio lighting 8k hdr cinematic bokeh isometric pixel-art low-poly "
         "watercolor sketch's don't I'm we'll they've you'd she's it's O'Neil "
         "rock'n'roll e-mail U.S.A. 3.14 1,000,000 2024-05-01 #hashtag @user ~tilde "
         "café naïve façade über straße smörgåsbord jalapeño Ελληνικά ΣΟΦΟΣ русский "
         "日本語 中文字 한국어 עברית العربية हिन्दी ไทย Việt 🎨 🖼️ 👩‍🎨 🇫🇷 ❤️ 😀😃 "
         "“curly” ‘single’ ﬁne ﬂow ＦＵＬＬ ｶﾀｶﾅ &amp; &lt;b&gt; &quot;q&quot; &#39;s "
         "&#x27;t &copy; &eacute; &nbsp; &amp;amp; &notit; x&y A&B <tag> ... !!! ?!? "
         "(parens) [brackets] {braces} \"quotes\" 'apos' --- ___ *** /slash\\ | +=").split()


def tokenizer_strings():
    fixed = [
        "", " ", "   \t\n  ", "a", "A", "hello world", "Hello, World!", "HELLO   world  ",
        "a photo of a cat", "A PHOTO OF A DOG.", "it's", "IT'S", "don't stop", "I'LL be there",
        "we've they're you'd I'm", "rock'n'roll", "'s't're've'm'll'd", "''''", "O'Reilly's",
        "1234567890", "3.14159", "1,000", "x2", "2x", "v1.2.3", "½ ⅓ ① ² Ⅻ ٣ ३",
        "!!!", "?!", "...", "—–-", "(a) [b] {c} <d>", "a/b\\c|d", "#1 @2 $3 %4 ^5 &6 *7",
        "café crème brûlée", "naïve façade", "Straße", "ΣΟΦΟΣ ΣΑΣ Σ", "İstanbul ǅ ǈ",
        "Ελληνικά", "русский текст", "日本語のテキスト", "中文文本", "한국어 텍스트",
        "עברית", "العربية", "हिन्दी", "ภาษาไทย", "Tiếng Việt",
        "🎨", "🖼️ art", "👩‍🎨 painter", "🇫🇷🇩🇪", "❤️❤️❤️", "😀 😃 😄", "emoji🎨inside",
        "“smart quotes” and ‘single’", "ﬁne ﬂour ﬀ ﬃ", "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ", "ｶﾀｶﾅ",
        "&amp;", "&lt;b&gt;bold&lt;/b&gt;", "&quot;quoted&quot;", "&#39;s", "&#x27;t",
        "&copy; 2024", "&eacute;t&eacute;", "a&nbsp;b", "&amp;amp;", "&amp;amp;amp;lt;",
        "&notit;", "&not", "&ampx", "&#0;", "&#x110000;", "&#128512;", "&#x1F600;",
        "&#150;", "&#xD800;", "&#65;&#66;", "&AMP;", "&EACUTE;", "&Jscr;", "&unknown;",
        "x&y", "AT&T", "<tag> &amp; more", "line one\nline two &amp;", "tab\tseparated",
        "new\r\nlines\rhere", "\u2028sep\u2029", "zero\u200bwidth", "soft\u00adhyphen",
        "nbsp\u00a0space", "\x85\x93quoted\x94", "bell\x07char", "\x1b[31mred\x1b[0m",
        "<start_of_text>", "a <end_of_text> b", "<|startoftext|>", "BOM\ufeffhere",
        "ǲ ĳ", "ŉ", "ﬅ ﬆ", "\u0130\u0049", "\u1e9e", "K\u212a", "'ſ",
        "a" * 100, "ab " * 60, "supercalifragilisticexpialidocious",
        "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        "A highly detailed matte painting of a futuristic city at sunset, trending on "
        "artstation, by Greg Rutkowski and Alphonse Mucha, octane render, 8k, unreal engine, "
        "volumetric lighting, ultra realistic, sharp focus, intricate details, concept art, "
        "dramatic sky, reflections in puddles, neon signs, flying cars, crowded streets",
        "long " * 90,
        "🎨" * 40,
        "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
    ]
    rng = random.Random(1234)
    gen = []
    while len(fixed) + len(gen) < 340:
        n = rng.choice([1, 2, 3, 5, 8, 13, 40])
        parts = [rng.choice(WORDS) for _ in range(n)]
        seps = [rng.choice([" ", " ", " ", "", "  ", ", ", "\t", "\n"]) for _ in range(n)]
        s = "".join(p + q for p, q in zip(parts, seps))
        if rng.random() < 0.3:
            s = s.upper()
        gen.append(s)
    return fixed + gen


def make_tokenizer():
    tok = SimpleTokenizer()
    out = []
    for s in tokenizer_strings():
        ids = tok([s])[0].tolist()
        while ids and ids[-1] == 0:
            ids.pop()
        out.append({"text": s, "ids": ids})
    with open(os.path.join(FIX, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
    print("tokenizer:", len(out), "strings")


def write_hf_vocab(folder):
    """vocab.json + merges.txt as Hugging Face's CLIP folders hold them (same merges)."""
    tok = SimpleTokenizer()
    enc = dict(tok.encoder)
    enc["<|startoftext|>"] = enc.pop("<start_of_text>")
    enc["<|endoftext|>"] = enc.pop("<end_of_text>")
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(enc, f, ensure_ascii=False)
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


# ---- preprocessing ----------------------------------------------------------------------------

def pattern(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / (3 + seed) + y / 7.0)
    g = 255 * (x / max(w - 1, 1))
    b = 255 * ((x // 6 + y // 5) % 2)  # checker edges
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_images():
    d = os.path.join(FIX, "images")
    os.makedirs(d, exist_ok=True)
    Image.fromarray(pattern(50, 37, 1)).save(os.path.join(d, "rgb_50x37.png"))
    Image.fromarray(pattern(97, 131, 2)).save(os.path.join(d, "rgb_97x131.png"))
    Image.fromarray(pattern(300, 200, 3)).save(os.path.join(d, "rgb_300x200.png"))
    Image.fromarray(pattern(65, 64, 7)).save(os.path.join(d, "rgb_65x64.png"))
    Image.fromarray(pattern(40, 150, 9)).save(os.path.join(d, "tall_40x150.png"))
    Image.fromarray(pattern(45, 60, 4)[:, :, 0]).save(os.path.join(d, "grey_45x60.png"))
    rgba = np.concatenate([pattern(64, 48, 5), (np.arange(64 * 48).reshape(48, 64, 1) * 7 % 256)
                           .astype(np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(os.path.join(d, "rgba_64x48.png"))
    Image.fromarray(pattern(70, 40, 6)).quantize(16).save(os.path.join(d, "pal_70x40.png"))
    Image.fromarray(pattern(120, 90, 8)).save(os.path.join(d, "photo_120x90.jpg"), quality=92)
    return sorted(os.listdir(d))


def _bicubic(x):
    x = abs(x)
    if x < 1:
        return (1.5 * x - 2.5) * x * x + 1
    if x < 2:
        return (((x - 5) * x + 8) * x - 4) * -0.5
    return 0.0


def _pass(a, out, axis):
    """One Pillow 8-bit resampling pass along AXIS (numpy; for the order check)."""
    if a.shape[axis] == out:
        return a
    a = np.moveaxis(a, axis, 0).astype(np.int64)
    n = a.shape[0]
    scale = n / out
    fs = max(scale, 1.0)
    rows = []
    for xx in range(out):
        c = (xx + 0.5) * scale
        xmin = max(int(c - 2 * fs + 0.5), 0)
        xmax = min(int(c + 2 * fs + 0.5), n) - xmin
        k = [_bicubic((x + xmin - c + 0.5) / fs) for x in range(xmax)]
        ww = sum(k)
        k = [int(-0.5 + v / ww * (1 << 22)) if v < 0 else int(0.5 + v / ww * (1 << 22)) for v in k]
        acc = (1 << 21) + np.tensordot(np.array(k, dtype=np.int64), a[xmin:xmin + xmax], (0, 0))
        rows.append(np.clip(acc >> 22, 0, 255))
    return np.moveaxis(np.stack(rows), 0, axis)


def pass_order_known(im, size):
    """True if Pillow resized IM to SIZE in the pass order easel uses: horizontal first,
    vertical first when the height shrinks by more than twice the pixels the width does
    (Pillow 13's choice; Pillow <= 12 always went horizontal first)."""
    a = np.asarray(im.convert("RGB") if im.mode not in ("RGB", "L") else im)
    if a.ndim == 2:
        a = a[:, :, None]
    w, h = im.size
    ow, oh = size
    vfirst = oh < h and 2 * (w - ow) < h - oh
    ours = _pass(_pass(a, oh, 0), ow, 1) if vfirst else _pass(_pass(a, ow, 1), oh, 0)
    pil = np.asarray(Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).resize(
        size, Image.BICUBIC))
    return np.array_equal(ours.reshape(pil.shape), pil)


def make_preprocess(names):
    """Pillow-side reference: the 8-bit image open_clip's transform has before ToTensor."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Resize
    import open_clip.transform as oct
    size = 64
    crop = Compose([Resize(size, interpolation=InterpolationMode.BICUBIC), CenterCrop(size),
                    oct.MaybeConvertMode()])
    squash = Compose([Resize((size, size), interpolation=InterpolationMode.BICUBIC),
                      oct.MaybeConvertMode()])
    # the same pipeline open_clip builds, checked here so the fixture means what it says
    full = open_clip.image_transform(size, is_train=False)
    full_sq = open_clip.image_transform(size, is_train=False, resize_mode="squash")
    out = {}
    skipped = []
    for n in names:
        im = Image.open(os.path.join(FIX, "images", n))
        for mode, tf, ref in (("crop", crop, full), ("squash", squash, full_sq)):
            w, h = im.size
            rs = (size, size) if mode == "squash" else \
                (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
            if im.mode in ("RGB", "L") and not pass_order_known(im, rs):
                skipped.append(n + "." + mode)
                continue
            u8 = np.asarray(tf(im), dtype=np.uint8).copy()
            want = ref(im)
            got = (torch.from_numpy(u8).permute(2, 0, 1).float() / 255
                   - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
            assert torch.allclose(got, want, atol=1e-6), n
            out[n + "." + mode] = torch.from_numpy(u8)
    save_file(out, os.path.join(FIX, "preprocess.safetensors"),
              metadata={"pillow": Image.__version__, "size": str(size)})
    print("preprocess:", len(out), "references; left out (Pillow pass order not matched):",
          skipped)


# ---- models -------------------------------------------------------------------------------------

TINY = dict(embed_dim=16,
            vision_cfg=dict(image_size=32, patch_size=8, width=32, layers=2, head_width=16,
                            mlp_ratio=4.0),
            text_cfg=dict(context_length=77, vocab_size=49408, width=8, heads=2, layers=2,
                          mlp_ratio=4.0))

TEXTS = ["a photo of a cat", "An oil painting of a lighthouse at dusk, by Turner!", "",
         "🎨 emoji &amp; entities", "long " * 90, "it's a dog's life"]


def randomize(model, seed):
    """Weights of a scale that exercises every op, rounded to bf16-representable values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                continue
            if ".ln" in name or "ln_" in name:
                v = (1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g)
            elif "embedding" in name or name.endswith("class_embedding"):
                v = 0.5 * torch.randn(p.shape, generator=g)
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else p.shape[0]
                v = torch.randn(p.shape, generator=g) * (1.0 / fan_in ** 0.5 if p.dim() > 1 else 0.05)
            p.copy_(v.to(torch.bfloat16).float())
    return model


def openclip_to_hf(sd):
    out = {}
    for k, v in sd.items():
        n = k
        if k == "visual.proj":
            out["visual_projection.weight"] = v.t().contiguous()
            continue
        if k == "text_projection":
            out["text_projection.weight"] = v.t().contiguous()
            continue
        if k == "logit_scale":
            out[k] = v
            continue
        for a, b in (("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
                     ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
                     ("visual.positional_embedding",
                      "vision_model.embeddings.position_embedding.weight"),
                     ("visual.ln_pre", "vision_model.pre_layrnorm"),
                     ("visual.ln_post", "vision_model.post_layernorm"),
                     ("visual.transformer.resblocks", "vision_model.encoder.layers"),
                     ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
                     ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
                     ("transformer.resblocks", "text_model.encoder.layers"),
                     ("ln_final", "text_model.final_layer_norm")):
            if n.startswith(a):
                n = b + n[len(a):]
                break
        n = (n.replace(".ln_1.", ".layer_norm1.").replace(".ln_2.", ".layer_norm2.")
             .replace(".mlp.c_fc.", ".mlp.fc1.").replace(".mlp.c_proj.", ".mlp.fc2.")
             .replace(".attn.out_proj.", ".self_attn.out_proj."))
        if n.endswith("attn.in_proj_weight") or n.endswith("attn.in_proj_bias"):
            base = n.rsplit(".attn.", 1)[0] + ".self_attn."
            kind = "weight" if n.endswith("weight") else "bias"
            for part, t in zip("qkv", v.chunk(3, 0)):
                out[base + part + "_proj." + kind] = t.contiguous()
            continue
        out[n] = v
    return out


def hf_config(cfg, act):
    from transformers import CLIPConfig
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    c = CLIPConfig(
        projection_dim=cfg["embed_dim"],
        text_config=dict(hidden_size=t["width"], intermediate_size=int(t["width"] * 4),
                         num_attention_heads=t["heads"], num_hidden_layers=t["layers"],
                         max_position_embeddings=t["context_length"], vocab_size=t["vocab_size"],
                         hidden_act=act, layer_norm_eps=1e-5, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=1),
        vision_config=dict(hidden_size=v["width"], intermediate_size=int(v["width"] * 4),
                           num_attention_heads=v["width"] // v.get("head_width", 64),
                           num_hidden_layers=v["layers"], image_size=v["image_size"],
                           patch_size=v["patch_size"], hidden_act=act, layer_norm_eps=1e-5))
    c.architectures = ["CLIPModel"]
    return c


def reference_outputs(model, pixels, texts):
    tok = SimpleTokenizer()
    ids = tok(texts)
    with torch.no_grad():
        model.visual.output_tokens = True
        pooled, tokens = model.visual(pixels)
        model.visual.output_tokens = False
        img = torch.nn.functional.normalize(pooled, dim=-1)
        tokens = tokens @ model.visual.proj
        txt = torch.nn.functional.normalize(model.encode_text(ids), dim=-1)
    return ids, img, tokens, txt


def write_model(folder, cfg, seed, images, texts, hf_folder=None, dtype_hf=torch.bfloat16):
    from open_clip.model import CLIP
    torch.manual_seed(seed)
    model = randomize(CLIP(**cfg, quick_gelu=False).eval(), seed)
    os.makedirs(folder, exist_ok=True)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(folder, "open_clip_model.safetensors"))
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": cfg,
                   "preprocess_cfg": {"mean": list(MEAN), "std": list(STD),
                                      "interpolation": "bicubic", "resize_mode": "shortest"}},
                  f, indent=2)
    shutil.copy(default_bpe(), folder)
    size = cfg["vision_cfg"]["image_size"]
    tf = open_clip.image_transform(size, is_train=False)
    pixels = torch.stack([tf(Image.open(p)) for p in images])
    ids, img, tokens, txt = reference_outputs(model, pixels, texts)
    if hf_folder:
        from transformers import CLIPModel
        os.makedirs(hf_folder, exist_ok=True)
        hsd = {k: v.to(dtype_hf).contiguous() for k, v in openclip_to_hf(sd).items()}
        save_file(hsd, os.path.join(hf_folder, "model.safetensors"), metadata={"format": "pt"})
        hf_config(cfg, "gelu").save_pretrained(hf_folder)
        write_hf_vocab(hf_folder)
        hf = CLIPModel.from_pretrained(hf_folder, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            hi = hf.get_image_features(pixel_values=pixels)
            ht = hf.get_text_features(input_ids=ids)
            hi = torch.nn.functional.normalize(getattr(hi, "pooler_output", hi), dim=-1)
            ht = torch.nn.functional.normalize(getattr(ht, "pooler_output", ht), dim=-1)
        assert (hi - img).abs().max() < 1e-5, (hi - img).abs().max()
        assert (ht - txt).abs().max() < 1e-5, (ht - txt).abs().max()
        print("transformers CLIPModel on", hf_folder, "agrees with open_clip")
    return {"pixels": pixels.contiguous(), "ids": ids.to(torch.int32), "image_embeds": img,
            "image_tokens": tokens.contiguous(), "text_embeds": txt}


def make_tiny():
    images = [os.path.join(FIX, "images", n) for n in
              ("rgb_300x200.png", "rgb_97x131.png", "grey_45x60.png")]
    ref = write_model(os.path.join(FIX, "tiny_openclip"), TINY, 11, images, TEXTS,
                      hf_folder=os.path.join(FIX, "tiny_hf"))
    save_file(ref, os.path.join(FIX, "tiny_ref.safetensors"),
              metadata={"texts": json.dumps(TEXTS), "images": json.dumps(
                  [os.path.basename(p) for p in images])})
    print("tiny model written")


def make_layers():
    """Per-layer references from transformers, cross-checked with open_clip (see above)."""
    from safetensors.torch import load_file
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection
    from open_clip.model import CLIP
    ref = load_file(os.path.join(FIX, "tiny_ref.safetensors"))
    pixels, ids = ref["pixels"], ref["ids"].long()
    hf_dir = os.path.join(FIX, "tiny_hf")
    from transformers import CLIPConfig
    cfg = CLIPConfig.from_pretrained(hf_dir)
    cfg.text_config.projection_dim = cfg.vision_config.projection_dim = cfg.projection_dim
    tm = CLIPTextModelWithProjection.from_pretrained(hf_dir, config=cfg.text_config,
                                                     torch_dtype=torch.float32).eval()
    vm = CLIPVisionModelWithProjection.from_pretrained(hf_dir, config=cfg.vision_config,
                                                       torch_dtype=torch.float32).eval()
    oc = CLIP(**TINY, quick_gelu=False).eval()
    oc.load_state_dict(load_file(os.path.join(FIX, "tiny_openclip",
                                              "open_clip_model.safetensors")))
    with torch.no_grad():
        to = tm(input_ids=ids, output_hidden_states=True)
        vo = vm(pixel_values=pixels, output_hidden_states=True)
        # open_clip's blocks, hooked: the same states in (B, T, C)
        seen = {"t": [], "v": []}
        hooks = [b.register_forward_hook(lambda mod, i, o, k=k: seen[k].append(o))
                 for k, tr in (("t", oc.transformer), ("v", oc.visual.transformer))
                 for b in tr.resblocks]
        o_txt = oc.encode_text(ids)
        o_img = oc.encode_image(pixels)
        for h in hooks:
            h.remove()
    out = {"pixels": pixels, "ids": ids.to(torch.int32)}
    for key, o, emb, proj, ocs, oproj in (("text", to, "text_embeds", "text", seen["t"], o_txt),
                                          ("vision", vo, "image_embeds", "vision", seen["v"],
                                           o_img)):
        hs = torch.stack(o.hidden_states, 1).contiguous()  # (B, layers + 1, T, C)
        for i, a in enumerate(ocs):
            a = a if a.shape[0] == hs.shape[0] else a.transpose(0, 1)
            d = (a - hs[:, i + 1]).abs().max()
            assert d < 1e-5, (key, i, d)
        d = (getattr(o, emb) - oproj).abs().max()
        assert d < 1e-5, (key, "projected", d)
        out[key + "_hidden"] = hs
        out[key + "_last"] = o.last_hidden_state.contiguous()
        out[key + "_projected"] = getattr(o, emb).contiguous()
    # pooled (before the projection): the final LayerNorm at the pooling position
    with torch.no_grad():
        out["text_pooled"] = tm.text_model(input_ids=ids).pooler_output.contiguous()
        out["vision_pooled"] = vm.vision_model(pixel_values=pixels).pooler_output.contiguous()
    save_file(out, os.path.join(FIX, "tiny_layers.safetensors"),
              metadata={"transformers": __import__("transformers").__version__,
                        "open_clip": open_clip.__version__})
    print("tiny_layers written; transformers and open_clip agree on every layer")


def make_reference(out):
    """ViT-B/32-shaped random model + references, for make test-reference (not committed)."""
    cfg = json.load(open(os.path.join(os.path.dirname(open_clip.__file__), "model_configs",
                                      "ViT-B-32.json")))
    images = [os.path.join(FIX, "images", n) for n in
              ("rgb_300x200.png", "rgb_97x131.png", "photo_120x90.jpg", "rgba_64x48.png")]
    ref = write_model(os.path.join(out, "vit-b-32"), cfg, 5, images, TEXTS,
                      hf_folder=os.path.join(out, "vit-b-32-hf"), dtype_hf=torch.float16)
    shapes = os.path.join(out, "vit-b-32-shapes")  # weights + tokenizer only: no config
    os.makedirs(shapes, exist_ok=True)
    for f in ("open_clip_model.safetensors", "bpe_simple_vocab_16e6.txt.gz"):
        if not os.path.exists(os.path.join(shapes, f)):
            os.symlink(os.path.abspath(os.path.join(out, "vit-b-32", f)), os.path.join(shapes, f))
    save_file(ref, os.path.join(out, "ref.safetensors"),
              metadata={"texts": json.dumps(TEXTS), "images": json.dumps(
                  [os.path.basename(p) for p in images])})
    print("reference model in", out)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--reference":
    make_reference(sys.argv[2])
    sys.exit(0)

if __name__ == "__main__" and len(sys.argv) == 2 and sys.argv[1] == "--layers":
    make_layers()
    sys.exit(0)

if __name__ == "__main__":
    os.makedirs(FIX, exist_ok=True)
    make_tokenizer()
    make_preprocess(make_images())
    make_tiny()
    make_layers()
