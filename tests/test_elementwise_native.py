"""The native quantize / dequantize / requantize / layout kernels equal the NumPy reference bit for bit on
every ISA x {1, 2} threads: edge batteries, tails around the vector widths, threaded sizes and properties."""

from __future__ import annotations

import numpy as np
import pytest
import qkern
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

RANGE = {"uint8": (0, 255), "int8": (-128, 127)}
# Tails around 8/16/32 lanes, a size that crosses the threading grain, and one that is not a multiple of it.
SIZES = [0, 1, 7, 8, 9, 31, 32, 33, 100, 16384 * 3 + 5]


def _reference(fn, *args, **kwargs):
    with qkern.backend("reference"):
        return fn(*args, **kwargs)


def _same(native: np.ndarray, reference: np.ndarray) -> None:
    assert native.dtype == reference.dtype and native.shape == reference.shape
    if native.dtype.kind == "f":  # compare bits: -0.0 vs 0.0 and NaN payloads count
        native, reference = native.view(np.uint32), reference.view(np.uint32)
    assert np.array_equal(native, reference)


def _hard_floats(rng: np.random.Generator, scale: float, n: int) -> np.ndarray:
    """Ties of x/scale, exact integers, wide values, +-inf, extremes and denormals, shuffled."""
    s = np.float32(scale)
    k = rng.integers(-700, 700, n)
    parts = [
        ((k + 0.5) * s).astype(np.float32),
        (k * s).astype(np.float32),
        (rng.standard_normal(n) * 200 * s).astype(np.float32),
        (rng.standard_normal(n) * 1e6 * s).astype(np.float32),
        np.array([0.0, -0.0, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, -1e-45, 1.1e-38, -1.1e-38], np.float32),
        rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32),  # any bit pattern
    ]
    x = np.concatenate(parts)
    x[np.isnan(x)] = 1.5
    return rng.permutation(x)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_quantize_per_tensor_equals_reference(isa_threads, rng, dtype):
    lo, hi = RANGE[dtype]
    for zp in range(lo, hi + 1, 3):
        scale = float(np.exp(rng.uniform(-40, 40)))  # tiny to huge scales
        x = _hard_floats(rng, scale, 40)
        _same(qkern.quantize(x, scale, zp, dtype), _reference(qkern.quantize, x, scale, zp, dtype))
    x = _hard_floats(rng, 0.02, 20000)
    for qmin, qmax in [(lo, hi), (lo + 10, hi - 20), (5, 5)]:
        args = (x, 0.02, (qmin + qmax) // 2, dtype)
        _same(qkern.quantize(*args, qmin=qmin, qmax=qmax), _reference(qkern.quantize, *args, qmin=qmin, qmax=qmax))
        _same(qkern.QParams(0.02, (qmin + qmax) // 2, dtype).quantize(x), _reference(qkern.quantize, *args))


@pytest.mark.parametrize("n", SIZES)
def test_quantize_and_dequantize_tails(isa_threads, rng, n):
    x = (rng.standard_normal(n) * 40).astype(np.float32)
    for dtype, zp in [("uint8", 131), ("int8", -7)]:
        q = qkern.quantize(x, 0.3, zp, dtype)
        _same(q, _reference(qkern.quantize, x, 0.3, zp, dtype))
        _same(qkern.dequantize(q, 0.3, zp), _reference(qkern.dequantize, q, 0.3, zp))
        _same(qkern.quantize(x[::-2], 0.3, zp, dtype), _reference(qkern.quantize, x[::-2], 0.3, zp, dtype))
        _same(qkern.dequantize(q[::2], 0.3, zp), _reference(qkern.dequantize, q[::2], 0.3, zp))


def test_quantize_inputs_other_than_contiguous_float32(isa_threads, rng):
    x64 = rng.standard_normal((7, 9)) * 30
    for x in (x64, x64.T, x64.astype(np.float16), x64.tolist(), np.float32(2.5) * np.ones(3, np.float32)):
        _same(qkern.quantize(x, 0.1, 3), _reference(qkern.quantize, x, 0.1, 3))
    assert qkern.quantize(np.float32(2.5), 0.5, 0) == _reference(qkern.quantize, np.float32(2.5), 0.5, 0)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_per_channel_quantize_and_dequantize(isa_threads, rng, axis):
    x = _hard_floats(rng, 0.05, 1000)[: 5 * 33 * 19].reshape(5, 33, 19)
    channels = x.shape[axis]
    scale = np.exp(rng.uniform(-12, 6, channels))
    for dtype in ("uint8", "int8"):
        lo, hi = RANGE[dtype]
        zp = rng.integers(lo, hi + 1, channels)
        q = qkern.quantize(x, scale, zp, dtype, axis=axis)
        _same(q, _reference(qkern.quantize, x, scale, zp, dtype, axis=axis))
        _same(qkern.dequantize(q, scale, zp, axis=axis), _reference(qkern.dequantize, q, scale, zp, axis=axis))
        qp = qkern.QParams(scale, zp, dtype, axis=axis)
        _same(qp.quantize(x), _reference(qp.quantize, x))


def test_per_channel_large_threaded(isa_threads, rng):
    x = (rng.standard_normal((3, 40000)) * 10).astype(np.float32)
    for axis in (0, 1):
        scale = rng.uniform(0.01, 1, x.shape[axis]).astype(np.float32)
        q = qkern.quantize(x, scale, 0, "int8", axis=axis)
        _same(q, _reference(qkern.quantize, x, scale, 0, "int8", axis=axis))
        _same(qkern.dequantize(q, scale, 0, axis=axis), _reference(qkern.dequantize, q, scale, 0, axis=axis))


def test_nan_is_rejected_on_every_path(isa_threads):
    x = np.zeros(1000, np.float32)
    x[777] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        qkern.quantize(x, 0.1, 0)
    with pytest.raises(ValueError, match="NaN"):
        qkern.quantize(x.reshape(10, 100), np.ones(10), 0, axis=0)
    with pytest.raises(ValueError, match="NaN"):
        qkern.quantize_to_nhwc(x.reshape(1, 10, 10, 10), 0.1, 0)


def _requant_cases(rng: np.random.Generator, channels: int) -> list[qkern.Requant]:
    cases = []
    for dtype in ("uint8", "int8"):
        lo, hi = RANGE[dtype]
        zp = int(rng.integers(lo, hi + 1))
        mult = rng.integers(0, 2**31, channels).astype(np.int32)
        shift = rng.integers(-31, 31, channels).astype(np.int32)
        for rounding in ("gemmlowp", "single"):
            cases.append(qkern.Requant(mult, shift, zp, dtype=dtype, rounding=rounding))
            cases.append(qkern.Requant(int(mult[0]), int(shift[0]), zp, dtype=dtype, rounding=rounding))
            cases.append(qkern.Requant(2**31 - 1, 30, zp, dtype=dtype, qmin=lo + 3, qmax=hi - 3, rounding=rounding))
        fm = np.exp(rng.uniform(-30, 3, channels)).astype(np.float32)
        cases.append(qkern.Requant(fm, None, zp, dtype=dtype, rounding="fp32"))
        cases.append(qkern.Requant(float(fm[0]), None, zp, dtype=dtype, rounding="fp32"))
        cases.append(qkern.Requant(3.0e38, None, zp, dtype=dtype, qmin=zp, rounding="fp32"))  # products overflow
    return cases


def _extreme_acc(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    acc = rng.integers(-(2**31), 2**31, shape, dtype=np.int64)
    acc = acc >> rng.integers(0, 32, shape)  # every magnitude
    flat = acc.reshape(-1)
    flat[: min(6, flat.size)] = [-(2**31), 2**31 - 1, 0, -1, 1, 2**30][: min(6, flat.size)]
    return acc.astype(np.int32)


@pytest.mark.parametrize("channels", [1, 3, 8, 37, 64])
def test_requantize_every_mode_equals_reference(isa_threads, rng, channels):
    acc = _extreme_acc(rng, (61, channels))
    bias = rng.integers(-(2**31), 2**31, channels, dtype=np.int64).astype(np.int32)
    for rq in _requant_cases(rng, channels):
        for b in (None, bias):
            _same(qkern.requantize(acc, rq, b), _reference(qkern.requantize, acc, rq, b))


def test_requantize_large_and_strided(isa_threads, rng):
    acc = _extreme_acc(rng, (300, 333))
    for rq in _requant_cases(rng, 333)[:8]:
        _same(qkern.requantize(acc, rq), _reference(qkern.requantize, acc, rq))
        _same(qkern.requantize(acc[::2, :], rq), _reference(qkern.requantize, acc[::2, :], rq))
    flat = acc.reshape(-1)
    rq = qkern.Requant(0.001, None, 3, dtype="int8")
    _same(qkern.requantize(flat, rq), _reference(qkern.requantize, flat, rq))


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 16, 9, 70), (1, 1, 1, 1), (3, 5, 130, 3), (1, 64, 0, 4)])
def test_layout_steps_equal_quantize_then_transpose(isa_threads, rng, shape):
    x = (rng.standard_normal(shape) * 30).astype(np.float32)
    for dtype, zp in [("uint8", 128), ("int8", -3)]:
        want = _reference(qkern.quantize, x, 0.25, zp, dtype).transpose(0, 2, 3, 1)
        q = qkern.quantize_to_nhwc(x, 0.25, zp, dtype)
        _same(q, np.ascontiguousarray(want))
        _same(_reference(qkern.quantize_to_nhwc, x, 0.25, zp, dtype), q)
        want_f = np.ascontiguousarray(_reference(qkern.dequantize, q, 0.25, zp).transpose(0, 3, 1, 2))
        _same(qkern.dequantize_to_nchw(q, 0.25, zp), want_f)
        _same(_reference(qkern.dequantize_to_nchw, q, 0.25, zp), want_f)


def test_layout_steps_write_into_out(rng):
    x = (rng.standard_normal((2, 4, 3, 5)) * 30).astype(np.float32)
    out = np.empty((2, 3, 5, 4), np.int8)
    assert qkern.quantize_to_nhwc(x, 0.5, 1, "int8", qmin=-100, out=out) is out
    _same(out, np.ascontiguousarray(qkern.quantize(x, 0.5, 1, "int8", qmin=-100).transpose(0, 2, 3, 1)))
    back = np.empty((2, 4, 3, 5), np.float32)
    assert qkern.dequantize_to_nchw(out, 0.5, 1, out=back) is back
    _same(back, np.ascontiguousarray(qkern.dequantize(out, 0.5, 1).transpose(0, 3, 1, 2)))


def test_layout_steps_reject_bad_arguments():
    x = np.zeros((1, 2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="4-D"):
        qkern.quantize_to_nhwc(x[0], 0.1, 0)
    with pytest.raises(ValueError, match="shape"):
        qkern.quantize_to_nhwc(x, 0.1, 0, out=np.empty((1, 2, 3, 4), np.uint8))
    with pytest.raises(TypeError, match="dtype"):
        qkern.quantize_to_nhwc(x, 0.1, 0, out=np.empty((1, 3, 4, 2), np.int8))
    with pytest.raises(ValueError, match="C-contiguous"):
        qkern.quantize_to_nhwc(x, 0.1, 0, out=np.empty((1, 3, 4, 4), np.uint8)[..., :2])
    with pytest.raises(ValueError, match="scale"):
        qkern.quantize_to_nhwc(x, 0.0, 0)
    with pytest.raises(ValueError, match="zero_point"):
        qkern.quantize_to_nhwc(x, 0.1, 300)
    with pytest.raises(TypeError, match="q must"):
        qkern.dequantize_to_nchw(x, 0.1, 0)
    with pytest.raises(ValueError, match="4-D"):
        qkern.dequantize_to_nchw(np.zeros((2, 2), np.uint8), 0.1, 0)
    with pytest.raises(TypeError, match="float32"):
        qkern.dequantize_to_nchw(np.zeros((1, 2, 2, 2), np.uint8), 0.1, 0, out=np.empty((1, 2, 2, 2), np.float64))


def test_cached_parameters_still_validate():
    x = np.ones(4, np.float32)
    qkern.quantize(x, 1.0, 1)
    with pytest.raises(TypeError):
        qkern.quantize(x, True, 1)
    with pytest.raises(TypeError):
        qkern.quantize(x, 1.0, True)
    with pytest.raises(TypeError):
        qkern.quantize(x, 1.0, 1, qmin=True)
    with pytest.raises(ValueError, match="scale"):
        qkern.quantize(x, float("nan"), 1)
    with pytest.raises(ValueError, match="axis"):
        qkern.quantize(x, np.ones(4), 1)


def test_core_rejects_bad_direct_calls():
    core = qkern._backend.core
    if core is None:
        pytest.skip("no native core")
    x = np.zeros(10, np.float32)
    with pytest.raises(ValueError):
        core.quantize_per_tensor(x, float("inf"), 0.0, 0.0, 255.0, False)
    with pytest.raises(ValueError):
        core.quantize_per_tensor(x, 1.0, 0.5, 0.0, 255.0, False)
    with pytest.raises(ValueError):
        core.quantize_per_tensor(x, 1.0, 0.0, 0.0, 256.0, False)
    with pytest.raises(ValueError):
        core.quantize_per_channel(
            x, np.ones(3, np.float32), np.zeros(3, np.float32), 1, 3, 3, 0.0, 255.0, np.empty(10, np.uint8)
        )
    with pytest.raises(ValueError):  # out overlapping the input
        buf = np.zeros(40, np.uint8)
        core.quantize_to_nhwc(
            buf.view(np.float32).reshape(1, 1, 2, 5), 1.0, 0.0, 0.0, 255.0, buf[:10].reshape(1, 2, 5, 1)
        )


finite_f32 = st.floats(width=32, allow_nan=False)
scales = st.floats(min_value=1e-30, max_value=1e30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    x=hnp.arrays(np.float32, st.integers(0, 80), elements=finite_f32 | st.sampled_from([np.inf, -np.inf])),
    scale=scales,
    dtype=st.sampled_from(["uint8", "int8"]),
    data=st.data(),
)
def test_property_quantize_dequantize(isa_threads, x, scale, dtype, data):
    lo, hi = RANGE[dtype]
    zp = data.draw(st.integers(lo, hi))
    q = qkern.quantize(x, scale, zp, dtype)
    _same(q, _reference(qkern.quantize, x, scale, zp, dtype))
    _same(qkern.dequantize(q, scale, zp), _reference(qkern.dequantize, q, scale, zp))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    acc=hnp.arrays(np.int32, st.tuples(st.integers(1, 5), st.integers(1, 40))),
    rounding=st.sampled_from(["gemmlowp", "single", "fp32"]),
    dtype=st.sampled_from(["uint8", "int8"]),
    with_bias=st.booleans(),
    data=st.data(),
)
def test_property_requantize(isa_threads, acc, rounding, dtype, with_bias, data):
    lo, hi = RANGE[dtype]
    channels = acc.shape[1]
    zp = data.draw(st.integers(lo, hi))
    per_channel = data.draw(st.booleans())
    n = channels if per_channel else None
    if rounding == "fp32":
        m = data.draw(hnp.arrays(np.float32, n or (), elements=st.floats(0, 1e6, width=32)))
        rq = qkern.Requant(m, None, zp, dtype=dtype, rounding="fp32")
    else:
        mult = data.draw(hnp.arrays(np.int32, n or (), elements=st.integers(0, 2**31 - 1)))
        shift = data.draw(hnp.arrays(np.int32, n or (), elements=st.integers(-31, 30)))
        rq = qkern.Requant(mult, shift, zp, dtype=dtype, rounding=rounding)
    bias = data.draw(hnp.arrays(np.int32, channels)) if with_bias else None
    _same(qkern.requantize(acc, rq, bias), _reference(qkern.requantize, acc, rq, bias))
