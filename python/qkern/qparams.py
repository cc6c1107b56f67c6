"""Quantization parameters: QParams, calc_qparams (torch observer rules), quantize and dequantize."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from . import _backend
from . import _checks as V
from ._constants import FLOAT32_EPS

_F32 = np.float32
_F32_DTYPE = np.dtype(np.float32)
_NativeArgs = tuple[float, float, float, float, bool]  # inv, zero point, qmin, qmax (float32 values), is int8


class _ArgCache:
    """Validated parameters of recent calls, keyed by the arguments' values and types; bounded (cleared when
    full). A key holding an unhashable argument (an array) is never stored: that call validates every time."""

    __slots__ = ("_entries",)
    _SIZE = 256

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], Any] = {}

    def get(self, key: tuple[Any, ...]) -> Any:
        try:
            return self._entries.get(key)
        except TypeError:
            return None

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        try:
            hash(key)
        except TypeError:
            return
        if len(self._entries) >= self._SIZE:
            self._entries.clear()
        self._entries[key] = value


_PARAMS_CACHE = _ArgCache()  # _per_tensor_params
_DEQUANT_CACHE = _ArgCache()  # _dequant_params


def _frozen_array(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.setflags(write=False)
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class QParams:
    """Affine quantization parameters: real = scale * (q - zero_point) (docs/quantization.md eq. (1)).

    Per-tensor when `scale`/`zero_point` are scalars; per-channel (1-D arrays along `axis`) otherwise.
    `qmin`/`qmax` record the integer range the parameters were chosen for (None = the dtype's range).
    """

    scale: Any
    zero_point: Any
    dtype: str = "uint8"
    axis: int | None = None
    qmin: int | None = None
    qmax: int | None = None

    def __post_init__(self) -> None:
        dtype = V.dtype_name(self.dtype)
        object.__setattr__(self, "dtype", dtype)
        s = V.scale(self.scale, "scale")
        if s.ndim == 0:
            if self.axis is not None:
                raise ValueError("axis must be None for per-tensor QParams (scalar scale)")
            zp = V.zero_point(self.zero_point, dtype, "zero_point")
            object.__setattr__(self, "scale", _F32(s))
            object.__setattr__(self, "zero_point", zp)
        else:
            if s.ndim != 1:
                raise ValueError(f"scale must be a scalar or 1-D, got shape {s.shape}")
            if self.axis is None:
                object.__setattr__(self, "axis", 0)
            V.int_scalar(self.axis, "axis")
            zp = V.zero_point(self.zero_point, dtype, "zero_point", channels=s.shape[0])
            if np.ndim(zp) == 0:
                zp = np.full(s.shape, zp, dtype=np.int32)
            object.__setattr__(self, "scale", _frozen_array(s))
            object.__setattr__(self, "zero_point", _frozen_array(zp))
        lo, hi = V.dtype_range(dtype)
        qmin = lo if self.qmin is None else V.int_scalar(self.qmin, "qmin")
        qmax = hi if self.qmax is None else V.int_scalar(self.qmax, "qmax")
        if not lo <= qmin < qmax <= hi:
            raise ValueError(f"need {lo} <= qmin < qmax <= {hi} for {dtype}, got qmin={qmin}, qmax={qmax}")
        object.__setattr__(self, "qmin", qmin)
        object.__setattr__(self, "qmax", qmax)
        native = None
        if self.axis is None:  # the native kernel's arguments, validated once
            inv = float(_F32(1.0) / self.scale)
            native = (inv, float(self.zero_point), float(qmin), float(qmax), dtype == "int8")
        object.__setattr__(self, "_native", native)

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def quantize(self, x: Any) -> np.ndarray:
        if (
            self._native is not None
            and type(x) is np.ndarray
            and x.dtype is _F32_DTYPE
            and x.ndim
            and _backend.core is not None
            and _backend.get_backend() == "native"
        ):
            return _backend.core.quantize_per_tensor(x, *self._native)
        return quantize(x, self.scale, self.zero_point, self.dtype, axis=self.axis, qmin=self.qmin, qmax=self.qmax)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return dequantize(q, self.scale, self.zero_point, axis=self.axis)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QParams):
            return NotImplemented
        return (
            self.dtype == other.dtype
            and self.axis == other.axis
            and (self.qmin, self.qmax) == (other.qmin, other.qmax)
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through the constructor: a pickled or deep-copied QParams is validated and read-only again.
        return (QParams, (self.scale, self.zero_point, self.dtype, self.axis, self.qmin, self.qmax))

    def __hash__(self) -> int:
        # Consistent with __eq__: scales are finite and > 0 (no -0.0/NaN), so equal values have equal bytes.
        scale = np.asarray(self.scale, dtype=_F32)
        zp = np.asarray(self.zero_point, dtype=np.int64)
        return hash((self.dtype, self.axis, self.qmin, self.qmax, scale.shape, scale.tobytes(), zp.tobytes()))


def quant_range(
    dtype: Any = "uint8", *, bits: int = 8, reduce_range: bool = False, narrow_range: bool = False
) -> tuple[int, int, bool]:
    """(qmin, qmax, customized) for a dtype; `customized` mirrors torch's has_customized_qrange."""
    dtype = V.dtype_name(dtype)
    bits = V.int_scalar(bits, "bits")
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8], got {bits}")
    customized = bits < 8 or narrow_range
    if dtype == "uint8":
        qmin, qmax = (1 if narrow_range else 0), 2**bits - 1
    else:
        qmax = 2 ** (bits - 1) - 1
        qmin = -qmax if narrow_range else -(2 ** (bits - 1))
    if reduce_range:
        if customized:
            qmin, qmax = qmin // 2, qmax // 2
        else:
            qmin, qmax = (0, 127) if dtype == "uint8" else (-64, 63)
    return qmin, qmax, customized


def calc_qparams(
    min_val: Any,
    max_val: Any,
    dtype: Any = "uint8",
    *,
    symmetric: bool = False,
    bits: int = 8,
    reduce_range: bool = False,
    narrow_range: bool = False,
    eps: float = FLOAT32_EPS,
    axis: int = 0,
) -> QParams:
    """Scale and zero point for the range [min_val, max_val], as torch's observers compute them (eqs. (2)-(3)).

    The range is widened to include 0. All arithmetic is float32, in torch's order, so the scale is
    bit-equal to `MinMaxObserver.calculate_qparams()`. Arrays of min/max give per-channel QParams on `axis`.
    """
    dtype = V.dtype_name(dtype)
    qmin, qmax, customized = quant_range(dtype, bits=bits, reduce_range=reduce_range, narrow_range=narrow_range)
    if symmetric and reduce_range and dtype == "uint8":
        raise ValueError("reduce_range is not supported for symmetric uint8 (torch raises here too)")
    return observer_qparams(
        min_val, max_val, dtype, qmin, qmax, symmetric=symmetric, customized=customized, eps=eps, axis=axis
    )


def observer_qparams(
    min_val: Any,
    max_val: Any,
    dtype: str,
    qmin: int,
    qmax: int,
    *,
    symmetric: bool,
    customized: bool,
    eps: float = FLOAT32_EPS,
    axis: int = 0,
) -> QParams:
    """torch's `_calculate_qparams` for a known integer range [qmin, qmax] (float32, torch's order).
    `customized` is torch's has_customized_qrange: symmetric uint8 then centres the zero point in the range."""
    mn = np.asarray(min_val, dtype=np.float64).astype(_F32)
    mx = np.asarray(max_val, dtype=np.float64).astype(_F32)
    if mn.shape != mx.shape or mn.ndim > 1:
        raise ValueError(f"min_val and max_val must be scalars or 1-D of one shape, got {mn.shape} and {mx.shape}")
    if not (np.all(np.isfinite(mn)) and np.all(np.isfinite(mx))):
        raise ValueError("min_val and max_val must be finite (an observer that saw no data has no range)")
    if np.any(mn > mx):
        raise ValueError(f"min_val must be <= max_val, got {min_val!r} > {max_val!r}")
    eps32 = _F32(eps)
    if not (np.isfinite(eps32) and eps32 > 0):
        raise ValueError(f"eps must be finite and > 0 as float32, got {eps!r}")
    min_neg = np.minimum(mn, _F32(0))
    max_pos = np.maximum(mx, _F32(0))
    if symmetric:
        max_pos = np.maximum(-min_neg, max_pos)
        scale = np.maximum(max_pos / _F32((qmax - qmin) / 2), eps32)
        if dtype == "uint8":
            zp = np.full(mn.shape, (qmin + qmax) // 2 if customized else 128, dtype=np.int64)
        else:
            zp = np.zeros(mn.shape, dtype=np.int64)
    else:
        scale = np.maximum((max_pos - min_neg) / _F32(qmax - qmin), eps32)
        zp = qmin - np.rint(min_neg / scale).astype(np.int64)
        zp = np.clip(zp, qmin, qmax)
    if mn.ndim == 0:
        return QParams(_F32(scale), int(zp), dtype, None, qmin, qmax)
    return QParams(scale.astype(_F32), zp.astype(np.int32), dtype, axis, qmin, qmax)


def _per_channel_shape(x: np.ndarray, axis: int, n: int, what: str) -> tuple[int, ...]:
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for an input of shape {x.shape}")
    axis %= x.ndim
    if x.shape[axis] != n:
        raise ValueError(f"{what} has {n} channels but the input has {x.shape[axis]} along axis {axis}")
    shape = [1] * x.ndim
    shape[axis] = n
    return tuple(shape)


def _fma_to_f32(p: np.ndarray, c: Any) -> np.ndarray:
    """float32(p + c) rounded once, for exact float64 p (a float32*float32 product) and integer c.

    The float64 sum may round; TwoSum recovers its error e exactly. Only when the float64 sum is exactly
    a float32 half-way point can the second rounding differ from a single one; e then decides the side.
    """
    s = p + c
    bb = s - p
    e = (p - (s - bb)) + (c - bb)
    r = s.astype(_F32)
    with np.errstate(invalid="ignore", over="ignore"):
        rd = r.astype(np.float64)
        up = rd > s
        other = np.where(up, np.nextafter(r, _F32(-np.inf)), np.nextafter(r, _F32(np.inf)))
        tie = (e != 0) & ((rd + other.astype(np.float64)) * 0.5 == s) & np.isfinite(other)
        if np.any(tie):
            hi = np.where(up, r, other)
            lo = np.where(up, other, r)
            r = np.where(tie, np.where(e > 0, hi, lo), r)
    return r


def _per_tensor_params(scale: Any, zero_point: Any, dtype: Any, qmin: Any, qmax: Any) -> tuple[_NativeArgs, float]:
    """(the native quantize's arguments after x, float32 scale) of a per-tensor (de)quantize, validated;
    cached by the arguments' values and types."""
    key = (type(scale), scale, type(zero_point), zero_point, dtype, type(qmin), qmin, type(qmax), qmax)
    hit = _PARAMS_CACHE.get(key)
    if hit is not None:
        return hit
    dtype = V.dtype_name(dtype)
    qmin, qmax = _int_range(dtype, qmin, qmax)
    s = V.scale(scale)
    if s.ndim != 0:
        raise ValueError("scale is an array: pass axis=... for per-channel quantization")
    zp = V.zero_point(zero_point, dtype, "zero_point")
    params = ((float(_F32(1.0) / s), float(zp), float(qmin), float(qmax), dtype == "int8"), float(s))
    _PARAMS_CACHE.put(key, params)
    return params


def _dequant_params(scale: Any, zero_point: Any, kind: str) -> tuple[float, int]:
    """(float32 scale, zero point) of a per-tensor dequantize of dtype char `kind`, validated as
    _per_tensor_params does; its own shorter key (a 256-element call is mostly this)."""
    key = (type(scale), scale, type(zero_point), zero_point, kind)
    hit = _DEQUANT_CACHE.get(key)
    if hit is not None:
        return hit
    args, s = _per_tensor_params(scale, zero_point, "uint8" if kind == "B" else "int8", None, None)
    params = (s, int(args[1]))
    _DEQUANT_CACHE.put(key, params)
    return params


def _int_range(dtype: str, qmin: Any, qmax: Any) -> tuple[int, int]:
    lo, hi = V.dtype_range(dtype)
    qmin = lo if qmin is None else V.int_scalar(qmin, "qmin")
    qmax = hi if qmax is None else V.int_scalar(qmax, "qmax")
    if not lo <= qmin <= qmax <= hi:
        raise ValueError(f"need {lo} <= qmin <= qmax <= {hi} for {dtype}, got qmin={qmin}, qmax={qmax}")
    return qmin, qmax


def _as_float32(x: Any) -> np.ndarray:
    if type(x) is np.ndarray and x.dtype.char == "f":
        return x
    try:
        return np.asarray(x, dtype=_F32)
    except (TypeError, ValueError):
        raise TypeError(f"x must be an array of real numbers, got {type(x).__name__}") from None


def _channel_split(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """(outer, channels, inner) of a C-contiguous array of `shape` around `axis` (already in range)."""
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    return outer, shape[axis], inner


def quantize(
    x: Any,
    scale: Any,
    zero_point: Any,
    dtype: Any = "uint8",
    *,
    axis: int | None = None,
    qmin: int | None = None,
    qmax: int | None = None,
) -> np.ndarray:
    """Quantize real values, bit-exact with torch 2.13 on x86 (docs/quantization.md eqs. (4)-(5)).

    Per-tensor: q = clamp(rne(fma_f32(x, inv, zp))); per-channel (axis given, 1-D scale/zero_point):
    q = clamp(rne(f32(f32(x*inv) + zp))); inv = f32(1 / f32(scale)). x is read as float32; +-inf
    saturate; NaN is rejected. The native backend runs the C++ kernels, the reference backend this NumPy.
    """
    core = _backend.core
    native = core is not None and _backend.get_backend() == "native"
    if native and axis is None and type(x) is np.ndarray and x.dtype is _F32_DTYPE and x.ndim:
        return core.quantize_per_tensor(x, *_per_tensor_params(scale, zero_point, dtype, qmin, qmax)[0])  # type: ignore[union-attr]
    dtype = V.dtype_name(dtype)
    qmin, qmax = _int_range(dtype, qmin, qmax)
    xf = _as_float32(x)
    s = V.scale(scale)
    inv = _F32(1.0) / s
    if axis is None:
        if s.ndim != 0:
            raise ValueError("scale is an array: pass axis=... for per-channel quantization")
        zp = V.zero_point(zero_point, dtype, "zero_point")
        if native and xf.ndim:
            return core.quantize_per_tensor(xf, float(inv), float(zp), float(qmin), float(qmax), dtype == "int8")  # type: ignore[union-attr]
        with np.errstate(over="ignore", invalid="ignore"):
            f = _fma_to_f32(xf.astype(np.float64) * np.float64(inv), np.float64(zp))
    else:
        axis = V.int_scalar(axis, "axis")
        if s.ndim != 1:
            raise ValueError(f"per-channel scale must be 1-D, got shape {s.shape}")
        shape = _per_channel_shape(xf, axis, s.shape[0], "scale")
        zp = V.zero_point(zero_point, dtype, "zero_point", channels=s.shape[0])
        zp32 = np.broadcast_to(np.asarray(zp, dtype=_F32), s.shape)
        if native:
            return _quantize_per_channel_native(xf, axis, inv, zp32, qmin, qmax, dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            f = (xf * inv.reshape(shape)) + zp32.reshape(shape)
    if np.isnan(f).any():
        raise ValueError("x contains NaN, which has no quantized value")
    return np.clip(np.rint(f), qmin, qmax).astype(V.np_dtype(dtype))


def _quantize_per_channel_native(
    xf: np.ndarray, axis: int, inv: np.ndarray, zp32: np.ndarray, qmin: int, qmax: int, dtype: str
) -> np.ndarray:
    """Eq. (5) in the native kernel (arguments validated by quantize)."""
    xc = np.ascontiguousarray(xf)
    out = np.empty(xc.shape, V.np_dtype(dtype))
    outer, channels, inner = _channel_split(xc.shape, axis % xc.ndim)
    inv_c = np.ascontiguousarray(inv, dtype=_F32)
    zp_c = np.ascontiguousarray(zp32, dtype=_F32)
    core = _backend.core
    assert core is not None
    if core.quantize_per_channel(xc, inv_c, zp_c, outer, channels, inner, qmin, qmax, out):
        raise ValueError("x contains NaN, which has no quantized value")
    return out


def dequantize(q: np.ndarray, scale: Any, zero_point: Any, *, axis: int | None = None) -> np.ndarray:
    """real values from quantized ones, bit-equal to torch.dequantize (eq. (1)).

    Per-tensor: f32(scale) * f32(q - zero_point). Per-channel: f32(f64(scale) * (q - zero_point)), since
    torch keeps per-channel scales in float64 (measured; identical whenever the scale is a float32).
    """
    core = _backend.core
    if axis is None and type(q) is np.ndarray and q.ndim and core is not None and _backend.get_backend() == "native":
        kind = q.dtype.char  # "B" uint8, "b" int8
        if kind == "B" or kind == "b":
            return core.dequantize_per_tensor(q, *_dequant_params(scale, zero_point, kind))
    q = V.quant_array(q, "q")
    dtype = V.qname(q)
    native = q.ndim > 0 and core is not None and _backend.get_backend() == "native"
    if axis is None:
        s = V.scale(scale)
        if s.ndim != 0:
            raise ValueError("scale is an array: pass axis=... for per-channel dequantization")
        zp = V.zero_point(zero_point, dtype, "zero_point")
        return (q.astype(np.int32) - zp).astype(_F32) * s
    s = V.scale(scale)
    axis = V.int_scalar(axis, "axis")
    if s.ndim != 1:
        raise ValueError(f"per-channel scale must be 1-D, got shape {s.shape}")
    shape = _per_channel_shape(q, axis, s.shape[0], "scale")
    zp = np.broadcast_to(V.zero_point(zero_point, dtype, "zero_point", channels=s.shape[0]), s.shape)
    s64 = np.asarray(scale, dtype=np.float64)
    if native:
        qc = np.ascontiguousarray(q)
        out = np.empty(qc.shape, _F32)
        outer, channels, inner = _channel_split(qc.shape, axis % qc.ndim)
        zp_c = np.ascontiguousarray(zp, dtype=np.int32)
        core.dequantize_per_channel(qc, np.ascontiguousarray(s64), zp_c, outer, channels, inner, out)  # type: ignore[union-attr]
        return out
    return ((q.astype(np.int32) - zp.reshape(shape)) * s64.reshape(shape)).astype(_F32)


def _out_array(out: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {np.dtype(dtype).name}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be C-contiguous and writeable")
    return out


def quantize_to_nhwc(
    x: Any,
    scale: Any,
    zero_point: Any,
    dtype: Any = "uint8",
    *,
    qmin: int | None = None,
    qmax: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """float32 NCHW -> quantized NHWC in one pass: quantize(x, ...).transpose(0, 2, 3, 1), per tensor (eq. (4)).
    `out` (N, H, W, C), uint8/int8, C-contiguous, receives the result when given."""
    args, _ = _per_tensor_params(scale, zero_point, dtype, qmin, qmax)
    xf = np.ascontiguousarray(_as_float32(x))
    if xf.ndim != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {xf.shape}")
    n, c, h, w = xf.shape
    result = _out_array(out, (n, h, w, c), np.int8 if args[4] else np.uint8)
    core = _backend.core
    if core is not None and _backend.get_backend() == "native":
        if core.quantize_to_nhwc(xf, *args[:4], result):
            raise ValueError("x contains NaN, which has no quantized value")
        return result
    result[...] = quantize(xf, scale, zero_point, dtype, qmin=qmin, qmax=qmax).transpose(0, 2, 3, 1)
    return result


def dequantize_to_nchw(q: np.ndarray, scale: Any, zero_point: Any, *, out: np.ndarray | None = None) -> np.ndarray:
    """Quantized NHWC -> float32 NCHW in one pass: dequantize(q, ...).transpose(0, 3, 1, 2), per tensor.
    `out` (N, C, H, W), float32, C-contiguous, receives the result when given."""
    q = V.quant_array(q, "q", ndim=4)
    args, s = _per_tensor_params(scale, zero_point, V.qname(q), None, None)
    n, h, w, c = q.shape
    result = _out_array(out, (n, c, h, w), _F32)
    core = _backend.core
    if core is not None and _backend.get_backend() == "native":
        core.dequantize_to_nchw(np.ascontiguousarray(q), s, int(args[1]), result)
        return result
    result[...] = dequantize(q, scale, zero_point).transpose(0, 3, 1, 2)
    return result
