"""qkern.model: the NumPy-only quantized model runtime (ModelBuilder, QuantizedModel, load); no torch."""

from .builder import ModelBuilder, TensorRef
from .model import QuantizedModel, StepInfo


def load(path: object) -> QuantizedModel:
    """Read a model written by QuantizedModel.save (no code runs; bad files raise ValueError)."""
    from .fileload import load_model

    return load_model(path)


__all__ = ["ModelBuilder", "QuantizedModel", "StepInfo", "TensorRef", "load"]
