"""`qkern demo gemm`: quantize a float layer y = relu(x @ w), run it in integers, compare with float and reference."""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import argtypes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--m", type=argtypes.positive_int, default=256, help="rows of x (default 256)")
    parser.add_argument("--k", type=argtypes.positive_int, default=512, help="inner dimension (default 512)")
    parser.add_argument("--n", type=argtypes.positive_int, default=256, help="output channels (default 256)")
    parser.add_argument("--seed", type=argtypes.int_in(0), default=0, help="random seed")


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `approx` against `ref`, in dB (inf when they are equal)."""
    noise = float(np.sum((ref.astype(np.float64) - approx) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)


def main(args: argparse.Namespace) -> int:
    from .. import _backend
    from ..ops import gemm
    from ..qparams import calc_qparams
    from ..requant import Requant
    from ..runtime import info

    rng = np.random.default_rng(args.seed)
    m, k, n = args.m, args.k, args.n
    x = np.maximum(rng.standard_normal((m, k)), 0).astype(np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    y = np.maximum(x @ w, 0)
    xq_p = calc_qparams(x.min(), x.max(), "uint8")
    wq_p = calc_qparams(w.min(axis=0), w.max(axis=0), "int8", symmetric=True, axis=1)
    yq_p = calc_qparams(0.0, float(y.max()), "uint8")
    xq, wq = xq_p.quantize(x), wq_p.quantize(w)
    print(f"qkern demo: y = relu(x[{m},{k}] @ w[{k},{n}]), uint8 activations, per-channel int8 weights")
    native = _backend.core is not None
    print(f"  native backend: {info()['isa']}" if native else "  the C++ extension is missing: reference backend only")
    ok = True
    for rounding in ("gemmlowp", "single", "fp32"):
        rq = Requant.from_scales(xq_p.scale, wq_p.scale, yq_p.scale, yq_p.zero_point, rounding=rounding, relu=True)
        t0 = time.perf_counter()
        yq = gemm(xq, wq, a_zero_point=xq_p.zero_point, b_zero_point=wq_p.zero_point, requant=rq)
        dt = time.perf_counter() - t0
        with _backend.backend("reference"):
            yr = gemm(xq, wq, a_zero_point=xq_p.zero_point, b_zero_point=wq_p.zero_point, requant=rq)
        exact = bool(np.array_equal(yq, yr))
        ok &= exact
        sqnr = sqnr_db(y, yq_p.dequantize(yq))
        print(
            f"  {rounding:<8}  SQNR vs float {sqnr:5.1f} dB   native == reference: {exact if native else 'n/a'}   "
            f"{2 * m * k * n / dt / 1e9:7.2f} GOP/s"
        )
    return 0 if ok else 1
