"""Fast GEMM: every available ISA x {1, 2} threads equals the reference bit for bit; fp32 mode equals
torch's quantized linear (fbgemm) and ONNX Runtime's QLinearMatMul."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import qkern
from conftest import ISA_THREADS, QTYPES, rand_q, rand_zp, requant_cases
from oracles import assert_equal_except_int16_saturation
from qkern import _backend

pytestmark = pytest.mark.skipif(_backend.core is None, reason="qkern._core is not built")

GRID = [*range(1, 11), 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000]
_requants = requant_cases


def _check(a, b, za, zb, bias, rq, msg=""):
    want = qkern.reference.gemm(a, b, za, zb, bias, rq)
    got = qkern.gemm(a, b, a_zero_point=za, b_zero_point=zb, bias=bias, requant=rq)
    np.testing.assert_array_equal(got, want, err_msg=msg)
    packed = qkern.PackedGemm(b, zb, bias, rq)
    np.testing.assert_array_equal(packed(a, a_zero_point=za), want, err_msg="PackedGemm " + msg)


@pytest.mark.parametrize(("ta", "tb"), list(itertools.product(QTYPES, QTYPES)), ids=lambda t: np.dtype(t).name)
def test_gemm_every_isa_and_thread_count_equals_reference(rng, isa_threads, ta, tb):
    shapes = list(itertools.product(GRID, repeat=3))
    picks = [shapes[i] for i in rng.choice(len(shapes), 40, replace=False)]
    picks += [(m, n, k) for k in (1, 2, 3, 4, 5) for m, n in ((1, 1), (7, 65), (6, 64))]
    for m, n, k in picks:
        if m * n * k > 3 * 10**7:
            continue
        a, b = rand_q(rng, ta, (m, k)), rand_q(rng, tb, (k, n))
        za = rand_zp(rng, ta)
        for name, rq in _requants(rng, n).items():
            per_channel = name.endswith("pc") or rng.random() < 0.5
            zb = rand_zp(rng, tb, n) if per_channel else rand_zp(rng, tb)
            bias = rng.integers(-(2**31), 2**31, n, dtype=np.int64).astype(np.int32) if rng.random() < 0.7 else None
            _check(a, b, za, zb, bias, rq, f"{isa_threads} m={m} n={n} k={k} {name}")


def test_gemm_symmetric_weights_skip_row_sums(rng, isa_threads):
    """zb' == 0 (s8 weights with zero point 0, u8 weights with 128) takes the no-row-sum path."""
    a = rand_q(rng, np.uint8, (37, 200))
    for b, zb in ((rand_q(rng, np.int8, (200, 70)), 0), (rand_q(rng, np.uint8, (200, 70)), 128)):
        for rq in _requants(rng, 70).values():
            _check(a, b, 17, zb, None, rq)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_gemm_narrow_outputs_as_block_diagonal_rows(rng, isa_threads, n):
    """Outputs of 1-4 columns without a weight zero point run R = 8 // n rows at a time against a
    block-diagonal B (docs/kernels.md): K on both sides of the R*K <= 256 limit, M with and without a
    remainder of rows, u8 weights at zero point 128 (no zero point once flipped), and a weight zero point
    (the ordinary tiles), in every mode; strided A rows keep the ordinary tiles too."""
    r = 8 // n
    for k in (1, 7, 256 // r, 256 // r + 1):
        for m in (r - 1, r, 3 * r + 1, 257):
            ta = QTYPES[int(rng.integers(2))]
            a = rand_q(rng, ta, (m, k))
            za = rand_zp(rng, ta)
            for tb, zb in ((np.int8, 0), (np.uint8, 128), (np.int8, rand_zp(rng, np.int8, n))):
                b = rand_q(rng, tb, (k, n))
                bias = rng.integers(-(2**20), 2**20, n).astype(np.int32)
                for name, rq in _requants(rng, n).items():
                    _check(a, b, za, zb, bias, rq, f"{isa_threads} m={m} k={k} {tb.__name__} {name}")
            wide = rand_q(rng, ta, (m, k + 5))[:, :k]  # rows k + 5 bytes apart
            b = rand_q(rng, np.int8, (k, n))
            want = qkern.reference.gemm(wide, b, za, 0, None, None)
            np.testing.assert_array_equal(qkern.PackedGemm(b, 0, None, None)(wide, a_zero_point=za), want)


@pytest.mark.slow
def test_gemm_deep_k_and_int32_wrap(rng, isa_threads):
    a, b = rand_q(rng, np.int8, (13, 8192)), rand_q(rng, np.uint8, (8192, 70))
    _check(a, b, -3, rand_zp(rng, np.uint8, 70), None, None, "deep K")
    k = 70001  # extreme values: the exact sums leave int32 and must wrap identically
    a = np.where(rng.random((7, k)) < 0.95, 255, 0).astype(np.uint8)
    b = np.where(rng.random((k, 33)) < 0.95, -128, 127).astype(np.int8)
    bias = np.full(33, 2**31 - 1, np.int32)
    for rq in (None, _requants(rng, 33)["gemmlowp-pc"]):
        _check(a, b, 0, 127, bias, rq, "wrap")
    want = qkern.reference.gemm(a, b, 0, 127)
    assert np.any(want.astype(np.int64) != (a.astype(np.int64) @ (b.astype(np.int64) - 127)))


def test_gemm_strided_and_offset_views(rng, isa_threads):
    base_a = rand_q(rng, np.int8, (70, 300))
    base_b = rand_q(rng, np.uint8, (300, 200))
    a = base_a[5:60:3, 7:207]  # row stride 900 bytes, offset
    b = base_b[50:250, ::3]  # column stride 3
    bt = np.ascontiguousarray(rand_q(rng, np.int8, (67, 200))).T  # Fortran-ordered view of [200, 67]
    for bb in (b, bt):
        n = bb.shape[1]
        _check(a, bb, 11, rand_zp(rng, bb.dtype, n), None, _requants(rng, n)["fp32-pc"])


def test_results_identical_across_isas_and_threads(rng):
    a, b = rand_q(rng, np.uint8, (203, 517)), rand_q(rng, np.int8, (517, 190))
    rq = _requants(rng, 190)["single-pc"]
    results = {}
    old = qkern.get_isa(), qkern.get_num_threads()
    try:
        for isa, t in ISA_THREADS:
            qkern.set_isa(isa)
            qkern.set_num_threads(t)
            results[(isa, t)] = qkern.gemm(a, b, a_zero_point=3, b_zero_point=1, requant=rq)
    finally:
        qkern.set_isa(old[0])
        qkern.set_num_threads(old[1])
    first = next(iter(results.values()))
    for key, r in results.items():
        np.testing.assert_array_equal(r, first, err_msg=str(key))


def test_packed_gemm_repacks_when_isa_changes(rng):
    isas = qkern.available_isas()
    if len(isas) < 2:
        pytest.skip("only one ISA here")
    a, b = rand_q(rng, np.uint8, (9, 40)), rand_q(rng, np.int8, (40, 30))
    packed = qkern.PackedGemm(b, 2)
    old = qkern.get_isa()
    try:
        qkern.set_isa(isas[-1])
        np.testing.assert_array_equal(packed(a, a_zero_point=4), qkern.reference.gemm(a, b, 4, 2))
        assert packed.isa == isas[-1]
    finally:
        qkern.set_isa(old)


def test_set_isa_and_threads_reject_bad_values():
    with pytest.raises(ValueError, match="isa"):
        qkern.set_isa("avx9000")
    with pytest.raises(TypeError):
        qkern.set_isa(2)
    with pytest.raises(ValueError, match="threads"):
        qkern.set_num_threads(0)
    with pytest.raises(TypeError):
        qkern.set_num_threads(1.5)


def test_kernel_list_names_every_simd_isa():
    listed = {k["isa"] for k in qkern.kernels()}
    assert set(qkern.available_isas()) - {"scalar"} <= listed
    for k in qkern.kernels():
        assert k["name"].startswith("tile_gemm_") and k["name"].endswith("__" + k["isa"])


def test_concurrent_python_threads_get_correct_results(rng):
    import threading

    a, b = rand_q(rng, np.uint8, (300, 256)), rand_q(rng, np.int8, (256, 300))
    want = qkern.reference.gemm(a, b, 5, 0)
    errors = []

    def work():
        for _ in range(5):
            if not np.array_equal(qkern.gemm(a, b, a_zero_point=5), want):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_packed_weights_shared_by_threads_with_different_zero_points(rng, isa_threads):
    """The packed weights keep the folded bias of the last activation zero point (docs/kernels.md): calls
    that alternate zero points, from one thread and from several at once, each get their own."""
    import threading

    a, b = rand_q(rng, np.int8, (40, 70)), rand_q(rng, np.uint8, (70, 90))
    bias = rng.integers(-1000, 1000, 90).astype(np.int32)
    packed = qkern.PackedGemm(b, rand_zp(rng, np.uint8, 90), bias)
    zps = [-128, -3, 0, 5, 127]
    want = {z: qkern.reference.gemm(a, b, z, packed.b_zero_point, bias) for z in zps}
    for z in zps + zps[::-1]:
        np.testing.assert_array_equal(packed(a, a_zero_point=z), want[z])
    errors = []

    def work(offset):
        for i in range(20):
            z = zps[(i + offset) % len(zps)]
            if not np.array_equal(packed(a, a_zero_point=z), want[z]):
                errors.append(z)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---- "fp32" mode against the peers that define it ----


@pytest.mark.parametrize("per_channel", [False, True])
def test_fp32_mode_equals_torch_quantized_linear(rng, per_channel):
    torch = pytest.importorskip("torch")
    torch.backends.quantized.engine = "fbgemm"
    for m, k, n in [(1, 64, 32), (17, 100, 65), (64, 256, 128)]:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
        xs, xz = 0.03, 120
        xq = torch.quantize_per_tensor(torch.from_numpy(x), xs, xz, torch.quint8)
        if per_channel:
            ws = np.abs(w).max(axis=1) / 127.0
            wq = torch.quantize_per_channel(
                torch.from_numpy(w),
                torch.from_numpy(ws.astype(np.float64)),
                torch.zeros(n, dtype=torch.int64),
                0,
                torch.qint8,
            )
            w_scale = ws.astype(np.float32)
        else:
            w_scale = float(np.abs(w).max() / 127.0)
            wq = torch.quantize_per_tensor(torch.from_numpy(w), w_scale, 0, torch.qint8)
        ys, yz = 0.05, 64
        packed = torch.ops.quantized.linear_prepack(wq, None)
        tout = torch.ops.quantized.linear(xq, packed, ys, yz).int_repr().numpy()
        rq = qkern.Requant.from_scales(xs, w_scale, ys, yz, dtype="uint8", rounding="fp32")
        a = xq.int_repr().numpy()
        b = wq.int_repr().numpy().T
        got = qkern.gemm(a, b, a_zero_point=xz, requant=rq)
        np.testing.assert_array_equal(got, qkern.reference.gemm(a, b, xz, 0, None, rq))
        # fbgemm's AVX2 path (a host without AVX512-VNNI) adds u8*s8 pairs in saturating int16.
        assert_equal_except_int16_saturation(got, tout, a, b)


@pytest.mark.parametrize("b_dtype", ["uint8", "int8"])
def test_fp32_mode_equals_onnxruntime_qlinearmatmul(rng, b_dtype):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    m, k, n = 23, 96, 40
    a = rand_q(rng, np.uint8, (m, k))
    b = rand_q(rng, np.dtype(b_dtype).type, (k, n))
    a_s, a_z, b_s, y_s, y_z = 0.02, 130, 0.007, 0.09, 100
    b_z = 3 if b_dtype == "int8" else 140
    bt = TensorProto.UINT8 if b_dtype == "uint8" else TensorProto.INT8
    inits = [
        helper.make_tensor("a_scale", TensorProto.FLOAT, [], [a_s]),
        helper.make_tensor("a_zp", TensorProto.UINT8, [], [a_z]),
        helper.make_tensor("b_scale", TensorProto.FLOAT, [], [b_s]),
        helper.make_tensor("b_zp", bt, [], [b_z]),
        helper.make_tensor("y_scale", TensorProto.FLOAT, [], [y_s]),
        helper.make_tensor("y_zp", TensorProto.UINT8, [], [y_z]),
    ]
    node = helper.make_node("QLinearMatMul", ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k]), helper.make_tensor_value_info("b", bt, [k, n])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [m, n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"a": a, "b": b})[0]
    rq = qkern.Requant.from_scales(a_s, b_s, y_s, y_z, dtype="uint8", rounding="fp32")
    got = qkern.gemm(a, b, a_zero_point=a_z, b_zero_point=b_z, requant=rq)
    np.testing.assert_array_equal(got, qkern.reference.gemm(a, b, a_z, b_z, None, rq))
    assert_equal_except_int16_saturation(got, want, a, b)


def test_same_buffer_new_contents_between_calls(rng, isa_threads):
    """Kernels may cache per-call work (the AVX2 widened rows): a second call on the same memory with new
    contents must not see the first call's data."""
    a = rand_q(rng, np.int8, (13, 300))
    b = rand_q(rng, np.int8, (300, 50))
    packed = qkern.PackedGemm(b, 3)
    for _ in range(3):
        np.testing.assert_array_equal(packed(a, a_zero_point=1), qkern.reference.gemm(a, b, 1, 3))
        a[...] = rand_q(rng, np.int8, a.shape)


def test_environment_variables_select_isa_and_threads():
    import subprocess
    import sys

    lowest_simd = [i for i in qkern.available_isas() if i != "scalar"][-1:] or ["scalar"]
    for isa in {lowest_simd[0], "scalar"}:
        code = "import qkern; print(qkern.get_isa(), qkern.get_num_threads())"
        env = {**__import__("os").environ, "QKERN_ISA": isa, "QKERN_NUM_THREADS": "1"}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[-2:] == [isa, "1"], r.stdout


@pytest.mark.parametrize(
    ("make", "err", "match"),
    [
        (lambda: qkern.PackedGemm(np.zeros((4, 3), np.float32)), TypeError, "b"),
        (lambda: qkern.PackedGemm(np.zeros((4, 3), np.int8), 200), ValueError, "b_zero_point"),
        (lambda: qkern.PackedGemm(np.zeros((4, 3), np.int8), bias=np.zeros(2, np.int32)), ValueError, "bias"),
        (lambda: qkern.PackedGemm(np.zeros((4, 3), np.int8))(np.zeros((2, 5), np.uint8)), ValueError, "shape"),
        (lambda: qkern.PackedGemm(np.zeros((4, 3), np.int8))(np.zeros((2, 4), np.int16)), TypeError, "a"),
        (
            lambda: qkern.PackedGemm(np.zeros((4, 3), np.int8))(np.zeros((2, 4), np.uint8), a_zero_point=-1),
            ValueError,
            "a_zero_point",
        ),
        (
            lambda: qkern.PackedGemm(np.zeros((4, 3), np.int8))(np.zeros((2, 4), np.uint8), a_zero_point=2.0),
            TypeError,
            "a_zero_point",
        ),
        (
            lambda: qkern.PackedGemm(np.zeros((4, 3), np.int8))(
                np.zeros((2, 4), np.uint8), out=np.zeros((2, 3), np.int8)
            ),
            TypeError,
            "out",
        ),
    ],
)
def test_packed_gemm_rejects_bad_input(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_packed_gemm_copies_its_weights(rng):
    b = rand_q(rng, np.int8, (20, 9))
    packed = qkern.PackedGemm(b)
    want = qkern.reference.gemm(np.ones((2, 20), np.uint8), b.copy())
    b[...] = 0  # the caller's later writes must not reach the packed weights
    np.testing.assert_array_equal(packed(np.ones((2, 20), np.uint8)), want)


def _epilogue_channels(rng):
    """(multiplier, shift, bias) per channel: every shift, multipliers at the edges and near 2^30, and a
    bias of 0 (tiny accumulators: the rounding ties) or one that puts M * bias / 2^(31-shift) near 100
    (in range: the rounding of large products, not just the clamp)."""
    rows = []
    for shift in range(-31, 31):
        total = 31 - shift
        for m in (1, 3, 2**30 - 1, 2**30, 2**30 + 1, 2**31 - 1, int(rng.integers(1, 2**31))):
            rows.append((m, shift, 0))
            rows.append((m, shift, int(np.clip(round(100 * 2.0**total / m), -(2**31), 2**31 - 1))))
    return np.array(rows, dtype=np.int64).T


def test_epilogue_extremes_every_isa(rng, isa_threads):
    """K = 1 and B = 1, so acc = a - 128 + bias per channel: every SIMD epilogue equals the scalar rule on
    rounding ties, every shift, edge multipliers and the clamp, lane by lane."""
    mult, shift, bias = _epilogue_channels(rng)
    n = mult.size
    a = np.concatenate([np.arange(120, 137), rng.integers(0, 256, 23)]).astype(np.uint8)[:, None]
    b = np.ones((1, n), np.int8)
    bias32 = bias.astype(np.int32)
    cases = {
        "gemmlowp": qkern.Requant(mult, shift, 3, dtype="int8"),
        "single": qkern.Requant(mult, shift, 100, dtype="uint8", rounding="single"),
    }
    fmult = np.exp(rng.uniform(np.log(1e-9), np.log(10.0), n)).astype(np.float32)
    fmult[:6] = [0.0, 0.5, 0.25, 1.5, 1.0, 2.0**-20]  # exact ties for round-half-even
    target = np.clip(np.round(100 / np.maximum(fmult.astype(np.float64), 1e-12)), -(2**31), 2**31 - 1)
    fbias = np.where(np.arange(n) < n // 2, 0, target).astype(np.int32)
    for name, rq in cases.items():
        _check(a, b, 128, 0, bias32, rq, name)
    _check(a, b, 128, 0, fbias, qkern.Requant(fmult, zero_point=-7, dtype="int8", rounding="fp32"), "fp32")
    relu = qkern.Requant(fmult, zero_point=9, dtype="uint8", qmin=9, qmax=200, rounding="fp32")
    _check(a, b, 128, 0, fbias, relu, "fp32 relu")


@pytest.mark.parametrize("cols", [64, 32, 17], ids=["6x64-panel", "12x32-tile", "partial-panel"])
def test_epilogue_fp32_products_beyond_int32_every_isa(rng, isa_threads, cols):
    """Accumulators at the ends of int32 times "fp32" multipliers just below 1 (the product stays under
    2^31: the epilogue skips the float clamp) and at or above 1 (the product passes 2^31 and must clamp to
    qmax / qmin, not wrap through the float-to-int conversion)."""
    near_one = np.float32(1.0) - np.float32(2.0**-24)  # the largest float32 below 1
    a = np.concatenate([np.arange(0, 8), np.arange(124, 132), np.arange(248, 256)]).astype(np.uint8)[:, None]
    b = np.ones((1, cols), np.int8)
    edge = rng.choice([2**31 - 1 - 127, -(2**31) + 128], cols).astype(np.int32)  # acc = a - 128 + bias
    multipliers = {
        "below 1": rng.choice([near_one, np.float32(0.75), np.float32(2.0**-20)], cols),
        "all 1": np.ones(cols),
        "above 1": rng.choice([np.float32(1.0), np.float32(1.5), np.float32(1000.0)], cols),
    }
    multipliers["below 1"][:2] = near_one
    for name, fmult in multipliers.items():
        fmult = fmult.astype(np.float32)
        for zp, dtype, qmin, qmax in ((-7, "int8", None, None), (0, "uint8", None, None), (9, "uint8", 9, 200)):
            rq = qkern.Requant(fmult, zero_point=zp, dtype=dtype, qmin=qmin, qmax=qmax, rounding="fp32")
            want = qkern.reference.gemm(a, b, 128, 0, edge, rq)
            assert np.isin(want, [rq.qmin, rq.qmax]).mean() > 0.5  # the clamp decides most outputs
            _check(a, b, 128, 0, edge, rq, f"{name} zp={zp} {dtype} [{qmin}, {qmax}]")


@pytest.mark.parametrize("cols", [None, 32, 17], ids=["panels", "12x32-tile", "partial-panel"])
def test_epilogue_one_shift_form_every_isa(rng, isa_threads, cols):
    """Stages whose shifts are all <= 0 take the 64-bit one-shift form (eq. (17), "single" always) in the
    avx512vnni epilogue, inlined after the k-loop for full panels; every shift, edge multipliers, ties,
    clamps and ReLU equal the scalar rule on all three tile shapes."""
    mult, shift, bias = _epilogue_channels(rng)
    keep = np.flatnonzero(shift <= 0)
    if cols is not None:
        keep = rng.choice(keep, cols, replace=False)
    mult, shift, bias = mult[keep], shift[keep], bias[keep].astype(np.int32)
    n = keep.size
    a = np.concatenate([np.arange(120, 137), rng.integers(0, 256, 23)]).astype(np.uint8)[:, None]
    b = np.ones((1, n), np.int8)
    for rounding in ("gemmlowp", "single"):
        for zp, dtype, qmin, qmax in ((3, "int8", None, None), (100, "uint8", None, None), (9, "uint8", 9, 200)):
            rq = qkern.Requant(mult, shift, zp, dtype=dtype, qmin=qmin, qmax=qmax, rounding=rounding)
            _check(a, b, 128, 0, bias, rq, f"{rounding} zp={zp} {dtype} [{qmin}, {qmax}]")


def test_out_argument_is_filled_and_returned(rng, isa_threads):
    a, b = rand_q(rng, np.uint8, (5, 9)), rand_q(rng, np.int8, (9, 4))
    out = np.full((5, 4), -1, np.int32)
    assert qkern.gemm(a, b, out=out) is out
    np.testing.assert_array_equal(out, qkern.reference.gemm(a, b))
