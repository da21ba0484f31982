#!/usr/bin/env python3
"""The PyTorch side of `ftcal models bench-train`: training steps of one model on random data, in images/s.

    pip install torch torchvision   # timm too, for models torchvision lacks (the ViTs)
    python scripts/bench_torch_train.py [--model resnet50] [--batch-size 64] [--image-size 224]
        [--steps 100] [--warmup 10] [--device auto|cuda|cpu] [--no-tf32] [--bf16] [--json FILE]

Each step does what ftcal's does: forward, cross-entropy, backward, SGD(lr=0.01, momentum=0.9, dampening
0) step, zero_grad, then `loss.item()`, which waits for the step's forward; float32, channels-first,
train mode, one fixed random batch (seed 0). The model is torchvision's (`torchvision.models.NAME`), else
timm's (`timm.create_model(NAME)`), with random weights. On CUDA, `torch.backends.cudnn.benchmark` is on
(cuDNN picks the fastest convolution per shape, as burn's autotune does) and the clock starts and stops
after `torch.cuda.synchronize()`. PyTorch's default lets cuDNN convolutions use TF32 tensor cores;
`--no-tf32` turns that off for a strict float32 comparison (burn's wgpu kernels do not use TF32).
`--bf16` runs the forward pass and the loss under `torch.autocast(dtype=torch.bfloat16)` (float32 weights
and optimizer state), the counterpart of ftcal's `--precision bf16`.
"""

import argparse
import json
import pathlib
import platform
import statistics
import sys
import time

import torch
from torch import nn


def build(name, classes):
    """torchvision's model NAME if it has one, else timm's, with random weights; `quickstart`: the
    quickstart's small ResNet (configs/models/resnet_digits.toml, as scripts/bench_torch_quickstart.py)."""
    if name == "quickstart":
        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        from bench_torch_quickstart import build_small_resnet

        return build_small_resnet(), "configs/models/resnet_digits.toml"
    import torchvision

    if name in torchvision.models.list_models():
        model = torchvision.models.get_model(name, weights=None, num_classes=classes)
        return model, f"torchvision {torchvision.__version__}"
    import timm

    return timm.create_model(name, pretrained=False, num_classes=classes), f"timm {timm.__version__}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", help="torchvision or timm name (default resnet50)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    parser.add_argument("--image-size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    parser.add_argument("--classes", type=int, help="head classes (default 1000, the ImageNet models')")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="auto: cuda when available, else cpu")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads on the CPU (default: PyTorch's)")
    parser.add_argument("--no-tf32", action="store_true", help="no TF32 in cuDNN convolutions and matmuls")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast (mixed precision) for the forward pass and the loss")
    parser.add_argument("--forward-only", action="store_true",
                        help="time the forward pass and the loss only, in eval mode under torch.no_grad()")
    parser.add_argument("--count-flops", action="store_true",
                        help="count one step's floating-point operations (torch.utils.flop_counter) into the record")
    parser.add_argument("--json", type=pathlib.Path, metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if args.steps < 1 or args.batch_size < 1 or args.warmup < 0:
        parser.error("--steps and --batch-size must be positive, --warmup not negative")

    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
        if args.no_tf32:
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    tf32 = cuda and torch.backends.cudnn.allow_tf32

    torch.manual_seed(args.seed)
    classes = args.classes or 1000
    model, source = build(args.model, classes)
    model = model.to(device).train(not args.forward_only)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, dampening=0.0)
    loss_fn = nn.CrossEntropyLoss()
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, classes, (args.batch_size,), device=device)
    on = f"{device.type}: {name}" + (", TF32 convolutions" if tf32 else "") + (", bf16 autocast" if args.bf16 else "")
    print(f"bench_torch_train: {args.model} ({source}) on {on}; batch {args.batch_size} of "
          f"3x{args.image_size}x{args.image_size}, {classes} classes; {args.warmup} warm-up and {args.steps} "
          f"timed steps; torch {torch.__version__}, python {sys.version.split()[0]}", file=sys.stderr)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    losses = []

    def step(index):
        if args.forward_only:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = loss_fn(model(images), labels)
        else:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        if value != value or value in (float("inf"), float("-inf")):
            raise SystemExit(f"step {index}: the loss is {value}")
        losses.append(value)

    flops = None
    if args.count_flops:
        # Counted on a copy, so that the timed model starts from the same weights as ftcal's side would.
        import copy
        from torch.utils.flop_counter import FlopCounterMode

        counted, counted_loss = copy.deepcopy(model), nn.CrossEntropyLoss()
        with FlopCounterMode(display=False) as counter:
            if args.forward_only:
                with torch.no_grad():
                    counted_loss(counted(images), labels)
            else:
                counted_loss(counted(images), labels).backward()
        flops = counter.get_total_flops()

    warmup_start = time.perf_counter()
    for index in range(args.warmup):
        step(index)
    sync()
    warmup_seconds = time.perf_counter() - warmup_start

    times = []
    start = time.perf_counter()
    for index in range(args.warmup, args.warmup + args.steps):
        step_start = time.perf_counter()
        step(index)
        times.append(time.perf_counter() - step_start)
    sync()
    seconds = time.perf_counter() - start

    images_per_s = args.batch_size * args.steps / seconds
    median = statistics.median(times) * 1e3
    print(f"{args.model}: {images_per_s:.1f} images/s on {on} ({args.steps} steps of batch {args.batch_size} at "
          f"{args.image_size}x{args.image_size} in {seconds:.2f} s, median step {median:.1f} ms; "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f})")
    if args.json:
        record = {
            "framework": f"pytorch {torch.__version__} ({source})",
            "backend": device.type,
            "device": on,
            "model": args.model,
            "batch_size": args.batch_size,
            "image_size": args.image_size,
            "classes": classes,
            "steps": args.steps,
            "warmup": args.warmup,
            "lr": args.lr,
            "seed": args.seed,
            "tf32": tf32,
            "precision": "bf16" if args.bf16 else "f32",
            "forward_only": args.forward_only,
            "threads": torch.get_num_threads() if not cuda else None,
            "flops_per_step": flops,
            "cudnn_benchmark": cuda,
            "warmup_seconds": warmup_seconds,
            "seconds": seconds,
            "images_per_s": images_per_s,
            "step_ms_median": median,
            "step_ms_min": min(times) * 1e3,
            "step_ms_max": max(times) * 1e3,
            "loss_first": losses[0],
            "loss_last": losses[-1],
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
