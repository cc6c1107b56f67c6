"""pytest-benchmark GEMM timings (run with `python -m pytest benchmarks --benchmark-enable`); each checks
its answer against the reference before it is timed."""

from __future__ import annotations

import numpy as np
import pytest
import qkern

SHAPES = [(1, 256, 256), (64, 256, 256), (256, 512, 512)]


@pytest.mark.parametrize(("m", "n", "k"), SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("impl", ["qkern", "numpy_int32"])
def test_gemm_u8s8(benchmark, m, n, k, impl):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    want = qkern.reference.gemm(a, b, 3, 0)
    if impl == "qkern":

        def fn():
            return qkern.gemm(a, b, a_zero_point=3)
    else:

        def fn():
            return (a.astype(np.int32) - 3) @ b.astype(np.int32)

    np.testing.assert_array_equal(fn(), want)
    benchmark.group = f"gemm {m}x{n}x{k}"
    benchmark.extra_info["gop"] = 2 * m * n * k / 1e9
    benchmark(fn)
