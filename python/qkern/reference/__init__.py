"""Normative pure-NumPy kernels: every fast path must equal these bit for bit (docs/quantization.md)."""

from .conv import conv3x3, conv_transpose2x2
from .gemm import gemm
from .requant import requantize_reference

__all__ = ["conv3x3", "conv_transpose2x2", "gemm", "requantize_reference"]
