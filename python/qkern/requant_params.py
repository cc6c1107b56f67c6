"""Requant: the parameters of the output stage that maps int32 accumulators (+ bias) to uint8/int8
(docs/quantization.md §6). A leaf module: it imports only argument checks and fixed-point helpers, so the
reference kernels, the public ops and `requantize` all import it without a cycle."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks as V
from .fixedpoint import INT32_MAX, quantize_multiplier

ROUNDINGS = ("gemmlowp", "single", "fp32")
# The native output-stage mode of each rounding (csrc/qkern/requant.h RequantMode; a test checks that
# _core reports the same table). RAW_MODE_CODE: no requantization, int32 out.
RAW_MODE_CODE = 0
MODE_CODES = {"gemmlowp": 1, "single": 2, "fp32": 3}


def _int_param(value: Any, name: str, lo: int, hi: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer or an integer array, got {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D (one value per output channel), got shape {arr.shape}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}]")
    return arr.astype(np.int32)


class Requant:
    """Output stage applied per element after the int32 bias (eqs. (14)-(16)).

    rounding="gemmlowp" (double rounding) or "single" (TFLite single rounding) take an integer
    `multiplier` in [0, 2^31-1] and `shift` in [-31, 30] (real multiplier = M * 2^(shift-31)).
    rounding="fp32" (PyTorch fbgemm / ONNX Runtime) takes a float `multiplier` and no shift. Each
    parameter is a scalar (per-tensor) or 1-D (one per output channel, the last axis of the output).
    """

    def __init__(
        self,
        multiplier: Any,
        shift: Any = None,
        zero_point: int = 0,
        *,
        dtype: Any = "uint8",
        qmin: int | None = None,
        qmax: int | None = None,
        rounding: str | None = None,
    ) -> None:
        if rounding is None:
            rounding = "fp32" if shift is None else "gemmlowp"
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        self.rounding = rounding
        self.dtype = V.dtype_name(dtype)
        lo, hi = V.dtype_range(self.dtype)
        self.zero_point = V.zero_point(zero_point, self.dtype, "zero_point")
        self.qmin = lo if qmin is None else V.int_scalar(qmin, "qmin")
        self.qmax = hi if qmax is None else V.int_scalar(qmax, "qmax")
        if not lo <= self.qmin <= self.qmax <= hi:
            raise ValueError(f"need {lo} <= qmin <= qmax <= {hi} for {self.dtype}, got {self.qmin}, {self.qmax}")
        if rounding == "fp32":
            if shift is not None:
                raise ValueError("rounding='fp32' takes a float multiplier and no shift")
            m = np.asarray(multiplier)
            if m.dtype.kind not in "fiu" or isinstance(multiplier, (bool, np.bool_)):
                raise TypeError(f"multiplier must be a real number or array, got {m.dtype}")
            if m.ndim > 1:
                raise ValueError(f"multiplier must be a scalar or 1-D, got shape {m.shape}")
            m32 = m.astype(np.float64).astype(np.float32)
            if not np.all(np.isfinite(m32) & (m32 >= 0)):
                raise ValueError("multiplier must be finite and >= 0")
            self.multiplier = m32
            self.shift = None
        else:
            if shift is None:
                raise ValueError(f"rounding={rounding!r} needs an integer shift (or use rounding='fp32')")
            self.multiplier = _int_param(multiplier, "multiplier", 0, INT32_MAX)
            self.shift = _int_param(shift, "shift", -31, 30)
            if self.multiplier.ndim and self.shift.ndim and self.multiplier.shape != self.shift.shape:
                raise ValueError(f"multiplier and shift shapes differ: {self.multiplier.shape} vs {self.shift.shape}")
        sizes = {a.shape[0] for a in (self.multiplier, self.shift) if a is not None and a.ndim == 1}
        self.channels: int | None = sizes.pop() if sizes else None

    @classmethod
    def from_scales(
        cls,
        input_scale: Any,
        weight_scale: Any,
        output_scale: Any,
        output_zero_point: int,
        *,
        dtype: Any = "uint8",
        rounding: str = "gemmlowp",
        relu: bool = False,
    ) -> Requant:
        """The stage for real = s_in*s_w*acc, quantized with (output_scale, output_zero_point).

        Scales are rounded to float32 first (as stored by QParams and torch). Fixed point:
        quantize_multiplier(f64(s_in)*f64(s_w)/f64(s_out)); "fp32": f32(f32(s_in*s_w)/s_out).
        relu=True clamps below at the output zero point.
        """
        s_in = V.scale(input_scale, "input_scale")
        s_w = V.scale(weight_scale, "weight_scale")
        s_out = V.scale(output_scale, "output_scale")
        if s_in.ndim or s_out.ndim:
            raise ValueError("input_scale and output_scale must be scalars")
        if s_w.ndim > 1:
            raise ValueError(f"weight_scale must be a scalar or 1-D, got shape {s_w.shape}")
        dtype = V.dtype_name(dtype)
        zp = V.zero_point(output_zero_point, dtype, "output_zero_point")
        qmin = zp if relu else None
        if rounding == "fp32":
            with np.errstate(over="ignore"):
                m = (s_in * s_w) / s_out
            return cls(m, None, zp, dtype=dtype, qmin=qmin, rounding="fp32")
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        real = np.float64(s_in) * s_w.astype(np.float64) / np.float64(s_out)
        mult, shift = quantize_multiplier(real)
        return cls(mult, shift, zp, dtype=dtype, qmin=qmin, rounding=rounding)

    def expanded(self, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(int32 multiplier, int32 shift, float32 multiplier) with one entry per output channel."""
        if self.channels is not None and self.channels != channels:
            raise ValueError(f"requant has {self.channels} channels but the output has {channels}")
        if self.rounding == "fp32":
            f = np.ascontiguousarray(np.broadcast_to(self.multiplier, (channels,)), dtype=np.float32)
            return np.zeros(channels, np.int32), np.zeros(channels, np.int32), f
        m = np.ascontiguousarray(np.broadcast_to(self.multiplier, (channels,)), dtype=np.int32)
        s = np.ascontiguousarray(np.broadcast_to(self.shift, (channels,)), dtype=np.int32)
        return m, s, np.zeros(channels, np.float32)

    @property
    def mode_code(self) -> int:
        return MODE_CODES[self.rounding]

    def _key(self) -> tuple[Any, ...]:
        shift = None if self.shift is None else (self.shift.shape, self.shift.tobytes())
        mult = np.where(self.multiplier == 0, 0, self.multiplier).astype(self.multiplier.dtype)  # -0.0 == 0.0
        m = (mult.dtype.str, mult.shape, mult.tobytes())
        return (self.rounding, self.dtype, self.zero_point, self.qmin, self.qmax, m, shift)

    def __eq__(self, other: object) -> bool:
        """Value equality: same rounding, output range, zero point and per-channel parameters."""
        return self._key() == other._key() if isinstance(other, Requant) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shift = "" if self.shift is None else f", shift={self.shift.tolist()!r}"
        return (
            f"Requant(multiplier={self.multiplier.tolist()!r}{shift}, zero_point={self.zero_point}, "
            f"dtype={self.dtype!r}, qmin={self.qmin}, qmax={self.qmax}, rounding={self.rounding!r})"
        )
