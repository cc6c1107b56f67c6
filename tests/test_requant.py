"""Requant: each mode, per-tensor and per-channel, native output stage == NumPy == independent formulas."""

from __future__ import annotations

import numpy as np
import pytest
import qkern
from qkern import _backend

core = _backend.core
I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def _acc(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    acc = rng.integers(-(2**20), 2**20, shape).astype(np.int64)
    wild = rng.integers(I32_MIN, I32_MAX + 1, shape, dtype=np.int64)
    acc = np.where(rng.random(shape) < 0.1, wild, acc)
    flat = acc.reshape(-1)
    flat[:8] = [I32_MIN, I32_MAX, 0, -1, 1, I32_MIN + 1, I32_MAX - 1, 2**30]
    return acc.astype(np.int32)


def _requants(rng: np.random.Generator, channels: int) -> list[qkern.Requant]:
    out = []
    for dtype in ("uint8", "int8"):
        zp = int(rng.integers(-128, 128)) if dtype == "int8" else int(rng.integers(0, 256))
        for rounding in ("gemmlowp", "single"):
            reals = np.exp(rng.uniform(-25, 3, channels))
            reals[0] = 1.0
            m, s = qkern.quantize_multiplier(reals)
            out.append(qkern.Requant(m, s, zp, dtype=dtype, rounding=rounding))
            out.append(qkern.Requant(int(m[1]), int(s[1]), zp, dtype=dtype, rounding=rounding))
        f = np.exp(rng.uniform(-25, 3, channels)).astype(np.float32)
        out.append(qkern.Requant(f, zero_point=zp, dtype=dtype))
        out.append(
            qkern.Requant(
                float(f[2]),
                zero_point=zp,
                dtype=dtype,
                qmin=zp,
                qmax=zp + 5 if dtype == "uint8" and zp < 250 else None,
            )
        )
    return out


def _stage(rq: qkern.Requant, channels: int):
    m, s, f = rq.expanded(channels)
    return core.StageArgs(rq.mode_code, m, s, f, rq.zero_point, rq.qmin, rq.qmax)


@pytest.mark.skipif(core is None, reason="qkern._core is not built")
def test_native_output_stage_equals_numpy(rng):
    channels = 7
    acc = _acc(rng, (3000, channels))
    bias = rng.integers(I32_MIN, I32_MAX + 1, channels, dtype=np.int64).astype(np.int32)
    for rq in _requants(rng, channels):
        for b in (None, bias):
            want = qkern.requantize(acc, rq, b)
            got = np.empty_like(want)
            core.requantize(acc, b, _stage(rq, channels), got)
            np.testing.assert_array_equal(got, want, err_msg=repr(rq))


def _formula(acc: np.ndarray, rq: qkern.Requant) -> np.ndarray:
    """Independent per-element evaluation with Python ints and NumPy float32 scalars."""
    out = np.empty(acc.shape, dtype=np.int64)
    channels = acc.shape[-1]
    m, s, f = rq.expanded(channels)
    for idx, v in np.ndenumerate(acc):
        c = idx[-1]
        v = int(v)
        if rq.rounding == "fp32":
            p = np.float32(v) * f[c]
            r = int(np.rint(p)) if np.isfinite(p) else (10**12 if p > 0 else -(10**12))
        elif rq.rounding == "single":
            r = (v * int(m[c]) * 2 ** (int(s[c]) + 31) + 2**61) // 2**62
        else:
            x = min(max(v * 2 ** max(int(s[c]), 0), I32_MIN), I32_MAX)
            prod = x * int(m[c])
            hi = I32_MAX if x == I32_MIN and int(m[c]) == I32_MIN else (prod + 2**30) // 2**31
            e = max(-int(s[c]), 0)
            r = int(abs(hi) // 2**e + (1 if abs(hi) % 2**e * 2 >= 2**e and e > 0 else 0))
            r = r if hi >= 0 else -r
        out[idx] = min(max(r + rq.zero_point, rq.qmin), rq.qmax)
    return out


def test_numpy_output_stage_equals_formula(rng):
    channels = 5
    acc = _acc(rng, (300, channels))
    for rq in _requants(rng, channels):
        np.testing.assert_array_equal(qkern.requantize(acc, rq).astype(np.int64), _formula(acc, rq), err_msg=repr(rq))


def test_bias_is_added_with_int32_wrap():
    rq = qkern.Requant(2**30, 1, 0, dtype="int8", rounding="single")  # multiplier 1.0
    acc = np.array([[I32_MAX, -5]], np.int32)
    out = qkern.requantize(acc, rq, np.array([1, 3], np.int32))
    assert out.tolist() == [[-128, -2]]  # INT32_MAX + 1 wraps to INT32_MIN, then saturates


def test_from_scales_multipliers():
    rq = qkern.Requant.from_scales(0.02, 0.003, 0.11, 5)
    assert (int(rq.multiplier), int(rq.shift)) == qkern.quantize_multiplier(
        float(np.float32(0.02)) * float(np.float32(0.003)) / float(np.float32(0.11))
    )
    f = qkern.Requant.from_scales(0.02, np.array([0.003, 0.004]), 0.11, 5, rounding="fp32")
    want = (np.float32(0.02) * np.array([0.003, 0.004], np.float32)) / np.float32(0.11)
    np.testing.assert_array_equal(f.multiplier, want.astype(np.float32))
    assert f.channels == 2 and f.shift is None
    relu = qkern.Requant.from_scales(0.02, 0.003, 0.11, 5, dtype="uint8", relu=True)
    assert relu.qmin == 5
    assert qkern.requantize(np.array([-(10**7), 10**5, 10**7], np.int32), relu).tolist() == [5, 60, 255]


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"multiplier": -1, "shift": 0}, ValueError, "multiplier"),
        ({"multiplier": 2**31, "shift": 0}, ValueError, "multiplier"),
        ({"multiplier": 2**30, "shift": 31}, ValueError, "shift"),
        ({"multiplier": 2**30, "shift": -32}, ValueError, "shift"),
        ({"multiplier": 1.5, "shift": 0}, TypeError, "multiplier"),
        ({"multiplier": 0.5, "shift": 0, "rounding": "fp32"}, ValueError, "no shift"),
        ({"multiplier": float("nan")}, ValueError, "multiplier"),
        ({"multiplier": -0.5}, ValueError, "multiplier"),
        ({"multiplier": 2**30, "shift": 0, "rounding": "banker"}, ValueError, "rounding"),
        ({"multiplier": 2**30, "shift": 0, "zero_point": 256}, ValueError, "zero_point"),
        ({"multiplier": 2**30, "shift": 0, "dtype": "int16"}, ValueError, "dtype"),
        ({"multiplier": 2**30, "shift": 0, "qmin": 10, "qmax": 5}, ValueError, "qmin"),
        ({"multiplier": np.array([2**30, 2**30]), "shift": np.array([0, 0, 0])}, ValueError, "shapes"),
        ({"multiplier": 2**30, "rounding": "gemmlowp"}, ValueError, "shift"),
    ],
)
def test_requant_rejects_bad_parameters(kwargs, err, match):
    with pytest.raises(err, match=match):
        qkern.Requant(**kwargs)


def test_requantize_rejects_bad_arguments():
    rq = qkern.Requant(np.full(3, 2**30), np.zeros(3, np.int32), 0)
    with pytest.raises(TypeError, match="acc"):
        qkern.requantize(np.zeros((2, 3), np.int64), rq)
    with pytest.raises(ValueError, match="channels"):
        qkern.requantize(np.zeros((2, 4), np.int32), rq)
    with pytest.raises(ValueError, match="bias"):
        qkern.requantize(np.zeros((2, 3), np.int32), rq, np.zeros(4, np.int32))
    with pytest.raises(TypeError, match="requant"):
        qkern.requantize(np.zeros((2, 3), np.int32), "gemmlowp")
