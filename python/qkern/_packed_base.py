"""The life cycle and hot path shared by PackedGemm, PackedConv3x3 and PackedConvTranspose2x2."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend
from . import _checks as V
from . import _marshal as M
from .requant_params import Requant


class PackedOp:
    """Owns a read-only copy of the weights, their zero point(s), the bias and the Requant; packs them for
    the current ISA, repacks when `set_isa` changes it, and runs the reference backend when asked (or when
    `_core` is missing); pickles and deep-copies by packing again on load. Subclasses set `out_channels` and
    implement `_make_core` and `_reference`.

    `input_bits` 7 promises inputs that are uint8 below 128 (zero point included), as a layer with a 7-bit
    activation range produces: the weights are then packed for the ISA's 7-bit kernel where it has one
    (docs/kernels.md), and every call checks the promise (on every ISA and backend)."""

    out_channels: int
    bias: np.ndarray | None
    requant: Requant | None
    out_dtype: np.dtype

    def _own(
        self, weights: np.ndarray, zero_point: Any, zp_name: str, bias: Any, requant: Any, input_bits: Any = 8
    ) -> tuple[Any, Any]:
        """Checks and stores bias, requant and input_bits; returns (a read-only copy of the weights, their zero
        point)."""
        if type(input_bits) is not int or input_bits not in (7, 8):
            raise ValueError(f"input_bits must be 7 or 8, got {input_bits!r}")
        self.input_bits = input_bits
        own = np.array(weights, order="C")  # own copy: later changes to the caller's array do not leak in
        own.setflags(write=False)
        zp = V.zero_point(zero_point, weights.dtype.name, zp_name, channels=self.out_channels)
        self.bias = None if bias is None else np.array(V.bias(bias, self.out_channels))
        self.requant = M.checked_requant(requant, self.out_channels)
        self.out_dtype = M.out_dtype(self.requant)
        self._core: Any = None
        self._isa_epoch = -1
        return own, zp

    def _pack(self) -> None:
        if _backend.core is not None:
            self._core = self._make_core(_backend.core)

    # Pickling and deep copies: the state is the owned weights and parameters; the native packing (an
    # opaque, ISA-specific C++ object) is left out and rebuilt on load for the ISA selected then.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_core", "_isa_epoch")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"input_bits": 8, **state})
        for value in state.values():  # the owned weight copy stays read-only (see _own)
            if isinstance(value, np.ndarray) and value.ndim >= 2:
                value.setflags(write=False)
        self._core, self._isa_epoch = None, -1
        self._pack()

    def _core_args(self, weights: np.ndarray, zero_point: Any) -> tuple[Any, ...]:
        """The constructor arguments every native packed object takes first."""
        o = self.out_channels
        return (weights, M.zp_vector(zero_point, o), self.bias, M.stage_args(self.requant, o), self.out_dtype.name)

    def _check_seven_bit(self, x: np.ndarray, zero_point: int, name: str) -> None:
        """The reference backend's form of the native check of input_bits 7 (the class docstring)."""
        if x.dtype != np.uint8:
            raise TypeError(f"{name} must be uint8: the weights were packed for 7-bit inputs")
        if not 0 <= zero_point <= 127:
            raise ValueError(f"{name}'s zero point must be in [0, 127]: the weights were packed for 7-bit inputs")
        if x.size and int(x.max()) > 127:
            raise ValueError(f"{name} holds values above 127: the weights were packed for 7-bit inputs")

    def _make_core(self, core: Any) -> Any:
        raise NotImplementedError

    def _reference(self, x: np.ndarray, zero_point: int) -> np.ndarray:
        raise NotImplementedError

    @property
    def isa(self) -> str | None:
        """The ISA the weights are packed for (None without the native backend)."""
        return None if self._core is None else self._core.isa

    def _run(
        self, x: np.ndarray, unsigned: bool, zero_point: Any, zp_name: str, out: Any, shape: tuple[int, ...]
    ) -> np.ndarray:
        """The hot path, after the caller checked x (a uint8/int8 ndarray whose shape fits; `unsigned`: it
        is uint8) and computed the output's shape. The fixed cost of a call is what small shapes pay, so
        the common case runs inline checks only; anything unusual goes to the full validators for their
        error. Layout, writeability and overlap of `out` are checked by the binding."""
        if type(zero_point) is not int or not ((0 <= zero_point <= 255) if unsigned else (-128 <= zero_point <= 127)):
            zero_point = V.zero_point(zero_point, V.qname(x), zp_name)
        if out is None:
            out = np.empty(shape, dtype=self.out_dtype)
        elif type(out) is not np.ndarray or out.dtype != self.out_dtype or out.shape != shape:
            out = M.checked_out(out, shape, self.requant, (x,))
        core = _backend.core
        if core is None or (_backend.override.get() or _backend.default_backend) == "reference":
            if self.input_bits == 7:
                self._check_seven_bit(x, zero_point, zp_name.replace("_zero_point", ""))
            M.checked_out(out, shape, self.requant, (x,))
            out[...] = self._reference(x, zero_point)
            return out
        if self._isa_epoch != _backend.isa_epoch:
            if self._core.isa != core.get_isa():
                self._core = self._make_core(core)
            self._isa_epoch = _backend.isa_epoch
        if not x.flags.c_contiguous:
            M.checked_out(out, shape, self.requant, (x,))  # the overlap check, before the copy hides it
            x = np.ascontiguousarray(x)
        self._core.run(x, zero_point, out)  # checks that out does not overlap x (cheaper in C++)
        return out
