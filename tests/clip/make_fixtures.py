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


if __name__ == "__main__":
    os.makedirs(FIX, exist_ok=True)
    make_tokenizer()
