"""QAT quantizers: forward equals each paper's formula (written out here), gradients equal the stated rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
qat = pytest.importorskip("qkern.torch.qat")

pytestmark = pytest.mark.torch

BITS = [2, 3, 4, 8]


def _randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy((rng.standard_normal(shape) * scale).astype(np.float32))


def _step(n: int) -> np.float32:
    return np.float32(1.0) / np.float32(n)


def _assert_on_grid(out: torch.Tensor, index: np.ndarray, step) -> None:
    """out == index * step in float32, bit for bit."""
    expected = index.astype(np.float32) * np.asarray(step, dtype=np.float32)
    assert np.array_equal(out.detach().numpy(), expected)


# ---- DoReFa (arXiv 1606.06160) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", BITS)
def test_dorefa_weight_forward_is_the_paper_formula(rng, k):
    w = _randn(rng, 16, 8, 3, 3, scale=0.3)
    n = 2**k - 1
    # Paper: r = tanh(w) / (2 max|tanh(w)|) + 1/2; w_q = 2 quantize_k(r) - 1, quantize_k(r) = round(n r) / n.
    t = np.tanh(w.numpy().astype(np.float64))
    r = t / (2 * np.abs(t).max()) + 0.5
    i = np.round(n * r)
    out = qat.DoReFaWeight(k)(w)
    _assert_on_grid(out, 2 * i - n, _step(n))
    assert np.abs(out.detach().numpy() - (2 * i / n - 1)).max() <= 2e-7


def test_dorefa_weight_gradient_is_straight_through_the_rounding(rng):
    w = _randn(rng, 64, scale=0.5).requires_grad_()
    g = _randn(rng, 64)
    qat.DoReFaWeight(3)(w).backward(g)
    # Only the rounding is straight through: the gradient is that of 2 r(w) - 1 with tanh and max differentiated.
    w2 = w.detach().clone().requires_grad_()
    t = torch.tanh(w2)
    (2 * (t / (2 * t.abs().max()) + 0.5) - 1).backward(g)
    assert torch.equal(w.grad, w2.grad)


def test_dorefa_binary_weight_is_sign_times_mean_abs(rng):
    w = _randn(rng, 32)
    w[3] = 0.0
    w.requires_grad_()
    out = qat.DoReFaWeight(1)(w)
    e = np.float32(np.abs(w.detach().numpy()).mean())
    expected = np.where(w.detach().numpy() >= 0, e, -e)  # sign(0) = +1
    assert np.array_equal(out.detach().numpy(), expected)
    g = _randn(rng, 32)
    out.backward(g)
    assert torch.equal(w.grad, g)  # E is held constant, sign is straight through


@pytest.mark.parametrize("cls", [qat.DoReFaActivation, qat.WRPNActivation])
@pytest.mark.parametrize("k", BITS)
def test_unit_activation_forward_and_gradient(rng, cls, k):
    x = torch.cat([_randn(rng, 500, scale=0.8), torch.tensor([0.0, 1.0, -0.0, 1.5, -0.5])]).requires_grad_()
    n = 2**k - 1
    xs = x.detach().numpy().astype(np.float64)
    i = np.round(n * np.clip(xs, 0.0, 1.0))
    out = cls(k)(x)
    _assert_on_grid(out, i, _step(n))
    g = _randn(rng, x.numel())
    out.backward(g)
    inside = (xs >= 0) & (xs <= 1)
    assert np.array_equal(x.grad.numpy(), np.where(inside, g.numpy(), 0))
    qp = cls(k).qkern_qparams()
    assert (qp.dtype, qp.zero_point, qp.qmin, qp.qmax, qp.scale) == ("uint8", 0, 0, n, _step(n))


# ---- WRPN (arXiv 1709.01134) -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", BITS)
def test_wrpn_weight_forward_and_gradient(rng, k):
    w = torch.cat([_randn(rng, 400, scale=0.7), torch.tensor([1.0, -1.0, 1.25, -3.0, 0.0])]).requires_grad_()
    m = 2 ** (k - 1) - 1
    ws = w.detach().numpy().astype(np.float64)
    i = np.round(m * np.clip(ws, -1.0, 1.0))
    out = qat.WRPNWeight(k)(w)
    _assert_on_grid(out, i, _step(m))
    g = _randn(rng, w.numel())
    out.backward(g)
    assert np.array_equal(w.grad.numpy(), np.where(np.abs(ws) <= 1, g.numpy(), 0))
    w_int, qp = qat.WRPNWeight(k).qkern_quantize(w)
    assert w_int.dtype == np.int8 and np.array_equal(w_int, i)
    assert (qp.qmin, qp.qmax, qp.zero_point) == (-m, m, 0)


# ---- PACT (arXiv 1805.06085) -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", BITS)
def test_pact_forward_gradients_and_boundaries(rng, k):
    alpha = 2.5
    x = torch.cat([_randn(rng, 600, scale=2.0), torch.tensor([0.0, alpha, 3.0, -1.0])]).requires_grad_()
    pact = qat.PACT(k, alpha=alpha)
    out = pact(x)
    n = 2**k - 1
    a = np.float32(alpha)
    y = np.clip(x.detach().numpy(), 0, a)
    i = np.round(y * (np.float32(n) / a))  # round(y (2^k - 1) / alpha)
    _assert_on_grid(out, i, a / np.float32(n))
    g = _randn(rng, x.numel())
    out.backward(g)
    xs = x.detach().numpy()
    # Eq. (3): dy_q/dx = 1 on [0, alpha), else 0; dy_q/dalpha = 1 on [alpha, inf), else 0.
    assert np.array_equal(x.grad.numpy(), np.where((xs >= 0) & (xs < a), g.numpy(), 0))
    assert x.grad[-4] == g[-4] and x.grad[-3] == 0  # x = 0 passes, x = alpha does not
    expected_alpha = g.numpy().astype(np.float64)[xs >= a].sum()
    assert pact.alpha.grad is not None and math.isclose(pact.alpha.grad.item(), expected_alpha, rel_tol=1e-5)
    qp = pact.qkern_qparams()
    assert (qp.scale, qp.zero_point, qp.qmin, qp.qmax) == (a / np.float32(n), 0, 0, n)


def test_pact_alpha_gradient_counts_exactly_the_clipped_elements():
    pact = qat.PACT(4, alpha=1.0)
    x = torch.tensor([-2.0, 0.0, 0.5, 1.0, 1.0, 7.0])
    pact(x).sum().backward()
    assert pact.alpha.grad.item() == 3.0  # x = 1.0 (twice) and 7.0


def test_pact_l2_penalty_and_bad_arguments():
    pact = qat.PACT(4, alpha=3.0, alpha_l2=0.01)
    assert math.isclose(pact.penalty().item(), 0.09, rel_tol=1e-6)
    model = torch.nn.Sequential(pact, qat.PACT(2, alpha=2.0, alpha_l2=0.5))
    assert math.isclose(qat.qat_regularization(model).item(), 0.09 + 2.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        qat.PACT(4, alpha=0.0)
    with pytest.raises(ValueError, match="bits"):
        qat.PACT(9)
    with pytest.raises(TypeError, match="bits"):
        qat.PACT(4.0)


# ---- LSQ (arXiv 1902.08153) --------------------------------------------------------------------------------------


def _lsq_reference(v: np.ndarray, s: np.ndarray, qn: int, qp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(v_bar, dv_hat/dv, dv_hat/ds) of the paper's eqs. (1)-(3) and (5), elementwise."""
    ratio = v / s
    v_bar = np.round(np.clip(ratio, -qn, qp))
    inside = (ratio > -qn) & (ratio < qp)
    ds = np.where(inside, np.round(ratio) - ratio, np.where(ratio <= -qn, -qn, qp))
    return v_bar, inside.astype(np.float32), ds


@pytest.mark.parametrize("k", BITS)
@pytest.mark.parametrize("signed", [False, True])
def test_lsq_per_tensor_forward_gradients_and_boundaries(rng, k, signed):
    q = qat.LSQ(k, signed=signed)
    qn, qp = (2 ** (k - 1), 2 ** (k - 1) - 1) if signed else (0, 2**k - 1)
    v0 = _randn(rng, 8, 50, scale=1.5)
    q(v0)  # initialises the step: 2 mean|v| / sqrt(Q_P)
    s0 = np.float32(2 * np.float64(np.abs(v0.numpy()).mean(dtype=np.float32)) / math.sqrt(qp))
    assert math.isclose(q.step.item(), s0, rel_tol=1e-6)
    s = np.float32(q.step.item())
    v = v0.clone()
    v[0, :3] = torch.tensor([-qn * s, qp * s, 0.0])  # exactly on both clipping boundaries, and zero
    v.requires_grad_()
    out = q(v)
    v_bar, dv, ds = _lsq_reference(v.detach().numpy(), s, qn, qp)
    _assert_on_grid(out, v_bar, s)
    g = _randn(rng, *v.shape)
    out.backward(g)
    assert np.array_equal(v.grad.numpy(), g.numpy() * dv)
    n_per_step = v.numel() if signed else v.numel() // v.shape[0]
    grad_scale = 1.0 / math.sqrt(n_per_step * qp)
    expected = (g.numpy().astype(np.float64) * ds).sum() * grad_scale
    assert math.isclose(q.step.grad.item(), expected, rel_tol=1e-4, abs_tol=1e-6)
    if signed:
        assert dv[0, 0] == 0 and ds[0, 0] == -qn and dv[0, 1] == 0 and ds[0, 1] == qp


@pytest.mark.parametrize("k", BITS)
def test_lsq_per_channel_weight_step(rng, k):
    w = _randn(rng, 6, 4, 3, 3, scale=0.2)
    q = qat.LSQ(k, signed=True, channels=6)
    qn, qp = 2 ** (k - 1), 2 ** (k - 1) - 1
    q(w)
    s = q.step.detach().numpy().reshape(-1, 1, 1, 1)
    init = 2 * np.abs(w.numpy()).reshape(6, -1).mean(axis=1) / math.sqrt(qp)
    np.testing.assert_allclose(s.reshape(-1), init, rtol=1e-6)
    w.requires_grad_()
    out = q(w)
    v_bar, dv, ds = _lsq_reference(w.detach().numpy(), s, qn, qp)
    _assert_on_grid(out, v_bar, s)
    g = _randn(rng, *w.shape)
    out.backward(g)
    assert np.array_equal(w.grad.numpy(), g.numpy() * dv)
    expected = (g.numpy().astype(np.float64) * ds).reshape(6, -1).sum(axis=1) / math.sqrt(36 * qp)
    np.testing.assert_allclose(q.step.grad.numpy(), expected, rtol=1e-4, atol=1e-6)
    w_int, qparams = q.qkern_quantize(w)
    assert np.array_equal(w_int, v_bar) and qparams.axis == 0 and (qparams.qmin, qparams.qmax) == (-qn, qp)
    assert np.array_equal(qparams.dequantize(w_int), out.detach().numpy())


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 8),
    alpha=st.floats(0.0625, 50.0, allow_nan=False, width=32),
    step=st.floats(2.0**-10, 2.0, allow_nan=False, width=32),
    seed=st.integers(0, 2**31 - 1),
)
def test_pact_and_lsq_outputs_are_exported_grids(k, alpha, step, seed):
    """For any alpha / step, the forward is i * (the exported scale) with i inside the exported integer range."""
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(200).astype(np.float32) * alpha)
    pact = qat.PACT(k, alpha=alpha)
    qp = pact.qkern_qparams()
    out = pact(x).detach().numpy()
    assert np.array_equal(qp.dequantize(qp.quantize(out)), out)
    lsq = qat.LSQ(k, signed=True)
    lsq(x)  # initialise, then set the step under test
    with torch.no_grad():
        lsq.step.fill_(step)
    w_int, wqp = lsq.qkern_quantize(x)
    assert np.array_equal(wqp.dequantize(w_int), lsq(x).detach().numpy())
    assert w_int.min() >= wqp.qmin == -(2 ** (k - 1)) and w_int.max() <= wqp.qmax == 2 ** (k - 1) - 1


def test_lsq_step_pushed_below_zero_keeps_a_grid(rng):
    """An optimiser may overshoot the step past zero; the grid is |step| and still exports."""
    v = _randn(rng, 100)
    q = qat.LSQ(4, signed=True)
    q(v)
    with torch.no_grad():
        q.step.fill_(-0.125)
    w_int, qp = q.qkern_quantize(v)
    assert qp.scale == np.float32(0.125)
    assert np.array_equal(qp.dequantize(w_int), q(v).detach().numpy())
