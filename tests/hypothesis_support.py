"""Hypothesis settings and strategies shared by the property tests (profiles, quantized operands, Requant).

QKERN_HYPOTHESIS_PROFILE=slow runs >= 10^4 examples per op; the default profile keeps CI fast.
"""

from __future__ import annotations

import os

import numpy as np
import qkern
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROFILE = os.environ.get("QKERN_HYPOTHESIS_PROFILE", "default")
if PROFILE not in ("default", "slow"):
    raise ValueError(f"QKERN_HYPOTHESIS_PROFILE must be 'default' or 'slow', got {PROFILE!r}")
SLOW_EXAMPLES = 10_000


def examples(default: int) -> settings:
    """Settings for one property: `default` examples, or SLOW_EXAMPLES under the slow profile."""
    return settings(
        max_examples=SLOW_EXAMPLES if PROFILE == "slow" else default,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


QDTYPES = st.sampled_from([np.uint8, np.int8])
ISAS = st.sampled_from(qkern.available_isas() or ["scalar"])
THREADS = st.sampled_from([1, 2])
# How operand values are drawn: uniform, the dtype's extremes only (accumulator wrap), or one constant.
FILLS = st.sampled_from(["uniform", "extremes", "constant"])


def qarray(seed: int, dtype: type, shape: tuple[int, ...], fill: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    if fill == "extremes":
        return rng.choice(np.array([info.min, info.max], dtype=dtype), size=shape)
    if fill == "constant":
        return np.full(shape, rng.integers(info.min, info.max + 1), dtype=dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


@st.composite
def zero_points(draw: st.DrawFn, dtype: type, channels: int | None = None) -> int | np.ndarray:
    """A scalar zero point in the dtype's range, or (when `channels` is given, sometimes) a per-channel one."""
    info = np.iinfo(dtype)
    values = st.integers(int(info.min), int(info.max))
    if channels is not None and draw(st.booleans()):
        return np.array(draw(st.lists(values, min_size=channels, max_size=channels)), dtype=np.int32)
    return draw(values)


@st.composite
def layouts(draw: st.DrawFn, x: np.ndarray) -> np.ndarray:
    """The same values as `x`, as a C-contiguous array, a strided view, or a view with negative strides."""
    kind = draw(st.sampled_from(["contiguous", "strided", "negative", "fortran"]))
    if kind == "strided":
        big = np.zeros(tuple(2 * s for s in x.shape), dtype=x.dtype)
        view = big[tuple(slice(None, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    if kind == "negative":
        flipped = np.ascontiguousarray(x[tuple(slice(None, None, -1) for _ in x.shape)])
        return flipped[tuple(slice(None, None, -1) for _ in x.shape)]
    if kind == "fortran":
        return np.asfortranarray(x)
    return np.ascontiguousarray(x)


@st.composite
def requants(draw: st.DrawFn, channels: int) -> qkern.Requant | None:
    """None (raw int32) or a Requant of any rounding mode, per-tensor or per-channel, any output range."""
    rounding = draw(st.sampled_from([None, "gemmlowp", "single", "fp32"]))
    if rounding is None:
        return None
    per_channel = draw(st.booleans())
    size = channels if per_channel else None
    dtype = draw(st.sampled_from(["uint8", "int8"]))
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    zp = draw(st.integers(lo, hi))
    qmin = draw(st.integers(lo, hi))
    qmax = draw(st.integers(qmin, hi))

    def vector(strategy: st.SearchStrategy) -> object:
        if size is None:
            return draw(strategy)
        return np.array(draw(st.lists(strategy, min_size=size, max_size=size)))

    if rounding == "fp32":
        mult = vector(st.one_of(st.just(0.0), st.floats(2.0**-40, 2.0**8)))
        return qkern.Requant(np.asarray(mult, np.float32), None, zp, dtype=dtype, qmin=qmin, qmax=qmax, rounding="fp32")
    mult = vector(st.one_of(st.integers(0, 2**31 - 1), st.sampled_from([0, 1, 2**30, 2**31 - 1])))
    shift = vector(st.integers(-31, 30))
    return qkern.Requant(
        np.asarray(mult, np.int64),
        np.asarray(shift, np.int64),
        zp,
        dtype=dtype,
        qmin=qmin,
        qmax=qmax,
        rounding=rounding,
    )


@st.composite
def biases(draw: st.DrawFn, channels: int) -> np.ndarray | None:
    if draw(st.booleans()):
        return None
    values = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-1000, 1000))
    return np.array(draw(st.lists(values, min_size=channels, max_size=channels)), dtype=np.int32)
