#!/usr/bin/env python3
"""Make the safetensors interchange fixtures for tests/io/test_safetensors.c.

Writes, with the reference `safetensors` Python package (pip install safetensors torch):
  tests/fixtures/safetensors/py_mixed.safetensors  every dtype easel reads, special values,
                                                   a scalar, an empty tensor, metadata
  tests/fixtures/safetensors/py_mixed.json         the same tensors as float32 values, to
                                                   check our conversion against torch's
With --check FILE it instead loads FILE (e.g. one easel wrote) with the package and prints
its tensors, failing if the package refuses it.  Run from the repository root:
  python3 tests/safetensors/make_fixtures.py
"""
import json
import math
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

OUT = os.path.join("tests", "fixtures", "safetensors")


def tensors():
    g = torch.Generator().manual_seed(7)
    t = {}
    t["w.f32"] = torch.randn(3, 4, generator=g)
    t["w.f64"] = torch.randn(2, 3, generator=g, dtype=torch.float64)
    special = [0.0, -0.0, 1.0, -2.5, 65504.0, 5.960464477539063e-08, 1e-5, 3.14159,
               float("inf"), float("-inf"), float("nan"), 1e-3]
    t["special.f16"] = torch.tensor(special, dtype=torch.float16)
    t["special.bf16"] = torch.tensor(special + [3e38, -1e-38], dtype=torch.bfloat16)
    t["w.f16"] = torch.randn(5, 2, generator=g).to(torch.float16)
    t["w.bf16"] = torch.randn(2, 2, 2, generator=g).to(torch.bfloat16)
    t["i64"] = torch.tensor([-3, 0, 7, 1 << 40], dtype=torch.int64)
    t["i32"] = torch.tensor([[-100000, 5], [0, 2147483647]], dtype=torch.int32)
    t["i16"] = torch.tensor([-32768, 12], dtype=torch.int16)
    t["i8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    t["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    t["bool"] = torch.tensor([True, False, True])
    t["f8e4m3"] = torch.tensor([0.0, 1.5, -448.0, 0.013671875, 2.0 ** -9], dtype=torch.float8_e4m3fn)
    t["f8e5m2"] = torch.tensor([0.0, 1.5, -57344.0, 2.0 ** -16], dtype=torch.float8_e5m2)
    t["scalar"] = torch.tensor(2.75)
    t["empty"] = torch.zeros(0, 4)
    t["visual.π.weight"] = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4
    return t


def num(x):
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        with safe_open(sys.argv[2], framework="pt") as f:
            print("metadata", f.metadata())
            for k in f.keys():
                v = f.get_tensor(k)
                print(k, v.dtype, list(v.shape), v.float().flatten()[:8].tolist())
        return
    os.makedirs(OUT, exist_ok=True)
    t = tensors()
    meta = {"format": "pt", "note": "easel fixture, café ☕", "aspects": "spatial,icono"}
    save_file(t, os.path.join(OUT, "py_mixed.safetensors"), metadata=meta)
    expect = {"__metadata__": meta}
    for k, v in t.items():
        expect[k] = {
            "dtype": str(v.dtype).replace("torch.", ""),
            "shape": list(v.shape),
            "values": [num(x) for x in v.to(torch.float32).flatten().tolist()],
        }
    with open(os.path.join(OUT, "py_mixed.json"), "w", encoding="utf-8") as f:
        json.dump(expect, f, ensure_ascii=False, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
