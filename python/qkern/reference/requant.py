"""Normative NumPy output stage: int32 accumulator + bias -> requantized integers (eqs. (14)-(16))."""

from __future__ import annotations

import numpy as np

from .. import _checks as V
from ..fixedpoint import multiply_by_quantized_multiplier_gemmlowp, multiply_by_quantized_multiplier_single
from ..requant_params import Requant


def wrap_int32(v: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of exact integers to int32 (eq. (6))."""
    v = np.asarray(v, dtype=np.int64)
    return (((v + 2**31) % 2**32) - 2**31).astype(np.int32)


def requantize_reference(acc: np.ndarray, requant: Requant, bias: np.ndarray | None) -> np.ndarray:
    channels = acc.shape[-1]
    x = acc.astype(np.int64)
    if bias is not None:
        x = x + bias.astype(np.int64)
    x = wrap_int32(x)
    m, s, f = requant.expanded(channels)
    if requant.rounding == "gemmlowp":
        r = multiply_by_quantized_multiplier_gemmlowp(x, m, s).astype(np.int64)
    elif requant.rounding == "single":
        r = multiply_by_quantized_multiplier_single(x, m, s)
    else:
        with np.errstate(over="ignore"):
            r = np.rint(x.astype(np.float32) * f)  # float32 product, one rounding; rint = half-even
        r = np.clip(r.astype(np.float64), requant.qmin - requant.zero_point, requant.qmax - requant.zero_point)
        r = r.astype(np.int64)
    r = np.clip(r + requant.zero_point, requant.qmin, requant.qmax)
    return r.astype(V.np_dtype(requant.dtype))
