"""QuantizedModel: runs a flat list of integer steps over buffers planned once per input shape."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .. import _backend
from ..qparams import QParams
from . import native
from . import steps as S
from .fileformat import save_model

_MAX_PLANS = 8  # distinct input shapes kept; the oldest plan is dropped beyond this


class StepInfo(NamedTuple):
    """Introspection of one step: its name, op, input step names and output qparams."""

    name: str
    op: str
    inputs: tuple[str, ...]
    qparams: QParams


class _Plan:
    """Buffers (one per step output, views where a step is a view), the run function of each step that has
    one (`fns`, in order), and what a call runs (`runs`: the same with consecutive native steps merged into
    one native program each)."""

    def __init__(self, bufs: list[np.ndarray], fns: list[Callable[[], object]]) -> None:
        self.bufs = bufs
        self.fns = fns
        self.runs = native.programs(fns)


def _as_float_array(x: Any, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) and hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()  # a torch tensor, without importing torch
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} must be a float NumPy array or a torch tensor, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{what} must hold floats, got dtype {x.dtype}")
    if x.ndim not in (2, 4):
        raise ValueError(f"{what} must be 4-D NCHW or 2-D [N, F], got shape {x.shape}")
    return x


class QuantizedModel:
    """A quantized model (made by ModelBuilder, qkern.torch.convert or qkern.load): float NCHW in, float32
    NCHW out, integer NHWC inside. Calls are serialised by a lock (buffers are reused between calls)."""

    def __init__(self, steps: list[S.Step], inputs: list[int], outputs: list[tuple[str, int]], rounding: str) -> None:
        self._steps = steps
        self._inputs = inputs
        self._outputs = outputs
        self.rounding = rounding
        self._index = {s.name: i for i, s in enumerate(steps)}
        # Per input: the arguments of _core.quantize_to_nhwc after x (eq. (4): f32(1 / scale), zero point,
        # qmin, qmax as floats), then the dtype; per output: (f32 scale, zero point) for dequantize_to_nchw.
        self._quant_args = {
            i: (
                float(np.float32(1.0) / np.float32(q.scale)),
                float(q.zero_point),
                float(q.qmin),
                float(q.qmax),
                q.dtype,
            )
            for i, q in ((i, steps[i].qparams) for i in inputs)
        }
        self._dequant_args = {
            j: (float(np.float32(q.scale)), int(q.zero_point)) for j, q in ((j, steps[j].qparams) for _, j in outputs)
        }
        self._plans: dict[tuple[tuple[int, ...], ...], _Plan] = {}
        self._lock = threading.Lock()

    # -- introspection --------------------------------------------------------------------------------
    @property
    def steps(self) -> tuple[StepInfo, ...]:
        return tuple(
            StepInfo(s.name, s.op, tuple(self._steps[i].name for i in s.inputs), s.qparams) for s in self._steps
        )

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self._steps[i].name for i in self._inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self._outputs)

    def qparams(self, name: str) -> QParams:
        """The QParams of a step's output."""
        return self._steps[self._step_index(name)].qparams

    def _step_index(self, name: Any) -> int:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if name not in self._index:
            raise ValueError(f"name {name!r} is not a step of this model")
        return self._index[name]

    def __repr__(self) -> str:
        return f"QuantizedModel({len(self._steps)} steps, inputs={self.input_names}, outputs={self.output_names})"

    # -- running ----------------------------------------------------------------------------------------
    def _check_count(self, xs: tuple[Any, ...]) -> None:
        if len(xs) != len(self._inputs):
            raise TypeError(f"the model takes {len(self._inputs)} input(s), got {len(xs)}")

    def _floats(self, xs: tuple[Any, ...]) -> list[np.ndarray]:
        self._check_count(xs)
        out = []
        for k, (i, x) in enumerate(zip(self._inputs, xs)):
            if type(x) is np.ndarray and x.dtype.char == "f" and x.ndim in (2, 4) and x.flags.c_contiguous:
                out.append(x)  # the common case, checked without building the error text
                continue
            xf = _as_float_array(x, f"input {k} ({self._steps[i].name!r})")
            out.append(np.ascontiguousarray(xf, dtype=np.float32))
        return out

    def _quantize_into(self, i: int, xf: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        """Input step i: float32 NCHW (or [N, F]) -> integers NHWC, into `out` (or a new array)."""
        inv, zp, qmin, qmax, dtype = self._quant_args[i]
        if out is None:
            shape = (xf.shape[0], *xf.shape[2:], xf.shape[1]) if xf.ndim == 4 else xf.shape
            out = np.empty(shape, dtype=dtype)
        if native.use_native():
            if xf.ndim == 4:
                nan = _backend.core.quantize_to_nhwc(xf, inv, zp, qmin, qmax, out)
            else:  # [N, F] is NCHW with H = W = 1
                n, f = xf.shape
                nan = _backend.core.quantize_to_nhwc(
                    xf.reshape(n, f, 1, 1), inv, zp, qmin, qmax, out.reshape(n, 1, 1, f)
                )
            if nan:
                raise ValueError("x contains NaN, which has no quantized value")
        else:
            np.copyto(out, self._steps[i].qparams.quantize(S.to_nhwc(xf)))
        return out

    def _dequantize(self, i: int, q: np.ndarray) -> np.ndarray:
        if native.use_native():
            scale, zp = self._dequant_args[i]
            if q.ndim == 4:
                out = np.empty((q.shape[0], q.shape[3], q.shape[1], q.shape[2]), dtype=np.float32)
                _backend.core.dequantize_to_nchw(q, scale, zp, out)
                return out
            return _backend.core.dequantize_per_tensor(q, scale, zp)  # [N, F]: the same layout in and out
        return S.to_nchw(self._steps[i].qparams.dequantize(q))

    @staticmethod
    def _key(shapes: list[tuple[int, ...]]) -> tuple[Any, ...]:
        # A plan binds native or reference calls and weights packed for one ISA: both are part of its key.
        return (tuple(shapes), _backend.get_backend(), _backend.isa_epoch)

    def _plan(self, qs: list[np.ndarray]) -> _Plan:
        """First call with these shapes: plan each step and run it at once (a float_op learns its output
        shape only by running). A failure leaves no plan behind."""
        bufs: list[np.ndarray] = [np.empty(0, np.uint8)] * len(self._steps)
        for i, q in zip(self._inputs, qs):
            bufs[i] = q
        fns: list[Callable[[], object]] = []
        for idx, step in enumerate(self._steps):
            if isinstance(step, S.InputStep):
                continue
            ins = [bufs[j] for j in step.inputs]
            out, fn = step.plan(ins)
            bufs[idx] = out
            if fn is not None:
                fn()
                fns.append(step.fast_fn(ins, out) or fn)
        plan = _Plan(bufs, fns)
        if len(self._plans) >= _MAX_PLANS:
            self._plans.pop(next(iter(self._plans)))
        self._plans[self._key([q.shape for q in qs])] = plan
        return plan

    def _run_floats(self, fs: list[np.ndarray]) -> _Plan:
        shapes = [(f.shape[0], *f.shape[2:], f.shape[1]) if f.ndim == 4 else f.shape for f in fs]
        plan = self._plans.get(self._key(shapes))
        if plan is None:
            return self._plan([self._quantize_into(i, f, None) for i, f in zip(self._inputs, fs)])
        for i, f in zip(self._inputs, fs):
            self._quantize_into(i, f, plan.bufs[i])
        for fn in plan.runs:
            fn()
        return plan

    def _run_ints(self, qs: list[np.ndarray]) -> _Plan:
        plan = self._plans.get(self._key([q.shape for q in qs]))
        if plan is None:
            return self._plan([np.ascontiguousarray(q).copy() for q in qs])
        for i, q in zip(self._inputs, qs):
            np.copyto(plan.bufs[i], q)
        for fn in plan.runs:
            fn()
        return plan

    @staticmethod
    def _single_or_tuple(outs: list[np.ndarray]) -> Any:
        return outs[0] if len(outs) == 1 else tuple(outs)

    def __call__(self, *xs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """Float32 NCHW (or [N, F]) NumPy arrays or torch tensors in; float32 NumPy out (a tuple for several)."""
        fs = self._floats(xs)
        with self._lock:
            plan = self._run_floats(fs)
            outs = [self._dequantize(i, plan.bufs[i]) for _, i in self._outputs]
        return self._single_or_tuple(outs)

    def run_int(self, *xqs: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        """Quantized NHWC (or [N, F]) inputs on the inputs' qparams in; integer outputs (NHWC) out."""
        self._check_count(xqs)
        qs = []
        for k, (i, q) in enumerate(zip(self._inputs, xqs)):
            qp = self._steps[i].qparams
            what = f"input {k} ({self._steps[i].name!r})"
            if not isinstance(q, np.ndarray):
                raise TypeError(f"{what} must be a numpy.ndarray, got {type(q).__name__}")
            if q.dtype.name != qp.dtype:
                raise TypeError(f"{what} must have dtype {qp.dtype}, got {q.dtype}")
            if q.ndim not in (2, 4):
                raise ValueError(f"{what} must be 4-D NHWC or 2-D [N, F], got shape {q.shape}")
            qs.append(q)
        with self._lock:
            plan = self._run_ints(qs)
            outs = [plan.bufs[i].copy() for _, i in self._outputs]
        return self._single_or_tuple(outs)

    def trace(self, *xs: Any) -> dict[str, np.ndarray]:
        """Every step's integer output (NHWC or [N, F]) for float inputs, by step name, in step order."""
        fs = self._floats(xs)
        with self._lock:
            plan = self._run_floats(fs)
            return {s.name: plan.bufs[i].copy() for i, s in enumerate(self._steps)}

    # -- files -------------------------------------------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write the model to `path` (a zip of .npy arrays and one JSON document; see docs/model.md)."""
        save_model(self._steps, self._inputs, self._outputs, self.rounding, path)
