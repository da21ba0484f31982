#!/usr/bin/env python3
"""The PyTorch side of ftcal's model benchmark: a ResNet-18 training step and a ResNet-50 forward pass on the CPU.

    pip install torch torchvision
    python scripts/bench_torch_models.py [--threads 2] [--steps 20] [--warmup 3] [--json FILE]

It measures, with torch.set_num_threads(--threads), on random data made once (seed 0):
  - one training step of torchvision.models.resnet18(num_classes=10) in train mode, batch 32 of 3×64×64:
    forward, cross-entropy, backward, SGD(lr=0.01, momentum=0.9) step, zero_grad;
  - one forward pass of torchvision.models.resnet50() (1000 classes) in eval mode under torch.no_grad(),
    batch 8 of 3×224×224.
Each is run --warmup times untimed, then --steps times; the median seconds per step is the result (the
fastest and slowest are printed too: a wide spread means something else was using the cores).
"""

import argparse
import json
import pathlib
import platform
import statistics
import sys
import time

import torch
import torchvision
from torch import nn


def cpu_name():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions():
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu": cpu_name(),
    }


def timed(step, steps, warmup):
    """Seconds of each of `steps` calls of step(), after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def resnet18_train_step(steps, warmup):
    model = torchvision.models.resnet18(num_classes=10)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    images = torch.randn(32, 3, 64, 64)
    labels = torch.randint(0, 10, (32,))

    def step():
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return timed(step, steps, warmup)


def resnet50_forward(steps, warmup):
    model = torchvision.models.resnet50()
    model.eval()
    images = torch.randn(8, 3, 224, 224)

    def step():
        with torch.no_grad():
            model(images)

    return timed(step, steps, warmup)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each measurement (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--json", type=pathlib.Path, metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.threads < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--threads and --steps must be positive, --warmup not negative")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    found = versions()
    print(", ".join(f"{name} {value}" for name, value in found.items()))
    print(f"{args.threads} threads, {args.warmup} warm-up + {args.steps} timed steps each")

    train = resnet18_train_step(args.steps, args.warmup)
    forward = resnet50_forward(args.steps, args.warmup)
    rows = [
        ("ResNet-18 training step, batch 32, 3×64×64, SGD momentum", train),
        ("ResNet-50 forward, eval, no_grad, batch 8, 3×224×224", forward),
    ]

    print()
    print("| what | median s | min s | max s |")
    print("|---|---:|---:|---:|")
    for what, times in rows:
        print(f"| {what} | {statistics.median(times):.4f} | {min(times):.4f} | {max(times):.4f} |")

    if args.json:
        result = {
            "resnet18_train_step_s": statistics.median(train),
            "resnet50_forward_s": statistics.median(forward),
            "threads": args.threads,
            "steps": args.steps,
            "warmup": args.warmup,
            "versions": found,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
