#!/usr/bin/env python3
"""Make tests/fixtures/optim/: what torch.optim (and adabelief-pytorch) do to two small tensors, step by step.

Each case starts from the same seeded parameters (a 3x4 weight and a 4-vector bias), gives them the same
seeded gradients for STEPS steps, with a different learning rate for each tensor (two parameter groups, so
the per-parameter learning rate is tested too), and records both tensors after every step. The clipping
cases record what torch.nn.utils.clip_grad_norm_ makes of three gradients of rank 2, 1 and 3 (`clip.grad.*`,
times each case's `factor`): clipped, unchanged, and clipped at a norm small enough for its 1e-6 to show. crates/train/tests/optim_torch.rs replays all of it with ftcal's optimizers.

cases.json holds each case's settings in ftcal's own `[fine_tuning.optimizer]` schema (OptimizerSettings),
so the Rust test reads them as a user's config would be read; this script maps them onto torch's keyword
arguments. Every torch optimizer runs with foreach=False (the single-tensor path ftcal copies).

    pip install torch adabelief-pytorch numpy safetensors
    python scripts/make_optimizer_fixtures.py          # rewrites tests/fixtures/optim/
    python scripts/make_optimizer_fixtures.py --check  # regenerates in a temporary directory and compares

The output is deterministic (seed 0); re-running it must leave `git status` clean.
"""

import argparse
import contextlib
import io
import json
import pathlib
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "optim"
TENSORS = "torch.safetensors"
CASES = "cases.json"
STEPS = 10
# The committed tensors and a fresh run may differ by the last bit where torch vectorises differently on
# another CPU; more than this is a change of behaviour.
FLOAT_TOLERANCE = 1e-6

# (name, ftcal settings, learning rate of the weight, of the bias)
OPTIMIZER_CASES = [
    ("sgd_plain", {"name": "sgd"}, 0.1, 0.05),
    ("sgd_momentum", {"name": "sgd", "momentum": 0.9}, 0.1, 0.03),
    ("sgd_nesterov_wd", {"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, 0.1, 0.03),
    ("sgd_dampening", {"name": "sgd", "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.001}, 0.1, 0.03),
    ("adam_wd", {"name": "adam", "weight_decay": 0.01}, 0.01, 0.003),
    ("adam_betas", {"name": "adam", "betas": [0.8, 0.99], "eps": 1e-6}, 0.01, 0.003),
    ("adamw", {"name": "adamw", "weight_decay": 0.05}, 0.01, 0.003),
    (
        "adagrad_lr_decay",
        {"name": "adagrad", "lr_decay": 0.1, "initial_accumulator_value": 0.1, "weight_decay": 0.01},
        0.1,
        0.05,
    ),
    ("rmsprop_plain", {"name": "rmsprop", "alpha": 0.9}, 0.01, 0.003),
    (
        "rmsprop_centered_momentum",
        {"name": "rmsprop", "centered": True, "momentum": 0.9, "weight_decay": 0.01},
        0.01,
        0.003,
    ),
    ("adadelta", {"name": "adadelta", "weight_decay": 0.01}, 1.0, 0.5),
    ("adabelief", {"name": "adabelief", "weight_decay": 0.01}, 0.01, 0.003),
    # ε large enough that the package adding it to the stored variance every step shows.
    ("adabelief_betas", {"name": "adabelief", "betas": [0.8, 0.99], "eps": 1e-4}, 0.01, 0.003),
]

# (name, max_norm, factor on the gradients): the third makes torch's 1e-6 in max_norm / (norm + 1e-6) count
CLIP_CASES = [("clip_scaled", 1.0, 1.0), ("clip_unchanged", 100.0, 1.0), ("clip_tiny_norm", 1e-4, 1e-3)]
CLIP_SHAPES = [(3, 4), (4,), (2, 2, 2)]


def versions():
    from importlib.metadata import version

    return {"torch": torch.__version__, "adabelief-pytorch": version("adabelief-pytorch")}


def make_optimizer(settings, groups):
    """The torch optimizer for ftcal `settings` (an option left out takes the optimizer's own default)."""
    options = {key: value for key, value in settings.items() if key != "name"}
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    name = settings["name"]
    if name == "adabelief":
        from adabelief_pytorch import AdaBelief

        # The package prints its change log and chosen options; keep the script's output readable.
        with contextlib.redirect_stdout(io.StringIO()):
            return AdaBelief(groups, print_change_log=False, **options)
    optimizer = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "adagrad": torch.optim.Adagrad,
        "rmsprop": torch.optim.RMSprop,
        "adadelta": torch.optim.Adadelta,
    }[name]
    return optimizer(groups, foreach=False, **options)


def inputs():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 4, generator=generator)
    bias = torch.randn(4, generator=generator)
    grads_weight = torch.randn(STEPS, 3, 4, generator=generator)
    grads_bias = torch.randn(STEPS, 4, generator=generator)
    clip_grads = [torch.randn(*shape, generator=generator) for shape in CLIP_SHAPES]
    return weight, bias, grads_weight, grads_bias, clip_grads


def run_case(settings, lr_weight, lr_bias, weight, bias, grads_weight, grads_bias):
    w = torch.nn.Parameter(weight.clone())
    b = torch.nn.Parameter(bias.clone())
    optimizer = make_optimizer(settings, [{"params": [w], "lr": lr_weight}, {"params": [b], "lr": lr_bias}])
    weights, biases = [], []
    for step in range(STEPS):
        w.grad = grads_weight[step].clone()
        b.grad = grads_bias[step].clone()
        optimizer.step()
        weights.append(w.detach().clone())
        biases.append(b.detach().clone())
    return torch.stack(weights), torch.stack(biases)


def tensors_and_cases():
    torch.manual_seed(0)
    weight, bias, grads_weight, grads_bias, clip_grads = inputs()
    tensors = {
        "init.weight": weight,
        "init.bias": bias,
        "grads.weight": grads_weight,
        "grads.bias": grads_bias,
    }
    cases = []
    for name, settings, lr_weight, lr_bias in OPTIMIZER_CASES:
        weights, biases = run_case(settings, lr_weight, lr_bias, weight, bias, grads_weight, grads_bias)
        tensors[f"{name}.weight"] = weights
        tensors[f"{name}.bias"] = biases
        cases.append({"name": name, "settings": settings, "lr": [lr_weight, lr_bias]})
    for index, grad in enumerate(clip_grads):
        tensors[f"clip.grad.{index}"] = grad
    clips = []
    for name, max_norm, factor in CLIP_CASES:
        params = [torch.nn.Parameter(torch.zeros_like(grad)) for grad in clip_grads]
        for param, grad in zip(params, clip_grads):
            param.grad = grad * factor
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        tensors[f"{name}.total_norm"] = total.reshape(1)
        for index, param in enumerate(params):
            tensors[f"{name}.grad.{index}"] = param.grad
        clips.append({"name": name, "max_norm": max_norm, "factor": factor})
    arrays = {key: value.detach().numpy().astype(np.float32) for key, value in tensors.items()}
    return arrays, {"steps": STEPS, "cases": cases, "clip": clips}


def write(out):
    out.mkdir(parents=True, exist_ok=True)
    arrays, cases = tensors_and_cases()
    save_file(arrays, str(out / TENSORS), metadata=versions())
    (out / CASES).write_text(json.dumps({**cases, "versions": versions()}, indent=1) + "\n")
    return out


def same(ours, theirs):
    if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
        return False
    return bool(np.all(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)) <= FLOAT_TOLERANCE))


def check(committed):
    """Regenerates the fixture and compares it (the recorded versions may differ)."""
    for name in (TENSORS, CASES):
        if not (committed / name).is_file():
            sys.exit(f"{committed / name} is missing: run scripts/make_optimizer_fixtures.py")
    with tempfile.TemporaryDirectory() as fresh:
        fresh = write(pathlib.Path(fresh))
        ours = load_file(str(fresh / TENSORS))
        our_cases = json.loads((fresh / CASES).read_text())
    theirs = load_file(str(committed / TENSORS))
    their_cases = json.loads((committed / CASES).read_text())
    recorded = their_cases.pop("versions", None)
    our_cases.pop("versions")
    if our_cases != their_cases:
        sys.exit(f"{committed / CASES} differs from what the script makes: re-run scripts/make_optimizer_fixtures.py")
    if ours.keys() != theirs.keys():
        sys.exit(
            f"{committed / TENSORS}: lacks {sorted(ours.keys() - theirs.keys())} and has extra "
            f"{sorted(theirs.keys() - ours.keys())}: re-run scripts/make_optimizer_fixtures.py"
        )
    differing = [name for name in sorted(ours) if not same(ours[name], theirs[name])]
    if differing:
        sys.exit(
            f"{committed / TENSORS}: {', '.join(differing)} differ from what scripts/make_optimizer_fixtures.py "
            f"makes with {versions()} (the file was made with {recorded}): re-run it, or use the recorded versions"
        )
    print(f"{committed}: {len(ours)} tensors and {len(our_cases['cases'])} cases match the script")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed fixture, write nothing")
    args = parser.parse_args()
    print(", ".join(f"{name} {version}" for name, version in versions().items()))
    if args.check:
        check(DEFAULT_OUT)
    else:
        out = write(DEFAULT_OUT)
        size = sum(path.stat().st_size for path in out.iterdir())
        print(f"wrote {out} ({size} bytes)")


if __name__ == "__main__":
    main()
