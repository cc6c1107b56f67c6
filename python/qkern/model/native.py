"""Run functions of the integer model ops: native `_core` kernels, or the NumPy reference when asked.

Each factory binds one step's buffers and parameters once and returns a no-argument function; the
backend (`qkern.set_backend` / `qkern.backend`) is read at call time, so one plan serves both.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import _backend
from ..reference import model_ops as R

RunFn = Callable[[], object]
Rescale = tuple[int, int, int, int, int, int, str]  # (z_in, M, shift, z_out, qmin, qmax, out dtype)


def _native() -> bool:
    return _backend.core is not None and _backend.get_backend() != "reference"


def rescale_fn(x: np.ndarray, out: np.ndarray, p: Rescale) -> RunFn:
    def run() -> None:
        out[...] = R.rescale(x, *p)

    return run


def add_fn(a: np.ndarray, b: np.ndarray, out: np.ndarray, p: tuple) -> RunFn:
    za, m1, s1, zb, m2, s2, mo, so, zo, lo, hi, dt = p

    def run() -> None:
        out[...] = R.add(a, za, m1, s1, b, zb, m2, s2, mo, so, zo, lo, hi, dt)

    return run


def max_pool_fn(x: np.ndarray, out: np.ndarray, kernel: int, stride: int, padding: int) -> RunFn:
    def run() -> None:
        out[...] = R.max_pool2d(x, kernel, stride, padding)

    return run


def avg_pool_fn(x: np.ndarray, out: np.ndarray, kernel: int, stride: int, p: Rescale) -> RunFn:
    def run() -> None:
        out[...] = R.avg_pool2d(x, kernel, stride, *p)

    return run


def global_avg_pool_fn(x: np.ndarray, out: np.ndarray, p: Rescale) -> RunFn:
    def run() -> None:
        out[...] = R.global_avg_pool(x, *p)

    return run
