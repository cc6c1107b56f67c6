"""Bad ModelBuilder / QuantizedModel input raises TypeError or ValueError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import qkern
from qkern.model import ModelBuilder

QA = qkern.QParams(np.float32(0.05), 128)
QW = qkern.QParams(np.float32(0.01), 0, "int8")
W3 = np.ones((4, 3, 3, 2), np.int8)


def _builder() -> tuple[ModelBuilder, object]:
    b = ModelBuilder()
    return b, b.input(QA, name="x")


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda b, x: b.conv2d(x, W3.astype(np.float32), QW, None, QA), TypeError, "w_q"),
        (lambda b, x: b.conv2d(x, W3, QA, None, QA), TypeError, "w_qparams"),
        (lambda b, x: b.conv2d(x, W3, "qw", None, QA), TypeError, "w_qparams"),
        (lambda b, x: b.conv2d(x, W3, QW, None, 0.1), TypeError, "out_qparams"),
        (lambda b, x: b.conv2d(x, W3, QW, np.zeros(3, np.int32), QA), ValueError, "bias_q"),
        (lambda b, x: b.conv2d(x, W3, QW, np.zeros(4, np.int64), QA), TypeError, "bias_q"),
        (lambda b, x: b.conv2d(x, W3, QW, None, QA, stride=3), ValueError, "stride"),
        (lambda b, x: b.conv2d(x, W3, QW, None, QA, padding=2), ValueError, "padding"),
        (lambda b, x: b.conv2d(x, W3, QW, None, QA, kernel_size=5), ValueError, "kernel_size"),
        (lambda b, x: b.conv2d(x, W3, QW, None, QA, kernel_size=1, padding=0), ValueError, "w_q"),
        (
            lambda b, x: b.conv2d(x, np.ones((4, 1, 1, 2), np.int8), QW, None, QA, kernel_size=1, padding=1),
            ValueError,
            "padding",
        ),
        (lambda b, x: b.conv2d("x", W3, QW, None, QA), TypeError, "x"),
        (lambda b, x: b.conv2d(ModelBuilder().input(QA), W3, QW, None, QA), ValueError, "x"),
        (
            lambda b, x: b.conv2d(
                x, W3, qkern.QParams(np.full(3, 0.1, np.float32), np.zeros(3, np.int32), "int8"), None, QA
            ),
            ValueError,
            "w_qparams",
        ),
        (
            lambda b, x: b.conv2d(x, W3, QW, None, qkern.QParams(np.ones(2, np.float32), np.zeros(2, np.int32))),
            ValueError,
            "out_qparams",
        ),
        (lambda b, x: b.conv2d(b.conv2d(x, W3, QW, None, QA), W3, QW, None, QA), ValueError, "input channels"),
        (lambda b, x: b.linear(b.conv2d(x, W3, QW, None, QA), np.ones((3, 4), np.int8), QW, None, QA), ValueError, "x"),
        (lambda b, x: b.conv_transpose2x2(x, W3, QW, None, QA), ValueError, "w_q"),
        (lambda b, x: b.add(x, 1, QA), TypeError, "x2"),
        (lambda b, x: b.cat(x, QA), TypeError, "xs"),
        (lambda b, x: b.cat([], QA), ValueError, "xs"),
        (lambda b, x: b.cat([x, None], QA), TypeError, r"xs\[1\]"),
        (lambda b, x: b.max_pool2d(x, 0), ValueError, "kernel_size"),
        (lambda b, x: b.max_pool2d(x, 2, 2, 2), ValueError, "padding"),
        (lambda b, x: b.max_pool2d(x, 2.0), TypeError, "kernel_size"),
        (lambda b, x: b.avg_pool2d(x, 2, 0, QA), ValueError, "stride"),
        (lambda b, x: b.avg_pool2d(x, 4096, 1, QA), ValueError, "kernel_size"),
        (lambda b, x: b.lut(x, np.zeros(255, np.uint8), QA), ValueError, "table"),
        (lambda b, x: b.lut(x, np.zeros(256, np.int8), QA), TypeError, "table"),
        (lambda b, x: b.lut(x, [0] * 256, QA), TypeError, "table"),
        (lambda b, x: b.lut(x, np.zeros(256, np.uint8), qkern.QParams(0.1, 5, qmin=5)), ValueError, "table"),
        (lambda b, x: b.float_op([x], "tanh", QA), TypeError, "fn"),
        (lambda b, x: b.float_op(x, np.tanh, QA), TypeError, "inputs"),
        (lambda b, x: b.input(QA, name="x"), ValueError, "name"),
        (lambda b, x: b.flatten(x, name=3), TypeError, "name"),
        (lambda b, x: b.output(7), TypeError, "y"),
    ],
)
def test_builder_rejects(call, exc, match) -> None:
    b, x = _builder()
    with pytest.raises(exc, match=match):
        call(b, x)


def test_builder_level_errors() -> None:
    with pytest.raises(ValueError, match="rounding"):
        ModelBuilder(rounding="nearest")
    with pytest.raises(TypeError, match="rounding"):
        ModelBuilder(rounding=None)
    b = ModelBuilder()
    with pytest.raises(ValueError, match="input"):
        b.build()
    x = b.input(QA)
    with pytest.raises(ValueError, match="output"):
        b.build()
    b.output(x, name="y")
    with pytest.raises(ValueError, match="already used"):
        b.output(x, name="y")


def test_model_call_errors() -> None:
    b, x = _builder()
    y = b.conv2d(x, W3, QW, None, QA, name="conv")
    b.output(y)
    model = b.build()
    with pytest.raises(TypeError, match="1 input"):
        model()
    with pytest.raises(TypeError, match="float"):
        model(np.zeros((1, 2, 4, 4), np.uint8))
    with pytest.raises(TypeError, match="input 0"):
        model([[1.0]])
    with pytest.raises(ValueError, match="4-D"):
        model(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="conv"):  # wrong channel count, found when planning
        model(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model(np.full((1, 2, 4, 4), np.nan, np.float32))
    with pytest.raises(TypeError, match="dtype uint8"):
        model.run_int(np.zeros((1, 4, 4, 2), np.int8))
    with pytest.raises(ValueError, match="not a step"):
        model.qparams("nope")
    assert model.qparams("conv") == QA
    assert model(np.zeros((1, 2, 4, 4), np.float32)).shape == (1, 4, 4, 4)  # still works after the errors
