#!/usr/bin/env python3
"""Make the score-file fixtures of ftcal-eval, and their expected metrics by NumPy, in tests/fixtures/eval/.

The files are written the way a PyTorch / NumPy user writes them (numpy.savez, numpy.savez_compressed,
safetensors.numpy.save_file) in several dtypes and layouts. expected.json holds the metrics computed here
by the paper's definitions, directly and naively (argmax over calibrated logits, lowest index on ties), so
the Rust tests check ftcal's fast algorithms against an independent implementation.

    pip install numpy safetensors
    python scripts/make_eval_fixtures.py              # rewrites tests/fixtures/eval/
    python scripts/make_eval_fixtures.py --check      # regenerates in a temporary directory and compares
                                                      # every array and expected value with the committed ones

The output is deterministic (seed 0); re-running it must leave `git status` clean.
"""

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "eval"
NUM_CLASSES = 10
ABSENT = [1, 4, 7, 8]
FEATURE_DIM = 16


def normalise(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def make_split(rng, prototypes, weights, num_samples):
    labels = rng.integers(0, NUM_CLASSES, size=num_samples)
    features = prototypes[labels] + rng.normal(scale=1.6, size=(num_samples, FEATURE_DIM))
    # A fine-tuned cosine-like head: the fine-tuning classes' logits grew in scale and offset, the absent
    # ones' did not, so absent classes lose to S at γ = 0 although the features still separate them.
    fine_tuning = np.array([c not in ABSENT for c in range(NUM_CLASSES)])
    cosine = normalise(features) @ normalise(weights).T
    logits = cosine * np.where(fine_tuning, 8.0, 4.0) + np.where(fine_tuning, 1.0, 0.0)
    # Multiples of 1/8 within ±15 are exact in float16, so every file format holds the same values.
    logits = np.clip(np.round(logits * 8) / 8, -15, 15).astype(np.float32)
    return logits, labels.astype(np.int64), features.astype(np.float32)


def top_k_correct(scores, labels, candidates, k):
    """Top-k correctness over the candidate classes; ties go to the lowest class index."""
    masked = np.where(candidates[None, :], scores, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    return (order == labels[:, None]).any(axis=1) & candidates[labels]


def accuracy_table(scores, labels, gamma, k):
    absent = np.zeros(NUM_CLASSES, dtype=bool)
    absent[ABSENT] = True
    calibrated = scores.astype(np.float64) + gamma * absent
    everything = np.ones(NUM_CLASSES, dtype=bool)
    in_absent = absent[labels]

    def pct(correct, rows):
        return float(100.0 * correct[rows].mean()) if rows.any() else None

    overall = top_k_correct(calibrated, labels, everything, k)
    return {
        "Y/Y": pct(overall, np.ones_like(in_absent)),
        "S/Y": pct(overall, ~in_absent),
        "U/Y": pct(overall, in_absent),
        "S/S": pct(top_k_correct(calibrated, labels, ~absent, k), ~in_absent),
        "U/U": pct(top_k_correct(calibrated, labels, absent, k), in_absent),
    }


def alg_gamma(logits, labels):
    absent = np.zeros(NUM_CLASSES, dtype=bool)
    absent[ABSENT] = True
    rows = ~absent[labels]
    z = logits[rows].astype(np.float64)
    y = labels[rows]
    fine_tuning_sum = z[:, ~absent].sum(axis=1) - z[np.arange(len(y)), y]
    return float(np.mean(fine_tuning_sum / (NUM_CLASSES - len(ABSENT) - 1)) - np.mean(z[:, absent].mean(axis=1)))


def brute_force_curve(logits, labels):
    """Accuracies on every interval between *all* pairwise logit differences: a superset of the breakpoints."""
    absent = np.zeros(NUM_CLASSES, dtype=bool)
    absent[ABSENT] = True
    z = logits.astype(np.float64)
    breaks = np.unique((z[:, ~absent][:, :, None] - z[:, absent][:, None, :]).ravel())
    gammas = np.concatenate([[breaks[0] - 1], (breaks[:-1] + breaks[1:]) / 2, [breaks[-1] + 1]])
    points = []
    for gamma in gammas:
        table = accuracy_table(logits, labels, gamma, 1)
        points.append((gamma, table["S/Y"] / 100, table["U/Y"] / 100, table["Y/Y"]))
    # Increasing γ: Acc_S/Y falls, Acc_U/Y rises; trapezoids between consecutive points.
    area = sum((s0 - s1) * (u0 + u1) / 2 for (_, s0, u0, _), (_, s1, u1, _) in zip(points, points[1:]))
    best = max(p[3] for p in points)
    return area, best


def ncm_table(train_features, train_labels, features, labels):
    reference = normalise(train_features.astype(np.float64))
    means = np.stack([reference[train_labels == c].sum(axis=0) for c in range(NUM_CLASSES)])
    scores = normalise(features.astype(np.float64)) @ normalise(means).T
    return accuracy_table(scores, labels, 0.0, 1)


def load_arrays(path):
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return {"json": json.loads(path.read_text())}


def check(committed):
    """Regenerates the fixtures and compares them by content (zip bytes may differ across zlib versions)."""
    with tempfile.TemporaryDirectory() as fresh:
        fresh = pathlib.Path(fresh)
        write(fresh)
        names = sorted(p.name for p in fresh.iterdir())
        if names != sorted(p.name for p in committed.iterdir()):
            sys.exit(f"{committed}: the committed files differ from the script's: {names}")
        for name in names:
            ours, theirs = load_arrays(fresh / name), load_arrays(committed / name)
            same = ours.keys() == theirs.keys() and all(
                np.array_equal(ours[k], theirs[k], equal_nan=True) if k != "json" else ours[k] == theirs[k]
                for k in ours
            )
            if not same:
                sys.exit(f"{committed / name} is not what scripts/make_eval_fixtures.py makes: re-run it")
    print(f"{committed}: {len(names)} fixtures match the script")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed fixtures, write nothing")
    if parser.parse_args().check:
        check(DEFAULT_OUT)
    else:
        write(DEFAULT_OUT)


def write(out):
    rng = np.random.default_rng(0)
    prototypes = rng.normal(scale=1.0, size=(NUM_CLASSES, FEATURE_DIM))
    weights = prototypes + rng.normal(scale=0.3, size=prototypes.shape)
    train_logits, train_labels, train_features = make_split(rng, prototypes, weights, 80)
    test_logits, test_labels, test_features = make_split(rng, prototypes, weights, 60)

    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "train.npz", logits=train_logits, labels=train_labels, features=train_features)
    save_file({"logits": test_logits, "labels": test_labels, "features": test_features}, str(out / "test.safetensors"))
    # The same test split as a user might save it otherwise: float64, column-major, int32 labels, uncompressed.
    np.savez(
        out / "test.npz",
        logits=np.asfortranarray(test_logits.astype(np.float64)),
        labels=test_labels.astype(np.int32),
        features=test_features.astype(np.float64),
    )
    save_file({"logits": test_logits.astype(np.float16), "labels": test_labels.astype(np.uint8)}, str(out / "test_f16.safetensors"))

    # Bad inputs, one defect each.
    nan_logits = test_logits.copy()
    nan_logits[7, 3] = np.nan
    save_file({"logits": nan_logits, "labels": test_labels}, str(out / "bad_nan.safetensors"))
    save_file({"logits": test_logits, "labels": test_labels[:-1]}, str(out / "bad_rows.safetensors"))
    out_of_range = test_labels.copy()
    out_of_range[11] = NUM_CLASSES
    np.savez(out / "bad_label.npz", logits=test_logits, labels=out_of_range)
    np.savez(out / "bad_missing.npz", logits=test_logits, targets=test_labels)

    gamma_alg = alg_gamma(train_logits, train_labels)
    ausuc, best_overall = brute_force_curve(test_logits, test_labels)
    expected = {
        "num_classes": NUM_CLASSES,
        "absent": ABSENT,
        "alg_gamma": gamma_alg,
        "acc": accuracy_table(test_logits, test_labels, 0.0, 1),
        "acc_top5": accuracy_table(test_logits, test_labels, 0.0, 5),
        "alg_acc": accuracy_table(test_logits, test_labels, gamma_alg, 1),
        "ncm": ncm_table(train_features, train_labels, test_features, test_labels),
        "ausuc": ausuc,
        "oracle_best_overall": best_overall,
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"wrote {out}: ALG γ = {gamma_alg:.4f}, AUSUC = {ausuc:.4f}, oracle Acc_Y/Y = {best_overall:.2f}")


if __name__ == "__main__":
    main()
