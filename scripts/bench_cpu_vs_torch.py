#!/usr/bin/env python3
"""ftcal's CPU (flex) against PyTorch's, side by side on this machine: each benchmark's ftcal side and
PyTorch side run back to back, with the same thread count, and the ratio printed (ftcal / PyTorch, time
per step: lower is better; below 1.0 ftcal is faster).

    cargo build --release -p ftcal
    pip install torch torchvision timm          # in a venv: several GB
    python scripts/bench_cpu_vs_torch.py [--threads 1,2] [--rows NAME,...] [--ftcal target/release/ftcal]
                                         [--json FILE]

Rows (random data, seed 0; a training step is forward, cross-entropy, backward and an SGD step with
momentum 0.9, dampening 0; "forward" is eval mode without autodiff or update):

    resnet18_train     torchvision ResNet-18, 10 classes, batch 32 of 3x64x64
    resnet50_train     ResNet-50, 1000 classes, batch 16 of 3x224x224
    resnet50_forward   ResNet-50, 1000 classes, batch 8 of 3x224x224, forward only
    vit_s16_train      timm's vit_small_patch16_224, 1000 classes, batch 16 of 3x224x224
    quickstart_train   the quickstart's small ResNet (configs/models/resnet_digits.toml), batch 64 of 3x32x32

ftcal's side is `ftcal models bench-train` with RAYON_NUM_THREADS set (flex's pool, and gemm's products
on it); PyTorch's is scripts/bench_torch_train.py --device cpu --threads N. Each side reports the median
time per step over its timed steps. The floating-point operations of one step are counted once by
PyTorch's flop counter (convolutions and matrix products: what dominates), and both sides' GFLOP/s are
printed against the machine's measured peak: a 4096x4096x4096 float32 matrix product through PyTorch
(its BLAS) with the same thread count, the best of 5.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

# name: (ftcal model, PyTorch model, classes, batch, image size, forward only, timed steps, warm-up steps)
ROWS = {
    "resnet18_train": ("resnet18", "resnet18", 10, 32, 64, False, 10, 2),
    "resnet50_train": ("resnet50", "resnet50", 1000, 16, 224, False, 4, 1),
    "resnet50_forward": ("resnet50", "resnet50", 1000, 8, 224, True, 6, 1),
    "vit_s16_train": ("vit_small_patch16_224", "vit_small_patch16_224", 1000, 16, 224, False, 4, 1),
    "quickstart_train": ("configs/models/resnet_digits.toml", "quickstart", 10, 64, 32, False, 20, 3),
}


def run_json(command, env):
    """Runs COMMAND with a --json FILE added; returns the record, or raises with its output."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "record.json"
        done = subprocess.run(command + ["--json", str(path)], cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not path.exists():
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return json.loads(path.read_text())


def peak_gflops(threads):
    """The best of 5 float32 4096^3 matrix products through PyTorch, in GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    torch.matmul(a, b)
    best = min(_timed(lambda: torch.matmul(a, b)) for _ in range(5))
    return 2 * 4096**3 / best / 1e9


def _timed(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    parser.add_argument("--rows", default=",".join(ROWS), help="rows to run, comma-separated (default all)")
    parser.add_argument("--ftcal", type=pathlib.Path, default=ROOT / "target/release/ftcal",
                        help="the ftcal binary (default target/release/ftcal)")
    parser.add_argument("--json", type=pathlib.Path, metavar="FILE", help="also write every record here")
    args = parser.parse_args()
    rows = args.rows.split(",")
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; rows are {', '.join(ROWS)}")
    if not args.ftcal.exists():
        parser.error(f"{args.ftcal}: no such binary; build it with `cargo build --release -p ftcal`")

    records = []
    print("| row | threads | ftcal ms/step | PyTorch ms/step | ftcal / PyTorch | ftcal GFLOP/s | PyTorch GFLOP/s"
          " | peak GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for threads in [int(value) for value in args.threads.split(",")]:
        peak = peak_gflops(threads)
        for row in rows:
            ftcal_model, torch_model, classes, batch, size, forward_only, steps, warmup = ROWS[row]
            shared = ["--classes", str(classes), "--batch-size", str(batch), "--image-size", str(size),
                      "--steps", str(steps), "--warmup", str(warmup)]
            forward = ["--forward-only"] if forward_only else []
            env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
            ours = run_json([str(args.ftcal), "models", "bench-train", "--model", ftcal_model, "--backend", "flex"]
                            + shared + forward, env)
            theirs = run_json([sys.executable, "scripts/bench_torch_train.py", "--model", torch_model, "--device",
                               "cpu", "--threads", str(threads), "--count-flops"] + shared + forward, dict(os.environ))
            flops = theirs["flops_per_step"]
            ours_ms, theirs_ms = ours["step_ms_median"], theirs["step_ms_median"]
            record = {"row": row, "threads": threads, "ftcal_ms": ours_ms, "pytorch_ms": theirs_ms,
                      "ratio": ours_ms / theirs_ms, "flops_per_step": flops, "peak_gflops": peak,
                      "ftcal": ours, "pytorch": theirs}
            records.append(record)
            print(f"| {row} | {threads} | {ours_ms:.1f} | {theirs_ms:.1f} | {ours_ms / theirs_ms:.2f} | "
                  f"{flops / ours_ms / 1e6:.1f} | {flops / theirs_ms / 1e6:.1f} | {peak:.1f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
