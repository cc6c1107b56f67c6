"""PackedConv3x3 and PackedConvTranspose2x2: conv weights packed once (layout, sums, bias, requant)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, ops, reference
from . import _validate as V
from ._pickling import RepackOnLoad
from .requant import Requant


class _PackedConv(RepackOnLoad):
    """Shared life cycle: own a read-only copy of the weights, pack for the current ISA, repack when
    `set_isa` changes it, fall back to the reference backend when asked (or when `_core` is missing);
    pickle and deep-copy by packing again on load."""

    out_channels: int
    in_channels: int

    def _own(self, w: np.ndarray, w_zero_point: Any, bias: Any, requant: Any) -> None:
        self.w = np.array(w, order="C")  # own copy: later changes to the caller's array do not leak in
        self.w.setflags(write=False)
        self.w_zero_point = V.zero_point(w_zero_point, w.dtype.name, "w_zero_point", channels=self.out_channels)
        self.bias = None if bias is None else np.array(V.bias(bias, self.out_channels))
        self.requant = ops._requant(requant, self.out_channels)
        self.out_dtype = np.dtype(np.int32) if self.requant is None else np.dtype(V.np_dtype(self.requant.dtype))
        self._core: Any = None
        self._isa_epoch = -1
        if _backend.core is not None:
            self._core = self._make_core(_backend.core)

    def _make_core(self, core: Any) -> Any:
        raise NotImplementedError

    def _core_args(self) -> tuple[Any, ...]:
        o = self.out_channels
        zp, stage = ops._zp_vector(self.w_zero_point, o), ops._stage(self.requant, o)
        return (self.w, zp, self.bias, stage, self.out_dtype.name)

    @property
    def isa(self) -> str | None:
        """The ISA the weights are packed for (None without the native backend)."""
        return None if self._core is None else self._core.isa

    def _run(self, x: np.ndarray, x_zero_point: Any, out: Any, spatial: tuple[int, ...]) -> np.ndarray:
        # The hot path checks inline (performance.md R2); anything unusual gets the full validator's error.
        # Layout, writeability and overlap of `out` are checked by the binding (same messages).
        xz = x_zero_point
        if type(xz) is not int or not ((0 <= xz <= 255) if x.dtype.char == "B" else (-128 <= xz <= 127)):
            xz = V.zero_point(x_zero_point, V.qname(x), "x_zero_point")
        shape = (*spatial, self.out_channels)
        if out is None:
            out = np.empty(shape, dtype=self.out_dtype)
        elif type(out) is not np.ndarray or out.dtype != self.out_dtype or out.shape != shape:
            out = ops._out(out, shape, self.requant, (x,))
        core = _backend.core
        if core is None or _backend.get_backend() == "reference":
            ops._out(out, shape, self.requant, (x,))
            out[...] = self._reference(x, xz)
            return out
        if self._isa_epoch != _backend.isa_epoch:
            if self._core.isa != core.get_isa():
                self._core = self._make_core(core)
            self._isa_epoch = _backend.isa_epoch
        if not x.flags.c_contiguous:
            ops._out(out, shape, self.requant, (x,))  # the overlap check, before the copy hides it
            x = np.ascontiguousarray(x)
        self._core.run(x, xz, out)  # checks that out does not overlap x (cheaper in C++)
        return out

    def _reference(self, x: np.ndarray, xz: int) -> np.ndarray:
        raise NotImplementedError


class PackedConv3x3(_PackedConv):
    """conv3x3 with fixed weights: w[O, 3, 3, C] (OHWI), its zero point(s), int32 bias, Requant, stride and
    padding are packed once; `packed(x, x_zero_point=...)` runs only the kernel. Same results as
    `qkern.conv3x3`."""

    def __init__(
        self,
        w: np.ndarray,
        w_zero_point: int | np.ndarray = 0,
        bias: np.ndarray | None = None,
        requant: Requant | None = None,
        *,
        stride: int = 1,
        padding: int = 1,
    ) -> None:
        w, self.stride, self.padding = ops.check_conv3x3_layer(w, stride, padding)
        self.out_channels, self.in_channels = w.shape[0], w.shape[3]
        self._own(w, w_zero_point, bias, requant)

    def _make_core(self, core: Any) -> Any:
        return core.PackedConv3x3(*self._core_args(), self.stride, self.padding)

    def _reference(self, x: np.ndarray, xz: int) -> np.ndarray:
        return reference.conv3x3(x, self.w, self.stride, self.padding, xz, self.w_zero_point, self.bias, self.requant)

    def __call__(self, x: np.ndarray, *, x_zero_point: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        s, p = self.stride, self.padding
        if (
            type(x) is np.ndarray
            and x.ndim == 4
            and x.dtype.char in "bB"
            and x.shape[3] == self.in_channels
            and x.shape[1] + 2 * p >= 3
            and x.shape[2] + 2 * p >= 3
        ):
            n, h, w = x.shape[:3]
            spatial: tuple[int, ...] = (n, (h + 2 * p - 3) // s + 1, (w + 2 * p - 3) // s + 1)
        else:
            x, spatial = ops.check_conv3x3_input(x, self.in_channels, s, p)
        return self._run(x, x_zero_point, out, spatial)

    def __repr__(self) -> str:
        return (
            f"PackedConv3x3(O={self.out_channels}, C={self.in_channels}, stride={self.stride}, "
            f"padding={self.padding}, w={self.w.dtype}, isa={self.isa!r}, requant={self.requant!r})"
        )


class PackedConvTranspose2x2(_PackedConv):
    """conv_transpose2x2 (stride 2) with fixed weights: w[C, 2, 2, O] (IHWO), its zero point(s), int32
    bias and Requant (per-tensor or per-output-channel) are packed once. Same results as
    `qkern.conv_transpose2x2`."""

    def __init__(
        self,
        w: np.ndarray,
        w_zero_point: int | np.ndarray = 0,
        bias: np.ndarray | None = None,
        requant: Requant | None = None,
    ) -> None:
        w = ops.check_deconv2x2_layer(w)
        self.in_channels, self.out_channels = w.shape[0], w.shape[3]
        self._own(w, w_zero_point, bias, requant)

    def _make_core(self, core: Any) -> Any:
        return core.PackedDeconv2x2(*self._core_args())

    def _reference(self, x: np.ndarray, xz: int) -> np.ndarray:
        return reference.conv_transpose2x2(x, self.w, xz, self.w_zero_point, self.bias, self.requant)

    def __call__(self, x: np.ndarray, *, x_zero_point: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        if type(x) is np.ndarray and x.ndim == 4 and x.dtype.char in "bB" and x.shape[3] == self.in_channels:
            spatial: tuple[int, ...] = (x.shape[0], 2 * x.shape[1], 2 * x.shape[2])
        else:
            x, spatial = ops.check_deconv2x2_input(x, self.in_channels)
        return self._run(x, x_zero_point, out, spatial)

    def __repr__(self) -> str:
        return (
            f"PackedConvTranspose2x2(C={self.in_channels}, O={self.out_channels}, w={self.w.dtype}, "
            f"isa={self.isa!r}, requant={self.requant!r})"
        )
