#!/usr/bin/env python3
"""The README's Holistic Transfer comparison on Digits-2: the quickstart fine-tuned plainly, with HT
(configs/quickstart-ht.toml), and with each part of HT alone, on the same data, budget and pre-trained
model; prints one markdown table, a row per variant: the fine-tuned model's Acc_{Y/Y} (Acc_{S/Y} /
Acc_{U/Y}) and AUSUC, then γ and the accuracies after ALG, PCV and the oracle γ*.

    cargo build --release -p ftcal
    python3 scripts/compare_holistic_transfer.py [--out runs/ht-comparison] [--ftcal target/release/ftcal]

The plain quickstart runs first, with its source stage; every other variant starts from its source model
(the quickstart's config without the source stage, `model.weights` pointing at that model), which is the
model each would have trained itself: the source stage is deterministic. Needs only the standard library.
"""

import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (name, what `fine_tuning.method` is, extra config tables): each variant is the quickstart otherwise.
VARIANTS = [
    ("HT (frozen classifier + LOLSGD + distillation)", "holistic_transfer", ""),
    ("frozen classifier alone", "frozen_classifier", ""),
    ("LOLSGD alone", "full", "[fine_tuning.lolsgd]\n"),
    ("distillation alone", "full", "[fine_tuning.distillation]\n"),
    ("rank regulariser alone", "full", "[fine_tuning.rank_regularization]\n"),
    ("logit ensemble alone", "full", '[fine_tuning.ensemble]\nkind = "logits"\n'),
    ("weight ensemble alone", "full", '[fine_tuning.ensemble]\nkind = "weights"\n'),
    ("HT + rank regulariser", "holistic_transfer", "[fine_tuning.rank_regularization]\n"),
    ("HT + logit ensemble", "holistic_transfer", '[fine_tuning.ensemble]\nkind = "logits"\n'),
    ("HT + weight ensemble", "holistic_transfer", '[fine_tuning.ensemble]\nkind = "weights"\n'),
]


def without_source(text):
    """The config without its `[source…]` and `[data.source]` tables."""
    kept, skipping = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            table = stripped.strip("[]")
            skipping = table == "source" or table.startswith("source.") or table == "data.source"
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n"


def variant_config(base, name, method, tables, weights):
    text = without_source(base).replace('name = "quickstart"', f'name = "{name}"')
    text = text.replace('arch = "configs/models/resnet_digits.toml"',
                        f'arch = "configs/models/resnet_digits.toml"\nweights = "{weights}"')
    text = text.replace("[fine_tuning]\n", f'[fine_tuning]\nmethod = "{method}"\n')
    return text + "\n" + tables


def run(ftcal, config, out):
    result = subprocess.run([ftcal, "run", str(config), "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"{config}: ftcal run failed:\n{result.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text())


def cell(metrics):
    """Acc_{Y/Y} (Acc_{S/Y} / Acc_{U/Y})."""
    acc = metrics["acc"]
    return f"{acc['Y/Y']:.2f} ({acc['S/Y']:.1f} / {acc['U/Y']:.1f})"


def row(label, summary):
    """One variant: the fine-tuned model, then each calibration (γ, and its accuracies)."""
    cells = [label, cell(summary["finetuned"]), f"{summary['finetuned']['ausuc']:.4f}"]
    for key in ("alg", "pcv", "oracle"):
        calibrated = summary["calibrated"].get(key)
        cells.append("—" if calibrated is None else f"{calibrated['gamma']:.2f}: {cell(calibrated)}")
    return "| " + " | ".join(cells) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/ht-comparison", type=pathlib.Path)
    parser.add_argument("--ftcal", default=str(ROOT / "target" / "release" / "ftcal"))
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = (ROOT / "configs" / "quickstart.toml").read_text()
    plain = run(args.ftcal, ROOT / "configs" / "quickstart.toml", out / "fine_tuning")
    weights = out / "fine_tuning" / "models" / "source.safetensors"
    pretrained = plain["pretrained"]
    lines = [
        "| fine-tuning | Y/Y (S/Y / U/Y) | AUSUC | + ALG: γ, Y/Y (S/Y / U/Y) | + PCV | + γ* |",
        "|---|---|---:|---|---|---|",
        f"| none (the pre-trained model) | {cell(pretrained)} | {pretrained['ausuc']:.4f} | | | |",
        row("plain", plain),
    ]
    for index, (label, method, tables) in enumerate(VARIANTS):
        name = f"variant-{index}"
        config = out / f"{name}.toml"
        config.write_text(variant_config(base, name, method, tables, weights))
        lines.append(row(label, run(args.ftcal, config, out / name)))
        print(f"{label}: done", file=sys.stderr)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
