#!/usr/bin/env python3
"""PyTorch peer for bench/bench_train.c: training throughput of the original five-head reward
model (concat fusion, 768 + 768 inputs, heads Linear(1536,512)-LayerNorm-ReLU-Dropout-
Linear(512,256)-LayerNorm-ReLU-Dropout-Linear(256,1), softmax head weights), pairs objective
(Bradley-Terry per head on non-neutral labels + combined against the mean label), AdamW
lr 1e-4 wd 0.01 — one full training step per batch, on CPU.

Usage: bench_train_torch.py BATCH_PAIRS THREADS SECONDS
Prints one line: "pairs_per_s X".
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ASPECTS = ["spatial", "icono", "style", "fidelity", "material"]


class Head(nn.Module):
    def __init__(self, d_in):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(d_in, 512), nn.LayerNorm(512), nn.ReLU(), nn.Dropout(0.1),
            nn.Linear(512, 256), nn.LayerNorm(256), nn.ReLU(), nn.Dropout(0.1),
            nn.Linear(256, 1))

    def forward(self, x):
        return self.layers(x).squeeze(-1)


class Reward(nn.Module):
    def __init__(self, d_img, d_txt):
        super().__init__()
        self.heads = nn.ModuleDict({a: Head(d_img + d_txt) for a in ASPECTS})
        self.head_weights = nn.Parameter(torch.ones(5) * 0.2)

    def forward(self, img, txt):
        x = torch.cat([img, txt], dim=-1)
        s = torch.stack([self.heads[a](x) for a in ASPECTS], dim=-1)
        return s, (s * torch.softmax(self.head_weights, 0)).sum(-1)


def main():
    batch, threads, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Reward(768, 768)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    n_batches = 8
    data = []
    for _ in range(n_batches):
        img = F.normalize(torch.randn(2 * batch, 768), dim=-1)
        txt = F.normalize(torch.randn(batch, 768), dim=-1)
        txt = torch.cat([txt, txt])  # both images of a pair answer the same prompt
        labels = torch.randint(0, 3, (batch, 5)).float() / 2
        data.append((img, txt, labels))

    def step(img, txt, labels):
        s, c = model(img, txt)
        d = s[:batch] - s[batch:]
        dc = c[:batch] - c[batch:]
        loss = 0
        for h in range(5):
            m = labels[:, h] != 0.5
            if m.any():
                loss = loss + F.binary_cross_entropy_with_logits(d[m, h], labels[m, h])
        loss = loss + F.binary_cross_entropy_with_logits(dc, labels.mean(1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(3):
        step(*data[i % n_batches])
    n = 0
    t0 = time.perf_counter()
    while True:
        step(*data[n % n_batches])
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds and n >= 3:
            break
    print(f"pairs_per_s {n * batch / el:.3f}")


if __name__ == "__main__":
    main()
