#!/usr/bin/env python3
"""Make the fixtures of tests/gen/ (committed; `make test` never runs Python).

Run from the repository root with the project's Python (torch, diffusers 0.42.1):

    /work/wt/make/build/venv/bin/python tests/gen/make_fixtures.py

Writes tests/gen/fixtures/:
  rng_cpu.json        torch.randn on torch.Generator("cpu") for several seeds and sizes, with
                      successive draws on one generator, for torch's AVX2 kernel (x86-64 with
                      AVX2 or AVX-512) and, run again with ATEN_CPU_CAPABILITY=default, for its
                      generic kernel (values as uint32 bit patterns: the test compares bits)
  rng_philox.json     cuRAND's Philox4x32-10 words and normals from its host API, by the C program
                      tests/gen/make_philox_fixture.c (built here with the CUDA toolkit's
                      -lcurand; CUDA=/usr/local/cuda or $CUDA_HOME)
  sched_NAME.config.json   a scheduler config as model folders ship them
  sched_cases.json    per case (config, kind, steps, seed; PNDM too): diffusers' timesteps, sigmas,
                      init_noise_sigma and the latents after every step, for the fixed model
                      output mo = in * (0.3 + t / 2000) + c[k], c[k] = (k % 7) * 0.1 - 0.3
                      (in: the scaled model input; the same function is in test_scheduler.c)
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, PNDMScheduler)
from diffusers.utils.torch_utils import randn_tensor

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

# ---- RNG ---------------------------------------------------------------------------------------

RNG_SEEDS = [0, 1, 42, 1234567, 2**32 + 5, 2**63 + 11]
# each entry: the sizes of successive torch.randn calls on one freshly seeded generator
RNG_DRAWS = [[1], [2], [3], [15], [16], [17], [31], [33], [100], [256], [3, 3, 5], [1, 16, 1],
             [15, 17, 2, 40], [256, 256, 256]]
RNG_BIG = (7, 4 * 32 * 32)  # one seed, SD latents at 256²: every value compared too


def bits(t):
    return [int(v) for v in t.numpy().view(np.uint32)]


def rng_cases():
    cases = []
    for seed in RNG_SEEDS:
        for draws in RNG_DRAWS:
            g = torch.Generator("cpu").manual_seed(seed)
            cases.append({"seed": str(seed),
                          "draws": [bits(torch.randn(n, generator=g)) for n in draws]})
    g = torch.Generator("cpu").manual_seed(RNG_BIG[0])
    cases.append({"seed": str(RNG_BIG[0]), "draws": [bits(torch.randn(RNG_BIG[1], generator=g))]})
    return cases


def batch_case():
    """diffusers' randn_tensor with a list of generators (seeds 5, 6), called twice (the
    initial latents, then an ancestral step's noise), shape (2, 4, 4, 2)."""
    gens = [torch.Generator("cpu").manual_seed(s) for s in (5, 6)]
    draws = [bits(randn_tensor((2, 4, 4, 2), generator=gens, dtype=torch.float32).flatten())
             for _ in range(2)]
    return {"seeds": [5, 6], "per_item": 32, "draws": draws}


def rng_fixture():
    if os.environ.get("EASEL_RNG_CHILD"):
        json.dump(rng_cases(), sys.stdout)
        return None
    out = {"torch": torch.__version__}
    for name, cap in (("avx2", None), ("generic", "default")):
        env = dict(os.environ, EASEL_RNG_CHILD="1")
        if cap:
            env["ATEN_CPU_CAPABILITY"] = cap
        else:
            env.pop("ATEN_CPU_CAPABILITY", None)
        txt = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, check=True,
                             capture_output=True, text=True).stdout
        out[name] = json.loads(txt)
    out["batch"] = batch_case()
    return out


def philox_fixture():
    cuda = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    exe = os.path.join(OUT, ".make_philox_fixture")
    subprocess.run(["cc", "-std=c11", "-O2", "-I" + os.path.join(cuda, "include"), "-o", exe,
                    os.path.join(HERE, "make_philox_fixture.c"), "-L" + os.path.join(cuda, "lib64"),
                    "-Wl,-rpath," + os.path.join(cuda, "lib64"), "-lcurand"], check=True)
    try:
        txt = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    finally:
        os.remove(exe)
    json.loads(txt)
    return txt


# ---- schedulers --------------------------------------------------------------------------------

CONFIGS = {
    # SD 1.5's scheduler folder (PNDM), no timestep_spacing key: each class's default applies
    "sd15": {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
             "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
             "trained_betas": None, "clip_sample": False},
    # SDXL base 1.0
    "sdxl": {"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.19.0.dev0",
             "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
             "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
             "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
             "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading",
             "trained_betas": None, "use_karras_sigmas": False},
    # SDXL Turbo / SD-Turbo: trailing spacing, one step
    "turbo": {"_class_name": "EulerAncestralDiscreteScheduler", "_diffusers_version": "0.24.0.dev0",
              "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
              "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
              "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
              "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "trailing",
              "trained_betas": None, "use_karras_sigmas": False},
    # SD 2.1 (768, v-prediction)
    "vpred": {"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
              "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
              "num_train_timesteps": 1000, "prediction_type": "v_prediction",
              "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
              "trained_betas": None},
    # the other options: linear / cosine betas, sample prediction, clipping, final sigma_min
    "linear": {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
               "timestep_spacing": "linspace", "clip_sample": True, "clip_sample_range": 1.5,
               "final_sigmas_type": "sigma_min"},
    "cosine": {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "trailing",
               "prediction_type": "sample", "clip_sample": True},
    "heun": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
             "solver_type": "heun", "lower_order_final": False, "timestep_spacing": "leading",
             "steps_offset": 1, "final_sigmas_type": "sigma_min"},
    # zero terminal SNR (Lin et al.), as v-prediction fine-tunes of SD 2.x ship it
    "zerosnr": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                "timestep_spacing": "trailing", "clip_sample": False, "set_alpha_to_one": False},
    "eulerfinal": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                   "euler_at_final": True, "use_karras_sigmas": True, "sigma_min": 0.1,
                   "sigma_max": 10.0, "lambda_min_clipped": -5.1},
    # PNDM with its Runge-Kutta warm-up (no skip_prk_steps), v-prediction, alpha 1 at the end
    "prk": {"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear",
            "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1,
            "set_alpha_to_one": True, "prediction_type": "v_prediction"},
}

# a config exactly as diffusers saves it (save_config / to_json_string): every key of the
# class, and "lambda_min_clipped": -Infinity, which is Python's JSON, not JSON
CONFIGS["dpmsaved"] = json.loads(DPMSolverMultistepScheduler.from_config(
    CONFIGS["sdxl"], use_karras_sigmas=True, solver_type="heun").to_json_string())

CLASSES = {"euler": EulerDiscreteScheduler, "euler_a": EulerAncestralDiscreteScheduler,
           "ddim": DDIMScheduler, "dpmpp_2m": DPMSolverMultistepScheduler,
           "dpmpp_2m_karras": DPMSolverMultistepScheduler, "pndm": PNDMScheduler}
ALL = list(CLASSES)

# (config, kinds, step counts)
CASES = [
    ("sd15", ALL, [20]),
    ("sd15", ["euler", "dpmpp_2m"], [50]),
    ("sdxl", ALL, [30, 7]),
    ("turbo", ["euler_a", "euler", "ddim", "dpmpp_2m"], [1, 4]),
    ("vpred", ALL, [25]),
    ("linear", ALL, [10, 16]),
    # euler_a has no "sample" prediction; Karras sigmas of the cosine schedule repeat
    # timestep 998, and diffusers then steps past its last sigma
    ("cosine", ["euler", "ddim", "dpmpp_2m"], [12]),
    # (Karras sigmas end at sigma_min, and final_sigmas_type sigma_min repeats it: h = 0, NaN)
    ("heun", ["dpmpp_2m"], [20, 10]),
    ("eulerfinal", ["euler", "dpmpp_2m", "dpmpp_2m_karras"], [9, 20]),
    ("dpmsaved", ["dpmpp_2m", "dpmpp_2m_karras", "euler"], [15]),
    ("sd15", ["ddim@0.5"], [20]),  # DDIM with eta 0.5: noise from the generator every step
    ("zerosnr", ALL, [10]),
    ("zerosnr", ["euler", "euler_a", "ddim", "dpmpp_2m"], [25]),  # Karras: 999 twice, as above
    # PNDM (SD 1.5's own): PLMS from 1 step (one UNet call) up, each warm-up formula; trailing
    # spacing; v-prediction; and the Runge-Kutta warm-up (at least 4 steps in diffusers)
    ("sd15", ["pndm"], [1, 2, 3, 4, 50]),
    ("turbo", ["pndm"], [1, 4, 7]),
    ("vpred", ["pndm"], [2, 4, 50]),
    ("prk", ["pndm"], [4, 9]),
]

SHAPE = (1, 4, 4, 2)
SEED = 3


def f32list(t):
    """float32 values in their shortest decimal form (read back exactly through a double)."""
    vals = t.detach().numpy().astype(np.float32).ravel()
    out = [float(str(v)) for v in vals]
    if np.isnan(vals).any():
        raise ValueError("NaN in a fixture")
    bad = np.array(out, dtype=np.float32) != vals
    assert not bad.any(), (vals[bad], [out[i] for i in np.nonzero(bad)[0]])
    return out


def fixed_output(inp, t):
    a = torch.tensor(np.float32(0.3 + float(t) / 2000.0))
    k = np.arange(inp.numel())
    c = torch.from_numpy(((k % 7) * 0.1 - 0.3).astype(np.float32)).reshape(inp.shape)
    return inp * a + c


def run_case(cfg, kind, steps, eta=0.0):
    extra = {"use_karras_sigmas": True} if kind == "dpmpp_2m_karras" else {}
    sch = CLASSES[kind].from_config(cfg, **extra)
    sch.set_timesteps(steps)
    g = torch.Generator("cpu").manual_seed(SEED)
    x = torch.randn(SHAPE, generator=g) * sch.init_noise_sigma
    out = {"timesteps": f32list(sch.timesteps.float()),
           "init_noise_sigma": float(str(np.float32(sch.init_noise_sigma))),
           "initial": f32list(x), "latents": []}
    if hasattr(sch, "sigmas") and kind != "ddim":
        out["sigmas"] = f32list(sch.sigmas)
    for t in sch.timesteps:
        inp = sch.scale_model_input(x, t)
        mo = fixed_output(inp, t)
        kw = {"generator": g} if kind in ("euler_a",) else {}
        if eta:
            kw = {"generator": g, "eta": eta}
        x = sch.step(mo, t, x, **kw).prev_sample
        out["latents"].append(f32list(x))
    return out


def main():
    if os.environ.get("EASEL_RNG_CHILD"):
        rng_fixture()
        return
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "rng_cpu.json"), "w") as f:
        json.dump(rng_fixture(), f, separators=(",", ":"))
    try:
        philox = philox_fixture()
    except (OSError, subprocess.CalledProcessError) as e:  # no CUDA toolkit here
        print(f"rng_philox.json kept as it is: cannot build make_philox_fixture.c ({e})")
    else:
        with open(os.path.join(OUT, "rng_philox.json"), "w") as f:
            f.write(philox)
    for name, cfg in CONFIGS.items():
        with open(os.path.join(OUT, f"sched_{name}.config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
    cases = []
    for name, kinds, counts in CASES:
        for kind in kinds:
            for steps in counts:
                kind, _, eta = kind.partition("@")
                c = {"config": name, "kind": kind, "steps": steps, "seed": SEED,
                     "shape": list(SHAPE), "eta": float(eta or 0)}
                try:
                    c.update(run_case(CONFIGS[name], kind, steps, float(eta or 0)))
                except ValueError:
                    print("NaN:", name, kind, steps)
                    raise
                cases.append(c)
    # the training alphas_cumprod (torch's linspace and cumprod, float32), compared bit for bit
    acp = {name: f32list(EulerDiscreteScheduler.from_config(CONFIGS[name]).alphas_cumprod)
           for name in ("sd15", "linear", "cosine")}
    with open(os.path.join(OUT, "sched_cases.json"), "w") as f:
        json.dump({"diffusers": __import__("diffusers").__version__, "torch": torch.__version__,
                   "alphas_cumprod": acp, "cases": cases}, f, separators=(",", ":"))
    print(f"{len(cases)} scheduler cases, rng fixtures in {OUT}")


if __name__ == "__main__":
    main()
