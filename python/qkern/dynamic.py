"""DynamicLinear: int8 weights quantized once, float32 activations quantized on every call, float32 out;
DynamicSequential: a NumPy-only stack of them with ReLU/GELU between (docs/quantization.md section 9)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _backend
from . import _checks as V
from .qparams import QParams, calc_qparams
from .reference import dynamic as R

_F32 = np.float32


def _float_array(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of float32, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    return x


def _weight_qparams(weight: np.ndarray, per_channel: bool) -> QParams:
    """Symmetric int8, per output channel (a row of weight) or per tensor: torch's default weight observers."""
    if per_channel:
        lo = weight.min(axis=1) if weight.shape[1] else np.zeros(weight.shape[0], _F32)
        hi = weight.max(axis=1) if weight.shape[1] else np.zeros(weight.shape[0], _F32)
        return calc_qparams(lo, hi, "int8", symmetric=True)
    lo, hi = (weight.min(), weight.max()) if weight.size else (0.0, 0.0)
    return calc_qparams(lo, hi, "int8", symmetric=True)


class DynamicLinear:
    """y = x @ weight.T + bias with int8 weights and activations quantized per call from their own range.

    weight float32 [N, K] (torch's Linear layout), bias float32 [N] or None. Weights: symmetric int8 per
    output channel (per_channel) or per tensor, or `weight_qparams` (a QParams for weight [N, K], per
    channel on axis 0 or per tensor). Activations: `act_dtype` "uint8" (affine, torch's rule) or "int8"
    (symmetric), one scale per tensor or per row (`per_row`: each row of x[..., K], i.e. per token);
    `reduce_range` halves the integer range as torch's x86 dynamic Linear does (torch-compatible mode:
    per-tensor uint8 with reduce_range=True). The output is eq. (19), float32 [..., N].
    """

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        per_channel: bool = True,
        per_row: bool = False,
        act_dtype: str = "uint8",
        reduce_range: bool = False,
        weight_qparams: QParams | None = None,
    ) -> None:
        weight = _float_array(weight, "weight", 2)
        if not np.isfinite(weight).all():
            raise ValueError("weight must be finite")
        self.out_features, self.in_features = weight.shape
        if bias is not None:
            bias = _float_array(bias, "bias", 1)
            if bias.shape != (self.out_features,):
                raise ValueError(f"bias must have shape ({self.out_features},), got {bias.shape}")
            if not np.isfinite(bias).all():
                raise ValueError("bias must be finite")
            bias = np.array(bias)
            bias.setflags(write=False)
        act_dtype = V.dtype_name(act_dtype, "act_dtype")
        self.act_dtype, self.per_row, self.reduce_range = act_dtype, bool(per_row), bool(reduce_range)
        self._scheme = R.SCHEMES[act_dtype]
        if weight_qparams is None:
            weight_qparams = _weight_qparams(weight, per_channel)
        elif not isinstance(weight_qparams, QParams):
            raise TypeError(f"weight_qparams must be a qkern.QParams, got {type(weight_qparams).__name__}")
        elif weight_qparams.per_channel and (
            weight_qparams.axis != 0 or np.shape(weight_qparams.scale) != (self.out_features,)
        ):
            raise ValueError(f"per-channel weight_qparams must have axis 0 and {self.out_features} channels")
        self.weight_qparams = weight_qparams
        n = self.out_features
        self.weight_scale = np.broadcast_to(np.asarray(weight_qparams.scale, _F32), (n,)).copy()
        self.weight_zero_point = np.broadcast_to(np.asarray(weight_qparams.zero_point, np.int32), (n,)).copy()
        qweight = weight_qparams.quantize(weight)
        self.b = np.ascontiguousarray(qweight.T)  # [K, N], the GEMM's B
        for a in (self.weight_scale, self.weight_zero_point, self.b):
            a.setflags(write=False)
        self.bias = bias
        self._core: Any = None
        self._isa_epoch = -1
        self._pack()

    def _pack(self) -> None:
        core = _backend.core
        if core is not None:
            self._core = core.DynamicGemm(self.b, self.weight_zero_point, self.weight_scale, self.bias, self._a_bits)

    @property
    def _a_bits(self) -> int:
        """7 when every call's activations are uint8 below 128 (uint8 with reduce_range): the weights are then
        packed for the ISA's 7-bit kernel where it has one (docs/kernels.md), else 8."""
        return 7 if self.act_dtype == "uint8" and self.reduce_range else 8

    def __getstate__(self) -> dict[str, Any]:
        # The packed core is rebuilt (for the ISA in effect then) rather than pickled.
        state = self.__dict__.copy()
        state["_core"], state["_isa_epoch"] = None, -1
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in ("weight_scale", "weight_zero_point", "b", "bias"):
            a = getattr(self, name)
            if a is not None:  # unpickled dtypes are equal to, but not, the canonical ones the core checks for
                a = np.ascontiguousarray(a).view(np.dtype(a.dtype.name))
                a.setflags(write=False)
                setattr(self, name, a)
        self._pack()

    @property
    def isa(self) -> str | None:
        return None if self._core is None else self._core.isa

    def _native(self) -> Any:
        """The packed core for the current ISA, or None on the reference backend."""
        core = _backend.core
        if core is None or _backend.get_backend() == "reference":
            return None
        if self._isa_epoch != _backend.isa_epoch:
            if self._core.isa != core.get_isa():
                self._pack()
            self._isa_epoch = _backend.isa_epoch
        return self._core

    def _rows(self, x: Any) -> np.ndarray:
        x = _float_array(x, "x")
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., {self.in_features}), got {x.shape}")
        return np.ascontiguousarray(x.reshape(-1, self.in_features))

    def quantize_input(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q [M, K], scale float32 [M or 1], zero point int32 [M or 1]) of x[..., K] as a call quantizes it."""
        x2 = self._rows(x)
        native = self._native()
        if native is None:
            return R.quantize_activation(x2, self.act_dtype, per_row=self.per_row, reduce_range=self.reduce_range)
        return _backend.core.quantize_dynamic(x2, R.SCHEMES[self.act_dtype], self.per_row, self.reduce_range)

    def run_quantized(self, a: np.ndarray, a_scale: Any, a_zero_point: Any) -> np.ndarray:
        """Eq. (19) on an already quantized a [M, K] (uint8/int8) with scale(s) and zero point(s): one each
        (per tensor) or M each (per row)."""
        a = V.quant_array(a, "a", 2)
        if a.shape[1] != self.in_features:
            raise ValueError(f"a must have shape (M, {self.in_features}), got {a.shape}")
        scale = np.atleast_1d(V.scale(a_scale, "a_scale"))
        zp = np.atleast_1d(np.asarray(V.zero_point(a_zero_point, a.dtype.name, "a_zero_point", channels=scale.size)))
        zp = np.broadcast_to(zp.astype(np.int32), scale.shape).copy()
        if scale.ndim != 1 or scale.size not in (1, a.shape[0]):
            raise ValueError(f"a_scale must have 1 or {a.shape[0]} entries, got shape {np.shape(a_scale)}")
        per_row = scale.size == a.shape[0] and np.ndim(a_scale) == 1
        native = self._native()
        if native is None:
            return R.float_output(a, scale, zp, self.b, self.weight_zero_point, self.weight_scale, self.bias)
        out = np.empty((a.shape[0], self.out_features), dtype=_F32)
        native.run_quantized(np.ascontiguousarray(a), scale, zp, per_row, out)
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # The hot path checks inline (a one-row call is tens of microseconds: Python's share matters);
        # anything unusual goes through _rows for the error or the copy.
        k = self.in_features
        if type(x) is np.ndarray and x.dtype == _F32 and x.ndim == 2 and x.shape[1] == k and x.flags.c_contiguous:
            x2 = x
        else:
            x2 = self._rows(x)
        native = self._native()
        if native is None:
            q, scale, zp = self.quantize_input(x2)
            out = R.float_output(q, scale, zp, self.b, self.weight_zero_point, self.weight_scale, self.bias)
        else:
            out = np.empty((x2.shape[0], self.out_features), dtype=_F32)
            native.run(x2, self._scheme, self.per_row, self.reduce_range, out)
        return out if x2 is x else out.reshape(*x.shape[:-1], self.out_features)

    def __repr__(self) -> str:
        scheme = "per-row" if self.per_row else "per-tensor"
        weights = "per-channel" if self.weight_qparams.per_channel else "per-tensor"
        return (
            f"DynamicLinear(in={self.in_features}, out={self.out_features}, act={self.act_dtype} {scheme}, "
            f"weights=int8 {weights}, reduce_range={self.reduce_range}, isa={self.isa!r})"
        )


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float64 to about 1.5e-7 (Abramowitz and Stegun 7.1.26): enough for a float32 GELU."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, _F32(0.0))


def gelu(x: np.ndarray) -> np.ndarray:
    """x * Phi(x) (torch.nn.GELU's default, the erf form), float32 out."""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)))).astype(_F32)


ACTIVATIONS = {"relu": relu, "gelu": gelu}


class DynamicSequential:
    """A NumPy-only model: DynamicLinear layers and "relu"/"gelu" steps applied in order (float32 in/out)."""

    def __init__(self, steps: Sequence[DynamicLinear | str]) -> None:
        self.steps: list[DynamicLinear | str] = []
        for i, step in enumerate(steps):
            if not isinstance(step, DynamicLinear) and step not in ACTIVATIONS:
                raise ValueError(f"steps[{i}] must be a DynamicLinear or one of {sorted(ACTIVATIONS)}, got {step!r}")
            self.steps.append(step)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for step in self.steps:
            x = step(x) if isinstance(step, DynamicLinear) else ACTIVATIONS[step](x)
        return x

    def __repr__(self) -> str:
        return "DynamicSequential(" + ", ".join(repr(s) for s in self.steps) + ")"
