"""simulate(): the float (fake-quantized) simulation of what convert builds, for checking the integer model."""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from .plan import GraphPlan


def simulate(prepared: fx.GraphModule) -> fx.GraphModule:
    """A copy of a calibrated prepared model computing in float what the integer model computes: each
    observer fake-quantizes with the qparams convert uses (fused ReLU clamps, shared cat qparams) and
    each conv/deconv/linear runs on its dequantized integer weights (biases stay float)."""
    plan = GraphPlan(prepared)
    sim = copy.deepcopy(prepared)
    modules = dict(sim.named_modules())
    for node, qp in plan.point_qparams.items():
        if plan.kinds[node] != "observer":
            continue
        producer = plan.producer_of(node)
        chain = plan.chain(producer) if producer is not None else None
        modules[str(node.target)].fake_qparams = plan.out_qparams(chain) if chain and chain.point is node else qp
    for node, kind in plan.kinds.items():
        if kind not in ("conv", "deconv", "linear"):
            continue
        module = modules[str(node.target)]
        if hasattr(module, "qkern_quantized_weight"):
            continue
        w_int, qp, _ = plan.weight(plan.modules[str(node.target)], kind)
        w = torch.from_numpy(qp.dequantize(w_int))
        with torch.no_grad():
            module.weight = nn.Parameter(w.movedim(0, 1) if kind == "deconv" else w)
    return sim
