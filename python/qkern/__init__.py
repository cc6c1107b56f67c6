"""qkern: exact, fast quantized (uint8/int8) GEMM and convolution kernels for the CPU. NumPy in, NumPy out.

Every native path equals the NumPy reference (`qkern.reference`) bit for bit. Torch is never imported
here; torch-facing tools live in modules that import it lazily.
"""

from ._backend import backend, get_backend, set_backend
from ._env import check_environment as _check_environment
from ._version import __version__
from .dynamic import DynamicLinear
from .fixedpoint import quantize_multiplier
from .model import QuantizedModel, load
from .ops import conv3x3, conv_transpose2x2, gemm
from .overflow import max_safe_k
from .packed import PackedGemm
from .packed_conv import PackedConv3x3, PackedConvTranspose2x2
from .qparams import QParams, calc_qparams, dequantize, dequantize_to_nchw, quantize, quantize_to_nhwc
from .requant import requantize
from .requant_params import Requant
from .runtime import available_isas, get_isa, get_num_threads, info, kernels, set_isa, set_num_threads

_check_environment()

__all__ = [
    "DynamicLinear",
    "PackedConv3x3",
    "PackedConvTranspose2x2",
    "PackedGemm",
    "QParams",
    "QuantizedModel",
    "Requant",
    "__version__",
    "available_isas",
    "backend",
    "calc_qparams",
    "conv3x3",
    "conv_transpose2x2",
    "dequantize",
    "dequantize_to_nchw",
    "gemm",
    "get_backend",
    "get_isa",
    "get_num_threads",
    "info",
    "kernels",
    "load",
    "max_safe_k",
    "quantize",
    "quantize_multiplier",
    "quantize_to_nhwc",
    "requantize",
    "set_backend",
    "set_isa",
    "set_num_threads",
]
