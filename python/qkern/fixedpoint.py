"""NumPy mirror of csrc/qkern/fixedpoint.h (docs/quantization.md §5), bit for bit, plus quantize_multiplier."""

from __future__ import annotations

from typing import Any

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def _i64(x: Any) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def saturating_rounding_doubling_high_mul(a: Any, b: Any) -> np.ndarray:
    """Eq. (9): floor((a*b + 2^30) / 2^31) with INT32_MIN*INT32_MIN saturated to INT32_MAX."""
    a64, b64 = np.broadcast_arrays(_i64(a), _i64(b))
    r = (a64 * b64 + (1 << 30)) >> 31
    r = np.where((a64 == INT32_MIN) & (b64 == INT32_MIN), INT32_MAX, r)
    return r.astype(np.int32)


def rounding_divide_by_pot(x: Any, exponent: Any) -> np.ndarray:
    """Eq. (10): x / 2^exponent, round to nearest, ties away from zero; 0 <= exponent <= 31."""
    x64, e = np.broadcast_arrays(_i64(x), _i64(exponent))
    if e.size and (e.min() < 0 or e.max() > 31):
        raise ValueError("exponent must be in [0, 31]")
    mask = (np.int64(1) << e) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0)
    return ((x64 >> e) + (remainder > threshold)).astype(np.int32)


def saturating_shift_left(x: Any, exponent: Any) -> np.ndarray:
    """Eq. (11): x * 2^exponent saturated to int32; 0 <= exponent <= 31."""
    x64, e = np.broadcast_arrays(_i64(x), _i64(exponent))
    if e.size and (e.min() < 0 or e.max() > 31):
        raise ValueError("exponent must be in [0, 31]")
    return np.clip(x64 << e, INT32_MIN, INT32_MAX).astype(np.int32)


def multiply_by_quantized_multiplier_single(x: Any, multiplier: Any, shift: Any) -> np.ndarray:
    """Eq. (12): (x*M + 2^(30-shift)) >> (31-shift), exact int64 result; -31 <= shift <= 30."""
    x64, m, s = np.broadcast_arrays(_i64(x), _i64(multiplier), _i64(shift))
    total = 31 - s
    return (x64 * m + (np.int64(1) << (total - 1))) >> total


def multiply_by_quantized_multiplier_gemmlowp(x: Any, multiplier: Any, shift: Any) -> np.ndarray:
    """Eq. (13): RoundingDivideByPOT(SRDHM(ShiftLeftSat(x, max(shift,0)), M), max(-shift,0))."""
    s = _i64(shift)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(saturating_shift_left(x, left), multiplier), right
    )


def quantize_multiplier(real: Any) -> tuple[Any, Any]:
    """Eq. (8): real ~= multiplier * 2^(shift - 31) with multiplier in [2^30, 2^31-1] (TFLite convention).

    shift > 0 is a left shift. Zero maps to (0, 0); multipliers below 2^-32 flush to (0, 0); multipliers
    of 2^30 and above saturate to (2^31-1, 30), the largest a single-rounding stage can apply. Works
    elementwise: an array in gives int32 arrays out, a scalar gives Python ints.
    """
    try:
        arr = np.asarray(real, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"real multiplier must be a real number or an array of them, got {real!r}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"real multiplier must be finite and >= 0, got {real!r}")
    frac, exp = np.frexp(arr)  # arr = frac * 2^exp, frac in [0.5, 1)
    q = np.floor(frac * 2.0**31 + 0.5).astype(np.int64)  # round half away from zero (frac >= 0)
    shift = exp.astype(np.int64)
    edge = q == 2**31
    q = np.where(edge, q // 2, q)
    shift = np.where(edge, shift + 1, shift)
    tiny = (shift < -31) | (arr == 0)
    q = np.where(tiny, 0, q)
    shift = np.where(tiny, 0, shift)
    huge = shift > 30
    q = np.where(huge, INT32_MAX, q)
    shift = np.where(huge, 30, shift)
    if arr.ndim == 0:
        return int(q), int(shift)
    return q.astype(np.int32), shift.astype(np.int32)
