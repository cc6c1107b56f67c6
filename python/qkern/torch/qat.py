"""Quantization-aware training: quantizer modules (FakeQuantize, DoReFa, PACT, WRPN, LSQ) and prepare_qat.

Each quantizer implements the QAT protocol read by `qkern.torch.convert`: activation quantizers have
`qkern_qparams()` (the uint8 grid their output lies on); weight quantizers have `qkern_quantize(w)` returning the
integer weight and its QParams, with `dequantize` of it equal to their forward bit for bit (docs/qat.md).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..observers import MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver
from ..qparams import QParams, quant_range
from . import qat_functions as QF

__all__ = [
    "LSQ",
    "PACT",
    "DoReFaActivation",
    "DoReFaWeight",
    "FakeQuantize",
    "WRPNActivation",
    "WRPNWeight",
    "qat_regularization",
]


def _bits(bits: Any, lo: int = 2, hi: int = 8) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    if not lo <= int(bits) <= hi:
        raise ValueError(f"bits must be in [{lo}, {hi}], got {bits}")
    return int(bits)


def _f32(x: float) -> np.float32:
    return np.float32(x)


class WeightGrid(NamedTuple):
    """A weight quantizer's output as integers: forward(w) == index * step (float32, bit for bit).

    `index` holds integers as float32; `step` is a float32 scalar or one per channel along `axis`;
    [qmin, qmax] is the grid's integer range (DoReFa at 8 bits: -255..255, wider than int8)."""

    index: torch.Tensor
    step: np.ndarray
    axis: int | None
    qmin: int
    qmax: int

    def to_int8(self, what: str) -> tuple[np.ndarray, QParams]:
        """The integers as int8 and their QParams; ValueError when the grid does not fit int8."""
        if self.qmin < -128 or self.qmax > 127:
            raise ValueError(
                f"{what}: the weight grid {self.qmin}..{self.qmax} does not fit int8 (it needs more than 8 bits)"
            )
        i = self.index.detach().cpu().numpy().astype(np.int8)
        if self.axis is None:
            return i, QParams(np.float32(self.step), 0, "int8", None, self.qmin, self.qmax)
        zp = np.zeros(self.step.shape, np.int32)
        return i, QParams(self.step.astype(np.float32), zp, "int8", self.axis, self.qmin, self.qmax)


def _index(w_q: torch.Tensor, step: np.ndarray, axis: int | None) -> torch.Tensor:
    """The integers i of w_q = i * step (exact: |i| <= 255, so w_q / step lies within an ulp of i)."""
    s = torch.as_tensor(np.array(step, dtype=np.float32), device=w_q.device)
    if axis is not None:
        s = s.reshape([-1 if d == axis else 1 for d in range(w_q.ndim)])
    return torch.round(w_q.detach().float() / s)


# ----------------------------------------------------------------------------------------------------------------
# FakeQuantize: observer-driven scale and zero point, qkern's exact quantize/dequantize, straight-through gradient.
# ----------------------------------------------------------------------------------------------------------------


class FakeQuantize(nn.Module):
    """Fake quantization on k bits with qkern's rules (docs/qat.md eq. (2)).

    `dtype` "uint8" / "int8", `qscheme` one of "per_tensor_affine", "per_tensor_symmetric",
    "per_channel_affine", "per_channel_symmetric"; `bits` in 2..8 narrows the integer range (uint8: 0..2^k-1;
    int8: -2^(k-1)..2^(k-1)-1). The observer averages each batch's min and max with `averaging_constant`
    (1.0: the current batch's range, as for weights). While training (and before the first call) the observer
    sees every input and the scale and zero point follow it; in eval mode they stay fixed. Forward equals
    `qkern.quantize` then `qkern.dequantize` on the current qparams; the gradient is 1 inside [qmin, qmax]
    and 0 outside.
    """

    def __init__(
        self,
        dtype: str = "uint8",
        qscheme: str = "per_tensor_affine",
        bits: int = 8,
        ch_axis: int = 0,
        averaging_constant: float = 0.01,
    ) -> None:
        super().__init__()
        self.bits = _bits(bits)
        qmin, qmax, _ = quant_range(dtype, bits=self.bits)
        per_channel = str(qscheme).removeprefix("torch.").startswith("per_channel")
        self.ch_axis = int(ch_axis) if per_channel else None
        if per_channel:
            self.observer: Any = MovingAveragePerChannelMinMaxObserver(
                averaging_constant=averaging_constant,
                ch_axis=int(ch_axis),
                dtype=dtype,
                qscheme=qscheme,
                quant_min=qmin,
                quant_max=qmax,
            )
        else:
            self.observer = MovingAverageMinMaxObserver(
                averaging_constant=averaging_constant, dtype=dtype, qscheme=qscheme, quant_min=qmin, quant_max=qmax
            )
        self.dtype = self.observer.dtype
        self.qscheme = self.observer.qscheme
        self.observer_enabled = True
        self._qp: QParams | None = None
        self.register_buffer("scale", torch.ones(0))
        self.register_buffer("zero_point", torch.zeros(0, dtype=torch.int32))

    def _update(self, x: torch.Tensor) -> None:
        self.observer(x.detach())
        qp = self.observer.calculate_qparams()
        self._qp = qp
        self.scale = torch.from_numpy(np.array(qp.scale, dtype=np.float32).reshape(-1))
        self.zero_point = torch.from_numpy(np.array(qp.zero_point, dtype=np.int32).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and self.observer_enabled) or self._current() is None:
            self._update(x)
        return QF.fake_quantize(x, self._current())

    def _current(self) -> QParams | None:
        if self._qp is None and self.scale.numel() > 0:  # restored from a state_dict
            s, z = self.scale.numpy(), self.zero_point.numpy()
            qmin, qmax = self.observer.quant_min, self.observer.quant_max
            if self.ch_axis is None:
                self._qp = QParams(_f32(s[0]), int(z[0]), self.dtype, None, qmin, qmax)
            else:
                self._qp = QParams(s.astype(np.float32), z.astype(np.int32), self.dtype, self.ch_axis, qmin, qmax)
        return self._qp

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in ("scale", "zero_point"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        self._qp = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def qkern_qparams(self) -> QParams:
        """The grid of the output (raises before the first call: no range has been observed)."""
        qp = self._current()
        if qp is None:
            raise RuntimeError("FakeQuantize has not seen any data: run the model once before converting it")
        return qp

    def weight_grid(self, w: torch.Tensor) -> WeightGrid:
        """`w` on the current grid as the forward quantizes it (symmetric weights: zero point 0)."""
        if self._current() is None:
            self(w)
        qp = self.qkern_qparams()
        if np.any(np.asarray(qp.zero_point) != 0):
            raise ValueError("FakeQuantize on weights must be symmetric (zero point 0) to export them")
        q = qp.quantize(w.detach().cpu().float().numpy()).astype(np.float32)
        return WeightGrid(torch.from_numpy(q).to(w.device), np.array(qp.scale), qp.axis, qp.qmin, qp.qmax)

    def qkern_quantize(self, w: torch.Tensor) -> tuple[np.ndarray, QParams]:
        """Integers and QParams of `w` as the forward quantizes it."""
        return self.weight_grid(w).to_int8(type(self).__name__)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, qscheme={self.qscheme}, bits={self.bits}"


# ----------------------------------------------------------------------------------------------------------------
# DoReFa-Net (Zhou et al., arXiv 1606.06160).
# ----------------------------------------------------------------------------------------------------------------


class DoReFaWeight(nn.Module):
    """DoReFa weights (docs/qat.md eqs. (4)-(5)): k >= 2 gives odd multiples of 1/(2^k - 1) in [-1, 1];
    k = 1 gives sign(w) * mean|w|. In int8 the grid fits for k <= 7 (k = 8 needs 9 bits: converting raises)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = _bits(bits, lo=1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.bits == 1:
            return QF.dorefa_weight_binary(w)
        return QF.dorefa_weight_grid(w, self.bits)

    def weight_grid(self, w: torch.Tensor) -> WeightGrid:
        with torch.no_grad():
            w_q = self.forward(w)
        if self.bits == 1:
            step = np.array(w.detach().abs().mean().item(), dtype=np.float32)
            return WeightGrid(torch.where(w.detach() >= 0, 1.0, -1.0), step, None, -1, 1)
        n = 2**self.bits - 1
        step = np.array(_f32(1.0) / _f32(n))
        return WeightGrid(_index(w_q, step, None), step, None, -n, n)

    def qkern_quantize(self, w: torch.Tensor) -> tuple[np.ndarray, QParams]:
        """Integers and QParams; ValueError at 8 bits (odd integers -255..255 need 9 bits)."""
        return self.weight_grid(w).to_int8(f"DoReFaWeight({self.bits})")

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class DoReFaActivation(nn.Module):
    """DoReFa activations (eq. (6)): clip to [0, 1], quantize_k; grid i / (2^k - 1), i = 0..2^k - 1."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = _bits(bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return QF.unit_activation(x, self.bits)

    def qkern_qparams(self) -> QParams:
        n = 2**self.bits - 1
        return QParams(_f32(1.0) / _f32(n), 0, "uint8", None, 0, n)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


# ----------------------------------------------------------------------------------------------------------------
# WRPN (Mishra et al., arXiv 1709.01134).
# ----------------------------------------------------------------------------------------------------------------


class WRPNWeight(nn.Module):
    """WRPN weights (eq. (7)): clip to [-1, 1], k - 1 magnitude bits and a sign: i / (2^(k-1) - 1),
    |i| <= 2^(k-1) - 1 (int8 for every k <= 8)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = _bits(bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return QF.wrpn_weight_grid(w, self.bits)

    def weight_grid(self, w: torch.Tensor) -> WeightGrid:
        m = 2 ** (self.bits - 1) - 1
        step = np.array(_f32(1.0) / _f32(m))
        with torch.no_grad():
            w_q = self.forward(w)
        return WeightGrid(_index(w_q, step, None), step, None, -m, m)

    def qkern_quantize(self, w: torch.Tensor) -> tuple[np.ndarray, QParams]:
        return self.weight_grid(w).to_int8(f"WRPNWeight({self.bits})")

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class WRPNActivation(DoReFaActivation):
    """WRPN activations: clip to [0, 1] and k bits, the same quantizer as DoReFa's (eq. (6))."""


# ----------------------------------------------------------------------------------------------------------------
# PACT (Choi et al., arXiv 1805.06085).
# ----------------------------------------------------------------------------------------------------------------


class PACT(nn.Module):
    """PACT activation (eqs. (8)-(9)): clip to [0, alpha] with a learnable alpha, k bits at step alpha/(2^k - 1).
    `alpha_l2` is the coefficient of the L2 penalty on alpha that `penalty()` (and `qat_regularization`) returns."""

    def __init__(self, bits: int, alpha: float = 8.0, alpha_l2: float = 0.0) -> None:
        super().__init__()
        self.bits = _bits(bits)
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be finite and > 0, got {alpha!r}")
        if not (math.isfinite(alpha_l2) and alpha_l2 >= 0):
            raise ValueError(f"alpha_l2 must be finite and >= 0, got {alpha_l2!r}")
        self.alpha = nn.Parameter(torch.tensor(float(alpha), dtype=torch.float32))
        self.alpha_l2 = float(alpha_l2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return QF.pact_activation(x, self.alpha, self.bits)

    def penalty(self) -> torch.Tensor:
        return self.alpha_l2 * self.alpha.pow(2)

    def qkern_qparams(self) -> QParams:
        a = self.alpha.detach()
        if not a.item() > 0:
            raise ValueError(f"PACT alpha must be > 0 to define a grid, got {a.item()}")
        n = 2**self.bits - 1
        return QParams(_f32(QF.pact_step(a, self.bits).item()), 0, "uint8", None, 0, n)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha_l2={self.alpha_l2}"


# ----------------------------------------------------------------------------------------------------------------
# LSQ (Esser et al., arXiv 1902.08153).
# ----------------------------------------------------------------------------------------------------------------


class LSQ(nn.Module):
    """Learned step size quantization (eqs. (10)-(12)). `signed=True` (weights): Q_N = 2^(k-1), Q_P = 2^(k-1) - 1;
    `signed=False` (activations after ReLU): Q_N = 0, Q_P = 2^k - 1. `channels` > 0 learns one step per channel
    along `ch_axis`. The step starts at 2 mean|v| / sqrt(Q_P) on the first call; its gradient is scaled by
    g = 1 / sqrt(N Q_P), N = the number of elements sharing one step (per sample for activations). The grid
    step is |step| (`effective_step`), so an optimiser that pushes the step past zero cannot break the grid."""

    def __init__(self, bits: int, signed: bool = False, channels: int = 0, ch_axis: int = 0) -> None:
        super().__init__()
        self.bits = _bits(bits)
        self.signed = bool(signed)
        self.qn, self.qp = (2 ** (self.bits - 1), 2 ** (self.bits - 1) - 1) if self.signed else (0, 2**self.bits - 1)
        if channels < 0:
            raise ValueError(f"channels must be >= 0, got {channels}")
        self.ch_axis = int(ch_axis) if channels else None
        self.step = nn.Parameter(torch.ones(channels) if channels else torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))

    def _per_step_count(self, v: torch.Tensor) -> int:
        if self.ch_axis is not None:
            return v.numel() // v.shape[self.ch_axis]
        return v.numel() if self.signed else max(v.numel() // max(v.shape[0], 1), 1)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if not bool(self.initialized):
            with torch.no_grad():
                a = v.detach().abs()
                if self.ch_axis is None:
                    mean = a.mean()
                else:
                    mean = a.transpose(0, self.ch_axis).reshape(v.shape[self.ch_axis], -1).mean(dim=1)
                self.step.copy_((2.0 * mean / math.sqrt(self.qp)).clamp(min=torch.finfo(torch.float32).eps))
                self.initialized.fill_(True)
        g = 1.0 / math.sqrt(self._per_step_count(v) * self.qp)
        return QF.lsq_quantize(v, self.effective_step(), self.qn, self.qp, g, self.ch_axis)

    def effective_step(self) -> torch.Tensor:
        """|step| (at least the smallest normal float32): an optimiser step past zero cannot break the grid;
        for a positive step this is the step itself and its gradient the paper's."""
        return self.step.abs().clamp_min(torch.finfo(torch.float32).tiny)

    def _qparams(self) -> QParams:
        s = self.effective_step().detach().cpu().numpy().astype(np.float32)
        if not (bool(self.initialized) and np.all(s > 0)):
            raise ValueError("LSQ step must be initialised (run the model once) and > 0 to define a grid")
        if self.signed:
            if self.ch_axis is None:
                return QParams(s.reshape(()).item(), 0, "int8", None, -self.qn, self.qp)
            return QParams(s, np.zeros(s.shape, np.int32), "int8", self.ch_axis, -self.qn, self.qp)
        if self.ch_axis is not None:
            raise ValueError("a per-channel LSQ activation has no per-tensor grid")
        return QParams(_f32(s.reshape(()).item()), 0, "uint8", None, 0, self.qp)

    def qkern_qparams(self) -> QParams:
        qp = self._qparams()
        if qp.dtype == "int8":  # signed activations: the same grid, shifted into uint8 by a zero point of 2^(k-1)
            return QParams(qp.scale, self.qn, "uint8", None, 0, self.qn + self.qp)
        return qp

    def weight_grid(self, w: torch.Tensor) -> WeightGrid:
        if not self.signed:
            raise ValueError("an unsigned LSQ quantizer is for activations; weights need LSQ(bits, signed=True)")
        with torch.no_grad():
            w_q = self.forward(w)
        qp = self._qparams()
        step = np.array(qp.scale, dtype=np.float32)
        return WeightGrid(_index(w_q, step, qp.axis), step, qp.axis, -self.qn, self.qp)

    def qkern_quantize(self, w: torch.Tensor) -> tuple[np.ndarray, QParams]:
        return self.weight_grid(w).to_int8(f"LSQ({self.bits})")

    def extra_repr(self) -> str:
        per = "tensor" if self.ch_axis is None else f"channel (axis {self.ch_axis})"
        return f"bits={self.bits}, signed={self.signed}, per {per}"


def qat_regularization(model: nn.Module) -> torch.Tensor:
    """Sum of the quantizers' penalties (PACT's L2 on alpha) to add to the training loss."""
    terms = [m.penalty() for m in model.modules() if isinstance(m, PACT)]
    return torch.stack(terms).sum() if terms else torch.zeros(())
