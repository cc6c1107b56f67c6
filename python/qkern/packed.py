"""PackedGemm: weights packed once (layout, column sums, bias, requant) for repeated calls."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, ops, reference
from . import _validate as V
from ._pickling import RepackOnLoad
from .requant import Requant


class PackedGemm(RepackOnLoad):
    """C = gemm(a, b) with b fixed: b[K, N] (uint8/int8), its zero point(s), int32 bias and Requant are
    packed once; `packed(a, a_zero_point=...)` then runs only the kernel. Same results as `qkern.gemm`.

    The packing is for the ISA selected when the object is made; if `set_isa` changes it later, the
    weights are repacked on the next call. Pickling and deep copies pack again when loaded.
    """

    def __init__(
        self,
        b: np.ndarray,
        b_zero_point: int | np.ndarray = 0,
        bias: np.ndarray | None = None,
        requant: Requant | None = None,
    ) -> None:
        b = V.quant_array(b, "b", 2)
        self.k, self.n = b.shape
        self.b = np.array(b, order="C")  # own copy: later changes to the caller's array do not leak in
        self.b.setflags(write=False)
        self.b_zero_point = V.zero_point(b_zero_point, b.dtype.name, "b_zero_point", channels=self.n)
        self.bias = None if bias is None else np.array(V.bias(bias, self.n))
        self.requant = ops._requant(requant, self.n)
        self.out_dtype = np.dtype(np.int32) if self.requant is None else np.dtype(V.np_dtype(self.requant.dtype))
        self._core: Any = None
        self._isa_epoch = -1
        self._pack()

    def _pack(self) -> None:
        core = _backend.core
        if core is None:
            return
        self._core = core.PackedGemm(
            self.b,
            ops._zp_vector(self.b_zero_point, self.n),
            self.bias,
            ops._stage(self.requant, self.n),
            self.out_dtype.name,
        )

    @property
    def isa(self) -> str | None:
        return None if self._core is None else self._core.isa

    def __call__(self, a: np.ndarray, *, a_zero_point: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        # The hot path: every check is inline and cheap (performance.md R2: the fixed cost per call is
        # what small shapes pay). Anything unusual falls through to the full validators for the error.
        # Layout, writeability and overlap of `out` are checked by the binding (same messages).
        if type(a) is not np.ndarray or a.ndim != 2 or (ch := a.dtype.char) not in "bB":
            V.quant_array(a, "a", 2)
            ch = a.dtype.char
        if a.shape[1] != self.k:
            raise ValueError(f"a must have shape (M, {self.k}), got {a.shape}")
        if type(a_zero_point) is not int or not (
            (0 <= a_zero_point <= 255) if ch == "B" else (-128 <= a_zero_point <= 127)
        ):
            a_zero_point = V.zero_point(a_zero_point, a.dtype.name, "a_zero_point")
        shape = (a.shape[0], self.n)
        if out is None:
            out = np.empty(shape, dtype=self.out_dtype)
        elif type(out) is not np.ndarray or out.dtype != self.out_dtype or out.shape != shape:
            out = ops._out(out, shape, self.requant, (a,))
        core = _backend.core
        if core is None or _backend.get_backend() == "reference":
            ops._out(out, shape, self.requant, (a,))
            out[...] = reference.gemm(a, self.b, a_zero_point, self.b_zero_point, self.bias, self.requant)
            return out
        if self._isa_epoch != _backend.isa_epoch:
            if self._core.isa != core.get_isa():
                self._pack()
            self._isa_epoch = _backend.isa_epoch
        if not a.flags.c_contiguous:
            ops._out(out, shape, self.requant, (a,))  # the overlap check, before the copy hides it
            a = np.ascontiguousarray(a)
        self._core.run(a, a_zero_point, out)  # checks that out does not overlap a (cheaper in C++)
        return out

    def __repr__(self) -> str:
        return f"PackedGemm(K={self.k}, N={self.n}, b={self.b.dtype}, isa={self.isa!r}, requant={self.requant!r})"
