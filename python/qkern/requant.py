"""requantize(): apply a Requant output stage to int32 accumulators (docs/quantization.md §6)."""

from __future__ import annotations

import numpy as np

from . import _checks as V
from .requant_params import Requant

__all__ = ["Requant", "requantize"]


def requantize(acc: np.ndarray, requant: Requant, bias: np.ndarray | None = None) -> np.ndarray:
    """Apply `requant` to int32 accumulators; per-channel parameters and `bias` run along the last axis."""
    from .reference.requant import requantize_reference

    if not isinstance(requant, Requant):
        raise TypeError(f"requant must be a qkern.Requant, got {type(requant).__name__}")
    if not isinstance(acc, np.ndarray) or acc.dtype != np.int32:
        raise TypeError(f"acc must be a numpy.ndarray of int32, got {getattr(acc, 'dtype', type(acc).__name__)}")
    if acc.ndim == 0:
        raise ValueError("acc must have at least one dimension (channels last)")
    bias = V.bias(bias, acc.shape[-1])
    return requantize_reference(acc, requant, bias)
