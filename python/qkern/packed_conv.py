"""PackedConv3x3 and PackedConvTranspose2x2: conv weights packed once (layout, sums, bias, requant)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _conv_checks as C
from . import reference
from ._packed_base import PackedOp
from .conv_shape import conv3x3_fits, conv3x3_output_size, deconv2x2_output_size
from .requant_params import Requant


class PackedConv3x3(PackedOp):
    """conv3x3 with fixed weights: w[O, 3, 3, C] (OHWI), its zero point(s), int32 bias, Requant, stride and
    padding are packed once; `packed(x, x_zero_point=...)` runs only the kernel. Same results as
    `qkern.conv3x3`. `input_bits=7`: every x is uint8 below 128 (checked; PackedGemm)."""

    def __init__(
        self,
        w: np.ndarray,
        w_zero_point: int | np.ndarray = 0,
        bias: np.ndarray | None = None,
        requant: Requant | None = None,
        *,
        stride: int = 1,
        padding: int = 1,
        input_bits: int = 8,
    ) -> None:
        w, self.stride, self.padding = C.conv3x3_layer(w, stride, padding)
        self.out_channels, self.in_channels = w.shape[0], w.shape[3]
        self.w, self.w_zero_point = self._own(w, w_zero_point, "w_zero_point", bias, requant, input_bits)
        self._pack()

    def _make_core(self, core: Any) -> Any:
        args = self._core_args(self.w, self.w_zero_point)
        return core.PackedConv3x3(*args, self.stride, self.padding, input_bits=self.input_bits)

    def _reference(self, x: np.ndarray, xz: int) -> np.ndarray:
        return reference.conv3x3(x, self.w, self.stride, self.padding, xz, self.w_zero_point, self.bias, self.requant)

    def __call__(self, x: np.ndarray, *, x_zero_point: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        s, p = self.stride, self.padding
        if (
            type(x) is np.ndarray
            and x.ndim == 4
            and (ch := x.dtype.char) in "bB"
            and x.shape[3] == self.in_channels
            and conv3x3_fits(x.shape[1], x.shape[2], p)
        ):
            rows: tuple[int, ...] = (x.shape[0], *conv3x3_output_size(x.shape[1], x.shape[2], s, p))
        else:
            x, rows = C.conv3x3_input(x, self.in_channels, s, p)
            ch = x.dtype.char
        return self._run(x, ch == "B", x_zero_point, "x_zero_point", out, (*rows, self.out_channels))

    def __repr__(self) -> str:
        return (
            f"PackedConv3x3(O={self.out_channels}, C={self.in_channels}, stride={self.stride}, "
            f"padding={self.padding}, w={self.w.dtype}, isa={self.isa!r}, requant={self.requant!r})"
        )


class PackedConvTranspose2x2(PackedOp):
    """conv_transpose2x2 (stride 2) with fixed weights: w[C, 2, 2, O] (IHWO), its zero point(s), int32
    bias and Requant (per-tensor or per-output-channel) are packed once. Same results as
    `qkern.conv_transpose2x2`. `input_bits=7`: every x is uint8 below 128 (checked; PackedGemm)."""

    def __init__(
        self,
        w: np.ndarray,
        w_zero_point: int | np.ndarray = 0,
        bias: np.ndarray | None = None,
        requant: Requant | None = None,
        *,
        input_bits: int = 8,
    ) -> None:
        w = C.deconv2x2_layer(w)
        self.in_channels, self.out_channels = w.shape[0], w.shape[3]
        self.w, self.w_zero_point = self._own(w, w_zero_point, "w_zero_point", bias, requant, input_bits)
        self._pack()

    def _make_core(self, core: Any) -> Any:
        return core.PackedDeconv2x2(*self._core_args(self.w, self.w_zero_point), input_bits=self.input_bits)

    def _reference(self, x: np.ndarray, xz: int) -> np.ndarray:
        return reference.conv_transpose2x2(x, self.w, xz, self.w_zero_point, self.bias, self.requant)

    def __call__(self, x: np.ndarray, *, x_zero_point: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        if type(x) is np.ndarray and x.ndim == 4 and (ch := x.dtype.char) in "bB" and x.shape[3] == self.in_channels:
            rows: tuple[int, ...] = (x.shape[0], *deconv2x2_output_size(x.shape[1], x.shape[2]))
        else:
            x, rows = C.deconv2x2_input(x, self.in_channels)
            ch = x.dtype.char
        return self._run(x, ch == "B", x_zero_point, "x_zero_point", out, (*rows, self.out_channels))

    def __repr__(self) -> str:
        return (
            f"PackedConvTranspose2x2(C={self.in_channels}, O={self.out_channels}, w={self.w.dtype}, "
            f"isa={self.isa!r}, requant={self.requant!r})"
        )
