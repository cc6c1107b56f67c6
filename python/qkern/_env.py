"""Checks of the QKERN_* environment variables at import: a value that is not used warns once, naming the
variable and what is used instead (the native core reads QKERN_ISA and QKERN_NUM_THREADS itself)."""

from __future__ import annotations

import os
import re
import warnings

from . import _backend
from ._constants import MAX_THREADS  # csrc/qkern/threadpool.cc accepts QKERN_NUM_THREADS in [1, MAX_THREADS]


def _warn(text: str) -> None:
    warnings.warn(text, RuntimeWarning, stacklevel=4)  # the user's `import qkern`


def valid_num_threads(raw: str) -> bool:
    """What the core's strtol-based parse accepts: optional leading blanks and sign, digits, nothing after."""
    return re.fullmatch(r"\s*[+-]?[0-9]+", raw) is not None and 1 <= int(raw) <= MAX_THREADS


def check_environment() -> None:
    """Warn about each QKERN_* variable whose value is ignored or replaced."""
    core = _backend.core
    raw = os.environ.get("QKERN_BACKEND")
    if raw is not None and raw.strip() and raw.strip().lower() != _backend.get_backend():
        _warn(
            f"QKERN_BACKEND={raw!r} is not usable here (one of {_backend.BACKENDS}); using {_backend.get_backend()!r}"
        )
    if core is None:
        return
    raw = os.environ.get("QKERN_ISA", "")  # empty reads as unset, here and in the core
    if raw and raw != core.get_isa():
        _warn(
            f"QKERN_ISA={raw!r} is not one of the ISAs available here {list(core.available_isas())}; "
            f"using {core.get_isa()!r}"
        )
    raw = os.environ.get("QKERN_NUM_THREADS", "")
    if raw and not valid_num_threads(raw):
        _warn(
            f"QKERN_NUM_THREADS={raw!r} is not an integer in [1, {MAX_THREADS}]; using {core.get_num_threads()} "
            "threads (the CPUs this process may run on)"
        )
