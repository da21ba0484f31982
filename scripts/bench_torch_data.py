#!/usr/bin/env python3
"""The PyTorch side of `cargo bench -p ftcal-data`: JPEG decoding and the paper's training transform with
torchvision, on the images the Rust benchmark writes.

    pip install torch torchvision pillow
    cargo bench -p ftcal-data                  # writes target/ftcal-bench-images/ (~256 JPEGs of 500×375)
    python scripts/bench_torch_data.py [--dir DIR] [--batch-size 32] [--workers 2] [--epochs 3] [--json FILE]

It measures
  - decode + transform on one core: torch.set_num_threads(1), a plain loop over the dataset (no DataLoader),
    one warm-up pass, then the best of --epochs passes;
  - a DataLoader(batch_size, shuffle=True, num_workers=--workers, drop_last=False): one warm-up epoch, then
    all images of --epochs epochs over their total time, batch collation and the default per-epoch worker
    start-up included.
The transform is the paper's: RandomResizedCrop(224, scale=(0.7, 1.0)), RandomHorizontalFlip(),
ColorJitter(0.3, 0.3, 0.3, 0.3), RandomGrayscale(p=0.1), ToTensor(), Normalize(ImageNet mean/std); each file
is opened with PIL and .convert("RGB"), as torchvision's default loader does.
"""

import argparse
import importlib.metadata
import json
import pathlib
import random
import sys
import time

import PIL
import torch
import torchvision
from PIL import Image, features
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

DEFAULT_DIR = pathlib.Path(__file__).resolve().parent.parent / "target" / "ftcal-bench-images"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
EXTENSIONS = {".jpg", ".jpeg"}


def paper_train_transform():
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(224, scale=(0.7, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(0.3, 0.3, 0.3, 0.3),
            transforms.RandomGrayscale(p=0.1),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class ImageFiles(Dataset):
    """The files of a folder, decoded like torchvision's default loader, and a fixed label."""

    def __init__(self, paths, transform):
        self.paths = paths
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        with open(self.paths[index], "rb") as f:
            image = Image.open(f).convert("RGB")
        return self.transform(image), 0


def pillow_simd():
    """Whether the Pillow in use is Pillow-SIMD (its versions carry a `.postN` suffix), or None if unknown."""
    try:
        importlib.metadata.version("Pillow-SIMD")
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        importlib.metadata.version("Pillow")
        return ".post" in PIL.__version__
    except importlib.metadata.PackageNotFoundError:
        return None


def versions():
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "pillow_simd": pillow_simd(),
        "libjpeg_turbo": features.check_feature("libjpeg_turbo"),
    }


def single_core(dataset, epochs):
    """Images per second of the best pass of a plain loop over the dataset, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for epoch in range(epochs + 1):
            start = time.perf_counter()
            for index in range(len(dataset)):
                dataset[index]
            if epoch > 0:  # the first pass warms the page cache and the allocator
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return len(dataset) / min(times), times


def loader(dataset, batch_size, workers, epochs):
    """Images per second over `epochs` epochs of a shuffling DataLoader, after one warm-up epoch."""
    batches = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=False)
    seen = 0
    start = None
    for epoch in range(epochs + 1):
        if epoch == 1:
            start = time.perf_counter()
            seen = 0
        for images, _ in batches:
            seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=pathlib.Path, default=DEFAULT_DIR, help=f"the JPEGs (default: {DEFAULT_DIR})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="timed passes/epochs, after one warm-up each")
    parser.add_argument("--json", type=pathlib.Path, metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or args.workers < 0:
        parser.error("--epochs and --batch-size must be positive, --workers not negative")

    paths = sorted(p for p in args.dir.glob("*") if p.suffix.lower() in EXTENSIONS) if args.dir.is_dir() else []
    if not paths:
        sys.exit(f"{args.dir}: no JPEG files; run `cargo bench -p ftcal-data` first, it writes them there")

    random.seed(0)
    torch.manual_seed(0)
    with Image.open(paths[0]) as first:
        size = f"{first.width}×{first.height}"
    found = versions()
    print(", ".join(f"{name} {value}" for name, value in found.items()))
    print(f"{len(paths)} JPEGs in {args.dir} (the first {size}), the paper's training transform to 224×224")

    dataset = ImageFiles(paths, paper_train_transform())
    single, passes = single_core(dataset, args.epochs)
    loaded = loader(dataset, args.batch_size, args.workers, args.epochs)

    print()
    print("| what | images/s |")
    print("|---|---:|")
    print(f"| decode + transform, 1 thread, plain loop (best of {args.epochs}) | {single:.1f} |")
    print(f"| DataLoader, batch {args.batch_size}, {args.workers} workers, shuffle ({args.epochs} epochs) | {loaded:.1f} |")
    print(f"(single-core passes: {', '.join(f'{t:.2f} s' for t in passes)})")

    if args.json:
        result = {
            "single_core_images_per_s": single,
            "loader_images_per_s": loaded,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "images": len(paths),
            "versions": found,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
