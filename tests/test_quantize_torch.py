"""quantize/dequantize/calc_qparams equal torch 2.13's quantize_per_tensor/_per_channel and observers bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import qkern

torch = pytest.importorskip("torch")

TDT = {"uint8": torch.quint8, "int8": torch.qint8}
RANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def _torch_q_per_tensor(x: np.ndarray, scale: float, zp: int, dtype: str) -> torch.Tensor:
    return torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, TDT[dtype])


def _hard_inputs(rng: np.random.Generator, scale: float, n: int) -> np.ndarray:
    s32 = np.float32(scale)
    k = rng.integers(-700, 700, n)
    parts = [
        ((k + 0.5) * s32).astype(np.float32),  # exact ties of x/scale
        (k * s32).astype(np.float32),  # exact integers
        (rng.standard_normal(n) * 80 * s32).astype(np.float32),
        (rng.standard_normal(n // 8) * 1e4 * s32).astype(np.float32),  # far outside the range
        np.array([0.0, -0.0, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, -1e-45], np.float32),
    ]
    return np.concatenate(parts)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_quantize_per_tensor_equals_torch_on_a_million_values(rng, dtype):
    lo, hi = RANGE[dtype]
    total = 0
    for zp in range(lo, hi + 1):  # every zero point of the dtype
        scale = float(np.exp(rng.uniform(-9, 4)))
        x = _hard_inputs(rng, scale, 1300)
        q = qkern.quantize(x, scale, zp, dtype)
        tq = _torch_q_per_tensor(x, scale, zp, dtype)
        np.testing.assert_array_equal(q, tq.int_repr().numpy(), err_msg=f"scale={scale!r} zp={zp}")
        np.testing.assert_array_equal(qkern.dequantize(q, scale, zp), tq.dequantize().numpy())
        total += x.size
    assert total >= 10**6


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("scale", [1e-30, 3.1e-12, 1e-7, 0.0078125, 0.1, 1.0, 7.3, 1e5, 1e12, 1e30])
def test_quantize_tiny_and_huge_scales(rng, dtype, scale):
    lo, hi = RANGE[dtype]
    for zp in (lo, 0 if lo < 0 else 1, hi):
        x = np.concatenate([_hard_inputs(rng, scale, 2000), (rng.standard_normal(500) * 10).astype(np.float32)])
        q = qkern.quantize(x, scale, zp, dtype)
        np.testing.assert_array_equal(q, _torch_q_per_tensor(x, scale, zp, dtype).int_repr().numpy())


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_quantize_per_channel_equals_torch(rng, dtype, axis):
    lo, hi = RANGE[dtype]
    channels = 16
    shape = [40, 40, 40]
    shape[axis] = channels
    total = 0
    for _ in range(40):
        scales = np.exp(rng.uniform(-9, 3, channels))
        zps = rng.integers(lo, hi + 1, channels)
        s32 = scales.astype(np.float32).reshape([-1 if i == axis % 3 else 1 for i in range(3)])
        k = rng.integers(-300, 300, shape)
        x = np.where(rng.random(shape) < 0.5, (k + 0.5) * s32, rng.standard_normal(shape) * 90 * s32).astype(np.float32)
        q = qkern.quantize(x, scales, zps, dtype, axis=axis)
        tq = torch.quantize_per_channel(
            torch.from_numpy(x), torch.from_numpy(scales), torch.from_numpy(zps), axis % 3, TDT[dtype]
        )
        np.testing.assert_array_equal(q, tq.int_repr().numpy())
        np.testing.assert_array_equal(qkern.dequantize(q, scales, zps, axis=axis), tq.dequantize().numpy())
        total += x.size
    assert total >= 10**6


def test_quantize_per_tensor_and_per_channel_formulas_really_differ():
    """The two torch paths round differently on some exact ties; our two formulas must track each one."""
    scale = 0.0123
    x = ((np.arange(-5000, 5000) + 0.5) * np.float32(scale)).astype(np.float32)
    pt = qkern.quantize(x, scale, 3, "int8")
    pc = qkern.quantize(x.reshape(1, -1), np.array([scale]), np.array([3]), "int8", axis=0).ravel()
    assert np.count_nonzero(pt != pc) > 0


# ---- calc_qparams vs MinMaxObserver / PerChannelMinMaxObserver ----


def _observer_kwargs(dtype: str, bits: int, narrow: bool) -> dict:
    if bits == 8 and not narrow:
        return {}
    if dtype == "uint8":
        return {"quant_min": 0, "quant_max": 2**bits - 1}
    qmax = 2 ** (bits - 1) - 1
    return {"quant_min": -qmax if narrow else -(qmax + 1), "quant_max": qmax}


DEGENERATE = [(0.0, 0.0), (1.5, 1.5), (-2.0, -2.0), (-3.0, -0.5), (0.25, 9.0), (-1e-9, 1e-9), (-1e30, 1e30)]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduce_range", [False, True])
@pytest.mark.parametrize("bits", [8, 7, 4, 2])
def test_calc_qparams_equals_minmax_observer(rng, dtype, symmetric, reduce_range, bits):
    if symmetric and reduce_range and dtype == "uint8":
        with pytest.raises(ValueError, match="reduce_range"):
            qkern.calc_qparams(-1.0, 1.0, dtype, symmetric=True, reduce_range=True, bits=bits)
        return
    scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    ranges = [tuple(sorted(rng.standard_normal(2) * 10 ** rng.uniform(-4, 4))) for _ in range(150)] + DEGENERATE
    for mn, mx in ranges:
        obs = torch.ao.quantization.MinMaxObserver(
            dtype=TDT[dtype],
            qscheme=scheme,
            reduce_range=reduce_range,
            **_observer_kwargs(dtype, bits, False),
        )
        obs(torch.tensor([mn, mx], dtype=torch.float32))
        ts, tz = obs.calculate_qparams()
        qp = qkern.calc_qparams(mn, mx, dtype, symmetric=symmetric, bits=bits, reduce_range=reduce_range)
        assert qp.scale.dtype == np.float32
        assert qp.scale == ts.numpy()[0] and qp.zero_point == int(tz[0]), (mn, mx)
        assert (qp.qmin, qp.qmax) == (obs.quant_min, obs.quant_max)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_calc_qparams_narrow_range_equals_custom_observer_range(rng, dtype, symmetric):
    if dtype == "uint8":
        qp = qkern.calc_qparams(-1.0, 2.0, dtype, narrow_range=True)
        assert (qp.qmin, qp.qmax) == (1, 255)
        return
    scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    for _ in range(100):
        mn, mx = sorted(rng.standard_normal(2) * 5)
        obs = torch.ao.quantization.MinMaxObserver(dtype=torch.qint8, qscheme=scheme, quant_min=-127, quant_max=127)
        obs(torch.tensor([mn, mx], dtype=torch.float32))
        ts, tz = obs.calculate_qparams()
        qp = qkern.calc_qparams(mn, mx, "int8", symmetric=symmetric, narrow_range=True)
        assert qp.scale == ts.numpy()[0] and qp.zero_point == int(tz[0])
        assert (qp.qmin, qp.qmax) == (-127, 127)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduce_range", [False, True])
def test_calc_qparams_per_channel_equals_per_channel_observer(rng, dtype, symmetric, reduce_range):
    if symmetric and reduce_range and dtype == "uint8":
        with pytest.raises(ValueError, match="reduce_range"):  # as torch's observer
            qkern.calc_qparams(np.array([-1.0, 0.0]), np.array([1.0, 2.0]), dtype, symmetric=True, reduce_range=True)
        return
    scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    for _ in range(20):
        w = (rng.standard_normal((24, 50)) * 10 ** rng.uniform(-3, 2, (24, 1))).astype(np.float32)
        w[0] = 0.0
        w[1] = np.abs(w[1])
        w[2] = -np.abs(w[2])
        obs = torch.ao.quantization.PerChannelMinMaxObserver(
            ch_axis=0, dtype=TDT[dtype], qscheme=scheme, reduce_range=reduce_range
        )
        obs(torch.from_numpy(w))
        ts, tz = obs.calculate_qparams()
        qp = qkern.calc_qparams(w.min(axis=1), w.max(axis=1), dtype, symmetric=symmetric, reduce_range=reduce_range)
        assert qp.axis == 0
        np.testing.assert_array_equal(qp.scale, ts.numpy().astype(np.float32))
        np.testing.assert_array_equal(qp.zero_point, tz.numpy())
