"""Peer for bench_gpu.c: the same operations in PyTorch on the GPU; prints ms per call."""
import sys
import time

import torch

name = sys.argv[1]
a, b = (int(sys.argv[2]), int(sys.argv[3])) if name != "attention" else (0, 0)
assert torch.cuda.is_available()
dev = "cuda"
torch.backends.cuda.matmul.allow_tf32 = False
REPS = 50


def timed(fn):
    for _ in range(2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(REPS):
            fn()
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3 / REPS


if name == "layernorm":
    x = torch.randn(a, b, device=dev, requires_grad=True)
    ln = torch.nn.LayerNorm(b).to(dev)
    g = torch.randn(a, b, device=dev)

    def step():
        y = ln(x)
        y.backward(g)
    print(timed(step))
elif name == "groupnorm":  # a = channels, b = H*W; batch 2, 32 groups (bench_gpu.c)
    x = torch.randn(2, a, b, device=dev, requires_grad=True)
    gn = torch.nn.GroupNorm(32, a).to(dev)
    g = torch.randn(2, a, b, device=dev)

    def step():
        y = gn(x)
        y.backward(g)
    print(timed(step))
elif name == "softmax":
    x = torch.randn(a, b, device=dev, requires_grad=True)
    g = torch.randn(a, b, device=dev)

    def step():
        y = torch.softmax(x, dim=-1)
        y.backward(g)
    print(timed(step))
elif name == "matmul":
    x = torch.randn(a, b, device=dev)
    w = torch.randn(512, b, device=dev)
    print(timed(lambda: torch.nn.functional.linear(x, w)))
elif name == "adamw":
    p = torch.zeros(a, device=dev, requires_grad=True)
    p.grad = torch.randn(a, device=dev)
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01, foreach=False, fused=True)
    print(timed(opt.step))
elif name == "attention":  # B NH T hd causal dtype: SDPA forward + backward, (B, T, NH*hd) rows
    B, NH, T, hd, causal = (int(x) for x in sys.argv[2:7])
    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[sys.argv[7]]
    C = NH * hd
    q, k, v = (torch.randn(B, T, C, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
    g = torch.randn(B, T, C, device=dev, dtype=dt)

    def heads(x):
        return x.view(B, T, NH, hd).transpose(1, 2)

    def step():
        o = torch.nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v),
                                                             is_causal=bool(causal))
        o.transpose(1, 2).reshape(B, T, C).backward(g)
    REPS = 10
    print(timed(step))
