#!/usr/bin/env python3
"""PyTorch peer of bench/bench_ops.c: the same diffusion ops on CPU, the same shapes and
thread count. Prints one line per op:  NAME MS  (milliseconds, fastest iteration).

usage: peer_ops.py THREADS SECONDS
"""
import sys
import time

import torch
import torch.nn.functional as F


def timed(fn, seconds):
    """The fastest iteration after a warm-up, as bench_ops.c times its own."""
    fn()
    n, t0, best = 0, time.perf_counter(), float("inf")
    while True:
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        best = min(best, t2 - t1)
        n += 1
        if t2 - t0 >= seconds and n >= 3:
            return best * 1e3


def main():
    threads, seconds = int(sys.argv[1]), float(sys.argv[2])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    B, C, H, W, G = 1, 320, 64, 64, 32
    x = torch.randn(B, C, H, W, requires_grad=True)
    w = (torch.randn(C, C, 3, 3) * 0.02).requires_grad_(True)
    b = torch.randn(C, requires_grad=True)
    gw = torch.randn(C, requires_grad=True)
    gb = torch.randn(C, requires_grad=True)
    dout = torch.randn(B, C, H, W)

    def conv_fwd():
        with torch.no_grad():
            F.conv2d(x, w, b, padding=1)

    def conv_train():
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b, padding=1).backward(dout)

    def gn_fwd():
        with torch.no_grad():
            F.group_norm(x, G, gw, gb, 1e-5)

    def gn_train():
        x.grad = gw.grad = gb.grad = None
        F.group_norm(x, G, gw, gb, 1e-5).backward(dout)

    for name, fn in (("conv2d-3x3-fwd", conv_fwd), ("conv2d-3x3-train", conv_train),
                     ("groupnorm-fwd", gn_fwd), ("groupnorm-train", gn_train)):
        print(name, "%.4f" % timed(fn, seconds), flush=True)


if __name__ == "__main__":
    main()
