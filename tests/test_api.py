"""Public API behaviour: a clear TypeError/ValueError per bad input, backends, info, CLI, no torch at import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import qkern

U8 = np.zeros((4, 8), np.uint8)
S8 = np.zeros((8, 3), np.int8)
X = np.zeros((1, 5, 5, 4), np.uint8)
W3 = np.zeros((6, 3, 3, 4), np.int8)
W2 = np.zeros((4, 2, 2, 6), np.int8)

BAD_CALLS = [
    # wrong dtype -> TypeError
    ("gemm a float", TypeError, "a", lambda: qkern.gemm(U8.astype(np.float32), S8)),
    ("gemm b int16", TypeError, "b", lambda: qkern.gemm(U8, S8.astype(np.int16))),
    ("gemm a list", TypeError, "a", lambda: qkern.gemm([[1, 2]], S8)),
    ("gemm bias int64", TypeError, "bias", lambda: qkern.gemm(U8, S8, bias=np.zeros(3, np.int64))),
    ("gemm zp float", TypeError, "a_zero_point", lambda: qkern.gemm(U8, S8, a_zero_point=1.5)),
    ("gemm zp bool", TypeError, "a_zero_point", lambda: qkern.gemm(U8, S8, a_zero_point=True)),
    ("gemm requant str", TypeError, "requant", lambda: qkern.gemm(U8, S8, requant="fp32")),
    ("gemm out dtype", TypeError, "out", lambda: qkern.gemm(U8, S8, out=np.zeros((4, 3), np.int64))),
    ("conv x float", TypeError, "x", lambda: qkern.conv3x3(X.astype(np.float32), W3)),
    ("deconv w int32", TypeError, "w", lambda: qkern.conv_transpose2x2(X, W2.astype(np.int32))),
    ("conv stride float", TypeError, "stride", lambda: qkern.conv3x3(X, W3, stride=1.0)),
    # wrong rank / shape / channel count -> ValueError
    ("gemm a 3-D", ValueError, "a", lambda: qkern.gemm(U8[None], S8)),
    ("gemm K mismatch", ValueError, "K", lambda: qkern.gemm(U8, S8[:7])),
    ("gemm bias length", ValueError, "bias", lambda: qkern.gemm(U8, S8, bias=np.zeros(4, np.int32))),
    (
        "gemm zb length",
        ValueError,
        "b_zero_point",
        lambda: qkern.gemm(U8, S8, b_zero_point=np.zeros(4, np.int32)),
    ),
    (
        "gemm zb 2-D",
        ValueError,
        "b_zero_point",
        lambda: qkern.gemm(U8, S8, b_zero_point=np.zeros((3, 1), np.int32)),
    ),
    ("gemm out shape", ValueError, "out", lambda: qkern.gemm(U8, S8, out=np.zeros((3, 4), np.int32))),
    (
        "gemm requant channels",
        ValueError,
        "channels",
        lambda: qkern.gemm(U8, S8, requant=qkern.Requant(np.full(5, 2**30), np.zeros(5, np.int32))),
    ),
    ("conv x 3-D", ValueError, "x", lambda: qkern.conv3x3(X[0], W3)),
    ("conv w channels", ValueError, "w", lambda: qkern.conv3x3(X, W3[..., :3])),
    ("conv w 5x5", ValueError, "w", lambda: qkern.conv3x3(X, np.zeros((6, 5, 5, 4), np.int8))),
    ("conv too small", ValueError, "x", lambda: qkern.conv3x3(X[:, :2], W3, padding=0)),
    ("conv stride 3", ValueError, "stride", lambda: qkern.conv3x3(X, W3, stride=3)),
    ("conv padding 2", ValueError, "padding", lambda: qkern.conv3x3(X, W3, padding=2)),
    ("conv bias length", ValueError, "bias", lambda: qkern.conv3x3(X, W3, bias=np.zeros(5, np.int32))),
    ("deconv w shape", ValueError, "w", lambda: qkern.conv_transpose2x2(X, np.zeros((4, 3, 3, 6), np.int8))),
    (
        "deconv wz length",
        ValueError,
        "w_zero_point",
        lambda: qkern.conv_transpose2x2(X, W2, w_zero_point=np.zeros(2, np.int32)),
    ),
    # zero point out of the dtype's range -> ValueError
    ("gemm za 256", ValueError, "a_zero_point", lambda: qkern.gemm(U8, S8, a_zero_point=256)),
    ("gemm za -1", ValueError, "a_zero_point", lambda: qkern.gemm(U8, S8, a_zero_point=-1)),
    ("gemm zb -129", ValueError, "b_zero_point", lambda: qkern.gemm(U8, S8, b_zero_point=-129)),
    ("conv xz 300", ValueError, "x_zero_point", lambda: qkern.conv3x3(X, W3, x_zero_point=300)),
    ("conv wz array", ValueError, "w_zero_point", lambda: qkern.conv3x3(X, W3, w_zero_point=np.full(6, 128))),
    ("quantize zp", ValueError, "zero_point", lambda: qkern.quantize(np.ones(3), 0.1, 128, "int8")),
    # scale <= 0 / NaN / inf -> ValueError
    ("quantize scale 0", ValueError, "scale", lambda: qkern.quantize(np.ones(3), 0.0, 0)),
    ("quantize scale -1", ValueError, "scale", lambda: qkern.quantize(np.ones(3), -1.0, 0)),
    ("quantize scale nan", ValueError, "scale", lambda: qkern.quantize(np.ones(3), float("nan"), 0)),
    ("quantize scale inf", ValueError, "scale", lambda: qkern.quantize(np.ones(3), float("inf"), 0)),
    ("quantize scale denormal", ValueError, "scale", lambda: qkern.quantize(np.ones(3), 1e-46, 0)),
    ("dequantize scale 0", ValueError, "scale", lambda: qkern.dequantize(np.ones(3, np.uint8), 0.0, 0)),
    ("qparams scale", ValueError, "scale", lambda: qkern.QParams(-0.1, 0)),
    (
        "from_scales nan",
        ValueError,
        "output_scale",
        lambda: qkern.Requant.from_scales(0.1, 0.1, float("nan"), 0),
    ),
    # other quantization-math misuse
    ("quantize NaN", ValueError, "NaN", lambda: qkern.quantize(np.array([1.0, np.nan]), 0.1, 0)),
    ("quantize dtype", ValueError, "dtype", lambda: qkern.quantize(np.ones(3), 0.1, 0, "int4")),
    (
        "quantize axis",
        ValueError,
        "axis",
        lambda: qkern.quantize(np.ones((2, 3)), np.ones(2), np.zeros(2, int), axis=3),
    ),
    (
        "quantize channels",
        ValueError,
        "channels",
        lambda: qkern.quantize(np.ones((2, 3)), np.ones(3), np.zeros(3, int), axis=0),
    ),
    (
        "quantize no axis",
        ValueError,
        "axis",
        lambda: qkern.quantize(np.ones((2, 3)), np.ones(2), np.zeros(2, int)),
    ),
    ("dequantize float", TypeError, "q", lambda: qkern.dequantize(np.ones(3), 0.1, 0)),
    ("calc bits", ValueError, "bits", lambda: qkern.calc_qparams(-1, 1, bits=9)),
    ("calc min>max", ValueError, "min_val", lambda: qkern.calc_qparams(1.0, -1.0)),
    ("calc inf", ValueError, "finite", lambda: qkern.calc_qparams(float("-inf"), 1.0)),
    ("backend name", ValueError, "backend", lambda: qkern.set_backend("gpu")),
    ("backend type", TypeError, "backend", lambda: qkern.set_backend(3)),
]


def test_out_overlapping_an_input_is_rejected():
    a = np.zeros((4, 4), np.int8)
    with pytest.raises(ValueError, match="overlap"):
        qkern.gemm(a, a, requant=qkern.Requant(2**30, 0, dtype="int8"), out=a)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_packed_calls_check_out_on_every_backend(backend):
    """The Packed* fast paths leave part of the `out` checks to the binding: same errors either way."""
    rq = qkern.Requant(0.01, zero_point=3)
    buf = np.zeros(200, np.uint8)
    gemm = qkern.PackedGemm(np.ones((8, 8), np.int8), requant=rq)
    conv = qkern.PackedConv3x3(np.ones((8, 3, 3, 8), np.int8), requant=rq)
    deconv = qkern.PackedConvTranspose2x2(np.ones((4, 2, 2, 1), np.int8), requant=rq)
    x = buf[:64].reshape(1, 2, 4, 8)
    a = buf[:64].reshape(8, 8)
    bad_outs = [
        (lambda: gemm(a, out=a), "overlap"),  # the same memory
        (lambda: gemm(buf[8:72].reshape(8, 8)[:7], out=buf[:56].reshape(7, 8)), "overlap"),  # a shifted view
        (lambda: conv(x, out=buf[60:124].reshape(1, 2, 4, 8)), "overlap"),  # partial overlap
        (lambda: deconv(buf[:16].reshape(1, 2, 2, 4), out=buf[10:26].reshape(1, 4, 4, 1)), "overlap"),
        (lambda: gemm(a, out=np.zeros((8, 16), np.uint8)[:, ::2]), "contiguous"),
        (
            lambda: conv(x, out=np.zeros((1, 2, 4, 8), np.uint8).transpose(0, 2, 1, 3).copy().transpose(0, 2, 1, 3)),
            "contiguous",
        ),
    ]
    ro = np.zeros((8, 8), np.uint8)
    ro.setflags(write=False)
    bad_outs.append((lambda: gemm(np.zeros((8, 8), np.uint8), out=ro), "writeable"))
    with qkern.backend(backend):
        for call, match in bad_outs:
            with pytest.raises(ValueError, match=match):
                call()
        # Disjoint views of one buffer are fine, and non-contiguous inputs are copied, not rejected.
        got = gemm(buf[:64].reshape(8, 8), out=buf[64:128].reshape(8, 8))
        assert got.base is not None and np.array_equal(got, np.full((8, 8), 3, np.uint8))  # zero sums -> zp 3
        xs = np.arange(128, dtype=np.uint8).reshape(1, 2, 8, 8)[:, :, ::2]
        want = qkern.reference.conv3x3(np.ascontiguousarray(xs), np.ones((8, 3, 3, 8), np.int8), 1, 1, 0, 0, None, rq)
        assert np.array_equal(conv(xs), want)


@pytest.mark.parametrize(("case", "err", "name", "call"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_clear_error(case, err, name, call):
    with pytest.raises(err, match=name):
        call()


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_errors_do_not_depend_on_the_backend(backend):
    with qkern.backend(backend), pytest.raises(ValueError, match="a_zero_point"):
        qkern.gemm(U8, S8, a_zero_point=999)


def test_backend_switching_and_context_manager():
    start = qkern.get_backend()
    with qkern.backend("reference"):
        assert qkern.get_backend() == "reference"
    assert qkern.get_backend() == start
    qkern.set_backend("reference")
    try:
        assert qkern.get_backend() == "reference"
        assert qkern.info()["backend"] == "reference"
    finally:
        qkern.set_backend(start)


def test_info_has_the_documented_keys():
    d = qkern.info()
    for key in ("version", "backend", "isa", "available_isas", "threads", "compiler", "flags"):
        assert key in d
    assert d["version"] == qkern.__version__
    assert d["isa"] in d["available_isas"]


@pytest.mark.skipif(not qkern.available_isas(), reason="needs the native backend")
def test_built_isas_bound_the_available_ones_and_the_kernel_list():
    built = qkern.info()["built_isas"]
    assert built[-1] == "scalar"
    assert set(qkern.available_isas()) <= set(built)
    assert {k["isa"] for k in qkern.kernels()} == set(built) - {"scalar"}


def test_dtype_spellings_are_accepted():
    for spelling in ("int8", np.int8, np.dtype("int8"), "qint8"):
        assert qkern.QParams(0.5, -3, spelling).dtype == "int8"


def test_qparams_is_frozen_and_compares_by_value():
    qp = qkern.calc_qparams(np.array([-1.0, -2.0]), np.array([1.0, 3.0]), "int8", symmetric=True)
    assert qp.per_channel and qp == qkern.QParams(qp.scale.copy(), qp.zero_point.copy(), "int8", 0, qp.qmin, qp.qmax)
    with pytest.raises(AttributeError):
        qp.scale = 1.0
    with pytest.raises(ValueError):
        qp.scale[0] = 2.0
    x = np.linspace(-2, 3, 10, dtype=np.float32).reshape(2, 5)
    q = qp.quantize(x)
    # Per channel (axis 0): f32(f64(scale) * (q - zero_point)), written out independently of qkern.
    want = (qp.scale.astype(np.float64)[:, None] * (q.astype(np.int64) - qp.zero_point[:, None])).astype(np.float32)
    np.testing.assert_array_equal(qp.dequantize(q), want)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_import_never_imports_torch():
    r = _run("""
        import sys, numpy as np, qkern
        qkern.gemm(np.ones((2, 3), np.uint8), np.ones((3, 2), np.int8))
        qkern.quantize(np.ones(3), 0.1, 0); qkern.info()
        assert 'torch' not in sys.modules, 'torch was imported'
        print('ok')
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_missing_core_falls_back_to_reference_with_one_warning():
    r = _run("""
        import sys, warnings, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == 'qkern._core':
                    raise ImportError('simulated missing extension')
        sys.meta_path.insert(0, Block())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import qkern
        assert len(caught) == 1 and 'reference' in str(caught[0].message), [str(c.message) for c in caught]
        import numpy as np
        assert qkern.get_backend() == 'reference'
        out = qkern.gemm(np.full((2, 3), 2, np.uint8), np.ones((3, 2), np.int8))
        assert out.tolist() == [[6, 6], [6, 6]]
        try:
            qkern.set_backend('native')
        except ValueError as e:
            assert 'unavailable' in str(e)
        else:
            raise AssertionError('native backend should be unavailable')
        print('ok')
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr + r.stdout


def test_cli_info_json_and_demo():
    r = subprocess.run([sys.executable, "-m", "qkern", "info", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout[r.stdout.index("{") :])["version"] == qkern.__version__
    r = subprocess.run(
        [sys.executable, "-m", "qkern", "demo", "gemm", "--m", "16", "--k", "40", "--n", "8"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "native == reference: True" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "qkern", "bogus"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
