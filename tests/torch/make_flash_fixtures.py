#!/usr/bin/env python3
"""Write the PyTorch reference fixtures for tests/engine/test_nn_flash.c.

Each case runs torch.nn.functional.scaled_dot_product_attention in float64 on float32 inputs
(so the reference carries no float32 rounding of its own) with the masks easel's fused
attention supports: PyTorch's own is_causal (Tq == Tk), bottom-right causal for Tq != Tk and
per-batch valid key lengths (both as a boolean attn_mask), and a custom scale. It records
the inputs, the output, the log-sum-exp of the masked scaled scores per query, and the
gradients of sum(out * dout) with respect to q, k and v.

Layout as nn_flash.h: q (B, Tq, NH*hd), k and v (B, Tk, NH*hd), lse (B, NH, Tq).

Run from the repository root:  python3 tests/torch/make_flash_fixtures.py
Writes tests/fixtures/flash/cases.txt. `make test` only reads it; it never runs Python.

File format, one item per line:
  case NAME B NH Tq Tk hd causal scale   (causal: 0, 1; scale 0 = 1/sqrt(hd))
  key_len L0 L1 ...                      (only when the case has key lengths)
  NAME N v0 v1 ... v(N-1)                for q k v dout o lse dq dk dv, in that order
  end
"""
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "flash")

# name, B, NH, Tq, Tk, hd, causal, key_len, scale
CASES = [
    ("self_tiles", 1, 1, 130, 130, 4, 0, None, 0.0),  # two query and two key tiles
    ("cross_keylen", 2, 2, 9, 140, 4, 0, [140, 23], 0.0),
    ("causal_torch", 1, 2, 77, 77, 4, 1, None, 0.0),
    ("causal_cross_keylen", 2, 1, 5, 140, 4, 1, [140, 131], 0.0),
    ("hd128_scale", 1, 1, 6, 6, 128, 0, None, 0.3),
    ("one_query", 3, 4, 1, 9, 4, 0, [9, 3, 1], 0.0),
]


def fmt(name, t):
    vals = t.detach().to(torch.float32).reshape(-1).tolist()
    return name + " " + str(len(vals)) + " " + " ".join("%.8g" % v for v in vals)


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(14)
    lines = []
    for name, B, NH, Tq, Tk, hd, causal, key_len, scale in CASES:
        C = NH * hd
        q32 = torch.randn(B, Tq, C, generator=g)
        k32 = torch.randn(B, Tk, C, generator=g)
        v32 = torch.randn(B, Tk, C, generator=g)
        do32 = torch.randn(B, Tq, C, generator=g)
        q, k, v, do = (t.double().requires_grad_(True) for t in (q32, k32, v32, do32))

        def heads(x, T):
            return x.view(B, T, NH, hd).transpose(1, 2)

        qh, kh, vh = heads(q, Tq), heads(k, Tk), heads(v, Tk)
        s = scale if scale else 1.0 / hd ** 0.5
        allowed = torch.ones(B, 1, Tq, Tk, dtype=torch.bool)
        if causal:
            i = torch.arange(Tq).view(Tq, 1)
            j = torch.arange(Tk).view(1, Tk)
            allowed &= (j <= i + (Tk - Tq)).view(1, 1, Tq, Tk)
        if key_len is not None:
            j = torch.arange(Tk).view(1, Tk)
            allowed &= (j < torch.tensor(key_len).view(B, 1)).view(B, 1, 1, Tk)
        if causal and Tq == Tk and key_len is None:
            oh = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, scale=s)
        elif causal or key_len is not None:
            oh = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=allowed, scale=s)
        else:
            oh = F.scaled_dot_product_attention(qh, kh, vh, scale=s)
        o = oh.transpose(1, 2).reshape(B, Tq, C)
        scores = (qh @ kh.transpose(-1, -2)) * s
        scores = scores.masked_fill(~allowed, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)  # (B, NH, Tq)
        (o * do).sum().backward()
        lines.append("case %s %d %d %d %d %d %d %.8g" % (name, B, NH, Tq, Tk, hd, causal, scale))
        if key_len is not None:
            lines.append("key_len " + " ".join(str(x) for x in key_len))
        for nm, t in (("q", q32), ("k", k32), ("v", v32), ("dout", do32), ("o", o),
                      ("lse", lse), ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)):
            lines.append(fmt(nm, t))
        lines.append("end")
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
