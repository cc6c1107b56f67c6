"""The int32 overflow guard: max_safe_k against brute force, and check_overflow=True warning exactly when an
accumulator wrapped (exact int64 sums from the independent oracles)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import qkern

RANGES = {"uint8": (0, 255), "int8": (-128, 127)}


def _brute_max_safe_k(ta: str, tb: str, za: int, zb: int) -> int:
    """Every product enumerated; then the largest K whose K-fold extremes stay in int32, by bisection."""
    a = np.arange(RANGES[ta][0], RANGES[ta][1] + 1) - za
    b = np.arange(RANGES[tb][0], RANGES[tb][1] + 1) - zb
    products = np.multiply.outer(a, b)
    hi, lo = int(products.max()), int(products.min())
    good, bad = 0, 2**32
    while bad - good > 1:
        k = (good + bad) // 2
        good, bad = (k, bad) if k * hi <= 2**31 - 1 and k * lo >= -(2**31) else (good, k)
    return good


@pytest.mark.parametrize(("ta", "tb"), list(itertools.product(RANGES, RANGES)))
@pytest.mark.parametrize("zps", [(0, 0), (255, 127), (-128, -128), (17, -3)])
def test_max_safe_k_matches_the_products_brute_force(ta, tb, zps):
    za = min(max(zps[0], RANGES[ta][0]), RANGES[ta][1])
    zb = min(max(zps[1], RANGES[tb][0]), RANGES[tb][1])
    assert qkern.max_safe_k(ta, tb, za, zb) == _brute_max_safe_k(ta, tb, za, zb)


def test_max_safe_k_documented_values_and_per_channel():
    assert qkern.max_safe_k("uint8", "int8") == 65793  # 2^31 / (255 * 128), the u8/s8 worst product
    assert qkern.max_safe_k(np.uint8, np.dtype(np.uint8), 0, 0) == (2**31 - 1) // (255 * 255)
    per_channel = qkern.max_safe_k("uint8", "int8", 0, np.array([0, 127, -128], np.int32))
    assert per_channel == min(qkern.max_safe_k("uint8", "int8", 0, z) for z in (0, 127, -128))
    with pytest.raises(ValueError, match="a_zero_point"):
        qkern.max_safe_k("uint8", "int8", 300)
    with pytest.raises(ValueError, match="b_dtype"):
        qkern.max_safe_k("uint8", "int16")


def _wrap_warnings(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_gemm_check_overflow_warns_exactly_when_the_exact_sum_leaves_int32(backend):
    k_safe = qkern.max_safe_k("uint8", "int8")
    a = np.full((2, k_safe + 1), 255, np.uint8)
    b = np.full((k_safe + 1, 3), -128, np.int8)
    b[:, 1] = 0  # column 1 never wraps
    with qkern.backend(backend):
        at_limit = _wrap_warnings(lambda: qkern.gemm(a[:, :k_safe], b[:k_safe], check_overflow=True))
        over = _wrap_warnings(lambda: qkern.gemm(a, b, check_overflow=True))
        silent = _wrap_warnings(lambda: qkern.gemm(a, b))
    exact = a.astype(np.int64) @ b.astype(np.int64)  # the unwrapped sums
    assert exact[:, 0].min() < -(2**31) and np.all(np.abs(exact[:, 1]) <= 2**31 - 1)
    assert at_limit == [] and silent == []
    assert len(over) == 1 and over[0].startswith("gemm:") and "4 int32 accumulator(s) wrapped" in over[0]


def test_bias_alone_can_push_an_accumulator_over():
    a = np.full((1, 4), 255, np.uint8)
    b = np.full((4, 2), 127, np.int8)
    bias = np.array([2**31 - 1, 0], np.int32)
    msgs = _wrap_warnings(lambda: qkern.gemm(a, b, bias=bias, check_overflow=True))
    assert len(msgs) == 1 and "1 int32 accumulator(s)" in msgs[0]
    assert _wrap_warnings(lambda: qkern.gemm(a, b, bias=np.zeros(2, np.int32), check_overflow=True)) == []


def test_conv_ops_check_overflow():
    c = qkern.max_safe_k("uint8", "int8") // 9 + 1  # 9 C terms per conv3x3 output: just over the bound
    x = np.full((1, 3, 3, c), 255, np.uint8)
    w = np.full((2, 3, 3, c), -128, np.int8)
    w[1] = 1
    msgs = _wrap_warnings(lambda: qkern.conv3x3(x, w, padding=0, check_overflow=True))
    assert len(msgs) == 1 and msgs[0].startswith("conv3x3:") and "1 int32" in msgs[0]
    # padding=1: the corner outputs see 4 of the 9 taps and stay in range; the centre one wraps.
    msgs = _wrap_warnings(lambda: qkern.conv3x3(x, w, padding=1, check_overflow=True))
    assert len(msgs) == 1 and "1 int32" in msgs[0]
    assert _wrap_warnings(lambda: qkern.conv3x3(x[..., : c - 1], w[..., : c - 1], check_overflow=True)) == []
    cd = qkern.max_safe_k("int8", "int8", -128, 127) + 1
    xd = np.full((1, 1, 2, cd), 127, np.int8)
    wd = np.full((cd, 2, 2, 1), -128, np.int8)
    msgs = _wrap_warnings(
        lambda: qkern.conv_transpose2x2(xd, wd, x_zero_point=-128, w_zero_point=127, check_overflow=True)
    )
    assert len(msgs) == 1 and msgs[0].startswith("conv_transpose2x2:") and "8 int32" in msgs[0]
    assert _wrap_warnings(lambda: qkern.conv_transpose2x2(xd[..., :-1], wd[:-1], check_overflow=True)) == []
