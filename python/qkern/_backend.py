"""Backend selection: "native" (the C++ extension qkern._core) or "reference" (pure NumPy, normative)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

BACKENDS = ("native", "reference")

core: ModuleType | None
try:
    from . import _core as core

    core_error: str | None = None
except ImportError as exc:  # a source checkout without a build, or a broken wheel
    core = None
    core_error = str(exc)
    # A missing module reads as "partially initialized module ... circular import" from inside the package.
    missing = isinstance(exc, ModuleNotFoundError) or "partially initialized" in str(exc)
    cause = (
        "the C++ extension qkern._core is missing (not built?)" if missing else f"qkern._core failed to load ({exc})"
    )
    warnings.warn(
        f"{cause}; qkern uses the (slow) NumPy reference backend",
        RuntimeWarning,
        stacklevel=2,
    )


def _initial() -> str:
    env = os.environ.get("QKERN_BACKEND", "").strip().lower()
    if env in BACKENDS and not (env == "native" and core is None):
        return env
    return "native" if core is not None else "reference"


# The process-wide default and the per-context override; hot paths read them directly (get_backend's logic).
default_backend = _initial()
# Incremented by runtime.set_isa: packed weights compare it to know when to check their ISA again.
isa_epoch = 0
override: contextvars.ContextVar[str | None] = contextvars.ContextVar("qkern_backend", default=None)


def _check(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "native" and core is None:
        raise ValueError(f"the native backend is unavailable: {core_error}")
    return name


def set_backend(name: str) -> None:
    """Select the process-wide default backend ("native" or "reference")."""
    global default_backend
    default_backend = _check(name)


def get_backend() -> str:
    """The backend in effect here (a `backend(...)` block overrides the default in its own context)."""
    return override.get() or default_backend


@contextlib.contextmanager
def backend(name: str) -> Iterator[str]:
    """Run a block on one backend; the override is local to this thread/async context."""
    token = override.set(_check(name))
    try:
        yield name
    finally:
        override.reset(token)
