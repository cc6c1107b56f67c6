"""Run functions of the integer model ops: native `_core` kernels, or the NumPy reference.

Each factory binds one step's buffers and parameters once and returns a no-argument function. The
backend (`qkern.set_backend` / `qkern.backend`) is read when the plan is made; a model keeps one plan per
backend and ISA selection, so a plan's choice never goes stale.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _backend
from ..reference import model_ops as R

RunFn = Callable[[], object]
Rescale = tuple[int, int, int, int, int, int, str]  # (z_in, M, shift, z_out, qmin, qmax, out dtype)


def use_native() -> bool:
    return _backend.core is not None and _backend.get_backend() != "reference"


class Parts:
    """Run functions called in order as one (a cat's parts); `parts` lets bound_calls see each of them."""

    def __init__(self, parts: list[RunFn]) -> None:
        self.parts = parts

    def __call__(self) -> None:
        for part in self.parts:
            part()


def bound_calls(fn: RunFn) -> list[Any] | None:
    """The native calls that do what a plan's step function does, each checked once (`_core.BoundCall`), or
    None when the function runs Python: a `functools.partial` of a packed core's `run` or of a `model_*`
    op, or a function whose `parts` attribute lists such partials (a cat)."""
    core = _backend.core
    if core is None:
        return None
    parts = getattr(fn, "parts", None)
    if parts is not None:
        calls = [bound_calls(p) for p in parts]
        return None if any(c is None for c in calls) else [b for c in calls for b in c]  # type: ignore[union-attr]
    if not isinstance(fn, functools.partial) or fn.keywords:
        return None
    func = fn.func
    owner, name = getattr(func, "__self__", None), getattr(func, "__name__", "")
    if name == "run" and owner is not None and hasattr(owner, "bind"):
        return [owner.bind(*fn.args)]
    binder = getattr(core, "bind_" + name, None)
    if binder is not None and func is getattr(core, name, None):
        return [binder(*fn.args)]
    return None


def programs(fns: list[RunFn]) -> list[RunFn]:
    """fns with each run of consecutive native step functions replaced by one `_core.Program` (one Python
    call for all of them; the calls were checked when the steps were planned)."""
    if not use_native():
        return fns
    out: list[RunFn] = []
    pending: list[Any] = []
    for fn in fns:
        calls = bound_calls(fn)
        if calls is not None:
            pending += calls
            continue
        if pending:
            out.append(_backend.core.Program(pending))  # type: ignore[union-attr]
            pending = []
        out.append(fn)
    if pending:
        out.append(_backend.core.Program(pending))  # type: ignore[union-attr]
    return out


def rescale_fn(x: np.ndarray, out: np.ndarray, p: Rescale, col_offset: int = 0) -> RunFn:
    """Eq. (M2) from x into out[..., col_offset : col_offset + C] (out is the whole, contiguous buffer)."""
    if use_native():
        return functools.partial(_backend.core.model_rescale, x, out, col_offset, *p[:6])
    dst = out[..., col_offset : col_offset + x.shape[-1]]

    def run() -> None:
        dst[...] = R.rescale(x, *p)

    return run


def copy_fn(x: np.ndarray, out: np.ndarray, col_offset: int = 0) -> RunFn:
    """x into out[..., col_offset : col_offset + C], both of one dtype (a concat part on the output's grid)."""
    if use_native():
        return functools.partial(_backend.core.model_copy_channels, x, out, col_offset)
    return functools.partial(np.copyto, out[..., col_offset : col_offset + x.shape[-1]], x)


def add_pair_table(a_dtype: str, b_dtype: str, p: tuple) -> np.ndarray:
    """Eq. (M3) for every pair of input bytes: entry a_byte * 256 + b_byte (64 KiB, made once per step)."""
    a = np.repeat(np.arange(256, dtype=np.uint8), 256).view(a_dtype)
    b = np.tile(np.arange(256, dtype=np.uint8), 256).view(b_dtype)
    out = np.empty(65536, dtype=p[11])
    if _backend.core is not None:
        _backend.core.model_add(a, b, out, *p[:11])
    else:
        out[...] = R.add(a, p[0], p[1], p[2], b, *p[3:])
    out.setflags(write=False)
    return out


def add_fn(a: np.ndarray, b: np.ndarray, out: np.ndarray, p: tuple, pair_table: np.ndarray) -> RunFn:
    """The native add is one lookup per element in the step's pair table (eq. (M3) made by model_add)."""
    if use_native():
        return functools.partial(_backend.core.model_pair_table, a, b, pair_table, out)

    def run() -> None:
        out[...] = R.add(a, p[0], p[1], p[2], b, *p[3:])

    return run


def max_pool_fn(x: np.ndarray, out: np.ndarray, kernel: int, stride: int, padding: int) -> RunFn:
    if use_native():
        return functools.partial(_backend.core.model_max_pool, x, out, kernel, stride, padding)

    def run() -> None:
        out[...] = R.max_pool2d(x, kernel, stride, padding)

    return run


def avg_pool_fn(x: np.ndarray, out: np.ndarray, kernel: int, stride: int, p: Rescale) -> RunFn:
    if use_native():
        return functools.partial(_backend.core.model_avg_pool, x, out, kernel, stride, *p[:6])

    def run() -> None:
        out[...] = R.avg_pool2d(x, kernel, stride, *p)

    return run


def global_avg_pool_fn(x: np.ndarray, out: np.ndarray, p: Rescale) -> RunFn:
    if use_native():
        return functools.partial(_backend.core.model_global_avg_pool, x, out, *p[:6])

    def run() -> None:
        out[...] = R.global_avg_pool(x, *p)

    return run
