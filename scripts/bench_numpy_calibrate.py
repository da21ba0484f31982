#!/usr/bin/env python3
"""The NumPy side of `cargo bench -p ftcal-eval`: the same calibrate summary, vectorised as a researcher
would write it (argpartition for top-5, sorted gaps for the exact curve), on the same shapes.

    pip install numpy safetensors
    python scripts/bench_numpy_calibrate.py [--rows 10000] [--write DIR]

With --write DIR it also saves train/test `.safetensors` of that size, to time `ftcal calibrate` end to end:
    ftcal calibrate --train DIR/train.safetensors --test DIR/test.safetensors --absent 500-999
"""

import argparse
import os
import time

# One core, as the Rust benchmark.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

CLASSES = 1000


def random_scores(rng, rows, absent):
    labels = rng.integers(0, CLASSES, size=rows)
    logits = 4.0 * rng.random((rows, CLASSES), dtype=np.float32)
    logits[:, ~absent] += 1.0
    logits[np.arange(rows), labels] += 2.0
    return logits, labels


def tables(logits, labels, absent, gamma):
    z = logits + np.float32(gamma) * absent
    in_absent = absent[labels]
    out = {}
    for k in (1, 5):
        top = np.argpartition(-z, k - 1, axis=1)[:, :k] if k > 1 else z.argmax(axis=1)[:, None]
        right = (top == labels[:, None]).any(axis=1)
        s_only = np.where(absent, -np.inf, z).argmax(axis=1) == labels
        u_only = np.where(absent, z, -np.inf).argmax(axis=1) == labels
        out[k] = (right.mean(), right[~in_absent].mean(), right[in_absent].mean(), s_only[~in_absent].mean(), u_only[in_absent].mean())
    return out


def alg(logits, labels, absent):
    rows = ~absent[labels]
    z = logits[rows].astype(np.float64)
    s_sum = z[:, ~absent].sum(axis=1) - z[np.arange(len(z)), labels[rows]]
    return np.mean(s_sum / ((~absent).sum() - 1)) - np.mean(z[:, absent].mean(axis=1))


def curve(logits, labels, absent):
    best_s = np.where(absent, -np.inf, logits).max(axis=1)
    best_u = np.where(absent, logits, -np.inf).max(axis=1)
    gap = best_s - best_u
    in_absent = absent[labels]
    label_score = logits[np.arange(len(labels)), labels]
    eligible_s = ~in_absent & (label_score == best_s)
    eligible_u = in_absent & (label_score == best_u)
    order = np.argsort(gap[eligible_s | eligible_u], kind="stable")
    is_u = in_absent[eligible_s | eligible_u][order]
    s_right = eligible_s.sum() - np.concatenate([[0], np.cumsum(~is_u)])
    u_right = np.concatenate([[0], np.cumsum(is_u)])
    s_acc, u_acc = s_right / (~in_absent).sum(), u_right / in_absent.sum()
    ausuc = np.sum((s_acc[:-1] - s_acc[1:]) * (u_acc[:-1] + u_acc[1:]) / 2)
    return ausuc, np.sort(gap[eligible_s | eligible_u]), s_right + u_right


def calibrate(train, test, absent):
    gamma_alg = alg(*train, absent)
    ausuc, gaps, overall = curve(*test, absent)
    best = int(np.argmax(overall))
    bounds = np.concatenate([[gaps[0] - 2], gaps, [gaps[-1] + 2]])
    gamma_oracle = (bounds[best] + bounds[best + 1]) / 2
    return [tables(*test, absent, g) for g in (0.0, gamma_alg, gamma_oracle)], ausuc


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", metavar="DIR")
    args = parser.parse_args()
    absent = np.zeros(CLASSES, dtype=bool)
    absent[CLASSES // 2:] = True
    rng = np.random.default_rng(0)
    for rows in args.rows:
        train, test = random_scores(rng, rows, absent), random_scores(rng, rows, absent)
        if args.write:
            from safetensors.numpy import save_file

            os.makedirs(args.write, exist_ok=True)
            for name, (z, y) in (("train", train), ("test", test)):
                save_file({"logits": z, "labels": y.astype(np.int64)}, os.path.join(args.write, f"{name}.safetensors"))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            calibrate(train, test, absent)
            times.append(time.perf_counter() - start)
        print(f"numpy {np.__version__} calibrate {rows}x{CLASSES}: median {1000 * np.median(times):.1f} ms over {args.repeats} runs (1 thread)")


if __name__ == "__main__":
    main()
