"""The steps of a QuantizedModel: each holds its precomputed operands and plans itself for an input shape.

A step produces one integer tensor. `plan(ins)` receives the step's input buffers (NHWC or [N, F]) for one
input shape and returns (output buffer, run function or None); the run function reads the input buffers and
writes the output buffer in place, so a plan is a flat list of calls with no per-call decisions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from ..packed import PackedGemm
from ..packed_conv import PackedConv3x3, PackedConvTranspose2x2
from ..qparams import QParams
from ..reference import model_ops as R
from ..requant import Requant
from . import native

RunFn = Callable[[], object]


def layer_requant(in_qp: QParams, w_qp: QParams, out_qp: QParams, rounding: str) -> Requant:
    """The Requant of a conv/linear layer: real multiplier s_in * s_w[o] / s_out, clamp out_qp.qmin..qmax."""
    base = Requant.from_scales(
        in_qp.scale, w_qp.scale, out_qp.scale, out_qp.zero_point, dtype=out_qp.dtype, rounding=rounding
    )
    return Requant(
        base.multiplier,
        base.shift,
        out_qp.zero_point,
        dtype=out_qp.dtype,
        qmin=out_qp.qmin,
        qmax=out_qp.qmax,
        rounding=rounding,
    )


class Step:
    """One node: `op` (the builder method and file-format name), unique `name`, input tensor ids, output
    qparams, the builder arguments it was made from (`attrs`, JSON-able; `arrays`, NumPy) for saving."""

    op = ""

    def __init__(
        self, name: str, inputs: tuple[int, ...], qparams: QParams, attrs: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        self.name = name
        self.inputs = inputs
        self.qparams = qparams
        self.attrs = attrs
        self.arrays = arrays

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        raise NotImplementedError

    def plan(self, ins: list[np.ndarray]) -> tuple[np.ndarray, RunFn | None]:
        out = np.empty(self.out_shape([x.shape for x in ins]), dtype=self.qparams.dtype)
        return out, self.bind(ins, out)

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        raise NotImplementedError

    def fast_fn(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn | None:
        """After one run through `plan`'s function (which packs weights for the current ISA if needed): a
        cheaper function for the same buffers that skips the public API's checks, or None."""
        return None

    def _one_input(self, shapes: list[tuple[int, ...]], ndim: int, channels: int | None = None) -> tuple[int, ...]:
        """The shape of the step's one input, checked for rank `ndim` and, when given, `channels` channels."""
        (s,) = shapes
        self._need_ndim(s, ndim)
        if channels is not None:
            self._need_channels(s, channels)
        return s

    def _need_ndim(self, shape: tuple[int, ...], ndim: int) -> None:
        if len(shape) != ndim:
            raise ValueError(f"step {self.name!r} ({self.op}) needs a {ndim}-D input, got shape {shape}")

    def _need_channels(self, shape: tuple[int, ...], channels: int) -> None:
        if shape[-1] != channels:
            raise ValueError(f"step {self.name!r} ({self.op}) needs {channels} input channels, got shape {shape}")


class InputStep(Step):
    """Float NCHW (or [N, F]) -> quantized NHWC (or [N, F]); filled by the model before the plan runs."""

    op = "input"

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        raise AssertionError("the model sizes input buffers")


class _PackedStep(Step):
    """A step that runs packed weights on its one input; `zp_arg` names the packed call's zero-point keyword."""

    zp_arg = ""

    def __init__(self, *args: Any, packed: Any, in_zero_point: int) -> None:
        super().__init__(*args)
        self.packed = packed
        self.zp = in_zero_point

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        packed, x, kwargs = self.packed, ins[0], {self.zp_arg: self.zp}
        return lambda: packed(x, out=out, **kwargs)

    def fast_fn(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn | None:
        return _direct(self.packed, ins[0], self.zp, out)


class Conv3x3Step(_PackedStep):
    op = "conv2d"
    zp_arg = "x_zero_point"
    packed: PackedConv3x3

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        s = self._one_input(shapes, 4, self.packed.in_channels)
        st, p = self.packed.stride, self.packed.padding
        if s[1] + 2 * p < 3 or s[2] + 2 * p < 3:
            raise ValueError(f"step {self.name!r}: input {s} is smaller than the 3x3 window")
        return (s[0], (s[1] + 2 * p - 3) // st + 1, (s[2] + 2 * p - 3) // st + 1, self.packed.out_channels)


def _direct(packed: Any, x: np.ndarray, zp: int, out: np.ndarray) -> RunFn | None:
    """The packed weights' native run on planned buffers (contiguous, shapes checked once by the first run)."""
    core = getattr(packed, "_core", None)
    if core is None or not native.use_native():
        return None
    return functools.partial(core.run, x, zp, out)


class Conv1x1Step(_PackedStep):
    """1x1 conv as a GEMM on the NHWC buffer viewed as [N*H*W, C]; stride 2 gathers every other pixel first."""

    op = "conv2d"
    packed: PackedGemm

    def __init__(self, *args: Any, packed: PackedGemm, in_zero_point: int, stride: int) -> None:
        super().__init__(*args, packed=packed, in_zero_point=in_zero_point)
        self.stride = stride

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        s = self._one_input(shapes, 4, self.packed.k)
        st = self.stride
        return (s[0], (s[1] - 1) // st + 1, (s[2] - 1) // st + 1, self.packed.n)

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        packed, zp, c = self.packed, self.zp, self.packed.k
        out2 = out.reshape(-1, out.shape[-1])
        if self.stride == 1:
            a = ins[0].reshape(-1, c)
            return lambda: packed(a, a_zero_point=zp, out=out2)
        x = ins[0]
        gathered = np.empty((*out.shape[:3], c), dtype=x.dtype)
        strided = x[:, :: self.stride, :: self.stride, :]
        a2 = gathered.reshape(-1, c)

        def run() -> None:
            np.copyto(gathered, strided)
            packed(a2, a_zero_point=zp, out=out2)

        return run

    def fast_fn(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn | None:
        out2 = out.reshape(-1, out.shape[-1])
        if self.stride == 1:
            return _direct(self.packed, ins[0].reshape(-1, self.packed.k), self.zp, out2)
        gathered = np.empty((*out.shape[:3], self.packed.k), dtype=ins[0].dtype)
        gemm = _direct(self.packed, gathered.reshape(-1, self.packed.k), self.zp, out2)
        if gemm is None:
            return None
        strided = ins[0][:, :: self.stride, :: self.stride, :]

        def run() -> None:
            np.copyto(gathered, strided)
            gemm()

        return run


class Deconv2x2Step(_PackedStep):
    op = "conv_transpose2x2"
    zp_arg = "x_zero_point"
    packed: PackedConvTranspose2x2

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        s = self._one_input(shapes, 4, self.packed.in_channels)
        return (s[0], 2 * s[1], 2 * s[2], self.packed.out_channels)


class LinearStep(_PackedStep):
    op = "linear"
    zp_arg = "a_zero_point"
    packed: PackedGemm

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        s = self._one_input(shapes, 2, self.packed.k)
        return (s[0], self.packed.n)


class RescaleStep(Step):
    """requantize: the same real values on new qparams (eq. (M2)); a view when nothing changes."""

    op = "requantize"

    def __init__(self, *args: Any, in_qparams: QParams) -> None:
        super().__init__(*args)
        self.identity = same_grid(in_qparams, self.qparams)
        self.params = _rescale_params(
            in_qparams, R.rescale_multiplier(in_qparams.scale, self.qparams.scale), self.qparams
        )

    def plan(self, ins: list[np.ndarray]) -> tuple[np.ndarray, RunFn | None]:
        if self.identity:
            return ins[0], None
        return super().plan(ins)

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return shapes[0]

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        return native.rescale_fn(ins[0], out, self.params)


def _rescale_params(
    in_qp: QParams, multiplier: tuple[int, int], out_qp: QParams
) -> tuple[int, int, int, int, int, int, str]:
    """The native rescale kernels' parameters: (in zero point, multiplier, shift, out zero point, qmin, qmax, dtype)."""
    m, sh = multiplier
    return (int(in_qp.zero_point), m, sh, int(out_qp.zero_point), out_qp.qmin, out_qp.qmax, out_qp.dtype)


def same_grid(a: QParams, b: QParams) -> bool:
    """True when integers on grid `a` are already valid, unchanged integers on grid `b`."""
    return (
        a.dtype == b.dtype
        and np.float32(a.scale) == np.float32(b.scale)
        and int(a.zero_point) == int(b.zero_point)
        and b.qmin <= a.qmin
        and a.qmax <= b.qmax
    )


class AddStep(Step):
    op = "add"

    def __init__(self, *args: Any, in_qparams: tuple[QParams, QParams]) -> None:
        super().__init__(*args)
        a, b = in_qparams
        q = self.qparams
        m1, sh1, m2, sh2, mo, sho = R.add_multipliers(a.scale, b.scale, q.scale)
        self.params = (
            int(a.zero_point),
            m1,
            sh1,
            int(b.zero_point),
            m2,
            sh2,
            mo,
            sho,
            int(q.zero_point),
            q.qmin,
            q.qmax,
            q.dtype,
        )

        self.pair_table = native.add_pair_table(a.dtype, b.dtype, self.params)

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        if shapes[0] != shapes[1]:
            raise ValueError(f"step {self.name!r} (add) needs inputs of one shape, got {shapes[0]} and {shapes[1]}")
        return shapes[0]

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        return native.add_fn(ins[0], ins[1], out, self.params, self.pair_table)


class CatStep(Step):
    """Concatenation along channels: parts on the output's grid are copied, the others rescaled into place."""

    op = "cat"

    def __init__(self, *args: Any, in_qparams: list[QParams]) -> None:
        super().__init__(*args)
        q = self.qparams
        self.parts: list[tuple[int, int, int, int, int, int, str] | None] = []
        for p in in_qparams:
            if same_grid(p, q):
                self.parts.append(None)
            else:
                self.parts.append(_rescale_params(p, R.rescale_multiplier(p.scale, q.scale), q))

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        first = shapes[0]
        for s in shapes[1:]:
            if len(s) != len(first) or s[:-1] != first[:-1]:
                raise ValueError(f"step {self.name!r} (cat) needs inputs that differ only in channels, got {shapes}")
        return (*first[:-1], sum(s[-1] for s in shapes))

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        fns: list[RunFn] = []
        start = 0
        for x, params in zip(ins, self.parts):
            if params is None:
                fns.append(native.copy_fn(x, out, start))
            else:
                fns.append(native.rescale_fn(x, out, params, start))
            start += x.shape[-1]
        return native.Parts(fns)


class MaxPoolStep(Step):
    op = "max_pool2d"

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        s = self._one_input(shapes, 4)
        k, st, p = self.attrs["kernel_size"], self.attrs["stride"], self.attrs["padding"]
        if min(s[1], s[2]) < 1 or s[1] + 2 * p < k or s[2] + 2 * p < k:
            raise ValueError(f"step {self.name!r}: input {s} is smaller than the {k}x{k} window")
        return (s[0], R.pool_output_size(s[1], k, st, p), R.pool_output_size(s[2], k, st, p), s[3])

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        return native.max_pool_fn(ins[0], out, self.attrs["kernel_size"], self.attrs["stride"], self.attrs["padding"])


class AvgPoolStep(Step):
    op = "avg_pool2d"

    def __init__(self, *args: Any, in_qparams: QParams) -> None:
        super().__init__(*args)
        self.in_qparams = in_qparams
        k = self.attrs["kernel_size"]
        self.params = _rescale_params(
            in_qparams, R.avg_multiplier(in_qparams.scale, k * k, self.qparams.scale), self.qparams
        )

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        s = self._one_input(shapes, 4)
        k, st = self.attrs["kernel_size"], self.attrs["stride"]
        if s[1] < k or s[2] < k:
            raise ValueError(f"step {self.name!r}: input {s} is smaller than the {k}x{k} window")
        return (s[0], R.pool_output_size(s[1], k, st, 0), R.pool_output_size(s[2], k, st, 0), s[3])

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        return native.avg_pool_fn(ins[0], out, self.attrs["kernel_size"], self.attrs["stride"], self.params)


class GlobalAvgPoolStep(Step):
    op = "global_avg_pool"

    def __init__(self, *args: Any, in_qparams: QParams) -> None:
        super().__init__(*args)
        self.in_qparams = in_qparams

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        s = self._one_input(shapes, 4)
        if s[1] * s[2] > R.MAX_POOL_COUNT:
            raise ValueError(f"step {self.name!r}: a global pool over {s[1] * s[2]} pixels exceeds 2^23")
        return (s[0], 1, 1, s[3])

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        x = ins[0]
        q, iq = self.qparams, self.in_qparams
        params = _rescale_params(iq, R.avg_multiplier(iq.scale, x.shape[1] * x.shape[2], q.scale), q)
        return native.global_avg_pool_fn(x, out, params)


class FlattenStep(Step):
    """NHWC [N, H, W, C] -> [N, H*W*C] in (h, w, c) order: a view of the input buffer."""

    op = "flatten"

    def plan(self, ins: list[np.ndarray]) -> tuple[np.ndarray, RunFn | None]:
        self._need_ndim(ins[0].shape, 4)
        return ins[0].reshape(ins[0].shape[0], -1), None


class LutStep(Step):
    """One gather: out = table[q - lowest of q's dtype] (eq. (M7))."""

    op = "lut"

    def __init__(self, *args: Any, in_dtype: str) -> None:
        super().__init__(*args)
        table = self.arrays["table"]
        # Indexing by the input's bytes read as uint8 is the same gather with the table rotated for int8.
        self.byte_table = np.roll(table, 128) if in_dtype == "int8" else table.copy()

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return shapes[0]

    def bind(self, ins: list[np.ndarray], out: np.ndarray) -> RunFn:
        x, table = ins[0], self.arrays["table"]
        if native.use_native():
            return functools.partial(np.take, self.byte_table, x.view(np.uint8), out=out)

        def run() -> None:
            out[...] = R.lut(x, table)

        return run


class FloatOpStep(Step):
    """Fallback: dequantize the inputs to float32 NCHW, call fn, quantize its NCHW result (not saveable)."""

    op = "float_op"

    def __init__(self, *args: Any, fn: Callable[[list[np.ndarray]], Any], in_qparams: list[QParams]) -> None:
        super().__init__(*args)
        self.fn = fn
        self.in_qparams = in_qparams

    def _compute(self, ins: list[np.ndarray]) -> np.ndarray:
        floats = [to_nchw(qp.dequantize(x)) for qp, x in zip(self.in_qparams, ins)]
        result = self.fn(floats)
        try:
            r = np.asarray(result, dtype=np.float32)
        except (TypeError, ValueError):
            raise TypeError(
                f"step {self.name!r}: fn must return a float32 array, got {type(result).__name__}"
            ) from None
        if r.ndim not in (2, 4):
            raise ValueError(f"step {self.name!r}: fn must return a 2-D or 4-D (NCHW) array, got shape {r.shape}")
        return self.qparams.quantize(to_nhwc(r))

    def plan(self, ins: list[np.ndarray]) -> tuple[np.ndarray, RunFn | None]:
        out = self._compute(ins)  # the first run of a new input shape learns the output shape here

        def run() -> None:
            r = self._compute(ins)
            if r.shape != out.shape:
                raise ValueError(f"step {self.name!r}: fn returned shape {r.shape}, earlier {out.shape}")
            np.copyto(out, r)

        return out, run


def to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else np.ascontiguousarray(x)


def to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x
