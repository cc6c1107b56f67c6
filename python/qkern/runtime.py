"""Runtime controls and introspection: ISA level, thread count, kernel list, info()."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend
from . import _checks as V
from ._constants import MAX_THREADS
from ._version import __version__


def _core() -> Any:
    if _backend.core is None:
        raise RuntimeError(f"the native backend is unavailable: {_backend.core_error}")
    return _backend.core


def available_isas() -> list[str]:
    """ISA paths this build can run on this CPU, best first, e.g. ["avx512vnni", "avx2", "scalar"]."""
    return list(_backend.core.available_isas()) if _backend.core is not None else []


def get_isa() -> str | None:
    """The ISA path new native calls use (None without the native backend)."""
    return _backend.core.get_isa() if _backend.core is not None else None


def set_isa(name: str) -> None:
    """Select an available ISA path (lower than the best only changes speed, never results)."""
    if not isinstance(name, str):
        raise TypeError(f"ISA name must be a str, got {type(name).__name__}")
    if name not in available_isas():
        raise ValueError(f"isa must be one of {available_isas()}, got {name!r}")
    _core().set_isa(name)
    _backend.isa_epoch += 1


def get_num_threads() -> int:
    return int(_backend.core.get_num_threads()) if _backend.core is not None else 1


def set_num_threads(n: int) -> None:
    """Threads used by native kernels (results are bit-identical for every count)."""
    n = V.int_scalar(n, "n")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"number of threads must be in [1, {MAX_THREADS}], got {n}")
    _core().set_num_threads(n)


def kernels() -> list[dict[str, Any]]:
    """The microkernel list (csrc/qkern/kernels.inc), one dict per kernel: isa, name, mr, nr, kr, max_n,
    elem_bytes, flip_u8_b, flip_s8_a, a_int16, a_bits, wide_stage, first_layer (whether it computes first-layer
    3x3 convs, C <= 6, straight from the input) and outputs (the output forms it stores)."""
    return list(_backend.core.kernels()) if _backend.core is not None else []


def info() -> dict[str, Any]:
    """Version, backend, isa, available isas, threads, compiler and flags."""
    d: dict[str, Any] = {
        "version": __version__,
        "backend": _backend.get_backend(),
        "isa": get_isa(),
        "available_isas": available_isas(),
        "threads": get_num_threads(),
        "numpy": np.__version__,
    }
    if _backend.core is not None:
        d.update(_backend.core.build_info())
        d["kernels"] = [k["name"] for k in kernels()]
    else:
        d["native_error"] = _backend.core_error
    return d
