"""A hand-built QuantizedModel equals the composition of the public kernels on the same operands (==)."""

from __future__ import annotations

import numpy as np
import pytest
import qkern
from qkern.model import ModelBuilder
from qkern.model.steps import layer_requant
from qkern.reference import model_ops as R


def _wq(rng: np.random.Generator, o: int, per_channel: bool, dtype: str = "int8") -> qkern.QParams:
    if per_channel:
        scale = rng.uniform(0.002, 0.02, o).astype(np.float32)
        zp = np.zeros(o, np.int32) if dtype == "int8" else rng.integers(100, 156, o).astype(np.int32)
        return qkern.QParams(scale, zp, dtype)
    return qkern.QParams(np.float32(rng.uniform(0.002, 0.02)), 0 if dtype == "int8" else 131, dtype)


def _w(rng: np.random.Generator, shape: tuple[int, ...], dtype: str = "int8") -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


@pytest.mark.parametrize("rounding", ["fp32", "gemmlowp", "single"])
def test_conv_chain_equals_public_kernels(rounding: str, isa_threads: object) -> None:
    rng = np.random.default_rng(7)
    q_in = qkern.QParams(np.float32(0.03), 120)
    q1 = qkern.QParams(np.float32(0.05), 0, qmin=0)  # fused ReLU
    q2 = qkern.QParams(np.float32(0.04), -3, "int8")
    q3 = qkern.QParams(np.float32(0.06), 17, qmax=200)
    q4 = qkern.QParams(np.float32(0.2), 128)
    w1, wq1 = _w(rng, (6, 3, 3, 3)), _wq(rng, 6, True)
    w2, wq2 = _w(rng, (5, 1, 1, 6), "uint8"), _wq(rng, 5, False, "uint8")
    w3, wq3 = _w(rng, (5, 2, 2, 4)), _wq(rng, 4, True)
    w4, wq4 = _w(rng, (3, 4 * 6 * 6)), _wq(rng, 3, True)
    b1 = rng.integers(-500, 500, 6).astype(np.int32)
    b4 = rng.integers(-500, 500, 3).astype(np.int32)

    b = ModelBuilder(rounding=rounding)
    x = b.input(q_in, name="x")
    y1 = b.conv2d(x, w1, wq1, b1, q1, stride=2, padding=1, name="c1")
    y2 = b.conv2d(y1, w2, wq2, None, q2, kernel_size=1, stride=2, padding=0, name="c2")
    y3 = b.conv_transpose2x2(y2, w3, wq3, None, q3, name="d3")
    y4 = b.linear(b.flatten(y3, name="f"), w4, wq4, b4, q4, name="l4")
    b.output(y4, name="logits")
    b.output(y1, name="features")
    model = b.build()

    xf = rng.standard_normal((2, 3, 11, 12)).astype(np.float32)
    tr = model.trace(xf)
    xq = q_in.quantize(np.ascontiguousarray(xf.transpose(0, 2, 3, 1)))
    r1 = qkern.conv3x3(
        xq,
        w1,
        stride=2,
        padding=1,
        x_zero_point=120,
        w_zero_point=wq1.zero_point,
        bias=b1,
        requant=layer_requant(q_in, wq1, q1, rounding),
    )
    sub = np.ascontiguousarray(r1[:, ::2, ::2, :])
    r2 = qkern.gemm(
        sub.reshape(-1, 6),
        np.ascontiguousarray(w2.reshape(5, 6).T),
        a_zero_point=0,
        b_zero_point=wq2.zero_point,
        requant=layer_requant(q1, wq2, q2, rounding),
    ).reshape(2, 3, 3, 5)
    r3 = qkern.conv_transpose2x2(
        r2, w3, x_zero_point=-3, w_zero_point=wq3.zero_point, requant=layer_requant(q2, wq3, q3, rounding)
    )
    r4 = qkern.gemm(
        r3.reshape(2, -1),
        np.ascontiguousarray(w4.T),
        a_zero_point=17,
        b_zero_point=wq4.zero_point,
        bias=b4,
        requant=layer_requant(q3, wq4, q4, rounding),
    )
    assert np.array_equal(tr["x"], xq)
    for name, ref in (("c1", r1), ("c2", r2), ("d3", r3), ("l4", r4)):
        assert tr[name].dtype == ref.dtype and np.array_equal(tr[name], ref), name
    logits, feats = model(xf)
    assert logits.dtype == np.float32 and logits.shape == (2, 3)
    assert np.array_equal(logits, q4.dequantize(r4))
    assert np.array_equal(feats, q1.dequantize(r1).transpose(0, 3, 1, 2))
    # a second call reuses the plan and gives the same answer; run_int on the quantized input too
    assert np.array_equal(model(xf)[0], logits)
    assert np.array_equal(model.run_int(xq)[0], r4)


def test_integer_ops_equal_reference_composition(isa_threads: object) -> None:
    rng = np.random.default_rng(11)
    q_in = qkern.QParams(np.float32(0.02), 128)
    qa = qkern.QParams(np.float32(0.03), 7, "int8")
    qp = qkern.QParams(np.float32(0.025), 100)
    qc = qkern.QParams(np.float32(0.04), 90)
    qg = qkern.QParams(np.float32(0.01), -5, "int8")
    table = rng.integers(-128, 128, 256).astype(np.int8)
    b = ModelBuilder()
    x = b.input(q_in, name="x")
    r = b.requantize(x, qa, name="r")
    s = b.add(x, r, qp, name="s")
    m = b.max_pool2d(s, 3, 2, 1, name="m")
    a = b.avg_pool2d(s, 2, 2, qc, name="a")
    c = b.cat([m, a, m], qc, name="c")
    t = b.lut(c, table, qkern.QParams(np.float32(0.1), 0, "int8"), name="t")
    g = b.global_avg_pool(t, qg, name="g")
    b.output(g)
    model = b.build()
    xf = rng.standard_normal((3, 4, 8, 8)).astype(np.float32)
    tr = model.trace(xf)
    xq = tr["x"]
    rr = R.rescale(xq, 128, *R.rescale_multiplier(0.02, 0.03), 7, -128, 127, "int8")
    ss = R.add(
        xq,
        128,
        *R.add_multipliers(0.02, 0.03, 0.025)[:2],
        rr,
        7,
        *R.add_multipliers(0.02, 0.03, 0.025)[2:],
        100,
        0,
        255,
        "uint8",
    )
    mm = R.max_pool2d(ss, 3, 2, 1)
    aa = R.avg_pool2d(ss, 2, 2, 100, *R.avg_multiplier(0.025, 4, 0.04), 90, 0, 255, "uint8")
    mm_c = R.rescale(mm, 100, *R.rescale_multiplier(0.025, 0.04), 90, 0, 255, "uint8")
    cc = np.concatenate([mm_c, aa, mm_c], axis=-1)
    tt = R.lut(cc, table)
    gg = R.global_avg_pool(tt, 0, *R.avg_multiplier(0.1, 4 * 4, 0.01), -5, -128, 127, "int8")
    for name, ref in (("r", rr), ("s", ss), ("m", mm), ("a", aa), ("c", cc), ("t", tt), ("g", gg)):
        assert tr[name].dtype == ref.dtype and np.array_equal(tr[name], ref), name
    assert model(xf).shape == (3, 12, 1, 1)


def test_torch_tensor_input_and_reference_backend() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    b = ModelBuilder()
    x = b.input(qkern.QParams(np.float32(0.05), 128))
    y = b.conv2d(x, _w(rng, (4, 3, 3, 2)), _wq(rng, 4, True), None, qkern.QParams(np.float32(0.1), 0, qmin=0))
    b.output(b.global_avg_pool(y, qkern.QParams(np.float32(0.05), 0)))
    model = b.build()
    xf = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    native = model(torch.from_numpy(xf))
    with qkern.backend("reference"):
        ref = model(xf)
    assert isinstance(native, np.ndarray) and np.array_equal(native, ref)


def test_float_op_runs() -> None:
    b = ModelBuilder()
    q = qkern.QParams(np.float32(0.1), 128)
    x = b.input(q, name="x")
    y = b.float_op([x], lambda xs: np.tanh(xs[0]) * 2, q, name="tanh2")
    b.output(y)
    model = b.build()
    xf = np.linspace(-3, 3, 2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    expect = q.dequantize(q.quantize(np.tanh(q.dequantize(q.quantize(xf))) * 2))
    assert np.array_equal(model(xf), expect)
    assert np.array_equal(model(xf), expect)  # the planned path


def test_two_inputs_two_shapes_and_reference_backend() -> None:
    """Several inputs; plans per input shape; the reference backend gives the same integers everywhere."""
    rng = np.random.default_rng(12)
    qa, qb = qkern.QParams(np.float32(0.03), 120), qkern.QParams(np.float32(0.05), -2, "int8")
    b = ModelBuilder()
    x1, x2 = b.input(qa, name="a"), b.input(qb, name="b")
    s = b.add(x1, x2, qkern.QParams(np.float32(0.06), 9), name="s")
    w = rng.integers(-127, 128, (4, 1, 1, 3)).astype(np.int8)
    c = b.conv2d(
        s,
        w,
        qkern.QParams(np.float32(0.01), 0, "int8"),
        None,
        qkern.QParams(np.float32(0.1), 100),
        kernel_size=1,
        stride=2,
        padding=0,
        name="c",
    )
    k = b.cat(
        [c, b.avg_pool2d(s, 1, 2, qkern.QParams(np.float32(0.07), 3), name="p")],
        qkern.QParams(np.float32(0.1), 100),
        name="k",
    )
    b.output(k, name="k")
    b.output(s, name="s")
    model = b.build()
    for shape in ((1, 3, 5, 7), (2, 3, 4, 4), (1, 3, 5, 7)):
        xa = rng.standard_normal(shape).astype(np.float32)
        xb = rng.standard_normal(shape).astype(np.float32)
        native = model.trace(xa, xb)
        outs = model(xa, xb)
        with qkern.backend("reference"):
            ref = model.trace(xa, xb)
            ref_outs = model(xa, xb)
        for name in native:
            assert np.array_equal(native[name], ref[name]), (shape, name)
        for o, r in zip(outs, ref_outs):
            assert np.array_equal(o, r)
        assert outs[0].shape == (shape[0], 7, (shape[2] + 1) // 2, (shape[3] + 1) // 2)


def test_one_plan_per_input_shape_reuses_buffers() -> None:
    """Planning happens once per input shape (and backend/ISA); later calls reuse the same buffers."""
    rng = np.random.default_rng(21)
    b = ModelBuilder()
    x = b.input(qkern.QParams(np.float32(0.05), 128), name="x")
    y = b.conv2d(x, _w(rng, (4, 3, 3, 2)), _wq(rng, 4, True), None, qkern.QParams(np.float32(0.1), 0), name="y")
    b.output(b.max_pool2d(y, 2, 2, name="p"))
    model = b.build()
    small, big = (np.zeros((1, 2, 6, 6), np.float32), np.zeros((3, 2, 6, 6), np.float32))
    model(small)
    plan = next(iter(model._plans.values()))
    buffers = [id(a) for a in plan.bufs]
    for xs in (small, big, small, big):
        model(xs)
    assert len(model._plans) == 2
    assert next(iter(model._plans.values())) is plan and [id(a) for a in plan.bufs] == buffers


def _mixed_model(rng: np.random.Generator) -> qkern.QuantizedModel:
    """conv -> cat(conv, conv) -> float_op -> add -> pools -> linear: native steps on both sides of a Python one."""
    b = ModelBuilder()
    q0, q1 = qkern.QParams(np.float32(0.04), 128), qkern.QParams(np.float32(0.06), 0, qmin=0)
    q2 = qkern.QParams(np.float32(0.07), 10)
    x = b.input(q0, name="x")
    y = b.conv2d(x, _w(rng, (4, 3, 3, 2)), _wq(rng, 4, True), None, q1, name="c1")
    z = b.conv2d(y, _w(rng, (4, 3, 3, 4)), _wq(rng, 4, True), None, q2, name="c2")
    y = b.cat([y, z], q2, name="cat")
    y = b.float_op([y], lambda xs: np.tanh(xs[0]), q2, name="tanh")
    y = b.add(y, b.conv2d(y, _w(rng, (8, 3, 3, 8)), _wq(rng, 8, False), None, q2, name="c3"), q1, name="add")
    y = b.max_pool2d(y, 2, 2, name="mp")
    y = b.global_avg_pool(y, q1, name="gap")
    b.output(b.linear(b.flatten(y), _w(rng, (3, 8)), _wq(rng, 3, True), None, q2, name="fc"))
    return b.build()


def test_native_steps_run_as_programs_between_python_steps(isa_threads: object) -> None:
    """On the native backend a call runs each stretch of consecutive native steps as one `_core.Program` of
    calls checked when the plan was made (docs/model.md): a float op splits the stretch, and every step's
    integers equal the step functions run one by one and the reference backend, for a second input too
    (the programs, not leftovers of the first call, fill the buffers)."""
    rng = np.random.default_rng(5)
    model = _mixed_model(rng)
    xf, xf2 = (rng.standard_normal((2, 2, 6, 6)).astype(np.float32) for _ in range(2))
    first = model.trace(xf)
    plan = next(iter(model._plans.values()))
    kinds = [type(r).__name__ for r in plan.runs]
    assert kinds == ["Program", "function", "Program"], kinds
    assert [len(plan.runs[0]), len(plan.runs[2])] == [4, 5]  # c1, c2, the cat's two parts | c3, add, pools, fc
    for fn in plan.fns:  # the step functions one by one write the same buffers
        fn()
    by_step = {name: plan.bufs[i].copy() for i, name in enumerate(s.name for s in model.steps)}
    second = model.trace(xf2)
    with qkern.backend("reference"):
        ref, ref2 = model.trace(xf), model.trace(xf2)
    assert not np.array_equal(ref["fc"], ref2["fc"])
    for name in ref:
        assert np.array_equal(first[name], ref[name]) and np.array_equal(by_step[name], ref[name]), name
        assert np.array_equal(second[name], ref2[name]), name


def test_programs_check_seven_bit_inputs_on_every_call() -> None:
    """A layer packed for 7-bit inputs (its input range within [0, 127]) checks the values on every call of
    the plan's program, as the packed call itself does: integer input above 127 through run_int raises
    instead of reaching the saturating 7-bit kernel."""
    rng = np.random.default_rng(8)
    b = ModelBuilder()
    x = b.input(qkern.QParams(np.float32(0.05), 0, qmin=0, qmax=127), name="x")
    w = np.full((16, 64), 127, np.int8)
    b.output(b.linear(x, w, qkern.QParams(np.float32(0.01), 0, "int8"), None, qkern.QParams(np.float32(5.0), 0)))
    model = b.build()
    good = rng.integers(0, 128, (4, 64)).astype(np.uint8)
    want = model.run_int(good)
    bad = np.full((4, 64), 255, np.uint8)
    for _ in range(2):
        with pytest.raises(ValueError, match="above 127"):
            model.run_int(bad)
    assert np.array_equal(model.run_int(good), want)
