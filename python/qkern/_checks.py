"""Argument checking shared by the public API: every bad input becomes a TypeError/ValueError naming it."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

# Quantized element types and their full integer ranges.
QUANT_DTYPES = {"uint8": (0, 255), "int8": (-128, 127)}
_NP_OF = {"uint8": np.uint8, "int8": np.int8}

_TORCH_DTYPE_NAMES = {
    "torch.quint8": "uint8",
    "torch.uint8": "uint8",
    "torch.qint8": "int8",
    "torch.int8": "int8",
}


def dtype_name(dtype: Any, name: str = "dtype") -> str:
    """Normalise "uint8"/"int8", NumPy dtypes and torch dtypes (without importing torch) to a name."""
    if isinstance(dtype, str):
        key = dtype.lower()
        key = {"quint8": "uint8", "qint8": "int8", "u8": "uint8", "s8": "int8"}.get(key, key)
        if key in QUANT_DTYPES:
            return key
        raise ValueError(f"{name} must be 'uint8' or 'int8', got {dtype!r}")
    text = str(dtype)
    if text in _TORCH_DTYPE_NAMES:
        return _TORCH_DTYPE_NAMES[text]
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be 'uint8', 'int8' or a matching NumPy/torch dtype, got {dtype!r}") from None
    if np_dtype.name in QUANT_DTYPES:
        return np_dtype.name
    raise ValueError(f"{name} must be 'uint8' or 'int8', got {np_dtype.name}")


def np_dtype(name: str) -> type:
    return _NP_OF[name]


def qname(x: np.ndarray) -> str:
    """ "uint8" or "int8" for an array that passed quant_array; ndarray.dtype.name costs ~1 us per call."""
    return "uint8" if x.dtype.char == "B" else "int8"


def dtype_range(name: str) -> tuple[int, int]:
    return QUANT_DTYPES[name]


def quant_array(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    """A uint8/int8 ndarray, unchanged (views allowed); anything else is a TypeError, never converted."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of uint8 or int8, got {type(x).__name__}")
    if x.dtype not in (np.uint8, np.int8):
        raise TypeError(f"{name} must have dtype uint8 or int8, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    return x


def int_scalar(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    return int(value)


def zero_point(value: Any, dtype: str, name: str, channels: int | None = None) -> int | np.ndarray:
    """A zero point within the dtype's range: a Python int, or (if `channels` is given) an int32 array
    of that length when a 1-D array is passed."""
    lo, hi = dtype_range(dtype)
    if type(value) is int and lo <= value <= hi:  # the common case, without NumPy calls (~2 us per call)
        return value
    if np.ndim(value) == 0:
        zp = int_scalar(value.item() if isinstance(value, np.ndarray) else value, name)
        if not lo <= zp <= hi:
            raise ValueError(f"{name} must be in [{lo}, {hi}] for {dtype}, got {zp}")
        return zp
    arr = np.asarray(value)
    if channels is None:
        raise ValueError(f"{name} must be a scalar here, got an array of shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.shape != (channels,):
        raise ValueError(f"{name} must be a scalar or have shape ({channels},), got {arr.shape}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{name} values must be in [{lo}, {hi}] for {dtype}")
    return arr.astype(np.int32)


def scale(value: Any, name: str = "scale") -> np.ndarray:
    """Scale(s) as float32, each finite and > 0 after the float32 rounding, with a finite reciprocal."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got bool")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or an array of them, got {type(value).__name__}") from None
    s32 = arr.astype(np.float32)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        ok = np.isfinite(s32) & (s32 > 0) & np.isfinite(np.float32(1.0) / s32)
    if not np.all(ok):
        raise ValueError(f"{name} must be finite and > 0 (as float32, with a finite reciprocal), got {value!r}")
    return s32


def bias(value: Any, channels: int, name: str = "bias") -> np.ndarray | None:
    if value is None:
        return None
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of int32, got {type(value).__name__}")
    if value.dtype != np.int32:
        raise TypeError(f"{name} must have dtype int32, got {value.dtype}")
    if value.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), got {value.shape}")
    return value
