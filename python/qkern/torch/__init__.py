"""PyTorch-facing tools (imports torch): post-training, dynamic and quantization-aware
quantization of a float model onto qkern's integer kernels.

`prepare` -> run calibration batches -> `convert` gives a `qkern.QuantizedModel` that runs without torch;
`quantize` does all three; `report` compares a converted model with its float original layer by layer.
"""

from .capture import TracingError, trace
from .convert import convert
from .dynamic import DynamicQuantizedLinear, quantize_dynamic, quantize_dynamic_numpy
from .prepare import ActObserver, PTQConfig, calibrate, prepare
from .qat import LSQ, PACT, DoReFaActivation, DoReFaWeight, FakeQuantize, WRPNActivation, WRPNWeight
from .qat_prepare import prepare_qat
from .quantize import quantize
from .report import report
from .simulate import simulate

__all__ = [
    "LSQ",
    "PACT",
    "ActObserver",
    "DoReFaActivation",
    "DoReFaWeight",
    "DynamicQuantizedLinear",
    "FakeQuantize",
    "PTQConfig",
    "TracingError",
    "WRPNActivation",
    "WRPNWeight",
    "calibrate",
    "convert",
    "prepare",
    "prepare_qat",
    "quantize",
    "quantize_dynamic",
    "quantize_dynamic_numpy",
    "report",
    "simulate",
    "trace",
]
