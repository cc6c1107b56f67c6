"""Peers for the PTQ demo and benchmarks only: torch's FX PTQ (x86 engine), ONNX Runtime quantize_static, timing."""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


def torch_fx_ptq(model: nn.Module, calibration: Sequence[torch.Tensor]) -> nn.Module:
    """torch's own FX post-training quantization with the x86 engine's default qconfig (a peer only:
    torch.ao.quantization is deprecated in torch 2.13 and qkern does not build on it)."""
    import copy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (calibration[0],))
        with torch.no_grad():
            for x in calibration:
                prepared(x)
        return convert_fx(prepared)


class _Reader:
    """onnxruntime CalibrationDataReader over a list of NCHW float batches."""

    def __init__(self, name: str, batches: Sequence[torch.Tensor]) -> None:
        self._items = iter([{name: b.numpy()} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def onnx_sessions(model: nn.Module, calibration: Sequence[torch.Tensor], threads: int = 2) -> tuple[Any, Any]:
    """(float32 session, int8 session) of ONNX Runtime: the model exported to ONNX, and quantize_static of it
    (QDQ format, per-channel int8 weights, uint8 activations, min-max calibration on the same batches)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    logger = logging.getLogger()  # quantize_static logs a pre-processing hint at WARNING on the root logger
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return _onnx_sessions(model, calibration, opts)
    finally:
        logger.setLevel(level)


def _onnx_sessions(model: nn.Module, calibration: Sequence[torch.Tensor], opts: Any) -> tuple[Any, Any]:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        f32, i8 = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model_int8.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(), (calibration[0][:1],), f32, input_names=["x"], output_names=["y"],
                dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False, opset_version=17,
            )  # fmt: skip
            quantize_static(
                f32, i8, _Reader("x", calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            )  # fmt: skip
        providers = ["CPUExecutionProvider"]
        return (
            ort.InferenceSession(f32, opts, providers=providers),
            ort.InferenceSession(i8, opts, providers=providers),
        )


def median_ms(
    fn: Callable[[], Any], repeats: int = 30, warmup: int = 3, budget_s: float = 2.0, pause_s: float = 0.3
) -> float:
    """Median wall time of fn() in milliseconds over up to `repeats` calls (fewer if `budget_s` runs out).

    Starts with a `pause_s` sleep: torch's OpenMP workers and ONNX Runtime's pool keep spinning for a while
    after their last call, which would slow whatever is timed next on a two-core machine (the bench
    harness pauses the same way)."""
    time.sleep(pause_s)
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(times) >= 5:
            break
    return 1e3 * statistics.median(times)
