"""Which qkern step a traced torch node lowers to: the op kinds the converter knows and how to recognise them."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .capture import tensor_shape

# Kinds of node (the converter's vocabulary):
#   "input"     graph input                     "conv" / "deconv" / "linear"  integer layers with a Requant
#   "relu"      ReLU (fused into its producer's clamp when it can be)    "relu6"  ReLU6 (same)
#   "add"       residual add of two tensors      "cat"  channel concatenation
#   "maxpool" / "avgpool" / "gap"                "flatten"  4-D -> [N, C*H*W]
#   "unary"     elementwise op lowered to a 256-entry table              "qat_act"  a QAT activation quantizer
#   "observer"  an observer inserted by prepare  "output"   graph output
#   "value"     a non-tensor value (sizes, ...)  "float"    anything else: float fallback
FUSABLE = ("conv", "deconv", "linear", "add")
REQUANT_PRODUCERS = ("conv", "deconv", "linear", "add")

_RELU_FUNCS = {F.relu, torch.relu, torch.relu_}
_RELU6_FUNCS = {F.relu6}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}
_UNARY_MODULES = (
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.SiLU, nn.Mish, nn.LeakyReLU, nn.ELU,
    nn.Softplus, nn.Hardtanh, nn.Tanhshrink, nn.Softsign, nn.CELU, nn.SELU,
)  # fmt: skip
_UNARY_FUNCS = {
    torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, F.hardswish, F.hardsigmoid, F.gelu, F.silu, F.mish,
    F.leaky_relu, F.elu, F.softplus, F.hardtanh, torch.exp, torch.abs, torch.square, F.softsign, F.selu, F.celu,
}  # fmt: skip
_UNARY_METHODS = {"sigmoid", "tanh", "exp", "abs", "square", "relu", "relu_"}


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes if tensor_shape(a) is not None]


def _flatten_like(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """flatten/view/reshape taking a 4-D tensor to [N, C*H*W] (batch kept)."""
    ins = _tensor_args(node)
    shape, out = (tensor_shape(ins[0]) if ins else None), tensor_shape(node)
    if shape is None or out is None or len(shape) != 4 or len(out) != 2 or out[0] != shape[0]:
        return False
    if node.op == "call_module":
        m = modules[str(node.target)]
        return isinstance(m, nn.Flatten)
    if node.op == "call_function":
        return node.target in (torch.flatten, torch.reshape)
    return node.op == "call_method" and node.target in ("flatten", "view", "reshape")


def _relu_kind(node: fx.Node, m: Any) -> str | None:
    if isinstance(m, nn.ReLU) or (node.op == "call_function" and node.target in _RELU_FUNCS):
        return "relu"
    if isinstance(m, nn.ReLU6) or (node.op == "call_function" and node.target in _RELU6_FUNCS):
        return "relu6"
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return "relu"
    return None


def _conv_kind(m: nn.Module) -> str | None:
    """ "conv"/"deconv"/"linear" when qkern's kernels cover the module's configuration."""
    if isinstance(m, nn.Conv2d):
        ok_common = m.groups == 1 and tuple(m.dilation) == (1, 1) and m.padding_mode == "zeros"
        k, s, p = tuple(m.kernel_size), tuple(m.stride), m.padding
        if not ok_common or k[0] != k[1] or s[0] != s[1] or isinstance(p, str) or p[0] != p[1]:
            return None
        if k[0] == 3 and s[0] in (1, 2) and p[0] in (0, 1):
            return "conv"
        if k[0] == 1 and s[0] in (1, 2) and p[0] == 0:
            return "conv"
        return None
    if isinstance(m, nn.ConvTranspose2d):
        ok = (
            tuple(m.kernel_size) == (2, 2) and tuple(m.stride) == (2, 2) and tuple(m.padding) == (0, 0)
            and tuple(m.output_padding) == (0, 0) and m.groups == 1 and tuple(m.dilation) == (1, 1)
        )  # fmt: skip
        return "deconv" if ok else None
    if isinstance(m, nn.Linear):
        return "linear"
    return None


def _pool_kind(node: fx.Node, m: Any) -> str | None:
    if isinstance(m, nn.MaxPool2d):
        ok = m.dilation in (1, (1, 1)) and not m.ceil_mode and not m.return_indices
        return "maxpool" if ok and _square(m.kernel_size) and _square(m.stride or m.kernel_size) else None
    if isinstance(m, nn.AvgPool2d):
        ok = m.padding in (0, (0, 0)) and not m.ceil_mode and m.divisor_override is None
        return "avgpool" if ok and _square(m.kernel_size) and _square(m.stride or m.kernel_size) else None
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return "gap" if m.output_size in (1, (1, 1)) else None
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return "gap" if size in (1, (1, 1)) else None
    if node.op == "call_function" and node.target is F.max_pool2d:
        return "maxpool" if _fn_pool_ok(node) else None
    return None


def _square(v: Any) -> bool:
    return isinstance(v, int) or (isinstance(v, (tuple, list)) and len(v) == 2 and v[0] == v[1])


def _one(v: Any) -> int:
    return int(v if isinstance(v, int) else v[0])


def _fn_pool_ok(node: fx.Node) -> bool:
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    a = dict(zip(names, node.args))
    a.update(node.kwargs)
    return (
        _square(a.get("kernel_size", 1)) and _square(a.get("stride") or a.get("kernel_size", 1))
        and a.get("dilation", 1) in (1, (1, 1)) and not a.get("ceil_mode", False)
        and not a.get("return_indices", False)
    )  # fmt: skip


def pool_params(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[int, int, int]:
    """(kernel_size, stride, padding) of a max or average pool node."""
    if node.op == "call_module":
        m = modules[str(node.target)]
        return _one(m.kernel_size), _one(m.stride or m.kernel_size), _one(getattr(m, "padding", 0))
    names = ("input", "kernel_size", "stride", "padding")
    a = dict(zip(names, node.args))
    a.update(node.kwargs)
    k = _one(a["kernel_size"])
    return k, _one(a.get("stride") or k), _one(a.get("padding", 0))


def _is_channel_cat(node: fx.Node) -> bool:
    if node.op != "call_function" or node.target not in (torch.cat, torch.concat):
        return False
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    shape = tensor_shape(node)
    tensors = node.args[0]
    if shape is None or not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) for t in tensors):
        return False
    return len(shape) == 4 and dim in (1, -3)


def _is_tensor_add(node: fx.Node) -> bool:
    if node.op == "call_function" and node.target in _ADD_FUNCS:
        pass
    elif not (node.op == "call_method" and node.target in ("add", "add_")):
        return False
    if node.kwargs.get("alpha", 1) != 1 or len(node.args) != 2:
        return False
    a, b = node.args
    return (
        isinstance(a, fx.Node) and isinstance(b, fx.Node)
        and tensor_shape(a) is not None and tensor_shape(a) == tensor_shape(b) == tensor_shape(node)
    )  # fmt: skip


def _is_unary(node: fx.Node, m: Any) -> bool:
    if len(_tensor_args(node)) != 1 or tensor_shape(node) != tensor_shape(_tensor_args(node)[0]):
        return False
    if m is not None:
        return isinstance(m, _UNARY_MODULES)
    if node.op == "call_function":
        return node.target in _UNARY_FUNCS
    return node.op == "call_method" and node.target in _UNARY_METHODS


def classify(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """The kind of a node (see the table at the top of this module)."""
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "get_attr" or tensor_shape(node) is None:
        return "value"
    m = modules.get(str(node.target)) if node.op == "call_module" else None
    if m is not None and getattr(m, "_qkern_observer", False):
        return "observer"
    if m is not None and hasattr(m, "qkern_qparams"):
        return "qat_act"
    if m is not None and (kind := _conv_kind(m)) is not None:
        return kind
    if (kind := _relu_kind(node, m)) is not None:
        return kind
    if (kind := _pool_kind(node, m)) is not None:
        return kind
    if _flatten_like(node, modules):
        return "flatten"
    if _is_tensor_add(node):
        return "add"
    if _is_channel_cat(node):
        return "cat"
    if _is_unary(node, m):
        return "unary"
    return "float"


def is_pass_through(kind: str) -> bool:
    """Kinds whose output keeps the input's qparams (no new range to observe)."""
    return kind in ("maxpool", "flatten")
