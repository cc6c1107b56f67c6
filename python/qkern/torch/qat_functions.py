"""Autograd functions of the QAT quantizers: exact forward on an integer grid, the papers' backward (docs/qat.md).

Every forward returns `i * step` in float32, where `i` is the integer grid index as a float tensor and `step` is
the float32 grid step, so that `qkern.dequantize(i, step, 0)` equals the forward bit for bit (docs/qat.md eq. (1)).
"""

from __future__ import annotations

import numpy as np
import torch

from ..qparams import QParams, quantize


class _DoReFaWeightSTE(torch.autograd.Function):
    """r in [0, 1] -> (2 round(n r) - n) / n; gradient 2 (straight through quantize_k, then 2x - 1)."""

    @staticmethod
    def forward(ctx, r: torch.Tensor, n: int, step: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (2.0 * torch.round(r * n) - n) * step

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        return 2.0 * grad, None, None


def dorefa_weight_grid(w: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa weights for k >= 2 (eq. (4)): tanh, scale into [0, 1], quantize_k, map to [-1, 1].

    tanh and the max are differentiated as usual; only the rounding is straight through.
    """
    n = 2**bits - 1
    t = torch.tanh(w)
    r = t / (2.0 * t.abs().max()) + 0.5
    step = torch.tensor(np.float32(1.0) / np.float32(n), dtype=w.dtype, device=w.device)
    return _DoReFaWeightSTE.apply(r, n, step)


class _SignMeanSTE(torch.autograd.Function):
    """1-bit DoReFa weights: sign(w) * E with E = mean|w| held constant and sign(0) = +1; identity gradient."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.where(w >= 0, e, -e)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


def dorefa_weight_binary(w: torch.Tensor) -> torch.Tensor:
    """DoReFa 1-bit weights (eq. (5)): sign(w) scaled by E = mean|w| (no gradient through E)."""
    return _SignMeanSTE.apply(w, w.detach().abs().mean())


class _ClipUnitSTE(torch.autograd.Function):
    """clip(x, 0, 1) then quantize_k: round(n x) / n; gradient 1 for 0 <= x <= 1, else 0."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, n: int, step: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.round(x.clamp(0.0, 1.0) * n) * step

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ((x >= 0) & (x <= 1)).to(grad.dtype), None, None


def unit_activation(x: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa / WRPN activations (eq. (6)): clip to [0, 1], then i / (2^k - 1) with i = round((2^k - 1) x)."""
    n = 2**bits - 1
    step = torch.tensor(np.float32(1.0) / np.float32(n), dtype=x.dtype, device=x.device)
    return _ClipUnitSTE.apply(x, n, step)


class _ClipSymmetricSTE(torch.autograd.Function):
    """WRPN weights: clip(w, -1, 1), then round(m w) / m with m = 2^(k-1) - 1; gradient 1 for |w| <= 1."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, m: int, step: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(w)
        return torch.round(w.clamp(-1.0, 1.0) * m) * step

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype), None, None


def wrpn_weight_grid(w: torch.Tensor, bits: int) -> torch.Tensor:
    """WRPN weights (eq. (7)): k - 1 magnitude bits plus a sign on [-1, 1]."""
    m = 2 ** (bits - 1) - 1
    step = torch.tensor(np.float32(1.0) / np.float32(m), dtype=w.dtype, device=w.device)
    return _ClipSymmetricSTE.apply(w, m, step)


def pact_step(alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """The PACT grid step alpha / (2^k - 1) as float32 (the activation's qkern scale)."""
    return alpha.detach() / (2**bits - 1)


class _PACTSTE(torch.autograd.Function):
    """PACT (eq. (8)-(9)): y = clip(x, 0, alpha), y_q = round(y n / alpha) alpha / n.
    dy_q/dx = 1 for 0 <= x < alpha, else 0; dy_q/dalpha = 1 for x >= alpha, else 0 (summed over x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: torch.Tensor, n: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, alpha)
        a = alpha.detach()
        y = torch.minimum(x.clamp(min=0.0), a)
        return torch.round(y * (n / a)) * (a / n)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:  # type: ignore[override]
        x, alpha = ctx.saved_tensors
        a = alpha.detach()
        inside = (x >= 0) & (x < a)
        grad_alpha = (grad * (x >= a).to(grad.dtype)).sum().reshape(alpha.shape)
        return grad * inside.to(grad.dtype), grad_alpha, None


def pact_activation(x: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """PACT activation with a learnable clipping level alpha (a 0-d or 1-element tensor)."""
    return _PACTSTE.apply(x, alpha, 2**bits - 1)


def _channel_shape(ndim: int, axis: int | None, channels: int) -> tuple[int, ...]:
    if axis is None:
        return ()
    shape = [1] * ndim
    shape[axis] = channels
    return tuple(shape)


class _LSQSTE(torch.autograd.Function):
    """LSQ (eq. (10)-(12)): v_bar = round(clip(v / s, -Q_N, Q_P)), v_hat = v_bar s.
    dv_hat/dv = 1 for -Q_N < v/s < Q_P, else 0; dv_hat/ds = round(v/s) - v/s inside, -Q_N below, Q_P above,
    times the gradient scale g (summed over the elements sharing one step)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, v: torch.Tensor, s: torch.Tensor, qn: int, qp: int, g: float, axis: int | None
    ) -> torch.Tensor:
        sv = s.detach().reshape(_channel_shape(v.ndim, axis, s.numel())) if axis is not None else s.detach()
        ratio = v / sv
        ctx.save_for_backward(ratio)
        ctx.meta = (qn, qp, g, axis, s.shape)
        return torch.round(ratio.clamp(-qn, qp)) * sv

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None, None, None]:  # type: ignore[override]
        (ratio,) = ctx.saved_tensors
        qn, qp, g, axis, s_shape = ctx.meta
        below, above = ratio <= -qn, ratio >= qp
        inside = ~(below | above)
        ds = torch.where(inside, torch.round(ratio) - ratio, torch.where(below, float(-qn), float(qp)))
        gs = grad * ds
        if axis is None:
            grad_s = gs.sum().reshape(s_shape)
        else:
            dims = [d for d in range(grad.ndim) if d != axis]
            grad_s = gs.sum(dim=dims).reshape(s_shape)
        return grad * inside.to(grad.dtype), grad_s * g, None, None, None, None


def lsq_quantize(v: torch.Tensor, s: torch.Tensor, qn: int, qp: int, g: float, axis: int | None) -> torch.Tensor:
    """LSQ fake quantization with step `s` (0-d, or one per channel along `axis`) and gradient scale `g`."""
    return _LSQSTE.apply(v, s, qn, qp, g, axis)


def quantize_integers(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """qkern.quantize(x, qparams) as a float32 tensor of integers, bit-exact (docs/qat.md eq. (2)).

    Per channel, qkern's rule is two float32 roundings, rne(f32(f32(x * inv) + zp)), which torch's float32
    ops reproduce. Per tensor it is one rounding of x * inv + zp to float32, then rne: away from half-integers
    that equals rne of the float64 value x * inv + zp (within 2^-46 of the exact one); the few elements within
    a float32 ulp of a half-integer are handed to qkern.quantize itself.
    """
    if torch.isnan(x).any():
        raise ValueError("x contains NaN, which has no quantized value")
    xf = x.detach().float()
    inv32 = np.float32(1.0) / np.asarray(qparams.scale, dtype=np.float32)
    if qparams.axis is not None:
        shape = _channel_shape(x.ndim, qparams.axis, inv32.size)
        inv = torch.as_tensor(inv32, device=x.device).reshape(shape)
        zp = torch.as_tensor(np.array(qparams.zero_point, dtype=np.float32), device=x.device).reshape(shape)
        return torch.round(xf * inv + zp).clamp_(qparams.qmin, qparams.qmax)
    v = xf.double() * float(inv32) + float(qparams.zero_point)
    q = torch.round(v)
    near = (v - torch.floor(v) - 0.5).abs() <= v.abs() * 2.0**-22 + 2.0**-140
    if near.any():
        exact = quantize(xf[near].cpu().numpy(), qparams.scale, qparams.zero_point, qparams.dtype)
        q[near] = torch.from_numpy(exact.astype(np.float64)).to(x.device)
    return q.clamp_(qparams.qmin, qparams.qmax).float()


def dequantize_integers(q: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """qkern.dequantize of integers held in a float32 tensor: f32(scale) * f32(q - zero_point)."""
    scale = torch.as_tensor(np.array(qparams.scale, dtype=np.float32), device=q.device)
    zp = torch.as_tensor(np.array(qparams.zero_point, dtype=np.float32), device=q.device)
    if qparams.axis is not None:
        shape = _channel_shape(q.ndim, qparams.axis, scale.numel())
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (q - zp) * scale


class _FakeQuantSTE(torch.autograd.Function):
    """qkern.quantize then qkern.dequantize (bit-exact); gradient 1 where torch's unclamped integer,
    zero_point + round(x * (1 / scale)), lies in [qmin, qmax], else 0 (torch's fake-quantize mask)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, qparams: QParams) -> torch.Tensor:  # type: ignore[override]
        y = dequantize_integers(quantize_integers(x, qparams), qparams)
        inv32 = np.float32(1.0) / np.asarray(qparams.scale, dtype=np.float32)
        inv = torch.as_tensor(inv32, device=x.device)
        zp = torch.as_tensor(np.array(qparams.zero_point, dtype=np.float32), device=x.device)
        if qparams.axis is not None:
            shape = _channel_shape(x.ndim, qparams.axis, inv32.size)
            inv, zp = inv.reshape(shape), zp.reshape(shape)
        unclamped = torch.round(x.detach().float() * inv) + zp
        ctx.save_for_backward((unclamped >= qparams.qmin) & (unclamped <= qparams.qmax))
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask.to(grad.dtype), None


def fake_quantize(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Fake quantization with qkern's exact quantize/dequantize and a straight-through gradient inside the range."""
    return _FakeQuantSTE.apply(x, qparams)
