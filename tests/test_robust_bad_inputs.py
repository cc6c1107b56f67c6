"""The bad-input matrix: every public function and constructor x each bad-input class raises the documented
TypeError/ValueError whose message names the argument, on both backends; no qkern._core exception type
ever reaches a user, and nothing crashes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import qkern
from qkern import _backend

U8 = np.zeros((4, 8), np.uint8)
S8 = np.zeros((8, 3), np.int8)
X = np.zeros((1, 5, 5, 4), np.uint8)
W3 = np.zeros((6, 3, 3, 4), np.int8)
W2 = np.zeros((4, 2, 2, 6), np.int8)
RQ = qkern.Requant(2**30, 0, 3)
F = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)


def _ro(shape, dtype):
    a = np.zeros(shape, dtype)
    a.setflags(write=False)
    return a


gemm, conv, deconv, requantize, Requant, I32 = (
    qkern.gemm,
    qkern.conv3x3,
    qkern.conv_transpose2x2,
    qkern.requantize,
    qkern.Requant,
    np.int32,
)
PG = qkern.PackedGemm(S8)
PC = qkern.PackedConv3x3(W3)
PD = qkern.PackedConvTranspose2x2(W2)
DL = qkern.DynamicLinear(np.ones((4, 3), np.float32), None)


def _tiny_model() -> qkern.QuantizedModel:
    """x[N, 3] -> Linear(3, 2): the smallest model with an integer step."""
    from qkern.model import ModelBuilder

    b = ModelBuilder()
    x = b.input(qkern.QParams(0.1, 128, "uint8"), name="x")
    w, wp = np.ones((2, 3), np.int8), qkern.QParams(0.05, 0, "int8")
    b.output(b.linear(x, w, wp, None, qkern.QParams(0.2, 128, "uint8"), name="fc"), name="y")
    return b.build()


# Each bad-input class, one call per public function it applies to: (function, class, error, name, call).
CASES: list[tuple[str, str, type, str, Callable[[], object]]] = [
    # dtype
    ("gemm", "dtype", TypeError, "a", lambda: gemm(U8.astype(np.int16), S8)),
    ("gemm", "dtype", TypeError, "b", lambda: gemm(U8, S8.astype(np.float32))),
    ("gemm", "dtype", TypeError, "bias", lambda: gemm(U8, S8, bias=np.zeros(3, np.int64))),
    ("gemm", "dtype", TypeError, "a", lambda: gemm(U8.tolist(), S8)),
    ("conv3x3", "dtype", TypeError, "x", lambda: conv(X.astype(bool), W3)),
    ("conv3x3", "dtype", TypeError, "w", lambda: conv(X, W3.astype(I32))),
    ("conv_transpose2x2", "dtype", TypeError, "x", lambda: deconv(X.astype(np.float64), W2)),
    ("PackedGemm", "dtype", TypeError, "b", lambda: qkern.PackedGemm(S8.astype(np.uint16))),
    ("PackedGemm.__call__", "dtype", TypeError, "a", lambda: PG(U8.astype(I32))),
    ("PackedConv3x3", "dtype", TypeError, "w", lambda: qkern.PackedConv3x3(W3.astype(np.float16))),
    ("PackedConv3x3.__call__", "dtype", TypeError, "x", lambda: PC(X.astype(np.int64))),
    ("PackedConvTranspose2x2", "dtype", TypeError, "w", lambda: qkern.PackedConvTranspose2x2(W2.astype(float))),
    ("PackedConvTranspose2x2.__call__", "dtype", TypeError, "x", lambda: PD(X.astype(np.uint32))),
    ("quantize", "dtype", ValueError, "dtype", lambda: qkern.quantize(F, 0.1, 0, "int16")),
    ("quantize", "dtype", TypeError, "x", lambda: qkern.quantize(["a", "b"], 0.1, 0)),
    ("dequantize", "dtype", TypeError, "q", lambda: qkern.dequantize(F, 0.1, 0)),
    ("QParams", "dtype", ValueError, "dtype", lambda: qkern.QParams(0.1, 0, "int4")),
    ("calc_qparams", "dtype", TypeError, "dtype", lambda: qkern.calc_qparams(-1.0, 1.0, object())),
    ("Requant", "dtype", ValueError, "dtype", lambda: Requant(2**30, 0, dtype="int32")),
    ("Requant", "dtype", TypeError, "multiplier", lambda: Requant(np.array([1.5]), 0)),
    ("requantize", "dtype", TypeError, "acc", lambda: requantize(np.zeros((2, 3), np.int64), RQ)),
    ("requantize", "dtype", TypeError, "requant", lambda: requantize(np.zeros((2, 3), I32), 0.5)),
    ("max_safe_k", "dtype", ValueError, "a_dtype", lambda: qkern.max_safe_k("int16", "int8")),
    ("quantize_multiplier", "dtype", TypeError, "real", lambda: qkern.quantize_multiplier("half")),
    # rank
    ("gemm", "rank", ValueError, "a", lambda: gemm(U8[0], S8)),
    ("gemm", "rank", ValueError, "b", lambda: gemm(U8, S8[None])),
    ("conv3x3", "rank", ValueError, "x", lambda: conv(X[0], W3)),
    ("conv3x3", "rank", ValueError, "w", lambda: conv(X, W3[0])),
    ("conv_transpose2x2", "rank", ValueError, "x", lambda: deconv(X[None], W2)),
    ("PackedGemm", "rank", ValueError, "b", lambda: qkern.PackedGemm(S8[0])),
    ("PackedGemm.__call__", "rank", ValueError, "a", lambda: PG(U8[None])),
    ("PackedConv3x3.__call__", "rank", ValueError, "x", lambda: PC(X[0])),
    ("PackedConvTranspose2x2", "rank", ValueError, "w", lambda: qkern.PackedConvTranspose2x2(W2[0])),
    ("PackedConvTranspose2x2.__call__", "rank", ValueError, "x", lambda: PD(X[0])),
    ("requantize", "rank", ValueError, "acc", lambda: requantize(np.array(5, I32), RQ)),
    ("QParams", "rank", ValueError, "scale", lambda: qkern.QParams(np.ones((2, 2)), 0)),
    ("calc_qparams", "rank", ValueError, "min_val", lambda: qkern.calc_qparams(np.zeros((2, 2)), np.ones((2, 2)))),
    ("Requant", "rank", ValueError, "multiplier", lambda: Requant(np.ones((2, 2), int), np.zeros(2, int))),
    # shape
    ("gemm", "shape", ValueError, "K", lambda: gemm(U8, S8[:7])),
    ("gemm", "shape", ValueError, "bias", lambda: gemm(U8, S8, bias=np.zeros(4, I32))),
    ("conv3x3", "shape", ValueError, "w", lambda: conv(X, np.zeros((6, 5, 5, 4), np.int8))),
    ("conv3x3", "shape", ValueError, "x", lambda: conv(X[:, :2, :2], W3, padding=0)),
    ("conv3x3", "shape", ValueError, "bias", lambda: conv(X, W3, bias=np.zeros(5, I32))),
    ("conv_transpose2x2", "shape", ValueError, "w", lambda: deconv(X, np.zeros((4, 3, 2, 6), np.int8))),
    ("conv_transpose2x2", "shape", ValueError, "bias", lambda: deconv(X, W2, bias=np.zeros(2, I32))),
    ("PackedGemm", "shape", ValueError, "bias", lambda: qkern.PackedGemm(S8, bias=np.zeros(2, I32))),
    ("PackedGemm.__call__", "shape", ValueError, "a", lambda: PG(U8[:, :5])),
    ("PackedConv3x3", "shape", ValueError, "w", lambda: qkern.PackedConv3x3(np.zeros((6, 2, 3, 4), np.int8))),
    ("PackedConv3x3.__call__", "shape", ValueError, "x", lambda: PC(X[:, :0])),
    ("PackedConvTranspose2x2", "shape", ValueError, "bias", lambda: qkern.PackedConvTranspose2x2(W2, 0, np.zeros(4, I32))),  # noqa: E501
    ("quantize", "shape", ValueError, "scale", lambda: qkern.quantize(F, np.ones(3), np.zeros(3, int), axis=1)),
    ("dequantize", "shape", ValueError, "scale", lambda: qkern.dequantize(U8, np.ones(3), np.zeros(3, int), axis=0)),
    ("requantize", "shape", ValueError, "bias", lambda: requantize(np.zeros((2, 3), I32), RQ, np.zeros(2, I32))),
    ("calc_qparams", "shape", ValueError, "min_val", lambda: qkern.calc_qparams(np.zeros(2), np.ones(3))),
    ("Requant", "shape", ValueError, "shift", lambda: Requant(np.ones(3, int), np.zeros(2, int))),
    # channel mismatch
    ("gemm", "channels", ValueError, "b_zero_point", lambda: gemm(U8, S8, b_zero_point=np.zeros(4, I32))),
    ("gemm", "channels", ValueError, "requant", lambda: gemm(U8, S8, requant=Requant(np.ones(5, int), np.zeros(5, int)))),  # noqa: E501
    ("conv3x3", "channels", ValueError, "channels", lambda: conv(X[..., :3], W3)),
    ("conv3x3", "channels", ValueError, "w_zero_point", lambda: conv(X, W3, w_zero_point=np.zeros(4, I32))),
    ("conv_transpose2x2", "channels", ValueError, "channels", lambda: deconv(X[..., :2], W2)),
    ("PackedGemm", "channels", ValueError, "b_zero_point", lambda: qkern.PackedGemm(S8, np.zeros(2, I32))),
    ("PackedConv3x3", "channels", ValueError, "requant", lambda: qkern.PackedConv3x3(W3, requant=Requant(np.ones(2, np.float32)))),  # noqa: E501
    ("PackedConv3x3.__call__", "channels", ValueError, "channels", lambda: PC(X[..., :1])),
    ("PackedConvTranspose2x2.__call__", "channels", ValueError, "channels", lambda: PD(X[..., :3])),
    ("quantize", "channels", ValueError, "zero_point", lambda: qkern.quantize(F, np.ones(4), np.zeros(3, int), axis=1)),
    ("QParams", "channels", ValueError, "zero_point", lambda: qkern.QParams(np.ones(3), np.zeros(2, int))),
    ("requantize", "channels", ValueError, "channels", lambda: requantize(np.zeros((2, 3), I32), Requant(np.ones(2, np.float32)))),  # noqa: E501
    # zero point range
    ("gemm", "zero point", ValueError, "a_zero_point", lambda: gemm(U8, S8, a_zero_point=256)),
    ("gemm", "zero point", ValueError, "b_zero_point", lambda: gemm(U8, S8, b_zero_point=-129)),
    ("gemm", "zero point", TypeError, "a_zero_point", lambda: gemm(U8, S8, a_zero_point=1.5)),
    ("gemm", "zero point", ValueError, "b_zero_point", lambda: gemm(U8, S8, b_zero_point=np.array([0, 0, 200]))),
    ("conv3x3", "zero point", ValueError, "x_zero_point", lambda: conv(X, W3, x_zero_point=-1)),
    ("conv_transpose2x2", "zero point", ValueError, "w_zero_point", lambda: deconv(X, W2, w_zero_point=128)),
    ("PackedGemm", "zero point", TypeError, "b_zero_point", lambda: qkern.PackedGemm(S8, True)),
    ("PackedGemm.__call__", "zero point", ValueError, "a_zero_point", lambda: PG(U8, a_zero_point=-1)),
    ("PackedConv3x3", "zero point", ValueError, "w_zero_point", lambda: qkern.PackedConv3x3(W3, 300)),
    ("PackedConv3x3.__call__", "zero point", ValueError, "x_zero_point", lambda: PC(X, x_zero_point=2**40)),
    ("PackedConvTranspose2x2.__call__", "zero point", TypeError, "x_zero_point", lambda: PD(X, x_zero_point="1")),
    ("quantize", "zero point", ValueError, "zero_point", lambda: qkern.quantize(F, 0.1, 128, "int8")),
    ("dequantize", "zero point", ValueError, "zero_point", lambda: qkern.dequantize(U8, 0.1, -3)),
    ("QParams", "zero point", ValueError, "zero_point", lambda: qkern.QParams(0.1, 256)),
    ("Requant", "zero point", ValueError, "zero_point", lambda: Requant(0.5, None, -1)),
    ("Requant.from_scales", "zero point", ValueError, "output_zero_point", lambda: qkern.Requant.from_scales(0.1, 0.1, 0.1, 999)),  # noqa: E501
    ("max_safe_k", "zero point", ValueError, "b_zero_point", lambda: qkern.max_safe_k("uint8", "int8", 0, 128)),
    # scale 0 / negative / NaN / inf / denormal
    *[
        (fn, "scale", ValueError, name, call)
        for bad in (0.0, -0.5, float("nan"), float("inf"), 1e-40)
        for fn, name, call in (
            ("quantize", "scale", lambda bad=bad: qkern.quantize(F, bad, 0)),
            ("dequantize", "scale", lambda bad=bad: qkern.dequantize(U8, bad, 0)),
            ("QParams", "scale", lambda bad=bad: qkern.QParams(bad, 0)),
            ("Requant.from_scales", "weight_scale", lambda bad=bad: qkern.Requant.from_scales(0.1, bad, 0.1, 0)),
        )
    ],
    ("QParams", "scale", ValueError, "scale", lambda: qkern.QParams(np.array([0.1, -0.1]), np.zeros(2, int))),
    ("calc_qparams", "scale", ValueError, "eps", lambda: qkern.calc_qparams(-1.0, 1.0, eps=0.0)),
    ("calc_qparams", "scale", ValueError, "min_val", lambda: qkern.calc_qparams(float("nan"), 1.0)),
    ("calc_qparams", "scale", ValueError, "min_val", lambda: qkern.calc_qparams(2.0, 1.0)),
    # multiplier / shift range
    ("Requant", "multiplier", ValueError, "multiplier", lambda: Requant(2**31, 0)),
    ("Requant", "multiplier", ValueError, "multiplier", lambda: Requant(-1, 0)),
    ("Requant", "multiplier", ValueError, "multiplier", lambda: Requant(float("nan"))),
    ("Requant", "multiplier", ValueError, "multiplier", lambda: Requant(-0.5)),
    ("Requant", "shift", ValueError, "shift", lambda: Requant(2**30, 31)),
    ("Requant", "shift", ValueError, "shift", lambda: Requant(2**30, -32)),
    ("Requant", "shift", TypeError, "shift", lambda: Requant(2**30, 1.5)),
    ("Requant", "shift", ValueError, "shift", lambda: Requant(0.5, 3, rounding="fp32")),
    ("Requant", "rounding", ValueError, "rounding", lambda: Requant(2**30, 0, rounding="up")),
    ("Requant", "qmin", ValueError, "qmin", lambda: Requant(2**30, 0, qmin=10, qmax=5)),
    ("quantize_multiplier", "multiplier", ValueError, "real", lambda: qkern.quantize_multiplier(-1.0)),
    # stride / padding
    ("conv3x3", "stride", ValueError, "stride", lambda: conv(X, W3, stride=3)),
    ("conv3x3", "stride", TypeError, "stride", lambda: conv(X, W3, stride=1.0)),
    ("conv3x3", "padding", ValueError, "padding", lambda: conv(X, W3, padding=2)),
    ("conv3x3", "padding", TypeError, "padding", lambda: conv(X, W3, padding=None)),
    ("PackedConv3x3", "stride", ValueError, "stride", lambda: qkern.PackedConv3x3(W3, stride=0)),
    ("PackedConv3x3", "padding", ValueError, "padding", lambda: qkern.PackedConv3x3(W3, padding=-1)),
    # out= wrong / aliasing / read-only / non-contiguous
    ("gemm", "out", TypeError, "out", lambda: gemm(U8, S8, out=np.zeros((4, 3), np.int64))),
    ("gemm", "out", ValueError, "out", lambda: gemm(U8, S8, out=np.zeros((3, 4), I32))),
    ("gemm", "out", ValueError, "out", lambda: gemm(U8, S8, out=_ro((4, 3), I32))),
    ("gemm", "out", ValueError, "out", lambda: gemm(U8, S8, out=np.zeros((3, 4), I32).T)),
    ("gemm", "out", TypeError, "out", lambda: gemm(U8, S8, out=[[0] * 3] * 4)),
    ("gemm", "out", ValueError, "out", lambda: (lambda z: gemm(z, z, requant=Requant(2**30, 0, dtype="int8"), out=z))(np.zeros((4, 4), np.int8))),  # noqa: E501
    ("conv3x3", "out", TypeError, "out", lambda: conv(X, W3, out=np.zeros((1, 5, 5, 6), np.uint8))),
    ("conv3x3", "out", ValueError, "out", lambda: conv(X, W3, out=_ro((1, 5, 5, 6), I32))),
    ("conv_transpose2x2", "out", ValueError, "out", lambda: deconv(X, W2, out=np.zeros((1, 10, 10, 5), I32))),
    ("PackedGemm.__call__", "out", ValueError, "out", lambda: PG(U8, out=_ro((4, 3), I32))),
    ("PackedGemm.__call__", "out", TypeError, "out", lambda: PG(U8, out=np.zeros((4, 3), np.float32))),
    ("PackedConv3x3.__call__", "out", ValueError, "out", lambda: PC(X, out=np.zeros((1, 5, 5, 6), I32)[:, ::-1])),
    ("PackedConvTranspose2x2.__call__", "out", ValueError, "out", lambda: PD(X, out=np.zeros((1, 10, 9, 6), I32))),
    # views (an overlapping out view) and empty inputs where they cannot work
    ("PackedGemm.__call__", "views", ValueError, "overlap", lambda: (lambda buf: PG(buf[:32].reshape(4, 8), out=buf[16:64].view(I32).reshape(4, 3)))(np.zeros(128, np.uint8))),  # noqa: E501
    ("quantize", "empty", ValueError, "axis", lambda: qkern.quantize(np.zeros((0,), np.float32), np.ones(1), np.zeros(1, int), axis=1)),  # noqa: E501
    ("quantize", "NaN", ValueError, "NaN", lambda: qkern.quantize(np.array([np.nan], np.float32), 0.1, 0)),
    # layout steps, dynamic Linear, model files and models
    ("quantize_to_nhwc", "rank", ValueError, "x", lambda: qkern.quantize_to_nhwc(np.zeros((2, 3), np.float32), 0.1, 0)),
    ("quantize_to_nhwc", "scale", ValueError, "scale", lambda: qkern.quantize_to_nhwc(np.zeros((1, 2, 3, 3), np.float32), -0.1, 0)),  # noqa: E501
    ("quantize_to_nhwc", "zero point", ValueError, "zero_point", lambda: qkern.quantize_to_nhwc(np.zeros((1, 2, 3, 3), np.float32), 0.1, 300)),  # noqa: E501
    ("dequantize_to_nchw", "dtype", TypeError, "q", lambda: qkern.dequantize_to_nchw(np.zeros((1, 2, 3, 3), np.int32), 0.1, 0)),  # noqa: E501
    ("dequantize_to_nchw", "rank", ValueError, "q", lambda: qkern.dequantize_to_nchw(np.zeros((2, 3), np.uint8), 0.1, 0)),  # noqa: E501
    ("dequantize_to_nchw", "scale", ValueError, "scale", lambda: qkern.dequantize_to_nchw(np.zeros((1, 2, 3, 3), np.uint8), 0.0, 0)),  # noqa: E501
    ("DynamicLinear", "dtype", TypeError, "weight", lambda: qkern.DynamicLinear(np.zeros((4, 3), np.int8), None)),
    ("DynamicLinear", "rank", ValueError, "weight", lambda: qkern.DynamicLinear(np.zeros(4, np.float32), None)),
    ("DynamicLinear", "shape", ValueError, "bias", lambda: qkern.DynamicLinear(np.zeros((4, 3), np.float32), np.zeros(5, np.float32))),  # noqa: E501
    ("DynamicLinear.__call__", "shape", ValueError, "x", lambda: DL(np.zeros((2, 5), np.float32))),
    ("DynamicLinear.__call__", "dtype", TypeError, "x", lambda: DL(np.zeros((2, 3), np.int8))),
    ("load", "type", TypeError, "path", lambda: qkern.load(123)),
    ("QuantizedModel.__call__", "shape", ValueError, "input channels", lambda: _tiny_model()(np.ones((1, 4), np.float32))),  # noqa: E501
    ("QuantizedModel.__call__", "dtype", TypeError, "floats", lambda: _tiny_model()(np.ones((1, 3), np.int32))),
    ("QuantizedModel.__call__", "rank", ValueError, "4-D NCHW or 2-D", lambda: _tiny_model()(np.ones(3, np.float32))),
    # runtime controls
    ("set_isa", "name", ValueError, "isa", lambda: qkern.set_isa("sse9")),
    ("set_isa", "name", TypeError, "ISA", lambda: qkern.set_isa(2)),
    ("set_num_threads", "range", ValueError, "threads", lambda: qkern.set_num_threads(0)),
    ("set_num_threads", "range", ValueError, "threads", lambda: qkern.set_num_threads(10**6)),
    ("set_num_threads", "type", TypeError, "n", lambda: qkern.set_num_threads(2.0)),
    ("set_backend", "name", ValueError, "backend", lambda: qkern.set_backend("gpu")),
    ("set_backend", "name", TypeError, "backend", lambda: qkern.set_backend(None)),
    ("backend", "name", ValueError, "backend", lambda: qkern.backend("fast").__enter__()),
]  # fmt: skip

# Public callables that take no user input worth attacking.
NO_INPUT = {"available_isas", "get_isa", "get_num_threads", "get_backend", "info", "kernels"}


def test_every_public_callable_is_in_the_matrix():
    covered = {c[0] for c in CASES}
    public = {n for n in qkern.__all__ if callable(getattr(qkern, n))}
    assert public - NO_INPUT - {c.split(".")[0] for c in covered} == set()
    # A QuantizedModel is made by ModelBuilder / qkern.torch.convert / load; its call is what users feed.
    assert {"QuantizedModel.__call__", "DynamicLinear.__call__"} <= covered
    packed = {n for n in public if n.startswith("Packed")}
    assert {f"{n}.__call__" for n in packed} <= covered


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize(("fn", "cls", "err", "name", "call"), CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CASES])
def test_bad_input(fn, cls, err, name, call, backend):
    if backend == "native" and _backend.core is None:
        pytest.skip("qkern._core is not built")
    with qkern.backend(backend), pytest.raises(Exception) as info:
        call()
    exc = info.value
    assert type(exc) is err, f"{fn} [{cls}]: {type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert name in str(exc), f"{fn} [{cls}]: the message does not name {name!r}: {exc}"
