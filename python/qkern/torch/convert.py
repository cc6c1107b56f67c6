"""convert(): lower a prepared (calibrated) or QAT graph onto qkern.model.ModelBuilder steps."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..model import ModelBuilder, QuantizedModel
from ..qparams import QParams
from .capture import evaluate, tensor_shape, trace
from .ops_table import pool_params
from .plan import GraphPlan, quantize_bias
from .prepare import PTQConfig, calibrate, prepare


@dataclass
class _T:
    """A converted tensor: the builder's reference and, for a flatten of [C, H, W] with H*W > 1, that shape
    (the runtime's columns are in (h, w, c) order, torch's in (c, h, w))."""

    ref: Any
    hwc_of: tuple[int, int, int] | None = None


def _nhwc_columns(w: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Permute a Linear weight's input columns from torch's (c, h, w) order to the runtime's (h, w, c)."""
    c, h, wd = chw
    return np.ascontiguousarray(w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1))


def _to_torch_order(a: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    c, h, w = chw
    return np.ascontiguousarray(a.reshape(a.shape[0], h, w, c).transpose(0, 3, 1, 2).reshape(a.shape[0], -1))


class _Converter:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.plan = GraphPlan(gm)
        self.gm = gm
        self.builder = ModelBuilder(rounding=self.plan.config.rounding)
        self.env: dict[fx.Node, _T] = {}
        self.float_nodes: list[str] = []

    # -- helpers ------------------------------------------------------------------------------------
    def _arg(self, node: Any) -> _T:
        if not isinstance(node, fx.Node) or node not in self.env:
            raise ValueError(f"convert: input {node!r} has no integer value (unsupported graph shape)")
        return self.env[node]

    def _finish(self, chain: Any, t: _T) -> None:
        for n in chain.nodes:
            self.env[n] = t

    def _float_fn(self, node: fx.Node, inputs: list[fx.Node], hwc: list[tuple[int, int, int] | None]) -> Any:
        modules, root = self.plan.modules, self.gm

        def fn(arrays: list[np.ndarray]) -> np.ndarray:
            env: dict[fx.Node, Any] = {}
            for n, a, chw in zip(inputs, arrays, hwc):
                env[n] = torch.from_numpy(np.ascontiguousarray(a if chw is None else _to_torch_order(a, chw)))
            with torch.no_grad():
                out = evaluate(node, env, modules, root)
            return out.detach().float().numpy()

        return fn

    def _lut_table(self, node: fx.Node, x: fx.Node, in_qp: QParams, out_qp: QParams) -> np.ndarray:
        lo = -128 if in_qp.dtype == "int8" else 0
        q = np.arange(lo, lo + 256).astype(np.dtype(in_qp.dtype))
        real = torch.from_numpy(in_qp.dequantize(q))
        with torch.no_grad():
            y = evaluate(node, {x: real}, self.plan.modules, self.gm)
        return out_qp.quantize(y.detach().float().numpy())

    # -- lowering -----------------------------------------------------------------------------------
    def _layer(self, node: fx.Node, kind: str, chain: Any, name: str) -> _T:
        b, plan = self.builder, self.plan
        x = self._arg(node.args[0])
        module = plan.modules[str(node.target)]
        w_int, w_qp, bias = plan.weight(module, kind)
        in_qp, out_qp = x.ref.qparams, plan.out_qparams(chain)
        bias_q = quantize_bias(bias, in_qp.scale, w_qp.scale, w_int.shape[0])
        if kind == "conv":
            k, s, p = module.kernel_size[0], module.stride[0], module.padding[0]
            w = np.ascontiguousarray(w_int.transpose(0, 2, 3, 1))
            ref = b.conv2d(x.ref, w, w_qp, bias_q, out_qp, kernel_size=k, stride=s, padding=p, name=name)
        elif kind == "deconv":
            w = np.ascontiguousarray(w_int.transpose(1, 2, 3, 0))
            ref = b.conv_transpose2x2(x.ref, w, w_qp, bias_q, out_qp, name=name)
        else:
            w = w_int if x.hwc_of is None else _nhwc_columns(w_int, x.hwc_of)
            ref = b.linear(x.ref, np.ascontiguousarray(w), w_qp, bias_q, out_qp, name=name)
        return _T(ref)

    def _float_op(self, node: fx.Node, chain: Any, name: str) -> _T:
        inputs = [n for n in node.all_input_nodes if n in self.env]
        missing = [n.name for n in node.all_input_nodes if n not in self.env and tensor_shape(n) is not None]
        if missing or not inputs:
            raise ValueError(f"convert: node {node.name!r} reads tensors {missing} that have no integer value")
        ts = [self.env[n] for n in inputs]
        fn = self._float_fn(node, inputs, [t.hwc_of for t in ts])
        self.float_nodes.append(f"{node.name} ({getattr(node.target, '__name__', node.target)})")
        return _T(self.builder.float_op([t.ref for t in ts], fn, self.plan.out_qparams(chain), name=name))

    def lower(self, node: fx.Node) -> None:
        plan, b = self.plan, self.builder
        kind = plan.kinds[node]
        if node in self.env or kind in ("value", "output"):
            return
        chain = plan.chain(node)
        name = plan.value_name(chain)
        if kind == "input":
            self._finish(chain, _T(b.input(plan.out_qparams(chain), name=node.name)))
        elif kind in ("conv", "deconv", "linear"):
            self._finish(chain, self._layer(node, kind, chain, name))
        elif kind == "add":
            x1, x2 = self._arg(node.args[0]), self._arg(node.args[1])
            self._finish(chain, _T(b.add(x1.ref, x2.ref, plan.out_qparams(chain), name=name), x1.hwc_of))
        elif kind == "cat":
            refs = [self._arg(a).ref for a in node.args[0]]
            self._finish(chain, _T(b.cat(refs, plan.out_qparams(chain), name=name)))
        elif kind == "maxpool":
            k, s, p = pool_params(node, plan.modules)
            self.env[node] = _T(b.max_pool2d(self._arg(node.args[0]).ref, k, s, p, name=node.name))
        elif kind == "avgpool":
            k, s, _ = pool_params(node, plan.modules)
            self._finish(chain, _T(b.avg_pool2d(self._arg(node.args[0]).ref, k, s, plan.out_qparams(chain), name=name)))
        elif kind == "gap":
            self._finish(chain, _T(b.global_avg_pool(self._arg(node.args[0]).ref, plan.out_qparams(chain), name=name)))
        elif kind == "flatten":
            self._flatten(node)
        elif kind in ("unary", "relu", "relu6"):
            x = self._arg(node.args[0])
            out_qp = plan.out_qparams(chain)
            table = self._lut_table(node, node.args[0], x.ref.qparams, out_qp)
            self._finish(chain, _T(b.lut(x.ref, table, out_qp, name=name), x.hwc_of))
        elif kind == "qat_act":
            x = self._arg(node.args[0])
            self.env[node] = _T(b.requantize(x.ref, plan.point_qparams[node], name=node.name), x.hwc_of)
        elif kind == "observer":
            raise ValueError(f"convert: observer {node.name!r} follows no converted node")
        else:
            self._finish(chain, self._float_op(node, chain, name))

    def _flatten(self, node: fx.Node) -> None:
        src = tensor_shape(node.args[0])
        assert src is not None
        x = self._arg(node.args[0])
        chw = (src[1], src[2], src[3])
        spatial = src[2] * src[3] > 1
        if spatial and any(self.plan.kinds.get(u) not in ("linear", "qat_act") for u in node.users):
            # a consumer other than Linear (or a QAT quantizer, which keeps the order) needs torch's (c, h, w)
            fn = self._float_fn(node, [node.args[0]], [x.hwc_of])
            self.float_nodes.append(f"{node.name} (flatten before a non-Linear consumer)")
            self.env[node] = _T(self.builder.float_op([x.ref], fn, x.ref.qparams, name=node.name))
            return
        self.env[node] = _T(self.builder.flatten(x.ref, name=node.name), chw if spatial else None)

    def outputs(self) -> None:
        out = next(n for n in self.gm.graph.nodes if n.op == "output")
        values = out.args[0]
        items = list(values) if isinstance(values, (tuple, list)) else [values]
        for i, v in enumerate(items):
            t = self._arg(v)
            if t.hwc_of is not None:  # an output flattened from a spatial tensor: back to torch's order
                chw = t.hwc_of
                t = _T(
                    self.builder.float_op(
                        [t.ref],
                        lambda a, chw=chw: _to_torch_order(a[0], chw),
                        t.ref.qparams,
                        name=f"{v.name}_torch_order",
                    )
                )
            self.builder.output(t.ref, name=f"output_{i}" if len(items) > 1 else "output")


def _guess_example(model: nn.Module) -> torch.Tensor:
    """An input batch the model accepts: channels from its first Conv2d/Linear, the first square size
    (of a few common ones) for which the traced model runs. Shapes matter only where a flatten feeds a
    Linear, and there only the true spatial size runs."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if isinstance(first, nn.Linear):
        return torch.zeros(2, first.in_features)
    channels = first.in_channels if isinstance(first, nn.Conv2d) else 3
    gm = trace(copy.deepcopy(model).eval())
    for size in (32, 16, 28, 64, 224, 8, 24, 48, 96, 112, 128, 256, *range(1, 257)):
        x = torch.zeros(2, channels, size, size)
        try:
            with torch.no_grad():
                gm(x)
        except Exception:  # a size the model rejects: try the next one
            continue
        return x
    raise ValueError("convert could not find an input shape the model accepts: pass example_inputs")


def convert(
    prepared: nn.Module, example_inputs: Any = None, *, calibration_data: Iterable[Any] | None = None
) -> QuantizedModel:
    """The QuantizedModel of a model returned by `prepare` (after calibration) or of a QAT model (e.g. from
    `prepare_qat`, after training; its quantizers fix every grid). A QAT model is prepared here:
    `example_inputs` (or the model's `qkern_example_inputs` attribute, or a guessed shape) records shapes,
    and `calibration_data` (default: the example inputs) calibrates any tensor without a QAT quantizer.
    Nodes without an integer form run as dequantize -> float op -> quantize; a UserWarning lists them."""
    if not isinstance(prepared, nn.Module):
        raise TypeError(f"prepared must be a torch.nn.Module from qkern.torch.prepare, got {type(prepared).__name__}")
    if not isinstance(getattr(prepared, "qkern_config", None), PTQConfig):
        if example_inputs is None:
            example_inputs = getattr(prepared, "qkern_example_inputs", None)
        if example_inputs is None:
            example_inputs = _guess_example(prepared)
        model = prepared
        prepared = prepare(model, example_inputs=example_inputs)
        calibrate(prepared, [example_inputs] if calibration_data is None else calibration_data)
    assert isinstance(prepared, fx.GraphModule)
    conv = _Converter(prepared)
    for node in prepared.graph.nodes:
        conv.lower(node)
    conv.outputs()
    if conv.float_nodes:
        warnings.warn(
            f"qkern.torch.convert: {len(conv.float_nodes)} node(s) have no integer kernel and run in float "
            f"(dequantize -> op -> quantize; the model cannot be saved): {', '.join(conv.float_nodes)}",
            UserWarning,
            stacklevel=2,
        )
    return conv.builder.build()
