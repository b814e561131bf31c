#!/usr/bin/env python3
"""Peer for bench/bench_clip.c: open_clip in PyTorch on the CPU.

  peer_clip.py make DIR                      random ViT-B-32 and ViT-L-14 model folders
                                             (DIR/b32, DIR/l14; f32 safetensors + config +
                                             tokenizer), made once and reused
  peer_clip.py time DIR NAME KIND BATCH THREADS SECONDS
                                             KIND image|text: prints items per second
                                             of wall time, then per CPU-second (all
                                             threads)
"""
import json
import os
import shutil
import sys
import time

import torch
from safetensors.torch import load_file, save_file

import open_clip
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer, default_bpe

SHAPES = {"b32": "ViT-B-32", "l14": "ViT-L-14"}
PROMPTS = [
    "a photo of a cat", "an astronaut riding a horse on mars, oil painting",
    "a red sports car parked in front of a modern house at sunset, photorealistic, 8k",
    "portrait of an old fisherman, dramatic lighting, by Rembrandt",
    "isometric pixel art of a cozy cafe", "a bowl of ramen", "low poly mountain landscape",
    "a watercolor painting of a lighthouse in a storm with crashing waves and seagulls",
    "logo of a coffee shop, minimalist, vector", "a dog wearing sunglasses on a beach",
    "cyberpunk city street at night, neon signs, rain, reflections, cinematic",
    "a medieval castle on a hill", "macro photo of a dewdrop on a leaf",
    "an anime girl with blue hair reading a book in a library, soft light",
    "still life with apples and a jug", "a futuristic train crossing a desert bridge",
]


def cfg_of(name):
    path = os.path.join(os.path.dirname(open_clip.__file__), "model_configs",
                        SHAPES[name] + ".json")
    return json.load(open(path))


def make(root):
    for name in SHAPES:
        d = os.path.join(root, name)
        if os.path.exists(os.path.join(d, "open_clip_model.safetensors")):
            continue
        os.makedirs(d, exist_ok=True)
        torch.manual_seed(0)
        m = CLIP(**cfg_of(name)).eval()
        save_file({k: v.contiguous() for k, v in m.state_dict().items()},
                  os.path.join(d, "open_clip_model.safetensors.tmp"))
        with open(os.path.join(d, "open_clip_config.json"), "w") as f:
            json.dump({"model_cfg": cfg_of(name)}, f)
        shutil.copy(default_bpe(), d)
        os.replace(os.path.join(d, "open_clip_model.safetensors.tmp"),
                   os.path.join(d, "open_clip_model.safetensors"))
    print("ok")


def timeit(root, name, kind, batch, threads, seconds):
    torch.set_num_threads(threads)
    m = CLIP(**cfg_of(name)).eval()
    m.load_state_dict(load_file(os.path.join(root, name, "open_clip_model.safetensors")))
    size = cfg_of(name)["vision_cfg"]["image_size"]
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(batch, 3, size, size, generator=g)
    tok = SimpleTokenizer()
    ids = tok([PROMPTS[i % len(PROMPTS)] for i in range(batch)])
    run = (lambda: m.encode_image(pixels)) if kind == "image" else (lambda: m.encode_text(ids))
    with torch.inference_mode():
        run()
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            run()
            n += batch
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        cpu = time.process_time() - c0  # every thread of the process
    print("%.6f %.6f" % (n / dt, n / cpu))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        timeit(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]),
               float(sys.argv[7]))
