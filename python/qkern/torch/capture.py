"""Capture a float PyTorch model as a torch.fx graph: tracing with culprit-naming errors, BN folding, no-op removal."""

from __future__ import annotations

import copy
import operator
import traceback
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp


class TracingError(RuntimeError):
    """torch.fx could not trace the model; the message names the module or function that failed."""


def is_qat_module(m: nn.Module) -> bool:
    """A QAT activation quantizer or weight module (docs/ptq.md, "QAT protocol"): kept whole while tracing."""
    return hasattr(m, "qkern_qparams") or hasattr(m, "qkern_quantized_weight")


class QkernTracer(fx.Tracer):
    """fx.Tracer that keeps QAT modules as leaves and remembers which module it was inside when tracing failed."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_in: tuple[str, str] | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_qat_module(m) or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module is the first to see the exception
                self.failed_in = (self.path_of_module(m) or "<root>", type(m).__name__)
            raise


def _user_frame(exc: BaseException) -> str:
    """file:line (function) of the last traceback frame outside torch: where the untraceable code lives."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/torch/" not in f.filename.replace("\\", "/")]
    if not frames:
        return "unknown location"
    f = frames[-1]
    return f"{f.filename}:{f.lineno} (function {f.name!r}: {(f.line or '').strip()})"


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace `model`; a failure raises TracingError naming the module (path and class) and the
    source line where tracing stopped."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    tracer = QkernTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        where = tracer.failed_in or ("<root>", type(model).__name__)
        raise TracingError(
            f"torch.fx could not trace {type(model).__name__}: it failed inside module {where[0]!r} "
            f"({where[1]}) at {_user_frame(exc)}: {type(exc).__name__}: {exc}. Make that code traceable "
            "(no data-dependent Python control flow) or wrap it in a leaf module."
        ) from exc
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def modules_of(gm: fx.GraphModule) -> dict[str, nn.Module]:
    return dict(gm.named_modules())


def _set_module(gm: fx.GraphModule, qualname: str, module: nn.Module) -> None:
    parent, _, leaf = qualname.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def fold_bn_weights(
    w: torch.Tensor, b: torch.Tensor | None, bn: nn.BatchNorm2d, out_axis: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold BN into the layer before it (docs/ptq.md eq. (P1)): w' = w * g / sqrt(var + eps) per output
    channel, b' = (b - mean) * g / sqrt(var + eps) + beta."""
    g = bn.weight if bn.affine else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.affine else torch.zeros_like(bn.running_var)
    factor = g / torch.sqrt(bn.running_var + bn.eps)
    shape = [1] * w.dim()
    shape[out_axis] = -1
    bias = torch.zeros_like(bn.running_mean) if b is None else b
    return w * factor.reshape(shape), (bias - bn.running_mean) * factor + beta


def _is_module(node: fx.Node, modules: dict[str, nn.Module], types: tuple[type, ...]) -> bool:
    return node.op == "call_module" and isinstance(modules.get(str(node.target)), types)


_DROPOUT_FUNCS = {F.dropout, F.dropout2d, F.alpha_dropout, torch.dropout}


def _is_noop(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if _is_module(node, modules, (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
        return True
    if node.op == "call_function" and node.target in _DROPOUT_FUNCS:
        return True
    return node.op == "call_method" and node.target in ("contiguous", "detach")


def fold_and_clean(gm: fx.GraphModule) -> dict[str, str]:
    """In place: fold each BatchNorm2d into the Conv2d/ConvTranspose2d it directly follows (the conv's only
    user; QAT weight modules are left alone), and drop Dropout/Identity. Returns {conv node name: BN node
    name}: the folded conv's output is the BN's output of the original graph."""
    modules = modules_of(gm)
    aliases: dict[str, str] = {}
    for node in list(gm.graph.nodes):
        if _is_noop(node, modules):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            continue
        if not _is_module(node, modules, (nn.BatchNorm2d,)) or not isinstance(node.args[0], fx.Node):
            continue
        prev = node.args[0]
        if len(prev.users) != 1 or not _is_module(prev, modules, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        conv = modules[str(prev.target)]
        if is_qat_module(conv):
            continue
        bn = modules[str(node.target)]
        if bn.running_mean is None or bn.running_var is None:
            continue
        folded = copy.deepcopy(conv)
        out_axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
        with torch.no_grad():
            w, b = fold_bn_weights(conv.weight, conv.bias, bn, out_axis)
            folded.weight = nn.Parameter(w.detach().clone())
            folded.bias = nn.Parameter(b.detach().clone())
        _set_module(gm, str(prev.target), folded)
        modules[str(prev.target)] = folded
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        aliases[prev.name] = aliases.get(node.name, node.name)
    gm.graph.lint()
    gm.recompile()
    return aliases


def as_tuple(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    """example inputs as a tuple of float tensors (one tensor, NumPy array, or a sequence of them)."""
    items: Sequence[Any] = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    out = []
    for i, x in enumerate(items):
        if not isinstance(x, torch.Tensor):
            try:
                x = torch.as_tensor(x)
            except Exception as exc:
                raise TypeError(f"example_inputs[{i}] must be a tensor or array, got {type(x).__name__}") from exc
        if not x.is_floating_point():
            raise TypeError(f"example_inputs[{i}] must hold floats, got {x.dtype}")
        out.append(x.float())
    return tuple(out)


def propagate_shapes(gm: fx.GraphModule, example_inputs: tuple[torch.Tensor, ...]) -> None:
    """Record each node's output shape (node.meta['tensor_meta']) by running the example inputs."""
    with torch.no_grad():
        ShapeProp(gm).propagate(*example_inputs)


def tensor_shape(node: fx.Node) -> tuple[int, ...] | None:
    """The example output shape of a node producing a tensor, else None."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def evaluate(node: fx.Node, env: dict[fx.Node, Any], modules: dict[str, nn.Module], root: nn.Module) -> Any:
    """The value of `node` from the values in `env`, evaluating its non-tensor ancestors (e.g. x.size(0))."""
    if node in env:
        return env[node]

    def arg(a: Any) -> Any:
        return evaluate(a, env, modules, root) if isinstance(a, fx.Node) else a

    args = fx.node.map_aggregate(node.args, arg)
    kwargs = fx.node.map_aggregate(node.kwargs, arg)
    if node.op == "call_module":
        value = modules[str(node.target)](*args, **kwargs)
    elif node.op == "call_function":
        value = node.target(*args, **kwargs)
    elif node.op == "call_method":
        value = getattr(args[0], str(node.target))(*args[1:], **kwargs)
    elif node.op == "get_attr":
        value = operator.attrgetter(str(node.target))(root)
    else:
        raise ValueError(f"cannot evaluate node {node.name!r} ({node.op}) outside the traced model")
    env[node] = value
    return value
