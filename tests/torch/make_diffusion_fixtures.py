#!/usr/bin/env python3
"""Write the PyTorch / diffusers reference fixtures for tests/engine/test_nn_diffusion.c.

For each op of src/engine/nn_diffusion.h, on small random shapes: the inputs, the forward output
and, for the ops with a backward, a random upstream gradient `dout` and the gradients of
every input and weight (torch.autograd on L = sum(out * dout)). GEGLU and the timestep
embedding come from diffusers itself (diffusers.models.activations.GEGLU's split, and
diffusers.models.embeddings.get_timestep_embedding), so easel follows diffusers' conventions.

Run from the repository root:
    ${EASEL_PY:-python3} tests/torch/make_diffusion_fixtures.py
(needs torch and diffusers). Writes tests/fixtures/nn_diffusion/ref.bin; `make test` only
reads it, it never runs Python.

ref.bin is a sequence of records, little-endian, read by tests/engine/test_nn_diffusion.c:
    u32 name_len, name (ASCII, no NUL), u32 n_dims, u32 dims[n_dims], f32 data[prod(dims)]
Names are "<case>.<tensor>", e.g. "conv3_s1.x", "conv3_s1.dw".
"""
import os
import struct

import torch
import torch.nn.functional as F
from diffusers.models.activations import GEGLU
from diffusers.models.embeddings import get_timestep_embedding

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "nn_diffusion")
records = []


def put(name, t):
    t = t.detach().to(torch.float32).contiguous()
    records.append((name, list(t.shape), t.flatten().tolist()))


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.float32, requires_grad=True)


def grads(out, *inputs):
    dout = torch.randn_like(out)
    ins = [t for t in inputs if t is not None]
    g = torch.autograd.grad((out * dout).sum(), ins)
    return dout, g


def conv_case(name, B, C, H, W, OC, K, stride, pad, bias):
    x, w = leaf(B, C, H, W), leaf(OC, C, K, K)
    b = leaf(OC) if bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=pad)
    dout, g = grads(y, x, w, b)
    put(name + ".shape", torch.tensor([B, C, H, W, OC, K, stride, pad, int(bias)],
                                      dtype=torch.float32))
    put(name + ".x", x)
    put(name + ".w", w)
    if bias:
        put(name + ".b", b)
    put(name + ".y", y)
    put(name + ".dout", dout)
    put(name + ".dx", g[0])
    put(name + ".dw", g[1])
    if bias:
        put(name + ".db", g[2])


def groupnorm_case(name, B, C, H, W, G, eps, affine):
    x = (torch.randn(B, C, H, W) * 1.7 + 0.4).requires_grad_(True)
    w, b = (leaf(C), leaf(C)) if affine else (None, None)
    y = F.group_norm(x, G, w, b, eps)
    dout, g = grads(y, x, w, b)
    put(name + ".shape", torch.tensor([B, C, H * W, G, eps, int(affine)], dtype=torch.float32))
    put(name + ".x", x)
    if affine:
        put(name + ".w", w)
        put(name + ".b", b)
    put(name + ".y", y)
    put(name + ".dout", dout)
    put(name + ".dx", g[0])
    if affine:
        put(name + ".dw", g[1])
        put(name + ".db", g[2])


def ramp(n, mult, mod):
    """Values in [-1, 1] from integers, exact in f32 on both sides: tests/engine/test_nn_diffusion.c
    makes the same ones, so only the results need storing."""
    i = torch.arange(n, dtype=torch.int64)
    return ((i * mult) % mod - mod // 2).float() / (mod // 2)


def conv_wino_case():
    """A conv big enough for easel's Winograd path (16 channels in and out, a 32×32 output):
    inputs from ramp(), results stored whole for the weights and every 7th value of the
    (1,16,32,32) output and input gradient, to keep the file small."""
    x = ramp(16 * 32 * 32, 7919, 2001).reshape(1, 16, 32, 32).requires_grad_(True)
    w = (ramp(16 * 16 * 9, 104729, 1999) * 0.1).reshape(16, 16, 3, 3).requires_grad_(True)
    b = ramp(16, 31, 17).requires_grad_(True)
    y = F.conv2d(x, w, b, padding=1)
    dout = ramp(16 * 32 * 32, 6007, 1003).reshape(1, 16, 32, 32)
    g = torch.autograd.grad((y * dout).sum(), [x, w, b])
    put("conv_wino.y7", y.flatten()[::7])
    put("conv_wino.dx7", g[0].flatten()[::7])
    put("conv_wino.dw", g[1])
    put("conv_wino.db", g[2])


def pointwise_case(name, fn):
    x = (torch.randn(97) * 3.0).requires_grad_(True)
    y = fn(x)
    dout, g = grads(y, x)
    put(name + ".x", x)
    put(name + ".y", y)
    put(name + ".dout", dout)
    put(name + ".dx", g[0])


def geglu_case(name, N, C, approximate):
    """diffusers' GEGLU without its projection: an identity Linear(2C, 2C) in front, so the
    module's own chunk-and-gate runs on x as is."""
    m = GEGLU(2 * C, C)
    with torch.no_grad():
        m.proj.weight.copy_(torch.eye(2 * C))
        m.proj.bias.zero_()
    if approximate == "tanh":
        m.gelu = lambda gate: F.gelu(gate, approximate="tanh")
    x = (torch.randn(N, 2 * C) * 2.0).requires_grad_(True)
    y = m(x)
    dout, g = grads(y, x)
    put(name + ".shape", torch.tensor([N, C], dtype=torch.float32))
    put(name + ".x", x)
    put(name + ".y", y)
    put(name + ".dout", dout)
    put(name + ".dx", g[0])


def main():
    torch.manual_seed(20261206)
    conv_case("conv3_s1", 2, 3, 5, 6, 4, 3, 1, 1, True)
    conv_case("conv3_s2", 1, 4, 7, 8, 5, 3, 2, 1, True)
    conv_case("conv3_p0", 1, 2, 6, 6, 3, 3, 1, 0, False)
    conv_case("conv1", 2, 6, 4, 5, 3, 1, 1, 0, True)
    conv_case("conv1_s2", 1, 3, 5, 5, 2, 1, 2, 0, True)

    groupnorm_case("gn_affine", 2, 8, 5, 5, 4, 1e-6, True)
    groupnorm_case("gn_plain", 1, 6, 3, 7, 2, 1e-5, False)

    pointwise_case("silu", F.silu)
    pointwise_case("gelu_erf", F.gelu)
    pointwise_case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"))
    geglu_case("geglu_erf", 3, 5, "none")
    geglu_case("geglu_tanh", 4, 3, "tanh")

    x = leaf(2, 3, 3, 4)
    y = F.interpolate(x, scale_factor=2.0, mode="nearest")
    dout, g = grads(y, x)
    for k, v in (("x", x), ("y", y), ("dout", dout), ("dx", g[0])):
        put("up." + k, v)

    t = torch.tensor([0.0, 1.0, 17.0, 500.0, 999.0, 3.5])
    put("temb.t", t)
    # SD / SDXL's time_proj: Timesteps(320, flip_sin_to_cos=True, downscale_freq_shift=0)
    put("temb_sd.y", get_timestep_embedding(t, 320, flip_sin_to_cos=True,
                                            downscale_freq_shift=0))
    # the defaults, an odd width (zero-padded column), another scale and period
    put("temb_odd.y", get_timestep_embedding(t, 33, flip_sin_to_cos=False,
                                             downscale_freq_shift=1, scale=2.0,
                                             max_period=5000))

    a, b = leaf(2, 3, 2, 2), leaf(2, 5, 2, 2)
    y = torch.cat([a, b], dim=1)
    dout, g = grads(y, a, b)
    for k, v in (("a", a), ("b", b), ("y", y), ("dout", dout), ("da", g[0]), ("db", g[1])):
        put("cat." + k, v)

    p, q = leaf(2, 4, 3, 3), leaf(2, 4, 3, 3)
    loss = F.mse_loss(p, q)
    dp, dq = torch.autograd.grad(loss * 0.7, [p, q])
    for k, v in (("pred", p), ("target", q), ("loss", loss.reshape(1)), ("dpred", dp),
                 ("dtarget", dq)):
        put("mse." + k, v)

    # conv2d takes a direct path up to 4 output channels and im2col + GEMM above: the
    # geometries above again with more output channels
    conv_case("conv3_s1_wide", 2, 3, 5, 6, 6, 3, 1, 1, True)
    conv_case("conv3_p0_wide", 1, 2, 6, 6, 6, 3, 1, 0, False)
    conv_case("conv1_s2_wide", 1, 3, 5, 5, 5, 1, 2, 0, True)
    conv_case("conv3_s2_narrow", 2, 4, 7, 8, 3, 3, 2, 1, True)
    conv_wino_case()

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "ref.bin")
    with open(path, "wb") as f:
        for name, shape, data in records:
            nb = name.encode("ascii")
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<I", len(shape)))
            f.write(struct.pack("<%dI" % len(shape), *shape))
            f.write(struct.pack("<%df" % len(data), *data))
    print("wrote", path, len(records), "tensors", os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
