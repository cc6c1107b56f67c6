"""report(): per-layer SQNR and MSE of converted activations, and weight quantization MSE, against the float model."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..model import QuantizedModel
from ..model.qparams_json import qparams_from_json
from .capture import as_tuple, fold_and_clean, modules_of, trace

_WEIGHT_MODULES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (ref - approx)^2) in dB (docs/ptq.md eq. (P5)); inf when they are equal."""
    ref64, err = ref.astype(np.float64), ref.astype(np.float64) - approx.astype(np.float64)
    noise = float(np.sum(err * err))
    signal = float(np.sum(ref64 * ref64))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def float_activations(model: nn.Module, x: Any) -> dict[str, np.ndarray]:
    """Every node's float output (by fx node name) of the traced float model on x."""
    gm = trace(copy.deepcopy(model).eval())
    acts: dict[str, np.ndarray] = {}

    class _Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            value = super().run_node(n)
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                acts[n.name] = value.detach().float().numpy()
            return value

    with torch.no_grad():
        _Recorder(gm).run(*as_tuple(x))
    return acts


def _weights_by_value_name(model: nn.Module) -> dict[str, np.ndarray]:
    """Float (BN-folded) weights with the output channel first, keyed by every name a converted step of
    that layer can have: the layer's (or its folded BN's) node name and a directly following ReLU's."""
    gm = trace(copy.deepcopy(model).eval())
    aliases = fold_and_clean(gm)
    modules = modules_of(gm)
    out: dict[str, np.ndarray] = {}
    for node in gm.graph.nodes:
        m = modules.get(str(node.target)) if node.op == "call_module" else None
        if not isinstance(m, _WEIGHT_MODULES) and not hasattr(m, "qkern_quantized_weight"):
            continue
        w = m.weight.detach().float().numpy()
        w = np.moveaxis(w, 1, 0) if isinstance(m, nn.ConvTranspose2d) else w
        out[aliases.get(node.name, node.name)] = w
        for u in node.users:
            out.setdefault(u.name, w)
    return out


def _weight_mse(step: Any, w: np.ndarray | None) -> float:
    attrs = getattr(step, "attrs", {})
    if w is None or "w_qparams" not in attrs:
        return math.nan
    qp = qparams_from_json(attrs["w_qparams"], step.name)
    return float(np.mean((qp.dequantize(qp.quantize(w)).astype(np.float64) - w) ** 2))


def report(float_model: nn.Module, qmodel: QuantizedModel, x: Any, *, show: bool = True) -> list[dict[str, Any]]:
    """Per converted step that has a float counterpart: SQNR (dB) and MSE of the dequantized integer
    activation against the float model's activation at the same node, and the weight quantization MSE of
    conv/linear layers. Returns the rows (dicts) and prints them as a table unless `show=False`."""
    if not isinstance(qmodel, QuantizedModel):
        raise TypeError(f"qmodel must be a qkern.QuantizedModel, got {type(qmodel).__name__}")
    inputs = as_tuple(x)
    acts = float_activations(float_model, inputs)
    weights = _weights_by_value_name(float_model)
    ints = qmodel.trace(*[t.numpy() for t in inputs])
    steps = {s.name: s for s in getattr(qmodel, "_steps", [])}
    rows = []
    for info in qmodel.steps:
        if info.name not in acts or info.name not in ints or info.op == "flatten":
            continue
        deq = info.qparams.dequantize(ints[info.name])
        if deq.ndim == 4:
            deq = deq.transpose(0, 3, 1, 2)
        ref = acts[info.name]
        if deq.shape != ref.shape:
            continue
        rows.append(
            {
                "name": info.name,
                "op": info.op,
                "sqnr_db": sqnr_db(ref, deq),
                "mse": float(np.mean((ref.astype(np.float64) - deq) ** 2)),
                "weight_mse": _weight_mse(steps.get(info.name), weights.get(info.name)),
            }
        )
    if show:
        print(format_table(rows))
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The report rows as a fixed-width text table."""
    lines = [f"{'layer':<28} {'op':<18} {'SQNR dB':>8} {'MSE':>11} {'weight MSE':>11}"]
    for r in rows:
        wm = "" if math.isnan(r["weight_mse"]) else f"{r['weight_mse']:.3e}"
        lines.append(f"{r['name']:<28} {r['op']:<18} {r['sqnr_db']:>8.2f} {r['mse']:>11.3e} {wm:>11}")
    return "\n".join(lines)
