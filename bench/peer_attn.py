#!/usr/bin/env python3
"""PyTorch peer for bench/bench_attn.c: scaled_dot_product_attention forward + backward on
the CPU, float32, (B, heads, T, d), with a given thread count, for about `seconds`.

Usage: python3 bench/peer_attn.py B HEADS T D THREADS SECONDS
Prints "MS_PER_ITER PEAK_MB": milliseconds of the best forward+backward, and how far the resident
set's peak rose above the resident set before the timed loop (MB).
"""
import sys
import time

import torch
import torch.nn.functional as F


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main():
    B, H, T, D, threads = (int(x) for x in sys.argv[1:6])
    seconds = float(sys.argv[6])
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(B, H, T, D, generator=g, requires_grad=True)
    k = torch.randn(B, H, T, D, generator=g, requires_grad=True)
    v = torch.randn(B, H, T, D, generator=g, requires_grad=True)
    do = torch.randn(B, H, T, D, generator=g)

    def step():
        q.grad = k.grad = v.grad = None
        o = F.scaled_dot_product_attention(q, k, v)
        o.backward(do)

    step()  # warm-up
    peak_ok = reset_peak()
    base = status_kb("VmRSS")
    best = float("inf")
    t0 = time.perf_counter()
    while True:  # the best iteration, as bench_attn.c times its own
        t1 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t1)
        if time.perf_counter() - t0 >= seconds:
            break
    ms = best * 1000.0
    peak = (status_kb("VmHWM") - base) / 1024.0 if peak_ok else -1.0
    print("%.4f %.2f" % (ms, peak))


if __name__ == "__main__":
    main()
