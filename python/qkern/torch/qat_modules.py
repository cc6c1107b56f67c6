"""Conv2d / ConvTranspose2d / Linear with a weight quantizer (and a BatchNorm folded for training) for QAT.

Each implements the QAT protocol's `qkern_quantized_weight()`: the integer weight (torch layout), its QParams
and the float32 bias, such that `dequantize` of the weight is the tensor the eval-mode forward convolves with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..qparams import QParams
from .qat import WeightGrid

# The constructor keywords (besides bias) that Conv2d and ConvTranspose2d share, which a QAT copy takes over.
_CONV_CONFIG = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")


def _bn_scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    """gamma / sqrt(running_var + eps): the per-channel factor a BatchNorm folds into the weight (docs/qat.md)."""
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    return gamma / torch.sqrt(bn.running_var + bn.eps)


class _BiasOnGrid(torch.autograd.Function):
    """Forward: the bias rounded onto its int32 grid (given); backward: straight through to the float bias."""

    @staticmethod
    def forward(ctx, b: torch.Tensor, b_grid: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return b_grid

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


class _WeightQuantized:
    """Shared protocol code: the weight quantizer is `self.weight_quant`; `_folded()` gives weight and bias.

    `input_quant` (set by prepare_qat: a one-element list, so that it is no submodule) holds the quantizer
    whose grid this layer's input lies on. With it, the eval-mode forward rounds the bias to the integer
    model's int32 grid, b_q = round(b / (s_in * s_w[o])) * s_in * s_w[o] (docs/qat.md eq. (14)), so that the
    fake-quant model and the converted one add the same bias.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    weight_quant: nn.Module
    input_quant: list[nn.Module]

    def _init_like(
        self, cls: type[nn.Module], module: nn.Module, config: tuple[str, ...], weight_quant: nn.Module
    ) -> None:
        """Initialise as `cls` with the float `module`'s configuration (the attributes named in `config`, and
        whether it has a bias), then take over its weight and bias parameters and set the weight quantizer."""
        cls.__init__(self, **{k: getattr(module, k) for k in config}, bias=module.bias is not None)
        self.weight = module.weight
        self.bias = module.bias
        self.weight_quant = weight_quant

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.weight, self.bias

    def _bias_on_grid(self, b: torch.Tensor | None, w_step: Any) -> torch.Tensor | None:
        quant = getattr(self, "input_quant", None)
        if b is None or not quant:
            return b
        try:
            s_in = quant[0].qkern_qparams().scale
        except (RuntimeError, ValueError):  # no grid yet (nothing observed, step not initialised)
            return b
        s = torch.as_tensor(
            np.float64(np.float32(s_in)) * np.asarray(w_step, np.float32).astype(np.float64), device=b.device
        )
        q = torch.round(b.detach().double() / s).clamp(-(2.0**31), 2.0**31 - 1)
        return _BiasOnGrid.apply(b, (q * s).to(b.dtype))

    def _eval_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The eval-mode weight (fake-quantized) and bias (on its int32 grid)."""
        w, b = self._folded()
        w_q = self.weight_quant(w)
        if b is not None and getattr(self, "input_quant", None):
            b = self._bias_on_grid(b, self.weight_quant.weight_grid(w).step)
        return w_q, b

    def qkern_quantized_weight(self) -> tuple[np.ndarray, QParams, np.ndarray | None]:
        """(integer weight in torch layout, its QParams, float32 bias or None) as the eval forward uses them."""
        with torch.no_grad():
            w, b = self._folded()
            w_int, qp = self.weight_quant.qkern_quantize(w)
        bias = None if b is None else b.detach().cpu().float().numpy().copy()
        return w_int, qp, bias


class QATConv2d(_WeightQuantized, nn.Conv2d):
    """A Conv2d whose weight passes through `weight_quant`, with an optional BatchNorm folded in one of two ways
    (docs/qat.md, "BatchNorm"):

    - `fold="quantize"` (torch's QAT): the quantizer sees w * gamma / sigma_running; in training the output
      is rescaled by sigma / gamma and normalised with the batch statistics (which update the running ones);
      in eval mode the forward is conv(x, q(w_folded)) + b_folded.
    - `fold="scale"` (the papers' networks keep BatchNorm in float): the quantizer sees w itself and the
      BatchNorm follows with batch statistics; in eval mode gamma / sigma_running multiplies each output
      channel's grid step, so the folded weight is i * (step * gamma / sigma) on a per-channel grid with the
      quantizer's own integers i.
    Either way the eval-mode forward convolves with exactly what `qkern_quantized_weight` exports.
    """

    def __init__(
        self, conv: nn.Conv2d, weight_quant: nn.Module, bn: nn.BatchNorm2d | None = None, fold: str = "quantize"
    ) -> None:
        if fold not in ("quantize", "scale"):
            raise ValueError(f"fold must be 'quantize' or 'scale', got {fold!r}")
        self._init_like(nn.Conv2d, conv, _CONV_CONFIG, weight_quant)
        self.bn = bn
        self.fold = fold

    def _folded_bias(self, sf: torch.Tensor) -> torch.Tensor:
        assert self.bn is not None
        b = self.bias if self.bias is not None else torch.zeros_like(sf)
        beta = self.bn.bias if self.bn.bias is not None else torch.zeros_like(sf)
        return beta + (b - self.bn.running_mean) * sf

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.bn is None:
            return self.weight, self.bias
        sf = _bn_scale(self.bn)
        return self.weight * sf.reshape(-1, 1, 1, 1), self._folded_bias(sf)

    def _scale_folded(self) -> tuple[torch.Tensor, WeightGrid, torch.Tensor]:
        """fold="scale": (weight i * S exactly with the gradient of q(w) * sf, its per-channel grid, bias)."""
        assert self.bn is not None
        sf = _bn_scale(self.bn)
        w_q = self.weight_quant(self.weight)
        with torch.no_grad():
            grid = self.weight_quant.weight_grid(self.weight)
            step = torch.as_tensor(grid.step, device=sf.device)
            s = (step * sf.detach()).float()  # one float32 product per channel: the folded grid step
            exact = grid.index * s.reshape(-1, 1, 1, 1)
        soft = w_q * sf.reshape(-1, 1, 1, 1)
        w = exact + (soft - soft.detach())  # value exactly i * S; gradient that of q(w) * sf
        folded = grid._replace(step=s.cpu().numpy().copy(), axis=0)
        return w, folded, self._folded_bias(sf)

    def qkern_quantized_weight(self) -> tuple[np.ndarray, QParams, np.ndarray | None]:
        if self.bn is None or self.fold == "quantize":
            return super().qkern_quantized_weight()
        with torch.no_grad():
            _, grid, b = self._scale_folded()
        w_int, qp = grid.to_int8(type(self.weight_quant).__name__)
        return w_int, qp, b.detach().cpu().float().numpy().copy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None and self.training:
            return self._conv_forward(x, self.weight_quant(self.weight), self.bias)
        if self.bn is not None and self.fold == "scale":
            if self.training:
                return self.bn(self._conv_forward(x, self.weight_quant(self.weight), self.bias))
            w, grid, b = self._scale_folded()
            return self._conv_forward(x, w, self._bias_on_grid(b, grid.step))
        if not self.training:
            return self._conv_forward(x, *self._eval_weight_bias())
        sf = _bn_scale(self.bn)
        w_q = self.weight_quant(self.weight * sf.reshape(-1, 1, 1, 1))
        y = self._conv_forward(x, w_q, None) / sf.reshape(1, -1, 1, 1)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return self.bn(y)


class QATLinear(_WeightQuantized, nn.Linear):
    """A Linear whose weight passes through `weight_quant`."""

    def __init__(self, linear: nn.Linear, weight_quant: nn.Module) -> None:
        self._init_like(nn.Linear, linear, ("in_features", "out_features"), weight_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.linear(x, self.weight_quant(self.weight), self.bias)
        return F.linear(x, *self._eval_weight_bias())


class QATConvTranspose2d(_WeightQuantized, nn.ConvTranspose2d):
    """A ConvTranspose2d whose weight (torch layout [C_in, C_out, kh, kw]) passes through `weight_quant`."""

    def __init__(self, conv: nn.ConvTranspose2d, weight_quant: nn.Module) -> None:
        self._init_like(nn.ConvTranspose2d, conv, (*_CONV_CONFIG, "output_padding"), weight_quant)

    def forward(self, x: torch.Tensor, output_size: Any = None) -> torch.Tensor:
        if output_size is not None:
            raise ValueError("output_size is not supported by QATConvTranspose2d")
        w, b = (self.weight_quant(self.weight), self.bias) if self.training else self._eval_weight_bias()
        return F.conv_transpose2d(x, w, b, self.stride, self.padding, self.output_padding, self.groups, self.dilation)
