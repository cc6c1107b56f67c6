"""Dynamic quantization: the float32 output form and the activation quantizer equal their NumPy forms bit
for bit on every ISA x {1, 2} threads; DynamicLinear end to end; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import qkern
from conftest import rand_q
from hypothesis import given, settings
from hypothesis import strategies as st
from qkern.reference import dynamic as R

# (M, K, N): M = 0/1, K not a multiple of any k-group (2 on avx2, 4 on avx512vnni), N across panel edges,
# and one case large enough for the two-thread split.
SHAPES = [(0, 5, 3), (1, 1, 1), (1, 7, 17), (5, 3, 16), (7, 33, 65), (13, 130, 31), (67, 259, 61)]


def _layer(rng, k, n, *, per_channel, per_row, act_dtype="uint8", weight_zp=False, bias=True, reduce_range=False):
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    qp = None
    if weight_zp:  # affine int8 weights: exercises the kernels' weight zero-point (row-sum) term
        lo, hi = (w.min(axis=1), w.max(axis=1)) if per_channel else (w.min(), w.max())
        qp = qkern.calc_qparams(lo, hi, "int8")
    return qkern.DynamicLinear(
        w,
        b,
        per_channel=per_channel,
        per_row=per_row,
        act_dtype=act_dtype,
        weight_qparams=qp,
        reduce_range=reduce_range,
    )


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in SHAPES])
@pytest.mark.parametrize("per_row", [False, True], ids=["act-pt", "act-pr"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["w-pt", "w-pc"])
@pytest.mark.parametrize("a_dtype", [np.uint8, np.int8, "uint7"])
def test_float_output_form_equals_formula(isa_threads, rng, shape, per_row, per_channel, a_dtype):
    """uint7: a layer built for uint8 activations with reduce_range (below 128: the 7-bit kernel's weights)."""
    m, k, n = shape
    seven = a_dtype == "uint7"
    a_dtype = np.uint8 if seven else a_dtype
    layer = _layer(rng, k, n, per_channel=per_channel, per_row=per_row, weight_zp=per_channel, reduce_range=seven)
    a = rand_q(rng, a_dtype, (m, k))
    if seven:
        a &= 0x7F
    info = np.iinfo(a_dtype)
    count = m if per_row else 1
    scale = np.exp(rng.uniform(-9, 1, count)).astype(np.float32)
    zp = rng.integers(info.min, info.max + 1, count).astype(np.int32)
    if not per_row:
        scale, zp = scale[0], int(zp[0])
    got = layer.run_quantized(a, scale, zp)
    want = R.float_output(
        a, np.atleast_1d(scale), np.atleast_1d(zp), layer.b, layer.weight_zero_point, layer.weight_scale, layer.bias
    )
    assert got.dtype == np.float32 and got.shape == (m, n)
    assert np.array_equal(got.view(np.int32), want.view(np.int32))  # bit for bit, signed zeros included


def test_float_output_wraps_like_int32(isa_threads):
    # K * 255 * 127 overflows int32 at K = 70000: the accumulator wraps (eq. (6)) before the float step.
    k = 70000
    w = np.full((3, k), 1.0, dtype=np.float32)
    layer = qkern.DynamicLinear(w, None, per_channel=True)
    a = np.full((2, k), 255, dtype=np.uint8)
    got = layer.run_quantized(a, np.float32(0.5), 0)
    want = R.float_output(a, [0.5], [0], layer.b, layer.weight_zero_point, layer.weight_scale, None)
    assert np.array_equal(got, want)
    assert (got < 0).all()  # 70000 * 255 * 127 = 2.27e9 wrapped to a negative int32


def _inputs(rng, m, k):
    """Activations of several shapes of range: mixed sign, positive only, negative only, all zero, tiny
    (the small-scale floor of eq. (18)), huge."""
    return {
        "normal": rng.standard_normal((m, k)).astype(np.float32),
        "positive": rng.uniform(0, 6, (m, k)).astype(np.float32),
        "negative": rng.uniform(-3, -0.5, (m, k)).astype(np.float32),
        "zeros": np.zeros((m, k), np.float32),
        "tiny": (rng.standard_normal((m, k)) * 1e-4).astype(np.float32),
        "tiny-positive": rng.uniform(0, 2e-3, (m, k)).astype(np.float32),
        "huge": (rng.standard_normal((m, k)) * 1e30).astype(np.float32),
    }


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, 40), (33, 257), (300, 300)], ids=str)
@pytest.mark.parametrize("per_row", [False, True], ids=["pt", "pr"])
@pytest.mark.parametrize("act_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("reduce_range", [False, True], ids=["full", "reduced"])
def test_activation_quantization_equals_reference(isa_threads, rng, shape, per_row, act_dtype, reduce_range):
    scheme = R.SCHEMES[act_dtype]
    for name, x in _inputs(rng, *shape).items():
        q, s, z = qkern._backend.core.quantize_dynamic(x, scheme, per_row, reduce_range)
        rq, rs, rz = R.quantize_activation(x, act_dtype, per_row=per_row, reduce_range=reduce_range)
        assert q.dtype == rq.dtype and np.array_equal(q, rq), name
        assert np.array_equal(s, rs) and np.array_equal(z, rz), name


finite_f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=300, deadline=None)
@given(a=finite_f32, b=finite_f32, act_dtype=st.sampled_from(["uint8", "int8"]), reduce_range=st.booleans())
def test_choose_qparams_native_equals_reference(a, b, act_dtype, reduce_range):
    lo, hi = min(a, b), max(a, b)
    got = qkern._backend.core.choose_dynamic_qparams(lo, hi, R.SCHEMES[act_dtype], reduce_range)
    want = R.choose_qparams(lo, hi, act_dtype, reduce_range=reduce_range)
    assert np.float32(got[0]) == want[0] and got[1] == want[1]
    assert want[0] > 0 and np.isfinite(np.float32(1) / want[0])


@pytest.mark.parametrize("per_row", [False, True], ids=["pt", "pr"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["w-pt", "w-pc"])
@pytest.mark.parametrize("act_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("reduce_range", [False, True], ids=["full", "reduced"])
def test_dynamic_linear_native_equals_reference(isa_threads, rng, per_row, per_channel, act_dtype, reduce_range):
    layer = _layer(
        rng, 70, 45, per_channel=per_channel, per_row=per_row, act_dtype=act_dtype, reduce_range=reduce_range
    )
    for lead in [(), (1,), (4, 3), (0, 2), (130,)]:
        x = (rng.standard_normal((*lead, 70)) * rng.uniform(0.1, 10)).astype(np.float32)
        got = layer(x)
        with qkern.backend("reference"):
            want = layer(x)
        assert got.shape == (*lead, 45) and got.dtype == np.float32
        assert np.array_equal(got, want)


def test_seven_bit_layer_runs_the_seven_bit_kernel_and_checks_its_input(rng):
    """uint8 activations with reduce_range are below 128: the weights are packed for the ISA's 7-bit kernel
    (kernels.inc's a_bits), and an already quantized input that breaks that promise is refused on every ISA."""
    layer = _layer(rng, 40, 20, per_channel=True, per_row=False, reduce_range=True)
    seven = [k["name"] for k in qkern.kernels() if k["a_bits"] == 7 and k["isa"] == qkern.get_isa()]
    assert layer._core.kernel == (seven[0] if seven else layer._core.kernel)
    assert _layer(rng, 40, 20, per_channel=True, per_row=False)._core.kernel not in seven
    a = rng.integers(0, 128, (3, 40)).astype(np.uint8)
    layer.run_quantized(a, np.float32(0.1), 3)
    a[1, 7] = 128
    old = qkern.get_isa()
    try:
        for isa in qkern.available_isas():
            qkern.set_isa(isa)
            with pytest.raises(ValueError, match="above 127"):
                layer.run_quantized(a, np.float32(0.1), 3)
            with pytest.raises(TypeError, match="uint8"):
                layer.run_quantized(a.view(np.int8) & 0x3F, np.float32(0.1), 3)
    finally:
        qkern.set_isa(old)


def test_dynamic_linear_approximates_float(rng):
    w = rng.standard_normal((64, 256)).astype(np.float32) / 16
    b = rng.standard_normal(64).astype(np.float32)
    x = rng.standard_normal((32, 256)).astype(np.float32)
    exact = x.astype(np.float64) @ w.T.astype(np.float64) + b
    errs = {}
    for per_row in (False, True):
        for act in ("uint8", "int8"):
            y = qkern.DynamicLinear(w, b, per_row=per_row, act_dtype=act)(x)
            errs[per_row, act] = np.abs(y - exact).max() / np.abs(exact).max()
    assert max(errs.values()) < 0.02, errs


def test_non_contiguous_input_and_isa_switch(rng):
    layer = _layer(rng, 20, 9, per_channel=True, per_row=True)
    x = rng.standard_normal((20, 6)).astype(np.float32).T  # [6, 20], a transposed view
    want = layer(np.ascontiguousarray(x))
    assert np.array_equal(layer(x), want)
    old = qkern.get_isa()
    try:
        for isa in qkern.available_isas():
            qkern.set_isa(isa)
            assert np.array_equal(layer(x), want)
            assert layer.isa == isa
    finally:
        qkern.set_isa(old)


def test_dynamic_sequential_matches_its_layers(rng):
    l1 = _layer(rng, 12, 20, per_channel=True, per_row=False)
    l2 = _layer(rng, 20, 5, per_channel=False, per_row=True)
    x = rng.standard_normal((7, 12)).astype(np.float32)
    model = qkern.dynamic.DynamicSequential([l1, "relu", l2, "gelu"])
    h = np.maximum(l1(x), 0)
    assert np.array_equal(model(x), qkern.dynamic.gelu(l2(h)))
    g = qkern.dynamic.gelu(np.linspace(-5, 5, 101, dtype=np.float32))
    erf_gelu = [0.5 * v * (1 + __import__("math").erf(v / 2**0.5)) for v in np.linspace(-5, 5, 101)]
    np.testing.assert_allclose(g, np.array(erf_gelu, np.float32), rtol=1e-6, atol=1e-6)


def test_bad_input(rng):
    w = rng.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(TypeError, match="weight"):
        qkern.DynamicLinear(w.astype(np.float64))
    with pytest.raises(ValueError, match="weight"):
        qkern.DynamicLinear(w[0])
    bad = w.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="weight"):
        qkern.DynamicLinear(bad)
    with pytest.raises(ValueError, match="bias"):
        qkern.DynamicLinear(w, np.zeros(5, np.float32))
    with pytest.raises(TypeError, match="bias"):
        qkern.DynamicLinear(w, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="act_dtype"):
        qkern.DynamicLinear(w, act_dtype="int16")
    with pytest.raises(TypeError, match="weight_qparams"):
        qkern.DynamicLinear(w, weight_qparams=(0.1, 0))
    layer = qkern.DynamicLinear(w)
    with pytest.raises(TypeError, match="x"):
        layer(np.zeros((2, 6), np.float64))
    with pytest.raises(TypeError, match="x"):
        layer([[0.0] * 6])
    with pytest.raises(ValueError, match="x"):
        layer(np.zeros((2, 5), np.float32))
    for bad_value in (np.nan, np.inf, -np.inf):
        x = np.zeros((3, 6), np.float32)
        x[2, 5] = bad_value
        for per_row in (False, True):
            layer.per_row = per_row
            with pytest.raises(ValueError, match="finite"):
                layer(x)
            with qkern.backend("reference"), pytest.raises(ValueError, match="finite"):
                layer(x)
    with pytest.raises(ValueError, match="a_zero_point"):
        layer.run_quantized(np.zeros((2, 6), np.uint8), np.float32(0.1), 300)
    with pytest.raises(ValueError, match="a_scale"):
        layer.run_quantized(np.zeros((2, 6), np.uint8), np.float32(0.0), 3)
    with pytest.raises(ValueError, match="a_scale"):
        layer.run_quantized(np.zeros((2, 6), np.uint8), np.ones(3, np.float32), 3)
    with pytest.raises(TypeError, match="a"):
        layer.run_quantized(np.zeros((2, 6), np.int32), np.float32(0.1), 0)


def test_pickle_and_deepcopy(rng):
    import copy
    import pickle

    layer = _layer(rng, 30, 11, per_channel=True, per_row=True, act_dtype="int8")
    x = rng.standard_normal((4, 30)).astype(np.float32)
    want = layer(x)
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert clone.isa == layer.isa and np.array_equal(clone(x), want)
        assert not clone.b.flags.writeable


@pytest.mark.parametrize("per_row", [False, True], ids=["pt", "pr"])
def test_non_finite_input_rejected_on_every_isa(isa_threads, per_row):
    layer = qkern.DynamicLinear(np.ones((3, 40), np.float32), per_row=per_row)
    for position in (0, 17, 39):  # in the vector body and in the scalar tail
        for bad in (np.nan, np.inf, -np.inf):
            x = np.ones((5, 40), np.float32)
            x[3, position] = bad
            with pytest.raises(ValueError, match="finite"):
                layer(x)


def test_empty_depth_gives_the_bias(isa_threads):
    bias = np.array([1.5, -2.0], np.float32)
    layer = qkern.DynamicLinear(np.zeros((2, 0), np.float32), bias, per_row=True)
    assert np.array_equal(layer(np.zeros((3, 0), np.float32)), np.tile(bias, (3, 1)))
