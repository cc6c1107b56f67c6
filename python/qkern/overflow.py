"""The int32 overflow guard: max_safe_k, and the check behind `check_overflow=True` (docs/quantization.md §4)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _checks as V
from . import reference

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _centred_range(dtype: Any, zero_point: Any, name: str) -> tuple[int, int]:
    """[min, max] of q - zero_point over the dtype's values and every zero point given (scalar or 1-D)."""
    dt = V.dtype_name(dtype, name.replace("zero_point", "dtype"))
    lo, hi = V.dtype_range(dt)
    zp = V.zero_point(zero_point, dt, name, channels=np.size(zero_point) if np.ndim(zero_point) else None)
    zmin, zmax = (int(np.min(zp)), int(np.max(zp))) if np.size(zp) else (0, 0)
    return lo - zmax, hi - zmin


def product_range(a_dtype: Any, b_dtype: Any, a_zero_point: Any = 0, b_zero_point: Any = 0) -> tuple[int, int]:
    """The least and greatest value one term (a - a_zero_point) * (b - b_zero_point) of the §4 sum can take."""
    a_lo, a_hi = _centred_range(a_dtype, a_zero_point, "a_zero_point")
    b_lo, b_hi = _centred_range(b_dtype, b_zero_point, "b_zero_point")
    corners = (a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi)
    return min(corners), max(corners)


def max_safe_k(a_dtype: Any, b_dtype: Any, a_zero_point: Any = 0, b_zero_point: Any = 0) -> int:
    """The largest K for which no int32 accumulator sum_k (a - a_zero_point)(b - b_zero_point) can wrap.

    Every term lies in [pmin, pmax] (`product_range`), so K terms stay within int32 exactly when
    K * pmax <= 2^31 - 1 and K * pmin >= -2^31 (docs/quantization.md eq. (7a)). uint8 x int8 with zero
    points 0: 65793. A per-channel `b_zero_point` (1-D) gives the bound for its worst channel. A bias
    adds to the sum and is not counted.
    """
    pmin, pmax = product_range(a_dtype, b_dtype, a_zero_point, b_zero_point)
    limits = [INT32_MAX // pmax] if pmax > 0 else []
    if pmin < 0:
        limits.append(INT32_MIN // pmin)  # floor(-2^31 / pmin) with pmin < 0: both negative, exact
    return min(limits) if limits else INT32_MAX


def _bias_range(bias: np.ndarray | None) -> tuple[int, int]:
    if bias is None or bias.size == 0:
        return 0, 0
    return int(bias.min()), int(bias.max())


def accumulator_can_wrap(k: int, prange: tuple[int, int], bias: np.ndarray | None) -> bool:
    """Whether bias + K terms in `prange` can leave int32 (a bound from the dtypes alone, no data read)."""
    b_lo, b_hi = _bias_range(bias)
    return k * prange[1] + b_hi > INT32_MAX or k * prange[0] + b_lo < INT32_MIN


def exact_accumulators(
    partial: Callable[[int, int], np.ndarray], k_total: int, k_step: int, bias: np.ndarray | None
) -> np.ndarray:
    """The exact (int64) accumulators bias + sum over K, as sums of partial results over K ranges of at
    most `k_step` (each computed by `partial(k0, k1)` in int32, which cannot wrap for k1 - k0 <= max_safe_k)."""
    total: np.ndarray | None = None
    for k0 in range(0, max(k_total, 1), max(k_step, 1)):
        part = partial(k0, min(k0 + k_step, k_total)).astype(np.int64)
        total = part if total is None else total + part
    assert total is not None
    return total if bias is None else total + bias.astype(np.int64)


def warn_if_wrapped(op: str, exact: np.ndarray) -> None:
    """A RuntimeWarning naming `op` when an exact accumulator lies outside int32 (so eq. (6) wrapped it)."""
    if exact.size == 0:
        return
    lo, hi = int(exact.min()), int(exact.max())
    if lo < INT32_MIN or hi > INT32_MAX:
        count = int(np.count_nonzero((exact < INT32_MIN) | (exact > INT32_MAX)))
        warnings.warn(
            f"{op}: {count} int32 accumulator(s) wrapped (exact values span [{lo}, {hi}]); "
            "results follow two's-complement wrap (docs/quantization.md eq. (6))",
            RuntimeWarning,
            stacklevel=4,  # the caller of gemm/conv3x3/conv_transpose2x2
        )


def check_gemm(a: np.ndarray, b: np.ndarray, za: int, zb: Any, bias: np.ndarray | None) -> None:
    """Warn if gemm's accumulators wrap; free when the dtypes, K and bias rule it out."""
    k, prange = a.shape[1], product_range(a.dtype, b.dtype, za, zb)
    if not accumulator_can_wrap(k, prange, bias):
        return
    step = max_safe_k(a.dtype, b.dtype, za, zb)
    exact = exact_accumulators(lambda k0, k1: reference.gemm(a[:, k0:k1], b[k0:k1], za, zb), k, step, bias)
    warn_if_wrapped("gemm", exact)


def check_conv3x3(
    x: np.ndarray, w: np.ndarray, stride: int, padding: int, xz: int, wz: Any, bias: np.ndarray | None
) -> None:
    """Warn if conv3x3's accumulators (K = 9 C) wrap; exact sums come from channel slices of the reference."""
    c, prange = x.shape[3], product_range(x.dtype, w.dtype, xz, wz)
    if not accumulator_can_wrap(9 * c, prange, bias):
        return
    step = max_safe_k(x.dtype, w.dtype, xz, wz) // 9

    def partial(c0: int, c1: int) -> np.ndarray:
        return reference.conv3x3(x[..., c0:c1], w[..., c0:c1], stride, padding, xz, wz)

    warn_if_wrapped("conv3x3", exact_accumulators(partial, c, step, bias))


def check_conv_transpose2x2(x: np.ndarray, w: np.ndarray, xz: int, wz: Any, bias: np.ndarray | None) -> None:
    """Warn if conv_transpose2x2's accumulators (K = C) wrap."""
    c, prange = x.shape[3], product_range(x.dtype, w.dtype, xz, wz)
    if not accumulator_can_wrap(c, prange, bias):
        return
    step = max_safe_k(x.dtype, w.dtype, xz, wz)

    def partial(c0: int, c1: int) -> np.ndarray:
        return reference.conv_transpose2x2(x[..., c0:c1], w[c0:c1], xz, wz)

    warn_if_wrapped("conv_transpose2x2", exact_accumulators(partial, c, step, bias))
