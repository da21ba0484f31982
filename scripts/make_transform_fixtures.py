#!/usr/bin/env python3
"""Make the torchvision reference of ftcal-data's transforms in tests/fixtures/transforms/torchvision.safetensors.

One small deterministic RGB image (`input`, uint8 [24, 32, 3]: a colour gradient with noise and saturated
patches) and what torchvision.transforms.functional makes of it, so the Rust tests check ftcal's transforms
against torchvision itself:

  - the geometric ops on the PIL path (bilinear, antialiased), as uint8 HWC arrays:
    resize_16x20, resize_short_12, upsize_40x48, resized_crop_3_5_15_20_to_12, center_crop_18,
    center_crop_27x37 (larger than the image: padded with black), hflip;
  - the colour ops on the tensor path (x = F.to_tensor(input)), as float32 CHW arrays in [0, 1]:
    brightness_1p3, contrast_0p7, saturation_1p4, hue_0p2, hue_m0p3, grayscale, normalize_imagenet;
  - the same colour ops on the PIL path for comparison, as uint8 HWC arrays:
    pil_brightness_1p3, pil_contrast_0p7, pil_saturation_1p4, pil_hue_0p2, pil_hue_m0p3.

The versions of torch, torchvision and Pillow are printed and stored in the file's metadata.

    pip install torch torchvision pillow numpy safetensors
    python scripts/make_transform_fixtures.py              # rewrites tests/fixtures/transforms/torchvision.safetensors
    python scripts/make_transform_fixtures.py --check      # regenerates in a temporary directory and compares
                                                           # every tensor with the committed ones (uint8 exactly,
                                                           # float32 within 1e-6); the metadata is not compared

The output is deterministic (seed 0); re-running it with the same versions must leave `git status` clean.
"""

import argparse
import json
import pathlib
import struct
import sys
import tempfile

import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file, save
from torchvision.transforms import InterpolationMode

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "transforms"
FILE_NAME = "torchvision.safetensors"
HEIGHT, WIDTH = 24, 32
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
FLOAT_TOLERANCE = 1e-6


def make_input():
    """A smooth colourful gradient, some noise and a few saturated patches, so every op changes something."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    u, v = x / (WIDTH - 1), y / (HEIGHT - 1)
    image = np.stack(
        [
            30 + 200 * u,
            40 + 180 * v,
            128 + 100 * np.sin(2 * np.pi * (u + 0.5 * v)),
        ],
        axis=-1,
    )
    image += rng.normal(scale=6.0, size=image.shape)
    # Saturated patches: primaries, a secondary, white and black, at odd offsets so crops cut through some.
    for (top, left), colour in zip(
        [(2, 3), (2, 24), (9, 13), (17, 4), (16, 26), (19, 18)],
        [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255), (0, 0, 0)],
    ):
        image[top:top + 3, left:left + 4] = colour
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def pil_result(img):
    """A PIL-path result as uint8 HWC."""
    assert isinstance(img, Image.Image) and img.mode == "RGB", img
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def tensor_result(x):
    """A tensor-path result as float32 CHW."""
    assert x.dtype == torch.float32 and x.ndim == 3 and x.shape[0] == 3, (x.dtype, x.shape)
    return np.ascontiguousarray(x.numpy())


def versions():
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__}


def make_tensors():
    source = make_input()
    img = Image.fromarray(source)
    bilinear = {"interpolation": InterpolationMode.BILINEAR, "antialias": True}
    tensors = {
        "input": source,
        "resize_16x20": pil_result(F.resize(img, [16, 20], **bilinear)),
        "resize_short_12": pil_result(F.resize(img, 12, **bilinear)),
        "upsize_40x48": pil_result(F.resize(img, [40, 48], **bilinear)),
        "resized_crop_3_5_15_20_to_12": pil_result(
            F.resized_crop(img, top=3, left=5, height=15, width=20, size=[12, 12], **bilinear)
        ),
        "center_crop_18": pil_result(F.center_crop(img, [18, 18])),
        "center_crop_27x37": pil_result(F.center_crop(img, [27, 37])),
        "hflip": pil_result(F.hflip(img)),
    }

    x = F.to_tensor(img)
    assert tuple(x.shape) == (3, HEIGHT, WIDTH)
    tensors.update(
        {
            "brightness_1p3": tensor_result(F.adjust_brightness(x, 1.3)),
            "contrast_0p7": tensor_result(F.adjust_contrast(x, 0.7)),
            "saturation_1p4": tensor_result(F.adjust_saturation(x, 1.4)),
            "hue_0p2": tensor_result(F.adjust_hue(x, 0.2)),
            "hue_m0p3": tensor_result(F.adjust_hue(x, -0.3)),
            "grayscale": tensor_result(F.rgb_to_grayscale(x, num_output_channels=3)),
            "normalize_imagenet": tensor_result(F.normalize(x, mean=IMAGENET_MEAN, std=IMAGENET_STD)),
        }
    )

    tensors.update(
        {
            "pil_brightness_1p3": pil_result(F.adjust_brightness(img, 1.3)),
            "pil_contrast_0p7": pil_result(F.adjust_contrast(img, 0.7)),
            "pil_saturation_1p4": pil_result(F.adjust_saturation(img, 1.4)),
            "pil_hue_0p2": pil_result(F.adjust_hue(img, 0.2)),
            "pil_hue_m0p3": pil_result(F.adjust_hue(img, -0.3)),
        }
    )
    return tensors


def deterministic_safetensors(tensors, metadata):
    """safetensors' bytes with the metadata keys sorted: the library writes them in hash-map order, which
    changes from run to run. The tensors' order and offsets are the library's (deterministic) ones."""
    raw = save(tensors, metadata=metadata)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data stays 8-byte aligned, as safetensors pads
    return struct.pack("<Q", len(text)) + text + raw[8 + length:]


def write(out):
    tensors = make_tensors()
    out.mkdir(parents=True, exist_ok=True)
    path = out / FILE_NAME
    path.write_bytes(deterministic_safetensors(tensors, versions()))
    return path


def same(ours, theirs):
    if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
        return False
    if ours.dtype == np.uint8:
        return np.array_equal(ours, theirs)
    return bool(np.all(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)) <= FLOAT_TOLERANCE))


def check(committed):
    """Regenerates the fixture and compares it tensor by tensor (the metadata holds versions and may differ)."""
    committed_path = committed / FILE_NAME
    if not committed_path.is_file():
        sys.exit(f"{committed_path} is missing: run scripts/make_transform_fixtures.py")
    with tempfile.TemporaryDirectory() as fresh:
        ours = load_file(str(write(pathlib.Path(fresh))))
    theirs = load_file(str(committed_path))
    if ours.keys() != theirs.keys():
        sys.exit(
            f"{committed_path}: lacks {sorted(ours.keys() - theirs.keys())} and has extra "
            f"{sorted(theirs.keys() - ours.keys())}: re-run scripts/make_transform_fixtures.py"
        )
    differing = [name for name in sorted(ours) if not same(ours[name], theirs[name])]
    if differing:
        with safe_open(str(committed_path), framework="numpy") as f:
            recorded = f.metadata() or {}
        sys.exit(
            f"{committed_path}: {', '.join(differing)} differ from what scripts/make_transform_fixtures.py makes "
            f"with {versions()} (the file was made with {recorded}): re-run it, or use the recorded versions"
        )
    print(f"{committed_path}: {len(ours)} tensors match the script")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed fixture, write nothing")
    args = parser.parse_args()
    print(", ".join(f"{name} {version}" for name, version in versions().items()))
    if args.check:
        check(DEFAULT_OUT)
    else:
        path = write(DEFAULT_OUT)
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
