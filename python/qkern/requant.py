"""requantize(): apply a Requant output stage to int32 accumulators (docs/quantization.md §6)."""

from __future__ import annotations

import numpy as np

from . import _checks as V
from .requant_params import Requant

__all__ = ["Requant", "requantize"]


def requantize(acc: np.ndarray, requant: Requant, bias: np.ndarray | None = None) -> np.ndarray:
    """Apply `requant` to int32 accumulators; per-channel parameters and `bias` run along the last axis.
    The native backend runs the C++ kernel (threaded); the reference backend the NumPy reference."""
    from . import _backend
    from .reference.requant import requantize_reference

    if not isinstance(requant, Requant):
        raise TypeError(f"requant must be a qkern.Requant, got {type(requant).__name__}")
    if not isinstance(acc, np.ndarray) or acc.dtype != np.int32:
        raise TypeError(f"acc must be a numpy.ndarray of int32, got {getattr(acc, 'dtype', type(acc).__name__)}")
    if acc.ndim == 0:
        raise ValueError("acc must have at least one dimension (channels last)")
    bias = V.bias(bias, acc.shape[-1])
    core = _backend.core
    if core is None or _backend.get_backend() != "native":
        return requantize_reference(acc, requant, bias)
    broadcast = requant.channels is None
    m, s, f = requant.expanded(1 if broadcast else acc.shape[-1])
    stage = core.StageArgs(requant.mode_code, m, s, f, requant.zero_point, requant.qmin, requant.qmax)
    out = np.empty(acc.shape, V.np_dtype(requant.dtype))
    core.requantize(np.ascontiguousarray(acc), bias, stage, out, broadcast)
    return out
