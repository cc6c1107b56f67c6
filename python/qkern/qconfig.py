"""QConfig: a pair of observer factories (activation, weight), with torch 2.13's defaults."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from .observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    ObserverBase,
    PerChannelMinMaxObserver,
)


class QConfig(NamedTuple):
    """How to observe a layer: `activation()` and `weight()` each make a fresh observer."""

    activation: Callable[[], Any]
    weight: Callable[[], Any]


class DynamicObserver(MovingAverageMinMaxObserver):
    """Dynamic activation quantization: the qparams come from each batch's own range (torch's
    PlaceholderObserver(is_dynamic=True) marks this; here it also computes them for the last batch)."""

    def __init__(
        self, dtype: Any = "quint8", quant_min: int | None = 0, quant_max: int | None = 255, **kwargs: Any
    ) -> None:
        super().__init__(
            averaging_constant=1.0, dtype=dtype, quant_min=quant_min, quant_max=quant_max, is_dynamic=True, **kwargs
        )


def _factory(cls: type[ObserverBase], **kwargs: Any) -> Callable[[], ObserverBase]:
    return functools.partial(cls, **kwargs)


default_observer = _factory(MinMaxObserver, quant_min=0, quant_max=127)
default_weight_observer = _factory(MinMaxObserver, dtype="qint8", qscheme="per_tensor_symmetric")
default_per_channel_weight_observer = _factory(PerChannelMinMaxObserver, dtype="qint8", qscheme="per_channel_symmetric")
default_histogram_observer = _factory(HistogramObserver, quant_min=0, quant_max=127)
default_dynamic_quant_observer = _factory(DynamicObserver, dtype="quint8", quant_min=0, quant_max=255)

default_qconfig = QConfig(activation=default_observer, weight=default_weight_observer)
default_per_channel_qconfig = QConfig(activation=default_observer, weight=default_per_channel_weight_observer)
default_dynamic_qconfig = QConfig(activation=default_dynamic_quant_observer, weight=default_weight_observer)
per_channel_dynamic_qconfig = QConfig(
    activation=default_dynamic_quant_observer, weight=default_per_channel_weight_observer
)


def get_default_qconfig(backend: str = "x86") -> QConfig:
    """torch's choices: "x86"/"fbgemm": histogram activations with reduce_range, per-channel symmetric
    int8 weights; "qnnpack": histogram activations, per-tensor symmetric int8 weights."""
    if backend in ("x86", "fbgemm"):
        return QConfig(_factory(HistogramObserver, reduce_range=True), default_per_channel_weight_observer)
    if backend == "qnnpack":
        return QConfig(_factory(HistogramObserver, reduce_range=False), default_weight_observer)
    raise ValueError(f"backend must be 'x86', 'fbgemm' or 'qnnpack', got {backend!r}")
