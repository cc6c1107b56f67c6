"""Pickling and deep copies of packed weights: the state is the owned weights and parameters; the native
packing (an opaque C++ object, ISA-specific) is rebuilt on load for the ISA selected then."""

from __future__ import annotations

from typing import Any

from . import _backend

_NOT_STATE = ("_core", "_isa_epoch")  # the native packing and the ISA generation it was made for


class RepackOnLoad:
    """Mixin for PackedGemm and the packed convolutions: `__getstate__` drops the native packing,
    `__setstate__` restores the read-only weight copy and packs again."""

    _core: Any
    _isa_epoch: int

    def _make_core(self, core: Any) -> Any:
        raise NotImplementedError

    def _pack(self) -> None:
        core = _backend.core
        self._core = None if core is None else self._make_core(core)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in ("b", "w"):  # the owned weight copy stays read-only (see the constructors)
            weights = self.__dict__.get(name)
            if weights is not None:
                weights.setflags(write=False)
        self._core, self._isa_epoch = None, -1
        self._pack()
