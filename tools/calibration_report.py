"""Draws docs/calibration.png (one activation histogram and the clipping range each method picks) and
prints the SQNR of each method on a few distributions, for docs/calibration.md."""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from qkern.calibration import Calibrator

METHODS = {
    "minmax": dict(method="minmax"),
    "percentile 99.99": dict(method="percentile", percentile=99.99),
    "mse": dict(method="mse"),
    "entropy (TensorRT)": dict(method="entropy"),
    "entropy (ORT)": dict(method="entropy", entropy_variant="onnxruntime"),
}


def distributions(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "gaussian": rng.standard_normal(200_000),
        "laplace": rng.laplace(size=200_000),
        "relu(gaussian)": np.maximum(rng.standard_normal(200_000), 0),
        "gaussian + 0.1% outliers x20": np.concatenate([rng.standard_normal(199_800), rng.standard_normal(200) * 20]),
    }


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((x.astype(np.float64) - y) ** 2)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plot", default="docs/calibration.png")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    data = {k: v.astype(np.float32) for k, v in distributions(rng).items()}
    print("| distribution | " + " | ".join(METHODS) + " |")
    print("|---" * (len(METHODS) + 1) + "|")
    ranges = {}
    for name, x in data.items():
        row = []
        for label, kw in METHODS.items():
            sym = x.min() < 0
            c = Calibrator(**kw, symmetric=bool(sym), dtype="int8" if sym else "uint8")
            for batch in np.array_split(x, 4):
                c(batch)
            q = c.calculate_qparams()
            row.append(f"{sqnr_db(x, q.dequantize(q.quantize(x))):.1f}")
            ranges[(name, label)] = c.compute_range()
        print(f"| {name} | " + " | ".join(row) + " |")
    name = "gaussian + 0.1% outliers x20"
    x = data[name]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(x, bins=400, log=True, color="0.7")
    for i, label in enumerate(METHODS):
        lo, hi = ranges[(name, label)]
        for v in (lo, hi):
            ax.axvline(v, color=f"C{i}", ls="--", label=label if v == hi else None)
    ax.set_title(f"{name}: clipping range per method (int8, symmetric)")
    ax.set_xlabel("activation value")
    ax.set_ylabel("count (log)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
