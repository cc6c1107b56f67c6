"""FakeQuantize == qkern.quantize then dequantize, and == torch.fake_quantize_per_tensor/_per_channel_affine."""

from __future__ import annotations

import numpy as np
import pytest
import qkern

torch = pytest.importorskip("torch")
qat = pytest.importorskip("qkern.torch.qat")

pytestmark = pytest.mark.torch

BITS = [2, 3, 4, 8]


def _x(rng: np.random.Generator, *shape: int) -> torch.Tensor:
    return torch.from_numpy((rng.standard_normal(shape) * 2.0 + 0.3).astype(np.float32))


def _near_tie(x: np.ndarray, qp: qkern.QParams, axis: int | None) -> np.ndarray:
    """Where x / scale lies within 2^-14 of a half-integer: the only places two float32 roundings may differ."""
    s = np.asarray(qp.scale, dtype=np.float64)
    if axis is not None:
        s = s.reshape([-1 if d == axis else 1 for d in range(x.ndim)])
    frac = np.abs(np.mod(x.astype(np.float64) / s, 1.0) - 0.5)
    return frac < 2.0**-14


@pytest.mark.parametrize("k", BITS)
@pytest.mark.parametrize(("dtype", "qscheme"), [("uint8", "per_tensor_affine"), ("int8", "per_tensor_symmetric")])
def test_per_tensor_equals_qkern_and_torch(rng, k, dtype, qscheme):
    fq = qat.FakeQuantize(dtype, qscheme, bits=k)
    x = _x(rng, 4, 3, 9, 9)
    out = fq(x)
    qp = fq.qkern_qparams()
    lo, hi = (0, 2**k - 1) if dtype == "uint8" else (-(2 ** (k - 1)), 2 ** (k - 1) - 1)
    assert (qp.qmin, qp.qmax, qp.axis) == (lo, hi, None)
    xs = x.numpy()
    expected = qkern.dequantize(
        qkern.quantize(xs, qp.scale, qp.zero_point, dtype, qmin=lo, qmax=hi), qp.scale, qp.zero_point
    )
    assert np.array_equal(out.detach().numpy(), expected)
    t = torch.fake_quantize_per_tensor_affine(x, float(qp.scale), int(qp.zero_point), lo, hi).numpy()
    differ = t != expected
    if qp.zero_point == 0:
        assert not differ.any()
    else:  # torch rounds x / scale before adding the zero point; qkern (and quantize_per_tensor) after
        assert not (differ & ~_near_tie(xs, qp, None)).any()


@pytest.mark.parametrize("k", BITS)
@pytest.mark.parametrize(("dtype", "qscheme"), [("uint8", "per_channel_affine"), ("int8", "per_channel_symmetric")])
def test_per_channel_equals_qkern_and_torch(rng, k, dtype, qscheme):
    fq = qat.FakeQuantize(dtype, qscheme, bits=k, ch_axis=1, averaging_constant=1.0)
    x = _x(rng, 2, 6, 5, 5)
    out = fq(x)
    qp = fq.qkern_qparams()
    assert qp.axis == 1 and np.size(qp.scale) == 6
    xs = x.numpy()
    q = qkern.quantize(xs, qp.scale, qp.zero_point, dtype, axis=1, qmin=qp.qmin, qmax=qp.qmax)
    assert np.array_equal(out.detach().numpy(), qkern.dequantize(q, qp.scale, qp.zero_point, axis=1))
    t = torch.fake_quantize_per_channel_affine(
        x, torch.from_numpy(np.array(qp.scale)), torch.from_numpy(np.array(qp.zero_point)), 1, qp.qmin, qp.qmax
    ).numpy()
    differ = t != out.detach().numpy()
    if dtype == "int8":
        assert not differ.any()
    else:
        assert not (differ & ~_near_tie(xs, qp, 1)).any()


@pytest.mark.parametrize("k", [2, 8])
def test_gradient_is_straight_through_inside_the_range_as_torch(rng, k):
    fq = qat.FakeQuantize("uint8", "per_tensor_affine", bits=k)
    fq(_x(rng, 1000))  # sets the range
    fq.eval()
    x = (_x(rng, 1000) * 1.5).requires_grad_()  # partly outside the observed range
    out = fq(x)
    g = _x(rng, 1000)
    out.backward(g)
    qp = fq.qkern_qparams()
    x2 = x.detach().clone().requires_grad_()
    torch.fake_quantize_per_tensor_affine(x2, float(qp.scale), int(qp.zero_point), qp.qmin, qp.qmax).backward(g)
    assert torch.equal(x.grad, x2.grad)
    assert 0 < int((x.grad == 0).sum()) < 1000  # some elements are outside, some inside


def test_observer_follows_training_and_freezes_in_eval(rng):
    fq = qat.FakeQuantize("uint8", "per_tensor_affine", averaging_constant=1.0)
    fq(torch.tensor([0.0, 1.0]))
    assert fq.qkern_qparams().scale == np.float32(1.0 / 255)
    fq(torch.tensor([0.0, 2.0]))
    assert fq.qkern_qparams().scale == np.float32(2.0 / 255)
    fq.eval()
    fq(torch.tensor([0.0, 4.0]))
    assert fq.qkern_qparams().scale == np.float32(2.0 / 255)
    restored = qat.FakeQuantize("uint8", "per_tensor_affine")
    restored.load_state_dict(fq.state_dict())
    assert restored.qkern_qparams() == fq.qkern_qparams()


def test_unobserved_fake_quantize_cannot_export_and_bad_arguments():
    with pytest.raises(RuntimeError, match="not seen any data"):
        qat.FakeQuantize().qkern_qparams()
    with pytest.raises(ValueError, match="bits"):
        qat.FakeQuantize(bits=1)
    with pytest.raises(ValueError, match="qscheme"):
        qat.FakeQuantize(qscheme="per_tensor_sideways")


def _hard(rng: np.random.Generator, scale: float, n: int) -> np.ndarray:
    """Exact ties of x / scale, their float32 neighbours, integers, wide values, infinities."""
    s32 = np.float32(scale)
    ties = ((rng.integers(-300, 300, n) + 0.5) * s32).astype(np.float32)
    parts = [
        ties,
        np.nextafter(ties, np.float32(np.inf)),
        np.nextafter(ties, np.float32(-np.inf)),
        (rng.integers(-300, 300, n) * s32).astype(np.float32),
        (rng.standard_normal(n) * 100 * s32).astype(np.float32),
        np.array([0.0, -0.0, np.inf, -np.inf, 3e38, -3e38, 1e-45], np.float32),
    ]
    return np.concatenate(parts)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_torch_quantize_integers_equal_qkern_quantize_on_hard_inputs(rng, dtype):
    qf = pytest.importorskip("qkern.torch.qat_functions")
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    for zp in [lo, 0 if dtype == "int8" else 1, 77 if dtype == "uint8" else -77, hi]:
        scale = float(np.exp(rng.uniform(-7, 2)))
        x = _hard(rng, scale, 400)
        qp = qkern.QParams(scale, zp, dtype, None, lo, hi)
        got = qf.quantize_integers(torch.from_numpy(x), qp).numpy()
        assert np.array_equal(got, qkern.quantize(x, scale, zp, dtype).astype(np.float32)), (zp, scale)
        y = qf.dequantize_integers(torch.from_numpy(got), qp).numpy()
        assert np.array_equal(y, qkern.dequantize(qkern.quantize(x, scale, zp, dtype), scale, zp))
    scales = np.exp(rng.uniform(-6, 1, 3)).astype(np.float32)
    zps = np.array([lo, (lo + hi) // 2, hi], np.int32)
    xc = np.stack([_hard(rng, float(s), 100) for s in scales])
    qp = qkern.QParams(scales, zps, dtype, 0)
    got = qf.quantize_integers(torch.from_numpy(xc), qp).numpy()
    assert np.array_equal(got, qkern.quantize(xc, scales, zps, dtype, axis=0).astype(np.float32))
    with pytest.raises(ValueError, match="NaN"):
        qf.quantize_integers(torch.tensor([np.nan]), qkern.QParams(0.1, 0, dtype))
