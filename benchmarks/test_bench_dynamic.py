"""pytest-benchmark timings of dynamic int8 Linear layers (float32 in and out): qkern against torch's x86
dynamic Linear, ONNX Runtime's quantize_dynamic graph and float torch/ORT, 2 threads; each implementation's
answer is checked against the float Linear before it is timed."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import qkern
from qkern.tools import bench_dynamic as B

IMPLS = ["qkern", "qkern per-row", "torch dynamic", "ort dynamic", "torch float", "ort float"]
THREADS = 2


@functools.cache
def _problem(k: int, n: int):
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    bias = (rng.standard_normal(n) * 0.1).astype(np.float32)
    impls = {
        "qkern": qkern.DynamicLinear(weight, bias, per_channel=True, reduce_range=True),
        "qkern per-row": qkern.DynamicLinear(weight, bias, per_channel=True, per_row=True),
    }
    impls.update(B._torch_peers(weight, bias, THREADS))
    impls.update(B._ort_peers(weight, bias, THREADS))
    return weight, bias, impls


@pytest.mark.parametrize(("k", "n"), B.KN_SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("m", B.M_VALUES)
@pytest.mark.parametrize("impl", IMPLS)
def test_dynamic_linear(benchmark, k, n, m, impl):
    weight, bias, impls = _problem(k, n)
    if impl not in impls:
        pytest.skip(f"{impl} is not installed")
    old = qkern.get_num_threads()
    qkern.set_num_threads(THREADS)
    try:
        x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
        fn = impls[impl]
        expected = x.astype(np.float64) @ weight.T.astype(np.float64) + bias
        error = np.abs(np.asarray(fn(x), np.float64) - expected).max() / np.abs(expected).max()
        assert error < B.MAX_RELATIVE_ERROR, f"{impl}: relative error {error:.3g}"
        benchmark.group = f"dynamic linear M={m} K={k} N={n}"
        benchmark.extra_info["relative_error"] = float(error)
        benchmark(fn, x)
    finally:
        qkern.set_num_threads(old)
