#!/usr/bin/env python3
"""Make tests/fixtures/holistic/: what PyTorch computes for two losses of ftcal's Holistic Transfer parts,
their values and their gradients, on small seeded inputs. crates/train/tests/holistic_torch.rs replays them.

- distillation: T² · KL(softmax(z_src[U]/T) ‖ softmax(z[U]/T)), batch mean, as
  F.kl_div(F.log_softmax(z[:, U]/T), F.log_softmax(z_src[:, U]/T), log_target=True, reduction="batchmean")
  · T²; the gradient is with respect to all of z (zero on the columns of S). Cases: U only, and all
  classes (`all`), each at its own temperature.
- rank: ‖F̂‖_* of the L2-normalised rows of F (F.normalize, then torch.linalg.matrix_norm(·, "nuc")),
  and its gradient with respect to F (autograd through the SVD and the normalisation), for a wide batch
  (B < D) and a tall one (B > D).

    pip install torch numpy safetensors
    python scripts/make_holistic_fixtures.py          # rewrites tests/fixtures/holistic/
    python scripts/make_holistic_fixtures.py --check  # regenerates in a temporary directory and compares

Inputs and outputs are float64 in the computation and stored as float32; the output is deterministic.
"""

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "holistic"


def distillation(generator, rows, classes, absent, temperature):
    student = (torch.randn(rows, classes, generator=generator, dtype=torch.float64) * 3).float().double()
    teacher = (torch.randn(rows, classes, generator=generator, dtype=torch.float64) * 3).float().double()
    student.requires_grad_(True)
    columns = torch.tensor(absent)
    loss = F.kl_div(
        F.log_softmax(student[:, columns] / temperature, dim=1),
        F.log_softmax(teacher[:, columns] / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    ) * temperature**2
    loss.backward()
    return {"student": student, "teacher": teacher, "grad": student.grad}, float(loss.detach())


def rank(generator, rows, dim):
    features = torch.randn(rows, dim, generator=generator, dtype=torch.float64).float().double()
    features.requires_grad_(True)
    norm = torch.linalg.matrix_norm(F.normalize(features, dim=1), ord="nuc")
    norm.backward()
    return {"features": features, "grad": features.grad}, float(norm.detach())


def make(out):
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    tensors, cases = {}, {}
    for name, absent, temperature in [("absent", [5, 6, 7, 8, 9], 2.0), ("all", list(range(10)), 3.0)]:
        values, loss = distillation(generator, 6, 10, absent, temperature)
        cases[f"distillation.{name}"] = {"absent": absent, "temperature": temperature, "loss": loss}
        for key, tensor in values.items():
            tensors[f"distillation.{name}.{key}"] = tensor.detach().numpy().astype(np.float32)
    for name, rows, dim in [("wide", 8, 12), ("tall", 12, 5)]:
        values, norm = rank(generator, rows, dim)
        cases[f"rank.{name}"] = {"nuclear_norm": norm}
        for key, tensor in values.items():
            tensors[f"rank.{name}.{key}"] = tensor.detach().numpy().astype(np.float32)
    save_file(tensors, str(out / "holistic.safetensors"), metadata={"torch": torch.__version__.split("+")[0]})
    (out / "cases.json").write_text(json.dumps(cases, indent=2, sort_keys=True) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare a fresh copy with the committed one")
    args = parser.parse_args()
    if not args.check:
        make(OUT)
        return
    with tempfile.TemporaryDirectory() as temp:
        fresh = pathlib.Path(temp)
        make(fresh)
        differ = [f.name for f in fresh.iterdir() if f.read_bytes() != (OUT / f.name).read_bytes()]
        if differ:
            sys.exit(f"tests/fixtures/holistic differs from a fresh run: {differ}")
        print("tests/fixtures/holistic matches")


if __name__ == "__main__":
    main()
