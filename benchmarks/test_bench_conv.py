"""pytest-benchmark conv3x3 and conv_transpose2x2 timings (run with `python -m pytest benchmarks
--benchmark-enable`); each checks its answer against the reference before it is timed."""

from __future__ import annotations

import numpy as np
import pytest
import qkern


@pytest.mark.parametrize(("n", "h", "w", "c", "o", "stride"), [(1, 28, 28, 64, 64, 1), (1, 56, 56, 3, 32, 2)])
def test_conv3x3_u8s8(benchmark, n, h, w, c, o, stride):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    wt = rng.integers(-127, 128, (o, 3, 3, c), dtype=np.int8)
    rq = qkern.Requant.from_scales(0.02, 0.004, 0.5, 128, rounding="fp32")
    packed = qkern.PackedConv3x3(wt, 0, None, rq, stride=stride)
    want = qkern.reference.conv3x3(x, wt, stride, 1, 128, 0, None, rq)
    np.testing.assert_array_equal(packed(x, x_zero_point=128), want)
    benchmark.group = f"conv3x3 {n}x{h}x{w} {c}->{o} s{stride}"
    benchmark.extra_info["gop"] = 2 * want.size * 9 * c / 1e9
    benchmark(packed, x, x_zero_point=128)


@pytest.mark.parametrize(("n", "h", "w", "c", "o"), [(1, 14, 14, 128, 64), (2, 16, 16, 64, 32)])
def test_deconv2x2_u8s8(benchmark, n, h, w, c, o):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    wt = rng.integers(-127, 128, (c, 2, 2, o), dtype=np.int8)
    rq = qkern.Requant.from_scales(0.02, 0.004, 0.5, 128, rounding="fp32")
    packed = qkern.PackedConvTranspose2x2(wt, 0, None, rq)
    want = qkern.reference.conv_transpose2x2(x, wt, 128, 0, None, rq)
    np.testing.assert_array_equal(packed(x, x_zero_point=128), want)
    benchmark.group = f"deconv2x2 {n}x{h}x{w} {c}->{o}"
    benchmark.extra_info["gop"] = 2 * n * h * w * 4 * o * c / 1e9
    benchmark(packed, x, x_zero_point=128)
