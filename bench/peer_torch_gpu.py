"""Peer for bench_gpu.c: the same operations in PyTorch on the GPU; prints ms per call."""
import sys
import time

import torch

name, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
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
