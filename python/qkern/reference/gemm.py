"""Reference integer GEMM: sum_k (a - za)(b - zb) + bias, wrapped to int32, then the optional requant."""

from __future__ import annotations

import numpy as np

from ..requant_params import Requant
from .requant import requantize_reference, wrap_int32


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer matmul of operands in [-255, 255] through float64 (eq. (7)).

    Each product is below 2^16 in magnitude, so every partial sum is an integer below 2^53 for any
    K < 2^37: float64 BLAS, in any summation order, is exact. K beyond that is split.
    """
    k = a.shape[-1]
    step = 1 << 36
    out = np.zeros(a.shape[:-1] + b.shape[-1:], dtype=np.int64)
    for k0 in range(0, max(k, 1), step):
        part = np.matmul(a[..., k0 : k0 + step].astype(np.float64), b[k0 : k0 + step].astype(np.float64))
        out += part.astype(np.int64)
    return out


def finish(acc64: np.ndarray, bias: np.ndarray | None, requant: Requant | None) -> np.ndarray:
    """Wrap exact sums to int32 with the bias (eq. (6)), then requantize if asked."""
    if bias is not None:
        acc64 = acc64 + bias.astype(np.int64)
    acc = wrap_int32(acc64)
    return acc if requant is None else requantize_reference(acc, requant, None)


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    a_zero_point: int = 0,
    b_zero_point: int | np.ndarray = 0,
    bias: np.ndarray | None = None,
    requant: Requant | None = None,
) -> np.ndarray:
    """a[M,K] @ b[K,N] with zero points subtracted; b_zero_point scalar or per column."""
    a_c = a.astype(np.int32) - int(a_zero_point)
    b_c = b.astype(np.int32) - np.asarray(b_zero_point, dtype=np.int32)
    return finish(exact_matmul(a_c, b_c), bias, requant)
