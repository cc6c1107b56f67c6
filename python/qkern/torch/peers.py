"""Peers for the PTQ demo and benchmarks only: torch's FX PTQ (x86 engine), ONNX Runtime quantize_static, timing."""

from __future__ import annotations

import logging
import os
import random
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


def interleaved_medians_ms(
    calls: dict[Any, Callable[[], Any]],
    rounds: int = 7,
    pause_s: float = 0.1,
    warm_s: float = 0.02,
    sample_s: float = 0.03,
    min_calls: int = 5,
    seed: int = 0,
    on_round: Callable[[int], None] | None = None,
) -> dict[Any, float]:
    """Each call's latency in milliseconds: the median over `rounds` rounds of its per-call median, the calls
    taking turns in a new (seeded) order every round.

    A shared VM's speed drifts, by up to 2x over seconds here: timing each implementation in one phase of its
    own compares different machine states, while in rounds every implementation meets each state. A sample
    starts with a `pause_s` sleep (torch's OpenMP workers and ONNX Runtime's pool spin for a while after their
    last call and would slow the next implementation on a two-core machine), warms the call up for `warm_s`
    and at least 3 calls (caches, waking the thread pools), then times at least `min_calls` calls and
    `sample_s` seconds. `on_round(r)` is called after round r (a progress bar)."""
    rng = random.Random(seed)
    keys = list(calls)
    samples: dict[Any, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        rng.shuffle(keys)
        for k in keys:
            fn = calls[k]
            time.sleep(pause_s)
            start = time.perf_counter()
            warm = 0
            while warm < 3 or time.perf_counter() - start < warm_s:
                fn()
                warm += 1
            times = []
            start = time.perf_counter()
            while len(times) < min_calls or time.perf_counter() - start < sample_s:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            samples[k].append(statistics.median(times))
        if on_round is not None:
            on_round(r)
    return {k: 1e3 * statistics.median(v) for k, v in samples.items()}
