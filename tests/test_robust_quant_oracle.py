"""quantize and calc_qparams against an exact rational oracle (fractions.Fraction, one IEEE rounding per
float32 operation), and every branch of qparams.py's single-rounding FMA emulation. No torch needed."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import qkern
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_support import examples
from qkern.qparams import _fma_to_f32

F32_MAX_EXP = 128  # float32 values are below 2^128; 2^-149 is the smallest subnormal


def f32(v: Fraction) -> float:
    """The rational v rounded once to the nearest float32 (ties to even); +-inf past the largest finite."""
    if v == 0:
        return 0.0
    a = abs(v)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # 2^e <= a < 2^(e+2)
    if Fraction(2) ** e > a:
        e -= 1
    quantum = Fraction(2) ** max(e - 23, -149)
    r = round(a / quantum) * quantum  # Fraction rounding: half to even
    if r >= Fraction(2) ** F32_MAX_EXP:
        return math.copysign(math.inf, v)
    return math.copysign(float(r), v)


def rne_clamp(v: float, qmin: int, qmax: int) -> int:
    if math.isinf(v):
        return qmax if v > 0 else qmin
    return min(max(round(Fraction(v)), qmin), qmax)


def oracle_quantize(x: float, scale: float, zp: int, qmin: int, qmax: int, per_channel: bool) -> int:
    """Per tensor: rne(f32(x * inv + zp)) with one rounding (FMA); per channel: rne(f32(f32(x * inv) + zp))."""
    inv = f32(1 / Fraction(f32(Fraction(scale))))
    if math.isinf(x):
        return qmax if x > 0 else qmin
    if per_channel:
        t = f32(Fraction(x) * Fraction(inv))
        v = t if math.isinf(t) else f32(Fraction(t) + zp)
    else:
        v = f32(Fraction(x) * Fraction(inv) + zp)
    return rne_clamp(v, qmin, qmax)


def test_the_reported_tie_case_needs_the_single_rounding():
    """x = 0.6942091584205627 (float32), scale 1.3883970975875854, zero point 128: 129 (torch agrees);
    rounding the float64 sum to float32 a second time gives 128."""
    x, scale = np.float32(0.6942091584205627), 1.3883970975875854
    want = oracle_quantize(float(x), scale, 128, 0, 255, per_channel=False)
    inv = np.float32(1) / np.float32(scale)
    double_rounded = int(np.rint(np.float32(np.float64(x) * np.float64(inv) + 128.0)))
    assert want == 129 and double_rounded == 128
    assert qkern.quantize(np.array([x]), scale, 128, "uint8").tolist() == [want]


def _tie_cases() -> list[tuple[float, int]]:
    """(p, c) with p + c a float32 half-way point plus a residue below float64's precision there: the
    float64 sum lands exactly on the tie, and only the residue's sign picks the correct neighbour."""
    cases = []
    for c in (128, -128, 200, 3):
        base = Fraction(c) + Fraction(1, 2)
        step = Fraction(2) ** (math.frexp(float(abs(base)))[1] - 1 - 23)  # float32 spacing at |base|
        for odd in (1, 3, 5, 7):  # odd multiples of half a step: ties whose even neighbour lies either side
            for residue in (1, -1):
                mid = base + odd * step / 2
                p = mid - c + residue * step * Fraction(2) ** -31  # below float64's half-ulp at |mid|
                assert Fraction(float(p)) == p  # p itself is exact in float64
                assert Fraction(float(p + c)) == mid  # ... and the float64 sum is exactly the tie
                cases.append((float(p), c))
    return cases


@pytest.mark.parametrize(("p", "c"), _tie_cases())
def test_fma_emulation_tie_branches(p, c):
    assert float(_fma_to_f32(np.array([p]), np.float64(c))[0]) == f32(Fraction(p) + c)


def test_tie_cases_defeat_a_second_rounding_both_ways():
    """Half the tie cases round the wrong way without the correction, in both directions: removing either
    side of the correction fails test_fma_emulation_tie_branches."""
    signs = [np.sign(f32(Fraction(p) + c) - float(np.float32(np.float64(p) + np.float64(c)))) for p, c in _tie_cases()]
    assert signs.count(1.0) >= 4 and signs.count(-1.0) >= 4


@pytest.mark.parametrize(
    ("p", "c"),
    [
        (0.25, 7),  # exact sum, no rounding at all
        (1.0 + 2.0**-30, 100),  # rounds in float32 only, not a tie
        (2.0**-60, 1),  # float64 rounds (e != 0) but the sum is not near a float32 tie
        (3.0e38, 0),  # the largest finite range
        (3.4028234663852886e38 * 1.5, 0),  # overflows float32: inf, the neighbour search must not fail
        (-3.4028234663852886e38 * 1.5, -5),
    ],
)
def test_fma_emulation_non_tie_branches(p, c):
    with np.errstate(over="ignore"):
        got = float(_fma_to_f32(np.array([p]), np.float64(c))[0])
    assert got == f32(Fraction(p) + c)


FLOATS32 = st.one_of(
    st.floats(width=32, allow_nan=False),
    st.floats(-300.0, 300.0, width=32),
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 127.5, -128.5]),
)
SCALES = st.one_of(st.floats(2.0**-30, 2.0**30), st.sampled_from([1.0, 0.5, 1 / 3, 0.1, 1.3883970975875854]))


@examples(200)
@given(st.lists(FLOATS32, min_size=1, max_size=8), SCALES, st.sampled_from(["uint8", "int8"]), st.data())
def test_quantize_per_tensor_equals_the_rational_oracle(xs, scale, dtype, data):
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    zp = data.draw(st.integers(lo, hi))
    qmin = data.draw(st.integers(lo, hi))
    qmax = data.draw(st.integers(qmin, hi))
    x = np.array(xs, np.float32)
    got = qkern.quantize(x, scale, zp, dtype, qmin=qmin, qmax=qmax)
    want = [oracle_quantize(float(v), scale, zp, qmin, qmax, per_channel=False) for v in x]
    assert got.tolist() == want


@examples(150)
@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from(["uint8", "int8"]), st.data())
def test_quantize_per_channel_equals_the_rational_oracle(rows, channels, dtype, data):
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    x = np.array(data.draw(st.lists(FLOATS32, min_size=rows * channels, max_size=rows * channels)), np.float32)
    x = x.reshape(rows, channels)
    scales = np.array(data.draw(st.lists(SCALES, min_size=channels, max_size=channels)))
    zps = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=channels, max_size=channels)), np.int32)
    got = qkern.quantize(x, scales, zps, dtype, axis=1)
    want = [
        [oracle_quantize(float(x[r, c]), scales[c], int(zps[c]), lo, hi, per_channel=True) for c in range(channels)]
        for r in range(rows)
    ]
    assert got.tolist() == want


def oracle_qparams(mn: float, mx: float, dtype: str, symmetric: bool) -> tuple[float, int]:
    """calc_qparams' eqs. (2)-(3), each float32 operation rounded once by `f32` (8-bit, full range)."""
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    eps = 2.0**-23
    min_neg, max_pos = Fraction(min(f32(Fraction(mn)), 0.0)), Fraction(max(f32(Fraction(mx)), 0.0))
    if symmetric:
        max_pos = max(-min_neg, max_pos)
        scale = max(f32(max_pos / Fraction(f32(Fraction(qmax - qmin, 2)))), eps)
        return scale, (128 if dtype == "uint8" else 0)
    scale = max(f32(Fraction(f32(max_pos - min_neg)) / (qmax - qmin)), eps)
    zp = qmin - round(Fraction(f32(min_neg / Fraction(scale))))
    return scale, min(max(zp, qmin), qmax)


RANGE_ENDS = st.one_of(st.floats(-(2.0**100), 2.0**100, width=32), st.floats(-10.0, 10.0, width=32), st.just(0.0))


@examples(200)
@given(RANGE_ENDS, RANGE_ENDS, st.sampled_from(["uint8", "int8"]), st.booleans())
def test_calc_qparams_equals_the_rational_oracle(a, b, dtype, symmetric):
    mn, mx = min(a, b), max(a, b)
    qp = qkern.calc_qparams(mn, mx, dtype, symmetric=symmetric)
    scale, zp = oracle_qparams(mn, mx, dtype, symmetric)
    assert (float(qp.scale), qp.zero_point) == (scale, zp)
