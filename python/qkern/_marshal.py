"""Marshalling between the Python API and `_core`: requant and `out` checks, native stage arguments,
per-channel zero-point vectors. Shared by the one-shot ops and the packed objects."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend
from . import _checks as V
from .requant_params import RAW_MODE_CODE, Requant

_EMPTY_I32 = np.zeros(0, np.int32)
_EMPTY_F32 = np.zeros(0, np.float32)


def checked_requant(requant: Any, channels: int) -> Requant | None:
    """`requant` if it is None or a Requant whose channel count fits the output's."""
    if requant is None:
        return None
    if not isinstance(requant, Requant):
        raise TypeError(f"requant must be a qkern.Requant or None, got {type(requant).__name__}")
    if requant.channels is not None and requant.channels != channels:
        raise ValueError(f"requant has {requant.channels} channels but the output has {channels}")
    return requant


def out_dtype(requant: Requant | None) -> np.dtype:
    """int32 without an output stage, else the stage's uint8/int8."""
    return np.dtype(np.int32) if requant is None else np.dtype(V.np_dtype(requant.dtype))


def stage_args(requant: Requant | None, channels: int) -> Any:
    """The native output stage (`_core.StageArgs`), parameters expanded to one per output channel."""
    core = _backend.core
    assert core is not None
    if requant is None:
        return core.StageArgs(RAW_MODE_CODE, _EMPTY_I32, _EMPTY_I32, _EMPTY_F32, 0, 0, 0)
    m, s, f = requant.expanded(channels)
    return core.StageArgs(requant.mode_code, m, s, f, requant.zero_point, requant.qmin, requant.qmax)


def checked_out(out: Any, shape: tuple[int, ...], requant: Requant | None, inputs: tuple[Any, ...]) -> np.ndarray:
    """A new output array, or the caller's `out` if it has the right type, dtype, shape and layout and
    does not overlap an input."""
    dtype = out_dtype(requant)
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype.name}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    if any(np.may_share_memory(out, x) for x in inputs if x is not None):
        raise ValueError("out must not overlap an input array")
    return out


def contiguous(x: np.ndarray) -> np.ndarray:
    """x itself if C-contiguous, else a C-contiguous copy (the native kernels read dense rows)."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def zp_vector(zp: int | np.ndarray, channels: int) -> np.ndarray:
    """A zero point (scalar or per channel) as one contiguous int32 per output channel."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(zp, dtype=np.int32), (channels,)))
