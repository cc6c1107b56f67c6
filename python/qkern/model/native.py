"""Run functions of the integer model ops: native `_core` kernels, or the NumPy reference.

Each factory binds one step's buffers and parameters once and returns a no-argument function. The
backend (`qkern.set_backend` / `qkern.backend`) is read when the plan is made; a model keeps one plan per
backend and ISA selection, so a plan's choice never goes stale.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .. import _backend
from ..reference import model_ops as R

RunFn = Callable[[], object]
Rescale = tuple[int, int, int, int, int, int, str]  # (z_in, M, shift, z_out, qmin, qmax, out dtype)


def use_native() -> bool:
    return _backend.core is not None and _backend.get_backend() != "reference"


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
