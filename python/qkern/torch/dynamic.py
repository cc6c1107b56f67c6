"""quantize_dynamic: a torch model's Linear layers replaced by qkern's dynamic int8 Linear (torch tensors in
and out), and the torch-free form (qkern.dynamic.DynamicSequential) of Linear/ReLU/GELU stacks."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..dynamic import DynamicLinear, DynamicSequential
from ..qconfig import QConfig, default_dynamic_qconfig


def _dynamic_layer(linear: nn.Linear, qconfig: QConfig, per_row: bool, reduce_range: bool) -> DynamicLinear:
    """The qkern layer of one float Linear: weights through the qconfig's weight observer, activations in the
    dtype of its activation observer (uint8 affine, or int8 symmetric)."""
    weight = linear.weight.detach().to("cpu", torch.float32).numpy()
    bias = None if linear.bias is None else linear.bias.detach().to("cpu", torch.float32).numpy()
    observer = qconfig.weight()
    observer(weight)
    act_dtype = getattr(qconfig.activation(), "dtype", "uint8")
    return DynamicLinear(
        weight,
        bias,
        per_row=per_row,
        act_dtype=act_dtype,
        reduce_range=reduce_range,
        weight_qparams=observer.calculate_qparams(),
    )


class DynamicQuantizedLinear(nn.Module):
    """A torch module around a qkern.DynamicLinear: float32 tensors [..., in_features] in, float32 out (on the
    input's device; the work runs on the CPU). Inference only: no autograd through it."""

    def __init__(self, layer: DynamicLinear) -> None:
        super().__init__()
        if not isinstance(layer, DynamicLinear):
            raise TypeError(f"layer must be a qkern.DynamicLinear, got {type(layer).__name__}")
        self.layer = layer
        self.in_features, self.out_features = layer.in_features, layer.out_features

    @classmethod
    def from_float(
        cls, linear: nn.Linear, qconfig: QConfig | None = None, *, per_row: bool = False, reduce_range: bool = True
    ) -> DynamicQuantizedLinear:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        return cls(_dynamic_layer(linear, qconfig or default_dynamic_qconfig, per_row, reduce_range))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype != torch.float32:
            raise TypeError(f"x must have dtype torch.float32, got {x.dtype}")
        y = self.layer(x.detach().to("cpu").contiguous().numpy())
        return torch.from_numpy(y).to(x.device)

    def extra_repr(self) -> str:
        return repr(self.layer)


def _types(qconfig_spec: Any) -> tuple[type, ...]:
    spec = {nn.Linear} if qconfig_spec is None else qconfig_spec
    if isinstance(spec, type) or not isinstance(spec, Iterable):
        raise TypeError("qconfig_spec must be a set of module types, e.g. {torch.nn.Linear}")
    types = tuple(spec)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, nn.Linear)):
            raise ValueError(f"qconfig_spec: only torch.nn.Linear (and subclasses) can be quantized, got {t!r}")
    return types


def quantize_dynamic(
    model: nn.Module,
    qconfig_spec: Any = None,
    qconfig: QConfig | None = None,
    *,
    per_row: bool = False,
    reduce_range: bool = True,
    inplace: bool = False,
) -> nn.Module:
    """A copy of `model` (or `model` itself with inplace=True) whose modules of the types in `qconfig_spec`
    (default {nn.Linear}) are DynamicQuantizedLinear layers running on qkern.

    qconfig: qkern.qconfig.default_dynamic_qconfig (per-tensor int8 weights, the default) or
    per_channel_dynamic_qconfig. The defaults (per-tensor uint8 activations, reduce_range=True) are torch's
    x86 dynamic Linear: the same quantized activations and weights. per_row=True quantizes each row (token)
    of the input on its own range instead.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    types = _types(qconfig_spec)
    qconfig = qconfig or default_dynamic_qconfig
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"qconfig must be a qkern.qconfig.QConfig, got {type(qconfig).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    if isinstance(model, types):
        return DynamicQuantizedLinear.from_float(model, qconfig, per_row=per_row, reduce_range=reduce_range)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, types):
                layer = DynamicQuantizedLinear.from_float(child, qconfig, per_row=per_row, reduce_range=reduce_range)
                setattr(parent, name, layer)
    return model


def _steps(module: nn.Module, qconfig: QConfig, per_row: bool, reduce_range: bool) -> list[Any]:
    if isinstance(module, nn.Sequential):
        return [s for child in module for s in _steps(child, qconfig, per_row, reduce_range)]
    if isinstance(module, DynamicQuantizedLinear):
        return [module.layer]
    if isinstance(module, nn.Linear):
        return [_dynamic_layer(module, qconfig, per_row, reduce_range)]
    if isinstance(module, nn.ReLU):
        return ["relu"]
    if isinstance(module, nn.GELU) and module.approximate == "none":
        return ["gelu"]
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return []
    raise ValueError(
        f"the torch-free form takes Sequential stacks of Linear, ReLU, GELU (erf), Identity and Dropout; "
        f"got {type(module).__name__}"
    )


def quantize_dynamic_numpy(
    model: nn.Module, qconfig: QConfig | None = None, *, per_row: bool = False, reduce_range: bool = True
) -> DynamicSequential:
    """The torch-free form of a Linear/ReLU/GELU stack (float, or already converted by quantize_dynamic): a
    qkern.dynamic.DynamicSequential that runs on NumPy float32 arrays alone (Dropout as in eval mode)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return DynamicSequential(_steps(model, qconfig or default_dynamic_qconfig, per_row, reduce_range))
