"""Observers with torch 2.13's semantics, NumPy only: MinMax, MovingAverageMinMax, PerChannelMinMax,
MovingAveragePerChannelMinMax and Histogram (docs/peers.md P2). Torch tensors are accepted as input.

All range arithmetic is float32 in torch's order, so `calculate_qparams()` gives torch's scale bit for
bit (MinMax family) or within float32 rounding of it (Histogram).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from . import _backend
from . import _checks as V
from ._constants import FLOAT32_EPS
from .qparams import QParams, observer_qparams

_F32 = np.float32
EPS_F32 = FLOAT32_EPS
QSCHEMES = ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine", "per_channel_symmetric")


def qscheme_name(qscheme: Any) -> str:
    """ "per_tensor_affine"... from a string or a torch qscheme object (without importing torch)."""
    name = str(qscheme).removeprefix("torch.")
    if name not in QSCHEMES:
        raise ValueError(f"qscheme must be one of {QSCHEMES}, got {qscheme!r}")
    return name


def as_float32(x: Any) -> np.ndarray:
    """A float32 NumPy view of a NumPy array, array-like or torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"observer input must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(_F32, copy=False)


def quant_min_max(
    dtype: str, quant_min: int | None, quant_max: int | None, reduce_range: bool
) -> tuple[int, int, bool]:
    """torch's calculate_qmin_qmax (+ _validate_qmin_qmax): (qmin, qmax, has_customized_qrange)."""
    customized = quant_min is not None and quant_max is not None
    if customized:
        qmin, qmax = V.int_scalar(quant_min, "quant_min"), V.int_scalar(quant_max, "quant_max")
        if not qmin <= 0 <= qmax:
            raise ValueError(f"the quantization range [quant_min, quant_max] must include 0, got [{qmin}, {qmax}]")
        if qmin >= qmax:
            raise ValueError(f"quant_min must be < quant_max, got {qmin} >= {qmax}")
        lo, hi = V.dtype_range(dtype)
        if not (lo <= qmin and qmax <= hi):
            raise ValueError(f"[quant_min, quant_max] must fit {dtype} [{lo}, {hi}], got [{qmin}, {qmax}]")
        if reduce_range:
            qmin, qmax = qmin // 2, qmax // 2
        return qmin, qmax, True
    if dtype == "int8":
        return (-64, 63, False) if reduce_range else (-128, 127, False)
    return (0, 127, False) if reduce_range else (0, 255, False)


def reject_unknown_kwargs(observer: object, kwargs: dict[str, Any]) -> None:
    """torch's observers raise TypeError on keyword arguments they do not know; so do these."""
    unknown = sorted(set(kwargs) - {"factory_kwargs"})
    if unknown:
        raise TypeError(f"{type(observer).__name__} got unexpected keyword argument(s): {', '.join(unknown)}")


def averaging_constant_value(value: Any) -> float:
    """The moving-average weight c of m += c * (batch_m - m): a real number in (0, 1]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"averaging_constant must be a real number, got {type(value).__name__}")
    if not 0 < float(value) <= 1:
        raise ValueError(f"averaging_constant must be in (0, 1], got {value!r}")
    return float(value)


class ObserverBase:
    """Shared constructor arguments (torch's UniformQuantizationObserverBase) and qparams maths."""

    per_channel = False

    def __init__(
        self,
        dtype: Any = "quint8",
        qscheme: Any = "per_tensor_affine",
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        factory_kwargs: Any = None,
        eps: float = EPS_F32,
        is_dynamic: bool = False,
    ) -> None:
        self.dtype = V.dtype_name(dtype)
        self.qscheme = qscheme_name(qscheme)
        if self.qscheme.startswith("per_channel") != self.per_channel:
            kind = "per-channel" if self.per_channel else "per-tensor"
            raise ValueError(f"{type(self).__name__} is {kind}; qscheme {self.qscheme!r} is not")
        self.symmetric = self.qscheme.endswith("symmetric")
        if reduce_range and self.symmetric and self.dtype == "uint8":
            raise NotImplementedError("cannot reduce range for symmetric quantization of quint8 (as torch)")
        self.reduce_range = bool(reduce_range)
        self.quant_min, self.quant_max, self.has_customized_qrange = quant_min_max(
            self.dtype, quant_min, quant_max, self.reduce_range
        )
        self.eps = float(_F32(eps))
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.is_dynamic = bool(is_dynamic)

    def _qparams(self, min_val: np.ndarray, max_val: np.ndarray, axis: int | None = None) -> QParams:
        uninitialised = min_val.size == 0 or (min_val.ndim == 0 and min_val == np.inf and max_val == -np.inf)
        if uninitialised:
            warnings.warn(
                "must run observer before calling calculate_qparams; returning scale 1.0, zero point 0",
                UserWarning,
                stacklevel=3,
            )
            return QParams(1.0, 0, self.dtype, None, self.quant_min, self.quant_max)
        return observer_qparams(
            min_val,
            max_val,
            self.dtype,
            self.quant_min,
            self.quant_max,
            symmetric=self.symmetric,
            customized=self.has_customized_qrange,
            eps=self.eps,
            axis=0 if axis is None else axis,
        )

    def __call__(self, x: Any) -> Any:
        self.observe(as_float32(x))
        return x

    forward = __call__

    def observe(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def calculate_qparams(self) -> QParams:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: np.array(getattr(self, k)) for k in self._state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self._state:
            if k not in state:
                raise KeyError(f"state_dict is missing {k!r}")
            setattr(self, k, as_float32(state[k]).copy())

    _state: tuple[str, ...] = ("min_val", "max_val")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dtype={self.dtype}, qscheme={self.qscheme}, quant_min={self.quant_min}, "
            f"quant_max={self.quant_max}, min_val={self.min_val}, max_val={self.max_val})"
        )


class MinMaxObserver(ObserverBase):
    """Running min and max of everything observed (per tensor)."""

    def __init__(
        self,
        dtype: Any = "quint8",
        qscheme: Any = "per_tensor_affine",
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        factory_kwargs: Any = None,
        eps: float = EPS_F32,
        is_dynamic: bool = False,
        **kwargs: Any,
    ) -> None:
        reject_unknown_kwargs(self, kwargs)
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, factory_kwargs, eps, is_dynamic)
        self.reset()

    def reset(self) -> None:
        self.min_val = np.array(np.inf, _F32)
        self.max_val = np.array(-np.inf, _F32)

    reset_min_max_vals = reset

    def observe(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        self.min_val = np.minimum(self.min_val, x.min())
        self.max_val = np.maximum(self.max_val, x.max())

    def calculate_qparams(self) -> QParams:
        return self._qparams(self.min_val, self.max_val)


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of each batch's min and max: m += c * (batch_m - m) (float32)."""

    def __init__(
        self,
        averaging_constant: float = 0.01,
        dtype: Any = "quint8",
        qscheme: Any = "per_tensor_affine",
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        eps: float = EPS_F32,
        is_dynamic: bool = False,
        **kwargs: Any,
    ) -> None:
        if is_dynamic and averaging_constant != 1:
            raise NotImplementedError(
                "MovingAverageMinMaxObserver doesn't support dynamic quantization for "
                f"averaging constant of {averaging_constant}"
            )
        reject_unknown_kwargs(self, kwargs)
        self.averaging_constant = averaging_constant_value(averaging_constant)
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, None, eps, is_dynamic)

    def observe(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        cur_min, cur_max = x.min(), x.max()
        if self.min_val == np.inf and self.max_val == -np.inf:
            self.min_val, self.max_val = np.array(cur_min, _F32), np.array(cur_max, _F32)
            return
        c = _F32(self.averaging_constant)
        self.min_val = self.min_val + c * (cur_min - self.min_val)
        self.max_val = self.max_val + c * (cur_max - self.max_val)


class PerChannelMinMaxObserver(ObserverBase):
    """Running min and max per channel along `ch_axis`."""

    per_channel = True

    def __init__(
        self,
        ch_axis: int = 0,
        dtype: Any = "quint8",
        qscheme: Any = "per_channel_affine",
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        factory_kwargs: Any = None,
        eps: float = EPS_F32,
        is_dynamic: bool = False,
        **kwargs: Any,
    ) -> None:
        reject_unknown_kwargs(self, kwargs)
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, factory_kwargs, eps, is_dynamic)
        self.ch_axis = V.int_scalar(ch_axis, "ch_axis")
        self.reset()

    def reset(self) -> None:
        self.min_val = np.zeros(0, _F32)
        self.max_val = np.zeros(0, _F32)

    reset_min_max_vals = reset

    def _channel_minmax(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not -x.ndim <= self.ch_axis < x.ndim:
            raise ValueError(f"ch_axis {self.ch_axis} is out of range for an input of shape {x.shape}")
        y = np.moveaxis(x, self.ch_axis, 0).reshape(x.shape[self.ch_axis], -1)
        return y.min(axis=1), y.max(axis=1)

    def observe(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        cur_min, cur_max = self._channel_minmax(x)
        if self.min_val.size == 0:
            self.min_val, self.max_val = cur_min, cur_max
            return
        if cur_min.shape != self.min_val.shape:
            raise ValueError(
                f"expected {self.min_val.shape[0]} channels on axis {self.ch_axis}, got {cur_min.shape[0]}"
            )
        self._update(cur_min, cur_max)

    def _update(self, cur_min: np.ndarray, cur_max: np.ndarray) -> None:
        self.min_val = np.minimum(self.min_val, cur_min)
        self.max_val = np.maximum(self.max_val, cur_max)

    def calculate_qparams(self) -> QParams:
        return self._qparams(self.min_val, self.max_val, axis=self.ch_axis)


class MovingAveragePerChannelMinMaxObserver(PerChannelMinMaxObserver):
    """Per-channel exponential moving average of each batch's min and max."""

    def __init__(
        self,
        averaging_constant: float = 0.01,
        ch_axis: int = 0,
        dtype: Any = "quint8",
        qscheme: Any = "per_channel_affine",
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        eps: float = EPS_F32,
        is_dynamic: bool = False,
        **kwargs: Any,
    ) -> None:
        if is_dynamic and averaging_constant != 1:
            raise NotImplementedError(
                "MovingAveragePerChannelMinMaxObserver doesn't support dynamic quantization "
                f"for averaging constant of {averaging_constant}"
            )
        reject_unknown_kwargs(self, kwargs)
        self.averaging_constant = averaging_constant_value(averaging_constant)
        super().__init__(ch_axis, dtype, qscheme, reduce_range, quant_min, quant_max, None, eps, is_dynamic)

    def _update(self, cur_min: np.ndarray, cur_max: np.ndarray) -> None:
        c = _F32(self.averaging_constant)
        self.min_val = self.min_val + c * (cur_min - self.min_val)
        self.max_val = self.max_val + c * (cur_max - self.max_val)


def native_core() -> Any:
    """The native core when the native backend is in effect here, else None (the NumPy code runs)."""
    core = _backend.core
    return core if core is not None and _backend.get_backend() == "native" else None


def histc(x: np.ndarray, bins: int, lo: Any, hi: Any) -> np.ndarray:
    """torch.histc on float32: bin = int(f32((x - lo) * bins / (hi - lo))), the top edge in the last bin,
    values outside [lo, hi] dropped, a zero-width range widened to [lo - 1, hi + 1]."""
    lo, hi = _F32(lo), _F32(hi)
    if lo == hi:
        lo, hi = lo - _F32(1), hi + _F32(1)
    core = native_core()
    if core is not None and x.dtype == _F32 and np.isfinite(lo) and np.isfinite(hi):
        counts = np.empty(bins, np.int64)
        if core.histc(np.ascontiguousarray(x), bins, float(lo), float(hi), counts):
            return counts.astype(_F32)
        # some quotient has no bin (a range wider than float32): the NumPy code below raises as before
    x = x[(x >= lo) & (x <= hi)]
    with np.errstate(over="ignore", invalid="ignore"):
        pos = (x - lo) * _F32(bins) / (hi - lo)
    exact = np.isfinite(pos)
    if not exact.all():  # float32 overflowed (a range near float32's max): the same ratio in float64
        wide = (x.astype(np.float64) - np.float64(lo)) * bins / (np.float64(hi) - np.float64(lo))
        pos = np.where(exact, pos, wide)
    return np.bincount(np.clip(pos, 0, bins - 1).astype(np.int64), minlength=bins).astype(_F32)


def min_max(x: np.ndarray) -> tuple[Any, Any]:
    """(x.min(), x.max()) of a non-empty float32 array, as float32 scalars (NaN propagates, as NumPy's)."""
    core = native_core()
    if core is None or x.dtype != _F32:
        return x.min(), x.max()
    mn, mx, has_nan = core.min_max(np.ascontiguousarray(x))
    if has_nan:
        return x.min(), x.max()
    return _F32(mn), _F32(mx)


def linspace_f32(start: Any, end: Any, steps: int) -> np.ndarray:
    """torch.linspace in float32: start + step*i for the first half, end - step*(steps-1-i) after."""
    start, end = _F32(start), _F32(end)
    step = (end - start) / _F32(steps - 1)
    i = np.arange(steps)
    half = steps // 2
    lo = start + step * i[:half].astype(_F32)
    hi = end - step * (steps - 1 - i[half:]).astype(_F32)
    return np.concatenate([lo, hi]).astype(_F32)


class HistogramObserver(ObserverBase):
    """A running histogram (`bins` bins) over the observed range; calculate_qparams picks the range that
    minimises the L2 quantization error (torch's _non_linear_param_search). Memory is `bins` floats,
    whatever the number of batches."""

    upsample_rate = 16  # torch 2.13's _upscale_histogram

    def __init__(
        self,
        bins: int = 2048,
        dtype: Any = "quint8",
        qscheme: Any = "per_tensor_affine",
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        factory_kwargs: Any = None,
        eps: float = EPS_F32,
        is_dynamic: bool = False,
        **kwargs: Any,
    ) -> None:
        reject_unknown_kwargs(self, kwargs)
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, factory_kwargs, eps, is_dynamic)
        self.bins = V.int_scalar(bins, "bins")
        if self.bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.dst_nbins = 256
        self.reset()

    _state = ("min_val", "max_val", "histogram")

    def __call__(self, x: Any) -> Any:
        with np.errstate(over="ignore", invalid="ignore"):  # ranges near float32's max overflow to inf, as in torch
            return super().__call__(x)

    forward = __call__

    def reset(self) -> None:
        self.histogram = np.zeros(self.bins, _F32)
        self.min_val = np.array(np.inf, _F32)
        self.max_val = np.array(-np.inf, _F32)

    def observe(self, x: np.ndarray) -> None:
        x = x.reshape(-1)
        if x.size == 0:
            return
        x_min, x_max = min_max(x)
        if np.isinf(x_min) or np.isinf(x_max):
            warnings.warn("inf detected in input, ignoring those values", UserWarning, stacklevel=3)
            x = x[np.abs(x) != np.inf]
            if x.size == 0:
                return
            x_min, x_max = x.min(), x.max()
        if self.min_val == np.inf or self.max_val == -np.inf:
            self.min_val, self.max_val = np.array(x_min, _F32), np.array(x_max, _F32)
            self.histogram = histc(x, self.bins, x_min, x_max)
            return
        new_min, new_max = min(self.min_val, x_min), max(self.max_val, x_max)
        update = histc(x, self.bins, new_min, new_max)
        if new_min == self.min_val and new_max == self.max_val:
            self.histogram = self.histogram + update
            return
        if self.min_val == self.max_val:
            moved = histc(np.array([self.min_val], _F32), self.bins, new_min, new_max) * self.histogram.sum()
        else:
            moved = self._upscale(new_min, new_max)
        self.histogram = (update + moved).astype(_F32)
        self.min_val, self.max_val = np.array(new_min, _F32), np.array(new_max, _F32)

    def _upscale(self, new_min: Any, new_max: Any) -> np.ndarray:
        """The old histogram spread over the new range: each old bin split into upsample_rate parts whose
        mid-points are bucketed into the new bins."""
        u = self.upsample_rate
        parts = np.repeat(self.histogram, u) / _F32(u)
        bin_size = (self.max_val - self.min_val) / _F32(self.bins * u)
        mids = linspace_f32(self.min_val, self.max_val, self.bins * u + 1)[:-1] + _F32(0.5) * bin_size
        edges = linspace_f32(new_min, new_max, self.bins + 1)
        idx = np.clip(np.searchsorted(edges, mids, side="right") - 1, 0, self.bins - 1)
        return np.bincount(idx, weights=parts, minlength=self.bins).astype(_F32)

    def _quantization_error(self, start: int, end: int) -> float:
        """L2 error of quantizing the histogram onto dst_nbins levels over bins [start, end] (float32)."""
        bw = (float(self.max_val) - float(self.min_val)) / self.bins
        dst_w = bw * (end - start + 1) / self.dst_nbins
        if dst_w == 0.0:
            return 0.0
        bw32, dw32 = _F32(bw), _F32(dst_w)
        begin = (np.arange(self.bins) - start).astype(_F32) * bw32
        stop = begin + bw32
        dst_begin = np.clip(np.floor(begin / dw32), 0, self.dst_nbins - 1)
        dst_end = np.clip(np.floor(stop / dw32), 0, self.dst_nbins - 1)
        density = self.histogram / bw32
        half = _F32(dst_w / 2)

        def l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return density * ((b * b * b - a * a * a) / _F32(3))

        norm = np.zeros(self.bins, _F32)
        norm += l2(begin - (dst_begin + _F32(0.5)) * dw32, np.full(self.bins, half, _F32))
        norm += (dst_end - dst_begin - _F32(1)) * l2(-half, half)
        norm += l2(-half, stop - (dst_end * dw32 + half))
        return float(norm.sum(dtype=_F32))

    def _search_range(self) -> tuple[np.float32, np.float32]:
        """torch's _non_linear_param_search: shrink [start, end] from the side holding less mass, one
        1e-5 quantile at a time, while the L2 error keeps falling."""
        bin_width = (self.max_val - self.min_val) / _F32(self.bins)
        total = float(self.histogram.sum(dtype=np.float64))
        csum = np.cumsum(self.histogram, dtype=np.float64).astype(_F32)
        alpha, beta, start, end, norm_min = 0.0, 1.0, 0, self.bins - 1, math.inf
        while alpha < beta:
            next_alpha, next_beta = alpha + 1e-5, beta - 1e-5
            lo, hi = start, end
            while lo < end and csum[lo] < next_alpha * total:
                lo += 1
            while hi > start and csum[hi] > next_beta * total:
                hi -= 1
            next_start, next_end = start, end
            if (lo - start) > (end - hi):
                next_start, alpha = lo, next_alpha
            else:
                next_end, beta = hi, next_beta
            if next_start == start and next_end == end:
                continue
            norm = self._quantization_error(next_start, next_end)
            if norm > norm_min:
                break
            norm_min, start, end = norm, next_start, next_end
        return self.min_val + bin_width * _F32(start), self.min_val + bin_width * _F32(end + 1)

    def calculate_qparams(self) -> QParams:
        if self.min_val == np.inf and self.max_val == -np.inf:
            return self._qparams(np.zeros(0, _F32), np.zeros(0, _F32))
        with np.errstate(over="ignore", invalid="ignore"):  # float32 errors of huge ranges saturate to inf
            if not np.isfinite(self.max_val - self.min_val):
                raise ValueError(
                    f"the observed range [{self.min_val}, {self.max_val}] is wider than float32's largest value: "
                    "no float32 scale covers it"
                )
            new_min, new_max = self._search_range()
        return self._qparams(np.asarray(new_min), np.asarray(new_max))

    def __repr__(self) -> str:
        return (
            f"HistogramObserver(bins={self.bins}, dtype={self.dtype}, qscheme={self.qscheme}, "
            f"quant_min={self.quant_min}, quant_max={self.quant_max}, min_val={self.min_val}, max_val={self.max_val})"
        )
