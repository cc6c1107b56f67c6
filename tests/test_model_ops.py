"""Native model ops == the NumPy reference (qkern.reference.model_ops) bit for bit, every ISA x 1/2 threads."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import qkern
from hypothesis import given, settings
from hypothesis import strategies as st
from qkern import _backend
from qkern.model import ModelBuilder
from qkern.reference import model_ops as R

core = _backend.core
pytestmark = pytest.mark.skipif(core is None, reason="needs the native backend")
ISA_THREADS = [(isa, t) for isa in qkern.available_isas() for t in (1, 2)]
DTYPES = ["uint8", "int8"]


@contextlib.contextmanager
def _isa_threads(isa: str, threads: int) -> Iterator[None]:
    old = qkern.get_isa(), qkern.get_num_threads()
    qkern.set_isa(isa)
    qkern.set_num_threads(threads)
    try:
        yield
    finally:
        qkern.set_isa(old[0])
        qkern.set_num_threads(old[1])


def _check_every_isa(expect: np.ndarray, fill: Callable[[np.ndarray], object], *label: object) -> None:
    """fill(out) into a fresh buffer of expect's shape and dtype on every ISA x thread count: each out == expect."""
    for isa, t in ISA_THREADS:
        with _isa_threads(isa, t):
            out = np.empty(expect.shape, expect.dtype)
            fill(out)
            assert np.array_equal(out, expect), (*label, isa, t)


def _q(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def _zp(rng: np.random.Generator, dtype: str) -> int:
    info = np.iinfo(dtype)
    return int(rng.integers(info.min, info.max + 1))


def _range(rng: np.random.Generator, dtype: str) -> tuple[int, int]:
    info = np.iinfo(dtype)
    a, b = sorted(int(v) for v in rng.integers(info.min, info.max + 1, 2))
    return (a, b) if a < b and rng.random() < 0.5 else (info.min, info.max)


scales = st.floats(2.0**-14, 8.0, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    s_in=scales,
    s_out=scales,
    din=st.sampled_from(DTYPES),
    dout=st.sampled_from(DTYPES),
    offset=st.integers(0, 5),
)
def test_rescale(seed: int, s_in: float, s_out: float, din: str, dout: str, offset: int) -> None:
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 300)), int(rng.integers(1, 40))
    x = _q(rng, din, (rows, cols))
    m, sh = R.rescale_multiplier(s_in, s_out)
    lo, hi = _range(rng, dout)
    zo = int(np.clip(_zp(rng, dout), lo, hi))
    p = (_zp(rng, din), m, sh, zo, lo, hi)
    expect = R.rescale(x, *p, dout)
    for isa, t in ISA_THREADS:
        with _isa_threads(isa, t):
            out = np.zeros((rows, cols + offset + 3), dout)
            core.model_rescale(x, out, offset, *p)
            assert np.array_equal(out[:, offset : offset + cols], expect), (isa, t)
            assert not out[:, :offset].any() and not out[:, offset + cols :].any()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    s1=scales,
    s2=scales,
    so=scales,
    d1=st.sampled_from(DTYPES),
    d2=st.sampled_from(DTYPES),
    do=st.sampled_from(DTYPES),
    n=st.integers(1, 40000),
)
def test_add(seed: int, s1: float, s2: float, so: float, d1: str, d2: str, do: str, n: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _q(rng, d1, (n,)), _q(rng, d2, (n,))
    m1, sh1, m2, sh2, mo, sho = R.add_multipliers(s1, s2, so)
    lo, hi = _range(rng, do)
    z1, z2, zo = _zp(rng, d1), _zp(rng, d2), _zp(rng, do)
    expect = R.add(a, z1, m1, sh1, b, z2, m2, sh2, mo, sho, zo, lo, hi, do)
    _check_every_isa(expect, lambda out: core.model_add(a, b, out, z1, m1, sh1, z2, m2, sh2, mo, sho, zo, lo, hi))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
)
def test_max_pool(seed: int, k: int, stride: int, dtype: str, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    pad = data.draw(st.integers(0, k // 2))
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 20))
    h, w = int(rng.integers(max(1, k - 2 * pad), 12)), int(rng.integers(max(1, k - 2 * pad), 12))
    x = _q(rng, dtype, (n, h, w, c))
    expect = R.max_pool2d(x, k, stride, pad)
    _check_every_isa(expect, lambda out: core.model_max_pool(x, out, k, stride, pad))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    s_in=scales,
    s_out=scales,
    din=st.sampled_from(DTYPES),
    dout=st.sampled_from(DTYPES),
)
def test_avg_pool(seed: int, k: int, stride: int, s_in: float, s_out: float, din: str, dout: str) -> None:
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 20))
    h, w = int(rng.integers(k, 12)), int(rng.integers(k, 12))
    x = _q(rng, din, (n, h, w, c))
    m, sh = R.avg_multiplier(s_in, k * k, s_out)
    lo, hi = _range(rng, dout)
    p = (_zp(rng, din), m, sh, _zp(rng, dout), lo, hi)
    expect = R.avg_pool2d(x, k, stride, *p, dout)
    _check_every_isa(expect, lambda out: core.model_avg_pool(x, out, k, stride, *p))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), s_in=scales, s_out=scales, din=st.sampled_from(DTYPES), dout=st.sampled_from(DTYPES))
def test_global_avg_pool(seed: int, s_in: float, s_out: float, din: str, dout: str) -> None:
    rng = np.random.default_rng(seed)
    n, h, w, c = int(rng.integers(1, 4)), int(rng.integers(1, 15)), int(rng.integers(1, 15)), int(rng.integers(1, 600))
    x = _q(rng, din, (n, h, w, c))
    m, sh = R.avg_multiplier(s_in, h * w, s_out)
    lo, hi = _range(rng, dout)
    p = (_zp(rng, din), m, sh, _zp(rng, dout), lo, hi)
    expect = R.global_avg_pool(x, *p, dout)
    _check_every_isa(expect, lambda out: core.model_global_avg_pool(x, out, *p))


def test_extreme_multipliers_and_saturation() -> None:
    """shift at both ends of [-31, 30], multiplier 0 and 2^31-1: still exact, clamped at qmin/qmax."""
    rng = np.random.default_rng(1)
    x = _q(rng, "int8", (64, 7))
    for m, sh in ((0, 0), (2**31 - 1, 30), (2**31 - 1, -31), (1 << 30, 1), (1 << 30, -30), (12345, 17)):
        p = (-5, m, sh, 3, -100, 90)
        expect = R.rescale(x, *p, "int8")
        _check_every_isa(expect, lambda out, p=p: core.model_rescale(x, out, 0, *p), m, sh)


def test_lut_and_requantize_steps_match_reference() -> None:
    """The model's LUT gather (a rotated byte table) and identity requantize (a view) equal the reference."""
    rng = np.random.default_rng(2)
    for din in DTYPES:
        b = qkern.model.ModelBuilder()
        x = b.input(qkern.QParams(np.float32(0.05), 0 if din == "int8" else 128, din), name="x")
        table = _q(rng, "uint8", (256,))
        t = b.lut(x, table, qkern.QParams(np.float32(0.1), 7), name="t")
        r = b.requantize(t, qkern.QParams(np.float32(0.1), 7), name="same")
        b.output(r)
        model = b.build()
        xf = rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * 4
        tr = model.trace(xf)
        assert np.array_equal(tr["t"], R.lut(tr["x"], table)) and np.array_equal(tr["same"], tr["t"])
        with qkern.backend("reference"):
            assert np.array_equal(model.trace(xf)["t"], tr["t"])


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (
            lambda: core.model_rescale(np.zeros((2, 3), np.uint8), np.zeros((2, 3), np.uint8), 1, 0, 1, 0, 0, 0, 255),
            ValueError,
        ),
        (
            lambda: core.model_rescale(np.zeros((2, 3), np.int32), np.zeros((2, 3), np.uint8), 0, 0, 1, 0, 0, 0, 255),
            TypeError,
        ),
        (
            lambda: core.model_rescale(np.zeros((2, 3), np.uint8), np.zeros((2, 3), np.uint8), 0, 0, 1, 31, 0, 0, 255),
            ValueError,
        ),
        (
            lambda: core.model_add(
                np.zeros(3, np.uint8), np.zeros(4, np.uint8), np.zeros(3, np.uint8), 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 255
            ),
            ValueError,
        ),
        (
            lambda: core.model_max_pool(np.zeros((1, 2, 2, 1), np.uint8), np.zeros((1, 1, 1, 1), np.uint8), 3, 1, 0),
            ValueError,
        ),
        (
            lambda: core.model_pair_table(
                np.zeros(3, np.uint8), np.zeros(3, np.uint8), np.zeros(65535, np.uint8), np.zeros(3, np.uint8)
            ),
            ValueError,
        ),
        (
            lambda: core.model_pair_table(
                np.zeros(3, np.uint8), np.zeros(3, np.uint8), np.zeros(65536, np.int8), np.zeros(3, np.uint8)
            ),
            TypeError,
        ),
        (lambda: core.model_copy_channels(np.zeros((2, 3), np.uint8), np.zeros((2, 5), np.int8), 0), TypeError),
        (lambda: core.model_copy_channels(np.zeros((2, 3), np.uint8), np.zeros((2, 5), np.uint8), 3), ValueError),
        (lambda: core.model_copy_channels(np.zeros((2, 3), np.uint8), np.zeros((3, 5), np.uint8), 0), ValueError),
        (
            lambda: core.model_max_pool(np.zeros((1, 0, 4, 1), np.uint8), np.zeros((1, 1, 3, 1), np.uint8), 2, 2, 1),
            ValueError,
        ),
        (
            lambda: core.model_max_pool(np.zeros((1, 4, 4, 1), np.uint8), np.zeros((1, 9, 1, 1), np.uint8), 2, 2, 0),
            ValueError,
        ),
        (
            lambda: core.model_avg_pool(
                np.zeros((1, 4, 4, 1), np.uint8), np.zeros((1, 2, 2, 1), np.uint8), 2, 2, 300, 1, 0, 0, 0, 255
            ),
            ValueError,
        ),
        (
            lambda: core.model_global_avg_pool(
                np.zeros((1, 4, 4, 2), np.uint8), np.zeros((1, 1, 1, 3), np.uint8), 0, 1, 0, 0, 0, 255
            ),
            ValueError,
        ),
    ],
)
def test_native_rejects_bad_buffers(call, exc) -> None:
    with pytest.raises(exc):
        call()


@pytest.mark.skipif(_backend.core is None, reason="qkern._core is not built")
@pytest.mark.parametrize("cols", [1, 2, 3, 4, 5, 8, 16, 17, 24, 32, 64, 65])
def test_copy_channels_places_a_concat_part(cols: int) -> None:
    """A concat part on the output's grid, copied row by row to its channel offset (the fixed-size
    specialisations and the general row length), leaving the other channels untouched."""
    rng = np.random.default_rng(cols)
    x = rng.integers(-128, 128, (3, 5, 7, cols), dtype=np.int64).astype(np.int8)
    for offset in (0, 3):
        out = np.full((3, 5, 7, cols + 6), 99, np.int8)
        _backend.core.model_copy_channels(x, out, offset)
        want = np.full_like(out, 99)
        want[..., offset : offset + cols] = x
        np.testing.assert_array_equal(out, want)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), scale=scales, dtype=st.sampled_from(DTYPES), four_d=st.booleans())
def test_input_quantize_and_output_dequantize(seed: int, scale: float, dtype: str, four_d: bool) -> None:
    """A model's input step (fused NCHW -> NHWC quantize) and output step (NHWC -> NCHW dequantize) ==
    qkern.quantize/dequantize (ties, inf included), for 1 to 5 channels, on every ISA and thread count."""
    rng = np.random.default_rng(seed)
    lo, hi = _range(rng, dtype)
    qp = qkern.QParams(np.float32(scale), int(np.clip(_zp(rng, dtype), lo, hi)), dtype, qmin=lo, qmax=hi)
    shape = ((2, 3, 5, 7), (1, 2, 40, 30), (1, 1, 9, 9), (2, 4, 3, 70), (1, 5, 6, 6))[seed % 5] if four_d else (3, 11)
    x = (rng.standard_normal(shape) * scale * 100).astype(np.float32)
    flat = x.reshape(-1)
    flat[:20] = (np.arange(20, dtype=np.float32) - 10.0 + 0.5) * np.float32(scale)  # ties at the half-way points
    flat[20:24] = [np.inf, -np.inf, 3e38, -3e38]
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if four_d else x
    expect = qp.quantize(nhwc)
    deq = qp.dequantize(expect)
    expect_back = np.ascontiguousarray(deq.transpose(0, 3, 1, 2)) if four_d else deq
    b = ModelBuilder()
    b.output(b.input(qp, name="x"), name="y")
    model = b.build()
    for isa, t in ISA_THREADS:
        with _isa_threads(isa, t):
            for _ in range(2):  # the call that plans, then one through the plan's buffers
                assert np.array_equal(model.trace(x)["x"], expect), (isa, t)
                back = model(x)
                assert back.dtype == np.float32 and back.shape == x.shape
                assert np.array_equal(back, expect_back), (isa, t)
    for pos in (0, -1):  # a NaN in the vector body and in the tail, on every ISA
        bad = x.copy()
        bad.reshape(-1)[pos] = np.nan
        for isa, t in ISA_THREADS:
            with _isa_threads(isa, t), pytest.raises(ValueError, match="NaN"):
                model(bad)


def test_add_extreme_output_multipliers() -> None:
    """The AVX2 add's 64-bit lanes (emulated arithmetic shift, 64-bit clamp) at both ends of the shift range."""
    rng = np.random.default_rng(4)
    n = 1000
    for d1, d2, do in (("uint8", "int8", "int8"), ("int8", "uint8", "uint8")):
        a, b = _q(rng, d1, (n,)), _q(rng, d2, (n,))
        for m1, sh1, mo, sho in (
            (2**31 - 1, 0, 2**31 - 1, 30),
            ((1 << 30), -1, 2**31 - 1, -31),
            (1 << 30, -30, 7, 0),
            (2**31 - 1, 0, 1 << 30, -20),
            (0, 0, 2**31 - 1, 30),
        ):
            lo, hi = np.iinfo(do).min + 3, np.iinfo(do).max - 2
            args = (_zp(rng, d1), m1, sh1, _zp(rng, d2), 1 << 30, -2, mo, sho, int(rng.integers(lo, hi)), lo, hi)
            expect = R.add(a, args[0], m1, sh1, b, *args[3:], do)
            _check_every_isa(
                expect, lambda out, a=a, b=b, args=args: core.model_add(a, b, out, *args), m1, sh1, mo, sho
            )
