#!/usr/bin/env python3
"""Make the timm reference models of ftcal-models in tests/fixtures/models/.

Tiny ResNets and ViTs built with timm's own classes (timm.models.resnet.ResNet, timm.models.vision_transformer.
VisionTransformer), their weights re-initialised with seeded random values (every BatchNorm's running_mean and
running_var too, so eval-mode BatchNorm is not the identity), and what PyTorch computes with them in eval mode,
so the Rust tests check ftcal's ResNet and ViT, and its timm weight import, against timm itself. For each NAME:

  - NAME.safetensors     the model's state_dict with timm's key names: float32 parameters and BatchNorm
                         running_mean / running_var, int64 num_batches_tracked (0), as torch.save would keep them;
  - NAME.io.safetensors  `input` float32 [2, 3, S, S] (seeded normal), `features` [2, D] =
                         model.forward_head(model.forward_features(input), pre_logits=True) and `logits` [2, C] =
                         model(input), in model.eval() under torch.no_grad();
  - NAME.toml            the model as ftcal describes it.

The models (10 classes; the ResNets' channels = (4, 8, 16, 32) and stem_width = 4 keep all files under 1 MB):
  resnet_basic       ResNet(BasicBlock, layers=[1, 1, 1, 1], channels, stem_width=4), 40×40 input (the
                     feature maps go 20, 10, 10, 5, 3, 2: odd sizes under stride-2 convolutions)
  resnet_bottleneck  ResNet(Bottleneck, layers=[2, 1, 1, 1], channels, stem_width=4), 40×40 input
  resnet_small_stem  resnet_basic with conv1 = 3×3 stride-1 conv (3 → 4) and no max-pool, 32×32 input
  vit_tiny_test      VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=4.0):
                     class token, global_pool='token', exact GELU, LayerNorm eps 1e-6
  vit_clip_test      the same with the CLIP image tower's arguments, as timm's vit_base_patch32_clip_quickgelu_224
                     passes them: pre_norm=True (adds norm_pre, drops patch_embed.proj.bias), norm_layer=
                     partial(LayerNorm, eps=1e-5), act_layer='quick_gelu' (x·sigmoid(1.702x)). timm's
                     vit_base_patch32_clip_224 passes the same but act_layer: it keeps the exact GELU.

timm's ResNet ignores stem_width with its default 7×7 stem (conv1 always has 64 outputs there); the ResNets
here have conv1 → stem_width channels instead (conv1, bn1 and layer1 rebuilt with timm's own make_blocks), as
the ftcal description says and as every real ResNet (stem_width = 64 = its conv1's outputs) has it.

Also:
  - full_size_keys.json  for resnet50, vit_base_patch16_224 and vit_base_patch32_clip_224 made by
                         timm.create_model(name, pretrained=False) with timm's default num_classes (1000): the
                         number of parameters, every state_dict key with its shape, and which keys are buffers;
  - resnet_basic.pth     torch.save(state_dict) of resnet_basic, the ordinary zip format;
  - malicious.pth        a bare pickle (protocol 2) whose unpickling would run os.system("touch /tmp/ftcal-pwned");
  - malicious_zip.pth    the same pickle as data.pkl in a torch.save-style zip (the path a .pth reader takes);
                         neither malicious file is ever unpickled by this script, --check compares their bytes.

The versions of torch, timm and NumPy are printed and stored in the safetensors metadata.

    pip install torch timm numpy safetensors
    python scripts/make_model_fixtures.py              # rewrites tests/fixtures/models/
    python scripts/make_model_fixtures.py --check      # regenerates in a temporary directory and compares every
                                                       # tensor with the committed ones (integers exactly, floats
                                                       # within 1e-6; `features` and `logits` within 1e-5 +
                                                       # 1e-5·|value|), the TOML/pickle bytes exactly and the
                                                       # JSON by value; the metadata is not compared

PyTorch's own results (`features`, `logits`) move by a few float32 ulps with the thread count and the CPU's
kernels (up to 6e-6 on values up to 12 seen here), hence their looser check; the weights and inputs come from
NumPy's generator and are exact.

The output is deterministic (NumPy seeds, sorted safetensors metadata); re-running it with the same versions must
leave `git status` clean.
"""

import argparse
import json
import math
import os
import pathlib
import pickle
import struct
import sys
import tempfile
import zipfile
from functools import partial

import numpy as np
import timm
import torch
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.torch import save
from timm.layers import LayerNorm
from timm.models.resnet import BasicBlock, Bottleneck, ResNet, make_blocks
from timm.models.vision_transformer import VisionTransformer
from torch import nn

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "models"
FLOAT_TOLERANCE = 1e-6
COMPUTED = {"features", "logits"}  # PyTorch's results, checked within COMPUTED_TOLERANCE·(1 + |value|)
COMPUTED_TOLERANCE = 1e-5
NUM_CLASSES = 10
BATCH = 2
RESNET_CHANNELS = (4, 8, 16, 32)
STEM_WIDTH = 4
FULL_SIZE = ["resnet50", "vit_base_patch16_224", "vit_base_patch32_clip_224"]
PWNED = "touch /tmp/ftcal-pwned"

VIT_ARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=4.0, num_classes=NUM_CLASSES)
# What timm's vit_base_patch32_clip_quickgelu_224 passes beyond the plain ViT's arguments (sizes aside);
# vit_base_patch32_clip_224 passes all but act_layer.
CLIP_ARGS = dict(pre_norm=True, norm_layer=partial(LayerNorm, eps=1e-5), act_layer="quick_gelu")


def resnet(block, layers, stem="imagenet"):
    model = ResNet(block=block, layers=layers, channels=RESNET_CHANNELS, stem_width=STEM_WIDTH, num_classes=NUM_CLASSES)
    # timm's plain stem has 64 outputs whatever stem_width says; give it stem_width, and layer1 that many inputs.
    model.conv1 = nn.Conv2d(3, STEM_WIDTH, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(STEM_WIDTH)
    stages, _ = make_blocks(
        (block,) * len(layers), RESNET_CHANNELS, layers, STEM_WIDTH, act_layer=nn.ReLU, norm_layer=nn.BatchNorm2d
    )
    assert stages[0][0] == "layer1"
    model.layer1 = stages[0][1]
    if stem == "small":
        model.conv1 = nn.Conv2d(3, STEM_WIDTH, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def vit(extra):
    return VisionTransformer(**VIT_ARGS, **extra)


def resnet_toml(block, layers, stem, size):
    return {
        "family": "resnet",
        "block": block,
        "layers": layers,
        "channels": list(RESNET_CHANNELS),
        "stem_width": STEM_WIDTH,
        "stem": stem,
        "classes": NUM_CLASSES,
        "image_size": size,
    }


def vit_toml(pre_norm, activation):
    return {
        "family": "vit",
        "image_size": VIT_ARGS["img_size"],
        "patch": VIT_ARGS["patch_size"],
        "embed": VIT_ARGS["embed_dim"],
        "depth": VIT_ARGS["depth"],
        "heads": VIT_ARGS["num_heads"],
        "mlp_ratio": VIT_ARGS["mlp_ratio"],
        "pre_norm": pre_norm,
        "activation": activation,
        "classes": NUM_CLASSES,
    }


# name: (seed, builder, input size, ftcal description, what it is, for the TOML's comment)
MODELS = {
    "resnet_basic": (
        1,
        lambda: resnet(BasicBlock, [1, 1, 1, 1]),
        40,
        resnet_toml("basic", [1, 1, 1, 1], "imagenet", 40),
        "timm ResNet(BasicBlock, layers=[1, 1, 1, 1], channels=(4, 8, 16, 32)), conv1 3 -> 4 7x7/2, max-pool",
    ),
    "resnet_bottleneck": (
        2,
        lambda: resnet(Bottleneck, [2, 1, 1, 1]),
        40,
        resnet_toml("bottleneck", [2, 1, 1, 1], "imagenet", 40),
        "timm ResNet(Bottleneck, layers=[2, 1, 1, 1], channels=(4, 8, 16, 32)), conv1 3 -> 4 7x7/2, max-pool",
    ),
    "resnet_small_stem": (
        3,
        lambda: resnet(BasicBlock, [1, 1, 1, 1], stem="small"),
        32,
        resnet_toml("basic", [1, 1, 1, 1], "small", 32),
        "resnet_basic with conv1 = Conv2d(3, 4, 3, stride=1, padding=1, bias=False), maxpool = Identity",
    ),
    "vit_tiny_test": (
        4,
        lambda: vit({}),
        32,
        vit_toml(False, "gelu"),
        "timm VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=4.0):\n"
        "# LayerNorm eps 1e-6, exact GELU",
    ),
    "vit_clip_test": (
        5,
        lambda: vit(CLIP_ARGS),
        32,
        vit_toml(True, "quick_gelu"),
        "vit_tiny_test + pre_norm=True, norm_layer=partial(LayerNorm, eps=1e-5), act_layer='quick_gelu'\n"
        "# (as vit_base_patch32_clip_quickgelu_224; vit_base_patch32_clip_224 keeps the exact GELU):\n"
        "# norm_pre added, no patch_embed.proj.bias, LayerNorm eps 1e-5 everywhere",
    ),
}


def versions():
    return {"torch": torch.__version__, "timm": timm.__version__, "numpy": np.__version__}


def reinitialise(model, rng):
    """Seeded random values of a sensible scale for every parameter and BatchNorm statistic, module by module in
    named_modules order: conv/linear weights normal with std gain/sqrt(fan_in), small random biases, norm weights
    around 1, BatchNorm running_mean in ±0.5 and running_var in [0.5, 2]."""
    done = set()

    def fill(name, tensor, values):
        assert tuple(values.shape) == tuple(tensor.shape), name
        tensor.copy_(torch.from_numpy(np.asarray(values, dtype=np.float32)))
        done.add(name)

    gain = math.sqrt(2.0) if isinstance(model, ResNet) else 1.0  # ReLU nets keep their scale with He's gain
    with torch.no_grad():
        for prefix, module in model.named_modules():
            at = f"{prefix}." if prefix else ""
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                fill(at + "weight", module.weight, rng.normal(0.0, gain / math.sqrt(fan_in), module.weight.shape))
                if module.bias is not None:
                    fill(at + "bias", module.bias, rng.normal(0.0, 0.05, module.bias.shape))
            elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                fill(at + "weight", module.weight, rng.uniform(0.75, 1.25, module.weight.shape))
                fill(at + "bias", module.bias, rng.normal(0.0, 0.1, module.bias.shape))
                if isinstance(module, nn.BatchNorm2d):
                    fill(at + "running_mean", module.running_mean, rng.uniform(-0.5, 0.5, module.running_mean.shape))
                    fill(at + "running_var", module.running_var, rng.uniform(0.5, 2.0, module.running_var.shape))
                    done.add(at + "num_batches_tracked")  # left at 0, as in a fresh state_dict
            elif isinstance(module, VisionTransformer):
                fill("cls_token", module.cls_token, rng.normal(0.0, 0.1, module.cls_token.shape))
                fill("pos_embed", module.pos_embed, rng.normal(0.0, 0.1, module.pos_embed.shape))
    missed = sorted(set(model.state_dict()) - done)
    assert not missed, f"not re-initialised: {missed}"


def run(model, x):
    model.eval()
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    return features, logits


def check_not_degenerate(name, model, x, features, logits):
    """Finite, varying logits that depend on the BatchNorm statistics (eval-mode BatchNorm is not the identity)."""
    problems = []
    if not (torch.isfinite(features).all() and torch.isfinite(logits).all()):
        problems.append("non-finite outputs")
    if logits.std(dim=1).min() < 0.1:
        problems.append(f"logits nearly equal across classes (std {logits.std(dim=1).tolist()})")
    if (logits[0] - logits[1]).abs().max() < 0.1:
        problems.append("both samples have nearly the same logits")
    if not 0.1 < logits.abs().max() < 100:
        problems.append(f"logits of a bad scale (max |logit| {logits.abs().max():.3g})")
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if batch_norms:
        saved = [(m.running_mean.clone(), m.running_var.clone()) for m in batch_norms]
        for m in batch_norms:
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
        _, plain = run(model, x)
        for m, (mean, var) in zip(batch_norms, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
        if (plain - logits).abs().max() < 0.1:
            problems.append("the BatchNorm statistics barely change the logits")
    if problems:
        sys.exit(f"{name}: degenerate fixture: {'; '.join(problems)}")


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


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


class Pwn:
    """Unpickling an instance runs a shell command: what a .pth reader must never do."""

    def __reduce__(self):
        return (os.system, (PWNED,))


def malicious_pickle():
    return pickle.dumps(Pwn(), protocol=2)


def malicious_zip(path):
    """torch.save's layout (ARCHIVE/data.pkl, version, byteorder) with the malicious pickle as data.pkl."""
    archive = path.stem
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for member, data in [("data.pkl", malicious_pickle()), ("byteorder", b"little"), ("version", b"3\n")]:
            z.writestr(zipfile.ZipInfo(f"{archive}/{member}", date_time=(1980, 1, 1, 0, 0, 0)), data)


def full_size_keys():
    result = {}
    for name in FULL_SIZE:
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False)
        buffers = {n for n, _ in model.named_buffers()}
        state = model.state_dict()
        result[name] = {
            "num_classes": model.num_classes,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "keys": {k: list(v.shape) for k, v in state.items()},
            "buffers": [k for k in state if k in buffers],
        }
    return result


def write(out):
    out.mkdir(parents=True, exist_ok=True)
    metadata = versions()
    for name, (seed, build, size, description, comment) in MODELS.items():
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)  # timm's own initialisation, overwritten below
        model = build()
        reinitialise(model, rng)
        x = torch.from_numpy(rng.standard_normal((BATCH, 3, size, size)).astype(np.float32))
        features, logits = run(model, x)
        check_not_degenerate(name, model, x, features, logits)
        assert tuple(logits.shape) == (BATCH, NUM_CLASSES) and features.shape[0] == BATCH

        state = model.state_dict()
        (out / f"{name}.safetensors").write_bytes(deterministic_safetensors(dict(state), metadata))
        io = {"input": x, "features": features.contiguous(), "logits": logits.contiguous()}
        (out / f"{name}.io.safetensors").write_bytes(deterministic_safetensors(io, metadata))
        lines = [f"# {comment}", "# Made by scripts/make_model_fixtures.py; weights in", f"# {name}.safetensors."]
        lines += [f"{key} = {toml_value(value)}" for key, value in description.items()]
        (out / f"{name}.toml").write_text("\n".join(lines) + "\n")
        if name == "resnet_basic":
            torch.save(state, out / "resnet_basic.pth")
        print(f"{name}: {sum(v.numel() for v in state.values())} values, features {list(features.shape)}, "
              f"logits {list(logits.shape)} in [{logits.min():.3f}, {logits.max():.3f}]")

    (out / "full_size_keys.json").write_text(json.dumps(full_size_keys(), indent=1) + "\n")
    (out / "malicious.pth").write_bytes(malicious_pickle())
    malicious_zip(out / "malicious_zip.pth")


def load_pth(path):
    """Only the legitimate resnet_basic.pth: the malicious files are compared by bytes, never unpickled."""
    assert path.name == "resnet_basic.pth", path
    return {k: v.numpy() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}


def same(ours, theirs, computed):
    if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
        return False
    if not np.issubdtype(ours.dtype, np.floating):
        return np.array_equal(ours, theirs)
    ours, theirs = ours.astype(np.float64), theirs.astype(np.float64)
    tolerance = COMPUTED_TOLERANCE * (1 + np.abs(theirs)) if computed else FLOAT_TOLERANCE
    return bool(np.all(np.abs(ours - theirs) <= tolerance))


def differences(ours, theirs):
    """The names of the differing tensors, or of the files' differing key sets."""
    if ours.keys() != theirs.keys():
        return [f"keys (lacks {sorted(ours.keys() - theirs.keys())}, extra {sorted(theirs.keys() - ours.keys())})"]
    return [k for k in sorted(ours) if not same(ours[k], theirs[k], k in COMPUTED)]


def check(committed):
    """Regenerates the fixtures and compares them by content (the metadata holds versions and may differ)."""
    with tempfile.TemporaryDirectory() as fresh:
        fresh = pathlib.Path(fresh)
        write(fresh)
        names = sorted(p.name for p in fresh.iterdir())
        found = sorted(p.name for p in committed.iterdir()) if committed.is_dir() else []
        if names != found:
            sys.exit(
                f"{committed}: lacks {sorted(set(names) - set(found))} and has extra "
                f"{sorted(set(found) - set(names))}: re-run scripts/make_model_fixtures.py"
            )
        failures = []
        for name in names:
            ours, theirs = fresh / name, committed / name
            if name.endswith(".safetensors"):
                bad = differences(load_file(str(ours)), load_file(str(theirs)))
            elif name == "resnet_basic.pth":
                bad = differences(load_pth(ours), load_pth(theirs))
            elif name.endswith(".json"):
                bad = [] if json.loads(ours.read_text()) == json.loads(theirs.read_text()) else ["content"]
            else:  # .toml and the malicious pickles
                bad = [] if ours.read_bytes() == theirs.read_bytes() else ["bytes"]
            if bad:
                failures.append(f"{name}: {', '.join(bad)}")
    if failures:
        recorded = {}
        made = sorted(committed.glob("*.safetensors"))
        if made:
            with safe_open(str(made[0]), framework="numpy") as f:
                recorded = f.metadata() or {}
        sys.exit(
            f"{committed}: differs from what scripts/make_model_fixtures.py makes with {versions()} (the files were "
            f"made with {recorded}):\n  " + "\n  ".join(failures) + "\nre-run it, or use the recorded versions"
        )
    print(f"{committed}: {len(names)} fixtures match the script")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed fixtures, write nothing")
    args = parser.parse_args()
    print(", ".join(f"{name} {version}" for name, version in versions().items()))
    if args.check:
        check(DEFAULT_OUT)
    else:
        write(DEFAULT_OUT)
        total = sum(p.stat().st_size for p in DEFAULT_OUT.iterdir())
        print(f"wrote {DEFAULT_OUT} ({total} bytes in {len(list(DEFAULT_OUT.iterdir()))} files)")


if __name__ == "__main__":
    main()
