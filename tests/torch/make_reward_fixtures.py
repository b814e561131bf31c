#!/usr/bin/env python3
"""Write the PyTorch reference fixtures for tests/models/test_model_reward.c.

The five-head reward model as the original built it (nn.Sequential heads with the
original's layer indices, head_weights, nn.MultiheadAttention for cross_attention), at small
widths so the fixtures stay small. For each fusion (concat, add, cross_attention) it records
the initial parameters (by the original's state_dict names), inputs, per-head and combined
scores, the pairs losses (Bradley-Terry per head on non-neutral labels, combined against the
mean label, the irrelevant-prompt term), every parameter gradient, the parameters after one
torch.optim.AdamW step, and the regression objective's losses and gradients.

Run from the repository root:  python3 tests/torch/make_reward_fixtures.py
Writes tests/fixtures/model_reward/{concat,add,cross_attention,concat_paired}.json
(concat_paired: both images of each pair share their prompt, the case easel's model computes
the text half of the first layer once per pair for). `make test` only reads
the JSON; it never runs Python.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

ASPECTS = ["spatial", "icono", "style", "fidelity", "material"]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "model_reward")


class Head(nn.Module):
    def __init__(self, d_in, h1, h2, p):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(d_in, h1), nn.LayerNorm(h1), nn.ReLU(), nn.Dropout(p),
            nn.Linear(h1, h2), nn.LayerNorm(h2), nn.ReLU(), nn.Dropout(p),
            nn.Linear(h2, 1))

    def forward(self, x):
        return self.layers(x).squeeze(-1)


class Reward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d_in = cfg["dim_img"] + cfg["dim_txt"] if cfg["fusion"] == "concat" else cfg["dim_img"]
        self.heads = nn.ModuleDict(
            {a: Head(d_in, cfg["hidden1"], cfg["hidden2"], 0.1) for a in ASPECTS})
        self.head_weights = nn.Parameter(torch.ones(5) * 0.2)
        if cfg["fusion"] == "cross_attention":
            self.cross_attention = nn.MultiheadAttention(cfg["dim_img"], cfg["attn_heads"],
                                                         batch_first=True)

    def forward(self, img, txt):
        pooled = img[:, 0]
        f = self.cfg["fusion"]
        if f == "concat":
            x = torch.cat([pooled, txt], dim=-1)
        elif f == "add":
            x = pooled + txt
        else:
            keys = img[:, 1:] if img.shape[1] > 1 else img[:, :1]
            att, _ = self.cross_attention(txt[:, None], keys, keys, need_weights=False)
            x = pooled + att[:, 0]
        scores = torch.stack([self.heads[a](x) for a in ASPECTS], dim=-1)
        combined = (scores * torch.softmax(self.head_weights, 0)).sum(-1)
        return scores, combined


def bce(d, y):
    return F.binary_cross_entropy_with_logits(d, y, reduction="none")


def pairs_loss(scores, combined, labels, irrelevant, w_irr):
    P = labels.shape[0]
    d = scores[:P] - scores[P:]
    dc = combined[:P] - combined[P:]
    rel = irrelevant == 0
    heads = []
    for h in range(5):
        m = rel & (labels[:, h] != 0.5)
        heads.append(bce(d[m, h], labels[m, h]).mean() if m.any() else d.sum() * 0)
    yc = labels.mean(1)
    comb = bce(dc[rel], yc[rel]).mean()
    irr = ~rel
    if irr.any() and w_irr != 0:
        per = bce(d[irr], torch.full_like(d[irr], 0.5)).sum(1) + bce(dc[irr], torch.full_like(dc[irr], 0.5))
        irr_loss = w_irr * per.mean()
    else:
        irr_loss = dc.sum() * 0
    total = sum(heads) + comb + irr_loss
    return heads, comb, irr_loss, total


def regression_loss(scores, ratings):
    heads = []
    for h in range(5):
        m = ~torch.isnan(ratings[:, h])
        heads.append(((scores[m, h] - ratings[m, h]) ** 2).mean())
    return heads, sum(heads)


def f9(v):
    """A float32 value in its shortest 9-significant-digit form (round-trips exactly)."""
    return float(f"{v:.9g}")


def flat(t):
    return [f9(v) for v in t.detach().reshape(-1).tolist()]


def make(fusion, seed, paired=False):
    torch.manual_seed(seed)
    cfg = {
        "fusion": fusion,
        "dim_img": 16 if fusion == "cross_attention" else 8,
        "dim_txt": 6 if fusion == "concat" else (16 if fusion == "cross_attention" else 8),
        "img_rows": 5 if fusion == "cross_attention" else 1,
        "attn_heads": 8,
        "hidden1": 16,
        "hidden2": 8,
        "n_pairs": 3,
        "lr": 1e-2,
        "weight_decay": 0.01,
        "irrelevant_weight": 0.7,
    }
    N = 2 * cfg["n_pairs"]
    model = Reward(cfg)
    # scale head_weights away from uniform so the softmax gradient is exercised
    with torch.no_grad():
        model.head_weights.copy_(torch.tensor([0.2, 0.5, -0.1, 0.3, 0.0]))
    model.eval()  # dropout off: the C side runs the forward with train = 0
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    img = torch.randn(N, cfg["img_rows"], cfg["dim_img"])
    txt = torch.randn(N, cfg["dim_txt"])
    if paired:  # both images of a pair under the same prompt, as pairs from ratings are
        txt = torch.cat([txt[: N // 2], txt[: N // 2]])
    labels = torch.tensor([[1, 0, 0.5, 1, 0], [0, 0.5, 0.5, 1, 1], [1, 1, 0, 0.5, 0]],
                          dtype=torch.float32)
    irrelevant = torch.tensor([0, 0, 1], dtype=torch.uint8)

    scores, combined = model(img, txt)
    heads, comb, irr, total = pairs_loss(scores, combined, labels, irrelevant,
                                         cfg["irrelevant_weight"])
    total.backward()
    grads = {k: flat(p.grad) for k, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    opt.step()
    after = {k: flat(v) for k, v in model.state_dict().items()}

    # regression objective on a fresh copy of the initial parameters
    model.load_state_dict(init)
    model.zero_grad(set_to_none=True)
    ratings = torch.rand(N, 5) * 10
    ratings[1, 2] = float("nan")
    ratings[4, 0] = float("nan")
    rscores, _ = model(img, txt)
    rheads, rtotal = regression_loss(rscores, ratings)
    rtotal.backward()
    rgrads = {k: flat(p.grad) if p.grad is not None else [0.0] * p.numel()
              for k, p in model.named_parameters()}

    return {
        "generator": "tests/torch/make_reward_fixtures.py, torch " + torch.__version__,
        "config": cfg,
        "params": {k: {"shape": list(v.shape), "data": flat(v)} for k, v in init.items()},
        "inputs": {
            "img": flat(img), "txt": flat(txt), "labels": flat(labels),
            "irrelevant": [int(v) for v in irrelevant.tolist()],
            "ratings": [None if math.isnan(v) else v for v in flat(ratings)],
        },
        "pairs": {
            "scores": flat(scores), "combined": flat(combined),
            "loss_head": [f9(h.item()) for h in heads], "loss_combined": f9(comb.item()),
            "loss_irrelevant": f9(irr.item()), "loss_total": f9(total.item()),
            "grads": grads, "params_after": after,
        },
        "regression": {
            "scores": flat(rscores), "loss_head": [f9(h.item()) for h in rheads],
            "loss_total": f9(rtotal.item()), "grads": rgrads,
        },
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    for i, name in enumerate(["concat", "add", "cross_attention", "concat_paired"]):
        fusion = "concat" if name == "concat_paired" else name
        fx = make(fusion, 100 + i, paired=name == "concat_paired")
        path = os.path.join(OUT, name + ".json")
        with open(path, "w") as f:
            json.dump(fx, f, separators=(",", ":"), allow_nan=False)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
