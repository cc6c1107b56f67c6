"""Where each tensor's qparams come from in a prepared graph: quantization points, fused ReLU chains, cat sharing,
and the integer weights of each layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import fx, nn

from ..qparams import QParams, calc_qparams
from .capture import modules_of
from .ops_table import FUSABLE, REQUANT_PRODUCERS, classify
from .prepare import PTQConfig


@dataclass
class Chain:
    """A producer node, its fused ReLU (None, "relu" or "relu6"), the nodes that share its output value and
    the quantization point (observer or QAT quantizer) that ends the chain (None if there is none)."""

    nodes: list[fx.Node]
    relu: str | None
    point: fx.Node | None


def clamp_for_relu(qp: QParams, relu: str | None) -> QParams:
    """The output clamp of a producer with a fused ReLU: qmin at the zero point, ReLU6 also caps at 6."""
    if relu is None:
        return qp
    qmin, qmax = max(qp.qmin, int(qp.zero_point)), qp.qmax
    if relu == "relu6":
        qmax = min(qmax, int(qp.zero_point) + int(np.rint(6.0 / float(qp.scale))))
    if (qmin, qmax) == (qp.qmin, qp.qmax):
        return qp
    return QParams(qp.scale, qp.zero_point, qp.dtype, qmin=qmin, qmax=max(qmax, qmin + 1))


class GraphPlan:
    """The kinds of a prepared graph's nodes, each producer's chain and the qparams of every quantization
    point (observers' calibrated ranges, QAT quantizers' grids, cat inputs sharing the cat's qparams)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        config = getattr(gm, "qkern_config", None)
        if not isinstance(config, PTQConfig):
            raise TypeError("convert needs a model returned by qkern.torch.prepare (or prepare_qat)")
        self.gm, self.config = gm, config
        self.modules = modules_of(gm)
        self.kinds = {n: classify(n, self.modules) for n in gm.graph.nodes}
        self.point_qparams: dict[fx.Node, QParams] = {}
        for node, kind in self.kinds.items():
            if kind == "observer":
                self.point_qparams[node] = self._observer_qparams(node)
            elif kind == "qat_act":
                self.point_qparams[node] = self._qat_qparams(node)
        self._share_cat_qparams()

    def _observer_qparams(self, node: fx.Node) -> QParams:
        try:
            qp = self.modules[str(node.target)].calculate_qparams()
        except ValueError as exc:
            raise ValueError(
                f"the observer of node {node.args[0].name!r} has no range: run calibration batches "
                f"through the prepared model before convert ({exc})"
            ) from exc
        return _per_tensor(qp, f"observer of {node.args[0].name!r}")

    def _qat_qparams(self, node: fx.Node) -> QParams:
        qp = self.modules[str(node.target)].qkern_qparams()
        if not isinstance(qp, QParams):
            raise TypeError(f"{node.target}.qkern_qparams() must return a qkern.QParams, got {type(qp).__name__}")
        return _per_tensor(qp, f"QAT quantizer {node.target!r}")

    def chain(self, node: fx.Node) -> Chain:
        nodes, relu, cur = [node], None, node
        users = list(cur.users)
        if self.kinds[node] in FUSABLE and len(users) == 1 and self.kinds[users[0]] in ("relu", "relu6"):
            cur = users[0]
            relu = self.kinds[cur]
            nodes.append(cur)
        users = list(cur.users)
        if len(users) == 1 and self.kinds[users[0]] in ("observer", "qat_act"):
            nodes.append(users[0])
            return Chain(nodes, relu, users[0])
        return Chain(nodes, relu, None)

    def producer_of(self, point: fx.Node) -> fx.Node | None:
        """The producer whose chain ends at this observer (walking back over a fused ReLU)."""
        prev = point.args[0]
        if self.kinds.get(prev) in ("relu", "relu6") and self.kinds.get(prev.args[0]) in FUSABLE:
            if self.chain(prev.args[0]).point is point:
                return prev.args[0]
        return prev if isinstance(prev, fx.Node) else None

    def _share_cat_qparams(self) -> None:
        """Inputs of a cat observed by prepare take the cat's qparams when their producer requantizes anyway,
        so the cat copies instead of rescaling (each producer shares with its first cat only)."""
        shared: set[fx.Node] = set()
        for node, kind in self.kinds.items():
            if kind != "cat":
                continue
            point = self.chain(node).point
            if point is None:
                continue
            qp = self.point_qparams[point]
            for arg in node.args[0]:
                if self.kinds.get(arg) != "observer" or arg in shared:
                    continue
                producer = self.producer_of(arg)
                if producer is not None and self.kinds[producer] in REQUANT_PRODUCERS:
                    self.point_qparams[arg] = qp
                    shared.add(arg)

    def out_qparams(self, chain: Chain) -> QParams:
        if chain.point is None:
            raise ValueError(f"node {chain.nodes[0].name!r} has no quantization point (was it prepared?)")
        return clamp_for_relu(self.point_qparams[chain.point], chain.relu)

    def value_name(self, chain: Chain) -> str:
        """The name of the float-graph node whose value this chain's output quantizes."""
        last = chain.nodes[-1]
        if self.kinds[last] == "observer":
            last = chain.nodes[-2]
        return self.config.aliases.get(last.name, last.name)

    # -- weights ------------------------------------------------------------------------------------
    def weight(self, module: nn.Module, kind: str) -> tuple[np.ndarray, QParams, np.ndarray | None]:
        """(integer weight with the output channel first, its QParams (per-channel on axis 0 or per-tensor),
        float32 bias or None) of a conv / deconv / linear module."""
        out_axis = 1 if kind == "deconv" else 0
        if hasattr(module, "qkern_quantized_weight"):
            w_int, qp, bias = module.qkern_quantized_weight()
            w_int = np.moveaxis(np.asarray(w_int), out_axis, 0)
            if not isinstance(qp, QParams):
                raise TypeError(f"qkern_quantized_weight() must return a qkern.QParams, got {type(qp).__name__}")
            if qp.per_channel:
                if qp.axis != out_axis:
                    raise ValueError(f"per-channel weight qparams must be on the output axis {out_axis}")
                qp = QParams(qp.scale, qp.zero_point, qp.dtype, axis=0, qmin=qp.qmin, qmax=qp.qmax)
            return w_int.astype(np.dtype(qp.dtype)), qp, None if bias is None else np.asarray(bias, np.float32)
        w = np.moveaxis(module.weight.detach().float().cpu().numpy(), out_axis, 0)
        bias = None if module.bias is None else module.bias.detach().float().cpu().numpy()
        qp = self.weight_qparams(w)
        return qp.quantize(w), qp, bias

    def weight_qparams(self, w: np.ndarray) -> QParams:
        cfg = self.config
        if cfg.qconfig is not None:
            obs = cfg.qconfig.weight()
            obs(w)
            return obs.calculate_qparams()
        if cfg.per_channel:
            flat = w.reshape(w.shape[0], -1)
            return calc_qparams(flat.min(axis=1), flat.max(axis=1), "int8", symmetric=True, bits=cfg.weight_bits)
        return calc_qparams(float(w.min()), float(w.max()), "int8", symmetric=True, bits=cfg.weight_bits)


def _per_tensor(qp: Any, what: str) -> QParams:
    if not isinstance(qp, QParams) or qp.per_channel:
        raise ValueError(f"the {what} must give per-tensor QParams")
    return qp


def quantize_bias(bias: np.ndarray | None, in_scale: Any, w_scale: Any, channels: int) -> np.ndarray | None:
    """b_q[o] = round_half_even(b[o] / (s_in * s_w[o])) as int32, saturated (docs/ptq.md eq. (P2))."""
    if bias is None:
        return None
    s = np.float64(np.float32(in_scale)) * np.broadcast_to(np.asarray(w_scale, np.float32), (channels,))
    q = np.rint(bias.astype(np.float64) / s)
    return np.clip(q, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
