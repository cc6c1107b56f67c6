"""ModelBuilder: records integer steps (weights packed, requant and fixed-point parameters made once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _checks as V
from ..packed import PackedGemm
from ..packed_conv import PackedConv3x3, PackedConvTranspose2x2
from ..qparams import QParams
from ..reference import model_ops as R
from ..requant import Requant
from ..requant_params import ROUNDINGS
from . import steps as S
from .model import QuantizedModel
from .qparams_json import qparams_to_json


class TensorRef:
    """A tensor of the model under construction: the output of one step (its index), with its qparams."""

    __slots__ = ("_builder", "channels", "index", "name", "ndim", "qparams")

    def __init__(
        self, builder: ModelBuilder, index: int, name: str, qparams: QParams, ndim: int | None, channels: int | None
    ) -> None:
        self._builder = builder
        self.index = index
        self.name = name
        self.qparams = qparams
        self.ndim = ndim  # 4 (NHWC), 2 ([N, F]) or None (an input whose rank is known only at run time)
        self.channels = channels  # the last axis, when known at build time

    def __repr__(self) -> str:
        return f"TensorRef({self.name!r}, ndim={self.ndim}, channels={self.channels}, dtype={self.qparams.dtype!r})"


def _act_qparams(qp: Any, what: str) -> QParams:
    if not isinstance(qp, QParams):
        raise TypeError(f"{what} must be a qkern.QParams, got {type(qp).__name__}")
    if qp.per_channel:
        raise ValueError(f"{what} must be per-tensor (activations have one scale and zero point)")
    return qp


def _input_bits(x: TensorRef) -> int:
    """7 when every value of x (and its zero point) is uint8 below 128: a 7-bit activation range (act_bits=7,
    or torch's reduce_range), which each producing step's clamp guarantees; the layer reading it is then
    packed for the ISA's 7-bit kernel (docs/kernels.md). Else 8."""
    qp = x.qparams
    return 7 if qp.dtype == "uint8" and qp.qmax is not None and qp.qmax <= 127 else 8


def _positive_int(value: Any, what: str, allowed: Sequence[int] | None = None, lo: int = 1) -> int:
    v = V.int_scalar(value, what)
    if allowed is not None and v not in allowed:
        raise ValueError(f"{what} must be one of {tuple(allowed)}, got {v}")
    if v < lo:
        raise ValueError(f"{what} must be >= {lo}, got {v}")
    return v


class ModelBuilder:
    """Builds a QuantizedModel step by step (docs/model.md). `rounding` is the Requant rounding of the
    conv / conv-transpose / linear layers ("fp32", "gemmlowp" or "single"); the other integer ops always
    use the fixed-point forms of docs/model.md."""

    def __init__(self, rounding: str = "fp32") -> None:
        if not isinstance(rounding, str):
            raise TypeError(f"rounding must be a str, got {type(rounding).__name__}")
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        self.rounding = rounding
        self._steps: list[S.Step] = []
        self._tensors: list[TensorRef] = []
        self._inputs: list[int] = []
        self._outputs: list[tuple[str, int]] = []
        self._names: set[str] = set()

    # -- helpers -------------------------------------------------------------------------------------
    def _name(self, name: Any, op: str) -> str:
        if name is None:
            name = f"{op}_{len(self._steps)}"
            while name in self._names:
                name += "_"
        if not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        if not name:
            raise ValueError("name must not be empty")
        if name in self._names:
            raise ValueError(f"name {name!r} is already used by another step")
        return name

    def _ref(self, x: Any, what: str, ndim: int | None = None) -> TensorRef:
        if not isinstance(x, TensorRef):
            raise TypeError(f"{what} must be a tensor returned by this ModelBuilder, got {type(x).__name__}")
        if x._builder is not self:
            raise ValueError(f"{what} belongs to another ModelBuilder")
        if ndim is not None and x.ndim is not None and x.ndim != ndim:
            raise ValueError(f"{what} must be {ndim}-D here, but {x.name!r} is {x.ndim}-D")
        return x

    def _add(self, step: S.Step, ndim: int | None, channels: int | None) -> TensorRef:
        self._steps.append(step)
        self._names.add(step.name)
        ref = TensorRef(self, len(self._tensors), step.name, step.qparams, ndim, channels)
        self._tensors.append(ref)
        return ref

    def _weights(
        self, w_q: Any, w_qparams: Any, bias_q: Any, ndim: int, out_axis: int
    ) -> tuple[np.ndarray, QParams, Any]:
        w = V.quant_array(w_q, "w_q", ndim)
        if not isinstance(w_qparams, QParams):
            raise TypeError(f"w_qparams must be a qkern.QParams, got {type(w_qparams).__name__}")
        if w_qparams.dtype != w.dtype.name:
            raise TypeError(f"w_q has dtype {w.dtype.name} but w_qparams says {w_qparams.dtype}")
        o = w.shape[out_axis]
        if w_qparams.per_channel:
            if w_qparams.axis != 0:
                raise ValueError(f"w_qparams must be per-tensor or per-channel along axis 0, got axis {w_qparams.axis}")
            if w_qparams.scale.shape != (o,):
                raise ValueError(f"w_qparams has {w_qparams.scale.shape[0]} channels but w_q has {o} outputs")
        bias = None if bias_q is None else np.array(V.bias(bias_q, o, "bias_q"))
        if o == 0 or w.size == 0:
            raise ValueError(f"w_q must not be empty, got shape {w.shape}")
        return w, w_qparams, bias

    @staticmethod
    def _check_channels(x: TensorRef, c: int, what: str) -> None:
        if x.channels is not None and x.channels != c:
            raise ValueError(f"{what} expects {c} input channels but {x.name!r} has {x.channels}")

    def _layer_args(
        self,
        x: TensorRef,
        w: np.ndarray,
        wq: QParams,
        bias: Any,
        out_qparams: Any,
        in_channels: int,
        op: str,
        name: Any,
        attrs: dict[str, Any],
    ) -> tuple[tuple[Any, ...], Requant]:
        """The checks and saved fields every weighted layer shares: output qparams, x's channels, the step's
        name; returns the step's leading arguments (name, inputs, qparams, attrs, arrays) and its Requant."""
        out = _act_qparams(out_qparams, "out_qparams")
        self._check_channels(x, in_channels, op)
        name = self._name(name, op)
        rq = S.layer_requant(x.qparams, wq, out, self.rounding)
        attrs = {**attrs, "w_qparams": qparams_to_json(wq)}
        arrays = {"w": w} if bias is None else {"w": w, "bias": bias}
        return (name, (x.index,), out, attrs, arrays), rq

    # -- steps ---------------------------------------------------------------------------------------
    def input(self, qparams: QParams, name: str | None = None) -> TensorRef:
        """A model input: float NCHW (or [N, F]) quantized with `qparams` into NHWC (or [N, F])."""
        qp = _act_qparams(qparams, "qparams")
        name = self._name(name, "input")
        ref = self._add(S.InputStep(name, (), qp, {}, {}), None, None)
        self._inputs.append(ref.index)
        return ref

    def conv2d(
        self,
        x: TensorRef,
        w_q: np.ndarray,
        w_qparams: QParams,
        bias_q: np.ndarray | None,
        out_qparams: QParams,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        name: str | None = None,
    ) -> TensorRef:
        """Conv 3x3 (stride 1|2, padding 0|1) or 1x1 (stride 1|2, padding 0) with weights OHWI [O, k, k, C]."""
        x = self._ref(x, "x", 4)
        k = _positive_int(kernel_size, "kernel_size", (1, 3))
        st = _positive_int(stride, "stride", (1, 2))
        p = V.int_scalar(padding, "padding")
        if p not in ((0, 1) if k == 3 else (0,)):
            raise ValueError(f"padding must be {'0 or 1' if k == 3 else '0'} for kernel_size={k}, got {p}")
        w, wq, bias = self._weights(w_q, w_qparams, bias_q, 4, 0)
        if w.shape[1:3] != (k, k):
            raise ValueError(f"w_q must have shape (O, {k}, {k}, C) for kernel_size={k}, got {w.shape}")
        attrs = {"kernel_size": k, "stride": st, "padding": p}
        args, rq = self._layer_args(x, w, wq, bias, out_qparams, w.shape[3], "conv2d", name, attrs)
        zp = int(x.qparams.zero_point)
        step: S.Step
        if k == 3:
            packed = PackedConv3x3(w, wq.zero_point, bias, rq, stride=st, padding=p, input_bits=_input_bits(x))
            step = S.Conv3x3Step(*args, packed=packed, in_zero_point=zp)
        else:
            b = np.ascontiguousarray(w.reshape(w.shape[0], w.shape[3]).T)
            gemm = PackedGemm(b, wq.zero_point, bias, rq, input_bits=_input_bits(x))
            step = S.Conv1x1Step(*args, packed=gemm, in_zero_point=zp, stride=st)
        return self._add(step, 4, w.shape[0])

    def conv_transpose2x2(
        self,
        x: TensorRef,
        w_q: np.ndarray,
        w_qparams: QParams,
        bias_q: np.ndarray | None,
        out_qparams: QParams,
        name: str | None = None,
    ) -> TensorRef:
        """ConvTranspose 2x2, stride 2, with weights IHWO [C, 2, 2, O]."""
        x = self._ref(x, "x", 4)
        w, wq, bias = self._weights(w_q, w_qparams, bias_q, 4, 3)
        if w.shape[1:3] != (2, 2):
            raise ValueError(f"w_q must have shape (C, 2, 2, O), got {w.shape}")
        args, rq = self._layer_args(x, w, wq, bias, out_qparams, w.shape[0], "conv_transpose2x2", name, {})
        packed = PackedConvTranspose2x2(w, wq.zero_point, bias, rq, input_bits=_input_bits(x))
        step = S.Deconv2x2Step(*args, packed=packed, in_zero_point=int(x.qparams.zero_point))
        return self._add(step, 4, w.shape[3])

    def linear(
        self,
        x: TensorRef,
        w_q: np.ndarray,
        w_qparams: QParams,
        bias_q: np.ndarray | None,
        out_qparams: QParams,
        name: str | None = None,
    ) -> TensorRef:
        """Linear on x [N, F] with w_q [O, F] (torch layout)."""
        x = self._ref(x, "x", 2)
        w, wq, bias = self._weights(w_q, w_qparams, bias_q, 2, 0)
        args, rq = self._layer_args(x, w, wq, bias, out_qparams, w.shape[1], "linear", name, {})
        gemm = PackedGemm(np.ascontiguousarray(w.T), wq.zero_point, bias, rq, input_bits=_input_bits(x))
        step = S.LinearStep(*args, packed=gemm, in_zero_point=int(x.qparams.zero_point))
        return self._add(step, 2, w.shape[0])

    def add(self, x1: TensorRef, x2: TensorRef, out_qparams: QParams, name: str | None = None) -> TensorRef:
        """Elementwise (residual) add of two tensors of one shape (docs/model.md eq. (M3))."""
        a, b = self._ref(x1, "x1"), self._ref(x2, "x2")
        if a.ndim is not None and b.ndim is not None and a.ndim != b.ndim:
            raise ValueError(f"x1 and x2 must have one rank, got {a.ndim} and {b.ndim}")
        if a.channels is not None and b.channels is not None and a.channels != b.channels:
            raise ValueError(f"x1 and x2 must have one shape, got {a.channels} and {b.channels} channels")
        out = _act_qparams(out_qparams, "out_qparams")
        name = self._name(name, "add")
        step = S.AddStep(name, (a.index, b.index), out, {}, {}, in_qparams=(a.qparams, b.qparams))
        return self._add(step, a.ndim or b.ndim, a.channels or b.channels)

    def cat(self, xs: Sequence[TensorRef], out_qparams: QParams, name: str | None = None) -> TensorRef:
        """Concatenation along channels (the last axis); inputs off the output's grid are rescaled (eq. (M4))."""
        if not isinstance(xs, (list, tuple)):
            raise TypeError(f"xs must be a list of tensors, got {type(xs).__name__}")
        if not xs:
            raise ValueError("xs must hold at least one tensor")
        refs = [self._ref(x, f"xs[{i}]") for i, x in enumerate(xs)]
        ranks = {r.ndim for r in refs if r.ndim is not None}
        if len(ranks) > 1:
            raise ValueError(f"xs must have one rank, got {sorted(ranks)}")
        out = _act_qparams(out_qparams, "out_qparams")
        name = self._name(name, "cat")
        step = S.CatStep(name, tuple(r.index for r in refs), out, {}, {}, in_qparams=[r.qparams for r in refs])
        chans = [r.channels for r in refs]
        total = None if any(c is None for c in chans) else sum(c for c in chans if c is not None)
        return self._add(step, ranks.pop() if ranks else None, total)

    def max_pool2d(
        self, x: TensorRef, kernel_size: int, stride: int | None = None, padding: int = 0, name: str | None = None
    ) -> TensorRef:
        """Max pool on the integers (floor mode); the output keeps x's qparams. stride=None means kernel_size."""
        x = self._ref(x, "x", 4)
        k = _positive_int(kernel_size, "kernel_size")
        st = k if stride is None else _positive_int(stride, "stride")
        p = V.int_scalar(padding, "padding")
        if not 0 <= p <= k // 2:
            raise ValueError(f"padding must be in [0, kernel_size // 2] = [0, {k // 2}], got {p}")
        name = self._name(name, "max_pool2d")
        step = S.MaxPoolStep(name, (x.index,), x.qparams, {"kernel_size": k, "stride": st, "padding": p}, {})
        return self._add(step, 4, x.channels)

    def avg_pool2d(
        self, x: TensorRef, kernel_size: int, stride: int | None, out_qparams: QParams, name: str | None = None
    ) -> TensorRef:
        """Average pool without padding (floor mode), rescaled onto out_qparams (eq. (M5))."""
        x = self._ref(x, "x", 4)
        k = _positive_int(kernel_size, "kernel_size")
        if k * k > R.MAX_POOL_COUNT:
            raise ValueError(f"kernel_size must be at most {int(R.MAX_POOL_COUNT**0.5)}, got {k}")
        st = k if stride is None else _positive_int(stride, "stride")
        out = _act_qparams(out_qparams, "out_qparams")
        name = self._name(name, "avg_pool2d")
        step = S.AvgPoolStep(name, (x.index,), out, {"kernel_size": k, "stride": st}, {}, in_qparams=x.qparams)
        return self._add(step, 4, x.channels)

    def global_avg_pool(self, x: TensorRef, out_qparams: QParams, name: str | None = None) -> TensorRef:
        """Mean over H and W: NHWC -> [N, 1, 1, C], rescaled onto out_qparams (eq. (M5))."""
        x = self._ref(x, "x", 4)
        out = _act_qparams(out_qparams, "out_qparams")
        name = self._name(name, "global_avg_pool")
        step = S.GlobalAvgPoolStep(name, (x.index,), out, {}, {}, in_qparams=x.qparams)
        return self._add(step, 4, x.channels)

    def flatten(self, x: TensorRef, name: str | None = None) -> TensorRef:
        """NHWC [N, H, W, C] -> [N, H*W*C] in (h, w, c) order (a view)."""
        x = self._ref(x, "x", 4)
        name = self._name(name, "flatten")
        return self._add(S.FlattenStep(name, (x.index,), x.qparams, {}, {}), 2, None)

    def lut(self, x: TensorRef, table: np.ndarray, out_qparams: QParams, name: str | None = None) -> TensorRef:
        """Elementwise table lookup: out = table[q - lowest value of x's dtype] (256 entries, out dtype)."""
        x = self._ref(x, "x")
        out = _act_qparams(out_qparams, "out_qparams")
        if not isinstance(table, np.ndarray):
            raise TypeError(f"table must be a numpy.ndarray, got {type(table).__name__}")
        if table.dtype.name != out.dtype:
            raise TypeError(f"table must have the output dtype {out.dtype}, got {table.dtype}")
        if table.shape != (256,):
            raise ValueError(f"table must have shape (256,), got {table.shape}")
        if table.min() < out.qmin or table.max() > out.qmax:
            raise ValueError(f"table values must lie in out_qparams' range [{out.qmin}, {out.qmax}]")
        name = self._name(name, "lut")
        step = S.LutStep(name, (x.index,), out, {}, {"table": np.array(table)}, in_dtype=x.qparams.dtype)
        return self._add(step, x.ndim, x.channels)

    def requantize(self, x: TensorRef, out_qparams: QParams, name: str | None = None) -> TensorRef:
        """The same real values on new qparams (eq. (M2)); free when the grids already agree."""
        x = self._ref(x, "x")
        out = _act_qparams(out_qparams, "out_qparams")
        name = self._name(name, "requantize")
        step = S.RescaleStep(name, (x.index,), out, {}, {}, in_qparams=x.qparams)
        return self._add(step, x.ndim, x.channels)

    def float_op(
        self,
        inputs: Sequence[TensorRef],
        fn: Callable[[list[np.ndarray]], Any],
        out_qparams: QParams,
        name: str | None = None,
    ) -> TensorRef:
        """Fallback for ops without an integer form: fn(float32 NCHW arrays) -> float32 NCHW array.
        A model holding one runs but cannot be saved."""
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(f"inputs must be a list of tensors, got {type(inputs).__name__}")
        if not inputs:
            raise ValueError("inputs must hold at least one tensor")
        refs = [self._ref(x, f"inputs[{i}]") for i, x in enumerate(inputs)]
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        out = _act_qparams(out_qparams, "out_qparams")
        name = self._name(name, "float_op")
        step = S.FloatOpStep(
            name, tuple(r.index for r in refs), out, {}, {}, fn=fn, in_qparams=[r.qparams for r in refs]
        )
        return self._add(step, None, None)

    def output(self, y: TensorRef, name: str | None = None) -> None:
        """Mark y as a model output: dequantized to float32 (NCHW for 4-D tensors)."""
        y = self._ref(y, "y")
        if name is None:
            name = f"output_{len(self._outputs)}"
        if not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        if any(n == name for n, _ in self._outputs):
            raise ValueError(f"output name {name!r} is already used")
        self._outputs.append((name, y.index))

    def build(self) -> QuantizedModel:
        """The QuantizedModel of the steps so far (the builder may go on and build again)."""
        if not self._inputs:
            raise ValueError("the model has no input: call input() first")
        if not self._outputs:
            raise ValueError("the model has no output: call output() first")
        return QuantizedModel(list(self._steps), list(self._inputs), list(self._outputs), self.rounding)
