"""Introspection: info() about the build, backend, ISA and threads."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend
from ._version import __version__


def available_isas() -> list[str]:
    """ISA paths this build can run on this CPU, best first (the scalar path only, until SIMD kernels land)."""
    return ["scalar"] if _backend.core is not None else []


def get_isa() -> str | None:
    isas = available_isas()
    return isas[0] if isas else None


def get_num_threads() -> int:
    return 1


def info() -> dict[str, Any]:
    """Version, backend, ISA, available ISAs, threads, compiler and flags."""
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
    else:
        d["native_error"] = _backend.core_error
    return d
