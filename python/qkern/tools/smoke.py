"""Perf smoke figures: qkern alone on GEMM 1024^3 and conv3x3 56x56 64->64, one thread, best round.

Used by `benchmarks/test_perf_smoke.py` (docs/speed-design.md S11: each figure must stay >= 80% of the
value recorded for this CPU in `benchmarks/perf_baseline.json`) and by `tools/record_perf_baseline.py`.
One thread and the best of many rounds: the 2-vCPU VM's second core comes and goes, and a guard must not
flap with it; a real regression slows every round.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import runtime
from ..packed import PackedGemm
from ..packed_conv import PackedConv3x3
from ..reference import conv3x3 as reference_conv3x3
from ..reference import gemm as reference_gemm
from ..requant import Requant

SMOKE_FLOOR = 0.8  # a figure below this fraction of the recorded one fails the guard


def cpu_signature() -> str:
    """What the recorded figures are valid for: CPU model, logical CPU count and the ISA qkern runs."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} | {os.cpu_count()} cpus | {runtime.get_isa()}"


def _best_gops(fn: Callable[[], Any], ops: float, rounds: int, calls: int) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return ops / best / 1e9


def smoke_figures(rounds: int = 15) -> dict[str, float]:
    """GOP/s of each smoke case (answers checked against the reference first), at one thread."""
    rng = np.random.default_rng(0)
    rq = Requant(0.0005, zero_point=128)
    threads = runtime.get_num_threads()
    runtime.set_num_threads(1)
    try:
        a = rng.integers(0, 256, (1024, 1024), dtype=np.uint8)
        b = rng.integers(-128, 128, (1024, 1024), dtype=np.int8)
        gemm = PackedGemm(b, 0, None, rq)
        out = np.empty((1024, 1024), np.uint8)
        if not np.array_equal(gemm(a, a_zero_point=3), reference_gemm(a, b, 3, 0, None, rq)):
            raise AssertionError("smoke GEMM 1024^3: qkern differs from the reference")
        x = rng.integers(0, 256, (1, 56, 56, 64), dtype=np.uint8)
        w = rng.integers(-127, 128, (64, 3, 3, 64), dtype=np.int8)
        conv = PackedConv3x3(w, 0, None, rq, stride=1, padding=1)
        y = np.empty((1, 56, 56, 64), np.uint8)
        if not np.array_equal(conv(x, x_zero_point=3), reference_conv3x3(x, w, 1, 1, 3, 0, None, rq)):
            raise AssertionError("smoke conv3x3 56x56 64->64: qkern differs from the reference")
        return {
            "gemm_1024_1t_gops": _best_gops(lambda: gemm(a, a_zero_point=3, out=out), 2.0 * 1024**3, rounds, 3),
            "conv3x3_56x56x64_1t_gops": _best_gops(
                lambda: conv(x, x_zero_point=3, out=y), 2.0 * 56 * 56 * 64 * 9 * 64, rounds, 20
            ),
        }
    finally:
        runtime.set_num_threads(threads)
