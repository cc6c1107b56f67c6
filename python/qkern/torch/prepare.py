"""prepare(): trace a float model, fold BN, drop no-ops and insert an activation observer at each integer boundary."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..calibration import METHODS, Calibrator
from ..qconfig import QConfig
from ..qparams import QParams
from ..requant_params import ROUNDINGS
from .capture import as_tuple, fold_and_clean, modules_of, propagate_shapes, trace
from .ops_table import FUSABLE, classify, is_pass_through

_HEAD_CONSUMERS = {F.softmax, torch.softmax, F.log_softmax, torch.log_softmax, torch.argmax}


@dataclass
class PTQConfig:
    """What convert needs besides the graph: the weight scheme, rounding, and BN-fold aliases."""

    weight_bits: int = 8
    per_channel: bool = True
    act_bits: int = 8
    act_dtype: str = "uint8"
    rounding: str = "fp32"
    qconfig: QConfig | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # folded conv node -> BN node of the float graph
    methods: dict[str, str] = field(default_factory=dict)  # observed node name -> range method


class ActObserver(nn.Module):
    """Pass-through observer of one activation; after `freeze(qparams)` it fake-quantizes instead (the float
    simulation of the integer model)."""

    _qkern_observer = True

    def __init__(self, observer: Any) -> None:
        super().__init__()
        self.observer = observer
        self.fake_qparams: QParams | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qp = self.fake_qparams
        if qp is None:
            self.observer(x.detach())
            return x
        return torch.fake_quantize_per_tensor_affine(x, float(qp.scale), int(qp.zero_point), qp.qmin, qp.qmax)

    def calculate_qparams(self) -> QParams:
        return self.observer.calculate_qparams()


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_bits(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 2 <= value <= 8:
        raise ValueError(f"{name} must be in [2, 8], got {value}")
    return value


def _feeds_head(node: fx.Node, kinds: dict[fx.Node, str]) -> bool:
    """True when the node's value (through a fused ReLU) reaches the model output or a softmax/argmax."""
    for u in node.users:
        if u.op == "output" or (u.op == "call_function" and u.target in _HEAD_CONSUMERS):
            return True
        if u.op == "call_method" and u.target in ("softmax", "log_softmax", "argmax"):
            return True
        if kinds.get(u) in ("relu", "relu6", "flatten") and _feeds_head(u, kinds):
            return True
    return False


def _layer_method(node: fx.Node, kind: str, method: str, layer_methods: dict[str, str], head: bool) -> str:
    """The range method of the observer after `node`; a fused ReLU's observer also answers to its producer."""
    keys = [node.name, str(node.target)]
    if kind in ("relu", "relu6"):
        keys += [node.all_input_nodes[0].name, str(node.all_input_nodes[0].target)]
    for key in keys:
        if key in layer_methods:
            return layer_methods[key]
    if method == "cross_entropy" and not head:
        return "minmax"  # cross-entropy scores class probabilities: only the logits have them
    return method


def observed_nodes(gm: fx.GraphModule) -> dict[fx.Node, str]:
    """Every node whose output gets its own quantization point, with its kind (docs/ptq.md, "Observers")."""
    modules = modules_of(gm)
    kinds = {n: classify(n, modules) for n in gm.graph.nodes}
    out: dict[fx.Node, str] = {}
    for node, kind in kinds.items():
        if kind in ("value", "output", "observer", "qat_act") or is_pass_through(kind):
            continue
        users = list(node.users)
        if kind in ("relu", "relu6") and kinds[node.all_input_nodes[0]] in FUSABLE:
            if len(node.all_input_nodes[0].users) == 1:
                if len(users) == 1 and kinds[users[0]] == "qat_act":
                    continue
                out[node] = kind  # the fused producer + ReLU chain ends here
                continue
        if kind in FUSABLE and len(users) == 1 and kinds[users[0]] in ("relu", "relu6"):
            continue  # observed after the ReLU
        if len(users) == 1 and kinds[users[0]] == "qat_act":
            continue  # the QAT quantizer is this tensor's quantization point
        out[node] = kind
    return out


def prepare(
    model: nn.Module,
    qconfig: QConfig | None = None,
    example_inputs: Any = None,
    *,
    method: str = "minmax",
    per_channel: bool = True,
    weight_bits: int = 8,
    act_bits: int = 8,
    act_dtype: str = "uint8",
    rounding: str = "fp32",
    layer_methods: dict[str, str] | None = None,
    calibrator_kwargs: dict[str, Any] | None = None,
) -> fx.GraphModule:
    """A traced copy of `model` (eval mode, BN folded, Dropout/Identity removed) with an observer on every
    tensor crossing an integer-op boundary. Run calibration batches through it, then `convert` it.

    `method` picks the activation range ("minmax", "percentile", "mse", "entropy", "cross_entropy"; the last
    applies to the tensors feeding the output or a softmax/argmax, the rest use "minmax"); `layer_methods`
    overrides it per node or module name. `qconfig` (qkern.qconfig.QConfig) replaces the observers: its
    `activation()`/`weight()` factories make them. Activations are `act_dtype` ("uint8" affine, "int8"
    symmetric) with `act_bits` bits; weights int8 symmetric, `weight_bits` bits, per output channel unless
    `per_channel=False`. `rounding` is the conv/linear Requant rounding ("fp32", "gemmlowp", "single").
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if example_inputs is None:
        raise ValueError("example_inputs is required (one input batch, to record every tensor's shape)")
    _check_choice(method, "method", METHODS)
    _check_choice(act_dtype, "act_dtype", ("uint8", "int8"))
    _check_choice(rounding, "rounding", ROUNDINGS)
    layer_methods = dict(layer_methods or {})
    for key, m in layer_methods.items():
        _check_choice(m, f"layer_methods[{key!r}]", METHODS)
    if qconfig is not None and not isinstance(qconfig, QConfig):
        raise TypeError(f"qconfig must be a qkern.qconfig.QConfig or None, got {type(qconfig).__name__}")
    config = PTQConfig(
        weight_bits=_check_bits(weight_bits, "weight_bits"),
        per_channel=bool(per_channel),
        act_bits=_check_bits(act_bits, "act_bits"),
        act_dtype=act_dtype,
        rounding=rounding,
        qconfig=qconfig,
    )
    inputs = as_tuple(example_inputs)
    gm = trace(copy.deepcopy(model).eval())
    config.aliases = fold_and_clean(gm)
    propagate_shapes(gm, inputs)
    modules = modules_of(gm)
    kinds = {n: classify(n, modules) for n in gm.graph.nodes}
    known = {n.name for n in gm.graph.nodes} | set(modules)
    unknown = sorted(set(layer_methods) - known)
    if unknown:
        raise ValueError(f"layer_methods names no node or module of the traced model: {unknown}")
    for i, (node, kind) in enumerate(observed_nodes(gm).items()):
        m = _layer_method(node, kind, method, layer_methods, _feeds_head(node, kinds))
        config.methods[node.name] = m
        if qconfig is not None:
            obs = qconfig.activation()
        else:
            obs = Calibrator(
                m, dtype=act_dtype, symmetric=act_dtype == "int8", bits=act_bits, **(calibrator_kwargs or {})
            )
        name = f"qkern_observer_{i}"
        gm.add_module(name, ActObserver(obs))
        with gm.graph.inserting_after(node):
            obs_node = gm.graph.call_module(name, (node,))
        obs_node.meta = dict(node.meta)
        node.replace_all_uses_with(obs_node, delete_user_cb=lambda u, o=obs_node: u is not o)
    gm.graph.lint()
    gm.recompile()
    gm.qkern_config = config
    return gm


def calibrate(prepared: fx.GraphModule, batches: Any) -> None:
    """Run each batch (a tensor, NumPy array, or tuple of them for several inputs) through the observers."""
    with torch.no_grad():
        for batch in batches:
            prepared(*as_tuple(batch))
