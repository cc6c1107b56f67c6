"""The NumPy reference kernels equal independent int64 loop computations on odd shapes and zero points."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import ODD_SIZES, QTYPES, rand_q, rand_zp
from oracles import conv3x3_int64, deconv2x2_int64, gemm_int64, gemm_triple_loop
from qkern import reference
from qkern.conv_shape import conv3x3_fits


@pytest.mark.parametrize(("ta", "tb"), list(itertools.product(QTYPES, QTYPES)))
def test_reference_gemm_odd_shapes(rng, ta, tb):
    for m, n, k in itertools.product([1, 2, 7, 17, 33], [1, 3, 16, 65], [1, 4, 15, 64]):
        a, b = rand_q(rng, ta, (m, k)), rand_q(rng, tb, (k, n))
        za = rand_zp(rng, ta)
        zb = rand_zp(rng, tb, n) if rng.random() < 0.5 else rand_zp(rng, tb)
        bias = rng.integers(-(2**31), 2**31, n, dtype=np.int64).astype(np.int32) if rng.random() < 0.5 else None
        np.testing.assert_array_equal(reference.gemm(a, b, za, zb, bias), gemm_int64(a, b, za, zb, bias))


def test_reference_gemm_equals_literal_triple_loop(rng):
    for m, n, k in [(1, 1, 1), (3, 5, 7), (6, 2, 9), (2, 9, 33)]:
        a, b = rand_q(rng, np.uint8, (m, k)), rand_q(rng, np.int8, (k, n))
        za, zb = rand_zp(rng, np.uint8), rand_zp(rng, np.int8, n)
        bias = rng.integers(-1000, 1000, n).astype(np.int32)
        np.testing.assert_array_equal(reference.gemm(a, b, za, zb, bias), gemm_triple_loop(a, b, za, zb, bias))


def test_reference_gemm_wraps_int32(rng):
    k = 70000
    a = np.full((2, k), 255, np.uint8)
    b = np.full((k, 3), -128, np.int8)
    got = reference.gemm(a, b, 0, 127)  # each product 255 * -255: the exact sum is far below INT32_MIN
    assert np.all(got == gemm_int64(a, b, 0, 127, None))
    assert int(got[0, 0]) != 255 * -255 * k


@pytest.mark.parametrize(("tx", "tw"), list(itertools.product(QTYPES, QTYPES)))
@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 0), (2, 1)])
def test_reference_conv3x3(rng, tx, tw, stride, padding):
    for (h, w), c, o, n in [((1, 1), 1, 1, 1), ((2, 3), 3, 5, 3), ((5, 7), 17, 4, 1), ((17, 13), 4, 3, 2)]:
        if not conv3x3_fits(h, w, padding):
            continue
        x, wt = rand_q(rng, tx, (n, h, w, c)), rand_q(rng, tw, (o, 3, 3, c))
        xz, wz = rand_zp(rng, tx), rand_zp(rng, tw, o)
        bias = rng.integers(-(2**20), 2**20, o).astype(np.int32)
        np.testing.assert_array_equal(
            reference.conv3x3(x, wt, stride, padding, xz, wz, bias),
            conv3x3_int64(x, wt, stride, padding, xz, wz, bias),
        )


@pytest.mark.parametrize(("tx", "tw"), list(itertools.product(QTYPES, QTYPES)))
def test_reference_conv_transpose2x2(rng, tx, tw):
    for (h, w), c, o, n in [((1, 1), 1, 1, 1), ((2, 3), 3, 5, 3), ((5, 7), 17, 4, 1), ((4, 4), 64, 65, 2)]:
        x, wt = rand_q(rng, tx, (n, h, w, c)), rand_q(rng, tw, (c, 2, 2, o))
        xz, wz = rand_zp(rng, tx), rand_zp(rng, tw, o) if o > 1 else rand_zp(rng, tw)
        bias = rng.integers(-(2**20), 2**20, o).astype(np.int32)
        np.testing.assert_array_equal(
            reference.conv_transpose2x2(x, wt, xz, wz, bias), deconv2x2_int64(x, wt, xz, wz, bias)
        )


def test_odd_size_list_is_the_documented_one():
    assert ODD_SIZES == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 17, 31, 32, 33, 63, 64, 65]
