"""The native kernels equal the NumPy reference bit for bit on every ISA and thread count: odd shapes, every
operand type, zero point, per-channel weights, bias, batch > 1, every requant mode, int32 wrap-around."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import qkern
from conftest import ODD_SIZES, QTYPES, rand_q, rand_zp
from qkern import _backend
from qkern.conv_shape import conv3x3_fits

# Every test runs on each available ISA x {1, 2} threads (conftest's isa_threads).
pytestmark = [
    pytest.mark.skipif(_backend.core is None, reason="qkern._core is not built"),
    pytest.mark.usefixtures("isa_threads"),
]


def _requants(rng: np.random.Generator, channels: int) -> list[qkern.Requant | None]:
    w_scale = np.exp(rng.uniform(-7, -3, channels))
    return [
        None,
        qkern.Requant.from_scales(0.05, float(w_scale[0]), 0.5, 7, dtype="uint8", rounding="gemmlowp"),
        qkern.Requant.from_scales(0.05, w_scale, 0.3, -5, dtype="int8", rounding="gemmlowp", relu=True),
        qkern.Requant.from_scales(0.05, w_scale, 0.4, 100, dtype="uint8", rounding="single"),
        qkern.Requant.from_scales(0.05, float(w_scale[0]), 0.2, 0, dtype="int8", rounding="fp32"),
        qkern.Requant.from_scales(0.05, w_scale, 0.2, 128, dtype="uint8", rounding="fp32"),
    ]


def both(fn, *args, **kwargs):
    got = fn(*args, **kwargs)
    with qkern.backend("reference"):
        want = fn(*args, **kwargs)
    assert got.dtype == want.dtype and got.shape == want.shape
    return got, want


def _bias(rng, n):
    return rng.integers(-(2**31), 2**31, n, dtype=np.int64).astype(np.int32) if rng.random() < 0.7 else None


@pytest.mark.parametrize(("ta", "tb"), list(itertools.product(QTYPES, QTYPES)), ids=lambda t: np.dtype(t).name)
def test_gemm_native_equals_reference(rng, ta, tb):
    shapes = list(itertools.product(ODD_SIZES, repeat=3))
    picks = rng.choice(len(shapes), 120, replace=False)
    for idx in picks:
        m, n, k = shapes[idx]
        a, b = rand_q(rng, ta, (m, k)), rand_q(rng, tb, (k, n))
        za = rand_zp(rng, ta) if rng.random() < 0.8 else 0
        zb = rand_zp(rng, tb, n) if rng.random() < 0.5 else rand_zp(rng, tb)
        bias = _bias(rng, n)
        for rq in _requants(rng, n):
            got, want = both(qkern.gemm, a, b, a_zero_point=za, b_zero_point=zb, bias=bias, requant=rq)
            np.testing.assert_array_equal(got, want, err_msg=f"m={m} n={n} k={k} rq={rq!r}")


def test_gemm_native_wraps_like_reference(rng):
    k = 70001
    a = np.where(rng.random((3, k)) < 0.9, 255, 0).astype(np.uint8)
    b = np.where(rng.random((k, 5)) < 0.9, -128, 127).astype(np.int8)
    got, want = both(qkern.gemm, a, b, b_zero_point=127, bias=np.full(5, 2**31 - 1, np.int32))
    np.testing.assert_array_equal(got, want)


def test_gemm_native_views_and_strides(rng):
    base = rand_q(rng, np.uint8, (40, 70))
    a = base[3:30:2, 5:60]  # non-contiguous, offset
    b = np.asfortranarray(rand_q(rng, np.int8, (55, 33)))
    got, want = both(qkern.gemm, a, b, a_zero_point=3, b_zero_point=-2)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        got, qkern.gemm(np.ascontiguousarray(a), np.ascontiguousarray(b), a_zero_point=3, b_zero_point=-2)
    )


@pytest.mark.parametrize(("tx", "tw"), list(itertools.product(QTYPES, QTYPES)), ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 0), (2, 1)])
def test_conv3x3_native_equals_reference(rng, tx, tw, stride, padding):
    cases = [
        ((1, 1), 1, 1, 1),
        ((2, 3), 3, 5, 3),
        ((5, 7), 17, 65, 1),
        ((17, 13), 4, 3, 3),
        ((5, 7), 63, 17, 1),
        ((3, 3), 129, 5, 1),
    ]
    for (h, w), c, o, n in cases:
        if not conv3x3_fits(h, w, padding):
            continue
        x, wt = rand_q(rng, tx, (n, h, w, c)), rand_q(rng, tw, (o, 3, 3, c))
        xz = rand_zp(rng, tx)
        wz = rand_zp(rng, tw, o) if rng.random() < 0.5 else rand_zp(rng, tw)
        bias = _bias(rng, o)
        for rq in _requants(rng, o):
            got, want = both(
                qkern.conv3x3,
                x,
                wt,
                stride=stride,
                padding=padding,
                x_zero_point=xz,
                w_zero_point=wz,
                bias=bias,
                requant=rq,
            )
            np.testing.assert_array_equal(got, want, err_msg=f"{(n, h, w, c, o)} rq={rq!r}")


@pytest.mark.parametrize(("tx", "tw"), list(itertools.product(QTYPES, QTYPES)), ids=lambda t: np.dtype(t).name)
def test_conv_transpose2x2_native_equals_reference(rng, tx, tw):
    for (h, w), c, o, n in [
        ((1, 1), 1, 1, 1),
        ((2, 3), 3, 5, 3),
        ((5, 7), 17, 65, 1),
        ((17, 13), 4, 3, 2),
        ((5, 6), 16, 8, 1),
        ((3, 3), 129, 63, 1),
    ]:
        x, wt = rand_q(rng, tx, (n, h, w, c)), rand_q(rng, tw, (c, 2, 2, o))
        xz = rand_zp(rng, tx)
        wz = rand_zp(rng, tw, o) if rng.random() < 0.5 else rand_zp(rng, tw)
        bias = _bias(rng, o)
        for rq in _requants(rng, o):
            got, want = both(qkern.conv_transpose2x2, x, wt, x_zero_point=xz, w_zero_point=wz, bias=bias, requant=rq)
            np.testing.assert_array_equal(got, want, err_msg=f"{(n, h, w, c, o)} rq={rq!r}")


def test_out_argument_is_filled_and_returned(rng):
    a, b = rand_q(rng, np.uint8, (5, 9)), rand_q(rng, np.int8, (9, 4))
    out = np.full((5, 4), -1, np.int32)
    res = qkern.gemm(a, b, out=out)
    assert res is out
    np.testing.assert_array_equal(out, qkern.reference.gemm(a, b))
