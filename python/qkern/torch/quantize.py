"""quantize(): prepare, calibrate and convert in one call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from ..model import QuantizedModel
from ..qconfig import QConfig
from .convert import convert
from .prepare import calibrate, prepare


def quantize(
    model: nn.Module,
    calibration_data: Iterable[Any],
    *,
    qconfig: QConfig | None = None,
    method: str = "minmax",
    weight_bits: int = 8,
    act_bits: int = 8,
    per_channel: bool = True,
    **prepare_kwargs: Any,
) -> QuantizedModel:
    """Post-training quantization: `prepare` (example inputs = the first batch), run every batch of
    `calibration_data` (torch tensors or float32 NumPy, NCHW) through the observers, `convert`."""
    batches = list(calibration_data)
    if not batches:
        raise ValueError("calibration_data must hold at least one batch")
    prepared = prepare(
        model,
        qconfig,
        batches[0],
        method=method,
        weight_bits=weight_bits,
        act_bits=act_bits,
        per_channel=per_channel,
        **prepare_kwargs,
    )
    calibrate(prepared, batches)
    return convert(prepared)
