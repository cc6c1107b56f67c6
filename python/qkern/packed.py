"""PackedGemm: weights packed once (layout, column sums, bias, requant) for repeated calls."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks as V
from . import reference
from ._packed_base import PackedOp
from .requant_params import Requant


class PackedGemm(PackedOp):
    """C = gemm(a, b) with b fixed: b[K, N] (uint8/int8), its zero point(s), int32 bias and Requant are
    packed once; `packed(a, a_zero_point=...)` then runs only the kernel. Same results as `qkern.gemm`.
    `input_bits=7`: every `a` is uint8 below 128 (checked), run by the ISA's 7-bit kernel where it has one.

    The packing is for the ISA selected when the object is made; if `set_isa` changes it later, the
    weights are repacked on the next call.
    """

    def __init__(
        self,
        b: np.ndarray,
        b_zero_point: int | np.ndarray = 0,
        bias: np.ndarray | None = None,
        requant: Requant | None = None,
        *,
        input_bits: int = 8,
    ) -> None:
        b = V.quant_array(b, "b", 2)
        self.k, self.n = b.shape
        self.out_channels = self.n
        self.b, self.b_zero_point = self._own(b, b_zero_point, "b_zero_point", bias, requant, input_bits)
        self._pack()

    def _make_core(self, core: Any) -> Any:
        return core.PackedGemm(*self._core_args(self.b, self.b_zero_point), input_bits=self.input_bits)

    def _reference(self, a: np.ndarray, a_zero_point: int) -> np.ndarray:
        return reference.gemm(a, self.b, a_zero_point, self.b_zero_point, self.bias, self.requant)

    def __call__(self, a: np.ndarray, *, a_zero_point: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        if type(a) is not np.ndarray or a.ndim != 2 or (ch := a.dtype.char) not in "bB":
            V.quant_array(a, "a", 2)
            ch = a.dtype.char
        if a.shape[1] != self.k:
            raise ValueError(f"a must have shape (M, {self.k}), got {a.shape}")
        return self._run(a, ch == "B", a_zero_point, "a_zero_point", out, (a.shape[0], self.n))

    def __repr__(self) -> str:
        return f"PackedGemm(K={self.k}, N={self.n}, b={self.b.dtype}, isa={self.isa!r}, requant={self.requant!r})"
