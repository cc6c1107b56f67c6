"""Random models (ops, qparams, shapes from hypothesis): native planned runs == the reference backend, bit for
bit, on every ISA and 1/2 threads, and after a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import qkern
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qkern.model import ModelBuilder

ISA_THREADS = [(isa, t) for isa in qkern.available_isas() for t in (1, 2)]
OPS = ["conv3", "conv3s2", "conv1", "conv1s2", "deconv", "add", "cat", "maxpool", "avgpool", "lut", "requant"]


def _qp(rng: np.random.Generator, relu: bool = False) -> qkern.QParams:
    dtype = "uint8" if rng.random() < 0.7 else "int8"
    info = np.iinfo(dtype)
    zp = int(rng.integers(info.min, info.max))  # below the top, so that a ReLU range [zp, qmax] is not empty
    return qkern.QParams(np.float32(rng.uniform(0.01, 0.2)), zp, dtype, qmin=zp if relu else None)


def _wq(rng: np.random.Generator, o: int) -> qkern.QParams:
    if rng.random() < 0.5:
        return qkern.QParams(rng.uniform(0.002, 0.02, o).astype(np.float32), np.zeros(o, np.int32), "int8")
    return qkern.QParams(np.float32(rng.uniform(0.002, 0.02)), int(rng.integers(-10, 10)), "int8")


def _w(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-127, 128, shape).astype(np.int8)


def _random_model(seed: int, ops: list[str], rounding: str) -> tuple[qkern.QuantizedModel, tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    b = ModelBuilder(rounding=rounding)
    c = int(rng.integers(1, 6))
    shape = (int(rng.integers(1, 3)), c, int(rng.integers(3, 9)), int(rng.integers(3, 9)))
    x = b.input(_qp(rng), name="x")
    cur, ch, hw = x, c, shape[2:]
    for op in ops:
        if op == "avgpool" and min(hw) < 2:
            op = "requant"  # the 2x2 window needs two rows and columns
        hw = {
            "conv3s2": tuple((v - 1) // 2 + 1 for v in hw),
            "conv1s2": tuple((v - 1) // 2 + 1 for v in hw),
            "deconv": tuple(2 * v for v in hw),
            "avgpool": tuple(v - 1 for v in hw),
        }.get(op, hw)
        o = int(rng.integers(1, 9))
        bias = rng.integers(-300, 300, o).astype(np.int32) if rng.random() < 0.5 else None
        if op.startswith("conv"):
            k = 3 if op.startswith("conv3") else 1
            w, wq = _w(rng, (o, k, k, ch)), _wq(rng, o)
            out = _qp(rng, rng.random() < 0.5) if k == 3 else _qp(rng)  # a ReLU range drawn for 3x3 convs only
            stride = 2 if op.endswith("s2") else 1
            cur = b.conv2d(cur, w, wq, bias, out, kernel_size=k, stride=stride, padding=k // 2)
            ch = o
        elif op == "deconv":
            cur = b.conv_transpose2x2(cur, _w(rng, (ch, 2, 2, o)), _wq(rng, o), bias, _qp(rng))
            ch = o
        elif op == "add":
            other = b.requantize(cur, _qp(rng))
            cur = b.add(cur, other, _qp(rng, rng.random() < 0.3))
        elif op == "cat":
            cur = b.cat(
                [cur, b.lut(cur, rng.integers(0, 256, 256).astype(np.uint8), qkern.QParams(0.1, 3)), cur], _qp(rng)
            )
            ch *= 3
        elif op == "maxpool":
            cur = b.max_pool2d(cur, 3, 1, 1)
        elif op == "avgpool":
            cur = b.avg_pool2d(cur, 2, 1, _qp(rng))
        elif op == "lut":
            out = _qp(rng)
            info = np.iinfo(out.dtype)
            cur = b.lut(cur, rng.integers(info.min, info.max + 1, 256).astype(out.dtype), out)
        else:
            cur = b.requantize(cur, _qp(rng))
    g = b.global_avg_pool(cur, _qp(rng))
    b.output(b.linear(b.flatten(g), _w(rng, (3, ch)), _wq(rng, 3), None, _qp(rng)), name="logits")
    b.output(cur, name="map")
    return b.build(), shape


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**31),
    ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=5),
    rounding=st.sampled_from(["fp32", "gemmlowp", "single"]),
)
def test_random_model_native_equals_reference(seed: int, ops: list[str], rounding: str, tmp_path: Path) -> None:
    model, shape = _random_model(seed, ops, rounding)
    x = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32) * 3
    with qkern.backend("reference"):
        ref = model.trace(x)
    old = qkern.get_isa(), qkern.get_num_threads()
    try:
        for isa, t in ISA_THREADS:
            qkern.set_isa(isa)
            qkern.set_num_threads(t)
            for _ in range(2):  # the planning run and the planned (direct) run
                got = model.trace(x)
                for name, r in ref.items():
                    assert np.array_equal(got[name], r), (isa, t, name)
    finally:
        qkern.set_isa(old[0])
        qkern.set_num_threads(old[1])
    path = tmp_path / f"{seed}.qkern"
    model.save(path)
    loaded = qkern.load(path).trace(x)
    assert all(np.array_equal(loaded[name], r) for name, r in ref.items())


@pytest.mark.parametrize("op", OPS)
def test_each_op_in_a_model(op: str, tmp_path: Path) -> None:
    """Every op at least once, whatever hypothesis draws."""
    test_random_model_native_equals_reference.hypothesis.inner_test(7, [op, op], "fp32", tmp_path)
