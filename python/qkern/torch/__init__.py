"""qkern.torch: the torch-facing tools (this package imports torch; `import qkern` never does)."""

from .dynamic import DynamicQuantizedLinear, quantize_dynamic, quantize_dynamic_numpy

__all__ = ["DynamicQuantizedLinear", "quantize_dynamic", "quantize_dynamic_numpy"]
