"""prepare_qat: trace a float model with torch.fx and insert QAT quantizers (docs/qat.md, "Where quantizers go").

Weights: each Conv2d / ConvTranspose2d / Linear becomes its QAT twin (qat_modules) with the method's weight
quantizer; a BatchNorm2d that is a Conv2d's only user is folded into it. Activations: the method's quantizer
after every ReLU. Every other tensor the integer model needs a grid for (the input, a conv/linear output not
followed by a ReLU such as the logits or a residual branch, an add, a cat, an average pool) gets an 8-bit
observer-driven FakeQuantize.
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .capture import trace
from .qat import LSQ, PACT, DoReFaActivation, DoReFaWeight, FakeQuantize, WRPNActivation, WRPNWeight
from .qat_modules import QATConv2d, QATConvTranspose2d, QATLinear

METHODS = ("fake_quant", "dorefa", "pact", "wrpn", "lsq")

_RELU_MODULES = (nn.ReLU, nn.ReLU6)
_RELU_FUNCTIONS = (F.relu, torch.relu, F.relu6)
_RELU_METHODS = ("relu", "relu_")
_GRID_MODULES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_GRID_FUNCTIONS = (operator.add, torch.add, torch.cat, F.avg_pool2d, F.adaptive_avg_pool2d)
_GRID_METHODS = ("add", "add_")


def _weight_quantizer(method: str, bits: int, channels: int, per_channel: bool) -> nn.Module:
    if method == "fake_quant":
        scheme = "per_channel_symmetric" if per_channel else "per_tensor_symmetric"
        return FakeQuantize("int8", scheme, bits=bits, ch_axis=0, averaging_constant=1.0)
    if method in ("dorefa", "pact"):
        return DoReFaWeight(bits)
    if method == "wrpn":
        return WRPNWeight(bits)
    return LSQ(bits, signed=True, channels=channels if per_channel else 0)


def _act_quantizer(method: str, bits: int, pact_alpha: float, pact_alpha_l2: float) -> nn.Module:
    if method == "fake_quant":
        return FakeQuantize("uint8", "per_tensor_affine", bits=bits)
    if method == "dorefa":
        return DoReFaActivation(bits)
    if method == "pact":
        return PACT(bits, alpha=pact_alpha, alpha_l2=pact_alpha_l2)
    if method == "wrpn":
        return WRPNActivation(bits)
    return LSQ(bits, signed=False)


def _is_relu(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _RELU_MODULES)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in _RELU_METHODS


def _needs_grid(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "placeholder":
        return True
    if node.op == "call_module":
        return isinstance(modules[node.target], (QATConv2d, QATConvTranspose2d, QATLinear, *_GRID_MODULES))
    if node.op == "call_function":
        return node.target in _GRID_FUNCTIONS
    return node.op == "call_method" and node.target in _GRID_METHODS


def _insert_after(gm: torch.fx.GraphModule, node: torch.fx.Node, name: str, module: nn.Module) -> None:
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node,))
    node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)


def _option(options: dict[str, Any], name: str, default: Any, check: Callable[[Any], bool], what: str) -> Any:
    value = options.pop(name, default)
    if not check(value):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def prepare_qat(
    model: nn.Module, method: str = "fake_quant", weight_bits: int = 8, act_bits: int = 8, **options: Any
) -> torch.fx.GraphModule:
    """A trainable copy of `model` (a torch.fx.GraphModule in training mode) with QAT quantizers inserted.

    `method`: "fake_quant" (observer-driven, per-channel symmetric int8 weights), "dorefa", "pact" (DoReFa
    weights, PACT activations), "wrpn" or "lsq". Options: `per_channel` (fake_quant and lsq weights; default
    True for fake_quant, False for lsq, as the LSQ paper), `pact_alpha` (initial alpha, 8.0), `pact_alpha_l2`
    (0.0), `io_bits` (the bits of the observer-driven quantizers on the input, logits and other non-ReLU
    tensors, default 8), `bn_fold` ("quantize": torch's folding, the default for fake_quant; "scale": the
    quantizer sees the conv's own weight and the BatchNorm scales its grid, the default for the papers'
    methods; see QATConv2d). The model must be traceable by torch.fx (`qkern.torch.trace` names the culprit
    when it is not); the result traces again with `qkern.torch.trace`, which keeps every quantizer whole.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(weight_bits, int) or not 2 <= weight_bits <= 8:
        raise ValueError(f"weight_bits must be an int in [2, 8], got {weight_bits!r}")
    if not isinstance(act_bits, int) or not 2 <= act_bits <= 8:
        raise ValueError(f"act_bits must be an int in [2, 8], got {act_bits!r}")
    per_channel = bool(options.pop("per_channel", method == "fake_quant"))
    alpha = float(_option(options, "pact_alpha", 8.0, lambda v: float(v) > 0, "> 0"))
    alpha_l2 = float(_option(options, "pact_alpha_l2", 0.0, lambda v: float(v) >= 0, ">= 0"))
    io_bits = _option(options, "io_bits", 8, lambda v: isinstance(v, int) and 2 <= v <= 8, "an int in [2, 8]")
    fold = _option(
        options,
        "bn_fold",
        "quantize" if method == "fake_quant" else "scale",
        lambda v: v in ("quantize", "scale"),
        "'quantize' or 'scale'",
    )
    if options:
        raise TypeError(f"prepare_qat got unexpected options {sorted(options)}")
    if method in ("dorefa", "pact") and weight_bits == 8:
        warnings.warn(
            "DoReFa weights at 8 bits are odd multiples of 1/255 and need 9 bits: the model trains, but "
            "converting it to an integer model raises; use weight_bits <= 7 for an exact int8 model",
            UserWarning,
            stacklevel=2,
        )

    gm = trace(copy.deepcopy(model))
    modules = dict(gm.named_modules())

    # Weights: QAT twins, with a Conv2d's only-user BatchNorm2d folded in.
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = modules[node.target]
        if type(mod) is nn.Conv2d:
            bn = None
            users = list(node.users)
            if len(users) == 1 and users[0].op == "call_module":
                cand = modules[users[0].target]
                if type(cand) is nn.BatchNorm2d and cand.track_running_stats and cand.num_features == mod.out_channels:
                    bn = cand
                    users[0].replace_all_uses_with(node)
                    gm.graph.erase_node(users[0])
            wq = _weight_quantizer(method, weight_bits, mod.out_channels, per_channel)
            new: nn.Module = QATConv2d(mod, wq, bn, fold)
        elif type(mod) is nn.Linear:
            new = QATLinear(mod, _weight_quantizer(method, weight_bits, mod.out_features, per_channel))
        elif type(mod) is nn.ConvTranspose2d:
            new = QATConvTranspose2d(mod, _weight_quantizer(method, weight_bits, 0, False))
        else:
            continue
        _set(gm, node.target, new)
    gm.delete_all_unused_submodules()
    modules = dict(gm.named_modules())

    # Activations and the other grids.
    count = 0
    for node in list(gm.graph.nodes):
        if _is_relu(node, modules):
            module = _act_quantizer(method, act_bits, alpha, alpha_l2)
        elif _needs_grid(node, modules) and not (len(node.users) == 1 and _is_relu(next(iter(node.users)), modules)):
            module = FakeQuantize("uint8", "per_tensor_affine", bits=io_bits)
        else:
            continue
        _insert_after(gm, node, f"qat_quant_{count}", module)
        count += 1
    _link_input_quantizers(gm)
    gm.graph.lint()
    gm.recompile()
    return gm.train()


_SAME_GRID_MODULES = (nn.MaxPool2d, nn.Dropout, nn.Flatten, nn.Identity)
_SAME_GRID_FUNCTIONS = (torch.flatten, F.max_pool2d, F.dropout)
_SAME_GRID_METHODS = ("flatten", "view", "reshape", "contiguous")


def _link_input_quantizers(gm: torch.fx.GraphModule) -> None:
    """Give each QAT layer the quantizer its input's grid comes from (through max pool, flatten, dropout)."""
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        layer = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(layer, (QATConv2d, QATConvTranspose2d, QATLinear)):
            continue
        src = node.args[0]
        while isinstance(src, torch.fx.Node):
            mod = modules.get(src.target) if src.op == "call_module" else None
            if mod is not None and hasattr(mod, "qkern_qparams"):
                layer.input_quant = [mod]
                break
            same = (
                (mod is not None and isinstance(mod, _SAME_GRID_MODULES))
                or (src.op == "call_function" and src.target in _SAME_GRID_FUNCTIONS)
                or (src.op == "call_method" and src.target in _SAME_GRID_METHODS)
            )
            if not same:
                break
            src = src.args[0]


def _set(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, leaf = target.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, leaf, module)
