"""Property tests (hypothesis): native gemm, conv3x3, conv_transpose2x2 and the fused output stage equal the
NumPy reference bit for bit over random shapes (0 and 1 included), dtypes, zero points, per-channel
parameters, layouts (strided, negative strides), requant modes, ISA and thread count."""

from __future__ import annotations

import numpy as np
import pytest
import qkern
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_support import FILLS, ISAS, QDTYPES, THREADS, biases, examples, layouts, qarray, requants, zero_points
from qkern import _backend, reference

pytestmark = pytest.mark.skipif(_backend.core is None, reason="qkern._core is not built")


def _on(isa: str, threads: int):
    qkern.set_isa(isa)
    qkern.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _restore_runtime():
    isa, threads = qkern.get_isa(), qkern.get_num_threads()
    yield
    qkern.set_isa(isa)
    qkern.set_num_threads(threads)


@examples(150)
@given(
    st.data(),
    st.integers(0, 40),
    st.integers(0, 70),
    st.integers(0, 40),
    QDTYPES,
    QDTYPES,
    FILLS,
    st.integers(0, 2**32 - 1),
    ISAS,
    THREADS,
)
def test_gemm_equals_reference(data, m, k, n, ta, tb, fill, seed, isa, threads):
    a = qarray(seed, ta, (m, k), fill)
    b = qarray(seed + 1, tb, (k, n), fill)
    za = data.draw(zero_points(ta))
    zb = data.draw(zero_points(tb, n))
    bias = data.draw(biases(n))
    rq = data.draw(requants(n))
    want = reference.gemm(a, b, za, zb, bias, rq)
    av, bv = data.draw(layouts(a)), data.draw(layouts(b))
    _on(isa, threads)
    got = qkern.gemm(av, bv, a_zero_point=za, b_zero_point=zb, bias=bias, requant=rq)
    np.testing.assert_array_equal(got, want)
    packed = qkern.PackedGemm(bv, zb, bias, rq)
    np.testing.assert_array_equal(packed(av, a_zero_point=za), want)


@examples(120)
@given(
    st.data(),
    st.integers(0, 2),
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(0, 20),
    st.integers(0, 20),
    st.sampled_from([1, 2]),
    st.sampled_from([0, 1]),
    QDTYPES,
    QDTYPES,
    FILLS,
    st.integers(0, 2**32 - 1),
    ISAS,
    THREADS,
)
def test_conv3x3_equals_reference(data, n, h, w, c, o, stride, padding, tx, tw, fill, seed, isa, threads):
    if h + 2 * padding < 3 or w + 2 * padding < 3:
        h, w = h + 2, w + 2  # the smallest inputs the 3x3 window fits
    x = qarray(seed, tx, (n, h, w, c), fill)
    wt = qarray(seed + 1, tw, (o, 3, 3, c), fill)
    xz = data.draw(zero_points(tx))
    wz = data.draw(zero_points(tw, o))
    bias = data.draw(biases(o))
    rq = data.draw(requants(o))
    want = reference.conv3x3(x, wt, stride, padding, xz, wz, bias, rq)
    xv = data.draw(layouts(x))
    _on(isa, threads)
    got = qkern.conv3x3(xv, wt, stride=stride, padding=padding, x_zero_point=xz, w_zero_point=wz, bias=bias, requant=rq)
    np.testing.assert_array_equal(got, want)
    packed = qkern.PackedConv3x3(wt, wz, bias, rq, stride=stride, padding=padding)
    np.testing.assert_array_equal(packed(xv, x_zero_point=xz), want)


@examples(120)
@given(
    st.data(),
    st.integers(0, 2),
    st.integers(0, 7),
    st.integers(0, 7),
    st.integers(0, 40),
    st.integers(0, 20),
    QDTYPES,
    QDTYPES,
    FILLS,
    st.integers(0, 2**32 - 1),
    ISAS,
    THREADS,
)
def test_conv_transpose2x2_equals_reference(data, n, h, w, c, o, tx, tw, fill, seed, isa, threads):
    x = qarray(seed, tx, (n, h, w, c), fill)
    wt = qarray(seed + 1, tw, (c, 2, 2, o), fill)
    xz = data.draw(zero_points(tx))
    wz = data.draw(zero_points(tw, o))
    bias = data.draw(biases(o))
    rq = data.draw(requants(o))
    want = reference.conv_transpose2x2(x, wt, xz, wz, bias, rq)
    xv = data.draw(layouts(x))
    _on(isa, threads)
    got = qkern.conv_transpose2x2(xv, wt, x_zero_point=xz, w_zero_point=wz, bias=bias, requant=rq)
    np.testing.assert_array_equal(got, want)
    packed = qkern.PackedConvTranspose2x2(wt, wz, bias, rq)
    np.testing.assert_array_equal(packed(xv, x_zero_point=xz), want)


ACCS = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([-(2**31), -(2**31) + 1, -1, 0, 1, 2**31 - 2, 2**31 - 1]),
    st.integers(-70000, 70000),
)


@examples(300)
@given(st.data(), st.integers(1, 24), ISAS)
def test_requantize_equals_the_native_output_stage(data, channels, isa):
    """qkern.requantize on arbitrary int32 values == the kernels' fused stage: a K = 0 gemm whose
    accumulators are exactly its bias (eq. (6) with an empty sum)."""
    acc = np.array(data.draw(st.lists(ACCS, min_size=channels, max_size=channels)), dtype=np.int32)
    rq = data.draw(requants(channels).filter(lambda r: r is not None))
    bias = data.draw(biases(channels))
    want = reference.requantize_reference(acc[None], rq, bias)
    np.testing.assert_array_equal(qkern.requantize(acc[None], rq, bias), want)
    total = acc.astype(np.int64) + (0 if bias is None else bias)
    wrapped = (((total + 2**31) % 2**32) - 2**31).astype(np.int32)
    qkern.set_isa(isa)
    fused = qkern.gemm(np.zeros((1, 0), np.uint8), np.zeros((0, channels), np.int8), bias=wrapped, requant=rq)
    np.testing.assert_array_equal(fused, want)
