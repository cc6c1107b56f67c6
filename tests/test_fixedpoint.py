"""Fixed-point primitives: C++ (_core) == NumPy (qkern.fixedpoint) == exact Python-integer formulas."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from qkern import _backend, quantize_multiplier
from qkern import fixedpoint as fp

core = _backend.core
needs_core = pytest.mark.skipif(core is None, reason="qkern._core is not built")

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
EDGES = np.array(
    [
        I32_MIN,
        I32_MIN + 1,
        -(2**30) - 1,
        -(2**30),
        -(2**30) + 1,
        -65536,
        -255,
        -2,
        -1,
        0,
        1,
        2,
        255,
        65536,
        2**30 - 1,
        2**30,
        2**30 + 1,
        I32_MAX - 1,
        I32_MAX,
    ],
    dtype=np.int32,
)


def _obj(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(np.int64).astype(object)


def _trunc_div(num: np.ndarray, den: int) -> np.ndarray:
    """Division truncating toward zero on Python ints (C's `/`), elementwise."""
    q = np.abs(num) // den
    return np.where(num < 0, -q, q)


def srdhm_formula(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's own form: sign-dependent nudge, truncating division by 2^31, INT32_MIN^2 saturates."""
    ab = _obj(a) * _obj(b)
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    r = _trunc_div(ab + nudge, 1 << 31)
    return np.where((_obj(a) == I32_MIN) & (_obj(b) == I32_MIN), I32_MAX, r).astype(np.int64)


def rdbpot_formula(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """x / 2^e rounded to nearest, ties away from zero, from exact rationals."""
    out = []
    for xi, ei in zip(x.tolist(), e.tolist()):
        f = Fraction(xi, 2**ei)
        mag = abs(f)
        r = int(mag) + (1 if mag - int(mag) >= Fraction(1, 2) else 0)
        out.append(r if f >= 0 else -r)
    return np.array(out, dtype=np.int64)


def single_formula(x: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """floor(x * M * 2^(s-31) + 1/2): round half toward +inf, exact."""
    num = _obj(x) * _obj(m) * (2 ** (_obj(s) + 31))  # scaled by 2^62 to stay integral
    den = 2**62
    return ((num + den // 2) // den).astype(np.int64)


def _random_i32(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.integers(I32_MIN, I32_MAX + 1, n, dtype=np.int64)
    small = rng.integers(-70000, 70000, n)
    return np.where(rng.random(n) < 0.3, small, x).astype(np.int32)


def _ties(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every exact tie of x / 2^e for e in 1..31, both signs, plus random x for e in 0..31."""
    xs, es = [], []
    for e in range(0, 32):
        odd = rng.integers(-(2 ** (31 - max(e, 1))), 2 ** (31 - max(e, 1)), 40) * 2 + 1
        tie = odd * 2 ** (e - 1) if e > 0 else odd
        tie = tie[(tie >= I32_MIN) & (tie <= I32_MAX)]
        xs += [tie, EDGES.astype(np.int64)]
        es += [np.full(tie.size + EDGES.size, e)]
    return np.concatenate(xs).astype(np.int32), np.concatenate(es).astype(np.int32)


def test_srdhm_numpy_matches_formula_on_edges_and_ties(rng):
    a, b = np.meshgrid(EDGES, EDGES)
    a, b = a.ravel(), b.ravel()
    tie_a = np.full(64, 2**30, np.int32)
    tie_b = (rng.integers(-(2**29), 2**29, 64) * 2 + 1).astype(np.int32)  # a*b = odd * 2^30: exact ties
    a, b = (
        np.concatenate([a, tie_a, _random_i32(rng, 20000)]),
        np.concatenate([b, tie_b, _random_i32(rng, 20000)]),
    )
    np.testing.assert_array_equal(fp.saturating_rounding_doubling_high_mul(a, b), srdhm_formula(a, b))


@needs_core
def test_srdhm_cpp_equals_numpy_on_a_million_pairs(rng):
    a, b = _random_i32(rng, 10**6), _random_i32(rng, 10**6)
    ea, eb = np.meshgrid(EDGES, EDGES)
    a, b = np.concatenate([a, ea.ravel()]), np.concatenate([b, eb.ravel()])
    np.testing.assert_array_equal(
        core.saturating_rounding_doubling_high_mul(a, b), fp.saturating_rounding_doubling_high_mul(a, b)
    )
    sample = slice(0, 30000)
    np.testing.assert_array_equal(
        core.saturating_rounding_doubling_high_mul(a[sample], b[sample]), srdhm_formula(a[sample], b[sample])
    )


def test_rdbpot_numpy_matches_formula_on_every_tie(rng):
    x, e = _ties(rng)
    np.testing.assert_array_equal(fp.rounding_divide_by_pot(x, e), rdbpot_formula(x, e))


@needs_core
def test_rdbpot_and_shift_left_cpp_equal_numpy(rng):
    x = np.concatenate([_random_i32(rng, 10**6), _ties(rng)[0]])
    e = rng.integers(0, 32, x.size).astype(np.int32)
    np.testing.assert_array_equal(core.rounding_divide_by_pot(x, e), fp.rounding_divide_by_pot(x, e))
    np.testing.assert_array_equal(core.saturating_shift_left(x, e), fp.saturating_shift_left(x, e))
    exact = x.astype(object) * (2 ** e.astype(object))
    np.testing.assert_array_equal(fp.saturating_shift_left(x, e), np.clip(exact, I32_MIN, I32_MAX).astype(np.int64))
    tx, te = _ties(rng)
    np.testing.assert_array_equal(core.rounding_divide_by_pot(tx, te), rdbpot_formula(tx, te))


def test_primitives_reject_out_of_range_exponents():
    with pytest.raises(ValueError, match="exponent"):
        fp.rounding_divide_by_pot(np.int32(5), 32)
    with pytest.raises(ValueError, match="exponent"):
        fp.saturating_shift_left(np.int32(5), -1)
    if core is not None:
        with pytest.raises(ValueError):
            core.rounding_divide_by_pot(np.array([1], np.int32), np.array([32], np.int32))


@pytest.mark.parametrize("impl", ["numpy", "cpp"])
def test_single_rounding_multiply_matches_formula(rng, impl):
    if impl == "cpp" and core is None:
        pytest.skip("qkern._core is not built")
    n = 10**6 if impl == "cpp" else 50000
    x = np.concatenate([_random_i32(rng, n), EDGES])
    m = np.concatenate([rng.integers(0, 2**31, n), np.full(EDGES.size, I32_MAX)]).astype(np.int32)
    s = np.concatenate([rng.integers(-31, 31, n), np.full(EDGES.size, 30)]).astype(np.int32)
    got = (
        core.multiply_by_quantized_multiplier_single if impl == "cpp" else fp.multiply_by_quantized_multiplier_single
    )(x, m, s)
    np.testing.assert_array_equal(got, fp.multiply_by_quantized_multiplier_single(x, m, s))
    np.testing.assert_array_equal(got[:40000], single_formula(x[:40000], m[:40000], s[:40000]))
    np.testing.assert_array_equal(
        got[-EDGES.size :], single_formula(x[-EDGES.size :], m[-EDGES.size :], s[-EDGES.size :])
    )


@needs_core
def test_gemmlowp_multiply_cpp_equals_numpy_equals_composition(rng):
    n = 10**6
    x = np.concatenate([_random_i32(rng, n), EDGES, EDGES])
    m = np.concatenate([rng.integers(0, 2**31, n), np.full(EDGES.size, 2**30), np.full(EDGES.size, I32_MAX)]).astype(
        np.int32
    )
    s = np.concatenate([rng.integers(-31, 31, n), np.full(2 * EDGES.size, 3)]).astype(np.int32)
    got = core.multiply_by_quantized_multiplier_gemmlowp(x, m, s)
    np.testing.assert_array_equal(got, fp.multiply_by_quantized_multiplier_gemmlowp(x, m, s))
    k = 20000
    left, right = np.maximum(s[:k], 0), np.maximum(-s[:k], 0)
    shifted = np.clip(x[:k].astype(object) * 2 ** left.astype(object), I32_MIN, I32_MAX).astype(np.int64)
    high = srdhm_formula(shifted, m[:k])
    np.testing.assert_array_equal(got[:k], rdbpot_formula(high, right))


def one_shift_gemmlowp(x: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Eq. (17), the AVX-512 epilogue's form of eq. (13) for s <= 0 (csrc/qkern/requant.h WideRow), on
    Python ints: one addend chosen by the sign of SRDHM's result, one floor division."""
    p = _obj(x) * _obj(m)
    e = -_obj(s)
    nudge = np.where(e > 0, 2 ** np.maximum(e - 1, 0) - np.where(p < -(2**30), 1, 0), 0)
    return ((p + 2**30 + nudge * 2**31) // 2 ** (31 + e)).astype(np.int64)


def test_one_shift_gemmlowp_form_equals_double_rounding(rng):
    """Eq. (17): floor((floor(X / 2^31) + n) / 2^e) = floor((X + n 2^31) / 2^(31+e)) with RDBPOT's nudge n
    read off the sign of the product, on every right shift, edge values and ties of both roundings."""
    n = 200000
    x = np.concatenate([_random_i32(rng, n), np.repeat(EDGES, 32)])
    m = np.concatenate([rng.integers(0, 2**31, n), np.tile([2**30, I32_MAX], EDGES.size * 16)]).astype(np.int32)
    s = np.concatenate([rng.integers(-31, 1, n), np.tile(-np.arange(32), EDGES.size)]).astype(np.int32)
    # Products whose SRDHM lands on an exact RDBPOT tie: x * M = (t * 2^31) with t = (2k+1) 2^(e-1).
    e = rng.integers(1, 32, 5000)
    t = (2 * rng.integers(-(2**20), 2**20, 5000) + 1) << np.maximum(e - 1, 0)
    t = np.clip(t, I32_MIN >> 1, I32_MAX >> 1)
    x = np.concatenate([x, (t * 2).astype(np.int32), (t * 2 - 1).astype(np.int32)])
    m = np.concatenate([m, np.full(10000, 2**30, np.int32)])
    s = np.concatenate([s, -e, -e]).astype(np.int32)
    np.testing.assert_array_equal(one_shift_gemmlowp(x, m, s), fp.multiply_by_quantized_multiplier_gemmlowp(x, m, s))


# ---- quantize_multiplier (eq. (8)) ----


def test_quantize_multiplier_edges():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # flushed: below 2^-32
    assert quantize_multiplier(2.0**-32) == (2**30, -31)
    assert quantize_multiplier(0.5) == (2**30, 0)
    assert quantize_multiplier(1.0) == (2**30, 1)
    assert quantize_multiplier(1.0 - 2.0**-40) == (2**30, 1)  # q rounds to 2^31: halve it, shift + 1
    assert quantize_multiplier(0.75) == (3 * 2**29, 0)
    assert quantize_multiplier(3.7)[1] == 2
    assert quantize_multiplier(2.0**40) == (I32_MAX, 30)  # beyond any single-rounding stage: saturate


def test_quantize_multiplier_accuracy_and_arrays(rng):
    real = np.concatenate([np.exp(rng.uniform(-20, 5, 10000)), [2.0**-31, 1.0, 0.999999999, 123.456]])
    m, s = quantize_multiplier(real)
    assert m.dtype == np.int32 and s.dtype == np.int32 and m.shape == real.shape
    assert np.all((m >= 2**30) & (m <= I32_MAX))
    approx = m.astype(np.float64) * 2.0 ** (s.astype(np.float64) - 31)
    assert np.all(np.abs(approx - real) <= 2.0 ** (s - 32.0) * (1 + 1e-12))
    for r, mi, si in zip(real[:50], m[:50], s[:50]):
        assert quantize_multiplier(float(r)) == (int(mi), int(si))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_quantize_multiplier_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="multiplier"):
        quantize_multiplier(bad)
